//! `/raw?channel=a&channel=b`: deliveries of the named channels as bare frames, for clients that
//! speak no protocol. The channels are subscribed at the upgrade (each name checked, each allowed
//! by the token); frames from the client are counted and ignored.

use crate::conn::Refusal;
use crate::names::check_channel;
use crate::query::query_pairs;

use super::Dispatch;

/// Subscribe the new connection to the channels of `query`, or refuse the upgrade.
pub(super) fn open(d: &mut Dispatch<'_>, query: &str) -> Result<(), Refusal> {
    let refuse = |status, message: String| Refusal { status, message };
    let mut names = Vec::new();
    for (k, v) in query_pairs(query) {
        if k == "channel" {
            check_channel(&v).map_err(|e| {
                refuse(
                    (400, "Bad Request"),
                    format!("channel {v:?}: {}\n", e.message()),
                )
            })?;
            if !d.client.session.may_subscribe(&v) {
                return Err(refuse(
                    (403, "Forbidden"),
                    format!("the token does not allow channel {v:?}\n"),
                ));
            }
            names.push(v.into_owned());
        }
    }
    if names.len() > d.router.config().max_channels_per_conn {
        return Err(refuse(
            (400, "Bad Request"),
            "more channels than --max-channels-per-conn\n".into(),
        ));
    }
    for name in names {
        let _ = d.router.subscribe(d.id, &mut d.client.session, &name);
    }
    Ok(())
}
