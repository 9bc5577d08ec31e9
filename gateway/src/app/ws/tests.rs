//! Parsing every op, every error code, ids echoed as given, and unicode and escapes in data.

use super::reply;
use super::request::*;
use crate::json::write_value;
use simd_json::tape::Value;

/// Parse `text` and describe the outcome: `Ok(op summary, id text)` or `Err(code, id text)`.
fn parse(text: &str) -> Result<(String, String), (ErrorCode, String)> {
    let mut p = Parser::default();
    let mut input = text.as_bytes().to_vec();
    p.parse(&mut input, |r| {
        let id_text = |id: Option<Value<'_, '_>>| {
            let mut out = Vec::new();
            if let Some(id) = id {
                write_value(&mut out, id).unwrap();
            }
            String::from_utf8(out).unwrap()
        };
        match r {
            Ok(req) => {
                let op = match req.op {
                    Op::Subscribe {
                        channel,
                        recover: None,
                    } => format!("subscribe {channel}"),
                    Op::Subscribe {
                        channel,
                        recover: Some((offset, epoch)),
                    } => format!("subscribe {channel} from {offset}@{epoch}"),
                    Op::History { channel, limit } => format!("history {channel} {limit:?}"),
                    Op::Unsubscribe { channel } => format!("unsubscribe {channel}"),
                    Op::Presence { channel } => format!("presence {channel}"),
                    Op::Publish {
                        channel,
                        data,
                        skip_self,
                    } => {
                        let mut d = Vec::new();
                        write_value(&mut d, data).unwrap();
                        format!(
                            "publish {channel} {} {skip_self}",
                            String::from_utf8(d).unwrap()
                        )
                    }
                    Op::Send { conn, data } => {
                        let mut d = Vec::new();
                        write_value(&mut d, data).unwrap();
                        format!("send {} {}", conn.to_bits(), String::from_utf8(d).unwrap())
                    }
                    Op::Refresh { token } => format!("refresh {token}"),
                    Op::Ping => "ping".into(),
                    Op::Rpc { method, data } => {
                        let mut d = Vec::new();
                        if let Some(data) = data {
                            write_value(&mut d, data).unwrap();
                        }
                        format!("rpc {method} {}", String::from_utf8(d).unwrap())
                    }
                };
                Ok((op, id_text(req.id)))
            }
            Err((id, e)) => Err((e.code, id_text(id))),
        }
    })
}

#[test]
fn every_op_parses() {
    let ok = |t: &str| parse(t).expect(t).0;
    assert_eq!(
        ok(r#"{"op":"subscribe","channel":"room:1"}"#),
        "subscribe room:1"
    );
    assert_eq!(ok(r#"{"op":"unsubscribe","channel":"a"}"#), "unsubscribe a");
    assert_eq!(ok(r#"{"op":"presence","channel":"a"}"#), "presence a");
    assert_eq!(
        ok(r#"{"op":"publish","channel":"a","data":{"x":[1,"y"]}}"#),
        r#"publish a {"x":[1,"y"]} false"#
    );
    assert_eq!(
        ok(r#"{"op":"publish","channel":"a","data":null,"skip_self":true}"#),
        "publish a null true"
    );
    assert_eq!(
        ok(r#"{"data":"hi","conn":"4294967298","op":"send"}"#),
        r#"send 4294967298 "hi""#
    );
    assert_eq!(ok(r#"{"op":"refresh","token":"abc"}"#), "refresh abc");
    assert_eq!(ok(r#"{"op":"ping"}"#), "ping");
    assert_eq!(
        ok(r#"{"op":"subscribe","channel":"a","recover":{"offset":10,"epoch":"e1"}}"#),
        "subscribe a from 10@e1"
    );
    assert_eq!(
        ok(r#"{"op":"subscribe","channel":"a","recover":null}"#),
        "subscribe a"
    );
    assert_eq!(
        ok(r#"{"op":"history","channel":"a","limit":5}"#),
        "history a Some(5)"
    );
    assert_eq!(ok(r#"{"op":"history","channel":"a"}"#), "history a None");
    assert_eq!(
        ok(r#"{"op":"rpc","method":"add","data":{"a":1}}"#),
        r#"rpc add {"a":1}"#
    );
    assert_eq!(ok(r#"{"op":"rpc","method":"m"}"#), "rpc m ");
    assert!(parse(r#"{"op":"rpc","method":7}"#).is_err());
}

#[test]
fn bad_recover_and_limit_fields_are_refused() {
    for text in [
        r#"{"op":"subscribe","channel":"a","recover":5}"#,
        r#"{"op":"subscribe","channel":"a","recover":{"offset":-1,"epoch":"e"}}"#,
        r#"{"op":"subscribe","channel":"a","recover":{"offset":1}}"#,
        r#"{"op":"subscribe","channel":"a","recover":{"offset":1,"epoch":7}}"#,
        r#"{"op":"history","channel":"a","limit":"all"}"#,
        r#"{"op":"history","channel":"a","limit":1.5}"#,
    ] {
        assert_eq!(
            parse(text).map(|r| r.0),
            Err((ErrorCode::BadField, String::new())),
            "{text}"
        );
    }
}

#[test]
fn ids_are_echoed_as_given() {
    for (text, id) in [
        (r#"{"op":"ping","id":7}"#, "7"),
        (r#"{"op":"ping","id":-3}"#, "-3"),
        (r#"{"op":"ping","id":"a\"b é"}"#, r#""a\"b é""#),
        (r#"{"op":"ping","id":2.5}"#, "2.5"),
        (r#"{"op":"ping"}"#, ""),
    ] {
        assert_eq!(parse(text).expect(text).1, id, "{text}");
    }
    // The id is echoed in errors too, when it could be read.
    assert_eq!(
        parse(r#"{"op":"nope","id":"x1"}"#),
        Err((ErrorCode::UnknownOp, "\"x1\"".into()))
    );
}

#[test]
fn unicode_and_escapes_in_data_survive() {
    let (op, _) =
        parse(r#"{"op":"publish","channel":"c","data":"\u00e9\ud83d\ude00 \"q\" \\ \n ☃"}"#)
            .expect("parses");
    let data = op
        .strip_prefix("publish c ")
        .unwrap()
        .strip_suffix(" false")
        .unwrap();
    let back: String = serde_json::from_str(data).unwrap();
    assert_eq!(back, "é😀 \"q\" \\ \n ☃");
}

#[test]
fn every_error_code_of_parsing() {
    let code = |t: &str| parse(t).expect_err(t).0;
    assert_eq!(code("not json"), ErrorCode::BadJson);
    assert_eq!(code(r#"{"op":"ping""#), ErrorCode::BadJson);
    assert_eq!(code("[1,2]"), ErrorCode::BadJson);
    assert_eq!(code(""), ErrorCode::BadJson);
    assert_eq!(code("{\"op\":\"ping\",\"id\":1\u{0}2}"), ErrorCode::BadJson);
    assert_eq!(code(r#"{"op":"ping","id":"\ud83d"}"#), ErrorCode::BadJson);
    assert_eq!(code(r#"{"op":"fly"}"#), ErrorCode::UnknownOp);
    assert_eq!(code(r#"{"id":1}"#), ErrorCode::MissingField);
    assert_eq!(code(r#"{"op":"subscribe"}"#), ErrorCode::MissingField);
    assert_eq!(
        code(r#"{"op":"publish","channel":"a"}"#),
        ErrorCode::MissingField
    );
    assert_eq!(code(r#"{"op":"send","data":1}"#), ErrorCode::MissingField);
    assert_eq!(code(r#"{"op":"refresh"}"#), ErrorCode::MissingField);
    assert_eq!(code(r#"{"op":5}"#), ErrorCode::BadField);
    assert_eq!(code(r#"{"op":"ping","id":[1]}"#), ErrorCode::BadField);
    assert_eq!(
        code(r#"{"op":"subscribe","channel":5}"#),
        ErrorCode::BadField
    );
    assert_eq!(
        code(r#"{"op":"publish","channel":"a","data":1,"skip_self":"yes"}"#),
        ErrorCode::BadField
    );
    assert_eq!(
        code(r#"{"op":"send","conn":"12x","data":1}"#),
        ErrorCode::BadField
    );
    assert_eq!(
        code(r#"{"op":"send","conn":"","data":1}"#),
        ErrorCode::BadField
    );
    assert_eq!(
        code(r#"{"op":"send","conn":"99999999999999999999999","data":1}"#),
        ErrorCode::BadField
    );
    assert_eq!(code(r#"{"op":"refresh","token":1}"#), ErrorCode::BadField);
    assert_eq!(
        code(r#"{"op":"subscribe","channel":""}"#),
        ErrorCode::BadChannel
    );
    assert_eq!(
        code(r#"{"op":"subscribe","channel":"a b"}"#),
        ErrorCode::BadChannel
    );
    let long = format!(r#"{{"op":"presence","channel":"{}"}}"#, "x".repeat(129));
    assert_eq!(code(&long), ErrorCode::BadChannel);
}

#[test]
fn the_parser_is_reusable_after_errors() {
    let mut p = Parser::default();
    for text in [
        "{bad",
        r#"{"op":"ping","id":1}"#,
        "[",
        r#"{"op":"ping","id":2}"#,
    ] {
        let mut input = text.as_bytes().to_vec();
        let ok = p.parse(&mut input, |r| r.is_ok());
        assert_eq!(ok, text.contains("ping"), "{text}");
    }
}

#[test]
fn error_replies_have_the_documented_shape() {
    let mut out = Vec::new();
    reply::error(
        &mut out,
        b"3",
        ProtocolError::new(ErrorCode::NotSubscribed, "not subscribed"),
    );
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"type":"reply","id":3,"ok":false,
            "error":{"code":"not_subscribed","message":"not subscribed"}})
    );
    let mut out = Vec::new();
    reply::ok(&mut out, b"");
    assert_eq!(out, br#"{"type":"reply","ok":true}"#);
}
