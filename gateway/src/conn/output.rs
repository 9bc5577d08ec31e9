//! `Output`: the bytes one input call to a connection produced, in order: frames, HTTP
//! responses, pongs. The shard owns one and reuses its capacity for every connection; nothing
//! here allocates once it has grown.
//!
//! Pongs (§5.5.2, §5.5.3): every ping gets its own pong with its payload, written in place like
//! any other frame, so pongs keep their order with each other and with the rest of the output.
//! Only when the connection's queue is full (the shard gives its room under
//! `--max-outbound-bytes` with [`Output::set_room`]) are owed pongs coalesced: one slot keeps the
//! latest, put where its ping was answered. Two pong frames of the room are kept for coalesced
//! pongs (the one that ends the call that fills the queue, and the one later calls replace at
//! the back of the queue), so pongs alone never take a queue past its limit: a peer that floods
//! pings and never reads costs a full queue and one pong, and is still read.

use frame_simd::close::encode_close_payload;
use frame_simd::{encode_header, CloseCode, Opcode, MAX_HEADER_LEN};

use super::deflate::{Deflater, SendDeflate};
use super::handshake::HandshakeFailure;

/// Largest pong payload: a control frame carries at most 125 bytes (§5.5).
const MAX_PONG_PAYLOAD: usize = 125;
/// A pong's header: 2 bytes (a server frame is unmasked, and 125 needs no extended length).
const PONG_HEADER: usize = 2;
/// Largest pong frame.
const MAX_PONG_FRAME: usize = PONG_HEADER + MAX_PONG_PAYLOAD;
/// Room kept for coalesced pongs (see the module doc).
const COALESCED_RESERVE: usize = 2 * MAX_PONG_FRAME;

/// The coalesced pong, owed while the queue is full: only the latest is kept (§5.5.3).
#[derive(Clone, Copy, Debug)]
struct OwedPong {
    /// Where in the output it goes (after everything produced before its ping).
    at: usize,
    len: u8,
    payload: [u8; MAX_PONG_PAYLOAD],
}

/// Bytes a connection wants sent, appended in order during one turn. The shard owns one and
/// reuses its capacity for every connection.
#[derive(Debug)]
pub struct Output {
    /// Encoded frames and HTTP responses.
    pub bytes: Vec<u8>,
    /// Bytes the connection's queue may still take before pongs coalesce (unlimited unless the
    /// shard says otherwise).
    room_bytes: usize,
    pong: Option<OwedPong>,
    /// Data messages received during the call (for metrics).
    pub messages_in: u64,
    /// Data frames appended (for metrics).
    pub messages_out: u64,
    /// Why an upgrade was refused during the call (for metrics).
    pub refused: Option<HandshakeFailure>,
    /// A close frame was appended during the call, with this code (`None`: an empty close; for
    /// metrics).
    pub close_sent: Option<Option<CloseCode>>,
    /// How the connection of this call compresses data messages (permessage-deflate); set by
    /// the connection at each input call, `None` after [`Output::clear`].
    pub deflate: Option<SendDeflate>,
    /// The shard's compressor (reset per message, shared by every connection).
    pub deflater: Deflater,
    /// That close frame's payload (code and reason), for the log line.
    close_payload: [u8; 125],
    close_len: u8,
    /// The app asks to close the connection with this code and reason after what it wrote
    /// (its protocol failed, or its own timer ran out); the connection honours it.
    pub close_request: Option<(CloseCode, &'static str)>,
}

impl Default for Output {
    fn default() -> Self {
        Output {
            bytes: Vec::new(),
            room_bytes: usize::MAX,
            pong: None,
            messages_in: 0,
            messages_out: 0,
            refused: None,
            close_sent: None,
            deflate: None,
            deflater: Deflater::default(),
            close_payload: [0; 125],
            close_len: 0,
            close_request: None,
        }
    }
}

impl Output {
    /// An empty output with unlimited room.
    pub fn new() -> Output {
        Output::default()
    }

    /// Append a final, unmasked frame; a data frame is compressed when the connection
    /// negotiated permessage-deflate and the payload is worth it.
    pub fn frame(&mut self, opcode: Opcode, payload: &[u8]) {
        if !opcode.is_control()
            && self.deflate.is_some_and(|d| d.wants(payload.len()))
            && self.deflater.frame(opcode, payload, &mut self.bytes)
        {
            self.messages_out += 1;
            return;
        }
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
        self.close_sent = Some(code);
        self.close_payload = p;
        self.close_len = u8::try_from(n).unwrap_or(0);
    }

    /// The reason text of the close frame appended during the call (empty if none).
    pub fn close_reason(&self) -> &str {
        let payload = &self.close_payload[..usize::from(self.close_len)];
        std::str::from_utf8(payload.get(2..).unwrap_or_default()).unwrap_or("")
    }

    /// Before an input call: the connection's queue may take `room_bytes` more bytes under its
    /// limit. Pongs that would not fit (with two pong frames to spare) are coalesced.
    pub fn set_room(&mut self, room_bytes: usize) {
        self.room_bytes = room_bytes;
    }

    /// Answer a ping (its payload is at most 125 bytes; the parser guarantees it): a pong in
    /// place while the queue has room, else the latest pong replaces any coalesced before.
    pub fn pong(&mut self, payload: &[u8]) {
        let payload = payload.get(..MAX_PONG_PAYLOAD).unwrap_or(payload);
        let frame_len = PONG_HEADER + payload.len();
        let fits = self.bytes.len() + frame_len + COALESCED_RESERVE <= self.room_bytes;
        if fits && self.pong.is_none() {
            self.frame(Opcode::Pong, payload);
            return;
        }
        let mut p = [0u8; MAX_PONG_PAYLOAD];
        p[..payload.len()].copy_from_slice(payload);
        self.pong = Some(OwedPong {
            at: self.bytes.len(),
            // At most 125 (cut above): fits in a u8.
            len: payload.len() as u8,
            payload: p,
        });
    }

    /// Put the coalesced pong, if any, in place (moving what followed its ping: only a full
    /// queue pays this). Returns true when the output is only that pong: the shard may then
    /// replace an older coalesced pong still unsent at the back of the queue.
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

    /// Forget everything, the room too (keeps the capacity).
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.room_bytes = usize::MAX;
        self.pong = None;
        self.messages_in = 0;
        self.messages_out = 0;
        self.refused = None;
        self.close_sent = None;
        self.deflate = None;
        self.close_len = 0;
        self.close_request = None;
    }
}
