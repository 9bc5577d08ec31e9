//! The HTML report: one self-contained file (inline SVG, no scripts, no network) with the summary
//! table and three plots: the latency percentile distribution, the rate over time and the latency
//! percentiles over time.

use std::fmt::Write as _;

use anyhow::{Context, Result};

use super::{table, Report};
use crate::stats::decode_hist;

/// One line of a chart.
pub(super) struct Series<'a> {
    pub(super) name: &'a str,
    pub(super) color: &'a str,
    pub(super) points: Vec<(f64, f64)>,
}

const W: f64 = 860.0;
const H: f64 = 300.0;
const ML: f64 = 70.0;
const MR: f64 = 20.0;
const MT: f64 = 30.0;
const MB: f64 = 45.0;

pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A "nice" upper bound for an axis.
fn nice(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(max.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if max <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

/// A line chart; `x_label_of` turns an x value into its tick label.
pub(super) fn chart(
    id: &str,
    title: &str,
    y_unit: &str,
    series: &[Series<'_>],
    x_ticks: &[(f64, String)],
) -> String {
    let x_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .chain(x_ticks.iter().map(|t| t.0))
        .fold(1e-9, f64::max);
    let y_max = nice(
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(0.0, f64::max),
    );
    let pw = W - ML - MR;
    let ph = H - MT - MB;
    let sx = |x: f64| ML + x / x_max * pw;
    let sy = |y: f64| MT + ph - y / y_max * ph;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg id="{id}" class="plot" xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="18" font-size="14" font-weight="bold">{}</text>"#,
        ML,
        esc(title)
    );
    for i in 0..=5 {
        let y = y_max * f64::from(i) / 5.0;
        let py = sy(y);
        let _ = write!(
            s,
            r##"<line x1="{ML}" x2="{}" y1="{py:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{} {}</text>"##,
            W - MR,
            ML - 6.0,
            py + 4.0,
            trim_num(y),
            y_unit
        );
    }
    for (x, label) in x_ticks {
        let px = sx(*x);
        let _ = write!(
            s,
            r##"<line x1="{px:.1}" x2="{px:.1}" y1="{MT}" y2="{:.1}" stroke="#eee"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            MT + ph,
            MT + ph + 16.0,
            esc(label)
        );
    }
    let _ = write!(
        s,
        r##"<rect x="{ML}" y="{MT}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>"##
    );
    for (i, ser) in series.iter().enumerate() {
        let pts: Vec<String> = ser
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
            ser.color,
            pts.join(" ")
        );
        let lx = ML + 10.0 + 150.0 * i as f64;
        let _ = write!(
            s,
            r#"<rect x="{lx}" y="{}" width="12" height="3" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            H - 12.0,
            ser.color,
            lx + 16.0,
            H - 8.0,
            esc(ser.name)
        );
    }
    s.push_str("</svg>");
    s
}

fn trim_num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// Write the report to `path`.
pub fn write(report: &Report, path: &std::path::Path) -> Result<()> {
    std::fs::write(path, render(report)?).with_context(|| format!("writing {}", path.display()))
}

/// The report as an HTML page.
pub fn render(report: &Report) -> Result<String> {
    // Scenarios without messages (connect, idle, churn) plot the handshake latency instead.
    let mut hist = decode_hist(&report.histograms.latency)?;
    let mut dist_title = "Message latency by percentile (measured window)";
    if hist.is_empty() {
        hist = decode_hist(&report.histograms.connect)?;
        dist_title = "Handshake latency by percentile (every connection)";
    }
    // Percentile distribution on a "nines" axis: x = log10(1 / (1 - q)).
    let mut dist = Vec::new();
    if !hist.is_empty() {
        for k in 0..=100 {
            let nines = f64::from(k) * 0.05; // up to 99.999%
            let q = 1.0 - 10f64.powf(-nines);
            dist.push((nines, hist.value_at_quantile(q) as f64 / 1e6));
        }
    }
    let nine_ticks: Vec<(f64, String)> = ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
        .iter()
        .enumerate()
        .map(|(i, l)| (i as f64, l.to_string()))
        .collect();
    let t_ticks = |n: usize| -> Vec<(f64, String)> {
        let step = (n / 10).max(1);
        (0..=n)
            .step_by(step)
            .map(|t| (t as f64, format!("{t}s")))
            .collect()
    };
    let n = report.series.len();
    let t = |p: &super::Point| p.t as f64 + 1.0;
    let recv: Vec<(f64, f64)> = report
        .series
        .iter()
        .map(|p| (t(p), p.counters.received as f64))
        .collect();
    let sent: Vec<(f64, f64)> = report
        .series
        .iter()
        .map(|p| (t(p), p.counters.sent as f64))
        .collect();
    let conns: Vec<(f64, f64)> = report
        .series
        .iter()
        .map(|p| (t(p), p.counters.connected as f64))
        .collect();
    let p99: Vec<(f64, f64)> = report
        .series
        .iter()
        .map(|p| (t(p), p.p99_ns as f64 / 1e6))
        .collect();
    let p50: Vec<(f64, f64)> = report
        .series
        .iter()
        .map(|p| (t(p), p.p50_ns as f64 / 1e6))
        .collect();
    let mut page = String::new();
    let title = format!("loadgen {} report", report.scenario);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
         <style>body{{font-family:sans-serif;margin:24px;color:#222}}pre{{background:#f6f6f6;padding:12px;white-space:pre-wrap}}\
         svg{{display:block;margin:16px 0}}</style></head><body><h1>{}</h1>",
        esc(&title),
        esc(&title)
    );
    let _ = write!(
        page,
        "<pre id=\"summary\">{}</pre>",
        esc(&table::render(report))
    );
    page.push_str(&chart(
        "latency-distribution",
        dist_title,
        "ms",
        &[Series {
            name: "latency",
            color: "#1f77b4",
            points: dist,
        }],
        &nine_ticks,
    ));
    page.push_str(&chart(
        "rate-over-time",
        "Messages per second over time",
        "/s",
        &[
            Series {
                name: "received/s",
                color: "#2ca02c",
                points: recv,
            },
            Series {
                name: "sent/s",
                color: "#ff7f0e",
                points: sent,
            },
            Series {
                name: "connects/s",
                color: "#9467bd",
                points: conns,
            },
        ],
        &t_ticks(n),
    ));
    page.push_str(&chart(
        "latency-over-time",
        "Latency over time (messages received in each second)",
        "ms",
        &[
            Series {
                name: "p99",
                color: "#d62728",
                points: p99,
            },
            Series {
                name: "p50",
                color: "#1f77b4",
                points: p50,
            },
        ],
        &t_ticks(n),
    ));
    let open: Vec<(f64, f64)> = report
        .series
        .iter()
        .map(|p| (t(p), p.open as f64))
        .collect();
    page.push_str(&chart(
        "connections-over-time",
        "Open connections over time",
        "",
        &[Series {
            name: "open",
            color: "#8c564b",
            points: open,
        }],
        &t_ticks(n),
    ));
    let _ = writeln!(
        page,
        "<h2>Configuration</h2><pre id=\"config\">{}</pre><h2>Machines</h2><pre>{}</pre></body></html>",
        esc(&serde_json::to_string_pretty(&report.config).unwrap_or_default()),
        esc(&serde_json::to_string_pretty(&report.machines).unwrap_or_default())
    );
    Ok(page)
}
