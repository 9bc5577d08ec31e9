//! `Session`: what one connection adds for the router: how it receives, its user and its
//! channels. Kept inline in the shard's connection entry and small (40 bytes, the keys of up to
//! four channels inline; 4 more per channel past that, on the heap; the user as a key into the
//! shard's user table), so an idle subscriber costs little and a connection on a few channels
//! allocates nothing for them.

use std::sync::Arc;

use smallvec::SmallVec;

use crate::auth::Claims;

use super::channels::{ChanKey, Kind};
use super::users::UserKey;

/// One connection's router state.
#[derive(Debug, Default)]
pub struct Session {
    /// How deliveries reach it (`None`: not a push connection, e.g. `/echo`).
    pub kind: Option<Kind>,
    /// The user, when known (token subject or anonymous nickname): its key in the shard's user
    /// table (`Router::user` gives the name).
    pub(super) user: Option<UserKey>,
    /// Keys of the channels it is subscribed to, in the shard's channel table (inline up to
    /// four: most connections subscribe to one or two).
    pub channels: SmallVec<[ChanKey; 4]>,
    /// Queued for a flush at the end of the shard's turn.
    pub flush_queued: bool,
    /// The verified token's claims (`None`: anonymous, allowed everywhere).
    pub grants: Option<Arc<Claims>>,
}

impl Session {
    /// Whether it is subscribed to the channel `key`.
    pub fn has(&self, key: ChanKey) -> bool {
        self.channels.contains(&key)
    }

    /// Whether the connection may subscribe to `channel`.
    pub fn may_subscribe(&self, channel: &str) -> bool {
        self.grants
            .as_ref()
            .is_none_or(|c| c.channels.allows(channel))
    }

    /// Whether the connection may publish on `channel`.
    pub fn may_publish(&self, channel: &str) -> bool {
        self.grants
            .as_ref()
            .is_none_or(|c| c.publish.allows(channel))
    }

    /// When its token expires (seconds since the Unix epoch), if it has one.
    pub fn expires_at(&self) -> Option<u64> {
        self.grants.as_ref().map(|c| c.exp)
    }
}
