//! The broadcast registry of the tokio-based peers: one unbounded channel per subscriber, the
//! senders in a map behind a mutex. This is the shape the libraries' own chat examples use; a
//! publish clones a reference-counted payload into every other subscriber's channel, so no
//! message is dropped for a slow reader (unlike `tokio::sync::broadcast`, which skips ahead).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc::UnboundedSender;

/// Identifies one subscriber in a [`Hub`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SubscriberId(u64);

/// Every open broadcast-mode connection's outgoing channel.
pub struct Hub<T> {
    inner: Arc<Mutex<Subscribers<T>>>,
}

struct Subscribers<T> {
    next_id: u64,
    senders: HashMap<SubscriberId, UnboundedSender<T>>,
}

impl<T> Clone for Hub<T> {
    fn clone(&self) -> Self {
        Hub {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> Default for Hub<T> {
    fn default() -> Self {
        Hub {
            inner: Arc::new(Mutex::new(Subscribers {
                next_id: 0,
                senders: HashMap::new(),
            })),
        }
    }
}

impl<T: Clone> Hub<T> {
    /// Add a subscriber whose messages go to `sender`; it receives every later publish.
    pub fn join(&self, sender: UnboundedSender<T>) -> SubscriberId {
        let mut subs = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let id = SubscriberId(subs.next_id);
        subs.next_id += 1;
        subs.senders.insert(id, sender);
        id
    }

    /// Remove a subscriber; its channel closes once the last message queued for it is taken.
    pub fn leave(&self, id: SubscriberId) {
        let mut subs = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        subs.senders.remove(&id);
    }

    /// Queue `message` for every subscriber except `from`. Returns how many it was queued for.
    pub fn publish(&self, from: SubscriberId, message: &T) -> usize {
        let subs = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut queued = 0;
        for (id, sender) in &subs.senders {
            if *id != from && sender.send(message.clone()).is_ok() {
                queued += 1;
            }
        }
        queued
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc::unbounded_channel;

    #[test]
    fn publish_reaches_every_subscriber_but_the_sender() {
        let hub = Hub::default();
        let (tx_a, mut rx_a) = unbounded_channel();
        let (tx_b, mut rx_b) = unbounded_channel();
        let a = hub.join(tx_a);
        let b = hub.join(tx_b);
        assert_eq!(hub.publish(a, &1), 1);
        assert_eq!(hub.publish(b, &2), 1);
        assert_eq!(rx_a.try_recv(), Ok(2));
        assert_eq!(rx_b.try_recv(), Ok(1));
        assert!(rx_a.try_recv().is_err() && rx_b.try_recv().is_err());
        hub.leave(a);
        assert_eq!(hub.publish(b, &3), 0);
    }
}
