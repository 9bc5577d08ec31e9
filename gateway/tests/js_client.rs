//! The JavaScript client library of `clients/js/`: served by the gateway at
//! `/client/gateway-client.js` (and its `.d.ts`), and its `node:test` suite run in Node against a
//! real gateway (two shards, history on `room:` and a short one on `small:`, an API key for the
//! tests' publishes and disconnects, a token secret for the tokens they sign). `ws` comes from
//! `tests/interop/node_modules`, installed by `scripts/test.sh`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::redis::Redis;
use common::{gateway, run_bounded, run_node_suite, Client, Gateway, Response};

/// Bound for the whole Node run (each of its waits gives up after 10 s).
const NODE_TIMEOUT: Duration = Duration::from_secs(120);
const API_KEY: &str = "js-client-test-key";
/// Signs the tokens the suite makes for itself (anonymous connections stay allowed).
const TOKEN_SECRET: &str = "js-client-test-token-secret";

fn client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../clients/js")
}

fn start() -> Gateway {
    gateway()
        .args([
            "--threads",
            "2",
            "--api-key",
            API_KEY,
            "--token-secret",
            TOKEN_SECRET,
            "--history",
            "room:=100/10m",
            "--history",
            "small:=3/10m",
        ])
        .start()
}

fn get(gw: &Gateway, path: &str) -> Response {
    let mut c = Client::connect(gw.addr());
    c.send_raw(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes());
    c.read_response()
}

#[test]
fn library_and_types_are_served_as_in_the_repository() {
    let gw = start();
    for (path, file, content_type) in [
        (
            "/client/gateway-client.js",
            "gateway-client.js",
            "text/javascript; charset=utf-8",
        ),
        (
            "/client/gateway-client.d.ts",
            "gateway-client.d.ts",
            "application/typescript; charset=utf-8",
        ),
    ] {
        let r = get(&gw, path);
        assert_eq!(r.status, 200, "{path}: {r:#?}");
        assert_eq!(r.header("Content-Type"), Some(content_type), "{path}");
        assert_eq!(
            r.header("X-Content-Type-Options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"), "{path}");
        let on_disk = std::fs::read(client_dir().join(file)).expect("the library's file");
        assert_eq!(r.body, on_disk, "{path} is the file of clients/js");
    }
    assert_eq!(get(&gw, "/client/").status, 404);
}

#[test]
fn node_suite_passes_against_a_real_gateway() {
    let gw = start();
    let dir = client_dir();
    let mut files: Vec<String> = std::fs::read_dir(dir.join("test"))
        .expect("clients/js/test")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".test.js"))
        .map(|name| format!("test/{name}"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no test files in clients/js/test");

    let mut cmd = Command::new("node");
    // The bearer-subprotocol tests need a WebSocket that behaves like a browser's: Node's own,
    // built in from Node 22 and behind a flag in Node 20 and 21.
    let has_native = Command::new("node")
        .args([
            "-e",
            "process.exit(typeof WebSocket === 'function' ? 0 : 1)",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !has_native {
        cmd.env("NODE_OPTIONS", "--experimental-websocket");
    }
    cmd.current_dir(&dir)
        .arg("--test")
        .args(&files)
        .env("GATEWAY_WS_URL", format!("ws://{}/ws", gw.addr()))
        .env("GATEWAY_API_URL", format!("http://{}", gw.api_addr()))
        .env("GATEWAY_API_KEY", API_KEY)
        .env("GATEWAY_TOKEN_SECRET", TOKEN_SECRET)
        .env(
            "GATEWAY_NODE_MODULES",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop"),
        );
    let (code, out, err) = run_bounded(cmd, NODE_TIMEOUT);
    assert!(
        code == Some(0),
        "node --test failed (exit {code:?})\nstdout:\n{out}\nstderr:\n{err}\n\
         gateway stderr:\n{}",
        gw.stderr()
    );
    // The TAP summary: every test passed, none was skipped or left to do.
    let count = |what: &str| -> usize {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("# {what} "))?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no `# {what}` line in the TAP output:\n{out}"))
    };
    println!(
        "node --test: {} tests, {} passed",
        count("tests"),
        count("pass")
    );
    assert!(count("pass") > 0);
    assert_eq!(count("pass"), count("tests"), "{out}");
    for none in ["fail", "skipped", "todo", "cancelled"] {
        assert_eq!(count(none), 0, "{none}:\n{out}");
    }
}

#[test]
fn a_client_given_two_nodes_recovers_on_the_second_when_it_loses_the_first() {
    // Two nodes on one Redis: the history of `room:` is Redis's, one numbering for both.
    let redis = Redis::start();
    let nodes: Vec<Gateway> = [1u16, 2]
        .iter()
        .map(|id| {
            let gw = gateway()
                .args(["--threads", "2", "--api-key", API_KEY])
                .args(["--history", "room:=100/10m"])
                .args(["--broker", &redis.url(), "--node-id", &id.to_string()])
                .start();
            redis.wait_numsub(&format!("gw:n:{id}"), 1);
            gw
        })
        .collect();
    let (a, b) = (&nodes[0], &nodes[1]);
    let env = [
        ("GATEWAY_WS_URL", format!("ws://{}/ws", a.addr())),
        ("GATEWAY_WS_URL_B", format!("ws://{}/ws", b.addr())),
        ("GATEWAY_API_URL", format!("http://{}", b.api_addr())),
        ("GATEWAY_API_KEY", API_KEY.to_owned()),
        ("GATEWAY_TOKEN_SECRET", TOKEN_SECRET.to_owned()),
        (
            "GATEWAY_NODE_MODULES",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop").to_owned(),
        ),
    ];
    let dir = client_dir().join("test");
    run_node_suite(b, &dir, ".nodes.js", &env, NODE_TIMEOUT);
}
