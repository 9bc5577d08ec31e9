//! Whether io_uring can run this driver here: the kernel allows rings, has the opcodes and
//! the provided-buffer rings it uses, and is new enough for multishot receive. `--driver auto`
//! asks this once at start; `--driver uring` refuses to start when it says no.

use io_uring::{opcode, IoUring, Probe};

use super::buf_ring::{BufRing, BGID};
use super::UNAVAILABLE_ENV;

/// Why io_uring cannot be used here, or `Ok` when every operation this driver needs is
/// available. Creates (and drops) a small ring.
pub fn probe() -> Result<(), String> {
    if std::env::var_os(UNAVAILABLE_ENV).is_some_and(|v| !v.is_empty()) {
        return Err(format!("made unavailable by {UNAVAILABLE_ENV}"));
    }
    if let Ok(s) = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
        if s.trim() == "2" {
            return Err("disabled by the kernel (kernel.io_uring_disabled = 2)".into());
        }
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(['.', '-']);
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    if (major, minor) < (6, 0) {
        return Err(format!(
            "kernel {} lacks multishot receive (needs 6.0 or later)",
            release.trim()
        ));
    }
    let ring = IoUring::new(8).map_err(|e| match e.raw_os_error() {
        Some(libc::EPERM) => {
            format!("ring setup not permitted ({e}): io_uring_disabled or a seccomp policy")
        }
        Some(libc::ENOSYS) => format!("kernel built without io_uring ({e})"),
        _ => format!("ring setup failed: {e}"),
    })?;
    if !ring.params().is_feature_ext_arg() || !ring.params().is_feature_nodrop() {
        return Err("kernel lacks IORING_FEAT_EXT_ARG or IORING_FEAT_NODROP".into());
    }
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| format!("cannot probe opcodes: {e}"))?;
    for (code, name) in [
        (opcode::AcceptMulti::CODE, "ACCEPT"),
        (opcode::RecvMulti::CODE, "RECV"),
        (opcode::PollAdd::CODE, "POLL_ADD"),
        (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
        (opcode::AsyncCancel2::CODE, "ASYNC_CANCEL"),
    ] {
        if !probe.is_supported(code) {
            return Err(format!("opcode IORING_OP_{name} not supported"));
        }
    }
    let bufs = BufRing::new(1, 64).map_err(|e| format!("cannot allocate a buffer ring: {e}"))?;
    bufs.register(&ring)
        .map_err(|e| format!("provided-buffer rings not supported: {e}"))?;
    let _ = ring.submitter().unregister_buf_ring(BGID);
    Ok(())
}
