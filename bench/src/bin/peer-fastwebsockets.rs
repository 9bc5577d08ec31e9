//! Echo and broadcast server on fastwebsockets, for comparisons (see `bench/PROTOCOL.md`).
fn main() -> std::process::ExitCode {
    bench::peers::cli::main("peer-fastwebsockets", bench::peers::fastws::serve)
}
