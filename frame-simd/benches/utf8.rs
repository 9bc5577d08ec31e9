//! UTF-8 validation throughput for every available kernel beside `std::str::from_utf8` and the
//! `simdutf8` crate (basic and compat), on ASCII, mixed Latin/CJK and emoji-heavy text.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use frame_simd::{utf8, Kernels};

mod common;
use common::{text, Script};

const SIZES: [usize; 2] = [1024, 64 * 1024];

fn validate(c: &mut Criterion) {
    for script in [Script::Ascii, Script::LatinCjk, Script::Emoji] {
        let mut group = c.benchmark_group(format!("utf8/{}", script.name()));
        for size in SIZES {
            let input = text(script, size);
            group.throughput(Throughput::Bytes(input.len() as u64));
            group.bench_with_input(BenchmarkId::new("std", size), &input, |b, t| {
                b.iter(|| std::str::from_utf8(black_box(t)).is_ok())
            });
            group.bench_with_input(BenchmarkId::new("simdutf8-basic", size), &input, |b, t| {
                b.iter(|| simdutf8::basic::from_utf8(black_box(t)).is_ok())
            });
            group.bench_with_input(BenchmarkId::new("simdutf8-compat", size), &input, |b, t| {
                b.iter(|| simdutf8::compat::from_utf8(black_box(t)).is_ok())
            });
            for kernel in Kernels::available() {
                let k = Kernels::with(kernel).expect("listed as available");
                group.bench_with_input(BenchmarkId::new(kernel.name(), size), &input, |b, t| {
                    b.iter(|| utf8::validate(&k, black_box(t)).is_ok())
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, validate);
criterion_main!(benches);
