//! Running loadgen for one cell: pinned with `taskset` to the load cores, its own pinning off,
//! its full result written as JSON and read back.

use std::io;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use super::options::Options;
use super::scenarios::Scenario;

/// How long loadgen waits after the measured window for replies and deliveries still on their
/// way: past the fan-out objective's 50 ms many times over, short enough to keep runs brisk.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(1);

/// Run `scenario` against `url` and return loadgen's JSON report (kept at `json`).
pub fn run(
    opts: &Options,
    loadgen: &Path,
    scenario: &Scenario,
    url: &str,
    server_pid: u32,
    json: &Path,
) -> io::Result<Value> {
    let mut command = Command::new("nice");
    command
        .args(["-n", &opts.nice.to_string()])
        .args(["taskset", "-c", &opts.loadgen_cpus])
        .arg(loadgen);
    if let Some(capacity) = &scenario.capacity {
        // `capacity [its flags] --json FILE <scenario> [scenario flags]`: one JSON with every step.
        command
            .arg("capacity")
            .args(capacity.loadgen_args())
            .arg("--json")
            .arg(json);
    }
    command
        .args(&scenario.loadgen_args)
        .args(["--url", url, "--quiet", "--no-pin"])
        .args(["--threads", &opts.loadgen_threads.to_string()])
        .args(["--warmup", &format!("{}ms", opts.warmup.as_millis())])
        .args(["--duration", &format!("{}ms", opts.duration.as_millis())])
        .args(["--drain", &format!("{}ms", DRAIN.as_millis())])
        // Server memory and CPU time from /proc, read by loadgen around the measured window.
        .args(["--server-pid", &server_pid.to_string()]);
    if scenario.capacity.is_none() {
        command.arg("--json").arg(json);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let output = command.output()?;
    // Exit code 3 means a threshold failed: only a capacity search sets one, and its report
    // says where it stopped (even at the first step). Anything else non-zero is a failed run.
    let threshold_missed = output.status.code() == Some(3) && scenario.capacity.is_some();
    if !output.status.success() && !threshold_missed {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().last().unwrap_or("").trim();
        return Err(io::Error::other(format!(
            "loadgen {}: {last}",
            output.status
        )));
    }
    let text = std::fs::read_to_string(json)?;
    serde_json::from_str(&text)
        .map_err(|err| io::Error::other(format!("{}: {err}", json.display())))
}
