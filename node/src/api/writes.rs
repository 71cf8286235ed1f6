//! `POST /v1/proposals` and `POST /v1/batches`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use docket_core::SignedProposal;
use docket_service::ServiceError;

use super::{answer, ApiJson, Forwardable};
use crate::error::ApiError;
use crate::server::Node;
use crate::wire::{BatchRequest, BatchResponse, PlanRequest};

/// Admission, the front door and the group-commit writer, all the service's; the body is
/// re-encoded only when the request must be forwarded.
async fn submit(
    node: &Node,
    headers: &HeaderMap,
    path: &str,
    proposals: Vec<SignedProposal>,
    batch: bool,
) -> Response {
    let service = &node.service;
    // Held until the answer is relayed, forwarding included.
    let _permit = match service.admit() {
        Ok(permit) => permit,
        Err(e) => return ApiError(e).into_response(),
    };
    let result = service.submit_responses(proposals.clone()).await;
    let body = match &result {
        Err(error) if error.forward_target(super::forwarded(headers)).is_some() => {
            let encoded = if batch {
                serde_json::to_vec(&BatchRequest { proposals })
            } else {
                serde_json::to_vec(&proposals[0])
            };
            match encoded {
                Ok(body) => Some(body),
                Err(e) => return ApiError(ServiceError::internal(e.to_string())).into_response(),
            }
        }
        _ => None,
    };
    let request = Forwardable {
        method: Method::POST,
        path_and_query: path,
        body,
    };
    if batch {
        let result = result.map(|results| BatchResponse { results });
        answer(node, headers, request, result).await
    } else {
        let result = result.map(|mut results| results.remove(0));
        answer(node, headers, request, result).await
    }
}

pub(super) async fn submit_one(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    ApiJson(signed): ApiJson<SignedProposal>,
) -> Response {
    submit(&node, &headers, "/v1/proposals", vec![signed], false).await
}

pub(super) async fn submit_batch(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    ApiJson(batch): ApiJson<BatchRequest>,
) -> Response {
    if let Err(e) = node.service.check_batch_size(batch.proposals.len()) {
        return ApiError(e).into_response();
    }
    submit(&node, &headers, "/v1/batches", batch.proposals, true).await
}

/// `POST /v1/proposals/dry-run`: after a read barrier (linearizable), the decision the
/// constitution would record, recording nothing.
pub(super) async fn dry_run(
    State(node): State<Arc<Node>>,
    ApiJson(signed): ApiJson<SignedProposal>,
) -> Result<axum::Json<crate::wire::DryRunView>, ApiError> {
    let service = &node.service;
    let _permit = service.admit()?;
    service
        .read_barrier(crate::wire::Consistency::Linearizable)
        .await?;
    Ok(axum::Json(service.dry_run(&signed)?))
}

/// `POST /v1/plans`: a program's plan, recorded in one Raft entry in the order its set
/// decides (waves, then ids); forwarded to the leader like any write.
pub(super) async fn submit_plan(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    ApiJson(plan): ApiJson<PlanRequest>,
) -> Response {
    let service = &node.service;
    let _permit = match service.admit() {
        Ok(permit) => permit,
        Err(e) => return ApiError(e).into_response(),
    };
    let result = service.submit_plan(plan.proposals.clone()).await;
    let body = match &result {
        Err(error) if error.forward_target(super::forwarded(&headers)).is_some() => {
            match serde_json::to_vec(&plan) {
                Ok(body) => Some(body),
                Err(e) => return ApiError(ServiceError::internal(e.to_string())).into_response(),
            }
        }
        _ => None,
    };
    let request = Forwardable {
        method: Method::POST,
        path_and_query: "/v1/plans",
        body,
    };
    answer(&node, &headers, request, result).await
}

/// `POST /v1/plans/dry-run`: after a read barrier (linearizable), what recording the plan
/// would decide for each member, recording nothing.
pub(super) async fn dry_run_plan(
    State(node): State<Arc<Node>>,
    ApiJson(plan): ApiJson<PlanRequest>,
) -> Result<axum::Json<crate::wire::PlanDryRunView>, ApiError> {
    let service = &node.service;
    let _permit = service.admit()?;
    service
        .read_barrier(crate::wire::Consistency::Linearizable)
        .await?;
    Ok(axum::Json(service.dry_run_plan(plan.proposals)?))
}
