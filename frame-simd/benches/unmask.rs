//! Unmask throughput for every available kernel beside the memory speed limit (a plain copy of
//! the same bytes) and the unmask of a widely used Rust WebSocket crate (fastwebsockets).
//! `scalar` is the reference kernel. The key goes through `black_box` for every contender: a
//! real key arrives with each frame, and a constant one lets the compiler specialise the loop.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use frame_simd::{mask, Kernels, MaskKey};

const SIZES: [usize; 5] = [16, 125, 1024, 16 * 1024, 1024 * 1024];
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn unmask(c: &mut Criterion) {
    let mut group = c.benchmark_group("unmask");
    for size in SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        let src = vec![0x5a_u8; size];
        let mut buf = src.clone();
        group.bench_with_input(BenchmarkId::new("copy", size), &size, |b, _| {
            b.iter(|| buf.copy_from_slice(black_box(&src)))
        });
        group.bench_with_input(BenchmarkId::new("fastwebsockets", size), &size, |b, _| {
            b.iter(|| fastwebsockets::unmask(black_box(&mut buf), black_box(KEY)))
        });
        for kernel in Kernels::available() {
            let k = Kernels::with(kernel).expect("listed as available");
            group.bench_with_input(BenchmarkId::new(kernel.name(), size), &size, |b, _| {
                b.iter(|| mask::unmask(&k, black_box(&mut buf), black_box(MaskKey(KEY)), 0))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, unmask);
criterion_main!(benches);
