//! Frame bytes: well-formed client frames through frame-simd's encoder, forbidden forms through a
//! raw builder, and a strict parser of server frames (unmasked, minimal lengths).

use frame_simd::{encode_header, MaskKey, Opcode, MAX_HEADER_LEN};

use super::*;

/// A frame as the server sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    /// RSV bits as they sit in the first byte (`0x70` mask).
    pub rsv: u8,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The close code and reason of a close frame (`None` for an empty close payload).
    pub fn close_code(&self) -> Option<u16> {
        assert_eq!(self.opcode, op::CLOSE, "not a close frame: {self:?}");
        match self.payload.len() {
            0 => None,
            1 => panic!("server sent a 1-byte close payload"),
            _ => Some(u16::from_be_bytes([self.payload[0], self.payload[1]])),
        }
    }
}

/// How a raw frame writes its payload length: the minimal form, or forced into the 16-bit or
/// 64-bit extended form (non-minimal for small lengths, which §5.2 forbids).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LenForm {
    Minimal,
    U16,
    U64,
}

/// A client frame built byte by byte by [`raw_frame`], with whatever fields a test wants: RSV
/// bits, reserved opcodes, no mask, any length encoding, and an announced length that differs
/// from the payload appended (`announced`).
#[derive(Clone, Debug)]
pub struct Raw<'a> {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub len_form: LenForm,
    /// Length written in the header; defaults to `payload.len()`.
    pub announced: Option<u64>,
    pub payload: &'a [u8],
}

impl<'a> Raw<'a> {
    /// A masked final frame with the default key and minimal length.
    pub fn new(opcode: u8, payload: &'a [u8]) -> Raw<'a> {
        Raw {
            fin: true,
            rsv: 0,
            opcode,
            mask: Some(KEY),
            len_form: LenForm::Minimal,
            announced: None,
            payload,
        }
    }
}

/// Encode `raw` exactly as described, masking the payload with its key (if any).
pub fn raw_frame(raw: &Raw<'_>) -> Vec<u8> {
    let len = raw.announced.unwrap_or(raw.payload.len() as u64);
    let mut out = Vec::with_capacity(14 + raw.payload.len());
    out.push((if raw.fin { 0x80 } else { 0 }) | (raw.rsv & 0x70) | (raw.opcode & 0x0f));
    let mask_bit = if raw.mask.is_some() { 0x80 } else { 0 };
    let form = match raw.len_form {
        LenForm::Minimal if len <= 125 => None,
        LenForm::Minimal if len <= 0xffff => Some(LenForm::U16),
        LenForm::Minimal => Some(LenForm::U64),
        f => Some(f),
    };
    match form {
        None => out.push(mask_bit | len as u8),
        Some(LenForm::U16) => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        Some(_) => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    if let Some(key) = raw.mask {
        out.extend_from_slice(&key);
        let at = out.len();
        out.extend_from_slice(raw.payload);
        mask_in_place(&mut out[at..], key, 0);
    } else {
        out.extend_from_slice(raw.payload);
    }
    out
}

/// XOR `buf` with `key`, `buf[0]` being payload byte number `phase`.
pub fn mask_in_place(buf: &mut [u8], key: [u8; 4], phase: usize) {
    let rotated = [
        key[phase % 4],
        key[(phase + 1) % 4],
        key[(phase + 2) % 4],
        key[(phase + 3) % 4],
    ];
    let word = u32::from_ne_bytes(rotated);
    let mut chunks = buf.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let v = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ word;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (b, k) in chunks.into_remainder().iter_mut().zip(rotated) {
        *b ^= k;
    }
}

/// A well-formed masked client frame (RSV clear, known opcode), encoded with frame-simd's
/// header encoder; forbidden forms go through [`raw_frame`].
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let opcode = Opcode::from_u8(opcode).expect("client_frame takes a defined opcode");
    let mut header = [0u8; MAX_HEADER_LEN];
    let header_len = encode_header(
        &mut header,
        fin,
        opcode,
        payload.len() as u64,
        Some(MaskKey(key)),
    );
    let mut out = Vec::with_capacity(header_len + payload.len());
    out.extend_from_slice(&header[..header_len]);
    let at = out.len();
    out.extend_from_slice(payload);
    mask_in_place(&mut out[at..], key, 0);
    out
}

/// Parse one server frame from the front of `buf`: `Ok(Some((frame, used)))`, `Ok(None)` when
/// more bytes are needed. Asserts the server rules: unmasked, minimal length, no top bit.
pub(super) fn parse_server_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let b0 = buf[0];
    let b1 = buf[1];
    assert_eq!(
        b1 & 0x80,
        0,
        "server frames must not be masked (RFC 6455 §5.1): header {:02x?}",
        &buf[..2]
    );
    let (len, at) = match b1 & 0x7f {
        126 => {
            if buf.len() < 4 {
                return None;
            }
            let len = u64::from(u16::from_be_bytes([buf[2], buf[3]]));
            assert!(len >= 126, "server used a non-minimal 16-bit length {len}");
            (len, 4)
        }
        127 => {
            if buf.len() < 10 {
                return None;
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            let len = u64::from_be_bytes(b);
            assert!(len >> 63 == 0, "server set the top bit of a 64-bit length");
            assert!(
                len > 0xffff,
                "server used a non-minimal 64-bit length {len}"
            );
            (len, 10)
        }
        n => (u64::from(n), 2),
    };
    assert!(
        len <= 1 << 30,
        "server announced an implausible {len}-byte frame"
    );
    let len = len as usize;
    if buf.len() < at + len {
        return None;
    }
    let frame = Frame {
        fin: b0 & 0x80 != 0,
        rsv: b0 & 0x70,
        opcode: b0 & 0x0f,
        payload: buf[at..at + len].to_vec(),
    };
    Some((frame, at + len))
}
