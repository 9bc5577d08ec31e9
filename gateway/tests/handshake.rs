//! The upgrade handshake and plain HTTP routes over real sockets: every rule of the contract's
//! HTTP section, each asserting the exact status, the headers that status requires, and that an
//! error response is followed by the TCP close.

mod common;

use common::{
    accept_key, fresh_key, gateway, http_exchange, upgrade_request, Client, Gateway, GatewayExt,
    Response, SAMPLE_KEY,
};

/// Send `request` on a fresh connection, expect error `status` with the contract's error shape,
/// then the TCP close.
fn expect_error(gw: &Gateway, request: &[u8], status: u16) -> Response {
    let mut c = Client::connect(gw.addr());
    c.send_raw(request);
    let resp = c.read_response();
    resp.assert_error(status);
    c.expect_tcp_closed();
    resp
}

/// An upgrade request built from raw header lines (no defaults added).
fn request(lines: &[&str]) -> Vec<u8> {
    let mut req = lines.join("\r\n");
    req.push_str("\r\n\r\n");
    req.into_bytes()
}

#[test]
fn accept_key_helper_matches_rfc_example() {
    // RFC 6455 §1.3: the sample key hashes to this accept value.
    assert_eq!(accept_key(SAMPLE_KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

#[test]
fn upgrade_with_rfc_sample_key_switches_protocols() {
    let gw = gateway().start();
    let mut c = Client::connect(gw.addr());
    let resp = c.handshake_with_key("/echo", SAMPLE_KEY, &[]);
    resp.assert_switching(SAMPLE_KEY);
    assert_eq!(resp.header("Sec-WebSocket-Protocol"), None);
    assert!(resp.rest.is_empty(), "bytes after the 101: {:?}", resp.rest);
    c.send_text(b"hello");
    c.expect_frame(common::op::TEXT, b"hello");
    c.close_cleanly();
}

#[test]
fn upgrade_tokens_are_case_insensitive_lists() {
    let gw = gateway().start();
    let key = fresh_key();
    let req = request(&[
        "GET /echo HTTP/1.1",
        "host: localhost",
        "upgrade: WebSocket",
        "connection: keep-alive, UPGRADE",
        &format!("sec-websocket-key: {key}"),
        "sec-websocket-version: 13",
    ]);
    let mut c = Client::connect(gw.addr());
    c.send_raw(&req);
    c.read_response().assert_switching(&key);
    c.send_binary(&[1, 2, 3]);
    c.expect_frame(common::op::BINARY, &[1, 2, 3]);
    c.close_cleanly();
}

#[test]
fn upgrade_token_among_others_is_accepted() {
    let gw = gateway().start();
    let key = fresh_key();
    let req = request(&[
        "GET /echo HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: foo/1, websocket",
        "Connection: Upgrade",
        &format!("Sec-WebSocket-Key: {key}"),
        "Sec-WebSocket-Version: 13",
    ]);
    let mut c = Client::connect(gw.addr());
    c.send_raw(&req);
    c.read_response().assert_switching(&key);
    c.close_cleanly();
}

#[test]
fn method_other_than_get_is_405_with_allow() {
    let gw = gateway().start();
    let key = fresh_key();
    for method in ["POST", "PUT", "HEAD", "DELETE"] {
        let req = request(&[
            &format!("{method} /echo HTTP/1.1"),
            "Host: 127.0.0.1",
            "Upgrade: websocket",
            "Connection: Upgrade",
            &format!("Sec-WebSocket-Key: {key}"),
            "Sec-WebSocket-Version: 13",
            "Content-Length: 0",
        ]);
        let mut c = Client::connect(gw.addr());
        c.send_raw(&req);
        let resp = c.read_response();
        // A HEAD response has no body even with a Content-Length; check the status and Allow.
        assert_eq!(resp.status, 405, "{method}: {resp:#?}");
        assert_eq!(resp.header("Allow").map(str::trim), Some("GET"), "{method}");
        if method != "HEAD" {
            resp.assert_error(405);
        }
        c.expect_tcp_closed();
    }
}

#[test]
fn http_1_0_upgrade_is_400() {
    let gw = gateway().start();
    let key = fresh_key();
    let req = request(&[
        "GET /echo HTTP/1.0",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        &format!("Sec-WebSocket-Key: {key}"),
        "Sec-WebSocket-Version: 13",
    ]);
    expect_error(&gw, &req, 400);
}

#[test]
fn missing_host_is_400() {
    let gw = gateway().start();
    let key = fresh_key();
    let req = request(&[
        "GET /echo HTTP/1.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        &format!("Sec-WebSocket-Key: {key}"),
        "Sec-WebSocket-Version: 13",
    ]);
    expect_error(&gw, &req, 400);
}

#[test]
fn missing_upgrade_header_is_426_naming_websocket_and_version() {
    let gw = gateway().start();
    let key = fresh_key();
    let req = request(&[
        "GET /echo HTTP/1.1",
        "Host: 127.0.0.1",
        "Connection: Upgrade",
        &format!("Sec-WebSocket-Key: {key}"),
        "Sec-WebSocket-Version: 13",
    ]);
    let resp = expect_error(&gw, &req, 426);
    assert!(
        resp.tokens("Upgrade").iter().any(|t| t == "websocket"),
        "{resp:#?}"
    );
    assert_eq!(
        resp.header("Sec-WebSocket-Version"),
        Some("13"),
        "{resp:#?}"
    );
}

#[test]
fn plain_get_of_echo_without_upgrade_headers_is_426() {
    let gw = gateway().start();
    let resp = expect_error(&gw, b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 426);
    assert!(
        resp.tokens("Upgrade").iter().any(|t| t == "websocket"),
        "{resp:#?}"
    );
    assert_eq!(
        resp.header("Sec-WebSocket-Version"),
        Some("13"),
        "{resp:#?}"
    );
}

#[test]
fn upgrade_without_websocket_token_is_400() {
    let gw = gateway().start();
    let key = fresh_key();
    for upgrade in ["h2c", "websockets", "web socket", ""] {
        let req = request(&[
            "GET /echo HTTP/1.1",
            "Host: 127.0.0.1",
            &format!("Upgrade: {upgrade}"),
            "Connection: Upgrade",
            &format!("Sec-WebSocket-Key: {key}"),
            "Sec-WebSocket-Version: 13",
        ]);
        let resp = expect_error(&gw, &req, 400);
        assert_eq!(resp.status, 400, "Upgrade: {upgrade:?}");
    }
}

#[test]
fn connection_without_upgrade_token_is_400() {
    let gw = gateway().start();
    let key = fresh_key();
    for connection in ["keep-alive", "close", "upgraded"] {
        let req = request(&[
            "GET /echo HTTP/1.1",
            "Host: 127.0.0.1",
            "Upgrade: websocket",
            &format!("Connection: {connection}"),
            &format!("Sec-WebSocket-Key: {key}"),
            "Sec-WebSocket-Version: 13",
        ]);
        let resp = expect_error(&gw, &req, 400);
        assert_eq!(resp.status, 400, "Connection: {connection:?}");
    }
}

#[test]
fn missing_version_is_426_with_version_13() {
    let gw = gateway().start();
    let key = fresh_key();
    let req = request(&[
        "GET /echo HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        &format!("Sec-WebSocket-Key: {key}"),
    ]);
    let resp = expect_error(&gw, &req, 426);
    assert_eq!(
        resp.header("Sec-WebSocket-Version"),
        Some("13"),
        "{resp:#?}"
    );
}

#[test]
fn wrong_version_is_426_with_version_13() {
    let gw = gateway().start();
    let key = fresh_key();
    for version in ["8", "12", "14", "13, 8", "abc"] {
        let req = request(&[
            "GET /echo HTTP/1.1",
            "Host: 127.0.0.1",
            "Upgrade: websocket",
            "Connection: Upgrade",
            &format!("Sec-WebSocket-Key: {key}"),
            &format!("Sec-WebSocket-Version: {version}"),
        ]);
        let resp = expect_error(&gw, &req, 426);
        assert_eq!(
            resp.header("Sec-WebSocket-Version"),
            Some("13"),
            "version {version:?}: {resp:#?}"
        );
    }
}

#[test]
fn missing_key_is_400() {
    let gw = gateway().start();
    let req = request(&[
        "GET /echo HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Version: 13",
    ]);
    expect_error(&gw, &req, 400);
}

#[test]
fn key_that_is_not_base64_of_16_bytes_is_400() {
    let gw = gateway().start();
    let bad_keys = [
        "",
        "not base64 at all!!!!!!!",
        "dGhlIHNhbXBsZSBub25jZQ",     // 16 bytes but missing padding
        "dGhlIHNhbXBsZSBub25j",       // 15 bytes
        "dGhlIHNhbXBsZSBub25jZT8=",   // 17 bytes
        "dGhlIHNhbXBsZSBub25jZQ==AA", // trailing garbage
        "dGhlIHNhbXBsZSBub25jZQ*=",   // a character outside the alphabet
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", // 36 bytes
    ];
    for key in bad_keys {
        let req = request(&[
            "GET /echo HTTP/1.1",
            "Host: 127.0.0.1",
            "Upgrade: websocket",
            "Connection: Upgrade",
            &format!("Sec-WebSocket-Key: {key}"),
            "Sec-WebSocket-Version: 13",
        ]);
        let resp = expect_error(&gw, &req, 400);
        assert_eq!(resp.status, 400, "key {key:?}");
    }
}

#[test]
fn duplicate_version_header_is_400() {
    let gw = gateway().start();
    let key = fresh_key();
    let req = request(&[
        "GET /echo HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        &format!("Sec-WebSocket-Key: {key}"),
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Version: 13",
    ]);
    expect_error(&gw, &req, 400);
}

#[test]
fn unknown_path_is_404() {
    let gw = gateway().start();
    let key = fresh_key();
    expect_error(&gw, &upgrade_request("/nope", &key, &[]), 404);
    expect_error(&gw, &upgrade_request("/echo/extra", &key, &[]), 404);
    expect_error(
        &gw,
        b"GET /no/such/page HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        404,
    );
}

#[test]
fn origin_is_checked_against_allowed_list() {
    let gw = gateway()
        .args([
            "--allowed-origins",
            "https://app.example.com,http://localhost:3000",
        ])
        .start();
    for origin in ["https://app.example.com", "http://localhost:3000"] {
        let mut c = Client::connect(gw.addr());
        let key = fresh_key();
        c.handshake_with_key("/echo", &key, &[("Origin", origin)])
            .assert_switching(&key);
        c.close_cleanly();
    }
    // Exact match only: another scheme, port, host or a suffix is refused.
    for origin in [
        "https://evil.example.com",
        "http://app.example.com",
        "https://app.example.com.evil.net",
        "http://localhost:3001",
        "null",
    ] {
        let key = fresh_key();
        let resp = expect_error(
            &gw,
            &upgrade_request("/echo", &key, &[("Origin", origin)]),
            403,
        );
        assert_eq!(resp.status, 403, "origin {origin:?}");
    }
    // No Origin header at all (a non-browser client): accepted.
    let mut c = Client::connect(gw.addr());
    let key = fresh_key();
    c.handshake_with_key("/echo", &key, &[])
        .assert_switching(&key);
    c.close_cleanly();
}

#[test]
fn any_origin_is_accepted_without_allowed_list() {
    let gw = gateway().start();
    let mut c = Client::connect(gw.addr());
    let key = fresh_key();
    c.handshake_with_key("/echo", &key, &[("Origin", "https://anything.example")])
        .assert_switching(&key);
    c.close_cleanly();
}

/// Handshake offering `offers` (one header line each) and return the selected protocol.
fn negotiate(gw: &Gateway, offers: &[&str]) -> Option<String> {
    let key = fresh_key();
    let extra: Vec<(&str, &str)> = offers
        .iter()
        .map(|o| ("Sec-WebSocket-Protocol", *o))
        .collect();
    let mut c = Client::connect(gw.addr());
    let resp = c.handshake_with_key("/echo", &key, &extra);
    resp.assert_switching(&key);
    let chosen = resp.header("Sec-WebSocket-Protocol").map(str::to_string);
    c.send_text(b"after negotiation");
    c.expect_frame(common::op::TEXT, b"after negotiation");
    c.close_cleanly();
    chosen
}

#[test]
fn subprotocol_is_first_client_offer_the_server_supports() {
    let gw = gateway().args(["--subprotocols", "chat,superchat"]).start();
    assert_eq!(negotiate(&gw, &["chat"]).as_deref(), Some("chat"));
    assert_eq!(negotiate(&gw, &["superchat"]).as_deref(), Some("superchat"));
    // The client's order wins, not the server's preference order.
    assert_eq!(
        negotiate(&gw, &["superchat, chat"]).as_deref(),
        Some("superchat")
    );
    assert_eq!(
        negotiate(&gw, &["chat, superchat"]).as_deref(),
        Some("chat")
    );
    assert_eq!(negotiate(&gw, &["foo, bar,chat"]).as_deref(), Some("chat"));
    // Several header lines form one list, in order.
    assert_eq!(
        negotiate(&gw, &["foo", "superchat", "chat"]).as_deref(),
        Some("superchat")
    );
    assert_eq!(
        negotiate(&gw, &["foo, bar", "baz,  chat"]).as_deref(),
        Some("chat")
    );
}

#[test]
fn subprotocol_absent_when_nothing_matches() {
    let gw = gateway().args(["--subprotocols", "chat,superchat"]).start();
    assert_eq!(negotiate(&gw, &["foo, bar"]), None);
    // Tokens are compared exactly, not as prefixes or substrings.
    assert_eq!(negotiate(&gw, &["cha, chatty, superchat2"]), None);
    assert_eq!(negotiate(&gw, &[]), None);
}

#[test]
fn subprotocol_absent_when_server_supports_none() {
    let gw = gateway().start();
    assert_eq!(negotiate(&gw, &["chat, superchat"]), None);
}

#[test]
fn healthz_answers_ok_with_keep_alive() {
    let gw = gateway().start();
    let mut c = Client::connect(gw.addr());
    for _ in 0..3 {
        c.send_raw(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        let resp = c.read_response();
        assert_eq!(resp.status, 200, "{resp:#?}");
        assert_eq!(resp.version, "HTTP/1.1");
        assert_eq!(resp.body, b"ok\n");
        assert!(
            resp.header("Content-Type")
                .unwrap_or_default()
                .starts_with("text/plain"),
            "{resp:#?}"
        );
        assert!(
            !resp.tokens("Connection").iter().any(|t| t == "close"),
            "HTTP/1.1 keep-alive must be honoured: {resp:#?}"
        );
    }
    // Connection: close is honoured: the answer, then the TCP close.
    c.send_raw(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let resp = c.read_response();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"ok\n");
    c.expect_tcp_closed();
}

#[test]
fn healthz_pipelined_requests_are_all_answered() {
    let gw = gateway().start();
    let mut c = Client::connect(gw.addr());
    let one = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    c.send_raw(&[&one[..], &one[..], &one[..]].concat());
    for _ in 0..3 {
        let resp = c.read_response();
        assert_eq!((resp.status, resp.body.as_slice()), (200, &b"ok\n"[..]));
    }
}

#[test]
fn error_on_one_connection_leaves_others_served() {
    let gw = gateway().start();
    let mut open = gw.client();
    let resp = http_exchange(gw.addr(), b"GET /echo HTTP/1.1\r\n\r\n");
    resp.assert_error(400);
    open.send_text(b"still here");
    open.expect_frame(common::op::TEXT, b"still here");
    open.close_cleanly();
    gw.assert_serves();
}

#[test]
fn header_values_are_read_without_surrounding_whitespace() {
    // RFC 9110 §5.5: optional whitespace around a field value is not part of it.
    let gw = gateway().start();
    let key = fresh_key();
    let req = request(&[
        "GET /echo HTTP/1.1",
        "Host:127.0.0.1",
        "Upgrade:\twebsocket ",
        "Connection:   Upgrade\t",
        &format!("Sec-WebSocket-Key: \t{key} \t"),
        "Sec-WebSocket-Version:13  ",
    ]);
    let mut c = Client::connect(gw.addr());
    c.send_raw(&req);
    c.read_response().assert_switching(&key);
    c.send_text(b"trimmed");
    c.expect_frame(common::op::TEXT, b"trimmed");
    c.close_cleanly();
}

#[test]
fn healthz_over_http_1_0_closes_after_the_answer() {
    // HTTP/1.0 has no keep-alive by default: the answer, then the TCP close.
    let gw = gateway().start();
    let mut c = Client::connect(gw.addr());
    c.send_raw(b"GET /healthz HTTP/1.0\r\n\r\n");
    let resp = c.read_response();
    assert_eq!(
        (resp.status, resp.body.as_slice()),
        (200, &b"ok\n"[..]),
        "{resp:#?}"
    );
    c.expect_tcp_closed_within(common::PROMPT_CLOSE);
}

#[test]
fn missing_connection_header_is_400() {
    // An Upgrade header without a Connection header naming it is not an upgrade request.
    let gw = gateway().start();
    let key = fresh_key();
    let req = request(&[
        "GET /echo HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        &format!("Sec-WebSocket-Key: {key}"),
        "Sec-WebSocket-Version: 13",
    ]);
    expect_error(&gw, &req, 400);
}
