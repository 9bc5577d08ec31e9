//! The opening handshake, from the request bytes to the complete `101` response bytes, for the
//! upgrade request a desktop Chrome sends (13 header lines, 557 bytes).
//!
//! - `gateway`: a fresh `Conn` fed the request, as a shard does for each new connection: the
//!   head scan, httparse, every RFC 6455 check (method, version, host, duplicates, token lists,
//!   key validity), the accept key and the response.
//! - `floor`: the least work that gives the same response bytes, written by hand: httparse, find
//!   the key, sha1 + base64, one fixed response. No checks at all, so nothing can be faster
//!   without a faster parser or hash.
//! - `tungstenite`: `tungstenite::accept` on an in-memory stream, the handshake a
//!   tokio-tungstenite server runs per connection (it also sets up the `WebSocket`, as a real
//!   server must).
//!
//! Every contender's response is checked before timing: same status, same accept key.

use std::hint::black_box;
use std::io::{self, Read, Write};
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use frame_simd::Kernels;
use gateway::app::{AppState, ClientState, Dispatch};
use gateway::conn::{Conn, ConnId, Ctx, Output, Settings, State};
use gateway::router::Router;

/// Chrome 131 on Linux, opening `wss://push.example.com/echo` from `https://app.example.com`.
const REQUEST: &[u8] = b"GET /echo HTTP/1.1\r\n\
Host: push.example.com\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: https://app.example.com\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Cookie: session=3f9a1c7e5b2d48a6b0e1f2c3d4e5f607; theme=dark\r\n\
Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
\r\n";

/// `base64(sha1(key + GUID))` for the key above (RFC 6455 §4.2.2).
const ACCEPT: &str = "HSmrc0sMlYUkAGmm5OPpG2HaGWk=";
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// What a shard lends a connection's input: its router and app state.
struct ShardSide {
    router: Router,
    app: AppState,
}

/// The gateway's path: a new connection reads the whole request in one read, and the app layer
/// routes it (`/echo`) as a shard does.
fn gateway_accept(
    cx: &Ctx<'_>,
    now: Instant,
    side: &mut ShardSide,
    request: &mut [u8],
    out: &mut Output,
) -> Conn {
    out.clear();
    let mut conn = Conn::new(now);
    let mut client = ClientState::default();
    let mut app = Dispatch {
        id: ConnId::new(0, 1, 0),
        client: &mut client,
        router: &mut side.router,
        app: &mut side.app,
        now,
    };
    conn.on_read(request, now, cx, out, &mut app);
    conn
}

/// The floor: parse, hash the key, write the fixed response.
fn floor_accept(request: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    if !matches!(req.parse(request), Ok(httparse::Status::Complete(_))) {
        return false;
    }
    let Some(key) = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-key"))
    else {
        return false;
    };
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.value);
    sha.update(GUID);
    let mut accept = [0u8; 28];
    let _ = base64_simd::STANDARD.encode(
        &sha.digest().bytes(),
        base64_simd::Out::from_slice(&mut accept),
    );
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: ",
    );
    out.extend_from_slice(&accept);
    out.extend_from_slice(b"\r\n\r\n");
    true
}

/// A socket in memory: reads come from the request, writes collect the response.
struct MemStream<'a> {
    input: &'a [u8],
    output: Vec<u8>,
}

impl Read for MemStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for MemStream<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

type TungsteniteSocket<'a> = tungstenite::WebSocket<MemStream<'a>>;

fn tungstenite_accept(request: &[u8]) -> Option<TungsteniteSocket<'_>> {
    let stream = MemStream {
        input: request,
        output: Vec::new(),
    };
    tungstenite::accept(stream).ok()
}

/// The accept key in a response, after checking it is a `101` (header names are
/// case-insensitive: tungstenite writes them in lower case).
fn accept_of(response: &[u8]) -> String {
    let text = String::from_utf8_lossy(response);
    assert!(
        text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{text}"
    );
    text.lines()
        .filter_map(|l| l.split_once(": "))
        .find(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-accept"))
        .map(|(_, value)| value.to_owned())
        .unwrap_or_default()
}

fn handshake(c: &mut Criterion) {
    let settings = Settings::default();
    let kernels = Kernels::detect();
    let cx = Ctx {
        settings: &settings,
        kernels: &kernels,
    };
    let now = Instant::now();
    let mut request = REQUEST.to_vec();
    let mut out = Output::new();
    let mut floor_out = Vec::new();

    let mut side = ShardSide {
        router: Router::single(0),
        app: AppState::default(),
    };
    let conn = gateway_accept(&cx, now, &mut side, &mut request, &mut out);
    assert_eq!(conn.state(), State::Open);
    assert_eq!(accept_of(&out.bytes), ACCEPT);
    assert!(floor_accept(REQUEST, &mut floor_out));
    assert_eq!(accept_of(&floor_out), ACCEPT);
    let ws = tungstenite_accept(REQUEST).expect("tungstenite accepts the request");
    assert_eq!(accept_of(&ws.get_ref().output), ACCEPT);

    let mut group = c.benchmark_group("handshake");
    group.throughput(Throughput::Elements(1));
    group.bench_function("floor", |b| {
        b.iter(|| floor_accept(black_box(REQUEST), &mut floor_out))
    });
    group.bench_function("gateway", |b| {
        b.iter(|| gateway_accept(&cx, now, &mut side, black_box(&mut request), &mut out))
    });
    group.bench_function("tungstenite", |b| {
        b.iter(|| tungstenite_accept(black_box(REQUEST)))
    });
    group.finish();
}

criterion_group!(benches, handshake);
criterion_main!(benches);
