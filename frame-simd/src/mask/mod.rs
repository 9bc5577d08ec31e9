//! Payload (un)masking (RFC 6455 §5.3): XOR with a 4-byte key in place. The key phase carries
//! across calls so a payload split over several reads unmasks piece by piece.
//!
//! [`unmask`] rotates the key once to the phase of `buf[0]` and hands the slice to the kernel of
//! the [`crate::Kernels`] table; `scalar.rs` is the reference every other kernel is tested against.

pub(crate) mod scalar;

/// A 4-byte masking key, as it appears on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct MaskKey(pub [u8; 4]);

impl MaskKey {
    /// The key as seen from payload byte number `phase`: `rotated(p).0[0]` masks byte `p`.
    pub fn rotated(self, phase: usize) -> MaskKey {
        let mut key = self.0;
        key.rotate_left(phase % 4);
        MaskKey(key)
    }
}

/// XOR `buf` with `key`, where `buf[0]` is payload byte number `phase` (only `phase % 4` matters).
/// Masking and unmasking are the same operation.
///
/// ```
/// use frame_simd::{mask, Kernels, MaskKey};
/// let k = Kernels::detect();
/// let key = MaskKey([0x37, 0xfa, 0x21, 0x3d]);
/// let mut payload = *b"Hello";
/// mask::unmask(&k, &mut payload, key, 0);
/// // The same payload unmasked in two reads: the second starts at phase 2.
/// let (a, b) = payload.split_at_mut(2);
/// mask::unmask(&k, a, key, 0);
/// mask::unmask(&k, b, key, 2);
/// assert_eq!(&payload, b"Hello");
/// ```
pub fn unmask(k: &crate::Kernels, buf: &mut [u8], key: MaskKey, phase: usize) {
    // SAFETY: `k.unmask` is a kernel whose target features `Kernels::with` checked on this CPU
    // before putting it in the table (or the scalar kernel, which needs none); every unmask
    // kernel accepts any slice.
    unsafe { (k.unmask)(buf, key.rotated(phase).0) }
}
