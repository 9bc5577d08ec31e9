//! Frame header parsing (RFC 6455 §5.2): incremental, allocation-free, never panics.
//!
//! `parse_header` looks at the front of a byte slice and returns either the header and how many
//! bytes it took, or how many more bytes it needs. Everything RFC 6455 forbids is a typed
//! [`HeaderError`] that knows the close code the connection must be closed with.

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
    /// Not enough bytes yet: at least this many more are needed before parsing can progress.
    Need(usize),
}

/// A header that RFC 6455 (or the caller's limit) forbids. Each variant names the broken rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Opcodes 0x3-0x7 and 0xB-0xF are reserved (§5.2).
    ReservedOpcode(u8),
    /// An RSV bit is set that no negotiated extension defines (§5.2).
    RsvNotNegotiated(u8),
    /// A control frame announces more than 125 bytes (§5.5).
    ControlTooLong(u64),
    /// A control frame without FIN (§5.5).
    FragmentedControl,
    /// A 64-bit length with its most significant bit set (§5.2).
    LengthHighBit,
    /// A length not encoded in the minimal number of bytes (§5.2).
    NonMinimalLength,
    /// The payload is longer than the caller's limit.
    OverLimit {
        /// Announced payload length.
        len: u64,
        /// The caller's limit.
        limit: u64,
    },
    /// A server received an unmasked frame, or a client a masked one (§5.1).
    MaskRule(Role),
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
        todo!("{f:p}")
    }
}

impl std::error::Error for HeaderError {}

/// Parse a frame header from the front of `buf`.
///
/// Returns [`Parsed::Need`] when `buf` is too short, never reading past it. Checks happen in the
/// order the bytes arrive, so an error in the first two bytes is reported without waiting for the
/// extended length or the key.
pub fn parse_header(buf: &[u8], cfg: &ParseConfig) -> Result<Parsed, HeaderError> {
    let _ = (buf, cfg);
    todo!()
}
