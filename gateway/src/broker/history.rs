//! `Store`: the history of channels kept in Redis, shared by every node (`--broker redis://`
//! with `--history`). The broker thread numbers and keeps each publication with one atomic
//! script run on Redis, and answers the shards' history queries from the Redis stream, so a
//! client's position (epoch, offset) means the same on every node.
//!
//! - Keys: a channel's keys share the hash tag `{gw:CHANNEL}` ([`key`]), so Redis Cluster would
//!   accept the scripts: `{gw:CHANNEL}:m` holds the stream's position (`epoch`, `top`),
//!   `{gw:CHANNEL}:s` the publications (a stream whose entry ids are the offsets).
//! - Publish ([`PUBLISH_SCRIPT`], loaded with `SCRIPT LOAD`, run with `EVALSHA`, loaded again on
//!   `NOSCRIPT`): next offset, `XADD` with the offset as id, trim to the size, expire, and
//!   `PUBLISH` of the message with its epoch and offset, so every node (the publisher's too)
//!   delivers each publication with one offset.
//! - The epoch is made with the position: a Redis that lost it (a restart without persistence,
//!   an eviction, a quiet [`POSITION_TTL`]) starts a new stream, and old positions fail to
//!   recover.
//! - A subscribe query waits for the node's `SUBSCRIBE` to be in force (a `PING` with the
//!   query's id on the subscriber connection comes back after it), reads the stream, then waits
//!   once more for every live message Redis sent before the read to have arrived, so the answer
//!   follows them in the shard's queue: the shard's merge sees the order it sees on one node.
//! - Every query is answered within [`READ_TIMEOUT`]: with the stream, or with a failure when
//!   Redis is down or slow (the client gets an error, never a hang).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::router::fanout::{Delivery, Parts};
use crate::router::history::{can_recover, Answer, Epoch, HistoryPolicy, Want, MAX_SIZE, MAX_TTL};
use crate::router::inbox::{Publication, ShardMsg};

use super::node::{channel_topic, Out};
use super::resp::Value;
use super::wire::{self, Msg, NumberedHead};

/// Longest wait for Redis on a history query before the client is told it failed.
pub const READ_TIMEOUT: Duration = Duration::from_millis(800);
/// How long a channel's position (epoch, last offset) outlives its last publication: a client
/// that was up to date recovers after a quiet time longer than the publications' TTL.
pub const POSITION_TTL: Duration = MAX_TTL;
/// The bit that marks the command ids of this module (the node's own start at 1).
const IDS: u64 = 1 << 63;

/// Numbers, keeps and publishes one publication. See the module doc.
///
/// KEYS: the position hash, the stream. ARGV: a fresh epoch (used when the position is new),
/// the size kept, the publications' TTL and the position's TTL in ms, the broker channel, the
/// message head (`wire::encode_numbered_head`).
pub const PUBLISH_SCRIPT: &str = r"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'top', 0)
end
local top = redis.call('HINCRBY', KEYS[1], 'top', 1)
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local msg = ARGV[6] .. epoch .. top .. ';'
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], top .. '-0', 'm', msg, 't', ms)
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PUBLISH', ARGV[5], msg)
return top
";

/// Reads a channel's position and publications. See the module doc.
///
/// KEYS: the position hash, the stream. ARGV: a fresh epoch (used when the position is new),
/// the position's TTL in ms, `since` or `last`, the client's offset or how many to read, the
/// most to replay, the first stream id to read (`since`). Returns the epoch, the last offset,
/// Redis's clock in ms and the entries (oldest first for `since`, newest first for `last`).
pub const READ_SCRIPT: &str = r"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'top', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
local top = tonumber(redis.call('HGET', KEYS[1], 'top'))
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local entries = {}
local n = tonumber(ARGV[4])
if ARGV[3] == 'since' then
  if n < top and top - n <= tonumber(ARGV[5]) then
    entries = redis.call('XRANGE', KEYS[2], ARGV[6], '+', 'COUNT', ARGV[5])
  end
elseif n > 0 then
  entries = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', n)
end
return {epoch, top, ms, entries}
";

/// The Redis key `part` (`m`: position, `s`: stream) of `channel`: every key of a channel
/// carries the hash tag `{gw:CHANNEL}`, so they live on one Redis Cluster slot.
pub fn key(channel: &str, part: &str) -> String {
    format!("{{gw:{channel}}}:{part}")
}

/// Whether command id `id` is this module's.
pub fn owns(id: u64) -> bool {
    id & IDS != 0
}

/// The SHA-1 of a script as hex, its name for `EVALSHA`.
fn sha(script: &str) -> String {
    sha1_smol::Sha1::from(script).digest().to_string()
}

/// Where a query stands.
#[derive(Debug)]
enum Stage {
    /// Waiting for the node's subscription to be in force (the first barrier).
    Subscribing,
    /// The read is out.
    Reading,
    /// Read; waiting for the live messages sent before the read (the second barrier).
    Settling(Box<Answer<Arc<Delivery>>>),
}

/// One query from a shard.
#[derive(Debug)]
struct Query {
    channel: Arc<str>,
    from: u8,
    tag: u64,
    want: Want,
    max_recovery: usize,
    stage: Stage,
    deadline: Instant,
    /// The read was sent again after a `NOSCRIPT`.
    retried: bool,
}

/// A message for a shard, and which.
pub type ToShard = (u8, ShardMsg);

/// The broker thread's side of the shared history. See the module doc.
#[derive(Debug)]
pub struct Store {
    policy: Arc<HistoryPolicy>,
    publish_sha: String,
    read_sha: String,
    queries: HashMap<u64, Query>,
    /// Publishes whose answer is due, kept to run again after a `NOSCRIPT`.
    publishes: HashMap<u64, Vec<Vec<u8>>>,
    /// Publishes already sent again after a `NOSCRIPT` whose first answer is still due.
    superseded: HashSet<u64>,
    /// The last (epoch, offset) delivered live per channel with local subscribers.
    live: HashMap<Arc<str>, (Epoch, u64)>,
    next_id: u64,
    scratch: Vec<u8>,
}

impl Store {
    /// The store for the channels `policy` gives history.
    pub fn new(policy: Arc<HistoryPolicy>) -> Store {
        Store {
            policy,
            publish_sha: sha(PUBLISH_SCRIPT),
            read_sha: sha(READ_SCRIPT),
            queries: HashMap::new(),
            publishes: HashMap::new(),
            superseded: HashSet::new(),
            live: HashMap::new(),
            next_id: 0,
            scratch: Vec::new(),
        }
    }

    /// Whether `channel` keeps history (in Redis).
    pub fn keeps(&self, channel: &str) -> bool {
        self.policy.retention(channel).is_some()
    }

    /// Queries waiting for Redis.
    pub fn waiting(&self) -> usize {
        self.queries.len()
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        IDS | self.next_id
    }

    /// After a (re)connect: load the scripts (the commands that follow on the connection find
    /// them).
    pub fn on_connected(&mut self, out: &mut Vec<Out>) {
        for script in [PUBLISH_SCRIPT, READ_SCRIPT] {
            out.push(script_load(script));
        }
    }

    /// Number, keep and publish `p` from node `origin` with the publish script.
    pub fn publish(&mut self, p: &Publication, origin: u16, out: &mut Vec<Out>) {
        let Some(retention) = self.policy.retention(p.channel()) else {
            return;
        };
        let mut head = Vec::new();
        let parts = NumberedHead {
            origin,
            from: p.from,
            skip: p.skip,
            user: p.user(),
            data: p.data(),
            bare: p.bare(),
        };
        wire::encode_numbered_head(&parts, &mut head);
        let channel = p.channel();
        let args = vec![
            b"EVALSHA".to_vec(),
            self.publish_sha.clone().into_bytes(),
            b"2".to_vec(),
            key(channel, "m").into_bytes(),
            key(channel, "s").into_bytes(),
            Epoch::fresh().to_string().into_bytes(),
            retention.size.to_string().into_bytes(),
            millis(retention.ttl).into_bytes(),
            millis(POSITION_TTL).into_bytes(),
            channel_topic(channel).into_bytes(),
            head,
        ];
        let id = self.id();
        self.publishes.insert(id, args.clone());
        out.push(Out::Command(args, Some(id)));
    }

    /// A shard asks `want` of `channel` for its query `tag`. Answered at once with a failure
    /// when Redis is not reachable.
    #[allow(clippy::too_many_arguments)]
    pub fn query(
        &mut self,
        channel: Arc<str>,
        from: u8,
        tag: u64,
        want: Want,
        max_recovery: usize,
        connected: bool,
        now: Instant,
        out: &mut Vec<Out>,
        to_shards: &mut Vec<ToShard>,
    ) {
        if !connected {
            to_shards.push((from, ShardMsg::HistoryFailed { tag }));
            return;
        }
        let id = self.id();
        let mut q = Query {
            channel,
            from,
            tag,
            want,
            max_recovery,
            stage: Stage::Subscribing,
            deadline: now + READ_TIMEOUT,
            retried: false,
        };
        if matches!(want, Want::Last(_)) {
            // A plain read holds no live messages: no order to keep with them.
            out.push(self.read(&q, id));
            q.stage = Stage::Reading;
        } else {
            out.push(Out::Barrier(id));
        }
        self.queries.insert(id, q);
    }

    fn read(&self, q: &Query, id: u64) -> Out {
        let (mode, n, first) = match q.want {
            Want::Since { offset, .. } => ("since", offset, offset.saturating_add(1)),
            Want::Position => ("since", u64::MAX, 0),
            Want::Last(n) => ("last", n.min(MAX_SIZE) as u64, 0),
        };
        let args = vec![
            b"EVALSHA".to_vec(),
            self.read_sha.clone().into_bytes(),
            b"2".to_vec(),
            key(&q.channel, "m").into_bytes(),
            key(&q.channel, "s").into_bytes(),
            Epoch::fresh().to_string().into_bytes(),
            millis(POSITION_TTL).into_bytes(),
            mode.as_bytes().to_vec(),
            n.to_string().into_bytes(),
            q.max_recovery.to_string().into_bytes(),
            format!("{first}-0").into_bytes(),
        ];
        Out::Command(args, Some(id))
    }

    /// The barrier `PING id` came back on the subscriber connection.
    pub fn on_pong(&mut self, arg: &[u8], out: &mut Vec<Out>, to_shards: &mut Vec<ToShard>) {
        let Some(id) = std::str::from_utf8(arg).ok().and_then(|a| a.parse().ok()) else {
            return;
        };
        let Some(q) = self.queries.get_mut(&id) else {
            return;
        };
        match std::mem::replace(&mut q.stage, Stage::Reading) {
            Stage::Subscribing => {
                let q = &self.queries[&id];
                out.push(self.read(q, id));
            }
            Stage::Reading => {}
            Stage::Settling(answer) => {
                if let Some(q) = self.queries.remove(&id) {
                    // Every live message up to `top` has been pushed: the stream continues after it.
                    self.live
                        .entry(Arc::clone(&q.channel))
                        .or_insert((answer.epoch, answer.top));
                    to_shards.push((q.from, ShardMsg::HistoryAnswer { tag: q.tag, answer }));
                }
            }
        }
    }

    /// Redis answered command `id` (`None`: the connection was lost first).
    pub fn on_reply(
        &mut self,
        id: u64,
        v: Option<Value>,
        out: &mut Vec<Out>,
        to_shards: &mut Vec<ToShard>,
    ) {
        if self.superseded.remove(&id) {
            if !matches!(&v, Some(Value::Error(e)) if e.starts_with(b"NOSCRIPT")) {
                // Only when the script came back between two publishes already in flight
                // (another node loading it at that very moment).
                warn!("a publication refused for want of the script ran after all: kept twice");
            }
            return;
        }
        if let Some(args) = self.publishes.remove(&id) {
            match v {
                Some(Value::Error(e)) if e.starts_with(b"NOSCRIPT") => {
                    self.publish_again(id, args, out);
                }
                Some(Value::Error(e)) => {
                    warn!(error = %String::from_utf8_lossy(&e), "the history store refused a publication");
                }
                _ => {}
            }
            return;
        }
        let Some(q) = self.queries.get_mut(&id) else {
            return;
        };
        let answer = match v {
            Some(Value::Error(e)) if e.starts_with(b"NOSCRIPT") && !q.retried => {
                q.retried = true;
                out.push(script_load(READ_SCRIPT));
                let q = &self.queries[&id];
                out.push(self.read(q, id));
                return;
            }
            Some(v) => parse_read(
                &v,
                &q.channel,
                q.want,
                q.max_recovery,
                &self.policy,
                &mut self.scratch,
            ),
            None => None,
        };
        let Some(answer) = answer else {
            if let Some(q) = self.queries.remove(&id) {
                warn!(channel = %q.channel, "the history store gave no usable answer");
                to_shards.push((q.from, ShardMsg::HistoryFailed { tag: q.tag }));
            }
            return;
        };
        if matches!(q.want, Want::Last(_)) {
            if let Some(q) = self.queries.remove(&id) {
                let answer = Box::new(answer);
                to_shards.push((q.from, ShardMsg::HistoryAnswer { tag: q.tag, answer }));
            }
            return;
        }
        q.stage = Stage::Settling(Box::new(answer));
        out.push(Out::Barrier(id));
    }

    /// Redis lost the publish script while connected (a `SCRIPT FLUSH`; a restart is a new
    /// connection, which loads it first): publish `first` and every later one already sent
    /// are refused alike, in order. Send them all again at once, behind a load and in the
    /// order they were first sent, so that no publication made meanwhile overtakes one of
    /// them (one publisher's order is kept).
    fn publish_again(&mut self, first: u64, args: Vec<Vec<u8>>, out: &mut Vec<Out>) {
        let mut later: Vec<u64> = self
            .publishes
            .keys()
            .copied()
            .filter(|&k| k > first)
            .collect();
        later.sort_unstable();
        info!(
            publications = later.len() + 1,
            "Redis lost the history scripts: loading them again"
        );
        out.push(script_load(PUBLISH_SCRIPT));
        let mut again = vec![args];
        for k in later {
            if let Some(a) = self.publishes.remove(&k) {
                self.superseded.insert(k);
                again.push(a);
            }
        }
        for args in again {
            let id = self.id();
            self.publishes.insert(id, args.clone());
            out.push(Out::Command(args, Some(id)));
        }
    }

    /// A live numbered publication of `channel` at (`epoch`, `offset`): whether it does not
    /// follow the last one delivered (a gap the subscribers must hear of).
    pub fn on_live(&mut self, channel: &Arc<str>, epoch: Epoch, offset: u64) -> bool {
        match self.live.insert(Arc::clone(channel), (epoch, offset)) {
            Some((e, last)) => e != epoch || offset != last.saturating_add(1),
            None => false,
        }
    }

    /// The node stopped receiving `channel`: what it saw last no longer matters.
    pub fn forget(&mut self, channel: &str) {
        self.live.remove(channel);
    }

    /// The node lost Redis: every live stream may have lost messages. Returns the channels to
    /// announce a gap on once Redis is back.
    pub fn on_lost(&mut self) -> Vec<Arc<str>> {
        self.publishes.clear();
        self.superseded.clear();
        self.live.drain().map(|(c, _)| c).collect()
    }

    /// Fail the queries past their deadline, or all of them when Redis is not reachable.
    /// Returns the earliest deadline left.
    pub fn on_tick(
        &mut self,
        connected: bool,
        now: Instant,
        to_shards: &mut Vec<ToShard>,
    ) -> Option<Instant> {
        let late: Vec<u64> = self
            .queries
            .iter()
            .filter(|(_, q)| !connected || q.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            if let Some(q) = self.queries.remove(&id) {
                to_shards.push((q.from, ShardMsg::HistoryFailed { tag: q.tag }));
            }
        }
        self.queries.values().map(|q| q.deadline).min()
    }
}

fn script_load(script: &str) -> Out {
    let args = vec![
        b"SCRIPT".to_vec(),
        b"LOAD".to_vec(),
        script.as_bytes().to_vec(),
    ];
    Out::Command(args, None)
}

fn millis(d: Duration) -> String {
    d.as_millis().max(1).to_string()
}

/// The answer a read script's reply `v` gives to `want` on `channel`; `None` when the reply is
/// not one.
fn parse_read(
    v: &Value,
    channel: &Arc<str>,
    want: Want,
    max_recovery: usize,
    policy: &HistoryPolicy,
    scratch: &mut Vec<u8>,
) -> Option<Answer<Arc<Delivery>>> {
    let Value::Array(Some(items)) = v else {
        return None;
    };
    let [epoch, Value::Int(top), Value::Int(now_ms), Value::Array(entries)] = &items[..] else {
        return None;
    };
    let epoch = Epoch::parse(std::str::from_utf8(epoch.bytes()?).ok()?)?;
    let top = u64::try_from(*top).ok()?;
    let ttl_ms = policy.retention(channel).map_or(0, |r| r.ttl.as_millis());
    let mut kept = Vec::new();
    for entry in entries.iter().flatten() {
        let (offset, at_ms, d) = parse_entry(entry, channel, epoch, scratch)?;
        // Older than the TTL: gone, as on one node (the stream key expires as a whole).
        if i128::from(*now_ms) - i128::from(at_ms) < ttl_ms as i128 {
            kept.push((offset, d));
        }
    }
    if matches!(want, Want::Last(_)) {
        kept.reverse();
    }
    let mut answer = Answer {
        epoch,
        top,
        recovered: false,
        entries: Vec::new(),
    };
    match want {
        Want::Position => {}
        Want::Last(_) => answer.entries = kept,
        Want::Since {
            offset,
            epoch: theirs,
        } => {
            let first_kept = kept.first().map_or(top.saturating_add(1), |e| e.0);
            let missed = top.saturating_sub(offset);
            let whole =
                kept.len() as u64 == missed && kept.windows(2).all(|w| w[1].0 == w[0].0 + 1);
            if whole && can_recover(offset, theirs == Some(epoch), top, first_kept, max_recovery) {
                answer.recovered = true;
                answer.entries = kept;
            }
        }
    }
    Some(answer)
}

/// One stream entry: its offset, when it was published (Redis ms) and its delivery.
fn parse_entry(
    entry: &Value,
    channel: &Arc<str>,
    epoch: Epoch,
    scratch: &mut Vec<u8>,
) -> Option<(u64, i64, Arc<Delivery>)> {
    let Value::Array(Some(pair)) = entry else {
        return None;
    };
    let [_, Value::Array(Some(fields))] = &pair[..] else {
        return None;
    };
    let (mut msg, mut at) = (None, None);
    for f in fields.chunks(2) {
        match (
            f.first().and_then(Value::bytes),
            f.get(1).and_then(Value::bytes),
        ) {
            (Some(b"m"), Some(m)) => msg = Some(m),
            (Some(b"t"), Some(t)) => at = std::str::from_utf8(t).ok()?.parse::<i64>().ok(),
            _ => {}
        }
    }
    let Msg::Numbered {
        from,
        user,
        data,
        bare,
        epoch: e,
        offset,
        ..
    } = wire::decode(msg?)?
    else {
        return None;
    };
    if e != epoch {
        return None;
    }
    let parts = Parts {
        data,
        bare,
        from,
        user,
    };
    let d = Delivery::publication(scratch, Arc::clone(channel), parts, None, Some(offset));
    Some((offset, at?, d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::history::HistoryRule;

    fn policy() -> Arc<HistoryPolicy> {
        Arc::new(HistoryPolicy::new(vec![HistoryRule::parse("chat:=3/10s").unwrap()]).unwrap())
    }

    fn entry(epoch: Epoch, offset: u64, at_ms: i64) -> Value {
        let mut m = Vec::new();
        let msg = Msg::Numbered {
            origin: 1,
            from: None,
            skip: None,
            user: None,
            data: b"1",
            bare: b"1",
            epoch,
            offset,
        };
        wire::encode(&msg, &mut m);
        let bulk = |b: &[u8]| Value::Bulk(Some(b.to_vec()));
        Value::Array(Some(vec![
            bulk(format!("{offset}-0").as_bytes()),
            Value::Array(Some(vec![
                bulk(b"m"),
                bulk(&m),
                bulk(b"t"),
                bulk(at_ms.to_string().as_bytes()),
            ])),
        ]))
    }

    fn reply(epoch: Epoch, top: i64, now_ms: i64, entries: Vec<Value>) -> Value {
        Value::Array(Some(vec![
            Value::Bulk(Some(epoch.to_string().into_bytes())),
            Value::Int(top),
            Value::Int(now_ms),
            Value::Array(Some(entries)),
        ]))
    }

    fn since(offset: u64, epoch: Epoch) -> Want {
        Want::Since {
            offset,
            epoch: Some(epoch),
        }
    }

    fn offsets(a: &Answer<Arc<Delivery>>) -> Vec<u64> {
        a.entries.iter().map(|e| e.0).collect()
    }

    /// The data of each publish command in `out`, in order, and how many script loads.
    fn sent(out: &[Out]) -> (Vec<Vec<u8>>, usize) {
        let mut data = Vec::new();
        let mut loads = 0;
        for o in out {
            let Out::Command(args, _) = o else { continue };
            match args[0].as_slice() {
                b"SCRIPT" => loads += 1,
                b"EVALSHA" => data.push(args.last().unwrap().clone()),
                other => panic!("unexpected {other:?}"),
            }
        }
        (data, loads)
    }

    fn ids(out: &[Out]) -> Vec<u64> {
        let id = |o: &Out| match o {
            Out::Command(_, id) => *id,
            _ => None,
        };
        out.iter().filter_map(id).collect()
    }

    #[test]
    fn publishes_refused_for_want_of_the_script_run_again_in_their_order() {
        let mut store = Store::new(policy());
        let mut first = Vec::new();
        for n in 1..=3u8 {
            let p = Publication::new("chat:a", &[b'0' + n], b"x", None, None, None);
            store.publish(&p, 1, &mut first);
        }
        let (heads, _) = sent(&first);
        let flushed = || Some(Value::Error(b"NOSCRIPT No matching script.".to_vec()));
        let mut again = Vec::new();
        let mut to_shards = Vec::new();
        let old = ids(&first);
        store.on_reply(old[0], flushed(), &mut again, &mut to_shards);
        // All three go again behind one load, in their order, before anything published later.
        let (resent, loads) = sent(&again);
        assert_eq!((resent, loads), (heads.clone(), 1));
        let p = Publication::new("chat:a", b"4", b"x", None, None, None);
        store.publish(&p, 1, &mut again);
        let mut more = Vec::new();
        for &id in &old[1..] {
            store.on_reply(id, flushed(), &mut more, &mut to_shards);
        }
        assert!(
            more.is_empty(),
            "the later refusals were answered already: {more:?}"
        );
        for id in ids(&again) {
            store.on_reply(id, Some(Value::Int(1)), &mut more, &mut to_shards);
        }
        assert!(more.is_empty() && to_shards.is_empty());
        assert!(store.publishes.is_empty() && store.superseded.is_empty());
    }

    #[test]
    fn keys_of_a_channel_share_one_hash_tag() {
        assert_eq!(key("chat:1", "m"), "{gw:chat:1}:m");
        assert_eq!(key("chat:1", "s"), "{gw:chat:1}:s");
        assert!(owns(IDS | 1) && !owns(1));
        assert_eq!(sha(PUBLISH_SCRIPT).len(), 40);
    }

    #[test]
    fn a_read_recovers_only_a_whole_fresh_run_of_the_same_epoch() {
        let (p, c) = (policy(), Arc::from("chat:1"));
        let e = Epoch::fresh();
        let s = &mut Vec::new();
        // Offsets 4 and 5 kept, published at 19 s on Redis's clock; the stream is at 5.
        let kept = || vec![entry(e, 4, 19_000), entry(e, 5, 19_000)];
        let mut read = |now_ms: i64, entries: Vec<Value>, want: Want, max: usize| {
            parse_read(&reply(e, 5, now_ms, entries), &c, want, max, &p, s).unwrap()
        };
        let a = read(20_000, kept(), since(3, e), 300);
        assert_eq!((a.recovered, offsets(&a), a.top), (true, vec![4, 5], 5));
        // Another epoch, a hole (trimmed), too many missed, expired entries: no replay.
        let misses = [
            (20_000, since(3, Epoch::fresh()), 300, "another epoch"),
            (20_000, since(2, e), 300, "offset 3 was trimmed"),
            (20_000, since(3, e), 1, "over --max-recovery"),
            (30_000, since(3, e), 300, "older than the 10 s TTL"),
        ];
        for (now_ms, want, max, why) in misses {
            let a = read(now_ms, kept(), want, max);
            assert!(!a.recovered && a.entries.is_empty(), "{why}");
        }
        let a = read(30_000, vec![], since(5, e), 300);
        assert!(a.recovered && a.entries.is_empty(), "up to date");
        // Newest first from XREVRANGE: handed out oldest first.
        let newest_first = kept().into_iter().rev().collect();
        assert_eq!(
            offsets(&read(20_000, newest_first, Want::Last(2), 300)),
            [4, 5]
        );
    }

    #[test]
    fn a_reply_that_is_not_a_read_is_refused() {
        let (p, c) = (policy(), Arc::from("chat:1"));
        let e = Epoch::fresh();
        let s = &mut Vec::new();
        for bad in [
            Value::Int(1),
            Value::Array(Some(vec![Value::Int(1)])),
            reply(e, -1, 0, vec![]),
            reply(e, 2, 0, vec![Value::Int(3)]),
            reply(e, 2, 0, vec![entry(Epoch::fresh(), 2, 0)]),
        ] {
            assert!(
                parse_read(&bad, &c, Want::Position, 300, &p, s).is_none(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn offsets_that_do_not_follow_are_a_gap_and_so_is_a_new_epoch() {
        let mut st = Store::new(policy());
        let c: Arc<str> = Arc::from("chat:1");
        let e = Epoch::fresh();
        assert!(!st.on_live(&c, e, 7), "the first one seen");
        assert!(!st.on_live(&c, e, 8));
        assert!(st.on_live(&c, e, 10), "9 was lost");
        assert!(st.on_live(&c, Epoch::fresh(), 11), "a new stream");
        st.forget("chat:1");
        assert!(!st.on_live(&c, e, 1));
        assert_eq!(st.on_lost(), vec![c]);
    }

    #[test]
    fn a_query_fails_at_once_without_redis_and_by_its_deadline_with_a_silent_one() {
        let mut st = Store::new(policy());
        let (mut out, mut to) = (Vec::new(), Vec::new());
        let t = Instant::now();
        let c: Arc<str> = Arc::from("chat:1");
        st.query(
            Arc::clone(&c),
            1,
            7,
            Want::Position,
            300,
            false,
            t,
            &mut out,
            &mut to,
        );
        assert!(out.is_empty());
        assert!(matches!(
            to.pop(),
            Some((1, ShardMsg::HistoryFailed { tag: 7 }))
        ));
        st.query(c, 0, 8, Want::Position, 300, true, t, &mut out, &mut to);
        assert!(matches!(out[..], [Out::Barrier(_)]));
        assert_eq!(st.on_tick(true, t, &mut to), Some(t + READ_TIMEOUT));
        assert!(to.is_empty());
        assert_eq!(st.on_tick(true, t + READ_TIMEOUT, &mut to), None);
        assert!(matches!(
            to.pop(),
            Some((0, ShardMsg::HistoryFailed { tag: 8 }))
        ));
        assert_eq!(st.waiting(), 0);
    }

    #[test]
    fn a_subscribe_query_reads_between_two_barriers() {
        let mut st = Store::new(policy());
        let (mut out, mut to) = (Vec::new(), Vec::new());
        let t = Instant::now();
        let e = Epoch::fresh();
        st.query(
            Arc::from("chat:1"),
            1,
            9,
            since(0, e),
            300,
            true,
            t,
            &mut out,
            &mut to,
        );
        let Some(Out::Barrier(id)) = out.pop() else {
            panic!("{out:?}");
        };
        st.on_pong(id.to_string().as_bytes(), &mut out, &mut to);
        assert!(matches!(out.pop(), Some(Out::Command(_, Some(i))) if i == id));
        let entries = vec![entry(e, 1, 0)];
        st.on_reply(id, Some(reply(e, 1, 0, entries)), &mut out, &mut to);
        assert!(matches!(out.pop(), Some(Out::Barrier(i)) if i == id));
        assert!(
            to.is_empty(),
            "not before the live messages sent before the read"
        );
        st.on_pong(id.to_string().as_bytes(), &mut out, &mut to);
        let Some((1, ShardMsg::HistoryAnswer { tag: 9, answer })) = to.pop() else {
            panic!("no answer");
        };
        assert!(answer.recovered);
        assert!(
            !st.on_live(&Arc::from("chat:1"), e, 2),
            "the stream goes on after the answer"
        );
    }
}
