//! permessage-deflate (RFC 7692): the negotiation in the opening handshake, the streaming
//! inflater for compressed client messages, and the compressor for server messages.
//!
//! Memory policy, for many idle connections: the server always answers
//! `server_no_context_takeover` and `client_no_context_takeover` (both allowed in any response,
//! §7.1.1.1, §7.1.1.2), so no LZ77 window outlives a message in either direction. A connection
//! then keeps only its [`Negotiated`] parameters (4 bytes); the inflater is created when a
//! compressed message starts and freed when it ends, and the compressor is one per shard, shared
//! by every connection and reset per message. Without context takeover a compressed message is
//! the same bytes for every peer, so a broadcast is compressed once ([`Packed`]).

use std::sync::Arc;

use flate2::{Decompress, FlushDecompress, Status};
use frame_simd::{encode_header, Kernels, Opcode, Validator, MAX_HEADER_LEN};

use crate::conn::http::trim;

/// The extension's name in `Sec-WebSocket-Extensions`.
const EXTENSION: &[u8] = b"permessage-deflate";
/// What a sync flush ends with; removed by the sender, put back by the receiver (§7.2.1, §7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// The largest LZ77 window (32 KiB) as `*_max_window_bits`.
const MAX_WINDOW_BITS: u8 = 15;
/// libdeflate's level: 1 is its fastest, and on chat-sized JSON within 3% of level 6's size
/// (see `bench/benches/deflate.rs`).
const LEVEL: i32 = 1;
/// The default size under which messages go uncompressed: smaller ones rarely shrink by more
/// than the cost of compressing them.
pub const DEFAULT_THRESHOLD_BYTES: usize = 128;

/// What the server offers: whether it negotiates the extension and from what size it compresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Accept permessage-deflate offers (`--compression on`).
    pub enabled: bool,
    /// Messages shorter than this are sent uncompressed (`--compression-threshold`).
    pub threshold_bytes: usize,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            enabled: true,
            threshold_bytes: DEFAULT_THRESHOLD_BYTES,
        }
    }
}

/// The parameters agreed with one client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// `server_max_window_bits` the client asked for (`None`: it did not, 15 then): the server's
    /// messages may refer back at most `2^bits` bytes. Accepted by echoing it (§7.1.2.1).
    pub server_max_window_bits: Option<u8>,
    /// The client offered `client_max_window_bits` (so the response may carry it).
    pub client_max_window_bits_offered: bool,
}

impl Negotiated {
    /// The longest payload the shared (window 32 KiB) compressor output may carry for this peer:
    /// back-references of a message without context takeover never reach further than its own
    /// length, so a message no longer than the peer's window is valid for it whatever window
    /// the compressor used; longer ones go uncompressed to a peer that asked for a small window.
    pub fn max_shared_len(&self) -> usize {
        match self.server_max_window_bits {
            Some(bits) if bits < MAX_WINDOW_BITS => 1 << bits,
            _ => usize::MAX,
        }
    }
}

/// One offer's parameters, as parsed (§7.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: offered without a value.
    client_max_window_bits: Option<Option<u8>>,
}

/// Why one offer was declined (the server goes on to the next offer, §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decline {
    /// A parameter not defined for an offer.
    UnknownParameter,
    /// A parameter given twice.
    DuplicateParameter,
    /// A value where none is allowed, none where one is required, or one out of 8..=15.
    BadValue,
}

/// The first acceptable `permessage-deflate` offer, over every `Sec-WebSocket-Extensions` line
/// in order; `None` when there is none (the connection goes on uncompressed). Offers with an
/// unknown, duplicate or invalid parameter are declined, as §7 requires of a server; a bad offer
/// never fails the handshake.
pub fn negotiate(req: &httparse::Request<'_, '_>, cfg: &DeflateConfig) -> Option<Negotiated> {
    if !cfg.enabled {
        return None;
    }
    req.headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions"))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .find_map(|ext| {
            let mut parts = ext.split(|&b| b == b';');
            let name = trim(parts.next().unwrap_or_default());
            if !name.eq_ignore_ascii_case(EXTENSION) {
                return None;
            }
            parse_offer(parts).ok().map(|o| Negotiated {
                server_max_window_bits: o.server_max_window_bits,
                client_max_window_bits_offered: o.client_max_window_bits.is_some(),
            })
        })
}

fn parse_offer<'a>(params: impl Iterator<Item = &'a [u8]>) -> Result<Offer, Decline> {
    let mut o = Offer::default();
    for p in params {
        let (name, value) = match p.iter().position(|&b| b == b'=') {
            Some(i) => (trim(&p[..i]), Some(unquote(trim(&p[i + 1..])))),
            None => (trim(p), None),
        };
        let flag = |set: &mut bool| -> Result<(), Decline> {
            if value.is_some() {
                return Err(Decline::BadValue);
            }
            if std::mem::replace(set, true) {
                return Err(Decline::DuplicateParameter);
            }
            Ok(())
        };
        if name.eq_ignore_ascii_case(b"server_no_context_takeover") {
            flag(&mut o.server_no_context_takeover)?;
        } else if name.eq_ignore_ascii_case(b"client_no_context_takeover") {
            flag(&mut o.client_no_context_takeover)?;
        } else if name.eq_ignore_ascii_case(b"server_max_window_bits") {
            let bits = window_bits(value.ok_or(Decline::BadValue)?)?;
            if o.server_max_window_bits.replace(bits).is_some() {
                return Err(Decline::DuplicateParameter);
            }
        } else if name.eq_ignore_ascii_case(b"client_max_window_bits") {
            let bits = value.map(window_bits).transpose()?;
            if o.client_max_window_bits.replace(bits).is_some() {
                return Err(Decline::DuplicateParameter);
            }
        } else {
            return Err(Decline::UnknownParameter);
        }
    }
    Ok(o)
}

/// A quoted-string value (`"10"`) is the same as the token (§7.1).
fn unquote(v: &[u8]) -> &[u8] {
    match v {
        [b'"', inner @ .., b'"'] => inner,
        v => v,
    }
}

/// `1*DIGIT` without leading zeros, 8 to 15 (§7.1.2.1).
fn window_bits(v: &[u8]) -> Result<u8, Decline> {
    match v {
        [d @ b'8'..=b'9'] => Ok(d - b'0'),
        [b'1', d @ b'0'..=b'5'] => Ok(10 + d - b'0'),
        _ => Err(Decline::BadValue),
    }
}

/// Add the extension line for an accepted offer to a complete `101` response in `out` (before
/// the blank line that ends it).
pub fn write_response(out: &mut Vec<u8>, n: &Negotiated) {
    if out.ends_with(b"\r\n\r\n") {
        out.truncate(out.len() - 2);
    }
    out.extend_from_slice(
        b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    );
    if let Some(bits) = n.server_max_window_bits {
        // The same value as offered accepts it (§7.1.2.1); `bits` is 8..=15, one or two digits.
        out.extend_from_slice(b"; server_max_window_bits=");
        if bits >= 10 {
            out.push(b'1');
        }
        out.push(b'0' + bits % 10);
    }
    out.extend_from_slice(b"\r\n\r\n");
}

/// A compressed message that cannot be inflated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InflateError {
    /// The inflated message passed the message limit (1009).
    TooBig,
    /// Not DEFLATE data (1007).
    Corrupt,
    /// Inflated text that is not UTF-8 (1007).
    InvalidUtf8,
}

/// The inflater of one compressed client message, alive from its first frame to its last.
pub struct Inflater {
    z: Decompress,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Inflater")
    }
}

impl Default for Inflater {
    fn default() -> Self {
        Inflater::new()
    }
}

impl Inflater {
    /// A raw-DEFLATE inflater with the largest window (any peer's window fits).
    pub fn new() -> Inflater {
        Inflater {
            z: Decompress::new_with_window_bits(false, MAX_WINDOW_BITS),
        }
    }

    /// Inflate `input` (the next compressed payload bytes) onto `out`, never letting `out` grow
    /// past `limit` bytes: the step that would is cut off and reported, so a bomb costs at most
    /// the limit. New text bytes go through `utf8` as they appear.
    pub fn inflate(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
        mut utf8: Option<(&Kernels, &mut Validator)>,
    ) -> Result<(), InflateError> {
        loop {
            if out.len() == out.capacity() {
                // Room for at most one byte past the limit: enough to see it was passed.
                let room = out.len().clamp(256, 64 << 10);
                let cap = (limit + 1).saturating_sub(out.len());
                out.reserve_exact(room.min(cap).max(1));
            }
            let (in0, start) = (self.z.total_in(), out.len());
            let status = self
                .z
                .decompress_vec(input, out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Corrupt)?;
            if out.len() > limit {
                return Err(InflateError::TooBig);
            }
            if let Some((k, v)) = utf8.as_mut() {
                v.feed(k, &out[start..])
                    .map_err(|_| InflateError::InvalidUtf8)?;
            }
            // At most `input.len()`: fits in usize.
            let used = (self.z.total_in() - in0) as usize;
            input = &input[used..];
            let produced = out.len() > start;
            match status {
                Status::StreamEnd => return Ok(()),
                _ if input.is_empty() && out.len() < out.capacity() => return Ok(()),
                _ if used == 0 && !produced && out.len() < out.capacity() => {
                    return Err(InflateError::Corrupt)
                }
                _ => {}
            }
        }
    }

    /// The message ended: inflate the removed tail (§7.2.2).
    pub fn finish(
        &mut self,
        out: &mut Vec<u8>,
        limit: usize,
        utf8: Option<(&Kernels, &mut Validator)>,
    ) -> Result<(), InflateError> {
        self.inflate(&TAIL, out, limit, utf8)
    }
}

/// The shard's compressor: one for all its connections, created on first use. Every message is
/// compressed whole and on its own (no context takeover), which is what libdeflate does: it
/// compresses one buffer in one call, without the streaming state of zlib.
#[derive(Default)]
pub struct Deflater {
    z: Option<Box<libdeflater::Compressor>>,
    /// The last compressed payload.
    buf: Vec<u8>,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deflater")
    }
}

impl Deflater {
    /// Compress one whole message. `None` when it would not be shorter than `payload` (it is
    /// then sent uncompressed).
    ///
    /// libdeflate ends its output with a final block (BFINAL set, §7.2.3.3 of RFC 7692 allows
    /// it); §7.2.1 then appends an empty stored block and removes its last 4 bytes: what stays
    /// of it is its first byte, 0x00, since the final block already ends on a byte boundary.
    pub fn compress(&mut self, payload: &[u8]) -> Option<&[u8]> {
        let z = self.z.get_or_insert_with(|| {
            // LEVEL is within libdeflate's 0..=12; the default (6) is never used.
            let level = libdeflater::CompressionLvl::new(LEVEL).unwrap_or_default();
            Box::new(libdeflater::Compressor::new(level))
        });
        let bound = z.deflate_compress_bound(payload.len());
        self.buf.clear();
        self.buf.resize(bound, 0);
        let n = z.deflate_compress(payload, &mut self.buf).ok()?;
        self.buf.truncate(n);
        self.buf.push(0x00);
        (self.buf.len() < payload.len()).then_some(&self.buf[..])
    }

    /// A whole compressed frame (RSV1 set) for `payload`, or `None` when compressing does not
    /// pay.
    pub fn frame(&mut self, opcode: Opcode, payload: &[u8], out: &mut Vec<u8>) -> bool {
        let Some(packed) = self.compress(payload) else {
            return false;
        };
        let mut h = [0u8; MAX_HEADER_LEN];
        let n = encode_header(&mut h, true, opcode, packed.len() as u64, None);
        h[0] |= frame_simd::RSV1;
        out.reserve(n + packed.len());
        out.extend_from_slice(&h[..n]);
        out.extend_from_slice(packed);
        true
    }
}

/// How one connection's outgoing data messages are compressed, handed to the [`Output`] of each
/// call (`None`: not negotiated).
///
/// [`Output`]: crate::conn::Output
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendDeflate {
    /// Shortest payload compressed.
    pub threshold_bytes: usize,
    /// Longest payload compressed (see [`Negotiated::max_shared_len`]).
    pub max_bytes: usize,
}

impl SendDeflate {
    /// For a connection with `n` under `cfg`.
    pub fn new(n: &Negotiated, cfg: &DeflateConfig) -> SendDeflate {
        SendDeflate {
            threshold_bytes: cfg.threshold_bytes,
            max_bytes: n.max_shared_len(),
        }
    }

    /// Whether a payload of `len` bytes is worth compressing for this peer.
    pub fn wants(&self, len: usize) -> bool {
        len >= self.threshold_bytes && len <= self.max_bytes
    }
}

/// A shared (uncompressed) frame and, once some recipient wanted it, its compressed twin: a
/// broadcast is compressed at most once per shard, only when a recipient negotiated the
/// extension, and every such recipient queues the same bytes.
#[derive(Debug)]
pub struct Packed<'a> {
    plain: &'a Arc<[u8]>,
    /// `None`: not tried yet; `Some(None)`: compressing did not pay.
    packed: Option<Option<Arc<[u8]>>>,
}

impl<'a> Packed<'a> {
    /// Wrap a complete unmasked, unfragmented, uncompressed frame.
    pub fn new(plain: &'a Arc<[u8]>) -> Packed<'a> {
        Packed {
            plain,
            packed: None,
        }
    }

    /// The uncompressed frame.
    pub fn plain(&self) -> &'a Arc<[u8]> {
        self.plain
    }

    /// The frame to queue for a peer with `send` (`None`: it did not negotiate compression).
    pub fn for_peer(&mut self, send: Option<SendDeflate>, d: &mut Deflater) -> &Arc<[u8]> {
        let Some(send) = send else {
            return self.plain;
        };
        let (opcode, payload) = split_frame(self.plain);
        if !send.wants(payload.len()) {
            return self.plain;
        }
        let plain = self.plain;
        let packed = self.packed.get_or_insert_with(|| {
            let opcode = opcode?;
            let mut frame = Vec::new();
            d.frame(opcode, payload, &mut frame)
                .then(|| Arc::from(frame))
        });
        packed.as_ref().unwrap_or(plain)
    }
}

/// The opcode and payload of a complete unmasked frame built by this server.
fn split_frame(frame: &[u8]) -> (Option<Opcode>, &[u8]) {
    let opcode = frame.first().and_then(|b| Opcode::from_u8(b & 0x0f));
    let header = match frame.get(1).map(|b| b & 0x7f) {
        Some(126) => 4,
        Some(127) => 10,
        _ => 2,
    };
    (opcode, frame.get(header..).unwrap_or_default())
}

#[cfg(test)]
mod tests;
