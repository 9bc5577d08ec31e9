//! The gateway process under test: started on a free port, its `listening on` line awaited, its
//! stderr kept for failure messages, killed by its own PID when dropped. Client processes run
//! against it (browsers, interop scripts, curl) get a proxy-free environment from [`no_proxy`].

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::*;

/// A running gateway started for one test. Dropping it kills the process (by its PID) and reaps it.
pub struct Gateway {
    child: Child,
    addrs: Vec<SocketAddr>,
    /// The backend API address (from the `api listening on` line).
    api_addr: Option<SocketAddr>,
    stderr: Arc<Mutex<Vec<u8>>>,
    status: Option<ExitStatus>,
}

impl Gateway {
    /// Start `gateway --listen 127.0.0.1:0 <args>` and wait for its `listening on` line(s).
    pub fn start(args: &[&str]) -> Gateway {
        Gateway::start_with(args, &[], true)
    }

    /// Start `gateway --listen <addr> <args>` on a fixed address, e.g. to restart a gateway on
    /// the port its clients know (the listeners use SO_REUSEADDR, so the port is free at once).
    pub fn start_at(addr: SocketAddr, args: &[&str]) -> Gateway {
        let listen = addr.to_string();
        let mut all = vec!["--listen", listen.as_str()];
        all.extend_from_slice(args);
        Gateway::start_with(&all, &[], false)
    }

    /// Start the gateway with extra environment variables. With `default_listen`, `--listen
    /// 127.0.0.1:0` is put in front of `args`. Waits for one `listening on` line per `--listen`
    /// flag (at least one).
    pub fn start_with(args: &[&str], envs: &[(&str, &str)], default_listen: bool) -> Gateway {
        Gateway::spawn(
            Command::new(env!("CARGO_BIN_EXE_gateway")),
            args,
            envs,
            default_listen,
        )
    }

    /// Start `gateway --listen 127.0.0.1:0 <args>` with its descriptor limit (soft and hard)
    /// set to `nofile` from the first instruction (through `prlimit`, which execs the gateway,
    /// so the PID is the gateway's). Both drivers see the limit: io_uring takes it when an
    /// accept is armed, so lowering it on a running process would not reach an armed accept.
    pub fn start_with_nofile(nofile: u64, args: &[&str]) -> Gateway {
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--nofile={nofile}:{nofile}"))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_gateway"));
        Gateway::spawn(cmd, args, &[], true)
    }

    fn spawn(
        mut cmd: Command,
        args: &[&str],
        envs: &[(&str, &str)],
        default_listen: bool,
    ) -> Gateway {
        if std::env::var_os("GATEWAY_DRIVER").is_none() {
            // The suites run on epoll unless the run asks for another driver
            // (`GATEWAY_DRIVER=uring cargo nextest run -p gateway`): `auto` would pick io_uring
            // wherever it exists and leave epoll untested. A `--driver` flag still wins.
            cmd.env("GATEWAY_DRIVER", "epoll");
        }
        if default_listen {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        // The backend API on a free port too, unless the test names one: a fixed default port
        // would be shared (SO_REUSEPORT) by gateways running at once. Its `api listening on`
        // line is awaited with the others.
        let api_given = args.iter().any(|a| a.starts_with("--api-listen"))
            || envs.iter().any(|(k, _)| *k == "GATEWAY_API_LISTEN");
        if !api_given {
            cmd.args(["--api-listen", "127.0.0.1:0"]);
        }
        cmd.args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn the gateway binary");

        // Drain stderr into a buffer for the whole life of the process so the gateway never
        // blocks on a full pipe, and so failures can show what it logged.
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut pipe = child.stderr.take().expect("stderr is piped");
        let sink = Arc::clone(&stderr);
        thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                if let Ok(mut buf) = sink.lock() {
                    // Keep at most the last 1 MiB: a chatty gateway must not eat the test's memory.
                    buf.extend_from_slice(&chunk[..n]);
                    let len = buf.len();
                    if len > 1 << 20 {
                        buf.drain(..len - (1 << 20));
                    }
                }
            }
        });

        let listen_flags = args
            .iter()
            .filter(|a| **a == "--listen" || a.starts_with("--listen="))
            .count();
        let expected = (listen_flags + usize::from(default_listen)).max(1);
        let stdout = child.stdout.take().expect("stdout is piped");
        let lines = spawn_stdout_reader(stdout);

        let mut gw = Gateway {
            child,
            addrs: Vec::new(),
            api_addr: None,
            stderr,
            status: None,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while gw.addrs.len() < expected || gw.api_addr.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    // stdout carries only these lines; logs go to stderr.
                    let line = line.trim_end();
                    let (api, addr) = match line.strip_prefix("api listening on ") {
                        Some(addr) => (true, addr),
                        None => match line.strip_prefix("listening on ") {
                            Some(addr) => (false, addr),
                            None => {
                                panic!("unexpected stdout line {line:?}: logs belong on stderr")
                            }
                        },
                    };
                    let addr = addr
                        .parse()
                        .unwrap_or_else(|e| panic!("bad address in stdout line {line:?}: {e}"));
                    if api {
                        gw.api_addr = Some(addr);
                    } else {
                        gw.addrs.push(addr);
                    }
                }
                Err(_) => {
                    let exited = gw.child.try_wait().ok().flatten();
                    panic!(
                        "gateway did not print {expected} `listening on` line(s) and its \
                         `api listening on` line within {:?} (got {:?} and {:?}, exit status \
                         {exited:?}); stderr:\n{}",
                        START_TIMEOUT,
                        gw.addrs,
                        gw.api_addr,
                        gw.stderr()
                    );
                }
            }
        }
        gw
    }

    /// The first listen address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// The backend API address.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr.expect("the gateway printed its API address")
    }

    /// Every listen address, in the order they were printed.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the gateway wrote to stderr so far (lossy UTF-8).
    pub fn stderr(&self) -> String {
        let buf = self.stderr.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Resident set size from `/proc/<pid>/status` (`VmRSS`), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        self.proc_status_kib("VmRSS:") * 1024
    }

    /// Address-space size from `/proc/<pid>/status` (`VmSize`), in bytes: shows reservations
    /// that were never touched (and so are not in the RSS).
    pub fn vm_bytes(&self) -> u64 {
        self.proc_status_kib("VmSize:") * 1024
    }

    fn proc_status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/<pid>/status of the gateway");
        let line = status
            .lines()
            .find(|l| l.starts_with(field))
            .unwrap_or_else(|| panic!("{field} line in /proc/<pid>/status"));
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{field} value in kB"));
        kib
    }

    /// Number of open file descriptors of the gateway (`/proc/<pid>/fd`).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .expect("list /proc/<pid>/fd")
    }

    /// Send a signal (by name, `TERM`, `INT`, ...) with the `kill` command to this PID only.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    /// SIGTERM.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Wait up to `timeout` for the process to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_some() {
            return self.status;
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait on the gateway") {
                self.status = Some(status);
                return self.status;
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Panic (with stderr) if the process has exited: a crash is never an acceptable answer.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait on the gateway") {
            self.status = Some(status);
            panic!("gateway exited with {status}; stderr:\n{}", self.stderr());
        }
    }

    /// Open a WebSocket on `/echo` (asserting the 101 and its accept key).
    pub fn client(&self) -> Client {
        Client::open(self.addr())
    }

    /// One echo round trip on a fresh connection, closed cleanly: proves the server still serves.
    pub fn assert_serves(&self) {
        assert_echo_round_trip(self.addr());
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.status.is_none() {
            // Child::kill sends SIGKILL to this child's own PID only.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn spawn_stdout_reader(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    // The receiver may be gone once the start is over: keep draining anyway.
                    let _ = tx.send(line.clone());
                }
            }
        }
    });
    rx
}

/// Open a connection, echo one text message, close with 1000 and see the TCP close.
pub fn assert_echo_round_trip(addr: SocketAddr) {
    let mut c = Client::open(addr);
    c.send_text(b"still serving");
    c.expect_frame(op::TEXT, b"still serving");
    c.close_cleanly();
}

/// Clear the proxy variables of `cmd`, so a client process reaches the loopback gateway directly.
pub fn no_proxy(cmd: &mut Command) -> &mut Command {
    for var in [
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        cmd.env_remove(var);
    }
    cmd
}
