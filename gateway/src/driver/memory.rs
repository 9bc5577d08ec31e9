//! `MemoryDriver`: a shard's sockets as byte pipes in memory and its clock simulated, so the shard
//! loop runs deterministically in one thread: no kernel, no sleeps, no real time. Tests and
//! benches drive the shard turn by turn (`Shard::turn` in the shard module) and act between turns.
//!
//! The far side of the driver: a [`Host`] per driver (open connections on its listeners, wake
//! the shard), a [`Pipe`] per connection (the client's end: write, read, half-close, reset, and
//! how many unread bytes the socket holds before `send` says `WouldBlock`), and a [`SimClock`]
//! that only moves when a `wait` finds nothing ready (to its timeout) or when the test moves it.
//! Every promise of the [`Driver`] trait holds here as it does on a socket: readiness is
//! reported as edges (new bytes, an end of stream, room freed after a short or refused `send`),
//! a short read means drained and an end of stream behind it is reported again, bytes keep
//! their order, and nothing blocks. Everything is single-threaded (`Rc<RefCell<_>>`): one
//! driver per shard, and a test with several shards drives them in turn on its own thread.

#![forbid(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{Driver, Ready};
use crate::conn::ConnId;

/// Simulated time: a fixed base instant plus an offset that only moves when asked. Clones share
/// the offset, so every driver of a test (one per shard) sees the same time.
#[derive(Clone, Debug)]
pub struct SimClock {
    base: Instant,
    offset: Rc<Cell<Duration>>,
}

impl SimClock {
    /// A clock at its start (on the millisecond grid of connection stamps, so simulated
    /// deadlines are exact: see [`crate::conn::Stamp::grid`]).
    pub fn new() -> SimClock {
        SimClock {
            base: crate::conn::Stamp::grid(Instant::now()),
            offset: Rc::new(Cell::new(Duration::ZERO)),
        }
    }

    /// The simulated now.
    pub fn now(&self) -> Instant {
        self.base + self.offset.get()
    }

    /// Time passed since the clock was made.
    pub fn elapsed(&self) -> Duration {
        self.offset.get()
    }

    /// Move time forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.offset.set(self.offset.get().saturating_add(by));
    }
}

impl Default for SimClock {
    fn default() -> Self {
        SimClock::new()
    }
}

/// A connection accepted on a memory listener, not yet attached (its pipe number).
#[derive(Debug)]
pub struct MemorySocket(usize);

/// One listener.
#[derive(Debug, Default)]
struct Listener {
    open: bool,
    /// Pipes connected and not yet accepted, in order.
    pending: VecDeque<usize>,
    /// A connection arrived since the last report.
    edge: bool,
}

/// Both directions of one connection, and what was reported about it.
#[derive(Debug)]
struct PipeState {
    /// The id the shard attached it under (`None` before attach and after close).
    id: Option<ConnId>,
    /// Client to server, not yet read by the shard.
    inbound: VecDeque<u8>,
    /// Server to client, not yet read by the client.
    outbound: Vec<u8>,
    /// Unread outbound bytes the socket holds before `send` takes no more.
    window: usize,
    /// The client reads everything as it arrives; only the count is kept.
    discard: bool,
    /// Bytes the shard wrote, in total.
    written: u64,
    /// Sends that took at least one byte (each one write or `writev` on a real socket).
    writes: u64,
    /// Non-empty buffers handed to those sends (a `writev`'s iovecs).
    buffers: u64,
    /// Bytes the shard read, in total.
    read: u64,
    client_fin: bool,
    client_reset: bool,
    server_fin: bool,
    /// The shard closed it, or it was refused (never accepted).
    server_closed: bool,
    /// Unreported: new bytes or an end of stream arrived.
    read_edge: bool,
    /// Unreported: room appeared after `send` took less than offered.
    write_edge: bool,
    /// The last `send` took less than offered: the next room freed is an edge.
    write_blocked: bool,
    /// In the world's edge list.
    listed: bool,
}

impl PipeState {
    fn new() -> PipeState {
        PipeState {
            id: None,
            inbound: VecDeque::new(),
            outbound: Vec::new(),
            window: usize::MAX,
            discard: false,
            written: 0,
            writes: 0,
            buffers: 0,
            read: 0,
            client_fin: false,
            client_reset: false,
            server_fin: false,
            server_closed: false,
            read_edge: false,
            write_edge: false,
            write_blocked: false,
            listed: false,
        }
    }

    fn room(&self) -> usize {
        if self.discard {
            usize::MAX
        } else {
            self.window.saturating_sub(self.outbound.len())
        }
    }
}

/// Everything one driver and its test side share.
struct World {
    clock: SimClock,
    listeners: Vec<Listener>,
    /// Every connection ever opened on this host, by pipe number.
    pipes: Vec<PipeState>,
    /// Attached pipes by the slab slot of their `ConnId`.
    by_slot: Vec<Option<usize>>,
    /// Pipes with an unreported edge, each listed once.
    edges: Vec<usize>,
    woken: bool,
    /// Polled at each wait: true when something outside wants the shard awake.
    wake_when: Option<Box<dyn Fn() -> bool>>,
}

impl World {
    /// Mark pipe `p` as having something to report (only once attached: a connection waiting in
    /// the listener's queue is reported when attached).
    fn edge(&mut self, p: usize, readable: bool, writable: bool) {
        let pipe = &mut self.pipes[p];
        if pipe.id.is_none() {
            return;
        }
        pipe.read_edge |= readable;
        pipe.write_edge |= writable;
        if !pipe.listed {
            pipe.listed = true;
            self.edges.push(p);
        }
    }

    /// The pipe attached as `id`.
    fn pipe(&mut self, id: ConnId) -> io::Result<usize> {
        let p = self
            .by_slot
            .get(id.slot() as usize)
            .copied()
            .flatten()
            .filter(|&p| self.pipes[p].id == Some(id));
        p.ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "no such connection"))
    }

    /// Append what is ready to `ready`; returns whether anything was.
    fn collect(&mut self, ready: &mut Vec<Ready>) -> bool {
        let before = ready.len();
        for (n, l) in self.listeners.iter_mut().enumerate() {
            if l.edge && l.open {
                ready.push(Ready::Accept(n));
            }
            l.edge = false;
        }
        for p in self.edges.drain(..) {
            let pipe = &mut self.pipes[p];
            pipe.listed = false;
            let (readable, writable) = (pipe.read_edge, pipe.write_edge);
            pipe.read_edge = false;
            pipe.write_edge = false;
            if let Some(id) = pipe.id {
                ready.push(Ready::Conn {
                    id,
                    readable,
                    writable,
                });
            }
        }
        let woken = std::mem::take(&mut self.woken) || self.wake_when.as_ref().is_some_and(|f| f());
        if woken {
            ready.push(Ready::Wake);
        }
        ready.len() > before
    }
}

/// The driver of one shard. Build it with [`MemoryDriver::new`]; the test keeps the [`Host`].
pub struct MemoryDriver {
    world: Rc<RefCell<World>>,
}

impl fmt::Debug for MemoryDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryDriver").finish_non_exhaustive()
    }
}

impl MemoryDriver {
    /// A driver with `listeners` open listeners on `clock`, and the handle to its far side.
    pub fn new(listeners: usize, clock: &SimClock) -> (MemoryDriver, Host) {
        let world = Rc::new(RefCell::new(World {
            clock: clock.clone(),
            listeners: (0..listeners)
                .map(|_| Listener {
                    open: true,
                    ..Listener::default()
                })
                .collect(),
            pipes: Vec::new(),
            by_slot: Vec::new(),
            edges: Vec::new(),
            woken: false,
            wake_when: None,
        }));
        (
            MemoryDriver {
                world: Rc::clone(&world),
            },
            Host { world },
        )
    }
}

impl Driver for MemoryDriver {
    type Socket = MemorySocket;

    /// Reports what became ready since the last wait. With nothing ready it never sleeps: it
    /// moves the clock to the timeout and returns, or returns at once without a timeout (only
    /// the test, on this same thread, could make something ready).
    fn wait(&mut self, ready: &mut Vec<Ready>, timeout: Option<Duration>) -> io::Result<()> {
        let mut w = self.world.borrow_mut();
        if !w.collect(ready) {
            if let Some(t) = timeout {
                w.clock.advance(t);
            }
        }
        Ok(())
    }

    fn accept(&mut self, listener: usize) -> io::Result<Option<MemorySocket>> {
        let mut w = self.world.borrow_mut();
        Ok(match w.listeners.get_mut(listener) {
            Some(l) if l.open => l.pending.pop_front().map(MemorySocket),
            _ => None,
        })
    }

    fn attach(&mut self, id: ConnId, socket: MemorySocket) -> io::Result<()> {
        let mut w = self.world.borrow_mut();
        let p = socket.0;
        let slot = id.slot() as usize;
        if w.by_slot.len() <= slot {
            w.by_slot.resize(slot + 1, None);
        }
        w.by_slot[slot] = Some(p);
        let pipe = &mut w.pipes[p];
        pipe.id = Some(id);
        // As epoll reports a fresh registration: writable, and readable if bytes (or an end of
        // stream) came before the accept.
        let readable = !pipe.inbound.is_empty() || pipe.client_fin || pipe.client_reset;
        w.edge(p, readable, true);
        Ok(())
    }

    fn recv(&mut self, id: ConnId, buf: &mut [u8]) -> io::Result<usize> {
        let mut w = self.world.borrow_mut();
        let p = w.pipe(id)?;
        let pipe = &mut w.pipes[p];
        if pipe.client_reset {
            return Err(io::ErrorKind::ConnectionReset.into());
        }
        if pipe.inbound.is_empty() {
            return if pipe.client_fin {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = buf.len().min(pipe.inbound.len());
        for (dst, src) in buf.iter_mut().zip(pipe.inbound.drain(..n)) {
            *dst = src;
        }
        pipe.read += n as u64;
        if n < buf.len() && pipe.client_fin {
            // The shard stops at a short read: report the end of stream behind it again.
            w.edge(p, true, false);
        }
        Ok(n)
    }

    fn send(&mut self, id: ConnId, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut w = self.world.borrow_mut();
        let p = w.pipe(id)?;
        let pipe = &mut w.pipes[p];
        if pipe.client_reset {
            return Err(io::ErrorKind::ConnectionReset.into());
        }
        if pipe.server_fin {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let offered: usize = bufs.iter().map(|b| b.len()).sum();
        let room = pipe.room();
        if offered > 0 && room == 0 {
            pipe.write_blocked = true;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let take = offered.min(room);
        if !pipe.discard {
            let mut left = take;
            for b in bufs {
                let n = b.len().min(left);
                pipe.outbound.extend_from_slice(&b[..n]);
                left -= n;
            }
        }
        pipe.written += take as u64;
        if take > 0 {
            pipe.writes += 1;
            pipe.buffers += bufs.iter().filter(|b| !b.is_empty()).count() as u64;
        }
        if take < offered {
            pipe.write_blocked = true;
        }
        Ok(take)
    }

    fn shutdown_write(&mut self, id: ConnId) {
        let mut w = self.world.borrow_mut();
        if let Ok(p) = w.pipe(id) {
            w.pipes[p].server_fin = true;
        }
    }

    fn close(&mut self, id: ConnId) {
        let mut w = self.world.borrow_mut();
        if let Ok(p) = w.pipe(id) {
            w.by_slot[id.slot() as usize] = None;
            let pipe = &mut w.pipes[p];
            pipe.id = None;
            pipe.server_closed = true;
            pipe.inbound = VecDeque::new();
        }
    }

    fn stop_accepting(&mut self) {
        let mut w = self.world.borrow_mut();
        let refused: Vec<usize> = w
            .listeners
            .iter_mut()
            .flat_map(|l| {
                l.open = false;
                l.pending.drain(..)
            })
            .collect();
        for p in refused {
            w.pipes[p].server_closed = true;
        }
    }

    fn now(&self) -> Instant {
        self.world.borrow().clock.now()
    }
}

/// The test's side of one [`MemoryDriver`]: its listeners' far end and its waker. Clones share
/// the driver.
#[derive(Clone)]
pub struct Host {
    world: Rc<RefCell<World>>,
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host").finish_non_exhaustive()
    }
}

impl Host {
    /// Open a connection on listener `listener`. On a closed (or missing) listener the
    /// connection is refused: its pipe is closed from the start.
    pub fn connect(&self, listener: usize) -> Pipe {
        let mut w = self.world.borrow_mut();
        let p = w.pipes.len();
        w.pipes.push(PipeState::new());
        match w.listeners.get_mut(listener) {
            Some(l) if l.open => {
                l.pending.push_back(p);
                l.edge = true;
            }
            _ => w.pipes[p].server_closed = true,
        }
        Pipe {
            world: Rc::clone(&self.world),
            p,
        }
    }

    /// Wake the shard: its next wait reports [`Ready::Wake`] (what a signal handler or another
    /// shard does through a real driver's waker).
    pub fn wake(&self) {
        self.world.borrow_mut().woken = true;
    }

    /// Also report [`Ready::Wake`] at every wait where `pending` says so: for a shard on a
    /// `Mesh`, a message in its inbox (`move || mesh.depth(shard) > 0`), standing in for the
    /// waker the mesh would use across threads.
    pub fn wake_when(&self, pending: impl Fn() -> bool + 'static) {
        self.world.borrow_mut().wake_when = Some(Box::new(pending));
    }

    /// Whether listener `listener` still takes connections.
    pub fn is_accepting(&self, listener: usize) -> bool {
        self.world
            .borrow()
            .listeners
            .get(listener)
            .is_some_and(|l| l.open)
    }

    /// Connections attached to the shard and not closed by it.
    pub fn open_connections(&self) -> usize {
        self.world.borrow().by_slot.iter().flatten().count()
    }

    /// The driver's clock.
    pub fn clock(&self) -> SimClock {
        self.world.borrow().clock.clone()
    }
}

/// The client's end of one connection.
pub struct Pipe {
    world: Rc<RefCell<World>>,
    p: usize,
}

impl fmt::Debug for Pipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipe").field("pipe", &self.p).finish()
    }
}

impl Pipe {
    fn with<T>(&self, f: impl FnOnce(&mut PipeState) -> T) -> T {
        f(&mut self.world.borrow_mut().pipes[self.p])
    }

    /// Send `bytes` to the server (ignored once the client reset or half-closed, or the server
    /// closed).
    pub fn write(&self, bytes: &[u8]) {
        let mut w = self.world.borrow_mut();
        let pipe = &mut w.pipes[self.p];
        if pipe.client_fin || pipe.client_reset || pipe.server_closed || bytes.is_empty() {
            return;
        }
        pipe.inbound.extend(bytes);
        w.edge(self.p, true, false);
    }

    /// Take everything the server wrote and the client has not read yet (freeing that room).
    pub fn read(&self) -> Vec<u8> {
        self.read_up_to(usize::MAX)
    }

    /// Take at most `max` of the bytes the server wrote (oldest first).
    pub fn read_up_to(&self, max: usize) -> Vec<u8> {
        let mut w = self.world.borrow_mut();
        let pipe = &mut w.pipes[self.p];
        let n = max.min(pipe.outbound.len());
        let bytes: Vec<u8> = pipe.outbound.drain(..n).collect();
        self.freed(&mut w);
        bytes
    }

    /// Let the socket hold at most `bytes` unread bytes towards the client: past them `send`
    /// takes less, then `WouldBlock` (0: a peer that does not read). Default: no limit.
    pub fn set_window(&self, bytes: usize) {
        let mut w = self.world.borrow_mut();
        w.pipes[self.p].window = bytes;
        self.freed(&mut w);
    }

    /// The client reads everything the server writes as it arrives, keeping only the count
    /// ([`Pipe::written`]): a fast reader that costs no memory, for benches.
    pub fn discard_incoming(&self) {
        let mut w = self.world.borrow_mut();
        let pipe = &mut w.pipes[self.p];
        pipe.discard = true;
        pipe.outbound = Vec::new();
        self.freed(&mut w);
    }

    /// After room appeared: a writable edge if the last `send` was refused or short.
    fn freed(&self, w: &mut World) {
        let pipe = &mut w.pipes[self.p];
        if pipe.write_blocked && pipe.room() > 0 {
            pipe.write_blocked = false;
            w.edge(self.p, false, true);
        }
    }

    /// Half-close: the server reads the end of stream after the bytes already sent.
    pub fn shutdown_write(&self) {
        let mut w = self.world.borrow_mut();
        w.pipes[self.p].client_fin = true;
        w.edge(self.p, true, false);
    }

    /// Abort the connection: the server's next `recv` or `send` fails with `ConnectionReset`.
    pub fn reset(&self) {
        let mut w = self.world.borrow_mut();
        w.pipes[self.p].client_reset = true;
        w.edge(self.p, true, true);
    }

    /// The server closed the connection (or refused it at the listener).
    pub fn is_closed(&self) -> bool {
        self.with(|p| p.server_closed)
    }

    /// The server sent its FIN (or closed).
    pub fn is_write_shut(&self) -> bool {
        self.with(|p| p.server_fin || p.server_closed)
    }

    /// The id the shard attached the connection under, while attached.
    pub fn id(&self) -> Option<ConnId> {
        self.with(|p| p.id)
    }

    /// Bytes the client sent that the server has not read.
    pub fn unread_by_server(&self) -> usize {
        self.with(|p| p.inbound.len())
    }

    /// Bytes the server read, in total.
    pub fn read_by_server(&self) -> u64 {
        self.with(|p| p.read)
    }

    /// Bytes the server wrote, in total (read by the client or not).
    pub fn written(&self) -> u64 {
        self.with(|p| p.written)
    }

    /// Sends that took bytes, in total: how many `write`/`writev` calls a socket would have seen.
    pub fn writes(&self) -> u64 {
        self.with(|p| p.writes)
    }

    /// Non-empty buffers in those sends, in total: how many iovecs their `writev`s carried.
    pub fn buffers(&self) -> u64 {
        self.with(|p| p.buffers)
    }

    /// Bytes the server wrote that the client has not read.
    pub fn unread_by_client(&self) -> usize {
        self.with(|p| p.outbound.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(slot: u32) -> ConnId {
        ConnId::new(0, slot, 1)
    }

    /// A driver with one connection attached as `id(3)`.
    fn attached() -> (MemoryDriver, Host, Pipe) {
        let clock = SimClock::new();
        let (mut d, host) = MemoryDriver::new(1, &clock);
        let pipe = host.connect(0);
        let mut ready = Vec::new();
        d.wait(&mut ready, None).unwrap();
        assert_eq!(ready, [Ready::Accept(0)]);
        let s = d.accept(0).unwrap().unwrap();
        assert!(d.accept(0).unwrap().is_none());
        d.attach(id(3), s).unwrap();
        (d, host, pipe)
    }

    fn wait(d: &mut MemoryDriver, timeout: Option<Duration>) -> Vec<Ready> {
        let mut ready = Vec::new();
        d.wait(&mut ready, timeout).unwrap();
        ready
    }

    fn conn(readable: bool, writable: bool) -> Ready {
        Ready::Conn {
            id: id(3),
            readable,
            writable,
        }
    }

    #[test]
    fn readiness_is_reported_once_per_edge() {
        let (mut d, _host, pipe) = attached();
        assert_eq!(wait(&mut d, None), [conn(false, true)]);
        assert_eq!(wait(&mut d, None), []);
        pipe.write(b"abc");
        pipe.write(b"def");
        assert_eq!(wait(&mut d, None), [conn(true, false)]);
        let mut buf = [0u8; 4];
        assert_eq!(d.recv(id(3), &mut buf).unwrap(), 4);
        assert_eq!(&buf, b"abcd");
        assert_eq!(d.recv(id(3), &mut buf).unwrap(), 2);
        assert_eq!(
            d.recv(id(3), &mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        assert_eq!(wait(&mut d, None), []);
    }

    #[test]
    fn end_of_stream_behind_a_short_read_is_reported_again() {
        let (mut d, _host, pipe) = attached();
        wait(&mut d, None);
        pipe.write(b"bye");
        pipe.shutdown_write();
        assert_eq!(wait(&mut d, None), [conn(true, false)]);
        let mut buf = [0u8; 16];
        assert_eq!(d.recv(id(3), &mut buf).unwrap(), 3);
        assert_eq!(wait(&mut d, None), [conn(true, false)]);
        assert_eq!(d.recv(id(3), &mut buf).unwrap(), 0);
    }

    #[test]
    fn a_full_window_refuses_then_reports_room() {
        let (mut d, _host, pipe) = attached();
        wait(&mut d, None);
        pipe.set_window(4);
        let bufs = [IoSlice::new(b"abc"), IoSlice::new(b"def")];
        assert_eq!(d.send(id(3), &bufs).unwrap(), 4);
        assert_eq!(
            d.send(id(3), &[IoSlice::new(b"ef")]).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        assert_eq!(wait(&mut d, None), []);
        assert_eq!(pipe.read_up_to(1), b"a");
        assert_eq!(wait(&mut d, None), [conn(false, true)]);
        assert_eq!(d.send(id(3), &[IoSlice::new(b"ef")]).unwrap(), 1);
        assert_eq!(pipe.read(), b"bcde");
    }

    #[test]
    fn idle_wait_moves_the_clock_to_its_timeout() {
        let (mut d, host, pipe) = attached();
        let clock = host.clock();
        wait(&mut d, Some(Duration::from_secs(3)));
        assert_eq!(clock.elapsed(), Duration::ZERO, "something was ready");
        wait(&mut d, Some(Duration::from_secs(3)));
        assert_eq!(clock.elapsed(), Duration::from_secs(3));
        assert_eq!(d.now(), clock.now());
        pipe.write(b"x");
        host.wake();
        assert_eq!(
            wait(&mut d, Some(Duration::from_secs(3))),
            [conn(true, false), Ready::Wake]
        );
        assert_eq!(clock.elapsed(), Duration::from_secs(3));
    }

    #[test]
    fn closed_connections_and_listeners_report_nothing() {
        let (mut d, host, pipe) = attached();
        pipe.write(b"x");
        d.close(id(3));
        assert!(pipe.is_closed());
        assert_eq!(wait(&mut d, None), []);
        assert!(d.recv(id(3), &mut [0u8; 4]).is_err());
        let waiting = host.connect(0);
        d.stop_accepting();
        assert!(waiting.is_closed(), "refused when the listener closed");
        assert!(host.connect(0).is_closed());
        assert!(!host.is_accepting(0));
        assert_eq!(wait(&mut d, None), []);
    }
}
