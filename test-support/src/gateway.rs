//! The gateway binary started for a test: on free loopback ports unless told otherwise, on the
//! event driver the test run asks for, its announced addresses awaited, stopped when dropped.

use std::ffi::{OsStr, OsString};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::listening::Expect;
use crate::Process;

/// How long a gateway may take to print its `listening on` lines.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Where a listener goes unless the test names one: a free port, so gateways of tests running at
/// once never share one (the listeners use SO_REUSEPORT, so a fixed port would be shared).
const ANY_LOOPBACK_PORT: &str = "127.0.0.1:0";

/// An event driver of the gateway (`--driver`, `GATEWAY_DRIVER`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    Epoll,
    Uring,
    /// io_uring where the kernel allows it, else epoll: the gateway's own default.
    Auto,
}

impl Driver {
    fn name(self) -> &'static str {
        match self {
            Driver::Epoll => "epoll",
            Driver::Uring => "uring",
            Driver::Auto => "auto",
        }
    }
}

/// How to start a gateway; [`Gateway::builder`] makes one.
///
/// Unless the arguments or the environment name them, the client listener and the backend API
/// listener go on free loopback ports. The driver is the one `GATEWAY_DRIVER` names in the test
/// run's environment, else [`GatewayBuilder::default_driver`] (epoll); a `--driver` argument
/// still wins over both.
#[derive(Clone, Debug)]
pub struct GatewayBuilder {
    binary: PathBuf,
    listen: Vec<SocketAddr>,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    default_driver: Driver,
    nofile: Option<u64>,
    start_timeout: Duration,
}

impl GatewayBuilder {
    /// Add one command-line argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Add command-line arguments.
    pub fn args(mut self, args: impl IntoIterator<Item = impl AsRef<OsStr>>) -> Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Set an environment variable of the gateway.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Listen on `addr` (before any `--listen` in the arguments), e.g. to restart a gateway on the
    /// port its clients know. Replaces the default free port.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen.push(addr);
        self
    }

    /// Run `threads` shards.
    pub fn threads(self, threads: usize) -> Self {
        self.arg("--threads").arg(threads.to_string())
    }

    /// The driver when the test run's environment names none. Epoll unless set: `auto` would
    /// pick io_uring wherever it exists and leave epoll untested.
    pub fn default_driver(mut self, driver: Driver) -> Self {
        self.default_driver = driver;
        self
    }

    /// Start with the descriptor limit (soft and hard) at `nofile` from the first instruction,
    /// through `prlimit`, which execs the gateway (so the PID is the gateway's). Both drivers
    /// see the limit: io_uring takes it when an accept is armed, so lowering it on a running
    /// process would not reach an armed accept.
    pub fn nofile(mut self, nofile: u64) -> Self {
        self.nofile = Some(nofile);
        self
    }

    /// How long to wait for the `listening on` lines ([`START_TIMEOUT`] unless set).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Start the gateway and wait for one `listening on` line per listener and its `api
    /// listening on` line.
    pub fn start(self) -> Gateway {
        let listen_args = self.args.iter().filter(|a| is_listen_flag(a)).count();
        let default_listen =
            self.listen.is_empty() && listen_args == 0 && !self.has_env("GATEWAY_LISTEN");
        let api_given = self.args.iter().any(|a| starts_with(a, "--api-listen"))
            || self.has_env("GATEWAY_API_LISTEN");

        let mut cmd = match self.nofile {
            Some(n) => {
                let mut cmd = Command::new("prlimit");
                cmd.arg(format!("--nofile={n}:{n}"))
                    .arg("--")
                    .arg(&self.binary);
                cmd
            }
            None => Command::new(&self.binary),
        };
        if std::env::var_os("GATEWAY_DRIVER").is_none() {
            cmd.env("GATEWAY_DRIVER", self.default_driver.name());
        }
        if default_listen {
            cmd.args(["--listen", ANY_LOOPBACK_PORT]);
        }
        for addr in &self.listen {
            cmd.arg("--listen").arg(addr.to_string());
        }
        if !api_given {
            cmd.args(["--api-listen", ANY_LOOPBACK_PORT]);
        }
        cmd.args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)));

        let mut process = Process::spawn(cmd);
        let expect = Expect {
            // With none on the command line, the environment or a config file names one.
            listeners: (self.listen.len() + listen_args + usize::from(default_listen)).max(1),
            api: true,
        };
        let listening = process.await_listening(expect, self.start_timeout);
        Gateway {
            process,
            addrs: listening.addrs,
            // UNWRAP: `await_listening` returns only once the API line came, as `expect` asks.
            api_addr: listening.api.unwrap(),
        }
    }

    fn has_env(&self, key: &str) -> bool {
        self.envs.iter().any(|(k, _)| k == key)
    }
}

fn starts_with(arg: &OsStr, prefix: &str) -> bool {
    arg.to_str().is_some_and(|a| a.starts_with(prefix))
}

fn is_listen_flag(arg: &OsStr) -> bool {
    arg == "--listen" || starts_with(arg, "--listen=")
}

/// A gateway process started for one test. Dropping it stops the process it started (SIGTERM,
/// then SIGKILL after a short grace) and reaps it; a failing test also shows its stderr.
pub struct Gateway {
    process: Process,
    addrs: Vec<SocketAddr>,
    api_addr: SocketAddr,
}

impl Gateway {
    /// A builder for the gateway at `binary`: `env!("CARGO_BIN_EXE_gateway")` in the gateway's
    /// own tests, [`crate::gateway_binary`] elsewhere.
    pub fn builder(binary: impl Into<PathBuf>) -> GatewayBuilder {
        GatewayBuilder {
            binary: binary.into(),
            listen: Vec::new(),
            args: Vec::new(),
            envs: Vec::new(),
            default_driver: Driver::Epoll,
            nofile: None,
            start_timeout: START_TIMEOUT,
        }
    }

    /// The first client listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every client listener's address, in the order they were printed.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The backend API listener's address.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// What the gateway wrote to stderr so far (its last MiB, lossy UTF-8).
    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// Send `signal` to the gateway's PID only.
    pub fn signal(&self, signal: Signal) {
        self.process.signal(signal);
    }

    /// SIGTERM: a graceful drain.
    pub fn terminate(&self) {
        self.process.terminate();
    }

    /// Wait up to `timeout` for the gateway to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.process.wait_exit(timeout)
    }

    /// Panic (with stderr) if the gateway has exited: a crash is never an acceptable answer.
    pub fn assert_running(&mut self) {
        self.process.assert_running();
    }
}
