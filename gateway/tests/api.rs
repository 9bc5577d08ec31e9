//! Backend API and client token socket tests: publish / send / disconnect through the API reach
//! `/ws` clients across two shards, listings and stats, every 4xx the contract names, 429 under
//! a full queue, tokens at the handshake and their channel patterns, the 4001 expiry close, and
//! `/metrics`. Each test runs its own gateway on loopback ports.

mod common;

use std::time::{Duration, Instant};

use gateway::auth::Verifier;
use serde_json::{json, Value};

use common::api::{json_of, text, Api, API_KEY};
use common::ws::{spread, unix_now, Ws};
use common::*;

const SECRET: &str = "test-token-secret";

fn start(extra: &[&str]) -> Gateway {
    let mut args = vec!["--api-key", API_KEY];
    args.extend_from_slice(extra);
    gateway().args(&args).start()
}

fn token(claims: Value) -> String {
    Verifier::new(SECRET.as_bytes()).sign(&claims.to_string())
}

/// Assert an API error: status, JSON content type, and `error.code`.
fn assert_api_error(r: &Response, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", text(r));
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    let v = json_of(r);
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

fn only_deliveries(frames: Vec<Value>) -> Vec<Value> {
    frames
        .into_iter()
        .filter(|m| m["type"] != "join" && m["type"] != "leave")
        .collect()
}

#[test]
fn api_publish_reaches_subscribers_on_both_shards_and_no_one_else() {
    let gw = start(&["--threads", "2"]);
    let mut subs = spread(gw.addr(), 2, "");
    let mut outsider = Ws::open(gw.addr(), "");
    for w in &mut subs {
        w.subscribe("news");
    }
    let mut api = Api::connect(&gw);
    for n in 0..5 {
        api.accepted("/api/publish", json!({"channel":"news","data":{"n":n}}));
    }
    api.accepted(
        "/api/publish",
        json!({"channels":["other","news"],"data":"both"}),
    );
    for w in &mut subs {
        for n in 0..5 {
            let m = w.next();
            assert_eq!(
                m,
                json!({"type":"message","channel":"news","data":{"n":n},"from":null}),
                "shard {}",
                w.shard()
            );
        }
        assert_eq!(w.next()["data"], "both");
    }
    assert!(only_deliveries(outsider.sync()).is_empty());

    // Pipelined publishes from one API connection arrive in order on both shards.
    const N: usize = 200;
    let mut batch = Vec::new();
    for n in 0..N {
        let body = json!({"channel":"news","data":n}).to_string();
        batch.extend_from_slice(
            format!(
                "POST /api/publish HTTP/1.1\r\nAuthorization: Bearer {API_KEY}\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
    api.c.send_raw(&batch);
    for _ in 0..N {
        assert_eq!(api.c.read_response().status, 202);
    }
    for w in &mut subs {
        let got: Vec<u64> = (0..N).map(|_| w.next()["data"].as_u64().unwrap()).collect();
        assert_eq!(
            got,
            (0..N as u64).collect::<Vec<_>>(),
            "shard {}",
            w.shard()
        );
    }
}

#[test]
fn publish_to_user_reaches_each_of_their_connections_only() {
    let gw = start(&["--threads", "2", "--token-secret", SECRET]);
    let exp = unix_now() + 300;
    let ann = token(json!({"sub":"ann","exp":exp}));
    let bob = token(json!({"sub":"bob","exp":exp}));
    let mut anns = spread(gw.addr(), 1, &format!("?token={ann}"));
    let mut b = Ws::open(gw.addr(), &format!("?token={bob}"));
    let mut api = Api::connect(&gw);
    api.accepted("/api/publish/user", json!({"user":"ann","data":{"hi":1}}));
    for w in &mut anns {
        assert_eq!(
            w.next(),
            json!({"type":"direct","from":null,"user":null,"data":{"hi":1}})
        );
    }
    assert!(only_deliveries(b.sync()).is_empty());
    // A user with no connection is not an error: nothing to deliver.
    api.accepted("/api/publish/user", json!({"user":"nobody","data":1}));
}

#[test]
fn send_reaches_one_connection_and_a_stale_id_gets_404() {
    let gw = start(&["--threads", "2"]);
    let mut clients = spread(gw.addr(), 1, "");
    let mut api = Api::connect(&gw);
    for w in &mut clients {
        let id = w.id.clone();
        api.accepted("/api/send", json!({"conn":id,"data":["x",1]}));
        assert_eq!(
            w.next(),
            json!({"type":"direct","from":null,"user":null,"data":["x",1]})
        );
    }
    let gone = clients.pop().unwrap();
    let gone_id = gone.id.clone();
    let mut c = gone.c;
    c.close_cleanly();
    // The close is processed by the time a new request on another connection is answered.
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let r = api.post("/api/send", json!({"conn":gone_id,"data":1}));
        if r.status == 404 {
            assert_api_error(&r, 404, "unknown_connection");
            break;
        }
        assert_eq!(r.status, 202, "{}", text(&r));
        assert!(Instant::now() < deadline, "stale id still accepted");
        std::thread::sleep(Duration::from_millis(20));
    }
    // An id naming a shard that does not exist, and one with the wrong generation.
    let r = api.post(
        "/api/send",
        json!({"conn":(200u64 << 56).to_string(),"data":1}),
    );
    assert_api_error(&r, 404, "unknown_connection");
    let live: u64 = clients[0].id.parse().unwrap();
    let stale = live ^ (1 << 32);
    let r = api.post("/api/send", json!({"conn":stale.to_string(),"data":1}));
    assert_api_error(&r, 404, "unknown_connection");
    assert!(only_deliveries(clients[0].sync()).is_empty());
}

#[test]
fn disconnect_closes_with_the_given_code() {
    let gw = start(&["--threads", "2", "--token-secret", SECRET]);
    let mut api = Api::connect(&gw);
    let mut a = spread(gw.addr(), 1, "");
    for w in &mut a {
        let id = w.id.clone();
        api.accepted(
            "/api/disconnect",
            json!({"conn":id,"code":4321,"reason":"bye"}),
        );
        assert_eq!(w.c.expect_close(4321), "bye");
    }
    let mut plain = Ws::open(gw.addr(), "");
    let id = plain.id.clone();
    api.accepted("/api/disconnect", json!({"conn":id}));
    assert_eq!(plain.c.expect_close(4000), "disconnected");

    let t = token(json!({"sub":"mallory","exp":unix_now() + 300}));
    let mut m = spread(gw.addr(), 1, &format!("?token={t}"));
    api.accepted("/api/disconnect", json!({"user":"mallory","code":4403}));
    for w in &mut m {
        w.c.expect_close(4403);
    }
    let r = api.post("/api/disconnect", json!({"conn":"1","code":1000}));
    assert_api_error(&r, 400, "bad_field");
    // The connection closed above, a shard that does not exist, a wrong generation.
    let closed = a[0].id.clone();
    let r = api.post("/api/disconnect", json!({ "conn": closed }));
    assert_api_error(&r, 404, "unknown_connection");
    let r = api.post(
        "/api/disconnect",
        json!({"conn":(200u64 << 56).to_string()}),
    );
    assert_api_error(&r, 404, "unknown_connection");
    let mut live = Ws::open(gw.addr(), "");
    let stale = live.id.parse::<u64>().unwrap() ^ (1 << 32);
    let r = api.post("/api/disconnect", json!({"conn":stale.to_string()}));
    assert_api_error(&r, 404, "unknown_connection");
    assert!(only_deliveries(live.sync()).is_empty());
}

#[test]
fn channels_presence_and_stats() {
    let gw = start(&["--threads", "2"]);
    let mut clients = spread(gw.addr(), 1, "?user=amy");
    for w in &mut clients {
        w.subscribe("room:1");
    }
    clients[0].subscribe("room:2");
    let mut api = Api::connect(&gw);
    let r = api.get("/api/channels");
    assert_eq!(r.status, 200, "{}", text(&r));
    let v = json_of(&r);
    let n = clients.len();
    assert_eq!(
        v,
        json!({"channels":[{"channel":"room:1","subscribers":n},{"channel":"room:2","subscribers":1}]})
    );

    let r = api.get("/api/presence?channel=room:1");
    assert_eq!(r.status, 200, "{}", text(&r));
    let v = json_of(&r);
    assert_eq!(v["channel"], "room:1");
    let mut conns: Vec<String> = v["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["user"], "amy");
            m["conn"].as_str().unwrap().to_owned()
        })
        .collect();
    conns.sort();
    let mut want: Vec<String> = clients.iter().map(|w| w.id.clone()).collect();
    want.sort();
    assert_eq!(conns, want);
    assert_eq!(v["users"], json!(["amy"]));
    let r = api.get("/api/presence?channel=empty");
    assert_eq!(
        json_of(&r),
        json!({"channel":"empty","connections":[],"users":[]})
    );

    let r = api.get("/api/stats");
    assert_eq!(r.status, 200, "{}", text(&r));
    let v = json_of(&r);
    // The clients plus this API connection.
    assert_eq!(v["connections"], n + 1, "{v}");
    assert_eq!(v["shards"].as_array().unwrap().len(), 2);
    assert!(v["publishes"].is_u64() && v["deliveries"].is_u64(), "{v}");
}

#[test]
fn missing_or_wrong_key_is_401() {
    let gw = start(&["--threads", "1"]);
    let mut api = Api::connect(&gw);
    let no_key = b"POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}";
    let r = api.raw(no_key);
    assert_api_error(&r, 401, "unauthorized");
    assert_eq!(r.header("WWW-Authenticate"), Some("Bearer"));
    let body = json!({"channel":"a","data":1});
    let r = api.request("POST", "/api/publish", Some(&body), "wrong-key");
    assert_api_error(&r, 401, "unauthorized");
    let r = api.request("GET", "/api/stats", None, &format!("{API_KEY}x"));
    assert_api_error(&r, 401, "unauthorized");
    // The connection is still usable with the right key.
    api.accepted("/api/publish", body);
}

#[test]
fn bad_requests_get_their_4xx() {
    let gw = start(&["--threads", "1", "--max-api-body-bytes", "256"]);
    let mut api = Api::connect(&gw);
    assert_api_error(&api.post("/api/publish", json!([1])), 400, "bad_json");
    let r = api.raw(
        format!(
            "POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n\
             Content-Length: 5\r\n\r\n{{bad}}"
        )
        .as_bytes(),
    );
    assert_api_error(&r, 400, "bad_json");
    let junk = r#"{"channel":"c","data":[1.2345678901234567890e5abc]}"#;
    let r = api.raw(
        format!(
            "POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n\
             Content-Length: {}\r\n\r\n{junk}",
            junk.len()
        )
        .as_bytes(),
    );
    assert_api_error(&r, 400, "bad_json");
    assert_api_error(
        &api.post("/api/publish", json!({"data":1})),
        400,
        "missing_field",
    );
    assert_api_error(
        &api.post("/api/publish", json!({"channel":"a b","data":1})),
        400,
        "bad_channel",
    );
    assert_api_error(&api.get("/api/nope"), 404, "not_found");
    let r = api.get("/api/publish");
    assert_api_error(&r, 405, "method_not_allowed");
    assert_eq!(r.header("Allow"), Some("POST"));
    // Still the same keep-alive connection.
    api.accepted("/api/publish", json!({"channel":"a","data":1}));

    let mut chunked = Api::connect(&gw);
    let r = chunked.raw(
        format!(
            "POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n\
             Transfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_api_error(&r, 411, "length_required");
    assert_eq!(r.header("Connection"), Some("close"));
    chunked.c.expect_tcp_closed();

    let mut big = Api::connect(&gw);
    let r = big.post(
        "/api/publish",
        json!({"channel":"a","data":"x".repeat(300)}),
    );
    assert_api_error(&r, 413, "too_large");
    big.c.expect_tcp_closed();
}

#[test]
fn full_shard_queue_answers_429_with_retry_after() {
    // A one-slot queue and a one-message backlog: a pipeline of publishes to a channel with a
    // subscriber on the other shard fills both within one turn of the API's shard.
    let gw = start(&[
        "--threads",
        "2",
        "--shard-queue-capacity",
        "1",
        "--max-shard-backlog",
        "1",
    ]);
    let mut subs = spread(gw.addr(), 1, "");
    for w in &mut subs {
        w.subscribe("f");
    }
    let body = r#"{"channel":"f","data":1}"#;
    let one = format!(
        "POST /api/publish HTTP/1.1\r\nAuthorization: Bearer {API_KEY}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut api = Api::connect(&gw);
    let mut busy = None;
    for _round in 0..20 {
        api.c.send_raw(one.repeat(100).as_bytes());
        for _ in 0..100 {
            let r = api.c.read_response();
            match r.status {
                202 => {}
                429 => {
                    busy.get_or_insert(r);
                }
                _ => panic!("{}", text(&r)),
            }
        }
        if busy.is_some() {
            break;
        }
    }
    let r = busy.expect("a 429 with a one-slot queue");
    assert_api_error(&r, 429, "busy");
    assert_eq!(r.header("Retry-After"), Some("1"));
    // Once the other shard has caught up, publishes are accepted again.
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let r = api.post("/api/publish", json!({"channel":"f","data":2}));
        if r.status == 202 {
            break;
        }
        assert_api_error(&r, 429, "busy");
        assert!(Instant::now() < deadline, "still busy");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn required_token_refuses_missing_forged_and_expired_tokens_with_401() {
    let gw = start(&[
        "--threads",
        "1",
        "--token-secret",
        SECRET,
        "--require-token",
    ]);
    let exp = unix_now() + 300;
    let claims = json!({"sub":"ann","exp":exp,"channels":["*"]});
    let valid = token(claims.clone());
    let refused = |query: &str, extra: &[(&str, &str)], why: &str| {
        let mut c = Client::connect(gw.addr());
        let r = c.handshake(&format!("/ws{query}"), extra);
        assert_eq!(r.status, 401, "{query}: {r:?}");
        let body = String::from_utf8_lossy(&r.body).into_owned();
        assert!(body.contains(why), "{query}: body {body:?} lacks {why:?}");
    };
    refused("", &[], "token is required");
    let b64 = |s: &str| base64_url(s.as_bytes());
    let none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&claims.to_string())
    );
    refused(&format!("?token={none}"), &[], "");
    let forged = Verifier::new(b"other").sign(&claims.to_string());
    refused(&format!("?token={forged}"), &[], "signature");
    let expired = token(json!({"sub":"ann","exp":unix_now() - 10}));
    refused(&format!("?token={expired}"), &[], "expired");
    let hs512 = {
        let parts: Vec<&str> = valid.split('.').collect();
        format!("{}.{}.{}", b64(r#"{"alg":"HS512"}"#), parts[1], parts[2])
    };
    refused(&format!("?token={hs512}"), &[], "HS256");

    // The same token is accepted in the query and as an offered subprotocol (not echoed).
    let w = Ws::open(gw.addr(), &format!("?token={valid}"));
    drop(w);
    let mut c = Client::connect(gw.addr());
    let key = fresh_key();
    let proto = format!("bearer.{valid}");
    let r = c.handshake_with_key("/ws", &key, &[("Sec-WebSocket-Protocol", &proto)]);
    r.assert_switching(&key);
    assert_eq!(r.header("Sec-WebSocket-Protocol"), None);
    // A browser needs one offered protocol selected: next to the token it offers `bearer`, which
    // the server selects (the token itself is never echoed).
    let mut c = Client::connect(gw.addr());
    let key = fresh_key();
    let offer = format!("bearer, {proto}");
    let r = c.handshake_with_key("/ws", &key, &[("Sec-WebSocket-Protocol", &offer)]);
    r.assert_switching(&key);
    assert_eq!(r.header("Sec-WebSocket-Protocol"), Some("bearer"));

    // Each refusal was counted by its reason.
    let mut api = Api::connect(&gw);
    let r = api.raw(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let body = String::from_utf8(r.body).unwrap();
    let count = |reason: &str| -> u64 {
        let series = format!("gateway_handshake_failures_total{{reason=\"{reason}\"}} ");
        body.lines()
            .find_map(|l| l.strip_prefix(&series)?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{body}"))
    };
    assert_eq!(count("token_missing"), 1);
    assert_eq!(count("token_invalid"), 3);
    assert_eq!(count("token_expired"), 1);
}

fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

#[test]
fn token_patterns_allow_and_forbid_subscribe_and_publish() {
    let gw = start(&[
        "--threads",
        "1",
        "--token-secret",
        SECRET,
        "--require-token",
    ]);
    let t = token(json!({
        "sub":"ann","exp":unix_now() + 300,
        "channels":["room:*","news"],"publish":["room:1"]
    }));
    let mut w = Ws::open(gw.addr(), &format!("?token={t}"));
    w.subscribe("room:1");
    w.subscribe("news");
    assert_eq!(
        w.err(json!({"op":"subscribe","channel":"secret","id":1})),
        "forbidden"
    );
    assert_eq!(
        w.err(json!({"op":"publish","channel":"room:2","data":1,"id":2})),
        "forbidden"
    );
    assert_eq!(
        w.err(json!({"op":"publish","channel":"news","data":1,"id":3})),
        "forbidden"
    );
    w.ok(json!({"op":"publish","channel":"room:1","data":"hi","id":4}));
    let m = w.next();
    assert_eq!(m["data"], "hi");
    assert_eq!(m["user"], "ann");
}

#[test]
fn expired_token_closes_with_4001_unless_refreshed() {
    let gw = start(&["--threads", "1", "--token-secret", SECRET]);
    let now = unix_now();
    // Expires 2 to 3 s from now: time enough to open both and refresh one even on a busy machine.
    let exp = now + 3;
    let short = token(json!({"sub":"ann","exp":exp,"channels":["*"]}));
    let mut a = Ws::open(gw.addr(), &format!("?token={short}"));
    let mut b = Ws::open(gw.addr(), &format!("?token={short}"));
    // b refreshes for the same user before expiry; a does not.
    let long = token(json!({"sub":"ann","exp":now + 300,"channels":["*"]}));
    b.ok(json!({"op":"refresh","token":long,"id":1}));
    let other = token(json!({"sub":"eve","exp":now + 300}));
    assert_eq!(
        b.err(json!({"op":"refresh","token":other,"id":2})),
        "bad_token"
    );
    let started = Instant::now();
    a.c.set_timeout(Duration::from_secs(6));
    let reason = a.c.expect_close(4001);
    assert_eq!(reason, "token expired");
    assert!(unix_now() >= exp, "closed before exp");
    assert!(started.elapsed() < Duration::from_secs(5));
    b.c.set_timeout(Duration::from_millis(1500));
    b.c.expect_silence(Duration::from_millis(1500));
    b.sync();
}

#[test]
fn metrics_expose_contract_names_with_values_that_move() {
    let gw = start(&["--threads", "2"]);
    let mut api = Api::connect(&gw);
    let value = |api: &mut Api, series: &str| -> u64 {
        let r = api.raw(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(r.status, 200);
        assert!(r
            .header("Content-Type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4"));
        let body = String::from_utf8(r.body).unwrap();
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{body}"))
    };
    let accepted = value(&mut api, "gateway_connections_accepted_total");
    let publishes = value(&mut api, "gateway_publishes_total");
    let open = value(&mut api, "gateway_connections_open");
    let mut w = Ws::open(gw.addr(), "");
    w.subscribe("m");
    api.accepted("/api/publish", json!({"channel":"m","data":1}));
    w.next();
    assert_eq!(
        value(&mut api, "gateway_connections_accepted_total"),
        accepted + 1
    );
    assert_eq!(value(&mut api, "gateway_connections_open"), open + 1);
    assert!(value(&mut api, "gateway_publishes_total") > publishes);
    assert!(value(&mut api, "gateway_deliveries_total") >= 1);
    // The subscribe request in, its reply, the welcome and the delivery out.
    assert!(value(&mut api, "gateway_messages_in_total") >= 1);
    assert!(value(&mut api, "gateway_messages_out_total") >= 3);
    for name in [
        "gateway_connections_refused_total{reason=\"over_limit\"}",
        "gateway_handshake_failures_total{reason=\"token_missing\"}",
        "gateway_messages_in_total",
        "gateway_messages_out_total",
        "gateway_bytes_in_total",
        "gateway_bytes_out_total",
        "gateway_slow_consumer_disconnects_total",
        "gateway_shard_queue_depth{shard=\"1\"}",
    ] {
        value(&mut api, name);
    }
    let r = api.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((r.status, &r.body[..]), (200, &b"ok\n"[..]));
}
