//! `Driver`: the boundary between a shard and the kernel. A driver moves bytes and readiness
//! between sockets and the shard; it knows nothing of HTTP or WebSocket. The shard loop is
//! written once against this trait, so a completion-based io_uring driver can replace the
//! readiness-based mio driver without touching connection logic.
//!
//! What every driver guarantees to the shard:
//! - **Ownership**: the driver owns listening and connection sockets. A connection is named by
//!   the [`ConnId`] the shard attached it under; the driver never invents or reuses ids, and
//!   after [`Driver::close`] it reports nothing more for that id.
//! - **Readiness is edge-like**: after [`Ready::Conn`] says readable, [`Driver::recv`] returns
//!   bytes until it returns `WouldBlock`; another `readable` is reported only when new bytes (or
//!   the end of stream) arrive after that. A short read also means "drained for now": new bytes
//!   arriving later produce a new report, and an end of stream (or error) that had already
//!   arrived behind the bytes of a short read is reported again at the next wait. The same
//!   holds for writable and [`Driver::send`]. A completion driver satisfies this by keeping
//!   completed receive buffers per connection and answering `WouldBlock` when none is pending.
//! - **Ordering**: bytes passed to `send` go out in call order; a short count means the rest was
//!   not taken and must be offered again (the shard's outbox does).
//! - **No blocking**: no method blocks except [`Driver::wait`], which returns when something is
//!   ready, when the shard's waker is woken ([`Ready::Wake`]), or when the timeout passes.
//! - **Listeners**: [`Driver::accept`] returns pending connections one at a time until
//!   `Ok(None)`; errors (such as running out of file descriptors) are returned, never retried
//!   in a loop by the driver.
//! - **Time**: [`Driver::now`] is the shard's only clock. The socket drivers read the OS's
//!   monotonic clock (the trait's default); a simulated driver answers its own time, and its
//!   `wait` moves that time to the timeout when nothing is ready instead of sleeping.
//!
//! Syscall code (socket options, CPU pinning, resource limits) lives here too, with `unsafe`
//! confined to these files.

pub mod memory;
pub mod mio;
pub mod uring;

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::conn::ConnId;

/// Something the driver found ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ready {
    /// Listener number `n` has connections to accept.
    Accept(usize),
    /// A connection can be read or written.
    Conn {
        /// The connection.
        id: ConnId,
        /// Bytes (or the end of stream) can be read.
        readable: bool,
        /// The socket takes more bytes.
        writable: bool,
    },
    /// The shard's waker was woken (shutdown, and later cross-shard messages).
    Wake,
}

/// The I/O backend of one shard. See the module doc for the guarantees.
pub trait Driver {
    /// A freshly accepted connection, not yet attached.
    type Socket;

    /// Wait until something is ready or `timeout` passes (`None`: no timeout); append what is
    /// ready to `ready`.
    fn wait(&mut self, ready: &mut Vec<Ready>, timeout: Option<Duration>) -> io::Result<()>;

    /// Accept one pending connection on listener `listener`; `Ok(None)` when none is pending.
    fn accept(&mut self, listener: usize) -> io::Result<Option<Self::Socket>>;

    /// Start watching `socket` under `id`.
    fn attach(&mut self, id: ConnId, socket: Self::Socket) -> io::Result<()>;

    /// Read into `buf`; `Ok(0)` is the end of stream.
    fn recv(&mut self, id: ConnId, buf: &mut [u8]) -> io::Result<usize>;

    /// Write `bufs` in order; returns how many bytes were taken.
    fn send(&mut self, id: ConnId, bufs: &[IoSlice<'_>]) -> io::Result<usize>;

    /// Send FIN: nothing more will be written.
    fn shutdown_write(&mut self, id: ConnId);

    /// Close the socket and forget `id`.
    fn close(&mut self, id: ConnId);

    /// Close every listener: no new connections.
    fn stop_accepting(&mut self);

    /// The address of the peer of connection `id`, if the driver knows one (a real socket).
    fn peer_addr(&mut self, id: ConnId) -> Option<SocketAddr> {
        let _ = id;
        None
    }

    /// The current time on this driver's clock (the OS's monotonic clock unless simulated).
    #[inline]
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// The driver a shard runs on, chosen once at start (`--driver`): one shard type serves both,
/// and the per-call match is a predictable branch next to a syscall.
// One per shard, built once and never moved on the data path: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum ShardDriver {
    /// mio (epoll).
    Epoll(self::mio::MioDriver),
    /// io_uring.
    Uring(self::uring::UringDriver),
}

/// A freshly accepted socket of either driver.
pub enum ShardSocket {
    /// From the mio driver.
    Epoll(::mio::net::TcpStream),
    /// From the io_uring driver.
    Uring(std::net::TcpStream),
}

fn mismatched() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "socket from the other driver")
}

impl Driver for ShardDriver {
    type Socket = ShardSocket;

    fn wait(&mut self, ready: &mut Vec<Ready>, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            ShardDriver::Epoll(d) => d.wait(ready, timeout),
            ShardDriver::Uring(d) => d.wait(ready, timeout),
        }
    }

    fn accept(&mut self, listener: usize) -> io::Result<Option<ShardSocket>> {
        Ok(match self {
            ShardDriver::Epoll(d) => d.accept(listener)?.map(ShardSocket::Epoll),
            ShardDriver::Uring(d) => d.accept(listener)?.map(ShardSocket::Uring),
        })
    }

    fn attach(&mut self, id: ConnId, socket: ShardSocket) -> io::Result<()> {
        match (self, socket) {
            (ShardDriver::Epoll(d), ShardSocket::Epoll(s)) => d.attach(id, s),
            (ShardDriver::Uring(d), ShardSocket::Uring(s)) => d.attach(id, s),
            _ => Err(mismatched()),
        }
    }

    fn recv(&mut self, id: ConnId, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ShardDriver::Epoll(d) => d.recv(id, buf),
            ShardDriver::Uring(d) => d.recv(id, buf),
        }
    }

    fn send(&mut self, id: ConnId, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            ShardDriver::Epoll(d) => d.send(id, bufs),
            ShardDriver::Uring(d) => d.send(id, bufs),
        }
    }

    fn shutdown_write(&mut self, id: ConnId) {
        match self {
            ShardDriver::Epoll(d) => d.shutdown_write(id),
            ShardDriver::Uring(d) => d.shutdown_write(id),
        }
    }

    fn close(&mut self, id: ConnId) {
        match self {
            ShardDriver::Epoll(d) => d.close(id),
            ShardDriver::Uring(d) => d.close(id),
        }
    }

    fn stop_accepting(&mut self) {
        match self {
            ShardDriver::Epoll(d) => d.stop_accepting(),
            ShardDriver::Uring(d) => d.stop_accepting(),
        }
    }

    fn peer_addr(&mut self, id: ConnId) -> Option<SocketAddr> {
        match self {
            ShardDriver::Epoll(d) => d.peer_addr(id),
            ShardDriver::Uring(d) => d.peer_addr(id),
        }
    }
}

/// Whether an accept error means the process or system ran out of file descriptors (or socket
/// memory): retrying at once would spin.
pub fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Turn a libc `-1` return into the last OS error.
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The CPUs this process may run on, in order.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: `cpu_set_t` is a plain bit array for which all-zero is a valid (empty) value.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable `cpu_set_t` and its exact size is passed; pid 0 is the
    // calling thread.
    let ret =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if cvt(ret).is_err() {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE, the number of bits `set` holds.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// Pin the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "cpu index out of range",
        ));
    }
    // SAFETY: all-zero is a valid empty `cpu_set_t`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` was checked to be below CPU_SETSIZE just above.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid `cpu_set_t` of the size passed; pid 0 is the calling thread.
    cvt(unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) })?;
    Ok(())
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit (capped by what the kernel allows); returns
/// the soft limit in force afterwards.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable `rlimit`.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
    if lim.rlim_cur < lim.rlim_max {
        let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse::<libc::rlim_t>().ok())
            .unwrap_or(lim.rlim_max);
        let want = libc::rlimit {
            rlim_cur: lim.rlim_max.min(nr_open),
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `want` is a valid `rlimit` that outlives the call.
        if cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) }).is_ok() {
            lim.rlim_cur = want.rlim_cur;
        }
    }
    Ok(lim.rlim_cur)
}
