//! The command line: one subcommand per scenario, `capacity` (a scenario stepped up) and `merge`.
//! Every scenario shares [`Common`]: targets, threads, timing, outputs and thresholds.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::adapter::Adapter;

/// Load generator for WebSocket servers: open-loop rates, coordinated-omission-free latency,
/// capacity search.
#[derive(Parser, Debug)]
#[command(name = "loadgen", version, about, long_about = None)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// A load scenario.
    #[command(flatten)]
    Scenario(Scenario),
    /// Step a scenario's load up and find the highest step meeting an objective.
    Capacity(CapacityArgs),
    /// Merge result files (histograms, not percentiles) from several loadgen processes.
    Merge(MergeArgs),
    /// Watch a server while a load command runs (a soak): RSS slope, descriptors, threads, CPU.
    Watch(WatchArgs),
    /// Slow readers and clients sending bad frames, reconnecting until the duration is over.
    Misbehave(MisbehaveArgs),
}

/// The load scenarios.
#[derive(Subcommand, Debug, Clone, serde::Serialize)]
pub enum Scenario {
    /// Open N connections at a rate; handshake latency and failures by reason.
    Connect(ConnectArgs),
    /// Open and hold N connections; server memory per connection with --server-pid.
    Idle(ConnectArgs),
    /// C connections x W messages in flight (closed loop), or an open-loop --rate; RTT.
    Echo(EchoArgs),
    /// Subscribers and publishers through an adapter; deliveries/s, end-to-end latency, loss.
    Fanout(FanoutArgs),
    /// Connections arrive at a rate, stay a random while and leave; --storm drops a share.
    Churn(ChurnArgs),
    /// Rooms of a size distribution, every member sending at a rate.
    Chat(ChatArgs),
    /// RPCs through the gateway's rpc hook (`{"op":"rpc"}` on `/ws`) at an open-loop rate;
    /// latency from each call's intended send time to its reply (matched by id).
    Rpc(RpcArgs),
}

impl Scenario {
    /// The options every scenario shares.
    pub fn common(&self) -> &Common {
        match self {
            Scenario::Connect(a) | Scenario::Idle(a) => &a.common,
            Scenario::Echo(a) => &a.common,
            Scenario::Fanout(a) => &a.common,
            Scenario::Churn(a) => &a.common,
            Scenario::Chat(a) => &a.common,
            Scenario::Rpc(a) => &a.common,
        }
    }

    /// Mutable access to the shared options.
    pub fn common_mut(&mut self) -> &mut Common {
        match self {
            Scenario::Connect(a) | Scenario::Idle(a) => &mut a.common,
            Scenario::Echo(a) => &mut a.common,
            Scenario::Fanout(a) => &mut a.common,
            Scenario::Churn(a) => &mut a.common,
            Scenario::Chat(a) => &mut a.common,
            Scenario::Rpc(a) => &mut a.common,
        }
    }

    /// The scenario's name.
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Connect(_) => "connect",
            Scenario::Idle(_) => "idle",
            Scenario::Echo(_) => "echo",
            Scenario::Fanout(_) => "fanout",
            Scenario::Churn(_) => "churn",
            Scenario::Rpc(_) => "rpc",
            Scenario::Chat(_) => "chat",
        }
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

/// Options shared by every scenario.
#[derive(Args, Debug, Clone, serde::Serialize)]
pub struct Common {
    /// Target URL (ws://host:port/path); repeat for a cluster, connections are spread round
    /// robin. `{room}` / `{channel}` in the path is replaced per room / channel.
    #[arg(long = "url", default_value = "ws://127.0.0.1:8080/echo")]
    pub urls: Vec<String>,
    /// Client threads (one pinned mio loop each); default: all cores.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Do not pin client threads to cores.
    #[arg(long)]
    pub no_pin: bool,
    /// Source addresses to bind before connect, round robin (`127.0.0.2-127.0.0.60`, repeatable).
    #[arg(long = "source")]
    pub sources: Vec<String>,
    /// Connections opened per second while connecting (0: as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    pub connect_rate: f64,
    /// Give up on a connection (TCP + handshake) after this long.
    #[arg(long, value_parser = duration, default_value = "10s")]
    pub connect_timeout: Duration,
    /// Not counted: the first part of the run phase.
    #[arg(long, value_parser = duration, default_value = "2s")]
    pub warmup: Duration,
    /// Measured part of the run phase (after warm-up).
    #[arg(long, value_parser = duration, default_value = "10s")]
    pub duration: Duration,
    /// After sending stops, wait at most this long for outstanding replies and deliveries.
    #[arg(long, value_parser = duration, default_value = "2s")]
    pub drain: Duration,
    /// Write the full result (config, machine, histograms, time series) as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write an HdrHistogram interval log of latency (one histogram per second).
    #[arg(long)]
    pub hdr_log: Option<PathBuf>,
    /// Write a self-contained HTML report with SVG plots.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Thresholds, e.g. "p99<50ms,loss=0,rate>1000"; exit code 3 when one fails.
    #[arg(long)]
    pub expect: Option<String>,
    /// PID of the server (same machine): RSS per connection and CPU per message from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Prometheus text endpoint of the server (http://host:port/metrics), scraped before and after.
    #[arg(long)]
    pub server_metrics: Option<String>,
    /// No live progress lines.
    #[arg(long, short)]
    pub quiet: bool,
    /// Split the load over this many loadgen processes (each with its own descriptor limit and
    /// threads) and merge their results. Not for fanout and chat, whose delivery checks need all
    /// publishers and subscribers in one process.
    #[arg(long, default_value_t = 1)]
    pub processes: u32,
    /// Which share of a `--processes` run this process carries (set by the parent process).
    #[arg(long, hide = true)]
    pub process_index: Option<u32>,
    /// Offer permessage-deflate (RFC 7692, both sides without context takeover); where the
    /// server accepts, messages of 128 bytes or more are sent compressed and compressed ones
    /// inflated.
    #[arg(long)]
    pub deflate: bool,
    /// PEM file of the CA certificate(s) that sign the server's certificate, for `wss://` URLs
    /// (required with them; the TLS handshake is part of each connection's connect latency)
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
}

/// `connect` and `idle`.
#[derive(Args, Debug, Clone, serde::Serialize)]
pub struct ConnectArgs {
    /// Connections to open.
    #[arg(long, short = 'c', default_value_t = 1000)]
    pub connections: u32,
    /// Opening rate (connections/s; 0: as fast as possible). Overrides --connect-rate.
    #[arg(long)]
    pub rate: Option<f64>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
}

/// `echo`.
#[derive(Args, Debug, Clone, serde::Serialize)]
pub struct EchoArgs {
    /// Connections.
    #[arg(long, short = 'c', default_value_t = 100)]
    pub connections: u32,
    /// Messages in flight per connection (closed loop).
    #[arg(long, short = 'w', default_value_t = 1)]
    pub in_flight: u32,
    /// Payload bytes per message.
    #[arg(long, short = 's', default_value_t = 64)]
    pub size: usize,
    /// Open loop: total messages/s over all connections (latency from the intended send time).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Send text frames instead of binary.
    #[arg(long)]
    pub text: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
}

/// `fanout`.
#[derive(Args, Debug, Clone, serde::Serialize)]
pub struct FanoutArgs {
    /// Subscriber connections.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: u32,
    /// Publisher connections.
    #[arg(long, default_value_t = 1)]
    pub publishers: u32,
    /// Channels; subscribers and publishers are spread over them (use `{channel}` in --url).
    #[arg(long, default_value_t = 1)]
    pub channels: u32,
    /// Total publishes/s (open loop).
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Payload bytes per delivered message (at least 40: the stamp).
    #[arg(long, short = 's', default_value_t = 64)]
    pub size: usize,
    /// How to subscribe and publish.
    #[arg(long, value_enum, default_value = "pub")]
    pub adapter: Adapter,
    /// With `--adapter gateway`: publish through the backend API at this address
    /// (`http://127.0.0.1:8081`) instead of over WebSocket.
    #[arg(long)]
    pub api_url: Option<String>,
    /// Bearer key for --api-url.
    #[arg(long, default_value = "")]
    pub api_key: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
}

/// `churn`.
#[derive(Args, Debug, Clone, serde::Serialize)]
pub struct ChurnArgs {
    /// Connections opened before the churn starts.
    #[arg(long, short = 'c', default_value_t = 0)]
    pub connections: u32,
    /// New connections per second during the run.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// How long a connection stays: uniform in MIN-MAX (e.g. `1s-10s`).
    #[arg(long, default_value = "1s-5s")]
    pub stay: String,
    /// Drop PCT% of the open connections at once at T after the run starts, and reconnect them.
    #[arg(long)]
    pub storm: Option<String>,
    /// Repeat the storm at this interval after its first time (a storm every few minutes in a
    /// soak); dropped and reconnected then add up over every storm, and the time until all were
    /// back is the slowest storm's.
    #[arg(long, value_parser = duration)]
    pub storm_every: Option<Duration>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
}

/// `chat`.
#[derive(Args, Debug, Clone, serde::Serialize)]
pub struct ChatArgs {
    /// Users (connections).
    #[arg(long, default_value_t = 1000)]
    pub users: u32,
    /// Room size: `N`, or `MIN-MAX` drawn uniformly per room.
    #[arg(long, default_value = "2-20")]
    pub room_size: String,
    /// Messages/s each user sends.
    #[arg(long, default_value_t = 0.2)]
    pub msg_rate: f64,
    /// Payload bytes per message (at least 40).
    #[arg(long, short = 's', default_value_t = 64)]
    pub size: usize,
    /// How rooms are joined and messages published (`{room}` in --url names the room).
    #[arg(long, value_enum, default_value = "pub")]
    pub adapter: Adapter,
    /// Seed for room sizes (same seed, same rooms).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
}

/// `rpc`.
#[derive(Args, Debug, Clone, serde::Serialize)]
pub struct RpcArgs {
    /// Connections (to a `/ws` URL of the gateway, which needs `--hook-rpc`).
    #[arg(long, short = 'c', default_value_t = 50)]
    pub connections: u32,
    /// Calls/s over all connections (open loop).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Bytes of the string sent as each call's `data`.
    #[arg(long, short = 's', default_value_t = 64)]
    pub size: usize,
    /// The `method` of each call.
    #[arg(long, default_value = "echo")]
    pub method: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
}

/// `capacity`.
#[derive(Args, Debug)]
pub struct CapacityArgs {
    /// The objective every step must meet, e.g. "p99<50ms,loss=0".
    #[arg(long, default_value = "p99<50ms,loss=0")]
    pub objective: String,
    /// Which load knob to step: `connections` (subscribers, users) or `rate`.
    #[arg(long, default_value = "rate")]
    pub vary: String,
    /// First step's value (default: the scenario's own value).
    #[arg(long)]
    pub start: Option<f64>,
    /// Each step multiplies the load by this factor.
    #[arg(long, default_value_t = 2.0)]
    pub factor: f64,
    /// Stop after this many steps.
    #[arg(long, default_value_t = 8)]
    pub max_steps: u32,
    /// Cores of the server, for the summary sentence.
    #[arg(long)]
    pub server_cores: Option<u32>,
    /// Write all steps as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The scenario to step (its own options follow it).
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// `merge`.
#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Result files written with --json.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Write the merged result.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the merged HTML report.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Write the merged HdrHistogram interval log.
    #[arg(long)]
    pub hdr_log: Option<PathBuf>,
    /// Thresholds on the merged result (exit code 3 on failure).
    #[arg(long)]
    pub expect: Option<String>,
}

/// `watch`.
#[derive(Args, Debug)]
pub struct WatchArgs {
    /// PID of the server to watch (same machine).
    #[arg(long)]
    pub server_pid: u32,
    /// Sampling interval.
    #[arg(long, value_parser = duration, default_value = "10s")]
    pub interval: Duration,
    /// Samples before this (from the start) are not fitted: pools and arenas fill up.
    #[arg(long, value_parser = duration, default_value = "60s")]
    pub warmup: Duration,
    /// Growth of RSS over the fitted window (the slope times the window) allowed in bytes ...
    #[arg(long, default_value_t = 4 << 20)]
    pub rss_growth_bytes: u64,
    /// ... or as a percentage of the RSS at the window's start, whichever is larger.
    #[arg(long, default_value_t = 5.0)]
    pub rss_growth_pct: f64,
    /// Descriptors allowed above the baseline once the load is gone.
    #[arg(long, default_value_t = 0)]
    pub fd_slack: u64,
    /// After the load command exits, wait at most this long for descriptors to come back.
    #[arg(long, value_parser = duration, default_value = "30s")]
    pub settle: Duration,
    /// A load result (`--json` of a scenario) to read once the load is over; chat results are
    /// checked for loss, duplicates and order. Repeatable.
    #[arg(long = "load-report")]
    pub load_reports: Vec<PathBuf>,
    /// Write the samples and verdict as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the HTML report (time series of RSS, descriptors, threads, CPU).
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// The load command and its arguments (after `--`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// `misbehave`.
#[derive(Args, Debug)]
pub struct MisbehaveArgs {
    /// Where slow readers subscribe (a URL that pushes to them, e.g. ws://host/broadcast).
    #[arg(long, default_value = "ws://127.0.0.1:8080/broadcast")]
    pub slow_url: String,
    /// Slow-reader connections open at once.
    #[arg(long, default_value_t = 2)]
    pub slow: u32,
    /// Bytes per second each slow reader reads.
    #[arg(long, default_value_t = 512)]
    pub slow_read_rate: u32,
    /// Receive buffer of a slow reader, bytes.
    #[arg(long, default_value_t = 4096)]
    pub slow_rcvbuf: usize,
    /// How long a slow reader stays slow; then it reads the rest at full speed to see how the
    /// server ended it (a close code, or the connection still open), and reconnects.
    #[arg(long, value_parser = duration, default_value = "20s")]
    pub slow_for: Duration,
    /// A feeder for the slow readers: connect here and send --feed-text at --feed-rate (e.g.
    /// ws://host/ws with a publish to the channel the slow readers' /raw URL names).
    #[arg(long)]
    pub feed_url: Option<String>,
    /// The feeder's text message; `{pad}` is replaced by --feed-pad bytes of padding.
    #[arg(long, default_value = "{pad}")]
    pub feed_text: String,
    /// Bytes of padding in each fed message.
    #[arg(long, default_value_t = 16384)]
    pub feed_pad: usize,
    /// Fed messages per second.
    #[arg(long, default_value_t = 50.0)]
    pub feed_rate: f64,
    /// Where bad frames go (any WebSocket path).
    #[arg(long, default_value = "ws://127.0.0.1:8080/echo")]
    pub bad_url: String,
    /// Bad-frame connections per second (0: none).
    #[arg(long, default_value_t = 2.0)]
    pub bad_rate: f64,
    /// How long to go on.
    #[arg(long, value_parser = duration, default_value = "10s")]
    pub duration: Duration,
    /// Write the outcome as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}
