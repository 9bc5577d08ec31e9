//! Backend hooks against a real HTTP backend (`tests/hooks/backend.py`, Python's
//! ThreadingHTTPServer on a loopback port from the OS, started and stopped by each test): the
//! connect, subscribe, publish, rpc and disconnect hooks' allow and deny paths; backends that
//! are slow, answer garbage or 500, cut the answer, or do not listen, each giving its documented
//! client-side error while the gateway keeps serving and its descriptors return to baseline; the
//! circuit breaker opening and closing; a client that sends faster than its backend answers
//! being paused.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use test_support::Process;

use common::ws::{read_json, Ws};
use common::*;

const SECRET: &str = "hook-test-secret";

/// The test backend, listening on `port` (0: one from the OS).
struct Backend {
    process: Process,
    port: u16,
}

impl Backend {
    fn start_on(port: u16) -> Backend {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hooks/backend.py");
        let mut cmd = Command::new("python3");
        cmd.arg("-u").arg(script).arg(SECRET).arg(port.to_string());
        Backend::spawn(cmd)
    }

    /// Start `cmd`, a server that prints `listening on <port>` first.
    fn spawn(cmd: Command) -> Backend {
        let process = Process::spawn(cmd);
        let line = process
            .next_line(Instant::now() + Duration::from_secs(10))
            .unwrap_or_else(|| panic!("backend did not start: {}", process.stderr()));
        let port = line
            .strip_prefix("listening on ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Backend { process, port }
    }

    fn start() -> Backend {
        Backend::start_on(0)
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The next call the backend received on `path` (its JSON body); calls on other paths
    /// are skipped. Fails on a bad signature.
    fn call(&self, path: &str) -> Value {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            let line = self
                .process
                .next_line(deadline)
                .unwrap_or_else(|| panic!("no call on {path}; stderr: {}", self.process.stderr()));
            assert!(!line.starts_with("BADSIG"), "signature refused: {line}");
            let mut parts = line.splitn(3, ' ');
            if parts.next() == Some("CALL") && parts.next() == Some(path) {
                return serde_json::from_str(parts.next().unwrap_or("")).expect("a JSON body");
            }
        }
    }

    /// Calls received within `quiet` (none must be on an unexpected path).
    fn calls_within(&self, quiet: Duration) -> Vec<String> {
        let deadline = Instant::now() + quiet;
        std::iter::from_fn(|| self.process.next_line(deadline)).collect()
    }
}

fn hooked(args: &[String]) -> Gateway {
    gateway().args(["--hook-secret", SECRET]).args(args).start()
}

fn metrics(gw: &Gateway) -> String {
    let mut s = TcpStream::connect(gw.api_addr()).expect("connect to the API");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

fn metric(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {line_start} in\n{text}"))
}

#[test]
fn connect_hook_allows_with_user_channels_and_data_or_denies_two_ways() {
    let be = Backend::start();
    let gw = hooked(&[
        "--hook-connect".into(),
        be.url("/connect"),
        "--hook-connect-headers".into(),
        "x-app".into(),
    ]);
    let mut c = Client::connect(gw.addr());
    let resp = c.handshake(
        "/ws?user=ann",
        &[
            ("X-App", "web"),
            ("X-Other", "no"),
            ("Sec-WebSocket-Protocol", "chat"),
        ],
    );
    assert_eq!(resp.status, 101, "{resp:?}");
    let asked = be.call("/connect");
    assert_eq!(asked["path"], "/ws");
    assert_eq!(asked["query"], "user=ann");
    assert_eq!(
        asked["headers"],
        json!({"x-app": "web"}),
        "only chosen headers"
    );
    assert_eq!(asked["subprotocols"], json!(["chat"]));
    let remote = asked["remote"].as_str().expect("the client's address");
    assert_eq!(
        remote
            .parse::<std::net::SocketAddr>()
            .map(|a| a.port())
            .ok(),
        c.stream().local_addr().map(|a| a.port()).ok(),
        "remote is the client's address"
    );
    let welcome = read_json(&mut c);
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["user"], "ann");
    assert_eq!(welcome["data"]["path"], "/ws");
    assert_eq!(welcome["conn"], asked["conn"]);
    let mut ws = Ws {
        id: welcome["conn"].as_str().unwrap().to_owned(),
        c,
    };
    // Subscribed at once to the channel the backend named.
    ws.ok(json!({"op":"unsubscribe","channel":"welcome:ann","id":1}));

    let mut c = Client::connect(gw.addr());
    let resp = c.handshake("/ws?deny=status", &[]);
    resp.assert_error(401);
    assert_eq!(String::from_utf8_lossy(&resp.body), "no session\n");
    be.call("/connect");

    let mut c = Client::connect(gw.addr());
    let resp = c.handshake("/ws?deny=close", &[]);
    assert_eq!(resp.status, 101);
    assert_eq!(c.expect_close(4403), "banned");
    be.call("/connect");
    gw.assert_serves();
}

#[test]
fn forwarded_cookies_need_an_allowed_origin_and_a_foreign_one_never_reaches_the_backend() {
    let be = Backend::start();
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args([
            "--hook-secret",
            SECRET,
            "--hook-connect",
            &be.url("/connect"),
        ])
        .args(["--hook-connect-cookies", "session"])
        .args(["--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"])
        .output()
        .expect("run the gateway");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--allowed-origins"), "{stderr}");

    let gw = hooked(&[
        "--hook-connect".into(),
        be.url("/connect"),
        "--hook-connect-cookies".into(),
        "session".into(),
        "--allowed-origins".into(),
        "http://app.example".into(),
    ]);
    let mut c = Client::connect(gw.addr());
    let resp = c.handshake(
        "/ws?from=evil",
        &[
            ("Origin", "http://evil.example"),
            ("Cookie", "session=good"),
        ],
    );
    resp.assert_error(403);
    let mut c = Client::connect(gw.addr());
    let resp = c.handshake(
        "/ws?from=app",
        &[
            ("Origin", "http://app.example"),
            ("Cookie", "other=1; session=good"),
        ],
    );
    assert_eq!(resp.status, 101);
    assert_eq!(read_json(&mut c)["user"], "cookie-user");
    let asked = be.call("/connect");
    assert_eq!(
        asked["query"], "from=app",
        "the foreign origin was never forwarded"
    );
    assert_eq!(asked["cookies"], json!({"session": "good"}));
}

#[test]
fn subscribe_publish_and_rpc_hooks_decide_rewrite_and_answer() {
    let be = Backend::start();
    let gw = hooked(&[
        "--hook-subscribe".into(),
        format!(
            "secret:={},room:={}",
            be.url("/subscribe"),
            be.url("/subscribe")
        ),
        "--hook-publish".into(),
        format!("room:={}", be.url("/publish")),
        "--hook-rpc".into(),
        be.url("/rpc"),
    ]);
    let mut ws = Ws::open(gw.addr(), "?user=bob");
    let (r, _) = ws.request(json!({"op":"subscribe","channel":"secret:x","id":1}));
    assert_eq!(r["error"]["code"], "forbidden", "{r}");
    assert_eq!(r["error"]["message"], "members only");
    assert_eq!(be.call("/subscribe")["channel"], "secret:x");
    ws.ok(json!({"op":"subscribe","channel":"room:1","id":2}));
    assert_eq!(be.call("/subscribe")["user"], "bob");
    // Channels without a hook are not asked about.
    ws.ok(json!({"op":"subscribe","channel":"free","id":3}));

    let before = ws.ok(json!({"op":"publish","channel":"room:1","data":"hello","id":4}));
    let asked = be.call("/publish");
    assert_eq!(
        (&asked["channel"], &asked["data"]),
        (&json!("room:1"), &json!("hello"))
    );
    let mut got: Vec<Value> = before;
    got.extend(ws.sync());
    let delivered: Vec<&Value> = got.iter().filter(|m| m["type"] == "message").collect();
    assert_eq!(delivered.len(), 1, "{got:?}");
    assert_eq!(
        delivered[0]["data"], "HELLO",
        "the backend rewrote the data"
    );
    let (r, _) = ws.request(json!({"op":"publish","channel":"room:1","data":"a badword","id":5}));
    assert_eq!(
        (&r["error"]["code"], &r["error"]["message"]),
        (&json!("forbidden"), &json!("moderated"))
    );
    assert!(
        ws.sync().iter().all(|m| m["type"] != "message"),
        "a denied publish is not delivered"
    );

    let (r, _) = ws.request(json!({"op":"rpc","method":"add","data":{"a":2,"b":3},"id":"r1"}));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["data"], json!({"sum": 5, "user": "bob"}));
    let (r, _) = ws.request(json!({"op":"rpc","method":"nope","id":"r2"}));
    assert_eq!(
        (&r["error"]["code"], r["id"].clone()),
        (&json!("no_method"), json!("r2"))
    );
    let (r, _) = ws.request(json!({"op":"rpc","id":"r3"}));
    assert_eq!(r["error"]["code"], "missing_field");
}

#[test]
fn rpc_without_a_hook_is_an_unknown_op() {
    let gw = gateway().start();
    let mut ws = Ws::open(gw.addr(), "");
    assert_eq!(
        ws.err(json!({"op":"rpc","method":"m","id":1})),
        "unknown_op"
    );
}

#[test]
fn disconnect_events_say_who_why_and_with_which_code() {
    let be = Backend::start();
    let gw = hooked(&["--hook-disconnect".into(), be.url("/disconnect")]);
    let mut a = Ws::open(gw.addr(), "?user=amy");
    let b = Ws::open(gw.addr(), "?user=ben");
    a.c.send_close(1000, b"bye");
    a.c.expect_close(1000);
    drop(b);
    let mut events = Vec::new();
    while events.len() < 2 {
        let batch = be.call("/disconnect");
        events.extend(
            batch["events"]
                .as_array()
                .expect("a batch of events")
                .clone(),
        );
    }
    let by_user = |u: &str| events.iter().find(|e| e["user"] == u).cloned().unwrap();
    let amy = by_user("amy");
    assert_eq!(
        (&amy["why"], &amy["code"]),
        (&json!("client"), &json!(1000))
    );
    assert_eq!(amy["conn"], a.id);
    assert!(amy["duration_ms"].is_u64());
    let ben = by_user("ben");
    assert_eq!((&ben["why"], &ben["code"]), (&json!("lost"), &json!(1006)));
}

#[test]
fn failing_backends_give_their_error_at_once_and_leak_nothing() {
    let be = Backend::start();
    let down = format!("http://127.0.0.1:{}/x", free_port());
    let rules = ["slow", "garbage", "500", "cut"]
        .iter()
        .map(|p| format!("{p}:={}", be.url(&format!("/{p}"))))
        .chain([
            format!("room:={}", be.url("/publish")),
            format!("down:={down}"),
        ])
        .collect::<Vec<_>>()
        .join(",");
    let gw = hooked(&[
        "--hook-publish".into(),
        rules,
        "--hook-timeout".into(),
        "500ms".into(),
        "--hook-breaker-failures".into(),
        "10000".into(),
    ]);
    let mut ws = Ws::open(gw.addr(), "");
    // Warm the keep-alive pool, then take the baseline.
    ws.ok(json!({"op":"publish","channel":"room:1","data":"x","id":0}));
    let baseline = gw.open_fds();
    let rss_before = gw.rss_bytes();
    for (channel, kind) in [
        ("slow:1", "timeout"),
        ("garbage:1", "bad_response"),
        ("500:1", "status"),
        ("cut:1", "closed"),
        ("down:1", "unreachable"),
    ] {
        let started = Instant::now();
        let (r, _) = ws.request(json!({"op":"publish","channel":channel,"data":"x","id":channel}));
        assert_eq!(r["error"]["code"], "backend_unavailable", "{channel}: {r}");
        assert_eq!(
            r["error"]["message"],
            format!("backend unavailable: {kind}"),
            "{channel}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{channel} answered late"
        );
        // Other clients are served meanwhile.
        gw.assert_serves();
    }
    // Many more of the quick failures: memory stays where it was.
    for round in 0..100 {
        for channel in ["garbage:1", "500:1", "cut:1", "down:1"] {
            let (r, _) =
                ws.request(json!({"op":"publish","channel":channel,"data":"x","id":round}));
            assert_eq!(r["error"]["code"], "backend_unavailable", "{r}");
        }
    }
    let rss_after = gw.rss_bytes();
    assert!(
        rss_after <= rss_before + (4 << 20),
        "RSS grew from {rss_before} to {rss_after} over 400 failed calls"
    );
    ws.ok(json!({"op":"publish","channel":"room:1","data":"y","id":9}));
    let text = metrics(&gw);
    assert_eq!(
        metric(
            &text,
            "gateway_hook_errors_total{hook=\"publish\",kind=\"timeout\"}"
        ),
        1
    );
    assert_eq!(
        metric(
            &text,
            "gateway_hook_errors_total{hook=\"publish\",kind=\"unreachable\"}"
        ),
        101
    );
    assert!(
        metric(
            &text,
            "gateway_hook_latency_seconds_count{hook=\"publish\"}"
        ) >= 7
    );
    drop(ws);
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.open_fds() > baseline && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        gw.open_fds() <= baseline,
        "descriptors leaked: {} > {baseline}",
        gw.open_fds()
    );
}

#[test]
fn the_breaker_opens_on_a_dead_backend_and_closes_when_it_answers_again() {
    let port = free_port();
    let gw = hooked(&[
        "--hook-rpc".into(),
        format!("http://127.0.0.1:{port}/rpc"),
        "--hook-breaker-failures".into(),
        "2".into(),
        "--hook-breaker-cooldown".into(),
        "300ms".into(),
    ]);
    let mut ws = Ws::open(gw.addr(), "");
    let rpc = json!({"op":"rpc","method":"add","data":{"a":1,"b":1},"id":1});
    let message = |ws: &mut Ws| ws.request(rpc.clone()).0["error"]["message"].clone();
    assert_eq!(message(&mut ws), "backend unavailable: unreachable");
    assert_eq!(message(&mut ws), "backend unavailable: unreachable");
    assert_eq!(message(&mut ws), "backend unavailable: circuit_open");
    let text = metrics(&gw);
    assert_eq!(
        metric(
            &text,
            &format!("gateway_hook_breaker_state{{backend=\"127.0.0.1:{port}\"}}")
        ),
        1
    );
    let _be = Backend::start_on(port);
    std::thread::sleep(Duration::from_millis(400));
    let (r, _) = ws.request(rpc.clone());
    assert_eq!(r["data"]["sum"], 2, "the trial call goes through: {r}");
    let text = metrics(&gw);
    assert_eq!(
        metric(
            &text,
            &format!("gateway_hook_breaker_state{{backend=\"127.0.0.1:{port}\"}}")
        ),
        0
    );
}

#[test]
fn a_client_faster_than_its_backend_is_paused_not_buffered() {
    let be = Backend::start();
    let gw = hooked(&[
        "--hook-rpc".into(),
        be.url("/slow"),
        "--hook-timeout".into(),
        "600ms".into(),
        "--hook-max-calls-per-conn".into(),
        "2".into(),
        "--hook-breaker-failures".into(),
        "100".into(),
    ]);
    let mut ws = Ws::open(gw.addr(), "");
    for i in 0..6 {
        ws.send(json!({"op":"rpc","method":"m","id":i}));
    }
    let seen = be.calls_within(Duration::from_millis(400));
    assert_eq!(
        seen.iter().filter(|l| l.starts_with("CALL /slow")).count(),
        2,
        "only two calls in flight while the client is paused: {seen:?}"
    );
    let mut replies = 0;
    while replies < 6 {
        let m = read_json(&mut ws.c);
        assert_eq!(m["error"]["message"], "backend unavailable: timeout", "{m}");
        replies += 1;
    }
}

#[test]
fn raw_messages_are_forwarded_per_read_and_the_answer_acts() {
    let be = Backend::start();
    let gw = hooked(&["--hook-forward".into(), be.url("/forward")]);
    let mut c = Client::connect(gw.addr());
    let resp = c.handshake("/raw", &[]);
    assert_eq!(resp.status, 101);
    // Two messages in one write arrive in one read: one call carries both.
    let mut both = c.frame_bytes(true, 0, op::TEXT, b"hello", Some(KEY));
    both.extend(c.frame_bytes(true, 0, op::BINARY, &[0, 1, 2], Some(KEY)));
    c.send_raw(&both);
    let call = be.call("/forward");
    assert_eq!(
        call["messages"],
        json!([{"type":"text","data":"hello"},{"type":"binary","data":"AAEC"}])
    );
    c.expect_frame(op::TEXT, b"HELLO");
    c.expect_frame(op::TEXT, br#"{"binary_bytes":3}"#);
    // Actions: subscribe, then publish to that channel as this connection.
    c.send_text(b"sub:news");
    be.call("/forward");
    c.send_text(b"pub:news:fresh");
    be.call("/forward");
    c.expect_frame(op::TEXT, b"fresh");
    c.send_text(b"bye");
    assert_eq!(c.expect_close(4000), "backend says bye");
}

/// One HTTP/1.1 request to the example backend; the response's status, headers and body.
fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the backend");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    let status = head[9..12].parse().expect("a status");
    (status, head.to_owned(), body.to_owned())
}

#[test]
fn the_example_backend_authenticates_moderates_and_answers() {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/examples/hooks-backend/app.py"
    );
    let mut cmd = Command::new("python3");
    cmd.args(["-u", script, "--port", "0", "--secret", SECRET]);
    let be = Backend::spawn(cmd);
    let origin = "http://app.example";
    let gw = hooked(&[
        "--hook-connect".into(),
        be.url("/hooks/connect"),
        "--hook-connect-cookies".into(),
        "session".into(),
        "--allowed-origins".into(),
        origin.into(),
        "--hook-publish".into(),
        format!("chat:={}", be.url("/hooks/publish")),
        "--hook-rpc".into(),
        be.url("/hooks/rpc"),
        "--hook-disconnect".into(),
        be.url("/hooks/disconnect"),
    ]);
    let mut c = Client::connect(gw.addr());
    c.handshake("/ws", &[("Origin", origin)]).assert_error(401);

    let (status, head, _) = http(be.port, "POST", "/login", r#"{"user":"ann"}"#);
    assert_eq!(status, 200);
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: "))
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let mut c = Client::connect(gw.addr());
    let resp = c.handshake("/ws", &[("Origin", origin), ("Cookie", &cookie)]);
    assert_eq!(resp.status, 101);
    let welcome = read_json(&mut c);
    assert_eq!(welcome["user"], "ann");
    assert_eq!(welcome["data"]["greeting"], "welcome back, ann");
    let mut ws = Ws {
        id: welcome["conn"].as_str().unwrap().to_owned(),
        c,
    };
    ws.subscribe("chat:lobby");
    let (r, _) = ws.request(
        json!({"op":"publish","channel":"chat:lobby","data":{"text":"cheap spam here"},"id":1}),
    );
    assert_eq!(
        r["error"]["message"], "message refused by moderation",
        "{r}"
    );
    let mut got =
        ws.ok(json!({"op":"publish","channel":"chat:lobby","data":{"text":"  hi all "},"id":2}));
    got.extend(ws.sync());
    let m = got
        .iter()
        .find(|m| m["type"] == "message")
        .expect("the publication");
    assert_eq!(m["data"], json!({"text": "hi all", "by": "ann"}));
    let (r, _) = ws.request(json!({"op":"rpc","method":"whoami","id":3}));
    assert_eq!(r["data"], json!({"user": "ann", "conn": ws.id}));
    let (r, _) =
        ws.request(json!({"op":"rpc","method":"room_size","data":{"channel":"chat:lobby"},"id":4}));
    assert_eq!(r["data"]["messages"], 1);
    ws.c.send_close(1000, b"");
    ws.c.expect_close(1000);
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let (_, _, events) = http(be.port, "GET", "/events", "");
        let events: Value = serde_json::from_str(&events).unwrap();
        if let Some(e) = events.as_array().and_then(|a| a.first()) {
            assert_eq!((&e["user"], &e["why"]), (&json!("ann"), &json!("client")));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no disconnect event reached the backend"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_chat_page_works_with_the_connect_hook_in_chromium() {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/examples/hooks-backend/app.py"
    );
    let mut cmd = Command::new("python3");
    cmd.args(["-u", script, "--port", "0", "--secret", SECRET]);
    let be = Backend::spawn(cmd);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gw = gateway()
        .listen(addr)
        .args(["--hook-secret", SECRET, "--threads", "2"])
        .args(["--hook-connect", &be.url("/hooks/connect")])
        .args(["--hook-connect-cookies", "session"])
        .args(["--allowed-origins", &format!("http://{addr}")])
        .start();
    let mut cmd = Command::new("node");
    cmd.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser"))
        .arg("hooks.test.mjs")
        .arg(format!("http://{addr}"))
        .arg(format!("http://127.0.0.1:{}", be.port));
    no_proxy(&mut cmd);
    let (mut node, mut answer) = Process::spawn_with_stdin(cmd);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = String::new();
    while let Some(line) = node.next_line(deadline) {
        if line == "checkpoint" {
            // The foreign page was refused before the backend heard of it.
            let text = metrics(&gw);
            assert!(
                metric(&text, "gateway_handshake_failures_total{reason=\"origin\"}") >= 1,
                "{}",
                text.lines()
                    .filter(|l| l.contains("handshake") || l.contains("hook_calls"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            assert_eq!(
                metric(&text, "gateway_hook_calls_total{hook=\"connect\"}"),
                0
            );
            answer
                .write_all(b"checked\n")
                .expect("answer the browser script");
        }
        last = line;
    }
    let status = node.wait_exit(Duration::from_secs(10));
    assert!(
        last == "ok" && status.is_some_and(|s| s.success()),
        "browser run failed ({status:?}, last line {last:?}):\n{}",
        node.stderr()
    );
}
