//! RESP, the Redis protocol, sans-IO: commands are encoded into a caller's buffer, replies and
//! pushes are parsed from a byte slice that may hold a partial value ("need more", never an
//! error). No socket, no clock, no allocation beyond the parsed value itself.
//!
//! Only what a client meets is parsed: RESP2's simple strings, errors, integers, bulk strings
//! and arrays (nulls included), and RESP3's push (`>`), which a RESP2 connection never sends but
//! costs nothing to accept. Nesting and sizes are bounded, so hostile input is an error, not a
//! stack overflow or a huge allocation.

/// Longest bulk string accepted (Redis's own limit for a value).
pub const MAX_BULK: usize = 512 << 20;
/// Most elements in one array.
pub const MAX_ELEMENTS: usize = 1 << 20;
/// Deepest array nesting (a client sees at most 2 or 3).
pub const MAX_DEPTH: usize = 8;

/// One parsed value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `+OK`.
    Simple(Vec<u8>),
    /// `-ERR ...`.
    Error(Vec<u8>),
    /// `:42`.
    Int(i64),
    /// `$3\r\nabc` (`None`: the null bulk string `$-1`).
    Bulk(Option<Vec<u8>>),
    /// `*2\r\n...` or a RESP3 push `>3\r\n...` (`None`: the null array `*-1`).
    Array(Option<Vec<Value>>),
}

impl Value {
    /// The bytes of a bulk or simple string.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bulk(Some(b)) | Value::Simple(b) => Some(b),
            _ => None,
        }
    }
}

/// What the bytes so far hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A complete value, and how many bytes it took.
    Value(Value, usize),
    /// The value is not complete yet.
    Need,
}

/// Bytes that are not RESP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RespError {
    /// The first byte of a value names no type.
    UnknownType(u8),
    /// A length or integer is not a decimal number.
    BadNumber,
    /// A line does not end with CRLF (or a bulk string is not followed by one).
    MissingCrlf,
    /// A bulk string or array is longer than the limits.
    TooLong,
    /// Arrays nest deeper than [`MAX_DEPTH`].
    TooDeep,
}

impl std::fmt::Display for RespError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RespError::UnknownType(b) => write!(f, "unknown RESP type byte 0x{b:02x}"),
            RespError::BadNumber => f.write_str("bad number in a RESP header"),
            RespError::MissingCrlf => f.write_str("RESP line without CRLF"),
            RespError::TooLong => f.write_str("RESP value over the size limits"),
            RespError::TooDeep => f.write_str("RESP arrays nested too deep"),
        }
    }
}

impl std::error::Error for RespError {}

/// Append a command (an array of bulk strings) to `out`.
pub fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    write_len(out, b'*', args.len());
    for a in args {
        write_len(out, b'$', a.len());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

fn write_len(out: &mut Vec<u8>, kind: u8, n: usize) {
    out.push(kind);
    out.extend_from_slice(n.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Parse one value from the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Parsed, RespError> {
    match parse_at(buf, 0, 0)? {
        Some((v, end)) => Ok(Parsed::Value(v, end)),
        None => Ok(Parsed::Need),
    }
}

/// The line starting at `at` (without its CRLF) and where the next begins; `None`: incomplete.
fn line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, RespError> {
    let rest = buf.get(at..).unwrap_or_default();
    match memchr::memchr(b'\n', rest) {
        None => Ok(None),
        Some(0) => Err(RespError::MissingCrlf),
        Some(nl) if rest[nl - 1] != b'\r' => Err(RespError::MissingCrlf),
        Some(nl) => Ok(Some((&rest[..nl - 1], at + nl + 1))),
    }
}

fn number(text: &[u8]) -> Result<i64, RespError> {
    let (neg, digits) = match text.split_first() {
        Some((b'-', d)) => (true, d),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(RespError::BadNumber);
    }
    let mut n: i64 = 0;
    for d in digits {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(i64::from(d - b'0')))
            .ok_or(RespError::BadNumber)?;
    }
    Ok(if neg { -n } else { n })
}

/// A length header: `-1` is null (`None`), else at most `max`.
fn length(text: &[u8], max: usize) -> Result<Option<usize>, RespError> {
    match number(text)? {
        -1 => Ok(None),
        n if n < 0 => Err(RespError::BadNumber),
        n => {
            let n = usize::try_from(n).map_err(|_| RespError::TooLong)?;
            if n > max {
                return Err(RespError::TooLong);
            }
            Ok(Some(n))
        }
    }
}

type Step = Result<Option<(Value, usize)>, RespError>;

fn parse_at(buf: &[u8], at: usize, depth: usize) -> Step {
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let Some((text, next)) = line(buf, at + 1)? else {
        return Ok(None);
    };
    match kind {
        b'+' => Ok(Some((Value::Simple(text.to_vec()), next))),
        b'-' => Ok(Some((Value::Error(text.to_vec()), next))),
        b':' => Ok(Some((Value::Int(number(text)?), next))),
        b'$' => {
            let Some(n) = length(text, MAX_BULK)? else {
                return Ok(Some((Value::Bulk(None), next)));
            };
            let end = next + n;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(RespError::MissingCrlf);
            }
            Ok(Some((Value::Bulk(Some(buf[next..end].to_vec())), end + 2)))
        }
        b'*' | b'>' => {
            if depth >= MAX_DEPTH {
                return Err(RespError::TooDeep);
            }
            let Some(n) = length(text, MAX_ELEMENTS)? else {
                return Ok(Some((Value::Array(None), next)));
            };
            // Every element takes at least 3 bytes: do not reserve for what is not there.
            let mut items = Vec::with_capacity(n.min(buf.len().saturating_sub(next) / 3));
            let mut at = next;
            for _ in 0..n {
                let Some((v, end)) = parse_at(buf, at, depth + 1)? else {
                    return Ok(None);
                };
                items.push(v);
                at = end;
            }
            Ok(Some((Value::Array(Some(items)), at)))
        }
        other => Err(RespError::UnknownType(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(b: &[u8]) -> Value {
        Value::Bulk(Some(b.to_vec()))
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode_command(&mut out, &[b"PUBLISH", b"gw:c:a", b"x\r\ny"]);
        assert_eq!(
            out,
            b"*3\r\n$7\r\nPUBLISH\r\n$6\r\ngw:c:a\r\n$4\r\nx\r\ny\r\n".to_vec()
        );
        // What a client encodes, a parser reads back.
        let Parsed::Value(v, n) = parse(&out).unwrap() else {
            panic!("complete");
        };
        assert_eq!(n, out.len());
        assert_eq!(
            v,
            Value::Array(Some(vec![
                bulk(b"PUBLISH"),
                bulk(b"gw:c:a"),
                bulk(b"x\r\ny")
            ]))
        );
    }

    #[test]
    fn every_type_parses_and_reports_its_length() {
        let cases: Vec<(&[u8], Value)> = vec![
            (b"+OK\r\n", Value::Simple(b"OK".to_vec())),
            (b"-ERR no\r\n", Value::Error(b"ERR no".to_vec())),
            (b":-42\r\n", Value::Int(-42)),
            (b"$-1\r\n", Value::Bulk(None)),
            (b"$0\r\n\r\n", bulk(b"")),
            (b"*-1\r\n", Value::Array(None)),
            (b"*0\r\n", Value::Array(Some(vec![]))),
            (
                b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n",
                Value::Array(Some(vec![bulk(b"message"), bulk(b"c"), bulk(b"hi")])),
            ),
            (
                b">2\r\n$4\r\npong\r\n*1\r\n:1\r\n",
                Value::Array(Some(vec![
                    bulk(b"pong"),
                    Value::Array(Some(vec![Value::Int(1)])),
                ])),
            ),
        ];
        for (bytes, want) in cases {
            let mut with_more = bytes.to_vec();
            with_more.extend_from_slice(b"+next\r\n");
            assert_eq!(
                parse(&with_more),
                Ok(Parsed::Value(want, bytes.len())),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn every_strict_prefix_needs_more() {
        let whole = b"*3\r\n$7\r\nmessage\r\n$5\r\ngw:ab\r\n$3\r\n\r\nx\r\n";
        for cut in 0..whole.len() {
            assert_eq!(parse(&whole[..cut]), Ok(Parsed::Need), "cut at {cut}");
        }
        assert!(matches!(parse(whole), Ok(Parsed::Value(_, n)) if n == whole.len()));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let cases: Vec<(&[u8], RespError)> = vec![
            (b"?x\r\n", RespError::UnknownType(b'?')),
            (b":12a\r\n", RespError::BadNumber),
            (b":\r\n", RespError::BadNumber),
            (b":99999999999999999999\r\n", RespError::BadNumber),
            (b"$-2\r\n", RespError::BadNumber),
            (b"+OK\n", RespError::MissingCrlf),
            (b"+\n", RespError::MissingCrlf),
            (b"$1\r\nab\r\n", RespError::MissingCrlf),
            (b"$999999999999\r\n", RespError::TooLong),
            (b"*9999999\r\n", RespError::TooLong),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                parse(bytes),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        let deep = b"*1\r\n".repeat(MAX_DEPTH + 1);
        assert_eq!(parse(&deep), Err(RespError::TooDeep));
    }
}
