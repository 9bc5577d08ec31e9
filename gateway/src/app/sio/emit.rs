//! Encoding an emitted event once for a whole fan-out: the Engine.IO message holding the
//! Socket.IO EVENT (or BINARY_EVENT) as a WebSocket text frame, followed by the attachments'
//! binary frames, in one shared buffer every subscriber's outbox references.

use std::sync::Arc;

use frame_simd::{encode_header, Opcode, MAX_HEADER_LEN};

use crate::router::fanout::text_frame;

use super::engine::PacketType as EnginePacket;
use super::packet::{encode_head, PacketType};

/// Binary attachments: how many, and their WebSocket binary frames back to back.
#[derive(Clone, Copy, Debug)]
pub struct Attachments<'a> {
    /// Their number.
    pub count: usize,
    /// Their frames, encoded.
    pub frames: &'a [u8],
}

/// The frames of event `name` with `args` (each JSON text) in namespace `nsp`.
pub fn event_frames(
    scratch: &mut Vec<u8>,
    nsp: &str,
    name: &str,
    args: &[&[u8]],
    attachments: Option<Attachments<'_>>,
) -> Arc<[u8]> {
    let text = text_frame(scratch, |out| {
        out.push(EnginePacket::Message.digit());
        match attachments {
            Some(a) => encode_head(out, PacketType::BinaryEvent, a.count, nsp, None),
            None => encode_head(out, PacketType::Event, 0, nsp, None),
        }
        out.push(b'[');
        crate::json::write_str(out, name);
        for a in args {
            out.push(b',');
            out.extend_from_slice(a);
        }
        out.push(b']');
    });
    match attachments {
        None => text,
        Some(a) => {
            let mut all = Vec::with_capacity(text.len() + a.frames.len());
            all.extend_from_slice(&text);
            all.extend_from_slice(a.frames);
            Arc::from(all)
        }
    }
}

/// Append `bytes` as a WebSocket binary frame (an attachment) to `frames`.
pub fn push_binary_frame(frames: &mut Vec<u8>, bytes: &[u8]) {
    let mut h = [0u8; MAX_HEADER_LEN];
    let n = encode_header(&mut h, true, Opcode::Binary, bytes.len() as u64, None);
    frames.extend_from_slice(&h[..n]);
    frames.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::fanout::frame_payload;

    #[test]
    fn an_event_is_one_text_frame_and_its_attachments_follow() {
        let mut scratch = Vec::new();
        let f = event_frames(&mut scratch, "/", "chat message", &[b"\"hi\""], None);
        assert_eq!(frame_payload(&f), b"42[\"chat message\",\"hi\"]");
        let mut bin = Vec::new();
        push_binary_frame(&mut bin, &[1, 2, 3]);
        let placeholder = b"{\"_placeholder\":true,\"num\":0}";
        let f = event_frames(
            &mut scratch,
            "/admin",
            "up",
            &[placeholder],
            Some(Attachments {
                count: 1,
                frames: &bin,
            }),
        );
        let text = b"451-/admin,[\"up\",{\"_placeholder\":true,\"num\":0}]";
        assert_eq!(&f[2..2 + text.len()], text);
        assert_eq!(&f[2 + text.len()..], &[0x82, 3, 1, 2, 3]);
    }
}
