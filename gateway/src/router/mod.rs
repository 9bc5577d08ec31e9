//! `Router`: channels, fan-out and private messages for one shard, and the messages that tie the
//! shards together. Each shard owns one; shards share only the [`inbox::Mesh`] of lock-free
//! queues.
//!
//! Entry points (called on the shard's thread, by the client apps and the backend API):
//! - [`Router::publish`]: deliver JSON `data` to every subscriber of a channel, on every shard
//!   that has one (found in the [`registry::Registry`]); the frame is encoded once.
//! - [`Router::send`]: deliver JSON `data` privately to one [`ConnId`] on any shard; the outcome
//!   (delivered, or unknown) comes back to the requester.
//! - [`Router::presence`], [`Router::channel_list`] and [`Router::lookup_conns`]: scatter/gather
//!   over shards ([`gather`]).
//! - [`Router::disconnect`], [`Router::publish_user`], [`Router::disconnect_user`].
//! - [`Router::subscribe`], [`Router::unsubscribe`], [`Router::on_disconnect`] for connections.
//! - Channels with history ([`history`], `--history`): [`Router::publish`] hands the publication
//!   to the channel's [`Router::owner`], whose [`Router::on_publication`] numbers, keeps and fans
//!   it out; [`Router::subscribe_at`] subscribes and asks the owner for the position (and the
//!   replay), holding live deliveries meanwhile ([`merge`], [`recovery`]);
//!   [`Router::history`] reads the last publications. The owner answers in
//!   [`Router::on_history_query`]; the asker merges in [`Router::on_history_answer`].
//!
//! Every effect is a [`ShardMsg`]: for another shard it crosses the mesh, for this shard it waits
//! in a local list ([`outbound::Outbound`]) that the shard applies at the end of the turn, the
//! same way (it owns the connections). Answers for requesters that are not client connections
//! (the API) are left in [`Router::completions`].

pub mod channels;
pub mod fanout;
pub mod gather;
pub mod history;
pub mod inbox;
pub mod merge;
pub mod outbound;
pub mod recovery;
pub mod registry;
pub mod session;
pub mod uplink;
pub mod users;

use std::io::Write as _;
use std::sync::Arc;
use std::time::Instant;

use frame_simd::CloseCode;

use crate::conn::ConnId;

use self::channels::{ChanKey, ChannelTable, Kind};
use self::fanout::{encode_direct, frame_payload, text_frame, Delivery, Parts};
use self::gather::{ChannelGather, ConnGather, Gather, Gathers};
use self::history::{Answer, Epoch, Histories, HistoryPolicy, Want};
use self::inbox::{ConnInfo, Lookup, Mesh, Publication, ReplyTo, ShardMsg};
use self::merge::Merge;
use self::outbound::Outbound;
use self::recovery::{Queries, Query};
use self::registry::Registry;
use self::session::Session;
use self::uplink::{Refused, Up, Uplink};
use self::users::Users;

/// A presence member: a connection and its user.
pub type Member = (ConnId, Option<Arc<str>>);

/// Why the router refused a request. Each layer above says it in its own words (a `/ws` error
/// reply, an API status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouterError {
    /// A queue towards another shard is full (and so is the backlog): retry later.
    Busy,
    /// No shard of this node has a connection with this id.
    UnknownConnection,
    /// Subscribing would pass `--max-channels-per-conn`.
    TooManyChannels,
    /// Unsubscribing from a channel the connection is not subscribed to.
    NotSubscribed,
    /// The request needs other nodes and the broker is unreachable (this node's own
    /// subscribers were served).
    BrokerDown,
    /// The request needs other nodes and is larger than the broker carries (this node's own
    /// subscribers were served).
    TooLargeForBroker,
}

/// Live deliveries held for one subscription while its position query is out, at least.
const MIN_HOLD: usize = 1024;

/// A client's claim to a position in a channel's stream (`recover` in a subscribe).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recover {
    /// The last offset it got.
    pub offset: u64,
    /// The stream it is from (`None`: the client named no epoch this gateway could have made).
    pub epoch: Option<Epoch>,
}

/// Publications read from a channel's history.
#[derive(Clone, Debug)]
pub struct HistoryRead {
    /// The channel.
    pub channel: Arc<str>,
    /// Its stream.
    pub epoch: Epoch,
    /// The stream's last offset.
    pub top: u64,
    /// The publications' JSON delivery frames, oldest first (each holds its offset).
    pub frames: Vec<Arc<[u8]>>,
}

impl HistoryRead {
    /// `"offset":N,"epoch":"..","publications":[<message>,..]`: the fields every answer to a
    /// history read carries (each publication is its `message` delivery, offset included).
    pub fn write_fields(&self, out: &mut Vec<u8>) {
        let _ = write!(
            out,
            "\"offset\":{},\"epoch\":\"{}\",\"publications\":[",
            self.top, self.epoch
        );
        for (i, frame) in self.frames.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(frame_payload(frame));
        }
        out.push(b']');
    }
}

/// An owner's answer, made ready for the requester's shard.
#[derive(Debug)]
pub enum Answered {
    /// A subscription's position: reply, then send `frames` (replay and held live deliveries).
    Subscribed {
        /// The subscriber and its request id.
        reply: ReplyTo,
        /// The stream.
        epoch: Epoch,
        /// The offset after which every publication reaches the subscriber.
        offset: u64,
        /// Whether it recovered (`None`: it did not ask to).
        recovered: Option<bool>,
        /// Frames to send after the reply, in order.
        frames: Vec<Arc<[u8]>>,
    },
    /// A history read.
    Read {
        /// The requester.
        reply: ReplyTo,
        /// What was read.
        read: HistoryRead,
    },
    /// The history store could not answer: an error for the requester.
    Failed {
        /// The requester.
        reply: ReplyTo,
        /// The channel a subscriber is to leave again (its subscribe failed).
        channel: Option<Arc<str>>,
    },
}

/// Router limits and sizes.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    /// Channels one connection may subscribe to.
    pub max_channels_per_conn: usize,
    /// Data messages kept waiting for full queues of other shards before publishes are refused
    /// (`busy`): `--max-shard-backlog`.
    pub max_backlog: usize,
    /// Which channels keep history (`--history`); the same on every shard.
    pub history: Arc<HistoryPolicy>,
    /// Publications one resubscribe may replay (`--max-recovery`).
    pub max_recovery: usize,
    /// This node's id (`--node-id`), part of every connection id it hands out.
    pub node: u16,
    /// The way to the other nodes (`--broker`); `None` for a single node.
    pub uplink: Option<Arc<Uplink>>,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            max_channels_per_conn: 128,
            max_backlog: 1 << 16,
            history: Arc::default(),
            max_recovery: 300,
            node: 0,
            uplink: None,
        }
    }
}

/// An answer for a requester that is not a client connection (an API request).
#[derive(Debug)]
pub enum Completion {
    /// The outcome of [`Router::send`] or [`Router::disconnect`].
    Sent {
        /// The requester.
        reply: ReplyTo,
        /// True when the target existed.
        delivered: bool,
    },
    /// The outcome of [`Router::presence`].
    Presence {
        /// The requester.
        reply: ReplyTo,
        /// Every member found.
        members: Vec<Member>,
    },
    /// The outcome of [`Router::history`].
    History {
        /// The requester.
        reply: ReplyTo,
        /// What was read.
        read: HistoryRead,
    },
    /// [`Router::history`] failed: the history store did not answer.
    HistoryFailed {
        /// The requester.
        reply: ReplyTo,
    },
    /// The outcome of [`Router::lookup_conns`]: the connections found on every shard asked.
    Conns {
        /// The requester.
        reply: ReplyTo,
        /// What was looked up.
        lookup: Lookup,
        /// The connections found (none when the id is stale or the user has none).
        conns: Vec<ConnInfo>,
    },
    /// The outcome of [`Router::channel_list`]: every channel with subscribers on any shard.
    Channels {
        /// The requester.
        reply: ReplyTo,
        /// Channels and subscriber counts summed over shards (in no particular order).
        counts: Vec<(Arc<str>, u64)>,
    },
}

/// Counters the router keeps (exported by the metrics module).
#[derive(Debug, Default, Clone, Copy)]
pub struct RouterStats {
    /// Publishes accepted.
    pub publishes: u64,
    /// Frames queued to subscribers (channel and private deliveries).
    pub deliveries: u64,
    /// Connections closed with 4008.
    pub slow_consumer_disconnects: u64,
    /// Requests refused because a queue was full.
    pub busy: u64,
    /// Frames from `/raw` clients, ignored.
    pub raw_ignored: u64,
    /// Subscribes with `recover` that recovered.
    pub recovered: u64,
    /// Subscribes with `recover` that did not.
    pub recovery_misses: u64,
}

/// One shard's router. See the module doc.
#[derive(Debug)]
pub struct Router {
    cfg: RouterConfig,
    /// The shard's channels and their local subscribers.
    pub channels: ChannelTable,
    /// Which shards have subscribers of which channel.
    pub registry: Registry,
    /// The shard's connections by user.
    pub users: Users,
    /// Presence and channel-list queries waiting for shards.
    pub gathers: Gathers,
    /// The history streams this shard owns.
    pub history: Histories<Arc<Delivery>>,
    /// Position queries and history reads waiting for owners.
    pub queries: Queries,
    /// Messages to shards, this one included.
    pub outbound: Outbound,
    /// Answers for API requesters.
    pub completions: Vec<Completion>,
    /// Counters.
    pub stats: RouterStats,
    /// Reused to encode frames.
    scratch: Vec<u8>,
}

impl Router {
    /// The router of shard `shard` on `mesh`.
    pub fn new(shard: u8, mesh: Arc<Mesh>, cfg: RouterConfig) -> Router {
        Router::build(Outbound::new(shard, mesh, cfg.max_backlog, false), cfg)
    }

    /// A router for a process with a single shard (no wake-ups needed).
    pub fn single(shard: u8) -> Router {
        let wakers = vec![None; usize::from(shard) + 1];
        let cfg = RouterConfig::default();
        let mesh = Arc::new(Mesh::new(1024, wakers));
        Router::build(Outbound::new(shard, mesh, cfg.max_backlog, true), cfg)
    }

    fn build(outbound: Outbound, cfg: RouterConfig) -> Router {
        let outbound = outbound.with_uplink(cfg.uplink.clone());
        Router {
            cfg,
            channels: ChannelTable::default(),
            registry: Registry::default(),
            users: Users::default(),
            gathers: Gathers::default(),
            history: Histories::default(),
            queries: Queries::default(),
            outbound,
            completions: Vec::new(),
            stats: RouterStats::default(),
            scratch: Vec::new(),
        }
    }

    /// This router's shard.
    pub fn shard(&self) -> u8 {
        self.outbound.shard()
    }

    /// The limits.
    pub fn config(&self) -> &RouterConfig {
        &self.cfg
    }

    /// This router's node.
    pub fn node(&self) -> u16 {
        self.cfg.node
    }

    /// Whether this node reaches others through a broker.
    pub fn has_broker(&self) -> bool {
        self.outbound.uplink().is_some()
    }

    /// Hand `up` to the broker thread: `BrokerDown` or `Busy` when it refused.
    fn up(&mut self, up: Up) -> Result<(), RouterError> {
        self.outbound.up(up).map_err(|r| match r {
            Refused::Down => RouterError::BrokerDown,
            Refused::TooLarge => RouterError::TooLargeForBroker,
            Refused::Full => {
                self.stats.busy += 1;
                RouterError::Busy
            }
        })
    }

    /// Tell the requester `reply`, on another node, whether its target existed.
    pub fn outcome_up(&mut self, reply: ReplyTo, delivered: bool) {
        let _ = self.outbound.up(Up::Outcome { reply, delivered });
    }

    /// Publish `data` (JSON text) to `channel` (a valid name). `bare` is what `/raw` and
    /// `/broadcast` subscribers get (the string's text when `data` is a JSON string, else the
    /// JSON text); `from`/`user` name the publisher (`None` for the API); `skip` is not
    /// delivered to. `Busy` when a shard's queue was full (that shard misses it).
    ///
    /// On a channel with history the publication goes to the channel's owner shard first
    /// ([`Router::on_publication`] there), which numbers, keeps and fans it out.
    ///
    /// With a broker, the publication also goes to the other nodes (one copy on the broker);
    /// `BrokerDown` when it could not, this node's subscribers being served all the same.
    pub fn publish(
        &mut self,
        channel: &str,
        data: &[u8],
        bare: &[u8],
        from: Option<ConnId>,
        user: Option<&str>,
        skip: Option<ConnId>,
    ) -> Result<(), RouterError> {
        self.stats.publishes += 1;
        if self.shared_history(channel) {
            // The broker numbers it and hands it back to every node, this one included.
            let p = Publication::new(channel, data, bare, from, user, skip);
            return self.up(Up::Publish(Box::new(p)));
        }
        let local = self.publish_here(channel, data, bare, from, user, skip);
        if self.has_broker() {
            let p = Publication::new(channel, data, bare, from, user, None);
            self.up(Up::Publish(Box::new(p)))?;
        }
        local
    }

    /// [`Router::publish`] on this node.
    fn publish_here(
        &mut self,
        channel: &str,
        data: &[u8],
        bare: &[u8],
        from: Option<ConnId>,
        user: Option<&str>,
        skip: Option<ConnId>,
    ) -> Result<(), RouterError> {
        if self.has_history(channel) {
            let p = Publication::new(channel, data, bare, from, user, skip);
            return self.data(self.owner(channel), ShardMsg::Publish(Box::new(p)));
        }
        let Some((name, shards)) = self.registry.lookup(channel) else {
            return Ok(());
        };
        let parts = Parts {
            data,
            bare,
            from,
            user,
        };
        let d = Delivery::publication(&mut self.scratch, name, parts, skip, None);
        self.on_shards(shards.iter(), || ShardMsg::Deliver(Arc::clone(&d)))
    }

    /// Deliver `frames` (complete WebSocket frames the caller encoded once, e.g. a Socket.IO
    /// event and its attachments) to every subscriber of `channel` on every shard, but `skip`.
    /// Subscribers of both kinds get the frames as they are; no history is kept. `Busy` when a
    /// shard's queue was full (that shard misses it). With a broker the frames also go to the
    /// other nodes (one copy), whose subscribers get the same bytes; `BrokerDown` when they
    /// could not, this node's subscribers being served all the same.
    pub fn publish_frames(
        &mut self,
        channel: &str,
        frames: Arc<[u8]>,
        skip: Option<ConnId>,
    ) -> Result<(), RouterError> {
        self.stats.publishes += 1;
        let local = match self.registry.lookup(channel) {
            Some((name, shards)) => {
                let d = Arc::new(Delivery {
                    channel: name,
                    json: Arc::clone(&frames),
                    bare: Some(Arc::clone(&frames)),
                    skip,
                    offset: None,
                });
                self.on_shards(shards.iter(), || ShardMsg::Deliver(Arc::clone(&d)))
            }
            None => Ok(()),
        };
        if self.has_broker() {
            let channel = Arc::from(channel);
            self.up(Up::Frames {
                channel,
                frames,
                skip,
            })?;
        }
        local
    }

    /// Whether `channel` keeps history (`--history`).
    pub fn has_history(&self, channel: &str) -> bool {
        !self.cfg.history.is_empty() && self.cfg.history.retention(channel).is_some()
    }

    /// Whether `channel` keeps history in the broker, shared by every node (`--broker redis://`
    /// with `--history`): then the broker numbers its publications and answers its queries.
    pub fn shared_history(&self, channel: &str) -> bool {
        self.has_history(channel) && self.outbound.uplink().is_some_and(|u| u.shares_history())
    }

    /// The shard that owns `channel`'s history: a hash of the name over the shards, the same on
    /// every shard for the life of the process.
    pub fn owner(&self, channel: &str) -> u8 {
        self.outbound.pick(owner_hash(channel))
    }

    /// Owner side: number `p`, keep it in its channel's stream, encode its delivery once and
    /// send it to every shard with subscribers. Publications sent to the owner from any shard
    /// are applied in the order they arrive, so offsets follow each other without gaps.
    pub fn on_publication(&mut self, p: Publication, now: Instant) {
        let channel = p.channel();
        let Some(retention) = self.cfg.history.retention(channel) else {
            return;
        };
        let shards = self.registry.shards(channel);
        let registry = &self.registry;
        self.history.sweep(now, |c| !registry.shards(c).is_empty());
        let stream = self
            .history
            .stream(channel, retention, now, !shards.is_empty());
        let offset = stream.next_offset();
        let parts = Parts {
            data: p.data(),
            bare: p.bare(),
            from: p.from,
            user: p.user(),
        };
        let name = Arc::clone(stream.name());
        let d = Delivery::publication(&mut self.scratch, name, parts, p.skip, Some(offset));
        stream.push(now, Arc::clone(&d));
        // A full queue loses this publication for that shard's subscribers; they see the gap
        // in the offsets.
        let _ = self.on_shards(shards.iter(), || ShardMsg::Deliver(Arc::clone(&d)));
    }

    /// Subscribe `id` to `channel`, which keeps history, and ask its owner for the stream's
    /// position (and with `recover`, the publications missed since). The answer comes back as
    /// [`Answered::Subscribed`] for `reply`; meanwhile the subscription is live and its
    /// deliveries are held. Returns false (nothing deferred) when `id` was subscribed already.
    pub fn subscribe_at(
        &mut self,
        id: ConnId,
        session: &mut Session,
        channel: &str,
        recover: Option<Recover>,
        reply: ReplyTo,
    ) -> Result<bool, RouterError> {
        if self.channels.key(channel).is_some_and(|k| session.has(k)) {
            return Ok(false);
        }
        self.subscribe(id, session, channel)?;
        let Some(key) = self.channels.key(channel) else {
            return Ok(false);
        };
        let limit = self.cfg.max_recovery.max(MIN_HOLD);
        let tag = self.queries.start(Query::Subscribe {
            conn: id,
            key,
            reply,
            recover: recover.is_some(),
            merge: Merge::new(limit),
        });
        self.channels.hold(key, id, tag);
        let want = match recover {
            Some(r) => Want::Since {
                offset: r.offset,
                epoch: r.epoch,
            },
            None => Want::Position,
        };
        self.ask_owner(channel, tag, want);
        Ok(true)
    }

    /// Read the last `limit` publications of `channel` (all it keeps when `None`); the answer
    /// comes back as [`Answered::Read`] for `reply`.
    pub fn history(&mut self, channel: &str, limit: Option<usize>, reply: ReplyTo) {
        let channel: Arc<str> = Arc::from(channel);
        let tag = self.queries.start(Query::Read {
            reply,
            channel: Arc::clone(&channel),
        });
        self.ask_owner(&channel, tag, Want::Last(limit.unwrap_or(usize::MAX)));
    }

    fn ask_owner(&mut self, channel: &str, tag: u64, want: Want) {
        if self.shared_history(channel) {
            // After this shard's `Interest` for the channel on the same queue: the broker
            // thread subscribes the node before it reads.
            let _ = self.outbound.up(Up::HistoryQuery {
                channel: Arc::from(channel),
                from: self.shard(),
                tag,
                want,
                max_recovery: self.cfg.max_recovery,
            });
            return;
        }
        let query = ShardMsg::HistoryQuery {
            channel: Arc::from(channel),
            from: self.shard(),
            tag,
            want,
        };
        // After this shard's `Interest` for the channel on the same queue: the owner knows of
        // the new subscriber before it answers, so every later publication reaches it.
        self.outbound.control(self.owner(channel), query);
    }

    /// Owner side: answer a history query from shard `from`.
    pub fn on_history_query(
        &mut self,
        channel: &str,
        from: u8,
        tag: u64,
        want: Want,
        now: Instant,
    ) {
        let answer = match self.cfg.history.retention(channel) {
            Some(retention) => {
                let subscribed = !self.registry.shards(channel).is_empty();
                self.history
                    .stream(channel, retention, now, subscribed)
                    .answer(want, self.cfg.max_recovery, now)
            }
            None => Answer {
                epoch: Epoch::fresh(),
                top: 0,
                recovered: false,
                entries: Vec::new(),
            },
        };
        let answer = Box::new(answer);
        self.outbound
            .control(from, ShardMsg::HistoryAnswer { tag, answer });
    }

    /// Requester side: the owner answered query `tag`. A subscription's held deliveries are
    /// merged behind the replay. `None` when nobody waits any more (the subscriber left).
    pub fn on_history_answer(
        &mut self,
        tag: u64,
        answer: Answer<Arc<Delivery>>,
    ) -> Option<Answered> {
        let frames = |entries: Vec<(u64, Arc<Delivery>)>| -> Vec<(u64, Arc<[u8]>)> {
            entries
                .into_iter()
                .map(|(o, d)| (o, Arc::clone(&d.json)))
                .collect()
        };
        Some(match self.queries.take(tag)? {
            Query::Subscribe {
                conn,
                key,
                reply,
                recover,
                merge,
            } => {
                self.channels.release(key, conn);
                let replay = (recover && answer.recovered).then(|| frames(answer.entries));
                let merged = merge.finish(answer.top, replay);
                match (recover, merged.recovered) {
                    (true, true) => self.stats.recovered += 1,
                    (true, false) => self.stats.recovery_misses += 1,
                    (false, _) => {}
                }
                Answered::Subscribed {
                    reply,
                    epoch: answer.epoch,
                    offset: merged.position,
                    recovered: recover.then_some(merged.recovered),
                    frames: merged.items,
                }
            }
            Query::Read { reply, channel } => Answered::Read {
                reply,
                read: HistoryRead {
                    channel,
                    epoch: answer.epoch,
                    top: answer.top,
                    frames: frames(answer.entries).into_iter().map(|f| f.1).collect(),
                },
            },
        })
    }

    /// Requester side: query `tag` could not be answered (the broker's history store is down
    /// or slow). A waiting subscription is let go of; the subscriber is to be unsubscribed.
    /// `None` when nobody waits any more.
    pub fn on_history_failed(&mut self, tag: u64) -> Option<Answered> {
        Some(match self.queries.take(tag)? {
            Query::Subscribe {
                conn, key, reply, ..
            } => {
                self.channels.release(key, conn);
                let channel = self.channels.by_key(key).map(|c| Arc::clone(&c.name));
                Answered::Failed { reply, channel }
            }
            Query::Read { reply, .. } => Answered::Failed {
                reply,
                channel: None,
            },
        })
    }

    /// Announce a presence event (`join`/`leave`) to the JSON subscribers of `channel`.
    fn presence_event(&mut self, channel: &Arc<str>, join: bool, conn: ConnId, user: Option<&str>) {
        if self.has_broker() {
            // Lost (like any publication) while the broker is down.
            let _ = self.outbound.up(Up::PresenceEvent {
                channel: Arc::clone(channel),
                join,
                conn,
                user: user.map(Arc::from),
            });
        }
        let Some((name, shards)) = self.registry.lookup(channel) else {
            return;
        };
        let d = Delivery::presence(&mut self.scratch, name, join, conn, user);
        let _ = self.on_shards(shards.iter(), || ShardMsg::Deliver(Arc::clone(&d)));
    }

    /// Send `data` (JSON text) privately to `to`, as a `direct` delivery from `from`/`user`.
    /// The outcome goes to `reply` later (a `/ws` reply, or a [`Completion`] for others).
    pub fn send(
        &mut self,
        to: ConnId,
        data: &[u8],
        from: Option<ConnId>,
        user: Option<&str>,
        reply: Option<ReplyTo>,
    ) -> Result<(), RouterError> {
        let remote = to.node() != self.cfg.node;
        if (remote && !self.has_broker()) || !self.outbound.has_shard(to.shard()) && !remote {
            return Err(RouterError::UnknownConnection);
        }
        let frame = text_frame(&mut self.scratch, |out| {
            encode_direct(out, data, from, user)
        });
        if remote {
            return self.up(Up::Direct { to, frame, reply });
        }
        self.data(to.shard(), ShardMsg::Direct { to, frame, reply })
    }

    /// Close `conn` (on any shard) with `code` and `reason`. Whether it existed goes to `reply`
    /// later, like a [`Router::send`]'s outcome.
    pub fn disconnect(
        &mut self,
        conn: ConnId,
        code: CloseCode,
        reason: &str,
        reply: Option<ReplyTo>,
    ) -> Result<(), RouterError> {
        let remote = conn.node() != self.cfg.node;
        if (remote && !self.has_broker()) || !self.outbound.has_shard(conn.shard()) && !remote {
            return Err(RouterError::UnknownConnection);
        }
        if remote {
            let reason = Box::from(reason);
            return self.up(Up::Close {
                conn,
                code,
                reason,
                reply,
            });
        }
        let msg = ShardMsg::Close {
            conn,
            code,
            reason: Box::from(reason),
            reply,
        };
        self.data(conn.shard(), msg)
    }

    /// Deliver `data` (JSON text) as a `direct` message with `from` and `user` null to every
    /// connection of `user`, on every shard. `Busy` when a shard's queue was full.
    pub fn publish_user(&mut self, user: &str, data: &[u8]) -> Result<(), RouterError> {
        self.stats.publishes += 1;
        let frame = text_frame(&mut self.scratch, |out| {
            encode_direct(out, data, None, None)
        });
        let user: Arc<str> = Arc::from(user);
        let all: Vec<u8> = self.outbound.all().collect();
        let local = self.on_shards(all.into_iter(), || ShardMsg::DirectUser {
            user: Arc::clone(&user),
            frame: Arc::clone(&frame),
        });
        if self.has_broker() {
            self.up(Up::User { user, frame })?;
        }
        local
    }

    /// Close every connection of `user`, on every shard, with `code` and `reason`.
    pub fn disconnect_user(
        &mut self,
        user: &str,
        code: CloseCode,
        reason: &str,
    ) -> Result<(), RouterError> {
        let user: Arc<str> = Arc::from(user);
        let all: Vec<u8> = self.outbound.all().collect();
        let local = self.on_shards(all.into_iter(), || ShardMsg::CloseUser {
            user: Arc::clone(&user),
            code,
            reason: Box::from(reason),
        });
        if self.has_broker() {
            let reason = Box::from(reason);
            self.up(Up::CloseUser { user, code, reason })?;
        }
        local
    }

    /// List the members of `channel` across shards; the answer goes to `reply`. Every shard with
    /// subscribers is asked, this one included (so the answer always comes back the same way).
    pub fn presence(&mut self, channel: &str, reply: ReplyTo) {
        let me = self.shard();
        let mut shards = self.registry.shards(channel);
        shards.insert(me);
        // With a reachable broker, the other nodes' members are one more part of the answer.
        let nodes = self.outbound.uplink().is_some_and(|u| u.connected());
        let parts = shards.iter().count() + usize::from(nodes);
        let tag = self.gathers.start_presence(reply, parts);
        let channel: Arc<str> = Arc::from(channel);
        if nodes {
            let _ = self.outbound.up(Up::PresenceQuery {
                channel: Arc::clone(&channel),
                from: me,
                tag,
            });
        }
        for s in shards.iter() {
            let query = ShardMsg::PresenceQuery {
                channel: Arc::clone(&channel),
                from: me,
                tag,
            };
            self.outbound.control(s, query);
        }
    }

    /// List every channel with subscribers and their counts over all shards (and all nodes,
    /// with a broker); the answer comes back as [`Completion::Channels`] for `reply`.
    pub fn channel_list(&mut self, reply: ReplyTo) {
        let me = self.shard();
        let all: Vec<u8> = self.outbound.all().collect();
        // With a reachable broker, the other nodes' channels are one more part of the answer.
        let nodes = self.outbound.uplink().is_some_and(|u| u.connected());
        let tag = self
            .gathers
            .start_channels(reply, all.len() + usize::from(nodes));
        if nodes {
            let _ = self.outbound.up(Up::ChannelQuery { from: me, tag });
        }
        for s in all {
            self.outbound
                .control(s, ShardMsg::ChannelQuery { from: me, tag });
        }
    }

    /// Describe one connection (the shard in its id is asked) or every connection of a user
    /// (every shard is asked); the answer comes back as [`Completion::Conns`] for `reply`.
    pub fn lookup_conns(&mut self, lookup: Lookup, reply: ReplyTo) {
        let me = self.shard();
        let shards: Vec<u8> = match &lookup {
            Lookup::Conn(id) if self.outbound.has_shard(id.shard()) => vec![id.shard()],
            Lookup::Conn(_) => Vec::new(),
            Lookup::User(_) => self.outbound.all().collect(),
        };
        if shards.is_empty() {
            self.completions.push(Completion::Conns {
                reply,
                lookup,
                conns: Vec::new(),
            });
            return;
        }
        let tag = self
            .gathers
            .start_conns(reply, lookup.clone(), shards.len());
        for s in shards {
            let query = ShardMsg::ConnQuery {
                lookup: lookup.clone(),
                from: me,
                tag,
            };
            self.outbound.control(s, query);
        }
    }

    /// One shard's part of connection lookup `tag`; once complete, its answer is queued in
    /// [`Router::completions`].
    pub fn on_conn_part(&mut self, tag: u64, conns: Vec<ConnInfo>) {
        if let Some(ConnGather {
            reply,
            lookup,
            conns,
            ..
        }) = self.gathers.on_conn_part(tag, conns)
        {
            self.completions.push(Completion::Conns {
                reply,
                lookup,
                conns,
            });
        }
    }

    /// Connection `id` as a lookup describes it, from its session.
    pub fn describe(&self, id: ConnId, session: &Session) -> ConnInfo {
        ConnInfo {
            conn: id,
            user: self.user(session).cloned(),
            channels: session
                .channels
                .iter()
                .filter_map(|&k| self.channels.by_key(k).map(|c| Arc::clone(&c.name)))
                .collect(),
        }
    }

    /// One shard's part of presence gather `tag`; the finished gather once every shard answered.
    pub fn on_presence_part(&mut self, tag: u64, members: Vec<Member>) -> Option<Gather> {
        self.gathers.on_presence_part(tag, members)
    }

    /// One shard's part of channel-list gather `tag`; once complete, its answer is queued in
    /// [`Router::completions`].
    pub fn on_channel_part(&mut self, tag: u64, counts: Vec<(Arc<str>, u64)>) {
        if let Some(ChannelGather { reply, counts, .. }) = self.gathers.on_channel_part(tag, counts)
        {
            self.completions.push(Completion::Channels {
                reply,
                counts: counts.into_iter().collect(),
            });
        }
    }

    /// This shard's channels with their local subscriber counts (its part of a channel list).
    pub fn local_counts(&self) -> Vec<(Arc<str>, u64)> {
        self.channels
            .iter()
            .map(|c| (Arc::clone(&c.name), c.len() as u64))
            .collect()
    }

    /// Send `msg(shard)` as data to each of `shards`. `Busy` when one of them was full.
    fn on_shards(
        &mut self,
        shards: impl Iterator<Item = u8>,
        msg: impl Fn() -> ShardMsg,
    ) -> Result<(), RouterError> {
        let mut busy = false;
        for s in shards {
            busy |= self.outbound.data(s, msg()).is_err();
        }
        if busy {
            self.stats.busy += 1;
            return Err(RouterError::Busy);
        }
        Ok(())
    }

    fn data(&mut self, to: u8, msg: ShardMsg) -> Result<(), RouterError> {
        self.outbound.data(to, msg).map_err(|_| {
            self.stats.busy += 1;
            RouterError::Busy
        })
    }

    /// Set the user of connection `id` (from `?user=` or a token's subject).
    pub fn set_user(&mut self, id: ConnId, session: &mut Session, user: Arc<str>) {
        self.users.set(id, session, user);
    }

    /// The user of the connection with `session`, if it has one.
    pub fn user(&self, session: &Session) -> Option<&Arc<str>> {
        self.users.name(session.user?)
    }

    /// Subscribe `id` (with `session`) to `channel`. Idempotent.
    pub fn subscribe(
        &mut self,
        id: ConnId,
        session: &mut Session,
        channel: &str,
    ) -> Result<(), RouterError> {
        if self.channels.key(channel).is_some_and(|k| session.has(k)) {
            return Ok(());
        }
        if session.channels.len() >= self.cfg.max_channels_per_conn {
            return Err(RouterError::TooManyChannels);
        }
        let kind = session.kind.unwrap_or(Kind::Json);
        let s = self.channels.subscribe(channel, id, kind);
        session.channels.push(s.key);
        self.member_up(&s.name, id, session, true);
        if s.first {
            self.announce(&s.name, true);
        }
        if kind == Kind::Json {
            let user = self.user(session).cloned();
            self.presence_event(&s.name, true, id, user.as_deref());
        }
        Ok(())
    }

    /// Unsubscribe `id` from `channel`.
    pub fn unsubscribe(
        &mut self,
        id: ConnId,
        session: &mut Session,
        channel: &str,
    ) -> Result<(), RouterError> {
        let not = RouterError::NotSubscribed;
        let key = self.channels.key(channel).ok_or(not)?;
        let at = session.channels.iter().position(|&k| k == key).ok_or(not)?;
        session.channels.swap_remove(at).ok_or(not)?;
        self.leave(id, session, key);
        Ok(())
    }

    /// A connection is closing or gone: leave every channel it was in and forget its user.
    /// Idempotent (the session is marked as no longer routed).
    pub fn on_disconnect(&mut self, id: ConnId, session: &mut Session) {
        let keys = std::mem::take(&mut session.channels);
        for &key in keys.as_slice() {
            self.leave(id, session, key);
        }
        self.users.forget(id, session);
        session.kind = None;
    }

    fn leave(&mut self, id: ConnId, session: &Session, key: ChanKey) {
        if let Some(tag) = self.channels.release(key, id) {
            self.queries.take(tag);
        }
        if let Some((name, gone)) = self.channels.unsubscribe(key, id) {
            self.member_up(&name, id, session, false);
            if session.kind == Some(Kind::Json) {
                let user = self.user(session).cloned();
                self.presence_event(&name, false, id, user.as_deref());
            }
            if gone {
                self.announce(&name, false);
            }
        }
    }

    /// Tell the broker thread (if any) that `id` joined or left `channel`, for presence across
    /// nodes.
    fn member_up(&mut self, channel: &Arc<str>, id: ConnId, session: &Session, on: bool) {
        if self.has_broker() {
            let _ = self.outbound.up(Up::Member {
                channel: Arc::clone(channel),
                conn: id,
                user: self.user(session).cloned(),
                on,
            });
        }
    }

    /// Tell every shard (this one included) that this shard gained or lost a channel.
    fn announce(&mut self, channel: &Arc<str>, on: bool) {
        let me = self.shard();
        self.registry.set(channel, me, on);
        let others: Vec<u8> = self.outbound.others().collect();
        for s in others {
            let msg = ShardMsg::Interest {
                channel: Arc::clone(channel),
                shard: me,
                on,
            };
            self.outbound.control(s, msg);
        }
        if self.has_broker() {
            let channel = Arc::clone(channel);
            let _ = self.outbound.up(Up::Interest {
                channel,
                shard: me,
                on,
            });
        }
    }
}

/// The hash that picks a channel's history owner among a node's shards: FNV-1a, stable across
/// processes and runs, unlike the std hasher's random keys.
pub fn owner_hash(channel: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in channel.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests;
