//! Counters per shard, and their Prometheus text rendering. Each shard is the only writer of its
//! own [`ShardMetrics`] (so an update is a relaxed load and store, not a locked read-modify-write);
//! readers sum all shards. Every metric name the gateway exports is written in this file only.

use std::sync::atomic::{AtomicU64, Ordering};

use frame_simd::CloseCode;

pub use crate::conn::handshake::HandshakeFailure;

/// One shard's counters.
#[derive(Debug, Default)]
pub struct ShardMetrics {
    /// Connections accepted.
    pub accepted: Counter,
    /// Connections answered 503 over `--max-connections`.
    pub rejected_over_limit: Counter,
    /// Connections closed (any reason).
    pub closed: Counter,
    /// Successful WebSocket upgrades.
    pub upgrades: Counter,
    /// Bytes read from sockets.
    pub bytes_in: Counter,
    /// Bytes written to sockets.
    pub bytes_out: Counter,
    /// Times a connection stopped reading because its outbox was over the limit.
    pub backpressure_pauses: Counter,
    /// Accept failures for lack of file descriptors.
    pub accept_exhausted: Counter,
    /// Times a multishot receive ended because the io_uring buffer ring was empty.
    pub recv_buffers_exhausted: Counter,
    /// Times the io_uring receive buffers' memory was returned after a quiet period.
    pub recv_buffer_trims: Counter,
    /// Connections dropped at a deadline (handshake, pong, close).
    pub timeouts: Counter,
    /// Data messages received from clients.
    pub messages_in: Counter,
    /// Data messages sent to clients (replies, deliveries, echoes).
    pub messages_out: Counter,
    /// Publishes accepted (from clients and the API), counted once each on the publishing shard.
    pub publishes: Counter,
    /// Deliveries queued to subscribers (one per subscriber per publish).
    pub deliveries: Counter,
    /// Connections closed with 4008 for exceeding `--max-outbound-bytes`.
    pub slow_consumer_disconnects: Counter,
    /// Connections closed with 4001 because their token expired.
    pub token_expiry_closes: Counter,
    /// Upgrades refused, by reason (indexed by [`HandshakeFailure`]).
    pub handshake_failures: [Counter; HandshakeFailure::ALL.len()],
    /// Backend API requests answered, by status class (indexed by [`ApiStatus`]).
    pub api_requests: [Counter; ApiStatus::ALL.len()],
    /// Messages waiting in this shard's inbound queue (set by the shard when it drains it).
    pub queue_depth: Gauge,
    /// Subscribes with `recover` answered `recovered: true`.
    pub recovered: Counter,
    /// Subscribes with `recover` answered `recovered: false` (the client reloads).
    pub recovery_misses: Counter,
    /// Channel history streams this shard owns.
    pub history_streams: Gauge,
    /// TLS handshakes completed on TLS listeners.
    pub tls_handshakes: Counter,
    /// TLS connections refused: not TLS (plain HTTP, garbage) or a failed handshake or record.
    pub tls_refused: Counter,
    /// Close frames sent (our own closes and echoes of the peer's), by code (indexed by
    /// [`CloseLabel`]).
    pub closes: [Counter; CloseLabel::ALL.len()],
    /// Socket.IO counters.
    pub sio: SioMetrics,
}

/// The Socket.IO endpoint's counters (`gateway_socketio_*`).
#[derive(Debug, Default)]
pub struct SioMetrics {
    /// Engine.IO sessions opened.
    pub sessions: Counter,
    /// Sockets admitted to a namespace.
    pub connects: Counter,
    /// CONNECTs refused.
    pub connect_errors: Counter,
    /// Events received.
    pub events: Counter,
    /// Events dropped (mapped to `drop`, unmapped, or their action failed).
    pub dropped: Counter,
    /// Sessions closed for a malformed packet or a limit.
    pub malformed: Counter,
    /// Sessions closed for a missing pong or no CONNECT in time.
    pub timeouts: Counter,
    /// Long-polling requests handed to a session's owner.
    pub polling_requests: Counter,
    /// Long-polling requests refused.
    pub polling_refused: Counter,
    /// Polling sessions upgraded to a WebSocket.
    pub upgrades: Counter,
}

impl ShardMetrics {
    /// Count a refused upgrade.
    pub fn handshake_failed(&self, reason: HandshakeFailure) {
        self.handshake_failures[reason as usize].add(1);
    }

    /// Count a close frame sent with `code` (`None`: an empty close).
    pub fn close_sent(&self, code: Option<CloseCode>) {
        self.closes[CloseLabel::of(code) as usize].add(1);
    }

    /// Count an answered API request by its status code.
    pub fn api_answered(&self, status: u16) {
        self.api_requests[ApiStatus::of(status) as usize].add(1);
    }
}

/// Status classes of API answers (the `status` label of `gateway_api_requests_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiStatus {
    /// 2xx.
    Ok,
    /// 401.
    Unauthorized,
    /// 429.
    Busy,
    /// Any other 4xx.
    ClientError,
    /// 5xx.
    ServerError,
}

impl ApiStatus {
    /// Every class, in index order.
    pub const ALL: [ApiStatus; 5] = [
        ApiStatus::Ok,
        ApiStatus::Unauthorized,
        ApiStatus::Busy,
        ApiStatus::ClientError,
        ApiStatus::ServerError,
    ];

    /// The class of `status`.
    pub fn of(status: u16) -> ApiStatus {
        match status {
            401 => ApiStatus::Unauthorized,
            429 => ApiStatus::Busy,
            400..=499 => ApiStatus::ClientError,
            500..=599 => ApiStatus::ServerError,
            _ => ApiStatus::Ok,
        }
    }

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            ApiStatus::Ok => "2xx",
            ApiStatus::Unauthorized => "401",
            ApiStatus::Busy => "429",
            ApiStatus::ClientError => "4xx",
            ApiStatus::ServerError => "5xx",
        }
    }
}

/// Close codes as the `code` label of `gateway_closes_total`: every code the gateway sends
/// (gateway/docs/close-codes.md) has its own value; a backend's other 4000-4999 codes share one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseLabel {
    /// An empty close frame (echo of a peer's empty close).
    NoCode,
    /// 1000, normal.
    Normal,
    /// 1001, going away (shutdown, ping timeout).
    GoingAway,
    /// 1002, protocol error.
    ProtocolError,
    /// 1003, unsupported data.
    Unsupported,
    /// 1007, invalid payload (UTF-8).
    InvalidPayload,
    /// 1008, policy violation.
    Policy,
    /// 1009, too big.
    TooBig,
    /// 1011, internal error.
    Internal,
    /// 4000, disconnected by a backend without a code.
    Disconnected,
    /// 4001, token expired.
    TokenExpired,
    /// 4008, slow consumer.
    SlowConsumer,
    /// A backend's own code in 4000..=4999.
    Backend,
    /// Anything else (echoes of a peer's unusual code).
    Other,
}

impl CloseLabel {
    /// Every label, in index order.
    pub const ALL: [CloseLabel; 14] = [
        CloseLabel::NoCode,
        CloseLabel::Normal,
        CloseLabel::GoingAway,
        CloseLabel::ProtocolError,
        CloseLabel::Unsupported,
        CloseLabel::InvalidPayload,
        CloseLabel::Policy,
        CloseLabel::TooBig,
        CloseLabel::Internal,
        CloseLabel::Disconnected,
        CloseLabel::TokenExpired,
        CloseLabel::SlowConsumer,
        CloseLabel::Backend,
        CloseLabel::Other,
    ];

    /// The label of `code`.
    pub fn of(code: Option<CloseCode>) -> CloseLabel {
        match code.map(|c| c.0) {
            None => CloseLabel::NoCode,
            Some(1000) => CloseLabel::Normal,
            Some(1001) => CloseLabel::GoingAway,
            Some(1002) => CloseLabel::ProtocolError,
            Some(1003) => CloseLabel::Unsupported,
            Some(1007) => CloseLabel::InvalidPayload,
            Some(1008) => CloseLabel::Policy,
            Some(1009) => CloseLabel::TooBig,
            Some(1011) => CloseLabel::Internal,
            Some(4000) => CloseLabel::Disconnected,
            Some(4001) => CloseLabel::TokenExpired,
            Some(4008) => CloseLabel::SlowConsumer,
            Some(4002..=4999) => CloseLabel::Backend,
            Some(_) => CloseLabel::Other,
        }
    }

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            CloseLabel::NoCode => "none",
            CloseLabel::Normal => "1000",
            CloseLabel::GoingAway => "1001",
            CloseLabel::ProtocolError => "1002",
            CloseLabel::Unsupported => "1003",
            CloseLabel::InvalidPayload => "1007",
            CloseLabel::Policy => "1008",
            CloseLabel::TooBig => "1009",
            CloseLabel::Internal => "1011",
            CloseLabel::Disconnected => "4000",
            CloseLabel::TokenExpired => "4001",
            CloseLabel::SlowConsumer => "4008",
            CloseLabel::Backend => "4xxx",
            CloseLabel::Other => "other",
        }
    }
}

/// A counter with a single writer.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Add `n` (only the owning shard calls this).
    #[inline]
    pub fn add(&self, n: u64) {
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_add(n), Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that is set, not added to (a queue depth).
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// Set the value.
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The Prometheus text format (0.0.4) of every shard's metrics, appended to `out`.
///
/// Counters are summed over the shards (a connection lives on one shard, so the sums are exact);
/// `gateway_shard_queue_depth` and `gateway_shard_connections_open` carry a `shard` label.
pub fn render(shards: &[&ShardMetrics], out: &mut String) {
    let sum = |f: &dyn Fn(&ShardMetrics) -> u64| shards.iter().map(|m| f(m)).sum::<u64>();
    let open = |m: &ShardMetrics| m.accepted.get().saturating_sub(m.closed.get());

    family(
        out,
        "gateway_connections_open",
        "gauge",
        "Open TCP connections (client and API).",
    );
    sample(out, "gateway_connections_open", &[], sum(&open));
    family(
        out,
        "gateway_shard_connections_open",
        "gauge",
        "Open TCP connections per shard.",
    );
    for (i, m) in shards.iter().enumerate() {
        sample(
            out,
            "gateway_shard_connections_open",
            &[("shard", &i.to_string())],
            open(m),
        );
    }
    family(
        out,
        "gateway_connections_accepted_total",
        "counter",
        "TCP connections accepted.",
    );
    sample(
        out,
        "gateway_connections_accepted_total",
        &[],
        sum(&|m| m.accepted.get()),
    );
    family(
        out,
        "gateway_connections_refused_total",
        "counter",
        "Connections refused: over --max-connections (answered 503), or not accepted for lack of \
         file descriptors.",
    );
    sample(
        out,
        "gateway_connections_refused_total",
        &[("reason", "over_limit")],
        sum(&|m| m.rejected_over_limit.get()),
    );
    sample(
        out,
        "gateway_connections_refused_total",
        &[("reason", "fd_exhausted")],
        sum(&|m| m.accept_exhausted.get()),
    );
    family(
        out,
        "gateway_uring_buffers_exhausted_total",
        "counter",
        "Receives that found the io_uring provided-buffer ring empty (re-armed once buffers \
         come back; 0 with the epoll driver).",
    );
    sample(
        out,
        "gateway_uring_buffers_exhausted_total",
        &[],
        sum(&|m| m.recv_buffers_exhausted.get()),
    );
    family(
        out,
        "gateway_uring_buffer_trims_total",
        "counter",
        "Times the io_uring receive buffers' memory was returned to the system after no receive \
         needed one for a moment (after a burst or a connection storm; 0 with the epoll driver).",
    );
    sample(
        out,
        "gateway_uring_buffer_trims_total",
        &[],
        sum(&|m| m.recv_buffer_trims.get()),
    );
    family(
        out,
        "gateway_handshake_failures_total",
        "counter",
        "Upgrade requests refused.",
    );
    for r in HandshakeFailure::ALL {
        sample(
            out,
            "gateway_handshake_failures_total",
            &[("reason", r.label())],
            sum(&|m| m.handshake_failures[r as usize].get()),
        );
    }
    family(
        out,
        "gateway_recoveries_total",
        "counter",
        "Subscribes with recover on channels with history, by outcome: recovered (the missed \
         publications were replayed) or missed (recovered:false, the client reloads).",
    );
    sample(
        out,
        "gateway_recoveries_total",
        &[("result", "recovered")],
        sum(&|m| m.recovered.get()),
    );
    sample(
        out,
        "gateway_recoveries_total",
        &[("result", "missed")],
        sum(&|m| m.recovery_misses.get()),
    );
    family(
        out,
        "gateway_history_streams",
        "gauge",
        "Channels whose history the shards keep (--history).",
    );
    sample(
        out,
        "gateway_history_streams",
        &[],
        sum(&|m| m.history_streams.get()),
    );
    render_sio(shards, out);
    family(
        out,
        "gateway_upgrades_total",
        "counter",
        "Successful WebSocket upgrades.",
    );
    sample(
        out,
        "gateway_upgrades_total",
        &[],
        sum(&|m| m.upgrades.get()),
    );
    family(
        out,
        "gateway_closes_total",
        "counter",
        "Close frames sent to clients (the gateway's own closes and echoes of a client's), by \
         close code (4xxx: a backend's other codes; none: an empty close).",
    );
    for l in CloseLabel::ALL {
        sample(
            out,
            "gateway_closes_total",
            &[("code", l.label())],
            sum(&|m| m.closes[l as usize].get()),
        );
    }
    type Read<'a> = &'a dyn Fn(&ShardMetrics) -> u64;
    let counters: [(&str, &str, Read<'_>); 11] = [
        (
            "gateway_messages_in_total",
            "Data messages received from clients.",
            &|m| m.messages_in.get(),
        ),
        (
            "gateway_messages_out_total",
            "Data messages sent to clients.",
            &|m| m.messages_out.get(),
        ),
        ("gateway_bytes_in_total", "Bytes read from sockets.", &|m| {
            m.bytes_in.get()
        }),
        (
            "gateway_bytes_out_total",
            "Bytes written to sockets.",
            &|m| m.bytes_out.get(),
        ),
        (
            "gateway_publishes_total",
            "Publishes accepted (clients and API).",
            &|m| m.publishes.get(),
        ),
        (
            "gateway_deliveries_total",
            "Messages queued to subscribers.",
            &|m| m.deliveries.get(),
        ),
        (
            "gateway_slow_consumer_disconnects_total",
            "Connections closed with 4008 over --max-outbound-bytes.",
            &|m| m.slow_consumer_disconnects.get(),
        ),
        (
            "gateway_token_expiry_closes_total",
            "Connections closed with 4001 when their token expired.",
            &|m| m.token_expiry_closes.get(),
        ),
        (
            "gateway_backpressure_pauses_total",
            "Times a connection stopped reading because its outbox was full.",
            &|m| m.backpressure_pauses.get(),
        ),
        (
            "gateway_timeouts_total",
            "Connections dropped at a deadline.",
            &|m| m.timeouts.get(),
        ),
        (
            "gateway_connections_closed_total",
            "TCP connections closed.",
            &|m| m.closed.get(),
        ),
    ];
    for (name, help, f) in counters {
        family(out, name, "counter", help);
        sample(out, name, &[], sum(f));
    }
    family(
        out,
        "gateway_api_requests_total",
        "counter",
        "Backend API requests answered.",
    );
    for s in ApiStatus::ALL {
        sample(
            out,
            "gateway_api_requests_total",
            &[("status", s.label())],
            sum(&|m| m.api_requests[s as usize].get()),
        );
    }
    family(
        out,
        "gateway_shard_queue_depth",
        "gauge",
        "Messages waiting in a shard's inbound cross-shard queue.",
    );
    for (i, m) in shards.iter().enumerate() {
        sample(
            out,
            "gateway_shard_queue_depth",
            &[("shard", &i.to_string())],
            m.queue_depth.get(),
        );
    }
    family(
        out,
        "gateway_tls_handshakes_total",
        "counter",
        "TLS handshakes on TLS listeners (--tls-cert, --api-tls-cert), by result: ok, or refused \
         (not TLS, a plain-HTTP request, a failed handshake or a bad record).",
    );
    sample(
        out,
        "gateway_tls_handshakes_total",
        &[("result", "ok")],
        sum(&|m| m.tls_handshakes.get()),
    );
    sample(
        out,
        "gateway_tls_handshakes_total",
        &[("result", "refused")],
        sum(&|m| m.tls_refused.get()),
    );
}

/// The broker thread's numbers as `/metrics` shows them (a single node reports itself connected
/// and zeros).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BrokerCounters {
    /// The broker is reachable.
    pub connected: bool,
    /// Connections to the broker established again after a loss.
    pub reconnects: u64,
    /// Channels subscribed again after a reconnect.
    pub resubscribes: u64,
    /// Broker messages dropped because a shard's queue was full.
    pub dropped: u64,
    /// Messages published to the broker.
    pub published: u64,
    /// Messages received from the broker for this node.
    pub received: u64,
    /// Channels this node is subscribed to on the broker.
    pub channels: u64,
    /// Nodes alive according to heartbeats (this one included).
    pub nodes: u64,
    /// Broker instances this node cannot reach.
    pub instances_down: u64,
    /// History queries the broker's history store did not answer in time.
    pub history_failures: u64,
    /// Gaps seen in the offsets the broker delivered for channels with shared history.
    pub history_gaps: u64,
}

/// Append the broker families to `out`.
pub fn render_broker(b: &BrokerCounters, out: &mut String) {
    let rows: [(&str, &str, &str, u64); 9] = [
        (
            "gateway_broker_connected",
            "gauge",
            "1 while the broker is reachable (always 1 with --broker memory).",
            u64::from(b.connected),
        ),
        (
            "gateway_broker_reconnects_total",
            "counter",
            "Broker connections established again after a loss.",
            b.reconnects,
        ),
        (
            "gateway_broker_resubscribes_total",
            "counter",
            "Channels subscribed again on the broker after a reconnect.",
            b.resubscribes,
        ),
        (
            "gateway_broker_dropped_total",
            "counter",
            "Broker messages dropped because a shard's queue was full.",
            b.dropped,
        ),
        (
            "gateway_broker_published_total",
            "counter",
            "Messages this node published to the broker.",
            b.published,
        ),
        (
            "gateway_broker_received_total",
            "counter",
            "Messages this node received from the broker.",
            b.received,
        ),
        (
            "gateway_broker_channels",
            "gauge",
            "Channels this node is subscribed to on the broker.",
            b.channels,
        ),
        (
            "gateway_broker_nodes",
            "gauge",
            "Gateway nodes alive according to heartbeats, this one included.",
            b.nodes,
        ),
        (
            "gateway_broker_instances_down",
            "gauge",
            "Broker instances (Redis instances of --broker, or Redis Cluster masters) this node cannot reach.",
            b.instances_down,
        ),
    ];
    for (name, kind, help, value) in rows {
        family(out, name, kind, help);
        sample(out, name, &[], value);
    }
    // The history of channels kept on the broker (`broker::history`).
    let history: [(&str, &str, u64); 2] = [
        (
            "gateway_broker_history_failures_total",
            "History queries (recover, history) the broker did not answer in time.",
            b.history_failures,
        ),
        (
            "gateway_broker_history_gaps_total",
            "Offset jumps seen in publications the broker delivered for channels with history.",
            b.history_gaps,
        ),
    ];
    for (name, help, value) in history {
        family(out, name, "counter", help);
        sample(out, name, &[], value);
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    use std::fmt::Write;
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One sample line. Label values here are fixed words and shard numbers: nothing to escape.
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: u64) {
    use std::fmt::Write;
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{v}\"");
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// The `gateway_socketio_*` families.
fn render_sio(shards: &[&ShardMetrics], out: &mut String) {
    let sum = |f: &dyn Fn(&SioMetrics) -> u64| shards.iter().map(|m| f(&m.sio)).sum::<u64>();
    family(
        out,
        "gateway_socketio_sessions_total",
        "counter",
        "Socket.IO (Engine.IO) sessions opened at /socket.io/.",
    );
    sample(
        out,
        "gateway_socketio_sessions_total",
        &[],
        sum(&|m| m.sessions.get()),
    );
    family(
        out,
        "gateway_socketio_connects_total",
        "counter",
        "Socket.IO namespace CONNECTs, by result: accepted, or refused (unknown namespace, \
         missing or bad auth token).",
    );
    for (result, n) in [
        ("accepted", sum(&|m| m.connects.get())),
        ("refused", sum(&|m| m.connect_errors.get())),
    ] {
        sample(
            out,
            "gateway_socketio_connects_total",
            &[("result", result)],
            n,
        );
    }
    family(
        out,
        "gateway_socketio_events_total",
        "counter",
        "Socket.IO events from clients, by outcome: handled by their action, or dropped \
         (mapped to drop, not in the event map, or the action failed).",
    );
    let events = sum(&|m| m.events.get());
    let dropped = sum(&|m| m.dropped.get());
    for (outcome, n) in [
        ("handled", events.saturating_sub(dropped)),
        ("dropped", dropped),
    ] {
        sample(
            out,
            "gateway_socketio_events_total",
            &[("outcome", outcome)],
            n,
        );
    }
    family(
        out,
        "gateway_socketio_session_closes_total",
        "counter",
        "Socket.IO sessions the gateway closed, by reason: malformed (a bad packet or over a \
         limit) or timeout (a missing pong, no CONNECT in time).",
    );
    for (reason, n) in [
        ("malformed", sum(&|m| m.malformed.get())),
        ("timeout", sum(&|m| m.timeouts.get())),
    ] {
        sample(
            out,
            "gateway_socketio_session_closes_total",
            &[("reason", reason)],
            n,
        );
    }
    family(
        out,
        "gateway_socketio_polling_requests_total",
        "counter",
        "Socket.IO HTTP long-polling requests (handshakes, GETs, POSTs), by result: handled by \
         the session's owner shard, or refused (bad version or method, unknown session, origin \
         not allowed, over maxPayload).",
    );
    for (result, n) in [
        ("handled", sum(&|m| m.polling_requests.get())),
        ("refused", sum(&|m| m.polling_refused.get())),
    ] {
        sample(
            out,
            "gateway_socketio_polling_requests_total",
            &[("result", result)],
            n,
        );
    }
    family(
        out,
        "gateway_socketio_upgrades_total",
        "counter",
        "Socket.IO sessions upgraded from HTTP long-polling to a WebSocket.",
    );
    sample(
        out,
        "gateway_socketio_upgrades_total",
        &[],
        sum(&|m| m.upgrades.get()),
    );
}

/// Every shard's counters added up (a snapshot; each counter is read once).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections answered 503.
    pub rejected_over_limit: u64,
    /// Connections closed.
    pub closed: u64,
    /// WebSocket upgrades.
    pub upgrades: u64,
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
    /// Backpressure pauses.
    pub backpressure_pauses: u64,
    /// Accept failures for lack of descriptors.
    pub accept_exhausted: u64,
    /// Deadline drops.
    pub timeouts: u64,
}

impl Totals {
    /// Sum `shards`.
    pub fn sum<'a>(shards: impl IntoIterator<Item = &'a ShardMetrics>) -> Totals {
        shards.into_iter().fold(Totals::default(), |t, m| Totals {
            accepted: t.accepted + m.accepted.get(),
            rejected_over_limit: t.rejected_over_limit + m.rejected_over_limit.get(),
            closed: t.closed + m.closed.get(),
            upgrades: t.upgrades + m.upgrades.get(),
            bytes_in: t.bytes_in + m.bytes_in.get(),
            bytes_out: t.bytes_out + m.bytes_out.get(),
            backpressure_pauses: t.backpressure_pauses + m.backpressure_pauses.get(),
            accept_exhausted: t.accept_exhausted + m.accept_exhausted.get(),
            timeouts: t.timeouts + m.timeouts.get(),
        })
    }
}

/// The hooks a backend can serve (the `hook` label), in index order.
pub const HOOK_KINDS: [&str; 6] = [
    "connect",
    "subscribe",
    "publish",
    "rpc",
    "disconnect",
    "forward",
];

/// Why a backend call failed (the `kind` label of `gateway_hook_errors_total`), in index order.
pub const HOOK_ERRORS: [&str; 7] = [
    "busy",
    "circuit_open",
    "timeout",
    "unreachable",
    "closed",
    "bad_response",
    "status",
];

/// Upper bounds (seconds) of the `gateway_hook_latency_seconds` buckets.
pub const HOOK_LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A latency histogram with a single writer (the hooks thread).
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative; the last one is `+Inf`).
    buckets: [Counter; HOOK_LATENCY_BUCKETS.len() + 1],
    count: Counter,
    /// Sum of observations in microseconds.
    sum_micros: Counter,
}

impl Histogram {
    /// Record one observation.
    pub fn observe(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        let i = HOOK_LATENCY_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(HOOK_LATENCY_BUCKETS.len());
        self.buckets[i].add(1);
        self.count.add(1);
        self.sum_micros
            .add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.get()
    }
}

/// The hooks thread's metrics: calls, errors and latency per hook, breaker state per backend.
#[derive(Debug)]
pub struct HookMetrics {
    /// Calls started (or refused at once), per hook.
    pub calls: [Counter; HOOK_KINDS.len()],
    /// Failed calls, per hook and error kind.
    pub errors: [[Counter; HOOK_ERRORS.len()]; HOOK_KINDS.len()],
    /// Time from the call's submission to its answer, per hook.
    pub latency: [Histogram; HOOK_KINDS.len()],
    /// Per backend (`host:port`): its breaker state (0 closed, 1 open, 2 half-open).
    pub breakers: Vec<(String, Gauge)>,
    /// Disconnect events dropped because the batch buffer was full.
    pub events_dropped: Counter,
}

impl HookMetrics {
    /// Metrics for the backends named `backends`.
    pub fn new(backends: Vec<String>) -> HookMetrics {
        HookMetrics {
            calls: Default::default(),
            errors: Default::default(),
            latency: Default::default(),
            breakers: backends
                .into_iter()
                .map(|b| (b, Gauge::default()))
                .collect(),
            events_dropped: Counter::default(),
        }
    }
}

/// The Prometheus text of the hook metrics (family heads always, samples for each hook).
pub fn render_hooks(m: Option<&HookMetrics>, out: &mut String) {
    use std::fmt::Write;
    family(
        out,
        "gateway_hook_calls_total",
        "counter",
        "Calls to backend hooks (connect, subscribe, publish, rpc, disconnect, forward).",
    );
    family(
        out,
        "gateway_hook_errors_total",
        "counter",
        "Failed backend hook calls, by hook and kind (busy, circuit_open, timeout, \
         unreachable, closed, bad_response, status).",
    );
    family(
        out,
        "gateway_hook_latency_seconds",
        "histogram",
        "Time from a hook call's submission to its answer.",
    );
    family(
        out,
        "gateway_hook_breaker_state",
        "gauge",
        "Each backend's circuit breaker: 0 closed, 1 open, 2 half-open.",
    );
    family(
        out,
        "gateway_hook_events_dropped_total",
        "counter",
        "Disconnect events dropped because the batch waiting for the backend was full.",
    );
    let Some(m) = m else {
        return;
    };
    for (k, hook) in HOOK_KINDS.iter().enumerate() {
        sample(
            out,
            "gateway_hook_calls_total",
            &[("hook", hook)],
            m.calls[k].get(),
        );
        for (e, kind) in HOOK_ERRORS.iter().enumerate() {
            sample(
                out,
                "gateway_hook_errors_total",
                &[("hook", hook), ("kind", kind)],
                m.errors[k][e].get(),
            );
        }
        let h = &m.latency[k];
        let mut cumulative = 0;
        for (i, bound) in HOOK_LATENCY_BUCKETS.iter().enumerate() {
            cumulative += h.buckets[i].get();
            let le = bound.to_string();
            sample(
                out,
                "gateway_hook_latency_seconds_bucket",
                &[("hook", hook), ("le", &le)],
                cumulative,
            );
        }
        cumulative += h.buckets[HOOK_LATENCY_BUCKETS.len()].get();
        sample(
            out,
            "gateway_hook_latency_seconds_bucket",
            &[("hook", hook), ("le", "+Inf")],
            cumulative,
        );
        let _ = writeln!(
            out,
            "gateway_hook_latency_seconds_sum{{hook=\"{hook}\"}} {}",
            h.sum_micros.get() as f64 / 1e6
        );
        sample(
            out,
            "gateway_hook_latency_seconds_count",
            &[("hook", hook)],
            h.count(),
        );
    }
    for (backend, state) in &m.breakers {
        // Backend names are `host:port` from the configuration: no quotes or backslashes.
        sample(
            out,
            "gateway_hook_breaker_state",
            &[("backend", backend)],
            state.get(),
        );
    }
    sample(
        out,
        "gateway_hook_events_dropped_total",
        &[],
        m.events_dropped.get(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(shards: &[&ShardMetrics]) -> String {
        let mut out = String::new();
        render(shards, &mut out);
        out
    }

    fn value(text: &str, series: &str) -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn every_contract_metric_is_rendered_with_help_and_type() {
        let text = rendered(&[&ShardMetrics::default()]);
        for name in [
            "gateway_connections_open",
            "gateway_connections_accepted_total",
            "gateway_connections_refused_total",
            "gateway_handshake_failures_total",
            "gateway_messages_in_total",
            "gateway_messages_out_total",
            "gateway_bytes_in_total",
            "gateway_bytes_out_total",
            "gateway_publishes_total",
            "gateway_deliveries_total",
            "gateway_slow_consumer_disconnects_total",
            "gateway_shard_queue_depth",
            "gateway_recoveries_total",
            "gateway_history_streams",
            "gateway_closes_total",
            "gateway_socketio_sessions_total",
            "gateway_socketio_connects_total",
            "gateway_socketio_events_total",
            "gateway_socketio_session_closes_total",
            "gateway_socketio_polling_requests_total",
            "gateway_socketio_upgrades_total",
        ] {
            assert!(text.contains(&format!("# HELP {name} ")), "{name} help");
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} type");
        }
    }

    #[test]
    fn closes_are_counted_by_code_label() {
        let a = ShardMetrics::default();
        let b = ShardMetrics::default();
        a.close_sent(Some(CloseCode(1000)));
        b.close_sent(Some(CloseCode(1000)));
        a.close_sent(Some(CloseCode(4008)));
        a.close_sent(Some(CloseCode(4321)));
        a.close_sent(None);
        a.close_sent(Some(CloseCode(3000)));
        let text = rendered(&[&a, &b]);
        for (series, n) in [
            ("gateway_closes_total{code=\"1000\"}", 2),
            ("gateway_closes_total{code=\"4008\"}", 1),
            ("gateway_closes_total{code=\"4xxx\"}", 1),
            ("gateway_closes_total{code=\"none\"}", 1),
            ("gateway_closes_total{code=\"other\"}", 1),
            ("gateway_closes_total{code=\"1001\"}", 0),
        ] {
            assert_eq!(value(&text, series), Some(n), "{series}");
        }
        let labels: std::collections::HashSet<_> =
            CloseLabel::ALL.iter().map(|l| l.label()).collect();
        assert_eq!(labels.len(), CloseLabel::ALL.len(), "labels are distinct");
        for (i, l) in CloseLabel::ALL.iter().enumerate() {
            assert_eq!(*l as usize, i, "ALL is in index order");
        }
    }

    #[test]
    fn lines_follow_the_text_format() {
        let text = rendered(&[&ShardMetrics::default(), &ShardMetrics::default()]);
        assert!(text.ends_with('\n'));
        for line in text.lines() {
            if line.starts_with('#') {
                let mut words = line.split(' ');
                assert_eq!(words.next(), Some("#"));
                assert!(matches!(words.next(), Some("HELP" | "TYPE")), "{line}");
                continue;
            }
            let (series, v) = line.rsplit_once(' ').expect("name and value");
            assert!(v.parse::<u64>().is_ok(), "{line}");
            let name_end = series.find('{').unwrap_or(series.len());
            let name = &series[..name_end];
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{line}"
            );
            if name_end < series.len() {
                assert!(series.ends_with("\"}"), "{line}");
            }
        }
    }

    #[test]
    fn values_are_summed_and_labelled() {
        let a = ShardMetrics::default();
        let b = ShardMetrics::default();
        a.accepted.add(3);
        a.closed.add(1);
        b.accepted.add(2);
        b.publishes.add(7);
        b.queue_depth.set(5);
        b.handshake_failed(HandshakeFailure::TokenExpired);
        a.api_answered(202);
        a.api_answered(429);
        b.api_answered(404);
        let text = rendered(&[&a, &b]);
        assert_eq!(value(&text, "gateway_connections_open"), Some(4));
        assert_eq!(value(&text, "gateway_connections_accepted_total"), Some(5));
        assert_eq!(
            value(&text, "gateway_shard_connections_open{shard=\"0\"}"),
            Some(2)
        );
        assert_eq!(value(&text, "gateway_publishes_total"), Some(7));
        assert_eq!(
            value(&text, "gateway_shard_queue_depth{shard=\"1\"}"),
            Some(5)
        );
        assert_eq!(
            value(&text, "gateway_shard_queue_depth{shard=\"0\"}"),
            Some(0)
        );
        assert_eq!(
            value(
                &text,
                "gateway_handshake_failures_total{reason=\"token_expired\"}"
            ),
            Some(1)
        );
        assert_eq!(
            value(&text, "gateway_api_requests_total{status=\"2xx\"}"),
            Some(1)
        );
        assert_eq!(
            value(&text, "gateway_api_requests_total{status=\"429\"}"),
            Some(1)
        );
        assert_eq!(
            value(&text, "gateway_api_requests_total{status=\"4xx\"}"),
            Some(1)
        );
    }

    #[test]
    fn totals_add_up_every_shard() {
        let a = ShardMetrics::default();
        let b = ShardMetrics::default();
        a.accepted.add(2);
        b.accepted.add(3);
        b.bytes_out.add(10);
        let t = Totals::sum([&a, &b]);
        assert_eq!((t.accepted, t.bytes_out, t.closed), (5, 10, 0));
    }
}
