//! What every broker transport does with its TCP connections, whatever it speaks on them:
//! write a queue of bytes and read what arrived without blocking (the thread's mio poll says
//! when), and the reconnect delay (exponential with jitter). Protocol codecs stay apart
//! ([`super::resp`], [`super::nats_proto`]).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

/// First reconnect delay.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest reconnect delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Output a connection may hold unsent before the broker counts as stalled.
pub const MAX_UNSENT_BYTES: usize = 64 << 20;

/// Start a non-blocking connect to `addr` (`host:port`, resolved now), registered on `poll`
/// under `token` for reads and writes; the first writable event says whether it succeeded.
pub fn connect(addr: &str, poll: &Poll, token: Token) -> Result<TcpStream, String> {
    let to: SocketAddr = addr
        .to_socket_addrs()
        .map_err(|e| format!("resolve {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr} resolves to no address"))?;
    let mut s = TcpStream::connect(to).map_err(|e| format!("connect: {e}"))?;
    let _ = s.set_nodelay(true);
    poll.registry()
        .register(&mut s, token, Interest::READABLE | Interest::WRITABLE)
        .map_err(|e| format!("register: {e}"))?;
    Ok(s)
}

/// Write what `out` holds to `s` until the socket would block; what was sent leaves `out`.
/// `Err` when the connection broke, or when more than [`MAX_UNSENT_BYTES`] stay unsent (a
/// broker that does not read).
pub fn flush(s: &mut TcpStream, out: &mut Vec<u8>) -> io::Result<()> {
    let mut sent = 0;
    while sent < out.len() {
        match s.write(&out[sent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    out.drain(..sent);
    if out.len() > MAX_UNSENT_BYTES {
        return Err(io::Error::other("the broker does not read what it is sent"));
    }
    Ok(())
}

/// Read from `s` through `buf` into `inb` until the socket would block; `Err` at end of stream
/// or on an error.
pub fn fill(s: &mut TcpStream, buf: &mut [u8], inb: &mut Vec<u8>) -> io::Result<()> {
    loop {
        match s.read(buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => inb.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Wait for events on `poll` until `deadline` at the latest. A failed wait is logged and
/// followed by a short pause, so a broken poll cannot spin the thread.
pub fn wait(poll: &mut Poll, events: &mut Events, deadline: Instant) {
    let timeout = deadline.saturating_duration_since(Instant::now());
    if let Err(e) = poll.poll(events, Some(timeout)) {
        if e.kind() != io::ErrorKind::Interrupted {
            tracing::warn!(error = %e, "broker poll failed");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Where a transport's connection to one broker server stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting to try again.
    Down {
        /// When to connect again.
        retry_at: Instant,
    },
    /// TCP connect under way.
    Connecting {
        /// When the attempt fails.
        deadline: Instant,
    },
    /// TCP is open and the transport has greeted the server; the server has not answered yet
    /// (a stopped server still completes TCP handshakes).
    Greeting,
    /// The server answers.
    Up,
}

impl Phase {
    /// Whether commands may be written.
    pub fn open(self) -> bool {
        matches!(self, Phase::Greeting | Phase::Up)
    }

    /// When this phase needs the thread at the latest (a retry or a connect deadline).
    pub fn wake_at(self) -> Option<Instant> {
        match self {
            Phase::Down { retry_at } => Some(retry_at),
            Phase::Connecting { deadline } => Some(deadline),
            Phase::Greeting | Phase::Up => None,
        }
    }
}

/// The reconnect delay: [`BACKOFF_MIN`] doubling to [`BACKOFF_MAX`], each delay drawn from the
/// upper half of the current step (full jitter over that half), so nodes that lost the broker
/// together spread out.
#[derive(Debug)]
pub struct Backoff {
    step: Duration,
    rng: u64,
}

impl Default for Backoff {
    fn default() -> Backoff {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(0x9e37_79b9_7f4a_7c15);
        Backoff {
            step: BACKOFF_MIN,
            rng: h.finish() | 1,
        }
    }
}

impl Backoff {
    /// The delay before the next attempt; the one after is longer, up to the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let half = self.step / 2;
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let jitter = Duration::from_nanos(self.rng % (half.as_nanos().max(1) as u64));
        self.step = (self.step * 2).min(BACKOFF_MAX);
        half + jitter
    }

    /// A connection succeeded: start again from the shortest delay.
    pub fn reset(&mut self) {
        self.step = BACKOFF_MIN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_with_jitter_up_to_the_maximum_and_reset() {
        let mut b = Backoff::default();
        let mut step = BACKOFF_MIN;
        for _ in 0..12 {
            let d = b.next_delay();
            assert!(
                d >= step / 2 && d < step,
                "{d:?} within [{:?}, {step:?})",
                step / 2
            );
            step = (step * 2).min(BACKOFF_MAX);
        }
        assert!(b.next_delay() >= BACKOFF_MAX / 2);
        b.reset();
        assert!(b.next_delay() < BACKOFF_MIN);
    }
}
