//! In-test WebSocket servers on 127.0.0.1 (std threads, the frame-simd codec): echo, echo that
//! stalls once on purpose, `pub:` broadcast, and a plain HTTP server that is not a WebSocket
//! server. Each stops when dropped; every socket has a timeout, so nothing outlives a test.

#![allow(dead_code)]

pub mod gateway;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use frame_simd::{
    encode_server_frame, mask, parse_header, Kernels, Opcode, ParseConfig, Parsed, Role,
};

/// What the server does with messages.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// Echo every message.
    Echo,
    /// Echo, but stop answering for `stall` once, after `after` messages in total.
    StallOnce { after: u64, stall: Duration },
    /// `pub:` broadcast to every other connection.
    Broadcast,
    /// Answer every request with 404 (not a WebSocket server).
    NotFound,
    /// Send the 101 and one text message in one write, then hang up (FIN, no close frame):
    /// the client reads the message and the end of the stream from one readiness event.
    HangUpAfterHello,
    /// A small model of the gateway's client protocol: `/raw?channel=C` listens to C (bare
    /// deliveries); `/ws` gets a welcome, takes `subscribe` and `publish` ops (with `skip_self`)
    /// and receives JSON `message` objects.
    GatewayProtocol,
    /// The gateway-protocol model, but a subscription takes this long and is in effect only from
    /// its reply on (as in the gateway): a client that publishes before its peers' replies
    /// arrived loses messages.
    GatewayProtocolSlowSubscribe(Duration),
}

impl Mode {
    fn is_gateway_model(self) -> bool {
        matches!(
            self,
            Mode::GatewayProtocol | Mode::GatewayProtocolSlowSubscribe(_)
        )
    }
}

/// A connection of the gateway-protocol model: how it wants deliveries, and its channels.
#[derive(Clone)]
struct Sub {
    raw: bool,
    channels: Arc<Mutex<Vec<String>>>,
}

/// The string value of `"key":"..."` in a flat JSON object (no escapes: test traffic only).
fn json_str<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":\"");
    let at = text.find(&pat)? + pat.len();
    let end = text[at..].find('"')?;
    Some(&text[at..at + end])
}

struct State {
    mode: Mode,
    stop: AtomicBool,
    messages: AtomicU64,
    stalled: AtomicBool,
    peers: Mutex<Vec<(u64, Arc<Mutex<TcpStream>>)>>,
    subs: Mutex<Vec<(u64, Sub)>>,
    sources: Mutex<std::collections::BTreeSet<std::net::IpAddr>>,
    next_id: AtomicU64,
}

/// A running test server.
pub struct Server {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl Server {
    pub fn start(mode: Mode) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            mode,
            stop: AtomicBool::new(false),
            messages: AtomicU64::new(0),
            stalled: AtomicBool::new(false),
            peers: Mutex::new(Vec::new()),
            subs: Mutex::new(Vec::new()),
            sources: Mutex::new(Default::default()),
            next_id: AtomicU64::new(0),
        });
        let st = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if st.stop.load(Ordering::Acquire) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                if let Ok(peer) = stream.peer_addr() {
                    st.sources.lock().unwrap().insert(peer.ip());
                }
                let st = st.clone();
                std::thread::spawn(move || serve(stream, st));
            }
        });
        Server { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// Client addresses seen.
    pub fn sources(&self) -> Vec<std::net::IpAddr> {
        self.state.sources.lock().unwrap().iter().copied().collect()
    }

    /// Data messages the server received.
    pub fn messages(&self) -> u64 {
        self.state.messages.load(Ordering::Acquire)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Release);
        // Wake the accept loop so its thread ends.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        for (_, p) in self.state.peers.lock().unwrap().drain(..) {
            let _ = p.lock().unwrap().shutdown(std::net::Shutdown::Both);
        }
    }
}

fn serve(mut s: TcpStream, st: Arc<State>) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = s.set_nodelay(true);
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    // Request head.
    let head_len = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_len]).to_string();
    if st.mode.is_gateway_model() && head.starts_with("POST ") {
        return serve_api(s, buf, st);
    }
    if st.mode == Mode::NotFound {
        let _ = s.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\nConnection: close\r\n\r\nnot found\n",
        );
        return;
    }
    let key = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("sec-websocket-key")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let accept = base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes());
    let resp = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n");
    if st.mode == Mode::HangUpAfterHello {
        let mut out = resp.into_bytes();
        encode_server_frame(&mut out, Opcode::Text, b"hello");
        let _ = s.write_all(&out);
        let _ = s.shutdown(std::net::Shutdown::Both);
        return;
    }
    if s.write_all(resp.as_bytes()).is_err() {
        return;
    }
    buf.drain(..head_len);
    let writer = Arc::new(Mutex::new(s.try_clone().unwrap()));
    let id = st.next_id.fetch_add(1, Ordering::AcqRel);
    st.peers.lock().unwrap().push((id, writer.clone()));
    let kernels = Kernels::detect();
    let cfg = ParseConfig {
        role: Role::Server,
        rsv_allowed: 0,
        max_payload: 1 << 24,
    };
    let mut out = Vec::new();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let sub = Sub {
        raw: path.starts_with("/raw"),
        channels: Arc::new(Mutex::new(
            path.split_once("channel=")
                .map(|(_, c)| vec![c.to_string()])
                .unwrap_or_default(),
        )),
    };
    if st.mode.is_gateway_model() {
        st.subs.lock().unwrap().push((id, sub.clone()));
        if !sub.raw {
            out.clear();
            encode_server_frame(
                &mut out,
                Opcode::Text,
                format!(r#"{{"type":"welcome","conn":"{id}"}}"#).as_bytes(),
            );
            let _ = writer.lock().unwrap().write_all(&out);
        }
    }
    'conn: loop {
        // Every complete frame in `buf`.
        let mut at = 0;
        loop {
            let (h, len) = match parse_header(&buf[at..], &cfg) {
                Ok(Parsed::Header { header, len }) => (header, len),
                Ok(Parsed::Need(_)) => break,
                Err(_) => break 'conn,
            };
            let plen = h.payload_len as usize;
            if buf.len() < at + len + plen {
                break;
            }
            let payload = &mut buf[at + len..at + len + plen];
            if let Some(k) = h.mask_key {
                mask::unmask(&kernels, payload, k, 0);
            }
            at += len + plen;
            match h.opcode {
                Opcode::Close => {
                    out.clear();
                    encode_server_frame(&mut out, Opcode::Close, &payload[..payload.len().min(2)]);
                    let _ = writer.lock().unwrap().write_all(&out);
                    break 'conn;
                }
                Opcode::Ping => {
                    out.clear();
                    encode_server_frame(&mut out, Opcode::Pong, payload);
                    let _ = writer.lock().unwrap().write_all(&out);
                }
                Opcode::Text | Opcode::Binary => {
                    let n = st.messages.fetch_add(1, Ordering::AcqRel) + 1;
                    match st.mode {
                        Mode::GatewayProtocol | Mode::GatewayProtocolSlowSubscribe(_) => {
                            let text = String::from_utf8_lossy(payload).into_owned();
                            let op = json_str(&text, "op").unwrap_or("");
                            let channel = json_str(&text, "channel").unwrap_or("").to_string();
                            if op == "subscribe" {
                                if let Mode::GatewayProtocolSlowSubscribe(delay) = st.mode {
                                    std::thread::sleep(delay);
                                }
                                sub.channels.lock().unwrap().push(channel.clone());
                            }
                            if op == "publish" {
                                let data = json_str(&text, "data").unwrap_or("").to_string();
                                let skip_self = text.contains(r#""skip_self":true"#);
                                let raw_frame = {
                                    let mut f = Vec::new();
                                    encode_server_frame(&mut f, Opcode::Text, data.as_bytes());
                                    f
                                };
                                let json = format!(
                                    r#"{{"type":"message","channel":"{channel}","data":"{data}","from":"{id}"}}"#
                                );
                                let mut json_frame = Vec::new();
                                encode_server_frame(&mut json_frame, Opcode::Text, json.as_bytes());
                                let subs = st.subs.lock().unwrap().clone();
                                let peers = st.peers.lock().unwrap().clone();
                                for (sid, s) in subs {
                                    if (skip_self && sid == id)
                                        || !s.channels.lock().unwrap().contains(&channel)
                                    {
                                        continue;
                                    }
                                    if let Some((_, p)) = peers.iter().find(|(pid, _)| *pid == sid)
                                    {
                                        let frame = if s.raw { &raw_frame } else { &json_frame };
                                        let _ = p.lock().unwrap().write_all(frame);
                                    }
                                }
                            }
                            if !sub.raw {
                                out.clear();
                                encode_server_frame(
                                    &mut out,
                                    Opcode::Text,
                                    br#"{"type":"reply","ok":true}"#,
                                );
                                let _ = writer.lock().unwrap().write_all(&out);
                            }
                        }
                        Mode::Broadcast => {
                            if let Some(body) = payload.strip_prefix(b"pub:") {
                                out.clear();
                                encode_server_frame(&mut out, Opcode::Text, body);
                                let peers = st.peers.lock().unwrap().clone();
                                for (pid, p) in peers {
                                    if pid != id {
                                        let _ = p.lock().unwrap().write_all(&out);
                                    }
                                }
                            }
                        }
                        Mode::StallOnce { after, stall } => {
                            if n >= after && !st.stalled.swap(true, Ordering::AcqRel) {
                                std::thread::sleep(stall);
                            }
                            out.clear();
                            encode_server_frame(&mut out, h.opcode, payload);
                            let _ = writer.lock().unwrap().write_all(&out);
                        }
                        _ => {
                            out.clear();
                            encode_server_frame(&mut out, h.opcode, payload);
                            let _ = writer.lock().unwrap().write_all(&out);
                        }
                    }
                }
                _ => {}
            }
        }
        buf.drain(..at);
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    st.peers.lock().unwrap().retain(|(pid, _)| *pid != id);
    st.subs.lock().unwrap().retain(|(pid, _)| *pid != id);
    let _ = s.shutdown(std::net::Shutdown::Both);
}

/// The model's backend API: keep-alive `POST /api/publish` with `Bearer testkey`, delivering
/// the body's `data` to the channel's subscribers; 401 for another key.
fn serve_api(mut s: TcpStream, mut buf: Vec<u8>, st: Arc<State>) {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        // One request: head, then Content-Length bytes of body.
        let parsed = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .and_then(|at| {
                let head = String::from_utf8_lossy(&buf[..at]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.trim()
                            .eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                (buf.len() >= at + 4 + len).then_some((head, at + 4, len))
            });
        let Some((head, body_at, len)) = parsed else {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let body = String::from_utf8_lossy(&buf[body_at..body_at + len]).to_string();
        buf.drain(..body_at + len);
        if !head.contains("Authorization: Bearer testkey") {
            let _ = s.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n");
            continue;
        }
        st.messages.fetch_add(1, Ordering::AcqRel);
        let channel = json_str(&body, "channel").unwrap_or("").to_string();
        let data = json_str(&body, "data").unwrap_or("").to_string();
        let mut raw = Vec::new();
        encode_server_frame(&mut raw, Opcode::Text, data.as_bytes());
        let subs = st.subs.lock().unwrap().clone();
        let peers = st.peers.lock().unwrap().clone();
        for (sid, sub) in subs {
            if sub.raw && sub.channels.lock().unwrap().contains(&channel) {
                if let Some((_, p)) = peers.iter().find(|(pid, _)| *pid == sid) {
                    let _ = p.lock().unwrap().write_all(&raw);
                }
            }
        }
        let _ = s.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 11\r\n\r\n{\"ok\":true}");
    }
}

/// A fresh temporary directory for a test's files.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loadgen-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Run the loadgen binary with `args`.
pub fn loadgen(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .output()
        .expect("run loadgen");
    if std::env::var_os("LOADGEN_TEST_VERBOSE").is_some() {
        eprintln!("{}", String::from_utf8_lossy(&out.stdout));
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    out
}

/// Run loadgen and parse its `--json` result (asserting a zero exit).
pub fn loadgen_json(args: &[&str], json: &std::path::Path) -> serde_json::Value {
    let mut all: Vec<&str> = args.to_vec();
    let j = json.to_str().unwrap();
    all.extend(["--json", j, "--quiet", "--no-pin", "--threads", "2"]);
    let out = loadgen(&all);
    assert!(
        out.status.success(),
        "loadgen {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap()
}

/// Run `loadgen merge` on `inputs` and parse its `--json` result (asserting a zero exit).
pub fn merge_json(inputs: &[&std::path::Path], json: &std::path::Path) -> serde_json::Value {
    let mut args = vec!["merge"];
    args.extend(inputs.iter().map(|p| p.to_str().unwrap()));
    args.extend(["--json", json.to_str().unwrap()]);
    let out = loadgen(&args);
    assert!(
        out.status.success(),
        "loadgen merge failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap()
}

/// A u64 at a JSON pointer.
pub fn num(v: &serde_json::Value, pointer: &str) -> u64 {
    v.pointer(pointer)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} missing in result"))
}
