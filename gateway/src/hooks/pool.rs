//! `Pool`: the hooks thread. One mio loop owns every backend connection: per backend a list of
//! idle keep-alive connections, a count of busy ones (at most `max_in_flight`) and a bounded
//! FIFO of calls waiting for one. A call is answered exactly once: by the backend, by its
//! deadline (`timeout`), or at once when the backend is over its queue (`busy`) or its breaker
//! is open. Disconnect events are batched: while one batch is on its way, new events gather
//! for the next.
//!
//! Why a thread of its own and not the shards: a backend sees one pool (not one per shard) and
//! its breaker sees every failure; shard loops stay free of client-side connection code in both
//! drivers; the cost is one queue hop each way, the same hop shards use between themselves.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_queue::ArrayQueue;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use tracing::{debug, warn};

use crate::metrics::HookMetrics;

use super::breaker::Breaker;
use super::http::{encode_request, Response, ResponseReader};
use super::sign::Signer;
use super::{Answer, Call, Deliver, HookError, HookKind, HookSettings};

const WAKE: Token = Token(usize::MAX);
/// Disconnect events kept while the backend is slow; more are dropped (and counted).
const MAX_PENDING_EVENTS: usize = 10_000;
/// How often to retry answers a full shard inbox refused.
const REDELIVER_EVERY: Duration = Duration::from_millis(1);

/// A call on its way.
#[derive(Debug)]
struct Job {
    call: Call,
    deadline: Instant,
    /// Attempts made so far (a retry is a second attempt).
    attempts: u8,
}

/// One connection to a backend.
#[derive(Debug)]
struct Link {
    stream: TcpStream,
    backend: usize,
    /// The call it carries (`None`: idle).
    job: Option<Job>,
    /// The encoded request and how much of it went out.
    out: Vec<u8>,
    sent: usize,
    reader: ResponseReader,
    connected: bool,
}

#[derive(Debug)]
struct BackendState {
    idle: Vec<usize>,
    busy: usize,
    waiting: VecDeque<Job>,
    breaker: Breaker,
}

/// The hooks thread's state. Built by [`super::Hooks::start`].
pub struct Pool {
    poll: Poll,
    inbox: Arc<ArrayQueue<Call>>,
    settings: Arc<HookSettings>,
    signer: Signer,
    metrics: Arc<HookMetrics>,
    deliver: Deliver,
    links: Vec<Option<Link>>,
    free: Vec<usize>,
    backends: Vec<BackendState>,
    undelivered: VecDeque<Answer>,
    /// Disconnect events (JSON objects) waiting for the next batch.
    events: Vec<Vec<u8>>,
    /// A batch of events is on its way.
    events_in_flight: bool,
}

impl Pool {
    /// The pool and the waker shards use to tell it a call is queued.
    pub(super) fn new(
        settings: Arc<HookSettings>,
        inbox: Arc<ArrayQueue<Call>>,
        metrics: Arc<HookMetrics>,
        deliver: Deliver,
    ) -> io::Result<(Pool, Waker)> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKE)?;
        let backends = settings
            .backends
            .iter()
            .map(|_| BackendState {
                idle: Vec::new(),
                busy: 0,
                waiting: VecDeque::new(),
                breaker: Breaker::new(settings.breaker_failures, settings.breaker_cooldown),
            })
            .collect();
        let pool = Pool {
            poll,
            inbox,
            signer: Signer::new(&settings.key),
            settings,
            metrics,
            deliver,
            links: Vec::new(),
            free: Vec::new(),
            backends,
            undelivered: VecDeque::new(),
            events: Vec::new(),
            events_in_flight: false,
        };
        Ok((pool, waker))
    }

    /// Serve calls until the process exits.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            let timeout = self.next_timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                warn!(error = %e, "hooks thread: poll failed; backend calls stop");
                return;
            }
            let now = Instant::now();
            for ev in events.iter() {
                if ev.token() == WAKE {
                    continue;
                }
                let i = ev.token().0;
                let writable = ev.is_writable() || ev.is_error();
                let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
                self.on_event(i, readable, writable, now);
            }
            self.take_calls(now);
            self.expire(now);
            self.send_events(now);
            self.redeliver();
        }
    }

    fn next_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.undelivered.is_empty() {
            return Some(REDELIVER_EVERY);
        }
        let busy = self
            .links
            .iter()
            .flatten()
            .filter_map(|l| l.job.as_ref().map(|j| j.deadline));
        // Every call has the same timeout, so each queue's front is its earliest deadline.
        let waiting = self
            .backends
            .iter()
            .filter_map(|b| b.waiting.front().map(|j| j.deadline));
        busy.chain(waiting)
            .min()
            .map(|d| d.saturating_duration_since(now))
    }

    fn take_calls(&mut self, now: Instant) {
        while let Some(call) = self.inbox.pop() {
            if call.hook == HookKind::Disconnect && call.reply.is_none() {
                if self.events.len() < MAX_PENDING_EVENTS {
                    self.events.push(call.body);
                } else {
                    self.metrics.events_dropped.add(1);
                }
                continue;
            }
            self.metrics.calls[call.hook as usize].add(1);
            let deadline = call.submitted + self.settings.timeout;
            self.admit(
                Job {
                    call,
                    deadline,
                    attempts: 0,
                },
                now,
            );
        }
    }

    /// Every pending disconnect event in one call, when none is on its way.
    fn send_events(&mut self, now: Instant) {
        if self.events_in_flight || self.events.is_empty() {
            return;
        }
        let Some(endpoint) = self.settings.disconnect.clone() else {
            self.events.clear();
            return;
        };
        let mut body = b"{\"events\":[".to_vec();
        for (i, e) in self.events.drain(..).enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&e);
        }
        body.extend_from_slice(b"]}");
        self.events_in_flight = true;
        self.metrics.calls[HookKind::Disconnect as usize].add(1);
        let call = Call {
            hook: HookKind::Disconnect,
            endpoint,
            body,
            reply: None,
            submitted: now,
        };
        let deadline = now + self.settings.timeout;
        self.admit(
            Job {
                call,
                deadline,
                attempts: 0,
            },
            now,
        );
    }

    fn admit(&mut self, job: Job, now: Instant) {
        let b = job.call.endpoint.backend;
        let Some(state) = self.backends.get_mut(b) else {
            return self.finish(job, Err(HookError::Unreachable), now);
        };
        if !state.breaker.allow(now) {
            self.set_breaker_gauge(b);
            return self.finish(job, Err(HookError::CircuitOpen), now);
        }
        self.set_breaker_gauge(b);
        let state = &mut self.backends[b];
        if state.busy < self.settings.max_in_flight {
            self.start(job, now);
        } else if state.waiting.len() < self.settings.max_queued {
            state.waiting.push_back(job);
        } else {
            self.finish(job, Err(HookError::Busy), now);
        }
    }

    /// Put `job` on an idle connection to its backend, or a new one.
    fn start(&mut self, job: Job, now: Instant) {
        let b = job.call.endpoint.backend;
        let i = match self.backends[b].idle.pop() {
            Some(i) => i,
            None => match self.connect(b) {
                Ok(i) => i,
                Err(e) => {
                    debug!(error = %e, backend = %self.settings.backends[b].host, "cannot connect");
                    self.backends[b].busy += 1;
                    return self.failed(b, job, HookError::Unreachable, now);
                }
            },
        };
        self.backends[b].busy += 1;
        let unix_secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let host = &self.settings.backends[b].host;
        let Some(link) = self.links[i].as_mut() else {
            return;
        };
        link.out.clear();
        link.sent = 0;
        encode_request(
            &mut link.out,
            host,
            &job.call.endpoint.path,
            &job.call.body,
            &self.signer,
            unix_secs,
        );
        link.job = Some(job);
        if link.connected {
            self.write(i, now);
        }
    }

    fn connect(&mut self, b: usize) -> io::Result<usize> {
        let mut stream = TcpStream::connect(self.settings.backends[b].addr)?;
        let i = self.free.pop().unwrap_or_else(|| {
            self.links.push(None);
            self.links.len() - 1
        });
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.free.push(i);
            return Err(e);
        }
        let _ = stream.set_nodelay(true);
        self.links[i] = Some(Link {
            stream,
            backend: b,
            job: None,
            out: Vec::new(),
            sent: 0,
            reader: ResponseReader::default(),
            connected: false,
        });
        Ok(i)
    }

    fn on_event(&mut self, i: usize, readable: bool, writable: bool, now: Instant) {
        let Some(link) = self.links.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if !link.connected {
            if !(readable || writable) {
                return;
            }
            match link.stream.take_error() {
                Ok(None) => {}
                Ok(Some(_)) | Err(_) => return self.link_failed(i, HookError::Unreachable, now),
            }
            match link.stream.peer_addr() {
                Ok(_) => link.connected = true,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(_) => return self.link_failed(i, HookError::Unreachable, now),
            }
        }
        if writable {
            self.write(i, now);
        }
        if readable {
            self.read(i, now);
        }
    }

    fn write(&mut self, i: usize, now: Instant) {
        let Some(link) = self.links.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        while link.job.is_some() && link.sent < link.out.len() {
            match link.stream.write(&link.out[link.sent..]) {
                Ok(0) => return self.link_failed(i, HookError::Closed, now),
                Ok(n) => link.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.link_failed(i, HookError::Closed, now),
            }
        }
    }

    fn read(&mut self, i: usize, now: Instant) {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let Some(link) = self.links.get_mut(i).and_then(Option::as_mut) else {
                return;
            };
            match link.stream.read(&mut buf) {
                Ok(0) => {
                    if link.job.is_none() {
                        // An idle keep-alive connection the backend closed.
                        return self.drop_link(i);
                    }
                    return match link.reader.on_eof() {
                        Ok(resp) => self.complete(i, resp, now),
                        Err(_) => self.link_failed(i, HookError::Closed, now),
                    };
                }
                Ok(n) => {
                    if link.job.is_none() {
                        // Bytes nobody asked for: the connection is out of step.
                        return self.drop_link(i);
                    }
                    match link.reader.on_read(&buf[..n]) {
                        Ok(Some(resp)) => return self.complete(i, resp, now),
                        Ok(None) => {}
                        Err(e) => return self.link_failed(i, e.into(), now),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    if link.job.is_none() {
                        return self.drop_link(i);
                    }
                    return self.link_failed(i, HookError::Closed, now);
                }
            }
        }
    }

    /// A complete answer on link `i`.
    fn complete(&mut self, i: usize, resp: Response, now: Instant) {
        let Some(link) = self.links.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let b = link.backend;
        let Some(job) = link.job.take() else {
            return;
        };
        link.reader.reset();
        self.backends[b].busy -= 1;
        if resp.keep_alive {
            self.backends[b].idle.push(i);
        } else {
            self.drop_link(i);
        }
        let result = if (200..300).contains(&resp.status) {
            Ok(resp.body)
        } else {
            Err(HookError::Status(resp.status))
        };
        match result {
            Err(e) if e.is_backend_failure() => self.backends[b].breaker.on_failure(now),
            _ => self.backends[b].breaker.on_success(),
        }
        self.set_breaker_gauge(b);
        self.finish(job, result, now);
        self.pump(b, now);
    }

    /// Link `i` broke (or its call timed out): close it; retry or fail its call.
    fn link_failed(&mut self, i: usize, e: HookError, now: Instant) {
        let Some(link) = self.links.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let b = link.backend;
        let job = link.job.take();
        self.drop_link(i);
        if let Some(job) = job {
            self.failed(b, job, e, now);
        }
    }

    /// `job` (counted busy on backend `b`) failed with `e`.
    fn failed(&mut self, b: usize, mut job: Job, e: HookError, now: Instant) {
        self.backends[b].busy -= 1;
        if e.is_backend_failure() {
            self.backends[b].breaker.on_failure(now);
            self.set_breaker_gauge(b);
        }
        let retry = job.call.hook.idempotent()
            && job.attempts == 0
            && matches!(e, HookError::Unreachable | HookError::Closed)
            && now < job.deadline;
        if retry {
            job.attempts += 1;
            self.admit(job, now);
        } else {
            self.finish(job, Err(e), now);
        }
        self.pump(b, now);
    }

    fn drop_link(&mut self, i: usize) {
        if let Some(mut link) = self.links.get_mut(i).and_then(Option::take) {
            let _ = self.poll.registry().deregister(&mut link.stream);
            self.backends[link.backend].idle.retain(|&x| x != i);
            self.free.push(i);
        }
    }

    /// Start waiting calls while backend `b` has room.
    fn pump(&mut self, b: usize, now: Instant) {
        while self.backends[b].busy < self.settings.max_in_flight {
            let Some(job) = self.backends[b].waiting.pop_front() else {
                return;
            };
            if self.backends[b].breaker.allow(now) {
                self.set_breaker_gauge(b);
                self.start(job, now);
            } else {
                self.set_breaker_gauge(b);
                self.finish(job, Err(HookError::CircuitOpen), now);
            }
        }
    }

    /// Fail every call past its deadline.
    fn expire(&mut self, now: Instant) {
        for i in 0..self.links.len() {
            let due = self.links[i]
                .as_ref()
                .and_then(|l| l.job.as_ref())
                .is_some_and(|j| j.deadline <= now);
            if due {
                self.link_failed(i, HookError::Timeout, now);
            }
        }
        for b in 0..self.backends.len() {
            while self.backends[b]
                .waiting
                .front()
                .is_some_and(|j| j.deadline <= now)
            {
                if let Some(job) = self.backends[b].waiting.pop_front() {
                    self.finish(job, Err(HookError::Timeout), now);
                }
            }
        }
    }

    /// Count the outcome and hand it to the caller.
    fn finish(&mut self, job: Job, result: Result<Vec<u8>, HookError>, now: Instant) {
        let hook = job.call.hook;
        let k = hook as usize;
        self.metrics.latency[k].observe(now.saturating_duration_since(job.call.submitted));
        if let Err(e) = &result {
            self.metrics.errors[k][e.index()].add(1);
            if hook == HookKind::Disconnect {
                self.metrics.events_dropped.add(1);
            }
        }
        if hook == HookKind::Disconnect && job.call.reply.is_none() {
            self.events_in_flight = false;
        }
        let Some(caller) = job.call.reply else {
            return;
        };
        let answer = Answer {
            caller,
            hook,
            result,
        };
        if let Err(answer) = (self.deliver)(answer) {
            self.undelivered.push_back(answer);
        }
    }

    /// Retry answers a full shard inbox refused, oldest first.
    fn redeliver(&mut self) {
        while let Some(answer) = self.undelivered.pop_front() {
            if let Err(answer) = (self.deliver)(answer) {
                self.undelivered.push_front(answer);
                return;
            }
        }
    }

    fn set_breaker_gauge(&self, b: usize) {
        if let Some((_, g)) = self.metrics.breakers.get(b) {
            g.set(self.backends[b].breaker.state() as u64);
        }
    }
}
