//! `Mesh`: the shards' inbound queues and wake-ups, the only thing shards share on the data path.
//!
//! One bounded lock-free queue (crossbeam `ArrayQueue`) per destination shard, fed by every
//! other shard: N queues instead of N² pairs keep memory and the destination's polling linear in
//! the shard count, and since the queue is FIFO, the messages one shard pushes come out in the
//! order it pushed them (what per-source ordering needs). A full queue is refused (`busy`), never
//! grown. After pushing, the sender wakes the destination's loop once per turn (mio `Waker`).

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use mio::Waker;

use frame_simd::CloseCode;

use crate::conn::ConnId;

use super::fanout::Delivery;
use super::history::{Answer, Want};
use super::Member;

/// Where a deferred answer goes: the requesting connection and its request's `id` (JSON text).
#[derive(Clone, Debug)]
pub struct ReplyTo {
    /// The requester (on the shard that gets the answer).
    pub conn: ConnId,
    /// The request's id as JSON text (empty: none).
    pub id: Box<[u8]>,
}

/// A publication to a channel with history, on its way to the channel's owner shard (which
/// gives it its offset, keeps it and fans it out). Its texts share one allocation.
#[derive(Debug)]
pub struct Publication {
    /// The channel, the data (JSON text), the bare data and the user, back to back.
    text: Box<[u8]>,
    channel_end: usize,
    data_end: usize,
    bare_end: usize,
    /// The publishing connection (`None`: the API).
    pub from: Option<ConnId>,
    /// Not delivered to this connection (`skip_self`).
    pub skip: Option<ConnId>,
    /// The publisher's user is known (it is the text's last part).
    has_user: bool,
}

impl Publication {
    /// `data` (JSON text) and `bare` (what bare subscribers get) for `channel`, from `from` and
    /// `user`, not to be delivered to `skip`.
    pub fn new(
        channel: &str,
        data: &[u8],
        bare: &[u8],
        from: Option<ConnId>,
        user: Option<&str>,
        skip: Option<ConnId>,
    ) -> Publication {
        let user = user.unwrap_or_default();
        let mut text = Vec::with_capacity(channel.len() + data.len() + bare.len() + user.len());
        for part in [channel.as_bytes(), data, bare, user.as_bytes()] {
            text.extend_from_slice(part);
        }
        Publication {
            text: text.into_boxed_slice(),
            channel_end: channel.len(),
            data_end: channel.len() + data.len(),
            bare_end: channel.len() + data.len() + bare.len(),
            from,
            skip,
            has_user: !user.is_empty(),
        }
    }

    /// The channel.
    pub fn channel(&self) -> &str {
        // The bytes came from a `&str`, so this never fails (and an empty name matches no
        // channel if it did).
        std::str::from_utf8(&self.text[..self.channel_end]).unwrap_or_default()
    }

    /// The data as JSON text.
    pub fn data(&self) -> &[u8] {
        &self.text[self.channel_end..self.data_end]
    }

    /// What bare subscribers get.
    pub fn bare(&self) -> &[u8] {
        &self.text[self.data_end..self.bare_end]
    }

    /// The publisher's user.
    pub fn user(&self) -> Option<&str> {
        let user = std::str::from_utf8(&self.text[self.bare_end..]).ok();
        user.filter(|_| self.has_user)
    }
}

/// Whom a connection lookup describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// One connection.
    Conn(ConnId),
    /// Every connection of a user.
    User(Arc<str>),
}

/// One connection as a lookup describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnInfo {
    /// Its id.
    pub conn: ConnId,
    /// Its user, when known.
    pub user: Option<Arc<str>>,
    /// The channels it is subscribed to, in the order it subscribed (most recent last, except
    /// that leaving one moves the last into its place).
    pub channels: Vec<Arc<str>>,
}

/// A message between shards (or from the hooks thread).
#[derive(Debug)]
pub enum ShardMsg {
    /// A backend call's answer, for the connection that made the call.
    Hook(Box<crate::hooks::Answer>),
    /// A publication for the owner of its channel's history.
    Publish(Box<Publication>),
    /// Ask the owner of `channel`'s history for `want`.
    HistoryQuery {
        /// The channel.
        channel: Arc<str>,
        /// The asking shard.
        from: u8,
        /// The query's tag on that shard.
        tag: u64,
        /// What it asks.
        want: Want,
    },
    /// The owner's answer to a `HistoryQuery`.
    HistoryAnswer {
        /// The query's tag.
        tag: u64,
        /// The stream's position and the publications asked for.
        answer: Box<Answer<Arc<Delivery>>>,
    },
    /// The history query `tag` could not be answered (the broker's history store is down or
    /// slow).
    HistoryFailed {
        /// The query's tag.
        tag: u64,
    },
    /// Deliver to the local subscribers of a channel.
    Deliver(Arc<Delivery>),
    /// `shard` has (`on`) or no longer has subscribers of `channel`.
    Interest {
        /// The channel.
        channel: Arc<str>,
        /// The announcing shard.
        shard: u8,
        /// Gained its first or lost its last subscriber.
        on: bool,
    },
    /// Deliver `frame` to one connection, and tell `reply` whether it existed.
    Direct {
        /// The target.
        to: ConnId,
        /// The complete frame.
        frame: Arc<[u8]>,
        /// Who waits for the outcome.
        reply: Option<ReplyTo>,
    },
    /// The outcome of a `Direct`.
    DirectOutcome {
        /// The requester.
        reply: ReplyTo,
        /// The target was live and got the frame.
        delivered: bool,
    },
    /// List the local subscribers of a channel for a presence query.
    PresenceQuery {
        /// The channel.
        channel: Arc<str>,
        /// The requester's shard and gather tag.
        from: u8,
        /// The gather's tag on that shard.
        tag: u64,
    },
    /// One shard's part of a presence answer.
    PresencePart {
        /// The gather's tag.
        tag: u64,
        /// Local subscribers and their users.
        members: Vec<Member>,
    },
    /// Deliver `frame` to every local connection of `user`.
    DirectUser {
        /// The user.
        user: Arc<str>,
        /// The complete frame.
        frame: Arc<[u8]>,
    },
    /// Close every local connection of `user`.
    CloseUser {
        /// The user.
        user: Arc<str>,
        /// The close code.
        code: CloseCode,
        /// The close reason.
        reason: Box<str>,
    },
    /// Count the local subscribers of every channel for a channel list.
    ChannelQuery {
        /// The requester's shard.
        from: u8,
        /// The gather's tag on that shard.
        tag: u64,
    },
    /// One shard's part of a channel list.
    ChannelPart {
        /// The gather's tag.
        tag: u64,
        /// Channels and local subscriber counts.
        counts: Vec<(Arc<str>, u64)>,
    },
    /// Describe local connections (one by id, or every one of a user) for a lookup.
    ConnQuery {
        /// Whom to describe.
        lookup: Lookup,
        /// The requester's shard.
        from: u8,
        /// The gather's tag on that shard.
        tag: u64,
    },
    /// One shard's part of a connection lookup.
    ConnPart {
        /// The gather's tag.
        tag: u64,
        /// The connections found on that shard.
        conns: Vec<ConnInfo>,
    },
    /// A Socket.IO long-polling request, or a message of the WebSocket carrying the session,
    /// for the shard owning the session.
    Poll {
        /// The session (its entry on the owner shard).
        session: ConnId,
        /// The connection that asks (a polling request, or the WebSocket).
        from: ConnId,
        /// What it asks.
        what: PollWhat,
    },
    /// The owner's answer to a polling request: the HTTP status and body for connection `to`.
    PollAnswer {
        /// The polling request's connection.
        to: ConnId,
        /// The HTTP status (200, or 400 with an Engine.IO error body).
        status: u16,
        /// The body (a payload of packets, `ok`, or the error's JSON).
        body: Box<[u8]>,
    },
    /// Close one connection with a code (backend disconnect).
    Close {
        /// The target.
        conn: ConnId,
        /// The close code (4000-4999 from the API).
        code: CloseCode,
        /// The close reason.
        reason: Box<str>,
        /// Who waits to learn whether the connection existed.
        reply: Option<ReplyTo>,
    },
}

/// What a Socket.IO long-polling session's owner shard is asked to do (see `app::sio::polling`).
#[derive(Debug)]
pub enum PollWhat {
    /// A handshake: open a new session on this shard (`session` is the asking connection).
    Open,
    /// A `GET`: answer with the packets waiting, or hold it until some are.
    Get,
    /// A `POST` with its body (a payload of packets).
    Post(Box<[u8]>),
    /// A message on the WebSocket that probes or carries the session.
    Message {
        /// A binary frame (else text).
        binary: bool,
        /// The message.
        payload: Box<[u8]>,
    },
    /// The connection that probes or carries the session, or waits for its answer, has closed.
    Gone,
}

/// The queues and wakers of all shards.
pub struct Mesh {
    inboxes: Box<[ArrayQueue<ShardMsg>]>,
    wakers: Box<[Option<Arc<Waker>>]>,
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field("shards", &self.inboxes.len())
            .finish()
    }
}

impl Mesh {
    /// Queues of `capacity` messages for each shard, woken through `wakers` (one per shard;
    /// `None` in tests that poll by hand).
    pub fn new(capacity: usize, wakers: Vec<Option<Arc<Waker>>>) -> Mesh {
        let inboxes = (0..wakers.len())
            .map(|_| ArrayQueue::new(capacity.max(1)))
            .collect();
        Mesh {
            inboxes,
            wakers: wakers.into_boxed_slice(),
        }
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.inboxes.len()
    }

    /// Queue `msg` for shard `to`; gives it back when the queue is full (or `to` is no shard).
    pub fn push(&self, to: u8, msg: ShardMsg) -> Result<(), ShardMsg> {
        match self.inboxes.get(usize::from(to)) {
            Some(q) => q.push(msg),
            None => Err(msg),
        }
    }

    /// The next message for shard `me`.
    pub fn pop(&self, me: u8) -> Option<ShardMsg> {
        self.inboxes.get(usize::from(me))?.pop()
    }

    /// Messages waiting for shard `shard` (for the queue-depth gauge).
    pub fn depth(&self, shard: u8) -> usize {
        self.inboxes
            .get(usize::from(shard))
            .map_or(0, ArrayQueue::len)
    }

    /// Wake shard `shard`'s loop.
    pub fn wake(&self, shard: u8) {
        if let Some(Some(w)) = self.wakers.get(usize::from(shard)) {
            let _ = w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interest(n: u8) -> ShardMsg {
        ShardMsg::Interest {
            channel: Arc::from("c"),
            shard: n,
            on: true,
        }
    }

    #[test]
    fn a_publication_gives_back_its_parts() {
        let from = Some(ConnId::new(1, 2, 3));
        let p = Publication::new("chat:1", b"{\"a\":1}", b"x", from, Some("ann"), None);
        assert_eq!(p.channel(), "chat:1");
        assert_eq!(
            (p.data(), p.bare(), p.user()),
            (&b"{\"a\":1}"[..], &b"x"[..], Some("ann"))
        );
        assert_eq!((p.from, p.skip), (from, None));
        let p = Publication::new("c", b"\"\"", b"", None, None, from);
        assert_eq!(
            (p.data(), p.bare(), p.user()),
            (&b"\"\""[..], &b""[..], None)
        );
        assert_eq!(p.skip, from);
    }

    #[test]
    fn a_full_queue_refuses_and_order_is_kept() {
        let mesh = Mesh::new(2, vec![None, None]);
        assert!(mesh.push(1, interest(1)).is_ok());
        assert!(mesh.push(1, interest(2)).is_ok());
        assert!(mesh.push(1, interest(3)).is_err(), "bounded");
        assert!(mesh.push(9, interest(1)).is_err(), "no such shard");
        assert_eq!(mesh.depth(1), 2);
        let order: Vec<u8> = std::iter::from_fn(|| mesh.pop(1))
            .map(|m| match m {
                ShardMsg::Interest { shard, .. } => shard,
                _ => 0,
            })
            .collect();
        assert_eq!(order, vec![1, 2]);
        assert!(mesh.pop(0).is_none());
    }
}
