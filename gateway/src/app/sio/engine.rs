//! Engine.IO version 4 packets, sans-IO: the transport layer under Socket.IO. A packet is a type
//! digit and its data. Over WebSocket each frame is one packet (a binary frame is a `message`
//! with binary data, as-is); over HTTP long-polling a body is a payload of packets joined by the
//! record separator `\x1e`, a binary message written as `b` and its base64.
//!
//! Parsing borrows from the input and never allocates, except for base64 data, which is decoded
//! into a caller's buffer. The open packet is the handshake's JSON object.

use std::fmt;
use std::io::Write as _;
use std::time::Duration;

/// Separates the packets of a long-polling payload.
pub const RECORD_SEPARATOR: u8 = 0x1e;
/// The largest payload a peer may send by default (the `maxPayload` of the open packet).
pub const DEFAULT_MAX_PAYLOAD: usize = 1_000_000;

/// What an Engine.IO packet is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketType {
    /// `0`: the handshake (server to client).
    Open,
    /// `1`: the session ends.
    Close,
    /// `2`: heartbeat request (server to client; `2probe` from a client during an upgrade).
    Ping,
    /// `3`: heartbeat answer (`3probe` from the server during an upgrade).
    Pong,
    /// `4`: application data (a Socket.IO packet, or one of its binary attachments).
    Message,
    /// `5`: the client switches this session to the probed transport.
    Upgrade,
    /// `6`: nothing; it answers a held poll during an upgrade.
    Noop,
}

impl PacketType {
    /// The type written as its digit.
    pub fn digit(self) -> u8 {
        b'0' + self as u8
    }

    fn from_digit(b: u8) -> Option<PacketType> {
        Some(match b {
            b'0' => Self::Open,
            b'1' => Self::Close,
            b'2' => Self::Ping,
            b'3' => Self::Pong,
            b'4' => Self::Message,
            b'5' => Self::Upgrade,
            b'6' => Self::Noop,
            _ => return None,
        })
    }
}

/// The data a packet carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Data<'a> {
    /// Text (UTF-8: WebSocket text frames and polling bodies are checked before parsing).
    Text(&'a [u8]),
    /// Binary: a WebSocket binary frame, or base64 decoded from a polling payload.
    Binary(&'a [u8]),
}

/// One Engine.IO packet, borrowed from its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Its type (binary data is always a message).
    pub kind: PacketType,
    /// What follows the type digit (`probe` for an upgrade's ping and pong).
    pub data: Data<'a>,
}

/// Why a packet or a payload was refused: each closes the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineError {
    /// A text packet without a type digit.
    Empty,
    /// The first byte is not a type digit `0` to `6`.
    UnknownType(u8),
    /// A client sent a packet only the server sends (`open`).
    ServerOnly(PacketType),
    /// A `b` packet of a polling payload is not valid base64.
    BadBase64,
    /// The payload is larger than `maxPayload`.
    TooLarge {
        /// Its size in bytes.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A polling payload holds more packets than allowed.
    TooManyPackets(usize),
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "empty Engine.IO packet"),
            Self::UnknownType(b) => write!(f, "unknown Engine.IO packet type byte {b:#04x}"),
            Self::ServerOnly(t) => write!(f, "a client may not send the {t:?} packet"),
            Self::BadBase64 => write!(f, "binary packet is not valid base64"),
            Self::TooLarge { len, limit } => {
                write!(f, "payload of {len} bytes is over maxPayload ({limit})")
            }
            Self::TooManyPackets(n) => write!(f, "payload holds more than {n} packets"),
        }
    }
}

/// Parse a packet from one WebSocket text frame (or one record of a polling payload).
pub fn parse_text(text: &[u8]) -> Result<Packet<'_>, EngineError> {
    let (&first, rest) = text.split_first().ok_or(EngineError::Empty)?;
    let kind = PacketType::from_digit(first).ok_or(EngineError::UnknownType(first))?;
    if kind == PacketType::Open {
        return Err(EngineError::ServerOnly(kind));
    }
    Ok(Packet {
        kind,
        data: Data::Text(rest),
    })
}

/// A WebSocket binary frame: a message packet with the frame's bytes as its data.
pub fn parse_binary(bytes: &[u8]) -> Packet<'_> {
    Packet {
        kind: PacketType::Message,
        data: Data::Binary(bytes),
    }
}

/// Split a polling request body into packets and hand each to `f`, in order. Base64 records are
/// decoded into `scratch` (cleared per record). At most `max_packets` records; the body must be
/// within `limit` bytes. Stops at the first bad record (earlier ones have been handed on).
pub fn parse_payload(
    body: &[u8],
    limit: usize,
    max_packets: usize,
    scratch: &mut Vec<u8>,
    mut f: impl FnMut(Packet<'_>),
) -> Result<(), EngineError> {
    if body.len() > limit {
        return Err(EngineError::TooLarge {
            len: body.len(),
            limit,
        });
    }
    for (n, record) in body.split(|&b| b == RECORD_SEPARATOR).enumerate() {
        if n >= max_packets {
            return Err(EngineError::TooManyPackets(max_packets));
        }
        if let Some(b64) = record.strip_prefix(b"b") {
            scratch.clear();
            base64_simd::STANDARD
                .decode_append(b64, scratch)
                .map_err(|_| EngineError::BadBase64)?;
            f(parse_binary(scratch));
        } else {
            f(parse_text(record)?);
        }
    }
    Ok(())
}

/// Append one packet as a WebSocket text frame's payload (binary data goes in a binary frame
/// as-is instead: see [`parse_binary`]).
pub fn encode_text(out: &mut Vec<u8>, kind: PacketType, data: &[u8]) {
    out.push(kind.digit());
    out.extend_from_slice(data);
}

/// Append one packet to a polling payload being built in `out`: the separator when `out`
/// already holds a packet, then the packet (binary data as `b` and base64).
pub fn encode_record(out: &mut Vec<u8>, kind: PacketType, data: Data<'_>) {
    if !out.is_empty() {
        out.push(RECORD_SEPARATOR);
    }
    match data {
        Data::Text(t) => encode_text(out, kind, t),
        Data::Binary(b) => {
            out.push(b'b');
            base64_simd::STANDARD.encode_append(b, out);
        }
    }
}

/// The handshake's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handshake<'a> {
    /// The session id.
    pub sid: &'a str,
    /// Offer the upgrade to WebSocket (a polling session).
    pub upgrade_to_websocket: bool,
    /// How often the server pings.
    pub ping_interval: Duration,
    /// How long the server waits for the pong.
    pub ping_timeout: Duration,
    /// The largest payload the server accepts, in bytes.
    pub max_payload: usize,
}

/// Append the open packet: `0{"sid":..,"upgrades":[..],"pingInterval":..,"pingTimeout":..,
/// "maxPayload":..}`.
pub fn encode_open(out: &mut Vec<u8>, h: &Handshake<'_>) {
    out.push(PacketType::Open.digit());
    out.extend_from_slice(b"{\"sid\":");
    crate::json::write_str(out, h.sid);
    out.extend_from_slice(if h.upgrade_to_websocket {
        b",\"upgrades\":[\"websocket\"]"
    } else {
        b",\"upgrades\":[]"
    });
    let _ = write!(
        out,
        ",\"pingInterval\":{},\"pingTimeout\":{},\"maxPayload\":{}}}",
        h.ping_interval.as_millis(),
        h.ping_timeout.as_millis(),
        h.max_payload
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn collect(body: &[u8]) -> Result<Vec<(PacketType, Vec<u8>, bool)>, EngineError> {
        let mut got = Vec::new();
        let mut scratch = Vec::new();
        parse_payload(body, DEFAULT_MAX_PAYLOAD, 64, &mut scratch, |p| {
            let (bytes, binary) = match p.data {
                Data::Text(t) => (t.to_vec(), false),
                Data::Binary(b) => (b.to_vec(), true),
            };
            got.push((p.kind, bytes, binary));
        })?;
        Ok(got)
    }

    #[test]
    fn text_packets_name_their_type_and_keep_their_data() {
        let p = parse_text(b"4hello").unwrap();
        assert_eq!(p.kind, PacketType::Message);
        assert_eq!(p.data, Data::Text(b"hello"));
        assert_eq!(parse_text(b"2probe").unwrap().kind, PacketType::Ping);
        assert_eq!(parse_text(b"3").unwrap().kind, PacketType::Pong);
        assert_eq!(parse_text(b"5").unwrap().kind, PacketType::Upgrade);
        assert_eq!(parse_text(b"6").unwrap().kind, PacketType::Noop);
        assert_eq!(parse_text(b"1").unwrap().kind, PacketType::Close);
    }

    #[test]
    fn bad_packets_are_refused_with_their_reason() {
        assert_eq!(parse_text(b""), Err(EngineError::Empty));
        assert_eq!(parse_text(b"7x"), Err(EngineError::UnknownType(b'7')));
        assert_eq!(parse_text(b"x"), Err(EngineError::UnknownType(b'x')));
        assert_eq!(
            parse_text(b"0{}"),
            Err(EngineError::ServerOnly(PacketType::Open))
        );
        assert!(EngineError::UnknownType(b'7').to_string().contains("0x37"));
    }

    #[test]
    fn a_payload_splits_on_the_record_separator_and_decodes_base64() {
        let got = collect(b"4hello\x1ebAQID\x1e2probe").unwrap();
        assert_eq!(
            got,
            vec![
                (PacketType::Message, b"hello".to_vec(), false),
                (PacketType::Message, vec![1, 2, 3], true),
                (PacketType::Ping, b"probe".to_vec(), false),
            ]
        );
        assert_eq!(collect(b"bnope!"), Err(EngineError::BadBase64));
        assert_eq!(collect(b"4a\x1e"), Err(EngineError::Empty));
        let mut scratch = Vec::new();
        assert_eq!(
            parse_payload(b"4abc", 3, 8, &mut scratch, |_| {}),
            Err(EngineError::TooLarge { len: 4, limit: 3 })
        );
        assert_eq!(
            parse_payload(b"6\x1e6\x1e6", 100, 2, &mut scratch, |_| {}),
            Err(EngineError::TooManyPackets(2))
        );
    }

    #[test]
    fn the_open_packet_is_the_handshake_json() {
        let mut out = Vec::new();
        encode_open(
            &mut out,
            &Handshake {
                sid: "abc",
                upgrade_to_websocket: true,
                ping_interval: Duration::from_millis(25_000),
                ping_timeout: Duration::from_millis(20_000),
                max_payload: DEFAULT_MAX_PAYLOAD,
            },
        );
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "0{\"sid\":\"abc\",\"upgrades\":[\"websocket\"],\"pingInterval\":25000,\
             \"pingTimeout\":20000,\"maxPayload\":1000000}"
        );
        let v: serde_json::Value = serde_json::from_slice(&out[1..]).unwrap();
        assert_eq!(v["sid"], "abc");
    }

    proptest! {
        #[test]
        fn encoded_payloads_parse_back_to_the_same_packets(
            packets in proptest::collection::vec(
                (0u8..7, proptest::collection::vec(any::<u8>(), 0..40), any::<bool>()), 0..12)
        ) {
            let mut body = Vec::new();
            let mut want = Vec::new();
            for (kind, bytes, binary) in &packets {
                let kind = PacketType::from_digit(b'1' + kind % 6).unwrap();
                if *binary {
                    encode_record(&mut body, PacketType::Message, Data::Binary(bytes));
                    want.push((PacketType::Message, bytes.clone(), true));
                } else {
                    // Text data never holds the separator (it is not valid in JSON text).
                    let text: Vec<u8> = bytes.iter().map(|b| b'a' + b % 26).collect();
                    encode_record(&mut body, kind, Data::Text(&text));
                    want.push((kind, text, false));
                }
            }
            if want.is_empty() {
                return Ok(());
            }
            prop_assert_eq!(collect(&body).unwrap(), want);
        }

        #[test]
        fn any_bytes_parse_or_fail_without_panicking(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = collect(&body);
            let _ = parse_text(&body);
        }
    }
}
