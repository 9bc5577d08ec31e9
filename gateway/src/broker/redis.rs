//! The Redis transport of the broker thread: two TCP connections on the thread's own mio poll,
//! one in subscribe mode (`SUBSCRIBE`/`UNSUBSCRIBE`, then `message` pushes) and one for
//! `PUBLISH`, both speaking RESP ([`super::resp`]). The shards wake the poll through the
//! uplink's waker, so a publish leaves as soon as a shard's turn ends, with no timer.
//!
//! Outages: a refused or dropped connection, bytes that are not RESP, or a broker that stops
//! answering (a `PING` unanswered for [`STALL`]) close both connections; the node reconnects
//! after an exponential delay with jitter (100 ms doubling to 5 s), then subscribes again to
//! every channel it needs, [`SUBSCRIBE_BATCH`] per command. Meanwhile the uplink says
//! "disconnected": publishes that need other nodes are refused (503) and local delivery goes on.

use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use tracing::{info, warn};

use super::history;
use super::node::{Node, Out};
use super::resp::{self, Parsed, Value};

/// The waker's token (shards woke the thread).
pub const WAKE: Token = Token(0);
const SUB: Token = Token(1);
const CMD: Token = Token(2);

/// First reconnect delay.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest reconnect delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A broker that leaves a request unanswered this long is down.
pub const STALL: Duration = Duration::from_millis(900);
/// How often an idle connection is checked with a `PING`.
const PING_INTERVAL: Duration = Duration::from_millis(250);
/// Channels per `SUBSCRIBE` command when subscribing again after a reconnect.
pub const SUBSCRIBE_BATCH: usize = 500;
/// Output a connection may hold unsent before the broker counts as stalled.
const MAX_UNSENT_BYTES: usize = 64 << 20;
/// A connect that takes longer fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// One connection to Redis.
struct Link {
    stream: Option<TcpStream>,
    connected: bool,
    out: Vec<u8>,
    inb: Vec<u8>,
    /// Requests sent and not answered yet (pings only, on the subscriber link).
    waiting: usize,
    /// When the oldest unanswered request was sent, or the last answer came.
    since: Instant,
    /// Something was answered since the connection was made.
    answered_once: bool,
}

impl Link {
    fn new(now: Instant) -> Link {
        Link {
            stream: None,
            connected: false,
            out: Vec::new(),
            inb: Vec::new(),
            waiting: 0,
            since: now,
            answered_once: false,
        }
    }

    fn reset(&mut self, poll: &Poll) {
        if let Some(mut s) = self.stream.take() {
            let _ = poll.registry().deregister(&mut s);
        }
        self.connected = false;
        self.out.clear();
        self.inb.clear();
        self.waiting = 0;
        self.answered_once = false;
    }

    fn command(&mut self, args: &[&[u8]], now: Instant) {
        resp::encode_command(&mut self.out, args);
        if self.waiting == 0 {
            self.since = now;
        }
        self.waiting += 1;
    }

    fn answered(&mut self, now: Instant) {
        self.waiting = self.waiting.saturating_sub(1);
        self.since = now;
        self.answered_once = true;
    }

    fn stalled(&self, now: Instant) -> bool {
        self.waiting > 0 && now.saturating_duration_since(self.since) > STALL
    }

    /// Write what is queued; `Err` when the connection broke.
    fn flush(&mut self) -> io::Result<()> {
        let Some(s) = self.stream.as_mut().filter(|_| self.connected) else {
            return Ok(());
        };
        let mut sent = 0;
        while sent < self.out.len() {
            match s.write(&self.out[sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.drain(..sent);
        if self.out.len() > MAX_UNSENT_BYTES {
            return Err(io::Error::other("the broker does not read what it is sent"));
        }
        Ok(())
    }

    /// Read what arrived; `Err` at end of stream or on an error.
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let Some(s) = self.stream.as_mut() else {
            return Ok(());
        };
        loop {
            match s.read(buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.inb.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The complete values read so far.
    fn values(&mut self) -> Result<Vec<Value>, resp::RespError> {
        let mut values = Vec::new();
        let mut at = 0;
        while let Parsed::Value(v, n) = resp::parse(&self.inb[at..])? {
            values.push(v);
            at += n;
        }
        self.inb.drain(..at);
        Ok(values)
    }
}

/// Where the connections stand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting to try again.
    Down { retry_at: Instant },
    /// TCP connects under way.
    Connecting { deadline: Instant },
    /// Both connections are open and have sent their first commands; Redis has not answered
    /// on both yet (a stopped server still completes TCP handshakes).
    Greeting,
    /// Redis answers on both connections.
    Up,
}

impl Phase {
    /// Whether commands may be written.
    fn open(self) -> bool {
        matches!(self, Phase::Greeting | Phase::Up)
    }
}

/// The Redis transport. See the module doc.
pub struct Redis {
    addr: String,
    poll: Poll,
    node: Node,
    sub: Link,
    cmd: Link,
    phase: Phase,
    backoff: Duration,
    /// Connections established so far (the first is not a reconnect).
    established: u64,
    rng: u64,
    outs: Vec<Out>,
    /// Per command sent on the command connection, in order: the query its answer goes to.
    expect: VecDeque<Option<u64>>,
}

impl Redis {
    /// The transport for the Redis at `addr` (`host:port`) on `poll`, whose waker uses
    /// [`WAKE`].
    pub fn new(addr: String, poll: Poll, node: Node) -> Redis {
        let now = Instant::now();
        let mut h = RandomState::new().build_hasher();
        h.write_u64(0x9e37_79b9_7f4a_7c15);
        Redis {
            addr,
            poll,
            node,
            sub: Link::new(now),
            cmd: Link::new(now),
            phase: Phase::Down { retry_at: now },
            backoff: BACKOFF_MIN,
            established: 0,
            rng: h.finish() | 1,
            outs: Vec::new(),
            expect: VecDeque::new(),
        }
    }

    /// Serve until the process exits.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(64);
        let mut buf = vec![0u8; 64 * 1024];
        let mut next_tick = Instant::now();
        loop {
            let now = Instant::now();
            let mut deadline = next_tick;
            match self.phase {
                Phase::Down { retry_at } => deadline = deadline.min(retry_at),
                Phase::Connecting { deadline: d } => deadline = deadline.min(d),
                Phase::Greeting | Phase::Up => {}
            }
            let timeout = deadline.saturating_duration_since(now);
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    warn!(error = %e, "broker poll failed");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            let now = Instant::now();
            for ev in events.iter() {
                let token = ev.token();
                if token == SUB || token == CMD {
                    if let Err(why) = self.on_ready(token, ev.is_writable(), &mut buf, now) {
                        self.fail(&why, now);
                    }
                }
            }
            if self.phase == Phase::Greeting && self.sub.answered_once && self.cmd.answered_once {
                self.on_confirmed();
            }
            let up = self.phase == Phase::Up;
            self.node.drain_uplink(up, now, &mut self.outs);
            if now >= next_tick || self.phase != Phase::Up {
                next_tick = self.tick(now).min(now + PING_INTERVAL);
            }
            self.send_outs(now);
            self.node.wake_shards();
        }
    }

    fn link(&mut self, token: Token) -> &mut Link {
        if token == SUB {
            &mut self.sub
        } else {
            &mut self.cmd
        }
    }

    fn on_ready(
        &mut self,
        token: Token,
        writable: bool,
        buf: &mut [u8],
        now: Instant,
    ) -> Result<(), String> {
        if let Phase::Connecting { .. } = self.phase {
            let link = self.link(token);
            if writable && !link.connected {
                let Some(s) = link.stream.as_ref() else {
                    return Ok(());
                };
                if let Ok(Some(e)) | Err(e) = s.take_error() {
                    return Err(format!("connect: {e}"));
                }
                if s.peer_addr().is_ok() {
                    link.connected = true;
                }
            }
            if self.sub.connected && self.cmd.connected {
                self.on_established(now);
            }
        }
        let link = self.link(token);
        if !link.connected {
            return Ok(());
        }
        link.flush().map_err(|e| format!("write: {e}"))?;
        link.fill(buf).map_err(|e| format!("read: {e}"))?;
        let values = link.values().map_err(|e| format!("bad reply: {e}"))?;
        for v in values {
            if token == SUB {
                self.on_push(v, now);
            } else {
                if let Value::Error(e) = &v {
                    warn!(error = %String::from_utf8_lossy(e), "broker refused a command");
                }
                self.cmd.answered(now);
                match self.expect.pop_front() {
                    Some(Some(id)) if history::owns(id) => {
                        self.node.on_history_reply(id, Some(v), &mut self.outs)
                    }
                    Some(Some(id)) => self.node.on_answer(id, Some(pairs(v))),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// A value on the subscriber connection: a message, a pong, or a (un)subscribe ack.
    fn on_push(&mut self, v: Value, now: Instant) {
        let Value::Array(Some(items)) = v else {
            if let Value::Error(e) = v {
                warn!(error = %String::from_utf8_lossy(&e), "broker refused a subscription");
            }
            return;
        };
        match items.first().and_then(Value::bytes) {
            Some(b"message") => {
                if let (Some(topic), Some(payload)) = (
                    items.get(1).and_then(Value::bytes),
                    items.get(2).and_then(Value::bytes),
                ) {
                    self.node.on_message(topic, payload, now);
                }
            }
            Some(b"pong") => {
                self.sub.answered(now);
                if let Some(arg) = items.get(1).and_then(Value::bytes) {
                    self.node.on_pong(arg, &mut self.outs);
                }
            }
            _ => {}
        }
    }

    /// Both TCP connections are open: subscribe to everything the node needs, write its
    /// presence again, and ping both connections; Redis's answers confirm it.
    fn on_established(&mut self, now: Instant) {
        self.phase = Phase::Greeting;
        for batch in self.node.topics().chunks(SUBSCRIBE_BATCH) {
            let mut args: Vec<&[u8]> = vec![b"SUBSCRIBE"];
            args.extend(batch.iter().map(String::as_bytes));
            resp::encode_command(&mut self.sub.out, &args);
        }
        self.sub.command(&[b"PING"], now);
        self.cmd.command(&[b"PING"], now);
        self.expect.push_back(None);
        self.node.on_connected(&mut self.outs);
    }

    /// Redis answered on both connections: the node is connected.
    fn on_confirmed(&mut self) {
        self.phase = Phase::Up;
        self.backoff = BACKOFF_MIN;
        self.established += 1;
        let stats = &self.node.uplink().stats;
        if self.established > 1 {
            stats.reconnects.fetch_add(1, Ordering::Relaxed);
            stats
                .resubscribes
                .fetch_add(self.node.channels() as u64, Ordering::Relaxed);
        }
        info!(broker = %self.addr, channels = self.node.channels(), "broker connected");
        self.node.uplink().set_connected(true);
    }

    fn fail(&mut self, why: &str, now: Instant) {
        let was_up = self.phase == Phase::Up;
        self.sub.reset(&self.poll);
        self.cmd.reset(&self.poll);
        self.node.uplink().set_connected(false);
        for id in std::mem::take(&mut self.expect).into_iter().flatten() {
            if history::owns(id) {
                self.node.on_history_reply(id, None, &mut self.outs);
            } else {
                self.node.on_answer(id, None);
            }
        }
        // Full jitter over the upper half: nodes that lost the broker together spread out.
        let half = self.backoff / 2;
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let jitter = Duration::from_nanos(self.rng % (half.as_nanos().max(1) as u64));
        let delay = half + jitter;
        self.phase = Phase::Down {
            retry_at: now + delay,
        };
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        if was_up {
            warn!(broker = %self.addr, reason = why, "broker connection lost: reconnecting");
        } else {
            info!(broker = %self.addr, reason = why, retry_in = ?delay, "broker unreachable");
        }
    }

    fn connect(&mut self, now: Instant) -> Result<(), String> {
        let addr: SocketAddr = self
            .addr
            .to_socket_addrs()
            .map_err(|e| format!("resolve {}: {e}", self.addr))?
            .next()
            .ok_or_else(|| format!("{} resolves to no address", self.addr))?;
        for token in [SUB, CMD] {
            let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
            let _ = s.set_nodelay(true);
            self.poll
                .registry()
                .register(&mut s, token, Interest::READABLE | Interest::WRITABLE)
                .map_err(|e| format!("register: {e}"))?;
            self.link(token).stream = Some(s);
        }
        self.phase = Phase::Connecting {
            deadline: now + CONNECT_TIMEOUT,
        };
        Ok(())
    }

    /// Reconnect when due, detect a stalled broker, ping idle connections, run the node's
    /// timers. Returns when to tick next at the latest.
    fn tick(&mut self, now: Instant) -> Instant {
        match self.phase {
            Phase::Down { retry_at } if now >= retry_at => {
                if let Err(why) = self.connect(now) {
                    self.fail(&why, now);
                }
            }
            Phase::Connecting { deadline } if now >= deadline => {
                self.fail("connect timed out", now);
            }
            Phase::Greeting | Phase::Up => {
                if self.sub.stalled(now) || self.cmd.stalled(now) {
                    self.fail("no answer to PING", now);
                } else {
                    if self.sub.waiting == 0 {
                        self.sub.command(&[b"PING"], now);
                    }
                    if self.cmd.waiting == 0 {
                        self.cmd.command(&[b"PING"], now);
                        self.expect.push_back(None);
                    }
                }
            }
            _ => {}
        }
        let up = self.phase == Phase::Up;
        self.node.on_tick(up, now, &mut self.outs)
    }

    /// Encode what the node asked for and write it out.
    fn send_outs(&mut self, now: Instant) {
        let up = self.phase.open();
        for out in self.outs.drain(..) {
            if !up {
                // Subscriptions are made again from the node's table on reconnect.
                continue;
            }
            match out {
                Out::Subscribe(t) => {
                    resp::encode_command(&mut self.sub.out, &[b"SUBSCRIBE", t.as_bytes()])
                }
                Out::Unsubscribe(t) => {
                    resp::encode_command(&mut self.sub.out, &[b"UNSUBSCRIBE", t.as_bytes()])
                }
                Out::Command(args, id) => {
                    let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
                    self.cmd.command(&args, now);
                    self.expect.push_back(id);
                }
                Out::Barrier(id) => {
                    self.sub.command(&[b"PING", id.to_string().as_bytes()], now);
                }
            }
        }
        if up {
            let r = self.sub.flush().and_then(|()| self.cmd.flush());
            if let Err(e) = r {
                self.fail(&format!("write: {e}"), now);
            }
        }
    }
}

/// The field/value pairs of an `HGETALL` answer (none for any other answer).
fn pairs(v: Value) -> Vec<(Vec<u8>, Vec<u8>)> {
    let Value::Array(Some(items)) = v else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(Value::Bulk(Some(f))), Some(Value::Bulk(Some(v)))) = (it.next(), it.next()) {
        out.push((f, v));
    }
    out
}
