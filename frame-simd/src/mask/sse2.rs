//! SSE2 unmask: XOR 16-byte blocks, four per loop turn, with the key repeated four times.
//!
//! Payloads of 512 bytes and more first XOR a word-wise head up to a 16-byte boundary so the
//! stores are aligned; the last 0..16 bytes go a word at a time. Blocks are multiples of 4
//! bytes, so the key is rotated at most once.

use core::arch::x86_64::*;

use super::{rotate, unmask_words};

/// From this length on, align the blocks.
const ALIGN_FROM: usize = 512;

/// XOR `buf` with `key` (`buf[0]` pairs with `key[0]`).
///
/// # Safety
/// The CPU must support SSE2 (every x86_64 CPU does; the kernel table checks anyway).
#[target_feature(enable = "sse2")]
pub(crate) unsafe fn unmask(buf: &mut [u8], key: [u8; 4]) {
    const V: usize = 16;
    let (mut buf, mut key) = (buf, key);
    if buf.len() >= ALIGN_FROM {
        let head = buf.as_ptr().align_offset(V).min(buf.len());
        let (head, body) = buf.split_at_mut(head);
        unmask_words(head, key);
        key = rotate(key, head.len());
        buf = body;
    }
    let k = _mm_set1_epi32(i32::from_ne_bytes(key));
    let mut blocks = buf.chunks_exact_mut(4 * V);
    for block in &mut blocks {
        let p = block.as_mut_ptr().cast::<__m128i>();
        // SAFETY: `block` is 64 writable bytes, four vectors (unaligned access allowed).
        unsafe {
            let a = _mm_xor_si128(_mm_loadu_si128(p), k);
            let b = _mm_xor_si128(_mm_loadu_si128(p.add(1)), k);
            let c = _mm_xor_si128(_mm_loadu_si128(p.add(2)), k);
            let d = _mm_xor_si128(_mm_loadu_si128(p.add(3)), k);
            _mm_storeu_si128(p, a);
            _mm_storeu_si128(p.add(1), b);
            _mm_storeu_si128(p.add(2), c);
            _mm_storeu_si128(p.add(3), d);
        }
    }
    let mut vectors = blocks.into_remainder().chunks_exact_mut(V);
    for v in &mut vectors {
        let p = v.as_mut_ptr().cast::<__m128i>();
        // SAFETY: `v` is 16 writable bytes.
        unsafe { _mm_storeu_si128(p, _mm_xor_si128(_mm_loadu_si128(p), k)) };
    }
    unmask_words(vectors.into_remainder(), key);
}

/// XOR `buf` with `key` 16 bytes at a time, then words, with no runtime dispatch: SSE2 is part of
/// the x86_64 baseline, enabled at compile time for every x86_64 target.
///
/// (Storing an overlapping last vector instead of the word tail was 3x slower at 125 B when the
/// same payload is touched again soon after: the next partly overlapping load cannot be
/// forwarded from the pending store.)
#[inline(always)]
pub(crate) fn unmask_short(buf: &mut [u8], key: [u8; 4]) {
    let mut vectors = buf.chunks_exact_mut(16);
    for v in &mut vectors {
        let p = v.as_mut_ptr().cast::<__m128i>();
        // SAFETY: `v` is 16 writable bytes; SSE2 is enabled for every x86_64 target.
        unsafe {
            let k = _mm_set1_epi32(i32::from_ne_bytes(key));
            _mm_storeu_si128(p, _mm_xor_si128(_mm_loadu_si128(p), k));
        }
    }
    unmask_words(vectors.into_remainder(), key);
}
