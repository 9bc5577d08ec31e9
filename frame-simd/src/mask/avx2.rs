//! AVX2 unmask: XOR 32-byte blocks, four per loop turn, with the key repeated eight times.
//!
//! The head up to the first 32-byte boundary and the tail are done a word at a time; the key is
//! rotated once by the head's length, and since blocks are multiples of 4 bytes it then stays put.
//! Aligned stores matter once the payload no longer fits in L1.

use core::arch::x86_64::*;

use super::{rotate, unmask_words};

/// XOR `buf` with `key` (`buf[0]` pairs with `key[0]`).
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn unmask(buf: &mut [u8], key: [u8; 4]) {
    const V: usize = 32;
    if buf.len() < V {
        return unmask_words(buf, key);
    }
    let head = buf.as_ptr().align_offset(V).min(buf.len());
    let (head, body) = buf.split_at_mut(head);
    unmask_words(head, key);
    let key = rotate(key, head.len());
    let k = _mm256_set1_epi32(i32::from_ne_bytes(key));
    let mut blocks = body.chunks_exact_mut(4 * V);
    for block in &mut blocks {
        let p = block.as_mut_ptr().cast::<__m256i>();
        // SAFETY: `block` is 128 writable bytes starting at a 32-byte boundary (the head ended
        // there and every block is a multiple of 32), so `p..p+4` are four aligned vectors.
        unsafe {
            let a = _mm256_xor_si256(_mm256_load_si256(p), k);
            let b = _mm256_xor_si256(_mm256_load_si256(p.add(1)), k);
            let c = _mm256_xor_si256(_mm256_load_si256(p.add(2)), k);
            let d = _mm256_xor_si256(_mm256_load_si256(p.add(3)), k);
            _mm256_store_si256(p, a);
            _mm256_store_si256(p.add(1), b);
            _mm256_store_si256(p.add(2), c);
            _mm256_store_si256(p.add(3), d);
        }
    }
    let mut vectors = blocks.into_remainder().chunks_exact_mut(V);
    for v in &mut vectors {
        let p = v.as_mut_ptr().cast::<__m256i>();
        // SAFETY: `v` is 32 writable bytes at a 32-byte boundary.
        unsafe { _mm256_store_si256(p, _mm256_xor_si256(_mm256_load_si256(p), k)) };
    }
    unmask_words(vectors.into_remainder(), key);
}
