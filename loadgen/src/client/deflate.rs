//! permessage-deflate (RFC 7692) on the client side, so compression is measured with loadgen:
//! the offer (both sides without context takeover, so every message stands alone), the check
//! of the server's answer, and whole-message compress and inflate. Loadgen's own cost stays
//! small: one compressor and one inflater per worker thread, reset per message.

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The request header line offering the extension.
pub const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; \
                         server_no_context_takeover; client_no_context_takeover\r\n";
/// Messages shorter than this are sent uncompressed.
pub const THRESHOLD_BYTES: usize = 128;
/// What a sync flush ends with; removed by the sender, put back by the receiver (§7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

thread_local! {
    static ZIP: RefCell<(Compress, Decompress)> = RefCell::new((
        Compress::new(Compression::new(6), false),
        Decompress::new(false),
    ));
}

/// Whether a 101 response head accepted permessage-deflate.
pub fn accepted(head: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    if resp.parse(head).is_err() {
        return false;
    }
    resp.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("sec-websocket-extensions")
            && std::str::from_utf8(h.value).is_ok_and(|v| {
                v.split(',').any(|e| {
                    e.split(';')
                        .next()
                        .is_some_and(|n| n.trim().eq_ignore_ascii_case("permessage-deflate"))
                })
            })
    })
}

/// `payload` compressed as one message, appended to `out`.
pub fn compress(payload: &[u8], out: &mut Vec<u8>) {
    ZIP.with_borrow_mut(|(z, _)| {
        z.reset();
        out.reserve(payload.len() / 2 + 64);
        let mut input = payload;
        loop {
            let before = z.total_in();
            if z.compress_vec(input, out, FlushCompress::Sync).is_err() {
                break;
            }
            // At most `input.len()`: fits in usize.
            input = &input[(z.total_in() - before) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.len().max(64));
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
    });
}

/// A compressed message inflated, at most `limit` bytes; `None` if it is not DEFLATE data or
/// inflates past the limit.
pub fn inflate(payload: &[u8], limit: usize) -> Option<Vec<u8>> {
    ZIP.with_borrow_mut(|(_, z)| {
        z.reset(false);
        let mut out = Vec::with_capacity((payload.len() * 4).min(limit) + 64);
        for input in [payload, &TAIL[..]] {
            let mut input = input;
            loop {
                let before = z.total_in();
                let status = z
                    .decompress_vec(input, &mut out, FlushDecompress::Sync)
                    .ok()?;
                if out.len() > limit {
                    return None;
                }
                input = &input[(z.total_in() - before) as usize..];
                if status == Status::StreamEnd {
                    return Some(out);
                }
                if input.is_empty() && out.len() < out.capacity() {
                    break;
                }
                out.reserve(out.len().max(256));
            }
        }
        Some(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_limit() {
        let msg = br#"{"type":"message","data":"hello hello hello hello hello hello"}"#.repeat(20);
        let mut packed = Vec::new();
        compress(&msg, &mut packed);
        assert!(packed.len() < msg.len() / 4);
        assert_eq!(inflate(&packed, msg.len()).as_deref(), Some(&msg[..]));
        assert_eq!(inflate(&packed, msg.len() - 1), None);
        assert_eq!(inflate(&[0xff, 0xff], 100), None);
    }

    #[test]
    fn answer_must_name_the_extension() {
        let yes = b"HTTP/1.1 101 OK\r\nSec-WebSocket-Extensions: permessage-deflate; \
                    server_no_context_takeover\r\n\r\n";
        assert!(accepted(yes));
        assert!(!accepted(b"HTTP/1.1 101 OK\r\n\r\n"));
        assert!(!accepted(
            b"HTTP/1.1 101 OK\r\nSec-WebSocket-Extensions: x-other\r\n\r\n"
        ));
    }
}
