//! Close frames (RFC 6455 §5.5.1, §7.4): codes, which codes a peer may send, and the
//! code-plus-reason payload. The close path is cold, so the reason is checked with
//! `std::str::from_utf8` rather than the streaming validator.

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

    /// Whether a peer may put this code in a close frame (§7.4.1, §7.4.2 and the IANA
    /// "WebSocket Close Code Number Registry"). We also only send codes that pass this check.
    ///
    /// Sendable:
    /// - 1000-1003 and 1007-1011: defined by §7.4.1;
    /// - 1012-1014 (service restart, try again later, bad gateway): not in RFC 6455 but registered
    ///   with IANA and sent by servers that restart or proxy, so refusing them would turn an
    ///   orderly close into a protocol error;
    /// - 3000-3999 (registered for libraries and frameworks) and 4000-4999 (private use, §7.4.2).
    ///
    /// Not sendable: 0-999 (never used, §7.4.2); 1004 (reserved), 1005, 1006 and 1015 (MUST NOT be
    /// set in a close frame, §7.4.1); 1016-2999 (reserved for future RFCs, unassigned today); 5000
    /// and above (outside every range §7.4.2 defines).
    ///
    /// ```
    /// use frame_simd::CloseCode;
    ///
    /// assert!(CloseCode::NORMAL.is_sendable());
    /// assert!(CloseCode(4000).is_sendable());
    /// assert!(!CloseCode::NO_STATUS.is_sendable());
    /// ```
    pub fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl std::fmt::Display for CloseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
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
    /// The reason is longer than 123 bytes: when encoding, or when parsing a payload over 125
    /// bytes (which a header from [`crate::parse_header`] never announces for a close frame).
    /// Carries the reason length in bytes.
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

impl std::fmt::Display for CloseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OneByte => f.write_str("close payload of one byte (a code takes two)"),
            Self::InvalidCode(code) => write!(f, "close code {code} may not be sent"),
            Self::ReasonNotUtf8 => f.write_str("close reason is not valid UTF-8"),
            Self::ReasonTooLong(len) => write!(
                f,
                "close reason of {len} bytes exceeds {MAX_REASON_LEN} bytes"
            ),
        }
    }
}

impl std::error::Error for CloseError {}

/// The longest close reason: 125 payload bytes minus the 2-byte code.
pub const MAX_REASON_LEN: usize = 123;

/// Write a close payload (code, then reason) into `out`; returns its length.
///
/// The code must pass [`CloseCode::is_sendable`] (so 1005, 1006 and 1015 are refused) and the
/// reason must fit in [`MAX_REASON_LEN`] bytes.
///
/// ```
/// use frame_simd::close::encode_close_payload;
/// use frame_simd::CloseCode;
///
/// let mut out = [0; 125];
/// let len = encode_close_payload(&mut out, CloseCode::GOING_AWAY, "bye").unwrap();
/// assert_eq!(&out[..len], &[0x03, 0xe9, b'b', b'y', b'e']);
/// ```
pub fn encode_close_payload(
    out: &mut [u8; 125],
    code: CloseCode,
    reason: &str,
) -> Result<usize, CloseError> {
    if !code.is_sendable() {
        return Err(CloseError::InvalidCode(code.0));
    }
    let reason = reason.as_bytes();
    if reason.len() > MAX_REASON_LEN {
        return Err(CloseError::ReasonTooLong(reason.len()));
    }
    let len = 2 + reason.len();
    out[..2].copy_from_slice(&code.0.to_be_bytes());
    out[2..len].copy_from_slice(reason);
    Ok(len)
}

/// Parse a (unmasked) close payload. `Ok(None)` for an empty payload (no code, §5.5.1).
///
/// Checks, in order: a lone byte, the code ([`CloseCode::is_sendable`]), the payload length
/// (at most 125 bytes, §5.5), and the reason's UTF-8 (§5.5.1, close with 1007).
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<(CloseCode, &str)>, CloseError> {
    let (c0, c1, reason) = match payload {
        [] => return Ok(None),
        [_] => return Err(CloseError::OneByte),
        [c0, c1, reason @ ..] => (*c0, *c1, reason),
    };
    let code = CloseCode(u16::from_be_bytes([c0, c1]));
    if !code.is_sendable() {
        return Err(CloseError::InvalidCode(code.0));
    }
    if reason.len() > MAX_REASON_LEN {
        return Err(CloseError::ReasonTooLong(reason.len()));
    }
    let reason = std::str::from_utf8(reason).map_err(|_| CloseError::ReasonNotUtf8)?;
    Ok(Some((code, reason)))
}
