//! Writing API responses: JSON bodies (`{"ok":true}`, listings, `{"error":{...}}`) and the
//! Prometheus text, each with `Content-Length` so the connection can stay open.

use std::io::Write as _;

use super::command::{Outcome, Stats};
use super::error::ApiError;
use super::nodes::{broker_kind, broker_state, known_nodes};
use crate::conn::http::{end_head, write_head};
use crate::json::{write_opt_str, write_str};

/// The content type of `/metrics`.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Append a complete response.
pub fn write_response(
    out: &mut Vec<u8>,
    status: (u16, &str),
    content_type: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    close: bool,
) {
    write_head(out, status, headers, content_type, body.len());
    out.extend_from_slice(b"Cache-Control: no-store\r\n");
    end_head(out, close, body);
}

/// Append the response for `e`; returns its status code.
pub fn write_error(out: &mut Vec<u8>, e: &ApiError, close: bool) -> u16 {
    let mut body = Vec::from(&br#"{"error":{"code":"#[..]);
    write_str(&mut body, e.code());
    body.extend_from_slice(br#","message":"#);
    write_str(&mut body, &e.to_string());
    body.extend_from_slice(b"}}\n");
    let status = e.status();
    write_response(
        out,
        status,
        "application/json",
        &e.extra_headers(),
        &body,
        close || e.closes(),
    );
    status.0
}

/// Append the response for a router outcome; returns its status code.
pub fn write_outcome(out: &mut Vec<u8>, outcome: Outcome, close: bool) -> u16 {
    let json = |out: &mut Vec<u8>, status, body: &[u8]| {
        write_response(out, status, "application/json", &[], body, close);
    };
    match outcome {
        Outcome::Accepted => {
            json(out, (202, "Accepted"), b"{\"ok\":true}\n");
            202
        }
        Outcome::UnknownConnection => write_error(out, &ApiError::UnknownConnection, close),
        Outcome::Busy => write_error(out, &ApiError::Busy, close),
        Outcome::BrokerDown => write_error(out, &ApiError::BrokerDown, close),
        Outcome::TooLargeForBroker => write_error(out, &ApiError::TooLargeForBroker, close),
        Outcome::Channels(mut list) => {
            list.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            let mut body = Vec::from(&br#"{"channels":["#[..]);
            for (i, (name, n)) in list.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(br#"{"channel":"#);
                write_str(&mut body, name);
                let _ = write!(body, r#","subscribers":{n}}}"#);
            }
            body.extend_from_slice(b"]}\n");
            json(out, (200, "OK"), &body);
            200
        }
        Outcome::Presence { channel, members } => {
            let mut body = Vec::from(&br#"{"channel":"#[..]);
            write_str(&mut body, &channel);
            body.extend_from_slice(br#","connections":["#);
            for (i, (conn, user)) in members.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                let _ = write!(body, r#"{{"conn":"{}","user":"#, conn.to_bits());
                write_opt_str(&mut body, user.as_deref());
                body.push(b'}');
            }
            let mut users: Vec<&str> = members.iter().filter_map(|m| m.1.as_deref()).collect();
            users.sort_unstable();
            users.dedup();
            body.extend_from_slice(br#"],"users":["#);
            for (i, u) in users.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                write_str(&mut body, u);
            }
            body.extend_from_slice(b"]}\n");
            json(out, (200, "OK"), &body);
            200
        }
        Outcome::History(read) => {
            let mut body = Vec::from(&br#"{"channel":"#[..]);
            write_str(&mut body, &read.channel);
            body.push(b',');
            read.write_fields(&mut body);
            body.extend_from_slice(b"}\n");
            json(out, (200, "OK"), &body);
            200
        }
        Outcome::NoHistory => write_error(out, &ApiError::NoHistory, close),
        Outcome::Connections(conns) => {
            let mut body = Vec::from(&br#"{"connections":["#[..]);
            for (i, c) in conns.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                let _ = write!(
                    body,
                    r#"{{"conn":"{}","shard":{},"user":"#,
                    c.conn.to_bits(),
                    c.conn.shard()
                );
                write_opt_str(&mut body, c.user.as_deref());
                body.extend_from_slice(br#","channels":["#);
                for (j, ch) in c.channels.iter().enumerate() {
                    if j > 0 {
                        body.push(b',');
                    }
                    write_str(&mut body, ch);
                }
                body.extend_from_slice(b"]}");
            }
            body.extend_from_slice(b"]}\n");
            json(out, (200, "OK"), &body);
            200
        }
        Outcome::Stats(stats) => {
            json(out, (200, "OK"), &stats_json(&stats));
            200
        }
        Outcome::Metrics(text) => {
            write_response(
                out,
                (200, "OK"),
                PROMETHEUS_CONTENT_TYPE,
                &[],
                text.as_bytes(),
                close,
            );
            200
        }
    }
}

fn stats_json(s: &Stats) -> Vec<u8> {
    let mut body = Vec::new();
    let _ = write!(body, r#"{{"connections":{},"shards":["#, s.connections);
    for (i, sh) in s.shards.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        let _ = write!(
            body,
            r#"{{"shard":{},"connections":{},"queue_depth":{}}}"#,
            sh.shard, sh.connections, sh.queue_depth
        );
    }
    let _ = write!(
        body,
        r#"],"messages_in":{},"messages_out":{},"publishes":{},"deliveries":{},"slow_consumer_disconnects":{}"#,
        s.messages_in, s.messages_out, s.publishes, s.deliveries, s.slow_consumer_disconnects
    );
    let _ = write!(
        body,
        r#","accepted":{},"closed":{},"closes":{{"#,
        s.accepted, s.closed
    );
    for (i, (label, n)) in s.closes.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        write_str(&mut body, label);
        let _ = write!(body, ":{n}");
    }
    body.extend_from_slice(br#"},"broker":{"kind":"#);
    write_str(&mut body, broker_kind(s));
    body.extend_from_slice(br#","state":"#);
    write_str(&mut body, broker_state(s));
    if let Some(b) = &s.broker {
        let nodes: Vec<String> = b.nodes.iter().map(u16::to_string).collect();
        let _ = write!(
            body,
            r#","node":{},"connected":{},"nodes":[{}],"channels":{}"#,
            b.node,
            b.connected,
            nodes.join(","),
            b.channels
        );
    }
    body.extend_from_slice(br#"},"nodes":["#);
    for (i, n) in known_nodes(s).iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(br#"{"node":"#);
        write_str(&mut body, &n.name);
        let _ = write!(body, r#","self":{},"connections":"#, n.this);
        match n.connections {
            Some(c) => {
                let _ = write!(body, "{c}");
            }
            None => body.extend_from_slice(b"null"),
        }
        body.extend_from_slice(br#","shards":"#);
        match n.shards {
            Some(c) => {
                let _ = write!(body, "{c}");
            }
            None => body.extend_from_slice(b"null"),
        }
        body.extend_from_slice(br#","broker":"#);
        write_str(&mut body, n.broker);
        body.push(b'}');
    }
    body.extend_from_slice(b"]}\n");
    body
}
