//! Fuzz target `unmask`: see `frame_simd_fuzz::unmask` for the invariants it asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| frame_simd_fuzz::unmask(data));
