//! `loadgen merge`: combine result files from several loadgen processes (or machines) into one
//! report. Histograms are added (never percentiles averaged), counters summed, and the per-second
//! series aligned on wall-clock time.

use std::collections::BTreeMap;

use anyhow::{bail, Result};

use crate::report::{Point, Report};
use crate::stats::{decode_hist, encode_hist, new_hist, Percentiles};

/// Fold one result's connect phase into the merged one: the merged phase runs from the earliest
/// first SYN to the latest last 101 (wall clock), and its rate is recomputed over it at the end.
/// Results without those instants (older files) keep the old approximation: the longest phase,
/// rates summed.
fn merge_connect_phase(res: &mut crate::report::Results, x: &crate::report::Results) {
    res.connect_phase_connections += x.connect_phase_connections;
    if x.connect_phase_start_unix_ns == 0 {
        res.connect_phase_seconds = res.connect_phase_seconds.max(x.connect_phase_seconds);
        res.connect_rate += x.connect_rate;
        return;
    }
    res.connect_phase_start_unix_ns = match res.connect_phase_start_unix_ns {
        0 => x.connect_phase_start_unix_ns,
        s => s.min(x.connect_phase_start_unix_ns),
    };
    res.connect_phase_end_unix_ns = res
        .connect_phase_end_unix_ns
        .max(x.connect_phase_end_unix_ns);
}

/// The merged connect phase's length and rate, once every result is folded in.
fn finish_connect_phase(res: &mut crate::report::Results) {
    if res.connect_phase_end_unix_ns > res.connect_phase_start_unix_ns {
        res.connect_phase_seconds =
            (res.connect_phase_end_unix_ns - res.connect_phase_start_unix_ns) as f64 / 1e9;
        res.connect_rate = res.connect_phase_connections as f64 / res.connect_phase_seconds;
    }
}

/// Merge reports of the same scenario.
pub fn merge(reports: &[Report]) -> Result<Report> {
    let Some(first) = reports.first() else {
        bail!("nothing to merge");
    };
    if let Some(other) = reports.iter().find(|r| r.scenario != first.scenario) {
        bail!(
            "cannot merge a '{}' result with a '{}' result",
            first.scenario,
            other.scenario
        );
    }
    let start_ms = reports.iter().map(|r| r.started_unix_ms).min().unwrap_or(0);
    let mut latency = new_hist();
    let mut connect = new_hist();
    let mut send_lag = new_hist();
    let mut out = first.clone();
    out.commands.clear();
    out.machines.clear();
    out.started_unix_ms = start_ms;
    let res = &mut out.results;
    *res = Default::default();
    let servers: Vec<&crate::report::Server> = reports
        .iter()
        .filter_map(|r| r.results.server.as_ref())
        .collect();
    let mut series: BTreeMap<u64, (Point, hdrhistogram::Histogram<u64>)> = BTreeMap::new();
    for r in reports {
        out.commands.extend(r.commands.iter().cloned());
        out.machines.extend(r.machines.iter().cloned());
        latency
            .add(decode_hist(&r.histograms.latency)?)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        connect
            .add(decode_hist(&r.histograms.connect)?)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        if !r.histograms.send_lag.is_empty() {
            send_lag
                .add(decode_hist(&r.histograms.send_lag)?)
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        }
        let x = &r.results;
        res.processes += x.processes.max(1);
        res.threads += x.threads;
        res.measured_s = res.measured_s.max(x.measured_s);
        res.planned_connections += x.planned_connections;
        merge_connect_phase(res, x);
        res.window.add(&x.window);
        res.all.add(&x.all);
        res.receive_rate += x.receive_rate;
        res.send_rate += x.send_rate;
        for (k, v) in &x.failures {
            *res.failures.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &x.failure_examples {
            res.failure_examples.entry(k.clone()).or_insert(v.clone());
        }
        res.unanswered += x.unanswered;
        if let Some(d) = &x.delivery {
            res.delivery.get_or_insert_with(Default::default).add(d);
        }
        if let Some(s) = &x.storm {
            let m = res.storm.get_or_insert_with(Default::default);
            m.dropped += s.dropped;
            m.reconnected += s.reconnected;
            m.all_back_ns = m.all_back_ns.max(s.all_back_ns);
        }
        res.unsent += x.unsent;
        res.open_at_run_start += x.open_at_run_start;
        res.client_cpu.cpu_s += x.client_cpu.cpu_s;
        res.client_cpu.system_s += x.client_cpu.system_s;
        res.client_cpu.cores_used += x.client_cpu.cores_used;
        res.client_cpu.busiest_thread = res
            .client_cpu
            .busiest_thread
            .max(x.client_cpu.busiest_thread);
        res.client_cpu.saturated |= x.client_cpu.saturated;
        let offset = (r.started_unix_ms - start_ms + 500) / 1000;
        for (p, h) in r.series.iter().zip(&r.histograms.latency_per_second) {
            let t = p.t + offset;
            let e = series.entry(t).or_insert_with(|| {
                (
                    Point {
                        t,
                        phase: p.phase.clone(),
                        ..Point::default()
                    },
                    new_hist(),
                )
            });
            e.0.counters.add(&p.counters);
            e.0.open += p.open;
            e.0.connect_p99_ns = e.0.connect_p99_ns.max(p.connect_p99_ns);
            let _ = e.1.add(decode_hist(h)?);
        }
    }
    finish_connect_phase(res);
    res.server = merge_server(&servers, res);
    recompute_client(res);
    res.latency = Percentiles::of(&latency);
    res.connect_latency = Percentiles::of(&connect);
    res.send_lag = Percentiles::of(&send_lag);
    out.histograms.send_lag = encode_hist(&send_lag);
    out.histograms.latency = encode_hist(&latency);
    out.histograms.connect = encode_hist(&connect);
    out.series.clear();
    out.histograms.latency_per_second.clear();
    for (_, (mut p, h)) in series {
        p.p50_ns = h.value_at_quantile(0.5);
        p.p99_ns = h.value_at_quantile(0.99);
        out.series.push(p);
        out.histograms.latency_per_second.push(encode_hist(&h));
    }
    Ok(out)
}

/// One server seen by several load processes: the lowest baseline, the highest RSS and CPU time
/// (the processes' windows overlap), and the per-connection and per-message figures recomputed
/// over all processes' connections and messages.
pub fn merge_server(
    servers: &[&crate::report::Server],
    res: &crate::report::Results,
) -> Option<crate::report::Server> {
    let first = servers.first()?;
    let mut s = (*first).clone();
    s.rss_baseline_bytes = servers
        .iter()
        .map(|x| x.rss_baseline_bytes)
        .min()
        .unwrap_or(0);
    s.rss_bytes = servers.iter().map(|x| x.rss_bytes).max().unwrap_or(0);
    // Every process watched the same server over (nearly) the same window: the longest look.
    if let Some(longest) = servers.iter().max_by(|a, b| a.cpu_s.total_cmp(&b.cpu_s)) {
        s.cpu_s = longest.cpu_s;
        s.system_s = longest.system_s;
    }
    recompute_server(&mut s, res);
    Some(s)
}

/// Per-connection and per-message server figures from the totals.
pub fn recompute_server(s: &mut crate::report::Server, res: &crate::report::Results) {
    let conns = res.open_at_run_start as f64;
    s.rss_per_connection_bytes = if conns > 0.0 {
        s.rss_bytes.saturating_sub(s.rss_baseline_bytes) as f64 / conns
    } else {
        0.0
    };
    let cpu_us = s.cpu_s * 1e6;
    s.cpu_us_per_connection_second = if conns > 0.0 && res.measured_s > 0.0 {
        cpu_us / (conns * res.measured_s)
    } else {
        0.0
    };
    s.cpu_us_per_message = if res.window.received > 0 {
        cpu_us / res.window.received as f64
    } else {
        0.0
    };
}

/// loadgen's CPU per message and its ratio to the server's, from the totals (every process's
/// CPU over every process's messages; the server's CPU as [`merge_server`] takes it).
pub fn recompute_client(res: &mut crate::report::Results) {
    let c = &mut res.client_cpu;
    c.cpu_us_per_message = if res.window.received > 0 {
        c.cpu_s * 1e6 / res.window.received as f64
    } else {
        0.0
    };
    c.cpu_ratio_to_server = match &res.server {
        Some(s) if s.cpu_s > 0.0 => c.cpu_s / s.cpu_s,
        _ => 0.0,
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Results;

    fn phase(start: u64, end: u64, connections: u64) -> Results {
        let seconds = (end - start) as f64 / 1e9;
        Results {
            connect_phase_start_unix_ns: start,
            connect_phase_end_unix_ns: end,
            connect_phase_connections: connections,
            connect_phase_seconds: seconds,
            connect_rate: connections as f64 / seconds,
            ..Results::default()
        }
    }

    #[test]
    fn connect_phases_merge_over_their_union_not_by_summing_rates() {
        // 1,000 connections in [0, 1 s] and 1,000 in [0.5 s, 2 s]: 2,000 in 2 s.
        let mut res = Results::default();
        merge_connect_phase(&mut res, &phase(10_000_000_000, 11_000_000_000, 1000));
        merge_connect_phase(&mut res, &phase(10_500_000_000, 12_000_000_000, 1000));
        assert_eq!(res.connect_phase_start_unix_ns, 10_000_000_000);
        assert_eq!(res.connect_phase_end_unix_ns, 12_000_000_000);
        assert_eq!(res.connect_phase_connections, 2000);
        finish_connect_phase(&mut res);
        assert_eq!(res.connect_phase_seconds, 2.0);
        assert_eq!(res.connect_rate, 1000.0);
    }
}
