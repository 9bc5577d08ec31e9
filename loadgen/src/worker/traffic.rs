//! Data messages of a worker: the open-loop schedule (a fixed timetable of intended send times,
//! dealt round robin over the worker's sending connections), echo and publish sends, and the
//! checks a subscriber makes on every delivery (stamp, group, sequence, latency from the
//! intended publish time).

use std::sync::atomic::Ordering;

use super::meter::Meter;
use super::{phase, SpecState, Worker};
use crate::adapter::Delivery as Received;
use crate::client::{Proto, State};
use crate::clock::{Clock, SEC};
use crate::payload::Stamp;
use crate::plan::{Plan, Role};

impl Worker {
    /// Queue one echo message (or, for an `rpc` connection, one call) on slot `idx`, intended
    /// at `intended`.
    pub(super) fn send_echo(&mut self, idx: usize, intended: u64) {
        let Some(slot) = self.slots[idx].as_mut() else {
            return;
        };
        if slot.conn.state() != State::Open {
            return;
        }
        if self.specs[slot.spec].role == Role::Rpc && self.specs[slot.spec].via_api {
            // Straight to the backend: the body the gateway would send; answers come in order.
            self.scratch.clear();
            self.scratch
                .extend_from_slice(b"{\"conn\":\"0\",\"user\":null,\"method\":\"");
            self.scratch
                .extend_from_slice(self.plan.rpc_method.as_bytes());
            self.scratch.extend_from_slice(b"\",\"data\":\"");
            self.scratch
                .resize(self.scratch.len() + self.plan.size, b'x');
            self.scratch.extend_from_slice(b"\"}");
            slot.conn.send(self.plan.opcode, &self.scratch);
            self.scratch.clear();
            slot.inflight.push_back(intended);
            self.meter.on_sent(intended, self.plan.size);
            self.meter.pending_expected += 1;
            if !slot.dirty {
                slot.dirty = true;
                self.dirty.push(idx);
            }
            return;
        }
        if self.specs[slot.spec].role == Role::Rpc {
            // The id is the intended send time: the reply says which call it answers.
            self.scratch.clear();
            self.scratch
                .extend_from_slice(b"{\"op\":\"rpc\",\"method\":\"");
            self.scratch
                .extend_from_slice(self.plan.rpc_method.as_bytes());
            self.scratch.extend_from_slice(b"\",\"id\":");
            self.scratch
                .extend_from_slice(intended.to_string().as_bytes());
            self.scratch.extend_from_slice(b",\"data\":\"");
            self.scratch
                .resize(self.scratch.len() + self.plan.size, b'x');
            self.scratch.extend_from_slice(b"\"}");
            slot.conn.send(self.plan.opcode, &self.scratch);
            self.scratch.clear();
            self.meter.on_sent(intended, self.plan.size);
            self.meter.pending_expected += 1;
            if !slot.dirty {
                slot.dirty = true;
                self.dirty.push(idx);
            }
            return;
        }
        if slot.echo_frame.is_none() {
            self.scratch.clear();
            self.scratch.resize(self.plan.size, 0);
            crate::payload::fill(&mut self.scratch);
            if let Proto::Ws(conn) = &slot.conn {
                slot.echo_frame = conn.encode(self.plan.opcode, &self.scratch);
            }
        }
        match (&mut slot.conn, &slot.echo_frame) {
            (Proto::Ws(conn), Some(frame)) => conn.send_encoded(frame),
            (conn, _) => conn.send(self.plan.opcode, &self.scratch),
        }
        slot.inflight.push_back(intended);
        self.meter.on_sent(intended, self.plan.size);
        self.meter.pending_expected += 1;
        if !slot.dirty {
            slot.dirty = true;
            self.dirty.push(idx);
        }
    }

    /// Queue one publish from spec `spec` (a publisher), intended at `intended`.
    pub(super) fn send_publish(&mut self, spec: usize, intended: u64) -> bool {
        let Some(idx) = self.state[spec].slot else {
            return false;
        };
        let Some(slot) = self.slots[idx].as_mut() else {
            return false;
        };
        if slot.conn.state() != State::Open {
            return false;
        }
        let Role::Member {
            group,
            publisher: Some(p),
            subscriber,
        } = self.specs[spec].role
        else {
            return false;
        };
        let st = &mut self.state[spec];
        let stamp = Stamp {
            intended_unix_ns: self.clock.unix_ns(intended),
            publisher: p,
            seq: st.seq,
        };
        if self.specs[spec].via_api {
            self.plan
                .adapter
                .write_api_publish(&mut self.scratch, group, self.plan.size, |b| stamp.write(b));
        } else {
            self.plan.adapter.write_publish(
                &mut self.scratch,
                group,
                subscriber,
                self.plan.size,
                |b| stamp.write(b),
            );
        }
        st.seq += 1;
        slot.conn
            .send(self.plan.adapter.publish_opcode(), &self.scratch);
        self.shared.sent_by_pub[p as usize].store(st.seq, Ordering::Release);
        self.meter.on_sent(intended, self.plan.size);
        self.meter.pending_expected += self.plan.deliveries_per_publish(p, subscriber);
        if !slot.dirty {
            slot.dirty = true;
            self.dirty.push(idx);
        }
        true
    }

    pub(super) fn do_sends(&mut self, now: u64) {
        while let Some(due) = self.next_send {
            if due > now {
                break;
            }
            if due >= self.meter.window_end || self.phase != phase::RUN {
                self.next_send = None;
                break;
            }
            crate::stats::record(&mut self.meter.send_lag, now - due);
            let mut sent = false;
            for _ in 0..self.senders.len() {
                let spec = self.senders[self.rr];
                self.rr = (self.rr + 1) % self.senders.len();
                sent = match self.specs[spec].role {
                    Role::Echo | Role::Rpc => match self.state[spec].slot {
                        Some(idx)
                            if self.slots[idx]
                                .as_ref()
                                .is_some_and(|s| s.conn.state() == State::Open) =>
                        {
                            self.send_echo(idx, due);
                            true
                        }
                        _ => false,
                    },
                    _ => self.send_publish(spec, due),
                };
                if sent {
                    break;
                }
            }
            if !sent {
                self.unsent += 1;
            }
            self.send_k += 1;
            let offset = (self.send_k as f64 * SEC as f64 / self.send_rate) as u64;
            self.next_send = Some(self.send_origin + offset);
        }
    }
}

/// What a group member is, for the messages it receives.
pub(super) struct Member<'a> {
    /// Its group.
    pub group: u32,
    /// Its deliveries are checked.
    pub subscriber: bool,
    /// Its subscribe request is not answered yet.
    pub awaiting_ack: &'a mut bool,
    /// Messages owed to the server (heartbeat answers, a join), sent after the read.
    pub answers: &'a mut Vec<Vec<u8>>,
}

/// A group member got a message: a delivery (checked and timed when it subscribes), or the reply
/// to one of its requests. Returns true when this was the reply to its subscribe request (the
/// member is now ready, whatever the answer: a refusal is counted and shows as lost deliveries).
pub(super) fn on_member_message(
    plan: &Plan,
    clock: &Clock,
    meter: &mut Meter,
    st: &mut SpecState,
    member: Member<'_>,
    payload: &[u8],
    now: u64,
) -> bool {
    match plan.adapter.delivery(payload) {
        Received::Payload(body) if member.subscriber => {
            on_delivery(plan, clock, meter, st, member.group, body, now);
            false
        }
        // A publisher that does not subscribe may still hear its group (`pub:` peers).
        Received::Payload(_) => false,
        Received::Reply(answer) => {
            // Replies come in request order: the first one answers the subscribe.
            let request = if *member.awaiting_ack {
                "subscribe"
            } else {
                "publish"
            };
            if let Err(code) = answer {
                meter.on_refused(request, code);
            }
            std::mem::replace(member.awaiting_ack, false)
        }
        Received::Ignore => false,
        Received::Answer(text) => {
            member.answers.push(text.to_vec());
            false
        }
        Received::Connected => {
            if member.subscriber {
                member
                    .answers
                    .push(plan.adapter.join_message(member.group).into_bytes());
            }
            false
        }
    }
}

/// A subscriber got a delivery: check its stamp and time it from the intended publish time.
fn on_delivery(
    plan: &Plan,
    clock: &Clock,
    meter: &mut Meter,
    st: &mut SpecState,
    group: u32,
    body: &[u8],
    now: u64,
) {
    let Some(stamp) = Stamp::read(body) else {
        st.foreign += 1;
        return;
    };
    match plan.publishers.get(stamp.publisher as usize) {
        Some(&(g, local)) if g == group => {
            if let Some(track) = st.tracks.get_mut(local as usize) {
                track.on_seq(stamp.seq);
            }
            let intended = clock.from_unix_ns(stamp.intended_unix_ns);
            let latency = clock.unix_ns(now).saturating_sub(stamp.intended_unix_ns);
            meter.on_received(intended, latency, body.len().min(plan.size));
        }
        _ => st.foreign += 1,
    }
}

/// The intended send time of the call an `rpc` reply answers (its `id`), when the reply is a
/// success (`"ok":true`); `None` for anything else (the welcome, a failed call).
pub(super) fn rpc_reply(payload: &[u8]) -> Option<u64> {
    const HEAD: &[u8] = b"{\"type\":\"reply\",\"id\":";
    let rest = payload.strip_prefix(HEAD)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let id = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    rest[digits..].starts_with(b",\"ok\":true").then_some(id)
}

#[cfg(test)]
mod rpc_tests {
    use super::rpc_reply;

    #[test]
    fn rpc_replies_give_their_id_only_when_ok() {
        assert_eq!(
            rpc_reply(br#"{"type":"reply","id":123,"ok":true,"data":"x"}"#),
            Some(123)
        );
        assert_eq!(
            rpc_reply(br#"{"type":"reply","id":123,"ok":false,"error":{}}"#),
            None
        );
        assert_eq!(rpc_reply(br#"{"type":"welcome","conn":"1"}"#), None);
        assert_eq!(rpc_reply(br#"{"type":"reply","id":"a","ok":true}"#), None);
    }
}
