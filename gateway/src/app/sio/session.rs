//! `PollSession`: a Socket.IO session opened over HTTP long-polling, on the shard that owns it.
//! It holds the session's [`ClientState`] (its `SioConn`: heartbeat, sockets, rooms) under its
//! own connection id, so the router delivers to it like to any connection, and a queue of
//! complete WebSocket frames waiting for the next `GET` (answered as one payload: text frames
//! as records, binary ones as `b` + base64). Requests arrive as [`PollWhat`] from whichever
//! shard accepted them; answers go back as [`ShardMsg::PollAnswer`].
//!
//! Transports: `Polling` until a WebSocket sends `2probe` (`Probing`: it gets `3probe` and the
//! held `GET` a noop), then `5` moves the session to it (`WebSocket`): the queue is sent there
//! first, in order, and every later frame follows it, so nothing is lost or sent twice. After
//! that, polling requests for the session are refused. Invariants: at most one `GET` is held
//! (a second one in flight ends the session); the queue never holds more than the outbound
//! byte limit (past it the session ends as a slow consumer).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use frame_simd::header::{parse_header, ParseConfig, Parsed, Role};
use frame_simd::{CloseCode, Opcode};

use crate::conn::{ConnId, Output};
use crate::router::channels::Kind;
use crate::router::inbox::{PollWhat, ShardMsg};
use crate::router::Router;

use super::engine::{self, Data, PacketType};
use super::polling::PollError;
use super::{SioConfig, SioConn};
use crate::app::{AppState, ClientState, Dispatch, Route};

/// Which transport carries the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// HTTP long-polling.
    Polling,
    /// Polling, while this WebSocket probes the upgrade.
    Probing(ConnId),
    /// Upgraded to this WebSocket.
    WebSocket(ConnId),
}

/// Records per `GET` answer at most (the rest waits for the next `GET`).
const MAX_RECORDS_PER_GET: usize = 256;
/// Records per `POST` body at most.
const MAX_RECORDS_PER_POST: usize = 256;

/// One long-polling session (boxed in its shard entry).
#[derive(Debug)]
pub struct PollSession {
    /// Its app state: route, router session, `SioConn`.
    pub client: ClientState,
    queue: VecDeque<Arc<[u8]>>,
    queued_bytes: usize,
    /// The held `GET`.
    get: Option<ConnId>,
    transport: Transport,
}

/// The context of one session call: the shard's router and app state, the session's id.
pub struct Cx<'a> {
    /// The session's id.
    pub id: ConnId,
    /// The shard's router.
    pub router: &'a mut Router,
    /// The shard's application state.
    pub app: &'a mut AppState,
    /// The time of the call.
    pub now: Instant,
    /// A scratch output for the frames the session writes (empty before and after).
    pub out: &'a mut Output,
}

/// Send `to` (a polling request) its answer.
fn answer(router: &mut Router, to: ConnId, status: u16, body: Box<[u8]>) {
    router
        .outbound
        .control(to.shard(), ShardMsg::PollAnswer { to, status, body });
}

/// A payload of one noop packet (`6`).
fn noop() -> Box<[u8]> {
    Box::from(&[PacketType::Noop.digit()][..])
}

/// Send the frame `frame` to connection `to` (the WebSocket carrying a session).
fn direct(router: &mut Router, to: ConnId, frame: Arc<[u8]>) {
    let msg = ShardMsg::Direct {
        to,
        frame,
        reply: None,
    };
    router.outbound.control(to.shard(), msg);
}

/// Append the packets that `frames` (complete server frames, back to back: a delivery may be an
/// event and its binary attachments) carry to the payload `out`: a text frame is one packet, a
/// binary frame a message with binary data. Frames of another kind are skipped.
pub fn frames_to_records(frames: &[u8], out: &mut Vec<u8>) {
    split_frames(frames, |opcode, payload| {
        frame_to_record(opcode, payload, out)
    });
}

fn frame_to_record(opcode: Opcode, payload: &[u8], out: &mut Vec<u8>) {
    match opcode {
        Opcode::Text => {
            if let Ok(p) = engine::parse_text(payload) {
                engine::encode_record(out, p.kind, p.data);
            } else if let Some((&digit, data)) = payload.split_first() {
                // Only the server sends `open`: written as it is.
                if digit == PacketType::Open.digit() {
                    engine::encode_record(out, PacketType::Open, Data::Text(data));
                }
            }
        }
        Opcode::Binary => engine::encode_record(out, PacketType::Message, Data::Binary(payload)),
        _ => {}
    }
}

/// Split `bytes` (complete server frames, back to back) into frames: `f` gets each one's
/// opcode, payload and whole frame.
fn split_frames(bytes: &[u8], mut f: impl FnMut(Opcode, &[u8])) {
    let cfg = ParseConfig {
        role: Role::Client,
        rsv_allowed: 0,
        max_payload: u64::MAX,
    };
    let mut rest = bytes;
    while let Ok(Parsed::Header { header, len }) = parse_header(rest, &cfg) {
        let end = usize::try_from(header.payload_len)
            .ok()
            .and_then(|n| n.checked_add(len))
            .filter(|&end| end <= rest.len());
        let Some(end) = end else {
            return;
        };
        f(header.opcode, &rest[len..end]);
        rest = &rest[end..];
    }
}

impl PollSession {
    /// A session `sid` opened at `now`; its open packet (the handshake body) is written to
    /// `body`.
    pub fn new(sid: Box<str>, now: Instant, cfg: &SioConfig, body: &mut Vec<u8>) -> PollSession {
        engine::encode_open(
            body,
            &engine::Handshake {
                sid: &sid,
                upgrade_to_websocket: true,
                ping_interval: cfg.ping_interval,
                ping_timeout: cfg.ping_timeout,
                max_payload: cfg.max_payload,
            },
        );
        let mut client = ClientState {
            route: Route::SocketIo,
            ..ClientState::default()
        };
        client.session.kind = Some(Kind::Bare);
        client.set_sio(Box::new(SioConn::new(sid, now, cfg)));
        client.opened_at = crate::app::OpenedAt::at(now);
        PollSession {
            client,
            queue: VecDeque::new(),
            queued_bytes: 0,
            get: None,
            transport: Transport::Polling,
        }
    }

    /// The transport carrying it.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Bytes of frames waiting for a `GET`.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// When [`PollSession::on_deadline`] must be called.
    pub fn deadline(&self) -> Option<Instant> {
        self.client.deadline()
    }

    /// Queue a frame for the client; false when that would pass `limit_bytes` (the session
    /// must end: a client that does not poll is not buffered for without bound).
    pub fn push_frame(&mut self, frame: Arc<[u8]>, limit_bytes: usize) -> bool {
        if self.queued_bytes + frame.len() > limit_bytes {
            return false;
        }
        self.queued_bytes += frame.len();
        self.queue.push_back(frame);
        true
    }

    /// Move the frames the session wrote into `cx.out` to the queue (`Err`: over the limit).
    fn take_output(&mut self, cx: &mut Cx<'_>, limit_bytes: usize) -> Result<(), &'static str> {
        if cx.out.bytes.is_empty() {
            return Ok(());
        }
        let frames = Arc::from(&cx.out.bytes[..]);
        cx.out.bytes.clear();
        if !self.push_frame(frames, limit_bytes) {
            return Err("too many packets waiting for the client");
        }
        Ok(())
    }

    /// Send what is queued: to the WebSocket once upgraded, else as the answer to the held
    /// `GET` (if any).
    pub fn flush(&mut self, router: &mut Router) {
        if self.queue.is_empty() {
            return;
        }
        match self.transport {
            Transport::WebSocket(ws) => {
                for frame in self.queue.drain(..) {
                    direct(router, ws, frame);
                }
                self.queued_bytes = 0;
            }
            Transport::Polling | Transport::Probing(_) => {
                let Some(get) = self.get.take() else {
                    return;
                };
                let mut body = Vec::new();
                for _ in 0..MAX_RECORDS_PER_GET {
                    let Some(frame) = self.queue.pop_front() else {
                        break;
                    };
                    self.queued_bytes -= frame.len();
                    frames_to_records(&frame, &mut body);
                }
                answer(router, get, 200, body.into_boxed_slice());
            }
        }
    }

    /// A request or WebSocket message for the session; `Err(reason)` when the session ends.
    pub fn on_poll(
        &mut self,
        cx: &mut Cx<'_>,
        from: ConnId,
        what: PollWhat,
        limit_bytes: usize,
    ) -> Result<(), &'static str> {
        let upgraded = matches!(self.transport, Transport::WebSocket(_));
        match what {
            PollWhat::Open => Ok(()),
            PollWhat::Get | PollWhat::Post(_) if upgraded => {
                let e = PollError::UnknownSid;
                let body = e.body("Session ID unknown: the session was upgraded");
                answer(cx.router, from, e.status(), body);
                Ok(())
            }
            PollWhat::Get => {
                if self.get.is_some() {
                    let e = PollError::BadRequest;
                    answer(cx.router, from, e.status(), e.body("overlap from client"));
                    return Err("two GET requests in flight");
                }
                if let Transport::Probing(_) = self.transport {
                    // The client pauses polling to finish the upgrade: a poll sent before it
                    // learnt of the probe returns at once, and what waits goes to the WebSocket.
                    answer(cx.router, from, 200, noop());
                    return Ok(());
                }
                self.get = Some(from);
                self.flush(cx.router);
                Ok(())
            }
            PollWhat::Post(body) => {
                let outcome = self.on_payload(cx, &body, limit_bytes);
                match outcome {
                    Ok(()) => answer(cx.router, from, 200, Box::from(&b"ok"[..])),
                    Err(reason) => {
                        let e = PollError::BadRequest;
                        answer(cx.router, from, e.status(), e.body(reason));
                    }
                }
                self.flush(cx.router);
                outcome
            }
            PollWhat::Message { binary, payload } => {
                self.on_ws_message(cx, from, binary, &payload, limit_bytes)
            }
            PollWhat::Gone if self.get == Some(from) => {
                self.get = None;
                Ok(())
            }
            PollWhat::Gone => match self.transport {
                Transport::Probing(ws) if ws == from => {
                    self.transport = Transport::Polling;
                    Ok(())
                }
                Transport::WebSocket(ws) if ws == from => Err("transport close"),
                _ => Ok(()),
            },
        }
    }

    /// The packets of a `POST` body, in order.
    fn on_payload(
        &mut self,
        cx: &mut Cx<'_>,
        body: &[u8],
        limit_bytes: usize,
    ) -> Result<(), &'static str> {
        if std::str::from_utf8(body).is_err() {
            return Err("payload is not UTF-8");
        }
        let max = cx.app.sio.cfg.max_payload;
        let mut packets: Vec<(Opcode, Vec<u8>)> = Vec::new();
        let mut scratch = Vec::new();
        engine::parse_payload(body, max, MAX_RECORDS_PER_POST, &mut scratch, |p| {
            packets.push(match p.data {
                Data::Text(t) => {
                    let mut text = Vec::with_capacity(1 + t.len());
                    engine::encode_text(&mut text, p.kind, t);
                    (Opcode::Text, text)
                }
                Data::Binary(b) => (Opcode::Binary, b.to_vec()),
            });
        })
        .map_err(|e| match e {
            engine::EngineError::TooLarge { .. } => "payload over maxPayload",
            _ => "malformed payload",
        })?;
        for (opcode, mut payload) in packets {
            self.on_packet(cx, opcode, &mut payload, limit_bytes)?;
        }
        Ok(())
    }

    /// One Engine.IO packet from the client (over either transport).
    fn on_packet(
        &mut self,
        cx: &mut Cx<'_>,
        opcode: Opcode,
        payload: &mut [u8],
        limit_bytes: usize,
    ) -> Result<(), &'static str> {
        self.run(cx, limit_bytes, |d, out| {
            super::on_message(d, opcode, payload, out)
        })
    }

    /// Run `f` on the session's `SioConn` as a connection's input call; what it writes is
    /// queued for the client, and a close it asks for ends the session (`Err`, with
    /// `client close` for the client's own close packet).
    fn run(
        &mut self,
        cx: &mut Cx<'_>,
        limit_bytes: usize,
        f: impl FnOnce(&mut Dispatch<'_>, &mut Output),
    ) -> Result<(), &'static str> {
        let mut d = Dispatch {
            id: cx.id,
            client: &mut self.client,
            router: cx.router,
            app: cx.app,
            now: cx.now,
        };
        f(&mut d, cx.out);
        let close = cx.out.close_request.take();
        self.take_output(cx, limit_bytes)?;
        match close {
            Some((CloseCode::NORMAL, _)) => Err("client close"),
            Some((_, reason)) => Err(reason),
            None => Ok(()),
        }
    }

    /// A message of a WebSocket that probes or carries the session.
    fn on_ws_message(
        &mut self,
        cx: &mut Cx<'_>,
        from: ConnId,
        binary: bool,
        payload: &[u8],
        limit_bytes: usize,
    ) -> Result<(), &'static str> {
        match self.transport {
            Transport::WebSocket(ws) if ws == from => {
                let opcode = if binary { Opcode::Binary } else { Opcode::Text };
                let mut payload = payload.to_vec();
                let r = self.on_packet(cx, opcode, &mut payload, limit_bytes);
                self.flush(cx.router);
                r
            }
            Transport::WebSocket(_) => Ok(()),
            Transport::Polling | Transport::Probing(_) => {
                if binary {
                    return Ok(());
                }
                match engine::parse_text(payload) {
                    Ok(p) if p.kind == PacketType::Ping && p.data == Data::Text(b"probe") => {
                        self.transport = Transport::Probing(from);
                        let mut text = Vec::with_capacity(6);
                        engine::encode_text(&mut text, PacketType::Pong, b"probe");
                        let mut frame = Output::new();
                        frame.frame(Opcode::Text, &text);
                        direct(cx.router, from, Arc::from(frame.bytes));
                        // The held poll returns, so that the client can pause polling.
                        if let Some(get) = self.get.take() {
                            answer(cx.router, get, 200, noop());
                        }
                        Ok(())
                    }
                    Ok(p)
                        if p.kind == PacketType::Upgrade
                            && self.transport == Transport::Probing(from) =>
                    {
                        self.transport = Transport::WebSocket(from);
                        if let Some(get) = self.get.take() {
                            answer(cx.router, get, 200, noop());
                        }
                        cx.app.sio.stats.upgrades += 1;
                        self.flush(cx.router);
                        Ok(())
                    }
                    // Anything else before the upgrade completes is not the session's yet.
                    _ => Ok(()),
                }
            }
        }
    }

    /// The session's deadline passed: ping, or `Err` to end it (a late pong).
    pub fn on_deadline(&mut self, cx: &mut Cx<'_>, limit_bytes: usize) -> Result<(), &'static str> {
        self.run(cx, limit_bytes, super::on_deadline)?;
        self.flush(cx.router);
        Ok(())
    }

    /// The session ends: the held `GET` gets the close packet, the carrying WebSocket is
    /// closed with `code`.
    pub fn on_end(&mut self, router: &mut Router, code: CloseCode, reason: &str) {
        if let Some(get) = self.get.take() {
            let mut body = Vec::new();
            engine::encode_record(&mut body, PacketType::Close, Data::Text(b""));
            answer(router, get, 200, body.into_boxed_slice());
        }
        if let Transport::WebSocket(ws) | Transport::Probing(ws) = self.transport {
            let msg = ShardMsg::Close {
                conn: ws,
                code,
                reason: Box::from(reason),
                reply: None,
            };
            router.outbound.control(ws.shard(), msg);
        }
        self.queue.clear();
        self.queued_bytes = 0;
    }
}

/// A request from `from` for a session this shard does not have (ended, or never was).
pub fn unknown_session(router: &mut Router, from: ConnId, what: &PollWhat) {
    match what {
        PollWhat::Message { .. } => {
            let msg = ShardMsg::Close {
                conn: from,
                code: CloseCode::POLICY_VIOLATION,
                reason: Box::from("Session ID unknown"),
                reply: None,
            };
            router.outbound.control(from.shard(), msg);
        }
        PollWhat::Gone => {}
        PollWhat::Open | PollWhat::Get | PollWhat::Post(_) => {
            let e = PollError::UnknownSid;
            answer(router, from, e.status(), e.body("Session ID unknown"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(opcode: Opcode, payload: &[u8]) -> Vec<u8> {
        let mut out = Output::new();
        out.frame(opcode, payload);
        out.bytes
    }

    #[test]
    fn queued_frames_become_records_with_binary_as_base64() {
        // An event and its attachment arrive as one delivery: two frames back to back.
        let mut delivery = frame(
            Opcode::Text,
            b"451-[\"f\",{\"_placeholder\":true,\"num\":0}]",
        );
        delivery.extend(frame(Opcode::Binary, &[1, 2, 3, 255]));
        let mut body = Vec::new();
        frames_to_records(&frame(Opcode::Text, b"2"), &mut body);
        frames_to_records(&delivery, &mut body);
        frames_to_records(&frame(Opcode::Text, &[b'4'; 300]), &mut body);
        let want = [
            &b"2"[..],
            b"451-[\"f\",{\"_placeholder\":true,\"num\":0}]",
            b"bAQID/w==",
            &[b'4'; 300],
        ]
        .join(&engine::RECORD_SEPARATOR);
        assert_eq!(body, want);
    }

    #[test]
    fn a_truncated_frame_is_not_read_past_its_end() {
        let mut f = frame(Opcode::Text, b"4hello");
        f.truncate(f.len() - 1);
        let mut body = Vec::new();
        frames_to_records(&f, &mut body);
        assert!(body.is_empty());
    }

    #[test]
    fn the_queue_refuses_what_would_pass_its_limit() {
        let cfg = SioConfig::default();
        let mut open = Vec::new();
        let mut s = PollSession::new(Box::from("sid"), Instant::now(), &cfg, &mut open);
        assert!(open.starts_with(b"0{\"sid\":\"sid\",\"upgrades\":[\"websocket\"]"));
        assert!(s.push_frame(Arc::from(frame(Opcode::Text, b"4a")), 8));
        assert!(!s.push_frame(Arc::from(frame(Opcode::Text, b"4abcd")), 8));
        assert_eq!(s.queued_bytes(), 4);
        assert_eq!(s.transport(), Transport::Polling);
    }
}
