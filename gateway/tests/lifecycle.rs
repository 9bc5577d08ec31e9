//! The process around the connections: start-up (`listening on` lines, port 0 shared by every
//! shard), several shards accepting, configuration precedence (flag > env > file > default),
//! `--help`, the connection limit, and the SIGTERM drain (close 1001, exit 0).

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{free_port, gateway, http_exchange, Client, Gateway, GatewayExt, Signal};

/// A request whose head is `len` bytes long.
fn healthz_request_of(len: usize) -> Vec<u8> {
    let base = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: \r\n\r\n";
    let pad = len - base.len();
    format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(pad)
    )
    .into_bytes()
}

fn status_for_head_of(gw: &Gateway, len: usize) -> u16 {
    http_exchange(gw.addr(), &healthz_request_of(len)).status
}

#[test]
fn sigterm_closes_every_websocket_with_1001_and_exits_0() {
    let mut gw = gateway().args(["--threads", "2"]).start();
    let mut clients: Vec<Client> = (0..6).map(|_| gw.client()).collect();
    for c in clients.iter_mut() {
        c.send_text(b"before");
        c.expect_frame(common::op::TEXT, b"before");
    }
    gw.terminate();
    for c in clients.iter_mut() {
        c.expect_close(1001);
        c.send_close(1001, b"");
        c.expect_tcp_closed();
    }
    let status = gw
        .wait_exit(Duration::from_secs(10))
        .expect("gateway exits after draining");
    assert_eq!(status.code(), Some(0), "stderr:\n{}", gw.stderr());
}

#[test]
fn drain_timeout_bounds_a_peer_that_never_closes() {
    let mut gw = gateway()
        .args(["--drain-timeout", "300ms", "--close-timeout", "30s"])
        .start();
    let mut c = gw.client();
    let started = Instant::now();
    gw.signal(Signal::SIGINT);
    c.expect_close(1001);
    // We never answer: the drain deadline ends the process anyway.
    let status = gw
        .wait_exit(Duration::from_secs(10))
        .expect("gateway exits at the drain deadline");
    assert_eq!(status.code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(5));
    c.expect_tcp_closed();
}

#[test]
fn sigterm_with_no_connections_exits_0_promptly() {
    let mut gw = gateway().start();
    gw.terminate();
    let status = gw.wait_exit(Duration::from_secs(5)).expect("exits");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn port_zero_is_resolved_once_and_shared_by_all_shards() {
    let gw = gateway()
        .args([
            "--threads",
            "3",
            "--listen",
            "127.0.0.1:0",
            "--listen",
            "127.0.0.2:0",
        ])
        .start();
    let addrs = gw.addrs().to_vec();
    assert_eq!(addrs.len(), 2);
    for addr in &addrs {
        assert_ne!(addr.port(), 0, "the printed address is the resolved one");
    }
    assert_eq!(addrs[1].ip().to_string(), "127.0.0.2");
    // Every connection to each printed address is served, whichever shard takes it.
    for addr in &addrs {
        for _ in 0..12 {
            let resp = http_exchange(*addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
            assert_eq!(resp.status, 200);
        }
    }
}

#[test]
fn several_shards_each_accept() {
    let gw = gateway()
        .args(["--threads", "2", "--log-level", "debug"])
        .start();
    // SO_REUSEPORT spreads connections by their source port: with 64 connections both shards
    // get some unless the hash is pathological (a chance of about 2^-63).
    let mut clients: Vec<Client> = (0..64).map(|_| gw.client()).collect();
    for c in clients.iter_mut() {
        c.send_binary(b"x");
        c.expect_frame(common::op::BINARY, b"x");
    }
    let log = gw.stderr();
    for shard in 0..2 {
        assert!(
            log.contains(&format!("shard={shard}")),
            "shard {shard} accepted nothing; stderr:\n{log}"
        );
    }
    let threads = std::fs::read_dir(format!("/proc/{}/task", gw.pid()))
        .expect("list threads")
        .count();
    assert!(threads >= 3, "two shard threads plus main, got {threads}");
}

#[test]
fn flag_beats_env_beats_file_beats_default() {
    let dir = std::env::temp_dir().join(format!("gateway-lifecycle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("gateway.toml");
    std::fs::File::create(&file)
        .and_then(|mut f| f.write_all(b"max-header-bytes = 200\n"))
        .expect("write config file");
    let file = file.to_str().expect("utf-8 path");

    // File alone: 200 bytes; a 300-byte head is refused, a 150-byte head served.
    let gw = gateway().args(["--config", file]).start();
    assert_eq!(status_for_head_of(&gw, 150), 200);
    assert_eq!(status_for_head_of(&gw, 300), 431);
    drop(gw);

    // Env over file: 400.
    let env = ("GATEWAY_MAX_HEADER_BYTES", "400");
    let gw = gateway()
        .args(["--config", file, "--listen", "127.0.0.1:0"])
        .env(env.0, env.1)
        .start();
    assert_eq!(status_for_head_of(&gw, 300), 200);
    assert_eq!(status_for_head_of(&gw, 500), 431);
    drop(gw);

    // Flag over env: 600.
    let gw = gateway()
        .args(["--config", file, "--listen", "127.0.0.1:0"])
        .args(["--max-header-bytes", "600"])
        .env(env.0, env.1)
        .start();
    assert_eq!(status_for_head_of(&gw, 500), 200);
    assert_eq!(status_for_head_of(&gw, 700), 431);
    drop(gw);

    // Env can also name the config file and the listen address.
    let gw = gateway()
        .env("GATEWAY_CONFIG", file)
        .env("GATEWAY_LISTEN", "127.0.0.1:0")
        .start();
    assert_eq!(status_for_head_of(&gw, 300), 431);
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn help_explains_every_flag() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("--help")
        .output()
        .expect("run gateway --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--threads",
        "--config",
        "--log-level",
        "--max-header-bytes",
        "--max-headers",
        "--max-frame-bytes",
        "--max-message-bytes",
        "--max-fragments",
        "--max-outbound-bytes",
        "--max-connections",
        "--handshake-timeout",
        "--ping-interval",
        "--pong-timeout",
        "--close-timeout",
        "--drain-timeout",
        "--allowed-origins",
        "--subprotocols",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
    assert!(
        help.contains("GATEWAY_MAX_FRAME_BYTES"),
        "env names are shown:\n{help}"
    );
    assert!(help.contains("Precedence"), "{help}");
}

#[test]
fn bad_flag_value_exits_with_a_message() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["--ping-interval", "soon"])
        .output()
        .expect("run gateway");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ping-interval"));
}

#[test]
fn over_max_connections_is_503_then_served_again() {
    let gw = gateway()
        .args(["--max-connections", "2", "--threads", "2"])
        .start();
    let mut a = gw.client();
    let _b = gw.client();
    let resp = http_exchange(gw.addr(), b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("Retry-After"), Some("1"));
    a.close_cleanly();
    drop(a);
    // The freed slot is usable (the count drops once the socket is gone).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let resp = http_exchange(
            gw.addr(),
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        if resp.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "slot never freed: {}",
            resp.status
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// User plus system CPU time of a process, in clock ticks (`/proc/<pid>/stat`).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').expect("stat has a command") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

#[test]
fn out_of_descriptors_is_logged_once_without_spinning() {
    // A descriptor limit below what the connections need (the connection limit kept above it).
    let mut gw = gateway()
        .nofile(32)
        .args(["--threads", "1", "--max-connections", "1000"])
        .start();
    let mut held: Vec<std::net::TcpStream> = (0..40)
        .map(|_| std::net::TcpStream::connect(gw.addr()).expect("connect (backlog)"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_ticks(gw.pid());
    // New connections while exhausted: more accept attempts, no new log line, no spinning.
    held.extend((0..10).map(|_| std::net::TcpStream::connect(gw.addr()).expect("connect")));
    std::thread::sleep(Duration::from_secs(1));
    let spent = cpu_ticks(gw.pid()) - before;
    let log = gw.stderr();
    assert_eq!(
        log.matches("out of file descriptors").count(),
        1,
        "logged once per episode; stderr:\n{log}"
    );
    assert!(log.contains("ulimit"), "the log says how to fix it:\n{log}");
    // Clock ticks are 1/100 s: a spinning loop would burn about 100 in that second.
    assert!(
        spent < 30,
        "gateway used {spent} ticks of CPU while out of descriptors"
    );
    drop(held);
    gw.assert_running();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = std::panic::catch_unwind(|| {
            http_exchange(gw.addr(), b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").status
        });
        if ok.ok() == Some(200) {
            break;
        }
        assert!(Instant::now() < deadline, "never served again");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_closed_stdout_does_not_stop_the_gateway() {
    // Whoever started the gateway may stop reading its stdout (a supervisor that reads the first
    // line, `gateway | head -1`): the listening lines then hit a closed pipe, and the gateway
    // must keep serving. The port is picked by binding and releasing it first.
    let port = free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--api-listen", "127.0.0.1:0", "--threads", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("gateway starts");
    drop(child.stdout.take());
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    let deadline = Instant::now() + Duration::from_secs(10);
    let served = loop {
        if let Ok(mut s) = std::net::TcpStream::connect(addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut answer = String::new();
            let _ = std::io::Read::read_to_string(&mut s, &mut answer);
            if answer.starts_with("HTTP/1.1 200") {
                break true;
            }
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Give a write to the closed pipe time to have happened, then check the process is alive.
    std::thread::sleep(Duration::from_millis(300));
    let alive = child.try_wait().expect("try_wait").is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(served, "the gateway never answered /healthz on {addr}");
    assert!(alive, "the gateway exited after its stdout was closed");
}
