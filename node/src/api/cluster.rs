//! `POST /v1/cluster/init` and the membership routes: run on the leader (the service's
//! guardrails), forwarded there once from any other node.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{answer, ApiJson, Forwardable};
use crate::error::{ApiError, ErrorCode};
use crate::server::Node;
use crate::wire::*;

pub(super) async fn init(
    State(node): State<Arc<Node>>,
    ApiJson(request): ApiJson<InitRequest>,
) -> Result<Json<StatusView>, ApiError> {
    let document = match request.constitution {
        Some(document) => document,
        None => match &node.config.genesis_constitution {
            Some(path) => std::fs::read_to_string(path).map_err(|e| {
                ApiError::new(
                    ErrorCode::Internal,
                    format!("reading {}: {e}", path.display()),
                )
            })?,
            None => docket_core::constitution::DEFAULT_DOCUMENT.to_owned(),
        },
    };
    Ok(Json(node.service.init(document).await?))
}

pub(super) async fn list_members(State(node): State<Arc<Node>>) -> Json<MembersView> {
    Json(MembersView {
        members: node.service.members(),
    })
}

pub(super) async fn add_member(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<AddMemberRequest>,
) -> Response {
    // Addresses are this transport's: socket addresses.
    for (field, addr) in [
        ("raft_addr", &request.raft_addr),
        ("api_addr", &request.api_addr),
    ] {
        if let Err(e) = addr.parse::<std::net::SocketAddr>() {
            return ApiError::new(
                ErrorCode::MalformedRequest,
                format!("{field} {addr:?}: {e}"),
            )
            .into_response();
        }
    }
    let body = serde_json::to_vec(&request).ok();
    let result = node.service.add_member(request).await;
    let forward = Forwardable {
        method: Method::POST,
        path_and_query: "/v1/cluster/members",
        body,
    };
    answer(&node, &headers, forward, result).await
}

pub(super) async fn promote_member(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Response {
    let path = format!("/v1/cluster/members/{id}/promote");
    let result = node.service.promote_member(id).await;
    let forward = Forwardable {
        method: Method::POST,
        path_and_query: &path,
        body: None,
    };
    answer(&node, &headers, forward, result).await
}

pub(super) async fn remove_member(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Response {
    let path = format!("/v1/cluster/members/{id}");
    let result = node.service.remove_member(id).await;
    let forward = Forwardable {
        method: Method::DELETE,
        path_and_query: &path,
        body: None,
    };
    answer(&node, &headers, forward, result).await
}
