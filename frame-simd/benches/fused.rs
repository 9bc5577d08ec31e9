//! The fused unmask + validate pass for every available kernel beside the two-pass pipeline a
//! server would otherwise run: our best unmask, then `simdutf8` (basic). Each iteration gets a
//! fresh masked copy of the payload (the copy is not timed).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use frame_simd::{fused, mask, Kernels, MaskKey, Validator};

mod common;
use common::{text, Script};

const SIZES: [usize; 4] = [125, 1024, 16 * 1024, 1024 * 1024];
const KEY: MaskKey = MaskKey([0x37, 0xfa, 0x21, 0x3d]);

fn batch(size: usize) -> BatchSize {
    if size >= 1024 * 1024 {
        BatchSize::LargeInput
    } else {
        BatchSize::SmallInput
    }
}

fn fused_pass(c: &mut Criterion) {
    let best = Kernels::detect();
    for script in [Script::Ascii, Script::LatinCjk] {
        let mut group = c.benchmark_group(format!("fused/{}", script.name()));
        for size in SIZES {
            let mut masked = text(script, size);
            mask::unmask(&best, &mut masked, KEY, 0);
            group.throughput(Throughput::Bytes(masked.len() as u64));
            group.bench_with_input(
                BenchmarkId::new("unmask+simdutf8", size),
                &masked,
                |b, m| {
                    b.iter_batched_ref(
                        || m.clone(),
                        |buf| {
                            mask::unmask(&best, buf, KEY, 0);
                            simdutf8::basic::from_utf8(black_box(buf)).is_ok()
                        },
                        batch(size),
                    )
                },
            );
            group.bench_with_input(BenchmarkId::new("unmask+feed", size), &masked, |b, m| {
                b.iter_batched_ref(
                    || m.clone(),
                    |buf| {
                        mask::unmask(&best, buf, KEY, 0);
                        let mut v = Validator::new();
                        v.feed(&best, black_box(buf)).is_ok()
                    },
                    batch(size),
                )
            });
            for kernel in Kernels::available() {
                let k = Kernels::with(kernel).expect("listed as available");
                group.bench_with_input(BenchmarkId::new(kernel.name(), size), &masked, |b, m| {
                    b.iter_batched_ref(
                        || m.clone(),
                        |buf| {
                            let mut v = Validator::new();
                            fused::unmask_validate(&k, black_box(buf), KEY, 0, &mut v).is_ok()
                        },
                        batch(size),
                    )
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, fused_pass);
criterion_main!(benches);
