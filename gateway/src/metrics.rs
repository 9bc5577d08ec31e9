//! Counters per shard. Each shard is the only writer of its own [`ShardMetrics`] (so an update
//! is a relaxed load and store, not a locked read-modify-write); readers sum all shards.

use std::sync::atomic::{AtomicU64, Ordering};

/// One shard's counters.
#[derive(Debug, Default)]
pub struct ShardMetrics {
    /// Connections accepted.
    pub accepted: Counter,
    /// Connections answered 503 over `--max-connections`.
    pub rejected_over_limit: Counter,
    /// Connections closed (any reason).
    pub closed: Counter,
    /// Successful WebSocket upgrades.
    pub upgrades: Counter,
    /// Bytes read from sockets.
    pub bytes_in: Counter,
    /// Bytes written to sockets.
    pub bytes_out: Counter,
    /// Times a connection stopped reading because its outbox was over the limit.
    pub backpressure_pauses: Counter,
    /// Accept failures for lack of file descriptors.
    pub accept_exhausted: Counter,
    /// Connections dropped at a deadline (handshake, pong, close).
    pub timeouts: Counter,
}

/// A counter with a single writer.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Add `n` (only the owning shard calls this).
    #[inline]
    pub fn add(&self, n: u64) {
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_add(n), Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}
