//! AVX2 unmask: XOR 32-byte blocks, four per loop turn, with the key repeated eight times.
//!
//! The blocks are aligned to 32 bytes (stores that straddle cache lines are slow). The unaligned
//! first and last 32 bytes are loaded before anything is stored and stored last, overlapping the
//! aligned blocks: shared bytes get the same value twice, so there is no head or tail loop.
//! Each vector uses the key rotated to its own offset.

use core::arch::x86_64::*;

use super::rotate;

/// XOR `buf` with `key` (`buf[0]` pairs with `key[0]`).
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn unmask(buf: &mut [u8], key: [u8; 4]) {
    const V: usize = 32;
    let len = buf.len();
    if len < V {
        return super::unmask_short(buf, key);
    }
    let p = buf.as_mut_ptr();
    let splat = |n: usize| _mm256_set1_epi32(i32::from_ne_bytes(rotate(key, n)));
    let head = p.align_offset(V).min(V);
    let k = splat(head);
    // SAFETY: `len >= 32`: the first and last 32 bytes are inside `buf`, and every aligned block
    // below starts at `i >= head` with `i + 32 <= len` (four blocks: `i + 128 <= len`) and at a
    // 32-byte boundary (`p + head` is one, blocks are 32 bytes). Only `p` touches `buf` here.
    unsafe {
        let first = _mm256_xor_si256(_mm256_loadu_si256(p.cast()), splat(0));
        let last = _mm256_xor_si256(_mm256_loadu_si256(p.add(len - V).cast()), splat(len - V));
        let mut i = head;
        while i + 4 * V <= len {
            let q = p.add(i).cast::<__m256i>();
            let a = _mm256_xor_si256(_mm256_load_si256(q), k);
            let b = _mm256_xor_si256(_mm256_load_si256(q.add(1)), k);
            let c = _mm256_xor_si256(_mm256_load_si256(q.add(2)), k);
            let d = _mm256_xor_si256(_mm256_load_si256(q.add(3)), k);
            _mm256_store_si256(q, a);
            _mm256_store_si256(q.add(1), b);
            _mm256_store_si256(q.add(2), c);
            _mm256_store_si256(q.add(3), d);
            i += 4 * V;
        }
        while i + V <= len {
            let q = p.add(i).cast::<__m256i>();
            _mm256_store_si256(q, _mm256_xor_si256(_mm256_load_si256(q), k));
            i += V;
        }
        _mm256_storeu_si256(p.cast(), first);
        _mm256_storeu_si256(p.add(len - V).cast(), last);
    }
}
