//! `query`: the query-string decoder (`gateway::query::{decode, query_pairs, query_param}`) on
//! arbitrary text, and on encodings of arbitrary text.
//!
//! Asserts: nothing panics; text without `%` or `+` decodes to itself; `query_param` is the
//! first of `query_pairs` with that name; percent-encoding any string (spaces as `+` or `%20`)
//! decodes back to it, and a pair of encoded strings comes back out of `query_pairs` as itself.

use gateway::query::{decode, query_pairs, query_param};

use super::input::Input;

/// Input: a flags byte (spaces as `+`; where to split key from value), then the text.
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.byte();
    let text = String::from_utf8_lossy(input.rest());

    if let Some(d) = decode(&text) {
        if !text.contains(['%', '+']) {
            assert_eq!(d, text);
        }
    }
    let pairs: Vec<(String, String)> = query_pairs(&text)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let names = pairs.iter().map(|(k, _)| k.as_str()).take(4);
    for name in names.chain(["token"]) {
        let first = pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone());
        assert_eq!(query_param(&text, name), first, "param {name:?}");
    }

    let plus = flags & 1 == 1;
    let encoded = encode(&text, plus);
    assert_eq!(decode(&encoded).as_deref(), Some(&*text), "{encoded}");
    let mut split = usize::from(flags >> 1) % (text.len() + 1);
    while !text.is_char_boundary(split) {
        split -= 1;
    }
    let (key, value) = text.split_at(split);
    let query = format!("{}={}", encode(key, plus), encode(value, !plus));
    let got: Vec<(String, String)> = query_pairs(&query)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert_eq!(got, [(key.to_owned(), value.to_owned())], "{query}");
}

/// Percent-encode everything but RFC 3986's unreserved characters; a space is `+` with `plus`.
pub fn encode(s: &str, plus: bool) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(b));
            }
            b' ' if plus => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
