//! The shard's side of the router: applying [`Action`]s and inbox messages to the shard's own
//! connections. Deliveries are appended to outboxes as shared frames and flushed once per turn
//! per connection (one vectored write for everything the turn queued); a subscriber whose queue
//! would pass `--max-outbound-bytes` is closed with 4008 instead, without slowing the others.
//! Back-to-back deliveries of one channel are fanned out as one run (see [`Run`]): each
//! subscriber gets the run's frames as one shared buffer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use frame_simd::{CloseCode, Opcode};

use crate::app::ws;
use crate::auth::unix_now;
use crate::conn::deflate::{Deflater, Packed};
use crate::conn::id::Slab;
use crate::conn::{ConnId, Settings};
use crate::driver::Driver;
use crate::router::channels::Kind;
use crate::router::fanout::{text_frame, Delivery};
use crate::router::gather::Gather;
use crate::router::inbox::{ConnInfo, Lookup, ReplyTo, ShardMsg};
use crate::router::{Answered, Completion, Member};

use super::{Entry, Flags, Peer, Shard};

/// The close code for a slow consumer.
pub const SLOW_CONSUMER: CloseCode = CloseCode(4008);
/// Messages waiting for other shards' queues at which this shard stops reading sockets.
pub(super) const BACKLOG_PAUSE_READS: usize = 1024;
/// How soon control messages that found a full queue are retried when nothing else happens.
const BACKLOG_RETRY: Duration = Duration::from_millis(1);
/// The close code for a connection whose token expired.
pub const TOKEN_EXPIRED: CloseCode = CloseCode(4001);

/// What happened to one frame for one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Queued {
    /// In its outbox.
    Yes,
    /// No such live, open connection.
    Gone,
    /// Over the outbound limit: it must be closed.
    Slow,
}

/// Where a shared frame goes: the shard's connections, the ones to flush this turn, and what
/// compressing it for the peers that negotiated permessage-deflate needs.
struct Sink<'a> {
    conns: &'a mut Slab<Entry>,
    dirty: &'a mut Vec<ConnId>,
    deflater: &'a mut Deflater,
    settings: &'a Settings,
    limit_bytes: usize,
}

impl<'a> Sink<'a> {
    /// The sink of a shard, from the fields it needs (so the router stays free to borrow).
    fn of(
        conns: &'a mut Slab<Entry>,
        dirty: &'a mut Vec<ConnId>,
        out: &'a mut crate::conn::Output,
        cfg: &'a super::ShardConfig,
    ) -> Sink<'a> {
        Sink {
            conns,
            dirty,
            deflater: &mut out.deflater,
            settings: &cfg.settings,
            limit_bytes: cfg.max_outbound_bytes,
        }
    }
}

impl<D: Driver> Shard<D> {
    fn sink(&mut self) -> Sink<'_> {
        Sink::of(&mut self.conns, &mut self.dirty, &mut self.out, &self.cfg)
    }
}

/// `{"type":"skipped","channel":...,"offset":N}`: the position of a publication its publisher
/// asked not to get (`skip_self`) on a channel with history.
fn skipped_frame(channel: &str, offset: u64) -> Arc<[u8]> {
    let mut scratch = Vec::new();
    text_frame(&mut scratch, |out| {
        out.extend_from_slice(br#"{"type":"skipped","channel":"#);
        crate::json::write_str(out, channel);
        out.extend_from_slice(format!(r#","offset":{offset}}}"#).as_bytes());
    })
}

/// Queue `frame` for `id`: its compressed twin (made at most once per frame) when `id`
/// negotiated permessage-deflate.
fn queue_frame(sink: &mut Sink<'_>, id: ConnId, frame: &mut Packed<'_>) -> Queued {
    let Some(e) = sink.conns.get_mut(id) else {
        return Queued::Gone;
    };
    if let Peer::Poll(p) = &mut e.peer {
        // A long-polling session: kept for its next request, within the same limit.
        if !p.push_frame(Arc::clone(frame.plain()), sink.limit_bytes) {
            return Queued::Slow;
        }
        if e.mark_dirty() {
            sink.dirty.push(id);
        }
        return Queued::Yes;
    }
    let Some((conn, _)) = e.peer.open_client() else {
        return Queued::Gone;
    };
    let frame = frame.for_peer(conn.send_deflate(sink.settings), sink.deflater);
    let (dirty, limit_bytes) = (&mut *sink.dirty, sink.limit_bytes);
    if e.outbox.queued_bytes() + frame.len() > limit_bytes {
        return Queued::Slow;
    }
    e.outbox.push_shared(Arc::clone(frame));
    if e.mark_dirty() {
        dirty.push(id);
    }
    Queued::Yes
}

/// Most frame bytes of one kind a run gathers.
const RUN_BYTES: usize = 64 * 1024;

/// Deliveries of one channel that arrived back to back with nothing else between them (a burst
/// of publishes read in one turn, or queued by another shard): they are fanned out together.
/// Their frames are copied once, back to back, into one shared buffer per kind of subscriber,
/// and each subscriber's outbox gets that buffer as one chunk: the work per subscriber (the
/// lookup, the checks, the reference count, the queue slot, the write's buffer) is paid once
/// per run instead of once per message. What each subscriber receives, in what order, and what
/// counts against its outbound limit are the same as frame by frame.
#[derive(Debug, Default)]
pub(super) struct Run {
    deliveries: Vec<Arc<Delivery>>,
    /// Bytes of the JSON frames held.
    json_bytes: usize,
    /// Bytes of the bare frames held.
    bare_bytes: usize,
    /// Where a shared buffer is assembled.
    scratch: Vec<u8>,
}

/// What happened to a run's buffer for one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Whole {
    /// In its outbox.
    Queued,
    /// No such live, open connection.
    Gone,
    /// It takes the run frame by frame: it compresses, is a long-polling session, or the
    /// buffer would pass its outbound limit where some of the frames may still fit.
    OneByOne,
}

impl Run {
    /// Whether `d` may be part of a run: a publication without a position (no history: no
    /// subscriber waits for it, no marker is due) with a frame for each kind of subscriber.
    fn may_join(d: &Delivery) -> bool {
        d.offset.is_none() && d.bare.is_some()
    }

    /// Whether `d` may join the run held: same channel, same publisher to skip, room left.
    fn fits(&self, d: &Delivery) -> bool {
        let Some(first) = self.deliveries.first() else {
            return true;
        };
        let bare = d.bare.as_ref().map_or(0, |b| b.len());
        (Arc::ptr_eq(&first.channel, &d.channel) || first.channel == d.channel)
            && first.skip == d.skip
            && self.json_bytes + d.json.len() <= RUN_BYTES
            && self.bare_bytes + bare <= RUN_BYTES
    }

    fn push(&mut self, d: Arc<Delivery>) {
        self.json_bytes += d.json.len();
        self.bare_bytes += d.bare.as_ref().map_or(0, |b| b.len());
        self.deliveries.push(d);
    }

    fn clear(&mut self) {
        self.deliveries.clear();
        self.json_bytes = 0;
        self.bare_bytes = 0;
    }

    /// The run's frames of one kind, back to back in one shared buffer.
    fn buffer(&mut self, bare: bool) -> Arc<[u8]> {
        let Run {
            deliveries,
            scratch,
            ..
        } = self;
        scratch.clear();
        for d in deliveries.iter() {
            let frame = if bare { d.bare.as_ref() } else { Some(&d.json) };
            scratch.extend_from_slice(frame.map_or(&[][..], |f| &f[..]));
        }
        Arc::from(&scratch[..])
    }
}

/// Queue a run's shared `buffer` for `id` as one chunk, when it takes the run whole.
fn queue_whole(sink: &mut Sink<'_>, id: ConnId, buffer: &Arc<[u8]>) -> Whole {
    let Some(e) = sink.conns.get_mut(id) else {
        return Whole::Gone;
    };
    if let Peer::Poll(_) = e.peer {
        return Whole::OneByOne;
    }
    let Some((conn, _)) = e.peer.open_client() else {
        return Whole::Gone;
    };
    if conn.send_deflate(sink.settings).is_some()
        || e.outbox.queued_bytes() + buffer.len() > sink.limit_bytes
    {
        return Whole::OneByOne;
    }
    e.outbox.push_shared(Arc::clone(buffer));
    if e.mark_dirty() {
        sink.dirty.push(id);
    }
    Whole::Queued
}

impl<D: Driver> Shard<D> {
    /// Handle every message other shards queued for this one.
    pub(super) fn drain_inbox(&mut self, now: Instant) {
        let me = self.router.shard();
        self.metrics
            .queue_depth
            .set(self.router.outbound.mesh().depth(me) as u64);
        while let Some(msg) = self.router.outbound.pop() {
            self.take_msg(msg, now);
        }
        self.deliver_run(now);
    }

    /// Apply `msg`, holding a delivery back while the next ones may join its run (see
    /// [`Run`]); anything else first delivers the run held, so the order is kept.
    fn take_msg(&mut self, msg: ShardMsg, now: Instant) {
        match msg {
            ShardMsg::Deliver(d) if Run::may_join(&d) => {
                if !self.run.fits(&d) {
                    self.deliver_run(now);
                }
                self.run.push(d);
            }
            msg => {
                self.deliver_run(now);
                self.on_shard_msg(msg, now);
            }
        }
    }

    /// End of a loop turn: apply what the router sent this shard itself, flush what was queued,
    /// wake shards, and move the router's counters into the shard's metrics. Completions for
    /// API requesters are handed to their connections as they appear.
    pub(super) fn finish_turn(&mut self, now: Instant) {
        loop {
            loop {
                while self.router.outbound.has_local() {
                    for msg in self.router.outbound.take_local() {
                        self.take_msg(msg, now);
                    }
                    self.deliver_run(now);
                }
                if self.router.completions.is_empty() {
                    break;
                }
                // Answers for API connections (their next pipelined command may act again).
                self.api_completions(now);
            }

            let mut dirty = std::mem::take(&mut self.dirty);
            for id in dirty.drain(..) {
                if let Some(e) = self.conns.get_mut(id) {
                    e.set(Flags::DIRTY, false);
                    self.on_writable(id, now);
                }
            }
            self.dirty = dirty;
            // A long-polling session flushed above answers its request with a message to
            // this shard itself when the request is held here: apply it this turn.
            if !self.router.outbound.has_local() {
                break;
            }
        }
        self.expire_tokens(now);
        self.router.outbound.flush();
        let s = std::mem::take(&mut self.router.stats);
        self.metrics.publishes.add(s.publishes);
        self.metrics.deliveries.add(s.deliveries);
        self.metrics.messages_out.add(s.deliveries);
        self.metrics
            .slow_consumer_disconnects
            .add(s.slow_consumer_disconnects);
        self.metrics.recovered.add(s.recovered);
        let sio = std::mem::take(&mut self.app.sio.stats);
        let m = &self.metrics.sio;
        m.sessions.add(sio.sessions);
        m.connects.add(sio.connects);
        m.connect_errors.add(sio.connect_errors);
        m.events.add(sio.events);
        m.dropped.add(sio.dropped);
        m.malformed.add(sio.malformed);
        m.timeouts.add(sio.timeouts);
        m.polling_requests.add(sio.polling_requests);
        m.polling_refused.add(sio.polling_refused);
        m.upgrades.add(sio.upgrades);
        self.metrics.recovery_misses.add(s.recovery_misses);
        self.metrics
            .history_streams
            .set(self.router.history.len() as u64);
    }

    /// How long the loop may sleep for the router: until the next token expiry, or briefly
    /// while control messages wait for room in another shard's queue (`None`: no limit).
    pub(super) fn router_timeout(&self) -> Option<Duration> {
        if self.router.outbound.backlog_len() > 0 {
            return Some(BACKLOG_RETRY);
        }
        let exp = self.app.expiries.next()?;
        Some(Duration::from_secs(exp.saturating_sub(unix_now())))
    }

    /// Close (4001) the connections whose token expired without a refresh.
    fn expire_tokens(&mut self, now: Instant) {
        let secs = match self.app.expiries.next() {
            Some(exp) if exp <= unix_now() => unix_now(),
            _ => return,
        };
        let mut expired = Vec::new();
        self.app.expiries.take_expired(secs, &mut expired);
        for (exp, id) in expired {
            let Some(e) = self.conns.get_mut(id) else {
                continue;
            };
            let Some((conn, client)) = e.peer.open_client() else {
                continue;
            };
            if client.session.expires_at() != Some(exp) {
                continue;
            }
            self.metrics.token_expiry_closes.add(1);
            conn.on_close_request(TOKEN_EXPIRED, "token expired", now, &mut self.out);
            self.settle(id, now);
        }
    }

    fn on_shard_msg(&mut self, msg: ShardMsg, now: Instant) {
        match msg {
            ShardMsg::Hook(a) => self.on_hook_answer(*a, now),
            ShardMsg::Deliver(d) => self.deliver(&d, now),
            ShardMsg::Publish(p) => self.router.on_publication(*p, now),
            ShardMsg::HistoryQuery {
                channel,
                from,
                tag,
                want,
            } => self.router.on_history_query(&channel, from, tag, want, now),
            ShardMsg::HistoryAnswer { tag, answer } => {
                if let Some(a) = self.router.on_history_answer(tag, *answer) {
                    self.answered(a, now);
                }
            }
            ShardMsg::HistoryFailed { tag } => {
                if let Some(a) = self.router.on_history_failed(tag) {
                    self.answered(a, now);
                }
            }
            ShardMsg::Interest { channel, shard, on } => {
                self.router.registry.set(&channel, shard, on)
            }
            ShardMsg::Direct { to, frame, reply } => self.direct(to, &frame, reply, now),
            ShardMsg::DirectOutcome { reply, delivered } => self.answer_sent(reply, delivered, now),
            ShardMsg::PresenceQuery { channel, from, tag } => {
                let members = self.members(&channel);
                self.router
                    .outbound
                    .control(from, ShardMsg::PresencePart { tag, members });
            }
            ShardMsg::PresencePart { tag, members } => {
                if let Some(g) = self.router.on_presence_part(tag, members) {
                    self.finish_gather(g, now);
                }
            }
            ShardMsg::Close {
                conn,
                code,
                reason,
                reply,
            } => {
                let found = self.close_conn(conn, code, &reason, now);
                if let Some(reply) = reply {
                    self.answer_sent(reply, found, now);
                }
            }
            ShardMsg::DirectUser { user, frame } => {
                let ids = self.router.users.conns(&user).to_vec();
                for id in ids {
                    self.direct(id, &frame, None, now);
                }
            }
            ShardMsg::CloseUser { user, code, reason } => {
                let ids = self.router.users.conns(&user).to_vec();
                for id in ids {
                    self.close_conn(id, code, &reason, now);
                }
            }
            ShardMsg::ChannelQuery { from, tag } => {
                let counts = self.router.local_counts();
                self.router
                    .outbound
                    .control(from, ShardMsg::ChannelPart { tag, counts });
            }
            ShardMsg::ChannelPart { tag, counts } => self.router.on_channel_part(tag, counts),
            ShardMsg::ConnQuery { lookup, from, tag } => {
                let conns = self.describe(&lookup);
                self.router
                    .outbound
                    .control(from, ShardMsg::ConnPart { tag, conns });
            }
            ShardMsg::ConnPart { tag, conns } => self.router.on_conn_part(tag, conns),
            ShardMsg::Poll {
                session,
                from,
                what,
            } => self.on_poll(session, from, what, now),
            ShardMsg::PollAnswer { to, status, body } => self.on_poll_answer(to, status, body, now),
        }
    }

    /// This shard's open client connections that `lookup` names, with their channels.
    fn describe(&mut self, lookup: &Lookup) -> Vec<ConnInfo> {
        let ids = match lookup {
            Lookup::Conn(id) => vec![*id],
            Lookup::User(user) => self.router.users.conns(user).to_vec(),
        };
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(e) = self.conns.get_mut(id) else {
                continue;
            };
            if let Some((_, client)) = e.peer.open_client() {
                found.push(self.router.describe(id, &client.session));
            }
        }
        found
    }

    /// Fan `d` out to this shard's subscribers of its channel. Subscribers waiting for their
    /// position (a subscribe to a channel with history) get it held instead.
    fn deliver(&mut self, d: &Delivery, now: Instant) {
        let mut json = Packed::new(&d.json);
        let mut bare = d.bare.as_ref().map(Packed::new);
        let mut sink = Sink::of(&mut self.conns, &mut self.dirty, &mut self.out, &self.cfg);
        let router = &mut self.router;
        let Some(ch) = router.channels.get(&d.channel) else {
            return;
        };
        let mut slow = Vec::new();
        let mut count = 0u64;
        let holding = d.offset.filter(|_| !ch.held.is_empty());
        // A publisher that asked not to get its own message on a channel with history still
        // learns its position: without it, its next delivery would look like a hole in the
        // offsets and make it recover (and replay its own message).
        let skipped = match (d.skip, d.offset) {
            (Some(id), Some(offset)) if ch.json.contains(&id) => {
                Some((id, skipped_frame(&d.channel, offset)))
            }
            _ => None,
        };
        for (list, frame) in [(&ch.json, Some(&mut json)), (&ch.bare, bare.as_mut())] {
            let Some(frame) = frame else {
                continue;
            };
            for &id in list {
                if Some(id) == d.skip {
                    continue;
                }
                if let Some(offset) = holding {
                    if let Some(&(_, tag)) = ch.held.iter().find(|h| h.0 == id) {
                        router.queries.hold(tag, offset, frame.plain());
                        continue;
                    }
                }
                match queue_frame(&mut sink, id, frame) {
                    Queued::Yes => count += 1,
                    Queued::Gone => {}
                    Queued::Slow => slow.push(id),
                }
            }
        }
        if let Some((id, marker)) = &skipped {
            // A publisher over its outbound limit misses the marker, sees the hole and
            // recovers: the same outcome as any delivery it could not take.
            let _ = queue_frame(&mut sink, *id, &mut Packed::new(marker));
        }
        self.router.stats.deliveries += count;
        for id in slow {
            // What this turn queued may not have been written yet: write, then judge.
            self.on_writable(id, now);
            let frame = if self.is_ws(id) {
                &mut json
            } else {
                match bare.as_mut() {
                    Some(f) => f,
                    None => continue,
                }
            };
            match queue_frame(&mut self.sink(), id, frame) {
                Queued::Yes => self.router.stats.deliveries += 1,
                Queued::Gone => {}
                Queued::Slow => self.close_slow(id, now),
            }
        }
    }

    /// Fan the run held out (see [`Run`]); a run of one is an ordinary delivery.
    fn deliver_run(&mut self, now: Instant) {
        match self.run.deliveries.len() {
            0 => {}
            1 => {
                if let Some(d) = self.run.deliveries.pop() {
                    self.run.clear();
                    self.deliver(&d, now);
                }
            }
            _ => {
                let mut run = std::mem::take(&mut self.run);
                self.deliver_whole(&mut run, now);
                run.clear();
                // Its buffers are kept for the next run.
                self.run = run;
            }
        }
    }

    /// Fan out a run of two or more deliveries: one shared buffer per kind of subscriber,
    /// frame by frame to the subscribers that cannot take it whole.
    fn deliver_whole(&mut self, run: &mut Run, now: Instant) {
        let Some(first) = run.deliveries.first() else {
            return;
        };
        let (channel, skip) = (Arc::clone(&first.channel), first.skip);
        let Some(ch) = self.router.channels.get(&channel) else {
            return;
        };
        let frames = run.deliveries.len() as u64;
        let buffers = [
            (!ch.json.is_empty()).then(|| run.buffer(false)),
            (!ch.bare.is_empty()).then(|| run.buffer(true)),
        ];
        let mut sink = Sink::of(&mut self.conns, &mut self.dirty, &mut self.out, &self.cfg);
        let mut count = 0u64;
        let mut one_by_one = Vec::new();
        for (bare, (list, buffer)) in [&ch.json, &ch.bare].into_iter().zip(&buffers).enumerate() {
            let Some(buffer) = buffer else {
                continue;
            };
            for &id in list {
                if Some(id) == skip {
                    continue;
                }
                match queue_whole(&mut sink, id, buffer) {
                    Whole::Queued => count += frames,
                    Whole::Gone => {}
                    Whole::OneByOne => one_by_one.push((id, bare == 1)),
                }
            }
        }
        self.router.stats.deliveries += count;
        if one_by_one.is_empty() {
            return;
        }
        // Each frame compressed at most once for all who compress it.
        let mut packed: [Vec<Packed<'_>>; 2] = [
            run.deliveries
                .iter()
                .map(|d| Packed::new(&d.json))
                .collect(),
            run.deliveries
                .iter()
                .filter_map(|d| d.bare.as_ref().map(Packed::new))
                .collect(),
        ];
        for (id, bare) in one_by_one {
            for frame in packed[usize::from(bare)].iter_mut() {
                let mut queued = queue_frame(&mut self.sink(), id, frame);
                if queued == Queued::Slow {
                    // What this turn queued may not have been written yet: write, then judge.
                    self.on_writable(id, now);
                    queued = queue_frame(&mut self.sink(), id, frame);
                }
                match queued {
                    Queued::Yes => self.router.stats.deliveries += 1,
                    Queued::Gone => break,
                    Queued::Slow => {
                        self.close_slow(id, now);
                        break;
                    }
                }
            }
        }
    }

    fn direct(&mut self, to: ConnId, frame: &Arc<[u8]>, reply: Option<ReplyTo>, now: Instant) {
        let delivered = self.push_frame(to, frame, now);
        if let Some(reply) = reply {
            self.answer_sent(reply, delivered, now);
        }
    }

    /// Queue `frame` for `to` (closing it with 4008 when over its limit); false when `to` is
    /// not an open client connection.
    fn push_frame(&mut self, to: ConnId, frame: &Arc<[u8]>, now: Instant) -> bool {
        let mut frame = Packed::new(frame);
        match queue_frame(&mut self.sink(), to, &mut frame) {
            Queued::Yes => {
                self.router.stats.deliveries += 1;
                true
            }
            Queued::Gone => false,
            Queued::Slow => {
                self.on_writable(to, now);
                if queue_frame(&mut self.sink(), to, &mut frame) == Queued::Slow {
                    self.close_slow(to, now);
                }
                true
            }
        }
    }

    /// An owner answered a history query of this shard: a subscriber gets its reply, then the
    /// replay and the deliveries held for it; a history read goes to its requester.
    fn answered(&mut self, a: Answered, now: Instant) {
        match a {
            Answered::Subscribed {
                reply,
                epoch,
                offset,
                recovered,
                frames,
            } => {
                self.send_reply(reply.conn, now, |text| {
                    ws::write_position(text, &reply, epoch, offset, recovered)
                });
                for frame in &frames {
                    if !self.push_frame(reply.conn, frame, now) {
                        break;
                    }
                }
            }
            Answered::Read { reply, read } => {
                if !self.is_ws(reply.conn) {
                    self.router
                        .completions
                        .push(Completion::History { reply, read });
                    return;
                }
                self.send_reply(reply.conn, now, |text| {
                    ws::write_history(text, &reply, &read)
                });
            }
            Answered::Failed { reply, channel } => {
                if let Some(channel) = channel {
                    // The subscribe is refused: the connection must not stay subscribed.
                    if let Some((_, client)) = self
                        .conns
                        .get_mut(reply.conn)
                        .and_then(|e| e.peer.open_client())
                    {
                        let session = &mut client.session;
                        let _ = self.router.unsubscribe(reply.conn, session, &channel);
                    }
                }
                if !self.is_ws(reply.conn) {
                    self.router
                        .completions
                        .push(Completion::HistoryFailed { reply });
                    return;
                }
                self.send_reply(reply.conn, now, |text| {
                    ws::write_history_unavailable(text, &reply)
                });
            }
        }
    }

    fn answer_sent(&mut self, reply: ReplyTo, delivered: bool, now: Instant) {
        if reply.conn.node() != self.router.node() {
            return self.router.outcome_up(reply, delivered);
        }
        if reply.conn.shard() != self.router.shard() {
            let to = reply.conn.shard();
            return self
                .router
                .outbound
                .control(to, ShardMsg::DirectOutcome { reply, delivered });
        }
        if !self.is_ws(reply.conn) {
            self.router
                .completions
                .push(Completion::Sent { reply, delivered });
            return;
        }
        self.send_reply(reply.conn, now, |text| {
            ws::write_sent(text, &reply, delivered)
        });
    }

    fn finish_gather(&mut self, g: Gather, now: Instant) {
        if !self.is_ws(g.reply.conn) {
            self.router.completions.push(Completion::Presence {
                reply: g.reply,
                members: g.members,
            });
            return;
        }
        self.send_reply(g.reply.conn, now, |text| {
            ws::write_presence(text, &g.reply, &g.members)
        });
    }

    /// This shard's subscribers of `channel`, with their users.
    fn members(&mut self, channel: &str) -> Vec<Member> {
        let Some(ch) = self.router.channels.get(channel) else {
            return Vec::new();
        };
        let mut members = Vec::with_capacity(ch.len());
        for &id in ch.json.iter().chain(&ch.bare) {
            if let Some(Entry {
                peer: Peer::Client { client, .. },
                ..
            }) = self.conns.get_mut(id)
            {
                members.push((id, self.router.user(&client.session).cloned()));
            }
        }
        members
    }

    /// Whether `id` is a `/ws` client (which gets deferred answers as replies).
    fn is_ws(&mut self, id: ConnId) -> bool {
        match self.conns.get_mut(id) {
            Some(Entry {
                peer: Peer::Client { client, .. },
                ..
            }) => client.session.kind == Some(Kind::Json),
            _ => false,
        }
    }

    /// Send `id` the deferred reply `write` puts in the shard's text buffer.
    fn send_reply(&mut self, id: ConnId, now: Instant, write: impl FnOnce(&mut Vec<u8>)) {
        let mut text = std::mem::take(&mut self.app.text);
        write(&mut text);
        self.send_text(id, &text, now);
        self.app.text = text;
    }

    /// Send one text frame to `id` (a reply that was deferred).
    fn send_text(&mut self, id: ConnId, text: &[u8], now: Instant) {
        let Some((conn, _)) = self.conns.get_mut(id).and_then(|e| e.peer.open_client()) else {
            return;
        };
        self.out.deflate = conn.send_deflate(&self.cfg.settings);
        self.out.frame(Opcode::Text, text);
        self.settle(id, now);
    }

    fn close_slow(&mut self, id: ConnId, now: Instant) {
        if self.close_conn(id, SLOW_CONSUMER, "slow consumer", now) {
            self.router.stats.slow_consumer_disconnects += 1;
        }
    }

    /// Close client connection `id`; false when no open client connection has this id
    /// (closing ones, and API connections, count as none).
    fn close_conn(&mut self, id: ConnId, code: CloseCode, reason: &str, now: Instant) -> bool {
        if let Some(Entry {
            peer: Peer::Poll(_),
            ..
        }) = self.conns.get_mut(id)
        {
            self.poll_end(id, code, reason);
            return true;
        }
        let Some((conn, _)) = self.conns.get_mut(id).and_then(|e| e.peer.open_client()) else {
            return false;
        };
        conn.on_close_request(code, reason, now, &mut self.out);
        self.settle(id, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publication(channel: &Arc<str>, text: &str, skip: Option<ConnId>) -> Arc<Delivery> {
        let data = format!("\"{text}\"");
        let parts = crate::router::fanout::Parts {
            data: data.as_bytes(),
            bare: text.as_bytes(),
            from: None,
            user: None,
        };
        Delivery::publication(&mut Vec::new(), Arc::clone(channel), parts, skip, None)
    }

    #[test]
    fn a_run_holds_one_channel_and_publisher_up_to_its_size() {
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let me = Some(ConnId::new(0, 1, 0));
        let mut run = Run::default();
        let first = publication(&a, "one", me);
        assert!(Run::may_join(&first) && run.fits(&first));
        run.push(first);
        assert!(run.fits(&publication(&Arc::from("a"), "same name", me)));
        assert!(!run.fits(&publication(&b, "other channel", me)));
        assert!(!run.fits(&publication(&a, "other publisher", None)));
        let big = "x".repeat(RUN_BYTES);
        assert!(!run.fits(&publication(&a, &big, me)), "past the size");

        let mut scratch = Vec::new();
        let at = Delivery::publication(
            &mut scratch,
            Arc::clone(&a),
            crate::router::fanout::Parts {
                data: b"1",
                bare: b"1",
                from: None,
                user: None,
            },
            None,
            Some(7),
        );
        assert!(
            !Run::may_join(&at),
            "a publication with a position goes alone"
        );
        let presence = Delivery::presence(
            &mut scratch,
            Arc::clone(&a),
            true,
            ConnId::new(0, 2, 0),
            None,
        );
        assert!(!Run::may_join(&presence), "no bare frame: alone");
    }

    #[test]
    fn a_runs_buffers_are_its_frames_back_to_back() {
        let a: Arc<str> = Arc::from("a");
        let mut run = Run::default();
        let ds: Vec<_> = ["one", "two", "three"]
            .iter()
            .map(|t| publication(&a, t, None))
            .collect();
        for d in &ds {
            run.push(Arc::clone(d));
        }
        let json: Vec<u8> = ds.iter().flat_map(|d| d.json.iter().copied()).collect();
        let bare: Vec<u8> = ds
            .iter()
            .flat_map(|d| d.bare.as_deref().unwrap_or_default().iter().copied())
            .collect();
        assert_eq!(&run.buffer(false)[..], &json[..]);
        assert_eq!(&run.buffer(true)[..], &bare[..]);
        assert_eq!((run.json_bytes, run.bare_bytes), (json.len(), bare.len()));
        run.clear();
        assert!(run.deliveries.is_empty() && run.fits(&ds[0]));
        drop(run);
        for d in &ds {
            assert_eq!(Arc::strong_count(d), 1, "the run let its deliveries go");
        }
    }
}
