//! The node list of `GET /api/stats` (and the admin page): the one place that says which
//! gateway nodes exist and how each is doing. A single process knows only itself (`local`, broker
//! `memory`); with a broker, the nodes are those heard from on its heartbeat channel, named by
//! their `--node-id`. Only this node's own totals are known here; another node's are `None` (read
//! them from that node, or from Prometheus).

use super::command::Stats;

/// One node's line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSummary {
    /// The node's name: its `--node-id`, or `local` while it is the only node.
    pub name: Box<str>,
    /// True for the node answering the request.
    pub this: bool,
    /// Open connections (client and API); known for this node only.
    pub connections: Option<u64>,
    /// Shards (event-loop threads); known for this node only.
    pub shards: Option<usize>,
    /// The node's broker kind.
    pub broker: &'static str,
}

/// What connects the nodes: `memory` with one node, else the broker's kind.
pub fn broker_kind(s: &Stats) -> &'static str {
    s.broker.as_ref().map_or("memory", |b| b.kind)
}

/// The broker's state: `up` (the memory broker always is), or `down` while it is unreachable.
pub fn broker_state(s: &Stats) -> &'static str {
    match &s.broker {
        Some(b) if !b.connected => "down",
        _ => "up",
    }
}

/// Every known node, this one first.
pub fn known_nodes(local: &Stats) -> Vec<NodeSummary> {
    let kind = broker_kind(local);
    let this = NodeSummary {
        name: local
            .broker
            .as_ref()
            .map_or_else(|| "local".into(), |b| b.node.to_string().into()),
        this: true,
        connections: Some(local.connections),
        shards: Some(local.shards.len()),
        broker: kind,
    };
    let mut nodes = vec![this];
    if let Some(b) = &local.broker {
        nodes.extend(
            b.nodes
                .iter()
                .filter(|&&n| n != b.node)
                .map(|n| NodeSummary {
                    name: n.to_string().into(),
                    this: false,
                    connections: None,
                    shards: None,
                    broker: kind,
                }),
        );
    }
    nodes
}
