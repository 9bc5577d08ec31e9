//! Test support: start a peer server (through `test-support`) and talk to it with a tiny blocking
//! WebSocket client built on frame-simd's encoder and header parser. Every wait is bounded.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use frame_simd::{encode_client_frame, encode_header, parse_header, MaskKey, Opcode, ParseConfig};
use frame_simd::{Parsed, Role, MAX_HEADER_LEN};
use test_support::{Expect, Process};

/// Longest wait for anything a server should do promptly.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// A peer server process, stopped when dropped.
pub struct Server {
    process: Process,
    pub addr: SocketAddr,
}

impl Server {
    /// Start `program args.. --listen 127.0.0.1:0 --threads N` and wait for its `listening on`.
    pub fn start(program: &str, args: &[&str], threads: usize) -> Server {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .args(["--listen", "127.0.0.1:0", "--threads", &threads.to_string()]);
        let mut process = Process::spawn(cmd);
        let expect = Expect {
            listeners: 1,
            api: false,
        };
        let addr = process
            .await_listening(expect, Duration::from_secs(10))
            .addrs[0];
        Server { process, addr }
    }

    /// The server's process id (for `--server-pid`; not every test binary asks for it).
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Send SIGTERM and assert the process is gone within the patience.
    pub fn terminate(mut self) {
        self.process.terminate();
        assert!(
            self.process.wait_exit(PATIENCE).is_some(),
            "{} still running {PATIENCE:?} after SIGTERM",
            self.process.name()
        );
    }
}

/// A blocking WebSocket client that masks every frame with a changing key.
pub struct Client {
    stream: TcpStream,
    received: Vec<u8>,
    next_key: u32,
}

impl Client {
    /// Connect and complete the upgrade handshake for `path`.
    pub fn connect(addr: SocketAddr, path: &str) -> Client {
        let mut stream = TcpStream::connect_timeout(&addr, PATIENCE).expect("connect");
        stream
            .set_read_timeout(Some(PATIENCE))
            .expect("read timeout");
        stream.set_nodelay(true).expect("nodelay");
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).expect("send request");
        let mut received = Vec::new();
        let head_end = loop {
            if let Some(at) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            read_more(&mut stream, &mut received);
        };
        let head = String::from_utf8_lossy(&received[..head_end]).to_lowercase();
        assert!(
            head.starts_with("http/1.1 101"),
            "handshake refused: {head}"
        );
        assert!(
            head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
            "wrong accept key: {head}"
        );
        received.drain(..head_end);
        Client {
            stream,
            received,
            next_key: 0x3712_fa21,
        }
    }

    fn key(&mut self) -> MaskKey {
        self.next_key = self
            .next_key
            .wrapping_mul(747_796_405)
            .wrapping_add(2_891_336_453);
        MaskKey(self.next_key.to_be_bytes())
    }

    /// Send one complete message.
    pub fn send(&mut self, opcode: Opcode, payload: &[u8]) {
        let mut frame = Vec::new();
        let key = self.key();
        encode_client_frame(&mut frame, opcode, payload, key);
        self.stream.write_all(&frame).expect("send frame");
    }

    /// Send one frame with an explicit FIN bit (for fragmented messages).
    pub fn send_fragment(&mut self, fin: bool, opcode: Opcode, payload: &[u8]) {
        let key = self.key();
        let mut header = [0; MAX_HEADER_LEN];
        let len = encode_header(&mut header, fin, opcode, payload.len() as u64, Some(key));
        let mut frame = header[..len].to_vec();
        frame.extend(payload.iter().zip(key.0.iter().cycle()).map(|(b, k)| b ^ k));
        self.stream.write_all(&frame).expect("send fragment");
    }

    /// The next frame from the server: its opcode and payload. Panics after the patience.
    pub fn recv(&mut self) -> (Opcode, Vec<u8>) {
        let cfg = ParseConfig {
            role: Role::Client,
            rsv_allowed: 0,
            max_payload: 64 << 20,
        };
        loop {
            match parse_header(&self.received, &cfg) {
                Ok(Parsed::Header { header, len }) => {
                    let end = len + header.payload_len as usize;
                    if self.received.len() >= end {
                        assert!(header.fin, "server sent a fragment: {header:?}");
                        let payload = self.received[len..end].to_vec();
                        self.received.drain(..end);
                        return (header.opcode, payload);
                    }
                }
                Ok(Parsed::Need(_)) => {}
                Err(err) => panic!("server sent a bad frame: {err}"),
            }
            read_more(&mut self.stream, &mut self.received);
        }
    }

    /// Assert that nothing arrives within `quiet`.
    pub fn expect_nothing(&mut self, quiet: Duration) {
        assert!(
            self.received.is_empty(),
            "unexpected bytes: {:?}",
            self.received
        );
        self.stream
            .set_read_timeout(Some(quiet))
            .expect("read timeout");
        let mut chunk = [0; 256];
        match self.stream.read(&mut chunk) {
            Ok(n) => panic!("expected silence, got {:?}", &chunk[..n]),
            Err(err) => assert!(
                matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ),
                "expected silence, got {err}"
            ),
        }
        self.stream
            .set_read_timeout(Some(PATIENCE))
            .expect("read timeout");
    }

    /// Assert the server closes the TCP connection (after any frames already checked).
    pub fn expect_eof(&mut self) {
        let mut chunk = [0; 256];
        match self.stream.read(&mut chunk) {
            Ok(0) => {}
            Ok(n) => panic!("expected end of stream, got {:?}", &chunk[..n]),
            Err(err) if err.kind() == io::ErrorKind::ConnectionReset => {}
            Err(err) => panic!("expected end of stream, got {err}"),
        }
    }
}

fn read_more(stream: &mut TcpStream, into: &mut Vec<u8>) {
    let mut chunk = [0; 64 * 1024];
    match stream.read(&mut chunk) {
        Ok(0) => panic!("server closed the connection; unread: {into:?}"),
        Ok(n) => into.extend_from_slice(&chunk[..n]),
        Err(err) => panic!("no answer from the server within {PATIENCE:?}: {err}"),
    }
}
