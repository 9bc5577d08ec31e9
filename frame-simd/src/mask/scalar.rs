//! The reference unmask: one byte at a time, `buf[i] ^= key[i % 4]`. It is the specification the
//! SIMD kernels are tested against, and the kernel used when SIMD is switched off.

/// XOR `buf` with `key`, `buf[0]` pairing with `key[0]`.
pub(crate) fn unmask(buf: &mut [u8], key: [u8; 4]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}
