//! Payload (un)masking (RFC 6455 §5.3): XOR with a 4-byte key in place. The key phase carries
//! across calls so a payload split over several reads unmasks piece by piece.
//!
//! [`unmask`] rotates the key once to the phase of `buf[0]` and hands the slice to the kernel of
//! the [`crate::Kernels`] table; `scalar.rs` is the reference every other kernel is tested against.

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;
pub(crate) mod scalar;
#[cfg(target_arch = "x86_64")]
pub(crate) mod sse2;

/// A 4-byte masking key, as it appears on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct MaskKey(pub [u8; 4]);

impl MaskKey {
    /// The key as seen from payload byte number `phase`: `rotated(p).0[0]` masks byte `p`.
    pub fn rotated(self, phase: usize) -> MaskKey {
        MaskKey(rotate(self.0, phase))
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
#[inline]
pub fn unmask(k: &crate::Kernels, buf: &mut [u8], key: MaskKey, phase: usize) {
    let key = key.rotated(phase).0;
    if buf.len() < SHORT && k.kernel() != crate::Kernel::Scalar {
        return unmask_short(buf, key);
    }
    // SAFETY: `k.unmask` is a kernel whose target features `Kernels::with` checked on this CPU
    // before putting it in the table (or the scalar kernel, which needs none); every unmask
    // kernel accepts any slice.
    unsafe { (k.unmask)(buf, key) }
}

/// Below this length the SIMD families skip the table: an indirect call and a wide kernel's
/// set-up cost more than the work (measured at 16 and 125 bytes), so payloads this short take
/// the inlined 16-byte path that every CPU of the target has. The scalar family keeps the
/// reference kernel, so switching SIMD off still switches it off everywhere.
const SHORT: usize = 128;

/// XOR a short slice: SSE2 (part of every x86_64 CPU) 16 bytes at a time, words elsewhere.
#[inline(always)]
pub(crate) fn unmask_short(buf: &mut [u8], key: [u8; 4]) {
    #[cfg(target_arch = "x86_64")]
    sse2::unmask_short(buf, key);
    #[cfg(not(target_arch = "x86_64"))]
    unmask_words(buf, key);
}

/// `key` rotated left by `n` bytes: the key for the byte `n` places after the one `key[0]` masks.
#[inline(always)]
pub(crate) fn rotate(key: [u8; 4], n: usize) -> [u8; 4] {
    // One rotate instruction; `<[u8]>::rotate_left` is a general slice algorithm with branches.
    // In little-endian order byte `n` moves to the bottom when the word turns right by `8 * n`.
    let turn = 8 * (n % 4) as u32;
    u32::from_le_bytes(key).rotate_right(turn).to_le_bytes()
}

/// Unmask a short slice (the head or tail around vector blocks) eight and four bytes at a time;
/// `buf[0]` pairs with `key[0]`.
#[inline(always)]
pub(crate) fn unmask_words(buf: &mut [u8], key: [u8; 4]) {
    let k4 = u32::from_ne_bytes(key);
    // Both halves hold the same four bytes, so this is the key twice in either byte order.
    let k8 = u64::from(k4) | (u64::from(k4) << 32);
    let mut words = buf.chunks_exact_mut(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        w.copy_from_slice(&(u64::from_ne_bytes(b) ^ k8).to_ne_bytes());
    }
    let rest = words.into_remainder();
    let mut quads = rest.chunks_exact_mut(4);
    for q in &mut quads {
        let mut b = [0u8; 4];
        b.copy_from_slice(q);
        q.copy_from_slice(&(u32::from_ne_bytes(b) ^ k4).to_ne_bytes());
    }
    for (b, k) in quads.into_remainder().iter_mut().zip(key) {
        *b ^= k;
    }
}
