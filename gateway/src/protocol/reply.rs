//! What the server sends on `/ws`: the welcome, replies and deliveries, written as JSON text into
//! a caller's buffer (framing is the caller's: a reply goes into the connection's output, a
//! delivery into one shared frame). The shapes are the public protocol
//! (`gateway/docs/client-protocol.md`).

use crate::conn::ConnId;

use super::json::{write_conn, write_opt_conn, write_opt_str, write_str};
use super::ProtocolError;

/// `{"type":"welcome","conn":"<id>","user":<user or null>}`
pub fn welcome(out: &mut Vec<u8>, conn: ConnId, user: Option<&str>) {
    out.extend_from_slice(b"{\"type\":\"welcome\",\"conn\":");
    write_conn(out, conn);
    out.extend_from_slice(b",\"user\":");
    write_opt_str(out, user);
    out.push(b'}');
}

fn reply_head(out: &mut Vec<u8>, id: &[u8]) {
    out.extend_from_slice(b"{\"type\":\"reply\",");
    if !id.is_empty() {
        out.extend_from_slice(b"\"id\":");
        out.extend_from_slice(id);
        out.push(b',');
    }
}

/// `{"type":"reply","id":..,"ok":true}`; `id` is the request's id as JSON text (empty: none).
pub fn ok(out: &mut Vec<u8>, id: &[u8]) {
    reply_head(out, id);
    out.extend_from_slice(b"\"ok\":true}");
}

/// `{"type":"reply","id":..,"ok":false,"error":{"code":..,"message":..}}`
pub fn error(out: &mut Vec<u8>, id: &[u8], e: ProtocolError) {
    reply_head(out, id);
    out.extend_from_slice(b"\"ok\":false,\"error\":{\"code\":\"");
    out.extend_from_slice(e.code.as_str().as_bytes());
    out.extend_from_slice(b"\",\"message\":");
    write_str(out, e.message);
    out.extend_from_slice(b"}}");
}

/// A presence member: a connection and its user.
pub type Member = (ConnId, Option<std::sync::Arc<str>>);

/// `{"type":"reply","id":..,"ok":true,"members":[{"conn":"..","user":..},..]}`
pub fn presence(out: &mut Vec<u8>, id: &[u8], members: &[Member]) {
    reply_head(out, id);
    out.extend_from_slice(b"\"ok\":true,\"members\":[");
    for (i, (conn, user)) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"conn\":");
        write_conn(out, *conn);
        out.extend_from_slice(b",\"user\":");
        write_opt_str(out, user.as_deref());
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
}

/// `{"type":"message","channel":..,"data":<data>,"from":..,"user":..}`; `data` is JSON text.
pub fn message(
    out: &mut Vec<u8>,
    channel: &str,
    data: &[u8],
    from: Option<ConnId>,
    user: Option<&str>,
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
    out.push(b'}');
}

/// `{"type":"direct","from":..,"user":..,"data":<data>}`; `data` is JSON text.
pub fn direct(out: &mut Vec<u8>, data: &[u8], from: Option<ConnId>, user: Option<&str>) {
    out.extend_from_slice(b"{\"type\":\"direct\",\"from\":");
    write_opt_conn(out, from);
    out.extend_from_slice(b",\"user\":");
    write_opt_str(out, user);
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(data);
    out.push(b'}');
}

/// `{"type":"join"|"leave","channel":..,"conn":..,"user":..}`
pub fn presence_event(
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
