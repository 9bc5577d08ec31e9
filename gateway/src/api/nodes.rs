//! The node list of `GET /api/stats` (and the admin page): the one place that says which
//! gateway nodes exist and how each is doing. A single process knows only itself, so the list is
//! this node alone, built from its own totals; when nodes share a broker, the summaries the
//! others announce are added here and no reader of the list changes.

use super::command::Stats;

/// What the broker between nodes is: with one node there is none, and channels live in memory.
pub const BROKER_KIND: &str = "memory";
/// The broker's state (`memory` is always up).
pub const BROKER_STATE: &str = "up";

/// One node's line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSummary {
    /// The node's name (`local` for this process while it is the only node).
    pub name: Box<str>,
    /// True for the node answering the request.
    pub this: bool,
    /// Open connections (client and API).
    pub connections: u64,
    /// Shards (event-loop threads).
    pub shards: usize,
    /// The node's broker kind.
    pub broker: &'static str,
}

/// Every known node, this one first.
pub fn known_nodes(local: &Stats) -> Vec<NodeSummary> {
    vec![NodeSummary {
        name: "local".into(),
        this: true,
        connections: local.connections,
        shards: local.shards.len(),
        broker: BROKER_KIND,
    }]
}
