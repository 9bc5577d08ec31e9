//! `Router`: channels, fan-out and private messages for one shard, and the messages that tie the
//! shards together. Each shard owns one; shards share only the [`inbox::Mesh`] of lock-free
//! queues.
//!
//! Entry points (called on the shard's thread, for `/ws` requests and for the backend API):
//! - [`Router::publish`]: deliver JSON `data` to every subscriber of a channel, on every shard
//!   that has one (found in the [`registry::Registry`]); the frame is encoded once.
//! - [`Router::send`]: deliver JSON `data` privately to one [`ConnId`] on any shard; the outcome
//!   (delivered, or `unknown_connection`) comes back to the requester.
//! - [`Router::presence`]: list a channel's members across shards (scatter/gather).
//! - [`Router::disconnect`]: close one connection with a code.
//! - [`Router::channel_counts`]: this shard's channels with local subscriber counts.
//!
//! Effects on this shard's own connections are queued as [`Action`]s that the shard applies
//! after the current input (it owns the connections); answers that arrive later for
//! requesters that are not `/ws` connections (the API) are left in [`Router::completions`].

pub mod channels;
pub mod fanout;
pub mod inbox;
pub mod registry;
pub mod session;
mod ws;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;

use crate::auth::upgrade::ClientAuth;
use crate::auth::Claims;

use crate::conn::ConnId;
use crate::protocol::reply::{self, Member};
use crate::protocol::{ErrorCode, Parser, ProtocolError};

use self::channels::{ChannelTable, Kind};
use self::fanout::{text_frame, Delivery};
use self::inbox::{Mesh, ReplyTo, ShardMsg};
use self::registry::{Registry, ShardSet};
use self::session::Session;

pub use self::ws::{busy, unknown_connection, Dispatch};

/// Router limits and sizes.
#[derive(Clone, Copy, Debug)]
pub struct RouterConfig {
    /// Channels one connection may subscribe to.
    pub max_channels_per_conn: usize,
    /// Data messages kept waiting for full queues of other shards before publishes are refused
    /// (`busy`): `--max-shard-backlog`.
    pub max_backlog: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            max_channels_per_conn: 128,
            max_backlog: MAX_BACKLOG,
        }
    }
}

/// A local effect for the shard to apply to its connections.
#[derive(Debug)]
pub enum Action {
    /// Fan a delivery out to this shard's subscribers of its channel.
    Deliver(Arc<Delivery>),
    /// Deliver a frame to one local connection and report the outcome to `reply`.
    Direct {
        /// The target.
        to: ConnId,
        /// The frame.
        frame: Arc<[u8]>,
        /// Who waits for the outcome.
        reply: Option<ReplyTo>,
    },
    /// Start a presence gather: local members now, other shards by message.
    Presence {
        /// The channel.
        channel: Arc<str>,
        /// The requester.
        reply: ReplyTo,
    },
    /// Deliver a frame to every local connection of a user.
    DirectUser {
        /// The user.
        user: Arc<str>,
        /// The frame.
        frame: Arc<[u8]>,
    },
    /// Close every local connection of a user.
    CloseUser {
        /// The user.
        user: Arc<str>,
        /// The close code.
        code: u16,
        /// The reason.
        reason: Box<str>,
    },
    /// Start a channel-list gather: local counts now, other shards by message.
    ChannelList {
        /// The requester.
        reply: ReplyTo,
    },
    /// Close a local connection.
    Close {
        /// The target.
        conn: ConnId,
        /// The close code.
        code: u16,
        /// The reason.
        reason: Box<str>,
        /// Who waits to learn whether it existed.
        reply: Option<ReplyTo>,
    },
}

/// An answer for a requester that is not a `/ws` connection (an API request).
#[derive(Debug)]
pub enum Completion {
    /// The outcome of [`Router::send`].
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
    /// The outcome of [`Router::channel_list`]: every channel with subscribers on any shard.
    Channels {
        /// The requester.
        reply: ReplyTo,
        /// Channels and subscriber counts summed over shards (in no particular order).
        counts: Vec<(Arc<str>, u64)>,
    },
}

/// A channel list waiting for other shards.
#[derive(Debug)]
pub struct ChannelGather {
    /// The requester.
    pub reply: ReplyTo,
    /// Shards still to answer.
    pub waiting: usize,
    /// Counts so far.
    pub counts: HashMap<Arc<str>, u64>,
}

/// A presence query waiting for other shards.
#[derive(Debug)]
pub struct Gather {
    /// The requester.
    pub reply: ReplyTo,
    /// Shards still to answer.
    pub waiting: usize,
    /// Members so far.
    pub members: Vec<Member>,
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
    /// Control messages dropped because another shard stopped draining its queue.
    pub control_dropped: u64,
}

/// One shard's router. See the module doc.
pub struct Router {
    shard: u8,
    mesh: Arc<Mesh>,
    cfg: RouterConfig,
    /// The shard's channels.
    pub channels: ChannelTable,
    /// Which shards have subscribers of which channel.
    pub registry: Registry,
    /// Local effects for the shard to apply.
    pub actions: Vec<Action>,
    /// Answers for API requesters.
    pub completions: Vec<Completion>,
    /// Counters.
    pub stats: RouterStats,
    pub(crate) parser: Option<Parser>,
    pub(crate) scratch: Vec<u8>,
    pub(crate) text: Vec<u8>,
    pub(crate) id_text: Vec<u8>,
    wake: ShardSet,
    /// Control messages (interest, answers) that found a full queue: retried every turn, in
    /// order, so they are late but never lost.
    backlog: Vec<VecDeque<ShardMsg>>,
    backlog_len: usize,
    gathers: HashMap<u64, Gather>,
    channel_gathers: HashMap<u64, ChannelGather>,
    next_tag: u64,
    /// This shard's connections by user (for publishes and disconnects by user).
    users: HashMap<Arc<str>, Vec<ConnId>>,
    /// Only this shard exists on the mesh (no other shard to tell).
    solo: bool,
    /// How client connections authenticate.
    pub(crate) auth: ClientAuth,
    /// Token expiries of this shard's connections (seconds since the epoch), earliest first;
    /// an entry is stale when its connection refreshed or closed since.
    expiries: BinaryHeap<Reverse<(u64, ConnId)>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("shard", &self.shard)
            .finish()
    }
}

/// Messages kept for retry when other shards' queues are full; past it data is refused (`busy`).
const MAX_BACKLOG: usize = 1 << 16;
/// Past this, even control messages are dropped (counted): the destination has stalled.
const MAX_CONTROL_BACKLOG: usize = 4 * MAX_BACKLOG;

impl Router {
    /// The router of shard `shard` on `mesh`.
    pub fn new(shard: u8, mesh: Arc<Mesh>, cfg: RouterConfig) -> Router {
        let shards = mesh.shards();
        Router {
            shard,
            mesh,
            cfg,
            channels: ChannelTable::default(),
            registry: Registry::default(),
            actions: Vec::new(),
            completions: Vec::new(),
            stats: RouterStats::default(),
            parser: Some(Parser::default()),
            scratch: Vec::new(),
            text: Vec::new(),
            id_text: Vec::new(),
            wake: ShardSet::default(),
            backlog: (0..shards).map(|_| VecDeque::new()).collect(),
            backlog_len: 0,
            gathers: HashMap::new(),
            channel_gathers: HashMap::new(),
            next_tag: 0,
            users: HashMap::new(),
            auth: ClientAuth::default(),
            expiries: BinaryHeap::new(),
            solo: false,
        }
    }

    /// A router for a process with a single shard (no wake-ups needed).
    pub fn single(shard: u8) -> Router {
        let wakers = vec![None; usize::from(shard) + 1];
        let mut r = Router::new(
            shard,
            Arc::new(Mesh::new(1024, wakers)),
            RouterConfig::default(),
        );
        r.solo = true;
        r
    }

    /// Authenticate client connections with `auth` (default: anonymous clients only).
    pub fn with_auth(mut self, auth: ClientAuth) -> Router {
        self.auth = auth;
        self
    }

    /// Give connection `id` the verified `claims`: its user, its rights, its expiry.
    pub fn set_claims(&mut self, id: ConnId, session: &mut Session, claims: Arc<Claims>) {
        if session.user.as_deref() != Some(&*claims.sub) {
            self.set_user(id, session, Arc::from(&*claims.sub));
        }
        self.expiries.push(Reverse((claims.exp, id)));
        session.grants = Some(claims);
    }

    /// Connections whose token expiry (as recorded) is at or before `now_secs`, in expiry
    /// order; the caller checks each against the session (a refresh makes an entry stale).
    pub fn take_expired(&mut self, now_secs: u64, out: &mut Vec<(u64, ConnId)>) {
        while let Some(&Reverse((exp, id))) = self.expiries.peek() {
            if exp > now_secs {
                break;
            }
            self.expiries.pop();
            out.push((exp, id));
        }
    }

    /// The earliest recorded token expiry (seconds since the epoch).
    pub fn next_expiry(&self) -> Option<u64> {
        self.expiries.peek().map(|Reverse((exp, _))| *exp)
    }

    /// This router's shard.
    pub fn shard(&self) -> u8 {
        self.shard
    }

    /// The mesh (queue depths for metrics).
    pub fn mesh(&self) -> &Arc<Mesh> {
        &self.mesh
    }

    /// The limits.
    pub fn config(&self) -> &RouterConfig {
        &self.cfg
    }

    /// Publish `data` (JSON text) to `channel` (a valid name). `bare` is what `/raw` and
    /// `/broadcast` subscribers get (the string's text when `data` is a JSON string, else the
    /// JSON text); `from`/`user` name the publisher (`None` for the API); `skip` is not
    /// delivered to. Returns `Busy` when a shard's queue was full (that shard misses it).
    pub fn publish(
        &mut self,
        channel: &str,
        data: &[u8],
        bare: &[u8],
        from: Option<ConnId>,
        user: Option<&str>,
        skip: Option<ConnId>,
    ) -> Result<(), ErrorCode> {
        self.stats.publishes += 1;
        let Some((name, shards)) = self.registry.lookup(channel) else {
            return Ok(());
        };
        let json = text_frame(&mut self.scratch, |out| {
            reply::message(out, channel, data, from, user)
        });
        let bare = Some(text_frame(&mut self.scratch, |out| {
            out.extend_from_slice(bare)
        }));
        let d = Arc::new(Delivery {
            channel: name,
            json,
            bare,
            skip,
        });
        self.fan_out(d, shards)
    }

    /// Announce a presence event (`join`/`leave`) to the JSON subscribers of `channel`.
    pub fn presence_event(
        &mut self,
        channel: &Arc<str>,
        join: bool,
        conn: ConnId,
        user: Option<&str>,
    ) {
        let Some((name, shards)) = self.registry.lookup(channel) else {
            return;
        };
        let json = text_frame(&mut self.scratch, |out| {
            reply::presence_event(out, join, channel, conn, user)
        });
        let d = Arc::new(Delivery {
            channel: name,
            json,
            bare: None,
            skip: Some(conn),
        });
        let _ = self.fan_out(d, shards);
    }

    fn fan_out(&mut self, d: Arc<Delivery>, shards: ShardSet) -> Result<(), ErrorCode> {
        let mut busy = false;
        for s in shards.iter() {
            if s == self.shard {
                self.actions.push(Action::Deliver(Arc::clone(&d)));
            } else if self.enqueue(s, ShardMsg::Deliver(Arc::clone(&d))).is_err() {
                busy = true;
            }
        }
        if busy {
            self.stats.busy += 1;
            return Err(ErrorCode::Busy);
        }
        Ok(())
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
    ) -> Result<(), ErrorCode> {
        if usize::from(to.shard()) >= self.mesh.shards() {
            return Err(ErrorCode::UnknownConnection);
        }
        let frame = text_frame(&mut self.scratch, |out| {
            reply::direct(out, data, from, user)
        });
        if to.shard() == self.shard {
            self.actions.push(Action::Direct { to, frame, reply });
            return Ok(());
        }
        self.enqueue(to.shard(), ShardMsg::Direct { to, frame, reply })
            .inspect_err(|_| self.stats.busy += 1)
    }

    /// List the members of `channel` across shards; the answer goes to `reply`.
    pub fn presence(&mut self, channel: &str, reply: ReplyTo) {
        self.actions.push(Action::Presence {
            channel: Arc::from(channel),
            reply,
        });
    }

    /// Close `conn` (on any shard) with `code` and `reason`. Whether it existed goes to `reply`
    /// later, like a [`Router::send`]'s outcome.
    pub fn disconnect(
        &mut self,
        conn: ConnId,
        code: u16,
        reason: &str,
        reply: Option<ReplyTo>,
    ) -> Result<(), ErrorCode> {
        if usize::from(conn.shard()) >= self.mesh.shards() {
            return Err(ErrorCode::UnknownConnection);
        }
        let reason: Box<str> = Box::from(reason);
        if conn.shard() == self.shard {
            self.actions.push(Action::Close {
                conn,
                code,
                reason,
                reply,
            });
            return Ok(());
        }
        let msg = ShardMsg::Close {
            conn,
            code,
            reason,
            reply,
        };
        self.enqueue(conn.shard(), msg)
    }

    /// This shard's channels and their local subscriber counts (sum over shards for totals).
    pub fn channel_counts(&self) -> impl Iterator<Item = (&str, usize)> {
        self.channels.iter().map(|c| (&*c.name, c.len()))
    }

    /// Deliver `data` (JSON text) as a `direct` message with `from` and `user` null to every
    /// connection of `user`, on every shard. `Busy` when a shard's queue was full.
    pub fn publish_user(&mut self, user: &str, data: &[u8]) -> Result<(), ErrorCode> {
        self.stats.publishes += 1;
        let frame = text_frame(&mut self.scratch, |out| {
            reply::direct(out, data, None, None)
        });
        let user: Arc<str> = Arc::from(user);
        self.on_every_shard(
            || Action::DirectUser {
                user: Arc::clone(&user),
                frame: Arc::clone(&frame),
            },
            || ShardMsg::DirectUser {
                user: Arc::clone(&user),
                frame: Arc::clone(&frame),
            },
        )
    }

    /// Close every connection of `user`, on every shard, with `code` and `reason`.
    pub fn disconnect_user(
        &mut self,
        user: &str,
        code: u16,
        reason: &str,
    ) -> Result<(), ErrorCode> {
        let user: Arc<str> = Arc::from(user);
        self.on_every_shard(
            || Action::CloseUser {
                user: Arc::clone(&user),
                code,
                reason: Box::from(reason),
            },
            || ShardMsg::CloseUser {
                user: Arc::clone(&user),
                code,
                reason: Box::from(reason),
            },
        )
    }

    /// List every channel with subscribers and their counts over all shards; the answer comes
    /// back as [`Completion::Channels`] for `reply`.
    pub fn channel_list(&mut self, reply: ReplyTo) {
        self.actions.push(Action::ChannelList { reply });
    }

    fn on_every_shard(
        &mut self,
        local: impl Fn() -> Action,
        remote: impl Fn() -> ShardMsg,
    ) -> Result<(), ErrorCode> {
        let mut busy = false;
        for s in 0..self.shard_count() {
            if s == self.shard {
                self.actions.push(local());
            } else if self.enqueue(s, remote()).is_err() {
                busy = true;
            }
        }
        if busy {
            self.stats.busy += 1;
            return Err(ErrorCode::Busy);
        }
        Ok(())
    }

    /// Shards on the mesh (just this one for a single-shard router).
    fn shard_count(&self) -> u8 {
        if self.solo {
            self.shard + 1
        } else {
            self.mesh.shards() as u8
        }
    }

    /// Set the user of connection `id` (from `?user=` or a token's subject).
    pub fn set_user(&mut self, id: ConnId, session: &mut Session, user: Arc<str>) {
        self.forget_user(id, session);
        self.users.entry(Arc::clone(&user)).or_default().push(id);
        session.user = Some(user);
    }

    fn forget_user(&mut self, id: ConnId, session: &Session) {
        let Some(user) = &session.user else {
            return;
        };
        if let Some(ids) = self.users.get_mut(user) {
            ids.retain(|&c| c != id);
            if ids.is_empty() {
                self.users.remove(user);
            }
        }
    }

    /// This shard's connections of `user`.
    pub fn user_conns(&self, user: &str) -> &[ConnId] {
        self.users.get(user).map_or(&[], Vec::as_slice)
    }

    /// Start a channel-list gather; `local` are this shard's counts. Returns the finished
    /// gather when no other shard must answer.
    pub(crate) fn start_channel_gather(
        &mut self,
        reply: ReplyTo,
        local: Vec<(Arc<str>, u64)>,
    ) -> Option<ChannelGather> {
        let mut g = ChannelGather {
            reply,
            waiting: 0,
            counts: local.into_iter().collect(),
        };
        let me = self.shard;
        let others: Vec<u8> = (0..self.shard_count()).filter(|&s| s != me).collect();
        let Some(tag) = self.ask_shards(&others, |tag| ShardMsg::ChannelQuery { from: me, tag })
        else {
            return Some(g);
        };
        g.waiting = others.len();
        self.channel_gathers.insert(tag, g);
        None
    }

    /// Add one shard's counts to gather `tag`; returns the gather once complete.
    pub(crate) fn on_channel_part(
        &mut self,
        tag: u64,
        counts: Vec<(Arc<str>, u64)>,
    ) -> Option<ChannelGather> {
        let g = self.channel_gathers.get_mut(&tag)?;
        for (name, n) in counts {
            *g.counts.entry(name).or_default() += n;
        }
        g.waiting = g.waiting.saturating_sub(1);
        if g.waiting == 0 {
            return self.channel_gathers.remove(&tag);
        }
        None
    }

    /// Subscribe `id` (with `session`) to `channel`. Idempotent.
    pub fn subscribe(
        &mut self,
        id: ConnId,
        session: &mut Session,
        channel: &str,
    ) -> Result<(), ProtocolError> {
        if self.channels.key(channel).is_some_and(|k| session.has(k)) {
            return Ok(());
        }
        if session.channels.len() >= self.cfg.max_channels_per_conn {
            return Err(ProtocolError::new(
                ErrorCode::TooManyChannels,
                "subscribed to as many channels as allowed (--max-channels-per-conn)",
            ));
        }
        let kind = session.kind.unwrap_or(Kind::Json);
        let s = self.channels.subscribe(channel, id, kind);
        session.channels.push(s.key);
        if s.first {
            self.announce(&s.name, true);
        }
        if kind == Kind::Json {
            self.presence_event(&s.name, true, id, session.user.as_deref());
        }
        Ok(())
    }

    /// Unsubscribe `id` from `channel`.
    pub fn unsubscribe(
        &mut self,
        id: ConnId,
        session: &mut Session,
        channel: &str,
    ) -> Result<(), ProtocolError> {
        let not = ProtocolError::new(ErrorCode::NotSubscribed, "not subscribed to this channel");
        let key = self.channels.key(channel).ok_or(not)?;
        let at = session.channels.iter().position(|&k| k == key).ok_or(not)?;
        session.channels.swap_remove(at);
        self.leave(id, session, key);
        Ok(())
    }

    /// A connection is closing or gone: leave every channel it was in and forget its user.
    /// Idempotent (the session is marked as no longer routed).
    pub fn on_disconnect(&mut self, id: ConnId, session: &mut Session) {
        for key in std::mem::take(&mut session.channels) {
            self.leave(id, session, key);
        }
        self.forget_user(id, session);
        session.kind = None;
    }

    fn leave(&mut self, id: ConnId, session: &Session, key: channels::ChanKey) {
        if let Some((name, gone)) = self.channels.unsubscribe(key, id) {
            if session.kind == Some(Kind::Json) {
                self.presence_event(&name, false, id, session.user.as_deref());
            }
            if gone {
                self.announce(&name, false);
            }
        }
    }

    /// Tell every shard (this one included) that this shard gained or lost a channel.
    fn announce(&mut self, channel: &Arc<str>, on: bool) {
        self.registry.set(channel, self.shard, on);
        if self.solo {
            return;
        }
        for s in 0..self.mesh.shards() as u8 {
            if s != self.shard {
                self.control(
                    s,
                    ShardMsg::Interest {
                        channel: Arc::clone(channel),
                        shard: self.shard,
                        on,
                    },
                );
            }
        }
    }

    /// Queue a data message for shard `to`: into its queue, or behind what already waits for it
    /// in the backlog (order per destination is kept). `Busy` once the backlog is full.
    fn enqueue(&mut self, to: u8, msg: ShardMsg) -> Result<(), ErrorCode> {
        if self.backlog_len >= self.cfg.max_backlog {
            return Err(ErrorCode::Busy);
        }
        self.send_or_wait(to, msg);
        Ok(())
    }

    /// Queue a control message (interest, answers), which must not be lost: like data, but
    /// accepted past the data limit (up to a hard cap, then dropped and counted).
    pub(crate) fn control(&mut self, to: u8, msg: ShardMsg) {
        if self.backlog_len >= MAX_CONTROL_BACKLOG {
            self.stats.control_dropped += 1;
            return;
        }
        self.send_or_wait(to, msg);
    }

    fn send_or_wait(&mut self, to: u8, msg: ShardMsg) {
        let Some(waiting) = self.backlog.get_mut(usize::from(to)) else {
            return;
        };
        if !waiting.is_empty() {
            waiting.push_back(msg);
            self.backlog_len += 1;
            return;
        }
        match self.mesh.push(to, msg) {
            Ok(()) => self.wake.insert(to),
            Err(msg) => {
                waiting.push_back(msg);
                self.backlog_len += 1;
            }
        }
    }

    /// Start a gather of `reply`'s presence query over the other shards with subscribers;
    /// `local` are this shard's members. Returns the finished gather when no shard must answer.
    pub(crate) fn start_gather(
        &mut self,
        channel: &Arc<str>,
        reply: ReplyTo,
        local: Vec<Member>,
    ) -> Option<Gather> {
        let others: Vec<u8> = self
            .registry
            .shards(channel)
            .iter()
            .filter(|&s| s != self.shard)
            .collect();
        let mut g = Gather {
            reply,
            waiting: 0,
            members: local,
        };
        let me = self.shard;
        let Some(tag) = self.ask_shards(&others, |tag| ShardMsg::PresenceQuery {
            channel: Arc::clone(channel),
            from: me,
            tag,
        }) else {
            return Some(g);
        };
        g.waiting = others.len();
        self.gathers.insert(tag, g);
        None
    }

    /// Send `query(tag)` to each of `shards` under a fresh gather tag and return the tag; `None`
    /// when there is no shard to ask.
    fn ask_shards(&mut self, shards: &[u8], query: impl Fn(u64) -> ShardMsg) -> Option<u64> {
        if shards.is_empty() {
            return None;
        }
        self.next_tag += 1;
        let tag = self.next_tag;
        for &s in shards {
            self.control(s, query(tag));
        }
        Some(tag)
    }

    /// Add one shard's part to gather `tag`; returns the gather once complete.
    pub(crate) fn on_presence_part(&mut self, tag: u64, members: Vec<Member>) -> Option<Gather> {
        let g = self.gathers.get_mut(&tag)?;
        g.members.extend(members);
        g.waiting = g.waiting.saturating_sub(1);
        if g.waiting == 0 {
            return self.gathers.remove(&tag);
        }
        None
    }

    /// Retry the backlog and wake every shard that was sent something this turn.
    pub fn flush(&mut self) {
        if self.backlog_len > 0 {
            for (to, waiting) in self.backlog.iter_mut().enumerate() {
                while let Some(msg) = waiting.pop_front() {
                    match self.mesh.push(to as u8, msg) {
                        Ok(()) => {
                            self.backlog_len -= 1;
                            self.wake.insert(to as u8);
                        }
                        Err(msg) => {
                            waiting.push_front(msg);
                            break;
                        }
                    }
                }
            }
        }
        let wake = std::mem::take(&mut self.wake);
        for s in wake.iter() {
            self.mesh.wake(s);
        }
    }

    /// True when control messages wait for room in another shard's queue.
    pub fn has_backlog(&self) -> bool {
        self.backlog_len > 0
    }

    /// Messages waiting for room in other shards' queues.
    pub fn backlog_len(&self) -> usize {
        self.backlog_len
    }

    /// The next message from other shards.
    pub fn pop(&self) -> Option<ShardMsg> {
        self.mesh.pop(self.shard)
    }
}

#[cfg(test)]
mod tests;
