//! `loadgen`: the load generator for WebSocket servers. Thread-per-core mio clients drive sans-IO
//! connections built on `frame-simd`; open-loop schedules measure latency from the intended send
//! time; results carry HdrHistograms so runs from several processes merge exactly.
#![forbid(unsafe_code)]

pub mod adapter;
pub mod capacity;
pub mod cli;
pub mod client;
pub mod clock;
pub mod exec;
pub mod expect;
pub mod merge;
pub mod misbehave;
pub mod payload;
pub mod plan;
pub mod report;
pub mod run;
pub mod stats;
pub mod sysinfo;
pub mod target;
pub mod tls;
pub mod watch;
pub mod worker;
