//! What an API request asks of the router ([`Command`]), parsed and validated from its JSON body
//! (simd-json, in place) or query, and what the router answers ([`Outcome`]).
//!
//! Validation is complete here: a `Command` names only well-formed channels, connection ids that
//! parse, close codes in 4000..=4999, and `data` as JSON text ready to be embedded in a delivery.

use std::sync::Arc;

use frame_simd::CloseCode;
use simd_json::prelude::*;
use simd_json::BorrowedValue;

use crate::conn::ConnId;
use crate::json::{nesting_within_limit, parser_safe};
use crate::metrics::{CloseLabel, ShardMetrics};
use crate::names::{check_channel, check_user};
use crate::query::query_param;
use crate::router::inbox::{ConnInfo, Lookup};
use crate::router::HistoryRead;

use super::error::ApiError;
use super::routes::Route;

/// Channels one publish may name.
pub const MAX_PUBLISH_CHANNELS: usize = 128;
/// Longest close reason: a close frame's payload is at most 125 bytes, 2 of them the code.
pub const MAX_REASON_BYTES: usize = 123;
/// The close code of an API disconnect that names none.
pub const DEFAULT_DISCONNECT_CODE: CloseCode = CloseCode(4000);

/// Work for the router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Deliver `data` to the subscribers of each channel (`from` null).
    Publish {
        /// One or more channels, in the order given.
        channels: Vec<Arc<str>>,
        /// The `data` value as JSON text.
        data: Box<str>,
        /// The string itself when `data` is a JSON string (what raw-mode subscribers get).
        text: Option<Box<str>>,
    },
    /// Deliver `data` as a `direct` message to every connection of `user`.
    PublishUser {
        /// The user (a token's `sub`).
        user: Box<str>,
        /// The `data` value as JSON text.
        data: Box<str>,
    },
    /// Deliver `data` as a `direct` message to one connection.
    Send {
        /// The target.
        conn: ConnId,
        /// The `data` value as JSON text.
        data: Box<str>,
    },
    /// Close connections with `code` and `reason`.
    Disconnect {
        /// One connection or every connection of a user.
        target: Target,
        /// 4000..=4999.
        code: CloseCode,
        /// At most [`MAX_REASON_BYTES`] bytes.
        reason: Box<str>,
    },
    /// List channels with their subscriber counts.
    Channels,
    /// List a channel's connections and users.
    Presence {
        /// The channel.
        channel: Arc<str>,
    },
    /// The last publications of a channel with history.
    History {
        /// The channel.
        channel: Arc<str>,
        /// How many (`None`: all it keeps).
        limit: Option<usize>,
    },
    /// Emit a Socket.IO event to a namespace, a room or one socket.
    SocketIoEmit(SocketIoEmit),
    /// Connection and message totals.
    Stats,
    /// Describe one connection or every connection of a user.
    Connections(Lookup),
    /// The Prometheus text.
    Metrics,
}

/// A Socket.IO emit from the backend (`POST /api/socketio/emit`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketIoEmit {
    /// The namespace (`/` by default).
    pub namespace: Box<str>,
    /// The channel of the target: the namespace's, a room's or a socket's own room.
    pub channel: Arc<str>,
    /// The connection of the socket not to deliver to (from `except`).
    pub except: Option<ConnId>,
    /// The event name.
    pub event: Box<str>,
    /// The arguments, each as JSON text.
    pub args: Vec<Box<str>>,
}

/// Longest Socket.IO namespace or event name from the API, in bytes (as from clients).
pub const MAX_SOCKETIO_NAME_BYTES: usize = 128;
/// Arguments one Socket.IO emit may carry.
pub const MAX_SOCKETIO_ARGS: usize = 64;

/// Whom a disconnect closes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// One connection.
    Conn(ConnId),
    /// Every connection of a user.
    User(Box<str>),
}

/// The router's answer to a [`Command`].
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Queued for delivery (202).
    Accepted,
    /// A `send` or `disconnect` named a connection that is not live (404).
    UnknownConnection,
    /// A queue on the way is full (429, `Retry-After: 1`).
    Busy,
    /// Other nodes could not be reached: the broker is down (503, `Retry-After: 1`).
    BrokerDown,
    /// Other nodes could not be reached: larger than the broker carries (413).
    TooLargeForBroker,
    /// Channels and subscriber counts, in any order (sorted by name when written).
    Channels(Vec<(Arc<str>, u64)>),
    /// A channel's members: connection ids and their users.
    Presence {
        /// The channel asked about.
        channel: Arc<str>,
        /// Its subscribers.
        members: Vec<(ConnId, Option<Arc<str>>)>,
    },
    /// A channel's last publications.
    History(HistoryRead),
    /// The channel keeps no history (404).
    NoHistory,
    /// Totals.
    Stats(Stats),
    /// The connections a lookup found (a lookup by id that found none is `UnknownConnection`).
    Connections(Vec<ConnInfo>),
    /// The Prometheus text.
    Metrics(String),
}

/// What `GET /api/stats` reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Open connections (client and API).
    pub connections: u64,
    /// Per shard.
    pub shards: Vec<ShardStats>,
    /// Data messages received from clients.
    pub messages_in: u64,
    /// Data messages sent to clients.
    pub messages_out: u64,
    /// Publishes accepted.
    pub publishes: u64,
    /// Deliveries queued.
    pub deliveries: u64,
    /// 4008 closes.
    pub slow_consumer_disconnects: u64,
    /// Connections accepted since start (client and API).
    pub accepted: u64,
    /// Connections closed since start.
    pub closed: u64,
    /// Close frames sent, by `gateway_closes_total` label, in [`CloseLabel::ALL`] order.
    pub closes: Vec<(&'static str, u64)>,
    /// The broker's view (`None` with `--broker memory`).
    pub broker: Option<BrokerStats>,
}

/// The `broker` part of [`Stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BrokerStats {
    /// The broker's kind (`redis`, `nats`).
    pub kind: &'static str,
    /// This node's id.
    pub node: u16,
    /// The broker is reachable.
    pub connected: bool,
    /// Nodes alive according to heartbeats, this one included, ascending.
    pub nodes: Vec<u16>,
    /// Channels this node is subscribed to on the broker.
    pub channels: u64,
}

/// One shard's line in [`Stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// The shard index.
    pub shard: u8,
    /// Open connections.
    pub connections: u64,
    /// Messages waiting in its inbound queue.
    pub queue_depth: u64,
}

impl Stats {
    /// Totals from every shard's metrics (in shard order).
    pub fn from_metrics(shards: &[&ShardMetrics]) -> Stats {
        let mut s = Stats {
            closes: CloseLabel::ALL.iter().map(|l| (l.label(), 0)).collect(),
            ..Stats::default()
        };
        for (i, m) in shards.iter().enumerate() {
            s.accepted += m.accepted.get();
            s.closed += m.closed.get();
            for (total, c) in s.closes.iter_mut().zip(&m.closes) {
                total.1 += c.get();
            }
            let open = m.accepted.get().saturating_sub(m.closed.get());
            s.connections += open;
            s.shards.push(ShardStats {
                shard: u8::try_from(i).unwrap_or(u8::MAX),
                connections: open,
                queue_depth: m.queue_depth.get(),
            });
            s.messages_in += m.messages_in.get();
            s.messages_out += m.messages_out.get();
            s.publishes += m.publishes.get();
            s.deliveries += m.deliveries.get();
            s.slow_consumer_disconnects += m.slow_consumer_disconnects.get();
        }
        s
    }
}

/// Build the command of a routed, authorized request from its query and body. `Healthz` has
/// no command (the caller answers it) and gets `None`.
pub fn parse_command(
    route: Route,
    query: &str,
    body: &mut [u8],
) -> Result<Option<Command>, ApiError> {
    Ok(Some(match route {
        Route::Healthz | Route::Admin(_) => return Ok(None),
        Route::Metrics => Command::Metrics,
        Route::Channels => Command::Channels,
        Route::Stats => Command::Stats,
        Route::Connections => {
            let conn = query_param(query, "conn");
            let user = query_param(query, "user");
            Command::Connections(match (conn, user) {
                (Some(_), Some(_)) => {
                    return Err(ApiError::BadField(
                        "user",
                        "may not be given together with conn",
                    ))
                }
                (Some(c), None) => {
                    Lookup::Conn(c.parse::<ConnId>().map_err(|_| {
                        ApiError::BadField("conn", "is not a decimal connection id")
                    })?)
                }
                (None, Some(u)) => {
                    check_user(&u).map_err(|e| ApiError::BadField("user", e.message()))?;
                    Lookup::User(u.into())
                }
                (None, None) => return Err(ApiError::MissingField("conn")),
            })
        }
        Route::Presence => {
            let channel = query_param(query, "channel").ok_or(ApiError::MissingField("channel"))?;
            Command::Presence {
                channel: channel_name(&channel)?,
            }
        }
        Route::History => {
            let channel = query_param(query, "channel").ok_or(ApiError::MissingField("channel"))?;
            let limit =
                match query_param(query, "limit") {
                    None => None,
                    Some(l) => Some(l.parse::<usize>().map_err(|_| {
                        ApiError::BadField("limit", "is not a non-negative integer")
                    })?),
                };
            Command::History {
                channel: channel_name(&channel)?,
                limit,
            }
        }
        Route::Publish => {
            let value = json_object(body)?;
            let data = data_field(&value)?;
            let channels = match (field(&value, "channel"), field(&value, "channels")) {
                (Some(_), Some(_)) => {
                    return Err(ApiError::BadField(
                        "channels",
                        "may not be given together with channel",
                    ))
                }
                (Some(c), None) => vec![channel_name(
                    c.as_str()
                        .ok_or(ApiError::BadField("channel", "is not a string"))?,
                )?],
                (None, Some(list)) => {
                    let list = list
                        .as_array()
                        .ok_or(ApiError::BadField("channels", "is not an array of strings"))?;
                    if list.is_empty() {
                        return Err(ApiError::BadField("channels", "is empty"));
                    }
                    if list.len() > MAX_PUBLISH_CHANNELS {
                        return Err(ApiError::BadField(
                            "channels",
                            "names more than 128 channels",
                        ));
                    }
                    list.iter()
                        .map(|c| {
                            channel_name(c.as_str().ok_or(ApiError::BadField(
                                "channels",
                                "is not an array of strings",
                            ))?)
                        })
                        .collect::<Result<Vec<_>, _>>()?
                }
                (None, None) => return Err(ApiError::MissingField("channel")),
            };
            let text = field(&value, "data")
                .and_then(|d| d.as_str())
                .map(Box::from);
            Command::Publish {
                channels,
                data,
                text,
            }
        }
        Route::PublishUser => {
            let value = json_object(body)?;
            let data = data_field(&value)?;
            Command::PublishUser {
                user: user_field(&value)?.ok_or(ApiError::MissingField("user"))?,
                data,
            }
        }
        Route::Send => {
            let value = json_object(body)?;
            let data = data_field(&value)?;
            Command::Send {
                conn: conn_field(&value)?.ok_or(ApiError::MissingField("conn"))?,
                data,
            }
        }
        Route::SocketIoEmit => Command::SocketIoEmit(socketio_emit(&json_object(body)?)?),
        Route::Disconnect => {
            let value = json_object(body)?;
            let target = match (conn_field(&value)?, user_field(&value)?) {
                (Some(_), Some(_)) => {
                    return Err(ApiError::BadField(
                        "user",
                        "may not be given together with conn",
                    ))
                }
                (Some(conn), None) => Target::Conn(conn),
                (None, Some(user)) => Target::User(user),
                (None, None) => return Err(ApiError::MissingField("conn")),
            };
            let code = match field(&value, "code") {
                None => DEFAULT_DISCONNECT_CODE,
                Some(c) => match c.as_u64().and_then(|n| u16::try_from(n).ok()) {
                    Some(n @ 4000..=4999) => CloseCode(n),
                    _ => {
                        return Err(ApiError::BadField(
                            "code",
                            "is not an integer in 4000..=4999",
                        ))
                    }
                },
            };
            let reason = match field(&value, "reason") {
                None => "disconnected".into(),
                Some(r) => {
                    let r = r
                        .as_str()
                        .ok_or(ApiError::BadField("reason", "is not a string"))?;
                    if r.len() > MAX_REASON_BYTES {
                        return Err(ApiError::BadField("reason", "is longer than 123 bytes"));
                    }
                    r.into()
                }
            };
            Command::Disconnect {
                target,
                code,
                reason,
            }
        }
    }))
}

/// `{"namespace"?, "room"? | "socket"?, "except"?, "event", "args"?}`.
fn socketio_emit(value: &BorrowedValue<'_>) -> Result<SocketIoEmit, ApiError> {
    let text = |name: &'static str| -> Result<Option<&str>, ApiError> {
        match field(value, name) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or(ApiError::BadField(name, "is not a string")),
        }
    };
    let namespace = text("namespace")?.unwrap_or("/");
    let ok_namespace = namespace.starts_with('/')
        && namespace.len() <= MAX_SOCKETIO_NAME_BYTES
        && namespace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'/' | b'-'));
    if !ok_namespace {
        return Err(ApiError::BadField(
            "namespace",
            "is not / followed by A-Z a-z 0-9 _ . @ / - (at most 128 bytes)",
        ));
    }
    let channel = match (text("room")?, text("socket")?) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadField(
                "socket",
                "may not be given together with room",
            ))
        }
        (Some(target), None) | (None, Some(target)) => {
            channel_name(&format!("sio:{namespace}:{target}"))?
        }
        (None, None) => channel_name(&format!("sio:{namespace}"))?,
    };
    let except = match text("except")? {
        None => None,
        Some(id) => Some(socket_conn(id).ok_or(ApiError::BadField(
            "except",
            "is not a socket id of this gateway",
        ))?),
    };
    let event = text("event")?.ok_or(ApiError::MissingField("event"))?;
    if event.len() > MAX_SOCKETIO_NAME_BYTES {
        return Err(ApiError::BadField("event", "is longer than 128 bytes"));
    }
    let args = match field(value, "args") {
        None => Vec::new(),
        Some(a) => {
            let list = a
                .as_array()
                .ok_or(ApiError::BadField("args", "is not an array"))?;
            if list.len() > MAX_SOCKETIO_ARGS {
                return Err(ApiError::BadField("args", "holds more than 64 arguments"));
            }
            list.iter().map(|v| v.encode().into_boxed_str()).collect()
        }
    };
    Ok(SocketIoEmit {
        namespace: namespace.into(),
        channel,
        except,
        event: event.into(),
        args,
    })
}

/// The connection a socket id names: its first 8 bytes (unpadded base64url of 16).
pub fn socket_conn(id: &str) -> Option<ConnId> {
    let bytes = base64_simd::URL_SAFE_NO_PAD.decode_to_vec(id).ok()?;
    let head: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    (bytes.len() == 16).then(|| ConnId::from_bits(u64::from_be_bytes(head)))
}

fn json_object(body: &mut [u8]) -> Result<BorrowedValue<'_>, ApiError> {
    if !nesting_within_limit(body) {
        return Err(ApiError::TooDeep);
    }
    if !parser_safe(body) {
        return Err(ApiError::BadJson);
    }
    let value = simd_json::to_borrowed_value(body).map_err(|_| ApiError::BadJson)?;
    if value.as_object().is_none() {
        return Err(ApiError::BadJson);
    }
    Ok(value)
}

fn field<'v, 'a>(value: &'v BorrowedValue<'a>, name: &str) -> Option<&'v BorrowedValue<'a>> {
    value.as_object().and_then(|o| o.get(name))
}

/// `data`: any JSON value (`null` included), required.
fn data_field(value: &BorrowedValue<'_>) -> Result<Box<str>, ApiError> {
    field(value, "data")
        .map(|d| d.encode().into_boxed_str())
        .ok_or(ApiError::MissingField("data"))
}

fn user_field(value: &BorrowedValue<'_>) -> Result<Option<Box<str>>, ApiError> {
    let Some(u) = field(value, "user") else {
        return Ok(None);
    };
    let name = u
        .as_str()
        .ok_or(ApiError::BadField("user", "is not a string"))?;
    check_user(name).map_err(|e| ApiError::BadField("user", e.message()))?;
    Ok(Some(name.into()))
}

/// `conn`: a connection id as a decimal string (a JSON number would lose precision past 2^53).
fn conn_field(value: &BorrowedValue<'_>) -> Result<Option<ConnId>, ApiError> {
    let Some(c) = field(value, "conn") else {
        return Ok(None);
    };
    let text = c.as_str().ok_or(ApiError::BadField(
        "conn",
        "is not a string (connection ids are decimal strings)",
    ))?;
    text.parse::<ConnId>()
        .map(Some)
        .map_err(|_| ApiError::BadField("conn", "is not a decimal connection id"))
}

/// A channel name that passes the channel rule (`crate::names`).
pub fn channel_name(name: &str) -> Result<Arc<str>, ApiError> {
    check_channel(name).map_err(|e| ApiError::BadChannel(e.message()))?;
    Ok(name.into())
}
