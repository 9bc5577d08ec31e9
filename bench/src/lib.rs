//! Benchmarks and the comparison harness.
//!
//! `peers` holds the servers the gateway is compared with: each speaks the bench protocol
//! (`bench/PROTOCOL.md`) so one load generator drives them all with the same run.
#![forbid(unsafe_code)]

pub mod peers;
