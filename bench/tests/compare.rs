//! `bench compare` end to end with real peer servers and a stand-in for loadgen: each server
//! is started, pinned and stopped per run, the stand-in's JSON is read back, and RESULTS.md
//! shows medians, spreads and the runs that failed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A loadgen stand-in: completes a WebSocket handshake with the server it is pointed at (so a
/// server that is not listening fails the run), then writes a report. Publishing on
/// `/broadcast` fails on purpose, to check that failures are reported.
const FAKE_LOADGEN: &str = r#"#!/usr/bin/env python3
import json, socket, sys
args = sys.argv[1:]
url = args[args.index("--url") + 1]
out = args[args.index("--json") + 1]
host, rest = url[len("ws://"):].split("/", 1)
ip, port = host.rsplit(":", 1)
with socket.create_connection((ip, int(port)), timeout=5) as s:
    s.sendall(("GET /" + rest + " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    if not s.recv(4096).startswith(b"HTTP/1.1 101"):
        sys.exit("no 101")
if rest.startswith("broadcast"):
    sys.exit("fan-out refused by the stand-in")
report = {"results": {"receive_rate": 1000.0, "client_cpu": {"saturated": False},
                      "latency": {"p50": 20000, "p99": 90000, "p999": 150000}}}
json.dump(report, open(out, "w"))
"#;

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bench-compare-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_peer-raw-writer"))
        .parent()
        .expect("binaries have a directory")
        .to_path_buf()
}

#[test]
fn compare_runs_each_server_per_repetition_and_reports_medians_and_failures() {
    let dir = scratch_dir("run");
    let loadgen = dir.join("loadgen");
    std::fs::write(&loadgen, FAKE_LOADGEN).expect("write stand-in");
    std::fs::set_permissions(&loadgen, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let output = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["compare", "--no-build", "--reps", "2", "--threads", "1"])
        .args(["--servers", "raw-writer,tokio-tungstenite"])
        .args(["--scenarios", "echo-32b-w1,fanout-1k"])
        .arg("--bin-dir")
        .arg(bin_dir())
        .arg("--loadgen")
        .arg(&loadgen)
        .arg("--out")
        .arg(&dir)
        .env("CARGO_TARGET_DIR", &dir)
        .output()
        .expect("bench runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench compare failed:\n{stderr}");
    // 2 repetitions x 2 scenarios x 2 servers, alternating servers.
    assert!(
        stderr.contains("[8/8] rep 2 fanout-1k threads=1 raw-writer"),
        "{stderr}"
    );

    let md = std::fs::read_to_string(dir.join("RESULTS.md")).expect("RESULTS.md written");
    let row = |prefix: &str| {
        md.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no row starting {prefix:?} in\n{md}"))
            .to_owned()
    };
    assert_eq!(
        row("| 1 | msg/s"),
        "| 1 | msg/s (msg/s, higher is better) | 1000 ±0% | 1000 ±0% |"
    );
    assert_eq!(
        row("| 1 | p99 "),
        "| 1 | p99 (us, lower is better) | 90.0 ±0% | 90.0 ±0% |"
    );
    assert_eq!(
        row("| 1 | held deliveries/s"),
        "| 1 | held deliveries/s (msg/s, higher is better) | not run | not run |"
    );
    assert!(
        md.contains("- fanout-1k, 1 threads, raw-writer: loadgen exit status: 1: fan-out refused by the stand-in"),
        "{md}"
    );
    let svg = std::fs::read_to_string(dir.join("results/comparison.svg"))
        .expect("results/comparison.svg written");
    assert!(svg.starts_with("<svg") && svg.contains("raw-writer"));
    assert!(dir
        .join("compare-raw/echo-32b-w1-t1-raw-writer-r2.json")
        .is_file());
    let _ = std::fs::remove_dir_all(&dir);
}
