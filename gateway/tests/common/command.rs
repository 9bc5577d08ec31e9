//! Running an outside program (a client script, curl) bounded in time: its output is collected
//! on threads so a chatty child never blocks on a full pipe, and past the limit it is killed by
//! its own PID and the test fails with what it printed.

use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::no_proxy;

/// Run `cmd` (bounded by `limit`, killed by its PID past it) and return (exit code, stdout, stderr).
pub fn run_bounded(mut cmd: Command, limit: Duration) -> (Option<i32>, String, String) {
    let shown = format!("{cmd:?}");
    let mut child = no_proxy(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .spawn()
    .unwrap_or_else(|e| panic!("run {shown}: {e}"));
    let mut out_pipe = child.stdout.take().expect("stdout piped");
    let mut err_pipe = child.stderr.take().expect("stderr piped");
    let out = thread::spawn(move || {
        let mut s = String::new();
        let _ = out_pipe.read_to_string(&mut s);
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    match status {
        None => panic!("{shown} did not finish within {limit:?}\nstdout:\n{out}\nstderr:\n{err}"),
        Some(s) => (s.code(), out, err),
    }
}

/// Run every `node:test` file in `dir` whose name ends with `suffix` (`node --test`, with `env`)
/// against `gw`, bounded by `limit`; fail with Node's output and the gateway's log unless all
/// pass.
pub fn run_node_suite(
    gw: &super::Gateway,
    dir: &std::path::Path,
    suffix: &str,
    env: &[(&str, String)],
    limit: Duration,
) {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(suffix))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *{suffix} files in {}", dir.display());
    let mut cmd = Command::new("node");
    cmd.current_dir(dir).arg("--test").args(&files);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (code, out, err) = run_bounded(cmd, limit);
    assert!(
        code == Some(0),
        "node --test failed (exit {code:?})\nstdout:\n{out}\nstderr:\n{err}\n\
         gateway stderr:\n{}",
        gw.stderr()
    );
}
