//! `Uplink`: what the shards hand to their node's broker thread (`broker/`), the way to the
//! other nodes. Only nodes started with `--broker` other than `memory` have one; with none, the
//! router never builds an [`Up`] and the single-node path is unchanged.
//!
//! One unbounded lock-free queue (crossbeam `SegQueue`) fed by every shard: messages one shard
//! pushes come out in the order it pushed them, so a publisher's order survives the trip.
//! Interest and answers are never refused; data (publishes, private messages) is refused once
//! `limit` data messages wait (`busy`), and while the broker is down ([`Uplink::connected`]).
//! A shard wakes the broker thread once per turn after pushing.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_queue::SegQueue;
use frame_simd::CloseCode;
use mio::Waker;

use crate::conn::ConnId;

use super::history::Want;
use super::inbox::{Publication, ReplyTo};

/// A message for the node's broker thread.
#[derive(Debug)]
pub enum Up {
    /// Shard `shard` gained its first (`on`) or lost its last local subscriber of `channel`.
    Interest {
        /// The channel.
        channel: Arc<str>,
        /// The announcing shard.
        shard: u8,
        /// Gained or lost.
        on: bool,
    },
    /// Connection `conn` (of user `user`) subscribed to (`on`) or left `channel`: the node's
    /// part of the channel's presence, kept on the broker for the other nodes.
    Member {
        /// The channel.
        channel: Arc<str>,
        /// The subscriber.
        conn: ConnId,
        /// Its user.
        user: Option<Arc<str>>,
        /// Subscribed or left.
        on: bool,
    },
    /// List the other nodes' members of `channel`: the answer is a `PresencePart` for gather
    /// `tag` of shard `from` (empty when the broker is unreachable).
    PresenceQuery {
        /// The channel.
        channel: Arc<str>,
        /// The asking shard.
        from: u8,
        /// Its gather's tag.
        tag: u64,
    },
    /// List the other nodes' channels with their subscriber counts: the answer is a
    /// `ChannelPart` for gather `tag` of shard `from` (empty when the broker is unreachable).
    ChannelQuery {
        /// The asking shard.
        from: u8,
        /// Its gather's tag.
        tag: u64,
    },
    /// A presence event for the other nodes' JSON subscribers of `channel`.
    PresenceEvent {
        /// The channel.
        channel: Arc<str>,
        /// `join` (true) or `leave`.
        join: bool,
        /// Who joined or left.
        conn: ConnId,
        /// Its user.
        user: Option<Arc<str>>,
    },
    /// Frames encoded once (a Socket.IO event and its attachments) for the other nodes'
    /// subscribers of `channel`, as [`Router::publish_frames`](super::Router::publish_frames)
    /// hands them to this node's.
    Frames {
        /// The channel.
        channel: Arc<str>,
        /// The complete frames.
        frames: Arc<[u8]>,
        /// Not delivered to this connection (on whichever node it is).
        skip: Option<ConnId>,
    },
    /// A publication for the other nodes' subscribers (this node served its own). On a
    /// channel whose history the broker keeps ([`Uplink::shares_history`]), for every node's
    /// subscribers, this one's included, once the broker has numbered it.
    Publish(Box<Publication>),
    /// Ask the broker's history of `channel` for `want`: the answer is a `HistoryAnswer` (or a
    /// `HistoryFailed`) for query `tag` of shard `from`.
    HistoryQuery {
        /// The channel.
        channel: Arc<str>,
        /// The asking shard.
        from: u8,
        /// Its query's tag.
        tag: u64,
        /// What it asks.
        want: Want,
        /// Publications a recovery may replay (`--max-recovery`).
        max_recovery: usize,
    },
    /// A private message for a connection on another node.
    Direct {
        /// The target (its node bits name the node).
        to: ConnId,
        /// The complete frame.
        frame: Arc<[u8]>,
        /// Who waits for the outcome.
        reply: Option<ReplyTo>,
    },
    /// The outcome of a `Direct` or `Close` for a requester on another node.
    Outcome {
        /// The requester.
        reply: ReplyTo,
        /// The target was live.
        delivered: bool,
    },
    /// Close a connection on another node.
    Close {
        /// The target.
        conn: ConnId,
        /// The close code.
        code: CloseCode,
        /// The close reason.
        reason: Box<str>,
        /// Who waits to learn whether it existed.
        reply: Option<ReplyTo>,
    },
    /// Deliver `frame` to every connection of `user` on the other nodes.
    User {
        /// The user.
        user: Arc<str>,
        /// The complete frame.
        frame: Arc<[u8]>,
    },
    /// Close every connection of `user` on the other nodes.
    CloseUser {
        /// The user.
        user: Arc<str>,
        /// The close code.
        code: CloseCode,
        /// The close reason.
        reason: Box<str>,
    },
}

impl Up {
    /// An upper bound of the bytes this message takes between nodes (its broker payload):
    /// what it carries plus the envelope's fixed fields.
    fn wire_bytes(&self) -> usize {
        const ENVELOPE: usize = 48;
        ENVELOPE
            + match self {
                Up::Publish(p) => {
                    let bare = if p.bare() == p.data() {
                        0
                    } else {
                        p.bare().len()
                    };
                    p.data().len() + bare + p.user().map_or(0, str::len)
                }
                Up::Direct { frame, .. } => frame.len(),
                Up::User { user, frame } => user.len() + frame.len(),
                Up::Close { reason, .. } => reason.len(),
                Up::CloseUser { user, reason, .. } => user.len() + reason.len(),
                Up::PresenceEvent { user, .. } => user.as_deref().map_or(0, str::len),
                Up::Frames { frames, .. } => frames.len(),
                Up::Interest { .. }
                | Up::Member { .. }
                | Up::PresenceQuery { .. }
                | Up::ChannelQuery { .. }
                | Up::HistoryQuery { .. }
                | Up::Outcome { .. } => 0,
            }
    }

    /// Whether the message may be refused (data) rather than always accepted (control).
    fn is_data(&self) -> bool {
        !matches!(
            self,
            Up::Interest { .. }
                | Up::Outcome { .. }
                | Up::Member { .. }
                | Up::PresenceQuery { .. }
                | Up::ChannelQuery { .. }
                | Up::HistoryQuery { .. }
        )
    }
}

impl Up {
    /// The channel a data message belongs to, if any (a broker spread over several instances
    /// carries each channel on one of them).
    fn channel(&self) -> Option<&str> {
        match self {
            Up::Publish(p) => Some(p.channel()),
            Up::PresenceEvent { channel, .. } | Up::Frames { channel, .. } => Some(channel),
            _ => None,
        }
    }
}

/// Whether the broker instance that carries a channel is reachable, for a broker spread over
/// several instances (`--broker redis://a,redis://b`).
pub type ChannelUp = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Why the uplink refused a data message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The broker is unreachable.
    Down,
    /// Too many messages wait for the broker thread.
    Full,
    /// The message is larger than the broker carries (NATS `max_payload`).
    TooLarge,
}

/// Counters and gauges of the broker thread, read by `/metrics`, `/api/stats` and `/healthz`.
#[derive(Debug, Default)]
pub struct BrokerStats {
    /// Connections (re)established.
    pub reconnects: AtomicU64,
    /// Channels subscribed again after a reconnect.
    pub resubscribes: AtomicU64,
    /// Messages from the broker dropped because a shard's queue was full.
    pub dropped: AtomicU64,
    /// Messages published to the broker.
    pub published: AtomicU64,
    /// Messages received from the broker for this node.
    pub received: AtomicU64,
    /// Channels this node is subscribed to on the broker.
    pub channels: AtomicU64,
    /// History queries answered with a failure (the broker did not answer in time).
    pub history_failures: AtomicU64,
    /// Gaps seen in the offsets the broker delivered for channels with shared history.
    pub history_gaps: AtomicU64,
    /// Nodes seen alive through heartbeats (this one included).
    pub nodes: std::sync::Mutex<Vec<u16>>,
    /// Broker instances (of several, or the one) this node cannot reach now.
    pub instances_down: AtomicU64,
}

/// The shards' side of the broker thread. See the module doc.
pub struct Uplink {
    node: u16,
    queue: SegQueue<Up>,
    data_waiting: AtomicUsize,
    limit: usize,
    connected: Arc<AtomicBool>,
    /// Largest broker payload the broker takes (`usize::MAX`: no limit known).
    max_payload: AtomicUsize,
    /// Set for a spread broker: a channel's data is refused while its instance is down.
    channel_up: Option<ChannelUp>,
    waker: Arc<Waker>,
    /// The broker keeps the history of channels (one numbering for every node).
    shared_history: bool,
    /// What kind of broker it is (`redis`, `nats`), for `/api/stats`.
    kind: &'static str,
    /// The broker thread's counters.
    pub stats: BrokerStats,
}

impl std::fmt::Debug for Uplink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uplink")
            .field("node", &self.node)
            .field("queued", &self.queue.len())
            .field("connected", &self.connected())
            .finish()
    }
}

impl Uplink {
    /// The uplink of node `node`, waking the broker thread through `waker`, refusing data past
    /// `limit` waiting messages. It starts disconnected.
    pub fn new(node: u16, waker: Arc<Waker>, limit: usize) -> Uplink {
        Uplink {
            node,
            queue: SegQueue::new(),
            data_waiting: AtomicUsize::new(0),
            limit: limit.max(1),
            connected: Arc::new(AtomicBool::new(false)),
            max_payload: AtomicUsize::new(usize::MAX),
            channel_up: None,
            waker,
            shared_history: false,
            kind: "redis",
            stats: BrokerStats::default(),
        }
    }

    /// Name the broker's kind (`redis` unless said otherwise), as `/api/stats` shows it.
    pub fn with_kind(mut self, kind: &'static str) -> Uplink {
        self.kind = kind;
        self
    }

    /// The broker's kind.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Refuse a channel's data (`Down`) while `up` says its broker instance is unreachable,
    /// even when [`Uplink::connected`] (some instance is) holds.
    pub fn with_channel_up(mut self, up: ChannelUp) -> Uplink {
        self.channel_up = Some(up);
        self
    }

    /// Let the broker keep the history of channels: publications to them and history queries
    /// go up to it instead of to the channel's owner shard.
    pub fn share_history(mut self) -> Uplink {
        self.shared_history = true;
        self
    }

    /// Whether the broker keeps the history of channels.
    pub fn shares_history(&self) -> bool {
        self.shared_history
    }

    /// This node's id.
    pub fn node(&self) -> u16 {
        self.node
    }

    /// Whether the broker is reachable (set by the broker thread).
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// The flag behind [`Uplink::connected`], for readers outside the router (`/healthz`).
    pub fn connected_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.connected)
    }

    /// The broker thread's view of the connection.
    pub fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Release);
    }

    /// The broker thread learned the largest payload its broker takes.
    pub fn set_max_payload(&self, bytes: usize) {
        self.max_payload.store(bytes, Ordering::Relaxed);
    }

    /// Queue `up` for the broker thread. Data is refused while the broker is down, when it is
    /// larger than the broker takes, or when too much waits; control messages are always queued.
    pub fn push(&self, up: Up) -> Result<(), Refused> {
        if up.is_data() {
            if !self.connected() {
                return Err(Refused::Down);
            }
            if up.wire_bytes() > self.max_payload.load(Ordering::Relaxed) {
                return Err(Refused::TooLarge);
            }
            if let (Some(up), Some(channel)) = (&self.channel_up, up.channel()) {
                if !up(channel) {
                    return Err(Refused::Down);
                }
            }
            if self.data_waiting.fetch_add(1, Ordering::AcqRel) >= self.limit {
                self.data_waiting.fetch_sub(1, Ordering::AcqRel);
                return Err(Refused::Full);
            }
        }
        self.queue.push(up);
        Ok(())
    }

    /// The next message for the broker thread.
    pub fn pop(&self) -> Option<Up> {
        let up = self.queue.pop()?;
        if up.is_data() {
            self.data_waiting.fetch_sub(1, Ordering::AcqRel);
        }
        Some(up)
    }

    /// Wake the broker thread.
    pub fn wake(&self) {
        let _ = self.waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uplink(limit: usize) -> Uplink {
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).unwrap());
        Uplink::new(3, waker, limit)
    }

    fn direct() -> Up {
        Up::User {
            user: Arc::from("u"),
            frame: Arc::from(&b"x"[..]),
        }
    }

    fn interest(shard: u8) -> Up {
        Up::Interest {
            channel: Arc::from("c"),
            shard,
            on: true,
        }
    }

    #[test]
    fn data_waits_for_the_broker_and_a_bounded_queue_control_does_not() {
        let u = uplink(2);
        assert_eq!(u.push(direct()).unwrap_err(), Refused::Down);
        u.push(interest(1)).unwrap();
        u.set_connected(true);
        u.push(direct()).unwrap();
        u.push(direct()).unwrap();
        assert_eq!(u.push(direct()).unwrap_err(), Refused::Full);
        u.push(interest(2)).unwrap();
        let order: Vec<Option<u8>> = std::iter::from_fn(|| u.pop())
            .map(|m| match m {
                Up::Interest { shard, .. } => Some(shard),
                _ => None,
            })
            .collect();
        assert_eq!(order, vec![Some(1), None, None, Some(2)], "FIFO");
        u.push(direct()).unwrap();
        assert_eq!(u.node(), 3);
    }

    #[test]
    fn data_larger_than_the_broker_takes_is_refused_and_control_is_not() {
        let u = uplink(8);
        u.set_connected(true);
        assert!(u.push(direct()).is_ok(), "no limit known: anything goes");
        u.set_max_payload(100);
        let big = Up::User {
            user: Arc::from("u"),
            frame: Arc::from(&[0u8; 100][..]),
        };
        assert_eq!(u.push(big).unwrap_err(), Refused::TooLarge);
        assert!(u.push(direct()).is_ok());
        assert!(u.push(interest(0)).is_ok());
    }

    #[test]
    fn a_spread_broker_refuses_only_the_channels_of_a_down_instance() {
        let u = uplink(8).with_channel_up(Arc::new(|c: &str| c != "down"));
        u.set_connected(true);
        let publish = |c: &str| {
            let p = Publication::new(c, b"1", b"1", None, None, None);
            Up::Publish(Box::new(p))
        };
        assert_eq!(u.push(publish("down")).unwrap_err(), Refused::Down);
        u.push(publish("fine")).unwrap();
        u.push(direct()).unwrap();
    }
}
