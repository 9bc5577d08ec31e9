//! `hook_answer`: what a backend sends back to a hook call: the HTTP/1.1 answer read by
//! `gateway::hooks::http::ResponseReader` in reads of any size, then its body read by every
//! hook's answer parser (`gateway::app::calls::answer`).
//!
//! Asserts: nothing panics; the answer read in chunks is the answer read at once (or the same
//! refusal); a complete answer's body is within the body limit and a 1xx is never an answer;
//! an accepted connect answer has a valid user and channels, a status of 400-599 or a close
//! code of 4000-4999, and a reason of at most 123 bytes; every JSON text a parser hands on
//! (welcome data, rewritten data, RPC results, forwarded sends' sources, publications) is JSON
//! serde_json reads; a body serde_json does not read as an object is refused by every parser.

use gateway::app::calls::answer::{
    parse_connect, parse_decision, parse_forward, parse_rpc, ConnectAnswer, Decision, RpcAnswer,
};
use gateway::hooks::http::{ResponseReader, MAX_RESPONSE_BODY_BYTES};
use gateway::names::{check_channel, check_user};

use super::input::{read_size, Input};

/// Input: a byte for the read size, then the backend's bytes (an HTTP answer; its body, or the
/// whole input when it is no HTTP, goes to the answer parsers).
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let chunk = read_size(input.byte()).max(1);
    let bytes = input.rest();

    let whole = read(bytes, bytes.len().max(1));
    let chunked = read(bytes, chunk);
    assert_eq!(whole, chunked, "chunking changed the answer");
    let body = match &whole {
        Some(Ok(r)) => {
            assert!(r.body.len() <= MAX_RESPONSE_BODY_BYTES);
            assert!(r.status >= 200, "a 1xx is not an answer");
            r.body.clone()
        }
        _ => bytes.to_vec(),
    };
    check_body(&body);
}

/// The answer in `bytes` read `chunk` bytes at a time, then the end of the stream: `None` when
/// it needs more.
fn read(
    bytes: &[u8],
    chunk: usize,
) -> Option<Result<gateway::hooks::http::Response, gateway::hooks::http::ResponseError>> {
    let mut r = ResponseReader::default();
    for part in bytes.chunks(chunk) {
        match r.on_read(part) {
            Ok(None) => {}
            done => return done.transpose(),
        }
    }
    Some(r.on_eof())
}

fn json(text: &str, what: &str) {
    assert!(
        serde_json::from_str::<serde_json::Value>(text).is_ok(),
        "{what} is not JSON: {text}"
    );
}

fn check_body(body: &[u8]) {
    let is_object = matches!(
        serde_json::from_slice::<serde_json::Value>(body),
        Ok(serde_json::Value::Object(_))
    );
    match parse_connect(body) {
        Ok(ConnectAnswer::Allow(a)) => {
            assert!(a.user.as_deref().is_none_or(|u| check_user(u).is_ok()));
            assert!(a.channels.iter().all(|c| check_channel(c).is_ok()));
            if let Some(d) = &a.data {
                json(d, "welcome data");
            }
        }
        Ok(ConnectAnswer::DenyStatus { status, reason }) => {
            assert!((400..=599).contains(&status));
            assert!(reason.len() <= 123);
        }
        Ok(ConnectAnswer::DenyClose { code, reason }) => {
            assert!((4000..=4999).contains(&code));
            assert!(reason.len() <= 123);
        }
        Err(_) => {}
    }
    match parse_decision(body) {
        Ok(Decision::Allow { data: Some(d) }) => json(&d, "rewritten data"),
        Ok(Decision::Deny { reason }) => assert!(reason.len() <= 123),
        _ => {}
    }
    if let Ok(RpcAnswer::Result(r)) = parse_rpc(body) {
        json(&r, "an rpc result");
    }
    if let Ok(f) = parse_forward(body) {
        assert!(f
            .subscribe
            .iter()
            .chain(&f.unsubscribe)
            .all(|c| check_channel(c).is_ok()));
        for (channel, data) in &f.publish {
            assert!(check_channel(channel).is_ok());
            json(data, "a forwarded publication");
        }
        assert!(f
            .close
            .is_none_or(|(code, _)| (4000..=4999).contains(&code)));
    }
    if !is_object {
        assert!(parse_connect(body).is_err() && parse_decision(body).is_err());
        assert!(parse_rpc(body).is_err() && parse_forward(body).is_err());
    }
}
