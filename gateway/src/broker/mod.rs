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
//! - [`socket`]: what both transports do with their TCP connections, and the reconnect delay;
//!   [`tls`]: the same over TLS, for `rediss://`.
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
pub mod tls;
pub mod wire;

use std::sync::Arc;

use anyhow::Context;
use mio::{Poll, Waker};

use crate::router::history::HistoryPolicy;
use crate::router::inbox::Mesh;
use crate::router::uplink::Uplink;

use self::spread::Spread;

/// What a Redis connection proves itself with (`AUTH`, the first command on every
/// connection), from the user part of its URL.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum RedisAuth {
    /// No credentials: a server without a password.
    #[default]
    None,
    /// `redis://:PASSWORD@host`: the default user's password (`requirepass`).
    Password(String),
    /// `redis://USER:PASSWORD@host`: an ACL user (Redis 6 and later).
    User { user: String, pass: String },
}

impl RedisAuth {
    /// The `AUTH` command in RESP, or `None` without credentials.
    pub fn command(&self) -> Option<Arc<[u8]>> {
        let mut out = Vec::new();
        match self {
            RedisAuth::None => return None,
            RedisAuth::Password(pass) => {
                resp::encode_command(&mut out, &[b"AUTH", pass.as_bytes()])
            }
            RedisAuth::User { user, pass } => {
                resp::encode_command(&mut out, &[b"AUTH", user.as_bytes(), pass.as_bytes()])
            }
        }
        Some(out.into())
    }

    /// The user part of a URL as printed: never the password.
    fn shown(&self) -> String {
        match self {
            RedisAuth::None => String::new(),
            RedisAuth::Password(_) => ":***@".to_owned(),
            RedisAuth::User { user, .. } => format!("{user}:***@"),
        }
    }
}

impl std::fmt::Debug for RedisAuth {
    /// Never the secret: configurations and logs print this.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisAuth::None => f.write_str("None"),
            RedisAuth::Password(_) => f.write_str("Password(***)"),
            RedisAuth::User { user, .. } => write!(f, "User({user:?}, ***)"),
        }
    }
}

/// One Redis server: where it is, what the node proves itself with, and whether it speaks
/// TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisAddr {
    /// `host:port`.
    pub addr: String,
    pub auth: RedisAuth,
    /// `rediss://`: the name the server's certificate must carry (`None`: plain TCP).
    pub tls: Option<rustls::pki_types::ServerName<'static>>,
}

impl From<&str> for RedisAddr {
    /// A server at `host:port` without credentials, over plain TCP.
    fn from(addr: &str) -> RedisAddr {
        RedisAddr {
            addr: addr.to_owned(),
            auth: RedisAuth::None,
            tls: None,
        }
    }
}

impl std::fmt::Display for RedisAddr {
    /// As a URL, without the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        write!(f, "{scheme}://{}{}", self.auth.shown(), self.addr)
    }
}

/// Which broker joins the nodes (`--broker`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum BrokerUrl {
    /// No broker: one node.
    #[default]
    Memory,
    /// One Redis.
    Redis(RedisAddr),
    /// One NATS server (core NATS) at `addr` (`host:port`), with the credentials `CONNECT`
    /// gives it, over TLS with `tls://` (the name the server's certificate must carry).
    Nats {
        addr: String,
        auth: nats_proto::Auth,
        tls: Option<rustls::pki_types::ServerName<'static>>,
    },
    /// Several independent Redis instances (at least two, each with its own credentials):
    /// channels spread over them ([`spread`]).
    RedisSpread(Vec<RedisAddr>),
    /// One Redis Cluster, reached through `seeds` (`host:port` each, at least one): sharded
    /// pub/sub over its masters ([`cluster`]), every one of them reached with `auth`.
    RedisCluster { seeds: Vec<String>, auth: RedisAuth },
}

impl std::str::FromStr for BrokerUrl {
    type Err = String;

    /// `memory`, `redis://[[user]:password@]host:port` (the port defaults to 6379), several
    /// `redis://` URLs separated by commas, `redis-cluster://[[user]:password@]host:port,...`,
    /// or `nats://[user:password@ | token@]host:port` (4222). Credentials are `%`-escaped as in
    /// any URL; errors never repeat them.
    fn from_str(s: &str) -> Result<BrokerUrl, String> {
        let s = s.trim();
        if s == "memory" {
            return Ok(BrokerUrl::Memory);
        }
        let nats = match (s.strip_prefix("nats://"), s.strip_prefix("tls://")) {
            (Some(rest), _) => Some((rest, false)),
            (None, Some(rest)) => Some((rest, true)),
            (None, None) => None,
        };
        if let Some((rest, secure)) = nats {
            let (addr, auth) = parse_nats(s, rest)?;
            let tls = match secure {
                true => {
                    Some(tls::server_name(&addr).map_err(|e| format!("broker tls://{addr}: {e}"))?)
                }
                false => None,
            };
            return Ok(BrokerUrl::Nats { addr, auth, tls });
        }
        if let Some(rest) = s.strip_prefix("redis-cluster://") {
            return parse_cluster(s, rest);
        }
        let redis = s.starts_with("redis://") || s.starts_with("rediss://");
        if redis && s.contains(',') {
            let mut addrs = Vec::new();
            for one in s.split(',') {
                let Some(a) = parse_redis(one) else {
                    let shown = hide_user(one);
                    return Err(format!(
                        "bad broker {shown:?} in a list: want redis://HOST:PORT or rediss://HOST:PORT"
                    ));
                };
                let a = a?;
                if addrs.iter().any(|b: &RedisAddr| b.addr == a.addr) {
                    return Err(format!("the broker list names {} twice", a.addr));
                }
                addrs.push(a);
            }
            return Ok(BrokerUrl::RedisSpread(addrs));
        }
        if let Some(a) = parse_redis(s) {
            return a.map(BrokerUrl::Redis);
        }
        let s = hide_user(s);
        Err(format!(
            "unknown broker {s:?}: want memory, redis://HOST:PORT (rediss:// for TLS), several redis:// URLs separated by commas, redis-cluster://HOST:PORT[,HOST:PORT...] or nats://HOST:PORT (tls:// for NATS over TLS)"
        ))
    }
}

/// `url` with whatever stands between its scheme and the last `@` hidden: errors print it.
fn hide_user(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://…@{host}"),
        _ => url.to_owned(),
    }
}

/// The server of one `redis://` or `rediss://` (TLS) URL `url`, or `None` for another scheme:
/// an optional `[user]:password@`, then `host[:port]` (6379 by default), nothing after but a
/// `/`.
fn parse_redis(url: &str) -> Option<Result<RedisAddr, String>> {
    let (scheme, rest, tls) = match url.strip_prefix("rediss://") {
        Some(rest) => ("rediss", rest, true),
        None => ("redis", url.strip_prefix("redis://")?, false),
    };
    Some(redis_server(scheme, url, rest, tls))
}

/// [`parse_redis`] once the scheme is known: `rest` is what follows it.
fn redis_server(scheme: &str, url: &str, rest: &str, tls: bool) -> Result<RedisAddr, String> {
    let (auth, hostport, url) = redis_user_part(scheme, url, rest.trim_end_matches('/'))?;
    if hostport.is_empty() || hostport.contains(['/', ',', '@', '?']) {
        return Err(format!(
            "bad broker {url:?}: want {scheme}://[[USER]:PASSWORD@]HOST:PORT (no path or options)"
        ));
    }
    let addr = with_port(hostport, 6379, &url)?;
    let tls = match tls {
        true => Some(tls::server_name(&addr).map_err(|e| format!("broker {url:?}: {e}"))?),
        false => None,
    };
    Ok(RedisAddr { addr, auth, tls })
}

/// The credentials of Redis URL `url` (scheme `scheme`, `rest` what follows it), the rest
/// after them, and the URL as errors may print it (without the credentials).
fn redis_user_part<'a>(
    scheme: &str,
    url: &str,
    rest: &'a str,
) -> Result<(RedisAuth, &'a str, String), String> {
    Ok(match rest.rsplit_once('@') {
        None => (RedisAuth::None, rest, url.to_owned()),
        Some((userinfo, after)) => (
            redis_credentials(scheme, userinfo)?,
            after,
            format!("{scheme}://…@{after}"),
        ),
    })
}

/// `[user]:password` of a Redis URL, `%XX` decoded. A user part without `:` is refused: Redis
/// URLs put the password after a colon, so a bare word would be ambiguous.
fn redis_credentials(scheme: &str, userinfo: &str) -> Result<RedisAuth, String> {
    let Some((user, pass)) = userinfo.split_once(':') else {
        return Err(format!(
            "bad broker {scheme}://…@…: want {scheme}://:PASSWORD@HOST or \
             {scheme}://USER:PASSWORD@HOST (the password comes after a colon)"
        ));
    };
    let pass = url_part(scheme, pass, "password")?;
    Ok(if user.is_empty() {
        RedisAuth::Password(pass)
    } else {
        RedisAuth::User {
            user: url_part(scheme, user, "user")?,
            pass,
        }
    })
}

/// One part of a URL's user part, `%XX` decoded (a `+` stays a `+`, as in any URL's user
/// part); an empty one is refused.
fn url_part(scheme: &str, part: &str, what: &str) -> Result<String, String> {
    crate::query::decode(&part.replace('+', "%2B"))
        .map(std::borrow::Cow::into_owned)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            format!("bad broker {scheme}://…@…: the {what} is empty or has a bad %-escape")
        })
}

/// The seed nodes (`host:port`, port 6379 by default) and credentials of `redis-cluster://`
/// URL `url` (`rest` is what follows the scheme).
fn parse_cluster(url: &str, rest: &str) -> Result<BrokerUrl, String> {
    let (auth, list, url) = redis_user_part("redis-cluster", url, rest)?;
    let mut seeds = Vec::new();
    for one in list.trim_end_matches('/').split(',') {
        let one = one.trim();
        if one.is_empty() || one.contains(['/', '@', '?']) || one.contains("://") {
            return Err(format!(
                "bad broker {url:?}: want redis-cluster://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...] \
                 (no path, options or second scheme)"
            ));
        }
        let seed = with_port(one, 6379, &url)?;
        if seeds.contains(&seed) {
            return Err(format!("broker {url:?} lists {seed} twice"));
        }
        seeds.push(seed);
    }
    Ok(BrokerUrl::RedisCluster { seeds, auth })
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
    let decode = |part: &str, what: &str| url_part("nats", part, what);
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
    with_port(hostport, 4222, url)
}

/// `hostport` with its port checked, or `default` appended when it names none (`url`, as
/// errors may print it, says where it came from).
fn with_port(hostport: &str, default: u16, url: &str) -> Result<String, String> {
    match hostport.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !host.ends_with(':') => {
            port.parse::<u16>()
                .map_err(|e| format!("bad port in broker {url:?}: {e}"))?;
            Ok(hostport.to_owned())
        }
        _ => Ok(format!("{hostport}:{default}")),
    }
}

impl BrokerUrl {
    /// Whether some server is reached over TLS (`rediss://`, NATS's `tls://`).
    pub fn uses_tls(&self) -> bool {
        match self {
            BrokerUrl::Redis(server) => server.tls.is_some(),
            BrokerUrl::RedisSpread(servers) => servers.iter().any(|s| s.tls.is_some()),
            BrokerUrl::Nats { tls, .. } => tls.is_some(),
            _ => false,
        }
    }

    /// The broker's kind as `/api/stats` names it: `memory`, `redis` (one instance or several)
    /// or `nats`.
    pub fn kind(&self) -> &'static str {
        match self {
            BrokerUrl::Memory => "memory",
            BrokerUrl::Redis(_) | BrokerUrl::RedisSpread(_) => "redis",
            BrokerUrl::Nats { .. } => "nats",
            BrokerUrl::RedisCluster { .. } => "redis-cluster",
        }
    }
}

impl std::fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BrokerUrl::Memory => f.write_str("memory"),
            BrokerUrl::Redis(a) => write!(f, "{a}"),
            // Never the secret: the effective configuration and the logs print this.
            BrokerUrl::Nats { addr, auth, tls } => {
                let scheme = if tls.is_some() { "tls" } else { "nats" };
                match auth {
                    nats_proto::Auth::None => write!(f, "{scheme}://{addr}"),
                    nats_proto::Auth::Token(_) => write!(f, "{scheme}://***@{addr}"),
                    nats_proto::Auth::User { user, .. } => {
                        write!(f, "{scheme}://{user}:***@{addr}")
                    }
                }
            }
            BrokerUrl::RedisSpread(addrs) => {
                let urls: Vec<String> = addrs.iter().map(RedisAddr::to_string).collect();
                f.write_str(&urls.join(","))
            }
            BrokerUrl::RedisCluster { seeds, auth } => {
                write!(f, "redis-cluster://{}{}", auth.shown(), seeds.join(","))
            }
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
    /// The TLS client configuration, when a server is reached with `rediss://`.
    tls: Option<Arc<rustls::ClientConfig>>,
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
pub fn prepare(
    url: &BrokerUrl,
    node: u16,
    ca: Option<&std::path::Path>,
) -> anyhow::Result<Option<Pending>> {
    if *url == BrokerUrl::Memory {
        return Ok(None);
    }
    let tls = match url.uses_tls() {
        true => Some(tls::client_config(ca).map_err(|e| anyhow::anyhow!("--broker-ca: {e}"))?),
        false => None,
    };
    let poll = Poll::new().context("cannot create the broker poll")?;
    let waker = Arc::new(
        Waker::new(poll.registry(), redis::WAKE).context("cannot create the broker waker")?,
    );
    let mut uplink = Uplink::new(node, waker, UPLINK_LIMIT).with_kind(url.kind());
    let mut cluster = None;
    if let BrokerUrl::RedisCluster { .. } = url {
        let health = Arc::new(cluster::Health::default());
        let check = Arc::clone(&health);
        uplink = uplink.with_channel_up(Arc::new(move |c: &str| check.channel_up(c)));
        cluster = Some(health);
    }
    let spread = match url {
        BrokerUrl::Memory | BrokerUrl::Nats { .. } | BrokerUrl::RedisCluster { .. } => None,
        BrokerUrl::Redis(server) => Some(Arc::new(Spread::new(std::slice::from_ref(&server.addr)))),
        BrokerUrl::RedisSpread(servers) => {
            let addrs: Vec<String> = servers.iter().map(|s| s.addr.clone()).collect();
            let spread = Arc::new(Spread::new(&addrs));
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
        tls,
    }))
}

/// Start the broker thread, feeding `mesh`.
pub fn start(pending: Pending, mesh: Arc<Mesh>, history: Arc<HistoryPolicy>) -> anyhow::Result<()> {
    let node = node::Node::new(pending.uplink.node(), mesh, pending.uplink, history);
    let health = pending.cluster;
    let run: Box<dyn FnOnce() + Send> = match (pending.url, pending.spread) {
        (BrokerUrl::RedisCluster { seeds, auth }, _) => {
            // History stays with each node on a cluster (see `cluster`).
            let health = health.unwrap_or_default();
            let transport = cluster::Cluster::new(seeds, auth, health, pending.poll, node);
            Box::new(move || transport.run())
        }
        (BrokerUrl::Redis(addr), Some(spread)) => {
            let node = node.share_history();
            let transport = redis::Redis::new(vec![addr], pending.tls, spread, pending.poll, node);
            Box::new(move || transport.run())
        }
        (BrokerUrl::RedisSpread(addrs), Some(spread)) => {
            let transport = redis::Redis::new(addrs, pending.tls, spread, pending.poll, node);
            Box::new(move || transport.run())
        }
        (BrokerUrl::Nats { addr, auth, tls }, _) => {
            let node = node.with_presence(node::PresenceStore::Queries);
            let secure = tls
                .zip(pending.tls)
                .map(|(name, config)| tls::Secure { config, name });
            let transport = nats::Nats::new(addr, auth, secure, pending.poll, node);
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
    fn redis_urls_carry_a_password_or_an_acl_user_and_never_show_it() {
        let server = |addr: &str, auth| RedisAddr {
            addr: addr.into(),
            auth,
            tls: None,
        };
        let pass = |p: &str| RedisAuth::Password(p.into());
        let user = |u: &str, p: &str| RedisAuth::User {
            user: u.into(),
            pass: p.into(),
        };
        assert_eq!(
            "redis://:s3cret@h:1".parse(),
            Ok(BrokerUrl::Redis(server("h:1", pass("s3cret"))))
        );
        assert_eq!(
            "redis://gw:s3cret@cache/".parse(),
            Ok(BrokerUrl::Redis(server("cache:6379", user("gw", "s3cret"))))
        );
        // Escapes decode; a `+` is a `+`; the last `@` ends the user part.
        assert_eq!(
            "redis://g%20w:p%3Aa%40s+s%25%2C@h:1".parse(),
            Ok(BrokerUrl::Redis(server("h:1", user("g w", "p:a@s+s%,"))))
        );
        assert_eq!(
            "redis://:a@b@h:1".parse(),
            Ok(BrokerUrl::Redis(server("h:1", pass("a@b"))))
        );
        // Each instance of a spread has its own.
        assert_eq!(
            "redis://:one@a:1,redis://b:2,redis://gw:two@c:3".parse(),
            Ok(BrokerUrl::RedisSpread(vec![
                server("a:1", pass("one")),
                server("b:2", RedisAuth::None),
                server("c:3", user("gw", "two")),
            ]))
        );
        // Printed, and debug-printed, without the secret.
        let shown = |url: &str| url.parse::<BrokerUrl>().unwrap().to_string();
        assert_eq!(shown("redis://:s3cret@h:1"), "redis://:***@h:1");
        assert_eq!(shown("redis://gw:s3cret@h:1"), "redis://gw:***@h:1");
        assert_eq!(
            shown("redis://:s3cret@a:1,redis://b:2"),
            "redis://:***@a:1,redis://b:2"
        );
        let parsed = "redis://gw:s3cret@h:1".parse::<BrokerUrl>().unwrap();
        assert!(!format!("{parsed:?}").contains("s3cret"), "{parsed:?}");
        // AUTH with the password alone, or with the user first.
        assert_eq!(
            &*pass("pw").command().unwrap(),
            b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n"
        );
        assert_eq!(
            &*user("u", "pw").command().unwrap(),
            b"*3\r\n$4\r\nAUTH\r\n$1\r\nu\r\n$2\r\npw\r\n"
        );
        assert_eq!(RedisAuth::None.command(), None);
        // Bad credentials or hosts are refused without echoing the secret.
        for bad in [
            "redis://s3cret@h:1",
            "redis://:@h:1",
            "redis://gw:@h:1",
            "redis://:s3cret%zz@h:1",
            "redis://:s3cret@h:0x",
            "redis://:s3cret@",
            "redis://:s3cret@h:1/0",
            "redis://:s3cret@a:1,redis://:s3cret@a:1",
            "redis://:s3cret@a:1,nats://:s3cret@b:1",
        ] {
            let e = bad.parse::<BrokerUrl>().unwrap_err();
            assert!(!e.contains("s3cret"), "{bad}: {e}");
        }
    }

    #[test]
    fn rediss_urls_ask_for_tls_with_the_host_as_the_certificate_name() {
        let one = "rediss://:s3cret@cache.internal:6380".parse::<BrokerUrl>();
        let Ok(BrokerUrl::Redis(server)) = one else {
            panic!("{one:?}");
        };
        assert_eq!(server.addr, "cache.internal:6380");
        assert_eq!(server.auth, RedisAuth::Password("s3cret".into()));
        let name = server.tls.as_ref().map(|n| n.to_str().into_owned());
        assert_eq!(name.as_deref(), Some("cache.internal"));
        assert_eq!(server.to_string(), "rediss://:***@cache.internal:6380");
        assert!(BrokerUrl::Redis(server).uses_tls());
        // Mixed in a spread: each URL says.
        let mixed = "rediss://a:1,redis://b:2".parse::<BrokerUrl>().unwrap();
        assert!(mixed.uses_tls());
        assert_eq!(mixed.to_string(), "rediss://a:1,redis://b:2");
        let plain = "redis://a:1,redis://b:2".parse::<BrokerUrl>().unwrap();
        assert!(!plain.uses_tls());
        // A host no certificate can name is refused at once, without the secret.
        let e = "rediss://:s3cret@bad_host!:1"
            .parse::<BrokerUrl>()
            .unwrap_err();
        assert!(e.contains("certificate") && !e.contains("s3cret"), "{e}");
    }

    #[test]
    fn tls_urls_are_nats_over_tls() {
        let url = "tls://gw:s3cret@bus.internal".parse::<BrokerUrl>().unwrap();
        let BrokerUrl::Nats { addr, tls, .. } = &url else {
            panic!("{url:?}");
        };
        assert_eq!(addr, "bus.internal:4222");
        let name = tls.as_ref().map(|n| n.to_str().into_owned());
        assert_eq!(name.as_deref(), Some("bus.internal"));
        assert!(url.uses_tls());
        assert_eq!(url.kind(), "nats");
        assert_eq!(url.to_string(), "tls://gw:***@bus.internal:4222");
        assert!(!"nats://bus".parse::<BrokerUrl>().unwrap().uses_tls());
        let e = "tls://:s3cret@bad_host!:1"
            .parse::<BrokerUrl>()
            .unwrap_err();
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[test]
    fn cluster_urls_parse_with_one_or_more_seeds() {
        let cluster = |seeds: &[&str], auth| BrokerUrl::RedisCluster {
            seeds: seeds.iter().map(|s| s.to_string()).collect(),
            auth,
        };
        assert_eq!(
            "redis-cluster://127.0.0.1:7000,127.0.0.1:7001".parse(),
            Ok(cluster(
                &["127.0.0.1:7000", "127.0.0.1:7001"],
                RedisAuth::None
            ))
        );
        let one = cluster(&["redis:6379"], RedisAuth::None);
        assert_eq!("redis-cluster://redis/".parse(), Ok(one.clone()));
        assert_eq!(one.to_string(), "redis-cluster://redis:6379");
        for bad in [
            "redis-cluster://",
            "redis-cluster://a:1,",
            "redis-cluster://a:1,a:1",
            "redis-cluster://a:x",
            "redis-cluster://u@a:1",
            "redis-cluster://a:1,redis-cluster://b:2",
            "redis-cluster://a:1/0",
        ] {
            assert!(bad.parse::<BrokerUrl>().is_err(), "{bad:?}");
        }
        // One set of credentials for every node of the cluster, shown without the secret.
        let with = cluster(&["a:1", "b:6379"], RedisAuth::Password("s,3@c".into()));
        assert_eq!("redis-cluster://:s%2C3%40c@a:1,b".parse(), Ok(with.clone()));
        assert_eq!(with.to_string(), "redis-cluster://:***@a:1,b:6379");
        for bad in [
            "redis-cluster://:s3cret@",
            "redis-cluster://:s3cret@a:1,a:1",
            "redis-cluster://gw:s3cret@a:1,b:1/0",
        ] {
            let e = bad.parse::<BrokerUrl>().unwrap_err();
            assert!(!e.contains("s3cret"), "{bad}: {e}");
        }
    }

    #[test]
    fn nats_urls_parse_with_or_without_credentials() {
        let nats = |addr: &str, auth| BrokerUrl::Nats {
            addr: addr.into(),
            auth,
            tls: None,
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
