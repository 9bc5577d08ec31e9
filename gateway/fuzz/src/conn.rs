//! `conn`: one client connection (`gateway::conn::Conn`) serving the real application layer
//! (`gateway::app::Dispatch` on a one-shard router), fed arbitrary bytes in reads cut where the
//! input says, with deadlines, waits, shutdown, close requests and the peer's end of stream in
//! between, in the order the input says.
//!
//! Asserts: nothing panics; everything the connection wrote, in order, is zero or more complete
//! HTTP/1.1 responses (errors close, nothing follows `Connection: close`), then possibly a `101`
//! and RFC 6455 server frames only (unmasked, final, control frames of at most 125 bytes, RSV
//! clear except RSV1 on data frames once permessage-deflate was accepted, each compressed
//! message inflating on its own, text UTF-8 and on `/ws` JSON after inflating, close frames with
//! a sendable code and a UTF-8 reason, nothing after the close); a closed connection holds no
//! buffers. Compression is on (the default), so offers reach the negotiation and compressed
//! frames the capped inflater.

use std::time::{Duration, Instant};

use frame_simd::{CloseCode, Kernels};
use gateway::app::{AppState, ClientState, Dispatch, Route};
use gateway::auth::upgrade::ClientAuth;
use gateway::auth::Verifier;
use gateway::conn::frames::Limits;
use gateway::conn::{Conn, ConnId, Ctx, Output, Settings, State};
use gateway::router::Router;

use super::http_head::{policy, HEADER_BYTES};
use super::input::{script, Input, Op};
use super::wire::{check_stream, Stream};

/// The secret of the token verifier some inputs configure (seeds sign their tokens with it).
pub const TOKEN_SECRET: &[u8] = b"fuzz-secret";

/// Frame limits: the defaults, then small ones that the fuzzer can reach.
const FRAME_BYTES: [u64; 4] = [16 << 20, 0, 125, 1000];
const MESSAGE_BYTES: [u64; 4] = [16 << 20, 10, 200, 4096];

/// Close codes the layers above a connection ask for: a backend disconnect, a slow consumer.
const CLOSE_CODES: [u16; 3] = [4000, 4008, 4999];

/// The connection's settings from one byte.
fn settings(b: u8) -> Settings {
    Settings {
        max_header_bytes: HEADER_BYTES[usize::from(b & 3)],
        limits: Limits {
            max_frame_bytes: FRAME_BYTES[usize::from(b >> 2 & 3)],
            max_message_bytes: MESSAGE_BYTES[usize::from(b >> 4 & 3)],
            max_fragments: if b & 0x40 == 0 { 65536 } else { 3 },
        },
        policy: policy(b & 0x80 != 0),
        ..Settings::default()
    }
}

/// How clients authenticate, from one byte: anonymously, with optional or required tokens.
fn client_auth(b: u8) -> ClientAuth {
    match b % 3 {
        0 => ClientAuth::default(),
        n => ClientAuth {
            verifier: Some(Verifier::new(TOKEN_SECRET)),
            require_token: n == 2,
        },
    }
}

/// Input: a settings byte, an auth byte, the script (see `input::script`), then the stream.
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let settings = settings(input.byte());
    let auth = client_auth(input.byte());
    let ops = script(&mut input);
    let mut stream = input.rest().to_vec();

    let kernels = Kernels::detect();
    let cx = Ctx {
        settings: &settings,
        kernels: &kernels,
    };
    let id = ConnId::new(0, 7, 1);
    let mut client = ClientState::default();
    let mut router = Router::single(0);
    let mut app = AppState::new(auth);
    let mut now = Instant::now();
    let mut conn = Conn::new(now);
    let mut out = Output::new();
    let mut wrote = Vec::new();
    let mut at = 0;
    let mut eof = false;

    // The rest of the stream is one last read.
    for op in ops.into_iter().chain([Op::Read(usize::MAX)]) {
        if conn.must_drop() {
            break;
        }
        match op {
            Op::Read(n) => {
                let end = at + n.min(stream.len() - at);
                if eof || end == at {
                    continue;
                }
                let mut dispatch = Dispatch {
                    id,
                    client: &mut client,
                    router: &mut router,
                    app: &mut app,
                    now,
                };
                conn.on_read(&mut stream[at..end], now, &cx, &mut out, &mut dispatch);
                at = end;
            }
            Op::Deadline { late } => {
                now = now.max(conn.deadline(&settings, now)) + Duration::from_secs(late.into());
                conn.on_deadline(now, &cx, &mut out);
            }
            Op::Wait { secs } => {
                now += Duration::from_secs(secs.into());
                conn.on_deadline(now, &cx, &mut out);
            }
            Op::Shutdown => conn.on_shutdown(now, &mut out),
            Op::Other(arg) => {
                let code = CloseCode(CLOSE_CODES[usize::from(arg) % CLOSE_CODES.len()]);
                let reason = "r".repeat(usize::from(arg));
                conn.on_close_request(code, &reason, now, &mut out);
            }
            Op::PeerEof => {
                conn.on_peer_eof(now);
                eof = true;
            }
        }
        out.finish();
        wrote.extend_from_slice(&out.bytes);
        out.clear();
        if conn.state() == State::Closed {
            assert_eq!(
                conn.retained_bytes(),
                0,
                "a closed connection keeps buffers"
            );
        }
    }
    let json_text = client.route == Route::Ws;
    check_stream(&wrote, Stream::Client { json_text });
}
