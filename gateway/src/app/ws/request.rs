//! Requests of the client protocol on `/ws`: one JSON object per text frame.
//!
//! A request is parsed in place with simd-json from the unmasked payload (the shard's read
//! buffer or the message assembly buffer; parsing rewrites string escapes there). The parser
//! keeps its tape and scratch buffers between messages, so a request allocates nothing once they
//! have grown. Every malformed request maps to an [`ErrorCode`] and an error reply; nothing here
//! closes a connection.

use simd_json::prelude::*;
use simd_json::tape::Value;
use simd_json::{Buffers, Tape, ValueType};

use crate::conn::ConnId;
use crate::json::parser_safe;
use crate::names::check_channel;

/// The error codes of error replies (`"error":{"code":..}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// The message is not JSON (or not a JSON object, or a binary frame).
    BadJson,
    /// `op` names no operation.
    UnknownOp,
    /// A field the operation needs is absent.
    MissingField,
    /// A field has the wrong type or an impossible value.
    BadField,
    /// The channel name breaks the naming rules.
    BadChannel,
    /// Subscribing would pass `--max-channels-per-conn`.
    TooManyChannels,
    /// Unsubscribing from a channel the connection is not subscribed to.
    NotSubscribed,
    /// The token does not allow this.
    Forbidden,
    /// No live connection has this id.
    UnknownConnection,
    /// A queue between shards is full: retry later.
    Busy,
    /// The token is malformed or its signature is wrong.
    BadToken,
    /// The token has expired.
    TokenExpired,
    /// `recover` or `history` on a channel that keeps no history.
    NoHistory,
    /// The request needs other nodes and the broker is unreachable.
    BrokerUnavailable,
    /// The request needs other nodes and is larger than the broker carries.
    TooLargeForBroker,
    /// A backend hook failed (timeout, unreachable, breaker open, bad answer, busy).
    BackendUnavailable,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadJson => "bad_json",
            Self::UnknownOp => "unknown_op",
            Self::MissingField => "missing_field",
            Self::BadField => "bad_field",
            Self::BadChannel => "bad_channel",
            Self::TooManyChannels => "too_many_channels",
            Self::NotSubscribed => "not_subscribed",
            Self::Forbidden => "forbidden",
            Self::UnknownConnection => "unknown_connection",
            Self::Busy => "busy",
            Self::BadToken => "bad_token",
            Self::TokenExpired => "token_expired",
            Self::NoHistory => "no_history",
            Self::BrokerUnavailable => "broker_unavailable",
            Self::TooLargeForBroker => "too_large_for_broker",
            Self::BackendUnavailable => "backend_unavailable",
        }
    }
}

/// A refused request: the code and a message for humans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolError {
    /// The machine-readable code.
    pub code: ErrorCode,
    /// The human text.
    pub message: &'static str,
}

impl ProtocolError {
    /// An error with `code` and `message`.
    pub const fn new(code: ErrorCode, message: &'static str) -> ProtocolError {
        ProtocolError { code, message }
    }
}

/// One operation, borrowing from the parsed message.
#[derive(Clone, Copy, Debug)]
pub enum Op<'t, 'i> {
    /// Subscribe to a channel.
    Subscribe {
        /// A valid channel name.
        channel: &'i str,
        /// `recover`: the last offset the client got and its stream's epoch (as given).
        recover: Option<(u64, &'i str)>,
    },
    /// Unsubscribe from a channel.
    Unsubscribe {
        /// A valid channel name.
        channel: &'i str,
    },
    /// Publish `data` to a channel.
    Publish {
        /// A valid channel name.
        channel: &'i str,
        /// Any JSON value.
        data: Value<'t, 'i>,
        /// Do not deliver to the publisher itself.
        skip_self: bool,
    },
    /// Send `data` to one connection.
    Send {
        /// The target.
        conn: ConnId,
        /// Any JSON value.
        data: Value<'t, 'i>,
    },
    /// Read the last publications of a channel with history.
    History {
        /// A valid channel name.
        channel: &'i str,
        /// How many (`None`: all it keeps).
        limit: Option<usize>,
    },
    /// List the connections subscribed to a channel.
    Presence {
        /// A valid channel name.
        channel: &'i str,
    },
    /// Replace the connection's token.
    Refresh {
        /// The new token.
        token: &'i str,
    },
    /// Answered `ok`.
    Ping,
    /// A remote procedure call, forwarded to the rpc hook.
    Rpc {
        /// The method name.
        method: &'i str,
        /// Any JSON value (`null` when absent).
        data: Option<Value<'t, 'i>>,
    },
}

/// A parsed request: its operation and the `id` to echo.
#[derive(Clone, Copy, Debug)]
pub struct Request<'t, 'i> {
    /// The `id` as given (number or string), echoed in the reply.
    pub id: Option<Value<'t, 'i>>,
    /// What to do.
    pub op: Op<'t, 'i>,
}

/// The outcome of parsing one message: a request, or an error with the `id` when one was found.
pub type Parsed<'t, 'i> = Result<Request<'t, 'i>, (Option<Value<'t, 'i>>, ProtocolError)>;

/// The request parser: simd-json's buffers and tape, kept between messages (one per shard).
pub struct Parser {
    buffers: Buffers,
    tape: Tape<'static>,
}

impl Default for Parser {
    fn default() -> Self {
        Parser {
            buffers: Buffers::new(1024),
            tape: Tape::null().reset(),
        }
    }
}

impl std::fmt::Debug for Parser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Parser")
    }
}

impl Parser {
    /// Parse `input` in place and hand the outcome to `f`.
    pub fn parse<R>(&mut self, input: &mut [u8], f: impl FnOnce(Parsed<'_, '_>) -> R) -> R {
        if !parser_safe(input) {
            return f(Err((None, BAD_JSON)));
        }
        let mut tape = std::mem::replace(&mut self.tape, Tape::null().reset()).reset();
        let r = match simd_json::fill_tape(input, &mut self.buffers, &mut tape) {
            Ok(()) => f(parse_request(tape.as_value())),
            Err(_) => f(Err((None, BAD_JSON))),
        };
        self.tape = tape.reset();
        r
    }
}

const BAD_JSON: ProtocolError = ProtocolError::new(ErrorCode::BadJson, "message is not valid JSON");

/// Read the request in a parsed message.
pub fn parse_request<'t, 'i>(v: Value<'t, 'i>) -> Parsed<'t, 'i> {
    let Some(obj) = v.as_object() else {
        return Err((
            None,
            ProtocolError::new(ErrorCode::BadJson, "a request is a JSON object"),
        ));
    };
    let id = obj.get("id");
    if let Some(i) = id {
        if !matches!(
            i.value_type(),
            ValueType::I64 | ValueType::U64 | ValueType::F64 | ValueType::String
        ) {
            return Err((
                None,
                ProtocolError::new(ErrorCode::BadField, "id must be a number or a string"),
            ));
        }
    }
    let fail = |code, message| Err((id, ProtocolError::new(code, message)));
    let Some(op) = obj.get("op") else {
        return fail(ErrorCode::MissingField, "missing field op");
    };
    let Some(op) = op.as_str() else {
        return fail(ErrorCode::BadField, "op must be a string");
    };
    let channel = || -> Result<&'i str, ProtocolError> {
        let c = obj.get("channel").ok_or(ProtocolError::new(
            ErrorCode::MissingField,
            "missing field channel",
        ))?;
        let c = c.into_string().ok_or(ProtocolError::new(
            ErrorCode::BadField,
            "channel must be a string",
        ))?;
        check_channel(c).map_err(|e| ProtocolError::new(ErrorCode::BadChannel, e.message()))?;
        Ok(c)
    };
    let data = || {
        obj.get("data").ok_or(ProtocolError::new(
            ErrorCode::MissingField,
            "missing field data",
        ))
    };
    let op =
        match op {
            "subscribe" => channel().and_then(|channel| {
                let recover = match obj.get("recover") {
                    None => None,
                    Some(r) if r.value_type() == ValueType::Null => None,
                    Some(r) => Some(parse_recover(r)?),
                };
                Ok(Op::Subscribe { channel, recover })
            }),
            "history" => channel().and_then(|channel| {
                let limit = match obj.get("limit") {
                    None => None,
                    Some(l) if l.value_type() == ValueType::Null => None,
                    Some(l) => Some(
                        l.as_u64()
                            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
                            .ok_or(ProtocolError::new(
                                ErrorCode::BadField,
                                "limit must be a non-negative integer",
                            ))?,
                    ),
                };
                Ok(Op::History { channel, limit })
            }),
            "unsubscribe" => channel().map(|channel| Op::Unsubscribe { channel }),
            "presence" => channel().map(|channel| Op::Presence { channel }),
            "publish" => channel().and_then(|channel| {
                let data = data()?;
                let skip_self = match obj.get("skip_self") {
                    None => false,
                    Some(s) if s.value_type() == ValueType::Null => false,
                    Some(s) => s.as_bool().ok_or(ProtocolError::new(
                        ErrorCode::BadField,
                        "skip_self must be true or false",
                    ))?,
                };
                Ok(Op::Publish {
                    channel,
                    data,
                    skip_self,
                })
            }),
            "send" => obj
                .get("conn")
                .ok_or(ProtocolError::new(
                    ErrorCode::MissingField,
                    "missing field conn",
                ))
                .and_then(|c| {
                    let conn = parse_conn(c).ok_or(ProtocolError::new(
                        ErrorCode::BadField,
                        "conn must be a connection id (a decimal string)",
                    ))?;
                    Ok(Op::Send {
                        conn,
                        data: data()?,
                    })
                }),
            "refresh" => {
                obj.get("token")
                    .ok_or(ProtocolError::new(
                        ErrorCode::MissingField,
                        "missing field token",
                    ))
                    .and_then(|t| {
                        t.into_string().map(|token| Op::Refresh { token }).ok_or(
                            ProtocolError::new(ErrorCode::BadField, "token must be a string"),
                        )
                    })
            }
            "ping" => Ok(Op::Ping),
            "rpc" => match obj.get("method") {
                None => Err(ProtocolError::new(
                    ErrorCode::MissingField,
                    "missing field method",
                )),
                Some(m) => m
                    .into_string()
                    .map(|method| Op::Rpc {
                        method,
                        data: obj.get("data"),
                    })
                    .ok_or(ProtocolError::new(
                        ErrorCode::BadField,
                        "method must be a string",
                    )),
            },
            _ => Err(ProtocolError::new(ErrorCode::UnknownOp, "unknown op")),
        };
    match op {
        Ok(op) => Ok(Request { id, op }),
        Err(e) => Err((id, e)),
    }
}

/// `recover: {"offset": N, "epoch": "..."}`.
fn parse_recover<'i>(v: Value<'_, 'i>) -> Result<(u64, &'i str), ProtocolError> {
    const BAD: ProtocolError = ProtocolError::new(
        ErrorCode::BadField,
        "recover must be {\"offset\": <integer>, \"epoch\": <string>}",
    );
    let obj = v.as_object().ok_or(BAD)?;
    let offset = obj.get("offset").and_then(|o| o.as_u64()).ok_or(BAD)?;
    let epoch = obj.get("epoch").and_then(|e| e.into_string()).ok_or(BAD)?;
    Ok((offset, epoch))
}

/// A connection id from its decimal string (or, leniently, a JSON integer).
pub fn parse_conn(v: Value<'_, '_>) -> Option<ConnId> {
    let bits = match v.value_type() {
        ValueType::String => v.into_string()?.parse::<ConnId>().ok()?.to_bits(),
        ValueType::U64 | ValueType::I64 => v.as_u64()?,
        _ => return None,
    };
    Some(ConnId::from_bits(bits))
}
