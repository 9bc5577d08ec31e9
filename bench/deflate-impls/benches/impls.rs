//! zlib-ng, zlib-rs and libdeflate on permessage-deflate's work, side by side in one run: one
//! chat delivery (200 B and 2 KiB of JSON) compressed on its own (no context takeover: state
//! reset per message, as the gateway compresses a broadcast once), and inflated back.
//!
//! - `zlib_ng_l1` / `zlib_ng_l6`: zlib-ng through flate2, reset + one sync-flush call.
//! - `zlib_rs_l1` / `zlib_rs_l6`: zlib-rs through its own API, the same calls (what flate2 on
//!   zlib-rs, the gateway's backend, does underneath).
//! - `libdeflate_l1` / `libdeflate_l6`: whole buffer in one call (the gateway's compressor).
//! - `copy`: the baseline.
//!
//! Inflate: every implementation inflates the same bytes (libdeflate level 1's output, what the
//! gateway sends): zlib-ng and zlib-rs streaming with a sync flush (how the gateway inflates,
//! so a message can be cut off at the limit), libdeflate whole-buffer into a buffer of the known
//! size. Compressed sizes are printed once per payload.
#![forbid(unsafe_code)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use zlib_rs::{DeflateFlush, InflateFlush};

#[path = "../../benches/payload/chat.rs"]
mod payload;
use payload::chat;

const LENGTHS: [usize; 2] = [200, 2048];

fn zlib_ng(z: &mut Compress, input: &[u8], out: &mut Vec<u8>) -> usize {
    z.reset();
    out.clear();
    z.compress_vec(input, out, FlushCompress::Sync).unwrap();
    out.len()
}

fn zlib_rs(z: &mut zlib_rs::Deflate, input: &[u8], out: &mut [u8]) -> usize {
    z.reset();
    z.compress(input, out, DeflateFlush::SyncFlush).unwrap();
    z.total_out() as usize
}

fn compress(c: &mut Criterion) {
    let mut g = c.benchmark_group("deflate-impls/compress");
    for len in LENGTHS {
        let msg = chat(len);
        g.throughput(Throughput::Bytes(len as u64));
        let mut out = Vec::with_capacity(len + 64);
        let mut rs_out = vec![0u8; len + 64];
        let mut ng1 = Compress::new(Compression::new(1), false);
        let mut ng6 = Compress::new(Compression::new(6), false);
        let mut rs1 = zlib_rs::Deflate::new(1, false, 15);
        let mut rs6 = zlib_rs::Deflate::new(6, false, 15);
        let mut ld1 = libdeflater::Compressor::new(libdeflater::CompressionLvl::new(1).unwrap());
        let mut ld6 = libdeflater::Compressor::new(libdeflater::CompressionLvl::new(6).unwrap());
        let mut ld_out = vec![0u8; ld1.deflate_compress_bound(len)];

        eprintln!(
            "{len} B compressed: zlib-ng l1 {} B, l6 {} B; zlib-rs l1 {} B, l6 {} B; \
             libdeflate l1 {} B, l6 {} B",
            zlib_ng(&mut ng1, &msg, &mut out),
            zlib_ng(&mut ng6, &msg, &mut out),
            zlib_rs(&mut rs1, &msg, &mut rs_out),
            zlib_rs(&mut rs6, &msg, &mut rs_out),
            ld1.deflate_compress(&msg, &mut ld_out).unwrap(),
            ld6.deflate_compress(&msg, &mut ld_out).unwrap(),
        );

        g.bench_with_input(BenchmarkId::new("copy", len), &msg, |b, m| {
            b.iter(|| {
                out.clear();
                out.extend_from_slice(black_box(m));
            })
        });
        for (name, z) in [("zlib_ng_l1", &mut ng1), ("zlib_ng_l6", &mut ng6)] {
            g.bench_with_input(BenchmarkId::new(name, len), &msg, |b, m| {
                b.iter(|| zlib_ng(z, black_box(m), &mut out))
            });
        }
        for (name, z) in [("zlib_rs_l1", &mut rs1), ("zlib_rs_l6", &mut rs6)] {
            g.bench_with_input(BenchmarkId::new(name, len), &msg, |b, m| {
                b.iter(|| zlib_rs(z, black_box(m), &mut rs_out))
            });
        }
        for (name, z) in [("libdeflate_l1", &mut ld1), ("libdeflate_l6", &mut ld6)] {
            g.bench_with_input(BenchmarkId::new(name, len), &msg, |b, m| {
                b.iter(|| black_box(z.deflate_compress(black_box(m), &mut ld_out).unwrap()))
            });
        }
    }
    g.finish();
}

fn inflate(c: &mut Criterion) {
    let mut g = c.benchmark_group("deflate-impls/inflate");
    for len in LENGTHS {
        let msg = chat(len);
        g.throughput(Throughput::Bytes(len as u64));
        let mut ld = libdeflater::Compressor::new(libdeflater::CompressionLvl::new(1).unwrap());
        let mut packed = vec![0u8; ld.deflate_compress_bound(len)];
        let n = ld.deflate_compress(&msg, &mut packed).unwrap();
        packed.truncate(n);
        let mut ng = Decompress::new(false);
        let mut ng_out = Vec::with_capacity(len + 64);
        let mut rs = zlib_rs::Inflate::new(false, 15);
        let mut rs_out = vec![0u8; len + 64];
        let mut lz = libdeflater::Decompressor::new();
        let mut lz_out = vec![0u8; len];

        g.bench_with_input(BenchmarkId::new("zlib_ng", len), &packed, |b, p| {
            b.iter(|| {
                ng.reset(false);
                ng_out.clear();
                ng.decompress_vec(black_box(p), &mut ng_out, FlushDecompress::Sync)
                    .unwrap();
                assert_eq!(ng_out, msg);
            })
        });
        g.bench_with_input(BenchmarkId::new("zlib_rs", len), &packed, |b, p| {
            b.iter(|| {
                rs.reset(false);
                rs.decompress(black_box(p), &mut rs_out, InflateFlush::SyncFlush)
                    .unwrap();
                assert_eq!(&rs_out[..rs.total_out() as usize], &msg[..]);
            })
        });
        g.bench_with_input(BenchmarkId::new("libdeflate", len), &packed, |b, p| {
            b.iter(|| {
                let n = lz.deflate_decompress(black_box(p), &mut lz_out).unwrap();
                assert_eq!(&lz_out[..n], &msg[..]);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, compress, inflate);
criterion_main!(benches);
