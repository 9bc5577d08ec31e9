//! The shard loop itself, stepped turn by turn over the in-memory driver: backpressure and
//! resume, slow-consumer close, the SIGTERM drain, cross-shard order through a queue of one
//! message, and the connection timers. No sockets, no threads, no sleeps: time is the driver's
//! simulated clock, which moves only when a turn finds nothing to do (to the loop's next
//! deadline), so every figure asserted here is exact.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use frame_simd::close::parse_close_payload;
use frame_simd::{encode_client_frame, parse_header, Kernels, MaskKey, Opcode};
use frame_simd::{ParseConfig, Parsed, Role};
use gateway::api::ApiSettings;
use gateway::auth::ApiKey;
use gateway::conn::Settings;
use gateway::driver::memory::{Host, MemoryDriver, Pipe, SimClock};
use gateway::metrics::ShardMetrics;
use gateway::router::inbox::Mesh;
use gateway::router::{Router, RouterConfig};
use gateway::shard::timers::TICK;
use gateway::shard::{Shard, ShardConfig, Shared, Turn};

// ---- harness -----------------------------------------------------------------------------

/// Client frames are masked with this key (non-zero in every byte).
const KEY: MaskKey = MaskKey([0x37, 0xfa, 0x21, 0x3d]);
/// A test that needs more turns than this is stuck.
const MAX_TURNS: usize = 100_000;

/// A shard configuration with the gateway's defaults and one client listener (number 0).
fn config() -> ShardConfig {
    ShardConfig {
        settings: Settings::default(),
        max_outbound_bytes: 4 << 20,
        max_connections: 1000,
        drain_timeout: Duration::from_secs(10),
        api: ApiSettings::new(ApiKey::new("shard-loop-test-key")),
        api_listener: None,
    }
}

/// [`config`] with `--max-outbound-bytes` set to `limit`.
fn limited(limit: usize) -> ShardConfig {
    ShardConfig {
        max_outbound_bytes: limit,
        ..config()
    }
}

/// One shard on a memory driver, and what tests look at.
struct Rig {
    shard: Shard<MemoryDriver>,
    host: Host,
    clock: SimClock,
    shared: Arc<Shared>,
    metrics: Arc<ShardMetrics>,
}

impl Rig {
    /// A shard of its own (single-shard router, own clock).
    fn new(cfg: ShardConfig) -> Rig {
        Rig::build(0, cfg, &SimClock::new(), Arc::default(), None)
    }

    /// Shard `index` of the shards sharing `mesh`, `clock` and `shared`; a message in its inbox
    /// wakes it.
    fn on_mesh(
        index: u8,
        cfg: ShardConfig,
        clock: &SimClock,
        shared: &Arc<Shared>,
        mesh: &Arc<Mesh>,
    ) -> Rig {
        let router = Router::new(index, Arc::clone(mesh), RouterConfig::default());
        let rig = Rig::build(index, cfg, clock, Arc::clone(shared), Some(router));
        let mesh = Arc::clone(mesh);
        rig.host.wake_when(move || mesh.depth(index) > 0);
        rig
    }

    fn build(
        index: u8,
        cfg: ShardConfig,
        clock: &SimClock,
        shared: Arc<Shared>,
        router: Option<Router>,
    ) -> Rig {
        let (driver, host) = MemoryDriver::new(1, clock);
        let metrics = Arc::new(ShardMetrics::default());
        let mut shard = Shard::new(
            index,
            driver,
            1,
            Arc::new(cfg),
            Arc::clone(&shared),
            Kernels::detect(),
            Arc::clone(&metrics),
        );
        if let Some(router) = router {
            shard = shard.with_router(router);
        }
        Rig {
            shard,
            host,
            clock: clock.clone(),
            shared,
            metrics,
        }
    }

    /// One loop turn. A turn with nothing to do moves the clock to the shard's next deadline
    /// (a ping 25 s out by default): tests turn an idle shard only when time passing is the
    /// point.
    fn turn(&mut self) -> Turn {
        self.shard.turn().expect("the memory driver never fails")
    }

    /// Turn until `done`; fails the test past `MAX_TURNS`.
    fn until(&mut self, what: &str, mut done: impl FnMut(&mut Rig) -> bool) {
        for _ in 0..MAX_TURNS {
            if done(self) {
                return;
            }
            self.turn();
        }
        panic!("after {MAX_TURNS} turns: still waiting for {what}");
    }

    /// Turn until the shard says it is done; returns the simulated time that took.
    fn until_drained(&mut self) -> Duration {
        let t0 = self.clock.elapsed();
        for _ in 0..MAX_TURNS {
            if self.turn() == Turn::Drained {
                return self.clock.elapsed() - t0;
            }
        }
        panic!("after {MAX_TURNS} turns: the shard has not drained");
    }

    /// Open a connection on the client listener and upgrade it on `path`.
    fn connect(&mut self, path: &str) -> Client {
        let mut c = Client::open(&self.host);
        c.pipe.write(upgrade_request(path).as_bytes());
        self.until("the upgrade response", |_| c.head_done());
        c
    }

    /// What SIGTERM does in the binary: set the shutdown flag, wake the shard.
    fn sigterm(&self) {
        self.shared.shutdown.store(true, Ordering::Release);
        self.host.wake();
    }
}

/// Turn shards `a` and `b` alternately until `done`.
fn until_both(a: &mut Rig, b: &mut Rig, what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..MAX_TURNS {
        if done() {
            return;
        }
        a.turn();
        b.turn();
    }
    panic!("after {MAX_TURNS} turn pairs: still waiting for {what}");
}

fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: gateway.test\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// A frame from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Frame {
    opcode: Opcode,
    payload: Vec<u8>,
}

impl Frame {
    /// The close code and reason of a close frame.
    fn close(&self) -> Option<(u16, String)> {
        if self.opcode != Opcode::Close {
            return None;
        }
        let (code, reason) = parse_close_payload(&self.payload).ok()??;
        Some((code.0, reason.to_owned()))
    }
}

/// A WebSocket client on a pipe: masked frames out, server frames parsed as they arrive.
struct Client {
    pipe: Pipe,
    /// Read and not parsed yet.
    buf: Vec<u8>,
    /// The HTTP response head, once complete.
    head: Option<String>,
    frames: Vec<Frame>,
}

impl Client {
    fn open(host: &Host) -> Client {
        Client {
            pipe: host.connect(0),
            buf: Vec::new(),
            head: None,
            frames: Vec::new(),
        }
    }

    /// Whether the response head arrived (it must be a `101`).
    fn head_done(&mut self) -> bool {
        self.poll();
        if let Some(head) = &self.head {
            assert!(head.starts_with("HTTP/1.1 101 "), "not upgraded: {head}");
        }
        self.head.is_some()
    }

    fn send(&self, opcode: Opcode, payload: &[u8]) {
        let mut frame = Vec::new();
        encode_client_frame(&mut frame, opcode, payload, KEY);
        self.pipe.write(&frame);
    }

    fn send_close(&self, code: u16) {
        self.send(Opcode::Close, &code.to_be_bytes());
    }

    /// Read what the server wrote; returns every frame received so far.
    fn frames(&mut self) -> &[Frame] {
        self.poll();
        &self.frames
    }

    /// The close frame received, if any.
    fn close(&mut self) -> Option<(u16, String)> {
        self.frames().iter().find_map(Frame::close)
    }

    fn poll(&mut self) {
        self.buf.extend(self.pipe.read());
        if self.head.is_none() {
            let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                return;
            };
            let head: Vec<u8> = self.buf.drain(..end + 4).collect();
            self.head = Some(String::from_utf8(head).expect("an ASCII head"));
        }
        let cfg = ParseConfig {
            role: Role::Client,
            rsv_allowed: 0,
            max_payload: u64::MAX,
        };
        while let Parsed::Header { header, len } =
            parse_header(&self.buf, &cfg).expect("server frames follow RFC 6455")
        {
            let end = len + usize::try_from(header.payload_len).expect("a small frame");
            if self.buf.len() < end {
                break;
            }
            assert!(header.fin, "the gateway sends whole messages");
            self.frames.push(Frame {
                opcode: header.opcode,
                payload: self.buf[len..end].to_vec(),
            });
            self.buf.drain(..end);
        }
    }
}

// ---- backpressure ------------------------------------------------------------------------

#[test]
fn echo_stops_reading_over_the_outbound_limit_and_resumes_under_half() {
    const LIMIT: usize = 16 * 1024;
    /// 1000 B payloads: 1008 B client frames, 1004 B echoes.
    const PAYLOAD: usize = 1000;
    const IN_FRAME: u64 = 1008;
    const OUT_FRAME: usize = 1004;
    let mut rig = Rig::new(limited(LIMIT));
    let mut c = rig.connect("/echo");
    let request = c.pipe.read_by_server();
    c.pipe.set_window(0);
    let mut sent = 0u8;
    let send_two = |c: &Client, sent: &mut u8| {
        for _ in 0..2 {
            c.send(Opcode::Binary, &[*sent; PAYLOAD]);
            *sent += 1;
        }
    };

    // Two messages a turn while the peer reads nothing: the queue grows until it passes the
    // limit, then the shard stops reading.
    while c.pipe.unread_by_server() == 0 {
        assert!(sent < 100, "never stopped reading");
        send_two(&c, &mut sent);
        rig.turn();
    }
    assert_eq!(rig.metrics.backpressure_pauses.get(), 1);
    let queued = ((c.pipe.read_by_server() - request) / IN_FRAME) as usize * OUT_FRAME;
    assert!(
        queued > LIMIT && queued <= LIMIT + 2 * OUT_FRAME,
        "queued {queued}"
    );
    let read = c.pipe.read_by_server();
    for _ in 0..5 {
        send_two(&c, &mut sent);
        rig.turn();
    }
    assert_eq!(c.pipe.read_by_server(), read, "read while over the limit");

    // The peer takes all but half the limit plus one byte: still over half, still paused.
    c.pipe.set_window(queued - LIMIT / 2 - 1);
    rig.turn();
    assert_eq!(c.pipe.unread_by_client(), queued - LIMIT / 2 - 1);
    assert_eq!(
        c.pipe.read_by_server(),
        read,
        "resumed above half the limit"
    );
    // One byte more and the queue is at half: reading resumes in that same turn.
    c.pipe.set_window(queued - LIMIT / 2);
    rig.turn();
    assert!(c.pipe.read_by_server() > read, "did not resume at half");

    // Everything is echoed, in order, once the peer reads.
    c.pipe.set_window(usize::MAX);
    let total = usize::from(sent);
    rig.until("every echo", |_| c.frames().len() >= total);
    let frames = c.frames();
    assert_eq!(frames.len(), total);
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f.opcode, Opcode::Binary);
        assert_eq!(f.payload, [i as u8; PAYLOAD], "echo {i}");
    }
}

#[test]
fn subscriber_that_never_reads_gets_4008_and_the_others_everything() {
    stuck_subscriber_gets_what_fits_then_4008(false);
}

#[test]
fn a_run_larger_than_the_room_left_delivers_what_fits_then_4008() {
    // Every publish in one read: one run of 20 frames, larger than the limit. The outcome is
    // the same as frame by frame.
    stuck_subscriber_gets_what_fits_then_4008(true);
}

/// A subscriber that reads nothing among one that reads everything, 20 publishes one per turn
/// or all in `one_read`.
fn stuck_subscriber_gets_what_fits_then_4008(one_read: bool) {
    const LIMIT: usize = 4096;
    /// 500 B texts: 504 B frames, 8 of which fit in the limit.
    const TEXT: usize = 500;
    const MESSAGES: usize = 20;
    let mut rig = Rig::new(limited(LIMIT));
    let mut stuck = rig.connect("/broadcast");
    let mut reader = rig.connect("/broadcast");
    let publisher = rig.connect("/broadcast");
    stuck.pipe.set_window(0);
    let text = |i: usize| format!("{i:03}{}", "x".repeat(TEXT - 3));
    let mut wire = Vec::new();
    for i in 0..MESSAGES {
        let publish = format!("pub:{}", text(i));
        encode_client_frame(&mut wire, Opcode::Text, publish.as_bytes(), KEY);
        if !one_read {
            publisher.pipe.write(&std::mem::take(&mut wire));
            rig.turn();
        }
    }
    if one_read {
        publisher.pipe.write(&wire);
    }
    rig.until("every delivery", |_| reader.frames().len() >= MESSAGES);
    let got: Vec<&[u8]> = reader.frames().iter().map(|f| &f.payload[..]).collect();
    let want: Vec<String> = (0..MESSAGES).map(text).collect();
    assert_eq!(got, want.iter().map(|t| t.as_bytes()).collect::<Vec<_>>());
    assert!(reader.close().is_none());
    assert_eq!(rig.metrics.slow_consumer_disconnects.get(), 1);

    // What the stuck subscriber finds once it reads: the messages that fit, then 4008.
    stuck.pipe.set_window(usize::MAX);
    rig.until("the close", |_| stuck.close().is_some());
    let frames = stuck.frames().to_vec();
    let fit = LIMIT / (TEXT + 4);
    assert_eq!(frames.len(), fit + 1);
    for (i, f) in frames[..fit].iter().enumerate() {
        assert_eq!(f.payload, text(i).as_bytes());
    }
    assert_eq!(
        frames[fit].close(),
        Some((4008, "slow consumer".to_owned()))
    );
    assert_eq!(
        rig.metrics.deliveries.get(),
        (MESSAGES + fit) as u64,
        "deliveries counted once each"
    );
    stuck.send_close(4008);
    rig.until("the stuck subscriber dropped", |_| stuck.pipe.is_closed());
    assert!(!reader.pipe.is_closed());
}

// ---- coalesced writes --------------------------------------------------------------------

#[test]
fn a_turns_deliveries_reach_each_subscriber_in_one_write() {
    const SUBSCRIBERS: usize = 3;
    const PUBLISHES: usize = 10;
    let mut rig = Rig::new(config());
    let mut subs: Vec<Client> = (0..SUBSCRIBERS)
        .map(|_| rig.connect("/broadcast"))
        .collect();
    let mut publisher = rig.connect("/broadcast");
    let before: Vec<(u64, u64)> = subs
        .iter()
        .map(|s| (s.pipe.writes(), s.pipe.buffers()))
        .collect();
    // Ten publishes that arrive in one read: one loop turn handles them all, as one run.
    let mut wire = Vec::new();
    for i in 0..PUBLISHES {
        encode_client_frame(&mut wire, Opcode::Text, format!("pub:{i}").as_bytes(), KEY);
    }
    publisher.pipe.write(&wire);
    rig.turn();
    let want: Vec<Vec<u8>> = (0..PUBLISHES).map(|i| i.to_string().into_bytes()).collect();
    for (n, (s, (writes, buffers))) in subs.iter_mut().zip(before).enumerate() {
        let got: Vec<Vec<u8>> = s.frames().iter().map(|f| f.payload.clone()).collect();
        assert_eq!(got, want, "subscriber {n}: every delivery, in order");
        assert_eq!(
            (s.pipe.writes() - writes, s.pipe.buffers() - buffers),
            (1, 1),
            "subscriber {n}: the turn's {PUBLISHES} deliveries as one buffer in one write"
        );
    }
    assert_eq!(
        rig.metrics.deliveries.get(),
        (SUBSCRIBERS * PUBLISHES) as u64
    );
    assert!(publisher.frames().is_empty(), "the publisher got its own");
}

#[test]
fn runs_of_interleaved_channels_keep_the_publish_order() {
    let mut rig = Rig::new(config());
    let mut only_a = rig.connect("/raw?channel=a");
    let mut only_b = rig.connect("/raw?channel=b");
    let mut both = rig.connect("/raw?channel=a&channel=b");
    let publisher = rig.connect("/ws");
    // Runs of one channel of every length from 1 to 4, alternating, read in one turn.
    let mut order = Vec::new();
    for len in 1..=4 {
        for channel in ["a", "b"] {
            order.extend(std::iter::repeat_n(channel, len));
        }
    }
    let mut wire = Vec::new();
    for (i, channel) in order.iter().enumerate() {
        let publish = format!(r#"{{"op":"publish","channel":"{channel}","data":{i}}}"#);
        encode_client_frame(&mut wire, Opcode::Text, publish.as_bytes(), KEY);
    }
    publisher.pipe.write(&wire);
    rig.turn();
    let want = |pick: &dyn Fn(&str) -> bool| -> Vec<Vec<u8>> {
        let picked = order.iter().enumerate().filter(|(_, c)| pick(c));
        picked.map(|(i, _)| i.to_string().into_bytes()).collect()
    };
    for (name, c, want) in [
        ("a", &mut only_a, want(&|c| c == "a")),
        ("b", &mut only_b, want(&|c| c == "b")),
        ("a and b", &mut both, want(&|_| true)),
    ] {
        let got: Vec<Vec<u8>> = c.frames().iter().map(|f| f.payload.clone()).collect();
        assert_eq!(got, want, "subscriber of {name}");
    }
}

// ---- allocations per message -------------------------------------------------------------

/// The system allocator, counting the allocations of the threads that asked it to (see
/// [`allocations`]): tests run in parallel threads of one process.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<Option<u64>> = const { Cell::new(None) };
}

fn count_one() {
    // `try_with`: allocations while the thread's locals are torn down are not counted.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get().map(|n| n + 1)));
}

// SAFETY: every call is passed unchanged to `System`, which upholds `GlobalAlloc`'s contract;
// counting touches only a `Cell` in a const-initialised thread local (no allocation).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: the caller's `layout` is passed on as the contract requires.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this `layout` (every allocation goes there).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: as for `dealloc`; `new_size` is the caller's, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Allocations (and reallocations) this thread makes while `f` runs.
fn allocations(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|n| n.set(Some(0)));
    f();
    ALLOCATIONS.with(|n| n.take()).unwrap_or(0)
}

#[test]
fn echo_allocates_nothing_per_message() {
    const TURNS: usize = 50;
    const IN_FLIGHT: usize = 16;
    let mut rig = Rig::new(config());
    let echo = rig.connect("/echo");
    echo.pipe.discard_incoming();
    let mut wire = Vec::new();
    for i in 0..IN_FLIGHT {
        encode_client_frame(&mut wire, Opcode::Text, &[b'a' + i as u8; 32], KEY);
    }
    // Warm up: buffers reach their working size.
    for _ in 0..3 {
        echo.pipe.write(&wire);
        rig.turn();
    }
    let (written, writes) = (echo.pipe.written(), echo.pipe.writes());
    let mut n = 0;
    for _ in 0..TURNS {
        echo.pipe.write(&wire);
        n += allocations(|| {
            rig.turn();
        });
    }
    assert_eq!(
        echo.pipe.written() - written,
        (TURNS * IN_FLIGHT * 34) as u64,
        "every echo written"
    );
    assert_eq!(
        echo.pipe.writes() - writes,
        TURNS as u64,
        "the {IN_FLIGHT} echoes of a read in one write"
    );
    assert_eq!(n, 0, "allocations over {TURNS} turns of {IN_FLIGHT} echoes");
}

#[test]
fn fan_out_allocates_per_publish_not_per_subscriber() {
    const SUBSCRIBERS: usize = 200;
    const PUBLISHES: usize = 12;
    const TURNS: usize = 20;
    let mut rig = Rig::new(config());
    let subs: Vec<Client> = (0..SUBSCRIBERS)
        .map(|_| rig.connect("/broadcast"))
        .collect();
    for s in &subs {
        s.pipe.discard_incoming();
    }
    let publisher = rig.connect("/broadcast");
    let mut wire = Vec::new();
    for i in 0..PUBLISHES {
        encode_client_frame(
            &mut wire,
            Opcode::Text,
            format!("pub:{i:02}").as_bytes(),
            KEY,
        );
    }
    for _ in 0..3 {
        publisher.pipe.write(&wire);
        rig.turn();
    }
    let written: u64 = subs.iter().map(|s| s.pipe.written()).sum();
    let mut n = 0;
    for _ in 0..TURNS {
        publisher.pipe.write(&wire);
        n += allocations(|| {
            rig.turn();
        });
    }
    let delivered: u64 = subs.iter().map(|s| s.pipe.written()).sum::<u64>() - written;
    assert_eq!(delivered, (TURNS * PUBLISHES * SUBSCRIBERS * 4) as u64);
    // Encoding a publication is a few allocations (its frames); a subscriber's queue keeps
    // its slots between turns, so the count must not grow with the subscribers.
    let per_turn = n / TURNS as u64;
    assert!(
        per_turn <= 8 * PUBLISHES as u64,
        "{per_turn} allocations per turn of {PUBLISHES} publishes to {SUBSCRIBERS} subscribers"
    );
}

// ---- SIGTERM drain -----------------------------------------------------------------------

#[test]
fn sigterm_sends_1001_and_the_shard_finishes_when_peers_close() {
    let mut rig = Rig::new(config());
    let mut echo = rig.connect("/echo");
    let mut ws = rig.connect("/ws");
    rig.sigterm();
    assert_eq!(rig.turn(), Turn::Running);
    assert!(!rig.host.is_accepting(0));
    assert!(rig.host.connect(0).is_closed(), "accepted while draining");
    assert_eq!(echo.close().map(|(code, _)| code), Some(1001));
    assert_eq!(ws.close().map(|(code, _)| code), Some(1001));

    echo.send_close(1001);
    assert_eq!(rig.turn(), Turn::Running);
    assert!(echo.pipe.is_closed());
    ws.send_close(1001);
    assert_eq!(rig.turn(), Turn::Drained);
    assert!(ws.pipe.is_closed());
    assert_eq!(rig.clock.elapsed(), Duration::ZERO, "waited for nothing");
}

#[test]
fn drain_ends_at_the_drain_timeout_when_peers_stay_silent() {
    let drain = Duration::from_secs(2);
    let mut cfg = config();
    cfg.drain_timeout = drain;
    // Longer than the drain: only the drain deadline can end it.
    cfg.settings.close_timeout = Duration::from_secs(60);
    let mut rig = Rig::new(cfg);
    let mut silent = rig.connect("/echo");
    rig.sigterm();
    let took = rig.until_drained();
    assert!(
        took >= drain && took < drain + TICK,
        "drained after {took:?}"
    );
    assert_eq!(silent.close().map(|(code, _)| code), Some(1001));
    assert!(silent.pipe.is_closed());
    assert_eq!(rig.host.open_connections(), 0);
}

// ---- cross-shard order -------------------------------------------------------------------

#[test]
fn cross_shard_publishes_arrive_in_order_through_a_queue_of_one() {
    const MESSAGES: usize = 3000;
    const BATCH: usize = 500;
    let clock = SimClock::new();
    let shared = Arc::new(Shared::default());
    let mesh = Arc::new(Mesh::new(1, vec![None, None]));
    let mut s0 = Rig::on_mesh(0, config(), &clock, &shared, &mesh);
    let mut s1 = Rig::on_mesh(1, config(), &clock, &shared, &mesh);

    // Each shard learns that the other has subscribers of the channel (a turn with a message
    // in its inbox: woken, no time passes).
    let mut subscriber = s1.connect("/broadcast");
    s0.turn();
    let publisher = s0.connect("/broadcast");
    s1.turn();
    assert_eq!((mesh.depth(0), mesh.depth(1)), (0, 0));

    let mut next = 0;
    let mut paused = false;
    until_both(&mut s0, &mut s1, "every delivery", || {
        paused |= publisher.pipe.unread_by_server() > 0;
        if next < MESSAGES && publisher.pipe.unread_by_server() == 0 {
            let mut bytes = Vec::new();
            for i in next..next + BATCH {
                encode_client_frame(&mut bytes, Opcode::Text, format!("pub:{i}").as_bytes(), KEY);
            }
            publisher.pipe.write(&bytes);
            next += BATCH;
        }
        subscriber.frames().len() >= MESSAGES
    });
    let got: Vec<String> = subscriber
        .frames()
        .iter()
        .filter(|f| f.opcode == Opcode::Text)
        .map(|f| String::from_utf8(f.payload.clone()).expect("text"))
        .collect();
    let want: Vec<String> = (0..MESSAGES).map(|i| i.to_string()).collect();
    assert!(subscriber.close().is_none());
    assert_eq!(got.len(), want.len());
    let first_wrong = got.iter().zip(&want).position(|(g, w)| g != w);
    assert_eq!(first_wrong, None, "out of order or lost");
    assert!(
        paused,
        "the publisher's shard never paused reading for its backlog"
    );
    assert_eq!(s0.metrics.publishes.get(), MESSAGES as u64);
    assert_eq!(s1.metrics.deliveries.get(), MESSAGES as u64);
}

// ---- timers ------------------------------------------------------------------------------

fn timer_settings() -> ShardConfig {
    let mut cfg = config();
    cfg.settings.ping_interval = Duration::from_secs(1);
    cfg.settings.pong_timeout = Duration::from_millis(500);
    cfg.settings.handshake_timeout = Duration::from_secs(2);
    cfg
}

#[test]
fn silent_connection_is_pinged_then_closed_at_the_pong_timeout() {
    let mut rig = Rig::new(timer_settings());
    let mut c = rig.connect("/echo");
    let t0 = rig.clock.elapsed();
    rig.until("a ping", |_| !c.frames().is_empty());
    let pinged = rig.clock.elapsed() - t0;
    assert_eq!(c.frames()[0].opcode, Opcode::Ping);
    let second = Duration::from_secs(1);
    assert!(
        pinged >= second && pinged < second + TICK,
        "pinged after {pinged:?}"
    );

    rig.until("the connection dropped", |_| c.pipe.is_closed());
    let dropped = rig.clock.elapsed() - t0 - pinged;
    let half = Duration::from_millis(500);
    assert!(
        dropped >= half && dropped < half + TICK,
        "dropped after {dropped:?}"
    );
    assert_eq!(c.close(), Some((1001, "ping timeout".to_owned())));
    assert_eq!(rig.metrics.timeouts.get(), 1);
}

#[test]
fn answered_ping_keeps_the_connection_open() {
    let mut rig = Rig::new(timer_settings());
    let mut c = rig.connect("/echo");
    rig.until("a ping", |_| !c.frames().is_empty());
    let payload = c.frames()[0].payload.clone();
    c.send(Opcode::Pong, &payload);
    let t1 = rig.clock.elapsed();
    rig.until("a second ping", |_| c.frames().len() >= 2);
    assert_eq!(c.frames()[1].opcode, Opcode::Ping);
    assert!(rig.clock.elapsed() - t1 >= Duration::from_secs(1));
    assert!(!c.pipe.is_closed());
    assert_eq!(rig.metrics.timeouts.get(), 0);
}

#[test]
fn incomplete_request_gets_408_at_the_handshake_timeout() {
    let mut rig = Rig::new(timer_settings());
    let pipe = rig.host.connect(0);
    pipe.write(b"GET /echo HTTP/1.1\r\nHost: gateway.test\r\n");
    let t0 = rig.clock.elapsed();
    rig.until("the connection closed", |_| pipe.is_write_shut());
    let took = rig.clock.elapsed() - t0;
    let two = Duration::from_secs(2);
    assert!(took >= two && took < two + TICK, "answered after {took:?}");
    let response = String::from_utf8(pipe.read()).expect("text");
    assert!(response.starts_with("HTTP/1.1 408 "), "{response}");
    assert_eq!(rig.metrics.timeouts.get(), 1);
}
