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
    Parsed, Role, Validator, MAX_HEADER_LEN,
};

/// Per-connection limits on what a peer may send.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest payload of one frame.
    pub max_frame_bytes: u64,
    /// Largest reassembled message.
    pub max_message_bytes: u64,
    /// Most frames in one message.
    pub max_fragments: u32,
}

/// What the reader hands out.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A complete text (validated UTF-8) or binary message.
    Data {
        /// `Text` or `Binary`.
        opcode: Opcode,
        /// The unmasked payload.
        payload: &'a [u8],
    },
    /// A ping and its payload.
    Ping(&'a [u8]),
    /// A pong and its payload.
    Pong(&'a [u8]),
    /// A close frame's raw payload (code and reason, unchecked).
    Close(&'a [u8]),
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
}

impl FrameError {
    /// The close code the connection is closed with (§7.4.1).
    pub fn close_code(&self) -> CloseCode {
        match self {
            Self::Header(e) => e.close_code(),
            Self::ContinuationWithoutStart | Self::MessageNotFinished => CloseCode::PROTOCOL_ERROR,
            Self::MessageTooBig | Self::TooManyFragments => CloseCode::MESSAGE_TOO_BIG,
            Self::InvalidUtf8 => CloseCode::INVALID_PAYLOAD,
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
        }
    }
}

/// How much of the input the reader acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Everything.
    Normal,
    /// Data frames are skipped (after a close was sent); control frames still come out.
    IgnoreData,
    /// Nothing: the stream is no longer trusted or no longer wanted.
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
}

/// The data message being assembled.
#[derive(Clone, Copy, Debug)]
struct InMessage {
    opcode: Opcode,
    fragments: u32,
    /// Bytes announced so far (sum of frame lengths).
    len: u64,
}

/// Per-connection frame reader state.
#[derive(Debug)]
pub struct FrameReader {
    header: [u8; MAX_HEADER_LEN],
    header_len: u8,
    mode: Mode,
    frame: Option<InFrame>,
    message: Option<InMessage>,
    utf8: Validator,
    /// Bytes of an unfinished data message; unallocated when none is pending.
    data: Vec<u8>,
    /// Bytes of a control frame split across reads.
    control: Vec<u8>,
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader {
            header: [0; MAX_HEADER_LEN],
            header_len: 0,
            mode: Mode::Normal,
            frame: None,
            message: None,
            utf8: Validator::new(),
            data: Vec::new(),
            control: Vec::new(),
        }
    }
}

impl FrameReader {
    /// Skip data frames from now on (a close was sent; §5.5.1 lets us ignore data after it).
    /// Frees any partial message.
    pub fn ignore_data(&mut self) {
        if self.mode == Mode::Normal {
            self.mode = Mode::IgnoreData;
        }
        self.data = Vec::new();
        self.message = None;
    }

    /// Discard everything from now on and free retained bytes.
    pub fn discard(&mut self) {
        self.mode = Mode::Discard;
        self.data = Vec::new();
        self.control = Vec::new();
        self.frame = None;
        self.message = None;
    }

    /// Bytes retained for unfinished frames and messages (capacity, not length).
    pub fn retained_bytes(&self) -> usize {
        self.data.capacity() + self.control.capacity()
    }

    /// Feed bytes as they were read (masked); they are unmasked in place. `on` receives each
    /// complete message and control frame in order. On error the reader discards the rest of the
    /// stream and the caller closes with the error's code.
    pub fn on_read<F>(
        &mut self,
        mut bytes: &mut [u8],
        k: &Kernels,
        limits: &Limits,
        mut on: F,
    ) -> Result<(), FrameError>
    where
        F: FnMut(Message<'_>) -> Flow,
    {
        while !bytes.is_empty() && self.mode != Mode::Discard {
            let Some(frame) = self.frame else {
                match self.read_header(bytes, limits) {
                    Ok(Some(used)) => {
                        bytes = &mut bytes[used..];
                        if let Some(frame) = self.frame.filter(|f| f.len == 0) {
                            self.frame = None;
                            let flow = self.payload(frame, &mut [], k, &mut on);
                            self.after(flow)?;
                        }
                    }
                    Ok(None) => return Ok(()),
                    Err(e) => {
                        self.fail(e);
                        return Err(e);
                    }
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
            let flow = self.payload(frame, chunk, k, &mut on);
            self.after(flow)?;
        }
        Ok(())
    }

    fn after(&mut self, flow: Result<Flow, FrameError>) -> Result<(), FrameError> {
        match flow {
            Ok(Flow::Continue) => Ok(()),
            Ok(Flow::Stop) => {
                self.discard();
                Ok(())
            }
            Err(e) => {
                self.fail(e);
                Err(e)
            }
        }
    }

    /// After an error: a bad header leaves no frame boundary to trust, so everything is
    /// discarded; after a message-level error the framing is intact and control frames (the
    /// peer's close) are still read, data skipped.
    fn fail(&mut self, e: FrameError) {
        match e {
            FrameError::Header(_) => self.discard(),
            _ => self.ignore_data(),
        }
    }

    /// Whether the stream is still parsed (false after a header error or a stop).
    pub fn is_framing_intact(&self) -> bool {
        self.mode != Mode::Discard
    }

    /// Parse a header from the carried bytes plus `bytes`. `Ok(Some(n))`: a header was read using
    /// `n` bytes of `bytes`, and `self.frame` describes it. `Ok(None)`: every byte was carried.
    fn read_header(&mut self, bytes: &[u8], limits: &Limits) -> Result<Option<usize>, FrameError> {
        let cfg = ParseConfig {
            role: Role::Server,
            rsv_allowed: 0,
            max_payload: limits.max_frame_bytes,
        };
        let have = usize::from(self.header_len);
        let (parsed, used) = if have == 0 {
            match parse_header(bytes, &cfg).map_err(FrameError::Header)? {
                Parsed::Need(_) => {
                    // A header is at most 14 bytes, so fewer than that are here.
                    let n = bytes.len().min(MAX_HEADER_LEN);
                    self.header[..n].copy_from_slice(&bytes[..n]);
                    self.header_len = n as u8;
                    return Ok(None);
                }
                Parsed::Header { header, len } => (header, len),
            }
        } else {
            let take = (MAX_HEADER_LEN - have).min(bytes.len());
            self.header[have..have + take].copy_from_slice(&bytes[..take]);
            match parse_header(&self.header[..have + take], &cfg).map_err(FrameError::Header)? {
                Parsed::Need(_) => {
                    self.header_len = (have + take) as u8;
                    return Ok(None);
                }
                Parsed::Header { header, len } => {
                    self.header_len = 0;
                    (header, len - have)
                }
            }
        };
        let Some(key) = parsed.mask_key else {
            return Err(FrameError::Header(HeaderError::MaskRule(Role::Server)));
        };
        // The frame is set before the message rules run, so that after a message-level error
        // its payload is skipped as payload, not misread as headers.
        self.frame = Some(InFrame {
            opcode: parsed.opcode,
            fin: parsed.fin,
            key,
            len: parsed.payload_len,
            done: 0,
        });
        self.start_frame(parsed.opcode, parsed.payload_len, limits)?;
        Ok(Some(used))
    }

    /// Message-level rules for a new frame (§5.4) and the message limits.
    fn start_frame(&mut self, opcode: Opcode, len: u64, limits: &Limits) -> Result<(), FrameError> {
        if opcode.is_control() || self.mode == Mode::IgnoreData {
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
            self.control.extend_from_slice(chunk);
            if !last {
                return Ok(Flow::Continue);
            }
            let payload = std::mem::take(&mut self.control);
            return Ok(on(control(frame.opcode, &payload)));
        }
        if self.mode == Mode::IgnoreData {
            return Ok(Flow::Continue);
        }
        let Some(message) = self.message else {
            return Err(FrameError::ContinuationWithoutStart);
        };
        let text = message.opcode == Opcode::Text;
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
        self.data.extend_from_slice(chunk);
        if !ends_message {
            return Ok(Flow::Continue);
        }
        self.message = None;
        if text {
            self.utf8.finish().map_err(|_| FrameError::InvalidUtf8)?;
        }
        let payload = std::mem::take(&mut self.data);
        Ok(on(Message::Data {
            opcode: message.opcode,
            payload: &payload,
        }))
    }
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
            let r = reader.on_read(piece, &k, &LIMITS, |m| {
                got.push(match m {
                    Message::Data {
                        opcode: Opcode::Text,
                        payload,
                    } => Got::Text(String::from_utf8(payload.to_vec()).unwrap()),
                    Message::Data { payload, .. } => Got::Binary(payload.to_vec()),
                    Message::Ping(p) => Got::Ping(p.to_vec()),
                    Message::Pong(p) => Got::Pong(p.to_vec()),
                    Message::Close(p) => Got::Close(p.to_vec()),
                });
                Flow::Continue
            });
            if let Err(e) = r {
                return (got, Some(e));
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
    fn ignored_data_still_delivers_close() {
        let mut r = FrameReader::default();
        r.ignore_data();
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
        })
        .unwrap();
        assert_eq!(n, 1);
    }
}
