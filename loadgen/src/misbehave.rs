//! `loadgen misbehave`: the clients a server must survive without harm to the others. Slow
//! readers subscribe and then read a few bytes a second through a small receive buffer for a
//! while, so the server's outbound limit has to act, then read what is left at full speed to
//! learn how the server ended them (a phone in a tunnel that comes back out); bad-frame clients connect, send one frame RFC 6455
//! forbids and must be closed with the code the RFC names for that fault. Both reconnect and go
//! on until the duration is over. The load is small, so each client is a plain blocking thread.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use frame_simd::{encode_client_frame, parse_header, MaskKey, Opcode, ParseConfig, Parsed, Role};
use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, Socket, Type};

use crate::client::handshake::{parse_response, write_request};
use crate::target::Target;

/// How long any one step (connect, handshake, waiting for a close) may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// A frame RFC 6455 forbids, and the close code a server must answer it with.
#[derive(Clone, Copy, Debug)]
pub struct Fault {
    /// Short name, the key of the result.
    pub name: &'static str,
    /// The close code §7.4.1 names for it (and the gateway's `docs/close-codes.md`).
    pub code: u16,
}

/// The faults, sent round robin.
pub const FAULTS: [Fault; 6] = [
    Fault {
        name: "reserved opcode",
        code: 1002,
    },
    Fault {
        name: "unmasked frame",
        code: 1002,
    },
    Fault {
        name: "rsv1 not negotiated",
        code: 1002,
    },
    Fault {
        name: "ping over 125 bytes",
        code: 1002,
    },
    Fault {
        name: "invalid utf-8",
        code: 1007,
    },
    Fault {
        name: "frame too big",
        code: 1009,
    },
];

/// The bytes of fault `i` of [`FAULTS`], masked with `key` where a mask belongs.
pub fn fault_bytes(i: usize, key: MaskKey) -> Vec<u8> {
    let mut out = Vec::new();
    match i {
        // Opcode 0x3 is reserved (§5.2): header built by hand, masked, empty payload.
        0 => out.extend_from_slice(&[0x83, 0x80, key.0[0], key.0[1], key.0[2], key.0[3]]),
        // A client frame without the mask bit (§5.1).
        1 => out.extend_from_slice(&[0x81, 0x02, b'h', b'i']),
        // RSV1 with no extension negotiated (§5.2).
        2 => {
            encode_client_frame(&mut out, Opcode::Text, b"hi", key);
            out[0] |= 0x40;
        }
        // Control frames carry at most 125 bytes (§5.5): a 126-byte ping.
        3 => encode_client_frame(&mut out, Opcode::Ping, &[b'p'; 126], key),
        // A text message that is not UTF-8 (§8.1): an overlong encoding of '/'.
        4 => encode_client_frame(&mut out, Opcode::Text, &[b'a', 0xC0, 0xAF], key),
        // A frame announcing 2^40 bytes, over any sane frame limit; nothing of it follows.
        _ => {
            out.extend_from_slice(&[0x82, 0xFF]);
            out.extend_from_slice(&(1u64 << 40).to_be_bytes());
            out.extend_from_slice(&key.0);
        }
    }
    out
}

/// What the misbehaving clients saw.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Outcome {
    /// Slow-reader connections opened.
    pub slow_connections: u64,
    /// How slow-reader connections ended, by close code (`4008`) or `eof`, `reset`, `still open`.
    pub slow_ended: BTreeMap<String, u64>,
    /// Bytes the slow readers read.
    pub slow_bytes: u64,
    /// Messages the feeder sent.
    pub fed: u64,
    /// Bad frames sent, by fault.
    pub bad_sent: BTreeMap<String, u64>,
    /// Bad frames answered with a close code other than the RFC's, or not closed at all, with
    /// what happened (`fault: got 1000`, `fault: no close (eof)`, `(reset)`, `(timeout)`).
    pub bad_wrong: BTreeMap<String, u64>,
    /// Connections that failed before their frame could be sent (refused, handshake).
    pub connect_failed: BTreeMap<String, u64>,
}

impl Outcome {
    /// Every bad frame got its close code.
    pub fn ok(&self) -> bool {
        self.bad_wrong.is_empty()
    }
}

/// How to misbehave.
#[derive(Clone, Debug)]
pub struct Opts {
    /// Where slow readers subscribe (a URL that pushes to them: `/broadcast`, `/raw?channel=`).
    pub slow_url: Target,
    /// Slow-reader connections open at once.
    pub slow: u32,
    /// Bytes per second each slow reader reads.
    pub slow_read_rate: u32,
    /// Receive buffer of a slow reader, bytes (small: the server's outbox fills sooner).
    pub slow_rcvbuf: usize,
    /// How long a slow reader stays slow before it drains what is left.
    pub slow_for: Duration,
    /// The feeder: a connection that sends `feed_text` (with `{pad}` replaced by `feed_pad`
    /// bytes) at `feed_rate` messages per second, so the slow readers have something to fall
    /// behind on without the rest of the load carrying it; its replies are read and dropped.
    pub feed: Option<Feed>,
    /// Where bad frames go (any WebSocket path).
    pub bad_url: Target,
    /// Bad-frame connections per second.
    pub bad_rate: f64,
    /// How long to go on.
    pub duration: Duration,
}

/// The feeder of the slow readers.
#[derive(Clone, Debug)]
pub struct Feed {
    /// Where it connects.
    pub url: Target,
    /// The text message it sends, `{pad}` replaced by the padding.
    pub text: String,
    /// Bytes of padding.
    pub pad: usize,
    /// Messages per second.
    pub rate: f64,
}

/// Run the slow readers and the bad-frame clients until the duration is over.
pub fn run(opts: &Opts) -> Result<Outcome> {
    let (slow_addr, bad_addr) = (opts.slow_url.addr, opts.bad_url.addr);
    let end = Instant::now() + opts.duration;
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let mut threads = Vec::new();
    for _ in 0..opts.slow {
        let (opts, outcome) = (opts.clone(), Arc::clone(&outcome));
        threads.push(std::thread::spawn(move || {
            while Instant::now() < end {
                slow_reader(&opts, slow_addr, end, &outcome);
            }
        }));
    }
    if let Some(feed) = opts.feed.clone() {
        let outcome = Arc::clone(&outcome);
        threads.push(std::thread::spawn(move || {
            while Instant::now() < end {
                feeder(&feed, end, &outcome);
            }
        }));
    }
    if opts.bad_rate > 0.0 {
        let (opts, outcome) = (opts.clone(), Arc::clone(&outcome));
        threads.push(std::thread::spawn(move || {
            let period = Duration::from_secs_f64(1.0 / opts.bad_rate);
            let mut next = Instant::now();
            let mut i = 0;
            while next < end {
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
                bad_frame(&opts.bad_url, bad_addr, i % FAULTS.len(), &outcome);
                i += 1;
                next += period;
            }
        }));
    }
    for t in threads {
        let _ = t.join();
    }
    let outcome = outcome.lock().map(|o| o.clone()).unwrap_or_default();
    Ok(outcome)
}

fn count(map: &mut BTreeMap<String, u64>, key: impl Into<String>) {
    *map.entry(key.into()).or_default() += 1;
}

fn record(outcome: &Mutex<Outcome>, f: impl FnOnce(&mut Outcome)) {
    if let Ok(mut o) = outcome.lock() {
        f(&mut o);
    }
}

/// Connect (with `rcvbuf` set before the handshake, so the window is small from the start) and
/// upgrade; returns the stream and any bytes that came after the 101.
fn open(t: &Target, addr: SocketAddr, rcvbuf: Option<usize>) -> io::Result<(TcpStream, Vec<u8>)> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if let Some(n) = rcvbuf {
        socket.set_recv_buffer_size(n)?;
    }
    socket.connect_timeout(&addr.into(), STEP_TIMEOUT)?;
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(STEP_TIMEOUT))?;
    stream.set_write_timeout(Some(STEP_TIMEOUT))?;
    let mut req = Vec::new();
    let accept = write_request(
        &mut req,
        &t.host_header,
        &t.path,
        fastrand::u128(..).to_le_bytes(),
    );
    stream.write_all(&req)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        match parse_response(&buf, &accept) {
            Ok(Some(head)) => return Ok((stream, buf.split_off(head))),
            Ok(None) => {}
            Err(e) => return Err(io::Error::other(e.reason())),
        }
    }
}

fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "refused".into(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => "reset".into(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "timeout".into(),
        io::ErrorKind::UnexpectedEof => "eof".into(),
        _ => e.to_string(),
    }
}

/// Server frames seen in a byte stream, found without keeping their payloads: only a close
/// frame's payload (its code) is kept.
#[derive(Default)]
pub struct FrameScan {
    buf: Vec<u8>,
    skip: u64,
    close: Option<(u64, Vec<u8>)>,
}

impl FrameScan {
    /// Feed bytes; returns the close code once a whole close frame was seen (`Some(1005)` for a
    /// close without a code), or an error for bytes that are not server frames.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<Option<u16>, String> {
        let cfg = ParseConfig {
            role: Role::Client,
            rsv_allowed: 0,
            max_payload: u64::MAX >> 1,
        };
        loop {
            if let Some((left, payload)) = &mut self.close {
                let take = (bytes.len() as u64).min(*left) as usize;
                payload.extend_from_slice(&bytes[..take]);
                *left -= take as u64;
                if *left > 0 {
                    return Ok(None);
                }
                return Ok(Some(match payload.get(..2) {
                    Some(c) => u16::from_be_bytes([c[0], c[1]]),
                    None => 1005,
                }));
            }
            let skipped = (bytes.len() as u64).min(self.skip);
            self.skip -= skipped;
            bytes = &bytes[skipped as usize..];
            if bytes.is_empty() {
                return Ok(None);
            }
            // A header is at most 14 bytes: gather up to that many, parse, keep what it left.
            let had = self.buf.len();
            let take = bytes.len().min(frame_simd::MAX_HEADER_LEN - had);
            self.buf.extend_from_slice(&bytes[..take]);
            match parse_header(&self.buf, &cfg).map_err(|e| format!("{e:?}"))? {
                Parsed::Need(_) => return Ok(None),
                Parsed::Header { header, len } => {
                    bytes = &bytes[len - had..];
                    self.buf.clear();
                    if header.opcode == Opcode::Close {
                        self.close = Some((header.payload_len, Vec::new()));
                    } else {
                        self.skip = header.payload_len;
                    }
                }
            }
        }
    }
}

/// One slow-reader connection, from connect to its end (or the end of the run).
fn slow_reader(opts: &Opts, addr: SocketAddr, end: Instant, outcome: &Mutex<Outcome>) {
    let (mut stream, first) = match open(&opts.slow_url, addr, Some(opts.slow_rcvbuf)) {
        Ok(s) => s,
        Err(e) => {
            record(outcome, |o| count(&mut o.connect_failed, io_reason(&e)));
            std::thread::sleep(Duration::from_millis(200));
            return;
        }
    };
    record(outcome, |o| o.slow_connections += 1);
    let mut scan = FrameScan::default();
    let tick = Duration::from_millis(100);
    let per_tick = (opts.slow_read_rate as usize / 10).max(1);
    let mut chunk = vec![0u8; per_tick];
    let _ = stream.set_read_timeout(Some(tick));
    let ended = match scan.feed(&first) {
        Ok(Some(code)) => Some(code.to_string()),
        _ => None,
    };
    let slow_until = Instant::now() + opts.slow_for;
    let mut fast = vec![0u8; 64 * 1024];
    let ended = ended.unwrap_or_else(|| loop {
        let now = Instant::now();
        if now >= end {
            break "still open".to_string();
        }
        // Slow: a few bytes per tick. Then the backlog at full speed, to find the close.
        let read = if now < slow_until {
            std::thread::sleep(tick);
            stream.read(&mut chunk)
        } else {
            stream.read(&mut fast)
        };
        let buf = if now < slow_until { &chunk } else { &fast };
        match read {
            Ok(0) => break "eof".into(),
            Ok(n) => {
                record(outcome, |o| o.slow_bytes += n as u64);
                match scan.feed(&buf[..n]) {
                    Ok(Some(code)) => break code.to_string(),
                    Ok(None) => {}
                    Err(e) => break format!("bad frame from server: {e}"),
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => break io_reason(&e),
        }
    });
    if ended != "still open" {
        // Answer a close so the server's closing handshake completes (§5.5.1).
        let mut close = Vec::new();
        encode_client_frame(
            &mut close,
            Opcode::Close,
            &[0x03, 0xE8],
            MaskKey([1, 2, 3, 4]),
        );
        let _ = stream.write_all(&close);
    }
    record(outcome, |o| count(&mut o.slow_ended, ended));
}

/// The feeder's connection, until it fails (the caller reconnects) or the run ends.
fn feeder(feed: &Feed, end: Instant, outcome: &Mutex<Outcome>) {
    let (mut stream, _) = match open(&feed.url, feed.url.addr, None) {
        Ok(s) => s,
        Err(e) => {
            record(outcome, |o| count(&mut o.connect_failed, io_reason(&e)));
            std::thread::sleep(Duration::from_millis(200));
            return;
        }
    };
    // Replies (or anything else the server sends) are read and dropped, so they never back up.
    if let Ok(mut reader) = stream.try_clone() {
        std::thread::spawn(move || {
            let mut sink = vec![0u8; 64 * 1024];
            while matches!(reader.read(&mut sink), Ok(1..)) {}
        });
    }
    let _ = stream.set_read_timeout(None);
    let text = feed.text.replace("{pad}", &"x".repeat(feed.pad));
    let mut frame = Vec::new();
    let period = Duration::from_secs_f64(1.0 / feed.rate.max(0.001));
    let mut next = Instant::now();
    while next < end {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        frame.clear();
        let key = MaskKey(fastrand::u32(..).to_le_bytes());
        encode_client_frame(&mut frame, Opcode::Text, text.as_bytes(), key);
        if stream.write_all(&frame).is_err() {
            return;
        }
        record(outcome, |o| o.fed += 1);
        next += period;
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// One bad-frame connection: open, send fault `i`, expect its close code.
fn bad_frame(t: &Target, addr: SocketAddr, i: usize, outcome: &Mutex<Outcome>) {
    let fault = FAULTS[i];
    let (mut stream, first) = match open(t, addr, None) {
        Ok(s) => s,
        Err(e) => {
            record(outcome, |o| count(&mut o.connect_failed, io_reason(&e)));
            return;
        }
    };
    let key = MaskKey(fastrand::u32(..).to_le_bytes());
    if let Err(e) = stream.write_all(&fault_bytes(i, key)) {
        record(outcome, |o| count(&mut o.connect_failed, io_reason(&e)));
        return;
    }
    record(outcome, |o| count(&mut o.bad_sent, fault.name));
    let mut scan = FrameScan::default();
    let mut got = scan.feed(&first).ok().flatten();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + STEP_TIMEOUT;
    // Why no close came, if none does: the connection ended first, or the wait ran out.
    let mut instead = "timeout".to_string();
    while got.is_none() && Instant::now() < deadline {
        match stream.read(&mut chunk) {
            Ok(0) => {
                instead = "eof".into();
                break;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                instead = io_reason(&e);
                break;
            }
            Ok(n) => match scan.feed(&chunk[..n]) {
                Ok(code) => got = code,
                Err(e) => {
                    instead = format!("bad frame from server: {e}");
                    break;
                }
            },
        }
    }
    match got {
        Some(code) if code == fault.code => {
            let mut close = Vec::new();
            encode_client_frame(&mut close, Opcode::Close, &code.to_be_bytes(), key);
            let _ = stream.write_all(&close);
        }
        Some(code) => record(outcome, |o| {
            count(&mut o.bad_wrong, format!("{}: got {code}", fault.name))
        }),
        None => record(outcome, |o| {
            count(
                &mut o.bad_wrong,
                format!("{}: no close ({instead})", fault.name),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use frame_simd::encode_server_frame;

    fn server_stream() -> Vec<u8> {
        let mut s = Vec::new();
        encode_server_frame(&mut s, Opcode::Text, &[b'x'; 300]);
        encode_server_frame(&mut s, Opcode::Binary, &[]);
        encode_server_frame(&mut s, Opcode::Close, &[0x0F, 0xA8, b's']);
        s
    }

    #[test]
    fn close_code_is_found_in_any_chunking() {
        let s = server_stream();
        for chunk in [1, 2, 3, 7, 64, 4096] {
            let mut scan = FrameScan::default();
            let mut got = None;
            for part in s.chunks(chunk) {
                if let Some(code) = scan.feed(part).unwrap() {
                    got = Some(code);
                    break;
                }
            }
            assert_eq!(got, Some(4008), "chunk {chunk}");
        }
    }

    #[test]
    fn empty_close_is_1005_and_masked_server_frames_are_refused() {
        let mut s = Vec::new();
        encode_server_frame(&mut s, Opcode::Close, &[]);
        assert_eq!(FrameScan::default().feed(&s).unwrap(), Some(1005));
        let mut masked = Vec::new();
        encode_client_frame(&mut masked, Opcode::Text, b"hi", MaskKey([1, 2, 3, 4]));
        assert!(FrameScan::default().feed(&masked).is_err());
    }

    #[test]
    fn every_fault_is_refused_by_the_codec_as_the_rfc_says() {
        let cfg = ParseConfig {
            role: Role::Server,
            rsv_allowed: 0,
            max_payload: 1 << 20,
        };
        for (i, f) in FAULTS.iter().enumerate() {
            let bytes = fault_bytes(i, MaskKey([9, 8, 7, 6]));
            let parsed = parse_header(&bytes, &cfg);
            match f.name {
                // Header-level faults are refused by the header parser itself.
                "invalid utf-8" => assert!(matches!(parsed, Ok(Parsed::Header { .. }))),
                _ => {
                    let err = parsed.expect_err(f.name);
                    assert_eq!(err.close_code().0, f.code, "{}", f.name);
                }
            }
        }
    }
}
