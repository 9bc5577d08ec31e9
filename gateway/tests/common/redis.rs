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
    /// The default user's password (`--requirepass`), which this helper's own commands give.
    pub password: Option<String>,
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
        Redis::start_as(port, extra, None)
    }

    /// [`Redis::start_with`], the default user needing `password` (`--requirepass`) when given.
    pub fn start_as(port: u16, extra: &[&str], password: Option<&str>) -> Redis {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(extra);
        if let Some(pw) = password {
            cmd.args(["--requirepass", pw]);
        }
        let r = Redis {
            process: Process::spawn(cmd),
            port,
            password: password.map(str::to_owned),
        };
        let deadline = Instant::now() + IO_TIMEOUT;
        while r.try_command(&["PING"]).is_none() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            thread::sleep(Duration::from_millis(20));
        }
        r
    }

    /// The `--broker` value for this server (with its password, if it has one).
    pub fn url(&self) -> String {
        format!(
            "redis://{}127.0.0.1:{}",
            user_part(&self.password),
            self.port
        )
    }

    /// Send one command on a fresh connection (after `AUTH` if the server has a password);
    /// `None` when the server does not answer.
    pub fn try_command(&self, args: &[&str]) -> Option<Value> {
        try_command_as(self.port, self.password.as_deref(), args)
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

/// A Redis Cluster of three masters and no replicas, each `redis-server --cluster-enabled yes`
/// on a free client port and a free bus port (`--cluster-port`), its `nodes.conf` in a scratch
/// directory (removed when dropped) so that a master killed and started again rejoins with its
/// slots. Made with `redis-cli --cluster create`; ready once every master says
/// `cluster_state:ok`. A failed master leaves the others serving their slots
/// (`cluster-require-full-coverage no`, as a gateway deployment should set it) and is noticed by
/// the others after a second (`cluster-node-timeout 1000`).
pub struct Cluster {
    pub masters: Vec<Redis>,
    bus_ports: Vec<u16>,
    dir: std::path::PathBuf,
    /// Every master's password (`--requirepass`), if they have one.
    password: Option<String>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.masters.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Cluster {
    /// Three masters with the slots split evenly (0-5460, 5461-10922, 10923-16383, in order).
    pub fn start() -> Cluster {
        Cluster::start_as(None)
    }

    /// [`Cluster::start`], every master needing `password` when given.
    pub fn start_as(password: Option<&str>) -> Cluster {
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("gw-cluster-{}-{seq}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the cluster's scratch directory");
        let mut c = Cluster {
            masters: Vec::new(),
            bus_ports: Vec::new(),
            dir,
            password: password.map(str::to_owned),
        };
        for _ in 0..3 {
            let (port, bus) = (free_port(), free_port());
            c.bus_ports.push(bus);
            let m = c.start_master(port, bus);
            c.masters.push(m);
        }
        let mut cmd = Command::new("redis-cli");
        cmd.args(["--cluster", "create"]);
        cmd.args(c.masters.iter().map(|m| format!("127.0.0.1:{}", m.port)));
        cmd.args(["--cluster-replicas", "0", "--cluster-yes"]);
        if let Some(pw) = password {
            cmd.args(["-a", pw, "--no-auth-warning"]);
        }
        let (code, out, err) = run_bounded(cmd, IO_TIMEOUT);
        assert_eq!(code, Some(0), "redis-cli --cluster create: {out}{err}");
        for i in 0..3 {
            c.wait_ok(i);
        }
        c
    }

    fn start_master(&self, port: u16, bus: u16) -> Redis {
        let conf = self.dir.join(format!("nodes-{port}.conf"));
        let conf = conf.to_string_lossy().into_owned();
        let dir = self.dir.to_string_lossy().into_owned();
        #[rustfmt::skip]
        let extra = [
            "--cluster-enabled", "yes",
            "--cluster-port", &bus.to_string(),
            "--cluster-config-file", &conf,
            "--cluster-node-timeout", "1000",
            "--cluster-require-full-coverage", "no",
            "--dir", &dir,
        ];
        Redis::start_as(port, &extra, self.password.as_deref())
    }

    /// Wait (bounded) until master `i` says `cluster_state:ok`.
    pub fn wait_ok(&self, i: usize) {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            if let Some(Value::Bulk(Some(info))) = self.masters[i].try_command(&["CLUSTER", "INFO"])
            {
                if String::from_utf8_lossy(&info).contains("cluster_state:ok") {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "master {i}: cluster not ok");
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Move empty-but-for-keys slot `slot` to master `to`, as `redis-cli --cluster reshard`
    /// does: `IMPORTING` on the target, `MIGRATING` on the source, its keys `MIGRATE`d, then
    /// `SETSLOT NODE` on every master. `during` runs while the slot is half moved (its keys
    /// on the target, the source answering `-ASK` for keys it lacks).
    pub fn migrate(&self, slot: u16, to: usize, during: impl FnOnce()) {
        let from = self.owner(slot);
        let id = |i: usize| match self.masters[i].command(&["CLUSTER", "MYID"]) {
            Value::Bulk(Some(id)) => String::from_utf8_lossy(&id).into_owned(),
            other => panic!("CLUSTER MYID answer: {other:?}"),
        };
        let (src, dst) = (id(from), id(to));
        let slot = slot.to_string();
        let ok = |v: Value| assert_eq!(v, Value::Simple(b"OK".to_vec()));
        ok(self.masters[to].command(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &src]));
        ok(self.masters[from].command(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &dst]));
        let keys = match self.masters[from].command(&["CLUSTER", "GETKEYSINSLOT", &slot, "1000"]) {
            Value::Array(Some(keys)) => keys,
            other => panic!("GETKEYSINSLOT answer: {other:?}"),
        };
        if !keys.is_empty() {
            let port = self.masters[to].port.to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            let names: Vec<String> = keys
                .iter()
                .filter_map(Value::bytes)
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .collect();
            args.extend(names.iter().map(String::as_str));
            ok(self.masters[from].command(&args));
        }
        during();
        for i in [to, from]
            .into_iter()
            .chain((0..3).filter(|&i| i != to && i != from))
        {
            ok(self.masters[i].command(&["CLUSTER", "SETSLOT", &slot, "NODE", &dst]));
        }
    }

    /// Kill master `i` (`kill -9`).
    pub fn kill(&mut self, i: usize) {
        self.masters[i].process.signal(Signal::SIGKILL);
        let _ = self.masters[i].process.wait_exit(IO_TIMEOUT);
    }

    /// Start master `i` again on its ports: it rejoins with its slots from its `nodes.conf`.
    pub fn restart(&mut self, i: usize) {
        let m = self.start_master(self.masters[i].port, self.bus_ports[i]);
        self.masters[i] = m;
    }

    /// The `--broker` value naming every master as a seed.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .masters
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.port))
            .collect();
        format!(
            "redis-cluster://{}{}",
            user_part(&self.password),
            seeds.join(",")
        )
    }

    /// The master serving `slot` (from `CLUSTER SLOTS`, read with the gateway's own parser).
    pub fn owner(&self, slot: u16) -> usize {
        let v = self.masters[0].command(&["CLUSTER", "SLOTS"]);
        let map = gateway::broker::slots::SlotMap::from_cluster_slots(&v)
            .unwrap_or_else(|| panic!("CLUSTER SLOTS answer: {v:?}"));
        let addr = map
            .owner(slot)
            .unwrap_or_else(|| panic!("slot {slot} unserved"));
        self.masters
            .iter()
            .position(|m| addr == format!("127.0.0.1:{}", m.port))
            .unwrap_or_else(|| panic!("{addr} is not a master here"))
    }

    /// The master that serves gateway channel `channel`.
    pub fn owner_of_channel(&self, channel: &str) -> usize {
        let p = gateway::broker::slots::partition_of(channel);
        self.owner(gateway::broker::slots::partition_slot(p))
    }

    /// Subscribers of sharded channel `topic` (`PUBSUB SHARDNUMSUB`) summed over the live
    /// masters; a gateway channel's topic `gw:c:NAME` counts its partition's subscribers.
    pub fn numsub(&self, topic: &str) -> i64 {
        (0..self.masters.len())
            .map(|i| self.numsub_on(i, topic))
            .sum()
    }

    /// [`Cluster::numsub`] on master `i` alone (0 while it is down).
    pub fn numsub_on(&self, i: usize, topic: &str) -> i64 {
        let topic = match topic.strip_prefix("gw:c:") {
            Some(c) => gateway::broker::slots::topic_of(c),
            None => topic.to_owned(),
        };
        match self.masters[i].try_command(&["PUBSUB", "SHARDNUMSUB", &topic]) {
            None => 0,
            Some(Value::Array(Some(items))) => match items.get(1) {
                Some(Value::Int(n)) => *n,
                other => panic!("SHARDNUMSUB count: {other:?}"),
            },
            Some(other) => panic!("SHARDNUMSUB answer: {other:?}"),
        }
    }

    /// Wait (bounded) until `topic` has `n` subscribers over the masters.
    pub fn wait_numsub(&self, topic: &str, n: i64) {
        wait_count(topic, n, || self.numsub(topic))
    }

    /// A counter from `INFO stats` summed over the masters.
    pub fn info_stat(&self, name: &str) -> u64 {
        self.masters.iter().map(|m| m.info_stat(name)).sum()
    }
}

impl Broker for Cluster {
    fn url(&self) -> String {
        Cluster::url(self)
    }
    fn wait_numsub(&self, topic: &str, n: i64) {
        Cluster::wait_numsub(self, topic, n)
    }
    fn wait_node(&self, id: u16) {
        Cluster::wait_numsub(self, &format!("gw:n:{id}"), 1)
    }
}

/// `:PASSWORD@` for a `--broker` URL (nothing without one; test passwords need no escapes).
fn user_part(password: &Option<String>) -> String {
    password
        .as_deref()
        .map_or_else(String::new, |pw| format!(":{pw}@"))
}

/// One command to the server on loopback `port`, on a fresh connection; `None` when it does not
/// answer.
pub fn try_command_on(port: u16, args: &[&str]) -> Option<Value> {
    try_command_as(port, None, args)
}

/// [`try_command_on`], after `AUTH password` when given (an `AUTH` refusal is the answer).
pub fn try_command_as(port: u16, password: Option<&str>, args: &[&str]) -> Option<Value> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut out = Vec::new();
    if let Some(pw) = password {
        encode_command(&mut out, &[b"AUTH", pw.as_bytes()]);
    }
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    encode_command(&mut out, &args);
    s.write_all(&out).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut skip = usize::from(password.is_some());
    loop {
        if let Ok(Parsed::Value(v, n)) = parse(&buf) {
            if skip == 0 || matches!(v, Value::Error(_)) {
                return Some(v);
            }
            skip -= 1;
            buf.drain(..n);
            continue;
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
