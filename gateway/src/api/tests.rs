//! `ApiConn` driven by hand: request bytes in, responses and commands out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use frame_simd::CloseCode;

use super::*;
use crate::conn::ConnId;

const KEY: &str = "k3y";

fn settings() -> ApiSettings {
    let mut s = ApiSettings::new(ApiKey::new(KEY));
    s.max_body_bytes = 1024;
    s
}

struct Harness {
    conn: ApiConn,
    s: ApiSettings,
    m: ShardMetrics,
    out: Vec<u8>,
    t0: Instant,
}

impl Harness {
    fn new() -> Harness {
        let t0 = Instant::now();
        Harness {
            conn: ApiConn::new(t0),
            s: settings(),
            m: ShardMetrics::default(),
            out: Vec::new(),
            t0,
        }
    }

    fn read(&mut self, bytes: &[u8]) -> Option<Command> {
        self.conn
            .on_read(bytes, self.t0, &self.s, &self.m, &mut self.out)
    }

    fn outcome(&mut self, o: Outcome) -> Option<Command> {
        self.conn
            .on_outcome(o, self.t0, &self.s, &self.m, &mut self.out)
    }

    /// The responses written so far, taken out: (status, headers text, body).
    fn responses(&mut self) -> Vec<(u16, String, String)> {
        let text = String::from_utf8(std::mem::take(&mut self.out)).unwrap();
        let mut rest = text.as_str();
        let mut all = Vec::new();
        while !rest.is_empty() {
            let (head, after) = rest.split_once("\r\n\r\n").expect("complete head");
            let status: u16 = head[9..12].parse().unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .expect("content-length")
                .parse()
                .unwrap();
            all.push((status, head.to_owned(), after[..len].to_owned()));
            rest = &after[len..];
        }
        all
    }

    fn one(&mut self) -> (u16, String, String) {
        let mut r = self.responses();
        assert_eq!(r.len(), 1, "{r:?}");
        r.remove(0)
    }
}

fn post(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\r\n").into_bytes()
}

/// A command from one request (no response written yet).
fn command_of(req: &[u8]) -> Command {
    let mut h = Harness::new();
    let c = h.read(req).expect("a command");
    assert!(h.out.is_empty());
    assert_eq!(h.conn.state(), ApiState::AwaitOutcome);
    c
}

/// The error response of one request.
fn error_of(req: &[u8]) -> (u16, String, String) {
    let mut h = Harness::new();
    assert_eq!(h.read(req), None);
    h.one()
}

fn assert_error(req: &[u8], status: u16, code: &str) {
    let (st, head, body) = error_of(req);
    assert_eq!(st, status, "{head}\n{body}");
    assert!(
        body.contains(&format!(r#""code":"{code}""#)),
        "{body} lacks {code}"
    );
    assert!(head.contains("Content-Type: application/json"), "{head}");
}

#[test]
fn a_head_cut_short_by_a_bare_line_feed_is_400() {
    assert_error(
        b"GET /api/stats HTTP/1.1\r\nHost: x\n\nAuthorization: Bearer k3y\r\n\r\n",
        400,
        "bad_request",
    );
}

#[test]
fn publish_to_one_channel() {
    let c = command_of(&post(
        "/api/publish",
        r#"{"channel":"room:1","data":{"a":[1,2]}}"#,
    ));
    assert_eq!(
        c,
        Command::Publish {
            channels: vec!["room:1".into()],
            data: r#"{"a":[1,2]}"#.into(),
            text: None,
        }
    );
}

#[test]
fn publish_to_several_channels_keeps_their_order_and_any_data() {
    let c = command_of(&post(
        "/api/publish",
        r#"{"channels":["b","a"],"data":"hi \"there\""}"#,
    ));
    let Command::Publish {
        channels,
        data,
        text,
    } = c
    else {
        panic!("{c:?}")
    };
    assert_eq!(channels, vec!["b".into(), "a".into()] as Vec<Arc<str>>);
    assert_eq!(&*data, r#""hi \"there\"""#);
    assert_eq!(text.as_deref(), Some("hi \"there\""));
    let c = command_of(&post("/api/publish", r#"{"channel":"c","data":null}"#));
    assert!(matches!(c, Command::Publish { data, .. } if &*data == "null"));
}

#[test]
fn publish_bodies_are_validated() {
    let cases: &[(&str, &str)] = &[
        ("not json", "bad_json"),
        ("[1,2]", "bad_json"),
        ("", "bad_json"),
        ("{\"channel\":\"a\",\"data\":300\u{0}800}", "bad_json"),
        (r#"{"data":1}"#, "missing_field"),
        (r#"{"channel":"a"}"#, "missing_field"),
        (r#"{"channel":5,"data":1}"#, "bad_field"),
        (r#"{"channel":"a","channels":["b"],"data":1}"#, "bad_field"),
        (r#"{"channels":[],"data":1}"#, "bad_field"),
        (r#"{"channels":"a","data":1}"#, "bad_field"),
        (r#"{"channels":["a",1],"data":1}"#, "bad_field"),
        (r#"{"channel":"","data":1}"#, "bad_channel"),
        (r#"{"channel":"a b","data":1}"#, "bad_channel"),
        (r#"{"channels":["ok","no*"],"data":1}"#, "bad_channel"),
    ];
    for (body, code) in cases {
        assert_error(&post("/api/publish", body), 400, code);
    }
    let long = "x".repeat(129);
    assert_error(
        &post(
            "/api/publish",
            &format!(r#"{{"channel":"{long}","data":1}}"#),
        ),
        400,
        "bad_channel",
    );
    let many: Vec<String> = (0..129).map(|i| format!("\"c{i}\"")).collect();
    assert_error(
        &post(
            "/api/publish",
            &format!(r#"{{"channels":[{}],"data":1}}"#, many.join(",")),
        ),
        400,
        "bad_field",
    );
}

#[test]
fn publish_to_user() {
    let c = command_of(&post(
        "/api/publish/user",
        r#"{"user":"ann","data":[true]}"#,
    ));
    assert_eq!(
        c,
        Command::PublishUser {
            user: "ann".into(),
            data: "[true]".into()
        }
    );
    assert_error(
        &post("/api/publish/user", r#"{"data":1}"#),
        400,
        "missing_field",
    );
    assert_error(
        &post("/api/publish/user", r#"{"user":"ann"}"#),
        400,
        "missing_field",
    );
    assert_error(
        &post("/api/publish/user", r#"{"user":3,"data":1}"#),
        400,
        "bad_field",
    );
    assert_error(
        &post("/api/publish/user", r#"{"user":"","data":1}"#),
        400,
        "bad_field",
    );
}

#[test]
fn send_to_a_connection_by_decimal_id() {
    let id = ConnId::new(1, 7, 3);
    let c = command_of(&post(
        "/api/send",
        &format!(r#"{{"conn":"{}","data":"x"}}"#, id.to_bits()),
    ));
    assert_eq!(
        c,
        Command::Send {
            conn: id,
            data: "\"x\"".into()
        }
    );
    for body in [
        r#"{"conn":42,"data":1}"#,
        r#"{"conn":"-1","data":1}"#,
        r#"{"conn":"12a","data":1}"#,
        r#"{"conn":"","data":1}"#,
        r#"{"conn":"99999999999999999999999","data":1}"#,
    ] {
        assert_error(&post("/api/send", body), 400, "bad_field");
    }
    assert_error(&post("/api/send", r#"{"data":1}"#), 400, "missing_field");
}

#[test]
fn send_to_a_stale_id_answers_404() {
    let mut h = Harness::new();
    assert!(h
        .read(&post("/api/send", r#"{"conn":"5","data":1}"#))
        .is_some());
    assert_eq!(h.outcome(Outcome::UnknownConnection), None);
    let (st, _, body) = h.one();
    assert_eq!(st, 404);
    assert!(body.contains("unknown_connection"), "{body}");
    assert_eq!(h.conn.state(), ApiState::AwaitRequest);
}

#[test]
fn disconnect_by_conn_or_user_with_code_and_reason() {
    let c = command_of(&post("/api/disconnect", r#"{"conn":"9"}"#));
    assert_eq!(
        c,
        Command::Disconnect {
            target: Target::Conn(ConnId::from_bits(9)),
            code: CloseCode(4000),
            reason: "disconnected".into()
        }
    );
    let c = command_of(&post(
        "/api/disconnect",
        r#"{"user":"bob","code":4321,"reason":"bye"}"#,
    ));
    assert_eq!(
        c,
        Command::Disconnect {
            target: Target::User("bob".into()),
            code: CloseCode(4321),
            reason: "bye".into()
        }
    );
    for body in [
        r#"{"conn":"9","code":1000}"#,
        r#"{"conn":"9","code":5000}"#,
        r#"{"conn":"9","code":"4000"}"#,
        r#"{"conn":"9","reason":7}"#,
        r#"{"conn":"9","user":"bob"}"#,
    ] {
        assert_error(&post("/api/disconnect", body), 400, "bad_field");
    }
    let long = "r".repeat(124);
    assert_error(
        &post(
            "/api/disconnect",
            &format!(r#"{{"conn":"9","reason":"{long}"}}"#),
        ),
        400,
        "bad_field",
    );
    assert_error(&post("/api/disconnect", "{}"), 400, "missing_field");
}

#[test]
fn listings_and_their_json() {
    let mut h = Harness::new();
    assert_eq!(h.read(&get("/api/channels")), Some(Command::Channels));
    h.outcome(Outcome::Channels(vec![("b".into(), 2), ("a".into(), 1)]));
    let (st, head, body) = h.one();
    assert_eq!(st, 200);
    assert!(head.contains("application/json"));
    assert_eq!(
        body,
        "{\"channels\":[{\"channel\":\"a\",\"subscribers\":1},{\"channel\":\"b\",\"subscribers\":2}]}\n"
    );

    assert_eq!(
        h.read(&get("/api/presence?channel=room%3A1")),
        Some(Command::Presence {
            channel: "room:1".into()
        })
    );
    h.outcome(Outcome::Presence {
        channel: "room:1".into(),
        members: vec![
            (ConnId::from_bits(2), Some(Arc::from("zed \"z\""))),
            (ConnId::from_bits(1), None),
            (ConnId::from_bits(3), Some(Arc::from("amy"))),
            (ConnId::from_bits(4), Some(Arc::from("amy"))),
        ],
    });
    let (_, _, body) = h.one();
    let mut raw = body.into_bytes();
    let v = simd_json::to_owned_value(&mut raw).unwrap();
    use simd_json::prelude::*;
    assert_eq!(v["channel"].as_str(), Some("room:1"));
    let conns = v["connections"].as_array().unwrap();
    assert_eq!(conns.len(), 4);
    assert_eq!(conns[0]["conn"].as_str(), Some("2"));
    assert_eq!(conns[0]["user"].as_str(), Some("zed \"z\""));
    assert!(conns[1]["user"].is_null());
    let users: Vec<&str> = v["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u.as_str())
        .collect();
    assert_eq!(users, vec!["amy", "zed \"z\""]);

    assert_eq!(h.read(&get("/api/stats")), Some(Command::Stats));
    let a = ShardMetrics::default();
    let b = ShardMetrics::default();
    a.accepted.add(3);
    b.accepted.add(1);
    b.publishes.add(4);
    h.outcome(Outcome::Stats(Stats::from_metrics(&[&a, &b])));
    let (_, _, body) = h.one();
    assert!(
        body.starts_with(r#"{"connections":4,"shards":[{"shard":0,"connections":3,"#),
        "{body}"
    );
    assert!(body.contains(r#""publishes":4"#), "{body}");
}

#[test]
fn presence_needs_a_valid_channel() {
    assert_error(&get("/api/presence"), 400, "missing_field");
    assert_error(&get("/api/presence?channel="), 400, "bad_channel");
    assert_error(&get("/api/presence?channel=a%20b"), 400, "bad_channel");
}

#[test]
fn accepted_publish_answers_202_ok_true() {
    let mut h = Harness::new();
    h.read(&post("/api/publish", r#"{"channel":"a","data":1}"#));
    h.outcome(Outcome::Accepted);
    let (st, head, body) = h.one();
    assert_eq!(st, 202);
    assert_eq!(body, "{\"ok\":true}\n");
    assert!(!head.contains("Connection: close"));
    assert_eq!(h.m.api_requests[0].get(), 1);
}

#[test]
fn full_queue_answers_429_with_retry_after() {
    let mut h = Harness::new();
    h.read(&post("/api/publish", r#"{"channel":"a","data":1}"#));
    h.outcome(Outcome::Busy);
    let (st, head, body) = h.one();
    assert_eq!(st, 429);
    assert!(head.contains("Retry-After: 1\r\n"), "{head}");
    assert!(body.contains(r#""code":"busy""#));
    assert_eq!(h.conn.state(), ApiState::AwaitRequest);
}

#[test]
fn missing_or_wrong_key_is_401_everywhere_under_api() {
    let no_key = b"POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}";
    assert_error(no_key, 401, "unauthorized");
    let wrong = String::from_utf8(post("/api/publish", "{}"))
        .unwrap()
        .replace(KEY, "nope");
    let (st, head, _) = error_of(wrong.as_bytes());
    assert_eq!(st, 401);
    assert!(head.contains("WWW-Authenticate: Bearer"));
    let basic = b"GET /api/stats HTTP/1.1\r\nHost: x\r\nAuthorization: Basic azNZ\r\n\r\n";
    assert_error(basic, 401, "unauthorized");
    assert_error(
        b"GET /api/unknown HTTP/1.1\r\nHost: x\r\n\r\n",
        401,
        "unauthorized",
    );
}

#[test]
fn metrics_and_health_need_no_key() {
    let mut h = Harness::new();
    assert_eq!(
        h.read(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
        Some(Command::Metrics)
    );
    h.outcome(Outcome::Metrics("gateway_connections_open 1\n".into()));
    let (st, head, body) = h.one();
    assert_eq!(st, 200);
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert_eq!(body, "gateway_connections_open 1\n");
    assert_eq!(h.read(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"), None);
    assert_eq!(h.one().2, "ok\n");
}

#[test]
fn unknown_route_404_and_wrong_method_405_with_allow() {
    assert_error(&get("/api/nothing"), 404, "not_found");
    assert_error(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 404, "not_found");
    let (st, head, _) = error_of(&get("/api/publish"));
    assert_eq!(st, 405);
    assert!(head.contains("Allow: POST\r\n"), "{head}");
    let del = b"DELETE /api/channels HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k3y\r\n\r\n";
    let (st, head, _) = error_of(del);
    assert_eq!(st, 405);
    assert!(head.contains("Allow: GET\r\n"), "{head}");
}

#[test]
fn chunked_or_lengthless_bodies_get_411_and_close() {
    let chunked = format!(
        "POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
         Transfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"
    );
    let mut h = Harness::new();
    assert_eq!(h.read(chunked.as_bytes()), None);
    let (st, head, body) = h.one();
    assert_eq!(st, 411);
    assert!(body.contains("length_required"));
    assert!(head.contains("Connection: close"));
    assert_eq!(h.conn.state(), ApiState::Closed);
    let no_length =
        format!("POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\r\n");
    assert_error(no_length.as_bytes(), 411, "length_required");
}

#[test]
fn body_over_the_limit_gets_413_before_it_is_read() {
    let req = format!(
        "POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Length: 1025\r\n\r\n"
    );
    let mut h = Harness::new();
    assert_eq!(h.read(req.as_bytes()), None);
    let (st, head, body) = h.one();
    assert_eq!(st, 413);
    assert!(body.contains("too_large"), "{body}");
    assert!(head.contains("Connection: close"));
    assert_eq!(h.conn.state(), ApiState::Closed);
    // Exactly the limit is fine.
    let body = format!(r#"{{"channel":"a","data":"{}"}}"#, "x".repeat(1024 - 25));
    assert_eq!(body.len(), 1024);
    assert!(command_of(&post("/api/publish", &body)) != Command::Stats);
}

#[test]
fn malformed_heads_get_400_and_close() {
    for raw in [
        &b"GARBAGE\r\n\r\n"[..],
        b"POST /api/publish HTTP/1.1\r\nContent-Length: x\r\n\r\n",
        b"POST /api/publish HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    ] {
        let mut h = Harness::new();
        assert_eq!(h.read(raw), None);
        let (st, head, _) = h.one();
        assert_eq!(st, 400, "{}", String::from_utf8_lossy(raw));
        assert!(head.contains("Connection: close"));
        assert_eq!(h.conn.state(), ApiState::Closed);
    }
    let mut h = Harness::new();
    let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(9000));
    h.read(long.as_bytes());
    assert_eq!(h.one().0, 431);
}

#[test]
fn requests_split_at_every_byte_give_the_same_command() {
    let req = post("/api/publish", r#"{"channel":"a","data":[1]}"#);
    for split in 1..req.len() {
        let mut h = Harness::new();
        assert_eq!(h.read(&req[..split]), None, "split {split}");
        assert!(h.out.is_empty());
        assert!(h.read(&req[split..]).is_some(), "split {split}");
    }
    let mut h = Harness::new();
    let mut got = None;
    for b in &req {
        got = got.or(h.read(std::slice::from_ref(b)));
    }
    assert!(got.is_some());
}

#[test]
fn pipelined_requests_wait_for_the_outstanding_answer_in_order() {
    let mut h = Harness::new();
    let mut both = post("/api/publish", r#"{"channel":"a","data":1}"#);
    both.extend(get("/api/nothing"));
    both.extend(get("/api/channels"));
    assert!(matches!(h.read(&both), Some(Command::Publish { .. })));
    assert!(h.out.is_empty());
    // The 404 is written right after the 202, then the listing is asked for.
    assert_eq!(h.outcome(Outcome::Accepted), Some(Command::Channels));
    let statuses: Vec<u16> = h.responses().iter().map(|r| r.0).collect();
    assert_eq!(statuses, vec![202, 404]);
    h.outcome(Outcome::Channels(Vec::new()));
    assert_eq!(h.one().0, 200);
}

#[test]
fn connection_close_and_http10_end_after_the_answer() {
    let mut h = Harness::new();
    let req = String::from_utf8(get("/api/stats"))
        .unwrap()
        .replace("Host: x\r\n", "Host: x\r\nConnection: close\r\n");
    assert_eq!(h.read(req.as_bytes()), Some(Command::Stats));
    h.outcome(Outcome::Stats(Stats::default()));
    let (_, head, _) = h.one();
    assert!(head.contains("Connection: close"));
    assert_eq!(h.conn.state(), ApiState::Closed);

    let mut h = Harness::new();
    h.read(b"GET /healthz HTTP/1.0\r\n\r\n");
    assert!(h.one().1.contains("Connection: close"));
    assert_eq!(h.conn.state(), ApiState::Closed);
    // Nothing more is read once closed.
    assert_eq!(h.read(&get("/api/stats")), None);
    assert!(h.out.is_empty());
}

#[test]
fn deadlines_idle_close_and_slow_request_408() {
    let mut h = Harness::new();
    let idle = h.conn.deadline(&h.s);
    assert_eq!(idle, h.t0 + Duration::from_secs(60));
    h.conn.on_deadline(idle, &h.s, &mut h.out);
    assert!(h.out.is_empty());
    assert!(h.conn.must_drop());

    let mut h = Harness::new();
    h.read(b"GET /api/st");
    let d = h.conn.deadline(&h.s);
    assert_eq!(d, h.t0 + Duration::from_secs(10));
    h.conn
        .on_deadline(d - Duration::from_millis(1), &h.s, &mut h.out);
    assert!(!h.conn.must_drop());
    h.conn.on_deadline(d, &h.s, &mut h.out);
    assert_eq!(h.one().0, 408);
    assert!(h.conn.must_drop());
}

#[test]
fn pipelining_past_the_limit_while_waiting_drops_the_connection() {
    let mut h = Harness::new();
    assert!(h.read(&get("/api/stats")).is_some());
    let flood = vec![b'x'; h.s.max_header_bytes + h.s.max_body_bytes + 1];
    assert_eq!(h.read(&flood), None);
    assert!(h.conn.must_drop());
}

#[test]
fn outcome_without_a_command_is_ignored() {
    let mut h = Harness::new();
    assert_eq!(h.outcome(Outcome::Accepted), None);
    assert!(h.out.is_empty());
}

/// A small deterministic generator (xorshift64*), so failures replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Every response in `out` is complete and framed by its Content-Length.
fn assert_well_formed(out: &[u8]) {
    let mut rest = out;
    while !rest.is_empty() {
        let end = rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete head")
            + 4;
        let head = std::str::from_utf8(&rest[..end]).expect("UTF-8 head");
        assert!(head.starts_with("HTTP/1.1 "), "{head}");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .expect("Content-Length")
            .parse()
            .unwrap();
        assert!(rest.len() >= end + len, "body shorter than announced");
        rest = &rest[end + len..];
    }
}

#[test]
fn mutated_requests_in_random_chunks_never_panic_and_answer_well_formed() {
    let seeds: Vec<Vec<u8>> = vec![
        post("/api/publish", r#"{"channel":"a","data":{"x":[1,2,"é"]}}"#),
        post("/api/publish", r#"{"channels":["a","b"],"data":null}"#),
        post("/api/send", r#"{"conn":"123","data":"x"}"#),
        post(
            "/api/disconnect",
            r#"{"user":"u","code":4001,"reason":"r"}"#,
        ),
        get("/api/presence?channel=a%3Ab"),
        b"GET /metrics HTTP/1.1\r\n\r\n".to_vec(),
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..3000 {
        let mut input = Vec::new();
        for _ in 0..1 + rng.below(3) {
            input.extend_from_slice(&seeds[rng.below(seeds.len())]);
        }
        for _ in 0..rng.below(8) {
            let at = rng.below(input.len());
            match rng.below(4) {
                0 => input[at] = rng.next() as u8,
                1 => input.insert(at, rng.next() as u8),
                2 => {
                    input.remove(at);
                }
                _ => input.truncate(at),
            }
            if input.is_empty() {
                break;
            }
        }
        let mut h = Harness::new();
        let mut rest = &input[..];
        while !rest.is_empty() {
            let n = 1 + rng.below(rest.len().min(64));
            let (now_in, later) = rest.split_at(n);
            rest = later;
            let mut cmd = h.read(now_in);
            // Answer every command at once, as a busy router might.
            while cmd.is_some() {
                cmd = h.outcome(if round % 2 == 0 {
                    Outcome::Accepted
                } else {
                    Outcome::Busy
                });
            }
        }
        assert_well_formed(&h.out);
    }
}

#[test]
fn deeply_nested_data_is_refused_not_a_crash() {
    let depth = 200_000;
    let body = format!(
        r#"{{"channel":"a","data":{}1{}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let mut s = settings();
    s.max_body_bytes = 1 << 20;
    let mut h = Harness::new();
    h.s = s;
    assert_eq!(h.read(&post("/api/publish", &body)), None);
    let (st, _, body) = h.one();
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("deeper than 64"), "{body}");
    // 64 levels are fine, and brackets inside strings do not count.
    let ok = format!(
        r#"{{"channel":"a","data":{}"[[[[{{{{"{}}}"#,
        "[".repeat(63),
        "]".repeat(63)
    );
    assert!(matches!(
        command_of(&post("/api/publish", &ok)),
        Command::Publish { .. }
    ));
}
