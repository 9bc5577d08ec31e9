//! The NEON UTF-8 kernels: the lookup check of `lookup.rs` on 16-byte vectors (32 bytes per
//! step), alone and fused with the unmask.

use core::arch::aarch64::*;

use super::lookup::{self, Vector};

/// # Safety
/// Each method needs NEON on this CPU (and `load`/`store` their `BYTES` bytes), as the
/// trait says; the entry points below enable NEON and are reached only through the kernel table.
impl Vector for uint8x16_t {
    const BYTES: usize = 16;

    #[inline(always)]
    unsafe fn load(src: *const u8) -> Self {
        // SAFETY: the caller guarantees 16 readable bytes and NEON.
        unsafe { vld1q_u8(src) }
    }
    #[inline(always)]
    unsafe fn store(self, dst: *mut u8) {
        // SAFETY: the caller guarantees 16 writable bytes and NEON.
        unsafe { vst1q_u8(dst, self) }
    }
    #[inline(always)]
    unsafe fn splat(b: u8) -> Self {
        // SAFETY: NEON (caller).
        unsafe { vdupq_n_u8(b) }
    }
    #[inline(always)]
    unsafe fn splat_key(key: [u8; 4]) -> Self {
        // SAFETY: NEON (caller).
        unsafe { vreinterpretq_u8_u32(vdupq_n_u32(u32::from_ne_bytes(key))) }
    }
    #[inline(always)]
    unsafe fn table(t: &[u8; 16]) -> Self {
        // SAFETY: `t` is 16 readable bytes; NEON (caller).
        unsafe { vld1q_u8(t.as_ptr()) }
    }
    #[inline(always)]
    unsafe fn lookup(self, idx: Self) -> Self {
        // SAFETY: NEON (caller).
        unsafe { vqtbl1q_u8(self, idx) }
    }
    #[inline(always)]
    unsafe fn and(self, o: Self) -> Self {
        // SAFETY: NEON (caller).
        unsafe { vandq_u8(self, o) }
    }
    #[inline(always)]
    unsafe fn or(self, o: Self) -> Self {
        // SAFETY: NEON (caller).
        unsafe { vorrq_u8(self, o) }
    }
    #[inline(always)]
    unsafe fn xor(self, o: Self) -> Self {
        // SAFETY: NEON (caller).
        unsafe { veorq_u8(self, o) }
    }
    #[inline(always)]
    unsafe fn saturating_sub(self, o: Self) -> Self {
        // SAFETY: NEON (caller).
        unsafe { vqsubq_u8(self, o) }
    }
    #[inline(always)]
    unsafe fn high_nibbles(self) -> Self {
        // SAFETY: NEON (caller).
        unsafe { vshrq_n_u8::<4>(self) }
    }
    #[inline(always)]
    unsafe fn prev1(self, prev: Self) -> Self {
        // SAFETY: NEON (caller). The last byte of `prev`, then the first 15 of `self`.
        unsafe { vextq_u8::<15>(prev, self) }
    }
    #[inline(always)]
    unsafe fn prev2(self, prev: Self) -> Self {
        // SAFETY: NEON (caller).
        unsafe { vextq_u8::<14>(prev, self) }
    }
    #[inline(always)]
    unsafe fn prev3(self, prev: Self) -> Self {
        // SAFETY: NEON (caller).
        unsafe { vextq_u8::<13>(prev, self) }
    }
    #[inline(always)]
    unsafe fn is_ascii(self) -> bool {
        // SAFETY: NEON (caller).
        unsafe { vmaxvq_u8(self) < 0x80 }
    }
    #[inline(always)]
    unsafe fn is_zero(self) -> bool {
        // SAFETY: NEON (caller).
        unsafe { vmaxvq_u8(self) == 0 }
    }
}

/// Validate complete UTF-8; `Err` holds the length of the longest valid prefix.
///
/// # Safety
/// The CPU must support NEON.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn validate(bytes: &[u8]) -> Result<(), usize> {
    // SAFETY: NEON is enabled here.
    unsafe { lookup::validate::<uint8x16_t>(bytes) }
}

/// Unmask all of `buf` and validate `buf[..valid_len]` in one pass.
///
/// # Safety
/// The CPU must support NEON.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn unmask_validate(
    buf: &mut [u8],
    key: [u8; 4],
    valid_len: usize,
) -> Result<(), usize> {
    // SAFETY: NEON is enabled here, all `mask::neon::unmask` needs.
    unsafe { lookup::unmask_validate::<uint8x16_t>(buf, key, valid_len, crate::mask::neon::unmask) }
}
