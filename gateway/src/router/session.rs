//! `Session`: what one connection adds for the router: how it receives, its user and its
//! channels. Kept inline in the shard's connection entry and small (32 bytes: the keys of up to
//! three channels inline in 16 bytes, [`ChanKeys`]; 4 more per channel past that, on the heap;
//! the user as a key into the shard's user table), so an idle subscriber costs little and a
//! connection on a few channels allocates nothing for them.

use std::sync::Arc;

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
    /// three: most connections subscribe to one or two).
    pub channels: ChanKeys,
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

/// Channel keys kept inline.
const INLINE_KEYS: usize = 3;

/// A session's channel keys: up to three inline, more in a vector on the heap, in 16 bytes
/// (a general small vector spends a word on its capacity and takes 24 bytes for the same
/// three keys, in every connection). Removal moves the last key into the gap, as
/// `Vec::swap_remove` does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChanKeys {
    /// `len` keys at the start of `keys`.
    Inline {
        len: u8,
        keys: [ChanKey; INLINE_KEYS],
    },
    /// More than fit inline once (it stays on the heap until the session ends).
    Heap(Box<Vec<ChanKey>>),
}

impl Default for ChanKeys {
    fn default() -> Self {
        ChanKeys::Inline {
            len: 0,
            keys: [0; INLINE_KEYS],
        }
    }
}

impl ChanKeys {
    /// The keys, in the order kept.
    pub fn as_slice(&self) -> &[ChanKey] {
        match self {
            ChanKeys::Inline { len, keys } => keys.get(..usize::from(*len)).unwrap_or(&[]),
            ChanKeys::Heap(v) => v,
        }
    }

    /// The keys, one by one.
    pub fn iter(&self) -> std::slice::Iter<'_, ChanKey> {
        self.as_slice().iter()
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `key` is one of them.
    pub fn contains(&self, key: &ChanKey) -> bool {
        self.as_slice().contains(key)
    }

    /// Add `key` at the end.
    pub fn push(&mut self, key: ChanKey) {
        match self {
            ChanKeys::Inline { len, keys } => match keys.get_mut(usize::from(*len)) {
                Some(slot) => {
                    *slot = key;
                    *len += 1;
                }
                None => {
                    let mut v = Vec::with_capacity(INLINE_KEYS * 2);
                    v.extend_from_slice(keys);
                    v.push(key);
                    *self = ChanKeys::Heap(Box::new(v));
                }
            },
            ChanKeys::Heap(v) => v.push(key),
        }
    }

    /// Remove the key at `at`, moving the last one into its place; `None` past the end.
    pub fn swap_remove(&mut self, at: usize) -> Option<ChanKey> {
        match self {
            ChanKeys::Inline { len, keys } => {
                let last = usize::from(*len).checked_sub(1)?;
                if at > last {
                    return None;
                }
                keys.swap(at, last);
                *len -= 1;
                keys.get(last).copied()
            }
            ChanKeys::Heap(v) => (at < v.len()).then(|| v.swap_remove(at)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_inline_up_to_three_and_move_to_the_heap_after() {
        let mut k = ChanKeys::default();
        assert!(k.is_empty());
        for key in [10, 11, 12] {
            k.push(key);
        }
        assert!(matches!(k, ChanKeys::Inline { len: 3, .. }));
        assert_eq!(k.as_slice(), &[10, 11, 12]);
        k.push(13);
        assert!(matches!(k, ChanKeys::Heap(_)));
        assert_eq!(k.as_slice(), &[10, 11, 12, 13]);
        assert_eq!(k.swap_remove(0), Some(10));
        assert_eq!(k.as_slice(), &[13, 11, 12]);
        assert_eq!(k.swap_remove(3), None);
        assert!(k.contains(&11) && !k.contains(&10));
        assert_eq!(std::mem::size_of::<ChanKeys>(), 16);
    }

    #[test]
    fn removal_moves_the_last_key_into_the_gap() {
        let mut k = ChanKeys::default();
        assert_eq!(k.swap_remove(0), None, "nothing to remove");
        for key in [1, 2, 3] {
            k.push(key);
        }
        assert_eq!(k.swap_remove(0), Some(1));
        assert_eq!(k.as_slice(), &[3, 2]);
        assert_eq!(k.swap_remove(2), None);
        assert_eq!(k.swap_remove(1), Some(2));
        assert_eq!(k.swap_remove(0), Some(3));
        assert!(k.is_empty());
        k.push(4);
        assert_eq!(k.iter().copied().collect::<Vec<_>>(), vec![4]);
    }
}
