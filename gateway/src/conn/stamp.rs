//! `Stamp`: a moment in 32 bits, for the times every connection keeps (when its last byte
//! arrived, when its current wait began). Two `Instant`s per connection cost 32 bytes; two
//! stamps cost 8.
//!
//! A stamp counts whole milliseconds from a process-wide origin, modulo 2^32 (it wraps after
//! about 49.7 days), rounded up, so a deadline computed from a stamp falls up to 1 ms after the
//! exact instant, never before it (the shard's timer wheel has 10 ms slots: 1 ms is finer than
//! any timer needs). A stamp is read back relative to the present
//! ([`Stamp::to_instant`]): the difference between two stamps is taken modulo 2^32 as a signed
//! count, so the wrap is invisible as long as the stamp is less than [`Stamp::MAX_AGE`]
//! (about 24.8 days) old. A connection's stamps are never that old while they matter: every one
//! of its deadlines (handshake, ping interval, pong and close timeouts, each limited to
//! [`Stamp::MAX_AGE`] by the configuration) is measured from one of them, and each deadline
//! replaces the stamp when it fires.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A moment to the millisecond, as 32 bits. See the module doc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp(u32);

/// The instant stamps count from (the first time one is taken). Instants before it are
/// stamped too: their count is negative, modulo 2^32.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// `d` in whole milliseconds, rounded up (`up`) or down, modulo 2^32.
fn millis(d: Duration, up: bool) -> u32 {
    let mut ms = d.as_millis();
    if up && d.subsec_nanos() % 1_000_000 != 0 {
        ms += 1;
    }
    // Modulo 2^32 by design: stamps are compared by wrapping difference.
    ms as u32
}

impl Stamp {
    /// How old a stamp can be and still be read back correctly (2^31 - 1 ms, about 24.8 days).
    pub const MAX_AGE: Duration = Duration::from_millis(i32::MAX as u64);

    /// The stamp of `t`: milliseconds from the origin, rounded up.
    pub fn at(t: Instant) -> Stamp {
        let o = origin();
        match t.checked_duration_since(o) {
            Some(d) => Stamp(millis(d, true)),
            // Before the origin: minus the distance rounded down is the time rounded up.
            None => Stamp(millis(o.duration_since(t), false).wrapping_neg()),
        }
    }

    /// `t` rounded up to the millisecond grid stamps count on, where a stamp is exact: a
    /// simulated clock that starts there sees deadlines to the nanosecond.
    pub fn grid(t: Instant) -> Instant {
        Stamp::at(t).to_instant(t)
    }

    /// The instant this stamp names (its millisecond, rounded up), read at `now`, which is less
    /// than [`Stamp::MAX_AGE`] from it either way.
    pub fn to_instant(self, now: Instant) -> Instant {
        let o = origin();
        // `now` down to its millisecond on the origin's grid, and that millisecond's stamp.
        let (base, base_stamp) = match now.checked_duration_since(o) {
            Some(d) => {
                let sub = Duration::from_nanos(u64::from(d.subsec_nanos() % 1_000_000));
                (now - sub, millis(d, false))
            }
            None => {
                let d = o.duration_since(now);
                let up = millis(d, true);
                let whole = Duration::from_millis(d.as_millis() as u64)
                    + Duration::from_millis(u64::from(d.subsec_nanos() % 1_000_000 != 0));
                // `o - whole` is at or before `now`: an instant `now` minus less than 1 ms.
                (o.checked_sub(whole).unwrap_or(now), up.wrapping_neg())
            }
        };
        // The signed distance from this stamp to `base`, modulo 2^32.
        let ahead = base_stamp.wrapping_sub(self.0) as i32;
        let d = Duration::from_millis(u64::from(ahead.unsigned_abs()));
        if ahead >= 0 {
            base.checked_sub(d).unwrap_or(base)
        } else {
            base + d
        }
    }
}

/// `Instant::now()` rounded up to the stamps' millisecond grid (see [`Stamp::grid`]).
#[cfg(test)]
pub(crate) fn now_on_grid() -> Instant {
    Stamp::grid(Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_reads_back_as_its_instant_rounded_up_to_the_millisecond() {
        let t = Instant::now() + Duration::from_nanos(1_234_567);
        let s = Stamp::at(t);
        for later in [0, 1, 999, 86_400_000, Stamp::MAX_AGE.as_millis() as u64 - 2] {
            let back = s.to_instant(t + Duration::from_millis(later));
            assert!(
                back >= t,
                "never before the stamped instant ({later} ms later)"
            );
            assert!(back - t < Duration::from_millis(1), "{:?}", back - t);
        }
        // Whole milliseconds apart stay exactly that far apart.
        let u = t + Duration::from_millis(25_000);
        let now = u + Duration::from_millis(7);
        assert_eq!(
            Stamp::at(u).to_instant(now) - s.to_instant(now),
            Duration::from_millis(25_000)
        );
        // On the grid already: exact.
        let on_grid = s.to_instant(now);
        assert_eq!(Stamp::at(on_grid).to_instant(now), on_grid);
    }

    #[test]
    fn the_wrap_after_49_days_is_invisible_within_the_maximum_age() {
        // Two instants 50 days apart have stamps that wrapped past 2^32 ms between them.
        let t = Instant::now();
        let fifty_days = Duration::from_secs(50 * 86_400);
        let far = t + fifty_days;
        let apart = Stamp::at(far).0.wrapping_sub(Stamp::at(t).0);
        assert!(
            u128::from(apart) < fifty_days.as_millis(),
            "the counter wrapped"
        );
        for age_ms in [0u64, 1, 10_000, 20 * 86_400_000] {
            let then = far - Duration::from_millis(age_ms);
            let back = Stamp::at(then).to_instant(far);
            assert!(
                back >= then && back - then < Duration::from_millis(1),
                "{age_ms}"
            );
        }
        // Slightly in the future (a caller's `now` behind the stamp) also reads back.
        let ahead = far + Duration::from_millis(5);
        let back = Stamp::at(ahead).to_instant(far);
        assert!(back >= ahead && back - ahead < Duration::from_millis(1));
    }

    #[test]
    fn instants_before_the_origin_are_stamped_too() {
        let now = origin();
        let Some(before) = now.checked_sub(Duration::from_nanos(3_500_000)) else {
            return; // The clock started less than 4 ms ago: no earlier instant exists.
        };
        let back = Stamp::at(before).to_instant(now);
        assert!(back >= before && back - before < Duration::from_millis(1));
        let back = Stamp::at(before).to_instant(before);
        assert!(back >= before && back - before < Duration::from_millis(1));
        assert!(std::mem::size_of::<Stamp>() == 4);
    }
}
