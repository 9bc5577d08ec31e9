//! NEON unmask: XOR 16-byte blocks, four per loop turn, with the key repeated four times.
//! Unaligned loads cost nothing extra on aarch64, so there is no alignment head.

use core::arch::aarch64::*;

use super::unmask_words;

/// XOR `buf` with `key` (`buf[0]` pairs with `key[0]`).
///
/// # Safety
/// The CPU must support NEON.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn unmask(buf: &mut [u8], key: [u8; 4]) {
    const V: usize = 16;
    let k = vreinterpretq_u8_u32(vdupq_n_u32(u32::from_ne_bytes(key)));
    let mut blocks = buf.chunks_exact_mut(4 * V);
    for block in &mut blocks {
        let p = block.as_mut_ptr();
        // SAFETY: `block` is 64 writable bytes.
        unsafe {
            let a = veorq_u8(vld1q_u8(p), k);
            let b = veorq_u8(vld1q_u8(p.add(V)), k);
            let c = veorq_u8(vld1q_u8(p.add(2 * V)), k);
            let d = veorq_u8(vld1q_u8(p.add(3 * V)), k);
            vst1q_u8(p, a);
            vst1q_u8(p.add(V), b);
            vst1q_u8(p.add(2 * V), c);
            vst1q_u8(p.add(3 * V), d);
        }
    }
    let mut vectors = blocks.into_remainder().chunks_exact_mut(V);
    for v in &mut vectors {
        let p = v.as_mut_ptr();
        // SAFETY: `v` is 16 writable bytes.
        unsafe { vst1q_u8(p, veorq_u8(vld1q_u8(p), k)) };
    }
    unmask_words(vectors.into_remainder(), key);
}
