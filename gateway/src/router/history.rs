//! History: the last publications of the channels that keep them, held by each channel's owner
//! shard. Which channels keep how much is a [`HistoryPolicy`] (`--history PREFIX=SIZE/TTL`,
//! longest prefix wins); a channel's [`Stream`] gives every publication the next offset (no
//! gaps, the first is 1) and keeps the last `size` of them for at most `ttl`, dropped lazily.
//!
//! A stream is named by its [`Epoch`], drawn at random when the stream is created: at its first
//! use in this process, and again once it has expired entirely (nothing kept, nothing published
//! for `ttl`, no subscriber on any shard). A client's position is (epoch, offset); a position from
//! another epoch cannot be recovered. The module is sans-IO: time is passed in, entries are any
//! `T` (the router keeps its encoded deliveries).

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Most publications one channel may keep.
pub const MAX_SIZE: usize = 10_000;
/// Longest time a publication may be kept.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// How often the owner looks for streams that expired entirely (to free them).
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// How much a channel keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Publications kept (1..=[`MAX_SIZE`]).
    pub size: usize,
    /// How long each is kept (at most [`MAX_TTL`]).
    pub ttl: Duration,
}

/// One `--history` rule: channels whose name starts with `prefix` keep `retention`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryRule {
    /// The channel-name prefix (may be empty: every channel).
    pub prefix: Box<str>,
    /// What they keep.
    pub retention: Retention,
}

impl HistoryRule {
    /// Parse `PREFIX=SIZE/TTL` (`chat:=100/10m`).
    pub fn parse(text: &str) -> Result<HistoryRule, String> {
        let text = text.trim();
        let (prefix, rest) = text
            .rsplit_once('=')
            .ok_or_else(|| format!("history rule {text:?} is not PREFIX=SIZE/TTL"))?;
        let (size, ttl) = rest
            .split_once('/')
            .ok_or_else(|| format!("history rule {text:?} is not PREFIX=SIZE/TTL"))?;
        let ok = prefix.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'@' | b'/' | b'-')
        });
        if !ok || prefix.len() > crate::names::MAX_CHANNEL_BYTES {
            return Err(format!(
                "history rule {text:?}: the prefix is not the start of a channel name"
            ));
        }
        let size: usize = size
            .trim()
            .parse()
            .map_err(|_| format!("history rule {text:?}: SIZE is not a number"))?;
        if !(1..=MAX_SIZE).contains(&size) {
            return Err(format!(
                "history rule {text:?}: SIZE must be 1 to {MAX_SIZE}, got {size}"
            ));
        }
        let ttl = humantime::parse_duration(ttl.trim())
            .map_err(|e| format!("history rule {text:?}: bad TTL: {e}"))?;
        if ttl.is_zero() || ttl > MAX_TTL {
            return Err(format!(
                "history rule {text:?}: TTL must be more than 0 and at most 24h"
            ));
        }
        Ok(HistoryRule {
            prefix: prefix.into(),
            retention: Retention { size, ttl },
        })
    }
}

/// Which channels keep history: the rules, longest prefix first. Empty by default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryPolicy {
    rules: Vec<HistoryRule>,
}

impl HistoryPolicy {
    /// A policy of `rules`; two rules for the same prefix are refused.
    pub fn new(mut rules: Vec<HistoryRule>) -> Result<HistoryPolicy, String> {
        rules.sort_by(|a, b| {
            b.prefix
                .len()
                .cmp(&a.prefix.len())
                .then(a.prefix.cmp(&b.prefix))
        });
        if let Some(w) = rules.windows(2).find(|w| w[0].prefix == w[1].prefix) {
            return Err(format!(
                "two history rules for the prefix {:?}",
                &*w[0].prefix
            ));
        }
        Ok(HistoryPolicy { rules })
    }

    /// True when no channel keeps history.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules, longest prefix first.
    pub fn rules(&self) -> &[HistoryRule] {
        &self.rules
    }

    /// What `channel` keeps (the longest matching prefix), if anything.
    pub fn retention(&self, channel: &str) -> Option<Retention> {
        self.rules
            .iter()
            .find(|r| channel.starts_with(&*r.prefix))
            .map(|r| r.retention)
    }
}

/// The name of one stream of a channel: 64 random bits, written as 16 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Epoch(u64);

impl Epoch {
    /// A fresh epoch: the process's random hash keys mixed with a counter and the clock, so two
    /// streams (in this process or another) practically never share one.
    pub fn fresh() -> Epoch {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut h = RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        h.write_u128(nanos);
        Epoch(h.finish())
    }

    /// The epoch a client names, if `text` is one (16 lower-case hex digits).
    pub fn parse(text: &str) -> Option<Epoch> {
        let ok = text.len() == 16 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| u64::from_str_radix(text, 16).ok().map(Epoch))
            .flatten()
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// One kept publication.
#[derive(Clone, Debug)]
pub struct Entry<T> {
    /// Its offset in the stream.
    pub offset: u64,
    /// When it was published (for the TTL).
    pub at: Instant,
    /// What is kept of it.
    pub item: T,
}

/// What a query asks of a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// Only the current position.
    Position,
    /// The publications after `offset` of stream `epoch` (`None`: a name that is no epoch).
    Since {
        /// The last offset the client has.
        offset: u64,
        /// The stream it is from.
        epoch: Option<Epoch>,
    },
    /// The last `n` publications kept.
    Last(usize),
}

/// A stream's answer to a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer<T> {
    /// The stream.
    pub epoch: Epoch,
    /// Its last offset (0: nothing published yet).
    pub top: u64,
    /// For [`Want::Since`]: whether every publication after the client's offset is here.
    pub recovered: bool,
    /// The publications asked for, oldest first, with their offsets.
    pub entries: Vec<(u64, T)>,
}

/// One channel's stream: its epoch, its last offset and the kept publications.
#[derive(Debug)]
pub struct Stream<T> {
    name: Arc<str>,
    epoch: Epoch,
    top: u64,
    retention: Retention,
    ring: VecDeque<Entry<T>>,
    /// The last publication, or the stream's creation.
    last: Instant,
}

impl<T: Clone> Stream<T> {
    /// A new stream of channel `name` (a fresh epoch, nothing published).
    pub fn new(name: Arc<str>, retention: Retention, now: Instant) -> Stream<T> {
        Stream {
            name,
            epoch: Epoch::fresh(),
            top: 0,
            retention,
            ring: VecDeque::new(),
            last: now,
        }
    }

    /// The channel's shared name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The stream's epoch.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The last offset given (0: none yet).
    pub fn top(&self) -> u64 {
        self.top
    }

    /// The publications kept, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = &Entry<T>> {
        self.ring.iter()
    }

    /// The offset the next publication gets.
    pub fn next_offset(&self) -> u64 {
        self.top + 1
    }

    /// Keep `item` as the publication at [`Stream::next_offset`], published at `now`; the
    /// oldest one goes when `size` are kept.
    pub fn push(&mut self, now: Instant, item: T) -> u64 {
        self.top += 1;
        if self.ring.len() == self.retention.size {
            self.ring.pop_front();
        }
        self.ring.push_back(Entry {
            offset: self.top,
            at: now,
            item,
        });
        self.last = now;
        self.top
    }

    /// Drop the publications older than the TTL.
    pub fn expire(&mut self, now: Instant) {
        let ttl = self.retention.ttl;
        while self
            .ring
            .front()
            .is_some_and(|e| now.saturating_duration_since(e.at) >= ttl)
        {
            self.ring.pop_front();
        }
    }

    /// Nothing is kept any more and nothing was published for a TTL (expiring old entries).
    pub fn is_spent(&mut self, now: Instant) -> bool {
        self.expire(now);
        self.ring.is_empty() && now.saturating_duration_since(self.last) >= self.retention.ttl
    }

    /// Answer `want`, replaying at most `max_recovery` publications for [`Want::Since`].
    pub fn answer(&mut self, want: Want, max_recovery: usize, now: Instant) -> Answer<T> {
        self.expire(now);
        let mut answer = Answer {
            epoch: self.epoch,
            top: self.top,
            recovered: false,
            entries: Vec::new(),
        };
        let from = match want {
            Want::Position => return answer,
            Want::Since { offset, epoch } => {
                let first_kept = self.ring.front().map_or(self.top + 1, |e| e.offset);
                let same = epoch == Some(self.epoch);
                if !can_recover(offset, same, self.top, first_kept, max_recovery) {
                    return answer;
                }
                answer.recovered = true;
                offset + 1
            }
            Want::Last(n) => self.top.saturating_sub(n as u64) + 1,
        };
        answer.entries = self
            .ring
            .iter()
            .filter(|e| e.offset >= from)
            .map(|e| (e.offset, e.item.clone()))
            .collect();
        answer
    }
}

/// Whether a client at `offset` (of this stream when `same_epoch`) gets every publication it
/// missed from a stream at `top` that keeps offsets from `first_kept`, replaying at most
/// `max_recovery`: the one rule of recovery, wherever the stream is kept.
pub fn can_recover(
    offset: u64,
    same_epoch: bool,
    top: u64,
    first_kept: u64,
    max_recovery: usize,
) -> bool {
    let missed = top.saturating_sub(offset);
    same_epoch
        && offset <= top
        && (missed == 0 || offset.saturating_add(1) >= first_kept)
        && missed <= max_recovery as u64
}

/// The streams one shard owns, by channel.
#[derive(Debug)]
pub struct Histories<T> {
    streams: HashMap<Arc<str>, Stream<T>>,
    next_sweep: Option<Instant>,
}

impl<T> Default for Histories<T> {
    fn default() -> Self {
        Histories {
            streams: HashMap::new(),
            next_sweep: None,
        }
    }
}

impl<T: Clone> Histories<T> {
    /// The stream of `channel`: created, or started over (a new epoch, offsets from 1) when it
    /// is spent and `subscribed` is false, i.e. no shard has a subscriber who could hold a
    /// position in it.
    pub fn stream(
        &mut self,
        channel: &str,
        retention: Retention,
        now: Instant,
        subscribed: bool,
    ) -> &mut Stream<T> {
        if !self.streams.contains_key(channel) {
            let name: Arc<str> = Arc::from(channel);
            let stream = Stream::new(Arc::clone(&name), retention, now);
            self.streams.insert(name, stream);
        }
        // UNWRAP: inserted just above when absent.
        let Some(s) = self.streams.get_mut(channel) else {
            unreachable!("stream inserted above");
        };
        if !subscribed && s.is_spent(now) {
            *s = Stream::new(Arc::clone(&s.name), retention, now);
        }
        s
    }

    /// Free the streams that are spent and have no subscriber (`subscribed(channel)`), at most
    /// once a second.
    pub fn sweep(&mut self, now: Instant, subscribed: impl Fn(&str) -> bool) {
        if self.next_sweep.is_some_and(|t| now < t) {
            return;
        }
        self.next_sweep = Some(now + SWEEP_INTERVAL);
        self.streams
            .retain(|name, s| subscribed(name) || !s.is_spent(now));
    }

    /// Streams held.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// True when no stream is held.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep(size: usize, ttl_secs: u64) -> Retention {
        Retention {
            size,
            ttl: Duration::from_secs(ttl_secs),
        }
    }

    fn stream(size: usize, ttl_secs: u64, now: Instant) -> Stream<u64> {
        Stream::new(Arc::from("c"), keep(size, ttl_secs), now)
    }

    fn offsets(a: &Answer<u64>) -> Vec<u64> {
        a.entries.iter().map(|e| e.0).collect()
    }

    #[test]
    fn offsets_follow_each_other_from_one_and_the_ring_keeps_the_last_size() {
        let t = Instant::now();
        let mut s = stream(3, 60, t);
        assert_eq!((s.top(), s.next_offset()), (0, 1));
        for n in 1..=5 {
            assert_eq!(s.push(t, n * 10), n);
        }
        assert_eq!(s.top(), 5);
        let kept: Vec<(u64, u64)> = s.entries().map(|e| (e.offset, e.item)).collect();
        assert_eq!(kept, vec![(3, 30), (4, 40), (5, 50)]);
        let a = s.answer(Want::Last(2), 300, t);
        assert_eq!((offsets(&a), a.top, a.epoch), (vec![4, 5], 5, s.epoch()));
        assert_eq!(offsets(&s.answer(Want::Last(99), 300, t)), vec![3, 4, 5]);
        assert!(s.answer(Want::Last(0), 300, t).entries.is_empty());
        assert!(s.answer(Want::Position, 300, t).entries.is_empty());
    }

    #[test]
    fn entries_older_than_the_ttl_are_dropped_when_looked_at() {
        let t = Instant::now();
        let mut s = stream(10, 10, t);
        s.push(t, 1);
        s.push(t + Duration::from_secs(5), 2);
        let a = s.answer(Want::Last(10), 300, t + Duration::from_secs(10));
        assert_eq!(offsets(&a), vec![2], "the first is 10 s old");
        assert!(!s.is_spent(t + Duration::from_secs(14)));
        assert!(s.is_spent(t + Duration::from_secs(15)));
        assert_eq!(s.top(), 2, "offsets survive expiry");
    }

    #[test]
    fn recovery_needs_the_same_epoch_and_every_missed_offset_kept() {
        let t = Instant::now();
        let mut s = stream(5, 60, t);
        for n in 1..=8 {
            s.push(t, n);
        }
        let e = Some(s.epoch());
        let since = |s: &mut Stream<u64>, offset, epoch, max| {
            let a = s.answer(Want::Since { offset, epoch }, max, t);
            (a.recovered, offsets(&a))
        };
        assert_eq!(since(&mut s, 5, e, 300), (true, vec![6, 7, 8]));
        assert_eq!(since(&mut s, 3, e, 300), (true, vec![4, 5, 6, 7, 8]));
        assert_eq!(since(&mut s, 2, e, 300), (false, vec![]), "3 is gone");
        assert_eq!(since(&mut s, 8, e, 300), (true, vec![]), "nothing missed");
        assert_eq!(since(&mut s, 9, e, 300), (false, vec![]), "from the future");
        assert_eq!(
            since(&mut s, 5, e, 2),
            (false, vec![]),
            "over --max-recovery"
        );
        assert_eq!(since(&mut s, 6, e, 2), (true, vec![7, 8]));
        let other = Some(Epoch(s.epoch().0 ^ 1));
        assert_eq!(since(&mut s, 5, other, 300), (false, vec![]));
        assert_eq!(since(&mut s, 5, None, 300), (false, vec![]));
    }

    #[test]
    fn a_quiet_channel_whose_entries_expired_still_recovers_an_up_to_date_client() {
        let t = Instant::now();
        let mut s = stream(5, 1, t);
        s.push(t, 1);
        let later = t + Duration::from_secs(2);
        let e = Some(s.epoch());
        let a = s.answer(
            Want::Since {
                offset: 1,
                epoch: e,
            },
            300,
            later,
        );
        assert!(a.recovered && a.entries.is_empty());
        let a = s.answer(
            Want::Since {
                offset: 0,
                epoch: e,
            },
            300,
            later,
        );
        assert!(!a.recovered, "offset 1 expired");
    }

    #[test]
    fn a_spent_stream_starts_over_with_a_new_epoch_unless_someone_is_subscribed() {
        let t = Instant::now();
        let mut h: Histories<u64> = Histories::default();
        let r = keep(4, 1);
        let s = h.stream("c", r, t, false);
        s.push(t, 7);
        let first = s.epoch();
        assert_eq!(h.stream("c", r, t, false).epoch(), first, "same stream");
        let later = t + Duration::from_secs(1);
        let s = h.stream("c", r, later, true);
        assert_eq!((s.epoch(), s.top()), (first, 1), "kept for its subscribers");
        let s = h.stream("c", r, later, false);
        assert_ne!(s.epoch(), first);
        assert_eq!((s.top(), s.next_offset()), (0, 1));
        assert_eq!(&**s.name(), "c");
    }

    #[test]
    fn sweeping_frees_spent_streams_without_subscribers_once_a_second() {
        let t = Instant::now();
        let mut h: Histories<u64> = Histories::default();
        for c in ["a", "b", "c"] {
            h.stream(c, keep(4, 1), t, false).push(t, 1);
        }
        h.sweep(t, |_| false);
        assert_eq!(h.len(), 3, "nothing spent yet");
        let later = t + Duration::from_secs(2);
        h.sweep(later, |c| c == "b");
        assert_eq!(h.len(), 1, "b has a subscriber");
        h.stream("x", keep(4, 1), later, false);
        h.sweep(later + Duration::from_millis(10), |_| false);
        assert_eq!(h.len(), 2, "swept at most once a second");
    }

    #[test]
    fn rules_parse_and_the_longest_prefix_wins() {
        let r = HistoryRule::parse("chat:=100/10m").unwrap();
        assert_eq!(&*r.prefix, "chat:");
        assert_eq!(r.retention, keep(100, 600));
        let p = HistoryPolicy::new(vec![
            HistoryRule::parse("=5/1s").unwrap(),
            r,
            HistoryRule::parse("chat:vip:=10000/24h").unwrap(),
        ])
        .unwrap();
        assert_eq!(p.retention("chat:vip:1"), Some(keep(10_000, 86_400)));
        assert_eq!(p.retention("chat:1"), Some(keep(100, 600)));
        assert_eq!(p.retention("news"), Some(keep(5, 1)));
        assert!(HistoryPolicy::default().retention("chat:1").is_none());
        let twice = vec![
            HistoryRule::parse("a=1/1s").unwrap(),
            HistoryRule::parse("a=2/1s").unwrap(),
        ];
        assert!(HistoryPolicy::new(twice).is_err());
        for bad in [
            "chat:",
            "chat:=0/1m",
            "chat:=10001/1m",
            "chat:=x/1m",
            "chat:=10",
            "chat:=10/0s",
            "chat:=10/25h",
            "chat:=10/soon",
            "a b=1/1s",
        ] {
            assert!(HistoryRule::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn epochs_are_fresh_and_round_trip_through_their_text() {
        let (a, b) = (Epoch::fresh(), Epoch::fresh());
        assert_ne!(a, b);
        let text = a.to_string();
        assert_eq!(text.len(), 16);
        assert_eq!(Epoch::parse(&text), Some(a));
        assert_eq!(Epoch::parse("XYZ"), None);
        assert_eq!(Epoch::parse("ABCDEF0123456789"), None, "lower case only");
    }
}
