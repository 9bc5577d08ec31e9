//! Fuzz target `utf8`: see `frame_simd_fuzz::utf8` for the invariants it asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| frame_simd_fuzz::utf8(data));
