//! A Socket.IO session sans IO: `Conn` and `Dispatch` on `/socket.io/`, time simulated.

use std::sync::Arc;
use std::time::{Duration, Instant};

use frame_simd::{encode_header, mask, Kernels, MaskKey, Opcode, MAX_HEADER_LEN};

use super::SioConfig;
use crate::app::{AppState, ClientState, Dispatch};
use crate::conn::{Conn, ConnId, Ctx, Output, Settings, State};
use crate::router::Router;

const KEY: MaskKey = MaskKey([1, 2, 3, 4]);

fn frame(k: &Kernels, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let mut h = [0u8; MAX_HEADER_LEN];
    let n = encode_header(&mut h, true, opcode, payload.len() as u64, Some(KEY));
    let mut body = payload.to_vec();
    mask::unmask(k, &mut body, KEY, 0);
    [&h[..n], &body[..]].concat()
}

struct Session {
    conn: Conn,
    client: ClientState,
    router: Router,
    app: AppState,
    settings: Settings,
    kernels: Kernels,
    id: ConnId,
    t0: Instant,
    /// The bytes of the last call's output.
    last: Vec<u8>,
}

impl Session {
    /// An upgraded session; returns it and what the upgrade wrote.
    fn open(cfg: SioConfig) -> (Session, String) {
        let t0 = Instant::now();
        let app = AppState::default().with_sio(Arc::new(cfg));
        let mut s = Session {
            conn: Conn::new(t0),
            client: ClientState::default(),
            router: Router::single(0),
            app,
            settings: Settings::default(),
            kernels: Kernels::detect(),
            id: ConnId::new(0, 3, 1),
            t0,
            last: Vec::new(),
        };
        let req = "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n\
                   Upgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let out = s.feed(req.as_bytes().to_vec(), 0);
        (s, out)
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn feed(&mut self, mut bytes: Vec<u8>, ms: u64) -> String {
        let now = self.at(ms);
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
            now,
        };
        self.conn.on_read(&mut bytes, now, &cx, &mut out, &mut app);
        out.finish();
        self.last = out.bytes.clone();
        String::from_utf8_lossy(&out.bytes).into_owned()
    }

    fn text(&mut self, text: &str, ms: u64) -> String {
        let f = frame(&self.kernels, Opcode::Text, text.as_bytes());
        self.feed(f, ms)
    }

    /// What the shard does when the timer fires at `ms`.
    fn tick(&mut self, ms: u64) -> String {
        let now = self.at(ms);
        let mut out = Output::new();
        if self.client.deadline().is_some_and(|t| t <= now) {
            let mut app = Dispatch {
                id: self.id,
                client: &mut self.client,
                router: &mut self.router,
                app: &mut self.app,
                now,
            };
            app.on_deadline(&mut out);
            self.conn.on_app_close(now, &mut out);
        }
        self.last = out.bytes.clone();
        String::from_utf8_lossy(&out.bytes).into_owned()
    }

    fn deadline_ms(&self) -> u128 {
        (self.client.deadline().expect("a session") - self.t0).as_millis()
    }
}

fn quick() -> SioConfig {
    SioConfig {
        ping_interval: Duration::from_millis(100),
        ping_timeout: Duration::from_millis(50),
        connect_timeout: Duration::from_millis(1000),
        ..SioConfig::default()
    }
}

/// The close code of the last close frame in `b`, if any.
fn close_code(b: &[u8]) -> Option<u16> {
    let at = b.iter().rposition(|&x| x == 0x88)?;
    let payload = b.get(at + 2..at + 4)?;
    Some(u16::from_be_bytes([payload[0], payload[1]]))
}

#[test]
fn the_open_packet_follows_the_101_and_the_socket_id_is_not_the_sid() {
    let (mut s, out) = Session::open(quick());
    assert!(out.starts_with("HTTP/1.1 101"), "{out}");
    let at = out.find("0{").expect("the open packet");
    let open: serde_json::Value = serde_json::from_str(&out[at + 1..]).expect("JSON");
    assert_eq!(open["pingInterval"], 100);
    assert_eq!(open["pingTimeout"], 50);
    assert_eq!(open["maxPayload"], 1_000_000);
    assert_eq!(open["upgrades"], serde_json::json!([]));
    let sid = open["sid"].as_str().unwrap().to_owned();
    let out = s.text("40", 1);
    let at = out.find("40{").expect("CONNECT accepted");
    let ok: serde_json::Value = serde_json::from_str(&out[at + 2..]).unwrap();
    let socket = ok["sid"].as_str().unwrap();
    assert_ne!(socket, sid);
    assert!(s.router.channels.get("sio:/").is_some());
    assert!(s.router.channels.get(&format!("sio:/:{socket}")).is_some());
}

#[test]
fn the_server_pings_and_a_missing_pong_closes_the_session() {
    let (mut s, _) = Session::open(quick());
    s.text("40", 1);
    assert_eq!(s.deadline_ms(), 100);
    assert_eq!(s.tick(99), "", "nothing before the interval");
    let out = s.tick(100);
    assert!(out.ends_with("\u{1}2"), "a ping packet: {out:?}");
    assert_eq!(s.deadline_ms(), 150, "the pong is due");
    s.text("3", 120);
    assert_eq!(s.deadline_ms(), 220, "next ping an interval after the pong");
    assert!(s.tick(220).ends_with("\u{1}2"));
    let out = s.tick(270);
    assert_eq!(close_code(&s.last), Some(1001), "{out:?}");
    assert!(out.contains("ping timeout"));
    assert_eq!(s.conn.state(), State::Closing);
}

#[test]
fn a_session_without_a_namespace_in_time_is_closed() {
    let cfg = SioConfig {
        connect_timeout: Duration::from_millis(30),
        ..quick()
    };
    let (mut s, _) = Session::open(cfg);
    assert_eq!(s.deadline_ms(), 30);
    let out = s.tick(30);
    assert_eq!(close_code(&s.last), Some(1001));
    assert!(out.contains("no namespace joined in time"), "{out:?}");
}

#[test]
fn an_unknown_namespace_is_refused_and_the_session_stays() {
    let (mut s, _) = Session::open(quick());
    let out = s.text("40/nope,", 1);
    assert!(
        out.ends_with("44/nope,{\"message\":\"Invalid namespace\"}"),
        "{out:?}"
    );
    assert_eq!(s.conn.state(), State::Open);
    assert_eq!(s.app.sio.stats.connect_errors, 1);
    assert!(s.text("40", 2).contains("40{\"sid\""));
}

#[test]
fn malformed_packets_close_with_1002_and_oversized_with_1009() {
    for bad in ["9", "4", "49", "42", "42[1]", "0{}", "4511-[\"e\"]"] {
        let (mut s, _) = Session::open(quick());
        s.text("40", 1);
        let out = s.text(bad, 2);
        assert_eq!(close_code(&s.last), Some(1002), "{bad}: {out:?}");
        assert_eq!(s.app.sio.stats.malformed, 1, "{bad}");
    }
    let (mut s, _) = Session::open(SioConfig {
        max_payload: 10,
        ..quick()
    });
    let out = s.text("42[\"chat message\",\"a long one\"]", 1);
    assert_eq!(close_code(&s.last), Some(1009), "{out:?}");
    let (mut s, _) = Session::open(quick());
    let f = frame(&s.kernels, Opcode::Binary, &[1, 2]);
    let out = s.feed(f, 1);
    assert_eq!(
        close_code(&s.last),
        Some(1002),
        "a stray attachment: {out:?}"
    );
}

#[test]
fn events_run_the_map_and_acks_answer() {
    let (mut s, _) = Session::open(quick());
    s.text("40", 1);
    let out = s.text("42[\"join\",\"lobby\"]", 2);
    assert_eq!(out, "", "no ack asked, none sent");
    assert!(s.router.channels.get("sio:/:lobby").is_some());
    let out = s.text("425[\"join\",\"bad room\"]", 3);
    assert!(
        out.ends_with("435[{\"error\":\"room names may only hold A-Z a-z 0-9 _ . : @ / -\"}]"),
        "{out:?}"
    );
    let out = s.text("426[\"leave\",\"lobby\"]", 4);
    assert!(out.ends_with("436[]"), "{out:?}");
    assert!(s.router.channels.get("sio:/:lobby").is_none());
    let out = s.text("427[\"no such event\"]", 5);
    assert_eq!(out, "", "a dropped event is not acked");
    assert_eq!(s.app.sio.stats.events, 4);
    assert_eq!(s.app.sio.stats.dropped, 2);
    let out = s.text("2probe", 6);
    assert!(out.ends_with("3probe"), "{out:?}");
}

#[test]
fn a_binary_event_waits_for_its_attachments() {
    let (mut s, _) = Session::open(quick());
    s.text("40", 1);
    let out = s.text(
        "451-[\"chat message\",{\"_placeholder\":true,\"num\":0}]",
        2,
    );
    assert_eq!(out, "");
    s.text("42[\"chat message\",\"x\"]", 3);
    assert_eq!(
        close_code(&s.last),
        Some(1002),
        "text while an attachment is due"
    );
    let (mut s, _) = Session::open(quick());
    s.text("40", 1);
    s.text(
        "452-[\"chat message\",{\"_placeholder\":true,\"num\":0}]",
        2,
    );
    let f = frame(&s.kernels, Opcode::Binary, &[1]);
    assert_eq!(s.feed(f, 3), "");
    let f = frame(&s.kernels, Opcode::Binary, &[2]);
    assert_eq!(s.feed(f, 4), "");
    assert_eq!(s.app.sio.stats.events, 1);
    assert_eq!(s.conn.state(), State::Open);
}
