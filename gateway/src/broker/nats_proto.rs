//! The NATS client protocol (core NATS, no JetStream), sans-IO: client operations are encoded
//! into a caller's buffer, server operations are parsed from a byte slice that may end in the
//! middle of one ("need more", never an error). No socket, no clock; a parsed operation borrows
//! the input.
//!
//! Server operations: `INFO {json}`, `MSG subject sid [reply] size` + payload, `HMSG subject
//! sid [reply] header-size total-size` + headers and payload, `+OK`, `-ERR 'text'`, `PING`,
//! `PONG`; names are case-insensitive, arguments are separated by spaces or tabs, lines end with
//! CRLF. Lines and payloads are bounded, so hostile input is an error, not a huge allocation.
//!
//! Subjects: the node's broker channel names ([`super::node`]) may hold bytes a NATS subject
//! gives a meaning to (`.` separates tokens, `*` and `>` are wildcards); [`subject`] escapes
//! them so every broker channel is one literal token and the mapping is one-to-one.

/// Longest control line accepted. `INFO` is the long one (a cluster lists its URLs in it).
pub const MAX_LINE: usize = 64 << 10;
/// Largest payload accepted (NATS's own ceiling for `max_payload`).
pub const MAX_PAYLOAD: usize = 64 << 20;

/// One server operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op<'a> {
    /// `INFO {...}`: the server's settings (JSON).
    Info(&'a [u8]),
    /// A message on a subscription.
    Msg {
        /// The subject it was published to.
        subject: &'a [u8],
        /// The subscription it matched.
        sid: u64,
        /// The reply subject, if the publisher gave one.
        reply: Option<&'a [u8]>,
        /// Header block (`HMSG` only; empty for `MSG`).
        headers: &'a [u8],
        /// The payload.
        payload: &'a [u8],
    },
    /// `+OK` (verbose mode only).
    Ok,
    /// `-ERR 'text'`: the text without its quotes.
    Err(&'a [u8]),
    /// `PING`: answer `PONG`.
    Ping,
    /// `PONG`: the answer to our `PING`.
    Pong,
}

/// What the bytes so far hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A complete operation, and how many bytes it took.
    Op(Op<'a>, usize),
    /// The operation is not complete yet.
    Need,
}

/// Bytes that are not the NATS protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatsError {
    /// The line starts with no known operation.
    UnknownOp,
    /// A line does not end with CRLF, or a payload is not followed by one.
    MissingCrlf,
    /// An operation has the wrong number of arguments.
    BadArgs,
    /// A sid or size is not a decimal number.
    BadNumber,
    /// A line is longer than [`MAX_LINE`] or a payload than [`MAX_PAYLOAD`].
    TooLong,
    /// An `HMSG` header size is larger than its total size.
    BadHeaderSize,
}

impl std::fmt::Display for NatsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NatsError::UnknownOp => "unknown NATS operation",
            NatsError::MissingCrlf => "NATS line or payload without CRLF",
            NatsError::BadArgs => "wrong number of NATS arguments",
            NatsError::BadNumber => "bad number in a NATS operation",
            NatsError::TooLong => "NATS line or payload over the size limits",
            NatsError::BadHeaderSize => "NATS header size larger than the total size",
        })
    }
}

impl std::error::Error for NatsError {}

/// What the client needs from `INFO`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Info {
    /// Largest payload the server accepts in a `PUB` (`None`: not announced).
    pub max_payload: Option<u64>,
    /// The server wants credentials.
    pub auth_required: bool,
    /// The server wants TLS.
    pub tls_required: bool,
    /// The server takes TLS without requiring it (`allow_non_tls`).
    pub tls_available: bool,
    /// The server's id, for logs.
    pub server_id: String,
}

/// Read the fields of an `INFO` the client uses; `None` when it is not a JSON object.
pub fn parse_info(json: &[u8]) -> Option<Info> {
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    let o = v.as_object()?;
    let flag = |k: &str| o.get(k).and_then(serde_json::Value::as_bool) == Some(true);
    Some(Info {
        max_payload: o.get("max_payload").and_then(serde_json::Value::as_u64),
        auth_required: flag("auth_required"),
        tls_required: flag("tls_required"),
        tls_available: flag("tls_available"),
        server_id: o
            .get("server_id")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    })
}

/// How a node proves itself to the server in `CONNECT` (from the `nats://` URL's user part).
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Auth {
    /// No credentials: a server without authorization.
    #[default]
    None,
    /// `nats://TOKEN@host`: the server's `authorization { token }`.
    Token(String),
    /// `nats://USER:PASSWORD@host`: a user of the server's `authorization` block.
    User { user: String, pass: String },
}

impl std::fmt::Debug for Auth {
    /// Never the secret: configurations and logs print this.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Token(_) => f.write_str("Token(***)"),
            Auth::User { user, .. } => write!(f, "User({user:?}, ***)"),
        }
    }
}

/// Append `CONNECT` with `auth`: no echo (a node serves its own subscribers and must not get
/// its own publishes back), no `+OK` per operation, no headers.
pub fn encode_connect(out: &mut Vec<u8>, name: &str, auth: &Auth) {
    let mut opts = serde_json::json!({
        "verbose": false,
        "pedantic": false,
        "echo": false,
        "headers": false,
        "lang": "rust",
        "version": env!("CARGO_PKG_VERSION"),
        "protocol": 1,
        "name": name,
    });
    match auth {
        Auth::None => {}
        Auth::Token(token) => opts["auth_token"] = token.as_str().into(),
        Auth::User { user, pass } => {
            opts["user"] = user.as_str().into();
            opts["pass"] = pass.as_str().into();
        }
    }
    out.extend_from_slice(b"CONNECT ");
    out.extend_from_slice(opts.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Append `PUB subject size` and the payload.
pub fn encode_pub(out: &mut Vec<u8>, subject: &str, payload: &[u8]) {
    out.extend_from_slice(b"PUB ");
    out.extend_from_slice(subject.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

/// Append `SUB subject sid`.
pub fn encode_sub(out: &mut Vec<u8>, subject: &str, sid: u64) {
    out.extend_from_slice(b"SUB ");
    out.extend_from_slice(subject.as_bytes());
    out.push(b' ');
    out.extend_from_slice(sid.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Append `UNSUB sid`.
pub fn encode_unsub(out: &mut Vec<u8>, sid: u64) {
    out.extend_from_slice(b"UNSUB ");
    out.extend_from_slice(sid.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Append `PING`.
pub fn encode_ping(out: &mut Vec<u8>) {
    out.extend_from_slice(b"PING\r\n");
}

/// Append `PONG`.
pub fn encode_pong(out: &mut Vec<u8>) {
    out.extend_from_slice(b"PONG\r\n");
}

/// The NATS subject of broker channel `topic`: bytes outside `[A-Za-z0-9_:@/-]` become `%XX`
/// (upper-case hex), so `.`, `*`, `>` and whitespace never reach the server and `%` itself is
/// escaped (one subject per topic, one topic per subject).
pub fn subject(topic: &str) -> String {
    let mut s = String::with_capacity(topic.len());
    for b in topic.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'@' | b'/' | b'-') {
            s.push(char::from(b));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            s.push('%');
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    s
}

/// Parse one operation from the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Parsed<'_>, NatsError> {
    let Some(nl) = memchr::memchr(b'\n', buf) else {
        return if buf.len() > MAX_LINE {
            Err(NatsError::TooLong)
        } else {
            Ok(Parsed::Need)
        };
    };
    if nl > MAX_LINE {
        return Err(NatsError::TooLong);
    }
    if nl == 0 || buf[nl - 1] != b'\r' {
        return Err(NatsError::MissingCrlf);
    }
    let line = &buf[..nl - 1];
    let next = nl + 1;
    let (name, rest) = match line.iter().position(|b| matches!(b, b' ' | b'\t')) {
        Some(i) => (&line[..i], trim(&line[i..])),
        None => (line, &line[line.len()..]),
    };
    let is = |op: &[u8]| name.eq_ignore_ascii_case(op);
    if is(b"MSG") || is(b"HMSG") {
        return parse_msg(buf, rest, next, is(b"HMSG"));
    }
    let op = if is(b"PING") && rest.is_empty() {
        Op::Ping
    } else if is(b"PONG") && rest.is_empty() {
        Op::Pong
    } else if is(b"+OK") && rest.is_empty() {
        Op::Ok
    } else if is(b"-ERR") {
        let text = rest.strip_prefix(b"'").unwrap_or(rest);
        Op::Err(text.strip_suffix(b"'").unwrap_or(text))
    } else if is(b"INFO") && !rest.is_empty() {
        Op::Info(rest)
    } else if is(b"PING") || is(b"PONG") || is(b"+OK") || is(b"INFO") {
        return Err(NatsError::BadArgs);
    } else {
        return Err(NatsError::UnknownOp);
    };
    Ok(Parsed::Op(op, next))
}

/// `MSG`/`HMSG` arguments in `args`; the payload starts at `at` in `buf`.
fn parse_msg<'a>(
    buf: &'a [u8],
    args: &'a [u8],
    at: usize,
    with_headers: bool,
) -> Result<Parsed<'a>, NatsError> {
    let mut it = args
        .split(|b| matches!(b, b' ' | b'\t'))
        .filter(|a| !a.is_empty());
    let mut words: [&[u8]; 5] = [&[]; 5];
    let mut n = 0;
    for w in it.by_ref() {
        if n == words.len() {
            return Err(NatsError::BadArgs);
        }
        words[n] = w;
        n += 1;
    }
    let sizes = usize::from(with_headers) + 1;
    if n < 2 + sizes || n > 3 + sizes {
        return Err(NatsError::BadArgs);
    }
    let subject = words[0];
    let sid = number(words[1])?;
    let reply = (n == 3 + sizes).then_some(words[2]);
    let total = size(words[n - 1])?;
    let header_len = if with_headers {
        let h = size(words[n - 2])?;
        if h > total {
            return Err(NatsError::BadHeaderSize);
        }
        h
    } else {
        0
    };
    let end = at + total;
    if buf.len() < end + 2 {
        return Ok(Parsed::Need);
    }
    if &buf[end..end + 2] != b"\r\n" {
        return Err(NatsError::MissingCrlf);
    }
    let op = Op::Msg {
        subject,
        sid,
        reply,
        headers: &buf[at..at + header_len],
        payload: &buf[at + header_len..end],
    };
    Ok(Parsed::Op(op, end + 2))
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

fn number(text: &[u8]) -> Result<u64, NatsError> {
    if text.is_empty() || text.len() > 19 || !text.iter().all(u8::is_ascii_digit) {
        return Err(NatsError::BadNumber);
    }
    Ok(text.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

fn size(text: &[u8]) -> Result<usize, NatsError> {
    let n = number(text)?;
    match usize::try_from(n) {
        Ok(n) if n <= MAX_PAYLOAD => Ok(n),
        _ => Err(NatsError::TooLong),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(bytes: &[u8]) -> Op<'_> {
        match parse(bytes) {
            Ok(Parsed::Op(op, n)) => {
                assert_eq!(n, bytes.len(), "{:?}", String::from_utf8_lossy(bytes));
                op
            }
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
        }
    }

    #[test]
    fn client_operations_are_encoded_as_the_protocol_says() {
        let mut out = Vec::new();
        encode_pub(&mut out, "gw:c:a", b"x\r\ny");
        encode_sub(&mut out, "gw:n:1", 7);
        encode_unsub(&mut out, 7);
        encode_ping(&mut out);
        encode_pong(&mut out);
        assert_eq!(
            out,
            b"PUB gw:c:a 4\r\nx\r\ny\r\nSUB gw:n:1 7\r\nUNSUB 7\r\nPING\r\nPONG\r\n".to_vec()
        );
        let connect = |auth: &Auth| {
            let mut c = Vec::new();
            encode_connect(&mut c, "gateway-node-3", auth);
            let text = std::str::from_utf8(&c).unwrap();
            assert!(text.ends_with("}\r\n"));
            serde_json::from_str::<serde_json::Value>(
                text.strip_prefix("CONNECT ").unwrap().trim_end(),
            )
            .unwrap()
        };
        let json = connect(&Auth::None);
        assert_eq!(json["echo"], false, "own publishes are served locally");
        assert_eq!(json["verbose"], false);
        assert_eq!(json["name"], "gateway-node-3");
        for field in ["user", "pass", "auth_token"] {
            assert!(json.get(field).is_none(), "{field} without credentials");
        }
        let json = connect(&Auth::Token("t\"ok".into()));
        assert_eq!(json["auth_token"], "t\"ok");
        assert!(json.get("user").is_none());
        let json = connect(&Auth::User {
            user: "gw".into(),
            pass: "p@ss:w\\rd".into(),
        });
        assert_eq!(
            (&json["user"], &json["pass"]),
            (&"gw".into(), &"p@ss:w\\rd".into())
        );
        assert!(json.get("auth_token").is_none());
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let user = Auth::User {
            user: "gw".into(),
            pass: "hunter2".into(),
        };
        assert_eq!(format!("{user:?}"), "User(\"gw\", ***)");
        assert_eq!(format!("{:?}", Auth::Token("hunter2".into())), "Token(***)");
    }

    #[test]
    fn every_server_operation_parses_and_reports_its_length() {
        assert_eq!(op(b"PING\r\n"), Op::Ping);
        assert_eq!(op(b"pong\r\n"), Op::Pong);
        assert_eq!(op(b"+OK\r\n"), Op::Ok);
        assert_eq!(
            op(b"-ERR 'Unknown Protocol Operation'\r\n"),
            Op::Err(b"Unknown Protocol Operation")
        );
        assert_eq!(op(b"INFO {\"a\":1} \r\n"), Op::Info(b"{\"a\":1}"));
        assert_eq!(
            op(b"MSG gw:c:a 12 3\r\nabc\r\n"),
            Op::Msg {
                subject: b"gw:c:a",
                sid: 12,
                reply: None,
                headers: b"",
                payload: b"abc"
            }
        );
        assert_eq!(
            op(b"MSG\tgw:c:a  9\t_INBOX.x 0\r\n\r\n"),
            Op::Msg {
                subject: b"gw:c:a",
                sid: 9,
                reply: Some(b"_INBOX.x"),
                headers: b"",
                payload: b""
            }
        );
        let h = b"NATS/1.0\r\nk: v\r\n\r\n";
        let mut hmsg = format!("HMSG s 1 r {} {}\r\n", h.len(), h.len() + 2).into_bytes();
        hmsg.extend_from_slice(h);
        hmsg.extend_from_slice(b"hi\r\n");
        assert_eq!(
            op(&hmsg),
            Op::Msg {
                subject: b"s",
                sid: 1,
                reply: Some(b"r"),
                headers: h,
                payload: b"hi"
            }
        );
        // Operations follow each other: each reports where the next starts.
        let two = b"PING\r\nMSG a 1 1\r\nz\r\n";
        assert_eq!(parse(two), Ok(Parsed::Op(Op::Ping, 6)));
    }

    #[test]
    fn every_strict_prefix_needs_more() {
        for whole in [
            &b"MSG gw:c:room 3 _R 5\r\nhe\r\nl\r\n"[..],
            b"HMSG s 1 12 14\r\nNATS/1.0\r\n\r\nhi\r\n",
            b"INFO {}\r\n",
            b"-ERR 'x'\r\n",
        ] {
            for cut in 0..whole.len() {
                assert_eq!(parse(&whole[..cut]), Ok(Parsed::Need), "cut at {cut}");
            }
            assert!(matches!(parse(whole), Ok(Parsed::Op(_, n)) if n == whole.len()));
        }
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let cases: Vec<(&[u8], NatsError)> = vec![
            (b"HELLO\r\n", NatsError::UnknownOp),
            (b"\r\n", NatsError::UnknownOp),
            (b"PING\n", NatsError::MissingCrlf),
            (b"\n", NatsError::MissingCrlf),
            (b"PING x\r\n", NatsError::BadArgs),
            (b"INFO\r\n", NatsError::BadArgs),
            (b"MSG a 1\r\n", NatsError::BadArgs),
            (b"MSG a 1 r x 2\r\n", NatsError::BadArgs),
            (b"HMSG a 1 2\r\n", NatsError::BadArgs),
            (b"MSG a x 2\r\n", NatsError::BadNumber),
            (b"MSG a 1 -2\r\n", NatsError::BadNumber),
            (b"MSG a 1 99999999999999999999\r\n", NatsError::BadNumber),
            (b"MSG a 1 999999999\r\n", NatsError::TooLong),
            (b"MSG a 1 1\r\nxy\r\n", NatsError::MissingCrlf),
            (b"HMSG a 1 5 4\r\n", NatsError::BadHeaderSize),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                parse(bytes),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        let long = vec![b'I'; MAX_LINE + 1];
        assert_eq!(parse(&long), Err(NatsError::TooLong), "no newline in sight");
    }

    #[test]
    fn info_gives_the_payload_limit() {
        let info = parse_info(
            br#"{"server_id":"N1","max_payload":1048576,"auth_required":true,"proto":1}"#,
        )
        .unwrap();
        assert_eq!(info.max_payload, Some(1 << 20));
        assert!(info.auth_required && !info.tls_required);
        assert_eq!(info.server_id, "N1");
        assert_eq!(parse_info(b"{}").unwrap().max_payload, None);
        assert_eq!(parse_info(b"[1]"), None);
        assert_eq!(parse_info(b"{"), None);
    }

    #[test]
    fn subjects_are_one_literal_token_per_broker_channel() {
        assert_eq!(subject("gw:c:room-1/@x_Y"), "gw:c:room-1/@x_Y");
        assert_eq!(subject("gw:c:a.b"), "gw:c:a%2Eb");
        assert_eq!(subject("gw:c:*"), "gw:c:%2A");
        assert_eq!(subject("gw:c:>"), "gw:c:%3E");
        assert_eq!(subject("gw:c:%2E"), "gw:c:%252E", "one-to-one");
        assert_eq!(subject("a b\u{e9}"), "a%20b%C3%A9");
    }
}
