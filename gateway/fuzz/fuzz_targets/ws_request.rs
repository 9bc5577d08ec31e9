//! Fuzz target `ws_request`: see `gateway_fuzz::ws_request` for the invariants it asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway_fuzz::ws_request::check(data));
