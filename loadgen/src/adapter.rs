//! Adapters: how a run subscribes and publishes on a given server, so one scenario drives any
//! server. An adapter says where a member of a group (channel, room) connects, what it sends once
//! open (a subscribe command), how a publish is framed around the stamped payload, how the payload
//! is found in what the server delivers, and who receives a publish (which sets the expected
//! delivery count).

use std::io::Write as _;

use frame_simd::Opcode;

use crate::target::Target;

/// The convention a server speaks.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Adapter {
    /// Raw echo: a publish comes back to its sender only (every member subscribes to itself).
    Echo,
    /// The bench `pub:` text convention: a text message `pub:<payload>` is delivered as
    /// `<payload>` to every other connection of the same URL (`{channel}` / `{room}` in the URL
    /// path name the group).
    Pub,
    /// This gateway's client protocol: subscribers that only listen use raw mode
    /// (`/raw?channel=loadgen.N`, bare deliveries); publishers and chat members use `/ws`, send
    /// `{"op":"subscribe",..}` when they also listen, and publish with `{"op":"publish",..}`
    /// (`skip_self` for chat). Deliveries on `/ws` are JSON `message` objects.
    Gateway,
    /// Socket.IO over WebSocket (`/socket.io/?EIO=4&transport=websocket`): every member sends
    /// CONNECT (`40`); a listening member joins its group's room with an acked
    /// `["join","loadgen.N"]`; a publish is `["loadgen","loadgen.N","<payload>"]`, which the
    /// server must emit to the room's other sockets as `["loadgen","<payload>"]` (on the
    /// gateway: `--socketio-event loadgen=to-room-others`). Server pings are answered.
    #[value(name = "socketio")]
    #[serde(rename = "socketio")]
    SocketIo,
}

/// What a received message is, for a member of a group.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery<'a> {
    /// A delivery whose application payload (the stamp) starts here.
    Payload(&'a [u8]),
    /// The answer to a request (subscribe, publish): `Ok(())`, or the error code the server gave
    /// (`busy`, `forbidden`, ...). Replies come in request order.
    Reply(Result<(), &'a [u8]>),
    /// Protocol chatter (welcome, presence): neither a delivery nor foreign.
    Ignore,
    /// A heartbeat the client must answer with this text message (a Socket.IO ping).
    Answer(&'static [u8]),
    /// The server admitted the member (Socket.IO CONNECT answered): a listening member now
    /// sends [`Adapter::join_message`] (a server may refuse packets sent before this).
    Connected,
}

/// The gateway channel name of a group.
fn channel(group: u32) -> String {
    format!("loadgen.{group}")
}

impl Adapter {
    /// Where a member of `group` connects, from a base target. `listens_only`: a subscriber that
    /// never publishes.
    pub fn target(self, base: &Target, group: u32, listens_only: bool) -> Target {
        match self {
            Adapter::Echo | Adapter::Pub => {
                base.with_param("channel", group).with_param("room", group)
            }
            Adapter::Gateway => {
                let mut t = base.clone();
                t.path = if listens_only {
                    format!("/raw?channel={}", channel(group))
                } else {
                    "/ws".to_string()
                };
                let scheme = if t.tls.is_some() { "wss" } else { "ws" };
                t.url = format!("{scheme}://{}{}", t.host_header, t.path);
                t
            }
            Adapter::SocketIo => {
                let mut t = base.clone();
                t.path = "/socket.io/?EIO=4&transport=websocket".to_string();
                t.url = format!("ws://{}{}", t.host_header, t.path);
                t
            }
        }
    }

    /// True when the adapter names each group itself (no `{channel}` needed in the URL).
    pub fn names_groups(self) -> bool {
        matches!(self, Adapter::Gateway | Adapter::SocketIo)
    }

    /// The message a listening member sends once [`Delivery::Connected`] (Socket.IO: an acked
    /// join of its group's room).
    pub fn join_message(self, group: u32) -> String {
        format!(r#"420["join","{}"]"#, channel(group))
    }

    /// The text messages a member sends once open, in order: what a member that `publishes`
    /// and/or `listens` needs to join its group (Socket.IO: CONNECT; the join follows on
    /// [`Delivery::Connected`]). A listening member of an adapter whose subscribe is acked
    /// ([`Adapter::subscribe_is_acked`]) is ready once that answer arrives.
    pub fn open_messages(self, group: u32, publishes: bool, listens: bool) -> Vec<String> {
        match self {
            Adapter::SocketIo => vec!["40".to_string()],
            _ if publishes && listens => self.subscribe_message(group).into_iter().collect(),
            _ => Vec::new(),
        }
    }

    /// A text message to send once open, if the member both publishes and listens.
    pub fn subscribe_message(self, group: u32) -> Option<String> {
        match self {
            Adapter::Gateway => Some(format!(
                r#"{{"op":"subscribe","channel":"{}"}}"#,
                channel(group)
            )),
            _ => None,
        }
    }

    /// Write the publish frame's payload into `out` (cleared first): the adapter's framing around
    /// `size` bytes that `fill` writes (the stamped payload, ASCII). `self_listens`: the sender
    /// also subscribes (chat), so the server must skip it.
    pub fn write_publish(
        self,
        out: &mut Vec<u8>,
        group: u32,
        self_listens: bool,
        size: usize,
        fill: impl FnOnce(&mut [u8]),
    ) {
        out.clear();
        match self {
            Adapter::Echo => {}
            Adapter::Pub => out.extend_from_slice(b"pub:"),
            Adapter::SocketIo => {
                let _ = write!(out, r#"42["loadgen","{}",""#, channel(group));
            }
            Adapter::Gateway => {
                let _ = write!(
                    out,
                    r#"{{"op":"publish","channel":"{}",{}"data":""#,
                    channel(group),
                    if self_listens {
                        r#""skip_self":true,"#
                    } else {
                        ""
                    }
                );
            }
        }
        let at = out.len();
        out.resize(at + size, 0);
        fill(&mut out[at..]);
        match self {
            Adapter::Gateway => out.extend_from_slice(b"\"}"),
            Adapter::SocketIo => out.extend_from_slice(b"\"]"),
            Adapter::Echo | Adapter::Pub => {}
        }
    }

    /// Write the JSON body of a backend API publish (`POST /api/publish`) into `out`.
    pub fn write_api_publish(
        self,
        out: &mut Vec<u8>,
        group: u32,
        size: usize,
        fill: impl FnOnce(&mut [u8]),
    ) {
        out.clear();
        let _ = write!(out, r#"{{"channel":"{}","data":""#, channel(group));
        let at = out.len();
        out.resize(at + size, 0);
        fill(&mut out[at..]);
        out.extend_from_slice(b"\"}");
    }

    /// Opcode of a publish frame (all three conventions are text).
    pub fn publish_opcode(self) -> Opcode {
        Opcode::Text
    }

    /// What a message a subscriber received is.
    pub fn delivery(self, payload: &[u8]) -> Delivery<'_> {
        match self {
            Adapter::Echo | Adapter::Pub => Delivery::Payload(payload),
            Adapter::SocketIo => socketio_delivery(payload),
            Adapter::Gateway => {
                if payload.first() != Some(&b'{') {
                    // Raw mode: the bare data.
                    return Delivery::Payload(payload);
                }
                if contains(payload, br#""type":"message""#) {
                    return match find(payload, br#""data":""#) {
                        Some(at) => Delivery::Payload(&payload[at..]),
                        None => Delivery::Ignore,
                    };
                }
                if !contains(payload, br#""type":"reply""#) {
                    return Delivery::Ignore;
                }
                if contains(payload, br#""ok":true"#) {
                    return Delivery::Reply(Ok(()));
                }
                let code = find(payload, br#""code":""#).map_or(&b"unknown"[..], |at| {
                    let rest = &payload[at..];
                    &rest[..rest.iter().position(|&b| b == b'"').unwrap_or(rest.len())]
                });
                Delivery::Reply(Err(code))
            }
        }
    }

    /// True when a member's group membership is confirmed by a reply (it sent
    /// [`Adapter::subscribe_message`]): deliveries are only due once that reply arrived.
    pub fn subscribe_is_acked(self) -> bool {
        matches!(self, Adapter::Gateway | Adapter::SocketIo)
    }

    /// True when a publish reaches every other member of its group; false when only its sender.
    pub fn delivers_to_others(self) -> bool {
        !matches!(self, Adapter::Echo)
    }
}

/// What a Socket.IO member received: the server's ping (answered `3`), the join's ack, a
/// `loadgen` event (its payload), or chatter (the open packet, CONNECT accepted).
fn socketio_delivery(payload: &[u8]) -> Delivery<'_> {
    const EVENT: &[u8] = br#"42["loadgen",""#;
    if payload == b"2" {
        return Delivery::Answer(b"3");
    }
    if let Some(body) = payload.strip_prefix(EVENT) {
        return Delivery::Payload(body);
    }
    if let Some(ack) = payload.strip_prefix(b"43") {
        return match find(ack, br#""error":""#) {
            None => Delivery::Reply(Ok(())),
            Some(_) => Delivery::Reply(Err(b"error")),
        };
    }
    if payload.starts_with(b"40") {
        return Delivery::Connected;
    }
    if payload.starts_with(b"44") {
        return Delivery::Reply(Err(b"connect_error"));
    }
    Delivery::Ignore
}

/// Offset just past the first occurrence of `needle`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + needle.len())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_publish_wraps_the_payload_in_json() {
        let mut out = Vec::new();
        Adapter::Gateway.write_publish(&mut out, 3, true, 4, |b| b.copy_from_slice(b"abcd"));
        assert_eq!(
            out,
            br#"{"op":"publish","channel":"loadgen.3","skip_self":true,"data":"abcd"}"#
        );
        Adapter::Pub.write_publish(&mut out, 3, true, 2, |b| b.copy_from_slice(b"xy"));
        assert_eq!(out, b"pub:xy");
    }

    #[test]
    fn gateway_deliveries_are_found_in_json_and_raw_frames() {
        let json = br#"{"type":"message","channel":"loadgen.1","data":"0011","from":"9"}"#;
        assert_eq!(
            Adapter::Gateway.delivery(json),
            Delivery::Payload(&br#"0011","from":"9"}"#[..])
        );
        assert_eq!(
            Adapter::Gateway.delivery(br#"{"type":"welcome","conn":"1"}"#),
            Delivery::Ignore
        );
        assert_eq!(
            Adapter::Gateway.delivery(b"0011"),
            Delivery::Payload(b"0011")
        );
    }

    #[test]
    fn gateway_replies_carry_their_error_code() {
        assert_eq!(
            Adapter::Gateway.delivery(br#"{"type":"reply","ok":true}"#),
            Delivery::Reply(Ok(()))
        );
        let busy = br#"{"type":"reply","ok":false,"error":{"code":"busy","message":"queue full"}}"#;
        assert_eq!(
            Adapter::Gateway.delivery(busy),
            Delivery::Reply(Err(&b"busy"[..]))
        );
        assert_eq!(
            Adapter::Gateway.delivery(br#"{"type":"join","channel":"loadgen.1","conn":"2"}"#),
            Delivery::Ignore
        );
    }

    #[test]
    fn socketio_members_connect_join_publish_and_answer_pings() {
        let a = Adapter::SocketIo;
        assert_eq!(a.open_messages(3, true, true), ["40"]);
        assert_eq!(a.join_message(3), r#"420["join","loadgen.3"]"#);
        assert_eq!(a.open_messages(3, true, false), ["40"]);
        assert!(Adapter::Gateway.open_messages(3, true, false).is_empty());
        assert_eq!(Adapter::Gateway.open_messages(3, true, true).len(), 1);
        let mut out = Vec::new();
        a.write_publish(&mut out, 3, true, 4, |b| b.copy_from_slice(b"abcd"));
        assert_eq!(out, br#"42["loadgen","loadgen.3","abcd"]"#);
        assert_eq!(
            a.delivery(br#"42["loadgen","abcd"]"#),
            Delivery::Payload(b"abcd\"]")
        );
        assert_eq!(a.delivery(b"2"), Delivery::Answer(b"3"));
        assert_eq!(a.delivery(b"430[]"), Delivery::Reply(Ok(())));
        assert_eq!(
            a.delivery(br#"430[{"error":"busy"}]"#),
            Delivery::Reply(Err(b"error"))
        );
        assert_eq!(a.delivery(br#"0{"sid":"x"}"#), Delivery::Ignore);
        assert_eq!(a.delivery(br#"40{"sid":"y"}"#), Delivery::Connected);
        assert!(a.names_groups() && a.subscribe_is_acked() && a.delivers_to_others());
    }
}
