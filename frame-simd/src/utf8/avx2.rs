//! The AVX2 UTF-8 kernels: the lookup check of `lookup.rs` on 32-byte vectors (64 bytes per
//! step), alone and fused with the unmask.

use core::arch::x86_64::*;

use super::lookup::{self, Vector};

/// # Safety
/// Each method needs AVX2 on this CPU (and `load`/`store` their `BYTES` bytes), as the
/// trait says; the entry points below enable AVX2 and are reached only through the kernel table.
impl Vector for __m256i {
    const BYTES: usize = 32;

    #[inline(always)]
    unsafe fn load(src: *const u8) -> Self {
        // SAFETY: the caller guarantees 32 readable bytes and AVX2.
        unsafe { _mm256_loadu_si256(src.cast()) }
    }
    #[inline(always)]
    unsafe fn store(self, dst: *mut u8) {
        // SAFETY: the caller guarantees 32 writable bytes and AVX2.
        unsafe { _mm256_storeu_si256(dst.cast(), self) }
    }
    #[inline(always)]
    unsafe fn splat(b: u8) -> Self {
        // SAFETY: AVX (caller).
        unsafe { _mm256_set1_epi8(b as i8) }
    }
    #[inline(always)]
    unsafe fn splat_key(key: [u8; 4]) -> Self {
        // SAFETY: AVX (caller).
        unsafe { _mm256_set1_epi32(i32::from_ne_bytes(key)) }
    }
    #[inline(always)]
    unsafe fn table(t: &[u8; 16]) -> Self {
        // SAFETY: `t` is 16 readable bytes; AVX2 (caller).
        unsafe { _mm256_broadcastsi128_si256(_mm_loadu_si128(t.as_ptr().cast())) }
    }
    #[inline(always)]
    unsafe fn lookup(self, idx: Self) -> Self {
        // SAFETY: AVX2 (caller).
        unsafe { _mm256_shuffle_epi8(self, idx) }
    }
    #[inline(always)]
    unsafe fn and(self, o: Self) -> Self {
        // SAFETY: AVX2 (caller).
        unsafe { _mm256_and_si256(self, o) }
    }
    #[inline(always)]
    unsafe fn or(self, o: Self) -> Self {
        // SAFETY: AVX2 (caller).
        unsafe { _mm256_or_si256(self, o) }
    }
    #[inline(always)]
    unsafe fn xor(self, o: Self) -> Self {
        // SAFETY: AVX2 (caller).
        unsafe { _mm256_xor_si256(self, o) }
    }
    #[inline(always)]
    unsafe fn saturating_sub(self, o: Self) -> Self {
        // SAFETY: AVX2 (caller).
        unsafe { _mm256_subs_epu8(self, o) }
    }
    #[inline(always)]
    unsafe fn high_nibbles(self) -> Self {
        // SAFETY: AVX2 (caller). The 16-bit shift drags bits across bytes; the mask drops them.
        unsafe { _mm256_and_si256(_mm256_srli_epi16::<4>(self), _mm256_set1_epi8(0x0F)) }
    }
    #[inline(always)]
    unsafe fn prev1(self, prev: Self) -> Self {
        // SAFETY: AVX2 (caller). `t` = prev's high lane then self's low lane, so the per-lane
        // byte alignment sees the bytes just before each lane of `self`.
        unsafe { _mm256_alignr_epi8::<15>(self, _mm256_permute2x128_si256::<0x21>(prev, self)) }
    }
    #[inline(always)]
    unsafe fn prev2(self, prev: Self) -> Self {
        // SAFETY: as for `prev1`.
        unsafe { _mm256_alignr_epi8::<14>(self, _mm256_permute2x128_si256::<0x21>(prev, self)) }
    }
    #[inline(always)]
    unsafe fn prev3(self, prev: Self) -> Self {
        // SAFETY: as for `prev1`.
        unsafe { _mm256_alignr_epi8::<13>(self, _mm256_permute2x128_si256::<0x21>(prev, self)) }
    }
    #[inline(always)]
    unsafe fn is_ascii(self) -> bool {
        // SAFETY: AVX2 (caller).
        unsafe { _mm256_movemask_epi8(self) == 0 }
    }
    #[inline(always)]
    unsafe fn is_zero(self) -> bool {
        // SAFETY: AVX (caller).
        unsafe { _mm256_testz_si256(self, self) != 0 }
    }
}

/// Validate complete UTF-8; `Err` holds the length of the longest valid prefix.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn validate(bytes: &[u8]) -> Result<(), usize> {
    // SAFETY: AVX2 is enabled here.
    unsafe { lookup::validate::<__m256i>(bytes) }
}

/// Unmask all of `buf` and validate `buf[..valid_len]` in one pass.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn unmask_validate(
    buf: &mut [u8],
    key: [u8; 4],
    valid_len: usize,
) -> Result<(), usize> {
    // SAFETY: AVX2 is enabled here, and `mask::avx2::unmask` needs nothing more.
    unsafe { lookup::unmask_validate::<__m256i>(buf, key, valid_len, crate::mask::avx2::unmask) }
}
