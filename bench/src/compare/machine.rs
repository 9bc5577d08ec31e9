//! What the report says about where it ran: CPU, memory, kernel, toolchains and the versions
//! of every library compared, read from the machine and the lock files.

use std::path::Path;
use std::process::Command;

use super::options::Options;

/// Facts about the run, as (label, value) lines for the report.
pub struct Machine {
    /// CPU, cores, memory, kernel, pinning.
    pub facts: Vec<(String, String)>,
    /// Component and version.
    pub versions: Vec<(String, String)>,
}

/// Gather what can be read; anything unreadable says so rather than failing the run.
pub fn describe(workspace: &Path, opts: &Options) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = field(&meminfo, "MemTotal")
        .and_then(|kb| kb.trim_end_matches(" kB").trim().parse::<f64>().ok())
        .map_or_else(
            || "unknown".into(),
            |kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0),
        );
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".into(), |k| k.trim().to_owned());
    let facts = vec![
        (
            "date".into(),
            command_line(workspace, "date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        ),
        (
            "commit".into(),
            command_line(workspace, "git", &["rev-parse", "--short", "HEAD"]),
        ),
        ("CPU".into(), format!("{cpu} ({cores} cores online)")),
        ("memory".into(), memory),
        ("kernel".into(), kernel),
        (
            "open files (hard limit)".into(),
            open_files_hard_limit().map_or_else(|| "unlimited".into(), |n| n.to_string()),
        ),
        ("server cores (taskset)".into(), opts.server_cpus.clone()),
        (
            "loadgen cores (taskset)".into(),
            format!(
                "{} ({} loadgen threads)",
                opts.loadgen_cpus, opts.loadgen_threads
            ),
        ),
        (
            "niceness of servers and loadgen".into(),
            opts.nice.to_string(),
        ),
        (
            "runs".into(),
            format!(
                "{} repetitions per cell, {} s warm-up + {} s measured, servers alternating",
                opts.reps,
                opts.warmup.as_secs_f64(),
                opts.duration.as_secs_f64()
            ),
        ),
    ];
    let lock = std::fs::read_to_string(workspace.join("Cargo.lock")).unwrap_or_default();
    let node_lock = std::fs::read_to_string(workspace.join("bench/peers/node/package-lock.json"))
        .unwrap_or_default();
    let mut versions = vec![
        (
            "rustc".into(),
            command_line(workspace, "rustc", &["--version"]),
        ),
        (
            "node".into(),
            command_line(workspace, "node", &["--version"]),
        ),
        (
            "python".into(),
            command_line(workspace, "python3", &["--version"]),
        ),
    ];
    for krate in [
        "tokio-tungstenite",
        "tungstenite",
        "fastwebsockets",
        "hyper",
        "tokio",
        "mio",
    ] {
        versions.push((format!("{krate} (crate)"), cargo_lock_version(&lock, krate)));
    }
    versions.push(("ws (npm)".into(), npm_lock_version(&node_lock, "ws")));
    versions.push((
        "websockets (PyPI)".into(),
        command_line(
            workspace,
            "python3",
            &["-c", "import websockets; print(websockets.__version__)"],
        ),
    ));
    Machine { facts, versions }
}

/// `/proc/loadavg`'s three averages: how busy the machine was besides the run.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".into())
}

/// The hard `RLIMIT_NOFILE` of this process (`None` when unlimited or unreadable).
pub fn open_files_hard_limit() -> Option<u64> {
    hard_open_files(&std::fs::read_to_string("/proc/self/limits").ok()?)
}

/// The hard limit on the `Max open files` line of a `/proc/<pid>/limits` text.
fn hard_open_files(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(4)?.parse().ok()
}

fn field(text: &str, name: &str) -> Option<String> {
    text.lines()
        .find(|line| line.starts_with(name))
        .and_then(|line| line.split_once(':'))
        .map(|(_, value)| value.trim().to_owned())
}

fn command_line(dir: &Path, program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// Versions of `name` in a Cargo.lock (several when more than one is locked).
fn cargo_lock_version(lock: &str, name: &str) -> String {
    let wanted = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    let mut found = Vec::new();
    while let Some(line) = lines.next() {
        if line == wanted {
            if let Some(version) = lines.next().and_then(|v| v.strip_prefix("version = ")) {
                found.push(version.trim_matches('"').to_owned());
            }
        }
    }
    if found.is_empty() {
        "not locked".into()
    } else {
        found.join(", ")
    }
}

/// Version of `node_modules/<name>` in an npm lockfile (v2/v3 layout).
fn npm_lock_version(lock: &str, name: &str) -> String {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(lock) else {
        return "not locked".into();
    };
    json.pointer(&format!("/packages/node_modules~1{name}/version"))
        .and_then(|v| v.as_str())
        .unwrap_or("not locked")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_hard_open_files_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             unlimited            unlimited            processes \n\
                      Max open files            1024                 20000                files     \n";
        assert_eq!(hard_open_files(limits), Some(20000));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(hard_open_files(unlimited), None);
    }

    #[test]
    fn reads_versions_from_lock_files() {
        let lock = "[[package]]\nname = \"tokio\"\nversion = \"1.2.3\"\n\n[[package]]\nname = \"tokio-util\"\nversion = \"0.7.0\"\n";
        assert_eq!(cargo_lock_version(lock, "tokio"), "1.2.3");
        assert_eq!(cargo_lock_version(lock, "hyper"), "not locked");
        let npm = r#"{"packages": {"": {}, "node_modules/ws": {"version": "8.23.0"}}}"#;
        assert_eq!(npm_lock_version(npm, "ws"), "8.23.0");
    }
}
