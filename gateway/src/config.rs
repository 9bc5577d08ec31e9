//! Configuration: command-line flags (clap), each also settable by a `GATEWAY_*` environment
//! variable, and an optional TOML file. Precedence: flag > environment > file > built-in default.
//!
//! The file uses the flag names as keys (`max-frame-bytes = 1048576`, `ping-interval = "30s"`;
//! `snake_case` spellings are accepted too); lists may be TOML arrays or comma-separated strings.
//! Unknown keys are an error, so a typo is not silently ignored.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use std::collections::BTreeSet;
use std::ffi::OsString;

use anyhow::{bail, Context};
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use serde::Deserialize;

use crate::app::sio::client_files::ClientFiles;
use crate::app::sio::events::EventMap;
use crate::app::sio::{Namespace, SioConfig};
use crate::auth::upgrade::BEARER_PROTOCOL;
use crate::broker::BrokerUrl;
use crate::conn::deflate::DeflateConfig;
use crate::conn::frames::Limits;
use crate::conn::handshake::Policy;
use crate::conn::Settings;
use crate::hooks::HookSettings;
use crate::router::history::{HistoryPolicy, HistoryRule, MAX_SIZE};
use std::sync::Arc;

/// The default listen address.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);

/// Command-line flags. Every flag can also come from the environment (`GATEWAY_<FLAG>`) or the
/// `--config` file; a flag wins over the environment, which wins over the file.
#[derive(Parser, Debug, Default)]
#[command(
    name = "gateway",
    version,
    about = "WebSocket gateway: thread-per-core RFC 6455 server (echo on /echo, health on /healthz)",
    after_help = "Precedence: flag > environment variable > config file > default. \
                  Durations are like 500ms, 10s, 2m; sizes are byte counts.\n\n\
                  `gateway check [FLAGS]` validates the configuration as a start would, prints \
                  every setting with its source and the limits they imply, and exits non-zero \
                  on any problem (2: the server would refuse to start, 1: it would start but \
                  run out of descriptors first)."
)]
pub struct Cli {
    /// Address to listen on; repeat the flag (or comma-separate) for several. `:PORT` means all
    /// IPv4 interfaces, port 0 picks a free port shared by every thread [default: 127.0.0.1:8080]
    #[arg(long, env = "GATEWAY_LISTEN", value_delimiter = ',', value_parser = parse_listen)]
    pub listen: Vec<SocketAddr>,

    /// Event-loop threads (shards), each pinned to one core [default: the cores available]
    #[arg(long, env = "GATEWAY_THREADS")]
    pub threads: Option<usize>,

    /// TOML file with any of these settings (keys are the flag names)
    #[arg(long, env = "GATEWAY_CONFIG")]
    pub config: Option<PathBuf>,

    /// Log level: error, warn, info, debug, trace, or a tracing filter [default: info]
    #[arg(long, env = "GATEWAY_LOG_LEVEL")]
    pub log_level: Option<String>,

    /// Log line format on stderr: `text`, or `json` (one object per line, for log shippers)
    /// [default: text]
    #[arg(long, env = "GATEWAY_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// Request line plus headers, in bytes; a longer request line gets 414, longer headers 431
    /// [default: 8192]
    #[arg(long, env = "GATEWAY_MAX_HEADER_BYTES")]
    pub max_header_bytes: Option<usize>,

    /// Header lines per request; more get 431 [default: 64]
    #[arg(long, env = "GATEWAY_MAX_HEADERS")]
    pub max_headers: Option<usize>,

    /// Payload bytes of one frame; a larger frame closes the connection with 1009
    /// [default: 16777216]
    #[arg(long, env = "GATEWAY_MAX_FRAME_BYTES")]
    pub max_frame_bytes: Option<u64>,

    /// Bytes of one (reassembled) message; a larger message closes with 1009 [default: 16777216]
    #[arg(long, env = "GATEWAY_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<u64>,

    /// Frames in one message; more close with 1009 [default: 65536]
    #[arg(long, env = "GATEWAY_MAX_FRAGMENTS")]
    pub max_fragments: Option<u32>,

    /// Queued outbound bytes per connection; over it the connection stops reading (TCP
    /// backpressure) until the queue drains below half [default: 4194304]
    #[arg(long, env = "GATEWAY_MAX_OUTBOUND_BYTES")]
    pub max_outbound_bytes: Option<usize>,

    /// Open connections across all threads; more are answered 503 with Retry-After: 1
    /// [default: the file descriptor limit minus a reserve]
    #[arg(long, env = "GATEWAY_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Time for a client to send its complete request; then the TCP connection is closed
    /// (with a 408 attempt); at most 24 days [default: 10s]
    #[arg(long, env = "GATEWAY_HANDSHAKE_TIMEOUT", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Option<Duration>,

    /// Ping a connection that has received nothing for this long; at most 24 days
    /// [default: 25s]
    #[arg(long, env = "GATEWAY_PING_INTERVAL", value_parser = humantime::parse_duration)]
    pub ping_interval: Option<Duration>,

    /// After our ping, close (1001 "ping timeout") a connection silent this long; at most 24
    /// days [default: 10s]
    #[arg(long, env = "GATEWAY_PONG_TIMEOUT", value_parser = humantime::parse_duration)]
    pub pong_timeout: Option<Duration>,

    /// After we send close, drop the TCP connection if the peer has not closed by then; at most
    /// 24 days [default: 5s]
    #[arg(long, env = "GATEWAY_CLOSE_TIMEOUT", value_parser = humantime::parse_duration)]
    pub close_timeout: Option<Duration>,

    /// On SIGINT/SIGTERM, how long to wait for connections to close after sending 1001
    /// [default: 10s]
    #[arg(long, env = "GATEWAY_DRAIN_TIMEOUT", value_parser = humantime::parse_duration)]
    pub drain_timeout: Option<Duration>,

    /// Comma list of exact Origin values allowed to upgrade; others get 403 [default: any]
    #[arg(long, env = "GATEWAY_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Comma list of subprotocols the server speaks, in preference order [default: none]
    #[arg(long, env = "GATEWAY_SUBPROTOCOLS", value_delimiter = ',')]
    pub subprotocols: Vec<String>,

    // --- Router: channels and fan-out across shards ---
    /// Channels one connection may subscribe to; more get `too_many_channels` [default: 128]
    #[arg(long, env = "GATEWAY_MAX_CHANNELS_PER_CONN")]
    pub max_channels_per_conn: Option<usize>,

    /// Messages each shard's inbound queue holds; past it the sending shard keeps messages in a
    /// bounded backlog and stops reading its clients, and answers `busy` once that is full
    /// [default: 65536]
    #[arg(long, env = "GATEWAY_SHARD_QUEUE_CAPACITY")]
    pub shard_queue_capacity: Option<usize>,

    /// Messages a shard keeps waiting for other shards' full queues before it refuses
    /// publishes (`busy`, API 429) [default: 65536]
    #[arg(long, env = "GATEWAY_MAX_SHARD_BACKLOG")]
    pub max_shard_backlog: Option<usize>,

    /// Channels that keep history, as PREFIX=SIZE/TTL: `chat:=100/10m` keeps the last 100
    /// publications of every channel starting with `chat:`, each for up to 10 minutes; repeat
    /// (or comma-separate) for more prefixes, the longest matching one wins; SIZE 1..=10000,
    /// TTL up to 24h [default: none]
    #[arg(long, env = "GATEWAY_HISTORY", value_delimiter = ',')]
    pub history: Vec<String>,

    /// Publications one resubscribe may replay; a client that missed more gets
    /// `recovered: false` (0..=10000) [default: 300]
    #[arg(long, env = "GATEWAY_MAX_RECOVERY")]
    pub max_recovery: Option<usize>,

    // --- Backend API and client tokens ---
    /// Address of the backend API (`/api/...`, `/metrics`, `/healthz`), served by the same
    /// threads [default: 127.0.0.1:8081]
    #[arg(long, env = "GATEWAY_API_LISTEN", value_parser = parse_listen)]
    pub api_listen: Option<SocketAddr>,

    /// Key backends send as `Authorization: Bearer <key>` [default: a random key, logged once
    /// at start]
    #[arg(long, env = "GATEWAY_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Secret that signs client tokens (HS256 JWTs) [default: none; tokens are refused]
    #[arg(long, env = "GATEWAY_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<String>,

    /// Refuse (401) WebSocket clients without a valid token [default: false: anonymous clients
    /// may connect, subscribe and publish anywhere]
    #[arg(long, env = "GATEWAY_REQUIRE_TOKEN", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub require_token: Option<bool>,

    /// `false` is the same as --require-token [default: true]
    #[arg(long, env = "GATEWAY_ALLOW_ANONYMOUS", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_anonymous: Option<bool>,

    /// Largest backend API request body; larger ones get 413 [default: 1048576]
    #[arg(long, env = "GATEWAY_MAX_API_BODY_BYTES")]
    pub max_api_body_bytes: Option<usize>,

    /// Password of the admin page (`/admin` on the API listener, HTTP Basic, any user name)
    /// [default: the API key]
    #[arg(long, env = "GATEWAY_ADMIN_SECRET", hide_env_values = true)]
    pub admin_secret: Option<String>,

    // --- Event driver ---
    /// Event driver: `epoll`, `uring` (io_uring; refuses to start where the kernel does not
    /// allow it) or `auto` (io_uring when available, else epoll; the choice is logged)
    /// [default: auto]
    #[arg(long, env = "GATEWAY_DRIVER", value_enum)]
    pub driver: Option<DriverChoice>,

    /// Provided receive buffers per shard for the io_uring driver, 16 KiB each (a power of two
    /// up to 32768); the most a shard hands the kernel: it starts with 32 and doubles as
    /// receives need them [default: 512]
    #[arg(long, env = "GATEWAY_URING_BUFFERS")]
    pub uring_buffers: Option<u16>,

    // --- TLS ---
    /// PEM certificate chain (leaf first) for the client listeners: they then speak TLS 1.2/1.3
    /// only (`wss://`, `https://`); reloaded with the key on SIGHUP. Needs --tls-key
    /// [default: none, plain TCP]
    #[arg(long, env = "GATEWAY_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert
    #[arg(long, env = "GATEWAY_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// PEM certificate chain for the backend API listener (HTTPS); needs --api-tls-key
    /// [default: none, plain HTTP]
    #[arg(long, env = "GATEWAY_API_TLS_CERT")]
    pub api_tls_cert: Option<PathBuf>,

    /// PEM private key of --api-tls-cert
    #[arg(long, env = "GATEWAY_API_TLS_KEY")]
    pub api_tls_key: Option<PathBuf>,

    // --- Compression ---
    /// permessage-deflate (RFC 7692): `on` accepts browsers' and clients' offers, `off` declines
    /// them [default: on]
    #[arg(long, env = "GATEWAY_COMPRESSION", value_enum)]
    pub compression: Option<Switch>,

    /// Messages shorter than this many bytes go uncompressed even to clients that negotiated
    /// compression [default: 128]
    #[arg(long, env = "GATEWAY_COMPRESSION_THRESHOLD")]
    pub compression_threshold: Option<usize>,
    // --- Many nodes ---
    /// How the nodes of one deployment reach each other: `memory` (one node, no external
    /// service), `redis://[[USER]:PASSWORD@]HOST:PORT` (`rediss://` for TLS),
    /// `redis://A:PORT,redis://B:PORT,...` (channels spread over several Redis instances),
    /// `redis-cluster://HOST:PORT,...` (one Redis Cluster) or `nats://[USER:PASSWORD@]HOST:PORT`
    /// (core NATS; `tls://` for TLS) [default: memory]
    /// (Parsed in `Config::from_parts`, not by clap, whose error would repeat the value and
    /// with it the URL's password.)
    #[arg(long, env = "GATEWAY_BROKER")]
    pub broker: Option<String>,

    /// PEM file of the CA certificates that a `rediss://` or `tls://` (NATS) broker's
    /// certificate must chain to [default: the system's CA bundle]
    #[arg(long, env = "GATEWAY_BROKER_CA")]
    pub broker_ca: Option<PathBuf>,

    /// This node's id (0..=65535), part of every connection id it hands out; each node of a
    /// deployment needs its own [default: random at start, logged]
    #[arg(long, env = "GATEWAY_NODE_ID")]
    pub node_id: Option<u16>,

    // --- Socket.IO (`/socket.io/`) ---
    /// What client events do without other rules: `chat` (the classic Socket.IO chat:
    /// `chat message` to everyone, `join`/`leave` a room, `room message` to a room,
    /// `private message` to one socket id) or `none` [default: chat]
    #[arg(long, env = "GATEWAY_SOCKETIO_PRESET")]
    pub socketio_preset: Option<String>,

    /// What an event does, as EVENT=ACTION, added to the preset; ACTION is `broadcast`,
    /// `broadcast-others`, `join`, `leave`, `to-room`, `to-room-others`, `to-socket`,
    /// `ack:<JSON>` or `drop`; repeat for more events [default: none]
    #[arg(long, env = "GATEWAY_SOCKETIO_EVENT")]
    pub socketio_event: Vec<String>,

    /// Namespaces sockets may join, as NAME or NAME=token (the CONNECT's `auth.token` must be
    /// a valid client token); repeat or comma-separate [default: /]
    #[arg(long, env = "GATEWAY_SOCKETIO_NAMESPACE", value_delimiter = ',')]
    pub socketio_namespace: Vec<String>,

    /// How often the server pings a Socket.IO session [default: 25s]
    #[arg(long, env = "GATEWAY_SOCKETIO_PING_INTERVAL", value_parser = humantime::parse_duration)]
    pub socketio_ping_interval: Option<Duration>,

    /// How late the pong may be before the session closes [default: 20s]
    #[arg(long, env = "GATEWAY_SOCKETIO_PING_TIMEOUT", value_parser = humantime::parse_duration)]
    pub socketio_ping_timeout: Option<Duration>,

    /// How long a session may stay without joining a namespace [default: 45s]
    #[arg(long, env = "GATEWAY_SOCKETIO_CONNECT_TIMEOUT", value_parser = humantime::parse_duration)]
    pub socketio_connect_timeout: Option<Duration>,

    /// Largest Engine.IO packet a client may send, in bytes; larger closes the session with
    /// 1009 [default: 1000000]
    #[arg(long, env = "GATEWAY_SOCKETIO_MAX_PAYLOAD")]
    pub socketio_max_payload: Option<usize>,

    /// Folder holding the browser builds of the npm package socket.io-client (its `dist`), served
    /// at `/socket.io/socket.io.js`, `.min.js` and `.esm.min.js` [default: none; those paths
    /// answer 404 with a hint]
    #[arg(long, env = "GATEWAY_SOCKETIO_CLIENT_DIR")]
    pub socketio_client_dir: Option<PathBuf>,

    /// An origin (scheme://host[:port]) allowed to make cross-origin Socket.IO long-polling
    /// requests; repeat or comma-separate [default: none: same-origin only]
    #[arg(long, env = "GATEWAY_SOCKETIO_CORS_ORIGIN", value_delimiter = ',')]
    pub socketio_cors_origin: Vec<String>,

    /// Answer allowed origins with Access-Control-Allow-Credentials: true (cookies) [default: off]
    #[arg(long, env = "GATEWAY_SOCKETIO_CORS_CREDENTIALS")]
    pub socketio_cors_credentials: Option<Switch>,

    // --- Backend hooks (gateway/docs/hooks.md) ---
    /// Connect hook: before each upgrade on /ws, /raw and /broadcast, POST what the client
    /// presented to this URL (http://host:port/path); its answer allows or denies
    /// [default: none]
    #[arg(long, env = "GATEWAY_HOOK_CONNECT")]
    pub hook_connect: Option<String>,

    /// Request headers the connect hook forwards (comma list, case-insensitive) [default: none]
    #[arg(long, env = "GATEWAY_HOOK_CONNECT_HEADERS", value_delimiter = ',')]
    pub hook_connect_headers: Vec<String>,

    /// Cookies the connect hook forwards (comma list of names); needs --allowed-origins
    /// [default: none]
    #[arg(long, env = "GATEWAY_HOOK_CONNECT_COOKIES", value_delimiter = ',')]
    pub hook_connect_cookies: Vec<String>,

    /// Subscribe hook per channel prefix, as PREFIX=URL (an empty prefix matches every
    /// channel; the longest matching prefix wins); repeat or comma-separate [default: none]
    #[arg(long, env = "GATEWAY_HOOK_SUBSCRIBE", value_delimiter = ',')]
    pub hook_subscribe: Vec<String>,

    /// Publish hook per channel prefix, as PREFIX=URL; the answer may rewrite the data
    /// [default: none]
    #[arg(long, env = "GATEWAY_HOOK_PUBLISH", value_delimiter = ',')]
    pub hook_publish: Vec<String>,

    /// RPC hook: `{"op":"rpc"}` requests are POSTed here [default: none; rpc is unknown_op]
    #[arg(long, env = "GATEWAY_HOOK_RPC")]
    pub hook_rpc: Option<String>,

    /// Disconnect hook: batches of disconnect events are POSTed here (fire-and-forget)
    /// [default: none]
    #[arg(long, env = "GATEWAY_HOOK_DISCONNECT")]
    pub hook_disconnect: Option<String>,

    /// Forward hook: every client message on /raw is POSTed here (batched per read); the
    /// answer may send messages back and subscribe, unsubscribe, publish or close [default: none]
    #[arg(long, env = "GATEWAY_HOOK_FORWARD")]
    pub hook_forward: Option<String>,

    /// Key that signs every hook request (HMAC-SHA256); required when any hook is set
    #[arg(long, env = "GATEWAY_HOOK_SECRET", hide_env_values = true)]
    pub hook_secret: Option<String>,

    /// Per hook call, from submission to answer [default: 5s]
    #[arg(long, env = "GATEWAY_HOOK_TIMEOUT", value_parser = humantime::parse_duration)]
    pub hook_timeout: Option<Duration>,

    /// Calls in flight per backend (one keep-alive connection each) [default: 64]
    #[arg(long, env = "GATEWAY_HOOK_MAX_IN_FLIGHT")]
    pub hook_max_in_flight: Option<usize>,

    /// Calls waiting per backend beyond those in flight; more fail `busy` at once
    /// [default: 1024]
    #[arg(long, env = "GATEWAY_HOOK_MAX_QUEUED")]
    pub hook_max_queued: Option<usize>,

    /// Failed calls in a row that open a backend's circuit breaker [default: 5]
    #[arg(long, env = "GATEWAY_HOOK_BREAKER_FAILURES")]
    pub hook_breaker_failures: Option<u32>,

    /// How long an open breaker fails calls at once before it tries the backend again
    /// [default: 5s]
    #[arg(long, env = "GATEWAY_HOOK_BREAKER_COOLDOWN", value_parser = humantime::parse_duration)]
    pub hook_breaker_cooldown: Option<Duration>,

    /// Unanswered hook calls per client connection before the gateway stops reading it
    /// (TCP backpressure) [default: 16]
    #[arg(long, env = "GATEWAY_HOOK_MAX_CALLS_PER_CONN")]
    pub hook_max_calls_per_conn: Option<usize>,
}

/// A TLS certificate chain and its key, as PEM files (`--tls-cert`/`--tls-key`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

impl TlsFiles {
    /// Both files or neither: one without the other is a configuration error.
    fn resolve(
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        flag: &str,
    ) -> anyhow::Result<Option<TlsFiles>> {
        match (cert, key) {
            (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert, key })),
            (None, None) => Ok(None),
            (Some(_), None) => bail!("--{flag}-cert needs --{flag}-key"),
            (None, Some(_)) => bail!("--{flag}-key needs --{flag}-cert"),
        }
    }
}

/// A feature switch (`--compression on|off`).
#[derive(clap::ValueEnum, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// A node id drawn at start (the std hasher's keys are random per process).
fn random_node_id() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish() as u16
}

/// How log lines are written (`--log-format`).
#[derive(clap::ValueEnum, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, the event's fields at the top level.
    Json,
}

/// Which event driver the shards run on (`--driver`).
#[derive(clap::ValueEnum, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DriverChoice {
    /// mio over epoll.
    Epoll,
    /// io_uring; fails at start if the kernel does not allow it.
    Uring,
    /// io_uring when the kernel allows it, else epoll.
    #[default]
    Auto,
}

/// `ADDR:PORT`, `[V6]:PORT`, `localhost:PORT`, or `:PORT` (all IPv4 interfaces).
fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Some(port) = s.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .map_err(|e| format!("bad port in {s:?}: {e}"))?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    if let Some(port) = s.strip_prefix("localhost:") {
        let port: u16 = port
            .parse()
            .map_err(|e| format!("bad port in {s:?}: {e}"))?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    s.parse()
        .map_err(|e| format!("bad listen address {s:?} (want IP:PORT or :PORT): {e}"))
}

/// A list in the file: an array or one comma-separated string.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
enum List {
    One(String),
    Many(Vec<String>),
}

impl List {
    fn items(self) -> Vec<String> {
        match self {
            List::One(s) => s
                .split(',')
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect(),
            List::Many(v) => v,
        }
    }
}

/// The TOML file.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    listen: Option<List>,
    threads: Option<usize>,
    log_level: Option<String>,
    log_format: Option<LogFormat>,
    max_header_bytes: Option<usize>,
    max_headers: Option<usize>,
    max_frame_bytes: Option<u64>,
    max_message_bytes: Option<u64>,
    max_fragments: Option<u32>,
    max_outbound_bytes: Option<usize>,
    max_connections: Option<usize>,
    handshake_timeout: Option<String>,
    ping_interval: Option<String>,
    pong_timeout: Option<String>,
    close_timeout: Option<String>,
    drain_timeout: Option<String>,
    allowed_origins: Option<List>,
    subprotocols: Option<List>,
    max_channels_per_conn: Option<usize>,
    shard_queue_capacity: Option<usize>,
    max_shard_backlog: Option<usize>,
    history: Option<List>,
    max_recovery: Option<usize>,
    api_listen: Option<String>,
    api_key: Option<String>,
    token_secret: Option<String>,
    require_token: Option<bool>,
    allow_anonymous: Option<bool>,
    max_api_body_bytes: Option<usize>,
    admin_secret: Option<String>,
    driver: Option<DriverChoice>,
    uring_buffers: Option<u16>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    api_tls_cert: Option<PathBuf>,
    api_tls_key: Option<PathBuf>,
    compression: Option<Switch>,
    compression_threshold: Option<usize>,
    broker: Option<String>,
    broker_ca: Option<PathBuf>,
    node_id: Option<u16>,
    socketio_preset: Option<String>,
    socketio_event: Option<Vec<String>>,
    socketio_namespace: Option<List>,
    socketio_ping_interval: Option<String>,
    socketio_ping_timeout: Option<String>,
    socketio_connect_timeout: Option<String>,
    socketio_max_payload: Option<usize>,
    socketio_client_dir: Option<PathBuf>,
    socketio_cors_origin: Option<List>,
    socketio_cors_credentials: Option<Switch>,
    hook_connect: Option<String>,
    hook_connect_headers: Option<List>,
    hook_connect_cookies: Option<List>,
    hook_subscribe: Option<List>,
    hook_publish: Option<List>,
    hook_rpc: Option<String>,
    hook_disconnect: Option<String>,
    hook_forward: Option<String>,
    hook_secret: Option<String>,
    hook_timeout: Option<String>,
    hook_max_in_flight: Option<usize>,
    hook_max_queued: Option<usize>,
    hook_breaker_failures: Option<u32>,
    hook_breaker_cooldown: Option<String>,
    hook_max_calls_per_conn: Option<usize>,
}

impl FileConfig {
    fn parse(text: &str) -> anyhow::Result<FileConfig> {
        Ok(FileConfig::parse_with_keys(text)?.0)
    }

    /// The file's settings and the flag names it sets.
    fn parse_with_keys(text: &str) -> anyhow::Result<(FileConfig, BTreeSet<String>)> {
        let mut table: toml::Table = toml::from_str(text)?;
        // Accept `max_frame_bytes` as well as `max-frame-bytes`.
        let keys: Vec<String> = table.keys().filter(|k| k.contains('_')).cloned().collect();
        for k in keys {
            if let Some(v) = table.remove(&k) {
                table.insert(k.replace('_', "-"), v);
            }
        }
        let names = table.keys().cloned().collect();
        Ok((toml::Value::Table(table).try_into()?, names))
    }
}

/// Where a setting's effective value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag.
    Flag,
    /// A `GATEWAY_*` environment variable.
    Environment,
    /// The `--config` file.
    File,
    /// The built-in default.
    Default,
}

impl Source {
    /// How `gateway check` names it.
    pub fn label(self) -> &'static str {
        match self {
            Source::Flag => "flag",
            Source::Environment => "environment",
            Source::File => "file",
            Source::Default => "default",
        }
    }
}

/// Every setting's flag name (without `--`) and where its value came from, in `--help` order.
#[derive(Clone, Debug, Default)]
pub struct Sources(pub Vec<(String, Source)>);

impl Sources {
    fn of(matches: &clap::ArgMatches, file_keys: &BTreeSet<String>) -> Sources {
        let mut list = Vec::new();
        for arg in Cli::command().get_arguments() {
            let (Some(long), id) = (arg.get_long(), arg.get_id().as_str()) else {
                continue;
            };
            if matches!(long, "help" | "version") {
                continue;
            }
            let source = match matches.value_source(id) {
                Some(ValueSource::CommandLine) => Source::Flag,
                Some(ValueSource::EnvVariable) => Source::Environment,
                _ if file_keys.contains(long) => Source::File,
                _ => Source::Default,
            };
            list.push((long.to_owned(), source));
        }
        Sources(list)
    }

    /// Where `flag`'s value came from.
    pub fn get(&self, flag: &str) -> Option<Source> {
        self.0.iter().find(|(f, _)| f == flag).map(|(_, s)| *s)
    }
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen addresses.
    pub listen: Vec<SocketAddr>,
    /// Shards.
    pub threads: usize,
    /// Tracing filter.
    pub log_level: String,
    /// Log line format.
    pub log_format: LogFormat,
    /// Per-connection settings.
    pub settings: Settings,
    /// Outbound queue limit per connection.
    pub max_outbound_bytes: usize,
    /// Connection limit (`None`: derive from the descriptor limit).
    pub max_connections: Option<usize>,
    /// Shutdown drain.
    pub drain_timeout: Duration,
    /// Channels one connection may subscribe to.
    pub max_channels_per_conn: usize,
    /// Messages per shard inbound queue.
    pub shard_queue_capacity: usize,
    /// Messages waiting for other shards' full queues before publishes are refused.
    pub max_shard_backlog: usize,
    /// Which channels keep history, and how much.
    pub history: HistoryPolicy,
    /// Publications one resubscribe may replay.
    pub max_recovery: usize,
    /// The backend API and client token settings.
    pub api: ApiConfig,
    /// The event driver asked for.
    pub driver: DriverChoice,
    /// Provided receive buffers per shard (io_uring driver).
    pub uring_buffers: u16,
    /// TLS on the client listeners.
    pub tls: Option<TlsFiles>,
    /// TLS on the backend API listener.
    pub api_tls: Option<TlsFiles>,
    /// The `--config` file read, if any.
    pub file: Option<PathBuf>,
    /// How the nodes reach each other.
    pub broker: BrokerUrl,
    /// The CAs a TLS broker's certificate must chain to (`None`: the system's).
    pub broker_ca: Option<PathBuf>,
    /// This node's id.
    pub node_id: u16,
    /// Whether the node id was drawn at start (to log it).
    pub node_id_random: bool,
    /// The Socket.IO endpoint.
    pub sio: Arc<SioConfig>,
    /// Backend hooks.
    pub hooks: HookSettings,
}

/// The default backend API address.
pub const DEFAULT_API_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8081);

/// Backend API and client token settings.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Where the API listens.
    pub listen: SocketAddr,
    /// The configured key (`None`: generate one at start).
    pub key: Option<String>,
    /// The token secret (`None`: tokens cannot be verified).
    pub token_secret: Option<String>,
    /// Refuse clients without a valid token.
    pub require_token: bool,
    /// Largest API request body.
    pub max_body_bytes: usize,
    /// The admin page's password (`None`: the API key).
    pub admin_secret: Option<String>,
}

impl ApiConfig {
    fn resolve(cli: &Cli, file: &FileConfig) -> anyhow::Result<ApiConfig> {
        let listen = match (cli.api_listen, &file.api_listen) {
            (Some(a), _) => a,
            (None, Some(s)) => parse_listen(s).map_err(anyhow::Error::msg)?,
            (None, None) => DEFAULT_API_LISTEN,
        };
        let require = cli.require_token.or(file.require_token).unwrap_or(false);
        let anonymous = cli.allow_anonymous.or(file.allow_anonymous).unwrap_or(true);
        let key = cli.api_key.clone().or_else(|| file.api_key.clone());
        if key.as_deref() == Some("") {
            bail!("--api-key must not be empty");
        }
        let token_secret = cli
            .token_secret
            .clone()
            .or_else(|| file.token_secret.clone())
            .filter(|s| !s.is_empty());
        let require_token = require || !anonymous;
        if require_token && token_secret.is_none() {
            bail!("--require-token (or --allow-anonymous false) needs --token-secret");
        }
        let admin_secret = cli
            .admin_secret
            .clone()
            .or_else(|| file.admin_secret.clone());
        if admin_secret.as_deref() == Some("") {
            bail!("--admin-secret must not be empty");
        }
        Ok(ApiConfig {
            admin_secret,
            listen,
            key,
            token_secret,
            require_token,
            max_body_bytes: cli
                .max_api_body_bytes
                .or(file.max_api_body_bytes)
                .unwrap_or(1 << 20),
        })
    }
}

/// The longest timeout accepted: deadlines are `Instant + Duration`, which must not overflow.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// The longest connection timer (handshake, ping, pong, close): within what a connection's
/// 32-bit millisecond stamps read back.
const MAX_CONN_TIMER: Duration = Duration::from_secs(24 * 24 * 3600);
const _: () = assert!(MAX_CONN_TIMER.as_millis() <= crate::conn::Stamp::MAX_AGE.as_millis());

fn duration(
    flag: Option<Duration>,
    file: Option<String>,
    name: &str,
    default: Duration,
) -> anyhow::Result<Duration> {
    let d = match (flag, file) {
        (Some(d), _) => d,
        (None, Some(s)) => humantime::parse_duration(&s)
            .with_context(|| format!("config file: bad duration for {name}: {s:?}"))?,
        (None, None) => default,
    };
    if d > MAX_DURATION {
        bail!(
            "--{name} must be at most 365 days, got {}",
            humantime::format_duration(d)
        );
    }
    Ok(d)
}

impl Config {
    /// Parse the process's arguments, environment and config file.
    pub fn load() -> anyhow::Result<Config> {
        Config::load_from(std::env::args_os()).map(|(c, _)| c)
    }

    /// Parse `args` (the program name first), the environment and the config file; also say
    /// where each setting came from. `--help`, `--version` and malformed flags end the process
    /// as clap does (usage errors exit with 2).
    pub fn load_from(
        args: impl IntoIterator<Item = OsString>,
    ) -> anyhow::Result<(Config, Sources)> {
        let matches = Cli::command().get_matches_from(args);
        let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        let (file, keys) = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                FileConfig::parse_with_keys(&text)
                    .with_context(|| format!("bad config file {}", path.display()))?
            }
            None => (FileConfig::default(), BTreeSet::new()),
        };
        let sources = Sources::of(&matches, &keys);
        Ok((Config::resolve(cli, file)?, sources))
    }

    /// Parse a TOML config file's text and merge it under `cli` (for tests).
    pub fn from_parts(cli: Cli, file_text: &str) -> anyhow::Result<Config> {
        Config::resolve(cli, FileConfig::parse(file_text)?)
    }

    fn resolve(mut cli: Cli, mut file: FileConfig) -> anyhow::Result<Config> {
        let d = Settings::default();
        let config_file = cli.config.clone();
        let api = ApiConfig::resolve(&cli, &file)?;
        let sio = Arc::new(resolve_sio(&cli, &mut file)?);
        let hooks = resolve_hooks(&mut cli, &mut file)?;
        let listen = if !cli.listen.is_empty() {
            cli.listen
        } else if let Some(list) = file.listen {
            list.items()
                .iter()
                .map(|s| parse_listen(s).map_err(anyhow::Error::msg))
                .collect::<anyhow::Result<Vec<_>>>()?
        } else {
            vec![DEFAULT_LISTEN]
        };
        let threads = cli
            .threads
            .or(file.threads)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if threads == 0 || threads > usize::from(u8::MAX - 1) {
            bail!("--threads must be between 1 and 254, got {threads}");
        }
        let pick_list = |flag: Vec<String>, file: Option<List>| {
            if flag.is_empty() {
                file.map(List::items).unwrap_or_default()
            } else {
                flag
            }
        };
        let settings = Settings {
            limits: Limits {
                max_frame_bytes: cli
                    .max_frame_bytes
                    .or(file.max_frame_bytes)
                    .unwrap_or(d.limits.max_frame_bytes),
                max_message_bytes: cli
                    .max_message_bytes
                    .or(file.max_message_bytes)
                    .unwrap_or(d.limits.max_message_bytes),
                max_fragments: cli
                    .max_fragments
                    .or(file.max_fragments)
                    .unwrap_or(d.limits.max_fragments)
                    .max(1),
            },
            max_header_bytes: cli
                .max_header_bytes
                .or(file.max_header_bytes)
                .unwrap_or(d.max_header_bytes),
            max_headers: cli
                .max_headers
                .or(file.max_headers)
                .unwrap_or(d.max_headers),
            policy: Policy {
                allowed_origins: pick_list(cli.allowed_origins, file.allowed_origins),
                subprotocols: with_bearer(
                    pick_list(cli.subprotocols, file.subprotocols),
                    api.token_secret.is_some(),
                ),
            },
            handshake_timeout: duration(
                cli.handshake_timeout,
                file.handshake_timeout,
                "handshake-timeout",
                d.handshake_timeout,
            )?,
            ping_interval: duration(
                cli.ping_interval,
                file.ping_interval,
                "ping-interval",
                d.ping_interval,
            )?,
            pong_timeout: duration(
                cli.pong_timeout,
                file.pong_timeout,
                "pong-timeout",
                d.pong_timeout,
            )?,
            close_timeout: duration(
                cli.close_timeout,
                file.close_timeout,
                "close-timeout",
                d.close_timeout,
            )?,
            deflate: DeflateConfig {
                enabled: cli.compression.or(file.compression).unwrap_or(Switch::On) == Switch::On,
                threshold_bytes: cli
                    .compression_threshold
                    .or(file.compression_threshold)
                    .unwrap_or(d.deflate.threshold_bytes),
            },
        };
        // Connections keep their times as 32-bit millisecond stamps (`conn::Stamp`), read back
        // correctly for about 24.8 days: every connection timer must fit in that.
        for (name, d) in [
            ("handshake-timeout", settings.handshake_timeout),
            ("ping-interval", settings.ping_interval),
            ("pong-timeout", settings.pong_timeout),
            ("close-timeout", settings.close_timeout),
        ] {
            if d > MAX_CONN_TIMER {
                bail!(
                    "--{name} must be at most 24 days, got {}",
                    humantime::format_duration(d)
                );
            }
        }
        let uring_buffers = cli
            .uring_buffers
            .or(file.uring_buffers)
            .unwrap_or(crate::driver::uring::DEFAULT_BUFFERS);
        if !uring_buffers.is_power_of_two() || uring_buffers > 1 << 15 {
            bail!("--uring-buffers must be a power of two up to 32768, got {uring_buffers}");
        }
        let history = pick_list(cli.history, file.history)
            .iter()
            .map(|r| HistoryRule::parse(r))
            .collect::<Result<Vec<_>, _>>()
            .and_then(HistoryPolicy::new)
            .map_err(|e| anyhow::anyhow!("--history: {e}"))?;
        let max_recovery = cli.max_recovery.or(file.max_recovery).unwrap_or(300);
        if max_recovery > MAX_SIZE {
            bail!("--max-recovery must be at most {MAX_SIZE}, got {max_recovery}");
        }
        let broker = match cli.broker.or(file.broker) {
            Some(s) => s
                .parse()
                .map_err(|e: String| anyhow::anyhow!("--broker: {e}"))?,
            None => BrokerUrl::Memory,
        };
        let broker_ca = cli.broker_ca.or(file.broker_ca);
        if broker_ca.is_some() && !broker.uses_tls() {
            bail!(
                "--broker-ca needs a broker reached over TLS (--broker rediss://... or tls://...)"
            );
        }
        let node_id = cli.node_id.or(file.node_id);
        Ok(Config {
            broker,
            broker_ca,
            node_id: node_id.unwrap_or_else(random_node_id),
            node_id_random: node_id.is_none(),
            listen,
            threads,
            log_level: cli
                .log_level
                .or(file.log_level)
                .unwrap_or_else(|| "info".to_owned()),
            log_format: cli.log_format.or(file.log_format).unwrap_or_default(),
            settings,
            max_outbound_bytes: cli
                .max_outbound_bytes
                .or(file.max_outbound_bytes)
                .unwrap_or(4 << 20),
            max_connections: cli.max_connections.or(file.max_connections),
            drain_timeout: duration(
                cli.drain_timeout,
                file.drain_timeout,
                "drain-timeout",
                Duration::from_secs(10),
            )?,
            max_channels_per_conn: cli
                .max_channels_per_conn
                .or(file.max_channels_per_conn)
                .unwrap_or(128),
            shard_queue_capacity: cli
                .shard_queue_capacity
                .or(file.shard_queue_capacity)
                .unwrap_or(65536)
                .max(1),
            max_shard_backlog: cli
                .max_shard_backlog
                .or(file.max_shard_backlog)
                .unwrap_or(65536),
            history,
            max_recovery,
            api,
            driver: cli.driver.or(file.driver).unwrap_or_default(),
            uring_buffers,
            tls: TlsFiles::resolve(
                cli.tls_cert.or(file.tls_cert),
                cli.tls_key.or(file.tls_key),
                "tls",
            )?,
            api_tls: TlsFiles::resolve(
                cli.api_tls_cert.or(file.api_tls_cert),
                cli.api_tls_key.or(file.api_tls_key),
                "api-tls",
            )?,
            file: config_file,
            sio,
            hooks,
        })
        .and_then(Config::check_hooks)
    }

    /// The connection limit with `nofile` descriptors: `--max-connections`, else the
    /// descriptor limit less [`FD_RESERVE`].
    pub fn connection_limit(&self, nofile: u64) -> usize {
        self.max_connections
            .unwrap_or_else(|| connections_for_descriptors(nofile))
    }

    /// The effective value of the setting named by `flag` (without `--`), as `gateway check`
    /// prints it; secrets show only whether they are set. `None` for a name that is no flag.
    pub fn effective(&self, flag: &str) -> Option<String> {
        let d = |v: Duration| humantime::format_duration(v).to_string();
        let list = |v: &[String]| {
            if v.is_empty() {
                "(none)".to_owned()
            } else {
                v.join(",")
            }
        };
        let secret = |v: &Option<String>, unset: &str| match v {
            Some(_) => "(set)".to_owned(),
            None => unset.to_owned(),
        };
        let s = &self.settings;
        Some(match flag {
            "listen" => self
                .listen
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            "threads" => self.threads.to_string(),
            "config" => self
                .file
                .as_ref()
                .map_or("(none)".to_owned(), |p| p.display().to_string()),
            "log-level" => self.log_level.clone(),
            "log-format" => format!("{:?}", self.log_format).to_lowercase(),
            "max-header-bytes" => s.max_header_bytes.to_string(),
            "max-headers" => s.max_headers.to_string(),
            "max-frame-bytes" => s.limits.max_frame_bytes.to_string(),
            "max-message-bytes" => s.limits.max_message_bytes.to_string(),
            "max-fragments" => s.limits.max_fragments.to_string(),
            "max-outbound-bytes" => self.max_outbound_bytes.to_string(),
            "max-connections" => self
                .max_connections
                .map_or("(from the descriptor limit)".to_owned(), |n| n.to_string()),
            "handshake-timeout" => d(s.handshake_timeout),
            "ping-interval" => d(s.ping_interval),
            "pong-timeout" => d(s.pong_timeout),
            "close-timeout" => d(s.close_timeout),
            "drain-timeout" => d(self.drain_timeout),
            "allowed-origins" => list(&s.policy.allowed_origins),
            "subprotocols" => list(&s.policy.subprotocols),
            "max-channels-per-conn" => self.max_channels_per_conn.to_string(),
            "shard-queue-capacity" => self.shard_queue_capacity.to_string(),
            "max-shard-backlog" => self.max_shard_backlog.to_string(),
            "history" => {
                let rules: Vec<String> = self
                    .history
                    .rules()
                    .iter()
                    .map(|r| format!("{}={}/{}", r.prefix, r.retention.size, d(r.retention.ttl)))
                    .collect();
                list(&rules)
            }
            "max-recovery" => self.max_recovery.to_string(),
            "api-listen" => self.api.listen.to_string(),
            "api-key" => secret(&self.api.key, "(random at start, logged once)"),
            "token-secret" => secret(&self.api.token_secret, "(none: tokens are refused)"),
            "require-token" => self.api.require_token.to_string(),
            "allow-anonymous" => (!self.api.require_token).to_string(),
            "max-api-body-bytes" => self.api.max_body_bytes.to_string(),
            "admin-secret" => secret(&self.api.admin_secret, "(none: the API key)"),
            "driver" => format!("{:?}", self.driver).to_lowercase(),
            "uring-buffers" => self.uring_buffers.to_string(),
            "socketio-preset" | "socketio-event" => {
                format!("events mapped: {}", list(&self.sio.events.mapped()))
            }
            "socketio-namespace" => {
                let names: Vec<String> = self
                    .sio
                    .namespaces
                    .iter()
                    .map(|n| n.name.to_string())
                    .collect();
                list(&names)
            }
            "socketio-ping-interval" => d(self.sio.ping_interval),
            "socketio-ping-timeout" => d(self.sio.ping_timeout),
            "socketio-connect-timeout" => d(self.sio.connect_timeout),
            "socketio-max-payload" => self.sio.max_payload.to_string(),
            "socketio-client-dir" => match &self.sio.client_files {
                Some(_) => "(set: the socket.io-client files were read)".to_owned(),
                None => "(none: /socket.io/socket.io.js answers 404)".to_owned(),
            },
            "socketio-cors-origin" => {
                let origins: Vec<String> = self
                    .sio
                    .cors_origins
                    .iter()
                    .map(|o| o.to_string())
                    .collect();
                if origins.is_empty() {
                    "(none: same-origin only)".to_owned()
                } else {
                    list(&origins)
                }
            }
            "socketio-cors-credentials" => if self.sio.cors_credentials {
                "on"
            } else {
                "off"
            }
            .to_owned(),
            "hook-connect" => self.hook_url(self.hooks.connect.endpoint.as_ref()),
            "hook-connect-headers" => list(&self.hooks.connect.headers),
            "hook-connect-cookies" => list(&self.hooks.connect.cookies),
            "hook-subscribe" | "hook-publish" => {
                let rules = if flag == "hook-subscribe" {
                    &self.hooks.subscribe
                } else {
                    &self.hooks.publish
                };
                let rules: Vec<String> = rules
                    .iter()
                    .map(|(prefix, e)| format!("{prefix}={}", self.hook_url(Some(e))))
                    .collect();
                list(&rules)
            }
            "hook-rpc" => self.hook_url(self.hooks.rpc.as_ref()),
            "hook-disconnect" => self.hook_url(self.hooks.disconnect.as_ref()),
            "hook-forward" => self.hook_url(self.hooks.forward.as_ref()),
            "hook-secret" => if self.hooks.key.is_empty() {
                "(none)"
            } else {
                "(set)"
            }
            .to_owned(),
            "hook-timeout" => d(self.hooks.timeout),
            "hook-max-in-flight" => self.hooks.max_in_flight.to_string(),
            "hook-max-queued" => self.hooks.max_queued.to_string(),
            "hook-breaker-failures" => self.hooks.breaker_failures.to_string(),
            "hook-breaker-cooldown" => d(self.hooks.breaker_cooldown),
            "hook-max-calls-per-conn" => self.hooks.max_calls_per_conn.to_string(),
            "broker" => self.broker.to_string(),
            "broker-ca" => match (&self.broker_ca, self.broker.uses_tls()) {
                (Some(path), _) => path.display().to_string(),
                (None, true) => "(the system's CA bundle)".to_owned(),
                (None, false) => "(no TLS broker)".to_owned(),
            },
            "node-id" if self.node_id_random => format!("{} (random at start)", self.node_id),
            "node-id" => self.node_id.to_string(),
            "compression" => if s.deflate.enabled { "on" } else { "off" }.to_owned(),
            "compression-threshold" => s.deflate.threshold_bytes.to_string(),
            "tls-cert" | "tls-key" | "api-tls-cert" | "api-tls-key" => {
                let files = if flag.starts_with("api-") {
                    &self.api_tls
                } else {
                    &self.tls
                };
                files.as_ref().map_or("(none: plain)".to_owned(), |f| {
                    let path = if flag.ends_with("cert") {
                        &f.cert
                    } else {
                        &f.key
                    };
                    path.display().to_string()
                })
            }
            _ => return None,
        })
    }
    /// A hook's URL as configured, or `(none)`.
    fn hook_url(&self, e: Option<&crate::hooks::Endpoint>) -> String {
        e.and_then(|e| {
            let b = self.hooks.backends.get(e.backend)?;
            Some(format!("http://{}{}", b.host, e.path))
        })
        .unwrap_or_else(|| "(none)".to_owned())
    }

    /// Cookies make cross-site WebSocket hijacking possible: a connect hook that forwards
    /// them needs an Origin allow-list.
    fn check_hooks(self) -> anyhow::Result<Config> {
        if !self.hooks.connect.cookies.is_empty() && self.settings.policy.allowed_origins.is_empty()
        {
            bail!(
                "--hook-connect-cookies needs --allowed-origins: a page on any other site could \
                 otherwise open connections with the user's cookies"
            );
        }
        Ok(self)
    }
}

/// Descriptors kept free for listeners, wakers, epoll and whatever else the process opens.
pub const FD_RESERVE: u64 = 64;

/// Connections that `nofile` descriptors allow once [`FD_RESERVE`] is set aside (at least 1).
pub fn connections_for_descriptors(nofile: u64) -> usize {
    usize::try_from(nofile.saturating_sub(FD_RESERVE).max(1)).unwrap_or(usize::MAX)
}

/// The configured subprotocols, plus the `bearer` marker last when tokens are enabled: a client
/// that presents its token as an offered `bearer.<jwt>` subprotocol also offers `bearer`, and the
/// server selects it when it speaks none of the client's other protocols. Browsers fail a
/// handshake that offered protocols and got none back, so the token form needs one to select.
fn with_bearer(mut subprotocols: Vec<String>, tokens: bool) -> Vec<String> {
    if tokens && !subprotocols.iter().any(|p| p == BEARER_PROTOCOL) {
        subprotocols.push(BEARER_PROTOCOL.to_owned());
    }
    subprotocols
}

/// The Socket.IO endpoint's settings from the flags, else the file, else the defaults.
fn resolve_sio(cli: &Cli, file: &mut FileConfig) -> anyhow::Result<SioConfig> {
    let d = SioConfig::default();
    let preset = cli
        .socketio_preset
        .clone()
        .or(file.socketio_preset.take())
        .unwrap_or_else(|| "chat".to_owned());
    let mut events =
        EventMap::preset(&preset).map_err(|e| anyhow::anyhow!("--socketio-preset: {e}"))?;
    let rules = if cli.socketio_event.is_empty() {
        file.socketio_event.take().unwrap_or_default()
    } else {
        cli.socketio_event.clone()
    };
    for rule in &rules {
        events
            .add_rule(rule)
            .map_err(|e| anyhow::anyhow!("--socketio-event: {e}"))?;
    }
    let names = if cli.socketio_namespace.is_empty() {
        file.socketio_namespace
            .take()
            .map(List::items)
            .unwrap_or_else(|| vec!["/".to_owned()])
    } else {
        cli.socketio_namespace.clone()
    };
    let namespaces = names
        .iter()
        .map(|n| Namespace::parse(n))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("--socketio-namespace: {e}"))?;
    let positive = |d: Duration, name: &str| {
        if d.is_zero() {
            bail!("--{name} must be more than 0");
        }
        Ok(d)
    };
    let max_payload = cli
        .socketio_max_payload
        .or(file.socketio_max_payload)
        .unwrap_or(d.max_payload);
    if max_payload == 0 {
        bail!("--socketio-max-payload must be more than 0");
    }
    let client_files = match cli
        .socketio_client_dir
        .clone()
        .or(file.socketio_client_dir.take())
    {
        None => None,
        Some(dir) => {
            Some(Arc::new(ClientFiles::read(&dir).map_err(|e| {
                anyhow::anyhow!("--socketio-client-dir: {e}")
            })?))
        }
    };
    let origins = if cli.socketio_cors_origin.is_empty() {
        file.socketio_cors_origin
            .take()
            .map(List::items)
            .unwrap_or_default()
    } else {
        cli.socketio_cors_origin.clone()
    };
    let cors_origins = origins
        .iter()
        .map(|o| check_origin(o).map(Box::from))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("--socketio-cors-origin: {e}"))?;
    let cors_credentials = cli
        .socketio_cors_credentials
        .or(file.socketio_cors_credentials)
        .unwrap_or(Switch::Off)
        == Switch::On;
    Ok(SioConfig {
        cors_origins,
        cors_credentials,
        client_files,
        ping_interval: positive(
            duration(
                cli.socketio_ping_interval,
                file.socketio_ping_interval.take(),
                "socketio-ping-interval",
                d.ping_interval,
            )?,
            "socketio-ping-interval",
        )?,
        ping_timeout: positive(
            duration(
                cli.socketio_ping_timeout,
                file.socketio_ping_timeout.take(),
                "socketio-ping-timeout",
                d.ping_timeout,
            )?,
            "socketio-ping-timeout",
        )?,
        connect_timeout: positive(
            duration(
                cli.socketio_connect_timeout,
                file.socketio_connect_timeout.take(),
                "socketio-connect-timeout",
                d.connect_timeout,
            )?,
            "socketio-connect-timeout",
        )?,
        max_payload,
        limits: d.limits,
        namespaces,
        events,
    })
}

/// An origin as browsers send it: `http` or `https`, `://`, a host and an optional port, no
/// path, no trailing slash.
fn check_origin(o: &str) -> Result<&str, String> {
    let host = o
        .strip_prefix("http://")
        .or_else(|| o.strip_prefix("https://"))
        .ok_or_else(|| format!("{o:?}: an origin starts with http:// or https://"))?;
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if !ok {
        return Err(format!(
            "{o:?}: an origin is scheme://host[:port], without a path or a trailing slash"
        ));
    }
    Ok(o)
}

/// The `--hook-*` settings (flags win over the file).
fn resolve_hooks(cli: &mut Cli, file: &mut FileConfig) -> anyhow::Result<HookSettings> {
    let d = HookSettings::default();
    let list = |flag: &mut Vec<String>, file: Option<List>| {
        if flag.is_empty() {
            file.map(List::items).unwrap_or_default()
        } else {
            std::mem::take(flag)
        }
    };
    let mut h = HookSettings {
        timeout: duration(
            cli.hook_timeout,
            file.hook_timeout.take(),
            "hook-timeout",
            d.timeout,
        )?,
        max_in_flight: cli
            .hook_max_in_flight
            .or(file.hook_max_in_flight)
            .unwrap_or(d.max_in_flight),
        max_queued: cli
            .hook_max_queued
            .or(file.hook_max_queued)
            .unwrap_or(d.max_queued),
        breaker_failures: cli
            .hook_breaker_failures
            .or(file.hook_breaker_failures)
            .unwrap_or(d.breaker_failures),
        breaker_cooldown: duration(
            cli.hook_breaker_cooldown,
            file.hook_breaker_cooldown.take(),
            "hook-breaker-cooldown",
            d.breaker_cooldown,
        )?,
        max_calls_per_conn: cli
            .hook_max_calls_per_conn
            .or(file.hook_max_calls_per_conn)
            .unwrap_or(d.max_calls_per_conn),
        ..d
    };
    if h.max_in_flight == 0 || h.max_calls_per_conn == 0 || h.breaker_failures == 0 {
        bail!("--hook-max-in-flight, --hook-max-calls-per-conn and --hook-breaker-failures must be at least 1");
    }
    if h.max_calls_per_conn > usize::from(u16::MAX) {
        bail!("--hook-max-calls-per-conn must be at most {}", u16::MAX);
    }
    let url = |h: &mut HookSettings, flag: &str, url: &str| {
        h.endpoint(url.trim())
            .map_err(|e| anyhow::anyhow!("--{flag}: {e}"))
    };
    if let Some(u) = cli.hook_connect.take().or(file.hook_connect.take()) {
        h.connect.endpoint = Some(url(&mut h, "hook-connect", &u)?);
    }
    h.connect.headers = list(
        &mut cli.hook_connect_headers,
        file.hook_connect_headers.take(),
    )
    .into_iter()
    .map(|n| n.trim().to_ascii_lowercase())
    .collect();
    h.connect.cookies = list(
        &mut cli.hook_connect_cookies,
        file.hook_connect_cookies.take(),
    )
    .into_iter()
    .map(|n| n.trim().to_owned())
    .collect();
    for (flag, rules, file_rules) in [
        (
            "hook-subscribe",
            &mut cli.hook_subscribe,
            file.hook_subscribe.take(),
        ),
        (
            "hook-publish",
            &mut cli.hook_publish,
            file.hook_publish.take(),
        ),
    ] {
        for rule in list(rules, file_rules) {
            let Some((prefix, u)) = rule.split_once('=') else {
                bail!("--{flag}: {rule:?} is not PREFIX=URL");
            };
            let endpoint = url(&mut h, flag, u)?;
            let prefix = prefix.trim().to_owned();
            let table = if flag == "hook-subscribe" {
                &mut h.subscribe
            } else {
                &mut h.publish
            };
            if table.iter().any(|(p, _)| *p == prefix) {
                bail!("--{flag}: prefix {prefix:?} is given twice");
            }
            table.push((prefix, endpoint));
        }
    }
    if let Some(u) = cli.hook_rpc.take().or(file.hook_rpc.take()) {
        h.rpc = Some(url(&mut h, "hook-rpc", &u)?);
    }
    if let Some(u) = cli.hook_disconnect.take().or(file.hook_disconnect.take()) {
        h.disconnect = Some(url(&mut h, "hook-disconnect", &u)?);
    }
    if let Some(u) = cli.hook_forward.take().or(file.hook_forward.take()) {
        h.forward = Some(url(&mut h, "hook-forward", &u)?);
    }
    let secret = cli
        .hook_secret
        .take()
        .or(file.hook_secret.take())
        .filter(|s| !s.is_empty());
    match secret {
        Some(s) => h.key = s.into_bytes(),
        None if h.any() => bail!(
            "backend hooks need --hook-secret: every call is signed so the backend can tell it \
             comes from the gateway"
        ),
        None => {}
    }
    if h.connect.endpoint.is_none()
        && (!h.connect.headers.is_empty() || !h.connect.cookies.is_empty())
    {
        bail!("--hook-connect-headers and --hook-connect-cookies need --hook-connect");
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        let mut argv = vec!["gateway"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).expect("flags parse")
    }

    #[test]
    fn compression_is_on_by_default_and_switched_by_flag_or_file() {
        let c = Config::from_parts(cli(&[]), "").unwrap();
        assert!(c.settings.deflate.enabled);
        assert_eq!(c.settings.deflate.threshold_bytes, 128);
        let c = Config::from_parts(
            cli(&["--compression", "off", "--compression-threshold", "0"]),
            "",
        )
        .unwrap();
        assert!(!c.settings.deflate.enabled);
        assert_eq!(c.settings.deflate.threshold_bytes, 0);
        let file = "compression = \"off\"\ncompression_threshold = 512\n";
        let c = Config::from_parts(cli(&[]), file).unwrap();
        assert!(!c.settings.deflate.enabled);
        assert_eq!(c.settings.deflate.threshold_bytes, 512);
        // The flag wins over the file.
        let c = Config::from_parts(cli(&["--compression", "on"]), file).unwrap();
        assert!(c.settings.deflate.enabled);
        assert!(Config::from_parts(cli(&[]), "compression = \"maybe\"").is_err());
        let mut argv = vec!["gateway", "--compression", "yes"];
        assert!(Cli::try_parse_from(argv.drain(..)).is_err());
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = Config::from_parts(cli(&[]), "").unwrap();
        assert_eq!(c.listen, vec![DEFAULT_LISTEN]);
        assert_eq!(c.settings.max_header_bytes, 8192);
        assert_eq!(c.settings.max_headers, 64);
        assert_eq!(c.settings.limits.max_frame_bytes, 16 << 20);
        assert_eq!(c.settings.limits.max_message_bytes, 16 << 20);
        assert_eq!(c.settings.limits.max_fragments, 65536);
        assert_eq!(c.max_outbound_bytes, 4 << 20);
        assert_eq!(c.settings.handshake_timeout, Duration::from_secs(10));
        assert_eq!(c.settings.ping_interval, Duration::from_secs(25));
        assert_eq!(c.settings.pong_timeout, Duration::from_secs(10));
        assert_eq!(c.settings.close_timeout, Duration::from_secs(5));
        assert_eq!(c.drain_timeout, Duration::from_secs(10));
        assert_eq!(c.log_level, "info");
        assert_eq!(c.log_format, LogFormat::Text);
        assert!(c.settings.policy.allowed_origins.is_empty());
        assert!(c.max_connections.is_none());
        assert_eq!(c.max_channels_per_conn, 128);
        assert_eq!(c.shard_queue_capacity, 65536);
        assert_eq!(c.max_shard_backlog, 65536);
        assert!(c.history.is_empty(), "no channel keeps history by default");
        assert_eq!(c.max_recovery, 300);
    }

    #[test]
    fn broker_and_node_id_come_from_flags_or_the_file() {
        let c = Config::from_parts(cli(&[]), "").unwrap();
        assert_eq!(c.broker, BrokerUrl::Memory, "one node by default");
        assert!(c.node_id_random);
        let c = Config::from_parts(
            cli(&["--broker", "redis://127.0.0.1:7001", "--node-id", "42"]),
            "broker = \"memory\"\nnode-id = 7\n",
        )
        .unwrap();
        assert_eq!(c.broker, BrokerUrl::Redis("127.0.0.1:7001".into()));
        assert_eq!((c.node_id, c.node_id_random), (42, false));
        let c = Config::from_parts(cli(&[]), "broker = \"redis://r:1\"\nnode-id = 7\n").unwrap();
        assert_eq!((c.broker, c.node_id), (BrokerUrl::Redis("r:1".into()), 7));
        let c = Config::from_parts(cli(&[]), "broker = \"nats://n\"\n").unwrap();
        assert_eq!(
            c.broker,
            BrokerUrl::Nats {
                addr: "n:4222".into(),
                auth: Default::default(),
                tls: None,
            }
        );
        // Credentials for NATS are taken and never shown.
        let file = "broker = \"nats://gw:s3cret@n:1\"\n";
        let c = Config::from_parts(cli(&[]), file).unwrap();
        assert_eq!(c.effective("broker").as_deref(), Some("nats://gw:***@n:1"));
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(Config::from_parts(cli(&[]), "broker = \"nope\"\n").is_err());
        for bad in ["kafka://x", "nats://gw:s3cret@n:0x"] {
            let e = Config::from_parts(cli(&["--broker", bad]), "").unwrap_err();
            assert!(e.to_string().starts_with("--broker:"), "{e}");
            assert!(!e.to_string().contains("s3cret"), "{e}");
        }
        for bad in [&["--node-id", "65536"][..], &["--node-id", "-1"]] {
            let mut argv = vec!["gateway"];
            argv.extend_from_slice(bad);
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_broker_spread_over_several_redis_instances_parses_and_is_shown_whole() {
        let url = "redis://a:1,redis://b:2";
        let c = Config::from_parts(cli(&["--broker", url]), "").unwrap();
        let spread = BrokerUrl::RedisSpread(vec!["a:1".into(), "b:2".into()]);
        assert_eq!(c.broker, spread);
        assert_eq!(c.effective("broker").as_deref(), Some(url));
        let file = "broker = \"redis://a:1,redis://b:2\"\n";
        assert_eq!(Config::from_parts(cli(&[]), file).unwrap().broker, spread);
        let twice = cli(&["--broker", "redis://a:1,redis://a:1"]);
        assert!(Config::from_parts(twice, "").is_err());
    }

    #[test]
    fn a_redis_cluster_broker_parses_from_the_flag_or_the_file_and_is_shown_whole() {
        let url = "redis-cluster://a:1,b:2";
        let c = Config::from_parts(cli(&["--broker", url]), "").unwrap();
        let cluster = BrokerUrl::RedisCluster {
            seeds: vec!["a:1".into(), "b:2".into()],
            auth: crate::broker::RedisAuth::None,
        };
        assert_eq!(c.broker, cluster);
        assert_eq!(c.effective("broker").as_deref(), Some(url));
        let file = "broker = \"redis-cluster://a:1,b:2\"\n";
        assert_eq!(Config::from_parts(cli(&[]), file).unwrap().broker, cluster);
        let twice = cli(&["--broker", "redis-cluster://a:1,a:1"]);
        assert!(Config::from_parts(twice, "").is_err());
    }

    #[test]
    fn a_tls_broker_takes_its_ca_from_the_flag_or_the_file() {
        let c = Config::from_parts(cli(&["--broker", "rediss://r:6380"]), "").unwrap();
        assert!(c.broker.uses_tls());
        assert_eq!(c.broker_ca, None);
        assert_eq!(
            c.effective("broker-ca").as_deref(),
            Some("(the system's CA bundle)")
        );
        assert_eq!(c.effective("broker").as_deref(), Some("rediss://r:6380"));
        let file = "broker = \"rediss://:pw@r:6380\"\nbroker-ca = \"/etc/gw/ca.pem\"\n";
        let c = Config::from_parts(cli(&[]), file).unwrap();
        assert_eq!(c.broker_ca, Some(PathBuf::from("/etc/gw/ca.pem")));
        assert_eq!(c.effective("broker-ca").as_deref(), Some("/etc/gw/ca.pem"));
        // A CA without a TLS broker is a mistake to say, not to ignore.
        let plain = cli(&["--broker", "redis://r:1", "--broker-ca", "ca.pem"]);
        let e = Config::from_parts(plain, "").unwrap_err().to_string();
        assert!(e.contains("--broker-ca needs"), "{e}");
        let c = Config::from_parts(cli(&[]), "").unwrap();
        assert_eq!(c.effective("broker-ca").as_deref(), Some("(no TLS broker)"));
    }

    #[test]
    fn redis_credentials_are_kept_and_never_shown() {
        let file = "broker = \"redis://gw:s3cret@r:1\"\n";
        let c = Config::from_parts(cli(&[]), file).unwrap();
        assert_eq!(c.effective("broker").as_deref(), Some("redis://gw:***@r:1"));
        let url = "redis-cluster://:s3cret@a:1,b:2";
        let c = Config::from_parts(cli(&["--broker", url]), "").unwrap();
        assert_eq!(
            c.effective("broker").as_deref(),
            Some("redis-cluster://:***@a:1,b:2")
        );
        assert!(!format!("{c:?}").contains("s3cret"), "{c:?}");
    }

    #[test]
    fn history_rules_come_from_flags_or_the_file() {
        let c = Config::from_parts(
            cli(&["--history", "chat:=100/10m", "--history", "news=5/1h,=1/1s"]),
            "history = [\"ignored=1/1s\"]\nmax-recovery = 50\n",
        )
        .unwrap();
        let prefixes: Vec<&str> = c.history.rules().iter().map(|r| &*r.prefix).collect();
        assert_eq!(prefixes, ["chat:", "news", ""]);
        assert_eq!(c.max_recovery, 50);
        let c = Config::from_parts(cli(&[]), "history = [\"a:=3/2s\", \"b:=4/1m\"]").unwrap();
        let r = c.history.retention("a:1").unwrap();
        assert_eq!((r.size, r.ttl), (3, Duration::from_secs(2)));
        assert!(c.history.retention("c").is_none());
        for bad in [
            &["--history", "chat:=0/1m"][..],
            &["--history", "chat:=100/25h"],
            &["--history", "chat:"],
            &["--history", "a=1/1s", "--history", "a=2/1s"],
            &["--max-recovery", "10001"],
        ] {
            assert!(
                Config::from_parts(cli(bad), "").is_err(),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn tokens_add_the_bearer_protocol_last() {
        let c = Config::from_parts(cli(&["--subprotocols", "chat"]), "").unwrap();
        assert_eq!(c.settings.policy.subprotocols, vec!["chat"]);
        let c = Config::from_parts(cli(&["--subprotocols", "chat", "--token-secret", "k"]), "")
            .unwrap();
        assert_eq!(c.settings.policy.subprotocols, vec!["chat", "bearer"]);
        let c = Config::from_parts(
            cli(&["--subprotocols", "bearer,chat", "--token-secret", "k"]),
            "",
        )
        .unwrap();
        assert_eq!(c.settings.policy.subprotocols, vec!["bearer", "chat"]);
    }

    #[test]
    fn flag_wins_over_file_and_file_over_default() {
        let file = "max-headers = 10\nping_interval = \"3s\"\nsubprotocols = \"a, b\"\n\
                    listen = [\"127.0.0.1:9000\", \":9001\"]\nmax-header-bytes = 100\n";
        let c = Config::from_parts(cli(&["--max-header-bytes", "200"]), file).unwrap();
        assert_eq!(c.settings.max_header_bytes, 200);
        assert_eq!(c.settings.max_headers, 10);
        assert_eq!(c.settings.ping_interval, Duration::from_secs(3));
        assert_eq!(c.settings.policy.subprotocols, vec!["a", "b"]);
        assert_eq!(c.listen.len(), 2);
        assert_eq!(c.listen[1], "0.0.0.0:9001".parse().unwrap());
    }

    #[test]
    fn lists_and_durations_parse() {
        let c = Config::from_parts(
            cli(&[
                "--listen",
                "127.0.0.1:0",
                "--listen",
                "[::1]:0",
                "--allowed-origins",
                "https://a,https://b",
                "--pong-timeout",
                "500ms",
            ]),
            "",
        )
        .unwrap();
        assert_eq!(c.listen.len(), 2);
        assert_eq!(
            c.settings.policy.allowed_origins,
            vec!["https://a", "https://b"]
        );
        assert_eq!(c.settings.pong_timeout, Duration::from_millis(500));
    }

    #[test]
    fn api_and_token_flags() {
        let c = Config::from_parts(cli(&[]), "").unwrap();
        assert_eq!(c.api.listen, DEFAULT_API_LISTEN);
        assert_eq!(c.api.max_body_bytes, 1 << 20);
        assert!(!c.api.require_token);
        assert!(c.api.key.is_none() && c.api.token_secret.is_none());

        let c = Config::from_parts(
            cli(&[
                "--api-listen",
                "127.0.0.1:0",
                "--api-key",
                "k",
                "--token-secret",
                "s",
                "--require-token",
                "--max-api-body-bytes",
                "100",
            ]),
            "",
        )
        .unwrap();
        assert_eq!(c.api.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(c.api.key.as_deref(), Some("k"));
        assert_eq!(c.api.token_secret.as_deref(), Some("s"));
        assert!(c.api.require_token);
        assert_eq!(c.api.max_body_bytes, 100);

        let file = "api-listen = \":9100\"\ntoken-secret = \"f\"\nallow-anonymous = false\n";
        let c = Config::from_parts(cli(&[]), file).unwrap();
        assert_eq!(c.api.listen.port(), 9100);
        assert!(c.api.require_token);
        let c = Config::from_parts(cli(&["--require-token", "false"]), "").unwrap();
        assert!(!c.api.require_token);
    }

    #[test]
    fn hooks_come_from_flags_or_the_file_and_share_backends() {
        let c = Config::from_parts(
            cli(&[
                "--hook-secret",
                "k",
                "--hook-rpc",
                "http://127.0.0.1:9000/rpc",
                "--hook-subscribe",
                "chat:=http://127.0.0.1:9000/sub,=http://127.0.0.1:9001/all",
            ]),
            "hook-timeout = \"2s\"\nhook-disconnect = \"http://127.0.0.1:9001/gone\"\n",
        )
        .unwrap();
        let h = &c.hooks;
        assert_eq!(h.backends.len(), 2);
        assert_eq!(h.timeout, Duration::from_secs(2));
        assert_eq!(
            h.rpc.as_ref().map(|e| (e.backend, &*e.path)),
            Some((0, "/rpc"))
        );
        assert_eq!(h.subscribe.len(), 2);
        assert_eq!(h.disconnect.as_ref().map(|e| e.backend), Some(1));
        assert_eq!(h.key, b"k");
        assert!(!Config::from_parts(cli(&[]), "").unwrap().hooks.any());
    }

    #[test]
    fn hooks_need_a_secret_and_cookies_need_an_origin_list() {
        let rpc = ["--hook-rpc", "http://127.0.0.1:9000/rpc"];
        let e = Config::from_parts(cli(&rpc), "").unwrap_err();
        assert!(e.to_string().contains("--hook-secret"), "{e}");
        let cookies = [
            "--hook-secret",
            "k",
            "--hook-connect",
            "http://127.0.0.1:9000/c",
            "--hook-connect-cookies",
            "session",
        ];
        let e = Config::from_parts(cli(&cookies), "").unwrap_err();
        assert!(e.to_string().contains("--allowed-origins"), "{e}");
        let mut with_origins = cookies.to_vec();
        with_origins.extend(["--allowed-origins", "https://app.example"]);
        assert!(Config::from_parts(cli(&with_origins), "").is_ok());
        for bad in [
            &["--hook-secret", "k", "--hook-rpc", "https://a/b"][..],
            &["--hook-secret", "k", "--hook-publish", "chat:"],
            &["--hook-secret", "k", "--hook-connect-cookies", "s"],
            &["--hook-secret", "k", "--hook-max-in-flight", "0"],
        ] {
            assert!(Config::from_parts(cli(bad), "").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn requiring_tokens_needs_a_secret() {
        assert!(Config::from_parts(cli(&["--require-token"]), "").is_err());
        assert!(Config::from_parts(cli(&["--allow-anonymous", "false"]), "").is_err());
        assert!(Config::from_parts(cli(&["--api-key", ""]), "").is_err());
        assert!(Config::from_parts(cli(&["--admin-secret", ""]), "").is_err());
        let c = Config::from_parts(cli(&[]), "log-format = \"json\"").unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(Config::from_parts(cli(&[]), "log-format = \"xml\"").is_err());
        assert!(Cli::try_parse_from(["gateway", "--log-format", "xml"]).is_err());
        let c = Config::from_parts(cli(&[]), "admin-secret = \"s\"").unwrap();
        assert_eq!(c.api.admin_secret.as_deref(), Some("s"));
    }

    #[test]
    fn every_flag_has_an_effective_value_and_a_source() {
        let (c, sources) =
            Config::load_from(["gateway", "--threads", "3", "--api-key", "k"].map(OsString::from))
                .unwrap();
        assert!(!sources.0.is_empty());
        for (flag, _) in &sources.0 {
            assert!(
                c.effective(flag).is_some(),
                "--{flag} has no effective value for gateway check"
            );
        }
        assert_eq!(sources.get("threads"), Some(Source::Flag));
        assert_eq!(sources.get("listen"), Some(Source::Default));
        assert_eq!(c.effective("threads").as_deref(), Some("3"));
        assert_eq!(c.effective("api-key").as_deref(), Some("(set)"));
        assert_eq!(c.effective("no-such-flag"), None);
        assert_eq!(connections_for_descriptors(1024), 960);
        assert_eq!(connections_for_descriptors(10), 1);
    }

    #[test]
    fn tls_files_come_in_pairs() {
        let c = Config::from_parts(cli(&[]), "").unwrap();
        assert!(
            c.tls.is_none() && c.api_tls.is_none(),
            "plain TCP by default"
        );
        let c = Config::from_parts(
            cli(&["--tls-cert", "c.pem", "--tls-key", "k.pem"]),
            "api-tls-cert = \"ac.pem\"\napi_tls_key = \"ak.pem\"\n",
        )
        .unwrap();
        let files = |c: &str, k: &str| TlsFiles {
            cert: c.into(),
            key: k.into(),
        };
        assert_eq!(c.tls, Some(files("c.pem", "k.pem")));
        assert_eq!(c.api_tls, Some(files("ac.pem", "ak.pem")));
        let c = Config::from_parts(cli(&["--tls-key", "k2.pem"]), "tls-cert = \"c.pem\"").unwrap();
        assert_eq!(c.tls, Some(files("c.pem", "k2.pem")));
        for bad in [
            &["--tls-cert", "c.pem"][..],
            &["--tls-key", "k.pem"],
            &["--api-tls-cert", "c.pem"],
        ] {
            let e = Config::from_parts(cli(bad), "").unwrap_err().to_string();
            assert!(e.contains("needs --"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(Cli::try_parse_from(["gateway", "--listen", "nowhere"]).is_err());
        assert!(Cli::try_parse_from(["gateway", "--ping-interval", "soon"]).is_err());
        assert!(Config::from_parts(cli(&[]), "no-such-key = 1").is_err());
        assert!(Config::from_parts(cli(&[]), "close-timeout = \"x\"").is_err());
        assert!(Config::from_parts(cli(&["--threads", "0"]), "").is_err());
        assert!(Config::from_parts(cli(&["--ping-interval", "1000y"]), "").is_err());
    }

    #[test]
    fn socketio_defaults_flags_and_file() {
        let c = Config::from_parts(cli(&[]), "").unwrap();
        assert_eq!(c.sio.ping_interval, Duration::from_secs(25));
        assert_eq!(c.sio.ping_timeout, Duration::from_secs(20));
        assert_eq!(c.sio.max_payload, 1_000_000);
        assert_eq!(c.sio.namespaces.len(), 1);
        assert_eq!(c.sio.events.action("chat message").to_string(), "broadcast");
        let c = Config::from_parts(
            cli(&[
                "--socketio-preset",
                "none",
                "--socketio-event",
                "hi=ack:1",
                "--socketio-namespace",
                "/,/admin=token",
                "--socketio-ping-interval",
                "2s",
            ]),
            "socketio-ping-timeout = \"1s\"\nsocketio-event = [\"ignored=drop\"]\n",
        )
        .unwrap();
        assert_eq!(c.sio.events.action("chat message").to_string(), "drop");
        assert_eq!(c.sio.events.action("hi").to_string(), "ack:1");
        assert_eq!(
            c.sio.namespaces[1].auth,
            crate::app::sio::NamespaceAuth::Token
        );
        assert_eq!(c.sio.ping_interval, Duration::from_secs(2));
        assert_eq!(c.sio.ping_timeout, Duration::from_secs(1));
        let c = Config::from_parts(cli(&[]), "socketio-namespace = \"/a,/b\"").unwrap();
        assert_eq!(&*c.sio.namespaces[1].name, "/b");
        for bad in [
            &["--socketio-preset", "party"][..],
            &["--socketio-event", "x=shout"],
            &["--socketio-event", "noaction"],
            &["--socketio-namespace", "admin"],
            &["--socketio-namespace", "/a=password"],
            &["--socketio-ping-interval", "0s"],
            &["--socketio-max-payload", "0"],
            &["--socketio-client-dir", "/nonexistent/dist"],
        ] {
            let e = Config::from_parts(cli(bad), "").expect_err(&format!("{bad:?}"));
            assert!(e.to_string().contains("--socketio-"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn socketio_cors_is_same_origin_only_by_default_and_takes_origins() {
        let c = Config::from_parts(cli(&[]), "").unwrap();
        assert!(c.sio.cors_origins.is_empty() && !c.sio.cors_credentials);
        let c = Config::from_parts(
            cli(&[
                "--socketio-cors-origin",
                "https://app.example,http://localhost:3000",
                "--socketio-cors-credentials",
                "on",
            ]),
            "",
        )
        .unwrap();
        assert_eq!(c.sio.cors_origins.len(), 2);
        assert_eq!(&*c.sio.cors_origins[1], "http://localhost:3000");
        assert!(c.sio.cors_credentials);
        let c = Config::from_parts(
            cli(&[]),
            "socketio-cors-origin = \"https://a.example\"\nsocketio-cors-credentials = \"on\"\n",
        )
        .unwrap();
        assert_eq!(&*c.sio.cors_origins[0], "https://a.example");
        assert!(c.sio.cors_credentials);
        for bad in [
            "app.example",
            "https://app.example/",
            "ftp://x",
            "https://a b",
        ] {
            let e = Config::from_parts(cli(&["--socketio-cors-origin", bad]), "").expect_err(bad);
            assert!(
                e.to_string().contains("--socketio-cors-origin"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn connection_timers_are_limited_to_what_a_stamp_reads_back() {
        for flag in [
            "--handshake-timeout",
            "--ping-interval",
            "--pong-timeout",
            "--close-timeout",
        ] {
            let c = Config::from_parts(cli(&[flag, "24days"]), "").expect("24 days is allowed");
            assert!(c.settings.ping_interval <= Duration::from_secs(24 * 86_400));
            let err = Config::from_parts(cli(&[flag, "25days"]), "")
                .expect_err("25 days is past a stamp's reach")
                .to_string();
            assert_eq!(err, format!("{flag} must be at most 24 days, got 25days"));
        }
        let file = "ping-interval = \"30days\"\n";
        assert!(Config::from_parts(cli(&[]), file).is_err());
    }
}
