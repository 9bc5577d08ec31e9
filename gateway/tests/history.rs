//! History socket tests: channels with `--history` number their publications, a client that
//! comes back with its last (offset, epoch) gets exactly what it missed and then the live ones,
//! even while publishers keep going through its resubscribe; one that was away too long, or
//! names another epoch, is told so with the current position; the `history` op and
//! `GET /api/history` read the last publications. Two shards, so the hop to a channel's owner
//! crosses threads for clients on one of them.

mod common;

use std::process::Command;
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

use common::ws::{next_offset, spread, subscribe, Ws};
use common::*;

const API_KEY: &str = "history-test-key";
const CHANNEL: &str = "chat:lobby";

fn start(history: &str) -> Gateway {
    gateway()
        .args([
            "--api-key",
            API_KEY,
            "--threads",
            "2",
            "--history",
            history,
            "--max-recovery",
            "1000",
        ])
        .start()
}

/// One keep-alive connection to the backend API.
struct Api(Client);

impl Api {
    fn connect(gw: &Gateway) -> Api {
        Api(Client::connect(gw.api_addr()))
    }

    fn request(&mut self, method: &str, path: &str, body: &str) -> Response {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.0.send_raw(req.as_bytes());
        self.0.read_response()
    }

    /// Publish `n` (a JSON number) to `channel`; one API connection publishes in order.
    fn publish(&mut self, channel: &str, n: u64) {
        let body = json!({"channel": channel, "data": n}).to_string();
        let r = self.request("POST", "/api/publish", &body);
        assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    }

    fn metrics(&mut self) -> String {
        let r = self.request("GET", "/metrics", "");
        assert_eq!(r.status, 200);
        String::from_utf8(r.body).expect("UTF-8 metrics")
    }

    fn get_json(&mut self, path: &str) -> (u16, Value) {
        let r = self.request("GET", path, "");
        let v = serde_json::from_slice(&r.body).expect("a JSON body");
        (r.status, v)
    }
}

/// A `/ws` client on shard 0 and one on shard 1.
fn one_per_shard(gw: &Gateway) -> Vec<Ws> {
    let mut clients = spread(gw.addr(), 1, "");
    [0, 1]
        .map(|s| {
            let at = clients.iter().position(|w| w.shard() == s).unwrap();
            clients.swap_remove(at)
        })
        .into()
}

#[test]
fn a_client_that_comes_back_gets_exactly_what_it_missed_then_live_ones() {
    // Room for everything, however far the publisher gets before the resubscribes.
    let gw = start("chat:=1000/10m");
    let mut api = Api::connect(&gw);
    // One returning client on each shard: for one of them the owner is on the other shard.
    let mut back = one_per_shard(&gw);
    let mut epochs = Vec::new();
    for w in &mut back {
        let reply = subscribe(w, CHANNEL, None);
        assert_eq!(reply["offset"], 0, "{reply}");
        assert!(reply.get("recovered").is_none(), "{reply}");
        epochs.push(reply["epoch"].as_str().unwrap().to_owned());
    }
    assert_eq!(epochs[0], epochs[1], "one stream");
    let epoch = epochs[0].clone();
    for n in 1..=10 {
        api.publish(CHANNEL, n);
    }
    for w in &mut back {
        let got: Vec<u64> = (0..10).map(|_| next_offset(w)).collect();
        assert_eq!(got, (1..=10).collect::<Vec<_>>());
    }
    // Gone without a word (a dropped network), as clients that come back usually are.
    drop(back);
    for n in 11..=60 {
        api.publish(CHANNEL, n);
    }

    // A publisher keeps going while the clients resubscribe.
    const LAST: u64 = 400;
    let publisher = {
        let mut api = Api::connect(&gw);
        thread::spawn(move || {
            for n in 61..=LAST {
                api.publish(CHANNEL, n);
            }
        })
    };
    let mut returning = one_per_shard(&gw);
    let mut positions = Vec::new();
    for w in &mut returning {
        let reply = subscribe(
            w,
            CHANNEL,
            Some(json!({"offset": 10, "epoch": epoch.as_str()})),
        );
        assert_eq!(reply["recovered"], true, "{reply}");
        assert_eq!(reply["epoch"], epoch.as_str());
        positions.push(reply["offset"].as_u64().unwrap());
    }
    for w in &mut returning {
        let got: Vec<u64> = (11..=LAST).map(|_| next_offset(w)).collect();
        assert_eq!(got, (11..=LAST).collect::<Vec<_>>(), "no gap, no duplicate");
    }
    publisher.join().unwrap();
    println!("positions at the resubscribes: {positions:?} (of {LAST})");
    for w in &mut returning {
        assert!(
            w.sync().iter().all(|m| m["type"] != "message"),
            "nothing more"
        );
    }
}

#[test]
fn away_longer_than_the_history_keeps_is_not_recovered_and_gets_the_position() {
    let gw = start("chat:=20/10m");
    let mut api = Api::connect(&gw);
    let mut w = Ws::open(gw.addr(), "");
    let epoch = subscribe(&mut w, CHANNEL, None)["epoch"].clone();
    drop(w);
    for n in 1..=30 {
        api.publish(CHANNEL, n);
    }
    let mut w = Ws::open(gw.addr(), "");
    let reply = subscribe(
        &mut w,
        CHANNEL,
        Some(json!({"offset": 5, "epoch": epoch.clone()})),
    );
    assert_eq!(
        (&reply["recovered"], &reply["offset"], &reply["epoch"]),
        (&json!(false), &json!(30), &epoch)
    );
    api.publish(CHANNEL, 31);
    assert_eq!(next_offset(&mut w), 31, "no replay, then live");

    // Up to date: a quiet channel counts as recovered, with nothing to replay.
    let mut w = Ws::open(gw.addr(), "");
    let reply = subscribe(
        &mut w,
        CHANNEL,
        Some(json!({"offset": 31, "epoch": epoch.clone()})),
    );
    assert_eq!(
        (&reply["recovered"], &reply["offset"]),
        (&json!(true), &json!(31))
    );
    assert!(w.sync().iter().all(|m| m["type"] != "message"));
}

#[test]
fn another_epoch_is_not_recovered() {
    let gw = start("chat:=100/10m");
    let mut api = Api::connect(&gw);
    for n in 1..=3 {
        api.publish(CHANNEL, n);
    }
    for epoch in ["0000000000000000", "not-an-epoch"] {
        let mut w = Ws::open(gw.addr(), "");
        let reply = subscribe(&mut w, CHANNEL, Some(json!({"offset": 1, "epoch": epoch})));
        assert_eq!(
            (&reply["recovered"], &reply["offset"]),
            (&json!(false), &json!(3))
        );
        assert_ne!(reply["epoch"], epoch);
        assert!(w.sync().iter().all(|m| m["type"] != "message"), "no replay");
    }
    let mut w = Ws::open(gw.addr(), "");
    let epoch = subscribe(&mut w, CHANNEL, None)["epoch"].clone();
    subscribe(
        &mut Ws::open(gw.addr(), ""),
        CHANNEL,
        Some(json!({"offset": 2, "epoch": epoch})),
    );
    // Counters move at the end of the answering shard's turn: look again for a while.
    let want = [
        "gateway_recoveries_total{result=\"recovered\"} 1",
        "gateway_recoveries_total{result=\"missed\"} 2",
        "gateway_history_streams 1",
    ];
    let mut text = String::new();
    for _ in 0..100 {
        text = api.metrics();
        if want.iter().all(|l| text.lines().any(|t| t == *l)) {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("expected {want:?} in {text}");
}

#[test]
fn the_history_op_and_the_api_return_the_last_publications() {
    let gw = start("chat:=4/10m");
    let mut api = Api::connect(&gw);
    for n in 1..=6 {
        api.publish(CHANNEL, n);
    }
    let mut w = Ws::open(gw.addr(), "");
    let (reply, _) = w.request(json!({"op":"history","channel":CHANNEL,"limit":3,"id":1}));
    assert_eq!(
        (&reply["ok"], &reply["offset"]),
        (&json!(true), &json!(6)),
        "{reply}"
    );
    let epoch = reply["epoch"].clone();
    let list = |v: &Value| -> Vec<(u64, u64)> {
        v["publications"]
            .as_array()
            .expect("publications")
            .iter()
            .map(|p| {
                assert_eq!(
                    (&p["type"], &p["channel"]),
                    (&json!("message"), &json!(CHANNEL))
                );
                (p["offset"].as_u64().unwrap(), p["data"].as_u64().unwrap())
            })
            .collect()
    };
    assert_eq!(list(&reply), vec![(4, 4), (5, 5), (6, 6)]);
    let (reply, _) = w.request(json!({"op":"history","channel":CHANNEL,"id":2}));
    assert_eq!(
        list(&reply),
        vec![(3, 3), (4, 4), (5, 5), (6, 6)],
        "all it keeps"
    );

    let (status, body) = api.get_json(&format!("/api/history?channel={CHANNEL}&limit=2"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["channel"], &body["offset"]),
        (&json!(CHANNEL), &json!(6))
    );
    assert_eq!(body["epoch"], epoch);
    assert_eq!(list(&body), vec![(5, 5), (6, 6)]);

    // Channels without history: a clear error, and today's deliveries (no offset).
    assert_eq!(
        w.err(json!({"op":"history","channel":"plain","id":3})),
        "no_history"
    );
    assert_eq!(
        w.err(
            json!({"op":"subscribe","channel":"plain","recover":{"offset":1,"epoch":"x"},"id":4})
        ),
        "no_history"
    );
    let (status, body) = api.get_json("/api/history?channel=plain");
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("no_history"))
    );
    let (status, body) = api.get_json(&format!("/api/history?channel={CHANNEL}&limit=x"));
    assert_eq!((status, &body["error"]["code"]), (400, &json!("bad_field")));
    let (reply, _) = w.request(json!({"op":"subscribe","channel":"plain","id":5}));
    assert_eq!(reply, json!({"type":"reply","id":5,"ok":true}));
    api.publish("plain", 1);
    let m = w.next();
    assert_eq!(m["data"], 1);
    assert!(m.get("offset").is_none(), "{m}");
}

#[test]
fn bad_history_settings_stop_the_gateway_with_exit_code_2() {
    for args in [
        &["--history", "chat:=0/1m"][..],
        &["--history", "chat:=10/48h"],
        &["--history", "chat:10"],
        &["--max-recovery", "20000"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(args)
            .args(["--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"])
            .output()
            .expect("run the gateway");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        let flag = args[0].trim_start_matches('-');
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
}

#[test]
fn publishers_on_both_shards_share_one_numbering() {
    let gw = start("chat:=100/10m");
    let mut clients = spread(gw.addr(), 2, "");
    let mut publishers: Vec<Ws> = Vec::new();
    for s in [0, 1] {
        let at = clients.iter().position(|w| w.shard() == s).unwrap();
        publishers.push(clients.swap_remove(at));
    }
    for w in &mut clients {
        subscribe(w, CHANNEL, None);
    }
    for round in 0..5 {
        for p in &mut publishers {
            p.ok(json!({"op":"publish","channel":CHANNEL,"data":round,"id":"p"}));
        }
    }
    for w in &mut clients {
        let offsets: Vec<u64> = (0..10)
            .map(|_| w.next()["offset"].as_u64().expect("an offset"))
            .collect();
        assert_eq!(offsets, (1..=10).collect::<Vec<_>>());
    }
}

/// Send `req` (a request with an id) and return the first channel frame that arrives for `w`,
/// before or after the reply.
fn publish_and_next(w: &mut Ws, req: Value) -> Value {
    let before = w.ok(req);
    match before
        .into_iter()
        .find(|m| m["type"] != "join" && m["type"] != "leave")
    {
        Some(m) => m,
        None => w.next(),
    }
}

#[test]
fn a_publisher_that_skips_itself_gets_its_position_instead() {
    let gw = start("chat:=100/10m");
    // The publisher on one shard, the channel's other subscriber on the other: the marker comes
    // from the owner's delivery, wherever that is.
    let mut v = one_per_shard(&gw);
    let (mut publisher, mut other) = (v.remove(0), v.remove(0));
    for w in [&mut publisher, &mut other] {
        subscribe(w, CHANNEL, None);
    }
    let skip = json!({"op":"publish","channel":CHANNEL,"data":1,"skip_self":true,"id":"p"});
    assert_eq!(
        publish_and_next(&mut publisher, skip),
        json!({"type":"skipped","channel":CHANNEL,"offset":1}),
        "in place of its own message"
    );
    assert_eq!(next_offset(&mut other), 1);
    // Without skip_self it gets its message as everyone does; the offsets run on with no hole.
    let own = publish_and_next(
        &mut publisher,
        json!({"op":"publish","channel":CHANNEL,"data":2,"id":"p"}),
    );
    assert_eq!(
        (own["type"].clone(), own["offset"].clone()),
        (json!("message"), json!(2))
    );
    assert_eq!(next_offset(&mut other), 2);
    // A publisher not subscribed to the channel gets nothing back.
    let mut v = one_per_shard(&gw);
    let (mut outsider, mut listener) = (v.remove(0), v.remove(0));
    subscribe(&mut listener, CHANNEL, None);
    outsider.ok(json!({"op":"publish","channel":CHANNEL,"data":3,"skip_self":true,"id":"p"}));
    assert_eq!(next_offset(&mut listener), 3);
    let arrived = outsider.sync();
    assert!(arrived.is_empty(), "{arrived:?}");
}
