//! The node's metrics recorder (`GET /metrics`) and its log formats.
//!
//! **Metrics.** The crates below record through the `metrics` facade where their events
//! happen (raft: decisions on apply, flush latency; service: admission, group commit,
//! read-index rounds, and the gauges it reads from Raft at scrape time; execution: jobs,
//! attempts, outcomes); this module adds the HTTP series and installs the process's one
//! recorder, metrics-exporter-prometheus's, whose text format `/metrics` renders. It is
//! installed by [`crate::server::run`] (what `docket serve` runs: one node per process),
//! never by [`crate::server::start`] alone, so tests that run several nodes in one
//! process get no mixed-up series: their `/metrics` answers `NOT_FOUND`.
//!
//! **Logs.** `docket serve --log-format text|json` (or `log_format` in the configuration
//! file, `DOCKET_LOG_FORMAT`): every line carries the node id (a field of the formatter,
//! not a span, so lines from every spawned task have it), and JSON lines carry the fields
//! of the event and of the spans around it at the top level.

use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// HTTP requests answered, by route template (never the raw path: bounded cardinality),
/// method and status.
pub const HTTP_REQUESTS_TOTAL: &str = "docket_http_requests_total";
/// Seconds from a request's arrival to its response's head, by route template.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "docket_http_request_duration_seconds";
/// The process's resident memory (Prometheus's process collectors call it
/// `process_resident_memory_bytes`; every docket series has the `docket_` prefix).
pub const PROCESS_RESIDENT_MEMORY_BYTES: &str = "docket_process_resident_memory_bytes";

/// What this crate records, with help text.
pub const METRICS: &[(&str, &str)] = &[
    (
        HTTP_REQUESTS_TOTAL,
        "HTTP requests answered, by route template, method and status",
    ),
    (
        HTTP_REQUEST_DURATION_SECONDS,
        "Seconds from an HTTP request's arrival to its response head, by route template",
    ),
    (
        PROCESS_RESIDENT_MEMORY_BYTES,
        "Resident memory of this node's process (Linux: VmRSS of /proc/self/status at scrape time)",
    ),
];

/// Sets the process gauges at scrape time: resident memory, where the system says (Linux's
/// `/proc/self/status`, one small read; elsewhere nothing is set).
pub fn observe_process() {
    if let Some(bytes) = resident_bytes() {
        metrics::gauge!(PROCESS_RESIDENT_MEMORY_BYTES).set(bytes as f64);
    }
}

fn resident_bytes() -> Option<u64> {
    proc_status_bytes("self", "VmRSS")
}

/// A memory field of `/proc/<process>/status` (`VmRSS`, `VmHWM`; `process` a pid or
/// `self`) in bytes: the file gives kB whatever the page size. `None` where there is no
/// such file or field (not Linux, a process gone).
pub(crate) fn proc_status_bytes(process: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{process}/status")).ok()?;
    let value = text
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?;
    let kib: u64 = value.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// Buckets of every `_seconds` histogram: 0.5 ms (a local flush) to 10 s (past the write
/// deadline's default).
pub const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets of the group-commit batch size: powers of two up to the writer's maximum.
pub const GROUP_COMMIT_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0,
];
const _: () = assert!(docket_service::service::GROUP_COMMIT_PROPOSALS_MAX == 2048);

/// How often the recorder drains histogram samples into buckets when nobody scrapes (its
/// memory grows with unscraped samples otherwise).
pub const UPKEEP_INTERVAL_MS: u64 = 5_000;

/// Every metric name the node exports: the dashboard test checks its queries against it.
pub fn names() -> impl Iterator<Item = &'static str> {
    described().map(|(name, _)| name)
}

/// The names among [`names`] that are histograms: Prometheus shows each as the series
/// `_bucket`, `_sum` and `_count`.
pub const HISTOGRAMS: &[&str] = &[
    docket_raft::telemetry::STORAGE_FLUSH_DURATION_SECONDS,
    docket_raft::telemetry::LOG_APPEND_DURATION_SECONDS,
    docket_raft::telemetry::MAP_FOLD_DURATION_SECONDS,
    docket_service::telemetry::ADMISSION_DURATION_SECONDS,
    docket_service::telemetry::GROUP_COMMIT_PROPOSALS,
    docket_execution::telemetry::ATTEMPT_DURATION_SECONDS,
    HTTP_REQUEST_DURATION_SECONDS,
];

fn described() -> impl Iterator<Item = (&'static str, &'static str)> {
    docket_raft::telemetry::METRICS
        .iter()
        .chain(docket_service::telemetry::METRICS)
        .chain(docket_execution::telemetry::METRICS)
        .chain(METRICS)
        .copied()
}

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process's Prometheus recorder (once; later calls answer the same handle).
/// `None` if another recorder was installed first.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".to_owned()),
                    LATENCY_BUCKETS_SECONDS,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(docket_service::telemetry::GROUP_COMMIT_PROPOSALS.to_owned()),
                        GROUP_COMMIT_BUCKETS,
                    )
                })
                .expect("invariant: the bucket lists are not empty")
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            for (name, help) in described() {
                metrics::describe_counter!(name, help);
            }
            Some(handle)
        })
        .clone()
}

/// The installed recorder's handle, if [`install`] ran in this process.
pub fn handle() -> Option<PrometheusHandle> {
    HANDLE.get().cloned().flatten()
}

/// Drains histogram samples every [`UPKEEP_INTERVAL_MS`] until the process ends.
pub async fn upkeep(handle: PrometheusHandle) {
    let mut interval = tokio::time::interval(Duration::from_millis(UPKEEP_INTERVAL_MS));
    loop {
        interval.tick().await;
        handle.run_upkeep();
    }
}

/// The HTTP method as a bounded label value.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Logs to stderr in `format`, at `default` level or as `DOCKET_LOG` says, every line
/// naming `node_id`. A second call changes nothing.
pub fn init_node_logging(default: &str, format: docket_config::LogFormat, node_id: u64) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DOCKET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        docket_config::LogFormat::Text => builder
            .event_format(NodeText {
                node_id,
                inner: tracing_subscriber::fmt::format::Format::default(),
            })
            .try_init(),
        docket_config::LogFormat::Json => builder
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(NodeJson { node_id })
            .try_init(),
    };
}

/// The default text format, each line prefixed with `node_id=N`.
struct NodeText<F> {
    node_id: u64,
    inner: F,
}

impl<S, N, F> FormatEvent<S, N> for NodeText<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "node_id={} ", self.node_id)?;
        self.inner.format_event(ctx, writer, event)
    }
}

/// One JSON object per line, with the node id and the fields of the event's spans (root
/// first; the event's own fields win) at the top level, so `proposal_id`, `term` and
/// `index` are found at the same key whichever carried them.
struct NodeJson {
    node_id: u64,
}

impl<S, N> FormatEvent<S, N> for NodeJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = Map::new();
        let mut timestamp = String::new();
        tracing_subscriber::fmt::time::SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let metadata = event.metadata();
        line.insert("timestamp".into(), timestamp.into());
        line.insert("level".into(), metadata.level().as_str().into());
        line.insert("target".into(), metadata.target().into());
        line.insert("node_id".into(), self.node_id.into());
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<N>>() else {
                    continue;
                };
                // JsonFields records a span's fields as one JSON object.
                if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields.as_str()) {
                    line.extend(fields);
                }
            }
        }
        event.record(&mut JsonVisitor(&mut line));
        let text = serde_json::to_string(&Value::Object(line)).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), format!("{value:?}").into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().to_owned(), value.to_string().into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_histogram_is_a_listed_name_and_no_counter() {
        for histogram in HISTOGRAMS {
            assert!(names().any(|n| n == *histogram), "{histogram}");
            assert!(!histogram.ends_with("_total"), "{histogram}");
        }
    }

    #[test]
    fn every_name_follows_the_conventions_and_is_unique() {
        let names: Vec<&str> = names().collect();
        let unique: std::collections::BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(
            unique.len(),
            names.len(),
            "a name is listed twice: {names:?}"
        );
        for name in names {
            assert!(name.starts_with("docket_"), "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{name}"
            );
            assert!(
                name.ends_with("_total") || !name.contains("_total"),
                "{name}: _total ends a counter's name"
            );
            // Units last, in base units.
            for unit in ["_ms", "_millis", "_kb", "_mb", "_us"] {
                assert!(!name.ends_with(unit), "{name}: use seconds or bytes");
            }
        }
    }
}
