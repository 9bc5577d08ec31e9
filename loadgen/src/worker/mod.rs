//! A client worker: one pinned thread running a mio loop over its share of the connections. It
//! opens connections on the plan's ramp, drives each sans-IO [`Conn`], sends on the open-loop
//! schedule (or closed loop), and measures into its own [`Meter`]. The coordinator steers it only
//! through the [`Shared`] phase word and a mio `Waker`; it reports once per second with a [`Tick`].
//!
//! Timing: the next deadline (connect ramp, send schedule, departures, timeouts, second ticks) is
//! armed on a timerfd, so sends leave within microseconds of their intended time, not rounded up
//! to epoll's millisecond timeout; latency is still measured from the intended time.

mod churn;
mod connect;
mod finish;
pub mod meter;
mod socket;
mod traffic;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use crate::client::{Event, Proto, State};
use crate::clock::{ns, Clock, SEC};
use crate::payload::SeqTrack;
use crate::plan::{ConnSpec, Plan, Role, SendMode};
use crate::tls::Stream;
use meter::{Meter, Storm};
pub use meter::{Tick, WorkerResult};

/// Phases the coordinator moves the workers through.
pub mod phase {
    /// Opening the planned connections.
    pub const CONNECT: u8 = 0;
    /// Warm-up then measured sending.
    pub const RUN: u8 = 1;
    /// Sending stopped; waiting for replies and deliveries.
    pub const DRAIN: u8 = 2;
    /// Close everything and report.
    pub const STOP: u8 = 3;
}

/// State shared by the coordinator and the workers; touched once per loop iteration, not per
/// message (publish counters are plain stores by their only writer).
pub struct Shared {
    /// One of [`phase`].
    pub phase: AtomicU8,
    /// When the run phase started (ns since the clock's start).
    pub run_start_ns: AtomicU64,
    /// Publishes sent so far, per global publisher id.
    pub sent_by_pub: Vec<AtomicU64>,
    /// Replies and deliveries the sends so far call for.
    pub expected: AtomicU64,
    /// Replies and deliveries seen so far.
    pub delivered: AtomicU64,
    /// Workers whose planned connections are all open or failed.
    pub connect_done: AtomicUsize,
    /// Workers that saw the drain phase and published their last counts.
    pub drain_acks: AtomicUsize,
    /// Handshakes completed so far (all workers).
    pub connected: AtomicU64,
}

impl Shared {
    /// Fresh shared state for `publishers` publisher ids.
    pub fn new(publishers: usize) -> Shared {
        Shared {
            phase: AtomicU8::new(phase::CONNECT),
            run_start_ns: AtomicU64::new(u64::MAX),
            sent_by_pub: (0..publishers).map(|_| AtomicU64::new(0)).collect(),
            expected: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            connect_done: AtomicUsize::new(0),
            drain_acks: AtomicUsize::new(0),
            connected: AtomicU64::new(0),
        }
    }
}

const WAKER: Token = Token(usize::MAX - 1);
const TIMER: Token = Token(usize::MAX - 2);
/// Handshakes in progress per worker when the connect rate is unlimited (keeps the server's
/// accept backlog from overflowing into SYN retries that would look like server latency).
const MAX_PENDING_HANDSHAKES: usize = 512;
const READ_BUF: usize = 256 * 1024;

/// Per planned connection: survives reconnects.
#[derive(Default)]
struct SpecState {
    slot: Option<usize>,
    tracks: Vec<SeqTrack>,
    foreign: u64,
    seq: u64,
    initial: bool,
    resolved: bool,
}

struct Slot {
    sock: Stream,
    conn: Proto,
    spec: usize,
    gen: u32,
    tcp_up: bool,
    intended: u64,
    storm: bool,
    inflight: VecDeque<u64>,
    /// The echo message, encoded and masked once for this connection (echo sends the same
    /// payload every time); `None` until the first echo or when it is compressed per message.
    echo_frame: Option<Vec<u8>>,
    dirty: bool,
    /// A group member whose subscribe request is not answered yet: it is not ready (deliveries
    /// are not due to it) until the reply arrives.
    awaiting_ack: bool,
}

/// Everything a worker needs to start.
pub struct WorkerInit {
    /// Worker index.
    pub id: usize,
    /// Its connections (global plan order).
    pub specs: Vec<ConnSpec>,
    /// The plan.
    pub plan: Arc<Plan>,
    /// Steering.
    pub shared: Arc<Shared>,
    /// The run's clock.
    pub clock: Clock,
    /// Where ticks go.
    pub ticks: Sender<Tick>,
    /// Share of the connect rate this worker carries (0..=1): its share of the connections.
    pub connect_share: f64,
    /// Share of the open-loop rate (0..=1): its share of the sending connections.
    pub send_share: f64,
}

/// Create the worker's poll and waker (the waker goes to the coordinator first).
pub fn poll_and_waker() -> io::Result<(Poll, Arc<Waker>)> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    Ok((poll, waker))
}

struct Worker {
    id: usize,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    clock: Clock,
    ticks: Sender<Tick>,
    poll: Poll,
    timer: TimerFd,
    armed: u64,
    rng: fastrand::Rng,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    next_gen: u32,
    specs: Vec<ConnSpec>,
    state: Vec<SpecState>,
    connect_queue: VecDeque<(u64, usize)>,
    connect_interval: f64,
    pending_handshakes: usize,
    timeouts: VecDeque<(u64, usize, u32)>,
    departures: BinaryHeap<Reverse<(u64, usize, u32)>>,
    senders: Vec<usize>,
    rr: usize,
    send_rate: f64,
    send_k: u64,
    send_origin: u64,
    next_send: Option<u64>,
    churn_next: Option<u64>,
    churn_k: u64,
    storm_at: Option<u64>,
    storm: Storm,
    storm_start: u64,
    open: u64,
    unresolved: usize,
    phase: u8,
    run_start: u64,
    next_tick: u64,
    cpu_start: Option<u64>,
    cpu_window: u64,
    cpu_sampled: bool,
    unsent: u64,
    meter: Meter,
    buf: Vec<u8>,
    scratch: Vec<u8>,
    dirty: Vec<usize>,
}

/// Run a worker until the coordinator says stop.
pub fn run(init: WorkerInit, poll: Poll) -> io::Result<WorkerResult> {
    let timer = TimerFd::new(
        ClockId::CLOCK_MONOTONIC,
        TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    poll.registry().register(
        &mut SourceFd(&timer.as_fd().as_raw_fd()),
        TIMER,
        Interest::READABLE,
    )?;
    let plan = init.plan;
    let state: Vec<SpecState> = init
        .specs
        .iter()
        .map(|s| SpecState {
            tracks: match s.role {
                Role::Member {
                    group,
                    subscriber: true,
                    ..
                } => vec![SeqTrack::default(); plan.groups[group as usize].publishers.len()],
                _ => Vec::new(),
            },
            initial: true,
            ..SpecState::default()
        })
        .collect();
    let senders = init
        .specs
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            matches!(
                s.role,
                Role::Echo
                    | Role::Rpc
                    | Role::Member {
                        publisher: Some(_),
                        ..
                    }
            )
        })
        .map(|(i, _)| i)
        .collect();
    let connect_rate = plan.connect_rate * init.connect_share;
    let send_rate = match plan.send {
        SendMode::OpenLoop { rate } => rate * init.send_share,
        _ => 0.0,
    };
    let mut w = Worker {
        id: init.id,
        unresolved: init.specs.len(),
        connect_queue: (0..init.specs.len()).map(|i| (0, i)).collect(),
        connect_interval: if connect_rate > 0.0 {
            SEC as f64 / connect_rate
        } else {
            0.0
        },
        specs: init.specs,
        state,
        plan,
        shared: init.shared,
        clock: init.clock,
        ticks: init.ticks,
        poll,
        timer,
        armed: 0,
        rng: fastrand::Rng::with_seed(
            init.clock.unix_ns(0) ^ (init.id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        ),
        slots: Vec::new(),
        free: Vec::new(),
        next_gen: 0,
        pending_handshakes: 0,
        timeouts: VecDeque::new(),
        departures: BinaryHeap::new(),
        senders,
        rr: 0,
        send_rate,
        send_k: 0,
        send_origin: 0,
        next_send: None,
        churn_next: None,
        churn_k: 0,
        storm_at: None,
        storm: Storm::default(),
        storm_start: 0,
        open: 0,
        phase: phase::CONNECT,
        run_start: u64::MAX,
        next_tick: SEC,
        cpu_start: None,
        cpu_window: 0,
        cpu_sampled: false,
        unsent: 0,
        meter: Meter::new(),
        buf: vec![0; READ_BUF],
        scratch: Vec::new(),
        dirty: Vec::new(),
    };
    // Intended connect times on the ramp, from now.
    let start = w.clock.now_ns();
    let interval = w.connect_interval;
    for (k, entry) in w.connect_queue.iter_mut().enumerate() {
        entry.0 = start + (k as f64 * interval) as u64;
    }
    if w.unresolved == 0 {
        w.shared.connect_done.fetch_add(1, Ordering::AcqRel);
    }
    w.event_loop()?;
    Ok(w.finish())
}

impl Worker {
    fn event_loop(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = self.clock.now_ns();
            if !self.on_phase(now) {
                return Ok(());
            }
            self.do_connects(now);
            self.do_timeouts(now);
            self.do_sends(now);
            self.do_churn(now);
            self.flush_dirty();
            self.do_ticks(now);
            self.publish_counts();
            self.arm_timer(now)?;
            match self.poll.poll(&mut events, None) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for (i, ev) in events.iter().enumerate() {
                // A fresh clock per socket: a message read late in a long batch is timed when it
                // is read, not when the batch started.
                let now = self.clock.now_ns();
                match ev.token() {
                    WAKER => {}
                    TIMER => {
                        let _ = self.timer.wait();
                        self.armed = 0;
                    }
                    Token(idx) => {
                        let side = ReadSide {
                            readable: ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                            closing: ev.is_read_closed() || ev.is_error(),
                        };
                        self.on_socket(idx, now, side)
                    }
                }
                // Keep the send schedule while a large batch of deliveries is being read.
                if i % 64 == 63 {
                    self.do_sends(now);
                    self.flush_dirty();
                }
            }
        }
    }

    /// Follow the coordinator's phase; false when it is time to stop.
    fn on_phase(&mut self, now: u64) -> bool {
        let phase = self.shared.phase.load(Ordering::Acquire);
        if phase != self.phase {
            let started = self.shared.run_start_ns.load(Ordering::Acquire) != u64::MAX;
            if self.phase == phase::CONNECT && started {
                self.start_run();
            }
            if phase >= phase::DRAIN && self.phase < phase::DRAIN {
                if self.phase == phase::RUN {
                    // The window closed while this thread was behind its schedule: what was due
                    // before the window's end still goes out (late, and its lag is recorded), so
                    // the run sends exactly rate x time instead of silently dropping the tail.
                    self.do_sends(now);
                    self.do_churn(now);
                }
                self.next_send = None;
                self.churn_next = None;
                self.sample_cpu_end();
                self.publish_counts();
                self.shared.drain_acks.fetch_add(1, Ordering::AcqRel);
            }
            self.phase = phase;
        }
        if self.phase == phase::RUN {
            if self.cpu_start.is_none() && !self.cpu_sampled && now >= self.meter.window_start {
                self.cpu_start = Some(thread_cpu_ns());
            }
            if now >= self.meter.window_end {
                self.sample_cpu_end();
            }
        }
        self.phase != phase::STOP
    }

    fn sample_cpu_end(&mut self) {
        if let Some(start) = self.cpu_start.take() {
            self.cpu_sampled = true;
            self.cpu_window = thread_cpu_ns().saturating_sub(start);
        }
    }

    fn start_run(&mut self) {
        let run_start = self.shared.run_start_ns.load(Ordering::Acquire);
        self.run_start = run_start;
        self.meter.window_start = run_start.saturating_add(ns(self.plan.warmup));
        self.meter.window_end = self
            .meter
            .window_start
            .saturating_add(ns(self.plan.duration));
        if self.send_rate > 0.0 && !self.senders.is_empty() {
            // Stagger workers inside the first interval so they do not send in lockstep.
            let jitter = self.rng.u64(0..=(SEC as f64 / self.send_rate) as u64);
            self.send_origin = run_start + jitter;
            self.next_send = Some(self.send_origin);
            self.send_k = 0;
        }
        if let SendMode::ClosedLoop { window } = self.plan.send {
            for spec in 0..self.specs.len() {
                if let Some(idx) = self.state[spec].slot {
                    for _ in 0..window {
                        self.send_echo(idx, run_start);
                    }
                }
            }
        }
        if let Some(churn) = self.plan.churn {
            if churn.rate > 0.0 {
                self.churn_next = Some(run_start);
                self.churn_k = 0;
            }
            self.storm_at = churn.storm.map(|(_, at)| run_start + ns(at));
            for spec in 0..self.specs.len() {
                if let Some(idx) = self.state[spec].slot {
                    self.schedule_departure(idx, run_start);
                }
            }
        }
    }

    fn on_socket(&mut self, idx: usize, now: u64, side: ReadSide) {
        let Some(slot) = self.slots.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        if !slot.tcp_up {
            match slot.sock.tcp.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => {
                    return self.drop_slot(idx, Close::Failed(socket::reason(&e), e.to_string()))
                }
            }
            match slot.sock.tcp.peer_addr() {
                Ok(_) => {
                    slot.tcp_up = true;
                    let _ = slot.sock.tcp.set_nodelay(true);
                    if let Proto::Api(api) = &mut slot.conn {
                        // HTTP has no handshake: the API connection is open with TCP.
                        api.on_connected();
                        let latency = now.saturating_sub(slot.intended);
                        self.meter.on_connected(latency);
                        self.on_open(idx, now);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => {
                    return self.drop_slot(idx, Close::Failed(socket::reason(&e), e.to_string()))
                }
            }
        }
        self.on_readable(idx, now, side);
        self.flush(idx);
    }

    fn on_readable(&mut self, idx: usize, now: u64, side: ReadSide) {
        let mut replies = 0u32;
        let mut opened = false;
        let mut acked = false;
        let mut answers: Vec<Vec<u8>> = Vec::new();
        let mut outcome: Option<Close> = None;
        {
            let Worker {
                slots,
                buf,
                state,
                meter,
                plan,
                clock,
                ..
            } = self;
            let Some(slot) = slots[idx].as_mut() else {
                return;
            };
            let spec_state = &mut state[slot.spec];
            let role = self.specs[slot.spec].role;
            let plain = slot.sock.is_plain();
            if plain && !side.readable {
                // A writable edge only (a connect completing, send space freed): nothing to read.
                return;
            }
            loop {
                let n = match slot.sock.read(buf) {
                    Ok(0) => {
                        outcome = Some(Close::Lost("closed by server".into()));
                        break;
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        outcome = Some(Close::Lost(socket::reason(&e)));
                        break;
                    }
                };
                let intended_connect = slot.intended;
                let inflight = &mut slot.inflight;
                let awaiting_ack = &mut slot.awaiting_ack;
                let answers = &mut answers;
                let result = slot.conn.on_read(&buf[..n], |ev| match ev {
                    Event::Open => {
                        opened = true;
                        meter.on_connected(now.saturating_sub(intended_connect));
                    }
                    Event::Message { payload, .. } => match role {
                        Role::Echo => {
                            if let Some(sent) = inflight.pop_front() {
                                meter.on_received(sent, now.saturating_sub(sent), payload.len());
                                replies += 1;
                            }
                        }
                        Role::Rpc => {
                            // A failed call is not counted as received: it shows as loss.
                            if let Some(sent) = traffic::rpc_reply(payload) {
                                meter.on_received(sent, now.saturating_sub(sent), payload.len());
                            }
                        }
                        Role::Member {
                            group, subscriber, ..
                        } => {
                            let member = traffic::Member {
                                group,
                                subscriber,
                                awaiting_ack,
                                answers,
                            };
                            acked |= traffic::on_member_message(
                                plan, clock, meter, spec_state, member, payload, now,
                            );
                        }
                        Role::Plain => {}
                    },
                    Event::Status(code) => {
                        let ok = (200..300).contains(&code);
                        if !ok {
                            meter.on_api_error(code);
                        }
                        if role == Role::Rpc {
                            // A direct call: HTTP/1.1 answers come in request order.
                            if let Some(sent) = inflight.pop_front().filter(|_| ok) {
                                meter.on_received(sent, now.saturating_sub(sent), 0);
                            }
                        }
                    }
                    Event::Close(code) => {
                        outcome = Some(Close::Lost(match code {
                            Some(c) => format!("close {c}"),
                            None => "close".into(),
                        }));
                    }
                });
                if let Err(e) = result {
                    outcome = Some(Close::Failed(e.reason(), e.to_string()));
                    break;
                }
                if outcome.is_some() {
                    break;
                }
                if plain && n < buf.len() && !side.closing {
                    // A short read emptied the socket: bytes arriving from now on raise a new
                    // edge, so the read that would only say EAGAIN is skipped. When the event
                    // also reported the peer's FIN or an error, read on to see it now.
                    break;
                }
            }
        }
        if !answers.is_empty() {
            if let Some(slot) = self.slots[idx].as_mut() {
                for a in answers.drain(..) {
                    slot.conn.send(frame_simd::Opcode::Text, &a);
                }
                if !slot.dirty {
                    slot.dirty = true;
                    self.dirty.push(idx);
                }
            }
        }
        if opened {
            self.on_open(idx, now);
        }
        if acked {
            if let Some(spec) = self.slots[idx].as_ref().map(|s| s.spec) {
                self.resolve(spec);
            }
        }
        if replies > 0 && self.phase == phase::RUN && now < self.meter.window_end {
            if let SendMode::ClosedLoop { .. } = self.plan.send {
                for _ in 0..replies {
                    self.send_echo(idx, now);
                }
            }
        }
        if let Some(close) = outcome {
            self.flush(idx);
            self.drop_slot(idx, close);
        }
    }

    fn on_open(&mut self, idx: usize, now: u64) {
        self.pending_handshakes = self.pending_handshakes.saturating_sub(1);
        self.open += 1;
        self.shared.connected.fetch_add(1, Ordering::Relaxed);
        let Some(slot) = self.slots[idx].as_mut() else {
            return;
        };
        let spec = slot.spec;
        if slot.storm {
            self.storm.reconnected += 1;
            self.storm.all_back_ns = self
                .storm
                .all_back_ns
                .max(now.saturating_sub(self.storm_start));
        }
        let st = &self.state[spec];
        if st.initial && !st.resolved {
            self.meter.connect_phase.on_open(now);
        }
        let mut ready = true;
        if let Role::Member {
            group,
            publisher,
            subscriber,
        } = self.specs[spec].role
        {
            let msgs = self
                .plan
                .adapter
                .open_messages(group, publisher.is_some(), subscriber);
            if !msgs.is_empty() {
                if let Some(slot) = self.slots[idx].as_mut() {
                    for msg in &msgs {
                        slot.conn.send(frame_simd::Opcode::Text, msg.as_bytes());
                    }
                    // Publishes start once every member is ready: a member is subscribed when
                    // its reply arrives, not when its request leaves.
                    slot.awaiting_ack = subscriber && self.plan.adapter.subscribe_is_acked();
                    ready = !slot.awaiting_ack;
                    if !slot.dirty {
                        slot.dirty = true;
                        self.dirty.push(idx);
                    }
                }
            }
        }
        if ready {
            self.resolve(spec);
        }
        if self.phase == phase::RUN {
            if let SendMode::ClosedLoop { window } = self.plan.send {
                for _ in 0..window {
                    self.send_echo(idx, now);
                }
            }
            if self.plan.churn.is_some() {
                self.schedule_departure(idx, now);
            }
        }
    }

    fn flush_dirty(&mut self) {
        while let Some(idx) = self.dirty.pop() {
            if let Some(s) = self.slots[idx].as_mut() {
                s.dirty = false;
            }
            self.flush(idx);
        }
    }

    /// Write what the connection owes; the rest waits for the next writable event.
    fn flush(&mut self, idx: usize) {
        let Some(slot) = self.slots[idx].as_mut() else {
            return;
        };
        if !slot.tcp_up {
            return;
        }
        if let Err(e) = slot.sock.flush_tls() {
            return self.drop_slot(idx, Close::Lost(socket::reason(&e)));
        }
        loop {
            let pending = slot.conn.tx_pending();
            if pending.is_empty() {
                break;
            }
            match slot.sock.write(pending) {
                Ok(n) => slot.conn.on_written(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let reason = socket::reason(&e);
                    let close = if slot.conn.state() == State::AwaitResponse {
                        Close::Failed(reason, e.to_string())
                    } else {
                        Close::Lost(reason)
                    };
                    return self.drop_slot(idx, close);
                }
            }
        }
    }

    /// Remove a connection, counting why.
    fn drop_slot(&mut self, idx: usize, close: Close) {
        let Some(mut slot) = self.slots[idx].take() else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut slot.sock.tcp);
        self.free.push(idx);
        if self.state[slot.spec].slot == Some(idx) {
            self.state[slot.spec].slot = None;
        }
        let was_open = matches!(slot.conn.state(), State::Open | State::Closing)
            || (slot.conn.state() == State::Closed && !matches!(close, Close::Failed(..)));
        if was_open {
            self.open = self.open.saturating_sub(1);
        } else {
            self.pending_handshakes = self.pending_handshakes.saturating_sub(1);
        }
        match close {
            Close::Failed(reason, message) => {
                if was_open {
                    self.meter.on_closed(false, &reason);
                } else {
                    self.connect_failed(slot.spec, reason, message);
                }
            }
            Close::Lost(reason) => {
                if was_open {
                    if self.phase < phase::STOP {
                        self.meter.on_closed(false, &reason);
                    }
                } else {
                    let message = format!("connection {reason} during the handshake");
                    self.connect_failed(slot.spec, reason, message);
                }
            }
            Close::Leave | Close::Stop => {
                slot.conn.close(1000);
                if slot.tcp_up {
                    let _ = slot.sock.write(slot.conn.tx_pending());
                }
                let _ = slot.sock.flush_tls();
                let _ = slot.sock.tcp.shutdown(std::net::Shutdown::Write);
                if was_open {
                    self.meter.on_closed(true, "");
                } else {
                    self.resolve(slot.spec);
                }
            }
            Close::Storm => self.meter.on_closed(true, ""),
        }
        if slot.awaiting_ack {
            // Never subscribed: the connect phase must not wait for it.
            self.resolve(slot.spec);
        }
    }

    fn do_ticks(&mut self, now: u64) {
        while now >= self.next_tick {
            let second = self.next_tick / SEC - 1;
            let tick = self.meter.take_second(self.id, second, self.open);
            let _ = self.ticks.send(tick);
            self.next_tick += SEC;
        }
    }

    /// Hand the drain counters to the coordinator (once per loop iteration, not per message).
    fn publish_counts(&mut self) {
        if self.meter.pending_expected > 0 {
            self.shared
                .expected
                .fetch_add(self.meter.pending_expected, Ordering::AcqRel);
            self.meter.pending_expected = 0;
        }
        if self.meter.pending_delivered > 0 {
            self.shared
                .delivered
                .fetch_add(self.meter.pending_delivered, Ordering::AcqRel);
            self.meter.pending_delivered = 0;
        }
    }

    fn next_deadline(&self) -> u64 {
        let mut next = self.next_tick;
        if let Some(&(t, _)) = self.connect_queue.front() {
            if self.connect_interval > 0.0 || self.pending_handshakes < MAX_PENDING_HANDSHAKES {
                next = next.min(t);
            }
        }
        for t in [self.next_send, self.churn_next, self.storm_at]
            .into_iter()
            .flatten()
        {
            next = next.min(t);
        }
        if let Some(&(t, _, _)) = self.timeouts.front() {
            next = next.min(t);
        }
        if let Some(Reverse((t, _, _))) = self.departures.peek() {
            next = next.min(*t);
        }
        if self.phase == phase::RUN {
            for t in [self.meter.window_start, self.meter.window_end] {
                if t > self.clock.now_ns() {
                    next = next.min(t);
                }
            }
        }
        next
    }

    fn arm_timer(&mut self, now: u64) -> io::Result<()> {
        let next = self.next_deadline();
        if next == self.armed {
            return Ok(());
        }
        // A one-shot of zero disarms a timerfd: something due now fires after 1 µs.
        let delay = next.saturating_sub(now).max(1_000);
        self.timer
            .set(
                Expiration::OneShot(TimeSpec::from_duration(std::time::Duration::from_nanos(
                    delay,
                ))),
                TimerSetTimeFlags::empty(),
            )
            .map_err(io::Error::from)?;
        self.armed = next;
        Ok(())
    }
}

/// What a readiness event said about a socket's read side.
#[derive(Clone, Copy)]
struct ReadSide {
    /// Bytes, an end of stream or an error may be waiting.
    readable: bool,
    /// The peer shut its side or the socket failed: read until the end even after a short
    /// read (its FIN raises no new edge once this event has reported it).
    closing: bool,
}

/// Why a connection goes away.
enum Close {
    /// Failed: (reason, message). Before the handshake finished this is a connect failure.
    Failed(String, String),
    /// The server closed it or the socket broke.
    Lost(String),
    /// A churn departure (close frame).
    Leave,
    /// A storm drop (no close frame).
    Storm,
    /// The end of the run (close frame).
    Stop,
}

/// CPU time (user + system) of the calling thread, in ns.
fn thread_cpu_ns() -> u64 {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_THREAD).map_or(0, |u| {
        let t = |tv: nix::sys::time::TimeVal| {
            (tv.tv_sec() as u64) * SEC + (tv.tv_usec() as u64) * 1_000
        };
        t(u.user_time()) + t(u.system_time())
    })
}
