//! Close frames (RFC 6455 §5.5.1, §7.4): codes, which codes a peer may send, and the
//! code-plus-reason payload.

/// A close status code (§7.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: normal closure.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: going away (server shutdown, page navigated away).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: protocol error.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: unsupported data type.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: no status code present (never sent on the wire).
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: abnormal closure (never sent on the wire).
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: payload not consistent with the message type (invalid UTF-8 in text).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: policy violation.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: message too big.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected an extension the server did not negotiate.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: internal server error.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: service restart (IANA registry).
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later (IANA registry).
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 1014: bad gateway (IANA registry).
    pub const BAD_GATEWAY: CloseCode = CloseCode(1014);
    /// 1015: TLS handshake failure (never sent on the wire).
    pub const TLS_HANDSHAKE: CloseCode = CloseCode(1015);

    /// Whether a peer may put this code in a close frame.
    pub fn is_sendable(self) -> bool {
        todo!()
    }
}

/// A close payload that breaks §5.5.1 or §7.4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseError {
    /// A one-byte payload: a code needs two bytes.
    OneByte,
    /// A code that may not be sent (reserved, unassigned, or out of range).
    InvalidCode(u16),
    /// The reason is not valid UTF-8 (close with 1007).
    ReasonNotUtf8,
    /// The reason is longer than 123 bytes (only when encoding).
    ReasonTooLong(usize),
}

impl CloseError {
    /// The close code to answer a peer's bad close frame with.
    pub fn close_code(&self) -> CloseCode {
        match self {
            Self::ReasonNotUtf8 => CloseCode::INVALID_PAYLOAD,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

/// The longest close reason: 125 payload bytes minus the 2-byte code.
pub const MAX_REASON_LEN: usize = 123;

/// Write a close payload (code, then reason) into `out`; returns its length.
pub fn encode_close_payload(
    out: &mut [u8; 125],
    code: CloseCode,
    reason: &str,
) -> Result<usize, CloseError> {
    let _ = (out, code, reason);
    todo!()
}

/// Parse a (unmasked) close payload. `Ok(None)` for an empty payload (no code, §5.5.1).
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<(CloseCode, &str)>, CloseError> {
    let _ = payload;
    todo!()
}
