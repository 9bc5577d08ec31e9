//! The app's side of backend hooks: it builds each call's body from what the client did,
//! submits it to the hooks thread ([`crate::hooks::Hooks`]), remembers what to do with the
//! answer (a tag per call, per shard), and applies the answer when the shard hands it back:
//! resume a held upgrade, subscribe or publish after an allow, answer an RPC.
//!
//! A connection with [`HookSettings::max_calls_per_conn`] unanswered calls is not read until
//! answers arrive ([`AppState::must_wait`]): a client that sends faster than its backend
//! answers is held by TCP backpressure, never buffered without bound.

pub mod answer;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use frame_simd::{CloseCode, Opcode};

use crate::auth::patterns::{Pattern, Patterns};
use crate::auth::Claims;
use crate::conn::handshake::{check_upgrade, HandshakeFailure, Policy};
use crate::conn::{CloseRecord, ConnId, Output, Refusal};
use crate::hooks::{Answer, Call, Caller, Endpoint, HookError, HookKind, HookSettings, Hooks};
use crate::json::{write_conn, write_opt_str, write_str};

use self::answer::{parse_connect, parse_decision, parse_rpc, Allowed, ConnectAnswer, Decision};
use self::answer::{parse_forward, BadAnswer, ForwardAnswer, RpcAnswer};
use super::ws::reply;
use super::ws::request::{ErrorCode, ProtocolError};
use super::{AppState, ClientState, Dispatch};

/// The hooks a shard's app calls, and the calls it waits for.
#[derive(Debug)]
pub struct Calls {
    /// The hooks thread (and what is configured).
    pub hooks: Hooks,
    /// Origins and subprotocols: an upgrade that would be refused never reaches the backend.
    pub policy: Policy,
    next_tag: u64,
    pending: HashMap<u64, Pending>,
    /// Per connection, calls beyond `max_calls_per_conn` that came in the same read: sent as
    /// earlier ones are answered. Bounded by what one read holds, since a connection at the
    /// limit is not read.
    held: HashMap<ConnId, VecDeque<Call>>,
}

impl Calls {
    /// Calls through `hooks`; upgrades are checked against `policy` before the connect hook.
    pub fn new(hooks: Hooks, policy: Policy) -> Calls {
        Calls {
            hooks,
            policy,
            next_tag: 0,
            pending: HashMap::new(),
            held: HashMap::new(),
        }
    }

    fn settings(&self) -> &HookSettings {
        &self.hooks.settings
    }
}

/// What to do with a call's answer.
#[derive(Debug)]
enum Pending {
    /// Resume the held upgrade.
    Connect,
    /// Subscribe once allowed; reply to `id`.
    Subscribe { channel: Box<str>, id: Box<[u8]> },
    /// Publish once allowed (the data may be rewritten); reply to `id`.
    Publish {
        channel: Box<str>,
        data: Box<[u8]>,
        skip_self: bool,
        id: Box<[u8]>,
    },
    /// Reply to `id` with the result.
    Rpc { id: Box<[u8]> },
    /// Apply what the backend says to do with forwarded messages.
    Forward,
}

/// Where a connection's connect hook stands.
#[derive(Debug)]
pub enum ConnectState {
    /// Asked; the upgrade is held.
    Asked,
    /// Answered: the upgrade resumes with this.
    Answered(Result<ConnectAnswer, HookError>),
    /// Denied with a close code: upgraded, to be closed at once.
    Close(CloseCode, Box<str>),
}

/// What the shard does after an answer was applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AfterAnswer {
    /// Nothing more (replies, if any, are in the output).
    Done,
    /// Resume the held request ([`crate::conn::Conn::on_resume`]).
    Resume,
    /// Close the connection with this code and reason.
    Close(CloseCode, Box<str>),
}

/// How a connection ended, for the disconnect hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ending {
    /// `client` (it sent close first), `server` (the gateway did) or `lost` (no close
    /// handshake: the TCP connection ended).
    pub why: &'static str,
    /// The close code (1006 when there was no close frame).
    pub code: u16,
}

impl Ending {
    /// The ending of a connection whose closing handshake went as `record` says.
    pub fn of(record: Option<CloseRecord>) -> Ending {
        match record {
            Some(r) if r.by_peer => Ending {
                why: "client",
                code: r.code,
            },
            Some(r) => Ending {
                why: "server",
                code: r.code,
            },
            None => Ending {
                why: "lost",
                code: CloseCode::ABNORMAL.0,
            },
        }
    }
}

impl AppState {
    /// Whether the connect hook is configured (it sends the client's address: the shard sets
    /// [`AppState::remote`] before a request is read).
    pub fn wants_remote(&self) -> bool {
        self.calls
            .as_ref()
            .is_some_and(|c| c.settings().connect.endpoint.is_some())
    }

    /// Forget the call `tag` of a connection that is gone.
    pub fn forget_call(&mut self, tag: u64) {
        if let Some(c) = self.calls.as_mut() {
            c.pending.remove(&tag);
        }
    }

    /// `id` is gone: drop the calls it had not sent yet.
    pub fn forget_conn(&mut self, id: ConnId) {
        if let Some(c) = self.calls.as_mut() {
            if let Some(held) = c.held.remove(&id) {
                for call in held {
                    if let Some(caller) = call.reply {
                        c.pending.remove(&caller.tag);
                    }
                }
            }
        }
    }

    /// Whether `client` must not be read now: its calls in flight are at the limit.
    pub fn must_wait(&self, client: &ClientState) -> bool {
        self.calls
            .as_ref()
            .is_some_and(|c| usize::from(client.hook_calls) >= c.settings().max_calls_per_conn)
    }

    /// `id` (of `user`) went away: tell the disconnect hook (fire-and-forget, batched by the
    /// hooks thread).
    pub fn disconnected(
        &mut self,
        id: ConnId,
        client: &ClientState,
        user: Option<&str>,
        ending: Ending,
        now: Instant,
    ) {
        let Some(calls) = &self.calls else {
            return;
        };
        let Some(endpoint) = calls.settings().disconnect.clone() else {
            return;
        };
        let Some(age) = client.opened_at.age(now) else {
            return;
        };
        let mut body = Vec::with_capacity(128);
        body.extend_from_slice(b"{\"conn\":");
        write_conn(&mut body, id);
        body.extend_from_slice(b",\"user\":");
        write_opt_str(&mut body, user);
        body.extend_from_slice(b",\"why\":");
        write_str(&mut body, ending.why);
        let ms = age.as_millis();
        body.extend_from_slice(
            format!(",\"code\":{},\"duration_ms\":{ms}}}", ending.code).as_bytes(),
        );
        let _ = calls.hooks.submit(Call {
            hook: HookKind::Disconnect,
            endpoint,
            body,
            reply: None,
            submitted: now,
        });
    }
}

impl Dispatch<'_> {
    /// Submit a call whose answer comes back to this connection; `Err` when the hooks
    /// thread's queue is full.
    fn ask(
        &mut self,
        hook: HookKind,
        endpoint: Endpoint,
        body: Vec<u8>,
        then: Pending,
    ) -> Result<(), HookError> {
        let Some(calls) = self.app.calls.as_mut() else {
            return Err(HookError::Unreachable);
        };
        let tag = calls.next_tag;
        let call = Call {
            hook,
            endpoint,
            body,
            reply: Some(Caller { conn: self.id, tag }),
            submitted: Instant::now(),
        };
        // Forwarded messages keep their order: one forward call in flight per connection.
        let limit = match hook {
            HookKind::Forward => 1,
            _ => calls.hooks.settings.max_calls_per_conn,
        };
        if usize::from(self.client.hook_calls) >= limit {
            // At the limit: further calls wait their turn (at the connection's limit, reading
            // stops, so what waits is bounded).
            calls.held.entry(self.id).or_default().push_back(call);
        } else {
            calls.hooks.submit(call).map_err(|_| HookError::Busy)?;
        }
        calls.next_tag += 1;
        calls.pending.insert(tag, then);
        self.client.hook_calls = self.client.hook_calls.saturating_add(1);
        Ok(())
    }

    /// Before the upgrade of a route with a connect hook: ask the backend and hold the request
    /// (`true`), unless the upgrade would fail anyway or the hook answered already (`false`).
    pub(super) fn ask_connect(&mut self, req: &httparse::Request<'_, '_>) -> bool {
        let Some(calls) = self.app.calls.as_ref() else {
            return false;
        };
        let hook = &calls.settings().connect;
        let Some(endpoint) = hook.endpoint.clone() else {
            return false;
        };
        if self.client.connect().is_some() || check_upgrade(req, &calls.policy).is_err() {
            // Answered already, or refused by the conn layer (a foreign Origin gets its 403
            // without the backend hearing of it).
            return false;
        }
        let body = connect_body(self.id, req, self.app.remote, &hook.headers, &hook.cookies);
        let state = match self.ask(HookKind::Connect, endpoint, body, Pending::Connect) {
            Ok(()) => ConnectState::Asked,
            Err(e) => ConnectState::Answered(Err(e)),
        };
        let asked = matches!(state, ConnectState::Asked);
        self.client.set_connect(Box::new(state));
        asked
    }

    /// At the upgrade of a route with a connect hook: apply its answer. `None`: no hook
    /// decided this connection (the usual authentication applies).
    pub(super) fn open_connected(&mut self, out: &mut Output) -> Option<Result<(), Refusal>> {
        let state = self.client.take_connect()?;
        let ConnectState::Answered(result) = *state else {
            return None;
        };
        let refuse = |out: &mut Output, status: u16, message: String| {
            out.refused = Some(HandshakeFailure::Hook);
            Err(Refusal {
                status: (status, reason_phrase(status)),
                message,
            })
        };
        Some(match result {
            Err(e) => refuse(
                out,
                503,
                format!("connect hook failed: {} ({})", e.message(), e.label()),
            ),
            Ok(ConnectAnswer::DenyStatus { status, reason }) => refuse(out, status, reason),
            Ok(ConnectAnswer::DenyClose { code, reason }) => {
                let state = ConnectState::Close(CloseCode(code), reason.into());
                self.client.set_connect(Box::new(state));
                Ok(())
            }
            Ok(ConnectAnswer::Allow(a)) => {
                self.allow(a);
                Ok(())
            }
        })
    }

    fn allow(&mut self, a: Allowed) {
        let session = &mut self.client.session;
        if let Some(user) = a.user {
            let user: Arc<str> = Arc::from(user);
            match a.expires_at {
                Some(exp) => {
                    let everything = Patterns(Box::new([Pattern::Prefix(Box::from(""))]));
                    let claims = Claims {
                        sub: Box::from(&*user),
                        exp,
                        channels: everything.clone(),
                        publish: everything,
                    };
                    self.set_claims(Arc::new(claims));
                }
                None => self.router.set_user(self.id, session, user),
            }
        } else if let Some(exp) = a.expires_at {
            self.app.expiries.push(exp, self.id);
        }
        self.app.welcome_data = a.data.map(String::into_boxed_str);
        for channel in a.channels {
            let _ = self
                .router
                .subscribe(self.id, &mut self.client.session, &channel);
        }
    }

    /// After a resumed upgrade: the close the connect hook asked for instead of a session.
    pub fn take_close(&mut self) -> Option<(CloseCode, Box<str>)> {
        match self.client.take_connect().map(|s| *s) {
            Some(ConnectState::Close(code, reason)) => Some((code, reason)),
            other => {
                if let Some(other) = other {
                    self.client.set_connect(Box::new(other));
                }
                None
            }
        }
    }

    /// A subscribe on a channel with a subscribe hook: ask first. `None`: no hook for it.
    pub(super) fn ask_subscribe(
        &mut self,
        channel: &str,
        id: &[u8],
    ) -> Option<Result<bool, ProtocolError>> {
        let calls = self.app.calls.as_ref()?;
        let endpoint = HookSettings::by_prefix(&calls.settings().subscribe, channel)?.clone();
        let body = self.body(("channel", channel), None);
        let then = Pending::Subscribe {
            channel: channel.into(),
            id: id.into(),
        };
        Some(self.ask_for_reply(HookKind::Subscribe, endpoint, body, then))
    }

    /// A publish on a channel with a publish hook: ask first. `None`: no hook for it.
    pub(super) fn ask_publish(
        &mut self,
        channel: &str,
        data: &[u8],
        skip_self: bool,
        id: &[u8],
    ) -> Option<Result<bool, ProtocolError>> {
        let calls = self.app.calls.as_ref()?;
        let endpoint = HookSettings::by_prefix(&calls.settings().publish, channel)?.clone();
        let body = self.body(("channel", channel), Some(data));
        let then = Pending::Publish {
            channel: channel.into(),
            data: data.into(),
            skip_self,
            id: id.into(),
        };
        Some(self.ask_for_reply(HookKind::Publish, endpoint, body, then))
    }

    /// `{"op":"rpc"}`: forward to the rpc hook.
    pub(super) fn ask_rpc(
        &mut self,
        method: &str,
        data: &[u8],
        id: &[u8],
    ) -> Result<bool, ProtocolError> {
        let Some(endpoint) = self
            .app
            .calls
            .as_ref()
            .and_then(|c| c.settings().rpc.clone())
        else {
            return Err(ProtocolError::new(
                ErrorCode::UnknownOp,
                "rpc is not configured (--hook-rpc)",
            ));
        };
        let body = self.body(("method", method), Some(data));
        let then = Pending::Rpc { id: id.into() };
        self.ask_for_reply(HookKind::Rpc, endpoint, body, then)
    }

    /// A call whose request is answered later (`Ok(false)`), or an error reply now.
    fn ask_for_reply(
        &mut self,
        hook: HookKind,
        endpoint: Endpoint,
        body: Vec<u8>,
        then: Pending,
    ) -> Result<bool, ProtocolError> {
        self.ask(hook, endpoint, body, then)
            .map(|()| false)
            .map_err(unavailable)
    }

    /// `{"conn":"..","user":..,"<name>":"<value>"[,"data":<data>]}`.
    fn body(&self, (name, value): (&str, &str), data: Option<&[u8]>) -> Vec<u8> {
        let mut body = Vec::with_capacity(128 + data.map_or(0, <[u8]>::len));
        body.extend_from_slice(b"{\"conn\":");
        write_conn(&mut body, self.id);
        body.extend_from_slice(b",\"user\":");
        let user = self.router.user(&self.client.session).map(|u| &**u);
        write_opt_str(&mut body, user);
        body.push(b',');
        write_str(&mut body, name);
        body.push(b':');
        write_str(&mut body, value);
        if let Some(data) = data {
            body.extend_from_slice(b",\"data\":");
            body.extend_from_slice(data);
        }
        body.push(b'}');
        body
    }

    /// Apply a call's answer to this connection.
    pub fn on_hook_answer(&mut self, a: Answer, out: &mut Output) -> AfterAnswer {
        let Some(then) = self
            .app
            .calls
            .as_mut()
            .and_then(|c| c.pending.remove(&a.caller.tag))
        else {
            return AfterAnswer::Done;
        };
        self.client.hook_calls = self.client.hook_calls.saturating_sub(1);
        self.send_held();
        let bad = |_: BadAnswer| HookError::BadResponse;
        match then {
            Pending::Connect => {
                let decided = a.result.and_then(|b| parse_connect(&b).map_err(bad));
                self.client
                    .set_connect(Box::new(ConnectState::Answered(decided)));
                AfterAnswer::Resume
            }
            Pending::Subscribe { channel, id } => {
                let result = match a.result.and_then(|b| parse_decision(&b).map_err(bad)) {
                    Err(e) => Err(unavailable(e)),
                    Ok(Decision::Deny { reason }) => return self.deny(out, &id, &reason),
                    Ok(Decision::Allow { .. }) => self.subscribe_now(&channel, &id),
                };
                self.finish(out, &id, result)
            }
            Pending::Publish {
                channel,
                data,
                skip_self,
                id,
            } => {
                let result = match a.result.and_then(|b| parse_decision(&b).map_err(bad)) {
                    Err(e) => Err(unavailable(e)),
                    Ok(Decision::Deny { reason }) => return self.deny(out, &id, &reason),
                    Ok(Decision::Allow { data: rewritten }) => {
                        let json = rewritten.as_deref().map_or(&data[..], str::as_bytes);
                        self.publish_json(&channel, json, skip_self)
                    }
                };
                self.finish(out, &id, result)
            }
            Pending::Forward => match a.result.and_then(|b| parse_forward(&b).map_err(bad)) {
                Ok(answer) => self.apply_forward(answer, out),
                Err(e) => {
                    AfterAnswer::Close(CloseCode::INTERNAL_ERROR, unavailable(e).message.into())
                }
            },
            Pending::Rpc { id } => {
                let text = &mut self.app.text;
                text.clear();
                match a.result.and_then(|b| parse_rpc(&b).map_err(bad)) {
                    Err(e) => reply::error(text, &id, unavailable(e)),
                    Ok(RpcAnswer::Result(json)) => reply::result(text, &id, json.as_bytes()),
                    Ok(RpcAnswer::Error { code, message }) => {
                        reply::error_text(text, &id, &code, &message)
                    }
                }
                out.frame(Opcode::Text, text);
                AfterAnswer::Done
            }
        }
    }

    /// Whether this connection's messages go to the forward hook.
    pub(super) fn forwarding(&self) -> bool {
        self.app
            .calls
            .as_ref()
            .is_some_and(|c| c.settings().forward.is_some())
    }

    /// One client message for the forward hook: added to this read's batch.
    pub(super) fn forward(&mut self, opcode: Opcode, payload: &[u8]) {
        let batch = &mut self.app.forward_batch;
        if !batch.is_empty() {
            batch.push(b',');
        }
        match std::str::from_utf8(payload) {
            Ok(text) if opcode == Opcode::Text => {
                batch.extend_from_slice(b"{\"type\":\"text\",\"data\":");
                write_str(batch, text);
            }
            _ => {
                batch.extend_from_slice(b"{\"type\":\"binary\",\"data\":\"");
                batch.extend_from_slice(base64_simd::STANDARD.encode_to_string(payload).as_bytes());
                batch.push(b'"');
            }
        }
        batch.push(b'}');
    }

    /// After a read: send the messages it brought to the forward hook, in one call. A failed
    /// submission closes the connection (its messages cannot be delivered).
    pub fn flush_forward(&mut self) -> Option<(CloseCode, Box<str>)> {
        if self.app.forward_batch.is_empty() {
            return None;
        }
        let endpoint = self.app.calls.as_ref()?.settings().forward.clone()?;
        let mut body = self.body(("route", "/raw"), None);
        body.pop();
        body.extend_from_slice(b",\"messages\":[");
        body.extend_from_slice(&self.app.forward_batch);
        body.extend_from_slice(b"]}");
        self.app.forward_batch.clear();
        match self.ask(HookKind::Forward, endpoint, body, Pending::Forward) {
            Ok(()) => None,
            Err(e) => Some((CloseCode::INTERNAL_ERROR, unavailable(e).message.into())),
        }
    }

    fn apply_forward(&mut self, a: ForwardAnswer, out: &mut Output) -> AfterAnswer {
        for text in &a.send {
            out.frame(Opcode::Text, text.as_bytes());
        }
        let session = &mut self.client.session;
        for channel in &a.subscribe {
            let _ = self.router.subscribe(self.id, session, channel);
        }
        for channel in &a.unsubscribe {
            let _ = self.router.unsubscribe(self.id, session, channel);
        }
        for (channel, data) in &a.publish {
            let _ = self.publish_json(channel, data.as_bytes(), false);
        }
        match a.close {
            Some((code, reason)) => AfterAnswer::Close(CloseCode(code), reason.into()),
            None => AfterAnswer::Done,
        }
    }

    /// An answer made room: send this connection's next held call.
    fn send_held(&mut self) {
        let Some(calls) = self.app.calls.as_mut() else {
            return;
        };
        let Some(held) = calls.held.get_mut(&self.id) else {
            return;
        };
        if let Some(mut call) = held.pop_front() {
            // Its time starts now: it was waiting for this connection's turn, not the backend.
            call.submitted = Instant::now();
            if let Err(call) = calls.hooks.submit(call) {
                held.push_front(call);
            }
        }
        if held.is_empty() {
            calls.held.remove(&self.id);
        }
    }

    fn finish(
        &mut self,
        out: &mut Output,
        id: &[u8],
        result: Result<bool, ProtocolError>,
    ) -> AfterAnswer {
        let text = &mut self.app.text;
        text.clear();
        match result {
            Ok(true) => reply::ok(text, id),
            Ok(false) => return AfterAnswer::Done,
            Err(e) => reply::error(text, id, e),
        }
        out.frame(Opcode::Text, text);
        AfterAnswer::Done
    }

    fn deny(&mut self, out: &mut Output, id: &[u8], reason: &str) -> AfterAnswer {
        let text = &mut self.app.text;
        text.clear();
        reply::error_text(text, id, ErrorCode::Forbidden.as_str(), reason);
        out.frame(Opcode::Text, text);
        AfterAnswer::Done
    }
}

/// A failed call as the error reply a client gets.
fn unavailable(e: HookError) -> ProtocolError {
    let message = match e {
        HookError::Busy => "backend unavailable: busy",
        HookError::CircuitOpen => "backend unavailable: circuit_open",
        HookError::Timeout => "backend unavailable: timeout",
        HookError::Unreachable => "backend unavailable: unreachable",
        HookError::Closed => "backend unavailable: closed",
        HookError::BadResponse => "backend unavailable: bad_response",
        HookError::Status(_) => "backend unavailable: status",
    };
    ProtocolError::new(ErrorCode::BackendUnavailable, message)
}

/// The connect hook's body: what the client presented.
fn connect_body(
    id: ConnId,
    req: &httparse::Request<'_, '_>,
    remote: Option<SocketAddr>,
    headers: &[String],
    cookies: &[String],
) -> Vec<u8> {
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut body = Vec::with_capacity(256);
    body.extend_from_slice(b"{\"conn\":");
    write_conn(&mut body, id);
    body.extend_from_slice(b",\"path\":");
    write_str(&mut body, path);
    body.extend_from_slice(b",\"query\":");
    write_str(&mut body, query);
    let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
    };
    body.extend_from_slice(b",\"remote\":");
    write_opt_str(&mut body, remote.map(|a| a.to_string()).as_deref());
    body.extend_from_slice(b",\"origin\":");
    write_opt_str(
        &mut body,
        header("origin").map(|h| text(h.value)).as_deref(),
    );
    body.extend_from_slice(b",\"subprotocols\":[");
    let mut first = true;
    for h in req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-protocol"))
    {
        for p in text(h.value)
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            if !first {
                body.push(b',');
            }
            first = false;
            write_str(&mut body, p);
        }
    }
    body.extend_from_slice(b"],\"headers\":{");
    let mut first = true;
    for name in headers {
        if let Some(h) = header(name) {
            if !first {
                body.push(b',');
            }
            first = false;
            write_str(&mut body, name);
            body.push(b':');
            write_str(&mut body, &text(h.value));
        }
    }
    body.extend_from_slice(b"},\"cookies\":{");
    let mut first = true;
    for h in req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
    {
        for pair in text(h.value).split(';') {
            let Some((k, v)) = pair.trim().split_once('=') else {
                continue;
            };
            if cookies.iter().any(|c| c == k) {
                if !first {
                    body.push(b',');
                }
                first = false;
                write_str(&mut body, k);
                body.push(b':');
                write_str(&mut body, v);
            }
        }
    }
    body.extend_from_slice(b"}}");
    body
}

/// The reason phrase of a status a backend chose.
fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ if status < 500 => "Client Error",
        _ => "Server Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connect_body_carries_only_the_chosen_headers_and_cookies() {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut headers);
        let raw = b"GET /ws?room=1 HTTP/1.1\r\nHost: x\r\nOrigin: http://a\r\n\
            Cookie: session=abc; other=zzz\r\nAuthorization: Bearer t\r\nX-Secret: s\r\n\
            Sec-WebSocket-Protocol: chat, v2\r\n\r\n";
        req.parse(raw).unwrap();
        let body = connect_body(
            ConnId::from_bits(5),
            &req,
            "10.0.0.7:5555".parse().ok(),
            &["authorization".into()],
            &["session".into()],
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["path"], "/ws");
        assert_eq!(v["query"], "room=1");
        assert_eq!(v["origin"], "http://a");
        assert_eq!(v["subprotocols"], serde_json::json!(["chat", "v2"]));
        assert_eq!(
            v["headers"],
            serde_json::json!({"authorization": "Bearer t"})
        );
        assert_eq!(v["cookies"], serde_json::json!({"session": "abc"}));
        assert_eq!(v["conn"], "5");
        assert_eq!(v["remote"], "10.0.0.7:5555");
    }
}
