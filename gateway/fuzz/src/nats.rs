//! `nats`: the NATS protocol parser a broker peer reaches (`gateway::broker::nats_proto`, what
//! a NATS server sends), on arbitrary bytes read in chunks, plus the subject escaping and the
//! client encoders.
//!
//! Asserts: nothing panics; a parsed operation took at most the input, parses the same from
//! exactly its bytes, and every strict prefix of those needs more; parsing a stream op by op
//! gives the same operations whatever the read size (a first byte chooses it); a `PUB` of any
//! payload is one line and the payload, whole; an escaped subject is one NATS token of safe
//! bytes and distinct topics give distinct subjects.

use gateway::broker::nats_proto::{encode_pub, parse, subject, Parsed};

/// Longest operation whose prefixes are all re-parsed (the check is quadratic).
const PREFIX_CHECK_BYTES: usize = 4096;

/// Input: a read-size byte, then what the server sends.
pub fn check(data: &[u8]) {
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    if let Ok(Parsed::Op(op, n)) = parse(stream) {
        assert!(n > 0 && n <= stream.len());
        assert_eq!(parse(&stream[..n]), Ok(Parsed::Op(op, n)));
        if n <= PREFIX_CHECK_BYTES {
            for cut in 0..n {
                assert_eq!(
                    parse(&stream[..cut]),
                    Ok(Parsed::Need),
                    "prefix {cut} of {n}"
                );
            }
        }
    }
    let whole = ops(stream, stream.len().max(1));
    let chunked = ops(stream, usize::from(chunk % 64) + 1);
    assert_eq!(whole, chunked, "read size {}", chunk % 64 + 1);

    let mut out = Vec::new();
    encode_pub(&mut out, "gw:c:x", stream);
    let line_end = out.iter().position(|&b| b == b'\n').map(|i| i + 1);
    assert_eq!(line_end, Some(out.len() - stream.len() - 2), "one line");
    assert_eq!(&out[out.len() - stream.len() - 2..out.len() - 2], stream);
    assert!(
        parse(&out).is_err(),
        "a client PUB is not a server operation"
    );
    let topic = String::from_utf8_lossy(stream);
    let s = subject(&topic);
    assert!(!s.is_empty() || topic.is_empty());
    assert!(s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_:@/-%".contains(&b)));
    let other = format!("{topic}.");
    assert_ne!(subject(&other), s);
}

/// The operations of `stream` read `chunk` bytes at a time, as the transport reads them: a
/// buffer that grows by each read and loses what was parsed. Ends at the first error.
fn ops(stream: &[u8], chunk: usize) -> Vec<String> {
    let mut got = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        let mut at = 0;
        loop {
            match parse(&buf[at..]) {
                Ok(Parsed::Op(op, n)) => {
                    got.push(format!("{op:?}"));
                    at += n;
                }
                Ok(Parsed::Need) => break,
                Err(e) => {
                    got.push(format!("error {e}"));
                    return got;
                }
            }
        }
        buf.drain(..at);
    }
    got
}
