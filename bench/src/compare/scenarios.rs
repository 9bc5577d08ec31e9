//! The scenarios of the comparison (issue list: echo, fan-out, connection storm, idle memory),
//! as loadgen command lines, and which figures of loadgen's JSON each one reports.

use std::io;

use serde_json::Value;

/// One row group of the results table.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Short id used in flags and file names.
    pub id: &'static str,
    /// What it measures, for the report.
    pub title: &'static str,
    /// Request path on the server (`/echo` or `/broadcast`).
    pub path: &'static str,
    /// loadgen subcommand and its arguments (without `--url`, `--json`, timing and pinning).
    pub loadgen_args: Vec<String>,
    /// The figures reported; the first is the headline drawn in the chart.
    pub metrics: &'static [Metric],
    /// Pass the server's PID to loadgen (memory and CPU from /proc).
    pub needs_server_pid: bool,
}

/// One figure taken from loadgen's JSON report (the `Report` of `loadgen/src/report/mod.rs`).
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    /// Key in tables and the chart.
    pub key: &'static str,
    /// Unit as printed.
    pub unit: &'static str,
    /// Whether more is better (throughput) or worse (latency, memory).
    pub higher_is_better: bool,
    /// JSON pointer to the figure.
    pub pointer: &'static str,
    /// Factor applied to the JSON value (ns to us).
    pub scale: f64,
    /// Computes the figure when the pointer holds no number.
    pub derive: Option<fn(&Value) -> Option<f64>>,
}

const fn metric(
    key: &'static str,
    unit: &'static str,
    higher_is_better: bool,
    pointer: &'static str,
) -> Metric {
    Metric {
        key,
        unit,
        higher_is_better,
        pointer,
        scale: 1.0,
        derive: None,
    }
}

/// A latency percentile: loadgen reports ns, the tables show us.
const fn latency(key: &'static str, pointer: &'static str) -> Metric {
    Metric {
        scale: 1e-3,
        ..metric(key, "us", false, pointer)
    }
}

const MESSAGES_PER_S: Metric = metric("msg/s", "msg/s", true, "/results/receive_rate");
const DELIVERIES_PER_S: Metric = metric("deliveries/s", "msg/s", true, "/results/receive_rate");
const P50: Metric = latency("p50", "/results/latency/p50");
const P99: Metric = latency("p99", "/results/latency/p99");
const P999: Metric = latency("p99.9", "/results/latency/p999");
const LOST: Metric = metric("lost", "msgs", false, "/results/delivery/lost");
const CONNECTS_PER_S: Metric = Metric {
    derive: Some(connects_per_second),
    ..metric("connections/s", "conn/s", true, "/results/connect_rate")
};
const CONNECT_P99: Metric = latency("handshake p99", "/results/connect_latency/p99");
const RSS_PER_CONN: Metric = metric(
    "RSS/conn",
    "bytes",
    false,
    "/results/server/rss_per_connection_bytes",
);

/// Handshakes completed over the seconds loadgen spent in its connect phase (whole seconds of
/// its per-second series, so at least one): a floor on the real rate until loadgen reports it.
fn connects_per_second(report: &Value) -> Option<f64> {
    let connected = report.pointer("/results/all/connected")?.as_f64()?;
    let series = report.pointer("/series")?.as_array()?;
    let seconds = series
        .iter()
        .filter(|point| point.get("phase").and_then(Value::as_str) == Some("connect"))
        .count()
        .max(1);
    Some(connected / seconds as f64)
}

/// Every scenario.
pub fn all() -> Vec<Scenario> {
    let echo = |id, title, connections: u32, in_flight: u32, size: usize| Scenario {
        id,
        title,
        path: "/echo",
        loadgen_args: args(&[
            "echo",
            "-c",
            &connections.to_string(),
            "-w",
            &in_flight.to_string(),
            "-s",
            &size.to_string(),
        ]),
        metrics: &[MESSAGES_PER_S, P50, P99, P999],
        needs_server_pid: false,
    };
    // Publish rates chosen so both sizes ask for 200,000 deliveries/s: enough to load every
    // server here, low enough for one loadgen core to keep time.
    let fanout = |id, title, subscribers: u32, rate: u32| Scenario {
        id,
        title,
        path: "/broadcast",
        loadgen_args: args(&[
            "fanout",
            "--adapter",
            "pub",
            "--subscribers",
            &subscribers.to_string(),
            "--publishers",
            "1",
            "--rate",
            &rate.to_string(),
            "-s",
            "64",
        ]),
        metrics: &[DELIVERIES_PER_S, P50, P99, P999, LOST],
        needs_server_pid: false,
    };
    let idle = |id, title, connections: u32| Scenario {
        id,
        title,
        path: "/echo",
        // Past ~28,000 connections one source address runs out of ports.
        loadgen_args: args(&[
            "idle",
            "-c",
            &connections.to_string(),
            "--source",
            "127.0.0.1-127.0.0.8",
        ]),
        metrics: &[RSS_PER_CONN],
        needs_server_pid: true,
    };
    vec![
        echo(
            "echo-32b-w1",
            "echo, 100 connections x 32 B, 1 in flight",
            100,
            1,
            32,
        ),
        echo(
            "echo-32b-w16",
            "echo, 100 connections x 32 B, 16 in flight",
            100,
            16,
            32,
        ),
        echo(
            "echo-16kib",
            "echo, 10 connections x 16 KiB, 1 in flight",
            10,
            1,
            16 * 1024,
        ),
        fanout(
            "fanout-1k",
            "fan-out to 1,000 subscribers, 64 B, 200 publishes/s",
            1_000,
            200,
        ),
        fanout(
            "fanout-10k",
            "fan-out to 10,000 subscribers, 64 B, 20 publishes/s",
            10_000,
            20,
        ),
        Scenario {
            id: "connect",
            title: "connection storm: 10,000 handshakes as fast as accepted",
            path: "/echo",
            loadgen_args: args(&["connect", "-c", "10000", "--rate", "0"]),
            metrics: &[CONNECTS_PER_S, CONNECT_P99],
            needs_server_pid: false,
        },
        idle("idle-10k", "idle memory, 10,000 connections", 10_000),
        idle("idle-50k", "idle memory, 50,000 connections", 50_000),
    ]
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

impl Scenario {
    /// The scenario's figures from one loadgen report; an error names what is missing.
    pub fn metrics(&self, report: &Value) -> io::Result<Vec<(&'static str, f64)>> {
        self.metrics
            .iter()
            .map(|metric| {
                report
                    .pointer(metric.pointer)
                    .and_then(Value::as_f64)
                    .map(|value| value * metric.scale)
                    .or_else(|| metric.derive.and_then(|derive| derive(report)))
                    .map(|value| (metric.key, value))
                    .ok_or_else(|| {
                        io::Error::other(format!(
                            "loadgen report has no {} (at {})",
                            metric.key, metric.pointer
                        ))
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_read_from_the_first_pointer_that_holds_a_number() {
        let echo = all().into_iter().find(|s| s.id == "echo-32b-w1").unwrap();
        let report = serde_json::json!({ "results": {
            "receive_rate": 1000.0,
            "latency": { "p50": 2000, "p99": 9000, "p999": 15000 }
        }});
        let values = echo.metrics(&report).unwrap();
        assert_eq!(
            values,
            vec![
                ("msg/s", 1000.0),
                ("p50", 2.0),
                ("p99", 9.0),
                ("p99.9", 15.0)
            ]
        );
        let err = echo.metrics(&serde_json::json!({})).unwrap_err();
        assert!(err.to_string().contains("msg/s"), "{err}");
    }

    #[test]
    fn connection_rate_falls_back_to_the_connect_phase_of_the_series() {
        let connect = all().into_iter().find(|s| s.id == "connect").unwrap();
        let report = serde_json::json!({
            "results": { "all": { "connected": 10000 }, "connect_latency": { "p99": 5000 } },
            "series": [{ "phase": "connect" }, { "phase": "connect" }, { "phase": "drain" }]
        });
        let values = connect.metrics(&report).unwrap();
        assert_eq!(
            values,
            vec![("connections/s", 5000.0), ("handshake p99", 5.0)]
        );
    }

    #[test]
    fn scenario_ids_are_unique() {
        let mut ids: Vec<_> = all().iter().map(|s| s.id).collect();
        let count = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), count);
    }
}
