//! Engine.IO over HTTP long-polling, the request side: what a `GET`, `POST` or `OPTIONS` on
//! `/socket.io/?EIO=4&transport=polling` gets on the shard that accepted it, and the WebSocket
//! that upgrades a polling session (`transport=websocket&sid=...`).
//!
//! A session lives on one shard (its entry there, see [`super::session`]); its `sid` starts with
//! that entry's connection id, so any shard reads the owner from it. A request never touches
//! the session itself: it is sent to the owner as a [`ShardMsg::Poll`] (to this very shard when
//! it is the owner) and held until the owner's [`ShardMsg::PollAnswer`] comes back; the shard
//! then resumes the request, and [`on_request`] writes the answer. The upgrading WebSocket stays
//! on the shard that accepted it and forwards its messages the same way. CORS is decided here,
//! from the request's `Origin` and `--socketio-cors-origin`.

use crate::conn::http::{end_head, has_token, trim, write_head};
use crate::conn::{ConnId, Handling, Output};
use crate::query::query_param;
use crate::router::inbox::{PollWhat, ShardMsg};
use crate::router::Router;

use super::Dispatch;

/// A polling request's progress, kept in its connection's [`crate::app::ClientState`].
#[derive(Debug)]
pub enum PollClient {
    /// Sent to session `session`'s owner; its answer (status, body) once in.
    Waiting {
        /// The session asked.
        session: ConnId,
        /// The owner's answer.
        answer: Option<(u16, Box<[u8]>)>,
    },
    /// A `POST` for this session whose body is being read.
    Post(ConnId),
    /// A WebSocket that probes or carries the session with this id.
    Carrying(ConnId),
}

/// The Engine.IO error codes of a refused request (with the HTTP status 400).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollError {
    /// `0`: the transport is not `polling` or `websocket`.
    UnknownTransport,
    /// `1`: no such session (never was, ended, upgraded, or it lives on another node).
    UnknownSid,
    /// `2`: a handshake with a method other than `GET`.
    BadHandshakeMethod,
    /// `3`: a bad request (a second GET in flight, a POST without a length, a bad body).
    BadRequest,
    /// `4`: the origin is not allowed (HTTP 403).
    Forbidden,
    /// `5`: the protocol version is not 4.
    UnsupportedVersion,
}

impl PollError {
    /// The Engine.IO error code.
    pub fn code(self) -> u8 {
        match self {
            Self::UnknownTransport => 0,
            Self::UnknownSid => 1,
            Self::BadHandshakeMethod => 2,
            Self::BadRequest => 3,
            Self::Forbidden => 4,
            Self::UnsupportedVersion => 5,
        }
    }

    /// The HTTP status.
    pub fn status(self) -> u16 {
        if self == Self::Forbidden {
            403
        } else {
            400
        }
    }

    /// The body: `{"code":N,"message":"..."}`.
    pub fn body(self, message: &str) -> Box<[u8]> {
        let mut b = format!("{{\"code\":{},\"message\":", self.code()).into_bytes();
        crate::json::write_str(&mut b, message);
        b.push(b'}');
        b.into_boxed_slice()
    }
}

/// The value of header `name`, if present and UTF-8.
fn header<'a>(req: &httparse::Request<'_, 'a>, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .and_then(|h| std::str::from_utf8(trim(h.value)).ok())
}

/// The session id `sid` names: its first 8 bytes are the session entry's connection id.
pub fn parse_sid(sid: &str) -> Option<ConnId> {
    let bytes = base64_simd::URL_SAFE_NO_PAD.decode_to_vec(sid).ok()?;
    let first: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    (bytes.len() == 16).then(|| ConnId::from_bits(u64::from_be_bytes(first)))
}

/// The session named by `sid` if it can live on this node (`Err`: why not).
fn owner(router: &Router, sid: &str) -> Result<ConnId, &'static str> {
    let id = parse_sid(sid).ok_or("Session ID unknown")?;
    if id.node() != router.node() || !router.outbound.has_shard(id.shard()) {
        // A load balancer must keep a session's requests on one node (stick by `sid`).
        return Err("Session ID unknown on this node");
    }
    Ok(id)
}

/// Whether `req` is a long-polling request (or the CORS preflight of one) for the endpoint.
pub fn is_polling(req: &httparse::Request<'_, '_>, query: &str) -> bool {
    req.method == Some("OPTIONS")
        || query_param(query, "transport").as_deref() == Some("polling")
        || req.method == Some("POST")
}

/// CORS: `Ok(Some(origin))` to name in `Access-Control-Allow-Origin`, `Ok(None)` when the
/// request is not cross-origin (no `Origin`, or the same host), `Err` for a refused origin.
fn cors<'a>(d: &Dispatch<'_>, req: &httparse::Request<'_, 'a>) -> Result<Option<&'a str>, ()> {
    let Some(origin) = header(req, "origin") else {
        return Ok(None);
    };
    if d.app.sio.cfg.cors_origins.iter().any(|o| **o == *origin) {
        return Ok(Some(origin));
    }
    let host = origin.split_once("://").map_or(origin, |(_, h)| h);
    if header(req, "host").is_some_and(|h| h.eq_ignore_ascii_case(host)) {
        return Ok(None);
    }
    Err(())
}

/// Keep the connection after the answer: HTTP/1.1 without `Connection: close` (a body, if
/// any, has been read).
fn keep_alive(req: &httparse::Request<'_, '_>) -> bool {
    req.version == Some(1)
        && !req
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("connection") && has_token(h.value, "close"))
}

/// Write one answer with the CORS headers `origin` asks for.
fn respond(
    d: &Dispatch<'_>,
    out: &mut Output,
    origin: Option<&str>,
    status: u16,
    body: &[u8],
    keep_alive: bool,
) -> Handling {
    let reason = match status {
        200 => "OK",
        204 => "No Content",
        401 => "Unauthorized",
        403 => "Forbidden",
        413 => "Payload Too Large",
        _ => "Bad Request",
    };
    let content_type = if status == 200 {
        "text/plain; charset=UTF-8"
    } else {
        "application/json"
    };
    let mut headers: Vec<(&str, &str)> = Vec::with_capacity(4);
    if let Some(o) = origin {
        headers.push(("Access-Control-Allow-Origin", o));
        headers.push(("Vary", "Origin"));
        if d.app.sio.cfg.cors_credentials {
            headers.push(("Access-Control-Allow-Credentials", "true"));
        }
    }
    if status == 204 {
        headers.push(("Access-Control-Allow-Methods", "GET, POST, OPTIONS"));
        headers.push(("Access-Control-Allow-Headers", "Content-Type"));
        headers.push(("Access-Control-Max-Age", "600"));
    }
    // An error ends the connection: what follows a refused body is not worth reading.
    let keep_alive = keep_alive && status < 400;
    write_head(
        &mut out.bytes,
        (status, reason),
        &headers,
        content_type,
        body.len(),
    );
    end_head(&mut out.bytes, !keep_alive, body);
    Handling::Answered { keep_alive }
}

/// A long-polling request (see [`is_polling`]): answered, refused, or sent to the session's
/// owner and held. Called again with the same request once the owner has answered.
pub fn on_request(
    d: &mut Dispatch<'_>,
    req: &httparse::Request<'_, '_>,
    out: &mut Output,
) -> Handling {
    let target = req.path.unwrap_or("/");
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let Ok(origin) = cors(d, req) else {
        d.app.sio.stats.polling_refused += 1;
        let e = PollError::Forbidden;
        return respond(
            d,
            out,
            None,
            e.status(),
            &e.body("Origin not allowed"),
            false,
        );
    };
    if let Some(PollClient::Waiting {
        answer: Some(_), ..
    }) = d.client.poll()
    {
        let Some(PollClient::Waiting {
            answer: Some((status, body)),
            ..
        }) = d.client.take_poll().map(|b| *b)
        else {
            return Handling::Refuse(crate::conn::http::HttpError::Malformed);
        };
        return respond(d, out, origin, status, &body, keep_alive(req));
    }
    if req.method == Some("OPTIONS") {
        return respond(d, out, origin, 204, b"", keep_alive(req));
    }
    let refuse = |d: &mut Dispatch<'_>, out: &mut Output, e: PollError, message: &str| {
        d.app.sio.stats.polling_refused += 1;
        respond(d, out, origin, e.status(), &e.body(message), false)
    };
    if query_param(query, "EIO").as_deref() != Some("4") {
        return refuse(
            d,
            out,
            PollError::UnsupportedVersion,
            "Unsupported protocol version",
        );
    }
    if query_param(query, "transport").as_deref() != Some("polling") {
        return refuse(d, out, PollError::UnknownTransport, "Transport unknown");
    }
    let Some(sid) = query_param(query, "sid") else {
        if req.method != Some("GET") {
            return refuse(
                d,
                out,
                PollError::BadHandshakeMethod,
                "Bad handshake method",
            );
        }
        // The same client authentication as a WebSocket upgrade (`?token=`, --require-token).
        if let Err(e) = d
            .app
            .auth
            .authenticate(query, req.headers, crate::auth::unix_now())
        {
            d.app.sio.stats.polling_refused += 1;
            let body = PollError::Forbidden.body(&e.to_string());
            return respond(d, out, origin, 401, &body, false);
        }
        // A new session, owned by this shard.
        return send(d, d.id, PollWhat::Open, None);
    };
    let session = match owner(d.router, &sid) {
        Ok(id) => id,
        Err(message) => return refuse(d, out, PollError::UnknownSid, message),
    };
    match req.method {
        Some("GET") => {
            let cfg = &d.app.sio.cfg;
            // The owner answers by the next ping at the latest; the bound only guards against
            // an answer that never comes (twice that, for a loaded machine's slack).
            let until = d.now + 2 * (cfg.ping_interval + cfg.ping_timeout);
            send(d, session, PollWhat::Get, Some(until))
        }
        Some("POST") => {
            let len = header(req, "content-length").and_then(|v| v.parse::<usize>().ok());
            match len {
                None => refuse(d, out, PollError::BadRequest, "POST without Content-Length"),
                Some(n) if n > d.app.sio.cfg.max_payload => {
                    d.app.sio.stats.polling_refused += 1;
                    let body = PollError::BadRequest.body("payload over maxPayload");
                    respond(d, out, origin, 413, &body, false)
                }
                Some(0) => refuse(d, out, PollError::BadRequest, "empty payload"),
                Some(len) => {
                    d.client.set_poll(Box::new(PollClient::Post(session)));
                    Handling::Body { len }
                }
            }
        }
        _ => refuse(d, out, PollError::BadRequest, "Bad request method"),
    }
}

/// The body of a `POST` is in: send it to the session's owner.
pub fn on_body(d: &mut Dispatch<'_>, body: &[u8]) -> Handling {
    let Some(PollClient::Post(session)) = d.client.take_poll().map(|b| *b) else {
        return Handling::Refuse(crate::conn::http::HttpError::Malformed);
    };
    send(d, session, PollWhat::Post(Box::from(body)), None)
}

/// Ask `session`'s owner for `what` and hold the request for the answer.
fn send(
    d: &mut Dispatch<'_>,
    session: ConnId,
    what: PollWhat,
    until: Option<std::time::Instant>,
) -> Handling {
    d.app.sio.stats.polling_requests += 1;
    d.client.set_poll(Box::new(PollClient::Waiting {
        session,
        answer: None,
    }));
    let msg = ShardMsg::Poll {
        session,
        from: d.id,
        what,
    };
    d.router.outbound.control(session.shard(), msg);
    match until {
        Some(until) => Handling::Hold { until },
        None => Handling::Pending,
    }
}

/// Connection `id` is closing: the session it carried learns its WebSocket is gone, and the
/// session it waits for an answer from learns not to answer there (a held `GET` whose
/// connection a proxy cut must not make the client's next `GET` look like a second one).
pub fn on_closed(router: &mut Router, id: ConnId, client: &mut crate::app::ClientState) {
    if let Some(
        PollClient::Carrying(session)
        | PollClient::Waiting {
            session,
            answer: None,
        },
    ) = client.poll()
    {
        let session = *session;
        client.take_poll();
        let msg = ShardMsg::Poll {
            session,
            from: id,
            what: PollWhat::Gone,
        };
        router.outbound.control(session.shard(), msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sid_names_its_session_entry_and_junk_names_none() {
        let id = ConnId::on_node(7, 1, 42, 3);
        let mut ids = super::super::IdGen::default();
        let sid = ids.id(id.to_bits());
        assert_eq!(parse_sid(&sid), Some(id));
        assert_eq!(parse_sid("nope"), None);
        assert_eq!(parse_sid(""), None);
        assert_eq!(parse_sid(&sid[..10]), None, "a cut sid");
    }

    #[test]
    fn errors_are_engine_io_json_with_their_status() {
        let body = PollError::Forbidden.body("Origin \"x\" not allowed");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(v["code"], 4);
        assert_eq!(v["message"], "Origin \"x\" not allowed");
        assert_eq!(PollError::Forbidden.status(), 403);
        assert_eq!(PollError::UnknownSid.status(), 400);
    }
}
