//! The gateway's messages between nodes, as they travel in the payload of a broker publish.
//! Sans-IO: [`encode`] appends one message to a buffer, [`decode`] reads one back and refuses
//! anything malformed (`None`) without panicking, since any client of the broker could publish.
//!
//! Layout: a version byte, a kind byte, then the kind's fields in order; integers are
//! little-endian, byte strings a `u32` length then the bytes, an optional id a flag byte then
//! the id. A publication carries its parts, not a frame: the receiving node encodes its
//! delivery once, as for a local publish. Its bare text (what `/raw` subscribers get) follows a
//! flag byte and is left out when it equals the data (any JSON but a string), so it never
//! travels twice for nothing; the layout stays canonical (one encoding per message).
//!
//! A publication to a channel whose history Redis keeps (`broker::history`) travels as a
//! [`Msg::Numbered`]: the node writes its head ([`encode_numbered_head`]) and the publish script
//! appends the stream's epoch (16 hex digits), the offset it gave (decimal) and `;`, so the bytes
//! Redis stores and publishes are one message every node decodes alike.

use crate::conn::ConnId;
use crate::router::history::Epoch;

/// The layout's version (the first byte).
const VERSION: u8 = 1;

/// One message between nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Msg<'a> {
    /// A publication to a channel (the broker channel names it).
    Publish {
        /// The publishing node (which served its own subscribers).
        origin: u16,
        /// The publishing connection (`None`: the API).
        from: Option<ConnId>,
        /// The publisher's user.
        user: Option<&'a str>,
        /// The data as JSON text.
        data: &'a [u8],
        /// What bare subscribers get.
        bare: &'a [u8],
    },
    /// A connection joined or left a channel (the broker channel names it).
    Presence {
        /// The node of the connection.
        origin: u16,
        /// Joined (true) or left.
        join: bool,
        /// The connection.
        conn: ConnId,
        /// Its user.
        user: Option<&'a str>,
    },
    /// A private frame for one connection of the receiving node.
    Direct {
        /// The target.
        to: ConnId,
        /// The requester and its tag on its node.
        reply: Option<(ConnId, &'a [u8])>,
        /// The complete frame.
        frame: &'a [u8],
    },
    /// The outcome of a `Direct` or `Close` for a requester of the receiving node.
    Outcome {
        /// The requester.
        conn: ConnId,
        /// The tag its node gave the request.
        tag: &'a [u8],
        /// The target was live.
        delivered: bool,
    },
    /// Close one connection of the receiving node.
    Close {
        /// The target.
        conn: ConnId,
        /// The close code.
        code: u16,
        /// The close reason.
        reason: &'a str,
        /// The requester and its tag on its node.
        reply: Option<(ConnId, &'a [u8])>,
    },
    /// Deliver a frame to every connection of a user.
    User {
        /// The sending node (which served its own connections).
        origin: u16,
        /// The user.
        user: &'a str,
        /// The complete frame.
        frame: &'a [u8],
    },
    /// Frames encoded once on the origin node (Socket.IO events), delivered as they are to the
    /// subscribers of the topic's channel.
    Frames {
        /// The publishing node.
        origin: u16,
        /// Not delivered to this connection.
        skip: Option<ConnId>,
        /// The complete WebSocket frames.
        frames: &'a [u8],
    },
    /// Close every connection of a user.
    CloseUser {
        /// The sending node.
        origin: u16,
        /// The user.
        user: &'a str,
        /// The close code.
        code: u16,
        /// The close reason.
        reason: &'a str,
    },
    /// Which members of `channel` does each node have? (Brokers without storage: every node
    /// answers the asking node with [`Msg::PresenceAnswer`].)
    PresenceAsk {
        /// The asking node.
        origin: u16,
        /// The query's id on that node.
        id: u64,
        /// The channel.
        channel: &'a str,
    },
    /// One part of a node's answer to a [`Msg::PresenceAsk`].
    PresenceAnswer {
        /// The answering node.
        origin: u16,
        /// The query's id on the asking node.
        id: u64,
        /// The node's last part for this query.
        last: bool,
        /// Members, as [`encode_member`] wrote them (checked by [`decode`]; read with
        /// [`members`]).
        members: &'a [u8],
    },
    /// A node asks every other node for its channels (`GET /api/channels`); each answers on
    /// the asking node's topic.
    ChannelsAsk {
        /// The asking node.
        origin: u16,
        /// The asking node's query id.
        id: u64,
    },
    /// A node's channels with their subscriber counts on that node, for query `id`.
    ChannelsAnswer {
        /// The answering node.
        origin: u16,
        /// The query id.
        id: u64,
        /// The list, as [`encode_counts`] writes it ([`decode_counts`] reads it).
        counts: &'a [u8],
    },
    /// A publication numbered by the shared history: like `Publish`, plus the publisher that
    /// asked not to get it and the position the publish script gave it.
    Numbered {
        /// The publishing node.
        origin: u16,
        /// The publishing connection (`None`: the API).
        from: Option<ConnId>,
        /// Not delivered to this connection (`skip_self`).
        skip: Option<ConnId>,
        /// The publisher's user.
        user: Option<&'a str>,
        /// The data as JSON text.
        data: &'a [u8],
        /// What bare subscribers get.
        bare: &'a [u8],
        /// The channel's stream.
        epoch: Epoch,
        /// The publication's offset in it (1 or more).
        offset: u64,
    },
    /// A node is alive.
    Heartbeat {
        /// The node.
        origin: u16,
        /// A number drawn at start: two processes with one node id tell each other apart.
        instance: u64,
    },
}

const PUBLISH: u8 = b'P';
const DIRECT: u8 = b'D';
const OUTCOME: u8 = b'O';
const CLOSE: u8 = b'C';
const USER: u8 = b'U';
const CLOSE_USER: u8 = b'K';
const HEARTBEAT: u8 = b'H';
const FRAMES: u8 = b'F';
const PRESENCE: u8 = b'E';
const PRESENCE_ASK: u8 = b'Q';
const PRESENCE_ANSWER: u8 = b'A';
const CHANNELS_ASK: u8 = b'L';
const CHANNELS_ANSWER: u8 = b'S';
const NUMBERED: u8 = b'N';
/// Digits of an epoch at the end of a numbered publication.
const EPOCH_DIGITS: usize = 16;
/// Most digits of an offset (`u64::MAX` has 20).
const OFFSET_DIGITS: usize = 20;

struct Writer<'o>(&'o mut Vec<u8>);

impl Writer<'_> {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        // Broker payloads are far below 4 GiB (the API and frame limits see to it).
        self.0
            .extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_le_bytes());
        self.0.extend_from_slice(b);
        self
    }
    fn conn(&mut self, c: Option<ConnId>) -> &mut Self {
        match c {
            Some(c) => self.u8(1).u64(c.to_bits()),
            None => self.u8(0),
        }
    }
    fn reply(&mut self, r: Option<(ConnId, &[u8])>) -> &mut Self {
        match r {
            Some((c, tag)) => self.u8(1).u64(c.to_bits()).bytes(tag),
            None => self.u8(0),
        }
    }
    /// A publication's user, data and bare text (left out when it equals the data).
    fn publication(&mut self, user: Option<&str>, data: &[u8], bare: &[u8]) -> &mut Self {
        match user {
            Some(u) => self.u8(1).bytes(u.as_bytes()),
            None => self.u8(0),
        };
        self.bytes(data);
        if bare == data {
            self.u8(0)
        } else {
            self.u8(1).bytes(bare)
        }
    }
}

/// Append `msg` to `out`.
pub fn encode(msg: &Msg<'_>, out: &mut Vec<u8>) {
    let mut w = Writer(out);
    w.u8(VERSION);
    match *msg {
        Msg::Publish {
            origin,
            from,
            user,
            data,
            bare,
        } => {
            w.u8(PUBLISH)
                .u16(origin)
                .conn(from)
                .publication(user, data, bare);
        }
        Msg::Presence {
            origin,
            join,
            conn,
            user,
        } => {
            w.u8(PRESENCE)
                .u16(origin)
                .u8(u8::from(join))
                .u64(conn.to_bits());
            match user {
                Some(u) => w.u8(1).bytes(u.as_bytes()),
                None => w.u8(0),
            };
        }
        Msg::Direct { to, reply, frame } => {
            w.u8(DIRECT).u64(to.to_bits()).reply(reply).bytes(frame);
        }
        Msg::Outcome {
            conn,
            tag,
            delivered,
        } => {
            w.u8(OUTCOME)
                .u64(conn.to_bits())
                .bytes(tag)
                .u8(u8::from(delivered));
        }
        Msg::Close {
            conn,
            code,
            reason,
            reply,
        } => {
            w.u8(CLOSE)
                .u64(conn.to_bits())
                .u16(code)
                .bytes(reason.as_bytes())
                .reply(reply);
        }
        Msg::User {
            origin,
            user,
            frame,
        } => {
            w.u8(USER).u16(origin).bytes(user.as_bytes()).bytes(frame);
        }
        Msg::CloseUser {
            origin,
            user,
            code,
            reason,
        } => {
            w.u8(CLOSE_USER)
                .u16(origin)
                .bytes(user.as_bytes())
                .u16(code)
                .bytes(reason.as_bytes());
        }
        Msg::Frames {
            origin,
            skip,
            frames,
        } => {
            w.u8(FRAMES).u16(origin).conn(skip).bytes(frames);
        }
        Msg::Heartbeat { origin, instance } => {
            w.u8(HEARTBEAT).u16(origin).u64(instance);
        }
        Msg::PresenceAsk {
            origin,
            id,
            channel,
        } => {
            w.u8(PRESENCE_ASK)
                .u16(origin)
                .u64(id)
                .bytes(channel.as_bytes());
        }
        Msg::PresenceAnswer {
            origin,
            id,
            last,
            members,
        } => {
            w.u8(PRESENCE_ANSWER)
                .u16(origin)
                .u64(id)
                .u8(u8::from(last))
                .bytes(members);
        }
        Msg::ChannelsAsk { origin, id } => {
            w.u8(CHANNELS_ASK).u16(origin).u64(id);
        }
        Msg::ChannelsAnswer { origin, id, counts } => {
            w.u8(CHANNELS_ANSWER).u16(origin).u64(id).bytes(counts);
        }
        Msg::Numbered {
            origin,
            from,
            skip,
            user,
            data,
            bare,
            epoch,
            offset,
        } => {
            let parts = NumberedHead {
                origin,
                from,
                skip,
                user,
                data,
                bare,
            };
            numbered_fields(&mut w, &parts);
            w.0.extend_from_slice(epoch.to_string().as_bytes());
            w.0.extend_from_slice(offset.to_string().as_bytes());
            w.u8(b';');
        }
    }
}

/// Append one presence member (for [`Msg::PresenceAnswer`]): its connection id, then its user
/// as an optional string.
pub fn encode_member(conn: ConnId, user: Option<&str>, out: &mut Vec<u8>) {
    let mut w = Writer(out);
    w.u64(conn.to_bits());
    match user {
        Some(u) => w.u8(1).bytes(u.as_bytes()),
        None => w.u8(0),
    };
}

/// The members [`encode_member`] wrote into `bytes`; `None` unless every byte is used.
pub fn members(bytes: &[u8]) -> Option<Vec<(ConnId, Option<&str>)>> {
    let mut r = Reader(bytes);
    let mut out = Vec::new();
    while !r.0.is_empty() {
        let conn = r.conn()?;
        let user = if r.flag()? { Some(r.str()?) } else { None };
        out.push((conn, user));
    }
    Some(out)
}

/// Append a channel list (name, subscribers) as [`Msg::ChannelsAnswer`] carries it.
pub fn encode_counts<'c>(counts: impl IntoIterator<Item = (&'c str, u64)>, out: &mut Vec<u8>) {
    let mut w = Writer(out);
    for (channel, n) in counts {
        w.bytes(channel.as_bytes()).u64(n);
    }
}

/// The channel list `bytes` hold, or `None` when they are not one.
pub fn decode_counts(bytes: &[u8]) -> Option<Vec<(&str, u64)>> {
    let mut r = Reader(bytes);
    let mut list = Vec::new();
    while !r.0.is_empty() {
        list.push((r.str()?, r.u64()?));
    }
    Some(list)
}

/// What a numbered publication carries before its position.
#[derive(Clone, Copy, Debug)]
pub struct NumberedHead<'a> {
    /// The publishing node.
    pub origin: u16,
    /// The publishing connection.
    pub from: Option<ConnId>,
    /// Not delivered to this connection.
    pub skip: Option<ConnId>,
    /// The publisher's user.
    pub user: Option<&'a str>,
    /// The data as JSON text.
    pub data: &'a [u8],
    /// What bare subscribers get.
    pub bare: &'a [u8],
}

/// Append the head of a [`Msg::Numbered`] to `out`: the message without its epoch and offset,
/// which the publish script appends.
pub fn encode_numbered_head(h: &NumberedHead<'_>, out: &mut Vec<u8>) {
    let mut w = Writer(out);
    w.u8(VERSION);
    numbered_fields(&mut w, h);
}

fn numbered_fields(w: &mut Writer<'_>, h: &NumberedHead<'_>) {
    w.u8(NUMBERED)
        .u16(h.origin)
        .conn(h.from)
        .conn(h.skip)
        .publication(h.user, h.data, h.bare);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.u32()?).ok()?;
        self.take(n)
    }
    fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }
    fn flag(&mut self) -> Option<bool> {
        match self.u8()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
    fn conn(&mut self) -> Option<ConnId> {
        Some(ConnId::from_bits(self.u64()?))
    }
    fn opt_conn(&mut self) -> Option<Option<ConnId>> {
        Some(if self.flag()? {
            Some(self.conn()?)
        } else {
            None
        })
    }
    /// A publication's user, data and bare text; a bare text equal to the data must have been
    /// left out (the layout is canonical).
    #[allow(clippy::type_complexity)]
    fn publication(&mut self) -> Option<(Option<&'a str>, &'a [u8], &'a [u8])> {
        let user = if self.flag()? {
            Some(self.str()?)
        } else {
            None
        };
        let data = self.bytes()?;
        let bare = if self.flag()? {
            Some(self.bytes()?).filter(|b| *b != data)?
        } else {
            data
        };
        Some((user, data, bare))
    }
    fn reply(&mut self) -> Option<Option<(ConnId, &'a [u8])>> {
        Some(if self.flag()? {
            Some((self.conn()?, self.bytes()?))
        } else {
            None
        })
    }
}

/// The message `bytes` hold, or `None` when they are not one (every byte must be used).
pub fn decode(bytes: &[u8]) -> Option<Msg<'_>> {
    let mut r = Reader(bytes);
    if r.u8()? != VERSION {
        return None;
    }
    let msg = match r.u8()? {
        PUBLISH => {
            let origin = r.u16()?;
            let from = r.opt_conn()?;
            let (user, data, bare) = r.publication()?;
            Msg::Publish {
                origin,
                from,
                user,
                data,
                bare,
            }
        }
        PRESENCE => Msg::Presence {
            origin: r.u16()?,
            join: r.flag()?,
            conn: r.conn()?,
            user: if r.flag()? { Some(r.str()?) } else { None },
        },
        DIRECT => Msg::Direct {
            to: r.conn()?,
            reply: r.reply()?,
            frame: r.bytes()?,
        },
        OUTCOME => Msg::Outcome {
            conn: r.conn()?,
            tag: r.bytes()?,
            delivered: r.flag()?,
        },
        CLOSE => Msg::Close {
            conn: r.conn()?,
            code: r.u16()?,
            reason: r.str()?,
            reply: r.reply()?,
        },
        USER => Msg::User {
            origin: r.u16()?,
            user: r.str()?,
            frame: r.bytes()?,
        },
        CLOSE_USER => Msg::CloseUser {
            origin: r.u16()?,
            user: r.str()?,
            code: r.u16()?,
            reason: r.str()?,
        },
        FRAMES => Msg::Frames {
            origin: r.u16()?,
            skip: r.opt_conn()?,
            frames: r.bytes()?,
        },
        HEARTBEAT => Msg::Heartbeat {
            origin: r.u16()?,
            instance: r.u64()?,
        },
        PRESENCE_ASK => Msg::PresenceAsk {
            origin: r.u16()?,
            id: r.u64()?,
            channel: r.str()?,
        },
        PRESENCE_ANSWER => {
            let (origin, id, last, members) = (r.u16()?, r.u64()?, r.flag()?, r.bytes()?);
            self::members(members)?;
            Msg::PresenceAnswer {
                origin,
                id,
                last,
                members,
            }
        }
        CHANNELS_ASK => Msg::ChannelsAsk {
            origin: r.u16()?,
            id: r.u64()?,
        },
        CHANNELS_ANSWER => Msg::ChannelsAnswer {
            origin: r.u16()?,
            id: r.u64()?,
            counts: r.bytes()?,
        },
        NUMBERED => {
            let origin = r.u16()?;
            let from = r.opt_conn()?;
            let skip = r.opt_conn()?;
            let (user, data, bare) = r.publication()?;
            let epoch = Epoch::parse(std::str::from_utf8(r.take(EPOCH_DIGITS)?).ok()?)?;
            let digits = std::mem::take(&mut r.0).strip_suffix(b";")?;
            // Canonical decimal: 1 to 20 digits, no leading zero, and 0 is no offset.
            let canonical = (1..=OFFSET_DIGITS).contains(&digits.len())
                && digits.iter().all(u8::is_ascii_digit)
                && digits[0] != b'0';
            if !canonical {
                return None;
            }
            let offset = std::str::from_utf8(digits).ok()?.parse().ok()?;
            Msg::Numbered {
                origin,
                from,
                skip,
                user,
                data,
                bare,
                epoch,
                offset,
            }
        }
        _ => return None,
    };
    r.0.is_empty().then_some(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Msg<'static>> {
        let c = ConnId::on_node(7, 1, 2, 3);
        vec![
            Msg::Frames {
                origin: 7,
                skip: Some(c),
                frames: b"\x81\x0242[\"x\"]",
            },
            Msg::Frames {
                origin: 1,
                skip: None,
                frames: b"",
            },
            Msg::Publish {
                origin: 7,
                from: Some(c),
                user: Some("ann"),
                data: b"{\"a\":1}",
                bare: b"x",
            },
            Msg::Publish {
                origin: 0,
                from: None,
                user: None,
                data: b"\"\"",
                bare: b"",
            },
            Msg::Presence {
                origin: 7,
                join: true,
                conn: c,
                user: Some("ann"),
            },
            Msg::Presence {
                origin: 7,
                join: false,
                conn: c,
                user: None,
            },
            Msg::Direct {
                to: c,
                reply: Some((c, b"tag")),
                frame: b"\x81\x01x",
            },
            Msg::Direct {
                to: c,
                reply: None,
                frame: b"",
            },
            Msg::Outcome {
                conn: c,
                tag: b"12345678",
                delivered: true,
            },
            Msg::Close {
                conn: c,
                code: 4000,
                reason: "bye",
                reply: None,
            },
            Msg::User {
                origin: 9,
                user: "bob",
                frame: b"f",
            },
            Msg::CloseUser {
                origin: 9,
                user: "bob",
                code: 4001,
                reason: "",
            },
            Msg::Heartbeat {
                origin: 65535,
                instance: u64::MAX,
            },
            Msg::PresenceAsk {
                origin: 3,
                id: 9,
                channel: "lobby",
            },
            Msg::PresenceAnswer {
                origin: 4,
                id: 9,
                last: true,
                members: MEMBERS,
            },
            Msg::PresenceAnswer {
                origin: 4,
                id: 10,
                last: false,
                members: b"",
            },
            Msg::ChannelsAsk { origin: 3, id: 9 },
            Msg::ChannelsAnswer {
                origin: 4,
                id: 9,
                counts: b"",
            },
            Msg::Numbered {
                origin: 2,
                from: Some(c),
                skip: Some(c),
                user: Some("ann"),
                data: b"\"hi\"",
                bare: b"hi",
                epoch: Epoch::parse("00ff00ff00ff00ff").unwrap(),
                offset: 1,
            },
            Msg::Numbered {
                origin: 2,
                from: None,
                skip: None,
                user: None,
                data: b"[1]",
                bare: b"[1]",
                epoch: Epoch::parse("0123456789abcdef").unwrap(),
                offset: u64::MAX,
            },
        ]
    }

    /// Connection 9, without a user.
    const MEMBERS: &[u8] = b"\x09\0\0\0\0\0\0\0\0";

    #[test]
    fn presence_members_round_trip_and_bad_lists_are_refused() {
        let c = ConnId::on_node(7, 1, 2, 3);
        let d = ConnId::from_bits(9);
        let mut out = Vec::new();
        encode_member(c, Some("ann"), &mut out);
        encode_member(d, None, &mut out);
        assert_eq!(members(&out), Some(vec![(c, Some("ann")), (d, None)]));
        assert_eq!(members(b""), Some(vec![]));
        for cut in 1..out.len() {
            if cut != 16 {
                assert_eq!(members(&out[..cut]), None, "cut at {cut}");
            }
        }
        // A part whose member list does not parse is not a message.
        let mut msg = Vec::new();
        let bad = Msg::PresenceAnswer {
            origin: 1,
            id: 1,
            last: true,
            members: &out[..5],
        };
        encode(&bad, &mut msg);
        assert_eq!(decode(&msg), None);
    }

    #[test]
    fn channel_lists_round_trip_and_truncations_are_refused() {
        let list = vec![("room", 3), ("", 0), ("caf\u{e9}", u64::MAX)];
        let mut out = Vec::new();
        encode_counts(list.iter().copied(), &mut out);
        assert_eq!(decode_counts(&out), Some(list));
        for cut in 1..out.len() {
            if cut != 16 && cut != 28 {
                assert_eq!(decode_counts(&out[..cut]), None, "cut at {cut}");
            }
        }
        assert_eq!(decode_counts(b""), Some(Vec::new()));
        assert_eq!(
            decode_counts(b"\x01\0\0\0\xff\0\0\0\0\0\0\0\0"),
            None,
            "not UTF-8"
        );
    }

    #[test]
    fn every_message_round_trips() {
        for msg in all() {
            let mut out = Vec::new();
            encode(&msg, &mut out);
            assert_eq!(decode(&out), Some(msg.clone()), "{msg:?}");
        }
    }

    #[test]
    fn truncated_extended_or_foreign_bytes_are_refused() {
        for msg in all() {
            let mut out = Vec::new();
            encode(&msg, &mut out);
            for cut in 0..out.len() {
                assert_eq!(decode(&out[..cut]), None, "{msg:?} cut at {cut}");
            }
            out.push(0);
            assert_eq!(decode(&out), None, "trailing byte");
        }
        // Data and bare text equal: written once, and the long form is refused.
        let msg = Msg::Publish {
            origin: 1,
            from: None,
            user: None,
            data: b"{\"a\":1}",
            bare: b"{\"a\":1}",
        };
        let mut short = Vec::new();
        encode(&msg, &mut short);
        assert_eq!(decode(&short), Some(msg));
        let mut long = short[..short.len() - 1].to_vec();
        long.push(1);
        long.extend_from_slice(&7u32.to_le_bytes());
        long.extend_from_slice(b"{\"a\":1}");
        assert_eq!(decode(&long), None);
        assert_eq!(decode(b"\x02P"), None, "another version");
        assert_eq!(decode(b"\x01Z"), None, "unknown kind");
        assert_eq!(decode(b"hello"), None);
    }

    #[test]
    fn a_numbered_publication_is_its_head_then_the_epoch_and_offset_as_text() {
        let head = NumberedHead {
            origin: 4,
            from: None,
            skip: None,
            user: None,
            data: b"7",
            bare: b"7",
        };
        let mut out = Vec::new();
        encode_numbered_head(&head, &mut out);
        let with = |tail: &str| {
            let mut m = out.clone();
            m.extend_from_slice(tail.as_bytes());
            m
        };
        let good = with("0123456789abcdef42;");
        assert!(matches!(
            decode(&good),
            Some(Msg::Numbered {
                offset: 42,
                origin: 4,
                ..
            })
        ));
        // What a publish script could get wrong is refused, never misread.
        for tail in [
            "0123456789abcdef;",
            "0123456789abcdef42",
            "0123456789abcdef0;",
            "0123456789abcdef042;",
            "0123456789abcdef4.2;",
            "0123456789ABCDEF42;",
            "0123456789abcdef184467440737095516150;",
            "0123456789abcdef18446744073709551616;",
        ] {
            assert_eq!(decode(&with(tail)), None, "{tail}");
        }
    }
}
