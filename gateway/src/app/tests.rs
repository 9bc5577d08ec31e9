//! `Conn` and `Dispatch` together, sans IO: an upgrade on each app route, then requests.

use std::time::Instant;

use frame_simd::{encode_header, mask, Kernels, MaskKey, Opcode, MAX_HEADER_LEN};

use crate::app::{AppState, ClientState, Dispatch};
use crate::conn::{Conn, ConnId, Ctx, Output, Settings};
use crate::router::Router;

const KEY: MaskKey = MaskKey([0x37, 0xfa, 0x21, 0x3d]);

fn upgrade(path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

fn text_frame(k: &Kernels, payload: &[u8]) -> Vec<u8> {
    let mut h = [0u8; MAX_HEADER_LEN];
    let n = encode_header(&mut h, true, Opcode::Text, payload.len() as u64, Some(KEY));
    let mut body = payload.to_vec();
    mask::unmask(k, &mut body, KEY, 0);
    [&h[..n], &body[..]].concat()
}

struct Peer {
    conn: Conn,
    client: ClientState,
    router: Router,
    app: AppState,
    settings: Settings,
    kernels: Kernels,
    id: ConnId,
}

impl Peer {
    fn new() -> Peer {
        Peer {
            conn: Conn::new(Instant::now()),
            client: ClientState::default(),
            router: Router::single(0),
            app: AppState::default(),
            settings: Settings::default(),
            kernels: Kernels::detect(),
            id: ConnId::new(0, 7, 1),
        }
    }

    fn feed(&mut self, mut bytes: Vec<u8>) -> String {
        let mut out = Output::new();
        let cx = Ctx {
            settings: &self.settings,
            kernels: &self.kernels,
        };
        let mut app = Dispatch {
            id: self.id,
            client: &mut self.client,
            router: &mut self.router,
            app: &mut self.app,
            now: Instant::now(),
        };
        self.conn
            .on_read(&mut bytes, Instant::now(), &cx, &mut out, &mut app);
        out.finish();
        String::from_utf8_lossy(&out.bytes).into_owned()
    }
}

#[test]
fn an_upgrade_on_ws_is_welcomed_and_requests_are_answered() {
    let mut p = Peer::new();
    let out = p.feed(upgrade("/ws?user=J%C3%BCrgen"));
    assert!(out.starts_with("HTTP/1.1 101"), "{out}");
    let id = p.id.to_bits();
    assert!(
        out.ends_with(&format!(
            r#"{{"type":"welcome","conn":"{id}","user":"Jürgen"}}"#
        )),
        "{out}"
    );
    let frame = text_frame(&p.kernels, br#"{"op":"subscribe","channel":"c","id":[1]}"#);
    let out = p.feed(frame);
    assert!(out.contains(r#""code":"bad_field""#), "{out}");
    let frame = text_frame(&p.kernels, br#"{"op":"subscribe","channel":"c","id":"a"}"#);
    let out = p.feed(frame);
    assert!(
        out.ends_with(r#"{"type":"reply","id":"a","ok":true}"#),
        "{out}"
    );
    assert_eq!(p.client.session.channels.len(), 1);
    assert!(p.router.channels.get("c").is_some());
}

#[test]
fn a_refused_app_upgrade_sends_no_101() {
    let mut p = Peer::new();
    let out = p.feed(upgrade("/raw?channel=a%20b"));
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(!out.contains("101"), "{out}");
    assert!(p.router.channels.is_empty());
}

#[test]
fn a_user_name_breaking_the_user_rule_is_refused_with_400() {
    for query in ["user=%0A", &format!("user={}", "a".repeat(257))] {
        let mut p = Peer::new();
        let out = p.feed(upgrade(&format!("/ws?{query}")));
        assert!(out.starts_with("HTTP/1.1 400"), "{query}: {out}");
        assert!(out.contains("user "), "{out}");
    }
    let mut p = Peer::new();
    let out = p.feed(upgrade(&format!("/ws?user={}", "a".repeat(256))));
    assert!(out.starts_with("HTTP/1.1 101"), "{out}");
}

#[test]
fn echo_sends_each_message_back_and_joins_no_channel() {
    let mut p = Peer::new();
    let out = p.feed(upgrade("/echo"));
    assert!(out.starts_with("HTTP/1.1 101"), "{out}");
    let out = p.feed(text_frame(&p.kernels, b"hello"));
    assert!(
        out.ends_with("\u{5}hello"),
        "one text frame of 5 bytes: {out:?}"
    );
    assert!(p.router.channels.is_empty());
    assert_eq!(p.client.session.kind, None);
}

#[test]
fn broadcast_publishes_pub_messages_to_the_shared_channel() {
    let mut p = Peer::new();
    let out = p.feed(upgrade("/broadcast"));
    assert!(out.starts_with("HTTP/1.1 101"), "{out}");
    assert!(p.router.channels.get("broadcast").is_some());
    p.feed(text_frame(&p.kernels, b"pub:hi"));
    assert_eq!(p.router.stats.publishes, 1);
    p.feed(text_frame(&p.kernels, b"nope"));
    assert_eq!(p.router.stats.raw_ignored, 1);
}
