//! The application layer: what a connection speaks once its request is routed. A shard hands a
//! [`Dispatch`] to every input call of a client connection; it answers plain requests
//! ([`routes`]: `/healthz`, the chat [`page`]), authenticates upgrades (a token, or an anonymous
//! nickname), and turns messages into router calls: `/echo` sends them back, [`ws`] is the JSON
//! client protocol, [`raw`] and [`broadcast`] are the protocol-free modes.
//!
//! State lives in two places: [`ClientState`] inline in each connection's shard entry (its route
//! and router session), [`AppState`] once per shard (client auth, the request parser and the
//! reusable text buffers, token expiries). Replies go straight into the connection's
//! [`Output`]; effects on other connections go through the [`Router`].

pub mod broadcast;
pub mod calls;
pub mod page;
pub mod raw;
pub mod routes;
pub mod sio;
pub mod ws;

use std::sync::Arc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use frame_simd::Opcode;

use crate::auth::expiries::Expiries;
use crate::auth::upgrade::ClientAuth;
use crate::auth::{unix_now, Claims, Identity, TokenError};
use crate::conn::handshake::HandshakeFailure;
use crate::conn::{App, ConnId, Handling, Output, Refusal};
use crate::names::check_user;
use crate::router::channels::Kind;
use crate::router::session::Session;
use crate::router::Router;

use self::calls::{Calls, ConnectState};
pub use self::routes::Route;
use self::ws::request::Parser;

/// One connection's application state, kept inline in its shard entry.
///
/// Kept small (48 bytes, see `client_state_stays_small`): the route, the count of backend calls
/// and the upgrade time share one word, and what only Socket.IO, its long-polling transport and
/// the connect hook use sits behind one pointer that a plain WebSocket client never allocates.
#[derive(Debug, Default)]
pub struct ClientState {
    /// The route chosen by the request path (`Echo` until then).
    pub route: Route,
    /// Its backend calls not yet answered.
    pub hook_calls: u16,
    /// When the upgrade completed (for the disconnect hook's duration).
    pub opened_at: OpenedAt,
    /// Its channels, user and rights, as the router sees them.
    pub session: Session,
    /// Socket.IO, long-polling and connect-hook state (`None` while all three are unused).
    rare: Option<Box<RareClient>>,
}

/// The part of a client's state that most connections never use (see [`ClientState`]).
#[derive(Debug, Default)]
struct RareClient {
    /// Its Socket.IO session (`/socket.io/` only).
    sio: Option<Box<sio::SioConn>>,
    /// A Socket.IO long-polling request waiting for its session's owner, or the WebSocket
    /// carrying a session upgraded from polling.
    poll: Option<Box<sio::polling::PollClient>>,
    /// Where the connect hook stands (`None`: not asked).
    connect: Option<Box<ConnectState>>,
}

impl RareClient {
    fn is_empty(&self) -> bool {
        self.sio.is_none() && self.poll.is_none() && self.connect.is_none()
    }
}

/// The accessors of one of [`RareClient`]'s fields: read, write in place, take (freeing the
/// rare state once nothing is left in it) and set (allocating it on first use).
macro_rules! rare_field {
    ($field:ident, $field_mut:ident, $take:ident, $set:ident, $ty:ty, $what:literal) => {
        #[doc = concat!("Its ", $what, ", if any.")]
        pub fn $field(&self) -> Option<&$ty> {
            self.rare.as_deref()?.$field.as_deref()
        }

        #[doc = concat!("Its ", $what, ", if any, to change in place.")]
        pub fn $field_mut(&mut self) -> Option<&mut $ty> {
            self.rare.as_deref_mut()?.$field.as_deref_mut()
        }

        #[doc = concat!("Take its ", $what, " away.")]
        pub fn $take(&mut self) -> Option<Box<$ty>> {
            let rare = self.rare.as_deref_mut()?;
            let taken = rare.$field.take();
            if rare.is_empty() {
                self.rare = None;
            }
            taken
        }

        #[doc = concat!("Give it ", $what, ".")]
        pub fn $set(&mut self, value: Box<$ty>) {
            self.rare.get_or_insert_with(Box::default).$field = Some(value);
        }
    };
}

impl ClientState {
    /// When the app needs [`Dispatch::on_deadline`] (a Socket.IO heartbeat), if ever.
    pub fn deadline(&self) -> Option<Instant> {
        self.sio().map(|s| s.deadline())
    }

    rare_field!(
        sio,
        sio_mut,
        take_sio,
        set_sio,
        sio::SioConn,
        "Socket.IO session"
    );
    rare_field!(
        poll,
        poll_mut,
        take_poll,
        set_poll,
        sio::polling::PollClient,
        "long-polling state"
    );
    rare_field!(
        connect,
        connect_mut,
        take_connect,
        set_connect,
        ConnectState,
        "connect hook's state"
    );
}

/// The application state of one shard: shared by its connections, used by one at a time.
#[derive(Debug)]
pub struct AppState {
    /// How client connections authenticate.
    pub auth: ClientAuth,
    /// When this shard's connections' tokens expire.
    pub expiries: Expiries,
    /// The `/ws` request parser (taken for the duration of one request).
    parser: Option<Parser>,
    /// Reused for replies and encoded `data` (taken and given back around each use).
    pub(crate) text: Vec<u8>,
    /// Reused for request ids as JSON text.
    id_text: Vec<u8>,
    /// The Socket.IO endpoint.
    pub sio: sio::SioState,
    /// Backend hooks (`None`: none configured).
    pub calls: Option<Calls>,
    /// The connect hook's `data` for the welcome being written.
    welcome_data: Option<Box<str>>,
    /// Messages of the current read for the forward hook (JSON objects, comma-separated).
    forward_batch: Vec<u8>,
    /// The peer address of the connection whose request is being read, when the connect hook
    /// wants it (set by the shard, see [`AppState::wants_remote`]).
    pub remote: Option<std::net::SocketAddr>,
}

impl AppState {
    /// The state of a shard whose clients authenticate with `auth`.
    pub fn new(auth: ClientAuth) -> AppState {
        AppState {
            auth,
            expiries: Expiries::default(),
            parser: Some(Parser::default()),
            text: Vec::new(),
            id_text: Vec::new(),
            sio: sio::SioState::default(),
            calls: None,
            welcome_data: None,
            forward_batch: Vec::new(),
            remote: None,
        }
    }

    /// Serve Socket.IO with `cfg`.
    pub fn with_sio(mut self, cfg: Arc<sio::SioConfig>) -> AppState {
        self.sio = sio::SioState::new(cfg);
        self
    }

    /// Call the backends configured in `calls`.
    pub fn with_calls(mut self, calls: Calls) -> AppState {
        self.calls = Some(calls);
        self
    }
}

impl Default for AppState {
    fn default() -> Self {
        AppState::new(ClientAuth::default())
    }
}

/// One connection's view of its shard for one input call.
pub struct Dispatch<'a> {
    /// The connection.
    pub id: ConnId,
    /// Its state.
    pub client: &'a mut ClientState,
    /// The shard's router.
    pub router: &'a mut Router,
    /// The shard's application state.
    pub app: &'a mut AppState,
    /// The time of the input call.
    pub now: Instant,
}

impl App for Dispatch<'_> {
    fn on_request(&mut self, req: &httparse::Request<'_, '_>, out: &mut Output) -> Handling {
        let path = req.path.unwrap_or("/");
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        let files = self.app.sio.cfg.client_files.as_deref();
        if let Some(handling) = sio::client_files::serve(path, files, req, out) {
            return handling;
        }
        if path == sio::PATH || path == "/socket.io" {
            let target = req.path.unwrap_or("/");
            let query = target.split_once('?').map_or("", |(_, q)| q);
            if sio::polling::is_polling(req, query) {
                return sio::polling::on_request(self, req, out);
            }
        }
        match routes::route(req, out) {
            Ok(route) => {
                self.client.route = route;
                if route != Route::Echo && self.ask_connect(req) {
                    return Handling::Pending;
                }
                Handling::Upgrade
            }
            Err(handling) => handling,
        }
    }

    fn on_open(
        &mut self,
        req: &httparse::Request<'_, '_>,
        out: &mut Output,
    ) -> Result<(), Refusal> {
        let route = self.client.route;
        if route == Route::Echo {
            return Ok(());
        }
        // Set first: a refused upgrade is cleaned up like any closing connection.
        self.client.session.kind = Some(if route == Route::Ws {
            Kind::Json
        } else {
            Kind::Bare
        });
        let target = req.path.unwrap_or("/");
        let query = target.split_once('?').map_or("", |(_, q)| q);
        // A connect hook's answer replaces token authentication.
        let decided = self.open_connected(out);
        match decided {
            Some(Err(refusal)) => return Err(refusal),
            Some(Ok(())) if matches!(self.client.connect(), Some(ConnectState::Close(..))) => {
                // Denied with a close code: no welcome; the shard closes it at once.
                return Ok(());
            }
            Some(Ok(())) => {}
            None => self.authenticate(req, query, out)?,
        }
        match route {
            Route::Echo => Ok(()),
            Route::Ws => {
                ws::open(self, out);
                Ok(())
            }
            Route::Raw => raw::open(self, query),
            Route::Broadcast => broadcast::open(self),
            Route::SocketIo => {
                sio::open(self, query, out);
                Ok(())
            }
        }
    }

    fn on_message(&mut self, opcode: Opcode, payload: &mut [u8], out: &mut Output) {
        match self.client.route {
            Route::Echo => out.frame(opcode, payload),
            Route::Ws => ws::on_message(self, opcode, payload, out),
            Route::Raw if self.forwarding() => self.forward(opcode, payload),
            Route::Raw => self.router.stats.raw_ignored += 1,
            Route::Broadcast => broadcast::on_message(self, opcode, payload),
            Route::SocketIo => sio::on_message(self, opcode, payload, out),
        }
    }

    fn on_body(&mut self, body: &mut [u8], _out: &mut Output) -> Handling {
        sio::polling::on_body(self, body)
    }
}

impl Dispatch<'_> {
    /// Token or anonymous authentication of an upgrade.
    fn authenticate(
        &mut self,
        req: &httparse::Request<'_, '_>,
        query: &str,
        out: &mut Output,
    ) -> Result<(), Refusal> {
        match self.app.auth.authenticate(query, req.headers, unix_now()) {
            Ok(Identity::Token(claims)) => self.set_claims(claims),
            Ok(Identity::Anonymous { user: Some(user) }) => {
                check_user(&user).map_err(|e| Refusal {
                    status: (400, "Bad Request"),
                    message: format!("user {}\n", e.message()),
                })?;
                self.router
                    .set_user(self.id, &mut self.client.session, Arc::from(user));
            }
            Ok(Identity::Anonymous { user: None }) => {}
            Err(e) => {
                out.refused = Some(token_failure(&e));
                return Err(Refusal {
                    status: (401, "Unauthorized"),
                    message: format!("{e}\n"),
                });
            }
        }
        Ok(())
    }
}

impl Dispatch<'_> {
    /// The time given by [`ClientState::deadline`] has come (the connection is open).
    pub fn on_deadline(&mut self, out: &mut Output) {
        if self.client.route == Route::SocketIo {
            sio::on_deadline(self, out);
        }
    }
}

impl Dispatch<'_> {
    /// Give the connection verified `claims`: its user, its rights, its expiry.
    pub(crate) fn set_claims(&mut self, claims: Arc<Claims>) {
        let session = &mut self.client.session;
        if self.router.user(session).map(|u| &**u) != Some(&*claims.sub) {
            self.router
                .set_user(self.id, session, Arc::from(&*claims.sub));
        }
        self.app.expiries.push(claims.exp, self.id);
        session.grants = Some(claims);
    }
}

/// A refused token as a handshake failure reason (for the metric).
fn token_failure(e: &TokenError) -> HandshakeFailure {
    match e {
        TokenError::Missing => HandshakeFailure::TokenMissing,
        TokenError::Expired { .. } => HandshakeFailure::TokenExpired,
        _ => HandshakeFailure::TokenInvalid,
    }
}

#[cfg(test)]
mod tests;

/// When a connection's upgrade completed: milliseconds since the process first asked, plus one
/// (0: not upgraded), in 40 bits (34 years). Five bytes in every connection's slot instead of
/// an `Option<Instant>`'s sixteen, so that it shares a word with the route and the call count;
/// a millisecond is all the disconnect hook reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenedAt([u8; 5]);

impl OpenedAt {
    /// The largest count five bytes hold.
    const MAX: u64 = (1 << 40) - 1;

    /// Opened at `now`.
    pub fn at(now: Instant) -> OpenedAt {
        let ms = now.saturating_duration_since(process_epoch()).as_millis();
        let ms = u64::try_from(ms).unwrap_or(u64::MAX).min(OpenedAt::MAX - 1) + 1;
        let b = ms.to_le_bytes();
        OpenedAt([b[0], b[1], b[2], b[3], b[4]])
    }

    /// How long ago, at `now`, the connection opened (`None`: it never did).
    pub fn age(self, now: Instant) -> Option<Duration> {
        let [a, b, c, d, e] = self.0;
        let stored = u64::from_le_bytes([a, b, c, d, e, 0, 0, 0]);
        let opened = Duration::from_millis(stored.checked_sub(1)?);
        Some(
            now.saturating_duration_since(process_epoch())
                .saturating_sub(opened),
        )
    }
}

/// The instant [`OpenedAt`] counts from.
fn process_epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

#[cfg(test)]
mod opened_at_tests {
    use super::*;

    #[test]
    fn opened_at_gives_the_age_to_the_millisecond_and_none_before_the_upgrade() {
        let now = process_epoch() + Duration::from_millis(5_000);
        assert_eq!(OpenedAt::default().age(now), None);
        let opened = OpenedAt::at(now);
        assert_eq!(opened.age(now), Some(Duration::ZERO));
        let later = now + Duration::from_millis(90_061);
        assert_eq!(opened.age(later), Some(Duration::from_millis(90_061)));
        assert_eq!(
            opened.age(now - Duration::from_secs(1)),
            Some(Duration::ZERO)
        );
        assert_eq!(std::mem::size_of::<OpenedAt>(), 5);
    }

    #[test]
    fn opened_at_saturates_past_forty_bits_of_milliseconds() {
        let epoch = process_epoch();
        let far = epoch + Duration::from_millis(OpenedAt::MAX + 1_000);
        let opened = OpenedAt::at(far);
        assert_ne!(opened, OpenedAt::default());
        let age = opened.age(far).expect("it opened");
        assert!(age >= Duration::from_millis(1_000), "{age:?}");
    }

    /// Every client connection's slot holds one; it was 96 bytes before the Socket.IO, polling
    /// and connect-hook state moved behind one pointer, the upgrade time shrank to 5 bytes and
    /// the session kept its user as a key into the shard's user table and its channel keys in
    /// 16 bytes.
    #[test]
    fn client_state_stays_small() {
        let size = std::mem::size_of::<ClientState>();
        assert!(size <= 48, "a client's state grew to {size} bytes");
    }
}
