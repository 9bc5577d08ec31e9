//! The token check at the WebSocket upgrade: find the token (`?token=<jwt>`, or an offered
//! subprotocol `bearer.<jwt>`, which the handshake never echoes because it is not a protocol the
//! server speaks), verify it, and turn the result into the connection's [`Identity`].
//!
//! A presented token must be valid even when tokens are optional: a client that sends a bad token
//! learns so (401) instead of silently becoming anonymous.

use std::sync::Arc;

use super::token::{TokenError, Verifier};
use super::Identity;
use crate::query::query_param;

/// The client authentication policy.
#[derive(Clone, Debug, Default)]
pub struct ClientAuth {
    /// Verifies tokens; `None` when no `--token-secret` is configured.
    pub verifier: Option<Verifier>,
    /// Refuse connections without a valid token.
    pub require_token: bool,
}

/// The subprotocol prefix that carries a token.
pub const BEARER_PROTOCOL_PREFIX: &str = "bearer.";
/// The subprotocol a client offers next to `bearer.<jwt>` for the server to select (browsers
/// refuse a handshake that selects none of the offered protocols; the token itself is never
/// echoed).
pub const BEARER_PROTOCOL: &str = "bearer";

impl ClientAuth {
    /// Decide who an upgrade request is, at `now` (seconds since the Unix epoch). `query` is the
    /// part of the request target after `?` (empty when none). An `Err` is answered 401 with the
    /// error's text as the body.
    pub fn authenticate(
        &self,
        query: &str,
        headers: &[httparse::Header<'_>],
        now: u64,
    ) -> Result<Identity, TokenError> {
        match find_token(query, headers) {
            Some(token) => {
                let Some(verifier) = &self.verifier else {
                    return Err(TokenError::NotConfigured);
                };
                let claims = verifier.verify(token.as_bytes(), now)?;
                Ok(Identity::Token(Arc::new(claims)))
            }
            None if self.require_token => Err(TokenError::Missing),
            None => Ok(Identity::Anonymous {
                user: query_param(query, "user")
                    .filter(|u| !u.is_empty())
                    .map(String::into_boxed_str),
            }),
        }
    }

    /// Verify a token presented later (the `refresh` op).
    pub fn verify(&self, token: &str, now: u64) -> Result<Identity, TokenError> {
        let verifier = self.verifier.as_ref().ok_or(TokenError::NotConfigured)?;
        Ok(Identity::Token(Arc::new(
            verifier.verify(token.as_bytes(), now)?,
        )))
    }
}

/// The token from `?token=` or else from an offered `bearer.<jwt>` subprotocol.
pub fn find_token(query: &str, headers: &[httparse::Header<'_>]) -> Option<String> {
    if let Some(t) = query_param(query, "token") {
        return Some(t);
    }
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-protocol"))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .find_map(|offered| {
            let offered = std::str::from_utf8(offered).ok()?.trim();
            offered
                .strip_prefix(BEARER_PROTOCOL_PREFIX)
                .map(str::to_owned)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn auth(require: bool) -> ClientAuth {
        ClientAuth {
            verifier: Some(Verifier::new(b"k")),
            require_token: require,
        }
    }

    fn token(exp: u64) -> String {
        Verifier::new(b"k").sign(&format!(
            r#"{{"sub":"carol","exp":{exp},"channels":["room:*"]}}"#
        ))
    }

    fn header<'a>(name: &'a str, value: &'a str) -> httparse::Header<'a> {
        httparse::Header {
            name,
            value: value.as_bytes(),
        }
    }

    /// The claims of a token identity (panics for an anonymous one).
    fn claims(id: Identity) -> Arc<crate::auth::Claims> {
        match id {
            Identity::Token(c) => c,
            Identity::Anonymous { .. } => panic!("expected a token identity"),
        }
    }

    #[test]
    fn token_in_query_becomes_the_identity() {
        let q = format!("user=x&token={}", token(NOW + 5));
        let c = claims(auth(true).authenticate(&q, &[], NOW).unwrap());
        assert_eq!(&*c.sub, "carol");
        assert_eq!(c.exp, NOW + 5);
        assert!(c.channels.allows("room:1"));
        assert!(!c.channels.allows("lobby"));
        assert!(!c.publish.allows("room:1"));
    }

    #[test]
    fn token_in_offered_subprotocol_is_found() {
        let offered = format!("chat, bearer.{}", token(NOW + 5));
        let h = [header("Sec-WebSocket-Protocol", &offered)];
        let c = claims(auth(true).authenticate("", &h, NOW).unwrap());
        assert_eq!(&*c.sub, "carol");
    }

    #[test]
    fn required_token_missing_or_bad_is_refused() {
        assert_eq!(
            auth(true).authenticate("user=x", &[], NOW),
            Err(TokenError::Missing)
        );
        let expired = format!("token={}", token(NOW - 1));
        assert_eq!(
            auth(true).authenticate(&expired, &[], NOW),
            Err(TokenError::Expired { exp: NOW - 1 })
        );
        let wrong = Verifier::new(b"other").sign(r#"{"sub":"a","exp":4102444800}"#);
        assert_eq!(
            auth(true).authenticate(&format!("token={wrong}"), &[], NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn optional_tokens_allow_anonymous_but_not_bad_tokens() {
        let id = auth(false).authenticate("user=Ann%20B", &[], NOW).unwrap();
        assert_eq!(
            id,
            Identity::Anonymous {
                user: Some("Ann B".into())
            }
        );
        assert!(auth(false).authenticate("token=x.y.z", &[], NOW).is_err());
        let no_secret = ClientAuth::default();
        assert!(no_secret.authenticate("", &[], NOW).is_ok());
        assert_eq!(
            no_secret.authenticate(&format!("token={}", token(NOW + 5)), &[], NOW),
            Err(TokenError::NotConfigured)
        );
    }

    #[test]
    fn anonymous_user_is_the_decoded_query_value_checked_later() {
        let a = auth(false);
        let user = |q: &str| match a.authenticate(q, &[], NOW).unwrap() {
            Identity::Anonymous { user } => user.map(String::from),
            Identity::Token(_) => panic!("no token was presented"),
        };
        assert_eq!(user(""), None);
        assert_eq!(user("user="), None);
        assert_eq!(user("user=%ZZ"), None);
        assert_eq!(user("user=%C3%A9"), Some("é".to_owned()));
        assert_eq!(user("user=a+b"), Some("a b".to_owned()));
        // The user rule (`names::check_user`) is applied where the upgrade is answered.
        assert_eq!(user("user=%0A"), Some("\n".to_owned()));
    }
}
