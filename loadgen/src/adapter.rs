//! Adapters: how a run subscribes and publishes on a given server, so one scenario drives any
//! server. Each adapter says what URL a member of a group (channel, room) connects to, how a
//! publish is framed, how a delivery is recognised, and who receives a publish.
//!
//! The gateway's own protocol (subscribe command over the socket, publish through its backend HTTP
//! API) is the third variant this seam is shaped for: a subscribe frame sent on open, and a publish
//! path that is not the subscriber's socket.

use frame_simd::Opcode;

/// The convention a server speaks.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Adapter {
    /// Raw echo: a publish comes back to its sender only (every member subscribes to itself).
    Echo,
    /// The bench `pub:` text convention: a text message `pub:<payload>` is delivered as
    /// `<payload>` to every other connection of the same URL.
    Pub,
}

impl Adapter {
    /// The prefix a publish frame's payload carries before the stamped payload.
    pub fn publish_prefix(self) -> &'static [u8] {
        match self {
            Adapter::Echo => b"",
            Adapter::Pub => b"pub:",
        }
    }

    /// Opcode of a publish frame (`pub:` is a text convention; the stamp is ASCII either way).
    pub fn publish_opcode(self) -> Opcode {
        Opcode::Text
    }

    /// The application payload inside a delivered message, if the message is a delivery.
    pub fn delivery(self, payload: &[u8]) -> Option<&[u8]> {
        Some(payload)
    }

    /// True when a publish reaches every other member of its group; false when only its sender.
    pub fn delivers_to_others(self) -> bool {
        matches!(self, Adapter::Pub)
    }
}
