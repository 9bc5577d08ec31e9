//! The readiness driver: one mio `Poll` (epoll) per shard, edge-triggered, with the shard's
//! SO_REUSEPORT listeners, its connections' sockets and a `Waker`.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use super::{Driver, Ready};
use crate::conn::ConnId;

/// Readiness events fetched per `epoll_wait`.
const EVENTS: usize = 1024;

fn listener_token(n: usize) -> Token {
    Token(ConnId::new(ConnId::RESERVED_SHARD, n as u32, 0).to_bits() as usize)
}

fn waker_token() -> Token {
    Token(ConnId::new(ConnId::RESERVED_SHARD, u32::MAX, 0).to_bits() as usize)
}

/// Bind a TCP listener with SO_REUSEPORT (and SO_REUSEADDR) so every shard can bind the same
/// address and the kernel spreads connections across them.
pub fn bind_reuseport(addr: SocketAddr, backlog: i32) -> io::Result<std::net::TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// The mio driver of one shard.
pub struct MioDriver {
    poll: Poll,
    events: Events,
    listeners: Vec<Option<TcpListener>>,
    /// Connection sockets by slab slot.
    streams: Vec<Option<TcpStream>>,
    /// By slab slot: the peer's FIN was reported (it may have come with the last bytes).
    read_closed: Vec<bool>,
    /// Reports for the next `wait`: an end of stream seen behind a short read.
    deferred: Vec<Ready>,
}

impl MioDriver {
    /// A driver watching `listeners`; returns it and the waker other threads use to wake it.
    pub fn new(listeners: Vec<std::net::TcpListener>) -> io::Result<(MioDriver, Arc<Waker>)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), waker_token())?);
        let mut mio_listeners = Vec::with_capacity(listeners.len());
        for (n, l) in listeners.into_iter().enumerate() {
            let mut l = TcpListener::from_std(l);
            poll.registry()
                .register(&mut l, listener_token(n), Interest::READABLE)?;
            mio_listeners.push(Some(l));
        }
        Ok((
            MioDriver {
                poll,
                events: Events::with_capacity(EVENTS),
                listeners: mio_listeners,
                streams: Vec::new(),
                read_closed: Vec::new(),
                deferred: Vec::new(),
            },
            waker,
        ))
    }

    fn stream(&mut self, id: ConnId) -> io::Result<&mut TcpStream> {
        self.streams
            .get_mut(id.slot() as usize)
            .and_then(Option::as_mut)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "no such connection"))
    }
}

impl Driver for MioDriver {
    type Socket = TcpStream;

    fn wait(&mut self, ready: &mut Vec<Ready>, timeout: Option<Duration>) -> io::Result<()> {
        let timeout = if self.deferred.is_empty() {
            timeout
        } else {
            ready.append(&mut self.deferred);
            Some(Duration::ZERO)
        };
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        for ev in self.events.iter() {
            let token = ev.token();
            if token == waker_token() {
                ready.push(Ready::Wake);
                continue;
            }
            let id = ConnId::from_bits(token.0 as u64);
            if id.shard() == ConnId::RESERVED_SHARD {
                ready.push(Ready::Accept(id.slot() as usize));
                continue;
            }
            if ev.is_read_closed() {
                if let Some(flag) = self.read_closed.get_mut(id.slot() as usize) {
                    *flag = true;
                }
            }
            ready.push(Ready::Conn {
                id,
                readable: ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                writable: ev.is_writable() || ev.is_write_closed(),
            });
        }
        Ok(())
    }

    fn accept(&mut self, listener: usize) -> io::Result<Option<TcpStream>> {
        let Some(Some(l)) = self.listeners.get(listener) else {
            return Ok(None);
        };
        loop {
            match l.accept() {
                Ok((stream, _addr)) => {
                    // Frames are written whole and batched per loop turn: Nagle only adds delay.
                    let _ = stream.set_nodelay(true);
                    return Ok(Some(stream));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The peer gave up before we accepted: try the next one.
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn attach(&mut self, id: ConnId, mut socket: TcpStream) -> io::Result<()> {
        let slot = id.slot() as usize;
        if self.streams.len() <= slot {
            self.streams.resize_with(slot + 1, || None);
            self.read_closed.resize(slot + 1, false);
        }
        self.read_closed[slot] = false;
        self.poll.registry().register(
            &mut socket,
            Token(id.to_bits() as usize),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        self.streams[slot] = Some(socket);
        Ok(())
    }

    fn recv(&mut self, id: ConnId, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stream(id)?.read(buf)?;
        if n > 0 && n < buf.len() && self.read_closed.get(id.slot() as usize) == Some(&true) {
            // The FIN came with these bytes: the shard stops at a short read and no new edge
            // will come, so report the end of stream again at the next wait.
            self.deferred.push(Ready::Conn {
                id,
                readable: true,
                writable: false,
            });
        }
        Ok(n)
    }

    fn send(&mut self, id: ConnId, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let s = self.stream(id)?;
        match bufs {
            [one] => s.write(one),
            _ => s.write_vectored(bufs),
        }
    }

    fn shutdown_write(&mut self, id: ConnId) {
        if let Ok(s) = self.stream(id) {
            let _ = s.shutdown(Shutdown::Write);
        }
    }

    fn peer_addr(&mut self, id: ConnId) -> Option<SocketAddr> {
        self.stream(id).ok()?.peer_addr().ok()
    }

    fn close(&mut self, id: ConnId) {
        if let Some(slot) = self.streams.get_mut(id.slot() as usize) {
            if let Some(mut s) = slot.take() {
                let _ = self.poll.registry().deregister(&mut s);
            }
        }
    }

    fn stop_accepting(&mut self) {
        for l in self.listeners.iter_mut() {
            if let Some(mut l) = l.take() {
                let _ = self.poll.registry().deregister(&mut l);
            }
        }
    }
}
