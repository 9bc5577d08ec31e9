//! `frame-simd`: the sans-IO RFC 6455 frame codec of the gateway and its load generator.
//!
//! No sockets, no threads, no clock and no allocation on the hot path: callers hand in byte
//! slices and get back headers, "need N more bytes", or typed errors that know their close code.
//! The SIMD kernels (unmask, UTF-8 validation, and the fused pass) are picked once per process
//! into a [`Kernels`] table; every kernel has a scalar reference it is tested against.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod close;
pub mod encode;
#[allow(unsafe_code)]
pub mod fused;
pub mod header;
mod kernels;
#[allow(unsafe_code)]
pub mod mask;
#[allow(unsafe_code)]
pub mod utf8;

pub use close::{CloseCode, CloseError};
pub use encode::{encode_client_frame, encode_header, encode_server_frame, MAX_HEADER_LEN};
pub use header::{parse_header, Header, HeaderError, Opcode, ParseConfig, Parsed, Role, RSV1};
pub use kernels::{Kernel, Kernels};
pub use mask::MaskKey;
pub use utf8::{Utf8Error, Validator};
