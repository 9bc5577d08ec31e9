//! A TCP proxy owned by the test, between clients and a gateway: one listener, two pump threads
//! per connection, each connection treated as one of the [`Link`]s given (slow, resetting after
//! a byte count, lossy), or passed through until the test cuts it ([`Cut`]): with a reset, or
//! as a silent black hole that only a heartbeat can detect.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// What the proxy does to one connection.
#[derive(Clone, Copy, Debug)]
pub enum Link {
    /// Server-to-client bytes trickle at this many bytes per 10 ms.
    Slow(usize),
    /// Both directions are cut with a reset after this many server-to-client bytes.
    Reset(usize),
    /// Every third client-to-server chunk is dropped (bytes lost mid-stream).
    Lossy,
    /// Bytes pass as they are, until the proxy's [`Cut`] says otherwise.
    Plain,
}

const FLOWING: u8 = 0;
const RESET: u8 = 1;
const HOLE: u8 = 2;
/// How often a pump waiting for bytes looks at its proxy's cut switch.
const POLL: Duration = Duration::from_millis(20);

/// The switch that cuts every connection of a proxy at once.
#[derive(Clone, Debug, Default)]
pub struct Cut(Arc<AtomicU8>);

impl Cut {
    /// Reset both sides of every connection (linger 0: an RST, not a FIN).
    pub fn reset(&self) {
        self.0.store(RESET, Ordering::Relaxed);
    }

    /// Stop moving bytes in both directions and keep every socket open: neither side hears
    /// anything, as when a network path dies silently.
    pub fn black_hole(&self) {
        self.0.store(HOLE, Ordering::Relaxed);
    }

    fn state(&self) -> u8 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A proxy to `upstream`, connection `k` treated as `links[k % links.len()]`. Stops accepting
/// once `done` is set.
pub fn proxy(upstream: SocketAddr, links: Vec<Link>, done: Arc<AtomicBool>) -> SocketAddr {
    start(upstream, links, done, Cut::default())
}

/// A proxy to `upstream` passing bytes as they are until `cut` is used; stops accepting once
/// `done` is set.
pub fn cuttable(upstream: SocketAddr, done: Arc<AtomicBool>) -> (SocketAddr, Cut) {
    let cut = Cut::default();
    (start(upstream, vec![Link::Plain], done, cut.clone()), cut)
}

fn start(upstream: SocketAddr, links: Vec<Link>, done: Arc<AtomicBool>, cut: Cut) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
    let addr = listener.local_addr().expect("proxy address");
    listener.set_nonblocking(true).expect("nonblocking accept");
    thread::spawn(move || {
        let mut k = 0;
        while !done.load(Ordering::Relaxed) {
            let client = match listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                }
                Err(_) => return,
            };
            client
                .set_nonblocking(false)
                .expect("blocking client socket");
            let link = links[k % links.len()];
            k += 1;
            let Ok(server) = connect_upstream(upstream, link) else {
                continue;
            };
            let pumps = [
                (
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    true,
                ),
                (server, client, false),
            ];
            for (from, to, up) in pumps {
                pump(from, to, link, up, Arc::clone(&done), cut.clone());
            }
        }
    });
    addr
}

/// The proxy's connection to the gateway. A slow link gets a small receive buffer, set before
/// connecting (which also turns autotuning off), so the gateway meets its window at once.
fn connect_upstream(upstream: SocketAddr, link: Link) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    if let Link::Slow(_) = link {
        socket.set_recv_buffer_size(4096)?;
    }
    socket.connect(&upstream.into())?;
    Ok(socket.into())
}

/// Reset both sockets: linger 0 makes the last close of each send a reset, not a FIN; shutting
/// the reads wakes the other pump, which then drops its handles too.
fn reset(from: &TcpStream, to: &TcpStream) {
    for s in [from, to] {
        let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
        let _ = s.shutdown(Shutdown::Read);
    }
}

/// Copy `from` to `to` applying `link` and `cut`; `up` is the client-to-server direction. A
/// slow link runs at full speed once `done` is set, so what it still holds arrives without
/// waiting.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    link: Link,
    up: bool,
    done: Arc<AtomicBool>,
    cut: Cut,
) {
    thread::spawn(move || {
        let mut buf = vec![0u8; 16 * 1024];
        let mut moved = 0usize;
        let mut chunks = 0usize;
        if let Link::Plain = link {
            let _ = from.set_read_timeout(Some(POLL));
        }
        loop {
            let want = match link {
                Link::Slow(n) if !up && !done.load(Ordering::Relaxed) => {
                    thread::sleep(Duration::from_millis(10));
                    n
                }
                _ => buf.len(),
            };
            let read = from.read(&mut buf[..want]);
            match cut.state() {
                RESET => return reset(&from, &to),
                // Swallow everything and say nothing; the sockets stay open until the other
                // side gives up (or the test ends).
                HOLE if done.load(Ordering::Relaxed) => return,
                HOLE if matches!(read, Ok(n) if n > 0) => continue,
                HOLE => match read {
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        continue
                    }
                    _ => return,
                },
                _ => {}
            }
            let n = match read {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    continue
                }
                Err(_) => break,
            };
            chunks += 1;
            moved += n;
            match link {
                Link::Lossy if up && chunks % 3 == 0 => continue,
                Link::Reset(after) if !up && moved >= after => return reset(&from, &to),
                _ => {}
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
        let _ = from.shutdown(Shutdown::Read);
    });
}
