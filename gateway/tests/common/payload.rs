//! Test payloads: a deterministic generator ([`Rng`]) and the bytes drawn from it, valid UTF-8 of
//! an exact length, and short previews for failure messages.

/// A short printable preview of a payload for failure messages.
pub fn preview(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return String::new();
    }
    let head = &bytes[..bytes.len().min(48)];
    let more = if bytes.len() > head.len() { "..." } else { "" };
    format!(" ({:02x?}{more})", head)
}

/// A small deterministic generator (xorshift64) for payloads and randomised tests. The state
/// must not be 0.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Deterministic pseudo-random bytes (xorshift) for payloads.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    (0..len).map(|_| rng.next() as u8).collect()
}

/// Valid UTF-8 text of exactly `len` bytes mixing 1-, 2-, 3- and 4-byte code points.
pub fn utf8_text(len: usize) -> Vec<u8> {
    const UNITS: [&str; 4] = ["a", "é", "€", "𝄞"];
    let mut out = String::with_capacity(len);
    let mut i = 0;
    while out.len() < len {
        let left = len - out.len();
        let unit = UNITS[i % 4];
        out.push_str(if unit.len() <= left { unit } else { "a" });
        i += 1;
    }
    out.into_bytes()
}
