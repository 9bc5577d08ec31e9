//! A client of the JSON protocol on `/ws` for the API and push suites: open with the welcome,
//! request/reply matched by `id`, and spreading clients over both shards of a two-shard gateway.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::*;

/// A `/ws` client with its welcome.
pub struct Ws {
    pub c: Client,
    /// The connection id from the welcome (a decimal `u64`).
    pub id: String,
}

impl Ws {
    /// Connect to `/ws{query}`, complete the handshake and read the welcome.
    pub fn open(addr: SocketAddr, query: &str) -> Ws {
        let mut c = Client::connect(addr);
        let key = fresh_key();
        let resp = c.handshake_with_key(&format!("/ws{query}"), &key, &[]);
        resp.assert_switching(&key);
        let welcome = read_json(&mut c);
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        let id = welcome["conn"]
            .as_str()
            .expect("conn is a string")
            .to_owned();
        assert!(id.parse::<u64>().is_ok(), "conn is a decimal u64: {id}");
        Ws { c, id }
    }

    /// The shard that holds this connection (the id's top byte).
    pub fn shard(&self) -> u64 {
        self.id.parse::<u64>().unwrap() >> 56
    }

    pub fn send(&mut self, v: Value) {
        self.c.send_text(v.to_string().as_bytes());
    }

    /// Send a request and return its reply; what arrived before it is returned too.
    pub fn request(&mut self, v: Value) -> (Value, Vec<Value>) {
        let id = v["id"].clone();
        self.send(v);
        let mut before = Vec::new();
        loop {
            let m = read_json(&mut self.c);
            if m["type"] == "reply" && m["id"] == id {
                return (m, before);
            }
            before.push(m);
        }
    }

    /// Send a request and expect `ok: true`; returns what arrived before the reply.
    pub fn ok(&mut self, v: Value) -> Vec<Value> {
        let (r, before) = self.request(v.clone());
        assert_eq!(r["ok"], true, "{v} -> {r}");
        before
    }

    /// The error code of a request that must fail.
    pub fn err(&mut self, v: Value) -> String {
        let (r, _) = self.request(v.clone());
        assert_eq!(r["ok"], false, "{v} -> {r}");
        assert!(r["error"]["message"].is_string(), "{r}");
        r["error"]["code"].as_str().unwrap().to_owned()
    }

    pub fn subscribe(&mut self, channel: &str) {
        self.ok(json!({"op":"subscribe","channel":channel,"id":"sub"}));
    }

    /// Everything that arrives before the reply to a ping (the connection is in sync after).
    pub fn sync(&mut self) -> Vec<Value> {
        self.ok(json!({"op":"ping","id":"sync"}))
    }

    /// The next frame that is not a presence event (`join`, `leave`).
    pub fn next(&mut self) -> Value {
        loop {
            let m = read_json(&mut self.c);
            if m["type"] != "join" && m["type"] != "leave" {
                return m;
            }
        }
    }
}

/// Subscribe and return the reply (with its position).
pub fn subscribe(w: &mut Ws, channel: &str, recover: Option<Value>) -> Value {
    let mut req = json!({"op":"subscribe","channel":channel,"id":"sub"});
    if let Some(r) = recover {
        req["recover"] = r;
    }
    let (reply, before) = w.request(req);
    assert_eq!(reply["ok"], true, "{reply}");
    let early: Vec<&Value> = before.iter().filter(|m| m["type"] == "message").collect();
    assert!(early.is_empty(), "deliveries before the reply: {early:?}");
    reply
}

/// The next `message` delivery's offset, checking its data is the same number (the history
/// suites publish data n as the n-th publication of a channel).
pub fn next_offset(w: &mut Ws) -> u64 {
    let m = w.next();
    assert_eq!(m["type"], "message", "{m}");
    let offset = m["offset"]
        .as_u64()
        .unwrap_or_else(|| panic!("no offset in {m}"));
    assert_eq!(m["data"], offset, "{m}");
    offset
}

/// Read one text frame and parse it as JSON.
pub fn read_json(c: &mut Client) -> Value {
    let f = c.read_frame();
    assert_eq!(f.opcode, op::TEXT, "expected a text frame, got {f:?}");
    serde_json::from_slice(&f.payload).unwrap_or_else(|e| {
        panic!(
            "bad JSON from server ({e}): {}",
            String::from_utf8_lossy(&f.payload)
        )
    })
}

/// Open `/ws{query}` clients until both shards of a two-shard gateway have at least `per_shard`.
pub fn spread(addr: SocketAddr, per_shard: usize, query: &str) -> Vec<Ws> {
    let mut all: Vec<Ws> = Vec::new();
    for _ in 0..400 {
        let counts = [0, 1].map(|s| all.iter().filter(|w| w.shard() == s).count());
        if counts.iter().all(|&n| n >= per_shard) {
            return all;
        }
        all.push(Ws::open(addr, query));
    }
    panic!("400 connections did not land on both shards");
}

/// Seconds since the Unix epoch, for token `exp` claims.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
