//! `Spread`: which of several independent Redis instances (`--broker redis://a,redis://b,...`)
//! carries what. A channel's topic and its presence hashes live on one instance, chosen by
//! rendezvous hashing; node-level traffic (heartbeats, node topics, `gw:all`) lives on every
//! instance, so that losing one instance loses only the channels hashed to it.
//!
//! Rendezvous (highest random weight) rather than a ring with virtual nodes: a deployment has a
//! handful of instances, so scoring each one per lookup costs a few multiplications and needs no
//! table; the spread is even in expectation without tuning a virtual-node count, and adding or
//! removing an instance moves only the channels that instance wins or held. An instance's weight
//! comes from its address as written in `--broker` (after the default port is added), so every
//! node must list the same instances, spelled the same way, in any order. The hash is FNV-1a with
//! a fixed finalizer: stable across processes, builds and platforms, as nodes must agree.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::router::owner_hash;

use super::node::{Out, ALL};
use super::wire::{self, Msg};

/// The instances of a spread broker and whether each is reachable now.
#[derive(Debug)]
pub struct Spread {
    seeds: Vec<u64>,
    up: Vec<AtomicBool>,
    /// Every instance is reachable (the API listener's `/healthz`).
    all_up: Arc<AtomicBool>,
}

/// Where an [`Out`] goes among the instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The instance of this channel only.
    Channel(usize),
    /// One reachable instance (the first reachable one in this topic's rendezvous order, so a
    /// stream of messages to one node keeps to one instance while it stays up).
    Any(u64),
    /// Every reachable instance (heartbeats, subscriptions to node-level topics).
    Every,
}

/// The splitmix64 finalizer: spreads FNV's weak low bits over the whole word.
pub(super) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Spread {
    /// The spread over the instances at `addrs` (`host:port`, as written in `--broker`); all
    /// start unreachable.
    pub fn new(addrs: &[String]) -> Spread {
        Spread {
            seeds: addrs.iter().map(|a| mix(owner_hash(a))).collect(),
            up: addrs.iter().map(|_| AtomicBool::new(false)).collect(),
            all_up: Arc::new(AtomicBool::new(false)),
        }
    }

    /// How many instances.
    pub fn len(&self) -> usize {
        self.seeds.len()
    }

    /// Whether there is no instance.
    pub fn is_empty(&self) -> bool {
        self.seeds.is_empty()
    }

    /// The instance with the highest score for hash `h`, skipping those `skip` refuses.
    fn best(&self, h: u64, skip: impl Fn(usize) -> bool) -> Option<usize> {
        (0..self.seeds.len())
            .filter(|&i| !skip(i))
            .max_by_key(|&i| mix(h ^ self.seeds[i]))
    }

    /// The instance that carries `channel`.
    pub fn instance_of(&self, channel: &str) -> usize {
        // UNWRAP: a spread has at least one instance (`BrokerUrl` parses none without one).
        self.best(owner_hash(channel), |_| false).unwrap_or(0)
    }

    /// Whether instance `i` is reachable.
    pub fn is_up(&self, i: usize) -> bool {
        self.up.get(i).is_some_and(|u| u.load(Ordering::Acquire))
    }

    /// Record whether instance `i` is reachable (the broker thread).
    pub fn set_up(&self, i: usize, up: bool) {
        if let Some(u) = self.up.get(i) {
            u.store(up, Ordering::Release);
        }
        let all = (0..self.len()).all(|i| self.is_up(i));
        self.all_up.store(all, Ordering::Release);
    }

    /// The flag that holds while every instance is reachable.
    pub fn all_up_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.all_up)
    }

    /// Whether any instance is reachable: node-level traffic can flow.
    pub fn any_up(&self) -> bool {
        (0..self.len()).any(|i| self.is_up(i))
    }

    /// Whether the instance of `channel` is reachable (the shards ask before a publish).
    pub fn channel_up(&self, channel: &str) -> bool {
        self.is_up(self.instance_of(channel))
    }

    /// The reachable instance that carries node-level messages routed [`Route::Any`] with key
    /// `key`, if any is reachable.
    pub fn pick_up(&self, key: u64) -> Option<usize> {
        self.best(key, |i| !self.is_up(i))
    }

    /// Where `out` goes: channel topics and presence hashes (`gw:p:CHANNEL:NODE`) to their
    /// channel's instance, subscriptions to node-level topics and heartbeats to every instance,
    /// other node-level messages to one.
    pub fn route(&self, out: &Out) -> Route {
        match out {
            Out::Subscribe(t) | Out::Unsubscribe(t) => match t.strip_prefix("gw:c:") {
                Some(c) => Route::Channel(self.instance_of(c)),
                None => Route::Every,
            },
            // Only one instance shares history (`history`), so any reachable one will do.
            Out::Barrier(id) => Route::Any(*id),
            Out::Command(args, _) => {
                let verb = args.first().map(Vec::as_slice).unwrap_or_default();
                let target = args.get(1).map(Vec::as_slice).unwrap_or_default();
                if verb.eq_ignore_ascii_case(b"SCRIPT") {
                    // Loaded on every instance as it (re)connects, before what runs it.
                    return Route::Every;
                }
                if verb.eq_ignore_ascii_case(b"PUBLISH") {
                    if let Some(c) = target.strip_prefix(b"gw:c:") {
                        return Route::Channel(self.instance_of(&String::from_utf8_lossy(c)));
                    }
                    let heartbeat = target == ALL.as_bytes()
                        && args
                            .get(2)
                            .and_then(|p| wire::decode(p))
                            .is_some_and(|m| matches!(m, Msg::Heartbeat { .. }));
                    if heartbeat {
                        return Route::Every;
                    }
                    return Route::Any(owner_hash(&String::from_utf8_lossy(target)));
                }
                let channel = target
                    .strip_prefix(b"gw:p:")
                    .and_then(|k| k.iter().rposition(|&b| b == b':').map(|at| &k[..at]));
                match channel {
                    Some(c) => Route::Channel(self.instance_of(&String::from_utf8_lossy(c))),
                    None => Route::Any(owner_hash(&String::from_utf8_lossy(target))),
                }
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::broker::node::{channel_topic, node_topic, presence_key};

    fn addrs(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:6379")).collect()
    }

    /// Deterministic pseudo-random channel names (xorshift), like real ones in shape.
    pub(in crate::broker) fn names(n: usize) -> Vec<String> {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                format!("room:{:x}", x % 1_000_000_007)
            })
            .collect()
    }

    #[test]
    fn channels_spread_evenly_over_instances() {
        for n in [2, 3, 5] {
            let s = Spread::new(&addrs(n));
            let mut count = vec![0usize; n];
            for c in names(1000) {
                count[s.instance_of(&c)] += 1;
            }
            let (max, min) = (count.iter().max().unwrap(), count.iter().min().unwrap());
            let ratio = *max as f64 / *min as f64;
            assert!(ratio < 1.3, "{n} instances: {count:?} (max/min {ratio:.2})");
        }
    }

    #[test]
    fn order_does_not_matter_and_a_new_instance_takes_only_its_share() {
        let a = Spread::new(&addrs(3));
        let mut reversed = addrs(3);
        reversed.reverse();
        let b = Spread::new(&reversed);
        let c = Spread::new(&addrs(4));
        let mut moved = 0;
        for name in names(1000) {
            assert_eq!(
                addrs(3)[a.instance_of(&name)],
                reversed[b.instance_of(&name)]
            );
            let (before, after) = (a.instance_of(&name), c.instance_of(&name));
            if before != after {
                assert_eq!(after, 3, "{name}: moved between old instances");
                moved += 1;
            }
        }
        assert!(
            (150..350).contains(&moved),
            "about a quarter moves: {moved}"
        );
    }

    #[test]
    fn routes_follow_the_channel_and_node_traffic_survives_one_instance() {
        let s = Spread::new(&addrs(3));
        let i = s.instance_of("lobby");
        let topic = channel_topic("lobby");
        assert_eq!(s.route(&Out::Subscribe(topic.clone())), Route::Channel(i));
        assert_eq!(s.route(&Out::Unsubscribe(node_topic(4))), Route::Every);
        let publish = Out::Command(vec![b"PUBLISH".to_vec(), topic.into(), vec![1]], None);
        assert_eq!(s.route(&publish), Route::Channel(i));
        let key = presence_key("lobby:with:colons", 9).into_bytes();
        let hset = Out::Command(vec![b"HSET".to_vec(), key, b"1".to_vec(), vec![]], Some(3));
        assert_eq!(
            s.route(&hset),
            Route::Channel(s.instance_of("lobby:with:colons"))
        );
        let mut beat = Vec::new();
        let msg = Msg::Heartbeat {
            origin: 1,
            instance: 2,
        };
        wire::encode(&msg, &mut beat);
        let beat = Out::Command(vec![b"PUBLISH".to_vec(), ALL.into(), beat], None);
        assert_eq!(s.route(&beat), Route::Every);
        let load = Out::Command(vec![b"SCRIPT".to_vec(), b"LOAD".to_vec(), vec![]], None);
        assert_eq!(
            s.route(&load),
            Route::Every,
            "on each (re)connect, as presence"
        );
        let direct = Out::Command(
            vec![b"PUBLISH".to_vec(), node_topic(4).into(), vec![]],
            None,
        );
        let Route::Any(key) = s.route(&direct) else {
            panic!("node topics go to one instance");
        };

        // Node-level messages go to a reachable instance, and stay on it while it is up.
        assert_eq!(s.pick_up(key), None, "nothing reachable yet");
        for n in 0..3 {
            s.set_up(n, true);
        }
        let first = s.pick_up(key).unwrap();
        s.set_up((first + 1) % 3, false);
        assert_eq!(s.pick_up(key), Some(first));
        s.set_up(first, false);
        let second = s.pick_up(key).unwrap();
        assert_ne!(second, first);
        assert!(s.any_up());
        assert!(!s.all_up_flag().load(Ordering::Acquire));
        assert_eq!(s.channel_up("lobby"), s.is_up(i));
    }
}
