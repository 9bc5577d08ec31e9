//! Sans-IO tests of permessage-deflate: the negotiation table, RSV1 rules, inflating with a
//! cap (bombs), fragmented compressed messages, and compressing once for many peers.

use std::time::Instant;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use frame_simd::{
    encode_header, parse_header, CloseCode, MaskKey, Opcode, ParseConfig, Parsed, Role,
};

use super::*;
use crate::conn::{App, Conn, Ctx, Handling, Output, Refusal, Settings, State};

const KEY: MaskKey = MaskKey([0x37, 0xfa, 0x21, 0x3d]);

/// Negotiate with these `Sec-WebSocket-Extensions` lines.
fn offer(lines: &[&str]) -> Option<Negotiated> {
    let mut raw = String::from("GET /echo HTTP/1.1\r\nHost: x\r\n");
    for l in lines {
        raw.push_str(&format!("Sec-WebSocket-Extensions: {l}\r\n"));
    }
    raw.push_str("\r\n");
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut req = httparse::Request::new(&mut headers);
    assert!(req.parse(raw.as_bytes()).unwrap().is_complete());
    negotiate(&req, &DeflateConfig::default())
}

fn response(n: &Negotiated) -> String {
    let mut out = b"HTTP/1.1 101 Switching Protocols\r\n\r\n".to_vec();
    write_response(&mut out, n);
    String::from_utf8(out).unwrap()
}

const BOTH_NO_TAKEOVER: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

#[test]
fn negotiation_table() {
    let full = |bits: u8, client_bits: bool| {
        Some(Negotiated {
            server_max_window_bits: (bits < 15).then_some(bits),
            client_max_window_bits_offered: client_bits,
        })
    };
    let cases: &[(&[&str], Option<Negotiated>)] = &[
        // What browsers send.
        (
            &["permessage-deflate; client_max_window_bits"],
            full(15, true),
        ),
        (&["permessage-deflate"], full(15, false)),
        (
            &["permessage-deflate; server_max_window_bits=15"],
            Some(Negotiated {
                server_max_window_bits: Some(15),
                client_max_window_bits_offered: false,
            }),
        ),
        (&["PerMessage-Deflate"], full(15, false)),
        (
            &["permessage-deflate; server_no_context_takeover; client_no_context_takeover"],
            full(15, false),
        ),
        (
            &["permessage-deflate; server_max_window_bits=10"],
            full(10, false),
        ),
        (
            &["permessage-deflate; server_max_window_bits=\"8\"; client_max_window_bits=9"],
            full(8, true),
        ),
        // Not ours: declined.
        (&["x-webkit-deflate-frame"], None),
        (&[""], None),
        // Unknown, duplicate or bad parameters decline that offer (§7).
        (&["permessage-deflate; foo"], None),
        (&["permessage-deflate; foo=1"], None),
        (
            &["permessage-deflate; server_no_context_takeover; server_no_context_takeover"],
            None,
        ),
        (&["permessage-deflate; client_no_context_takeover=1"], None),
        (&["permessage-deflate; server_max_window_bits"], None),
        (&["permessage-deflate; server_max_window_bits=7"], None),
        (&["permessage-deflate; server_max_window_bits=16"], None),
        (&["permessage-deflate; server_max_window_bits=010"], None),
        (&["permessage-deflate; server_max_window_bits=1a"], None),
        (&["permessage-deflate; client_max_window_bits=0"], None),
        (
            &["permessage-deflate; client_max_window_bits; client_max_window_bits=10"],
            None,
        ),
        // Several offers, in one line or several: the first acceptable one wins.
        (
            &["permessage-deflate; bogus, permessage-deflate; server_max_window_bits=12"],
            full(12, false),
        ),
        (
            &[
                "foo, permessage-deflate; server_max_window_bits=99",
                "permessage-deflate; client_max_window_bits",
            ],
            full(15, true),
        ),
        (
            &["permessage-deflate; server_max_window_bits=9, permessage-deflate"],
            full(9, false),
        ),
    ];
    for (lines, want) in cases {
        assert_eq!(offer(lines), *want, "offer {lines:?}");
    }
}

#[test]
fn switched_off_declines_everything() {
    let raw = "GET / HTTP/1.1\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n";
    let mut headers = [httparse::EMPTY_HEADER; 4];
    let mut req = httparse::Request::new(&mut headers);
    req.parse(raw.as_bytes()).unwrap();
    let off = DeflateConfig {
        enabled: false,
        ..DeflateConfig::default()
    };
    assert_eq!(negotiate(&req, &off), None);
}

#[test]
fn response_always_drops_both_context_takeovers_and_echoes_a_small_window() {
    let n = offer(&["permessage-deflate"]).unwrap();
    assert_eq!(
        response(&n),
        format!("HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Extensions: {BOTH_NO_TAKEOVER}\r\n\r\n")
    );
    let n = offer(&["permessage-deflate; server_max_window_bits=9"]).unwrap();
    assert!(response(&n).contains("; server_max_window_bits=9\r\n\r\n"));
    let n = offer(&["permessage-deflate; server_max_window_bits=12"]).unwrap();
    assert!(response(&n).contains("; server_max_window_bits=12\r\n\r\n"));
    let n = offer(&["permessage-deflate; server_max_window_bits=15"]).unwrap();
    assert!(response(&n).contains("; server_max_window_bits=15\r\n\r\n"));
    // Never client_max_window_bits: the server does not limit the client's window.
    let n = offer(&["permessage-deflate; client_max_window_bits=10"]).unwrap();
    assert!(!response(&n).contains("client_max_window_bits"));
}

/// Compress like a client: raw DEFLATE, sync flush, tail removed (§7.2.1).
fn client_deflate(payload: &[u8]) -> Vec<u8> {
    let mut z = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(payload.len() + 64);
    z.compress_vec(payload, &mut out, FlushCompress::Sync)
        .unwrap();
    assert!(out.ends_with(&TAIL));
    out.truncate(out.len() - 4);
    out
}

/// Inflate a server message like a client does.
fn client_inflate(payload: &[u8]) -> Vec<u8> {
    let mut z = Decompress::new(false);
    let mut input = payload.to_vec();
    input.extend(TAIL);
    let mut out = Vec::with_capacity(1 << 20);
    z.decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .unwrap();
    out
}

/// A masked client frame with RSV1 as given.
fn frame(fin: bool, rsv1: bool, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let mut h = [0u8; MAX_HEADER_LEN];
    let n = encode_header(&mut h, fin, opcode, payload.len() as u64, Some(KEY));
    if rsv1 {
        h[0] |= frame_simd::RSV1;
    }
    let mut out = h[..n].to_vec();
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY.0[i % 4]));
    out
}

struct Echo;

impl App for Echo {
    fn on_request(&mut self, _: &httparse::Request<'_, '_>, _: &mut Output) -> Handling {
        Handling::Upgrade
    }
    fn on_open(&mut self, _: &httparse::Request<'_, '_>, _: &mut Output) -> Result<(), Refusal> {
        Ok(())
    }
    fn on_message(&mut self, opcode: Opcode, payload: &mut [u8], out: &mut Output) {
        out.frame(opcode, payload);
    }
}

struct Peer {
    conn: Conn,
    settings: Settings,
    kernels: frame_simd::Kernels,
    now: Instant,
}

impl Peer {
    /// Upgraded with this extension line (`None`: no offer).
    fn open(settings: Settings, ext: Option<&str>) -> (Peer, String) {
        let now = Instant::now();
        let mut p = Peer {
            conn: Conn::new(now),
            settings,
            kernels: frame_simd::Kernels::detect(),
            now,
        };
        let ext = ext.map_or(String::new(), |e| {
            format!("Sec-WebSocket-Extensions: {e}\r\n")
        });
        let req = format!(
            "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{ext}\r\n"
        );
        let resp = String::from_utf8(p.send(req.as_bytes())).unwrap();
        assert!(resp.starts_with("HTTP/1.1 101 "), "{resp}");
        (p, resp)
    }

    fn send(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Output::new();
        let mut buf = bytes.to_vec();
        let cx = Ctx {
            settings: &self.settings,
            kernels: &self.kernels,
        };
        self.conn
            .on_read(&mut buf, self.now, &cx, &mut out, &mut Echo);
        out.finish();
        out.bytes
    }

    /// Feed `wire` in pieces of `step` bytes; everything the server sent.
    fn send_in(&mut self, wire: &[u8], step: usize) -> Vec<u8> {
        wire.chunks(step).flat_map(|c| self.send(c)).collect()
    }
}

/// Server frames as (rsv1, opcode, payload).
fn server_frames(mut bytes: &[u8]) -> Vec<(bool, Opcode, Vec<u8>)> {
    let cfg = ParseConfig {
        role: Role::Client,
        rsv_allowed: frame_simd::RSV1,
        max_payload: 1 << 40,
    };
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let Ok(Parsed::Header { header, len }) = parse_header(bytes, &cfg) else {
            panic!("bad server frame: {bytes:02x?}");
        };
        assert!(header.fin);
        let end = len + header.payload_len as usize;
        frames.push((header.rsv != 0, header.opcode, bytes[len..end].to_vec()));
        bytes = &bytes[end..];
    }
    frames
}

fn close_code(frames: &[(bool, Opcode, Vec<u8>)]) -> Option<CloseCode> {
    frames.iter().find_map(|(_, op, p)| {
        (*op == Opcode::Close).then(|| CloseCode(u16::from_be_bytes([p[0], p[1]])))
    })
}

fn chat(len: usize) -> Vec<u8> {
    let mut s = String::from(r#"{"type":"message","channel":"room:lobby","data":{"text":""#);
    while s.len() < len - 3 {
        s.push_str("hello there, how is everyone doing today? ");
    }
    s.truncate(len - 3);
    s.push_str(r#""}}"#);
    s.into_bytes()
}

#[test]
fn compressed_text_is_inflated_and_the_echo_compressed_in_every_chunking() {
    let text = chat(2048);
    let wire = frame(true, true, Opcode::Text, &client_deflate(&text));
    for step in [1, 2, 7, 64, wire.len()] {
        let (mut p, resp) = Peer::open(Settings::default(), Some("permessage-deflate"));
        assert!(resp.contains(BOTH_NO_TAKEOVER), "{resp}");
        let got = server_frames(&p.send_in(&wire, step));
        assert_eq!(got.len(), 1, "step {step}");
        let (rsv1, op, payload) = &got[0];
        assert!(*rsv1 && *op == Opcode::Text, "step {step}");
        assert!(
            payload.len() < text.len() / 3,
            "compressed: {}",
            payload.len()
        );
        assert_eq!(client_inflate(payload), text, "step {step}");
        assert_eq!(p.conn.retained_bytes(), 0, "nothing kept between messages");
    }
}

#[test]
fn fragmented_compressed_message_with_a_ping_inside() {
    let text = chat(4000);
    let packed = client_deflate(&text);
    let (a, rest) = packed.split_at(packed.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    let mut wire = frame(false, true, Opcode::Text, a);
    wire.extend(frame(false, false, Opcode::Continuation, b));
    wire.extend(frame(true, false, Opcode::Ping, b"p"));
    wire.extend(frame(false, false, Opcode::Continuation, c));
    wire.extend(frame(true, false, Opcode::Continuation, b""));
    // Then an uncompressed message on the same connection.
    wire.extend(frame(true, false, Opcode::Binary, &[1, 2, 3]));
    for step in [3, 100, wire.len()] {
        let (mut p, _) = Peer::open(Settings::default(), Some("permessage-deflate"));
        let got = server_frames(&p.send_in(&wire, step));
        assert_eq!(got.len(), 3, "step {step}");
        assert_eq!(got[0], (false, Opcode::Pong, b"p".to_vec()));
        assert_eq!(client_inflate(&got[1].2), text);
        assert_eq!(got[2], (false, Opcode::Binary, vec![1, 2, 3]));
    }
}

#[test]
fn rsv1_rules() {
    let packed = client_deflate(b"hello hello hello");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("rsv1 on a ping", frame(true, true, Opcode::Ping, b"")),
        (
            "rsv1 on a close",
            frame(true, true, Opcode::Close, &[3, 232]),
        ),
        ("rsv1 on a continuation", {
            let mut w = frame(false, true, Opcode::Text, &packed);
            w.extend(frame(true, true, Opcode::Continuation, b""));
            w
        }),
        ("rsv2", {
            let mut w = frame(true, false, Opcode::Text, b"x");
            w[0] |= 0x20;
            w
        }),
    ];
    for (what, wire) in cases {
        let (mut p, _) = Peer::open(Settings::default(), Some("permessage-deflate"));
        let got = server_frames(&p.send(&wire));
        assert_eq!(close_code(&got), Some(CloseCode::PROTOCOL_ERROR), "{what}");
        assert_ne!(p.conn.state(), State::Open, "{what}");
    }
    // Without the extension, RSV1 is a protocol error.
    let (mut p, resp) = Peer::open(Settings::default(), None);
    assert!(!resp.contains("Sec-WebSocket-Extensions"));
    let got = server_frames(&p.send(&frame(true, true, Opcode::Text, &packed)));
    assert_eq!(close_code(&got), Some(CloseCode::PROTOCOL_ERROR));
    // A declined offer is the same.
    let off = Settings {
        deflate: DeflateConfig {
            enabled: false,
            ..DeflateConfig::default()
        },
        ..Settings::default()
    };
    let (mut p, resp) = Peer::open(off, Some("permessage-deflate"));
    assert!(!resp.contains("Sec-WebSocket-Extensions"));
    let got = server_frames(&p.send(&frame(true, true, Opcode::Text, &packed)));
    assert_eq!(close_code(&got), Some(CloseCode::PROTOCOL_ERROR));
}

#[test]
fn a_bomb_is_cut_off_at_the_limit() {
    // 64 MiB of zeros compress to about 64 KiB; the limit is 1 MiB.
    let zeros = vec![0u8; 64 << 20];
    let packed = client_deflate(&zeros);
    let mut settings = Settings::default();
    settings.limits.max_message_bytes = 1 << 20;
    let (mut p, _) = Peer::open(settings, Some("permessage-deflate"));
    let wire = frame(true, true, Opcode::Binary, &packed);
    // Closed 1009 with the first kilobytes: long before the whole frame arrived.
    let got = server_frames(&p.send(&wire[..4096]));
    assert_eq!(close_code(&got), Some(CloseCode::MESSAGE_TOO_BIG));
    assert!(
        p.conn.retained_bytes() == 0,
        "freed: {}",
        p.conn.retained_bytes()
    );

    // Exactly the limit is fine.
    let mut settings = Settings::default();
    settings.limits.max_message_bytes = 1 << 20;
    let (mut p, _) = Peer::open(settings, Some("permessage-deflate"));
    let wire = frame(
        true,
        true,
        Opcode::Binary,
        &client_deflate(&zeros[..1 << 20]),
    );
    let got = server_frames(&p.send(&wire));
    assert_eq!(client_inflate(&got[0].2), zeros[..1 << 20]);
}

#[test]
fn inflater_never_holds_more_than_the_limit() {
    let zeros = vec![0u8; 8 << 20];
    let packed = client_deflate(&zeros);
    let mut out = Vec::new();
    let limit = 100_000;
    let err = Inflater::new().inflate(&packed, &mut out, limit, None);
    assert_eq!(err, Err(InflateError::TooBig));
    assert!(out.capacity() <= limit + 1, "capacity {}", out.capacity());
}

#[test]
fn inflated_invalid_utf8_fails_fast_and_garbage_is_1007() {
    let mut bad = vec![b'a'; 1000];
    bad.push(0xFF);
    bad.extend(vec![b'b'; 1 << 20]);
    let packed = client_deflate(&bad);
    let (mut p, _) = Peer::open(Settings::default(), Some("permessage-deflate"));
    // The first half of the compressed bytes already holds the bad byte.
    let wire = frame(true, true, Opcode::Text, &packed);
    let got = server_frames(&p.send(&wire[..wire.len() / 2]));
    assert_eq!(close_code(&got), Some(CloseCode::INVALID_PAYLOAD));

    let (mut p, _) = Peer::open(Settings::default(), Some("permessage-deflate"));
    // BTYPE 11 is reserved: not DEFLATE.
    let got = server_frames(&p.send(&frame(true, true, Opcode::Binary, &[0xff, 0xff, 0xff])));
    assert_eq!(close_code(&got), Some(CloseCode::INVALID_PAYLOAD));
}

#[test]
fn small_messages_and_incompressible_ones_go_uncompressed() {
    let (mut p, _) = Peer::open(Settings::default(), Some("permessage-deflate"));
    let short = chat(DEFAULT_THRESHOLD_BYTES - 1);
    let got = server_frames(&p.send(&frame(true, false, Opcode::Text, &short)));
    assert_eq!(got, vec![(false, Opcode::Text, short)]);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let got = server_frames(&p.send(&frame(true, false, Opcode::Binary, &noise)));
    assert_eq!(got, vec![(false, Opcode::Binary, noise)]);
    let long = chat(DEFAULT_THRESHOLD_BYTES);
    let got = server_frames(&p.send(&frame(true, false, Opcode::Text, &long)));
    assert!(got[0].0, "at the threshold: compressed");
}

#[test]
fn a_small_server_window_gets_only_messages_that_fit_it_compressed() {
    let (mut p, resp) = Peer::open(
        Settings::default(),
        Some("permessage-deflate; server_max_window_bits=9"),
    );
    assert!(resp.contains("server_max_window_bits=9"));
    let fits = chat(512);
    let got = server_frames(&p.send(&frame(true, false, Opcode::Text, &fits)));
    assert!(got[0].0);
    assert_eq!(client_inflate(&got[0].2), fits);
    let longer = chat(513);
    let got = server_frames(&p.send(&frame(true, false, Opcode::Text, &longer)));
    assert_eq!(got, vec![(false, Opcode::Text, longer)]);
}

#[test]
fn a_broadcast_is_compressed_once_and_only_when_wanted() {
    let text = chat(2048);
    let mut h = [0u8; MAX_HEADER_LEN];
    let n = encode_header(&mut h, true, Opcode::Text, text.len() as u64, None);
    let plain: Arc<[u8]> = [&h[..n], &text[..]].concat().into();
    let mut d = Deflater::default();
    let wide = SendDeflate::new(
        &offer(&["permessage-deflate"]).unwrap(),
        &DeflateConfig::default(),
    );
    let narrow = SendDeflate::new(
        &offer(&["permessage-deflate; server_max_window_bits=10"]).unwrap(),
        &DeflateConfig::default(),
    );

    let mut packed = Packed::new(&plain);
    assert!(Arc::ptr_eq(packed.for_peer(None, &mut d), &plain));
    assert!(
        packed.packed.is_none(),
        "nothing compressed for plain peers"
    );
    let a = Arc::clone(packed.for_peer(Some(wide), &mut d));
    let b = Arc::clone(packed.for_peer(Some(wide), &mut d));
    assert!(Arc::ptr_eq(&a, &b), "the same shared bytes for every peer");
    assert!(a.len() < plain.len() / 3);
    let got = server_frames(&a);
    assert!(got[0].0);
    assert_eq!(client_inflate(&got[0].2), text);
    // A peer whose window is smaller than the message gets it plain.
    assert!(Arc::ptr_eq(packed.for_peer(Some(narrow), &mut d), &plain));
}
