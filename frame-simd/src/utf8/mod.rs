//! Streaming UTF-8 validation for text messages that arrive fragmented and in partial reads.
//!
//! Feed chunks of any size; an incomplete code point at a chunk end is carried to the next chunk.
//! An error is reported by the `feed` call whose chunk makes the message impossible (fail fast);
//! [`Validator::finish`] rejects a message that ends inside a code point.

/// Invalid UTF-8, located by the offset of the first byte that cannot start or continue a valid
/// sequence, counted from the start of the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utf8Error {
    /// Offset in the message of the first invalid byte.
    pub offset: u64,
}

/// The streaming validator state: a few bytes, kept per connection for an unfinished text message.
#[derive(Clone, Copy, Debug, Default)]
pub struct Validator {}

impl Validator {
    /// A validator at the start of a message.
    pub fn new() -> Validator {
        Validator {}
    }

    /// Validate the next chunk of the message.
    pub fn feed(&mut self, k: &crate::Kernels, chunk: &[u8]) -> Result<(), Utf8Error> {
        let _ = (k, chunk);
        todo!()
    }

    /// The message ended: fails if it ends inside a code point. Resets the validator.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        todo!()
    }
}

/// Validate a whole message at once.
pub fn validate(k: &crate::Kernels, bytes: &[u8]) -> Result<(), Utf8Error> {
    let mut v = Validator::new();
    v.feed(k, bytes)?;
    v.finish()
}
