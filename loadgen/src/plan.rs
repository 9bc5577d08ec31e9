//! A scenario turned into data the workers execute: every connection's target and role, the
//! groups (channels, rooms) with their publishers, and the send schedule. Built once, shared
//! read-only by all workers.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use frame_simd::Opcode;

use crate::adapter::Adapter;
use crate::cli::{Common, Scenario};
use crate::payload::STAMP_LEN;
use crate::target::{parse_sources, Target};

/// What one connection does once open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Nothing: connect, idle and churn connections.
    Plain,
    /// Sends payloads and times their echoes (FIFO per connection).
    Echo,
    /// Sends `rpc` requests on `/ws` whose id is the intended send time, and times the replies.
    Rpc,
    /// Member of a broadcast group: publishes (with a global publisher id) and/or subscribes.
    Member {
        /// Group index.
        group: u32,
        /// Global publisher id, when it publishes.
        publisher: Option<u32>,
        /// Whether its deliveries are checked.
        subscriber: bool,
    },
}

/// One planned connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnSpec {
    /// Index into [`Plan::targets`].
    pub target: u32,
    /// Source address to bind, if any.
    pub source: Option<IpAddr>,
    /// What it does.
    pub role: Role,
    /// Publishes through the backend HTTP API instead of a WebSocket.
    pub via_api: bool,
}

/// A channel or room.
#[derive(Clone, Debug, Default)]
pub struct Group {
    /// Global ids of its publishers; a publisher's position here is its local index.
    pub publishers: Vec<u32>,
    /// Members whose deliveries are checked.
    pub subscribers: u32,
}

/// How data messages are sent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SendMode {
    /// No data messages.
    None,
    /// Each echo connection keeps this many messages in flight.
    ClosedLoop {
        /// Messages in flight per connection.
        window: u32,
    },
    /// Total messages/s over all sending connections, on a fixed schedule.
    OpenLoop {
        /// Messages per second.
        rate: f64,
    },
}

/// Churn parameters.
#[derive(Clone, Copy, Debug)]
pub struct Churn {
    /// New connections per second.
    pub rate: f64,
    /// Shortest stay.
    pub stay_min: Duration,
    /// Longest stay.
    pub stay_max: Duration,
    /// Share (0..=1) dropped at once, and when (after the run starts).
    pub storm: Option<(f64, Duration)>,
    /// Repeat the storm at this interval after its first time.
    pub storm_every: Option<Duration>,
}

/// Everything the workers need.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Scenario name.
    pub scenario: &'static str,
    /// Distinct targets.
    pub targets: Vec<Target>,
    /// Connections opened in the connect phase.
    pub conns: Vec<ConnSpec>,
    /// Broadcast groups.
    pub groups: Vec<Group>,
    /// Global publisher id -> (group, local index).
    pub publishers: Vec<(u32, u32)>,
    /// Source addresses (churn connections use them round robin too).
    pub sources: Vec<IpAddr>,
    /// Connect-phase rate (connections/s; 0: at once).
    pub connect_rate: f64,
    /// Connection (TCP + handshake) timeout.
    pub connect_timeout: Duration,
    /// Send schedule.
    pub send: SendMode,
    /// Payload bytes.
    pub size: usize,
    /// Opcode of echo messages.
    pub opcode: Opcode,
    /// The `method` of `rpc` calls.
    pub rpc_method: String,
    /// Broadcast convention.
    pub adapter: Adapter,
    /// Churn, for `churn`.
    pub churn: Option<Churn>,
    /// Not counted.
    pub warmup: Duration,
    /// Measured.
    pub duration: Duration,
    /// Waiting for stragglers.
    pub drain: Duration,
    /// Bearer key of the backend API (publishers with `via_api`).
    pub api_key: String,
    /// Client threads.
    pub threads: usize,
    /// Pin threads.
    pub pin: bool,
    /// Offer permessage-deflate.
    pub deflate: bool,
    /// The TLS client configuration for `wss://` targets (from `--ca-file`).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Plan {
    /// Deliveries one publish of `publisher` must produce.
    pub fn deliveries_per_publish(&self, publisher: u32, self_subscribes: bool) -> u64 {
        if !self.adapter.delivers_to_others() {
            return u64::from(self_subscribes);
        }
        let (group, _) = self.publishers[publisher as usize];
        u64::from(self.groups[group as usize].subscribers) - u64::from(self_subscribes)
    }

    /// Number of connections opened in the connect phase.
    pub fn planned(&self) -> u64 {
        self.conns.len() as u64
    }
}

/// The scenario's URLs: `ws://` or `wss://`, and for `rpc` also `http://` (the backend itself,
/// called directly for the baseline); every other scenario refuses an `http://` URL as invalid.
fn targets(common: &Common, http_allowed: bool) -> Result<Vec<Target>> {
    common
        .urls
        .iter()
        .map(|u| {
            if http_allowed && u.starts_with("http://") {
                Target::parse_http(u)
            } else {
                Target::parse(u)
            }
        })
        .collect()
}

fn check_size(size: usize) -> Result<()> {
    if size < STAMP_LEN {
        bail!("--size {size} is too small: a broadcast payload carries a {STAMP_LEN}-byte stamp");
    }
    Ok(())
}

/// Parse `MIN-MAX` (or a single value) of durations.
pub fn parse_duration_range(s: &str) -> Result<(Duration, Duration)> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a = humantime::parse_duration(a.trim()).with_context(|| format!("bad range '{s}'"))?;
    let b = humantime::parse_duration(b.trim()).with_context(|| format!("bad range '{s}'"))?;
    if b < a {
        bail!("bad range '{s}': max below min");
    }
    Ok((a, b))
}

/// Parse `PCT%@T`, e.g. `50%@10s`.
pub fn parse_storm(s: &str) -> Result<(f64, Duration)> {
    let (pct, at) = s
        .split_once('@')
        .with_context(|| format!("bad --storm '{s}': expected PCT%@T, e.g. 50%@10s"))?;
    let pct: f64 = pct
        .trim()
        .trim_end_matches('%')
        .parse()
        .with_context(|| format!("bad --storm percentage in '{s}'"))?;
    if !(0.0..=100.0).contains(&pct) {
        bail!("bad --storm '{s}': percentage outside 0..100");
    }
    let at = humantime::parse_duration(at.trim()).with_context(|| format!("bad --storm '{s}'"))?;
    Ok((pct / 100.0, at))
}

/// Connections a scenario opens in its connect phase (known before the plan is built).
pub fn planned_count(scenario: &Scenario) -> u64 {
    u64::from(match scenario {
        Scenario::Connect(a) | Scenario::Idle(a) => a.connections,
        Scenario::Echo(a) => a.connections,
        Scenario::Fanout(a) if a.adapter == Adapter::Echo => a.subscribers,
        Scenario::Fanout(a) => a.subscribers.saturating_add(a.publishers),
        Scenario::Churn(a) => a.connections,
        Scenario::Chat(a) => a.users,
        Scenario::Rpc(a) => a.connections,
    })
}

/// The `index`-th of `n` near-equal shares of `count`.
pub fn share_of(count: u32, index: u32, n: u32) -> u32 {
    count / n + u32::from(index < count % n)
}

/// The share of a scenario one process of a `--processes` run carries: connection counts split,
/// rates divided.
pub fn process_share(scenario: &Scenario, index: u32, n: u32) -> Result<Scenario> {
    let mut s = scenario.clone();
    let div = f64::from(n);
    match &mut s {
        Scenario::Connect(a) | Scenario::Idle(a) => {
            a.connections = share_of(a.connections, index, n);
            a.rate = a.rate.map(|r| r / div);
            a.common.connect_rate /= div;
        }
        Scenario::Echo(a) => {
            a.connections = share_of(a.connections, index, n);
            a.rate = a.rate.map(|r| r / div);
            a.common.connect_rate /= div;
        }
        Scenario::Churn(a) => {
            a.connections = share_of(a.connections, index, n);
            a.rate /= div;
            a.common.connect_rate /= div;
        }
        Scenario::Rpc(a) => {
            a.connections = share_of(a.connections, index, n);
            a.rate /= div;
            a.common.connect_rate /= div;
        }
        // Broadcast groups are dealt out whole (see `keep_process_groups`), so every process
        // checks its subscribers against publishers it runs itself.
        Scenario::Fanout(a) if a.adapter != Adapter::Echo && a.channels < n => bail!(
            "--processes {n} needs at least {n} channels (--channels): a channel's publishers and \
             subscribers must share a process for its delivery checks"
        ),
        Scenario::Fanout(_) | Scenario::Chat(_) => {}
    }
    Ok(s)
}

/// In a `--processes` run, keep only the broadcast groups (channels, rooms) this process carries:
/// group `g` goes to process `g % n`. Groups and publisher ids stay global; the open-loop rate
/// becomes this process's share of the senders.
fn keep_process_groups(plan: &mut Plan, index: u32, n: u32) {
    let senders = |conns: &[ConnSpec]| {
        conns
            .iter()
            .filter(|c| {
                matches!(
                    c.role,
                    Role::Member {
                        publisher: Some(_),
                        ..
                    }
                )
            })
            .count()
    };
    let before = senders(&plan.conns).max(1);
    plan.conns.retain(|c| match c.role {
        Role::Member { group, .. } => group % n == index,
        _ => true,
    });
    if let SendMode::OpenLoop { rate } = &mut plan.send {
        *rate *= senders(&plan.conns) as f64 / before as f64;
    }
    plan.connect_rate /= f64::from(n);
}

/// Build the plan of a scenario.
pub fn build(scenario: &Scenario) -> Result<Plan> {
    let common = scenario.common();
    let base_targets = targets(common, matches!(scenario, Scenario::Rpc(_)))?;
    let sources = parse_sources(&common.sources)?;
    let threads = common
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let mut plan = Plan {
        scenario: scenario.name(),
        targets: base_targets.clone(),
        conns: Vec::new(),
        groups: Vec::new(),
        publishers: Vec::new(),
        sources: sources.clone(),
        connect_rate: common.connect_rate,
        connect_timeout: common.connect_timeout,
        send: SendMode::None,
        size: 0,
        opcode: Opcode::Binary,
        rpc_method: String::new(),
        adapter: Adapter::Echo,
        churn: None,
        warmup: common.warmup,
        duration: common.duration,
        drain: common.drain,
        api_key: String::new(),
        threads,
        pin: !common.no_pin,
        deflate: common.deflate,
        tls: match &common.ca_file {
            Some(path) => Some(crate::tls::client_config(path)?),
            None if base_targets.iter().any(|t| t.tls.is_some()) => {
                bail!("wss:// URLs need --ca-file: the CA certificate that signs the server's")
            }
            None => None,
        },
    };
    let source_of = |i: usize| (!sources.is_empty()).then(|| sources[i % sources.len()]);
    let ntargets = base_targets.len() as u32;
    let plain = |n: u32, plan: &mut Plan| {
        for i in 0..n {
            plan.conns.push(ConnSpec {
                via_api: false,
                target: i % ntargets,
                source: source_of(i as usize),
                role: Role::Plain,
            });
        }
    };
    match scenario {
        Scenario::Connect(a) | Scenario::Idle(a) => {
            if let Some(rate) = a.rate {
                plan.connect_rate = rate;
            }
            if matches!(scenario, Scenario::Connect(_)) {
                plan.warmup = Duration::ZERO;
                plan.duration = Duration::ZERO;
            }
            plain(a.connections, &mut plan);
        }
        Scenario::Churn(a) => {
            let (stay_min, stay_max) = parse_duration_range(&a.stay)?;
            let storm = a.storm.as_deref().map(parse_storm).transpose()?;
            plan.churn = Some(Churn {
                rate: a.rate,
                stay_min,
                stay_max,
                storm,
                storm_every: a.storm_every.filter(|d| !d.is_zero()),
            });
            plain(a.connections, &mut plan);
        }
        Scenario::Rpc(a) => {
            if a.rate.is_nan() || a.rate <= 0.0 {
                bail!("--rate must be positive");
            }
            plan.size = a.size;
            plan.opcode = Opcode::Text;
            plan.rpc_method = a.method.clone();
            plan.send = SendMode::OpenLoop { rate: a.rate };
            for i in 0..a.connections {
                let target = i % ntargets;
                plan.conns.push(ConnSpec {
                    // An http:// URL is the backend itself: calls go to it directly (the
                    // baseline the gateway's overhead is measured against).
                    via_api: base_targets[target as usize].url.starts_with("http://"),
                    target,
                    source: source_of(i as usize),
                    role: Role::Rpc,
                });
            }
        }
        Scenario::Echo(a) => {
            if a.size == 0 {
                bail!("--size must be at least 1");
            }
            plan.size = a.size;
            plan.opcode = if a.text { Opcode::Text } else { Opcode::Binary };
            plan.send = match a.rate {
                Some(rate) if rate > 0.0 => SendMode::OpenLoop { rate },
                Some(_) => bail!("--rate must be positive"),
                None => SendMode::ClosedLoop {
                    window: a.in_flight.max(1),
                },
            };
            for i in 0..a.connections {
                plan.conns.push(ConnSpec {
                    via_api: false,
                    target: i % ntargets,
                    source: source_of(i as usize),
                    role: Role::Echo,
                });
            }
        }
        Scenario::Fanout(a) => {
            check_size(a.size)?;
            plan.size = a.size;
            plan.adapter = a.adapter;
            plan.send = SendMode::OpenLoop { rate: a.rate };
            let channels = a.channels.max(1);
            let templated = base_targets.iter().any(|t| t.has_param("channel"));
            if channels > 1 && !templated && !a.adapter.names_groups() {
                bail!("--channels {channels} needs `{{channel}}` in --url so channels differ");
            }
            // Per channel: the listening subscribers' targets, then the publishers'.
            plan.targets.clear();
            for ch in 0..channels {
                for listens_only in [true, false] {
                    for t in &base_targets {
                        plan.targets.push(a.adapter.target(t, ch, listens_only));
                    }
                }
            }
            plan.groups = vec![Group::default(); channels as usize];
            let sub_target = |ch: u32, i: u32| 2 * ch * ntargets + i % ntargets;
            let via_api = a.api_url.is_some();
            // With --api-url every publisher talks to the API (its target is the last one).
            let mut api_target = None;
            if let Some(url) = &a.api_url {
                if a.adapter != Adapter::Gateway {
                    bail!("--api-url publishes through the gateway's API: use --adapter gateway");
                }
                plan.api_key = a.api_key.clone();
                api_target = Some(plan.targets.len() as u32);
                plan.targets.push(Target::parse_http(url)?);
            }
            let pub_target =
                |ch: u32, i: u32| api_target.unwrap_or((2 * ch + 1) * ntargets + i % ntargets);
            let mut n = 0usize;
            match a.adapter {
                Adapter::Pub | Adapter::Gateway | Adapter::SocketIo => {
                    for p in 0..a.publishers {
                        let ch = p % channels;
                        let local = plan.groups[ch as usize].publishers.len() as u32;
                        plan.groups[ch as usize].publishers.push(p);
                        plan.publishers.push((ch, local));
                        plan.conns.push(ConnSpec {
                            target: pub_target(ch, p),
                            via_api,
                            source: source_of(n),
                            role: Role::Member {
                                group: ch,
                                publisher: Some(p),
                                subscriber: false,
                            },
                        });
                        n += 1;
                    }
                    for s in 0..a.subscribers {
                        let ch = s % channels;
                        plan.groups[ch as usize].subscribers += 1;
                        plan.conns.push(ConnSpec {
                            via_api: false,
                            target: sub_target(ch, s),
                            source: source_of(n),
                            role: Role::Member {
                                group: ch,
                                publisher: None,
                                subscriber: true,
                            },
                        });
                        n += 1;
                    }
                }
                Adapter::Echo => {
                    // Echo delivers a publish to its sender only: every connection is a group of
                    // one that publishes and subscribes.
                    plan.groups.clear();
                    for s in 0..a.subscribers {
                        plan.groups.push(Group {
                            publishers: vec![s],
                            subscribers: 1,
                        });
                        plan.publishers.push((s, 0));
                        plan.conns.push(ConnSpec {
                            via_api: false,
                            target: pub_target(s % channels, s),
                            source: source_of(n),
                            role: Role::Member {
                                group: s,
                                publisher: Some(s),
                                subscriber: true,
                            },
                        });
                        n += 1;
                    }
                }
            }
        }
        Scenario::Chat(a) => {
            check_size(a.size)?;
            plan.size = a.size;
            plan.adapter = a.adapter;
            plan.send = SendMode::OpenLoop {
                rate: a.msg_rate * f64::from(a.users),
            };
            let (lo, hi) = parse_size_range(&a.room_size)?;
            let mut rng = fastrand::Rng::with_seed(a.seed);
            let templated = base_targets.iter().any(|t| t.has_param("room"));
            let mut user = 0u32;
            let mut room = 0u32;
            plan.targets.clear();
            while user < a.users {
                let size = rng.u32(lo..=hi).min(a.users - user);
                let mut group = Group::default();
                let first_target = plan.targets.len() as u32;
                for t in &base_targets {
                    plan.targets.push(a.adapter.target(t, room, false));
                }
                for k in 0..size {
                    let id = user + k;
                    group.publishers.push(id);
                    group.subscribers += 1;
                    plan.publishers.push((room, k));
                    plan.conns.push(ConnSpec {
                        via_api: false,
                        target: first_target + id % ntargets,
                        source: source_of(id as usize),
                        role: Role::Member {
                            group: room,
                            publisher: Some(id),
                            subscriber: true,
                        },
                    });
                }
                plan.groups.push(group);
                user += size;
                room += 1;
            }
            if !templated && room > 1 && a.adapter == Adapter::Pub {
                eprintln!(
                    "loadgen: warning: --url has no {{room}}: all {room} rooms share one \
                     channel, messages from other rooms are counted as foreign"
                );
            }
        }
    }
    if let (Some(index), n @ 2..) = (common.process_index, common.processes) {
        if !plan.groups.is_empty() {
            keep_process_groups(&mut plan, index, n);
        }
    }
    Ok(plan)
}

fn parse_size_range(s: &str) -> Result<(u32, u32)> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u32 = a
        .trim()
        .parse()
        .with_context(|| format!("bad --room-size '{s}'"))?;
    let b: u32 = b
        .trim()
        .parse()
        .with_context(|| format!("bad --room-size '{s}'"))?;
    if a < 1 || b < a {
        bail!("bad --room-size '{s}': expected N or MIN-MAX with 1 <= MIN <= MAX");
    }
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storm_and_ranges_parse() {
        assert_eq!(
            parse_storm("50%@10s").unwrap(),
            (0.5, Duration::from_secs(10))
        );
        assert!(parse_storm("150%@1s").is_err());
        assert_eq!(
            parse_duration_range("1s-5s").unwrap(),
            (Duration::from_secs(1), Duration::from_secs(5))
        );
        assert_eq!(parse_size_range("7").unwrap(), (7, 7));
        assert!(parse_size_range("9-3").is_err());
    }
}
