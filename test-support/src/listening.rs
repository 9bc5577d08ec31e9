//! The lines a server prints on stdout once it accepts connections: `listening on <addr>` per
//! client listener and, for the gateway, `api listening on <addr>` for the backend API. Nothing
//! else belongs on stdout (logs go to stderr), so any other line fails the start.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::Process;

/// Which announcements a start waits for.
#[derive(Clone, Copy, Debug)]
pub struct Expect {
    /// `listening on` lines.
    pub listeners: usize,
    /// Whether an `api listening on` line comes too.
    pub api: bool,
}

/// The addresses a server announced.
#[derive(Clone, Debug, Default)]
pub struct Listening {
    /// Client listeners, in the order they were printed.
    pub addrs: Vec<SocketAddr>,
    /// The backend API listener.
    pub api: Option<SocketAddr>,
}

impl Listening {
    fn has(&self, expect: Expect) -> bool {
        self.addrs.len() >= expect.listeners && (self.api.is_some() || !expect.api)
    }

    fn record(&mut self, line: &str) {
        let (api, addr) = match line.strip_prefix("api listening on ") {
            Some(addr) => (true, addr),
            None => match line.strip_prefix("listening on ") {
                Some(addr) => (false, addr),
                None => panic!("unexpected stdout line {line:?}: logs belong on stderr"),
            },
        };
        let addr = addr
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("bad address in stdout line {line:?}: {e}"));
        if api {
            self.api = Some(addr);
        } else {
            self.addrs.push(addr);
        }
    }
}

impl Process {
    /// Read stdout until the announcements in `expect` have all arrived. Panics, with the exit
    /// status and stderr, if they do not within `timeout` or stdout shows another line.
    pub fn await_listening(&mut self, expect: Expect, timeout: Duration) -> Listening {
        let deadline = Instant::now() + timeout;
        let mut got = Listening::default();
        while !got.has(expect) {
            match self.next_line(deadline) {
                Some(line) => got.record(&line),
                None => {
                    let exited = self.exit_status();
                    panic!(
                        "{} did not print {} `listening on` line(s){} within {timeout:?} (got \
                         {got:?}, exit status {exited:?}); stderr:\n{}",
                        self.name(),
                        expect.listeners,
                        if expect.api {
                            " and its `api listening on` line"
                        } else {
                            ""
                        },
                        self.stderr()
                    );
                }
            }
        }
        got
    }
}
