//! What backends answer, parsed: one function per hook, from the body of a 2xx answer to a
//! typed decision. A body that is not the documented shape is `bad_response` (the caller
//! treats it like any failed call); nothing here panics on any input (fuzzed:
//! `gateway/fuzz/fuzz_targets/hook_answer.rs`). Formats: `gateway/docs/hooks.md`.

use serde_json::{Map, Value};

use crate::names::{check_channel, check_user};

/// The connect hook's decision.
#[derive(Clone, Debug, PartialEq)]
pub enum ConnectAnswer {
    /// Upgrade the connection.
    Allow(Allowed),
    /// Refuse the upgrade with this HTTP status (400-599) and reason.
    DenyStatus {
        /// The status code.
        status: u16,
        /// The body the client gets.
        reason: String,
    },
    /// Upgrade, then close at once with this code (4000-4999) and reason.
    DenyClose {
        /// The close code.
        code: u16,
        /// The close reason (at most 123 bytes are sent).
        reason: String,
    },
}

/// What an allowed connection starts with.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Allowed {
    /// Its user.
    pub user: Option<String>,
    /// Channels it is subscribed to at once.
    pub channels: Vec<String>,
    /// JSON text for the welcome's `data`.
    pub data: Option<String>,
    /// When the session ends (seconds since the Unix epoch): closed with 4001 then.
    pub expires_at: Option<u64>,
}

/// A subscribe or publish decision.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Go ahead; for a publish, perhaps with this data instead (JSON text).
    Allow {
        /// The rewritten data.
        data: Option<String>,
    },
    /// Refuse with this reason.
    Deny {
        /// What the client is told.
        reason: String,
    },
}

/// An RPC's outcome.
#[derive(Clone, Debug, PartialEq)]
pub enum RpcAnswer {
    /// The result (JSON text).
    Result(String),
    /// The backend's error: a code and a message.
    Error {
        /// A short machine-readable code.
        code: String,
        /// For humans.
        message: String,
    },
}

/// What the backend does with forwarded messages.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ForwardAnswer {
    /// Text messages to send back to the client.
    pub send: Vec<String>,
    /// Channels to subscribe the connection to.
    pub subscribe: Vec<String>,
    /// Channels to unsubscribe it from.
    pub unsubscribe: Vec<String>,
    /// Publications as the connection: channel and data (JSON text).
    pub publish: Vec<(String, String)>,
    /// Close the connection with this code (4000-4999) and reason.
    pub close: Option<(u16, String)>,
}

/// The body is not what the hook's format says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadAnswer(pub &'static str);

/// Bytes of a reason kept (a close reason must fit a control frame).
const MAX_REASON_BYTES: usize = 123;
/// Channels one connect answer may subscribe to.
const MAX_CONNECT_CHANNELS: usize = 1024;

fn object(body: &[u8]) -> Result<Map<String, Value>, BadAnswer> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(BadAnswer("the answer is not a JSON object")),
        Err(_) => Err(BadAnswer("the answer is not JSON")),
    }
}

fn allow_flag(m: &Map<String, Value>) -> Result<bool, BadAnswer> {
    match m.get("allow") {
        Some(Value::Bool(b)) => Ok(*b),
        _ => Err(BadAnswer("allow must be true or false")),
    }
}

fn reason(m: &Map<String, Value>) -> Result<String, BadAnswer> {
    let r = match m.get("reason") {
        None | Some(Value::Null) => "denied",
        Some(Value::String(s)) => s,
        Some(_) => return Err(BadAnswer("reason must be a string")),
    };
    let mut end = r.len().min(MAX_REASON_BYTES);
    while !r.is_char_boundary(end) {
        end -= 1;
    }
    Ok(r[..end].to_owned())
}

fn data_text(m: &Map<String, Value>) -> Option<String> {
    m.get("data").map(Value::to_string)
}

/// `{"allow":true,"user":..,"channels":[..],"data":..,"expires_at":N}`, or
/// `{"allow":false,"status":403,"reason":..}`, or `{"allow":false,"close_code":4403,"reason":..}`.
pub fn parse_connect(body: &[u8]) -> Result<ConnectAnswer, BadAnswer> {
    let m = object(body)?;
    if !allow_flag(&m)? {
        let reason = reason(&m)?;
        if let Some(code) = m.get("close_code") {
            let code = code
                .as_u64()
                .filter(|c| (4000..=4999).contains(c))
                .ok_or(BadAnswer("close_code must be 4000..=4999"))?;
            return Ok(ConnectAnswer::DenyClose {
                code: code as u16,
                reason,
            });
        }
        let status = match m.get("status") {
            None | Some(Value::Null) => 403,
            Some(s) => s
                .as_u64()
                .filter(|s| (400..=599).contains(s))
                .ok_or(BadAnswer("status must be 400..=599"))? as u16,
        };
        return Ok(ConnectAnswer::DenyStatus { status, reason });
    }
    let user = match m.get("user") {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) if check_user(u).is_ok() => Some(u.clone()),
        Some(_) => return Err(BadAnswer("user must be a valid user name")),
    };
    let channels = match m.get("channels") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) if list.len() <= MAX_CONNECT_CHANNELS => list
            .iter()
            .map(|c| match c {
                Value::String(c) if check_channel(c).is_ok() => Ok(c.clone()),
                _ => Err(BadAnswer("channels must be valid channel names")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(BadAnswer("channels must be a list of channel names")),
    };
    let expires_at = match m.get("expires_at") {
        None | Some(Value::Null) => None,
        Some(e) => Some(
            e.as_u64()
                .ok_or(BadAnswer("expires_at must be seconds since the epoch"))?,
        ),
    };
    Ok(ConnectAnswer::Allow(Allowed {
        user,
        channels,
        data: data_text(&m),
        expires_at,
    }))
}

/// `{"allow":true}` (a publish may add `"data":..`), or `{"allow":false,"reason":..}`.
pub fn parse_decision(body: &[u8]) -> Result<Decision, BadAnswer> {
    let m = object(body)?;
    if allow_flag(&m)? {
        Ok(Decision::Allow {
            data: data_text(&m),
        })
    } else {
        Ok(Decision::Deny {
            reason: reason(&m)?,
        })
    }
}

fn channels(m: &Map<String, Value>, key: &str) -> Result<Vec<String>, BadAnswer> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(list)) if list.len() <= MAX_CONNECT_CHANNELS => list
            .iter()
            .map(|c| match c {
                Value::String(c) if check_channel(c).is_ok() => Ok(c.clone()),
                _ => Err(BadAnswer("channel lists hold valid channel names")),
            })
            .collect(),
        Some(_) => Err(BadAnswer("channel lists hold valid channel names")),
    }
}

/// `{"send":[..],"subscribe":[..],"unsubscribe":[..],"publish":[{"channel":..,"data":..}],
/// "close":{"code":4000,"reason":..}}`, every key optional; a string in `send` goes out as its
/// text, any other value as its JSON.
pub fn parse_forward(body: &[u8]) -> Result<ForwardAnswer, BadAnswer> {
    let m = object(body)?;
    let send = match m.get("send") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        Some(_) => return Err(BadAnswer("send must be a list")),
    };
    let publish = match m.get("publish") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .map(|p| {
                let channel = p.get("channel").and_then(Value::as_str);
                match (channel, p.get("data")) {
                    (Some(c), Some(d)) if check_channel(c).is_ok() => {
                        Ok((c.to_owned(), d.to_string()))
                    }
                    _ => Err(BadAnswer("publish entries are {channel, data}")),
                }
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(BadAnswer("publish must be a list")),
    };
    let close = match m.get("close") {
        None | Some(Value::Null) => None,
        Some(Value::Object(c)) => {
            let code = c
                .get("code")
                .and_then(Value::as_u64)
                .filter(|c| (4000..=4999).contains(c))
                .ok_or(BadAnswer("close.code must be 4000..=4999"))?;
            Some((code as u16, reason(c)?))
        }
        Some(_) => return Err(BadAnswer("close must be {code, reason}")),
    };
    Ok(ForwardAnswer {
        send,
        subscribe: channels(&m, "subscribe")?,
        unsubscribe: channels(&m, "unsubscribe")?,
        publish,
        close,
    })
}

/// `{"result":..}`, or `{"error":{"code":..,"message":..}}`.
pub fn parse_rpc(body: &[u8]) -> Result<RpcAnswer, BadAnswer> {
    let m = object(body)?;
    if let Some(e) = m.get("error").filter(|e| !e.is_null()) {
        let text = |k: &str, default: &str| match e.get(k) {
            None | Some(Value::Null) => Ok(default.to_owned()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(BadAnswer("error.code and error.message must be strings")),
        };
        return Ok(RpcAnswer::Error {
            code: text("code", "rpc_error")?,
            message: text("message", "")?,
        });
    }
    match m.get("result") {
        Some(r) => Ok(RpcAnswer::Result(r.to_string())),
        None => Err(BadAnswer("an rpc answer has result or error")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_answers_allow_or_deny_two_ways() {
        let a = parse_connect(
            br#"{"allow":true,"user":"ann","channels":["chat:1"],"data":{"n":1},"expires_at":9}"#,
        )
        .unwrap();
        assert_eq!(
            a,
            ConnectAnswer::Allow(Allowed {
                user: Some("ann".into()),
                channels: vec!["chat:1".into()],
                data: Some("{\"n\":1}".into()),
                expires_at: Some(9),
            })
        );
        assert_eq!(
            parse_connect(br#"{"allow":false,"status":401,"reason":"no session"}"#),
            Ok(ConnectAnswer::DenyStatus {
                status: 401,
                reason: "no session".into()
            })
        );
        assert_eq!(
            parse_connect(br#"{"allow":false,"close_code":4403,"reason":"banned"}"#),
            Ok(ConnectAnswer::DenyClose {
                code: 4403,
                reason: "banned".into()
            })
        );
        assert_eq!(
            parse_connect(br#"{"allow":false}"#),
            Ok(ConnectAnswer::DenyStatus {
                status: 403,
                reason: "denied".into()
            })
        );
    }

    #[test]
    fn malformed_answers_are_refused() {
        for body in [
            &b"nope"[..],
            b"[]",
            b"{}",
            br#"{"allow":"yes"}"#,
            br#"{"allow":false,"status":200}"#,
            br#"{"allow":false,"close_code":1000}"#,
            br#"{"allow":true,"channels":["bad channel"]}"#,
            br#"{"allow":true,"channels":"a"}"#,
            br#"{"allow":true,"expires_at":-1}"#,
            br#"{"allow":false,"reason":7}"#,
        ] {
            assert!(
                parse_connect(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(parse_rpc(b"{}").is_err());
        assert!(parse_rpc(br#"{"error":{"code":1}}"#).is_err());
        assert!(parse_decision(b"{}").is_err());
    }

    #[test]
    fn decisions_and_rpc_results() {
        assert_eq!(
            parse_decision(br#"{"allow":true,"data":"x"}"#),
            Ok(Decision::Allow {
                data: Some("\"x\"".into())
            })
        );
        assert_eq!(
            parse_decision(br#"{"allow":false,"reason":"no"}"#),
            Ok(Decision::Deny {
                reason: "no".into()
            })
        );
        assert_eq!(
            parse_rpc(br#"{"result":[1,2]}"#),
            Ok(RpcAnswer::Result("[1,2]".into()))
        );
        assert_eq!(
            parse_rpc(br#"{"error":{"code":"nope","message":"m"}}"#),
            Ok(RpcAnswer::Error {
                code: "nope".into(),
                message: "m".into()
            })
        );
    }

    #[test]
    fn forward_answers_carry_messages_and_actions() {
        let a = parse_forward(
            br#"{"send":["hi",{"n":1}],"subscribe":["a"],"unsubscribe":["b"],
                "publish":[{"channel":"c","data":[1]}],"close":{"code":4000,"reason":"r"}}"#,
        )
        .unwrap();
        assert_eq!(a.send, vec!["hi".to_owned(), "{\"n\":1}".to_owned()]);
        assert_eq!(
            (a.subscribe, a.unsubscribe),
            (vec!["a".into()], vec!["b".into()])
        );
        assert_eq!(a.publish, vec![("c".into(), "[1]".into())]);
        assert_eq!(a.close, Some((4000, "r".into())));
        assert_eq!(parse_forward(b"{}"), Ok(ForwardAnswer::default()));
        for bad in [
            &br#"{"send":"x"}"#[..],
            br#"{"publish":[{"channel":"c"}]}"#,
            br#"{"close":{"code":1000}}"#,
            br#"{"subscribe":["bad channel"]}"#,
        ] {
            assert!(
                parse_forward(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn long_reasons_are_cut_at_a_character_boundary() {
        let long = format!(r#"{{"allow":false,"reason":"{}"}}"#, "é".repeat(100));
        let Decision::Deny { reason } = parse_decision(long.as_bytes()).unwrap() else {
            panic!("a denial");
        };
        assert!(reason.len() <= MAX_REASON_BYTES && reason.len() >= MAX_REASON_BYTES - 1);
    }
}
