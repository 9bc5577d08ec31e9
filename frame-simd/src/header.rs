//! Frame header parsing (RFC 6455 §5.2): incremental, allocation-free, never panics.
//!
//! `parse_header` looks at the front of a byte slice and returns either the header and how many
//! bytes it took, or how many more bytes it needs. Everything RFC 6455 forbids is a typed
//! [`HeaderError`] that knows the close code the connection must be closed with. Checks run field
//! by field in wire order, so a bad frame is refused as soon as the offending byte has arrived.

use crate::close::CloseCode;
use crate::mask::MaskKey;

/// Frame opcode (RFC 6455 §5.2, §11.8). Reserved opcodes are a [`HeaderError`], never a variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    /// `0x0`: continues a fragmented message.
    Continuation = 0x0,
    /// `0x1`: text data, UTF-8.
    Text = 0x1,
    /// `0x2`: binary data.
    Binary = 0x2,
    /// `0x8`: close (control).
    Close = 0x8,
    /// `0x9`: ping (control).
    Ping = 0x9,
    /// `0xA`: pong (control).
    Pong = 0xA,
}

impl Opcode {
    /// True for close, ping and pong (§5.5): at most 125 bytes, never fragmented.
    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// Which end of the connection is parsing; decides the masking rule (§5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A server parses client frames: every frame must be masked.
    Server,
    /// A client parses server frames: no frame may be masked.
    Client,
}

/// What the caller allows: role, negotiated RSV bits, and the largest payload it will accept.
#[derive(Clone, Copy, Debug)]
pub struct ParseConfig {
    /// The parsing side.
    pub role: Role,
    /// RSV bits an extension negotiated, as they sit in the first byte (`0x40` = RSV1, `0x20` =
    /// RSV2, `0x10` = RSV3). Zero when no extension was negotiated.
    pub rsv_allowed: u8,
    /// Largest payload length accepted for one frame; larger announced lengths are
    /// [`HeaderError::OverLimit`] before any allocation happens.
    pub max_payload: u64,
}

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Final fragment of a message.
    pub fin: bool,
    /// The three RSV bits as they sit in the first byte (`0x70` mask).
    pub rsv: u8,
    /// The opcode.
    pub opcode: Opcode,
    /// The masking key, present when the mask bit is set.
    pub mask_key: Option<MaskKey>,
    /// Payload length in bytes (at most [`ParseConfig::max_payload`]).
    pub payload_len: u64,
}

/// Result of looking at the front of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A complete header that took `len` bytes (2 to 14).
    Header {
        /// The header.
        header: Header,
        /// Bytes the header occupies at the front of the buffer.
        len: usize,
    },
    /// Not enough bytes yet: exactly this many more bytes complete the field being read (the first
    /// byte, the second byte, the extended length, or the masking key). With fewer the answer is
    /// still `Need`; with them the parser returns the header, an error, or `Need` for a later
    /// field. The header never takes more than 14 bytes in total, so `buf.len() + n <= 14`.
    Need(usize),
}

/// A header that RFC 6455 (or the caller's limit) forbids. Each variant names the broken rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Opcodes 0x3-0x7 and 0xB-0xF are reserved (§5.2).
    ReservedOpcode(u8),
    /// An RSV bit is set that no negotiated extension defines (§5.2). Carries the offending bits
    /// as they sit in the first byte (within `0x70`).
    RsvNotNegotiated(u8),
    /// A control frame announces more than 125 bytes (§5.5). Control frames may only use the
    /// 7-bit length, so the error is raised from the second byte alone and carries its 7-bit
    /// length field: 126 (a 16-bit length follows) or 127 (a 64-bit length follows).
    ControlTooLong(u64),
    /// A control frame without FIN (§5.5).
    FragmentedControl,
    /// A 64-bit length with its most significant bit set (§5.2).
    LengthHighBit,
    /// A length not encoded in the minimal number of bytes (§5.2): the 16-bit form holding a
    /// value below 126, or the 64-bit form holding a value that fits in 16 bits.
    NonMinimalLength,
    /// The payload is longer than the caller's limit ([`ParseConfig::max_payload`]); raised as
    /// soon as the length is known, before the masking key has arrived.
    OverLimit {
        /// Announced payload length.
        len: u64,
        /// The caller's limit.
        limit: u64,
    },
    /// A server received an unmasked frame, or a client a masked one (§5.1).
    MaskRule(Role),
    /// RSV1 (negotiated by permessage-deflate) on a control frame or a continuation frame: it
    /// marks a compressed message on the message's first frame only (RFC 7692 §6, §6.1).
    Rsv1NotFirstFrame,
}

impl HeaderError {
    /// The close code a connection is closed with for this error (§7.4.1).
    pub fn close_code(&self) -> CloseCode {
        match self {
            Self::OverLimit { .. } => CloseCode::MESSAGE_TOO_BIG,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            Self::RsvNotNegotiated(bits) => {
                write!(f, "RSV bits {bits:#04x} set without a negotiated extension")
            }
            Self::ControlTooLong(len7) => write!(
                f,
                "control frame uses an extended length (7-bit length field {len7}); at most 125 bytes allowed"
            ),
            Self::FragmentedControl => f.write_str("control frame without FIN"),
            Self::LengthHighBit => f.write_str("64-bit payload length with its most significant bit set"),
            Self::NonMinimalLength => f.write_str("payload length not in its minimal encoding"),
            Self::OverLimit { len, limit } => {
                write!(f, "payload of {len} bytes exceeds the limit of {limit} bytes")
            }
            Self::MaskRule(Role::Server) => f.write_str("unmasked frame from a client"),
            Self::MaskRule(Role::Client) => f.write_str("masked frame from a server"),
            Self::Rsv1NotFirstFrame => {
                f.write_str("RSV1 on a control or continuation frame (RFC 7692 §6)")
            }
        }
    }
}

impl std::error::Error for HeaderError {}

/// FIN: the final fragment of a message (first byte).
const FIN_BIT: u8 = 0x80;
/// RSV1-3 (first byte).
const RSV_BITS: u8 = 0x70;
/// RSV1 (first byte): with permessage-deflate negotiated, the first frame of a compressed
/// message (RFC 7692 §6).
pub const RSV1: u8 = 0x40;
/// The opcode nibble (first byte).
const OPCODE_BITS: u8 = 0x0F;
/// MASK: a masking key follows the length (second byte).
const MASK_BIT: u8 = 0x80;
/// The 7-bit payload length (second byte).
const LEN7_BITS: u8 = 0x7F;
/// 7-bit length value announcing a 16-bit extended length.
const LEN7_U16: u8 = 126;
/// 7-bit length value announcing a 64-bit extended length.
const LEN7_U64: u8 = 127;
/// Longest payload a control frame may carry (§5.5).
const MAX_CONTROL_PAYLOAD: u8 = 125;

impl Opcode {
    /// The opcode for a 4-bit value, or `None` for the reserved ones (0x3-0x7, 0xB-0xF).
    pub fn from_u8(value: u8) -> Option<Opcode> {
        match value {
            0x0 => Some(Opcode::Continuation),
            0x1 => Some(Opcode::Text),
            0x2 => Some(Opcode::Binary),
            0x8 => Some(Opcode::Close),
            0x9 => Some(Opcode::Ping),
            0xA => Some(Opcode::Pong),
            _ => None,
        }
    }
}

/// `Need` for the bytes still missing before `buf` holds `end` bytes; `end` is past `buf.len()`.
fn need(buf: &[u8], end: usize) -> Parsed {
    Parsed::Need(end.saturating_sub(buf.len()))
}

/// Parse a frame header from the front of `buf`.
///
/// Returns [`Parsed::Need`] when `buf` is too short, never reading past it. Checks happen in the
/// order the bytes arrive, so an error is reported as soon as the byte that carries it is in
/// `buf`, without waiting for the rest of the header:
///
/// 1. first byte: RSV bits not in [`ParseConfig::rsv_allowed`], then a reserved opcode, then
///    an allowed [`RSV1`] on a control or continuation frame (permessage-deflate marks only a
///    message's first frame, RFC 7692 §6), then a control opcode without FIN;
/// 2. second byte: the mask bit against the [`Role`], then a control frame whose 7-bit length is
///    over 125, then a 7-bit length over [`ParseConfig::max_payload`];
/// 3. the 16-bit length: non-minimal (below 126), then over the limit;
/// 4. the 64-bit length: top bit set, then non-minimal (at most 0xFFFF), then over the limit;
/// 5. the masking key, if any (it cannot be wrong).
///
/// Bytes after the header (the payload, the next frame) are never looked at.
///
/// ```
/// use frame_simd::{parse_header, Opcode, ParseConfig, Parsed, Role};
///
/// let cfg = ParseConfig { role: Role::Client, rsv_allowed: 0, max_payload: 1 << 20 };
/// // An unmasked text frame holding "Hello" (RFC 6455 §5.7).
/// let frame = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
/// match parse_header(&frame, &cfg) {
///     Ok(Parsed::Header { header, len }) => {
///         assert_eq!((header.opcode, header.payload_len, len), (Opcode::Text, 5, 2));
///     }
///     other => panic!("unexpected {other:?}"),
/// }
/// assert_eq!(parse_header(&frame[..1], &cfg), Ok(Parsed::Need(1)));
/// ```
pub fn parse_header(buf: &[u8], cfg: &ParseConfig) -> Result<Parsed, HeaderError> {
    let Some(&b0) = buf.first() else {
        return Ok(need(buf, 1));
    };
    let rsv = b0 & RSV_BITS;
    let rsv_forbidden = rsv & !cfg.rsv_allowed;
    if rsv_forbidden != 0 {
        return Err(HeaderError::RsvNotNegotiated(rsv_forbidden));
    }
    let opcode_bits = b0 & OPCODE_BITS;
    let Some(opcode) = Opcode::from_u8(opcode_bits) else {
        return Err(HeaderError::ReservedOpcode(opcode_bits));
    };
    if rsv & RSV1 != 0 && (opcode.is_control() || opcode == Opcode::Continuation) {
        return Err(HeaderError::Rsv1NotFirstFrame);
    }
    let fin = b0 & FIN_BIT != 0;
    if opcode.is_control() && !fin {
        return Err(HeaderError::FragmentedControl);
    }

    let Some(&b1) = buf.get(1) else {
        return Ok(need(buf, 2));
    };
    let masked = b1 & MASK_BIT != 0;
    let mask_required = cfg.role == Role::Server;
    if masked != mask_required {
        return Err(HeaderError::MaskRule(cfg.role));
    }
    let len7 = b1 & LEN7_BITS;
    if opcode.is_control() && len7 > MAX_CONTROL_PAYLOAD {
        return Err(HeaderError::ControlTooLong(u64::from(len7)));
    }

    // The extended length, if any, and where the masking key starts.
    let (payload_len, key_at) = match len7 {
        LEN7_U16 => {
            let [_, _, l0, l1, ..] = *buf else {
                return Ok(need(buf, 4));
            };
            let len = u64::from(u16::from_be_bytes([l0, l1]));
            if len < u64::from(LEN7_U16) {
                return Err(HeaderError::NonMinimalLength);
            }
            (len, 4)
        }
        LEN7_U64 => {
            let [_, _, l0, l1, l2, l3, l4, l5, l6, l7, ..] = *buf else {
                return Ok(need(buf, 10));
            };
            let len = u64::from_be_bytes([l0, l1, l2, l3, l4, l5, l6, l7]);
            if len >> 63 != 0 {
                return Err(HeaderError::LengthHighBit);
            }
            if len <= u64::from(u16::MAX) {
                return Err(HeaderError::NonMinimalLength);
            }
            (len, 10)
        }
        short => (u64::from(short), 2),
    };
    if payload_len > cfg.max_payload {
        return Err(HeaderError::OverLimit {
            len: payload_len,
            limit: cfg.max_payload,
        });
    }

    let (mask_key, len) = if masked {
        let Some(&[k0, k1, k2, k3]) = buf.get(key_at..key_at + 4) else {
            return Ok(need(buf, key_at + 4));
        };
        (Some(MaskKey([k0, k1, k2, k3])), key_at + 4)
    } else {
        (None, key_at)
    };
    Ok(Parsed::Header {
        header: Header {
            fin,
            rsv,
            opcode,
            mask_key,
            payload_len,
        },
        len,
    })
}
