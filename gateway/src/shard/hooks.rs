//! The shard's side of backend hooks: a call's answer, back from the hooks thread through the
//! inbox, is applied to the connection that made the call: a held upgrade resumes (and is
//! closed at once when the connect hook asked for a close code), replies go out, and a
//! connection that stopped reading for want of answers is read again.

use std::time::Instant;

use crate::app::calls::AfterAnswer;
use crate::app::Dispatch;
use crate::conn::{Ctx, Output, State};
use crate::driver::Driver;
use crate::hooks::Answer;

use super::{Peer, Shard};

impl<D: Driver> Shard<D> {
    pub(super) fn on_hook_answer(&mut self, a: Answer, now: Instant) {
        let id = a.caller.conn;
        let Some(e) = self.conns.get_mut(id) else {
            // Gone (a stale id never reaches whoever holds the slot now).
            self.app.forget_call(a.caller.tag);
            return;
        };
        let Peer::Client { conn, client } = &mut e.peer else {
            self.app.forget_call(a.caller.tag);
            return;
        };
        let cx = Ctx {
            settings: &self.cfg.settings,
            kernels: &self.kernels,
        };
        let was_waiting = self.app.must_wait(client);
        let room = self
            .cfg
            .max_outbound_bytes
            .saturating_sub(e.outbox.queued_bytes());
        self.out.set_room(room);
        let mut d = Dispatch {
            id,
            client,
            router: &mut self.router,
            app: &mut self.app,
            now,
        };
        let state = conn.state();
        let after = if state == State::Open || state == State::AwaitApp {
            d.on_hook_answer(a, &mut self.out)
        } else {
            // Closing: the answer is no longer wanted, only accounted for.
            d.on_hook_answer(a, &mut Output::new())
        };
        let mut read_again = was_waiting;
        if let AfterAnswer::Close(code, reason) = &after {
            conn.on_close_request(*code, reason, now, &mut self.out);
        }
        if after == AfterAnswer::Resume && conn.state() == State::AwaitApp {
            conn.on_resume(now, &cx, &mut self.out, &mut d);
            if conn.state() == State::Open {
                self.metrics.upgrades.add(1);
                d.client.opened_at = crate::app::OpenedAt::at(now);
                if let Some((code, reason)) = d.take_close() {
                    conn.on_close_request(code, &reason, now, &mut self.out);
                }
            }
            read_again = true;
        }
        let waiting = d.app.must_wait(d.client);
        self.settle(id, now);
        if read_again && !waiting {
            // Bytes may wait in the socket since reading stopped (no new edge will come).
            self.again.push(id);
        }
    }
}
