//! A real `redis-server` for the broker suites: started on a free loopback port with no
//! persistence, killed by its PID when dropped, and a one-request-per-connection client (RESP
//! through the gateway's own codec) to ask it what it sees (`PUBSUB NUMSUB`, `INFO`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use gateway::broker::resp::{encode_command, parse, Parsed, Value};
use test_support::Process;

use super::*;

/// One `redis-server` process.
pub struct Redis {
    pub process: Process,
    pub port: u16,
}

impl Redis {
    /// Start a server on a free port and wait until it answers `PING`.
    pub fn start() -> Redis {
        Redis::start_on(free_port())
    }

    /// Start a server on `port` (a restart after `kill -9` reuses the port).
    pub fn start_on(port: u16) -> Redis {
        Redis::start_with(port, &[])
    }

    /// Start a server on `port` with `extra` arguments after the defaults (a later one wins:
    /// `--appendonly yes` turns persistence on).
    pub fn start_with(port: u16, extra: &[&str]) -> Redis {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(extra);
        let r = Redis {
            process: Process::spawn(cmd),
            port,
        };
        let deadline = Instant::now() + IO_TIMEOUT;
        while r.try_command(&["PING"]).is_none() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            thread::sleep(Duration::from_millis(20));
        }
        r
    }

    /// The `--broker` value for this server.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Send one command on a fresh connection; `None` when the server does not answer.
    pub fn try_command(&self, args: &[&str]) -> Option<Value> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut out = Vec::new();
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        encode_command(&mut out, &args);
        s.write_all(&out).ok()?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Ok(Parsed::Value(v, _)) = parse(&buf) {
                return Some(v);
            }
            let n = s.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Send one command; the server must answer.
    pub fn command(&self, args: &[&str]) -> Value {
        self.try_command(args)
            .unwrap_or_else(|| panic!("redis-server did not answer {args:?}"))
    }

    /// Subscribers of broker channel `topic` (`PUBSUB NUMSUB`): one per subscribed node.
    pub fn numsub(&self, topic: &str) -> i64 {
        match self.command(&["PUBSUB", "NUMSUB", topic]) {
            Value::Array(Some(items)) => match items.get(1) {
                Some(Value::Int(n)) => *n,
                other => panic!("NUMSUB count: {other:?}"),
            },
            other => panic!("NUMSUB answer: {other:?}"),
        }
    }

    /// Wait (bounded) until `topic` has `n` subscribers.
    pub fn wait_numsub(&self, topic: &str, n: i64) {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            let now = self.numsub(topic);
            if now == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{topic}: {now} subscribers, want {n}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// A counter from `INFO stats` (or any `INFO` section).
    pub fn info_stat(&self, name: &str) -> u64 {
        let Value::Bulk(Some(text)) = self.command(&["INFO", "stats"]) else {
            panic!("INFO answer");
        };
        let text = String::from_utf8_lossy(&text).into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in INFO stats"))
    }
}
