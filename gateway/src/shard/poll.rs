//! The shard's side of Socket.IO long-polling: the sessions this shard owns are entries of
//! their own (no socket: [`Peer::Poll`]) so the router delivers to them by id; requests for
//! them arrive as [`ShardMsg::Poll`] from whichever shard accepted the request (this one
//! included), and the answers go back as [`ShardMsg::PollAnswer`] to the shard holding the
//! request, which resumes it. Timers drive each session's heartbeat.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use frame_simd::CloseCode;

use crate::app::sio::polling::PollClient;
use crate::app::sio::session::{unknown_session, Cx, PollSession};
use crate::app::Dispatch;
use crate::conn::{ConnId, Ctx, State};
use crate::driver::Driver;
use crate::router::inbox::{PollWhat, ShardMsg};

use super::{Entry, Peer, Shard};

/// How far a session without a deadline is looked at again (never, in practice: a session
/// always has its heartbeat).
const NO_DEADLINE: Duration = Duration::from_secs(60);

impl<D: Driver> Shard<D> {
    /// A polling request (or a carrying WebSocket's message) for session `session`.
    pub(super) fn on_poll(&mut self, session: ConnId, from: ConnId, what: PollWhat, now: Instant) {
        if let PollWhat::Open = what {
            return self.poll_open(from, now);
        }
        let limit = self.cfg.max_outbound_bytes;
        let Some(Entry {
            peer: Peer::Poll(p),
            ..
        }) = self.conns.get_mut(session)
        else {
            return unknown_session(&mut self.router, from, &what);
        };
        self.out.deflate = None;
        let mut cx = Cx {
            id: session,
            router: &mut self.router,
            app: &mut self.app,
            now,
            out: &mut self.out,
        };
        let outcome = p.on_poll(&mut cx, from, what, limit);
        self.out.clear();
        match outcome {
            Ok(()) => self.poll_settle(session, now),
            Err(reason) => {
                let code = match reason {
                    "client close" => CloseCode::NORMAL,
                    "transport close" => CloseCode::GOING_AWAY,
                    _ => {
                        self.app.sio.stats.malformed += 1;
                        CloseCode::PROTOCOL_ERROR
                    }
                };
                self.poll_end(session, code, reason);
            }
        }
    }

    /// A handshake: a new session owned by this shard, answered with its open packet.
    fn poll_open(&mut self, from: ConnId, now: Instant) {
        let count = self.shared.connections.fetch_add(1, Ordering::Relaxed) + 1;
        let cfg = std::sync::Arc::clone(&self.app.sio.cfg);
        let mut body = Vec::new();
        let placeholder = PollSession::new(Box::from(""), now, &cfg, &mut body);
        let entry = Entry::new(Peer::Poll(Box::new(placeholder)), None, true);
        let inserted = if count > self.cfg.max_connections {
            Err(entry)
        } else {
            self.conns.insert(entry)
        };
        let Ok(id) = inserted else {
            self.shared.connections.fetch_sub(1, Ordering::Relaxed);
            self.metrics.rejected_over_limit.add(1);
            let e = crate::app::sio::polling::PollError::BadRequest;
            let msg = ShardMsg::PollAnswer {
                to: from,
                status: e.status(),
                body: e.body("over capacity: try again later"),
            };
            return self.router.outbound.control(from.shard(), msg);
        };
        let sid = self.app.sio.ids.id(id.to_bits());
        body.clear();
        let session = PollSession::new(sid, now, &cfg, &mut body);
        if let Some(Entry {
            peer: Peer::Poll(p),
            ..
        }) = self.conns.get_mut(id)
        {
            **p = session;
        }
        self.app.sio.stats.sessions += 1;
        let msg = ShardMsg::PollAnswer {
            to: from,
            status: 200,
            body: body.into_boxed_slice(),
        };
        self.router.outbound.control(from.shard(), msg);
        self.poll_settle(id, now);
    }

    /// The owner's answer for the polling request `to` (held on this shard): resume it.
    pub(super) fn on_poll_answer(
        &mut self,
        to: ConnId,
        status: u16,
        body: Box<[u8]>,
        now: Instant,
    ) {
        let Some(e) = self.conns.get_mut(to) else {
            return;
        };
        let Peer::Client { conn, client } = &mut e.peer else {
            return;
        };
        if conn.state() != State::AwaitApp {
            return;
        }
        let Some(PollClient::Waiting { answer, .. }) = client.poll_mut() else {
            return;
        };
        *answer = Some((status, body));
        let cx = Ctx {
            settings: &self.cfg.settings,
            kernels: &self.kernels,
        };
        let room = self
            .cfg
            .max_outbound_bytes
            .saturating_sub(e.outbox.queued_bytes());
        self.out.set_room(room);
        let mut d = Dispatch {
            id: to,
            client,
            router: &mut self.router,
            app: &mut self.app,
            now,
        };
        conn.on_resume(now, &cx, &mut self.out, &mut d);
        self.settle(to, now);
        // Bytes may wait in the socket since reading stopped (no new edge will come).
        self.again.push(to);
    }

    /// Send what deliveries queued for session `id`.
    pub(super) fn poll_flush(&mut self, id: ConnId, now: Instant) {
        if let Some(Entry {
            peer: Peer::Poll(p),
            ..
        }) = self.conns.get_mut(id)
        {
            p.flush(&mut self.router);
            self.poll_settle(id, now);
        }
    }

    /// Session `id`'s timer fired: its heartbeat.
    pub(super) fn poll_timer(&mut self, id: ConnId, now: Instant) {
        let limit = self.cfg.max_outbound_bytes;
        let Some(Entry {
            peer: Peer::Poll(p),
            ..
        }) = self.conns.get_mut(id)
        else {
            return;
        };
        if p.deadline().is_some_and(|t| t > now) {
            return self.poll_settle(id, now);
        }
        self.out.deflate = None;
        let mut cx = Cx {
            id,
            router: &mut self.router,
            app: &mut self.app,
            now,
            out: &mut self.out,
        };
        let outcome = p.on_deadline(&mut cx, limit);
        self.out.clear();
        match outcome {
            Ok(()) => self.poll_settle(id, now),
            Err(reason) => {
                self.app.sio.stats.timeouts += 1;
                self.poll_end(id, CloseCode::GOING_AWAY, reason);
            }
        }
    }

    /// Re-arm session `id`'s timer.
    pub(super) fn poll_settle(&mut self, id: ConnId, now: Instant) {
        let Some(e) = self.conns.get_mut(id) else {
            return;
        };
        let Peer::Poll(p) = &e.peer else {
            return;
        };
        let deadline = p.deadline().unwrap_or(now + NO_DEADLINE);
        e.arm(&mut self.wheel, id, deadline, now);
    }

    /// End session `id`: its held request and carrying WebSocket are told, its channels left.
    pub(super) fn poll_end(&mut self, id: ConnId, code: CloseCode, reason: &str) {
        let Some(mut e) = self.conns.remove(id) else {
            return;
        };
        self.wheel.cancel(id.slot());
        if let Peer::Poll(p) = &mut e.peer {
            self.forget_poll(id, p, code, reason);
        }
    }

    /// What ending session `id` (already out of the slab) takes.
    pub(super) fn forget_poll(
        &mut self,
        id: ConnId,
        p: &mut PollSession,
        code: CloseCode,
        reason: &str,
    ) {
        p.on_end(&mut self.router, code, reason);
        self.router.on_disconnect(id, &mut p.client.session);
        self.shared.connections.fetch_sub(1, Ordering::Relaxed);
    }
}
