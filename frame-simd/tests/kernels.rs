//! Every kernel against the scalar reference: the kernel table (forcing each family), unmask over
//! every length 0..=4096 and a few large ones, every alignment, key and phase, split reads with the
//! phase carried, bytes around the slice untouched; and the fused pass against unmask + feed.

use frame_simd::{fused, mask, Kernel, Kernels, MaskKey, Utf8Error, Validator};
use proptest::prelude::*;

fn kernels() -> Vec<Kernels> {
    Kernels::available()
        .into_iter()
        .map(|k| Kernels::with(k).expect("an available kernel can be forced"))
        .collect()
}

fn scalar() -> Kernels {
    Kernels::with(Kernel::Scalar).expect("scalar always runs")
}

/// The specification, written out again independently of `mask::scalar`.
fn reference_unmask(buf: &mut [u8], key: [u8; 4], phase: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(phase + i) % 4];
    }
}

/// Deterministic pseudo-random bytes (xorshift), so large cases need no proptest shrinking.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}

#[test]
fn every_available_kernel_can_be_forced_and_reports_its_family() {
    let available = Kernels::available();
    assert_eq!(available.first(), Some(&Kernel::Scalar));
    for &k in &available {
        let table = Kernels::with(k).unwrap_or_else(|| panic!("{k:?} is listed but not available"));
        assert_eq!(table.kernel(), k);
        assert_eq!(Kernel::from_name(k.name()), Some(k));
    }
    assert!(available.contains(&Kernels::detect().kernel()));
    #[cfg(target_arch = "x86_64")]
    {
        assert!(available.contains(&Kernel::Sse2));
        assert!(Kernels::with(Kernel::Neon).is_none());
        assert_eq!(
            available.contains(&Kernel::Avx2),
            std::is_x86_feature_detected!("avx2")
        );
        assert_eq!(
            available.contains(&Kernel::Avx512),
            std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw")
        );
    }
    #[cfg(target_arch = "aarch64")]
    assert!(available.contains(&Kernel::Neon));
}

#[test]
fn detect_honours_frame_simd_kernel() {
    match std::env::var("FRAME_SIMD_KERNEL") {
        Ok(name) => match Kernel::from_name(&name) {
            Some(k) if Kernels::available().contains(&k) => {
                assert_eq!(Kernels::detect().kernel(), k)
            }
            _ => assert_eq!(
                Some(&Kernels::detect().kernel()),
                Kernels::available().last()
            ),
        },
        Err(_) => assert_eq!(
            Some(&Kernels::detect().kernel()),
            Kernels::available().last()
        ),
    }
}

/// Unmask `len` bytes at `offset` into a padded buffer with every kernel; compare with the
/// reference and check the padding.
fn check_unmask(len: usize, offset: usize, key: [u8; 4], phase: usize, seed: u64) {
    let original = noise(offset + len + 64, seed);
    let mut expected = original.clone();
    reference_unmask(&mut expected[offset..offset + len], key, phase);
    for k in kernels() {
        let mut buf = original.clone();
        mask::unmask(&k, &mut buf[offset..offset + len], MaskKey(key), phase);
        assert!(
            buf == expected,
            "{:?} differs: len {len} offset {offset} key {key:02x?} phase {phase}",
            k.kernel()
        );
    }
}

#[test]
fn unmask_every_length_up_to_4096_matches_reference() {
    for len in 0..=4096 {
        check_unmask(len, len % 64, [0x37, 0xfa, 0x21, 0x3d], len % 7, len as u64);
    }
}

#[test]
fn unmask_every_alignment_and_phase_matches_reference() {
    for offset in 0..64 {
        for phase in 0..4 {
            for len in [1, 15, 16, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 300] {
                check_unmask(
                    len,
                    offset,
                    [1, 2, 4, 8],
                    phase,
                    (offset * 4 + phase) as u64,
                );
            }
        }
    }
}

#[test]
fn unmask_large_buffers_match_reference() {
    for len in [65_537, (1 << 20) + 3] {
        for offset in [0, 1, 7, 13, 31, 32, 45, 63] {
            check_unmask(len, offset, [0xde, 0xad, 0xbe, 0xef], 3, len as u64);
        }
    }
}

proptest! {
    #[test]
    fn unmask_matches_reference(
        len in 0usize..=4096,
        offset in 0usize..64,
        key: [u8; 4],
        phase in 0usize..1000,
        seed: u64,
    ) {
        check_unmask(len, offset, key, phase, seed);
    }

    #[test]
    fn unmask_in_pieces_with_the_phase_carried_matches_whole(
        data in proptest::collection::vec(any::<u8>(), 0..3000),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        key: [u8; 4],
    ) {
        let mut expected = data.clone();
        reference_unmask(&mut expected, key, 0);
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
        cuts.push(0);
        cuts.push(data.len());
        cuts.sort_unstable();
        for k in kernels() {
            let mut buf = data.clone();
            for w in cuts.windows(2) {
                mask::unmask(&k, &mut buf[w[0]..w[1]], MaskKey(key), w[0]);
            }
            prop_assert_eq!(&buf, &expected, "{:?}", k.kernel());
        }
    }
}

/// Text of every class: ASCII, Latin, CJK, emoji, with invalid bytes sprinkled in when `dirty`.
fn text(len: usize, seed: u64, dirty: bool) -> Vec<u8> {
    let pick = noise(len, seed);
    let mut s = Vec::with_capacity(len * 4);
    for (i, &r) in pick.iter().enumerate() {
        let c = match r % 5 {
            0 | 1 => char::from(b' ' + r % 90),
            2 => char::from_u32(0xC0 + u32::from(r)).unwrap_or('é'),
            3 => char::from_u32(0x4E00 + u32::from(r) * 37).unwrap_or('中'),
            _ => char::from_u32(0x1F300 + u32::from(r)).unwrap_or('😀'),
        };
        let mut b = [0; 4];
        s.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
        if dirty && i % 97 == 13 {
            s.push(r | 0x80);
        }
    }
    s
}

/// Run the fused pass and the separate pair (scalar unmask, then `feed` with the same kernels)
/// over the same chunks; verdicts and bytes must agree step by step.
fn check_fused(k: &Kernels, masked: &[u8], key: [u8; 4], cuts: &[usize]) {
    let sk = scalar();
    let mut a = masked.to_vec();
    let mut b = masked.to_vec();
    let mut va = Validator::new();
    let mut vb = Validator::new();
    for w in cuts.windows(2) {
        let (lo, hi) = (w[0], w[1]);
        let ra = fused::unmask_validate(k, &mut a[lo..hi], MaskKey(key), lo, &mut va);
        mask::unmask(&sk, &mut b[lo..hi], MaskKey(key), lo);
        let rb = vb.feed(k, &b[lo..hi]);
        assert_eq!(ra, rb, "{:?} verdict at chunk {lo}..{hi}", k.kernel());
        assert!(
            a[lo..hi] == b[lo..hi],
            "{:?} bytes at chunk {lo}..{hi}",
            k.kernel()
        );
        if ra.is_err() {
            return;
        }
    }
    let fa: Result<(), Utf8Error> = va.finish();
    assert_eq!(fa, vb.finish());
}

#[test]
fn fused_matches_separate_on_fixed_chunkings() {
    let key = [0x37, 0xfa, 0x21, 0x3d];
    for (seed, dirty) in [(1, false), (2, true), (3, false), (4, true)] {
        let plain = text(3000, seed, dirty);
        let mut masked = plain.clone();
        reference_unmask(&mut masked, key, 0);
        for size in [1, 2, 3, 7, 64, 4096] {
            let mut cuts: Vec<usize> = (0..plain.len()).step_by(size).collect();
            cuts.push(plain.len());
            for k in kernels() {
                check_fused(&k, &masked, key, &cuts);
            }
        }
    }
}

proptest! {
    #[test]
    fn fused_matches_separate(
        len in 0usize..2000,
        seed: u64,
        dirty: bool,
        flip in any::<Option<(prop::sample::Index, u8)>>(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        key: [u8; 4],
    ) {
        let mut plain = text(len, seed, dirty);
        if let Some((at, byte)) = flip {
            if !plain.is_empty() {
                let i = at.index(plain.len());
                plain[i] = byte;
            }
        }
        let mut masked = plain.clone();
        reference_unmask(&mut masked, key, 0);
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(plain.len() + 1)).collect();
        cuts.push(0);
        cuts.push(plain.len());
        cuts.sort_unstable();
        for k in kernels() {
            check_fused(&k, &masked, key, &cuts);
        }
    }
}

#[test]
fn fused_matches_separate_on_long_chunks_at_every_alignment() {
    // Long chunks take the aligned path of the fused kernels: every start offset in a vector.
    let key = [0x9a, 0x0b, 0xcd, 0x3e];
    for (seed, dirty) in [(5, false), (6, true)] {
        let plain = text(4000, seed, dirty);
        let mut masked = plain.clone();
        reference_unmask(&mut masked, key, 0);
        for offset in 0..64 {
            let cuts = [0, offset, plain.len()];
            for k in kernels() {
                check_fused(&k, &masked, key, &cuts);
            }
        }
    }
}

#[test]
fn fused_matches_separate_around_group_edges() {
    // A code point cut short, or an invalid one, at every position of the first groups, followed
    // by a long ASCII run (the fused loop skips ASCII groups in pairs), and a valid one for
    // contrast.
    let key = [0x11, 0x22, 0x33, 0x44];
    let cases: [&[u8]; 8] = [
        b"\xC3",
        b"\xE2\x82",
        b"\xF0\x9F\x98",
        b"\xE0\x80",
        b"\xED\xA0\x80",
        b"\xC0\xAF",
        b"\x80",
        "é中😀".as_bytes(),
    ];
    for case in cases {
        for p in 0..=140 {
            let plain = [&vec![b'a'; p][..], case, &[b'b'; 300][..]].concat();
            let mut masked = plain.clone();
            reference_unmask(&mut masked, key, 0);
            for k in kernels() {
                check_fused(&k, &masked, key, &[0, plain.len()]);
                check_fused(&k, &masked, key, &[0, p + 1, plain.len()]);
            }
        }
    }
}
