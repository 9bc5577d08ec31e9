//! `http_head`: a request head read in chunks as a connection reads it (`conn::http::scan_head`
//! resuming where it stopped), parsed by httparse into the configured header slots, then put
//! through the upgrade rules (`conn::handshake::check_upgrade`).
//!
//! Asserts: nothing panics; the resumed scan always agrees with a scan of everything so far; a
//! head ends at the first `\r\n\r\n` and within `max_header_bytes`, a refusal comes only once the
//! limit is reached; a parsed head has at most `max_headers` lines; an accepted upgrade carries
//! a key that is the base64 of 16 bytes, its accept key is 28 characters of base64 for that key,
//! and a chosen subprotocol is one the server speaks and the client offered; every response
//! written (the `101`, each refusal) is well-formed HTTP.

use gateway::conn::handshake::{accept_key, check_upgrade, write_switching, Policy};
use gateway::conn::http::{scan_head, write_error, HeaderSlots, Scan};

use super::input::{read_size, Input};
use super::wire;

/// Header byte limits: tiny ones reach the 414 and 431 paths, 8192 is the default.
pub const HEADER_BYTES: [usize; 4] = [8192, 40, 200, 1024];
/// Header line limits: 64 is the default, 100 spills the slots to the heap.
pub const HEADERS: [usize; 4] = [64, 0, 3, 100];

/// The server's policy: none, or two subprotocols and one allowed origin.
pub fn policy(strict: bool) -> Policy {
    if !strict {
        return Policy::default();
    }
    Policy {
        allowed_origins: vec!["https://app.example".into()],
        subprotocols: vec!["chat.v2".into(), "chat.v1".into()],
    }
}

/// Input: a limits byte (header bytes, header lines, policy), a read size, then the request.
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let limits = input.byte();
    let max_bytes = HEADER_BYTES[usize::from(limits & 3)];
    let max_headers = HEADERS[usize::from(limits >> 2 & 3)];
    let policy = policy(limits & 0x10 != 0);
    let step = read_size(input.byte());
    let request = input.rest();

    let Some(head) = scan_in_reads(request, step, max_bytes) else {
        return;
    };
    let mut slots = HeaderSlots::default();
    let mut req = httparse::Request::new(slots.get(max_headers));
    let parsed = req.parse(head);
    if let Ok(httparse::Status::Complete(_)) = parsed {
        assert!(req.headers.len() <= max_headers);
    }
    if !matches!(parsed, Ok(httparse::Status::Complete(_))) {
        return;
    }
    let mut out = Vec::new();
    match check_upgrade(&req, &policy) {
        Ok(accepted) => {
            let key = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-key"))
                .map(|h| h.value.trim_ascii())
                .expect("an accepted upgrade has a key");
            assert_eq!(key.len(), 24, "key {key:?}");
            let raw = base64_simd::STANDARD
                .decode_to_vec(key)
                .expect("an accepted key is base64");
            assert_eq!(raw.len(), 16);
            assert_eq!(accepted.accept, accept_key(key));
            if let Some(i) = accepted.protocol {
                let chosen = policy.subprotocols[i].as_bytes();
                let offered = req
                    .headers
                    .iter()
                    .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-protocol"))
                    .flat_map(|h| h.value.split(|&b| b == b','))
                    .any(|p| p.trim_ascii() == chosen);
                assert!(offered, "chose a protocol the client did not offer");
            }
            write_switching(&mut out, &accepted, &policy);
            let r = wire::response(&out);
            assert_eq!((r.status, r.len), (101, out.len()));
            wire::check_switching(&r);
        }
        Err(e) => {
            write_error(&mut out, e.status(), e.extra_headers(), e.message());
            let r = wire::response(&out);
            assert!((400..500).contains(&r.status) && r.closes() && r.len == out.len());
        }
    }
}

/// Feed `request` in reads of `step` bytes the way a connection does (keep the unfinished head,
/// scan from where the last scan stopped). Returns the head once it is complete.
fn scan_in_reads(request: &[u8], step: usize, max_bytes: usize) -> Option<&[u8]> {
    let mut seen = 0usize;
    loop {
        let from = seen;
        seen = seen.saturating_add(step).min(request.len());
        let buf = &request[..seen];
        let resumed = scan_head(buf, from, max_bytes);
        assert_eq!(resumed, scan_head(buf, 0, max_bytes), "resuming at {from}");
        match resumed {
            Scan::Head(end) => {
                assert!(end <= max_bytes, "a head of {end} bytes");
                assert!(buf[..end].ends_with(b"\r\n\r\n"));
                assert!(
                    !buf[..end - 1].windows(4).any(|w| w == b"\r\n\r\n"),
                    "not the first terminator"
                );
                return Some(&buf[..end]);
            }
            Scan::TooLong(e) => {
                assert!(buf.len() >= max_bytes, "refused at {} bytes", buf.len());
                assert!(!buf[..max_bytes].windows(4).any(|w| w == b"\r\n\r\n"));
                let mut out = Vec::new();
                write_error(&mut out, e.status(), e.extra_headers(), e.message());
                let r = wire::response(&out);
                assert!(matches!(r.status, 414 | 431) && r.closes());
                return None;
            }
            Scan::Partial => {
                assert!(buf.len() < max_bytes);
                if seen == request.len() {
                    return None;
                }
            }
        }
    }
}
