//! The fan-out ceiling: a minimal epoll server that writes one prebuilt frame per publish to
//! every subscriber with plain `write` calls (see `bench/PROTOCOL.md`).
fn main() -> std::process::ExitCode {
    bench::peers::cli::main("peer-raw-writer", bench::peers::raw_writer::serve)
}
