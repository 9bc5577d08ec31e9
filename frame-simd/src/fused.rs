//! The fused pass: unmask and UTF-8-validate a text payload chunk in one pass over the bytes,
//! with results identical to [`crate::mask::unmask`] followed by [`crate::Validator::feed`].
//!
//! The chunk is cut as [`crate::Validator::feed`] cuts it (head, body, tail); the head and the
//! tail (at most 3 bytes each) are unmasked and checked in scalar code, the body goes to the fused
//! kernel of the [`Kernels`] table, which XORs each block and validates it while it is in a register.

use crate::mask::{self, MaskKey};
use crate::utf8::{self, Utf8Error, Validator};
use crate::Kernels;

/// Unmask `buf` in place (key phase `phase`) and feed it to `v`. The whole chunk is unmasked even
/// when validation fails.
///
/// ```
/// use frame_simd::{fused, mask, utf8, Kernels, MaskKey, Validator};
///
/// let k = Kernels::detect();
/// // A masked text payload that arrives in two reads.
/// let key = MaskKey([0x37, 0xfa, 0x21, 0x3d]);
/// let mut payload = "héllo wörld".as_bytes().to_vec();
/// mask::unmask(&k, &mut payload, key, 0); // mask it, as a client would
/// let (first, second) = payload.split_at_mut(2); // the cut falls inside "é"
///
/// // Per connection: a 16-byte validator carried from read to read.
/// let mut v = Validator::new();
/// fused::unmask_validate(&k, first, key, 0, &mut v).unwrap(); // phase 0: payload byte 0
/// fused::unmask_validate(&k, second, key, 2, &mut v).unwrap(); // phase 2: payload byte 2
/// v.finish().unwrap(); // the message ended on a code point boundary
/// assert_eq!(payload, "héllo wörld".as_bytes());
///
/// // A whole message at once; the error offset is std's `valid_up_to`.
/// assert_eq!(utf8::validate(&k, b"ok \xED\xA0\x80").unwrap_err().offset, 3); // a surrogate
/// ```
pub fn unmask_validate(
    k: &Kernels,
    buf: &mut [u8],
    key: MaskKey,
    phase: usize,
    v: &mut Validator,
) -> Result<(), Utf8Error> {
    let key = key.rotated(phase);
    let head = v.carry_need().min(buf.len());
    let (head, rest) = buf.split_at_mut(head);
    mask::scalar::unmask(head, key.0);
    let key = key.rotated(head.len());
    if let Err(e) = v.feed_head(head) {
        mask::unmask(k, rest, key, 0);
        return Err(e);
    }
    if rest.is_empty() {
        return Ok(());
    }
    // Find the tail from the unmasked values of the last bytes without writing them yet.
    let mut last = [0u8; 3];
    let n = rest.len().min(3);
    let start = rest.len() - n;
    for (j, b) in last[..n].iter_mut().enumerate() {
        *b = rest[start + j] ^ key.0[(start + j) % 4];
    }
    let cut = rest.len() - utf8::tail_len(&last[..n]);
    // SAFETY: `k.fused` is a kernel whose target features `Kernels::with` checked on this CPU
    // (or the scalar one); `cut <= rest.len()`.
    let verdict = unsafe { (k.fused)(rest, key.0, cut) };
    v.on_body(verdict, cut)?;
    v.feed_tail(&rest[cut..])
}

/// The scalar fused kernel: unmask, then validate (two passes; the reference for the others).
pub(crate) fn scalar(buf: &mut [u8], key: [u8; 4], valid_len: usize) -> Result<(), usize> {
    mask::scalar::unmask(buf, key);
    utf8::scalar::validate(&buf[..valid_len])
}

/// The SSE2 fused kernel: SSE2 has no byte shuffle for the lookup tables, so this is the SSE2
/// unmask followed by the scalar validator.
///
/// # Safety
/// The CPU must support SSE2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
pub(crate) unsafe fn sse2(buf: &mut [u8], key: [u8; 4], valid_len: usize) -> Result<(), usize> {
    // SAFETY: same target features as this function.
    unsafe { mask::sse2::unmask(buf, key) };
    utf8::scalar::validate(&buf[..valid_len])
}
