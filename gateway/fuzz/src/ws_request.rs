//! `ws_request`: the `/ws` request parser (`gateway::app::ws::request::Parser`) on arbitrary
//! bytes, with the parsed `id` and `data` written back as JSON by `gateway::json::write_value`,
//! as replies and deliveries do.
//!
//! Asserts: nothing panics; a request is only ever read from valid JSON (serde_json agrees; see
//! `assert_is_json` for the one leniency left); an `id` is a number or a string; a channel passes
//! the channel rule; what `write_value` writes (when the value is not too deep) is valid JSON, an
//! `id` written back is a JSON number or string and a string `id` reads back as the same text;
//! the parser, reused after any input, still parses a known request right.

use gateway::app::ws::request::{Op, Parser};
use gateway::json::write_value;
use gateway::names::check_channel;
use simd_json::prelude::*;

/// A request whose parse is known, parsed after the fuzzed one with the same parser.
const KNOWN: &[u8] = br#"{"op":"publish","channel":"room:1","data":{"a":[1,"b"]},"id":7}"#;

/// Input: the message (a text frame's payload), as is.
pub fn check(data: &[u8]) {
    let mut parser = Parser::default();
    let mut message = data.to_vec();
    parser.parse(&mut message, |parsed| {
        let (id, op) = match parsed {
            Ok(req) => (req.id, Some(req.op)),
            Err((id, _)) => (id, None),
        };
        if op.is_some() {
            assert_is_json(data, "a request");
        }
        if let Some(id) = id {
            let mut text = Vec::new();
            write_value(&mut text, id).expect("an id is a number or a string");
            let back = json(&text);
            assert!(back.is_number() || back.is_string(), "id {back}");
            if let Some(s) = id.as_str() {
                assert_eq!(back.as_str(), Some(s), "a string id written back");
            }
        }
        match op {
            Some(
                Op::Subscribe { channel, .. }
                | Op::Unsubscribe { channel }
                | Op::Presence { channel }
                | Op::History { channel, .. },
            ) => assert!(check_channel(channel).is_ok()),
            Some(Op::Publish { channel, data, .. }) => {
                assert!(check_channel(channel).is_ok());
                write_back(data);
            }
            Some(Op::Send { data, .. }) => write_back(data),
            Some(Op::Rpc { data, .. }) => {
                if let Some(data) = data {
                    write_back(data);
                }
            }
            Some(Op::Refresh { .. } | Op::Ping) | None => {}
        }
    });

    let mut known = KNOWN.to_vec();
    parser.parse(&mut known, |parsed| {
        let req = parsed.expect("the known request parses");
        let Op::Publish { channel, data, .. } = req.op else {
            panic!("the known request is a publish");
        };
        assert_eq!(channel, "room:1");
        let mut text = Vec::new();
        write_value(&mut text, data).expect("shallow");
        assert_eq!(text, br#"{"a":[1,"b"]}"#);
    });
}

/// A value written back is valid JSON, unless it nests too deep to be written at all.
fn write_back(v: simd_json::tape::Value<'_, '_>) {
    let mut text = Vec::new();
    if write_value(&mut text, v).is_ok() {
        json(&text);
    }
}

/// Panics unless serde_json reads `text`: whatever the gateway accepts as JSON is JSON, including
/// what simd-json alone would let through (`parser_safe` refuses those first).
pub fn assert_is_json(text: &[u8], what: &str) {
    assert!(
        serde_json::from_slice::<serde_json::Value>(text).is_ok(),
        "{what} that is not JSON: {:?}",
        String::from_utf8_lossy(text)
    );
}

fn json(text: &[u8]) -> serde_json::Value {
    serde_json::from_slice(text).unwrap_or_else(|e| {
        panic!(
            "write_value wrote invalid JSON ({e}): {:?}",
            String::from_utf8_lossy(text)
        )
    })
}
