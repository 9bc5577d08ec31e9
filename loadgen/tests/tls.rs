//! loadgen over `wss://` against the real gateway with `--tls-cert`: every echo counted on both
//! sides, every connection a completed TLS handshake, and a server certificate from another CA
//! refused by every connection with a reason.

mod common;

use common::gateway::GatewayExt;
use common::{loadgen, loadgen_json, num, temp_dir};
use test_support::{gateway_binary, Driver, Gateway, TestCa};

fn tls_gateway(ca: &TestCa) -> Gateway {
    Gateway::builder(gateway_binary())
        .default_driver(Driver::Auto)
        .threads(2)
        .args(ca.gateway_args())
        .args(["--log-level", "warn"])
        .start()
}

fn wss_url(gw: &Gateway) -> String {
    format!("wss://localhost:{}/echo", gw.addr().port())
}

#[test]
fn echo_over_wss_counts_every_message_and_handshake() {
    let ca = TestCa::new();
    let gw = tls_gateway(&ca);
    let dir = temp_dir("wss-echo");
    #[rustfmt::skip]
    let r = loadgen_json(
        &[
            "echo", "--url", &wss_url(&gw), "--ca-file", &ca.path_str("ca.pem"),
            "-c", "16", "-w", "4", "-s", "1000", "--warmup", "200ms", "--duration", "1s",
        ],
        &dir.join("r.json"),
    );
    let sent = num(&r, "/results/all/sent");
    assert!(sent > 100, "only {sent} sent");
    assert_eq!(num(&r, "/results/all/received"), sent);
    assert_eq!(num(&r, "/results/all/connected"), 16);
    assert_eq!(num(&r, "/results/all/dropped"), 0);
    assert_eq!(gw.metric("gateway_messages_in_total"), sent);
    assert_eq!(gw.metric("gateway_upgrades_total"), 16);
    let ok = gw.metric("gateway_tls_handshakes_total{result=\"ok\"}");
    assert_eq!(ok, 16, "every connection made one TLS handshake");
}

#[test]
fn a_certificate_from_another_ca_fails_every_connection_with_a_reason() {
    let (ca, other) = (TestCa::new(), TestCa::new());
    let gw = tls_gateway(&ca);
    #[rustfmt::skip]
    let out = loadgen(&[
        "connect", "--url", &wss_url(&gw), "--ca-file", &other.path_str("ca.pem"),
        "-c", "4", "--quiet", "--no-pin", "--threads", "1",
    ]);
    assert!(!out.status.success(), "no connection can succeed");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("4 of 4 failed"), "{err}");
    assert!(err.contains("invalid peer certificate"), "{err}");
    assert_eq!(gw.metric("gateway_upgrades_total"), 0);

    let out = loadgen(&["connect", "--url", &wss_url(&gw), "-c", "1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--ca-file"), "{err}");
}
