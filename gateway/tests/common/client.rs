//! The raw client: a blocking `TcpStream` whose every wait is bounded, speaking HTTP for the
//! handshake and WebSocket frames after it.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use frame_simd::Opcode;

use super::frames::parse_server_frame;
use super::http::{find_head_end, parse_head};
use super::*;

/// Outcome of waiting for the server to close the TCP connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    /// Orderly end of stream.
    Eof,
    /// Connection reset.
    Reset,
}

/// A raw WebSocket/HTTP client over a blocking `TcpStream` whose reads all time out.
pub struct Client {
    stream: TcpStream,
    /// Bytes read from the socket but not consumed yet.
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    pos: usize,
    /// The timeout each wait uses (defaults to [`IO_TIMEOUT`]).
    timeout: Duration,
    /// RSV bits server frames may carry (RSV1 once permessage-deflate is negotiated).
    rsv_allowed: u8,
}

impl Client {
    /// A plain TCP connection (no handshake yet).
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        Client::from_stream(stream)
    }

    /// A plain TCP connection whose receive buffer is capped at `rcvbuf` bytes (set before
    /// connecting, which also turns off receive autotuning), so a client that stops reading
    /// pushes back on the server after a few KiB instead of megabytes.
    pub fn connect_small_rcvbuf(addr: SocketAddr, rcvbuf: usize) -> Client {
        let domain = socket2::Domain::for_address(addr);
        let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None).expect("socket");
        socket.set_recv_buffer_size(rcvbuf).expect("SO_RCVBUF");
        socket
            .connect_timeout(&addr.into(), IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        Client::from_stream(socket.into())
    }

    /// [`Client::open`] over a socket with a small receive buffer.
    pub fn open_small_rcvbuf(addr: SocketAddr, rcvbuf: usize) -> Client {
        let mut c = Client::connect_small_rcvbuf(addr, rcvbuf);
        let key = fresh_key();
        let resp = c.handshake_with_key("/echo", &key, &[]);
        resp.assert_switching(&key);
        c
    }

    fn from_stream(stream: TcpStream) -> Client {
        stream.set_nodelay(true).expect("TCP_NODELAY");
        stream
            .set_read_timeout(Some(Duration::from_millis(250)))
            .expect("read timeout");
        stream
            .set_write_timeout(Some(IO_TIMEOUT))
            .expect("write timeout");
        Client {
            stream,
            buf: Vec::new(),
            pos: 0,
            timeout: IO_TIMEOUT,
            rsv_allowed: 0,
        }
    }

    /// A second handle on the same socket (for a writer thread).
    pub fn clone_stream(&self) -> TcpStream {
        self.stream.try_clone().expect("clone the TcpStream")
    }

    /// Connect and complete the upgrade on `/echo`, asserting the 101. Any bytes that came right
    /// behind the 101 stay buffered for the next read.
    pub fn open(addr: SocketAddr) -> Client {
        let mut c = Client::connect(addr);
        let key = fresh_key();
        let resp = c.handshake_with_key("/echo", &key, &[]);
        resp.assert_switching(&key);
        c
    }

    /// Accept RSV1 on server frames from now on (the connection negotiated permessage-deflate,
    /// RFC 7692 §6); RSV2 and RSV3 stay forbidden.
    pub fn allow_rsv1(&mut self) {
        self.rsv_allowed = 0x40;
    }

    /// Change the bound of each wait (default [`IO_TIMEOUT`]).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The underlying stream (for socket options or a second handle).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Send an upgrade request for `path` with a fresh key and `extra` headers; return the
    /// response. A 101's trailing bytes stay buffered (and are copied into `rest`).
    pub fn handshake(&mut self, path: &str, extra: &[(&str, &str)]) -> Response {
        let key = fresh_key();
        self.handshake_with_key(path, &key, extra)
    }

    /// As [`Client::handshake`], with a given key.
    pub fn handshake_with_key(
        &mut self,
        path: &str,
        key: &str,
        extra: &[(&str, &str)],
    ) -> Response {
        self.send_raw(&upgrade_request(path, key, extra));
        self.read_response()
    }

    /// Read one HTTP response: the head, then (unless it is a 101) the `Content-Length` body.
    /// For a 101, bytes already read past the head are left in the buffer (and copied to `rest`).
    pub fn read_response(&mut self) -> Response {
        let deadline = Instant::now() + self.timeout;
        let head_len = loop {
            if let Some(end) = find_head_end(&self.buf[self.pos..]) {
                break end;
            }
            if !self.fill_once(deadline) {
                panic!(
                    "connection closed before a complete response head; got {:?}",
                    String::from_utf8_lossy(&self.buf[self.pos..])
                );
            }
        };
        let mut resp = parse_head(&self.buf[self.pos..self.pos + head_len]);
        self.pos += head_len;
        if resp.status != 101 {
            let len: usize = resp
                .header("Content-Length")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while self.buf.len() - self.pos < len {
                if !self.fill_once(deadline) {
                    panic!("connection closed inside a {len}-byte response body: {resp:?}");
                }
            }
            resp.body = self.buf[self.pos..self.pos + len].to_vec();
            self.pos += len;
        }
        resp.rest = self.buf[self.pos..].to_vec();
        self.compact();
        resp
    }

    /// Write all of `bytes`.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write {} bytes: {e}", bytes.len()));
    }

    /// Write `bytes`; `Err` if the server has closed or reset the connection.
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Write `bytes` in pieces of `chunk` bytes (one write call each).
    pub fn send_chunked(&mut self, bytes: &[u8], chunk: usize) {
        for piece in bytes.chunks(chunk.max(1)) {
            self.send_raw(piece);
        }
    }

    /// Send one frame. Well-formed frames (RSV clear, known opcode, masked) are encoded with
    /// frame-simd's encoder, anything else with the raw builder.
    pub fn send_frame(
        &mut self,
        fin: bool,
        rsv: u8,
        opcode: u8,
        payload: &[u8],
        mask: Option<[u8; 4]>,
    ) {
        let bytes = self.frame_bytes(fin, rsv, opcode, payload, mask);
        self.send_raw(&bytes);
    }

    /// The bytes [`Client::send_frame`] would write.
    pub fn frame_bytes(
        &self,
        fin: bool,
        rsv: u8,
        opcode: u8,
        payload: &[u8],
        mask: Option<[u8; 4]>,
    ) -> Vec<u8> {
        match mask {
            Some(key) if rsv == 0 && Opcode::from_u8(opcode).is_some() => {
                client_frame(fin, opcode, payload, key)
            }
            _ => raw_frame(&Raw {
                fin,
                rsv,
                opcode,
                mask,
                len_form: LenForm::Minimal,
                announced: None,
                payload,
            }),
        }
    }

    /// A final masked text frame.
    pub fn send_text(&mut self, payload: &[u8]) {
        self.send_frame(true, 0, op::TEXT, payload, Some(KEY));
    }

    /// A final masked binary frame.
    pub fn send_binary(&mut self, payload: &[u8]) {
        self.send_frame(true, 0, op::BINARY, payload, Some(KEY));
    }

    /// A masked ping.
    pub fn send_ping(&mut self, payload: &[u8]) {
        self.send_frame(true, 0, op::PING, payload, Some(KEY));
    }

    /// A masked close with `code` and `reason` (raw bytes, so invalid UTF-8 can be sent).
    pub fn send_close(&mut self, code: u16, reason: &[u8]) {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason);
        self.send_frame(true, 0, op::CLOSE, &payload, Some(KEY));
    }

    /// A masked close with an empty payload.
    pub fn send_empty_close(&mut self) {
        self.send_frame(true, 0, op::CLOSE, &[], Some(KEY));
    }

    /// Read one more chunk into the buffer. `false` on EOF; panics on timeout past `deadline`
    /// or on an I/O error other than a timeout.
    fn fill_once(&mut self, deadline: Instant) -> bool {
        match self.try_fill_once(deadline) {
            Ok(true) => true,
            Ok(false) => false,
            Err(e) if e.kind() == ErrorKind::TimedOut => panic!(
                "server sent nothing for {:?} (buffered: {} bytes)",
                self.timeout,
                self.buf.len() - self.pos
            ),
            Err(e) => panic!("read failed: {e}"),
        }
    }

    /// Like `fill_once`, reporting errors: `Ok(false)` on EOF, `TimedOut` past the deadline.
    fn try_fill_once(&mut self, deadline: Instant) -> io::Result<bool> {
        let mut chunk = [0u8; 65536];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(true);
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if Instant::now() >= deadline {
                        return Err(io::Error::new(ErrorKind::TimedOut, "read deadline passed"));
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn compact(&mut self) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }

    /// Read the next server frame (bounded by the timeout); panics on EOF, reset or timeout.
    pub fn read_frame(&mut self) -> Frame {
        match self.try_read_frame() {
            Ok(Some(f)) => f,
            Ok(None) => panic!(
                "connection closed while waiting for a frame ({} bytes buffered)",
                self.buf.len() - self.pos
            ),
            Err(e) => panic!("waiting for a frame: {e}"),
        }
    }

    /// Read the next server frame: `Ok(None)` on a clean EOF at a frame boundary, `Err` on
    /// timeout or reset. Asserts the server framing rules.
    pub fn try_read_frame(&mut self) -> io::Result<Option<Frame>> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buf[self.pos..]) {
                self.pos += used;
                if self.pos > 1 << 20 {
                    self.compact();
                }
                assert_eq!(
                    frame.rsv & !self.rsv_allowed,
                    0,
                    "server set RSV bits it may not: {frame:?}"
                );
                return Ok(Some(frame));
            }
            if !self.try_fill_once(deadline)? {
                assert_eq!(
                    self.buf.len(),
                    self.pos,
                    "connection closed inside a server frame"
                );
                return Ok(None);
            }
        }
    }

    /// Expect exactly one unfragmented frame with `opcode` and `payload` (the echo rule).
    pub fn expect_frame(&mut self, opcode: u8, payload: &[u8]) {
        let f = self.read_frame();
        assert!(
            f.fin && f.rsv == 0 && f.opcode == opcode && f.payload == payload,
            "expected FIN frame opcode {opcode:#x} with {} bytes{}, got fin={} rsv={:#x} opcode={:#x} \
             with {} bytes{}",
            payload.len(),
            preview(payload),
            f.fin,
            f.rsv,
            f.opcode,
            f.payload.len(),
            preview(&f.payload)
        );
    }

    /// Expect a close frame with `code` (the reason, if any, must be UTF-8); returns the reason.
    pub fn expect_close(&mut self, code: u16) -> String {
        let f = self.read_frame();
        assert!(
            f.opcode == op::CLOSE,
            "expected close {code}, got opcode {:#x} fin={} with {} bytes{}",
            f.opcode,
            f.fin,
            f.payload.len(),
            preview(&f.payload)
        );
        assert!(f.fin, "close frame without FIN");
        assert!(f.payload.len() <= 125, "close payload over 125 bytes");
        assert_eq!(
            f.close_code(),
            Some(code),
            "close code (payload {:?})",
            String::from_utf8_lossy(&f.payload)
        );
        String::from_utf8(f.payload[2..].to_vec()).expect("close reason must be UTF-8")
    }

    /// Expect a close frame with an empty payload.
    pub fn expect_empty_close(&mut self) {
        let f = self.read_frame();
        assert_eq!(
            (f.opcode, f.fin, f.payload.as_slice()),
            (op::CLOSE, true, &[][..]),
            "expected an empty close frame, got {f:?}"
        );
    }

    /// Expect the server to close TCP (EOF or reset) within the timeout, with no bytes before.
    pub fn expect_tcp_closed(&mut self) -> Closed {
        self.expect_tcp_closed_within(self.timeout)
    }

    /// Expect the server to close TCP within `limit`, with no bytes before it.
    pub fn expect_tcp_closed_within(&mut self, limit: Duration) -> Closed {
        assert_eq!(
            self.buf.len(),
            self.pos,
            "unread bytes before the expected TCP close: {:02x?}",
            preview(&self.buf[self.pos..])
        );
        let deadline = Instant::now() + limit;
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Closed::Eof,
                Ok(n) => panic!(
                    "expected the TCP close, got {n} more bytes: {}",
                    preview(&chunk[..n])
                ),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    assert!(
                        Instant::now() < deadline,
                        "server did not close the TCP connection within {limit:?}"
                    );
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return Closed::Reset,
                Err(e) => panic!("unexpected read error while waiting for the TCP close: {e}"),
            }
        }
    }

    /// Read and discard everything until the server closes TCP (bounded by `limit`); returns
    /// how many bytes were discarded.
    pub fn drain_until_closed(&mut self, limit: Duration) -> usize {
        let mut total = self.buf.len() - self.pos;
        self.buf.clear();
        self.pos = 0;
        let deadline = Instant::now() + limit;
        let mut chunk = [0u8; 65536];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return total,
                Ok(n) => total += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    assert!(
                        Instant::now() < deadline,
                        "server did not close the TCP connection within {limit:?}"
                    );
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return total,
                Err(e) => panic!("unexpected read error while draining: {e}"),
            }
        }
    }

    /// Assert that nothing arrives for `quiet` (neither bytes nor a close).
    pub fn expect_silence(&mut self, quiet: Duration) {
        assert_eq!(self.buf.len(), self.pos, "unexpected buffered bytes");
        let deadline = Instant::now() + quiet;
        let mut chunk = [0u8; 4096];
        while Instant::now() < deadline {
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("server closed the connection, expected silence"),
                Ok(n) => panic!("expected silence, got {n} bytes: {}", preview(&chunk[..n])),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("expected silence, got {e}"),
            }
        }
    }

    /// Our side of a clean close: send 1000, expect 1000 back, expect the TCP close.
    pub fn close_cleanly(&mut self) {
        self.send_close(1000, b"");
        self.expect_close(1000);
        self.expect_tcp_closed_within(PROMPT_CLOSE);
    }

    /// After the server sent a close for an error: send our close back and expect the TCP close.
    pub fn finish_close(&mut self, code: u16) {
        // The peer may already have dropped the socket; a failed write is fine here.
        let frame = client_frame(true, op::CLOSE, &code.to_be_bytes(), KEY);
        let _ = self.try_send_raw(&frame);
        self.expect_tcp_closed();
    }

    /// Stop writing (half close).
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}
