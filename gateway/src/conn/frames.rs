//! Frame assembly for one connection: bytes in (in whatever pieces reads deliver them), messages
//! and control frames out (RFC 6455 §5).
//!
//! Headers are parsed with `frame-simd`; payloads are unmasked in place in the read buffer, text
//! fused with UTF-8 validation so invalid text fails as soon as the bad byte arrives (§8.1).
//! Between reads the reader keeps only what it must: up to 13 header bytes, the frame position
//! (mask phase), the UTF-8 carry, and the bytes of an unfinished message or control frame, freed
//! as soon as it completes. A message whose single frame arrives whole in one read is handed out
//! straight from the read buffer with no copy.

use frame_simd::{
    fused, mask, parse_header, CloseCode, HeaderError, Kernels, MaskKey, Opcode, ParseConfig,
    Parsed, Role, Validator, MAX_HEADER_LEN, RSV1,
};

use super::deflate::{InflateError, Inflater};

/// Per-connection limits on what a peer may send.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest payload of one frame.
    pub max_frame_bytes: u64,
    /// Largest reassembled message.
    pub max_message_bytes: u64,
    /// Most frames in one message, the first included.
    pub max_fragments: u32,
}

/// What the reader hands out.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A complete text (validated UTF-8) or binary message.
    Data {
        /// `Text` or `Binary`.
        opcode: Opcode,
        /// The unmasked payload (the reader's buffer: the receiver may change it in place).
        payload: &'a mut [u8],
    },
    /// A ping and its payload.
    Ping(&'a [u8]),
    /// A pong and its payload.
    Pong(&'a [u8]),
    /// A close frame's raw payload (code and reason, unchecked).
    Close(&'a [u8]),
    /// The peer broke a rule; the connection must be closed with its code. Reading goes on in
    /// skip mode so the peer's close can still be seen.
    Violation(FrameError),
}

/// Whether the reader should go on after a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep parsing.
    Continue,
    /// Stop: every later byte is discarded.
    Stop,
}

/// A frame sequence RFC 6455 or the limits forbid. Each variant knows its close code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The header broke a rule (or the frame limit).
    Header(HeaderError),
    /// A continuation frame with no message started (§5.4).
    ContinuationWithoutStart,
    /// A text or binary frame while a fragmented message is unfinished (§5.4).
    MessageNotFinished,
    /// The message grew past `max_message_bytes`.
    MessageTooBig,
    /// The message has more than `max_fragments` frames.
    TooManyFragments,
    /// Text that is not UTF-8 (§8.1).
    InvalidUtf8,
    /// A compressed message that is not DEFLATE data (RFC 7692 §6.2).
    BadCompressedData,
}

impl FrameError {
    /// The close code the connection is closed with (§7.4.1).
    pub fn close_code(&self) -> CloseCode {
        match self {
            Self::Header(e) => e.close_code(),
            Self::ContinuationWithoutStart | Self::MessageNotFinished => CloseCode::PROTOCOL_ERROR,
            Self::MessageTooBig | Self::TooManyFragments => CloseCode::MESSAGE_TOO_BIG,
            Self::InvalidUtf8 | Self::BadCompressedData => CloseCode::INVALID_PAYLOAD,
        }
    }

    /// A short reason for the close frame.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Header(HeaderError::OverLimit { .. }) => "frame too big",
            Self::Header(HeaderError::MaskRule(_)) => "unmasked frame",
            Self::Header(_) => "bad frame header",
            Self::ContinuationWithoutStart => "continuation without a message",
            Self::MessageNotFinished => "new message before the previous ended",
            Self::MessageTooBig => "message too big",
            Self::TooManyFragments => "too many fragments",
            Self::InvalidUtf8 => "invalid UTF-8",
            Self::BadCompressedData => "bad compressed data",
        }
    }
}

/// How much of the input the reader acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Every rule enforced, everything handed out.
    Normal,
    /// After a violation or our close: frames are delimited leniently (any opcode, RSV or mask
    /// bit, any length) and skipped, except control frames, which are still handed out so the
    /// peer's close completes the closing handshake (§7.1.2).
    Skip,
    /// Nothing is looked at any more.
    Discard,
}

/// The frame whose payload is being read.
#[derive(Clone, Copy, Debug)]
struct InFrame {
    opcode: Opcode,
    fin: bool,
    key: MaskKey,
    len: u64,
    /// Payload bytes already seen: the mask phase.
    done: u64,
    /// RSV1: the first frame of a compressed message (permessage-deflate).
    rsv1: bool,
}

/// The data message being assembled.
#[derive(Clone, Copy, Debug)]
struct InMessage {
    opcode: Opcode,
    fragments: u32,
    /// Bytes announced so far (sum of frame lengths).
    len: u64,
    /// Compressed (permessage-deflate): inflated as it arrives.
    compressed: bool,
}

/// A header as the reader needs it.
#[derive(Clone, Copy, Debug)]
struct Head {
    frame: InFrame,
    /// Bytes the header took.
    len: usize,
}

/// What an unfinished message or control frame keeps between reads. Most messages arrive
/// whole in one read and never need it, so it lives behind a pointer that is null between
/// messages: a quiet connection does not carry it.
#[derive(Debug, Default)]
struct Partial {
    /// Bytes of an unfinished data message.
    data: Vec<u8>,
    /// Bytes of a control frame split across reads.
    control: Vec<u8>,
    /// The inflater of the compressed message being read.
    inflater: Option<Box<Inflater>>,
}

impl Partial {
    fn is_empty(&self) -> bool {
        self.data.capacity() == 0 && self.control.capacity() == 0 && self.inflater.is_none()
    }
}

/// Per-connection frame reader state.
#[derive(Debug)]
pub struct FrameReader {
    /// The start of a header split across reads: at most one byte short of the longest
    /// header (a byte more would complete it), which keeps the connection's slot 8 bytes
    /// smaller.
    header: [u8; MAX_HEADER_LEN - 1],
    header_len: u8,
    mode: Mode,
    /// permessage-deflate was negotiated: RSV1 marks compressed messages.
    deflate: bool,
    frame: Option<InFrame>,
    message: Option<InMessage>,
    utf8: Validator,
    /// Bytes kept between reads (`None` when nothing is pending).
    partial: Option<Box<Partial>>,
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader {
            header: [0; MAX_HEADER_LEN - 1],
            header_len: 0,
            mode: Mode::Normal,
            deflate: false,
            frame: None,
            message: None,
            utf8: Validator::new(),
            partial: None,
        }
    }
}

impl FrameReader {
    /// permessage-deflate was negotiated: accept RSV1 on first frames and inflate those
    /// messages.
    pub fn enable_deflate(&mut self) {
        self.deflate = true;
    }
    /// Skip data frames from now on (a close was sent or a rule broken): only control frames
    /// come out. Frees any partial message.
    pub fn skip_data(&mut self) {
        if self.mode == Mode::Normal {
            self.mode = Mode::Skip;
        }
        if let Some(p) = self.partial.as_deref_mut() {
            p.data = Vec::new();
            p.inflater = None;
        }
        self.message = None;
        self.tidy();
    }

    /// Discard everything from now on and free retained bytes.
    pub fn discard(&mut self) {
        self.mode = Mode::Discard;
        self.frame = None;
        self.message = None;
        self.partial = None;
    }

    /// Bytes retained for unfinished frames and messages (capacity, not length).
    pub fn retained_bytes(&self) -> usize {
        self.partial
            .as_deref()
            .map_or(0, |p| p.data.capacity() + p.control.capacity())
    }

    /// The partial state, made on first use.
    fn partial(&mut self) -> &mut Partial {
        self.partial.get_or_insert_with(Box::default)
    }

    /// Free the partial state once nothing is pending in it.
    fn tidy(&mut self) {
        if self.partial.as_deref().is_some_and(Partial::is_empty) {
            self.partial = None;
        }
    }

    /// Feed bytes as they were read (masked); they are unmasked in place. `on` receives each
    /// complete message, control frame and violation in wire order. After a violation the
    /// reader keeps going in skip mode (data skipped, control frames still handed out).
    pub fn on_read<F>(&mut self, mut bytes: &mut [u8], k: &Kernels, limits: &Limits, mut on: F)
    where
        F: FnMut(Message<'_>) -> Flow,
    {
        if self.between_messages() {
            bytes = self.whole_small_messages(bytes, k, limits, &mut on);
        }
        self.on_read_general(bytes, k, limits, &mut on);
    }

    /// Nothing is carried from earlier reads: no header start, no frame or message under way,
    /// every rule enforced, nothing compressed to watch for.
    fn between_messages(&self) -> bool {
        self.header_len == 0
            && self.frame.is_none()
            && self.message.is_none()
            && self.mode == Mode::Normal
            && !self.deflate
    }

    /// The common case, taken while [`Self::between_messages`] holds: frames that are whole
    /// messages of at most 125 bytes (FIN, no RSV bit, text or binary, masked, a 7-bit length,
    /// within both limits) and lie whole in `bytes` are handed out with no state written
    /// between them. Returns the bytes from the first frame that is anything else (a control
    /// frame, a fragment, a longer or cut frame, or one that breaks a rule), which the general
    /// path then reads with exactly the state it would have had; the outcome is the same as
    /// if the general path had read everything.
    fn whole_small_messages<'b, F>(
        &mut self,
        mut bytes: &'b mut [u8],
        k: &Kernels,
        limits: &Limits,
        on: &mut F,
    ) -> &'b mut [u8]
    where
        F: FnMut(Message<'_>) -> Flow,
    {
        /// Header bytes of a masked frame with a 7-bit length.
        const SHORT_HEADER: usize = 6;
        while let [b0, b1, k0, k1, k2, k3, ..] = *bytes {
            let opcode = match b0 {
                0x81 => Opcode::Text,
                0x82 => Opcode::Binary,
                _ => break,
            };
            let len = usize::from(b1 & 0x7F);
            // `len < 126`, so the casts below are exact.
            if b1 & 0x80 == 0
                || len >= 126
                || len as u64 > limits.max_frame_bytes
                || len as u64 > limits.max_message_bytes
                || bytes.len() < SHORT_HEADER + len
            {
                break;
            }
            let (frame, rest) = std::mem::take(&mut bytes).split_at_mut(SHORT_HEADER + len);
            let payload = &mut frame[SHORT_HEADER..];
            let key = MaskKey([k0, k1, k2, k3]);
            if opcode == Opcode::Text {
                let valid = fused::unmask_validate(k, payload, key, 0, &mut self.utf8)
                    .and_then(|()| self.utf8.finish());
                if valid.is_err() {
                    // As the general path leaves it: the frame is used up, the reader skips.
                    self.utf8 = Validator::new();
                    self.after(Err(FrameError::InvalidUtf8), on);
                    return rest;
                }
            } else {
                mask::unmask(k, payload, key, 0);
            }
            if on(Message::Data { opcode, payload }) == Flow::Stop {
                self.discard();
                return rest;
            }
            bytes = rest;
        }
        bytes
    }

    /// Every frame and every rule, with state carried across reads.
    fn on_read_general<F>(&mut self, mut bytes: &mut [u8], k: &Kernels, limits: &Limits, on: &mut F)
    where
        F: FnMut(Message<'_>) -> Flow,
    {
        while !bytes.is_empty() && self.mode != Mode::Discard {
            let Some(frame) = self.frame else {
                match self.read_header(bytes, limits) {
                    Ok(Some(used)) => {
                        bytes = &mut bytes[used..];
                        let Some(frame) = self.frame else {
                            continue;
                        };
                        if let Err(e) = self.start_frame(frame, limits) {
                            // The header is consumed and the frame stays current, so its
                            // payload is skipped as payload, not misread as headers.
                            if frame.len == 0 {
                                self.frame = None;
                            }
                            self.after(Err(e), on);
                        } else if frame.len == 0 {
                            self.frame = None;
                            let flow = self.payload(frame, &mut [], k, limits, on);
                            self.after(flow, on);
                        }
                    }
                    Ok(None) => return,
                    // Nothing was consumed: the same bytes are read again leniently.
                    Err(e) => self.after(Err(e), on),
                }
                continue;
            };
            let left = frame.len - frame.done;
            // `n` fits in usize: it is at most `bytes.len()`.
            let n = left.min(bytes.len() as u64) as usize;
            let (chunk, rest) = std::mem::take(&mut bytes).split_at_mut(n);
            bytes = rest;
            let done = frame.done + n as u64;
            self.frame = (done < frame.len).then_some(InFrame { done, ..frame });
            let flow = self.payload(frame, chunk, k, limits, on);
            self.after(flow, on);
        }
    }

    fn after<F>(&mut self, flow: Result<Flow, FrameError>, on: &mut F)
    where
        F: FnMut(Message<'_>) -> Flow,
    {
        match flow {
            Ok(Flow::Continue) => {}
            Ok(Flow::Stop) => self.discard(),
            Err(e) => {
                self.skip_data();
                if on(Message::Violation(e)) == Flow::Stop {
                    self.discard();
                }
            }
        }
    }

    /// Parse a header from the carried bytes plus `bytes`. `Ok(Some(n))`: a header was read using
    /// `n` bytes of `bytes`, and `self.frame` describes it (message rules not checked yet).
    /// `Ok(None)`: every byte was carried. On error nothing of `bytes` was consumed.
    fn read_header(&mut self, bytes: &[u8], limits: &Limits) -> Result<Option<usize>, FrameError> {
        let have = usize::from(self.header_len);
        let (head, used) = if have == 0 {
            match self.parse(bytes, limits)? {
                None => {
                    // A header is at most 14 bytes, so fewer than that are here.
                    let n = bytes.len().min(MAX_HEADER_LEN - 1);
                    self.header[..n].copy_from_slice(&bytes[..n]);
                    self.header_len = n as u8;
                    return Ok(None);
                }
                Some(head) => (head, head.len),
            }
        } else {
            let take = (MAX_HEADER_LEN - have).min(bytes.len());
            let mut joined = [0u8; MAX_HEADER_LEN];
            joined[..have].copy_from_slice(&self.header[..have]);
            joined[have..have + take].copy_from_slice(&bytes[..take]);
            match self.parse(&joined[..have + take], limits) {
                Ok(None) => {
                    // Still incomplete, so shorter than the longest header.
                    let n = (have + take).min(MAX_HEADER_LEN - 1);
                    self.header[..n].copy_from_slice(&joined[..n]);
                    self.header_len = n as u8;
                    return Ok(None);
                }
                Ok(Some(head)) => {
                    self.header_len = 0;
                    (head, head.len - have)
                }
                Err(e) => return Err(e),
            }
        };
        self.frame = Some(head.frame);
        Ok(Some(used))
    }

    /// A header from the front of `buf` (`None`: need more bytes): strictly by RFC 6455 in
    /// normal mode, leniently in skip mode.
    fn parse(&self, buf: &[u8], limits: &Limits) -> Result<Option<Head>, FrameError> {
        if self.mode != Mode::Normal {
            return Ok(parse_lenient(buf));
        }
        let cfg = ParseConfig {
            role: Role::Server,
            rsv_allowed: if self.deflate { RSV1 } else { 0 },
            max_payload: limits.max_frame_bytes,
        };
        match parse_header(buf, &cfg).map_err(FrameError::Header)? {
            Parsed::Need(_) => Ok(None),
            Parsed::Header { header, len } => {
                let Some(key) = header.mask_key else {
                    return Err(FrameError::Header(HeaderError::MaskRule(Role::Server)));
                };
                Ok(Some(Head {
                    frame: InFrame {
                        opcode: header.opcode,
                        fin: header.fin,
                        key,
                        len: header.payload_len,
                        done: 0,
                        rsv1: header.rsv & RSV1 != 0,
                    },
                    len,
                }))
            }
        }
    }

    /// Message-level rules for a new frame (§5.4) and the message limits.
    fn start_frame(&mut self, frame: InFrame, limits: &Limits) -> Result<(), FrameError> {
        let (opcode, len) = (frame.opcode, frame.len);
        if opcode.is_control() || self.mode != Mode::Normal {
            return Ok(());
        }
        let message = match (opcode, self.message) {
            (Opcode::Continuation, None) => return Err(FrameError::ContinuationWithoutStart),
            (Opcode::Continuation, Some(m)) => {
                if m.fragments >= limits.max_fragments {
                    return Err(FrameError::TooManyFragments);
                }
                InMessage {
                    fragments: m.fragments + 1,
                    len: m.len.saturating_add(len),
                    ..m
                }
            }
            (_, Some(_)) => return Err(FrameError::MessageNotFinished),
            (opcode, None) => InMessage {
                opcode,
                fragments: 1,
                len,
                compressed: frame.rsv1,
            },
        };
        if message.len > limits.max_message_bytes {
            return Err(FrameError::MessageTooBig);
        }
        self.message = Some(message);
        Ok(())
    }

    /// Handle `chunk`, the next piece of `frame`'s payload (`frame.done` is its offset).
    fn payload<F>(
        &mut self,
        frame: InFrame,
        chunk: &mut [u8],
        k: &Kernels,
        limits: &Limits,
        on: &mut F,
    ) -> Result<Flow, FrameError>
    where
        F: FnMut(Message<'_>) -> Flow,
    {
        let last = frame.done + chunk.len() as u64 == frame.len;
        let whole = frame.done == 0 && last;
        // Only the phase modulo 4 matters; the cast keeps those bits.
        let phase = (frame.done % 4) as usize;
        if frame.opcode.is_control() {
            mask::unmask(k, chunk, frame.key, phase);
            if whole {
                return Ok(on(control(frame.opcode, chunk)));
            }
            self.partial().control.extend_from_slice(chunk);
            if !last {
                return Ok(Flow::Continue);
            }
            let payload = std::mem::take(&mut self.partial().control);
            self.tidy();
            return Ok(on(control(frame.opcode, &payload)));
        }
        if self.mode != Mode::Normal {
            return Ok(Flow::Continue);
        }
        let Some(message) = self.message else {
            return Err(FrameError::ContinuationWithoutStart);
        };
        let text = message.opcode == Opcode::Text;
        if message.compressed {
            mask::unmask(k, chunk, frame.key, phase);
            return self.inflate(chunk, last && frame.fin, text, k, limits, on);
        }
        if text {
            fused::unmask_validate(k, chunk, frame.key, phase, &mut self.utf8)
                .map_err(|_| FrameError::InvalidUtf8)?;
        } else {
            mask::unmask(k, chunk, frame.key, phase);
        }
        let ends_message = last && frame.fin;
        if ends_message && whole && message.fragments == 1 {
            self.message = None;
            if text {
                self.utf8.finish().map_err(|_| FrameError::InvalidUtf8)?;
            }
            return Ok(on(Message::Data {
                opcode: message.opcode,
                payload: chunk,
            }));
        }
        self.partial().data.extend_from_slice(chunk);
        if !ends_message {
            return Ok(Flow::Continue);
        }
        self.message = None;
        if text {
            self.utf8.finish().map_err(|_| FrameError::InvalidUtf8)?;
        }
        let mut payload = std::mem::take(&mut self.partial().data);
        self.tidy();
        Ok(on(Message::Data {
            opcode: message.opcode,
            payload: &mut payload,
        }))
    }
}

impl FrameReader {
    /// The next (unmasked) piece of a compressed message: inflated onto the message buffer as
    /// it arrives, text validated as it inflates; the message is handed out once its last
    /// frame is in. The inflater lives only while the message does (no client context
    /// takeover was agreed, see `conn::deflate`).
    fn inflate<F>(
        &mut self,
        chunk: &[u8],
        ends_message: bool,
        text: bool,
        k: &Kernels,
        limits: &Limits,
        on: &mut F,
    ) -> Result<Flow, FrameError>
    where
        F: FnMut(Message<'_>) -> Flow,
    {
        let limit = usize::try_from(limits.max_message_bytes).unwrap_or(usize::MAX);
        let p = &mut **self.partial.get_or_insert_with(Box::default);
        let inflater = p.inflater.get_or_insert_with(|| Box::new(Inflater::new()));
        let utf8 = text.then_some((k, &mut self.utf8));
        let done = inflater.inflate(chunk, &mut p.data, limit, utf8);
        let done = done.and_then(|()| {
            if !ends_message {
                return Ok(());
            }
            let utf8 = text.then_some((k, &mut self.utf8));
            inflater.finish(&mut p.data, limit, utf8)
        });
        done.map_err(|e| match e {
            InflateError::TooBig => FrameError::MessageTooBig,
            InflateError::Corrupt => FrameError::BadCompressedData,
            InflateError::InvalidUtf8 => FrameError::InvalidUtf8,
        })?;
        if !ends_message {
            return Ok(Flow::Continue);
        }
        self.message = None;
        let mut payload = std::mem::take(&mut self.partial().data);
        self.partial().inflater = None;
        self.tidy();
        if text {
            self.utf8.finish().map_err(|_| FrameError::InvalidUtf8)?;
        }
        Ok(on(Message::Data {
            opcode: if text { Opcode::Text } else { Opcode::Binary },
            payload: &mut payload,
        }))
    }
}

/// Delimit a frame without judging it: any opcode, RSV and mask bit, any length. Reserved
/// opcodes and oversized control frames come out as binary (skipped as data).
fn parse_lenient(buf: &[u8]) -> Option<Head> {
    let [b0, b1, ..] = *buf else {
        return None;
    };
    let (len, at) = match b1 & 0x7F {
        126 => {
            let [_, _, l0, l1, ..] = *buf else {
                return None;
            };
            (u64::from(u16::from_be_bytes([l0, l1])), 4)
        }
        127 => {
            let bytes: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(bytes), 10)
        }
        short => (u64::from(short), 2),
    };
    let (key, len_hdr) = if b1 & 0x80 != 0 {
        let k: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
        (MaskKey(k), at + 4)
    } else {
        (MaskKey([0; 4]), at)
    };
    let opcode = match Opcode::from_u8(b0 & 0x0F) {
        Some(op) if op.is_control() && len > 125 => Opcode::Binary,
        Some(op) => op,
        None => Opcode::Binary,
    };
    Some(Head {
        frame: InFrame {
            opcode,
            fin: b0 & 0x80 != 0,
            key,
            len,
            done: 0,
            rsv1: false,
        },
        len: len_hdr,
    })
}

fn control(opcode: Opcode, payload: &[u8]) -> Message<'_> {
    match opcode {
        Opcode::Ping => Message::Ping(payload),
        Opcode::Pong => Message::Pong(payload),
        _ => Message::Close(payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use frame_simd::encode_header;

    const KEY: MaskKey = MaskKey([0x37, 0xfa, 0x21, 0x3d]);
    const LIMITS: Limits = Limits {
        max_frame_bytes: 1 << 20,
        max_message_bytes: 1 << 20,
        max_fragments: 8,
    };

    /// A masked client frame with any FIN and opcode.
    fn frame(fin: bool, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
        let mut h = [0u8; MAX_HEADER_LEN];
        let n = encode_header(&mut h, fin, opcode, payload.len() as u64, Some(KEY));
        let mut out = h[..n].to_vec();
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY.0[i % 4]));
        out
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Got {
        Text(String),
        Binary(Vec<u8>),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Vec<u8>),
    }

    /// Feed `wire` in pieces of `step` bytes; collect what comes out and the error.
    fn feed(reader: &mut FrameReader, wire: &[u8], step: usize) -> (Vec<Got>, Option<FrameError>) {
        let k = Kernels::detect();
        let mut got = Vec::new();
        let mut wire = wire.to_vec();
        for piece in wire.chunks_mut(step) {
            let mut err = None;
            reader.on_read(piece, &k, &LIMITS, |m| {
                got.push(match m {
                    Message::Data {
                        opcode: Opcode::Text,
                        payload,
                    } => Got::Text(String::from_utf8(payload.to_vec()).unwrap()),
                    Message::Data { payload, .. } => Got::Binary(payload.to_vec()),
                    Message::Ping(p) => Got::Ping(p.to_vec()),
                    Message::Pong(p) => Got::Pong(p.to_vec()),
                    Message::Close(p) => Got::Close(p.to_vec()),
                    Message::Violation(e) => {
                        err = Some(e);
                        return Flow::Stop;
                    }
                });
                Flow::Continue
            });
            if err.is_some() {
                return (got, err);
            }
        }
        (got, None)
    }

    #[test]
    fn fragmented_text_with_interleaved_controls_in_every_chunking() {
        let mut wire = frame(false, Opcode::Text, "héllo ".as_bytes());
        wire.extend(frame(true, Opcode::Ping, b"p1"));
        wire.extend(frame(false, Opcode::Continuation, b""));
        wire.extend(frame(true, Opcode::Pong, b"p2"));
        wire.extend(frame(true, Opcode::Continuation, "wörld".as_bytes()));
        wire.extend(frame(true, Opcode::Binary, &[0, 1, 2]));
        for step in [1, 2, 3, 5, 7, 13, 64, wire.len()] {
            let mut r = FrameReader::default();
            let (got, err) = feed(&mut r, &wire, step);
            assert_eq!(err, None, "step {step}");
            assert_eq!(
                got,
                vec![
                    Got::Ping(b"p1".to_vec()),
                    Got::Pong(b"p2".to_vec()),
                    Got::Text("héllo wörld".into()),
                    Got::Binary(vec![0, 1, 2]),
                ],
                "step {step}"
            );
            assert_eq!(r.retained_bytes(), 0, "nothing kept after the message");
        }
    }

    #[test]
    fn invalid_utf8_fails_mid_frame_before_the_frame_ends() {
        let mut payload = b"ok".to_vec();
        payload.push(0xFF);
        payload.extend([b'a'; 100]);
        let wire = frame(true, Opcode::Text, &payload);
        let mut r = FrameReader::default();
        // Header (6 bytes) plus the first 3 payload bytes: the bad byte is in.
        let (got, err) = feed(&mut r, &wire[..9], 9);
        assert!(got.is_empty());
        assert_eq!(err, Some(FrameError::InvalidUtf8));
        assert_eq!(err.unwrap().close_code(), CloseCode::INVALID_PAYLOAD);
    }

    #[test]
    fn text_ending_inside_a_code_point_is_1007() {
        let mut r = FrameReader::default();
        let (_, err) = feed(&mut r, &frame(true, Opcode::Text, &[0xC3]), 64);
        assert_eq!(err, Some(FrameError::InvalidUtf8));
    }

    #[test]
    fn continuation_without_start_is_1002() {
        let mut r = FrameReader::default();
        let (_, err) = feed(&mut r, &frame(true, Opcode::Continuation, b"x"), 64);
        assert_eq!(err, Some(FrameError::ContinuationWithoutStart));
        assert_eq!(err.unwrap().close_code(), CloseCode::PROTOCOL_ERROR);
    }

    #[test]
    fn new_message_before_end_is_1002() {
        let mut wire = frame(false, Opcode::Text, b"a");
        wire.extend(frame(true, Opcode::Binary, b"b"));
        let (_, err) = feed(&mut FrameReader::default(), &wire, 64);
        assert_eq!(err, Some(FrameError::MessageNotFinished));
    }

    #[test]
    fn unmasked_frame_is_1002() {
        let (_, err) = feed(&mut FrameReader::default(), &[0x81, 0x01, b'a'], 64);
        assert!(matches!(
            err,
            Some(FrameError::Header(HeaderError::MaskRule(_)))
        ));
        assert_eq!(err.unwrap().close_code(), CloseCode::PROTOCOL_ERROR);
    }

    #[test]
    fn frame_over_limit_is_1009_before_any_payload() {
        // A 64-bit length of 2^62 and no payload: refused from the header alone.
        let mut wire = vec![0x82, 0xFF];
        wire.extend((1u64 << 62).to_be_bytes());
        let (_, err) = feed(&mut FrameReader::default(), &wire, 64);
        assert_eq!(
            err.map(|e| e.close_code()),
            Some(CloseCode::MESSAGE_TOO_BIG)
        );
    }

    #[test]
    fn message_over_limit_across_fragments_is_1009() {
        let half = vec![0u8; (LIMITS.max_message_bytes / 2 + 1) as usize];
        let mut wire = frame(false, Opcode::Binary, &half);
        wire.extend(frame(true, Opcode::Continuation, &half));
        let (got, err) = feed(&mut FrameReader::default(), &wire, 4096);
        assert!(got.is_empty());
        assert_eq!(err, Some(FrameError::MessageTooBig));
    }

    #[test]
    fn too_many_fragments_is_1009() {
        let mut wire = frame(false, Opcode::Binary, b"");
        for _ in 0..LIMITS.max_fragments {
            wire.extend(frame(false, Opcode::Continuation, b""));
        }
        let (_, err) = feed(&mut FrameReader::default(), &wire, 64);
        assert_eq!(err, Some(FrameError::TooManyFragments));
        assert_eq!(err.unwrap().close_code(), CloseCode::MESSAGE_TOO_BIG);
    }

    #[test]
    fn skipped_data_still_delivers_close() {
        let mut r = FrameReader::default();
        r.skip_data();
        let mut wire = frame(true, Opcode::Text, &[0xFF]);
        wire.extend(frame(true, Opcode::Close, &[0x03, 0xE8]));
        let (got, err) = feed(&mut r, &wire, 3);
        assert_eq!(err, None);
        assert_eq!(got, vec![Got::Close(vec![0x03, 0xE8])]);
    }

    #[test]
    fn stop_discards_the_rest() {
        let mut wire = frame(true, Opcode::Close, b"");
        wire.extend(frame(true, Opcode::Text, b"late"));
        let k = Kernels::detect();
        let mut r = FrameReader::default();
        let mut n = 0;
        r.on_read(&mut wire, &k, &LIMITS, |_| {
            n += 1;
            Flow::Stop
        });
        assert_eq!(n, 1);
    }
}

#[cfg(test)]
mod skip_tests {
    use super::*;
    use frame_simd::{encode_client_frame, encode_header};
    use proptest::prelude::*;

    const LIMITS: Limits = Limits {
        max_frame_bytes: 1 << 20,
        max_message_bytes: 1 << 20,
        max_fragments: 8,
    };

    /// Feed `wire` to a fresh reader in pieces of `step` bytes; one line per reported message.
    fn seen(wire: &[u8], step: usize) -> Vec<String> {
        let k = Kernels::detect();
        let mut r = FrameReader::default();
        let mut seen = Vec::new();
        for piece in wire.to_vec().chunks_mut(step) {
            r.on_read(piece, &k, &LIMITS, |m| {
                seen.push(match m {
                    Message::Violation(e) => format!("violation {}", e.close_code().0),
                    Message::Close(p) => format!("close {p:?}"),
                    other => format!("{other:?}"),
                });
                Flow::Continue
            });
        }
        seen
    }

    #[test]
    fn after_a_message_level_error_the_peer_close_is_still_found() {
        let key = MaskKey([1, 2, 3, 4]);
        // A continuation without a start (its payload must be skipped as payload), then close.
        let mut wire = Vec::new();
        encode_client_frame(&mut wire, Opcode::Continuation, b"orphan", key);
        encode_client_frame(&mut wire, Opcode::Close, &1002u16.to_be_bytes(), key);
        for step in [1, 5, wire.len()] {
            assert_eq!(
                seen(&wire, step),
                vec!["violation 1002", "close [3, 234]"],
                "step {step}"
            );
        }
    }

    #[test]
    fn after_a_bad_header_the_peer_close_is_still_found() {
        // Reserved opcode, then an unmasked text with RSV bits, then a masked close.
        let mut wire = vec![0x85, 0x80, 1, 2, 3, 4, 0xF1, 0x02, b'h', b'i'];
        let mut h = [0u8; MAX_HEADER_LEN];
        let key = MaskKey([9, 8, 7, 6]);
        let n = encode_header(&mut h, true, Opcode::Close, 2, Some(key));
        wire.extend(&h[..n]);
        wire.extend([0x03 ^ 9, 0xE8 ^ 8]);
        for step in [1, 3, wire.len()] {
            assert_eq!(
                seen(&wire, step),
                vec!["violation 1002", "close [3, 232]"],
                "step {step}"
            );
        }
    }

    /// One frame of a generated stream: mostly frames the short path takes, and every kind of
    /// frame that must leave it at the right point.
    fn any_frame() -> impl Strategy<Value = Vec<u8>> {
        let small = prop::collection::vec(any::<u8>(), 0..=125);
        let key = any::<[u8; 4]>().prop_map(MaskKey);
        prop_oneof![
            // Whole small text, valid UTF-8 (the common case).
            (".{0,40}", key.clone()).prop_map(|(t, key)| {
                let mut w = Vec::new();
                encode_client_frame(&mut w, Opcode::Text, t.as_bytes(), key);
                w
            }),
            // Whole small text with any bytes (mostly invalid UTF-8), and binary.
            (small.clone(), key.clone(), any::<bool>()).prop_map(|(p, key, text)| {
                let op = if text { Opcode::Text } else { Opcode::Binary };
                let mut w = Vec::new();
                encode_client_frame(&mut w, op, &p, key);
                w
            }),
            // Any FIN and opcode (fragments, controls, continuations).
            (small.clone(), key.clone(), any::<bool>(), 0u8..11).prop_map(|(p, key, fin, op)| {
                let op = Opcode::from_u8(op).unwrap_or(Opcode::Ping);
                let mut h = [0u8; MAX_HEADER_LEN];
                let n = encode_header(&mut h, fin, op, p.len() as u64, Some(key));
                let mut w = h[..n].to_vec();
                w.extend(p.iter().enumerate().map(|(i, b)| b ^ key.0[i % 4]));
                w
            }),
            // A 16-bit length (over 125 bytes).
            (prop::collection::vec(any::<u8>(), 126..300), key).prop_map(|(p, key)| {
                let mut w = Vec::new();
                encode_client_frame(&mut w, Opcode::Binary, &p, key);
                w
            }),
            // Raw bytes: bad bits (RSV, no mask, reserved opcodes) and truncated frames.
            prop::collection::vec(any::<u8>(), 1..12),
        ]
    }

    /// Everything a reader hands out, violations included, and what it keeps afterwards.
    fn transcript(
        wire: &[u8],
        steps: &[usize],
        limits: &Limits,
        stop_after: usize,
        fast: bool,
    ) -> Vec<String> {
        let k = Kernels::detect();
        let mut r = FrameReader::default();
        let mut seen = Vec::new();
        let mut wire = wire.to_vec();
        let mut rest = &mut wire[..];
        let mut i = 0;
        while !rest.is_empty() {
            let n = steps[i % steps.len()].min(rest.len());
            i += 1;
            let (piece, after) = std::mem::take(&mut rest).split_at_mut(n);
            rest = after;
            let mut on = |m: Message<'_>| {
                seen.push(format!("{m:?}"));
                if seen.len() >= stop_after {
                    Flow::Stop
                } else {
                    Flow::Continue
                }
            };
            if fast {
                r.on_read(piece, &k, limits, &mut on);
            } else {
                r.on_read_general(piece, &k, limits, &mut on);
            }
            seen.push(format!(
                "after read: mode {:?}, frame {:?}, message {:?}, header {}, kept {}",
                r.mode,
                r.frame,
                r.message,
                r.header_len,
                r.retained_bytes()
            ));
        }
        seen
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The short path for whole small messages changes nothing a peer or the app can see:
        /// the same messages, violations and kept state as the general path, read after read,
        /// for any stream, any cut into reads, any limits and a stop at any point.
        #[test]
        fn the_short_path_reads_exactly_as_the_general_path(
            frames in prop::collection::vec(any_frame(), 1..24),
            steps in prop::collection::vec(1usize..400, 1..6),
            max_frame in prop_oneof![Just(1u64 << 20), 0u64..140],
            max_message in prop_oneof![Just(1u64 << 20), 0u64..300],
            stop_after in prop_oneof![Just(usize::MAX), 1usize..30],
        ) {
            let wire: Vec<u8> = frames.concat();
            let limits = Limits { max_frame_bytes: max_frame, max_message_bytes: max_message, max_fragments: 4 };
            prop_assert_eq!(
                transcript(&wire, &steps, &limits, stop_after, true),
                transcript(&wire, &steps, &limits, stop_after, false)
            );
        }
    }
}
