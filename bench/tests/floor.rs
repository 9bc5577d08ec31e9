//! `bench floor-client` end to end against a real server (the raw writer): it connects, runs
//! each shape for its window, counts what it receives exactly as the server sent it, and writes
//! the report fields `bench/loadgen-cost.sh` reads.

// Only the server half of the shared support is used here.
#[allow(dead_code)]
mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use support::Server;

fn raw_writer() -> Server {
    Server::start(env!("CARGO_BIN_EXE_peer-raw-writer"), &[], 1)
}

/// Run `bench floor-client ARGS --json OUT` and return the report.
fn floor(args: &[String], name: &str) -> Value {
    let out: PathBuf =
        std::env::temp_dir().join(format!("floor-{name}-{}.json", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_bench"))
        .arg("floor-client")
        .args(args)
        .arg("--json")
        .arg(&out)
        .status()
        .expect("run bench floor-client");
    assert!(status.success(), "bench floor-client {args:?} failed");
    let report = std::fs::read_to_string(&out).expect("report written");
    let _ = std::fs::remove_file(&out);
    serde_json::from_str(&report).expect("the report is JSON")
}

fn args(s: String) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

fn num(v: &Value, path: &[&str]) -> f64 {
    let mut v = v;
    for key in path {
        v = &v[key];
    }
    v.as_f64()
        .unwrap_or_else(|| panic!("{path:?} missing in {v}"))
}

#[test]
fn echo_keeps_its_window_of_messages_in_flight_and_reports_both_processes() {
    let server = raw_writer();
    let (connections, in_flight) = (3, 4);
    let report = floor(
        &args(format!(
            "echo --url ws://{}/echo -c {connections} -w {in_flight} -s 32 --warmup 200ms \
             --duration 1s --server-pid {}",
            server.addr,
            server.pid()
        )),
        "echo",
    );
    let sent = num(&report, &["results", "run", "sent"]);
    let received = num(&report, &["results", "run", "received"]);
    // A closed loop: every answer received was sent, and at most the window is out at once.
    assert!(received > 0.0, "nothing echoed: {report}");
    assert!(sent >= received, "received more than sent: {report}");
    assert!(
        sent - received <= (connections * in_flight) as f64,
        "more than the window in flight: {report}"
    );
    assert!(num(&report, &["results", "window", "received"]) > 0.0);
    assert!(num(&report, &["results", "receive_rate"]) > 0.0);
    assert!(num(&report, &["results", "window", "seconds"]) >= 0.9);
    let client_cpu = num(&report, &["results", "client_cpu", "cpu_s"]);
    assert!(num(&report, &["results", "client_cpu", "system_s"]) <= client_cpu);
    let server_cpu = num(&report, &["results", "server", "cpu_s"]);
    assert!(num(&report, &["results", "server", "system_s"]) <= server_cpu);
    server.terminate();
}

#[test]
fn fanout_counts_every_delivery_to_every_subscriber() {
    let server = raw_writer();
    let subscribers = 5.0;
    let report = floor(
        &args(format!(
            "fanout --url ws://{}/broadcast --adapter pub --subscribers 5 --publishers 1 \
             --rate 300 -s 64 --warmup 200ms --duration 1s",
            server.addr
        )),
        "fanout",
    );
    let sent = num(&report, &["results", "run", "sent"]);
    let received = num(&report, &["results", "run", "received"]);
    assert!(sent > 0.0, "nothing published: {report}");
    // Each publish reaches each subscriber once; the last few may still be on the way.
    assert!(
        received <= subscribers * sent,
        "more deliveries than publishes: {report}"
    );
    assert!(
        received >= subscribers * (sent - 30.0),
        "deliveries missing: {report}"
    );
    // Without --server-pid there is no server section.
    assert!(report["results"]["server"].is_null());
    server.terminate();
}

#[test]
fn a_server_that_refuses_the_upgrade_is_a_clear_failure() {
    // A plain HTTP server on loopback that answers every request with 404.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut request = Vec::new();
        let mut byte = [0u8; 1];
        while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
            request.push(byte[0]);
        }
        let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
    });
    let output = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["floor-client", "echo", "--url"])
        .arg(format!("ws://{addr}/echo"))
        .args(["--duration", "1s"])
        .output()
        .expect("run bench floor-client");
    server.join().expect("the 404 server ran");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("handshake refused: HTTP/1.1 404 Not Found"),
        "{stderr}"
    );
}
