//! Many nodes through one broker, each suite run against both kinds: Redis (`--broker
//! redis://`) and core NATS (`--broker nats://`), real `redis-server`/`nats-server` and gateway
//! processes on loopback. Channels are subscribed on the broker only while a node has a
//! subscriber (`PUBSUB NUMSUB`, NATS `/subsz`), every publish reaches every subscriber on every node exactly
//! once and in per-publisher order, private messages, publishes to users and disconnects cross
//! nodes, the node list comes from heartbeats, and broker outages (a stall, a crash) are
//! survived: 503 and `degraded` meanwhile, local delivery on, delivery back within 5 s.

mod common;

use std::collections::BTreeMap;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::api::{json_of, text, Api, API_KEY};
use common::nats::Nats;
use common::redis::{Broker, Brokers, Cluster, Redis};
use common::ws::{next_offset, read_json, spread, subscribe, Ws};
use common::*;

/// How soon delivery must resume after the broker is back.
const RESUME: Duration = Duration::from_secs(5);

/// Which broker a suite runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Redis,
    Nats,
    /// A Redis Cluster of three masters (`--broker redis-cluster://`).
    Cluster,
}

/// A real broker server of either kind, and what the suites ask of it.
enum Server {
    Redis(Redis),
    Nats(Nats),
    Cluster(Cluster),
}

impl Server {
    fn start(kind: Kind) -> Server {
        match kind {
            Kind::Redis => Server::Redis(Redis::start()),
            Kind::Nats => Server::Nats(Nats::start()),
            Kind::Cluster => Server::Cluster(Cluster::start()),
        }
    }

    /// A server of `kind` on `port` (its monitoring port, for NATS, chosen here).
    fn start_on(kind: Kind, port: u16) -> Server {
        match kind {
            Kind::Redis => Server::Redis(Redis::start_on(port)),
            Kind::Nats => Server::Nats(Nats::start_on(port, free_port())),
            Kind::Cluster => unreachable!("cluster suites start their cluster with Cluster::start"),
        }
    }

    /// Kill the server (`kill -9`) and start a new one on the same ports.
    fn crash_and_restart(&mut self) {
        self.process().signal(Signal::SIGKILL);
        let _ = self.process().wait_exit(IO_TIMEOUT);
        thread::sleep(Duration::from_millis(300));
        *self = match self {
            Server::Redis(r) => Server::Redis(Redis::start_on(r.port)),
            Server::Nats(n) => Server::Nats(Nats::start_on(n.port, n.monitor_port)),
            Server::Cluster(_) => {
                unreachable!("cluster suites restart one master: Cluster::restart")
            }
        };
    }

    fn url(&self) -> String {
        match self {
            Server::Redis(r) => r.url(),
            Server::Nats(n) => n.url(),
            Server::Cluster(c) => c.url(),
        }
    }

    fn process(&mut self) -> &mut test_support::Process {
        match self {
            Server::Redis(r) => &mut r.process,
            Server::Nats(n) => &mut n.process,
            Server::Cluster(c) => &mut c.masters[0].process,
        }
    }

    /// Subscribers of broker channel `topic`: one per subscribed node.
    fn subscribers(&self, topic: &str) -> i64 {
        match self {
            Server::Redis(r) => r.numsub(topic),
            Server::Nats(n) => n.subscriptions(topic),
            Server::Cluster(c) => c.numsub(topic),
        }
    }

    /// Wait (bounded) until `topic` has `n` subscribers.
    fn wait_subscribers(&self, topic: &str, n: i64) {
        match self {
            Server::Redis(r) => r.wait_numsub(topic, n),
            Server::Nats(s) => s.wait_subscriptions(topic, n),
            Server::Cluster(c) => c.wait_numsub(topic, n),
        }
    }

    /// What the broker counts per publish: commands (Redis) or messages in (NATS).
    fn publishes(&self) -> u64 {
        match self {
            Server::Redis(r) => r.info_stat("total_commands_processed"),
            Server::Nats(n) => n.varz("in_msgs"),
            Server::Cluster(c) => c.info_stat("total_commands_processed"),
        }
    }

    /// Commands a node sends besides publishes in a few seconds (pings, slot maps): per
    /// server it has connections to.
    fn chatter(&self) -> u64 {
        match self {
            Server::Cluster(c) => 100 * c.masters.len() as u64,
            _ => 100,
        }
    }
}

impl Broker for Server {
    fn url(&self) -> String {
        Server::url(self)
    }
    fn wait_numsub(&self, topic: &str, n: i64) {
        self.wait_subscribers(topic, n)
    }
    fn wait_node(&self, id: u16) {
        self.wait_subscribers(&format!("gw:n:{id}"), 1)
    }
}

/// A gateway node on `broker` with id `id` (two shards), once it listens on the broker.
fn node(broker: &impl Broker, id: u16) -> Gateway {
    let gw = node_on(&broker.url(), id);
    broker.wait_node(id);
    // Every broker server answers (a cluster node's topic may be up before its other
    // masters are).
    let deadline = Instant::now() + IO_TIMEOUT;
    while health(&gw).0 != 200 {
        assert!(Instant::now() < deadline, "node {id}: {}", health(&gw).1);
        thread::sleep(Duration::from_millis(20));
    }
    gw
}

/// A gateway node on broker URL `url` with id `id` (two shards), started.
fn node_on(url: &str, id: u16) -> Gateway {
    node_with(url, id, &[])
}

/// [`node_on`] with `extra` flags.
fn node_with(url: &str, id: u16, extra: &[&str]) -> Gateway {
    gateway()
        .args([
            "--api-key",
            API_KEY,
            "--threads",
            "2",
            "--log-level",
            "info",
        ])
        .args(["--broker", url, "--node-id", &id.to_string()])
        .args(extra)
        .start()
}

/// The node bits of a connection id.
fn node_of(ws: &Ws) -> u64 {
    (ws.id.parse::<u64>().unwrap() >> 40) & 0xffff
}

fn channels_are_subscribed_on_demand_and_publishes_reach_every_node_once_in_order(kind: Kind) {
    let broker = Server::start(kind);
    let (a, b, c) = (node(&broker, 1), node(&broker, 2), node(&broker, 3));
    assert_eq!(broker.subscribers("gw:c:room"), 0, "no subscriber anywhere");

    // Subscribers on both shards of nodes 1 and 2; node 3 has none.
    let mut subs = spread(a.addr(), 2, "");
    subs.extend(spread(b.addr(), 2, ""));
    for s in &subs {
        assert!(
            [1, 2].contains(&node_of(s)),
            "ids name their node: {}",
            s.id
        );
    }
    subs[0].subscribe("room");
    broker.wait_subscribers("gw:c:room", 1);
    for s in &mut subs[1..] {
        s.subscribe("room");
    }
    broker.wait_subscribers("gw:c:room", 2);
    thread::sleep(Duration::from_millis(100));
    assert_eq!(
        broker.subscribers("gw:c:room"),
        2,
        "one subscription per node"
    );

    // Publishers: each node's API, a client on node 3 and a subscribed client on node 1.
    let mut apis: Vec<Api> = [&a, &b, &c].iter().map(|g| Api::connect(g)).collect();
    let mut carol = Ws::open(c.addr(), "?user=carol");
    const N: u64 = 25;
    let published = broker.publishes();
    for n in 0..N {
        for (i, api) in apis.iter_mut().enumerate() {
            let data = json!({"p": format!("api{}", i + 1), "n": n});
            api.accepted("/api/publish", json!({"channel":"room","data":data}));
        }
        carol.ok(json!({"op":"publish","channel":"room","data":{"p":"carol","n":n},"id":n}));
        let data = json!({"p":"dan","n":n});
        subs[0].send(json!({"op":"publish","channel":"room","data":data}));
    }
    let commands = broker.publishes() - published;
    assert!(
        commands < 5 * N + broker.chatter(),
        "one PUBLISH per publish (plus pings), not one per node or subscriber: {commands}"
    );

    let want: Vec<u64> = (0..N).collect();
    for (i, s) in subs.iter_mut().enumerate() {
        let extra = if i == 0 { N as usize } else { 0 }; // dan's replies
        let mut got = BTreeMap::new();
        let mut seen = 0;
        while seen < 5 * N as usize + extra {
            let m = s.next();
            seen += 1;
            if m["type"] == "reply" {
                continue;
            }
            assert_eq!(m["type"], "message", "{m}");
            let p = m["data"]["p"].as_str().unwrap().to_owned();
            got.entry(p)
                .or_insert_with(Vec::new)
                .push(m["data"]["n"].as_u64().unwrap());
        }
        for p in ["api1", "api2", "api3", "carol", "dan"] {
            assert_eq!(got.get(p), Some(&want), "subscriber {i} from {p}");
        }
        assert!(s.sync().is_empty(), "subscriber {i}: nothing twice");
    }

    // The last subscriber of a node leaving ends that node's subscription.
    let (on_a, on_b): (Vec<Ws>, Vec<Ws>) = subs.into_iter().partition(|s| node_of(s) == 1);
    for mut s in on_a {
        s.ok(json!({"op":"unsubscribe","channel":"room","id":"u"}));
    }
    broker.wait_subscribers("gw:c:room", 1);
    drop(on_b);
    broker.wait_subscribers("gw:c:room", 0);
    for g in [a, b, c].iter_mut() {
        g.assert_running();
    }
}

fn private_messages_users_and_disconnects_cross_nodes(kind: Kind) {
    let broker = Server::start(kind);
    let (a, b) = (node(&broker, 11), node(&broker, 12));
    let mut api_a = Api::connect(&a);
    let mut ann_a = Ws::open(a.addr(), "?user=ann");
    let mut ann_b = Ws::open(b.addr(), "?user=ann");
    let mut bob_b = Ws::open(b.addr(), "?user=bob");
    assert_eq!((node_of(&ann_a), node_of(&ann_b)), (11, 12));

    // The API of node 11 sends to a connection of node 12.
    api_a.accepted("/api/send", json!({"conn":bob_b.id,"data":{"hi":1}}));
    let m = bob_b.next();
    assert_eq!(
        m,
        json!({"type":"direct","from":null,"user":null,"data":{"hi":1}})
    );

    // A client of node 11 sends to one of node 12: the reply waits for node 12's answer.
    ann_a.ok(json!({"op":"send","conn":bob_b.id,"data":"psst","id":1}));
    let m = bob_b.next();
    assert_eq!(
        (m["type"].clone(), m["from"].clone()),
        (json!("direct"), json!(ann_a.id))
    );
    assert_eq!(
        (m["user"].clone(), m["data"].clone()),
        (json!("ann"), json!("psst"))
    );

    // A stale id of node 12 is unknown there: 404, answered by node 12.
    let mut gone = Ws::open(b.addr(), "");
    let gone_id = gone.id.clone();
    gone.c.close_cleanly();
    thread::sleep(Duration::from_millis(100));
    let r = api_a.post("/api/send", json!({"conn":gone_id,"data":1}));
    assert_eq!(r.status, 404, "{}", text(&r));
    assert_eq!(
        ann_a.err(json!({"op":"send","conn":gone_id,"data":1,"id":2})),
        "unknown_connection"
    );
    // A node that does not exist never answers: 404 after the answer timeout.
    let nowhere = ((1u64 << 40) * 999).to_string();
    let t = Instant::now();
    let r = api_a.post("/api/send", json!({"conn":nowhere,"data":1}));
    assert_eq!(r.status, 404, "{}", text(&r));
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "answered in bounded time"
    );

    // A publish to a user reaches its connections on both nodes, once each.
    api_a.accepted("/api/publish/user", json!({"user":"ann","data":{"u":1}}));
    for w in [&mut ann_a, &mut ann_b] {
        let m = w.next();
        assert_eq!(
            (m["type"].clone(), m["data"].clone()),
            (json!("direct"), json!({"u":1}))
        );
        assert!(w.sync().is_empty(), "once");
    }

    // Disconnect a connection of the other node, then a user everywhere.
    let mut carl = Ws::open(b.addr(), "");
    api_a.accepted(
        "/api/disconnect",
        json!({"conn":carl.id,"code":4321,"reason":"bye"}),
    );
    assert_eq!(carl.c.expect_close(4321), "bye");
    api_a.accepted("/api/disconnect", json!({"user":"ann","code":4403}));
    assert_eq!(ann_a.c.expect_close(4403), "disconnected");
    assert_eq!(ann_b.c.expect_close(4403), "disconnected");
    assert!(bob_b.sync().is_empty(), "bob stays");

    // The node list comes from heartbeats, in /api/stats.
    let r = api_a.get("/api/stats");
    assert_eq!(r.status, 200, "{}", text(&r));
    let stats = json_of(&r);
    assert_eq!(stats["broker"]["node"], 11, "{stats}");
    assert_eq!(stats["broker"]["nodes"], json!([11, 12]), "{stats}");
    assert_eq!(stats["broker"]["connected"], true, "{stats}");
    let named = match broker {
        Server::Redis(_) => "redis",
        Server::Nats(_) => "nats",
        Server::Cluster(_) => "redis-cluster",
    };
    assert_eq!(stats["broker"]["kind"], named, "{stats}");
}

/// Publish through `api` until `sub` gets it (the broker path is back), within [`RESUME`].
fn await_delivery(api: &mut Api, sub: &mut Ws, tag: &str) {
    await_delivery_on(api, sub, "room", tag)
}

/// [`await_delivery`] on `channel`.
fn await_delivery_on(api: &mut Api, sub: &mut Ws, channel: &str, tag: &str) {
    let deadline = Instant::now() + RESUME;
    let mut n = 0u64;
    loop {
        let r = api.post(
            "/api/publish",
            json!({"channel":channel,"data":{"p":tag,"n":n}}),
        );
        if r.status == 202 {
            sub.c.set_timeout(Duration::from_millis(300));
            let got = sub.c.try_read_frame();
            sub.c.set_timeout(IO_TIMEOUT);
            if let Ok(Some(f)) = got {
                let m: Value = serde_json::from_slice(&f.payload).unwrap();
                if m["data"]["p"] == tag {
                    // Drain what else this attempt sent.
                    sub.sync();
                    return;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "{tag}: no delivery within {RESUME:?}"
        );
        n += 1;
        thread::sleep(Duration::from_millis(50));
    }
}

fn health(gw: &Gateway) -> (u16, String) {
    let mut api = Api::connect(gw);
    let r = api.get("/healthz");
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

fn broker_stalls_and_crashes_are_survived(kind: Kind) {
    let mut broker = Server::start(kind);
    let (a, b) = (node(&broker, 21), node(&broker, 22));
    let mut api_a = Api::connect(&a);
    let mut far = Ws::open(b.addr(), "");
    far.subscribe("room");
    let mut near = Ws::open(a.addr(), "");
    near.subscribe("room");
    broker.wait_subscribers("gw:c:room", 2);
    await_delivery(&mut api_a, &mut far, "before");
    near.sync();
    assert_eq!(health(&a).0, 200);

    // A stall: the broker stops answering. Within about a second publishes that need it are
    // refused (503), clients get an error reply, health says degraded; local delivery goes on.
    broker.process().signal(Signal::SIGSTOP);
    let deadline = Instant::now() + Duration::from_secs(3);
    let refused = loop {
        let r = api_a.post(
            "/api/publish",
            json!({"channel":"room","data":{"p":"stall"}}),
        );
        if r.status == 503 {
            break r;
        }
        assert_eq!(r.status, 202, "{}", text(&r));
        assert!(
            Instant::now() < deadline,
            "no 503 while the broker is stopped"
        );
        thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(json_of(&refused)["error"]["code"], "broker_unavailable");
    assert_eq!(refused.header("Retry-After"), Some("1"));
    let (status, h) = health(&a);
    assert_eq!(status, 503, "{h}");
    assert!(h.starts_with("degraded"), "{h}");
    let mut pubc = Ws::open(a.addr(), "");
    assert_eq!(
        pubc.err(json!({"op":"publish","channel":"room","data":{"p":"local"},"id":1})),
        "broker_unavailable"
    );
    // ... but the subscriber on the same node got everything published meanwhile.
    let local: Vec<Value> = near.sync();
    assert!(
        local.iter().any(|m| m["data"]["p"] == "local"),
        "local delivery goes on: {local:?}"
    );
    broker.process().signal(Signal::SIGCONT);
    await_delivery(&mut api_a, &mut far, "after-stall");
    assert_eq!(health(&a).0, 200);

    // A crash and a restart on the same port: the nodes reconnect and subscribe again.
    broker.crash_and_restart();
    let started = Instant::now();
    broker.wait_subscribers("gw:c:room", 2);
    assert!(
        started.elapsed() < RESUME,
        "resubscribed in {:?}",
        started.elapsed()
    );
    await_delivery(&mut api_a, &mut far, "after-crash");

    let metrics = String::from_utf8_lossy(&api_a.get("/metrics").body).into_owned();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in /metrics"))
    };
    assert_eq!(value("gateway_broker_connected"), 1.0);
    assert!(
        value("gateway_broker_reconnects_total") >= 2.0,
        "stall and crash"
    );
    assert!(value("gateway_broker_resubscribes_total") >= 2.0);
    assert_eq!(value("gateway_broker_dropped_total"), 0.0);

    // A node killed while the others serve: its subscription goes, the rest carries on.
    let mut b = b;
    b.signal(Signal::SIGKILL);
    let _ = b.wait_exit(IO_TIMEOUT);
    broker.wait_subscribers("gw:c:room", 1);
    let c = node(&broker, 23);
    let mut far = Ws::open(c.addr(), "");
    far.subscribe("room");
    broker.wait_subscribers("gw:c:room", 2);
    await_delivery(&mut api_a, &mut far, "new-node");
    let mut a = a;
    a.assert_running();
}

/// `(conn, user)` of every member in a presence answer's `key` list, sorted.
fn members(v: &Value, key: &str) -> Vec<(String, Option<String>)> {
    let mut m: Vec<(String, Option<String>)> = v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} in {v}"))
        .iter()
        .map(|m| {
            let user = m["user"].as_str().map(str::to_owned);
            (m["conn"].as_str().unwrap().to_owned(), user)
        })
        .collect();
    m.sort();
    m
}

/// Wait (bounded) until `api`'s node lists `nodes` in `/api/stats`.
fn await_nodes(api: &mut Api, nodes: Value) {
    let deadline = Instant::now() + RESUME;
    loop {
        let stats = json_of(&api.get("/api/stats"));
        if stats["broker"]["nodes"] == nodes {
            return;
        }
        assert!(Instant::now() < deadline, "node list {stats}, want {nodes}");
        thread::sleep(Duration::from_millis(50));
    }
}

fn presence_lists_every_nodes_members_and_forgets_a_crashed_node(kind: Kind) {
    let broker = Server::start(kind);
    let (a, mut b) = (node(&broker, 31), node(&broker, 32));
    let mut api_a = Api::connect(&a);
    await_nodes(&mut api_a, json!([31, 32]));
    await_nodes(&mut Api::connect(&b), json!([31, 32]));
    let mut ann = Ws::open(a.addr(), "?user=ann");
    let mut bob = Ws::open(b.addr(), "?user=bob");
    let mut anon = Ws::open(b.addr(), "");
    ann.subscribe("lobby");
    broker.wait_subscribers("gw:c:lobby", 1);
    bob.subscribe("lobby");
    anon.subscribe("lobby");
    // Joins on node 32 reach ann's page on node 31 as events.
    let joins: Vec<(Value, Value)> = (0..2)
        .map(|_| {
            let m = read_json(&mut ann.c);
            assert_eq!(m["type"], "join", "{m}");
            (m["conn"].clone(), m["user"].clone())
        })
        .collect();
    assert_eq!(
        joins,
        vec![(json!(bob.id), json!("bob")), (json!(anon.id), Value::Null)]
    );
    let mut want = vec![
        (ann.id.clone(), Some("ann".to_owned())),
        (bob.id.clone(), Some("bob".to_owned())),
        (anon.id.clone(), None),
    ];
    want.sort();

    // The API of one node and a client of the other both see all three (a join reaches the
    // broker a moment after its reply).
    await_presence(&mut api_a, &want);
    let (r, _) = bob.request(json!({"op":"presence","channel":"lobby","id":"who"}));
    assert_eq!(members(&r, "members"), want, "{r}");

    // Leaving is seen on the other node too.
    anon.ok(json!({"op":"unsubscribe","channel":"lobby","id":"u"}));
    want.retain(|m| m.0 != anon.id);
    let m = read_json(&mut ann.c);
    assert_eq!(
        (m["type"].clone(), m["conn"].clone()),
        (json!("leave"), json!(anon.id))
    );
    await_presence(&mut api_a, &want);

    // On Redis, node 32's part lives in a hash that expires unless refreshed (NATS keeps
    // nothing: node 31 asked node 32).
    if let Server::Redis(redis) = &broker {
        let ttl = match redis.command(&["TTL", "gw:p:lobby:32"]) {
            gateway::broker::resp::Value::Int(t) => t,
            other => panic!("TTL answer {other:?}"),
        };
        assert!((1..=15).contains(&ttl), "presence hash TTL {ttl}");
    }
    // On a cluster, the hash carries the channel's partition tag: it lives on the master of
    // the channel's topic.
    if let Server::Cluster(cluster) = &broker {
        let key = gateway::broker::slots::presence_key("lobby", "32");
        let master = &cluster.masters[cluster.owner_of_channel("lobby")];
        let ttl = match master.command(&["TTL", &key]) {
            gateway::broker::resp::Value::Int(t) => t,
            other => panic!("TTL answer {other:?}"),
        };
        assert!((1..=15).contains(&ttl), "presence hash {key} TTL {ttl}");
    }

    // A crashed node's members leave the answers once it misses its heartbeats (3 s).
    b.signal(Signal::SIGKILL);
    let _ = b.wait_exit(IO_TIMEOUT);
    await_nodes(&mut api_a, json!([31]));
    let v = json_of(&api_a.get("/api/presence?channel=lobby"));
    assert_eq!(
        members(&v, "connections"),
        vec![(ann.id.clone(), Some("ann".to_owned()))],
        "{v}"
    );
}

/// Wait (bounded) until `/api/presence?channel=lobby` on `api`'s node lists `want`.
fn await_presence(api: &mut Api, want: &[(String, Option<String>)]) {
    await_presence_on(api, "lobby", want)
}

/// [`await_presence`] on `channel`.
fn await_presence_on(api: &mut Api, channel: &str, want: &[(String, Option<String>)]) {
    let deadline = Instant::now() + RESUME;
    loop {
        let v = json_of(&api.get(&format!("/api/presence?channel={channel}")));
        if members(&v, "connections") == want {
            return;
        }
        assert!(Instant::now() < deadline, "presence {v}, want {want:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn three_nodes_three_hundred_clients_thirty_channels(kind: Kind) {
    three_nodes(&Server::start(kind), || {});
}

/// The same over two Redis instances that the channels spread over.
#[test]
fn three_nodes_three_hundred_clients_thirty_channels_over_two_redis_instances() {
    let brokers = Brokers::start(2);
    three_nodes(&brokers, || {
        let holding: Vec<usize> = (0..30)
            .map(|ch| brokers.holder(&format!("gw:c:ch{ch}")))
            .collect();
        for i in 0..2 {
            let n = holding.iter().filter(|&&h| h == i).count();
            assert!(
                n >= 5,
                "instance {i} carries {n} of 30 channels: {holding:?}"
            );
        }
    });
}

/// 3 nodes, 300 clients on 30 channels: publishes through every node's API and from clients
/// reach every subscriber once and in per-publisher order; publishes to users and private
/// messages cross nodes; presence lists every node's members. `while_up` runs at the end, with
/// every client still subscribed.
fn three_nodes(broker: &impl Broker, while_up: impl FnOnce()) {
    const CLIENTS: usize = 300;
    const CHANNELS: usize = 30;
    const M: u64 = 3;
    let nodes = [node(broker, 41), node(broker, 42), node(broker, 43)];
    let mut apis: Vec<Api> = nodes.iter().map(Api::connect).collect();
    for api in &mut apis {
        await_nodes(api, json!([41, 42, 43]));
    }
    // Client i: on node (i / 30) % 3, channel i % 30, user u(i % 7): every channel has
    // subscribers on every node.
    let node_of_client = |i: usize| (i / CHANNELS) % 3;
    let mut clients: Vec<Ws> = (0..CLIENTS)
        .map(|i| {
            let query = format!("?user=u{}", i % 7);
            Ws::open(nodes[node_of_client(i)].addr(), &query)
        })
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.subscribe(&format!("ch{}", i % CHANNELS));
    }
    for ch in 0..CHANNELS {
        broker.wait_numsub(&format!("gw:c:ch{ch}"), 3);
    }

    // Publishers: every node's API on every channel, and one client per channel (on the node
    // (c % 3)) on its own channel.
    let publisher = |c: usize| CHANNELS * (c % 3) + c;
    for n in 0..M {
        for (k, api) in apis.iter_mut().enumerate() {
            for ch in 0..CHANNELS {
                let data = json!({"p": format!("api{k}"), "n": n});
                api.accepted(
                    "/api/publish",
                    json!({"channel":format!("ch{ch}"),"data":data}),
                );
            }
        }
        for ch in 0..CHANNELS {
            let i = publisher(ch);
            let data = json!({"p": format!("ws{i}"), "n": n});
            clients[i].send(json!({"op":"publish","channel":format!("ch{ch}"),"data":data}));
        }
    }
    // A publish to user u3 from node 41, and a private message from node 42's API to every
    // tenth client, wherever it is.
    apis[0].accepted("/api/publish/user", json!({"user":"u3","data":"to-u3"}));
    for i in (0..CLIENTS).step_by(10) {
        let conn = clients[i].id.clone();
        apis[1].accepted("/api/send", json!({"conn":conn,"data":{"to":i}}));
    }

    let want: Vec<u64> = (0..M).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let ch = i % CHANNELS;
        let is_publisher = publisher(ch) == i;
        let mut directs = Vec::new();
        let mut by: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        let messages = 4 * M as usize;
        let want_directs = usize::from(i % 7 == 3) + usize::from(i % 10 == 0);
        // A publisher also gets the reply to each of its publishes.
        let replies = if is_publisher { M as usize } else { 0 };
        let mut got = 0;
        while got < messages + want_directs + replies {
            let m = c.next();
            match m["type"].as_str() {
                Some("message") => {
                    assert_eq!(m["channel"], format!("ch{ch}"), "client {i}: {m}");
                    let p = m["data"]["p"].as_str().unwrap().to_owned();
                    by.entry(p)
                        .or_default()
                        .push(m["data"]["n"].as_u64().unwrap());
                }
                Some("direct") => directs.push(m["data"].clone()),
                Some("reply") if is_publisher => assert_eq!(m["ok"], true, "{m}"),
                _ => panic!("client {i}: unexpected {m}"),
            }
            got += 1;
        }
        assert!(c.sync().is_empty(), "client {i}: nothing more");
        let ws = format!("ws{}", publisher(ch));
        for p in ["api0", "api1", "api2", ws.as_str()] {
            assert_eq!(by.get(p), Some(&want), "client {i} from {p}");
        }
        assert_eq!(by.len(), 4, "client {i}: {by:?}");
        let mut want_d = Vec::new();
        if i % 7 == 3 {
            want_d.push(json!("to-u3"));
        }
        if i % 10 == 0 {
            want_d.push(json!({"to": i}));
        }
        directs.sort_by_key(|d| d.to_string());
        want_d.sort_by_key(|d| d.to_string());
        assert_eq!(directs, want_d, "client {i}");
    }

    // Presence of a channel lists its ten members, on all three nodes.
    let mut want_members: Vec<(String, Option<String>)> = (0..CLIENTS)
        .filter(|i| i % CHANNELS == 5)
        .map(|i| (clients[i].id.clone(), Some(format!("u{}", i % 7))))
        .collect();
    want_members.sort();
    let v = json_of(&apis[2].get("/api/presence?channel=ch5"));
    assert_eq!(members(&v, "connections"), want_members, "{v}");

    // The channel list counts every node's subscribers, whichever node is asked.
    let mut want_list: Vec<Value> = (0..CHANNELS)
        .map(|ch| json!({"channel":format!("ch{ch}"),"subscribers":CLIENTS / CHANNELS}))
        .collect();
    want_list.sort_by_key(|c| c["channel"].as_str().unwrap_or_default().to_owned());
    for api in &mut apis {
        let v = json_of(&api.get("/api/channels"));
        assert_eq!(v["channels"], json!(want_list), "{v}");
    }
    while_up();
}

/// A node whose broker is not there yet starts and serves its own clients (degraded), and joins
/// the others once the broker comes up; a bad `--broker` is refused with exit code 2.
fn a_node_starts_without_its_broker_and_joins_when_it_comes_up(kind: Kind) {
    let port = free_port();
    let scheme = match kind {
        Kind::Redis => "redis",
        Kind::Nats => "nats",
        Kind::Cluster => unreachable!("not run on a cluster"),
    };
    let url = format!("{scheme}://127.0.0.1:{port}");
    let a = gateway()
        .args([
            "--api-key",
            API_KEY,
            "--threads",
            "2",
            "--broker",
            &url,
            "--node-id",
            "51",
        ])
        .start();
    let mut api = Api::connect(&a);
    assert_eq!(health(&a).0, 503, "degraded without its broker");
    let mut near = Ws::open(a.addr(), "");
    near.subscribe("room");
    let r = api.post(
        "/api/publish",
        json!({"channel":"room","data":{"p":"local"}}),
    );
    assert_eq!(r.status, 503, "{}", text(&r));
    let m = near.next();
    assert_eq!(m["data"]["p"], "local", "served locally all the same: {m}");

    let broker = Server::start_on(kind, port);
    let b = node(&broker, 52);
    let mut far = Ws::open(b.addr(), "");
    far.subscribe("room");
    broker.wait_subscribers("gw:c:room", 2);
    await_delivery(&mut api, &mut far, "joined");
    assert_eq!(health(&a).0, 200);

    for bad in [
        "kafka://127.0.0.1:9092",
        "redis://",
        "redis://h:99999",
        "nats://",
        "nats://u:s3cret%zz@127.0.0.1:4222",
        "redis-cluster://",
        "redis-cluster://127.0.0.1:7000,127.0.0.1:7000",
    ] {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"));
        cmd.args([
            "--broker",
            bad,
            "--listen",
            "127.0.0.1:0",
            "--api-listen",
            "127.0.0.1:0",
        ]);
        let (code, _, stderr) = run_bounded(cmd, IO_TIMEOUT);
        assert_eq!(code, Some(2), "{bad}: {stderr}");
        assert!(stderr.contains("--broker"), "{bad}: {stderr}");
        assert!(
            !stderr.contains("s3cret"),
            "a secret is never printed: {stderr}"
        );
    }
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"));
    cmd.args(["--node-id", "70000", "--listen", "127.0.0.1:0"]);
    let (code, _, stderr) = run_bounded(cmd, IO_TIMEOUT);
    assert_eq!(code, Some(2), "{stderr}");
}

/// NATS closes a connection that publishes more than its `max_payload`: a node refuses such a
/// publish with a clear error (413 from the API, an error reply on `/ws`) after serving its own
/// subscribers, and everything else keeps flowing on the same connection.
#[test]
fn on_nats_a_publish_over_max_payload_is_refused_and_the_connection_stays() {
    let broker = Server::Nats(Nats::start_with_config("max_payload: 4096\n"));
    let (a, b) = (node(&broker, 61), node(&broker, 62));
    let mut api_a = Api::connect(&a);
    let mut far = Ws::open(b.addr(), "");
    far.subscribe("room");
    broker.wait_subscribers("gw:c:room", 1);
    let mut near = Ws::open(a.addr(), "");
    near.subscribe("room");
    let big = "x".repeat(6000);
    let r = api_a.post(
        "/api/publish",
        json!({"channel":"room","data":{"p":"big","pad":big}}),
    );
    assert_eq!(r.status, 413, "{}", text(&r));
    assert_eq!(json_of(&r)["error"]["code"], "too_large_for_broker");
    assert_eq!(near.next()["data"]["p"], "big", "served on its own node");
    let mut client = Ws::open(a.addr(), "");
    assert_eq!(
        client.err(json!({"op":"publish","channel":"room","data":{"p":"big2","pad":big},"id":1})),
        "too_large_for_broker"
    );
    api_a.accepted(
        "/api/publish",
        json!({"channel":"room","data":{"p":"small"}}),
    );
    let m = far.next();
    assert_eq!(m["data"]["p"], "small", "{m}");
    assert!(far.sync().is_empty());
    let metrics = String::from_utf8_lossy(&api_a.get("/metrics").body).into_owned();
    assert!(
        metrics
            .lines()
            .any(|l| l == "gateway_broker_reconnects_total 0"),
        "the connection stayed: {metrics}"
    );
}

/// A NATS server that requires credentials: nodes whose `--broker` URL carries the right user
/// and password (with `%`-escaped characters) or token cross-deliver; a node with a wrong password
/// is turned away, says why in its log without printing the secret, reports itself degraded, and
/// answers publishes that need the broker 503 while serving its own subscribers.
#[test]
fn on_nats_credentials_in_the_url_are_used_and_a_refusal_is_clear() {
    for (config, good, bad) in [
        (
            "authorization { user: gw, password: \"p@ss:w0rd\" }\n",
            "gw:p%40ss%3Aw0rd",
            "gw:wr0ng-secret",
        ),
        (
            "authorization { token: \"s3cret-token\" }\n",
            "s3cret-token",
            "wr0ng-secret",
        ),
    ] {
        let nats = Nats::start_with_config(config);
        let port = nats.port;
        let broker = Server::Nats(nats);
        let url = |creds: &str| format!("nats://{creds}@127.0.0.1:{port}");
        let with = |creds: &str, id: u16| node_on(&url(creds), id);
        let (a, b) = (with(good, 71), with(good, 72));
        let (_api_a, mut far) = crossing(&broker, &a, &b);

        let mut refused = with(bad, 73);
        assert_turned_away(
            &mut refused,
            "refused the node's credentials",
            "nats",
            &mut far,
        );
        assert_eq!(health(&a).0, 200);
    }
}

/// Nodes `a` (id 71) and `b` (72) on `broker` are in, and a publish through `a`'s API reaches
/// a subscriber of `room` on `b`: that API and that subscriber.
fn crossing(broker: &Server, a: &Gateway, b: &Gateway) -> (Api, Ws) {
    broker.wait_node(71);
    broker.wait_node(72);
    let mut far = Ws::open(b.addr(), "");
    far.subscribe("room");
    broker.wait_subscribers("gw:c:room", 1);
    let mut api_a = Api::connect(a);
    await_delivery(&mut api_a, &mut far, "authorized");
    (api_a, far)
}

/// `node`'s log has a warning that its broker turned it away, giving `why`.
fn assert_warned_away(node: &Gateway, why: &str) {
    let log = node.stderr();
    assert!(
        log.lines()
            .any(|l| l.contains(why) && l.contains("WARN") && l.contains("turned the node away")),
        "{log}"
    );
}

/// Node `refused`, whose broker turned it away for its credentials, logs a line containing
/// `why` without its secret (which contains `wr0ng`), counts as down (`/healthz` and publishes
/// that need the broker 503, `/api/stats` naming broker `kind` as down), serves its own
/// subscribers, and nothing of it reaches `far` on another node.
fn assert_turned_away(refused: &mut Gateway, why: &str, kind: &str, far: &mut Ws) {
    let mut api_r = Api::connect(refused);
    let mut near = Ws::open(refused.addr(), "");
    near.subscribe("room");
    let deadline = Instant::now() + RESUME;
    while !refused.stderr().contains(why) {
        assert!(
            Instant::now() < deadline,
            "no refusal logged: {}",
            refused.stderr()
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert!(!refused.stderr().contains("wr0ng"), "{}", refused.stderr());
    assert_eq!(health(refused).0, 503, "{:?}", health(refused));
    let r = api_r.post("/api/publish", json!({"channel":"room","data":{"p":"x"}}));
    assert_eq!(r.status, 503, "{}", text(&r));
    assert_eq!(near.next()["data"]["p"], "x", "served on its own node");
    let stats = json_of(&api_r.get("/api/stats"));
    assert_eq!(stats["broker"]["kind"], kind, "{stats}");
    assert_eq!(stats["broker"]["state"], "down", "{stats}");
    assert!(
        far.sync().is_empty(),
        "nothing crossed from the refused node"
    );
    refused.assert_running();
}

/// A Redis that requires credentials: the default user's password (`requirepass`, with
/// `%`-escaped characters in the URL) and an ACL user granted only the `gw:` keys and channels
/// (as the docs advise) each let a node in; the two nodes cross-deliver and share a channel's
/// history (streams and scripts under that grant). A node with a wrong password and a node with
/// none are turned away, each says why in its log as a warning without printing a secret,
/// reports itself degraded, and answers publishes that need the broker 503 while serving its
/// own subscribers.
#[test]
fn on_redis_credentials_in_the_url_are_used_and_a_refusal_is_clear() {
    let acl = [
        "--user", "gw", "on", ">gw-pass", "~gw:*", "~{gw:*", "&gw:*", "+@all",
    ];
    let redis = Redis::start_as(free_port(), &acl, Some("p@ss:w0rd"));
    let port = redis.port;
    let broker = Server::Redis(redis);
    let with = |creds: &str, id: u16| {
        let url = format!("redis://{creds}127.0.0.1:{port}");
        node_with(&url, id, &["--history", "chat:=100/10m"])
    };
    let (a, b) = (with(":p%40ss%3Aw0rd@", 71), with("gw:gw-pass@", 72));
    let (mut api_a, mut far) = crossing(&broker, &a, &b);
    assert_eq!(health(&a).0, 200);
    assert_eq!(health(&b).0, 200);
    assert_history_is_shared(&a, &b);
    for node in [&a, &b] {
        assert!(!node.stderr().contains("p@ss"), "{}", node.stderr());
        assert!(!node.stderr().contains("gw-pass"), "{}", node.stderr());
    }

    for (creds, id, why) in [
        (
            "gw:wr0ng-secret@",
            73,
            "Redis refused the node's credentials",
        ),
        ("", 74, "Redis asks for a password and --broker has none"),
    ] {
        let mut refused = with(creds, id);
        assert_turned_away(&mut refused, why, "redis", &mut far);
        assert_warned_away(&refused, why);
    }
    assert_crosses(&mut api_a, &mut far, "room");
}

/// A Redis that speaks TLS (`rediss://`, a password too): two nodes that trust its CA
/// (`--broker-ca`) cross-deliver, a 200 KB message included (more than rustls buffers at once),
/// and recover a channel's history through each other. Nodes that cannot trust it are turned
/// away with a warning naming rustls's reason, answer 503 and serve their own subscribers: a
/// certificate from another CA, a certificate that does not name the address dialled, and a
/// server that does not speak TLS at all.
#[test]
fn on_redis_over_tls_the_certificate_is_verified_and_every_failure_is_clear() {
    let (pki, stranger) = (test_support::TestCa::new(), test_support::TestCa::new());
    let tls_port = free_port();
    #[rustfmt::skip]
    let extra = [
        "--bind", "127.0.0.1", "127.0.0.2",
        "--tls-port", &tls_port.to_string(),
        "--tls-cert-file", &pki.path_str("leaf.pem"),
        "--tls-key-file", &pki.path_str("leaf.key"),
        "--tls-ca-cert-file", &pki.path_str("ca.pem"),
        "--tls-auth-clients", "no",
    ];
    let redis = Redis::start_as(free_port(), &extra, Some("tl5-pw"));
    let plain_port = redis.port;
    let broker = Server::Redis(redis);
    let with = |host: &str, port: u16, ca: &test_support::TestCa, id: u16| {
        let url = format!("rediss://:tl5-pw@{host}:{port}");
        let ca = ca.path_str("ca.pem");
        node_with(
            &url,
            id,
            &["--broker-ca", &ca, "--history", "chat:=100/10m"],
        )
    };
    let a = with("127.0.0.1", tls_port, &pki, 71);
    let b = with("localhost", tls_port, &pki, 72);
    let (mut api_a, mut far) = crossing(&broker, &a, &b);
    let big = "x".repeat(200_000);
    api_a.accepted("/api/publish", json!({"channel":"room","data":big}));
    assert_eq!(far.next()["data"].as_str().map(str::len), Some(big.len()));
    assert_history_is_shared(&a, &b);

    for (host, port, ca, id, why) in [
        (
            "127.0.0.1",
            tls_port,
            &stranger,
            73,
            "invalid peer certificate: BadSignature",
        ),
        (
            "127.0.0.2",
            tls_port,
            &pki,
            74,
            "certificate not valid for name",
        ),
        (
            "127.0.0.1",
            plain_port,
            &pki,
            75,
            "no answer to the handshake",
        ),
    ] {
        let mut refused = with(host, port, ca, id);
        assert_turned_away(&mut refused, why, "redis", &mut far);
        assert_warned_away(&refused, why);
    }
    assert_crosses(&mut api_a, &mut far, "room");
}

/// A NATS server that requires TLS: two nodes with `tls://` that trust its CA cross-deliver, a
/// 200 KB message included; a node with `nats://`, one trusting another CA, and one with
/// `tls://` against a server without TLS are each turned away with a warning saying which,
/// answer 503 and serve their own subscribers.
#[test]
fn on_nats_over_tls_the_certificate_is_verified_and_every_failure_is_clear() {
    let (pki, stranger) = (test_support::TestCa::new(), test_support::TestCa::new());
    let config = format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\nmax_payload: 1048576\n",
        pki.path_str("leaf.pem"),
        pki.path_str("leaf.key")
    );
    let nats = Nats::start_with_config(&config);
    let plain = Nats::start();
    let port = nats.port;
    let broker = Server::Nats(nats);
    let with = |scheme: &str, port: u16, ca: &test_support::TestCa, id: u16| {
        let url = format!("{scheme}://127.0.0.1:{port}");
        node_with(&url, id, &["--broker-ca", &ca.path_str("ca.pem")])
    };
    let (a, b) = (with("tls", port, &pki, 71), with("tls", port, &pki, 72));
    let (mut api_a, mut far) = crossing(&broker, &a, &b);
    let big = "x".repeat(200_000);
    api_a.accepted("/api/publish", json!({"channel":"room","data":big}));
    assert_eq!(far.next()["data"].as_str().map(str::len), Some(big.len()));

    for (mut refused, why) in [
        (with("tls", port, &stranger, 73), "invalid peer certificate"),
        (
            node_on(&format!("nats://127.0.0.1:{port}"), 74),
            "the server requires TLS",
        ),
        (
            with("tls", plain.port, &pki, 75),
            "the server does not offer TLS",
        ),
    ] {
        assert_turned_away(&mut refused, why, "nats", &mut far);
        assert_warned_away(&refused, why);
    }
    assert_crosses(&mut api_a, &mut far, "room");
}

/// History kept in Redis by node `a` (`--history chat:=...`) is recovered through node `b`.
fn assert_history_is_shared(a: &Gateway, b: &Gateway) {
    let mut api_a = Api::connect(a);
    let mut live = Ws::open(b.addr(), "");
    let epoch = subscribe(&mut live, "chat:x", None)["epoch"].clone();
    for n in 1..=3 {
        api_a.accepted("/api/publish", json!({"channel":"chat:x","data":n}));
    }
    let got: Vec<u64> = (0..3).map(|_| next_offset(&mut live)).collect();
    assert_eq!(got, [1, 2, 3]);
    let mut back = Ws::open(a.addr(), "");
    let reply = subscribe(&mut back, "chat:x", Some(json!({"offset":1,"epoch":epoch})));
    assert_eq!(reply["recovered"], true, "{reply}");
    let got: Vec<u64> = (0..2).map(|_| next_offset(&mut back)).collect();
    assert_eq!(got, [2, 3]);
}

/// A Redis Cluster whose masters require a password, reached through one seed: the node
/// authenticates to the seed and to every master it learns from the slot map, so channels on
/// every master cross between two nodes.
#[test]
fn on_cluster_the_password_reaches_every_master() {
    let cluster = Cluster::start_as(Some("clu5ter-pw"));
    let seed = format!(
        "redis-cluster://:clu5ter-pw@127.0.0.1:{}",
        cluster.masters[0].port
    );
    let (a, b) = (node_on(&seed, 71), node_on(&seed, 72));
    cluster.wait_node(71);
    cluster.wait_node(72);
    let mut api_a = Api::connect(&a);
    let mut far = Ws::open(b.addr(), "");
    for i in 0..3 {
        let channel = (0..200)
            .map(|n| format!("c{n}"))
            .find(|c| cluster.owner_of_channel(c) == i)
            .unwrap_or_else(|| panic!("no channel of 200 on master {i}"));
        far.subscribe(&channel);
        cluster.wait_numsub(&format!("gw:c:{channel}"), 1);
        await_delivery_on(&mut api_a, &mut far, &channel, "authorized");
    }
    let healthy = Instant::now() + RESUME;
    while health(&a).0 != 200 {
        assert!(Instant::now() < healthy, "healthy: {}", health(&a).1);
        thread::sleep(Duration::from_millis(50));
    }
    assert!(!a.stderr().contains("clu5ter-pw"), "{}", a.stderr());
}

/// One `#[test]` per suite and broker kind: `on_redis::SUITE` and `on_nats::SUITE`.
macro_rules! suites {
    ($($suite:ident),+ $(,)?) => {
        /// Each suite above, against Redis.
        mod on_redis {
            $(
                #[test]
                fn $suite() {
                    super::$suite(super::Kind::Redis);
                }
            )+
        }

        /// Each suite above, against core NATS.
        mod on_nats {
            $(
                #[test]
                fn $suite() {
                    super::$suite(super::Kind::Nats);
                }
            )+
        }
    };
}

suites!(
    channels_are_subscribed_on_demand_and_publishes_reach_every_node_once_in_order,
    private_messages_users_and_disconnects_cross_nodes,
    broker_stalls_and_crashes_are_survived,
    presence_lists_every_nodes_members_and_forgets_a_crashed_node,
    three_nodes_three_hundred_clients_thirty_channels,
    a_node_starts_without_its_broker_and_joins_when_it_comes_up,
);

/// The suites above that make sense on a Redis Cluster, as `on_cluster::SUITE`. Left out by
/// design: `broker_stalls_and_crashes_are_survived` and
/// `a_node_starts_without_its_broker_and_joins_when_it_comes_up` stop, crash or start the one
/// broker server; a cluster loses and regains one master at a time, which
/// `on_cluster_losing_one_master_affects_only_its_channels` covers.
macro_rules! cluster_suites {
    ($($suite:ident),+ $(,)?) => {
        /// Each suite above, against a Redis Cluster of three masters.
        mod on_cluster {
            $(
                #[test]
                fn $suite() {
                    super::$suite(super::Kind::Cluster);
                }
            )+
        }
    };
}

cluster_suites!(
    channels_are_subscribed_on_demand_and_publishes_reach_every_node_once_in_order,
    private_messages_users_and_disconnects_cross_nodes,
    presence_lists_every_nodes_members_and_forgets_a_crashed_node,
    three_nodes_three_hundred_clients_thirty_channels,
);
/// Two Redis instances, one killed (`kill -9`) and restarted: only the channels hashed to it
/// answer 503 meanwhile, and soon (the loss shows at once as a closed connection); the other
/// instance's channels, private messages and user publishes keep crossing nodes; once it is
/// back, its channels deliver again within [`RESUME`] and no node crashed.
#[test]
fn losing_one_of_two_redis_instances_affects_only_its_channels() {
    let mut brokers = Brokers::start(2);
    let (mut a, mut b) = (node(&brokers, 61), node(&brokers, 62));
    let mut api_a = Api::connect(&a);
    await_nodes(&mut api_a, json!([61, 62]));

    // A far subscriber of twelve channels; the first channel on each instance is the one used.
    let mut far = Ws::open(b.addr(), "?user=fay");
    let names: Vec<String> = (0..12).map(|i| format!("c{i}")).collect();
    for c in &names {
        far.subscribe(c);
        brokers.wait_numsub(&format!("gw:c:{c}"), 1);
    }
    let on = |i: usize| -> String {
        names
            .iter()
            .find(|c| brokers.holder(&format!("gw:c:{c}")) == i)
            .unwrap_or_else(|| panic!("no channel of twelve on instance {i}"))
            .clone()
    };
    let (lost, kept) = (on(0), on(1));
    await_delivery_on(&mut api_a, &mut far, &lost, "before");
    await_delivery_on(&mut api_a, &mut far, &kept, "before");

    let port = brokers.instances[0].port;
    brokers.instances[0].process.signal(Signal::SIGKILL);
    let killed = Instant::now();
    let _ = brokers.instances[0].process.wait_exit(IO_TIMEOUT);
    await_refusal(&mut api_a, &lost, killed + Duration::from_secs(2));
    let mut client = Ws::open(a.addr(), "");
    assert_eq!(
        client.err(json!({"op":"publish","channel":lost,"data":1,"id":1})),
        "broker_unavailable"
    );

    // The other instance's channel still crosses nodes, as do node-level messages.
    assert_crosses(&mut api_a, &mut far, &kept);
    api_a.accepted("/api/send", json!({"conn":far.id,"data":"direct"}));
    assert_eq!(far.next()["data"], "direct");
    api_a.accepted("/api/publish/user", json!({"user":"fay","data":"user"}));
    assert_eq!(far.next()["data"], "user");
    let (status, h) = health(&a);
    assert_eq!(status, 503, "monitoring learns of the lost instance: {h}");
    assert_eq!(metric(&mut api_a, "gateway_broker_instances_down"), 1.0);
    assert_eq!(metric(&mut api_a, "gateway_broker_connected"), 1.0);
    assert_eq!(
        json_of(&api_a.get("/api/stats"))["broker"]["nodes"],
        json!([61, 62]),
        "heartbeats go through every instance"
    );

    brokers.instances[0] = Redis::start_on(port);
    let back = Instant::now();
    brokers.instances[0].wait_numsub(&format!("gw:c:{lost}"), 1);
    assert!(
        back.elapsed() < RESUME,
        "resubscribed in {:?}",
        back.elapsed()
    );
    await_delivery_on(&mut api_a, &mut far, &lost, "after");
    assert_eq!(health(&a).0, 200);
    assert_eq!(metric(&mut api_a, "gateway_broker_instances_down"), 0.0);
    a.assert_running();
    b.assert_running();
}

/// Publish on `channel` through `api` until its node refuses (503 `broker_unavailable`), which
/// it must by `deadline`.
fn await_refusal(api: &mut Api, channel: &str, deadline: Instant) {
    let refused = loop {
        let r = api.post(
            "/api/publish",
            json!({"channel":channel,"data":{"p":"lost"}}),
        );
        if r.status == 503 {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "no 503 in time for {channel}, whose broker server is dead"
        );
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(json_of(&refused)["error"]["code"], "broker_unavailable");
}

/// Five publishes on `channel` through `api` reach `far` (on another node), in order.
fn assert_crosses(api: &mut Api, far: &mut Ws, channel: &str) {
    far.sync();
    for n in 0..5 {
        api.accepted(
            "/api/publish",
            json!({"channel":channel,"data":{"p":"kept","n":n}}),
        );
    }
    for n in 0..5 {
        let m = far.next();
        assert_eq!(
            (m["data"]["p"].as_str(), m["data"]["n"].as_u64()),
            (Some("kept"), Some(n))
        );
    }
}

/// The value of an unlabelled metric in `api`'s node's `/metrics`.
fn metric(api: &mut Api, name: &str) -> f64 {
    let text = String::from_utf8_lossy(&api.get("/metrics").body).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in /metrics"))
}

/// A Redis Cluster of three masters: the partitions' tags hash where the gateway says on a real
/// cluster (`CLUSTER KEYSLOT`); one master killed (`kill -9`) and restarted from its
/// `nodes.conf`: only the channels on its slots answer 503 meanwhile, at once; the other
/// masters' channels keep crossing nodes; once it is back, its channels deliver again within
/// [`RESUME`], and no node crashed.
#[test]
fn on_cluster_losing_one_master_affects_only_its_channels() {
    use gateway::broker::slots;
    let mut cluster = Cluster::start();
    for p in 0..slots::PARTITIONS {
        let topic = slots::partition_topic(p);
        let slot = cluster.masters[0].command(&["CLUSTER", "KEYSLOT", &topic]);
        let want = i64::from(slots::partition_slot(p));
        assert_eq!(
            slot,
            gateway::broker::resp::Value::Int(want),
            "partition {p}: {topic}"
        );
    }

    let (mut a, mut b) = (node(&cluster, 71), node(&cluster, 72));
    let mut api_a = Api::connect(&a);
    await_nodes(&mut api_a, json!([71, 72]));
    // A channel on each master; the control topic's master is kept alive.
    let all = cluster.owner(slots::key_slot(b"gw:all"));
    let on = |i: usize| -> String {
        (0..200)
            .map(|n| format!("c{n}"))
            .find(|c| cluster.owner_of_channel(c) == i)
            .unwrap_or_else(|| panic!("no channel of 200 on master {i}"))
    };
    let victim = (all + 1) % 3;
    let (lost, kept) = (on(victim), on(all));
    let mut far = Ws::open(b.addr(), "?user=fay");
    for c in [&lost, &kept] {
        far.subscribe(c);
        cluster.wait_numsub(&format!("gw:c:{c}"), 1);
    }
    await_delivery_on(&mut api_a, &mut far, &lost, "before");
    await_delivery_on(&mut api_a, &mut far, &kept, "before");

    cluster.kill(victim);
    let killed = Instant::now();
    await_refusal(&mut api_a, &lost, killed + Duration::from_secs(1));

    assert_crosses(&mut api_a, &mut far, &kept);
    api_a.accepted("/api/publish/user", json!({"user":"fay","data":"user"}));
    assert_eq!(far.next()["data"], "user");
    let (status, h) = health(&a);
    assert_eq!(status, 503, "monitoring learns of the lost master: {h}");
    assert_eq!(metric(&mut api_a, "gateway_broker_instances_down"), 1.0);
    assert_eq!(metric(&mut api_a, "gateway_broker_connected"), 1.0);

    cluster.restart(victim);
    let back = Instant::now();
    cluster.wait_numsub(&format!("gw:c:{lost}"), 1);
    assert!(
        back.elapsed() < RESUME,
        "resubscribed in {:?}",
        back.elapsed()
    );
    await_delivery_on(&mut api_a, &mut far, &lost, "after");
    let healthy = Instant::now() + RESUME;
    while health(&a).0 != 200 {
        assert!(Instant::now() < healthy, "healthy again: {}", health(&a).1);
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(metric(&mut api_a, "gateway_broker_instances_down"), 0.0);
    let mut api_b = Api::connect(&b);
    assert!(
        metric(&mut api_b, "gateway_broker_resubscribes_total") >= 1.0,
        "the far node subscribed again to the lost channel's partition"
    );
    a.assert_running();
    b.assert_running();
}

/// A slot migration on a Redis Cluster: the slot of a channel's partition moves to another
/// master (`IMPORTING`/`MIGRATING`, the presence keys `MIGRATE`d, `SETSLOT NODE`), and the old
/// master ends the node's sharded subscription (`sunsubscribe`). The node subscribes again on
/// the new master, publishes follow the slot (`-MOVED`, then the new map), and delivery goes on.
/// A member who joins while the slot is half moved lands in the presence hash on the new master
/// (`-ASK`, or `-MOVED` if the move completes first, followed).
#[test]
fn on_cluster_a_migrated_partition_is_followed_to_its_new_master() {
    use gateway::broker::slots;
    let cluster = Cluster::start();
    let (a, b) = (node(&cluster, 81), node(&cluster, 82));
    let mut api_a = Api::connect(&a);
    let mut far = Ws::open(b.addr(), "?user=mo");
    far.subscribe("moving");
    cluster.wait_numsub("gw:c:moving", 1);
    await_delivery_on(&mut api_a, &mut far, "moving", "before");

    let slot = slots::partition_slot(slots::partition_of("moving"));
    let from = cluster.owner(slot);
    let to = (from + 1) % 3;
    let mut near = Ws::open(a.addr(), "?user=ann");
    cluster.migrate(slot, to, || {
        near.subscribe("moving");
        cluster.wait_numsub("gw:c:moving", 2);
    });
    assert_eq!(cluster.owner(slot), to);
    let moved = Instant::now();
    while cluster.numsub_on(to, "gw:c:moving") != 2 || cluster.numsub_on(from, "gw:c:moving") != 0 {
        assert!(
            moved.elapsed() < RESUME,
            "both nodes' subscriptions follow the slot to master {to}"
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert_crosses(&mut api_a, &mut far, "moving");
    // Presence moved with the slot: the far member's hash was migrated, the near one's was
    // written through the redirection.
    let mut want = vec![
        (far.id.clone(), Some("mo".to_owned())),
        (near.id.clone(), Some("ann".to_owned())),
    ];
    want.sort();
    let mut api_b = Api::connect(&b);
    // Written through the redirection: the near node's write may still be on its way.
    await_presence_on(&mut api_b, "moving", &want);
    assert!(metric(&mut api_b, "gateway_broker_resubscribes_total") >= 1.0);
    assert_eq!(metric(&mut api_b, "gateway_broker_instances_down"), 0.0);
}

/// A cluster that stops serving: with `cluster-require-full-coverage yes` and
/// `cluster-allow-pubsubshard-when-down no`, losing one master makes the others answer
/// `-CLUSTERDOWN`. A node retries, answers 503 within a second for the channels of the masters
/// still running too, says it is degraded, and delivers again once the cluster is whole.
#[test]
fn on_cluster_a_cluster_that_refuses_commands_answers_503_and_recovers() {
    use gateway::broker::slots;
    let mut cluster = Cluster::start();
    for m in &cluster.masters {
        for (k, v) in [
            ("cluster-require-full-coverage", "yes"),
            ("cluster-allow-pubsubshard-when-down", "no"),
        ] {
            m.command(&["CONFIG", "SET", k, v]);
        }
    }
    let (a, b) = (node(&cluster, 91), node(&cluster, 92));
    let mut api_a = Api::connect(&a);
    let all = cluster.owner(slots::key_slot(b"gw:all"));
    let kept = (0..200)
        .map(|n| format!("k{n}"))
        .find(|c| cluster.owner_of_channel(c) == all)
        .expect("a channel on the control topic's master");
    let mut far = Ws::open(b.addr(), "");
    far.subscribe(&kept);
    cluster.wait_numsub(&format!("gw:c:{kept}"), 1);
    await_delivery_on(&mut api_a, &mut far, &kept, "before");

    let victim = (all + 1) % 3;
    cluster.kill(victim);
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let info = cluster.masters[all].command(&["CLUSTER", "INFO"]);
        let text = info
            .bytes()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        if text.contains("cluster_state:fail") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cluster did not fail: {text}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    // The first publish meets -CLUSTERDOWN; from then on the master counts as refusing.
    await_refusal(&mut api_a, &kept, Instant::now() + Duration::from_secs(1));
    assert_eq!(health(&a).0, 503, "degraded while the cluster refuses");
    assert!(a.stderr().contains("CLUSTERDOWN"), "the log says why");

    cluster.restart(victim);
    for i in 0..3 {
        cluster.wait_ok(i);
    }
    await_delivery_on(&mut api_a, &mut far, &kept, "after");
    let healthy = Instant::now() + RESUME;
    while health(&a).0 != 200 {
        assert!(Instant::now() < healthy, "healthy again: {}", health(&a).1);
        thread::sleep(Duration::from_millis(50));
    }
}
