//! Running loadgen for one cell: pinned with `taskset` to the load cores, its own pinning off,
//! its full result written as JSON and read back.

use std::io;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use super::options::Options;
use super::scenarios::Scenario;

/// Run `scenario` against `url` and return loadgen's JSON report (kept at `json`).
pub fn run(
    opts: &Options,
    loadgen: &Path,
    scenario: &Scenario,
    url: &str,
    server_pid: u32,
    json: &Path,
) -> io::Result<Value> {
    let mut command = Command::new("taskset");
    command
        .args(["-c", &opts.loadgen_cpus])
        .arg(loadgen)
        .args(&scenario.loadgen_args)
        .args(["--url", url, "--quiet", "--no-pin"])
        .args(["--threads", &opts.loadgen_threads.to_string()])
        .args(["--warmup", &format!("{}ms", opts.warmup.as_millis())])
        .args(["--duration", &format!("{}ms", opts.duration.as_millis())])
        // Server memory and CPU time from /proc, read by loadgen around the measured window.
        .args(["--server-pid", &server_pid.to_string()])
        .arg("--json")
        .arg(json)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let output = command.output()?;
    // Exit code 3 means a threshold failed, which the comparison does not set; anything else
    // non-zero is a failed run.
    if !output.status.success() {
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
