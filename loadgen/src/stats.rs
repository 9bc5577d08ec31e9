//! Measurements a worker keeps without locks: counters and HdrHistograms (ns), for the whole
//! measured window and for the current second. Histograms travel between threads and files as
//! HdrHistogram V2 (deflate) in base64, so results from several processes merge exactly.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency recorded: one hour in ns (larger values are clamped, and counted as such).
pub const MAX_LATENCY_NS: u64 = 3_600_000_000_000;

/// A latency histogram in ns, 3 significant digits.
pub fn new_hist() -> Histogram<u64> {
    // UNWRAP: constant, valid bounds (1 ns .. 1 h, 3 digits).
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).unwrap()
}

/// Record `ns` (clamped into the histogram's range).
pub fn record(h: &mut Histogram<u64>, ns: u64) {
    h.saturating_record(ns.clamp(1, MAX_LATENCY_NS));
}

/// Encode as HdrHistogram V2 deflate, base64.
pub fn encode_hist(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    // UNWRAP-free: serializing into a Vec only fails on I/O, which a Vec never does.
    if V2DeflateSerializer::new().serialize(h, &mut bytes).is_err() {
        bytes.clear();
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decode a base64 HdrHistogram (V2, compressed or not).
pub fn decode_hist(b64: &str) -> Result<Histogram<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .context("histogram is not base64")?;
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| anyhow::anyhow!("bad histogram: {e:?}"))?;
    let mut out = new_hist();
    out.add(&h)
        .map_err(|e| anyhow::anyhow!("histogram range: {e:?}"))?;
    Ok(out)
}

/// The usual percentiles of a histogram, in ns.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Smallest.
    pub min: u64,
    /// Mean (ns).
    pub mean: f64,
    /// 50th.
    pub p50: u64,
    /// 90th.
    pub p90: u64,
    /// 99th.
    pub p99: u64,
    /// 99.9th.
    pub p999: u64,
    /// 99.99th.
    pub p9999: u64,
    /// Largest.
    pub max: u64,
}

impl Percentiles {
    /// Percentiles of `h` (all zero when empty).
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            min: h.min(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            p9999: h.value_at_quantile(0.9999),
            max: h.max(),
        }
    }
}

/// Event counts; the same type serves the whole run, one second, and one worker.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Counters {
    /// Data messages sent (echo requests, publishes, chat messages).
    pub sent: u64,
    /// Data messages received (echo replies, deliveries).
    pub received: u64,
    /// Payload bytes sent.
    pub bytes_sent: u64,
    /// Payload bytes received.
    pub bytes_received: u64,
    /// Handshakes completed.
    pub connected: u64,
    /// Connection attempts that failed (by reason in the result).
    pub connect_failed: u64,
    /// Connections we closed on purpose (churn departures, storms, the end).
    pub closed: u64,
    /// Connections the server closed or broke while we wanted them.
    pub dropped: u64,
}

impl Counters {
    /// Add another set of counts.
    pub fn add(&mut self, o: &Counters) {
        self.sent += o.sent;
        self.received += o.received;
        self.bytes_sent += o.bytes_sent;
        self.bytes_received += o.bytes_received;
        self.connected += o.connected;
        self.connect_failed += o.connect_failed;
        self.closed += o.closed;
        self.dropped += o.dropped;
    }
}

/// Delivery correctness for broadcast scenarios, summed over subscribers.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Delivery {
    /// Deliveries the publishes called for (subscribers x publishes in their group).
    pub expected: u64,
    /// Distinct deliveries seen.
    pub unique: u64,
    /// Expected but never seen.
    pub lost: u64,
    /// Seen more than once.
    pub duplicated: u64,
    /// Seen after a later message of the same publisher.
    pub out_of_order: u64,
    /// Messages from publishers outside the subscriber's group, or without a stamp.
    pub foreign: u64,
    /// Subscribers that lost at least one message.
    pub subscribers_with_loss: u64,
    /// Largest loss of one subscriber.
    pub max_lost_per_subscriber: u64,
}

impl Delivery {
    /// Add another subscriber set's figures.
    pub fn add(&mut self, o: &Delivery) {
        self.expected += o.expected;
        self.unique += o.unique;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.out_of_order += o.out_of_order;
        self.foreign += o.foreign;
        self.subscribers_with_loss += o.subscribers_with_loss;
        self.max_lost_per_subscriber = self.max_lost_per_subscriber.max(o.max_lost_per_subscriber);
    }
}

/// Failure counts by reason ("refused", "timeout", "http 503", ...).
pub type Failures = BTreeMap<String, u64>;
