//! The fan-out ceiling: what plain `write` calls reach when every publish is one prebuilt frame.
//!
//! One mio event loop per thread, each with its own `SO_REUSEPORT` listener; a connection stays
//! on the loop that accepted it. The handshake is read by hand (request line, then the
//! `Sec-WebSocket-Key`), and frames are parsed only far enough to answer pings and closes, echo
//! on `/echo`, and find `pub:` messages on `/broadcast` (single-frame text messages; UTF-8 is
//! not validated). Publishes read in one loop turn are encoded once, back to back, into one
//! buffer that each subscriber receives with one `write`; other loops get the same buffer by
//! reference over a channel plus a wake-up. Bytes a socket does not take are appended to that
//! socket's pending buffer and flushed, coalesced, when it becomes writable again.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread;

use frame_simd::{encode_server_frame, parse_header, Kernels, Opcode, ParseConfig, Parsed, Role};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use socket2::{Domain, Protocol, Socket, Type};

use super::cli::{self, Args};
use super::{Mode, PUBLISH_PREFIX};

/// Token of a loop's listener; connection tokens are slot indexes, far below it.
const LISTENER: Token = Token(usize::MAX - 1);
/// Token of a loop's waker, used when another loop hands it published frames.
const WAKER: Token = Token(usize::MAX - 2);
/// Bytes read from a socket per `read` call.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Longest handshake request accepted.
const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Largest frame payload accepted.
const MAX_PAYLOAD_BYTES: u64 = 16 << 20;
/// Bytes a socket may owe before its connection is dropped as a slow reader.
const MAX_PENDING_BYTES: usize = 64 << 20;
/// Listen backlog; the connection-storm scenario opens thousands of sockets at once.
const BACKLOG: i32 = 4096;
/// RFC 6455 §1.3: appended to the client's key before hashing.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Run the server until the process is stopped.
pub fn serve(args: &Args) -> io::Result<()> {
    let listeners = bind_reuseport(args.listen, args.threads)?;
    let mut loops = Vec::with_capacity(listeners.len());
    let mut mailboxes = Vec::with_capacity(listeners.len());
    for listener in listeners {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (sender, inbox) = channel();
        mailboxes.push(Mailbox { sender, waker });
        loops.push((poll, listener, inbox));
    }
    let addr = match loops.first() {
        Some((_, listener, _)) => listener.local_addr()?,
        None => return Err(io::Error::other("no threads")),
    };
    let mut threads = Vec::with_capacity(loops.len());
    for (index, (poll, listener, inbox)) in loops.into_iter().enumerate() {
        let others = mailboxes
            .iter()
            .enumerate()
            .filter(|(other, _)| *other != index)
            .map(|(_, mailbox)| mailbox.clone())
            .collect();
        let event_loop = EventLoop::new(poll, listener, inbox, others)?;
        threads.push(
            thread::Builder::new()
                .name(format!("loop-{index}"))
                .spawn(move || event_loop.run())?,
        );
    }
    cli::announce(addr)?;
    for thread in threads {
        thread
            .join()
            .map_err(|_| io::Error::other("event loop panicked"))??;
    }
    Ok(())
}

/// `threads` listeners on one address with `SO_REUSEPORT`, so the kernel spreads connections
/// over the loops. With port 0 the first bind picks the port and the others reuse it.
fn bind_reuseport(addr: SocketAddr, threads: usize) -> io::Result<Vec<std::net::TcpListener>> {
    let mut addr = addr;
    let mut listeners = Vec::with_capacity(threads);
    for _ in 0..threads {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(BACKLOG)?;
        let listener = std::net::TcpListener::from(socket);
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// How one loop hands published frames to another.
#[derive(Clone)]
struct Mailbox {
    sender: Sender<Arc<[u8]>>,
    waker: Arc<Waker>,
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading the HTTP upgrade request.
    AwaitRequest,
    /// Handshake done; frames flow.
    Open(Mode),
    /// A close frame or an error answer is written; the socket closes once it is flushed.
    Closing,
}

struct Conn {
    stream: TcpStream,
    state: State,
    /// Received bytes not yet used: part of the request, or a partial frame.
    unread: Vec<u8>,
    /// Bytes the socket has not taken yet, in order.
    pending: Vec<u8>,
    /// Opcode and payload of a fragmented message being echoed.
    fragments: Option<(Opcode, Vec<u8>)>,
    /// The socket failed or its reader fell too far behind: drop at the end of the turn.
    broken: bool,
}

struct EventLoop {
    poll: Poll,
    listener: TcpListener,
    inbox: Receiver<Arc<[u8]>>,
    others: Vec<Mailbox>,
    /// Connections by token; `None` slots are listed in `free`.
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    kernels: Kernels,
    read_chunk: Vec<u8>,
    /// Frames one connection must be sent after its current read (echoes, pongs, close).
    replies: Vec<u8>,
    /// Publishes read this turn, encoded back to back, and who published them.
    batch: Vec<u8>,
    batch_from: Option<usize>,
    /// Frames other loops published, gathered for one write per socket.
    incoming: Vec<u8>,
    /// Connections to drop at the end of the turn.
    dead: Vec<usize>,
}

impl EventLoop {
    fn new(
        poll: Poll,
        listener: std::net::TcpListener,
        inbox: Receiver<Arc<[u8]>>,
        others: Vec<Mailbox>,
    ) -> io::Result<EventLoop> {
        let mut listener = TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(EventLoop {
            poll,
            listener,
            inbox,
            others,
            conns: Vec::new(),
            free: Vec::new(),
            kernels: Kernels::detect(),
            read_chunk: vec![0; READ_CHUNK_BYTES],
            replies: Vec::new(),
            batch: Vec::new(),
            batch_from: None,
            incoming: Vec::new(),
            dead: Vec::new(),
        })
    }

    fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            match self.poll.poll(&mut events, None) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
            for event in &events {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => self.deliver_inbox(),
                    Token(slot) => {
                        if event.is_readable() || event.is_read_closed() {
                            self.on_readable(slot);
                        }
                        if event.is_writable() {
                            self.on_writable(slot);
                        }
                    }
                }
            }
            self.flush_batch();
            self.drop_dead();
        }
    }

    fn accept(&mut self) {
        loop {
            let mut stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    eprintln!("accept: {err}");
                    return;
                }
            };
            let _ = stream.set_nodelay(true);
            let slot = self.free.pop().unwrap_or(self.conns.len());
            let interest = Interest::READABLE | Interest::WRITABLE;
            if let Err(err) = self
                .poll
                .registry()
                .register(&mut stream, Token(slot), interest)
            {
                eprintln!("register: {err}");
                continue;
            }
            let conn = Conn {
                stream,
                state: State::AwaitRequest,
                unread: Vec::new(),
                pending: Vec::new(),
                fragments: None,
                broken: false,
            };
            match self.conns.get_mut(slot) {
                Some(entry) => *entry = Some(conn),
                None => self.conns.push(Some(conn)),
            }
        }
    }

    fn on_readable(&mut self, slot: usize) {
        let Some(Some(conn)) = self.conns.get_mut(slot) else {
            return;
        };
        // Edge-triggered: read until the socket is empty.
        let mut unread = std::mem::take(&mut conn.unread);
        let mut eof = false;
        loop {
            match conn.stream.read(&mut self.read_chunk) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => unread.extend_from_slice(&self.read_chunk[..n]),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        let used = self.on_bytes(slot, &mut unread);
        unread.drain(..used);
        if !self.replies.is_empty() {
            let replies = std::mem::take(&mut self.replies);
            self.send(slot, &replies);
            self.replies = replies;
            self.replies.clear();
        }
        if unread.is_empty() {
            // An idle connection keeps no buffer.
            unread = Vec::new();
        }
        if let Some(Some(conn)) = self.conns.get_mut(slot) {
            conn.unread = unread;
            if eof {
                conn.broken = true;
            }
            if conn.broken || (conn.state == State::Closing && conn.pending.is_empty()) {
                self.dead.push(slot);
            }
        }
    }

    /// Use the bytes received on `slot`; returns how many were used.
    fn on_bytes(&mut self, slot: usize, bytes: &mut [u8]) -> usize {
        let state = match self.conns.get(slot) {
            Some(Some(conn)) => conn.state,
            _ => return 0,
        };
        match state {
            State::AwaitRequest => {
                let Some(end) = find_request_end(bytes) else {
                    if bytes.len() > MAX_REQUEST_BYTES {
                        self.refuse(slot);
                    }
                    return 0;
                };
                let Some((mode, key)) = parse_request(&bytes[..end]) else {
                    self.refuse(slot);
                    return bytes.len();
                };
                write_switching_protocols(&mut self.replies, key);
                // A subscriber from the moment its 101 is queued, as the protocol requires.
                self.set_state(slot, State::Open(mode));
                end + self.on_frames(slot, mode, &mut bytes[end..])
            }
            State::Open(mode) => self.on_frames(slot, mode, bytes),
            State::Closing => bytes.len(),
        }
    }

    fn set_state(&mut self, slot: usize, state: State) {
        if let Some(Some(conn)) = self.conns.get_mut(slot) {
            conn.state = state;
        }
    }

    /// Parse and act on every complete frame at the front of `bytes`; returns the bytes used.
    fn on_frames(&mut self, slot: usize, mode: Mode, bytes: &mut [u8]) -> usize {
        let cfg = ParseConfig {
            role: Role::Server,
            rsv_allowed: 0,
            max_payload: MAX_PAYLOAD_BYTES,
        };
        let mut used = 0;
        loop {
            let rest = &mut bytes[used..];
            let (header, header_len) = match parse_header(rest, &cfg) {
                Ok(Parsed::Header { header, len }) => (header, len),
                Ok(Parsed::Need(_)) => return used,
                Err(err) => {
                    self.close(slot, &err.close_code().0.to_be_bytes());
                    return bytes.len();
                }
            };
            // At most MAX_PAYLOAD_BYTES, checked by the parser, so it fits in usize.
            let payload_len = usize::try_from(header.payload_len).unwrap_or(usize::MAX);
            let Some(payload) = rest
                .get_mut(header_len..)
                .and_then(|after| after.get_mut(..payload_len))
            else {
                return used;
            };
            if let Some(key) = header.mask_key {
                frame_simd::mask::unmask(&self.kernels, payload, key, 0);
            }
            used += header_len + payload_len;
            let keep_going = match header.opcode {
                Opcode::Ping => {
                    encode_server_frame(&mut self.replies, Opcode::Pong, payload);
                    true
                }
                Opcode::Pong => true,
                Opcode::Close => {
                    // Echo the status code (§5.5.1); the reason is not needed.
                    let code = payload.get(..2).unwrap_or_default().to_vec();
                    self.close(slot, &code);
                    false
                }
                Opcode::Text | Opcode::Binary | Opcode::Continuation => match mode {
                    Mode::Broadcast => {
                        if header.fin && header.opcode == Opcode::Text {
                            if let Some(published) = payload.strip_prefix(PUBLISH_PREFIX) {
                                self.publish(slot, published);
                            }
                        }
                        true
                    }
                    Mode::Echo => self.echo(slot, header.opcode, header.fin, payload),
                },
            };
            if !keep_going {
                return bytes.len();
            }
        }
    }

    /// Echo a data frame, assembling fragmented messages; false if the connection is closing.
    fn echo(&mut self, slot: usize, opcode: Opcode, fin: bool, payload: &[u8]) -> bool {
        let Some(Some(conn)) = self.conns.get_mut(slot) else {
            return false;
        };
        match (opcode, conn.fragments.as_mut()) {
            (Opcode::Continuation, Some((_, assembled))) => assembled.extend_from_slice(payload),
            (Opcode::Continuation, None) | (_, Some(_)) => {
                // §5.4: a continuation needs a started message, a new message needs none open.
                self.close(slot, &frame_simd::CloseCode::PROTOCOL_ERROR.0.to_be_bytes());
                return false;
            }
            (_, None) if fin => {
                encode_server_frame(&mut self.replies, opcode, payload);
                return true;
            }
            (_, None) => conn.fragments = Some((opcode, payload.to_vec())),
        }
        if fin {
            if let Some((opcode, assembled)) = conn.fragments.take() {
                encode_server_frame(&mut self.replies, opcode, &assembled);
            }
        }
        true
    }

    /// Queue a close frame with `payload` and stop reading from `slot`.
    fn close(&mut self, slot: usize, payload: &[u8]) {
        encode_server_frame(&mut self.replies, Opcode::Close, payload);
        self.set_state(slot, State::Closing);
    }

    /// Answer a request that is not a WebSocket upgrade with 400 and close.
    fn refuse(&mut self, slot: usize) {
        self.replies.extend_from_slice(
            b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        );
        self.set_state(slot, State::Closing);
    }

    /// Add one publish to this turn's batch, starting a new batch if another connection
    /// published the current one (a publisher never receives its own messages).
    fn publish(&mut self, slot: usize, payload: &[u8]) {
        if self.batch_from != Some(slot) {
            self.flush_batch();
            self.batch_from = Some(slot);
        }
        encode_server_frame(&mut self.batch, Opcode::Text, payload);
    }

    /// Send the batch to every local subscriber but its publisher, and to the other loops.
    fn flush_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        if !self.others.is_empty() {
            let shared: Arc<[u8]> = Arc::from(self.batch.as_slice());
            for mailbox in &self.others {
                if mailbox.sender.send(Arc::clone(&shared)).is_ok() {
                    let _ = mailbox.waker.wake();
                }
            }
        }
        let batch = std::mem::take(&mut self.batch);
        self.send_to_subscribers(&batch, self.batch_from);
        self.batch = batch;
        self.batch.clear();
        self.batch_from = None;
    }

    /// Frames published on other loops: everything queued goes out in one write per socket.
    fn deliver_inbox(&mut self) {
        // This turn's own publishes first, so each source's order is kept.
        self.flush_batch();
        let mut incoming = std::mem::take(&mut self.incoming);
        while let Ok(frames) = self.inbox.try_recv() {
            incoming.extend_from_slice(&frames);
        }
        self.send_to_subscribers(&incoming, None);
        incoming.clear();
        self.incoming = incoming;
    }

    fn send_to_subscribers(&mut self, frames: &[u8], except: Option<usize>) {
        for slot in 0..self.conns.len() {
            let subscribed = matches!(
                &self.conns[slot],
                Some(conn) if conn.state == State::Open(Mode::Broadcast) && !conn.broken
            );
            if subscribed && except != Some(slot) {
                self.send(slot, frames);
            }
        }
    }

    /// Write `bytes` to `slot` now if nothing is pending, and keep what the socket refuses.
    fn send(&mut self, slot: usize, bytes: &[u8]) {
        let Some(Some(conn)) = self.conns.get_mut(slot) else {
            return;
        };
        if !conn.pending.is_empty() {
            if conn.pending.len() + bytes.len() > MAX_PENDING_BYTES {
                conn.broken = true;
                self.dead.push(slot);
            } else {
                conn.pending.extend_from_slice(bytes);
            }
            return;
        }
        match write_some(&mut conn.stream, bytes) {
            Ok(written) => conn.pending.extend_from_slice(&bytes[written..]),
            Err(_) => {
                conn.broken = true;
                self.dead.push(slot);
            }
        }
    }

    fn on_writable(&mut self, slot: usize) {
        let Some(Some(conn)) = self.conns.get_mut(slot) else {
            return;
        };
        if conn.pending.is_empty() {
            return;
        }
        match write_some(&mut conn.stream, &conn.pending) {
            Ok(written) => {
                conn.pending.drain(..written);
                if conn.pending.is_empty() {
                    // An idle connection keeps no buffer.
                    conn.pending = Vec::new();
                    if conn.state == State::Closing {
                        self.dead.push(slot);
                    }
                }
            }
            Err(_) => {
                conn.broken = true;
                self.dead.push(slot);
            }
        }
    }

    fn drop_dead(&mut self) {
        while let Some(slot) = self.dead.pop() {
            if let Some(entry) = self.conns.get_mut(slot) {
                if let Some(mut conn) = entry.take() {
                    let _ = self.poll.registry().deregister(&mut conn.stream);
                    self.free.push(slot);
                }
            }
        }
    }
}

/// Write as much of `bytes` as the socket takes now; returns how many it took.
fn write_some(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < bytes.len() {
        match stream.write(&bytes[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        }
    }
    Ok(written)
}

/// Length of the request head including its blank line, once it has all arrived.
fn find_request_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// The mode and `Sec-WebSocket-Key` of a `GET` upgrade request; `None` for anything else.
fn parse_request(head: &[u8]) -> Option<(Mode, &[u8])> {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    let mut request_line = lines.next()?.split(|&b| b == b' ');
    if request_line.next()? != b"GET" {
        return None;
    }
    let path = std::str::from_utf8(request_line.next()?).ok()?;
    let key = lines.find_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = line.split_at(colon);
        name.eq_ignore_ascii_case(b"sec-websocket-key")
            .then(|| value[1..].trim_ascii())
    })?;
    Some((Mode::from_path(path), key))
}

/// Append the 101 answer for `key` (RFC 6455 §4.2.2).
fn write_switching_protocols(out: &mut Vec<u8>, key: &[u8]) {
    let mut sha1 = sha1_smol::Sha1::new();
    sha1.update(key);
    sha1.update(ACCEPT_GUID);
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    base64_simd::STANDARD.encode_append(sha1.digest().bytes(), out);
    out.extend_from_slice(b"\r\n\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_the_rfc_example() {
        // RFC 6455 §1.3.
        let mut out = Vec::new();
        write_switching_protocols(&mut out, b"dGhlIHNhbXBsZSBub25jZQ==");
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 101 "));
        assert!(
            text.ends_with("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"),
            "{text:?}"
        );
    }

    #[test]
    fn parses_path_and_key_of_an_upgrade_request() {
        let head = b"GET /broadcast HTTP/1.1\r\nHost: x\r\nSEC-WEBSOCKET-KEY:  abc== \r\n\r\n";
        assert_eq!(parse_request(head), Some((Mode::Broadcast, &b"abc=="[..])));
        let head = b"GET /echo HTTP/1.1\r\nsec-websocket-key: k\r\n\r\n";
        assert_eq!(parse_request(head), Some((Mode::Echo, &b"k"[..])));
    }

    #[test]
    fn refuses_requests_that_are_not_upgrades() {
        assert_eq!(
            parse_request(b"POST /echo HTTP/1.1\r\nSec-WebSocket-Key: k\r\n\r\n"),
            None
        );
        assert_eq!(
            parse_request(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"),
            None
        );
    }

    #[test]
    fn finds_the_end_of_the_request_head() {
        assert_eq!(find_request_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
        assert_eq!(find_request_end(b"GET / HTTP/1.1\r\n"), None);
    }
}
