//! The client's side of permessage-deflate (RFC 7692) for the socket suites: an offer in the
//! upgrade request, compressed client frames, and inflating what the server sends. Every message
//! is compressed on its own (the gateway always answers `client_no_context_takeover`), so no
//! state is kept between messages here either.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::*;

/// What a sync flush ends with: removed by the sender, put back by the receiver (§7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// RSV1, the "compressed message" bit of the first frame (§6).
pub const RSV1: u8 = 0x40;

/// Raw DEFLATE of one whole message as a client sends it (§7.2.1): a sync flush with its
/// 4-byte tail removed.
pub fn deflate(payload: &[u8]) -> Vec<u8> {
    let mut out = deflate_flushed(payload);
    assert!(out.ends_with(&TAIL), "a sync flush ends with 00 00 ff ff");
    out.truncate(out.len() - TAIL.len());
    out
}

/// Raw DEFLATE of `payload` ended by a sync flush, tail kept: the bytes of a compressed
/// message's first fragment whose inflated content is exactly `payload`.
pub fn deflate_flushed(payload: &[u8]) -> Vec<u8> {
    let mut z = Compress::new(Compression::new(6), false);
    let mut out = Vec::with_capacity(payload.len() / 2 + 64);
    let mut input = payload;
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(64));
        }
        let before = z.total_in();
        z.compress_vec(input, &mut out, FlushCompress::Sync)
            .expect("deflate");
        input = &input[(z.total_in() - before) as usize..];
        if input.is_empty() && out.len() < out.capacity() {
            return out;
        }
    }
}

/// Inflate one compressed server message (its payload, fragments joined), putting the tail
/// back first (§7.2.2).
pub fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut z = Decompress::new(false);
    let mut input = payload.to_vec();
    input.extend_from_slice(&TAIL);
    let mut out = Vec::with_capacity(payload.len() * 4 + 64);
    let mut rest = &input[..];
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity());
        }
        let before = z.total_in();
        let status = z
            .decompress_vec(rest, &mut out, FlushDecompress::Sync)
            .expect("the server's compressed message inflates");
        rest = &rest[(z.total_in() - before) as usize..];
        if status == Status::StreamEnd || (rest.is_empty() && out.len() < out.capacity()) {
            return out;
        }
    }
}

/// A masked client frame with RSV1 set (the first frame of a compressed message).
pub fn compressed_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(&Raw {
        fin,
        rsv: RSV1,
        ..Raw::new(opcode, payload)
    })
}

/// One whole message, compressed, in a single frame.
pub fn compressed_message(opcode: u8, payload: &[u8]) -> Vec<u8> {
    compressed_frame(true, opcode, &deflate(payload))
}

/// A server message as the client sees it: opcode, payload (inflated when it came compressed)
/// and whether it came compressed.
#[derive(Debug, PartialEq, Eq)]
pub struct Message {
    pub opcode: u8,
    pub payload: Vec<u8>,
    pub compressed: bool,
}

impl Client {
    /// Connect and upgrade on `path` offering `offer` in `Sec-WebSocket-Extensions`; asserts
    /// the 101 and that the server accepted permessage-deflate, and returns the extension line
    /// of its response. RSV1 is allowed on server frames from then on.
    pub fn open_deflate(addr: std::net::SocketAddr, path: &str, offer: &str) -> (Client, String) {
        let mut c = Client::connect(addr);
        let key = fresh_key();
        let resp = c.handshake_with_key(path, &key, &[("Sec-WebSocket-Extensions", offer)]);
        resp.assert_switching(&key);
        let ext = resp
            .header("Sec-WebSocket-Extensions")
            .unwrap_or_else(|| panic!("permessage-deflate declined for offer {offer:?}"))
            .to_owned();
        c.allow_rsv1();
        (c, ext)
    }

    /// Send one whole message compressed in a single frame.
    pub fn send_compressed(&mut self, opcode: u8, payload: &[u8]) {
        self.send_raw(&compressed_message(opcode, payload));
    }

    /// Read the next data message, unfragmented (the gateway sends every message as one
    /// frame), inflating it if RSV1 is set; control frames are returned as they are.
    pub fn read_message(&mut self) -> Message {
        let f = self.read_frame();
        assert!(f.fin, "the server fragmented a message: {f:?}");
        let compressed = f.rsv & RSV1 != 0;
        assert!(
            !compressed || f.opcode == op::TEXT || f.opcode == op::BINARY,
            "RSV1 on a control frame (RFC 7692 §6.1): {f:?}"
        );
        let payload = if compressed {
            inflate(&f.payload)
        } else {
            f.payload
        };
        Message {
            opcode: f.opcode,
            payload,
            compressed,
        }
    }

    /// Expect the echo of a message: the same opcode and (inflated) payload, compressed as
    /// `compressed` says.
    pub fn expect_message(&mut self, opcode: u8, payload: &[u8], compressed: bool) {
        let m = self.read_message();
        assert!(
            m.opcode == opcode && m.payload == payload && m.compressed == compressed,
            "expected opcode {opcode:#x} with {} bytes{} (compressed: {compressed}), got opcode \
             {:#x} with {} bytes{} (compressed: {})",
            payload.len(),
            preview(payload),
            m.opcode,
            m.payload.len(),
            preview(&m.payload),
            m.compressed
        );
    }
}
