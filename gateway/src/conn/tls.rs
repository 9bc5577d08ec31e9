//! TLS for a connection (`wss://`, `https://`): rustls, sans-IO like the rest of `conn`. It sits
//! between the shard's socket bytes and the [`Conn`](super::Conn) above it:
//!
//! ```text
//! driver read -> [TlsSession::on_ciphertext] -> plaintext -> Conn::on_read
//! Conn output / outbox -> [TlsSession::send] -> ciphertext -> driver send
//! ```
//!
//! Invariants: the session holds at most [`MAX_PENDING_TLS_BYTES`] of ciphertext the socket did
//! not take (past it `send` answers `WouldBlock`, so plaintext stays in the connection's outbox,
//! counted against its limit as without TLS), and at most one record of received plaintext
//! (the shard drains it after every read). [`TlsServer`] holds the certificate and key, read
//! from PEM files at start and again on [`TlsServer::reload`]; a handshake uses whichever pair
//! is current when it starts.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, ServerConnection};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Ciphertext a session keeps for a socket that is not taking it; past this, plaintext waits in
/// the connection's outbox. Four full records: enough for one vectored write of a burst.
pub const MAX_PENDING_TLS_BYTES: usize = 64 * 1024;

/// Slices of one [`TlsSession::send`] call looked at (the outbox offers at most 64 at a time).
const MAX_SEND_SLICES: usize = 64;

/// The ALPN protocol offered: WebSocket over TLS is an HTTP/1.1 upgrade (RFC 6455 §4.1).
pub const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// Why a certificate and key could not be used.
#[derive(Debug)]
pub enum TlsSetupError {
    /// The certificate file is missing, unreadable or not PEM.
    Cert {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        error: String,
    },
    /// The key file is missing, unreadable, not PEM, or holds no key rustls can sign with.
    Key {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        error: String,
    },
    /// The key is not the certificate's key (or the certificate cannot be parsed).
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        error: String,
    },
}

impl fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cert { path, error } => {
                write!(f, "TLS certificate {}: {error}", path.display())
            }
            Self::Key { path, error } => write!(f, "TLS key {}: {error}", path.display()),
            Self::Mismatch { cert, key, error } => write!(
                f,
                "TLS key {} does not belong to certificate {}: {error}",
                key.display(),
                cert.display()
            ),
        }
    }
}

impl std::error::Error for TlsSetupError {}

fn pem_error(e: rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(io) => io.to_string(),
        rustls_pki_types::pem::Error::NoItemsFound => "no PEM item of the expected kind".into(),
        other => format!("bad PEM: {other:?}"),
    }
}

/// Read a certificate chain and its key from PEM files and check that they belong together.
fn load_pair(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsSetupError> {
    let cert_err = |error: String| TlsSetupError::Cert {
        path: cert.to_owned(),
        error,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_err(pem_error(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(pem_error(e)))?;
    if chain.is_empty() {
        return Err(cert_err("no CERTIFICATE in the file".into()));
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsSetupError::Key {
        path: key.to_owned(),
        error: pem_error(e),
    })?;
    let signing = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| TlsSetupError::Key {
            path: key.to_owned(),
            error: e.to_string(),
        })?;
    let pair = CertifiedKey::new(chain, signing);
    pair.keys_match().map_err(|e| TlsSetupError::Mismatch {
        cert: cert.to_owned(),
        key: key.to_owned(),
        error: e.to_string(),
    })?;
    Ok(pair)
}

/// The current certificate and key, swapped whole on reload. Read once per handshake (a
/// handshake costs far more than an uncontended read lock), never per frame.
#[derive(Debug)]
struct CertStore {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let pair = match self.current.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        };
        Some(pair)
    }
}

/// One TLS listener's configuration: the rustls server config (TLS 1.2 and 1.3, ALPN
/// `http/1.1`) and its reloadable certificate. Shared by every shard.
#[derive(Clone)]
pub struct TlsServer {
    config: Arc<ServerConfig>,
    store: Arc<CertStore>,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServer")
            .field("cert", &self.store.cert)
            .field("key", &self.store.key)
            .finish()
    }
}

impl TlsServer {
    /// Read `cert` (a PEM chain, leaf first) and `key` (PKCS#8, PKCS#1 or SEC1 PEM) and build the
    /// server configuration. Fails if either file is missing or unreadable, holds nothing
    /// usable, or the key is not the certificate's.
    pub fn load(cert: &Path, key: &Path) -> Result<TlsServer, TlsSetupError> {
        // ring: a pure Rust and assembly build with no C toolchain beyond `cc`, whose license
        // the policy allows. rustls marks its provider deprecated because ring lacks the
        // post-quantum hybrid key exchange; X25519, P-256 and P-384 remain.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let pair = load_pair(cert, key, &provider)?;
        let store = Arc::new(CertStore {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(Arc::new(pair)),
        });
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsSetupError::Mismatch {
                cert: cert.to_owned(),
                key: key.to_owned(),
                error: e.to_string(),
            })?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&store) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
        Ok(TlsServer {
            config: Arc::new(config),
            store,
            provider,
        })
    }

    /// Read the certificate and key files again; on success new handshakes use them (sessions
    /// already open keep theirs). On failure the current pair stays in use.
    pub fn reload(&self) -> Result<(), TlsSetupError> {
        let pair = load_pair(&self.store.cert, &self.store.key, &self.provider)?;
        match self.store.current.write() {
            Ok(mut guard) => *guard = Arc::new(pair),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(pair),
        }
        Ok(())
    }

    /// The certificate file.
    pub fn cert_path(&self) -> &Path {
        &self.store.cert
    }

    /// A session for one accepted connection.
    pub fn session(&self) -> Result<TlsSession, rustls::Error> {
        let mut conn = ServerConnection::new(Arc::clone(&self.config))?;
        conn.set_buffer_limit(Some(MAX_PENDING_TLS_BYTES));
        Ok(TlsSession { conn })
    }
}

/// What a chunk of ciphertext did.
#[derive(Debug)]
pub enum Received {
    /// Consumed (all of it, or up to the peer's `close_notify`); plaintext may be waiting in
    /// [`TlsSession::read_plaintext`].
    Ok,
    /// The bytes are not TLS, or broke its rules: the alert to send is queued (flush it with
    /// [`TlsSession::flush`]) and the connection must close.
    Refused(rustls::Error),
}

/// One connection's TLS state. See the module doc for where it sits.
pub struct TlsSession {
    conn: ServerConnection,
}

impl fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSession")
            .field("handshaking", &self.conn.is_handshaking())
            .finish()
    }
}

/// A plain-text HTTP request line starts with a method token and a space; a TLS record starts
/// with a content type byte (20..=24), never an ASCII capital letter.
pub fn looks_like_http(first: &[u8]) -> bool {
    let token = first.iter().take_while(|b| b.is_ascii_uppercase()).count();
    (3..=7).contains(&token) && first.get(token) == Some(&b' ')
}

/// What a plain-HTTP request on a TLS port is answered with (in plain text, then the
/// connection closes), as a clear refusal rather than a TLS alert a browser shows as garbage.
pub const PLAIN_HTTP_REFUSAL: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 56\r\n\
Connection: close\r\n\r\n\
This port speaks TLS: use https:// or wss:// to reach it";

/// `io::Write` over the shard's raw send (its driver), for rustls's `write_tls`.
struct Raw<F>(F);

impl<F: FnMut(&[IoSlice<'_>]) -> io::Result<usize>> Write for Raw<F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (self.0)(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        (self.0)(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TlsSession {
    /// Still in the TLS handshake: nothing the connection says can be sent yet.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Ciphertext is waiting for the socket.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// The ALPN protocol agreed on, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// Feed ciphertext the socket delivered: takes a part of `bytes` (at most a few KiB, fewer
    /// when received plaintext must be drained first), decrypts what forms whole records, and
    /// returns how many bytes it took. Call [`TlsSession::read_plaintext`] until it returns 0
    /// after each call, then feed the rest. 0 taken with bytes left: the peer sent
    /// `close_notify` and anything after it is ignored.
    pub fn on_ciphertext(&mut self, bytes: &[u8]) -> (usize, Received) {
        let mut rest = bytes;
        // An error means the received plaintext is full: the caller drains it, then feeds the
        // rest.
        let used = self.conn.read_tls(&mut rest).unwrap_or_default();
        match self.conn.process_new_packets() {
            Ok(_) => (used, Received::Ok),
            Err(e) => (used, Received::Refused(e)),
        }
    }

    /// Move decrypted bytes into `buf`; 0 when none are waiting.
    pub fn read_plaintext(&mut self, buf: &mut [u8]) -> usize {
        self.conn.reader().read(buf).unwrap_or(0)
    }

    /// Write waiting ciphertext (handshake messages, alerts, records) with `raw`, the socket's
    /// send. `WouldBlock` is not an error: the rest waits for the next call.
    pub fn flush<F>(&mut self, mut raw: F) -> io::Result<usize>
    where
        F: FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
    {
        let mut total = 0;
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut Raw(&mut raw)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => total += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }

    /// Encrypt plaintext and write it with `raw`: the same contract as a socket's vectored
    /// write (a count of plaintext bytes taken, or `WouldBlock` while earlier ciphertext still
    /// waits for the socket). Returns the ciphertext bytes written to the socket as well.
    /// Before the handshake completes nothing the connection says can reach the peer, so the
    /// bytes are dropped (only a timeout's `408` can be produced then).
    pub fn send<F>(&mut self, plain: &[IoSlice<'_>], mut raw: F) -> (io::Result<usize>, usize)
    where
        F: FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
    {
        let mut wrote = match self.flush(&mut raw) {
            Ok(n) => n,
            Err(e) => return (Err(e), 0),
        };
        if self.conn.is_handshaking() {
            return (Ok(plain.iter().map(|s| s.len()).sum()), wrote);
        }
        // Encrypt a session's worth, write it, and go on while the socket takes everything: a
        // short count must mean the socket is full (the next writable edge resumes the rest),
        // as it does for a plain socket.
        let mut rest = [IoSlice::new(&[]); MAX_SEND_SLICES];
        let k = plain.len().min(MAX_SEND_SLICES);
        rest[..k].copy_from_slice(&plain[..k]);
        let mut rest = &mut rest[..k];
        let mut taken = 0;
        while !self.conn.wants_write() && rest.iter().any(|s| !s.is_empty()) {
            let n = match self.conn.writer().write_vectored(rest) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => return (Err(e), wrote),
            };
            taken += n;
            IoSlice::advance_slices(&mut rest, n);
            match self.flush(&mut raw) {
                Ok(n) => wrote += n,
                Err(e) => return (Err(e), wrote),
            }
        }
        if taken == 0 && plain.iter().any(|s| !s.is_empty()) {
            return (Err(io::ErrorKind::WouldBlock.into()), wrote);
        }
        (Ok(taken), wrote)
    }

    /// Queue `close_notify` (the TLS end of the conversation; flush it before the FIN).
    pub fn close_notify(&mut self) {
        self.conn.send_close_notify();
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use rustls::{ClientConfig, ClientConnection, RootCertStore};

    use super::*;

    fn testdata(file: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("src/conn/testdata")
            .join(file)
    }

    fn server() -> TlsServer {
        TlsServer::load(&testdata("leaf.pem"), &testdata("leaf.key")).expect("test pair loads")
    }

    fn client() -> ClientConnection {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(testdata("ca.pem")).expect("CA"))
            .expect("root");
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
        let name = "localhost".try_into().expect("name");
        ClientConnection::new(Arc::new(cfg), name).expect("client")
    }

    /// A socket's send that takes at most `room` more bytes, then answers `WouldBlock`.
    fn socket<'a>(
        wire: &'a mut Vec<u8>,
        room: &'a mut usize,
    ) -> impl FnMut(&[IoSlice<'_>]) -> io::Result<usize> + 'a {
        move |iov| {
            if *room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for s in iov {
                let take = s.len().min(*room);
                wire.extend_from_slice(&s[..take]);
                *room -= take;
                n += take;
            }
            Ok(n)
        }
    }

    /// Run the handshake between `c` and `s` in memory.
    fn handshake(c: &mut ClientConnection, s: &mut TlsSession) {
        for _ in 0..10 {
            let mut to_server = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut to_server).expect("client out");
            }
            let mut at = 0;
            while at < to_server.len() {
                let (used, r) = s.on_ciphertext(&to_server[at..]);
                assert!(matches!(r, Received::Ok), "{r:?}");
                at += used;
            }
            let (mut wire, mut room) = (Vec::new(), usize::MAX);
            s.flush(socket(&mut wire, &mut room)).expect("server out");
            c.read_tls(&mut &wire[..]).expect("client in");
            c.process_new_packets().expect("client accepts the server");
            if !c.is_handshaking() && !s.is_handshaking() {
                return;
            }
        }
        panic!("the handshake did not finish");
    }

    /// Everything `c` decrypts from `wire`.
    fn decrypt(c: &mut ClientConnection, mut wire: &[u8]) -> Vec<u8> {
        let mut plain = Vec::new();
        while !wire.is_empty() {
            c.read_tls(&mut wire).expect("client in");
            c.process_new_packets().expect("valid records");
            let _ = c.reader().read_to_end(&mut plain);
        }
        plain
    }

    #[test]
    fn handshake_agrees_on_http_1_1_and_plaintext_round_trips() {
        let mut s = server().session().expect("session");
        let mut c = client();
        assert!(s.is_handshaking());
        handshake(&mut c, &mut s);
        assert_eq!(s.alpn_protocol(), Some(ALPN_HTTP_1_1));
        assert_eq!(c.alpn_protocol(), Some(ALPN_HTTP_1_1));

        c.writer()
            .write_all(b"GET / HTTP/1.1\r\n\r\n")
            .expect("client writes");
        let mut wire = Vec::new();
        c.write_tls(&mut wire).expect("client out");
        let (used, r) = s.on_ciphertext(&wire);
        assert!(matches!(r, Received::Ok) && used == wire.len());
        let mut buf = [0u8; 64];
        let n = s.read_plaintext(&mut buf);
        assert_eq!(&buf[..n], b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(s.read_plaintext(&mut buf), 0);
    }

    #[test]
    fn send_takes_all_while_the_socket_does_and_stops_when_it_is_full() {
        let mut s = server().session().expect("session");
        let mut c = client();
        handshake(&mut c, &mut s);
        let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();

        // A socket that takes everything: all the plaintext goes, in one call.
        let (mut wire, mut room) = (Vec::new(), usize::MAX);
        let (taken, on_wire) = s.send(&[IoSlice::new(&big)], socket(&mut wire, &mut room));
        assert_eq!(taken.expect("taken"), big.len());
        assert_eq!(on_wire, wire.len());
        assert_eq!(decrypt(&mut c, &wire), big);

        // A socket that takes 10,000 bytes: a short count, and ciphertext held (bounded).
        let (mut wire, mut room) = (Vec::new(), 10_000);
        let (taken, _) = s.send(&[IoSlice::new(&big)], socket(&mut wire, &mut room));
        let taken = taken.expect("some taken");
        assert!(taken > 0 && taken <= MAX_PENDING_TLS_BYTES, "{taken}");
        assert!(s.wants_write(), "the rest waits in the session");
        // While it waits, more plaintext is refused: it stays in the caller's outbox.
        let (again, _) = s.send(&[IoSlice::new(b"more")], socket(&mut wire, &mut room));
        assert_eq!(again.expect_err("full").kind(), io::ErrorKind::WouldBlock);
        // The socket drains: the held records go out and the stream is intact.
        let mut room = usize::MAX;
        s.flush(socket(&mut wire, &mut room)).expect("flush");
        assert!(!s.wants_write());
        assert_eq!(decrypt(&mut c, &wire), &big[..taken]);
    }

    #[test]
    fn output_before_the_handshake_is_dropped_not_buffered() {
        let mut s = server().session().expect("session");
        let (mut wire, mut room) = (Vec::new(), usize::MAX);
        let timeout = b"HTTP/1.1 408 Request Timeout\r\n\r\n";
        let (taken, on_wire) = s.send(&[IoSlice::new(timeout)], socket(&mut wire, &mut room));
        assert_eq!(taken.expect("taken"), timeout.len());
        assert_eq!((on_wire, wire.len()), (0, 0));
        assert!(!s.wants_write());
    }

    #[test]
    fn bytes_that_are_not_tls_are_refused_with_an_alert() {
        let mut s = server().session().expect("session");
        let (_, r) = s.on_ciphertext(&[0x17, 3, 3, 0, 5, 1, 2, 3, 4, 5]);
        assert!(matches!(r, Received::Refused(_)), "{r:?}");
        let (mut wire, mut room) = (Vec::new(), usize::MAX);
        s.flush(socket(&mut wire, &mut room)).expect("flush");
        assert_eq!(
            wire,
            [21, 3, 3, 0, 2, 2, 10],
            "a fatal unexpected_message alert"
        );
    }

    #[test]
    fn plain_http_request_lines_are_recognised() {
        for yes in [
            &b"GET / HTTP/1.1"[..],
            b"POST /api",
            b"OPTIONS * HTTP/1.1",
            b"PRI * HTTP/2",
        ] {
            assert!(looks_like_http(yes), "{}", String::from_utf8_lossy(yes));
        }
        for no in [
            &[0x16u8, 3, 1, 0, 200][..],
            b"",
            b"GE",
            b"get / ",
            b"GET/",
            b"X /",
        ] {
            assert!(!looks_like_http(no), "{no:?}");
        }
        let body = PLAIN_HTTP_REFUSAL
            .split(|&b| b == b'\n')
            .next_back()
            .unwrap_or_default();
        assert!(String::from_utf8_lossy(PLAIN_HTTP_REFUSAL).contains("Content-Length: 56"));
        assert_eq!(body.len(), 56);
    }

    #[test]
    fn bad_files_are_named_and_a_failed_reload_keeps_the_pair() {
        let missing = TlsServer::load(&testdata("nope.pem"), &testdata("leaf.key"));
        assert!(matches!(missing, Err(TlsSetupError::Cert { .. })));
        let not_a_key = TlsServer::load(&testdata("leaf.pem"), &testdata("leaf.pem"));
        assert!(matches!(not_a_key, Err(TlsSetupError::Key { .. })));
        let mismatch = TlsServer::load(&testdata("leaf.pem"), &testdata("other.key"));
        let e = mismatch.expect_err("mismatch refused");
        assert!(matches!(e, TlsSetupError::Mismatch { .. }));
        assert!(e.to_string().contains("other.key"), "{e}");

        let dir = std::env::temp_dir().join(format!("gateway-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (cert, key) = (dir.join("c.pem"), dir.join("k.pem"));
        std::fs::copy(testdata("leaf.pem"), &cert).expect("copy");
        std::fs::copy(testdata("leaf.key"), &key).expect("copy");
        let server = TlsServer::load(&cert, &key).expect("loads");
        std::fs::copy(testdata("other.key"), &key).expect("copy");
        assert!(server.reload().is_err(), "a mismatched pair is not taken");
        let mut s = server.session().expect("session");
        handshake(&mut client(), &mut s);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
