//! Black-box harness shared by the gateway's socket suites: a [`Gateway`] process started on a
//! free loopback port, a raw WebSocket [`Client`] over a plain `TcpStream`, and on top of it a
//! client of the `/ws` JSON protocol ([`ws::Ws`]).
//!
//! Every read is bounded in time (a hung server fails the test instead of hanging it), every
//! process started here is killed by its own PID when dropped, and server frames are checked
//! against RFC 6455 (unmasked, no RSV bits) as they are read.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::time::Duration;

pub mod api;
mod client;
mod command;
pub mod deflate;
mod frames;
mod http;
pub mod nats;
mod payload;
mod process;
pub mod proxy;
pub mod redis;
pub mod ws;

pub use client::*;
#[allow(unused_imports)] // only the suites that run outside programs use it
pub use command::*;
pub use frames::*;
pub use http::*;
pub use payload::*;
pub use process::*;

/// Upper bound for any single wait on the server (a frame, a response, a close).
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How soon the server must close TCP once the close handshake is complete (both closes sent).
/// Well under the default 5 s `--close-timeout`, so a server that only closes by its deadline
/// fails.
pub const PROMPT_CLOSE: Duration = Duration::from_secs(3);
/// The GUID of RFC 6455 §1.3, appended to the key before hashing.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// The example key of RFC 6455 §1.3 (base64 of 16 bytes).
pub const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// Mask key used by default for client frames: non-zero in every byte so masking really changes
/// the bytes on the wire.
pub const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Opcodes as wire nibbles (raw frames may carry reserved ones).
pub mod op {
    pub const CONT: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}
