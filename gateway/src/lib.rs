//! The gateway as a library: the binary (`main.rs`) wires these parts together, and tests and
//! benchmarks reach the internals through here.
//!
//! The data path, one folder per layer, each importing only those below it:
//!
//! ```text
//! driver/  sockets and readiness (epoll through mio, io_uring)
//!   -> shard/   one pinned event loop per core: accept, read into the shard's buffer, timers,
//!               write queues (outbox.rs), the router's messages applied to its connections
//!   -> conn/    one client connection, sans-IO: HTTP request, RFC 6455 upgrade, frames (unmasked
//!               and validated in place), close handshake; it knows no route
//!   -> app/     what an upgraded connection speaks: the URL table (routes.rs), /echo, /ws (the
//!               JSON protocol), /raw, /broadcast, the chat page
//!   -> router/  channels, users, fan-out encoded once, messages to other shards (outbound.rs),
//!               history rings on each channel's owner shard and the resubscribe merge
//!   -> outbox   each connection's queue of owned and shared frames -> one vectored write
//! ```
//!
//! Beside the path: [`broker`] (one thread per node joining the nodes of a deployment through
//! Redis; it feeds the shards' inboxes like another shard), [`api`] (the backend HTTP API,
//! served by the same shard loops), [`auth`]
//! (API key, client tokens), [`json`], [`query`] and [`names`] (the one JSON writer, query decoder,
//! and channel and user naming rules),
//! [`config`] and [`metrics`].
#![deny(unsafe_code)]

pub mod api;
pub mod app;
pub mod auth;
pub mod broker;
pub mod check;
pub mod config;
pub mod conn;
#[allow(unsafe_code)]
pub mod driver;
pub mod hooks;
pub mod json;
pub mod metrics;
pub mod names;
pub mod outbox;
pub mod query;
pub mod router;
pub mod shard;
