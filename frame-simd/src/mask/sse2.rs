//! SSE2 unmask: XOR 16-byte blocks with the key repeated four times.
//!
//! The head up to the first 16-byte boundary and the tail are done a word at a time; the key is
//! rotated once by the head's length, and since blocks are multiples of 4 bytes it then stays put.

use core::arch::x86_64::*;

use super::{rotate, unmask_words};

/// XOR `buf` with `key` (`buf[0]` pairs with `key[0]`).
///
/// # Safety
/// The CPU must support SSE2 (every x86_64 CPU does; the kernel table checks anyway).
#[target_feature(enable = "sse2")]
pub(crate) unsafe fn unmask(buf: &mut [u8], key: [u8; 4]) {
    const V: usize = 16;
    if buf.len() < V {
        return unmask_words(buf, key);
    }
    let head = buf.as_ptr().align_offset(V).min(buf.len());
    let (head, body) = buf.split_at_mut(head);
    unmask_words(head, key);
    let key = rotate(key, head.len());
    let k = _mm_set1_epi32(i32::from_ne_bytes(key));
    let mut blocks = body.chunks_exact_mut(4 * V);
    for block in &mut blocks {
        let p = block.as_mut_ptr().cast::<__m128i>();
        // SAFETY: `block` is 64 writable bytes starting at a 16-byte boundary (the head ended
        // there and every block is a multiple of 16), so `p..p+4` are four aligned vectors.
        unsafe {
            let a = _mm_xor_si128(_mm_load_si128(p), k);
            let b = _mm_xor_si128(_mm_load_si128(p.add(1)), k);
            let c = _mm_xor_si128(_mm_load_si128(p.add(2)), k);
            let d = _mm_xor_si128(_mm_load_si128(p.add(3)), k);
            _mm_store_si128(p, a);
            _mm_store_si128(p.add(1), b);
            _mm_store_si128(p.add(2), c);
            _mm_store_si128(p.add(3), d);
        }
    }
    let mut vectors = blocks.into_remainder().chunks_exact_mut(V);
    for v in &mut vectors {
        let p = v.as_mut_ptr().cast::<__m128i>();
        // SAFETY: `v` is 16 writable bytes at a 16-byte boundary.
        unsafe { _mm_store_si128(p, _mm_xor_si128(_mm_load_si128(p), k)) };
    }
    unmask_words(vectors.into_remainder(), key);
}
