//! Kernel selection: CPU features are detected once per process into a small `Copy` table of
//! function pointers; shards copy it at start, and the per-frame path never asks the CPU again.
//! Tests and benches force a kernel with [`Kernels::with`], which says when the CPU lacks it.
//! `FRAME_SIMD_KERNEL=scalar|sse2|avx2|avx512|neon` overrides the choice of [`Kernels::detect`].

use std::sync::OnceLock;

use crate::{mask, utf8};

/// A family of SIMD kernels, named the same in tests, benches and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Portable scalar reference.
    Scalar,
    /// x86_64 SSE2 (always present on x86_64).
    Sse2,
    /// x86_64 AVX2.
    Avx2,
    /// x86_64 AVX-512 (F + BW).
    Avx512,
    /// aarch64 NEON.
    Neon,
}

impl Kernel {
    /// Every family, in order of preference from worst to best.
    const ALL: [Kernel; 5] = [
        Kernel::Scalar,
        Kernel::Sse2,
        Kernel::Neon,
        Kernel::Avx2,
        Kernel::Avx512,
    ];

    /// The lower-case name used by `FRAME_SIMD_KERNEL`, benches and logs.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
            Kernel::Sse2 => "sse2",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512 => "avx512",
            Kernel::Neon => "neon",
        }
    }

    /// The family called `name` (as [`Kernel::name`] spells it).
    pub fn from_name(name: &str) -> Option<Kernel> {
        Kernel::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Unmask in place with a key already rotated so that `buf[0]` pairs with `key[0]`.
///
/// # Safety
/// The CPU must support the target features of the function behind the pointer; the table built
/// by [`Kernels::with`] guarantees it. Any slice is accepted.
pub(crate) type UnmaskFn = unsafe fn(buf: &mut [u8], key: [u8; 4]);

/// Validate complete UTF-8 (no code point may be cut at either end); `Err` holds the length of
/// the longest valid prefix, as `std::str::Utf8Error::valid_up_to` reports it.
///
/// # Safety
/// As for [`UnmaskFn`]: the CPU must support the function's target features.
pub(crate) type Utf8Fn = unsafe fn(bytes: &[u8]) -> Result<(), usize>;

/// Unmask all of `buf` (key as for [`UnmaskFn`]) and validate `buf[..valid_len]` as for
/// [`Utf8Fn`]. The whole buffer is unmasked whatever the verdict.
///
/// # Safety
/// As for [`UnmaskFn`]. Callers pass `valid_len <= buf.len()`.
pub(crate) type FusedFn =
    unsafe fn(buf: &mut [u8], key: [u8; 4], valid_len: usize) -> Result<(), usize>;

/// The chosen kernels (function pointers), cheap to copy into every shard.
#[derive(Clone, Copy, Debug)]
pub struct Kernels {
    kernel: Kernel,
    pub(crate) unmask: UnmaskFn,
    pub(crate) utf8: Utf8Fn,
    pub(crate) fused: FusedFn,
}

static DETECTED: OnceLock<Kernels> = OnceLock::new();

impl Kernels {
    /// The best kernels this CPU runs; detection happens once per process.
    ///
    /// The environment variable `FRAME_SIMD_KERNEL` (`scalar`, `sse2`, `avx2`, `avx512`, `neon`)
    /// forces a family; an unknown or unavailable value falls back to the best one, with a note
    /// on stderr.
    pub fn detect() -> Kernels {
        *DETECTED.get_or_init(|| {
            let best = Kernels::best();
            let Ok(wanted) = std::env::var("FRAME_SIMD_KERNEL") else {
                return best;
            };
            match Kernel::from_name(wanted.trim()).and_then(Kernels::with) {
                Some(k) => k,
                None => {
                    eprintln!(
                        "frame-simd: FRAME_SIMD_KERNEL={wanted:?} is unknown or not supported by \
                         this CPU; using {}",
                        best.kernel.name()
                    );
                    best
                }
            }
        })
    }

    /// The kernels of one family, or `None` if this CPU cannot run them.
    pub fn with(kernel: Kernel) -> Option<Kernels> {
        table(kernel)
    }

    /// Which family this table holds.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Every family this CPU can run, scalar first (for tests and benches).
    pub fn available() -> Vec<Kernel> {
        Kernel::ALL
            .into_iter()
            .filter(|&k| table(k).is_some())
            .collect()
    }

    fn best() -> Kernels {
        Kernel::ALL
            .into_iter()
            .rev()
            .find_map(table)
            .unwrap_or(SCALAR)
    }
}

const SCALAR: Kernels = Kernels {
    kernel: Kernel::Scalar,
    unmask: mask::scalar::unmask,
    utf8: utf8::scalar::validate,
    fused: crate::fused::scalar,
};

/// The table of one family, if this CPU runs it (asks the CPU: called only to build a table).
fn table(kernel: Kernel) -> Option<Kernels> {
    match kernel {
        Kernel::Scalar => Some(SCALAR),
        #[cfg(target_arch = "x86_64")]
        Kernel::Sse2 if std::is_x86_feature_detected!("sse2") => Some(Kernels {
            kernel,
            unmask: mask::sse2::unmask,
            utf8: utf8::scalar::validate,
            fused: crate::fused::sse2,
        }),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 if std::is_x86_feature_detected!("avx2") => Some(Kernels {
            kernel,
            unmask: mask::avx2::unmask,
            utf8: utf8::avx2::validate,
            fused: utf8::avx2::unmask_validate,
        }),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512
            if std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw") =>
        {
            Some(Kernels {
                kernel,
                unmask: mask::avx512::unmask,
                utf8: utf8::avx512::validate,
                fused: utf8::avx512::unmask_validate,
            })
        }
        #[cfg(target_arch = "aarch64")]
        Kernel::Neon if std::arch::is_aarch64_feature_detected!("neon") => Some(Kernels {
            kernel,
            unmask: mask::neon::unmask,
            utf8: utf8::neon::validate,
            fused: utf8::neon::unmask_validate,
        }),
        _ => None,
    }
}
