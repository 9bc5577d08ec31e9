//! The Redis transport of the broker thread: per Redis instance, two TCP connections on the
//! thread's own mio poll, one in subscribe mode (`SUBSCRIBE`/`UNSUBSCRIBE`, then `message` pushes) and one for
//! `PUBLISH`, both speaking RESP ([`super::resp`]). The shards wake the poll through the
//! uplink's waker, so a publish leaves as soon as a shard's turn ends, with no timer.
//!
//! Outages: a refused or dropped connection, bytes that are not RESP, or a broker that stops
//! answering (a `PING` unanswered for [`STALL`]) close both connections; the node reconnects
//! after an exponential delay with jitter (100 ms doubling to 5 s), then subscribes again to
//! every channel it needs, [`SUBSCRIBE_BATCH`] per command. Meanwhile the uplink says
//! "disconnected": publishes that need other nodes are refused (503) and local delivery goes on.
//!
//! Credentials (`redis://[USER]:PASSWORD@host`): `AUTH` is the first command on every
//! connection, written before anything else the moment the TCP connection is made, and its
//! answer is read before any other. A refusal (`-WRONGPASS`, or a password given to a server
//! that has none), or a server asking for one that `--broker` does not give (`-NOAUTH`), fails
//! the connection like an outage, with the reason in a warning and never the secret.
//!
//! Several instances (`--broker redis://a,redis://b`): each has its own connections, backoff and
//! resubscribes; [`Spread`] says which instance carries what. A channel whose instance is down is
//! refused (503) while the others work; node-level traffic goes on while any instance is up.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Poll, Token};
use tracing::{info, warn};

use super::history;
use super::node::{Node, Out};
use super::resp::{self, Parsed, Value};
use super::socket::{self, Backoff, Phase};
use super::spread::{Route, Spread};
use super::tls::{self, Secure};
use super::RedisAddr;

/// The waker's token (shards woke the thread).
pub const WAKE: Token = Token(0);

pub use super::socket::{BACKOFF_MAX, BACKOFF_MIN};
/// A broker that leaves a request unanswered this long is down.
pub const STALL: Duration = Duration::from_millis(900);
/// How often an idle connection is checked with a `PING`.
pub(super) const PING_INTERVAL: Duration = Duration::from_millis(250);
/// Channels per `SUBSCRIBE` command when subscribing again after a reconnect.
pub const SUBSCRIBE_BATCH: usize = 500;
/// A connect that takes longer fails.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Why a connection fails when Redis refused its `AUTH` (the server's error follows).
pub(super) const CREDENTIALS_REFUSED: &str =
    "Redis refused the node's credentials (the user or password of --broker)";
/// Why a connection fails when Redis wants credentials and the URL gives none.
pub(super) const CREDENTIALS_WANTED: &str = "Redis asks for a password and --broker has none \
     (redis://:PASSWORD@HOST:PORT or redis://USER:PASSWORD@HOST:PORT)";

/// Whether a connection failed for its credentials or its TLS (a certificate that does not
/// verify, a server that does not speak TLS): a configuration to fix, logged as a warning
/// every time, not as an outage.
pub(super) fn credentials_problem(why: &str) -> bool {
    why.starts_with(CREDENTIALS_REFUSED)
        || why.starts_with(CREDENTIALS_WANTED)
        || why.contains("TLS: ")
}

/// One connection to Redis.
pub(super) struct Link {
    pub(super) stream: Option<TcpStream>,
    pub(super) connected: bool,
    pub(super) out: Vec<u8>,
    inb: Vec<u8>,
    /// Requests sent and not answered yet (pings only, on the subscriber link).
    pub(super) waiting: usize,
    /// When the oldest unanswered request was sent, or the last answer came.
    since: Instant,
    /// Something was answered since the connection was made.
    pub(super) answered_once: bool,
    /// The `AUTH` command that opens every connection (`None` without credentials).
    auth: Option<Arc<[u8]>>,
    /// `AUTH` was sent on this connection and is not answered yet.
    authing: bool,
    /// How connections are encrypted (`None`: plain TCP).
    secure: Option<Secure>,
    /// The TLS session of the open connection, if encrypted.
    tls: Option<rustls::ClientConnection>,
}

impl Link {
    /// A link that opens every connection with `auth` (an encoded `AUTH`), if any, over TLS
    /// when `secure` says how.
    pub(super) fn new(now: Instant, auth: Option<Arc<[u8]>>, secure: Option<Secure>) -> Link {
        Link {
            stream: None,
            connected: false,
            out: Vec::new(),
            inb: Vec::new(),
            waiting: 0,
            since: now,
            answered_once: false,
            auth,
            authing: false,
            secure,
            tls: None,
        }
    }

    pub(super) fn reset(&mut self, poll: &Poll) {
        if let Some(mut s) = self.stream.take() {
            let _ = poll.registry().deregister(&mut s);
        }
        self.connected = false;
        self.out.clear();
        self.inb.clear();
        self.waiting = 0;
        self.answered_once = false;
        self.authing = false;
        self.tls = None;
    }

    pub(super) fn command(&mut self, args: &[&[u8]], now: Instant) {
        resp::encode_command(&mut self.out, args);
        if self.waiting == 0 {
            self.since = now;
        }
        self.waiting += 1;
    }

    pub(super) fn answered(&mut self, now: Instant) {
        self.waiting = self.waiting.saturating_sub(1);
        self.since = now;
        self.answered_once = true;
    }

    pub(super) fn stalled(&self, now: Instant) -> bool {
        self.waiting > 0 && now.saturating_duration_since(self.since) > STALL
    }

    /// Write what is queued; `Err` when the connection broke.
    pub(super) fn flush(&mut self) -> io::Result<()> {
        match self.stream.as_mut().filter(|_| self.connected) {
            Some(s) => tls::flush(s, self.tls.as_mut(), &mut self.out),
            None => Ok(()),
        }
    }

    /// Read what arrived; `Err` at end of stream or on an error.
    pub(super) fn fill(&mut self, buf: &mut [u8]) -> io::Result<()> {
        match self.stream.as_mut() {
            Some(s) => tls::fill(s, self.tls.as_mut(), buf, &mut self.inb),
            None => Ok(()),
        }
    }

    /// An event while connecting: the connect succeeded once the socket is writable with no
    /// error (`Err` when it failed).
    pub(super) fn on_connecting(&mut self, writable: bool) -> Result<(), String> {
        if writable && !self.connected {
            let Some(s) = self.stream.as_ref() else {
                return Ok(());
            };
            if let Ok(Some(e)) | Err(e) = s.take_error() {
                return Err(format!("connect: {e}"));
            }
            if s.peer_addr().is_ok() {
                self.connected = true;
                if let Some(secure) = &self.secure {
                    self.tls = Some(secure.session()?);
                }
                if let Some(auth) = &self.auth {
                    // First on the wire, before anything already queued.
                    self.out.splice(0..0, auth.iter().copied());
                    self.authing = true;
                }
            }
        }
        Ok(())
    }

    /// Write what is queued, read what arrived, and return the complete values (none before
    /// the connection is made); `Err` says why the connection is lost.
    pub(super) fn exchange(&mut self, buf: &mut [u8]) -> Result<Vec<Value>, String> {
        if !self.connected {
            return Ok(Vec::new());
        }
        self.flush().map_err(|e| format!("write: {e}"))?;
        self.fill(buf).map_err(|e| format!("read: {e}"))?;
        if self.tls.as_ref().is_some_and(|t| t.wants_write()) {
            // The handshake's next flight, or an answer rustls owes the server.
            self.flush().map_err(|e| format!("write: {e}"))?;
        }
        self.values()
    }

    /// The complete values read so far, but for the answer to `AUTH`; `Err` for bytes that
    /// are not RESP and for credentials Redis refused or asks for.
    pub(super) fn values(&mut self) -> Result<Vec<Value>, String> {
        let mut values = Vec::new();
        let mut at = 0;
        while let Parsed::Value(v, n) =
            resp::parse(&self.inb[at..]).map_err(|e| format!("bad reply: {e}"))?
        {
            at += n;
            if self.authing {
                self.authing = false;
                match v {
                    Value::Simple(ok) if ok == b"OK" => continue,
                    Value::Error(e) => {
                        let e = String::from_utf8_lossy(&e);
                        return Err(format!("{CREDENTIALS_REFUSED}: {e}"));
                    }
                    other => return Err(format!("bad reply to AUTH: {other:?}")),
                }
            }
            if let Value::Error(e) = &v {
                if e.starts_with(b"NOAUTH") {
                    return Err(CREDENTIALS_WANTED.to_owned());
                }
            }
            values.push(v);
        }
        self.inb.drain(..at);
        Ok(values)
    }
}

/// One Redis instance: its two connections, where they stand, and its own backoff.
struct Instance {
    addr: String,
    sub: Link,
    cmd: Link,
    phase: Phase,
    backoff: Backoff,
    /// Connections established so far (the first is not a reconnect).
    established: u64,
    /// Per command sent on the command connection, in order: the query its answer goes to.
    expect: VecDeque<Option<u64>>,
}

impl Instance {
    /// The instance `server`, with the TLS configuration `tls` if it is reached over TLS.
    fn new(server: RedisAddr, tls: &Option<Arc<rustls::ClientConfig>>, now: Instant) -> Instance {
        let auth = server.auth.command();
        let secure = server
            .tls
            .zip(tls.clone())
            .map(|(name, config)| Secure { config, name });
        Instance {
            addr: server.addr,
            sub: Link::new(now, auth.clone(), secure.clone()),
            cmd: Link::new(now, auth, secure),
            phase: Phase::Down { retry_at: now },
            backoff: Backoff::default(),
            established: 0,
            expect: VecDeque::new(),
        }
    }

    fn link(&mut self, sub: bool) -> &mut Link {
        if sub {
            &mut self.sub
        } else {
            &mut self.cmd
        }
    }

    /// Queue a command on the command connection whose answer goes to query `id`.
    fn command(&mut self, args: &[&[u8]], id: Option<u64>, now: Instant) {
        self.cmd.command(args, now);
        self.expect.push_back(id);
    }
}

/// The poll tokens of instance `i`'s subscriber and command connections (a cluster's master
/// `i` likewise).
pub(super) fn tokens(i: usize) -> (Token, Token) {
    (Token(1 + 2 * i), Token(2 + 2 * i))
}

/// The instance and connection (`true`: subscriber) a poll token names.
pub(super) fn of_token(t: Token) -> Option<(usize, bool)> {
    let n = t.0.checked_sub(1)?;
    Some((n / 2, n % 2 == 0))
}

/// The Redis transport. See the module doc.
pub struct Redis {
    poll: Poll,
    node: Node,
    instances: Vec<Instance>,
    spread: Arc<Spread>,
    outs: Vec<Out>,
}

impl Redis {
    /// The transport for the Redis instances of `spread` at `addrs` (one or more, in the
    /// order `spread` numbers them; those with `rediss://` through `tls`) on `poll`, whose
    /// waker uses [`WAKE`].
    pub fn new(
        addrs: Vec<RedisAddr>,
        tls: Option<Arc<rustls::ClientConfig>>,
        spread: Arc<Spread>,
        poll: Poll,
        node: Node,
    ) -> Redis {
        let now = Instant::now();
        let down = &node.uplink().stats.instances_down;
        down.store(addrs.len() as u64, Ordering::Relaxed);
        Redis {
            poll,
            node,
            instances: addrs
                .into_iter()
                .map(|a| Instance::new(a, &tls, now))
                .collect(),
            spread,
            outs: Vec::new(),
        }
    }

    /// Serve until the process exits.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(64);
        let mut buf = vec![0u8; 64 * 1024];
        let mut next_tick = Instant::now();
        loop {
            let mut deadline = next_tick;
            for at in self.instances.iter().filter_map(|i| i.phase.wake_at()) {
                deadline = deadline.min(at);
            }
            socket::wait(&mut self.poll, &mut events, deadline);
            let now = Instant::now();
            for ev in events.iter() {
                let Some((i, sub)) = of_token(ev.token()) else {
                    continue;
                };
                if i < self.instances.len() {
                    if let Err(why) = self.on_ready(i, sub, ev.is_writable(), &mut buf, now) {
                        self.fail(i, &why, now);
                    }
                }
            }
            for i in 0..self.instances.len() {
                let inst = &self.instances[i];
                if inst.phase == Phase::Greeting && inst.sub.answered_once && inst.cmd.answered_once
                {
                    self.on_confirmed(i);
                }
            }
            let up = self.spread.any_up();
            self.node.drain_uplink(up, now, &mut self.outs);
            let all_up = self.instances.iter().all(|i| i.phase == Phase::Up);
            if now >= next_tick || !all_up {
                next_tick = self.tick(now).min(now + PING_INTERVAL);
            }
            self.send_outs(now);
            self.node.wake_shards();
        }
    }

    fn on_ready(
        &mut self,
        i: usize,
        sub: bool,
        writable: bool,
        buf: &mut [u8],
        now: Instant,
    ) -> Result<(), String> {
        let inst = &mut self.instances[i];
        if let Phase::Connecting { .. } = inst.phase {
            inst.link(sub).on_connecting(writable)?;
            if inst.sub.connected && inst.cmd.connected {
                self.on_established(i, now);
            }
        }
        let values = self.instances[i].link(sub).exchange(buf)?;
        for v in values {
            still_loading(&v)?;
            if sub {
                self.on_push(i, v, now);
                continue;
            }
            match &v {
                // The history store loads its scripts again and says so once.
                Value::Error(e) if e.starts_with(b"NOSCRIPT") => {}
                Value::Error(e) => {
                    warn!(error = %String::from_utf8_lossy(e), "broker refused a command")
                }
                _ => {}
            }
            let inst = &mut self.instances[i];
            inst.cmd.answered(now);
            match inst.expect.pop_front() {
                Some(Some(id)) if history::owns(id) => {
                    self.node.on_history_reply(id, Some(v), &mut self.outs)
                }
                Some(Some(id)) => self.node.on_answer(id, Some(pairs(v))),
                _ => {}
            }
        }
        Ok(())
    }

    /// A value on instance `i`'s subscriber connection: a message, a pong, or a
    /// (un)subscribe ack.
    fn on_push(&mut self, i: usize, v: Value, now: Instant) {
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
                self.instances[i].sub.answered(now);
                if let Some(arg) = items.get(1).and_then(Value::bytes) {
                    self.node.on_pong(arg, &mut self.outs);
                }
            }
            _ => {}
        }
    }

    /// Whether `out` belongs on instance `i` when it (re)connects.
    fn belongs(&self, out: &Out, i: usize) -> bool {
        match self.spread.route(out) {
            Route::Channel(j) => j == i,
            Route::Every => true,
            Route::Any(_) => false,
        }
    }

    /// Both TCP connections of instance `i` are open: subscribe to everything the node needs
    /// there, write its presence there again, and ping both connections; Redis's answers
    /// confirm it.
    fn on_established(&mut self, i: usize, now: Instant) {
        let topics: Vec<String> = self
            .node
            .topics()
            .into_iter()
            .filter(|t| self.belongs(&Out::Subscribe(t.clone()), i))
            .collect();
        let mut presence = Vec::new();
        self.node.on_connected(&mut presence);
        presence.retain(|o| self.belongs(o, i));
        self.outs.extend(presence);
        let inst = &mut self.instances[i];
        inst.phase = Phase::Greeting;
        for batch in topics.chunks(SUBSCRIBE_BATCH) {
            let mut args: Vec<&[u8]> = vec![b"SUBSCRIBE"];
            args.extend(batch.iter().map(String::as_bytes));
            resp::encode_command(&mut inst.sub.out, &args);
        }
        inst.sub.command(&[b"PING"], now);
        inst.command(&[b"PING"], None, now);
    }

    /// Redis answered on both connections of instance `i`: it is connected.
    fn on_confirmed(&mut self, i: usize) {
        let channels = self
            .node
            .topics()
            .iter()
            .filter(|t| t.starts_with("gw:c:") && self.belongs(&Out::Subscribe((*t).clone()), i))
            .count();
        let inst = &mut self.instances[i];
        inst.phase = Phase::Up;
        inst.backoff.reset();
        inst.established += 1;
        let stats = &self.node.uplink().stats;
        if inst.established > 1 {
            stats.reconnects.fetch_add(1, Ordering::Relaxed);
            stats
                .resubscribes
                .fetch_add(channels as u64, Ordering::Relaxed);
        }
        info!(broker = %inst.addr, channels, "broker connected");
        self.spread.set_up(i, true);
        self.node.uplink().set_connected(true);
        self.count_down();
    }

    /// Publish how many instances are unreachable (`gateway_broker_instances_down`).
    fn count_down(&self) {
        let down = (0..self.instances.len())
            .filter(|&i| !self.spread.is_up(i))
            .count();
        let stats = &self.node.uplink().stats;
        stats.instances_down.store(down as u64, Ordering::Relaxed);
    }

    fn fail(&mut self, i: usize, why: &str, now: Instant) {
        let inst = &mut self.instances[i];
        let was_up = inst.phase == Phase::Up;
        inst.sub.reset(&self.poll);
        inst.cmd.reset(&self.poll);
        let lost = std::mem::take(&mut inst.expect);
        self.spread.set_up(i, false);
        self.node.uplink().set_connected(self.spread.any_up());
        self.count_down();
        for id in lost.into_iter().flatten() {
            if history::owns(id) {
                self.node.on_history_reply(id, None, &mut self.outs);
            } else {
                self.node.on_answer(id, None);
            }
        }
        let inst = &mut self.instances[i];
        let delay = inst.backoff.next_delay();
        inst.phase = Phase::Down {
            retry_at: now + delay,
        };
        if credentials_problem(why) {
            warn!(broker = %inst.addr, reason = why, retry_in = ?delay, "broker turned the node away");
        } else if was_up {
            warn!(broker = %inst.addr, reason = why, "broker connection lost: reconnecting");
        } else {
            info!(broker = %inst.addr, reason = why, retry_in = ?delay, "broker unreachable");
        }
    }

    fn connect(&mut self, i: usize, now: Instant) -> Result<(), String> {
        let inst = &mut self.instances[i];
        let (sub, cmd) = tokens(i);
        for (token, is_sub) in [(sub, true), (cmd, false)] {
            let s = socket::connect(&inst.addr, &self.poll, token)?;
            inst.link(is_sub).stream = Some(s);
        }
        inst.phase = Phase::Connecting {
            deadline: now + CONNECT_TIMEOUT,
        };
        Ok(())
    }

    /// Reconnect instances when due, detect stalled ones, ping idle connections, run the
    /// node's timers. Returns when to tick next at the latest.
    fn tick(&mut self, now: Instant) -> Instant {
        for i in 0..self.instances.len() {
            let inst = &mut self.instances[i];
            match inst.phase {
                Phase::Down { retry_at } if now >= retry_at => {
                    if let Err(why) = self.connect(i, now) {
                        self.fail(i, &why, now);
                    }
                }
                Phase::Connecting { deadline } if now >= deadline => {
                    self.fail(i, "connect timed out", now);
                }
                Phase::Greeting | Phase::Up => {
                    if inst.sub.stalled(now) || inst.cmd.stalled(now) {
                        let stalled = if inst.sub.stalled(now) {
                            &inst.sub
                        } else {
                            &inst.cmd
                        };
                        let why = tls::stall_reason(stalled.tls.as_ref());
                        self.fail(i, why, now);
                    } else {
                        if inst.sub.waiting == 0 {
                            inst.sub.command(&[b"PING"], now);
                        }
                        if inst.cmd.waiting == 0 {
                            inst.command(&[b"PING"], None, now);
                        }
                    }
                }
                _ => {}
            }
        }
        let up = self.spread.any_up();
        self.node.on_tick(up, now, &mut self.outs)
    }

    /// Encode what the node asked for on the instances it belongs to, and write it out. What
    /// belongs to an instance that is down is dropped (subscriptions and presence are made
    /// again from the node's tables on reconnect; a query is answered empty).
    fn send_outs(&mut self, now: Instant) {
        let mut outs = std::mem::take(&mut self.outs);
        // What answering an unsendable history query asks for, sent on the next round.
        let mut late = Vec::new();
        for out in outs.drain(..) {
            // The instances `from..to` that `out` goes to, those of them that are open.
            let (from, to) = match self.spread.route(&out) {
                Route::Channel(i) => (i, i + 1),
                Route::Any(key) => self.spread.pick_up(key).map_or((0, 0), |i| (i, i + 1)),
                Route::Every => (0, self.instances.len()),
            };
            let mut sent = false;
            for inst in &mut self.instances[from..to] {
                if !inst.phase.open() {
                    continue;
                }
                sent = true;
                match &out {
                    Out::Subscribe(t) => {
                        resp::encode_command(&mut inst.sub.out, &[b"SUBSCRIBE", t.as_bytes()])
                    }
                    Out::Unsubscribe(t) => {
                        resp::encode_command(&mut inst.sub.out, &[b"UNSUBSCRIBE", t.as_bytes()])
                    }
                    Out::Command(args, id) => {
                        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
                        inst.command(&args, *id, now);
                    }
                    Out::Barrier(id) => {
                        inst.sub.command(&[b"PING", id.to_string().as_bytes()], now);
                    }
                }
            }
            match (sent, &out) {
                (false, Out::Command(_, Some(id))) if history::owns(*id) => {
                    self.node.on_history_reply(*id, None, &mut late);
                }
                (false, Out::Command(_, Some(id))) => self.node.on_answer(*id, None),
                _ => {}
            }
        }
        self.outs = outs;
        self.outs.append(&mut late);
        for i in 0..self.instances.len() {
            let inst = &mut self.instances[i];
            if inst.phase.open() {
                if let Err(e) = inst.sub.flush().and_then(|()| inst.cmd.flush()) {
                    self.fail(i, &format!("write: {e}"), now);
                }
            }
        }
    }
}

/// `Err` when `v` says Redis is still loading its data set (after a restart with persistence,
/// or a replica syncing): the connection is dropped and made again with the usual backoff, so
/// the node counts as connected, and loads its scripts, only once Redis serves commands.
pub(super) fn still_loading(v: &Value) -> Result<(), String> {
    match v {
        Value::Error(e) if e.starts_with(b"LOADING") => {
            Err("the broker is still loading its data".to_owned())
        }
        _ => Ok(()),
    }
}

/// The field/value pairs of an `HGETALL` answer (none for any other answer).
pub(super) fn pairs(v: Value) -> Vec<(Vec<u8>, Vec<u8>)> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A link that sent `AUTH` and reads `chunks` one after another: the values each read
    /// gives, or the error that ends the connection.
    fn read_after_auth(chunks: &[&[u8]]) -> Vec<Result<Vec<Value>, String>> {
        let mut link = Link::new(Instant::now(), Some(Arc::from(&b"AUTH"[..])), None);
        link.authing = true;
        chunks
            .iter()
            .map(|c| {
                link.inb.extend_from_slice(c);
                link.values()
            })
            .collect()
    }

    #[test]
    fn the_answer_to_auth_is_read_first_and_never_handed_on() {
        let pong = Value::Simple(b"PONG".to_vec());
        assert_eq!(
            read_after_auth(&[b"+OK\r\n+PONG\r\n"]),
            [Ok(vec![pong.clone()])]
        );
        // Cut anywhere, the same.
        assert_eq!(
            read_after_auth(&[b"+O", b"K\r\n+PO", b"NG\r\n"]),
            [Ok(vec![]), Ok(vec![]), Ok(vec![pong.clone()])]
        );
        // Read once: a later `+OK` is an answer like any other.
        let ok = Value::Simple(b"OK".to_vec());
        assert_eq!(
            read_after_auth(&[b"+OK\r\n", b"+OK\r\n"]),
            [Ok(vec![]), Ok(vec![ok])]
        );
    }

    #[test]
    fn refused_or_missing_credentials_end_the_connection_with_a_clear_reason() {
        let refused = read_after_auth(&[b"-WRONGPASS invalid username-password pair\r\n+PONG\r\n"]);
        let why = refused[0].as_ref().unwrap_err();
        assert!(credentials_problem(why), "{why}");
        assert!(why.starts_with(CREDENTIALS_REFUSED), "{why}");
        assert!(
            why.ends_with("WRONGPASS invalid username-password pair"),
            "{why}"
        );
        let odd = read_after_auth(&[b":1\r\n"]);
        assert!(!credentials_problem(odd[0].as_ref().unwrap_err()));
        // No `AUTH` sent, and the server wants one.
        let mut link = Link::new(Instant::now(), None, None);
        link.inb
            .extend_from_slice(b"-NOAUTH Authentication required.\r\n");
        assert_eq!(link.values(), Err(CREDENTIALS_WANTED.to_owned()));
        // Any other error is an answer, handed on.
        let mut link = Link::new(Instant::now(), None, None);
        link.inb.extend_from_slice(b"-ERR unknown command\r\n");
        assert_eq!(
            link.values(),
            Ok(vec![Value::Error(b"ERR unknown command".to_vec())])
        );
    }
}
