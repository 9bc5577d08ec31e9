//! `Users`: this shard's connections by user name, for publishes to a user and disconnects by
//! user. A connection has at most one user (a token's subject or an anonymous nickname); its
//! session keeps the user's [`UserKey`] in this table (4 bytes instead of the name's 16-byte
//! shared pointer in every connection), so leaving is one index and the name is one away.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use crate::conn::ConnId;

use super::session::Session;

/// A user's place in its shard's [`Users`] table: valid while the user has a connection on the
/// shard (a session holds one only then).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserKey(NonZeroU32);

impl UserKey {
    fn index(self) -> usize {
        self.0.get() as usize - 1
    }
}

/// One user with connections on this shard.
#[derive(Debug)]
struct User {
    name: Arc<str>,
    conns: Vec<ConnId>,
}

/// One shard's user table.
#[derive(Debug, Default)]
pub struct Users {
    by_name: HashMap<Arc<str>, UserKey>,
    slots: Vec<Option<User>>,
    free: Vec<UserKey>,
}

impl Users {
    /// Make `user` the user of connection `id` (replacing the one its session had).
    pub fn set(&mut self, id: ConnId, session: &mut Session, user: Arc<str>) {
        self.forget(id, session);
        let key = match self.by_name.get(&*user) {
            Some(&key) => key,
            None => {
                let entry = User {
                    name: Arc::clone(&user),
                    conns: Vec::new(),
                };
                let key = match self.free.pop() {
                    Some(key) => {
                        self.slots[key.index()] = Some(entry);
                        key
                    }
                    None => {
                        self.slots.push(Some(entry));
                        // A shard's users are fewer than its connections (< 2^24).
                        let n = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
                        UserKey(NonZeroU32::MIN.saturating_add(n - 1))
                    }
                };
                self.by_name.insert(user, key);
                key
            }
        };
        if let Some(Some(u)) = self.slots.get_mut(key.index()) {
            u.conns.push(id);
        }
        session.user = Some(key);
    }

    /// Connection `id` is gone: drop it from its user's list (and the user, if it was the
    /// last), and the user from its session.
    pub fn forget(&mut self, id: ConnId, session: &mut Session) {
        let Some(key) = session.user.take() else {
            return;
        };
        let Some(slot) = self.slots.get_mut(key.index()) else {
            return;
        };
        let Some(u) = slot else {
            return;
        };
        u.conns.retain(|&c| c != id);
        if u.conns.is_empty() {
            self.by_name.remove(&u.name);
            *slot = None;
            self.free.push(key);
        }
    }

    /// The name of the user `key` names.
    pub fn name(&self, key: UserKey) -> Option<&Arc<str>> {
        self.slots.get(key.index())?.as_ref().map(|u| &u.name)
    }

    /// This shard's connections of `user`.
    pub fn conns(&self, user: &str) -> &[ConnId] {
        self.by_name
            .get(user)
            .and_then(|&k| self.slots.get(k.index())?.as_ref())
            .map_or(&[], |u| u.conns.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_keeps_its_key_while_it_has_connections_and_the_key_is_reused_after() {
        let mut users = Users::default();
        let (a, b, c) = (
            ConnId::new(0, 1, 0),
            ConnId::new(0, 2, 0),
            ConnId::new(0, 3, 0),
        );
        let (mut sa, mut sb, mut sc) = (Session::default(), Session::default(), Session::default());
        users.set(a, &mut sa, Arc::from("ann"));
        users.set(b, &mut sb, Arc::from("ann"));
        assert_eq!(sa.user, sb.user, "one entry per user");
        let key = sa.user.expect("set");
        assert_eq!(users.name(key).map(|n| &**n), Some("ann"));
        users.forget(a, &mut sa);
        assert_eq!(sa.user, None, "a session forgets its user");
        assert_eq!(users.conns("ann"), &[b]);
        users.forget(b, &mut sb);
        assert!(users.conns("ann").is_empty());
        assert_eq!(users.name(key), None, "gone with its last connection");
        users.set(c, &mut sc, Arc::from("bob"));
        assert_eq!(sc.user, Some(key), "the freed key is reused");
        assert_eq!(users.name(key).map(|n| &**n), Some("bob"));
        users.forget(a, &mut sa);
        assert_eq!(users.conns("bob"), &[c], "forgetting twice changes nothing");
    }

    #[test]
    fn a_new_user_replaces_the_old_one() {
        let mut users = Users::default();
        let a = ConnId::new(0, 1, 0);
        let mut s = Session::default();
        users.set(a, &mut s, Arc::from("ann"));
        users.set(a, &mut s, Arc::from("bob"));
        assert!(users.conns("ann").is_empty());
        assert_eq!(users.conns("bob"), &[a]);
        assert_eq!(
            s.user.and_then(|k| users.name(k)).map(|n| &**n),
            Some("bob")
        );
    }
}
