//! What the workspace's socket tests need to run a server process: the gateway started on free
//! loopback ports ([`Gateway`]), any server that announces `listening on <addr>` ([`Process`] and
//! [`Process::await_listening`]), the gateway binary for packages other than the gateway
//! ([`gateway_binary`]), the environment a client process needs to reach loopback, and a test
//! certificate authority for TLS ([`TestCa`]).
//!
//! Every wait is bounded, every process is stopped by the PID it was started with (never by name),
//! and what a server wrote to stderr is kept for the failure message.

#![forbid(unsafe_code)]

mod binary;
mod env;
mod gateway;
mod listening;
mod pki;
mod process;

pub use binary::gateway_binary;
pub use env::{free_port, no_proxy};
pub use gateway::{Driver, Gateway, GatewayBuilder, START_TIMEOUT};
pub use listening::{Expect, Listening};
pub use nix::sys::signal::Signal;
pub use pki::TestCa;
pub use process::Process;
