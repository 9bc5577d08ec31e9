//! Deterministic bench inputs: text of one script mix, cut at a code point boundary.
// Each bench uses the scripts it needs.
#![allow(dead_code)]

/// The scripts the UTF-8 benches measure.
#[derive(Clone, Copy)]
pub enum Script {
    /// Plain ASCII (JSON-like chat messages).
    Ascii,
    /// Latin with accents mixed with CJK.
    LatinCjk,
    /// Mostly emoji (4-byte code points) with a little ASCII.
    Emoji,
}

impl Script {
    pub fn name(self) -> &'static str {
        match self {
            Script::Ascii => "ascii",
            Script::LatinCjk => "latin-cjk",
            Script::Emoji => "emoji",
        }
    }

    fn words(self) -> &'static [&'static str] {
        match self {
            Script::Ascii => &[
                "{\"type\":\"message\",",
                "\"channel\":\"general\",",
                "the quick brown fox ",
                "jumps over the lazy dog ",
                "12345 ",
                "\"ok\":true} ",
            ],
            Script::LatinCjk => &[
                "café ",
                "naïve ",
                "Straße ",
                "façade ",
                "東京都 ",
                "你好世界 ",
                "日本語のテキスト ",
                "한국어 ",
                "über ",
            ],
            Script::Emoji => &["😀", "🎉", "🚀", "👍🏽", "❤️", "🔥", " ", "ok", "🙈🙉🙊"],
        }
    }
}

/// `len` bytes (or up to 3 fewer, to end on a code point) of text in `script`.
pub fn text(script: Script, len: usize) -> Vec<u8> {
    let words = script.words();
    let mut out = String::with_capacity(len + 32);
    let mut state: u32 = 0x9E37_79B9;
    while out.len() < len {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        out.push_str(words[(state >> 16) as usize % words.len()]);
    }
    let mut end = len;
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    out.truncate(end);
    out.into_bytes()
}
