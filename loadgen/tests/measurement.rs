//! Measurement is trustworthy: coordinated omission is corrected, merged results equal the sum of
//! their histograms, thresholds fail the exit code, and errors are clear.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::{loadgen, loadgen_json, merge_json, num, temp_dir, Mode, Server};
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;

fn hist(v: &serde_json::Value, pointer: &str) -> Histogram<u64> {
    let b64 = v.pointer(pointer).and_then(|h| h.as_str()).unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .unwrap()
}

#[test]
fn open_loop_p99_shows_a_one_second_stall_that_closed_loop_hides() {
    let stall = Mode::StallOnce {
        after: 300,
        stall: Duration::from_secs(1),
    };
    let dir = temp_dir("co");
    // Open loop: 500 msg/s for 3 s; the messages due during the stall wait for it, and their
    // latency counts from when they were due, so a third of all samples are 0..1 s late.
    let server = Server::start(stall);
    let url = server.url("/echo");
    let open = loadgen_json(
        &[
            "echo",
            "--url",
            &url,
            "-c",
            "1",
            "--rate",
            "500",
            "--warmup",
            "0s",
            "--duration",
            "3s",
        ],
        &dir.join("open.json"),
    );
    let p99 = num(&open, "/results/latency/p99");
    assert!(
        p99 >= 900_000_000,
        "open-loop p99 {p99} ns does not show the 1 s stall"
    );
    assert_eq!(
        num(&open, "/results/all/received"),
        num(&open, "/results/all/sent")
    );
    // Closed loop: one message in flight; the stall delays a single sample, which p99 hides.
    let server = Server::start(stall);
    let url = server.url("/echo");
    let closed = loadgen_json(
        &[
            "echo",
            "--url",
            &url,
            "-c",
            "1",
            "-w",
            "1",
            "--warmup",
            "0s",
            "--duration",
            "3s",
        ],
        &dir.join("closed.json"),
    );
    let max = num(&closed, "/results/latency/max");
    let p99 = num(&closed, "/results/latency/p99");
    assert!(
        max >= 990_000_000,
        "closed-loop max {max} ns misses the stall"
    );
    assert!(
        p99 < 100_000_000,
        "closed-loop p99 {p99} ns should hide the stall"
    );
}

#[test]
fn merge_adds_histograms_and_counts() {
    let server = Server::start(Mode::Echo);
    let url = server.url("/echo");
    let dir = temp_dir("merge");
    let (a, b, m) = (dir.join("a.json"), dir.join("b.json"), dir.join("m.json"));
    let args = [
        "echo",
        "--url",
        &url,
        "-c",
        "4",
        "--rate",
        "400",
        "--warmup",
        "0s",
        "--duration",
        "1s",
    ];
    let ra = loadgen_json(&args, &a);
    let rb = loadgen_json(&args, &b);
    let rm = merge_json(&[&a, &b], &m);
    for p in [
        "/results/all/sent",
        "/results/all/received",
        "/results/window/received",
    ] {
        assert_eq!(num(&rm, p), num(&ra, p) + num(&rb, p), "{p}");
    }
    let mut both = hist(&ra, "/histograms/latency");
    both.add(hist(&rb, "/histograms/latency")).unwrap();
    let merged = hist(&rm, "/histograms/latency");
    assert_eq!(merged.len(), both.len());
    assert_eq!(num(&rm, "/results/latency/count"), both.len());
    for (name, q) in [("p50", 0.5), ("p99", 0.99), ("p999", 0.999)] {
        assert_eq!(
            num(&rm, &format!("/results/latency/{name}")),
            both.value_at_quantile(q),
            "{name}"
        );
    }
    assert_eq!(num(&rm, "/results/latency/max"), both.max());
    assert_eq!(num(&rm, "/results/processes"), 2);
}

#[test]
fn a_failed_threshold_exits_with_3_and_a_met_one_with_0() {
    let server = Server::start(Mode::Echo);
    let url = server.url("/echo");
    let base = [
        "echo",
        "--url",
        &url,
        "-c",
        "2",
        "--warmup",
        "0s",
        "--duration",
        "300ms",
        "--quiet",
    ];
    let mut fail = base.to_vec();
    fail.extend(["--expect", "p99<1ns,loss=0"]);
    let out = loadgen(&fail);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("threshold failed: p99<1ns"));
    let mut pass = base.to_vec();
    pass.extend(["--expect", "p99<10s,loss=0,rate>1"]);
    let out = loadgen(&pass);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn errors_name_the_problem() {
    let out = loadgen(&["echo", "--url", "http://127.0.0.1/echo"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid URL"));

    // A port nothing listens on: take one and free it.
    let port = test_support::free_port();
    let url = format!("ws://127.0.0.1:{port}/echo");
    let out = loadgen(&["echo", "--url", &url, "-c", "2", "--quiet"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused"), "{err}");

    let server = Server::start(Mode::NotFound);
    let url = server.url("/echo");
    let out = loadgen(&["connect", "--url", &url, "-c", "2", "--quiet"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a WebSocket server") && err.contains("HTTP 404"),
        "{err}"
    );

    let out = loadgen(&[
        "connect",
        "--url",
        "ws://127.0.0.1:9/",
        "-c",
        "100000000",
        "--quiet",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("file descriptors") && err.contains("--processes"),
        "{err}"
    );
}

#[test]
fn processes_split_the_load_and_merge_their_results() {
    let server = Server::start(Mode::Echo);
    let url = server.url("/echo");
    let dir = temp_dir("processes");
    let r = loadgen_json(
        &[
            "echo",
            "--url",
            &url,
            "-c",
            "7",
            "--rate",
            "300",
            "--processes",
            "2",
            "--warmup",
            "0s",
            "--duration",
            "1s",
        ],
        &dir.join("r.json"),
    );
    assert_eq!(num(&r, "/results/processes"), 2);
    assert_eq!(num(&r, "/results/all/connected"), 7);
    let sent = num(&r, "/results/all/sent");
    assert!((296..=300).contains(&sent), "sent {sent}");
    assert_eq!(num(&r, "/results/all/received"), sent);
    let out = loadgen(&["fanout", "--url", &url, "--processes", "2", "--quiet"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs at least 2 channels"));
}

/// A Prometheus text endpoint whose counter grows by one per scrape.
fn metrics_server() -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().take(4).enumerate() {
            let Ok(mut s) = stream else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let body = format!(
                "# TYPE demo_total counter\ndemo_total{{shard=\"0\"}} {}\ngauge 7\n",
                10 * n
            );
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}/metrics")
}

#[test]
fn server_figures_series_and_hdr_log_are_written() {
    let server = Server::start(Mode::Echo);
    let url = server.url("/echo");
    let dir = temp_dir("figures");
    let log = dir.join("latency.hlog");
    let metrics = metrics_server();
    let pid = std::process::id().to_string();
    let r = loadgen_json(
        &[
            "echo",
            "--url",
            &url,
            "-c",
            "4",
            "--rate",
            "200",
            "--warmup",
            "1s",
            "--duration",
            "1s",
            "--server-pid",
            &pid,
            "--server-metrics",
            &metrics,
            "--hdr-log",
            log.to_str().unwrap(),
        ],
        &dir.join("r.json"),
    );
    let delta = r.pointer("/results/server/metrics_delta/demo_total{shard=\"0\"}");
    assert_eq!(delta.and_then(|v| v.as_f64()), Some(10.0));
    assert!(r.pointer("/results/server/metrics_after/gauge").is_some());
    assert!(num(&r, "/results/server/rss_bytes") > 0);
    let series = r.pointer("/series").and_then(|s| s.as_array()).unwrap();
    let phases: Vec<&str> = series.iter().filter_map(|p| p["phase"].as_str()).collect();
    assert!(
        phases.contains(&"warmup") && phases.contains(&"run"),
        "{phases:?}"
    );
    let per_second = r
        .pointer("/histograms/latency_per_second")
        .and_then(|s| s.as_array())
        .unwrap();
    assert_eq!(per_second.len(), series.len());
    assert!(r
        .pointer("/machines/0/sysctls/net.core.somaxconn")
        .is_some());
    assert!(
        r.pointer("/results/connect_rate")
            .and_then(|v| v.as_f64())
            .unwrap()
            > 0.0
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("#[StartTime:"), "{text}");
    let intervals = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('"'))
        .count();
    assert_eq!(intervals, series.len());
}

/// A float at a JSON pointer.
fn float(v: &serde_json::Value, pointer: &str) -> f64 {
    v.pointer(pointer)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or_else(|| panic!("{pointer} missing in result"))
}

fn close_to(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 + 1e-6 * b.abs()
}

#[test]
fn own_cpu_per_message_is_reported_next_to_the_servers_and_merges_from_totals() {
    // The in-test server runs in this process, so its CPU is this process's.
    let server = Server::start(Mode::Echo);
    let url = server.url("/echo");
    let dir = temp_dir("own-cpu");
    let (a, m) = (dir.join("a.json"), dir.join("m.json"));
    let pid = std::process::id().to_string();
    let out = loadgen(&[
        "echo",
        "--url",
        &url,
        "-c",
        "4",
        "-w",
        "4",
        "--warmup",
        "200ms",
        "--duration",
        "1s",
        "--server-pid",
        &pid,
        "--json",
        a.to_str().unwrap(),
        "--quiet",
        "--no-pin",
        "--threads",
        "1",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&a).unwrap()).unwrap();
    let received = num(&r, "/results/window/received") as f64;
    let client_s = float(&r, "/results/client_cpu/cpu_s");
    let server_s = float(&r, "/results/server/cpu_s");
    assert!(received > 0.0 && client_s > 0.0 && server_s > 0.0, "{r}");
    let per_msg = float(&r, "/results/client_cpu/cpu_us_per_message");
    assert!(close_to(per_msg, client_s * 1e6 / received), "{per_msg}");
    let ratio = float(&r, "/results/client_cpu/cpu_ratio_to_server");
    assert!(close_to(ratio, client_s / server_s), "{ratio}");
    // The server's figure is over the same messages, so the ratio is also theirs.
    let server_per_msg = float(&r, "/results/server/cpu_us_per_message");
    assert!(close_to(ratio, per_msg / server_per_msg), "{ratio}");
    // Echo over loopback spends time in the kernel on both ends: each part is some of the whole.
    let client_sys = float(&r, "/results/client_cpu/system_s");
    let server_sys = float(&r, "/results/server/system_s");
    assert!(
        client_sys > 0.0 && client_sys <= client_s,
        "{client_sys} of {client_s}"
    );
    assert!(
        server_sys > 0.0 && server_sys <= server_s,
        "{server_sys} of {server_s}"
    );
    let line = text
        .lines()
        .find(|l| l.contains("loadgen cost"))
        .unwrap_or_else(|| panic!("no cost line in:\n{text}"));
    let kernel = format!("{:.0}% of it in the kernel", client_sys / client_s * 100.0);
    assert!(
        line.contains(&format!("{per_msg:.3} us CPU per message"))
            && line.contains(&format!("({ratio:.2}x the server's CPU)"))
            && line.contains(&kernel),
        "{line}"
    );
    let server_line = text
        .lines()
        .find(|l| l.contains("server cpu"))
        .unwrap_or_else(|| panic!("no server cpu line in:\n{text}"));
    let kernel = format!("{:.0}% in the kernel", server_sys / server_s * 100.0);
    assert!(server_line.contains(&kernel), "{server_line}");

    // Merged: every process's CPU over every process's messages; the server's CPU is shared
    // (the windows overlap), so two copies of one run cost twice the server's.
    let rm = merge_json(&[&a, &a], &m);
    let merged_per_msg = float(&rm, "/results/client_cpu/cpu_us_per_message");
    assert!(close_to(merged_per_msg, per_msg), "{merged_per_msg}");
    let merged_ratio = float(&rm, "/results/client_cpu/cpu_ratio_to_server");
    assert!(close_to(merged_ratio, 2.0 * ratio), "{merged_ratio}");
    let merged_sys = float(&rm, "/results/client_cpu/system_s");
    assert!(close_to(merged_sys, 2.0 * client_sys), "{merged_sys}");
    let merged_server_sys = float(&rm, "/results/server/system_s");
    assert!(
        close_to(merged_server_sys, server_sys),
        "{merged_server_sys}"
    );
}

#[test]
fn capacity_steps_up_until_the_objective_is_missed() {
    let server = Server::start(Mode::Echo);
    let url = server.url("/echo");
    let dir = temp_dir("capacity");
    let json = dir.join("cap.json");
    let out = loadgen(&[
        "capacity",
        "--objective",
        "p99<10s,loss=0",
        "--vary",
        "rate",
        "--start",
        "100",
        "--factor",
        "2",
        "--max-steps",
        "2",
        "--server-cores",
        "1",
        "--json",
        json.to_str().unwrap(),
        "echo",
        "--url",
        &url,
        "-c",
        "2",
        "--warmup",
        "0s",
        "--duration",
        "500ms",
        "--quiet",
        "--no-pin",
        "--threads",
        "1",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains("one node with 1 core holds 2 connections"),
        "{summary}"
    );
    let cap: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let steps = cap["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[1]["value"].as_f64(), Some(200.0));
    assert_eq!(cap["knee"].as_u64(), Some(1));

    let out = loadgen(&[
        "capacity",
        "--objective",
        "p99<1ns",
        "--vary",
        "rate",
        "--start",
        "100",
        "--max-steps",
        "3",
        "echo",
        "--url",
        &url,
        "-c",
        "2",
        "--warmup",
        "0s",
        "--duration",
        "300ms",
        "--quiet",
        "--no-pin",
        "--threads",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("did not meet p99<1ns"));
}
