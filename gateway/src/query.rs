//! Query strings (`channel=a&channel=b`, `user=ann&token=...`) of upgrade and API requests: split
//! on `&` and `=`, `+` and `%XX` decoded. Pairs that do not decode to UTF-8 are skipped. The one
//! query decoder of the gateway.

use std::borrow::Cow;

/// The query part of a request target (empty when it has none).
pub fn query_of(target: &str) -> &str {
    target.split_once('?').map_or("", |(_, q)| q)
}

/// The decoded `(key, value)` pairs of `query` (the part of a target after `?`).
pub fn query_pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((decode(k)?, decode(v)?))
        })
}

/// The first value of `name` in `query`, decoded. `None` when absent or not valid UTF-8 after
/// decoding.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query_pairs(query).find_map(|(k, v)| (k == name).then(|| v.into_owned()))
}

/// Decode `+` and `%XX`; `None` for bad escapes or non-UTF-8 results.
pub fn decode(s: &str) -> Option<Cow<'_, str>> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Some(Cow::Borrowed(s));
    }
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = hex(bytes.next()?)?;
                let lo = hex(bytes.next()?)?;
                out.push(hi << 4 | lo);
            }
            _ => out.push(b),
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_split_and_decoded() {
        let got: Vec<(String, String)> = query_pairs(query_of(
            "/raw?channel=a&channel=room%3A1&user=J%C3%BCrgen+B&flag",
        ))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
        assert_eq!(
            got,
            vec![
                ("channel".into(), "a".into()),
                ("channel".into(), "room:1".into()),
                ("user".into(), "Jürgen B".into()),
                ("flag".into(), "".into()),
            ]
        );
    }

    #[test]
    fn bad_escapes_are_skipped() {
        assert_eq!(query_pairs("user=%zz&a=%ff&b=1").count(), 1);
        assert_eq!(query_pairs(query_of("/ws")).count(), 0);
    }

    #[test]
    fn params_are_matched_by_whole_name() {
        assert_eq!(
            query_param("xtoken=1&token=2", "token").as_deref(),
            Some("2")
        );
        assert_eq!(query_param("token", "token").as_deref(), Some(""));
        assert_eq!(query_param("", "token"), None);
        assert_eq!(query_param("a=%zz&a=b", "a").as_deref(), Some("b"));
    }
}
