//! `Shard`: one event loop on one pinned thread. It owns its listeners (through its driver), its
//! connections, their write queues, its timer wheel and one read buffer; nothing in it is shared
//! or locked. A connection lives its whole life on the shard that accepted it.
//!
//! One loop turn: wait for readiness (or the next timer), accept, read each ready connection into
//! the shard's buffer and feed its `Conn`, write what the turn produced for that connection in
//! one go (queueing only what the socket did not take), then expire due timers. Reads are
//! budgeted per connection per turn so one busy peer cannot starve the rest.

mod api;
mod hooks;
mod poll;
mod push;
pub mod timers;
mod tls;

use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use frame_simd::Kernels;
use tracing::{debug, error, info, warn, Level};

use crate::api::{ApiConn, ApiSettings, ApiState};
use crate::app::calls::Ending;
use crate::app::{AppState, ClientState, Dispatch};
use crate::conn::id::Slab;
use crate::conn::tls::TlsSession;
use crate::conn::{Conn, ConnId, Ctx, Output, Settings, State};
use crate::driver::{is_resource_exhaustion, Driver, Ready};
use crate::metrics::{HookMetrics, ShardMetrics};
use crate::router::Router;

use self::timers::TimerWheel;
use crate::outbox::Outbox;

/// The shard's read buffer: every read of every connection lands here.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Reads per connection per turn before other connections get their turn.
const READ_BUDGET: usize = 4;
/// Accepts per listener per turn.
const ACCEPT_BUDGET: usize = 64;
/// Output left unsent up to this size is copied into the outbox; larger output moves there.
const COPY_REMAINDER_BYTES: usize = 64 * 1024;
/// Output buffer capacity kept between turns.
const OUTPUT_KEEP_BYTES: usize = 1 << 20;
/// Sockets over the connection limit kept open at once per shard (to answer 503).
const MAX_REJECTING: usize = 1024;

/// Configuration every shard shares (read-only).
#[derive(Clone, Debug)]
pub struct ShardConfig {
    /// What connections need.
    pub settings: Settings,
    /// Queued outbound bytes per connection before it stops reading.
    pub max_outbound_bytes: usize,
    /// Connections across all shards before new ones are answered 503.
    pub max_connections: usize,
    /// How long a shutdown waits for connections to close.
    pub drain_timeout: Duration,
    /// The backend API's key and limits.
    pub api: ApiSettings,
    /// Which of the driver's listeners is the backend API's (the same index on every shard).
    pub api_listener: Option<usize>,
}

/// State shared by all shards (touched on accept, close and shutdown, never per frame).
#[derive(Debug, Default)]
pub struct Shared {
    /// Set once when shutdown starts.
    pub shutdown: AtomicBool,
    /// Connections counted against `max_connections`.
    pub connections: AtomicUsize,
    /// Every shard's metrics in shard order (for `/metrics` and `/api/stats`), set once before
    /// the addresses are announced.
    pub all_metrics: OnceLock<Vec<Arc<ShardMetrics>>>,
    /// The hooks thread's metrics (set once at start when hooks are configured).
    pub hook_metrics: OnceLock<Arc<HookMetrics>>,
}

/// One accepted socket: who is on the other end, and the shard's bookkeeping for it.
struct Entry {
    peer: Peer,
    outbox: Outbox,
    /// The low 32 bits of the tick of the live timer entry, when [`Flags::ARMED`] (the wheel
    /// widens them back: see [`TimerWheel::widen`]). With the flags, one word instead of two.
    armed: u32,
    /// What is true of it, one bit each.
    flags: Flags,
    /// Its slab slot's generation (kept here, in the word `armed` and `flags` leave free, so
    /// the slot is no larger than the entry).
    generation: u16,
    /// Accepted on a TLS listener: every byte in and out goes through this session.
    tls: Option<Box<TlsSession>>,
}

bitflags::bitflags! {
    /// An [`Entry`]'s yes/no facts, in one byte.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Flags: u8 {
        /// A timer entry is live, at the tick in [`Entry::armed`].
        const ARMED = 1;
        /// Reading stopped: the outbox is over the limit.
        const PAUSED = 1 << 1;
        /// FIN sent; waiting for the peer's.
        const WRITE_SHUT = 1 << 2;
        /// The peer's FIN arrived.
        const PEER_EOF = 1 << 3;
        /// Counted in `Shared::connections`.
        const COUNTED = 1 << 4;
        /// Queued in `Shard::dirty` for a flush at the end of the turn.
        const DIRTY = 1 << 5;
    }
}

impl Entry {
    /// A new entry for `peer`, with no timer armed; `counted` in `Shared::connections`.
    fn new(peer: Peer, tls: Option<Box<TlsSession>>, counted: bool) -> Entry {
        let mut flags = Flags::empty();
        flags.set(Flags::COUNTED, counted);
        Entry {
            peer,
            outbox: Outbox::default(),
            armed: 0,
            flags,
            generation: 0,
            tls,
        }
    }

    fn is(&self, flag: Flags) -> bool {
        self.flags.contains(flag)
    }

    fn set(&mut self, flag: Flags, on: bool) {
        self.flags.set(flag, on);
    }

    /// Mark it for the end-of-turn flush; true if it was not marked yet (the caller queues it).
    fn mark_dirty(&mut self) -> bool {
        let first = !self.is(Flags::DIRTY);
        self.flags.insert(Flags::DIRTY);
        first
    }

    /// Whether the timer entry firing at `tick` is this entry's live one.
    fn armed_for(&self, tick: u64) -> bool {
        // Truncation intended: ticks are compared by their low 32 bits.
        self.is(Flags::ARMED) && self.armed == tick as u32
    }

    /// Arm a timer for `deadline` unless one at or before its tick is armed already (a later
    /// one is left in the wheel and ignored when it fires).
    fn arm(&mut self, wheel: &mut TimerWheel, id: ConnId, deadline: Instant, now: Instant) {
        let tick = wheel.tick_for(deadline.max(now));
        if !self.is(Flags::ARMED) || tick < wheel.widen(self.armed) {
            // Truncation intended: see `armed`.
            self.armed = wheel.arm(id.slot(), deadline) as u32;
            self.set(Flags::ARMED, true);
        }
    }
}

impl crate::conn::id::Slotted for Entry {
    fn generation(&self) -> u16 {
        self.generation
    }

    fn set_generation(&mut self, generation: u16) {
        self.generation = generation;
    }
}

/// What speaks on a connection.
// Entries share one slab, so every slot is as large as a client either way; boxing the client
// would cost an allocation and a pointer chase per read for the common case.
#[allow(clippy::large_enum_variant)]
enum Peer {
    /// A client on a WebSocket listener: its connection state machine and its app state.
    Client {
        /// HTTP request, upgrade, frames, close.
        conn: Conn,
        /// Route, channels, user.
        client: ClientState,
    },
    /// A backend on the API listener.
    Api(Box<ApiConn>),
    /// A Socket.IO long-polling session this shard owns (no socket of its own).
    Poll(Box<crate::app::sio::session::PollSession>),
}

impl Peer {
    /// Nothing more will be read or said (the close is under way).
    fn is_closed(&self) -> bool {
        match self {
            Peer::Client { conn, .. } => conn.state() == State::Closed,
            Peer::Api(a) => a.state() == ApiState::Closed,
            Peer::Poll(_) => false,
        }
    }

    fn must_drop(&self) -> bool {
        match self {
            Peer::Client { conn, .. } => conn.must_drop(),
            Peer::Api(a) => a.must_drop(),
            Peer::Poll(_) => false,
        }
    }

    fn deadline(&self, cfg: &ShardConfig, now: Instant) -> Instant {
        match self {
            Peer::Client { conn, client } => {
                let at = conn.deadline(&cfg.settings, now);
                match client.deadline() {
                    Some(app) if conn.state() == State::Open => at.min(app),
                    _ => at,
                }
            }
            Peer::Api(a) => a.deadline(&cfg.api),
            Peer::Poll(p) => p.deadline().unwrap_or_else(Instant::now),
        }
    }

    fn on_shutdown(&mut self, now: Instant, out: &mut Output) {
        match self {
            Peer::Client { conn, .. } => conn.on_shutdown(now, out),
            Peer::Api(a) => a.on_shutdown(now),
            Peer::Poll(_) => {}
        }
    }

    fn on_peer_eof(&mut self, now: Instant) {
        match self {
            Peer::Client { conn, .. } => conn.on_peer_eof(now),
            Peer::Api(a) => a.on_peer_eof(now),
            Peer::Poll(_) => {}
        }
    }

    fn on_deadline(
        &mut self,
        now: Instant,
        cfg: &ShardConfig,
        kernels: &Kernels,
        out: &mut Output,
    ) {
        match self {
            Peer::Client { conn, .. } => {
                let cx = Ctx {
                    settings: &cfg.settings,
                    kernels,
                };
                conn.on_deadline(now, &cx, out)
            }
            Peer::Api(a) => a.on_deadline(now, &cfg.api, &mut out.bytes),
            Peer::Poll(_) => {}
        }
    }

    /// The client connection, if it is one and is open for WebSocket traffic.
    fn open_client(&mut self) -> Option<(&mut Conn, &mut ClientState)> {
        match self {
            Peer::Client { conn, client } if conn.state() == State::Open => Some((conn, client)),
            _ => None,
        }
    }
}

/// Whether the shard goes on after a [`Shard::turn`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Turn {
    /// Serving (or draining): there are more turns to take.
    Running,
    /// Shutdown finished: every connection is gone and the shard is done.
    Drained,
}

/// One shard. Build it with [`Shard::new`], run it with [`Shard::run`] on its own thread.
pub struct Shard<D: Driver> {
    driver: D,
    cfg: Arc<ShardConfig>,
    shared: Arc<Shared>,
    kernels: Kernels,
    metrics: Arc<ShardMetrics>,
    listeners: usize,
    conns: Slab<Entry>,
    wheel: TimerWheel,
    rbuf: Box<[u8]>,
    out: Output,
    ready: Vec<Ready>,
    /// Slab slots whose timer fired this turn, with the tick.
    fired: Vec<(u32, u64)>,
    again: Vec<ConnId>,
    again_spare: Vec<ConnId>,
    accept_again: Vec<usize>,
    rejecting: usize,
    /// Accepting failed for lack of descriptors (logged once until an accept succeeds).
    exhausted: bool,
    draining: Option<Instant>,
    /// Channels, fan-out and messages from other shards.
    router: Router,
    /// What client connections speak: auth, the request parser, token expiries.
    app: AppState,
    /// Connections with deliveries queued this turn, flushed at its end.
    dirty: Vec<ConnId>,
    /// Deliveries of one channel held to be fanned out together.
    run: push::Run,
    /// TLS listeners and the plaintext buffer.
    tls: tls::ShardTls,
    /// A timer is being handled: a connection dropped now is dropped at its deadline.
    on_deadline: bool,
    /// Remote addresses for the connection log lines, kept only while they are enabled (the
    /// kernel forgets the address of a connection the peer has reset).
    remotes: std::collections::HashMap<ConnId, std::net::SocketAddr>,
}

/// Target of the per-connection log lines (accepted, refused, closing, closed), each naming the
/// connection id, the remote address and the reason; at debug level, so operators turn them on
/// with `--log-level info,gateway::connections=debug`.
pub const CONN_LOG: &str = "gateway::connections";

/// The remote address of `id` for a log line: as seen at accept, else asked now.
fn remote<D: Driver>(
    remotes: &std::collections::HashMap<ConnId, std::net::SocketAddr>,
    driver: &D,
    id: ConnId,
) -> String {
    remotes
        .get(&id)
        .copied()
        .or_else(|| driver.peer_addr(id))
        .map_or_else(|| "unknown".to_owned(), |a| a.to_string())
}

impl<D: Driver> Shard<D> {
    /// A shard numbered `index` over `driver` (which holds `listeners` listeners).
    pub fn new(
        index: u8,
        driver: D,
        listeners: usize,
        cfg: Arc<ShardConfig>,
        shared: Arc<Shared>,
        kernels: Kernels,
        metrics: Arc<ShardMetrics>,
    ) -> Shard<D> {
        let start = driver.now();
        Shard {
            driver,
            cfg,
            shared,
            kernels,
            metrics,
            listeners,
            conns: Slab::new(index),
            wheel: TimerWheel::new(start),
            rbuf: vec![0u8; READ_BUFFER_BYTES].into_boxed_slice(),
            out: Output::new(),
            ready: Vec::with_capacity(1024),
            fired: Vec::new(),
            again: Vec::new(),
            again_spare: Vec::new(),
            accept_again: Vec::new(),
            rejecting: 0,
            exhausted: false,
            draining: None,
            router: Router::single(index),
            app: AppState::default(),
            dirty: Vec::new(),
            run: push::Run::default(),
            tls: tls::ShardTls::default(),
            on_deadline: false,
            remotes: std::collections::HashMap::new(),
        }
    }

    /// Use `router` (joined to the other shards' mesh) instead of a single-shard one.
    pub fn with_router(mut self, router: Router) -> Shard<D> {
        // Ids name the router's node (the slab is still empty here).
        self.conns = Slab::on_node(router.config().node, router.shard());
        self.router = router;
        self
    }

    /// Serve client connections with `app` (its auth policy) instead of anonymous-only.
    pub fn with_app(mut self, app: AppState) -> Shard<D> {
        self.app = app;
        self
    }

    /// Run until shutdown has drained every connection (or the drain deadline passed).
    pub fn run(mut self) -> io::Result<()> {
        while self.turn()? == Turn::Running {}
        Ok(())
    }

    /// One loop turn (see the module doc): wait for readiness, the next timer or a wake-up,
    /// then handle everything found. `run` repeats it; tests call it to step the shard.
    pub fn turn(&mut self) -> io::Result<Turn> {
        let now = self.driver.now();
        let mut timeout = if self.again.is_empty() && self.accept_again.is_empty() {
            self.wheel
                .next_expiry()
                .map(|t| t.saturating_duration_since(now))
        } else {
            Some(Duration::ZERO)
        };
        if let Some(deadline) = self.draining {
            let left = deadline.saturating_duration_since(now);
            timeout = Some(timeout.map_or(left, |t| t.min(left)));
        }
        if let Some(left) = self.router_timeout() {
            timeout = Some(timeout.map_or(left, |t| t.min(left)));
        }
        let mut ready = std::mem::take(&mut self.ready);
        self.driver.wait(&mut ready, timeout)?;
        let now = self.driver.now();
        // Before any socket: what other shards sent happened before what clients send now.
        self.drain_inbox(now);
        for r in ready.drain(..) {
            match r {
                Ready::Accept(n) => self.accept(n, now),
                Ready::Wake => self.on_wake(now),
                Ready::Conn {
                    id,
                    readable,
                    writable,
                } => {
                    if writable {
                        self.on_writable(id, now);
                    }
                    if readable {
                        self.on_readable(id, now);
                    }
                }
            }
        }
        self.ready = ready;

        for n in std::mem::take(&mut self.accept_again) {
            self.accept(n, now);
        }
        let mut again = std::mem::replace(&mut self.again, std::mem::take(&mut self.again_spare));
        for id in again.drain(..) {
            self.on_readable(id, now);
        }
        self.again_spare = again;

        let mut fired = std::mem::take(&mut self.fired);
        self.wheel.expire(now, &mut fired);
        for (slot, tick) in fired.drain(..) {
            if let Some(id) = self.conns.id_at(slot) {
                self.on_timer(id, tick, now);
            }
        }
        self.fired = fired;
        self.finish_turn(now);

        if let Some(deadline) = self.draining {
            if self.conns.is_empty() || now >= deadline {
                let left = self.conns.len();
                for id in self.conns.ids() {
                    self.remove(id, "drain deadline passed");
                }
                debug!(left, "shard drained");
                return Ok(Turn::Drained);
            }
        }
        Ok(Turn::Running)
    }

    fn accept(&mut self, listener: usize, now: Instant) {
        if self.draining.is_some() {
            return;
        }
        for _ in 0..ACCEPT_BUDGET {
            match self.driver.accept(listener) {
                Ok(Some(socket)) => {
                    if self.exhausted {
                        info!("accepting connections again");
                        self.exhausted = false;
                    }
                    self.admit(socket, now, listener);
                }
                Ok(None) => return,
                Err(e) if is_resource_exhaustion(&e) => {
                    self.metrics.accept_exhausted.add(1);
                    if !self.exhausted {
                        error!(
                            error = %e,
                            open = self.shared.connections.load(Ordering::Relaxed),
                            max_connections = self.cfg.max_connections,
                            "cannot accept: out of file descriptors; pending connections wait \
                             until some close. Raise the limit (ulimit -n / LimitNOFILE=) or \
                             lower --max-connections"
                        );
                        self.exhausted = true;
                    }
                    return;
                }
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    return;
                }
            }
        }
        // Budget spent: more may be pending, and the edge will not be reported again.
        self.accept_again.push(listener);
    }

    fn admit(&mut self, socket: D::Socket, now: Instant, listener: usize) {
        let api = Some(listener) == self.cfg.api_listener;
        let tls = match self.tls_session(listener) {
            Ok(tls) => tls,
            Err(e) => {
                warn!(error = %e, "cannot start a TLS session");
                return;
            }
        };
        let count = self.shared.connections.fetch_add(1, Ordering::Relaxed) + 1;
        let over = count > self.cfg.max_connections;
        if over {
            self.shared.connections.fetch_sub(1, Ordering::Relaxed);
            if self.rejecting >= MAX_REJECTING || tls.is_some() {
                // (A 503 over TLS would cost a handshake: a TLS client is refused by the close.)
                // Dropping the socket closes it: the cheapest answer under a flood.
                return;
            }
            self.rejecting += 1;
            self.metrics.rejected_over_limit.add(1);
        }
        let peer = if over {
            Peer::Client {
                conn: Conn::over_capacity(now, &mut self.out),
                client: ClientState::default(),
            }
        } else if api {
            Peer::Api(Box::new(ApiConn::new(now)))
        } else {
            Peer::Client {
                conn: Conn::new(now),
                client: ClientState::default(),
            }
        };
        let entry = Entry::new(peer, tls, !over);
        let Ok(id) = self.conns.insert(entry) else {
            // Every slot an id can name is live: drop the socket (it closes).
            if !over {
                self.shared.connections.fetch_sub(1, Ordering::Relaxed);
            } else {
                self.rejecting -= 1;
            }
            warn!("shard slab full: refusing a connection");
            return;
        };
        if let Err(e) = self.driver.attach(id, socket) {
            warn!(error = %e, "cannot watch an accepted socket");
            self.out.clear();
            self.remove(id, "cannot watch the socket");
            return;
        }
        self.metrics.accepted.add(1);
        if tracing::enabled!(target: CONN_LOG, Level::DEBUG) {
            if let Some(addr) = self.driver.peer_addr(id) {
                self.remotes.insert(id, addr);
            }
            let remote = remote(&self.remotes, &self.driver, id);
            let conn = id.to_bits();
            if over {
                debug!(target: CONN_LOG, conn = %conn, remote = %remote, reason = "over_limit",
                    "refused: over --max-connections (503)");
            } else {
                debug!(target: CONN_LOG, conn = %conn, shard = id.shard(), remote = %remote, api,
                    "accepted");
            }
        }
        self.settle(id, now);
    }

    fn on_wake(&mut self, now: Instant) {
        if self.draining.is_some() || !self.shared.shutdown.load(Ordering::Acquire) {
            return;
        }
        self.draining = Some(now + self.cfg.drain_timeout);
        self.driver.stop_accepting();
        let ids = self.conns.ids();
        debug!(connections = ids.len(), "shard draining");
        for id in ids {
            if let Some(e) = self.conns.get_mut(id) {
                if let Peer::Poll(_) = e.peer {
                    self.poll_end(
                        id,
                        frame_simd::CloseCode::GOING_AWAY,
                        "server shutting down",
                    );
                    continue;
                }
                e.peer.on_shutdown(now, &mut self.out);
            }
            self.settle(id, now);
        }
    }

    fn on_readable(&mut self, id: ConnId, now: Instant) {
        let mut reads = 0;
        loop {
            let Some(e) = self.conns.get_mut(id) else {
                return;
            };
            if e.is(Flags::PAUSED) {
                // Resumed by `on_writable` once the outbox drains.
                return;
            }
            if let Peer::Client { conn, client } = &e.peer {
                if conn.state() == State::AwaitApp || self.app.must_wait(client) {
                    // A backend decides first (the request, or the calls already in flight):
                    // the socket keeps the bytes (TCP backpressure). Read again on the answer.
                    return;
                }
            }
            if self.router.outbound.backlog_len() >= push::BACKLOG_PAUSE_READS {
                // Other shards are behind: read no more requests until they catch up.
                self.again.push(id);
                return;
            }
            match self.driver.recv(id, &mut self.rbuf) {
                Ok(0) => {
                    e.set(Flags::PEER_EOF, true);
                    e.peer.on_peer_eof(now);
                    self.settle(id, now);
                    return;
                }
                Ok(n) => {
                    self.metrics.bytes_in.add(n as u64);
                    if e.tls.is_some() {
                        self.tls_read(id, n, now);
                    } else {
                        self.feed_read(id, n, now);
                    }
                    reads += 1;
                    if n < self.rbuf.len() {
                        // Drained for now: new bytes raise a new edge.
                        return;
                    }
                    if reads >= READ_BUDGET {
                        self.again.push(id);
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.remove(id, "read error");
                    return;
                }
            }
        }
    }

    /// `n` plaintext bytes for connection `id` are in the read buffer: hand them to its peer
    /// state machine and send what it answers.
    fn feed_read(&mut self, id: ConnId, n: usize, now: Instant) {
        let Some(e) = self.conns.get_mut(id) else {
            return;
        };
        match &mut e.peer {
            Peer::Poll(_) => {}
            Peer::Api(_) => self.api_read(id, n, now),
            Peer::Client { conn, client } => {
                let cx = Ctx {
                    settings: &self.cfg.settings,
                    kernels: &self.kernels,
                };
                let was_awaiting = conn.state() == State::AwaitRequest;
                if was_awaiting && self.app.wants_remote() {
                    self.app.remote = self.driver.peer_addr(id);
                }
                let mut app = Dispatch {
                    id,
                    client,
                    router: &mut self.router,
                    app: &mut self.app,
                    now,
                };
                let limit = self.cfg.max_outbound_bytes;
                let room = limit.saturating_sub(e.outbox.queued_bytes());
                self.out.set_room(room);
                conn.on_read(&mut self.rbuf[..n], now, &cx, &mut self.out, &mut app);
                if let Some((code, reason)) = app.flush_forward() {
                    conn.on_close_request(code, &reason, now, &mut self.out);
                }
                if was_awaiting && conn.state() == State::Open {
                    self.metrics.upgrades.add(1);
                    app.client.opened_at = crate::app::OpenedAt::at(now);
                }
                self.settle(id, now);
            }
        }
    }

    fn on_writable(&mut self, id: ConnId, now: Instant) {
        let Some(e) = self.conns.get_mut(id) else {
            return;
        };
        if let Peer::Poll(_) = e.peer {
            return self.poll_flush(id, now);
        }
        let tls_waiting = e.tls.as_ref().is_some_and(|t| t.wants_write());
        if e.outbox.is_empty() && !e.is(Flags::PAUSED) && !tls_waiting {
            // Epoll reports writable with every readable event: nothing to do.
            return;
        }
        if !e.outbox.is_empty() || tls_waiting {
            let driver = &mut self.driver;
            let mut tls = e.tls.as_deref_mut();
            let mut wire = 0;
            let flushed = if e.outbox.is_empty() {
                tls::send(driver, id, tls, &[])
            } else {
                let r = e.outbox.flush(|iov| {
                    let (r, n) = tls::send(driver, id, tls.as_deref_mut(), iov);
                    wire += n;
                    r
                });
                (r, wire)
            };
            match flushed {
                (Ok(_), n) => self.metrics.bytes_out.add(n as u64),
                (Err(_), _) => {
                    self.remove(id, "write error");
                    return;
                }
            }
        }
        if e.is(Flags::PAUSED) && e.outbox.queued_bytes() <= self.cfg.max_outbound_bytes / 2 {
            e.set(Flags::PAUSED, false);
            self.again.push(id);
        }
        self.settle(id, now);
    }

    fn on_timer(&mut self, id: ConnId, tick: u64, now: Instant) {
        let Some(e) = self.conns.get_mut(id) else {
            return;
        };
        if !e.armed_for(tick) {
            // Stale: re-armed earlier since.
            return;
        }
        e.set(Flags::ARMED, false);
        if let Peer::Poll(_) = e.peer {
            return self.poll_timer(id, now);
        }
        if let Peer::Client { conn, client } = &mut e.peer {
            if conn.state() == State::Open && client.deadline().is_some_and(|t| t <= now) {
                // The app's own timer (a Socket.IO heartbeat).
                let mut app = Dispatch {
                    id,
                    client,
                    router: &mut self.router,
                    app: &mut self.app,
                    now,
                };
                app.on_deadline(&mut self.out);
                conn.on_app_close(now, &mut self.out);
            }
        }
        e.peer
            .on_deadline(now, &self.cfg, &self.kernels, &mut self.out);
        if e.peer.must_drop() {
            self.metrics.timeouts.add(1);
        }
        self.on_deadline = true;
        self.settle(id, now);
        self.on_deadline = false;
        if let Some(e) = self.conns.get_mut(id) {
            // A timer fires only after a silence (a ping is due or a deadline passed): the
            // connection is idle, an emptied write queue gives its memory back.
            e.outbox.on_idle();
        }
    }

    /// After any input to a connection: send what it produced, then act on its state (shut
    /// down, drop, pause reading) and re-arm its timer.
    fn settle(&mut self, id: ConnId, now: Instant) {
        let Some(e) = self.conns.get_mut(id) else {
            self.out.clear();
            return;
        };
        if let Peer::Poll(_) = e.peer {
            self.out.clear();
            return self.poll_settle(id, now);
        }
        let only_coalesced_pong = self.out.finish();
        let mut broken = false;
        if !self.out.bytes.is_empty() {
            if !e.outbox.is_empty() {
                if only_coalesced_pong {
                    e.outbox.push_pong(&self.out.bytes);
                } else {
                    e.outbox.push_owned(self.out.bytes.clone(), 0);
                }
            } else {
                let len = self.out.bytes.len();
                let iov = [IoSlice::new(&self.out.bytes)];
                let (sent, wire) = tls::send(&mut self.driver, id, e.tls.as_deref_mut(), &iov);
                let sent = match sent {
                    Ok(n) => n,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => 0,
                    Err(_) => {
                        broken = true;
                        len
                    }
                };
                self.metrics.bytes_out.add(wire as u64);
                if sent < len {
                    if len - sent <= COPY_REMAINDER_BYTES {
                        e.outbox.push_owned(self.out.bytes[sent..].to_vec(), 0);
                    } else {
                        let bytes = std::mem::take(&mut self.out.bytes);
                        e.outbox.push_owned(bytes, sent);
                    }
                }
            }
        }
        self.metrics.messages_in.add(self.out.messages_in);
        self.metrics.messages_out.add(self.out.messages_out);
        if let Some(reason) = self.out.refused {
            self.metrics.handshake_failed(reason);
            if tracing::enabled!(target: CONN_LOG, Level::DEBUG) {
                let remote = remote(&self.remotes, &self.driver, id);
                debug!(target: CONN_LOG, conn = %id.to_bits(), remote = %remote,
                    reason = reason.label(), "refused: upgrade");
            }
        }
        if let Some(code) = self.out.close_sent {
            self.metrics.close_sent(code);
            if tracing::enabled!(target: CONN_LOG, Level::DEBUG) {
                let reason = match self.out.close_reason() {
                    "" => "echo of the peer's close",
                    r => r,
                };
                let remote = remote(&self.remotes, &self.driver, id);
                debug!(target: CONN_LOG, conn = %id.to_bits(), remote = %remote,
                    code = code.map(|c| c.0), reason, "closing");
            }
        }
        self.out.clear();
        if self.out.bytes.capacity() > OUTPUT_KEEP_BYTES {
            self.out.bytes = Vec::new();
        }
        if let Peer::Client { conn, client } = &mut e.peer {
            if conn.state() != State::Open && client.session.kind.is_some() {
                // Closing: no more deliveries; others see it leave now, not when the socket goes.
                let ending = Ending::of(conn.close_record());
                let user = self.router.user(&client.session).map(|u| &**u);
                self.app.disconnected(id, client, user, ending, now);
                crate::app::sio::polling::on_closed(&mut self.router, id, client);
                self.router.on_disconnect(id, &mut client.session);
            }
        }
        if broken {
            return self.remove(id, "write error");
        }
        if e.peer.must_drop() {
            let why = if self.on_deadline {
                "deadline passed"
            } else {
                "dropped after its answer"
            };
            return self.remove(id, why);
        }
        if e.peer.is_closed() && e.outbox.is_empty() {
            let write_shut = e.is(Flags::WRITE_SHUT);
            if let Some(t) = e.tls.as_deref_mut() {
                // The TLS end of the conversation, then the FIN once the socket took it.
                if !write_shut && !t.is_handshaking() {
                    t.close_notify();
                }
                let driver = &mut self.driver;
                if let (Ok(_), n) = tls::send(driver, id, Some(t), &[]) {
                    self.metrics.bytes_out.add(n as u64);
                }
            }
        }
        let tls_waiting = e.tls.as_ref().is_some_and(|t| t.wants_write());
        if e.peer.is_closed() && e.outbox.is_empty() && !tls_waiting {
            if e.is(Flags::PEER_EOF) || self.draining.is_some() {
                // Nothing more to say or hear (when draining, the closing handshake is done:
                // no reason to wait for the peer's FIN before exiting).
                let why = if e.is(Flags::PEER_EOF) {
                    "peer closed"
                } else {
                    "closed while draining"
                };
                return self.remove(id, why);
            }
            if !e.is(Flags::WRITE_SHUT) {
                self.driver.shutdown_write(id);
                e.set(Flags::WRITE_SHUT, true);
            }
        }
        if !e.is(Flags::PAUSED) && e.outbox.queued_bytes() > self.cfg.max_outbound_bytes {
            e.set(Flags::PAUSED, true);
            self.metrics.backpressure_pauses.add(1);
        }
        let deadline = e.peer.deadline(&self.cfg, now);
        e.arm(&mut self.wheel, id, deadline, now);
    }

    /// Drop connection `id`; `why` goes to its log line.
    fn remove(&mut self, id: ConnId, why: &'static str) {
        if !self.conns.contains(id) {
            return;
        }
        if tracing::enabled!(target: CONN_LOG, Level::DEBUG) {
            let remote = remote(&self.remotes, &self.driver, id);
            debug!(target: CONN_LOG, conn = %id.to_bits(), remote = %remote, reason = why,
                "closed");
            self.remotes.remove(&id);
        }
        let Some(mut e) = self.conns.remove(id) else {
            return;
        };
        self.wheel.cancel(id.slot());
        if let Peer::Poll(p) = &mut e.peer {
            return self.forget_poll(id, p, frame_simd::CloseCode::GOING_AWAY, why);
        }
        self.app.forget_conn(id);
        if let Peer::Client { conn, client } = &mut e.peer {
            crate::app::sio::polling::on_closed(&mut self.router, id, client);
            if client.session.kind.is_some() {
                let ending = Ending::of(conn.close_record());
                let user = self.router.user(&client.session).map(|u| &**u);
                self.app
                    .disconnected(id, client, user, ending, self.driver.now());
                self.router.on_disconnect(id, &mut client.session);
            }
        }
        self.driver.close(id);
        if e.is(Flags::COUNTED) {
            self.shared.connections.fetch_sub(1, Ordering::Relaxed);
        } else {
            self.rejecting = self.rejecting.saturating_sub(1);
        }
        self.metrics.closed.add(1);
        if self.exhausted {
            // A descriptor was freed: connections waiting in the backlog can be taken now.
            self.accept_again.extend(0..self.listeners);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every accepted connection holds one slab slot of this size for its whole life, so it is
    /// most of an idle connection's memory: state only some connections need lives behind
    /// pointers (the outbox's queue, TLS, Socket.IO, a partial message, the request head, the
    /// close record, compression parameters). It was 376 bytes before they moved, and 232
    /// before the client's Socket.IO, polling and connect-hook state shared one pointer, its
    /// upgrade time shrank to 5 bytes, the timer tick and the entry's flags shared a word (200),
    /// the session kept its user as a 4-byte key (184) and its channel keys in 16 bytes (176).
    #[test]
    fn a_connection_slot_stays_small() {
        let entry = std::mem::size_of::<Entry>();
        assert!(entry <= 176, "a connection's entry grew to {entry} bytes");
        let slot = Slab::<Entry>::SLOT_BYTES;
        assert_eq!(
            slot, entry,
            "the slab adds nothing to an entry (it was 8 bytes)"
        );
    }

    #[test]
    fn an_entrys_flags_are_independent() {
        let mut e = Entry::new(
            Peer::Client {
                conn: Conn::new(Instant::now()),
                client: ClientState::default(),
            },
            None,
            true,
        );
        assert!(e.is(Flags::COUNTED) && !e.is(Flags::PAUSED) && !e.is(Flags::ARMED));
        e.set(Flags::PAUSED, true);
        assert!(e.mark_dirty());
        assert!(!e.mark_dirty());
        assert!(e.is(Flags::PAUSED) && e.is(Flags::DIRTY) && e.is(Flags::COUNTED));
        e.set(Flags::PAUSED, false);
        assert!(!e.is(Flags::PAUSED) && e.is(Flags::DIRTY) && e.is(Flags::COUNTED));
    }

    #[test]
    fn a_later_deadline_keeps_the_earlier_timer() {
        let t0 = Instant::now();
        let mut wheel = TimerWheel::new(t0);
        let id = ConnId::new(0, 1, 0);
        let mut e = Entry::new(
            Peer::Client {
                conn: Conn::new(t0),
                client: ClientState::default(),
            },
            None,
            true,
        );
        e.arm(&mut wheel, id, t0 + Duration::from_secs(10), t0);
        e.arm(&mut wheel, id, t0 + Duration::from_secs(20), t0);
        assert!(
            e.armed_for(1000),
            "a later deadline leaves the earlier timer"
        );
        e.arm(&mut wheel, id, t0 + Duration::from_secs(5), t0);
        assert!(
            e.armed_for(500) && !e.armed_for(1000),
            "an earlier one moves it"
        );
        assert_eq!(wheel.len(), 1);
    }
}
