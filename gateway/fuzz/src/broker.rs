//! `broker`: the two decoders a broker peer reaches, on arbitrary bytes: the RESP parser
//! (`gateway::broker::resp`, what Redis sends) and the envelope of messages between nodes
//! (`gateway::broker::wire`, what any client of the broker could publish).
//!
//! Asserts: nothing panics; a parsed RESP value took at most the input, parses the same from
//! exactly its bytes, and every strict prefix of those needs more; a command encoded from any
//! arguments parses back as those arguments, whole; a decoded envelope encodes back to exactly
//! the input (the layout is canonical).

use gateway::broker::resp::{encode_command, parse, Parsed, Value};
use gateway::broker::wire::{decode, encode};

/// Longest value whose prefixes are all re-parsed (the check is quadratic).
const PREFIX_CHECK_BYTES: usize = 4096;

/// Input: the bytes, read three ways (RESP, envelope, command arguments split at 0xff).
pub fn check(data: &[u8]) {
    match parse(data) {
        Ok(Parsed::Value(v, n)) => {
            assert!(n > 0 && n <= data.len());
            assert_eq!(parse(&data[..n]), Ok(Parsed::Value(v, n)));
            if n <= PREFIX_CHECK_BYTES {
                for cut in 0..n {
                    assert_eq!(parse(&data[..cut]), Ok(Parsed::Need), "prefix {cut} of {n}");
                }
            }
        }
        Ok(Parsed::Need) | Err(_) => {}
    }

    if let Some(msg) = decode(data) {
        let mut out = Vec::new();
        encode(&msg, &mut out);
        assert_eq!(out, data, "{msg:?}");
    }

    let args: Vec<&[u8]> = data.split(|&b| b == 0xff).collect();
    let mut out = Vec::new();
    encode_command(&mut out, &args);
    let want = Value::Array(Some(
        args.iter().map(|a| Value::Bulk(Some(a.to_vec()))).collect(),
    ));
    assert_eq!(parse(&out), Ok(Parsed::Value(want, out.len())));
}
