//! The soak's parts against the real gateway: `loadgen misbehave` (every bad frame closed with
//! its RFC 6455 code, a slow reader cut by the outbound limit) and `loadgen watch` (samples taken
//! while a load command runs, descriptors back to the baseline after it, the verdict in the exit
//! code and the JSON and HTML files).

mod common;

use test_support::{gateway_binary, Driver, Gateway};

use common::gateway::GatewayExt;
use common::{loadgen, temp_dir};

fn start_gateway() -> Gateway {
    Gateway::builder(gateway_binary())
        .default_driver(Driver::Auto)
        .threads(2)
        .args(["--max-outbound-bytes", "16384", "--log-level", "warn"])
        .start()
}

#[test]
fn misbehaving_clients_get_their_close_codes_and_a_slow_reader_is_cut() {
    let gw = start_gateway();
    let dir = temp_dir("misbehave");
    let json = dir.join("m.json");
    // The slow reader sits on a channel of its own, fed 16 KiB publishes from /ws, while the
    // bad-frame clients come and go on /echo.
    let out = loadgen(&[
        "misbehave",
        "--slow-url",
        &gw.url("/raw?channel=slow"),
        "--slow",
        "1",
        "--slow-read-rate",
        "64",
        "--slow-for",
        "2s",
        "--feed-url",
        &gw.url("/ws"),
        "--feed-text",
        r#"{"op":"publish","channel":"slow","data":"{pad}"}"#,
        "--feed-rate",
        "500",
        "--bad-url",
        &gw.url("/echo"),
        "--bad-rate",
        "10",
        "--duration",
        "3s",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(r["bad_wrong"], serde_json::json!({}), "{r}");
    let sent = r["bad_sent"].as_object().unwrap();
    assert_eq!(sent.len(), 6, "every fault was sent: {r}");
    assert!(
        r["slow_ended"]["4008"].as_u64().unwrap_or(0) >= 1,
        "the slow reader was closed for being slow: {r}"
    );
    assert!(gw.metric("gateway_slow_consumer_disconnects_total") >= 1);
}

#[test]
fn watch_samples_a_load_and_judges_descriptors() {
    let gw = start_gateway();
    let dir = temp_dir("watch");
    let (json, html) = (dir.join("w.json"), dir.join("w.html"));
    let pid = gw.pid().to_string();
    let url = gw.url("/echo");
    let lg = env!("CARGO_BIN_EXE_loadgen");
    let out = loadgen(&[
        "watch",
        "--server-pid",
        &pid,
        "--interval",
        "200ms",
        "--warmup",
        "0s",
        "--settle",
        "10s",
        "--json",
        json.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
        "--",
        lg,
        "echo",
        "--url",
        &url,
        "-c",
        "20",
        "--warmup",
        "0s",
        "--duration",
        "1500ms",
        "--quiet",
        "--no-pin",
        "--threads",
        "1",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("verdict  pass"), "{stdout}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let samples = r["samples"].as_array().unwrap();
    assert!(samples.len() >= 6, "{} samples", samples.len());
    // While loaded, the 20 connections were among the descriptors; after it, none is left.
    let loaded_fds = samples
        .iter()
        .filter(|s| s["loaded"] == true)
        .map(|s| s["fds"].as_u64().unwrap())
        .max()
        .unwrap();
    assert!(
        loaded_fds >= r["fds_baseline"].as_u64().unwrap() + 20,
        "{r}"
    );
    assert_eq!(r["fds_after"], r["fds_baseline"]);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("id=\"rss-over-time\"") && page.contains("soak report: pass"));

    // A load command that fails fails the watch (exit 3), with the reason.
    let out = loadgen(&[
        "watch",
        "--server-pid",
        &pid,
        "--interval",
        "200ms",
        "--warmup",
        "0s",
        "--",
        "false",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("the load command failed"));
}
