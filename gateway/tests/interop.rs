//! Interop with widely used clients: Python `websockets` and Node `ws` (installed by
//! `scripts/test.sh`) run the scripts in `tests/interop/` against a real gateway, and `curl`
//! sends plain upgrade requests. Each script exits 0 only if every echo, pong and the close
//! code matched.

mod common;

use std::process::Command;
use std::thread;
use std::time::Duration;

use common::{accept_key, run_bounded, Gateway, GatewayExt, SAMPLE_KEY};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

fn interop_dir() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop").to_string()
}

fn python_client(gw: &Gateway, offered: &str, expected: &str) {
    python_deflate(gw, offered, expected, "");
}

fn node_client(gw: &Gateway, offered: &str, expected: &str) {
    node_deflate(gw, offered, expected, "");
}

/// The Python client with a permessage-deflate mode (see `client.py`: "" the library's default
/// offer, required accepted; "off"; "declined"; or the offer's parameters).
fn python_deflate(gw: &Gateway, offered: &str, expected: &str, deflate: &str) {
    let mut cmd = Command::new("python3");
    cmd.arg(format!("{}/client.py", interop_dir()))
        .arg(format!("ws://{}/echo", gw.addr()))
        .arg(offered)
        .arg(expected)
        .arg(deflate);
    if !deflate.is_empty() {
        cmd.env("INTEROP_MAX_SIZE", "65536");
    }
    expect_ok(gw, cmd, &format!("python websockets (deflate {deflate:?})"));
}

/// The Node client with a permessage-deflate mode (see `client.js`).
fn node_deflate(gw: &Gateway, offered: &str, expected: &str, deflate: &str) {
    let mut cmd = Command::new("node");
    cmd.current_dir(interop_dir())
        .arg("client.js")
        .arg(format!("ws://{}/echo", gw.addr()))
        .arg(offered)
        .arg(expected)
        .arg(deflate);
    if !deflate.is_empty() {
        cmd.env("INTEROP_MAX_SIZE", "65536");
    }
    expect_ok(gw, cmd, &format!("node ws (deflate {deflate:?})"));
}

/// permessage-deflate offers covering every parameter both libraries can offer, alone and
/// combined (window bits 8 is left out: zlib refuses a raw window of 256 bytes on the
/// client's side).
const DEFLATE_OFFERS: [&str; 8] = [
    "server_no_context_takeover",
    "client_no_context_takeover",
    "server_max_window_bits=9",
    "server_max_window_bits=15",
    "client_max_window_bits",
    "client_max_window_bits=10",
    "server_no_context_takeover,client_no_context_takeover,server_max_window_bits=12,client_max_window_bits=12",
    "client_no_context_takeover,server_max_window_bits=10,client_max_window_bits",
];

#[test]
fn python_websockets_every_deflate_offer() {
    let gw = gateway();
    thread::scope(|s| {
        for deflate in DEFLATE_OFFERS {
            let gw = &gw;
            s.spawn(move || python_deflate(gw, "", "", deflate));
        }
    });
    python_deflate(&gw, "", "", "off");
}

#[test]
fn node_ws_every_deflate_offer() {
    let gw = gateway();
    thread::scope(|s| {
        for deflate in DEFLATE_OFFERS {
            let gw = &gw;
            s.spawn(move || node_deflate(gw, "", "", deflate));
        }
    });
    node_deflate(&gw, "", "", "off");
}

#[test]
fn compression_off_declines_both_clients() {
    let gw = common::gateway().args(["--compression", "off"]).start();
    python_deflate(&gw, "", "", "declined");
    node_deflate(&gw, "", "", "declined");
}

/// Run a client script against `gw`: it must exit 0 and print `ok`.
fn expect_ok(gw: &Gateway, cmd: Command, client: &str) {
    let (code, out, err) = run_bounded(cmd, SCRIPT_TIMEOUT);
    assert!(
        code == Some(0) && out.trim() == "ok",
        "{client} client failed (exit {code:?})\nstdout:\n{out}\nstderr:\n{err}\n\
         gateway stderr:\n{}",
        gw.stderr()
    );
}

fn gateway() -> Gateway {
    common::gateway()
        .args(["--subprotocols", "chat,superchat"])
        .start()
}

#[test]
fn python_websockets_without_subprotocol() {
    let gw = gateway();
    python_client(&gw, "", "");
    gw.assert_serves();
}

#[test]
fn python_websockets_with_subprotocol() {
    let gw = gateway();
    python_client(&gw, "chat", "chat");
    python_client(&gw, "foo,superchat,chat", "superchat");
    // No match: the connection still opens, without a subprotocol.
    python_client(&gw, "foo,bar", "");
}

#[test]
fn node_ws_without_subprotocol() {
    let gw = gateway();
    node_client(&gw, "", "");
    gw.assert_serves();
}

#[test]
fn node_ws_with_subprotocol() {
    let gw = gateway();
    node_client(&gw, "superchat", "superchat");
    node_client(&gw, "foo,chat,superchat", "chat");
}

#[test]
fn python_and_node_clients_at_once() {
    let gw = gateway();
    thread::scope(|s| {
        for i in 0..4 {
            let gw = &gw;
            s.spawn(move || {
                if i % 2 == 0 {
                    python_client(gw, "chat", "chat");
                } else {
                    node_client(gw, "superchat", "superchat");
                }
            });
        }
    });
}

/// `curl -i` with the given headers against `path`; returns (exit code, output). After a 101
/// curl keeps waiting on the upgraded connection, so `--max-time` bounds it (exit 28).
fn curl(gw: &Gateway, path: &str, headers: &[&str]) -> (Option<i32>, String) {
    let upgrade = headers
        .iter()
        .any(|h| h.starts_with("Sec-WebSocket-Version: 13"));
    let max_time = if upgrade { "1.5" } else { "5" };
    let mut cmd = Command::new("curl");
    cmd.args([
        "-i",
        "-sS",
        "--http1.1",
        "--noproxy",
        "*",
        "--max-time",
        max_time,
    ]);
    for h in headers {
        cmd.arg("-H").arg(h);
    }
    cmd.arg(format!("http://{}{path}", gw.addr()));
    let (code, out, err) = run_bounded(cmd, Duration::from_secs(20));
    (code, format!("{out}{err}"))
}

fn header_line<'a>(out: &'a str, name: &str) -> Option<&'a str> {
    out.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

const UPGRADE: [&str; 2] = ["Connection: Upgrade", "Upgrade: websocket"];

#[test]
fn curl_upgrade_gets_101() {
    let gw = gateway();
    let key = format!("Sec-WebSocket-Key: {SAMPLE_KEY}");
    let (code, out) = curl(
        &gw,
        "/echo",
        &[UPGRADE[0], UPGRADE[1], "Sec-WebSocket-Version: 13", &key],
    );
    // curl prints the 101 and then waits on the upgraded connection until --max-time (28).
    assert!(
        matches!(code, Some(0) | Some(28)),
        "curl exit {code:?}: {out}"
    );
    assert!(
        out.starts_with("HTTP/1.1 101"),
        "expected a 101 from curl, got:\n{out}"
    );
    assert_eq!(
        header_line(&out, "Sec-WebSocket-Accept"),
        Some(accept_key(SAMPLE_KEY).as_str()),
        "{out}"
    );
    assert_eq!(
        header_line(&out, "Sec-WebSocket-Accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    gw.assert_serves();
}

#[test]
fn curl_upgrade_with_subprotocol_gets_it() {
    let gw = gateway();
    let key = format!("Sec-WebSocket-Key: {SAMPLE_KEY}");
    let (_, out) = curl(
        &gw,
        "/echo",
        &[
            UPGRADE[0],
            UPGRADE[1],
            "Sec-WebSocket-Version: 13",
            &key,
            "Sec-WebSocket-Protocol: nope, superchat, chat",
        ],
    );
    assert!(out.starts_with("HTTP/1.1 101"), "{out}");
    assert_eq!(
        header_line(&out, "Sec-WebSocket-Protocol"),
        Some("superchat"),
        "{out}"
    );
}

#[test]
fn curl_upgrade_without_version_gets_426() {
    let gw = gateway();
    let key = format!("Sec-WebSocket-Key: {SAMPLE_KEY}");
    let (code, out) = curl(&gw, "/echo", &[UPGRADE[0], UPGRADE[1], &key]);
    assert_eq!(
        code,
        Some(0),
        "curl must finish: the error closes the connection\n{out}"
    );
    assert!(out.starts_with("HTTP/1.1 426"), "{out}");
    assert_eq!(
        header_line(&out, "Sec-WebSocket-Version"),
        Some("13"),
        "{out}"
    );
}

#[test]
fn curl_upgrade_with_bad_key_gets_400() {
    let gw = gateway();
    let (code, out) = curl(
        &gw,
        "/echo",
        &[
            UPGRADE[0],
            UPGRADE[1],
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Key: c2hvcnQ=",
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
}

#[test]
fn curl_plain_get_of_echo_gets_426_and_healthz_200() {
    let gw = gateway();
    let (code, out) = curl(&gw, "/echo", &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("HTTP/1.1 426"), "{out}");
    let (code, out) = curl(&gw, "/healthz", &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("\r\n\r\nok\n"), "{out:?}");
    let (code, out) = curl(&gw, "/nowhere", &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("HTTP/1.1 404"), "{out}");
}
