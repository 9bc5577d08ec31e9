//! The `loadgen` command: parse the command line, run, print, write, exit with the verdict
//! (0 ok, 1 error, 3 a threshold failed).
#![forbid(unsafe_code)]

use anyhow::Result;
use clap::Parser;

use loadgen::cli::{Cli, Command};
use loadgen::exec::{self, OutputOpts};
use loadgen::report::{hdrlog, html, Report};
use loadgen::{capacity, merge};

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
    }
}
