//! The client side of the opening handshake (RFC 6455 §4.1): the upgrade request, and the check of
//! the server's answer, including `Sec-WebSocket-Accept` (§4.2.2 item 5.4).

use base64::Engine as _;

/// The GUID a server appends to the key before hashing (§1.3).
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Longest response head we wait for before giving up on the server.
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// Why the server's answer to the upgrade request is not a WebSocket handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// The server answered with a status other than 101 (it is not a WebSocket endpoint).
    Status {
        /// HTTP status code.
        code: u16,
        /// Reason phrase as sent.
        reason: String,
    },
    /// The answer is not HTTP/1.1 at all.
    NotHttp,
    /// The head of the answer is longer than [`MAX_RESPONSE_HEAD`].
    HeadTooLong,
    /// 101 without `Upgrade: websocket` or `Connection: upgrade`.
    MissingUpgrade,
    /// `Sec-WebSocket-Accept` missing or not the hash of our key.
    BadAccept,
}

impl HandshakeError {
    /// Short name used to count failures by reason.
    pub fn reason(&self) -> String {
        match self {
            Self::Status { code, .. } => format!("http {code}"),
            Self::NotHttp => "not http".into(),
            Self::HeadTooLong => "response head too long".into(),
            Self::MissingUpgrade => "101 without upgrade headers".into(),
            Self::BadAccept => "bad Sec-WebSocket-Accept".into(),
        }
    }
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Status { code, reason } => write!(
                f,
                "not a WebSocket server: it answered HTTP {code} {reason} to the upgrade request"
            ),
            Self::NotHttp => f.write_str("not a WebSocket server: the answer is not HTTP/1.1"),
            Self::HeadTooLong => write!(
                f,
                "not a WebSocket server: response head longer than {MAX_RESPONSE_HEAD} bytes"
            ),
            Self::MissingUpgrade => {
                f.write_str("101 answer without `Upgrade: websocket` / `Connection: upgrade`")
            }
            Self::BadAccept => {
                f.write_str("Sec-WebSocket-Accept does not match the key (RFC 6455 §4.2.2)")
            }
        }
    }
}

/// `Sec-WebSocket-Accept` for a base64 key (§4.2.2).
pub fn accept_for(key_b64: &str) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key_b64.as_bytes());
    sha.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes())
}

/// Append the upgrade request to `out`; returns the accept value the server must answer with.
pub fn write_request(out: &mut Vec<u8>, host: &str, path: &str, nonce: [u8; 16]) -> String {
    let key = base64::engine::general_purpose::STANDARD.encode(nonce);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    out.extend_from_slice(request.as_bytes());
    accept_for(&key)
}

/// Check a response head. `Ok(None)`: incomplete; `Ok(Some(n))`: a valid 101 of `n` bytes.
pub fn parse_response(buf: &[u8], accept: &str) -> Result<Option<usize>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_RESPONSE_HEAD => {
            return Err(HandshakeError::HeadTooLong)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::HeadTooLong),
        Err(_) => return Err(HandshakeError::NotHttp),
    };
    let code = resp.code.unwrap_or(0);
    if code != 101 {
        return Err(HandshakeError::Status {
            code,
            reason: resp.reason.unwrap_or("").to_string(),
        });
    }
    let has_token = |name: &str, token: &str| {
        resp.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case(name)
                && std::str::from_utf8(h.value)
                    .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return Err(HandshakeError::MissingUpgrade);
    }
    let accepted = resp
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
        .map(|h| h.value)
        .collect::<Vec<_>>();
    if accepted.len() != 1 || accepted[0] != accept.as_bytes() {
        return Err(HandshakeError::BadAccept);
    }
    Ok(Some(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_matches_rfc_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_for("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn response_checks_status_upgrade_and_accept() {
        let mut req = Vec::new();
        let accept = write_request(&mut req, "h", "/echo", [7; 16]);
        assert!(req.starts_with(b"GET /echo HTTP/1.1\r\nHost: h\r\n"));
        let ok = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n\x01\x00"
        );
        let len = ok.len() - 2;
        assert_eq!(parse_response(ok.as_bytes(), &accept), Ok(Some(len)));
        assert_eq!(parse_response(&ok.as_bytes()[..20], &accept), Ok(None));
        let bad = ok.replace(&accept, "AAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        assert_eq!(
            parse_response(bad.as_bytes(), &accept),
            Err(HandshakeError::BadAccept)
        );
        let nf = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        let err = parse_response(nf, &accept).unwrap_err();
        assert_eq!(err.reason(), "http 404");
        assert!(err.to_string().contains("HTTP 404 Not Found"));
        assert_eq!(
            parse_response(b"SSH-2.0-OpenSSH\r\n\r\n", &accept),
            Err(HandshakeError::NotHttp)
        );
    }
}
