//! loadgen against the real gateway binary (two shards, so deliveries cross threads): every
//! scenario's counts must be exact, and must agree with the gateway's own counters.

mod common;

use common::gateway::{self, GatewayExt, API_KEY};
use common::{loadgen_json, num, temp_dir};

/// Exact delivery figures: every publish reached every subscriber once, in order.
fn assert_exact_delivery(r: &serde_json::Value, per_publish: u64) {
    let publishes = num(r, "/results/all/sent");
    assert!(publishes > 0, "nothing published");
    assert_eq!(
        num(r, "/results/delivery/expected"),
        per_publish * publishes
    );
    assert_eq!(num(r, "/results/delivery/unique"), per_publish * publishes);
    assert_eq!(num(r, "/results/all/received"), per_publish * publishes);
    for field in ["lost", "duplicated", "out_of_order", "foreign"] {
        assert_eq!(num(r, &format!("/results/delivery/{field}")), 0, "{field}");
    }
    let failures = r.pointer("/results/failures").unwrap();
    assert_eq!(failures, &serde_json::json!({}), "failures");
}

#[test]
fn echo_counts_match_the_gateways_own_counters() {
    let gw = gateway::start(2);
    let dir = temp_dir("gw-echo");
    let url = gw.url("/echo");
    let r = loadgen_json(
        &[
            "echo",
            "--url",
            &url,
            "-c",
            "16",
            "-w",
            "4",
            "-s",
            "100",
            "--warmup",
            "200ms",
            "--duration",
            "1s",
        ],
        &dir.join("r.json"),
    );
    let sent = num(&r, "/results/all/sent");
    assert!(sent > 100, "only {sent} sent");
    assert_eq!(num(&r, "/results/all/received"), sent);
    assert_eq!(num(&r, "/results/unanswered"), 0);
    assert_eq!(num(&r, "/results/all/connected"), 16);
    assert_eq!(num(&r, "/results/all/dropped"), 0);
    // Only loadgen talked to this gateway: it saw exactly what loadgen sent, and echoed it all.
    assert_eq!(gw.metric("gateway_messages_in_total"), sent);
    assert_eq!(gw.metric("gateway_messages_out_total"), sent);
    assert_eq!(gw.metric("gateway_upgrades_total"), 16);
}

#[test]
fn fanout_over_broadcast_reaches_every_other_connection_once() {
    let gw = gateway::start(2);
    let dir = temp_dir("gw-broadcast");
    let url = gw.url("/broadcast");
    let r = loadgen_json(
        &[
            "fanout",
            "--adapter",
            "pub",
            "--url",
            &url,
            "--subscribers",
            "40",
            "--publishers",
            "1",
            "--rate",
            "100",
            "--warmup",
            "0s",
            "--duration",
            "1s",
        ],
        &dir.join("r.json"),
    );
    let publishes = num(&r, "/results/all/sent");
    assert!((98..=100).contains(&publishes), "publishes {publishes}");
    // `/broadcast` skips the sender: each publish reaches the 40 subscribers.
    assert_exact_delivery(&r, 40);
    assert_eq!(gw.metric("gateway_publishes_total"), publishes);
}

#[test]
fn fanout_over_ws_and_raw_and_through_the_api_loses_nothing_across_shards() {
    let gw = gateway::start(2);
    let dir = temp_dir("gw-fanout");
    // The adapter picks the paths: `/raw?channel=..` for subscribers, `/ws` for publishers.
    let url = gw.url("/");
    let r = loadgen_json(
        &[
            "fanout",
            "--adapter",
            "gateway",
            "--url",
            &url,
            "--subscribers",
            "30",
            "--publishers",
            "3",
            "--channels",
            "3",
            "--rate",
            "150",
            "--warmup",
            "0s",
            "--duration",
            "1s",
        ],
        &dir.join("ws.json"),
    );
    let ws_publishes = num(&r, "/results/all/sent");
    assert!(
        (148..=150).contains(&ws_publishes),
        "publishes {ws_publishes}"
    );
    // 3 channels of 10 raw subscribers; publishers do not subscribe.
    assert_exact_delivery(&r, 10);

    let api = gw.api_url();
    let r = loadgen_json(
        &[
            "fanout",
            "--adapter",
            "gateway",
            "--url",
            &url,
            "--api-url",
            &api,
            "--api-key",
            API_KEY,
            "--subscribers",
            "30",
            "--publishers",
            "3",
            "--channels",
            "3",
            "--rate",
            "150",
            "--warmup",
            "0s",
            "--duration",
            "1s",
        ],
        &dir.join("api.json"),
    );
    let api_publishes = num(&r, "/results/all/sent");
    assert!(
        (148..=150).contains(&api_publishes),
        "publishes {api_publishes}"
    );
    assert_exact_delivery(&r, 10);
    assert_eq!(
        gw.metric("gateway_publishes_total"),
        ws_publishes + api_publishes
    );
}

#[test]
fn chat_rooms_on_ws_deliver_to_every_other_member() {
    let gw = gateway::start(2);
    let dir = temp_dir("gw-chat");
    let url = gw.url("/");
    let r = loadgen_json(
        &[
            "chat",
            "--adapter",
            "gateway",
            "--url",
            &url,
            "--users",
            "40",
            "--room-size",
            "8",
            "--msg-rate",
            "4",
            "--warmup",
            "0s",
            "--duration",
            "1s",
        ],
        &dir.join("r.json"),
    );
    let sent = num(&r, "/results/all/sent");
    assert!((158..=160).contains(&sent), "sent {sent}");
    // Rooms of 8, the sender skipped (skip_self): 7 deliveries per message.
    assert_exact_delivery(&r, 7);
    assert_eq!(num(&r, "/results/all/connected"), 40);
}

#[test]
fn connect_phase_runs_from_the_first_syn_to_the_last_101() {
    let gw = gateway::start(2);
    let dir = temp_dir("gw-connect");
    let url = gw.url("/echo");
    let r = loadgen_json(
        &["connect", "--url", &url, "-c", "200", "--rate", "1000"],
        &dir.join("r.json"),
    );
    assert_eq!(num(&r, "/results/all/connected"), 200);
    assert_eq!(num(&r, "/results/connect_phase_connections"), 200);
    let secs = r["results"]["connect_phase_seconds"].as_f64().unwrap();
    let rate = r["results"]["connect_rate"].as_f64().unwrap();
    let start = num(&r, "/results/connect_phase_start_unix_ns");
    let end = num(&r, "/results/connect_phase_end_unix_ns");
    assert_eq!((end - start) as f64 / 1e9, secs);
    assert!(
        (rate * secs - 200.0).abs() < 1e-6,
        "rate {rate} over {secs}s"
    );
    // Two client threads ramp 100 connections each at 500/s: the last is intended 198 ms after
    // its thread's first, so the phase cannot be shorter.
    assert!(secs >= 0.198, "connect phase {secs}s");
    assert_eq!(gw.metric("gateway_upgrades_total"), 200);
}

#[test]
fn deflate_echo_and_fanout_are_exact_and_compressed_on_the_wire() {
    let gw = gateway::start(2);
    let dir = temp_dir("gw-deflate");
    // Echo of 2 KiB chat-like messages, compressed both ways.
    let r = loadgen_json(
        &[
            "echo",
            "--deflate",
            "--url",
            &gw.url("/echo"),
            "-c",
            "8",
            "-w",
            "2",
            "-s",
            "2048",
            "--warmup",
            "0s",
            "--duration",
            "1s",
        ],
        &dir.join("echo.json"),
    );
    let sent = num(&r, "/results/all/sent");
    assert!(sent > 50, "only {sent} sent");
    assert_eq!(num(&r, "/results/all/received"), sent);
    assert_eq!(num(&r, "/results/unanswered"), 0);
    assert_eq!(gw.metric("gateway_messages_in_total"), sent);
    // Uncompressed, every echo would be 2,052 bytes each way (plus the handshakes).
    let (bytes_in, bytes_out) = (
        gw.metric("gateway_bytes_in_total"),
        gw.metric("gateway_bytes_out_total"),
    );
    assert!(bytes_out < sent * 2048 / 2, "out {bytes_out} for {sent}");
    assert!(bytes_in < sent * 2048 / 2, "in {bytes_in} for {sent}");

    // Broadcast of 2 KiB publishes to 20 subscribers: compressed once, delivered exactly.
    let before = gw.metric("gateway_bytes_out_total");
    let r = loadgen_json(
        &[
            "fanout",
            "--deflate",
            "--adapter",
            "pub",
            "--url",
            &gw.url("/broadcast"),
            "--subscribers",
            "20",
            "--publishers",
            "1",
            "-s",
            "2048",
            "--rate",
            "50",
            "--warmup",
            "0s",
            "--duration",
            "1s",
        ],
        &dir.join("fanout.json"),
    );
    assert_exact_delivery(&r, 20);
    let deliveries = 20 * num(&r, "/results/all/sent");
    let out = gw.metric("gateway_bytes_out_total") - before;
    assert!(out < deliveries * 2048 / 2, "out {out} for {deliveries}");
}

#[test]
fn socketio_fanout_and_chat_rooms_deliver_exactly_across_shards() {
    let gw = test_support::Gateway::builder(test_support::gateway_binary())
        .threads(2)
        .args([
            "--api-key",
            API_KEY,
            "--log-level",
            "warn",
            "--socketio-event",
            "loadgen=to-room-others",
        ])
        .start();
    let dir = temp_dir("gw-socketio");
    // The adapter picks the path: /socket.io/?EIO=4&transport=websocket.
    let url = gw.url("/");
    let r = loadgen_json(
        &[
            "fanout",
            "--adapter",
            "socketio",
            "--url",
            &url,
            "--subscribers",
            "30",
            "--publishers",
            "3",
            "--channels",
            "3",
            "--rate",
            "150",
            "--warmup",
            "0s",
            "--duration",
            "1s",
        ],
        &dir.join("fanout.json"),
    );
    // 3 rooms of 10 sockets; publishers are not in their room.
    assert_exact_delivery(&r, 10);
    let r = loadgen_json(
        &[
            "chat",
            "--adapter",
            "socketio",
            "--url",
            &url,
            "--users",
            "40",
            "--room-size",
            "8",
            "--msg-rate",
            "4",
            "--warmup",
            "0s",
            "--duration",
            "1s",
        ],
        &dir.join("chat.json"),
    );
    // Rooms of 8, the sender left out (to-room-others): 7 deliveries per message.
    assert_exact_delivery(&r, 7);
    assert_eq!(num(&r, "/results/all/connected"), 40);
}
