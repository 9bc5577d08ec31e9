//! The coordinator: starts one pinned worker per thread, moves them through the phases (connect,
//! warm-up and run, drain, stop), turns their per-second ticks into the time series and the live
//! progress line, samples the server and its own CPU at the window's edges, and builds the
//! [`Report`].

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use mio::Waker;

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;

use crate::clock::{ns, Clock, SEC};
use crate::plan::Plan;
use crate::report::{fmt_count, fmt_ns, ClientCpu, Histograms, Point, Report, Results, Server};
use crate::stats::{encode_hist, new_hist, Counters, Delivery, Percentiles};
use crate::sysinfo::{self, CpuTime, ProcSample};
use crate::worker::{self, phase, Shared, Tick, WorkerInit, WorkerResult};

/// A worker thread: what it measured, or why it stopped.
type WorkerHandle = JoinHandle<std::io::Result<WorkerResult>>;

/// Options of a run besides the plan.
#[derive(Clone, Debug, Default)]
pub struct RunOpts {
    /// Command line, for the record.
    pub command: Vec<String>,
    /// Scenario configuration, for the record.
    pub config: serde_json::Value,
    /// Server PID.
    pub server_pid: Option<u32>,
    /// Server metrics URL.
    pub server_metrics: Option<String>,
    /// Print progress lines.
    pub progress: bool,
}

/// File descriptors a plan needs besides its connections (poll, waker, timer per thread, stdio).
const FD_MARGIN: u64 = 64;

/// Check that the connection count fits in this process's descriptor limit (raised first).
pub fn check_fds(planned: u64, threads: usize, limit: u64) -> Result<()> {
    let need = planned + FD_MARGIN + 4 * threads as u64;
    if need > limit {
        bail!(
            "{} connections need ~{need} file descriptors; this process may open {limit}. \
             Use --processes N to split the load over N loadgen processes, or run several \
             loadgen processes (each with --json) and combine them with `loadgen merge`, or \
             raise the hard limit (ulimit -Hn).",
            planned
        );
    }
    Ok(())
}

/// One second's ticks summed over the workers that reported it so far.
struct Aggregate {
    counters: Counters,
    latency: Histogram<u64>,
    connect: Histogram<u64>,
    open: u64,
    workers: usize,
}

/// The per-second time series: every worker's tick for a second is summed, and the second
/// becomes a [`Point`] (and a progress line) once all workers reported it.
struct Series {
    threads: usize,
    pending: BTreeMap<u64, Aggregate>,
    points: Vec<Point>,
    hists: Vec<String>,
    /// Connections open in the last complete second.
    last_open: u64,
    progress: bool,
    tty: bool,
}

impl Series {
    fn new(threads: usize, progress: bool) -> Series {
        Series {
            threads,
            pending: BTreeMap::new(),
            points: Vec::new(),
            hists: Vec::new(),
            last_open: 0,
            progress,
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// Add one worker's tick; complete seconds are labelled with the phase of `phases`.
    fn on_tick(&mut self, t: Tick, phases: &Phases) {
        let a = self.pending.entry(t.second).or_insert_with(|| Aggregate {
            counters: Counters::default(),
            latency: new_hist(),
            connect: new_hist(),
            open: 0,
            workers: 0,
        });
        a.counters.add(&t.counters);
        let _ = a.latency.add(&t.latency);
        let _ = a.connect.add(&t.connect);
        a.open += t.open;
        a.workers += 1;
        while let Some(entry) = self.pending.first_entry() {
            if entry.get().workers < self.threads {
                break;
            }
            let (second, a) = entry.remove_entry();
            let point = Point {
                t: second,
                phase: phases.name_of(second).into(),
                counters: a.counters,
                open: a.open,
                p50_ns: a.latency.value_at_quantile(0.5),
                p99_ns: a.latency.value_at_quantile(0.99),
                connect_p99_ns: a.connect.value_at_quantile(0.99),
            };
            self.last_open = point.open;
            if self.progress {
                print_progress(&point, self.tty);
            }
            self.points.push(point);
            self.hists.push(encode_hist(&a.latency));
        }
    }
}

/// Where the run stands (connect, warm-up and run, drain, stop), when each phase began, and what
/// was sampled at the measured window's edges.
struct Phases {
    state: u8,
    run_start: u64,
    window_start: u64,
    window_end: u64,
    drain_start: u64,
    open_at_run_start: u64,
    cpu_at_start: CpuTime,
    cpu_window: Option<CpuTime>,
    server_start: Option<ProcSample>,
    server_end: Option<ProcSample>,
    metrics_start: Option<BTreeMap<String, f64>>,
    metrics_end: Option<BTreeMap<String, f64>>,
}

impl Phases {
    fn new() -> Phases {
        Phases {
            state: phase::CONNECT,
            run_start: u64::MAX,
            window_start: u64::MAX,
            window_end: u64::MAX,
            drain_start: 0,
            open_at_run_start: 0,
            cpu_at_start: CpuTime::default(),
            cpu_window: None,
            server_start: None,
            server_end: None,
            metrics_start: None,
            metrics_end: None,
        }
    }

    /// The phase a second belongs to: the one its middle falls in.
    fn name_of(&self, second: u64) -> &'static str {
        let mid = second * SEC + SEC / 2;
        if mid < self.run_start {
            "connect"
        } else if mid < self.window_start {
            "warmup"
        } else if mid < self.window_end {
            "run"
        } else {
            "drain"
        }
    }

    /// Move on when the current phase is over (`wake` tells the workers); false once stopped.
    fn step(
        &mut self,
        now: u64,
        plan: &Plan,
        shared: &Shared,
        opts: &RunOpts,
        wake: impl Fn(u8),
    ) -> Result<bool> {
        let threads = plan.threads;
        match self.state {
            phase::CONNECT => {
                if shared.connect_done.load(Ordering::Acquire) < threads {
                    return Ok(true);
                }
                let nothing_open = plan.churn.is_none()
                    && plan.planned() > 0
                    && shared.connected.load(Ordering::Acquire) == 0;
                if nothing_open {
                    // Every planned connection failed: no point in warming up.
                    wake(phase::STOP);
                    return Ok(false);
                }
                self.run_start = now;
                self.window_start = now + ns(plan.warmup);
                self.window_end = self.window_start + ns(plan.duration);
                shared.run_start_ns.store(now, Ordering::Release);
                self.open_at_run_start = shared.connected.load(Ordering::Acquire);
                wake(phase::RUN);
                self.state = phase::RUN;
            }
            phase::RUN => {
                if self.server_start.is_none()
                    && self.cpu_window.is_none()
                    && now >= self.window_start
                {
                    self.sample_window_start(opts)?;
                }
                if now >= self.window_end {
                    self.sample_window_end(opts)?;
                    self.drain_start = now;
                    wake(phase::DRAIN);
                    self.state = phase::DRAIN;
                }
            }
            phase::DRAIN => {
                let acked = shared.drain_acks.load(Ordering::Acquire) == threads;
                let caught_up = shared.delivered.load(Ordering::Acquire)
                    >= shared.expected.load(Ordering::Acquire);
                if (acked && caught_up) || now >= self.drain_start + ns(plan.drain) {
                    wake(phase::STOP);
                    self.state = phase::STOP;
                }
            }
            _ => {}
        }
        Ok(self.state != phase::STOP)
    }

    fn sample_window_start(&mut self, opts: &RunOpts) -> Result<()> {
        self.cpu_at_start = sysinfo::process_cpu();
        if let Some(pid) = opts.server_pid {
            self.server_start = sysinfo::sample_pid(pid).ok();
        }
        if let Some(url) = &opts.server_metrics {
            self.metrics_start = Some(sysinfo::scrape(url)?);
        }
        self.cpu_window = Some(CpuTime::default());
        Ok(())
    }

    fn sample_window_end(&mut self, opts: &RunOpts) -> Result<()> {
        self.cpu_window = Some(sysinfo::process_cpu().since(self.cpu_at_start));
        if let Some(pid) = opts.server_pid {
            self.server_end = sysinfo::sample_pid(pid).ok();
        }
        if let Some(url) = &opts.server_metrics {
            self.metrics_end = Some(sysinfo::scrape(url)?);
        }
        Ok(())
    }

    /// Seconds in the measured window.
    fn window_s(&self) -> f64 {
        (self.window_end.saturating_sub(self.window_start)) as f64 / 1e9
    }
}

/// Run a plan to the end.
pub fn run(plan: Plan, opts: &RunOpts) -> Result<Report> {
    let plan = Arc::new(plan);
    let clock = Clock::start();
    let shared = Arc::new(Shared::new(plan.publishers.len()));
    let (tick_tx, tick_rx) = mpsc::channel::<Tick>();
    let server_baseline = opts.server_pid.map(sysinfo::sample_pid).transpose()?;

    let (wakers, handles) = spawn_workers(&plan, &shared, clock, tick_tx)?;
    let wake = |p: u8| {
        shared.phase.store(p, Ordering::Release);
        for w in &wakers {
            let _ = w.wake();
        }
    };
    let mut series = Series::new(plan.threads, opts.progress);
    let mut phases = Phases::new();
    loop {
        match tick_rx.recv_timeout(Duration::from_millis(10)) {
            Ok(t) => series.on_tick(t, &phases),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if !phases.step(clock.now_ns(), &plan, &shared, opts, wake)? {
            break;
        }
    }
    let end_ns = clock.now_ns();
    let results = join_workers(handles)?;
    if series.progress && series.tty {
        eprintln!();
    }
    Ok(build_report(
        &plan,
        opts,
        clock,
        end_ns,
        results,
        series,
        phases,
        server_baseline,
    ))
}

/// The report of a finished run: the workers' results merged, the client's and the server's
/// figures over the measured window, the series.
#[allow(clippy::too_many_arguments)]
fn build_report(
    plan: &Plan,
    opts: &RunOpts,
    clock: Clock,
    end_ns: u64,
    results: Vec<WorkerResult>,
    series: Series,
    phases: Phases,
    server_baseline: Option<ProcSample>,
) -> Report {
    let threads = plan.threads;
    let window_s = phases.window_s();
    let client_cpu = client_cpu(&results, phases.cpu_window, window_s, end_ns, threads);
    let mut out = merge_workers(plan, results, window_s);
    out.threads = threads;
    out.open_at_run_start = phases.open_at_run_start;
    let phase = out.connect_phase;
    if phase.opened > 0 {
        out.connect_phase_s = phase.span_ns() as f64 / 1e9;
        out.connect_rate = phase.opened as f64 / out.connect_phase_s.max(1e-9);
        out.connect_phase_start_unix_ns = clock.unix_ns(phase.first_syn_ns);
        out.connect_phase_end_unix_ns = clock.unix_ns(phase.last_open_ns);
    }
    out.client_cpu = client_cpu;
    if opts.server_pid.is_some() || opts.server_metrics.is_some() {
        out.server = Some(server_figures(
            opts.server_pid,
            server_baseline,
            phases.server_start,
            phases.server_end,
            phases.metrics_start,
            phases.metrics_end,
            phases.open_at_run_start.max(series.last_open),
            window_s,
            out.window.received,
        ));
    }
    let latency = out_hist(&out);
    let mut results = out.into_results();
    crate::merge::recompute_client(&mut results);
    Report {
        versions: versions(),
        scenario: plan.scenario.to_string(),
        commands: vec![opts.command.clone()],
        config: opts.config.clone(),
        machines: vec![sysinfo::machine()],
        started_unix_ms: clock.unix_start_ms(),
        histograms: Histograms {
            latency: latency.0,
            connect: latency.1,
            send_lag: latency.2,
            latency_per_second: series.hists,
        },
        results,
        series: series.points,
    }
}

/// Start one worker thread per planned thread (pinned when the plan says so), each with its share
/// of the connections and of the connect and send rates. Returns their wakers and handles; the
/// ticks they send arrive on `ticks`' receiver, which sees the end once every worker is done.
fn spawn_workers(
    plan: &Arc<Plan>,
    shared: &Arc<Shared>,
    clock: Clock,
    ticks: mpsc::Sender<Tick>,
) -> Result<(Vec<Arc<Waker>>, Vec<WorkerHandle>)> {
    let threads = plan.threads;
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let mut per_worker: Vec<Vec<_>> = vec![Vec::new(); threads];
    for (i, spec) in plan.conns.iter().enumerate() {
        per_worker[i % threads].push(*spec);
    }
    let is_sender = |s: &&crate::plan::ConnSpec| {
        matches!(
            s.role,
            crate::plan::Role::Echo
                | crate::plan::Role::Rpc
                | crate::plan::Role::Member {
                    publisher: Some(_),
                    ..
                }
        )
    };
    let total_conns = plan.conns.len().max(1);
    let total_senders = plan.conns.iter().filter(is_sender).count().max(1);
    let mut wakers = Vec::new();
    let mut handles = Vec::new();
    for (id, specs) in per_worker.into_iter().enumerate() {
        let (poll, waker) = worker::poll_and_waker()?;
        wakers.push(waker);
        let connect_share = if plan.churn.is_some() || plan.conns.is_empty() {
            1.0 / threads as f64
        } else {
            specs.len() as f64 / total_conns as f64
        };
        let send_share = specs.iter().filter(is_sender).count() as f64 / total_senders as f64;
        let init = WorkerInit {
            id,
            specs,
            plan: plan.clone(),
            shared: shared.clone(),
            clock,
            ticks: ticks.clone(),
            connect_share,
            send_share,
        };
        let core = (plan.pin && !cores.is_empty()).then(|| cores[id % cores.len()]);
        handles.push(
            std::thread::Builder::new()
                .name(format!("loadgen-{id}"))
                .spawn(move || {
                    if let Some(core) = core {
                        core_affinity::set_for_current(core);
                    }
                    worker::run(init, poll)
                })?,
        );
    }
    Ok((wakers, handles))
}

/// Wait for every worker and collect what each measured.
fn join_workers(handles: Vec<WorkerHandle>) -> Result<Vec<WorkerResult>> {
    let mut results = Vec::new();
    for h in handles {
        let r = h
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))?
            .context("client thread failed")?;
        results.push(r);
    }
    Ok(results)
}

/// This process's CPU use: over the measured window when there was one (`cpu_window_ns`), else
/// over the whole run (`end_ns` since the start), with the busiest worker's share of a core.
fn client_cpu(
    results: &[WorkerResult],
    cpu_window: Option<CpuTime>,
    window_s: f64,
    end_ns: u64,
    threads: usize,
) -> ClientCpu {
    let whole_s = end_ns as f64 / 1e9;
    let (cpu, wall_s) = match cpu_window {
        Some(c) if window_s > 0.0 => (c, window_s),
        _ => (sysinfo::process_cpu(), whole_s),
    };
    let cpu_ns = cpu.total_ns;
    let busiest = results
        .iter()
        .map(|r| r.cpu_window_ns as f64 / 1e9 / window_s.max(1e-9))
        .fold(0.0, f64::max);
    let cores_used = cpu_ns as f64 / 1e9 / wall_s.max(1e-9);
    ClientCpu {
        cpu_s: cpu_ns as f64 / 1e9,
        system_s: cpu.system_ns as f64 / 1e9,
        cores_used,
        busiest_thread: if window_s > 0.0 {
            busiest
        } else {
            cores_used / threads as f64
        },
        saturated: busiest > 0.9 || cores_used > 0.9 * threads as f64,
        // Per message and against the server: filled in once the messages are counted.
        ..ClientCpu::default()
    }
}

fn out_hist(out: &Merged) -> (String, String, String) {
    (
        encode_hist(&out.latency),
        encode_hist(&out.connect),
        encode_hist(&out.send_lag),
    )
}

/// loadgen and codec versions.
pub fn versions() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("loadgen".to_string(), env!("CARGO_PKG_VERSION").to_string()),
        (
            "frame-simd".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        (
            "frame-simd kernel".to_string(),
            frame_simd::Kernels::detect().kernel().name().to_string(),
        ),
    ])
}

struct Merged {
    window: Counters,
    all: Counters,
    latency: Histogram<u64>,
    connect: Histogram<u64>,
    send_lag: Histogram<u64>,
    failures: crate::stats::Failures,
    examples: crate::worker::meter::FailureExamples,
    delivery: Delivery,
    storm: crate::worker::meter::Storm,
    unsent: u64,
    measured_s: f64,
    planned: u64,
    threads: usize,
    open_at_run_start: u64,
    connect_phase: crate::worker::meter::ConnectPhase,
    connect_phase_s: f64,
    connect_rate: f64,
    connect_phase_start_unix_ns: u64,
    connect_phase_end_unix_ns: u64,
    client_cpu: ClientCpu,
    server: Option<Server>,
    broadcast: bool,
    churn_storm: bool,
}

impl Merged {
    fn into_results(self) -> Results {
        let s = self.measured_s.max(1e-9);
        Results {
            processes: 1,
            threads: self.threads,
            measured_s: self.measured_s,
            planned_connections: self.planned,
            connect_phase_seconds: self.connect_phase_s,
            connect_rate: self.connect_rate,
            connect_phase_connections: self.connect_phase.opened,
            connect_phase_start_unix_ns: self.connect_phase_start_unix_ns,
            connect_phase_end_unix_ns: self.connect_phase_end_unix_ns,
            receive_rate: if self.measured_s > 0.0 {
                self.window.received as f64 / s
            } else {
                0.0
            },
            send_rate: if self.measured_s > 0.0 {
                self.window.sent as f64 / s
            } else {
                0.0
            },
            latency: Percentiles::of(&self.latency),
            connect_latency: Percentiles::of(&self.connect),
            send_lag: Percentiles::of(&self.send_lag),
            unanswered: if self.broadcast {
                0
            } else {
                self.all.sent.saturating_sub(self.all.received)
            },
            window: self.window,
            all: self.all,
            failures: self.failures,
            failure_examples: self.examples,
            delivery: self.broadcast.then_some(self.delivery),
            storm: self.churn_storm.then_some(self.storm),
            unsent: self.unsent,
            open_at_run_start: self.open_at_run_start,
            client_cpu: self.client_cpu,
            server: self.server,
        }
    }
}

fn merge_workers(plan: &Plan, results: Vec<WorkerResult>, measured_s: f64) -> Merged {
    let mut m = Merged {
        window: Counters::default(),
        all: Counters::default(),
        latency: new_hist(),
        connect: new_hist(),
        send_lag: new_hist(),
        failures: Default::default(),
        examples: Default::default(),
        delivery: Delivery::default(),
        storm: Default::default(),
        unsent: 0,
        measured_s,
        planned: plan.planned(),
        threads: plan.threads,
        open_at_run_start: 0,
        connect_phase: Default::default(),
        connect_phase_s: 0.0,
        connect_rate: 0.0,
        connect_phase_start_unix_ns: 0,
        connect_phase_end_unix_ns: 0,
        client_cpu: ClientCpu::default(),
        server: None,
        broadcast: !plan.groups.is_empty(),
        churn_storm: plan.churn.is_some_and(|c| c.storm.is_some()),
    };
    for r in results {
        m.window.add(&r.window);
        m.all.add(&r.all);
        let _ = m.latency.add(&r.latency);
        let _ = m.connect.add(&r.connect);
        let _ = m.send_lag.add(&r.send_lag);
        for (k, v) in r.failures {
            *m.failures.entry(k).or_default() += v;
        }
        for (k, v) in r.failure_examples {
            m.examples.entry(k).or_insert(v);
        }
        m.delivery.add(&r.delivery);
        m.storm.dropped += r.storm.dropped;
        m.storm.reconnected += r.storm.reconnected;
        m.storm.all_back_ns = m.storm.all_back_ns.max(r.storm.all_back_ns);
        m.unsent += r.unsent;
        m.connect_phase.add(&r.connect_phase);
    }
    m
}

#[allow(clippy::too_many_arguments)]
fn server_figures(
    pid: Option<u32>,
    baseline: Option<ProcSample>,
    start: Option<ProcSample>,
    end: Option<ProcSample>,
    metrics_start: Option<BTreeMap<String, f64>>,
    metrics_end: Option<BTreeMap<String, f64>>,
    connections: u64,
    window_s: f64,
    messages: u64,
) -> Server {
    let mut s = Server {
        pid,
        ..Server::default()
    };
    if let (Some(b), Some(a)) = (baseline, start.or(end)) {
        s.rss_baseline_bytes = b.rss_bytes;
        s.rss_bytes = a.rss_bytes;
        if connections > 0 {
            s.rss_per_connection_bytes =
                a.rss_bytes.saturating_sub(b.rss_bytes) as f64 / connections as f64;
        }
    }
    if let (Some(a), Some(b)) = (start, end) {
        let cpu_us = b.cpu_ns.saturating_sub(a.cpu_ns) as f64 / 1e3;
        s.cpu_s = cpu_us / 1e6;
        s.system_s = b.system_ns.saturating_sub(a.system_ns) as f64 / 1e9;
        if connections > 0 && window_s > 0.0 {
            s.cpu_us_per_connection_second = cpu_us / (connections as f64 * window_s);
        }
        if messages > 0 {
            s.cpu_us_per_message = cpu_us / messages as f64;
        }
    }
    if let (Some(a), Some(b)) = (metrics_start, metrics_end) {
        for (k, v) in &b {
            if let Some(before) = a.get(k) {
                if v != before {
                    s.metrics_delta.insert(k.clone(), v - before);
                }
            }
        }
        s.metrics_after = b;
    }
    s
}

fn print_progress(p: &Point, tty: bool) {
    let c = &p.counters;
    let line = format!(
        "[{:>4}s {:<7}] open {:>7} | conn +{} fail {} | sent {:>9}/s recv {:>9}/s | p50 {} p99 {}",
        p.t + 1,
        p.phase,
        fmt_count(p.open as f64),
        fmt_count(c.connected as f64),
        fmt_count(c.connect_failed as f64),
        fmt_count(c.sent as f64),
        fmt_count(c.received as f64),
        fmt_ns(p.p50_ns),
        fmt_ns(p.p99_ns),
    );
    if tty {
        eprint!("\r\x1b[2K{line}");
    } else {
        eprintln!("{line}");
    }
}
