//! The alert rules under `deploy/prometheus/` checked by Prometheus's own `promtool` (Debian's
//! `prometheus` package, installed by `scripts/test.sh`): the rules parse and their PromQL is
//! valid (`check rules`), and the unit tests in `alerts.test.yml` hold (`test rules`: synthetic
//! series, and which alerts fire when). `tests/dashboards.rs` checks the metric names.

mod common;

use std::process::Command;
use std::time::Duration;

use common::run_bounded;

const LIMIT: Duration = Duration::from_secs(60);
const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/prometheus");

fn promtool(args: &[&str]) -> String {
    let mut cmd = Command::new("promtool");
    cmd.current_dir(DIR).args(args);
    let (code, out, err) = run_bounded(cmd, LIMIT);
    assert_eq!(
        code,
        Some(0),
        "promtool {args:?} failed\nstdout:\n{out}\nstderr:\n{err}"
    );
    format!("{out}{err}")
}

#[test]
fn alert_rules_pass_promtool_check() {
    let out = promtool(&["check", "rules", "alerts.yml"]);
    let rules = std::fs::read_to_string(format!("{DIR}/alerts.yml")).expect("alerts.yml");
    let count = rules.matches("- alert:").count();
    assert!(count > 0, "no rules in alerts.yml");
    assert!(
        out.contains(&format!("SUCCESS: {count} rules found")),
        "promtool saw a different number of rules than alerts.yml holds ({count}):\n{out}"
    );
}

#[test]
fn alert_rules_fire_as_their_unit_tests_expect() {
    let out = promtool(&["test", "rules", "alerts.test.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}
