//! Kernel selection: CPU features are detected once per process into a small `Copy` table of
//! function pointers; shards copy it at start, and the per-frame path never asks the CPU again.
//! Tests and benches force a kernel with [`Kernels::with`], which says when the CPU lacks it.

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

/// The chosen kernels (function pointers), cheap to copy into every shard.
#[derive(Clone, Copy, Debug)]
pub struct Kernels {
    kernel: Kernel,
}

impl Kernels {
    /// The best kernels this CPU runs; detection happens once per process.
    pub fn detect() -> Kernels {
        todo!()
    }

    /// The kernels of one family, or `None` if this CPU cannot run them.
    pub fn with(kernel: Kernel) -> Option<Kernels> {
        let _ = kernel;
        todo!()
    }

    /// Which family this table holds.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Every family this CPU can run, scalar first (for tests and benches).
    pub fn available() -> Vec<Kernel> {
        todo!()
    }
}
