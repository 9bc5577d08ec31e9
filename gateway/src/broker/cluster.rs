//! The Redis Cluster transport (`--broker redis-cluster://host:port[,host:port...]`): sharded
//! pub/sub (`SSUBSCRIBE`/`SPUBLISH`, Redis 7) over every master of one cluster, in the broker
//! thread's own mio poll, with the RESP codec and the connection handling of the Redis
//! transport ([`super::redis`]'s links, [`super::socket`]'s backoff and phases).
//!
//! Where things live ([`super::slots`]): a gateway channel folds into one of
//! [`PARTITIONS`](super::slots::PARTITIONS) partitions, each a sharded channel `gw:s:{TAG}` on
//! an evenly spaced slot. A node subscribes to a partition on the master that serves its slot
//! while it has a local subscriber on some channel of that partition (a count per partition:
//! 0 -> 1 subscribes, 1 -> 0 unsubscribes), publishes a channel's messages to its partition
//! with the channel name in front of the payload, and drops deliveries of channels it has no
//! subscriber for. A channel's presence hashes carry the partition's tag, so they live on the
//! same master. A node's own topic (`gw:n:ID`, private messages and answers) and the control
//! topic (`gw:all`, heartbeats, users, lists) are sharded channels on the slots of their
//! names: while the master of `gw:all` is down, nodes stop hearing each other's heartbeats
//! and forget each other after the node TTL; channels on other masters keep flowing.
//!
//! Links: per master, a subscriber and a command connection, pinged like the Redis
//! transport's; the slot map comes from `CLUSTER SLOTS` on any open link (on start, after a
//! failure, on `-MOVED`, on an unasked `sunsubscribe`, and every [`REFRESH_INTERVAL`]). What is
//! subscribed where is reconciled with what is wanted ([`Cluster::resync`]) whenever either
//! changes, so a subscription that Redis ends on a slot migration, or that a failed master
//! held, is made again on the slot's owner. Answers: `-MOVED` updates the map and resends,
//! `-ASK` resends after `ASKING` to the named node, `-CLUSTERDOWN`/`-TRYAGAIN` retries every
//! [`RETRY_DELAY`] for up to [`RETRY_FOR`], and marks the master refusing meanwhile: its
//! partitions answer 503 at once, as do those of a master whose link is down.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll};
use tracing::{debug, info, warn};

use super::history;
use super::node::Node;
use super::node::{node_topic, Out, ALL};
use super::redis::{
    credentials_problem, of_token, pairs, still_loading, tokens, Link, CONNECT_TIMEOUT,
    PING_INTERVAL,
};
use super::resp::Value;
use super::slots::{self, SlotMap, PARTITIONS};
use super::socket::{self, Backoff, Phase};
use super::RedisAuth;

/// How often the slot map is asked for when nothing else asked for it.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// The slot map is asked for at most this often.
const REFRESH_MIN: Duration = Duration::from_millis(100);
/// Delay between two tries of a command the cluster refused for now.
pub const RETRY_DELAY: Duration = Duration::from_millis(100);
/// How long a command the cluster refuses for now is tried again before it is given up.
pub const RETRY_FOR: Duration = Duration::from_secs(1);
/// Redirections (`-MOVED`, `-ASK`) one command may follow.
const MAX_REDIRECTS: u8 = 5;

/// What the shards and the API listener learn from the broker thread: which partitions'
/// masters answer now, and whether every master does.
#[derive(Debug)]
pub struct Health {
    parts_up: Vec<AtomicBool>,
    all_up: Arc<AtomicBool>,
}

impl Default for Health {
    fn default() -> Health {
        Health {
            parts_up: (0..PARTITIONS).map(|_| AtomicBool::new(false)).collect(),
            all_up: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Health {
    /// Whether the master of `channel`'s partition answers (the shards ask before a publish).
    pub fn channel_up(&self, channel: &str) -> bool {
        self.parts_up[slots::partition_of(channel)].load(Ordering::Acquire)
    }

    /// The flag behind `/healthz`: every master of the slot map answers.
    pub fn all_up_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.all_up)
    }
}

/// A command of the node, as sent to the cluster: kept until answered, to be resent.
#[derive(Debug)]
struct Cmd {
    args: Vec<Vec<u8>>,
    id: Option<u64>,
    slot: u16,
    /// When it was first sent (retries stop [`RETRY_FOR`] after).
    first: Instant,
    redirects: u8,
}

/// What an answer on a command connection belongs to.
#[derive(Debug)]
enum Sent {
    Cmd(Box<Cmd>),
    Slots,
    Ping,
    Asking,
    /// A read of this key, on one of the master's slots, while it refuses commands
    /// (`-CLUSTERDOWN`).
    Probe(String),
}

/// What an answer on a subscriber connection belongs to.
#[derive(Debug, PartialEq, Eq)]
enum SubSent {
    Sub(String),
    Unsub(String),
    Ping(Option<u64>),
}

/// One cluster node the thread talks to: a master of the slot map, or a seed.
struct Master {
    addr: String,
    seed: bool,
    sub: Link,
    cmd: Link,
    phase: Phase,
    backoff: Backoff,
    established: u64,
    expect: VecDeque<Sent>,
    sub_expect: VecDeque<SubSent>,
    /// It answered `-CLUSTERDOWN` and nothing succeeded since.
    refusing: bool,
}

impl Master {
    /// A node at `addr`, reached with `auth` (an encoded `AUTH`), if any.
    fn new(addr: String, seed: bool, auth: &Option<Arc<[u8]>>, now: Instant) -> Master {
        Master {
            addr,
            seed,
            sub: Link::new(now, auth.clone(), None),
            cmd: Link::new(now, auth.clone(), None),
            phase: Phase::Down { retry_at: now },
            backoff: Backoff::default(),
            established: 0,
            expect: VecDeque::new(),
            sub_expect: VecDeque::new(),
            refusing: false,
        }
    }

    fn link(&mut self, sub: bool) -> &mut Link {
        if sub {
            &mut self.sub
        } else {
            &mut self.cmd
        }
    }

    fn send(&mut self, sent: Sent, now: Instant) {
        match &sent {
            Sent::Cmd(c) => {
                let args: Vec<&[u8]> = c.args.iter().map(Vec::as_slice).collect();
                self.cmd.command(&args, now);
            }
            Sent::Slots => self.cmd.command(&[b"CLUSTER", b"SLOTS"], now),
            Sent::Ping => self.cmd.command(&[b"PING"], now),
            Sent::Asking => self.cmd.command(&[b"ASKING"], now),
            Sent::Probe(key) => self.cmd.command(&[b"EXISTS", key.as_bytes()], now),
        }
        self.expect.push_back(sent);
    }

    fn sub_send(&mut self, sent: SubSent, now: Instant) {
        match &sent {
            SubSent::Sub(t) => self.sub.command(&[b"SSUBSCRIBE", t.as_bytes()], now),
            SubSent::Unsub(t) => self.sub.command(&[b"SUNSUBSCRIBE", t.as_bytes()], now),
            SubSent::Ping(None) => self.sub.command(&[b"PING"], now),
            SubSent::Ping(Some(id)) => self.sub.command(&[b"PING", id.to_string().as_bytes()], now),
        }
        self.sub_expect.push_back(sent);
    }

    /// Answering, and not refusing commands.
    fn serving(&self) -> bool {
        self.phase == Phase::Up && !self.refusing
    }
}

/// The payload of a channel's message on its partition: the channel name's length (2 bytes,
/// big-endian), the name, then the node's message.
pub fn envelope(channel: &[u8], payload: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(channel.len()).ok()?;
    let mut out = Vec::with_capacity(2 + channel.len() + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(channel);
    out.extend_from_slice(payload);
    Some(out)
}

/// The channel name and the node's message in an [`envelope`].
pub fn open_envelope(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = bytes.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_be_bytes(*len));
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// A node command rewritten for the cluster: `PUBLISH` becomes `SPUBLISH` (a channel's to its
/// partition, in an [`envelope`]), a presence key gets its partition's tag; and the slot it
/// goes to. `None` for a publish whose channel name is too long to frame.
fn for_cluster(mut args: Vec<Vec<u8>>) -> Option<(Vec<Vec<u8>>, u16)> {
    let verb = args.first().cloned().unwrap_or_default();
    let target = args.get(1).cloned().unwrap_or_default();
    if verb.eq_ignore_ascii_case(b"PUBLISH") {
        args[0] = b"SPUBLISH".to_vec();
        if let Some(channel) = target.strip_prefix(b"gw:c:") {
            let p = slots::partition_of(&String::from_utf8_lossy(channel));
            let payload = args.get(2).map(Vec::as_slice).unwrap_or_default();
            let wrapped = envelope(channel, payload)?;
            args.truncate(2);
            args[1] = slots::partition_topic(p).into_bytes();
            args.push(wrapped);
            return Some((args, slots::partition_slot(p)));
        }
        return Some((args, slots::key_slot(&target)));
    }
    let presence = target.strip_prefix(b"gw:p:").and_then(|k| {
        let at = k.iter().rposition(|&b| b == b':')?;
        Some((&k[..at], &k[at + 1..]))
    });
    if let Some((channel, node)) = presence {
        let channel = String::from_utf8_lossy(channel);
        let key = slots::presence_key(&channel, &String::from_utf8_lossy(node));
        let slot = slots::key_slot(key.as_bytes());
        args[1] = key.into_bytes();
        return Some((args, slot));
    }
    Some((args, slots::key_slot(&target)))
}

/// The slot and `host:port` of a `-MOVED slot host:port` or `-ASK slot host:port` error
/// (an empty host is the answering node's).
fn redirect(error: &str, answering: &str) -> Option<(u16, String)> {
    let mut words = error.split_ascii_whitespace().skip(1);
    let slot = words.next()?.parse::<u16>().ok()?;
    let addr = words.next()?;
    let addr = match addr.strip_prefix(':') {
        Some(port) => {
            let host = answering.rsplit_once(':').map_or(answering, |(h, _)| h);
            format!("{host}:{port}")
        }
        None => addr.to_owned(),
    };
    Some((slot, addr))
}

/// The Redis Cluster transport. See the module doc.
pub struct Cluster {
    poll: Poll,
    node: Node,
    masters: Vec<Master>,
    /// The `AUTH` every connection to every node opens with (`None` without credentials).
    auth: Option<Arc<[u8]>>,
    map: SlotMap,
    health: Arc<Health>,
    outs: Vec<Out>,
    /// Per partition: channels with local subscribers in it.
    parts: Vec<u32>,
    /// Other topics the node asked for.
    others: BTreeSet<String>,
    /// Where each topic is subscribed now (asked, not necessarily acknowledged).
    held: HashMap<String, usize>,
    /// Topics a failure, a move or a migration ended: subscribing again counts as a resubscribe.
    lost: HashSet<String>,
    /// Commands to try again, and when.
    retry: Vec<(Instant, Box<Cmd>)>,
    /// The map must be asked for; whether an answer is awaited (and from which master).
    refresh_wanted: bool,
    refresh_from: Option<usize>,
    last_refresh: Option<Instant>,
    /// What is subscribed must be reconciled with what is wanted (now, or at this time).
    resync_due: Option<Instant>,
    health_dirty: bool,
}

impl Cluster {
    /// The transport for the cluster reached through `seeds` (`host:port`), every node of it
    /// with `auth`, on `poll` whose waker uses [`super::redis::WAKE`], reporting to `health`.
    pub fn new(
        seeds: Vec<String>,
        auth: RedisAuth,
        health: Arc<Health>,
        poll: Poll,
        node: Node,
    ) -> Cluster {
        let now = Instant::now();
        let auth = auth.command();
        node.uplink()
            .stats
            .instances_down
            .store(seeds.len() as u64, Ordering::Relaxed);
        Cluster {
            poll,
            node,
            masters: seeds
                .into_iter()
                .map(|a| Master::new(a, true, &auth, now))
                .collect(),
            auth,
            map: SlotMap::default(),
            health,
            outs: Vec::new(),
            parts: vec![0; PARTITIONS],
            others: BTreeSet::new(),
            held: HashMap::new(),
            lost: HashSet::new(),
            retry: Vec::new(),
            refresh_wanted: true,
            refresh_from: None,
            last_refresh: None,
            resync_due: None,
            health_dirty: true,
        }
    }

    /// Serve until the process exits.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(64);
        let mut buf = vec![0u8; 64 * 1024];
        let mut next_tick = Instant::now();
        loop {
            let mut deadline = next_tick;
            for at in self.masters.iter().filter_map(|m| m.phase.wake_at()) {
                deadline = deadline.min(at);
            }
            if let Some(at) = self.resync_due {
                deadline = deadline.min(at);
            }
            for (at, _) in &self.retry {
                deadline = deadline.min(*at);
            }
            socket::wait(&mut self.poll, &mut events, deadline);
            let now = Instant::now();
            for ev in events.iter() {
                let Some((i, sub)) = of_token(ev.token()) else {
                    continue;
                };
                if i < self.masters.len() {
                    if let Err(why) = self.on_ready(i, sub, ev.is_writable(), &mut buf, now) {
                        self.fail(i, &why, now);
                    }
                }
            }
            for i in 0..self.masters.len() {
                let m = &self.masters[i];
                if m.phase == Phase::Greeting && m.sub.answered_once && m.cmd.answered_once {
                    self.on_confirmed(i);
                }
            }
            let up = self.node.uplink().connected();
            self.node.drain_uplink(up, now, &mut self.outs);
            let all_up = self.masters.iter().all(|m| m.phase == Phase::Up);
            if now >= next_tick || !all_up {
                next_tick = self.tick(now).min(now + PING_INTERVAL);
            }
            self.send_outs(now);
            self.maintain(now);
            self.flush_all(now);
            self.node.wake_shards();
        }
    }

    /// The index of the master at `addr`, added (to be connected) if new.
    fn master(&mut self, addr: &str) -> usize {
        if let Some(i) = self.masters.iter().position(|m| m.addr == addr) {
            return i;
        }
        self.masters.push(Master::new(
            addr.to_owned(),
            false,
            &self.auth,
            Instant::now(),
        ));
        self.health_dirty = true;
        self.masters.len() - 1
    }

    /// The master serving `slot`, if the map names one.
    fn owner(&mut self, slot: u16) -> Option<usize> {
        let addr = self.map.owner(slot)?.to_owned();
        Some(self.master(&addr))
    }

    /// Whether master `i` is worth (re)connecting: a seed, or in the slot map.
    fn wanted(&self, i: usize) -> bool {
        let m = &self.masters[i];
        m.seed || self.map.masters.contains(&m.addr)
    }

    /// Every sharded channel the node must receive, with its slot.
    fn topics(&self) -> Vec<(String, u16)> {
        let mut t = Vec::new();
        for own in [node_topic(self.node_id()), ALL.to_owned()]
            .into_iter()
            .chain(self.others.iter().cloned())
        {
            let slot = slots::key_slot(own.as_bytes());
            t.push((own, slot));
        }
        for (p, &n) in self.parts.iter().enumerate() {
            if n > 0 {
                t.push((slots::partition_topic(p), slots::partition_slot(p)));
            }
        }
        t
    }

    fn node_id(&self) -> u16 {
        self.node.uplink().node()
    }

    /// Make what is subscribed where match what is wanted: subscribe each wanted topic on its
    /// slot's master (when that link is open), leave it where it no longer belongs.
    fn resync(&mut self, now: Instant) {
        self.resync_due = None;
        let wanted = self.topics();
        let mut keep = HashSet::with_capacity(wanted.len());
        for (topic, slot) in wanted {
            let owner = self.owner(slot);
            if let Some(&at) = self.held.get(&topic) {
                if Some(at) == owner {
                    keep.insert(topic);
                    continue;
                }
                self.held.remove(&topic);
                let m = &mut self.masters[at];
                if m.phase.open() {
                    m.sub_send(SubSent::Unsub(topic.clone()), now);
                }
                self.lost.insert(topic.clone());
            }
            let Some(owner) = owner else {
                continue;
            };
            let m = &mut self.masters[owner];
            if !m.phase.open() {
                continue;
            }
            m.sub_send(SubSent::Sub(topic.clone()), now);
            if self.lost.remove(&topic) && topic.starts_with("gw:s:") {
                let stats = &self.node.uplink().stats;
                stats.resubscribes.fetch_add(1, Ordering::Relaxed);
            }
            self.held.insert(topic.clone(), owner);
            keep.insert(topic);
        }
        let gone: Vec<(String, usize)> = self
            .held
            .iter()
            .filter(|(t, _)| !keep.contains(*t))
            .map(|(t, &i)| (t.clone(), i))
            .collect();
        for (topic, i) in gone {
            self.held.remove(&topic);
            let m = &mut self.masters[i];
            if m.phase.open() {
                m.sub_send(SubSent::Unsub(topic), now);
            }
        }
    }

    /// Set the partitions' and the node's flags from the links and the map.
    fn update_health(&mut self) {
        self.health_dirty = false;
        let serving: HashSet<&str> = self
            .masters
            .iter()
            .filter(|m| m.serving())
            .map(|m| m.addr.as_str())
            .collect();
        for p in 0..PARTITIONS {
            let up = self
                .map
                .owner(slots::partition_slot(p))
                .is_some_and(|a| serving.contains(a));
            self.health.parts_up[p].store(up, Ordering::Release);
        }
        let (down, any) = if self.map.masters.is_empty() {
            (self.masters.len(), false)
        } else {
            let down = self
                .map
                .masters
                .iter()
                .filter(|a| !serving.contains(a.as_str()))
                .count();
            (down, down < self.map.masters.len())
        };
        self.health.all_up.store(down == 0, Ordering::Release);
        let uplink = self.node.uplink();
        uplink.set_connected(any);
        uplink
            .stats
            .instances_down
            .store(down as u64, Ordering::Relaxed);
    }

    /// Ask for the map, refresh subscriptions, retry refused commands, update the flags.
    fn maintain(&mut self, now: Instant) {
        if self.refresh_wanted && self.refresh_from.is_none() {
            let recent = self
                .last_refresh
                .is_some_and(|t| now.saturating_duration_since(t) < REFRESH_MIN);
            let from = (0..self.masters.len()).find(|&i| self.masters[i].phase == Phase::Up);
            if let (false, Some(i)) = (recent, from) {
                self.masters[i].send(Sent::Slots, now);
                self.refresh_from = Some(i);
                self.refresh_wanted = false;
                self.last_refresh = Some(now);
            }
        }
        let due: Vec<Box<Cmd>> = {
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retry)
                .into_iter()
                .partition(|(at, _)| *at <= now);
            self.retry = later;
            due.into_iter().map(|(_, c)| c).collect()
        };
        for cmd in due {
            self.send_cmd(cmd, now);
        }
        if self.resync_due.is_some_and(|at| at <= now) {
            self.resync(now);
        }
        if self.health_dirty {
            self.update_health();
        }
    }

    fn flush_all(&mut self, now: Instant) {
        for i in 0..self.masters.len() {
            let m = &mut self.masters[i];
            if m.phase.open() {
                if let Err(e) = m.sub.flush().and_then(|()| m.cmd.flush()) {
                    self.fail(i, &format!("write: {e}"), now);
                }
            }
        }
    }

    /// Send `cmd` to its slot's master; with none open, it is given up.
    fn send_cmd(&mut self, cmd: Box<Cmd>, now: Instant) {
        match self.owner(cmd.slot) {
            Some(i) if self.masters[i].phase.open() => self.masters[i].send(Sent::Cmd(cmd), now),
            _ => self.give_up(*cmd),
        }
    }

    /// A command that cannot be sent: its query is answered empty.
    fn give_up(&mut self, cmd: Cmd) {
        debug!(
            slot = cmd.slot,
            "broker command dropped: its master is unreachable"
        );
        match cmd.id {
            Some(id) if history::owns(id) => self.node.on_history_reply(id, None, &mut self.outs),
            Some(id) => self.node.on_answer(id, None),
            None => {}
        }
    }

    /// Encode what the node asked for on the masters it belongs to.
    fn send_outs(&mut self, now: Instant) {
        let mut outs = std::mem::take(&mut self.outs);
        for out in outs.drain(..) {
            match out {
                Out::Subscribe(t) if t.starts_with("gw:c:") => self.count(&t, true, now),
                Out::Unsubscribe(t) if t.starts_with("gw:c:") => self.count(&t, false, now),
                Out::Subscribe(t) => {
                    self.others.insert(t);
                    self.resync_due = Some(now);
                }
                Out::Unsubscribe(t) => {
                    self.others.remove(&t);
                    self.resync_due = Some(now);
                }
                Out::Command(args, id) => match for_cluster(args) {
                    Some((args, slot)) => {
                        let cmd = Box::new(Cmd {
                            args,
                            id,
                            slot,
                            first: now,
                            redirects: 0,
                        });
                        self.send_cmd(cmd, now);
                    }
                    None => warn!("a channel name too long for the cluster envelope"),
                },
                Out::Barrier(id) => {
                    match (0..self.masters.len()).find(|&i| self.masters[i].phase.open()) {
                        Some(i) => self.masters[i].sub_send(SubSent::Ping(Some(id)), now),
                        None => self.node.on_pong(id.to_string().as_bytes(), &mut self.outs),
                    }
                }
            }
        }
        if self.outs.is_empty() {
            self.outs = outs;
        }
    }
}

impl Cluster {
    /// A channel of the node gained its first (`on`) or lost its last local subscriber.
    fn count(&mut self, topic: &str, on: bool, now: Instant) {
        let p = slots::partition_of(topic.strip_prefix("gw:c:").unwrap_or(topic));
        let n = &mut self.parts[p];
        let was = *n;
        *n = if on {
            n.saturating_add(1)
        } else {
            n.saturating_sub(1)
        };
        if (was == 0) != (*n == 0) {
            self.resync_due = Some(now);
        }
    }

    fn on_ready(
        &mut self,
        i: usize,
        sub: bool,
        writable: bool,
        buf: &mut [u8],
        now: Instant,
    ) -> Result<(), String> {
        let m = &mut self.masters[i];
        if let Phase::Connecting { .. } = m.phase {
            m.link(sub).on_connecting(writable)?;
            if m.sub.connected && m.cmd.connected {
                self.on_established(i, now);
            }
        }
        let values = self.masters[i].link(sub).exchange(buf)?;
        for v in values {
            still_loading(&v)?;
            if sub {
                self.on_push(i, v, now);
            } else {
                self.on_reply(i, v, now);
            }
        }
        Ok(())
    }

    /// An answer on master `i`'s command connection.
    fn on_reply(&mut self, i: usize, v: Value, now: Instant) {
        let m = &mut self.masters[i];
        m.cmd.answered(now);
        let error = match &v {
            Value::Error(e) => Some(String::from_utf8_lossy(e).into_owned()),
            _ => None,
        };
        let refusal = error
            .as_deref()
            .is_some_and(|e| e.starts_with("CLUSTERDOWN") || e.starts_with("TRYAGAIN"));
        let Some(sent) = m.expect.pop_front() else {
            return;
        };
        let cmd = match sent {
            Sent::Ping | Sent::Asking => return,
            Sent::Probe(_) => {
                if !refusal && m.refusing {
                    m.refusing = false;
                    self.health_dirty = true;
                }
                return;
            }
            Sent::Slots => {
                self.refresh_from = None;
                match SlotMap::from_cluster_slots(&v) {
                    Some(map) => self.apply_map(map, now),
                    None => {
                        warn!(broker = %self.masters[i].addr, answer = ?v, "no slot map in the CLUSTER SLOTS answer")
                    }
                }
                return;
            }
            Sent::Cmd(cmd) => cmd,
        };
        let Some(e) = error else {
            if m.refusing {
                m.refusing = false;
                self.health_dirty = true;
            }
            return match cmd.id {
                Some(id) if history::owns(id) => {
                    self.node.on_history_reply(id, Some(v), &mut self.outs)
                }
                Some(id) => self.node.on_answer(id, Some(pairs(v))),
                None => {}
            };
        };
        self.on_refused(i, cmd, &e, now);
    }

    /// Master `i` answered `cmd` with error `e`: follow a redirection, retry a refusal.
    fn on_refused(&mut self, i: usize, mut cmd: Box<Cmd>, e: &str, now: Instant) {
        let addr = self.masters[i].addr.clone();
        if e.starts_with("MOVED ") || e.starts_with("ASK ") {
            let Some((slot, to)) = redirect(e, &addr) else {
                warn!(broker = %addr, error = e, "broker refused a command");
                return self.give_up(*cmd);
            };
            cmd.redirects += 1;
            if cmd.redirects > MAX_REDIRECTS {
                warn!(broker = %addr, error = e, "too many redirections: command dropped");
                return self.give_up(*cmd);
            }
            let j = self.master(&to);
            if e.starts_with("MOVED ") {
                self.map.moved(slot, &to);
                self.refresh_wanted = true;
                self.resync_due = Some(now);
                self.health_dirty = true;
                return self.send_cmd(cmd, now);
            }
            if !self.masters[j].phase.open() {
                return self.give_up(*cmd);
            }
            self.masters[j].send(Sent::Asking, now);
            return self.masters[j].send(Sent::Cmd(cmd), now);
        }
        if e.starts_with("CLUSTERDOWN") || e.starts_with("TRYAGAIN") {
            if e.starts_with("CLUSTERDOWN") && !self.masters[i].refusing {
                warn!(broker = %addr, error = e, "the cluster refuses commands: retrying");
                self.masters[i].refusing = true;
                self.health_dirty = true;
            }
            if now.saturating_duration_since(cmd.first) < RETRY_FOR {
                self.retry.push((now + RETRY_DELAY, cmd));
                return;
            }
            return self.give_up(*cmd);
        }
        warn!(broker = %addr, error = e, "broker refused a command");
        self.give_up(*cmd);
    }

    /// A new slot map: connect to new masters, move subscriptions, update the flags.
    fn apply_map(&mut self, map: SlotMap, now: Instant) {
        if map != self.map {
            info!(masters = ?map.masters, "cluster slot map");
        }
        self.map = map;
        let addrs = self.map.masters.clone();
        for a in &addrs {
            self.master(a);
        }
        self.resync_due = Some(now);
        self.health_dirty = true;
    }

    /// A value on master `i`'s subscriber connection.
    fn on_push(&mut self, i: usize, v: Value, now: Instant) {
        let items = match v {
            Value::Array(Some(items)) => items,
            Value::Simple(_) | Value::Bulk(_) => {
                // A PING before any subscription is answered as on a command connection:
                // `+PONG`, or its argument.
                let m = &mut self.masters[i];
                m.sub.answered(now);
                if let Some(SubSent::Ping(Some(id))) = m.sub_expect.pop_front() {
                    self.node.on_pong(id.to_string().as_bytes(), &mut self.outs);
                }
                return;
            }
            Value::Error(e) => return self.on_sub_error(i, &String::from_utf8_lossy(&e), now),
            _ => return,
        };
        let kind = items.first().and_then(Value::bytes).unwrap_or_default();
        let topic = items.get(1).and_then(Value::bytes).unwrap_or_default();
        match kind {
            b"smessage" => {
                let Some(payload) = items.get(2).and_then(Value::bytes) else {
                    return;
                };
                if topic.starts_with(b"gw:s:") {
                    match open_envelope(payload) {
                        Some((channel, inner)) => {
                            let mut t = b"gw:c:".to_vec();
                            t.extend_from_slice(channel);
                            self.node.on_message(&t, inner, now);
                        }
                        None => debug!("ignoring a partition message without a channel"),
                    }
                } else {
                    self.node.on_message(topic, payload, now);
                }
            }
            b"ssubscribe" => {
                let m = &mut self.masters[i];
                m.sub.answered(now);
                m.sub_expect.pop_front();
            }
            b"sunsubscribe" => {
                let m = &mut self.masters[i];
                let asked = matches!(m.sub_expect.front(), Some(SubSent::Unsub(t)) if t.as_bytes() == topic);
                if asked {
                    m.sub.answered(now);
                    m.sub_expect.pop_front();
                    return;
                }
                // Redis ended the subscription itself: its slot moved to another master.
                let topic = String::from_utf8_lossy(topic).into_owned();
                info!(broker = %m.addr, topic, "sharded subscription ended by the cluster: resubscribing");
                if self.held.get(&topic) == Some(&i) {
                    self.held.remove(&topic);
                    self.lost.insert(topic);
                }
                self.refresh_wanted = true;
                self.resync_due = Some(now);
            }
            b"pong" => {
                let m = &mut self.masters[i];
                m.sub.answered(now);
                m.sub_expect.pop_front();
                if let Some(arg) = items
                    .get(1)
                    .and_then(Value::bytes)
                    .filter(|a| !a.is_empty())
                {
                    self.node.on_pong(arg, &mut self.outs);
                }
            }
            _ => {}
        }
    }

    /// Master `i` refused a command on its subscriber connection (the oldest one waiting).
    fn on_sub_error(&mut self, i: usize, e: &str, now: Instant) {
        let m = &mut self.masters[i];
        m.sub.answered(now);
        let addr = m.addr.clone();
        match m.sub_expect.pop_front() {
            Some(SubSent::Sub(topic)) => {
                debug!(broker = %addr, topic, error = e, "sharded subscribe refused: trying again");
                if self.held.get(&topic) == Some(&i) {
                    self.held.remove(&topic);
                    self.lost.insert(topic);
                }
                if e.starts_with("MOVED ") {
                    if let Some((slot, to)) = redirect(e, &addr) {
                        self.map.moved(slot, &to);
                        self.master(&to);
                    }
                    self.refresh_wanted = true;
                }
                let at = now + RETRY_DELAY;
                self.resync_due = Some(self.resync_due.map_or(at, |d| d.min(at)));
            }
            _ => debug!(broker = %addr, error = e, "broker refused a command"),
        }
    }

    /// Both connections of master `i` are open: ping both (the answers confirm it), and
    /// subscribe there to whatever belongs there.
    fn on_established(&mut self, i: usize, now: Instant) {
        let m = &mut self.masters[i];
        m.phase = Phase::Greeting;
        m.sub_send(SubSent::Ping(None), now);
        m.send(Sent::Ping, now);
        if self.map.masters.is_empty() {
            self.refresh_wanted = true;
        }
        self.resync_due = Some(now);
    }

    /// Master `i` answered on both connections: it is up.
    fn on_confirmed(&mut self, i: usize) {
        let m = &mut self.masters[i];
        m.phase = Phase::Up;
        m.backoff.reset();
        m.established += 1;
        if m.established > 1 {
            let stats = &self.node.uplink().stats;
            stats.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        info!(broker = %m.addr, "broker connected");
        // Its presence hashes may be gone with it: write again those that live there.
        let mut presence = Vec::new();
        self.node.on_connected(&mut presence);
        let addr = m.addr.clone();
        presence.retain(|o| match o {
            Out::Command(args, _) => for_cluster(args.clone())
                .is_some_and(|(_, slot)| self.map.owner(slot) == Some(&addr)),
            _ => true,
        });
        self.outs.extend(presence);
        self.health_dirty = true;
    }

    fn fail(&mut self, i: usize, why: &str, now: Instant) {
        let m = &mut self.masters[i];
        let was_up = m.phase == Phase::Up;
        m.sub.reset(&self.poll);
        m.cmd.reset(&self.poll);
        m.sub_expect.clear();
        m.refusing = false;
        let lost = std::mem::take(&mut m.expect);
        let delay = m.backoff.next_delay();
        m.phase = Phase::Down {
            retry_at: now + delay,
        };
        let addr = m.addr.clone();
        if credentials_problem(why) {
            warn!(broker = %addr, reason = why, retry_in = ?delay, "broker turned the node away");
        } else if was_up {
            warn!(broker = %addr, reason = why, "broker connection lost: reconnecting");
        } else {
            debug!(broker = %addr, reason = why, retry_in = ?delay, "broker unreachable");
        }
        for sent in lost {
            match sent {
                Sent::Cmd(cmd) => self.give_up(*cmd),
                Sent::Slots => self.refresh_from = None,
                _ => {}
            }
        }
        let held: Vec<String> = self
            .held
            .iter()
            .filter(|(_, &at)| at == i)
            .map(|(t, _)| t.clone())
            .collect();
        for t in held {
            self.held.remove(&t);
            self.lost.insert(t);
        }
        self.refresh_wanted = true;
        self.health_dirty = true;
    }

    fn connect(&mut self, i: usize, now: Instant) -> Result<(), String> {
        let (sub, cmd) = tokens(i);
        let m = &mut self.masters[i];
        for (token, is_sub) in [(sub, true), (cmd, false)] {
            let s = socket::connect(&m.addr, &self.poll, token)?;
            m.link(is_sub).stream = Some(s);
        }
        m.phase = Phase::Connecting {
            deadline: now + CONNECT_TIMEOUT,
        };
        Ok(())
    }

    /// Reconnect masters when due, detect stalled ones, ping idle connections, probe refusing
    /// masters, ask for the map now and then, run the node's timers.
    fn tick(&mut self, now: Instant) -> Instant {
        for i in 0..self.masters.len() {
            match self.masters[i].phase {
                Phase::Down { retry_at } if now >= retry_at => {
                    if !self.wanted(i) {
                        // Neither a seed nor a master any more: left alone until it is again.
                        self.masters[i].phase = Phase::Down {
                            retry_at: now + REFRESH_INTERVAL,
                        };
                    } else if let Err(why) = self.connect(i, now) {
                        self.fail(i, &why, now);
                    }
                }
                Phase::Connecting { deadline } if now >= deadline => {
                    self.fail(i, "connect timed out", now);
                }
                Phase::Greeting | Phase::Up => {
                    let m = &mut self.masters[i];
                    if m.sub.stalled(now) || m.cmd.stalled(now) {
                        self.fail(i, "no answer to PING", now);
                        continue;
                    }
                    if m.sub.waiting == 0 {
                        m.sub_send(SubSent::Ping(None), now);
                    }
                    if m.cmd.waiting == 0 {
                        m.send(Sent::Ping, now);
                    }
                    if m.refusing && !m.expect.iter().any(|s| matches!(s, Sent::Probe(_))) {
                        self.probe(i, now);
                    }
                }
                _ => {}
            }
        }
        let periodic = self
            .last_refresh
            .is_none_or(|t| now.saturating_duration_since(t) >= REFRESH_INTERVAL);
        if periodic {
            self.refresh_wanted = true;
        }
        let up = self.node.uplink().connected();
        self.node.on_tick(up, now, &mut self.outs)
    }

    /// Ask refusing master `i` to read a key on one of its partitions' slots: an answer that
    /// is not `-CLUSTERDOWN` ends the refusal.
    fn probe(&mut self, i: usize, now: Instant) {
        let addr = self.masters[i].addr.clone();
        let Some(p) =
            (0..PARTITIONS).find(|&p| self.map.owner(slots::partition_slot(p)) == Some(&addr))
        else {
            self.masters[i].refusing = false;
            self.health_dirty = true;
            return;
        };
        let key = format!("gw:probe:{{{}}}", slots::tag(p));
        self.masters[i].send(Sent::Probe(key), now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// What a cluster or any client of it could put on a partition or answer to `CLUSTER
        /// SLOTS` is refused or read, never a panic; envelopes read back what was framed.
        #[test]
        fn hostile_cluster_bytes_never_panic_and_envelopes_round_trip(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            channel in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let _ = open_envelope(&bytes);
            if let Ok(super::super::resp::Parsed::Value(v, _)) = super::super::resp::parse(&bytes) {
                let _ = SlotMap::from_cluster_slots(&v);
            }
            let _ = redirect(&String::from_utf8_lossy(&bytes), "h:1");
            let e = envelope(&channel, &bytes).unwrap();
            prop_assert_eq!(open_envelope(&e), Some((&channel[..], &bytes[..])));
        }

        /// Slot ranges with any numbers: a map is made only of ranges within the slots and
        /// ports, and then names an owner for exactly the slots they cover.
        #[test]
        fn slot_maps_take_only_ranges_within_bounds(
            ranges in proptest::collection::vec((any::<i64>(), any::<i64>(), any::<i64>()), 1..5),
            small in proptest::collection::vec((0i64..16_384, 0i64..16_384, 1i64..65_536), 1..5),
        ) {
            for ranges in [ranges, small] {
                let v = Value::Array(Some(
                    ranges
                        .iter()
                        .map(|&(a, b, port)| {
                            let host = Value::Bulk(Some(b"10.0.0.1".to_vec()));
                            let node = Value::Array(Some(vec![host, Value::Int(port)]));
                            Value::Array(Some(vec![Value::Int(a), Value::Int(b), node]))
                        })
                        .collect(),
                ));
                let valid = ranges
                    .iter()
                    .all(|&(a, b, p)| 0 <= a && a <= b && b < 16_384 && (1..=65_535).contains(&p));
                let map = SlotMap::from_cluster_slots(&v);
                prop_assert_eq!(map.is_some(), valid);
                if let Some(map) = map {
                    for slot in [0u16, 1, 8191, 16_383] {
                        let covered = ranges
                            .iter()
                            .any(|&(a, b, _)| (a..=b).contains(&i64::from(slot)));
                        prop_assert_eq!(map.owner(slot).is_some(), covered);
                    }
                }
            }
        }
    }

    #[test]
    fn envelopes_carry_the_channel_and_bad_ones_are_refused() {
        let e = envelope(b"room:1", b"payload").unwrap();
        assert_eq!(open_envelope(&e), Some((&b"room:1"[..], &b"payload"[..])));
        assert_eq!(
            open_envelope(&envelope(b"", b"").unwrap()),
            Some((&b""[..], &b""[..]))
        );
        assert_eq!(open_envelope(b"\x00"), None);
        assert_eq!(open_envelope(b"\x00\x05abc"), None);
        assert!(envelope(&vec![b'x'; 70_000], b"").is_none());
    }

    #[test]
    fn commands_are_rewritten_for_their_partition() {
        let publish = vec![b"PUBLISH".to_vec(), b"gw:c:lobby".to_vec(), b"m".to_vec()];
        let (args, slot) = for_cluster(publish).unwrap();
        let p = slots::partition_of("lobby");
        assert_eq!(args[0], b"SPUBLISH");
        assert_eq!(args[1], slots::partition_topic(p).into_bytes());
        assert_eq!(open_envelope(&args[2]), Some((&b"lobby"[..], &b"m"[..])));
        assert_eq!(slot, slots::partition_slot(p));

        let all = vec![b"PUBLISH".to_vec(), ALL.as_bytes().to_vec(), b"m".to_vec()];
        let (args, slot) = for_cluster(all).unwrap();
        assert_eq!(
            args,
            vec![b"SPUBLISH".to_vec(), ALL.as_bytes().to_vec(), b"m".to_vec()]
        );
        assert_eq!(slot, slots::key_slot(ALL.as_bytes()));

        let key = super::super::node::presence_key("a:b", 7).into_bytes();
        let hset = vec![b"HSET".to_vec(), key, b"1".to_vec(), b"u".to_vec()];
        let (args, slot) = for_cluster(hset).unwrap();
        assert_eq!(args[1], slots::presence_key("a:b", "7").into_bytes());
        assert_eq!(slot, slots::partition_slot(slots::partition_of("a:b")));
    }

    #[test]
    fn redirections_name_a_slot_and_an_address() {
        assert_eq!(
            redirect("MOVED 3999 127.0.0.1:6381", "10.0.0.1:7000"),
            Some((3999, "127.0.0.1:6381".to_owned()))
        );
        assert_eq!(
            redirect("ASK 12 :6390", "10.0.0.1:7000"),
            Some((12, "10.0.0.1:6390".to_owned()))
        );
        assert_eq!(redirect("MOVED x y", "h:1"), None);
        assert_eq!(redirect("MOVED 1", "h:1"), None);
    }
}
