//! The streaming validator against `std::str::from_utf8` for every kernel: random valid text of
//! every script, corrupted text (byte flips, insertions, truncation), a seed table of edge cases
//! placed across the 32- and 64-byte block edges, fed whole, in fixed chunk sizes and in random
//! chunkings. Same verdict, same offset, and an error is reported by the `feed` of the chunk that
//! holds the first impossible byte: not before, not after.

use frame_simd::{utf8, Kernel, Kernels, Utf8Error, Validator};
use proptest::prelude::*;

fn kernels() -> Vec<Kernels> {
    Kernels::available()
        .into_iter()
        .map(|k| Kernels::with(k).expect("an available kernel can be forced"))
        .collect()
}

/// What `std` says: `Ok`, or the offset and, if some byte makes the input impossible (not merely
/// truncated), the index of that byte.
fn oracle(bytes: &[u8]) -> Result<(), (u64, Option<usize>)> {
    match std::str::from_utf8(bytes) {
        Ok(_) => Ok(()),
        Err(e) => {
            let v = e.valid_up_to();
            let bad = e.error_len().map(|_| {
                (v..bytes.len())
                    .find(|&i| {
                        std::str::from_utf8(&bytes[v..=i])
                            .err()
                            .is_some_and(|e| e.error_len().is_some())
                    })
                    .expect("std found an invalid sequence")
            });
            Err((v as u64, bad))
        }
    }
}

/// Feed `bytes` split at `cuts` (sorted, from 0 to len) and check against the oracle.
fn check_stream(k: &Kernels, bytes: &[u8], cuts: &[usize]) {
    let expected = oracle(bytes);
    let mut v = Validator::new();
    for w in cuts.windows(2) {
        let (lo, hi) = (w[0], w[1]);
        match v.feed(k, &bytes[lo..hi]) {
            Ok(()) => {
                if let Err((_, Some(bad))) = expected {
                    assert!(
                        bad >= hi,
                        "{:?}: byte {bad} is impossible but chunk {lo}..{hi} passed ({:02x?})",
                        k.kernel(),
                        &bytes[bad.saturating_sub(4)..(bad + 4).min(bytes.len())]
                    );
                }
            }
            Err(Utf8Error { offset }) => {
                let Err((want, bad)) = expected else {
                    panic!(
                        "{:?}: valid input rejected at {offset} in chunk {lo}..{hi}",
                        k.kernel()
                    );
                };
                assert_eq!(offset, want, "{:?}: offset in chunk {lo}..{hi}", k.kernel());
                let bad = bad.unwrap_or_else(|| {
                    panic!("{:?}: truncated input rejected before the end", k.kernel())
                });
                assert!(
                    (lo..hi).contains(&bad),
                    "{:?}: error at byte {bad} reported in chunk {lo}..{hi}",
                    k.kernel()
                );
                return;
            }
        }
    }
    match (v.finish(), expected) {
        (Ok(()), Ok(())) => {}
        (Err(Utf8Error { offset }), Err((want, None))) => assert_eq!(offset, want),
        (got, want) => panic!("{:?}: finish gave {got:?}, std {want:?}", k.kernel()),
    }
}

fn fixed_cuts(len: usize, size: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = (0..len).step_by(size).collect();
    cuts.push(len);
    if cuts[0] != 0 {
        cuts.insert(0, 0);
    }
    cuts
}

fn check_all_chunkings(bytes: &[u8]) {
    for k in kernels() {
        check_stream(&k, bytes, &[0, bytes.len()]);
        for size in [1, 2, 3, 7, 64, 4096] {
            check_stream(&k, bytes, &fixed_cuts(bytes.len(), size));
        }
        let whole = utf8::validate(&k, bytes).map_err(|e| e.offset);
        assert_eq!(whole, oracle(bytes).map_err(|(o, _)| o), "{:?}", k.kernel());
    }
}

/// Hand-written edge cases: each invalid class and each boundary code point.
fn seeds() -> Vec<Vec<u8>> {
    let mut s: Vec<Vec<u8>> = vec![
        // Boundary code points (valid).
        "\u{7F}".into(),
        "\u{80}".into(),
        "\u{7FF}".into(),
        "\u{800}".into(),
        "\u{D7FF}".into(),
        "\u{E000}".into(),
        "\u{FFFF}".into(),
        "\u{10000}".into(),
        "\u{10FFFF}".into(),
        // Lone continuation bytes and too many continuations.
        vec![0x80],
        vec![0xBF],
        vec![0xC3, 0xA9, 0xA9],
        vec![0xE2, 0x82, 0xAC, 0x80],
        vec![0xF0, 0x9F, 0x98, 0x80, 0x80],
        // Too short: a lead byte followed by ASCII or another lead byte.
        vec![0xC3, b'a'],
        vec![0xE2, 0x82, b'a'],
        vec![0xF0, 0x9F, 0x98, b'a'],
        vec![0xC3, 0xC3, 0xA9],
        vec![0xE2, 0xE2, 0x82, 0xAC],
        // Overlong forms.
        vec![0xC0, 0x80],
        vec![0xC1, 0xBF],
        vec![0xE0, 0x80, 0x80],
        vec![0xE0, 0x9F, 0xBF],
        vec![0xF0, 0x80, 0x80, 0x80],
        vec![0xF0, 0x8F, 0xBF, 0xBF],
        // Surrogates.
        vec![0xED, 0xA0, 0x80],
        vec![0xED, 0xBF, 0xBF],
        vec![0xED, 0x9F, 0xBF],
        // Above U+10FFFF and bytes that never occur.
        vec![0xF4, 0x90, 0x80, 0x80],
        vec![0xF4, 0x8F, 0xBF, 0xBF],
        vec![0xF5, 0x80, 0x80, 0x80],
        vec![0xF7, 0xBF, 0xBF, 0xBF],
        vec![0xF8, 0x88, 0x80, 0x80, 0x80],
        vec![0xFF],
        vec![0xFE],
        vec![0xC0],
        vec![0xC1],
        vec![0xF5],
        // Truncated sequences (valid prefixes).
        vec![0xC3],
        vec![0xE2],
        vec![0xE2, 0x82],
        vec![0xF0],
        vec![0xF0, 0x9F],
        vec![0xF0, 0x9F, 0x98],
        vec![0xF4, 0x8F, 0xBF],
        // Invalid prefixes at the end.
        vec![0xE0, 0x80],
        vec![0xED, 0xA0],
        vec![0xF0, 0x80],
        vec![0xF4, 0x90],
    ];
    // Each case followed by text, so errors are also seen mid-stream.
    let with_text: Vec<Vec<u8>> = s
        .iter()
        .map(|c| [c.as_slice(), "é中😀 ok".as_bytes()].concat())
        .collect();
    s.extend(with_text);
    s
}

#[test]
fn seed_table_across_block_edges() {
    let fill = "abcdefghijklmnopqrstuvwxyz0123456789".repeat(8);
    let prefixes = [
        0, 1, 2, 3, 28, 29, 30, 31, 32, 33, 60, 61, 62, 63, 64, 65, 93, 94, 95, 96, 97, 125, 126,
        127, 128, 129,
    ];
    for case in seeds() {
        for &p in &prefixes {
            for suffix in [0, 1, 40] {
                let bytes = [&fill.as_bytes()[..p], &case, &fill.as_bytes()[..suffix]].concat();
                check_all_chunkings(&bytes);
            }
        }
    }
}

#[test]
fn seed_table_after_multibyte_text() {
    // The same cases after non-ASCII text, so the SIMD path (not the ASCII skip) sees them.
    let lead = "é中😀aé".repeat(20);
    for case in seeds() {
        for p in [0, 1, 2, 3, 5, 9, 13, 17] {
            let bytes = [&lead.as_bytes()[p..], &case].concat();
            check_all_chunkings(&bytes);
        }
    }
}

#[test]
fn every_byte_pair_with_every_completion() {
    // Every pair of bytes, then 0, 1 or 2 continuation bytes or ASCII: each bad-pair rule must
    // catch its pairs on its own (another rule firing later would hide a gap behind the exact
    // scalar search).
    let mut bytes = Vec::new();
    let ks = kernels();
    for a in 0..=255u8 {
        for b in 0..=255u8 {
            for end in [&b""[..], b"\x80", b"\x80\x80", b"x"] {
                // The pair's second byte lands on a 16-byte lane edge, a vector edge or a group
                // edge, by turns (the tables are the same in every lane; the edges differ).
                let at = [16, 32, 48, 64, 80, 96, 112, 128, 1, 17][usize::from(a ^ b) % 10];
                bytes.clear();
                bytes.extend(std::iter::repeat_n(b'.', at - 1));
                bytes.extend_from_slice(&[a, b]);
                bytes.extend_from_slice(end);
                let expected = oracle(&bytes).map_err(|(o, _)| o);
                for k in &ks {
                    let got = utf8::validate(k, &bytes).map_err(|e| e.offset);
                    assert_eq!(got, expected, "{:?} {a:02x} {b:02x} {end:02x?}", k.kernel());
                }
            }
        }
    }
}

#[test]
fn large_text_in_every_chunk_size() {
    let big = "ascii text, Latin café, 中文字符, emoji 😀🎉 ".repeat(3000);
    let mut corrupt = big.clone().into_bytes();
    corrupt[70_001] = 0xFF;
    for k in kernels() {
        for size in [1, 7, 4096, 65_536] {
            check_stream(&k, big.as_bytes(), &fixed_cuts(big.len(), size));
            check_stream(&k, &corrupt, &fixed_cuts(corrupt.len(), size));
        }
    }
}

fn script() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => proptest::char::range('\u{20}', '\u{7E}'),
        1 => proptest::char::range('\u{80}', '\u{7FF}'),
        1 => proptest::char::range('\u{4E00}', '\u{9FFF}'),
        1 => proptest::char::range('\u{1F300}', '\u{1FAFF}'),
        1 => any::<char>(),
    ]
}

fn random_text() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(proptest::char::range('\u{0}', '\u{7F}'), 0..1500),
        proptest::collection::vec(script(), 0..1500),
        proptest::collection::vec(proptest::char::range('\u{1F300}', '\u{1FAFF}'), 0..400),
    ]
    .prop_map(|cs| cs.into_iter().collect::<String>().into_bytes())
}

#[derive(Clone, Debug)]
enum Damage {
    Flip(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Truncate(prop::sample::Index),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Damage::Flip(i, b)),
        (any::<prop::sample::Index>(), 0x80u8..=0xFF).prop_map(|(i, b)| Damage::Insert(i, b)),
        any::<prop::sample::Index>().prop_map(Damage::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, d: &Damage) {
    match *d {
        Damage::Flip(i, b) if !bytes.is_empty() => {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        Damage::Insert(i, b) => {
            let i = i.index(bytes.len() + 1);
            bytes.insert(i, b);
        }
        Damage::Truncate(i) => {
            let i = i.index(bytes.len() + 1);
            bytes.truncate(i);
        }
        Damage::Flip(..) => {}
    }
}

fn random_cuts(len: usize, picks: &[prop::sample::Index]) -> Vec<usize> {
    let mut cuts: Vec<usize> = picks.iter().map(|c| c.index(len + 1)).collect();
    cuts.push(0);
    cuts.push(len);
    cuts.sort_unstable();
    cuts
}

proptest! {
    #[test]
    fn valid_text_in_random_chunkings(
        bytes in random_text(),
        picks in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let cuts = random_cuts(bytes.len(), &picks);
        for k in kernels() {
            check_stream(&k, &bytes, &cuts);
        }
    }

    #[test]
    fn corrupted_text_in_random_chunkings(
        mut bytes in random_text(),
        damages in proptest::collection::vec(damage(), 1..4),
        picks in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        for d in &damages {
            apply(&mut bytes, d);
        }
        let cuts = random_cuts(bytes.len(), &picks);
        for k in kernels() {
            check_stream(&k, &bytes, &cuts);
        }
    }

    #[test]
    fn corrupted_text_in_fixed_chunk_sizes(
        mut bytes in random_text(),
        d in damage(),
        size in prop::sample::select(vec![1usize, 2, 3, 7, 64, 4096]),
    ) {
        apply(&mut bytes, &d);
        for k in kernels() {
            check_stream(&k, &bytes, &fixed_cuts(bytes.len(), size));
        }
    }

    #[test]
    fn random_bytes_agree_with_std(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        picks in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let cuts = random_cuts(bytes.len(), &picks);
        for k in kernels() {
            check_stream(&k, &bytes, &cuts);
        }
    }
}

#[test]
fn validator_state_is_small() {
    assert!(std::mem::size_of::<Validator>() <= 16);
}

#[test]
fn finish_resets_after_a_truncated_message() {
    let k = Kernels::with(Kernel::Scalar).unwrap();
    let mut v = Validator::new();
    v.feed(&k, b"ab\xE2\x82").unwrap();
    assert_eq!(v.finish(), Err(Utf8Error { offset: 2 }));
    v.feed(&k, b"\xE2\x82\xAC").unwrap();
    assert_eq!(v.finish(), Ok(()));
}
