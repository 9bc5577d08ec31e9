//! The HTML report renders in headless Chromium: the DOM holds the three SVG plots with data, and
//! a screenshot is saved under the target's temporary directory.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{loadgen, temp_dir, Mode, Server};

/// Run Chromium headless with `extra` args on `url`; returns stdout. Killed after 60 s.
fn chromium(profile: &std::path::Path, extra: &[&str], url: &str) -> String {
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1200,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium is installed by scripts/test.sh");
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("chromium did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn html_report_renders_its_plots_in_headless_chromium() {
    let server = Server::start(Mode::Echo);
    let url = server.url("/echo");
    let dir = temp_dir("html");
    let html = dir.join("report.html");
    let out = loadgen(&[
        "echo",
        "--url",
        &url,
        "-c",
        "4",
        "--rate",
        "300",
        "--warmup",
        "0s",
        "--duration",
        "2s",
        "--quiet",
        "--no-pin",
        "--threads",
        "2",
        "--html",
        html.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = format!("file://{}", html.display());

    let dom = chromium(&dir.join("profile-dom"), &["--dump-dom"], &page);
    for id in [
        "latency-distribution",
        "rate-over-time",
        "latency-over-time",
        "connections-over-time",
    ] {
        let at = dom
            .find(&format!("<svg id=\"{id}\""))
            .unwrap_or_else(|| panic!("plot {id} missing"));
        let svg = &dom[at..at + dom[at..].find("</svg>").unwrap()];
        assert!(svg.contains("<polyline"), "plot {id} has no line");
    }
    assert!(dom.contains("id=\"summary\""));
    assert!(!dom.contains("parsererror"), "the page did not parse");

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("loadgen-report.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &dir.join("profile-shot"),
        &[&format!("--screenshot={}", shot.display())],
        &page,
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.len() > 10_000 && png.starts_with(b"\x89PNG"),
        "screenshot is not a PNG"
    );
}
