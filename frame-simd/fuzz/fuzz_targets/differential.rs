//! Fuzz target `differential`: see `frame_simd_fuzz::differential` for what it compares.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| frame_simd_fuzz::differential(data));
