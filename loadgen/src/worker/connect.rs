//! Opening connections: the connect ramp (intended start times, or at most
//! `MAX_PENDING_HANDSHAKES` in flight when the rate is unlimited), the non-blocking connect and
//! its registration, handshake timeouts, and the bookkeeping that tells the coordinator when every
//! planned connection is open or has failed.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use frame_simd::MaskKey;
use mio::{Interest, Token};

use super::{socket, Close, Slot, Worker, MAX_PENDING_HANDSHAKES};
use crate::client::api::ApiConn;
use crate::client::{Conn, Proto, State};
use crate::clock::ns;
use crate::tls::Stream;

impl Worker {
    pub(super) fn do_connects(&mut self, now: u64) {
        while let Some(&(intended, spec)) = self.connect_queue.front() {
            if intended > now {
                break;
            }
            if self.connect_interval == 0.0 && self.pending_handshakes >= MAX_PENDING_HANDSHAKES {
                break;
            }
            self.connect_queue.pop_front();
            self.meter.connect_phase.on_start(now);
            // Unlimited rate: the latency counts from the actual start (no schedule to honour).
            let intended = if self.connect_interval == 0.0 {
                now
            } else {
                intended
            };
            self.start_connect(spec, intended, now);
        }
    }

    pub(super) fn start_connect(&mut self, spec: usize, intended: u64, now: u64) {
        let s = self.specs[spec];
        let addr = self.plan.targets[s.target as usize].addr;
        let tcp = match socket::connect(addr, s.source) {
            Ok(tcp) => tcp,
            Err(e) => return self.connect_failed(spec, socket::reason(&e), e.to_string()),
        };
        let target = &self.plan.targets[s.target as usize];
        let sock = match (&target.tls, &self.plan.tls) {
            (Some(name), Some(cfg)) => Stream::tls(tcp, cfg, name),
            _ => Ok(Stream::plain(tcp)),
        };
        let mut sock = match sock {
            Ok(sock) => sock,
            Err(e) => return self.connect_failed(spec, socket::reason(&e), e.to_string()),
        };
        let idx = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        if let Err(e) = self.poll.registry().register(
            &mut sock.tcp,
            Token(idx),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.free.push(idx);
            return self.connect_failed(spec, socket::reason(&e), e.to_string());
        }
        let target = &self.plan.targets[s.target as usize];
        let mut nonce = [0u8; 16];
        self.rng.fill(&mut nonce);
        let mask = MaskKey(self.rng.u32(..).to_ne_bytes());
        self.next_gen = self.next_gen.wrapping_add(1);
        self.slots[idx] = Some(Slot {
            sock,
            conn: if s.via_api && s.role == crate::plan::Role::Rpc {
                Proto::Api(ApiConn::post(&target.host_header, &target.path, None))
            } else if s.via_api {
                Proto::Api(ApiConn::new(&target.host_header, &self.plan.api_key))
            } else {
                let mut c = Conn::new(&target.host_header, &target.path, nonce, mask);
                if self.plan.deflate {
                    c.offer_deflate();
                }
                Proto::Ws(c)
            },
            spec,
            gen: self.next_gen,
            tcp_up: false,
            intended,
            storm: false,
            inflight: VecDeque::new(),
            echo_frame: None,
            dirty: false,
            awaiting_ack: false,
        });
        self.state[spec].slot = Some(idx);
        self.pending_handshakes += 1;
        self.timeouts
            .push_back((now + ns(self.plan.connect_timeout), idx, self.next_gen));
    }

    pub(super) fn connect_failed(&mut self, spec: usize, reason: String, message: String) {
        self.meter.on_connect_failed(reason, message);
        self.resolve(spec);
    }

    /// A planned connection is open or has failed: the connect phase may be over.
    pub(super) fn resolve(&mut self, spec: usize) {
        let st = &mut self.state[spec];
        if st.initial && !st.resolved {
            st.resolved = true;
            self.unresolved -= 1;
            if self.unresolved == 0 {
                self.shared.connect_done.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    pub(super) fn do_timeouts(&mut self, now: u64) {
        while let Some(&(deadline, idx, gen)) = self.timeouts.front() {
            if deadline > now {
                break;
            }
            self.timeouts.pop_front();
            let Some(slot) = self.slots[idx].as_ref().filter(|s| s.gen == gen) else {
                continue;
            };
            let secs = self.plan.connect_timeout.as_secs_f64();
            if slot.conn.state() == State::AwaitResponse {
                self.drop_slot(
                    idx,
                    Close::Failed("timeout".into(), format!("no handshake within {secs}s")),
                );
            } else if slot.awaiting_ack {
                self.drop_slot(idx, Close::Lost("no subscribe reply in time".into()));
            }
        }
    }
}
