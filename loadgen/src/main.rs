//! The load generator binary.
#![forbid(unsafe_code)]
fn main() {}
