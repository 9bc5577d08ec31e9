//! Encoders: fixed wire bytes (RFC 6455 §5.7 and the length classes), minimal length encoding,
//! masking, exact reservation, and round trips through the parser.

use frame_simd::{
    encode_client_frame, encode_header, encode_server_frame, parse_header, Header, MaskKey, Opcode,
    ParseConfig, Parsed, Role, MAX_HEADER_LEN,
};
use proptest::prelude::*;

const KEY: MaskKey = MaskKey([0x37, 0xfa, 0x21, 0x3d]);

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

fn header_bytes(fin: bool, opcode: Opcode, payload_len: u64, key: Option<MaskKey>) -> Vec<u8> {
    let mut out = [0; MAX_HEADER_LEN];
    let len = encode_header(&mut out, fin, opcode, payload_len, key);
    out[..len].to_vec()
}

fn parse(buf: &[u8], role: Role) -> (Header, usize) {
    let cfg = ParseConfig {
        role,
        rsv_allowed: 0,
        max_payload: u64::MAX,
    };
    match parse_header(buf, &cfg) {
        Ok(Parsed::Header { header, len }) => (header, len),
        other => panic!("expected a header from {buf:02x?}, got {other:?}"),
    }
}

fn xor(bytes: &[u8], key: MaskKey) -> Vec<u8> {
    bytes
        .iter()
        .zip(key.0.iter().cycle())
        .map(|(b, k)| b ^ k)
        .collect()
}

#[test]
fn rfc_unmasked_hello() {
    let mut out = Vec::new();
    encode_server_frame(&mut out, Opcode::Text, b"Hello");
    assert_eq!(out, hex("81 05 48 65 6c 6c 6f"));
}

#[test]
fn rfc_masked_hello() {
    let mut out = Vec::new();
    encode_client_frame(&mut out, Opcode::Text, b"Hello", KEY);
    assert_eq!(out, hex("81 85 37 fa 21 3d 7f 9f 4d 51 58"));
}

#[test]
fn rfc_unmasked_ping() {
    let mut out = Vec::new();
    encode_server_frame(&mut out, Opcode::Ping, b"Hello");
    assert_eq!(out, hex("89 05 48 65 6c 6c 6f"));
}

#[test]
fn binary_256_bytes_header() {
    assert_eq!(
        header_bytes(true, Opcode::Binary, 256, None),
        hex("82 7e 01 00")
    );
    let mut out = Vec::new();
    encode_server_frame(&mut out, Opcode::Binary, &[0xaa; 256]);
    assert_eq!(out.len(), 4 + 256);
    assert_eq!(&out[..4], &hex("82 7e 01 00")[..]);
}

#[test]
fn binary_64_kib_header() {
    assert_eq!(
        header_bytes(true, Opcode::Binary, 65536, None),
        hex("82 7f 00 00 00 00 00 01 00 00")
    );
}

#[test]
fn lengths_use_the_minimal_encoding() {
    for (len, want) in [
        (0, "82 00"),
        (125, "82 7d"),
        (126, "82 7e 00 7e"),
        (65535, "82 7e ff ff"),
        (65536, "82 7f 00 00 00 00 00 01 00 00"),
        ((1 << 63) - 1, "82 7f 7f ff ff ff ff ff ff ff"),
    ] {
        assert_eq!(
            header_bytes(true, Opcode::Binary, len, None),
            hex(want),
            "{len}"
        );
    }
}

#[test]
fn fin_opcode_and_key_land_in_their_bits() {
    assert_eq!(
        header_bytes(false, Opcode::Text, 3, Some(MaskKey([1, 2, 3, 4]))),
        hex("01 83 01 02 03 04")
    );
    assert_eq!(header_bytes(true, Opcode::Close, 2, None), hex("88 02"));
    assert_eq!(
        header_bytes(false, Opcode::Continuation, 300, Some(KEY)),
        hex("00 fe 01 2c 37 fa 21 3d")
    );
}

#[test]
#[should_panic(expected = "top bit")]
fn a_length_with_the_top_bit_set_is_a_caller_bug() {
    header_bytes(true, Opcode::Binary, 1 << 63, None);
}

#[test]
fn header_encode_keeps_the_rsv_bits() {
    let h = Header {
        fin: true,
        rsv: 0x40,
        opcode: Opcode::Text,
        mask_key: Some(KEY),
        payload_len: 5,
    };
    let mut out = [0; MAX_HEADER_LEN];
    let len = h.encode(&mut out);
    assert_eq!(&out[..len], &hex("c1 85 37 fa 21 3d")[..]);
}

#[test]
fn frames_append_to_what_is_already_there() {
    let mut out = vec![0xee];
    encode_server_frame(&mut out, Opcode::Text, b"Hi");
    encode_client_frame(&mut out, Opcode::Binary, b"", KEY);
    assert_eq!(out, hex("ee 81 02 48 69 82 80 37 fa 21 3d"));
}

#[test]
fn client_frame_fits_an_exact_reservation_without_reallocating() {
    for payload_len in [0usize, 5, 125, 126, 65535, 65536] {
        let payload = vec![0x5a; payload_len];
        let header_len = header_bytes(true, Opcode::Binary, payload_len as u64, Some(KEY)).len();
        let mut out = Vec::with_capacity(header_len + payload_len);
        let (ptr, cap) = (out.as_ptr(), out.capacity());
        encode_client_frame(&mut out, Opcode::Binary, &payload, KEY);
        assert_eq!(out.len(), header_len + payload_len);
        assert_eq!((out.as_ptr(), out.capacity()), (ptr, cap), "{payload_len}");
        assert_eq!(xor(&out[header_len..], KEY), payload);
    }
}

#[test]
fn server_frame_fits_an_exact_reservation_without_reallocating() {
    let payload = vec![7; 70_000];
    let mut out = Vec::with_capacity(10 + payload.len());
    let (ptr, cap) = (out.as_ptr(), out.capacity());
    encode_server_frame(&mut out, Opcode::Binary, &payload);
    assert_eq!((out.as_ptr(), out.capacity()), (ptr, cap));
    assert_eq!(&out[10..], &payload[..]);
}

fn any_opcode() -> impl Strategy<Value = Opcode> {
    prop::sample::select(vec![
        Opcode::Continuation,
        Opcode::Text,
        Opcode::Binary,
        Opcode::Close,
        Opcode::Ping,
        Opcode::Pong,
    ])
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    let len = prop_oneof![
        0..=130usize,
        Just(125usize),
        Just(126usize),
        Just(65535usize),
        Just(65536usize),
        126..70_000usize,
    ];
    (len, any::<u8>()).prop_map(|(len, seed)| {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn server_frames_parse_back(opcode in any_opcode(), payload in payload()) {
        prop_assume!(!opcode.is_control() || payload.len() <= 125);
        let mut out = Vec::new();
        encode_server_frame(&mut out, opcode, &payload);
        let (h, len) = parse(&out, Role::Client);
        prop_assert_eq!(h, Header {
            fin: true, rsv: 0, opcode, mask_key: None, payload_len: payload.len() as u64,
        });
        prop_assert_eq!(&out[len..], &payload[..]);
    }

    #[test]
    fn client_frames_parse_back_and_unmask(
        opcode in any_opcode(),
        payload in payload(),
        key in any::<[u8; 4]>(),
    ) {
        prop_assume!(!opcode.is_control() || payload.len() <= 125);
        let key = MaskKey(key);
        let mut out = Vec::new();
        encode_client_frame(&mut out, opcode, &payload, key);
        let (h, len) = parse(&out, Role::Server);
        prop_assert_eq!(h, Header {
            fin: true, rsv: 0, opcode, mask_key: Some(key), payload_len: payload.len() as u64,
        });
        prop_assert_eq!(xor(&out[len..], key), payload);
    }

    #[test]
    fn header_lengths_are_minimal_and_parse_back(
        fin in any::<bool>(),
        opcode in any_opcode(),
        payload_len in prop_oneof![0..=125u64, 126..=65535u64, 65536..=(1u64 << 63) - 1],
        key in prop::option::of(any::<[u8; 4]>()),
    ) {
        let key = key.map(MaskKey);
        let bytes = header_bytes(fin, opcode, payload_len, key);
        let ext = match payload_len { 0..=125 => 0, 126..=65535 => 2, _ => 8 };
        prop_assert_eq!(bytes.len(), 2 + ext + if key.is_some() { 4 } else { 0 });
        if !opcode.is_control() || (fin && payload_len <= 125) {
            let role = if key.is_some() { Role::Server } else { Role::Client };
            let (h, len) = parse(&bytes, role);
            prop_assert_eq!(len, bytes.len());
            prop_assert_eq!(h, Header { fin, rsv: 0, opcode, mask_key: key, payload_len });
        }
    }
}
