//! The soak report (`loadgen watch --html`): the verdict, then the server's RSS, descriptors,
//! threads and CPU over time, drawn with the same inline-SVG charts as a run's report. The fitted
//! RSS line is drawn over the samples it was fitted to, so a reader sees what the slope test saw.

use std::fmt::Write as _;

use anyhow::{Context, Result};

use super::html::{chart, esc, Series};
use crate::watch::Soak;

/// Write the page to `path`.
pub fn write(soak: &Soak, path: &std::path::Path) -> Result<()> {
    std::fs::write(path, render(soak)).with_context(|| format!("writing {}", path.display()))
}

/// The soak as an HTML page.
pub fn render(soak: &Soak) -> String {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let pts = |f: &dyn Fn(&crate::watch::Sample) -> f64| -> Vec<(f64, f64)> {
        soak.samples.iter().map(|s| (s.t_s, f(s))).collect()
    };
    let end = soak.samples.last().map_or(1.0, |s| s.t_s.max(1.0));
    let step = nice_step(end / 8.0);
    let ticks: Vec<(f64, String)> = (0..)
        .map(|i| f64::from(i) * step)
        .take_while(|&t| t <= end)
        .map(|t| (t, fmt_t(t)))
        .collect();
    let m = &soak.memory;
    let warmup = soak.tolerance.map_or(0.0, |t| t.warmup_s);
    // The fitted line, drawn from the first to the last sample it was fitted to.
    let window: Vec<f64> = soak
        .samples
        .iter()
        .filter(|s| s.loaded && s.t_s >= warmup)
        .map(|s| s.t_s)
        .collect();
    let fitted: Vec<(f64, f64)> = match (window.first(), window.last()) {
        (Some(&first), Some(&last)) if m.samples >= 2 => [first, last]
            .into_iter()
            .map(|t| {
                let y = m.fit_start_bytes + m.slope_bytes_per_hour / 3600.0 * (t - first);
                (t, y / (1 << 20) as f64)
            })
            .collect(),
        _ => Vec::new(),
    };
    let verdict = if soak.failures.is_empty() {
        "pass"
    } else {
        "FAIL"
    };
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>soak report: {verdict}</title>\
         <style>body{{font-family:sans-serif;margin:24px;color:#222}}pre{{background:#f6f6f6;padding:12px;white-space:pre-wrap}}\
         svg{{display:block;margin:16px 0}}</style></head><body><h1>soak report: {verdict}</h1>"
    );
    let _ = write!(page, "<pre id=\"summary\">{}</pre>", esc(&soak.summary()));
    page.push_str(&chart(
        "rss-over-time",
        &format!(
            "Server RSS (fitted after the {warmup:.0}s warm-up: {:.0} KiB/h)",
            m.slope_bytes_per_hour / 1024.0
        ),
        "MiB",
        &[
            Series {
                name: "RSS",
                color: "#1f77b4",
                points: pts(&|s| mib(s.rss_bytes)),
            },
            Series {
                name: "fitted line",
                color: "#d62728",
                points: fitted,
            },
        ],
        &ticks,
    ));
    page.push_str(&chart(
        "fds-over-time",
        "Open file descriptors and threads",
        "",
        &[
            Series {
                name: "descriptors",
                color: "#2ca02c",
                points: pts(&|s| s.fds as f64),
            },
            Series {
                name: "threads",
                color: "#9467bd",
                points: pts(&|s| s.threads as f64),
            },
        ],
        &ticks,
    ));
    page.push_str(&chart(
        "cpu-over-time",
        "Server CPU (cores used over each interval)",
        "cores",
        &[Series {
            name: "CPU",
            color: "#ff7f0e",
            points: pts(&|s| s.cpu_cores),
        }],
        &ticks,
    ));
    let _ = writeln!(
        page,
        "<h2>Samples</h2><pre id=\"samples\">{}</pre></body></html>",
        esc(&serde_json::to_string_pretty(&soak.samples).unwrap_or_default())
    );
    page
}

/// A round tick step (1, 2, 5 x 10^k seconds) near `raw`.
fn nice_step(raw: f64) -> f64 {
    let raw = raw.max(1.0);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * mag)
}

fn fmt_t(t: f64) -> String {
    if t >= 120.0 {
        format!("{:.0}m", t / 60.0)
    } else {
        format!("{t:.0}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::{Memory, Sample};

    #[test]
    fn page_has_every_plot_and_the_verdict() {
        let soak = Soak {
            samples: (0..10)
                .map(|i| Sample {
                    t_s: f64::from(i) * 10.0,
                    rss_bytes: 30 << 20,
                    fds: 12,
                    threads: 4,
                    cpu_cores: 0.5,
                    loaded: i < 9,
                    ..Sample::default()
                })
                .collect(),
            memory: Memory {
                rss_start_bytes: 30 << 20,
                ok: true,
                ..Memory::default()
            },
            failures: vec!["descriptors leaked: 12 open before the load, 14 after it".into()],
            ..Soak::default()
        };
        let page = render(&soak);
        for id in ["rss-over-time", "fds-over-time", "cpu-over-time", "samples"] {
            assert!(page.contains(&format!("id=\"{id}\"")), "{id} missing");
        }
        assert!(page.contains("soak report: FAIL"));
        assert!(page.contains("descriptors leaked"));
        assert_eq!(nice_step(7.5), 10.0);
        assert_eq!(nice_step(450.0), 500.0);
    }
}
