//! The invariants the gateway's fuzz targets assert, one module per target, each with a
//! `check(data)` that takes the raw fuzzer input. The first bytes of an input choose the
//! parameters (limits, chunk sizes, the order of reads, deadlines and shutdowns); the rest is
//! what a peer sends. A broken invariant panics, which libFuzzer reports as a crash.
//!
//! `gateway/tests/fuzz_replay.rs` compiles this same file and replays the committed inputs (the
//! seed corpus under `fuzz/seeds/<target>/`, crash inputs under `fuzz/regressions/<target>/`),
//! so the plain test suite runs every check on them. Only crates the gateway depends on are used.

pub mod api_request;
pub mod broker;
pub mod conn;
pub mod hook_answer;
pub mod http_head;
pub mod input;
pub mod nats;
pub mod query;
pub mod seeds;
pub mod sio_packet;
pub mod token;
pub mod wire;
pub mod ws_request;

/// The fuzz targets, named as their files in `fuzz_targets/` and their folders of inputs.
pub const TARGETS: [&str; 10] = [
    "http_head",
    "conn",
    "ws_request",
    "api_request",
    "token",
    "query",
    "broker",
    "sio_packet",
    "hook_answer",
    "nats",
];

/// Run the check for `target` on `data`; false if there is no such target.
pub fn run(target: &str, data: &[u8]) -> bool {
    match target {
        "http_head" => http_head::check(data),
        "conn" => conn::check(data),
        "ws_request" => ws_request::check(data),
        "api_request" => api_request::check(data),
        "token" => token::check(data),
        "query" => query::check(data),
        "broker" => broker::check(data),
        "sio_packet" => sio_packet::check(data),
        "hook_answer" => hook_answer::check(data),
        "nats" => nats::check(data),
        _ => return false,
    }
    true
}
