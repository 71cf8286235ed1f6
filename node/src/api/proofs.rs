//! Checkpoints and proofs: `GET /v1/checkpoint` (a final checkpoint of this node's newest
//! ledger size, cosigned by a quorum of voters), `GET /v1/checkpoint/{size}` (one this node
//! gathered before), RFC 9162 inclusion and consistency proofs, and the node-only
//! `POST /v1/internal/cosign` a gathering node asks the voters with.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use docket_core::checkpoint::{Checkpoint, SignedCheckpoint};
use docket_core::LedgerIndex;
use docket_service::checkpoints::Cosigner;
use docket_service::ServiceError;
use serde::Deserialize;

use super::{answer, ApiJson, Forwardable};
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
pub(super) struct StateProofQuery {
    domain: Option<String>,
    subject: Option<String>,
    proposal: Option<String>,
    outcome: Option<String>,
}

/// The state row a [`StateProofQuery`] names: a subject's (`domain` and `subject`) or a
/// proposal's status (`proposal`).
fn row_key(query: &StateProofQuery) -> Result<Vec<u8>, ApiError> {
    let id = |id: &str| -> Result<docket_core::ProposalId, ApiError> {
        id.parse()
            .map_err(|e| ApiError::new(ErrorCode::MalformedRequest, format!("proposal id: {e}")))
    };
    match (
        &query.domain,
        &query.subject,
        &query.proposal,
        &query.outcome,
    ) {
        (Some(domain), Some(subject), None, None) => {
            Ok(docket_core::rows::subject_key(domain, subject))
        }
        (None, None, Some(proposal), None) => Ok(docket_core::rows::proposal_key(&id(proposal)?)),
        (None, None, None, Some(effect)) => Ok(docket_core::rows::outcome_key(
            &docket_core::ProposalId::outcome_of(&id(effect)?),
        )),
        _ => Err(ApiError::new(
            ErrorCode::MalformedRequest,
            "a state proof names one row: a subject (`domain` and `subject`), a proposal's \
             status (`proposal`) or an effect's outcome (`outcome`)",
        )),
    }
}

/// `GET /v1/proofs/state`: a state row proved under a final checkpoint
/// ([`docket_service::state_proofs`]). A follower forwards it to the leader when the row
/// needs an anchor first.
pub(super) async fn state(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<StateProofQuery>,
) -> Response {
    let key = match row_key(&query) {
        Ok(key) => key,
        Err(e) => return e.into_response(),
    };
    let _permit = match node.service.admit() {
        Ok(p) => p,
        Err(e) => return ApiError(e).into_response(),
    };
    let result = node.service.prove_row(&key).await.map(|proved| {
        let hex32 = |h: &[u8; 32]| hex::encode(h);
        StateProofView {
            format: STATE_PROOF_FORMAT.to_owned(),
            checkpoint: proved.checkpoint.to_note(),
            cosigners: proved.cosigners,
            key: hex::encode(&key),
            value: proved.row.value.as_deref().map(hex::encode),
            levels: proved
                .row
                .proof
                .levels
                .iter()
                .map(|level| level.iter().map(hex32).collect())
                .collect(),
            leaf: proved.row.proof.leaf.map(|(k, v)| [hex32(&k), hex32(&v)]),
        }
    });
    let request = Forwardable {
        method: Method::GET,
        path_and_query: uri.path_and_query().map_or(uri.path(), |p| p.as_str()),
        body: None,
    };
    answer(&node, &headers, request, result).await
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
