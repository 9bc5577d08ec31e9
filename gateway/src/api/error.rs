//! `ApiError`: every way a backend API request is refused, with its status, code and message.

use std::fmt;

/// A refused API request. Each variant names the broken rule and knows its HTTP status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiError {
    /// No `Authorization: Bearer <key>`, or the wrong key.
    Unauthorized,
    /// No route for the path.
    NotFound,
    /// The route exists but not for this method; the value is the `Allow` header.
    MethodNotAllowed(&'static str),
    /// A body without `Content-Length` (chunked, or none at all on a POST).
    LengthRequired,
    /// `Content-Length` over `--max-api-body-bytes`.
    TooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The request line plus headers exceed `--max-header-bytes` (or `--max-headers` lines).
    HeadTooLarge,
    /// The request head is not valid HTTP/1.1.
    MalformedRequest(&'static str),
    /// The body is not a JSON object.
    BadJson,
    /// The body nests arrays or objects deeper than the limit.
    TooDeep,
    /// A required field is absent.
    MissingField(&'static str),
    /// A field has the wrong type or an impossible value.
    BadField(&'static str, &'static str),
    /// A channel name breaks the naming rule.
    BadChannel(&'static str),
    /// The connection id names no live connection.
    UnknownConnection,
    /// A shard queue is full: retry after a second.
    Busy,
    /// The channel keeps no history (`--history`).
    NoHistory,
    /// Under `/admin`: no Basic credentials with the admin password.
    AdminUnauthorized,
    /// An `/admin/api/...` request without `X-Gateway-Admin` (what a cross-site form would send).
    AdminHeaderMissing,
    /// The request needs other nodes and the broker is unreachable (503).
    BrokerDown,
    /// The request needs other nodes and is larger than the broker carries (413).
    TooLargeForBroker,
}

impl ApiError {
    /// Status code and reason phrase.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            Self::Unauthorized | Self::AdminUnauthorized => (401, "Unauthorized"),
            Self::AdminHeaderMissing => (403, "Forbidden"),
            Self::NotFound | Self::UnknownConnection | Self::NoHistory => (404, "Not Found"),
            Self::MethodNotAllowed(_) => (405, "Method Not Allowed"),
            Self::LengthRequired => (411, "Length Required"),
            Self::TooLarge { .. } | Self::TooLargeForBroker => (413, "Payload Too Large"),
            Self::HeadTooLarge => (431, "Request Header Fields Too Large"),
            Self::Busy => (429, "Too Many Requests"),
            Self::BrokerDown => (503, "Service Unavailable"),
            Self::MalformedRequest(_)
            | Self::BadJson
            | Self::TooDeep
            | Self::MissingField(_)
            | Self::BadField(..)
            | Self::BadChannel(_) => (400, "Bad Request"),
        }
    }

    /// The machine-readable `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized | Self::AdminUnauthorized => "unauthorized",
            Self::AdminHeaderMissing => "forbidden",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::LengthRequired => "length_required",
            Self::TooLarge { .. } => "too_large",
            Self::HeadTooLarge => "head_too_large",
            Self::MalformedRequest(_) => "bad_request",
            Self::BadJson | Self::TooDeep => "bad_json",
            Self::MissingField(_) => "missing_field",
            Self::BadField(..) => "bad_field",
            Self::BadChannel(_) => "bad_channel",
            Self::UnknownConnection => "unknown_connection",
            Self::Busy => "busy",
            Self::NoHistory => "no_history",
            Self::BrokerDown => "broker_unavailable",
            Self::TooLargeForBroker => "too_large_for_broker",
        }
    }

    /// Extra response headers.
    pub fn extra_headers(&self) -> Vec<(&'static str, &'static str)> {
        match self {
            Self::Unauthorized => vec![("WWW-Authenticate", "Bearer")],
            Self::AdminUnauthorized => vec![(
                "WWW-Authenticate",
                r#"Basic realm="gateway admin", charset="UTF-8""#,
            )],
            Self::MethodNotAllowed(allow) => vec![("Allow", allow)],
            Self::Busy | Self::BrokerDown => vec![("Retry-After", "1")],
            _ => Vec::new(),
        }
    }

    /// True when the connection cannot go on after this answer: the body's extent is unknown
    /// (411), was not read (413), or the head could not be parsed.
    pub fn closes(&self) -> bool {
        matches!(
            self,
            Self::LengthRequired
                | Self::TooLarge { .. }
                | Self::HeadTooLarge
                | Self::MalformedRequest(_)
        )
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unauthorized => {
                f.write_str("missing or wrong API key: send Authorization: Bearer <key>")
            }
            Self::NotFound => f.write_str("no such route"),
            Self::MethodNotAllowed(allow) => write!(f, "method not allowed: use {allow}"),
            Self::LengthRequired => {
                f.write_str("a request body needs Content-Length (chunked bodies are not accepted)")
            }
            Self::TooLarge { limit } => write!(f, "request body over the {limit}-byte limit"),
            Self::HeadTooLarge => f.write_str("request head over the header limit"),
            Self::MalformedRequest(why) => write!(f, "malformed HTTP request: {why}"),
            Self::BadJson => f.write_str("body is not a JSON object"),
            Self::TooDeep => f.write_str("body nests arrays or objects deeper than 64 levels"),
            Self::MissingField(name) => write!(f, "missing field {name}"),
            Self::BadField(name, why) => write!(f, "field {name} {why}"),
            Self::BadChannel(why) => f.write_str(why),
            Self::UnknownConnection => f.write_str("no live connection has this id"),
            Self::Busy => f.write_str("a shard queue is full: retry later"),
            Self::NoHistory => f.write_str("this channel keeps no history (see --history)"),
            Self::AdminUnauthorized => f.write_str(
                "the admin page needs its password (--admin-secret, else the API key) as Basic \
                 credentials",
            ),
            Self::AdminHeaderMissing => {
                f.write_str("admin API requests need the X-Gateway-Admin header")
            }
            Self::BrokerDown => f.write_str(
                "the broker is unreachable: only this node's connections were served; retry later",
            ),
            Self::TooLargeForBroker => f.write_str(
                "larger than the broker carries (its max_payload): only this node's connections \
                 were served",
            ),
        }
    }
}

impl std::error::Error for ApiError {}
