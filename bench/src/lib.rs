//! Benchmarks and the comparison harness.
//!
//! `compare` runs the gateway and its peers under the same load and writes `RESULTS.md`;
//! `peers` holds the servers the gateway is compared with: each speaks the bench protocol
//! (`bench/PROTOCOL.md`) so one load generator drives them all with the same run; `floor` is
//! the cheapest client on this host, the floor a load generator's own cost is set against.
#![forbid(unsafe_code)]

pub mod compare;
pub mod floor;
pub mod peers;
