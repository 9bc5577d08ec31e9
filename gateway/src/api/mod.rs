//! The backend API: one plain HTTP/1.1 keep-alive connection per [`ApiConn`], a sans-IO state
//! machine that turns request bytes into either a response (errors, `/healthz`) or a
//! [`Command`] for the router, and the router's [`Outcome`] into the response.
//!
//! Calling contract (the shard does this; tests do it by hand):
//! 1. feed reads with [`ApiConn::on_read`]; if it returns a command, run it and hand the answer
//!    to [`ApiConn::on_outcome`] (in the same turn or a later one), which may return the next
//!    command of a pipelined request; a connection has at most one command outstanding;
//! 2. send what each call appended to `out`;
//! 3. then look at [`ApiConn::state`] / [`ApiConn::must_drop`] exactly like a client `Conn`, and
//!    re-arm the timer at [`ApiConn::deadline`] ([`ApiConn::on_deadline`] when it passes).
//!
//! Requests need `Content-Length` bodies (chunked: 411) no larger than `--max-api-body-bytes`
//! (413); both answers close the connection because the rest of the body is not read.

pub mod admin;
pub mod command;
pub mod error;
pub mod nodes;
pub mod response;
pub mod routes;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::auth::ApiKey;
use crate::conn::http::{has_token, scan_head, trim, HeaderSlots, Scan};
use crate::metrics::ShardMetrics;

pub use self::command::{Command, Outcome, ShardStats, Stats, Target};
pub use self::error::ApiError;
pub use self::routes::Route;
pub use crate::router::inbox::{ConnInfo, Lookup};

use self::command::parse_command;
use self::response::{write_error, write_outcome, write_response};

/// Buffer capacity an API connection keeps between requests.
const KEEP_BUFFER_BYTES: usize = 16 * 1024;

/// The API listener's configuration.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    /// The key in `Authorization: Bearer <key>`.
    pub key: ApiKey,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Request line plus headers, in bytes.
    pub max_header_bytes: usize,
    /// Header lines per request.
    pub max_headers: usize,
    /// A started request must be complete this long after its first byte (408 after).
    pub request_timeout: Duration,
    /// An idle keep-alive connection is closed after this long.
    pub idle_timeout: Duration,
    /// After our last response on a closing connection, drop it if the peer has not closed.
    pub close_timeout: Duration,
    /// The admin page's password (`None`: the API key is).
    pub admin_secret: Option<ApiKey>,
    /// Whether the broker is reachable (`None`: a single node, which needs none); `/healthz`
    /// answers 503 `degraded` while it is not.
    pub broker_up: Option<Arc<AtomicBool>>,
}

impl ApiSettings {
    /// Settings with `key` and the defaults: 1 MiB bodies, 8 KiB heads, 10 s requests, 60 s idle.
    pub fn new(key: ApiKey) -> ApiSettings {
        ApiSettings {
            key,
            max_body_bytes: 1 << 20,
            max_header_bytes: 8192,
            max_headers: 64,
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            close_timeout: Duration::from_secs(5),
            admin_secret: None,
            broker_up: None,
        }
    }
}

/// What an API connection waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiState {
    /// The next request (or the rest of one).
    AwaitRequest,
    /// The router's outcome for the command it was handed.
    AwaitOutcome,
    /// Nothing more: flush, shut down, and drop when the peer closes or at the deadline.
    Closed,
}

/// One API connection. See the module doc for the calling contract.
#[derive(Debug)]
pub struct ApiConn {
    state: ApiState,
    /// Received bytes; those from `start` on are unprocessed (a partial request, or requests
    /// pipelined behind an outstanding one).
    buf: Vec<u8>,
    /// Where the unprocessed bytes begin: answered requests are skipped, and the buffer is
    /// compacted once per read, not once per request.
    start: usize,
    /// How far `buf` was searched for the end of the head.
    scanned: usize,
    /// The outstanding command's response ends the connection.
    close_after: bool,
    drop_now: bool,
    /// When the current wait began.
    mark: Instant,
}

/// A request whose head and body are complete, with what routing needs copied out.
struct Head {
    len: usize,
    body_len: usize,
    /// The route, or why there is none (decided while the head is parsed, so the method and
    /// path need not be copied out).
    route: Result<Route, ApiError>,
    /// The query string, kept only for the route that reads it.
    query: String,
    keep_alive: bool,
}

impl ApiConn {
    /// A connection accepted at `now`.
    pub fn new(now: Instant) -> ApiConn {
        ApiConn {
            state: ApiState::AwaitRequest,
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            close_after: false,
            drop_now: false,
            mark: now,
        }
    }

    /// What the connection waits for.
    pub fn state(&self) -> ApiState {
        self.state
    }

    /// True when the socket should be dropped right after flushing.
    pub fn must_drop(&self) -> bool {
        self.drop_now
    }

    /// When [`ApiConn::on_deadline`] must next be called.
    pub fn deadline(&self, s: &ApiSettings) -> Instant {
        match self.state {
            _ if self.drop_now => self.mark,
            ApiState::AwaitRequest if self.start == self.buf.len() => self.mark + s.idle_timeout,
            ApiState::AwaitRequest => self.mark + s.request_timeout,
            ApiState::AwaitOutcome => self.mark + s.idle_timeout,
            ApiState::Closed => self.mark + s.close_timeout,
        }
    }

    /// Bytes read from the peer. Returns a command for the router, if a request asks for one.
    pub fn on_read(
        &mut self,
        bytes: &[u8],
        now: Instant,
        s: &ApiSettings,
        metrics: &ShardMetrics,
        out: &mut Vec<u8>,
    ) -> Option<Command> {
        match self.state {
            ApiState::Closed => return None,
            ApiState::AwaitRequest if self.start == self.buf.len() => self.mark = now,
            _ => {}
        }
        self.buf.drain(..self.start);
        self.start = 0;
        self.buf.extend_from_slice(bytes);
        if self.state == ApiState::AwaitOutcome {
            // Pipelined requests wait for the outstanding answer, up to one more full request.
            if self.buf.len() > s.max_header_bytes + s.max_body_bytes {
                self.close(now);
                self.drop_now = true;
            }
            return None;
        }
        self.pump(now, s, metrics, out)
    }

    /// The router's answer to the outstanding command. Returns the next pipelined request's
    /// command, if any. An outcome with nothing outstanding is ignored.
    pub fn on_outcome(
        &mut self,
        outcome: Outcome,
        now: Instant,
        s: &ApiSettings,
        metrics: &ShardMetrics,
        out: &mut Vec<u8>,
    ) -> Option<Command> {
        if self.state != ApiState::AwaitOutcome {
            return None;
        }
        let status = write_outcome(out, outcome, self.close_after);
        metrics.api_answered(status);
        if self.close_after {
            self.close(now);
            return None;
        }
        self.state = ApiState::AwaitRequest;
        self.mark = now;
        self.pump(now, s, metrics, out)
    }

    /// The deadline passed: drop an idle connection, answer 408 to a slow request, give up on
    /// a closing one.
    pub fn on_deadline(&mut self, now: Instant, s: &ApiSettings, out: &mut Vec<u8>) {
        if now < self.deadline(s) {
            return;
        }
        if self.state == ApiState::AwaitRequest && self.start < self.buf.len() {
            write_response(
                out,
                (408, "Request Timeout"),
                "text/plain",
                &[],
                b"request not complete in time\n",
                true,
            );
        }
        self.close(now);
        self.drop_now = true;
    }

    /// The server is shutting down: an idle connection is dropped; one with a request in
    /// progress gets no more requests read after its answer.
    pub fn on_shutdown(&mut self, now: Instant) {
        match self.state {
            ApiState::AwaitRequest => {
                self.close(now);
                self.drop_now = true;
            }
            ApiState::AwaitOutcome => self.close_after = true,
            ApiState::Closed => {}
        }
    }

    /// The peer closed its sending side.
    pub fn on_peer_eof(&mut self, now: Instant) {
        if self.state != ApiState::Closed {
            self.close(now);
        }
    }

    fn close(&mut self, now: Instant) {
        self.state = ApiState::Closed;
        self.mark = now;
        self.buf = Vec::new();
        self.start = 0;
        self.scanned = 0;
    }

    /// Answer complete requests until one needs the router or the bytes run out.
    fn pump(
        &mut self,
        now: Instant,
        s: &ApiSettings,
        metrics: &ShardMetrics,
        out: &mut Vec<u8>,
    ) -> Option<Command> {
        let mut command = None;
        while self.state == ApiState::AwaitRequest && self.start < self.buf.len() {
            let pending = &self.buf[self.start..];
            let end = match scan_head(pending, self.scanned, s.max_header_bytes) {
                Scan::Head(end) => end,
                Scan::Partial => {
                    self.scanned = pending.len();
                    break;
                }
                Scan::TooLong(_) => {
                    self.refuse(&ApiError::HeadTooLarge, now, metrics, out);
                    return None;
                }
            };
            // The head's end is known: scanning resumes right before it next time.
            self.scanned = end.saturating_sub(1);
            let head = match parse_head(&pending[..end], s) {
                Ok(h) => h,
                Err(e) => {
                    self.refuse(&e, now, metrics, out);
                    return None;
                }
            };
            let total = head.len + head.body_len;
            if pending.len() < total {
                break;
            }
            let handled = self.handle(self.start, &head, s, metrics, out);
            self.start += total;
            self.scanned = 0;
            self.mark = now;
            match handled {
                Handled::Answered => {
                    if !head.keep_alive {
                        self.close(now);
                        return None;
                    }
                }
                Handled::Command(c) => {
                    self.state = ApiState::AwaitOutcome;
                    self.close_after = !head.keep_alive;
                    command = Some(c);
                }
            }
        }
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            if self.buf.capacity() > KEEP_BUFFER_BYTES {
                self.buf = Vec::new();
            }
        }
        command
    }

    /// Route, authorize and parse one complete request (head and body in `buf` from `at`).
    fn handle(
        &mut self,
        at: usize,
        head: &Head,
        s: &ApiSettings,
        metrics: &ShardMetrics,
        out: &mut Vec<u8>,
    ) -> Handled {
        let close = !head.keep_alive;
        let route = match &head.route {
            Ok(r) => *r,
            Err(e) => {
                metrics.api_answered(write_error(out, e, close));
                return Handled::Answered;
            }
        };
        if let Route::Admin(file) = route {
            let (content_type, bytes) = file.content();
            write_response(
                out,
                (200, "OK"),
                content_type,
                &admin::FILE_HEADERS,
                bytes,
                close,
            );
            metrics.api_answered(200);
            return Handled::Answered;
        }
        let body = &mut self.buf[at + head.len..at + head.len + head.body_len];
        match parse_command(route, &head.query, body) {
            Ok(Some(c)) => Handled::Command(c),
            Ok(None) => {
                let up = s
                    .broker_up
                    .as_ref()
                    .is_none_or(|up| up.load(Ordering::Acquire));
                let (status, body): ((u16, &str), &[u8]) = if up {
                    ((200, "OK"), b"ok\n")
                } else {
                    (
                        (503, "Service Unavailable"),
                        b"degraded: the broker is unreachable\n",
                    )
                };
                write_response(out, status, "text/plain", &[], body, close);
                metrics.api_answered(status.0);
                Handled::Answered
            }
            Err(e) => {
                metrics.api_answered(write_error(out, &e, close));
                Handled::Answered
            }
        }
    }

    /// Answer an error that ends the connection.
    fn refuse(&mut self, e: &ApiError, now: Instant, metrics: &ShardMetrics, out: &mut Vec<u8>) {
        metrics.api_answered(write_error(out, e, true));
        self.close(now);
    }
}

enum Handled {
    Answered,
    Command(Command),
}

/// Parse a complete head and decide the body's length.
fn parse_head(raw: &[u8], s: &ApiSettings) -> Result<Head, ApiError> {
    let mut slots = HeaderSlots::default();
    let mut req = httparse::Request::new(slots.get(s.max_headers));
    match req.parse(raw) {
        // The head ends at the first `\r\n\r\n`; a parse that ends sooner (at a bare `\n\n`)
        // would leave bytes nobody reads: refused, never skipped.
        Ok(httparse::Status::Complete(n)) if n == raw.len() => {}
        Ok(httparse::Status::Complete(_)) => {
            return Err(ApiError::MalformedRequest(
                "head ends with a bare line feed",
            ))
        }
        Ok(httparse::Status::Partial) => return Err(ApiError::MalformedRequest("incomplete head")),
        Err(httparse::Error::TooManyHeaders) => return Err(ApiError::HeadTooLarge),
        Err(_) => return Err(ApiError::MalformedRequest("not an HTTP/1.1 request")),
    }
    let mut content_length: Option<usize> = None;
    let mut authorized = false;
    let mut admin = admin::Credentials::default();
    let admin_key = s.admin_secret.as_ref().unwrap_or(&s.key);
    let mut close = req.version != Some(1);
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ApiError::LengthRequired);
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let v = trim(h.value);
            let n = std::str::from_utf8(v)
                .ok()
                .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or(ApiError::MalformedRequest("bad Content-Length"))?;
            if content_length.is_some_and(|c| c as u64 != n) {
                return Err(ApiError::MalformedRequest("conflicting Content-Length"));
            }
            if n > s.max_body_bytes as u64 {
                return Err(ApiError::TooLarge {
                    limit: s.max_body_bytes,
                });
            }
            content_length = Some(n as usize);
        } else if h.name.eq_ignore_ascii_case("authorization") {
            authorized |= s.key.check_authorization(h.value);
            admin.password |= admin_key.check_password(h.value);
        } else if h.name.eq_ignore_ascii_case(admin::ADMIN_HEADER) {
            admin.admin_header = true;
        } else if h.name.eq_ignore_ascii_case("connection") && has_token(h.value, "close") {
            close = true;
        }
    }
    let method = req.method.unwrap_or("");
    if method == "POST" && content_length.is_none() {
        return Err(ApiError::LengthRequired);
    }
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let route = match admin::strip(path) {
        Some(rest) => admin::route(method, rest, admin),
        None => routes::route(method, path, authorized).and_then(|r| {
            if r.needs_key() && !authorized {
                return Err(ApiError::Unauthorized);
            }
            Ok(r)
        }),
    };
    Ok(Head {
        len: raw.len(),
        body_len: content_length.unwrap_or(0),
        query: match route {
            Ok(Route::Presence | Route::History | Route::Connections) => query.to_owned(),
            _ => String::new(),
        },
        route,
        keep_alive: !close,
    })
}

#[cfg(test)]
mod tests;
