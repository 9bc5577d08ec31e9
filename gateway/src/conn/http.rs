//! HTTP/1.1 requests before the upgrade: finding the end of the request head incrementally, and
//! writing the plain responses (`/healthz`, 404, errors) with the head writer that the API and the
//! page responses share.
//!
//! The head is scanned once: the reader remembers how far it has looked for the `\r\n\r\n`
//! terminator and resumes there, so a request dribbled one byte at a time costs linear work, and
//! httparse runs exactly once, on a complete head. A head that has not ended within
//! `max_header_bytes` is refused (414 if even the request line had not ended, else 431).
//! A request that arrives in one read is parsed straight from the shard's buffer; only an
//! unfinished head is copied into the connection (and freed once complete).

use std::io::Write;

/// Where the head of a request ends, as far as the bytes seen so far tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// The head is the first `n` bytes (terminator included).
    Head(usize),
    /// No terminator yet, and still within the limit.
    Partial,
    /// No terminator within the limit.
    TooLong(HttpError),
}

/// Look for the end of the head in `buf`, starting the search at `from` (bytes before it were
/// searched already). Only the first `max_header_bytes` bytes may hold the head.
pub fn scan_head(buf: &[u8], from: usize, max_header_bytes: usize) -> Scan {
    let window = &buf[..buf.len().min(max_header_bytes)];
    let from = from.saturating_sub(3).min(window.len());
    if let Some(i) = memchr::memmem::find(&window[from..], b"\r\n\r\n") {
        return Scan::Head(from + i + 4);
    }
    if buf.len() < max_header_bytes {
        return Scan::Partial;
    }
    if memchr::memchr(b'\n', window).is_none() {
        Scan::TooLong(HttpError::UriTooLong)
    } else {
        Scan::TooLong(HttpError::HeadersTooLarge)
    }
}

/// The bytes of a request head received so far (only while it is unfinished).
#[derive(Debug, Default)]
pub struct RequestBuf {
    /// Unfinished head bytes; empty (and unallocated) between requests.
    pub bytes: Vec<u8>,
}

/// A request the gateway refuses with a plain HTTP status. Each variant names the broken rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// The request line did not end within `max_header_bytes`.
    UriTooLong,
    /// The head did not end within `max_header_bytes`.
    HeadersTooLarge,
    /// More header lines than `max_headers`.
    TooManyHeaders,
    /// httparse rejected the head.
    Malformed,
    /// No route for this path.
    NotFound,
    /// Only GET is served.
    MethodNotAllowed,
    /// The request was not complete by the handshake deadline.
    Timeout,
    /// Over `--max-connections`.
    OverCapacity,
}

impl HttpError {
    /// The status line's code and reason phrase.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            Self::UriTooLong => (414, "URI Too Long"),
            Self::HeadersTooLarge | Self::TooManyHeaders => {
                (431, "Request Header Fields Too Large")
            }
            Self::Malformed => (400, "Bad Request"),
            Self::NotFound => (404, "Not Found"),
            Self::MethodNotAllowed => (405, "Method Not Allowed"),
            Self::Timeout => (408, "Request Timeout"),
            Self::OverCapacity => (503, "Service Unavailable"),
        }
    }

    /// The one-line body.
    pub fn message(&self) -> &'static str {
        match self {
            Self::UriTooLong => "request line longer than the header byte limit",
            Self::HeadersTooLarge => "request head longer than the header byte limit",
            Self::TooManyHeaders => "more header lines than the limit",
            Self::Malformed => "malformed HTTP request",
            Self::NotFound => "no such path",
            Self::MethodNotAllowed => "only GET is allowed",
            Self::Timeout => "request not complete before the handshake deadline",
            Self::OverCapacity => "connection limit reached, retry later",
        }
    }

    /// Extra header lines this status carries.
    pub fn extra_headers(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::MethodNotAllowed => &[("Allow", "GET")],
            Self::OverCapacity => &[("Retry-After", "1")],
            _ => &[],
        }
    }
}

/// Room for the header lines of one request head, for httparse: on the stack up to 64 lines, on
/// the heap only when the configured limit is larger.
pub struct HeaderSlots<'h> {
    stack: [httparse::Header<'h>; 64],
    heap: Vec<httparse::Header<'h>>,
}

impl Default for HeaderSlots<'_> {
    fn default() -> Self {
        Self {
            stack: [httparse::EMPTY_HEADER; 64],
            heap: Vec::new(),
        }
    }
}

impl<'h> HeaderSlots<'h> {
    /// `max_headers` empty slots: a head with more header lines is `TooManyHeaders`.
    pub fn get(&mut self, max_headers: usize) -> &mut [httparse::Header<'h>] {
        if max_headers <= self.stack.len() {
            &mut self.stack[..max_headers]
        } else {
            self.heap = vec![httparse::EMPTY_HEADER; max_headers];
            &mut self.heap[..]
        }
    }
}

/// Write the status line, `headers`, and `Content-Type` / `Content-Length` for a body of
/// `content_length` bytes. The caller may add header lines of its own, then finishes with
/// [`end_head`]. Every response the gateway writes by hand (plain, API, page) starts here.
pub fn write_head(
    out: &mut Vec<u8>,
    status: (u16, &str),
    headers: &[(&str, &str)],
    content_type: &str,
    content_length: usize,
) {
    // Writing into a Vec cannot fail.
    let _ = write!(out, "HTTP/1.1 {} {}\r\n", status.0, status.1);
    for (name, value) in headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    let _ = write!(
        out,
        "Content-Type: {content_type}\r\nContent-Length: {content_length}\r\n"
    );
}

/// End a head begun with [`write_head`] (saying `Connection: close` with `close`) and append
/// the body.
pub fn end_head(out: &mut Vec<u8>, close: bool, body: &[u8]) {
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// Write a complete `text/plain` response. With `close`, it says `Connection: close`.
pub fn write_response(
    out: &mut Vec<u8>,
    status: (u16, &str),
    headers: &[(&str, &str)],
    body: &str,
    close: bool,
) {
    write_head(out, status, headers, "text/plain", body.len());
    end_head(out, close, body.as_bytes());
}

/// Write an error response (always `Connection: close`); the body is the message and a newline.
pub fn write_error(out: &mut Vec<u8>, status: (u16, &str), headers: &[(&str, &str)], msg: &str) {
    write_head(out, status, headers, "text/plain", msg.len() + 1);
    end_head(out, true, msg.as_bytes());
    out.push(b'\n');
}

/// Whether the connection stays open after a plain answer to `req`: HTTP/1.1, no
/// `Connection: close`, and no body announced (`Transfer-Encoding`, or a `Content-Length` other
/// than 0), since the body would not be read.
pub fn keeps_alive(req: &httparse::Request<'_, '_>) -> bool {
    req.version == Some(1)
        && !req.headers.iter().any(|h| {
            (h.name.eq_ignore_ascii_case("connection") && has_token(h.value, "close"))
                || h.name.eq_ignore_ascii_case("transfer-encoding")
                || (h.name.eq_ignore_ascii_case("content-length") && trim(h.value) != b"0")
        })
}

/// Whether a comma-separated header value holds `token` (ASCII case-insensitive, §4.2.1).
pub fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| trim(t).eq_ignore_ascii_case(token.as_bytes()))
}

/// Strip optional whitespace (space, tab) around a token.
pub fn trim(mut t: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = t {
        t = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = t {
        t = rest;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_head_end_across_calls_without_rescanning() {
        let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nrest";
        let mut buf = Vec::new();
        let mut found = None;
        for (i, &b) in req.iter().enumerate() {
            let from = buf.len();
            buf.push(b);
            if let Scan::Head(n) = scan_head(&buf, from, 8192) {
                found = Some((i, n));
                break;
            }
        }
        assert_eq!(found, Some((26, 27)));
    }

    #[test]
    fn long_request_line_is_414_and_long_headers_431() {
        let line = vec![b'a'; 100];
        assert_eq!(
            scan_head(&line, 0, 64),
            Scan::TooLong(HttpError::UriTooLong)
        );
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        head.extend(std::iter::repeat_n(b'x', 100));
        assert_eq!(
            scan_head(&head, 0, 64),
            Scan::TooLong(HttpError::HeadersTooLarge)
        );
        assert_eq!(scan_head(&head[..30], 0, 64), Scan::Partial);
    }

    #[test]
    fn head_must_end_within_the_limit() {
        let req = b"GET / HTTP/1.1\r\n\r\n";
        assert_eq!(scan_head(req, 0, req.len()), Scan::Head(req.len()));
        assert_eq!(
            scan_head(req, 0, req.len() - 1),
            Scan::TooLong(HttpError::HeadersTooLarge)
        );
    }

    #[test]
    fn token_lists_are_case_insensitive() {
        assert!(has_token(b"keep-alive, Upgrade", "upgrade"));
        assert!(has_token(b"\tWebSocket ", "websocket"));
        assert!(!has_token(b"websockets", "websocket"));
        assert!(!has_token(b"", "upgrade"));
    }

    #[test]
    fn error_response_has_length_and_close() {
        let mut out = Vec::new();
        let e = HttpError::MethodNotAllowed;
        write_error(&mut out, e.status(), e.extra_headers(), e.message());
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\n"));
        assert!(s.contains("Content-Length: 20\r\n"), "{s}");
        assert!(s.ends_with("Connection: close\r\n\r\nonly GET is allowed\n"));
    }
}
