//! What history costs a publish, through `Router` in one process with no sockets: one 64 B
//! publish from the call to the delivery message (`ShardMsg::Deliver`, the one shared frame) in
//! the inbox of the subscriber's shard. The per-subscriber work after that is the same with and
//! without history (`fanout.rs` measures it).
//!
//! - `plain`: a channel without history on a router with no `--history` rule: today's path.
//! - `plain_with_rules`: the same channel on a router that has rules, none matching it: the
//!   cost the prefix lookup adds to every channel without history.
//! - `history`: a channel with history (`chat:=100/10m`) whose owner is the publishing shard:
//!   the publication waits in the shard's local list, the owner numbers it, keeps it in the
//!   ring (dropping the oldest of 100) and encodes the delivery with its offset.
//! - `*_cross_shard`: the publisher on shard 0, the subscriber on shard 1; with history the
//!   owner is shard 1, so the publication hops there and the delivery comes back to shard 1's
//!   own list; without, the delivery goes straight to shard 1. Both shards run on the bench
//!   thread.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gateway::conn::ConnId;
use gateway::router::history::{HistoryPolicy, HistoryRule};
use gateway::router::inbox::{Mesh, ShardMsg};
use gateway::router::{Router, RouterConfig};

/// The published data: a 64 B JSON string.
const DATA: &[u8] = b"\"see you at ten, bring the slides and the coffee! ok? 123456789\"";
const PLAIN: &str = "room:lobby";

fn config(rules: &[&str]) -> RouterConfig {
    let rules = rules
        .iter()
        .map(|r| HistoryRule::parse(r).unwrap())
        .collect();
    RouterConfig {
        history: Arc::new(HistoryPolicy::new(rules).unwrap()),
        ..RouterConfig::default()
    }
}

/// Routers for shards 0..n on one mesh.
fn routers(n: u8, cfg: &RouterConfig) -> Vec<Router> {
    let mesh = Arc::new(Mesh::new(1024, vec![None; usize::from(n)]));
    (0..n)
        .map(|s| Router::new(s, Arc::clone(&mesh), cfg.clone()))
        .collect()
}

/// Apply what `r` has for itself or from others, as its shard loop would; the deliveries found.
fn turn(r: &mut Router, now: Instant) -> usize {
    let mut delivered = 0;
    loop {
        let mut msgs = r.outbound.take_local();
        while let Some(m) = r.outbound.pop() {
            msgs.push(m);
        }
        if msgs.is_empty() {
            return delivered;
        }
        for m in msgs {
            match m {
                ShardMsg::Publish(p) => r.on_publication(*p, now),
                ShardMsg::Deliver(d) => delivered += black_box(d).json.len().min(1),
                _ => {}
            }
        }
    }
}

fn publish(r: &mut Router, channel: &str, from: ConnId) {
    r.publish(channel, DATA, DATA, Some(from), None, None)
        .unwrap();
}

fn history(c: &mut Criterion) {
    let from = ConnId::new(0, 123_456, 0);
    let now = Instant::now();
    let with_rules = config(&["chat:=100/10m", "news:=10/1h"]);
    let mut group = c.benchmark_group("publish_history");
    group.throughput(Throughput::Elements(1));

    // One shard, subscriber and publisher on it.
    let mut plain = routers(1, &RouterConfig::default());
    let mut ruled = routers(1, &with_rules);
    for r in plain.iter_mut().chain(ruled.iter_mut()) {
        for c in [PLAIN, "chat:lobby"] {
            r.registry.set(&Arc::from(c), 0, true);
        }
    }
    for (r, channel) in [(0, PLAIN), (1, PLAIN), (1, "chat:lobby")] {
        let r = if r == 0 { &mut plain[0] } else { &mut ruled[0] };
        publish(r, channel, from);
        assert_eq!(turn(r, now), 1, "{channel} delivered once");
    }
    group.bench_function("plain", |b| {
        b.iter(|| {
            publish(&mut plain[0], PLAIN, from);
            turn(&mut plain[0], now)
        })
    });
    group.bench_function("plain_with_rules", |b| {
        b.iter(|| {
            publish(&mut ruled[0], PLAIN, from);
            turn(&mut ruled[0], now)
        })
    });
    group.bench_function("history", |b| {
        b.iter(|| {
            publish(&mut ruled[0], "chat:lobby", from);
            turn(&mut ruled[0], now)
        })
    });

    // Two shards: publisher on 0, subscriber (and, with history, the owner) on 1.
    let mut plain = routers(2, &RouterConfig::default());
    let mut ruled = routers(2, &with_rules);
    let owned = (0..)
        .map(|i| format!("chat:{i}"))
        .find(|c| ruled[0].owner(c) == 1)
        .unwrap();
    for r in plain.iter_mut().chain(ruled.iter_mut()) {
        for c in [PLAIN, owned.as_str()] {
            r.registry.set(&Arc::from(c), 1, true);
        }
    }
    let cross = |rs: &mut [Router], channel: &str| {
        publish(&mut rs[0], channel, from);
        rs[0].outbound.flush();
        let n = turn(&mut rs[1], now);
        rs[1].outbound.flush();
        n
    };
    assert_eq!(cross(&mut plain, PLAIN), 1);
    assert_eq!(cross(&mut ruled, &owned), 1);
    group.bench_function("plain_cross_shard", |b| b.iter(|| cross(&mut plain, PLAIN)));
    group.bench_function("history_cross_shard", |b| {
        b.iter(|| cross(&mut ruled, &owned))
    });
    group.finish();
}

criterion_group!(benches, history);
criterion_main!(benches);
