//! `GET /metrics` (Prometheus text format) and the HTTP series every route feeds.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorCode};
use crate::server::Node;
use crate::telemetry;

/// The route Prometheus scrapes (its default `metrics_path`).
pub const METRICS_ROUTE: &str = "/metrics";

/// The content type of Prometheus's text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// This node's metrics: the gauges are read from Raft and the replica now, the counters and
/// histograms are what the process recorded since it started.
pub(super) async fn metrics(State(node): State<Arc<Node>>) -> Response {
    let Some(handle) = telemetry::handle() else {
        return ApiError::new(
            ErrorCode::NotFound,
            "this process exports no metrics: `docket serve` installs the recorder (a node \
             started in-process by a test or an embedding program does not)",
        )
        .into_response();
    };
    node.service.observe();
    telemetry::observe_process();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        handle.render(),
    )
        .into_response()
}

/// Counts every answered request by its route template (`/v1/proposals/{id}`, never the
/// raw path), method and status, and times it to the response head. Requests no route
/// matched are `route="unmatched"`.
pub(super) async fn count_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |path| path.as_str())
        .to_owned();
    let method = telemetry::method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics::histogram!(telemetry::HTTP_REQUEST_DURATION_SECONDS, "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(
        telemetry::HTTP_REQUESTS_TOTAL,
        "route" => route,
        "method" => method,
        "status" => response.status().as_u16().to_string()
    )
    .increment(1);
    response
}
