//! Fuzz target `sio_packet`: see `gateway_fuzz::sio_packet` for the invariants it asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway_fuzz::sio_packet::check(data));
