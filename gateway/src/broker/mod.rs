//! The broker: how the nodes of one deployment reach each other. One thread per node owns the
//! broker connections; the shards talk to it only through the router's
//! [`Uplink`](crate::router::uplink::Uplink) (up) and their own inbox queues (down), so they
//! stay free of any runtime or lock.
//!
//! - [`node`]: what the thread knows and does for any broker: the node-wide refcount of
//!   channels (subscribe on 0 -> 1 shards, unsubscribe on 1 -> 0), messages between nodes
//!   ([`wire`]), deliveries pushed into the shards' queues without ever waiting on a full one.
//! - [`redis`]: the Redis transport (RESP over mio, [`resp`]), with reconnects and resubscribes.
//! - [`history`]: on Redis, the history of channels (`--history`) kept in Redis streams, one
//!   numbering for every node, so a client recovers on any node.
//!
//! `--broker memory` (the default) starts no thread: the node is alone and the router never
//! looks past its own shards.

pub mod history;
pub mod node;
pub mod redis;
pub mod resp;
pub mod wire;

use std::sync::Arc;

use anyhow::Context;
use mio::{Poll, Waker};

use crate::router::history::HistoryPolicy;
use crate::router::inbox::Mesh;
use crate::router::uplink::Uplink;

/// Which broker joins the nodes (`--broker`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum BrokerUrl {
    /// No broker: one node.
    #[default]
    Memory,
    /// One Redis at `host:port`.
    Redis(String),
}

impl std::str::FromStr for BrokerUrl {
    type Err = String;

    /// `memory` or `redis://host:port` (the port defaults to 6379).
    fn from_str(s: &str) -> Result<BrokerUrl, String> {
        let s = s.trim();
        if s == "memory" {
            return Ok(BrokerUrl::Memory);
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
            "unknown broker {s:?}: want memory or redis://HOST:PORT"
        ))
    }
}

impl std::fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BrokerUrl::Memory => f.write_str("memory"),
            BrokerUrl::Redis(a) => write!(f, "redis://{a}"),
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
}

impl Pending {
    /// The shards' way to the thread.
    pub fn uplink(&self) -> &Arc<Uplink> {
        &self.uplink
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
    let uplink = Uplink::new(node, waker, UPLINK_LIMIT);
    // On Redis the history of channels is shared by the nodes (`history`).
    let uplink = Arc::new(match url {
        BrokerUrl::Redis(_) => uplink.share_history(),
        BrokerUrl::Memory => uplink,
    });
    Ok(Some(Pending {
        url: url.clone(),
        poll,
        uplink,
    }))
}

/// Start the broker thread, feeding `mesh`.
pub fn start(pending: Pending, mesh: Arc<Mesh>, history: Arc<HistoryPolicy>) -> anyhow::Result<()> {
    let node = node::Node::new(pending.uplink.node(), mesh, pending.uplink, history);
    let transport = match pending.url {
        BrokerUrl::Memory => return Ok(()),
        BrokerUrl::Redis(addr) => redis::Redis::new(addr, pending.poll, node.share_history()),
    };
    std::thread::Builder::new()
        .name("broker".into())
        .spawn(move || transport.run())
        .context("cannot start the broker thread")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
