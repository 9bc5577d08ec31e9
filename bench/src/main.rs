//! `bench`: the comparison command (`cargo run -p bench --release -- compare --help`) and the
//! floor client (`bench floor-client --help`).

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("compare") => bench::compare::main(args.collect()),
        Some("floor-client") => bench::floor::main(args.collect()),
        Some("-h" | "--help") => {
            println!("usage: bench compare [flags]   (bench compare --help for the flags)");
            println!("       bench floor-client echo|fanout [flags]   (the cheapest client)");
            ExitCode::SUCCESS
        }
        other => {
            eprintln!("bench: unknown command {other:?}; try `bench compare --help`");
            ExitCode::from(2)
        }
    }
}
