//! The operator files in `deploy/` checked against what a running gateway exports: the Grafana
//! dashboard (`deploy/grafana/gateway.json`) has a panel for every metric family in `/metrics`,
//! and neither the dashboard nor the alert rules (`deploy/prometheus/alerts.yml`) name a metric
//! that does not exist. Counters are read through `rate`/`increase`, gauges as they are. The
//! metrics table of `gateway/docs/api.md` lists every family too.
//!
//! The alert file is read line by line (no YAML parser among the dependencies): an `expr:` key
//! and the lines indented below it are one expression, which covers plain and `|` block scalars.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use common::*;

const DASHBOARD: &str = include_str!("../../deploy/grafana/gateway.json");
const ALERTS: &str = include_str!("../../deploy/prometheus/alerts.yml");
const API_DOCS: &str = include_str!("../docs/api.md");
const API_KEY: &str = "test-api-key";

/// Metric family name to its type (`counter`, `gauge`, `histogram`, ...).
type Families = BTreeMap<String, String>;

/// Scrape `/metrics` on the API listener of a fresh two-shard gateway and read its `# TYPE` lines.
fn exported() -> Families {
    let gw = gateway()
        .args(["--api-key", API_KEY, "--threads", "2"])
        .start();
    let mut c = Client::connect(gw.api_addr());
    c.send_raw(
        format!(
            "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n\r\n"
        )
        .as_bytes(),
    );
    let r = c.read_response();
    assert_eq!(r.status, 200);
    let body = String::from_utf8(r.body).expect("metrics are UTF-8");
    let families: Families = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_string(), kind.trim().to_string()))
        .collect();
    assert!(families.len() > 10, "too few families in\n{body}");
    families
}

/// A metric name as an expression uses it, and the function it is the first argument of
/// (`rate` in `rate(gateway_bytes_in_total[1m])`), if any.
#[derive(Debug, PartialEq)]
struct Ref {
    name: String,
    func: Option<String>,
}

/// The `gateway_*` names in a PromQL expression. Quoted strings (label values, regexes) are
/// skipped, so `job="gateway_x"` is not a metric.
fn metric_refs(expr: &str) -> Vec<Ref> {
    let mut refs = Vec::new();
    let mut chars = expr.char_indices().peekable();
    // The last identifier, and whether only `(` and spaces followed it since.
    let mut last_ident: Option<String> = None;
    let mut open_paren = false;
    while let Some((i, c)) = chars.next() {
        if matches!(c, '"' | '\'' | '`') {
            let mut escaped = false;
            for (_, q) in chars.by_ref() {
                if escaped {
                    escaped = false;
                } else if q == '\\' {
                    escaped = true;
                } else if q == c {
                    break;
                }
            }
            last_ident = None;
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if !(d.is_ascii_alphanumeric() || d == '_' || d == ':') {
                    break;
                }
                end = j + d.len_utf8();
                chars.next();
            }
            let word = &expr[i..end];
            if word.starts_with("gateway_") {
                let func = last_ident.take().filter(|_| open_paren);
                refs.push(Ref {
                    name: word.to_string(),
                    func,
                });
            } else {
                last_ident = Some(word.to_string());
            }
            open_paren = false;
            continue;
        }
        match c {
            '(' if last_ident.is_some() && !open_paren => open_paren = true,
            c if c.is_whitespace() => {}
            _ => {
                last_ident = None;
                open_paren = false;
            }
        }
    }
    refs
}

/// The family a referenced name belongs to: itself, or for a histogram or summary the name
/// without its `_bucket`/`_sum`/`_count` suffix.
fn family_of<'a>(name: &'a str, families: &Families) -> Option<&'a str> {
    if families.contains_key(name) {
        return Some(name);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = name.strip_suffix(suffix)?;
        matches!(families.get(base)?.as_str(), "histogram" | "summary").then_some(base)
    })
}

fn dashboard() -> Value {
    serde_json::from_str(DASHBOARD).expect("deploy/grafana/gateway.json is valid JSON")
}

/// Every panel, rows included, with panels nested in collapsed rows.
fn all_panels(dash: &Value) -> Vec<&Value> {
    fn walk<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
        for p in panels.as_array().into_iter().flatten() {
            out.push(p);
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dash["panels"], &mut out);
    out
}

/// `(where, expression)` for every panel query of the dashboard.
fn panel_exprs(dash: &Value) -> Vec<(String, String)> {
    all_panels(dash)
        .into_iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or("?").to_string();
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(move |t| Some((format!("panel {title:?}"), t["expr"].as_str()?.into())))
        })
        .collect()
}

/// `(where, query)` for every template variable query of the dashboard.
fn variable_queries(dash: &Value) -> Vec<(String, String)> {
    dash["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| {
            let q = v["query"]["query"].as_str().or(v["query"].as_str())?;
            Some((format!("variable {}", v["name"]), q.to_string()))
        })
        .collect()
}

/// `(where, expression)` for every `expr:` of a Prometheus rule file, read line by line.
fn rule_exprs(yaml: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = yaml.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut out = Vec::new();
    let mut alert = String::from("?");
    for (n, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start().trim_start_matches("- ");
        if let Some(name) = trimmed.strip_prefix("alert:") {
            alert = name.trim().to_string();
        }
        let Some(first) = trimmed.strip_prefix("expr:") else {
            continue;
        };
        let mut expr = match first.trim() {
            "|" | "|-" | "|+" | ">" | ">-" | ">+" => String::new(),
            s => unquote(s).to_string(),
        };
        for next in &lines[n + 1..] {
            if !next.trim().is_empty() && indent(next) <= indent(line) {
                break;
            }
            if !next.trim_start().starts_with('#') {
                expr.push('\n');
                expr.push_str(next.trim());
            }
        }
        out.push((format!("alert {alert} (line {})", n + 1), expr));
    }
    out
}

fn unquote(s: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = s.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
            return inner;
        }
    }
    s
}

#[test]
fn promql_names_are_read_with_their_function() {
    let refs = metric_refs(
        "sum by (instance) (rate(gateway_a_total{job=\"gateway_not_a_metric\"}[1m]))\n  \
         / gateway_b{x=~'gateway_c'} + increase ( gateway_d_count[5m])",
    );
    let seen: Vec<(&str, Option<&str>)> = refs
        .iter()
        .map(|r| (r.name.as_str(), r.func.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            ("gateway_a_total", Some("rate")),
            ("gateway_b", None),
            ("gateway_d_count", Some("increase")),
        ]
    );
    let families: Families = [("gateway_d", "histogram"), ("gateway_e", "counter")]
        .into_iter()
        .map(|(n, k)| (n.to_string(), k.to_string()))
        .collect();
    assert_eq!(family_of("gateway_d_count", &families), Some("gateway_d"));
    assert_eq!(family_of("gateway_e_count", &families), None);
}

#[test]
fn rule_expressions_span_their_continuation_lines() {
    let exprs = rule_exprs(
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: gateway_a > 1\n          \
         and gateway_b > 2\n        for: 1m\n      - alert: B\n        expr: |\n          \
         rate(gateway_c[5m])\n            > 0\n        labels: {severity: warn}\n      \
         - alert: C\n        expr: 'gateway_d == 0'\n",
    );
    let names: Vec<Vec<String>> = exprs
        .iter()
        .map(|(_, e)| metric_refs(e).into_iter().map(|r| r.name).collect())
        .collect();
    assert_eq!(
        names,
        [
            vec!["gateway_a", "gateway_b"],
            vec!["gateway_c"],
            vec!["gateway_d"]
        ]
    );
}

#[test]
fn dashboard_is_json_with_unique_ids_and_described_panels() {
    let dash = dashboard();
    assert!(dash["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    let mut ids = BTreeSet::new();
    for p in all_panels(&dash) {
        let title = p["title"].as_str().unwrap_or_default();
        let id = p["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("{title:?} has no id"));
        assert!(ids.insert(id), "panel id {id} ({title:?}) is used twice");
        assert!(!title.is_empty(), "panel {id} has no title");
        if p["type"] == "row" {
            continue;
        }
        assert!(
            p["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{title:?} has no description"
        );
        assert!(
            p["fieldConfig"]["defaults"]["unit"].is_string(),
            "{title:?} has no unit"
        );
        assert!(
            p["targets"].as_array().is_some_and(|t| !t.is_empty()),
            "{title:?} has no query"
        );
    }
    let vars = &dash["templating"]["list"];
    let var = |name: &str| {
        vars.as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no ${name} variable"))
    };
    assert_eq!(var("datasource")["type"], "datasource");
    assert_eq!(var("datasource")["query"], "prometheus");
    assert_eq!(var("instance")["type"], "query");
    assert_eq!(var("shard")["type"], "query");
}

#[test]
fn every_exported_metric_has_a_panel() {
    let families = exported();
    let dash = dashboard();
    let shown: BTreeSet<String> = panel_exprs(&dash)
        .iter()
        .flat_map(|(_, e)| metric_refs(e))
        .filter_map(|r| family_of(&r.name, &families).map(str::to_string))
        .collect();
    let missing: Vec<&String> = families.keys().filter(|f| !shown.contains(*f)).collect();
    assert!(
        missing.is_empty(),
        "exported but on no panel of deploy/grafana/gateway.json: {missing:?}"
    );
}

#[test]
fn dashboard_and_alerts_name_only_exported_metrics_read_by_type() {
    let families = exported();
    let dash = dashboard();
    let alerts = rule_exprs(ALERTS);
    assert_eq!(
        alerts.len(),
        ALERTS.matches("- alert:").count(),
        "one expr per alert"
    );
    let mut problems = Vec::new();
    let sources = panel_exprs(&dash)
        .into_iter()
        .chain(variable_queries(&dash))
        .chain(alerts);
    for (place, expr) in sources {
        for r in metric_refs(&expr) {
            let Some(family) = family_of(&r.name, &families) else {
                problems.push(format!("{place}: {} is not exported", r.name));
                continue;
            };
            let over_time = matches!(r.func.as_deref(), Some("rate" | "irate" | "increase"));
            match families[family].as_str() {
                "counter" if !over_time => {
                    problems.push(format!("{place}: counter {} outside rate/increase", r.name))
                }
                "gauge" if over_time => {
                    problems.push(format!("{place}: gauge {} inside rate/increase", r.name))
                }
                _ => {}
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_exported_metric_is_in_the_api_docs() {
    let missing: Vec<String> = exported()
        .into_keys()
        .filter(|f| !API_DOCS.contains(&format!("`{f}`")) && !API_DOCS.contains(&format!("`{f}{{")))
        .collect();
    assert!(
        missing.is_empty(),
        "exported but not in the metrics table of gateway/docs/api.md: {missing:?}"
    );
}
