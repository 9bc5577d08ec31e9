//! The backend API key: compared in constant time, so the time an attempt takes says nothing
//! about how much of the key it got right.

use std::fmt;

/// The configured API key.
#[derive(Clone)]
pub struct ApiKey(Box<[u8]>);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(..)")
    }
}

impl ApiKey {
    /// A key from its text.
    pub fn new(key: &str) -> ApiKey {
        ApiKey(key.as_bytes().into())
    }

    /// A random key (32 bytes from the OS, hex): used when none is configured.
    pub fn random() -> std::io::Result<ApiKey> {
        let mut raw = [0u8; 32];
        getrandom(&mut raw)?;
        let mut hex = String::with_capacity(64);
        for b in raw {
            hex.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            hex.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
        }
        Ok(ApiKey::new(&hex))
    }

    /// The key's text (to log a generated key once).
    pub fn reveal(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    /// True when `presented` is the key. The time taken depends only on the lengths.
    pub fn matches(&self, presented: &[u8]) -> bool {
        constant_time_eq(&self.0, presented)
    }

    /// Check an `Authorization` header value: `Bearer <key>` (scheme case-insensitive).
    pub fn check_authorization(&self, value: &[u8]) -> bool {
        let Some(scheme) = value.get(..7) else {
            return false;
        };
        scheme.eq_ignore_ascii_case(b"bearer ") && self.matches(trim_spaces(&value[7..]))
    }
}

impl ApiKey {
    /// Check an `Authorization` header value as a browser sends it for a password prompt:
    /// `Basic base64(user:password)` (RFC 7617) whose password is the key, whatever the user
    /// name; `Bearer <key>` is accepted too, for scripts.
    pub fn check_password(&self, value: &[u8]) -> bool {
        if self.check_authorization(value) {
            return true;
        }
        let Some(scheme) = value.get(..6) else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case(b"basic ") {
            return false;
        }
        let Ok(pair) = base64_simd::STANDARD.decode_to_vec(trim_spaces(&value[6..])) else {
            return false;
        };
        match memchr::memchr(b':', &pair) {
            Some(at) => self.matches(&pair[at + 1..]),
            None => false,
        }
    }
}

fn trim_spaces(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Compare two byte strings touching every byte of `a` whatever the contents: the result is
/// folded with OR so there is no early exit for the compiler to introduce.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, &x) in a.iter().enumerate() {
        let y = b.get(i).copied().unwrap_or(!x);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// Fill `buf` from the kernel's random source.
fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_keys_match_and_others_do_not() {
        let k = ApiKey::new("s3cret");
        assert!(k.matches(b"s3cret"));
        assert!(!k.matches(b"s3creT"));
        assert!(!k.matches(b"s3cre"));
        assert!(!k.matches(b"s3crett"));
        assert!(!k.matches(b""));
    }

    #[test]
    fn authorization_header_needs_bearer_scheme() {
        let k = ApiKey::new("abc");
        assert!(k.check_authorization(b"Bearer abc"));
        assert!(k.check_authorization(b"bearer  abc "));
        assert!(!k.check_authorization(b"Basic abc"));
        assert!(!k.check_authorization(b"Bearer abd"));
        assert!(!k.check_authorization(b"Bearer"));
        assert!(!k.check_authorization(b"abc"));
    }

    #[test]
    fn password_is_the_basic_credentials_password_or_a_bearer_key() {
        let k = ApiKey::new("s:3");
        // base64("admin:s:3") and base64(":s:3"): the user name is anything, the password
        // is everything after the first colon.
        assert!(k.check_password(b"Basic YWRtaW46czoz"));
        assert!(k.check_password(b"basic  OnM6Mw== "));
        assert!(k.check_password(b"Bearer s:3"));
        // base64("admin:s:4"), no colon, bad base64.
        assert!(!k.check_password(b"Basic YWRtaW46czo0"));
        assert!(!k.check_password(b"Basic czoz"));
        assert!(!k.check_password(b"Basic !!!"));
        assert!(!k.check_password(b"Basic"));
        assert!(!k.check_password(b"s:3"));
    }

    #[test]
    fn random_keys_differ_and_are_hex() {
        let a = ApiKey::random().unwrap();
        let b = ApiKey::random().unwrap();
        assert_eq!(a.reveal().len(), 64);
        assert!(a.reveal().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.reveal(), b.reveal());
        assert!(!format!("{a:?}").contains(a.reveal()));
    }
}
