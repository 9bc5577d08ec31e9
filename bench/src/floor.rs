//! `bench floor-client`: the cheapest client of a WebSocket server on this host, to set a load
//! generator's cost against.
//!
//! A load generator and the server it drives share the kernel's TCP work on loopback: each
//! `send` also runs the peer's receive path, each `recv` sends the window updates the peer's
//! ACK path handles. So part of any client's CPU per message is fixed by the kernel, whatever
//! its own code does. This client does the least a correct client can: it opens its
//! connections before measuring, then one thread reads with one `read` per readiness (a short
//! read means drained), walks frame headers only to count messages, and answers with prebuilt
//! masked frames (echo) or sends prebuilt `pub:` frames on a timer (fan-out). It keeps no
//! latencies, no histogram and no per-message state. Its CPU per message, against the server's
//! over the same window, is the floor of that ratio on this host for the scenario: what
//! `bench/loadgen-cost.sh` compares loadgen with.
//!
//! It takes loadgen's flags for the two shapes that script runs, so the script runs it the way it
//! runs loadgen, and writes the fields of loadgen's report that the script reads:
//!
//! ```text
//! bench floor-client echo --url ws://H:P/echo -c 100 -w 16 -s 32 --warmup 1s --duration 3s \
//!     --server-pid PID --json OUT
//! bench floor-client fanout --url ws://H:P/broadcast --adapter pub --subscribers 1000 \
//!     --publishers 1 --rate 200 -s 64 --warmup 1s --duration 3s --server-pid PID --json OUT
//! ```
//!
//! Limits: `ws://` only, payloads under 126 bytes, one thread, one publisher. Every frame is
//! masked with one key (RFC 6455 asks a client for a fresh key per frame; a server cannot tell).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream as StdStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use frame_simd::{encode_client_frame, MaskKey, Opcode};
use loadgen::sysinfo::{self, CpuTime, ProcSample};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde_json::json;

/// Bytes read per `read`.
const READ_BYTES: usize = 256 * 1024;
/// The mask key of every frame sent (the frames are built once).
const KEY: MaskKey = MaskKey([0x1d, 0x52, 0xa7, 0x3c]);
/// How often the publisher's schedule is checked.
const TICK: Duration = Duration::from_millis(1);
/// Longest wait for a handshake answer.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What to run.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// Echo (closed loop) or fan-out (one publisher at a fixed rate, the rest subscribers).
    pub fanout: bool,
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
    /// Echo connections, or subscribers.
    pub connections: usize,
    /// Messages in flight per echo connection.
    pub in_flight: usize,
    /// Payload bytes of a message as delivered.
    pub size: usize,
    /// Publishes per second (fan-out).
    pub rate: u64,
    pub warmup: Duration,
    pub duration: Duration,
    pub server_pid: Option<u32>,
    pub json: Option<String>,
}

/// Parse loadgen-style flags (see the module's usage).
pub fn parse(args: &[String]) -> Result<Options, String> {
    let mut it = args.iter();
    let fanout = match it.next().map(String::as_str) {
        Some("echo") => false,
        Some("fanout") => true,
        other => return Err(format!("expected `echo` or `fanout`, got {other:?}")),
    };
    let mut url = None;
    let mut opts = Options {
        fanout,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        host: String::new(),
        path: String::new(),
        connections: 100,
        in_flight: 1,
        size: 32,
        rate: 1,
        warmup: Duration::from_secs(1),
        duration: Duration::from_secs(3),
        server_pid: None,
        json: None,
    };
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let number = |v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {v}"))
        };
        match flag.as_str() {
            "--url" => url = Some(value()?),
            "-c" | "--connections" | "--subscribers" => {
                opts.connections = number(value()?)? as usize
            }
            "-w" | "--in-flight" => opts.in_flight = number(value()?)? as usize,
            "-s" | "--size" => opts.size = number(value()?)? as usize,
            "--rate" => opts.rate = number(value()?)?,
            "--warmup" => opts.warmup = duration(&value()?)?,
            "--duration" => opts.duration = duration(&value()?)?,
            "--server-pid" => opts.server_pid = Some(number(value()?)? as u32),
            "--json" => opts.json = Some(value()?),
            "--publishers" => {
                if value()? != "1" {
                    return Err("--publishers: only 1 is supported".into());
                }
            }
            "--adapter" => {
                if value()? != "pub" {
                    return Err("--adapter: only `pub` is supported".into());
                }
            }
            "--threads" => {
                if value()? != "1" {
                    return Err("--threads: only 1 is supported".into());
                }
            }
            // Accepted for loadgen compatibility; nothing to do.
            "--connect-timeout" => {
                value()?;
            }
            "--no-pin" | "--quiet" => {}
            other => return Err(format!("unknown flag {other}")),
        }
    }
    let url = url.ok_or("--url is required")?;
    let rest = url
        .strip_prefix("ws://")
        .ok_or("--url must start with ws://")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    opts.addr = host
        .to_socket_addrs()
        .map_err(|e| format!("--url {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("--url {host}: no address"))?;
    opts.host = host.to_string();
    opts.path = format!("/{path}");
    // A publish carries `pub:` ahead of the payload; both must keep a 7-bit length.
    if opts.size + 4 > 125 {
        return Err("-s: payloads up to 121 bytes only".into());
    }
    if opts.connections == 0 || opts.in_flight == 0 {
        return Err("-c and -w must be at least 1".into());
    }
    Ok(opts)
}

/// A duration as loadgen reads one (`3s`, `500ms`, `1m`).
fn duration(v: &str) -> Result<Duration, String> {
    humantime::parse_duration(v).map_err(|e| format!("not a duration: {v}: {e}"))
}

/// The `main` of `bench floor-client`.
pub fn main(args: Vec<String>) -> ExitCode {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("usage: bench floor-client echo|fanout --url ws://HOST:PORT/PATH [loadgen flags]");
        println!("  echo:   -c N -w N -s BYTES; fanout: --subscribers N --rate N -s BYTES");
        println!("  --warmup D --duration D --server-pid PID --json OUT");
        return ExitCode::SUCCESS;
    }
    let opts = match parse(&args) {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("bench floor-client: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(report) => {
            let json = report.to_json();
            match &opts.json {
                Some(path) => {
                    if let Err(e) = std::fs::write(path, json) {
                        eprintln!("bench floor-client: {path}: {e}");
                        return ExitCode::FAILURE;
                    }
                }
                None => println!("{json}"),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench floor-client: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Messages and CPU at one moment, read the way loadgen reads them (its own process with
/// `getrusage`, the server from `/proc/PID/stat`), so the two clients' figures compare.
#[derive(Clone, Copy, Debug)]
struct Mark {
    at: Instant,
    received: u64,
    client: CpuTime,
    server: Option<ProcSample>,
}

impl Mark {
    fn now(received: u64, server_pid: Option<u32>) -> io::Result<Mark> {
        let server = match server_pid {
            Some(pid) => Some(sysinfo::sample_pid(pid).map_err(io::Error::other)?),
            None => None,
        };
        Ok(Mark {
            at: Instant::now(),
            received,
            client: sysinfo::process_cpu(),
            server,
        })
    }
}

/// What a run measured over its window.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The measured window's length.
    pub seconds: f64,
    /// Messages received in the window.
    pub received: u64,
    /// Messages sent and received over the whole run, warm-up included (echo: answers in
    /// flight are the difference; fan-out: each publish is received once per subscriber).
    pub sent: u64,
    pub received_total: u64,
    pub client_cpu_s: f64,
    pub client_system_s: f64,
    pub server_cpu_s: Option<f64>,
    pub server_system_s: Option<f64>,
}

impl Report {
    /// The fields of loadgen's report that `bench/loadgen-cost.sh` reads.
    pub fn to_json(&self) -> String {
        let per_second = |x: f64| {
            if self.seconds > 0.0 {
                x / self.seconds
            } else {
                0.0
            }
        };
        let mut results = json!({
            "window": { "seconds": self.seconds, "received": self.received },
            "run": { "sent": self.sent, "received": self.received_total },
            "receive_rate": per_second(self.received as f64),
            "client_cpu": {
                "cpu_s": self.client_cpu_s,
                "system_s": self.client_system_s,
                "busiest_thread": per_second(self.client_cpu_s),
            },
        });
        if let (Some(cpu_s), Some(system_s)) = (self.server_cpu_s, self.server_system_s) {
            results["server"] = json!({ "cpu_s": cpu_s, "system_s": system_s });
        }
        json!({ "tool": "bench floor-client", "results": results }).to_string()
    }
}

/// One connection's reading state: where the next frame header starts.
#[derive(Default)]
struct Conn {
    /// Payload bytes of the current frame still to skip.
    skip: u64,
    /// The start of a header cut by a read.
    head: [u8; 14],
    head_len: usize,
    /// Echo: frames owed to the server (answers not yet written), and bytes of the frame being
    /// written that are already out.
    owed: usize,
    partial: usize,
}

impl Conn {
    /// Walk the frame headers in `bytes`; returns the data frames that ended in them.
    fn count(&mut self, mut bytes: &[u8]) -> u64 {
        let mut done = 0;
        loop {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len() as u64);
                self.skip -= n;
                bytes = &bytes[n as usize..];
                if self.skip > 0 {
                    return done;
                }
            }
            if bytes.is_empty() {
                return done;
            }
            // Complete the header, from the carried start and these bytes.
            let take = (14 - self.head_len).min(bytes.len());
            self.head[self.head_len..self.head_len + take].copy_from_slice(&bytes[..take]);
            let have = self.head_len + take;
            let Some((header_len, payload_len, data_fin)) = header(&self.head[..have]) else {
                self.head_len = have;
                return done;
            };
            bytes = &bytes[header_len - self.head_len..];
            self.head_len = 0;
            self.skip = payload_len;
            if data_fin {
                done += 1;
            }
        }
    }
}

/// A server frame's header length, payload length and whether it ends a data message.
fn header(b: &[u8]) -> Option<(usize, u64, bool)> {
    let [b0, b1, ..] = *b else {
        return None;
    };
    let (at, len) = match b1 & 0x7F {
        126 => (
            4,
            u64::from(u16::from_be_bytes(b.get(2..4)?.try_into().ok()?)),
        ),
        127 => (10, u64::from_be_bytes(b.get(2..10)?.try_into().ok()?)),
        n => (2, u64::from(n)),
    };
    // Control frames (opcode 8 and up) are not messages.
    Some((at, len, b0 & 0x80 != 0 && b0 & 0x08 == 0))
}

/// Open one WebSocket connection (blocking), then hand it over non-blocking.
fn connect(opts: &Options) -> io::Result<TcpStream> {
    let mut s = StdStream::connect(opts.addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        opts.path, opts.host
    );
    s.write_all(request.as_bytes())?;
    // Read byte by byte up to the blank line, so no frame byte is taken with the answer.
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 || answer.len() > 8192 {
            return Err(io::Error::other("the server closed during the handshake"));
        }
        answer.push(byte[0]);
    }
    if !answer.starts_with(b"HTTP/1.1 101") {
        let line = String::from_utf8_lossy(&answer);
        let line = line.lines().next().unwrap_or_default().to_string();
        return Err(io::Error::other(format!("handshake refused: {line}")));
    }
    s.set_nonblocking(true)?;
    Ok(TcpStream::from_std(s))
}

/// Write as much of `bytes` as the socket takes.
fn write_some(s: &mut TcpStream, bytes: &[u8]) -> io::Result<usize> {
    match s.write(bytes) {
        Ok(n) => Ok(n),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
        Err(e) => Err(e),
    }
}

/// Run the scenario and measure its window.
pub fn run(opts: &Options) -> io::Result<Report> {
    let payload = vec![b'x'; opts.size];
    // Echo: every frame is the same, so `owed` frames are the first `owed` of this buffer.
    let mut echo_frame = Vec::new();
    encode_client_frame(&mut echo_frame, Opcode::Text, &payload, KEY);
    let frame_len = echo_frame.len();
    let echo_burst = echo_frame.repeat(opts.in_flight);
    let mut publish = b"pub:".to_vec();
    publish.extend_from_slice(&payload);
    let mut publish_frame = Vec::new();
    encode_client_frame(&mut publish_frame, Opcode::Text, &publish, KEY);

    let publishers = usize::from(opts.fanout);
    let mut streams = Vec::with_capacity(opts.connections + publishers);
    for _ in 0..opts.connections + publishers {
        streams.push(connect(opts)?);
    }
    let mut poll = Poll::new()?;
    let interest = Interest::READABLE | Interest::WRITABLE;
    for (i, s) in streams.iter_mut().enumerate() {
        poll.registry().register(s, Token(i), interest)?;
    }
    let mut conns: Vec<Conn> = (0..streams.len()).map(|_| Conn::default()).collect();
    let publisher = opts.fanout.then_some(opts.connections);
    if !opts.fanout {
        for c in &mut conns {
            c.owed = opts.in_flight;
        }
    }

    let mut buf = vec![0u8; READ_BYTES];
    let mut events = Events::with_capacity(1024);
    let mut received = 0u64;
    let mut sent = 0u64;
    let mut scheduled = 0u64;
    let start = Instant::now();
    let window_start = start + opts.warmup;
    let end = window_start + opts.duration;
    let mut first: Option<Mark> = None;
    // Echo connections start with their answers owed; writing them is the first turn's work.
    let mut to_write: Vec<usize> = if opts.fanout {
        Vec::new()
    } else {
        (0..conns.len()).collect()
    };
    loop {
        let now = Instant::now();
        if first.is_none() && now >= window_start {
            first = Some(Mark::now(received, opts.server_pid)?);
        }
        if now >= end {
            break;
        }
        for i in to_write.drain(..) {
            let c = &mut conns[i];
            if c.owed == 0 {
                continue;
            }
            let want = c.owed * frame_len - c.partial;
            let from = c.partial;
            let n = write_some(&mut streams[i], &echo_burst[from..from + want])?;
            let whole = (c.partial + n) / frame_len;
            c.owed -= whole;
            c.partial = (c.partial + n) % frame_len;
            sent += whole as u64;
        }
        if let Some(p) = publisher {
            // Publishes follow the clock from the first turn: those due and not yet scheduled
            // are added to what the publisher owes, then written as far as the socket takes.
            let due = (now.duration_since(start).as_secs_f64() * opts.rate as f64) as u64;
            let c = &mut conns[p];
            c.owed += usize::try_from(due - scheduled).unwrap_or(0);
            scheduled = due;
            while c.owed > 0 {
                let n = write_some(&mut streams[p], &publish_frame[c.partial..])?;
                if n == 0 {
                    break;
                }
                c.partial += n;
                if c.partial == publish_frame.len() {
                    c.partial = 0;
                    c.owed -= 1;
                    sent += 1;
                }
            }
        }
        let until = if first.is_none() { window_start } else { end };
        let mut timeout = until.saturating_duration_since(Instant::now());
        if publisher.is_some() {
            timeout = timeout.min(TICK);
        }
        poll.poll(&mut events, Some(timeout))?;
        for event in &events {
            let i = event.token().0;
            if event.is_writable() && !opts.fanout && conns[i].owed > 0 {
                to_write.push(i);
            }
            if !(event.is_readable() || event.is_read_closed() || event.is_error()) {
                continue;
            }
            let n = match streams[i].read(&mut buf) {
                Ok(0) => return Err(io::Error::other("the server closed a connection")),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let got = conns[i].count(&buf[..n]);
            received += got;
            if n == buf.len() {
                // A full read may have left bytes behind, and no new edge comes for them.
                to_read_again(&mut streams[i], &mut conns[i], &mut buf, &mut received)?;
            }
            if !opts.fanout && got > 0 {
                let c = &mut conns[i];
                let was_idle = c.owed == 0;
                // Only answers come back on /echo; a server's own messages add nothing owed.
                c.owed = (c.owed + got as usize).min(opts.in_flight);
                if was_idle {
                    to_write.push(i);
                }
            }
        }
    }
    let last = Mark::now(received, opts.server_pid)?;
    let first = first.unwrap_or(last);
    let client = last.client.since(first.client);
    let server = match (first.server, last.server) {
        (Some(a), Some(b)) => Some((
            b.cpu_ns.saturating_sub(a.cpu_ns),
            b.system_ns.saturating_sub(a.system_ns),
        )),
        _ => None,
    };
    let secs = |ns: u64| ns as f64 / 1e9;
    Ok(Report {
        seconds: last.at.duration_since(first.at).as_secs_f64(),
        received: last.received - first.received,
        sent,
        received_total: received,
        client_cpu_s: secs(client.total_ns),
        client_system_s: secs(client.system_ns),
        server_cpu_s: server.map(|(cpu, _)| secs(cpu)),
        server_system_s: server.map(|(_, system)| secs(system)),
    })
}

/// Read until a short read after a read that filled the buffer.
fn to_read_again(
    stream: &mut TcpStream,
    conn: &mut Conn,
    buf: &mut [u8],
    received: &mut u64,
) -> io::Result<()> {
    loop {
        match stream.read(buf) {
            Ok(0) => return Err(io::Error::other("the server closed a connection")),
            Ok(n) => {
                *received += conn.count(&buf[..n]);
                if n < buf.len() {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn takes_the_flags_loadgen_cost_passes() {
        let o = parse(&args(
            "fanout --url ws://127.0.0.1:9/broadcast --adapter pub --subscribers 1000 \
             --publishers 1 --rate 200 -s 64 --connect-timeout 60s --threads 1 --no-pin \
             --quiet --warmup 1s --duration 3s --server-pid 42 --json /tmp/x.json",
        ))
        .unwrap();
        assert!(o.fanout);
        assert_eq!((o.connections, o.rate, o.size), (1000, 200, 64));
        assert_eq!(o.path, "/broadcast");
        assert_eq!(o.server_pid, Some(42));
        assert_eq!(o.duration, Duration::from_secs(3));
        let o = parse(&args("echo --url ws://127.0.0.1:9/echo -c 100 -w 16 -s 32")).unwrap();
        assert_eq!((o.fanout, o.connections, o.in_flight), (false, 100, 16));
        assert!(parse(&args("echo --url ws://127.0.0.1:9/echo -s 200")).is_err());
        assert!(parse(&args("echo --url wss://127.0.0.1:9/echo")).is_err());
        assert!(parse(&args("fanout --url ws://127.0.0.1:9/ --publishers 2")).is_err());
        assert!(parse(&args("echo --url ws://127.0.0.1:9/ --bogus")).is_err());
        assert_eq!(duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(duration("1m").unwrap(), Duration::from_secs(60));
        assert!(duration("soon").is_err());
    }

    #[test]
    fn counts_data_messages_across_any_cut_and_skips_control_frames() {
        let mut wire = Vec::new();
        let big = vec![7u8; 70_000];
        let mid = vec![5u8; 300];
        for (fin, op, payload) in [
            (true, 0x1, &b"hello"[..]),
            (true, 0x9, &b"ping"[..]),
            (false, 0x2, &mid[..]),
            (true, 0x0, &big[..]),
            (true, 0x1, &b""[..]),
        ] {
            let mut h = [0u8; 14];
            let opcode = Opcode::from_u8(op).unwrap();
            let n = frame_simd::encode_header(&mut h, fin, opcode, payload.len() as u64, None);
            wire.extend_from_slice(&h[..n]);
            wire.extend_from_slice(payload);
        }
        for step in [1, 2, 3, 7, 100, 4096, wire.len()] {
            let mut c = Conn::default();
            let total: u64 = wire.chunks(step).map(|piece| c.count(piece)).sum();
            assert_eq!(total, 3, "step {step}");
            assert_eq!((c.skip, c.head_len), (0, 0), "step {step}");
        }
    }
}
