//! Facts about the machine and the processes: cores, CPU model, kernel and the sysctls that bound
//! connection counts; this process's CPU time; the server's RSS and CPU time from /proc; and a
//! scrape of a Prometheus text endpoint.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::clock::SEC;

/// The machine a run happened on.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Machine {
    /// Host name.
    pub hostname: String,
    /// Logical CPUs.
    pub cores: usize,
    /// CPU model name.
    pub cpu_model: String,
    /// Kernel release.
    pub kernel: String,
    /// Sysctls that bound connection counts and accept queues.
    pub sysctls: BTreeMap<String, String>,
    /// This process's file-descriptor limit (soft) after raising it.
    pub nofile_limit: u64,
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Describe this machine.
pub fn machine() -> Machine {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    let sysctls = [
        "net.core.somaxconn",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.tcp_tw_reuse",
        "net.ipv4.tcp_max_syn_backlog",
        "fs.file-max",
        "fs.nr_open",
    ]
    .iter()
    .map(|name| {
        let path = format!("/proc/sys/{}", name.replace('.', "/"));
        (name.to_string(), read_trim(&path))
    })
    .collect();
    Machine {
        hostname: read_trim("/proc/sys/kernel/hostname"),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model,
        kernel: read_trim("/proc/sys/kernel/osrelease"),
        sysctls,
        nofile_limit: rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(s, _)| s),
    }
}

/// Raise the soft RLIMIT_NOFILE to the hard limit; returns the limit now in force.
pub fn raise_nofile() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX)
        .unwrap_or_else(|_| rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(s, _)| s))
}

/// CPU time used: all of it (user + system) and the part spent in the kernel (system), in ns.
/// On loopback most of a WebSocket client's or server's CPU is the kernel's TCP path, the same
/// on both ends; the user part is what a program's own code costs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTime {
    pub total_ns: u64,
    pub system_ns: u64,
}

impl CpuTime {
    /// What was used between `earlier` and `self`.
    pub fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            total_ns: self.total_ns.saturating_sub(earlier.total_ns),
            system_ns: self.system_ns.saturating_sub(earlier.system_ns),
        }
    }
}

/// CPU time of this whole process.
pub fn process_cpu() -> CpuTime {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_SELF).map_or(CpuTime::default(), |u| {
        let t = |tv: nix::sys::time::TimeVal| {
            (tv.tv_sec() as u64) * SEC + (tv.tv_usec() as u64) * 1_000
        };
        let system_ns = t(u.system_time());
        CpuTime {
            total_ns: t(u.user_time()) + system_ns,
            system_ns,
        }
    })
}

/// A server process's figures at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcSample {
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// CPU time (user + system), ns.
    pub cpu_ns: u64,
    /// The part of it spent in the kernel (system time), ns.
    pub system_ns: u64,
}

/// Read RSS (`/proc/PID/status` VmRSS) and CPU time (`/proc/PID/stat` utime + stime).
pub fn sample_pid(pid: u32) -> Result<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("--server-pid {pid}: no such process"))?;
    let rss_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("--server-pid {pid}: cannot read stat"))?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; `after` starts at field 3.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&h| h > 0)
        .map_or(100, |h| h as u64);
    Ok(ProcSample {
        rss_bytes: rss_kb * 1024,
        cpu_ns: (ticks(11) + ticks(12)) * SEC / hz,
        system_ns: ticks(12) * SEC / hz,
    })
}

/// Fetch a Prometheus text endpoint (`http://host:port/path`) and return its numeric samples.
pub fn scrape(url: &str) -> Result<BTreeMap<String, f64>> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("--server-metrics '{url}': expected http://host:port/path"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let addr = authority
        .to_socket_addrs()
        .or_else(|_| format!("{authority}:80").to_socket_addrs())
        .with_context(|| format!("--server-metrics '{url}': cannot resolve"))?
        .next()
        .with_context(|| format!("--server-metrics '{url}': no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("--server-metrics '{url}': cannot connect"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes())?;
    let mut body = Vec::new();
    s.take(16 << 20).read_to_end(&mut body)?;
    let text = String::from_utf8_lossy(&body);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("--server-metrics '{url}': not an HTTP answer");
    };
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!(
            "--server-metrics '{url}': {}",
            head.lines().next().unwrap_or("")
        );
    }
    Ok(parse_prometheus(body))
}

/// Numeric samples of a Prometheus text exposition (`name{labels} value [ts]`).
pub fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (key, rest) = match l.find('}') {
                Some(end) => (&l[..=end], &l[end + 1..]),
                None => l.split_once(char::is_whitespace)?,
            };
            let value: f64 = rest.split_whitespace().next()?.parse().ok()?;
            Some((key.trim().to_string(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_parses_with_labels() {
        let m = parse_prometheus(
            "# HELP x y\nws_connections 12\nws_msgs_total{dir=\"in\", shard=\"0\"} 3.5e3 123\n",
        );
        assert_eq!(m["ws_connections"], 12.0);
        assert_eq!(m["ws_msgs_total{dir=\"in\", shard=\"0\"}"], 3500.0);
    }

    #[test]
    fn own_process_can_be_sampled() {
        let s = sample_pid(std::process::id()).unwrap();
        assert!(s.rss_bytes > 0);
    }
}
