//! The HTTP/1.1 client codec of backend calls, sans-IO: [`encode_request`] writes one signed
//! `POST`, [`ResponseReader`] takes the answer's bytes as they arrive and says when it is
//! complete. Bodies are delimited by `Content-Length` (or by the end of the stream when the
//! backend sends neither it nor chunked encoding); chunked answers are refused, and every size
//! is bounded before anything is kept.

use std::io::Write as _;

use super::sign::Signer;

/// Header lines read from one answer.
const MAX_RESPONSE_HEADERS: usize = 32;
/// Bytes of an answer's head.
pub const MAX_RESPONSE_HEAD_BYTES: usize = 16 * 1024;
/// Bytes of an answer's body.
pub const MAX_RESPONSE_BODY_BYTES: usize = 1 << 20;

/// `POST path` with `body` (JSON) to `host`, signed, keep-alive, appended to `out`.
pub fn encode_request(
    out: &mut Vec<u8>,
    host: &str,
    path: &str,
    body: &[u8],
    signer: &Signer,
    unix_secs: u64,
) {
    let signature = signer.sign(unix_secs, body);
    let _ = write!(
        out,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nX-Gateway-Timestamp: {unix_secs}\r\n\
         X-Gateway-Signature: sha256={signature}\r\n\r\n",
        body.len()
    );
    out.extend_from_slice(body);
}

/// A complete answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
    /// The connection may carry another request.
    pub keep_alive: bool,
}

/// Why an answer is unusable (the call fails as `bad_response`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseError {
    /// Not HTTP/1.x, or a malformed head.
    Malformed,
    /// The head is longer than [`MAX_RESPONSE_HEAD_BYTES`].
    HeadTooLarge,
    /// The body is longer than [`MAX_RESPONSE_BODY_BYTES`].
    BodyTooLarge,
    /// `Transfer-Encoding` (chunked) is not accepted: send `Content-Length`.
    Chunked,
    /// The stream ended before the announced body did.
    Truncated,
    /// An interim `1xx` answer (the gateway sends no `Expect`), or `101`.
    Informational,
}

impl ResponseError {
    /// For logs and error replies.
    pub fn message(self) -> &'static str {
        match self {
            Self::Malformed => "malformed HTTP answer",
            Self::HeadTooLarge => "answer head too large",
            Self::BodyTooLarge => "answer body too large",
            Self::Chunked => "chunked answers are not accepted (send Content-Length)",
            Self::Truncated => "answer ended early",
            Self::Informational => "unexpected 1xx answer",
        }
    }
}

/// The head of an answer, once parsed.
#[derive(Debug, Clone, Copy)]
struct Head {
    status: u16,
    /// Where the body starts in the buffer.
    body_at: usize,
    /// `Content-Length`; `None`: the body runs to the end of the stream.
    length: Option<usize>,
    keep_alive: bool,
}

/// Accumulates one answer's bytes. Feed [`ResponseReader::on_read`]; call
/// [`ResponseReader::on_eof`] when the stream ends.
#[derive(Debug, Default)]
pub struct ResponseReader {
    buf: Vec<u8>,
    head: Option<Head>,
}

impl ResponseReader {
    /// Nothing received yet.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Forget everything (before the next request on the connection).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.head = None;
        if self.buf.capacity() > 64 * 1024 {
            self.buf = Vec::new();
        }
    }

    /// More bytes: `Ok(Some)` once the answer is complete, `Ok(None)` while more are needed.
    pub fn on_read(&mut self, bytes: &[u8]) -> Result<Option<Response>, ResponseError> {
        self.buf.extend_from_slice(bytes);
        if self.head.is_none() {
            self.head = parse_head(&self.buf)?;
        }
        let Some(head) = self.head else {
            return Ok(None);
        };
        let have = self.buf.len() - head.body_at;
        match head.length {
            Some(len) if have >= len => Ok(Some(self.take(head, len))),
            Some(_) => Ok(None),
            None if have > MAX_RESPONSE_BODY_BYTES => Err(ResponseError::BodyTooLarge),
            None => Ok(None),
        }
    }

    /// The stream ended: a body delimited by the end is complete now; anything else is cut.
    pub fn on_eof(&mut self) -> Result<Response, ResponseError> {
        match self.head {
            Some(head) if head.length.is_none() => {
                let len = self.buf.len() - head.body_at;
                Ok(self.take(head, len))
            }
            _ => Err(ResponseError::Truncated),
        }
    }

    fn take(&mut self, head: Head, len: usize) -> Response {
        let body = self.buf[head.body_at..head.body_at + len].to_vec();
        Response {
            status: head.status,
            body,
            keep_alive: head.keep_alive && head.length.is_some(),
        }
    }
}

fn parse_head(buf: &[u8]) -> Result<Option<Head>, ResponseError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    let body_at = match res.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_RESPONSE_HEAD_BYTES => {
            return Err(ResponseError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(ResponseError::Malformed),
    };
    if body_at > MAX_RESPONSE_HEAD_BYTES {
        return Err(ResponseError::HeadTooLarge);
    }
    let status = res.code.ok_or(ResponseError::Malformed)?;
    if status < 200 {
        return Err(ResponseError::Informational);
    }
    let mut keep_alive = res.version == Some(1);
    let mut length = None;
    for h in res.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(h.value).map_err(|_| ResponseError::Malformed)?;
            let n: u64 = text.trim().parse().map_err(|_| ResponseError::Malformed)?;
            if n > MAX_RESPONSE_BODY_BYTES as u64 {
                return Err(ResponseError::BodyTooLarge);
            }
            let n = usize::try_from(n).map_err(|_| ResponseError::BodyTooLarge)?;
            if length.is_some_and(|l| l != n) {
                return Err(ResponseError::Malformed);
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ResponseError::Chunked);
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = h.value;
            if v.eq_ignore_ascii_case(b"close") {
                keep_alive = false;
            } else if v.eq_ignore_ascii_case(b"keep-alive") {
                keep_alive = true;
            }
        }
    }
    if status == 204 || status == 304 {
        length = Some(0);
    }
    Ok(Some(Head {
        status,
        body_at,
        length,
        keep_alive,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_in_chunks(bytes: &[u8], chunk: usize) -> Result<Option<Response>, ResponseError> {
        let mut r = ResponseReader::default();
        for part in bytes.chunks(chunk) {
            if let Some(done) = r.on_read(part)? {
                return Ok(Some(done));
            }
        }
        Ok(None)
    }

    #[test]
    fn a_content_length_answer_completes_in_any_chunking() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"allow\":1}";
        for chunk in [1, 2, 3, 7, 64] {
            let r = read_in_chunks(raw, chunk).unwrap().unwrap();
            assert_eq!(r.status, 200);
            assert_eq!(r.body, b"{\"allow\":1}");
            assert!(r.keep_alive);
        }
    }

    #[test]
    fn close_delimited_bodies_end_at_eof_and_do_not_keep_alive() {
        let mut r = ResponseReader::default();
        assert_eq!(r.on_read(b"HTTP/1.0 200 OK\r\n\r\n{}"), Ok(None));
        let done = r.on_eof().unwrap();
        assert_eq!(
            (done.status, &done.body[..], done.keep_alive),
            (200, &b"{}"[..], false)
        );
        let mut r = ResponseReader::default();
        assert_eq!(
            r.on_read(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}"),
            Ok(None)
        );
        assert_eq!(r.on_eof(), Err(ResponseError::Truncated));
    }

    #[test]
    fn garbage_chunked_and_oversized_answers_are_refused() {
        let mut r = ResponseReader::default();
        assert_eq!(r.on_read(b"garbage\r\n\r\n"), Err(ResponseError::Malformed));
        let mut r = ResponseReader::default();
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(r.on_read(chunked), Err(ResponseError::Chunked));
        let mut r = ResponseReader::default();
        let big = b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n";
        assert_eq!(r.on_read(big), Err(ResponseError::BodyTooLarge));
        let mut r = ResponseReader::default();
        let long = vec![b'a'; MAX_RESPONSE_HEAD_BYTES + 1];
        assert!(r.on_read(b"HTTP/1.1 200 OK\r\nX: ").is_ok());
        assert_eq!(r.on_read(&long), Err(ResponseError::HeadTooLarge));
        let mut r = ResponseReader::default();
        let two = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(r.on_read(two), Err(ResponseError::Malformed));
    }

    #[test]
    fn connection_close_and_204_are_honoured() {
        let r = read_in_chunks(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n", 5)
            .unwrap()
            .unwrap();
        assert_eq!((r.status, r.body.len(), r.keep_alive), (204, 0, false));
    }

    #[test]
    fn a_request_is_signed_over_the_timestamp_and_body() {
        let signer = Signer::new(b"k");
        let mut out = Vec::new();
        encode_request(&mut out, "h:1", "/p", b"{}", &signer, 7);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("POST /p HTTP/1.1\r\nHost: h:1\r\n"),
            "{text}"
        );
        assert!(text.contains("Content-Length: 2\r\n"));
        assert!(text.contains("X-Gateway-Timestamp: 7\r\n"));
        let sig = format!("X-Gateway-Signature: sha256={}\r\n", signer.sign(7, b"{}"));
        assert!(text.contains(&sig));
        assert!(text.ends_with("\r\n\r\n{}"));
    }
}
