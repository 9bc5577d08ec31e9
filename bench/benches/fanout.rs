//! The per-message fan-out path, in one process with no sockets: one publish of a 64 B message
//! to a channel with N subscribers (N = 1, 100, 1000, 10000), from the publish call to every
//! subscriber's write queue flushed into a socket that takes everything (the `writev` itself
//! is not timed).
//!
//! - `gateway_local`: `Router::publish` encodes the delivery once into `Arc<[u8]>` frames; the
//!   shard's delivery loop appends a reference to each subscriber's `Outbox` and flushes each
//!   outbox once (a vectored write of its queue).
//! - `gateway_cross_shard`: the subscribers live on another shard: the `Arc` travels through
//!   that shard's inbox queue (`Mesh`), its router pops it, and the same delivery loop runs
//!   there. Both shards run on the bench thread, so the cost of moving cache lines between
//!   cores and of the wake-up is not in the figure.
//! - `copy_per_conn`: the baseline, what a server with a per-connection encoder does: the
//!   message is built once, then each subscriber's frame (header and payload) is copied into
//!   that subscriber's own buffer, which is written and cleared (its capacity kept).
//!
//! The shard's delivery loop (`shard::push`) is private to the shard and needs a driver, so
//! `deliver` below restates it over the same public parts: the channel table's subscriber
//! lists, the connection slab, `Outbox::push_shared` and `Outbox::flush`.

use std::hint::black_box;
use std::io::{self, IoSlice};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use frame_simd::{encode_header, Opcode, MAX_HEADER_LEN};
use gateway::conn::id::Slab;
use gateway::conn::ConnId;
use gateway::router::channels::{ChannelTable, Kind};
use gateway::router::fanout::{encode_message, Delivery};
use gateway::router::inbox::{Mesh, ShardMsg};
use gateway::router::{Router, RouterConfig};
use gateway::shard::outbox::Outbox;

const SUBSCRIBERS: [usize; 4] = [1, 100, 1000, 10_000];
const CHANNEL: &str = "room:lobby";
/// The published data: a 64 B JSON string (62 characters of text).
const DATA: &[u8] = b"\"see you at ten, bring the slides and the coffee! ok? 123456789\"";
/// The gateway's default `--max-outbound-bytes`, never reached here.
const LIMIT_BYTES: usize = 1 << 20;

/// A socket that takes every byte (counts them, copies nothing).
fn sink(iov: &[IoSlice<'_>]) -> io::Result<usize> {
    Ok(iov.iter().map(|s| s.len()).sum())
}

/// One shard's side: its router and its connections' write queues.
struct ShardSide {
    router: Router,
    outboxes: Slab<Outbox>,
    /// Connections with something queued this turn.
    dirty: Vec<ConnId>,
}

impl ShardSide {
    /// A shard with `n` JSON subscribers of `CHANNEL`.
    fn new(router: Router, shard: u8, n: usize) -> ShardSide {
        let mut side = ShardSide {
            router,
            outboxes: Slab::new(shard),
            dirty: Vec::new(),
        };
        for _ in 0..n {
            let id = side.outboxes.insert(Outbox::default());
            side.router.channels.subscribe(CHANNEL, id, Kind::Json);
        }
        side
    }

    /// The shard's delivery loop: a reference to the frame into each subscriber's queue.
    /// Returns the deliveries made.
    fn deliver(&mut self, d: &Delivery) -> usize {
        let Some(ch) = self.router.channels.get(&d.channel) else {
            return 0;
        };
        let mut count = 0;
        for (list, frame) in [(&ch.json, Some(&d.json)), (&ch.bare, d.bare.as_ref())] {
            let Some(frame) = frame else {
                continue;
            };
            for &id in list {
                if Some(id) == d.skip {
                    continue;
                }
                let Some(outbox) = self.outboxes.get_mut(id) else {
                    continue;
                };
                if outbox.queued_bytes() + frame.len() > LIMIT_BYTES {
                    continue;
                }
                if outbox.is_empty() {
                    self.dirty.push(id);
                }
                outbox.push_shared(Arc::clone(frame));
                count += 1;
            }
        }
        count
    }

    /// End of the turn: flush every queue that got something. Returns the bytes written.
    fn flush(&mut self) -> usize {
        let mut written = 0;
        for id in self.dirty.drain(..) {
            if let Some(outbox) = self.outboxes.get_mut(id) {
                written += outbox.flush(sink).unwrap_or(0);
            }
        }
        written
    }

    /// Apply what the router sent this shard itself (a publish on this shard).
    fn apply_actions(&mut self) -> usize {
        let mut count = 0;
        for msg in self.router.outbound.take_local() {
            if let ShardMsg::Deliver(d) = msg {
                count += self.deliver(&d);
            }
        }
        count
    }

    /// Handle what other shards queued for this one.
    fn drain_inbox(&mut self) -> usize {
        let mut count = 0;
        while let Some(msg) = self.router.outbound.pop() {
            if let ShardMsg::Deliver(d) = msg {
                count += self.deliver(&d);
            }
        }
        count
    }
}

fn publish(router: &mut Router, from: ConnId) {
    let r = router.publish(
        CHANNEL,
        DATA,
        &DATA[1..DATA.len() - 1],
        Some(from),
        None,
        None,
    );
    black_box(r).expect("the queue has room");
}

/// Local subscribers: publish on the subscribers' shard. Returns (deliveries, bytes written).
fn local_turn(side: &mut ShardSide, from: ConnId) -> (usize, usize) {
    publish(&mut side.router, from);
    let n = side.apply_actions();
    (n, side.flush())
}

/// Remote subscribers: publish on shard 0, deliver on shard 1.
fn cross_turn(publisher: &mut Router, side: &mut ShardSide, from: ConnId) -> (usize, usize) {
    publish(publisher, from);
    publisher.outbound.flush();
    let n = side.drain_inbox();
    (n, side.flush())
}

/// The baseline: each subscriber's own buffer gets its own copy of the frame.
struct CopyPerConn {
    channels: ChannelTable,
    buffers: Slab<Vec<u8>>,
    scratch: Vec<u8>,
}

impl CopyPerConn {
    fn new(n: usize) -> CopyPerConn {
        let mut b = CopyPerConn {
            channels: ChannelTable::default(),
            buffers: Slab::new(0),
            scratch: Vec::new(),
        };
        for _ in 0..n {
            let id = b.buffers.insert(Vec::new());
            b.channels.subscribe(CHANNEL, id, Kind::Json);
        }
        b
    }

    fn turn(&mut self, from: ConnId) -> (usize, usize) {
        self.scratch.clear();
        encode_message(&mut self.scratch, CHANNEL, DATA, Some(from), None, None);
        let Some(ch) = self.channels.get(CHANNEL) else {
            return (0, 0);
        };
        let (mut count, mut written) = (0, 0);
        let mut header = [0u8; MAX_HEADER_LEN];
        for &id in &ch.json {
            let Some(buf) = self.buffers.get_mut(id) else {
                continue;
            };
            let h = encode_header(
                &mut header,
                true,
                Opcode::Text,
                self.scratch.len() as u64,
                None,
            );
            buf.extend_from_slice(&header[..h]);
            buf.extend_from_slice(&self.scratch);
            written += sink(&[IoSlice::new(buf)]).unwrap_or(0);
            buf.clear();
            count += 1;
        }
        (count, written)
    }
}

fn fanout(c: &mut Criterion) {
    let from = ConnId::new(0, 123_456, 0);
    let mut group = c.benchmark_group("fanout");
    for n in SUBSCRIBERS {
        let mut local = ShardSide::new(Router::single(0), 0, n);
        local.router.registry.set(&Arc::from(CHANNEL), 0, true);

        let mesh = Arc::new(Mesh::new(1024, vec![None, None]));
        let mut publisher = Router::new(0, Arc::clone(&mesh), RouterConfig::default());
        publisher.registry.set(&Arc::from(CHANNEL), 1, true);
        let mut remote = ShardSide::new(Router::new(1, mesh, RouterConfig::default()), 1, n);

        let mut copy = CopyPerConn::new(n);

        // Every contender delivers the same bytes to every subscriber.
        let (count, bytes) = local_turn(&mut local, from);
        assert_eq!(count, n);
        assert_eq!(
            cross_turn(&mut publisher, &mut remote, from),
            (count, bytes)
        );
        assert_eq!(copy.turn(from), (count, bytes));

        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("copy_per_conn", n), &n, |b, _| {
            b.iter(|| copy.turn(black_box(from)))
        });
        group.bench_with_input(BenchmarkId::new("gateway_local", n), &n, |b, _| {
            b.iter(|| local_turn(&mut local, black_box(from)))
        });
        group.bench_with_input(BenchmarkId::new("gateway_cross_shard", n), &n, |b, _| {
            b.iter(|| cross_turn(&mut publisher, &mut remote, black_box(from)))
        });
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
