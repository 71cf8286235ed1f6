//! The Grafana dashboard in `ops/grafana/docket.json` queries only metrics the node
//! exports, and every metric the node exports appears on it: renaming a series without
//! the dashboard (or the other way round) fails here.

use std::collections::BTreeSet;

const DASHBOARD: &str = include_str!("../../ops/grafana/docket.json");

/// Every `docket_*` identifier in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("docket_") {
        // Part of a longer identifier (`xdocket_...`) is not a metric name.
        let preceded = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if !preceded {
            names.push(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

/// Every query expression of every panel (rows nest panels too) and template variable.
fn expressions(dashboard: &serde_json::Value) -> Vec<String> {
    fn walk(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr" | "query", serde_json::Value::String(expr)) => {
                            out.push(expr.clone())
                        }
                        _ => walk(value, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, &mut out);
    out
}

/// The exported name a queried series belongs to: itself, or for a histogram's
/// `_bucket`/`_sum`/`_count` series, the histogram.
fn exported(series: &str) -> Option<&'static str> {
    if let Some(name) = docket_node::telemetry::names().find(|n| *n == series) {
        return Some(name);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = series.strip_suffix(suffix)?;
        docket_node::telemetry::HISTOGRAMS
            .iter()
            .copied()
            .find(|h| *h == base)
    })
}

#[test]
fn the_dashboard_queries_exactly_what_the_node_exports() {
    let dashboard: serde_json::Value =
        serde_json::from_str(DASHBOARD).expect("ops/grafana/docket.json is JSON");
    assert_eq!(dashboard["uid"], "docket-overview");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "a dashboard of {} panels", panels.len());
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let targets = panel["targets"].as_array().map_or(0, Vec::len);
        assert!(targets > 0, "panel {} queries nothing", panel["title"]);
    }

    let mut used = BTreeSet::new();
    let mut unknown = Vec::new();
    for expr in expressions(&dashboard) {
        for series in metric_names(&expr) {
            match exported(&series) {
                Some(name) => {
                    used.insert(name);
                }
                None => unknown.push(format!("{series} (in {expr})")),
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "the dashboard queries series the node does not export:\n{}",
        unknown.join("\n")
    );
    let unused: Vec<&str> = docket_node::telemetry::names()
        .filter(|name| !used.contains(name))
        .collect();
    assert!(
        unused.is_empty(),
        "exported but on no panel of the dashboard: {unused:?}"
    );
}

#[test]
fn the_checker_sees_a_name_the_node_does_not_export() {
    // The negative control of the test above: a misspelt series and a counter read as a
    // histogram are both caught.
    let names = metric_names("rate(docket_proposal_total[1m]) + docket_raft_term_count");
    assert_eq!(names, ["docket_proposal_total", "docket_raft_term_count"]);
    assert!(names.iter().all(|n| exported(n).is_none()), "{names:?}");
    assert_eq!(
        exported("docket_admission_duration_seconds_bucket"),
        Some("docket_admission_duration_seconds")
    );
}
