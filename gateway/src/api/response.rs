//! Writing API responses: JSON bodies (`{"ok":true}`, listings, `{"error":{...}}`) and the
//! Prometheus text, each with `Content-Length` so the connection can stay open.

use std::fmt::Write as _;

use super::command::{Outcome, Stats};
use super::error::ApiError;
use crate::conn::http::{end_head, write_head};

/// The content type of `/metrics`.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Append a complete response.
pub fn write_response(
    out: &mut Vec<u8>,
    status: (u16, &str),
    content_type: &str,
    headers: &[(&str, &str)],
    body: &str,
    close: bool,
) {
    write_head(out, status, headers, content_type, body.len());
    out.extend_from_slice(b"Cache-Control: no-store\r\n");
    end_head(out, close, body.as_bytes());
}

/// Append the response for `e`; returns its status code.
pub fn write_error(out: &mut Vec<u8>, e: &ApiError, close: bool) -> u16 {
    let mut body = String::from(r#"{"error":{"code":"#);
    json_str(&mut body, e.code());
    body.push_str(r#","message":"#);
    json_str(&mut body, &e.to_string());
    body.push_str("}}\n");
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
    let json = |out: &mut Vec<u8>, status, body: &str| {
        write_response(out, status, "application/json", &[], body, close);
    };
    match outcome {
        Outcome::Accepted => {
            json(out, (202, "Accepted"), "{\"ok\":true}\n");
            202
        }
        Outcome::UnknownConnection => write_error(out, &ApiError::UnknownConnection, close),
        Outcome::Busy => write_error(out, &ApiError::Busy, close),
        Outcome::Channels(mut list) => {
            list.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            let mut body = String::from(r#"{"channels":["#);
            for (i, (name, n)) in list.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                body.push_str(r#"{"channel":"#);
                json_str(&mut body, name);
                let _ = write!(body, r#","subscribers":{n}}}"#);
            }
            body.push_str("]}\n");
            json(out, (200, "OK"), &body);
            200
        }
        Outcome::Presence { channel, members } => {
            let mut body = String::from(r#"{"channel":"#);
            json_str(&mut body, &channel);
            body.push_str(r#","connections":["#);
            for (i, (conn, user)) in members.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                let _ = write!(body, r#"{{"conn":"{}","user":"#, conn.to_bits());
                json_opt_str(&mut body, user.as_deref());
                body.push('}');
            }
            let mut users: Vec<&str> = members.iter().filter_map(|m| m.1.as_deref()).collect();
            users.sort_unstable();
            users.dedup();
            body.push_str(r#"],"users":["#);
            for (i, u) in users.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                json_str(&mut body, u);
            }
            body.push_str("]}\n");
            json(out, (200, "OK"), &body);
            200
        }
        Outcome::Stats(stats) => {
            json(out, (200, "OK"), &stats_json(&stats));
            200
        }
        Outcome::Metrics(text) => {
            write_response(out, (200, "OK"), PROMETHEUS_CONTENT_TYPE, &[], &text, close);
            200
        }
    }
}

fn stats_json(s: &Stats) -> String {
    let mut body = format!(r#"{{"connections":{},"shards":["#, s.connections);
    for (i, sh) in s.shards.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        let _ = write!(
            body,
            r#"{{"shard":{},"connections":{},"queue_depth":{}}}"#,
            sh.shard, sh.connections, sh.queue_depth
        );
    }
    let _ = writeln!(
        body,
        r#"],"messages_in":{},"messages_out":{},"publishes":{},"deliveries":{},"slow_consumer_disconnects":{}}}"#,
        s.messages_in, s.messages_out, s.publishes, s.deliveries, s.slow_consumer_disconnects
    );
    body
}

/// Append `s` as a JSON string literal.
pub fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Append `s` as a JSON string, or `null`.
pub fn json_opt_str(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => json_str(out, s),
        None => out.push_str("null"),
    }
}
