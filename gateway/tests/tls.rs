//! Native TLS (`--tls-cert`/`--tls-key`) over real sockets, with a test CA made per test with
//! the `openssl` CLI (`test_support::TestCa`): Python `websockets` and Node `ws` over
//! `wss://` verifying against that CA, curl over `https://` on the client and API listeners (TLS
//! 1.2 and 1.3), a rustls client that checks ALPN and the certificate it was shown, refusals
//! (plain HTTP, garbage, a silent peer) that disturb nothing else, start-up errors, and
//! certificate rotation on SIGHUP while clients keep echoing.

mod common;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{client_frame, fresh_key, gateway, op, run_bounded, upgrade_request, Gateway, KEY};
use common::{Signal, IO_TIMEOUT};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use test_support::TestCa;

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// The suite's test CA with what the rustls client and the gateway need from it.
trait Pki {
    /// The leaf certificate `name` in DER.
    fn der(&self, name: &str) -> CertificateDer<'static>;
    /// A client config trusting only the test CA, offering ALPN `http/1.1`.
    fn client_config(&self) -> Arc<ClientConfig>;
    /// A gateway serving `leaf` on its client listener.
    fn gateway(&self) -> common::GatewayBuilder;
}

impl Pki for TestCa {
    fn der(&self, name: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_file(self.path(&format!("{name}.pem"))).expect("leaf PEM")
    }

    fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(self.path("ca.pem")).expect("CA PEM"))
            .expect("add the CA");
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(cfg)
    }

    fn gateway(&self) -> common::GatewayBuilder {
        gateway().args(self.gateway_args())
    }
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A `wss://` client on the rustls client: the TLS handshake, the upgrade to `/echo`, frames.
struct WssClient {
    tls: Tls,
    buf: Vec<u8>,
}

impl WssClient {
    /// Connect and finish the TLS handshake (verifying against the test CA).
    fn connect(addr: SocketAddr, cfg: &Arc<ClientConfig>) -> WssClient {
        let tcp = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
        WssClient::handshake(tcp, cfg)
    }

    /// [`WssClient::open`] over a socket whose send and receive buffers are capped at `bytes`
    /// (set before connecting, which also turns off their autotuning), so a client that writes
    /// without reading meets the server's backpressure after a little data instead of after
    /// whatever the kernel's buffers grow to hold (tens of MiB on loopback).
    fn open_small_buffers(addr: SocketAddr, cfg: &Arc<ClientConfig>, bytes: usize) -> WssClient {
        let domain = socket2::Domain::for_address(addr);
        let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None).expect("socket");
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        socket.set_send_buffer_size(bytes).expect("SO_SNDBUF");
        socket
            .connect_timeout(&addr.into(), IO_TIMEOUT)
            .expect("connect");
        let mut c = WssClient::handshake(socket.into(), cfg);
        c.upgrade();
        c
    }

    /// Finish the TLS handshake on a connected socket.
    fn handshake(tcp: TcpStream, cfg: &Arc<ClientConfig>) -> WssClient {
        tcp.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        tcp.set_nodelay(true).expect("nodelay");
        let name = ServerName::try_from("localhost").expect("server name");
        let conn = ClientConnection::new(Arc::clone(cfg), name).expect("client connection");
        let mut tls = StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .expect("TLS handshake with the gateway");
        }
        WssClient {
            tls,
            buf: Vec::new(),
        }
    }

    /// Connect and upgrade to `/echo`.
    fn open(addr: SocketAddr, cfg: &Arc<ClientConfig>) -> WssClient {
        let mut c = WssClient::connect(addr, cfg);
        c.upgrade();
        c
    }

    /// Upgrade to `/echo`.
    fn upgrade(&mut self) {
        let key = fresh_key();
        self.write(&upgrade_request("/echo", &key, &[]));
        let head = self.read_until(b"\r\n\r\n");
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
    }

    /// The leaf certificate the server presented.
    fn server_cert(&self) -> CertificateDer<'static> {
        self.tls.conn.peer_certificates().expect("a certificate")[0].clone()
    }

    fn write(&mut self, bytes: &[u8]) {
        self.tls.write_all(bytes).expect("write over TLS");
        self.tls.flush().expect("flush");
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 16384];
        let n = self.tls.read(&mut chunk).expect("read over TLS");
        assert!(n > 0, "the gateway closed the TLS stream");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    fn read_until(&mut self, end: &[u8]) -> Vec<u8> {
        loop {
            if let Some(at) = self.buf.windows(end.len()).position(|w| w == end) {
                return self.buf.drain(..at + end.len()).collect();
            }
            self.fill();
        }
    }

    /// The next whole server frame: (opcode, payload).
    fn read_frame(&mut self) -> (u8, Vec<u8>) {
        loop {
            if let Some((opcode, start, len)) = frame_at(&self.buf) {
                let payload = self.buf[start..start + len].to_vec();
                self.buf.drain(..start + len);
                return (opcode, payload);
            }
            self.fill();
        }
    }

    fn echo(&mut self, payload: &[u8]) {
        self.write(&client_frame(true, op::TEXT, payload, KEY));
        let (opcode, got) = self.read_frame();
        assert_eq!(opcode, op::TEXT);
        assert!(got == payload, "echo of {} bytes differs", payload.len());
    }

    fn close(mut self) {
        let mut close = 1000u16.to_be_bytes().to_vec();
        close.extend_from_slice(b"bye");
        self.write(&client_frame(true, op::CLOSE, &close, KEY));
        let (opcode, payload) = self.read_frame();
        assert_eq!(opcode, op::CLOSE);
        assert_eq!(payload[..2], 1000u16.to_be_bytes());
        // Then close_notify and the end of the stream: a clean TLS end, not a truncation.
        let mut rest = Vec::new();
        match self.tls.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty(), "bytes after the close frame"),
            Err(e) => panic!("the TLS stream did not end cleanly: {e}"),
        }
    }
}

fn python_client(gw: &Gateway, pki: &TestCa) {
    let mut cmd = Command::new("python3");
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/client.py"
    ))
    .arg(format!("wss://localhost:{}/echo", gw.addr().port()))
    .arg("chat")
    .arg("chat")
    // The default SSL context of Python trusts this file (and nothing else here).
    .env("SSL_CERT_FILE", pki.path("ca.pem"))
    .env_remove("SSL_CERT_DIR");
    expect_ok(gw, cmd, "python websockets");
}

fn node_client(gw: &Gateway, pki: &TestCa) {
    let mut cmd = Command::new("node");
    cmd.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop"))
        .arg("client.js")
        .arg(format!("wss://localhost:{}/echo", gw.addr().port()))
        .arg("superchat")
        .arg("superchat")
        .env("NODE_EXTRA_CA_CERTS", pki.path("ca.pem"));
    expect_ok(gw, cmd, "node ws");
}

fn expect_ok(gw: &Gateway, cmd: Command, client: &str) {
    let (code, out, err) = run_bounded(cmd, SCRIPT_TIMEOUT);
    assert!(
        code == Some(0) && out.trim() == "ok",
        "{client} client over wss:// failed (exit {code:?})\nstdout:\n{out}\nstderr:\n{err}\n\
         gateway stderr:\n{}",
        gw.stderr()
    );
}

/// `curl` over https with the test CA; returns (exit code, stdout, stderr).
fn curl(pki: &TestCa, url: &str, extra: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "-v",
        "--http1.1",
        "--noproxy",
        "*",
        "--max-time",
        "10",
    ])
    .arg("--cacert")
    .arg(pki.path("ca.pem"))
    .args(extra)
    .arg(url);
    run_bounded(cmd, SCRIPT_TIMEOUT)
}

#[test]
fn python_and_node_clients_over_wss_verify_the_test_ca() {
    let pki = TestCa::new();
    let gw = pki
        .gateway()
        .args(["--subprotocols", "chat,superchat"])
        .start();
    python_client(&gw, &pki);
    node_client(&gw, &pki);
}

#[test]
fn curl_gets_healthz_over_tls_1_2_and_1_3_on_both_listeners() {
    let pki = TestCa::new();
    let gw = pki
        .gateway()
        .args(["--api-tls-cert", &pki.path_str("leaf.pem")])
        .args(["--api-tls-key", &pki.path_str("leaf.key")])
        .start();
    for (addr, listener) in [(gw.addr(), "client"), (gw.api_addr(), "api")] {
        let url = format!("https://localhost:{}/healthz", addr.port());
        for (flags, version) in [
            (&["--tlsv1.3"][..], "TLSv1.3"),
            (&["--tlsv1.2", "--tls-max", "1.2"][..], "TLSv1.2"),
        ] {
            let (code, out, err) = curl(&pki, &url, flags);
            assert_eq!(code, Some(0), "{listener} {version}: {err}");
            assert_eq!(out.trim(), "ok", "{listener} {version}");
            assert!(
                err.contains(&format!("SSL connection using {version}")),
                "{listener}: {err}"
            );
            assert!(err.contains("ALPN: server accepted http/1.1"), "{err}");
        }
    }
    // Without the CA the certificate is not trusted: the server really presents the test leaf.
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--noproxy", "*", "--max-time", "10"])
        .arg(format!("https://localhost:{}/healthz", gw.addr().port()))
        .env("SSL_CERT_FILE", "/dev/null")
        .env("CURL_CA_BUNDLE", "/dev/null");
    let (code, _, _) = run_bounded(cmd, SCRIPT_TIMEOUT);
    assert_ne!(code, Some(0), "an unknown CA must not verify");
}

#[test]
fn rustls_client_gets_alpn_and_echoes_large_messages_then_closes_cleanly() {
    let pki = TestCa::new();
    let gw = pki.gateway().start();
    let cfg = pki.client_config();
    let mut c = WssClient::open(gw.addr(), &cfg);
    assert_eq!(c.tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(c.server_cert(), pki.der("leaf"));
    // Sizes across record boundaries and past the session's ciphertext allowance, so the
    // outbox and the socket's backpressure carry them.
    for len in [
        0usize,
        1,
        125,
        16 * 1024 - 1,
        16 * 1024 + 7,
        200_000,
        3 << 20,
    ] {
        let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        c.echo(&payload);
    }
    c.close();
}

#[test]
fn plain_http_and_garbage_on_the_tls_port_are_refused_and_disturb_nothing() {
    let pki = TestCa::new();
    let gw = pki.gateway().start();
    let cfg = pki.client_config();
    let mut bystander = WssClient::open(gw.addr(), &cfg);
    bystander.echo(b"before");

    // Plain HTTP: a plain-text 400 that says what to use, then the close.
    let mut tcp = TcpStream::connect(gw.addr()).expect("connect");
    tcp.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("write");
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).expect("read to the close");
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(answer.contains("speaks TLS"), "{answer}");

    // Application data before any handshake: a fatal `unexpected_message` alert (record type
    // 21, level 2, description 10), then the close.
    let mut tcp = TcpStream::connect(gw.addr()).expect("connect");
    tcp.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    tcp.write_all(&[0x17, 0x03, 0x03, 0x00, 0x05, 0xde, 0xad, 0xbe, 0xef, 0x00])
        .expect("write");
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    assert_eq!(answer, [21, 3, 3, 0, 2, 2, 10], "an alert record");

    // Random bytes that are no record at all.
    let mut tcp = TcpStream::connect(gw.addr()).expect("connect");
    tcp.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let _ = tcp.write_all(&junk);
    let mut answer = Vec::new();
    match tcp.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
    }

    // The connection that was already open, and a new one, still work.
    bystander.echo(b"after");
    bystander.close();
    WssClient::open(gw.addr(), &cfg).echo(b"new");
    let (code, metrics, _) = curl_metrics(&gw);
    assert_eq!(code, Some(0));
    let refused = metric(&metrics, "gateway_tls_handshakes_total{result=\"refused\"}");
    assert!(refused >= 3, "refusals counted: {refused}\n{metrics}");
    assert!(metric(&metrics, "gateway_tls_handshakes_total{result=\"ok\"}") >= 2);
}

#[test]
fn backpressure_holds_over_tls_and_every_echo_arrives_once_the_client_reads() {
    const FRAME: usize = 16 * 1024;
    const FRAMES: usize = 1024; // 16 MiB of echo, 64 times the outbound limit
    let pki = TestCa::new();
    let gw = pki
        .gateway()
        .args(["--max-outbound-bytes", "262144"])
        .start();
    // Small client buffers: 16 MiB must not fit in what the kernel holds between the two.
    let mut c = WssClient::open_small_buffers(gw.addr(), &pki.client_config(), 64 << 10);
    let payload = vec![b'x'; FRAME];
    let frame = client_frame(true, op::BINARY, &payload, KEY);
    let mut wire = Vec::with_capacity(frame.len() * FRAMES);
    for _ in 0..FRAMES {
        wire.extend_from_slice(&frame);
    }
    let (conn, sock) = (&mut c.tls.conn, &mut c.tls.sock);
    sock.set_nonblocking(true).expect("nonblocking");
    let mut sent = 0;
    let mut echoed = 0usize;
    let mut plain = std::mem::take(&mut c.buf);
    let mut pauses_seen = false;
    let mut last_progress = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    while echoed < FRAME * FRAMES {
        assert!(
            Instant::now() < deadline,
            "echoed {echoed} of {}",
            FRAME * FRAMES
        );
        let mut progress = false;
        // Write without reading until the gateway stops taking bytes; read only after that.
        if sent < wire.len() && !conn.wants_write() {
            sent += conn.writer().write(&wire[sent..]).expect("plaintext in");
        }
        match conn.write_tls(sock) {
            Ok(n) => progress |= n > 0,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("write: {e}"),
        }
        let reading = pauses_seen || sent == wire.len();
        if reading {
            match conn.read_tls(sock) {
                Ok(0) => panic!("the gateway closed the connection"),
                Ok(_) => {
                    conn.process_new_packets()
                        .expect("valid TLS from the gateway");
                    let mut chunk = [0u8; 65536];
                    while let Ok(n) = conn.reader().read(&mut chunk) {
                        if n == 0 {
                            break;
                        }
                        plain.extend_from_slice(&chunk[..n]);
                        progress = true;
                    }
                    echoed += take_frames(&mut plain);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("read: {e}"),
            }
        }
        if progress {
            last_progress = Instant::now();
        } else if !pauses_seen && last_progress.elapsed() > Duration::from_millis(300) {
            // Stalled: the gateway must have stopped reading this connection.
            let (_, metrics, _) = curl_metrics(&gw);
            assert!(
                metric(&metrics, "gateway_backpressure_pauses_total") >= 1,
                "stalled without a backpressure pause\n{metrics}"
            );
            pauses_seen = true;
        } else {
            thread::sleep(Duration::from_millis(1));
        }
    }
    assert!(pauses_seen, "the client never had to stop writing");
    assert_eq!(echoed, FRAME * FRAMES);
}

/// The whole server frame at the front of `buf`, if there is one: (opcode, payload start,
/// payload length).
fn frame_at(buf: &[u8]) -> Option<(u8, usize, usize)> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    assert_eq!(b1 & 0x80, 0, "server frames are unmasked");
    let (start, len) = match b1 & 0x7f {
        126 => (
            4,
            u64::from(u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?)),
        ),
        127 => (10, u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?)),
        n => (2, u64::from(n)),
    };
    let len = usize::try_from(len).expect("a length that fits");
    (buf.len() >= start + len).then_some((b0 & 0x0f, start, len))
}

/// Remove whole server frames from the front of `buf`; returns their payload bytes.
fn take_frames(buf: &mut Vec<u8>) -> usize {
    let mut at = 0;
    let mut payload = 0;
    while let Some((opcode, start, len)) = frame_at(&buf[at..]) {
        assert_eq!(opcode, op::BINARY, "an echo");
        payload += len;
        at += start + len;
    }
    buf.drain(..at);
    payload
}

fn curl_metrics(gw: &Gateway) -> (Option<i32>, String, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--noproxy", "*", "--max-time", "10"])
        .arg(format!("http://{}/metrics", gw.api_addr()));
    run_bounded(cmd, SCRIPT_TIMEOUT)
}

fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} in\n{text}"))
}

#[test]
fn a_silent_or_stalled_handshake_is_closed_at_the_handshake_timeout() {
    let pki = TestCa::new();
    let gw = pki.gateway().args(["--handshake-timeout", "300ms"]).start();
    let silent = TcpStream::connect(gw.addr()).expect("connect");
    let mut stalled = TcpStream::connect(gw.addr()).expect("connect");
    // The first bytes of a ClientHello record, and nothing more.
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .expect("write");
    let start = Instant::now();
    for mut s in [silent, stalled] {
        s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(
            rest.is_empty(),
            "nothing is sent before the handshake: {rest:?}"
        );
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "closed after {:?}",
        start.elapsed()
    );
}

#[test]
fn start_refuses_missing_unreadable_or_mismatched_files() {
    let pki = TestCa::new();
    pki.issue("other");
    fs::write(pki.path("empty.pem"), "").expect("write");
    let cases = [
        ("missing.pem", "leaf.key", "missing.pem"),
        ("leaf.pem", "missing.key", "missing.key"),
        ("empty.pem", "leaf.key", "no CERTIFICATE"),
        ("leaf.pem", "empty.pem", "empty.pem"),
        ("leaf.pem", "other.key", "does not belong"),
    ];
    for (cert, key, needle) in cases {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
        cmd.args(["--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"])
            .arg("--tls-cert")
            .arg(pki.path(cert))
            .arg("--tls-key")
            .arg(pki.path(key));
        let (code, _, err) = run_bounded(cmd, SCRIPT_TIMEOUT);
        assert_eq!(code, Some(2), "{cert} + {key}: {err}");
        assert!(err.contains(needle), "{cert} + {key}: {err}");
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
    cmd.args(["--tls-cert", "x.pem"]);
    let (code, _, err) = run_bounded(cmd, SCRIPT_TIMEOUT);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--tls-cert needs --tls-key"), "{err}");
}

#[test]
fn sighup_rotates_the_certificate_under_load_without_dropping_connections() {
    let pki = TestCa::new();
    pki.issue("next");
    let gw = pki.gateway().threads(2).start();
    let cfg = pki.client_config();
    let old = pki.der("leaf");

    // Clients echo continuously through the rotation.
    let stop = Arc::new(AtomicBool::new(false));
    let echoes = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..8)
        .map(|i| {
            let mut c = WssClient::open(gw.addr(), &cfg);
            assert_eq!(c.server_cert(), old);
            let (stop, echoes) = (Arc::clone(&stop), Arc::clone(&echoes));
            thread::spawn(move || {
                let payload = vec![b'0' + i as u8; 100 + 997 * i];
                while !stop.load(Ordering::Relaxed) {
                    c.echo(&payload);
                    echoes.fetch_add(1, Ordering::Relaxed);
                }
                c.close();
            })
        })
        .collect();
    let wait_for = |n: usize| {
        let deadline = Instant::now() + IO_TIMEOUT;
        while echoes.load(Ordering::Relaxed) < n {
            assert!(Instant::now() < deadline, "the clients stopped echoing");
            thread::sleep(Duration::from_millis(5));
        }
    };
    wait_for(200);

    // A bad new file: logged, and the old certificate stays.
    fs::write(pki.path("leaf.pem"), "not a certificate").expect("write");
    gw.signal(Signal::SIGHUP);
    wait_until_logged(&gw, "TLS reload failed");
    // (A fresh client config each time: a resumed session would show no new certificate.)
    let fresh_cfg = pki.client_config();
    assert_eq!(WssClient::connect(gw.addr(), &fresh_cfg).server_cert(), old);

    // The new pair: new handshakes get it; connections made before keep going.
    fs::copy(pki.path("next.pem"), pki.path("leaf.pem")).expect("copy");
    fs::copy(pki.path("next.key"), pki.path("leaf.key")).expect("copy");
    gw.signal(Signal::SIGHUP);
    wait_until_logged(&gw, "TLS certificate reloaded");
    let mut fresh = WssClient::open(gw.addr(), &pki.client_config());
    assert_eq!(fresh.server_cert(), pki.der("next"));
    fresh.echo(b"new certificate");
    fresh.close();

    let seen = echoes.load(Ordering::Relaxed);
    wait_for(seen + 200);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("a client failed during the rotation");
    }
}

fn wait_until_logged(gw: &Gateway, needle: &str) {
    let deadline = Instant::now() + IO_TIMEOUT;
    while !gw.stderr().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the log:\n{}",
            gw.stderr()
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// base64(SHA-256(SubjectPublicKeyInfo)) of the leaf `name`: what Chromium's
/// `--ignore-certificate-errors-spki-list` pins.
fn spki_pin(pki: &TestCa, name: &str) -> String {
    use sha2::Digest;
    let pem = format!("{name}.pem");
    let der = format!("{name}.spki.der");
    pki.openssl(&["x509", "-in", &pem, "-noout", "-pubkey", "-out", "pub.pem"]);
    #[rustfmt::skip]
    pki.openssl(&["pkey", "-pubin", "-in", "pub.pem", "-outform", "der", "-out", &der]);
    let spki = fs::read(pki.path(&der)).expect("SPKI DER");
    base64_simd::STANDARD.encode_to_string(sha2::Sha256::digest(&spki))
}

#[test]
fn chat_page_over_https_in_headless_chromium() {
    let pki = TestCa::new();
    let gw = pki.gateway().threads(2).start();
    let mut cmd = Command::new("node");
    cmd.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser"))
        .arg("tls.test.mjs")
        .arg(format!("https://localhost:{}", gw.addr().port()))
        .arg(spki_pin(&pki, "leaf"));
    expect_ok(&gw, cmd, "headless Chromium");
}
