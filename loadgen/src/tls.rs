//! `wss://`: a client connection's byte stream with TLS (rustls) between the socket and the
//! sans-IO WebSocket client, and the client configuration made from `--ca-file`.
//!
//! [`Stream`] reads and writes like the socket it wraps, so the worker loop is the same for
//! `ws://` and `wss://`: a read returns plaintext (or `WouldBlock`), a write takes plaintext and
//! sends the records it makes. The TLS handshake happens on the first writes and reads, so it is
//! inside each connection's connect latency (intended start to the `101`). Ciphertext the socket
//! did not take stays in the session (at most rustls's 64 KiB buffer limit; past it a write
//! answers `WouldBlock`) and goes out with [`Stream::flush_tls`] on the next writable event.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use mio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

/// A client configuration trusting the CA certificates in `ca_file` (and nothing else), TLS 1.2
/// and 1.3, ALPN `http/1.1`, no session resumption.
pub fn client_config(ca_file: &Path) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca_file)
        .with_context(|| format!("--ca-file {}", ca_file.display()))?;
    for cert in certs {
        let cert = cert.with_context(|| format!("--ca-file {}: bad PEM", ca_file.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("--ca-file {}: not a CA certificate", ca_file.display()))?;
    }
    if roots.is_empty() {
        bail!("--ca-file {}: no CERTIFICATE in it", ca_file.display());
    }
    // ring, as in the gateway (see its TLS module for why).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Every connection makes a full handshake: what a storm after a server restart costs (the
    // gateway's session cache is in memory), and what a capacity plan must assume.
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(cfg))
}

/// A connection's socket, with a TLS session for `wss://`.
#[derive(Debug)]
pub struct Stream {
    /// The TCP socket (registered with the worker's poll).
    pub tcp: TcpStream,
    tls: Option<Box<ClientConnection>>,
}

impl Stream {
    /// A plain `ws://` stream.
    pub fn plain(tcp: TcpStream) -> Stream {
        Stream { tcp, tls: None }
    }

    /// No TLS: a read that returns less than asked has emptied the socket (a TLS read may
    /// have left records in the session).
    pub fn is_plain(&self) -> bool {
        self.tls.is_none()
    }

    /// A `wss://` stream to `server_name`, checked against `cfg`'s roots.
    pub fn tls(tcp: TcpStream, cfg: &Arc<ClientConfig>, server_name: &str) -> io::Result<Stream> {
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let conn = ClientConnection::new(Arc::clone(cfg), name).map_err(io::Error::other)?;
        Ok(Stream {
            tcp,
            tls: Some(Box::new(conn)),
        })
    }

    /// Send the ciphertext the session holds; `WouldBlock` leaves the rest for the next
    /// writable event.
    pub fn flush_tls(&mut self) -> io::Result<()> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(());
        };
        while tls.wants_write() {
            match tls.write_tls(&mut self.tcp) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// `recv(2)` on a plain socket, issued directly (rustix's raw system call): the C library's
/// `recv` wraps each call in the bookkeeping of a thread-cancellation point, which for a small
/// message cost loadgen about as much as parsing it.
fn plain_recv(tcp: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match rustix::net::recv(tcp, &mut *buf, rustix::net::RecvFlags::empty()) {
            Ok((n, _)) => return Ok(n),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// `send(2)` on a plain socket, issued directly as [`plain_recv`] is; `MSG_NOSIGNAL`, as the
/// standard library's socket writes, so a reset peer is an error and not a `SIGPIPE`.
fn plain_send(tcp: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    loop {
        match rustix::net::send(tcp, buf, rustix::net::SendFlags::NOSIGNAL) {
            Ok(n) => return Ok(n),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.tls.is_none() {
            return plain_recv(&self.tcp, buf);
        }
        loop {
            let Some(tls) = self.tls.as_mut() else {
                return Ok(0);
            };
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed without close_notify: an end of stream like any other.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            match tls.read_tls(&mut self.tcp) {
                Ok(0) => return Ok(0),
                Ok(_) => {
                    tls.process_new_packets().map_err(tls_error)?;
                    // Handshake messages this produced (and, once it completes, the request
                    // written before it).
                    self.flush_tls()?;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.tls.is_none() {
            return plain_send(&self.tcp, buf);
        }
        self.flush_tls()?;
        let Some(tls) = self.tls.as_mut() else {
            return Ok(0);
        };
        if tls.wants_write() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = tls.writer().write(buf)?;
        self.flush_tls()?;
        if n == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_tls()
    }
}
