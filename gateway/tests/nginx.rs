//! The deployment files in `deploy/` checked against the real programs: the nginx site
//! (`deploy/nginx/gateway.conf`) proxies WebSockets and health checks to a running gateway, and
//! the example TOML file (`deploy/config/gateway.toml.example`) is accepted by the gateway.
//!
//! nginx runs from a wrapper `nginx.conf` in a temporary directory (pid, logs and temp paths
//! there) that includes a rendering of the site file in which only three kinds of line change:
//! the upstream `server 127.0.0.1:8080` line points at the test's gateway, the `listen 443 ssl`
//! lines become one plain loopback `listen`, and the `ssl_*` lines are dropped (the test has no
//! certificate and its client speaks plain TCP). The locations, headers, timeouts and buffering
//! are used as written. nginx is killed by its own PID when the test ends.

mod common;

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::ws::Ws;
use common::{free_port, gateway, http_exchange, op, Client, GatewayExt};
use serde_json::json;

/// The site file as shipped.
const SITE: &str = include_str!("../../deploy/nginx/gateway.conf");
/// How long nginx may take to open its port.
const NGINX_START: Duration = Duration::from_secs(5);

/// A scratch directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "gateway-nginx-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create the nginx scratch directory");
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The site file with the upstream pointed at `upstream`, one plain `listen` on `listen`, and
/// no `ssl_*` lines. Panics if a line the rendering relies on is missing, so the shipped file
/// and this test cannot drift apart silently.
fn render_site(upstream: SocketAddr, listen: SocketAddr) -> String {
    let mut out = String::new();
    let (mut upstreams, mut listens, mut ssl) = (0, 0, 0);
    for line in SITE.lines() {
        let t = line.trim_start();
        let indent = &line[..line.len() - t.len()];
        if let Some(rest) = t.strip_prefix("server 127.0.0.1:8080") {
            upstreams += 1;
            out.push_str(&format!("{indent}server {upstream}{rest}\n"));
        } else if t.starts_with("listen ") && t.contains("443") {
            listens += 1;
            if listens == 1 {
                out.push_str(&format!("{indent}listen {listen};\n"));
            }
        } else if t.starts_with("ssl_") {
            ssl += 1;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert_eq!(upstreams, 1, "one `server 127.0.0.1:8080` upstream line");
    assert!(listens >= 1, "a `listen 443 ssl` line");
    assert!(
        ssl >= 2,
        "the site terminates TLS (ssl_certificate and its key)"
    );
    out
}

/// nginx serving the rendered site in front of one gateway; killed by its PID when dropped.
struct Nginx {
    child: Option<Child>,
    addr: SocketAddr,
    dir: TempDir,
}

impl Nginx {
    /// Write the wrapper and the site into a scratch directory.
    fn configure(upstream: SocketAddr) -> (TempDir, SocketAddr, PathBuf) {
        let dir = TempDir::new();
        let listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let d = dir.path().display().to_string();
        fs::write(
            dir.path().join("gateway.conf"),
            render_site(upstream, listen),
        )
        .expect("write the rendered site");
        // As root the master would hand the workers to `nobody`, who cannot enter the scratch
        // directory; the workers stay root instead.
        let user = if is_root() { "user root;\n" } else { "" };
        let wrapper = format!(
            "{user}worker_processes 1;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n\
             \x20   access_log {d}/access.log;\n\
             \x20   client_body_temp_path {d}/client_body;\n\
             \x20   proxy_temp_path {d}/proxy;\n\
             \x20   fastcgi_temp_path {d}/fastcgi;\n\
             \x20   uwsgi_temp_path {d}/uwsgi;\n\
             \x20   scgi_temp_path {d}/scgi;\n\
             \x20   include {d}/gateway.conf;\n\
             }}\n"
        );
        let conf = dir.path().join("nginx.conf");
        fs::write(&conf, wrapper).expect("write the nginx wrapper config");
        (dir, listen, conf)
    }

    /// Start nginx in the foreground and wait (bounded) until its port accepts.
    fn start(upstream: SocketAddr) -> Nginx {
        let (dir, addr, conf) = Nginx::configure(upstream);
        let child = nginx_command(dir.path(), &conf)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx (install it: apt-get install nginx)");
        let mut nginx = Nginx {
            child: Some(child),
            addr,
            dir,
        };
        let deadline = Instant::now() + NGINX_START;
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return nginx;
            }
            let exited = nginx
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() >= deadline {
                panic!(
                    "nginx did not listen on {addr} within {NGINX_START:?} (exit {exited:?}); \
                     error log:\n{}",
                    nginx.error_log()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn error_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let master = child.id();
            // The workers are the master's children; note their PIDs before the master goes
            // (orphans would be handed to init and could no longer be told apart).
            let workers = children_of(master);
            // SIGTERM is nginx's fast shutdown: the master stops its workers, then exits.
            let _ = Command::new("kill")
                .args(["-TERM", &master.to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                thread::sleep(Duration::from_millis(10));
            }
            // Whatever is left is killed by its own PID.
            let _ = child.kill();
            let _ = child.wait();
            for pid in workers {
                if Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                }
            }
        }
    }
}

/// The nginx processes whose parent is `master` (its workers).
fn children_of(master: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let ppid = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))
            .and_then(|v| v.trim().parse::<u32>().ok());
        let name = status.lines().find_map(|l| l.strip_prefix("Name:"));
        if ppid == Some(master) && name.is_some_and(|n| n.trim() == "nginx") {
            pids.push(pid);
        }
    }
    pids
}

/// `nginx -p <dir> -e <dir>/error.log -c <conf>`: nothing outside the scratch directory.
fn nginx_command(dir: &Path, conf: &Path) -> Command {
    let mut cmd = Command::new(nginx_binary());
    cmd.arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(conf);
    cmd
}

/// nginx lives in /usr/sbin, which is not on every user's PATH.
fn nginx_binary() -> PathBuf {
    let sbin = PathBuf::from("/usr/sbin/nginx");
    if sbin.exists() {
        sbin
    } else {
        PathBuf::from("nginx")
    }
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next().map(|u| u == "0"))
        })
        .unwrap_or(false)
}

#[test]
fn nginx_accepts_the_site_config() {
    let (dir, _, conf) = Nginx::configure("127.0.0.1:8080".parse().unwrap());
    let out = nginx_command(dir.path(), &conf)
        .arg("-t")
        .stdin(Stdio::null())
        .output()
        .expect("run nginx -t (install it: apt-get install nginx)");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "nginx -t refused the site:\n{text}");
    assert!(text.contains("syntax is ok"), "{text}");
}

#[test]
fn echo_round_trip_through_nginx() {
    let gw = gateway().start();
    let nginx = Nginx::start(gw.addr());
    let mut c = Client::open(nginx.addr);
    c.send_text(b"through the proxy");
    c.expect_frame(op::TEXT, b"through the proxy");
    let big = vec![b'x'; 200_000];
    c.send_binary(&big);
    c.expect_frame(op::BINARY, &big);
    c.close_cleanly();
}

#[test]
fn publish_reaches_a_subscriber_through_nginx() {
    let gw = gateway().start();
    let nginx = Nginx::start(gw.addr());
    let mut sub = Ws::open(nginx.addr, "");
    sub.subscribe("news");
    let mut publ = Ws::open(nginx.addr, "");
    publ.ok(json!({"op":"publish","channel":"news","data":{"n":1},"id":"p1"}));
    let m = sub.next();
    assert_eq!(m["type"], "message", "{m}");
    assert_eq!(m["channel"], "news", "{m}");
    assert_eq!(m["data"]["n"], 1, "{m}");
}

#[test]
fn idle_connection_survives_the_proxy_timeouts() {
    let gw = gateway().start();
    let nginx = Nginx::start(gw.addr());
    let mut c = Client::open(nginx.addr);
    c.expect_silence(Duration::from_secs(3));
    c.send_text(b"after a quiet spell");
    c.expect_frame(op::TEXT, b"after a quiet spell");
    c.close_cleanly();
}

#[test]
fn healthz_through_nginx_and_no_backend_api() {
    let gw = gateway().start();
    let nginx = Nginx::start(gw.addr());
    let resp = http_exchange(
        nginx.addr,
        b"GET /healthz HTTP/1.1\r\nHost: push.example.com\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(resp.status, 200, "{:?}\n{}", resp, nginx.error_log());
    // The backend API has its own listener, which the site never proxies to.
    let resp = http_exchange(
        nginx.addr,
        b"GET /metrics HTTP/1.1\r\nHost: push.example.com\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(resp.status, 404, "{resp:?}");
}

#[test]
fn the_example_toml_file_is_accepted() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/config/gateway.toml.example"
    );
    // The harness puts `--listen 127.0.0.1:0 --api-listen 127.0.0.1:0` first: flags win over
    // the file's addresses. The driver is the suite's (GATEWAY_DRIVER wins over the file too).
    let gw = gateway().args(["--config", path]).start();
    let resp = http_exchange(
        gw.api_addr(),
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(resp.status, 200, "{resp:?}\n{}", gw.stderr());
    gw.assert_serves();
}

/// The unit as shipped, with `ExecStart` pointed at the binary under test (systemd-analyze
/// checks that the command exists and is executable).
fn rendered_unit(dir: &Path) -> PathBuf {
    let unit = include_str!("../../deploy/systemd/gateway.service");
    assert!(
        unit.contains("ExecStart=/usr/local/bin/gateway "),
        "ExecStart line"
    );
    let text = unit.replace(
        "ExecStart=/usr/local/bin/gateway ",
        &format!("ExecStart={} ", env!("CARGO_BIN_EXE_gateway")),
    );
    let path = dir.join("gateway.service");
    fs::write(&path, text).expect("write the unit");
    path
}

#[test]
fn systemd_accepts_the_unit() {
    let dir = TempDir::new();
    let unit = rendered_unit(dir.path());
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .stdin(Stdio::null())
        .output()
        .expect("run systemd-analyze (install it: apt-get install systemd)");
    let err = String::from_utf8_lossy(&out.stderr);
    // An unknown key or a bad value is only a warning (exit 0) for systemd: any output fails.
    assert!(
        out.status.success() && err.trim().is_empty(),
        "systemd-analyze verify: {}\n{err}",
        out.status
    );
}

/// A `10s` / `30s` / `2min` / `1m` value in seconds (the forms the shipped files use).
fn seconds(v: &str) -> u64 {
    let v = v.trim().trim_matches('"');
    let (num, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len()));
    let n: u64 = num.parse().unwrap_or_else(|_| panic!("a number in {v:?}"));
    match unit {
        "" | "s" => n,
        "m" | "min" => n * 60,
        _ => panic!("unit of {v:?}"),
    }
}

#[test]
fn the_unit_waits_longer_than_the_drain() {
    let unit = include_str!("../../deploy/systemd/gateway.service");
    let toml = include_str!("../../deploy/config/gateway.toml.example");
    let value = |text: &str, key: &str| -> u64 {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("{key} in the file"));
        seconds(line[key.len()..].trim_start_matches([' ', '=']))
    };
    let stop = value(unit, "TimeoutStopSec");
    let drain = value(toml, "drain-timeout");
    let close = value(toml, "close-timeout");
    assert!(
        stop > drain + close,
        "TimeoutStopSec={stop}s must exceed drain-timeout {drain}s plus close-timeout {close}s"
    );
    assert!(
        unit.contains("KillSignal=SIGTERM"),
        "the drain starts on SIGTERM"
    );
    assert!(
        unit.contains("LimitNOFILE="),
        "a descriptor limit for many connections"
    );
}
