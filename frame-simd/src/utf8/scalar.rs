//! The reference UTF-8 validator (RFC 3629 §4), one code point at a time with a word-sized ASCII
//! skip. It is the specification the SIMD kernels are tested against, the kernel used when SIMD is
//! switched off, and the cold path that locates the exact error once a SIMD block fails.
//!
//! | first byte | then                                             |
//! |------------|--------------------------------------------------|
//! | 00..7F     | -                                                |
//! | C2..DF     | 80..BF                                           |
//! | E0         | A0..BF (no overlong), 80..BF                     |
//! | E1..EC, EE..EF | 80..BF, 80..BF                               |
//! | ED         | 80..9F (no surrogates), 80..BF                   |
//! | F0         | 90..BF (no overlong), 80..BF, 80..BF             |
//! | F1..F3     | 80..BF, 80..BF, 80..BF                           |
//! | F4         | 80..8F (at most U+10FFFF), 80..BF, 80..BF        |
//!
//! C0, C1 and F5..FF never occur.

/// What the bytes at the start of a slice are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Seq {
    /// A complete, valid code point of this many bytes.
    Complete(usize),
    /// The start of a valid code point that the slice cuts short.
    Incomplete,
    /// No valid code point starts this way.
    Invalid,
}

/// The number of bytes of the sequence `lead` starts, 0 if it can start none.
pub(crate) fn width(lead: u8) -> usize {
    match lead {
        0x00..=0x7F => 1,
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 0,
    }
}

/// The allowed range of the byte after `lead` (the table above).
fn second_range(lead: u8) -> (u8, u8) {
    match lead {
        0xE0 => (0xA0, 0xBF),
        0xED => (0x80, 0x9F),
        0xF0 => (0x90, 0xBF),
        0xF4 => (0x80, 0x8F),
        _ => (0x80, 0xBF),
    }
}

/// Classify the code point at the start of `s` (empty `s` is `Incomplete`).
pub(crate) fn check_seq(s: &[u8]) -> Seq {
    let Some(&lead) = s.first() else {
        return Seq::Incomplete;
    };
    let w = width(lead);
    if w == 0 {
        return Seq::Invalid;
    }
    for (j, &b) in s.iter().enumerate().take(w).skip(1) {
        let (lo, hi) = if j == 1 {
            second_range(lead)
        } else {
            (0x80, 0xBF)
        };
        if b < lo || b > hi {
            return Seq::Invalid;
        }
    }
    if s.len() < w {
        Seq::Incomplete
    } else {
        Seq::Complete(w)
    }
}

/// Validate complete UTF-8; `Err` holds the length of the longest valid prefix.
pub(crate) fn validate(bytes: &[u8]) -> Result<(), usize> {
    const WORD: usize = 8;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let cont = |i: usize| matches!(bytes.get(i), Some(0x80..=0xBF));
    let mut i = 0;
    while let Some(&lead) = bytes.get(i) {
        if lead < 0x80 {
            i += 1;
            // ASCII runs are the common case: skip them a word at a time.
            while let Some(word) = bytes.get(i..i + WORD) {
                let mut w = [0u8; WORD];
                w.copy_from_slice(word);
                if u64::from_ne_bytes(w) & HIGH != 0 {
                    break;
                }
                i += WORD;
            }
            continue;
        }
        // The table above, one row per arm; the second byte's range depends on the lead.
        let (lo, hi) = second_range(lead);
        let second = matches!(bytes.get(i + 1), Some(&b) if (lo..=hi).contains(&b));
        let w = match width(lead) {
            2 if second => 2,
            3 if second && cont(i + 2) => 3,
            4 if second && cont(i + 2) && cont(i + 3) => 4,
            _ => return Err(i),
        };
        i += w;
    }
    Ok(())
}
