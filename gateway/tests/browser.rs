//! The chat page at `/`: its files and headers over a plain socket, and the whole room end to end
//! in headless Chromium (Debian's `chromium`, driven by `playwright-core` from
//! `tests/interop/node_modules`, both installed by `scripts/test.sh`).
//!
//! The browser run is `tests/browser/chat.test.mjs`; this test owns the gateway process, so the
//! script asks it on stdout to stop the gateway and start it again on the same port (the pages
//! must show that they reconnect) and reads the answers on stdin.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::redis::Redis;
use common::{gateway, no_proxy, Client, Response, IO_TIMEOUT};

/// Bound for the whole browser run (its own waits are 10 s each; it stops itself at 100 s).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);
/// Two shards, so the pages' connections and their messages cross shards; rooms keep history,
/// so a page that joins shows the recent messages.
const ARGS: &[&str] = &["--threads", "2", "--history", "room:=100/10m"];

/// Node (and with it Chromium) is killed by its PID if the test panics before it exits.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn get(c: &mut Client, path: &str, extra: &str) -> Response {
    c.send_raw(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n").as_bytes());
    c.read_response()
}

#[test]
fn page_files_are_served_with_type_length_cache_and_csp() {
    let gw = gateway().args(ARGS).start();
    let mut c = Client::connect(gw.addr());
    // Three requests on one keep-alive connection, as a browser loads the page.
    for (path, content_type, needle) in [
        ("/", "text/html; charset=utf-8", "<!doctype html>"),
        ("/chat.css", "text/css; charset=utf-8", ".log"),
        ("/chat.js", "text/javascript; charset=utf-8", "textContent"),
    ] {
        let r = get(&mut c, path, "");
        assert_eq!(r.status, 200, "{path}: {r:#?}");
        assert_eq!(r.header("Content-Type"), Some(content_type), "{path}");
        assert_eq!(
            r.header("Content-Length"),
            Some(r.body.len().to_string().as_str()),
            "{path}"
        );
        assert_eq!(r.header("Cache-Control"), Some("no-cache"), "{path}");
        assert_eq!(
            r.header("X-Content-Type-Options"),
            Some("nosniff"),
            "{path}"
        );
        let csp = r.header("Content-Security-Policy").unwrap_or_default();
        assert!(csp.starts_with("default-src 'none';"), "{path}: {csp}");
        assert!(csp.contains("connect-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(r.header("Connection"), None, "{path} keeps the connection");
        let body = String::from_utf8_lossy(&r.body);
        assert!(body.contains(needle), "{path} body lacks {needle:?}");
    }
    // The query string does not matter; `Connection: close` is honoured.
    let r = get(&mut c, "/?room=x", "Connection: close\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Connection"), Some("close"));

    let mut c = Client::connect(gw.addr());
    c.send_raw(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n");
    c.read_response().assert_error(405);
    let mut c = Client::connect(gw.addr());
    get(&mut c, "/chat.html", "").assert_error(404);
}

/// How a run of the browser script ended.
struct Run {
    /// Its stdout lines, control requests left out.
    transcript: Vec<String>,
    timed_out: bool,
    status: std::process::ExitStatus,
    stderr: String,
}

impl Run {
    /// The script passed: it exited 0 in time with `ok` last. `logs` are the gateways' stderr.
    fn assert_ok(&self, logs: &str) {
        let out = self.transcript.join("\n");
        assert!(
            !self.timed_out
                && self.status.success()
                && self.transcript.last().map(String::as_str) == Some("ok"),
            "browser run failed (timed out: {}, {})\nstdout:\n{out}\nstderr:\n{}\n\
             gateway stderr:\n{logs}",
            self.timed_out,
            self.status,
            self.stderr
        );
        for line in &self.transcript {
            if let Some(path) = line.strip_prefix("screenshot ") {
                println!("screenshot saved: {path}");
            }
        }
    }
}

/// Run `chat.test.mjs` with `args`, answering its control requests with `control` (`None`:
/// the line is output, not a request) until it exits or time runs out.
fn run_script(args: &[String], mut control: impl FnMut(&str) -> Option<&'static str>) -> Run {
    let script_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
    // The browser talks to 127.0.0.1 only.
    let child = no_proxy(
        Command::new("node")
            .current_dir(script_dir)
            .arg("chat.test.mjs")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .spawn()
    .expect("run node (installed by scripts/test.sh)");
    let mut child = KillOnDrop(child);
    let child = &mut child.0;
    let mut stdin = child.stdin.take().expect("stdin piped");
    let stdout = child.stdout.take().expect("stdout piped");
    let mut stderr_pipe = child.stderr.take().expect("stderr piped");
    let (tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let stderr = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr_pipe.read_to_string(&mut s);
        s
    });

    // Serve the script's requests until its stdout closes (it exited) or time runs out.
    let mut transcript = Vec::new();
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let mut timed_out = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match lines.recv_timeout(left) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                break;
            }
        };
        let Some(answer) = control(&line) else {
            transcript.push(line);
            continue;
        };
        // A script that already failed has closed its stdin; its output says why.
        let _ = writeln!(stdin, "{answer}").and_then(|()| stdin.flush());
    }
    if timed_out {
        // Child::kill sends SIGKILL to node's own PID; Chromium exits when its pipe closes.
        let _ = child.kill();
    }
    let status = child.wait().expect("wait for node");
    Run {
        transcript,
        timed_out,
        status,
        stderr: stderr.join().unwrap_or_default(),
    }
}

#[test]
fn chat_room_in_headless_chromium() {
    let mut gw = Some(gateway().args(ARGS).start());
    let addr = gw.as_ref().map(|g| g.addr()).expect("started");
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
    let args = [format!("http://{addr}"), out_dir.display().to_string()];
    let mut gateway_logs = String::new();
    let run = run_script(&args, |line| match line {
        "stop-gateway" => {
            let mut g = gw.take().expect("stop-gateway while the gateway runs");
            g.terminate();
            let exited = g.wait_exit(IO_TIMEOUT);
            gateway_logs.push_str(&g.stderr());
            assert!(
                exited.is_some(),
                "the gateway did not exit within {IO_TIMEOUT:?} of SIGTERM with browser \
                 clients connected; stderr:\n{gateway_logs}"
            );
            Some("stopped")
        }
        "start-gateway" => {
            assert!(gw.is_none(), "start-gateway while the gateway runs");
            gw = Some(gateway().listen(addr).args(ARGS).start());
            Some("started")
        }
        _ => None,
    });
    if let Some(g) = &gw {
        gateway_logs.push_str(&g.stderr());
    }
    run.assert_ok(&gateway_logs);
}

/// Two pages on two nodes joined through Redis (`--broker`): the room works across them.
#[test]
fn chat_room_across_two_nodes_in_headless_chromium() {
    let redis = Redis::start();
    let nodes: Vec<_> = [1, 2]
        .iter()
        .map(|id: &u16| {
            let gw = gateway()
                .args(ARGS)
                .args(["--broker", &redis.url(), "--node-id", &id.to_string()])
                .start();
            redis.wait_numsub(&format!("gw:n:{id}"), 1);
            gw
        })
        .collect();
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser-nodes");
    let args = [
        format!("http://{}", nodes[0].addr()),
        out_dir.display().to_string(),
        format!("http://{}", nodes[1].addr()),
    ];
    let run = run_script(&args, |_| None);
    let logs: String = nodes.iter().map(|g| g.stderr()).collect();
    run.assert_ok(&logs);
}
