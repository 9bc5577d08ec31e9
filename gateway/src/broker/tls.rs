//! TLS to the broker (`rediss://`, NATS's `tls://`): the client configuration (the CAs of `--broker-ca`, or the
//! system's), the server name a URL's host gives, and the non-blocking write and read of a
//! connection through rustls, the same contract as [`super::socket`]'s plain ones (write until
//! the socket would block, read until it would block, `Err` when the connection is lost).
//!
//! The broker's certificate is verified against those CAs and the URL's host name or IP
//! address; TLS 1.2 and 1.3 only. A failed handshake or a certificate that does not verify
//! fails the connection with rustls's reason, which the transports log as a warning.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::socket::{self, MAX_UNSENT_BYTES};

/// Where the system keeps its CA bundle, by distribution; the first that exists is read when
/// `--broker-ca` is not given (`SSL_CERT_FILE` first, as OpenSSL does).
const SYSTEM_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// What a connection to one TLS broker needs: the shared configuration and the name its
/// certificate must carry.
#[derive(Clone, Debug)]
pub struct Secure {
    pub config: Arc<ClientConfig>,
    pub name: ServerName<'static>,
}

impl Secure {
    /// A new client session for one connection.
    pub fn session(&self) -> Result<ClientConnection, String> {
        ClientConnection::new(Arc::clone(&self.config), self.name.clone())
            .map_err(|e| format!("TLS: {e}"))
    }
}

/// The client configuration trusting the CAs in PEM file `ca`, or the system's bundle.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let file = match ca {
        Some(path) => path.to_owned(),
        None => system_bundle().ok_or_else(|| {
            format!(
                "no system CA bundle ({} or SSL_CERT_FILE): give the broker's CA with --broker-ca",
                SYSTEM_BUNDLES.join(", ")
            )
        })?,
    };
    let shown = file.display();
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&file)
        .map_err(|e| format!("cannot read the CA file {shown}: {e}"))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("bad PEM in the CA file {shown}: {e}"))?;
        // A bundle may hold a certificate rustls cannot use (an old algorithm): skip it.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(format!("no usable CA certificate in {shown}"));
    }
    // ring, as for the client listeners (see `conn::tls`).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn system_bundle() -> Option<std::path::PathBuf> {
    let from_env = std::env::var_os("SSL_CERT_FILE").map(std::path::PathBuf::from);
    from_env
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(std::path::PathBuf::from))
        .find(|p| p.is_file())
}

/// The name the certificate of the broker at `addr` (`host:port`, `[v6]:port`) must carry:
/// its DNS name or IP address.
pub fn server_name(addr: &str) -> Result<ServerName<'static>, String> {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned())
        .map_err(|e| format!("{host:?} cannot be checked against a certificate: {e}"))
}

/// Write what `out` holds to `s`, through `tls` when the connection has a session (else as
/// [`socket::flush`] does). With one, what rustls took leaves `out` and its records are written
/// until the socket would block. `Err` when the connection broke, or when more than
/// [`MAX_UNSENT_BYTES`] stay unsent.
pub fn flush(
    s: &mut TcpStream,
    tls: Option<&mut ClientConnection>,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let Some(tls) = tls else {
        return socket::flush(s, out);
    };
    loop {
        // Before the handshake ends rustls keeps plaintext up to its buffer limit.
        let took = if out.is_empty() {
            0
        } else {
            tls.writer().write(out)?
        };
        out.drain(..took);
        if !tls.wants_write() {
            if took == 0 {
                break;
            }
            continue;
        }
        match tls.write_tls(s) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if out.len() > MAX_UNSENT_BYTES {
        return Err(io::Error::other("the broker does not read what it is sent"));
    }
    Ok(())
}

/// Read from `s` until the socket would block, through `tls` when the connection has a
/// session (else as [`socket::fill`] does): with one, records are read and what they carry
/// goes through `buf` into `inb`. `Err` at end of stream (the peer's `close_notify` included),
/// on an error, or when the records do not verify (`TLS: ` and rustls's reason).
pub fn fill(
    s: &mut TcpStream,
    tls: Option<&mut ClientConnection>,
    buf: &mut [u8],
    inb: &mut Vec<u8>,
) -> io::Result<()> {
    let Some(tls) = tls else {
        return socket::fill(s, buf, inb);
    };
    loop {
        let last = match tls.read_tls(s) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => false,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        tls.process_new_packets()
            .map_err(|e| io::Error::other(format!("TLS: {e}")))?;
        loop {
            match tls.reader().read(buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => inb.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if last {
            return Ok(());
        }
    }
}

/// Why a connection whose requests went unanswered is given up: the handshake, when `tls` is
/// a session that never finished it (a plain port named in a TLS URL), else the `PING`.
pub fn stall_reason(tls: Option<&ClientConnection>) -> &'static str {
    match tls.is_some_and(|t| t.is_handshaking()) {
        true => "TLS: no answer to the handshake (is the port a TLS port?)",
        false => "no answer to PING",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_name_is_the_host_of_the_address() {
        let name = |a: &str| server_name(a).map(|n| n.to_str().into_owned());
        assert_eq!(name("cache.internal:6380").as_deref(), Ok("cache.internal"));
        assert_eq!(name("127.0.0.1:6380").as_deref(), Ok("127.0.0.1"));
        assert_eq!(name("[::1]:6380").as_deref(), Ok("::1"));
        assert!(server_name("bad host:6380").is_err());
    }

    #[test]
    fn a_ca_file_must_hold_a_usable_certificate() {
        let dir = std::env::temp_dir().join(format!("broker-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        let e = client_config(Some(&empty)).unwrap_err();
        assert!(e.contains("no usable CA certificate"), "{e}");
        let e = client_config(Some(&dir.join("missing.pem"))).unwrap_err();
        assert!(e.contains("cannot read the CA file"), "{e}");
        let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/conn/testdata/ca.pem");
        assert!(client_config(Some(&ca)).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
