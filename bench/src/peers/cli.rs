//! The start-up contract every peer shares: `--listen ADDR --threads N`, one `listening on
//! <addr>` line on stdout once connections are accepted, errors on stderr. SIGTERM and SIGINT
//! keep their default action (the process ends), which is all the harness needs.

use std::fmt;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::process::ExitCode;

/// Parsed command line of a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Args {
    /// Address to listen on; port 0 lets the kernel choose (the chosen one is announced).
    pub listen: SocketAddr,
    /// Worker threads (event loops) the server may use.
    pub threads: usize,
}

/// A command line the peers do not understand.
#[derive(Debug, PartialEq, Eq)]
pub enum CliError {
    /// `--help` was asked for: not a failure, print the usage.
    Help,
    /// A flag that no peer takes.
    UnknownFlag(String),
    /// A flag given without its value.
    MissingValue(&'static str),
    /// `--listen` is not `IP:PORT`.
    BadListen(String),
    /// `--threads` is not a whole number of at least 1.
    BadThreads(String),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Help => f.write_str("help requested"),
            Self::UnknownFlag(flag) => write!(f, "unknown flag {flag:?}"),
            Self::MissingValue(flag) => write!(f, "{flag} needs a value"),
            Self::BadListen(value) => write!(f, "--listen {value:?} is not IP:PORT"),
            Self::BadThreads(value) => write!(f, "--threads {value:?} is not a number >= 1"),
        }
    }
}

impl std::error::Error for CliError {}

/// Usage text shared by all peers.
pub const USAGE: &str = "usage: PEER [--listen IP:PORT] [--threads N]
  --listen IP:PORT  address to accept WebSocket connections on (default 127.0.0.1:0)
  --threads N       worker threads / event loops (default 1)
Paths: /echo echoes messages, /broadcast relays `pub:` messages to every other connection.
Prints `listening on <addr>` on stdout once ready; SIGTERM or SIGINT stops it.";

impl Args {
    /// Parse the flags (without the program name). Both `--flag value` and `--flag=value`.
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Args, CliError> {
        let mut parsed = Args {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            threads: 1,
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
                None => (arg, None),
            };
            let mut value = |name: &'static str| {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or(CliError::MissingValue(name))
            };
            match flag.as_str() {
                "--listen" => {
                    let v = value("--listen")?;
                    parsed.listen = v.parse().map_err(|_| CliError::BadListen(v))?;
                }
                "--threads" => {
                    let v = value("--threads")?;
                    parsed.threads = match v.parse::<usize>() {
                        Ok(n) if n >= 1 => n,
                        _ => return Err(CliError::BadThreads(v)),
                    };
                }
                "-h" | "--help" => return Err(CliError::Help),
                _ => return Err(CliError::UnknownFlag(flag)),
            }
        }
        Ok(parsed)
    }
}

/// Print the one line the harness waits for, and flush it past any pipe buffering.
pub fn announce(addr: SocketAddr) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "listening on {addr}")?;
    out.flush()
}

/// The `main` of every peer binary: parse the flags, run `serve`, report failures on stderr.
pub fn main(name: &str, serve: fn(&Args) -> io::Result<()>) -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(CliError::Help) => {
            println!("{name}: {USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("{name}: {err}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match serve(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{name}: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The multi-thread tokio runtime the tokio-based peers run on, with `threads` workers.
pub fn tokio_runtime(threads: usize) -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_io()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, CliError> {
        Args::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn defaults_to_an_ephemeral_loopback_port_and_one_thread() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.listen, SocketAddr::from(([127, 0, 0, 1], 0)));
        assert_eq!(args.threads, 1);
    }

    #[test]
    fn takes_flags_with_separate_or_inline_values() {
        let args = parse(&["--listen", "127.0.0.1:9001", "--threads=2"]).unwrap();
        assert_eq!(args.listen, SocketAddr::from(([127, 0, 0, 1], 9001)));
        assert_eq!(args.threads, 2);
    }

    #[test]
    fn refuses_bad_values_and_unknown_flags() {
        assert_eq!(
            parse(&["--threads", "0"]),
            Err(CliError::BadThreads("0".into()))
        );
        assert_eq!(
            parse(&["--listen", "nowhere"]),
            Err(CliError::BadListen("nowhere".into()))
        );
        assert_eq!(
            parse(&["--listen"]),
            Err(CliError::MissingValue("--listen"))
        );
        assert_eq!(
            parse(&["--port", "1"]),
            Err(CliError::UnknownFlag("--port".into()))
        );
    }
}
