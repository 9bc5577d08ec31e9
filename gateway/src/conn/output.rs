//! `Output`: the bytes one input call to a connection produced, in order: frames, HTTP
//! responses, and at most one owed pong placed where the ping was answered. The shard owns one and
//! reuses its capacity for every connection; nothing here allocates once it has grown.

use frame_simd::close::encode_close_payload;
use frame_simd::{encode_header, CloseCode, Opcode, MAX_HEADER_LEN};

use super::handshake::HandshakeFailure;

/// The small control frame owed as a pong: only the latest is kept (§5.5.3).
#[derive(Clone, Copy, Debug)]
struct OwedPong {
    /// Where in the output it goes (after everything produced before the ping).
    at: usize,
    len: u8,
    payload: [u8; 125],
}

/// Bytes a connection wants sent, appended in order during one turn. The shard owns one and
/// reuses its capacity for every connection.
#[derive(Debug, Default)]
pub struct Output {
    /// Encoded frames and HTTP responses.
    pub bytes: Vec<u8>,
    pong: Option<OwedPong>,
    /// Data messages received during the call (for metrics).
    pub messages_in: u64,
    /// Data frames appended (for metrics).
    pub messages_out: u64,
    /// Why an upgrade was refused during the call (for metrics).
    pub refused: Option<HandshakeFailure>,
}

impl Output {
    /// An empty output.
    pub fn new() -> Output {
        Output::default()
    }

    /// Append a final, unmasked frame.
    pub fn frame(&mut self, opcode: Opcode, payload: &[u8]) {
        let mut h = [0u8; MAX_HEADER_LEN];
        let n = encode_header(&mut h, true, opcode, payload.len() as u64, None);
        if !opcode.is_control() {
            self.messages_out += 1;
        }
        self.bytes.reserve(n + payload.len());
        self.bytes.extend_from_slice(&h[..n]);
        self.bytes.extend_from_slice(payload);
    }

    /// Append a close frame; `None` sends an empty payload.
    pub fn close(&mut self, code: Option<CloseCode>, reason: &str) {
        let mut p = [0u8; 125];
        let n = match code {
            Some(code) => encode_close_payload(&mut p, code, reason)
                .or_else(|_| encode_close_payload(&mut p, code, ""))
                .unwrap_or(0),
            None => 0,
        };
        self.frame(Opcode::Close, &p[..n]);
    }

    /// Owe a pong for `payload` (at most 125 bytes; the parser guarantees it), replacing any
    /// pong owed before.
    pub fn pong(&mut self, payload: &[u8]) {
        let len = payload.len().min(125);
        let mut p = [0u8; 125];
        p[..len].copy_from_slice(&payload[..len]);
        self.pong = Some(OwedPong {
            at: self.bytes.len(),
            len: len as u8,
            payload: p,
        });
    }

    /// Put the owed pong in place. Returns true when the output is only that pong (the shard
    /// may then replace an older pong still queued).
    pub fn finish(&mut self) -> bool {
        let Some(pong) = self.pong.take() else {
            return false;
        };
        let only = self.bytes.is_empty();
        let len = usize::from(pong.len);
        let mut header = [0u8; MAX_HEADER_LEN];
        let n = encode_header(&mut header, true, Opcode::Pong, u64::from(pong.len), None);
        let at = pong.at.min(self.bytes.len());
        let frame = header[..n].iter().chain(&pong.payload[..len]).copied();
        self.bytes.splice(at..at, frame);
        only
    }

    /// True when nothing is owed.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty() && self.pong.is_none()
    }

    /// Forget everything (keeps the capacity).
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.pong = None;
        self.messages_in = 0;
        self.messages_out = 0;
        self.refused = None;
    }
}
