//! `gateway check`: the pre-deploy report. The configuration is loaded and validated by the same
//! code the server runs at start ([`Config::load_from`]); this module only lays out what was
//! decided: every setting with its value and source, and the limits they imply on this host.
//!
//! The memory estimate multiplies the connection limit by the idle cost per connection that the
//! `idle` scenario measures (`loadgen idle` reading the server's RSS, recorded in
//! `bench/RESULTS.md`); it covers the process, not the kernel's own per-socket memory.

use std::fmt::Write as _;

use crate::config::{Config, DriverChoice, Sources};

/// Process memory per idle connection with the epoll driver, in bytes: `bench/RESULTS.md`,
/// "Idle memory" (334 B at 1 thread, 344 B at 2; the larger is used).
pub const IDLE_BYTES_EPOLL: u64 = 344;
/// The same with the io_uring driver (720-932 B there; the larger is used).
pub const IDLE_BYTES_URING: u64 = 932;

/// What the host allows, found the way the server finds it at start.
#[derive(Clone, Copy, Debug)]
pub struct Host {
    /// The open-files limit after raising the soft limit to the hard one (as at start).
    pub nofile: u64,
    /// The shards would run on io_uring.
    pub uring: bool,
}

/// The report's text, and the problems that should stop a deploy (empty: none).
pub fn report(cfg: &Config, sources: &Sources, host: Host) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut problems = Vec::new();
    let width = sources
        .0
        .iter()
        .map(|(f, _)| f.len() + 2)
        .max()
        .unwrap_or(0);
    let _ = writeln!(out, "settings (value, and where it came from):");
    for (flag, source) in &sources.0 {
        let value = cfg
            .effective(flag)
            .unwrap_or_else(|| "(not shown)".to_owned());
        let _ = writeln!(
            out,
            "  {:<width$}  {value}  [{}]",
            format!("--{flag}"),
            source.label()
        );
    }

    let derived = crate::config::connections_for_descriptors(host.nofile);
    let limit = cfg.connection_limit(host.nofile);
    let (per_conn, driver) = if host.uring {
        (IDLE_BYTES_URING, "io_uring")
    } else {
        (IDLE_BYTES_EPOLL, "epoll")
    };
    let _ = writeln!(out, "\nlimits on this host:");
    let _ = writeln!(
        out,
        "  open files: {} (RLIMIT_NOFILE, soft limit raised to the hard one as at start)",
        host.nofile
    );
    let _ = writeln!(
        out,
        "  connections per process: {limit} ({})",
        match cfg.max_connections {
            Some(_) => "--max-connections".to_owned(),
            None => format!(
                "the open-files limit less {} kept for listeners and wakers",
                crate::config::FD_RESERVE
            ),
        }
    );
    let bytes = per_conn.saturating_mul(limit as u64);
    let _ = writeln!(
        out,
        "  memory at {limit} idle connections: about {} ({per_conn} B each with the {driver} \
         driver, measured by the idle scenario in bench/RESULTS.md; the kernel's socket memory \
         comes on top)",
        human_bytes(bytes)
    );
    let _ = writeln!(
        out,
        "  driver: {driver}{}",
        match cfg.driver {
            DriverChoice::Auto => " (--driver auto)",
            _ => "",
        }
    );
    if limit > derived {
        problems.push(format!(
            "--max-connections {limit} is more than the open-files limit allows ({derived} after \
             {} reserved descriptors): accepts would fail for lack of descriptors first; raise \
             LimitNOFILE / ulimit -n or lower --max-connections",
            crate::config::FD_RESERVE
        ));
    }
    let api = cfg.api.listen;
    if api.port() != 0
        && cfg
            .listen
            .iter()
            .any(|l| l.port() == api.port() && overlaps(*l, api))
    {
        problems.push(format!(
            "--api-listen {api} is also a client listener address (--listen): the API must have \
             its own address, or the start fails to bind"
        ));
    }
    if cfg.broker.uses_tls() {
        if let Err(e) = crate::broker::tls::client_config(cfg.broker_ca.as_deref()) {
            problems.push(format!("--broker-ca: {e}: the start would fail"));
        }
    }
    (out, problems)
}

/// Two addresses on one port collide when either is the unspecified address or they are equal.
fn overlaps(a: std::net::SocketAddr, b: std::net::SocketAddr) -> bool {
    a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified()
}

/// `bytes` with a binary unit (`6.5 MiB`).
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn load(args: &[&str]) -> (Config, Sources) {
        let mut argv = vec![OsString::from("gateway")];
        argv.extend(args.iter().map(OsString::from));
        Config::load_from(argv).expect("valid")
    }

    #[test]
    fn limits_follow_the_descriptor_limit_and_the_measured_cost() {
        let (cfg, sources) = load(&["--threads", "2"]);
        let host = Host {
            nofile: 1064,
            uring: false,
        };
        let (text, problems) = report(&cfg, &sources, host);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(text.contains("connections per process: 1000 ("), "{text}");
        // 1000 x 344 B.
        assert!(
            text.contains("about 335.9 KiB (344 B each with the epoll"),
            "{text}"
        );
        assert!(text.contains("--threads"));
        assert!(text.contains("  2  [flag]"), "{text}");
    }

    #[test]
    fn more_connections_than_descriptors_is_a_problem() {
        let (cfg, sources) = load(&["--max-connections", "5000"]);
        let host = Host {
            nofile: 1024,
            uring: true,
        };
        let (text, problems) = report(&cfg, &sources, host);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("--max-connections 5000"));
        assert!(
            text.contains("932 B each with the io_uring driver"),
            "{text}"
        );
    }

    #[test]
    fn a_tls_broker_whose_cas_cannot_be_read_is_a_problem() {
        let host = Host {
            nofile: 1024,
            uring: false,
        };
        let tls = ["--broker", "rediss://127.0.0.1:6380", "--broker-ca"];
        let (cfg, sources) = load(&[&tls[..], &["/nonexistent/ca.pem"]].concat());
        let (text, problems) = report(&cfg, &sources, host);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("--broker-ca: cannot read"),
            "{problems:?}"
        );
        assert!(text.contains("/nonexistent/ca.pem  [flag]"), "{text}");
        let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/src/conn/testdata/ca.pem");
        let (cfg, sources) = load(&[&tls[..], &[ca]].concat());
        let (_, problems) = report(&cfg, &sources, host);
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn an_api_address_shared_with_clients_is_a_problem() {
        let host = Host {
            nofile: 1024,
            uring: false,
        };
        for (listen, api) in [
            ("127.0.0.1:9000", "127.0.0.1:9000"),
            (":9000", "127.0.0.1:9000"),
        ] {
            let (cfg, sources) = load(&["--listen", listen, "--api-listen", api]);
            let (_, problems) = report(&cfg, &sources, host);
            assert_eq!(problems.len(), 1, "{listen} {api}: {problems:?}");
        }
        let (cfg, sources) = load(&[
            "--listen",
            "127.0.0.1:9000",
            "--api-listen",
            "127.0.0.2:9000",
        ]);
        assert!(report(&cfg, &sources, host).1.is_empty());
    }

    #[test]
    fn bytes_read_as_binary_units() {
        assert_eq!(human_bytes(10), "10 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(6_857_728), "6.5 MiB");
    }
}
