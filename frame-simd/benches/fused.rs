//! The fused unmask + validate pass for every available kernel beside the two-pass pipeline a
//! server would otherwise run: our best unmask, then `simdutf8` (basic); and beside our own two
//! passes (unmask, then `Validator::feed`).
//!
//! Unmasking works in place, so every timed call needs a freshly masked payload: the bench lays
//! out up to 64 KiB of masked copies, times one call on each, and refills them untimed.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use frame_simd::{fused, mask, Kernels, MaskKey, Validator};

mod common;
use common::{text, Script};

const SIZES: [usize; 4] = [125, 1024, 16 * 1024, 1024 * 1024];
const KEY: MaskKey = MaskKey([0x37, 0xfa, 0x21, 0x3d]);
const SLAB: usize = 64 * 1024;

/// Time `op` once per iteration, each time on a fresh copy of `masked`.
fn timed(
    iters: u64,
    masked: &[u8],
    slab: &mut [u8],
    op: &mut impl FnMut(&mut [u8]) -> bool,
) -> Duration {
    let size = masked.len();
    let per_slab = (slab.len() / size).max(1) as u64;
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = per_slab.min(iters - done);
        let copies = &mut slab[..n as usize * size];
        for copy in copies.chunks_exact_mut(size) {
            copy.copy_from_slice(masked);
        }
        let start = Instant::now();
        for copy in copies.chunks_exact_mut(size) {
            black_box(op(black_box(copy)));
        }
        total += start.elapsed();
        done += n;
    }
    total
}

fn fused_pass(c: &mut Criterion) {
    let best = Kernels::detect();
    for script in [Script::Ascii, Script::LatinCjk] {
        let mut group = c.benchmark_group(format!("fused/{}", script.name()));
        for size in SIZES {
            let mut masked = text(script, size);
            mask::unmask(&best, &mut masked, KEY, 0);
            let mut slab = vec![0u8; SLAB.max(masked.len())];
            group.throughput(Throughput::Bytes(masked.len() as u64));
            group.bench_function(BenchmarkId::new("unmask+simdutf8", size), |b| {
                b.iter_custom(|iters| {
                    timed(iters, &masked, &mut slab, &mut |buf| {
                        mask::unmask(&best, buf, KEY, 0);
                        simdutf8::basic::from_utf8(buf).is_ok()
                    })
                })
            });
            group.bench_function(BenchmarkId::new("unmask+feed", size), |b| {
                b.iter_custom(|iters| {
                    timed(iters, &masked, &mut slab, &mut |buf| {
                        mask::unmask(&best, buf, KEY, 0);
                        Validator::new().feed(&best, buf).is_ok()
                    })
                })
            });
            for kernel in Kernels::available() {
                let k = Kernels::with(kernel).expect("listed as available");
                group.bench_function(BenchmarkId::new(kernel.name(), size), |b| {
                    b.iter_custom(|iters| {
                        timed(iters, &masked, &mut slab, &mut |buf| {
                            let mut v = Validator::new();
                            fused::unmask_validate(&k, buf, KEY, 0, &mut v).is_ok()
                        })
                    })
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, fused_pass);
criterion_main!(benches);
