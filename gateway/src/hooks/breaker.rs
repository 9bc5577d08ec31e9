//! `Breaker`: one backend's circuit breaker. After `failures` failed calls in a row it opens:
//! calls fail at once (`circuit_open`) instead of waiting for a backend that is down. After
//! `cooldown` it lets one trial call through (half-open): success closes it, failure opens it
//! again for another cooldown. Time comes in as an argument; the breaker owns no clock.

use std::time::{Duration, Instant};

/// The breaker's state, as the `gateway_hook_breaker_state` gauge shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed = 0,
    /// Calls fail at once until the cooldown ends.
    Open = 1,
    /// One trial call is under way; others fail at once.
    HalfOpen = 2,
}

/// One backend's breaker.
#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    failures_in_a_row: u32,
    state: BreakerState,
    /// When the breaker last opened.
    opened_at: Option<Instant>,
}

impl Breaker {
    /// Opens after `threshold` failures in a row (at least 1), stays open `cooldown`.
    pub fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            cooldown,
            failures_in_a_row: 0,
            state: BreakerState::Closed,
            opened_at: None,
        }
    }

    /// The state now.
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// May a call start at `now`? In the open state, the first call after the cooldown is let
    /// through as the trial (half-open).
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.state {
            BreakerState::Closed => true,
            BreakerState::HalfOpen => false,
            BreakerState::Open => {
                let due = self.opened_at.is_none_or(|t| now >= t + self.cooldown);
                if due {
                    self.state = BreakerState::HalfOpen;
                }
                due
            }
        }
    }

    /// A call succeeded: the backend answers.
    pub fn on_success(&mut self) {
        self.failures_in_a_row = 0;
        self.state = BreakerState::Closed;
        self.opened_at = None;
    }

    /// A call failed at `now` (unreachable, cut, timed out, garbage, 5xx).
    pub fn on_failure(&mut self, now: Instant) {
        self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
        if self.state == BreakerState::HalfOpen || self.failures_in_a_row >= self.threshold {
            self.state = BreakerState::Open;
            self.opened_at = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_closes_after_a_good_trial() {
        let t0 = Instant::now();
        let mut b = Breaker::new(3, Duration::from_secs(1));
        for _ in 0..2 {
            assert!(b.allow(t0));
            b.on_failure(t0);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        b.on_failure(t0);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.allow(t0 + Duration::from_millis(999)));
        assert!(b.allow(t0 + Duration::from_secs(1)), "the trial");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(!b.allow(t0 + Duration::from_secs(1)), "one trial at a time");
        b.on_success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allow(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn a_failed_trial_opens_it_for_another_cooldown() {
        let t0 = Instant::now();
        let mut b = Breaker::new(1, Duration::from_secs(1));
        b.on_failure(t0);
        let t1 = t0 + Duration::from_secs(1);
        assert!(b.allow(t1));
        b.on_failure(t1);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.allow(t1 + Duration::from_millis(500)));
        assert!(b.allow(t1 + Duration::from_secs(1)));
    }

    #[test]
    fn a_success_resets_the_count() {
        let t0 = Instant::now();
        let mut b = Breaker::new(2, Duration::from_secs(1));
        b.on_failure(t0);
        b.on_success();
        b.on_failure(t0);
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
