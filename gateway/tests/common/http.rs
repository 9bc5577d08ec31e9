//! HTTP side of the harness: upgrade requests, the accept key, and parsed responses with the
//! assertions the contract's error and 101 shapes need.

use std::net::SocketAddr;

use super::*;

/// A parsed HTTP response (status line, headers, the body announced by `Content-Length`, and
/// for a 101 the bytes that arrived after the head).
#[derive(Debug, Clone)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    /// The body (`Content-Length` bytes) for non-101 responses.
    pub body: Vec<u8>,
    /// Bytes read after the head (101) or after the body.
    pub rest: Vec<u8>,
}

impl Response {
    /// The value of the only header named `name` (case-insensitive); panics if repeated.
    pub fn header(&self, name: &str) -> Option<&str> {
        let mut found = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str());
        let first = found.next();
        assert!(
            found.next().is_none(),
            "header {name} appears more than once in {self:?}"
        );
        first
    }

    /// Every value of header `name`.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The header value split as a comma token list, lower-cased.
    pub fn tokens(&self, name: &str) -> Vec<String> {
        self.header_all(name)
            .iter()
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect()
    }

    /// Assert the shape of an error response from the contract: the status, `Content-Type:
    /// text/plain`, a `Content-Length` matching the body, a non-empty body and `Connection: close`.
    pub fn assert_error(&self, status: u16) {
        assert_eq!(self.status, status, "unexpected response {self:#?}");
        assert_eq!(self.version, "HTTP/1.1", "{self:#?}");
        let ct = self.header("Content-Type").unwrap_or_default();
        assert!(
            ct.to_ascii_lowercase().starts_with("text/plain"),
            "Content-Type of an error response: {self:#?}"
        );
        let len: usize = self
            .header("Content-Length")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("Content-Length missing or bad: {self:#?}"));
        assert_eq!(len, self.body.len(), "{self:#?}");
        assert!(!self.body.is_empty(), "error body must say what was wrong");
        assert!(
            self.tokens("Connection").iter().any(|t| t == "close"),
            "error responses carry Connection: close: {self:#?}"
        );
    }

    /// Assert a `101 Switching Protocols` for `key` per RFC 6455 §4.2.2.
    pub fn assert_switching(&self, key: &str) {
        assert_eq!(self.status, 101, "expected 101, got {self:#?}");
        assert_eq!(self.version, "HTTP/1.1", "{self:#?}");
        assert!(
            self.tokens("Upgrade").iter().any(|t| t == "websocket"),
            "Upgrade: websocket missing: {self:#?}"
        );
        assert!(
            self.tokens("Connection").iter().any(|t| t == "upgrade"),
            "Connection: Upgrade missing: {self:#?}"
        );
        assert_eq!(
            self.header("Sec-WebSocket-Accept"),
            Some(accept_key(key).as_str()),
            "wrong accept key: {self:#?}"
        );
    }
}

/// `base64(sha1(key + GUID))` (RFC 6455 §4.2.2 item 5.4).
pub fn accept_key(key: &str) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WS_GUID.as_bytes());
    base64_simd::STANDARD.encode_to_string(sha.digest().bytes())
}

/// A fresh random-looking key (base64 of 16 bytes) derived from a counter and the clock.
pub fn fresh_key() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&n.to_le_bytes());
    raw[8..].copy_from_slice(&t.to_le_bytes());
    base64_simd::STANDARD.encode_to_string(raw)
}

/// A complete upgrade request for `path` with `Host`, the four upgrade headers and `extra`.
pub fn upgrade_request(path: &str, key: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (name, value) in extra {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    req.into_bytes()
}

/// Connect, send `request` in one write, and read the response (the body too).
pub fn http_exchange(addr: SocketAddr, request: &[u8]) -> Response {
    let mut c = Client::connect(addr);
    c.send_raw(request);
    c.read_response()
}

/// Position of `\r\n\r\n` in `buf`.
pub(super) fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Parse a response head (everything up to and including the blank line).
pub(super) fn parse_head(head: &[u8]) -> Response {
    let text = std::str::from_utf8(head)
        .unwrap_or_else(|_| panic!("response head is not UTF-8: {head:?}"));
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default().to_string();
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let reason = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("bad header line {line:?} in {text:?}"));
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    Response {
        version,
        status,
        reason,
        headers,
        body: Vec::new(),
        rest: Vec::new(),
    }
}
