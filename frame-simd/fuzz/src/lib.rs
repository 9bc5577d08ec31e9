//! The invariants the fuzz targets assert, one function per target. Each takes the raw fuzzer
//! input: its first bytes choose the parameters (chunk sizes, role, limit, key, phase) and the
//! rest is the data. A broken invariant panics, which libFuzzer reports as a crash.
//!
//! `frame-simd/tests/fuzz_replay.rs` compiles this same file and replays the committed inputs,
//! the seed corpus under `fuzz/seeds/<target>/` and the crash inputs under
//! `fuzz/regressions/<target>/`, so the plain test suite runs every check on them.

use std::ops::Range;

use frame_simd::fused::unmask_validate;
use frame_simd::mask::unmask as unmask_with;
use frame_simd::utf8::validate;
use frame_simd::{
    encode_header, parse_header, Header, Kernel, Kernels, MaskKey, ParseConfig, Parsed, Role,
    Utf8Error, Validator, MAX_HEADER_LEN,
};

pub mod differential;
pub mod seeds;

pub use differential::differential;

/// The fuzz targets, named as their files in `fuzz_targets/` and their folders of inputs.
pub const TARGETS: [&str; 5] = ["header", "utf8", "unmask", "fused", "differential"];

/// Run the check for `target` on `data`; false if there is no such target.
pub fn run(target: &str, data: &[u8]) -> bool {
    match target {
        "header" => header(data),
        "utf8" => utf8(data),
        "unmask" => unmask(data),
        "fused" => fused(data),
        "differential" => differential(data),
        _ => return false,
    }
    true
}

// ---------------------------------------------------------------------------------------------
// Reading parameters off the input.

/// The fuzzer input, consumed from the front; reads past the end give zeros.
struct Input<'a> {
    bytes: &'a [u8],
}

impl<'a> Input<'a> {
    fn new(bytes: &'a [u8]) -> Input<'a> {
        Input { bytes }
    }

    fn byte(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((&b, rest)) => {
                self.bytes = rest;
                b
            }
            None => 0,
        }
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0; N];
        for b in &mut a {
            *b = self.byte();
        }
        a
    }

    fn rest(self) -> &'a [u8] {
        self.bytes
    }
}

/// How a message is cut into reads: up to 8 chunk sizes, used in turn.
struct Chunking {
    sizes: [usize; 8],
    count: usize,
}

impl Chunking {
    /// Sizes from 1 to `small`, and from one byte in four a larger size (up to 64 times `small`)
    /// so that SIMD kernels see whole vectors and chunks that straddle them.
    fn read(input: &mut Input<'_>, small: usize) -> Chunking {
        let count = usize::from(input.byte() % 8) + 1;
        let mut sizes = [1; 8];
        for size in &mut sizes[..count] {
            let b = usize::from(input.byte());
            *size = if b >= 0xc0 {
                (b - 0xbf) * small
            } else {
                b % small + 1
            };
        }
        Chunking { sizes, count }
    }

    /// The end offsets of the chunks covering `len` bytes (none for an empty message).
    fn ends(&self, len: usize) -> Vec<usize> {
        let mut ends = Vec::new();
        let mut at = 0;
        while at < len {
            at = (at + self.sizes[ends.len() % self.count]).min(len);
            ends.push(at);
        }
        ends
    }
}

/// The chunk ranges for a list of end offsets.
fn ranges(ends: &[usize]) -> impl Iterator<Item = Range<usize>> + '_ {
    ends.iter()
        .scan(0, |start, &end| Some(std::mem::replace(start, end)..end))
}

fn kernels() -> impl Iterator<Item = (Kernel, Kernels)> {
    Kernels::available().into_iter().map(|kernel| {
        let k = Kernels::with(kernel).expect("an available kernel can be selected");
        assert_eq!(k.kernel(), kernel);
        (kernel, k)
    })
}

// ---------------------------------------------------------------------------------------------
// header

/// `parse_header` on a stream of frames read in random chunks, with a random role, set of
/// negotiated RSV bits and payload limit. Asserts:
/// - a header is 2 to 14 bytes, re-encodes to exactly the bytes it was parsed from, and obeys the
///   configuration (limit, RSV, mask rule, control frame rules);
/// - a prefix never gives a different header or error than all the bytes available;
/// - `Need(n)` never reaches past 14 header bytes, is exact (no answer changes before the `n`
///   bytes arrive, and a new answer comes once they have) and never overshoots the point where the
///   whole input decides.
pub fn header(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.byte();
    let role = if flags & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let rsv_allowed = match (flags >> 1) & 3 {
        0 => 0,
        1 => 0x40,
        2 => 0x70,
        _ => input.byte(),
    };
    let max_payload = match (flags >> 3) & 3 {
        0 => u64::MAX,
        1 => 125,
        2 => 1 << 20,
        _ => u64::from_le_bytes(input.array()),
    };
    let cfg = ParseConfig {
        role,
        rsv_allowed,
        max_payload,
    };
    let chunking = Chunking::read(&mut input, 16);
    let bytes = input.rest();

    header_prefixes(bytes, &cfg);

    // A connection reading a stream of frames: after every read, parse from the frame start.
    let mut at = 0;
    // The absolute offset the last `Need` promised an answer at.
    let mut promised: Option<usize> = None;
    for end in chunking.ends(bytes.len()) {
        while at <= end {
            let got = parse_header(&bytes[at..end], &cfg);
            let whole = parse_header(&bytes[at..], &cfg);
            match got {
                Ok(Parsed::Need(n)) => {
                    let total = end - at + n;
                    assert!(n >= 1 && total <= MAX_HEADER_LEN, "Need({n}) at {end}");
                    match promised {
                        Some(p) if end < p => assert_eq!(at + total, p, "promise changed"),
                        Some(p) => assert!(at + total > p, "no progress at the promise"),
                        None => {}
                    }
                    promised = Some(at + total);
                    match whole {
                        Ok(Parsed::Need(m)) => assert!(total <= bytes.len() - at + m),
                        Ok(Parsed::Header { len, .. }) => assert!(total <= len),
                        Err(_) => {}
                    }
                    break;
                }
                Ok(Parsed::Header { header, len }) => {
                    assert_eq!(got, whole, "a prefix disagrees with the whole");
                    assert!(
                        promised.is_none_or(|p| end >= p),
                        "answer before the promise"
                    );
                    check_header(&header, &bytes[at..at + len], &cfg);
                    promised = None;
                    // Skip the payload; stop once it runs past the input.
                    let next = u64::try_from(at + len)
                        .ok()
                        .and_then(|h| h.checked_add(header.payload_len))
                        .and_then(|n| usize::try_from(n).ok());
                    match next {
                        Some(next) if next <= bytes.len() => at = next,
                        _ => return,
                    }
                }
                Err(_) => {
                    assert_eq!(got, whole, "a prefix disagrees with the whole");
                    assert!(
                        promised.is_none_or(|p| end >= p),
                        "answer before the promise"
                    );
                    return;
                }
            }
        }
    }
}

/// Every prefix of the first frame: `Need` stays within 14 bytes and counts down exactly; any
/// other answer is the whole input's.
fn header_prefixes(bytes: &[u8], cfg: &ParseConfig) {
    let whole = parse_header(bytes, cfg);
    let mut promised: Option<usize> = None;
    for p in 0..=bytes.len().min(MAX_HEADER_LEN) {
        match parse_header(&bytes[..p], cfg) {
            Ok(Parsed::Need(n)) => {
                assert!(n >= 1 && p + n <= MAX_HEADER_LEN);
                if let Some(promise) = promised.filter(|&promise| p < promise) {
                    assert_eq!(p + n, promise);
                }
                promised = Some(p + n);
            }
            other => {
                assert_eq!(other, whole);
                assert!(promised.is_none_or(|promise| p == promise));
                if let Ok(Parsed::Header { header, len }) = other {
                    check_header(&header, &bytes[..len], cfg);
                }
                return;
            }
        }
    }
}

/// A parsed header obeys the configuration and re-encodes to its own bytes.
fn check_header(header: &Header, raw: &[u8], cfg: &ParseConfig) {
    let len = raw.len();
    assert!((2..=MAX_HEADER_LEN).contains(&len), "header of {len} bytes");
    assert!(header.payload_len <= cfg.max_payload);
    assert!(header.payload_len >> 63 == 0);
    assert_eq!(header.rsv & !0x70, 0);
    assert_eq!(header.rsv & !cfg.rsv_allowed, 0);
    assert_eq!(header.mask_key.is_some(), cfg.role == Role::Server);
    if header.opcode.is_control() {
        assert!(header.fin && header.payload_len <= 125);
    }
    let mut out = [0; MAX_HEADER_LEN];
    assert_eq!(header.encode(&mut out), len);
    assert_eq!(&out[..len], raw, "re-encoding differs");
    if header.rsv == 0 {
        let n = encode_header(
            &mut out,
            header.fin,
            header.opcode,
            header.payload_len,
            header.mask_key,
        );
        assert_eq!(&out[..n], raw);
    }
}

// ---------------------------------------------------------------------------------------------
// utf8

/// How a streaming validation of a chunked message ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Valid,
    /// `feed` of chunk number `chunk` failed.
    FeedFailed {
        chunk: usize,
        offset: u64,
    },
    /// Every chunk was accepted; `finish` failed (the message ends inside a code point).
    FinishFailed {
        offset: u64,
    },
}

/// Bytes that can never start or continue a sequence where a lead byte is expected.
fn cannot_start(b: u8) -> bool {
    matches!(b, 0x80..=0xc1 | 0xf5..=0xff)
}

/// The verdict `std::str::from_utf8` implies for `bytes` cut at `ends`. The offset is where the
/// valid prefix ends (`valid_up_to`); the failing chunk is the one holding the byte that makes
/// the message impossible: the invalid sequence's first byte if no sequence can start with it,
/// otherwise the byte just after its longest valid prefix (`error_len`).
fn expected_verdict(bytes: &[u8], ends: &[usize]) -> Verdict {
    let e = match std::str::from_utf8(bytes) {
        Ok(_) => return Verdict::Valid,
        Err(e) => e,
    };
    let valid = e.valid_up_to();
    let offset = u64::try_from(valid).expect("offsets fit in u64");
    let Some(error_len) = e.error_len() else {
        return Verdict::FinishFailed { offset };
    };
    let impossible_at = if cannot_start(bytes[valid]) {
        valid
    } else {
        valid + error_len
    };
    let chunk = ends
        .iter()
        .position(|&end| impossible_at < end)
        .expect("the invalid byte is inside the message");
    Verdict::FeedFailed { chunk, offset }
}

/// Drive a validator over the chunks; `feed` handles one chunk range.
fn verdict(
    ends: &[usize],
    v: &mut Validator,
    mut feed: impl FnMut(&mut Validator, Range<usize>) -> Result<(), Utf8Error>,
) -> Verdict {
    for (chunk, range) in ranges(ends).enumerate() {
        if let Err(e) = feed(v, range) {
            return Verdict::FeedFailed {
                chunk,
                offset: e.offset,
            };
        }
    }
    match v.finish() {
        Ok(()) => Verdict::Valid,
        Err(e) => Verdict::FinishFailed { offset: e.offset },
    }
}

/// After `finish`, a validator starts a fresh message.
fn check_reset(k: &Kernels, v: &mut Validator) {
    assert_eq!(v.feed(k, b"ok \xc3\xa9"), Ok(()));
    assert_eq!(v.finish(), Ok(()));
}

/// Streaming validation in random chunkings, for every kernel, against `std::str::from_utf8`:
/// valid exactly when std says so; an error comes from the `feed` whose chunk holds the byte that
/// makes the message impossible (not earlier, not later) or from `finish` for a truncated end,
/// and its offset is std's `valid_up_to`. An empty chunk changes nothing; `finish` resets.
pub fn utf8(data: &[u8]) {
    let mut input = Input::new(data);
    let chunking = Chunking::read(&mut input, 64);
    let bytes = input.rest();
    let ends = chunking.ends(bytes.len());
    let want = expected_verdict(bytes, &ends);
    let std_whole = std::str::from_utf8(bytes)
        .map(|_| ())
        .map_err(|e| Utf8Error {
            offset: u64::try_from(e.valid_up_to()).expect("offsets fit in u64"),
        });
    for (kernel, k) in kernels() {
        let mut v = Validator::new();
        assert_eq!(v.feed(&k, &[]), Ok(()), "{kernel:?}: empty chunk");
        let got = verdict(&ends, &mut v, |v, r| v.feed(&k, &bytes[r]));
        assert_eq!(got, want, "{kernel:?} with chunk ends {ends:?}");
        if !matches!(got, Verdict::FeedFailed { .. }) {
            check_reset(&k, &mut v);
        }
        assert_eq!(validate(&k, bytes), std_whole, "{kernel:?}: whole message");
    }
}

// ---------------------------------------------------------------------------------------------
// unmask

/// Bytes around the unmasked region, which no kernel may touch.
const GUARD: usize = 64;
const GUARD_BYTE: u8 = 0xa5;

/// `buf` placed `align` bytes into a buffer with guard bytes before and after it.
fn guarded(payload: &[u8], align: usize) -> Vec<u8> {
    let mut buf = vec![GUARD_BYTE; GUARD + align + payload.len() + GUARD];
    buf[GUARD + align..GUARD + align + payload.len()].copy_from_slice(payload);
    buf
}

fn assert_guards(buf: &[u8], align: usize, len: usize, what: &str) {
    let after = GUARD + align + len;
    assert!(
        buf[..GUARD + align].iter().all(|&b| b == GUARD_BYTE),
        "{what}: wrote before the slice"
    );
    assert!(
        buf[after..].iter().all(|&b| b == GUARD_BYTE),
        "{what}: wrote after the slice"
    );
}

/// The definition (§5.3): payload byte `i` is XORed with key byte `(phase + i) % 4`.
fn xor_reference(payload: &[u8], key: MaskKey, phase: usize) -> Vec<u8> {
    payload
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ key.0[phase.wrapping_add(i) % 4])
        .collect()
}

/// A phase from the input: small, or near `usize::MAX` to catch overflow in phase arithmetic
/// (2^64 is a multiple of 4, so a wrapping add keeps the phase right).
fn read_phase(input: &mut Input<'_>) -> usize {
    let b = input.byte();
    if b >= 0xf0 {
        usize::MAX - usize::from(b & 0x0f)
    } else {
        usize::from(b)
    }
}

/// Every kernel against the scalar reference and the §5.3 definition, for a random key, phase
/// and alignment; whole, and split at a random point into two calls with the phase carried.
/// No kernel writes outside its slice.
pub fn unmask(data: &[u8]) {
    let mut input = Input::new(data);
    let key = MaskKey(input.array());
    let phase = read_phase(&mut input);
    let align = usize::from(input.byte() % 64);
    let split = usize::from(u16::from_le_bytes(input.array()));
    let payload = input.rest();
    let split = split % (payload.len() + 1);
    let region = GUARD + align..GUARD + align + payload.len();

    let want = xor_reference(payload, key, phase);
    let scalar = Kernels::with(Kernel::Scalar).expect("the scalar kernel always exists");
    let mut reference = payload.to_vec();
    unmask_with(&scalar, &mut reference, key, phase);
    assert_eq!(reference, want, "the scalar kernel differs from §5.3");

    for (kernel, k) in kernels() {
        let mut buf = guarded(payload, align);
        unmask_with(&k, &mut buf[region.clone()], key, phase);
        assert_eq!(&buf[region.clone()], &want[..], "{kernel:?}: whole");
        assert_guards(&buf, align, payload.len(), "whole");

        let mut buf = guarded(payload, align);
        let (a, b) = buf[region.clone()].split_at_mut(split);
        unmask_with(&k, a, key, phase);
        unmask_with(&k, b, key, phase.wrapping_add(split));
        assert_eq!(
            &buf[region.clone()],
            &want[..],
            "{kernel:?}: split at {split}"
        );
        assert_guards(&buf, align, payload.len(), "split");
    }
}

// ---------------------------------------------------------------------------------------------
// fused

/// A chunked masked text message through `unmask_validate`, for every kernel, against the
/// scalar unmask followed by the scalar validator, and against the same kernel unfused: the same
/// verdict from the same chunk, and the same bytes (a failing chunk is still wholly unmasked;
/// later chunks are not touched). The verdict also matches `std::str::from_utf8` on the plain text.
pub fn fused(data: &[u8]) {
    let mut input = Input::new(data);
    let key = MaskKey(input.array());
    let phase = read_phase(&mut input);
    let align = usize::from(input.byte() % 64);
    let chunking = Chunking::read(&mut input, 64);
    let masked = input.rest();
    let ends = chunking.ends(masked.len());
    let region = GUARD + align..GUARD + align + masked.len();
    let plain = xor_reference(masked, key, phase);
    let want = expected_verdict(&plain, &ends);

    // Reference: the scalar kernels, one after the other.
    let scalar = Kernels::with(Kernel::Scalar).expect("the scalar kernel always exists");
    let mut reference = masked.to_vec();
    let mut v = Validator::new();
    let ref_verdict = verdict(&ends, &mut v, |v, r| {
        let at = phase.wrapping_add(r.start);
        unmask_with(&scalar, &mut reference[r.clone()], key, at);
        v.feed(&scalar, &reference[r])
    });
    assert_eq!(ref_verdict, want, "scalar reference vs std");

    for (kernel, k) in kernels() {
        let mut buf = guarded(masked, align);
        let mut v = Validator::new();
        let got = verdict(&ends, &mut v, |v, r| {
            let at = phase.wrapping_add(r.start);
            let chunk = r.start + region.start..r.end + region.start;
            unmask_validate(&k, &mut buf[chunk], key, at, v)
        });
        assert_eq!(got, want, "{kernel:?}: fused verdict, chunk ends {ends:?}");
        assert_eq!(
            &buf[region.clone()],
            &reference[..],
            "{kernel:?}: fused bytes"
        );
        assert_guards(&buf, align, masked.len(), "fused");
        if !matches!(got, Verdict::FeedFailed { .. }) {
            check_reset(&k, &mut v);
        }

        let mut unfused = masked.to_vec();
        let mut v = Validator::new();
        let got = verdict(&ends, &mut v, |v, r| {
            unmask_with(
                &k,
                &mut unfused[r.clone()],
                key,
                phase.wrapping_add(r.start),
            );
            v.feed(&k, &unfused[r])
        });
        assert_eq!(got, want, "{kernel:?}: unfused verdict");
        assert_eq!(unfused, reference, "{kernel:?}: unfused bytes");
    }
}
