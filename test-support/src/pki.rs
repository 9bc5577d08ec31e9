//! A test certificate authority made with the `openssl` CLI in a scratch directory: a P-256 CA
//! and leaf certificates it signs for `localhost` and 127.0.0.1, as PEM files for the gateway's
//! `--tls-cert`/`--tls-key` and for clients' trust stores. Removed when dropped.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A CA (`ca.pem`, `ca.key`) and the leaves issued so far (`<name>.pem`, `<name>.key`).
#[derive(Debug)]
pub struct TestCa {
    dir: PathBuf,
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl TestCa {
    /// A fresh CA and one leaf named `leaf`.
    pub fn new() -> TestCa {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "test-ca-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the CA's scratch directory");
        let ca = TestCa { dir };
        #[rustfmt::skip]
        ca.openssl(&[
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=gateway test CA",
        ]);
        fs::write(
            ca.path("leaf.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             extendedKeyUsage=serverAuth\n",
        )
        .expect("write the extensions file");
        ca.issue("leaf");
        ca
    }

    /// Run `openssl` in the CA's directory; panics with its output if it fails.
    pub fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .current_dir(&self.dir)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run openssl (installed by scripts/test.sh)");
        assert!(
            out.status.success(),
            "openssl {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Issue `<name>.pem` / `<name>.key` (subject `CN=<name>`), signed by the CA.
    pub fn issue(&self, name: &str) {
        let (key, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        #[rustfmt::skip]
        self.openssl(&[
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", &key, "-out", &csr, "-subj", &format!("/CN={name}"),
        ]);
        #[rustfmt::skip]
        self.openssl(&[
            "x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", &pem, "-days", "2", "-extfile", "leaf.ext",
        ]);
    }

    /// The scratch directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A file in the scratch directory.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// [`TestCa::path`] as a string, for command lines.
    pub fn path_str(&self, file: &str) -> String {
        self.path(file).display().to_string()
    }

    /// `--tls-cert <leaf.pem> --tls-key <leaf.key>`.
    pub fn gateway_args(&self) -> [String; 4] {
        [
            "--tls-cert".into(),
            self.path_str("leaf.pem"),
            "--tls-key".into(),
            self.path_str("leaf.key"),
        ]
    }
}

impl Default for TestCa {
    fn default() -> TestCa {
        TestCa::new()
    }
}
