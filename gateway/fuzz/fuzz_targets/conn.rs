//! Fuzz target `conn`: see `gateway_fuzz::conn` for the invariants it asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway_fuzz::conn::check(data));
