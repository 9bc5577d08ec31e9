//! The NATS transport of the broker thread (core NATS, no JetStream): one TCP connection on the
//! thread's own mio poll speaking the client protocol ([`super::nats_proto`]); NATS multiplexes
//! subscriptions and publishes on it. The shards wake the poll through the uplink's waker, so a
//! publish leaves as soon as a shard's turn ends, with no timer.
//!
//! The connection says `CONNECT` with `echo` off (a node never gets its own publishes back: it
//! served its own subscribers), then `SUB`s every broker channel the node needs and a `PING`;
//! the `PONG` proves the server took them all, and only then is the node connected. A publish
//! larger than the server's `max_payload` (from `INFO`) is refused here with a warning instead
//! of being sent, since the server would drop the whole connection for it.
//!
//! TLS (`--broker tls://HOST:PORT`): the server's `INFO` comes in plain text, then the node
//! starts TLS on the same connection and everything from `CONNECT` on goes through it, the
//! server's certificate verified as for `rediss://` ([`super::tls`]). A server that requires TLS
//! when the URL says `nats://`, or does not offer it when the URL says `tls://`, turns the node
//! away with a warning saying which.
//!
//! Outages: a refused or dropped connection, bytes that are not the protocol, no `INFO` after
//! the TCP handshake, or a `PING` unanswered for [`STALL`] close the connection; the node
//! reconnects after an exponential delay with jitter (100 ms doubling to 5 s), then subscribes
//! again. Meanwhile the uplink says "disconnected": publishes that need other nodes are refused
//! (503) and local delivery goes on. Presence lives in the nodes, not the broker
//! ([`PresenceStore::Queries`](super::node::PresenceStore::Queries)).

use std::collections::HashMap;
use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Poll, Token};
use tracing::{info, warn};

use super::nats_proto::{self as proto, Op, Parsed};
use super::node::{Node, Out};
use super::redis::{credentials_problem, STALL, WAKE};
use super::socket::{self, Backoff, Phase};
use super::tls::{self, Secure};

const SOCKET: Token = Token(1);
/// How often an idle connection is checked with a `PING`.
const PING_INTERVAL: Duration = Duration::from_millis(250);
/// A connect that takes longer fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The NATS transport. See the module doc.
pub struct Nats {
    addr: String,
    /// What `CONNECT` proves the node with.
    auth: proto::Auth,
    /// `tls://`: how the connection is encrypted once the server's `INFO` came.
    secure: Option<Secure>,
    /// The TLS session of the open connection, once started.
    tls: Option<rustls::ClientConnection>,
    poll: Poll,
    node: Node,
    stream: Option<TcpStream>,
    tcp_open: bool,
    /// `CONNECT` was sent on this connection.
    greeted: bool,
    out: Vec<u8>,
    inb: Vec<u8>,
    /// Answers awaited (the `INFO`, then `PONG`s), and since when the oldest waits.
    waiting: usize,
    since: Instant,
    phase: Phase,
    backoff: Backoff,
    /// Connections established so far (the first is not a reconnect).
    established: u64,
    outs: Vec<Out>,
    /// Largest publish payload the server takes (`INFO max_payload`).
    max_payload: usize,
    /// Broker channel -> subscription id, and back.
    sids: HashMap<String, u64>,
    topics: HashMap<u64, String>,
    next_sid: u64,
}

impl Nats {
    /// The transport for the NATS server at `addr` (`host:port`), connecting with `auth` and,
    /// when `secure` says how, over TLS, on `poll`, whose waker uses [`WAKE`].
    pub fn new(
        addr: String,
        auth: proto::Auth,
        secure: Option<Secure>,
        poll: Poll,
        node: Node,
    ) -> Nats {
        let now = Instant::now();
        Nats {
            addr,
            auth,
            secure,
            tls: None,
            poll,
            node,
            stream: None,
            tcp_open: false,
            greeted: false,
            out: Vec::new(),
            inb: Vec::new(),
            waiting: 0,
            since: now,
            phase: Phase::Down { retry_at: now },
            backoff: Backoff::default(),
            established: 0,
            outs: Vec::new(),
            max_payload: proto::MAX_PAYLOAD,
            sids: HashMap::new(),
            topics: HashMap::new(),
            next_sid: 1,
        }
    }

    /// Serve until the process exits.
    pub fn run(mut self) {
        debug_assert_eq!(WAKE, Token(0));
        let mut events = Events::with_capacity(16);
        let mut buf = vec![0u8; 64 * 1024];
        let mut next_tick = Instant::now();
        loop {
            let mut deadline = next_tick;
            if let Some(at) = self.phase.wake_at() {
                deadline = deadline.min(at);
            }
            socket::wait(&mut self.poll, &mut events, deadline);
            let now = Instant::now();
            for ev in events.iter() {
                if ev.token() == SOCKET {
                    if let Err(why) = self.on_ready(ev.is_writable(), &mut buf, now) {
                        self.fail(&why, now);
                    }
                }
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

    fn on_ready(&mut self, writable: bool, buf: &mut [u8], now: Instant) -> Result<(), String> {
        if let Phase::Connecting { .. } = self.phase {
            let Some(s) = self.stream.as_ref() else {
                return Ok(());
            };
            if !writable {
                return Ok(());
            }
            if let Ok(Some(e)) | Err(e) = s.take_error() {
                return Err(format!("connect: {e}"));
            }
            if s.peer_addr().is_err() {
                return Ok(());
            }
            self.tcp_open = true;
            self.phase = Phase::Greeting;
            // The server speaks first: its INFO is the first answer awaited.
            self.waiting = 1;
            self.since = now;
        }
        if !self.tcp_open {
            return Ok(());
        }
        self.flush().map_err(|e| format!("write: {e}"))?;
        // What arrived before an end of stream is handled first: a server that turns the node
        // away says why (`-ERR`) and closes at once.
        let filled = self.fill(buf);
        self.on_input(now)?;
        filled.map_err(|e| format!("read: {e}"))?;
        self.flush().map_err(|e| format!("write: {e}"))
    }

    /// Handle every complete operation read so far.
    fn on_input(&mut self, now: Instant) -> Result<(), String> {
        let mut at = 0;
        let result = loop {
            let op = match proto::parse(&self.inb[at..]) {
                Ok(Parsed::Op(op, n)) => {
                    at += n;
                    op
                }
                Ok(Parsed::Need) => break Ok(()),
                Err(e) => break Err(format!("bad input: {e}")),
            };
            match op {
                Op::Msg { sid, payload, .. } => {
                    // None: a message that crossed our UNSUB.
                    if let Some(topic) = self.topics.get(&sid) {
                        self.node.on_message(topic.as_bytes(), payload, now);
                    }
                }
                Op::Ping => proto::encode_pong(&mut self.out),
                Op::Pong => {
                    self.waiting = self.waiting.saturating_sub(1);
                    self.since = now;
                    if self.phase == Phase::Greeting && self.waiting == 0 {
                        self.on_confirmed();
                    }
                }
                Op::Info(json) => {
                    let info = proto::parse_info(json).unwrap_or_default();
                    if let Some(max) = info.max_payload {
                        self.max_payload = usize::try_from(max).unwrap_or(usize::MAX);
                        self.node.uplink().set_max_payload(self.max_payload);
                    }
                    if self.phase == Phase::Greeting && !self.greeted {
                        if let Err(why) = self.start_tls(&info) {
                            at = self.inb.len();
                            break Err(why);
                        }
                        if info.auth_required && self.auth == proto::Auth::None {
                            warn!(broker = %self.addr, "the server asks for credentials and --broker has none (nats://USER:PASSWORD@HOST or nats://TOKEN@HOST)");
                        }
                        self.on_info(now, &info.server_id);
                    }
                }
                Op::Ok => {}
                Op::Err(text) => {
                    let text = String::from_utf8_lossy(text);
                    if text.to_ascii_lowercase().contains("authorization") {
                        warn!(broker = %self.addr, error = %text, "the NATS server refused the node's credentials (the user, password or token of --broker)");
                    } else {
                        warn!(broker = %self.addr, error = %text, "the broker reported an error");
                    }
                    // Before the greeting is confirmed, an error is the server turning the node
                    // away: it closes the connection, so retry after the backoff now.
                    if self.phase == Phase::Greeting {
                        break Err(format!("refused: {text}"));
                    }
                }
            }
        };
        self.inb.drain(..at);
        result
    }

    /// The server's `INFO` came: with `tls://`, start TLS on the connection (what is written
    /// from now on, `CONNECT` first, goes through it). `Err` when the server and the URL
    /// disagree on TLS.
    fn start_tls(&mut self, info: &proto::Info) -> Result<(), String> {
        match &self.secure {
            Some(secure) if info.tls_required || info.tls_available => {
                self.tls = Some(secure.session()?);
                Ok(())
            }
            Some(_) => Err("TLS: the server does not offer TLS (--broker nats:// for it)".into()),
            None if info.tls_required => {
                Err("TLS: the server requires TLS (--broker tls://HOST:PORT for it)".into())
            }
            None => Ok(()),
        }
    }

    /// The server's `INFO` came: say `CONNECT`, subscribe to everything the node needs, and
    /// `PING`; the `PONG` confirms all of it.
    fn on_info(&mut self, now: Instant, server_id: &str) {
        self.greeted = true;
        let name = format!("gateway-node-{}", self.node.uplink().node());
        proto::encode_connect(&mut self.out, &name, &self.auth);
        for topic in self.node.topics() {
            self.subscribe(topic);
        }
        proto::encode_ping(&mut self.out);
        // INFO answered; the PONG is awaited now.
        self.since = now;
        self.node.on_connected(&mut self.outs);
        info!(broker = %self.addr, server = server_id, "broker greeted");
    }

    fn subscribe(&mut self, topic: String) {
        if self.sids.contains_key(&topic) {
            return;
        }
        let sid = self.next_sid;
        self.next_sid += 1;
        proto::encode_sub(&mut self.out, &proto::subject(&topic), sid);
        self.topics.insert(sid, topic.clone());
        self.sids.insert(topic, sid);
    }

    fn unsubscribe(&mut self, topic: &str) {
        if let Some(sid) = self.sids.remove(topic) {
            self.topics.remove(&sid);
            proto::encode_unsub(&mut self.out, sid);
        }
    }

    /// The server answered the greeting: the node is connected.
    fn on_confirmed(&mut self) {
        self.phase = Phase::Up;
        self.backoff.reset();
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
        if let Some(mut s) = self.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        self.tcp_open = false;
        self.tls = None;
        self.greeted = false;
        self.out.clear();
        self.inb.clear();
        self.waiting = 0;
        self.sids.clear();
        self.topics.clear();
        self.node.uplink().set_connected(false);
        let delay = self.backoff.next_delay();
        self.phase = Phase::Down {
            retry_at: now + delay,
        };
        if credentials_problem(why) {
            warn!(broker = %self.addr, reason = why, retry_in = ?delay, "broker turned the node away");
        } else if was_up {
            warn!(broker = %self.addr, reason = why, "broker connection lost: reconnecting");
        } else {
            info!(broker = %self.addr, reason = why, retry_in = ?delay, "broker unreachable");
        }
    }

    fn connect(&mut self, now: Instant) -> Result<(), String> {
        self.stream = Some(socket::connect(&self.addr, &self.poll, SOCKET)?);
        self.phase = Phase::Connecting {
            deadline: now + CONNECT_TIMEOUT,
        };
        Ok(())
    }

    /// Reconnect when due, detect a stalled broker, ping an idle connection, run the node's
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
                let stalled = self.waiting > 0 && now.saturating_duration_since(self.since) > STALL;
                if stalled {
                    self.fail(tls::stall_reason(self.tls.as_ref()), now);
                } else if self.phase == Phase::Up && self.waiting == 0 {
                    proto::encode_ping(&mut self.out);
                    self.waiting = 1;
                    self.since = now;
                }
            }
            _ => {}
        }
        let up = self.phase == Phase::Up;
        self.node.on_tick(up, now, &mut self.outs)
    }

    /// Encode what the node asked for and write it out.
    fn send_outs(&mut self, now: Instant) {
        let greeted = self.greeted;
        let outs = std::mem::take(&mut self.outs);
        for out in outs {
            if !greeted {
                // Subscriptions are made again from the node's table on reconnect.
                continue;
            }
            match out {
                // Only a Redis broker shares history, the one user of barriers.
                Out::Barrier(_) => {}
                Out::Subscribe(t) => self.subscribe(t),
                Out::Unsubscribe(t) => self.unsubscribe(&t),
                Out::Command(args, id) => match &args[..] {
                    [verb, topic, payload] if verb.as_slice() == b"PUBLISH" => {
                        let topic = String::from_utf8_lossy(topic);
                        if payload.len() > self.max_payload {
                            warn!(
                                broker = %self.addr,
                                topic = %topic,
                                bytes = payload.len(),
                                max_payload = self.max_payload,
                                "not published: larger than the broker's max_payload"
                            );
                            continue;
                        }
                        proto::encode_pub(&mut self.out, &proto::subject(&topic), payload);
                    }
                    // Storage commands do not exist on NATS: presence is asked of the nodes.
                    _ => {
                        if let Some(id) = id {
                            self.node.on_answer(id, None);
                        }
                    }
                },
            }
        }
        if greeted {
            if let Err(e) = self.flush() {
                self.fail(&format!("write: {e}"), now);
            }
        }
    }

    /// Write what is queued; `Err` when the connection broke.
    fn flush(&mut self) -> io::Result<()> {
        match self.stream.as_mut().filter(|_| self.tcp_open) {
            Some(s) => tls::flush(s, self.tls.as_mut(), &mut self.out),
            None => Ok(()),
        }
    }

    /// Read what arrived; `Err` at end of stream or on an error.
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<()> {
        match self.stream.as_mut() {
            Some(s) => tls::fill(s, self.tls.as_mut(), buf, &mut self.inb),
            None => Ok(()),
        }
    }
}
