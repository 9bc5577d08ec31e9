//! `TimerWheel`: a shard's hashed timer wheel for connection deadlines (handshake, idle ping,
//! pong, close).
//!
//! 4096 slots of 10 ms (a 40.96 s horizon); a later deadline than the horizon goes into the
//! farthest slot and is re-armed when it fires. Each wheel slot is a doubly linked list of the
//! connections armed for it, threaded through one array indexed by the connection's slab slot
//! (its [`Link`]), with the wheel slots' list heads as the array's first 4096 entries: arming,
//! moving and cancelling are O(1), and a connection is in at most one list, so the wheel holds
//! 8 bytes per connection and allocates nothing once the array has grown to the shard's
//! connection count. The shard arms a connection again only when its deadline moves earlier
//! (a later one is found when the earlier fires), so a busy connection costs nothing here and an
//! idle one is touched once per deadline. Time only moves when `expire` is called.

use std::time::{Duration, Instant};

/// Slot width.
pub const TICK: Duration = Duration::from_millis(10);
/// [`TICK`] in nanoseconds (divides one second exactly).
const TICK_NANOS: u64 = 10_000_000;
/// Number of slots (a power of two).
pub const SLOTS: usize = 4096;
/// A [`Link`] that is in no list.
const DETACHED: u32 = u32::MAX;

/// One node of a wheel slot's circular list: the indices of its neighbours in
/// [`TimerWheel::links`] (list heads first, then connection slots).
#[derive(Clone, Copy, Debug)]
struct Link {
    prev: u32,
    next: u32,
}

impl Link {
    const DETACHED: Link = Link {
        prev: DETACHED,
        next: DETACHED,
    };
}

/// The wheel.
pub struct TimerWheel {
    start: Instant,
    /// The next tick to expire.
    cursor: u64,
    /// `SLOTS` list heads (a head alone in its list points at itself), then one link per
    /// connection slot that was ever armed.
    links: Vec<Link>,
    len: usize,
}

/// Where connection slot `slot`'s link is in [`TimerWheel::links`].
fn node(slot: u32) -> usize {
    SLOTS + slot as usize
}

impl TimerWheel {
    /// An empty wheel whose tick 0 starts at `start`.
    pub fn new(start: Instant) -> TimerWheel {
        TimerWheel {
            start,
            cursor: 0,
            links: (0..SLOTS as u32)
                .map(|h| Link { prev: h, next: h })
                .collect(),
            len: 0,
        }
    }

    /// Entries armed.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is armed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first tick at or after `at` (a deadline never fires early).
    fn tick_at_or_after(&self, at: Instant) -> u64 {
        // Plain u64 arithmetic: this runs after every read of every connection.
        let d = at.saturating_duration_since(self.start);
        let ticks_per_sec = 1_000_000_000 / TICK_NANOS;
        let sub = u64::from(d.subsec_nanos()).div_ceil(TICK_NANOS);
        d.as_secs()
            .saturating_mul(ticks_per_sec)
            .saturating_add(sub)
    }

    /// Arm connection slot `slot` for `at`, moving it if it was armed already; returns the tick
    /// it was placed in (the caller keeps it to know when arming again is needed).
    pub fn arm(&mut self, slot: u32, at: Instant) -> u64 {
        let tick = self.tick_for(at);
        self.cancel(slot);
        let n = node(slot);
        if self.links.len() <= n {
            self.links.resize(n + 1, Link::DETACHED);
        }
        // Append at the list's tail (before its head): entries fire in the order armed.
        let head = (tick % SLOTS as u64) as u32;
        let tail = self.links[head as usize].prev;
        // Truncation-free: `n` indexes an array no longer than `SLOTS` + 2^24 slab slots.
        let n32 = n as u32;
        self.links[n] = Link {
            prev: tail,
            next: head,
        };
        self.links[tail as usize].next = n32;
        self.links[head as usize].prev = n32;
        self.len += 1;
        tick
    }

    /// Disarm connection slot `slot` (nothing happens if it is not armed).
    pub fn cancel(&mut self, slot: u32) {
        let Some(&Link { prev, next }) = self.links.get(node(slot)) else {
            return;
        };
        if prev == DETACHED {
            return;
        }
        self.links[prev as usize].next = next;
        self.links[next as usize].prev = prev;
        self.links[node(slot)] = Link::DETACHED;
        self.len -= 1;
    }

    /// The tick a deadline at `at` would be armed for now.
    pub fn tick_for(&self, at: Instant) -> u64 {
        let horizon = self.cursor + SLOTS as u64 - 1;
        self.tick_at_or_after(at).clamp(self.cursor, horizon)
    }

    /// The tick whose low 32 bits are `low`, nearest the cursor: a tick the wheel handed out is
    /// never more than 2^31 ticks (248 days) from it, so one that a connection keeps as 32
    /// bits comes back exactly.
    pub fn widen(&self, low: u32) -> u64 {
        // Truncation intended: the cursor's low bits, to take the wrapping distance.
        let ahead = low.wrapping_sub(self.cursor as u32) as i32;
        self.cursor.wrapping_add_signed(i64::from(ahead))
    }

    /// Move time to `now`: every connection slot armed for a tick at or before it is appended
    /// to `fired` with its tick, and disarmed.
    pub fn expire(&mut self, now: Instant, fired: &mut Vec<(u32, u64)>) {
        let d = now.saturating_duration_since(self.start);
        let now_tick = d
            .as_secs()
            .saturating_mul(1_000_000_000 / TICK_NANOS)
            .saturating_add(u64::from(d.subsec_nanos()) / TICK_NANOS);
        let mut visited = 0;
        while self.cursor <= now_tick && self.len > 0 && visited < SLOTS {
            let head = (self.cursor % SLOTS as u64) as usize;
            let mut at = self.links[head].next as usize;
            while at != head {
                let next = self.links[at].next as usize;
                self.links[at] = Link::DETACHED;
                // `at` is past the heads: a connection slot's node.
                fired.push(((at - SLOTS) as u32, self.cursor));
                self.len -= 1;
                at = next;
            }
            let h = head as u32;
            self.links[head] = Link { prev: h, next: h };
            self.cursor += 1;
            visited += 1;
        }
        if self.cursor <= now_tick {
            // Every slot was visited (or none is armed): jump to now.
            self.cursor = now_tick + 1;
        }
    }

    /// When the earliest armed slot is due (`None` when nothing is armed). Scans at most
    /// `SLOTS` list heads.
    pub fn next_expiry(&self) -> Option<Instant> {
        if self.len == 0 {
            return None;
        }
        let ahead = (0..SLOTS as u64)
            .find(|i| {
                let head = ((self.cursor + i) % SLOTS as u64) as usize;
                self.links[head].next as usize != head
            })
            .unwrap_or(0);
        let tick = self.cursor + ahead;
        let nanos = u128::from(tick) * TICK.as_nanos();
        Some(self.start + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> u32 {
        n
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
    fn widen_gives_back_ticks_kept_as_32_bits() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        let tick = w.arm(id(1), t0 + Duration::from_millis(25));
        assert_eq!(w.widen(tick as u32), tick);
        // Far along, past 2^32 ticks: ahead of the cursor and just behind it.
        w.cursor = (1 << 32) + 5;
        assert_eq!(w.widen(4000 + 5), (1 << 32) + 4005);
        assert_eq!(w.widen(3), (1 << 32) + 3);
        w.cursor = (1 << 32) - 2;
        assert_eq!(w.widen(100), (1 << 32) + 100);
        assert_eq!(w.widen(u32::MAX - 5), (1 << 32) - 6);
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

#[cfg(test)]
mod link_tests {
    use super::*;

    #[test]
    fn arming_again_moves_the_entry_and_cancel_removes_it() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        w.arm(1, t0 + Duration::from_secs(10));
        w.arm(2, t0 + Duration::from_secs(10));
        w.arm(3, t0 + Duration::from_secs(10));
        assert_eq!(w.arm(1, t0 + Duration::from_millis(50)), 5);
        assert_eq!(w.len(), 3, "moved, not duplicated");
        w.cancel(2);
        w.cancel(2);
        w.cancel(77);
        assert_eq!(w.len(), 2);
        let mut fired = Vec::new();
        w.expire(t0 + Duration::from_millis(50), &mut fired);
        assert_eq!(fired, vec![(1, 5)]);
        w.expire(t0 + Duration::from_secs(10), &mut fired);
        assert_eq!(fired, vec![(1, 5), (3, 1000)]);
        assert!(w.is_empty());
        assert_eq!(w.next_expiry(), None);
    }

    #[test]
    fn a_slot_fires_in_the_order_armed_after_removals_in_the_middle() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        for slot in 0..6 {
            w.arm(slot, t0 + Duration::from_millis(20));
        }
        w.cancel(0);
        w.cancel(3);
        w.cancel(5);
        w.arm(3, t0 + Duration::from_millis(20));
        let mut fired = Vec::new();
        w.expire(t0 + Duration::from_millis(20), &mut fired);
        let order: Vec<u32> = fired.iter().map(|&(s, _)| s).collect();
        assert_eq!(order, vec![1, 2, 4, 3]);
    }

    /// Every connection costs one 8-byte link here, and a wheel slot no allocation of its own.
    #[test]
    fn an_armed_connection_costs_eight_bytes() {
        assert_eq!(std::mem::size_of::<Link>(), 8);
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        for slot in 0..10_000 {
            w.arm(
                slot,
                t0 + Duration::from_millis(u64::from(slot % 3000) * 10),
            );
        }
        assert_eq!(w.links.len(), SLOTS + 10_000);
    }
}
