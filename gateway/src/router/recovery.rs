//! `Queries`: what this shard waits for from the owners of channels' history, by tag. A
//! subscription to a channel with history waits for its position (and, when it recovers, the
//! replay) while its live deliveries are held in a [`Merge`]; a history read waits for the
//! publications. The subscription's channel lists it in `Channel::held`, so the delivery loop
//! looks here only for channels that have such a subscriber.

use std::collections::HashMap;
use std::sync::Arc;

use crate::conn::ConnId;

use super::channels::ChanKey;
use super::inbox::ReplyTo;
use super::merge::Merge;

/// One query waiting for an owner.
#[derive(Debug)]
pub enum Query {
    /// A `/ws` subscribe: the reply carries the position.
    Subscribe {
        /// The subscriber.
        conn: ConnId,
        /// Its channel's key in this shard's table.
        key: ChanKey,
        /// Where the reply goes.
        reply: ReplyTo,
        /// It asked to recover from a position.
        recover: bool,
        /// The live deliveries held meanwhile (JSON frames).
        merge: Merge<Arc<[u8]>>,
    },
    /// A history read (`/ws` `history`, `GET /api/history`).
    Read {
        /// Where the answer goes.
        reply: ReplyTo,
        /// The channel.
        channel: Arc<str>,
    },
}

/// One shard's open queries.
#[derive(Debug, Default)]
pub struct Queries {
    open: HashMap<u64, Query>,
    next_tag: u64,
}

impl Queries {
    /// Open `query`; returns its tag.
    pub fn start(&mut self, query: Query) -> u64 {
        self.next_tag += 1;
        self.open.insert(self.next_tag, query);
        self.next_tag
    }

    /// A live delivery at `offset` for the subscription waiting as `tag`.
    pub fn hold(&mut self, tag: u64, offset: u64, frame: &Arc<[u8]>) {
        if let Some(Query::Subscribe { merge, .. }) = self.open.get_mut(&tag) {
            merge.on_live(offset, Arc::clone(frame));
        }
    }

    /// Close query `tag` (answered, or its subscriber left).
    pub fn take(&mut self, tag: u64) -> Option<Query> {
        self.open.remove(&tag)
    }

    /// Queries open.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// True when none is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}
