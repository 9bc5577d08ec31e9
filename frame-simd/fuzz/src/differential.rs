//! The `differential` target: frame-simd's header parser and unmask kernel against tungstenite,
//! an independent implementation, over a stream of frames. Both must accept and reject the same
//! frames and agree on every field and on the payload.
//!
//! tungstenite's verdict is its header parser (`FrameHeader::parse`, which refuses reserved
//! opcodes) plus the per-frame rules its protocol layer applies on reading with the default
//! configuration and no extension: no RSV bit set; a server refuses unmasked frames and a
//! client masked ones; a control frame is final and carries at most 125 bytes. Whole-message
//! rules (continuations, UTF-8, close payloads) are not frame rules and are not compared.
//!
//! Differences that RFC 6455 allows, and how they are normalised (each one asserted, so a new
//! difference fails the target):
//! - **Non-minimal lengths.** §5.2 says the minimal number of bytes MUST be used to encode the
//!   length; frame-simd refuses a 16-bit length below 126 and a 64-bit length below 65,536
//!   (`NonMinimalLength`, or `ControlTooLong` for a control frame using the longer forms), and
//!   tungstenite reads them. Such a frame must be refused by frame-simd, whatever tungstenite
//!   says, and ends the comparison.
//! - **The 64-bit length's top bit.** §5.2 says it MUST be 0; frame-simd refuses it
//!   (`LengthHighBit`), tungstenite reads the length as given. Same treatment.
//! - **When a refusal is known.** frame-simd refuses as soon as the bytes so far decide it (a
//!   reserved opcode from the first byte, a control frame's long length from the second), while
//!   tungstenite waits for the whole header. A frame-simd refusal where tungstenite still needs
//!   bytes ends the comparison; frame-simd's own consistency over prefixes is the `header`
//!   target's business.
//! - **Limits.** Neither parser is given a payload limit here (frame-simd `u64::MAX`,
//!   tungstenite none), so limits never differ.
//!
//! The payload: frame-simd's header and kernel unmask the payload; tungstenite then formats a
//! frame from its own parsed header and that payload, masking it again with its own code. The
//! result must be the input frame, byte for byte.

use std::io::Cursor;

use frame_simd::mask::unmask;
use frame_simd::{parse_header, Kernels, ParseConfig, Parsed, Role};
use tungstenite::protocol::frame::coding::{Control, OpCode};
use tungstenite::protocol::frame::{Frame, FrameHeader};

/// Why tungstenite refuses a frame whose header it parsed, or `None` if it takes it.
fn tungstenite_refuses(h: &FrameHeader, len: u64, role: Role) -> Option<&'static str> {
    if h.rsv1 || h.rsv2 || h.rsv3 {
        return Some("non-zero reserved bits");
    }
    match (role, h.mask.is_some()) {
        (Role::Client, true) => return Some("masked frame from server"),
        (Role::Server, false) => return Some("unmasked frame from client"),
        _ => {}
    }
    if let OpCode::Control(c) = h.opcode {
        if !h.is_final {
            return Some("fragmented control frame");
        }
        if len > 125 {
            return Some("control frame too big");
        }
        if let Control::Reserved(_) = c {
            return Some("reserved control opcode");
        }
    }
    None
}

/// Whether the length field of `frame` (a whole header) uses more bytes than `len` needs.
fn non_minimal(frame: &[u8], len: u64) -> bool {
    match frame.get(1).map(|b| b & 0x7f) {
        Some(126) => len < 126,
        Some(127) => len < 1 << 16,
        _ => false,
    }
}

/// The differential check: one flag byte (bit 0: parse as a client, else as a server), then a
/// stream of frames.
pub fn differential(data: &[u8]) {
    let (flags, mut rest) = match data.split_first() {
        Some((&f, r)) => (f, r),
        None => return,
    };
    let role = if flags & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let cfg = ParseConfig {
        role,
        rsv_allowed: 0,
        max_payload: u64::MAX,
    };
    let kernels = Kernels::detect();
    loop {
        let ours = parse_header(rest, &cfg);
        let mut cursor = Cursor::new(rest);
        let theirs = FrameHeader::parse(&mut cursor);
        let (theirs, their_len) = match theirs {
            Ok(Some(parsed)) => parsed,
            Ok(None) => {
                // tungstenite needs more bytes: frame-simd needs more too, or refuses early.
                assert!(
                    !matches!(ours, Ok(Parsed::Header { .. })),
                    "frame-simd parsed a header tungstenite finds incomplete: {ours:?}"
                );
                return;
            }
            Err(e) => {
                // Only a reserved opcode makes tungstenite's header parser fail; frame-simd
                // refuses it too (or refuses the frame for a rule it checks first, such as RSV).
                assert!(
                    ours.is_err(),
                    "tungstenite refused ({e}) what frame-simd read as {ours:?}"
                );
                return;
            }
        };
        let their_header_len = usize::try_from(cursor.position()).expect("header length");
        let refusal = tungstenite_refuses(&theirs, their_len, role);
        let rfc_difference = non_minimal(rest, their_len) || their_len >> 63 == 1;
        let (header, len) = match ours {
            Ok(Parsed::Header { header, len }) => (header, len),
            Ok(Parsed::Need(n)) => {
                panic!("frame-simd needs {n} more bytes of a header tungstenite parsed: {theirs:?}")
            }
            Err(e) => {
                assert!(
                    refusal.is_some() || rfc_difference,
                    "frame-simd refused ({e:?}) a frame tungstenite takes: {theirs:?}, length \
                     {their_len}"
                );
                return;
            }
        };
        assert!(
            refusal.is_none(),
            "tungstenite refuses ({}) what frame-simd accepts: {header:?}",
            refusal.unwrap_or_default()
        );
        assert!(
            !rfc_difference,
            "frame-simd accepted a non-minimal or top-bit length: {header:?}"
        );
        // Both took the frame: every field agrees.
        assert_eq!(len, their_header_len, "header length");
        assert_eq!(header.fin, theirs.is_final, "FIN");
        assert_eq!(header.rsv, 0, "RSV");
        assert_eq!(header.opcode as u8, u8::from(theirs.opcode), "opcode");
        assert_eq!(header.mask_key.map(|k| k.0), theirs.mask, "masking key");
        assert_eq!(header.payload_len, their_len, "payload length");

        // The payload, when the input holds all of it.
        let Some(end) = usize::try_from(header.payload_len)
            .ok()
            .and_then(|n| n.checked_add(len))
            .filter(|&end| end <= rest.len())
        else {
            return;
        };
        let mut payload = rest[len..end].to_vec();
        if let Some(key) = header.mask_key {
            unmask(&kernels, &mut payload, key, 0);
        }
        let mut again = Vec::with_capacity(end);
        Frame::from_payload(theirs, payload.into())
            .format(&mut again)
            .expect("formatting into a Vec");
        assert_eq!(
            again,
            &rest[..end],
            "tungstenite re-masks frame-simd's payload differently"
        );
        rest = &rest[end..];
    }
}
