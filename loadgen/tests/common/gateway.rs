//! The real gateway binary, started through `test-support` on 127.0.0.1 with free ports and
//! stopped when dropped, with what these tests ask of it: URLs and `/metrics` counters.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub use test_support::Gateway;
use test_support::{gateway_binary, Driver};

/// The bearer key the test gateway's API is started with.
pub const API_KEY: &str = "loadgen-test-key";

/// Start the gateway with `threads` shards on free loopback ports, on the driver the gateway
/// picks itself unless `GATEWAY_DRIVER` names one.
pub fn start(threads: usize) -> Gateway {
    Gateway::builder(gateway_binary())
        .default_driver(Driver::Auto)
        .threads(threads)
        .args(["--api-key", API_KEY, "--log-level", "warn"])
        .start()
}

/// What these tests ask of a running gateway besides its addresses.
pub trait GatewayExt {
    /// `ws://` URL of a path on the client listener.
    fn url(&self, path: &str) -> String;
    /// `http://` base URL of the API listener.
    fn api_url(&self) -> String;
    /// A counter from `/metrics` (an unlabelled sample).
    fn metric(&self, name: &str) -> u64;
}

impl GatewayExt for Gateway {
    fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr(), path)
    }

    fn api_url(&self) -> String {
        format!("http://{}", self.api_addr())
    }

    fn metric(&self, name: &str) -> u64 {
        let text = http_get(self.api_addr(), "/metrics");
        text.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == name).then(|| v.trim().parse::<f64>().ok())?
            })
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}")) as u64
    }
}

/// GET a path over a fresh connection and return the body (Content-Length framed).
fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..at]).to_string();
            assert!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .expect("Content-Length");
            if buf.len() >= at + 4 + len {
                return String::from_utf8_lossy(&buf[at + 4..at + 4 + len]).to_string();
            }
        }
        let n = s.read(&mut chunk).expect("read the answer");
        assert!(n > 0, "GET {path}: connection closed early");
        buf.extend_from_slice(&chunk[..n]);
    }
}
