//! `Dispatch`: the [`App`] a shard hands to a connection's input, serving `/ws` (JSON requests),
//! `/raw` (subscribed at connect, input ignored) and `/broadcast` (`pub:<text>` publishes to the
//! other subscribers). Replies go straight into the connection's output; effects on other
//! connections go through the [`Router`].

use std::sync::Arc;

use frame_simd::Opcode;
use simd_json::prelude::*;

use crate::auth::{unix_now, Identity, TokenError};
use crate::conn::{App, ConnId, Output, Refusal, Route};
use crate::metrics::HandshakeFailure;
use crate::protocol::channel::check_channel;
use crate::protocol::json::{write_str, write_value};
use crate::protocol::query::query_pairs;
use crate::protocol::{reply, ErrorCode, Op, ProtocolError, Request};

use super::channels::Kind;
use super::inbox::ReplyTo;
use super::session::Session;
use super::Router;

/// The channel `/broadcast` connections share.
pub const BROADCAST_CHANNEL: &str = "broadcast";
/// Longest user name taken from `?user=`, in bytes.
pub const MAX_USER_BYTES: usize = 64;

/// One connection's view of the router for one input call.
pub struct Dispatch<'a> {
    /// The connection.
    pub id: ConnId,
    /// Its router state.
    pub session: &'a mut Session,
    /// The shard's router.
    pub router: &'a mut Router,
}

impl App for Dispatch<'_> {
    fn on_open(
        &mut self,
        route: Route,
        req: &httparse::Request<'_, '_>,
        out: &mut Output,
    ) -> Result<(), Refusal> {
        let target = req.path.unwrap_or("/");
        let refuse = |message: String| Refusal {
            status: (400, "Bad Request"),
            message,
        };
        if route == Route::Echo {
            return Ok(());
        }
        // Set first: a refused upgrade is cleaned up like any closing connection.
        self.session.kind = Some(if route == Route::Ws {
            Kind::Json
        } else {
            Kind::Bare
        });
        let query = target.split_once('?').map_or("", |(_, q)| q);
        match self
            .router
            .auth
            .authenticate(query, req.headers, unix_now())
        {
            Ok(Identity::Token(claims)) => self.router.set_claims(self.id, self.session, claims),
            Ok(Identity::Anonymous { .. }) => {
                for (k, v) in query_pairs(target) {
                    if k == "user" && !v.is_empty() {
                        if v.len() > MAX_USER_BYTES || v.chars().any(char::is_control) {
                            return Err(refuse(format!(
                                "user must be 1 to {MAX_USER_BYTES} bytes without control characters\n"
                            )));
                        }
                        self.router.set_user(self.id, self.session, Arc::from(&*v));
                    }
                }
            }
            Err(e) => {
                out.refused = Some(HandshakeFailure::of_token(&e));
                return Err(Refusal {
                    status: (401, "Unauthorized"),
                    message: format!("{e}\n"),
                });
            }
        }
        match route {
            Route::Echo => Ok(()),
            Route::Ws => {
                let text = &mut self.router.text;
                text.clear();
                reply::welcome(text, self.id, self.session.user.as_deref());
                out.frame(Opcode::Text, text);
                Ok(())
            }
            Route::Raw => {
                let mut names = Vec::new();
                for (k, v) in query_pairs(target) {
                    if k == "channel" {
                        check_channel(&v)
                            .map_err(|e| refuse(format!("channel {v:?}: {}\n", e.message())))?;
                        if !self.session.may_subscribe(&v) {
                            return Err(Refusal {
                                status: (403, "Forbidden"),
                                message: format!("the token does not allow channel {v:?}\n"),
                            });
                        }
                        names.push(v.into_owned());
                    }
                }
                if names.len() > self.router.config().max_channels_per_conn {
                    return Err(refuse(
                        "more channels than --max-channels-per-conn\n".into(),
                    ));
                }
                for name in names {
                    let _ = self.router.subscribe(self.id, self.session, &name);
                }
                Ok(())
            }
            Route::Broadcast => {
                if !self.session.may_subscribe(BROADCAST_CHANNEL) {
                    return Err(Refusal {
                        status: (403, "Forbidden"),
                        message: "the token does not allow channel \"broadcast\"\n".into(),
                    });
                }
                let _ = self
                    .router
                    .subscribe(self.id, self.session, BROADCAST_CHANNEL);
                Ok(())
            }
        }
    }

    fn on_message(&mut self, route: Route, opcode: Opcode, payload: &mut [u8], out: &mut Output) {
        match route {
            Route::Echo => {}
            Route::Raw => self.router.stats.raw_ignored += 1,
            Route::Broadcast => self.on_broadcast(opcode, payload),
            Route::Ws if opcode != Opcode::Text => self.reply_err(
                out,
                b"",
                ProtocolError::new(ErrorCode::BadJson, "requests are JSON text frames"),
            ),
            Route::Ws => self.on_request(payload, out),
        }
    }
}

impl Dispatch<'_> {
    fn on_broadcast(&mut self, opcode: Opcode, payload: &[u8]) {
        let Some(rest) = payload.strip_prefix(b"pub:") else {
            self.router.stats.raw_ignored += 1;
            return;
        };
        if opcode != Opcode::Text || !self.session.may_publish(BROADCAST_CHANNEL) {
            self.router.stats.raw_ignored += 1;
            return;
        }
        let mut data = std::mem::take(&mut self.router.text);
        data.clear();
        // Text frames are valid UTF-8 and a prefix of ASCII keeps it so.
        write_str(&mut data, std::str::from_utf8(rest).unwrap_or(""));
        let user = self.session.user.clone();
        let _ = self.router.publish(
            BROADCAST_CHANNEL,
            &data,
            rest,
            Some(self.id),
            user.as_deref(),
            Some(self.id),
        );
        self.router.text = data;
    }

    fn on_request(&mut self, payload: &mut [u8], out: &mut Output) {
        let Some(mut parser) = self.router.parser.take() else {
            return;
        };
        parser.parse(payload, |parsed| match parsed {
            Ok(req) => self.on_op(req, out),
            Err((id, e)) => {
                let id = self.id_text(id);
                self.reply_err(out, &id, e);
                self.router.id_text = id;
            }
        });
        self.router.parser = Some(parser);
    }

    /// The request id as JSON text, in the router's reusable buffer (taken; give it back).
    fn id_text(&mut self, id: Option<simd_json::tape::Value<'_, '_>>) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.router.id_text);
        buf.clear();
        if let Some(id) = id {
            let _ = write_value(&mut buf, id);
        }
        buf
    }

    fn reply_ok(&mut self, out: &mut Output, id: &[u8]) {
        let text = &mut self.router.text;
        text.clear();
        reply::ok(text, id);
        out.frame(Opcode::Text, text);
    }

    fn reply_err(&mut self, out: &mut Output, id: &[u8], e: ProtocolError) {
        let text = &mut self.router.text;
        text.clear();
        reply::error(text, id, e);
        out.frame(Opcode::Text, text);
    }

    fn on_op(&mut self, req: Request<'_, '_>, out: &mut Output) {
        let id = self.id_text(req.id);
        let result = match req.op {
            Op::Ping => Ok(true),
            Op::Subscribe { channel } if !self.session.may_subscribe(channel) => {
                Err(ProtocolError::new(
                    ErrorCode::Forbidden,
                    "the token does not allow this channel",
                ))
            }
            Op::Subscribe { channel } => self
                .router
                .subscribe(self.id, self.session, channel)
                .map(|()| true),
            Op::Unsubscribe { channel } => self
                .router
                .unsubscribe(self.id, self.session, channel)
                .map(|()| true),
            Op::Publish { channel, .. } if !self.session.may_publish(channel) => {
                Err(ProtocolError::new(
                    ErrorCode::Forbidden,
                    "the token does not allow publishing on this channel",
                ))
            }
            Op::Publish {
                channel,
                data,
                skip_self,
            } => self.publish(channel, data, skip_self),
            Op::Send { conn, data } => self.send(conn, data, &id),
            Op::Presence { channel } => {
                self.router.presence(
                    channel,
                    ReplyTo {
                        conn: self.id,
                        id: Box::from(&id[..]),
                    },
                );
                Ok(false)
            }
            Op::Refresh { token } => self.refresh(token),
        };
        match result {
            Ok(true) => self.reply_ok(out, &id),
            Ok(false) => {}
            Err(e) => self.reply_err(out, &id, e),
        }
        self.router.id_text = id;
    }

    fn refresh(&mut self, token: &str) -> Result<bool, ProtocolError> {
        let claims = match self.router.auth.verify(token, unix_now()) {
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
        let same_user = match &self.session.grants {
            Some(old) => old.sub == claims.sub,
            None => self
                .session
                .user
                .as_deref()
                .is_none_or(|u| *u == *claims.sub),
        };
        if !same_user {
            return Err(ProtocolError::new(
                ErrorCode::BadToken,
                "the token is for another user",
            ));
        }
        self.router.set_claims(self.id, self.session, claims);
        Ok(true)
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
            let user = this.session.user.clone();
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
                .map_err(|_| busy())
        })
    }

    fn send(
        &mut self,
        to: ConnId,
        data: simd_json::tape::Value<'_, '_>,
        id: &[u8],
    ) -> Result<bool, ProtocolError> {
        self.with_json(data, |this, json| {
            let user = this.session.user.clone();
            let reply = ReplyTo {
                conn: this.id,
                id: Box::from(id),
            };
            match this
                .router
                .send(to, json, Some(this.id), user.as_deref(), Some(reply))
            {
                Ok(()) => Ok(false),
                Err(ErrorCode::UnknownConnection) => Err(unknown_connection()),
                Err(_) => Err(busy()),
            }
        })
    }

    /// Run `f` with `data` encoded as JSON in the router's text buffer, which is taken for the
    /// call and put back after, so a message costs no allocation once the buffer has grown.
    fn with_json(
        &mut self,
        data: simd_json::tape::Value<'_, '_>,
        f: impl FnOnce(&mut Self, &[u8]) -> Result<bool, ProtocolError>,
    ) -> Result<bool, ProtocolError> {
        let mut json = std::mem::take(&mut self.router.text);
        json.clear();
        let r = match write_value(&mut json, data) {
            Err(_) => Err(ProtocolError::new(
                ErrorCode::BadField,
                "data nests too deeply",
            )),
            Ok(()) => f(self, &json),
        };
        self.router.text = json;
        r
    }
}

/// The error for a full queue.
pub fn busy() -> ProtocolError {
    ProtocolError::new(ErrorCode::Busy, "a queue is full: retry later")
}

/// The error for a stale or unknown connection id.
pub fn unknown_connection() -> ProtocolError {
    ProtocolError::new(ErrorCode::UnknownConnection, "no such connection")
}
