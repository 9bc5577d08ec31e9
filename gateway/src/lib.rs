//! The gateway as a library: the binary (`main.rs`) wires these parts together, and tests and
//! benchmarks reach the internals through here.
//!
//! The data path, in module order: [`driver`] (sockets, readiness) -> [`shard`] (one event loop
//! per core: accept, read into the shard buffer, write queues, timers) -> [`conn`] (the sans-IO
//! connection: HTTP request, upgrade handshake, frames, close handshake).
#![deny(unsafe_code)]

pub mod api;
pub mod auth;
pub mod config;
pub mod conn;
#[allow(unsafe_code)]
pub mod driver;
pub mod metrics;
pub mod protocol;
pub mod router;
pub mod shard;
