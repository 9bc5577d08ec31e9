//! `TimerWheel`: a shard's hashed timer wheel for connection deadlines (handshake, idle ping,
//! pong, close).
//!
//! 4096 slots of 10 ms (a 40.96 s horizon). Arming pushes the connection id into one slot, O(1);
//! a later deadline than the horizon goes into the farthest slot and is re-armed when it fires.
//! Nothing is ever removed: the shard remembers which tick each connection is armed for and
//! ignores entries that no longer match (lazy re-arming), so a busy connection costs nothing
//! here and an idle one is touched once per deadline. Time only moves when `expire` is called.

use std::time::{Duration, Instant};

use crate::conn::ConnId;

/// Slot width.
pub const TICK: Duration = Duration::from_millis(10);
/// [`TICK`] in nanoseconds (divides one second exactly).
const TICK_NANOS: u64 = 10_000_000;
/// Number of slots (a power of two).
pub const SLOTS: usize = 4096;

/// The wheel.
pub struct TimerWheel {
    start: Instant,
    /// The next tick to expire.
    cursor: u64,
    slots: Vec<Vec<ConnId>>,
    len: usize,
}

impl TimerWheel {
    /// An empty wheel whose tick 0 starts at `start`.
    pub fn new(start: Instant) -> TimerWheel {
        TimerWheel {
            start,
            cursor: 0,
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            len: 0,
        }
    }

    /// Entries armed (including stale ones).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is armed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first tick whose start is at or after `at` (entries never fire early).
    fn tick_at_or_after(&self, at: Instant) -> u64 {
        // Plain u64 arithmetic: this runs after every read of every connection.
        let d = at.saturating_duration_since(self.start);
        let ticks_per_sec = 1_000_000_000 / TICK_NANOS;
        let sub = u64::from(d.subsec_nanos()).div_ceil(TICK_NANOS);
        d.as_secs()
            .saturating_mul(ticks_per_sec)
            .saturating_add(sub)
    }

    /// Arm `id` for `at`; returns the tick it was placed in (the caller keeps it to recognise
    /// the live entry when it fires).
    pub fn arm(&mut self, id: ConnId, at: Instant) -> u64 {
        let horizon = self.cursor + SLOTS as u64 - 1;
        let tick = self.tick_at_or_after(at).clamp(self.cursor, horizon);
        self.slots[(tick % SLOTS as u64) as usize].push(id);
        self.len += 1;
        tick
    }

    /// The tick an entry armed for `at` now would land in (to decide whether re-arming is
    /// needed).
    pub fn tick_for(&self, at: Instant) -> u64 {
        let horizon = self.cursor + SLOTS as u64 - 1;
        self.tick_at_or_after(at).clamp(self.cursor, horizon)
    }

    /// Move every entry whose tick has started by `now` into `fired` as `(id, tick)`.
    pub fn expire(&mut self, now: Instant, fired: &mut Vec<(ConnId, u64)>) {
        let d = now.saturating_duration_since(self.start);
        let now_tick = d
            .as_secs()
            .saturating_mul(1_000_000_000 / TICK_NANOS)
            .saturating_add(u64::from(d.subsec_nanos()) / TICK_NANOS);
        let mut visited = 0;
        while self.cursor <= now_tick && self.len > 0 && visited < SLOTS {
            let slot = &mut self.slots[(self.cursor % SLOTS as u64) as usize];
            self.len -= slot.len();
            fired.extend(slot.drain(..).map(|id| (id, self.cursor)));
            self.cursor += 1;
            visited += 1;
        }
        if self.cursor <= now_tick {
            // Every slot was visited (or none is armed): jump to now.
            self.cursor = now_tick + 1;
        }
    }

    /// When the next armed slot starts (`None` when nothing is armed).
    pub fn next_expiry(&self) -> Option<Instant> {
        if self.len == 0 {
            return None;
        }
        let ahead = (0..SLOTS as u64)
            .find(|i| !self.slots[((self.cursor + i) % SLOTS as u64) as usize].is_empty())
            .unwrap_or(0);
        let tick = self.cursor + ahead;
        let nanos = u128::from(tick) * TICK.as_nanos();
        Some(self.start + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> ConnId {
        ConnId::new(0, n, 0)
    }

    #[test]
    fn fires_once_due_never_early() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        let tick = w.arm(id(1), t0 + Duration::from_millis(25));
        assert_eq!(tick, 3);
        let mut fired = Vec::new();
        w.expire(t0 + Duration::from_millis(29), &mut fired);
        assert!(fired.is_empty());
        assert_eq!(w.next_expiry(), Some(t0 + Duration::from_millis(30)));
        w.expire(t0 + Duration::from_millis(30), &mut fired);
        assert_eq!(fired, vec![(id(1), 3)]);
        assert!(w.is_empty());
        assert_eq!(w.next_expiry(), None);
    }

    #[test]
    fn beyond_the_horizon_fires_at_the_horizon() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        let tick = w.arm(id(1), t0 + Duration::from_secs(100));
        assert_eq!(tick, SLOTS as u64 - 1);
        let mut fired = Vec::new();
        w.expire(t0 + Duration::from_secs(41), &mut fired);
        assert_eq!(fired, vec![(id(1), SLOTS as u64 - 1)]);
    }

    #[test]
    fn past_deadline_fires_on_next_expire() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        let mut fired = Vec::new();
        w.expire(t0 + Duration::from_secs(1), &mut fired);
        // Already due: it lands in the next tick, at most 10 ms late.
        assert_eq!(w.arm(id(2), t0), 101);
        w.expire(t0 + Duration::from_millis(1010), &mut fired);
        assert_eq!(fired, vec![(id(2), 101)]);
    }

    #[test]
    fn long_sleep_visits_each_slot_once() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        for i in 0..100 {
            w.arm(id(i), t0 + Duration::from_millis(u64::from(i) * 400));
        }
        let mut fired = Vec::new();
        w.expire(t0 + Duration::from_secs(3600), &mut fired);
        assert_eq!(fired.len(), 100);
        assert!(w.is_empty());
        w.arm(id(7), t0 + Duration::from_secs(3600));
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn many_entries_only_due_ones_touched() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        for i in 0..10_000 {
            w.arm(id(i), t0 + Duration::from_secs(25));
        }
        w.arm(id(99_999), t0 + Duration::from_millis(5));
        let mut fired = Vec::new();
        w.expire(t0 + Duration::from_millis(10), &mut fired);
        assert_eq!(fired, vec![(id(99_999), 1)]);
        assert_eq!(w.len(), 10_000);
    }
}
