//! Header parsing (RFC 6455 §5.2): fixed wire examples, every forbidden form with its variant
//! and close code, encode/parse round trips for every length class, opcode and role, and the
//! incremental contract (`Need(n)` is exact and a prefix never disagrees with the whole).

use frame_simd::{
    encode_header, parse_header, CloseCode, Header, HeaderError, MaskKey, Opcode, ParseConfig,
    Parsed, Role, MAX_HEADER_LEN, RSV1,
};
use proptest::prelude::*;

const LIMIT: u64 = u64::MAX;
const KEY: MaskKey = MaskKey([0x37, 0xfa, 0x21, 0x3d]);

fn cfg(role: Role) -> ParseConfig {
    ParseConfig {
        role,
        rsv_allowed: 0,
        max_payload: LIMIT,
    }
}

fn header(buf: &[u8], cfg: &ParseConfig) -> (Header, usize) {
    match parse_header(buf, cfg) {
        Ok(Parsed::Header { header, len }) => (header, len),
        other => panic!("expected a header from {buf:02x?}, got {other:?}"),
    }
}

fn err(buf: &[u8], cfg: &ParseConfig) -> HeaderError {
    match parse_header(buf, cfg) {
        Err(e) => e,
        other => panic!("expected an error from {buf:02x?}, got {other:?}"),
    }
}

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

const DATA: [Opcode; 3] = [Opcode::Continuation, Opcode::Text, Opcode::Binary];
const CONTROL: [Opcode; 3] = [Opcode::Close, Opcode::Ping, Opcode::Pong];

// ---------------------------------------------------------------------------------------------
// Fixed wire examples (RFC 6455 §5.7 and the extended length forms).

#[test]
fn rfc_unmasked_hello_from_a_server() {
    let frame = hex("81 05 48 65 6c 6c 6f");
    let (h, len) = header(&frame, &cfg(Role::Client));
    assert_eq!(len, 2);
    assert_eq!(
        h,
        Header {
            fin: true,
            rsv: 0,
            opcode: Opcode::Text,
            mask_key: None,
            payload_len: 5
        }
    );
    assert_eq!(&frame[len..], b"Hello");
}

#[test]
fn rfc_masked_hello_from_a_client() {
    let frame = hex("81 85 37 fa 21 3d 7f 9f 4d 51 58");
    let (h, len) = header(&frame, &cfg(Role::Server));
    assert_eq!(len, 6);
    assert_eq!(h.mask_key, Some(KEY));
    assert_eq!((h.fin, h.opcode, h.payload_len), (true, Opcode::Text, 5));
    let payload: Vec<u8> = frame[len..]
        .iter()
        .zip(KEY.0.iter().cycle())
        .map(|(b, k)| b ^ k)
        .collect();
    assert_eq!(payload, b"Hello");
}

#[test]
fn rfc_fragmented_hello() {
    let first = hex("01 03 48 65 6c");
    let last = hex("80 02 6c 6f");
    let (h, _) = header(&first, &cfg(Role::Client));
    assert_eq!((h.fin, h.opcode, h.payload_len), (false, Opcode::Text, 3));
    let (h, _) = header(&last, &cfg(Role::Client));
    assert_eq!(
        (h.fin, h.opcode, h.payload_len),
        (true, Opcode::Continuation, 2)
    );
}

#[test]
fn rfc_ping_and_masked_pong() {
    let (h, len) = header(&hex("89 05 48 65 6c 6c 6f"), &cfg(Role::Client));
    assert_eq!((h.opcode, h.payload_len, len), (Opcode::Ping, 5, 2));
    let (h, len) = header(&hex("8a 85 37 fa 21 3d 7f 9f 4d 51 58"), &cfg(Role::Server));
    assert_eq!((h.opcode, h.payload_len, len), (Opcode::Pong, 5, 6));
}

#[test]
fn binary_256_bytes_uses_the_16_bit_length() {
    let (h, len) = header(&hex("82 7e 01 00"), &cfg(Role::Client));
    assert_eq!((h.opcode, h.payload_len, len), (Opcode::Binary, 256, 4));
}

#[test]
fn binary_64_kib_uses_the_64_bit_length() {
    let (h, len) = header(&hex("82 7f 00 00 00 00 00 01 00 00"), &cfg(Role::Client));
    assert_eq!((h.opcode, h.payload_len, len), (Opcode::Binary, 65536, 10));
}

#[test]
fn masked_64_bit_length_is_the_longest_header() {
    let (h, len) = header(
        &hex("82 ff 7f ff ff ff ff ff ff ff 01 02 03 04"),
        &cfg(Role::Server),
    );
    assert_eq!(len, MAX_HEADER_LEN);
    assert_eq!(h.payload_len, (1 << 63) - 1);
    assert_eq!(h.mask_key, Some(MaskKey([1, 2, 3, 4])));
}

#[test]
fn length_class_boundaries() {
    for (bytes, want, len) in [
        ("82 7d", 125, 2),
        ("82 7e 00 7e", 126, 4),
        ("82 7e ff ff", 65535, 4),
        ("82 7f 00 00 00 00 00 01 00 00", 65536, 10),
    ] {
        let (h, l) = header(&hex(bytes), &cfg(Role::Client));
        assert_eq!((h.payload_len, l), (want, len), "{bytes}");
    }
}

#[test]
fn bytes_after_the_header_are_ignored() {
    let (h, len) = header(&hex("82 02 ff ff 81 85"), &cfg(Role::Client));
    assert_eq!((h.payload_len, len), (2, 2));
}

#[test]
fn negotiated_rsv1_is_accepted_and_reported() {
    let cfg = ParseConfig {
        rsv_allowed: 0x40,
        ..cfg(Role::Client)
    };
    let (h, _) = header(&hex("c1 05"), &cfg);
    assert_eq!((h.rsv, h.opcode), (0x40, Opcode::Text));
}

// ---------------------------------------------------------------------------------------------
// Forbidden forms: the variant, the close code, and how early they are seen.

#[test]
fn reserved_opcodes_are_refused_from_the_first_byte() {
    for op in (0x3..=0x7).chain(0xb..=0xf) {
        for role in [Role::Server, Role::Client] {
            let e = err(&[0x80 | op], &cfg(role));
            assert_eq!(e, HeaderError::ReservedOpcode(op));
            assert_eq!(e.close_code(), CloseCode::PROTOCOL_ERROR);
            assert_eq!(err(&[0x80 | op, 0x80], &cfg(role)), e);
        }
    }
}

#[test]
fn rsv_bits_without_an_extension_are_refused() {
    for bits in [0x40, 0x20, 0x10, 0x70, 0x30] {
        let e = err(&[0x81 | bits], &cfg(Role::Server));
        assert_eq!(e, HeaderError::RsvNotNegotiated(bits));
        assert_eq!(e.close_code(), CloseCode::PROTOCOL_ERROR);
    }
    // RSV1 negotiated: RSV2 and RSV3 are still refused, and only they are reported.
    let cfg = ParseConfig {
        rsv_allowed: 0x40,
        ..cfg(Role::Server)
    };
    assert_eq!(err(&[0xe1], &cfg), HeaderError::RsvNotNegotiated(0x20));
    assert_eq!(err(&[0xd1], &cfg), HeaderError::RsvNotNegotiated(0x10));
}

#[test]
fn negotiated_rsv1_marks_first_data_frames_only() {
    // RFC 7692 §6: RSV1 on a continuation or a control frame is refused from the first byte,
    // for both roles; on a first text or binary frame (final or not) it is accepted.
    for role in [Role::Server, Role::Client] {
        let cfg = ParseConfig {
            rsv_allowed: RSV1,
            ..cfg(role)
        };
        for b0 in [0xc0, 0x40, 0xc8, 0xc9, 0xca] {
            let e = err(&[b0], &cfg);
            assert_eq!(e, HeaderError::Rsv1NotFirstFrame, "{b0:#x}");
            assert_eq!(e.close_code(), CloseCode::PROTOCOL_ERROR);
        }
        let mask = if role == Role::Server { 0x80 } else { 0 };
        for b0 in [0xc1, 0x41, 0xc2, 0x42] {
            let mut buf = vec![b0, mask | 1];
            if mask != 0 {
                buf.extend([1, 2, 3, 4]);
            }
            let (h, _) = header(&buf, &cfg);
            assert_eq!(h.rsv, RSV1);
        }
    }
}

#[test]
fn control_frames_without_fin_are_refused_from_the_first_byte() {
    for op in CONTROL {
        let e = err(&[op as u8], &cfg(Role::Server));
        assert_eq!(e, HeaderError::FragmentedControl);
        assert_eq!(e.close_code(), CloseCode::PROTOCOL_ERROR);
    }
}

#[test]
fn control_frames_over_125_bytes_are_refused_from_the_second_byte() {
    for op in CONTROL {
        let b0 = 0x80 | op as u8;
        for (len7, role) in [(126, Role::Server), (127, Role::Client)] {
            let mask = if role == Role::Server { 0x80 } else { 0 };
            let e = err(&[b0, mask | len7], &cfg(role));
            assert_eq!(e, HeaderError::ControlTooLong(u64::from(len7)));
            assert_eq!(e.close_code(), CloseCode::PROTOCOL_ERROR);
        }
        // 125 is the largest allowed.
        let (h, _) = header(&[b0, 0xfd, 0, 0, 0, 0], &cfg(Role::Server));
        assert_eq!(h.payload_len, 125);
    }
}

#[test]
fn length_with_the_top_bit_set_is_refused() {
    let e = err(&hex("82 7f 80 00 00 00 00 00 00 00"), &cfg(Role::Client));
    assert_eq!(e, HeaderError::LengthHighBit);
    assert_eq!(e.close_code(), CloseCode::PROTOCOL_ERROR);
    assert_eq!(
        err(&hex("82 ff ff ff ff ff ff ff ff ff"), &cfg(Role::Server)),
        HeaderError::LengthHighBit
    );
}

#[test]
fn non_minimal_lengths_are_refused() {
    for bytes in [
        "82 7e 00 00",
        "82 7e 00 7d",
        "82 7f 00 00 00 00 00 00 00 00",
        "82 7f 00 00 00 00 00 00 00 7d",
        "82 7f 00 00 00 00 00 00 ff ff",
    ] {
        let e = err(&hex(bytes), &cfg(Role::Client));
        assert_eq!(e, HeaderError::NonMinimalLength, "{bytes}");
        assert_eq!(e.close_code(), CloseCode::PROTOCOL_ERROR);
    }
}

#[test]
fn mask_rule_depends_on_the_role() {
    let e = err(&hex("81 05"), &cfg(Role::Server));
    assert_eq!(e, HeaderError::MaskRule(Role::Server));
    assert_eq!(e.close_code(), CloseCode::PROTOCOL_ERROR);
    let e = err(&hex("81 85"), &cfg(Role::Client));
    assert_eq!(e, HeaderError::MaskRule(Role::Client));
    assert_eq!(e.close_code(), CloseCode::PROTOCOL_ERROR);
}

#[test]
fn over_limit_is_refused_before_the_mask_key_arrives() {
    let cfg = ParseConfig {
        max_payload: 1000,
        ..cfg(Role::Server)
    };
    // 1001 bytes announced; the key has not arrived yet.
    let e = err(&hex("82 fe 03 e9"), &cfg);
    assert_eq!(
        e,
        HeaderError::OverLimit {
            len: 1001,
            limit: 1000
        }
    );
    assert_eq!(e.close_code(), CloseCode::MESSAGE_TOO_BIG);
    // Exactly at the limit is fine.
    assert_eq!(parse_header(&hex("82 fe 03 e8"), &cfg), Ok(Parsed::Need(4)));
    // A 7-bit length over a tiny limit is seen from the second byte.
    let tiny = ParseConfig {
        max_payload: 4,
        ..cfg
    };
    assert_eq!(
        err(&hex("81 85"), &tiny),
        HeaderError::OverLimit { len: 5, limit: 4 }
    );
}

#[test]
fn a_frame_announcing_2_pow_62_bytes_is_over_limit() {
    // The parser never allocates: the announced length only meets a comparison.
    let cfg = ParseConfig {
        max_payload: 16 << 20,
        ..cfg(Role::Server)
    };
    let e = err(&hex("82 ff 40 00 00 00 00 00 00 00"), &cfg);
    assert_eq!(
        e,
        HeaderError::OverLimit {
            len: 1 << 62,
            limit: 16 << 20
        }
    );
    assert_eq!(e.close_code(), CloseCode::MESSAGE_TOO_BIG);
}

#[test]
fn errors_have_a_readable_message() {
    for e in [
        HeaderError::ReservedOpcode(3),
        HeaderError::RsvNotNegotiated(0x40),
        HeaderError::ControlTooLong(126),
        HeaderError::FragmentedControl,
        HeaderError::LengthHighBit,
        HeaderError::NonMinimalLength,
        HeaderError::OverLimit { len: 2, limit: 1 },
        HeaderError::MaskRule(Role::Server),
        HeaderError::MaskRule(Role::Client),
    ] {
        let text = e.to_string();
        assert!(!text.is_empty() && !text.contains("HeaderError"), "{text}");
    }
}

// ---------------------------------------------------------------------------------------------
// Incremental parsing.

#[test]
fn need_counts_to_the_end_of_each_field() {
    let c = cfg(Role::Server);
    let frame = hex("82 fe 01 00 01 02 03 04");
    let want = [
        Parsed::Need(1), // first byte
        Parsed::Need(1), // second byte
        Parsed::Need(2), // 16-bit length
        Parsed::Need(1),
        Parsed::Need(4), // key
        Parsed::Need(3),
        Parsed::Need(2),
        Parsed::Need(1),
    ];
    for (p, want) in want.iter().enumerate() {
        assert_eq!(parse_header(&frame[..p], &c), Ok(*want), "prefix {p}");
    }
    let long = hex("82 7f 00 00 00 00 00 01 00 00");
    assert_eq!(
        parse_header(&long[..2], &cfg(Role::Client)),
        Ok(Parsed::Need(8))
    );
    assert_eq!(
        parse_header(&long[..9], &cfg(Role::Client)),
        Ok(Parsed::Need(1))
    );
}

/// Check the incremental contract for `buf` against the answer for all of it:
/// - a prefix's header or error is the whole buffer's;
/// - `Need(n)` is exact: each of the next `n - 1` bytes leaves `Need` counting down, and the
///   `n`th ends it; and the header never needs more than 14 bytes in total;
/// - a header is 2 to 14 bytes long and re-encodes to the bytes it came from.
fn check_incremental(buf: &[u8], cfg: &ParseConfig) -> Result<Parsed, HeaderError> {
    let whole = parse_header(buf, cfg);
    if let Ok(Parsed::Header { header, len }) = whole {
        assert!((2..=MAX_HEADER_LEN).contains(&len));
        let mut out = [0; MAX_HEADER_LEN];
        assert_eq!(header.encode(&mut out), len);
        assert_eq!(&out[..len], &buf[..len]);
        assert!(header.payload_len <= cfg.max_payload);
    }
    for p in 0..=buf.len() {
        let r = parse_header(&buf[..p], cfg);
        match r {
            Ok(Parsed::Need(n)) => {
                assert!(n >= 1 && p + n <= MAX_HEADER_LEN, "prefix {p}: Need({n})");
                for k in 1..n {
                    if p + k <= buf.len() {
                        assert_eq!(parse_header(&buf[..p + k], cfg), Ok(Parsed::Need(n - k)));
                    }
                }
                if p + n <= buf.len() {
                    assert_ne!(parse_header(&buf[..p + n], cfg), Ok(Parsed::Need(0)));
                }
            }
            other => {
                assert_eq!(other, whole, "prefix {p} of {buf:02x?}");
                return whole;
            }
        }
    }
    whole
}

fn data_or_control() -> impl Strategy<Value = (Opcode, bool, u64)> {
    let lengths = prop_oneof![
        0..=125u64,
        126..=65535u64,
        65536..=(1u64 << 63) - 1,
        ((1u64 << 63) - 1024)..=(1u64 << 63) - 1,
        Just(125u64),
        Just(126u64),
        Just(65535u64),
        Just(65536u64),
    ];
    prop_oneof![
        (prop::sample::select(&DATA[..]), any::<bool>(), lengths),
        (prop::sample::select(&CONTROL[..]), Just(true), 0..=125u64),
    ]
}

proptest! {
    #[test]
    fn encode_then_parse_round_trips(
        (opcode, fin, payload_len) in data_or_control(),
        role in prop_oneof![Just(Role::Server), Just(Role::Client)],
        key in any::<[u8; 4]>(),
        tail in prop::collection::vec(any::<u8>(), 0..16),
    ) {
        // Servers receive masked frames, clients unmasked ones.
        let mask_key = (role == Role::Server).then_some(MaskKey(key));
        let mut out = [0; MAX_HEADER_LEN];
        let len = encode_header(&mut out, fin, opcode, payload_len, mask_key);
        let mut buf = out[..len].to_vec();
        buf.extend_from_slice(&tail);
        let want = Header { fin, rsv: 0, opcode, mask_key, payload_len };
        prop_assert_eq!(
            check_incremental(&buf, &cfg(role)),
            Ok(Parsed::Header { header: want, len })
        );
        // The other role refuses it, from the second byte.
        let other = if role == Role::Server { Role::Client } else { Role::Server };
        prop_assert_eq!(parse_header(&buf[..2], &cfg(other)), Err(HeaderError::MaskRule(other)));
        // A limit one below the length refuses it as soon as the length is known.
        if payload_len > 0 {
            let tight = ParseConfig { max_payload: payload_len - 1, ..cfg(role) };
            let e = Err(HeaderError::OverLimit { len: payload_len, limit: payload_len - 1 });
            prop_assert_eq!(check_incremental(&buf, &tight), e);
            let key_at = len - if mask_key.is_some() { 4 } else { 0 };
            prop_assert_eq!(parse_header(&buf[..key_at], &tight), e);
        }
    }

    #[test]
    fn random_bytes_keep_the_incremental_contract(
        buf in prop::collection::vec(any::<u8>(), 0..20),
        role in prop_oneof![Just(Role::Server), Just(Role::Client)],
        rsv_allowed in prop_oneof![Just(0u8), Just(0x40u8), any::<u8>()],
        max_payload in prop_oneof![Just(u64::MAX), 0..=70_000u64, any::<u64>()],
    ) {
        let _ = check_incremental(&buf, &ParseConfig { role, rsv_allowed, max_payload });
    }

    #[test]
    fn header_shaped_bytes_keep_the_incremental_contract(
        b0 in any::<u8>(),
        masked in any::<bool>(),
        len7 in prop_oneof![Just(126u8), Just(127u8), 0..=127u8],
        ext in any::<[u8; 8]>(),
        small_ext in any::<bool>(),
        role in prop_oneof![Just(Role::Server), Just(Role::Client)],
    ) {
        // Mostly well-formed first bytes and extended lengths near the class boundaries.
        let mut ext = ext;
        if small_ext {
            ext[..6].fill(0);
        }
        let mut buf = vec![b0 & 0x8f, u8::from(masked) << 7 | len7];
        buf.extend_from_slice(&ext);
        buf.extend_from_slice(&[9, 8, 7, 6]);
        let _ = check_incremental(&buf, &cfg(role));
    }
}
