//! Fuzz target `query`: see `gateway_fuzz::query` for the invariants it asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway_fuzz::query::check(data));
