//! The stamp a broadcast message carries so every delivery can be checked and timed: the
//! INTENDED publish time (Unix ns), the publisher id and its sequence number, as 40 ASCII hex
//! digits (valid UTF-8 for text frames), padded to the requested size with chat-like text (words
//! in a non-repeating order, so a compressed message is about as large as a real chat message
//! of that size; dots would compress to nothing). `SeqTrack` turns the sequence numbers one
//! subscriber sees from one publisher into loss, duplicate and reorder counts.

use std::sync::OnceLock;

/// Bytes taken by the stamp; payloads are at least this long.
pub const STAMP_LEN: usize = 40;

/// What a delivery carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// Intended publish time, ns since the Unix epoch.
    pub intended_unix_ns: u64,
    /// Global publisher id.
    pub publisher: u32,
    /// Per-publisher sequence number, from 0.
    pub seq: u64,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn put_hex(out: &mut [u8], mut v: u64) {
    for b in out.iter_mut().rev() {
        *b = HEX[(v & 0xf) as usize];
        v >>= 4;
    }
}

/// The value of each byte as a lowercase hex digit; 0xFF for every other byte.
static HEX_VALUE: [u8; 256] = {
    let mut t = [0xFF; 256];
    let mut i = 0;
    while i < 16 {
        t[HEX[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// `N` lowercase hex digits as a number; `None` when one is not a hex digit. One table load per
/// digit and no branch on its value: stamp digits are random, so a branch per digit (digit or
/// letter) would be mispredicted about half the time on every delivery.
fn get_hex<const N: usize>(digits: &[u8; N]) -> Option<u64> {
    let mut acc = 0u64;
    let mut bad = 0u8;
    for &d in digits {
        let v = HEX_VALUE[usize::from(d)];
        bad |= v;
        acc = acc << 4 | u64::from(v & 0xF);
    }
    (bad & 0xF0 == 0).then_some(acc)
}

/// The padding text: 64 KiB of words, then repeated for longer payloads.
fn padding() -> &'static [u8] {
    static PAD: OnceLock<Vec<u8>> = OnceLock::new();
    PAD.get_or_init(|| {
        const WORDS: [&str; 24] = [
            "hello", "team", "the", "build", "is", "green", "again", "after", "we", "fixed",
            "that", "flaky", "test", "meeting", "moved", "to", "three", "pm", "bring", "slides",
            "coffee", "thanks", "see", "you",
        ];
        let mut x = 0x2545_f491u32;
        let mut pad = Vec::with_capacity(64 << 10);
        while pad.len() < 64 << 10 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            pad.extend_from_slice(WORDS[x as usize % WORDS.len()].as_bytes());
            pad.push(if x % 7 == 0 { b'.' } else { b' ' });
        }
        pad.truncate(64 << 10);
        pad
    })
}

/// Fill `out` with the padding text (echo payloads, and what follows a stamp).
pub fn fill(out: &mut [u8]) {
    for chunk in out.chunks_mut(padding().len()) {
        chunk.copy_from_slice(&padding()[..chunk.len()]);
    }
}

impl Stamp {
    /// Write the stamp and the padding text into `out` (its whole length; at least
    /// [`STAMP_LEN`]).
    pub fn write(&self, out: &mut [u8]) {
        let (stamp, pad) = out.split_at_mut(STAMP_LEN);
        put_hex(&mut stamp[0..16], self.intended_unix_ns);
        put_hex(&mut stamp[16..24], u64::from(self.publisher));
        put_hex(&mut stamp[24..40], self.seq);
        fill(pad);
    }

    /// Read a stamp from the front of a payload; `None` if it carries none.
    pub fn read(payload: &[u8]) -> Option<Stamp> {
        let s: &[u8; STAMP_LEN] = payload.get(..STAMP_LEN)?.try_into().ok()?;
        let (time, rest) = s.split_first_chunk::<16>()?;
        let (publisher, seq) = rest.split_first_chunk::<8>()?;
        let seq: &[u8; 16] = seq.try_into().ok()?;
        Some(Stamp {
            intended_unix_ns: get_hex(time)?,
            publisher: u32::try_from(get_hex(publisher)?).ok()?,
            seq: get_hex(seq)?,
        })
    }
}

/// What one subscriber saw of one publisher: exact while reorders stay within 128 messages.
#[derive(Clone, Copy, Debug, Default)]
pub struct SeqTrack {
    /// One past the highest sequence number seen.
    next: u64,
    /// Bit i set: `next - 1 - i` was received (i < 128).
    window: u128,
    /// Distinct sequence numbers received.
    pub unique: u64,
    /// Deliveries of a sequence number already received.
    pub duplicated: u64,
    /// Deliveries below the highest sequence number seen (late, not duplicates).
    pub out_of_order: u64,
}

impl SeqTrack {
    /// Record one delivery of `seq`.
    pub fn on_seq(&mut self, seq: u64) {
        if seq >= self.next {
            let shift = seq - self.next + 1;
            self.window = if shift >= 128 {
                0
            } else {
                self.window << shift
            };
            self.window |= 1;
            self.next = seq + 1;
            self.unique += 1;
        } else {
            let back = self.next - 1 - seq;
            if back >= 128 {
                // Too far back to tell: a late message, counted once as unique.
                self.out_of_order += 1;
                self.unique += 1;
            } else if self.window & (1 << back) != 0 {
                self.duplicated += 1;
            } else {
                self.window |= 1 << back;
                self.out_of_order += 1;
                self.unique += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips_and_pads() {
        let s = Stamp {
            intended_unix_ns: 1_700_000_000_123_456_789,
            publisher: 77,
            seq: 12345,
        };
        let mut buf = [0u8; 64];
        s.write(&mut buf);
        assert!(std::str::from_utf8(&buf).is_ok());
        assert!(buf[40..]
            .iter()
            .all(|b| b.is_ascii_lowercase() || b" .".contains(b)));
        assert_eq!(Stamp::read(&buf), Some(s));
        assert_eq!(Stamp::read(b"pub:hello"), None);
        assert_eq!(Stamp::read(&buf[..STAMP_LEN - 1]), None);
    }

    #[test]
    fn every_field_is_read_whole_and_a_non_hex_digit_anywhere_is_no_stamp() {
        let s = Stamp {
            intended_unix_ns: u64::MAX,
            publisher: u32::MAX,
            seq: 0x0123_4567_89ab_cdef,
        };
        let mut buf = [0u8; STAMP_LEN];
        s.write(&mut buf);
        assert_eq!(&buf[..24], &[b'f'; 24]);
        assert_eq!(&buf[24..], b"0123456789abcdef");
        assert_eq!(Stamp::read(&buf), Some(s));
        for at in 0..STAMP_LEN {
            for bad in [b'g', b'A', b'F', b'/', b':', b'`', b' ', 0x80, 0xFF] {
                let mut b = buf;
                b[at] = bad;
                assert_eq!(Stamp::read(&b), None, "byte {at} = {bad:#x}");
            }
        }
    }

    #[test]
    fn seq_track_counts_duplicates_and_reorders() {
        let mut t = SeqTrack::default();
        for seq in [0, 1, 3, 2, 2, 5, 0] {
            t.on_seq(seq);
        }
        assert_eq!(t.unique, 5); // 0 1 2 3 5; 4 is missing
        assert_eq!(t.duplicated, 2); // second 2, second 0
        assert_eq!(t.out_of_order, 1); // 2 after 3
    }
}
