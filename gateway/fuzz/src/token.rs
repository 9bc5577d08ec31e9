//! `token`: client tokens (`gateway::auth::token::Verifier`): arbitrary bytes verified, the
//! same bytes signed as a claims document and verified, and a signed token with one byte changed.
//!
//! Asserts: nothing panics; an accepted token verifies again to the same claims, has a
//! non-empty `sub` and an `exp` after `now`; a token `sign` made is refused only for its claims
//! (never its header, encoding or signature), and when accepted its `sub` and `exp` are those of
//! the claims document as serde_json reads it; a changed byte is refused, or changes nothing the
//! verifier sees (the same claims); every refusal has a message.

use gateway::auth::token::{Part, MAX_TOKEN_BYTES};
use gateway::auth::{TokenError, Verifier};

use super::input::Input;
use super::ws_request::assert_is_json;

/// Clocks the checks verify at: the epoch, a day in 2023, and the end of time.
pub const NOWS: [u64; 3] = [0, 1_700_000_000, u64::MAX];

/// Input: a secret length and the secret, a byte choosing `now`, the position and the xor of the
/// changed byte, then the bytes (verified as a token, and signed as claims).
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let secret_len = usize::from(input.byte() % 65);
    let secret = input.take(secret_len).to_vec();
    let now = input.pick(&NOWS);
    let change_at = usize::from(input.u16());
    let change_xor = input.byte();
    let bytes = input.rest();
    let verifier = Verifier::new(&secret);

    let verdict = verifier.verify(bytes, now);
    check_verdict(&verifier, bytes, now, &verdict);

    let claims = String::from_utf8_lossy(bytes);
    let token = verifier.sign(&claims);
    let verdict = verifier.verify(token.as_bytes(), now);
    check_verdict(&verifier, token.as_bytes(), now, &verdict);
    match &verdict {
        Ok(got) => {
            assert_is_json(claims.as_bytes(), "accepted claims");
            if let Ok(doc) = serde_json::from_str::<serde_json::Value>(&claims) {
                assert_eq!(doc["sub"].as_str(), Some(&*got.sub), "sub of {claims}");
                if let Some(exp) = doc["exp"].as_u64() {
                    assert_eq!(exp, got.exp, "exp of {claims}");
                }
            }
        }
        Err(TokenError::TooLong) => assert!(token.len() > MAX_TOKEN_BYTES),
        // Empty claims encode to an empty part, which is what a missing part looks like.
        Err(TokenError::NotThreeParts) => assert!(claims.is_empty()),
        Err(
            TokenError::BadJson(Part::Claims)
            | TokenError::DuplicateName(Part::Claims)
            | TokenError::MissingClaim(_)
            | TokenError::BadClaim(..)
            | TokenError::BadPattern(..)
            | TokenError::Expired { .. }
            | TokenError::NotYetValid { .. },
        ) => {}
        Err(e) => panic!("a token sign made refused for {e:?}"),
    }

    let mut changed = token.into_bytes();
    let i = change_at % changed.len();
    changed[i] ^= change_xor.max(1);
    let after = verifier.verify(&changed, now);
    check_verdict(&verifier, &changed, now, &after);
    if after.is_ok() {
        assert_eq!(after, verdict, "a changed token verifies to other claims");
    }
}

/// An accepted token is accepted again identically and its claims hold at `now`; a refusal
/// explains itself.
fn check_verdict(
    verifier: &Verifier,
    token: &[u8],
    now: u64,
    verdict: &Result<gateway::auth::Claims, TokenError>,
) {
    match verdict {
        Ok(claims) => {
            assert!(!claims.sub.is_empty());
            assert!(claims.exp > now);
            assert_eq!(&verifier.verify(token, now), verdict, "verified twice");
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}
