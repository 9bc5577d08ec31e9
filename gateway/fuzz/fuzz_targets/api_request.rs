//! Fuzz target `api_request`: see `gateway_fuzz::api_request` for the invariants it asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway_fuzz::api_request::check(data));
