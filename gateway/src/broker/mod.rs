//! The broker: how the nodes of one deployment reach each other. One thread per node owns the
//! broker connections; the shards talk to it only through the router's
//! [`Uplink`](crate::router::uplink::Uplink) (up) and their own inbox queues (down), so they
//! stay free of any runtime or lock.
//!
//! - [`node`]: what the thread knows and does for any broker: the node-wide refcount of
//!   channels (subscribe on 0 -> 1 shards, unsubscribe on 1 -> 0), messages between nodes
//!   ([`wire`]), deliveries pushed into the shards' queues without ever waiting on a full one.
//! - [`redis`]: the Redis transport (RESP over mio, [`resp`]), with reconnects and resubscribes,
//!   over one instance or several ([`spread`]: which instance carries which channel).
//! - [`cluster`]: the Redis Cluster transport (sharded pub/sub over every master), with channels
//!   folded into partitions on evenly spaced hash slots ([`slots`]).
//! - [`nats`]: the NATS transport (core NATS over mio, [`nats_proto`]), with the same reconnect,
//!   resubscribe and stall policy; presence is asked of the nodes instead of kept in the broker.
//! - [`socket`]: what both transports do with their TCP connections, and the reconnect delay.
//! - [`history`]: on Redis, the history of channels (`--history`) kept in Redis streams, one
//!   numbering for every node, so a client recovers on any node.
//!
//! `--broker memory` (the default) starts no thread: the node is alone and the router never
//! looks past its own shards.

pub mod cluster;
pub mod history;
pub mod nats;
pub mod nats_proto;
pub mod node;
pub mod redis;
pub mod resp;
pub mod slots;
pub mod socket;
pub mod spread;
pub mod wire;

use std::sync::Arc;

use anyhow::Context;
use mio::{Poll, Waker};

use crate::router::history::HistoryPolicy;
use crate::router::inbox::Mesh;
use crate::router::uplink::Uplink;

use self::spread::Spread;

/// Which broker joins the nodes (`--broker`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum BrokerUrl {
    /// No broker: one node.
    #[default]
    Memory,
    /// One Redis at `host:port`.
    Redis(String),
    /// One NATS server (core NATS) at `addr` (`host:port`), with the credentials `CONNECT`
    /// gives it.
    Nats {
        addr: String,
        auth: nats_proto::Auth,
    },
    /// Several independent Redis instances (`host:port` each, at least two): channels spread
    /// over them ([`spread`]).
    RedisSpread(Vec<String>),
    /// One Redis Cluster, reached through these nodes (`host:port` each, at least one):
    /// sharded pub/sub over its masters ([`cluster`]).
    RedisCluster(Vec<String>),
}

impl std::str::FromStr for BrokerUrl {
    type Err = String;

    /// `memory`, `redis://host:port` (the port defaults to 6379), several `redis://` URLs
    /// separated by commas, or `nats://[user:password@ | token@]host:port` (4222).
    fn from_str(s: &str) -> Result<BrokerUrl, String> {
        let s = s.trim();
        if s == "memory" {
            return Ok(BrokerUrl::Memory);
        }
        if let Some(rest) = s.strip_prefix("nats://") {
            return parse_nats(s, rest).map(|(addr, auth)| BrokerUrl::Nats { addr, auth });
        }
        if let Some(rest) = s.strip_prefix("redis-cluster://") {
            return parse_cluster(s, rest).map(BrokerUrl::RedisCluster);
        }
        if s.starts_with("redis://") && s.contains(',') {
            let mut addrs = Vec::new();
            for one in s.split(',') {
                match one.parse::<BrokerUrl>()? {
                    BrokerUrl::Redis(a) if addrs.contains(&a) => {
                        return Err(format!("broker {s:?} lists redis://{a} twice"));
                    }
                    BrokerUrl::Redis(a) => addrs.push(a),
                    _ => {
                        return Err(format!(
                            "bad broker {one:?} in {s:?}: want redis://HOST:PORT"
                        ))
                    }
                }
            }
            return Ok(BrokerUrl::RedisSpread(addrs));
        }
        if let Some(rest) = s.strip_prefix("redis://") {
            let hostport = rest.trim_end_matches('/');
            if hostport.is_empty() || hostport.contains(['/', ',', '@', '?']) {
                return Err(format!(
                    "bad broker {s:?}: want redis://HOST:PORT (no user, path or options)"
                ));
            }
            let with_port = match hostport.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && !host.ends_with(':') => {
                    port.parse::<u16>()
                        .map_err(|e| format!("bad port in broker {s:?}: {e}"))?;
                    hostport.to_owned()
                }
                _ => format!("{hostport}:6379"),
            };
            return Ok(BrokerUrl::Redis(with_port));
        }
        Err(format!(
            "unknown broker {s:?}: want memory, redis://HOST:PORT, several redis:// URLs separated by commas, redis-cluster://HOST:PORT[,HOST:PORT...] or nats://HOST:PORT"
        ))
    }
}

/// The seed nodes (`host:port`, port 6379 by default) of `redis-cluster://` URL `url` (`rest`
/// is what follows the scheme).
fn parse_cluster(url: &str, rest: &str) -> Result<Vec<String>, String> {
    let mut seeds = Vec::new();
    for one in rest.trim_end_matches('/').split(',') {
        let one = one.trim();
        if one.is_empty() || one.contains(['/', '@', '?']) || one.contains("://") {
            return Err(format!(
                "bad broker {url:?}: want redis-cluster://HOST:PORT[,HOST:PORT...] \
                 (no user, path, options or second scheme)"
            ));
        }
        let seed = match one.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && !host.ends_with(':') => {
                port.parse::<u16>()
                    .map_err(|e| format!("bad port in broker {url:?}: {e}"))?;
                one.to_owned()
            }
            _ => format!("{one}:6379"),
        };
        if seeds.contains(&seed) {
            return Err(format!("broker {url:?} lists {seed} twice"));
        }
        seeds.push(seed);
    }
    Ok(seeds)
}

/// The `host:port` and credentials of `nats://` URL `url` (`rest` is what follows the
/// scheme): `user:password@` or `token@` before the host, `%XX` escapes decoded (a `:`, `@` or
/// `%` in a password is written `%3A`, `%40`, `%25`). Errors never repeat the URL, which may
/// hold a secret.
fn parse_nats(url: &str, rest: &str) -> Result<(String, nats_proto::Auth), String> {
    let rest = rest.trim_end_matches('/');
    let (auth, hostport) = match rest.rsplit_once('@') {
        None => (nats_proto::Auth::None, rest),
        Some((userinfo, hostport)) => (nats_credentials(userinfo)?, hostport),
    };
    let url = match auth {
        nats_proto::Auth::None => url.to_owned(),
        _ => format!("nats://…@{hostport}"),
    };
    nats_host_port(&url, hostport).map(|addr| (addr, auth))
}

/// `user:password` or `token`, `%XX` decoded (a `+` stays a `+`, as in any URL's user part).
fn nats_credentials(userinfo: &str) -> Result<nats_proto::Auth, String> {
    let decode = |part: &str, what: &str| {
        crate::query::decode(&part.replace('+', "%2B"))
            .map(std::borrow::Cow::into_owned)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                format!("bad broker nats://…@…: the {what} is empty or has a bad %-escape")
            })
    };
    Ok(match userinfo.split_once(':') {
        Some((user, pass)) => nats_proto::Auth::User {
            user: decode(user, "user")?,
            pass: decode(pass, "password")?,
        },
        None => nats_proto::Auth::Token(decode(userinfo, "token")?),
    })
}

/// `host:port` (4222 by default) of a `nats://` URL without its credentials.
fn nats_host_port(url: &str, hostport: &str) -> Result<String, String> {
    if hostport.is_empty() || hostport.contains(['/', ',', '?']) {
        return Err(format!(
            "bad broker {url:?}: want nats://HOST:PORT (no path, options or server list)"
        ));
    }
    match hostport.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !host.ends_with(':') => {
            port.parse::<u16>()
                .map_err(|e| format!("bad port in broker {url:?}: {e}"))?;
            Ok(hostport.to_owned())
        }
        _ => Ok(format!("{hostport}:4222")),
    }
}

impl BrokerUrl {
    /// The broker's kind as `/api/stats` names it: `memory`, `redis` (one instance or several)
    /// or `nats`.
    pub fn kind(&self) -> &'static str {
        match self {
            BrokerUrl::Memory => "memory",
            BrokerUrl::Redis(_) | BrokerUrl::RedisSpread(_) => "redis",
            BrokerUrl::Nats { .. } => "nats",
            BrokerUrl::RedisCluster(_) => "redis-cluster",
        }
    }
}

impl std::fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BrokerUrl::Memory => f.write_str("memory"),
            BrokerUrl::Redis(a) => write!(f, "redis://{a}"),
            // Never the secret: the effective configuration and the logs print this.
            BrokerUrl::Nats { addr, auth } => match auth {
                nats_proto::Auth::None => write!(f, "nats://{addr}"),
                nats_proto::Auth::Token(_) => write!(f, "nats://***@{addr}"),
                nats_proto::Auth::User { user, .. } => write!(f, "nats://{user}:***@{addr}"),
            },
            BrokerUrl::RedisSpread(addrs) => {
                let urls: Vec<String> = addrs.iter().map(|a| format!("redis://{a}")).collect();
                f.write_str(&urls.join(","))
            }
            BrokerUrl::RedisCluster(seeds) => write!(f, "redis-cluster://{}", seeds.join(",")),
        }
    }
}

/// Data messages the shards may leave waiting for the broker thread before publishes that
/// need other nodes are refused (`busy`).
pub const UPLINK_LIMIT: usize = 1 << 16;

/// A broker thread ready to start, and the uplink the routers need first.
pub struct Pending {
    url: BrokerUrl,
    poll: Poll,
    uplink: Arc<Uplink>,
    /// Which Redis instance carries what (Redis brokers only).
    spread: Option<Arc<Spread>>,
    /// Which partitions' masters answer (Redis Cluster only).
    cluster: Option<Arc<cluster::Health>>,
}

impl Pending {
    /// The shards' way to the thread.
    pub fn uplink(&self) -> &Arc<Uplink> {
        &self.uplink
    }

    /// The flag behind the API listener's `/healthz`: every broker instance is reachable (for
    /// one instance, the uplink's [`connected`](Uplink::connected)).
    pub fn healthy_flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        if let Some(c) = &self.cluster {
            return c.all_up_flag();
        }
        match &self.spread {
            Some(s) => s.all_up_flag(),
            None => self.uplink.connected_flag(),
        }
    }
}

/// Prepare the broker thread of node `node` for `url` (`None` for `memory`).
pub fn prepare(url: &BrokerUrl, node: u16) -> anyhow::Result<Option<Pending>> {
    if *url == BrokerUrl::Memory {
        return Ok(None);
    }
    let poll = Poll::new().context("cannot create the broker poll")?;
    let waker = Arc::new(
        Waker::new(poll.registry(), redis::WAKE).context("cannot create the broker waker")?,
    );
    let mut uplink = Uplink::new(node, waker, UPLINK_LIMIT).with_kind(url.kind());
    let mut cluster = None;
    if let BrokerUrl::RedisCluster(_) = url {
        let health = Arc::new(cluster::Health::default());
        let check = Arc::clone(&health);
        uplink = uplink.with_channel_up(Arc::new(move |c: &str| check.channel_up(c)));
        cluster = Some(health);
    }
    let spread = match url {
        BrokerUrl::Memory | BrokerUrl::Nats { .. } | BrokerUrl::RedisCluster(_) => None,
        BrokerUrl::Redis(addr) => Some(Arc::new(Spread::new(std::slice::from_ref(addr)))),
        BrokerUrl::RedisSpread(addrs) => {
            let spread = Arc::new(Spread::new(addrs));
            let check = Arc::clone(&spread);
            uplink = uplink.with_channel_up(Arc::new(move |c: &str| check.channel_up(c)));
            Some(spread)
        }
    };
    // On one Redis the history of channels is shared by the nodes (`history`); over several
    // instances or NATS each node keeps its own.
    if let BrokerUrl::Redis(_) = url {
        uplink = uplink.share_history();
    }
    Ok(Some(Pending {
        url: url.clone(),
        poll,
        uplink: Arc::new(uplink),
        spread,
        cluster,
    }))
}

/// Start the broker thread, feeding `mesh`.
pub fn start(pending: Pending, mesh: Arc<Mesh>, history: Arc<HistoryPolicy>) -> anyhow::Result<()> {
    let node = node::Node::new(pending.uplink.node(), mesh, pending.uplink, history);
    let health = pending.cluster;
    let run: Box<dyn FnOnce() + Send> = match (pending.url, pending.spread) {
        (BrokerUrl::RedisCluster(seeds), _) => {
            // History stays with each node on a cluster (see `cluster`).
            let health = health.unwrap_or_default();
            let transport = cluster::Cluster::new(seeds, health, pending.poll, node);
            Box::new(move || transport.run())
        }
        (BrokerUrl::Redis(addr), Some(spread)) => {
            let node = node.share_history();
            let transport = redis::Redis::new(vec![addr], spread, pending.poll, node);
            Box::new(move || transport.run())
        }
        (BrokerUrl::RedisSpread(addrs), Some(spread)) => {
            let transport = redis::Redis::new(addrs, spread, pending.poll, node);
            Box::new(move || transport.run())
        }
        (BrokerUrl::Nats { addr, auth }, _) => {
            let node = node.with_presence(node::PresenceStore::Queries);
            let transport = nats::Nats::new(addr, auth, pending.poll, node);
            Box::new(move || transport.run())
        }
        _ => return Ok(()),
    };
    std::thread::Builder::new()
        .name("broker".into())
        .spawn(run)
        .context("cannot start the broker thread")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nats_proto::Auth;

    #[test]
    fn broker_urls_parse_or_say_why_not() {
        assert_eq!("memory".parse(), Ok(BrokerUrl::Memory));
        assert_eq!(
            "redis://127.0.0.1:7000".parse(),
            Ok(BrokerUrl::Redis("127.0.0.1:7000".into()))
        );
        assert_eq!(
            "redis://cache/".parse(),
            Ok(BrokerUrl::Redis("cache:6379".into()))
        );
        for bad in [
            "",
            "redis://",
            "redis://h:99999",
            "redis://u:p@h:1",
            "redis://h:1/0",
            "kafka://h:1",
        ] {
            assert!(bad.parse::<BrokerUrl>().is_err(), "{bad:?}");
        }
        assert_eq!(BrokerUrl::Redis("h:1".into()).to_string(), "redis://h:1");
        let two = "redis://a:1,redis://b";
        let spread = BrokerUrl::RedisSpread(vec!["a:1".into(), "b:6379".into()]);
        assert_eq!(two.parse(), Ok(spread.clone()));
        assert_eq!(spread.to_string(), "redis://a:1,redis://b:6379");
        for bad in [
            "redis://a:1,",
            "redis://a:1,b:2",
            "redis://a:1,redis://a:1",
            "redis://a:1,memory",
            "redis://a:1,redis://b:0x",
        ] {
            assert!(bad.parse::<BrokerUrl>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cluster_urls_parse_with_one_or_more_seeds() {
        assert_eq!(
            "redis-cluster://127.0.0.1:7000,127.0.0.1:7001".parse(),
            Ok(BrokerUrl::RedisCluster(vec![
                "127.0.0.1:7000".into(),
                "127.0.0.1:7001".into()
            ]))
        );
        let one = BrokerUrl::RedisCluster(vec!["redis:6379".into()]);
        assert_eq!("redis-cluster://redis/".parse(), Ok(one.clone()));
        assert_eq!(one.to_string(), "redis-cluster://redis:6379");
        for bad in [
            "redis-cluster://",
            "redis-cluster://a:1,",
            "redis-cluster://a:1,a:1",
            "redis-cluster://a:x",
            "redis-cluster://u:p@a:1",
            "redis-cluster://a:1,redis-cluster://b:2",
            "redis-cluster://a:1/0",
        ] {
            assert!(bad.parse::<BrokerUrl>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn nats_urls_parse_with_or_without_credentials() {
        let nats = |addr: &str, auth| BrokerUrl::Nats {
            addr: addr.into(),
            auth,
        };
        assert_eq!(
            "nats://127.0.0.1:4333".parse(),
            Ok(nats("127.0.0.1:4333", Auth::None))
        );
        assert_eq!("nats://bus/".parse(), Ok(nats("bus:4222", Auth::None)));
        assert_eq!(nats("h:1", Auth::None).to_string(), "nats://h:1");
        for bad in ["nats://", "nats://h:0x", "nats://h:1,h:2", "nats://h:1/x"] {
            assert!(bad.parse::<BrokerUrl>().is_err(), "{bad:?}");
        }
        let user = |user: &str, pass: &str| Auth::User {
            user: user.into(),
            pass: pass.into(),
        };
        assert_eq!(
            "nats://gw:s3cret@h:1".parse(),
            Ok(nats("h:1", user("gw", "s3cret")))
        );
        // Escapes decode; a `+` is a `+`; the last `@` ends the user part.
        assert_eq!(
            "nats://g%20w:p%3Aa%40s+s%25@bus".parse(),
            Ok(nats("bus:4222", user("g w", "p:a@s+s%")))
        );
        assert_eq!(
            "nats://a@b@h:1".parse(),
            Ok(nats("h:1", Auth::Token("a@b".into())))
        );
        assert_eq!(
            "nats://T0ken@h:1".parse(),
            Ok(nats("h:1", Auth::Token("T0ken".into())))
        );
        // Printed without the secret.
        assert_eq!(
            nats("h:1", user("gw", "s3cret")).to_string(),
            "nats://gw:***@h:1"
        );
        assert_eq!(
            nats("h:1", Auth::Token("T0ken".into())).to_string(),
            "nats://***@h:1"
        );
        // Bad credentials or hosts are refused without echoing the secret.
        for bad in [
            "nats://@h:1",
            "nats://gw:@h:1",
            "nats://:s3cret@h:1",
            "nats://gw:s3cret%zz@h:1",
            "nats://gw:s3cret@h:0x",
            "nats://gw:s3cret@",
        ] {
            let e = bad.parse::<BrokerUrl>().unwrap_err();
            assert!(!e.contains("s3cret"), "{bad}: {e}");
        }
    }
}
