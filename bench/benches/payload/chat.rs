//! The chat delivery the compression benches measure, shared by `benches/deflate.rs` and the
//! implementation comparison in `deflate-impls/` (included by path: both must compress the same
//! bytes).

/// A chat delivery as the gateway sends it, with a text of varied words, `len` bytes long.
pub fn chat(len: usize) -> Vec<u8> {
    const WORDS: [&str; 24] = [
        "hello", "team", "the", "build", "is", "green", "again", "after", "we", "fixed", "that",
        "flaky", "test", "meeting", "moved", "to", "three", "pm", "bring", "slides", "coffee",
        "thanks", "see", "you",
    ];
    let mut x = 0x2545_f491u32;
    let mut text = String::new();
    let head = r#"{"type":"message","channel":"room:engineering","data":{"user":"alice","text":""#;
    let tail = r#""},"from":"0a1b2c3d4e5f6071","offset":48213}"#;
    while head.len() + text.len() + tail.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        text.push_str(WORDS[x as usize % WORDS.len()]);
        text.push(if x % 7 == 0 { '.' } else { ' ' });
    }
    let mut out = format!("{head}{text}");
    out.truncate(len - tail.len());
    out.push_str(tail);
    out.into_bytes()
}
