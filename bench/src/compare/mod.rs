//! `bench compare`: the one-command comparison of the gateway with its peers.
//!
//! Builds every server and the load generator, then for each repetition, scenario and thread
//! count starts each server in turn (A B A B ...) pinned to one set of cores, drives it with
//! `loadgen` pinned to the others, and keeps loadgen's JSON and the server's log. At the end it writes
//! `RESULTS.md` (machine, versions, command, medians with spreads and ratios to the gateway)
//! and the chart `results/comparison.svg` beside it; loadgen's full reports stay in `<target>/compare-raw/`. A
//! server that cannot be built or started is reported as not run, never silently left out.

mod loadgen;
mod machine;
mod options;
mod report;
mod scenarios;
mod servers;
mod stats;

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::process::{Command, ExitCode};

pub use options::{Options, OptionsError};

use scenarios::Scenario;
use servers::{Running, ServerSpec};
use stats::Samples;

/// Entry point of `bench compare ARGS`.
pub fn main(args: Vec<String>) -> ExitCode {
    let opts = match Options::parse(args) {
        Ok(opts) => opts,
        Err(OptionsError::Help) => {
            println!("{}", options::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("bench compare: {err}\n{}", options::USAGE);
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench compare: {err}");
            ExitCode::FAILURE
        }
    }
}

/// What one (scenario, threads, server) cell collected over the repetitions.
#[derive(Default)]
pub struct Cell {
    /// Values of each metric, one per successful repetition.
    pub metrics: BTreeMap<&'static str, Samples>,
    /// Why runs failed, if they did (first message per reason).
    pub failures: Vec<String>,
    /// Runs that completed (a figure missing from one of them had no samples).
    pub runs_ok: usize,
    /// Runs in which loadgen said it may itself have been the limit.
    pub loadgen_saturated: usize,
    /// What the runs said beside their figures (where a capacity search stopped), by repetition.
    pub notes: Vec<String>,
}

/// Every cell, keyed by (scenario id, threads, server name).
pub type Results = BTreeMap<(&'static str, usize, &'static str), Cell>;

fn run(opts: &Options) -> io::Result<()> {
    let workspace = opts.workspace.clone();
    if opts.build {
        build(&workspace)?;
    }
    let servers = servers::selected(
        &opts.bin_dir,
        &workspace.join("bench"),
        opts.baseline.as_deref(),
        opts.servers.as_deref(),
    );
    let scenarios: Vec<Scenario> = scenarios::all()
        .into_iter()
        .filter(|s| {
            opts.scenarios
                .as_ref()
                .is_none_or(|only| only.iter().any(|n| n == s.id))
        })
        .collect();
    let loadgen = &opts.loadgen;
    if !opts.from_raw && !loadgen.is_file() {
        return Err(io::Error::other(format!(
            "no loadgen at {} (build it, or pass --bin-dir / --loadgen)",
            loadgen.display()
        )));
    }
    let raw_dir = opts.target_dir.join("compare-raw");
    std::fs::create_dir_all(&raw_dir)?;
    // Fail now rather than after an hour of runs.
    std::fs::create_dir_all(&opts.out_dir)?;

    let load_before = machine::load_average();
    let mut results = Results::new();
    let cells = |scenario: &Scenario| -> usize {
        opts.threads
            .iter()
            .map(|&t| {
                servers
                    .iter()
                    .filter(|s| t == 1 || s.multi_threaded)
                    .filter(|s| s.protocols.contains(&scenario.protocol))
                    .count()
            })
            .sum()
    };
    let total = opts.reps * scenarios.iter().map(cells).sum::<usize>();
    let mut done = 0;
    for rep in 0..opts.reps {
        for scenario in &scenarios {
            for &threads in &opts.threads {
                for server in &servers {
                    if threads > 1 && !server.multi_threaded {
                        // One event loop whatever --threads says: its 1-thread row is the figure.
                        continue;
                    }
                    if !server.protocols.contains(&scenario.protocol) {
                        continue;
                    }
                    done += 1;
                    eprintln!(
                        "[{done}/{total}] rep {} {} threads={threads} {}",
                        rep + 1,
                        scenario.id,
                        server.name
                    );
                    let cell = results
                        .entry((scenario.id, threads, server.name))
                        .or_default();
                    let json = raw_dir.join(format!(
                        "{}-t{threads}-{}-r{}.json",
                        scenario.id,
                        server.name,
                        rep + 1
                    ));
                    let error_file = json.with_extension("error");
                    let measured = if opts.from_raw {
                        read_kept(scenario, &json, &error_file)
                    } else {
                        let _ = std::fs::remove_file(&json);
                        let _ = std::fs::remove_file(&error_file);
                        let measured = run_one(opts, loadgen, server, scenario, threads, &json);
                        if let Err(err) = &measured {
                            let _ = std::fs::write(&error_file, err.to_string());
                        }
                        measured
                    };
                    match measured {
                        Ok(Measured {
                            values,
                            loadgen_saturated,
                            note,
                        }) => {
                            if let Some(note) = note {
                                cell.notes.push(format!("rep {}: {note}", rep + 1));
                            }
                            cell.runs_ok += 1;
                            cell.loadgen_saturated += usize::from(loadgen_saturated);
                            for (metric, value) in values {
                                cell.metrics.entry(metric).or_default().push(value);
                            }
                        }
                        Err(err) => {
                            eprintln!("    failed: {err}");
                            if !cell.failures.iter().any(|f| *f == err.to_string()) {
                                cell.failures.push(err.to_string());
                            }
                        }
                    }
                }
            }
        }
    }
    let mut machine = machine::describe(&workspace, opts);
    machine.facts.push((
        "load average (1, 5, 15 min) before / after".into(),
        format!("{load_before} / {}", machine::load_average()),
    ));
    machine
        .facts
        .push(("loadgen reports".into(), shown_path(&raw_dir, &workspace)));
    let report = report::Report {
        opts,
        machine: &machine,
        servers: &servers,
        scenarios: &scenarios,
        results: &results,
    };
    std::fs::write(opts.out_dir.join("RESULTS.md"), report.markdown())?;
    let chart_dir = opts.out_dir.join("results");
    std::fs::create_dir_all(&chart_dir)?;
    std::fs::write(chart_dir.join("comparison.svg"), report.svg())?;
    eprintln!("wrote {}", opts.out_dir.join("RESULTS.md").display());
    Ok(())
}

/// What one run yielded.
struct Measured {
    values: Vec<(&'static str, f64)>,
    loadgen_saturated: bool,
    /// Said beside the figures: where a capacity search stopped.
    note: Option<String>,
}

/// A run made earlier (`--from-raw`): its report, or the error it failed with.
fn read_kept(scenario: &Scenario, json: &Path, error_file: &Path) -> io::Result<Measured> {
    if let Ok(error) = std::fs::read_to_string(error_file) {
        return Err(io::Error::other(error));
    }
    let text = std::fs::read_to_string(json)?;
    let report: serde_json::Value = serde_json::from_str(&text)
        .map_err(|err| io::Error::other(format!("{}: {err}", json.display())))?;
    measured(scenario, &report)
}

fn measured(scenario: &Scenario, report: &serde_json::Value) -> io::Result<Measured> {
    if let Some(capacity) = &scenario.capacity {
        return capacity_measured(scenario, capacity, report);
    }
    Ok(Measured {
        values: scenario.metrics(report)?,
        loadgen_saturated: saturated(report),
        note: None,
    })
}

fn saturated(report: &serde_json::Value) -> bool {
    report
        .pointer("/results/client_cpu/saturated")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false)
}

/// The figures of the last step a `loadgen capacity` search held (the knee), and where it
/// stopped. loadgen counts as a possible limit when it was saturated or sent late in a step up
/// to the one that missed.
fn capacity_measured(
    scenario: &Scenario,
    capacity: &scenarios::Capacity,
    report: &serde_json::Value,
) -> io::Result<Measured> {
    use serde_json::Value;
    let steps = report
        .get("steps")
        .and_then(Value::as_array)
        .ok_or_else(|| io::Error::other("capacity report has no steps"))?;
    let offered = |step: &Value| {
        let publishes = step.get("value").and_then(Value::as_f64).unwrap_or(0.0);
        publishes * f64::from(scenario.connections.saturating_sub(1))
    };
    let missed = |step: &Value| {
        let failed: Vec<&str> = step
            .get("failed")
            .and_then(Value::as_array)
            .map(|f| f.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        format!(
            "missed at {} deliveries/s offered ({})",
            report::format_value(offered(step)),
            failed.join(", ")
        )
    };
    let knee = report.get("knee").and_then(Value::as_u64);
    let Some(knee) = knee.and_then(|k| usize::try_from(k).ok()) else {
        return Err(io::Error::other(match steps.first() {
            Some(first) => format!("held no step: {}", missed(first)),
            None => "capacity search ran no step".into(),
        }));
    };
    let held = steps
        .get(knee)
        .ok_or_else(|| io::Error::other("capacity knee past its steps"))?;
    let step_report = held
        .get("report")
        .ok_or_else(|| io::Error::other("capacity step has no report"))?;
    let flag = |step: &Value, key: &str| step.get(key).and_then(Value::as_bool).unwrap_or(false);
    let loadgen_saturated = steps
        .iter()
        .take(knee + 2)
        .any(|s| flag(s, "loadgen_saturated") || flag(s, "loadgen_late"));
    let note = match steps.get(knee + 1) {
        Some(next) => missed(next),
        None if steps.len() >= capacity.max_steps as usize => format!(
            "held every step, up to {} deliveries/s: its limit is higher than measured",
            report::format_value(offered(held))
        ),
        None => "the search stopped after the last step held (a step failed to run)".into(),
    };
    Ok(Measured {
        values: scenario.metrics(step_report)?,
        loadgen_saturated,
        note: Some(note),
    })
}

/// Start `server`, run one scenario against it, stop it; the scenario's metrics.
fn run_one(
    opts: &Options,
    loadgen: &Path,
    server: &ServerSpec,
    scenario: &Scenario,
    threads: usize,
    json: &Path,
) -> io::Result<Measured> {
    check_open_file_limit(scenario)?;
    let running = Running::start(
        server,
        threads,
        &opts.server_cpus_for(threads),
        opts.nice,
        &json.with_extension("server.log"),
    )?;
    let url = format!("ws://{}{}", running.addr, scenario.path);
    let result = loadgen::run(opts, loadgen, scenario, &url, running.pid, json);
    running.stop();
    measured(scenario, &result?)
}

/// Open files a process needs besides its connections (listeners, pollers, pipes, stdio).
const SPARE_FILES: u64 = 100;

/// Refuse a scenario this machine cannot hold: every connection is an open file on both sides,
/// and the hard limit is as far as a process may raise its own.
fn check_open_file_limit(scenario: &Scenario) -> io::Result<()> {
    let needed = u64::from(scenario.connections) + SPARE_FILES;
    match machine::open_files_hard_limit() {
        Some(limit) if limit < needed => Err(io::Error::other(format!(
            "{} connections need ~{needed} open files per process; the hard limit here is \
             {limit} (raise it, as root: ulimit -Hn)",
            scenario.connections
        ))),
        _ => Ok(()),
    }
}

/// `cargo build --release` of the servers and loadgen, and `npm ci` for the Node peer.
fn build(workspace: &Path) -> io::Result<()> {
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(workspace)
        .args([
            "build",
            "--release",
            "--keep-going",
            "--bins",
            "-p",
            "gateway",
            "-p",
            "loadgen",
            "-p",
            "bench",
        ])
        .status()?;
    if !status.success() {
        // Keep going: whatever did build is compared, the rest is reported as not run.
        eprintln!(
            "cargo build failed ({status}); servers that did not build will be reported as not run"
        );
    }
    let node = workspace.join("bench/peers/node");
    if !node.join("node_modules/ws").is_dir() {
        let status = Command::new("npm")
            .current_dir(&node)
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!(
                "npm ci in {} failed; the Node peer will be reported as not run",
                node.display()
            );
        }
    }
    Ok(())
}

/// `path` as a committed report may name it: relative to the repository when inside it, else
/// under `$CARGO_TARGET_DIR` (a machine's absolute paths never go into the report).
fn shown_path(path: &std::path::Path, workspace: &std::path::Path) -> String {
    if let Ok(rel) = path.strip_prefix(workspace) {
        return rel.display().to_string();
    }
    match path.file_name() {
        Some(name) => format!("$CARGO_TARGET_DIR/{}", name.to_string_lossy()),
        None => "$CARGO_TARGET_DIR".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(publishes: f64, passed: bool, received: f64) -> serde_json::Value {
        serde_json::json!({
            "value": publishes,
            "passed": passed,
            "failed": if passed { vec![] } else { vec!["p99<1s (was 2.50s)"] },
            "loadgen_saturated": false,
            "loadgen_late": false,
            "report": {
                "results": { "latency": { "count": 10, "p50": 1000, "p99": 2000, "p999": 3000 } },
                "series": [{ "phase": "run", "counters": { "received": received } }]
            }
        })
    }

    fn fanout_1k() -> Scenario {
        scenarios::all()
            .into_iter()
            .find(|s| s.id == "fanout-1k")
            .unwrap()
    }

    #[test]
    fn a_capacity_search_reports_its_last_held_step_and_where_it_missed() {
        let report = serde_json::json!({
            "knee": 1,
            "steps": [step(200.0, true, 200_000.0), step(400.0, true, 400_000.0),
                      step(800.0, false, 500_000.0)]
        });
        let measured = measured(&fanout_1k(), &report).unwrap();
        assert_eq!(measured.values[0], ("held deliveries/s", 400_000.0));
        let note = measured.note.unwrap();
        assert!(note.contains("missed at 800.0k"), "{note}");
        assert!(note.contains("p99<1s"), "{note}");
        assert!(!measured.loadgen_saturated);
    }

    #[test]
    fn a_capacity_search_that_held_every_step_says_the_limit_is_higher() {
        let steps: Vec<_> = [200.0, 400.0, 800.0, 1600.0, 3200.0, 6400.0]
            .iter()
            .map(|&p| step(p, true, p * 1000.0))
            .collect();
        let report = serde_json::json!({ "knee": 5, "steps": steps });
        let measured = measured(&fanout_1k(), &report).unwrap();
        assert_eq!(measured.values[0], ("held deliveries/s", 6_400_000.0));
        assert!(measured.note.unwrap().contains("higher than measured"));
    }

    #[test]
    fn a_capacity_search_that_held_no_step_is_a_failure_with_the_reason() {
        let report = serde_json::json!({ "knee": null, "steps": [step(200.0, false, 90_000.0)] });
        let Err(err) = measured(&fanout_1k(), &report) else {
            panic!("a search that held nothing gave figures");
        };
        assert!(
            err.to_string().contains("held no step: missed at 200.0k"),
            "{err}"
        );
    }
}
