//! Socket.IO clients connect unchanged: the real `socket.io-client` 4.8 from npm
//! (`tests/socketio/node_modules`, installed by `scripts/test.sh`) runs its `node:test` suite
//! (`tests/socketio/*.test.mjs`) against a real gateway with two shards, so rooms, broadcasts and
//! private messages cross shards. Also: the Engine.IO handshake errors over plain HTTP.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_port, gateway, no_proxy, run_node_suite, Client, Gateway, Response};
use test_support::Process;

/// Bound for the whole Node run (each of its waits gives up after 5 s).
const NODE_TIMEOUT: Duration = Duration::from_secs(90);
const TOKEN_SECRET: &str = "socketio-test-secret";
const API_KEY: &str = "socketio-test-key";

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/socketio")
}

fn start() -> Gateway {
    gateway()
        .args([
            "--threads",
            "2",
            "--token-secret",
            TOKEN_SECRET,
            "--api-key",
            API_KEY,
            "--socketio-namespace",
            "/,/admin=token",
            "--socketio-event",
            "shout=broadcast-others",
            "--socketio-event",
            "ping=ack:{\"pong\":true}",
            "--socketio-event",
            "whisper=to-room-others",
        ])
        .start()
}

fn get(gw: &Gateway, target: &str) -> Response {
    let mut c = Client::connect(gw.addr());
    c.send_raw(format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes());
    c.read_response()
}

#[test]
fn socket_io_client_suite_passes() {
    let gw = start();
    let env = [
        ("GATEWAY_URL", format!("http://{}", gw.addr())),
        ("GATEWAY_API_URL", format!("http://{}", gw.api_addr())),
        ("GATEWAY_TOKEN_SECRET", TOKEN_SECRET.to_owned()),
        ("GATEWAY_API_KEY", API_KEY.to_owned()),
    ];
    run_node_suite(&gw, &suite_dir(), ".test.mjs", &env, NODE_TIMEOUT);

    let mut c = Client::connect(gw.api_addr());
    c.send_raw(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let text = String::from_utf8(c.read_response().body).expect("metrics text");
    let value = |series: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{series} in\n{text}"))
    };
    assert!(value("gateway_socketio_sessions_total") >= 20);
    assert!(value("gateway_socketio_connects_total{result=\"accepted\"}") >= 20);
    assert!(value("gateway_socketio_connects_total{result=\"refused\"}") >= 3);
    assert!(value("gateway_socketio_events_total{outcome=\"handled\"}") >= 10);
    assert!(value("gateway_socketio_events_total{outcome=\"dropped\"}") >= 2);
    // clients-polling.test.mjs: every session started over long-polling and upgraded.
    assert!(value("gateway_socketio_upgrades_total") >= 20);
    assert!(value("gateway_socketio_polling_requests_total{result=\"handled\"}") >= 60);
}

#[test]
fn engine_io_handshake_errors_are_json_400s() {
    let gw = start();
    for (target, code) in [
        ("/socket.io/?EIO=3&transport=websocket", 5),
        ("/socket.io/?transport=websocket", 5),
        ("/socket.io/?EIO=4&transport=carrier-pigeon", 0),
        ("/socket.io/?EIO=4", 0),
        ("/socket.io/?EIO=4&transport=websocket&sid=nope", 1),
    ] {
        let r = get(&gw, target);
        assert_eq!(r.status, 400, "{target}: {r:#?}");
        assert_eq!(
            r.header("Content-Type"),
            Some("application/json"),
            "{target}"
        );
        let body: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON body");
        assert_eq!(body["code"], code, "{target}: {body}");
        assert!(body["message"].is_string(), "{target}: {body}");
    }
}

#[test]
fn a_client_reconnects_after_a_gateway_restart() {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port())
        .parse()
        .expect("an address");
    let mut gw = gateway().listen(addr).start();
    let mut cmd = Command::new("node");
    cmd.current_dir(suite_dir())
        .arg("reconnect.mjs")
        .env("GATEWAY_URL", format!("http://{addr}"));
    no_proxy(&mut cmd);
    let node = Process::spawn(cmd);
    let deadline = Instant::now() + Duration::from_secs(20);
    let expect = |prefix: &str| -> String {
        let line = node.next_line(deadline).unwrap_or_else(|| {
            panic!(
                "no `{prefix}` from the client\nnode stderr:\n{}",
                node.stderr()
            )
        });
        assert!(line.starts_with(prefix), "want `{prefix}`, got `{line}`");
        line
    };
    let first = expect("connected ");
    gw.terminate();
    assert!(
        gw.wait_exit(Duration::from_secs(10)).is_some(),
        "the gateway stops"
    );
    expect("disconnected ");
    let _gw = gateway().listen(addr).start();
    let again = expect("reconnected ");
    assert_ne!(first[10..], again[12..], "a new session, a new socket id");
    expect("echo");
}

/// The npm package's browser builds, installed with the test clients.
fn client_dist() -> PathBuf {
    suite_dir().join("node_modules/socket.io-client/dist")
}

#[test]
fn socket_io_js_is_served_from_the_configured_folder_or_a_hint_is_given() {
    let gw = gateway()
        .arg("--socketio-client-dir")
        .arg(client_dist())
        .start();
    for name in ["socket.io.js", "socket.io.min.js", "socket.io.esm.min.js"] {
        let r = get(&gw, &format!("/socket.io/{name}"));
        assert_eq!(r.status, 200, "{name}");
        assert_eq!(
            r.header("Content-Type"),
            Some("text/javascript; charset=utf-8")
        );
        let on_disk = std::fs::read(client_dist().join(name)).expect("the package's file");
        assert_eq!(r.body, on_disk, "{name} is the package's file");
    }
    let plain = gateway().start();
    let r = get(&plain, "/socket.io/socket.io.js");
    assert_eq!(r.status, 404);
    assert!(
        String::from_utf8_lossy(&r.body).contains("--socketio-client-dir"),
        "a hint: {r:#?}"
    );
}

#[test]
fn the_classic_chat_page_runs_in_headless_chromium() {
    let gw = gateway()
        .args(["--threads", "2", "--socketio-client-dir"])
        .arg(client_dist())
        .start();
    let mut cmd = Command::new("node");
    cmd.current_dir(suite_dir())
        .arg("browser.mjs")
        .arg(format!("http://{}", gw.addr()));
    let (code, out, err) = common::run_bounded(cmd, Duration::from_secs(90));
    assert!(
        code == Some(0) && out.trim_end().ends_with("ok"),
        "browser run failed (exit {code:?})\nstdout:\n{out}\nstderr:\n{err}\n\
         gateway stderr:\n{}",
        gw.stderr()
    );
}

#[test]
fn conformance_suite_passes_over_websocket() {
    let gw = gateway()
        .args([
            "--threads",
            "2",
            "--token-secret",
            TOKEN_SECRET,
            "--socketio-namespace",
            "/,/admin=token",
            "--socketio-event",
            "shout=broadcast-others",
            "--socketio-event",
            "ping=ack:{\"pong\":true}",
            "--socketio-ping-interval",
            "300ms",
            "--socketio-ping-timeout",
            "200ms",
            "--socketio-connect-timeout",
            "500ms",
        ])
        .start();
    let env = [
        ("GATEWAY_URL", format!("http://{}", gw.addr())),
        ("GATEWAY_TOKEN_SECRET", TOKEN_SECRET.to_owned()),
    ];
    let dir = suite_dir().join("conformance");
    run_node_suite(&gw, &dir, ".test.mjs", &env, NODE_TIMEOUT);
}

/// Engine.IO over HTTP long-polling (`tests/socketio/polling/*.test.mjs`): the handshake,
/// batched and binary payloads, one GET at a time, the ping timeout, the upgrade with its probe,
/// CORS, maxPayload; plain HTTP requests and a bare WebSocket on a gateway with two shards.
#[test]
fn long_polling_conformance_suite_passes() {
    let gw = gateway()
        .args([
            "--threads",
            "2",
            "--socketio-event",
            "shout=broadcast-others",
            "--socketio-event",
            "ping=ack:{\"pong\":true}",
            "--socketio-ping-interval",
            "2s",
            "--socketio-ping-timeout",
            "4s",
            "--socketio-cors-origin",
            "http://allowed.example",
            "--socketio-cors-credentials",
            "on",
        ])
        .start();
    let env = [("GATEWAY_URL", format!("http://{}", gw.addr()))];
    let dir = suite_dir().join("polling");
    run_node_suite(&gw, &dir, ".test.mjs", &env, NODE_TIMEOUT);

    let mut c = Client::connect(gw.api_addr());
    c.send_raw(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let text = String::from_utf8(c.read_response().body).expect("metrics text");
    for series in [
        "gateway_socketio_upgrades_total 1",
        "gateway_socketio_polling_requests_total{result=\"refused\"} ",
    ] {
        assert!(text.contains(series), "{series} in\n{text}");
    }
}

/// Two nodes joined by a real redis-server: socket.io-client sockets on node A and node B get
/// each other's room emits, private messages and broadcasts, and a backend emit made on node A
/// reaches a room on node B except the socket it names (`tests/socketio/nodes/`).
#[test]
fn rooms_private_messages_and_backend_emits_cross_nodes_through_redis() {
    use common::redis::{Broker, Redis};
    let redis = Redis::start();
    let node = |id: u16| {
        let gw = gateway()
            .args(["--threads", "2", "--api-key", API_KEY])
            .args(["--broker", &redis.url(), "--node-id", &id.to_string()])
            .start();
        redis.wait_node(id);
        gw
    };
    let (mut a, mut b) = (node(71), node(72));
    let env = [
        ("GATEWAY_URL_A", format!("http://{}", a.addr())),
        ("GATEWAY_URL_B", format!("http://{}", b.addr())),
        ("GATEWAY_API_URL_A", format!("http://{}", a.api_addr())),
        ("GATEWAY_API_KEY", API_KEY.to_owned()),
    ];
    run_node_suite(
        &b,
        &suite_dir().join("nodes"),
        ".test.mjs",
        &env,
        NODE_TIMEOUT,
    );
    a.assert_running();
    b.assert_running();
}
