//! One clock for a run: monotonic ns since the run's start, and the matching Unix time so stamps
//! carried in payloads can be compared by another thread or another loadgen process.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The run's time origin.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: Instant,
    unix_start_ns: u64,
}

impl Clock {
    /// A clock starting now.
    pub fn start() -> Clock {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Clock {
            start: Instant::now(),
            unix_start_ns: u64::try_from(unix.as_nanos()).unwrap_or(u64::MAX),
        }
    }

    /// ns since the start.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Unix time (ns) of an instant given in ns since the start.
    pub fn unix_ns(&self, ns: u64) -> u64 {
        self.unix_start_ns.saturating_add(ns)
    }

    /// ns since the start of a Unix time (ns); 0 if before the start.
    pub fn from_unix_ns(&self, unix_ns: u64) -> u64 {
        unix_ns.saturating_sub(self.unix_start_ns)
    }

    /// Unix time of the start, in ms.
    pub fn unix_start_ms(&self) -> u64 {
        self.unix_start_ns / 1_000_000
    }
}

/// ns in one second.
pub const SEC: u64 = 1_000_000_000;

/// A duration as ns (saturating).
pub fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
