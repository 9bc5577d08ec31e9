//! Sans-IO tests of [`Conn`]: bytes in, bytes out, time simulated.

use std::time::{Duration, Instant};

use frame_simd::{
    encode_header, parse_header, Kernels, MaskKey, Opcode, ParseConfig, Parsed, Role,
    MAX_HEADER_LEN,
};

use super::http::{keeps_alive, write_response};
use super::*;

/// The app of these tests: `/echo` upgrades and echoes, `/healthz` is a plain keep-alive
/// response, anything else is not found (the gateway's own URL table lives in the app layer).
struct Fixture;

impl App for Fixture {
    fn on_request(&mut self, req: &httparse::Request<'_, '_>, out: &mut Output) -> Handling {
        match req.path {
            Some("/echo") => Handling::Upgrade,
            Some("/healthz") => {
                let keep_alive = keeps_alive(req);
                write_response(&mut out.bytes, (200, "OK"), &[], "ok\n", !keep_alive);
                Handling::Answered { keep_alive }
            }
            _ => Handling::Refuse(HttpError::NotFound),
        }
    }

    fn on_open(&mut self, _: &httparse::Request<'_, '_>, _: &mut Output) -> Result<(), Refusal> {
        Ok(())
    }

    fn on_message(&mut self, opcode: Opcode, payload: &mut [u8], out: &mut Output) {
        out.frame(opcode, payload);
    }
}

const KEY: MaskKey = MaskKey([0x37, 0xfa, 0x21, 0x3d]);
const UPGRADE: &str =
    "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

struct Peer {
    conn: Conn,
    settings: Settings,
    kernels: Kernels,
    t0: Instant,
}

impl Peer {
    fn new(settings: Settings) -> Peer {
        let t0 = super::stamp::now_on_grid();
        Peer {
            conn: Conn::new(t0),
            settings,
            kernels: Kernels::detect(),
            t0,
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// Feed bytes at time `ms`; returns what the connection sent.
    fn send_at(&mut self, bytes: &[u8], ms: u64) -> Vec<u8> {
        let mut out = Output::new();
        let mut buf = bytes.to_vec();
        let cx = Ctx {
            settings: &self.settings,
            kernels: &self.kernels,
        };
        let now = self.at(ms);
        self.conn
            .on_read(&mut buf, now, &cx, &mut out, &mut Fixture);
        out.finish();
        out.bytes
    }

    fn send(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.send_at(bytes, 0)
    }

    fn tick(&mut self, ms: u64) -> Vec<u8> {
        let mut out = Output::new();
        let cx = Ctx {
            settings: &self.settings,
            kernels: &self.kernels,
        };
        self.conn.on_deadline(self.at(ms), &cx, &mut out);
        out.finish();
        out.bytes
    }

    fn open() -> Peer {
        let mut p = Peer::new(Settings::default());
        let resp = p.send(UPGRADE.as_bytes());
        assert!(resp.starts_with(b"HTTP/1.1 101 "));
        assert_eq!(p.conn.state(), State::Open);
        p
    }
}

fn client_frame(fin: bool, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let mut h = [0u8; MAX_HEADER_LEN];
    let n = encode_header(&mut h, fin, opcode, payload.len() as u64, Some(KEY));
    let mut out = h[..n].to_vec();
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY.0[i % 4]));
    out
}

/// Split server output into (opcode, payload) frames, checking each is final and unmasked.
fn server_frames(mut bytes: &[u8]) -> Vec<(Opcode, Vec<u8>)> {
    let cfg = ParseConfig {
        role: Role::Client,
        rsv_allowed: 0,
        max_payload: u64::MAX >> 1,
    };
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let Ok(Parsed::Header { header, len }) = parse_header(bytes, &cfg) else {
            panic!("bad server frame: {bytes:02x?}");
        };
        assert!(header.fin);
        let end = len + header.payload_len as usize;
        frames.push((header.opcode, bytes[len..end].to_vec()));
        bytes = &bytes[end..];
    }
    frames
}

fn close_code(frames: &[(Opcode, Vec<u8>)]) -> Option<u16> {
    frames
        .iter()
        .find(|(op, _)| *op == Opcode::Close)
        .map(|(_, p)| u16::from_be_bytes([p[0], p[1]]))
}

fn status(resp: &[u8]) -> u16 {
    let s = std::str::from_utf8(resp).unwrap();
    s[9..12].parse().unwrap()
}

#[test]
fn frames_right_behind_the_request_are_echoed() {
    let mut p = Peer::new(Settings::default());
    let mut wire = UPGRADE.as_bytes().to_vec();
    wire.extend(client_frame(true, Opcode::Text, b"hi"));
    let out = p.send(&wire);
    let head_end = memchr::memmem::find(&out, b"\r\n\r\n").unwrap() + 4;
    assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
    assert_eq!(
        server_frames(&out[head_end..]),
        vec![(Opcode::Text, b"hi".to_vec())]
    );
}

#[test]
fn request_and_frames_fed_byte_by_byte() {
    let mut p = Peer::new(Settings::default());
    let mut wire = UPGRADE.as_bytes().to_vec();
    wire.extend(client_frame(false, Opcode::Binary, &[1, 2, 3]));
    wire.extend(client_frame(true, Opcode::Ping, b"x"));
    wire.extend(client_frame(true, Opcode::Continuation, &[4]));
    let mut out = Vec::new();
    for b in &wire {
        out.extend(p.send(&[*b]));
    }
    let head_end = memchr::memmem::find(&out, b"\r\n\r\n").unwrap() + 4;
    assert_eq!(
        server_frames(&out[head_end..]),
        vec![
            (Opcode::Pong, b"x".to_vec()),
            (Opcode::Binary, vec![1, 2, 3, 4])
        ]
    );
    assert_eq!(p.conn.retained_bytes(), 0);
}

#[test]
fn an_open_connection_keeps_no_rare_or_partial_state_between_messages() {
    let mut p = Peer::new(Settings::default());
    // A head split over reads and a message split over reads both need state for a while.
    let (a, b) = UPGRADE.as_bytes().split_at(20);
    p.send(a);
    assert!(p.conn.rare.is_some(), "the unfinished head is kept");
    p.send(b);
    assert_eq!(p.conn.state(), State::Open);
    assert!(
        p.conn.rare.is_none(),
        "an open connection without compression has no rare state"
    );
    let frame = client_frame(true, Opcode::Binary, &[7; 100]);
    let (a, b) = frame.split_at(50);
    p.send(a);
    assert!(p.conn.frames.retained_bytes() > 0, "half a message is kept");
    let out = p.send(b);
    assert_eq!(server_frames(&out), vec![(Opcode::Binary, vec![7; 100])]);
    assert_eq!(p.conn.retained_bytes(), 0);
    // Closing records the close there.
    p.send(&client_frame(true, Opcode::Close, &1000u16.to_be_bytes()));
    assert_eq!(
        p.conn.close_record(),
        Some(CloseRecord {
            code: 1000,
            by_peer: true
        })
    );
}

#[test]
fn healthz_keeps_the_connection_alive() {
    let mut p = Peer::new(Settings::default());
    let req = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let out = p.send(format!("{req}{req}").as_bytes());
    let s = String::from_utf8(out).unwrap();
    assert_eq!(s.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{s}");
    assert!(s.ends_with("\r\n\r\nok\n"));
    assert!(!s.contains("Connection: close"));
    assert_eq!(p.conn.state(), State::AwaitRequest);
    let out = p.send(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert!(String::from_utf8(out)
        .unwrap()
        .contains("Connection: close"));
    assert_eq!(p.conn.state(), State::Closed);
}

#[test]
fn a_head_cut_short_by_a_bare_line_feed_is_400_not_skipped() {
    // httparse ends this head at the bare `\n\n`; the `X-Smuggled` line after it must not be
    // silently dropped (nor read as a second request).
    let mut p = Peer::new(Settings::default());
    let out = p.send(b"GET /healthz HTTP/1.1\r\nHost: x\n\nX-Smuggled: 1\r\n\r\n");
    assert_eq!(status(&out), 400, "{}", String::from_utf8_lossy(&out));
    assert_eq!(p.conn.state(), State::Closed);
    // Bare line feeds all the way never complete a head: the head limit answers it.
    let mut p = Peer::new(Settings::default());
    let out = p.send(b"GET /healthz HTTP/1.1\nHost: x\n\n");
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
}

#[test]
fn unknown_path_is_404_and_closes() {
    let mut p = Peer::new(Settings::default());
    let out = p.send(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status(&out), 404);
    assert_eq!(p.conn.state(), State::Closed);
}

#[test]
fn header_limits_give_414_431() {
    let settings = Settings {
        max_header_bytes: 256,
        max_headers: 4,
        ..Settings::default()
    };
    let mut p = Peer::new(settings.clone());
    let long_line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(300));
    // Dribbled: the answer comes as soon as the limit is crossed.
    let mut out = Vec::new();
    for chunk in long_line.as_bytes().chunks(7) {
        out.extend(p.send(chunk));
    }
    assert_eq!(status(&out), 414);
    assert!(p.conn.retained_bytes() == 0);

    let mut p = Peer::new(settings.clone());
    let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "b".repeat(300));
    assert_eq!(status(&p.send(big.as_bytes())), 431);

    let mut p = Peer::new(settings);
    let many = format!("GET /echo HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(5));
    assert_eq!(status(&p.send(many.as_bytes())), 431);
}

#[test]
fn echo_of_fragmented_message_is_one_frame() {
    let mut p = Peer::open();
    let mut wire = client_frame(false, Opcode::Text, b"ab");
    wire.extend(client_frame(false, Opcode::Continuation, b""));
    wire.extend(client_frame(true, Opcode::Continuation, b"c"));
    assert_eq!(
        server_frames(&p.send(&wire)),
        vec![(Opcode::Text, b"abc".to_vec())]
    );
}

/// A message of `n` frames, the first with `opcode`, each carrying the next piece of `payload`
/// (`size` bytes each).
fn fragmented(opcode: Opcode, payload: &[u8], size: usize) -> Vec<u8> {
    let pieces: Vec<&[u8]> = payload.chunks(size).collect();
    let mut wire = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        let op = if i == 0 { opcode } else { Opcode::Continuation };
        wire.extend(client_frame(i + 1 == pieces.len(), op, piece));
    }
    wire
}

#[test]
fn message_of_exactly_max_fragments_is_echoed_one_more_is_1009() {
    let mut settings = Settings::default();
    settings.limits.max_fragments = 16;
    let mut p = Peer::new(settings.clone());
    p.send(UPGRADE.as_bytes());
    let wire = fragmented(Opcode::Binary, &[7; 16], 1);
    assert_eq!(
        server_frames(&p.send(&wire)),
        vec![(Opcode::Binary, vec![7; 16])]
    );
    // Seventeen frames: the seventeenth is refused, final or not.
    for fin in [true, false] {
        let mut p = Peer::new(settings.clone());
        p.send(UPGRADE.as_bytes());
        let mut wire = fragmented(Opcode::Text, &[b'x'; 17], 1);
        if !fin {
            wire.truncate(wire.len() - 7);
            wire.extend(client_frame(false, Opcode::Continuation, b"x"));
        }
        let frames = server_frames(&p.send(&wire));
        assert_eq!(close_code(&frames), Some(1009), "fin {fin}");
        assert_eq!(frames.len(), 1, "fin {fin}");
    }
}

#[test]
fn four_mib_in_65536_fragments_of_64_bytes_is_one_echo() {
    // The default `--max-fragments` is 65536: the largest message it allows at 64 B a frame.
    let mut p = Peer::open();
    let payload: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    let wire = fragmented(Opcode::Binary, &payload, 64);
    let mut out = Vec::new();
    for read in wire.chunks(64 * 1024) {
        out.extend(p.send(read));
    }
    assert_eq!(server_frames(&out), vec![(Opcode::Binary, payload)]);
    assert_eq!(p.conn.retained_bytes(), 0);
}

#[test]
fn valid_close_code_is_echoed_and_closes() {
    for code in [1000u16, 1001, 1003, 1007, 1014, 3000, 4999] {
        let mut p = Peer::open();
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend(b"bye");
        let frames = server_frames(&p.send(&client_frame(true, Opcode::Close, &payload)));
        assert_eq!(
            frames,
            vec![(Opcode::Close, code.to_be_bytes().to_vec())],
            "{code}"
        );
        assert_eq!(p.conn.state(), State::Closed);
    }
}

#[test]
fn empty_close_is_answered_empty() {
    let mut p = Peer::open();
    let frames = server_frames(&p.send(&client_frame(true, Opcode::Close, b"")));
    assert_eq!(frames, vec![(Opcode::Close, vec![])]);
}

#[test]
fn bad_close_frames_get_1002_or_1007() {
    for (payload, want) in [
        (vec![0x03], 1002),
        (999u16.to_be_bytes().to_vec(), 1002),
        (1005u16.to_be_bytes().to_vec(), 1002),
        (1016u16.to_be_bytes().to_vec(), 1002),
        (5000u16.to_be_bytes().to_vec(), 1002),
        ([0x03, 0xE8, 0xFF].to_vec(), 1007),
    ] {
        let mut p = Peer::open();
        let frames = server_frames(&p.send(&client_frame(true, Opcode::Close, &payload)));
        assert_eq!(close_code(&frames), Some(want), "{payload:02x?}");
    }
}

#[test]
fn data_after_close_is_ignored() {
    let mut p = Peer::open();
    let mut wire = client_frame(true, Opcode::Close, &1000u16.to_be_bytes());
    wire.extend(client_frame(true, Opcode::Text, b"late"));
    let frames = server_frames(&p.send(&wire));
    assert_eq!(frames.len(), 1);
    assert!(p
        .send(&client_frame(true, Opcode::Text, b"later"))
        .is_empty());
}

/// A ping with a payload of its own: its number, then a length that varies with it.
fn numbered_ping(i: u16) -> Vec<u8> {
    let mut payload = i.to_be_bytes().to_vec();
    payload.resize(2 + usize::from(i % 124), b'.');
    payload
}

#[test]
fn pings_in_one_read_get_their_own_pongs_in_order() {
    let mut p = Peer::open();
    let mut wire = Vec::new();
    for i in 0..1000 {
        wire.extend(client_frame(true, Opcode::Ping, &numbered_ping(i)));
    }
    let pongs: Vec<_> = (0..1000)
        .map(|i| (Opcode::Pong, numbered_ping(i)))
        .collect();
    assert_eq!(server_frames(&p.send(&wire)), pongs);
    // Split anywhere, the answer is the same.
    let mut out = Vec::new();
    for piece in wire.chunks(97) {
        out.extend(p.send(piece));
    }
    assert_eq!(server_frames(&out), pongs);
}

#[test]
fn pongs_keep_their_place_among_data_frames() {
    let mut p = Peer::open();
    let mut wire = client_frame(true, Opcode::Text, b"a");
    wire.extend(client_frame(true, Opcode::Ping, b"1"));
    wire.extend(client_frame(true, Opcode::Binary, b"b"));
    wire.extend(client_frame(true, Opcode::Ping, b"2"));
    wire.extend(client_frame(true, Opcode::Ping, b"3"));
    wire.extend(client_frame(false, Opcode::Text, b"c"));
    wire.extend(client_frame(true, Opcode::Ping, b"4"));
    wire.extend(client_frame(true, Opcode::Continuation, b"d"));
    wire.extend(client_frame(true, Opcode::Ping, b""));
    wire.extend(client_frame(true, Opcode::Close, &1000u16.to_be_bytes()));
    let want = vec![
        (Opcode::Text, b"a".to_vec()),
        (Opcode::Pong, b"1".to_vec()),
        (Opcode::Binary, b"b".to_vec()),
        (Opcode::Pong, b"2".to_vec()),
        (Opcode::Pong, b"3".to_vec()),
        (Opcode::Pong, b"4".to_vec()),
        (Opcode::Text, b"cd".to_vec()),
        (Opcode::Pong, vec![]),
        (Opcode::Close, 1000u16.to_be_bytes().to_vec()),
    ];
    assert_eq!(server_frames(&p.send(&wire)), want);
    let mut out = Vec::new();
    let mut p = Peer::open();
    for b in &wire {
        out.extend(p.send(&[*b]));
    }
    assert_eq!(server_frames(&out), want);
}

#[test]
fn full_queue_coalesces_pongs_to_the_latest_in_its_place() {
    let mut p = Peer::open();
    let cx = Ctx {
        settings: &p.settings,
        kernels: &p.kernels,
    };
    // Room for ten 4-byte pongs besides the two 127-byte frames kept for coalesced pongs.
    let mut out = Output::new();
    out.set_room(10 * 4 + 2 * 127);
    let mut wire = Vec::new();
    for i in 0..1000u16 {
        wire.extend(client_frame(true, Opcode::Ping, &i.to_be_bytes()));
        if i == 500 {
            wire.extend(client_frame(true, Opcode::Text, b"mid"));
        }
    }
    wire.extend(client_frame(true, Opcode::Text, b"end"));
    p.conn.on_read(&mut wire, p.t0, &cx, &mut out, &mut Fixture);
    assert!(!out.finish(), "not only a pong");
    let mut want: Vec<_> = (0..10u16)
        .map(|i| (Opcode::Pong, i.to_be_bytes().to_vec()))
        .collect();
    want.push((Opcode::Text, b"mid".to_vec()));
    want.push((Opcode::Pong, 999u16.to_be_bytes().to_vec()));
    want.push((Opcode::Text, b"end".to_vec()));
    assert_eq!(server_frames(&out.bytes), want);

    // No room at all: one pong, the latest, and the shard may replace an older one with it.
    out.clear();
    out.set_room(0);
    let mut wire = Vec::new();
    for i in 0..1000u16 {
        wire.extend(client_frame(true, Opcode::Ping, &i.to_be_bytes()));
    }
    p.conn.on_read(&mut wire, p.t0, &cx, &mut out, &mut Fixture);
    assert!(out.finish(), "only the coalesced pong");
    assert_eq!(
        server_frames(&out.bytes),
        vec![(Opcode::Pong, 999u16.to_be_bytes().to_vec())]
    );
}

#[test]
fn ping_flood_into_a_queue_that_never_drains_stays_under_the_limit() {
    // The shard's part, by hand: the room is the limit less what is queued, and an output that
    // is only the coalesced pong replaces the coalesced pong at the back of the queue.
    const LIMIT: usize = 64 * 1024;
    let mut p = Peer::open();
    let cx = Ctx {
        settings: &p.settings,
        kernels: &p.kernels,
    };
    let mut out = Output::new();
    let mut queue: Vec<u8> = Vec::new();
    let mut coalesced_at_back = None;
    let mut reads = Vec::new();
    let mut n = 0u32;
    for _ in 0..200 {
        // One 64 KiB read of 125-byte pings (131 bytes each on the wire).
        let mut wire = Vec::new();
        for _ in 0..500 {
            let mut payload = [b'.'; 125];
            payload[..4].copy_from_slice(&n.to_be_bytes());
            wire.extend(client_frame(true, Opcode::Ping, &payload));
            n += 1;
        }
        out.set_room(LIMIT.saturating_sub(queue.len()));
        p.conn.on_read(&mut wire, p.t0, &cx, &mut out, &mut Fixture);
        let only_pong = out.finish();
        match coalesced_at_back {
            Some(at) if only_pong => queue.truncate(at),
            _ => {}
        }
        coalesced_at_back = only_pong.then_some(queue.len());
        queue.extend_from_slice(&out.bytes);
        out.clear();
        reads.push(queue.len());
        assert!(queue.len() <= LIMIT, "{} bytes queued", queue.len());
    }
    let pongs = server_frames(&queue);
    let numbers: Vec<u32> = pongs
        .iter()
        .map(|(op, payload)| {
            assert_eq!(*op, Opcode::Pong);
            u32::from_be_bytes(payload[..4].try_into().unwrap())
        })
        .collect();
    // Every ping its pong while they fit with two 127-byte pong frames to spare; then the
    // latest of the read that filled the queue, and the latest of all, which replaced the
    // latest of each read before it: from the fourth read on the queue does not grow.
    let inline = (LIMIT - 2 * 127) / 127;
    assert_eq!(
        numbers[..inline],
        (0..inline as u32).collect::<Vec<_>>()[..]
    );
    assert_eq!(numbers.len(), inline + 2);
    assert_eq!(numbers[inline], 999);
    assert_eq!(numbers.last(), Some(&(n - 1)));
    assert!(reads[3..].iter().all(|&q| q == reads[2]), "{reads:?}");
}

#[test]
fn protocol_errors_close_with_1002() {
    let cases: Vec<Vec<u8>> = vec![
        vec![0xC1, 0x80, 0, 0, 0, 0],                   // RSV1
        vec![0x83, 0x80, 0, 0, 0, 0],                   // reserved opcode
        vec![0x81, 0x01, b'a'],                         // unmasked
        vec![0x09, 0x80, 0, 0, 0, 0],                   // ping without FIN
        client_frame(true, Opcode::Continuation, b"x"), // no message started
    ];
    for wire in cases {
        let mut p = Peer::open();
        let frames = server_frames(&p.send(&wire));
        assert_eq!(close_code(&frames), Some(1002), "{wire:02x?}");
        assert_ne!(p.conn.state(), State::Open);
    }
}

#[test]
fn invalid_utf8_mid_frame_closes_1007_at_once() {
    let mut p = Peer::open();
    let wire = client_frame(true, Opcode::Text, &[b'a', 0xFF, b'b', b'c']);
    // Only the header and the first two payload bytes: the bad byte is in.
    let frames = server_frames(&p.send(&wire[..8]));
    assert_eq!(close_code(&frames), Some(1007));
    assert_eq!(p.conn.state(), State::Closing);
    // The peer's close completes the handshake.
    let rest = p.send(&[&wire[8..], &client_frame(true, Opcode::Close, b"")[..]].concat());
    assert!(rest.is_empty());
    assert_eq!(p.conn.state(), State::Closed);
}

#[test]
fn message_limit_closes_with_1009() {
    let mut settings = Settings::default();
    settings.limits.max_message_bytes = 4;
    let mut p = Peer::new(settings);
    p.send(UPGRADE.as_bytes());
    let frames = server_frames(&p.send(&client_frame(true, Opcode::Binary, b"12345")));
    assert_eq!(close_code(&frames), Some(1009));
}

#[test]
fn handshake_deadline_answers_408_and_drops() {
    let mut p = Peer::new(Settings::default());
    p.send_at(b"GET /echo HTTP/1.1\r\n", 10);
    assert!(p.tick(9_999).is_empty(), "not due yet");
    let out = p.tick(10_000);
    assert_eq!(status(&out), 408);
    assert!(p.conn.must_drop());
}

#[test]
fn idle_connection_is_pinged_then_closed() {
    let mut p = Peer::open();
    assert_eq!(p.conn.deadline(&p.settings, p.t0), p.at(25_000));
    assert!(p.tick(24_999).is_empty());
    let frames = server_frames(&p.tick(25_000));
    assert_eq!(frames, vec![(Opcode::Ping, vec![])]);
    assert_eq!(p.conn.deadline(&p.settings, p.t0), p.at(35_000));
    let frames = server_frames(&p.tick(35_000));
    assert_eq!(frames.len(), 1);
    assert_eq!(close_code(&frames), Some(1001));
    assert_eq!(&frames[0].1[2..], b"ping timeout");
    assert!(p.conn.must_drop());
}

#[test]
fn any_bytes_answer_the_ping() {
    let mut p = Peer::open();
    p.tick(25_000);
    p.send_at(&client_frame(true, Opcode::Pong, b""), 26_000);
    assert_eq!(p.conn.deadline(&p.settings, p.t0), p.at(51_000));
    assert!(p.tick(35_000).is_empty());
    assert!(!p.conn.must_drop());
}

#[test]
fn close_deadline_drops_a_silent_peer() {
    let mut p = Peer::open();
    let mut out = Output::new();
    p.conn.on_shutdown(p.at(1_000), &mut out);
    assert_eq!(close_code(&server_frames(&out.bytes)), Some(1001));
    assert_eq!(p.conn.state(), State::Closing);
    // Data is ignored while closing; the deadline does not move.
    assert!(p
        .send_at(&client_frame(true, Opcode::Text, b"x"), 2_000)
        .is_empty());
    assert_eq!(p.conn.deadline(&p.settings, p.t0), p.at(6_000));
    p.tick(6_000);
    assert!(p.conn.must_drop());
}

#[test]
fn over_capacity_answers_503() {
    let mut out = Output::new();
    let conn = Conn::over_capacity(Instant::now(), &mut out);
    let s = String::from_utf8(out.bytes).unwrap();
    assert!(
        s.starts_with("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"),
        "{s}"
    );
    assert_eq!(conn.state(), State::Closed);
}

#[test]
fn idle_conn_is_small() {
    // The figure is reported in the README; this keeps it from creeping up unnoticed.
    assert!(
        std::mem::size_of::<Conn>() <= 256,
        "{}",
        std::mem::size_of::<Conn>()
    );
}

/// An app that holds `/wait` until told: `decided` is `None` while the backend thinks.
struct Deferring {
    decided: Option<bool>,
    asked: usize,
}

impl App for Deferring {
    fn on_request(&mut self, req: &httparse::Request<'_, '_>, out: &mut Output) -> Handling {
        if req.path != Some("/wait") {
            return Fixture.on_request(req, out);
        }
        self.asked += 1;
        match self.decided {
            None => Handling::Pending,
            Some(true) => Handling::Upgrade,
            Some(false) => Handling::Refuse(HttpError::NotFound),
        }
    }

    fn on_open(&mut self, _: &httparse::Request<'_, '_>, _: &mut Output) -> Result<(), Refusal> {
        Ok(())
    }

    fn on_message(&mut self, opcode: Opcode, payload: &mut [u8], out: &mut Output) {
        out.frame(opcode, payload);
    }
}

/// A connection holding `/wait` (followed by `early` bytes) for the app's decision.
struct Held {
    conn: Conn,
    app: Deferring,
    settings: Settings,
    kernels: Kernels,
    t0: Instant,
}

fn held(early: &[u8]) -> Held {
    let t0 = super::stamp::now_on_grid();
    let mut h = Held {
        conn: Conn::new(t0),
        app: Deferring {
            decided: None,
            asked: 0,
        },
        settings: Settings::default(),
        kernels: Kernels::detect(),
        t0,
    };
    let cx = Ctx {
        settings: &h.settings,
        kernels: &h.kernels,
    };
    let mut out = Output::new();
    let mut bytes = UPGRADE.replace("/echo", "/wait").into_bytes();
    bytes.extend_from_slice(early);
    h.conn.on_read(&mut bytes, h.t0, &cx, &mut out, &mut h.app);
    assert_eq!(h.conn.state(), State::AwaitApp);
    assert!(
        out.bytes.is_empty(),
        "nothing is answered while the app decides"
    );
    h
}

/// Hold a request, then let the app decide and resume: the connection, its output, and how
/// often the app saw the request.
fn deferred_run(decision: bool, early: &[u8]) -> (Conn, Vec<u8>, usize) {
    let mut h = held(early);
    let cx = Ctx {
        settings: &h.settings,
        kernels: &h.kernels,
    };
    let mut out = Output::new();
    h.app.decided = Some(decision);
    h.conn.on_resume(h.t0, &cx, &mut out, &mut h.app);
    out.finish();
    (h.conn, out.bytes, h.app.asked)
}

#[test]
fn a_pending_request_is_handed_to_the_app_again_on_resume() {
    let (conn, out, asked) = deferred_run(true, b"");
    assert_eq!(asked, 2);
    assert_eq!(conn.state(), State::Open);
    assert!(out.starts_with(b"HTTP/1.1 101 "));
    let (conn, out, _) = deferred_run(false, b"");
    assert_eq!(conn.state(), State::Closed);
    assert!(out.starts_with(b"HTTP/1.1 404 "));
}

#[test]
fn bytes_behind_a_pending_request_are_read_after_the_upgrade() {
    let early = client_frame(true, Opcode::Text, b"hi");
    let (conn, out, _) = deferred_run(true, &early);
    assert_eq!(conn.state(), State::Open);
    let at = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 4;
    assert_eq!(
        server_frames(&out[at..]),
        vec![(Opcode::Text, b"hi".to_vec())]
    );
}

#[test]
fn a_pending_request_times_out_like_any_handshake() {
    let mut h = held(b"");
    let cx = Ctx {
        settings: &h.settings,
        kernels: &h.kernels,
    };
    let timeout = h.settings.handshake_timeout;
    assert_eq!(h.conn.deadline(&h.settings, h.t0), h.t0 + timeout);
    let mut out = Output::new();
    h.conn.on_deadline(h.t0 + timeout, &cx, &mut out);
    assert!(out.bytes.starts_with(b"HTTP/1.1 408 "));
    assert!(h.conn.must_drop());
    // A late answer finds nothing to resume.
    h.app.decided = Some(true);
    let mut late = Output::new();
    h.conn.on_resume(h.t0, &cx, &mut late, &mut h.app);
    assert!(late.bytes.is_empty());
}
