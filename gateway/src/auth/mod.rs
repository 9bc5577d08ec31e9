//! Authentication: the backend API key and the clients' signed tokens.
//!
//! Clients present an HS256 JWT ([`token`]) at the upgrade ([`upgrade`]); its verified claims
//! become the connection's [`Identity`], and its router session answers "may this connection
//! subscribe to / publish on this channel" from the token's channel [`patterns`] until the token
//! expires ([`expiries`]). Backends present the API key ([`key`]). Every secret comparison runs in
//! constant time.

pub mod expiries;
pub mod key;
pub mod patterns;
pub mod token;
pub mod upgrade;

use std::sync::Arc;

pub use self::key::ApiKey;
pub use self::patterns::{Pattern, Patterns};
pub use self::token::{Claims, TokenError, Verifier};

/// Who a client connection is, as the upgrade found it. What it may do is asked of its session
/// (`router::session::Session`), which keeps the claims. Cloning is cheap (one `Arc` or one small
/// string).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// No token (allowed only without `--require-token`): may subscribe and publish anywhere.
    /// `user` is the nickname from `?user=`, if any.
    Anonymous {
        /// The self-chosen name, not verified.
        user: Option<Box<str>>,
    },
    /// A verified token; its claims are shared by nothing else.
    Token(Arc<Claims>),
}

/// The current time in seconds since the Unix epoch (the only clock read in this module; the
/// verifiers take `now` as an argument).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
