//! The declarative event map: what a client's event does without a Node process. Each event name
//! maps to one [`Action`]; an event not in the map is dropped (and counted). The `chat` preset is
//! the classic Socket.IO chat.
//!
//! Targets: an action that needs a room or a socket id takes it from the first argument: a string
//! is the target and is not passed on; an object's `to` field is the target, and the object is
//! passed on without `to` and, for [`Action::ToSocket`], with `from` set to the sender's socket
//! id.

use std::collections::HashMap;
use std::fmt;

/// What an event does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Emit it to every socket of the namespace, the sender included.
    Broadcast,
    /// Emit it to every socket of the namespace but the sender.
    BroadcastOthers,
    /// Join the room named by the first argument.
    Join,
    /// Leave the room named by the first argument.
    Leave,
    /// Emit the other arguments to the room named by the target, the sender included.
    ToRoom,
    /// Emit the other arguments to the room named by the target, the sender excluded.
    ToRoomOthers,
    /// Emit to the one socket whose id is the target, with the sender's id attached.
    ToSocket,
    /// Answer the event's ack with this JSON value.
    Ack(Box<str>),
    /// Nothing (counted as dropped).
    Drop,
}

impl Action {
    /// Parse an action: `broadcast`, `broadcast-others`, `join`, `leave`, `to-room`,
    /// `to-room-others`, `to-socket`, `ack:<JSON value>`, `drop`.
    pub fn parse(s: &str) -> Result<Action, String> {
        Ok(match s {
            "broadcast" => Action::Broadcast,
            "broadcast-others" => Action::BroadcastOthers,
            "join" => Action::Join,
            "leave" => Action::Leave,
            "to-room" => Action::ToRoom,
            "to-room-others" => Action::ToRoomOthers,
            "to-socket" => Action::ToSocket,
            "drop" => Action::Drop,
            _ => match s.strip_prefix("ack:") {
                Some(json) => {
                    serde_json::from_str::<&serde_json::value::RawValue>(json)
                        .map_err(|e| format!("ack value is not JSON: {e}"))?;
                    Action::Ack(Box::from(json.trim()))
                }
                None => {
                    return Err(format!(
                        "unknown action {s:?} (broadcast, broadcast-others, join, leave, \
                         to-room, to-room-others, to-socket, ack:<json>, drop)"
                    ))
                }
            },
        })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Broadcast => f.write_str("broadcast"),
            Action::BroadcastOthers => f.write_str("broadcast-others"),
            Action::Join => f.write_str("join"),
            Action::Leave => f.write_str("leave"),
            Action::ToRoom => f.write_str("to-room"),
            Action::ToRoomOthers => f.write_str("to-room-others"),
            Action::ToSocket => f.write_str("to-socket"),
            Action::Ack(v) => write!(f, "ack:{v}"),
            Action::Drop => f.write_str("drop"),
        }
    }
}

/// Event name to action.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventMap {
    actions: HashMap<Box<str>, Action>,
}

impl EventMap {
    /// The named preset: `chat` (the classic chat) or `none`.
    pub fn preset(name: &str) -> Result<EventMap, String> {
        let mut map = EventMap::default();
        match name {
            "none" => {}
            "chat" => {
                map.set("chat message", Action::Broadcast);
                map.set("join", Action::Join);
                map.set("leave", Action::Leave);
                map.set("room message", Action::ToRoom);
                map.set("private message", Action::ToSocket);
            }
            _ => return Err(format!("unknown preset {name:?} (chat, none)")),
        }
        Ok(map)
    }

    /// Map `event` to `action` (replacing what the preset said).
    pub fn set(&mut self, event: &str, action: Action) {
        self.actions.insert(Box::from(event), action);
    }

    /// Add `NAME=ACTION` (the flag's form).
    pub fn add_rule(&mut self, rule: &str) -> Result<(), String> {
        let (name, action) = rule
            .rsplit_once('=')
            .ok_or_else(|| format!("{rule:?} is not EVENT=ACTION"))?;
        if name.is_empty() {
            return Err(format!("{rule:?}: the event name is empty"));
        }
        self.set(name, Action::parse(action)?);
        Ok(())
    }

    /// The events with an action of their own, sorted (others get the default).
    pub fn mapped(&self) -> Vec<String> {
        let mut names: Vec<String> = self.actions.keys().map(|k| k.to_string()).collect();
        names.sort();
        names
    }

    /// What `event` does.
    pub fn action(&self, event: &str) -> &Action {
        self.actions.get(event).unwrap_or(&Action::Drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chat_preset_is_the_classic_chat() {
        let m = EventMap::preset("chat").unwrap();
        assert_eq!(m.action("chat message"), &Action::Broadcast);
        assert_eq!(m.action("join"), &Action::Join);
        assert_eq!(m.action("private message"), &Action::ToSocket);
        assert_eq!(m.action("anything else"), &Action::Drop);
        assert_eq!(
            EventMap::preset("none").unwrap().action("join"),
            &Action::Drop
        );
        assert!(EventMap::preset("nope").is_err());
    }

    #[test]
    fn rules_parse_and_bad_ones_say_why() {
        let mut m = EventMap::default();
        m.add_rule("ping=ack:{\"pong\":true}").unwrap();
        m.add_rule("a=b=broadcast-others").unwrap();
        assert_eq!(m.action("ping"), &Action::Ack(Box::from("{\"pong\":true}")));
        assert_eq!(m.action("a=b"), &Action::BroadcastOthers);
        for action in [
            "broadcast",
            "broadcast-others",
            "join",
            "leave",
            "to-room",
            "to-room-others",
            "to-socket",
            "ack:1",
            "drop",
        ] {
            assert_eq!(Action::parse(action).unwrap().to_string(), action);
        }
        assert!(m.add_rule("x").unwrap_err().contains("EVENT=ACTION"));
        assert!(m.add_rule("=join").unwrap_err().contains("empty"));
        assert!(m
            .add_rule("x=shout")
            .unwrap_err()
            .contains("unknown action"));
        assert!(m.add_rule("x=ack:{").unwrap_err().contains("not JSON"));
    }
}
