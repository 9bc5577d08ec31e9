//! Fuzz target `nats`: see `gateway_fuzz::nats` for the invariants it asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway_fuzz::nats::check(data));
