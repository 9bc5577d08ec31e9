//! The opening handshake (RFC 6455 §4.2): checks an upgrade request against the rules and the
//! configured policy, computes `Sec-WebSocket-Accept`, and picks the subprotocol.
//!
//! Every refusal is a [`HandshakeError`] that knows its HTTP status and extra headers. Header
//! values are looked at once each, so a `Sec-WebSocket-Protocol` of thousands of tokens costs
//! linear time.

use std::io::Write;

use crate::conn::http::{has_token, trim};

/// The GUID appended to the key before hashing (§1.3).
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// What the server allows: origins (empty: any) and its subprotocols in preference order.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// Exact `Origin` values accepted; empty accepts any.
    pub allowed_origins: Vec<String>,
    /// Subprotocols the server speaks.
    pub subprotocols: Vec<String>,
}

/// An upgrade request the server refuses. Each variant names the broken rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// The method is not GET (§4.1).
    MethodNotGet,
    /// HTTP/1.0: an upgrade needs HTTP/1.1 or later (§4.1).
    OldHttpVersion,
    /// No `Host` header (§4.1).
    MissingHost,
    /// One of the handshake headers appears more than once.
    DuplicateHeader(&'static str),
    /// No `Upgrade` header at all: this is a plain request to a WebSocket endpoint.
    NoUpgrade,
    /// `Upgrade` without the `websocket` token.
    UpgradeNotWebsocket,
    /// `Connection` missing or without the `upgrade` token.
    ConnectionNotUpgrade,
    /// `Sec-WebSocket-Version` missing or not 13 (§4.4).
    UnsupportedVersion,
    /// `Sec-WebSocket-Key` missing or not the base64 of 16 bytes (§4.1).
    BadKey,
    /// `Origin` not in the allowed list (§10.2).
    OriginNotAllowed,
}

impl HandshakeError {
    /// The response status code and reason phrase.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            Self::MethodNotGet => (405, "Method Not Allowed"),
            Self::NoUpgrade | Self::UnsupportedVersion => (426, "Upgrade Required"),
            Self::OriginNotAllowed => (403, "Forbidden"),
            _ => (400, "Bad Request"),
        }
    }

    /// Extra header lines of the response.
    pub fn extra_headers(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::MethodNotGet => &[("Allow", "GET")],
            Self::NoUpgrade => &[("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")],
            Self::UnsupportedVersion => &[("Sec-WebSocket-Version", "13")],
            _ => &[],
        }
    }

    /// One line saying what was wrong.
    pub fn message(&self) -> &'static str {
        match self {
            Self::MethodNotGet => "a WebSocket upgrade must use GET",
            Self::OldHttpVersion => "a WebSocket upgrade needs HTTP/1.1",
            Self::MissingHost => "missing Host header",
            Self::DuplicateHeader(_) => "duplicate handshake header",
            Self::NoUpgrade => "this endpoint speaks WebSocket: send an Upgrade request",
            Self::UpgradeNotWebsocket => "Upgrade header lacks the websocket token",
            Self::ConnectionNotUpgrade => "Connection header lacks the upgrade token",
            Self::UnsupportedVersion => "Sec-WebSocket-Version must be 13",
            Self::BadKey => "Sec-WebSocket-Key must be the base64 of 16 bytes",
            Self::OriginNotAllowed => "origin not allowed",
        }
    }
}

/// An accepted upgrade: the accept key and the chosen subprotocol (an index into the policy's
/// list).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// `Sec-WebSocket-Accept`, base64 of the SHA-1.
    pub accept: [u8; 28],
    /// Index of the chosen protocol in [`Policy::subprotocols`].
    pub protocol: Option<usize>,
}

/// `base64(sha1(key + GUID))` (§4.2.2 step 5.4).
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key);
    sha.update(GUID);
    let digest = sha.digest().bytes();
    let mut out = [0u8; 28];
    let _ = base64_simd::STANDARD.encode(&digest, base64_simd::Out::from_slice(&mut out));
    out
}

/// Check an upgrade request (already routed to a WebSocket path).
pub fn check_upgrade(
    req: &httparse::Request<'_, '_>,
    policy: &Policy,
) -> Result<Accepted, HandshakeError> {
    if req.method != Some("GET") {
        return Err(HandshakeError::MethodNotGet);
    }
    if req.version != Some(1) {
        return Err(HandshakeError::OldHttpVersion);
    }
    let mut host = false;
    let mut upgrade: Option<&[u8]> = None;
    let mut connection: Option<&[u8]> = None;
    let mut key: Option<&[u8]> = None;
    let mut version: Option<&[u8]> = None;
    let mut origin: Option<&[u8]> = None;
    for h in req.headers.iter() {
        let name = h.name;
        let mut seen = None;
        if name.eq_ignore_ascii_case("host") {
            host = true;
        } else if name.eq_ignore_ascii_case("upgrade") {
            seen = upgrade.replace(h.value).map(|_| "Upgrade");
        } else if name.eq_ignore_ascii_case("connection") {
            seen = connection.replace(h.value).map(|_| "Connection");
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            seen = key.replace(h.value).map(|_| "Sec-WebSocket-Key");
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            seen = version.replace(h.value).map(|_| "Sec-WebSocket-Version");
        } else if name.eq_ignore_ascii_case("origin") {
            origin = Some(h.value);
        }
        if let Some(dup) = seen {
            return Err(HandshakeError::DuplicateHeader(dup));
        }
    }
    if !host {
        return Err(HandshakeError::MissingHost);
    }
    let Some(upgrade) = upgrade else {
        return Err(HandshakeError::NoUpgrade);
    };
    if !has_token(upgrade, "websocket") {
        return Err(HandshakeError::UpgradeNotWebsocket);
    }
    if !connection.is_some_and(|c| has_token(c, "upgrade")) {
        return Err(HandshakeError::ConnectionNotUpgrade);
    }
    if version.map(trim) != Some(b"13".as_slice()) {
        return Err(HandshakeError::UnsupportedVersion);
    }
    let key = key.map(trim).ok_or(HandshakeError::BadKey)?;
    if !is_valid_key(key) {
        return Err(HandshakeError::BadKey);
    }
    if let Some(origin) = origin {
        if !policy.allowed_origins.is_empty()
            && !policy
                .allowed_origins
                .iter()
                .any(|o| o.as_bytes() == trim(origin))
        {
            return Err(HandshakeError::OriginNotAllowed);
        }
    }
    Ok(Accepted {
        accept: accept_key(key),
        protocol: choose_protocol(req, policy),
    })
}

/// A key is valid when it is exactly the padded base64 of 16 bytes (24 characters).
fn is_valid_key(key: &[u8]) -> bool {
    let mut raw = [0u8; 18];
    key.len() == 24
        && base64_simd::STANDARD
            .decode(key, base64_simd::Out::from_slice(&mut raw))
            .is_ok_and(|d| d.len() == 16)
}

/// The first protocol the client offers (in its order, over every header line) that the server
/// supports. Linear in the offered tokens times the (small) server list.
fn choose_protocol(req: &httparse::Request<'_, '_>, policy: &Policy) -> Option<usize> {
    if policy.subprotocols.is_empty() {
        return None;
    }
    req.headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-protocol"))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .find_map(|offered| {
            let offered = trim(offered);
            policy
                .subprotocols
                .iter()
                .position(|p| p.as_bytes() == offered)
        })
}

/// Write the `101 Switching Protocols` response.
pub fn write_switching(out: &mut Vec<u8>, accepted: &Accepted, policy: &Policy) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(&accepted.accept);
    out.extend_from_slice(b"\r\n");
    if let Some(p) = accepted.protocol.and_then(|i| policy.subprotocols.get(i)) {
        let _ = write!(out, "Sec-WebSocket-Protocol: {p}\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Why an upgrade was refused (the `reason` label of `gateway_handshake_failures_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// The request broke an RFC 6455 or HTTP rule (400, 405, 426, 414, 431).
    BadRequest,
    /// The `Origin` is not allowed (403).
    Origin,
    /// The request was not complete by the handshake deadline (408).
    Timeout,
    /// `--require-token` and no token (401).
    TokenMissing,
    /// A token that failed verification (401).
    TokenInvalid,
    /// An expired token (401).
    TokenExpired,
    /// Denied by the connect hook, or the hook failed (its status, or 503).
    Hook,
}

impl HandshakeFailure {
    /// Every reason, in index order.
    pub const ALL: [HandshakeFailure; 7] = [
        HandshakeFailure::BadRequest,
        HandshakeFailure::Origin,
        HandshakeFailure::Timeout,
        HandshakeFailure::TokenMissing,
        HandshakeFailure::TokenInvalid,
        HandshakeFailure::TokenExpired,
        HandshakeFailure::Hook,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            HandshakeFailure::BadRequest => "bad_request",
            HandshakeFailure::Origin => "origin",
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::TokenMissing => "token_missing",
            HandshakeFailure::TokenInvalid => "token_invalid",
            HandshakeFailure::TokenExpired => "token_expired",
            HandshakeFailure::Hook => "hook",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn check(raw: &str, policy: &Policy) -> Result<Accepted, HandshakeError> {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        let status = req.parse(raw.as_bytes()).expect("test request parses");
        assert!(status.is_complete());
        check_upgrade(&req, policy)
    }

    fn request(extra: &str) -> String {
        format!(
            "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n{extra}\r\n"
        )
    }

    fn status_of(raw: &str) -> u16 {
        check(raw, &Policy::default()).unwrap_err().status().0
    }

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(&accept_key(KEY.as_bytes()), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn valid_request_is_accepted_with_rfc_key() {
        let a = check(&request(""), &Policy::default()).unwrap();
        assert_eq!(&a.accept, b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(a.protocol, None);
        let mut out = Vec::new();
        write_switching(&mut out, &a, &Policy::default());
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(s.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(!s.contains("Sec-WebSocket-Protocol"));
    }

    #[test]
    fn every_refusal_has_its_status() {
        let base = request("");
        let post = base.replacen("GET", "POST", 1);
        assert_eq!(status_of(&post), 405);
        assert_eq!(status_of(&base.replacen("HTTP/1.1", "HTTP/1.0", 1)), 400);
        assert_eq!(status_of(&base.replacen("Host: x\r\n", "", 1)), 400);
        let no_upgrade = base.replacen("Upgrade: websocket\r\n", "", 1);
        let e = check(&no_upgrade, &Policy::default()).unwrap_err();
        assert_eq!(e, HandshakeError::NoUpgrade);
        assert_eq!(e.status().0, 426);
        assert!(e.extra_headers().contains(&("Sec-WebSocket-Version", "13")));
        assert_eq!(status_of(&base.replacen("websocket", "h2c", 1)), 400);
        assert_eq!(
            status_of(&base.replacen("Connection: Upgrade", "Connection: keep-alive", 1)),
            400
        );
        assert_eq!(
            status_of(&base.replacen("Connection: Upgrade\r\n", "", 1)),
            400
        );
        assert_eq!(
            status_of(&base.replacen("Version: 13", "Version: 8", 1)),
            426
        );
        assert_eq!(
            status_of(&base.replacen("Sec-WebSocket-Version: 13\r\n", "", 1)),
            426
        );
        assert_eq!(status_of(&base.replacen(KEY, "c2hvcnQ=", 1)), 400);
        assert_eq!(
            status_of(&base.replacen(KEY, "not base64 at all!!!!!!!", 1)),
            400
        );
        assert_eq!(
            status_of(&base.replacen(&format!("Sec-WebSocket-Key: {KEY}\r\n"), "", 1)),
            400
        );
        for dup in [
            "Upgrade: websocket\r\n",
            "Connection: Upgrade\r\n",
            "Sec-WebSocket-Version: 13\r\n",
        ] {
            assert_eq!(status_of(&request(dup)), 400, "duplicate {dup:?}");
        }
        assert_eq!(
            status_of(&request(&format!("Sec-WebSocket-Key: {KEY}\r\n"))),
            400
        );
    }

    #[test]
    fn connection_and_upgrade_are_token_lists() {
        let raw = request("").replacen("Connection: Upgrade", "Connection: keep-alive, UPGRADE", 1);
        assert!(check(&raw, &Policy::default()).is_ok());
    }

    #[test]
    fn origin_is_checked_only_when_a_list_is_configured() {
        let raw = request("Origin: https://evil.example\r\n");
        assert!(check(&raw, &Policy::default()).is_ok());
        let policy = Policy {
            allowed_origins: vec!["https://good.example".into()],
            ..Policy::default()
        };
        assert_eq!(check(&raw, &policy).unwrap_err().status().0, 403);
        let ok = request("Origin: https://good.example\r\n");
        assert!(check(&ok, &policy).is_ok());
    }

    #[test]
    fn first_offered_supported_protocol_wins() {
        let policy = Policy {
            subprotocols: vec!["chat".into(), "json".into()],
            ..Policy::default()
        };
        let raw = request("Sec-WebSocket-Protocol: a, json\r\nSec-WebSocket-Protocol: chat\r\n");
        assert_eq!(check(&raw, &policy).unwrap().protocol, Some(1));
        let none = request("Sec-WebSocket-Protocol: a, b\r\n");
        assert_eq!(check(&none, &policy).unwrap().protocol, None);
    }

    #[test]
    fn thousands_of_offered_protocols_are_parsed() {
        let policy = Policy {
            subprotocols: vec!["last".into()],
            ..Policy::default()
        };
        let mut offered: Vec<String> = (0..5000).map(|i| format!("p{i}")).collect();
        offered.push("last".into());
        let raw = request(&format!(
            "Sec-WebSocket-Protocol: {}\r\n",
            offered.join(", ")
        ));
        assert_eq!(check(&raw, &policy).unwrap().protocol, Some(0));
    }
}
