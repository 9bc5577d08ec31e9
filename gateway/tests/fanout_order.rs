//! Fan-out of bursts over real sockets: publishes that arrive back to back are fanned out as
//! runs (one shared buffer per subscriber), and every kind of subscriber still gets every
//! message exactly once, in publish order: plain `/broadcast`, `/broadcast` with
//! permessage-deflate (frame by frame, each compressed), `/ws` (JSON envelopes) and `/raw`
//! subscribers of two channels whose publishes interleave. One and two shards, so runs are
//! built both from a shard's own publishes and from another shard's queue. Run on either
//! driver (`GATEWAY_DRIVER=uring`).

mod common;

use std::time::Duration;

use serde_json::{json, Value};

use common::ws::{read_json, Ws};
use common::*;

/// Publishes per burst: enough for several runs of the largest size (64 KiB of frames).
const MESSAGES: usize = 3000;

/// The text of publish `i`: its number, padded so a burst spans several runs.
fn text(i: usize) -> String {
    format!("{i:05}:{}", "p".repeat(100))
}

fn broadcast(addr: std::net::SocketAddr) -> Client {
    let mut c = Client::connect(addr);
    let key = fresh_key();
    c.handshake_with_key("/broadcast", &key, &[])
        .assert_switching(&key);
    c
}

/// Every message on `/broadcast` of every kind, in order, from one burst.
fn burst_reaches_every_subscriber_once_in_order(threads: &str) {
    // Every message is worth compressing for the subscriber that negotiated it.
    let gw = gateway()
        .args(["--threads", threads, "--compression-threshold", "16"])
        .start();
    let addr = gw.addr();
    let mut plain: Vec<Client> = (0..4).map(|_| broadcast(addr)).collect();
    let (mut packed, _) = Client::open_deflate(addr, "/broadcast", "permessage-deflate");
    let mut json_sub = Ws::open(addr, "");
    json_sub.subscribe("broadcast");
    let mut publisher = broadcast(addr);

    // The whole burst in one write: the shards read it in a few large reads.
    let mut wire = Vec::new();
    for i in 0..MESSAGES {
        let frame = format!("pub:{}", text(i));
        wire.extend(publisher.frame_bytes(true, 0, op::TEXT, frame.as_bytes(), Some(KEY)));
    }
    publisher.send_raw(&wire);

    for (n, c) in plain.iter_mut().enumerate() {
        for i in 0..MESSAGES {
            let f = c.read_frame();
            assert_eq!(
                (f.opcode, String::from_utf8_lossy(&f.payload)),
                (op::TEXT, text(i).into()),
                "plain subscriber {n}, message {i}"
            );
        }
    }
    for i in 0..MESSAGES {
        let m = packed.read_message();
        assert_eq!(m.opcode, op::TEXT);
        assert!(m.compressed, "message {i} was not compressed");
        assert_eq!(String::from_utf8_lossy(&m.payload), text(i), "message {i}");
    }
    for i in 0..MESSAGES {
        let m = read_json(&mut json_sub.c);
        assert_eq!(
            (&m["type"], &m["channel"], &m["data"]),
            (&json!("message"), &json!("broadcast"), &json!(text(i))),
            "JSON subscriber, message {i}: {m}"
        );
    }
    // Exactly once: nothing follows, and the publisher does not get its own.
    for c in plain.iter_mut().chain([&mut publisher]) {
        c.expect_silence(Duration::from_millis(100));
    }
    let left = json_sub.sync();
    assert!(left.is_empty(), "more after the burst: {left:?}");
}

#[test]
fn a_burst_reaches_every_subscriber_once_in_order_on_one_shard() {
    burst_reaches_every_subscriber_once_in_order("1");
}

#[test]
fn a_burst_reaches_every_subscriber_once_in_order_across_two_shards() {
    burst_reaches_every_subscriber_once_in_order("2");
}

#[test]
fn interleaved_channels_keep_the_publish_order() {
    let gw = gateway().args(["--threads", "1"]).start();
    let addr = gw.addr();
    let raw = |query: &str| {
        let mut c = Client::connect(addr);
        let key = fresh_key();
        c.handshake_with_key(&format!("/raw?{query}"), &key, &[])
            .assert_switching(&key);
        c
    };
    let mut only_a = raw("channel=a");
    let mut only_b = raw("channel=b");
    let mut both = raw("channel=a&channel=b");
    let mut publisher = Ws::open(addr, "");

    // Runs of one channel of every length from 1 to 6, alternating, in one write.
    let mut order = Vec::new();
    for len in 1..=6 {
        for channel in ["a", "b"] {
            order.extend(std::iter::repeat_n(channel, len));
        }
    }
    let mut wire = Vec::new();
    for (i, channel) in order.iter().enumerate() {
        let publish = json!({"op":"publish","channel":channel,"data":i});
        let bytes = publish.to_string();
        wire.extend(
            publisher
                .c
                .frame_bytes(true, 0, op::TEXT, bytes.as_bytes(), Some(KEY)),
        );
    }
    publisher.c.send_raw(&wire);

    let want = |pick: &dyn Fn(&str) -> bool| -> Vec<String> {
        let picked = order.iter().enumerate().filter(|(_, c)| pick(c));
        picked.map(|(i, _)| i.to_string()).collect()
    };
    for (c, want) in [
        (&mut only_a, want(&|c| c == "a")),
        (&mut only_b, want(&|c| c == "b")),
        (&mut both, want(&|_| true)),
    ] {
        let got: Vec<String> = (0..want.len())
            .map(|_| String::from_utf8(c.read_frame().payload).unwrap())
            .collect();
        assert_eq!(got, want);
        c.expect_silence(Duration::from_millis(100));
    }
    let replies: Vec<Value> = publisher.sync();
    assert!(
        replies.iter().all(|r| r["type"] != "message"),
        "{replies:?}"
    );
}
