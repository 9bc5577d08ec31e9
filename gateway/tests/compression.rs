//! permessage-deflate (RFC 7692) conformance over real loopback sockets: the conformance suite's
//! compressed cases. The negotiation as the server answers it on the wire, compressed echoes at
//! the framing boundaries and in random chunkings, fragmented compressed messages with control
//! frames between them, the RSV1 rules, the message limit against deflate bombs (closed as soon
//! as the inflated size passes it), fail-fast UTF-8 of inflated text, the window and size
//! thresholds, and compressed broadcasts. `scripts/test.sh` runs it on both drivers.

mod common;

use std::time::Duration;

use common::deflate::{compressed_frame, compressed_message, deflate, deflate_flushed, RSV1};
use common::{
    fresh_key, gateway, op, pattern, raw_frame, utf8_text, Client, Gateway, GatewayExt, Raw, Rng,
    KEY, PROMPT_CLOSE,
};

/// What the gateway always answers to an acceptable offer (no context takeover either way).
const ACCEPTED: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
/// The default `--compression-threshold`.
const THRESHOLD: usize = 128;

fn gw(args: &[&str]) -> Gateway {
    gateway().args(args).start()
}

/// A deflate connection on `/echo` with the plainest offer.
fn open(gw: &Gateway) -> Client {
    Client::open_deflate(gw.addr(), "/echo", "permessage-deflate").0
}

/// Expect the error close `code` for a violation that left the byte stream intact, answer it and
/// expect the TCP close promptly.
fn expect_in_sync_error_close(c: &mut Client, code: u16) {
    c.expect_close(code);
    c.send_close(code, b"");
    c.expect_tcp_closed_within(PROMPT_CLOSE);
}

/// Chat-like JSON of exactly `len` bytes (the deliveries compression is for).
fn chat(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 8] = [
        "hello", "room", "message", "see", "you", "later", "gateway", "ok",
    ];
    let mut rng = Rng(seed | 1);
    let mut s = String::from(r#"{"channel":"room:lobby","data":{"from":"ana","text":""#);
    while s.len() + 3 < len {
        s.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
        s.push(' ');
    }
    s.truncate(len.saturating_sub(3));
    s.push_str(r#""}}"#);
    s.truncate(len);
    s.into_bytes()
}

// =============================================================================================
// Negotiation

/// Offers (one `Sec-WebSocket-Extensions` value each) and the extension line the server must
/// answer (`None`: declined, no header). §7: an offer with an unknown, duplicate or invalid
/// parameter is declined, and the server goes on to the next offer.
const OFFERS: [(&str, Option<&str>); 20] = [
    ("permessage-deflate", Some(ACCEPTED)),
    ("PerMessage-Deflate; Server_No_Context_Takeover", Some(ACCEPTED)),
    ("permessage-deflate; server_no_context_takeover; client_no_context_takeover", Some(ACCEPTED)),
    ("permessage-deflate; client_max_window_bits", Some(ACCEPTED)),
    ("permessage-deflate; client_max_window_bits=8", Some(ACCEPTED)),
    ("permessage-deflate; server_max_window_bits=10", Some("=10")),
    ("permessage-deflate; server_max_window_bits=\"12\"", Some("=12")),
    ("permessage-deflate ; server_max_window_bits = 15 ", Some("=15")),
    ("permessage-deflate; server_max_window_bits=7", None),
    ("permessage-deflate; server_max_window_bits=16", None),
    ("permessage-deflate; server_max_window_bits=010", None),
    ("permessage-deflate; server_max_window_bits", None),
    ("permessage-deflate; client_max_window_bits=0", None),
    ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", None),
    ("permessage-deflate; client_max_window_bits; client_max_window_bits=9", None),
    ("permessage-deflate; client_no_context_takeover=1", None),
    ("permessage-deflate; mystery", None),
    ("x-webkit-deflate-frame, permessage-deflate; client_max_window_bits", Some(ACCEPTED)),
    ("permessage-deflate; server_max_window_bits=16, permessage-deflate; server_max_window_bits=11", Some("=11")),
    ("permessage-deflate; server_max_window_bits=9, permessage-deflate", Some("=9")),
];

/// The full extension line for a table entry (`"=N"` is shorthand for the accepted line with
/// `server_max_window_bits=N` echoed, §7.1.2.1).
fn expected_line(short: &str) -> String {
    match short.strip_prefix('=') {
        Some(bits) => format!("{ACCEPTED}; server_max_window_bits={bits}"),
        None => short.to_owned(),
    }
}

#[test]
fn negotiation_answers_each_offer_exactly() {
    let gw = gw(&[]);
    for (offer, expected) in OFFERS {
        let mut c = Client::connect(gw.addr());
        let key = fresh_key();
        let resp = c.handshake_with_key("/echo", &key, &[("Sec-WebSocket-Extensions", offer)]);
        resp.assert_switching(&key);
        let want: Vec<String> = expected.map(expected_line).into_iter().collect();
        assert_eq!(
            resp.header_all("Sec-WebSocket-Extensions"),
            want,
            "offer {offer:?}"
        );
        // Accepted or not, the connection works; RSV1 is allowed only when accepted.
        if expected.is_some() {
            c.allow_rsv1();
        }
        let text = chat(300, 1);
        c.send_text(&text);
        c.expect_message(op::TEXT, &text, expected.is_some());
        c.close_cleanly();
    }
}

#[test]
fn offers_on_several_header_lines_are_taken_in_order() {
    let gw = gw(&[]);
    let mut c = Client::connect(gw.addr());
    let key = fresh_key();
    let resp = c.handshake_with_key(
        "/echo",
        &key,
        &[
            ("Sec-WebSocket-Extensions", "foo; bar=1"),
            ("Sec-WebSocket-Extensions", "permessage-deflate; bad"),
            (
                "Sec-WebSocket-Extensions",
                "permessage-deflate; server_max_window_bits=13",
            ),
        ],
    );
    resp.assert_switching(&key);
    assert_eq!(
        resp.header_all("Sec-WebSocket-Extensions"),
        [expected_line("=13").as_str()]
    );
}

#[test]
fn compression_off_declines_and_rsv1_stays_1002() {
    let gw = gw(&["--compression", "off"]);
    let mut c = Client::connect(gw.addr());
    let key = fresh_key();
    let resp = c.handshake_with_key(
        "/echo",
        &key,
        &[("Sec-WebSocket-Extensions", "permessage-deflate")],
    );
    resp.assert_switching(&key);
    assert_eq!(resp.header("Sec-WebSocket-Extensions"), None);
    let text = chat(2048, 2);
    c.send_text(&text);
    c.expect_frame(op::TEXT, &text);
    c.send_raw(&compressed_message(op::TEXT, &text));
    expect_in_sync_error_close(&mut c, 1002);
}

// =============================================================================================
// Compressed echoes

const BOUNDARY_LENGTHS: [usize; 12] = [
    0,
    1,
    125,
    126,
    127,
    THRESHOLD,
    200,
    2048,
    65535,
    65536,
    65537,
    1 << 20,
];

#[test]
fn compressed_messages_at_boundary_lengths_are_echoed() {
    let gw = gw(&[]);
    let mut c = open(&gw);
    for len in BOUNDARY_LENGTHS {
        // Compressible text and JSON come back compressed from the threshold on.
        let text = utf8_text(len);
        c.send_compressed(op::TEXT, &text);
        c.expect_message(op::TEXT, &text, len >= THRESHOLD);
        let json = chat(len, len as u64);
        c.send_compressed(op::BINARY, &json);
        c.expect_message(op::BINARY, &json, len >= THRESHOLD);
        // Random bytes do not shrink: they come back uncompressed.
        let noise = pattern(len, len as u64);
        c.send_compressed(op::BINARY, &noise);
        c.expect_message(op::BINARY, &noise, false);
        // An uncompressed message on a deflate connection is fine, and its echo compressed.
        c.send_text(&json);
        c.expect_message(op::TEXT, &json, len >= THRESHOLD);
    }
    c.close_cleanly();
}

#[test]
fn compressed_and_plain_messages_in_random_chunks_are_echoed_in_order() {
    let gw = gw(&[]);
    let mut c = open(&gw);
    let mut rng = Rng(0x5eed_7692);
    let mut wire = Vec::new();
    let mut sent = Vec::new();
    for i in 0..60 {
        let len = match rng.below(4) {
            0 => rng.below(THRESHOLD as u64) as usize,
            1 => rng.below(4096) as usize,
            _ => 100 + rng.below(30_000) as usize,
        };
        let (opcode, payload) = if rng.below(2) == 0 {
            (op::TEXT, chat(len, i))
        } else {
            (op::BINARY, pattern(len, i))
        };
        if rng.below(3) == 0 {
            wire.extend(c.frame_bytes(true, 0, opcode, &payload, Some(KEY)));
        } else {
            wire.extend(compressed_message(opcode, &payload));
        }
        sent.push((opcode, payload));
    }
    let mut at = 0;
    while at < wire.len() {
        let n = (1 + rng.below(3000) as usize).min(wire.len() - at);
        c.send_raw(&wire[at..at + n]);
        at += n;
    }
    for (opcode, payload) in sent {
        let m = c.read_message();
        assert_eq!((m.opcode, m.payload), (opcode, payload));
    }
    c.close_cleanly();
}

// =============================================================================================
// Fragmented compressed messages

/// Send `compressed` as a compressed message of `n` frames (RSV1 on the first only, §6.1).
fn send_compressed_fragments(c: &mut Client, opcode: u8, compressed: &[u8], n: usize) {
    let step = compressed.len().div_ceil(n).max(1);
    let mut pieces: Vec<&[u8]> = compressed.chunks(step).collect();
    pieces.resize(n, &[]);
    for (i, piece) in pieces.iter().enumerate() {
        let fin = i == n - 1;
        if i == 0 {
            c.send_raw(&compressed_frame(fin, opcode, piece));
        } else {
            c.send_frame(fin, 0, op::CONT, piece, Some(KEY));
        }
    }
}

#[test]
fn fragmented_compressed_message_split_at_every_byte_is_echoed() {
    let gw = gw(&[]);
    let mut c = open(&gw);
    let text = chat(400, 3);
    let packed = deflate(&text);
    for split in 0..=packed.len() {
        c.send_raw(&compressed_frame(false, op::TEXT, &packed[..split]));
        c.send_frame(true, 0, op::CONT, &packed[split..], Some(KEY));
        c.expect_message(op::TEXT, &text, true);
    }
    c.close_cleanly();
}

#[test]
fn control_frames_between_compressed_fragments_are_answered_in_order() {
    let gw = gw(&[]);
    let mut c = open(&gw);
    let text = chat(20_000, 4);
    let packed = deflate(&text);
    let third = packed.len() / 3;
    // One write: first fragment, pings, a pong, the middle fragment, more pings, the last one.
    let mut wire = compressed_frame(false, op::TEXT, &packed[..third]);
    for i in 0..5u8 {
        wire.extend(c.frame_bytes(true, 0, op::PING, &[i; 9], Some(KEY)));
    }
    wire.extend(c.frame_bytes(true, 0, op::PONG, b"unsolicited", Some(KEY)));
    wire.extend(c.frame_bytes(false, 0, op::CONT, &packed[third..2 * third], Some(KEY)));
    for i in 5..10u8 {
        wire.extend(c.frame_bytes(true, 0, op::PING, &[i; 125], Some(KEY)));
    }
    wire.extend(c.frame_bytes(true, 0, op::CONT, &packed[2 * third..], Some(KEY)));
    c.send_raw(&wire);
    // Every ping gets its own pong with its payload, in order, before the message ends.
    for i in 0..10u8 {
        let len = if i < 5 { 9 } else { 125 };
        c.expect_frame(op::PONG, &vec![i; len]);
    }
    c.expect_message(op::TEXT, &text, true);
    c.close_cleanly();
}

#[test]
fn compressed_message_in_64_byte_fragments_is_echoed() {
    let gw = gw(&[]);
    let mut c = open(&gw);
    let mut text = Vec::new();
    let mut i = 0;
    while text.len() < 1 << 20 {
        text.extend(chat(2048, i));
        i += 1;
    }
    let packed = deflate(&text);
    send_compressed_fragments(&mut c, op::TEXT, &packed, packed.len().div_ceil(64));
    c.expect_message(op::TEXT, &text, true);
    c.close_cleanly();
}

#[test]
fn fragment_limit_counts_compressed_frames() {
    let gw = gw(&["--max-fragments", "10"]);
    let mut c = open(&gw);
    let text = chat(3000, 5);
    let packed = deflate(&text);
    send_compressed_fragments(&mut c, op::TEXT, &packed, 10);
    c.expect_message(op::TEXT, &text, true);
    send_compressed_fragments(&mut c, op::TEXT, &packed, 11);
    expect_in_sync_error_close(&mut c, 1009);
}

// =============================================================================================
// RSV1 rules (§6.1): on the first frame of a compressed message only, never on control frames

#[test]
fn rsv1_on_a_continuation_is_1002() {
    let gw = gw(&[]);
    // Of a compressed message...
    let mut c = open(&gw);
    let packed = deflate(&chat(1000, 6));
    c.send_raw(&compressed_frame(false, op::TEXT, &packed[..10]));
    c.send_raw(&raw_frame(&Raw {
        rsv: RSV1,
        ..Raw::new(op::CONT, &packed[10..])
    }));
    expect_in_sync_error_close(&mut c, 1002);
    // ...and of a plain one.
    let mut c = open(&gw);
    c.send_frame(false, 0, op::TEXT, b"plain ", Some(KEY));
    c.send_raw(&raw_frame(&Raw {
        rsv: RSV1,
        ..Raw::new(op::CONT, &deflate(b"start"))
    }));
    expect_in_sync_error_close(&mut c, 1002);
}

#[test]
fn rsv1_on_control_frames_is_1002() {
    let gw = gw(&[]);
    for opcode in [op::PING, op::PONG, op::CLOSE] {
        let mut c = open(&gw);
        let payload = if opcode == op::CLOSE {
            1000u16.to_be_bytes().to_vec()
        } else {
            b"x".to_vec()
        };
        c.send_raw(&raw_frame(&Raw {
            rsv: RSV1,
            ..Raw::new(opcode, &payload)
        }));
        expect_in_sync_error_close(&mut c, 1002);
    }
}

#[test]
fn rsv2_and_rsv3_stay_1002_with_deflate() {
    let gw = gw(&[]);
    for rsv in [0x20, 0x10, RSV1 | 0x20] {
        let mut c = open(&gw);
        c.send_raw(&raw_frame(&Raw {
            rsv,
            ..Raw::new(op::TEXT, &deflate(b"hello"))
        }));
        expect_in_sync_error_close(&mut c, 1002);
    }
}

// =============================================================================================
// The message limit against inflation (a deflate bomb costs at most the limit)

/// A raw DEFLATE stream that inflates to `mib` MiB of zeros, built from one compressed MiB
/// repeated (each piece is whole blocks ending on a sync flush, so pieces concatenate).
fn bomb(mib: usize) -> Vec<u8> {
    let piece = deflate_flushed(&vec![0u8; 1 << 20]);
    let mut out = Vec::with_capacity(piece.len() * mib);
    for _ in 0..mib {
        out.extend_from_slice(&piece);
    }
    out
}

#[test]
fn inflated_size_exactly_at_the_limit_is_accepted_and_one_past_is_1009() {
    let gw = gw(&["--max-message-bytes", "65536"]);
    let mut c = open(&gw);
    let at_limit = utf8_text(65536);
    c.send_compressed(op::TEXT, &at_limit);
    c.expect_message(op::TEXT, &at_limit, true);
    // 65,537 bytes inflated from a few hundred on the wire.
    let over = utf8_text(65537);
    let packed = deflate(&over);
    assert!(packed.len() < 1024);
    c.send_raw(&compressed_frame(true, op::TEXT, &packed));
    expect_in_sync_error_close(&mut c, 1009);
}

#[test]
fn a_bomb_is_1009_as_soon_as_the_inflated_size_passes_the_limit() {
    let gw = gw(&["--max-message-bytes", "65536"]);
    // The first fragment alone inflates to 1 MiB: the close comes without the message's end.
    let mut c = open(&gw);
    let first = deflate_flushed(&vec![0u8; 1 << 20]);
    c.send_raw(&compressed_frame(false, op::BINARY, &first));
    expect_in_sync_error_close(&mut c, 1009);
    gw.assert_serves();
}

#[test]
fn a_gibibyte_bomb_against_the_default_limit_costs_at_most_the_limit() {
    let gw = gw(&[]);
    let rss_before = gw.rss_bytes();
    let mut c = open(&gw);
    // About 1 MB on the wire inflating to 1 GiB, in one frame: closed once past 16 MiB.
    let payload = bomb(1024);
    let frame = compressed_frame(true, op::BINARY, &payload);
    // The server may close before it has read all of it: a failed write is expected then.
    let _ = c.try_send_raw(&frame);
    c.expect_close(1009);
    let _ = c.try_send_raw(&raw_frame(&Raw::new(op::CLOSE, &1009u16.to_be_bytes())));
    let grown = gw.rss_bytes().saturating_sub(rss_before);
    // The 16 MiB limit, its buffer's slack and the unread frame bytes; nowhere near 1 GiB.
    assert!(
        grown < 64 << 20,
        "the gateway grew by {} MiB inflating a bomb",
        grown >> 20
    );
    gw.assert_serves();
}

// =============================================================================================
// UTF-8 of inflated text, and data that is not DEFLATE

#[test]
fn inflated_invalid_utf8_in_a_first_fragment_fails_fast_with_1007() {
    let gw = gw(&[]);
    let mut c = open(&gw);
    // The first fragment's inflated bytes already hold an impossible sequence: 1007 comes
    // before the message's last frame is sent.
    let mut text = chat(500, 7);
    text[250] = 0xff;
    c.send_raw(&compressed_frame(false, op::TEXT, &deflate_flushed(&text)));
    expect_in_sync_error_close(&mut c, 1007);
}

#[test]
fn inflated_text_that_is_not_utf8_is_1007_and_binary_is_echoed() {
    let gw = gw(&[]);
    let mut bad = chat(1000, 8);
    bad[999] = 0xc3; // ends inside a code point
    let mut c = open(&gw);
    c.send_compressed(op::BINARY, &bad);
    c.expect_message(op::BINARY, &bad, true);
    c.send_compressed(op::TEXT, &bad);
    expect_in_sync_error_close(&mut c, 1007);

    let mut c = open(&gw);
    let mut bad = chat(1000, 9);
    bad[10] = 0xed; // a surrogate: ED A0 80
    bad[11] = 0xa0;
    bad[12] = 0x80;
    c.send_compressed(op::TEXT, &bad);
    expect_in_sync_error_close(&mut c, 1007);
}

#[test]
fn data_that_is_not_deflate_is_1007_and_nothing_else_is_disturbed() {
    let gw = gw(&[]);
    let mut other = open(&gw);
    // A block of the reserved type 3, then a stored block whose length check fails.
    for garbage in [
        &[0xff, 0xff, 0xff][..],
        &[0x00, 0x05, 0x00, 0x00, 0x00, 1, 2, 3, 4, 5],
    ] {
        let mut c = open(&gw);
        c.send_raw(&compressed_frame(true, op::BINARY, garbage));
        let reason = c.expect_close(1007);
        assert!(!reason.is_empty());
        c.send_close(1007, b"");
        c.expect_tcp_closed_within(PROMPT_CLOSE);
    }
    let text = chat(1000, 10);
    other.send_compressed(op::TEXT, &text);
    other.expect_message(op::TEXT, &text, true);
    other.close_cleanly();
}

// =============================================================================================
// What the server compresses: threshold, the peer's window, broadcasts

#[test]
fn the_threshold_flag_sets_the_smallest_compressed_message() {
    let gw = gw(&["--compression-threshold", "1000"]);
    let mut c = open(&gw);
    let below = chat(999, 11);
    c.send_compressed(op::TEXT, &below);
    c.expect_message(op::TEXT, &below, false);
    let at = chat(1000, 11);
    c.send_compressed(op::TEXT, &at);
    c.expect_message(op::TEXT, &at, true);
    c.close_cleanly();
}

#[test]
fn a_small_server_window_gets_only_messages_that_fit_it_compressed() {
    let gw = gw(&[]);
    let (mut c, ext) = Client::open_deflate(
        gw.addr(),
        "/echo",
        "permessage-deflate; server_max_window_bits=9",
    );
    assert_eq!(ext, expected_line("=9"));
    for (len, compressed) in [(200, true), (512, true), (513, false), (4096, false)] {
        let text = chat(len, len as u64);
        c.send_compressed(op::TEXT, &text);
        c.expect_message(op::TEXT, &text, compressed);
    }
    c.close_cleanly();
}

#[test]
fn a_broadcast_reaches_deflate_and_plain_subscribers_alike() {
    let gw = gateway().args(["--threads", "2"]).start();
    let addr = gw.addr();
    let mut packed: Vec<Client> = (0..4)
        .map(|_| Client::open_deflate(addr, "/broadcast", "permessage-deflate").0)
        .collect();
    let mut plain = Client::connect(addr);
    let key = fresh_key();
    plain
        .handshake_with_key("/broadcast", &key, &[])
        .assert_switching(&key);
    let (mut publisher, _) = Client::open_deflate(addr, "/broadcast", "permessage-deflate");
    for (i, len) in [60, 200, 2048].into_iter().enumerate() {
        let text = chat(len, 20 + i as u64);
        let mut publish = b"pub:".to_vec();
        publish.extend_from_slice(&text);
        publisher.send_compressed(op::TEXT, &publish);
        let mut frames = Vec::new();
        for c in &mut packed {
            let f = c.read_frame();
            assert_eq!(f.rsv != 0, len >= THRESHOLD, "{len} bytes: {f:?}");
            frames.push(f);
            // Compressed once: every deflate subscriber gets the same bytes.
            assert_eq!(frames[0], *frames.last().expect("a frame"));
        }
        let f = &frames[0];
        let got = if f.rsv != 0 {
            common::deflate::inflate(&f.payload)
        } else {
            f.payload.clone()
        };
        assert_eq!((f.opcode, got), (op::TEXT, text.clone()));
        plain.expect_frame(op::TEXT, &text);
    }
    publisher.expect_silence(Duration::from_millis(100));
}
