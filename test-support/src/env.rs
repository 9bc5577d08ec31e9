//! The network surroundings of a test: a free loopback port, and a client process environment
//! without proxies so that it reaches the loopback server directly.

use std::net::TcpListener;
use std::process::Command;

/// A free loopback port: bound on port 0 and released at once, for a process that binds it
/// right after (another test may take it in between, which is rare enough on loopback).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free loopback port")
}

/// Clear the proxy variables of `cmd`, so a client process reaches the loopback server directly.
pub fn no_proxy(cmd: &mut Command) -> &mut Command {
    for var in [
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        cmd.env_remove(var);
    }
    cmd
}
