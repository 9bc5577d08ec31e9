//! `/broadcast`: the benchmark protocol every compared server speaks (`bench/PROTOCOL.md`). Each
//! connection is subscribed to one shared channel; a text message `pub:<text>` publishes `<text>`
//! to every other subscriber, anything else is counted and ignored.

use frame_simd::Opcode;

use crate::conn::Refusal;
use crate::json::write_str;

use super::Dispatch;

/// The channel `/broadcast` connections share.
pub const BROADCAST_CHANNEL: &str = "broadcast";

/// Subscribe the new connection to the shared channel, if its token allows it.
pub(super) fn open(d: &mut Dispatch<'_>) -> Result<(), Refusal> {
    if !d.client.session.may_subscribe(BROADCAST_CHANNEL) {
        return Err(Refusal {
            status: (403, "Forbidden"),
            message: "the token does not allow channel \"broadcast\"\n".into(),
        });
    }
    let _ = d
        .router
        .subscribe(d.id, &mut d.client.session, BROADCAST_CHANNEL);
    Ok(())
}

/// A message from a `/broadcast` client.
pub(super) fn on_message(d: &mut Dispatch<'_>, opcode: Opcode, payload: &[u8]) {
    let Some(rest) = payload.strip_prefix(b"pub:") else {
        d.router.stats.raw_ignored += 1;
        return;
    };
    if opcode != Opcode::Text || !d.client.session.may_publish(BROADCAST_CHANNEL) {
        d.router.stats.raw_ignored += 1;
        return;
    }
    let mut data = std::mem::take(&mut d.app.text);
    data.clear();
    // Text frames are valid UTF-8 and a prefix of ASCII keeps it so.
    write_str(&mut data, std::str::from_utf8(rest).unwrap_or(""));
    let user = d.router.user(&d.client.session).cloned();
    let _ = d.router.publish(
        BROADCAST_CHANNEL,
        &data,
        rest,
        Some(d.id),
        user.as_deref(),
        Some(d.id),
    );
    d.app.text = data;
}
