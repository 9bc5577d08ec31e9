//! What only the io_uring driver has: its provided-buffer ring running dry under a burst of
//! large messages, thousands of connections closing at once while their multishot receives are
//! armed, and the choice between io_uring and epoll (`--driver auto|uring`), including the
//! refusal to start when io_uring is unavailable (simulated with `GATEWAY_URING_UNAVAILABLE`,
//! which the probe honours like `kernel.io_uring_disabled = 2`).
//!
//! Every other socket suite runs on io_uring too with `GATEWAY_DRIVER=uring`.
//!
//! And what a burst leaves behind: the buffer ring grows under load and never shrinks, but its
//! memory goes back to the system once the load has passed.

mod common;

use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{gateway, Client, Gateway, GatewayExt, IO_TIMEOUT};

/// Distinct bytes per client and message, so a buffer handed to the wrong connection or
/// reused too early shows up as a mismatch.
fn message(client: usize, n: usize, len: usize) -> Vec<u8> {
    let mut x = (client as u32 + 1).wrapping_mul(2654435761) ^ (n as u32 + 7);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// The `recv_buffers_exhausted=N` values the shards logged when they stopped.
fn exhaustion_counts(stderr: &str) -> Vec<u64> {
    stderr
        .split("recv_buffers_exhausted=")
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

#[test]
fn a_dry_buffer_ring_is_counted_and_every_large_message_is_echoed_intact() {
    const CLIENTS: usize = 4;
    const MESSAGES: usize = 3;
    const LEN: usize = 1 << 20;
    let mut gw = gateway()
        .args([
            "--driver",
            "uring",
            "--threads",
            "1",
            "--uring-buffers",
            "2",
        ])
        .start();
    let addr = gw.addr();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|c| {
            thread::spawn(move || {
                let mut client = Client::open(addr);
                for n in 0..MESSAGES {
                    let m = message(c, n, LEN);
                    client.send_binary(&m);
                    let echo = client.read_frame();
                    assert_eq!(echo.opcode, common::op::BINARY, "client {c} message {n}");
                    assert!(
                        echo.payload == m,
                        "client {c} message {n}: echo differs (len {} vs {})",
                        echo.payload.len(),
                        m.len()
                    );
                }
                client.close_cleanly();
            })
        })
        .collect();
    for w in workers {
        w.join().expect("client thread");
    }
    let stderr = gw.stderr();
    assert!(
        stderr.contains("io_uring receive buffers ran out"),
        "expected the empty-ring warning; stderr:\n{stderr}"
    );
    gw.terminate();
    let status = gw
        .wait_exit(IO_TIMEOUT)
        .expect("gateway exits after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    let stderr = gw.stderr();
    let counts = exhaustion_counts(&stderr);
    assert!(
        counts.iter().sum::<u64>() > 0,
        "exhaustion counter did not move ({counts:?}); stderr:\n{stderr}"
    );
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn two_thousand_connections_closing_at_once_leave_the_gateway_healthy() {
    const CONNS: usize = 2000;
    // The mid-request half is closed by the gateway itself at its handshake deadline, while
    // their receives are armed and their peers still hold them open: the cancel path.
    let mut gw = gateway()
        .args([
            "--driver",
            "uring",
            "--threads",
            "2",
            "--handshake-timeout",
            "2s",
        ])
        .start();
    let baseline = open_fds(gw.pid());
    let mut upgraded = Vec::with_capacity(CONNS / 2);
    let mut raw = Vec::with_capacity(CONNS / 2);
    for i in 0..CONNS {
        if i % 2 == 0 {
            upgraded.push(Client::open(gw.addr()));
        } else {
            let mut c = Client::connect(gw.addr());
            c.send_raw(b"GET /echo HTTP/1.1\r\nHost: x\r\n");
            raw.push(c);
        }
    }
    let settle = |gw: &Gateway, at_most: usize| {
        let deadline = Instant::now() + IO_TIMEOUT;
        while open_fds(gw.pid()) > at_most && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        open_fds(gw.pid())
    };
    let held = settle(&gw, baseline + CONNS / 2 + 8);
    assert!(
        held <= baseline + CONNS / 2 + 8,
        "{held} descriptors open after the handshake deadline (baseline {baseline}, \
         {} upgraded connections)",
        CONNS / 2
    );
    // The sockets are really closed, not only forgotten (a pending receive holds its own
    // reference until cancelled).
    for c in raw.iter_mut().step_by(97) {
        c.drain_until_closed(IO_TIMEOUT);
    }
    drop(raw);
    drop(upgraded);
    let held = settle(&gw, baseline + 8);
    assert!(
        held <= baseline + 8,
        "{held} descriptors still open after every client left (baseline {baseline})"
    );
    gw.assert_running();
    let mut c = Client::open(gw.addr());
    c.send_text(b"still here");
    c.expect_frame(common::op::TEXT, b"still here");
    c.close_cleanly();
}

#[test]
fn explicit_uring_refuses_to_start_without_io_uring_and_exits_2() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["--listen", "127.0.0.1:0", "--driver", "uring"])
        .env("GATEWAY_URING_UNAVAILABLE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the gateway");
    let deadline = Instant::now() + IO_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the gateway kept running without io_uring");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    assert_eq!(status.code(), Some(2), "stderr:\n{stderr}");
    assert!(
        stderr.contains("--driver uring: io_uring is not available")
            && stderr.contains("GATEWAY_URING_UNAVAILABLE"),
        "unclear error: {stderr}"
    );
}

#[test]
fn auto_falls_back_to_epoll_without_io_uring_and_says_so() {
    let gw = gateway()
        .args(["--driver", "auto"])
        .env("GATEWAY_URING_UNAVAILABLE", "1")
        .start();
    let mut c = Client::open(gw.addr());
    c.send_text(b"on epoll");
    c.expect_frame(common::op::TEXT, b"on epoll");
    let stderr = gw.stderr();
    assert!(
        stderr.contains("io_uring unavailable") && stderr.contains("driver=\"epoll\""),
        "fallback not logged: {stderr}"
    );
}

#[test]
fn auto_logs_which_driver_it_chose() {
    let gw = gateway().args(["--driver", "auto"]).start();
    let mut c = Client::open(gw.addr());
    c.send_text(b"either");
    c.expect_frame(common::op::TEXT, b"either");
    let stderr = gw.stderr();
    let chose_uring = stderr.contains("driver=\"io_uring\"");
    let chose_epoll =
        stderr.contains("driver=\"epoll\"") && stderr.contains("io_uring unavailable");
    assert!(chose_uring ^ chose_epoll, "choice not logged: {stderr}");
}

/// Wait until `/metrics` shows `sample` above `above`; returns its value. Asks at most every
/// 400 ms: each scrape is a receive too, and the driver trims only after 250 ms without one.
fn await_metric_above(gw: &Gateway, sample: &str, above: u64) -> u64 {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        thread::sleep(Duration::from_millis(400));
        let v = gw.metric(sample);
        if v > above || Instant::now() > deadline {
            return v;
        }
    }
}

#[test]
fn a_burst_grows_the_buffer_ring_and_its_memory_goes_back_once_it_has_passed() {
    const CLIENTS: usize = 48;
    const MESSAGES: usize = 16;
    const LEN: usize = 8 * 1024;
    const TRIMS: &str = "gateway_uring_buffer_trims_total";
    let gw = gateway()
        .args(["--driver", "uring", "--threads", "1"])
        .start();
    let addr = gw.addr();
    // Connected first, and the buffers their upgrades used already returned, so the baseline
    // holds the connections themselves.
    let mut clients: Vec<Client> = (0..CLIENTS).map(|_| Client::open(addr)).collect();
    let trims = await_metric_above(&gw, TRIMS, 0);
    assert!(trims > 0, "no trim after the upgrades");
    let baseline = gw.rss_bytes();
    // The burst: every client writes all its messages at once, then reads the echoes, so many
    // receives complete in each turn and the ring grows past its first 32 buffers.
    let barrier = std::sync::Barrier::new(CLIENTS);
    thread::scope(|scope| {
        for (c, client) in clients.iter_mut().enumerate() {
            let barrier = &barrier;
            scope.spawn(move || {
                let messages: Vec<Vec<u8>> = (0..MESSAGES).map(|n| message(c, n, LEN)).collect();
                let mut burst = Vec::new();
                for m in &messages {
                    burst.extend(client.frame_bytes(
                        true,
                        0,
                        common::op::BINARY,
                        m,
                        Some([1, 2, 3, 4]),
                    ));
                }
                barrier.wait();
                client.send_raw(&burst);
                for (n, m) in messages.iter().enumerate() {
                    let echo = client.read_frame();
                    assert!(echo.payload == *m, "client {c} message {n}: echo differs");
                }
            });
        }
    });
    let burst_rss = gw.rss_bytes();
    let after = await_metric_above(&gw, TRIMS, trims);
    assert!(
        after > trims,
        "the buffers were not trimmed after the burst"
    );
    let rss = gw.rss_bytes();
    let grown = |b: u64| b.saturating_sub(baseline) / 1024;
    assert!(
        rss < baseline + (2 << 20),
        "the burst left {} KiB resident once it had passed (baseline {} KiB; {} KiB right \
         after the burst)",
        grown(rss),
        baseline / 1024,
        grown(burst_rss)
    );
    // The trimmed buffers are used again as usual.
    for (c, client) in clients.iter_mut().enumerate().step_by(7) {
        let m = message(c, 99, LEN);
        client.send_binary(&m);
        assert!(
            client.read_frame().payload == m,
            "client {c} after the trim"
        );
    }
}
