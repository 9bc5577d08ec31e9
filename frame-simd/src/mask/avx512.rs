//! AVX-512 (F + BW) unmask: XOR 64-byte blocks, four per loop turn, aligned to 64 bytes.
//!
//! Below 4 KiB, and for the head up to the 64-byte boundary and the tail, it is the AVX2 kernel:
//! in L1 the wider vectors gain nothing. Masked 512-bit loads and stores would cover heads and
//! tails without branches, but a first version built on them took twice as long as AVX2 at
//! 125 B on the AMD EPYC we measured on.

use core::arch::x86_64::*;

use super::{avx2, rotate};

/// Below this length, the AVX2 kernel does all the work.
const WIDE_FROM: usize = 4096;

/// XOR `buf` with `key` (`buf[0]` pairs with `key[0]`).
///
/// # Safety
/// The CPU must support AVX-512 F and BW (and so AVX2).
#[target_feature(enable = "avx2,avx512f,avx512bw")]
pub(crate) unsafe fn unmask(buf: &mut [u8], key: [u8; 4]) {
    const V: usize = 64;
    if buf.len() < WIDE_FROM {
        // SAFETY: AVX2 is enabled here.
        return unsafe { avx2::unmask(buf, key) };
    }
    let head = buf.as_ptr().align_offset(V).min(buf.len());
    let (head, body) = buf.split_at_mut(head);
    // SAFETY: AVX2 is enabled here.
    unsafe { avx2::unmask(head, key) };
    let key = rotate(key, head.len());
    let k = _mm512_set1_epi32(i32::from_ne_bytes(key));
    let mut blocks = body.chunks_exact_mut(4 * V);
    for block in &mut blocks {
        let p = block.as_mut_ptr().cast::<__m512i>();
        // SAFETY: `block` is 256 writable bytes starting at a 64-byte boundary (the head ended
        // there and blocks are multiples of 64), so `p..p+4` are four aligned vectors.
        unsafe {
            let a = _mm512_xor_si512(_mm512_load_si512(p), k);
            let b = _mm512_xor_si512(_mm512_load_si512(p.add(1)), k);
            let c = _mm512_xor_si512(_mm512_load_si512(p.add(2)), k);
            let d = _mm512_xor_si512(_mm512_load_si512(p.add(3)), k);
            _mm512_store_si512(p, a);
            _mm512_store_si512(p.add(1), b);
            _mm512_store_si512(p.add(2), c);
            _mm512_store_si512(p.add(3), d);
        }
    }
    let mut vectors = blocks.into_remainder().chunks_exact_mut(V);
    for v in &mut vectors {
        let p = v.as_mut_ptr().cast::<__m512i>();
        // SAFETY: `v` is 64 writable bytes at a 64-byte boundary.
        unsafe { _mm512_store_si512(p, _mm512_xor_si512(_mm512_load_si512(p), k)) };
    }
    // SAFETY: AVX2 is enabled here.
    unsafe { avx2::unmask(vectors.into_remainder(), key) };
}
