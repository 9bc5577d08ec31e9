//! `api_request`: one backend API connection (`gateway::api::ApiConn`) fed arbitrary bytes in
//! reads cut where the input says, with deadlines, waits, shutdown, the router's answers to its
//! commands and the peer's end of stream in between.
//!
//! Asserts: nothing panics; at most one command is outstanding and the connection waits for its
//! answer; everything written is a sequence of complete HTTP/1.1 responses (a body of exactly
//! `Content-Length` bytes, JSON where it says `application/json`, nothing after
//! `Connection: close`), one per answered request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway::api::{ApiConn, ApiSettings, ApiState, Command, Outcome, Stats};
use gateway::auth::ApiKey;
use gateway::conn::ConnId;
use gateway::metrics::ShardMetrics;

use super::input::{script, Input, Op};
use super::wire::{check_stream, Stream};

/// The API key requests must carry (seeds use it).
pub const API_KEY: &str = "k3y";

/// Body limits: the default and small ones.
const BODY_BYTES: [usize; 4] = [1 << 20, 0, 64, 1024];
/// Header byte limits.
const HEADER_BYTES: [usize; 4] = [8192, 40, 200, 1024];

fn settings(b: u8) -> ApiSettings {
    let mut s = ApiSettings::new(ApiKey::new(API_KEY));
    s.max_body_bytes = BODY_BYTES[usize::from(b & 3)];
    s.max_header_bytes = HEADER_BYTES[usize::from(b >> 2 & 3)];
    s.max_headers = if b & 0x10 == 0 { 64 } else { 2 };
    s
}

/// The router's answer to `command`, chosen by `arg`: a refusal, or what it would list.
fn outcome(command: &Command, arg: u8) -> Outcome {
    match arg % 4 {
        1 => return Outcome::UnknownConnection,
        2 => return Outcome::Busy,
        _ => {}
    }
    let member = (ConnId::new(0, 3, 1), Some(Arc::from("ann \"q\"\n")));
    match command {
        Command::Channels => {
            Outcome::Channels(vec![(Arc::from("b"), 2), (Arc::from("a\u{e9}"), 1)])
        }
        Command::Presence { channel } => Outcome::Presence {
            channel: channel.clone(),
            members: vec![member, (ConnId::new(1, 4, 2), None)],
        },
        Command::Stats => Outcome::Stats(Stats::default()),
        Command::Metrics => Outcome::Metrics("# TYPE x counter\nx 1\n".into()),
        _ => Outcome::Accepted,
    }
}

/// Input: a settings byte, the script (see `input::script`; `Other(arg)` answers the
/// outstanding command), then the stream.
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let s = settings(input.byte());
    let ops = script(&mut input);
    let stream = input.rest();
    let metrics = ShardMetrics::default();
    let mut now = Instant::now();
    let mut conn = ApiConn::new(now);
    let mut out = Vec::new();
    let mut outstanding: Option<Command> = None;
    let mut at = 0;
    let mut eof = false;

    // The rest of the stream is one last read, then every command is answered.
    let tail = [Op::Read(usize::MAX), Op::Other(0)];
    for op in ops.into_iter().chain(tail) {
        if conn.must_drop() {
            break;
        }
        let command = match op {
            Op::Read(n) => {
                let end = at + n.min(stream.len() - at);
                if eof || end == at {
                    continue;
                }
                let closed = conn.state() == ApiState::Closed;
                let before = out.len();
                let c = conn.on_read(&stream[at..end], now, &s, &metrics, &mut out);
                at = end;
                if closed {
                    assert!(
                        c.is_none() && out.len() == before,
                        "a closed connection answered"
                    );
                }
                c
            }
            Op::Deadline { late } => {
                now = now.max(conn.deadline(&s)) + Duration::from_secs(late.into());
                conn.on_deadline(now, &s, &mut out);
                None
            }
            Op::Wait { secs } => {
                now += Duration::from_secs(secs.into());
                conn.on_deadline(now, &s, &mut out);
                None
            }
            Op::Shutdown => {
                conn.on_shutdown(now);
                None
            }
            Op::Other(arg) => answer(
                &mut conn,
                &mut outstanding,
                arg,
                now,
                &s,
                &metrics,
                &mut out,
            ),
            Op::PeerEof => {
                conn.on_peer_eof(now);
                eof = true;
                None
            }
        };
        if let Some(c) = command {
            assert!(
                outstanding.is_none(),
                "a second command while one is outstanding"
            );
            assert_eq!(conn.state(), ApiState::AwaitOutcome);
            outstanding = Some(c);
        }
        if outstanding.is_none() {
            assert_ne!(
                conn.state(),
                ApiState::AwaitOutcome,
                "waits with nothing outstanding"
            );
        }
    }
    check_stream(&out, Stream::Api);
}

/// Hand the router's answer to the outstanding command, and each pipelined command after it,
/// until one is left waiting (`arg` odd) or none remains. Returns the one left waiting.
fn answer(
    conn: &mut ApiConn,
    outstanding: &mut Option<Command>,
    arg: u8,
    now: Instant,
    s: &ApiSettings,
    metrics: &ShardMetrics,
    out: &mut Vec<u8>,
) -> Option<Command> {
    while let Some(c) = outstanding.take() {
        let next = conn.on_outcome(outcome(&c, arg), now, s, metrics, out);
        if arg % 2 == 1 {
            return next;
        }
        *outstanding = next;
    }
    None
}
