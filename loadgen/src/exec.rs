//! From a parsed command to files and an exit code: run a scenario (plan, descriptor check, run),
//! print the summary, write the requested outputs and check the thresholds.

use anyhow::{bail, Context, Result};

use crate::cli::{Common, Scenario};
use crate::report::{hdrlog, html, table, Report};
use crate::run::{self, RunOpts};
use crate::{expect, plan, sysinfo};

/// Exit code when a threshold fails.
pub const EXIT_THRESHOLD: i32 = 3;

/// Run one scenario and return its report (no output written). With `--processes N` the load is
/// split over N child processes of this binary, whose results are merged.
pub fn run_scenario(scenario: &Scenario, command: Vec<String>, progress: bool) -> Result<Report> {
    let common = scenario.common();
    match common.process_index {
        Some(i) => {
            let share = plan::process_share(scenario, i, common.processes.max(1))?;
            run_one(&share, command, progress)
        }
        None if common.processes > 1 => run_processes(scenario, command),
        None => run_one(scenario, command, progress),
    }
}

/// Spawn one child per share with the same command line plus its index, then merge.
fn run_processes(scenario: &Scenario, command: Vec<String>) -> Result<Report> {
    let n = scenario.common().processes;
    // Fail early (fanout, chat) before starting anything.
    plan::process_share(scenario, 0, n)?;
    let exe = std::env::current_exe().context("cannot find the loadgen executable")?;
    let dir = std::env::temp_dir().join(format!("loadgen-processes-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    // The parent writes the outputs and checks thresholds; children only run their share.
    let skip = ["--json", "--html", "--hdr-log", "--expect"];
    let mut base = Vec::new();
    let mut args = command.iter().skip(1);
    while let Some(a) = args.next() {
        if skip.contains(&a.as_str()) {
            args.next();
        } else if a != "--quiet"
            && a != "-q"
            && !skip.iter().any(|s| a.starts_with(&format!("{s}=")))
        {
            base.push(a.clone());
        }
    }
    eprintln!("loadgen: running {n} processes");
    let baseline = scenario
        .common()
        .server_pid
        .and_then(|pid| sysinfo::sample_pid(pid).ok());
    let mut children = Vec::new();
    for i in 0..n {
        let json = dir.join(format!("{i}.json"));
        let child = std::process::Command::new(&exe)
            .args(&base)
            .args(["--process-index", &i.to_string(), "--quiet", "--json"])
            .arg(&json)
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("cannot start a loadgen process")?;
        children.push((child, json));
    }
    let mut reports = Vec::new();
    let mut failed = None;
    for (mut child, json) in children {
        let status = child.wait()?;
        if status.success() {
            reports.push(Report::read_json(&json)?);
        } else {
            failed = Some(status);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(status) = failed {
        bail!("a loadgen process failed ({status}); see its error above");
    }
    let mut merged = crate::merge::merge(&reports)?;
    merged.commands.insert(0, command);
    // The children's baselines were taken after other children had connected.
    if let (Some(b), Some(mut s)) = (baseline, merged.results.server.take()) {
        s.rss_baseline_bytes = b.rss_bytes;
        crate::merge::recompute_server(&mut s, &merged.results);
        merged.results.server = Some(s);
    }
    Ok(merged)
}

fn run_one(scenario: &Scenario, command: Vec<String>, progress: bool) -> Result<Report> {
    let limit = sysinfo::raise_nofile();
    let threads = scenario.common().threads.unwrap_or(1);
    let common = scenario.common();
    let processes = u64::from(common.processes.max(1));
    // Broadcast groups are split after the plan is built: check this process's share first,
    // then the exact count.
    let share = match (scenario, common.process_index) {
        (Scenario::Fanout(_) | Scenario::Chat(_), Some(_)) => {
            plan::planned_count(scenario).div_ceil(processes)
        }
        _ => plan::planned_count(scenario),
    };
    run::check_fds(share, threads, limit)?;
    let plan = plan::build(scenario)?;
    run::check_fds(plan.planned(), threads, limit)?;
    let common = scenario.common();
    let opts = RunOpts {
        command,
        config: serde_json::json!({ scenario.name(): scenario }),
        server_pid: common.server_pid,
        server_metrics: common.server_metrics.clone(),
        progress,
    };
    let urls = plan
        .targets
        .iter()
        .map(|t| t.url.clone())
        .collect::<Vec<_>>();
    let report = run::run(plan, &opts)?;
    let r = &report.results;
    if r.planned_connections > 0 && r.all.connected == 0 {
        if let Some((reason, n)) = r.failures.iter().max_by_key(|(_, n)| **n) {
            let mut example = r.failure_examples.get(reason).cloned().unwrap_or_default();
            if reason == "refused" {
                example.push_str(" (is the server running and listening there?)");
            }
            let shown = urls.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
            bail!(
                "no connection to {shown} succeeded ({n} of {} failed: {reason}): {example}",
                r.planned_connections
            );
        }
    }
    Ok(report)
}

/// Print the summary, write the outputs `common` asks for, and check `expect`; returns the exit
/// code.
pub fn finish(report: &Report, common: &OutputOpts) -> Result<i32> {
    println!("{}", table::render(report));
    if let Some(p) = &common.json {
        report.write_json(p)?;
    }
    if let Some(p) = &common.hdr_log {
        hdrlog::write(report, p)?;
    }
    if let Some(p) = &common.html {
        html::write(report, p)?;
    }
    if let Some(spec) = &common.expect {
        let failed = expect::check(&expect::parse(spec)?, &report.results);
        if !failed.is_empty() {
            for f in &failed {
                eprintln!("loadgen: threshold failed: {f}");
            }
            return Ok(EXIT_THRESHOLD);
        }
        eprintln!("loadgen: all thresholds met ({spec})");
    }
    Ok(0)
}

/// Where results go.
#[derive(Clone, Debug, Default)]
pub struct OutputOpts {
    /// JSON result.
    pub json: Option<std::path::PathBuf>,
    /// HdrHistogram log.
    pub hdr_log: Option<std::path::PathBuf>,
    /// HTML report.
    pub html: Option<std::path::PathBuf>,
    /// Thresholds.
    pub expect: Option<String>,
}

impl From<&Common> for OutputOpts {
    fn from(c: &Common) -> OutputOpts {
        OutputOpts {
            json: c.json.clone(),
            hdr_log: c.hdr_log.clone(),
            html: c.html.clone(),
            expect: c.expect.clone(),
        }
    }
}
