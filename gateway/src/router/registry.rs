//! `Registry`: which shards have subscribers of each channel, as every shard knows it.
//!
//! Each shard keeps its own copy, updated only by `Interest` messages: a shard announces a
//! channel to all others when it gets the channel's first local subscriber and withdraws it when
//! the last one leaves. No lock is shared. A copy may lag by the messages in flight; the shard
//! loop drains its inbox before it reads sockets, so a publish that a client sends after seeing
//! its subscription confirmed finds the subscriber's shard in the set.

use std::collections::HashMap;
use std::sync::Arc;

/// A set of shard indexes (0..=255).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardSet([u64; 4]);

impl ShardSet {
    /// Add `shard`.
    pub fn insert(&mut self, shard: u8) {
        self.0[usize::from(shard >> 6)] |= 1 << (shard & 63);
    }

    /// Remove `shard`.
    pub fn remove(&mut self, shard: u8) {
        self.0[usize::from(shard >> 6)] &= !(1 << (shard & 63));
    }

    /// Whether `shard` is in the set.
    pub fn contains(&self, shard: u8) -> bool {
        self.0[usize::from(shard >> 6)] & (1 << (shard & 63)) != 0
    }

    /// True when the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }

    /// The shards in ascending order.
    pub fn iter(self) -> impl Iterator<Item = u8> {
        (0..=255u8).filter(move |&s| self.contains(s))
    }
}

/// Channel -> shards with subscribers.
#[derive(Debug, Default)]
pub struct Registry {
    shards: HashMap<Arc<str>, ShardSet>,
}

impl Registry {
    /// Record that `shard` has (`on`) or no longer has subscribers of `channel`.
    pub fn set(&mut self, channel: &Arc<str>, shard: u8, on: bool) {
        if on {
            self.shards
                .entry(Arc::clone(channel))
                .or_default()
                .insert(shard);
        } else if let Some(set) = self.shards.get_mut(channel) {
            set.remove(shard);
            if set.is_empty() {
                self.shards.remove(channel);
            }
        }
    }

    /// The channel's shared name and its shards, if any shard has subscribers.
    pub fn lookup(&self, channel: &str) -> Option<(Arc<str>, ShardSet)> {
        self.shards
            .get_key_value(channel)
            .map(|(k, v)| (Arc::clone(k), *v))
    }

    /// The shards with subscribers of `channel`.
    pub fn shards(&self, channel: &str) -> ShardSet {
        self.shards.get(channel).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_hold_every_shard_index() {
        let mut s = ShardSet::default();
        for i in [0, 1, 63, 64, 200, 255] {
            s.insert(i);
        }
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 1, 63, 64, 200, 255]);
        s.remove(64);
        assert!(!s.contains(64) && s.contains(63));
    }

    #[test]
    fn channels_are_forgotten_when_no_shard_has_subscribers() {
        let mut r = Registry::default();
        let c: Arc<str> = Arc::from("c");
        r.set(&c, 1, true);
        r.set(&c, 3, true);
        assert_eq!(r.shards("c").iter().collect::<Vec<_>>(), vec![1, 3]);
        r.set(&c, 1, false);
        r.set(&c, 3, false);
        assert!(r.shards("c").is_empty());
        assert!(r.shards.is_empty());
    }
}
