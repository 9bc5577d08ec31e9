//! `/ws`: the JSON client protocol (`gateway/docs/client-protocol.md`). A text message is one
//! request, parsed in place ([`request`]); its operation runs against the router and the answer
//! ([`reply`]) goes into the connection's output, or later, when other shards must answer first
//! (a private message's outcome, a presence list). Nothing here closes a connection: a bad
//! request gets an error reply.

pub mod reply;
pub mod request;
#[cfg(test)]
mod tests;

use frame_simd::Opcode;
use simd_json::prelude::*;

use crate::auth::{unix_now, Identity, TokenError};
use crate::conn::{ConnId, Output};
use crate::json::write_value;
use crate::router::history::Epoch;
use crate::router::inbox::ReplyTo;
use crate::router::{HistoryRead, Member, Recover, RouterError};

use self::request::{ErrorCode, Op, ProtocolError, Request};
use super::Dispatch;

/// Send the welcome: the connection's id and user.
pub(super) fn open(d: &mut Dispatch<'_>, out: &mut Output) {
    let text = &mut d.app.text;
    text.clear();
    let user = d.router.user(&d.client.session).map(|u| &**u);
    reply::welcome(text, d.id, user);
    if let Some(data) = d.app.welcome_data.take() {
        // The connect hook's data joins the welcome object.
        text.pop();
        text.extend_from_slice(b",\"data\":");
        text.extend_from_slice(data.as_bytes());
        text.push(b'}');
    }
    out.frame(Opcode::Text, text);
}

/// A message from a `/ws` client: one request.
pub(super) fn on_message(
    d: &mut Dispatch<'_>,
    opcode: Opcode,
    payload: &mut [u8],
    out: &mut Output,
) {
    if opcode != Opcode::Text {
        return d.reply_err(
            out,
            b"",
            ProtocolError::new(ErrorCode::BadJson, "requests are JSON text frames"),
        );
    }
    let Some(mut parser) = d.app.parser.take() else {
        return;
    };
    parser.parse(payload, |parsed| match parsed {
        Ok(req) => d.on_op(req, out),
        Err((id, e)) => {
            let id = d.id_text(id);
            d.reply_err(out, &id, e);
            d.app.id_text = id;
        }
    });
    d.app.parser = Some(parser);
}

/// The reply to a private message sent earlier, now that its target's shard answered.
pub fn write_sent(text: &mut Vec<u8>, reply: &ReplyTo, delivered: bool) {
    text.clear();
    if delivered {
        reply::ok(text, &reply.id);
    } else {
        reply::error(text, &reply.id, unknown_connection());
    }
}

/// The reply to a presence query, now that every shard answered.
pub fn write_presence(text: &mut Vec<u8>, reply: &ReplyTo, members: &[Member]) {
    text.clear();
    reply::presence(text, &reply.id, members);
}

/// The deferred reply to a subscribe on a channel with history, now that its owner answered.
pub fn write_position(
    text: &mut Vec<u8>,
    reply: &ReplyTo,
    epoch: Epoch,
    offset: u64,
    recovered: Option<bool>,
) {
    text.clear();
    reply::position(text, &reply.id, epoch, offset, recovered);
}

/// The reply to a `history` request, now that the channel's owner answered.
pub fn write_history(text: &mut Vec<u8>, reply: &ReplyTo, read: &HistoryRead) {
    text.clear();
    reply::history(text, &reply.id, read);
}

/// The error reply to a subscribe or `history` on a channel whose history the broker keeps,
/// when the broker did not answer in time.
pub fn write_history_unavailable(text: &mut Vec<u8>, reply: &ReplyTo) {
    text.clear();
    let e = ProtocolError::new(
        ErrorCode::BrokerUnavailable,
        "the history store (the broker) did not answer: retry later",
    );
    reply::error(text, &reply.id, e);
}

impl Dispatch<'_> {
    /// The request id as JSON text, in the shard's reusable buffer (taken; give it back).
    fn id_text(&mut self, id: Option<simd_json::tape::Value<'_, '_>>) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.app.id_text);
        buf.clear();
        if let Some(id) = id {
            let _ = write_value(&mut buf, id);
        }
        buf
    }

    fn reply_ok(&mut self, out: &mut Output, id: &[u8]) {
        let text = &mut self.app.text;
        text.clear();
        reply::ok(text, id);
        out.frame(Opcode::Text, text);
    }

    fn reply_err(&mut self, out: &mut Output, id: &[u8], e: ProtocolError) {
        let text = &mut self.app.text;
        text.clear();
        reply::error(text, id, e);
        out.frame(Opcode::Text, text);
    }

    fn on_op(&mut self, req: Request<'_, '_>, out: &mut Output) {
        let id = self.id_text(req.id);
        // Channels whose decisions a backend takes (asked before anything else happens).
        let hooked = match req.op {
            Op::Subscribe {
                channel,
                recover: None,
            } => self.has_subscribe_hook(channel),
            Op::Publish { channel, .. } => self.has_publish_hook(channel),
            _ => false,
        };
        let session = &mut self.client.session;
        let result = match req.op {
            Op::Ping => Ok(true),
            Op::Subscribe { channel, .. } if !session.may_subscribe(channel) => {
                Err(forbidden("the token does not allow this channel"))
            }
            Op::Subscribe {
                channel,
                recover: None,
            } if hooked => self
                .ask_subscribe(channel, &id)
                .unwrap_or_else(|| self.subscribe_now(channel, &id)),
            Op::Subscribe { channel, recover } if self.router.has_history(channel) => {
                let reply = ReplyTo {
                    conn: self.id,
                    id: Box::from(&id[..]),
                };
                let recover = recover.map(|(offset, epoch)| Recover {
                    offset,
                    epoch: Epoch::parse(epoch),
                });
                self.router
                    .subscribe_at(self.id, session, channel, recover, reply)
                    .map(|deferred| !deferred)
                    .map_err(protocol_error)
            }
            Op::Subscribe {
                recover: Some(_), ..
            } => Err(no_history()),
            Op::Subscribe { channel, .. } => self
                .router
                .subscribe(self.id, session, channel)
                .map(|()| true)
                .map_err(protocol_error),
            Op::History { channel, .. } if !session.may_subscribe(channel) => {
                Err(forbidden("the token does not allow this channel"))
            }
            Op::History { channel, .. } if !self.router.has_history(channel) => Err(no_history()),
            Op::History { channel, limit } => {
                let reply = ReplyTo {
                    conn: self.id,
                    id: Box::from(&id[..]),
                };
                self.router.history(channel, limit, reply);
                Ok(false)
            }
            Op::Unsubscribe { channel } => self
                .router
                .unsubscribe(self.id, session, channel)
                .map(|()| true)
                .map_err(protocol_error),
            Op::Publish { channel, .. } if !session.may_publish(channel) => Err(forbidden(
                "the token does not allow publishing on this channel",
            )),
            Op::Publish {
                channel,
                data,
                skip_self,
            } if hooked => self.with_json(data, |this, json| {
                this.ask_publish(channel, json, skip_self, &id)
                    .unwrap_or_else(|| this.publish_json(channel, json, skip_self))
            }),
            Op::Publish {
                channel,
                data,
                skip_self,
            } => self.publish(channel, data, skip_self),
            Op::Rpc { method, data } => match data {
                Some(data) => self.with_json(data, |this, json| this.ask_rpc(method, json, &id)),
                None => self.ask_rpc(method, b"null", &id),
            },
            Op::Send { conn, data } => self.send(conn, data, &id),
            Op::Presence { channel } => {
                let reply = ReplyTo {
                    conn: self.id,
                    id: Box::from(&id[..]),
                };
                self.router.presence(channel, reply);
                Ok(false)
            }
            Op::Refresh { token } => self.refresh(token),
        };
        match result {
            Ok(true) => self.reply_ok(out, &id),
            Ok(false) => {}
            Err(e) => self.reply_err(out, &id, e),
        }
        self.app.id_text = id;
    }

    fn refresh(&mut self, token: &str) -> Result<bool, ProtocolError> {
        let claims = match self.app.auth.verify(token, unix_now()) {
            Ok(Identity::Token(claims)) => claims,
            Ok(Identity::Anonymous { .. }) => {
                return Err(ProtocolError::new(ErrorCode::BadToken, "no token"))
            }
            Err(TokenError::Expired { .. }) => {
                return Err(ProtocolError::new(
                    ErrorCode::TokenExpired,
                    "the token has expired",
                ))
            }
            Err(_) => {
                return Err(ProtocolError::new(
                    ErrorCode::BadToken,
                    "the token is malformed or its signature is wrong",
                ))
            }
        };
        let session = &self.client.session;
        let same_user = match &session.grants {
            Some(old) => old.sub == claims.sub,
            None => self.router.user(session).is_none_or(|u| **u == *claims.sub),
        };
        if !same_user {
            return Err(ProtocolError::new(
                ErrorCode::BadToken,
                "the token is for another user",
            ));
        }
        self.set_claims(claims);
        Ok(true)
    }

    fn has_subscribe_hook(&self, channel: &str) -> bool {
        self.app.calls.as_ref().is_some_and(|c| {
            crate::hooks::HookSettings::by_prefix(&c.hooks.settings.subscribe, channel).is_some()
        })
    }

    fn has_publish_hook(&self, channel: &str) -> bool {
        self.app.calls.as_ref().is_some_and(|c| {
            crate::hooks::HookSettings::by_prefix(&c.hooks.settings.publish, channel).is_some()
        })
    }

    /// Subscribe without history or recovery (a subscribe hook allowed it).
    pub(super) fn subscribe_now(
        &mut self,
        channel: &str,
        id: &[u8],
    ) -> Result<bool, ProtocolError> {
        let session = &mut self.client.session;
        if self.router.has_history(channel) {
            let reply = ReplyTo {
                conn: self.id,
                id: Box::from(id),
            };
            return self
                .router
                .subscribe_at(self.id, session, channel, None, reply)
                .map(|deferred| !deferred)
                .map_err(protocol_error);
        }
        self.router
            .subscribe(self.id, session, channel)
            .map(|()| true)
            .map_err(protocol_error)
    }

    /// Publish `json` (a JSON value's text) as this connection.
    pub(super) fn publish_json(
        &mut self,
        channel: &str,
        json: &[u8],
        skip_self: bool,
    ) -> Result<bool, ProtocolError> {
        // Bare subscribers get a string's text, anything else as JSON.
        let unquoted = match serde_json::from_slice::<serde_json::Value>(json) {
            Ok(serde_json::Value::String(s)) => Some(s),
            _ => None,
        };
        let bare = unquoted.as_deref().map_or(json, str::as_bytes);
        let user = self.router.user(&self.client.session).cloned();
        self.router
            .publish(
                channel,
                json,
                bare,
                Some(self.id),
                user.as_deref(),
                skip_self.then_some(self.id),
            )
            .map(|()| true)
            .map_err(protocol_error)
    }

    fn publish(
        &mut self,
        channel: &str,
        data: simd_json::tape::Value<'_, '_>,
        skip_self: bool,
    ) -> Result<bool, ProtocolError> {
        self.with_json(data, |this, json| {
            let bare: &[u8] = match data.as_str() {
                Some(s) => s.as_bytes(),
                None => json,
            };
            let user = this.router.user(&this.client.session).cloned();
            this.router
                .publish(
                    channel,
                    json,
                    bare,
                    Some(this.id),
                    user.as_deref(),
                    skip_self.then_some(this.id),
                )
                .map(|()| true)
                .map_err(protocol_error)
        })
    }

    fn send(
        &mut self,
        to: ConnId,
        data: simd_json::tape::Value<'_, '_>,
        id: &[u8],
    ) -> Result<bool, ProtocolError> {
        self.with_json(data, |this, json| {
            let user = this.router.user(&this.client.session).cloned();
            let reply = ReplyTo {
                conn: this.id,
                id: Box::from(id),
            };
            this.router
                .send(to, json, Some(this.id), user.as_deref(), Some(reply))
                .map(|()| false)
                .map_err(protocol_error)
        })
    }

    /// Run `f` with `data` encoded as JSON in the shard's text buffer, which is taken for the
    /// call and put back after, so a message costs no allocation once the buffer has grown.
    fn with_json(
        &mut self,
        data: simd_json::tape::Value<'_, '_>,
        f: impl FnOnce(&mut Self, &[u8]) -> Result<bool, ProtocolError>,
    ) -> Result<bool, ProtocolError> {
        let mut json = std::mem::take(&mut self.app.text);
        json.clear();
        let r = match write_value(&mut json, data) {
            Err(_) => Err(ProtocolError::new(
                ErrorCode::BadField,
                "data nests too deeply",
            )),
            Ok(()) => f(self, &json),
        };
        self.app.text = json;
        r
    }
}

/// A router refusal as the error reply a client gets.
fn protocol_error(e: RouterError) -> ProtocolError {
    match e {
        RouterError::Busy => ProtocolError::new(ErrorCode::Busy, "a queue is full: retry later"),
        RouterError::UnknownConnection => unknown_connection(),
        RouterError::TooManyChannels => ProtocolError::new(
            ErrorCode::TooManyChannels,
            "subscribed to as many channels as allowed (--max-channels-per-conn)",
        ),
        RouterError::NotSubscribed => {
            ProtocolError::new(ErrorCode::NotSubscribed, "not subscribed to this channel")
        }
        RouterError::BrokerDown => ProtocolError::new(
            ErrorCode::BrokerUnavailable,
            "the broker is unreachable: only this node's subscribers were served",
        ),
        RouterError::TooLargeForBroker => ProtocolError::new(
            ErrorCode::TooLargeForBroker,
            "larger than the broker carries (its max_payload): only this node's subscribers \
             were served",
        ),
    }
}

/// The error for `recover` or `history` on a channel that keeps none.
fn no_history() -> ProtocolError {
    ProtocolError::new(
        ErrorCode::NoHistory,
        "this channel keeps no history (see --history)",
    )
}

/// The error for what the connection's token does not allow.
fn forbidden(message: &'static str) -> ProtocolError {
    ProtocolError::new(ErrorCode::Forbidden, message)
}

/// The error for a stale or unknown connection id.
fn unknown_connection() -> ProtocolError {
    ProtocolError::new(ErrorCode::UnknownConnection, "no such connection")
}
