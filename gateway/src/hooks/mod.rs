//! Calls from the gateway to backend services: the connect decision before an upgrade,
//! subscribe and publish decisions per channel prefix, client RPCs, and disconnect events. The
//! backend stays a plain HTTP service; the gateway holds the sockets.
//!
//! Shards submit a [`Call`] through their [`Hooks`] handle (a bounded lock-free queue and a
//! wake-up) and never wait: the answer comes back later as an [`Answer`] in the shard's
//! cross-shard inbox, like a message from another shard. One thread per node ([`pool`]) owns
//! every backend connection (HTTP/1.1 keep-alive, [`http`]), with a per-call timeout, a
//! per-backend concurrency limit and queue, retries for idempotent calls only, and a circuit
//! [`breaker`] per backend. Every request is signed ([`sign`]).

pub mod breaker;
pub mod http;
pub mod pool;
pub mod sign;

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use mio::Waker;

use crate::conn::ConnId;
use crate::metrics::HookMetrics;

use self::http::ResponseError;

/// What a call asks the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookKind {
    /// May this client connect (before the `101`)?
    Connect = 0,
    /// May this connection subscribe to this channel?
    Subscribe = 1,
    /// May this connection publish this data (perhaps rewritten)?
    Publish = 2,
    /// A client's remote procedure call.
    Rpc = 3,
    /// Connections that went away (fire-and-forget, batched).
    Disconnect = 4,
    /// A `/raw` connection's messages from one read, forwarded.
    Forward = 5,
}

impl HookKind {
    /// Every hook, in index order (the order of `metrics::HOOK_KINDS`).
    pub const ALL: [HookKind; 6] = [
        HookKind::Connect,
        HookKind::Subscribe,
        HookKind::Publish,
        HookKind::Rpc,
        HookKind::Disconnect,
        HookKind::Forward,
    ];

    /// Whether repeating the call is harmless: only decisions are retried, never a call that
    /// may change something on the backend (an RPC, a publish, an event).
    pub fn idempotent(self) -> bool {
        matches!(self, HookKind::Connect | HookKind::Subscribe)
    }

    /// The metric label.
    pub fn label(self) -> &'static str {
        crate::metrics::HOOK_KINDS[self as usize]
    }
}

/// Why a call got no usable answer. Each has a stable code clients see (see `hooks.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookError {
    /// The backend's queue (`--hook-max-queued`) or the hooks thread's inbox is full.
    Busy,
    /// The backend's circuit breaker is open: it failed repeatedly and is not asked for now.
    CircuitOpen,
    /// No complete answer within `--hook-timeout`.
    Timeout,
    /// The backend's address refused or could not be reached.
    Unreachable,
    /// The backend closed or reset the connection before its answer was complete.
    Closed,
    /// The answer was not valid HTTP (or not acceptable; see [`ResponseError`]), or its body
    /// was not the expected JSON.
    BadResponse,
    /// The backend answered with a status other than 2xx.
    Status(u16),
}

impl HookError {
    /// The index of its `kind` label in `metrics::HOOK_ERRORS`.
    pub fn index(self) -> usize {
        match self {
            HookError::Busy => 0,
            HookError::CircuitOpen => 1,
            HookError::Timeout => 2,
            HookError::Unreachable => 3,
            HookError::Closed => 4,
            HookError::BadResponse => 5,
            HookError::Status(_) => 6,
        }
    }

    /// The label (also the `detail` clients see).
    pub fn label(self) -> &'static str {
        crate::metrics::HOOK_ERRORS[self.index()]
    }

    /// A sentence for clients and logs.
    pub fn message(self) -> &'static str {
        match self {
            HookError::Busy => "the backend has too many calls waiting",
            HookError::CircuitOpen => "the backend is failing and is not being called for now",
            HookError::Timeout => "the backend did not answer in time",
            HookError::Unreachable => "the backend cannot be reached",
            HookError::Closed => "the backend closed the connection before answering",
            HookError::BadResponse => "the backend's answer is malformed",
            HookError::Status(_) => "the backend answered with an error status",
        }
    }

    /// Whether it speaks against the backend's health (counts toward its breaker).
    fn is_backend_failure(self) -> bool {
        match self {
            HookError::Busy | HookError::CircuitOpen => false,
            HookError::Status(s) => s >= 500,
            _ => true,
        }
    }
}

impl From<ResponseError> for HookError {
    fn from(_: ResponseError) -> HookError {
        HookError::BadResponse
    }
}

/// A backend: where to connect, and the `Host` header to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    /// The resolved address.
    pub addr: SocketAddr,
    /// `host:port` as configured.
    pub host: String,
}

/// Where one hook's calls go: a backend (index into [`HookSettings::backends`]) and a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The backend's index.
    pub backend: usize,
    /// The request path (with any query).
    pub path: Arc<str>,
}

/// The connect hook: where, and what of the client's request to forward.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectHook {
    /// Where to POST.
    pub endpoint: Option<Endpoint>,
    /// Request headers to forward (lowercase names).
    pub headers: Vec<String>,
    /// Cookies to forward (by name); non-empty requires an Origin allow-list.
    pub cookies: Vec<String>,
}

/// Every configured hook and the transport's limits.
#[derive(Clone, Debug)]
pub struct HookSettings {
    /// The distinct backends the URLs name.
    pub backends: Vec<Backend>,
    /// Before each upgrade on `/ws`, `/raw` and `/broadcast`.
    pub connect: ConnectHook,
    /// Per channel prefix (longest match wins): subscribe decisions.
    pub subscribe: Vec<(String, Endpoint)>,
    /// Per channel prefix (longest match wins): publish decisions.
    pub publish: Vec<(String, Endpoint)>,
    /// The `rpc` op.
    pub rpc: Option<Endpoint>,
    /// Disconnect events.
    pub disconnect: Option<Endpoint>,
    /// Every client message on `/raw`, batched per read.
    pub forward: Option<Endpoint>,
    /// The HMAC key requests are signed with.
    pub key: Vec<u8>,
    /// Per call, from submission to answer.
    pub timeout: Duration,
    /// Calls in flight per backend (each on its own keep-alive connection).
    pub max_in_flight: usize,
    /// Calls waiting per backend beyond those in flight; more fail `busy` at once.
    pub max_queued: usize,
    /// Failures in a row that open a backend's breaker.
    pub breaker_failures: u32,
    /// How long an open breaker refuses calls before a trial.
    pub breaker_cooldown: Duration,
    /// Unanswered calls per client connection before the gateway stops reading it.
    pub max_calls_per_conn: usize,
}

impl HookSettings {
    /// Any hook configured at all.
    pub fn any(&self) -> bool {
        self.connect.endpoint.is_some()
            || !self.subscribe.is_empty()
            || !self.publish.is_empty()
            || self.rpc.is_some()
            || self.disconnect.is_some()
            || self.forward.is_some()
    }

    /// The endpoint of the longest prefix in `rules` that `channel` starts with.
    pub fn by_prefix<'a>(rules: &'a [(String, Endpoint)], channel: &str) -> Option<&'a Endpoint> {
        rules
            .iter()
            .filter(|(p, _)| channel.starts_with(p.as_str()))
            .max_by_key(|(p, _)| p.len())
            .map(|(_, e)| e)
    }

    /// The endpoint for `url` (`http://host[:port]/path`), adding its backend if new.
    pub fn endpoint(&mut self, url: &str) -> Result<Endpoint, String> {
        let (host, path) = parse_url(url)?;
        let addr = host
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {host:?} in {url:?}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host:?} in {url:?} resolves to no address"))?;
        let backend = match self.backends.iter().position(|b| b.host == host) {
            Some(i) => i,
            None => {
                self.backends.push(Backend { addr, host });
                self.backends.len() - 1
            }
        };
        Ok(Endpoint {
            backend,
            path: Arc::from(path),
        })
    }
}

impl Default for HookSettings {
    fn default() -> Self {
        HookSettings {
            backends: Vec::new(),
            connect: ConnectHook::default(),
            subscribe: Vec::new(),
            publish: Vec::new(),
            rpc: None,
            disconnect: None,
            forward: None,
            key: Vec::new(),
            timeout: Duration::from_secs(5),
            max_in_flight: 64,
            max_queued: 1024,
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(5),
            max_calls_per_conn: 16,
        }
    }
}

/// `http://host[:port]/path` as (`host:port`, `/path`).
fn parse_url(url: &str) -> Result<(String, String), String> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(format!(
            "{url:?}: backend URLs are http://host:port/path (https is not supported: reach the \
             backend over a private network or a local TLS proxy)"
        ));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("{url:?}: no host, or credentials in the URL"));
    }
    let host = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.contains(']'))
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!(
            "{url:?}: the path has spaces or control characters"
        ));
    }
    Ok((host, path.to_owned()))
}

/// Who waits for a call's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The connection (its shard gets the answer).
    pub conn: ConnId,
    /// The call's tag on that shard.
    pub tag: u64,
}

/// One call, from a shard to the hooks thread.
#[derive(Debug)]
pub struct Call {
    /// Which hook.
    pub hook: HookKind,
    /// Where to.
    pub endpoint: Endpoint,
    /// The JSON body.
    pub body: Vec<u8>,
    /// Who gets the answer (`None`: fire-and-forget).
    pub reply: Option<Caller>,
    /// When the shard submitted it (the timeout and the latency count from here).
    pub submitted: Instant,
}

/// A call's outcome, from the hooks thread to the caller's shard.
#[derive(Debug)]
pub struct Answer {
    /// Who asked.
    pub caller: Caller,
    /// Which hook.
    pub hook: HookKind,
    /// The 2xx answer's body, or why there is none.
    pub result: Result<Vec<u8>, HookError>,
}

/// Hands an answer to its caller's shard; gives it back when that shard's inbox is full.
pub type Deliver = Box<dyn FnMut(Answer) -> Result<(), Answer> + Send>;

/// The shards' side of the hooks thread: submit calls, read the configuration.
#[derive(Clone)]
pub struct Hooks {
    inbox: Arc<ArrayQueue<Call>>,
    waker: Arc<Waker>,
    /// What is configured.
    pub settings: Arc<HookSettings>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("queued", &self.inbox.len())
            .finish()
    }
}

impl Hooks {
    /// Start the hooks thread for `settings`; answers go out through `deliver`.
    pub fn start(
        settings: HookSettings,
        metrics: Arc<HookMetrics>,
        deliver: Deliver,
    ) -> io::Result<Hooks> {
        let settings = Arc::new(settings);
        // Room for every call the backends can hold, so a full inbox means real overload.
        let capacity = (settings.max_in_flight + settings.max_queued)
            .saturating_mul(settings.backends.len().max(1))
            .clamp(1024, 1 << 20);
        let inbox = Arc::new(ArrayQueue::new(capacity));
        let (pool, waker) =
            pool::Pool::new(Arc::clone(&settings), Arc::clone(&inbox), metrics, deliver)?;
        std::thread::Builder::new()
            .name("hooks".into())
            .spawn(move || pool.run())?;
        Ok(Hooks {
            inbox,
            waker: Arc::new(waker),
            settings,
        })
    }

    /// Queue `call` for the hooks thread; gives it back when the queue is full (`busy`).
    pub fn submit(&self, call: Call) -> Result<(), Call> {
        self.inbox.push(call)?;
        let _ = self.waker.wake();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_backend_and_a_path() {
        assert_eq!(
            parse_url("http://127.0.0.1:9000/hooks/connect?x=1"),
            Ok(("127.0.0.1:9000".into(), "/hooks/connect?x=1".into()))
        );
        assert_eq!(
            parse_url("http://localhost"),
            Ok(("localhost:80".into(), "/".into()))
        );
        assert!(parse_url("https://a/b").is_err());
        assert!(parse_url("http:///b").is_err());
        assert!(parse_url("http://u:p@a/b").is_err());
        assert!(parse_url("http://a/b c").is_err());
    }

    #[test]
    fn endpoints_share_a_backend_per_host_and_prefixes_match_longest() {
        let mut s = HookSettings::default();
        let a = s.endpoint("http://127.0.0.1:9/a").unwrap();
        let b = s.endpoint("http://127.0.0.1:9/b").unwrap();
        let c = s.endpoint("http://127.0.0.1:10/c").unwrap();
        assert_eq!((a.backend, b.backend, c.backend), (0, 0, 1));
        let rules = vec![("".to_owned(), a.clone()), ("chat:".to_owned(), b.clone())];
        assert_eq!(HookSettings::by_prefix(&rules, "chat:1"), Some(&b));
        assert_eq!(HookSettings::by_prefix(&rules, "news"), Some(&a));
        assert_eq!(HookSettings::by_prefix(&rules[1..], "news"), None);
    }

    #[test]
    fn hook_and_error_labels_follow_the_metric_tables() {
        for k in HookKind::ALL {
            assert_eq!(k.label(), crate::metrics::HOOK_KINDS[k as usize]);
        }
        assert_eq!(HookError::Status(500).label(), "status");
        assert_eq!(HookError::CircuitOpen.label(), "circuit_open");
        assert!(HookKind::Connect.idempotent() && !HookKind::Rpc.idempotent());
    }
}
