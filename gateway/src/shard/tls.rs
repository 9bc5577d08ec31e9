//! The shard's side of TLS: connections accepted on a TLS listener get a [`TlsSession`]; their
//! reads are decrypted here before the connection (or API connection) sees them, and every write
//! to them (the turn's output, the outbox) goes through [`send`], which encrypts.
//!
//! Memory and backpressure: ciphertext is decrypted from the shard's read buffer into the shard's
//! plaintext buffer (one per shard, allocated only when a TLS listener exists); outgoing plaintext
//! stays in the connection's outbox (shared frames stay shared) until the session has room, and
//! the session keeps at most `MAX_PENDING_TLS_BYTES` of ciphertext, so `--max-outbound-bytes`
//! counts and limits exactly what it does without TLS.

use std::io::{self, IoSlice};
use std::time::Instant;

use tracing::debug;

use crate::conn::tls::{looks_like_http, Received, TlsServer, TlsSession, PLAIN_HTTP_REFUSAL};
use crate::conn::ConnId;
use crate::driver::Driver;

use super::{Shard, READ_BUFFER_BYTES};

/// The shard's TLS configuration (per listener) and its plaintext buffer.
#[derive(Default)]
pub(super) struct ShardTls {
    /// Per listener index: its TLS configuration, `None` for plain listeners.
    servers: Vec<Option<TlsServer>>,
    /// Decrypted bytes of one read land here (empty until a TLS listener is configured).
    plain: Box<[u8]>,
}

/// Write `iov` to connection `id`: straight to the socket, or encrypted through `tls`. Returns
/// the plaintext bytes taken (a socket's write contract) and the bytes that went on the wire.
pub(super) fn send<D: Driver>(
    driver: &mut D,
    id: ConnId,
    tls: Option<&mut TlsSession>,
    iov: &[IoSlice<'_>],
) -> (io::Result<usize>, usize) {
    match tls {
        None => {
            let r = driver.send(id, iov);
            let wire = *r.as_ref().unwrap_or(&0);
            (r, wire)
        }
        Some(t) => t.send(iov, |wire| driver.send(id, wire)),
    }
}

impl<D: Driver> Shard<D> {
    /// Serve listener `listener` (its index in the driver) with TLS configured by `server`.
    pub fn with_tls(mut self, listener: usize, server: TlsServer) -> Shard<D> {
        if self.tls.servers.len() <= listener {
            self.tls.servers.resize(listener + 1, None);
        }
        self.tls.servers[listener] = Some(server);
        if self.tls.plain.is_empty() {
            self.tls.plain = vec![0u8; READ_BUFFER_BYTES].into_boxed_slice();
        }
        self
    }

    /// A new session for a connection accepted on `listener`: `Ok(None)` for a plain listener.
    pub(super) fn tls_session(
        &self,
        listener: usize,
    ) -> Result<Option<Box<TlsSession>>, rustls::Error> {
        match self.tls.servers.get(listener) {
            Some(Some(server)) => Ok(Some(Box::new(server.session()?))),
            _ => Ok(None),
        }
    }

    /// `n` bytes of ciphertext were read for TLS connection `id` into the read buffer: decrypt
    /// them and feed the plaintext to the connection, a record's worth at a time.
    pub(super) fn tls_read(&mut self, id: ConnId, n: usize, now: Instant) {
        // The ciphertext stays in its buffer while the plaintext buffer stands in as the read
        // buffer the feeding code reads from.
        let cipher = std::mem::replace(&mut self.rbuf, std::mem::take(&mut self.tls.plain));
        let mut at = 0;
        let mut first = true;
        while let Some(tls) = self.conns.get_mut(id).and_then(|e| e.tls.as_mut()) {
            let input = cipher.get(at..n).unwrap_or(&[]);
            if first && tls.is_handshaking() && looks_like_http(input) {
                self.refuse_plain_http(id);
                break;
            }
            first = false;
            let was_handshaking = tls.is_handshaking();
            let (used, received) = tls.on_ciphertext(input);
            if was_handshaking && !tls.is_handshaking() {
                self.metrics.tls_handshakes.add(1);
            }
            at += used;
            let fed = self.tls_drain_plaintext(id, now);
            if let Received::Refused(error) = received {
                debug!(conn = %id, %error, "TLS refused");
                self.metrics.tls_refused.add(1);
                self.tls_flush(id);
                self.remove(id, "TLS refused");
                break;
            }
            // Handshake messages (or alerts) the input produced.
            if !self.tls_flush(id) || at >= n || (used == 0 && !fed) {
                break;
            }
        }
        self.tls.plain = std::mem::replace(&mut self.rbuf, cipher);
    }

    /// Hand every decrypted byte waiting in `id`'s session to the connection (through the read
    /// buffer, which holds plaintext during [`Shard::tls_read`]); false if there was none.
    fn tls_drain_plaintext(&mut self, id: ConnId, now: Instant) -> bool {
        let mut fed = false;
        while let Some(tls) = self.conns.get_mut(id).and_then(|e| e.tls.as_mut()) {
            let m = tls.read_plaintext(&mut self.rbuf);
            if m == 0 {
                break;
            }
            fed = true;
            self.feed_read(id, m, now);
        }
        fed
    }

    /// Write whatever ciphertext `id`'s session holds; false if the connection broke (and is
    /// gone).
    pub(super) fn tls_flush(&mut self, id: ConnId) -> bool {
        let Some(tls) = self.conns.get_mut(id).and_then(|e| e.tls.as_mut()) else {
            return true;
        };
        let driver = &mut self.driver;
        match tls.flush(|wire| driver.send(id, wire)) {
            Ok(n) => {
                self.metrics.bytes_out.add(n as u64);
                true
            }
            Err(_) => {
                self.remove(id, "write error");
                false
            }
        }
    }

    /// A plain-HTTP request arrived on a TLS port: answer 400 in plain text and close.
    fn refuse_plain_http(&mut self, id: ConnId) {
        self.metrics.tls_refused.add(1);
        let _ = self.driver.send(id, &[IoSlice::new(PLAIN_HTTP_REFUSAL)]);
        self.driver.shutdown_write(id);
        self.remove(id, "plain HTTP on a TLS port");
    }
}
