//! No library: this crate is its benchmark (`benches/impls.rs`).
#![forbid(unsafe_code)]
