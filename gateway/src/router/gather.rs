//! Scatter/gather queries over shards: a presence list (who is subscribed to a channel), a
//! channel list (every channel with its subscriber count) and a connection lookup (one
//! connection, or every connection of a user, with its channels). The asking shard sends a
//! query with a fresh tag to every shard that may know (itself included, through its local list), counts the
//! parts as they come back, and hands the finished answer to its requester.

use std::collections::HashMap;
use std::sync::Arc;

use super::inbox::{ConnInfo, Lookup, ReplyTo};
use super::Member;

/// A presence query waiting for shards to answer.
#[derive(Debug)]
pub struct Gather {
    /// The requester.
    pub reply: ReplyTo,
    /// Shards still to answer.
    pub waiting: usize,
    /// Members so far.
    pub members: Vec<Member>,
}

/// A channel list waiting for shards to answer.
#[derive(Debug)]
pub struct ChannelGather {
    /// The requester.
    pub reply: ReplyTo,
    /// Shards still to answer.
    pub waiting: usize,
    /// Counts so far, summed over shards.
    pub counts: HashMap<Arc<str>, u64>,
}

/// A connection lookup waiting for shards to answer.
#[derive(Debug)]
pub struct ConnGather {
    /// The requester.
    pub reply: ReplyTo,
    /// What it looks up.
    pub lookup: Lookup,
    /// Shards still to answer.
    pub waiting: usize,
    /// Connections so far.
    pub conns: Vec<ConnInfo>,
}

/// One shard's open gathers.
#[derive(Debug, Default)]
pub struct Gathers {
    presence: HashMap<u64, Gather>,
    channels: HashMap<u64, ChannelGather>,
    conns: HashMap<u64, ConnGather>,
    next_tag: u64,
}

impl Gathers {
    /// Open a presence gather for `reply` over `waiting` shards; returns its tag.
    pub fn start_presence(&mut self, reply: ReplyTo, waiting: usize) -> u64 {
        let tag = self.tag();
        self.presence.insert(
            tag,
            Gather {
                reply,
                waiting,
                members: Vec::new(),
            },
        );
        tag
    }

    /// Open a channel-list gather for `reply` over `waiting` shards; returns its tag.
    pub fn start_channels(&mut self, reply: ReplyTo, waiting: usize) -> u64 {
        let tag = self.tag();
        self.channels.insert(
            tag,
            ChannelGather {
                reply,
                waiting,
                counts: HashMap::new(),
            },
        );
        tag
    }

    /// Open a connection lookup for `reply` over `waiting` shards; returns its tag.
    pub fn start_conns(&mut self, reply: ReplyTo, lookup: Lookup, waiting: usize) -> u64 {
        let tag = self.tag();
        self.conns.insert(
            tag,
            ConnGather {
                reply,
                lookup,
                waiting,
                conns: Vec::new(),
            },
        );
        tag
    }

    /// Add one shard's connections to lookup `tag`; returns the lookup once complete.
    pub fn on_conn_part(&mut self, tag: u64, conns: Vec<ConnInfo>) -> Option<ConnGather> {
        let g = self.conns.get_mut(&tag)?;
        g.conns.extend(conns);
        g.waiting = g.waiting.saturating_sub(1);
        if g.waiting == 0 {
            return self.conns.remove(&tag);
        }
        None
    }

    fn tag(&mut self) -> u64 {
        self.next_tag += 1;
        self.next_tag
    }

    /// Add one shard's members to gather `tag`; returns the gather once complete.
    pub fn on_presence_part(&mut self, tag: u64, members: Vec<Member>) -> Option<Gather> {
        let g = self.presence.get_mut(&tag)?;
        g.members.extend(members);
        g.waiting = g.waiting.saturating_sub(1);
        if g.waiting == 0 {
            return self.presence.remove(&tag);
        }
        None
    }

    /// Add one shard's counts to gather `tag`; returns the gather once complete.
    pub fn on_channel_part(
        &mut self,
        tag: u64,
        counts: Vec<(Arc<str>, u64)>,
    ) -> Option<ChannelGather> {
        let g = self.channels.get_mut(&tag)?;
        for (name, n) in counts {
            *g.counts.entry(name).or_default() += n;
        }
        g.waiting = g.waiting.saturating_sub(1);
        if g.waiting == 0 {
            return self.channels.remove(&tag);
        }
        None
    }
}
