//! From a parsed command to files and an exit code: run a scenario (plan, descriptor check, run),
//! print the summary, write the requested outputs and check the thresholds.

use anyhow::{bail, Result};

use crate::cli::{Common, Scenario};
use crate::report::{hdrlog, html, table, Report};
use crate::run::{self, RunOpts};
use crate::{expect, plan, sysinfo};

/// Exit code when a threshold fails.
pub const EXIT_THRESHOLD: i32 = 3;

/// Run one scenario and return its report (no output written).
pub fn run_scenario(scenario: &Scenario, command: Vec<String>, progress: bool) -> Result<Report> {
    let limit = sysinfo::raise_nofile();
    let threads = scenario.common().threads.unwrap_or(1);
    run::check_fds(plan::planned_count(scenario), threads, limit)?;
    let plan = plan::build(scenario)?;
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
