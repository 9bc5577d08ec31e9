//! Benchmarks and the comparison harness.
#![forbid(unsafe_code)]
