//! Frame encoders: server frames (unmasked) and client frames (masked with a caller key).
//!
//! Headers are written into a caller buffer of [`MAX_HEADER_LEN`] bytes, always with the minimal
//! length encoding (§5.2) that the parser insists on; the `encode_*_frame` helpers append a whole
//! frame to a `Vec` for callers that own one (tests, loadgen, broadcast buffers that are encoded
//! once and shared).

use crate::header::{Header, Opcode};
use crate::mask::MaskKey;
use crate::Kernels;

/// The longest frame header: 2 bytes, 8 bytes of extended length, 4 bytes of mask key.
pub const MAX_HEADER_LEN: usize = 14;

/// Write the header fields after the first byte: mask bit, minimal length, key. Returns the length.
///
/// # Panics
/// If `payload_len` has its top bit set: §5.2 forbids it and no slice can be that long, so only a
/// caller bug gets there (parsed headers never carry such a length).
fn write_header(
    out: &mut [u8; MAX_HEADER_LEN],
    b0: u8,
    payload_len: u64,
    mask_key: Option<MaskKey>,
) -> usize {
    assert!(
        payload_len >> 63 == 0,
        "payload length {payload_len} has the top bit set (RFC 6455 §5.2)"
    );
    let mask_bit = if mask_key.is_some() { 0x80 } else { 0 };
    out[0] = b0;
    let key_at = if let Ok(len7 @ 0..=125) = u8::try_from(payload_len) {
        out[1] = mask_bit | len7;
        2
    } else if let Ok(len16) = u16::try_from(payload_len) {
        out[1] = mask_bit | 126;
        out[2..4].copy_from_slice(&len16.to_be_bytes());
        4
    } else {
        out[1] = mask_bit | 127;
        out[2..10].copy_from_slice(&payload_len.to_be_bytes());
        10
    };
    match mask_key {
        Some(MaskKey(key)) => {
            out[key_at..key_at + 4].copy_from_slice(&key);
            key_at + 4
        }
        None => key_at,
    }
}

/// Write a header with the minimal length encoding into `out`; returns its length (2 to 14).
///
/// # Panics
/// If `payload_len` is 2^63 or more (§5.2 forbids it; no payload slice can be that long).
///
/// ```
/// use frame_simd::{encode_header, Opcode, MAX_HEADER_LEN};
///
/// let mut out = [0; MAX_HEADER_LEN];
/// let len = encode_header(&mut out, true, Opcode::Binary, 256, None);
/// assert_eq!(&out[..len], &[0x82, 0x7e, 0x01, 0x00]);
/// ```
pub fn encode_header(
    out: &mut [u8; MAX_HEADER_LEN],
    fin: bool,
    opcode: Opcode,
    payload_len: u64,
    mask_key: Option<MaskKey>,
) -> usize {
    let fin_bit = if fin { 0x80 } else { 0 };
    write_header(out, fin_bit | opcode as u8, payload_len, mask_key)
}

impl Header {
    /// Write this header, RSV bits included, with the minimal length encoding into `out`; returns
    /// its length. A header returned by [`crate::parse_header`] encodes to the bytes it was
    /// parsed from.
    ///
    /// # Panics
    /// If `payload_len` is 2^63 or more (a parsed header never is).
    pub fn encode(&self, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
        let fin_bit = if self.fin { 0x80 } else { 0 };
        let b0 = fin_bit | (self.rsv & 0x70) | self.opcode as u8;
        write_header(out, b0, self.payload_len, self.mask_key)
    }
}

/// Append an unmasked, final (FIN set) server frame to `out`.
///
/// Reserves room for the whole frame once, then copies header and payload.
///
/// ```
/// use frame_simd::{encode_server_frame, Opcode};
///
/// let mut out = Vec::new();
/// encode_server_frame(&mut out, Opcode::Text, b"Hello");
/// assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
/// ```
pub fn encode_server_frame(out: &mut Vec<u8>, opcode: Opcode, payload: &[u8]) {
    let mut header = [0; MAX_HEADER_LEN];
    let header_len = encode_header(&mut header, true, opcode, payload_len(payload), None);
    out.reserve(header_len + payload.len());
    out.extend_from_slice(&header[..header_len]);
    out.extend_from_slice(payload);
}

/// Append a masked, final client frame to `out`, masking the payload with `key`.
///
/// Reserves room for the whole frame once and masks the payload in place in `out` with the
/// kernel [`Kernels::detect`] chose: no temporary copy of the payload is made.
///
/// ```
/// use frame_simd::{encode_client_frame, MaskKey, Opcode};
///
/// let mut out = Vec::new();
/// encode_client_frame(&mut out, Opcode::Text, b"Hello", MaskKey([0x37, 0xfa, 0x21, 0x3d]));
/// assert_eq!(out, [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
/// ```
pub fn encode_client_frame(out: &mut Vec<u8>, opcode: Opcode, payload: &[u8], key: MaskKey) {
    let mut header = [0; MAX_HEADER_LEN];
    let header_len = encode_header(&mut header, true, opcode, payload_len(payload), Some(key));
    out.reserve(header_len + payload.len());
    out.extend_from_slice(&header[..header_len]);
    let payload_at = out.len();
    out.extend_from_slice(payload);
    crate::mask::unmask(&Kernels::detect(), &mut out[payload_at..], key, 0);
}

/// A slice length as a wire length: widening, since `usize` is at most 64 bits on every target
/// Rust supports, and below 2^63 because a slice holds at most `isize::MAX` bytes.
fn payload_len(payload: &[u8]) -> u64 {
    payload.len() as u64
}
