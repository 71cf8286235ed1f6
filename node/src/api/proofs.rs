//! Checkpoints and proofs: `GET /v1/checkpoint` (a final checkpoint of this node's newest
//! ledger size, cosigned by a quorum of voters), `GET /v1/checkpoint/{size}` (one this node
//! gathered before), RFC 9162 inclusion and consistency proofs, and the node-only
//! `POST /v1/internal/cosign` a gathering node asks the voters with.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::Json;
use docket_core::checkpoint::{Checkpoint, SignedCheckpoint};
use docket_core::LedgerIndex;
use docket_service::checkpoints::Cosigner;
use docket_service::ServiceError;
use serde::Deserialize;

use super::ApiJson;
use crate::error::{ApiError, ErrorCode};
use crate::server::Node;
use crate::wire::*;

fn view(signed: &SignedCheckpoint, cosigners: Vec<Cosigner>) -> CheckpointView {
    CheckpointView {
        note: signed.to_note(),
        size: signed.checkpoint.size,
        root: hex::encode(signed.checkpoint.root),
        state: signed.checkpoint.state,
        quorum: cosigners.len() / 2 + 1,
        cosigners,
    }
}

pub(super) async fn latest(
    State(node): State<Arc<Node>>,
) -> Result<Json<CheckpointView>, ApiError> {
    let _permit = node.service.admit()?;
    let (signed, cosigners) = node.service.checkpoint().await?;
    Ok(Json(view(&signed, cosigners)))
}

pub(super) async fn at_size(
    State(node): State<Arc<Node>>,
    Path(size): Path<u64>,
) -> Result<Json<CheckpointView>, ApiError> {
    let (signed, cosigners) = node.service.final_checkpoint(size)?;
    Ok(Json(view(&signed, cosigners)))
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(super) struct InclusionQuery {
    index: u64,
    size: u64,
}

pub(super) async fn inclusion(
    State(node): State<Arc<Node>>,
    Query(query): Query<InclusionQuery>,
) -> Result<Json<InclusionProofView>, ApiError> {
    let replica = &node.service.replica;
    if query.index >= query.size || query.size > replica.ledger_len() {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!(
                "an inclusion proof needs index < size <= {} (this node's ledger length); got \
                 index {} and size {}",
                replica.ledger_len(),
                query.index,
                query.size
            ),
        ));
    }
    let entry = replica
        .ledger_entry(LedgerIndex(query.index))
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("storage: {e}")))?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such entry"))?;
    let storage = |e: docket_raft::TreeError| ApiError::new(ErrorCode::Internal, format!("{e}"));
    let proof = replica
        .inclusion_proof(LedgerIndex(query.index), query.size)
        .map_err(storage)?;
    let root = replica.tree_root_at(query.size).map_err(storage)?;
    Ok(Json(InclusionProofView {
        index: query.index,
        size: query.size,
        entry_hash: entry.hash,
        root: hex::encode(root),
        proof: proof.iter().map(hex::encode).collect(),
    }))
}

pub(super) async fn entry(
    State(node): State<Arc<Node>>,
    Query(query): Query<InclusionQuery>,
) -> Result<Json<EntryProofView>, ApiError> {
    let Json(inclusion) = inclusion(State(node.clone()), Query(query)).await?;
    let entry = node
        .service
        .replica
        .ledger_entry(LedgerIndex(inclusion.index))
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("storage: {e}")))?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such entry"))?;
    Ok(Json(EntryProofView {
        entry,
        size: inclusion.size,
        root: inclusion.root,
        proof: inclusion.proof,
    }))
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(super) struct ConsistencyQuery {
    from: u64,
    to: u64,
}

pub(super) async fn consistency(
    State(node): State<Arc<Node>>,
    Query(query): Query<ConsistencyQuery>,
) -> Result<Json<ConsistencyProofView>, ApiError> {
    let replica = &node.service.replica;
    if query.from == 0 || query.from > query.to || query.to > replica.ledger_len() {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!(
                "a consistency proof needs 0 < from <= to <= {} (this node's ledger length); \
                 got from {} and to {}",
                replica.ledger_len(),
                query.from,
                query.to
            ),
        ));
    }
    let storage = |e: docket_raft::TreeError| ApiError::new(ErrorCode::Internal, format!("{e}"));
    let proof = if query.from == query.to {
        Vec::new()
    } else {
        replica
            .consistency_proof(query.from, query.to)
            .map_err(storage)?
    };
    Ok(Json(ConsistencyProofView {
        from: query.from,
        to: query.to,
        from_root: hex::encode(replica.tree_root_at(query.from).map_err(storage)?),
        to_root: hex::encode(replica.tree_root_at(query.to).map_err(storage)?),
        proof: proof.iter().map(hex::encode).collect(),
    }))
}

/// The file a replica that quarantined itself leaves in its data directory, holding the
/// evidence; `docket serve` refuses to start while it is there.
pub const DIVERGED_FILE: &str = "DIVERGED.json";

/// `POST /v1/internal/diverged`: a leader tells this replica that a final checkpoint
/// disagrees with it. The replica checks that for itself ([`docket_service::Service::quarantine`]:
/// a quorum's cosignatures under the keys its own ledger declares, and its own root or
/// state differing) before it stops, so no caller can make an honest replica stop; it
/// then leaves [`DIVERGED_FILE`] so a restart does not rejoin unrepaired.
pub(super) async fn internal_diverged(
    State(node): State<Arc<Node>>,
    ApiJson(request): ApiJson<crate::wire::DivergedRequest>,
) -> Result<Json<crate::wire::Diverged>, ApiError> {
    let evidence = node.service.quarantine(&request.note).await?;
    let path = node.config.data_dir.join(DIVERGED_FILE);
    let text = serde_json::to_string_pretty(&evidence)
        .map_err(|e| ApiError(ServiceError::internal(e.to_string())))?;
    if let Err(error) = std::fs::write(&path, text) {
        tracing::error!(%error, path = %path.display(), "cannot write the divergence marker");
    }
    Ok(Json(evidence))
}

pub(super) async fn internal_cosign(
    State(node): State<Arc<Node>>,
    ApiJson(request): ApiJson<CosignRequest>,
) -> Result<Json<CosignResponse>, ApiError> {
    let checkpoint = Checkpoint::parse_body(&request.checkpoint)
        .map_err(|e| ApiError::new(ErrorCode::MalformedRequest, e.to_string()))?;
    let cosignature = node.service.cosign(&checkpoint).await?;
    Ok(Json(CosignResponse {
        cosignature: cosignature.line(),
    }))
}
