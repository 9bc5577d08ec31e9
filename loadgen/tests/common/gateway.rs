//! The real gateway binary, started by a test on 127.0.0.1 with free ports and stopped (killed
//! by PID) when dropped.
//!
//! A test of another package cannot name the gateway's binary with `env!("CARGO_BIN_EXE_..")`,
//! so it is found where cargo puts it: next to this test executable's profile directory
//! (`target/<profile>/deps/<test>` -> `target/<profile>/gateway`). When it is missing or older
//! than its sources, the first test that needs it runs `cargo build -p gateway` with the same
//! profile and target directory, under a lock file, so concurrent test processes build once.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};

/// The bearer key the test gateway's API is started with.
pub const API_KEY: &str = "loadgen-test-key";

/// Where cargo put this test's artifacts: the profile directory, its name, the target root and,
/// when cross-compiling, the target triple.
struct Layout {
    profile_dir: PathBuf,
    profile: String,
    target_dir: PathBuf,
    triple: Option<String>,
}

fn layout() -> Layout {
    let exe = std::env::current_exe().expect("the test executable's path");
    // target[/<triple>]/<profile>/deps/<test>
    let deps = exe.parent().expect("deps directory");
    let profile_dir = deps.parent().expect("profile directory").to_path_buf();
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("profile name")
        .to_string();
    let above = profile_dir.parent().expect("target directory");
    // Cargo marks its target root with CACHEDIR.TAG; anything else in between is a triple.
    let (target_dir, triple) = if above.join("CACHEDIR.TAG").exists() {
        (above.to_path_buf(), None)
    } else {
        let triple = above.file_name().and_then(|n| n.to_str()).map(String::from);
        (above.parent().expect("target root").to_path_buf(), triple)
    };
    Layout {
        profile_dir,
        profile,
        target_dir,
        triple,
    }
}

/// The gateway binary of this build, built first when it is missing or older than the sources
/// it is made of.
pub fn binary() -> PathBuf {
    let l = layout();
    let bin = l.profile_dir.join("gateway");
    if is_fresh(&bin) {
        return bin;
    }
    let lock_path = l.profile_dir.join("loadgen-tests-gateway-build.lock");
    let file = std::fs::File::create(&lock_path).expect("create the build lock file");
    // Held until this function returns: one build at a time; the others wait and find it done.
    let _lock = Flock::lock(file, FlockArg::LockExclusive).expect("take the build lock");
    if is_fresh(&bin) {
        return bin;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--quiet", "-p", "gateway", "--bin", "gateway"])
        .arg("--target-dir")
        .arg(&l.target_dir);
    match l.profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    if let Some(triple) = &l.triple {
        cmd.args(["--target", triple]);
    }
    let status = cmd.status().expect("run cargo build -p gateway");
    assert!(status.success(), "cargo build -p gateway failed: {status}");
    assert!(bin.exists(), "cargo built no gateway at {}", bin.display());
    bin
}

/// True when `bin` exists and is newer than every source file cargo recorded for it (its
/// `gateway.d` dep-info). A fresh binary is used as it is: a workspace test run has just built
/// it with the workspace's unified features, which `cargo build -p gateway` would not pick, so
/// building again would replace it under the gateway's own tests running next to these.
fn is_fresh(bin: &Path) -> bool {
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return false;
    };
    let Ok(dep_info) = std::fs::read_to_string(bin.with_extension("d")) else {
        // No record of its sources: trust the binary cargo left there.
        return true;
    };
    dep_info_sources(&dep_info).iter().all(|src| {
        std::fs::metadata(src)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t <= built)
    })
}

/// The source paths of a make-style dep-info file (`target: a.rs b\ c.rs ...`; a space inside
/// a path is escaped with a backslash).
fn dep_info_sources(text: &str) -> Vec<PathBuf> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    // Targets end with a colon (`path:`); the sources follow them.
    words
        .into_iter()
        .filter(|w| !w.ends_with(':'))
        .map(PathBuf::from)
        .collect()
}

/// A running gateway.
pub struct Gateway {
    child: Child,
    /// Client listener (`/echo`, `/broadcast`, `/ws`, `/raw`).
    pub addr: SocketAddr,
    /// Backend API listener (`/api/...`, `/metrics`).
    pub api: SocketAddr,
}

impl Gateway {
    /// Start the gateway with `threads` shards on free loopback ports.
    pub fn start(threads: usize) -> Gateway {
        let mut child = Command::new(binary())
            .args(["--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"])
            .args(["--threads", &threads.to_string(), "--api-key", API_KEY])
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the gateway");
        let stdout = child.stdout.take().expect("gateway stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        // Read the listening lines, then keep draining so the gateway never blocks on stdout.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let (mut addr, mut api) = (None, None);
        while addr.is_none() || api.is_none() {
            let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) else {
                let _ = child.kill();
                panic!("the gateway did not say where it listens within 20 s");
            };
            if let Some(a) = line.strip_prefix("api listening on ") {
                api = a.trim().parse().ok();
            } else if let Some(a) = line.strip_prefix("listening on ") {
                addr = addr.or(a.trim().parse().ok());
            }
        }
        Gateway {
            child,
            addr: addr.expect("client address"),
            api: api.expect("API address"),
        }
    }

    /// `ws://` URL of a path on the client listener.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// `http://` base URL of the API listener.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api)
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A counter from `/metrics` (an unlabelled sample).
    pub fn metric(&self, name: &str) -> u64 {
        let text = http_get(self.api, "/metrics");
        text.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == name).then(|| v.trim().parse::<f64>().ok())?
            })
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}")) as u64
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET a path over a fresh connection and return the body (Content-Length framed).
fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..at]).to_string();
            assert!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .expect("Content-Length");
            if buf.len() >= at + 4 + len {
                return String::from_utf8_lossy(&buf[at + 4..at + 4 + len]).to_string();
            }
        }
        let n = s.read(&mut chunk).expect("read the answer");
        assert!(n > 0, "GET {path}: connection closed early");
        buf.extend_from_slice(&chunk[..n]);
    }
}
