//! The seed generator: named inputs for each target covering what a fuzzer would take long to
//! find on its own (valid upgrades on every route, the JSON protocol's operations, signed tokens,
//! API requests with the key, each refusal the code knows). `gateway/examples/fuzz_seeds.rs`
//! writes them out; `scripts/fuzz-seeds.sh gateway` fuzzes from them and keeps the minimised
//! corpus in `fuzz/seeds/<target>/`.

use frame_simd::{encode_header, MaskKey, Opcode, MAX_HEADER_LEN};
use gateway::auth::Verifier;

use super::api_request::API_KEY;
use super::conn::TOKEN_SECRET;
use super::input::{read_size, script_bytes, Op};

/// One named input.
#[derive(Clone, Debug)]
pub struct Seed {
    /// A file name saying what the input is.
    pub name: String,
    /// The input.
    pub data: Vec<u8>,
}

/// The seeds of `target` (none for an unknown target).
pub fn seeds(target: &str) -> Vec<Seed> {
    let mut out = Vec::new();
    let mut add = |name: &str, data: Vec<u8>| {
        out.push(Seed {
            name: name.to_owned(),
            data,
        })
    };
    match target {
        "http_head" => http_head(&mut add),
        "conn" => conn(&mut add),
        "ws_request" => ws_request(&mut add),
        "api_request" => api_request(&mut add),
        "token" => token(&mut add),
        "query" => query(&mut add),
        "broker" => broker(&mut add),
        "sio_packet" => sio_packet(&mut add),
        "hook_answer" => hook_answer(&mut add),
        "nats" => nats(&mut add),
        _ => {}
    }
    out
}

type Add<'a> = &'a mut dyn FnMut(&str, Vec<u8>);

const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const MASK: MaskKey = MaskKey([0x37, 0xfa, 0x21, 0x3d]);

/// An upgrade request for `target` with `extra` header lines (each ending in `\r\n`).
fn upgrade(target: &str, extra: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// A masked client frame.
fn frame(opcode: Opcode, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut h = [0u8; MAX_HEADER_LEN];
    let n = encode_header(&mut h, fin, opcode, payload.len() as u64, Some(MASK));
    let masked = payload.iter().enumerate().map(|(i, b)| b ^ MASK.0[i % 4]);
    h[..n].iter().copied().chain(masked).collect()
}

fn text(s: &str) -> Vec<u8> {
    frame(Opcode::Text, true, s.as_bytes())
}

fn close(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    frame(Opcode::Close, true, &p)
}

/// A token signed with the secret `conn` inputs verify with, valid until 2096.
fn conn_token(claims: &str) -> String {
    Verifier::new(TOKEN_SECRET).sign(claims)
}

// ---------------------------------------------------------------------------------------------

fn http_head(add: Add<'_>) {
    let strict = 0x10;
    let heads: [(&str, u8, String); 16] = [
        ("upgrade", 0, upgrade("/ws", "")),
        (
            "upgrade-protocols-origin",
            strict,
            upgrade(
                "/ws",
                "Sec-WebSocket-Protocol: x, chat.v1\r\nSec-WebSocket-Protocol: chat.v2\r\n\
                 Origin: https://app.example\r\n",
            ),
        ),
        ("origin-refused", strict, upgrade("/", "Origin: https://evil.example\r\n")),
        ("token-lists", 0, "GET /echo HTTP/1.1\r\nhost: a\r\nupgrade: h2c, WebSocket\r\nconnection: keep-alive,\tUpgrade\r\nsec-websocket-key:  AAAAAAAAAAAAAAAAAAAAAA== \r\nsec-websocket-version: 13\r\n\r\n".into()),
        ("bad-key", 0, upgrade("/ws", "").replace(WS_KEY, "dGhlIHNhbXBsZSBub25jZQ")),
        ("duplicate-key", 0, upgrade("/ws", &format!("Sec-WebSocket-Key: {WS_KEY}\r\n"))),
        ("version-8", 0, upgrade("/ws", "").replace("Version: 13", "Version: 8")),
        ("no-upgrade", 0, "GET /ws HTTP/1.1\r\nHost: gw\r\n\r\n".into()),
        ("post", 0, upgrade("/ws", "").replacen("GET", "POST", 1)),
        ("http-1.0", 0, upgrade("/ws", "").replacen("1.1", "1.0", 1)),
        ("no-host", 0, upgrade("/ws", "").replace("Host: gw\r\n", "")),
        ("lf-only", 0, upgrade("/ws", "").replace("\r\n", "\n") + "\r\n\r\n"),
        ("long-line-414", 1, format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(60))),
        ("long-head-431", 2, upgrade("/ws", &"X-Pad: 0123456789abcdef\r\n".repeat(8))),
        ("too-many-headers", 0x08, upgrade("/ws", "")),
        ("many-headers-heap", 0x0c, upgrade("/ws", &"A: b\r\n".repeat(80))),
    ];
    for (name, limits, head) in heads {
        for (step_name, step) in [("whole", 255u8), ("bytewise", 0)] {
            let mut data = vec![limits, step];
            data.extend_from_slice(head.as_bytes());
            add(&format!("{name}-{step_name}"), data);
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// A `conn` input: settings, auth, the ops, the stream.
fn conn_input(settings: u8, auth: u8, ops: &[Op], stream: &[u8]) -> Vec<u8> {
    let mut data = vec![settings, auth];
    data.extend(script_bytes(ops));
    data.extend_from_slice(stream);
    data
}

/// Reads of exactly `n` bytes in all (each read as large as a script can say).
fn reads(mut n: usize) -> Vec<Op> {
    let mut ops = Vec::new();
    while n > 0 {
        let [_, arg] = Op::Read(n).to_bytes();
        let size = read_size(arg);
        ops.push(Op::Read(size));
        n -= size;
    }
    ops
}

/// `first`, then `then`.
fn and(first: Vec<Op>, then: &[Op]) -> Vec<Op> {
    [first, then.to_vec()].concat()
}

fn conn(add: Add<'_>) {
    let hello = [
        upgrade("/echo", "").into_bytes(),
        text("hello"),
        frame(Opcode::Ping, true, b"p"),
        frame(Opcode::Binary, true, &[0, 1, 2, 255]),
        close(1000, "bye"),
    ]
    .concat();
    add("echo-whole", conn_input(0, 0, &[], &hello));
    add(
        "echo-reads-of-7",
        conn_input(0, 0, &[Op::Read(7); 60], &hello),
    );
    add(
        "echo-bytewise",
        conn_input(0, 0, &[Op::Read(1); 255], &hello),
    );

    let fragmented = [
        upgrade("/echo", "").into_bytes(),
        frame(Opcode::Text, false, "caf".as_bytes()),
        frame(Opcode::Ping, true, b"between"),
        frame(
            Opcode::Continuation,
            false,
            &"\u{e9} \u{1f600}".as_bytes()[..3],
        ),
        frame(
            Opcode::Continuation,
            true,
            &"\u{e9} \u{1f600}".as_bytes()[3..],
        ),
        close(1001, ""),
    ]
    .concat();
    add("fragmented-with-ping", conn_input(0, 0, &[], &fragmented));
    add("too-many-fragments", conn_input(0x40, 0, &[], &fragmented));

    let ws = [
        upgrade("/ws?user=J%C3%BCrgen", "").into_bytes(),
        text(r#"{"op":"subscribe","channel":"room:1","id":1}"#),
        text(r#"{"op":"publish","channel":"room:1","data":{"t":"hi","n":[1,2.5,null]},"id":"p"}"#),
        text(r#"{"op":"publish","channel":"room:1","data":"x","skip_self":true}"#),
        text(r#"{"op":"presence","channel":"room:1","id":2}"#),
        text(&format!(
            r#"{{"op":"send","conn":"{}","data":[true]}}"#,
            7u64 << 32 | 1
        )),
        text(r#"{"op":"ping","id":1e3}"#),
        text(r#"{"op":"refresh","token":"a.b.c"}"#),
        text(r#"{"op":"unsubscribe","channel":"room:1"}"#),
        text(r#"{"op":"nope"}"#),
        text("[1,2"),
        frame(Opcode::Binary, true, b"{}"),
        close(1000, ""),
    ]
    .concat();
    add("ws-protocol", conn_input(0, 0, &[], &ws));
    let token =
        conn_token(r#"{"sub":"ann","exp":4000000000,"channels":["room:*"],"publish":["room:1"]}"#);
    let with_token = [
        upgrade(&format!("/ws?token={token}"), "").into_bytes(),
        text(r#"{"op":"subscribe","channel":"other"}"#),
        text(&format!(r#"{{"op":"refresh","token":"{token}"}}"#)),
    ]
    .concat();
    add("ws-token", conn_input(0, 2, &[], &with_token));
    add(
        "ws-token-not-configured",
        conn_input(0, 0, &[], &with_token),
    );
    add(
        "ws-token-required-missing",
        conn_input(0, 2, &[], upgrade("/ws", "").as_bytes()),
    );
    let bearer = upgrade(
        "/ws",
        &format!("Sec-WebSocket-Protocol: bearer.{token}\r\n"),
    );
    add(
        "ws-token-as-protocol",
        conn_input(0x80, 1, &[], bearer.as_bytes()),
    );

    let raw = [
        upgrade("/raw?channel=a&channel=b%3Ac", "").into_bytes(),
        text("ignored"),
        close(4000, "done"),
    ]
    .concat();
    add("raw", conn_input(0, 0, &[], &raw));
    add(
        "raw-bad-channel",
        conn_input(0, 0, &[], upgrade("/raw?channel=a%20b", "").as_bytes()),
    );
    let broadcast = [
        upgrade("/broadcast", "").into_bytes(),
        text("pub:hi"),
        text("nope"),
    ]
    .concat();
    add("broadcast", conn_input(0, 0, &[], &broadcast));

    let opened = upgrade("/echo", "").into_bytes();
    let violations: [(&str, u8, Vec<u8>); 9] = [
        (
            "invalid-utf8",
            0,
            frame(Opcode::Text, true, b"ok \xed\xa0\x80"),
        ),
        ("close-1005", 0, close(1005, "")),
        ("close-one-byte", 0, frame(Opcode::Close, true, &[3])),
        (
            "close-bad-reason",
            0,
            close(1000, "\u{e9}")
                .split_last()
                .map(|(_, f)| f.to_vec())
                .unwrap_or_default(),
        ),
        ("unmasked", 0, vec![0x81, 0x02, b'h', b'i']),
        (
            "rsv1",
            0,
            [vec![0xc1], frame(Opcode::Text, true, b"x")[1..].to_vec()].concat(),
        ),
        (
            "frame-over-125",
            0x08,
            frame(Opcode::Binary, true, &[7; 126]),
        ),
        (
            "message-over-10",
            0x10,
            [
                frame(Opcode::Text, false, b"12345"),
                frame(Opcode::Continuation, true, b"678901"),
            ]
            .concat(),
        ),
        ("ping-126", 0, frame(Opcode::Ping, true, &[1; 126])),
    ];
    for (name, settings, frames) in violations {
        let stream = [opened.clone(), frames, close(1000, "")].concat();
        add(name, conn_input(settings, 0, &[], &stream));
    }

    deflate(add);

    let keep_alive = [
        "GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n",
        "GET /chat.js HTTP/1.1\r\nHost: gw\r\n\r\n",
        &upgrade("/echo", ""),
    ]
    .concat()
    .into_bytes();
    add(
        "keep-alive-then-upgrade",
        conn_input(0, 0, &[], &[keep_alive, text("x")].concat()),
    );
    let plain: [(&str, u8, &str); 6] = [
        (
            "page-close",
            0,
            "GET / HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
        ),
        ("not-found", 0, "GET /nope HTTP/1.1\r\nHost: gw\r\n\r\n"),
        (
            "healthz-post",
            0,
            "POST /healthz HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\r\n",
        ),
        ("healthz-http-1.0", 0, "GET /healthz HTTP/1.0\r\n\r\n"),
        ("malformed", 0, "GET\x01 / HTTP/1.1\r\n\r\n"),
        (
            "head-too-long",
            1,
            "GET /0123456789012345678901234567890123456789 HTTP/1.1\r\n\r\n",
        ),
    ];
    for (name, settings, req) in plain {
        add(name, conn_input(settings, 0, &[], req.as_bytes()));
    }

    let half = &opened[..20];
    let timed: [(&str, Vec<Op>, &[u8]); 6] = [
        (
            "handshake-timeout",
            vec![Op::Read(20), Op::Deadline { late: 0 }],
            half,
        ),
        (
            "early-timer",
            vec![Op::Read(20), Op::Wait { secs: 3 }, Op::Wait { secs: 9 }],
            half,
        ),
        (
            "ping-then-pong-timeout",
            vec![
                Op::Read(255),
                Op::Deadline { late: 0 },
                Op::Deadline { late: 1 },
            ],
            &opened,
        ),
        (
            "shutdown-open",
            and(reads(opened.len() + 11), &[Op::Shutdown]),
            &hello,
        ),
        (
            "shutdown-mid-request",
            vec![Op::Read(20), Op::Shutdown],
            half,
        ),
        (
            "peer-eof-mid-frame",
            and(reads(opened.len() + 3), &[Op::PeerEof]),
            &hello,
        ),
    ];
    for (name, ops, stream) in timed {
        add(name, conn_input(0, 0, &ops, stream));
    }
    let closing = [opened.clone(), text("a"), close(4000, "")].concat();
    add(
        "close-request-then-peer-close",
        conn_input(
            0,
            0,
            &and(
                reads(opened.len()),
                &[Op::Other(1), Op::Read(255), Op::Deadline { late: 0 }],
            ),
            &closing,
        ),
    );
    add(
        "close-request-long-reason",
        conn_input(0, 0, &and(reads(opened.len()), &[Op::Other(200)]), &closing),
    );
}

// ---------------------------------------------------------------------------------------------

fn ws_request(add: Add<'_>) {
    let deep = "[".repeat(70) + &"]".repeat(70);
    let requests: [(&str, String); 16] = [
        ("subscribe", r#"{"op":"subscribe","channel":"room:1","id":1}"#.into()),
        ("unsubscribe", r#"{"op":"unsubscribe","channel":"a","id":"x"}"#.into()),
        ("presence", r#"{"op":"presence","channel":"news.eu"}"#.into()),
        ("publish", r#"{"op":"publish","channel":"c","data":{"a":[1,-2,3.5e10,true,null],"b":"\u00e9\n\"q\""},"skip_self":true,"id":-3}"#.into()),
        ("publish-skip-null", r#"{"op":"publish","channel":"c","data":"s","skip_self":null}"#.into()),
        ("publish-skip-bad", r#"{"op":"publish","channel":"c","data":1,"skip_self":1}"#.into()),
        ("send", r#"{"op":"send","conn":"30064771073","data":[{}]}"#.into()),
        ("send-number-conn", r#"{"op":"send","conn":30064771073,"data":1.5}"#.into()),
        ("refresh", r#"{"op":"refresh","token":"h.c.s","id":18446744073709551615}"#.into()),
        ("ping-float-id", r#"{"op":"ping","id":1e308}"#.into()),
        ("id-object", r#"{"op":"ping","id":{}}"#.into()),
        ("unknown-op", r#"{"op":"x","id":"\ud83d\ude00"}"#.into()),
        ("bad-channel", r#"{"op":"subscribe","channel":"a b"}"#.into()),
        ("not-object", "[1,2,3]".into()),
        ("truncated", r#"{"op":"publish","channel":"c","data":{"a":"#.into()),
        ("deep-data", format!(r#"{{"op":"publish","channel":"c","data":{deep}}}"#)),
    ];
    for (name, json) in requests {
        add(name, json.into_bytes());
    }
}

// ---------------------------------------------------------------------------------------------

fn api_input(settings: u8, ops: &[Op], stream: &str) -> Vec<u8> {
    let mut data = vec![settings];
    data.extend(script_bytes(ops));
    data.extend_from_slice(stream.as_bytes());
    data
}

fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {API_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {API_KEY}\r\n\r\n")
}

fn api_request(add: Add<'_>) {
    let requests: [(&str, String); 16] = [
        (
            "publish",
            post("/api/publish", r#"{"channel":"room:1","data":{"a":[1,2]}}"#),
        ),
        (
            "publish-many",
            post(
                "/api/publish",
                r#"{"channels":["b","a"],"data":"hi \"there\""}"#,
            ),
        ),
        (
            "publish-user",
            post("/api/publish/user", r#"{"user":"ann","data":null}"#),
        ),
        (
            "send",
            post("/api/send", r#"{"conn":"30064771073","data":1}"#),
        ),
        (
            "disconnect",
            post(
                "/api/disconnect",
                r#"{"conn":"30064771073","code":4001,"reason":"bye"}"#,
            ),
        ),
        (
            "disconnect-user",
            post("/api/disconnect", r#"{"user":"ann"}"#),
        ),
        ("channels", get("/api/channels")),
        ("presence", get("/api/presence?channel=room%3A1")),
        ("stats", get("/api/stats")),
        (
            "metrics",
            "GET /metrics HTTP/1.1\r\nHost: api\r\n\r\n".into(),
        ),
        (
            "healthz-close",
            "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n".into(),
        ),
        (
            "unauthorized",
            "GET /api/stats HTTP/1.1\r\nAuthorization: Bearer nope\r\n\r\n".into(),
        ),
        ("wrong-method", get("/api/publish")),
        (
            "chunked",
            post("/api/publish", "").replace("Content-Length: 0", "Transfer-Encoding: chunked"),
        ),
        ("bad-json", post("/api/publish", r#"{"channel":"#)),
        (
            "deep-json",
            post(
                "/api/publish",
                &format!(r#"{{"channel":"a","data":{}}}"#, "[".repeat(70)),
            ),
        ),
    ];
    for (name, req) in &requests {
        add(name, api_input(0, &[], req));
    }
    let pipelined: String = requests.iter().take(10).map(|(_, r)| r.as_str()).collect();
    add("pipelined-answered-at-once", api_input(0, &[], &pipelined));
    add(
        "pipelined-in-reads",
        api_input(
            0,
            &[
                Op::Read(40),
                Op::Other(1),
                Op::Read(300),
                Op::Other(3),
                Op::Other(0),
            ],
            &pipelined,
        ),
    );
    add("too-large-body", api_input(2, &[], &requests[0].1));
    add("head-too-large", api_input(0x04, &[], &requests[0].1));
    add("too-many-headers", api_input(0x10, &[], &requests[0].1));
    add(
        "http-1.0",
        api_input(0, &[], &get("/api/stats").replacen("1.1", "1.0", 1)),
    );
    add(
        "conflicting-length",
        api_input(
            0,
            &[],
            &post("/api/send", "{}").replace("\r\n\r\n", "\r\nContent-Length: 3\r\n\r\n"),
        ),
    );
    add(
        "request-timeout",
        api_input(0, &[Op::Read(30), Op::Deadline { late: 0 }], &requests[0].1),
    );
    add(
        "idle-timeout",
        api_input(
            0,
            &[Op::Read(255), Op::Other(0), Op::Deadline { late: 1 }],
            &requests[6].1,
        ),
    );
    add(
        "shutdown-outstanding",
        api_input(0, &[Op::Read(255), Op::Shutdown, Op::Other(0)], &pipelined),
    );
    add(
        "peer-eof",
        api_input(0, &[Op::Read(50), Op::PeerEof], &requests[0].1),
    );
}

// ---------------------------------------------------------------------------------------------

/// A `token` input: secret, clock, the byte to change and how, then the bytes.
fn token_input(secret: &[u8], now: u8, change_at: u16, bytes: &[u8]) -> Vec<u8> {
    let mut data = vec![secret.len() as u8];
    data.extend_from_slice(secret);
    data.push(now);
    data.extend(change_at.to_le_bytes());
    data.push(0x20);
    data.extend_from_slice(bytes);
    data
}

fn token(add: Add<'_>) {
    let secret = b"s3cret";
    let v = Verifier::new(secret);
    let claims: [(&str, &str); 10] = [
        (
            "full",
            r#"{"sub":"ann","exp":4000000000,"nbf":1,"iat":1.5,"channels":["room:*","news"],"publish":["room:1"]}"#,
        ),
        ("minimal", r#"{"sub":"a","exp":1700000001}"#),
        ("expired", r#"{"sub":"a","exp":5}"#),
        (
            "not-yet",
            r#"{"sub":"a","exp":4000000000,"nbf":3000000000}"#,
        ),
        ("no-sub", r#"{"exp":4000000000}"#),
        ("sub-null", r#"{"sub":null,"exp":4000000000}"#),
        ("exp-float", r#"{"sub":"a","exp":3.9e9}"#),
        ("exp-negative", r#"{"sub":"a","exp":-1}"#),
        (
            "bad-pattern",
            r#"{"sub":"a","exp":4000000000,"channels":["a*b"]}"#,
        ),
        ("escaped-sub", r#"{"sub":"\u00e9\"\n","exp":4000000000}"#),
    ];
    for (name, c) in claims {
        // As a token to verify (changed at the signature), and as claims to sign.
        let t = v.sign(c);
        add(
            &format!("token-{name}"),
            token_input(secret, 1, t.len() as u16 - 3, t.as_bytes()),
        );
        add(
            &format!("claims-{name}"),
            token_input(secret, 1, 40, c.as_bytes()),
        );
    }
    let forged: [(&str, String); 5] = [
        (
            "alg-none",
            "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIiwiZXhwIjo0MDAwMDAwMDAwfQ.".into(),
        ),
        (
            "alg-rs256",
            "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln".into(),
        ),
        ("padded", v.sign(claims[1].1) + "="),
        ("four-parts", v.sign(claims[1].1) + ".x"),
        ("empty-secret", Verifier::new(b"").sign(claims[1].1)),
    ];
    for (name, t) in forged {
        add(name, token_input(secret, 2, 0, t.as_bytes()));
    }
}

// ---------------------------------------------------------------------------------------------

fn query(add: Add<'_>) {
    let texts: [(&str, &str); 8] = [
        (
            "pairs",
            "channel=a&channel=room%3A1&user=J%C3%BCrgen+B&flag",
        ),
        ("token", "user=ann&token=h.c.s&token=2"),
        ("bad-escapes", "user=%zz&a=%ff&b=%&c=%4"),
        ("empty-pairs", "&&=&a=&=b"),
        ("unicode", "k\u{e9}y=v\u{1f600}+x%20y"),
        ("plain", "abc"),
        ("percent-utf8-split", "a=%C3&b=%A9"),
        ("empty", ""),
    ];
    for (i, (name, text)) in texts.into_iter().enumerate() {
        let mut data = vec![i as u8 * 5];
        data.extend_from_slice(text.as_bytes());
        add(name, data);
    }
}

fn broker(add: Add<'_>) {
    use gateway::broker::wire::{encode, Msg};
    use gateway::conn::ConnId;
    let resp: [(&str, &[u8]); 7] = [
        (
            "message",
            b"*3\r\n$7\r\nmessage\r\n$7\r\ngw:c:ab\r\n$2\r\nhi\r\n",
        ),
        ("pong", b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"),
        (
            "subscribe-ack",
            b"*3\r\n$9\r\nsubscribe\r\n$6\r\ngw:all\r\n:2\r\n",
        ),
        ("integer", b":12\r\n"),
        ("error", b"-ERR unknown command\r\n"),
        ("nulls", b"*2\r\n$-1\r\n*-1\r\n"),
        ("push", b">2\r\n+a\r\n:-1\r\n"),
    ];
    for (name, bytes) in resp {
        add(&format!("resp-{name}"), bytes.to_vec());
    }
    let c = ConnId::on_node(7, 1, 2, 3);
    let msgs = [
        (
            "publish",
            Msg::Publish {
                origin: 7,
                from: Some(c),
                user: Some("ann"),
                data: b"{\"a\":1}",
                bare: b"x",
            },
        ),
        (
            "frames",
            Msg::Frames {
                origin: 7,
                skip: Some(c),
                frames: b"\x81\x0c42[\"news\",1]",
            },
        ),
        (
            "direct",
            Msg::Direct {
                to: c,
                reply: Some((c, b"12345678")),
                frame: b"\x81\x01x",
            },
        ),
        (
            "outcome",
            Msg::Outcome {
                conn: c,
                tag: b"12345678",
                delivered: true,
            },
        ),
        (
            "close-user",
            Msg::CloseUser {
                origin: 2,
                user: "bob",
                code: 4000,
                reason: "bye",
            },
        ),
        (
            "heartbeat",
            Msg::Heartbeat {
                origin: 9,
                instance: 42,
            },
        ),
    ];
    for (name, msg) in msgs {
        let mut data = Vec::new();
        encode(&msg, &mut data);
        add(&format!("wire-{name}"), data);
    }
    add("args", b"PUBLISH\xffgw:c:a\xff\r\n".to_vec());
}

fn sio_packet(add: Add<'_>) {
    let texts: [(&str, &str); 12] = [
        ("connect", "40"),
        ("connect-auth-nsp", "40/admin,{\"token\":\"abc\"}"),
        ("event", "42[\"chat message\",\"hi\"]"),
        ("event-ack-nsp", "42/chat,17[\"join\",\"room-1\"]"),
        ("ack", "43/chat,17[true,{\"a\":[1,2]}]"),
        (
            "binary-event",
            "451-[\"up\",{\"_placeholder\":true,\"num\":0}]\x1ebAQID",
        ),
        ("binary-ack", "462-/x,3[{\"_placeholder\":true,\"num\":0}]"),
        ("batch", "2\x1e3\x1e41/admin,\x1e6\x1e5"),
        ("probe", "2probe"),
        ("too-many-attachments", "4511-[\"e\"]"),
        ("bad-base64", "b!!!"),
        ("disconnect", "41"),
    ];
    for (i, (name, text)) in texts.into_iter().enumerate() {
        let mut data = vec![10 + i as u8 % 2];
        data.extend_from_slice(text.as_bytes());
        add(name, data);
    }
}

/// `hook_answer` inputs: a read size, then a backend's answer.
fn hook_answer(add: Add<'_>) {
    let answer = |body: &str| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let bodies = [
        (
            "connect-allow",
            r#"{"allow":true,"user":"ann","channels":["user:ann"],"data":{"n":1},"expires_at":4000000000}"#,
        ),
        (
            "connect-deny-status",
            r#"{"allow":false,"status":401,"reason":"no session"}"#,
        ),
        (
            "connect-deny-close",
            r#"{"allow":false,"close_code":4403,"reason":"banned"}"#,
        ),
        ("decision-rewrite", r#"{"allow":true,"data":"HELLO"}"#),
        ("rpc-result", r#"{"result":{"sum":3}}"#),
        (
            "rpc-error",
            r#"{"error":{"code":"nope","message":"no such method"}}"#,
        ),
        (
            "forward",
            r#"{"send":["hi",{"a":1}],"subscribe":["news"],"unsubscribe":["old"],"publish":[{"channel":"news","data":"x"}],"close":{"code":4000,"reason":"bye"}}"#,
        ),
    ];
    for (name, body) in bodies {
        let mut data = vec![3];
        data.extend_from_slice(answer(body).as_bytes());
        add(name, data);
    }
    for (name, raw) in [
        (
            "status-500",
            "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\n{}",
        ),
        (
            "chunked",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        ),
        ("close-delimited", "HTTP/1.0 200 OK\r\n\r\n{\"allow\":true}"),
        (
            "cut",
            "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"res",
        ),
        ("garbage", "this is not HTTP at all\r\n\r\n"),
    ] {
        let mut data = vec![1];
        data.extend_from_slice(raw.as_bytes());
        add(name, data);
    }
}

// ---------------------------------------------------------------------------------------------

/// Raw DEFLATE of `data` ending in a sync flush, without its last four bytes (RFC 7692 §7.2.1).
fn deflated(data: &[u8]) -> Vec<u8> {
    let mut c = flate2::Compress::new(flate2::Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    c.compress_vec(data, &mut out, flate2::FlushCompress::Sync)
        .expect("compressing into a large enough buffer");
    assert!(
        out.ends_with(&[0, 0, 0xff, 0xff]),
        "a sync flush ends the output"
    );
    out.truncate(out.len() - 4);
    out
}

/// `frame` with RSV1 set: the first frame of a compressed message.
fn compressed(opcode: Opcode, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut f = frame(opcode, fin, payload);
    f[0] |= 0x40;
    f
}

/// `conn` inputs on a connection that negotiated permessage-deflate: compressed messages whole
/// and fragmented (echoed compressed when over the threshold), and each compressed violation:
/// RSV1 on a control or continuation frame, data that is not DEFLATE, inflated text that is not
/// UTF-8, and a bomb that passes the message limit.
fn deflate(add: Add<'_>) {
    let offers = [
        ("plain", "permessage-deflate"),
        ("client-bits", "permessage-deflate; client_max_window_bits"),
        (
            "server-bits-10",
            "permessage-deflate; server_max_window_bits=10; client_no_context_takeover",
        ),
        (
            "bad-then-good",
            "permessage-deflate; server_max_window_bits=7, permessage-deflate",
        ),
        (
            "duplicate",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        ),
    ];
    let long = format!("{{\"t\":\"{}\"}}", "chat ".repeat(60));
    for (name, offer) in offers {
        let open = upgrade("/echo", &format!("Sec-WebSocket-Extensions: {offer}\r\n"));
        let stream = [
            open.into_bytes(),
            compressed(Opcode::Text, true, &deflated(b"hello")),
            compressed(Opcode::Text, true, &deflated(long.as_bytes())),
            close(1000, ""),
        ]
        .concat();
        add(&format!("deflate-{name}"), conn_input(0, 0, &[], &stream));
    }

    let open = upgrade("/echo", "Sec-WebSocket-Extensions: permessage-deflate\r\n").into_bytes();
    let whole = deflated(long.as_bytes());
    let (first, rest) = whole.split_at(whole.len() / 2);
    let bomb = deflated(&[b'a'; 4096]);
    let cases: [(&str, u8, Vec<u8>); 7] = [
        (
            "fragmented",
            0,
            [
                compressed(Opcode::Text, false, first),
                frame(Opcode::Ping, true, b"mid"),
                frame(Opcode::Continuation, true, rest),
            ]
            .concat(),
        ),
        (
            "binary-and-uncompressed",
            0,
            [
                compressed(Opcode::Binary, true, &deflated(&[0, 1, 2, 255])),
                text(&long),
            ]
            .concat(),
        ),
        ("rsv1-ping", 0, compressed(Opcode::Ping, true, b"p")),
        (
            "rsv1-continuation",
            0,
            [
                compressed(Opcode::Text, false, first),
                compressed(Opcode::Continuation, true, rest),
            ]
            .concat(),
        ),
        ("not-deflate", 0, compressed(Opcode::Text, true, &[0xff; 9])),
        (
            "inflated-not-utf8",
            0,
            compressed(Opcode::Text, true, &deflated(b"ok \xed\xa0\x80")),
        ),
        (
            "bomb-over-200",
            0x20,
            compressed(Opcode::Binary, true, &bomb),
        ),
    ];
    for (name, settings, frames) in cases {
        let stream = [open.clone(), frames, close(1000, "")].concat();
        add(
            &format!("deflate-{name}"),
            conn_input(settings, 0, &[], &stream),
        );
    }
}

fn nats(add: Add<'_>) {
    let ops: [(&str, &[u8]); 9] = [
        (
            "info",
            b"INFO {\"server_id\":\"N\",\"max_payload\":1048576,\"proto\":1}\r\n",
        ),
        ("msg", b"MSG gw:c:room 3 5\r\nhello\r\n"),
        ("msg-reply", b"MSG gw:n:1 1 _INBOX.a 0\r\n\r\n"),
        (
            "hmsg",
            b"HMSG gw:all 2 18 20\r\nNATS/1.0\r\nk: v\r\n\r\nhi\r\n",
        ),
        ("ping-pong", b"PING\r\nPONG\r\n"),
        ("ok", b"+OK\r\n"),
        ("err", b"-ERR 'Maximum Payload Violation'\r\n"),
        ("bad-size", b"MSG a 1 2\r\nabc\r\n"),
        ("stream", b"INFO {}\r\nPING\r\nMSG a 1 1\r\nx\r\n+OK\r\n"),
    ];
    for (name, bytes) in ops {
        for read in [0u8, 6] {
            let mut data = vec![read];
            data.extend_from_slice(bytes);
            add(&format!("{name}-read{}", read + 1), data);
        }
    }
}
