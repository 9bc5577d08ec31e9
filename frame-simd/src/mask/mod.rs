//! Payload (un)masking (RFC 6455 §5.3): XOR with a 4-byte key in place. The key phase carries
//! across calls so a payload split over several reads unmasks piece by piece.

/// A 4-byte masking key, as it appears on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct MaskKey(pub [u8; 4]);

/// XOR `buf` with `key`, where `buf[0]` is payload byte number `phase` (only `phase % 4` matters).
/// Masking and unmasking are the same operation.
pub fn unmask(k: &crate::Kernels, buf: &mut [u8], key: MaskKey, phase: usize) {
    let _ = (k, buf, key, phase);
    todo!()
}
