//! The admin page over plain sockets: served on the API listener only, behind its password, with
//! its security headers; `/admin/api/...` answers the API's routes for the page (and refuses a
//! request without `X-Gateway-Admin`); `/api/stats` carries the live view's fields (nodes,
//! closes by code, broker) and they move when connections come and go.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use common::ws::Ws;
use common::*;

/// Bound for the whole browser run (its own waits are 10 s each; it stops itself at 90 s).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(110);

const API_KEY: &str = "admin-test-api-key";
const ADMIN_SECRET: &str = "admin-test-secret";

/// `Basic base64("ops:" + ADMIN_SECRET)`.
fn basic(password: &str) -> String {
    let pair = format!("ops:{password}");
    format!(
        "Basic {}",
        base64_simd::STANDARD.encode_to_string(pair.as_bytes())
    )
}

fn start() -> Gateway {
    gateway()
        .args(["--api-key", API_KEY, "--admin-secret", ADMIN_SECRET])
        .args(["--threads", "2"])
        .start()
}

fn request(
    c: &mut Client,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    c.send_raw(req.as_bytes());
    c.read_response()
}

fn json_of(r: &Response) -> Value {
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {}", String::from_utf8_lossy(&r.body)))
}

/// One keep-alive connection to the admin routes with the password and the admin header.
struct Admin {
    c: Client,
    auth: String,
}

impl Admin {
    fn connect(gw: &Gateway) -> Admin {
        Admin {
            c: Client::connect(gw.api_addr()),
            auth: basic(ADMIN_SECRET),
        }
    }

    fn get(&mut self, path: &str) -> Response {
        let auth = self.auth.clone();
        request(
            &mut self.c,
            "GET",
            path,
            &[("Authorization", &auth), ("X-Gateway-Admin", "1")],
            "",
        )
    }

    fn post(&mut self, path: &str, body: Value) -> Response {
        let auth = self.auth.clone();
        request(
            &mut self.c,
            "POST",
            path,
            &[
                ("Authorization", &auth),
                ("X-Gateway-Admin", "1"),
                ("Content-Type", "application/json"),
            ],
            &body.to_string(),
        )
    }

    fn stats(&mut self) -> Value {
        let r = self.get("/admin/api/stats");
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        json_of(&r)
    }
}

#[test]
fn page_files_carry_a_strict_content_security_policy() {
    let gw = start();
    let mut admin = Admin::connect(&gw);
    for (path, content_type, needle) in [
        ("/admin", "text/html; charset=utf-8", "<!doctype html>"),
        ("/admin/", "text/html; charset=utf-8", "/admin/admin.js"),
        (
            "/admin/admin.js",
            "text/javascript; charset=utf-8",
            "textContent",
        ),
        ("/admin/admin.css", "text/css; charset=utf-8", ".tile"),
    ] {
        let r = admin.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("Content-Type"), Some(content_type), "{path}");
        assert_eq!(
            r.header("X-Content-Type-Options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(r.header("Cache-Control"), Some("no-store"), "{path}");
        let csp = r.header("Content-Security-Policy").unwrap_or_default();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "require-trusted-types-for 'script'",
        ] {
            assert!(
                csp.contains(directive),
                "{path}: {directive} missing in {csp}"
            );
        }
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert!(!csp.contains("http"), "{path}: no other origin: {csp}");
        assert!(
            String::from_utf8_lossy(&r.body).contains(needle),
            "{path} lacks {needle}"
        );
    }
    let r = admin.post("/admin", json!({}));
    assert_eq!(r.status, 405);
}

#[test]
fn admin_refuses_without_its_password() {
    let gw = start();
    let mut c = Client::connect(gw.api_addr());
    let key = format!("Bearer {API_KEY}");
    let wrong = basic("not-the-secret");
    for (path, auth) in [
        ("/admin", None),
        ("/admin/admin.js", None),
        ("/admin/api/stats", None),
        ("/admin/nope", None),
        ("/admin", Some(wrong.as_str())),
        // The API key is not the admin password once --admin-secret is set.
        ("/admin", Some(key.as_str())),
        ("/admin/api/stats", Some(key.as_str())),
    ] {
        let mut headers = vec![("X-Gateway-Admin", "1")];
        if let Some(a) = auth {
            headers.push(("Authorization", a));
        }
        let r = request(&mut c, "GET", path, &headers, "");
        assert_eq!(r.status, 401, "{path} with {auth:?}");
        assert_eq!(
            r.header("WWW-Authenticate"),
            Some(r#"Basic realm="gateway admin", charset="UTF-8""#),
            "{path}: the browser asks for the password"
        );
        assert_eq!(json_of(&r)["error"]["code"], "unauthorized");
        assert!(!String::from_utf8_lossy(&r.body).contains("<html"));
    }
    // Without --admin-secret, the API key is the password.
    let gw = gateway().args(["--api-key", API_KEY]).start();
    let mut c = Client::connect(gw.api_addr());
    let r = request(
        &mut c,
        "GET",
        "/admin",
        &[("Authorization", &basic(API_KEY))],
        "",
    );
    assert_eq!(r.status, 200);
}

#[test]
fn client_listener_does_not_serve_the_admin_page() {
    let gw = start();
    let auth = basic(ADMIN_SECRET);
    for path in ["/admin", "/admin/", "/admin/admin.js", "/admin/api/stats"] {
        let mut c = Client::connect(gw.addr());
        let r = request(
            &mut c,
            "GET",
            path,
            &[("Authorization", &auth), ("X-Gateway-Admin", "1")],
            "",
        );
        assert_eq!(r.status, 404, "{path} on the client listener");
        assert!(!String::from_utf8_lossy(&r.body).contains("Gateway admin"));
    }
}

#[test]
fn admin_api_needs_the_admin_header() {
    let gw = start();
    let mut c = Client::connect(gw.api_addr());
    let auth = basic(ADMIN_SECRET);
    // What a form on another site could make a browser send: the cached password, no header.
    let r = request(
        &mut c,
        "POST",
        "/admin/api/publish",
        &[("Authorization", &auth), ("Content-Type", "text/plain")],
        r#"{"channel":"x","data":1}"#,
    );
    assert_eq!(r.status, 403);
    assert_eq!(json_of(&r)["error"]["code"], "forbidden");
    // The page itself needs no header (a navigation cannot add one).
    let r = request(&mut c, "GET", "/admin", &[("Authorization", &auth)], "");
    assert_eq!(r.status, 200);
}

#[test]
fn stats_report_nodes_closes_by_code_and_broker_and_they_move() {
    let gw = start();
    let mut admin = Admin::connect(&gw);
    let before = admin.stats();
    assert_eq!(
        before["nodes"],
        json!([{"node":"local","self":true,"connections":1,"shards":2,"broker":"memory"}]),
        "{before}"
    );
    assert_eq!(before["broker"], json!({"kind":"memory","state":"up"}));
    assert_eq!(before["closes"]["4xxx"], 0);
    assert_eq!(before["closes"]["1000"], 0);
    assert_eq!(before["shards"].as_array().map(Vec::len), Some(2));

    let mut subscriber = Ws::open(gw.addr(), "");
    subscriber.subscribe("ops");
    let mut victim = Ws::open(gw.addr(), "?user=victim");
    let r = admin.post(
        "/admin/api/publish",
        json!({"channel":"ops","data":"deploy check"}),
    );
    assert_eq!(r.status, 202);
    let m = subscriber.next();
    assert_eq!(m["data"], "deploy check", "{m}");

    let r = admin.post(
        "/admin/api/disconnect",
        json!({"conn": victim.id, "code": 4321, "reason": "ops"}),
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    victim.c.expect_close(4321);
    victim.c.finish_close(4321);
    subscriber.c.close_cleanly();
    // Our FIN lets the server drop both sockets now instead of at --close-timeout.
    drop((victim, subscriber));

    // Both closes are counted by code once the shards have settled them.
    let deadline = std::time::Instant::now() + IO_TIMEOUT;
    let after = loop {
        let s = admin.stats();
        if s["closes"]["1000"] == 1 && s["closed"].as_u64() >= Some(2) {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "closes not counted: {s}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(after["closes"]["4xxx"], 1, "{after}");
    assert_eq!(
        after["accepted"].as_u64(),
        before["accepted"].as_u64().map(|n| n + 2)
    );
    assert_eq!(
        after["publishes"].as_u64(),
        before["publishes"].as_u64().map(|n| n + 1)
    );
    let mut api = Client::connect(gw.api_addr());
    let r = request(&mut api, "GET", "/metrics", &[], "");
    let text = String::from_utf8_lossy(&r.body);
    assert!(
        text.contains("gateway_closes_total{code=\"4xxx\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("gateway_closes_total{code=\"1000\"} 1"),
        "{text}"
    );
}

#[test]
fn connections_are_looked_up_by_id_or_user_with_their_channels() {
    let gw = start();
    // Two connections of one user (on one shard or both), and one of someone else.
    let mut ann = [
        Ws::open(gw.addr(), "?user=ann"),
        Ws::open(gw.addr(), "?user=ann"),
    ];
    ann[0].subscribe("a:1");
    ann[0].subscribe("a:2");
    ann[1].subscribe("b:1");
    let mut bob = Ws::open(gw.addr(), "?user=bob");
    bob.subscribe("a:1");
    let mut api = Client::connect(gw.api_addr());
    let key = format!("Bearer {API_KEY}");
    let mut get = |path: &str| request(&mut api, "GET", path, &[("Authorization", &key)], "");

    let r = get("/api/connections?user=ann");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let mut conns = json_of(&r)["connections"]
        .as_array()
        .cloned()
        .expect("a list");
    let order = |c: &Value| c["conn"].as_str().and_then(|s| s.parse::<u64>().ok());
    conns.sort_by_key(order);
    let mut want: Vec<Value> = ann
        .iter()
        .zip([json!(["a:1", "a:2"]), json!(["b:1"])])
        .map(|(w, channels)| {
            json!({"conn": w.id, "shard": w.shard(), "user": "ann", "channels": channels})
        })
        .collect();
    want.sort_by_key(order);
    assert_eq!(conns, want);

    let r = get(&format!("/api/connections?conn={}", bob.id));
    assert_eq!(
        json_of(&r),
        json!({"connections": [
            {"conn": bob.id, "shard": bob.shard(), "user": "bob", "channels": ["a:1"]}
        ]})
    );
    let r = get("/api/connections?user=nobody");
    assert_eq!(json_of(&r), json!({"connections": []}));

    // A stale id (the connection closed) is unknown.
    let gone = bob.id.clone();
    bob.c.close_cleanly();
    let r = get(&format!("/api/connections?conn={gone}"));
    assert_eq!(r.status, 404);
    assert_eq!(json_of(&r)["error"]["code"], "unknown_connection");

    for (path, code) in [
        ("/api/connections", "missing_field"),
        ("/api/connections?conn=x", "bad_field"),
        ("/api/connections?conn=1&user=ann", "bad_field"),
        ("/api/connections?user=", "bad_field"),
    ] {
        let r = get(path);
        assert_eq!(r.status, 400, "{path}");
        assert_eq!(json_of(&r)["error"]["code"], code, "{path}");
    }
    let r = request(&mut api, "GET", "/api/connections?user=ann", &[], "");
    assert_eq!(r.status, 401);
    // The admin page reads the same route.
    let mut admin = Admin::connect(&gw);
    let r = admin.get(&format!("/admin/api/connections?conn={}", ann[0].id));
    assert_eq!(
        json_of(&r)["connections"][0]["channels"],
        json!(["a:1", "a:2"])
    );
}

/// The page in headless Chromium (`tests/browser/admin.test.mjs`, which says what it checks):
/// refused without the password, no console error or CSP violation, numbers moving under load,
/// a disconnect and a publish from the page reaching the right clients. Screenshots land in
/// `target/tmp/admin/`.
#[test]
fn admin_page_in_headless_chromium() {
    let gw = gateway()
        .args(["--api-key", API_KEY, "--admin-secret", ADMIN_SECRET])
        .args(["--threads", "2", "--history", "hist:=10/10m"])
        .start();
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("admin");
    let mut node = Command::new("node");
    node.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser"))
        .arg("admin.test.mjs")
        .arg(format!("ws://{}", gw.addr()))
        .arg(format!("http://{}", gw.api_addr()))
        .arg(ADMIN_SECRET)
        .arg(&out_dir);
    let (code, out, err) = run_bounded(node, SCRIPT_TIMEOUT);
    assert!(
        code == Some(0) && out.lines().last() == Some("ok"),
        "browser run failed ({code:?})\nstdout:\n{out}\nstderr:\n{err}\ngateway stderr:\n{}",
        gw.stderr()
    );
    for line in out.lines() {
        if let Some(path) = line.strip_prefix("screenshot ") {
            assert!(std::fs::metadata(path).is_ok_and(|m| m.len() > 0), "{path}");
            println!("screenshot saved: {path}");
        }
    }
}
