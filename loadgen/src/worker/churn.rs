//! Churn: connections that arrive on a schedule, stay a random while and leave with a close
//! frame, and the storm that drops a share of them at once and reconnects them.

use std::cmp::Reverse;

use super::{phase, Close, SpecState, Worker};
use crate::client::State;
use crate::clock::{ns, SEC};
use crate::plan::{ConnSpec, Role};

impl Worker {
    pub(super) fn schedule_departure(&mut self, idx: usize, from: u64) {
        let Some(churn) = self.plan.churn else { return };
        let Some(slot) = self.slots[idx].as_ref() else {
            return;
        };
        let (lo, hi) = (ns(churn.stay_min), ns(churn.stay_max));
        let stay = if hi > lo { self.rng.u64(lo..=hi) } else { lo };
        self.departures.push(Reverse((from + stay, idx, slot.gen)));
    }

    pub(super) fn do_churn(&mut self, now: u64) {
        let Some(churn) = self.plan.churn else { return };
        while let Some(Reverse((due, idx, gen))) = self.departures.peek().copied() {
            if due > now {
                break;
            }
            self.departures.pop();
            if self.slots[idx].as_ref().is_some_and(|s| s.gen == gen) {
                self.drop_slot(idx, Close::Leave);
            }
        }
        while let Some(due) = self.churn_next {
            if due > now {
                break;
            }
            if self.phase != phase::RUN || due >= self.meter.window_end {
                self.churn_next = None;
                break;
            }
            let n = self.specs.len();
            let sources = &self.plan.sources;
            let spec = ConnSpec {
                via_api: false,
                target: (self.churn_k % self.plan.targets.len() as u64) as u32,
                source: (!sources.is_empty())
                    .then(|| sources[(self.churn_k as usize + self.id) % sources.len()]),
                role: Role::Plain,
            };
            self.specs.push(spec);
            self.state.push(SpecState::default());
            self.start_connect(n, due, now);
            self.churn_k += 1;
            let rate = churn.rate * self.share();
            self.churn_next =
                Some(self.run_start + (self.churn_k as f64 * SEC as f64 / rate) as u64);
        }
        if let Some(at) = self.storm_at {
            if at <= now && self.phase == phase::RUN {
                self.storm_at = churn.storm_every.map(|every| at + ns(every));
                self.run_storm(now);
            }
        }
    }

    pub(super) fn share(&self) -> f64 {
        1.0 / self.plan.threads as f64
    }

    /// Drop a share of the open connections at once, without a close frame (as a crashed node or a
    /// cut link would), and reconnect them right away.
    pub(super) fn run_storm(&mut self, now: u64) {
        let Some((share, _)) = self.plan.churn.and_then(|c| c.storm) else {
            return;
        };
        self.storm_start = now;
        let open: Vec<usize> = (0..self.slots.len())
            .filter(|&i| {
                self.slots[i]
                    .as_ref()
                    .is_some_and(|s| s.conn.state() == State::Open)
            })
            .collect();
        let count = (open.len() as f64 * share).round() as usize;
        for &idx in open.iter().take(count) {
            let Some(spec) = self.slots[idx].as_ref().map(|s| s.spec) else {
                continue;
            };
            self.drop_slot(idx, Close::Storm);
            self.storm.dropped += 1;
            self.start_connect(spec, now, now);
            if let Some(new) = self.state[spec].slot {
                if let Some(s) = self.slots[new].as_mut() {
                    s.storm = true;
                }
            }
        }
    }
}
