//! Seed inputs for every fuzz target, built deterministically in the layout each check reads
//! (parameters first, then data): the cases a fuzzer would take long to find on its own. They are
//! the starting corpus `scripts/fuzz-seeds.sh frame-simd` fuzzes from and minimises into
//! `fuzz/seeds/<target>/`; the test suite also replays them straight from here.

use super::xor_reference;
use frame_simd::MaskKey;

/// One named input for one target.
pub struct Seed {
    /// A file name that says what the input exercises.
    pub name: String,
    /// The raw fuzzer input.
    pub data: Vec<u8>,
}

/// The seeds of `target`; empty if there is no such target.
pub fn seeds(target: &str) -> Vec<Seed> {
    let mut out = Seeds(Vec::new());
    match target {
        "header" => header(&mut out),
        "utf8" => utf8(&mut out),
        "unmask" => unmask(&mut out),
        "fused" => fused(&mut out),
        "differential" => differential(&mut out),
        _ => {}
    }
    out.0
}

struct Seeds(Vec<Seed>);

impl Seeds {
    fn add(&mut self, name: String, data: Vec<u8>) {
        assert!(
            self.0.iter().all(|s| s.name != name),
            "two seeds named {name}"
        );
        self.0.push(Seed { name, data });
    }
}

/// The bytes `Chunking::read` turns into chunks of exactly `sizes`, for chunks of at most
/// `small` bytes or a whole multiple of it up to 64 times.
fn chunking(sizes: &[usize], small: usize) -> Vec<u8> {
    assert!((1..=8).contains(&sizes.len()));
    let mut out = vec![u8::try_from(sizes.len() - 1).expect("at most 8 sizes")];
    for &size in sizes {
        let b = if size <= small {
            size - 1
        } else {
            assert!(size % small == 0 && size / small <= 64, "chunk of {size}");
            0xbf + size / small
        };
        out.push(u8::try_from(b).expect("a chunk size byte"));
    }
    out
}

/// Chunkings worth trying on a stream, named: whole, byte by byte, and uneven cuts.
const CHUNKINGS: [(&str, &[usize]); 4] = [
    ("whole", &[4096]),
    ("bytewise", &[1]),
    ("pairs", &[2]),
    ("uneven", &[1, 2, 3, 7, 16, 5, 11, 4]),
];

/// The largest chunk a chunking can ask for with `small`, for the "whole" entry.
fn sizes_for(sizes: &[usize], small: usize) -> Vec<usize> {
    sizes.iter().map(|&s| s.min(64 * small)).collect()
}

// ---------------------------------------------------------------------------------------------
// header

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// How the payload length is written: minimally, or in a wider form than needed.
#[derive(Clone, Copy)]
enum Width {
    Minimal,
    Bits16,
    Bits64,
}

/// A frame header with first byte `b0`; masked with [`KEY`] when `masked`.
fn raw_header(b0: u8, len: u64, width: Width, masked: bool) -> Vec<u8> {
    let mask_bit = if masked { 0x80 } else { 0 };
    let width = match width {
        Width::Minimal if len < 126 => None,
        Width::Minimal if len <= 0xffff => Some(Width::Bits16),
        Width::Minimal => Some(Width::Bits64),
        other => Some(other),
    };
    let mut out = vec![b0];
    match width {
        None => out.push(mask_bit | u8::try_from(len).expect("a 7-bit length")),
        Some(Width::Bits16) => {
            out.push(mask_bit | 126);
            let len = u16::try_from(len).expect("a 16-bit length");
            out.extend_from_slice(&len.to_be_bytes());
        }
        Some(_) => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    if masked {
        out.extend_from_slice(&KEY);
    }
    out
}

/// A whole frame with a payload of `len` bytes (any content: the parser skips it).
fn frame(b0: u8, len: usize, masked: bool) -> Vec<u8> {
    let len64 = u64::try_from(len).expect("lengths fit in u64");
    let mut out = raw_header(b0, len64, Width::Minimal, masked);
    out.extend((0..len).map(|i| (i % 251) as u8));
    out
}

/// The parser settings the header check reads from its first bytes.
#[derive(Clone, Copy)]
struct Config {
    client: bool,
    /// 0: none, 1: RSV1, 2: all three, 3: this byte.
    rsv: (u8, u8),
    /// 0: none, 1: 125, 2: 1 MiB, 3: this value.
    limit: (u8, u64),
}

impl Config {
    fn server() -> Config {
        Config {
            client: false,
            rsv: (0, 0),
            limit: (0, 0),
        }
    }

    fn client() -> Config {
        Config {
            client: true,
            ..Config::server()
        }
    }

    fn bytes(self) -> Vec<u8> {
        let flags = u8::from(self.client) | (self.rsv.0 << 1) | (self.limit.0 << 3);
        let mut out = vec![flags];
        if self.rsv.0 == 3 {
            out.push(self.rsv.1);
        }
        if self.limit.0 == 3 {
            out.extend_from_slice(&self.limit.1.to_le_bytes());
        }
        out
    }
}

fn header_input(cfg: Config, sizes: &[usize], stream: &[u8]) -> Vec<u8> {
    let mut out = cfg.bytes();
    out.extend(chunking(&sizes_for(sizes, 16), 16));
    out.extend_from_slice(stream);
    out
}

fn header(out: &mut Seeds) {
    const OPCODES: [(&str, u8); 5] = [
        ("text", 0x1),
        ("binary", 0x2),
        ("close", 0x8),
        ("ping", 0x9),
        ("pong", 0xa),
    ];
    for (role, cfg) in [("server", Config::server()), ("client", Config::client())] {
        let masked = !cfg.client;
        // Valid frames of every opcode and length class, one stream per chunking.
        let mut stream = Vec::new();
        for (_, op) in OPCODES {
            for len in [0, 1, 125] {
                stream.extend(frame(0x80 | op, len, masked));
            }
        }
        for len in [126, 127, 300] {
            stream.extend(frame(0x82, len, masked));
        }
        // A fragmented message with a ping between its fragments.
        stream.extend(frame(0x01, 3, masked));
        stream.extend(frame(0x89, 2, masked));
        stream.extend(frame(0x00, 4, masked));
        stream.extend(frame(0x80, 1, masked));
        for (chunks, sizes) in CHUNKINGS {
            out.add(
                format!("{role}-valid-stream-{chunks}"),
                header_input(cfg, sizes, &stream),
            );
        }
        // One frame per opcode and length class; large payloads stop at the header.
        for (name, op) in OPCODES.into_iter().take(2) {
            for (class, len) in [("16bit", 0xffff_u64), ("64bit", 0x1_0000), ("max", 1 << 62)] {
                let header = raw_header(0x80 | op, len, Width::Minimal, masked);
                out.add(
                    format!("{role}-{name}-{class}-length"),
                    header_input(cfg, &[1], &header),
                );
            }
        }
        for (name, op) in OPCODES.into_iter().skip(2) {
            out.add(
                format!("{role}-{name}-125-bytes"),
                header_input(cfg, &[3], &frame(0x80 | op, 125, masked)),
            );
            out.add(
                format!("{role}-{name}-126-bytes"),
                header_input(
                    cfg,
                    &[1],
                    &raw_header(0x80 | op, 126, Width::Minimal, masked),
                ),
            );
            out.add(
                format!("{role}-{name}-without-fin"),
                header_input(cfg, &[1], &frame(op, 0, masked)),
            );
        }
        // Wire rules, each after a valid frame so the error comes mid-stream.
        let bad: [(&str, Vec<u8>); 9] = [
            ("wrong-mask-bit", frame(0x81, 2, !masked)),
            ("rsv1", frame(0xc1, 1, masked)),
            ("rsv2", frame(0xa1, 1, masked)),
            ("rsv3", frame(0x91, 1, masked)),
            (
                "16bit-nonminimal",
                raw_header(0x82, 125, Width::Bits16, masked),
            ),
            (
                "64bit-nonminimal",
                raw_header(0x82, 0xffff, Width::Bits64, masked),
            ),
            (
                "64bit-small-nonminimal",
                raw_header(0x82, 5, Width::Bits64, masked),
            ),
            (
                "64bit-high-bit",
                raw_header(0x82, 1 << 63, Width::Bits64, masked),
            ),
            (
                "ping-64bit-length",
                raw_header(0x89, 0x1_0000, Width::Minimal, masked),
            ),
        ];
        for (name, bad) in bad {
            let mut stream = frame(0x81, 5, masked);
            stream.extend(bad);
            out.add(
                format!("{role}-{name}"),
                header_input(cfg, &[1, 3, 16], &stream),
            );
        }
        let reserved: Vec<u8> = (0x3..=0x7).chain(0xb..=0xf).collect();
        for op in reserved {
            out.add(
                format!("{role}-reserved-opcode-{op:x}"),
                header_input(cfg, &[1], &frame(0x80 | op, 0, masked)),
            );
        }
        // Negotiated extensions and limits.
        let rsv1 = Config { rsv: (1, 0), ..cfg };
        let mut stream = frame(0xc1, 3, masked);
        stream.extend(frame(0xe1, 3, masked));
        out.add(
            format!("{role}-rsv1-negotiated-then-rsv2"),
            header_input(rsv1, &[2], &stream),
        );
        let all = Config { rsv: (2, 0), ..cfg };
        out.add(
            format!("{role}-all-rsv-negotiated"),
            header_input(all, &[16], &frame(0xf2, 3, masked)),
        );
        let rsv3 = Config {
            rsv: (3, 0x10),
            ..cfg
        };
        let mut stream = frame(0x91, 3, masked);
        stream.extend(frame(0xc1, 3, masked));
        out.add(
            format!("{role}-rsv3-negotiated-then-rsv1"),
            header_input(rsv3, &[1, 4], &stream),
        );
        let limits: [(&str, (u8, u64), u64); 6] = [
            ("limit-125-at-125", (1, 0), 125),
            ("limit-125-over", (1, 0), 126),
            ("limit-1mib-over", (2, 0), (1 << 20) + 1),
            ("limit-0-over", (3, 0), 1),
            ("limit-300-16bit-over", (3, 300), 301),
            ("limit-70000-64bit-over", (3, 70_000), 70_001),
        ];
        for (name, limit, len) in limits {
            let cfg = Config { limit, ..cfg };
            out.add(
                format!("{role}-{name}"),
                header_input(cfg, &[1], &raw_header(0x82, len, Width::Minimal, masked)),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// utf8

/// Text that is valid, named; every length class of code point, and the boundary code points.
fn valid_texts() -> Vec<(&'static str, Vec<u8>)> {
    let boundaries: String = [
        0x7f, 0x80, 0x7ff, 0x800, 0xd7ff, 0xe000, 0xfffd, 0xffff, 0x10000, 0x10ffff,
    ]
    .into_iter()
    .filter_map(char::from_u32)
    .collect();
    vec![
        ("empty", Vec::new()),
        (
            "ascii",
            b"{\"channel\":\"news\",\"text\":\"hello world\"}".to_vec(),
        ),
        ("latin", "h\u{e9}llo w\u{f6}rld, \u{e7}a va? \u{df}".into()),
        (
            "cjk",
            "\u{4f60}\u{597d}\u{4e16}\u{754c}\u{ff0c}\u{6e2c}\u{8a66}".into(),
        ),
        (
            "emoji",
            "\u{1f600}\u{1f680}\u{1f44d}\u{1f3fd}x\u{1f1eb}\u{1f1f7}".into(),
        ),
        ("boundaries", boundaries.into_bytes()),
        (
            "mixed-long",
            "ascii run then \u{e9}\u{4e16}\u{1f600} "
                .repeat(12)
                .into_bytes(),
        ),
    ]
}

/// A valid prefix long enough that an error lands in a later SIMD block, then bad bytes.
fn invalid_texts() -> Vec<(&'static str, Vec<u8>)> {
    let bad: [(&str, &[u8]); 16] = [
        ("lone-continuation", b"\x80"),
        ("overlong-c0", b"\xc0\xaf"),
        ("overlong-c1", b"\xc1\xbf"),
        ("overlong-3", b"\xe0\x80\xaf"),
        ("overlong-4", b"\xf0\x80\x80\xaf"),
        ("surrogate-low", b"\xed\xa0\x80"),
        ("surrogate-high", b"\xed\xbf\xbf"),
        ("above-10ffff", b"\xf4\x90\x80\x80"),
        ("f5", b"\xf5\x80\x80\x80"),
        ("ff", b"\xff"),
        ("bad-second-byte", b"\xc3\x28"),
        ("bad-third-byte", b"\xe2\x82\x28"),
        ("bad-fourth-byte", b"\xf0\x9f\x98\x28"),
        ("truncated-2", b"\xc3"),
        ("truncated-3", b"\xe2\x82"),
        ("truncated-4", b"\xf0\x9f\x98"),
    ];
    bad.into_iter()
        .map(|(name, bytes)| {
            let mut text = "ok \u{e9} ".as_bytes().to_vec();
            text.extend_from_slice(bytes);
            (name, text)
        })
        .collect()
}

fn utf8_input(sizes: &[usize], text: &[u8]) -> Vec<u8> {
    let mut out = chunking(&sizes_for(sizes, 64), 64);
    out.extend_from_slice(text);
    out
}

fn utf8(out: &mut Seeds) {
    for (name, text) in valid_texts() {
        for (chunks, sizes) in CHUNKINGS {
            out.add(format!("valid-{name}-{chunks}"), utf8_input(sizes, &text));
        }
    }
    // A 4-byte code point cut at each of its inner boundaries by the chunk end.
    let emoji = "ab\u{1f600}cd".as_bytes();
    for cut in 3..=5 {
        out.add(
            format!("valid-4byte-cut-after-{cut}"),
            utf8_input(&[cut, 64], emoji),
        );
    }
    for (name, text) in invalid_texts() {
        out.add(format!("invalid-{name}-whole"), utf8_input(&[4096], &text));
        out.add(format!("invalid-{name}-bytewise"), utf8_input(&[1], &text));
        // The chunk ends right after the lead byte: the error is in the next chunk.
        out.add(
            format!("invalid-{name}-cut-after-lead"),
            utf8_input(&[7, 64], &text),
        );
    }
    // Errors just before, on and after SIMD block edges (16, 32, 64, 128 bytes).
    for at in [15, 16, 31, 32, 63, 64, 127, 128] {
        for (name, bad) in [("surrogate", &b"\xed\xa0\x80"[..]), ("ff", b"\xff")] {
            let mut text = vec![b'a'; at];
            text.extend_from_slice(bad);
            text.extend_from_slice(b" tail after the error");
            out.add(
                format!("invalid-{name}-at-{at}"),
                utf8_input(&[4096], &text),
            );
        }
        let mut text = vec![b'a'; at - 1];
        text.extend_from_slice("\u{1f600}".as_bytes());
        text.extend_from_slice(b" tail");
        out.add(
            format!("valid-4byte-across-{at}"),
            utf8_input(&[4096], &text),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// unmask

/// The key, phase and alignment prefix of the `unmask` and `fused` inputs. `phase` above 0xef
/// means `usize::MAX - (phase & 0xf)`.
fn mask_params(key: [u8; 4], phase: u8, align: u8) -> Vec<u8> {
    let mut out = key.to_vec();
    out.extend([phase, align]);
    out
}

/// The phase the checks derive from a phase byte.
fn phase_of(b: u8) -> usize {
    if b >= 0xf0 {
        usize::MAX - usize::from(b & 0x0f)
    } else {
        usize::from(b)
    }
}

fn unmask(out: &mut Seeds) {
    let lengths = [
        0, 1, 3, 4, 7, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 1000, 4095,
        4096, 4100,
    ];
    for (i, len) in lengths.into_iter().enumerate() {
        // Every phase at every length, including phases near usize::MAX.
        let phase = [0, 1, 2, 3, 0xf0, 0xf1, 0xf2, 0xf3][i % 8];
        let align = [0, 1, 3, 8, 15, 16, 31, 32, 63][i % 9];
        let split = u16::try_from(len / 3 + 1).expect("a short payload");
        let mut data = mask_params([0x9e, 0x01, 0xff, 0x42], phase, align);
        data.extend(split.to_le_bytes());
        data.extend((0..len).map(|i| (i * 7 % 256) as u8));
        out.add(format!("len-{len}-phase-{phase:x}-align-{align}"), data);
    }
    for phase in 0..4 {
        let mut data = mask_params([1, 2, 4, 8], phase, 5);
        data.extend(17u16.to_le_bytes());
        data.extend([0u8; 200]);
        out.add(format!("zeros-200-phase-{phase}-split-17"), data);
    }
}

// ---------------------------------------------------------------------------------------------
// fused

/// The fused pass aligns its stores once a chunk holds 4 KiB of whole code points.
const FUSED_ALIGN_FROM: usize = 4096;

/// Valid text whose first 4 KiB are whole code points, then more text; `bad` is written over it
/// at `bad_at`.
fn long_text(bad: &[u8], bad_at: usize) -> Vec<u8> {
    let unit = "fused pass over text \u{e9}\u{4e16}\u{1f600} ";
    let mut text = unit.repeat(FUSED_ALIGN_FROM / unit.len()).into_bytes();
    text.resize(FUSED_ALIGN_FROM, b'.');
    text.extend_from_slice(unit.repeat(8).as_bytes());
    text[bad_at..bad_at + bad.len()].copy_from_slice(bad);
    text
}

fn fused_input(key: MaskKey, phase: u8, align: u8, sizes: &[usize], text: &[u8]) -> Vec<u8> {
    let mut data = mask_params(key.0, phase, align);
    data.extend(chunking(&sizes_for(sizes, 64), 64));
    data.extend(xor_reference(text, key, phase_of(phase)));
    data
}

fn fused(out: &mut Seeds) {
    let key = MaskKey([0x37, 0xfa, 0x21, 0x3d]);
    let mut texts = valid_texts();
    texts.extend(invalid_texts());
    for (i, (name, text)) in texts.into_iter().enumerate() {
        let phase = [0, 1, 2, 3, 0xf1][i % 5];
        let align = [0, 7, 32, 63][i % 4];
        for (chunks, sizes) in [CHUNKINGS[0], CHUNKINGS[3]] {
            out.add(
                format!("{name}-phase-{phase:x}-{chunks}"),
                fused_input(key, phase, align, sizes, &text),
            );
        }
    }
    // A first chunk of exactly 4 KiB takes the aligned path: at every alignment of the head, with
    // an error in the head, in the aligned body, and none.
    let long: [(&str, Vec<u8>); 3] = [
        ("valid", long_text(b"", 0)),
        ("ff-in-head", long_text(b"\xff", 2)),
        ("surrogate-in-body", long_text(b"\xed\xa0\x80", 4000)),
    ];
    for (name, text) in long {
        for (align, phase) in [(0, 0), (7, 1), (33, 2), (63, 0xf3)] {
            out.add(
                format!("4kib-chunk-{name}-align-{align}-phase-{phase:x}"),
                fused_input(key, phase, align, &[FUSED_ALIGN_FROM], &text),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// differential: a role byte (0 server, 1 client), then a stream of frames.

fn differential(out: &mut Seeds) {
    let opcodes = [
        ("cont", 0x0),
        ("text", 0x1),
        ("binary", 0x2),
        ("close", 0x8),
        ("ping", 0x9),
        ("pong", 0xa),
    ];
    for (role, client) in [("server", false), ("client", true)] {
        let flag = u8::from(client);
        // Frames each role must take: its peer's masking, every opcode and length class.
        for (name, op) in opcodes {
            let lens: &[usize] = if op & 0x8 != 0 {
                &[0, 2, 125]
            } else {
                &[0, 5, 125, 126, 65_535, 65_536]
            };
            for &len in lens {
                let mut data = vec![flag];
                data.extend(frame(0x80 | op, len, !client));
                out.add(format!("{role}-{name}-{len}"), data);
            }
        }
        // A stream: a fragmented text with a ping between its fragments, then a close.
        let mut data = vec![flag];
        for b0 in [0x01, 0x89, 0x00, 0x80, 0x88] {
            data.extend(frame(b0, 3, !client));
        }
        out.add(format!("{role}-stream"), data);
        // What both refuse: the wrong masking, reserved opcodes, RSV bits, control rules.
        let refused: [(&str, Vec<u8>); 7] = [
            ("wrong-mask", frame(0x82, 4, client)),
            ("reserved-data-opcode", frame(0x83, 1, !client)),
            ("reserved-control-opcode", frame(0x8b, 1, !client)),
            ("rsv1", frame(0xc2, 1, !client)),
            ("rsv3", frame(0x92, 1, !client)),
            ("fragmented-ping", frame(0x09, 1, !client)),
            ("ping-126", frame(0x89, 126, !client)),
        ];
        for (name, f) in refused {
            let mut data = vec![flag];
            data.extend(f);
            out.add(format!("{role}-{name}"), data);
        }
        // The normalised differences: non-minimal lengths and the 64-bit top bit.
        for (name, len, width) in [
            ("nonminimal-16", 5u64, Width::Bits16),
            ("nonminimal-64", 300, Width::Bits64),
            ("ping-nonminimal-16", 5, Width::Bits16),
            ("top-bit", 1 << 63, Width::Bits64),
        ] {
            let b0 = if name.starts_with("ping") { 0x89 } else { 0x82 };
            let mut data = vec![flag];
            data.extend(raw_header(b0, len, width, !client));
            data.extend((0..len.min(300)).map(|i| i as u8));
            out.add(format!("{role}-{name}"), data);
        }
        // A header cut short, at every length.
        let whole = frame(0x82, 70_000, !client);
        for cut in 1..14 {
            let mut data = vec![flag];
            data.extend(&whole[..cut]);
            out.add(format!("{role}-cut-{cut}"), data);
        }
    }
}
