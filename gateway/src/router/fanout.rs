//! Encoding a delivery once: the complete WebSocket frame (header and JSON text) is built in the
//! shard's scratch buffer and copied once into an `Arc<[u8]>` that every local subscriber's
//! outbox and every other shard's inbox share by reference. The JSON shapes of deliveries
//! (`message`, `direct`, `join`/`leave`) are the public protocol
//! (`gateway/docs/client-protocol.md`).

use std::io::Write as _;
use std::sync::Arc;

use frame_simd::{encode_header, Opcode, MAX_HEADER_LEN};

use crate::conn::ConnId;
use crate::json::{write_conn, write_opt_conn, write_opt_str, write_str};

/// One publish as it travels: the channel, its frames, and who must not get it.
#[derive(Debug)]
pub struct Delivery {
    /// The channel.
    pub channel: Arc<str>,
    /// The frame for JSON subscribers (`/ws`).
    pub json: Arc<[u8]>,
    /// The frame for bare subscribers (`/raw`, `/broadcast`); `None` for presence events.
    pub bare: Option<Arc<[u8]>>,
    /// The publisher, when it asked not to get its own message.
    pub skip: Option<ConnId>,
    /// Its offset, on a channel with history (`None` elsewhere, and for presence events).
    pub offset: Option<u64>,
}

/// What a publication's delivery is encoded from.
#[derive(Clone, Copy, Debug)]
pub struct Parts<'a> {
    /// The data as JSON text.
    pub data: &'a [u8],
    /// What bare subscribers get.
    pub bare: &'a [u8],
    /// The publishing connection (`None`: the API).
    pub from: Option<ConnId>,
    /// The publisher's user.
    pub user: Option<&'a str>,
}

impl Delivery {
    /// A publication's delivery to `channel`, both frames encoded once in `scratch`: the
    /// `message` envelope (with `offset` on a channel with history) and the bare data.
    pub fn publication(
        scratch: &mut Vec<u8>,
        channel: Arc<str>,
        p: Parts<'_>,
        skip: Option<ConnId>,
        offset: Option<u64>,
    ) -> Arc<Delivery> {
        let json = text_frame(scratch, |out| {
            encode_message(out, &channel, p.data, p.from, p.user, offset)
        });
        let bare = Some(text_frame(scratch, |out| out.extend_from_slice(p.bare)));
        Arc::new(Delivery {
            channel,
            json,
            bare,
            skip,
            offset,
        })
    }
}

impl Delivery {
    /// A presence event (`join`, or `leave`) of `conn` on `channel`, for its JSON subscribers
    /// (not `conn` itself), encoded once in `scratch`.
    pub fn presence(
        scratch: &mut Vec<u8>,
        channel: Arc<str>,
        join: bool,
        conn: ConnId,
        user: Option<&str>,
    ) -> Arc<Delivery> {
        let json = text_frame(scratch, |out| {
            encode_presence_event(out, join, &channel, conn, user)
        });
        Arc::new(Delivery {
            channel,
            json,
            bare: None,
            skip: Some(conn),
            offset: None,
        })
    }
}

impl Delivery {
    /// `{"type":"gap","channel":..}` for the JSON subscribers of `channel`: publications for
    /// them were lost on the way (a full queue), so their stream has a hole.
    pub fn gap(scratch: &mut Vec<u8>, channel: Arc<str>) -> Arc<Delivery> {
        let json = text_frame(scratch, |out| {
            out.extend_from_slice(b"{\"type\":\"gap\",\"channel\":");
            write_str(out, &channel);
            out.push(b'}');
        });
        Arc::new(Delivery {
            channel,
            json,
            bare: None,
            skip: None,
            offset: None,
        })
    }
}

/// Build a final text frame whose payload `write` appends, reusing `scratch`.
pub fn text_frame(scratch: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) -> Arc<[u8]> {
    scratch.clear();
    scratch.resize(MAX_HEADER_LEN, 0);
    write(scratch);
    let len = scratch.len() - MAX_HEADER_LEN;
    let mut h = [0u8; MAX_HEADER_LEN];
    let n = encode_header(&mut h, true, Opcode::Text, len as u64, None);
    let start = MAX_HEADER_LEN - n;
    scratch[start..MAX_HEADER_LEN].copy_from_slice(&h[..n]);
    Arc::from(&scratch[start..])
}

/// The payload of a frame built by [`text_frame`] (its header skipped).
pub fn frame_payload(frame: &[u8]) -> &[u8] {
    let header = match frame.get(1).map(|b| b & 0x7f) {
        Some(126) => 4,
        Some(127) => 10,
        _ => 2,
    };
    frame.get(header..).unwrap_or_default()
}

/// `{"type":"message","channel":..,"data":<data>,"from":..,"user":..,"offset":..}`; `data` is
/// JSON text; `user` only when known, `offset` only on channels with history.
pub fn encode_message(
    out: &mut Vec<u8>,
    channel: &str,
    data: &[u8],
    from: Option<ConnId>,
    user: Option<&str>,
    offset: Option<u64>,
) {
    out.extend_from_slice(b"{\"type\":\"message\",\"channel\":");
    write_str(out, channel);
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(data);
    out.extend_from_slice(b",\"from\":");
    write_opt_conn(out, from);
    if let Some(user) = user {
        out.extend_from_slice(b",\"user\":");
        write_str(out, user);
    }
    if let Some(offset) = offset {
        let _ = write!(out, ",\"offset\":{offset}");
    }
    out.push(b'}');
}

/// `{"type":"direct","from":..,"user":..,"data":<data>}`; `data` is JSON text.
pub fn encode_direct(out: &mut Vec<u8>, data: &[u8], from: Option<ConnId>, user: Option<&str>) {
    out.extend_from_slice(b"{\"type\":\"direct\",\"from\":");
    write_opt_conn(out, from);
    out.extend_from_slice(b",\"user\":");
    write_opt_str(out, user);
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(data);
    out.push(b'}');
}

/// `{"type":"join"|"leave","channel":..,"conn":..,"user":..}`
pub fn encode_presence_event(
    out: &mut Vec<u8>,
    join: bool,
    channel: &str,
    conn: ConnId,
    user: Option<&str>,
) {
    out.extend_from_slice(if join {
        b"{\"type\":\"join\",\"channel\":"
    } else {
        b"{\"type\":\"leave\",\"channel\":"
    });
    write_str(out, channel);
    out.extend_from_slice(b",\"conn\":");
    write_conn(out, conn);
    out.extend_from_slice(b",\"user\":");
    write_opt_str(out, user);
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_the_exact_payload_at_every_length_class() {
        let mut scratch = Vec::new();
        for len in [0usize, 1, 125, 126, 65535, 65536, 70000] {
            let payload = vec![b'x'; len];
            let f = text_frame(&mut scratch, |out| out.extend_from_slice(&payload));
            assert_eq!(f[0], 0x81, "fin + text");
            let (hlen, plen) = match f[1] {
                126 => (4, usize::from(u16::from_be_bytes([f[2], f[3]]))),
                127 => (
                    10,
                    u64::from_be_bytes(f[2..10].try_into().unwrap()) as usize,
                ),
                n => (2, usize::from(n)),
            };
            assert_eq!(plen, len);
            assert_eq!(&f[hlen..], &payload[..]);
            assert_eq!(frame_payload(&f), &payload[..]);
        }
    }
}
