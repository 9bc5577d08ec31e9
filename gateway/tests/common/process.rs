//! The gateway process under test, started through `test-support` from this package's binary,
//! with this suite's shorthands on top: a raw [`Client`] to it, an echo round trip, and what
//! `/proc` says about its memory and descriptors.

use std::net::SocketAddr;

#[allow(unused_imports)] // each test binary uses a different part of the harness
pub use test_support::{free_port, no_proxy, Gateway, GatewayBuilder, Signal};

use super::*;

/// A builder for this package's gateway binary (free loopback ports, epoll unless
/// `GATEWAY_DRIVER` says otherwise).
pub fn gateway() -> GatewayBuilder {
    Gateway::builder(env!("CARGO_BIN_EXE_gateway"))
}

/// What this suite asks of a running gateway besides its addresses.
pub trait GatewayExt {
    /// Open a WebSocket on `/echo` (asserting the 101 and its accept key).
    fn client(&self) -> Client;
    /// One echo round trip on a fresh connection, closed cleanly: proves the server still serves.
    fn assert_serves(&self);
    /// Resident set size from `/proc/<pid>/status` (`VmRSS`), in bytes.
    fn rss_bytes(&self) -> u64;
    /// Address-space size from `/proc/<pid>/status` (`VmSize`), in bytes: shows reservations
    /// that were never touched (and so are not in the RSS).
    fn vm_bytes(&self) -> u64;
    /// Number of open file descriptors of the gateway (`/proc/<pid>/fd`).
    fn open_fds(&self) -> usize;
    /// A counter (or one labelled sample, `name{label="x"}`) from the API listener's `/metrics`.
    fn metric(&self, sample: &str) -> u64;
}

impl GatewayExt for Gateway {
    fn client(&self) -> Client {
        Client::open(self.addr())
    }

    fn assert_serves(&self) {
        assert_echo_round_trip(self.addr());
    }

    fn rss_bytes(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:") * 1024
    }

    fn vm_bytes(&self) -> u64 {
        proc_status_kib(self.pid(), "VmSize:") * 1024
    }

    fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .expect("list /proc/<pid>/fd")
    }

    fn metric(&self, sample: &str) -> u64 {
        let r = http_exchange(
            self.api_addr(),
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        let text = String::from_utf8_lossy(&r.body).into_owned();
        text.lines()
            .find_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                (k == sample).then(|| v.parse::<f64>().ok())?
            })
            .unwrap_or_else(|| panic!("{sample} missing from /metrics:\n{text}")) as u64
    }
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("read /proc/<pid>/status of the gateway");
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} line in /proc/<pid>/status"));
    line.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{field} value in kB"))
}

/// Open a connection, echo one text message, close with 1000 and see the TCP close.
pub fn assert_echo_round_trip(addr: SocketAddr) {
    let mut c = Client::open(addr);
    c.send_text(b"still serving");
    c.expect_frame(op::TEXT, b"still serving");
    c.close_cleanly();
}
