//! Log lines of a real gateway process: with `--log-format json` every stderr line is one JSON
//! object, and every line that reports a refusal or a close (target `gateway::connections`, on
//! with `--log-level info,gateway::connections=debug`) names the connection id, the remote
//! address (checked against the client socket's own address) and the reason.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use serde_json::Value;

use common::ws::Ws;
use common::*;

const CONN_LOG: &str = "info,gateway::connections=debug";

/// Stop the gateway and return its stderr lines once it has exited.
fn logs_after_exit(mut gw: Gateway) -> String {
    gw.terminate();
    assert!(gw.wait_exit(IO_TIMEOUT).is_some(), "no exit after SIGTERM");
    gw.stderr()
}

/// The JSON lines of `target`, each parsed; panics on any stderr line that is not JSON.
fn json_lines(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l:?}"))
        })
        .collect()
}

fn local(c: &Client) -> SocketAddr {
    c.stream().local_addr().expect("local address")
}

#[test]
fn json_lines_name_conn_remote_and_reason_for_every_refusal_and_close() {
    let gw = gateway()
        .args(["--log-format", "json", "--log-level", CONN_LOG])
        .args(["--threads", "2", "--max-connections", "2"])
        .start();
    let mut a = Ws::open(gw.addr(), "");
    let mut b = Ws::open(gw.addr(), "");
    let (a_addr, b_addr) = (local(&a.c), local(&b.c));

    // Over --max-connections: answered 503.
    let mut over = Client::connect(gw.addr());
    let over_addr = local(&over);
    over.send_raw(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(over.read_response().status, 503);
    drop(over);

    // B leaves cleanly (1000 echoed); then a request that is no upgrade is refused.
    b.c.close_cleanly();
    drop(b);
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut bad = loop {
        // B's slot is free once the server has dropped it.
        let mut c = Client::connect(gw.addr());
        c.send_raw(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n");
        let r = c.read_response();
        if r.status != 503 {
            assert_eq!(r.status, 426, "{r:?}");
            break c;
        }
        assert!(Instant::now() < deadline, "B's slot never freed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let bad_addr = local(&bad);
    bad.expect_tcp_closed();

    // A sends invalid UTF-8: closed with 1007.
    a.c.send_text(&[0xff, 0xfe]);
    a.c.expect_close(1007);
    a.c.finish_close(1007);
    let a_id = a.id.clone();
    drop(a);

    let stderr = logs_after_exit(gw);
    let lines = json_lines(&stderr);
    let conn_lines: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "gateway::connections")
        .collect();
    // Every refusal and close names the connection, the remote address and the reason.
    let mut remotes: HashMap<String, String> = HashMap::new();
    for l in &conn_lines {
        let msg = l["message"].as_str().unwrap_or_default();
        let conn = l["conn"].as_str().unwrap_or_else(|| panic!("no conn: {l}"));
        assert!(conn.parse::<u64>().is_ok(), "conn is a decimal id: {l}");
        let remote = l["remote"]
            .as_str()
            .unwrap_or_else(|| panic!("no remote: {l}"));
        assert!(
            remote.parse::<SocketAddr>().is_ok(),
            "remote is an address: {l}"
        );
        if msg.starts_with("refused") || msg == "closing" || msg == "closed" {
            let reason = l["reason"].as_str().unwrap_or_default();
            assert!(!reason.is_empty(), "no reason: {l}");
        }
        let seen = remotes.entry(conn.to_owned()).or_insert(remote.to_owned());
        assert_eq!(seen, remote, "one connection, one remote address: {l}");
    }
    let find = |msg: &str, remote: SocketAddr| -> &Value {
        conn_lines
            .iter()
            .find(|l| l["message"] == msg && l["remote"] == remote.to_string())
            .copied()
            .unwrap_or_else(|| panic!("no {msg:?} line for {remote}:\n{stderr}"))
    };
    assert_eq!(
        find("refused: over --max-connections (503)", over_addr)["reason"],
        "over_limit"
    );
    assert_eq!(find("refused: upgrade", bad_addr)["reason"], "bad_request");
    let b_closing = find("closing", b_addr);
    assert_eq!(b_closing["code"], 1000);
    let a_closing = find("closing", a_addr);
    assert_eq!(a_closing["code"], 1007);
    assert_eq!(a_closing["reason"], "invalid UTF-8");
    assert_eq!(
        a_closing["conn"], a_id,
        "the id the client was welcomed with"
    );
    for addr in [a_addr, b_addr, over_addr, bad_addr] {
        let closed = find("closed", addr);
        assert_eq!(closed["level"], "DEBUG");
    }
    // The process's own lines are JSON too (the startup and shutdown lines).
    assert!(lines.iter().any(|l| l["message"] == "stopped"), "{stderr}");
}

#[test]
fn text_lines_carry_the_same_fields() {
    let gw = gateway().args(["--log-level", CONN_LOG]).start();
    let mut c = Client::connect(gw.addr());
    let addr = local(&c);
    c.send_raw(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.read_response().status, 426);
    drop(c);
    let stderr = logs_after_exit(gw);
    let line = stderr
        .lines()
        .find(|l| l.contains("refused: upgrade"))
        .unwrap_or_else(|| panic!("no refusal line:\n{stderr}"));
    assert!(line.contains("gateway::connections"), "{line}");
    assert!(line.contains(&format!("remote={addr}")), "{line}");
    assert!(line.contains("reason=\"bad_request\""), "{line}");
    let conn = line
        .split_once(" conn=")
        .and_then(|(_, rest)| rest.split(' ').next())
        .and_then(|id| id.parse::<u64>().ok());
    assert!(conn.is_some(), "a decimal connection id: {line}");
    assert!(
        serde_json::from_str::<Value>(line).is_err(),
        "text, not JSON: {line}"
    );
}
