//! Sans-IO tests of request bodies ([`Handling::Body`]) and long holds ([`Handling::Hold`]).

use std::time::{Duration, Instant};

use frame_simd::Kernels;

use super::http::write_response;
use super::*;

/// `POST /b` reads its body (`Content-Length` from the head) and answers it back; `GET /hold`
/// is held until `t0 + 60 s` and answered `resumed` when resumed; `/healthz` answers `ok`.
struct BodyApp {
    t0: Instant,
    bodies: Vec<Vec<u8>>,
}

impl App for BodyApp {
    fn on_request(&mut self, req: &httparse::Request<'_, '_>, out: &mut Output) -> Handling {
        match (req.method, req.path) {
            (Some("POST"), Some("/b")) => {
                let len = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
                    .unwrap_or(0);
                Handling::Body { len }
            }
            (_, Some("/hold")) if self.bodies.is_empty() => {
                self.bodies.push(Vec::new());
                Handling::Hold {
                    until: self.t0 + Duration::from_secs(60),
                }
            }
            (_, Some("/hold")) => {
                write_response(&mut out.bytes, (200, "OK"), &[], "resumed", false);
                Handling::Answered { keep_alive: true }
            }
            _ => {
                write_response(&mut out.bytes, (200, "OK"), &[], "ok", false);
                Handling::Answered { keep_alive: true }
            }
        }
    }

    fn on_open(&mut self, _: &httparse::Request<'_, '_>, _: &mut Output) -> Result<(), Refusal> {
        Ok(())
    }

    fn on_message(&mut self, _: Opcode, _: &mut [u8], _: &mut Output) {}

    fn on_body(&mut self, body: &mut [u8], out: &mut Output) -> Handling {
        self.bodies.push(body.to_vec());
        let text = String::from_utf8_lossy(body).into_owned();
        write_response(&mut out.bytes, (200, "OK"), &[], &text, false);
        Handling::Answered { keep_alive: true }
    }
}

fn feed(conn: &mut Conn, app: &mut BodyApp, bytes: &[u8], now: Instant) -> String {
    let settings = Settings::default();
    let kernels = Kernels::detect();
    let cx = Ctx {
        settings: &settings,
        kernels: &kernels,
    };
    let mut out = Output::new();
    conn.on_read(&mut bytes.to_vec(), now, &cx, &mut out, app);
    String::from_utf8(out.bytes).expect("text")
}

#[test]
fn a_body_split_across_reads_reaches_the_app_whole_and_the_next_request_follows() {
    let t0 = Instant::now();
    let mut app = BodyApp {
        t0,
        bodies: Vec::new(),
    };
    let mut conn = Conn::new(t0);
    let out = feed(
        &mut conn,
        &mut app,
        b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello",
        t0,
    );
    assert_eq!(out, "");
    assert_eq!(conn.state(), State::AwaitBody);
    let out = feed(
        &mut conn,
        &mut app,
        b" world\r\nGET /healthz HTTP/1.1\r\n",
        t0,
    );
    assert!(out.ends_with("hello world"), "{out}");
    assert_eq!(app.bodies, vec![b"hello world".to_vec()]);
    assert_eq!(conn.state(), State::AwaitRequest);
    // The pipelined request's head completes later and is answered like any.
    let out = feed(&mut conn, &mut app, b"Host: x\r\n\r\n", t0);
    assert!(out.ends_with("ok"), "{out}");
}

#[test]
fn a_held_request_waits_past_the_handshake_deadline_and_is_answered_on_resume() {
    let t0 = super::stamp::now_on_grid();
    let settings = Settings::default();
    let kernels = Kernels::detect();
    let cx = Ctx {
        settings: &settings,
        kernels: &kernels,
    };
    let mut app = BodyApp {
        t0,
        bodies: Vec::new(),
    };
    let mut conn = Conn::new(t0);
    let out = feed(
        &mut conn,
        &mut app,
        b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n",
        t0,
    );
    assert_eq!(out, "");
    assert_eq!(conn.state(), State::AwaitApp);
    assert_eq!(conn.deadline(&settings, t0), t0 + Duration::from_secs(60));
    let later = t0 + settings.handshake_timeout + Duration::from_secs(1);
    let mut out = Output::new();
    conn.on_deadline(later, &cx, &mut out);
    assert!(
        out.bytes.is_empty() && !conn.must_drop(),
        "not timed out yet"
    );
    conn.on_resume(later, &cx, &mut out, &mut app);
    let text = String::from_utf8(out.bytes).expect("text");
    assert!(text.ends_with("resumed"), "{text}");
    assert_eq!(conn.state(), State::AwaitRequest);
    assert_eq!(
        conn.deadline(&settings, later),
        later + settings.handshake_timeout
    );
}
