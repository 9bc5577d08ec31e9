//! The sans-IO client connection: bytes in, events and bytes to write out. It owns no socket and
//! no clock; the worker loop moves bytes between it and the kernel.
//!
//! Calling contract: after [`Conn::new`] the request sits in [`Conn::tx_pending`]; the driver
//! writes it (and reports with [`Conn::on_written`]), feeds every read to [`Conn::on_read`], and
//! after each batch of reads or [`Conn::send`] calls writes [`Conn::tx_pending`] again. Server
//! frames are parsed in place from the read slice; only a partial frame is kept between reads.

pub mod api;
pub mod deflate;
pub mod handshake;

use frame_simd::{
    encode_client_frame, parse_header, MaskKey, Opcode, ParseConfig, Parsed, Role, RSV1,
};

pub use handshake::HandshakeError;

/// Largest server frame accepted (loadgen never asks for bigger messages).
const MAX_SERVER_PAYLOAD: u64 = 64 << 20;

/// What the connection waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Request queued or sent; waiting for the 101.
    AwaitResponse,
    /// Handshake done: frames flow.
    Open,
    /// We sent a close frame and wait for the server's.
    Closing,
    /// Close frames exchanged, or the connection failed.
    Closed,
}

/// What happened on a read.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// The 101 arrived and was valid.
    Open,
    /// A complete text or binary message.
    Message {
        /// `Text` or `Binary`.
        opcode: Opcode,
        /// The (reassembled) payload.
        payload: &'a [u8],
    },
    /// The server sent a close frame (code, if any).
    Close(Option<u16>),
    /// The backend API answered a request with this HTTP status.
    Status(u16),
}

/// The protocol a worker's connection speaks: WebSocket (every scenario) or the backend API
/// (publishers that publish through it).
#[derive(Debug)]
pub enum Proto {
    /// A WebSocket client connection.
    Ws(Conn),
    /// A backend API connection.
    Api(api::ApiConn),
}

impl Proto {
    /// The current state.
    pub fn state(&self) -> State {
        match self {
            Proto::Ws(c) => c.state(),
            Proto::Api(c) => c.state(),
        }
    }

    /// Bytes to write.
    pub fn tx_pending(&self) -> &[u8] {
        match self {
            Proto::Ws(c) => c.tx_pending(),
            Proto::Api(c) => c.tx_pending(),
        }
    }

    /// `n` bytes were written.
    pub fn on_written(&mut self, n: usize) {
        match self {
            Proto::Ws(c) => c.on_written(n),
            Proto::Api(c) => c.on_written(n),
        }
    }

    /// Queue one message: a data frame, or over the API a publish request whose body is
    /// `payload` (the opcode is then unused).
    pub fn send(&mut self, opcode: Opcode, payload: &[u8]) {
        match self {
            Proto::Ws(c) => c.send(opcode, payload),
            Proto::Api(c) => c.publish(payload),
        }
    }

    /// Close politely (a close frame with `code` on WebSocket).
    pub fn close(&mut self, code: u16) {
        match self {
            Proto::Ws(c) => c.close(code),
            Proto::Api(c) => c.close(),
        }
    }

    /// Feed bytes read from the socket.
    pub fn on_read(
        &mut self,
        bytes: &[u8],
        on_event: impl FnMut(Event<'_>),
    ) -> Result<(), ConnError> {
        match self {
            Proto::Ws(c) => c.on_read(bytes, on_event),
            Proto::Api(c) => c.on_read(bytes, on_event),
        }
    }
}

/// Why the connection stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnError {
    /// The handshake answer was not a valid 101.
    Handshake(HandshakeError),
    /// A server frame broke RFC 6455.
    Frame(String),
}

impl ConnError {
    /// Short name used to count failures by reason.
    pub fn reason(&self) -> String {
        match self {
            Self::Handshake(h) => h.reason(),
            Self::Frame(_) => "protocol error".into(),
        }
    }
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Handshake(h) => h.fmt(f),
            Self::Frame(e) => write!(f, "protocol error from the server: {e}"),
        }
    }
}

/// One client connection's protocol state.
#[derive(Debug)]
pub struct Conn {
    state: State,
    accept: String,
    /// Bytes read but not yet consumed (a partial response head or frame).
    rx: Vec<u8>,
    /// Bytes owed to the socket, from `tx_at` on.
    tx: Vec<u8>,
    tx_at: usize,
    mask: MaskKey,
    /// Reassembly of a fragmented message (rare: servers under test send whole frames).
    frag: Vec<u8>,
    frag_opcode: Option<Opcode>,
    /// The fragmented message is compressed.
    frag_compressed: bool,
    /// permessage-deflate: offered, and accepted by the server.
    deflate_offered: bool,
    deflate: bool,
    /// Scratch for a compressed outgoing payload.
    packed: Vec<u8>,
}

const PARSE: ParseConfig = ParseConfig {
    role: Role::Client,
    rsv_allowed: 0,
    max_payload: MAX_SERVER_PAYLOAD,
};

const PARSE_DEFLATE: ParseConfig = ParseConfig {
    rsv_allowed: RSV1,
    ..PARSE
};

impl Conn {
    /// A connection whose upgrade request for `host`/`path` is queued; `nonce` makes the key and
    /// `mask` masks every frame it sends (both drawn from the worker's PRNG).
    pub fn new(host: &str, path: &str, nonce: [u8; 16], mask: MaskKey) -> Conn {
        let mut tx = Vec::new();
        let accept = handshake::write_request(&mut tx, host, path, nonce);
        Conn {
            state: State::AwaitResponse,
            accept,
            rx: Vec::new(),
            tx,
            tx_at: 0,
            mask,
            frag: Vec::new(),
            frag_opcode: None,
            frag_compressed: false,
            deflate_offered: false,
            deflate: false,
            packed: Vec::new(),
        }
    }

    /// Offer permessage-deflate in the (still unsent) upgrade request.
    pub fn offer_deflate(&mut self) {
        if self.state == State::AwaitResponse && self.tx_at == 0 && self.tx.ends_with(b"\r\n\r\n") {
            self.tx.truncate(self.tx.len() - 2);
            self.tx.extend_from_slice(deflate::OFFER.as_bytes());
            self.tx.extend_from_slice(b"\r\n");
            self.deflate_offered = true;
        }
    }

    /// The server accepted permessage-deflate.
    pub fn deflate(&self) -> bool {
        self.deflate
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Bytes to write to the socket.
    pub fn tx_pending(&self) -> &[u8] {
        &self.tx[self.tx_at..]
    }

    /// `n` bytes of [`Conn::tx_pending`] were written.
    pub fn on_written(&mut self, n: usize) {
        self.tx_at += n;
        if self.tx_at >= self.tx.len() {
            self.tx.clear();
            self.tx_at = 0;
            // An idle connection keeps no large buffer (a burst may have grown it).
            if self.tx.capacity() > 64 * 1024 {
                self.tx = Vec::new();
            }
        }
    }

    /// Queue one masked data frame (compressed when permessage-deflate was accepted and the
    /// payload is long enough).
    pub fn send(&mut self, opcode: Opcode, payload: &[u8]) {
        if self.deflate && payload.len() >= deflate::THRESHOLD_BYTES {
            self.packed.clear();
            deflate::compress(payload, &mut self.packed);
            let at = self.tx.len();
            encode_client_frame(&mut self.tx, opcode, &self.packed, self.mask);
            self.tx[at] |= RSV1;
            return;
        }
        encode_client_frame(&mut self.tx, opcode, payload, self.mask);
    }

    /// The frame [`Conn::send`] would queue for `payload`, for a caller that sends the same
    /// message many times (echo): queue it with [`Conn::send_encoded`], which copies it instead
    /// of encoding and masking it again. `None` when the message would be compressed (each
    /// compressed message is encoded on its own).
    pub fn encode(&self, opcode: Opcode, payload: &[u8]) -> Option<Vec<u8>> {
        if self.deflate && payload.len() >= deflate::THRESHOLD_BYTES {
            return None;
        }
        let mut frame = Vec::new();
        encode_client_frame(&mut frame, opcode, payload, self.mask);
        Some(frame)
    }

    /// Queue a frame made by [`Conn::encode`] on this connection.
    pub fn send_encoded(&mut self, frame: &[u8]) {
        self.tx.extend_from_slice(frame);
    }

    /// Queue a close frame with `code` (no reason) and wait for the server's answer.
    pub fn close(&mut self, code: u16) {
        if self.state == State::Open {
            encode_client_frame(&mut self.tx, Opcode::Close, &code.to_be_bytes(), self.mask);
            self.state = State::Closing;
        }
    }

    /// Feed bytes read from the socket; `on_event` sees every event in order.
    pub fn on_read(
        &mut self,
        bytes: &[u8],
        mut on_event: impl FnMut(Event<'_>),
    ) -> Result<(), ConnError> {
        if self.rx.is_empty() {
            let used = self.consume(bytes, &mut on_event)?;
            if used < bytes.len() {
                self.rx.extend_from_slice(&bytes[used..]);
            }
        } else {
            self.rx.extend_from_slice(bytes);
            let rx = std::mem::take(&mut self.rx);
            let result = self.consume(&rx, &mut on_event);
            let used = *result.as_ref().unwrap_or(&rx.len());
            let mut rx = rx;
            rx.drain(..used);
            if rx.capacity() > 64 * 1024 && rx.len() < 1024 {
                rx.shrink_to(1024);
            }
            self.rx = rx;
            result?;
        }
        Ok(())
    }

    /// Consume what is complete at the front of `buf`; returns the bytes used.
    fn consume(
        &mut self,
        buf: &[u8],
        on_event: &mut impl FnMut(Event<'_>),
    ) -> Result<usize, ConnError> {
        let mut at = 0;
        if self.state == State::AwaitResponse {
            match handshake::parse_response(buf, &self.accept) {
                Ok(None) => return Ok(0),
                Ok(Some(len)) => {
                    at = len;
                    self.deflate = self.deflate_offered && deflate::accepted(&buf[..len]);
                    self.state = State::Open;
                    on_event(Event::Open);
                }
                Err(e) => {
                    self.state = State::Closed;
                    return Err(ConnError::Handshake(e));
                }
            }
        }
        while self.state != State::Closed {
            let rest = &buf[at..];
            let cfg = if self.deflate { &PARSE_DEFLATE } else { &PARSE };
            let (header, len) = match parse_header(rest, cfg) {
                Ok(Parsed::Header { header, len }) => (header, len),
                Ok(Parsed::Need(_)) => break,
                Err(e) => {
                    self.state = State::Closed;
                    return Err(ConnError::Frame(e.to_string()));
                }
            };
            // UNWRAP-free: the length is at most MAX_SERVER_PAYLOAD, which fits usize.
            let Ok(payload_len) = usize::try_from(header.payload_len) else {
                return Err(ConnError::Frame("frame larger than memory".into()));
            };
            let Some(payload) = rest.get(len..len + payload_len) else {
                break;
            };
            at += len + payload_len;
            let rsv1 = header.rsv & RSV1 != 0;
            self.on_frame(header.opcode, header.fin, rsv1, payload, on_event)?;
        }
        Ok(at)
    }

    fn on_frame(
        &mut self,
        opcode: Opcode,
        fin: bool,
        rsv1: bool,
        payload: &[u8],
        on_event: &mut impl FnMut(Event<'_>),
    ) -> Result<(), ConnError> {
        let inflate = |p: &[u8]| {
            // At most MAX_SERVER_PAYLOAD, which fits usize where loadgen runs.
            deflate::inflate(p, MAX_SERVER_PAYLOAD as usize)
                .ok_or_else(|| ConnError::Frame("bad compressed message".into()))
        };
        match opcode {
            Opcode::Text | Opcode::Binary => {
                if self.frag_opcode.is_some() {
                    return Err(ConnError::Frame(
                        "new message inside a fragmented one".into(),
                    ));
                }
                if self.state != State::Open {
                    return Ok(());
                }
                if fin && rsv1 {
                    let msg = inflate(payload)?;
                    on_event(Event::Message {
                        opcode,
                        payload: &msg,
                    });
                } else if fin {
                    on_event(Event::Message { opcode, payload });
                } else {
                    self.frag_opcode = Some(opcode);
                    self.frag_compressed = rsv1;
                    self.frag.extend_from_slice(payload);
                }
            }
            Opcode::Continuation => {
                let Some(first) = self.frag_opcode else {
                    return Err(ConnError::Frame("continuation without a message".into()));
                };
                self.frag.extend_from_slice(payload);
                if fin {
                    self.frag_opcode = None;
                    let mut msg = std::mem::take(&mut self.frag);
                    if std::mem::take(&mut self.frag_compressed) {
                        msg = inflate(&msg)?;
                    }
                    if self.state == State::Open {
                        on_event(Event::Message {
                            opcode: first,
                            payload: &msg,
                        });
                    }
                }
            }
            Opcode::Ping => {
                if self.state == State::Open {
                    encode_client_frame(&mut self.tx, Opcode::Pong, payload, self.mask);
                }
            }
            Opcode::Pong => {}
            Opcode::Close => {
                let code = match payload {
                    [a, b, ..] => Some(u16::from_be_bytes([*a, *b])),
                    _ => None,
                };
                if self.state == State::Open {
                    let echo = code.map(u16::to_be_bytes);
                    let body: &[u8] = echo.as_ref().map_or(&[], |c| c.as_slice());
                    encode_client_frame(&mut self.tx, Opcode::Close, body, self.mask);
                }
                self.state = State::Closed;
                on_event(Event::Close(code));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use frame_simd::encode_server_frame;

    fn open_conn() -> Conn {
        let mut c = Conn::new("h", "/", [1; 16], MaskKey([1, 2, 3, 4]));
        let accept = handshake::accept_for(&{
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode([1u8; 16])
        });
        let head = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        let mut events = 0;
        c.on_read(head.as_bytes(), |e| {
            assert_eq!(e, Event::Open);
            events += 1;
        })
        .unwrap();
        assert_eq!(events, 1);
        let n = c.tx_pending().len();
        c.on_written(n);
        c
    }

    #[test]
    fn frames_split_at_every_byte_arrive_whole() {
        let mut c = open_conn();
        let mut wire = Vec::new();
        encode_server_frame(&mut wire, Opcode::Text, b"hello");
        encode_server_frame(&mut wire, Opcode::Binary, &[9; 300]);
        let mut got = Vec::new();
        for b in &wire {
            c.on_read(std::slice::from_ref(b), |e| {
                if let Event::Message { payload, .. } = e {
                    got.push(payload.len());
                }
            })
            .unwrap();
        }
        assert_eq!(got, vec![5, 300]);
    }

    #[test]
    fn an_encoded_frame_is_the_frame_send_queues() {
        let mut c = open_conn();
        let frame = c.encode(Opcode::Text, b"hello").unwrap();
        c.send(Opcode::Text, b"hello");
        c.send_encoded(&frame);
        let pending = c.tx_pending().to_vec();
        assert_eq!(pending.len(), 2 * frame.len());
        assert_eq!(&pending[..frame.len()], &frame[..]);
        assert_eq!(&pending[frame.len()..], &frame[..]);
        assert_eq!(frame[0], 0x81);
        assert_eq!(frame[1], 0x85);
    }

    #[test]
    fn ping_is_answered_with_a_masked_pong() {
        let mut c = open_conn();
        let mut wire = Vec::new();
        encode_server_frame(&mut wire, Opcode::Ping, b"p");
        c.on_read(&wire, |_| {}).unwrap();
        assert_eq!(c.tx_pending()[0], 0x8A);
        assert_eq!(c.tx_pending()[1], 0x81);
    }

    #[test]
    fn masked_server_frame_is_a_protocol_error() {
        let mut c = open_conn();
        let mut wire = Vec::new();
        encode_client_frame(&mut wire, Opcode::Text, b"x", MaskKey([1, 1, 1, 1]));
        assert!(matches!(c.on_read(&wire, |_| {}), Err(ConnError::Frame(_))));
    }

    #[test]
    fn non_websocket_answer_fails_with_its_status() {
        let mut c = Conn::new("h", "/", [1; 16], MaskKey([1, 2, 3, 4]));
        let err = c
            .on_read(b"HTTP/1.1 404 Not Found\r\n\r\n", |_| {})
            .unwrap_err();
        assert_eq!(err.reason(), "http 404");
        assert_eq!(c.state(), State::Closed);
    }
}
