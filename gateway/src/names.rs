//! The naming rules of what the gateway keys by, one home for each: channel names
//! (`[A-Za-z0-9_.:@/-]`, 1 to 128 bytes) and user names (1 to 256 bytes, no control characters).
//! The client protocol, the upgrade, tokens and the backend API check names here once, when they are
//! parsed; the router trusts names after that.

/// Longest channel name, in bytes.
pub const MAX_CHANNEL_BYTES: usize = 128;

/// Why a channel name was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelError {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_CHANNEL_BYTES`].
    TooLong,
    /// The name holds a byte outside `[A-Za-z0-9_.:@/-]`.
    BadCharacter,
}

impl ChannelError {
    /// The text of the error reply.
    pub fn message(self) -> &'static str {
        match self {
            Self::Empty => "channel name is empty",
            Self::TooLong => "channel name is longer than 128 bytes",
            Self::BadCharacter => "channel name may only hold A-Z a-z 0-9 _ . : @ / -",
        }
    }
}

/// Check a channel name.
pub fn check_channel(name: &str) -> Result<(), ChannelError> {
    if name.is_empty() {
        return Err(ChannelError::Empty);
    }
    if name.len() > MAX_CHANNEL_BYTES {
        return Err(ChannelError::TooLong);
    }
    let ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'@' | b'/' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ChannelError::BadCharacter)
    }
}

/// Longest user name (a token's `sub`, an anonymous `?user=`, an API `user`), in bytes: room
/// for an email address or a URL-safe id, small enough to key a table by.
pub const MAX_USER_BYTES: usize = 256;

/// Why a user name was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserError {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_USER_BYTES`].
    TooLong,
    /// The name holds a control character.
    ControlCharacter,
}

impl UserError {
    /// What is wrong, as the end of a sentence that starts with the field's name.
    pub fn message(self) -> &'static str {
        match self {
            Self::Empty => "is empty",
            Self::TooLong => "is longer than 256 bytes",
            Self::ControlCharacter => "holds a control character",
        }
    }
}

/// Check a user name.
pub fn check_user(name: &str) -> Result<(), UserError> {
    if name.is_empty() {
        return Err(UserError::Empty);
    }
    if name.len() > MAX_USER_BYTES {
        return Err(UserError::TooLong);
    }
    if name.chars().any(char::is_control) {
        return Err(UserError::ControlCharacter);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_within_the_rules_pass() {
        for name in [
            "a",
            "room:1",
            "user@example.org/inbox",
            "A_b.c-9",
            &"x".repeat(128),
        ] {
            assert_eq!(check_channel(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn names_outside_the_rules_fail_with_their_reason() {
        assert_eq!(check_channel(""), Err(ChannelError::Empty));
        assert_eq!(check_channel(&"x".repeat(129)), Err(ChannelError::TooLong));
        for name in ["a b", "é", "a*", "a\"", "a\\b", "a\u{0}"] {
            assert_eq!(
                check_channel(name),
                Err(ChannelError::BadCharacter),
                "{name:?}"
            );
        }
    }

    #[test]
    fn user_names_are_bounded_and_printable() {
        assert_eq!(check_user("ann"), Ok(()));
        assert_eq!(check_user("é"), Ok(()));
        assert_eq!(check_user(&"a".repeat(256)), Ok(()));
        assert_eq!(check_user(""), Err(UserError::Empty));
        assert_eq!(check_user(&"a".repeat(257)), Err(UserError::TooLong));
        assert_eq!(check_user("a\nb"), Err(UserError::ControlCharacter));
        assert_eq!(check_user("\u{7f}"), Err(UserError::ControlCharacter));
    }
}
