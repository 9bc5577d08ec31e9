//! `ChannelTable`: one shard's channels and their local subscribers (channel -> connection ids).
//!
//! A channel exists while it has a local subscriber. Subscribers are kept in subscription order
//! in two lists, by what they receive: the JSON envelope (`/ws`) or the bare data (`/raw`,
//! `/broadcast`). A connection's session holds the channels' keys, so a disconnect visits only
//! its own channels. Unsubscribing scans the channel's list (a swap-free removal keeps order).

use std::collections::HashMap;
use std::sync::Arc;

use crate::conn::ConnId;

/// A channel's index in its shard's table (valid while the channel has local subscribers).
pub type ChanKey = u32;

/// What a subscriber receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The JSON envelope (`{"type":"message",..}`) and presence events.
    Json,
    /// Only the bare data.
    Bare,
}

/// One channel's local subscribers.
#[derive(Debug)]
pub struct Channel {
    /// The channel name.
    pub name: Arc<str>,
    /// Subscribers that get the JSON envelope.
    pub json: Vec<ConnId>,
    /// Subscribers that get bare data.
    pub bare: Vec<ConnId>,
    /// JSON subscribers whose live deliveries are held until the channel's owner answers their
    /// position query (the query's tag): see `router::recovery`.
    pub held: Vec<(ConnId, u64)>,
}

impl Channel {
    /// Local subscribers of both kinds.
    pub fn len(&self) -> usize {
        self.json.len() + self.bare.len()
    }

    /// True when no local connection is subscribed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A shard's channels.
#[derive(Debug, Default)]
pub struct ChannelTable {
    by_name: HashMap<Arc<str>, ChanKey>,
    slots: Vec<Option<Channel>>,
    free: Vec<ChanKey>,
}

/// What a subscription changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribed {
    /// The channel's key (kept by the session).
    pub key: ChanKey,
    /// The channel's shared name.
    pub name: Arc<str>,
    /// It is the channel's first local subscriber: other shards must learn of it.
    pub first: bool,
}

impl ChannelTable {
    /// Subscribe `id` to `name` (the caller makes sure it is not subscribed yet).
    pub fn subscribe(&mut self, name: &str, id: ConnId, kind: Kind) -> Subscribed {
        let (key, first) = match self.by_name.get(name) {
            Some(&key) => (key, false),
            None => {
                let name: Arc<str> = Arc::from(name);
                let channel = Channel {
                    name: Arc::clone(&name),
                    json: Vec::new(),
                    bare: Vec::new(),
                    held: Vec::new(),
                };
                let key = match self.free.pop() {
                    Some(key) => {
                        self.slots[key as usize] = Some(channel);
                        key
                    }
                    None => {
                        self.slots.push(Some(channel));
                        (self.slots.len() - 1) as ChanKey
                    }
                };
                self.by_name.insert(name, key);
                (key, true)
            }
        };
        // UNWRAP: the slot was filled just above, or found through `by_name`, which only names
        // filled slots.
        let Some(channel) = self.slots.get_mut(key as usize).and_then(Option::as_mut) else {
            unreachable!("channel table out of sync");
        };
        match kind {
            Kind::Json => channel.json.push(id),
            Kind::Bare => channel.bare.push(id),
        }
        Subscribed {
            key,
            name: Arc::clone(&channel.name),
            first,
        }
    }

    /// Remove `id` from the channel `key`. Returns the channel's name and whether it is now gone
    /// (its last local subscriber left), or `None` if `id` was not subscribed.
    pub fn unsubscribe(&mut self, key: ChanKey, id: ConnId) -> Option<(Arc<str>, bool)> {
        let channel = self.slots.get_mut(key as usize)?.as_mut()?;
        let list = if channel.json.contains(&id) {
            &mut channel.json
        } else {
            &mut channel.bare
        };
        let at = list.iter().position(|&c| c == id)?;
        list.remove(at);
        if !channel.is_empty() {
            if channel.json.capacity() > 4 * channel.json.len().max(4) {
                channel.json.shrink_to_fit();
            }
            return Some((Arc::clone(&channel.name), false));
        }
        let name = Arc::clone(&channel.name);
        self.slots[key as usize] = None;
        self.by_name.remove(&name);
        self.free.push(key);
        Some((name, true))
    }

    /// Hold `id`'s live deliveries on channel `key` for the position query `tag`.
    pub fn hold(&mut self, key: ChanKey, id: ConnId, tag: u64) {
        if let Some(ch) = self.slots.get_mut(key as usize).and_then(Option::as_mut) {
            ch.held.push((id, tag));
        }
    }

    /// Stop holding `id`'s deliveries on channel `key`; the query's tag, if they were held.
    pub fn release(&mut self, key: ChanKey, id: ConnId) -> Option<u64> {
        let ch = self.slots.get_mut(key as usize)?.as_mut()?;
        let at = ch.held.iter().position(|h| h.0 == id)?;
        Some(ch.held.swap_remove(at).1)
    }

    /// The key of channel `name`, if it has local subscribers.
    pub fn key(&self, name: &str) -> Option<ChanKey> {
        self.by_name.get(name).copied()
    }

    /// The channel `name`, if it has local subscribers.
    pub fn get(&self, name: &str) -> Option<&Channel> {
        self.by_key(self.key(name)?)
    }

    /// The channel with key `key`.
    pub fn by_key(&self, key: ChanKey) -> Option<&Channel> {
        self.slots.get(key as usize)?.as_ref()
    }

    /// Channels with local subscribers.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// True when no channel has a local subscriber.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Every channel with local subscribers.
    pub fn iter(&self) -> impl Iterator<Item = &Channel> {
        self.slots.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> ConnId {
        ConnId::new(0, n, 0)
    }

    #[test]
    fn first_and_last_subscriber_are_reported() {
        let mut t = ChannelTable::default();
        let a = t.subscribe("room", id(1), Kind::Json);
        assert!(a.first);
        let b = t.subscribe("room", id(2), Kind::Bare);
        assert!(!b.first);
        assert_eq!(a.key, b.key);
        let ch = t.get("room").unwrap();
        assert_eq!(
            (ch.json.clone(), ch.bare.clone()),
            (vec![id(1)], vec![id(2)])
        );
        assert_eq!(
            t.unsubscribe(a.key, id(1)),
            Some((Arc::from("room"), false))
        );
        assert_eq!(t.unsubscribe(a.key, id(1)), None, "not subscribed any more");
        assert_eq!(t.unsubscribe(a.key, id(2)), Some((Arc::from("room"), true)));
        assert!(t.get("room").is_none());
        assert!(t.is_empty());
    }

    #[test]
    fn subscribers_stay_in_subscription_order() {
        let mut t = ChannelTable::default();
        let key = (1..=5)
            .map(|n| t.subscribe("c", id(n), Kind::Json).key)
            .last()
            .unwrap();
        t.unsubscribe(key, id(2));
        assert_eq!(t.get("c").unwrap().json, vec![id(1), id(3), id(4), id(5)]);
    }

    #[test]
    fn freed_keys_are_reused_for_other_channels() {
        let mut t = ChannelTable::default();
        let a = t.subscribe("a", id(1), Kind::Json);
        t.unsubscribe(a.key, id(1));
        let b = t.subscribe("b", id(1), Kind::Json);
        assert_eq!(a.key, b.key);
        assert_eq!(&*t.by_key(b.key).unwrap().name, "b");
        assert!(t.key("a").is_none());
        assert_eq!(t.len(), 1);
    }
}
