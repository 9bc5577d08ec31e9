//! permessage-deflate candidates on chat-sized JSON (200 B and 2 KiB): one whole message
//! compressed without context takeover (a reset or fresh state per message, as a broadcast is
//! compressed once for everyone), and inflated back.
//!
//! - `zlib_rs_l1` / `zlib_rs_l6`: flate2 on the zlib-rs backend, sync flush, level 1 and 6.
//! - `gateway_deflater`: the gateway's own compressor (`conn::deflate::Deflater`, libdeflate
//!   level 1 plus the byte that ends a permessage-deflate message).
//! - `miniz_oxide_l1`: flate2's default (pure Rust) backend, called directly.
//! - `libdeflate_l1` / `libdeflate_l6`: libdeflate (C, whole-buffer only; its output ends
//!   with a final block, which a permessage-deflate sender must then follow with an empty
//!   stored block).
//! - `copy`: the baseline, copying the payload.
//!
//! Inflate: zlib-rs streaming (what a bounded, streaming inflate needs), miniz_oxide, and
//! libdeflate whole-buffer into a buffer of the known size.
//!
//! Fan-out (`deflate/fanout`): one broadcast to 200 deflate subscribers, compressed once and
//! shared against compressed for each subscriber, beside the uncompressed fan-out.
//!
//! The compressed sizes are printed once per payload so ratio and speed are read together.
//! zlib-ng is compared with zlib-rs and libdeflate in `bench/deflate-impls/` (its own crate:
//! flate2 has one backend per build, and the gateway's is zlib-rs).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use frame_simd::{encode_header, Opcode, MAX_HEADER_LEN};
use gateway::conn::deflate::{DeflateConfig, Deflater, Negotiated, Packed, SendDeflate};

#[path = "payload/chat.rs"]
mod payload;
use payload::chat;

fn zlib_rs(z: &mut Compress, input: &[u8], out: &mut Vec<u8>) {
    z.reset();
    out.clear();
    z.compress_vec(input, out, FlushCompress::Sync).unwrap();
}

fn compress(c: &mut Criterion) {
    let mut g = c.benchmark_group("deflate/compress");
    for len in [200, 2048] {
        let msg = chat(len);
        g.throughput(Throughput::Bytes(len as u64));
        let mut out = Vec::with_capacity(len + 64);
        let mut z1 = Compress::new(Compression::new(1), false);
        let mut z6 = Compress::new(Compression::new(6), false);
        let mut ld1 = libdeflater::Compressor::new(libdeflater::CompressionLvl::new(1).unwrap());
        let mut ld6 = libdeflater::Compressor::new(libdeflater::CompressionLvl::new(6).unwrap());
        let mut ld_out = vec![0u8; ld1.deflate_compress_bound(len)];
        let mut ours = Deflater::default();
        let mut mz = miniz_oxide::deflate::core::CompressorOxide::new(
            miniz_oxide::deflate::core::create_comp_flags_from_zip_params(1, -15, 0),
        );
        let mut mz_out = vec![0u8; len + 64];

        zlib_rs(&mut z1, &msg, &mut out);
        let l1 = out.len();
        zlib_rs(&mut z6, &msg, &mut out);
        let l6 = out.len();
        let ld = ld1.deflate_compress(&msg, &mut ld_out).unwrap();
        let ld6n = ld6.deflate_compress(&msg, &mut ld_out).unwrap();
        eprintln!(
            "{len} B: zlib-rs l1 {l1} B, l6 {l6} B; libdeflate l1 {ld} B (+1), l6 {ld6n} B (+1)"
        );

        g.bench_with_input(BenchmarkId::new("copy", len), &msg, |b, m| {
            b.iter(|| {
                out.clear();
                out.extend_from_slice(black_box(m));
            })
        });
        g.bench_with_input(BenchmarkId::new("zlib_rs_l1", len), &msg, |b, m| {
            b.iter(|| zlib_rs(&mut z1, black_box(m), &mut out))
        });
        g.bench_with_input(BenchmarkId::new("zlib_rs_l6", len), &msg, |b, m| {
            b.iter(|| zlib_rs(&mut z6, black_box(m), &mut out))
        });
        g.bench_with_input(BenchmarkId::new("gateway_deflater", len), &msg, |b, m| {
            b.iter(|| black_box(ours.compress(black_box(m)).map(<[u8]>::len)))
        });
        g.bench_with_input(BenchmarkId::new("miniz_oxide_l1", len), &msg, |b, m| {
            b.iter(|| {
                mz.reset();
                black_box(miniz_oxide::deflate::core::compress(
                    &mut mz,
                    black_box(m),
                    &mut mz_out,
                    miniz_oxide::deflate::core::TDEFLFlush::Sync,
                ))
            })
        });
        g.bench_with_input(BenchmarkId::new("libdeflate_l1", len), &msg, |b, m| {
            b.iter(|| black_box(ld1.deflate_compress(black_box(m), &mut ld_out).unwrap()))
        });
        g.bench_with_input(BenchmarkId::new("libdeflate_l6", len), &msg, |b, m| {
            b.iter(|| black_box(ld6.deflate_compress(black_box(m), &mut ld_out).unwrap()))
        });
    }
    g.finish();
}

fn inflate(c: &mut Criterion) {
    let mut g = c.benchmark_group("deflate/inflate");
    for len in [200, 2048] {
        let msg = chat(len);
        g.throughput(Throughput::Bytes(len as u64));
        let mut packed = Vec::with_capacity(len + 64);
        zlib_rs(
            &mut Compress::new(Compression::new(1), false),
            &msg,
            &mut packed,
        );
        let mut whole = Vec::new();
        let mut ld = libdeflater::Compressor::new(libdeflater::CompressionLvl::new(1).unwrap());
        whole.resize(ld.deflate_compress_bound(len), 0);
        let n = ld.deflate_compress(&msg, &mut whole).unwrap();
        whole.truncate(n);
        let mut out = Vec::with_capacity(len + 64);
        let mut z = Decompress::new(false);
        let mut mz =
            miniz_oxide::inflate::stream::InflateState::new_boxed(miniz_oxide::DataFormat::Raw);
        let mut mz_out = vec![0u8; len + 64];
        let mut lz = libdeflater::Decompressor::new();
        let mut lz_out = vec![0u8; len];

        g.bench_with_input(BenchmarkId::new("zlib_rs", len), &packed, |b, p| {
            b.iter(|| {
                z.reset(false);
                out.clear();
                z.decompress_vec(black_box(p), &mut out, FlushDecompress::Sync)
                    .unwrap();
                assert_eq!(out.len(), len);
            })
        });
        g.bench_with_input(BenchmarkId::new("miniz_oxide", len), &packed, |b, p| {
            b.iter(|| {
                mz.reset(miniz_oxide::DataFormat::Raw);
                let r = miniz_oxide::inflate::stream::inflate(
                    &mut mz,
                    black_box(p),
                    &mut mz_out,
                    miniz_oxide::MZFlush::Sync,
                );
                assert_eq!(r.bytes_written, len);
            })
        });
        g.bench_with_input(BenchmarkId::new("libdeflate", len), &whole, |b, p| {
            b.iter(|| {
                let n = lz.deflate_decompress(black_box(p), &mut lz_out).unwrap();
                assert_eq!(n, len);
            })
        });
    }
    g.finish();
}

/// Subscribers of one broadcast in the fan-out group.
const SUBSCRIBERS: usize = 200;

/// One broadcast to 200 subscribers that negotiated permessage-deflate: compressed once and
/// shared (`compress_once`, the gateway's `Packed`: no context takeover makes the bytes the same
/// for every peer), against compressing for each subscriber (`per_connection`, the least a
/// compressor per connection costs: one compression per delivery, before any window memory),
/// and the uncompressed fan-out (`plain`, one shared frame).
fn fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("deflate/fanout");
    let send = Some(SendDeflate::new(
        &Negotiated {
            server_max_window_bits: None,
            client_max_window_bits_offered: false,
        },
        &DeflateConfig::default(),
    ));
    for len in [200, 2048] {
        let msg = chat(len);
        let mut h = [0u8; MAX_HEADER_LEN];
        let n = encode_header(&mut h, true, Opcode::Text, len as u64, None);
        let frame: Arc<[u8]> = [&h[..n], &msg[..]].concat().into();
        g.throughput(Throughput::Elements(SUBSCRIBERS as u64));
        let mut ours = Deflater::default();
        let mut queues: Vec<Arc<[u8]>> = Vec::with_capacity(SUBSCRIBERS);

        g.bench_function(BenchmarkId::new("plain", len), |b| {
            b.iter(|| {
                queues.clear();
                for _ in 0..SUBSCRIBERS {
                    queues.push(Arc::clone(black_box(&frame)));
                }
            })
        });
        g.bench_function(BenchmarkId::new("compress_once", len), |b| {
            b.iter(|| {
                queues.clear();
                let mut packed = Packed::new(black_box(&frame));
                for _ in 0..SUBSCRIBERS {
                    queues.push(Arc::clone(packed.for_peer(send, &mut ours)));
                }
            })
        });
        g.bench_function(BenchmarkId::new("per_connection", len), |b| {
            b.iter(|| {
                queues.clear();
                for _ in 0..SUBSCRIBERS {
                    let mut packed = Packed::new(black_box(&frame));
                    queues.push(Arc::clone(packed.for_peer(send, &mut ours)));
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, compress, inflate, fanout);
criterion_main!(benches);
