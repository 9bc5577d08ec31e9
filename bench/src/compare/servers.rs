//! The servers under comparison and how one is started, pinned, and stopped.
//!
//! Every server follows `bench/PROTOCOL.md`: `--listen 127.0.0.1:0 --threads N`, one
//! `listening on <addr>` line. It runs under `nice` and `taskset` (pinned to the server cores)
//! behind a shell that raises the open-file limit; each of them `exec`s the next, so the PID we
//! hold is the server's.

use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::scenarios::Protocol;

/// How long a server may take to print its `listening on` line.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Open files a server may hold: the idle scenarios keep 50,000 connections.
const NOFILE: u32 = 200_000;

/// One server of the comparison.
#[derive(Clone, Debug)]
pub struct ServerSpec {
    /// Short name used in flags, tables and file names.
    pub name: &'static str,
    /// The program and the arguments before `--listen`.
    pub command: Vec<String>,
    /// False when the server runs one event loop whatever `--threads` says.
    pub multi_threaded: bool,
    /// What it is built on, for the report.
    pub library: &'static str,
    /// The client protocols it speaks (scenarios of other protocols skip it).
    pub protocols: &'static [Protocol],
}

const BENCH: &[Protocol] = &[Protocol::Bench];

/// Every server, the gateway first (ratios are taken against it).
pub fn all(bins: &Path, bench_dir: &Path) -> Vec<ServerSpec> {
    let bin = |name: &str| bins.join(name).display().to_string();
    let script = |path: &str| bench_dir.join(path).display().to_string();
    vec![
        ServerSpec {
            name: "gateway",
            command: gateway(&bin("gateway"), "epoll"),
            multi_threaded: true,
            library: "this project, epoll driver",
            protocols: &[Protocol::Bench, Protocol::SocketIo],
        },
        ServerSpec {
            name: "gateway-uring",
            command: gateway(&bin("gateway"), "uring"),
            multi_threaded: true,
            library: "this project, io_uring driver",
            protocols: &[Protocol::Bench, Protocol::SocketIo],
        },
        ServerSpec {
            name: "tokio-tungstenite",
            command: vec![bin("peer-tokio-tungstenite")],
            multi_threaded: true,
            library: "tokio-tungstenite",
            protocols: BENCH,
        },
        ServerSpec {
            name: "fastwebsockets",
            command: vec![bin("peer-fastwebsockets")],
            multi_threaded: true,
            library: "fastwebsockets",
            protocols: BENCH,
        },
        ServerSpec {
            name: "raw-writer",
            command: vec![bin("peer-raw-writer")],
            multi_threaded: true,
            library: "mio + write(2), the ceiling",
            protocols: BENCH,
        },
        ServerSpec {
            name: "node-ws",
            command: vec!["node".into(), script("peers/node/server.js")],
            multi_threaded: false,
            library: "ws (Node)",
            protocols: BENCH,
        },
        ServerSpec {
            name: "python-websockets",
            command: vec!["python3".into(), script("peers/python/server.py")],
            multi_threaded: false,
            library: "websockets (Python)",
            protocols: BENCH,
        },
        ServerSpec {
            name: "node-socketio",
            command: vec!["node".into(), script("peers/socketio/server.js")],
            multi_threaded: false,
            library: "socket.io (Node), the official server",
            protocols: &[Protocol::SocketIo],
        },
    ]
}

/// The gateway on one event driver, its backend API on a free port (the default, 8081, may be
/// taken on a shared machine).
fn gateway(program: &str, driver: &str) -> Vec<String> {
    // loadgen's Socket.IO convention: a `loadgen` event goes to the room's other sockets.
    [
        program,
        "--driver",
        driver,
        "--api-listen",
        "127.0.0.1:0",
        "--socketio-event",
        "loadgen=to-room-others",
    ]
    .map(String::from)
    .to_vec()
}

/// A started server.
pub struct Running {
    child: Child,
    /// The address it announced.
    pub addr: SocketAddr,
    /// Its process id (for loadgen's `--server-pid`).
    pub pid: u32,
}

impl Running {
    /// Start `spec` with `threads` threads pinned to `cpus` and wait for its address. The
    /// server's standard error goes to `log`.
    pub fn start(
        spec: &ServerSpec,
        threads: usize,
        cpus: &str,
        nice: i32,
        log: &Path,
    ) -> io::Result<Running> {
        if let Some(program) = spec.command.first().map(Path::new) {
            if program.is_absolute() && !program.is_file() {
                return Err(io::Error::other(format!(
                    "{} is not built",
                    program.display()
                )));
            }
        }
        let launcher =
            format!("ulimit -n {NOFILE} 2>/dev/null || ulimit -n $(ulimit -Hn); exec \"$@\"");
        let mut child = Command::new("sh")
            .args(["-c", &launcher, "sh", "nice", "-n", &nice.to_string()])
            .args(["taskset", "-c", cpus])
            .args(&spec.command)
            .args(["--listen", "127.0.0.1:0", "--threads", &threads.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log)?)
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout pipe"))?;
        let (line_tx, line_rx) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = line_tx.send(line);
            // Keep reading until the server exits: a server that prints more (the gateway
            // announces its API address too) must not fail on a closed pipe.
            let _ = io::copy(&mut reader, &mut io::sink());
        });
        let line = line_rx.recv_timeout(START_TIMEOUT).unwrap_or_default();
        let addr = line
            .trim_end()
            .strip_prefix("listening on ")
            .and_then(|addr| addr.parse().ok());
        let pid = child.id();
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = std::fs::read_to_string(log).unwrap_or_default();
            return Err(io::Error::other(format!(
                "{} did not announce `listening on <addr>` (stdout {:?}, stderr {:?})",
                spec.name,
                line.trim_end(),
                stderr.lines().last().unwrap_or("").trim()
            )));
        };
        Ok(Running { child, addr, pid })
    }

    /// SIGTERM, then SIGKILL if it is still there after the stop timeout.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        eprintln!("    server {} ignored SIGTERM; killed", self.pid);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
