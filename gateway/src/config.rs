//! Configuration: command-line flags (clap), each also settable by a `GATEWAY_*` environment
//! variable, and an optional TOML file. Precedence: flag > environment > file > built-in default.
//!
//! The file uses the flag names as keys (`max-frame-bytes = 1048576`, `ping-interval = "30s"`;
//! `snake_case` spellings are accepted too); lists may be TOML arrays or comma-separated strings.
//! Unknown keys are an error, so a typo is not silently ignored.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use serde::Deserialize;

use crate::conn::frames::Limits;
use crate::conn::handshake::Policy;
use crate::conn::Settings;
use crate::hooks::HookSettings;
use crate::router::history::{HistoryPolicy, HistoryRule, MAX_SIZE};

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
                  Durations are like 500ms, 10s, 2m; sizes are byte counts."
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
    /// (with a 408 attempt) [default: 10s]
    #[arg(long, env = "GATEWAY_HANDSHAKE_TIMEOUT", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Option<Duration>,

    /// Ping a connection that has received nothing for this long [default: 25s]
    #[arg(long, env = "GATEWAY_PING_INTERVAL", value_parser = humantime::parse_duration)]
    pub ping_interval: Option<Duration>,

    /// After our ping, close (1001 "ping timeout") a connection silent this long [default: 10s]
    #[arg(long, env = "GATEWAY_PONG_TIMEOUT", value_parser = humantime::parse_duration)]
    pub pong_timeout: Option<Duration>,

    /// After we send close, drop the TCP connection if the peer has not closed by then
    /// [default: 5s]
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

    // --- Event driver ---
    /// Event driver: `epoll`, `uring` (io_uring; refuses to start where the kernel does not
    /// allow it) or `auto` (io_uring when available, else epoll; the choice is logged)
    /// [default: auto]
    #[arg(long, env = "GATEWAY_DRIVER", value_enum)]
    pub driver: Option<DriverChoice>,

    /// Provided receive buffers per shard for the io_uring driver, 16 KiB each (a power of two
    /// up to 32768) [default: 512]
    #[arg(long, env = "GATEWAY_URING_BUFFERS")]
    pub uring_buffers: Option<u16>,

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
    driver: Option<DriverChoice>,
    uring_buffers: Option<u16>,
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
        let mut table: toml::Table = toml::from_str(text)?;
        // Accept `max_frame_bytes` as well as `max-frame-bytes`.
        let keys: Vec<String> = table.keys().filter(|k| k.contains('_')).cloned().collect();
        for k in keys {
            if let Some(v) = table.remove(&k) {
                table.insert(k.replace('_', "-"), v);
            }
        }
        Ok(toml::Value::Table(table).try_into()?)
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
        Ok(ApiConfig {
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
        let cli = Cli::parse();
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                FileConfig::parse(&text)
                    .with_context(|| format!("bad config file {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        Config::resolve(cli, file)
    }

    /// Parse a TOML config file's text and merge it under `cli` (for tests).
    pub fn from_parts(cli: Cli, file_text: &str) -> anyhow::Result<Config> {
        Config::resolve(cli, FileConfig::parse(file_text)?)
    }

    fn resolve(mut cli: Cli, mut file: FileConfig) -> anyhow::Result<Config> {
        let d = Settings::default();
        let api = ApiConfig::resolve(&cli, &file)?;
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
                subprotocols: pick_list(cli.subprotocols, file.subprotocols),
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
        };
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
        Ok(Config {
            listen,
            threads,
            log_level: cli
                .log_level
                .or(file.log_level)
                .unwrap_or_else(|| "info".to_owned()),
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
            hooks,
        })
        .and_then(Config::check_hooks)
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
        assert!(c.settings.policy.allowed_origins.is_empty());
        assert!(c.max_connections.is_none());
        assert_eq!(c.max_channels_per_conn, 128);
        assert_eq!(c.shard_queue_capacity, 65536);
        assert_eq!(c.max_shard_backlog, 65536);
        assert!(c.history.is_empty(), "no channel keeps history by default");
        assert_eq!(c.max_recovery, 300);
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
}
