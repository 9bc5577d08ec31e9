//! The end of a worker: close every connection, turn each subscriber's sequence tracks into
//! delivery figures against what the publishers sent, and hand back the worker's result.

use std::sync::atomic::Ordering;

use super::{Close, Worker, WorkerResult};
use crate::plan::Role;
use crate::stats::Delivery;

impl Worker {
    pub(super) fn finish(mut self) -> WorkerResult {
        self.sample_cpu_end();
        for idx in 0..self.slots.len() {
            if self.slots[idx].is_some() {
                self.drop_slot(idx, Close::Stop);
            }
        }
        let mut delivery = Delivery::default();
        for (spec, st) in self.specs.iter().zip(&self.state) {
            let Role::Member {
                group,
                publisher,
                subscriber: true,
            } = spec.role
            else {
                continue;
            };
            let g = &self.plan.groups[group as usize];
            let mut lost = 0;
            for (local, &p) in g.publishers.iter().enumerate() {
                let to_self = publisher == Some(p);
                if to_self == self.plan.adapter.delivers_to_others() {
                    continue;
                }
                let sent = self.shared.sent_by_pub[p as usize].load(Ordering::Acquire);
                let t = &st.tracks[local];
                delivery.expected += sent;
                delivery.unique += t.unique.min(sent);
                delivery.duplicated += t.duplicated;
                delivery.out_of_order += t.out_of_order;
                lost += sent.saturating_sub(t.unique);
            }
            delivery.foreign += st.foreign;
            delivery.lost += lost;
            if lost > 0 {
                delivery.subscribers_with_loss += 1;
                delivery.max_lost_per_subscriber = delivery.max_lost_per_subscriber.max(lost);
            }
        }
        let mut m = self.meter;
        m.close_second();
        WorkerResult {
            window: m.window,
            all: m.all,
            latency: m.latency,
            connect: m.connect,
            send_lag: m.send_lag,
            failures: m.failures,
            failure_examples: m.failure_examples,
            delivery,
            cpu_window_ns: self.cpu_window,
            storm: self.storm,
            unsent: self.unsent,
            connect_phase: m.connect_phase,
        }
    }
}
