//! The gateway's JSON rules in one place: the string escaper (RFC 8259 §7) every reply,
//! delivery and API response uses, values of a parsed request written back from simd-json's
//! tape, and the one nesting-depth limit every parsed document (client requests, API bodies,
//! token parts) is held to. Writes append to a caller's `Vec<u8>` (a reused buffer), so encoding
//! allocates nothing once the buffer has grown.

use std::io::Write as _;

use simd_json::prelude::*;
use simd_json::tape::Value;
use simd_json::ValueType;

use crate::conn::ConnId;

/// Deepest nesting of arrays and objects accepted anywhere: parsed values are dropped and
/// re-encoded recursively, so depth is bounded before parsing (API bodies, tokens) or while
/// writing back (client requests), or a document of brackets would overflow the shard's stack.
pub const MAX_DEPTH: usize = 64;

/// A value nests deeper than [`MAX_DEPTH`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooDeep;

/// Append `s` as a JSON string (quoted, escaped).
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Append `s` as a JSON string, or `null` when absent.
pub fn write_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => write_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// Append a connection id as a decimal string (JavaScript numbers lose precision past 2^53).
pub fn write_conn(out: &mut Vec<u8>, id: ConnId) {
    let _ = write!(out, "\"{}\"", id.to_bits());
}

/// Append a connection id, or `null`.
pub fn write_opt_conn(out: &mut Vec<u8>, id: Option<ConnId>) {
    match id {
        Some(id) => write_conn(out, id),
        None => out.extend_from_slice(b"null"),
    }
}

/// Append a parsed value as JSON text.
pub fn write_value(out: &mut Vec<u8>, v: Value<'_, '_>) -> Result<(), TooDeep> {
    write_nested(out, v, 0)
}

fn write_nested(out: &mut Vec<u8>, v: Value<'_, '_>, depth: usize) -> Result<(), TooDeep> {
    match v.value_type() {
        ValueType::Null => out.extend_from_slice(b"null"),
        ValueType::Bool => {
            let t = v.as_bool().unwrap_or(false);
            out.extend_from_slice(if t { b"true" } else { b"false" });
        }
        ValueType::I64 => {
            let _ = write!(out, "{}", v.as_i64().unwrap_or(0));
        }
        ValueType::U64 => {
            let _ = write!(out, "{}", v.as_u64().unwrap_or(0));
        }
        ValueType::F64 => write_f64(out, v.as_f64().unwrap_or(0.0)),
        ValueType::String => write_str(out, v.as_str().unwrap_or("")),
        ValueType::Array => {
            if depth >= MAX_DEPTH {
                return Err(TooDeep);
            }
            out.push(b'[');
            if let Some(a) = v.as_array() {
                for (i, item) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_nested(out, item, depth + 1)?;
                }
            }
            out.push(b']');
        }
        ValueType::Object => {
            if depth >= MAX_DEPTH {
                return Err(TooDeep);
            }
            out.push(b'{');
            if let Some(o) = v.as_object() {
                for (i, (k, item)) in o.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_str(out, k);
                    out.push(b':');
                    write_nested(out, item, depth + 1)?;
                }
            }
            out.push(b'}');
        }
        // 128-bit and extended types are not produced by the parser's default features.
        _ => out.extend_from_slice(b"null"),
    }
    Ok(())
}

fn write_f64(out: &mut Vec<u8>, f: f64) {
    if f.is_finite() {
        // `{:?}` keeps a `.0` on whole numbers and is the shortest text that reads back equal.
        let _ = write!(out, "{f:?}");
    } else {
        out.extend_from_slice(b"null");
    }
}

/// True when `json` has none of the faults simd-json lets through instead of refusing: every
/// document is checked with this before it is parsed (client requests, API bodies, token parts).
pub fn parser_safe(json: &[u8]) -> bool {
    free_of_nul(json) && strings_and_numbers_sound(json)
}

/// True when `json` holds no NUL byte. JSON text never does (RFC 8259: it is not whitespace, and
/// inside a string a control character must be escaped), but simd-json stops reading a number or
/// a literal at a NUL and resumes at the next structural character, so `[300<NUL>800]` would
/// parse as `[300]`.
fn free_of_nul(json: &[u8]) -> bool {
    memchr::memchr(0, json).is_none()
}

/// One pass over `json` for two faults simd-json lets through:
/// - a `\u` escape of a UTF-16 high surrogate not followed by the escape of a low surrogate, or a
///   low surrogate standing alone (RFC 8259 §7: strings hold Unicode characters); simd-json
///   decodes a lone high surrogate as a NUL character instead of refusing;
/// - a number followed by anything but whitespace, `,`, `]` or `}`: simd-json reads a number of
///   19 or more digits (or a long fraction) on a path that stops at the last digit without
///   looking at what comes next, so `[12345678901234567890abc]` would parse as a number.
///
/// Malformed escapes and everything else are left to the parser.
fn strings_and_numbers_sound(json: &[u8]) -> bool {
    let unit = |at: usize| {
        let hex = std::str::from_utf8(json.get(at..at + 4)?).ok()?;
        u16::from_str_radix(hex, 16).ok()
    };
    let mut in_string = false;
    let mut i = 0;
    while let Some(&b) = json.get(i) {
        match b {
            b'"' => in_string = !in_string,
            b'\\' if in_string => {
                if json.get(i + 1) == Some(&b'u') {
                    match unit(i + 2) {
                        Some(0xd800..=0xdbff) => {
                            let low = json.get(i + 6..i + 8) == Some(b"\\u")
                                && matches!(unit(i + 8), Some(0xdc00..=0xdfff));
                            if !low {
                                return false;
                            }
                            i += 6;
                        }
                        Some(0xdc00..=0xdfff) => return false,
                        _ => {}
                    }
                }
                // Skip the escaped character (`\"` does not end the string).
                i += 1;
            }
            b'-' | b'0'..=b'9' if !in_string => {
                let Some(end) = number_end(json, i) else {
                    return false;
                };
                if !matches!(
                    json.get(end),
                    None | Some(b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    return false;
                }
                i = end - 1;
            }
            _ => {}
        }
        i += 1;
    }
    true
}

/// The end of the number starting at `at`, read by the RFC 8259 grammar
/// (`-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`); `None` when it breaks it.
fn number_end(json: &[u8], mut at: usize) -> Option<usize> {
    let digits = |mut i: usize| {
        let start = i;
        while json.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        (i > start).then_some(i)
    };
    if json.get(at) == Some(&b'-') {
        at += 1;
    }
    at = match json.get(at) {
        Some(b'0') => at + 1,
        Some(b'1'..=b'9') => digits(at)?,
        _ => return None,
    };
    if json.get(at) == Some(&b'.') {
        at = digits(at + 1)?;
    }
    if let Some(b'e' | b'E') = json.get(at) {
        at += 1;
        if let Some(b'+' | b'-') = json.get(at) {
            at += 1;
        }
        at = digits(at)?;
    }
    Some(at)
}

/// True when no array or object in `json` nests deeper than [`MAX_DEPTH`] (brackets inside
/// strings do not count). One pass, no allocation; malformed input is left to the parser.
pub fn nesting_within_limit(json: &[u8]) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) -> String {
        let mut input = text.as_bytes().to_vec();
        let tape = simd_json::to_tape(&mut input).expect("valid JSON");
        let mut out = Vec::new();
        write_value(&mut out, tape.as_value()).expect("not too deep");
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn strings_are_escaped_and_reparse_equal() {
        let mut out = Vec::new();
        let s = "quote\" back\\ nl\n tab\t bell\u{7} é ☃ 😀";
        write_str(&mut out, s);
        let back: String = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(back, s);
        assert!(!out.contains(&7), "control bytes never appear raw");
    }

    #[test]
    fn values_are_written_back_equal() {
        let cases = [
            r#"{"a":[1,-2,3.5,true,false,null],"b":{"c":"d\u00e9\n"},"e":"😀"}"#,
            r#""plain""#,
            "12345678901234567890",
            "[]",
            "{}",
            "1e300",
        ];
        for c in cases {
            let got = round_trip(c);
            let want: serde_json::Value = serde_json::from_str(c).unwrap();
            let back: serde_json::Value = serde_json::from_str(&got).unwrap();
            assert_eq!(back, want, "{c} -> {got}");
        }
    }

    #[test]
    fn nesting_past_the_limit_is_refused() {
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        let mut input = deep.into_bytes();
        let tape = simd_json::to_tape(&mut input).unwrap();
        assert_eq!(write_value(&mut Vec::new(), tape.as_value()), Err(TooDeep));
    }

    #[test]
    fn conn_ids_are_decimal_strings() {
        let mut out = Vec::new();
        write_conn(&mut out, ConnId::new(1, 2, 3));
        assert_eq!(
            out,
            format!("\"{}\"", (1u64 << 56) | (3 << 24) | 2).as_bytes()
        );
    }

    #[test]
    fn lone_surrogate_escapes_are_refused_and_pairs_kept() {
        assert!(parser_safe(
            br#"["\ud83d\ude00","\u00e9","\\ud83d","\"\ud83d\udc00"]"#
        ));
        for text in [
            &br#"["\ud83d"]"#[..],
            br#"["\ud83dx"]"#,
            br#"["\ud83d\u0041"]"#,
            br#"["\ude00"]"#,
            br#"{"\uD800":1}"#,
        ] {
            assert!(!parser_safe(text), "{}", String::from_utf8_lossy(text));
            assert!(serde_json::from_slice::<serde_json::Value>(text).is_err());
        }
    }

    #[test]
    fn junk_after_a_number_is_refused() {
        for text in [
            &br#"{"a":12345678901234567890x}"#[..],
            br#"{"a":1234567890123456789x}"#,
            br#"[12345678901234567890abc]"#,
            br#"[1.2345678901234567890e5x]"#,
            br#"[-12345678901234567890"s"]"#,
            br#"[123x]"#,
            br#"12345678901234567890true"#,
            br#"{"exp":8000063320.00000000320.00000000003320.0000000000}"#,
            br#"[01]"#,
            br#"[1.]"#,
            br#"[1e]"#,
            br#"[-]"#,
        ] {
            assert!(!parser_safe(text), "{}", String::from_utf8_lossy(text));
            assert!(serde_json::from_slice::<serde_json::Value>(text).is_err());
        }
        for text in [
            &br#"{"a":12345678901234567890,"b":-1.5e-7}"#[..],
            br#"[ 12345678901234567890 , 1.2345678901234567890e5 ]"#,
            b"[1\n,2\t,3\r]",
            br#"{"n":"12345678901234567890abc","m":0}"#,
            br#"7"#,
            br#"{"a":[0,-0,1E+2]}"#,
        ] {
            assert!(parser_safe(text), "{}", String::from_utf8_lossy(text));
            assert!(serde_json::from_slice::<serde_json::Value>(text).is_ok());
        }
    }

    proptest::proptest! {
        /// The checks never refuse valid JSON: any document serde_json writes (numbers of every
        /// size, strings with escapes, nesting) passes them.
        #[test]
        fn valid_json_is_never_refused(v in json_value()) {
            let text = serde_json::to_vec(&v).unwrap();
            proptest::prop_assert!(parser_safe(&text), "{}", String::from_utf8_lossy(&text));
            let pretty = serde_json::to_vec_pretty(&v).unwrap();
            proptest::prop_assert!(parser_safe(&pretty), "{}", String::from_utf8_lossy(&pretty));
        }
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            any::<String>().prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn a_nul_byte_is_never_json() {
        assert!(free_of_nul(br#"{"a":[300,"\u0000"]}"#));
        for text in [&b"[300\x00800]"[..], b"\x00", b"{\"a\":true\x00}"] {
            assert!(!free_of_nul(text), "{text:?}");
            assert!(serde_json::from_slice::<serde_json::Value>(text).is_err());
        }
    }

    #[test]
    fn nesting_is_measured_outside_strings() {
        let nest = |n: usize| "[".repeat(n) + &"]".repeat(n);
        assert!(nesting_within_limit(nest(MAX_DEPTH).as_bytes()));
        assert!(!nesting_within_limit(nest(MAX_DEPTH + 1).as_bytes()));
        let quoted = format!(r#"{{"a":"{}"}}"#, "[".repeat(MAX_DEPTH * 2));
        assert!(
            nesting_within_limit(quoted.as_bytes()),
            "brackets in strings do not count"
        );
        let escaped = format!(r#"{{"a":"\"{}"}}"#, "[".repeat(MAX_DEPTH * 2));
        assert!(
            nesting_within_limit(escaped.as_bytes()),
            "an escaped quote does not end the string"
        );
        assert!(nesting_within_limit(b""));
    }
}
