//! Frame encoders: server frames (unmasked) and client frames (masked with a caller key).
//!
//! Headers are written into a caller buffer of [`MAX_HEADER_LEN`] bytes; the `encode_*_frame`
//! helpers append a whole frame to a `Vec` for callers that own one (tests, loadgen, broadcast
//! buffers that are encoded once and shared).

use crate::header::Opcode;
use crate::mask::MaskKey;

/// The longest frame header: 2 bytes, 8 bytes of extended length, 4 bytes of mask key.
pub const MAX_HEADER_LEN: usize = 14;

/// Write a header with the minimal length encoding into `out`; returns its length.
pub fn encode_header(
    out: &mut [u8; MAX_HEADER_LEN],
    fin: bool,
    opcode: Opcode,
    payload_len: u64,
    mask_key: Option<MaskKey>,
) -> usize {
    let _ = (out, fin, opcode, payload_len, mask_key);
    todo!()
}

/// Append an unmasked, final (FIN set) server frame to `out`.
pub fn encode_server_frame(out: &mut Vec<u8>, opcode: Opcode, payload: &[u8]) {
    let _ = (out, opcode, payload);
    todo!()
}

/// Append a masked, final client frame to `out`, masking the payload with `key`.
pub fn encode_client_frame(out: &mut Vec<u8>, opcode: Opcode, payload: &[u8], key: MaskKey) {
    let _ = (out, opcode, payload, key);
    todo!()
}
