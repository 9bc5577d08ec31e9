//! Client tokens: JWTs signed with HMAC-SHA256 (RFC 7519 / RFC 7515 compact form).
//!
//! Verification order: split the three base64url parts (no padding), decode the header and
//! require `"alg":"HS256"` exactly (`none` and every other algorithm are refused before any
//! cryptography), check the MAC over `header.payload` in constant time, and only then look at the
//! claims: `sub` and `exp` required, `nbf` honoured, `channels` / `publish` pattern lists. Time is
//! an argument (seconds since the Unix epoch), so tests choose it.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use simd_json::prelude::*;
use simd_json::BorrowedValue;

use super::patterns::{Pattern, PatternError, Patterns};
use crate::json::{nesting_within_limit, parser_safe};
use crate::names::check_user;

/// Longest token accepted, in bytes (it travels in a request head anyway).
pub const MAX_TOKEN_BYTES: usize = 8192;
/// Patterns accepted per list.
pub const MAX_PATTERNS: usize = 1024;

/// The verified claims of a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// The user (`sub`).
    pub sub: Box<str>,
    /// Expiry, seconds since the Unix epoch (`exp`).
    pub exp: u64,
    /// Channels the user may subscribe to (`channels`; absent: none).
    pub channels: Patterns,
    /// Channels the user may publish on (`publish`; absent: none).
    pub publish: Patterns,
}

/// Why a token is refused. Each variant names what was wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// No token was presented.
    Missing,
    /// A token was presented but the server has no `--token-secret` to verify it with.
    NotConfigured,
    /// Longer than [`MAX_TOKEN_BYTES`].
    TooLong,
    /// Not three non-empty dot-separated parts.
    NotThreeParts,
    /// A part is not unpadded base64url.
    BadBase64(Part),
    /// The header or the claims are not a JSON object.
    BadJson(Part),
    /// The header or the claims name a member twice (RFC 7515 §4, RFC 7519 §4).
    DuplicateName(Part),
    /// The header has no `alg`.
    MissingAlgorithm,
    /// `alg` is not `HS256` (this includes `none`).
    Algorithm(Box<str>),
    /// The signature does not match the secret.
    BadSignature,
    /// A required claim is absent.
    MissingClaim(&'static str),
    /// A claim has the wrong type or an impossible value.
    BadClaim(&'static str, &'static str),
    /// A channel pattern is malformed.
    BadPattern(&'static str, Box<str>),
    /// `exp` has passed.
    Expired {
        /// The token's `exp`.
        exp: u64,
    },
    /// `nbf` is still in the future.
    NotYetValid {
        /// The token's `nbf`.
        nbf: u64,
    },
}

/// Which part of a token an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The JOSE header.
    Header,
    /// The claims.
    Claims,
    /// The signature.
    Signature,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Header => "header",
            Part::Claims => "claims",
            Part::Signature => "signature",
        })
    }
}

impl TokenError {
    /// The client protocol's error code: `token_expired` or `bad_token`.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Expired { .. } => "token_expired",
            _ => "bad_token",
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Missing => f.write_str("a token is required (?token= or bearer.<jwt>)"),
            TokenError::NotConfigured => {
                f.write_str("tokens are not enabled on this server (no --token-secret)")
            }
            TokenError::TooLong => write!(f, "token longer than {MAX_TOKEN_BYTES} bytes"),
            TokenError::NotThreeParts => f.write_str("token is not three dot-separated parts"),
            TokenError::BadBase64(p) => write!(f, "token {p} is not unpadded base64url"),
            TokenError::BadJson(p) => write!(f, "token {p} is not a JSON object"),
            TokenError::DuplicateName(p) => write!(f, "token {p} names a member twice"),
            TokenError::MissingAlgorithm => f.write_str("token header has no alg"),
            TokenError::Algorithm(alg) => {
                write!(f, "token algorithm {alg:?} refused: only HS256 is accepted")
            }
            TokenError::BadSignature => f.write_str("token signature does not match"),
            TokenError::MissingClaim(c) => write!(f, "token lacks the {c} claim"),
            TokenError::BadClaim(c, why) => write!(f, "token claim {c} {why}"),
            TokenError::BadPattern(c, p) => write!(
                f,
                "token claim {c} has a bad pattern {p:?}: empty, or a * before the end"
            ),
            TokenError::Expired { exp } => write!(f, "token expired (exp {exp})"),
            TokenError::NotYetValid { nbf } => write!(f, "token not valid yet (nbf {nbf})"),
        }
    }
}

impl std::error::Error for TokenError {}

/// Verifies tokens against one secret.
#[derive(Clone)]
pub struct Verifier {
    mac: Hmac<Sha256>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Verifier(..)")
    }
}

impl Verifier {
    /// A verifier for tokens signed with `secret`.
    pub fn new(secret: &[u8]) -> Verifier {
        // HMAC takes a key of any length (RFC 2104 §2): this cannot fail.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
        Verifier { mac }
    }

    /// Verify `token` at `now` (seconds since the Unix epoch).
    pub fn verify(&self, token: &[u8], now: u64) -> Result<Claims, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLong);
        }
        let mut parts = token.split(|&b| b == b'.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::NotThreeParts);
        };
        if header.is_empty() || claims.is_empty() || signature.is_empty() {
            return Err(TokenError::NotThreeParts);
        }

        let mut header_json = decode(header, Part::Header)?;
        check_header(&mut header_json)?;

        let signature = decode(signature, Part::Signature)?;
        let mut mac = self.mac.clone();
        mac.update(&token[..header.len() + 1 + claims.len()]);
        // `verify_slice` compares in constant time (and refuses a wrong length).
        mac.verify_slice(&signature)
            .map_err(|_| TokenError::BadSignature)?;

        let mut claims_json = decode(claims, Part::Claims)?;
        parse_claims(&mut claims_json, now)
    }

    /// Sign `claims_json` (a JSON object's text) as an HS256 token: for tests, tools and docs.
    pub fn sign(&self, claims_json: &str) -> String {
        let header = encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = encode(claims_json.as_bytes());
        let mut token = format!("{header}.{claims}");
        let mut mac = self.mac.clone();
        mac.update(token.as_bytes());
        token.push('.');
        token.push_str(&encode(&mac.finalize().into_bytes()));
        token
    }
}

fn encode(bytes: &[u8]) -> String {
    base64_simd::URL_SAFE_NO_PAD.encode_to_string(bytes)
}

fn decode(part: &[u8], which: Part) -> Result<Vec<u8>, TokenError> {
    base64_simd::URL_SAFE_NO_PAD
        .decode_to_vec(part)
        .map_err(|_| TokenError::BadBase64(which))
}

fn check_header(json: &mut [u8]) -> Result<(), TokenError> {
    if !parser_safe(json) || !nesting_within_limit(json) {
        return Err(TokenError::BadJson(Part::Header));
    }
    let value =
        simd_json::to_borrowed_value(json).map_err(|_| TokenError::BadJson(Part::Header))?;
    let header = value.as_object().ok_or(TokenError::BadJson(Part::Header))?;
    if names_a_member_twice(header) {
        return Err(TokenError::DuplicateName(Part::Header));
    }
    match header.get("alg") {
        None => Err(TokenError::MissingAlgorithm),
        Some(alg) => match alg.as_str() {
            Some("HS256") => Ok(()),
            Some(other) => Err(TokenError::Algorithm(other.into())),
            None => Err(TokenError::Algorithm(alg.encode().into())),
        },
    }
}

fn parse_claims(json: &mut [u8], now: u64) -> Result<Claims, TokenError> {
    if !parser_safe(json) || !nesting_within_limit(json) {
        return Err(TokenError::BadJson(Part::Claims));
    }
    let value =
        simd_json::to_borrowed_value(json).map_err(|_| TokenError::BadJson(Part::Claims))?;
    let obj = value.as_object().ok_or(TokenError::BadJson(Part::Claims))?;
    if names_a_member_twice(obj) {
        return Err(TokenError::DuplicateName(Part::Claims));
    }
    let sub = match obj.get("sub") {
        None | Some(BorrowedValue::Static(simd_json::StaticNode::Null)) => {
            return Err(TokenError::MissingClaim("sub"))
        }
        Some(v) => match v.as_str() {
            Some(s) => {
                check_user(s).map_err(|e| TokenError::BadClaim("sub", e.message()))?;
                s
            }
            None => return Err(TokenError::BadClaim("sub", "is not a string")),
        },
    };
    let exp = seconds(obj.get("exp"), "exp")?.ok_or(TokenError::MissingClaim("exp"))?;
    let nbf = seconds(obj.get("nbf"), "nbf")?;
    seconds(obj.get("iat"), "iat")?;
    let channels = patterns(obj.get("channels"), "channels")?;
    let publish = patterns(obj.get("publish"), "publish")?;
    if exp <= now {
        return Err(TokenError::Expired { exp });
    }
    if let Some(nbf) = nbf {
        if nbf > now {
            return Err(TokenError::NotYetValid { nbf });
        }
    }
    Ok(Claims {
        sub: sub.into(),
        exp,
        channels,
        publish,
    })
}

/// Whether an object names a member twice. The parser keeps every member and `get` finds the
/// first, while RFC 7515 §4 and RFC 7519 §4 allow only refusing such a token or reading the last
/// one: refusing means the gateway and the backend that minted the token never disagree about a
/// claim. Objects are small here (a token is at most 8 KiB), so a quadratic scan is fine.
fn names_a_member_twice(obj: &simd_json::borrowed::Object<'_>) -> bool {
    let names: Vec<&str> = obj.keys().map(|k| &**k).collect();
    (0..names.len()).any(|i| names[i + 1..].contains(&names[i]))
}

/// A NumericDate claim (RFC 7519 §2): a non-negative number of seconds. A fraction is allowed by
/// the RFC and rounded down.
fn seconds(v: Option<&BorrowedValue<'_>>, name: &'static str) -> Result<Option<u64>, TokenError> {
    let Some(v) = v else {
        return Ok(None);
    };
    if let Some(n) = v.as_u64() {
        return Ok(Some(n));
    }
    if v.as_i64().is_some() {
        return Err(TokenError::BadClaim(name, "is out of range"));
    }
    match v.as_f64() {
        Some(f) if (0.0..1.8e19).contains(&f) => Ok(Some(f as u64)),
        Some(_) => Err(TokenError::BadClaim(name, "is out of range")),
        None => Err(TokenError::BadClaim(name, "is not a number of seconds")),
    }
}

fn patterns(v: Option<&BorrowedValue<'_>>, name: &'static str) -> Result<Patterns, TokenError> {
    let Some(v) = v else {
        return Ok(Patterns::default());
    };
    let Some(items) = v.as_array() else {
        return Err(TokenError::BadClaim(name, "is not an array of strings"));
    };
    if items.len() > MAX_PATTERNS {
        return Err(TokenError::BadClaim(name, "has more than 1024 patterns"));
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Some(s) = item.as_str() else {
            return Err(TokenError::BadClaim(name, "is not an array of strings"));
        };
        match Pattern::parse(s) {
            Ok(p) => out.push(p),
            Err(PatternError::Empty | PatternError::InnerWildcard) => {
                return Err(TokenError::BadPattern(name, s.into()))
            }
        }
    }
    Ok(Patterns(out.into_boxed_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn verifier() -> Verifier {
        Verifier::new(b"test-secret")
    }

    fn sign_raw(header: &str, claims: &str, secret: &[u8]) -> String {
        let h = encode(header.as_bytes());
        let c = encode(claims.as_bytes());
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap();
        mac.update(format!("{h}.{c}").as_bytes());
        let s = encode(&mac.finalize().into_bytes());
        format!("{h}.{c}.{s}")
    }

    fn good_claims() -> String {
        format!(
            r#"{{"sub":"alice","exp":{},"channels":["room:*","news"],"publish":["room:1"]}}"#,
            NOW + 60
        )
    }

    #[test]
    fn valid_token_yields_its_claims() {
        let t = verifier().sign(&good_claims());
        let c = verifier().verify(t.as_bytes(), NOW).unwrap();
        assert_eq!(&*c.sub, "alice");
        assert_eq!(c.exp, NOW + 60);
        assert!(c.channels.allows("room:7"));
        assert!(c.channels.allows("news"));
        assert!(!c.channels.allows("newsroom"));
        assert!(c.publish.allows("room:1"));
        assert!(!c.publish.allows("room:2"));
    }

    #[test]
    fn known_vector_from_python_hmac() {
        // Built with Python's hmac + hashlib + base64.urlsafe_b64encode (padding stripped),
        // secret "test-secret", claims {"sub":"bob","exp":4102444800}.
        const TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
                             eyJzdWIiOiJib2IiLCJleHAiOjQxMDI0NDQ4MDB9.\
                             INywSSTeQwfsakfHZDNyCB8yS3S7iXvGAdoiO0Aey58";
        assert_eq!(verifier().sign(r#"{"sub":"bob","exp":4102444800}"#), TOKEN);
        let c = verifier().verify(TOKEN.as_bytes(), NOW).unwrap();
        assert_eq!(&*c.sub, "bob");
        assert!(c.channels.is_empty() && c.publish.is_empty());
    }

    #[test]
    fn expired_token_is_refused_at_and_after_exp() {
        let t = verifier().sign(&format!(r#"{{"sub":"a","exp":{NOW}}}"#));
        assert_eq!(
            verifier().verify(t.as_bytes(), NOW),
            Err(TokenError::Expired { exp: NOW })
        );
        assert!(verifier().verify(t.as_bytes(), NOW - 1).is_ok());
        assert_eq!(TokenError::Expired { exp: NOW }.code(), "token_expired");
    }

    #[test]
    fn nbf_in_the_future_is_refused() {
        let t = verifier().sign(&format!(
            r#"{{"sub":"a","exp":{},"nbf":{}}}"#,
            NOW + 100,
            NOW + 10
        ));
        assert_eq!(
            verifier().verify(t.as_bytes(), NOW),
            Err(TokenError::NotYetValid { nbf: NOW + 10 })
        );
        assert!(verifier().verify(t.as_bytes(), NOW + 10).is_ok());
    }

    #[test]
    fn claims_with_a_nul_byte_are_not_json() {
        // The parser would read `"exp":4102444800<NUL>99` as `"exp":4102444800`.
        let t = verifier().sign("{\"sub\":\"a\",\"exp\":4102444800\u{0}99}");
        assert_eq!(
            verifier().verify(t.as_bytes(), NOW),
            Err(TokenError::BadJson(Part::Claims))
        );
        let t = sign_raw("{\"alg\":\"HS256\"\u{0}}", &good_claims(), b"test-secret");
        assert_eq!(
            verifier().verify(t.as_bytes(), NOW),
            Err(TokenError::BadJson(Part::Header))
        );
    }

    #[test]
    fn a_member_named_twice_is_refused() {
        // The parser's `get` would find the first `sub`; a backend's JWT library the last.
        let t = verifier().sign(r#"{"sub":"admin","exp":4102444800,"sub":"bob"}"#);
        assert_eq!(
            verifier().verify(t.as_bytes(), NOW),
            Err(TokenError::DuplicateName(Part::Claims))
        );
        let t = sign_raw(
            r#"{"alg":"HS256","alg":"none"}"#,
            &good_claims(),
            b"test-secret",
        );
        assert_eq!(
            verifier().verify(t.as_bytes(), NOW),
            Err(TokenError::DuplicateName(Part::Header))
        );
    }

    #[test]
    fn wrong_secret_is_a_bad_signature() {
        let t = Verifier::new(b"other").sign(&good_claims());
        assert_eq!(
            verifier().verify(t.as_bytes(), NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn tampered_claims_break_the_signature() {
        let t = verifier().sign(&good_claims());
        let parts: Vec<&str> = t.split('.').collect();
        let evil = encode(format!(r#"{{"sub":"root","exp":{}}}"#, NOW + 60).as_bytes());
        let forged = format!("{}.{}.{}", parts[0], evil, parts[2]);
        assert_eq!(
            verifier().verify(forged.as_bytes(), NOW),
            Err(TokenError::BadSignature)
        );
        let short_sig = format!("{}.{}.{}", parts[0], parts[1], &parts[2][..20]);
        assert_eq!(
            verifier().verify(short_sig.as_bytes(), NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn alg_none_is_refused_even_without_signature_check() {
        let claims = encode(good_claims().as_bytes());
        let header = encode(br#"{"alg":"none","typ":"JWT"}"#);
        for token in [
            format!("{header}.{claims}."),
            format!("{header}.{claims}.AAAA"),
        ] {
            let e = verifier().verify(token.as_bytes(), NOW).unwrap_err();
            assert!(
                matches!(e, TokenError::Algorithm(_) | TokenError::NotThreeParts),
                "{e:?}"
            );
        }
        let t = sign_raw(r#"{"alg":"none"}"#, &good_claims(), b"test-secret");
        assert_eq!(
            verifier().verify(t.as_bytes(), NOW),
            Err(TokenError::Algorithm("none".into()))
        );
    }

    #[test]
    fn other_algorithms_are_refused() {
        for alg in ["HS512", "RS256", "ES256", "hs256", "HS256 ", "NONE"] {
            let t = sign_raw(
                &format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#),
                &good_claims(),
                b"test-secret",
            );
            assert_eq!(
                verifier().verify(t.as_bytes(), NOW),
                Err(TokenError::Algorithm(alg.into())),
                "{alg}"
            );
        }
        let t = sign_raw(r#"{"alg":256}"#, &good_claims(), b"test-secret");
        assert!(matches!(
            verifier().verify(t.as_bytes(), NOW),
            Err(TokenError::Algorithm(_))
        ));
        let t = sign_raw(r#"{"typ":"JWT"}"#, &good_claims(), b"test-secret");
        assert_eq!(
            verifier().verify(t.as_bytes(), NOW),
            Err(TokenError::MissingAlgorithm)
        );
    }

    #[test]
    fn malformed_tokens_say_what_is_wrong() {
        let v = verifier();
        let good = v.sign(&good_claims());
        let parts: Vec<&str> = good.split('.').collect();
        assert_eq!(v.verify(b"", NOW), Err(TokenError::Missing));
        assert_eq!(v.verify(b"abc", NOW), Err(TokenError::NotThreeParts));
        assert_eq!(v.verify(b"a.b", NOW), Err(TokenError::NotThreeParts));
        assert_eq!(v.verify(b"a.b.c.d", NOW), Err(TokenError::NotThreeParts));
        assert_eq!(v.verify(b"..", NOW), Err(TokenError::NotThreeParts));
        let bad_b64 = format!("{}!.{}.{}", parts[0], parts[1], parts[2]);
        assert_eq!(
            v.verify(bad_b64.as_bytes(), NOW),
            Err(TokenError::BadBase64(Part::Header))
        );
        let padded = format!("{}.{}.{}=", parts[0], parts[1], parts[2]);
        assert_eq!(
            v.verify(padded.as_bytes(), NOW),
            Err(TokenError::BadBase64(Part::Signature))
        );
        let std_alphabet = format!("{}.{}.{}", parts[0], parts[1], parts[2].replace('-', "+"));
        if std_alphabet != good {
            assert!(v.verify(std_alphabet.as_bytes(), NOW).is_err());
        }
        let not_json = format!("{}.{}.{}", encode(b"{alg"), parts[1], parts[2]);
        assert_eq!(
            v.verify(not_json.as_bytes(), NOW),
            Err(TokenError::BadJson(Part::Header))
        );
        let array = format!("{}.{}.{}", encode(b"[1]"), parts[1], parts[2]);
        assert_eq!(
            v.verify(array.as_bytes(), NOW),
            Err(TokenError::BadJson(Part::Header))
        );
        let long = vec![b'a'; MAX_TOKEN_BYTES + 1];
        assert_eq!(v.verify(&long, NOW), Err(TokenError::TooLong));
        let claims_not_json = sign_raw(r#"{"alg":"HS256"}"#, "not json", b"test-secret");
        assert_eq!(
            v.verify(claims_not_json.as_bytes(), NOW),
            Err(TokenError::BadJson(Part::Claims))
        );
    }

    #[test]
    fn required_claims_must_be_present_and_typed() {
        let v = verifier();
        let check = |claims: &str| v.verify(v.sign(claims).as_bytes(), NOW);
        let exp = NOW + 60;
        assert_eq!(
            check(&format!(r#"{{"exp":{exp}}}"#)),
            Err(TokenError::MissingClaim("sub"))
        );
        assert_eq!(
            check(&format!(r#"{{"sub":null,"exp":{exp}}}"#)),
            Err(TokenError::MissingClaim("sub"))
        );
        assert_eq!(
            check(r#"{"sub":"a"}"#),
            Err(TokenError::MissingClaim("exp"))
        );
        assert_eq!(
            check(&format!(r#"{{"sub":7,"exp":{exp}}}"#)),
            Err(TokenError::BadClaim("sub", "is not a string"))
        );
        assert_eq!(
            check(&format!(r#"{{"sub":"","exp":{exp}}}"#)),
            Err(TokenError::BadClaim("sub", "is empty"))
        );
        // `sub` is a user name: the one user rule applies (crate::names).
        assert_eq!(
            check(&format!(r#"{{"sub":"a\nb","exp":{exp}}}"#)),
            Err(TokenError::BadClaim("sub", "holds a control character"))
        );
        assert_eq!(
            check(&format!(r#"{{"sub":"{}","exp":{exp}}}"#, "u".repeat(257))),
            Err(TokenError::BadClaim("sub", "is longer than 256 bytes"))
        );
        assert!(check(&format!(r#"{{"sub":"{}","exp":{exp}}}"#, "u".repeat(256))).is_ok());
        assert_eq!(
            check(r#"{"sub":"a","exp":"soon"}"#),
            Err(TokenError::BadClaim("exp", "is not a number of seconds"))
        );
        assert_eq!(
            check(r#"{"sub":"a","exp":-5}"#),
            Err(TokenError::BadClaim("exp", "is out of range"))
        );
        assert_eq!(
            check(&format!(r#"{{"sub":"a","exp":{exp}.5}}"#)).map(|c| c.exp),
            Ok(exp)
        );
        assert_eq!(
            check(&format!(r#"{{"sub":"a","exp":{exp},"channels":"room:*"}}"#)),
            Err(TokenError::BadClaim(
                "channels",
                "is not an array of strings"
            ))
        );
        assert_eq!(
            check(&format!(r#"{{"sub":"a","exp":{exp},"publish":[1]}}"#)),
            Err(TokenError::BadClaim(
                "publish",
                "is not an array of strings"
            ))
        );
        assert_eq!(
            check(&format!(r#"{{"sub":"a","exp":{exp},"channels":["a*b"]}}"#)),
            Err(TokenError::BadPattern("channels", "a*b".into()))
        );
        assert_eq!(
            check(&format!(r#"{{"sub":"a","exp":{exp},"publish":[""]}}"#)),
            Err(TokenError::BadPattern("publish", "".into()))
        );
    }

    #[test]
    fn mutated_tokens_are_refused_or_carry_the_same_claims() {
        let v = verifier();
        let good = v.sign(&good_claims());
        let original = v.verify(good.as_bytes(), NOW).unwrap();
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ";
        for _ in 0..20_000 {
            let mut t = good.clone().into_bytes();
            for _ in 0..1 + next() % 3 {
                let at = (next() % t.len() as u64) as usize;
                let c = alphabet[(next() % alphabet.len() as u64) as usize];
                match next() % 3 {
                    0 => t[at] = c,
                    1 => t.insert(at, c),
                    _ => {
                        t.remove(at);
                    }
                }
            }
            // Base64 leaves a few low bits of a part's last character unused, so a mutation
            // there can decode to the same bytes: accepted only with the very same claims.
            if let Ok(c) = v.verify(&t, NOW) {
                assert_eq!(c, original, "{}", String::from_utf8_lossy(&t));
            }
        }
    }

    #[test]
    fn deeply_nested_claims_are_refused_before_parsing() {
        let deep = format!(
            r#"{{"sub":"a","exp":{},"x":{}0{}}}"#,
            NOW + 60,
            "[".repeat(3000),
            "]".repeat(3000)
        );
        let t = verifier().sign(&deep);
        assert!(t.len() <= MAX_TOKEN_BYTES);
        assert_eq!(
            verifier().verify(t.as_bytes(), NOW),
            Err(TokenError::BadJson(Part::Claims))
        );
    }

    #[test]
    fn errors_read_as_sentences() {
        let e = TokenError::Algorithm("none".into());
        assert_eq!(
            e.to_string(),
            "token algorithm \"none\" refused: only HS256 is accepted"
        );
        assert_eq!(e.code(), "bad_token");
        assert_eq!(
            TokenError::MissingClaim("exp").to_string(),
            "token lacks the exp claim"
        );
    }
}
