//! AVX-512 (F + BW) unmask: XOR 64-byte blocks with the key repeated sixteen times.
//!
//! The head up to the first 64-byte boundary and the tail are single masked operations: a masked
//! load or store touches only the bytes its mask selects (the others are neither read nor
//! written, and cannot fault), so no byte outside the slice is accessed and short payloads take
//! no scalar loop at all.

use core::arch::x86_64::*;

use super::rotate;

/// A mask selecting the first `n` bytes of a vector (`n <= 64`).
#[inline(always)]
fn first(n: usize) -> __mmask64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// XOR the first `n <= 64` bytes at `p` with `k`.
///
/// # Safety
/// AVX-512 F + BW; `p..p+n` is writable.
#[inline(always)]
unsafe fn xor_masked(p: *mut u8, n: usize, k: __m512i) {
    let m = first(n);
    // SAFETY: the caller guarantees `p..p+n`; bytes outside the mask are not accessed.
    unsafe {
        let v = _mm512_maskz_loadu_epi8(m, p.cast::<i8>());
        _mm512_mask_storeu_epi8(p.cast::<i8>(), m, _mm512_xor_si512(v, k));
    }
}

/// XOR `buf` with `key` (`buf[0]` pairs with `key[0]`).
///
/// # Safety
/// The CPU must support AVX-512 F and BW.
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn unmask(buf: &mut [u8], key: [u8; 4]) {
    const V: usize = 64;
    let len = buf.len();
    let p = buf.as_mut_ptr();
    let k = _mm512_set1_epi32(i32::from_ne_bytes(key));
    if len <= V {
        // SAFETY: `p..p+len` is `buf`.
        unsafe { xor_masked(p, len, k) };
        return;
    }
    let head = p.align_offset(V).min(len);
    // SAFETY: `head <= len`.
    unsafe { xor_masked(p, head, k) };
    let k = _mm512_set1_epi32(i32::from_ne_bytes(rotate(key, head)));
    let mut blocks = buf[head..].chunks_exact_mut(4 * V);
    for block in &mut blocks {
        let p = block.as_mut_ptr().cast::<__m512i>();
        // SAFETY: `block` is 256 writable bytes starting at a 64-byte boundary.
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
    let rest = blocks.into_remainder();
    let mut vectors = rest.chunks_exact_mut(V);
    for v in &mut vectors {
        let p = v.as_mut_ptr().cast::<__m512i>();
        // SAFETY: `v` is 64 writable bytes at a 64-byte boundary.
        unsafe { _mm512_store_si512(p, _mm512_xor_si512(_mm512_load_si512(p), k)) };
    }
    let tail = vectors.into_remainder();
    // SAFETY: `tail` is writable and shorter than a vector.
    unsafe { xor_masked(tail.as_mut_ptr(), tail.len(), k) };
}
