//! Routers of several shards on one mesh, driven by hand: messages are moved between them by
//! popping each shard's queue, as the shard loops do.

use std::sync::Arc;

use super::channels::Kind;
use super::inbox::{Mesh, ShardMsg};
use super::session::Session;
use super::*;

fn routers(n: u8, capacity: usize) -> Vec<Router> {
    let mesh = Arc::new(Mesh::new(capacity, vec![None; usize::from(n)]));
    (0..n)
        .map(|s| Router::new(s, Arc::clone(&mesh), RouterConfig::default()))
        .collect()
}

fn ws_session() -> Session {
    Session {
        kind: Some(Kind::Json),
        ..Session::default()
    }
}

/// Apply every `Interest` waiting for each router; return the other messages per shard.
fn settle(rs: &mut [Router]) -> Vec<Vec<ShardMsg>> {
    rs.iter_mut()
        .map(|r| {
            let mut other = Vec::new();
            while let Some(m) = r.pop() {
                match m {
                    ShardMsg::Interest { channel, shard, on } => {
                        r.registry.set(&channel, shard, on)
                    }
                    m => other.push(m),
                }
            }
            other
        })
        .collect()
}

#[test]
fn first_subscriber_announces_and_last_withdraws() {
    let mut rs = routers(3, 16);
    let (a, b) = (ConnId::new(1, 0, 0), ConnId::new(1, 1, 0));
    let (mut sa, mut sb) = (ws_session(), ws_session());
    rs[1].subscribe(a, &mut sa, "c").unwrap();
    rs[1].subscribe(b, &mut sb, "c").unwrap();
    settle(&mut rs);
    for r in &rs {
        assert_eq!(r.registry.shards("c").iter().collect::<Vec<_>>(), vec![1]);
    }
    rs[1].unsubscribe(a, &mut sa, "c").unwrap();
    settle(&mut rs);
    assert!(
        rs[0].registry.shards("c").contains(1),
        "one subscriber left"
    );
    rs[1].on_disconnect(b, &mut sb);
    settle(&mut rs);
    for r in &rs {
        assert!(r.registry.shards("c").is_empty());
    }
    assert_eq!(
        rs[1].unsubscribe(a, &mut sa, "c").unwrap_err().code,
        ErrorCode::NotSubscribed
    );
}

#[test]
fn a_publish_visits_only_shards_with_subscribers() {
    let mut rs = routers(3, 16);
    let sub = ConnId::new(2, 0, 0);
    rs[2].subscribe(sub, &mut ws_session(), "c").unwrap();
    settle(&mut rs);
    rs[0].actions.clear();
    rs[2].actions.clear();
    rs[0]
        .publish("c", b"1", b"1", Some(ConnId::new(0, 0, 0)), None, None)
        .unwrap();
    assert!(rs[0].actions.is_empty(), "no local subscriber");
    let msgs = settle(&mut rs);
    assert!(msgs[1].is_empty(), "shard 1 has no subscriber");
    match &msgs[2][..] {
        [ShardMsg::Deliver(d)] => {
            assert_eq!(&*d.channel, "c");
            let json = &d.json[2..];
            let v: serde_json::Value = serde_json::from_slice(json).unwrap();
            assert_eq!(v["data"], 1);
            assert_eq!(d.bare.as_deref(), Some(&[0x81, 1, b'1'][..]));
        }
        other => panic!("expected one delivery, got {other:?}"),
    }
    // A channel nobody has is a no-op.
    rs[0].publish("none", b"1", b"1", None, None, None).unwrap();
    assert!(settle(&mut rs).iter().all(Vec::is_empty));
}

#[test]
fn a_full_queue_delays_publishes_in_order_and_a_full_backlog_is_busy() {
    let mut rs = routers(2, 1);
    rs[1]
        .subscribe(ConnId::new(1, 0, 0), &mut ws_session(), "c")
        .unwrap();
    settle(&mut rs);
    for n in 0..3u8 {
        let data = [b'0' + n];
        assert_eq!(rs[0].publish("c", &data, &data, None, None, None), Ok(()));
    }
    assert_eq!(rs[0].backlog_len(), 2);
    let mut got = Vec::new();
    while let Some(ShardMsg::Deliver(d)) = rs[1].pop() {
        got.push(d.bare.as_ref().unwrap()[2]);
        rs[0].flush();
    }
    assert_eq!(got, b"012");
    // The queue holds one, the backlog MAX_BACKLOG more; then publishes are refused.
    let mut accepted = 0;
    while rs[0].publish("c", b"1", b"1", None, None, None).is_ok() {
        accepted += 1;
    }
    assert_eq!(accepted, 1 + MAX_BACKLOG);
    assert_eq!(rs[0].stats.busy, 1);
}

#[test]
fn channel_limit_and_idempotent_subscribe() {
    let mut rs = routers(1, 4);
    let id = ConnId::new(0, 0, 0);
    let mut s = ws_session();
    for i in 0..128 {
        rs[0].subscribe(id, &mut s, &format!("c{i}")).unwrap();
    }
    rs[0].subscribe(id, &mut s, "c0").unwrap();
    assert_eq!(s.channels.len(), 128);
    assert_eq!(
        rs[0].subscribe(id, &mut s, "c128").unwrap_err().code,
        ErrorCode::TooManyChannels
    );
}

#[test]
fn sends_to_an_unknown_shard_are_refused_at_once() {
    let mut rs = routers(2, 4);
    assert_eq!(
        rs[0].send(ConnId::new(5, 0, 0), b"1", None, None, None),
        Err(ErrorCode::UnknownConnection)
    );
    rs[0]
        .send(ConnId::new(1, 3, 0), b"1", None, None, None)
        .unwrap();
    assert!(matches!(
        &settle(&mut rs)[1][..],
        [ShardMsg::Direct { to, .. }] if *to == ConnId::new(1, 3, 0)
    ));
}

#[test]
fn users_are_indexed_until_disconnect() {
    let mut rs = routers(1, 4);
    let (a, b) = (ConnId::new(0, 0, 0), ConnId::new(0, 1, 0));
    let (mut sa, mut sb) = (ws_session(), ws_session());
    rs[0].set_user(a, &mut sa, Arc::from("ann"));
    rs[0].set_user(b, &mut sb, Arc::from("ann"));
    assert_eq!(rs[0].user_conns("ann"), &[a, b]);
    rs[0].on_disconnect(a, &mut sa);
    assert_eq!(rs[0].user_conns("ann"), &[b]);
    rs[0].on_disconnect(b, &mut sb);
    assert!(rs[0].user_conns("ann").is_empty());
}

#[test]
fn a_session_stays_small() {
    // An idle subscriber pays for its session inline in the shard's connection entry, plus 4
    // bytes per channel in the session and 8 in the channel's subscriber list.
    let size = std::mem::size_of::<Session>();
    println!("size_of::<Session>() = {size}");
    assert!(size <= 64, "Session grew to {size} bytes");
}

mod through_conn {
    //! `Conn` and `Dispatch` together, sans IO: an upgrade on an app route, then requests.

    use std::time::Instant;

    use frame_simd::{encode_header, mask, Kernels, MaskKey, Opcode, MAX_HEADER_LEN};

    use crate::conn::{Conn, ConnId, Ctx, Output, Settings};
    use crate::router::session::Session;
    use crate::router::{Dispatch, Router};

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
        session: Session,
        router: Router,
        settings: Settings,
        kernels: Kernels,
        id: ConnId,
    }

    impl Peer {
        fn new() -> Peer {
            Peer {
                conn: Conn::new(Instant::now()),
                session: Session::default(),
                router: Router::single(0),
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
                session: &mut self.session,
                router: &mut self.router,
            };
            self.conn
                .on_read_app(&mut bytes, Instant::now(), &cx, &mut out, &mut app);
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
        assert_eq!(p.session.channels.len(), 1);
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
}

#[test]
fn control_messages_wait_for_room_in_order_and_are_not_lost() {
    let mut rs = routers(2, 1);
    let id = ConnId::new(0, 0, 0);
    let mut s = ws_session();
    for c in ["a", "b", "c"] {
        rs[0].subscribe(id, &mut s, c).unwrap();
    }
    assert!(rs[0].has_backlog());
    let mut seen = Vec::new();
    for _ in 0..3 {
        match rs[1].pop() {
            Some(ShardMsg::Interest { channel, .. }) => seen.push(channel.to_string()),
            other => panic!("expected an interest message, got {other:?}"),
        }
        rs[0].flush();
    }
    assert_eq!(seen, ["a", "b", "c"]);
    assert!(!rs[0].has_backlog());
}
