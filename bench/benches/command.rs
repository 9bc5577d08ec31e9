//! Client command parsing on `/ws`: the gateway's simd-json path beside serde_json, on the
//! commands clients send: a subscribe (~50 B), a publish of a 64 B chat message, and publishes
//! of a 1 KiB and a 16 KiB JSON object.
//!
//! - `gateway`: `app::ws::request::Parser` (simd-json's tape, parsed in place, buffers kept between
//!   messages), then the request read from the tape with the channel name checked.
//! - `serde_struct`: `serde_json::from_slice` into a borrowing struct with `data` as a `Value`
//!   (like the tape, the whole payload is parsed and kept), same checks.
//! - `serde_raw`: the same struct with `data` kept as `&RawValue` (validated, not built): the
//!   cheapest serde_json way to forward a payload.
//! - `serde_value`: `serde_json::from_slice` into a `Value`, then the same fields read.
//!
//! The gateway parses in place, so each of its iterations gets a fresh copy of the message;
//! making the copy is not timed.

use std::borrow::Cow;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use gateway::app::ws::request::{Op, Parser};
use gateway::names::check_channel;
use serde::Deserialize;
use serde_json::value::RawValue;

/// What every contender reports: the operation and the channel name's length.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Subscribe(usize),
    Publish(usize),
    Other,
}

#[derive(Deserialize)]
struct Command<'a, D> {
    #[serde(borrow)]
    op: Cow<'a, str>,
    #[serde(borrow)]
    channel: Option<Cow<'a, str>>,
    #[allow(dead_code)]
    id: Option<serde_json::Value>,
    data: Option<D>,
    #[allow(dead_code)]
    skip_self: Option<bool>,
}

fn gateway(parser: &mut Parser, input: &mut [u8]) -> Outcome {
    parser.parse(input, |parsed| match parsed.map(|r| r.op) {
        Ok(Op::Subscribe { channel, .. }) => Outcome::Subscribe(channel.len()),
        Ok(Op::Publish { channel, data, .. }) => {
            black_box(data);
            Outcome::Publish(channel.len())
        }
        _ => Outcome::Other,
    })
}

/// The checks the gateway makes once the fields are found.
fn outcome<D>(op: &str, channel: Option<&str>, data: Option<D>) -> Outcome {
    let Some(channel) = channel.filter(|c| check_channel(c).is_ok()) else {
        return Outcome::Other;
    };
    match (op, data) {
        ("subscribe", _) => Outcome::Subscribe(channel.len()),
        ("publish", Some(data)) => {
            black_box(data);
            Outcome::Publish(channel.len())
        }
        _ => Outcome::Other,
    }
}

fn serde_struct(input: &[u8]) -> Outcome {
    match serde_json::from_slice::<Command<'_, serde_json::Value>>(input) {
        Ok(c) => outcome(&c.op, c.channel.as_deref(), c.data),
        Err(_) => Outcome::Other,
    }
}

fn serde_raw(input: &[u8]) -> Outcome {
    match serde_json::from_slice::<Command<'_, &RawValue>>(input) {
        Ok(c) => outcome(&c.op, c.channel.as_deref(), c.data),
        Err(_) => Outcome::Other,
    }
}

fn serde_value(input: &[u8]) -> Outcome {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(input) else {
        return Outcome::Other;
    };
    let op = v.get("op").and_then(|o| o.as_str()).unwrap_or("");
    outcome(op, v.get("channel").and_then(|c| c.as_str()), v.get("data"))
}

/// A JSON object of about `len` bytes, shaped like an application event: nested records with
/// numbers, booleans, arrays, and strings with escapes and non-ASCII text.
fn object(len: usize) -> String {
    let mut out = String::from("{\"kind\":\"order.update\",\"items\":[");
    let mut i = 0u32;
    while out.len() + 40 < len {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            "{{\"id\":{},\"sku\":\"SKU-{:05}\",\"name\":\"Caf\\u00e9 cr\u{e8}me \\\"{}\\\"\",\
             \"qty\":{},\"price\":{}.{:02},\"tags\":[\"a\",\"b{}\"],\"ok\":{}}}",
            1000 + i,
            i * 7,
            i,
            1 + i % 4,
            3 + i % 50,
            i % 100,
            i % 3,
            i % 2 == 0
        ));
        i += 1;
    }
    out.push_str("],\"note\":\"");
    while out.len() + 2 < len {
        out.push('x');
    }
    out.push_str("\"}");
    out
}

fn publish(data: &str) -> Vec<u8> {
    format!("{{\"op\":\"publish\",\"channel\":\"room:lobby\",\"id\":2,\"data\":{data}}}")
        .into_bytes()
}

fn inputs() -> Vec<(&'static str, Vec<u8>)> {
    // 62 characters of chat text in quotes: a 64 B payload.
    let chat = format!(
        "\"{}\"",
        "see you at ten, bring the slides and the coffee! ok? 123456789"
    );
    assert_eq!(chat.len(), 64);
    vec![
        (
            "subscribe",
            br#"{"op":"subscribe","channel":"room:lobby","id":1}"#.to_vec(),
        ),
        ("publish_64B", publish(&chat)),
        ("publish_1KiB", publish(&object(1024))),
        ("publish_16KiB", publish(&object(16 * 1024))),
    ]
}

fn command(c: &mut Criterion) {
    let mut parser = Parser::default();
    let mut group = c.benchmark_group("command");
    for (name, msg) in inputs() {
        let want = if name == "subscribe" {
            Outcome::Subscribe(10)
        } else {
            Outcome::Publish(10)
        };
        assert_eq!(gateway(&mut parser, &mut msg.clone()), want, "{name}");
        assert_eq!(serde_struct(&msg), want, "{name}");
        assert_eq!(serde_raw(&msg), want, "{name}");
        assert_eq!(serde_value(&msg), want, "{name}");

        group.throughput(Throughput::Bytes(msg.len() as u64));
        group.bench_with_input(BenchmarkId::new("gateway", name), &msg, |b, msg| {
            b.iter_batched_ref(
                || msg.clone(),
                |input| gateway(&mut parser, black_box(input)),
                BatchSize::SmallInput,
            )
        });
        group.bench_with_input(BenchmarkId::new("serde_struct", name), &msg, |b, msg| {
            b.iter(|| serde_struct(black_box(msg)))
        });
        group.bench_with_input(BenchmarkId::new("serde_raw", name), &msg, |b, msg| {
            b.iter(|| serde_raw(black_box(msg)))
        });
        group.bench_with_input(BenchmarkId::new("serde_value", name), &msg, |b, msg| {
            b.iter(|| serde_value(black_box(msg)))
        });
    }
    group.finish();
}

criterion_group!(benches, command);
criterion_main!(benches);
