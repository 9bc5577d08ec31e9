//! Faults under load, over real sockets against the real process: the gateway frozen with
//! SIGSTOP while it fans out, SIGTERM in the middle of traffic, descriptors exhausted by a
//! connection storm, and a lossy, slow and resetting network made by a proxy the test owns (`common::proxy`).
//! Each fault must leave every connection either served or closed with a documented code, lose
//! nothing for subscribers that stayed (checked by sequence numbers), and never panic.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::proxy::{proxy, Link};
use common::ws::Ws;
use common::*;

/// Close codes `docs/close-codes.md` lists; any other code after a fault is a bug.
const DOCUMENTED: [u16; 9] = [1000, 1001, 1002, 1007, 1009, 4000, 4001, 4008, 1011];

/// How a subscriber's stream ended.
#[derive(Debug, PartialEq)]
enum End {
    /// It read the `"end"` marker: it stayed to the end.
    Marker,
    /// The server closed it with this code.
    Closed(u16),
    /// The TCP connection ended without a close frame.
    Gone,
}

/// A `/ws` subscriber of `channel` on its own thread: collects the sequence numbers it is sent
/// (`data` numbers, or `data.n`) until the `"end"` marker or a close, answering a close with its code.
fn subscriber(addr: SocketAddr, channel: &str) -> JoinHandle<(Vec<u64>, End)> {
    let mut ws = Ws::open(addr, "");
    ws.ok(json!({"op":"subscribe","channel":channel,"id":"sub"}));
    thread::spawn(move || {
        let mut seen = Vec::new();
        loop {
            let frame = match ws.c.try_read_frame() {
                Ok(Some(f)) => f,
                Ok(None) | Err(_) => return (seen, End::Gone),
            };
            match frame.opcode {
                op::TEXT => {
                    let m: Value = serde_json::from_slice(&frame.payload).expect("JSON delivery");
                    if m["type"] != "message" {
                        continue;
                    }
                    match &m["data"] {
                        Value::Number(n) => seen.push(n.as_u64().expect("sequence number")),
                        Value::Object(o) => seen.push(o["n"].as_u64().expect("sequence number")),
                        d if d == "end" => return (seen, End::Marker),
                        other => panic!("unexpected delivery {other}"),
                    }
                }
                op::CLOSE => {
                    let code = frame.close_code().unwrap_or(1005);
                    ws.c.finish_close(code);
                    return (seen, End::Closed(code));
                }
                _ => {}
            }
        }
    })
}

/// Publish `data` on `channel` from a `/ws` client and wait for its reply. `Err(code)` when the
/// server closed the publisher instead (a drain), `Err(1006)` when the connection broke.
fn publish(p: &mut Client, channel: &str, data: Value) -> Result<(), u16> {
    let id = fastrand_id();
    let req = json!({"op":"publish","channel":channel,"data":data,"id":id});
    p.try_send_raw(&client_frame(
        true,
        op::TEXT,
        req.to_string().as_bytes(),
        KEY,
    ))
    .map_err(|_| 1006u16)?;
    loop {
        let f = match p.try_read_frame() {
            Ok(Some(f)) => f,
            _ => return Err(1006),
        };
        match f.opcode {
            op::CLOSE => {
                let code = f.close_code().unwrap_or(1005);
                let _ = p.try_send_raw(&client_frame(true, op::CLOSE, &code.to_be_bytes(), KEY));
                return Err(code);
            }
            op::TEXT => {
                let m: Value = serde_json::from_slice(&f.payload).expect("JSON reply");
                if m["type"] == "reply" && m["id"] == id {
                    assert_eq!(m["ok"], true, "publish refused: {m}");
                    return Ok(());
                }
            }
            _ => {}
        }
    }
}

fn fastrand_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A publisher on its own thread: sequence numbers 0.. on `channel` until `stop`, then the
/// `"end"` marker. Returns how many numbers were published, and the close code if the server
/// closed it first.
fn publisher(
    addr: SocketAddr,
    channel: &'static str,
    stop: Arc<AtomicBool>,
) -> JoinHandle<(u64, Option<u16>)> {
    let mut p = Ws::open(addr, "").c;
    thread::spawn(move || {
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            if let Err(code) = publish(&mut p, channel, json!(n)) {
                return (n, Some(code));
            }
            n += 1;
        }
        match publish(&mut p, channel, json!("end")) {
            Ok(()) => (n, None),
            Err(code) => (n, Some(code)),
        }
    })
}

/// A counter (or one labelled sample, `name{label="x"}`) from `/metrics`.
fn metric(gw: &Gateway, sample: &str) -> u64 {
    GatewayExt::metric(gw, sample)
}

#[test]
fn frozen_for_five_seconds_under_fanout_every_connection_is_served_after() {
    let mut gw = gateway().args(["--threads", "2"]).start();
    let addr = gw.addr();
    let subs: Vec<_> = (0..12).map(|_| subscriber(addr, "feed")).collect();
    let mut echo: Vec<Client> = (0..4).map(|_| gw.client()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = publisher(addr, "feed", Arc::clone(&stop));
    thread::sleep(Duration::from_millis(300));

    gw.signal(Signal::SIGSTOP);
    // Connections made while it is frozen wait in the listen backlog and are served after.
    let newcomers: Vec<JoinHandle<Client>> = (0..4)
        .map(|_| thread::spawn(move || Client::open(addr)))
        .collect();
    thread::sleep(Duration::from_secs(5));
    gw.signal(Signal::SIGCONT);
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);

    let (sent, publisher_closed) = publishing.join().expect("publisher");
    assert_eq!(publisher_closed, None, "the publisher was cut");
    assert!(sent > 0, "nothing published");
    for (i, s) in subs.into_iter().enumerate() {
        let (seen, end) = s.join().expect("subscriber");
        match end {
            // Stayed: every publication, once, in order, the freeze notwithstanding.
            End::Marker => assert_eq!(seen, (0..sent).collect::<Vec<_>>(), "subscriber {i}"),
            End::Closed(code) => assert!(
                DOCUMENTED.contains(&code),
                "subscriber {i} closed with undocumented {code}"
            ),
            End::Gone => panic!("subscriber {i} lost its connection without a close frame"),
        }
    }
    for c in echo.iter_mut() {
        c.send_text(b"after the freeze");
        c.expect_frame(op::TEXT, b"after the freeze");
    }
    for n in newcomers {
        let mut c = n
            .join()
            .expect("a connection made during the freeze is upgraded");
        c.send_text(b"late");
        c.expect_frame(op::TEXT, b"late");
    }
    gw.assert_running();
}

#[test]
fn sigterm_under_load_closes_every_client_with_1001_within_the_drain_timeout() {
    let drain = Duration::from_secs(2);
    let mut gw = gateway()
        .args(["--threads", "2", "--drain-timeout", "2s"])
        .start();
    let addr = gw.addr();
    let subs: Vec<_> = (0..12).map(|_| subscriber(addr, "feed")).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = publisher(addr, "feed", Arc::clone(&stop));
    // Echo clients in a tight send-and-receive loop until the server closes them.
    let echoes: Vec<JoinHandle<u16>> = (0..4)
        .map(|_| {
            let mut c = Client::open(addr);
            thread::spawn(move || loop {
                if c.try_send_raw(&client_frame(true, op::TEXT, b"load", KEY))
                    .is_err()
                {
                    return 1006;
                }
                match c.try_read_frame() {
                    Ok(Some(f)) if f.opcode == op::CLOSE => {
                        let code = f.close_code().unwrap_or(1005);
                        c.finish_close(code);
                        return code;
                    }
                    Ok(Some(_)) => {}
                    _ => return 1006,
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300));

    let term = Instant::now();
    gw.terminate();
    let status = gw
        .wait_exit(drain + Duration::from_secs(3))
        .expect("the gateway exits after the drain");
    let took = term.elapsed();
    assert_eq!(status.code(), Some(0), "stderr:\n{}", gw.stderr());
    assert!(
        took <= drain + Duration::from_secs(1),
        "exit took {took:?}, over the {drain:?} drain timeout"
    );
    stop.store(true, Ordering::Relaxed);
    let (sent, closed) = publishing.join().expect("publisher");
    assert!(sent > 0);
    assert_eq!(
        closed,
        Some(1001),
        "the publisher is told the server is going away"
    );
    for (i, s) in subs.into_iter().enumerate() {
        let (seen, end) = s.join().expect("subscriber");
        assert_eq!(end, End::Closed(1001), "subscriber {i}");
        // What it got before the close is a gap-free prefix of what was published.
        assert_eq!(
            seen,
            (0..seen.len() as u64).collect::<Vec<_>>(),
            "subscriber {i}"
        );
    }
    for (i, e) in echoes.into_iter().enumerate() {
        assert_eq!(e.join().expect("echo client"), 1001, "echo client {i}");
    }
}

#[test]
fn descriptors_exhausted_by_a_storm_refusals_counted_existing_served_then_recovered() {
    let mut gw = gateway()
        .nofile(64)
        .args(["--threads", "1", "--max-connections", "1000"])
        .start();
    let addr = gw.addr();
    let subs: Vec<_> = (0..6).map(|_| subscriber(addr, "feed")).collect();
    let mut p = Ws::open(addr, "").c;
    let refused_before = metric(
        &gw,
        "gateway_connections_refused_total{reason=\"fd_exhausted\"}",
    );

    // The storm: far more connections than descriptors left. They sit in the listen backlog or
    // in handshakes the gateway accepted before it ran out.
    let storm: Vec<TcpStream> = (0..120)
        .map(|_| TcpStream::connect(addr).expect("connect (backlog)"))
        .collect();
    thread::sleep(Duration::from_millis(300));
    // Existing connections keep being served while new ones cannot be accepted.
    for n in 0..50u64 {
        publish(&mut p, "feed", json!(n)).expect("the publisher is served");
    }
    publish(&mut p, "feed", json!("end")).expect("the publisher is served");
    for (i, s) in subs.into_iter().enumerate() {
        let (seen, end) = s.join().expect("subscriber");
        assert_eq!(end, End::Marker, "subscriber {i}");
        assert_eq!(seen, (0..50).collect::<Vec<_>>(), "subscriber {i}");
    }

    // Descriptors come back: service resumes, and the refusals were counted.
    drop(storm);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let served = std::panic::catch_unwind(|| {
            http_exchange(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").status
        });
        if served.ok() == Some(200) {
            break;
        }
        assert!(Instant::now() < deadline, "never served again");
        thread::sleep(Duration::from_millis(50));
    }
    let refused = metric(
        &gw,
        "gateway_connections_refused_total{reason=\"fd_exhausted\"}",
    );
    assert!(
        refused > refused_before,
        "refusals for lack of descriptors are counted ({refused_before} -> {refused})"
    );
    gw.assert_serves();
    gw.assert_running();
}

#[test]
fn lossy_slow_and_resetting_links_leave_memory_bounded_and_direct_subscribers_whole() {
    let mut gw = gateway()
        .args(["--threads", "2", "--max-outbound-bytes", "65536"])
        .start();
    let addr = gw.addr();
    let rss_before = gw.rss_bytes();
    let fds_before = gw.open_fds();
    let done = Arc::new(AtomicBool::new(false));
    let slow_proxy = proxy(addr, vec![Link::Slow(256)], Arc::clone(&done));
    let reset_proxy = proxy(
        addr,
        vec![
            Link::Reset(20_000),
            Link::Reset(150_000),
            Link::Reset(600_000),
        ],
        Arc::clone(&done),
    );
    let lossy_proxy = proxy(addr, vec![Link::Lossy], Arc::clone(&done));

    let direct: Vec<_> = (0..3).map(|_| subscriber(addr, "feed")).collect();
    // Behind the slow and resetting links, subscribers that read as fast as the link allows.
    let slow: Vec<_> = (0..3).map(|_| subscriber(slow_proxy, "feed")).collect();
    let reset: Vec<_> = (0..3).map(|_| subscriber(reset_proxy, "feed")).collect();
    // Behind the lossy link, echo clients whose frames arrive with bytes missing.
    let lossy: Vec<JoinHandle<()>> = (0..3)
        .map(|_| {
            let mut c = Client::open(lossy_proxy);
            c.set_timeout(Duration::from_secs(3));
            thread::spawn(move || {
                for i in 0..40u8 {
                    let payload = vec![b'a' + i % 26; 500 + usize::from(i) * 37];
                    let frame = client_frame(true, op::TEXT, &payload, KEY);
                    if c.try_send_raw(&frame).is_err() {
                        return;
                    }
                }
                // Whatever comes back must be frames the RFC allows; a close carries a
                // documented code.
                while let Ok(Some(f)) = c.try_read_frame() {
                    if f.opcode == op::CLOSE {
                        let code = f.close_code().unwrap_or(1005);
                        assert!(DOCUMENTED.contains(&code), "lossy link closed with {code}");
                        return;
                    }
                }
            })
        })
        .collect();

    // 16 KiB publications until every slow subscriber has been cut (or 2,000 were sent).
    let mut p = Ws::open(addr, "").c;
    let pad = "p".repeat(16 * 1024);
    let mut sent = 0u64;
    while sent < 2000 && metric_slow(&gw, sent) < 3 {
        publish(&mut p, "feed", json!({"n": sent, "pad": pad})).expect("publisher served");
        sent += 1;
    }
    publish(&mut p, "feed", json!("end")).expect("publisher served");
    let rss_peak = gw.rss_bytes();
    gw.assert_running();
    assert!(
        metric(&gw, "gateway_slow_consumer_disconnects_total") >= 3,
        "the slow links were closed by the outbound limit after {sent} publications"
    );
    // The gateway held at most the outbound limit per slow connection, not the backlog the
    // links could not carry (here 3 x 16 KiB x {sent}).
    let grown = rss_peak.saturating_sub(rss_before);
    assert!(
        grown < 48 << 20,
        "RSS grew by {} MiB under {sent} publications",
        grown >> 20
    );

    for s in direct {
        let (seen, end) = s.join().expect("direct subscriber");
        assert_eq!(end, End::Marker, "a direct subscriber was disturbed");
        assert_eq!(
            seen,
            (0..sent).collect::<Vec<_>>(),
            "a direct subscriber lost messages"
        );
    }
    // The links deliver what they still hold at full speed now. Behind them, a subscriber ends
    // with a documented close code, or without one when its link reset or the gateway dropped
    // it at the close timeout; what it got is still in order with no gap.
    done.store(true, Ordering::Relaxed);
    for s in slow.into_iter().chain(reset) {
        let (seen, end) = s.join().expect("proxied subscriber");
        if let End::Closed(code) = end {
            assert!(
                DOCUMENTED.contains(&code),
                "closed with undocumented {code}"
            );
        }
        assert_eq!(seen, (0..seen.len() as u64).collect::<Vec<_>>());
    }
    for l in lossy {
        l.join().expect("lossy client");
    }
    drop(p);
    // Every proxied connection is gone from the gateway too: descriptors back to the baseline.
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.open_fds() > fds_before {
        assert!(
            Instant::now() < deadline,
            "descriptors {} -> {}",
            fds_before,
            gw.open_fds()
        );
        thread::sleep(Duration::from_millis(50));
    }
    gw.assert_serves();
}

/// The slow-consumer closes so far, read every 50 publications (a metrics scrape is a request).
fn metric_slow(gw: &Gateway, sent: u64) -> u64 {
    if sent % 50 == 0 && sent > 0 {
        metric(gw, "gateway_slow_consumer_disconnects_total")
    } else {
        0
    }
}
