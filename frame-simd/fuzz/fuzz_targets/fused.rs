//! Fuzz target `fused`: see `frame_simd_fuzz::fused` for the invariants it asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| frame_simd_fuzz::fused(data));
