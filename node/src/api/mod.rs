//! The HTTP/JSON client API (axum): a thin adapter over [`docket_service::Service`].
//! Shapes are in [`crate::wire`].
//!
//! Handlers decode the request, call the service, and encode its answer; the service
//! decides everything else (front door, group commit, read barrier, membership
//! guardrails). What is HTTP's own stays here: body limits and JSON rejections with stable
//! codes, and forwarding a request to the leader once when the service answers
//! `NOT_LEADER` with its address (`x-docket-forwarded`), relaying the leader's answer
//! verbatim.
//!
//! Route groups: `writes` (proposals, batches), `reads` (proposals, ledger, state,
//! constitution, status, health, execution evidence, the internal read index),
//! `cluster` (init and membership), `ui` (the web explorer's embedded assets).

mod cluster;
mod metrics;
mod proofs;
mod reads;
pub mod ui;
mod watch;
mod writes;

pub use metrics::{CONTENT_TYPE as METRICS_CONTENT_TYPE, METRICS_ROUTE};
pub use proofs::DIVERGED_FILE;
pub use watch::{WATCHES_MAX, WATCH_KEEPALIVE_MS, WATCH_PAGE_ENTRIES};

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use docket_core::json::Objects;
use docket_service::{ForwardFailure, ServiceError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{ApiError, ErrorCode};
use crate::server::Node;

/// Header a forwarding node sets, so a request is forwarded at most once.
pub const FORWARDED_HEADER: &str = "x-docket-forwarded";
/// On a node's request for the leader's read index: the asking node's genesis entry hash
/// (hex), which the leader checks against its own.
pub const GENESIS_HEADER: &str = "x-docket-genesis";
/// On a read's response: the id of the node whose state answered it (a follower answers
/// linearizable reads itself after the leader's read index).
pub const SERVED_BY_HEADER: &str = "x-docket-served-by";

pub fn router(node: Arc<Node>) -> Router {
    let body_max = node.config.limits.request_body_bytes_max;
    let routes = Router::new()
        .route("/v1/proposals", post(writes::submit_one))
        .route("/v1/proposals/dry-run", post(writes::dry_run))
        .route("/v1/batches", post(writes::submit_batch))
        .route("/v1/plans", post(writes::submit_plan))
        .route("/v1/plans/dry-run", post(writes::dry_run_plan))
        .route("/v1/proposals/{id}", get(reads::proposal))
        .route("/v1/proposals/{id}/explain", get(reads::explain))
        .route("/v1/ledger", get(reads::ledger))
        .route("/v1/ledger/watch", get(watch::watch))
        .route("/v1/state/{domain}/{subject}", get(reads::subject_state))
        .route("/v1/constitution", get(reads::constitution))
        .route("/v1/status", get(reads::status))
        .route("/v1/health", get(reads::health))
        .route("/ui", get(ui::index))
        .route("/ui/", get(ui::index))
        .route("/ui/{*asset}", get(ui::file))
        .route(METRICS_ROUTE, get(metrics::metrics))
        .route("/v1/execution", get(reads::execution_list))
        .route("/v1/execution/{id}", get(reads::execution))
        .route("/v1/internal/read-index", get(reads::internal_read_index))
        .route("/v1/internal/cosign", post(proofs::internal_cosign))
        .route("/v1/internal/diverged", post(proofs::internal_diverged))
        .route("/v1/checkpoint", get(proofs::latest))
        .route("/v1/checkpoint/{size}", get(proofs::at_size))
        .route("/v1/proofs/inclusion", get(proofs::inclusion))
        .route("/v1/proofs/entry", get(proofs::entry))
        .route("/v1/proofs/consistency", get(proofs::consistency))
        .route("/v1/proofs/state", get(proofs::state))
        .route("/v1/cluster/init", post(cluster::init))
        .route(
            "/v1/cluster/members",
            get(cluster::list_members).post(cluster::add_member),
        )
        .route(
            "/v1/cluster/members/{id}",
            axum::routing::delete(cluster::remove_member),
        )
        .route(
            "/v1/cluster/members/{id}/promote",
            post(cluster::promote_member),
        )
        .fallback(|| async {
            ApiError::new(
                ErrorCode::NotFound,
                "no such endpoint; see the API table in README.md",
            )
        })
        // Enforced where bodies are read: the `Json` extractor stops at this many bytes and
        // `json_rejection` answers `BODY_TOO_LARGE`. (tower-http's `RequestBodyLimitLayer`
        // used to sit here too; it answered a plain-text 413 before any handler ran, so
        // clients never saw the stable code.)
        .layer(DefaultBodyLimit::max(body_max))
        .layer(axum::middleware::from_fn_with_state(
            node.clone(),
            reads_governed,
        ))
        .layer(axum::middleware::from_fn_with_state(
            node.clone(),
            nodes_only,
        ))
        // Outermost, so refused requests are counted too. A `Router::layer` runs after
        // routing, so the matched route template is known.
        .layer(axum::middleware::from_fn(metrics::count_requests))
        .with_state(node);
    guarded(routes)
}

/// A handler that panics (a bug) answers `500 INTERNAL` as JSON, naming the panic, and the
/// node goes on serving: the panic is caught at the request's boundary and logged, not
/// left to drop the client's connection with no answer.
fn guarded(routes: Router) -> Router {
    routes.layer(tower_http::catch_panic::CatchPanicLayer::custom(
        |panic: Box<dyn std::any::Any + Send + 'static>| {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            tracing::error!(panic = message, "an API handler panicked");
            ApiError::new(
                ErrorCode::Internal,
                format!("the node hit a bug serving this request (a handler panicked: {message}); it goes on serving, and its log has the details"),
            )
            .into_response()
        },
    ))
}

/// JSON body extractor whose rejections are API errors with stable codes.
struct ApiJson<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // `Objects`: a record written as a JSON array of its field values is refused.
        match Json::<Objects<T>>::from_request(req, state).await {
            Ok(Json(Objects(value))) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            ErrorCode::BodyTooLarge,
            "request body exceeds limits.request_body_bytes_max",
        );
    }
    let detail = match &rejection {
        JsonRejection::JsonDataError(e) => {
            std::error::Error::source(e).map_or_else(|| e.body_text(), |s| s.to_string())
        }
        other => other.body_text(),
    };
    ApiError::new(ErrorCode::MalformedRequest, detail)
}

/// With TLS on, what only a node may ask — the internal routes, and any request marked as
/// forwarded by a node — must come over a connection whose client certificate is a node
/// certificate of the cluster CA, and a forwarded request's `x-docket-forwarded` must name
/// that node. Refused with `PEER_NOT_AUTHENTICATED` before the handler runs. (Without TLS
/// there is nothing to check a claim against: plain HTTP is for loopback.)
async fn nodes_only(
    axum::extract::State(node): axum::extract::State<Arc<Node>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    if node.tls.is_none() {
        return next.run(request).await;
    }
    let internal = request.uri().path().starts_with("/v1/internal/");
    let claimed = request.headers().get(FORWARDED_HEADER).cloned();
    if !internal && claimed.is_none() {
        return next.run(request).await;
    }
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<crate::tls::listener::PeerInfo>>()
        .and_then(|info| info.0.node);
    let refusal = match (peer, &claimed) {
        (None, _) => Some(
            "this route is for cluster nodes: the connection must present a node certificate \
             of the cluster CA"
                .to_owned(),
        ),
        (Some(peer), Some(claimed)) if claimed.to_str().ok() != Some(&peer.to_string()) => {
            Some(format!(
                "the connection's certificate is node {peer}'s, but the request claims to be \
                 forwarded by node {}",
                String::from_utf8_lossy(claimed.as_bytes())
            ))
        }
        _ => None,
    };
    match refusal {
        Some(message) => {
            tracing::warn!(path = %request.uri().path(), ?peer, %message, "refused a node-only request");
            ApiError::new(ErrorCode::PeerNotAuthenticated, message).into_response()
        }
        None => next.run(request).await,
    }
}

/// Every read route (a `GET`, but `/v1/health`, the explorer's assets under `/ui` and the
/// node-only internal routes, and the
/// dry run, which answers from the state) is
/// checked against the active constitution's read policy
/// (`docket_service::read_access`): refused with `SIGNATURE_REQUIRED`, `UNAUTHORIZED`,
/// `STALE_REQUEST` or `BAD_SIGNATURE` before the handler runs.
///
/// `/metrics` is a read like the others, with one addition: a client certificate of the
/// cluster CA may scrape it under every policy. Under `read = "roles"` every read must be
/// signed per request, which Prometheus cannot do, while it can present a certificate
/// (`tls_config` in its scrape job); metrics carry counts, indexes and rejection codes,
/// never ledger contents.
async fn reads_governed(
    axum::extract::State(node): axum::extract::State<Arc<Node>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    // A dry run answers from the state, as a read does; HEAD runs the GET handlers.
    let reads = request.method() == Method::GET
        || request.method() == Method::HEAD
        || path == "/v1/proposals/dry-run"
        || path == "/v1/plans/dry-run";
    // The explorer's assets are public, like health: its data calls are governed reads.
    if !reads || path == "/v1/health" || ui::is_ui_path(path) || path.starts_with("/v1/internal/") {
        return next.run(request).await;
    }
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<crate::tls::listener::PeerInfo>>()
        .map(|info| &info.0);
    let headers = request.headers();
    let signed = match docket_service::read_access::SignedRead::from_headers(|name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }) {
        Ok(signed) => signed,
        Err(message) => return ApiError::new(ErrorCode::MalformedRequest, message).into_response(),
    };
    let credentials = docket_service::read_access::ReadCredentials {
        certificate: peer.is_some_and(|p| p.certificate),
        node: peer.is_some_and(|p| p.node.is_some()),
        signed,
    };
    if path == METRICS_ROUTE && credentials.certificate {
        return next.run(request).await;
    }
    let target = request
        .uri()
        .path_and_query()
        .map_or_else(|| path.to_owned(), |pq| pq.as_str().to_owned());
    match node
        .service
        .authorize_read(&credentials, request.method().as_str(), &target)
    {
        Ok(()) => next.run(request).await,
        Err(error) => {
            tracing::info!(path = %target, code = error.code.name(), "refused a read");
            ApiError::from(error).into_response()
        }
    }
}

fn forwarded(headers: &HeaderMap) -> bool {
    headers.contains_key(FORWARDED_HEADER)
}

/// A request as received, for forwarding it to the leader unchanged.
struct Forwardable<'a> {
    method: Method,
    path_and_query: &'a str,
    body: Option<Vec<u8>>,
}

/// Answers `result`; when the service says "ask the leader" and this request was not
/// forwarded already, forwards it there once and relays the leader's answer.
async fn answer<T: Serialize>(
    node: &Node,
    headers: &HeaderMap,
    request: Forwardable<'_>,
    result: Result<T, ServiceError>,
) -> Response {
    match result {
        Ok(value) => Json(value).into_response(),
        Err(error) => match error.forward_target(forwarded(headers)) {
            Some(leader) => forward(node, headers, request, leader).await,
            None => ApiError(error).into_response(),
        },
    }
}

/// Sends the request on to the leader and relays its answer verbatim; a forward that got
/// no answer is explained by [`ServiceError::forward_failed`].
async fn forward(
    node: &Node,
    headers: &HeaderMap,
    request: Forwardable<'_>,
    leader: &str,
) -> Response {
    let Forwardable {
        method,
        path_and_query,
        body,
    } = request;
    let url = format!("{}://{leader}{path_and_query}", node.scheme());
    let is_write = method != Method::GET;
    let mut builder = node
        .http
        .request(method, &url)
        .header(FORWARDED_HEADER, node.service.id.to_string());
    // A signed read stays signed: the leader checks the reader, not the forwarding node.
    for name in [
        docket_service::read_access::READ_KEY_HEADER,
        docket_service::read_access::READ_TIME_HEADER,
        docket_service::read_access::READ_SIGNATURE_HEADER,
    ] {
        if let Some(value) = headers.get(name) {
            builder = builder.header(name, value.as_bytes());
        }
    }
    if let Some(body) = body {
        builder = builder
            .header("content-type", "application/json")
            .body(body);
    }
    let lost = |e: &reqwest::Error| {
        let failure = if e.is_timeout() {
            ForwardFailure::TimedOut
        } else if e.is_connect() {
            ForwardFailure::NotConnected
        } else {
            ForwardFailure::Broken
        };
        ApiError(ServiceError::forward_failed(failure, leader, is_write, e)).into_response()
    };
    match builder.send().await {
        Ok(response) => {
            let status =
                StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            match response.bytes().await {
                Ok(bytes) => {
                    (status, [("content-type", "application/json")], bytes).into_response()
                }
                Err(e) => lost(&e),
            }
        }
        Err(e) => lost(&e),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_answers_internal_and_the_router_serves_on() {
        let app = guarded(
            Router::new()
                .route(
                    "/boom",
                    get(|| async {
                        if true {
                            panic!("state too big");
                        }
                        "unreachable"
                    }),
                )
                .route("/fine", get(|| async { "fine" })),
        );
        let request = |path: &str| {
            Request::builder()
                .uri(path)
                .body(Body::empty())
                .expect("request")
        };
        let response = app.clone().oneshot(request("/boom")).await.expect("answer");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(body["code"], "INTERNAL", "{body}");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("state too big")),
            "{body}"
        );
        let response = app.oneshot(request("/fine")).await.expect("answer");
        assert_eq!(response.status(), StatusCode::OK);
    }
}
