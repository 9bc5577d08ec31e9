//! Push socket tests: the JSON protocol on `/ws` (replies, errors), fan-out across two shards,
//! skip_self, private messages and stale ids, the slow-consumer close (4008), `/raw`,
//! `/broadcast` and presence. Each test runs its own gateway on a loopback port.

mod common;

use std::collections::BTreeSet;
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

use common::ws::{read_json, spread, unix_now, Ws};
use common::*;

fn messages(frames: &[Value]) -> Vec<&Value> {
    frames.iter().filter(|m| m["type"] == "message").collect()
}

#[test]
fn replies_and_errors_keep_the_connection_up() {
    let gw = gateway()
        .args(["--threads", "1", "--max-channels-per-conn", "2"])
        .start();
    let mut a = Ws::open(gw.addr(), "?user=ann");
    assert_eq!(a.id.parse::<u64>().unwrap() >> 56, 0);

    // Ids are echoed as given, numbers and strings.
    let (r, _) = a.request(json!({"op":"ping","id":"x-é"}));
    assert_eq!(r, json!({"type":"reply","id":"x-é","ok":true}));
    let (r, _) = a.request(json!({"op":"ping","id":42}));
    assert_eq!(r, json!({"type":"reply","id":42,"ok":true}));

    a.c.send_text(b"{not json");
    let r = read_json(&mut a.c);
    assert_eq!(
        (r["ok"].clone(), r["error"]["code"].clone()),
        (json!(false), json!("bad_json"))
    );
    a.c.send_binary(br#"{"op":"ping","id":1}"#);
    assert_eq!(read_json(&mut a.c)["error"]["code"], "bad_json");
    // Junk after a long number is not JSON, however the parser reads long numbers.
    a.c.send_text(br#"{"op":"publish","channel":"c","data":12345678901234567890x,"id":1}"#);
    assert_eq!(read_json(&mut a.c)["error"]["code"], "bad_json");

    assert_eq!(a.err(json!({"op":"fly","id":1})), "unknown_op");
    assert_eq!(a.err(json!({"op":"subscribe","id":2})), "missing_field");
    assert_eq!(
        a.err(json!({"op":"subscribe","channel":7,"id":3})),
        "bad_field"
    );
    assert_eq!(
        a.err(json!({"op":"subscribe","channel":"a b","id":4})),
        "bad_channel"
    );
    assert_eq!(
        a.err(json!({"op":"subscribe","channel":"x".repeat(129),"id":5})),
        "bad_channel"
    );
    assert_eq!(
        a.err(json!({"op":"unsubscribe","channel":"nope","id":6})),
        "not_subscribed"
    );
    assert_eq!(
        a.err(json!({"op":"send","conn":"abc","data":1,"id":7})),
        "bad_field"
    );
    a.ok(json!({"op":"subscribe","channel":"one","id":8}));
    a.ok(json!({"op":"subscribe","channel":"one","id":9}));
    a.ok(json!({"op":"subscribe","channel":"two","id":10}));
    assert_eq!(
        a.err(json!({"op":"subscribe","channel":"three","id":11})),
        "too_many_channels"
    );

    // Still up: a publish comes back to the subscribed publisher, reply first.
    let data = json!({"text":"é😀 \"q\" \\ \n","n":[1,2.5,null,true]});
    a.send(json!({"op":"publish","channel":"one","data":data,"id":12}));
    let r = read_json(&mut a.c);
    assert_eq!(r, json!({"type":"reply","id":12,"ok":true}));
    let m = read_json(&mut a.c);
    assert_eq!(
        m,
        json!({"type":"message","channel":"one","data":data,"from":a.id,"user":"ann"})
    );
    a.ok(json!({"op":"unsubscribe","channel":"one","id":13}));
    a.ok(json!({"op":"publish","channel":"one","data":"x","id":14}));
    assert!(a.sync().is_empty(), "no delivery after unsubscribe");
    a.c.close_cleanly();
}

#[test]
fn fan_out_across_two_shards_in_order_and_only_to_subscribers() {
    fan_out_case(&["--threads", "2"]);
}

#[test]
fn a_one_slot_shard_queue_delays_but_loses_nothing() {
    fan_out_case(&["--threads", "2", "--shard-queue-capacity", "1"]);
}

fn fan_out_case(args: &[&str]) {
    let gw = gateway().args(args).start();
    let mut clients = spread(gw.addr(), 12, "");
    let mut outsiders: Vec<Ws> = Vec::new();
    for shard in [0, 1] {
        for _ in 0..2 {
            let at = clients.iter().position(|w| w.shard() == shard).unwrap();
            outsiders.push(clients.swap_remove(at));
        }
    }
    for (i, w) in clients.iter_mut().enumerate() {
        w.ok(json!({"op":"subscribe","channel":"room:1","id":i}));
    }
    let shards: BTreeSet<u64> = clients.iter().map(Ws::shard).collect();
    assert_eq!(shards, BTreeSet::from([0, 1]), "subscribers on both shards");

    // Two publishers, one per shard, each sending a burst without waiting.
    const N: usize = 50;
    let p0 = clients.iter().position(|w| w.shard() == 0).unwrap();
    let p1 = clients.iter().position(|w| w.shard() == 1).unwrap();
    for (p, tag) in [(p0, "a"), (p1, "b")] {
        for n in 0..N {
            clients[p].send(json!({"op":"publish","channel":"room:1","data":{"n":n,"src":tag}}));
        }
    }
    let (id0, id1) = (clients[p0].id.clone(), clients[p1].id.clone());
    for w in clients.iter_mut() {
        let mut got = Vec::new();
        while got.len() < 2 * N {
            let m = read_json(&mut w.c);
            if m["type"] == "message" {
                got.push(m);
            }
        }
        for (tag, from) in [("a", &id0), ("b", &id1)] {
            let seq: Vec<u64> = got
                .iter()
                .filter(|m| m["data"]["src"] == tag)
                .map(|m| {
                    assert_eq!(&m["from"], from, "{m}");
                    assert_eq!(m["channel"], "room:1");
                    m["data"]["n"].as_u64().unwrap()
                })
                .collect();
            assert_eq!(
                seq,
                (0..N as u64).collect::<Vec<_>>(),
                "order from {tag} at {}",
                w.id
            );
        }
        assert!(messages(&w.sync()).is_empty(), "no duplicates at {}", w.id);
    }
    for w in outsiders.iter_mut() {
        assert!(
            messages(&w.sync()).is_empty(),
            "a non-subscriber got a message"
        );
    }
}

#[test]
fn skip_self_reaches_everyone_but_the_publisher() {
    let gw = gateway().args(["--threads", "2"]).start();
    let mut c = spread(gw.addr(), 1, "");
    for (i, w) in c.iter_mut().enumerate() {
        w.ok(json!({"op":"subscribe","channel":"chat","id":i}));
    }
    let last = c.len() - 1;
    c[last].ok(json!({"op":"publish","channel":"chat","data":"hi","skip_self":true,"id":"p"}));
    assert!(
        messages(&c[last].sync()).is_empty(),
        "the publisher got its own message"
    );
    for w in c[..last].iter_mut() {
        let got = w.sync();
        let got = messages(&got);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0]["data"], "hi");
    }
}

#[test]
fn private_messages_reach_only_their_target_and_stale_ids_are_refused() {
    let gw = gateway().args(["--threads", "2"]).start();
    let mut c = spread(gw.addr(), 2, "");
    let a = c.iter().position(|w| w.shard() == 0).unwrap();
    let mut a = c.swap_remove(a);
    let same = c.iter().position(|w| w.shard() == 0).unwrap();
    let mut same = c.swap_remove(same);
    let other = c.iter().position(|w| w.shard() == 1).unwrap();
    let mut other = c.swap_remove(other);

    for target in [&mut same, &mut other] {
        let tid = target.id.clone();
        a.ok(json!({"op":"send","conn":tid,"data":{"secret":1},"id":"s"}));
        let d = read_json(&mut target.c);
        assert_eq!(
            d,
            json!({"type":"direct","from":a.id,"user":null,"data":{"secret":1}})
        );
    }
    for w in c.iter_mut() {
        assert!(w.sync().is_empty(), "a bystander got a private message");
    }

    // A wrong generation on a live slot (both shards), an unknown shard, a closed connection.
    for target in [&same, &other] {
        let bits: u64 = target.id.parse().unwrap();
        let stale = bits ^ (1 << 32);
        assert_eq!(
            a.err(json!({"op":"send","conn":stale.to_string(),"data":1,"id":"x"})),
            "unknown_connection"
        );
    }
    assert_eq!(
        a.err(json!({"op":"send","conn":(9u64 << 56).to_string(),"data":1,"id":"y"})),
        "unknown_connection"
    );
    let gone = other.id.clone();
    other.c.close_cleanly();
    assert_eq!(
        a.err(json!({"op":"send","conn":gone,"data":1,"id":"z"})),
        "unknown_connection"
    );
    assert!(same.sync().is_empty(), "a stale id was delivered");
}

#[test]
fn slow_consumer_is_closed_with_4008_and_others_get_everything() {
    let gw = gateway()
        .args(["--threads", "1", "--max-outbound-bytes", "65536"])
        .start();
    let addr = gw.addr();
    let mut slow = Client::connect_small_rcvbuf(addr, 4096);
    let key = fresh_key();
    slow.handshake_with_key("/ws", &key, &[])
        .assert_switching(&key);
    let slow_id = read_json(&mut slow)["conn"].clone();
    slow.send_text(br#"{"op":"subscribe","channel":"feed","id":1}"#);
    assert_eq!(read_json(&mut slow)["ok"], true);

    let mut fast = Ws::open(addr, "");
    fast.ok(json!({"op":"subscribe","channel":"feed","id":1}));
    let reader = thread::spawn(move || {
        let mut seen = Vec::new();
        loop {
            let m = read_json(&mut fast.c);
            if m["type"] == "message" {
                if m["data"]["end"] == true {
                    return seen;
                }
                seen.push(m["data"]["n"].as_u64().unwrap());
            }
        }
    });
    // The publisher watches the channel too: the slow consumer's `leave` says it was cut.
    let mut publisher = Ws::open(addr, "");
    publisher.ok(json!({"op":"subscribe","channel":"feed","id":"s"}));
    let pad = "p".repeat(16 * 1024);
    let mut sent = 0u64;
    let mut cut = false;
    while !cut {
        assert!(
            sent < 4000,
            "64 MiB pushed and the slow consumer is still connected"
        );
        let before = publisher
            .ok(json!({"op":"publish","channel":"feed","data":{"n":sent,"pad":pad},"id":sent}));
        cut = before
            .iter()
            .any(|m| m["type"] == "leave" && m["conn"] == slow_id);
        sent += 1;
    }
    publisher.ok(json!({"op":"publish","channel":"feed","data":{"end":true},"id":"end"}));
    let seen = reader.join().expect("fast reader");
    assert_eq!(
        seen,
        (0..sent).collect::<Vec<_>>(),
        "the fast subscriber got everything"
    );

    // The slow one finds its close after whatever was queued before it.
    loop {
        let f = slow.read_frame();
        if f.opcode == op::CLOSE {
            assert_eq!(f.close_code(), Some(4008), "{f:?}");
            break;
        }
    }
}

#[test]
fn raw_and_broadcast_deliveries_are_bare() {
    let gw = gateway().args(["--threads", "2"]).start();
    let addr = gw.addr();
    let mut raw = Client::connect(addr);
    let key = fresh_key();
    raw.handshake_with_key("/raw?channel=a&channel=room%3A2", &key, &[])
        .assert_switching(&key);
    let mut p = Ws::open(addr, "");
    p.ok(json!({"op":"publish","channel":"a","data":"plain text","id":1}));
    raw.expect_frame(op::TEXT, b"plain text");
    p.ok(json!({"op":"publish","channel":"room:2","data":{"x":[1]},"id":2}));
    raw.expect_frame(op::TEXT, br#"{"x":[1]}"#);
    raw.send_text(b"ignored");
    p.ok(json!({"op":"publish","channel":"b","data":"not subscribed","id":3}));
    p.ok(json!({"op":"publish","channel":"a","data":"after","id":4}));
    raw.expect_frame(op::TEXT, b"after");

    let mut bad = Client::connect(addr);
    assert_eq!(bad.handshake("/raw?channel=a%20b", &[]).status, 400);

    let mut b: Vec<Client> = (0..6)
        .map(|_| {
            let mut c = Client::connect(addr);
            let key = fresh_key();
            c.handshake_with_key("/broadcast", &key, &[])
                .assert_switching(&key);
            c
        })
        .collect();
    // No wait: a client that has read its 101 gets every publish read after it (on any shard).
    b[0].send_text(b"pub:hello \xc3\xa9");
    for c in b[1..].iter_mut() {
        c.expect_frame(op::TEXT, "hello é".as_bytes());
    }
    b[1].send_text(b"no prefix");
    b[2].send_text(b"pub:second");
    for (i, c) in b.iter_mut().enumerate() {
        if i != 2 {
            c.expect_frame(op::TEXT, b"second");
        }
    }
    b[0].expect_silence(Duration::from_millis(200));
    b[2].expect_silence(Duration::from_millis(200));
}

#[test]
fn presence_joins_leaves_and_members_across_shards() {
    let gw = gateway().args(["--threads", "2"]).start();
    let addr = gw.addr();
    let mut first = spread(addr, 1, "");
    // One watcher per shard, with names.
    let w0 = first.iter().position(|w| w.shard() == 0).unwrap();
    let _ = first.swap_remove(w0);
    let mut ann = Ws::open(addr, "?user=ann");
    let mut others: Vec<Ws> = Vec::new();
    let bob = loop {
        let w = Ws::open(addr, "?user=bob");
        if w.shard() != ann.shard() {
            break w;
        }
        others.push(w);
    };
    let mut bob = bob;
    ann.ok(json!({"op":"subscribe","channel":"lobby","id":1}));
    bob.ok(json!({"op":"subscribe","channel":"lobby","id":2}));
    let join = ann
        .sync()
        .into_iter()
        .find(|m| m["type"] == "join")
        .expect("ann sees bob join");
    assert_eq!(
        join,
        json!({"type":"join","channel":"lobby","conn":bob.id,"user":"bob"})
    );

    let (r, _) = ann.request(json!({"op":"presence","channel":"lobby","id":"who"}));
    assert_eq!(r["ok"], true);
    let mut members: Vec<(String, String)> = r["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["conn"].as_str().unwrap().into(),
                m["user"].as_str().unwrap().into(),
            )
        })
        .collect();
    members.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        members,
        vec![
            (ann.id.clone(), "ann".into()),
            (bob.id.clone(), "bob".into())
        ]
    );

    bob.ok(json!({"op":"unsubscribe","channel":"lobby","id":3}));
    let leave = ann.sync().into_iter().find(|m| m["type"] == "leave");
    assert_eq!(
        leave,
        Some(json!({"type":"leave","channel":"lobby","conn":bob.id,"user":"bob"}))
    );
    bob.ok(json!({"op":"subscribe","channel":"lobby","id":4}));
    let bob_id = bob.id.clone();
    bob.c.close_cleanly();
    let events: Vec<Value> = ann
        .sync()
        .into_iter()
        .filter(|m| m["type"] == "leave" || m["type"] == "join")
        .collect();
    let last = events.last().expect("events");
    assert_eq!(last["type"], "leave", "{events:?}");
    assert_eq!(last["conn"], json!(bob_id));
    let (r, _) = ann.request(json!({"op":"presence","channel":"lobby","id":"who2"}));
    assert_eq!(r["members"].as_array().unwrap().len(), 1, "{r}");
}

fn token(claims: Value) -> String {
    gateway::auth::Verifier::new(b"push-secret").sign(&claims.to_string())
}

#[test]
fn tokens_grant_channels_refresh_and_expire_with_4001() {
    let gw = gateway()
        .args(["--token-secret", "push-secret", "--require-token"])
        .start();
    let addr = gw.addr();
    let mut anon = Client::connect(addr);
    let r = anon.handshake("/ws?user=eve", &[]);
    assert_eq!(r.status, 401, "{r:?}");
    let mut forged = Client::connect(addr);
    let bad = gateway::auth::Verifier::new(b"other").sign(r#"{"sub":"x","exp":9999999999}"#);
    assert_eq!(
        forged.handshake(&format!("/ws?token={bad}"), &[]).status,
        401
    );

    let now = unix_now();
    let grant = |sub: &str, exp: u64| {
        token(json!({"sub":sub,"exp":exp,"channels":["room:*"],"publish":["room:1"]}))
    };
    let mut ann = Ws::open(addr, &format!("?token={}", grant("ann", now + 2)));
    let (r, _) = ann.request(json!({"op":"ping","id":0}));
    assert_eq!(r["ok"], true);
    assert_eq!(
        ann.err(json!({"op":"subscribe","channel":"other","id":1})),
        "forbidden"
    );
    ann.ok(json!({"op":"subscribe","channel":"room:1","id":2}));
    assert_eq!(
        ann.err(json!({"op":"publish","channel":"room:2","data":1,"id":3})),
        "forbidden"
    );
    ann.ok(json!({"op":"publish","channel":"room:1","data":1,"id":4}));
    assert_eq!(
        ann.err(json!({"op":"refresh","token":grant("bob", now + 60),"id":5})),
        "bad_token"
    );
    assert_eq!(
        ann.err(json!({"op":"refresh","token":grant("ann", now - 1),"id":6})),
        "token_expired"
    );
    assert_eq!(
        ann.err(json!({"op":"refresh","token":"x.y.z","id":7})),
        "bad_token"
    );
    ann.ok(json!({"op":"refresh","token":grant("ann", now + 60),"id":8}));

    // The same user without a refresh is closed when its token expires; ann is not.
    let mut late = Ws::open(addr, &format!("?token={}", grant("ann", now + 2)));
    late.c.set_timeout(Duration::from_secs(5));
    loop {
        let f = late.c.read_frame();
        if f.opcode == op::CLOSE {
            assert_eq!(f.close_code(), Some(4001), "{f:?}");
            break;
        }
    }
    assert!(unix_now() >= now + 2, "closed before the expiry");
    thread::sleep(Duration::from_millis(200));
    let before = ann.sync();
    assert!(before.iter().all(|m| m["type"] != "close"), "{before:?}");
}
