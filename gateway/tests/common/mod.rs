//! Black-box harness shared by the gateway's socket suites: a [`Gateway`] process started on a
//! free loopback port, and a raw WebSocket [`Client`] over a plain `TcpStream`.
//!
//! Every read is bounded in time (a hung server fails the test instead of hanging it), every
//! process started here is killed by its own PID when dropped, and server frames are checked
//! against RFC 6455 (unmasked, no RSV bits) as they are read.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use frame_simd::{encode_header, MaskKey, Opcode, MAX_HEADER_LEN};

/// How long a gateway may take to print its `listening on` line.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Upper bound for any single wait on the server (a frame, a response, a close).
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How soon the server must close TCP once the close handshake is complete (both closes sent).
/// Well under the default 5 s `--close-timeout`, so a server that only closes by its deadline
/// fails.
pub const PROMPT_CLOSE: Duration = Duration::from_secs(3);
/// The GUID of RFC 6455 §1.3, appended to the key before hashing.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// The example key of RFC 6455 §1.3 (base64 of 16 bytes).
pub const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// Mask key used by default for client frames: non-zero in every byte so masking really changes
/// the bytes on the wire.
pub const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Opcodes as wire nibbles (raw frames may carry reserved ones).
pub mod op {
    pub const CONT: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

// ---------------------------------------------------------------------------------------------
// The gateway process

/// A running gateway started for one test. Dropping it kills the process (by its PID) and reaps it.
pub struct Gateway {
    child: Child,
    addrs: Vec<SocketAddr>,
    stderr: Arc<Mutex<Vec<u8>>>,
    status: Option<ExitStatus>,
}

impl Gateway {
    /// Start `gateway --listen 127.0.0.1:0 <args>` and wait for its `listening on` line(s).
    pub fn start(args: &[&str]) -> Gateway {
        Gateway::start_with(args, &[], true)
    }

    /// Start the gateway with extra environment variables. With `default_listen`, `--listen
    /// 127.0.0.1:0` is put in front of `args`. Waits for one `listening on` line per `--listen`
    /// flag (at least one).
    pub fn start_with(args: &[&str], envs: &[(&str, &str)], default_listen: bool) -> Gateway {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
        if default_listen {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn the gateway binary");

        // Drain stderr into a buffer for the whole life of the process so the gateway never
        // blocks on a full pipe, and so failures can show what it logged.
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut pipe = child.stderr.take().expect("stderr is piped");
        let sink = Arc::clone(&stderr);
        thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                if let Ok(mut buf) = sink.lock() {
                    // Keep at most the last 1 MiB: a chatty gateway must not eat the test's memory.
                    buf.extend_from_slice(&chunk[..n]);
                    let len = buf.len();
                    if len > 1 << 20 {
                        buf.drain(..len - (1 << 20));
                    }
                }
            }
        });

        let listen_flags = args
            .iter()
            .filter(|a| **a == "--listen" || a.starts_with("--listen="))
            .count();
        let expected = (listen_flags + usize::from(default_listen)).max(1);
        let stdout = child.stdout.take().expect("stdout is piped");
        let lines = spawn_stdout_reader(stdout);

        let mut gw = Gateway {
            child,
            addrs: Vec::new(),
            stderr,
            status: None,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while gw.addrs.len() < expected {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.trim().strip_prefix("listening on ") {
                        let addr = addr
                            .parse()
                            .unwrap_or_else(|e| panic!("bad address in stdout line {line:?}: {e}"));
                        gw.addrs.push(addr);
                    }
                }
                Err(_) => {
                    let exited = gw.child.try_wait().ok().flatten();
                    panic!(
                        "gateway did not print {expected} `listening on` line(s) within {:?} \
                         (got {:?}, exit status {exited:?}); stderr:\n{}",
                        START_TIMEOUT,
                        gw.addrs,
                        gw.stderr()
                    );
                }
            }
        }
        gw
    }

    /// The first listen address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every listen address, in the order they were printed.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the gateway wrote to stderr so far (lossy UTF-8).
    pub fn stderr(&self) -> String {
        let buf = self.stderr.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Resident set size from `/proc/<pid>/status` (`VmRSS`), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        self.proc_status_kib("VmRSS:") * 1024
    }

    /// Address-space size from `/proc/<pid>/status` (`VmSize`), in bytes: shows reservations
    /// that were never touched (and so are not in the RSS).
    pub fn vm_bytes(&self) -> u64 {
        self.proc_status_kib("VmSize:") * 1024
    }

    fn proc_status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/<pid>/status of the gateway");
        let line = status
            .lines()
            .find(|l| l.starts_with(field))
            .unwrap_or_else(|| panic!("{field} line in /proc/<pid>/status"));
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{field} value in kB"));
        kib
    }

    /// Number of open file descriptors of the gateway (`/proc/<pid>/fd`).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .expect("list /proc/<pid>/fd")
    }

    /// Send a signal (by name, `TERM`, `INT`, ...) with the `kill` command to this PID only.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    /// SIGTERM.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Wait up to `timeout` for the process to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_some() {
            return self.status;
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait on the gateway") {
                self.status = Some(status);
                return self.status;
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Panic (with stderr) if the process has exited: a crash is never an acceptable answer.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait on the gateway") {
            self.status = Some(status);
            panic!("gateway exited with {status}; stderr:\n{}", self.stderr());
        }
    }

    /// Open a WebSocket on `/echo` (asserting the 101 and its accept key).
    pub fn client(&self) -> Client {
        Client::open(self.addr())
    }

    /// One echo round trip on a fresh connection, closed cleanly: proves the server still serves.
    pub fn assert_serves(&self) {
        assert_echo_round_trip(self.addr());
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.status.is_none() {
            // Child::kill sends SIGKILL to this child's own PID only.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn spawn_stdout_reader(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    // The receiver may be gone once the start is over: keep draining anyway.
                    let _ = tx.send(line.clone());
                }
            }
        }
    });
    rx
}

/// Open a connection, echo one text message, close with 1000 and see the TCP close.
pub fn assert_echo_round_trip(addr: SocketAddr) {
    let mut c = Client::open(addr);
    c.send_text(b"still serving");
    c.expect_frame(op::TEXT, b"still serving");
    c.close_cleanly();
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// A parsed HTTP response (status line, headers, the body announced by `Content-Length`, and
/// for a 101 the bytes that arrived after the head).
#[derive(Debug, Clone)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    /// The body (`Content-Length` bytes) for non-101 responses.
    pub body: Vec<u8>,
    /// Bytes read after the head (101) or after the body.
    pub rest: Vec<u8>,
}

impl Response {
    /// The value of the only header named `name` (case-insensitive); panics if repeated.
    pub fn header(&self, name: &str) -> Option<&str> {
        let mut found = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str());
        let first = found.next();
        assert!(
            found.next().is_none(),
            "header {name} appears more than once in {self:?}"
        );
        first
    }

    /// Every value of header `name`.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The header value split as a comma token list, lower-cased.
    pub fn tokens(&self, name: &str) -> Vec<String> {
        self.header_all(name)
            .iter()
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect()
    }

    /// Assert the shape of an error response from the contract: the status, `Content-Type:
    /// text/plain`, a `Content-Length` matching the body, a non-empty body and `Connection: close`.
    pub fn assert_error(&self, status: u16) {
        assert_eq!(self.status, status, "unexpected response {self:#?}");
        assert_eq!(self.version, "HTTP/1.1", "{self:#?}");
        let ct = self.header("Content-Type").unwrap_or_default();
        assert!(
            ct.to_ascii_lowercase().starts_with("text/plain"),
            "Content-Type of an error response: {self:#?}"
        );
        let len: usize = self
            .header("Content-Length")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("Content-Length missing or bad: {self:#?}"));
        assert_eq!(len, self.body.len(), "{self:#?}");
        assert!(!self.body.is_empty(), "error body must say what was wrong");
        assert!(
            self.tokens("Connection").iter().any(|t| t == "close"),
            "error responses carry Connection: close: {self:#?}"
        );
    }

    /// Assert a `101 Switching Protocols` for `key` per RFC 6455 §4.2.2.
    pub fn assert_switching(&self, key: &str) {
        assert_eq!(self.status, 101, "expected 101, got {self:#?}");
        assert_eq!(self.version, "HTTP/1.1", "{self:#?}");
        assert!(
            self.tokens("Upgrade").iter().any(|t| t == "websocket"),
            "Upgrade: websocket missing: {self:#?}"
        );
        assert!(
            self.tokens("Connection").iter().any(|t| t == "upgrade"),
            "Connection: Upgrade missing: {self:#?}"
        );
        assert_eq!(
            self.header("Sec-WebSocket-Accept"),
            Some(accept_key(key).as_str()),
            "wrong accept key: {self:#?}"
        );
    }
}

/// `base64(sha1(key + GUID))` (RFC 6455 §4.2.2 item 5.4).
pub fn accept_key(key: &str) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WS_GUID.as_bytes());
    base64_simd::STANDARD.encode_to_string(sha.digest().bytes())
}

/// A fresh random-looking key (base64 of 16 bytes) derived from a counter and the clock.
pub fn fresh_key() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&n.to_le_bytes());
    raw[8..].copy_from_slice(&t.to_le_bytes());
    base64_simd::STANDARD.encode_to_string(raw)
}

/// A complete upgrade request for `path` with `Host`, the four upgrade headers and `extra`.
pub fn upgrade_request(path: &str, key: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (name, value) in extra {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    req.into_bytes()
}

/// Connect, send `request` in one write, and read the response (the body too).
pub fn http_exchange(addr: SocketAddr, request: &[u8]) -> Response {
    let mut c = Client::connect(addr);
    c.send_raw(request);
    c.read_response()
}

/// Position of `\r\n\r\n` in `buf`.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Parse a response head (everything up to and including the blank line).
fn parse_head(head: &[u8]) -> Response {
    let text = std::str::from_utf8(head)
        .unwrap_or_else(|_| panic!("response head is not UTF-8: {head:?}"));
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default().to_string();
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let reason = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("bad header line {line:?} in {text:?}"));
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    Response {
        version,
        status,
        reason,
        headers,
        body: Vec::new(),
        rest: Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Frames

/// A frame as the server sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    /// RSV bits as they sit in the first byte (`0x70` mask).
    pub rsv: u8,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The close code and reason of a close frame (`None` for an empty close payload).
    pub fn close_code(&self) -> Option<u16> {
        assert_eq!(self.opcode, op::CLOSE, "not a close frame: {self:?}");
        match self.payload.len() {
            0 => None,
            1 => panic!("server sent a 1-byte close payload"),
            _ => Some(u16::from_be_bytes([self.payload[0], self.payload[1]])),
        }
    }
}

/// Build a client frame byte by byte, with whatever fields a test wants (RSV bits, reserved
/// opcodes, any length encoding). `len_form` picks the length encoding: `None` is minimal,
/// `Some(LenForm::U16)` / `Some(LenForm::U64)` force the extended forms; `announced` overrides
/// the length written (the payload is still appended as given).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LenForm {
    Minimal,
    U16,
    U64,
}

/// A raw frame description for [`raw_frame`].
#[derive(Clone, Debug)]
pub struct Raw<'a> {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub len_form: LenForm,
    /// Length written in the header; defaults to `payload.len()`.
    pub announced: Option<u64>,
    pub payload: &'a [u8],
}

impl<'a> Raw<'a> {
    /// A masked final frame with the default key and minimal length.
    pub fn new(opcode: u8, payload: &'a [u8]) -> Raw<'a> {
        Raw {
            fin: true,
            rsv: 0,
            opcode,
            mask: Some(KEY),
            len_form: LenForm::Minimal,
            announced: None,
            payload,
        }
    }
}

/// Encode `raw` exactly as described, masking the payload with its key (if any).
pub fn raw_frame(raw: &Raw<'_>) -> Vec<u8> {
    let len = raw.announced.unwrap_or(raw.payload.len() as u64);
    let mut out = Vec::with_capacity(14 + raw.payload.len());
    out.push((if raw.fin { 0x80 } else { 0 }) | (raw.rsv & 0x70) | (raw.opcode & 0x0f));
    let mask_bit = if raw.mask.is_some() { 0x80 } else { 0 };
    let form = match raw.len_form {
        LenForm::Minimal if len <= 125 => None,
        LenForm::Minimal if len <= 0xffff => Some(LenForm::U16),
        LenForm::Minimal => Some(LenForm::U64),
        f => Some(f),
    };
    match form {
        None => out.push(mask_bit | len as u8),
        Some(LenForm::U16) => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        Some(_) => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    if let Some(key) = raw.mask {
        out.extend_from_slice(&key);
        let at = out.len();
        out.extend_from_slice(raw.payload);
        mask_in_place(&mut out[at..], key, 0);
    } else {
        out.extend_from_slice(raw.payload);
    }
    out
}

/// XOR `buf` with `key`, `buf[0]` being payload byte number `phase`.
pub fn mask_in_place(buf: &mut [u8], key: [u8; 4], phase: usize) {
    let rotated = [
        key[phase % 4],
        key[(phase + 1) % 4],
        key[(phase + 2) % 4],
        key[(phase + 3) % 4],
    ];
    let word = u32::from_ne_bytes(rotated);
    let mut chunks = buf.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let v = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ word;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (b, k) in chunks.into_remainder().iter_mut().zip(rotated) {
        *b ^= k;
    }
}

/// A well-formed masked client frame (RSV clear, known opcode), encoded with frame-simd's
/// header encoder; forbidden forms go through [`raw_frame`].
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let opcode = Opcode::from_u8(opcode).expect("client_frame takes a defined opcode");
    let mut header = [0u8; MAX_HEADER_LEN];
    let header_len = encode_header(
        &mut header,
        fin,
        opcode,
        payload.len() as u64,
        Some(MaskKey(key)),
    );
    let mut out = Vec::with_capacity(header_len + payload.len());
    out.extend_from_slice(&header[..header_len]);
    let at = out.len();
    out.extend_from_slice(payload);
    mask_in_place(&mut out[at..], key, 0);
    out
}

/// Parse one server frame from the front of `buf`: `Ok(Some((frame, used)))`, `Ok(None)` when
/// more bytes are needed. Asserts the server rules: unmasked, minimal length, no top bit.
fn parse_server_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let b0 = buf[0];
    let b1 = buf[1];
    assert_eq!(
        b1 & 0x80,
        0,
        "server frames must not be masked (RFC 6455 §5.1): header {:02x?}",
        &buf[..2]
    );
    let (len, at) = match b1 & 0x7f {
        126 => {
            if buf.len() < 4 {
                return None;
            }
            let len = u64::from(u16::from_be_bytes([buf[2], buf[3]]));
            assert!(len >= 126, "server used a non-minimal 16-bit length {len}");
            (len, 4)
        }
        127 => {
            if buf.len() < 10 {
                return None;
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            let len = u64::from_be_bytes(b);
            assert!(len >> 63 == 0, "server set the top bit of a 64-bit length");
            assert!(
                len > 0xffff,
                "server used a non-minimal 64-bit length {len}"
            );
            (len, 10)
        }
        n => (u64::from(n), 2),
    };
    assert!(
        len <= 1 << 30,
        "server announced an implausible {len}-byte frame"
    );
    let len = len as usize;
    if buf.len() < at + len {
        return None;
    }
    let frame = Frame {
        fin: b0 & 0x80 != 0,
        rsv: b0 & 0x70,
        opcode: b0 & 0x0f,
        payload: buf[at..at + len].to_vec(),
    };
    Some((frame, at + len))
}

// ---------------------------------------------------------------------------------------------
// The raw client

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
                assert_eq!(frame.rsv, 0, "server set RSV bits: {frame:?}");
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

/// A short printable preview of a payload for failure messages.
pub fn preview(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return String::new();
    }
    let head = &bytes[..bytes.len().min(48)];
    let more = if bytes.len() > head.len() { "..." } else { "" };
    format!(" ({:02x?}{more})", head)
}

/// Deterministic pseudo-random bytes (xorshift) for payloads.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Valid UTF-8 text of exactly `len` bytes mixing 1-, 2-, 3- and 4-byte code points.
pub fn utf8_text(len: usize) -> Vec<u8> {
    const UNITS: [&str; 4] = ["a", "é", "€", "𝄞"];
    let mut out = String::with_capacity(len);
    let mut i = 0;
    while out.len() < len {
        let left = len - out.len();
        let unit = UNITS[i % 4];
        out.push_str(if unit.len() <= left { unit } else { "a" });
        i += 1;
    }
    out.into_bytes()
}
