//! `gateway check` over the real binary: the effective settings with the source of each (flag,
//! environment, file, default), the limits from the open-files limit and the measured idle cost,
//! and a non-zero exit with the same message a start would print for a bad configuration.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::run_bounded;

const LIMIT: Duration = Duration::from_secs(20);
const GATEWAY: &str = env!("CARGO_BIN_EXE_gateway");

/// A config file under this test's temporary folder.
fn config_file(name: &str, text: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("check");
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

/// `gateway ARGS` with a clean `GATEWAY_*` environment plus `env`; (exit code, stdout, stderr).
fn gateway(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(GATEWAY);
    for (k, _) in std::env::vars() {
        if k.starts_with("GATEWAY_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args).envs(env.iter().copied());
    run_bounded(cmd, LIMIT)
}

/// The line of `--flag` in the settings table.
fn line<'a>(out: &'a str, flag: &str) -> &'a str {
    let want = format!("--{flag} ");
    out.lines()
        .find(|l| l.trim_start().starts_with(&want))
        .unwrap_or_else(|| panic!("no line for --{flag} in:\n{out}"))
}

#[test]
fn settings_show_value_and_source() {
    let file = config_file(
        "good.toml",
        "max-frame-bytes = 4096\nping_interval = \"7s\"\nthreads = 9\n\
         api-key = \"file-key-secret\"\n",
    );
    let file = file.to_str().expect("UTF-8 path");
    let (code, out, err) = gateway(
        &["check", "--config", file, "--threads", "3"],
        &[
            ("GATEWAY_MAX_HEADERS", "12"),
            ("GATEWAY_ADMIN_SECRET", "env-admin-secret"),
        ],
    );
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    for (flag, value, source) in [
        ("threads", "3", "flag"),
        ("max-headers", "12", "environment"),
        ("max-frame-bytes", "4096", "file"),
        ("ping-interval", "7s", "file"),
        ("pong-timeout", "10s", "default"),
        ("config", file, "flag"),
        ("api-key", "(set)", "file"),
        ("admin-secret", "(set)", "environment"),
    ] {
        let l = line(&out, flag);
        assert!(
            l.contains(&format!("  {value}  [{source}]")),
            "--{flag}: want {value} from {source}, got {l:?}"
        );
    }
    assert!(
        !out.contains("file-key-secret") && !out.contains("env-admin-secret"),
        "{out}"
    );
    assert!(out.trim_end().ends_with("configuration OK"), "{out}");
}

#[test]
fn limits_come_from_the_open_files_limit_and_the_measured_idle_cost() {
    // The soft limit is raised to the hard one, as at start: set both.
    let script =
        format!("ulimit -Sn 1064 && ulimit -Hn 1064 && exec {GATEWAY} check --driver epoll");
    let mut cmd = Command::new("bash");
    cmd.args(["-c", &script]);
    let (code, out, err) = run_bounded(cmd, LIMIT);
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("open files: 1064 "), "{out}");
    assert!(
        out.contains("connections per process: 1000 (the open-files limit less 64"),
        "{out}"
    );
    // 1000 x 344 B, the epoll idle cost from bench/RESULTS.md.
    assert!(
        out.contains(
            "memory at 1000 idle connections: about 335.9 KiB (344 B each with the epoll driver"
        ),
        "{out}"
    );

    // More connections than descriptors: the server would start, and fail under load.
    let script = format!(
        "ulimit -Sn 1064 && ulimit -Hn 1064 && \
         exec {GATEWAY} check --driver epoll --max-connections 5000"
    );
    let mut cmd = Command::new("bash");
    cmd.args(["-c", &script]);
    let (code, out, err) = run_bounded(cmd, LIMIT);
    assert_eq!(code, Some(1), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("connections per process: 5000 (--max-connections)"),
        "{out}"
    );
    assert!(
        err.contains(
            "problem: --max-connections 5000 is more than the open-files limit allows (1000"
        ),
        "{err}"
    );
}

#[test]
fn a_bad_configuration_fails_with_the_message_a_start_prints() {
    let unknown = config_file("unknown.toml", "max-frame-byte = 10\n");
    let bad_duration = config_file("duration.toml", "close-timeout = \"soon\"\n");
    let unknown = unknown.to_str().expect("UTF-8");
    let bad_duration = bad_duration.to_str().expect("UTF-8");
    for (args, needle) in [
        (vec!["--config", unknown], "max-frame-byte"),
        (vec!["--config", bad_duration], "close-timeout"),
        (
            vec!["--config", "/nonexistent/gateway.toml"],
            "cannot read config file",
        ),
        (
            vec!["--threads", "0"],
            "--threads must be between 1 and 254",
        ),
        (vec!["--require-token"], "needs --token-secret"),
        (vec!["--log-level", "info,[bad"], "bad --log-level"),
    ] {
        let mut check = vec!["check"];
        check.extend(&args);
        let (code, out, err) = gateway(&check, &[]);
        assert_eq!(
            code,
            Some(2),
            "check {args:?}: stdout:\n{out}\nstderr:\n{err}"
        );
        assert!(err.contains(needle), "check {args:?}: {err}");
        let message = err
            .trim()
            .strip_prefix("gateway check: ")
            .unwrap_or_else(|| panic!("check {args:?}: {err}"));
        // A start with the same settings refuses with the same words (and never listens).
        let mut start = args.clone();
        start.extend(["--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"]);
        let (code, _, start_err) = gateway(&start, &[]);
        assert_eq!(code, Some(2), "start {args:?}: {start_err}");
        assert!(
            start_err.contains(message),
            "start {args:?} says {start_err:?}, check says {message:?}"
        );
    }
    // A malformed flag is clap's usage error, exit 2, as at start.
    let (code, _, err) = gateway(&["check", "--listen", "nowhere"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--listen"), "{err}");
}

#[test]
fn an_api_address_shared_with_the_clients_is_refused() {
    let (code, _, err) = gateway(
        &[
            "check",
            "--listen",
            "127.0.0.1:9555",
            "--api-listen",
            "127.0.0.1:9555",
        ],
        &[],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("--api-listen 127.0.0.1:9555 is also a client listener address"),
        "{err}"
    );
}

#[test]
fn a_nats_broker_is_shown_with_its_port_and_never_its_secret() {
    let (code, out, err) = gateway(&["check", "--broker", "nats://127.0.0.1:4333"], &[]);
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    let l = line(&out, "broker");
    assert!(l.contains("  nats://127.0.0.1:4333  [flag]"), "{l:?}");
    let (code, out, err) = gateway(&["check"], &[("GATEWAY_BROKER", "nats://bus")]);
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    let l = line(&out, "broker");
    assert!(l.contains("  nats://bus:4222  [environment]"), "{l:?}");
    let (code, out, err) = gateway(&["check"], &[("GATEWAY_BROKER", "nats://gw:pw-s3cret@bus")]);
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    let l = line(&out, "broker");
    assert!(
        l.contains("  nats://gw:***@bus:4222  [environment]"),
        "{l:?}"
    );
    assert!(
        !out.contains("s3cret") && !err.contains("s3cret"),
        "{out}{err}"
    );
    let (code, out, err) = gateway(&["check", "--broker", "nats://gw:pw-s3cret%zz@bus"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--broker") && err.contains("password"),
        "{err}"
    );
    assert!(
        !out.contains("s3cret") && !err.contains("s3cret"),
        "{out}{err}"
    );
}
