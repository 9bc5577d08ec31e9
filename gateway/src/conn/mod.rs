//! `Conn`: one client connection as a sans-IO state machine, from the first request byte to the
//! closing handshake. It owns no socket, clock or thread.
//!
//! Calling contract (the shard does this; a test does it by hand):
//! 1. feed every read with [`Conn::on_read`] (bytes are unmasked in place; first tell the
//!    [`Output`] the room left in the connection's write queue, [`Output::set_room`], past which
//!    pongs are coalesced), the timer with
//!    [`Conn::on_deadline`] once [`Conn::deadline`] has passed, a shutdown with
//!    [`Conn::on_shutdown`], the peer's end of stream with [`Conn::on_peer_eof`];
//! 2. after each call, send what the call appended to the [`Output`] (call [`Output::finish`]
//!    first), in order;
//! 3. then look at [`Conn::state`]: in `Closed` the socket is shut down for writing once the
//!    output is flushed and dropped when the peer closes or at the deadline; when
//!    [`Conn::must_drop`] is true it is dropped right after the flush attempt;
//! 4. re-arm the timer at [`Conn::deadline`].
//!
//! Times are kept as 32-bit millisecond [`Stamp`]s (8 bytes per connection instead of 32),
//! read back against the `now` each call is given: timeouts are limited to [`Stamp::MAX_AGE`].
//!
//! A request the app cannot decide at once ([`Handling::Pending`]: a backend is asked) leaves
//! the connection in [`State::AwaitApp`]: the shard stops reading it, and once the answer is
//! in, [`Conn::on_resume`] hands the same request to the app again. A request with a body
//! ([`Handling::Body`]: a long-polling POST) waits in [`State::AwaitBody`] until that many bytes
//! are in, which go to [`App::on_body`]; a long poll ([`Handling::Hold`]) waits in `AwaitApp`
//! until the app's own deadline instead of the handshake's.

pub mod deflate;
pub mod frames;
pub mod handshake;
pub mod http;
pub mod id;
pub mod output;
pub mod stamp;
pub mod tls;

use std::time::{Duration, Instant};

use frame_simd::close::parse_close_payload;
use frame_simd::{CloseCode, Kernels, Opcode};

use self::deflate::{DeflateConfig, Negotiated, SendDeflate};
use self::frames::{Flow, FrameReader, Limits, Message};
use self::handshake::{check_upgrade, write_switching, HandshakeError, HandshakeFailure, Policy};
use self::http::{scan_head, write_error, HeaderSlots, HttpError, Scan};

pub use self::id::ConnId;
pub use self::output::Output;
pub use self::stamp::Stamp;

/// Bytes reserved up front for a request body (the rest is reserved as it arrives).
const BODY_RESERVE_BYTES: usize = 4096;

/// What the application made of a complete request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handling {
    /// Upgrade it: the RFC 6455 checks run, then [`App::on_open`].
    Upgrade,
    /// A plain response was appended to the output; `keep_alive` waits for the next request on
    /// this connection, otherwise it closes.
    Answered {
        /// Keep the connection for another request.
        keep_alive: bool,
    },
    /// Answer with this error and close.
    Refuse(HttpError),
    /// Hold the request: something asynchronous (a backend call) decides it. The connection
    /// waits in [`State::AwaitApp`], reading nothing more, until [`Conn::on_resume`] hands the
    /// same request to [`App::on_request`] again; the handshake deadline still applies.
    Pending,
    /// Read a request body of exactly `len` bytes (the app checked the announced length against
    /// its limit), then hand it to [`App::on_body`].
    Body {
        /// The body's length in bytes.
        len: usize,
    },
    /// Like [`Handling::Pending`], but the request may be held until `until` (a long poll,
    /// answered when data arrives) rather than the handshake deadline.
    Hold {
        /// The latest time the app answers by; past it the request times out (408).
        until: Instant,
    },
}

/// A refused upgrade: the HTTP status and a text body saying why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Status code and reason phrase.
    pub status: (u16, &'static str),
    /// The body.
    pub message: String,
}

/// What a connection speaks above HTTP and RFC 6455: which requests upgrade, what the client gets
/// first, what its messages do. The shard hands one to every input call (the app layer on a
/// shard; a small fixture in tests). `Conn` stays sans-IO: the app only appends to the
/// [`Output`] and keeps its own per-connection state.
pub trait App {
    /// A complete request head: answer it, refuse it, or ask for the upgrade.
    fn on_request(&mut self, req: &httparse::Request<'_, '_>, out: &mut Output) -> Handling;

    /// The upgrade passed the RFC 6455 checks; the `101` is already in `out`. Append what the
    /// client gets first (a welcome), or refuse (the `101` is then replaced by the refusal and
    /// the connection closes).
    fn on_open(&mut self, req: &httparse::Request<'_, '_>, out: &mut Output)
        -> Result<(), Refusal>;

    /// A complete data message; `payload` (unmasked, text validated) may be changed in place.
    fn on_message(&mut self, opcode: Opcode, payload: &mut [u8], out: &mut Output);

    /// The body a [`Handling::Body`] asked for is complete: answer, refuse or hold the request
    /// (an upgrade is not possible here and is refused as malformed).
    fn on_body(&mut self, body: &mut [u8], out: &mut Output) -> Handling {
        let _ = (body, out);
        Handling::Refuse(HttpError::Malformed)
    }
}

/// Everything a connection needs to know about the server's configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Frame and message limits.
    pub limits: Limits,
    /// Request line plus headers, in bytes.
    pub max_header_bytes: usize,
    /// Header lines per request.
    pub max_headers: usize,
    /// Origins and subprotocols.
    pub policy: Policy,
    /// A request must be complete this long after the connection was accepted.
    pub handshake_timeout: Duration,
    /// Ping a connection that has been silent this long.
    pub ping_interval: Duration,
    /// Close a connection that stays silent this long after our ping.
    pub pong_timeout: Duration,
    /// Drop the TCP connection this long after the close started.
    pub close_timeout: Duration,
    /// permessage-deflate: offered or not, and from what size messages are compressed.
    pub deflate: DeflateConfig,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            limits: Limits {
                max_frame_bytes: 16 << 20,
                max_message_bytes: 16 << 20,
                max_fragments: 65536,
            },
            max_header_bytes: 8192,
            max_headers: 64,
            policy: Policy::default(),
            handshake_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(25),
            pong_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            deflate: DeflateConfig::default(),
        }
    }
}

/// What a connection waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// The HTTP request (an upgrade, or a plain request such as `/healthz`).
    AwaitRequest,
    /// The app's decision on a held request ([`Handling::Pending`]); nothing is read.
    AwaitApp,
    /// The body of a request ([`Handling::Body`]).
    AwaitBody,
    /// WebSocket frames.
    Open,
    /// The peer's close frame: we sent ours.
    Closing,
    /// Nothing more: flush, shut down, and drop when the peer closes or at the deadline.
    Closed,
}

/// Who started a connection's closing handshake, and with which code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseRecord {
    /// The close code (1005 when the peer's close frame carried none).
    pub code: u16,
    /// The peer sent its close frame first.
    pub by_peer: bool,
}

/// One connection's protocol state. See the module doc for the calling contract.
#[derive(Debug)]
pub struct Conn {
    state: State,
    /// Drop the socket right after flushing, without waiting for the peer.
    drop_now: bool,
    /// A ping was sent and nothing has arrived since.
    pinged: bool,
    /// When the last byte arrived.
    last_rx: Stamp,
    /// When the current wait began: accepted (`AwaitRequest`), ping sent (`Open`, pinged), close
    /// started (`Closing`, `Closed`).
    mark: Stamp,
    frames: FrameReader,
    /// What only some connections need (`None` for an open connection without compression):
    /// one pointer instead of its fields in every connection.
    rare: Option<Box<Rare>>,
}

/// The part of a connection's state that most open connections never use.
#[derive(Debug, Default)]
struct Rare {
    /// The unfinished request head (empty and unallocated otherwise); in `AwaitApp`, the held
    /// head followed by any bytes that came behind it.
    request: Vec<u8>,
    /// In `AwaitApp` and `AwaitBody`: the length of the held head at the start of `request`.
    held_head: usize,
    /// In `AwaitBody`: the length of the body being read (it follows the head in `request`).
    body_len: usize,
    /// In `AwaitApp` after [`Handling::Hold`]: when the held request times out.
    hold_until: Option<Instant>,
    /// The first close frame, sent or received.
    close: Option<CloseRecord>,
    /// permessage-deflate, when the upgrade negotiated it.
    deflate: Option<Negotiated>,
}

impl Rare {
    fn is_empty(&self) -> bool {
        self.request.capacity() == 0
            && self.close.is_none()
            && self.deflate.is_none()
            && self.hold_until.is_none()
    }
}

/// The per-call context: configuration and the process's kernels.
#[derive(Clone, Copy, Debug)]
pub struct Ctx<'a> {
    /// Limits, policy, timeouts.
    pub settings: &'a Settings,
    /// Unmask and UTF-8 kernels.
    pub kernels: &'a Kernels,
}

impl Conn {
    /// A connection accepted at `now`, waiting for its request.
    pub fn new(now: Instant) -> Conn {
        Conn {
            state: State::AwaitRequest,
            drop_now: false,
            pinged: false,
            last_rx: Stamp::at(now),
            mark: Stamp::at(now),
            frames: FrameReader::default(),
            rare: None,
        }
    }

    /// A connection over the connection limit: answered `503` and closed.
    pub fn over_capacity(now: Instant, out: &mut Output) -> Conn {
        let mut conn = Conn::new(now);
        conn.http_error(HttpError::OverCapacity, now, out);
        conn
    }

    /// What the connection waits for.
    pub fn state(&self) -> State {
        self.state
    }

    /// How data messages to this connection are compressed (`None`: uncompressed). Hand it to
    /// the [`Output`] before appending frames for this connection outside an input call.
    pub fn send_deflate(&self, s: &Settings) -> Option<SendDeflate> {
        let n = self.rare.as_deref()?.deflate?;
        Some(SendDeflate::new(&n, &s.deflate))
    }

    /// The rarely used state, made on first use.
    fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// Free the rarely used state once nothing is left in it.
    fn tidy(&mut self) {
        if self.rare.as_deref().is_some_and(Rare::is_empty) {
            self.rare = None;
        }
    }

    /// Start the closing handshake with `code` (a slow consumer, a disconnect asked for by the
    /// backend): the close frame goes out after what is queued; data is ignored from now on.
    pub fn on_close_request(
        &mut self,
        code: CloseCode,
        reason: &str,
        now: Instant,
        out: &mut Output,
    ) {
        match self.state {
            State::AwaitRequest | State::AwaitApp | State::AwaitBody => {
                self.enter(State::Closed, now);
                self.drop_now = true;
            }
            State::Open => {
                out.close(Some(code), reason);
                self.record_close(code.0, false);
                self.frames.skip_data();
                self.enter(State::Closing, now);
            }
            State::Closing | State::Closed => {}
        }
    }

    /// Who started the closing handshake and with which code (`None`: no close frame was
    /// sent or received, e.g. the TCP connection ended first).
    pub fn close_record(&self) -> Option<CloseRecord> {
        self.rare.as_deref()?.close
    }

    fn record_close(&mut self, code: u16, by_peer: bool) {
        self.rare()
            .close
            .get_or_insert(CloseRecord { code, by_peer });
    }

    /// True when the socket should be dropped right after flushing.
    pub fn must_drop(&self) -> bool {
        self.drop_now
    }

    /// Bytes held for unfinished requests, frames and messages (capacity).
    pub fn retained_bytes(&self) -> usize {
        self.rare.as_deref().map_or(0, |r| r.request.capacity()) + self.frames.retained_bytes()
    }

    /// When [`Conn::on_deadline`] must next be called, read at `now` (the connection's times
    /// are stamps, see [`Stamp`]).
    pub fn deadline(&self, s: &Settings, now: Instant) -> Instant {
        let mark = self.mark.to_instant(now);
        match self.state {
            _ if self.drop_now => mark,
            State::AwaitApp if self.hold_until().is_some() => self.hold_until().unwrap_or(mark),
            State::AwaitRequest | State::AwaitApp | State::AwaitBody => mark + s.handshake_timeout,
            State::Open if self.pinged => mark + s.pong_timeout,
            State::Open => self.last_rx.to_instant(now) + s.ping_interval,
            State::Closing | State::Closed => mark + s.close_timeout,
        }
    }

    /// Bytes read from the peer (masked frames are unmasked in place); `app` serves what the
    /// request and the messages ask for.
    pub fn on_read(
        &mut self,
        bytes: &mut [u8],
        now: Instant,
        cx: &Ctx<'_>,
        out: &mut Output,
        app: &mut dyn App,
    ) {
        self.last_rx = Stamp::at(now);
        out.deflate = self.send_deflate(cx.settings);
        if self.state == State::Open && self.pinged {
            self.pinged = false;
        }
        match self.state {
            State::AwaitRequest => self.read_request(bytes, now, cx, out, app),
            State::Open | State::Closing => self.read_frames(bytes, now, cx, out, app),
            State::AwaitApp => self.hold(bytes, now, cx, out),
            State::AwaitBody => self.read_body(bytes, now, cx, out, app),
            State::Closed => {}
        }
    }

    /// The app can now decide the held request: it gets [`App::on_request`] again (and the
    /// upgrade proceeds as usual), then whatever came behind the request is read.
    pub fn on_resume(&mut self, now: Instant, cx: &Ctx<'_>, out: &mut Output, app: &mut dyn App) {
        if self.state != State::AwaitApp {
            return;
        }
        let r = self.rare();
        let mut held = std::mem::take(&mut r.request);
        let head_len = std::mem::take(&mut r.held_head).min(held.len());
        r.hold_until = None;
        self.tidy();
        self.state = State::AwaitRequest;
        let (head, tail) = held.split_at_mut(head_len);
        self.on_request(head, now, cx, out, app);
        if !tail.is_empty() {
            self.read_request(tail, now, cx, out, app);
        }
    }

    /// Bytes that arrived while the app decides (a shard stops reading, so only a peer that
    /// did not wait for the answer sends them): kept, up to the header byte limit.
    fn hold(&mut self, bytes: &[u8], now: Instant, cx: &Ctx<'_>, out: &mut Output) {
        let r = self.rare();
        if r.request.len() + bytes.len() > r.held_head + cx.settings.max_header_bytes {
            return self.http_error(HttpError::HeadersTooLarge, now, out);
        }
        r.request.extend_from_slice(bytes);
    }

    /// The deadline passed: ping, time out, or give up on the peer.
    pub fn on_deadline(&mut self, now: Instant, cx: &Ctx<'_>, out: &mut Output) {
        if now < self.deadline(cx.settings, now) {
            return;
        }
        match self.state {
            State::AwaitRequest | State::AwaitApp | State::AwaitBody => {
                out.refused = Some(HandshakeFailure::Timeout);
                self.http_error(HttpError::Timeout, now, out);
                self.drop_now = true;
            }
            State::Open if self.pinged => {
                out.close(Some(CloseCode::GOING_AWAY), "ping timeout");
                self.record_close(CloseCode::GOING_AWAY.0, false);
                self.enter(State::Closed, now);
                self.drop_now = true;
            }
            State::Open => {
                out.frame(Opcode::Ping, b"");
                self.pinged = true;
                self.mark = Stamp::at(now);
            }
            State::Closing | State::Closed => {
                self.enter(State::Closed, now);
                self.drop_now = true;
            }
        }
    }

    /// The app asked to close (see [`Output::close_request`]) outside a read, e.g. when its own
    /// timer ran out: honour it.
    pub fn on_app_close(&mut self, now: Instant, out: &mut Output) {
        if let Some((code, reason)) = out.close_request.take() {
            self.on_close_request(code, reason, now, out);
        }
    }

    /// The server is shutting down: open connections are sent close 1001, unfinished requests
    /// are dropped.
    pub fn on_shutdown(&mut self, now: Instant, out: &mut Output) {
        match self.state {
            State::AwaitRequest | State::AwaitApp | State::AwaitBody => {
                self.enter(State::Closed, now);
                self.drop_now = true;
            }
            State::Open => {
                out.close(Some(CloseCode::GOING_AWAY), "server shutting down");
                self.record_close(CloseCode::GOING_AWAY.0, false);
                self.frames.skip_data();
                self.enter(State::Closing, now);
            }
            State::Closing | State::Closed => {}
        }
    }

    /// The peer closed its sending side: nothing more will arrive.
    pub fn on_peer_eof(&mut self, now: Instant) {
        if self.state != State::Closed {
            self.enter(State::Closed, now);
        }
    }

    fn enter(&mut self, state: State, now: Instant) {
        self.state = state;
        self.mark = Stamp::at(now);
        if state == State::Closed {
            self.frames.discard();
            if let Some(r) = self.rare.as_deref_mut() {
                r.request = Vec::new();
                r.held_head = 0;
            }
            self.tidy();
        }
    }

    /// A plain request was answered: wait for the next one on this connection, or close it.
    fn answered(&mut self, keep_alive: bool, now: Instant) {
        if keep_alive {
            // Ready for the next request on this connection.
            self.mark = Stamp::at(now);
        } else {
            self.enter(State::Closed, now);
        }
    }

    fn http_error(&mut self, e: HttpError, now: Instant, out: &mut Output) {
        write_error(&mut out.bytes, e.status(), e.extra_headers(), e.message());
        self.enter(State::Closed, now);
    }

    /// Accumulate the request head; parse it once complete; hand what follows on.
    fn read_request(
        &mut self,
        mut input: &mut [u8],
        now: Instant,
        cx: &Ctx<'_>,
        out: &mut Output,
        app: &mut dyn App,
    ) {
        let max = cx.settings.max_header_bytes;
        while !input.is_empty() {
            match self.state {
                State::AwaitRequest => {}
                State::AwaitApp => return self.rare().request.extend_from_slice(input),
                State::AwaitBody => return self.read_body(input, now, cx, out, app),
                State::Open => return self.read_frames(input, now, cx, out, app),
                State::Closing | State::Closed => return,
            }
            if self.rare.as_deref().is_none_or(|r| r.request.is_empty()) {
                match scan_head(input, 0, max) {
                    Scan::Head(end) => {
                        let (head, rest) = std::mem::take(&mut input).split_at_mut(end);
                        self.on_request(head, now, cx, out, app);
                        input = rest;
                    }
                    Scan::Partial => {
                        self.rare().request.extend_from_slice(input);
                        return;
                    }
                    Scan::TooLong(e) => return self.http_error(e, now, out),
                }
            } else {
                // Never hold more than the limit (plus the terminator's last bytes).
                let r = self.rare();
                let from = r.request.len();
                let take = (max + 4).saturating_sub(from).min(input.len());
                let (now_in, rest) = std::mem::take(&mut input).split_at_mut(take);
                r.request.extend_from_slice(now_in);
                input = rest;
                match scan_head(&r.request, from, max) {
                    Scan::Head(end) => {
                        let mut buf = std::mem::take(&mut r.request);
                        self.tidy();
                        let (head, tail) = buf.split_at_mut(end);
                        self.on_request(head, now, cx, out, app);
                        // Bytes that came behind the head: frames or a pipelined request.
                        self.read_request(tail, now, cx, out, app);
                    }
                    Scan::Partial => return,
                    Scan::TooLong(e) => return self.http_error(e, now, out),
                }
            }
        }
    }

    /// Route one complete request head.
    fn on_request(
        &mut self,
        head: &[u8],
        now: Instant,
        cx: &Ctx<'_>,
        out: &mut Output,
        app: &mut dyn App,
    ) {
        let s = cx.settings;
        let mut slots = HeaderSlots::default();
        let mut req = httparse::Request::new(slots.get(s.max_headers));
        match req.parse(head) {
            // The head ends at the first `\r\n\r\n`; a parse that ends sooner (at a bare
            // `\n\n`) would leave bytes nobody reads: refused, never skipped.
            Ok(httparse::Status::Complete(n)) if n == head.len() => {}
            Ok(_) => return self.http_error(HttpError::Malformed, now, out),
            Err(httparse::Error::TooManyHeaders) => {
                return self.http_error(HttpError::TooManyHeaders, now, out)
            }
            Err(_) => return self.http_error(HttpError::Malformed, now, out),
        }
        let handling = app.on_request(&req, out);
        match handling {
            Handling::Pending | Handling::Hold { .. } => {
                let until = match handling {
                    Handling::Hold { until } => Some(until),
                    _ => None,
                };
                self.rare().request = head.to_vec();
                self.await_app(head.len(), until);
            }
            Handling::Body { len } => {
                // The head stays for the resume; the body follows it in `request`, which
                // grows as bytes arrive: an announced length reserves nothing by itself.
                let r = self.rare();
                r.request = Vec::with_capacity(head.len() + len.min(BODY_RESERVE_BYTES));
                r.request.extend_from_slice(head);
                r.held_head = head.len();
                r.body_len = len;
                self.state = State::AwaitBody;
            }
            Handling::Answered { keep_alive } => self.answered(keep_alive, now),
            Handling::Refuse(e) => self.http_error(e, now, out),
            Handling::Upgrade => match check_upgrade(&req, &s.policy) {
                Ok(accepted) => {
                    let before = out.bytes.len();
                    write_switching(&mut out.bytes, &accepted, &s.policy);
                    if let Some(n) = deflate::negotiate(&req, &s.deflate) {
                        self.rare().deflate = Some(n);
                        deflate::write_response(&mut out.bytes, &n);
                        self.frames.enable_deflate();
                    }
                    out.deflate = self.send_deflate(s);
                    if let Err(r) = app.on_open(&req, out) {
                        out.refused.get_or_insert(HandshakeFailure::BadRequest);
                        out.bytes.truncate(before);
                        write_error(&mut out.bytes, r.status, &[], &r.message);
                        return self.enter(State::Closed, now);
                    }
                    self.enter(State::Open, now);
                }
                Err(e) => {
                    out.refused = Some(match e {
                        HandshakeError::OriginNotAllowed => HandshakeFailure::Origin,
                        _ => HandshakeFailure::BadRequest,
                    });
                    write_error(&mut out.bytes, e.status(), e.extra_headers(), e.message());
                    self.enter(State::Closed, now);
                }
            },
        }
    }

    /// When a held request ([`Handling::Hold`]) times out, if one is held.
    fn hold_until(&self) -> Option<Instant> {
        self.rare.as_deref()?.hold_until
    }

    /// Hold the request head at the start of `request` (`head_len` bytes; what follows it is
    /// dropped, and `read_request` adds what comes behind) for [`Conn::on_resume`], until
    /// `until` or else the handshake deadline.
    fn await_app(&mut self, head_len: usize, until: Option<Instant>) {
        let r = self.rare();
        r.request.truncate(head_len);
        r.held_head = head_len;
        r.hold_until = until;
        self.state = State::AwaitApp;
    }

    /// Bytes of a request body: once `body_len` are in, the app gets them; what follows is
    /// the next request.
    fn read_body(
        &mut self,
        input: &mut [u8],
        now: Instant,
        cx: &Ctx<'_>,
        out: &mut Output,
        app: &mut dyn App,
    ) {
        let r = self.rare();
        let want = r.held_head + r.body_len;
        let take = want.saturating_sub(r.request.len()).min(input.len());
        let (body_part, rest) = input.split_at_mut(take);
        r.request.extend_from_slice(body_part);
        if r.request.len() < want {
            return;
        }
        let mut held = std::mem::take(&mut r.request);
        let head_len = r.held_head.min(held.len());
        r.body_len = 0;
        self.state = State::AwaitRequest;
        let handling = app.on_body(&mut held[head_len..], out);
        match handling {
            Handling::Pending => {
                self.rare().request = held;
                self.await_app(head_len, None);
            }
            Handling::Hold { until } => {
                self.rare().request = held;
                self.await_app(head_len, Some(until));
            }
            Handling::Answered { keep_alive } => {
                self.rare().held_head = 0;
                self.tidy();
                self.answered(keep_alive, now);
            }
            Handling::Refuse(e) => return self.http_error(e, now, out),
            Handling::Upgrade | Handling::Body { .. } => {
                return self.http_error(HttpError::Malformed, now, out)
            }
        }
        if !rest.is_empty() {
            self.read_request(rest, now, cx, out, app);
        }
    }

    /// WebSocket frames: hand data to the app, answer pings, run the closing handshake.
    fn read_frames(
        &mut self,
        bytes: &mut [u8],
        now: Instant,
        cx: &Ctx<'_>,
        out: &mut Output,
        app: &mut dyn App,
    ) {
        let mut state = self.state;
        let mut record = None;
        self.frames
            .on_read(bytes, cx.kernels, &cx.settings.limits, |m| {
                match m {
                    Message::Data { opcode, payload } if state == State::Open => {
                        out.messages_in += 1;
                        app.on_message(opcode, payload, out);
                        if let Some((code, reason)) = out.close_request.take() {
                            // The app's protocol failed: close like a violation.
                            out.close(Some(code), reason);
                            state = State::Closing;
                        }
                    }
                    Message::Ping(payload) if state == State::Open => out.pong(payload),
                    Message::Violation(e) if state == State::Open => {
                        // Fail the connection (§7.1.7), then wait for the peer's close.
                        out.close(Some(e.close_code()), e.reason());
                        record = Some((e.close_code().0, false));
                        state = State::Closing;
                    }
                    Message::Close(payload) => {
                        if state == State::Open {
                            let code = match parse_close_payload(payload) {
                                Ok(None) => {
                                    out.close(None, "");
                                    CloseCode::NO_STATUS.0
                                }
                                Ok(Some((code, _))) => {
                                    out.close(Some(code), "");
                                    code.0
                                }
                                Err(e) => {
                                    out.close(Some(e.close_code()), "bad close frame");
                                    e.close_code().0
                                }
                            };
                            record = Some((code, true));
                        }
                        state = State::Closed;
                        return Flow::Stop;
                    }
                    _ => {}
                }
                Flow::Continue
            });
        if let Some((code, by_peer)) = record {
            self.record_close(code, by_peer);
        }
        if state != self.state {
            self.enter(state, now);
        }
    }
}

#[cfg(test)]
mod body_tests;
#[cfg(test)]
mod tests;
