//! `Users`: this shard's connections by user name, for publishes to a user and disconnects by
//! user. A connection has at most one user (a token's subject or an anonymous nickname); its
//! session remembers which, so leaving is one lookup.

use std::collections::HashMap;
use std::sync::Arc;

use crate::conn::ConnId;

use super::session::Session;

/// One shard's user table.
#[derive(Debug, Default)]
pub struct Users {
    by_name: HashMap<Arc<str>, Vec<ConnId>>,
}

impl Users {
    /// Make `user` the user of connection `id` (replacing the one its session had).
    pub fn set(&mut self, id: ConnId, session: &mut Session, user: Arc<str>) {
        self.forget(id, session);
        self.by_name.entry(Arc::clone(&user)).or_default().push(id);
        session.user = Some(user);
    }

    /// Connection `id` is gone: drop it from its user's list.
    pub fn forget(&mut self, id: ConnId, session: &Session) {
        let Some(user) = &session.user else {
            return;
        };
        if let Some(ids) = self.by_name.get_mut(user) {
            ids.retain(|&c| c != id);
            if ids.is_empty() {
                self.by_name.remove(user);
            }
        }
    }

    /// This shard's connections of `user`.
    pub fn conns(&self, user: &str) -> &[ConnId] {
        self.by_name.get(user).map_or(&[], Vec::as_slice)
    }
}
