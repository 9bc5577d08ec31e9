//! `loadgen watch`: a server process watched over a long run (a soak). It samples the server's
//! RSS, open descriptors, threads and CPU from `/proc` at a fixed interval while a load command
//! runs, then waits for the descriptors to come back to their baseline, and judges the run:
//! memory must not keep growing after the warm-up (a least-squares slope over the samples, not one
//! threshold), no descriptor may be left behind, and the load command must succeed.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::report::Report;
use crate::sysinfo::sample_pid;

/// One sample of the server process.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Sample {
    /// Seconds since the baseline sample.
    pub t_s: f64,
    /// Resident set size, bytes (`/proc/PID/status` VmRSS).
    pub rss_bytes: u64,
    /// Open file descriptors (entries of `/proc/PID/fd`).
    pub fds: u64,
    /// Threads (`/proc/PID/status` Threads).
    pub threads: u64,
    /// CPU time so far (user + system), ns.
    pub cpu_ns: u64,
    /// Cores used on average since the previous sample.
    pub cpu_cores: f64,
    /// Whether the load command was still running.
    pub loaded: bool,
}

/// Read one sample of `pid`; `t_s`, `cpu_cores` and `loaded` are the caller's.
pub fn sample(pid: u32) -> Result<Sample> {
    let proc = sample_pid(pid)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("--server-pid {pid}: no such process"))?;
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("--server-pid {pid}: cannot list its descriptors"))?
        .count() as u64;
    Ok(Sample {
        rss_bytes: proc.rss_bytes,
        cpu_ns: proc.cpu_ns,
        fds,
        threads,
        ..Sample::default()
    })
}

/// A least-squares line through points.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Fit {
    /// Units of y per unit of x.
    pub slope: f64,
    /// y at x = 0.
    pub intercept: f64,
    /// Coefficient of determination (1: every point on the line; near 0: no trend).
    pub r2: f64,
}

/// Fit `y = slope * x + intercept`; `None` with fewer than two distinct x values.
pub fn fit(points: &[(f64, f64)]) -> Option<Fit> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let syy: f64 = points.iter().map(|p| (p.1 - my).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let r2 = if syy > 0.0 {
        sxy * sxy / (sxx * syy)
    } else {
        1.0
    };
    Some(Fit {
        slope,
        intercept: my - slope * mx,
        r2,
    })
}

/// What counts as growing memory, and when a run is judged.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct Tolerance {
    /// Samples before this are warm-up (caches, pools and allocator arenas filling up).
    pub warmup_s: f64,
    /// Growth over the post-warm-up window (slope x window) allowed as an absolute figure.
    pub rss_growth_bytes: u64,
    /// ... or as a share of the RSS at the start of the window, whichever is larger.
    pub rss_growth_share: f64,
    /// Descriptors allowed above the baseline once the load is gone (0: none).
    pub fd_slack: u64,
}

/// The judgement on memory.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Memory {
    /// Samples after the warm-up while the load ran (the ones fitted).
    pub samples: usize,
    /// RSS at the first fitted sample, bytes.
    pub rss_start_bytes: u64,
    /// RSS at the last fitted sample, bytes.
    pub rss_end_bytes: u64,
    /// Highest RSS seen, bytes.
    pub rss_max_bytes: u64,
    /// Fitted slope, bytes per hour.
    pub slope_bytes_per_hour: f64,
    /// R² of the fit.
    pub r2: f64,
    /// The fitted line's value at the first fitted sample, bytes (for plotting it).
    pub fit_start_bytes: f64,
    /// Growth the slope implies over the fitted window, bytes.
    pub growth_bytes: f64,
    /// Growth allowed over that window, bytes.
    pub allowed_bytes: f64,
    /// `growth_bytes <= allowed_bytes`, over at least three samples.
    pub ok: bool,
}

/// Judge memory: fit RSS over the samples taken after the warm-up while the load ran, and
/// compare the growth the slope implies over that window with the tolerance. A slope over every
/// sample shrugs off one spike (a burst, an arena) that a single end-minus-start figure would
/// call a leak, and still catches a steady climb that stays under any one threshold.
pub fn judge_memory(samples: &[Sample], tol: &Tolerance) -> Memory {
    let window: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.loaded && s.t_s >= tol.warmup_s)
        .collect();
    let mut m = Memory {
        samples: window.len(),
        rss_max_bytes: samples.iter().map(|s| s.rss_bytes).max().unwrap_or(0),
        ..Memory::default()
    };
    let (Some(first), Some(last)) = (window.first(), window.last()) else {
        return m;
    };
    m.rss_start_bytes = first.rss_bytes;
    m.rss_end_bytes = last.rss_bytes;
    let points: Vec<(f64, f64)> = window.iter().map(|s| (s.t_s, s.rss_bytes as f64)).collect();
    let Some(line) = fit(&points) else { return m };
    let span = last.t_s - first.t_s;
    m.slope_bytes_per_hour = line.slope * 3600.0;
    m.r2 = line.r2;
    m.fit_start_bytes = line.intercept + line.slope * first.t_s;
    m.growth_bytes = line.slope * span;
    m.allowed_bytes =
        (tol.rss_growth_bytes as f64).max(tol.rss_growth_share * first.rss_bytes as f64);
    // Three fitted samples at least: two always make a perfect line.
    m.ok = window.len() >= 3 && m.growth_bytes <= m.allowed_bytes;
    m
}

/// Figures of one load result (`--load-report`), kept with the soak's verdict.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct LoadSummary {
    /// The file it came from.
    pub file: String,
    /// Scenario name.
    pub scenario: String,
    /// Messages sent over the whole run.
    pub sent: u64,
    /// Messages received over the whole run.
    pub received: u64,
    /// Connection failures (every reason).
    pub failed: u64,
    /// Delivery check, for chat and fanout: expected, lost, duplicated, out of order.
    pub expected: u64,
    /// Lost deliveries.
    pub lost: u64,
    /// Duplicated deliveries.
    pub duplicated: u64,
    /// Deliveries out of order.
    pub out_of_order: u64,
    /// Churn storms: connections dropped at once, and of those, reconnected.
    pub storm_dropped: u64,
    /// Storm connections that came back.
    pub storm_reconnected: u64,
}

impl LoadSummary {
    fn read(path: &Path) -> Result<LoadSummary> {
        let r = Report::read_json(path)?;
        let d = r.results.delivery.clone().unwrap_or_default();
        let storm = r.results.storm.clone().unwrap_or_default();
        Ok(LoadSummary {
            file: path.display().to_string(),
            scenario: r.scenario.clone(),
            sent: r.results.all.sent,
            received: r.results.all.received,
            failed: r.results.failures.values().sum(),
            expected: d.expected,
            lost: d.lost,
            duplicated: d.duplicated,
            out_of_order: d.out_of_order,
            storm_dropped: storm.dropped,
            storm_reconnected: storm.reconnected,
        })
    }

    /// A chat run must deliver every message once and in order.
    pub fn integrity_ok(&self) -> bool {
        self.scenario != "chat"
            || (self.lost == 0 && self.duplicated == 0 && self.out_of_order == 0)
    }
}

/// The whole soak: its samples and verdicts.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Soak {
    /// The server's PID.
    pub pid: u32,
    /// The load command.
    pub command: Vec<String>,
    /// Sampling interval, s.
    pub interval_s: f64,
    /// How the run is judged.
    pub tolerance: Option<Tolerance>,
    /// Every sample, the baseline first.
    pub samples: Vec<Sample>,
    /// Memory after the warm-up.
    pub memory: Memory,
    /// Descriptors before the load.
    pub fds_baseline: u64,
    /// Descriptors once the load was gone (after the settle wait).
    pub fds_after: u64,
    /// Threads before the load.
    pub threads_baseline: u64,
    /// Threads after the load.
    pub threads_after: u64,
    /// Server CPU seconds while the load ran.
    pub cpu_s: f64,
    /// Exit code of the load command (-1: killed by a signal).
    pub load_exit: i32,
    /// The load results named with `--load-report`.
    pub loads: Vec<LoadSummary>,
    /// Load reports that could not be read (a load part that never wrote its result).
    pub unread_reports: Vec<String>,
    /// Why the soak failed (empty: it passed).
    pub failures: Vec<String>,
}

impl Soak {
    /// Collect every failed check into `failures`.
    pub fn judge(&mut self, tol: &Tolerance) {
        self.memory = judge_memory(&self.samples, tol);
        self.failures.clear();
        if self.memory.samples < 3 {
            self.failures.push(format!(
                "only {} samples after the {:.0}s warm-up: run longer or sample more often",
                self.memory.samples, tol.warmup_s
            ));
        } else if !self.memory.ok {
            self.failures.push(format!(
                "memory keeps growing: {:.0} KiB/h after the warm-up (R² {:.2}), {:.0} KiB over \
                 the window, {:.0} KiB allowed",
                self.memory.slope_bytes_per_hour / 1024.0,
                self.memory.r2,
                self.memory.growth_bytes / 1024.0,
                self.memory.allowed_bytes / 1024.0
            ));
        }
        if self.fds_after > self.fds_baseline + tol.fd_slack {
            self.failures.push(format!(
                "descriptors leaked: {} open before the load, {} after it",
                self.fds_baseline, self.fds_after
            ));
        }
        if self.load_exit != 0 {
            self.failures
                .push(format!("the load command failed (exit {})", self.load_exit));
        }
        for e in &self.unread_reports {
            self.failures.push(format!("no load result: {e}"));
        }
        for l in &self.loads {
            if !l.integrity_ok() {
                self.failures.push(format!(
                    "chat integrity ({}): {} lost, {} duplicated, {} out of order",
                    l.file, l.lost, l.duplicated, l.out_of_order
                ));
            }
        }
    }

    /// Plain-text summary.
    pub fn summary(&self) -> String {
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        let m = &self.memory;
        let mut s = format!(
            "soak of pid {}: {} samples every {:.0}s\n\
             rss      {:.1} MiB after warm-up -> {:.1} MiB at the end (max {:.1} MiB), slope {:.0} KiB/h (R² {:.2}), growth {:.0} KiB of {:.0} KiB allowed\n\
             fds      {} before the load, {} after it\n\
             threads  {} before, {} after\n\
             cpu      {:.1} s while loaded\n\
             load     exit {}\n",
            self.pid,
            self.samples.len(),
            self.interval_s,
            mib(m.rss_start_bytes),
            mib(m.rss_end_bytes),
            mib(m.rss_max_bytes),
            m.slope_bytes_per_hour / 1024.0,
            m.r2,
            m.growth_bytes / 1024.0,
            m.allowed_bytes / 1024.0,
            self.fds_baseline,
            self.fds_after,
            self.threads_baseline,
            self.threads_after,
            self.cpu_s,
            self.load_exit
        );
        for l in &self.loads {
            s.push_str(&format!(
                "{:<8} sent {}, received {}, failed {}",
                l.scenario, l.sent, l.received, l.failed
            ));
            if l.expected > 0 {
                s.push_str(&format!(
                    "; deliveries expected {}, lost {}, duplicated {}, out of order {}",
                    l.expected, l.lost, l.duplicated, l.out_of_order
                ));
            }
            if l.storm_dropped > 0 {
                s.push_str(&format!(
                    "; storms dropped {}, reconnected {}",
                    l.storm_dropped, l.storm_reconnected
                ));
            }
            s.push('\n');
        }
        if self.failures.is_empty() {
            s.push_str("verdict  pass\n");
        } else {
            for f in &self.failures {
                s.push_str(&format!("FAIL     {f}\n"));
            }
        }
        s
    }
}

/// How to watch.
#[derive(Clone, Debug)]
pub struct WatchOpts {
    /// The server.
    pub pid: u32,
    /// Sampling interval.
    pub interval: Duration,
    /// After the load, wait at most this long for descriptors to come back to the baseline.
    pub settle: Duration,
    /// The judgement.
    pub tolerance: Tolerance,
    /// The load command (program and arguments).
    pub command: Vec<String>,
    /// Load results to read after the load command exits.
    pub load_reports: Vec<PathBuf>,
}

/// Take the baseline, run the load command while sampling, wait for the descriptors to settle,
/// read the load reports and judge.
pub fn run(opts: &WatchOpts) -> Result<Soak> {
    let Some((program, args)) = opts.command.split_first() else {
        bail!("no load command: give it after `--`");
    };
    let start = Instant::now();
    let baseline = sample(opts.pid)?;
    let mut soak = Soak {
        pid: opts.pid,
        command: opts.command.clone(),
        interval_s: opts.interval.as_secs_f64(),
        tolerance: Some(opts.tolerance),
        fds_baseline: baseline.fds,
        threads_baseline: baseline.threads,
        samples: vec![baseline],
        ..Soak::default()
    };
    let mut child = Command::new(program)
        .args(args)
        .spawn()
        .with_context(|| format!("cannot start the load command {program}"))?;
    let mut next = start + opts.interval;
    let status: ExitStatus = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let now = Instant::now();
        if now >= next {
            push_sample(&mut soak, opts.pid, start, true)?;
            next += opts.interval;
        }
        std::thread::sleep(Duration::from_millis(100).min(next.saturating_duration_since(now)));
    };
    soak.load_exit = status.code().unwrap_or(-1);
    soak.cpu_s = soak
        .samples
        .last()
        .map_or(0.0, |s| (s.cpu_ns - baseline.cpu_ns) as f64 / 1e9);
    // The load is gone: closes, close timeouts and reaped sockets take a moment. Sample until the
    // descriptors are back to the baseline or the settle time is over.
    let settle_end = Instant::now() + opts.settle;
    loop {
        push_sample(&mut soak, opts.pid, start, false)?;
        let last = soak.samples[soak.samples.len() - 1];
        soak.fds_after = last.fds;
        soak.threads_after = last.threads;
        if last.fds <= soak.fds_baseline + opts.tolerance.fd_slack || Instant::now() >= settle_end {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    for path in &opts.load_reports {
        match LoadSummary::read(path) {
            Ok(l) => soak.loads.push(l),
            Err(e) => soak.unread_reports.push(format!("{e:#}")),
        }
    }
    soak.judge(&opts.tolerance);
    Ok(soak)
}

fn push_sample(soak: &mut Soak, pid: u32, start: Instant, loaded: bool) -> Result<()> {
    let mut s = sample(pid).context("the server died during the soak")?;
    s.t_s = start.elapsed().as_secs_f64();
    s.loaded = loaded;
    if let Some(prev) = soak.samples.last() {
        let dt = s.t_s - prev.t_s;
        if dt > 0.0 {
            s.cpu_cores = s.cpu_ns.saturating_sub(prev.cpu_ns) as f64 / 1e9 / dt;
        }
    }
    soak.samples.push(s);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn tol() -> Tolerance {
        Tolerance {
            warmup_s: 30.0,
            rss_growth_bytes: 4 * MIB,
            rss_growth_share: 0.05,
            fd_slack: 0,
        }
    }

    /// Samples every 10 s for `secs`, RSS from `rss(t)`, loaded throughout.
    fn series(secs: u32, rss: impl Fn(f64) -> f64) -> Vec<Sample> {
        (0..=secs / 10)
            .map(|i| {
                let t = f64::from(i * 10);
                Sample {
                    t_s: t,
                    rss_bytes: rss(t) as u64,
                    fds: 10,
                    threads: 3,
                    loaded: true,
                    ..Sample::default()
                }
            })
            .collect()
    }

    #[test]
    fn fit_recovers_a_line_and_says_how_well() {
        let f = fit(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]).unwrap();
        assert!((f.slope - 2.0).abs() < 1e-12 && (f.intercept - 1.0).abs() < 1e-12);
        assert!((f.r2 - 1.0).abs() < 1e-12);
        let flat = fit(&[(0.0, 5.0), (1.0, 5.0)]).unwrap();
        assert_eq!(flat.slope, 0.0);
        assert!(fit(&[(1.0, 1.0)]).is_none());
        assert!(fit(&[(1.0, 1.0), (1.0, 2.0)]).is_none());
    }

    #[test]
    fn a_steady_climb_after_warm_up_fails() {
        // 30 MiB plus 20 KiB/s: 70 MiB per hour, under no single threshold early on.
        let s = series(3600, |t| (30 * MIB) as f64 + 20.0 * 1024.0 * t);
        let m = judge_memory(&s, &tol());
        assert!(!m.ok, "{m:?}");
        assert!(
            (m.slope_bytes_per_hour / 1024.0 - 72_000.0).abs() < 1.0,
            "{m:?}"
        );
        assert!(m.r2 > 0.99);
    }

    #[test]
    fn growth_during_warm_up_then_flat_passes() {
        // Fills up for the first 30 s (pools, arenas), then stays within noise of 60 MiB.
        let s = series(600, |t| {
            if t < 30.0 {
                (10 * MIB) as f64 + t * 2.0 * MIB as f64
            } else {
                (60 * MIB) as f64 + ((t / 10.0) as u64 % 3) as f64 * 200_000.0
            }
        });
        let m = judge_memory(&s, &tol());
        assert!(m.ok, "{m:?}");
        assert_eq!(m.samples, 58);
    }

    #[test]
    fn one_spike_is_not_a_leak() {
        // One sample 40 MiB up mid-run, back down afterwards.
        let s = series(600, |t| {
            if (t - 300.0).abs() < 1.0 {
                (100 * MIB) as f64
            } else {
                (60 * MIB) as f64
            }
        });
        let m = judge_memory(&s, &tol());
        assert!(m.ok, "{m:?}");
        assert_eq!(m.rss_max_bytes, 100 * MIB);
    }

    #[test]
    fn samples_after_the_load_are_not_fitted() {
        let mut s = series(300, |_| (50 * MIB) as f64);
        // Memory given back once the load is gone would look like a fall; it is not judged.
        s.push(Sample {
            t_s: 310.0,
            rss_bytes: MIB,
            loaded: false,
            ..Sample::default()
        });
        let m = judge_memory(&s, &tol());
        assert_eq!(m.rss_end_bytes, 50 * MIB);
        assert!(m.ok);
    }

    #[test]
    fn too_few_samples_cannot_pass() {
        let s = series(40, |_| (50 * MIB) as f64);
        let mut soak = Soak {
            samples: s,
            fds_baseline: 10,
            fds_after: 10,
            ..Soak::default()
        };
        soak.judge(&tol());
        assert_eq!(soak.failures.len(), 1, "{:?}", soak.failures);
        assert!(soak.failures[0].contains("only 2 samples"));
    }

    #[test]
    fn leaked_descriptors_chat_loss_and_a_failed_load_each_fail() {
        let mut soak = Soak {
            samples: series(300, |_| (50 * MIB) as f64),
            fds_baseline: 10,
            fds_after: 12,
            load_exit: 3,
            loads: vec![
                LoadSummary {
                    scenario: "chat".into(),
                    lost: 1,
                    ..LoadSummary::default()
                },
                // Fanout loss (a slow reader's) is not a chat integrity failure.
                LoadSummary {
                    scenario: "fanout".into(),
                    lost: 5,
                    ..LoadSummary::default()
                },
            ],
            ..Soak::default()
        };
        soak.judge(&tol());
        assert_eq!(soak.failures.len(), 3, "{:?}", soak.failures);
        assert!(soak.failures[0].contains("descriptors leaked: 10 open before"));
        assert!(soak.failures[1].contains("exit 3"));
        assert!(soak.failures[2].contains("1 lost"));
        soak.fds_after = 10;
        soak.load_exit = 0;
        soak.loads.truncate(0);
        soak.judge(&tol());
        assert!(soak.failures.is_empty(), "{:?}", soak.failures);
        assert!(soak.summary().contains("verdict  pass"));
    }

    #[test]
    fn own_process_has_descriptors_and_threads() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.fds >= 3, "{s:?}");
        assert!(s.threads >= 1 && s.rss_bytes > 0, "{s:?}");
    }
}
