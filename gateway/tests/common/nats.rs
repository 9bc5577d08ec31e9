//! A real `nats-server` (core NATS) for the broker suites: started on free loopback ports (the
//! client port and the monitoring port) with no config file, killed by its PID when dropped,
//! and what its monitoring endpoint sees (`/subsz` subscriptions, `/varz` counters).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::Process;

use super::*;

/// One `nats-server` process.
pub struct Nats {
    pub process: Process,
    pub port: u16,
    pub monitor_port: u16,
}

impl Nats {
    /// Start a server on free ports and wait until its monitoring endpoint answers.
    pub fn start() -> Nats {
        Nats::start_on(free_port(), free_port())
    }

    /// Start a server on `port` and `monitor_port` (a restart after `kill -9` reuses them).
    pub fn start_on(port: u16, monitor_port: u16) -> Nats {
        Nats::start_with(port, monitor_port, None)
    }

    /// Start a server on free ports with the configuration file `config` (its text).
    pub fn start_with_config(config: &str) -> Nats {
        let path = std::env::temp_dir().join(format!("gateway-nats-{}.conf", free_port()));
        std::fs::write(&path, config).expect("write the nats-server configuration");
        let n = Nats::start_with(free_port(), free_port(), Some(&path));
        let _ = std::fs::remove_file(&path);
        n
    }

    fn start_with(port: u16, monitor_port: u16, config: Option<&std::path::Path>) -> Nats {
        let mut cmd = Command::new("nats-server");
        if let Some(config) = config {
            cmd.arg("-c").arg(config);
        }
        cmd.args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(["-m", &monitor_port.to_string()]);
        let n = Nats {
            process: Process::spawn(cmd),
            port,
            monitor_port,
        };
        let deadline = Instant::now() + IO_TIMEOUT;
        while n.try_monitor("/varz").is_none() || TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            thread::sleep(Duration::from_millis(20));
        }
        n
    }

    /// The `--broker` value for this server.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// `GET path` on the monitoring port, as JSON; `None` when the server does not answer.
    pub fn try_monitor(&self, path: &str) -> Option<Value> {
        let mut s = TcpStream::connect(("127.0.0.1", self.monitor_port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: nats\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).ok()?;
        let mut text = Vec::new();
        s.read_to_end(&mut text).ok()?;
        let at = text.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        serde_json::from_slice(&text[at..]).ok()
    }

    /// `GET path` on the monitoring port; the server must answer.
    pub fn monitor(&self, path: &str) -> Value {
        self.try_monitor(path)
            .unwrap_or_else(|| panic!("nats-server did not answer {path}"))
    }

    /// Subscriptions to exactly `subject` (`/subsz`): one per subscribed node.
    pub fn subscriptions(&self, subject: &str) -> i64 {
        let v = self.monitor(&format!("/subsz?subs=1&limit=100000&test={subject}"));
        let list = v["subscriptions_list"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        list.iter().filter(|s| s["subject"] == subject).count() as i64
    }

    /// Wait (bounded) until `subject` has `n` subscriptions.
    pub fn wait_subscriptions(&self, subject: &str, n: i64) {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            let now = self.subscriptions(subject);
            if now == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{subject}: {now} subscriptions, want {n}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// A counter from `/varz` (`in_msgs`, `in_bytes`, `out_msgs`, `out_bytes`, ...).
    pub fn varz(&self, name: &str) -> u64 {
        self.monitor("/varz")[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{name} in /varz"))
    }
}
