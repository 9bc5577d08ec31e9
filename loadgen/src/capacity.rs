//! `loadgen capacity`: run a scenario at growing load (connections or rate, multiplied by a factor
//! per step) until a step misses the objective; the knee is the last step that met it. Each step is
//! a full run (connect, warm-up, measure), reported on its own line, then a plain sentence.

use anyhow::{bail, Result};
use serde::Serialize;

use crate::cli::{CapacityArgs, Scenario};
use crate::exec::run_scenario;
use crate::expect;
use crate::report::{fmt_count, fmt_ns, Report};

/// One step's outcome.
#[derive(Debug, Serialize)]
pub struct Step {
    /// Knob value.
    pub value: f64,
    /// Objective met.
    pub passed: bool,
    /// Thresholds missed.
    pub failed: Vec<String>,
    /// Messages received per second.
    pub receive_rate: f64,
    /// Connections opened.
    pub connections: u64,
    /// p99 latency (ns).
    pub p99_ns: u64,
    /// loadgen itself was saturated.
    pub loadgen_saturated: bool,
    /// p99 of how late loadgen's open-loop sends left (ns).
    pub send_lag_p99_ns: u64,
    /// loadgen could not keep its schedule (send lag p99 over [`LATE_NS`]): its machine was
    /// short of CPU, so the step's latency may be the client's.
    pub loadgen_late: bool,
    /// What the step held, in the scenario's words ("1,000 subscribers at 50,000
    /// deliveries/s (50 publishes/s)").
    pub held: String,
    /// The full report.
    pub report: Report,
}

/// All steps and the verdict.
#[derive(Debug, Serialize)]
pub struct Capacity {
    /// Knob stepped.
    pub vary: String,
    /// Objective.
    pub objective: String,
    /// Steps in order.
    pub steps: Vec<Step>,
    /// Index of the last passing step.
    pub knee: Option<usize>,
    /// One-sentence summary.
    pub summary: String,
}

/// Send lag p99 past which a step is flagged: loadgen did not keep its schedule.
pub const LATE_NS: u64 = 1_000_000;

/// What a step held, in the scenario's words.
fn held(s: &Scenario, r: &crate::report::Results) -> String {
    let rate = fmt_count(r.receive_rate);
    match s {
        Scenario::Fanout(a) => format!(
            "{} subscribers at {rate} deliveries/s ({} publishes/s)",
            fmt_count(f64::from(a.subscribers)),
            fmt_count(a.rate)
        ),
        Scenario::Chat(a) => format!(
            "{} users at {rate} deliveries/s ({} messages/s sent)",
            fmt_count(f64::from(a.users)),
            fmt_count(r.send_rate)
        ),
        Scenario::Rpc(_) => format!(
            "{} connections at {rate} RPC replies/s",
            fmt_count(r.all.connected as f64)
        ),
        Scenario::Echo(_) => format!(
            "{} connections at {rate} messages/s received",
            fmt_count(r.all.connected as f64)
        ),
        Scenario::Connect(_) | Scenario::Idle(_) | Scenario::Churn(_) => format!(
            "{} connections ({}/s opened in the connect phase)",
            fmt_count(r.all.connected as f64),
            fmt_count(r.connect_rate)
        ),
    }
}

fn get_set(s: &mut Scenario, vary: &str, set: Option<f64>) -> Result<f64> {
    let count = |c: &mut u32, set: Option<f64>| {
        if let Some(v) = set {
            *c = v.round().max(1.0) as u32;
        }
        f64::from(*c)
    };
    let rate = |r: &mut f64, set: Option<f64>| {
        if let Some(v) = set {
            *r = v;
        }
        *r
    };
    Ok(match (s, vary) {
        (Scenario::Connect(a) | Scenario::Idle(a), "connections") => count(&mut a.connections, set),
        (Scenario::Connect(a) | Scenario::Idle(a), "rate") => {
            let mut r = a.rate.unwrap_or(1000.0);
            let v = rate(&mut r, set);
            a.rate = Some(r);
            v
        }
        (Scenario::Echo(a), "connections") => count(&mut a.connections, set),
        (Scenario::Echo(a), "rate") => {
            let mut r = a.rate.unwrap_or(1000.0);
            let v = rate(&mut r, set);
            a.rate = Some(r);
            v
        }
        (Scenario::Fanout(a), "connections") => count(&mut a.subscribers, set),
        (Scenario::Fanout(a), "rate") => rate(&mut a.rate, set),
        (Scenario::Churn(a), "connections") => count(&mut a.connections, set),
        (Scenario::Churn(a), "rate") => rate(&mut a.rate, set),
        (Scenario::Chat(a), "connections") => count(&mut a.users, set),
        (Scenario::Chat(a), "rate") => rate(&mut a.msg_rate, set),
        (Scenario::Rpc(a), "connections") => count(&mut a.connections, set),
        (Scenario::Rpc(a), "rate") => rate(&mut a.rate, set),
        (_, other) => bail!("--vary {other}: expected `connections` or `rate`"),
    })
}

/// Run the capacity search; returns the steps and the exit code (3 if no step met the objective).
pub fn run(args: &CapacityArgs, command: Vec<String>) -> Result<(Capacity, i32)> {
    let objective = expect::parse(&args.objective)?;
    let mut scenario = args.scenario.clone();
    let mut value = match args.start {
        Some(v) => v,
        None => get_set(&mut scenario, &args.vary, None)?,
    };
    if args.factor <= 1.0 {
        bail!("--factor must be above 1");
    }
    let quiet = scenario.common().quiet;
    let mut steps: Vec<Step> = Vec::new();
    for i in 0..args.max_steps {
        get_set(&mut scenario, &args.vary, Some(value))?;
        eprintln!(
            "loadgen capacity: step {} — {} = {}",
            i + 1,
            args.vary,
            fmt_count(value)
        );
        let report = match run_scenario(&scenario, command.clone(), !quiet) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("loadgen capacity: step failed to run: {e:#}");
                break;
            }
        };
        let failed = expect::check(&objective, &report.results);
        let r = &report.results;
        let step = Step {
            value,
            passed: failed.is_empty(),
            failed,
            receive_rate: r.receive_rate,
            connections: r.all.connected,
            p99_ns: r.latency.p99,
            loadgen_saturated: r.client_cpu.saturated,
            send_lag_p99_ns: r.send_lag.p99,
            loadgen_late: r.send_lag.p99 > LATE_NS,
            held: held(&scenario, r),
            report,
        };
        eprintln!(
            "  {} = {:>10}: {:>12} msg/s received, p99 {:>9}, {} connections — {}{}{}",
            args.vary,
            fmt_count(step.value),
            fmt_count(step.receive_rate),
            fmt_ns(step.p99_ns),
            fmt_count(step.connections as f64),
            if step.passed {
                "meets the objective".to_string()
            } else {
                format!("misses: {}", step.failed.join(", "))
            },
            if step.loadgen_saturated {
                " (loadgen saturated!)"
            } else {
                ""
            },
            if step.loadgen_late {
                format!(
                    " (loadgen late: send lag p99 {})",
                    fmt_ns(step.send_lag_p99_ns)
                )
            } else {
                String::new()
            }
        );
        let passed = step.passed;
        steps.push(step);
        if !passed {
            break;
        }
        value *= args.factor;
    }
    let knee = steps.iter().rposition(|s| s.passed);
    let node = match args.server_cores {
        Some(c) => format!("one node with {c} core{}", if c == 1 { "" } else { "s" }),
        None => "the target".to_string(),
    };
    let summary = match knee {
        Some(k) => {
            let s = &steps[k];
            let next = steps.get(k + 1).map_or(String::new(), |n| {
                format!(
                    "; at {} = {} it missed ({})",
                    args.vary,
                    fmt_count(n.value),
                    n.failed.join(", ")
                )
            });
            let mut warn = String::new();
            if steps.iter().any(|s| s.loadgen_saturated) {
                warn.push_str(
                    " Warning: loadgen was saturated in some steps; the limit may be the client's.",
                );
            }
            if steps.iter().any(|s| !s.passed && s.loadgen_late) {
                warn.push_str(
                    " Warning: in the step that missed, loadgen sent late (send lag p99 over 1 ms): \
                     its machine was short of CPU, so the knee may be the client's; rerun with \
                     the client on other cores or another machine.",
                );
            }
            format!(
                "{node} holds {} within {} (p99 {}){next}.{warn}",
                s.held,
                args.objective,
                fmt_ns(s.p99_ns)
            )
        }
        None => format!(
            "{node} did not meet {} even at the first step.",
            args.objective
        ),
    };
    let code = if knee.is_some() {
        0
    } else {
        crate::exec::EXIT_THRESHOLD
    };
    Ok((
        Capacity {
            vary: args.vary.clone(),
            objective: args.objective.clone(),
            steps,
            knee,
            summary,
        },
        code,
    ))
}
