//! Socket.IO at `/socket.io/`: Engine.IO 4 ([`engine`]) carrying Socket.IO 5 ([`packet`]), both
//! sans-IO codecs, and what a session does with them over the WebSocket transport.
//!
//! A session is one upgraded connection: the open packet goes out first, then the server pings
//! every `ping_interval` and closes the session when the pong is `ping_timeout` late, or when no
//! namespace was joined within `connect_timeout`. Each CONNECT to a configured namespace makes a
//! socket with its own id (never the session id), subscribed to two channels of the router: the
//! namespace's (`sio:<nsp>`) and its own id's room (`sio:<nsp>:<socket id>`); rooms it joins are
//! `sio:<nsp>:<room>`. Events run the [`events::EventMap`]; deliveries are encoded once into
//! complete WebSocket frames ([`Router::publish_frames`]) and fanned out like any publication.
//! A malformed packet closes that session only (1002, or 1009 over `max_payload`).
//!
//! Sessions may also start over HTTP long-polling ([`polling`]: the request side, on any shard;
//! [`session`]: the session on the shard that owns it) and upgrade to a WebSocket later.

pub mod client_files;
pub mod emit;
pub mod engine;
pub mod events;
pub mod packet;
pub mod polling;
pub mod session;
mod socket;
#[cfg(test)]
mod tests;

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use frame_simd::{CloseCode, Opcode};

use crate::conn::http::{end_head, write_head};
use crate::conn::{Handling, Output};
use crate::query::query_param;
use crate::router::Router;

use self::engine::{EngineError, PacketType};
use self::events::EventMap;
use self::packet::Limits;
pub use self::socket::SioConn;
use super::Dispatch;

/// The path of the Socket.IO endpoint (with or without the trailing slash).
pub const PATH: &str = "/socket.io/";

/// How a namespace admits sockets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamespaceAuth {
    /// Anyone connected.
    Open,
    /// The CONNECT's `auth` must hold a `token` the gateway verifies (`--token-secret`).
    Token,
}

/// A namespace sockets may join.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    /// Its name (`/` or `/name`).
    pub name: Box<str>,
    /// Who may join it.
    pub auth: NamespaceAuth,
}

impl Namespace {
    /// Parse `NAME` or `NAME=token`.
    pub fn parse(s: &str) -> Result<Namespace, String> {
        let (name, auth) = match s.split_once('=') {
            Some((name, "token")) => (name, NamespaceAuth::Token),
            Some((_, other)) => {
                return Err(format!("{s:?}: unknown namespace auth {other:?} (token)"))
            }
            None => (s, NamespaceAuth::Open),
        };
        packet::check_namespace(name, &Limits::default())
            .map_err(|e| format!("namespace {name:?}: {e}"))?;
        Ok(Namespace {
            name: Box::from(name),
            auth,
        })
    }
}

/// The Socket.IO endpoint's configuration (shared by every shard).
#[derive(Clone, Debug)]
pub struct SioConfig {
    /// How often the server pings a session.
    pub ping_interval: Duration,
    /// How long the pong may take before the session is closed.
    pub ping_timeout: Duration,
    /// How long a session may stay without a socket in any namespace.
    pub connect_timeout: Duration,
    /// Largest Engine.IO packet (or polling body) a client may send, in bytes.
    pub max_payload: usize,
    /// Packet limits.
    pub limits: Limits,
    /// The namespaces sockets may join.
    pub namespaces: Vec<Namespace>,
    /// What events do.
    pub events: EventMap,
    /// The browser builds of `socket.io-client` (`--socketio-client-dir`).
    pub client_files: Option<Arc<client_files::ClientFiles>>,
    /// Origins allowed to make cross-origin long-polling requests (`--socketio-cors-origin`;
    /// empty: same-origin only).
    pub cors_origins: Vec<Box<str>>,
    /// Answer allowed origins with `Access-Control-Allow-Credentials: true`
    /// (`--socketio-cors-credentials`).
    pub cors_credentials: bool,
}

impl Default for SioConfig {
    fn default() -> Self {
        SioConfig {
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            connect_timeout: Duration::from_millis(45_000),
            max_payload: engine::DEFAULT_MAX_PAYLOAD,
            limits: Limits::default(),
            namespaces: vec![Namespace {
                name: Box::from("/"),
                auth: NamespaceAuth::Open,
            }],
            // UNWRAP: "chat" is a preset `EventMap::preset` knows.
            events: EventMap::preset("chat").unwrap_or_default(),
            client_files: None,
            cors_origins: Vec::new(),
            cors_credentials: false,
        }
    }
}

impl SioConfig {
    /// The namespace named `name`, if configured.
    pub fn namespace(&self, name: &str) -> Option<&Namespace> {
        self.namespaces.iter().find(|n| &*n.name == name)
    }
}

/// Counters of the Socket.IO endpoint (exported by the metrics module).
#[derive(Clone, Copy, Debug, Default)]
pub struct SioStats {
    /// Sessions opened.
    pub sessions: u64,
    /// Sockets admitted to a namespace.
    pub connects: u64,
    /// CONNECTs refused (unknown namespace, bad auth).
    pub connect_errors: u64,
    /// Events received.
    pub events: u64,
    /// Events dropped: mapped to `drop`, not in the map, or whose action failed.
    pub dropped: u64,
    /// Sessions closed for a malformed packet or a limit.
    pub malformed: u64,
    /// Sessions closed for a missing pong or no CONNECT in time.
    pub timeouts: u64,
    /// Long-polling requests handed to a session's owner (handshakes, GETs, POSTs).
    pub polling_requests: u64,
    /// Long-polling requests refused (bad version, unknown session, origin, method, size).
    pub polling_refused: u64,
    /// Polling sessions upgraded to a WebSocket.
    pub upgrades: u64,
}

/// Ids for sessions and sockets: a per-shard keyed hash (SipHash with random keys from the
/// standard library) over a counter, so ids cannot be guessed from one another.
#[derive(Debug)]
pub struct IdGen {
    keys: std::hash::RandomState,
    counter: u64,
}

impl Default for IdGen {
    fn default() -> Self {
        IdGen {
            keys: std::hash::RandomState::new(),
            counter: 0,
        }
    }
}

impl IdGen {
    /// 64 unpredictable bits.
    pub fn next_u64(&mut self) -> u64 {
        self.counter += 1;
        let mut h = self.keys.build_hasher();
        h.write_u64(self.counter);
        h.finish()
    }

    /// An id of 16 bytes: `prefix` (8 bytes) then 8 unpredictable, as unpadded base64url.
    pub fn id(&mut self, prefix: u64) -> Box<str> {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&prefix.to_be_bytes());
        bytes[8..].copy_from_slice(&self.next_u64().to_be_bytes());
        Box::from(base64_simd::URL_SAFE_NO_PAD.encode_to_string(bytes))
    }
}

/// The endpoint's per-shard state.
#[derive(Debug, Default)]
pub struct SioState {
    /// The configuration.
    pub cfg: Arc<SioConfig>,
    /// Id generator.
    pub ids: IdGen,
    /// Counters, taken by the shard at the end of each turn.
    pub stats: SioStats,
    /// Reused to encode packets.
    pub(crate) text: Vec<u8>,
}

impl SioState {
    /// The state of a shard serving `cfg`.
    pub fn new(cfg: Arc<SioConfig>) -> SioState {
        SioState {
            cfg,
            ..SioState::default()
        }
    }
}

/// A request for the endpoint: upgrade a WebSocket session, or answer the Engine.IO error.
pub fn on_request(req: &httparse::Request<'_, '_>, out: &mut Output) -> Result<(), Handling> {
    let target = req.path.unwrap_or("/");
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let refuse = |code: u8, message: &str, out: &mut Output| {
        let body = format!("{{\"code\":{code},\"message\":\"{message}\"}}");
        write_head(
            &mut out.bytes,
            (400, "Bad Request"),
            &[],
            "application/json",
            body.len(),
        );
        end_head(&mut out.bytes, true, body.as_bytes());
        Err(Handling::Answered { keep_alive: false })
    };
    if query_param(query, "EIO").as_deref() != Some("4") {
        return refuse(5, "Unsupported protocol version", out);
    }
    match query_param(query, "transport").as_deref() {
        Some("websocket") => match query_param(query, "sid") {
            // Whether the session exists is for its owner to say, once the probe arrives.
            Some(sid) if polling::parse_sid(&sid).is_none() => refuse(1, "Session ID unknown", out),
            _ => Ok(()),
        },
        _ => refuse(0, "Transport unknown", out),
    }
}

/// The upgrade is done: start the session and send the open packet, or, for the upgrade of
/// a polling session (`sid` in `query`), carry that session.
pub(super) fn open(d: &mut Dispatch<'_>, query: &str, out: &mut Output) {
    if let Some(session) = query_param(query, "sid").and_then(|s| polling::parse_sid(&s)) {
        d.client
            .set_poll(Box::new(polling::PollClient::Carrying(session)));
        return;
    }
    let cfg = Arc::clone(&d.app.sio.cfg);
    let sid = d.app.sio.ids.id(d.id.to_bits());
    let text = &mut d.app.sio.text;
    text.clear();
    engine::encode_open(
        text,
        &engine::Handshake {
            sid: &sid,
            upgrade_to_websocket: false,
            ping_interval: cfg.ping_interval,
            ping_timeout: cfg.ping_timeout,
            max_payload: cfg.max_payload,
        },
    );
    out.frame(Opcode::Text, text);
    d.client.set_sio(Box::new(SioConn::new(sid, d.now, &cfg)));
    d.app.sio.stats.sessions += 1;
}

/// A WebSocket message of the session.
pub(super) fn on_message(d: &mut Dispatch<'_>, opcode: Opcode, payload: &[u8], out: &mut Output) {
    if let Some(polling::PollClient::Carrying(session)) = d.client.poll() {
        // The session lives on its owner shard: the message goes there.
        let msg = crate::router::inbox::ShardMsg::Poll {
            session: *session,
            from: d.id,
            what: crate::router::inbox::PollWhat::Message {
                binary: opcode == Opcode::Binary,
                payload: Box::from(payload),
            },
        };
        d.router.outbound.control(session.shard(), msg);
        return;
    }
    let Some(mut conn) = d.client.take_sio() else {
        return;
    };
    let cfg = Arc::clone(&d.app.sio.cfg);
    if payload.len() > cfg.max_payload {
        d.app.sio.stats.malformed += 1;
        out.close_request = Some((CloseCode::MESSAGE_TOO_BIG, "over maxPayload"));
    } else if let Err(reason) = conn.on_message(d, &cfg, opcode, payload, out) {
        d.app.sio.stats.malformed += 1;
        out.close_request = Some((CloseCode::PROTOCOL_ERROR, reason));
    }
    d.client.set_sio(conn);
}

/// The session's deadline passed: ping, or close it for a missing pong or CONNECT.
pub(super) fn on_deadline(d: &mut Dispatch<'_>, out: &mut Output) {
    let Some(conn) = d.client.sio_mut() else {
        return;
    };
    let cfg = &d.app.sio.cfg;
    if let Some(reason) = conn.on_deadline(d.now, cfg, out) {
        d.app.sio.stats.timeouts += 1;
        out.close_request = Some((CloseCode::GOING_AWAY, reason));
    }
}

/// An Engine.IO error as the close reason.
fn engine_reason(e: EngineError) -> &'static str {
    match e {
        EngineError::TooLarge { .. } => "over maxPayload",
        _ => "malformed Engine.IO packet",
    }
}

/// Append one Engine.IO message carrying the Socket.IO packet `write` appends, as a text frame.
fn send_packet(text: &mut Vec<u8>, out: &mut Output, write: impl FnOnce(&mut Vec<u8>)) {
    text.clear();
    text.push(PacketType::Message.digit());
    write(text);
    out.frame(Opcode::Text, text);
}

/// The channel of room `room` in namespace `nsp` (`None`: the name does not fit the channel rule).
pub fn room_channel(nsp: &str, room: &str) -> Option<String> {
    let name = format!("sio:{nsp}:{room}");
    crate::names::check_channel(&name).ok().map(|()| name)
}

/// The channel every socket of namespace `nsp` is subscribed to.
pub fn namespace_channel(nsp: &str) -> String {
    format!("sio:{nsp}")
}

/// Publish already-encoded `frames` on `channel`.
fn publish(
    router: &mut Router,
    channel: &str,
    frames: Arc<[u8]>,
    skip: Option<crate::conn::ConnId>,
) -> bool {
    router.publish_frames(channel, frames, skip).is_ok()
}
