//! `SioConn`: one Socket.IO session over WebSocket: its heartbeat, its sockets (one per joined
//! namespace) and a binary packet waiting for its attachments. Inputs are the session's
//! WebSocket messages and its deadline; replies go to the connection's output, everything else
//! to the router. Errors are the reason the session closes.

use std::time::Instant;

use frame_simd::Opcode;
use serde_json::value::RawValue;

use crate::auth::{unix_now, Identity};
use crate::conn::Output;

use super::emit::{event_frames, push_binary_frame, Attachments};
use super::engine::{self, Data, PacketType as EnginePacket};
use super::events::Action;
use super::packet::{self, encode_ack, Packet, PacketType, Payload};
use super::{
    engine_reason, namespace_channel, publish, room_channel, send_packet, Dispatch, NamespaceAuth,
    SioConfig,
};

/// One socket: a namespace joined by the session.
#[derive(Debug)]
struct Socket {
    nsp: Box<str>,
    id: Box<str>,
    /// The channels it is subscribed to (its namespace's, its own id's, its rooms').
    channels: Vec<Box<str>>,
}

/// A binary packet whose attachments are still arriving.
#[derive(Debug)]
struct Pending {
    /// The packet's text.
    text: String,
    /// Attachments still to come.
    missing: usize,
    /// Those received, as WebSocket binary frames.
    frames: Vec<u8>,
}

/// One session's state (boxed in the connection's entry: only Socket.IO sessions pay for it).
#[derive(Debug)]
pub struct SioConn {
    sid: Box<str>,
    /// When the next ping is due, or, while `awaiting_pong`, when the pong is late.
    heartbeat: Instant,
    awaiting_pong: bool,
    /// The session closes at this time unless a socket has joined a namespace.
    connect_by: Option<Instant>,
    sockets: Vec<Socket>,
    pending: Option<Box<Pending>>,
}

impl SioConn {
    /// A session opened at `now`.
    pub fn new(sid: Box<str>, now: Instant, cfg: &SioConfig) -> SioConn {
        SioConn {
            sid,
            heartbeat: now + cfg.ping_interval,
            awaiting_pong: false,
            connect_by: Some(now + cfg.connect_timeout),
            sockets: Vec::new(),
            pending: None,
        }
    }

    /// The session id.
    pub fn sid(&self) -> &str {
        &self.sid
    }

    /// When [`SioConn::on_deadline`] must be called.
    pub fn deadline(&self) -> Instant {
        match self.connect_by {
            Some(t) => t.min(self.heartbeat),
            None => self.heartbeat,
        }
    }

    /// Ping when due; `Some(reason)` when the session must close.
    pub fn on_deadline(
        &mut self,
        now: Instant,
        cfg: &SioConfig,
        out: &mut Output,
    ) -> Option<&'static str> {
        if self.connect_by.is_some_and(|t| now >= t) {
            return Some("no namespace joined in time");
        }
        if now < self.heartbeat {
            return None;
        }
        if self.awaiting_pong {
            return Some("ping timeout");
        }
        out.frame(Opcode::Text, &[EnginePacket::Ping.digit()]);
        self.awaiting_pong = true;
        self.heartbeat = now + cfg.ping_timeout;
        None
    }

    /// One WebSocket message; `Err(reason)` closes the session.
    pub fn on_message(
        &mut self,
        d: &mut Dispatch<'_>,
        cfg: &SioConfig,
        opcode: Opcode,
        payload: &[u8],
        out: &mut Output,
    ) -> Result<(), &'static str> {
        if opcode == Opcode::Binary {
            let Some(mut p) = self.pending.take() else {
                return Err("binary message without a binary packet");
            };
            push_binary_frame(&mut p.frames, payload);
            p.missing -= 1;
            if p.frames.len() > cfg.max_payload {
                return Err("attachments over maxPayload");
            }
            if p.missing > 0 {
                self.pending = Some(p);
                return Ok(());
            }
            let packet = packet::parse(&p.text, &cfg.limits).map_err(|_| "malformed packet")?;
            let a = Attachments {
                count: packet.attachments,
                frames: &p.frames,
            };
            return self.on_packet(d, cfg, packet, Some(a), out);
        }
        if self.pending.is_some() {
            return Err("text message while attachments were expected");
        }
        let p = engine::parse_text(payload).map_err(engine_reason)?;
        let Data::Text(data) = p.data else {
            return Err("malformed Engine.IO packet");
        };
        match p.kind {
            EnginePacket::Pong => {
                if self.awaiting_pong {
                    self.awaiting_pong = false;
                    self.heartbeat = d.now + cfg.ping_interval;
                }
                Ok(())
            }
            EnginePacket::Ping => {
                let mut text = Vec::with_capacity(1 + data.len());
                engine::encode_text(&mut text, EnginePacket::Pong, data);
                out.frame(Opcode::Text, &text);
                Ok(())
            }
            EnginePacket::Close => {
                out.close_request = Some((frame_simd::CloseCode::NORMAL, ""));
                Ok(())
            }
            EnginePacket::Noop | EnginePacket::Upgrade => Ok(()),
            EnginePacket::Open => Err("a client may not send open"),
            EnginePacket::Message => {
                // A text frame passed the UTF-8 check.
                let text = std::str::from_utf8(data).map_err(|_| "message is not UTF-8")?;
                let packet = packet::parse(text, &cfg.limits).map_err(|_| "malformed packet")?;
                if packet.attachments > 0 {
                    self.pending = Some(Box::new(Pending {
                        text: text.to_owned(),
                        missing: packet.attachments,
                        frames: Vec::new(),
                    }));
                    return Ok(());
                }
                self.on_packet(d, cfg, packet, None, out)
            }
        }
    }

    fn on_packet(
        &mut self,
        d: &mut Dispatch<'_>,
        cfg: &SioConfig,
        p: Packet<'_>,
        attachments: Option<Attachments<'_>>,
        out: &mut Output,
    ) -> Result<(), &'static str> {
        match p.kind {
            PacketType::Connect => {
                self.connect(d, cfg, &p, out);
                Ok(())
            }
            PacketType::Disconnect => {
                if let Some(at) = self.sockets.iter().position(|s| *s.nsp == *p.nsp) {
                    let s = self.sockets.swap_remove(at);
                    for ch in &s.channels {
                        let _ = d.router.unsubscribe(d.id, &mut d.client.session, ch);
                    }
                }
                Ok(())
            }
            PacketType::Event | PacketType::BinaryEvent => {
                d.app.sio.stats.events += 1;
                let Some(at) = self.sockets.iter().position(|s| *s.nsp == *p.nsp) else {
                    // Not joined (yet, or any more): what a server does with it is nothing.
                    d.app.sio.stats.dropped += 1;
                    return Ok(());
                };
                let Payload::Event { name, args } = &p.payload else {
                    return Err("malformed packet");
                };
                let action = cfg.events.action(name).clone();
                let outcome = self.run(d, at, &action, name, args, attachments);
                if outcome.is_err() || action == Action::Drop {
                    d.app.sio.stats.dropped += 1;
                }
                if let Some(id) = p.id {
                    let answer = match (&action, outcome) {
                        (Action::Drop, _) => return Ok(()),
                        (Action::Ack(v), Ok(())) => v.to_string(),
                        (_, Ok(())) => String::new(),
                        (_, Err(message)) => {
                            let mut e = b"{\"error\":".to_vec();
                            crate::json::write_str(&mut e, message);
                            e.push(b'}');
                            String::from_utf8(e).unwrap_or_default()
                        }
                    };
                    let nsp = &self.sockets[at].nsp;
                    let args: &[&[u8]] = if answer.is_empty() {
                        &[]
                    } else {
                        &[answer.as_bytes()]
                    };
                    send_packet(&mut d.app.sio.text, out, |t| {
                        encode_ack(t, nsp, id, args.iter().copied())
                    });
                }
                Ok(())
            }
            // Answers to acks the server asked for: the gateway asks for none.
            PacketType::Ack | PacketType::BinaryAck => Ok(()),
            PacketType::ConnectError => Err("a client may not send CONNECT_ERROR"),
        }
    }

    fn connect(&mut self, d: &mut Dispatch<'_>, cfg: &SioConfig, p: &Packet<'_>, out: &mut Output) {
        let refuse = |text: &mut Vec<u8>, out: &mut Output, message: &str| {
            send_packet(text, out, |t| {
                packet::encode_connect_error(t, p.nsp, message)
            });
        };
        let Some(ns) = cfg.namespace(p.nsp) else {
            d.app.sio.stats.connect_errors += 1;
            return refuse(&mut d.app.sio.text, out, "Invalid namespace");
        };
        if let Some(s) = self.sockets.iter().find(|s| *s.nsp == *p.nsp) {
            return send_packet(&mut d.app.sio.text, out, |t| {
                packet::encode_connected(t, p.nsp, &s.id)
            });
        }
        if ns.auth == NamespaceAuth::Token {
            let token = match &p.payload {
                Payload::Auth(a) => serde_json::from_str::<TokenAuth>(a.get())
                    .ok()
                    .and_then(|t| t.token),
                _ => None,
            };
            let verified = token.is_some_and(|t| {
                matches!(d.app.auth.verify(&t, unix_now()), Ok(Identity::Token(_)))
            });
            if !verified {
                d.app.sio.stats.connect_errors += 1;
                return refuse(
                    &mut d.app.sio.text,
                    out,
                    "Not authorized: auth.token is missing or not valid",
                );
            }
        }
        // Like the sid, it starts with the connection's id (the API's `except` reads it back)
        // and ends with 8 unpredictable bytes of its own.
        let id = d.app.sio.ids.id(d.id.to_bits());
        let mut socket = Socket {
            nsp: Box::from(p.nsp),
            id,
            channels: Vec::new(),
        };
        let channels = [
            Some(namespace_channel(p.nsp)),
            room_channel(p.nsp, &socket.id),
        ];
        for ch in channels.into_iter().flatten() {
            if d.router
                .subscribe(d.id, &mut d.client.session, &ch)
                .is_err()
            {
                d.app.sio.stats.connect_errors += 1;
                for ch in &socket.channels {
                    let _ = d.router.unsubscribe(d.id, &mut d.client.session, ch);
                }
                return refuse(
                    &mut d.app.sio.text,
                    out,
                    "Too many namespaces or rooms on this connection",
                );
            }
            socket.channels.push(Box::from(ch));
        }
        send_packet(&mut d.app.sio.text, out, |t| {
            packet::encode_connected(t, p.nsp, &socket.id)
        });
        self.sockets.push(socket);
        self.connect_by = None;
        d.app.sio.stats.connects += 1;
    }

    /// Run `action` for the event `name` of socket `at`; `Err` says why it did nothing.
    fn run(
        &mut self,
        d: &mut Dispatch<'_>,
        at: usize,
        action: &Action,
        name: &str,
        args: &[&RawValue],
        attachments: Option<Attachments<'_>>,
    ) -> Result<(), &'static str> {
        let socket = &mut self.sockets[at];
        let raw: Vec<&[u8]> = args.iter().map(|a| a.get().as_bytes()).collect();
        let sio = &mut d.app.sio;
        match action {
            Action::Drop | Action::Ack(_) => Ok(()),
            Action::Broadcast | Action::BroadcastOthers => {
                let frames = event_frames(&mut sio.text, &socket.nsp, name, &raw, attachments);
                let skip = (*action == Action::BroadcastOthers).then_some(d.id);
                let ch = namespace_channel(&socket.nsp);
                publish(d.router, &ch, frames, skip)
                    .then_some(())
                    .ok_or("busy: retry later")
            }
            Action::Join | Action::Leave => {
                let room = args
                    .first()
                    .and_then(|a| serde_json::from_str::<String>(a.get()).ok())
                    .ok_or("the first argument must be the room name")?;
                let ch = room_channel(&socket.nsp, &room)
                    .ok_or("room names may only hold A-Z a-z 0-9 _ . : @ / -")?;
                if *action == Action::Join {
                    if socket.channels.iter().any(|c| **c == *ch) {
                        return Ok(());
                    }
                    d.router
                        .subscribe(d.id, &mut d.client.session, &ch)
                        .map_err(|_| "too many rooms")?;
                    socket.channels.push(Box::from(ch));
                } else if let Some(i) = socket.channels.iter().position(|c| **c == *ch) {
                    // A socket stays in its namespace's room and its own.
                    if i >= 2 {
                        socket.channels.swap_remove(i);
                        let _ = d.router.unsubscribe(d.id, &mut d.client.session, &ch);
                    }
                }
                Ok(())
            }
            Action::ToRoom | Action::ToRoomOthers | Action::ToSocket => {
                let first = args
                    .first()
                    .ok_or("the first argument must name the target")?;
                let (target, rest) =
                    target(first, (*action == Action::ToSocket).then_some(&*socket.id))?;
                let mut out_args: Vec<&[u8]> = Vec::with_capacity(raw.len());
                if let Some(rest) = &rest {
                    out_args.push(rest.as_bytes());
                }
                out_args.extend_from_slice(&raw[1..]);
                let ch = room_channel(&socket.nsp, &target).ok_or("no such room or socket")?;
                let frames = event_frames(&mut sio.text, &socket.nsp, name, &out_args, attachments);
                let skip = (*action == Action::ToRoomOthers).then_some(d.id);
                publish(d.router, &ch, frames, skip)
                    .then_some(())
                    .ok_or("busy: retry later")
            }
        }
    }

    /// The socket ids of the session (for tests and the API).
    pub fn socket_ids(&self) -> impl Iterator<Item = (&str, &str)> {
        self.sockets.iter().map(|s| (&*s.nsp, &*s.id))
    }
}

/// The `auth` object of a CONNECT to a namespace that needs a token.
#[derive(serde::Deserialize)]
struct TokenAuth {
    token: Option<String>,
}

/// The target named by an action's first argument: a string is the target (not passed on); an
/// object's `to` is the target, and the object is passed on without it, with `from` set to
/// `from` when given.
fn target(first: &RawValue, from: Option<&str>) -> Result<(String, Option<String>), &'static str> {
    let text = first.get();
    if let Ok(s) = serde_json::from_str::<String>(text) {
        return Ok((s, None));
    }
    let mut obj: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|_| "the first argument must name the target")?;
    let Some(serde_json::Value::String(to)) = obj.remove("to") else {
        return Err("the first argument's `to` must name the target");
    };
    if let Some(from) = from {
        obj.insert("from".into(), serde_json::Value::String(from.to_owned()));
    }
    let rest = serde_json::to_string(&obj).map_err(|_| "the first argument is not JSON")?;
    Ok((to, Some(rest)))
}
