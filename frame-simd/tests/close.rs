//! Close payloads (RFC 6455 §5.5.1, §7.4): which codes a peer may send, encoding, parsing, and
//! the close code each refusal answers with.

use frame_simd::close::{encode_close_payload, parse_close_payload, MAX_REASON_LEN};
use frame_simd::{CloseCode, CloseError};
use proptest::prelude::*;

#[test]
fn sendable_codes_follow_the_rfc_and_the_iana_registry() {
    let sendable = [
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000,
        4999,
    ];
    let not_sendable = [
        0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 9999, 65535,
    ];
    for code in sendable {
        assert!(CloseCode(code).is_sendable(), "{code}");
    }
    for code in not_sendable {
        assert!(!CloseCode(code).is_sendable(), "{code}");
    }
    // The whole code space: exactly 12 codes below 3000 and the 3000-4999 block.
    let count = (0..=u16::MAX)
        .filter(|&c| CloseCode(c).is_sendable())
        .count();
    assert_eq!(count, 12 + 2000);
}

#[test]
fn named_codes_that_never_go_on_the_wire_are_not_sendable() {
    for code in [
        CloseCode::NO_STATUS,
        CloseCode::ABNORMAL,
        CloseCode::TLS_HANDSHAKE,
    ] {
        assert!(!code.is_sendable(), "{code}");
    }
}

#[test]
fn encode_writes_code_then_reason() {
    let mut out = [0; 125];
    let len = encode_close_payload(&mut out, CloseCode::NORMAL, "").unwrap();
    assert_eq!(&out[..len], &[0x03, 0xe8]);
    let len = encode_close_payload(&mut out, CloseCode(4000), "bye").unwrap();
    assert_eq!(&out[..len], &[0x0f, 0xa0, b'b', b'y', b'e']);
}

#[test]
fn encode_accepts_a_123_byte_reason_and_refuses_124() {
    let mut out = [0; 125];
    let reason = "a".repeat(MAX_REASON_LEN);
    assert_eq!(
        encode_close_payload(&mut out, CloseCode::GOING_AWAY, &reason),
        Ok(125)
    );
    let reason = "a".repeat(MAX_REASON_LEN + 1);
    let e = encode_close_payload(&mut out, CloseCode::GOING_AWAY, &reason).unwrap_err();
    assert_eq!(e, CloseError::ReasonTooLong(124));
    // Bytes count, not characters: 41 three-byte characters are 123 bytes, 42 are 126.
    assert_eq!(
        encode_close_payload(&mut out, CloseCode::NORMAL, &"€".repeat(41)),
        Ok(125)
    );
    assert_eq!(
        encode_close_payload(&mut out, CloseCode::NORMAL, &"€".repeat(42)),
        Err(CloseError::ReasonTooLong(126))
    );
}

#[test]
fn encode_refuses_codes_a_peer_may_not_send() {
    let mut out = [0; 125];
    for code in [1005, 1006, 1015, 999, 5000] {
        assert_eq!(
            encode_close_payload(&mut out, CloseCode(code), ""),
            Err(CloseError::InvalidCode(code))
        );
    }
}

#[test]
fn parse_empty_payload_has_no_code() {
    assert_eq!(parse_close_payload(&[]), Ok(None));
}

#[test]
fn parse_code_and_reason() {
    assert_eq!(
        parse_close_payload(&[0x03, 0xe8]),
        Ok(Some((CloseCode::NORMAL, "")))
    );
    assert_eq!(
        parse_close_payload(&[0x03, 0xf4, 0xe2, 0x82, 0xac]),
        Ok(Some((CloseCode::SERVICE_RESTART, "€")))
    );
}

#[test]
fn parse_one_byte_is_a_protocol_error() {
    let e = parse_close_payload(&[0x03]).unwrap_err();
    assert_eq!(e, CloseError::OneByte);
    assert_eq!(e.close_code(), CloseCode::PROTOCOL_ERROR);
}

#[test]
fn parse_invalid_code_is_a_protocol_error() {
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        let e = parse_close_payload(&code.to_be_bytes()).unwrap_err();
        assert_eq!(e, CloseError::InvalidCode(code));
        assert_eq!(e.close_code(), CloseCode::PROTOCOL_ERROR);
    }
}

#[test]
fn parse_bad_utf8_reason_is_1007() {
    for reason in [
        &[0xff][..],
        &[0xe2, 0x82],             // truncated code point
        &[0xc0, 0xaf],             // overlong
        &[0xed, 0xa0, 0x80],       // surrogate
        &[0xf4, 0x90, 0x80, 0x80], // above U+10FFFF
    ] {
        let mut payload = vec![0x03, 0xe8];
        payload.extend_from_slice(reason);
        let e = parse_close_payload(&payload).unwrap_err();
        assert_eq!(e, CloseError::ReasonNotUtf8, "{reason:02x?}");
        assert_eq!(e.close_code(), CloseCode::INVALID_PAYLOAD);
    }
}

#[test]
fn parse_refuses_a_payload_over_125_bytes() {
    let mut payload = vec![0x03, 0xe8];
    payload.extend_from_slice(&[b'a'; 124]);
    assert_eq!(
        parse_close_payload(&payload),
        Err(CloseError::ReasonTooLong(124))
    );
}

#[test]
fn errors_and_codes_have_a_readable_message() {
    for e in [
        CloseError::OneByte,
        CloseError::InvalidCode(1005),
        CloseError::ReasonNotUtf8,
        CloseError::ReasonTooLong(124),
    ] {
        let text = e.to_string();
        assert!(!text.is_empty() && !text.contains("CloseError"), "{text}");
    }
    assert_eq!(CloseCode::PROTOCOL_ERROR.to_string(), "1002");
}

fn sendable_code() -> impl Strategy<Value = CloseCode> {
    prop_oneof![1000..=1003u16, 1007..=1014u16, 3000..=4999u16].prop_map(CloseCode)
}

proptest! {
    #[test]
    fn encode_then_parse_round_trips(code in sendable_code(), reason in "\\PC{0,41}") {
        let mut out = [0; 125];
        match encode_close_payload(&mut out, code, &reason) {
            Ok(len) => {
                prop_assert_eq!(len, 2 + reason.len());
                prop_assert_eq!(parse_close_payload(&out[..len]), Ok(Some((code, reason.as_str()))));
            }
            Err(e) => prop_assert_eq!(e, CloseError::ReasonTooLong(reason.len())),
        }
    }

    #[test]
    fn parse_agrees_with_the_rules_on_random_bytes(payload in prop::collection::vec(any::<u8>(), 0..130)) {
        let got = parse_close_payload(&payload);
        match payload.as_slice() {
            [] => prop_assert_eq!(got, Ok(None)),
            [_] => prop_assert_eq!(got, Err(CloseError::OneByte)),
            [c0, c1, reason @ ..] => {
                let code = CloseCode(u16::from_be_bytes([*c0, *c1]));
                let want = if !code.is_sendable() {
                    Err(CloseError::InvalidCode(code.0))
                } else if reason.len() > MAX_REASON_LEN {
                    Err(CloseError::ReasonTooLong(reason.len()))
                } else {
                    std::str::from_utf8(reason)
                        .map(|r| Some((code, r)))
                        .map_err(|_| CloseError::ReasonNotUtf8)
                };
                prop_assert_eq!(got, want);
            }
        }
    }
}
