//! Pass/fail thresholds for CI (`--expect "p99<50ms,loss=0"`), also the objective of `capacity`.
//!
//! A threshold is `METRIC OP VALUE`: latency metrics (`p50 p90 p99 p999 p9999 max mean`, also
//! `connect_p99` etc.) take durations (`50ms`, `1s`); counts and rates (`loss`, `dup`,
//! `failed`, `dropped`, `rate`, `sent_rate`, `connected`, `unanswered`) take numbers.

use anyhow::{bail, Context, Result};

use crate::report::Results;

/// Comparison.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

/// One parsed threshold.
#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    text: String,
    metric: String,
    op: Op,
    value: f64,
}

/// Parse a comma list of thresholds.
pub fn parse(spec: &str) -> Result<Vec<Threshold>> {
    spec.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse_one)
        .collect()
}

fn parse_one(s: &str) -> Result<Threshold> {
    let at = s
        .find(['<', '>', '='])
        .with_context(|| format!("threshold '{s}': expected METRIC<VALUE, METRIC=VALUE, ..."))?;
    let metric = s[..at].trim().to_ascii_lowercase();
    let rest = &s[at..];
    let (op, value) = if let Some(v) = rest.strip_prefix("<=") {
        (Op::Le, v)
    } else if let Some(v) = rest.strip_prefix(">=") {
        (Op::Ge, v)
    } else if let Some(v) = rest.strip_prefix("==") {
        (Op::Eq, v)
    } else if let Some(v) = rest.strip_prefix('<') {
        (Op::Lt, v)
    } else if let Some(v) = rest.strip_prefix('>') {
        (Op::Gt, v)
    } else {
        (Op::Eq, &rest[1..])
    };
    let value = value.trim();
    let is_latency = latency_metric(&metric).is_some();
    let value = if is_latency {
        match value.parse::<f64>() {
            Ok(v) => v * 1e6, // a bare number is ms
            Err(_) => humantime::parse_duration(value)
                .with_context(|| format!("threshold '{s}': bad duration '{value}'"))?
                .as_nanos() as f64,
        }
    } else {
        value
            .parse::<f64>()
            .with_context(|| format!("threshold '{s}': bad number '{value}'"))?
    };
    if !is_latency && count_metric(&metric, &Results::default()).is_none() {
        bail!("threshold '{s}': unknown metric '{metric}'");
    }
    Ok(Threshold {
        text: s.to_string(),
        metric,
        op,
        value,
    })
}

fn latency_metric(m: &str) -> Option<(bool, &str)> {
    let (connect, name) = match m.strip_prefix("connect_") {
        Some(n) => (true, n),
        None => (false, m),
    };
    [
        "p50", "p90", "p99", "p999", "p99.9", "p9999", "p99.99", "max", "mean", "min",
    ]
    .contains(&name)
    .then_some((connect, name))
}

fn count_metric(m: &str, r: &Results) -> Option<f64> {
    let d = r.delivery.clone().unwrap_or_default();
    Some(match m {
        "loss" | "lost" => (d.lost + r.unanswered) as f64,
        "dup" | "duplicated" => d.duplicated as f64,
        "out_of_order" | "reordered" => d.out_of_order as f64,
        "failed" | "errors" => r.all.connect_failed as f64,
        "dropped" => r.all.dropped as f64,
        "connected" => r.all.connected as f64,
        "rate" | "recv_rate" | "deliveries" => r.receive_rate,
        "sent_rate" => r.send_rate,
        "unanswered" => r.unanswered as f64,
        "unsent" => r.unsent as f64,
        _ => return None,
    })
}

/// The value a threshold's metric has in `r`.
fn value_of(t: &Threshold, r: &Results) -> f64 {
    if let Some((connect, name)) = latency_metric(&t.metric) {
        let p = if connect {
            &r.connect_latency
        } else {
            &r.latency
        };
        return match name {
            "p50" => p.p50 as f64,
            "p90" => p.p90 as f64,
            "p99" => p.p99 as f64,
            "p999" | "p99.9" => p.p999 as f64,
            "p9999" | "p99.99" => p.p9999 as f64,
            "max" => p.max as f64,
            "min" => p.min as f64,
            _ => p.mean,
        };
    }
    count_metric(&t.metric, r).unwrap_or(f64::NAN)
}

/// Failed thresholds with the value seen; empty when all pass.
pub fn check(thresholds: &[Threshold], r: &Results) -> Vec<String> {
    thresholds
        .iter()
        .filter_map(|t| {
            let v = value_of(t, r);
            let ok = match t.op {
                Op::Lt => v < t.value,
                Op::Le => v <= t.value,
                Op::Gt => v > t.value,
                Op::Ge => v >= t.value,
                Op::Eq => (v - t.value).abs() < 1e-9,
            };
            let shown = if latency_metric(&t.metric).is_some() {
                crate::report::fmt_ns(v as u64)
            } else {
                format!("{v}")
            };
            (!ok).then(|| format!("{} (was {shown})", t.text))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_and_check() {
        let t = parse("p99<50ms, loss=0, rate>=100").unwrap();
        let mut r = Results::default();
        r.latency.p99 = 10_000_000;
        r.receive_rate = 150.0;
        assert!(check(&t, &r).is_empty());
        r.latency.p99 = 60_000_000;
        r.unanswered = 2;
        let failed = check(&t, &r);
        assert_eq!(failed.len(), 2, "{failed:?}");
        assert!(failed[0].contains("60.00ms"));
    }

    #[test]
    fn unknown_metric_is_an_error() {
        assert!(parse("latency<5").is_err());
        assert!(parse("p99<fast").is_err());
    }
}
