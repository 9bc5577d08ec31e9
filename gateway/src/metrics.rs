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

/// Every shard's counters added up (a snapshot; each counter is read once).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections answered 503.
    pub rejected_over_limit: u64,
    /// Connections closed.
    pub closed: u64,
    /// WebSocket upgrades.
    pub upgrades: u64,
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
    /// Backpressure pauses.
    pub backpressure_pauses: u64,
    /// Accept failures for lack of descriptors.
    pub accept_exhausted: u64,
    /// Deadline drops.
    pub timeouts: u64,
}

impl Totals {
    /// Sum `shards`.
    pub fn sum<'a>(shards: impl IntoIterator<Item = &'a ShardMetrics>) -> Totals {
        shards.into_iter().fold(Totals::default(), |t, m| Totals {
            accepted: t.accepted + m.accepted.get(),
            rejected_over_limit: t.rejected_over_limit + m.rejected_over_limit.get(),
            closed: t.closed + m.closed.get(),
            upgrades: t.upgrades + m.upgrades.get(),
            bytes_in: t.bytes_in + m.bytes_in.get(),
            bytes_out: t.bytes_out + m.bytes_out.get(),
            backpressure_pauses: t.backpressure_pauses + m.backpressure_pauses.get(),
            accept_exhausted: t.accept_exhausted + m.accept_exhausted.get(),
            timeouts: t.timeouts + m.timeouts.get(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up_every_shard() {
        let a = ShardMetrics::default();
        let b = ShardMetrics::default();
        a.accepted.add(2);
        b.accepted.add(3);
        b.bytes_out.add(10);
        let t = Totals::sum([&a, &b]);
        assert_eq!((t.accepted, t.bytes_out, t.closed), (5, 10, 0));
    }
}
