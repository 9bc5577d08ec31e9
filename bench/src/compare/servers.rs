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

/// The servers a run compares: every server, or those `only` names, with the baseline build's
/// gateways (when there is one) right after this build's, so tables read before next to after.
/// Naming `gateway` or `gateway-uring` in `only` keeps its baseline twin too.
pub fn selected(
    bins: &Path,
    bench_dir: &Path,
    baseline_bins: Option<&Path>,
    only: Option<&[String]>,
) -> Vec<ServerSpec> {
    let mut servers = all(bins, bench_dir);
    if let Some(dir) = baseline_bins {
        let at = servers.len().min(2);
        servers.splice(at..at, baseline(dir));
    }
    servers.retain(|s| {
        only.is_none_or(|only| {
            only.iter()
                .any(|n| n == s.name || s.name.strip_suffix("-base") == Some(n.as_str()))
        })
    });
    servers
}

/// The gateway of another build (the binary directory `bins`) on both drivers, named apart so
/// a run can alternate it with this build.
pub fn baseline(bins: &Path) -> Vec<ServerSpec> {
    let program = bins.join("gateway").display().to_string();
    vec![
        ServerSpec {
            name: "gateway-base",
            command: gateway(&program, "epoll"),
            multi_threaded: true,
            library: "this project, baseline build (--baseline), epoll driver",
            protocols: &[Protocol::Bench, Protocol::SocketIo],
        },
        ServerSpec {
            name: "gateway-uring-base",
            command: gateway(&program, "uring"),
            multi_threaded: true,
            library: "this project, baseline build (--baseline), io_uring driver",
            protocols: &[Protocol::Bench, Protocol::SocketIo],
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

#[cfg(test)]
mod tests {
    use super::*;

    fn names(servers: &[ServerSpec]) -> Vec<&'static str> {
        servers.iter().map(|s| s.name).collect()
    }

    #[test]
    fn a_baseline_build_runs_next_to_this_one_on_both_drivers() {
        let (bins, bench) = (Path::new("/new"), Path::new("/b"));
        let plain = selected(bins, bench, None, None);
        assert!(!names(&plain).iter().any(|n| n.ends_with("-base")));
        let both = selected(bins, bench, Some(Path::new("/old")), None);
        assert_eq!(
            names(&both)[..4],
            [
                "gateway",
                "gateway-uring",
                "gateway-base",
                "gateway-uring-base"
            ]
        );
        assert_eq!(both.len(), plain.len() + 2);
        assert_eq!(both[2].command[0], "/old/gateway");
        assert_eq!(both[3].command[..3], ["/old/gateway", "--driver", "uring"]);
        let only: Vec<String> = ["gateway", "raw-writer"].map(String::from).to_vec();
        let some = selected(bins, bench, Some(Path::new("/old")), Some(&only));
        assert_eq!(names(&some), ["gateway", "gateway-base", "raw-writer"]);
    }
}
