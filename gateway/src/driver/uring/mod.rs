//! The completion driver: one io_uring per shard, issued only from the shard's thread. Accepts
//! come from a multishot accept on each SO_REUSEPORT listener; receives from one multishot
//! receive per connection that picks buffers from a per-shard provided-buffer ring; cross-shard
//! wake-ups from a multishot poll on an epoll instance that holds only the shard's mio `Waker`
//! (so the shard mesh keeps its `Arc<Waker>`); timers from the wait's own timeout.
//!
//! The readiness-shaped [`Driver`] contract is met by keeping each connection's completed
//! receive buffers until [`Driver::recv`] copies them into the shard's buffer, which hands each
//! one back to the ring as soon as it is drained. Sends are non-blocking vectored writes of the
//! shard's iovecs (shared frames are referenced, never copied per connection); when the socket
//! is full, a one-shot `POLLOUT` poll in the ring reports it writable again.
//!
//! Memory the kernel writes to: only the provided buffers (and their ring of descriptors). They
//! belong to the driver, not to a connection, so closing a connection never frees memory a
//! pending operation may still fill: its receive is cancelled, and the final completion, whenever
//! it arrives, only returns its buffer to the ring. Dropping the driver cancels everything and
//! waits for every final completion before the buffers are freed (and leaks them if the kernel
//! does not answer within a bound, rather than free memory it may write).

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use mio::{Events, Poll, Token, Waker};
use tracing::{debug, info, warn};

use super::{Driver, Ready};
use crate::conn::ConnId;
use crate::metrics::ShardMetrics;

use self::buf_ring::{BufRing, BGID};
pub use self::probe::probe;

mod buf_ring;
mod probe;

/// Set to a non-empty value to make the probe report io_uring unavailable, as a kernel with
/// `kernel.io_uring_disabled = 2` would (for tests of the fallback path).
pub const UNAVAILABLE_ENV: &str = "GATEWAY_URING_UNAVAILABLE";
/// Default number of provided receive buffers per shard.
pub const DEFAULT_BUFFERS: u16 = 512;
/// Bytes per provided receive buffer.
pub const BUFFER_BYTES: u32 = 16 * 1024;
/// Submission queue entries per ring (the completion queue holds four times as many).
const SQ_ENTRIES: u32 = 1024;
/// Received bytes a connection may hold before its multishot receive is cancelled (re-armed
/// once the shard drains them): without it a connection the shard stopped reading (outbox over
/// the limit) would keep taking bytes from the socket, and TCP backpressure would never start.
const HOLD_LIMIT_BYTES: u32 = 64 * 1024;
/// How long no receive must have taken a buffer before the buffers' memory is returned
/// ([`BufRing::trim`]): a storm's worth of buffers goes back this long after it passed.
const TRIM_QUIET: Duration = Duration::from_millis(250);
/// How long dropping the driver waits for cancelled operations to complete.
const DROP_WAIT: Duration = Duration::from_secs(2);

/// What a completion belongs to (the top bits of its `user_data`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Accept = 1,
    Recv = 2,
    PollOut = 3,
    Wake = 4,
    Cancel = 5,
}

const OP_SHIFT: u32 = 60;
const SLOT_SHIFT: u32 = 28;
const SEQ_MASK: u64 = (1 << SLOT_SHIFT) - 1;

/// `user_data` naming `op` on slot `slot` (a listener index or a connection's slab slot) for
/// the connection attached as number `seq` (so completions for a closed connection whose slot
/// was reused are recognised as stale; `seq` wraps after 2^28 attaches).
fn token(op: Op, slot: u32, seq: u32) -> u64 {
    ((op as u64) << OP_SHIFT) | (u64::from(slot) << SLOT_SHIFT) | (u64::from(seq) & SEQ_MASK)
}

/// The id of the connection in `slot` with generation `gen`, on the driver's node and shard.
fn conn_id(owner: Option<(u16, u8)>, slot: u32, gen: u16) -> ConnId {
    let (node, shard) = owner.unwrap_or_default();
    ConnId::on_node(node, shard, slot, u32::from(gen))
}

fn untoken(data: u64) -> (Option<Op>, u32, u32) {
    let op = match data >> OP_SHIFT {
        1 => Some(Op::Accept),
        2 => Some(Op::Recv),
        3 => Some(Op::PollOut),
        4 => Some(Op::Wake),
        5 => Some(Op::Cancel),
        _ => None,
    };
    // Both fit: the slot is 32 bits below the op, the sequence 28 bits.
    let slot = ((data >> SLOT_SHIFT) & u64::from(u32::MAX)) as u32;
    (op, slot, (data & SEQ_MASK) as u32)
}

/// How a connection's multishot receive stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RecvState {
    /// Armed in the ring.
    Armed,
    /// Not armed: re-armed once the shard drains what the connection holds.
    Idle,
    /// Ended by an empty buffer ring: re-armed by `wait` once buffers come back.
    Starved,
    /// End of stream or an error: never re-armed.
    Done,
}

/// The end of a connection's list of held buffers.
const NO_BUF: u16 = u16::MAX;

/// A completed receive not yet drained, one per buffer id: bytes `start..end` of the buffer,
/// and the next buffer the same connection holds.
#[derive(Clone, Copy, Debug)]
struct Held {
    start: u32,
    end: u32,
    next: u16,
}

/// The buffers one connection holds, oldest first: a list threaded through the driver's
/// per-buffer [`Held`] table, so a connection owns no allocation for what it receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct HeldList {
    head: u16,
    tail: u16,
}

impl HeldList {
    const EMPTY: HeldList = HeldList {
        head: NO_BUF,
        tail: NO_BUF,
    };

    fn is_empty(&self) -> bool {
        self.head == NO_BUF
    }

    /// Append buffer `bid`, holding bytes `0..n`.
    fn push(&mut self, table: &mut [Held], bid: u16, n: u32) {
        let Some(h) = table.get_mut(usize::from(bid)) else {
            return;
        };
        *h = Held {
            start: 0,
            end: n,
            next: NO_BUF,
        };
        match table.get_mut(usize::from(self.tail)) {
            Some(last) => last.next = bid,
            None => self.head = bid,
        }
        self.tail = bid;
    }

    /// Remove the oldest buffer and return its id.
    fn pop(&mut self, table: &[Held]) -> Option<u16> {
        let bid = self.head;
        let h = table.get(usize::from(bid))?;
        self.head = h.next;
        if self.head == NO_BUF {
            self.tail = NO_BUF;
        }
        Some(bid)
    }
}

/// Bytes copied out of buffers when the ring ran dry, not yet drained.
struct Spill {
    bytes: Vec<u8>,
    pos: usize,
}

/// [`Stream::end`] while nothing follows the held bytes.
const NO_END: i32 = -1;

/// [`Stream::flags`]: a cancel of the armed receive was submitted (hold limit).
const CANCELLING: u8 = 1;
/// A one-shot `POLLOUT` poll is armed.
const POLL_OUT: u8 = 2;
/// Reported readable (writable) in this turn already.
const READ_REPORTED: u8 = 4;
const WRITE_REPORTED: u8 = 8;
/// Bytes were copied out of buffers into the driver's spill table for this connection.
const SPILLED: u8 = 16;

/// One attached connection. Kept small (24 bytes): an idle connection holds only this.
struct Stream {
    socket: TcpStream,
    seq: u32,
    /// The generation of its id; the slot is its index, and the node and shard are the
    /// driver's ([`UringDriver::owner`]).
    gen: u16,
    held: HeldList,
    /// Bytes received and not yet drained, in `held` or spilled (bounded by the hold limit plus
    /// one buffer).
    held_bytes: u32,
    /// What follows the held bytes: [`NO_END`] nothing yet, `0` end of stream, else an errno.
    end: i32,
    recv: RecvState,
    /// [`CANCELLING`], [`POLL_OUT`], [`READ_REPORTED`], [`WRITE_REPORTED`], [`SPILLED`].
    flags: u8,
}

impl Stream {
    /// Whether this is connection `id` (attached on the driver's node and shard `owner`).
    fn is(&self, owner: Option<(u16, u8)>, id: ConnId) -> bool {
        u32::from(self.gen) == id.generation() && owner == Some((id.node(), id.shard()))
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    fn set(&mut self, flag: u8, on: bool) {
        if on {
            self.flags |= flag;
        } else {
            self.flags &= !flag;
        }
    }
}

struct Listener {
    socket: Option<TcpListener>,
    pending: VecDeque<Result<OwnedFd, i32>>,
    armed: bool,
    turn: u32,
}

/// How the ring was set up (for the log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingMode {
    /// IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN.
    DeferTaskrun,
    /// IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG.
    CoopTaskrun,
    /// No task-run flags.
    Plain,
}

/// The io_uring driver of one shard.
pub struct UringDriver {
    // Field order matters: the ring is dropped before the buffers it may write.
    ring: IoUring,
    bufs: BufRing,
    mode: RingMode,
    /// Submissions wait for the first `wait` on the shard's thread (the ring is created
    /// disabled so that thread, not the one building the driver, becomes its single issuer).
    enabled: bool,
    /// Operations whose final completion has not arrived.
    inflight: usize,
    listeners: Vec<Listener>,
    streams: Vec<Option<Stream>>,
    /// By buffer id: what a completion put there, while a connection holds it.
    held: Vec<Held>,
    next_seq: u32,
    starved: Vec<u32>,
    /// Bytes copied out of buffers when the ring ran dry, by slot (almost always empty).
    spills: std::collections::HashMap<u32, Spill>,
    /// Slots reported in this turn (their `*_REPORTED` flags are cleared at the next wait).
    reported: Vec<u32>,
    /// The node and shard of every connection id attached (set by the first attach).
    owner: Option<(u16, u8)>,
    /// `bufs.lends` when last looked at, and when it was last seen to move.
    lends_seen: u64,
    last_lend: Instant,
    cqes: Vec<(u64, i32, u32)>,
    /// Reports reaped outside `wait` (to make room in a full completion queue).
    deferred: Vec<Ready>,
    turn: u32,
    wake_poll: Poll,
    wake_events: Events,
    wake_turn: u32,
    metrics: Arc<ShardMetrics>,
    /// The empty-ring warning was logged.
    warned_dry: bool,
    /// Dropping: nothing is armed any more.
    stopping: bool,
}

fn build_ring() -> io::Result<(IoUring, RingMode)> {
    let cq = SQ_ENTRIES * 4;
    let first = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_r_disabled()
        .setup_cqsize(cq)
        .build(SQ_ENTRIES);
    if let Ok(ring) = first {
        return Ok((ring, RingMode::DeferTaskrun));
    }
    let second = IoUring::builder()
        .setup_coop_taskrun()
        .setup_taskrun_flag()
        .setup_r_disabled()
        .setup_cqsize(cq)
        .build(SQ_ENTRIES);
    if let Ok(ring) = second {
        return Ok((ring, RingMode::CoopTaskrun));
    }
    let ring = IoUring::builder()
        .setup_r_disabled()
        .setup_cqsize(cq)
        .build(SQ_ENTRIES)?;
    Ok((ring, RingMode::Plain))
}

impl UringDriver {
    /// A driver accepting on `listeners` with `buffers` provided receive buffers (a power of
    /// two); returns it and the waker other threads use to wake it. Counts into `metrics`.
    pub fn new(
        listeners: Vec<TcpListener>,
        buffers: u16,
        metrics: Arc<ShardMetrics>,
    ) -> io::Result<(UringDriver, Arc<Waker>)> {
        let (ring, mode) = build_ring()?;
        let bufs = BufRing::new(buffers, BUFFER_BYTES)?;
        bufs.register(&ring)?;
        let wake_poll = Poll::new()?;
        let waker = Arc::new(Waker::new(wake_poll.registry(), Token(0))?);
        let mut driver = UringDriver {
            ring,
            bufs,
            mode,
            enabled: false,
            inflight: 0,
            listeners: listeners
                .into_iter()
                .map(|l| Listener {
                    socket: Some(l),
                    pending: VecDeque::new(),
                    armed: false,
                    turn: 0,
                })
                .collect(),
            streams: Vec::new(),
            held: vec![
                Held {
                    start: 0,
                    end: 0,
                    next: NO_BUF,
                };
                usize::from(buffers)
            ],
            next_seq: 0,
            starved: Vec::new(),
            spills: std::collections::HashMap::new(),
            reported: Vec::new(),
            owner: None,
            lends_seen: 0,
            last_lend: Instant::now(),
            cqes: Vec::with_capacity(1024),
            deferred: Vec::new(),
            turn: 0,
            wake_poll,
            wake_events: Events::with_capacity(8),
            wake_turn: 0,
            metrics,
            warned_dry: false,
            stopping: false,
        };
        driver.arm_wake()?;
        for n in 0..driver.listeners.len() {
            driver.arm_accept(n)?;
        }
        Ok((driver, waker))
    }

    /// How the ring was set up.
    pub fn mode(&self) -> RingMode {
        self.mode
    }

    /// Queue `entry`; if the submission queue is full, submit what it holds first.
    fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        for _ in 0..8 {
            // SAFETY: no entry this driver queues points at memory: receives select provided
            // buffers (owned by `self.bufs`, alive until every operation completed), and
            // accepts, polls and cancels carry only descriptors and numbers.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                self.inflight += 1;
                return Ok(());
            }
            if !self.enabled {
                break;
            }
            match self.ring.submit() {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    // Completions must be reaped before more submissions are taken: keep the
                    // reports for the next `wait`.
                    let mut ready = std::mem::take(&mut self.deferred);
                    self.reap(&mut ready);
                    self.deferred = ready;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            "io_uring submission queue full",
        ))
    }

    fn arm_wake(&mut self) -> io::Result<()> {
        if self.stopping {
            return Ok(());
        }
        let fd = types::Fd(self.wake_poll.as_raw_fd());
        let entry = opcode::PollAdd::new(fd, libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(token(Op::Wake, 0, 0));
        self.push(entry)
    }

    fn arm_accept(&mut self, n: usize) -> io::Result<()> {
        if self.stopping {
            return Ok(());
        }
        let Some(l) = self.listeners.get_mut(n) else {
            return Ok(());
        };
        let Some(socket) = &l.socket else {
            return Ok(());
        };
        if l.armed {
            return Ok(());
        }
        let entry = opcode::AcceptMulti::new(types::Fd(socket.as_raw_fd()))
            .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            .build()
            .user_data(token(Op::Accept, n as u32, 0));
        l.armed = true;
        let r = self.push(entry);
        if r.is_err() {
            if let Some(l) = self.listeners.get_mut(n) {
                l.armed = false;
            }
        }
        r
    }

    /// Arm the multishot receive of the connection in `slot`.
    fn arm_recv(&mut self, slot: u32) {
        if self.stopping {
            return;
        }
        let Some(Some(s)) = self.streams.get_mut(slot as usize) else {
            return;
        };
        if matches!(s.recv, RecvState::Armed | RecvState::Done) {
            return;
        }
        let entry = opcode::RecvMulti::new(types::Fd(s.socket.as_raw_fd()), BGID)
            .build()
            .user_data(token(Op::Recv, slot, s.seq));
        s.recv = RecvState::Armed;
        s.set(CANCELLING, false);
        if self.push(entry).is_err() {
            // Retried by `wait` with the starved ones.
            if let Some(Some(s)) = self.streams.get_mut(slot as usize) {
                s.recv = RecvState::Starved;
            }
            self.starved.push(slot);
        }
    }

    fn cancel(&mut self, target: u64) {
        let entry = opcode::AsyncCancel::new(target)
            .build()
            .user_data(token(Op::Cancel, 0, 0));
        // A full queue only delays the cancel of an operation on a closed socket.
        let _ = self.push(entry);
    }
}

impl UringDriver {
    /// Handle every completion in the queue, appending what became ready to `ready`.
    fn reap(&mut self, ready: &mut Vec<Ready>) {
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.extend(
            self.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        for &(data, res, flags) in &cqes {
            let last = !cqueue::more(flags);
            if last {
                self.inflight = self.inflight.saturating_sub(1);
            }
            let (op, slot, seq) = untoken(data);
            match op {
                Some(Op::Recv) => self.on_recv(slot, seq, res, flags, last, ready),
                Some(Op::Accept) => self.on_accept(slot as usize, res, last, ready),
                Some(Op::PollOut) => {
                    if let Some(Some(s)) = self.streams.get_mut(slot as usize) {
                        if s.seq == seq {
                            s.set(POLL_OUT, false);
                            if !s.has(WRITE_REPORTED | READ_REPORTED) {
                                self.reported.push(slot);
                            }
                            if !s.has(WRITE_REPORTED) {
                                s.set(WRITE_REPORTED, true);
                                ready.push(Ready::Conn {
                                    id: conn_id(self.owner, slot, s.gen),
                                    readable: false,
                                    writable: true,
                                });
                            }
                        }
                    }
                }
                Some(Op::Wake) => {
                    // Consume the waker's edge so the epoll instance is quiet until the next wake.
                    let _ = self
                        .wake_poll
                        .poll(&mut self.wake_events, Some(Duration::ZERO));
                    if self.wake_turn != self.turn {
                        self.wake_turn = self.turn;
                        ready.push(Ready::Wake);
                    }
                    if last {
                        let _ = self.arm_wake();
                    }
                }
                Some(Op::Cancel) | None => {}
            }
        }
        cqes.clear();
        self.cqes = cqes;
    }

    fn on_recv(
        &mut self,
        slot: u32,
        seq: u32,
        res: i32,
        flags: u32,
        last: bool,
        ready: &mut Vec<Ready>,
    ) {
        let bid = cqueue::buffer_select(flags);
        if let Some(bid) = bid {
            self.bufs.lend(bid);
            if self.bufs.wants_more() {
                // Few left in the ring: hand the kernel never-used buffers before it runs dry.
                self.bufs.grow();
            }
        }
        let live = matches!(self.streams.get(slot as usize), Some(Some(s)) if s.seq == seq);
        if !live {
            // The connection was closed: its last receives only give their buffers back.
            if let Some(bid) = bid {
                self.bufs.give_back(bid);
            }
            return;
        }
        let Some(Some(s)) = self.streams.get_mut(slot as usize) else {
            return;
        };
        let mut report = false;
        let mut rearm = false;
        let mut cancel = false;
        match (res, bid) {
            (n @ 1.., Some(bid)) => {
                let n = n as u32; // n > 0 and at most the buffer size
                s.held.push(&mut self.held, bid, n);
                s.held_bytes += n;
                report = true;
                if last {
                    s.recv = RecvState::Idle;
                    rearm = s.held_bytes < HOLD_LIMIT_BYTES;
                } else if s.held_bytes >= HOLD_LIMIT_BYTES && !s.has(CANCELLING) {
                    s.set(CANCELLING, true);
                    cancel = true;
                }
            }
            (0, _) => {
                s.end = 0;
                s.recv = RecvState::Done;
                report = true;
            }
            (e, _) if e == -libc::ENOBUFS => {
                if last {
                    s.recv = RecvState::Starved;
                    self.starved.push(slot);
                }
                if self.bufs.grow() {
                    // Never-used buffers were left: the ring is not exhausted, only small.
                    return;
                }
                self.metrics.recv_buffers_exhausted.add(1);
                if !self.warned_dry {
                    self.warned_dry = true;
                    warn!(
                        buffers = self.bufs.count,
                        "io_uring receive buffers ran out; receives resume as the shard drains \
                         them (raise --uring-buffers if this repeats)"
                    );
                }
            }
            (e, _) if e == -libc::ECANCELED => {
                if s.recv == RecvState::Armed {
                    s.recv = RecvState::Idle;
                }
                rearm = s.held_bytes == 0;
            }
            (e, _) if e < 0 => {
                s.end = -e;
                s.recv = RecvState::Done;
                report = true;
            }
            _ => {
                // Data without a buffer cannot happen with buffer selection; treat as an error.
                s.end = libc::EIO;
                s.recv = RecvState::Done;
                report = true;
            }
        }
        if report && !s.has(READ_REPORTED) {
            if !s.has(WRITE_REPORTED) {
                self.reported.push(slot);
            }
            s.set(READ_REPORTED, true);
            ready.push(Ready::Conn {
                id: conn_id(self.owner, slot, s.gen),
                readable: true,
                writable: false,
            });
        }
        if cancel {
            self.cancel(token(Op::Recv, slot, seq));
        }
        if rearm {
            self.arm_recv(slot);
        }
    }

    fn on_accept(&mut self, n: usize, res: i32, last: bool, ready: &mut Vec<Ready>) {
        let Some(l) = self.listeners.get_mut(n) else {
            return;
        };
        if last {
            l.armed = false;
        }
        let mut rearm = false;
        if res >= 0 {
            // SAFETY: a successful accept completion's result is a new descriptor that nothing
            // else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(res) };
            if l.socket.is_none() {
                // Stopped accepting: close it at once (dropping `fd`).
                return;
            }
            l.pending.push_back(Ok(fd));
            rearm = last;
        } else if res == -libc::ECANCELED {
            return;
        } else if res == -libc::ECONNABORTED || res == -libc::EINTR {
            rearm = last;
        } else {
            // Reported by `accept`; re-armed when the shard accepts again (so running out of
            // descriptors never spins).
            l.pending.push_back(Err(-res));
        }
        if !l.pending.is_empty() && l.turn != self.turn {
            l.turn = self.turn;
            ready.push(Ready::Accept(n));
        }
        if rearm {
            let _ = self.arm_accept(n);
        }
    }

    /// Re-arm the receives that found the buffer ring empty. When few buffers are back, the
    /// ones held by connections the shard is not reading (paused) are copied out first, so a
    /// paused connection can never keep the others from receiving.
    fn rearm_starved(&mut self) {
        if self.starved.is_empty() {
            return;
        }
        if self.bufs.free() * 4 < usize::from(self.bufs.published()) {
            for slot in 0..self.streams.len() {
                let Some(Some(s)) = self.streams.get_mut(slot) else {
                    continue;
                };
                while let Some(bid) = s.held.pop(&self.held) {
                    let Some(h) = self.held.get(usize::from(bid)) else {
                        continue;
                    };
                    s.set(SPILLED, true);
                    let spill = self.spills.entry(slot as u32).or_insert_with(|| Spill {
                        bytes: Vec::new(),
                        pos: 0,
                    });
                    spill
                        .bytes
                        .extend_from_slice(self.bufs.bytes(bid, h.start, h.end));
                    self.bufs.give_back(bid);
                }
            }
        }
        for slot in std::mem::take(&mut self.starved) {
            if let Some(Some(s)) = self.streams.get_mut(slot as usize) {
                if s.recv == RecvState::Starved {
                    s.recv = RecvState::Idle;
                    self.arm_recv(slot);
                }
            }
        }
    }

    /// Return the receive buffers' memory once no receive has taken one for [`TRIM_QUIET`];
    /// until then, shorten the wait's `timeout` so the shard comes back to do it even when
    /// nothing else happens. Only with `DEFER_TASKRUN`, where the kernel fills buffers only
    /// inside this thread's `io_uring_enter` calls (see [`BufRing::trim`]).
    fn trim_when_quiet(&mut self, timeout: Option<Duration>) -> Option<Duration> {
        if self.mode != RingMode::DeferTaskrun || !self.bufs.touched() {
            return timeout;
        }
        let now = Instant::now();
        if self.bufs.lends != self.lends_seen {
            self.lends_seen = self.bufs.lends;
            self.last_lend = now;
        }
        let quiet = now.saturating_duration_since(self.last_lend);
        if quiet < TRIM_QUIET {
            let left = TRIM_QUIET - quiet;
            return Some(timeout.map_or(left, |t| t.min(left)));
        }
        let released = self.bufs.trim();
        self.metrics.recv_buffer_trims.add(1);
        debug!(
            released_bytes = released,
            published = self.bufs.published(),
            "io_uring receive buffers' memory returned after a quiet period"
        );
        timeout
    }

    fn stream(&mut self, id: ConnId) -> io::Result<&mut Stream> {
        match self.streams.get_mut(id.slot() as usize) {
            Some(Some(s)) if s.is(self.owner, id) => Ok(s),
            _ => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "no such connection",
            )),
        }
    }
}

impl Driver for UringDriver {
    type Socket = TcpStream;

    fn wait(&mut self, ready: &mut Vec<Ready>, timeout: Option<Duration>) -> io::Result<()> {
        if !self.enabled {
            // This thread becomes the ring's single issuer.
            self.ring.submitter().register_enable_rings()?;
            self.enabled = true;
        }
        self.turn = self.turn.wrapping_add(1);
        for slot in self.reported.drain(..) {
            if let Some(Some(s)) = self.streams.get_mut(slot as usize) {
                s.set(READ_REPORTED | WRITE_REPORTED, false);
            }
        }
        ready.append(&mut self.deferred);
        self.rearm_starved();
        let timeout = self.trim_when_quiet(timeout);
        let res = match timeout {
            _ if !ready.is_empty() => self.ring.submit(),
            Some(t) => {
                let ts = types::Timespec::new()
                    .sec(t.as_secs())
                    .nsec(t.subsec_nanos());
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
            None => self.ring.submit_and_wait(1),
        };
        match res {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
                ) => {}
            Err(e) => return Err(e),
        }
        self.reap(ready);
        Ok(())
    }

    fn accept(&mut self, listener: usize) -> io::Result<Option<TcpStream>> {
        let Some(l) = self.listeners.get_mut(listener) else {
            return Ok(None);
        };
        match l.pending.pop_front() {
            Some(Ok(fd)) => {
                let stream = TcpStream::from(fd);
                // Frames are written whole and batched per loop turn: Nagle only adds delay.
                let _ = stream.set_nodelay(true);
                Ok(Some(stream))
            }
            Some(Err(errno)) => Err(io::Error::from_raw_os_error(errno)),
            None => {
                self.arm_accept(listener)?;
                Ok(None)
            }
        }
    }

    fn attach(&mut self, id: ConnId, socket: TcpStream) -> io::Result<()> {
        let owner = (id.node(), id.shard());
        if *self.owner.get_or_insert(owner) != owner {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "connection id of another shard",
            ));
        }
        let slot = id.slot() as usize;
        if self.streams.len() <= slot {
            self.streams.resize_with(slot + 1, || None);
        }
        self.next_seq = self.next_seq.wrapping_add(1);
        self.streams[slot] = Some(Stream {
            socket,
            gen: id.generation() as u16, // 16 bits by construction
            seq: self.next_seq & SEQ_MASK as u32,
            held: HeldList::EMPTY,
            held_bytes: 0,
            end: NO_END,
            recv: RecvState::Idle,
            flags: 0,
        });
        self.spills.remove(&id.slot());
        self.arm_recv(id.slot());
        Ok(())
    }

    fn recv(&mut self, id: ConnId, buf: &mut [u8]) -> io::Result<usize> {
        let slot = id.slot();
        let bufs = &mut self.bufs;
        let table = &mut self.held;
        let s = match self.streams.get_mut(slot as usize) {
            Some(Some(s)) if s.is(self.owner, id) => s,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "no such connection",
                ))
            }
        };
        let mut n = 0;
        if s.has(SPILLED) {
            if let Some(spill) = self.spills.get_mut(&slot) {
                let rest = spill.bytes.get(spill.pos..).unwrap_or_default();
                let take = rest.len().min(buf.len());
                buf[..take].copy_from_slice(&rest[..take]);
                spill.pos += take;
                n = take;
                if spill.pos >= spill.bytes.len() {
                    // An idle connection holds no buffer.
                    self.spills.remove(&slot);
                    s.set(SPILLED, false);
                }
            } else {
                s.set(SPILLED, false);
            }
        }
        while n < buf.len() && !s.held.is_empty() {
            let bid = s.held.head;
            let Some(h) = table.get_mut(usize::from(bid)) else {
                break;
            };
            let bytes = bufs.bytes(bid, h.start, h.end);
            let take = bytes.len().min(buf.len() - n);
            buf[n..n + take].copy_from_slice(&bytes[..take]);
            n += take;
            h.start += take as u32; // take <= the buffer size, a u32
            if h.start >= h.end {
                s.held.pop(table);
                bufs.give_back(bid);
            }
        }
        s.held_bytes = s.held_bytes.saturating_sub(n as u32); // n <= held + spilled bytes
        let drained = s.held.is_empty() && !s.has(SPILLED);
        let end = s.end;
        if n > 0 {
            if drained && end != NO_END {
                // A short read means "drained for now", but the end of stream (or an error)
                // already arrived behind these bytes: report it again at the next wait.
                self.deferred.push(Ready::Conn {
                    id,
                    readable: true,
                    writable: false,
                });
            } else if drained && s.recv == RecvState::Idle {
                self.arm_recv(slot);
            }
            return Ok(n);
        }
        if drained && s.recv == RecvState::Idle {
            self.arm_recv(slot);
        }
        match end {
            NO_END => Err(io::ErrorKind::WouldBlock.into()),
            0 => Ok(0),
            errno => Err(io::Error::from_raw_os_error(errno)),
        }
    }

    fn send(&mut self, id: ConnId, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let s = self.stream(id)?;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let res = match bufs {
            [one] => (&s.socket).write(one),
            _ => (&s.socket).write_vectored(bufs),
        };
        let short = match &res {
            Ok(n) => *n < total,
            Err(e) => e.kind() == io::ErrorKind::WouldBlock,
        };
        if short && !s.has(POLL_OUT) {
            s.set(POLL_OUT, true);
            let entry = opcode::PollAdd::new(types::Fd(s.socket.as_raw_fd()), libc::POLLOUT as u32)
                .build()
                .user_data(token(Op::PollOut, id.slot(), s.seq));
            if let Err(e) = self.push(entry) {
                if let Ok(s) = self.stream(id) {
                    s.set(POLL_OUT, false);
                }
                return Err(e);
            }
        }
        res
    }

    fn shutdown_write(&mut self, id: ConnId) {
        if let Ok(s) = self.stream(id) {
            let _ = s.socket.shutdown(Shutdown::Write);
        }
    }

    fn peer_addr(&self, id: ConnId) -> Option<std::net::SocketAddr> {
        match self.streams.get(id.slot() as usize)? {
            Some(s) if s.is(self.owner, id) => s.socket.peer_addr().ok(),
            _ => None,
        }
    }

    fn close(&mut self, id: ConnId) {
        let slot = id.slot();
        let Some(entry) = self.streams.get_mut(slot as usize) else {
            return;
        };
        if !matches!(entry, Some(s) if s.is(self.owner, id)) {
            return;
        }
        let Some(s) = entry.take() else {
            return;
        };
        let mut held = s.held;
        while let Some(bid) = held.pop(&self.held) {
            self.bufs.give_back(bid);
        }
        // The kernel holds its own reference to the socket while an operation is pending, so
        // cancel them: the socket really closes (FIN or RST) when the last one completes.
        if s.recv == RecvState::Armed {
            self.cancel(token(Op::Recv, slot, s.seq));
        }
        if s.has(POLL_OUT) {
            self.cancel(token(Op::PollOut, slot, s.seq));
        }
        if s.has(SPILLED) {
            self.spills.remove(&slot);
        }
        drop(s);
    }

    fn stop_accepting(&mut self) {
        for n in 0..self.listeners.len() {
            let armed = self.listeners[n].armed;
            if armed {
                self.cancel(token(Op::Accept, n as u32, 0));
            }
            let l = &mut self.listeners[n];
            l.socket = None;
            // Accepted but not yet taken: closed now (dropping them).
            l.pending.clear();
        }
    }
}

impl Drop for UringDriver {
    fn drop(&mut self) {
        info!(
            recv_buffers_exhausted = self.metrics.recv_buffers_exhausted.get(),
            "io_uring driver stopped"
        );
        self.stopping = true;
        // Close every socket we still hold; the kernel keeps its own references until the
        // cancels below complete.
        self.streams.clear();
        for l in &mut self.listeners {
            l.socket = None;
            l.pending.clear();
        }
        if self.inflight == 0 || !self.enabled {
            // Nothing was ever submitted, or everything completed: no operation can select a
            // buffer any more.
            let _ = self.ring.submitter().unregister_buf_ring(BGID);
            return;
        }
        let entry = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(token(Op::Cancel, 0, 0));
        let _ = self.push(entry);
        let deadline = Instant::now() + DROP_WAIT;
        let mut ready = Vec::new();
        while self.inflight > 0 && Instant::now() < deadline {
            let ts = types::Timespec::new().nsec(50_000_000);
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            self.reap(&mut ready);
            ready.clear();
        }
        if self.inflight > 0 {
            // The kernel might still write into the buffers: never free them.
            self.bufs.leak = true;
        } else {
            let _ = self.ring.submitter().unregister_buf_ring(BGID);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_at_the_edges_of_each_field() {
        for op in [Op::Accept, Op::Recv, Op::PollOut, Op::Wake, Op::Cancel] {
            for slot in [0, 1, u32::MAX] {
                for seq in [0, 1, SEQ_MASK as u32] {
                    assert_eq!(untoken(token(op, slot, seq)), (Some(op), slot, seq));
                }
            }
        }
    }

    #[test]
    fn a_sequence_past_28_bits_wraps_without_touching_the_slot() {
        let (op, slot, seq) = untoken(token(Op::Recv, 7, (1 << 28) | 5));
        assert_eq!((op, slot, seq), (Some(Op::Recv), 7, 5));
    }

    #[test]
    fn held_lists_keep_each_connections_buffers_in_arrival_order() {
        let mut table = vec![
            Held {
                start: 0,
                end: 0,
                next: NO_BUF
            };
            8
        ];
        let (mut a, mut b) = (HeldList::EMPTY, HeldList::EMPTY);
        a.push(&mut table, 5, 10);
        b.push(&mut table, 2, 20);
        a.push(&mut table, 0, 30);
        a.push(&mut table, 7, 40);
        b.push(&mut table, 3, 50);
        assert_eq!((table[0].start, table[0].end), (0, 30));
        let drain = |l: &mut HeldList, t: &[Held]| std::iter::from_fn(|| l.pop(t)).collect();
        let got: Vec<u16> = drain(&mut a, &table);
        assert_eq!(got, [5, 0, 7]);
        assert!(a.is_empty());
        assert_eq!(a, HeldList::EMPTY);
        // A reused buffer starts a fresh list.
        a.push(&mut table, 5, 1);
        let got: Vec<u16> = drain(&mut a, &table);
        assert_eq!(got, [5]);
        let got: Vec<u16> = drain(&mut b, &table);
        assert_eq!(got, [2, 3]);
        assert_eq!(b.pop(&table), None);
    }

    #[test]
    fn an_idle_stream_is_small() {
        // What every idle connection costs the driver (the socket, ids, list ends, state).
        assert!(
            std::mem::size_of::<Option<Stream>>() <= 24,
            "{} bytes",
            std::mem::size_of::<Option<Stream>>()
        );
    }

    #[test]
    fn a_stream_keeps_only_the_generation_and_still_names_its_whole_id() {
        let id = ConnId::on_node(0xbeef, 3, (1 << 24) - 1, 0xffff);
        let owner = Some((id.node(), id.shard()));
        assert_eq!(conn_id(owner, id.slot(), id.generation() as u16), id);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let socket = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let s = Stream {
            socket,
            seq: 1,
            gen: id.generation() as u16,
            held: HeldList::EMPTY,
            held_bytes: 0,
            end: NO_END,
            recv: RecvState::Idle,
            flags: 0,
        };
        assert!(s.is(owner, id));
        let stale = ConnId::on_node(0xbeef, 3, id.slot(), 0xfffe);
        assert!(!s.is(owner, stale), "another generation of the slot");
        let elsewhere = ConnId::on_node(0xbeef, 4, id.slot(), id.generation());
        assert!(!s.is(owner, elsewhere), "another shard's id");
        assert!(!s.is(None, id), "nothing attached yet");
    }

    #[test]
    fn unknown_operations_are_not_misread() {
        assert_eq!(untoken(0).0, None);
        assert_eq!(untoken(u64::MAX).0, None);
    }
}
