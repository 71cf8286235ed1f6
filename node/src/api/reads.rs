//! Reads: proposals, the ledger, subject state, the constitution (linearizable unless
//! `?consistency=local`), status, health, execution evidence, and the leader's read index
//! for followers' reads.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use docket_core::ProposalId;
use docket_service::{Service, ServiceError};
use serde::Deserialize;

use super::{answer, Forwardable, SERVED_BY_HEADER};
use crate::error::{ApiError, ErrorCode};
use crate::server::Node;
use crate::wire::*;

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ReadQuery {
    #[serde(default)]
    consistency: Consistency,
}

/// Runs a read: the service's read barrier, then `read` on local state, answered with the
/// node that served it; forwarded to the leader when the barrier says so.
async fn linearized<T: serde::Serialize>(
    node: &Node,
    headers: &HeaderMap,
    uri: &Uri,
    consistency: Consistency,
    read: impl FnOnce(&Service) -> Result<T, ServiceError>,
) -> Response {
    let service = &node.service;
    let _permit = match service.admit() {
        Ok(p) => p,
        Err(e) => return ApiError(e).into_response(),
    };
    let result = match service.read_barrier(consistency).await {
        Ok(_read_index) => match read(service) {
            Ok(value) => {
                return ([(SERVED_BY_HEADER, service.id.to_string())], Json(value)).into_response()
            }
            Err(e) => Err(e),
        },
        Err(e) => Err::<(), _>(e),
    };
    let request = Forwardable {
        method: Method::GET,
        path_and_query: uri.path_and_query().map_or(uri.path(), |p| p.as_str()),
        body: None,
    };
    answer(node, headers, request, result).await
}

fn parse_id(id: &str) -> Result<ProposalId, ApiError> {
    id.parse()
        .map_err(|e| ApiError::new(ErrorCode::MalformedRequest, format!("proposal id: {e}")))
}

pub(super) async fn proposal(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(query): Query<ReadQuery>,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    linearized(&node, &headers, &uri, query.consistency, |s| {
        s.proposal_view(id)
    })
    .await
}

/// `GET /v1/proposals/{id}/explain`: the service's explanation, with this node's execution
/// record of the proposal in brief (as `GET /v1/execution/{id}` has it) when it holds one.
pub(super) async fn explain(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(query): Query<ReadQuery>,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let executor = node.executor.clone();
    let node_id = node.service.id;
    linearized(&node, &headers, &uri, query.consistency, |s| {
        let mut view = s.explain_view(id)?;
        if view.status == docket_core::ProposalStatus::Admitted {
            if let Some(executor) = &executor {
                let job = executor.journal().job(&id).map_err(ServiceError::storage)?;
                view.execution = job.map(|job| execution_summary(node_id, &job));
            }
        }
        Ok(view)
    })
    .await
}

fn execution_summary(node_id: u64, job: &docket_execution::Job) -> ExecutionSummary {
    use docket_execution::journal::{Phase, Resolution};
    let (phase, resolution) = match &job.phase {
        Phase::New => ("new", None),
        Phase::Attempting { .. } => ("attempting", None),
        Phase::Concluded { .. } => ("concluded", None),
        Phase::Filed { .. } => ("filed", None),
        Phase::Resolved { resolution } => (
            "resolved",
            Some(match resolution {
                Resolution::OutcomeRecorded { .. } => "outcome_recorded",
                Resolution::OutcomeRejected { .. } => "outcome_rejected",
                Resolution::AlreadyReported => "already_reported",
                Resolution::NotEffectBearing { .. } => "not_effect_bearing",
                Resolution::NotAdmitted => "not_admitted",
            }),
        ),
    };
    let last = job.evidence.last();
    ExecutionSummary {
        node_id,
        command: job.command.clone(),
        effect: job.effect.clone(),
        phase: phase.to_owned(),
        resolution: resolution.map(str::to_owned),
        attempts: job.attempts(),
        last_outcome: last.map(|e| e.outcome.as_str().to_owned()),
        last_reason: last.and_then(|e| e.reason.clone()),
        last_evidence_hash: last.map(|e| e.hash_hex()),
    }
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(super) struct LedgerQuery {
    #[serde(default)]
    from: u64,
    limit: Option<u64>,
    #[serde(default)]
    consistency: Consistency,
}

pub(super) async fn ledger(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    uri: Uri,
    query: Result<Query<LedgerQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => return ApiError::new(ErrorCode::MalformedRequest, e.body_text()).into_response(),
    };
    let limit = match node.service.page_limit(query.limit) {
        Ok(limit) => limit,
        Err(e) => return ApiError(e).into_response(),
    };
    linearized(&node, &headers, &uri, query.consistency, |s| {
        s.ledger_page(query.from, limit)
    })
    .await
}

pub(super) async fn subject_state(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    uri: Uri,
    Path((domain, subject)): Path<(String, String)>,
    Query(query): Query<ReadQuery>,
) -> Response {
    let consistency = query.consistency;
    linearized(&node, &headers, &uri, consistency, |s| {
        s.subject_view(&domain, &subject, consistency)
    })
    .await
}

pub(super) async fn constitution(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<ReadQuery>,
) -> Response {
    linearized(
        &node,
        &headers,
        &uri,
        query.consistency,
        Service::constitution_view,
    )
    .await
}

pub(super) async fn status(State(node): State<Arc<Node>>) -> Json<StatusView> {
    Json(node.service.status())
}

pub(super) async fn health(State(node): State<Arc<Node>>) -> Response {
    let view = node.service.health();
    let status = if view.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(view)).into_response()
}

pub(super) async fn execution(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<Json<ExecutionView>, ApiError> {
    let id = parse_id(&id)?;
    let job = match &node.executor {
        Some(executor) => executor.journal().job(&id).map_err(ServiceError::storage)?,
        None => None,
    };
    Ok(Json(ExecutionView {
        id,
        node_id: node.service.id,
        enabled: node.executor.is_some(),
        job,
    }))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExecutionListQuery {
    after: Option<String>,
    limit: Option<u64>,
}

/// `GET /v1/execution?after=&limit=`: this node's execution jobs (its journal), in
/// proposal-id order, at most `limits.read_page_entries_max` per page. Jobs live in the
/// journal of the node that ran them, so each node answers for itself.
pub(super) async fn execution_list(
    State(node): State<Arc<Node>>,
    Query(query): Query<ExecutionListQuery>,
) -> Result<Json<crate::wire::ExecutionList>, ApiError> {
    let _permit = node.service.admit()?;
    let limit = node.service.page_limit(query.limit)?;
    let after = match &query.after {
        Some(id) => Some(parse_id(id)?),
        None => None,
    };
    let jobs = match &node.executor {
        Some(executor) => executor
            .journal()
            .jobs(after.as_ref(), usize::try_from(limit).unwrap_or(usize::MAX))
            .map_err(ServiceError::storage)?,
        None => Vec::new(),
    };
    let next = (jobs.len() as u64 == limit)
        .then(|| jobs.last().map(|job| job.proposal_id))
        .flatten();
    Ok(Json(crate::wire::ExecutionList {
        node_id: node.service.id,
        enabled: node.executor.is_some(),
        jobs,
        next,
    }))
}

/// `GET /v1/internal/read-index`: the leader's read index and genesis, for a follower's
/// linearizable read. Leadership is confirmed with a quorum after the request arrived; the
/// follower then waits until it has applied the index and reads locally. A follower that
/// names another genesis (`x-docket-genesis`) is refused. Never forwarded.
pub(super) async fn internal_read_index(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
) -> Response {
    let service = &node.service;
    let _permit = match service.admit() {
        Ok(p) => p,
        Err(e) => return ApiError(e).into_response(),
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let asker = match (
        header(super::FORWARDED_HEADER),
        header(super::GENESIS_HEADER),
    ) {
        (Some(node), Some(genesis)) => match (node.parse(), genesis.parse()) {
            (Ok(node), Ok(genesis)) => Some((node, genesis)),
            _ => {
                return ApiError::new(
                    ErrorCode::MalformedRequest,
                    format!(
                        "{}: {node:?} and {}: {genesis:?} must be a node id and an entry hash",
                        super::FORWARDED_HEADER,
                        super::GENESIS_HEADER
                    ),
                )
                .into_response()
            }
        },
        _ => None,
    };
    match service.leader_read_index(asker).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => ApiError(e).into_response(),
    }
}
