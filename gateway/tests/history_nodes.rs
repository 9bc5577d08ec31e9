//! History shared by nodes through Redis (`--broker redis://` with `--history`): a client that
//! loses its node (a reset, or a silent black hole only the heartbeat finds) comes back on
//! another node with its (offset, epoch) and gets exactly what it missed, then the live ones,
//! while a publisher keeps going; one away too long is told so with the position; a Redis that
//! loses its data (kill -9 without persistence) gives a new epoch, one with an fsynced
//! append-only file recovers; a stalled Redis gives an error reply, never a hang. Real
//! `redis-server` processes, two gateway nodes, a proxy the test owns.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use gateway::broker::history;
use gateway::broker::resp::Value;
use gateway::broker::wire::{self, Msg};
use gateway::router::history::Epoch;

use common::api::{json_of, Api, API_KEY};
use common::proxy::{cuttable, Cut};
use common::redis::{try_command_on, Redis};
use common::ws::{next_offset, subscribe, Ws};
use common::*;
use test_support::Signal;

const CHANNEL: &str = "chat:room";

/// A node of the deployment on `redis`, with history on `chat:` (100 kept for 10 minutes)
/// and on `brief:` (100 kept for half a second).
fn node(redis: &Redis, id: u16) -> Gateway {
    node_with(redis, id, &[])
}

/// [`node`] with `extra` arguments.
fn node_with(redis: &Redis, id: u16, extra: &[&str]) -> Gateway {
    let history = [
        "--history",
        "chat:=100/10m",
        "--history",
        "brief:=100/500ms",
    ];
    let gw = gateway()
        .args(["--threads", "2", "--api-key", API_KEY])
        .args(["--broker", &redis.url(), "--node-id", &id.to_string()])
        .args(history)
        .args(extra)
        .start();
    redis.wait_numsub(&format!("gw:n:{id}"), 1);
    gw
}

/// Publish data `n` to `channel` through `api`; refused (503) while the broker is away.
fn publish(api: &mut Api, channel: &str, n: u64) -> u16 {
    api.post("/api/publish", json!({"channel": channel, "data": n}))
        .status
}

/// Publish data `n`, which must be accepted.
fn published(api: &mut Api, channel: &str, n: u64) {
    assert_eq!(publish(api, channel, n), 202, "publish {n}");
}

/// Wait (bounded) until `gw` holds no client connection: only the API connection asking.
fn wait_no_clients(gw: &Gateway, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let stats = json_of(&Api::connect(gw).get("/api/stats"));
        if stats["connections"] == 1 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the node kept the dead client: {stats}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// A publisher on its own thread and API connection, publishing the next numbers until told to
/// stop (at most 500); returns the last number it published.
struct Publisher {
    stop: Arc<AtomicBool>,
    last: Arc<AtomicU64>,
    handle: thread::JoinHandle<()>,
}

impl Publisher {
    fn start(gw: &Gateway, from: u64) -> Publisher {
        let stop = Arc::new(AtomicBool::new(false));
        let last = Arc::new(AtomicU64::new(from - 1));
        let mut api = Api::connect(gw);
        let (s, l) = (Arc::clone(&stop), Arc::clone(&last));
        let handle = thread::spawn(move || {
            for n in from..from + 500 {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                published(&mut api, CHANNEL, n);
                l.store(n, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(2));
            }
        });
        Publisher { stop, last, handle }
    }

    /// Wait until it got past `n`.
    fn wait_past(&self, n: u64) {
        let deadline = Instant::now() + IO_TIMEOUT;
        while self.last.load(Ordering::Relaxed) <= n {
            assert!(Instant::now() < deadline, "the publisher is stuck");
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("the publisher panicked");
        self.last.load(Ordering::Relaxed)
    }
}

/// A client on node A behind a proxy gets 10 messages; the proxy cuts it (`cut`); 50 more are
/// published on node B; the client comes back on B with its position while a publisher keeps
/// going: recovered, exactly 11..=60 in order, then the live ones, no gap, no duplicate.
fn recovers_on_the_other_node_after(cut: impl FnOnce(&Cut)) {
    let redis = Redis::start();
    // Node A's heartbeat (a ping after a second of silence, a second to answer) is what finds
    // a client lost in a black hole.
    let heartbeat = ["--ping-interval", "1s", "--pong-timeout", "1s"];
    let (a, b) = (node_with(&redis, 1, &heartbeat), node(&redis, 2));
    let done = Arc::new(AtomicBool::new(false));
    let (via, switch) = cuttable(a.addr(), Arc::clone(&done));
    let mut api_b = Api::connect(&b);

    let mut w = Ws::open(via, "");
    let reply = subscribe(&mut w, CHANNEL, None);
    assert_eq!(reply["offset"], 0, "{reply}");
    let epoch = reply["epoch"].as_str().expect("an epoch").to_owned();
    for n in 1..=10 {
        published(&mut api_b, CHANNEL, n);
    }
    let got: Vec<u64> = (0..10).map(|_| next_offset(&mut w)).collect();
    assert_eq!(
        got,
        (1..=10).collect::<Vec<_>>(),
        "published on B, delivered on A"
    );

    cut(&switch);
    for n in 11..=60 {
        published(&mut api_b, CHANNEL, n);
    }
    let publisher = Publisher::start(&b, 61);
    publisher.wait_past(70);
    let mut back = Ws::open(b.addr(), "");
    let recover = json!({"offset": 10, "epoch": epoch});
    let reply = subscribe(&mut back, CHANNEL, Some(recover));
    assert_eq!(reply["recovered"], true, "{reply}");
    assert_eq!(reply["epoch"], epoch.as_str(), "{reply}");
    publisher.wait_past(reply["offset"].as_u64().unwrap() + 20);
    let last = publisher.stop();
    let got: Vec<u64> = (11..=last).map(|_| next_offset(&mut back)).collect();
    assert_eq!(got, (11..=last).collect::<Vec<_>>(), "missed, then live");
    back.sync();
    // Node A let go of the client it lost (at once on a reset, by its heartbeat in a hole).
    wait_no_clients(&a, Duration::from_secs(10));
    done.store(true, Ordering::Relaxed);
}

#[test]
fn a_client_cut_by_a_reset_recovers_on_another_node() {
    recovers_on_the_other_node_after(Cut::reset);
}

#[test]
fn a_client_lost_in_a_black_hole_recovers_on_another_node() {
    recovers_on_the_other_node_after(Cut::black_hole);
}

#[test]
fn away_past_the_size_or_the_ttl_is_not_recovered_and_gets_the_position() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, 1), node(&redis, 2));
    let (mut api_a, mut api_b) = (Api::connect(&a), Api::connect(&b));
    for (channel, missed) in [(CHANNEL, 150), ("brief:room", 3)] {
        let mut w = Ws::open(a.addr(), "");
        let epoch = subscribe(&mut w, channel, None)["epoch"].clone();
        published(&mut api_b, channel, 1);
        let first = w.next();
        assert_eq!(first["offset"], 1, "{first}");
        drop(w);
        for n in 2..=1 + missed {
            published(&mut api_b, channel, n);
        }
        if channel.starts_with("brief:") {
            // Past the half-second TTL of what was published.
            thread::sleep(Duration::from_millis(700));
        }
        let mut back = Ws::open(b.addr(), "");
        let recover = json!({"offset": 1, "epoch": epoch});
        let reply = subscribe(&mut back, channel, Some(recover));
        assert_eq!(reply["recovered"], false, "{channel}: {reply}");
        assert_eq!(
            reply["offset"],
            1 + missed,
            "{channel}: the position: {reply}"
        );
        assert_eq!(reply["epoch"], epoch, "{channel}: the same stream: {reply}");
        // No replay: the next thing it gets is the next publication.
        published(&mut api_a, channel, 2 + missed);
        let m = back.next();
        assert_eq!(m["offset"], 2 + missed, "{channel}: {m}");
    }
}

/// Kill Redis with SIGKILL and start it again on its port with `args`.
fn kill_and_restart(redis: Redis, args: &[&str]) -> Redis {
    let port = redis.port;
    redis.process.signal(Signal::SIGKILL);
    drop(redis);
    Redis::start_with(port, args)
}

/// Wait (bounded) until `gw` has its broker again.
fn wait_broker(gw: &Gateway) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while counter(gw, "gateway_broker_connected") != 1 {
        assert!(Instant::now() < deadline, "the node never got Redis back");
        thread::sleep(Duration::from_millis(50));
    }
}

/// Publish until the node that lost Redis takes publications again.
fn publish_when_back(api: &mut Api, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while publish(api, CHANNEL, n) != 202 {
        assert!(Instant::now() < deadline, "the node never got Redis back");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_redis_that_lost_its_data_gives_a_new_epoch_and_the_client_reloads() {
    let redis = Redis::start();
    let mut a = node(&redis, 1);
    let mut api = Api::connect(&a);
    let mut w = Ws::open(a.addr(), "");
    let epoch = subscribe(&mut w, CHANNEL, None)["epoch"].clone();
    for n in 1..=3 {
        published(&mut api, CHANNEL, n);
    }
    assert_eq!((0..3).map(|_| next_offset(&mut w)).sum::<u64>(), 6);

    let redis = kill_and_restart(redis, &[]);
    // Once the node has Redis again, its subscribers hear that their stream may have a hole.
    let gap = w.next();
    assert_eq!(gap, json!({"type":"gap","channel":CHANNEL}));
    a.assert_running();
    w.ok(json!({"op":"unsubscribe","channel":CHANNEL,"id":"u"}));
    let recover = json!({"offset": 3, "epoch": epoch});
    let reply = subscribe(&mut w, CHANNEL, Some(recover));
    assert_eq!(reply["recovered"], false, "{reply}");
    assert_ne!(reply["epoch"], epoch, "a new stream: {reply}");
    assert_eq!(reply["offset"], 0, "{reply}");
    publish_when_back(&mut api, 1);
    assert_eq!(next_offset(&mut w), 1, "the new stream starts at 1");
    drop(redis);
}

#[test]
fn a_redis_with_an_fsynced_append_only_file_keeps_the_stream_through_a_kill() {
    const AOF: &[&str] = &["--appendonly", "yes", "--appendfsync", "always"];
    let dir = std::env::temp_dir().join(format!("gw-history-aof-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory for the append-only file");
    let dir_arg = dir.to_str().expect("a UTF-8 temp dir").to_owned();
    let args = [AOF, &["--dir", &dir_arg]].concat();
    let redis = Redis::start_with(free_port(), &args);
    let (a, b) = (node(&redis, 1), node(&redis, 2));
    let mut w = Ws::open(a.addr(), "");
    let epoch = subscribe(&mut w, CHANNEL, None)["epoch"].clone();
    let mut api = Api::connect(&a);
    for n in 1..=3 {
        published(&mut api, CHANNEL, n);
    }
    assert_eq!((0..3).map(|_| next_offset(&mut w)).sum::<u64>(), 6);
    drop(w);

    let redis = kill_and_restart(redis, &args);
    wait_broker(&b);
    for n in 4..=6 {
        publish_when_back(&mut api, n);
    }
    let mut back = Ws::open(b.addr(), "");
    let recover = json!({"offset": 3, "epoch": epoch});
    let reply = subscribe(&mut back, CHANNEL, Some(recover));
    assert_eq!(reply["recovered"], true, "{reply}");
    assert_eq!(
        (4..=6).map(|_| next_offset(&mut back)).collect::<Vec<_>>(),
        [4, 5, 6]
    );
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_stalled_redis_gives_recover_and_history_an_error_within_a_second() {
    let redis = Redis::start();
    let a = node(&redis, 1);
    let mut w = Ws::open(a.addr(), "");
    let epoch = subscribe(&mut w, CHANNEL, None)["epoch"].clone();
    w.ok(json!({"op":"unsubscribe","channel":CHANNEL,"id":"u"}));
    redis.process.signal(Signal::SIGSTOP);
    // Each is answered within the 0.8 s the store waits for Redis (the bound here leaves room
    // for a busy machine; a hang would hit it).
    let bounded = |what: &str, asked: Instant| {
        let took = asked.elapsed();
        assert!(took < Duration::from_secs(3), "{what} took {took:?}");
    };
    let asked = Instant::now();
    let recover = json!({"offset": 0, "epoch": epoch});
    let req = json!({"op":"subscribe","channel":CHANNEL,"recover":recover,"id":"s"});
    assert_eq!(w.err(req), "broker_unavailable");
    bounded("recover", asked);
    let asked = Instant::now();
    let hist = json!({"op":"history","channel":CHANNEL,"id":"h"});
    assert_eq!(w.err(hist), "broker_unavailable");
    bounded("history", asked);
    let asked = Instant::now();
    let r = Api::connect(&a).get(&format!("/api/history?channel={CHANNEL}"));
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    bounded("GET /api/history", asked);
    assert!(counter(&a, "gateway_broker_history_failures_total") >= 3);
    // The failed subscribe left no subscription behind.
    let e = w.err(json!({"op":"unsubscribe","channel":CHANNEL,"id":"u2"}));
    assert_eq!(e, "not_subscribed");
    redis.process.signal(Signal::SIGCONT);
    // Back: the same requests succeed once the node has Redis again.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let req = json!({"op":"history","channel":CHANNEL,"id":"h2"});
        let (reply, _) = w.request(req);
        if reply["ok"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "never answered again: {reply}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// A `/metrics` counter of `gw`.
fn counter(gw: &Gateway, name: &str) -> u64 {
    let r = Api::connect(gw).get("/metrics");
    let text = String::from_utf8(r.body).expect("UTF-8 metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} in /metrics"))
}

#[test]
fn an_offset_jump_in_what_redis_delivers_tells_the_subscribers_of_the_gap() {
    let redis = Redis::start();
    let a = node(&redis, 1);
    let mut api = Api::connect(&a);
    let mut w = Ws::open(a.addr(), "");
    let epoch = subscribe(&mut w, CHANNEL, None)["epoch"].clone();
    for n in 1..=2 {
        published(&mut api, CHANNEL, n);
    }
    assert_eq!((0..2).map(|_| next_offset(&mut w)).sum::<u64>(), 3);
    // Offsets 3 and 4 never reach this node: what it gets next from Redis is 5.
    let mut msg = Vec::new();
    let jumped = Msg::Numbered {
        origin: 9,
        from: None,
        skip: None,
        user: None,
        data: b"5",
        bare: b"5",
        epoch: Epoch::parse(epoch.as_str().unwrap()).unwrap(),
        offset: 5,
    };
    wire::encode(&jumped, &mut msg);
    let topic = format!("gw:c:{CHANNEL}");
    let msg = String::from_utf8(msg).expect("an ASCII message");
    redis.command(&["PUBLISH", &topic, &msg]);
    assert_eq!(w.next(), json!({"type":"gap","channel":CHANNEL}));
    assert_eq!(next_offset(&mut w), 5, "then the publication, as it came");
    assert_eq!(counter(&a, "gateway_broker_history_gaps_total"), 1);
}

#[test]
fn publishers_on_both_nodes_share_one_numbering_that_every_node_delivers_alike() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, 1), node(&redis, 2));
    let mut subs = [Ws::open(a.addr(), ""), Ws::open(b.addr(), "")];
    for w in &mut subs {
        assert_eq!(subscribe(w, CHANNEL, None)["offset"], 0);
    }
    let mut apis = [Api::connect(&a), Api::connect(&b)];
    // Interleaved from both nodes: data tells which node and which publish.
    for n in 0..20u64 {
        let api = &mut apis[(n % 2) as usize];
        published(api, CHANNEL, 1000 * (n % 2 + 1) + n);
    }
    let seen: Vec<Vec<(u64, u64)>> = subs
        .iter_mut()
        .map(|w| {
            (0..20)
                .map(|_| {
                    let m = w.next();
                    (m["offset"].as_u64().unwrap(), m["data"].as_u64().unwrap())
                })
                .collect()
        })
        .collect();
    let offsets: Vec<u64> = seen[0].iter().map(|p| p.0).collect();
    assert_eq!(offsets, (1..=20).collect::<Vec<_>>());
    assert_eq!(
        seen[0], seen[1],
        "the same offset for each publication on both nodes"
    );
}

/// Wait (bounded) until Redis holds both history scripts.
fn wait_scripts(redis: &Redis) {
    let shas: Vec<String> = [history::PUBLISH_SCRIPT, history::READ_SCRIPT]
        .iter()
        .map(|s| sha1_smol::Sha1::from(s).digest().to_string())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let both = Value::Array(Some(vec![Value::Int(1), Value::Int(1)]));
        if redis.command(&["SCRIPT", "EXISTS", &shas[0], &shas[1]]) == both {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the node did not load its scripts"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_node_loads_its_scripts_on_every_connection_before_anything_runs_them() {
    let redis = Redis::start();
    let a = node(&redis, 1);
    wait_scripts(&redis);
    let redis = kill_and_restart(redis, &[]);
    wait_broker(&a);
    wait_scripts(&redis);
    // So nothing it runs is refused for want of a script (which would reorder publications).
    let mut w = Ws::open(a.addr(), "");
    subscribe(&mut w, CHANNEL, None);
    let mut api = Api::connect(&a);
    for n in 1..=3 {
        publish_when_back(&mut api, n);
    }
    assert_eq!((1..=3).map(|_| next_offset(&mut w)).sum::<u64>(), 6);
    let Value::Bulk(Some(stats)) = redis.command(&["INFO", "commandstats"]) else {
        panic!("INFO commandstats");
    };
    let stats = String::from_utf8_lossy(&stats);
    let evalsha = stats
        .lines()
        .find(|l| l.starts_with("cmdstat_evalsha:"))
        .expect("EVALSHA ran");
    assert!(evalsha.contains("failed_calls=0"), "{evalsha}");
}

#[test]
fn scripts_flushed_under_publishers_keep_every_publishers_order() {
    let redis = Redis::start();
    let a = node(&redis, 1);
    let channels: Vec<String> = (0..4).map(|i| format!("chat:burst{i}")).collect();
    let mut w = Ws::open(a.addr(), "");
    for c in &channels {
        subscribe(&mut w, c, None);
    }
    const N: u64 = 400;
    let done = Arc::new(AtomicBool::new(false));
    let flusher = {
        let (done, port) = (Arc::clone(&done), redis.port);
        thread::spawn(move || {
            let mut flushes = 0u32;
            while !done.load(Ordering::Relaxed) {
                try_command_on(port, &["SCRIPT", "FLUSH"]).expect("a flush");
                flushes += 1;
                thread::sleep(Duration::from_millis(3));
            }
            flushes
        })
    };
    let publishers: Vec<_> = channels
        .iter()
        .map(|c| {
            let (c, gw) = (c.clone(), a.api_addr());
            thread::spawn(move || {
                let mut api = Api {
                    c: Client::connect(gw),
                };
                for n in 1..=N {
                    published(&mut api, &c, n);
                }
            })
        })
        .collect();
    for p in publishers {
        p.join().expect("a publisher");
    }
    let mut next: HashMap<String, u64> = HashMap::new();
    for _ in 0..N * channels.len() as u64 {
        let m = w.next();
        let c = m["channel"].as_str().expect("a channel").to_owned();
        let expected = next.entry(c).or_insert(0);
        *expected += 1;
        assert_eq!(m["offset"], *expected, "{m}");
        assert_eq!(m["data"], *expected, "in the publisher's order: {m}");
    }
    done.store(true, Ordering::Relaxed);
    let flushes = flusher.join().expect("the flusher");
    assert!(flushes > 1, "the scripts were flushed under the publishers");
}

#[test]
fn a_redis_still_loading_its_data_is_not_taken_for_connected() {
    let dir = std::env::temp_dir().join(format!("gw-history-rdb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory for the snapshot");
    let dir_arg = dir.to_str().expect("a UTF-8 temp dir").to_owned();
    let args = ["--dir", &dir_arg, "--dbfilename", "gw.rdb"];
    let redis = Redis::start_with(free_port(), &args);
    // A snapshot of 3,000 keys that Redis then loads at 1 ms a key, answering `-LOADING`
    // between every kilobyte it reads: 3 s of loading.
    let value = "v".repeat(100);
    let keys: Vec<String> = (0..3000)
        .flat_map(|k| [format!("k{k}"), value.clone()])
        .collect();
    let mut mset = vec!["MSET"];
    mset.extend(keys.iter().map(String::as_str));
    redis.command(&mset);
    redis.command(&["SAVE"]);
    let slow = [
        &args[..],
        &["--key-load-delay", "1000"],
        &["--loading-process-events-interval-bytes", "1024"],
    ]
    .concat();
    let redis = kill_and_restart(redis, &slow);
    let loading = || {
        let Value::Bulk(Some(text)) = redis.command(&["INFO", "persistence"]) else {
            panic!("INFO answer");
        };
        String::from_utf8_lossy(&text).contains("loading:1")
    };
    assert!(loading(), "Redis loads its snapshot");
    let a = gateway()
        .args(["--threads", "2", "--api-key", API_KEY])
        .args(["--broker", &redis.url(), "--node-id", "1"])
        .args(["--history", "chat:=100/10m"])
        .start();
    let mut api = Api::connect(&a);
    let mut checked = 0;
    while loading() {
        assert_eq!(counter(&a, "gateway_broker_connected"), 0);
        assert_eq!(publish(&mut api, CHANNEL, 1), 503);
        checked += 1;
        thread::sleep(Duration::from_millis(100));
    }
    assert!(checked > 0, "the node was checked while Redis loaded");
    wait_broker(&a);
    let mut w = Ws::open(a.addr(), "");
    assert_eq!(subscribe(&mut w, CHANNEL, None)["offset"], 0);
    published(&mut api, CHANNEL, 1);
    assert_eq!(
        next_offset(&mut w),
        1,
        "numbered and kept once Redis serves"
    );
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
}
