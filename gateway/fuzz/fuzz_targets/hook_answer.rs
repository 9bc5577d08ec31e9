//! Fuzz target `hook_answer`: see `gateway_fuzz::hook_answer` for the invariants it asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway_fuzz::hook_answer::check(data));
