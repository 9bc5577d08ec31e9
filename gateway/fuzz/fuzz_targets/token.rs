//! Fuzz target `token`: see `gateway_fuzz::token` for the invariants it asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway_fuzz::token::check(data));
