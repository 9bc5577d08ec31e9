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
    /// Connections held at once: each side needs that many open files.
    pub connections: u32,
    /// Run as a `loadgen capacity` search over the publish rate instead of one fixed load.
    pub capacity: Option<Capacity>,
    /// What clients speak: only servers that speak it run the scenario.
    pub protocol: Protocol,
}

/// The client protocol of a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `bench/PROTOCOL.md`: `/echo` and `/broadcast` with `pub:`.
    Bench,
    /// Socket.IO over WebSocket, loadgen's `--adapter socketio` convention.
    SocketIo,
}

/// A fixed offered load says nothing once every server meets it, so fan-out steps the publish
/// rate up until a step misses the objective and reports the last step that held.
#[derive(Clone, Copy, Debug)]
pub struct Capacity {
    /// Publish rate of the first step (publishes/s).
    pub start: f64,
    /// Each step multiplies the rate by this.
    pub factor: f64,
    /// Most steps tried.
    pub max_steps: u32,
    /// What a step must meet to count as held.
    pub objective: &'static str,
}

impl Capacity {
    /// loadgen arguments that go between `capacity` and the scenario's subcommand.
    pub fn loadgen_args(&self) -> Vec<String> {
        args(&[
            "--objective",
            self.objective,
            "--vary",
            "rate",
            "--start",
            &self.start.to_string(),
            "--factor",
            &self.factor.to_string(),
            "--max-steps",
            &self.max_steps.to_string(),
        ])
    }
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
    /// Where the figure comes from.
    pub source: Source,
    /// Factor applied to the JSON value (ns to us).
    pub scale: f64,
    /// A count that must be above zero for the figure to mean anything (percentiles of an
    /// empty histogram read 0): when it is zero the figure is left out, not reported as 0.
    pub needs_samples: Option<&'static str>,
    /// Left out, rather than failing the run, when the report lacks it (server figures, which
    /// loadgen gives only when it could read the server's /proc).
    pub optional: bool,
}

/// How a [`Metric`] is read.
#[derive(Clone, Copy, Debug)]
pub enum Source {
    /// A number at this JSON pointer.
    At(&'static str),
    /// Computed from the report.
    Computed(fn(&Value) -> Option<f64>),
}

const fn metric(
    key: &'static str,
    unit: &'static str,
    higher_is_better: bool,
    source: Source,
) -> Metric {
    Metric {
        key,
        unit,
        higher_is_better,
        source,
        scale: 1.0,
        needs_samples: None,
        optional: false,
    }
}

/// A message latency percentile: loadgen reports ns, the tables show us.
const fn latency(key: &'static str, pointer: &'static str) -> Metric {
    Metric {
        scale: 1e-3,
        needs_samples: Some("/results/latency/count"),
        ..metric(key, "us", false, Source::At(pointer))
    }
}

const MESSAGES_PER_S: Metric = metric("msg/s", "msg/s", true, Source::At("/results/receive_rate"));
/// What a fan-out step must meet to count as held.
const FANOUT_OBJECTIVE: &str = "p99<1s,loss=0";

const DELIVERIES_PER_S: Metric = metric(
    "held deliveries/s",
    "msg/s",
    true,
    Source::Computed(deliveries_per_second),
);
const P50: Metric = latency("p50", "/results/latency/p50");
const P99: Metric = latency("p99", "/results/latency/p99");
const P999: Metric = latency("p99.9", "/results/latency/p999");
const CONNECTS_PER_S: Metric = metric(
    "connections/s",
    "conn/s",
    true,
    Source::Computed(connects_per_second),
);
const CONNECT_P99: Metric = Metric {
    needs_samples: Some("/results/connect_latency/count"),
    ..latency("handshake p99", "/results/connect_latency/p99")
};
const CPU_PER_MESSAGE: Metric = Metric {
    needs_samples: Some("/results/window/received"),
    optional: true,
    ..metric(
        "server CPU/msg",
        "us",
        false,
        Source::At("/results/server/cpu_us_per_message"),
    )
};
const CPU_PER_CONNECTION_SECOND: Metric = Metric {
    optional: true,
    ..metric(
        "server CPU/conn/s",
        "us",
        false,
        Source::At("/results/server/cpu_us_per_connection_second"),
    )
};
const RSS_PER_CONN: Metric = metric(
    "RSS/conn",
    "bytes",
    false,
    Source::At("/results/server/rss_per_connection_bytes"),
);

/// Messages received per second while publishing ran, whenever they were published: the rate a
/// server actually delivered. loadgen's `receive_rate` counts only deliveries of messages
/// published in the measured window that arrived before the run ended, which is 0 for a server
/// that falls seconds behind; `lost` shows that backlog.
fn deliveries_per_second(report: &Value) -> Option<f64> {
    let series = report.pointer("/series")?.as_array()?;
    let received: Vec<f64> = series
        .iter()
        .filter(|point| point.get("phase").and_then(Value::as_str) == Some("run"))
        .filter_map(|point| point.pointer("/counters/received").and_then(Value::as_f64))
        .collect();
    if received.is_empty() {
        return None;
    }
    Some(received.iter().sum::<f64>() / received.len() as f64)
}

/// loadgen's connection rate when it reports one; otherwise handshakes completed over the
/// seconds of its connect phase (whole seconds of its per-second series, so a floor).
fn connects_per_second(report: &Value) -> Option<f64> {
    if let Some(rate) = report
        .pointer("/results/connect_rate")
        .and_then(Value::as_f64)
    {
        return Some(rate);
    }
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
        metrics: &[MESSAGES_PER_S, P50, P99, P999, CPU_PER_MESSAGE],
        connections,
        capacity: None,
        protocol: Protocol::Bench,
    };
    // Both sizes start at 200,000 deliveries/s and double up to 6.4 M/s (six steps): the
    // slowest servers miss the first step; the gateway and the raw writer hold 6.4 M/s with one
    // thread (bench/results/before-after.md), where one loadgen core still keeps time. A search
    // stops at its first miss, so the top steps cost only the servers that reach them.
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
        metrics: &[DELIVERIES_PER_S, P50, P99, P999, CPU_PER_MESSAGE],
        connections: subscribers + 1,
        capacity: Some(Capacity {
            start: f64::from(rate),
            factor: 2.0,
            max_steps: 6,
            objective: FANOUT_OBJECTIVE,
        }),
        protocol: Protocol::Bench,
    };
    // Idle connections are subscribers (`/broadcast`), as a push gateway's idle clients are: the
    // subscription is part of what an idle connection costs.
    let idle = |id, title, connections: u32| Scenario {
        id,
        title,
        path: "/broadcast",
        // Past ~28,000 connections one source address runs out of ports.
        loadgen_args: args(&[
            "idle",
            "-c",
            &connections.to_string(),
            "--source",
            "127.0.0.1-127.0.0.8",
        ]),
        metrics: &[RSS_PER_CONN, CPU_PER_CONNECTION_SECOND],
        connections,
        capacity: None,
        protocol: Protocol::Bench,
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
            "fan-out to 1,000 subscribers, 64 B: most deliveries/s held with p99 < 1 s and no loss",
            1_000,
            200,
        ),
        fanout(
            "fanout-10k",
            "fan-out to 10,000 subscribers, 64 B: most deliveries/s held with p99 < 1 s and no loss",
            10_000,
            20,
        ),
        Scenario {
            id: "connect",
            title: "connection storm: 10,000 handshakes as fast as accepted",
            path: "/echo",
            loadgen_args: args(&["connect", "-c", "10000", "--rate", "0"]),
            metrics: &[CONNECTS_PER_S, CONNECT_P99],
            connections: 10_000,
            capacity: None,
            protocol: Protocol::Bench,
        },
        idle("idle-10k", "idle memory, 10,000 subscribed connections", 10_000),
        idle("idle-50k", "idle memory, 50,000 subscribed connections", 50_000),
        // Socket.IO: every subscriber joins one room, the publisher emits to it.
        Scenario {
            id: "sio-fanout-1k",
            title: "Socket.IO fan-out to a room of 1,000 sockets, 64 B: most deliveries/s held \
                    with p99 < 1 s and no loss",
            path: "/socket.io/",
            loadgen_args: socketio_fanout(1_000, 200),
            metrics: &[DELIVERIES_PER_S, P50, P99, P999, CPU_PER_MESSAGE],
            connections: 1_001,
            capacity: Some(Capacity {
                start: 200.0,
                factor: 2.0,
                max_steps: 4,
                objective: FANOUT_OBJECTIVE,
            }),
            protocol: Protocol::SocketIo,
        },
        Scenario {
            id: "sio-fanout-10k",
            title: "Socket.IO fan-out to a room of 10,000 sockets, 64 B: most deliveries/s held \
                    with p99 < 1 s and no loss",
            path: "/socket.io/",
            loadgen_args: socketio_fanout(10_000, 20),
            metrics: &[DELIVERIES_PER_S, P50, P99, P999, CPU_PER_MESSAGE],
            connections: 10_001,
            capacity: Some(Capacity {
                start: 20.0,
                factor: 2.0,
                max_steps: 4,
                objective: FANOUT_OBJECTIVE,
            }),
            protocol: Protocol::SocketIo,
        },
        Scenario {
            id: "sio-idle-1k",
            title: "Socket.IO memory per idle socket: 1,000 sockets in a room, one message/s",
            path: "/socket.io/",
            loadgen_args: socketio_fanout(1_000, 1),
            metrics: &[RSS_PER_CONN],
            connections: 1_001,
            capacity: None,
            protocol: Protocol::SocketIo,
        },
        Scenario {
            id: "sio-idle-10k",
            title: "Socket.IO memory per idle socket: 10,000 sockets in a room, one message/s",
            path: "/socket.io/",
            loadgen_args: socketio_fanout(10_000, 1),
            metrics: &[RSS_PER_CONN],
            connections: 10_001,
            capacity: None,
            protocol: Protocol::SocketIo,
        },
    ]
}

/// loadgen's Socket.IO fan-out: `subscribers` sockets in one room, one publisher at `rate`.
fn socketio_fanout(subscribers: u32, rate: u32) -> Vec<String> {
    args(&[
        "fanout",
        "--adapter",
        "socketio",
        "--subscribers",
        &subscribers.to_string(),
        "--publishers",
        "1",
        "--rate",
        &rate.to_string(),
        "-s",
        "64",
    ])
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

impl Scenario {
    /// The scenario's figures from one loadgen report; an error names what is missing.
    pub fn metrics(&self, report: &Value) -> io::Result<Vec<(&'static str, f64)>> {
        let mut values = Vec::with_capacity(self.metrics.len());
        for metric in self.metrics {
            let samples = metric
                .needs_samples
                .map(|at| report.pointer(at).and_then(Value::as_f64));
            if samples == Some(Some(0.0)) {
                continue;
            }
            let value = match metric.source {
                Source::At(pointer) => report.pointer(pointer).and_then(Value::as_f64),
                Source::Computed(compute) => compute(report),
            };
            let Some(value) = value else {
                if metric.optional {
                    continue;
                }
                return Err(io::Error::other(format!(
                    "loadgen report has no {} ({:?})",
                    metric.key, metric.source
                )));
            };
            values.push((metric.key, value * metric.scale));
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_figures_are_read_from_the_report_and_server_ones_are_optional() {
        let echo = all().into_iter().find(|s| s.id == "echo-32b-w1").unwrap();
        let report = serde_json::json!({ "results": {
            "receive_rate": 1000.0,
            "latency": { "count": 5, "p50": 2000, "p99": 9000, "p999": 15000 }
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

        let with_server = serde_json::json!({ "results": {
            "receive_rate": 1000.0,
            "window": { "received": 3000 },
            "latency": { "count": 5, "p50": 2000, "p99": 9000, "p999": 15000 },
            "server": { "cpu_us_per_message": 1.5 }
        }});
        let values = echo.metrics(&with_server).unwrap();
        assert_eq!(values.last(), Some(&("server CPU/msg", 1.5)));
    }

    #[test]
    fn connection_rate_falls_back_to_the_connect_phase_of_the_series() {
        let connect = all().into_iter().find(|s| s.id == "connect").unwrap();
        let report = serde_json::json!({
            "results": { "all": { "connected": 10000 }, "connect_latency": { "count": 1, "p99": 5000 } },
            "series": [{ "phase": "connect" }, { "phase": "connect" }, { "phase": "drain" }]
        });
        let values = connect.metrics(&report).unwrap();
        assert_eq!(
            values,
            vec![("connections/s", 5000.0), ("handshake p99", 5.0)]
        );
    }

    #[test]
    fn fan_out_reports_the_delivered_rate_and_leaves_out_empty_percentiles() {
        let fanout = all().into_iter().find(|s| s.id == "fanout-1k").unwrap();
        // A server that fell behind: nothing published in the window arrived in time.
        let report = serde_json::json!({
            "results": {
                "receive_rate": 0.0,
                "latency": { "count": 0, "p50": 0, "p99": 0, "p999": 0 },
                "delivery": { "lost": 600000 }
            },
            "series": [
                { "phase": "connect", "counters": { "received": 5 } },
                { "phase": "run", "counters": { "received": 10000 } },
                { "phase": "run", "counters": { "received": 20000 } },
                { "phase": "drain", "counters": { "received": 90000 } }
            ]
        });
        let values = fanout.metrics(&report).unwrap();
        assert_eq!(values, vec![("held deliveries/s", 15000.0)]);
    }

    #[test]
    fn idle_connections_are_subscribers() {
        for id in ["idle-10k", "idle-50k"] {
            let idle = all().into_iter().find(|s| s.id == id).unwrap();
            assert_eq!(idle.path, "/broadcast", "{id}");
            assert_eq!(idle.loadgen_args.first().map(String::as_str), Some("idle"));
        }
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
