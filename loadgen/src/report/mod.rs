//! The result of a run as data: what was asked (config), where (machine), what happened (results,
//! per-second series) and the histograms themselves, so results from several processes merge by
//! adding histograms. Renderers: [`table`] (terminal), [`html`] (SVG plots), [`hdrlog`]; [`soak`] draws a watched server's
//! samples (`loadgen watch`) with the same plots.

pub mod hdrlog;
pub mod html;
pub mod soak;
pub mod table;

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::stats::{Counters, Delivery, Failures, Percentiles};
use crate::sysinfo::Machine;
use crate::worker::meter::{FailureExamples, Storm};

/// One run (or several merged).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// loadgen version and the codec it used.
    pub versions: BTreeMap<String, String>,
    /// Scenario name.
    pub scenario: String,
    /// The command line of each process.
    pub commands: Vec<Vec<String>>,
    /// The scenario's configuration.
    pub config: serde_json::Value,
    /// Machines the load came from.
    pub machines: Vec<Machine>,
    /// Unix ms of the start (the earliest, when merged).
    pub started_unix_ms: u64,
    /// The figures.
    pub results: Results,
    /// One point per second since the start.
    pub series: Vec<Point>,
    /// Serialized histograms (HdrHistogram V2 deflate, base64).
    pub histograms: Histograms,
}

/// Serialized histograms.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Histograms {
    /// Message latency, measured window (ns).
    pub latency: String,
    /// Handshake latency, every connection (ns).
    pub connect: String,
    /// Lateness of open-loop sends behind their schedule (ns).
    #[serde(default)]
    pub send_lag: String,
    /// Message latency per second, same order as `series`.
    pub latency_per_second: Vec<String>,
}

/// The figures of a run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Results {
    /// Processes merged into this result.
    pub processes: u32,
    /// Client threads (sum over processes).
    pub threads: usize,
    /// Length of the measured window, s.
    pub measured_s: f64,
    /// Connections the plan opened in the connect phase.
    pub planned_connections: u64,
    /// Length of the connect phase: from the first planned connection's SYN (its connect call)
    /// to the last planned connection's 101, s.
    #[serde(alias = "connect_phase_s")]
    pub connect_phase_seconds: f64,
    /// Planned connections opened per second of the connect phase
    /// (`connect_phase_connections / connect_phase_seconds`).
    pub connect_rate: f64,
    /// Planned connections whose handshake completed.
    #[serde(default)]
    pub connect_phase_connections: u64,
    /// First SYN of the connect phase, ns since the Unix epoch (0: no connection opened).
    #[serde(default)]
    pub connect_phase_start_unix_ns: u64,
    /// Last 101 of the connect phase, ns since the Unix epoch (0: no connection opened).
    #[serde(default)]
    pub connect_phase_end_unix_ns: u64,
    /// Counts within the measured window (by intended send time).
    pub window: Counters,
    /// Counts over the whole run.
    pub all: Counters,
    /// Messages received per second in the measured window.
    pub receive_rate: f64,
    /// Messages sent per second in the measured window.
    pub send_rate: f64,
    /// Message latency (echo RTT or end-to-end delivery), from the intended send time.
    pub latency: Percentiles,
    /// Handshake latency (TCP connect to 101), from the intended connect time.
    pub connect_latency: Percentiles,
    /// How late open-loop sends left after their intended time: loadgen's own timeliness. A p99
    /// over a millisecond means the client could not keep its schedule (the latency figures
    /// still count from the intended time, so they stay honest, but the load was burstier).
    pub send_lag: Percentiles,
    /// Failures by reason.
    pub failures: Failures,
    /// A full message for each failure reason.
    pub failure_examples: FailureExamples,
    /// Echo: sent but never answered. Broadcast: see `delivery`.
    pub unanswered: u64,
    /// Delivery checks (fanout, chat).
    pub delivery: Option<Delivery>,
    /// Storm figures (churn with --storm).
    pub storm: Option<Storm>,
    /// Open-loop sends that found no open connection.
    pub unsent: u64,
    /// Connections open when the run phase started.
    pub open_at_run_start: u64,
    /// This tool's own CPU use.
    pub client_cpu: ClientCpu,
    /// The server's figures, when given --server-pid / --server-metrics.
    pub server: Option<Server>,
}

/// loadgen's own CPU use over the measured window (or the whole run when it has none).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ClientCpu {
    /// CPU seconds of the process.
    pub cpu_s: f64,
    /// The part of `cpu_s` spent in the kernel (system time): on loopback mostly the TCP path,
    /// which costs about as much on both ends of a connection.
    #[serde(default)]
    pub system_s: f64,
    /// Cores busy on average (cpu_s / wall s).
    pub cores_used: f64,
    /// Busiest client thread's share of its core.
    pub busiest_thread: f64,
    /// True when loadgen itself may have limited the result.
    pub saturated: bool,
    /// CPU microseconds (user + system, whole process) per message received in the measured
    /// window (echo replies, deliveries): loadgen's own cost per message, over the same window
    /// and the same messages as the server's `cpu_us_per_message`.
    #[serde(default)]
    pub cpu_us_per_message: f64,
    /// loadgen's CPU time over the server's in the same window (`--server-pid`; 0 without it).
    /// Below 1, one loadgen core drives more than one server core; at 0.5, twice as many.
    #[serde(default)]
    pub cpu_ratio_to_server: f64,
}

/// Server-side figures.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Server {
    /// Server PID (per process when merged).
    pub pid: Option<u32>,
    /// RSS before any connection, bytes.
    pub rss_baseline_bytes: u64,
    /// RSS after the warm-up, bytes.
    pub rss_bytes: u64,
    /// (RSS after warm-up - baseline) / open connections.
    pub rss_per_connection_bytes: f64,
    /// Server CPU seconds in the measured window.
    pub cpu_s: f64,
    /// The part of `cpu_s` spent in the kernel (system time; `/proc/PID/stat`, in clock
    /// ticks).
    #[serde(default)]
    pub system_s: f64,
    /// CPU microseconds per connection-second (window).
    pub cpu_us_per_connection_second: f64,
    /// CPU microseconds per message delivered to clients (window).
    pub cpu_us_per_message: f64,
    /// Metric deltas over the window from --server-metrics (after - before).
    pub metrics_delta: BTreeMap<String, f64>,
    /// Metric values at the end of the window.
    pub metrics_after: BTreeMap<String, f64>,
}

/// One second of the run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Point {
    /// Seconds since the start.
    pub t: u64,
    /// Phase: connect, warmup, run, drain.
    pub phase: String,
    /// Events in that second.
    pub counters: Counters,
    /// Open connections at its end.
    pub open: u64,
    /// Latency p50 of messages received in that second (ns).
    pub p50_ns: u64,
    /// Latency p99 (ns).
    pub p99_ns: u64,
    /// Handshake p99 in that second (ns).
    pub connect_p99_ns: u64,
}

impl Report {
    /// Write as pretty JSON.
    pub fn write_json(&self, path: &std::path::Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }

    /// Read a file written by [`Report::write_json`].
    pub fn read_json(path: &std::path::Path) -> Result<Report> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a loadgen result", path.display()))
    }
}

/// ns as a short human duration ("812us", "12.3ms", "1.20s").
pub fn fmt_ns(ns: u64) -> String {
    let n = ns as f64;
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{:.0}us", n / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2}ms", n / 1e6)
    } else {
        format!("{:.2}s", n / 1e9)
    }
}

/// A count with thousands separators.
pub fn fmt_count(v: f64) -> String {
    let s = format!("{:.0}", v);
    let (sign, digits) = s.split_at(if s.starts_with('-') { 1 } else { 0 });
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}
