//! RFC 6455 conformance over real loopback sockets, grouped by the categories WebSocket
//! conformance fuzzers use: framing, ping/pong, reserved bits, opcodes, fragmentation, UTF-8,
//! close handling, limits. Every case asserts the exact frames and close code the server sends:
//! an echo is one unfragmented frame with the same opcode and payload; an error is a close with
//! the contract's code, then the TCP close once our close answers it.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{
    gateway, op, pattern, raw_frame, utf8_text, Client, Gateway, GatewayExt, LenForm, Raw, Rng,
    KEY, PROMPT_CLOSE,
};

/// A gateway for header-level protocol errors. After such an error the byte stream may no longer
/// be parseable (a malformed length, a header the parser stopped at), so our answering close may
/// never be seen; a short close timeout bounds how long the server waits for it and keeps these
/// tests fast. Violations that leave the stream intact use the default timeout and
/// [`expect_in_sync_error_close`], and so do the close-handling tests.
fn gw(args: &[&str]) -> Gateway {
    let mut all = vec!["--close-timeout", "1s"];
    all.extend_from_slice(args);
    gateway().args(&all).start()
}

/// Send one well-formed masked frame.
fn frame(c: &mut Client, fin: bool, opcode: u8, payload: &[u8]) {
    c.send_frame(fin, 0, opcode, payload, Some(KEY));
}

/// Expect the server's error close with `code`, answer it, and expect the TCP close.
fn expect_error_close(c: &mut Client, code: u16) {
    c.expect_close(code);
    c.finish_close(code);
}

/// Send `bytes` on a fresh connection and expect the error close `code`.
fn violation(gw: &Gateway, bytes: &[u8], code: u16) {
    let mut c = gw.client();
    c.send_raw(bytes);
    expect_error_close(&mut c, code);
}

/// Expect the error close for a violation that leaves the byte stream intact (a complete,
/// well-formed frame broke a message rule): our answering close is parseable, so the server must
/// close TCP as soon as it arrives, well before its default 5 s close timeout.
fn expect_in_sync_error_close(c: &mut Client, code: u16) {
    c.expect_close(code);
    c.send_close(code, b"");
    c.expect_tcp_closed_within(PROMPT_CLOSE);
}

/// [`violation`] for a complete, well-formed frame (see [`expect_in_sync_error_close`]).
fn violation_in_sync(gw: &Gateway, bytes: &[u8], code: u16) {
    let mut c = gw.client();
    c.send_raw(bytes);
    expect_in_sync_error_close(&mut c, code);
}

// =============================================================================================
// Framing

const BOUNDARY_LENGTHS: [usize; 7] = [0, 1, 125, 126, 127, 65535, 65536];

#[test]
fn framing_boundary_lengths_sent_whole_are_echoed() {
    let gw = gw(&[]);
    let mut c = gw.client();
    for len in BOUNDARY_LENGTHS {
        let text = utf8_text(len);
        c.send_text(&text);
        c.expect_frame(op::TEXT, &text);
        let bin = pattern(len, len as u64);
        c.send_binary(&bin);
        c.expect_frame(op::BINARY, &bin);
    }
    c.close_cleanly();
}

#[test]
fn framing_small_lengths_sent_byte_by_byte_are_echoed() {
    let gw = gw(&[]);
    let mut c = gw.client();
    for len in [0, 1, 2, 125, 126, 127, 300] {
        for opcode in [op::TEXT, op::BINARY] {
            let payload = if opcode == op::TEXT {
                utf8_text(len)
            } else {
                pattern(len, 7 + len as u64)
            };
            let bytes = c.frame_bytes(true, 0, opcode, &payload, Some(KEY));
            c.send_chunked(&bytes, 1);
            c.expect_frame(opcode, &payload);
        }
    }
    c.close_cleanly();
}

#[test]
fn framing_control_frames_byte_by_byte() {
    // Control payloads split over many reads are reassembled before they are acted on.
    let gw = gateway().start();
    let mut c = gw.client();
    for len in [0, 1, 2, 5, 124, 125] {
        let payload = pattern(len, 40 + len as u64);
        let bytes = c.frame_bytes(true, 0, op::PING, &payload, Some(KEY));
        c.send_chunked(&bytes, 1);
        c.expect_frame(op::PONG, &payload);
    }
    // A ping split inside a fragmented message, itself split byte by byte.
    let mut bytes = c.frame_bytes(false, 0, op::TEXT, "ab€".as_bytes(), Some(KEY));
    bytes.extend(c.frame_bytes(true, 0, op::PING, &[7; 125], Some(KEY)));
    bytes.extend(c.frame_bytes(true, 0, op::CONT, "cd𝄞".as_bytes(), Some(KEY)));
    c.send_chunked(&bytes, 1);
    c.expect_frame(op::PONG, &[7; 125]);
    c.expect_frame(op::TEXT, "ab€cd𝄞".as_bytes());
    // A close with a 123-byte reason, byte by byte.
    let mut payload = 3000u16.to_be_bytes().to_vec();
    payload.extend(utf8_text(123));
    let bytes = c.frame_bytes(true, 0, op::CLOSE, &payload, Some(KEY));
    c.send_chunked(&bytes, 1);
    c.expect_close(3000);
    c.expect_tcp_closed_within(PROMPT_CLOSE);
}

#[test]
fn framing_close_reason_with_invalid_utf8_byte_by_byte_is_1007() {
    let gw = gateway().start();
    let mut c = gw.client();
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"fine until ");
    payload.extend_from_slice(&[0xed, 0xa0, 0x80]);
    let bytes = c.frame_bytes(true, 0, op::CLOSE, &payload, Some(KEY));
    c.send_chunked(&bytes, 1);
    c.expect_close(1007);
    c.expect_tcp_closed_within(PROMPT_CLOSE);
}

#[test]
fn framing_large_lengths_in_odd_chunks_are_echoed() {
    let gw = gw(&[]);
    let mut c = gw.client();
    for (len, chunk) in [(65535, 7), (65536, 1031), (1 << 20, 65537), (1 << 20, 4093)] {
        let payload = pattern(len, len as u64 ^ chunk as u64);
        let bytes = c.frame_bytes(true, 0, op::BINARY, &payload, Some(KEY));
        c.send_chunked(&bytes, chunk);
        c.expect_frame(op::BINARY, &payload);
        let text = utf8_text(len);
        let bytes = c.frame_bytes(true, 0, op::TEXT, &text, Some(KEY));
        c.send_chunked(&bytes, chunk);
        c.expect_frame(op::TEXT, &text);
    }
    c.close_cleanly();
}

#[test]
fn framing_one_mebibyte_text_and_binary_are_echoed() {
    let gw = gw(&[]);
    let mut c = gw.client();
    let text = utf8_text(1 << 20);
    c.send_text(&text);
    c.expect_frame(op::TEXT, &text);
    let bin = pattern(1 << 20, 99);
    c.send_binary(&bin);
    c.expect_frame(op::BINARY, &bin);
    c.close_cleanly();
}

#[test]
fn framing_sixteen_mebibytes_at_the_default_limit_are_echoed() {
    // The defaults allow a frame and a message of exactly 16 MiB (limits are "over this").
    let gw = gw(&[]);
    let mut c = gw.client();
    c.set_timeout(Duration::from_secs(30));
    let bin = pattern(16 << 20, 16);
    let bytes = c.frame_bytes(true, 0, op::BINARY, &bin, Some(KEY));
    c.send_chunked(&bytes, 1 << 20 | 13);
    c.expect_frame(op::BINARY, &bin);
    c.close_cleanly();
}

#[test]
fn framing_many_frames_in_one_write_are_echoed_in_order() {
    let gw = gw(&[]);
    let mut c = gw.client();
    let mut bytes = Vec::new();
    let messages: Vec<Vec<u8>> = (0..200).map(|i| utf8_text(i * 7 % 300)).collect();
    for m in &messages {
        bytes.extend(c.frame_bytes(true, 0, op::TEXT, m, Some(KEY)));
    }
    c.send_raw(&bytes);
    for m in &messages {
        c.expect_frame(op::TEXT, m);
    }
    c.close_cleanly();
}

#[test]
fn framing_every_mask_key_byte_matters() {
    // Different keys (including all-zero) over lengths that end at each key phase.
    let gw = gw(&[]);
    let mut c = gw.client();
    for (i, key) in [[0, 0, 0, 0], [0xff; 4], [1, 2, 3, 4], [0x80, 0, 0x7f, 0xaa]]
        .into_iter()
        .enumerate()
    {
        for len in [1, 2, 3, 4, 5, 31, 32, 33, 63, 64, 65, 1000] {
            let payload = pattern(len, (i * 1000 + len) as u64);
            c.send_frame(true, 0, op::BINARY, &payload, Some(key));
            c.expect_frame(op::BINARY, &payload);
        }
    }
    c.close_cleanly();
}

#[test]
fn framing_unmasked_client_frames_are_1002() {
    let gw = gw(&[]);
    for opcode in [op::TEXT, op::BINARY, op::PING, op::CLOSE] {
        let payload: &[u8] = if opcode == op::CLOSE {
            &[0x03, 0xe8]
        } else {
            b"hi"
        };
        let mut c = gw.client();
        c.send_frame(true, 0, opcode, payload, None);
        expect_error_close(&mut c, 1002);
    }
    // Unmasked continuation in the middle of a message.
    let mut c = gw.client();
    frame(&mut c, false, op::TEXT, b"a");
    c.send_frame(true, 0, op::CONT, b"b", None);
    expect_error_close(&mut c, 1002);
}

#[test]
fn framing_non_minimal_lengths_are_1002() {
    let gw = gw(&[]);
    // 16-bit form holding 0, 5 and 125; 64-bit form holding 5, 126 and 65535.
    for (form, len) in [
        (LenForm::U16, 0usize),
        (LenForm::U16, 5),
        (LenForm::U16, 125),
        (LenForm::U64, 5),
        (LenForm::U64, 126),
        (LenForm::U64, 65535),
    ] {
        let payload = pattern(len, 3);
        let bytes = raw_frame(&Raw {
            len_form: form,
            ..Raw::new(op::BINARY, &payload)
        });
        violation(&gw, &bytes, 1002);
    }
}

#[test]
fn framing_64_bit_length_with_top_bit_is_1002() {
    let gw = gw(&[]);
    for announced in [1u64 << 63, u64::MAX, (1 << 63) | 5] {
        let bytes = raw_frame(&Raw {
            len_form: LenForm::U64,
            announced: Some(announced),
            ..Raw::new(op::BINARY, &[])
        });
        violation(&gw, &bytes, 1002);
    }
}

#[test]
fn framing_random_messages_in_random_chunks_are_echoed_in_order() {
    // Hundreds of text and binary messages of boundary and random sizes, randomly fragmented,
    // with unsolicited pongs between fragments and random mask keys, written as one stream cut
    // at random points: every echo arrives whole and in order.
    const SIZES: [u64; 9] = [0, 1, 3, 125, 126, 127, 4096, 65535, 65536];
    let gw = gateway().start();
    let mut c = gw.client();
    for seed in [0x9e37_79b9_u64, 0x1234_5678, 0xdead_beef] {
        let mut rng = Rng(seed);
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for m in 0..150 {
            let len = if rng.below(3) == 0 {
                SIZES[rng.below(SIZES.len() as u64) as usize]
            } else {
                rng.below(3000)
            } as usize;
            let text = rng.below(2) == 0;
            let payload = if text {
                utf8_text(len)
            } else {
                pattern(len, seed ^ m)
            };
            let opcode = if text { op::TEXT } else { op::BINARY };
            let fragments = 1 + rng.below(5) as usize;
            let mut cuts: Vec<usize> = (1..fragments)
                .map(|_| rng.below(len as u64 + 1) as usize)
                .collect();
            cuts.push(0);
            cuts.push(len);
            cuts.sort_unstable();
            for (i, w) in cuts.windows(2).enumerate() {
                let key = (rng.next() as u32).to_be_bytes();
                let first = if i == 0 { opcode } else { op::CONT };
                let fin = i + 2 == cuts.len();
                stream.extend(c.frame_bytes(fin, 0, first, &payload[w[0]..w[1]], Some(key)));
                if !fin && rng.below(3) == 0 {
                    let pong = pattern(rng.below(126) as usize, m);
                    stream.extend(c.frame_bytes(true, 0, op::PONG, &pong, Some(key)));
                }
            }
            expected.push((opcode, payload));
        }
        let mut at = 0;
        while at < stream.len() {
            let n = (1 + rng.below(3000) as usize).min(stream.len() - at);
            c.send_raw(&stream[at..at + n]);
            at += n;
        }
        for (opcode, payload) in &expected {
            c.expect_frame(*opcode, payload);
        }
    }
    c.close_cleanly();
}

// =============================================================================================
// Ping / pong

#[test]
fn ping_payloads_0_to_125_are_answered_with_equal_pongs() {
    let gw = gw(&[]);
    let mut c = gw.client();
    for len in 0..=125 {
        let payload = pattern(len, len as u64 + 1);
        c.send_ping(&payload);
        c.expect_frame(op::PONG, &payload);
    }
    c.close_cleanly();
}

#[test]
fn ping_with_126_bytes_is_1002() {
    let gw = gw(&[]);
    let mut c = gw.client();
    c.send_raw(&raw_frame(&Raw::new(op::PING, &[7; 126])));
    expect_error_close(&mut c, 1002);
    // The same refusal as soon as the length field says so, without the payload.
    let bytes = raw_frame(&Raw {
        announced: Some(65536),
        ..Raw::new(op::PING, &[])
    });
    violation(&gw, &bytes, 1002);
}

#[test]
fn fragmented_ping_is_1002() {
    let gw = gw(&[]);
    violation(
        &gw,
        &raw_frame(&Raw {
            fin: false,
            ..Raw::new(op::PING, b"frag")
        }),
        1002,
    );
    // Also inside a fragmented data message.
    let mut c = gw.client();
    frame(&mut c, false, op::TEXT, b"start");
    c.send_raw(&raw_frame(&Raw {
        fin: false,
        ..Raw::new(op::PING, b"")
    }));
    expect_error_close(&mut c, 1002);
}

#[test]
fn oversized_or_fragmented_pong_and_close_are_1002() {
    let gw = gw(&[]);
    violation(&gw, &raw_frame(&Raw::new(op::PONG, &[1; 126])), 1002);
    violation(
        &gw,
        &raw_frame(&Raw {
            fin: false,
            ..Raw::new(op::PONG, b"x")
        }),
        1002,
    );
    let mut close = vec![0x03, 0xe8];
    close.extend_from_slice(&[b'a'; 124]);
    violation(&gw, &raw_frame(&Raw::new(op::CLOSE, &close)), 1002);
    violation(
        &gw,
        &raw_frame(&Raw {
            fin: false,
            ..Raw::new(op::CLOSE, &[0x03, 0xe8])
        }),
        1002,
    );
}

#[test]
fn unsolicited_pongs_are_ignored() {
    let gw = gw(&[]);
    let mut c = gw.client();
    for len in [0, 1, 125] {
        frame(&mut c, true, op::PONG, &pattern(len, 5));
    }
    c.send_text(b"after pongs");
    c.expect_frame(op::TEXT, b"after pongs");
    c.close_cleanly();
}

#[test]
fn pings_in_one_write_each_get_their_pong_in_order() {
    // Many pings before the server could write (RFC 6455 §5.5.2): one pong each, with its
    // ping's payload, in order, then the echo of the data behind them.
    let gw = gw(&[]);
    let mut c = gw.client();
    let payloads: Vec<Vec<u8>> = (0..500u16)
        .map(|i| pattern(usize::from(i % 126), u64::from(i)))
        .collect();
    let mut bytes = Vec::new();
    for p in &payloads {
        bytes.extend(c.frame_bytes(true, 0, op::PING, p, Some(KEY)));
    }
    bytes.extend(c.frame_bytes(true, 0, op::TEXT, b"marker", Some(KEY)));
    c.send_raw(&bytes);
    for p in &payloads {
        c.expect_frame(op::PONG, p);
    }
    c.expect_frame(op::TEXT, b"marker");
    c.close_cleanly();
}

#[test]
fn pings_between_data_frames_keep_their_order() {
    // In one write: each pong comes where its ping was, between the echoes around it; a ping
    // inside a fragmented message is answered before the message ends.
    let gw = gw(&[]);
    let mut c = gw.client();
    let mut bytes = Vec::new();
    let mut want = Vec::new();
    for i in 0..100u8 {
        let data = pattern(usize::from(i) * 7, u64::from(i));
        let ping = [i; 3];
        match i % 3 {
            0 => {
                bytes.extend(c.frame_bytes(true, 0, op::BINARY, &data, Some(KEY)));
                bytes.extend(c.frame_bytes(true, 0, op::PING, &ping, Some(KEY)));
                want.push((op::BINARY, data));
                want.push((op::PONG, ping.to_vec()));
            }
            1 => {
                bytes.extend(c.frame_bytes(true, 0, op::PING, &ping, Some(KEY)));
                bytes.extend(c.frame_bytes(true, 0, op::PING, &[], Some(KEY)));
                want.push((op::PONG, ping.to_vec()));
                want.push((op::PONG, vec![]));
            }
            _ => {
                bytes.extend(c.frame_bytes(false, 0, op::BINARY, &data, Some(KEY)));
                bytes.extend(c.frame_bytes(true, 0, op::PING, &ping, Some(KEY)));
                bytes.extend(c.frame_bytes(true, 0, op::CONT, &[i], Some(KEY)));
                want.push((op::PONG, ping.to_vec()));
                let mut whole = data;
                whole.push(i);
                want.push((op::BINARY, whole));
            }
        }
    }
    c.send_raw(&bytes);
    for (opcode, payload) in &want {
        c.expect_frame(*opcode, payload);
    }
    c.close_cleanly();
}

#[test]
fn idle_connection_is_pinged_and_kept_while_it_answers() {
    let gw = gw(&["--ping-interval", "300ms", "--pong-timeout", "2s"]);
    let mut c = gw.client();
    for _ in 0..3 {
        let ping = c.read_frame();
        assert_eq!(
            ping.opcode,
            op::PING,
            "expected a server ping, got {ping:?}"
        );
        assert!(ping.fin && ping.payload.len() <= 125);
        frame(&mut c, true, op::PONG, &ping.payload);
    }
    c.send_text(b"alive");
    // Pings may interleave with the echo.
    loop {
        let f = c.read_frame();
        if f.opcode == op::PING {
            continue;
        }
        assert_eq!((f.opcode, f.payload.as_slice()), (op::TEXT, &b"alive"[..]));
        break;
    }
    // Close; a server ping may still cross our close on a loaded machine.
    c.send_close(1000, b"");
    loop {
        let f = c.read_frame();
        if f.opcode == op::PING {
            continue;
        }
        assert_eq!(f.opcode, op::CLOSE, "{f:?}");
        assert_eq!(f.close_code(), Some(1000));
        break;
    }
    c.expect_tcp_closed_within(PROMPT_CLOSE);
}

#[test]
fn busy_connection_is_not_pinged() {
    // The ping timer counts from the last frame received: a client sending every 150 ms is never
    // pinged with a 1 s interval; once it goes quiet, the ping comes.
    let gw = gateway()
        .args(["--ping-interval", "1s", "--pong-timeout", "5s"])
        .start();
    let mut c = gw.client();
    let started = Instant::now();
    let mut n = 0u32;
    while started.elapsed() < Duration::from_millis(2500) {
        let msg = n.to_be_bytes();
        c.send_binary(&msg);
        let f = c.read_frame();
        assert!(
            f.opcode == op::BINARY && f.payload == msg,
            "a busy connection got {f:?} after {:?}",
            started.elapsed()
        );
        n += 1;
        thread::sleep(Duration::from_millis(150));
    }
    let quiet = Instant::now();
    let ping = c.read_frame();
    assert_eq!(ping.opcode, op::PING, "{ping:?}");
    assert!(
        quiet.elapsed() >= Duration::from_millis(700),
        "pinged too early"
    );
    c.close_cleanly();
}

#[test]
fn any_frame_after_a_ping_counts_as_life() {
    // The pong deadline is about hearing nothing: answering each server ping with a data frame
    // instead of a pong keeps the connection open.
    let gw = gateway()
        .args(["--ping-interval", "300ms", "--pong-timeout", "700ms"])
        .start();
    let mut c = gw.client();
    let started = Instant::now();
    let mut pings = 0;
    while started.elapsed() < Duration::from_millis(2500) {
        let f = c.read_frame();
        match f.opcode {
            op::PING => {
                pings += 1;
                c.send_text(b"no pong, but alive");
            }
            op::TEXT => assert_eq!(f.payload, b"no pong, but alive"),
            _ => panic!("unexpected {f:?} after {pings} pings"),
        }
    }
    assert!(
        pings >= 3,
        "only {pings} pings in 2.5 s with a 300 ms interval"
    );
    c.send_close(1000, b"");
    loop {
        let f = c.read_frame();
        if matches!(f.opcode, op::PING | op::TEXT) {
            continue;
        }
        assert_eq!(f.close_code(), Some(1000), "{f:?}");
        break;
    }
    c.expect_tcp_closed_within(PROMPT_CLOSE);
}

#[test]
fn silent_connection_is_closed_1001_after_pong_timeout() {
    let gw = gw(&["--ping-interval", "300ms", "--pong-timeout", "500ms"]);
    let mut c = gw.client();
    let started = Instant::now();
    let ping = c.read_frame();
    assert_eq!(ping.opcode, op::PING, "{ping:?}");
    let reason = c.expect_close(1001);
    assert_eq!(reason, "ping timeout");
    c.expect_tcp_closed();
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "closed before the pong deadline"
    );
}

// =============================================================================================
// Reserved bits

#[test]
fn reserved_bits_on_any_frame_are_1002() {
    let gw = gw(&[]);
    for rsv in [0x40, 0x20, 0x10, 0x70, 0x60, 0x30, 0x50] {
        for opcode in [op::TEXT, op::BINARY, op::PING, op::PONG, op::CLOSE] {
            let payload: &[u8] = if opcode == op::CLOSE {
                &[0x03, 0xe8]
            } else {
                b"rsv"
            };
            let bytes = raw_frame(&Raw {
                rsv,
                ..Raw::new(opcode, payload)
            });
            violation(&gw, &bytes, 1002);
        }
    }
}

#[test]
fn reserved_bits_on_a_continuation_are_1002() {
    let gw = gw(&[]);
    for rsv in [0x40, 0x20, 0x10] {
        let mut c = gw.client();
        frame(&mut c, false, op::TEXT, b"a");
        c.send_raw(&raw_frame(&Raw {
            rsv,
            ..Raw::new(op::CONT, b"b")
        }));
        expect_error_close(&mut c, 1002);
    }
}

#[test]
fn reserved_bits_after_a_valid_echo_are_1002() {
    // The echo comes first, then the close: the valid frame before the bad one is not lost.
    let gw = gw(&[]);
    let mut c = gw.client();
    let mut bytes = c.frame_bytes(true, 0, op::TEXT, b"ok", Some(KEY));
    bytes.extend(raw_frame(&Raw {
        rsv: 0x40,
        ..Raw::new(op::TEXT, b"bad")
    }));
    c.send_raw(&bytes);
    c.expect_frame(op::TEXT, b"ok");
    expect_error_close(&mut c, 1002);
}

// =============================================================================================
// Opcodes

#[test]
fn reserved_opcodes_are_1002() {
    let gw = gw(&[]);
    for opcode in [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        for fin in [true, false] {
            for payload in [&b""[..], b"payload"] {
                let bytes = raw_frame(&Raw {
                    fin,
                    ..Raw::new(opcode, payload)
                });
                violation(&gw, &bytes, 1002);
            }
        }
    }
}

#[test]
fn reserved_opcode_inside_a_fragmented_message_is_1002() {
    let gw = gw(&[]);
    for opcode in [3, 0xB] {
        let mut c = gw.client();
        frame(&mut c, false, op::BINARY, b"a");
        c.send_raw(&raw_frame(&Raw::new(opcode, b"b")));
        expect_error_close(&mut c, 1002);
    }
}

// =============================================================================================
// Fragmentation

/// Send `payload` as `n` fragments (as even as possible), first with `opcode`.
fn send_fragmented(c: &mut Client, opcode: u8, payload: &[u8], n: usize) {
    let n = n.max(1);
    let size = payload.len().div_ceil(n);
    for i in 0..n {
        let start = (i * size).min(payload.len());
        let end = ((i + 1) * size).min(payload.len());
        let first = if i == 0 { opcode } else { op::CONT };
        frame(c, i + 1 == n, first, &payload[start..end]);
    }
}

#[test]
fn fragmented_messages_are_echoed_as_one_frame() {
    let gw = gw(&[]);
    let mut c = gw.client();
    for n in [1, 2, 3, 4, 10, 100, 1000] {
        let text = utf8_text(2000);
        send_fragmented(&mut c, op::TEXT, &text, n);
        c.expect_frame(op::TEXT, &text);
        let bin = pattern(2000, n as u64);
        send_fragmented(&mut c, op::BINARY, &bin, n);
        c.expect_frame(op::BINARY, &bin);
    }
    c.close_cleanly();
}

#[test]
fn fragmented_large_message_is_echoed() {
    let gw = gw(&[]);
    let mut c = gw.client();
    let bin = pattern(3 << 20, 33);
    send_fragmented(&mut c, op::BINARY, &bin, 7);
    c.expect_frame(op::BINARY, &bin);
    c.close_cleanly();
}

#[test]
fn four_mib_in_65536_fragments_of_64_bytes_are_echoed() {
    // The default `--max-fragments` (65536) at 64 bytes a frame: a legal 4 MiB message.
    let gw = gw(&[]);
    let mut c = gw.client();
    let bin = pattern(4 << 20, 64);
    let mut bytes = Vec::with_capacity(bin.len() / 64 * 70);
    for (i, piece) in bin.chunks(64).enumerate() {
        let opcode = if i == 0 { op::BINARY } else { op::CONT };
        bytes.extend(c.frame_bytes(i == 65535, 0, opcode, piece, Some(KEY)));
    }
    c.send_raw(&bytes);
    c.expect_frame(op::BINARY, &bin);
    c.close_cleanly();
}

#[test]
fn empty_fragments_are_allowed() {
    let gw = gw(&[]);
    let mut c = gw.client();
    // All empty.
    frame(&mut c, false, op::TEXT, b"");
    frame(&mut c, false, op::CONT, b"");
    frame(&mut c, true, op::CONT, b"");
    c.expect_frame(op::TEXT, b"");
    // Empty first and last around data.
    frame(&mut c, false, op::BINARY, b"");
    frame(&mut c, false, op::CONT, b"mid");
    frame(&mut c, false, op::CONT, b"");
    frame(&mut c, true, op::CONT, b"");
    c.expect_frame(op::BINARY, b"mid");
    // Data first, empty final.
    frame(&mut c, false, op::TEXT, "é".as_bytes());
    frame(&mut c, true, op::CONT, b"");
    c.expect_frame(op::TEXT, "é".as_bytes());
    c.close_cleanly();
}

#[test]
fn control_frames_between_fragments_are_handled() {
    let gw = gw(&[]);
    let mut c = gw.client();
    frame(&mut c, false, op::TEXT, b"frag1 ");
    c.send_ping(b"between");
    c.expect_frame(op::PONG, b"between");
    frame(&mut c, false, op::CONT, b"frag2 ");
    frame(&mut c, true, op::PONG, b"unsolicited");
    c.send_ping(b"");
    c.expect_frame(op::PONG, b"");
    frame(&mut c, true, op::CONT, b"frag3");
    c.expect_frame(op::TEXT, b"frag1 frag2 frag3");

    // All in one write: the pong comes before the echo.
    let mut bytes = c.frame_bytes(false, 0, op::BINARY, b"x", Some(KEY));
    bytes.extend(c.frame_bytes(true, 0, op::PING, b"p", Some(KEY)));
    bytes.extend(c.frame_bytes(true, 0, op::CONT, b"y", Some(KEY)));
    c.send_raw(&bytes);
    c.expect_frame(op::PONG, b"p");
    c.expect_frame(op::BINARY, b"xy");
    c.close_cleanly();
}

#[test]
fn close_between_fragments_is_echoed_without_the_message() {
    let gw = gw(&[]);
    let mut c = gw.client();
    frame(&mut c, false, op::TEXT, b"never ");
    c.send_close(1000, b"");
    c.expect_close(1000);
    c.expect_tcp_closed();
}

#[test]
fn continuation_without_a_start_is_1002() {
    let gw = gateway().start();
    for fin in [true, false] {
        let mut c = gw.client();
        frame(&mut c, fin, op::CONT, b"orphan");
        expect_in_sync_error_close(&mut c, 1002);
    }
    // Also right after a complete message.
    let mut c = gw.client();
    c.send_text(b"done");
    c.expect_frame(op::TEXT, b"done");
    frame(&mut c, true, op::CONT, b"late");
    expect_in_sync_error_close(&mut c, 1002);
}

#[test]
fn new_data_message_before_the_end_is_1002() {
    let gw = gateway().start();
    for (first, second) in [
        (op::TEXT, op::TEXT),
        (op::TEXT, op::BINARY),
        (op::BINARY, op::TEXT),
        (op::BINARY, op::BINARY),
    ] {
        for second_fin in [true, false] {
            let mut c = gw.client();
            frame(&mut c, false, first, b"one");
            frame(&mut c, second_fin, second, b"two");
            expect_in_sync_error_close(&mut c, 1002);
        }
    }
}

// =============================================================================================
// UTF-8

/// A text mixing 1- to 4-byte code points and the edge scalars that are valid.
fn tricky_text() -> Vec<u8> {
    "a\u{7f}\u{80}é\u{7ff}\u{800}€\u{d7ff}\u{e000}\u{fffe}\u{ffff}\u{10000}𝄞\u{10ffff}\u{feff}\u{0}z"
        .as_bytes()
        .to_vec()
}

#[test]
fn utf8_valid_text_in_two_fragments_split_everywhere() {
    let gw = gw(&[]);
    let mut c = gw.client();
    let text = tricky_text();
    for split in 0..=text.len() {
        frame(&mut c, false, op::TEXT, &text[..split]);
        frame(&mut c, true, op::CONT, &text[split..]);
        c.expect_frame(op::TEXT, &text);
    }
    c.close_cleanly();
}

#[test]
fn utf8_valid_text_in_three_fragments_split_everywhere() {
    let gw = gw(&[]);
    let mut c = gw.client();
    let text = "κόσμε𝄞€\u{10ffff}".as_bytes().to_vec();
    let mut batch = Vec::new();
    let mut expected = 0;
    for a in 0..=text.len() {
        for b in a..=text.len() {
            batch.extend(c.frame_bytes(false, 0, op::TEXT, &text[..a], Some(KEY)));
            batch.extend(c.frame_bytes(false, 0, op::CONT, &text[a..b], Some(KEY)));
            batch.extend(c.frame_bytes(true, 0, op::CONT, &text[b..], Some(KEY)));
            expected += 1;
        }
    }
    c.send_raw(&batch);
    for _ in 0..expected {
        c.expect_frame(op::TEXT, &text);
    }
    c.close_cleanly();
}

#[test]
fn utf8_valid_text_one_byte_per_fragment() {
    let gw = gw(&[]);
    let mut c = gw.client();
    let text = tricky_text();
    send_fragmented(&mut c, op::TEXT, &text, text.len());
    c.expect_frame(op::TEXT, &text);
    c.close_cleanly();
}

#[test]
fn utf8_code_point_split_around_control_frames() {
    // The UTF-8 state of a text message survives control frames between its fragments.
    let gw = gateway().start();
    let mut c = gw.client();
    let text = "x𝄞y€z".as_bytes();
    for split in 1..text.len() {
        frame(&mut c, false, op::TEXT, &text[..split]);
        c.send_ping(b"mid");
        c.expect_frame(op::PONG, b"mid");
        frame(&mut c, true, op::PONG, b"unsolicited");
        frame(&mut c, true, op::CONT, &text[split..]);
        c.expect_frame(op::TEXT, text);
    }
    // A code point left unfinished before a ping is still invalid when the next fragment
    // does not complete it.
    frame(&mut c, false, op::TEXT, &[b'a', 0xe2, 0x82]);
    c.send_ping(b"");
    c.expect_frame(op::PONG, b"");
    frame(&mut c, false, op::CONT, b"A");
    expect_in_sync_error_close(&mut c, 1007);
}

/// Byte sequences that are invalid as soon as their last byte is seen.
const INVALID: [&[u8]; 14] = [
    &[0xff],
    &[0xfe],
    &[0x80],             // lone continuation
    &[0xbf],             // lone continuation
    &[0xc0, 0x80],       // overlong NUL
    &[0xc1, 0xbf],       // overlong
    &[0xe0, 0x80],       // overlong 3-byte (bad second byte)
    &[0xed, 0xa0],       // surrogate U+D800
    &[0xed, 0xbf],       // surrogate U+DFFF
    &[0xf0, 0x80],       // overlong 4-byte
    &[0xf4, 0x90],       // above U+10FFFF
    &[0xf5],             // never valid
    &[0xc3, b'a'],       // truncated 2-byte sequence
    &[0xe2, 0x82, 0x28], // truncated 3-byte sequence
];

/// The first fragment holds the text up to and including the bad bytes; the close must arrive
/// before the final fragment would be sent (it never is).
#[test]
fn utf8_invalid_sequence_at_every_position_fails_fast() {
    let gw = gateway().start();
    let prefix_text = tricky_text();
    for bad in INVALID {
        for pos in 0..=prefix_text.len() {
            // Cut the prefix at a code point boundary at or before `pos`.
            let cut = (0..=pos)
                .rev()
                .find(|&i| std::str::from_utf8(&prefix_text[..i]).is_ok())
                .unwrap_or(0);
            let mut first = prefix_text[..cut].to_vec();
            first.extend_from_slice(bad);
            let mut c = gw.client();
            frame(&mut c, false, op::TEXT, &first);
            expect_in_sync_error_close(&mut c, 1007);
        }
    }
}

#[test]
fn utf8_invalid_sequence_split_across_fragments_fails_at_its_fragment() {
    let gw = gateway().start();
    // The lead byte ends one fragment; the byte that makes it invalid starts the next.
    for (lead, rest) in [
        (&[0xed][..], &[0xa0, 0x80][..]),
        (&[0xf4][..], &[0x90, 0x80, 0x80][..]),
        (&[0xe0][..], &[0x9f, 0xbf][..]),
        (&[0xf0, 0x90][..], &[0x41][..]),
        (&[0xc3][..], &[0xc3][..]),
    ] {
        let mut c = gw.client();
        let mut first = b"ok ".to_vec();
        first.extend_from_slice(lead);
        frame(&mut c, false, op::TEXT, &first);
        frame(&mut c, false, op::CONT, rest);
        expect_in_sync_error_close(&mut c, 1007);
    }
    // Invalid in the third of many fragments, far before the end.
    let mut c = gw.client();
    frame(&mut c, false, op::TEXT, b"one");
    frame(&mut c, false, op::CONT, b"two");
    frame(&mut c, false, op::CONT, &[b't', 0xff]);
    expect_in_sync_error_close(&mut c, 1007);
}

#[test]
fn utf8_invalid_inside_a_partly_received_frame_fails_fast() {
    let gw = gw(&[]);
    // A final text frame announcing 1000 bytes, of which only the first 10 arrive; byte 5 is bad.
    let mut payload = utf8_text(1000);
    payload[5] = 0xff;
    let bytes = raw_frame(&Raw::new(op::TEXT, &payload));
    let header_len = bytes.len() - payload.len();
    let mut c = gw.client();
    c.send_raw(&bytes[..header_len + 10]);
    c.expect_close(1007);
    c.finish_close(1007);

    // The same inside a large non-final frame.
    let mut payload = utf8_text(100_000);
    payload[50] = 0xc0;
    let bytes = raw_frame(&Raw {
        fin: false,
        ..Raw::new(op::TEXT, &payload)
    });
    let header_len = bytes.len() - payload.len();
    let mut c = gw.client();
    c.send_raw(&bytes[..header_len + 4096]);
    c.expect_close(1007);
    c.finish_close(1007);
}

#[test]
fn utf8_invalid_in_a_whole_frame_is_1007() {
    let gw = gateway().start();
    for bad in INVALID {
        let mut payload = b"Hello ".to_vec();
        payload.extend_from_slice(bad);
        payload.extend_from_slice(b" world");
        violation_in_sync(&gw, &raw_frame(&Raw::new(op::TEXT, &payload)), 1007);
    }
    // Encoded surrogate pair (CESU-8) and an overlong 4-byte form.
    violation_in_sync(
        &gw,
        &raw_frame(&Raw::new(op::TEXT, &[0xed, 0xa0, 0x80, 0xed, 0xb0, 0x80])),
        1007,
    );
    violation_in_sync(
        &gw,
        &raw_frame(&Raw::new(op::TEXT, &[0xf0, 0x8f, 0xbf, 0xbf])),
        1007,
    );
}

#[test]
fn utf8_text_ending_inside_a_code_point_is_1007() {
    let gw = gateway().start();
    for tail in [&[0xc3][..], &[0xe2, 0x82], &[0xf0, 0x9d, 0x84]] {
        let mut payload = b"end".to_vec();
        payload.extend_from_slice(tail);
        violation_in_sync(&gw, &raw_frame(&Raw::new(op::TEXT, &payload)), 1007);
        // Fragmented: complete fragments, then an empty final one.
        let mut c = gw.client();
        frame(&mut c, false, op::TEXT, &payload);
        frame(&mut c, true, op::CONT, b"");
        expect_in_sync_error_close(&mut c, 1007);
    }
}

#[test]
fn utf8_invalid_bytes_in_binary_are_echoed() {
    let gw = gw(&[]);
    let mut c = gw.client();
    for bad in INVALID {
        c.send_binary(bad);
        c.expect_frame(op::BINARY, bad);
    }
    c.close_cleanly();
}

// =============================================================================================
// Close handling

const VALID_CODES: [u16; 16] = [
    1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999,
];
const INVALID_CODES: [u16; 12] = [
    0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
];

#[test]
fn close_every_valid_code_is_echoed_with_an_empty_reason() {
    let gw = gateway().start();
    for code in VALID_CODES {
        for reason in [&b""[..], b"bye"] {
            let mut c = gw.client();
            c.send_close(code, reason);
            let echoed = c.expect_close(code);
            assert_eq!(echoed, "", "the echo carries an empty reason");
            c.expect_tcp_closed_within(PROMPT_CLOSE);
        }
    }
}

#[test]
fn close_invalid_codes_are_1002() {
    let gw = gateway().start();
    for code in INVALID_CODES {
        let mut c = gw.client();
        c.send_close(code, b"");
        c.expect_close(1002);
        // Our close was already received: the server closes TCP now.
        c.expect_tcp_closed_within(PROMPT_CLOSE);
    }
}

#[test]
fn close_with_one_byte_payload_is_1002() {
    let gw = gateway().start();
    let mut c = gw.client();
    frame(&mut c, true, op::CLOSE, &[0x03]);
    c.expect_close(1002);
    c.expect_tcp_closed_within(PROMPT_CLOSE);
}

#[test]
fn close_reason_of_123_bytes_is_accepted() {
    let gw = gateway().start();
    let mut c = gw.client();
    let reason = utf8_text(123);
    c.send_close(1000, &reason);
    c.expect_close(1000);
    c.expect_tcp_closed_within(PROMPT_CLOSE);
}

#[test]
fn close_reason_with_invalid_utf8_is_1007() {
    let gw = gateway().start();
    for reason in [
        &[0xff][..],
        &[b'o', b'k', 0xc0, 0x80],
        &[0xed, 0xa0, 0x80],
        &[0xe2, 0x82],
    ] {
        let mut c = gw.client();
        c.send_close(1000, reason);
        c.expect_close(1007);
        c.expect_tcp_closed_within(PROMPT_CLOSE);
    }
}

#[test]
fn close_empty_is_answered_with_empty_close() {
    let gw = gateway().start();
    let mut c = gw.client();
    c.send_empty_close();
    c.expect_empty_close();
    c.expect_tcp_closed_within(PROMPT_CLOSE);
}

#[test]
fn close_data_after_close_is_ignored_and_tcp_closed() {
    let gw = gateway().start();
    let mut c = gw.client();
    let mut bytes = c.frame_bytes(true, 0, op::CLOSE, &1000u16.to_be_bytes(), Some(KEY));
    bytes.extend(c.frame_bytes(true, 0, op::TEXT, b"too late", Some(KEY)));
    bytes.extend(c.frame_bytes(true, 0, op::PING, b"too late", Some(KEY)));
    c.send_raw(&bytes);
    c.expect_close(1000);
    c.expect_tcp_closed_within(PROMPT_CLOSE);
}

#[test]
fn close_data_after_server_error_close_is_ignored() {
    let gw = gateway().start();
    let mut c = gw.client();
    c.send_raw(&raw_frame(&Raw::new(5, b"")));
    c.expect_close(1002);
    // Data and a bad frame after the server's close: none is answered. (No ping here: RFC 6455
    // §5.5.2 still asks for a pong until the peer's close has been received.)
    c.send_text(b"ignored");
    c.send_binary(b"ignored");
    c.send_raw(&raw_frame(&Raw::new(6, b"")));
    c.send_close(1000, b"");
    c.expect_tcp_closed_within(PROMPT_CLOSE);
}

#[test]
fn close_timeout_drops_a_peer_that_never_answers() {
    let gw = gateway().args(["--close-timeout", "500ms"]).start();
    let mut c = gw.client();
    let started = Instant::now();
    c.send_raw(&raw_frame(&Raw {
        rsv: 0x40,
        ..Raw::new(op::TEXT, b"x")
    }));
    c.expect_close(1002);
    // We never send our close: the server drops TCP by its close deadline.
    c.expect_tcp_closed_within(Duration::from_secs(5));
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "TCP dropped before the close timeout"
    );
}

// =============================================================================================
// Limits

#[test]
fn limit_frame_bytes() {
    let gw = gw(&["--max-frame-bytes", "1000"]);
    let mut c = gw.client();
    let ok = pattern(1000, 1);
    c.send_binary(&ok);
    c.expect_frame(op::BINARY, &ok);
    c.send_binary(&pattern(1001, 2));
    expect_error_close(&mut c, 1009);

    // Refused from the header alone, before the payload arrives.
    let mut c = gw.client();
    let big = pattern(5000, 3);
    let bytes = raw_frame(&Raw::new(op::BINARY, &big));
    c.send_raw(&bytes[..8]);
    expect_error_close(&mut c, 1009);

    // Also for a fragment.
    let mut c = gw.client();
    frame(&mut c, false, op::TEXT, b"a");
    frame(&mut c, true, op::CONT, &utf8_text(1001));
    expect_error_close(&mut c, 1009);
}

#[test]
fn limit_message_bytes() {
    let gw = gateway().args(["--max-message-bytes", "1000"]).start();
    let mut c = gw.client();
    let ok = pattern(1000, 4);
    send_fragmented(&mut c, op::BINARY, &ok, 3);
    c.expect_frame(op::BINARY, &ok);
    // Control payloads between fragments do not count towards the message.
    frame(&mut c, false, op::BINARY, &ok[..500]);
    c.send_ping(&[1; 125]);
    c.expect_frame(op::PONG, &[1; 125]);
    frame(&mut c, true, op::PONG, &[2; 125]);
    frame(&mut c, true, op::CONT, &ok[500..]);
    c.expect_frame(op::BINARY, &ok);
    c.send_binary(&ok);
    c.expect_frame(op::BINARY, &ok);
    // 400 + 400 + 201 bytes.
    frame(&mut c, false, op::BINARY, &[1; 400]);
    frame(&mut c, false, op::CONT, &[2; 400]);
    frame(&mut c, true, op::CONT, &[3; 201]);
    expect_in_sync_error_close(&mut c, 1009);

    // A non-final fragment pushing the message over the limit is refused without the rest.
    let mut c = gw.client();
    frame(&mut c, false, op::TEXT, &utf8_text(600));
    frame(&mut c, false, op::CONT, &utf8_text(600));
    expect_in_sync_error_close(&mut c, 1009);

    // One frame over the message limit.
    let mut c = gw.client();
    c.send_text(&utf8_text(1001));
    expect_in_sync_error_close(&mut c, 1009);
}

#[test]
fn limit_fragments() {
    let gw = gateway().args(["--max-fragments", "10"]).start();
    let mut c = gw.client();
    let text = utf8_text(10);
    send_fragmented(&mut c, op::TEXT, &text, 10);
    c.expect_frame(op::TEXT, &text);
    // Control frames between fragments are not fragments of the message.
    for i in 0..10 {
        frame(
            &mut c,
            i == 9,
            if i == 0 { op::BINARY } else { op::CONT },
            b"y",
        );
        if i < 9 {
            c.send_ping(b"not a fragment");
            c.expect_frame(op::PONG, b"not a fragment");
            frame(&mut c, true, op::PONG, b"nor this");
        }
    }
    c.expect_frame(op::BINARY, b"yyyyyyyyyy");
    // Eleven frames, the last one final.
    for i in 0..11 {
        frame(
            &mut c,
            i == 10,
            if i == 0 { op::TEXT } else { op::CONT },
            b"x",
        );
    }
    expect_in_sync_error_close(&mut c, 1009);

    // Eleven non-final frames: refused without waiting for the end.
    let mut c = gw.client();
    for i in 0..11 {
        frame(
            &mut c,
            false,
            if i == 0 { op::BINARY } else { op::CONT },
            b"",
        );
    }
    expect_in_sync_error_close(&mut c, 1009);
}

#[test]
fn limit_default_frame_bytes_is_16_mib() {
    let gw = gw(&[]);
    let mut c = gw.client();
    // A header announcing 16 MiB + 1: refused before any payload.
    let bytes = raw_frame(&Raw {
        announced: Some((16 << 20) + 1),
        ..Raw::new(op::BINARY, &[])
    });
    c.send_raw(&bytes);
    expect_error_close(&mut c, 1009);
}

#[test]
fn limits_are_per_connection() {
    let gw = gw(&["--max-message-bytes", "1000"]);
    let mut a = gw.client();
    let mut b = gw.client();
    let ok = utf8_text(1000);
    a.send_text(&ok);
    a.expect_frame(op::TEXT, &ok);
    b.send_text(&utf8_text(1001));
    expect_error_close(&mut b, 1009);
    a.send_text(&ok);
    a.expect_frame(op::TEXT, &ok);
    a.close_cleanly();
    gw.assert_serves();
}
