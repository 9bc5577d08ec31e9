//! Routers of several shards on one mesh, driven by hand: messages are moved between them by
//! popping each shard's queue, as the shard loops do.

use std::sync::Arc;
use std::time::Instant;

use super::channels::Kind;
use super::inbox::{Mesh, ReplyTo, ShardMsg};
use super::session::Session;
use super::*;

fn routers(n: u8, capacity: usize) -> Vec<Router> {
    let mesh = Arc::new(Mesh::new(capacity, vec![None; usize::from(n)]));
    (0..n)
        .map(|s| Router::new(s, Arc::clone(&mesh), RouterConfig::default()))
        .collect()
}

fn ws_session() -> Session {
    Session {
        kind: Some(Kind::Json),
        ..Session::default()
    }
}

/// Apply every `Interest` waiting for each router; return the other messages per shard.
fn settle(rs: &mut [Router]) -> Vec<Vec<ShardMsg>> {
    rs.iter_mut()
        .map(|r| {
            let mut other = Vec::new();
            while let Some(m) = r.outbound.pop() {
                match m {
                    ShardMsg::Interest { channel, shard, on } => {
                        r.registry.set(&channel, shard, on)
                    }
                    m => other.push(m),
                }
            }
            other
        })
        .collect()
}

#[test]
fn first_subscriber_announces_and_last_withdraws() {
    let mut rs = routers(3, 16);
    let (a, b) = (ConnId::new(1, 0, 0), ConnId::new(1, 1, 0));
    let (mut sa, mut sb) = (ws_session(), ws_session());
    rs[1].subscribe(a, &mut sa, "c").unwrap();
    rs[1].subscribe(b, &mut sb, "c").unwrap();
    settle(&mut rs);
    for r in &rs {
        assert_eq!(r.registry.shards("c").iter().collect::<Vec<_>>(), vec![1]);
    }
    rs[1].unsubscribe(a, &mut sa, "c").unwrap();
    settle(&mut rs);
    assert!(
        rs[0].registry.shards("c").contains(1),
        "one subscriber left"
    );
    rs[1].on_disconnect(b, &mut sb);
    settle(&mut rs);
    for r in &rs {
        assert!(r.registry.shards("c").is_empty());
    }
    assert_eq!(
        rs[1].unsubscribe(a, &mut sa, "c"),
        Err(RouterError::NotSubscribed)
    );
}

#[test]
fn a_publish_visits_only_shards_with_subscribers() {
    let mut rs = routers(3, 16);
    let sub = ConnId::new(2, 0, 0);
    rs[2].subscribe(sub, &mut ws_session(), "c").unwrap();
    settle(&mut rs);
    rs[0].outbound.take_local();
    rs[2].outbound.take_local();
    rs[0]
        .publish("c", b"1", b"1", Some(ConnId::new(0, 0, 0)), None, None)
        .unwrap();
    assert!(!rs[0].outbound.has_local(), "no local subscriber");
    let msgs = settle(&mut rs);
    assert!(msgs[1].is_empty(), "shard 1 has no subscriber");
    match &msgs[2][..] {
        [ShardMsg::Deliver(d)] => {
            assert_eq!(&*d.channel, "c");
            let json = &d.json[2..];
            let v: serde_json::Value = serde_json::from_slice(json).unwrap();
            assert_eq!(v["data"], 1);
            assert_eq!(d.bare.as_deref(), Some(&[0x81, 1, b'1'][..]));
        }
        other => panic!("expected one delivery, got {other:?}"),
    }
    // A channel nobody has is a no-op.
    rs[0].publish("none", b"1", b"1", None, None, None).unwrap();
    assert!(settle(&mut rs).iter().all(Vec::is_empty));
}

#[test]
fn a_full_queue_delays_publishes_in_order_and_a_full_backlog_is_busy() {
    let mut rs = routers(2, 1);
    rs[1]
        .subscribe(ConnId::new(1, 0, 0), &mut ws_session(), "c")
        .unwrap();
    settle(&mut rs);
    for n in 0..3u8 {
        let data = [b'0' + n];
        assert_eq!(rs[0].publish("c", &data, &data, None, None, None), Ok(()));
    }
    assert_eq!(rs[0].outbound.backlog_len(), 2);
    let mut got = Vec::new();
    while let Some(ShardMsg::Deliver(d)) = rs[1].outbound.pop() {
        got.push(d.bare.as_ref().unwrap()[2]);
        rs[0].outbound.flush();
    }
    assert_eq!(got, b"012");
    // The queue holds one, the backlog `max_backlog` more; then publishes are refused.
    let mut accepted = 0;
    while rs[0].publish("c", b"1", b"1", None, None, None).is_ok() {
        accepted += 1;
    }
    assert_eq!(accepted, 1 + RouterConfig::default().max_backlog);
    assert_eq!(rs[0].stats.busy, 1);
}

#[test]
fn channel_limit_and_idempotent_subscribe() {
    let mut rs = routers(1, 4);
    let id = ConnId::new(0, 0, 0);
    let mut s = ws_session();
    for i in 0..128 {
        rs[0].subscribe(id, &mut s, &format!("c{i}")).unwrap();
    }
    rs[0].subscribe(id, &mut s, "c0").unwrap();
    assert_eq!(s.channels.len(), 128);
    assert_eq!(
        rs[0].subscribe(id, &mut s, "c128"),
        Err(RouterError::TooManyChannels)
    );
}

#[test]
fn sends_to_an_unknown_shard_are_refused_at_once() {
    let mut rs = routers(2, 4);
    assert_eq!(
        rs[0].send(ConnId::new(5, 0, 0), b"1", None, None, None),
        Err(RouterError::UnknownConnection)
    );
    rs[0]
        .send(ConnId::new(1, 3, 0), b"1", None, None, None)
        .unwrap();
    assert!(matches!(
        &settle(&mut rs)[1][..],
        [ShardMsg::Direct { to, .. }] if *to == ConnId::new(1, 3, 0)
    ));
}

#[test]
fn users_are_indexed_until_disconnect() {
    let mut rs = routers(1, 4);
    let (a, b) = (ConnId::new(0, 0, 0), ConnId::new(0, 1, 0));
    let (mut sa, mut sb) = (ws_session(), ws_session());
    rs[0].set_user(a, &mut sa, Arc::from("ann"));
    rs[0].set_user(b, &mut sb, Arc::from("ann"));
    assert_eq!(rs[0].users.conns("ann"), &[a, b]);
    rs[0].on_disconnect(a, &mut sa);
    assert_eq!(rs[0].users.conns("ann"), &[b]);
    rs[0].on_disconnect(b, &mut sb);
    assert!(rs[0].users.conns("ann").is_empty());
}

#[test]
fn a_session_stays_small() {
    // An idle subscriber pays for its session inline in the shard's connection entry, plus 4
    // bytes per channel in the session and 8 in the channel's subscriber list. It was 56 bytes
    // while it held the user's name (a 16-byte shared pointer) instead of its 4-byte key, and 40
    // while its channel keys were a 24-byte small vector.
    let size = std::mem::size_of::<Session>();
    println!("size_of::<Session>() = {size}");
    assert!(size <= 32, "Session grew to {size} bytes");
}

#[test]
fn control_messages_wait_for_room_in_order_and_are_not_lost() {
    let mut rs = routers(2, 1);
    let id = ConnId::new(0, 0, 0);
    let mut s = ws_session();
    for c in ["a", "b", "c"] {
        rs[0].subscribe(id, &mut s, c).unwrap();
    }
    assert!(rs[0].outbound.backlog_len() > 0);
    let mut seen = Vec::new();
    for _ in 0..3 {
        match rs[1].outbound.pop() {
            Some(ShardMsg::Interest { channel, .. }) => seen.push(channel.to_string()),
            other => panic!("expected an interest message, got {other:?}"),
        }
        rs[0].outbound.flush();
    }
    assert_eq!(seen, ["a", "b", "c"]);
    assert_eq!(rs[0].outbound.backlog_len(), 0);
}

#[test]
fn presence_asks_every_shard_with_subscribers_and_itself_once() {
    let mut rs = routers(3, 16);
    rs[2]
        .subscribe(ConnId::new(2, 0, 0), &mut ws_session(), "c")
        .unwrap();
    settle(&mut rs);
    rs[2].outbound.take_local();
    let reply = ReplyTo {
        conn: ConnId::new(0, 1, 0),
        id: Box::from(&b"7"[..]),
    };
    rs[0].presence("c", reply);
    let local = rs[0].outbound.take_local();
    let tag = match &local[..] {
        [ShardMsg::PresenceQuery { from: 0, tag, .. }] => *tag,
        other => panic!("expected one local query, got {other:?}"),
    };
    let msgs = settle(&mut rs);
    assert!(
        msgs[1].is_empty(),
        "shard 1 has no subscriber and is not asked"
    );
    assert!(matches!(&msgs[2][..], [ShardMsg::PresenceQuery { from: 0, tag: t, .. }] if *t == tag));
    assert!(
        rs[0].on_presence_part(tag, Vec::new()).is_none(),
        "shard 2 has not answered"
    );
    let member = (ConnId::new(2, 0, 0), Some(Arc::from("ann")));
    let g = rs[0]
        .on_presence_part(tag, vec![member.clone()])
        .expect("every asked shard answered");
    assert_eq!(g.members, vec![member]);
    assert_eq!(&*g.reply.id, b"7");
}

#[test]
fn a_channel_list_gathers_every_shard_and_completes_once() {
    let mut rs = routers(2, 16);
    let reply = ReplyTo {
        conn: ConnId::new(0, 1, 0),
        id: Box::default(),
    };
    rs[0].channel_list(reply);
    let tag = match &rs[0].outbound.take_local()[..] {
        [ShardMsg::ChannelQuery { from: 0, tag }] => *tag,
        other => panic!("expected one local query, got {other:?}"),
    };
    assert!(matches!(
        &settle(&mut rs)[1][..],
        [ShardMsg::ChannelQuery { .. }]
    ));
    rs[0].on_channel_part(tag, vec![(Arc::from("a"), 2)]);
    assert!(rs[0].completions.is_empty());
    rs[0].on_channel_part(tag, vec![(Arc::from("a"), 1), (Arc::from("b"), 1)]);
    match &rs[0].completions[..] {
        [Completion::Channels { counts, .. }] => {
            let mut counts = counts.clone();
            counts.sort();
            assert_eq!(counts, vec![(Arc::from("a"), 3), (Arc::from("b"), 1)]);
        }
        other => panic!("expected the channel list, got {other:?}"),
    }
}

/// Routers of `n` shards where channels starting with `h:` keep 8 publications.
fn history_routers(n: u8) -> Vec<Router> {
    let mesh = Arc::new(Mesh::new(64, vec![None; usize::from(n)]));
    let rule = history::HistoryRule::parse("h:=8/1h").unwrap();
    let cfg = RouterConfig {
        history: Arc::new(history::HistoryPolicy::new(vec![rule]).unwrap()),
        max_recovery: 5,
        ..RouterConfig::default()
    };
    (0..n)
        .map(|s| Router::new(s, Arc::clone(&mesh), cfg.clone()))
        .collect()
}

/// What reached one connection, as the shard loop would hand it out: its deliveries' offsets
/// (held ones go to its pending subscription instead) and the answers for it.
#[derive(Default)]
struct Seen {
    offsets: Vec<u64>,
    answers: Vec<Answered>,
}

fn offset_of(frame: &[u8]) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(fanout::frame_payload(frame)).unwrap();
    v["offset"].as_u64().expect("a delivery with an offset")
}

/// Move every message between the routers until none is left, applying them as the shard loop
/// does; deliveries count for `watch` (a JSON subscriber on its shard).
fn drive(rs: &mut [Router], watch: ConnId, now: Instant) -> Seen {
    let mut seen = Seen::default();
    loop {
        let mut moved = false;
        for r in rs.iter_mut() {
            let mut msgs = r.outbound.take_local();
            while let Some(m) = r.outbound.pop() {
                msgs.push(m);
            }
            for m in msgs {
                moved = true;
                match m {
                    ShardMsg::Interest { channel, shard, on } => {
                        r.registry.set(&channel, shard, on)
                    }
                    ShardMsg::Publish(p) => r.on_publication(*p, now),
                    ShardMsg::HistoryQuery {
                        channel,
                        from,
                        tag,
                        want,
                    } => r.on_history_query(&channel, from, tag, want, now),
                    ShardMsg::HistoryAnswer { tag, answer } => {
                        seen.answers.extend(r.on_history_answer(tag, *answer));
                    }
                    ShardMsg::Deliver(d) if watch.shard() == r.shard() => {
                        let Some(ch) = r.channels.get(&d.channel) else {
                            continue;
                        };
                        if !ch.json.contains(&watch) || d.offset.is_none() {
                            // Not for it, or a presence event.
                            continue;
                        }
                        match (d.offset, ch.held.iter().find(|h| h.0 == watch)) {
                            (Some(o), Some(&(_, tag))) => r.queries.hold(tag, o, &d.json),
                            _ => seen.offsets.push(offset_of(&d.json)),
                        }
                    }
                    _ => {}
                }
            }
            r.outbound.flush();
        }
        if !moved {
            return seen;
        }
    }
}

/// A channel name starting with `h:` whose history `owner` owns.
fn owned_by(rs: &[Router], owner: u8) -> String {
    (0..)
        .map(|i| format!("h:{i}"))
        .find(|c| rs[0].owner(c) == owner)
        .unwrap()
}

#[test]
fn publishes_from_both_shards_get_consecutive_offsets_from_the_owner() {
    let mut rs = history_routers(2);
    let now = Instant::now();
    let channel = owned_by(&rs, 1);
    assert!(
        rs.iter().all(|r| r.owner(&channel) == 1),
        "every shard agrees"
    );
    let sub = ConnId::new(0, 0, 0);
    rs[0].subscribe(sub, &mut ws_session(), &channel).unwrap();
    drive(&mut rs, sub, now);
    for n in 0..6u8 {
        let from = usize::from(n % 2);
        let data = [b'0' + n];
        rs[from]
            .publish(&channel, &data, &data, None, None, None)
            .unwrap();
        assert!(
            rs[from].outbound.has_local() == (from == 1),
            "the publication goes to the owner first"
        );
    }
    let seen = drive(&mut rs, sub, now);
    assert_eq!(seen.offsets, vec![1, 2, 3, 4, 5, 6]);
    let keep = rs[1].cfg.history.retention(&channel).unwrap();
    assert_eq!(rs[1].history.stream(&channel, keep, now, true).top(), 6);
    assert_eq!(rs[0].history.len(), 0, "only the owner keeps the stream");
    // A channel without history keeps today's path: no owner hop, no offset.
    rs[1]
        .publish("plain", b"1", b"1", None, None, None)
        .unwrap();
    assert!(!rs[1].outbound.has_local(), "nobody subscribed to plain");
}

#[test]
fn a_resubscribe_gets_the_replay_then_the_live_publications_without_gap_or_duplicate() {
    let mut rs = history_routers(2);
    let now = Instant::now();
    let channel = owned_by(&rs, 1);
    let first = ConnId::new(0, 0, 0);
    let mut s = ws_session();
    let reply = |n: u8| ReplyTo {
        conn: first,
        id: Box::from(&[b'0' + n][..]),
    };
    assert!(rs[0]
        .subscribe_at(first, &mut s, &channel, None, reply(1))
        .unwrap());
    let seen = drive(&mut rs, first, now);
    let epoch = match &seen.answers[..] {
        [Answered::Subscribed {
            offset: 0,
            recovered: None,
            epoch,
            frames,
            ..
        }] if frames.is_empty() => *epoch,
        other => panic!("expected the position, got {other:?}"),
    };
    for n in 0..3 {
        rs[n % 2]
            .publish(&channel, b"1", b"1", None, None, None)
            .unwrap();
    }
    assert_eq!(drive(&mut rs, first, now).offsets, vec![1, 2, 3]);
    rs[0].on_disconnect(first, &mut s);
    for _ in 0..4 {
        rs[1]
            .publish(&channel, b"1", b"1", None, None, None)
            .unwrap();
    }
    drive(&mut rs, first, now);

    // Back at offset 4: the subscribe goes out, publications race with its query (the two
    // from the owner's shard are numbered before it, the two from the subscriber's after).
    let again = ConnId::new(0, 1, 0);
    let mut s = ws_session();
    let recover = Recover {
        offset: 4,
        epoch: Some(epoch),
    };
    assert!(rs[0]
        .subscribe_at(again, &mut s, &channel, Some(recover), reply(2))
        .unwrap());
    for _ in 0..2 {
        rs[1]
            .publish(&channel, b"1", b"1", None, None, None)
            .unwrap();
        rs[0]
            .publish(&channel, b"1", b"1", None, None, None)
            .unwrap();
    }
    let seen = drive(&mut rs, again, now);
    let (offset, frames) = match seen.answers.into_iter().next() {
        Some(Answered::Subscribed {
            offset,
            recovered: Some(true),
            frames,
            ..
        }) => (offset, frames),
        other => panic!("expected a recovery, got {other:?}"),
    };
    let mut got: Vec<u64> = frames.iter().map(|f| offset_of(f)).collect();
    got.extend(seen.offsets);
    assert_eq!(got, (5..=11).collect::<Vec<_>>());
    assert_eq!(offset, 9, "the position when the owner answered");
    assert!(rs[0].queries.is_empty());
    assert!(rs[0].channels.get(&channel).unwrap().held.is_empty());

    // Too far behind (more than --max-recovery = 5 missed): position only.
    let late = ConnId::new(0, 2, 0);
    let recover = Recover {
        offset: 3,
        epoch: Some(epoch),
    };
    rs[0]
        .subscribe_at(late, &mut ws_session(), &channel, Some(recover), reply(3))
        .unwrap();
    match &drive(&mut rs, late, now).answers[..] {
        [Answered::Subscribed {
            offset: 11,
            recovered: Some(false),
            frames,
            ..
        }] => assert!(frames.is_empty()),
        other => panic!("expected no recovery, got {other:?}"),
    }
}

#[test]
fn a_subscriber_leaving_before_the_answer_drops_its_query() {
    let mut rs = history_routers(2);
    let now = Instant::now();
    let channel = owned_by(&rs, 1);
    let id = ConnId::new(0, 0, 0);
    let mut s = ws_session();
    let reply = ReplyTo {
        conn: id,
        id: Box::default(),
    };
    rs[0]
        .subscribe_at(id, &mut s, &channel, None, reply)
        .unwrap();
    assert_eq!(rs[0].queries.len(), 1);
    rs[0].unsubscribe(id, &mut s, &channel).unwrap();
    assert!(rs[0].queries.is_empty());
    assert!(drive(&mut rs, id, now).answers.is_empty());
}

#[test]
fn a_history_read_returns_the_last_publications() {
    let mut rs = history_routers(2);
    let now = Instant::now();
    let channel = owned_by(&rs, 1);
    for _ in 0..10 {
        rs[0]
            .publish(&channel, b"1", b"1", None, None, None)
            .unwrap();
    }
    let reader = ConnId::new(0, 0, 0);
    drive(&mut rs, reader, now);
    let reply = ReplyTo {
        conn: reader,
        id: Box::default(),
    };
    rs[0].history(&channel, Some(3), reply.clone());
    rs[0].history(&channel, None, reply);
    let seen = drive(&mut rs, reader, now);
    let reads: Vec<(u64, Vec<u64>)> = seen
        .answers
        .iter()
        .map(|a| match a {
            Answered::Read { read, .. } => {
                (read.top, read.frames.iter().map(|f| offset_of(f)).collect())
            }
            other => panic!("expected a read, got {other:?}"),
        })
        .collect();
    assert_eq!(reads, vec![(10, vec![8, 9, 10]), (10, (3..=10).collect())]);
}

#[test]
fn deliveries_held_during_the_query_that_the_replay_covers_are_sent_once() {
    let mut rs = history_routers(2);
    let now = Instant::now();
    let channel = owned_by(&rs, 0);
    let id = ConnId::new(0, 0, 0);
    let reply = ReplyTo {
        conn: id,
        id: Box::default(),
    };
    rs[0]
        .subscribe_at(id, &mut ws_session(), &channel, None, reply.clone())
        .unwrap();
    let epoch = match drive(&mut rs, id, now).answers.pop() {
        Some(Answered::Subscribed { epoch, .. }) => epoch,
        other => panic!("expected the position, got {other:?}"),
    };
    // On the owner's shard: two publications queued, then a returning subscriber (its
    // subscription is live at once). The owner numbers them, delivers them (held: the query
    // is not answered yet), then answers with both in the replay.
    rs[0]
        .publish(&channel, b"1", b"1", None, None, None)
        .unwrap();
    rs[0]
        .publish(&channel, b"1", b"1", None, None, None)
        .unwrap();
    let back = ConnId::new(0, 1, 0);
    let recover = Recover {
        offset: 0,
        epoch: Some(epoch),
    };
    rs[0]
        .subscribe_at(back, &mut ws_session(), &channel, Some(recover), reply)
        .unwrap();
    rs[1]
        .publish(&channel, b"1", b"1", None, None, None)
        .unwrap();
    let seen = drive(&mut rs, back, now);
    let frames = match &seen.answers[..] {
        [Answered::Subscribed {
            offset: 2,
            recovered: Some(true),
            frames,
            ..
        }] => frames,
        other => panic!("expected a recovery at 2, got {other:?}"),
    };
    let mut got: Vec<u64> = frames.iter().map(|f| offset_of(f)).collect();
    got.extend(seen.offsets);
    assert_eq!(got, vec![1, 2, 3]);
}
