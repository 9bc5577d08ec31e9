//! `Node`: what the broker thread knows and does regardless of the broker it speaks to. It keeps
//! the node-wide refcount of channels (which shards have subscribers: a broker subscription
//! starts when the first shard gains one and ends when the last loses its last), turns what the
//! shards send up into broker publishes, and turns broker messages into shard messages, pushed
//! into the shards' queues exactly as another shard would push them.
//!
//! It never blocks: a full shard queue drops the message for that shard (counted in
//! `broker_dropped_total`). Requests waiting for another node's answer (a private message's
//! outcome) are answered "unknown connection" after [`ANSWER_TIMEOUT`].

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use frame_simd::CloseCode;
use tracing::{debug, error};

use crate::conn::ConnId;
use crate::router::fanout::{Delivery, Parts};
use crate::router::history::HistoryPolicy;
use crate::router::inbox::{Mesh, Publication, ReplyTo, ShardMsg};
use crate::router::owner_hash;
use crate::router::registry::ShardSet;
use crate::router::uplink::{Up, Uplink};
use crate::router::Member;

use super::history::{Store, ToShard};
use super::resp::Value;
use super::wire::{self, Msg};

/// How long a request waits for another node's answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);
/// How often a node says it is alive on the control channel.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// A node not heard from for this long is gone from the node list.
pub const NODE_TTL: Duration = Duration::from_secs(3);
/// A node's presence hash of a channel expires this long after the node last refreshed it
/// (a crashed node's members vanish from answers with the node, after [`NODE_TTL`], and from
/// the broker after this).
pub const PRESENCE_TTL: Duration = Duration::from_secs(15);
/// How often a node refreshes the expiry of its presence hashes.
pub const PRESENCE_REFRESH: Duration = Duration::from_secs(5);

/// The broker channel every node listens to (users, heartbeats).
pub const ALL: &str = "gw:all";

/// The broker channel of a gateway channel.
pub fn channel_topic(channel: &str) -> String {
    format!("gw:c:{channel}")
}

/// The broker channel of a node (private messages and answers for it).
pub fn node_topic(node: u16) -> String {
    format!("gw:n:{node}")
}

/// The key of node `node`'s presence hash of `channel` (connection id -> user).
pub fn presence_key(channel: &str, node: u16) -> String {
    format!("gw:p:{channel}:{node}")
}

/// What the node asks of the broker connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// Start receiving a broker channel.
    Subscribe(String),
    /// Stop receiving a broker channel.
    Unsubscribe(String),
    /// A command on the command connection; its answer goes to [`Node::on_answer`] (or
    /// [`Node::on_history_reply`]) with this query id (`None`: only counted).
    Command(Vec<Vec<u8>>, Option<u64>),
    /// `PING id` on the subscriber connection: its answer ([`Node::on_pong`]) comes after
    /// every message the broker sent that connection before it, and after every subscription
    /// asked before it is in force.
    Barrier(u64),
}

impl Out {
    fn publish(topic: &str, payload: Vec<u8>) -> Out {
        Out::Command(
            vec![b"PUBLISH".to_vec(), topic.as_bytes().to_vec(), payload],
            None,
        )
    }

    fn command(args: &[&[u8]]) -> Out {
        Out::Command(args.iter().map(|a| a.to_vec()).collect(), None)
    }
}

/// A presence query waiting for other nodes' hashes (or, asked by message, their answers).
#[derive(Debug)]
struct PresenceWait {
    from: u8,
    tag: u64,
    waiting: usize,
    members: Vec<Member>,
    /// Asked by message: the nodes yet to answer in full, and when to stop waiting for them.
    asked: Option<(Vec<u16>, Instant)>,
}

/// Where a node's presence part lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PresenceStore {
    /// In the broker, a hash per node and channel (`HSET`/`HGETALL`, Redis).
    Hashes,
    /// Nowhere but the node: an asking node sends [`Msg::PresenceAsk`] to all, each node
    /// answers with its members and the asker merges the answers of the nodes it knows
    /// within [`ANSWER_TIMEOUT`] (brokers without storage, NATS core).
    Queries,
}

/// Bytes of members per [`Msg::PresenceAnswer`] part: far below any broker's payload limit.
const ANSWER_PART_BYTES: usize = 32 << 10;

/// A channel list waiting for other nodes' answers.
#[derive(Debug)]
struct ListWait {
    from: u8,
    tag: u64,
    /// Nodes yet to answer.
    waiting: Vec<u16>,
    counts: Vec<(Arc<str>, u64)>,
    deadline: Instant,
}

/// The broker thread's state. See the module doc.
pub struct Node {
    node: u16,
    instance: u64,
    mesh: Arc<Mesh>,
    uplink: Arc<Uplink>,
    history: Arc<HistoryPolicy>,
    /// Channel -> shards with local subscribers (the node-wide refcount).
    interest: HashMap<Arc<str>, ShardSet>,
    /// Requests waiting for another node's answer, by tag.
    pending: HashMap<u64, (ReplyTo, Instant)>,
    next_tag: u64,
    /// Nodes heard from, and when.
    seen: HashMap<u16, Instant>,
    next_heartbeat: Option<Instant>,
    /// This node's subscribers per channel, with their users (its presence hashes).
    members: HashMap<Arc<str>, HashMap<ConnId, Option<Arc<str>>>>,
    next_refresh: Option<Instant>,
    /// Presence queries waiting for answers, by query id.
    queries: HashMap<u64, PresenceWait>,
    next_query: u64,
    wake: ShardSet,
    scratch: Vec<u8>,
    /// Shards that lost a delivery of a channel and whose subscribers must hear of the gap.
    gaps: Vec<(u8, Arc<str>)>,
    presence: PresenceStore,
    /// Channel lists waiting for other nodes, by query id.
    lists: HashMap<u64, ListWait>,
    /// Answers to other nodes' requests (presence, channel lists), sent with the next
    /// [`Node::drain_uplink`].
    answers: Vec<Out>,
    /// The history of channels, when the broker keeps it ([`Node::share_history`]).
    store: Option<Store>,
    /// The broker was reachable at the last drain of the uplink.
    was_up: bool,
}

impl Node {
    /// The state of node `node`, feeding `mesh`, fed by `uplink`; `history` says which
    /// channels' publications go to their owner shard.
    pub fn new(
        node: u16,
        mesh: Arc<Mesh>,
        uplink: Arc<Uplink>,
        history: Arc<HistoryPolicy>,
    ) -> Node {
        let mut h = RandomState::new().build_hasher();
        h.write_u16(node);
        Node {
            node,
            instance: h.finish(),
            mesh,
            uplink,
            history,
            interest: HashMap::new(),
            pending: HashMap::new(),
            next_tag: 1,
            seen: HashMap::new(),
            next_heartbeat: None,
            members: HashMap::new(),
            next_refresh: None,
            queries: HashMap::new(),
            next_query: 1,
            wake: ShardSet::default(),
            scratch: Vec::new(),
            gaps: Vec::new(),
            presence: PresenceStore::Hashes,
            lists: HashMap::new(),
            answers: Vec::new(),
            store: None,
            was_up: false,
        }
    }

    /// Keep presence as `store` says (the default is [`PresenceStore::Hashes`]).
    pub fn with_presence(mut self, store: PresenceStore) -> Node {
        self.presence = store;
        self
    }

    /// Keep the history of channels in the broker ([`super::history`]): one numbering for every node.
    pub fn share_history(mut self) -> Node {
        self.store = Some(Store::new(Arc::clone(&self.history)));
        self
    }

    /// The uplink (counters, connected flag).
    pub fn uplink(&self) -> &Arc<Uplink> {
        &self.uplink
    }

    /// Every broker channel this node must receive: its own, the shared one, and each channel
    /// with local subscribers.
    pub fn topics(&self) -> Vec<String> {
        let mut t = vec![node_topic(self.node), ALL.to_owned()];
        t.extend(self.interest.keys().map(|c| channel_topic(c)));
        t
    }

    /// Channels with local subscribers.
    pub fn channels(&self) -> usize {
        self.interest.len()
    }

    /// Apply everything the shards sent up, after the answers owed to other nodes. With
    /// `connected` false, data is dropped (it was
    /// accepted while the broker was up, and pub/sub is at most once) but interest is kept.
    pub fn drain_uplink(&mut self, connected: bool, now: Instant, out: &mut Vec<Out>) {
        if connected {
            out.append(&mut self.answers);
        }
        self.answers.clear();
        if connected != self.was_up {
            self.was_up = connected;
            if connected {
                self.on_history_back();
            }
        }
        while let Some(up) = self.uplink.pop() {
            self.on_up(up, connected, now, out);
        }
    }

    fn on_up(&mut self, up: Up, connected: bool, now: Instant, out: &mut Vec<Out>) {
        match up {
            Up::Interest { channel, shard, on } => {
                return self.on_interest(channel, shard, on, out)
            }
            Up::Member {
                channel,
                conn,
                user,
                on,
            } => return self.on_member(channel, conn, user, on, connected, out),
            Up::PresenceQuery { channel, from, tag } => {
                return self.on_presence_query(&channel, from, tag, connected, now, out)
            }
            Up::ChannelQuery { from, tag } => {
                return self.on_channel_query(from, tag, connected, now, out)
            }
            Up::HistoryQuery {
                channel,
                from,
                tag,
                want,
                max_recovery,
            } => {
                let mut to_shards = Vec::new();
                match self.store.as_mut() {
                    Some(store) => store.query(
                        channel,
                        from,
                        tag,
                        want,
                        max_recovery,
                        connected,
                        now,
                        out,
                        &mut to_shards,
                    ),
                    None => to_shards.push((from, ShardMsg::HistoryFailed { tag })),
                }
                return self.push_all(to_shards);
            }
            _ => {}
        }
        if !connected {
            return;
        }
        if let (Up::Publish(p), Some(store)) = (&up, self.store.as_mut()) {
            if store.keeps(p.channel()) {
                self.uplink.stats.published.fetch_add(1, Ordering::Relaxed);
                return store.publish(p, self.node, out);
            }
        }
        let mut payload = Vec::new();
        let topic = match up {
            Up::Interest { .. }
            | Up::Member { .. }
            | Up::PresenceQuery { .. }
            | Up::ChannelQuery { .. } => return,
            Up::HistoryQuery { .. } => return,
            Up::PresenceEvent {
                channel,
                join,
                conn,
                user,
            } => {
                let msg = Msg::Presence {
                    origin: self.node,
                    join,
                    conn,
                    user: user.as_deref(),
                };
                wire::encode(&msg, &mut payload);
                channel_topic(&channel)
            }
            Up::Frames {
                channel,
                frames,
                skip,
            } => {
                let msg = Msg::Frames {
                    origin: self.node,
                    skip,
                    frames: &frames,
                };
                wire::encode(&msg, &mut payload);
                channel_topic(&channel)
            }
            Up::Publish(p) => {
                wire::encode(
                    &Msg::Publish {
                        origin: self.node,
                        from: p.from,
                        user: p.user(),
                        data: p.data(),
                        bare: p.bare(),
                    },
                    &mut payload,
                );
                channel_topic(p.channel())
            }
            Up::Direct { to, frame, reply } => {
                let tag = reply.map(|r| self.wait_for(r, now));
                let reply = tag.as_ref().map(|(c, t)| (*c, &t[..]));
                wire::encode(
                    &Msg::Direct {
                        to,
                        reply,
                        frame: &frame,
                    },
                    &mut payload,
                );
                node_topic(to.node())
            }
            Up::Close {
                conn,
                code,
                reason,
                reply,
            } => {
                let tag = reply.map(|r| self.wait_for(r, now));
                let reply = tag.as_ref().map(|(c, t)| (*c, &t[..]));
                let msg = Msg::Close {
                    conn,
                    code: code.0,
                    reason: &reason,
                    reply,
                };
                wire::encode(&msg, &mut payload);
                node_topic(conn.node())
            }
            Up::Outcome { reply, delivered } => {
                let msg = Msg::Outcome {
                    conn: reply.conn,
                    tag: &reply.id,
                    delivered,
                };
                wire::encode(&msg, &mut payload);
                node_topic(reply.conn.node())
            }
            Up::User { user, frame } => {
                let msg = Msg::User {
                    origin: self.node,
                    user: &user,
                    frame: &frame,
                };
                wire::encode(&msg, &mut payload);
                ALL.to_owned()
            }
            Up::CloseUser { user, code, reason } => {
                let msg = Msg::CloseUser {
                    origin: self.node,
                    user: &user,
                    code: code.0,
                    reason: &reason,
                };
                wire::encode(&msg, &mut payload);
                ALL.to_owned()
            }
        };
        self.uplink.stats.published.fetch_add(1, Ordering::Relaxed);
        out.push(Out::publish(&topic, payload));
    }

    fn on_member(
        &mut self,
        channel: Arc<str>,
        conn: ConnId,
        user: Option<Arc<str>>,
        on: bool,
        connected: bool,
        out: &mut Vec<Out>,
    ) {
        let key = presence_key(&channel, self.node);
        let field = conn.to_bits().to_string();
        let connected = connected && self.presence == PresenceStore::Hashes;
        if on {
            let value = user.as_deref().unwrap_or_default().as_bytes().to_vec();
            self.members.entry(channel).or_default().insert(conn, user);
            if connected {
                out.push(Out::command(&[
                    b"HSET",
                    key.as_bytes(),
                    field.as_bytes(),
                    &value,
                ]));
                out.push(expire(&key));
            }
            return;
        }
        if let Some(m) = self.members.get_mut(&channel) {
            m.remove(&conn);
            if m.is_empty() {
                self.members.remove(&channel);
            }
        }
        if connected {
            out.push(Out::command(&[b"HDEL", key.as_bytes(), field.as_bytes()]));
        }
    }

    /// After a (re)connect: write this node's presence hashes again (the broker may have lost
    /// them).
    pub fn on_connected(&mut self, out: &mut Vec<Out>) {
        if let Some(store) = self.store.as_mut() {
            store.on_connected(out);
        }
        if self.presence == PresenceStore::Queries {
            return;
        }
        for (channel, members) in &self.members {
            let key = presence_key(channel, self.node);
            let mut args = vec![b"HSET".to_vec(), key.as_bytes().to_vec()];
            for (conn, user) in members {
                args.push(conn.to_bits().to_string().into_bytes());
                args.push(user.as_deref().unwrap_or_default().as_bytes().to_vec());
            }
            out.push(Out::Command(args, None));
            out.push(expire(&key));
        }
    }

    /// The other nodes alive in the node list.
    fn other_nodes(&self) -> Vec<u16> {
        let me = self.node;
        self.seen.keys().copied().filter(|&n| n != me).collect()
    }

    fn on_presence_query(
        &mut self,
        channel: &str,
        from: u8,
        tag: u64,
        connected: bool,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let others = self.other_nodes();
        if !connected || others.is_empty() {
            let members = Vec::new();
            return self.push(from, ShardMsg::PresencePart { tag, members });
        }
        let id = self.next_query;
        self.next_query += 1;
        if self.presence == PresenceStore::Queries {
            let mut payload = Vec::new();
            let ask = Msg::PresenceAsk {
                origin: self.node,
                id,
                channel,
            };
            wire::encode(&ask, &mut payload);
            out.push(Out::publish(ALL, payload));
            let wait = PresenceWait {
                from,
                tag,
                waiting: others.len(),
                members: Vec::new(),
                asked: Some((others, now + ANSWER_TIMEOUT)),
            };
            self.queries.insert(id, wait);
            return;
        }
        for n in &others {
            let key = presence_key(channel, *n).into_bytes();
            out.push(Out::Command(vec![b"HGETALL".to_vec(), key], Some(id)));
        }
        let wait = PresenceWait {
            from,
            tag,
            waiting: others.len(),
            members: Vec::new(),
            asked: None,
        };
        self.queries.insert(id, wait);
    }

    /// Another node asks for this node's members of `channel`: answer it, in parts.
    fn on_presence_ask(&mut self, origin: u16, id: u64, channel: &str) {
        let topic = node_topic(origin);
        let mut part = Vec::new();
        let members = self.members.get(channel).into_iter().flatten();
        let mut members = members.peekable();
        loop {
            while part.len() < ANSWER_PART_BYTES {
                let Some((conn, user)) = members.next() else {
                    break;
                };
                wire::encode_member(*conn, user.as_deref(), &mut part);
            }
            let last = members.peek().is_none();
            let mut payload = Vec::new();
            let answer = Msg::PresenceAnswer {
                origin: self.node,
                id,
                last,
                members: &part,
            };
            wire::encode(&answer, &mut payload);
            self.answers.push(Out::publish(&topic, payload));
            if last {
                return;
            }
            part.clear();
        }
    }

    /// A part of node `origin`'s answer to query `id`: merged if that node is awaited.
    fn on_presence_answer(&mut self, origin: u16, id: u64, last: bool, members: &[u8]) {
        let Some(wait) = self.queries.get_mut(&id) else {
            return;
        };
        let Some((nodes, _)) = wait.asked.as_mut() else {
            return;
        };
        let Some(at) = nodes.iter().position(|&n| n == origin) else {
            return;
        };
        for (conn, user) in wire::members(members).unwrap_or_default() {
            wait.members.push((conn, user.map(Arc::from)));
        }
        if last {
            nodes.swap_remove(at);
            if nodes.is_empty() {
                self.finish_query(id);
            }
        }
    }

    /// Hand query `id`'s merged members to the asking shard.
    fn finish_query(&mut self, id: u64) {
        if let Some(w) = self.queries.remove(&id) {
            let msg = ShardMsg::PresencePart {
                tag: w.tag,
                members: w.members,
            };
            self.push(w.from, msg);
        }
    }

    /// Ask every other node alive for its channels; their answers make one part of shard
    /// `from`'s gather `tag`, complete when all answered or after [`ANSWER_TIMEOUT`].
    fn on_channel_query(
        &mut self,
        from: u8,
        tag: u64,
        connected: bool,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let others = self.other_nodes();
        if !connected || others.is_empty() {
            let counts = Vec::new();
            return self.push(from, ShardMsg::ChannelPart { tag, counts });
        }
        let id = self.next_query;
        self.next_query += 1;
        let mut payload = Vec::new();
        let msg = Msg::ChannelsAsk {
            origin: self.node,
            id,
        };
        wire::encode(&msg, &mut payload);
        out.push(Out::publish(ALL, payload));
        let wait = ListWait {
            from,
            tag,
            waiting: others,
            counts: Vec::new(),
            deadline: now + ANSWER_TIMEOUT,
        };
        self.lists.insert(id, wait);
    }

    /// Node `origin`'s channels for list `id`.
    fn on_channel_answer(&mut self, origin: u16, id: u64, counts: &[u8]) {
        let Some(wait) = self.lists.get_mut(&id) else {
            return;
        };
        let Some(at) = wait.waiting.iter().position(|&n| n == origin) else {
            return;
        };
        wait.waiting.swap_remove(at);
        let list = wire::decode_counts(counts).unwrap_or_default();
        wait.counts
            .extend(list.into_iter().map(|(c, n)| (Arc::from(c), n)));
        if wait.waiting.is_empty() {
            self.finish_list(id);
        }
    }

    fn finish_list(&mut self, id: u64) {
        if let Some(w) = self.lists.remove(&id) {
            let msg = ShardMsg::ChannelPart {
                tag: w.tag,
                counts: w.counts,
            };
            self.push(w.from, msg);
        }
    }

    /// The answer to query `id`: a hash's field/value pairs, or `None` when the connection was
    /// lost before it came.
    pub fn on_answer(&mut self, id: u64, pairs: Option<Vec<(Vec<u8>, Vec<u8>)>>) {
        let Some(wait) = self.queries.get_mut(&id) else {
            return;
        };
        for (field, value) in pairs.unwrap_or_default() {
            let conn = std::str::from_utf8(&field)
                .ok()
                .and_then(|f| f.parse::<ConnId>().ok());
            let user = std::str::from_utf8(&value)
                .ok()
                .filter(|u| !u.is_empty())
                .map(Arc::from);
            if let Some(conn) = conn {
                wait.members.push((conn, user));
            }
        }
        wait.waiting -= 1;
        if wait.waiting == 0 {
            if let Some(w) = self.queries.remove(&id) {
                let msg = ShardMsg::PresencePart {
                    tag: w.tag,
                    members: w.members,
                };
                self.push(w.from, msg);
            }
        }
    }

    /// Remember `reply` until its answer comes; the requester and the tag that travel.
    fn wait_for(&mut self, reply: ReplyTo, now: Instant) -> (ConnId, [u8; 8]) {
        let tag = self.next_tag;
        self.next_tag += 1;
        let conn = reply.conn;
        self.pending.insert(tag, (reply, now + ANSWER_TIMEOUT));
        (conn, tag.to_le_bytes())
    }

    fn on_interest(&mut self, channel: Arc<str>, shard: u8, on: bool, out: &mut Vec<Out>) {
        if on {
            let set = self.interest.entry(Arc::clone(&channel)).or_default();
            let first = set.is_empty();
            set.insert(shard);
            if first {
                out.push(Out::Subscribe(channel_topic(&channel)));
            }
        } else if let Some(set) = self.interest.get_mut(&channel) {
            set.remove(shard);
            if set.is_empty() {
                self.interest.remove(&channel);
                if let Some(store) = self.store.as_mut() {
                    store.forget(&channel);
                }
                out.push(Out::Unsubscribe(channel_topic(&channel)));
            }
        }
        self.uplink
            .stats
            .channels
            .store(self.interest.len() as u64, Ordering::Relaxed);
    }

    /// A message arrived on broker channel `topic`.
    pub fn on_message(&mut self, topic: &[u8], payload: &[u8], now: Instant) {
        let Some(msg) = wire::decode(payload) else {
            debug!(
                topic = %String::from_utf8_lossy(topic),
                "ignoring a broker message that is not the gateway's"
            );
            return;
        };
        self.uplink.stats.received.fetch_add(1, Ordering::Relaxed);
        match msg {
            Msg::Publish {
                origin,
                from,
                user,
                data,
                bare,
            } => {
                let Some(channel) = topic
                    .strip_prefix(b"gw:c:")
                    .and_then(|c| std::str::from_utf8(c).ok())
                else {
                    return;
                };
                // The publishing node served its own subscribers.
                if origin != self.node {
                    self.deliver(channel, from, user, data, bare);
                }
            }
            Msg::Frames {
                origin,
                skip,
                frames,
            } if origin != self.node => {
                let Some((channel, shards)) = self.interested(topic) else {
                    return;
                };
                let frames: Arc<[u8]> = Arc::from(frames);
                let d = Arc::new(Delivery {
                    channel,
                    json: Arc::clone(&frames),
                    bare: Some(frames),
                    skip,
                    offset: None,
                });
                for s in shards.iter() {
                    self.push(s, ShardMsg::Deliver(Arc::clone(&d)));
                }
            }
            Msg::Presence {
                origin,
                join,
                conn,
                user,
            } if origin != self.node => {
                let Some((name, shards)) = self.interested(topic) else {
                    return;
                };
                let d = Delivery::presence(&mut self.scratch, name, join, conn, user);
                for s in shards.iter() {
                    self.push(s, ShardMsg::Deliver(Arc::clone(&d)));
                }
            }
            Msg::Presence { .. } => {}
            Msg::Numbered {
                from,
                skip,
                user,
                data,
                bare,
                epoch,
                offset,
                ..
            } => {
                let Some((name, shards)) = self.interested(topic) else {
                    return;
                };
                let gap = match self.store.as_mut() {
                    Some(store) => store.on_live(&name, epoch, offset),
                    None => return,
                };
                if gap {
                    // Redis delivered an offset that does not follow the last one: tell the
                    // subscribers, who recover what they missed.
                    self.uplink
                        .stats
                        .history_gaps
                        .fetch_add(1, Ordering::Relaxed);
                    self.gap(&name);
                }
                let parts = Parts {
                    data,
                    bare,
                    from,
                    user,
                };
                let d = Delivery::publication(&mut self.scratch, name, parts, skip, Some(offset));
                for s in shards.iter() {
                    self.push(s, ShardMsg::Deliver(Arc::clone(&d)));
                }
            }
            Msg::Direct { to, reply, frame } => {
                let reply = reply.map(|(conn, tag)| ReplyTo {
                    conn,
                    id: tag.into(),
                });
                let frame: Arc<[u8]> = Arc::from(frame);
                self.push_or_refuse(to, ShardMsg::Direct { to, frame, reply });
            }
            Msg::Close {
                conn,
                code,
                reason,
                reply,
            } => {
                let reply = reply.map(|(c, tag)| ReplyTo {
                    conn: c,
                    id: tag.into(),
                });
                let msg = ShardMsg::Close {
                    conn,
                    code: CloseCode(code),
                    reason: Box::from(reason),
                    reply,
                };
                self.push_or_refuse(conn, msg);
            }
            Msg::Outcome {
                conn,
                tag,
                delivered,
            } => {
                let Some(tag) = tag.try_into().ok().map(u64::from_le_bytes) else {
                    return;
                };
                if let Some((reply, _)) = self.pending.remove(&tag) {
                    debug_assert_eq!(reply.conn, conn);
                    let to = reply.conn.shard();
                    self.push(to, ShardMsg::DirectOutcome { reply, delivered });
                }
            }
            Msg::User {
                origin,
                user,
                frame,
            } if origin != self.node => {
                let user: Arc<str> = Arc::from(user);
                let frame: Arc<[u8]> = Arc::from(frame);
                for s in 0..self.mesh.shards() as u8 {
                    let msg = ShardMsg::DirectUser {
                        user: Arc::clone(&user),
                        frame: Arc::clone(&frame),
                    };
                    self.push(s, msg);
                }
            }
            Msg::CloseUser {
                origin,
                user,
                code,
                reason,
            } if origin != self.node => {
                let user: Arc<str> = Arc::from(user);
                for s in 0..self.mesh.shards() as u8 {
                    let msg = ShardMsg::CloseUser {
                        user: Arc::clone(&user),
                        code: CloseCode(code),
                        reason: Box::from(reason),
                    };
                    self.push(s, msg);
                }
            }
            Msg::Heartbeat { origin, instance } => {
                if origin == self.node && instance != self.instance {
                    error!(
                        node = origin,
                        "another gateway process uses this --node-id: connection ids clash"
                    );
                }
                self.seen.insert(origin, now);
            }
            Msg::PresenceAsk {
                origin,
                id,
                channel,
            } if origin != self.node => self.on_presence_ask(origin, id, channel),
            Msg::PresenceAnswer {
                origin,
                id,
                last,
                members,
            } => self.on_presence_answer(origin, id, last, members),
            Msg::ChannelsAsk { origin, id } if origin != self.node => {
                let mut counts = Vec::new();
                let list = self.members.iter().map(|(c, m)| (&**c, m.len() as u64));
                wire::encode_counts(list, &mut counts);
                let mut payload = Vec::new();
                let msg = Msg::ChannelsAnswer {
                    origin: self.node,
                    id,
                    counts: &counts,
                };
                wire::encode(&msg, &mut payload);
                self.uplink.stats.published.fetch_add(1, Ordering::Relaxed);
                self.answers
                    .push(Out::publish(&node_topic(origin), payload));
            }
            Msg::ChannelsAnswer { origin, id, counts } => {
                self.on_channel_answer(origin, id, counts);
            }
            Msg::User { .. }
            | Msg::CloseUser { .. }
            | Msg::PresenceAsk { .. }
            | Msg::ChannelsAsk { .. }
            | Msg::Frames { .. } => {}
        }
    }

    /// The channel of broker channel `topic` and the shards with its subscribers, if any.
    fn interested(&self, topic: &[u8]) -> Option<(Arc<str>, ShardSet)> {
        let channel = topic
            .strip_prefix(b"gw:c:")
            .and_then(|c| std::str::from_utf8(c).ok())?;
        self.interest
            .get_key_value(channel)
            .map(|(k, v)| (Arc::clone(k), *v))
    }

    /// Tell the subscribers of `channel` on every shard that their stream has a gap.
    fn gap(&mut self, channel: &Arc<str>) {
        let Some(shards) = self.interest.get(channel).copied() else {
            return;
        };
        let d = Delivery::gap(&mut self.scratch, Arc::clone(channel));
        for s in shards.iter() {
            self.push(s, ShardMsg::Deliver(Arc::clone(&d)));
        }
    }

    /// The broker is reachable again: whatever it published to the channels with shared
    /// history meanwhile is lost for this node, so their subscribers hear of a gap.
    fn on_history_back(&mut self) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        store.on_lost();
        let channels: Vec<Arc<str>> = self
            .interest
            .keys()
            .filter(|c| store.keeps(c))
            .cloned()
            .collect();
        for c in channels {
            self.gap(&c);
        }
    }

    /// The broker answered history command `id` (`None`: the connection was lost first).
    pub fn on_history_reply(&mut self, id: u64, v: Option<Value>, out: &mut Vec<Out>) {
        let mut to_shards = Vec::new();
        if let Some(store) = self.store.as_mut() {
            store.on_reply(id, v, out, &mut to_shards);
        }
        self.push_all(to_shards);
    }

    /// A `PING` with argument `arg` was answered on the subscriber connection (a barrier).
    pub fn on_pong(&mut self, arg: &[u8], out: &mut Vec<Out>) {
        let mut to_shards = Vec::new();
        if let Some(store) = self.store.as_mut() {
            store.on_pong(arg, out, &mut to_shards);
        }
        self.push_all(to_shards);
    }

    fn push_all(&mut self, to_shards: Vec<ToShard>) {
        for (to, msg) in to_shards {
            if matches!(msg, ShardMsg::HistoryFailed { .. }) {
                self.uplink
                    .stats
                    .history_failures
                    .fetch_add(1, Ordering::Relaxed);
            }
            self.push(to, msg);
        }
    }

    /// Deliver a publication from another node to this node's subscribers, encoded once.
    fn deliver(
        &mut self,
        channel: &str,
        from: Option<ConnId>,
        user: Option<&str>,
        data: &[u8],
        bare: &[u8],
    ) {
        let Some((name, shards)) = self
            .interest
            .get_key_value(channel)
            .map(|(k, v)| (Arc::clone(k), *v))
        else {
            return;
        };
        if self.history.retention(channel).is_some() {
            // The channel's owner shard numbers and keeps it, then fans it out.
            let owner = (owner_hash(channel) % self.mesh.shards().max(1) as u64) as u8;
            let p = Publication::new(channel, data, bare, from, user, None);
            self.push(owner, ShardMsg::Publish(Box::new(p)));
            return;
        }
        let parts = Parts {
            data,
            bare,
            from,
            user,
        };
        let d = Delivery::publication(&mut self.scratch, name, parts, None, None);
        for s in shards.iter() {
            self.push(s, ShardMsg::Deliver(Arc::clone(&d)));
        }
    }

    /// Push `msg` for the shard of `conn`, if it names one of this node; a request for a
    /// connection that cannot exist here is answered at once.
    fn push_or_refuse(&mut self, conn: ConnId, msg: ShardMsg) {
        if conn.node() == self.node && usize::from(conn.shard()) < self.mesh.shards() {
            return self.push(conn.shard(), msg);
        }
        let reply = match msg {
            ShardMsg::Direct { reply, .. } | ShardMsg::Close { reply, .. } => reply,
            _ => None,
        };
        if let Some(reply) = reply {
            let _ = self.uplink.push(Up::Outcome {
                reply,
                delivered: false,
            });
        }
    }

    /// Push `msg` to shard `to` without waiting: a full queue drops it (counted), and a lost
    /// delivery leaves a gap to announce to the channel's subscribers on that shard.
    fn push(&mut self, to: u8, msg: ShardMsg) {
        match self.mesh.push(to, msg) {
            Ok(()) => self.wake.insert(to),
            Err(msg) => {
                self.uplink.stats.dropped.fetch_add(1, Ordering::Relaxed);
                if let ShardMsg::Deliver(d) = msg {
                    let gap = (to, Arc::clone(&d.channel));
                    if !self.gaps.contains(&gap) {
                        self.gaps.push(gap);
                    }
                }
            }
        }
    }

    /// Tell the subscribers on shards that lost deliveries that their stream has a gap, as
    /// soon as those shards' queues have room again (after everything queued before it).
    fn announce_gaps(&mut self) {
        let mut i = 0;
        while i < self.gaps.len() {
            let (to, channel) = self.gaps[i].clone();
            let d = Delivery::gap(&mut self.scratch, channel);
            if self.mesh.push(to, ShardMsg::Deliver(d)).is_ok() {
                self.wake.insert(to);
                self.gaps.swap_remove(i);
            } else {
                i += 1;
            }
        }
    }

    /// Announce pending gaps, then wake every shard that was sent something.
    pub fn wake_shards(&mut self) {
        if !self.gaps.is_empty() {
            self.announce_gaps();
        }
        for s in std::mem::take(&mut self.wake).iter() {
            self.mesh.wake(s);
        }
    }

    /// Timers: answer requests whose answer is late, say this node is alive, forget nodes
    /// gone silent. Returns when to be called next at the latest.
    pub fn on_tick(&mut self, connected: bool, now: Instant, out: &mut Vec<Out>) -> Instant {
        let late: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, (_, deadline))| *deadline <= now)
            .map(|(tag, _)| *tag)
            .collect();
        for tag in late {
            if let Some((reply, _)) = self.pending.remove(&tag) {
                let to = reply.conn.shard();
                let delivered = false;
                self.push(to, ShardMsg::DirectOutcome { reply, delivered });
            }
        }
        let late: Vec<u64> = self
            .lists
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            // A node that stays silent (gone since its last heartbeat) leaves its part out.
            self.finish_list(id);
        }
        let due = self.next_heartbeat.is_none_or(|t| t <= now);
        if connected && due {
            let mut payload = Vec::new();
            let msg = Msg::Heartbeat {
                origin: self.node,
                instance: self.instance,
            };
            wire::encode(&msg, &mut payload);
            out.push(Out::publish(ALL, payload));
            self.next_heartbeat = Some(now + HEARTBEAT_INTERVAL);
        }
        let late: Vec<u64> = self
            .queries
            .iter()
            .filter(|(_, w)| w.asked.as_ref().is_some_and(|(_, d)| *d <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            self.finish_query(id);
        }
        let hashes = self.presence == PresenceStore::Hashes;
        if connected && hashes && self.next_refresh.is_none_or(|t| t <= now) {
            for channel in self.members.keys() {
                out.push(expire(&presence_key(channel, self.node)));
            }
            self.next_refresh = Some(now + PRESENCE_REFRESH);
        }
        self.seen
            .retain(|_, at| now.saturating_duration_since(*at) < NODE_TTL);
        let mut nodes: Vec<u16> = self.seen.keys().copied().collect();
        if !nodes.contains(&self.node) {
            nodes.push(self.node);
        }
        nodes.sort_unstable();
        if let Ok(mut list) = self.uplink.stats.nodes.lock() {
            *list = nodes;
        }
        let next_query = self
            .queries
            .values()
            .filter_map(|w| w.asked.as_ref().map(|(_, d)| *d))
            .min();
        let mut to_shards = Vec::new();
        let next_read = self
            .store
            .as_mut()
            .and_then(|s| s.on_tick(connected, now, &mut to_shards));
        self.push_all(to_shards);
        let next_pending = self
            .pending
            .values()
            .map(|(_, d)| *d)
            .chain(next_query)
            .chain(self.lists.values().map(|w| w.deadline))
            .chain(next_read)
            .min();
        let next = self
            .next_heartbeat
            .unwrap_or(now + HEARTBEAT_INTERVAL)
            .max(now);
        next_pending.map_or(next, |p| p.min(next))
    }
}

/// `EXPIRE key PRESENCE_TTL`.
fn expire(key: &str) -> Out {
    let secs = PRESENCE_TTL.as_secs().to_string();
    Out::command(&[b"EXPIRE", key.as_bytes(), secs.as_bytes()])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(capacity: usize) -> (Node, Arc<Mesh>) {
        let mesh = Arc::new(Mesh::new(capacity, vec![None, None]));
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let uplink = Arc::new(Uplink::new(1, waker, 16));
        let n = Node::new(1, Arc::clone(&mesh), uplink, Arc::default());
        (n, mesh)
    }

    fn publication(origin: u16, n: u8) -> Vec<u8> {
        let mut out = Vec::new();
        let data = [b'0' + n];
        let msg = Msg::Publish {
            origin,
            from: None,
            user: None,
            data: &data,
            bare: &data,
        };
        wire::encode(&msg, &mut out);
        out
    }

    fn frames(mesh: &Mesh, shard: u8) -> Vec<String> {
        std::iter::from_fn(|| mesh.pop(shard))
            .map(|m| match m {
                ShardMsg::Deliver(d) => {
                    String::from_utf8_lossy(crate::router::fanout::frame_payload(&d.json))
                        .into_owned()
                }
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn deliveries_go_to_interested_shards_once_and_own_ones_are_skipped() {
        let (mut n, mesh) = node(8);
        let mut out = Vec::new();
        for shard in [0, 1] {
            n.on_interest(Arc::from("c"), shard, true, &mut out);
        }
        assert_eq!(
            out,
            vec![Out::Subscribe("gw:c:c".into())],
            "one subscription per node"
        );
        n.on_message(b"gw:c:c", &publication(2, 1), Instant::now());
        n.on_message(b"gw:c:c", &publication(1, 2), Instant::now());
        for shard in [0, 1] {
            let got = frames(&mesh, shard);
            assert_eq!(got.len(), 1, "{got:?}");
            assert!(got[0].contains("\"data\":1"), "{got:?}");
        }
        out.clear();
        n.on_interest(Arc::from("c"), 0, false, &mut out);
        assert!(out.is_empty(), "shard 1 still wants it");
        n.on_interest(Arc::from("c"), 1, false, &mut out);
        assert_eq!(out, vec![Out::Unsubscribe("gw:c:c".into())]);
    }

    #[test]
    fn channel_lists_ask_every_node_answer_for_this_one_and_stop_waiting_after_a_second() {
        let (mut n, mesh) = node(8);
        let t0 = Instant::now();
        let beat = |origin: u16| {
            let mut p = Vec::new();
            wire::encode(
                &Msg::Heartbeat {
                    origin,
                    instance: 1,
                },
                &mut p,
            );
            p
        };
        for other in [2, 3] {
            n.on_message(ALL.as_bytes(), &beat(other), t0);
        }
        let mut out = Vec::new();
        n.uplink.push(Up::ChannelQuery { from: 1, tag: 7 }).unwrap();
        n.drain_uplink(true, t0, &mut out);
        let [Out::Command(args, None)] = &out[..] else {
            panic!("one request: {out:?}");
        };
        assert_eq!(args[1], ALL.as_bytes());
        let Some(Msg::ChannelsAsk { origin: 1, id }) = wire::decode(&args[2]) else {
            panic!("a channel-list request: {args:?}");
        };

        // Node 2 answers; node 3 stays silent: the part comes after ANSWER_TIMEOUT.
        let mut counts = Vec::new();
        wire::encode_counts([("a", 2), ("b", 1)], &mut counts);
        let mut answer = Vec::new();
        let msg = Msg::ChannelsAnswer {
            origin: 2,
            id,
            counts: &counts,
        };
        wire::encode(&msg, &mut answer);
        n.on_message(node_topic(1).as_bytes(), &answer, t0);
        assert!(mesh.pop(1).is_none(), "node 3 has not answered yet");
        n.on_tick(true, t0 + ANSWER_TIMEOUT, &mut Vec::new());
        match mesh.pop(1) {
            Some(ShardMsg::ChannelPart { tag: 7, mut counts }) => {
                counts.sort();
                assert_eq!(counts, vec![(Arc::from("a"), 2), (Arc::from("b"), 1)]);
            }
            other => panic!("the other nodes' part: {other:?}"),
        }

        // Asked by node 3, this node answers with its own members' counts, on node 3's topic.
        let conn = ConnId::on_node(1, 0, 1, 1);
        n.on_member(Arc::from("c"), conn, None, true, true, &mut Vec::new());
        let mut ask = Vec::new();
        wire::encode(&Msg::ChannelsAsk { origin: 3, id: 5 }, &mut ask);
        n.on_message(ALL.as_bytes(), &ask, t0);
        let mut out = Vec::new();
        n.drain_uplink(true, t0, &mut out);
        let [Out::Command(args, None)] = &out[..] else {
            panic!("one answer: {out:?}");
        };
        assert_eq!(args[1], node_topic(3).as_bytes());
        let Some(Msg::ChannelsAnswer {
            origin: 1,
            id: 5,
            counts,
        }) = wire::decode(&args[2])
        else {
            panic!("an answer: {args:?}");
        };
        assert_eq!(wire::decode_counts(counts), Some(vec![("c", 1)]));
    }

    #[test]
    fn a_full_shard_queue_drops_counts_and_announces_the_gap_later() {
        let (mut n, mesh) = node(1);
        n.on_interest(Arc::from("c"), 0, true, &mut Vec::new());
        for i in 1..=3 {
            n.on_message(b"gw:c:c", &publication(2, i), Instant::now());
        }
        assert_eq!(n.uplink.stats.dropped.load(Ordering::Relaxed), 2);
        n.wake_shards();
        let got = frames(&mesh, 0);
        assert_eq!(got.len(), 1, "the queue held one: {got:?}");
        assert!(got[0].contains("\"data\":1"));
        // Room again: the gap is announced once, after what was queued.
        n.wake_shards();
        assert_eq!(frames(&mesh, 0), vec![r#"{"type":"gap","channel":"c"}"#]);
        n.wake_shards();
        assert!(frames(&mesh, 0).is_empty());
    }
}
