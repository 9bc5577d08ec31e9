//! Channel patterns from a token's `channels` and `publish` claims.
//!
//! A pattern is an exact channel name (`room:1`) or a prefix ending in `*` (`room:*`, or `*` for
//! every channel). A `*` anywhere else is refused when the token is verified: channel names cannot
//! contain `*`, so such a pattern could never match and is surely a mistake in the issuer.

/// One pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// Exactly this channel.
    Exact(Box<str>),
    /// Every channel starting with this prefix (empty: every channel).
    Prefix(Box<str>),
}

/// Why a pattern is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatternError {
    /// The empty string matches nothing.
    Empty,
    /// A `*` that is not the last character.
    InnerWildcard,
}

impl Pattern {
    /// Parse one pattern.
    pub fn parse(s: &str) -> Result<Pattern, PatternError> {
        if s.is_empty() {
            return Err(PatternError::Empty);
        }
        let (body, wildcard) = match s.strip_suffix('*') {
            Some(prefix) => (prefix, true),
            None => (s, false),
        };
        if body.contains('*') {
            return Err(PatternError::InnerWildcard);
        }
        Ok(if wildcard {
            Pattern::Prefix(body.into())
        } else {
            Pattern::Exact(body.into())
        })
    }

    /// True when `channel` matches.
    pub fn matches(&self, channel: &str) -> bool {
        match self {
            Pattern::Exact(name) => **name == *channel,
            Pattern::Prefix(prefix) => channel.starts_with(&**prefix),
        }
    }
}

/// A list of patterns; an empty list allows nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Patterns(pub Box<[Pattern]>);

impl Patterns {
    /// True when any pattern matches `channel`.
    pub fn allows(&self, channel: &str) -> bool {
        self.0.iter().any(|p| p.matches(channel))
    }

    /// True when no channel is allowed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Patterns {
        Patterns(items.iter().map(|s| Pattern::parse(s).unwrap()).collect())
    }

    #[test]
    fn exact_matches_only_itself() {
        let p = list(&["room:1"]);
        assert!(p.allows("room:1"));
        assert!(!p.allows("room:10"));
        assert!(!p.allows("room:"));
        assert!(!p.allows(""));
    }

    #[test]
    fn prefix_matches_the_prefix_and_longer() {
        let p = list(&["room:*"]);
        assert!(p.allows("room:1"));
        assert!(p.allows("room:"));
        assert!(!p.allows("room"));
        assert!(!p.allows("lobby"));
    }

    #[test]
    fn star_alone_matches_everything() {
        let p = list(&["*"]);
        assert!(p.allows("a"));
        assert!(p.allows("x/y:z"));
    }

    #[test]
    fn empty_list_allows_nothing() {
        assert!(!Patterns::default().allows("a"));
        assert!(Patterns::default().is_empty());
    }

    #[test]
    fn any_pattern_of_several_may_match() {
        let p = list(&["news", "user:42:*"]);
        assert!(p.allows("news"));
        assert!(p.allows("user:42:inbox"));
        assert!(!p.allows("user:43:inbox"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert_eq!(Pattern::parse(""), Err(PatternError::Empty));
        assert_eq!(Pattern::parse("a*b"), Err(PatternError::InnerWildcard));
        assert_eq!(Pattern::parse("**"), Err(PatternError::InnerWildcard));
        assert_eq!(Pattern::parse("*a"), Err(PatternError::InnerWildcard));
    }
}
