//! Request signing: every call carries `X-Gateway-Timestamp: <unix seconds>` and
//! `X-Gateway-Signature: sha256=<hex HMAC-SHA256(key, "<timestamp>.<body>")>`, so a backend can
//! check the call came from the gateway (and is fresh) before acting on it. The verification
//! recipe for backends is in `gateway/docs/hooks.md`.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Signs call bodies with one key.
#[derive(Clone)]
pub struct Signer {
    mac: Hmac<Sha256>,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signer(..)")
    }
}

impl Signer {
    /// A signer with `key`.
    pub fn new(key: &[u8]) -> Signer {
        // HMAC takes a key of any length (RFC 2104 §2): this cannot fail.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
        Signer { mac }
    }

    /// The lowercase hex signature of `body` sent at `unix_secs`.
    pub fn sign(&self, unix_secs: u64, body: &[u8]) -> String {
        let mut mac = self.mac.clone();
        mac.update(unix_secs.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        let digest = mac.finalize().into_bytes();
        let mut hex = String::with_capacity(64);
        for b in digest {
            hex.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            hex.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
        }
        hex
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector_from_python_hmac() {
        // hmac.new(b"secret", b"1700000000.{}", hashlib.sha256).hexdigest()
        assert_eq!(
            Signer::new(b"secret").sign(1_700_000_000, b"{}"),
            "b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
        );
    }
}
