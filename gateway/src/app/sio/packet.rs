//! Socket.IO version 5 packets, sans-IO: what an Engine.IO `message` carries. The text form is
//! `<type>[<attachments>-][<namespace>,][<ack id>][<JSON data>]`: a type digit, the count of
//! binary attachments (binary events and acks only, each attachment then follows as its own
//! Engine.IO message), the namespace when it is not `/`, the ack id, and the data.
//!
//! [`parse`] checks the shape each type needs (CONNECT: an optional `auth` object; EVENT: an
//! array starting with the event name; ACK: an array and an id; DISCONNECT: nothing) and the
//! [`Limits`], borrowing everything from the input. The encoders append to a caller's buffer.

use std::fmt;
use std::io::Write as _;

use serde_json::value::RawValue;

use crate::json::write_str;

/// Attachments one binary packet may announce by default.
pub const DEFAULT_MAX_ATTACHMENTS: usize = 10;
/// Longest namespace by default, in bytes (the leading `/` included).
pub const DEFAULT_MAX_NAMESPACE_BYTES: usize = 64;
/// Longest event name by default, in bytes.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 128;
/// Largest ack id: the largest integer a JavaScript number holds exactly.
pub const MAX_ACK_ID: u64 = (1 << 53) - 1;

/// What a Socket.IO packet is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketType {
    /// `0`: join a namespace (client), or the join accepted with the socket id (server).
    Connect,
    /// `1`: leave a namespace.
    Disconnect,
    /// `2`: an event: `["name", args..]`.
    Event,
    /// `3`: the answer to an event sent with an ack id.
    Ack,
    /// `4`: the join refused (server to client).
    ConnectError,
    /// `5`: an event whose arguments hold binary attachments.
    BinaryEvent,
    /// `6`: an ack whose arguments hold binary attachments.
    BinaryAck,
}

impl PacketType {
    fn from_digit(b: u8) -> Option<PacketType> {
        Some(match b {
            b'0' => Self::Connect,
            b'1' => Self::Disconnect,
            b'2' => Self::Event,
            b'3' => Self::Ack,
            b'4' => Self::ConnectError,
            b'5' => Self::BinaryEvent,
            b'6' => Self::BinaryAck,
            _ => return None,
        })
    }

    /// The type written as its digit.
    pub fn digit(self) -> u8 {
        b'0' + self as u8
    }

    /// Binary events and acks are followed by their attachments.
    pub fn is_binary(self) -> bool {
        matches!(self, Self::BinaryEvent | Self::BinaryAck)
    }
}

/// How large a client's packets may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Attachments per binary packet.
    pub max_attachments: usize,
    /// Bytes of a namespace name.
    pub max_namespace_bytes: usize,
    /// Bytes of an event name.
    pub max_event_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_attachments: DEFAULT_MAX_ATTACHMENTS,
            max_namespace_bytes: DEFAULT_MAX_NAMESPACE_BYTES,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
        }
    }
}

/// What a packet's data holds, checked for its type.
#[derive(Debug)]
pub enum Payload<'a> {
    /// No data (DISCONNECT, a CONNECT without `auth`).
    None,
    /// CONNECT's `auth` object, as JSON text.
    Auth(&'a RawValue),
    /// An event's name and its arguments (each as JSON text).
    Event {
        /// The event name.
        name: String,
        /// The arguments after the name.
        args: Vec<&'a RawValue>,
    },
    /// An ack's arguments.
    Ack(Vec<&'a RawValue>),
}

/// One Socket.IO packet, borrowed from its text.
#[derive(Debug)]
pub struct Packet<'a> {
    /// Its type.
    pub kind: PacketType,
    /// Binary attachments that follow it (0 unless binary).
    pub attachments: usize,
    /// The namespace (`/` when not written).
    pub nsp: &'a str,
    /// The ack id: the sender wants an ACK with this id (events), or answers it (acks).
    pub id: Option<u64>,
    /// The data, checked for the type.
    pub payload: Payload<'a>,
    /// The data exactly as sent (empty when none): binary packets are passed on with it.
    pub data: &'a str,
}

/// Why a packet was refused: each closes the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketError {
    /// No type digit.
    Empty,
    /// The first byte is not a type digit `0` to `6`.
    UnknownType(u8),
    /// A client sent a packet only the server sends.
    ServerOnly(PacketType),
    /// The attachment count is missing its `-` or is not a number.
    BadAttachmentCount,
    /// More attachments than [`Limits::max_attachments`].
    TooManyAttachments {
        /// Announced.
        count: usize,
        /// Allowed.
        limit: usize,
    },
    /// A namespace longer than [`Limits::max_namespace_bytes`].
    NamespaceTooLong,
    /// A namespace holding a byte outside `/[A-Za-z0-9_.@/-]*`.
    BadNamespace,
    /// An ack id past [`MAX_ACK_ID`].
    AckIdTooLarge,
    /// An ACK without an id.
    AckWithoutId,
    /// The data is not JSON.
    BadJson,
    /// The data is JSON of the wrong shape for the type (the rule is named).
    BadData(&'static str),
    /// An event name longer than [`Limits::max_event_bytes`].
    EventNameTooLong,
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "empty Socket.IO packet"),
            Self::UnknownType(b) => write!(f, "unknown Socket.IO packet type byte {b:#04x}"),
            Self::ServerOnly(t) => write!(f, "a client may not send the {t:?} packet"),
            Self::BadAttachmentCount => write!(f, "bad attachment count"),
            Self::TooManyAttachments { count, limit } => {
                write!(f, "{count} attachments announced, at most {limit} allowed")
            }
            Self::NamespaceTooLong => write!(f, "namespace name too long"),
            Self::BadNamespace => {
                write!(f, "namespace may only hold / A-Z a-z 0-9 _ . @ -")
            }
            Self::AckIdTooLarge => write!(f, "ack id over 2^53-1"),
            Self::AckWithoutId => write!(f, "ACK without an id"),
            Self::BadJson => write!(f, "packet data is not JSON"),
            Self::BadData(rule) => write!(f, "packet data: {rule}"),
            Self::EventNameTooLong => write!(f, "event name too long"),
        }
    }
}

/// Parse one client packet from the text of an Engine.IO message.
pub fn parse<'a>(text: &'a str, limits: &Limits) -> Result<Packet<'a>, PacketError> {
    let bytes = text.as_bytes();
    let &first = bytes.first().ok_or(PacketError::Empty)?;
    let kind = PacketType::from_digit(first).ok_or(PacketError::UnknownType(first))?;
    if kind == PacketType::ConnectError {
        return Err(PacketError::ServerOnly(kind));
    }
    let mut at = 1;
    let mut attachments = 0;
    if kind.is_binary() {
        let digits = count_digits(&bytes[at..]);
        if digits == 0 || digits > 3 || bytes.get(at + digits) != Some(&b'-') {
            return Err(PacketError::BadAttachmentCount);
        }
        attachments = text[at..at + digits]
            .parse()
            .map_err(|_| PacketError::BadAttachmentCount)?;
        if attachments > limits.max_attachments {
            return Err(PacketError::TooManyAttachments {
                count: attachments,
                limit: limits.max_attachments,
            });
        }
        at += digits + 1;
    }
    let mut nsp = "/";
    if bytes.get(at) == Some(&b'/') {
        let end = bytes[at..]
            .iter()
            .position(|&b| b == b',')
            .map_or(bytes.len(), |p| at + p);
        nsp = &text[at..end];
        check_namespace(nsp, limits)?;
        at = (end + 1).min(bytes.len());
    }
    let digits = count_digits(&bytes[at..]);
    let id = if digits > 0 {
        let id: u64 = text[at..at + digits]
            .parse()
            .map_err(|_| PacketError::AckIdTooLarge)?;
        if id > MAX_ACK_ID {
            return Err(PacketError::AckIdTooLarge);
        }
        at += digits;
        Some(id)
    } else {
        None
    };
    let data = &text[at..];
    let payload = payload(kind, data, limits)?;
    if matches!(kind, PacketType::Ack | PacketType::BinaryAck) && id.is_none() {
        return Err(PacketError::AckWithoutId);
    }
    Ok(Packet {
        kind,
        attachments,
        nsp,
        id,
        payload,
        data,
    })
}

fn count_digits(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// Check a namespace name: `/` then `[A-Za-z0-9_.@/-]`, within the limit.
pub fn check_namespace(nsp: &str, limits: &Limits) -> Result<(), PacketError> {
    if nsp.len() > limits.max_namespace_bytes {
        return Err(PacketError::NamespaceTooLong);
    }
    let ok = nsp.starts_with('/')
        && nsp
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'/' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(PacketError::BadNamespace)
    }
}

fn payload<'a>(
    kind: PacketType,
    data: &'a str,
    limits: &Limits,
) -> Result<Payload<'a>, PacketError> {
    let trimmed = data.trim_ascii();
    match kind {
        PacketType::Disconnect if trimmed.is_empty() => Ok(Payload::None),
        PacketType::Disconnect => Err(PacketError::BadData("DISCONNECT carries no data")),
        PacketType::Connect if trimmed.is_empty() => Ok(Payload::None),
        PacketType::Connect => {
            let auth: &RawValue = serde_json::from_str(data).map_err(|_| PacketError::BadJson)?;
            if !auth.get().trim_ascii_start().starts_with('{') {
                return Err(PacketError::BadData("CONNECT data must be an object"));
            }
            Ok(Payload::Auth(auth))
        }
        PacketType::Event | PacketType::BinaryEvent => {
            let mut items = array(data)?;
            if items.is_empty() {
                return Err(PacketError::BadData("an event needs its name"));
            }
            let name: String = serde_json::from_str(items[0].get())
                .map_err(|_| PacketError::BadData("the event name must be a string"))?;
            if name.len() > limits.max_event_bytes {
                return Err(PacketError::EventNameTooLong);
            }
            items.remove(0);
            Ok(Payload::Event { name, args: items })
        }
        PacketType::Ack | PacketType::BinaryAck => Ok(Payload::Ack(array(data)?)),
        PacketType::ConnectError => Err(PacketError::ServerOnly(kind)),
    }
}

fn array(data: &str) -> Result<Vec<&RawValue>, PacketError> {
    if !data.trim_ascii_start().starts_with('[') {
        return Err(PacketError::BadData("data must be an array"));
    }
    serde_json::from_str(data).map_err(|_| PacketError::BadJson)
}

/// Append a packet's head: type, attachment count (binary types), namespace (when not `/`),
/// ack id. The data follows.
pub fn encode_head(
    out: &mut Vec<u8>,
    kind: PacketType,
    attachments: usize,
    nsp: &str,
    id: Option<u64>,
) {
    out.push(kind.digit());
    if kind.is_binary() {
        let _ = write!(out, "{attachments}-");
    }
    if nsp != "/" {
        out.extend_from_slice(nsp.as_bytes());
        out.push(b',');
    }
    if let Some(id) = id {
        let _ = write!(out, "{id}");
    }
}

/// CONNECT accepted: `0[nsp,]{"sid":"<socket id>"}`.
pub fn encode_connected(out: &mut Vec<u8>, nsp: &str, socket_id: &str) {
    encode_head(out, PacketType::Connect, 0, nsp, None);
    out.extend_from_slice(b"{\"sid\":");
    write_str(out, socket_id);
    out.push(b'}');
}

/// CONNECT refused: `4[nsp,]{"message":".."}`.
pub fn encode_connect_error(out: &mut Vec<u8>, nsp: &str, message: &str) {
    encode_head(out, PacketType::ConnectError, 0, nsp, None);
    out.extend_from_slice(b"{\"message\":");
    write_str(out, message);
    out.push(b'}');
}

/// An event: `2[nsp,][id]["name",args..]`; each argument is JSON text.
pub fn encode_event<'b>(
    out: &mut Vec<u8>,
    nsp: &str,
    id: Option<u64>,
    name: &str,
    args: impl IntoIterator<Item = &'b [u8]>,
) {
    encode_head(out, PacketType::Event, 0, nsp, id);
    out.push(b'[');
    write_str(out, name);
    for a in args {
        out.push(b',');
        out.extend_from_slice(a);
    }
    out.push(b']');
}

/// An ack: `3[nsp,]id[args..]`; each argument is JSON text.
pub fn encode_ack<'b>(
    out: &mut Vec<u8>,
    nsp: &str,
    id: u64,
    args: impl IntoIterator<Item = &'b [u8]>,
) {
    encode_head(out, PacketType::Ack, 0, nsp, Some(id));
    out.push(b'[');
    for (n, a) in args.into_iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(a);
    }
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(text: &str) -> Packet<'_> {
        parse(text, &Limits::default()).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn err(text: &str) -> PacketError {
        parse(text, &Limits::default()).expect_err(text)
    }

    #[test]
    fn connect_with_and_without_namespace_and_auth() {
        let p = ok("0");
        assert_eq!((p.kind, p.nsp, p.id), (PacketType::Connect, "/", None));
        assert!(matches!(p.payload, Payload::None));
        let p = ok("0/admin,");
        assert_eq!(p.nsp, "/admin");
        let p = ok("0/admin");
        assert_eq!(p.nsp, "/admin", "a namespace at the end needs no comma");
        let p = ok("0/admin,{\"token\":\"123\"}");
        match p.payload {
            Payload::Auth(a) => assert_eq!(a.get(), "{\"token\":\"123\"}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            err("0[1]"),
            PacketError::BadData("CONNECT data must be an object")
        );
    }

    #[test]
    fn events_carry_name_args_and_ack_id() {
        let p = ok("2[\"chat message\",\"hi\",{\"a\":1}]");
        match &p.payload {
            Payload::Event { name, args } => {
                assert_eq!(name, "chat message");
                let args: Vec<&str> = args.iter().map(|a| a.get()).collect();
                assert_eq!(args, ["\"hi\"", "{\"a\":1}"]);
            }
            other => panic!("{other:?}"),
        }
        let p = ok("2/chat,12[\"e\"]");
        assert_eq!((p.nsp, p.id), ("/chat", Some(12)));
        let p = ok("212[\"e\"]");
        assert_eq!(p.id, Some(12));
        let p = ok("3/chat,7[\"ok\",2]");
        assert_eq!((p.kind, p.id), (PacketType::Ack, Some(7)));
        assert!(matches!(p.payload, Payload::Ack(ref a) if a.len() == 2));
        let p = ok("1/chat,");
        assert_eq!((p.kind, p.nsp), (PacketType::Disconnect, "/chat"));
    }

    #[test]
    fn binary_packets_count_their_attachments() {
        let p = ok("51-[\"up\",{\"_placeholder\":true,\"num\":0}]");
        assert_eq!((p.kind, p.attachments), (PacketType::BinaryEvent, 1));
        assert_eq!(p.data, "[\"up\",{\"_placeholder\":true,\"num\":0}]");
        let p = ok("62-/x,9[{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]");
        assert_eq!(
            (p.kind, p.attachments, p.nsp, p.id),
            (PacketType::BinaryAck, 2, "/x", Some(9))
        );
        assert_eq!(
            err("511-[\"e\"]"),
            PacketError::TooManyAttachments {
                count: 11,
                limit: 10
            }
        );
        assert_eq!(err("5[\"e\"]"), PacketError::BadAttachmentCount);
        assert_eq!(err("51[\"e\"]"), PacketError::BadAttachmentCount);
        assert_eq!(err("59999-[\"e\"]"), PacketError::BadAttachmentCount);
    }

    #[test]
    fn malformed_packets_name_the_broken_rule() {
        assert_eq!(err(""), PacketError::Empty);
        assert_eq!(err("9"), PacketError::UnknownType(b'9'));
        assert_eq!(
            err("4{\"message\":\"x\"}"),
            PacketError::ServerOnly(PacketType::ConnectError)
        );
        assert_eq!(err("2"), PacketError::BadData("data must be an array"));
        assert_eq!(err("2[]"), PacketError::BadData("an event needs its name"));
        assert_eq!(
            err("2[1,2]"),
            PacketError::BadData("the event name must be a string")
        );
        assert_eq!(err("2[\"a\""), PacketError::BadJson);
        assert_eq!(err("3[]"), PacketError::AckWithoutId);
        assert_eq!(err("29007199254740992[\"e\"]"), PacketError::AckIdTooLarge);
        assert_eq!(
            err("299999999999999999999[\"e\"]"),
            PacketError::AckIdTooLarge
        );
        assert_eq!(
            err("1x"),
            PacketError::BadData("DISCONNECT carries no data")
        );
        assert_eq!(err("0/a b,"), PacketError::BadNamespace);
        let long = format!("0/{},", "n".repeat(64));
        assert_eq!(err(&long), PacketError::NamespaceTooLong);
        let name = format!("2[\"{}\"]", "e".repeat(129));
        assert_eq!(err(&name), PacketError::EventNameTooLong);
    }

    #[test]
    fn encoders_write_the_wire_form() {
        let mut out = Vec::new();
        encode_connected(&mut out, "/", "s1");
        assert_eq!(out, b"0{\"sid\":\"s1\"}");
        out.clear();
        encode_connected(&mut out, "/admin", "s1");
        assert_eq!(out, b"0/admin,{\"sid\":\"s1\"}");
        out.clear();
        encode_connect_error(&mut out, "/x", "Invalid namespace");
        assert_eq!(out, b"4/x,{\"message\":\"Invalid namespace\"}");
        out.clear();
        encode_event(&mut out, "/", None, "chat message", [&b"\"hi\""[..]]);
        assert_eq!(out, b"2[\"chat message\",\"hi\"]");
        out.clear();
        encode_ack(&mut out, "/a", 5, [&b"1"[..], b"true"]);
        assert_eq!(out, b"3/a,5[1,true]");
        out.clear();
        encode_head(&mut out, PacketType::BinaryEvent, 2, "/", None);
        assert_eq!(out, b"52-");
    }

    proptest! {
        #[test]
        fn encoded_events_parse_back(
            nsp in "(/|/[a-z0-9_-]{1,20})",
            id in proptest::option::of(0u64..=MAX_ACK_ID),
            name in "[ -~]{0,40}",
            args in proptest::collection::vec(any::<i64>(), 0..5),
        ) {
            let json: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            let mut out = Vec::new();
            encode_event(&mut out, &nsp, id, &name, json.iter().map(|s| s.as_bytes()));
            let text = std::str::from_utf8(&out).unwrap();
            let p = parse(text, &Limits::default()).unwrap();
            prop_assert_eq!(p.nsp, nsp.as_str());
            prop_assert_eq!(p.id, id);
            match p.payload {
                Payload::Event { name: n, args: a } => {
                    prop_assert_eq!(n, name);
                    let got: Vec<&str> = a.iter().map(|v| v.get()).collect();
                    prop_assert_eq!(got, json.iter().map(String::as_str).collect::<Vec<_>>());
                }
                other => prop_assert!(false, "{:?}", other),
            }
        }

        #[test]
        fn any_text_parses_or_fails_without_panicking(text in "\\PC{0,64}") {
            let _ = parse(&text, &Limits::default());
        }
    }
}
