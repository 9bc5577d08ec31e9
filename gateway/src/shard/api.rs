//! The shard's side of the backend API: API connections (accepted on the API listener) are fed to
//! their sans-IO [`ApiConn`], whose commands run here against the router; answers that other
//! shards give later (a `send`'s outcome, a presence gather, a channel count) come back as
//! router completions and are handed to the waiting connection.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::api::command::BrokerStats;
use crate::api::{ApiConn, Command, Outcome, Stats, Target};
use crate::conn::ConnId;
use crate::driver::Driver;
use crate::metrics::{self, BrokerCounters, ShardMetrics};
use crate::router::inbox::{Lookup, ReplyTo};
use crate::router::{Completion, RouterError};

use super::{Peer, Shard};

/// The API connection `id`, if it is one.
fn api_conn(peer: Option<&mut super::Entry>) -> Option<&mut ApiConn> {
    match peer {
        Some(super::Entry {
            peer: Peer::Api(api),
            ..
        }) => Some(api),
        _ => None,
    }
}

impl<D: Driver> Shard<D> {
    /// Bytes read on API connection `id`.
    pub(super) fn api_read(&mut self, id: ConnId, n: usize, now: Instant) {
        let Some(api) = api_conn(self.conns.get_mut(id)) else {
            return;
        };
        let cmd = api.on_read(
            &self.rbuf[..n],
            now,
            &self.cfg.api,
            &self.metrics,
            &mut self.out.bytes,
        );
        if let Some(cmd) = cmd {
            self.api_run(id, cmd, now);
        }
        self.settle(id, now);
    }

    /// Run `cmd` for API connection `id`, and every pipelined command its answer releases.
    /// The answers accumulate in the shard's output (nothing else writes there meanwhile:
    /// router calls only queue actions), so the caller settles once for all of them.
    fn api_run(&mut self, id: ConnId, cmd: Command, now: Instant) {
        let mut next = Some(cmd);
        while let Some(cmd) = next.take() {
            let Some(outcome) = self.api_command(id, cmd) else {
                // Answered later, through a router completion.
                return;
            };
            next = self.api_answer(id, outcome, now);
        }
    }

    /// Hand `outcome` to API connection `id` (its response goes to the shard's output);
    /// returns its next command, if any.
    fn api_answer(&mut self, id: ConnId, outcome: Outcome, now: Instant) -> Option<Command> {
        let api = api_conn(self.conns.get_mut(id))?;
        api.on_outcome(
            outcome,
            now,
            &self.cfg.api,
            &self.metrics,
            &mut self.out.bytes,
        )
    }

    /// Start `cmd`; `None` when the answer comes later.
    fn api_command(&mut self, id: ConnId, cmd: Command) -> Option<Outcome> {
        let reply = |extra: &str| ReplyTo {
            conn: id,
            id: extra.as_bytes().into(),
        };
        match cmd {
            Command::Publish {
                channels,
                data,
                text,
            } => {
                let bare = text.as_deref().unwrap_or(&data);
                for channel in &channels {
                    if let Err(code) = self.router.publish(
                        channel,
                        data.as_bytes(),
                        bare.as_bytes(),
                        None,
                        None,
                        None,
                    ) {
                        return Some(outcome_of(code));
                    }
                }
                Some(Outcome::Accepted)
            }
            Command::PublishUser { user, data } => Some(
                self.router
                    .publish_user(&user, data.as_bytes())
                    .map_or_else(outcome_of, |()| Outcome::Accepted),
            ),
            Command::Send { conn, data } => {
                match self
                    .router
                    .send(conn, data.as_bytes(), None, None, Some(reply("")))
                {
                    Ok(()) => None,
                    Err(code) => Some(outcome_of(code)),
                }
            }
            Command::Disconnect {
                target,
                code,
                reason,
            } => match target {
                Target::Conn(conn) => {
                    match self.router.disconnect(conn, code, &reason, Some(reply(""))) {
                        Ok(()) => None,
                        Err(code) => Some(outcome_of(code)),
                    }
                }
                Target::User(user) => Some(
                    self.router
                        .disconnect_user(&user, code, &reason)
                        .map_or_else(outcome_of, |()| Outcome::Accepted),
                ),
            },
            Command::Channels => {
                self.router.channel_list(reply(""));
                None
            }
            Command::Presence { channel } => {
                // An API requester has no request id: the id carries the channel's name.
                self.router.presence(&channel, reply(&channel));
                None
            }
            Command::History { channel, .. } if !self.router.has_history(&channel) => {
                Some(Outcome::NoHistory)
            }
            Command::History { channel, limit } => {
                self.router.history(&channel, limit, reply(""));
                None
            }
            Command::Connections(lookup) => {
                self.router.lookup_conns(lookup, reply(""));
                None
            }
            Command::SocketIoEmit(e) => {
                let args: Vec<&[u8]> = e.args.iter().map(|a| a.as_bytes()).collect();
                let frames = crate::app::sio::emit::event_frames(
                    &mut self.app.sio.text,
                    &e.namespace,
                    &e.event,
                    &args,
                    None,
                );
                Some(
                    self.router
                        .publish_frames(&e.channel, frames, e.except)
                        .map_or_else(outcome_of, |()| Outcome::Accepted),
                )
            }
            Command::Stats => {
                let all = self.all_metrics();
                let mut stats = Stats::from_metrics(&all);
                stats.broker = self.router.outbound.uplink().map(|u| BrokerStats {
                    kind: u.kind(),
                    node: u.node(),
                    connected: u.connected(),
                    nodes: u.stats.nodes.lock().map(|n| n.clone()).unwrap_or_default(),
                    channels: u.stats.channels.load(Ordering::Relaxed),
                });
                Some(Outcome::Stats(stats))
            }
            Command::Metrics => {
                let all = self.all_metrics();
                let mut text = String::with_capacity(8 * 1024);
                metrics::render(&all, &mut text);
                metrics::render_broker(&self.broker_counters(), &mut text);
                metrics::render_hooks(self.shared.hook_metrics.get().map(|m| &**m), &mut text);
                Some(Outcome::Metrics(text))
            }
        }
    }

    /// The broker thread's numbers (a single node: connected, zeros).
    fn broker_counters(&self) -> BrokerCounters {
        let Some(u) = self.router.outbound.uplink() else {
            return BrokerCounters {
                connected: true,
                nodes: 1,
                ..BrokerCounters::default()
            };
        };
        let s = &u.stats;
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        BrokerCounters {
            connected: u.connected(),
            reconnects: get(&s.reconnects),
            resubscribes: get(&s.resubscribes),
            dropped: get(&s.dropped),
            published: get(&s.published),
            received: get(&s.received),
            channels: get(&s.channels),
            nodes: s.nodes.lock().map_or(1, |n| n.len() as u64),
            instances_down: get(&s.instances_down),
            history_failures: get(&s.history_failures),
            history_gaps: get(&s.history_gaps),
        }
    }

    /// Every shard's metrics (only this shard's until the process has announced itself).
    fn all_metrics(&self) -> Vec<&ShardMetrics> {
        match self.shared.all_metrics.get() {
            Some(all) => all.iter().map(|m| &**m).collect(),
            None => vec![&*self.metrics],
        }
    }

    /// Hand the router's completions for API requesters to their connections.
    pub(super) fn api_completions(&mut self, now: Instant) {
        while !self.router.completions.is_empty() {
            let completions = std::mem::take(&mut self.router.completions);
            for c in completions {
                let (to, outcome) = match c {
                    Completion::Sent { reply, delivered } => (
                        reply.conn,
                        if delivered {
                            Outcome::Accepted
                        } else {
                            Outcome::UnknownConnection
                        },
                    ),
                    Completion::Presence { reply, members } => {
                        let channel: Arc<str> = String::from_utf8_lossy(&reply.id).into();
                        (reply.conn, Outcome::Presence { channel, members })
                    }
                    Completion::History { reply, read } => (reply.conn, Outcome::History(read)),
                    Completion::HistoryFailed { reply } => (reply.conn, Outcome::BrokerDown),
                    Completion::Conns {
                        reply,
                        lookup,
                        conns,
                    } => (
                        reply.conn,
                        match lookup {
                            Lookup::Conn(_) if conns.is_empty() => Outcome::UnknownConnection,
                            _ => Outcome::Connections(conns),
                        },
                    ),
                    Completion::Channels { reply, counts } => {
                        (reply.conn, Outcome::Channels(counts))
                    }
                };
                if let Some(next) = self.api_answer(to, outcome, now) {
                    self.api_run(to, next, now);
                }
                self.settle(to, now);
            }
        }
    }
}

fn outcome_of(e: RouterError) -> Outcome {
    match e {
        RouterError::UnknownConnection => Outcome::UnknownConnection,
        RouterError::BrokerDown => Outcome::BrokerDown,
        RouterError::TooLargeForBroker => Outcome::TooLargeForBroker,
        _ => Outcome::Busy,
    }
}
