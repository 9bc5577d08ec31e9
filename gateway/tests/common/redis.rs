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
        wait_count(topic, n, || self.numsub(topic))
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

/// What the broker suites need of a deployment's broker, whatever its kind.
pub trait Broker {
    /// The `--broker` value.
    fn url(&self) -> String;
    /// Wait (bounded) until `topic` has `n` subscribers in all (one per subscribed node).
    fn wait_numsub(&self, topic: &str, n: i64);
    /// Wait (bounded) until node `id` listens on its node topic wherever it must.
    fn wait_node(&self, id: u16);
}

impl Broker for Redis {
    fn url(&self) -> String {
        Redis::url(self)
    }
    fn wait_numsub(&self, topic: &str, n: i64) {
        Redis::wait_numsub(self, topic, n)
    }
    fn wait_node(&self, id: u16) {
        Redis::wait_numsub(self, &format!("gw:n:{id}"), 1)
    }
}

impl Broker for Brokers {
    fn url(&self) -> String {
        Brokers::url(self)
    }
    fn wait_numsub(&self, topic: &str, n: i64) {
        Brokers::wait_numsub(self, topic, n)
    }
    fn wait_node(&self, id: u16) {
        Brokers::wait_node(self, id)
    }
}

/// The Redis side of a deployment: one instance, or several that channels spread over
/// (`--broker redis://a,redis://b`). Channel topics live on one instance each, node topics on
/// every one, so counts of a channel's subscribers add up over the instances.
pub struct Brokers {
    pub instances: Vec<Redis>,
}

impl Brokers {
    /// `n` fresh instances.
    pub fn start(n: usize) -> Brokers {
        Brokers {
            instances: (0..n).map(|_| Redis::start()).collect(),
        }
    }

    /// The `--broker` value naming every instance.
    pub fn url(&self) -> String {
        let urls: Vec<String> = self.instances.iter().map(Redis::url).collect();
        urls.join(",")
    }

    /// Subscribers of broker channel `topic` summed over the instances.
    pub fn numsub(&self, topic: &str) -> i64 {
        self.instances.iter().map(|r| r.numsub(topic)).sum()
    }

    /// Wait (bounded) until `topic` has `n` subscribers over all instances.
    pub fn wait_numsub(&self, topic: &str, n: i64) {
        wait_count(topic, n, || self.numsub(topic))
    }

    /// Wait (bounded) until node `id` listens on its node topic on every instance.
    pub fn wait_node(&self, id: u16) {
        for r in &self.instances {
            r.wait_numsub(&format!("gw:n:{id}"), 1);
        }
    }

    /// The instance that carries broker channel `topic` while a node subscribes to it.
    pub fn holder(&self, topic: &str) -> usize {
        let held: Vec<usize> = (0..self.instances.len())
            .filter(|&i| self.instances[i].numsub(topic) > 0)
            .collect();
        assert_eq!(held.len(), 1, "{topic} lives on one instance: {held:?}");
        held[0]
    }
}

/// Wait (bounded) until `count` says `topic` has `n` subscribers.
fn wait_count(topic: &str, n: i64, count: impl Fn() -> i64) {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let now = count();
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
