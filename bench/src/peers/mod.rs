//! Peer servers for the comparison: echo and broadcast servers built on other WebSocket stacks.
//!
//! Each peer is one module with a `serve(&Args)` entry point and one thin binary in `src/bin/`.
//! Start-up (flags, the `listening on` line, the tokio runtime) and the broadcast subscriber
//! registry are shared here, so the peers differ only in how they use their library.

pub mod cli;
pub mod fastws;
pub mod hub;
pub mod raw_writer;
pub mod tungstenite;

/// What a connection does with its messages, chosen by the request path (`bench/PROTOCOL.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Send every text or binary message back to its sender.
    Echo,
    /// Relay `pub:` messages to every other connection in broadcast mode.
    Broadcast,
}

impl Mode {
    /// `/broadcast` (with or without a query) selects broadcast; every other path is echo.
    pub fn from_path(path: &str) -> Mode {
        let path = path.split('?').next().unwrap_or(path);
        if path == BROADCAST_PATH {
            Mode::Broadcast
        } else {
            Mode::Echo
        }
    }
}

/// The path of broadcast mode.
pub const BROADCAST_PATH: &str = "/broadcast";

/// The prefix that marks a text message as a publish in broadcast mode.
pub const PUBLISH_PREFIX: &[u8] = b"pub:";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_path_selects_broadcast_and_anything_else_echo() {
        assert_eq!(Mode::from_path("/broadcast"), Mode::Broadcast);
        assert_eq!(Mode::from_path("/broadcast?token=x"), Mode::Broadcast);
        assert_eq!(Mode::from_path("/echo"), Mode::Echo);
        assert_eq!(Mode::from_path("/"), Mode::Echo);
        assert_eq!(Mode::from_path("/broadcasting"), Mode::Echo);
    }
}
