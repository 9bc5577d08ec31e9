//! Fuzz target `http_head`: see `gateway_fuzz::http_head` for the invariants it asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway_fuzz::http_head::check(data));
