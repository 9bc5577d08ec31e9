//! The human summary printed at the end of a run.

use std::fmt::Write as _;

use super::{fmt_count, fmt_ns, Report};
use crate::stats::Percentiles;

fn lat_row(out: &mut String, name: &str, p: &Percentiles) {
    let _ = writeln!(
        out,
        "  {name:<10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}   (n={})",
        fmt_ns(p.p50),
        fmt_ns(p.p90),
        fmt_ns(p.p99),
        fmt_ns(p.p999),
        fmt_ns(p.p9999),
        fmt_ns(p.max),
        fmt_count(p.count as f64)
    );
}

/// The summary table as text.
pub fn render(report: &Report) -> String {
    let r = &report.results;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{} — {} process(es), {} client thread(s), measured {:.1}s",
        report.scenario, r.processes, r.threads, r.measured_s
    );
    let _ = writeln!(
        out,
        "  connections  planned {}  opened {}  failed {}  closed {}  dropped {}",
        fmt_count(r.planned_connections as f64),
        fmt_count(r.all.connected as f64),
        fmt_count(r.all.connect_failed as f64),
        fmt_count(r.all.closed as f64),
        fmt_count(r.all.dropped as f64),
    );
    if r.connect_rate > 0.0 {
        let _ = writeln!(
            out,
            "  connect      {}/s: {} connections in {} (first SYN to last 101)",
            fmt_count(r.connect_rate),
            fmt_count(r.connect_phase_connections as f64),
            fmt_ns((r.connect_phase_seconds * 1e9) as u64),
        );
    }
    for (reason, n) in &r.failures {
        let _ = writeln!(out, "    {reason}: {}", fmt_count(*n as f64));
    }
    if r.all.sent > 0 || r.all.received > 0 {
        let _ = writeln!(
            out,
            "  messages     sent {} ({}/s)  received {} ({}/s)  [whole run: sent {} received {}]",
            fmt_count(r.window.sent as f64),
            fmt_count(r.send_rate),
            fmt_count(r.window.received as f64),
            fmt_count(r.receive_rate),
            fmt_count(r.all.sent as f64),
            fmt_count(r.all.received as f64),
        );
    }
    let _ = writeln!(
        out,
        "  latency      {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "p50", "p90", "p99", "p99.9", "p99.99", "max"
    );
    if r.latency.count > 0 {
        lat_row(&mut out, "message", &r.latency);
    }
    if r.connect_latency.count > 0 {
        lat_row(&mut out, "handshake", &r.connect_latency);
    }
    if r.send_lag.count > 0 {
        lat_row(&mut out, "send lag", &r.send_lag);
        if r.send_lag.p99 > 1_000_000 {
            let _ = writeln!(
                out,
                "  WARNING: open-loop sends left up to {} (p99) after their intended time: loadgen \
                 could not keep its schedule (CPU starved or saturated); latency still counts from \
                 the intended time",
                fmt_ns(r.send_lag.p99)
            );
        }
    }
    if let Some(d) = &r.delivery {
        let _ = writeln!(
            out,
            "  delivery     expected {}  delivered {}  lost {}  duplicated {}  out of order {}  foreign {}  subscribers with loss {}",
            fmt_count(d.expected as f64),
            fmt_count(d.unique as f64),
            fmt_count(d.lost as f64),
            fmt_count(d.duplicated as f64),
            fmt_count(d.out_of_order as f64),
            fmt_count(d.foreign as f64),
            fmt_count(d.subscribers_with_loss as f64),
        );
    } else if r.unanswered > 0 {
        let _ = writeln!(out, "  unanswered   {}", fmt_count(r.unanswered as f64));
    }
    if let Some(s) = &r.storm {
        let _ = writeln!(
            out,
            "  storm        dropped {}  reconnected {}  all back after {}",
            s.dropped,
            s.reconnected,
            fmt_ns(s.all_back_ns)
        );
    }
    if r.unsent > 0 {
        let _ = writeln!(
            out,
            "  unsent       {} scheduled sends found no open connection",
            r.unsent
        );
    }
    let c = &r.client_cpu;
    let _ = writeln!(
        out,
        "  loadgen cpu  {:.2} cores used, busiest thread {:.0}%{}",
        c.cores_used,
        c.busiest_thread * 100.0,
        if c.saturated {
            "  — WARNING: loadgen saturated, its own limits may be in these figures"
        } else {
            ""
        }
    );
    if c.cpu_us_per_message > 0.0 {
        let ratio = if c.cpu_ratio_to_server > 0.0 {
            format!(" ({:.2}x the server's CPU)", c.cpu_ratio_to_server)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  loadgen cost {:.3} us CPU per message{ratio}, {:.0}% of it in the kernel",
            c.cpu_us_per_message,
            share(c.system_s, c.cpu_s) * 100.0
        );
    }
    if let Some(s) = &r.server {
        if s.rss_bytes > 0 {
            let _ = writeln!(
                out,
                "  server       rss {:.1} MiB (baseline {:.1} MiB), {:.0} bytes per connection",
                s.rss_bytes as f64 / 1048576.0,
                s.rss_baseline_bytes as f64 / 1048576.0,
                s.rss_per_connection_bytes
            );
        }
        if s.cpu_s > 0.0 {
            let _ = writeln!(
                out,
                "  server cpu   {:.2}s: {:.3} us per connection-second, {:.3} us per message, \
                 {:.0}% in the kernel",
                s.cpu_s,
                s.cpu_us_per_connection_second,
                s.cpu_us_per_message,
                share(s.system_s, s.cpu_s) * 100.0
            );
        }
        if !s.metrics_delta.is_empty() {
            let _ = writeln!(out, "  server metrics changed over the window:");
            for (k, v) in s.metrics_delta.iter().take(20) {
                let _ = writeln!(out, "    {k} {v:+}");
            }
        }
    }
    out
}

/// `part` over `whole` (0 when there is no whole).
fn share(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        (part / whole).clamp(0.0, 1.0)
    } else {
        0.0
    }
}
