//! Fuzz target `broker`: see `gateway_fuzz::broker` for the invariants it asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway_fuzz::broker::check(data));
