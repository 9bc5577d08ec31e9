//! The HdrHistogram interval log: one latency histogram per second of the run (ns; max column in
//! ms), readable by the usual HdrHistogram log tools.

use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, Result};
use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::V2DeflateSerializer;

use super::Report;
use crate::stats::decode_hist;

/// Write `report`'s per-second latency histograms to `path`.
pub fn write(report: &Report, path: &std::path::Path) -> Result<()> {
    let mut out = Vec::new();
    let mut ser = V2DeflateSerializer::new();
    let start = UNIX_EPOCH + Duration::from_millis(report.started_unix_ms);
    {
        let mut log = IntervalLogWriterBuilder::new()
            .add_comment(&format!("loadgen {} latency (ns)", report.scenario))
            .with_start_time(start)
            .with_base_time(start)
            .with_max_value_divisor(1e6)
            .begin_log_with(&mut out, &mut ser)
            .context("hdr log header")?;
        for (point, b64) in report
            .series
            .iter()
            .zip(&report.histograms.latency_per_second)
        {
            let h = decode_hist(b64)?;
            log.write_histogram(
                &h,
                Duration::from_secs(point.t),
                Duration::from_secs(1),
                None,
            )
            .map_err(|e| anyhow::anyhow!("hdr log: {e:?}"))?;
        }
    }
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}
