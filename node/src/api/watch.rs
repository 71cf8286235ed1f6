//! `GET /v1/ledger/watch?from=INDEX`: the change feed.
//!
//! Streams this node's ledger from `from` (default: its current length, so only new
//! entries) as JSON lines, one `LedgerEntry` per line, in index order, as entries are
//! applied here. An entry is applied only once committed, so the feed never shows an entry
//! that could be rolled back; it shows every index exactly once per stream, so a client that
//! reconnects with `from` = the last index it printed + 1 sees no gap and no duplicate
//! (`docket ledger tail --follow` does). While nothing new arrives, an empty line every
//! [`WATCH_KEEPALIVE_MS`] tells the client the stream is alive. Read authorization is the
//! same as every GET's (checked when the stream opens). At most [`WATCHES_MAX`] streams are
//! open at once; past it, `OVERLOADED`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use docket_service::{Service, ServiceError};
use serde::Deserialize;
use tokio::sync::OwnedSemaphorePermit;

use crate::error::{ApiError, ErrorCode};
use crate::server::Node;

/// Change-feed streams a node serves at once.
pub const WATCHES_MAX: usize = 64;
/// Longest silence on a change feed: an empty line is sent after it.
pub const WATCH_KEEPALIVE_MS: u64 = 10_000;
/// Entries read from the ledger per step of a feed (what one chunk holds at most).
pub const WATCH_PAGE_ENTRIES: u64 = 256;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WatchQuery {
    from: Option<u64>,
}

/// One open feed: where it is, and what wakes it.
struct Feed {
    service: Arc<Service>,
    next: u64,
    metrics: tokio::sync::watch::Receiver<
        openraft::RaftMetrics<docket_raft::NodeId, docket_raft::NodeAddr>,
    >,
    _permit: OwnedSemaphorePermit,
}

pub(super) async fn watch(
    State(node): State<Arc<Node>>,
    query: Result<Query<WatchQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => return ApiError::new(ErrorCode::MalformedRequest, e.body_text()).into_response(),
    };
    let service = node.service.clone();
    if service.genesis().is_none() {
        return ApiError(ServiceError::not_initialized()).into_response();
    }
    let Ok(permit) = node.watches.clone().try_acquire_owned() else {
        return ApiError::new(
            ErrorCode::Overloaded,
            format!("{WATCHES_MAX} change feeds are already open on this node (WATCHES_MAX)"),
        )
        .into_response();
    };
    let feed = Feed {
        next: query.from.unwrap_or_else(|| service.replica.ledger_len()),
        metrics: service.raft.metrics(),
        service,
        _permit: permit,
    };
    let stream = futures::stream::unfold(feed, step);
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(id) = HeaderValue::from_str(&node.service.id.to_string()) {
        headers.insert(super::SERVED_BY_HEADER, id);
    }
    response
}

/// The next chunk of a feed: the entries applied from `next` on (a page at most), else an
/// empty keep-alive line after [`WATCH_KEEPALIVE_MS`] of waiting; `None` ends the stream
/// (the node is shutting down, or its ledger cannot be read).
async fn step(mut feed: Feed) -> Option<(Result<Bytes, std::io::Error>, Feed)> {
    loop {
        if feed.next < feed.service.replica.ledger_len() {
            let page = match feed.service.ledger_page(feed.next, WATCH_PAGE_ENTRIES) {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(%error, from = feed.next, "change feed cannot read the ledger; closing it");
                    return None;
                }
            };
            let last = page.entries.last()?;
            feed.next = last.index.0 + 1;
            let mut chunk = Vec::new();
            for entry in &page.entries {
                if serde_json::to_writer(&mut chunk, entry).is_err() {
                    return None;
                }
                chunk.push(b'\n');
            }
            return Some((Ok(Bytes::from(chunk)), feed));
        }
        let wait = Duration::from_millis(WATCH_KEEPALIVE_MS);
        match tokio::time::timeout(wait, feed.metrics.changed()).await {
            Ok(Ok(())) => continue,
            Ok(Err(_)) => return None,
            Err(_) => return Some((Ok(Bytes::from_static(b"\n")), feed)),
        }
    }
}
