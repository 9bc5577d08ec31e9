//! Flags of `bench compare`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// How a comparison is run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Repetitions of every (scenario, threads, server) cell.
    pub reps: usize,
    /// Server thread counts to compare at.
    pub threads: Vec<usize>,
    /// Only these servers (by name), or all.
    pub servers: Option<Vec<String>>,
    /// Only these scenarios (by id), or all.
    pub scenarios: Option<Vec<String>>,
    /// CPU list (taskset syntax) the servers are pinned to.
    pub server_cpus: String,
    /// CPU list loadgen is pinned to.
    pub loadgen_cpus: String,
    /// Threads loadgen runs.
    pub loadgen_threads: usize,
    /// Niceness servers and loadgen run at (below 0 needs CAP_SYS_NICE): on a shared machine,
    /// a share of the cores that other work cannot take.
    pub nice: i32,
    /// Measured part of each run.
    pub duration: Duration,
    /// Unmeasured start of each run.
    pub warmup: Duration,
    /// Build servers and loadgen first.
    pub build: bool,
    /// Run nothing: rebuild the report from the reports kept by an earlier run.
    pub from_raw: bool,
    /// Where RESULTS.md and results/comparison.svg go.
    pub out_dir: PathBuf,
    /// The workspace root.
    pub workspace: PathBuf,
    /// Cargo's target directory (loadgen reports go to its `compare-raw/`).
    pub target_dir: PathBuf,
    /// Where the server binaries are (default: the target directory's `release/`).
    pub bin_dir: PathBuf,
    /// The loadgen binary (default: in `bin_dir`).
    pub loadgen: PathBuf,
    /// Another build of the gateway (its binary directory), measured beside this one as
    /// `gateway-base` and `gateway-uring-base`: before/after figures from one alternated run.
    pub baseline: Option<PathBuf>,
    /// The command line as given, for the report.
    pub command: String,
}

/// A command line `bench compare` does not understand.
#[derive(Debug, PartialEq, Eq)]
pub enum OptionsError {
    /// `--help`.
    Help,
    /// A flag it does not take.
    UnknownFlag(String),
    /// A flag without its value.
    MissingValue(String),
    /// A value that does not parse.
    BadValue(String, String),
}

impl fmt::Display for OptionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Help => f.write_str("help requested"),
            Self::UnknownFlag(flag) => write!(f, "unknown flag {flag:?}"),
            Self::MissingValue(flag) => write!(f, "{flag} needs a value"),
            Self::BadValue(flag, value) => write!(f, "{flag} {value:?} is not valid"),
        }
    }
}

impl std::error::Error for OptionsError {}

/// Usage of `bench compare`.
pub const USAGE: &str = "usage: bench compare [flags]
  --reps N             repetitions of every cell, servers alternating A B A B (default 3)
  --threads LIST       server thread counts, comma separated (default 1,2)
  --servers LIST       only these servers (gateway, gateway-uring, tokio-tungstenite,
                       fastwebsockets, raw-writer, node-ws, python-websockets,
                       node-socketio)
  --scenarios LIST     only these scenarios (echo-32b-w1, echo-32b-w16, echo-16kib,
                       fanout-1k, fanout-10k, connect, idle-10k, idle-50k, sio-fanout-1k,
                       sio-fanout-10k, sio-idle-1k, sio-idle-10k; a sio- scenario runs on the
                       servers that speak Socket.IO)
  --server-cpus CPUS   cores the server is pinned to, taskset syntax (default: upper half);
                       a server with more threads than these cores gets every core
  --loadgen-cpus CPUS  cores loadgen is pinned to (default: lower half)
  --loadgen-threads N  loadgen threads (default: 1)
  --nice N             run servers and loadgen at this niceness, -20..19 (default 0; below 0
                       needs root: on a shared machine it keeps other work off their share)
  --duration SECS      measured seconds per run (default 10)
  --warmup SECS        unmeasured seconds before (default 2)
  --quick              1 repetition, 3 s runs, 1 s warm-up: a smoke run, not a result
  --no-build           use the binaries already built
  --from-raw           run nothing; write the report again from the loadgen reports an
                       earlier run kept (same --reps, --threads, --servers, --scenarios)
  --out DIR            where RESULTS.md and results/comparison.svg go (default: bench/)
  --bin-dir DIR        where the server binaries are (default: $CARGO_TARGET_DIR/release,
                       target/release without it)
  --loadgen PATH       the loadgen binary (default: DIR/loadgen)
  --baseline DIR       also run the gateway built in DIR (a checkout of an earlier commit,
                       built with `cargo build --release -p gateway`) as gateway-base and
                       gateway-uring-base, alternating with this build: before/after ratios
                       from one run
loadgen's JSON reports are kept in $CARGO_TARGET_DIR/compare-raw/.";

impl Options {
    /// Parse the flags after `compare`.
    pub fn parse(args: Vec<String>) -> Result<Options, OptionsError> {
        let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default();
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace.join("target"));
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (loadgen_cpus, server_cpus) = split_cpus(cpus);
        let mut opts = Options {
            reps: 3,
            threads: vec![1, 2],
            servers: None,
            scenarios: None,
            server_cpus,
            loadgen_cpus,
            loadgen_threads: 1,
            nice: 0,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            build: true,
            from_raw: false,
            out_dir: workspace.join("bench"),
            bin_dir: target_dir.join("release"),
            loadgen: target_dir.join("release/loadgen"),
            baseline: None,
            workspace,
            target_dir,
            command: format!("cargo run -p bench --release -- compare {}", args.join(" "))
                .trim_end()
                .to_owned(),
        };
        let mut loadgen_given = false;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
                None => (arg, None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| OptionsError::MissingValue(flag.clone()))
            };
            let bad = |v: &str| OptionsError::BadValue(flag.clone(), v.to_owned());
            match flag.as_str() {
                "--reps" => {
                    let v = value()?;
                    opts.reps = v.parse().ok().filter(|&n| n >= 1).ok_or_else(|| bad(&v))?;
                }
                "--threads" => {
                    let v = value()?;
                    opts.threads = list(&v)
                        .iter()
                        .map(|t| t.parse().ok().filter(|&n: &usize| n >= 1))
                        .collect::<Option<Vec<_>>>()
                        .filter(|t| !t.is_empty())
                        .ok_or_else(|| bad(&v))?;
                }
                "--servers" => opts.servers = Some(list(&value()?)),
                "--scenarios" => opts.scenarios = Some(list(&value()?)),
                "--server-cpus" => opts.server_cpus = value()?,
                "--loadgen-cpus" => opts.loadgen_cpus = value()?,
                "--loadgen-threads" => {
                    let v = value()?;
                    opts.loadgen_threads =
                        v.parse().ok().filter(|&n| n >= 1).ok_or_else(|| bad(&v))?;
                }
                "--nice" => {
                    let v = value()?;
                    opts.nice = v
                        .parse()
                        .ok()
                        .filter(|n| (-20..=19).contains(n))
                        .ok_or_else(|| bad(&v))?;
                }
                "--duration" => opts.duration = seconds(&value()?).ok_or_else(|| bad(&flag))?,
                "--warmup" => opts.warmup = seconds(&value()?).ok_or_else(|| bad(&flag))?,
                "--quick" => {
                    opts.reps = 1;
                    opts.duration = Duration::from_secs(3);
                    opts.warmup = Duration::from_secs(1);
                }
                "--no-build" => opts.build = false,
                "--from-raw" => {
                    opts.from_raw = true;
                    opts.build = false;
                }
                "--out" => opts.out_dir = PathBuf::from(value()?),
                "--bin-dir" => {
                    let dir = PathBuf::from(value()?);
                    if !loadgen_given {
                        opts.loadgen = dir.join("loadgen");
                    }
                    opts.bin_dir = dir;
                }
                "--loadgen" => {
                    opts.loadgen = PathBuf::from(value()?);
                    loadgen_given = true;
                }
                "--baseline" => opts.baseline = Some(PathBuf::from(value()?)),
                "-h" | "--help" => return Err(OptionsError::Help),
                _ => return Err(OptionsError::UnknownFlag(flag)),
            }
        }
        Ok(opts)
    }
}

impl Options {
    /// Cores a server with `threads` threads is pinned to: the server cores when it fits on
    /// them, otherwise every core, shared with loadgen (the report says so).
    pub fn server_cpus_for(&self, threads: usize) -> String {
        let cores = cpu_count(&self.server_cpus);
        let all = std::thread::available_parallelism().map_or(1, |n| n.get());
        if threads <= cores || cores == 0 || all <= cores {
            self.server_cpus.clone()
        } else if all == 1 {
            "0".into()
        } else {
            format!("0-{}", all - 1)
        }
    }
}

/// Cores in a taskset list (`1`, `0-3`, `0,2-3`); 0 when it does not parse.
fn cpu_count(list: &str) -> usize {
    list.split(',')
        .map(|part| match part.split_once('-') {
            Some((from, to)) => match (from.trim().parse::<usize>(), to.trim().parse::<usize>()) {
                (Ok(from), Ok(to)) if to >= from => to - from + 1,
                _ => 0,
            },
            None => usize::from(part.trim().parse::<usize>().is_ok()),
        })
        .sum()
}

/// Loadgen gets the lower half of the cores, servers the upper half (taskset lists).
fn split_cpus(cpus: usize) -> (String, String) {
    if cpus < 2 {
        return ("0".into(), "0".into());
    }
    let half = cpus / 2;
    let range = |from: usize, to: usize| {
        if from == to {
            from.to_string()
        } else {
            format!("{from}-{to}")
        }
    };
    (range(0, half - 1), range(half, cpus - 1))
}

fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn seconds(value: &str) -> Option<Duration> {
    value
        .trim_end_matches('s')
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, OptionsError> {
        Options::parse(args.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn cores_are_split_between_loadgen_and_servers() {
        assert_eq!(split_cpus(2), ("0".into(), "1".into()));
        assert_eq!(split_cpus(8), ("0-3".into(), "4-7".into()));
        assert_eq!(split_cpus(1), ("0".into(), "0".into()));
    }

    #[test]
    fn servers_with_more_threads_than_server_cores_get_every_core() {
        assert_eq!(cpu_count("1"), 1);
        assert_eq!(cpu_count("0-3"), 4);
        assert_eq!(cpu_count("0,2-3"), 3);
        assert_eq!(cpu_count("x"), 0);
        let mut opts = parse(&[]).unwrap();
        opts.server_cpus = "1".into();
        assert_eq!(opts.server_cpus_for(1), "1");
        let all = std::thread::available_parallelism().map_or(1, |n| n.get());
        let expected = if all > 1 {
            format!("0-{}", all - 1)
        } else {
            "1".into()
        };
        assert_eq!(opts.server_cpus_for(2), expected);
    }

    #[test]
    fn quick_runs_once_with_short_runs() {
        let opts = parse(&[
            "--quick",
            "--threads",
            "1",
            "--servers=raw-writer,node-ws",
            "--nice=-5",
        ])
        .unwrap();
        assert_eq!(opts.nice, -5);
        assert_eq!(opts.reps, 1);
        assert_eq!(opts.duration, Duration::from_secs(3));
        assert_eq!(opts.threads, vec![1]);
        assert_eq!(opts.baseline, None);
        assert_eq!(
            parse(&["--baseline", "old/release"]).unwrap().baseline,
            Some(PathBuf::from("old/release"))
        );
        assert_eq!(
            opts.servers,
            Some(vec!["raw-writer".into(), "node-ws".into()])
        );
    }

    #[test]
    fn refuses_bad_counts_and_unknown_flags() {
        assert!(matches!(
            parse(&["--reps", "0"]),
            Err(OptionsError::BadValue(..))
        ));
        assert!(matches!(
            parse(&["--threads", "1,x"]),
            Err(OptionsError::BadValue(..))
        ));
        assert!(matches!(
            parse(&["--nice", "-21"]),
            Err(OptionsError::BadValue(..))
        ));
        assert!(matches!(
            parse(&["--duration", "-1"]),
            Err(OptionsError::BadValue(..))
        ));
        assert_eq!(
            parse(&["--fast"]).err(),
            Some(OptionsError::UnknownFlag("--fast".into()))
        );
    }
}
