//! Streaming UTF-8 validation for text messages that arrive fragmented and in partial reads.
//!
//! Feed chunks of any size; an incomplete code point at a chunk end is carried to the next chunk.
//! An error is reported by the `feed` call whose chunk makes the message impossible (fail fast);
//! [`Validator::finish`] rejects a message that ends inside a code point.
//!
//! A chunk is cut in three: the head completes the carried code point (scalar, at most 3 bytes),
//! the body holds only whole code points and goes to the kernel of the [`crate::Kernels`] table,
//! and the tail is an incomplete code point (at most 3 bytes) checked as a prefix and carried.

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod lookup;
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;
pub(crate) mod scalar;

use scalar::Seq;

/// Invalid UTF-8, located by the offset of the first byte that cannot start or continue a valid
/// sequence, counted from the start of the message.
///
/// As `std::str::Utf8Error::valid_up_to` does, the offset is that of the start of the code point
/// that cannot be completed: the bytes before it are valid UTF-8. For a message that ends inside a
/// code point it is the offset where that code point starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utf8Error {
    /// Offset in the message of the first invalid byte.
    pub offset: u64,
}

/// The streaming validator state: a few bytes, kept per connection for an unfinished text message.
///
/// Holds the bytes of a code point cut by the end of the last chunk (at most 3) and the number of
/// bytes seen so far: 16 bytes in all. After an error the validator is back at the start of a new
/// message.
#[derive(Clone, Copy, Debug, Default)]
pub struct Validator {
    /// Message bytes fed so far, the carried ones included.
    offset: u64,
    /// The incomplete code point at the end of the last chunk: a valid prefix, `carry_len <= 3`.
    carry: [u8; 3],
    carry_len: u8,
}

impl Validator {
    /// A validator at the start of a message.
    pub fn new() -> Validator {
        Validator {
            offset: 0,
            carry: [0; 3],
            carry_len: 0,
        }
    }

    /// Validate the next chunk of the message.
    ///
    /// ```
    /// use frame_simd::{Kernels, Validator};
    /// let k = Kernels::detect();
    /// let text = "naïve €".as_bytes();
    /// let mut v = Validator::new();
    /// for chunk in text.chunks(3) {
    ///     v.feed(&k, chunk).unwrap();
    /// }
    /// v.finish().unwrap();
    /// // An overlong form fails in the chunk that holds its second byte.
    /// assert!(v.feed(&k, b"ok \xE0").is_ok());
    /// assert_eq!(v.feed(&k, b"\x80").unwrap_err().offset, 3);
    /// ```
    pub fn feed(&mut self, k: &crate::Kernels, chunk: &[u8]) -> Result<(), Utf8Error> {
        let head = self.carry_need().min(chunk.len());
        let (head, rest) = chunk.split_at(head);
        self.feed_head(head)?;
        if rest.is_empty() {
            return Ok(());
        }
        let cut = rest.len() - tail_len(&rest[rest.len().saturating_sub(3)..]);
        let (body, tail) = rest.split_at(cut);
        // SAFETY: `k.utf8` is a kernel whose target features `Kernels::with` checked on this CPU
        // (or the scalar one); every UTF-8 kernel accepts any slice.
        let verdict = unsafe { (k.utf8)(body) };
        self.on_body(verdict, body.len())?;
        self.feed_tail(tail)
    }

    /// The message ended: fails if it ends inside a code point. Resets the validator.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        let carried = self.carry_len;
        let offset = self.offset - u64::from(carried);
        *self = Validator::new();
        if carried == 0 {
            Ok(())
        } else {
            Err(Utf8Error { offset })
        }
    }

    /// How many more bytes the carried code point needs (0 when nothing is carried).
    pub(crate) fn carry_need(&self) -> usize {
        match self.carry_len {
            0 => 0,
            n => scalar::width(self.carry[0]).saturating_sub(usize::from(n)),
        }
    }

    /// Continue the carried code point with `head` (`head.len() <= self.carry_need()`).
    pub(crate) fn feed_head(&mut self, head: &[u8]) -> Result<(), Utf8Error> {
        if head.is_empty() {
            return Ok(());
        }
        let n = usize::from(self.carry_len);
        let mut seq = [0u8; 4];
        seq[..n].copy_from_slice(&self.carry[..n]);
        seq[n..n + head.len()].copy_from_slice(head);
        let seq = &seq[..n + head.len()];
        match scalar::check_seq(seq) {
            Seq::Complete(_) => {
                self.carry_len = 0;
                self.offset += head.len() as u64;
                Ok(())
            }
            Seq::Incomplete => {
                self.carry[..seq.len()].copy_from_slice(seq);
                self.carry_len = seq.len() as u8;
                self.offset += head.len() as u64;
                Ok(())
            }
            Seq::Invalid => Err(self.fail(self.offset - n as u64)),
        }
    }

    /// Account for a body (whole code points) of `len` bytes that the kernel judged.
    pub(crate) fn on_body(
        &mut self,
        verdict: Result<(), usize>,
        len: usize,
    ) -> Result<(), Utf8Error> {
        match verdict {
            Ok(()) => {
                self.offset += len as u64;
                Ok(())
            }
            Err(valid_up_to) => Err(self.fail(self.offset + valid_up_to as u64)),
        }
    }

    /// Carry the incomplete code point `tail` (at most 3 bytes) if it is a valid prefix.
    pub(crate) fn feed_tail(&mut self, tail: &[u8]) -> Result<(), Utf8Error> {
        if tail.is_empty() {
            return Ok(());
        }
        match scalar::check_seq(tail) {
            Seq::Incomplete => {
                self.carry[..tail.len()].copy_from_slice(tail);
                self.carry_len = tail.len() as u8;
                self.offset += tail.len() as u64;
                Ok(())
            }
            // `tail_len` only cuts off what looks like an unfinished sequence, so a complete one
            // cannot occur; treat it as invalid rather than trust that.
            Seq::Complete(_) | Seq::Invalid => Err(self.fail(self.offset)),
        }
    }

    fn fail(&mut self, offset: u64) -> Utf8Error {
        *self = Validator::new();
        Utf8Error { offset }
    }
}

/// How many bytes at the end of a chunk form a code point that the chunk cuts short; `last` is
/// the chunk's last (at most 3) bytes. A byte that looks like a lead byte (C0..FF) starts such a
/// tail when fewer bytes than its leading ones follow it; invalid lead bytes are cut off too, so
/// that the tail check rejects them in this chunk (fail fast) rather than after the next byte.
pub(crate) fn tail_len(last: &[u8]) -> usize {
    for (back, &b) in last.iter().rev().enumerate() {
        let have = back + 1;
        match b {
            0x80..=0xBF => continue,
            0xC0..=0xDF if have < 2 => return have,
            0xE0..=0xEF if have < 3 => return have,
            0xF0..=0xFF if have < 4 => return have,
            _ => return 0,
        }
    }
    0
}

/// Validate a whole message at once.
#[inline]
pub fn validate(k: &crate::Kernels, bytes: &[u8]) -> Result<(), Utf8Error> {
    // A whole message needs no carry: the kernel's own verdict (a message that ends inside a
    // code point fails where that code point starts) is the streaming one fed at once.
    // SAFETY: `k.utf8` is a kernel whose target features `Kernels::with` checked on this CPU
    // (or the scalar one); every UTF-8 kernel accepts any slice.
    unsafe { (k.utf8)(bytes) }.map_err(|valid_up_to| Utf8Error {
        offset: valid_up_to as u64,
    })
}
