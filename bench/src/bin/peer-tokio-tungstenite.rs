//! Echo and broadcast server on tokio-tungstenite, for comparisons (see `bench/PROTOCOL.md`).
fn main() -> std::process::ExitCode {
    bench::peers::cli::main("peer-tokio-tungstenite", bench::peers::tungstenite::serve)
}
