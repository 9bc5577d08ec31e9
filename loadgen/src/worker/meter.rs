//! What one worker measures: counters and histograms for the measured window, for the whole run,
//! and for the current second (sent to the coordinator as a [`Tick`]). No locks: the coordinator
//! only ever sees copies.

use hdrhistogram::Histogram;

use crate::stats::{new_hist, record, Counters, Delivery, Failures};

/// One second of one worker, sent to the coordinator.
#[derive(Debug)]
pub struct Tick {
    /// Worker index.
    pub worker: usize,
    /// Second since the run's clock started (the tick covers `[second, second + 1)`).
    pub second: u64,
    /// Events in that second.
    pub counters: Counters,
    /// Message latency recorded in that second (ns).
    pub latency: Histogram<u64>,
    /// Handshake latency recorded in that second (ns).
    pub connect: Histogram<u64>,
    /// Connections open at the end of the second.
    pub open: u64,
}

/// Storm figures (churn `--storm`).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Storm {
    /// Connections dropped at once.
    pub dropped: u64,
    /// Of those, reconnected.
    pub reconnected: u64,
    /// Time from the storm to the last reconnection (ns).
    pub all_back_ns: u64,
}

/// The connect phase as one worker saw it: from the first planned connection's connect call (its
/// SYN) to the last planned connection's 101, in ns since the run's clock started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectPhase {
    /// First connect call (`u64::MAX` when none was made).
    pub first_syn_ns: u64,
    /// Last 101 of a planned connection (0 when none opened).
    pub last_open_ns: u64,
    /// Planned connections whose handshake completed.
    pub opened: u64,
}

impl Default for ConnectPhase {
    fn default() -> ConnectPhase {
        ConnectPhase {
            first_syn_ns: u64::MAX,
            last_open_ns: 0,
            opened: 0,
        }
    }
}

impl ConnectPhase {
    /// A planned connection's connect call at `now`.
    pub fn on_start(&mut self, now: u64) {
        self.first_syn_ns = self.first_syn_ns.min(now);
    }

    /// A planned connection's handshake completed at `now`.
    pub fn on_open(&mut self, now: u64) {
        self.last_open_ns = self.last_open_ns.max(now);
        self.opened += 1;
    }

    /// Fold another worker's phase into this one.
    pub fn add(&mut self, o: &ConnectPhase) {
        self.first_syn_ns = self.first_syn_ns.min(o.first_syn_ns);
        self.last_open_ns = self.last_open_ns.max(o.last_open_ns);
        self.opened += o.opened;
    }

    /// Length in ns (0 when nothing opened).
    pub fn span_ns(&self) -> u64 {
        if self.opened == 0 {
            return 0;
        }
        self.last_open_ns.saturating_sub(self.first_syn_ns)
    }
}

/// What a worker hands back when it stops.
#[derive(Debug)]
pub struct WorkerResult {
    /// Counts of the measured window.
    pub window: Counters,
    /// Counts of the whole run.
    pub all: Counters,
    /// Message latency in the measured window (ns).
    pub latency: Histogram<u64>,
    /// Handshake latency of every connection (ns).
    pub connect: Histogram<u64>,
    /// How late open-loop sends left after their intended time (ns).
    pub send_lag: Histogram<u64>,
    /// Failures by reason.
    pub failures: Failures,
    /// One full message per failure reason (the first seen).
    pub failure_examples: FailureExamples,
    /// Delivery checks of its subscribers.
    pub delivery: Delivery,
    /// CPU this thread used in the measured window (ns).
    pub cpu_window_ns: u64,
    /// Storm figures.
    pub storm: Storm,
    /// Open-loop sends that found no open connection to go out on.
    pub unsent: u64,
    /// Its share of the connect phase.
    pub connect_phase: ConnectPhase,
}

/// Reason -> first full error message.
pub type FailureExamples = std::collections::BTreeMap<String, String>;

/// Counters and histograms of one worker.
pub struct Meter {
    pub window: Counters,
    pub all: Counters,
    pub second: Counters,
    /// Message latency of the measured window, up to the last full second: the current
    /// second's window messages are in `second_in_window` until [`Meter::take_second`] or
    /// [`Meter::close_second`] adds them here.
    pub latency: Histogram<u64>,
    pub connect: Histogram<u64>,
    pub send_lag: Histogram<u64>,
    /// Messages received this second whose intended time is outside the window.
    pub second_latency: Histogram<u64>,
    /// Messages received this second whose intended time is inside the window. Each message is
    /// recorded once, here or in `second_latency`; the window's histogram and the second's are
    /// sums of these two, made once a second.
    pub second_in_window: Histogram<u64>,
    pub second_connect: Histogram<u64>,
    pub failures: Failures,
    pub failure_examples: FailureExamples,
    /// Measured window `[start, end)` in ns since the clock's start (intended times).
    pub window_start: u64,
    pub window_end: u64,
    /// Not yet added to the shared drain counters.
    pub pending_expected: u64,
    pub pending_delivered: u64,
    /// First SYN to last 101 of the planned connections.
    pub connect_phase: ConnectPhase,
}

impl Default for Meter {
    fn default() -> Meter {
        Meter::new()
    }
}

impl Meter {
    pub fn new() -> Meter {
        Meter {
            window: Counters::default(),
            all: Counters::default(),
            second: Counters::default(),
            latency: new_hist(),
            connect: new_hist(),
            send_lag: new_hist(),
            second_latency: new_hist(),
            second_in_window: new_hist(),
            second_connect: new_hist(),
            failures: Failures::new(),
            failure_examples: FailureExamples::new(),
            window_start: u64::MAX,
            window_end: u64::MAX,
            pending_expected: 0,
            pending_delivered: 0,
            connect_phase: ConnectPhase::default(),
        }
    }

    fn in_window(&self, intended: u64) -> bool {
        intended >= self.window_start && intended < self.window_end
    }

    /// A data message sent, intended at `intended`.
    pub fn on_sent(&mut self, intended: u64, bytes: usize) {
        let b = bytes as u64;
        for c in [&mut self.all, &mut self.second] {
            c.sent += 1;
            c.bytes_sent += b;
        }
        if self.in_window(intended) {
            self.window.sent += 1;
            self.window.bytes_sent += b;
        }
    }

    /// A reply or delivery of a message intended at `intended`, `latency` after it.
    pub fn on_received(&mut self, intended: u64, latency: u64, bytes: usize) {
        let b = bytes as u64;
        for c in [&mut self.all, &mut self.second] {
            c.received += 1;
            c.bytes_received += b;
        }
        if self.in_window(intended) {
            self.window.received += 1;
            self.window.bytes_received += b;
            record(&mut self.second_in_window, latency);
        } else {
            record(&mut self.second_latency, latency);
        }
        self.pending_delivered += 1;
    }

    /// Add the current second's window messages to the window's histogram (at the end of every
    /// second, and once more when the worker finishes).
    pub fn close_second(&mut self) {
        let _ = self.latency.add(&self.second_in_window);
        self.second_in_window.reset();
    }

    /// A handshake completed `latency` after its intended start.
    pub fn on_connected(&mut self, latency: u64) {
        self.all.connected += 1;
        self.second.connected += 1;
        self.window.connected += 1;
        record(&mut self.connect, latency);
        record(&mut self.second_connect, latency);
    }

    /// A connection attempt failed.
    pub fn on_connect_failed(&mut self, reason: String, message: String) {
        self.all.connect_failed += 1;
        self.second.connect_failed += 1;
        self.window.connect_failed += 1;
        self.failure_examples
            .entry(reason.clone())
            .or_insert(message);
        *self.failures.entry(reason).or_default() += 1;
    }

    /// The server answered a request (`subscribe`, `publish`) with an error code.
    pub fn on_refused(&mut self, request: &str, code: &[u8]) {
        let key = format!("{request} refused: {}", String::from_utf8_lossy(code));
        *self.failures.entry(key).or_default() += 1;
    }

    /// The backend API refused a publish with this status (the publish is lost).
    pub fn on_api_error(&mut self, code: u16) {
        *self.failures.entry(format!("api http {code}")).or_default() += 1;
    }

    /// An open connection was closed by us (`on_purpose`) or lost.
    pub fn on_closed(&mut self, on_purpose: bool, reason: &str) {
        for c in [&mut self.all, &mut self.second, &mut self.window] {
            if on_purpose {
                c.closed += 1;
            } else {
                c.dropped += 1;
            }
        }
        if !on_purpose {
            *self
                .failures
                .entry(format!("dropped: {reason}"))
                .or_default() += 1;
        }
    }

    /// The current second's figures; the second starts over.
    pub fn take_second(&mut self, worker: usize, second: u64, open: u64) -> Tick {
        let mut latency = std::mem::replace(&mut self.second_latency, new_hist());
        // Same bounds on both sides, and every value was clamped into them: adding cannot fail.
        let _ = latency.add(&self.second_in_window);
        self.close_second();
        let connect = std::mem::replace(&mut self.second_connect, new_hist());
        Tick {
            worker,
            second,
            counters: std::mem::take(&mut self.second),
            latency,
            connect,
            open,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_message_is_in_its_second_and_window_messages_in_the_window() {
        let mut m = Meter::new();
        m.window_start = 100;
        m.window_end = 200;
        m.on_received(50, 1_000, 8); // before the window
        m.on_received(150, 2_000, 8); // inside
        let first = m.take_second(0, 0, 1);
        assert_eq!(first.latency.len(), 2);
        assert_eq!(m.latency.len(), 1);
        assert_eq!(m.latency.max(), m.latency.highest_equivalent(2_000));
        m.on_received(199, 3_000, 8); // inside, received in the next second
        m.on_received(200, 4_000, 8); // after
        let second = m.take_second(0, 1, 1);
        assert_eq!(
            second.latency.len(),
            2,
            "every message received in that second"
        );
        assert_eq!(m.latency.len(), 2);
        // The last, partial second is added when the worker finishes.
        m.on_received(150, 5_000, 8);
        m.close_second();
        assert_eq!(m.latency.len(), 3);
        m.close_second();
        assert_eq!(m.latency.len(), 3, "closing twice adds nothing");
        assert_eq!((m.window.received, m.all.received), (3, 5));
    }
}
