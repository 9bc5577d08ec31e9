//! What well-formed output looks like: HTTP/1.1 responses (a complete head, a body of exactly
//! its `Content-Length`, nothing after `Connection: close`) and RFC 6455 server frames
//! (unmasked, final, RSV clear or a compressed data frame, legal opcodes and close codes,
//! nothing after a close). The targets hand everything a state machine wrote to these checks,
//! which panic on the first byte that breaks a rule.

use frame_simd::close::parse_close_payload;
use frame_simd::{parse_header, Opcode, ParseConfig, Parsed, Role, RSV1};

/// One response parsed off the front of a byte stream.
#[derive(Debug)]
pub struct Response<'a> {
    /// The status code.
    pub status: u16,
    /// Header lines, names lower-cased.
    pub headers: Vec<(String, &'a [u8])>,
    /// The body (`Content-Length` bytes; empty for a `101`).
    pub body: &'a [u8],
    /// Bytes the head and the body took.
    pub len: usize,
}

impl<'a> Response<'a> {
    /// The values of header `name` (lower case).
    pub fn header<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| *v)
    }

    /// The one value of header `name`; panics if it appears more than once.
    pub fn only(&self, name: &str) -> Option<&'a [u8]> {
        let mut values = self.header(name);
        let first = values.next();
        assert!(values.next().is_none(), "{name} twice in {self:?}");
        first
    }

    /// True when the response says `Connection: close`.
    pub fn closes(&self) -> bool {
        self.header("connection").any(|v| has_token(v, "close"))
    }
}

/// Whether a comma-separated header value holds `token` (ASCII case-insensitive).
fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Parse the response at the front of `bytes`: a complete HTTP/1.1 head with a known status,
/// then (except for `101`) exactly `Content-Length` bytes of body.
pub fn response(bytes: &[u8]) -> Response<'_> {
    let mut slots = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Response::new(&mut slots);
    let head_len = match parsed.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!(
            "not a complete response head ({other:?}): {:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
        ),
    };
    assert_eq!(parsed.version, Some(1), "not HTTP/1.1");
    let status = parsed.code.expect("a complete head has a status");
    assert!((101..=599).contains(&status), "status {status}");
    assert!(
        parsed.reason.is_some_and(|r| !r.is_empty()),
        "status {status} without a reason phrase"
    );
    let headers: Vec<(String, &[u8])> = parsed
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value))
        .collect();
    let mut r = Response {
        status,
        headers,
        body: &[],
        len: head_len,
    };
    if status == 101 {
        assert!(r.only("content-length").is_none(), "a 101 with a body");
        return r;
    }
    let length = r
        .only("content-length")
        .unwrap_or_else(|| panic!("status {status} without Content-Length"));
    let length: usize = std::str::from_utf8(length)
        .ok()
        .filter(|t| t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("bad Content-Length {length:?}"));
    let body = bytes
        .get(head_len..head_len + length)
        .unwrap_or_else(|| panic!("body shorter than Content-Length {length}"));
    if r.only("content-type")
        .is_some_and(|t| t.starts_with(b"application/json"))
    {
        assert!(
            serde_json::from_slice::<serde_json::Value>(body).is_ok(),
            "a JSON body that is not JSON: {:?}",
            String::from_utf8_lossy(body)
        );
    }
    r.body = body;
    r.len = head_len + length;
    r
}

/// What may follow the responses on a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// The API listener: responses only; errors may keep the connection.
    Api,
    /// The client listener: plain responses (errors always close), then possibly a `101` and
    /// server frames.
    Client {
        /// Text frames are JSON (the `/ws` protocol).
        json_text: bool,
    },
}

/// Check everything one connection wrote; returns the responses' statuses in order.
pub fn check_stream(bytes: &[u8], kind: Stream) -> Vec<u16> {
    let mut statuses = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let r = response(&bytes[at..]);
        at += r.len;
        statuses.push(r.status);
        if r.status == 101 {
            let Stream::Client { json_text } = kind else {
                panic!("the API switched protocols");
            };
            let deflate = check_switching(&r);
            server_frames(&bytes[at..], json_text, deflate);
            return statuses;
        }
        if r.status >= 400 && kind != Stream::Api {
            assert!(r.closes(), "error {} keeps the connection", r.status);
        }
        if r.closes() {
            assert_eq!(at, bytes.len(), "bytes after Connection: close");
        }
    }
    statuses
}

/// A `101` names the protocol and carries an accept key (the base64 of a SHA-1); an accepted
/// extension is permessage-deflate, always without server context takeover (the gateway shares
/// one compressed frame between connections). Returns whether it was accepted.
pub fn check_switching(r: &Response<'_>) -> bool {
    assert!(r.header("upgrade").any(|v| has_token(v, "websocket")));
    assert!(r.header("connection").any(|v| has_token(v, "upgrade")));
    let accept = r.only("sec-websocket-accept").expect("an accept key");
    assert_eq!(accept.len(), 28, "accept key {accept:?}");
    let digest = base64_simd::STANDARD
        .decode_to_vec(accept)
        .expect("the accept key is base64");
    assert_eq!(digest.len(), 20);
    let Some(ext) = r.only("sec-websocket-extensions") else {
        return false;
    };
    let ext = std::str::from_utf8(ext).expect("an ASCII extension line");
    let mut params = ext.split(';').map(str::trim);
    assert_eq!(params.next(), Some("permessage-deflate"), "{ext:?}");
    assert!(!ext.contains(','), "one extension only: {ext:?}");
    assert!(
        params.any(|p| p == "server_no_context_takeover"),
        "no server_no_context_takeover in {ext:?}"
    );
    true
}

/// Frames a server may send: the header rules of a client reading them (unmasked, no RSV
/// without an extension, RSV1 only on data frames with `deflate`, legal opcodes, control
/// frames final and at most 125 bytes), every frame complete and final, compressed payloads
/// that inflate on their own (no context is carried between messages), text UTF-8 (JSON with
/// `json_text`), close payloads legal (a sendable code, a UTF-8 reason), and nothing after the
/// close.
pub fn server_frames(bytes: &[u8], json_text: bool, deflate: bool) {
    let cfg = ParseConfig {
        role: Role::Client,
        rsv_allowed: if deflate { RSV1 } else { 0 },
        max_payload: u64::MAX,
    };
    let mut at = 0;
    while at < bytes.len() {
        let (header, len) = match parse_header(&bytes[at..], &cfg) {
            Ok(Parsed::Header { header, len }) => (header, len),
            Ok(Parsed::Need(n)) => panic!("a frame header cut short at {at} (needs {n} more)"),
            Err(e) => panic!("an illegal server frame at {at}: {e:?}"),
        };
        let start = at + len;
        let payload = usize::try_from(header.payload_len)
            .ok()
            .and_then(|n| bytes.get(start..start.checked_add(n)?))
            .unwrap_or_else(|| panic!("a frame payload cut short at {at}"));
        at = start + payload.len();
        assert!(header.fin, "the gateway never fragments");
        let inflated;
        let payload = if header.rsv & RSV1 != 0 {
            inflated = inflate(payload);
            &inflated[..]
        } else {
            payload
        };
        match header.opcode {
            Opcode::Continuation => panic!("a continuation frame"),
            Opcode::Text => {
                let text = std::str::from_utf8(payload).expect("text frames are UTF-8");
                if json_text {
                    assert!(
                        serde_json::from_str::<serde_json::Value>(text).is_ok(),
                        "a /ws frame that is not JSON: {text:?}"
                    );
                }
            }
            Opcode::Close => {
                if let Err(e) = parse_close_payload(payload) {
                    panic!("an illegal close payload {payload:?}: {e:?}");
                }
                assert_eq!(at, bytes.len(), "frames after the close frame");
            }
            Opcode::Binary | Opcode::Ping | Opcode::Pong => {}
        }
    }
}

/// A compressed message's payload inflated by an independent implementation (flate2's raw
/// DEFLATE, after the empty stored block the sender removed, RFC 7692 §7.2.2), from a fresh
/// window: the gateway compresses every message on its own. A message may also end with a
/// final block (§7.2.3.3); what follows it is the appended empty block and is ignored.
fn inflate(payload: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let input = [payload, &[0, 0, 0xff, 0xff]].concat();
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(&input[..])
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("a compressed frame that does not inflate: {e}"));
    out
}
