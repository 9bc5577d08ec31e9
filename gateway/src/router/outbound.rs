//! `Outbound`: what one shard sends to the shards of the mesh, itself included. A message for this
//! shard goes to a local list the shard drains at the end of its turn, exactly like its inbox; a
//! message for another shard goes into that shard's queue, or, when the queue is full, behind what
//! already waits for it in a bounded backlog, retried every turn (order per destination is kept).
//! Every shard sent something is woken once per turn.
//!
//! Data (deliveries, private messages) is refused (`busy`) once the backlog holds
//! `--max-shard-backlog` messages; control messages (interest, answers, gathers) must not be lost
//! and are accepted past that, up to a hard cap, then dropped and counted.

use std::collections::VecDeque;
use std::sync::Arc;

use super::inbox::{Mesh, ShardMsg};
use super::registry::ShardSet;
use super::uplink::{Refused, Up, Uplink};

/// Past this many messages waiting, even control messages are dropped (counted): the
/// destination has stalled.
const CONTROL_BACKLOG_FACTOR: usize = 4;

/// The backlog was full: a data message was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full;

/// One shard's sending side of the mesh. See the module doc.
pub struct Outbound {
    shard: u8,
    mesh: Arc<Mesh>,
    /// Only this shard exists on the mesh (no other shard to tell).
    solo: bool,
    /// Messages for this shard itself, applied at the end of the turn.
    local: Vec<ShardMsg>,
    /// Per destination, messages that found its queue full.
    backlog: Vec<VecDeque<ShardMsg>>,
    backlog_len: usize,
    max_backlog: usize,
    /// Shards sent something this turn.
    wake: ShardSet,
    /// Control messages dropped because a destination stopped draining.
    pub control_dropped: u64,
    /// The way to the node's broker thread (`None`: a single node).
    uplink: Option<Arc<Uplink>>,
    /// Something went up this turn: wake the broker thread.
    wake_up: bool,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("shard", &self.shard)
            .field("backlog_len", &self.backlog_len)
            .finish()
    }
}

impl Outbound {
    /// Shard `shard`'s side of `mesh`, refusing data past `max_backlog` waiting messages.
    pub fn new(shard: u8, mesh: Arc<Mesh>, max_backlog: usize, solo: bool) -> Outbound {
        let shards = mesh.shards();
        Outbound {
            shard,
            mesh,
            solo,
            local: Vec::new(),
            backlog: (0..shards).map(|_| VecDeque::new()).collect(),
            backlog_len: 0,
            max_backlog,
            wake: ShardSet::default(),
            control_dropped: 0,
            uplink: None,
            wake_up: false,
        }
    }

    /// Send to other nodes through `uplink` too.
    pub fn with_uplink(mut self, uplink: Option<Arc<Uplink>>) -> Outbound {
        self.uplink = uplink;
        self
    }

    /// The way to the broker thread, if this node has one.
    pub fn uplink(&self) -> Option<&Arc<Uplink>> {
        self.uplink.as_ref()
    }

    /// Hand `up` to the broker thread (woken at the end of the turn). `Err` when it was refused
    /// or this node has no broker.
    pub fn up(&mut self, up: Up) -> Result<(), Refused> {
        let Some(uplink) = &self.uplink else {
            return Err(Refused::Down);
        };
        uplink.push(up)?;
        self.wake_up = true;
        Ok(())
    }

    /// This shard.
    pub fn shard(&self) -> u8 {
        self.shard
    }

    /// The mesh (queue depths for metrics).
    pub fn mesh(&self) -> &Arc<Mesh> {
        &self.mesh
    }

    /// Every shard of the mesh, this one included (just this one for a single-shard router).
    pub fn all(&self) -> impl Iterator<Item = u8> + Clone {
        let (me, n) = (self.shard, self.mesh.shards() as u8);
        let solo = self.solo;
        (0..n).filter(move |&s| !solo || s == me)
    }

    /// The shard `hash` falls on, among [`Outbound::all`].
    pub fn pick(&self, hash: u64) -> u8 {
        if self.solo {
            return self.shard;
        }
        // The mesh has at most 255 shards: the remainder fits.
        (hash % self.mesh.shards().max(1) as u64) as u8
    }

    /// Every shard but this one.
    pub fn others(&self) -> impl Iterator<Item = u8> + Clone {
        let me = self.shard;
        self.all().filter(move |&s| s != me)
    }

    /// Whether `shard` names a shard of this mesh.
    pub fn has_shard(&self, shard: u8) -> bool {
        usize::from(shard) < self.mesh.shards()
    }

    /// Send a data message to `to`. `Full` once the backlog is full.
    pub fn data(&mut self, to: u8, msg: ShardMsg) -> Result<(), Full> {
        if to != self.shard && self.backlog_len >= self.max_backlog {
            return Err(Full);
        }
        self.send(to, msg);
        Ok(())
    }

    /// Send a control message to `to`: accepted past the data limit, up to a hard cap.
    pub fn control(&mut self, to: u8, msg: ShardMsg) {
        if to != self.shard && self.backlog_len >= CONTROL_BACKLOG_FACTOR * self.max_backlog {
            self.control_dropped += 1;
            return;
        }
        self.send(to, msg);
    }

    fn send(&mut self, to: u8, msg: ShardMsg) {
        if to == self.shard {
            self.local.push(msg);
            return;
        }
        let Some(waiting) = self.backlog.get_mut(usize::from(to)) else {
            return;
        };
        if !waiting.is_empty() {
            waiting.push_back(msg);
            self.backlog_len += 1;
            return;
        }
        match self.mesh.push(to, msg) {
            Ok(()) => self.wake.insert(to),
            Err(msg) => {
                waiting.push_back(msg);
                self.backlog_len += 1;
            }
        }
    }

    /// Take the messages this shard sent itself (to apply them now).
    pub fn take_local(&mut self) -> Vec<ShardMsg> {
        std::mem::take(&mut self.local)
    }

    /// True when this shard sent itself something not yet applied.
    pub fn has_local(&self) -> bool {
        !self.local.is_empty()
    }

    /// Retry the backlog and wake every shard that was sent something this turn.
    pub fn flush(&mut self) {
        if self.backlog_len > 0 {
            for (to, waiting) in self.backlog.iter_mut().enumerate() {
                while let Some(msg) = waiting.pop_front() {
                    match self.mesh.push(to as u8, msg) {
                        Ok(()) => {
                            self.backlog_len -= 1;
                            self.wake.insert(to as u8);
                        }
                        Err(msg) => {
                            waiting.push_front(msg);
                            break;
                        }
                    }
                }
            }
        }
        let wake = std::mem::take(&mut self.wake);
        for s in wake.iter() {
            self.mesh.wake(s);
        }
        if std::mem::take(&mut self.wake_up) {
            if let Some(uplink) = &self.uplink {
                uplink.wake();
            }
        }
    }

    /// Messages waiting for room in other shards' queues.
    pub fn backlog_len(&self) -> usize {
        self.backlog_len
    }

    /// The next message other shards sent this one.
    pub fn pop(&self) -> Option<ShardMsg> {
        self.mesh.pop(self.shard)
    }
}
