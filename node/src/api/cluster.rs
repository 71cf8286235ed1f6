//! `POST /v1/cluster/init` and the membership routes: each takes a signed admin request
//! (`authority`) the constitution must authorize, runs on the leader (the service's
//! guardrails, `docket_service::admin`), and is forwarded there once from any other node.

use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::Json;

use docket_service::admin::AdminOp;

use super::{answer, ApiJson, Forwardable};
use crate::error::{ApiError, ErrorCode};
use crate::server::Node;
use crate::tls::listener::PeerInfo;
use crate::wire::*;

/// With TLS on, only a client holding a certificate of the cluster CA may initialize a
/// node: the genesis constitution authorizes the init request it carries, so without this
/// anyone who reached a fresh node could initialize it with a constitution of their own.
/// A node started with `--genesis-constitution` is initialized with that document only.
pub(super) async fn init(
    State(node): State<Arc<Node>>,
    ConnectInfo(peer): ConnectInfo<PeerInfo>,
    ApiJson(request): ApiJson<InitRequest>,
) -> Result<Json<StatusView>, ApiError> {
    if node.tls.is_some() && !peer.certificate {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "initializing a TLS node takes a client certificate of the cluster CA (the CLI's \
             --client-cert and --client-key, or DOCKET_CLIENT_CERT / DOCKET_CLIENT_KEY)",
        ));
    }
    let configured = match &node.config.genesis_constitution {
        Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
            ApiError::new(
                ErrorCode::Internal,
                format!("reading {}: {e}", path.display()),
            )
        })?),
        None => None,
    };
    let document = match (request.constitution, configured) {
        (Some(sent), Some(configured)) if sent != configured => {
            return Err(ApiError::new(
                ErrorCode::MalformedRequest,
                "this node was started with --genesis-constitution and is initialized with \
                 that document only; the request carries another",
            ))
        }
        (Some(document), _) | (None, Some(document)) => document,
        (None, None) => docket_core::constitution::DEFAULT_DOCUMENT.to_owned(),
    };
    Ok(Json(node.service.init(document, request.authority).await?))
}

pub(super) async fn list_members(State(node): State<Arc<Node>>) -> Json<MembersView> {
    Json(MembersView {
        members: node.service.members(),
        recorded: None,
        promotion_pending: None,
    })
}

pub(super) async fn add_member(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<AdminRequest>,
) -> Response {
    // Addresses are this transport's: socket addresses.
    if let Some(Ok((
        AdminOp::MemberAdd {
            raft_addr,
            api_addr,
            ..
        },
        _,
    ))) = request
        .authority
        .as_ref()
        .map(|signed| AdminOp::parse(&signed.proposal))
    {
        for (field, addr) in [("raft_addr", &raft_addr), ("api_addr", &api_addr)] {
            if let Err(e) = addr.parse::<std::net::SocketAddr>() {
                return ApiError::new(
                    ErrorCode::MalformedRequest,
                    format!("{field} {addr:?}: {e}"),
                )
                .into_response();
            }
        }
    }
    let body = serde_json::to_vec(&request).ok();
    let result = node.service.add_member(request.authority).await;
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
    ApiJson(request): ApiJson<AdminRequest>,
) -> Response {
    let path = format!("/v1/cluster/members/{id}/promote");
    let body = serde_json::to_vec(&request).ok();
    let result = node.service.promote_member(id, request.authority).await;
    let forward = Forwardable {
        method: Method::POST,
        path_and_query: &path,
        body,
    };
    answer(&node, &headers, forward, result).await
}

pub(super) async fn remove_member(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    ApiJson(request): ApiJson<AdminRequest>,
) -> Response {
    let path = format!("/v1/cluster/members/{id}");
    let body = serde_json::to_vec(&request).ok();
    let result = node.service.remove_member(id, request.authority).await;
    let forward = Forwardable {
        method: Method::DELETE,
        path_and_query: &path,
        body,
    };
    answer(&node, &headers, forward, result).await
}
