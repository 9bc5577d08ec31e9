//! The `loadgen` command: parse the command line, run, print, write, exit with the verdict
//! (0 ok, 1 error, 3 a threshold failed).
#![forbid(unsafe_code)]

use anyhow::Result;
use clap::Parser;

use loadgen::cli::{Cli, Command};
use loadgen::exec::{self, OutputOpts};
use loadgen::report::soak;
use loadgen::report::{hdrlog, html, Report};
use loadgen::target::Target;
use loadgen::{capacity, merge, misbehave, watch};

fn main() {
    match real_main() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("loadgen: error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn real_main() -> Result<i32> {
    let cli = Cli::parse();
    let command: Vec<String> = std::env::args().collect();
    match cli.command {
        Command::Scenario(scenario) => {
            let common = scenario.common();
            let report = exec::run_scenario(&scenario, command, !common.quiet)?;
            exec::finish(&report, &OutputOpts::from(common))
        }
        Command::Capacity(args) => {
            let (cap, code) = capacity::run(&args, command)?;
            println!("{}", cap.summary);
            if let Some(p) = &args.json {
                std::fs::write(p, serde_json::to_string_pretty(&cap)?)?;
            }
            Ok(code)
        }
        Command::Merge(args) => {
            let reports = args
                .files
                .iter()
                .map(|p| Report::read_json(p))
                .collect::<Result<Vec<_>>>()?;
            let merged = merge::merge(&reports)?;
            let out = OutputOpts {
                json: args.json.clone(),
                hdr_log: None,
                html: None,
                expect: args.expect.clone(),
            };
            if let Some(p) = &args.html {
                html::write(&merged, p)?;
            }
            if let Some(p) = &args.hdr_log {
                hdrlog::write(&merged, p)?;
            }
            exec::finish(&merged, &out)
        }
        Command::Watch(args) => {
            let opts = watch::WatchOpts {
                pid: args.server_pid,
                interval: args.interval,
                settle: args.settle,
                tolerance: watch::Tolerance {
                    warmup_s: args.warmup.as_secs_f64(),
                    rss_growth_bytes: args.rss_growth_bytes,
                    rss_growth_share: args.rss_growth_pct / 100.0,
                    fd_slack: args.fd_slack,
                },
                command: args.command.clone(),
                load_reports: args.load_reports.clone(),
            };
            let result = watch::run(&opts)?;
            print!("{}", result.summary());
            if let Some(p) = &args.json {
                std::fs::write(p, serde_json::to_string_pretty(&result)?)?;
            }
            if let Some(p) = &args.html {
                soak::write(&result, p)?;
            }
            Ok(if result.failures.is_empty() { 0 } else { 3 })
        }
        Command::Misbehave(args) => {
            let opts = misbehave::Opts {
                slow_url: Target::parse(&args.slow_url)?,
                slow: args.slow,
                slow_read_rate: args.slow_read_rate,
                slow_rcvbuf: args.slow_rcvbuf,
                slow_for: args.slow_for,
                feed: match &args.feed_url {
                    Some(url) => Some(misbehave::Feed {
                        url: Target::parse(url)?,
                        text: args.feed_text.clone(),
                        pad: args.feed_pad,
                        rate: args.feed_rate,
                    }),
                    None => None,
                },
                bad_url: Target::parse(&args.bad_url)?,
                bad_rate: args.bad_rate,
                duration: args.duration,
            };
            let outcome = misbehave::run(&opts)?;
            println!("{}", serde_json::to_string(&outcome)?);
            if let Some(p) = &args.json {
                std::fs::write(p, serde_json::to_string_pretty(&outcome)?)?;
            }
            Ok(if outcome.ok() { 0 } else { 3 })
        }
    }
}
