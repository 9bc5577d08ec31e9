//! The per-message fan-out path of a real shard: one publish of a 64 B message to N subscribers
//! (N = 1, 100, 1000, 10000), from the publisher's frame arriving to every subscriber's write
//! queue flushed. Shards run their own loop (`Shard::turn`) over the in-memory driver, whose
//! sockets take everything and count it; no kernel, so the `writev` a real flush makes per
//! subscriber is not in the figure (on a real socket it costs more than everything here).
//!
//! - `shard_local`: one shard holds the publisher and N `/broadcast` subscribers. Per
//!   iteration the publisher's `pub:` frame arrives and the shard takes one turn: read, unmask,
//!   `Router::publish` (the frames encoded once into `Arc<[u8]>`), a reference queued in each
//!   subscriber's `Outbox`, each outbox flushed once into its pipe.
//! - `shard_cross_shard`: the subscribers live on a second shard: shard 0 takes its turn (read,
//!   publish, the delivery pushed on the `Mesh` queue), then shard 1 takes its turn (pop, the
//!   same delivery loop). Both run on the bench thread, so moving cache lines between cores
//!   and the wake-up's syscall are not in the figure.
//! - `copy_per_conn`: the baseline, what a server with a per-connection encoder does: each
//!   subscriber's frame (header and payload) is copied into that subscriber's own buffer,
//!   which is written and cleared (its capacity kept).

use std::hint::black_box;
use std::io::{self, IoSlice};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use frame_simd::{encode_client_frame, encode_header, Kernels, MaskKey, Opcode, MAX_HEADER_LEN};
use gateway::api::ApiSettings;
use gateway::auth::ApiKey;
use gateway::conn::Settings;
use gateway::driver::memory::{Host, MemoryDriver, Pipe, SimClock};
use gateway::metrics::ShardMetrics;
use gateway::router::inbox::Mesh;
use gateway::router::{Router, RouterConfig};
use gateway::shard::{Shard, ShardConfig, Shared};

const SUBSCRIBERS: [usize; 4] = [1, 100, 1000, 10_000];
/// The published text: 64 B.
const DATA: &[u8] = b"see you at ten, bring the slides and the coffee! ok? 1234567890";
/// What a subscriber gets per publish: a 2-byte header and the text.
const FRAME_BYTES: u64 = 2 + DATA.len() as u64;
const KEY: MaskKey = MaskKey([0x37, 0xfa, 0x21, 0x3d]);
const REQUEST: &str = "GET /broadcast HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\n\
                       Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                       Sec-WebSocket-Version: 13\r\n\r\n";

/// A socket that takes every byte (counts them, copies nothing).
fn sink(iov: &[IoSlice<'_>]) -> io::Result<usize> {
    Ok(iov.iter().map(|s| s.len()).sum())
}

fn config() -> Arc<ShardConfig> {
    Arc::new(ShardConfig {
        settings: Settings::default(),
        max_outbound_bytes: 4 << 20,
        max_connections: 100_000,
        drain_timeout: std::time::Duration::from_secs(10),
        api: ApiSettings::new(ApiKey::new("bench-key")),
        api_listener: None,
    })
}

/// A shard on a memory driver, its far side and its counters.
struct Node {
    shard: Shard<MemoryDriver>,
    host: Host,
    metrics: Arc<ShardMetrics>,
}

impl Node {
    fn new(index: u8, clock: &SimClock, router: Router) -> Node {
        let (driver, host) = MemoryDriver::new(1, clock);
        let metrics = Arc::new(ShardMetrics::default());
        let shard = Shard::new(
            index,
            driver,
            1,
            config(),
            Arc::new(Shared::default()),
            Kernels::detect(),
            Arc::clone(&metrics),
        )
        .with_router(router);
        Node {
            shard,
            host,
            metrics,
        }
    }

    fn turn(&mut self) {
        self.shard.turn().expect("the memory driver never fails");
    }

    /// Open `n` `/broadcast` connections whose clients read everything; turn until all are
    /// upgraded.
    fn connect(&mut self, n: usize) -> Vec<Pipe> {
        let want = self.metrics.upgrades.get() + n as u64;
        let pipes: Vec<Pipe> = (0..n)
            .map(|_| {
                let pipe = self.host.connect(0);
                pipe.discard_incoming();
                pipe.write(REQUEST.as_bytes());
                pipe
            })
            .collect();
        while self.metrics.upgrades.get() < want {
            self.turn();
        }
        pipes
    }
}

/// Publisher and subscribers on one or two shards.
struct Fanout {
    /// The publisher's shard first; the subscribers' last (the same one when local).
    nodes: Vec<Node>,
    publisher: Pipe,
    subscribers: Vec<Pipe>,
    /// The publisher's masked `pub:` frame.
    frame: Vec<u8>,
}

impl Fanout {
    fn local(n: usize) -> Fanout {
        let mut node = Node::new(0, &SimClock::new(), Router::single(0));
        let subscribers = node.connect(n);
        let publisher = node.connect(1).remove(0);
        Fanout::with(vec![node], publisher, subscribers)
    }

    fn cross_shard(n: usize) -> Fanout {
        let clock = SimClock::new();
        let mesh = Arc::new(Mesh::new(1024, vec![None, None]));
        let mut nodes: Vec<Node> = (0..2u8)
            .map(|i| {
                let router = Router::new(i, Arc::clone(&mesh), RouterConfig::default());
                let node = Node::new(i, &clock, router);
                let mesh = Arc::clone(&mesh);
                node.host.wake_when(move || mesh.depth(i) > 0);
                node
            })
            .collect();
        let subscribers = nodes[1].connect(n);
        nodes[0].turn();
        let publisher = nodes[0].connect(1).remove(0);
        nodes[1].turn();
        Fanout::with(nodes, publisher, subscribers)
    }

    fn with(nodes: Vec<Node>, publisher: Pipe, subscribers: Vec<Pipe>) -> Fanout {
        let mut text = b"pub:".to_vec();
        text.extend_from_slice(DATA);
        let mut frame = Vec::new();
        encode_client_frame(&mut frame, Opcode::Text, &text, KEY);
        Fanout {
            nodes,
            publisher,
            subscribers,
            frame,
        }
    }

    /// One publish, delivered.
    fn publish(&mut self) {
        self.publisher.write(&self.frame);
        for node in &mut self.nodes {
            node.turn();
        }
    }

    /// Bytes the subscribers were sent, in total.
    fn delivered(&self) -> u64 {
        self.subscribers.iter().map(Pipe::written).sum()
    }
}

/// The baseline: each subscriber's own buffer gets its own copy of the frame.
struct CopyPerConn {
    buffers: Vec<Vec<u8>>,
}

impl CopyPerConn {
    fn new(n: usize) -> CopyPerConn {
        CopyPerConn {
            buffers: vec![Vec::new(); n],
        }
    }

    /// Returns the bytes written.
    fn publish(&mut self, data: &[u8]) -> u64 {
        let mut written = 0;
        let mut header = [0u8; MAX_HEADER_LEN];
        for buf in &mut self.buffers {
            let h = encode_header(&mut header, true, Opcode::Text, data.len() as u64, None);
            buf.extend_from_slice(&header[..h]);
            buf.extend_from_slice(data);
            written += sink(&[IoSlice::new(buf)]).unwrap_or(0) as u64;
            buf.clear();
        }
        written
    }
}

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    for n in SUBSCRIBERS {
        let mut local = Fanout::local(n);
        let mut cross = Fanout::cross_shard(n);
        let mut copy = CopyPerConn::new(n);

        // Every contender delivers the same bytes to every subscriber.
        let want = n as u64 * FRAME_BYTES;
        for f in [&mut local, &mut cross] {
            let before = f.delivered();
            f.publish();
            assert_eq!(f.delivered() - before, want, "one frame per subscriber");
        }
        assert_eq!(copy.publish(DATA), want);

        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("copy_per_conn", n), &n, |b, _| {
            b.iter(|| copy.publish(black_box(DATA)))
        });
        group.bench_with_input(BenchmarkId::new("shard_local", n), &n, |b, _| {
            b.iter(|| local.publish())
        });
        group.bench_with_input(BenchmarkId::new("shard_cross_shard", n), &n, |b, _| {
            b.iter(|| cross.publish())
        });
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
