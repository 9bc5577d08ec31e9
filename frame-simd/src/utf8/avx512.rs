//! The AVX-512 (F + BW) UTF-8 kernels: the lookup check of `lookup.rs` on 64-byte vectors (128
//! bytes per step), alone and fused with the unmask.

use core::arch::x86_64::*;

use super::lookup::{self, Vector};

/// # Safety
/// Each method needs AVX-512 F + BW on this CPU (and `load`/`store` their `BYTES` bytes), as the
/// trait says; the entry points below enable AVX-512 F + BW and are reached only through the kernel table.
impl Vector for __m512i {
    const BYTES: usize = 64;

    #[inline(always)]
    unsafe fn load(src: *const u8) -> Self {
        // SAFETY: the caller guarantees 64 readable bytes and AVX-512 F.
        unsafe { _mm512_loadu_si512(src.cast()) }
    }
    #[inline(always)]
    unsafe fn store(self, dst: *mut u8) {
        // SAFETY: the caller guarantees 64 writable bytes and AVX-512 F.
        unsafe { _mm512_storeu_si512(dst.cast(), self) }
    }
    #[inline(always)]
    unsafe fn splat(b: u8) -> Self {
        // SAFETY: AVX-512 F (caller).
        unsafe { _mm512_set1_epi8(b as i8) }
    }
    #[inline(always)]
    unsafe fn splat_key(key: [u8; 4]) -> Self {
        // SAFETY: AVX-512 F (caller).
        unsafe { _mm512_set1_epi32(i32::from_ne_bytes(key)) }
    }
    #[inline(always)]
    unsafe fn table(t: &[u8; 16]) -> Self {
        // SAFETY: `t` is 16 readable bytes; AVX-512 F (caller).
        unsafe { _mm512_broadcast_i32x4(_mm_loadu_si128(t.as_ptr().cast())) }
    }
    #[inline(always)]
    unsafe fn lookup(self, idx: Self) -> Self {
        // SAFETY: AVX-512 BW (caller).
        unsafe { _mm512_shuffle_epi8(self, idx) }
    }
    #[inline(always)]
    unsafe fn and(self, o: Self) -> Self {
        // SAFETY: AVX-512 F (caller).
        unsafe { _mm512_and_si512(self, o) }
    }
    #[inline(always)]
    unsafe fn or(self, o: Self) -> Self {
        // SAFETY: AVX-512 F (caller).
        unsafe { _mm512_or_si512(self, o) }
    }
    #[inline(always)]
    unsafe fn xor(self, o: Self) -> Self {
        // SAFETY: AVX-512 F (caller).
        unsafe { _mm512_xor_si512(self, o) }
    }
    #[inline(always)]
    unsafe fn saturating_sub(self, o: Self) -> Self {
        // SAFETY: AVX-512 BW (caller).
        unsafe { _mm512_subs_epu8(self, o) }
    }
    #[inline(always)]
    unsafe fn high_nibbles(self) -> Self {
        // SAFETY: AVX-512 BW (caller). The 16-bit shift drags bits across bytes; the mask
        // drops them.
        unsafe { _mm512_and_si512(_mm512_srli_epi16::<4>(self), _mm512_set1_epi8(0x0F)) }
    }
    #[inline(always)]
    unsafe fn prev1(self, prev: Self) -> Self {
        // SAFETY: AVX-512 F + BW (caller). `t` holds, lane by lane, the lane before each lane
        // of `self` (prev's last lane first), so the per-lane byte alignment reaches back.
        unsafe { _mm512_alignr_epi8::<15>(self, _mm512_alignr_epi64::<6>(self, prev)) }
    }
    #[inline(always)]
    unsafe fn prev2(self, prev: Self) -> Self {
        // SAFETY: as for `prev1`.
        unsafe { _mm512_alignr_epi8::<14>(self, _mm512_alignr_epi64::<6>(self, prev)) }
    }
    #[inline(always)]
    unsafe fn prev3(self, prev: Self) -> Self {
        // SAFETY: as for `prev1`.
        unsafe { _mm512_alignr_epi8::<13>(self, _mm512_alignr_epi64::<6>(self, prev)) }
    }
    #[inline(always)]
    unsafe fn is_ascii(self) -> bool {
        // SAFETY: AVX-512 BW (caller).
        unsafe { _mm512_movepi8_mask(self) == 0 }
    }
    #[inline(always)]
    unsafe fn is_zero(self) -> bool {
        // SAFETY: AVX-512 F (caller).
        unsafe { _mm512_test_epi64_mask(self, self) == 0 }
    }
}

/// Validate complete UTF-8; `Err` holds the length of the longest valid prefix.
///
/// # Safety
/// The CPU must support AVX-512 F and BW.
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn validate(bytes: &[u8]) -> Result<(), usize> {
    // SAFETY: AVX-512 F + BW are enabled here.
    unsafe { lookup::validate::<__m512i>(bytes) }
}

/// Unmask all of `buf` and validate `buf[..valid_len]` in one pass.
///
/// # Safety
/// The CPU must support AVX-512 F and BW.
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn unmask_validate(
    buf: &mut [u8],
    key: [u8; 4],
    valid_len: usize,
) -> Result<(), usize> {
    // SAFETY: AVX-512 F + BW are enabled here, all `mask::avx512::unmask` needs.
    unsafe { lookup::unmask_validate::<__m512i>(buf, key, valid_len, crate::mask::avx512::unmask) }
}
