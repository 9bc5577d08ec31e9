//! `sio_packet`: the Socket.IO codecs (`gateway::app::sio::{engine, packet}`) on arbitrary text:
//! a long-polling payload split into Engine.IO packets, each message parsed as a Socket.IO packet.
//!
//! Asserts: nothing panics; every record of an accepted payload is a packet the separator did not
//! cut (its text holds no `\x1e`); an accepted Socket.IO packet keeps its limits (attachments,
//! namespace rule and length, event name length, ack ids only up to 2^53-1, ACKs with an id);
//! an accepted event written back with `encode_event` parses to the same namespace, id, name and
//! arguments; re-encoding an accepted payload with `encode_record` parses to the same packets.

use gateway::app::sio::engine::{self, Data};
use gateway::app::sio::packet::{self, check_namespace, Limits, PacketType, Payload, MAX_ACK_ID};

use super::input::Input;

/// Input: a limits byte (attachments allowed), then the payload.
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let limits = Limits {
        max_attachments: usize::from(input.byte() % 12),
        ..Limits::default()
    };
    let body = input.rest();
    let mut scratch = Vec::new();
    let mut packets: Vec<(engine::PacketType, Vec<u8>, bool)> = Vec::new();
    let parsed = engine::parse_payload(body, 1 << 16, 64, &mut scratch, |p| {
        let (bytes, binary) = match p.data {
            Data::Text(t) => (t.to_vec(), false),
            Data::Binary(b) => (b.to_vec(), true),
        };
        packets.push((p.kind, bytes, binary));
    });
    for (kind, bytes, binary) in &packets {
        if !binary {
            assert!(!bytes.contains(&engine::RECORD_SEPARATOR));
        }
        if *kind == engine::PacketType::Message && !binary {
            if let Ok(text) = std::str::from_utf8(bytes) {
                check_packet(text, &limits);
            }
        }
    }
    if parsed.is_ok() {
        let mut again = Vec::new();
        for (kind, bytes, binary) in &packets {
            let data = if *binary {
                Data::Binary(bytes)
            } else {
                Data::Text(bytes)
            };
            engine::encode_record(&mut again, *kind, data);
        }
        let mut round = Vec::new();
        let mut scratch = Vec::new();
        engine::parse_payload(&again, usize::MAX, 64, &mut scratch, |p| {
            let (bytes, binary) = match p.data {
                Data::Text(t) => (t.to_vec(), false),
                Data::Binary(b) => (b.to_vec(), true),
            };
            round.push((p.kind, bytes, binary));
        })
        .expect("a re-encoded payload parses");
        assert_eq!(round, packets);
    }
    if let Ok(text) = std::str::from_utf8(body) {
        check_packet(text, &limits);
    }
}

fn check_packet(text: &str, limits: &Limits) {
    let Ok(p) = packet::parse(text, limits) else {
        return;
    };
    assert!(p.attachments <= limits.max_attachments);
    assert!(p.kind.is_binary() || p.attachments == 0);
    assert_ne!(p.kind, PacketType::ConnectError);
    assert!(check_namespace(p.nsp, limits).is_ok(), "{:?}", p.nsp);
    assert!(p.id.is_none_or(|id| id <= MAX_ACK_ID));
    match p.payload {
        Payload::Event { name, args } => {
            assert!(name.len() <= limits.max_event_bytes);
            if p.kind == PacketType::Event {
                let mut out = Vec::new();
                let raw: Vec<&[u8]> = args.iter().map(|a| a.get().as_bytes()).collect();
                packet::encode_event(&mut out, p.nsp, p.id, &name, raw.iter().copied());
                let text = std::str::from_utf8(&out).expect("UTF-8");
                let q = packet::parse(text, limits).expect("an encoded event parses");
                assert_eq!((q.nsp, q.id), (p.nsp, p.id));
                match q.payload {
                    Payload::Event { name: n, args: a } => {
                        assert_eq!(n, name);
                        let a: Vec<&[u8]> = a.iter().map(|v| v.get().as_bytes()).collect();
                        assert_eq!(a, raw);
                    }
                    other => panic!("re-parsed as {other:?}"),
                }
            }
        }
        Payload::Ack(_) => assert!(p.id.is_some()),
        Payload::None | Payload::Auth(_) => {}
    }
}
