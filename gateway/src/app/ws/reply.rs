//! What the server answers on `/ws`: the welcome and replies, written as JSON text into a
//! caller's buffer (the caller frames it into the connection's output). Deliveries, which every
//! protocol's subscribers share, are encoded by the router (`router::fanout`). The shapes are the
//! public protocol (`gateway/docs/client-protocol.md`).

use std::io::Write as _;

use crate::conn::ConnId;
use crate::json::{write_conn, write_opt_str, write_str};
use crate::router::history::Epoch;
use crate::router::{HistoryRead, Member};

use super::request::ProtocolError;

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

/// `{"type":"reply","id":..,"ok":true,"data":<json>}`: an RPC's result.
pub fn result(out: &mut Vec<u8>, id: &[u8], json: &[u8]) {
    reply_head(out, id);
    out.extend_from_slice(b"\"ok\":true,\"data\":");
    out.extend_from_slice(json);
    out.push(b'}');
}

/// `{"type":"reply","id":..,"ok":false,"error":{"code":..,"message":..}}` with a code and
/// message that are not the gateway's own (a backend's denial or RPC error).
pub fn error_text(out: &mut Vec<u8>, id: &[u8], code: &str, message: &str) {
    reply_head(out, id);
    out.extend_from_slice(b"\"ok\":false,\"error\":{\"code\":");
    write_str(out, code);
    out.extend_from_slice(b",\"message\":");
    write_str(out, message);
    out.extend_from_slice(b"}}");
}

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

/// `{"type":"reply","id":..,"ok":true,"offset":N,"epoch":"..","recovered":..}`: a subscription
/// to a channel with history (`recovered` only when the client asked to recover).
pub fn position(out: &mut Vec<u8>, id: &[u8], epoch: Epoch, offset: u64, recovered: Option<bool>) {
    reply_head(out, id);
    let _ = write!(out, "\"ok\":true,\"offset\":{offset},\"epoch\":\"{epoch}\"");
    if let Some(r) = recovered {
        let _ = write!(out, ",\"recovered\":{r}");
    }
    out.push(b'}');
}

/// `{"type":"reply","id":..,"ok":true,"offset":N,"epoch":"..","publications":[<message>,..]}`:
/// each publication is the `message` delivery it was (with its `offset`), oldest first.
pub fn history(out: &mut Vec<u8>, id: &[u8], read: &HistoryRead) {
    reply_head(out, id);
    out.extend_from_slice(b"\"ok\":true,");
    read.write_fields(out);
    out.push(b'}');
}
