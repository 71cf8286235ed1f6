//! The HTTP/JSON client API (axum). Shapes are in [`crate::wire`].
//!
//! The front door refuses, before consensus, whatever cannot be recorded honestly:
//! unparseable or oversize bodies, unknown fields, floats, bad signatures, the wrong ledger
//! id. Every correctly signed proposal reaches the core, which checks everything again and
//! records its decision. Followers forward writes (and linearizable reads) to the leader.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::read_index::{ReadError, ReadIndexResponse};
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use docket_core::json::Objects;
use docket_core::{Constitution, LedgerIndex, ProposalId, SignatureCheck, SignedProposal};
use docket_raft::{Command, CommandResponse, NodeAddr, Outcome, ProposalOutcome};
use openraft::error::{InitializeError, RaftError};
use openraft::ChangeMembers;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::error::{ApiError, ErrorCode};
use crate::server::{members, now_ledger_time, Node};
use crate::wire::*;

/// Header a forwarding node sets, so a request is forwarded at most once.
pub const FORWARDED_HEADER: &str = "x-docket-forwarded";
/// On a read's response: the id of the node whose state answered it (a follower answers
/// linearizable reads itself after the leader's read index; see `read_index`).
pub const SERVED_BY_HEADER: &str = "x-docket-served-by";

/// How long an added learner may take to catch up before `member add` gives up waiting
/// (the learner stays; `member promote` finishes the job later).
pub const CATCH_UP_TIMEOUT_MS: u64 = 60_000;

/// A member within this many log entries of the leader counts as caught up / healthy.
pub const LAG_HEALTHY_MAX: u64 = 1_000;

/// Deadline for connecting to a node being added: an unreachable node fails fast.
pub const PROBE_TIMEOUT_MS: u64 = 2_000;

/// Deadline of a membership change or cluster initialization.
pub const MEMBERSHIP_TIMEOUT_MS: u64 = 30_000;

type ApiResult<T> = Result<Json<T>, ApiError>;

#[derive(Clone, Debug)]
struct AppState {
    node: Arc<Node>,
    inflight: Arc<Semaphore>,
}

pub fn router(node: Arc<Node>) -> Router {
    let limits = node.config.limits.clone();
    let state = AppState {
        node,
        inflight: Arc::new(Semaphore::new(limits.clients_inflight_max)),
    };
    Router::new()
        .route("/v1/proposals", post(submit_one))
        .route("/v1/batches", post(submit_batch))
        .route("/v1/proposals/{id}", get(proposal))
        .route("/v1/ledger", get(ledger))
        .route("/v1/state/{domain}/{subject}", get(subject_state))
        .route("/v1/constitution", get(constitution))
        .route("/v1/status", get(status))
        .route("/v1/health", get(health))
        .route("/v1/execution/{id}", get(execution))
        .route("/v1/internal/read-index", get(internal_read_index))
        .route("/v1/cluster/init", post(init))
        .route("/v1/cluster/members", get(list_members).post(add_member))
        .route(
            "/v1/cluster/members/{id}",
            axum::routing::delete(remove_member),
        )
        .route("/v1/cluster/members/{id}/promote", post(promote_member))
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
        .layer(DefaultBodyLimit::max(limits.request_body_bytes_max))
        .with_state(state)
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

fn forwarded(headers: &HeaderMap) -> bool {
    headers.contains_key(FORWARDED_HEADER)
}

/// Sends the request on to the leader and relays its answer verbatim.
///
/// When no answer comes back, what the caller is told depends on whether the leader may
/// have acted. A connection that could not be made means the request never reached it:
/// `NO_LEADER`, nothing recorded. A deadline passed is `TIMEOUT`. Any other failure of a
/// write (the connection broke after the request was sent, or while the answer was read)
/// is `OUTCOME_UNKNOWN`: the leader may have recorded it, and only resubmitting the same
/// signed request (idempotent) or reading it by id settles which. A read that fails the
/// same way changed nothing, so it is `NO_LEADER` as before.
async fn forward(
    node: &Node,
    method: Method,
    path_and_query: &str,
    body: Option<Vec<u8>>,
    leader: &str,
) -> Response {
    let url = format!("http://{leader}{path_and_query}");
    let is_write = method != Method::GET;
    let mut request = node
        .http
        .request(method, &url)
        .header(FORWARDED_HEADER, node.id.to_string());
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body);
    }
    let lost = |e: &reqwest::Error| {
        let (code, what) = if e.is_timeout() {
            (ErrorCode::Timeout, "it may or may not have been recorded")
        } else if e.is_connect() {
            (
                ErrorCode::NoLeader,
                "the request did not reach it: nothing was recorded",
            )
        } else if is_write {
            (
                ErrorCode::OutcomeUnknown,
                "the answer was lost after the request reached it: it may or may not have \
                 been recorded; resubmit the same signed request, or read it by id",
            )
        } else {
            (ErrorCode::NoLeader, "nothing was changed")
        };
        ApiError::new(
            code,
            format!("forwarding to the leader at {leader} failed ({e}); {what}"),
        )
        .with_leader(Some(leader.to_owned()))
        .into_response()
    };
    match request.send().await {
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

/// Checks a proposal at the front door: the ledger id and the signature.
fn front_door(node: &Node, signed: &SignedProposal) -> Result<ProposalId, ApiError> {
    if signed.proposal.ledger_id != node.ledger_id {
        return Err(ApiError::new(
            ErrorCode::WrongLedger,
            format!(
                "proposal is signed for ledger {:?}; this is {:?}",
                signed.proposal.ledger_id.as_str(),
                node.ledger_id.as_str()
            ),
        ));
    }
    let id = signed.id();
    // Through the replica's memo: when this node applies the entry, its check of the same
    // signature is answered from the memo instead of verified a second time.
    node.replica.signatures().check(signed, &id).map_err(|e| {
        ApiError::new(
            ErrorCode::BadSignature,
            format!("proposal {}: {e}", id.short()),
        )
    })?;
    Ok(id)
}

fn storage_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::Internal, format!("storage: {e}"))
}

/// Turns outcomes into responses, reading each decision's entry from this node's ledger.
fn responses(node: &Node, outcomes: Vec<ProposalOutcome>) -> Result<Vec<SubmitResponse>, ApiError> {
    outcomes
        .into_iter()
        .map(|ProposalOutcome { id, outcome }| {
            let (index, duplicate, appended) = match outcome {
                Outcome::Recorded {
                    appended, index, ..
                } => (index, false, appended.len()),
                Outcome::Duplicate { index, .. } => (index, true, 0),
            };
            let entry = node
                .replica
                .ledger_entry(index)
                .map_err(storage_error)?
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::Internal,
                        format!("entry {index} not applied yet"),
                    )
                })?;
            Ok(SubmitResponse {
                id,
                duplicate,
                entry,
                appended,
            })
        })
        .collect()
}

async fn admit(state: &AppState) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
    state.inflight.try_acquire().map_err(|_| {
        ApiError::new(
            ErrorCode::Overloaded,
            "too many requests in flight (limits.clients_inflight_max); retry shortly",
        )
    })
}

async fn submit(
    state: &AppState,
    headers: &HeaderMap,
    path: &str,
    proposals: Vec<SignedProposal>,
) -> Result<Result<Vec<SubmitResponse>, Response>, ApiError> {
    let node = &state.node;
    let _permit = admit(state).await?;
    for signed in &proposals {
        front_door(node, signed)?;
    }
    match node.submit(proposals.clone()).await {
        Ok(outcomes) => Ok(Ok(responses(node, outcomes)?)),
        Err(error) if error.code == ErrorCode::NotLeader && !forwarded(headers) => {
            let leader = error
                .leader
                .clone()
                .expect("invariant: NOT_LEADER carries the leader");
            let body = if path == "/v1/batches" {
                serde_json::to_vec(&BatchRequest { proposals })
            } else {
                serde_json::to_vec(&proposals[0])
            }
            .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
            Ok(Err(
                forward(node, Method::POST, path, Some(body), &leader).await
            ))
        }
        Err(error) => Err(error),
    }
}

async fn submit_one(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(signed): ApiJson<SignedProposal>,
) -> Response {
    match submit(&state, &headers, "/v1/proposals", vec![signed]).await {
        Ok(Ok(mut results)) => Json(results.remove(0)).into_response(),
        Ok(Err(forwarded)) => forwarded,
        Err(error) => error.into_response(),
    }
}

async fn submit_batch(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(batch): ApiJson<BatchRequest>,
) -> Response {
    let max = state.node.config.limits.batch_proposals_max;
    if batch.proposals.is_empty() || batch.proposals.len() > max {
        return ApiError::new(
            ErrorCode::LimitExceeded,
            format!(
                "a batch holds 1 to {max} proposals (limits.batch_proposals_max); got {}",
                batch.proposals.len()
            ),
        )
        .into_response();
    }
    match submit(&state, &headers, "/v1/batches", batch.proposals).await {
        Ok(Ok(results)) => Json(BatchResponse { results }).into_response(),
        Ok(Err(forwarded)) => forwarded,
        Err(error) => error.into_response(),
    }
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct ReadQuery {
    #[serde(default)]
    consistency: Consistency,
}

/// Waits until this node's state reflects every write acknowledged before the read began
/// (openraft's read-index). `Err(Some(leader))` means: forward to the leader.
async fn read_barrier(
    node: &Node,
    consistency: Consistency,
) -> Result<(), (ApiError, Option<String>)> {
    if consistency == Consistency::Local {
        return Ok(());
    }
    match node.reads.wait().await {
        Ok(()) => Ok(()),
        Err(ReadError::Forward(leader)) => {
            let code = if leader.is_some() {
                ErrorCode::NotLeader
            } else {
                ErrorCode::NoLeader
            };
            Err((
                ApiError::new(code, "linearizable reads are served by the leader")
                    .with_leader(leader.clone()),
                leader,
            ))
        }
        Err(ReadError::NoQuorum(e)) => Err((
            ApiError::new(
                ErrorCode::NoLeader,
                format!("cannot confirm leadership: {e}"),
            ),
            None,
        )),
        Err(ReadError::Fatal(f)) => Err((ApiError::new(ErrorCode::Internal, f), None)),
    }
}

/// `GET /v1/internal/read-index`: the leader's read index, for a follower's linearizable
/// read (`read_index` module). Leadership is confirmed with a quorum after the request
/// arrived; the follower then waits until it has applied the index and reads locally.
async fn internal_read_index(State(state): State<AppState>) -> Response {
    let _permit = match admit(&state).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    match state.node.leader_reads.wait().await {
        Ok(read_index) => Json(ReadIndexResponse { read_index }).into_response(),
        Err(error) => match error {
            ReadError::Forward(leader) => {
                ApiError::new(ErrorCode::NotLeader, "read indexes come from the leader")
                    .with_leader(leader)
            }
            ReadError::NoQuorum(e) => ApiError::new(
                ErrorCode::NoLeader,
                format!("cannot confirm leadership: {e}"),
            ),
            ReadError::Fatal(f) => ApiError::new(ErrorCode::Internal, f),
        }
        .into_response(),
    }
}

/// Runs a read: barrier, then `read` on local state; forwards to the leader when needed.
async fn linearized<T: serde::Serialize>(
    state: &AppState,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
    consistency: Consistency,
    read: impl FnOnce(&Node) -> Result<T, ApiError>,
) -> Response {
    let node = &state.node;
    let _permit = match admit(state).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    match read_barrier(node, consistency).await {
        Ok(()) => match read(node) {
            Ok(value) => ([(SERVED_BY_HEADER, node.id.to_string())], Json(value)).into_response(),
            Err(e) => e.into_response(),
        },
        Err((_, Some(leader))) if !forwarded(headers) => {
            let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
            forward(node, Method::GET, path, None, &leader).await
        }
        Err((error, _)) => error.into_response(),
    }
}

fn not_initialized() -> ApiError {
    ApiError::new(
        ErrorCode::NotInitialized,
        "the cluster has no genesis entry yet; run `docket cluster init`",
    )
}

async fn proposal(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Path(id): Path<String>,
    Query(query): Query<ReadQuery>,
) -> Response {
    let id: ProposalId = match id.parse() {
        Ok(id) => id,
        Err(e) => {
            return ApiError::new(ErrorCode::MalformedRequest, format!("proposal id: {e}"))
                .into_response()
        }
    };
    linearized(&state, &headers, &uri, query.consistency, |node| {
        let record = node
            .replica
            .with_state(|s| s.map(|s| s.proposal(&id).copied()))
            .ok_or_else(not_initialized)?
            .ok_or_else(|| {
                ApiError::new(ErrorCode::NotFound, format!("no proposal {id} is recorded"))
            })?;
        let mut indexes: BTreeSet<LedgerIndex> = record.deferred_at.into_iter().collect();
        indexes.insert(record.index);
        let entries = indexes
            .into_iter()
            .map(|i| {
                node.replica
                    .ledger_entry(i)
                    .map_err(storage_error)?
                    .ok_or_else(|| storage_error("missing entry"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ProposalView {
            id,
            status: record.status,
            entries,
        })
    })
    .await
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct LedgerQuery {
    #[serde(default)]
    from: u64,
    limit: Option<u64>,
    #[serde(default)]
    consistency: Consistency,
}

async fn ledger(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    query: Result<Query<LedgerQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => return ApiError::new(ErrorCode::MalformedRequest, e.body_text()).into_response(),
    };
    let max = state.node.config.limits.read_page_entries_max as u64;
    let limit = query.limit.unwrap_or(max);
    if limit == 0 || limit > max {
        return ApiError::new(
            ErrorCode::LimitExceeded,
            format!("limit must be 1 to {max} (limits.read_page_entries_max)"),
        )
        .into_response();
    }
    linearized(&state, &headers, &uri, query.consistency, |node| {
        let length = node.replica.ledger_len();
        let entries = node
            .replica
            .ledger_entries(LedgerIndex(query.from), limit)
            .map_err(storage_error)?;
        let end = query.from.saturating_add(entries.len() as u64);
        let next = (end < length && !entries.is_empty()).then_some(LedgerIndex(end));
        Ok(LedgerPage {
            entries,
            next,
            length,
        })
    })
    .await
}

async fn subject_state(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Path((domain, subject)): Path<(String, String)>,
    Query(query): Query<ReadQuery>,
) -> Response {
    linearized(&state, &headers, &uri, query.consistency, |node| {
        node.replica.with_state(|s| {
            let s = s.ok_or_else(not_initialized)?;
            let initial = s
                .constitution()
                .domains
                .get(&domain)
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::NotFound,
                        format!("the constitution declares no domain {domain:?}"),
                    )
                })?
                .initial
                .clone();
            Ok(SubjectView {
                domain: domain.clone(),
                subject: subject.clone(),
                state: s.subject(&domain, &subject).cloned(),
                initial_state: initial,
                as_of_length: s.head().index.0 + 1,
                consistency: query.consistency,
            })
        })
    })
    .await
}

async fn constitution(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Query(query): Query<ReadQuery>,
) -> Response {
    linearized(&state, &headers, &uri, query.consistency, |node| {
        node.replica.with_state(|s| {
            let s = s.ok_or_else(not_initialized)?;
            let active = s.active_constitution();
            Ok(ConstitutionView {
                version: active.version,
                name: active.constitution.name.clone(),
                adopted_at: active.adopted_at,
                document: active.document.clone(),
                history: s.constitution_history().to_vec(),
            })
        })
    })
    .await
}

fn role(state: openraft::ServerState) -> &'static str {
    match state {
        openraft::ServerState::Leader => "leader",
        openraft::ServerState::Follower => "follower",
        openraft::ServerState::Candidate => "candidate",
        openraft::ServerState::Learner => "learner",
        openraft::ServerState::Shutdown => "shutdown",
    }
}

pub fn status_view(node: &Node) -> StatusView {
    let metrics = node.raft.metrics().borrow().clone();
    let (state_hash, constitution_version, deferred) = node.replica.with_state(|s| match s {
        Some(s) => (
            Some(s.hash()),
            Some(s.constitution_version()),
            s.deferred().len() as u64,
        ),
        None => (None, None, 0),
    });
    let initialized = metrics
        .membership_config
        .membership()
        .nodes()
        .next()
        .is_some();
    let leader_api_addr = metrics.current_leader.and_then(|l| {
        metrics
            .membership_config
            .membership()
            .get_node(&l)
            .map(|n| n.api_addr.clone())
    });
    StatusView {
        node_id: node.id,
        cluster_id: node.cluster_id.clone(),
        role: role(metrics.state).to_owned(),
        leader_id: metrics.current_leader,
        leader_api_addr,
        term: metrics.current_term,
        last_log_index: metrics.last_log_index,
        applied_index: metrics.last_applied.map(|l| l.index),
        initialized,
        ledger_length: node.replica.ledger_len(),
        state_hash,
        constitution_version,
        deferred,
        members: members(node),
    }
}

async fn status(State(state): State<AppState>) -> Json<StatusView> {
    Json(status_view(&state.node))
}

async fn health(State(state): State<AppState>) -> Response {
    let metrics = state.node.raft.metrics().borrow().clone();
    let ok = metrics.running_state.is_ok() && metrics.current_leader.is_some();
    let view = HealthView {
        ok,
        role: role(metrics.state).to_owned(),
        leader_id: metrics.current_leader,
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(view)).into_response()
}

async fn init(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<InitRequest>,
) -> ApiResult<StatusView> {
    let node = &state.node;
    if node.replica.ledger_len() > 0 {
        return Err(ApiError::new(
            ErrorCode::AlreadyInitialized,
            format!("ledger {} already has its genesis entry", node.ledger_id),
        ));
    }
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
    Constitution::parse(&document).map_err(|e| {
        ApiError::new(
            ErrorCode::MalformedRequest,
            format!("genesis constitution: {e}"),
        )
    })?;
    let members = BTreeMap::from([(node.id, node.addr.clone())]);
    match node.raft.initialize(members).await {
        Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
        Err(e) => {
            return Err(ApiError::new(
                ErrorCode::Internal,
                format!("initialize: {e}"),
            ))
        }
    }
    let deadline = Instant::now() + Duration::from_millis(MEMBERSHIP_TIMEOUT_MS);
    loop {
        let command = Command::Genesis {
            ledger_id: node.ledger_id.clone(),
            document: document.clone(),
            time: now_ledger_time(),
        };
        match node.raft.client_write(command).await {
            Ok(response) => match response.data {
                CommandResponse::Genesis { .. } => break,
                CommandResponse::Refused(e) => {
                    let code = if e.code() == "ALREADY_INITIALIZED" {
                        ErrorCode::AlreadyInitialized
                    } else {
                        ErrorCode::MalformedRequest
                    };
                    return Err(ApiError::new(code, e.to_string()));
                }
                other => {
                    return Err(ApiError::new(
                        ErrorCode::Internal,
                        format!("unexpected response {other:?}"),
                    ))
                }
            },
            Err(e) => {
                let error = node.write_error(e);
                if Instant::now() > deadline {
                    return Err(error);
                }
                // Leadership is still being established after initialize.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    Ok(Json(status_view(node)))
}

async fn execution(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ExecutionView>, ApiError> {
    let id: ProposalId = id
        .parse()
        .map_err(|e| ApiError::new(ErrorCode::MalformedRequest, format!("proposal id: {e}")))?;
    let node = &state.node;
    let job = match &node.executor {
        Some(executor) => executor.journal().job(&id).map_err(storage_error)?,
        None => None,
    };
    Ok(Json(ExecutionView {
        id,
        node_id: node.id,
        enabled: node.executor.is_some(),
        job,
    }))
}

async fn list_members(State(state): State<AppState>) -> Json<MembersView> {
    Json(MembersView {
        members: members(&state.node),
    })
}

/// Membership operations run on the leader; elsewhere they are forwarded once.
fn leader_or_forward(node: &Node, headers: &HeaderMap) -> Result<(), Option<String>> {
    if node.is_leader() {
        return Ok(());
    }
    match node.leader_api_addr() {
        Some(leader) if !forwarded(headers) => Err(Some(leader)),
        _ => Err(None),
    }
}

/// Runs a membership operation on the leader: here if this node leads, otherwise forwarded
/// once to the leader (with `body` for POSTs).
async fn on_leader<F>(
    node: &Arc<Node>,
    headers: &HeaderMap,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
    op: impl FnOnce() -> F,
) -> Response
where
    F: std::future::Future<Output = Result<MembersView, ApiError>>,
{
    match leader_or_forward(node, headers) {
        Ok(()) => match op().await {
            Ok(view) => Json(view).into_response(),
            Err(e) => e.into_response(),
        },
        Err(Some(leader)) => forward(node, method, path, body, &leader).await,
        Err(None) => ApiError::new(
            ErrorCode::NoLeader,
            "no leader to run the membership change",
        )
        .into_response(),
    }
}

async fn add_member(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<AddMemberRequest>,
) -> Response {
    let node = state.node.clone();
    let body = serde_json::to_vec(&request).ok();
    on_leader(
        &node,
        &headers,
        Method::POST,
        "/v1/cluster/members",
        body,
        || add_member_on_leader(&node, request),
    )
    .await
}

async fn add_member_on_leader(
    node: &Node,
    request: AddMemberRequest,
) -> Result<MembersView, ApiError> {
    if request.id == 0 {
        return Err(ApiError::new(
            ErrorCode::MalformedRequest,
            "member id must be at least 1",
        ));
    }
    for (field, addr) in [
        ("raft_addr", &request.raft_addr),
        ("api_addr", &request.api_addr),
    ] {
        addr.parse::<std::net::SocketAddr>().map_err(|e| {
            ApiError::new(
                ErrorCode::MalformedRequest,
                format!("{field} {addr:?}: {e}"),
            )
        })?;
    }
    let current = members(node);
    if current.iter().any(|m| m.id == request.id && m.voter) {
        return Err(ApiError::new(
            ErrorCode::UnsafeMembershipChange,
            format!("node {} is already a voter", request.id),
        ));
    }
    // Fail fast on an unreachable node instead of letting replication retry forever.
    let probe = tokio::time::timeout(
        Duration::from_millis(PROBE_TIMEOUT_MS),
        tokio::net::TcpStream::connect(&request.raft_addr),
    )
    .await;
    if !matches!(probe, Ok(Ok(_))) {
        return Err(ApiError::new(
            ErrorCode::MemberUnreachable,
            format!("cannot connect to node {} at raft_addr {} within {PROBE_TIMEOUT_MS} ms; is `docket serve` running there?", request.id, request.raft_addr),
        ));
    }
    check_history(node, &request).await?;
    let addr = NodeAddr {
        raft_addr: request.raft_addr.clone(),
        api_addr: request.api_addr.clone(),
    };
    membership_op(node, false, node.raft.add_learner(request.id, addr, false)).await?;
    wait_caught_up(node, request.id).await?;
    if !request.learner {
        membership_op(
            node,
            false,
            node.raft.change_membership(
                ChangeMembers::AddVoterIds(BTreeSet::from([request.id])),
                false,
            ),
        )
        .await?;
    }
    Ok(MembersView {
        members: members(node),
    })
}

/// Refuses a node to be added that already holds a history other than this cluster's: one
/// initialized on its own (`docket cluster init` run against it by mistake) or by another
/// cluster. Raft would make it a learner and leave its ledger as it is — another genesis,
/// another state — and it would serve that history to clients. A node is asked over its
/// API for its status and, if initialized, its genesis entry (a local read: a former
/// member of this cluster rejoining has no leader to ask). A fresh node, or this
/// cluster's own member (same cluster id, same genesis entry hash), may join.
async fn check_history(node: &Node, request: &AddMemberRequest) -> Result<(), ApiError> {
    let unreachable = |what: &str, e: &dyn std::fmt::Display| {
        ApiError::new(
            ErrorCode::MemberUnreachable,
            format!(
                "cannot ask node {} at api_addr {} for its {what}: {e}; is `docket serve` \
                 running there with that api_addr?",
                request.id, request.api_addr
            ),
        )
    };
    let timeout = Duration::from_millis(PROBE_TIMEOUT_MS);
    let client = crate::client::Client::with_http(&request.api_addr, timeout, node.http.clone())
        .map_err(|e| ApiError::new(ErrorCode::MalformedRequest, e.to_string()))?;
    let status = client
        .status()
        .await
        .map_err(|e| unreachable("status", &e))?;
    if status.node_id != request.id {
        return Err(ApiError::new(
            ErrorCode::MalformedRequest,
            format!(
                "api_addr {} answers as node {}, not node {}",
                request.api_addr, status.node_id, request.id
            ),
        ));
    }
    if !status.initialized {
        return Ok(());
    }
    let other = |what: String| {
        ApiError::new(
            ErrorCode::MemberHasOtherHistory,
            format!(
                "node {} at {} is already initialized with {what}; it holds a history that \
                 is not this cluster's. Stop it, move its data directory away, start it \
                 empty and add it again",
                request.id, request.api_addr
            ),
        )
    };
    if status.cluster_id != node.cluster_id {
        return Err(other(format!("cluster id {:?}", status.cluster_id)));
    }
    let url = format!(
        "{}/v1/ledger?from=0&limit=1&consistency=local",
        client.base_url()
    );
    let theirs: LedgerPage = async {
        let response = node.http.get(&url).timeout(timeout).send().await?;
        response.error_for_status()?.json().await
    }
    .await
    .map_err(|e: reqwest::Error| unreachable("genesis entry", &e))?;
    let ours = node
        .replica
        .ledger_entry(LedgerIndex(0))
        .map_err(storage_error)?
        .map(|entry| entry.hash);
    let theirs = theirs.entries.first().map(|entry| entry.hash);
    if theirs != ours {
        let hex = |hash: Option<docket_core::EntryHash>| {
            hash.map_or_else(|| "none".to_owned(), |h| h.to_string())
        };
        return Err(other(format!(
            "genesis entry {} (this cluster's is {})",
            hex(theirs),
            hex(ours)
        )));
    }
    Ok(())
}

/// Runs one membership change on the leader, with a deadline. Checked here, immediately
/// before the change (not once per request: adding and promoting first wait for the new
/// node to catch up, and leadership can move and come back meanwhile): a leader that is
/// not a voter of the configuration the cluster is moving to — a change removing it was
/// cut short by a leadership change — may only complete that removal. Any other change
/// would leave the cluster led by a non-member, about which openraft 0.9.25 is
/// inconsistent (openraft#923; found by the simulator, seed 54, whose API has the same
/// guard). Removing itself from the joint configuration resolves to the configuration it
/// was moving to, openraft's own second step of a leader's removal.
async fn membership_op<T>(
    node: &Node,
    completes_own_removal: bool,
    op: impl std::future::Future<
        Output = Result<T, RaftError<u64, openraft::error::ClientWriteError<u64, NodeAddr>>>,
    >,
) -> Result<T, ApiError> {
    if !completes_own_removal
        && docket_raft::leads_outside_target_config(&node.raft.metrics().borrow(), node.id)
    {
        return Err(ApiError::new(
            ErrorCode::UnsafeMembershipChange,
            format!(
                "this leader (node {id}) is not a voter of the configuration the cluster is \
                 moving to: a change removing it was cut short by a leadership change. \
                 Finish that removal first (`docket member remove {id}`; this node then \
                 steps down), then retry",
                id = node.id
            ),
        ));
    }
    match tokio::time::timeout(Duration::from_millis(MEMBERSHIP_TIMEOUT_MS), op).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(node.write_error(e)),
        Err(_) => Err(ApiError::new(
            ErrorCode::Timeout,
            format!("membership change did not commit within {MEMBERSHIP_TIMEOUT_MS} ms"),
        )),
    }
}

async fn wait_caught_up(node: &Node, id: u64) -> Result<(), ApiError> {
    let deadline = Instant::now() + Duration::from_millis(CATCH_UP_TIMEOUT_MS);
    loop {
        if members(node)
            .iter()
            .any(|m| m.id == id && m.lag.is_some_and(|lag| lag <= LAG_HEALTHY_MAX))
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(ApiError::new(
                ErrorCode::Timeout,
                format!("node {id} was added as a learner but has not caught up within {CATCH_UP_TIMEOUT_MS} ms; run `docket member promote {id}` once it has"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn promote_member(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Response {
    let node = state.node.clone();
    let path = format!("/v1/cluster/members/{id}/promote");
    on_leader(&node, &headers, Method::POST, &path, None, || async {
        let current = members(&node);
        let member = current.iter().find(|m| m.id == id).ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                format!("node {id} is not a member; add it first"),
            )
        })?;
        if member.voter {
            return Err(ApiError::new(
                ErrorCode::UnsafeMembershipChange,
                format!("node {id} is already a voter"),
            ));
        }
        wait_caught_up(&node, id).await?;
        membership_op(
            &node,
            false,
            node.raft
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false),
        )
        .await?;
        Ok(MembersView {
            members: members(&node),
        })
    })
    .await
}

async fn remove_member(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Response {
    let node = state.node.clone();
    let path = format!("/v1/cluster/members/{id}");
    on_leader(&node, &headers, Method::DELETE, &path, None, || async {
        let current = probe_voters(&node, members(&node)).await;
        let member = current.iter().find(|m| m.id == id).ok_or_else(|| {
            ApiError::new(ErrorCode::NotFound, format!("node {id} is not a member"))
        })?;
        if member.voter {
            check_removal_is_safe(&current, id)?;
            membership_op(
                &node,
                id == node.id,
                node.raft
                    .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false),
            )
            .await?;
        } else {
            membership_op(
                &node,
                false,
                node.raft
                    .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false),
            )
            .await?;
        }
        Ok(MembersView {
            members: members(&node),
        })
    })
    .await
}

/// Marks every other voter whose Raft port accepts no connection within
/// [`PROBE_TIMEOUT_MS`] as not replicating (`lag: None`). openraft 0.9 reports only each
/// follower's matched log index, which stays where it was when the follower died: on an idle
/// cluster a dead voter's lag reads 0, and the quorum check alone would let a removal leave
/// the cluster waiting on it forever. (A connection is a weak liveness signal — a hung process
/// whose kernel still accepts passes — but it catches a crashed or stopped node.)
async fn probe_voters(node: &Node, mut current: Vec<MemberView>) -> Vec<MemberView> {
    let probes = current.iter().map(|m| async move {
        if !m.voter || m.id == node.id {
            return true;
        }
        let connect = tokio::net::TcpStream::connect(&m.raft_addr);
        matches!(
            tokio::time::timeout(Duration::from_millis(PROBE_TIMEOUT_MS), connect).await,
            Ok(Ok(_))
        )
    });
    let reachable = futures::future::join_all(probes).await;
    for (member, reachable) in current.iter_mut().zip(reachable) {
        if !reachable {
            member.lag = None;
        }
    }
    current
}

/// Refuses removing the last voter, or a removal after which the voters that are
/// replicating (within [`LAG_HEALTHY_MAX`]) could not form a quorum.
pub fn check_removal_is_safe(current: &[MemberView], id: u64) -> Result<(), ApiError> {
    let voters: Vec<&MemberView> = current.iter().filter(|m| m.voter).collect();
    if voters.len() == 1 {
        return Err(ApiError::new(
            ErrorCode::UnsafeMembershipChange,
            format!(
                "node {id} is the last voter; removing it would leave no one to commit anything"
            ),
        ));
    }
    let remaining: Vec<&&MemberView> = voters.iter().filter(|m| m.id != id).collect();
    let healthy: Vec<u64> = remaining
        .iter()
        .filter(|m| m.lag.is_some_and(|l| l <= LAG_HEALTHY_MAX))
        .map(|m| m.id)
        .collect();
    let quorum = remaining.len() / 2 + 1;
    if healthy.len() < quorum {
        let lagging: Vec<u64> = remaining
            .iter()
            .map(|m| m.id)
            .filter(|i| !healthy.contains(i))
            .collect();
        return Err(ApiError::new(
            ErrorCode::UnsafeMembershipChange,
            format!(
                "removing node {id} leaves {} voters needing a quorum of {quorum}, but only {} are replicating ({:?}); nodes {:?} are unreachable or behind — bring them back first",
                remaining.len(),
                healthy.len(),
                healthy,
                lagging
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, voter: bool, lag: Option<u64>) -> MemberView {
        MemberView {
            id,
            raft_addr: String::new(),
            api_addr: String::new(),
            voter,
            matched_index: None,
            lag,
        }
    }

    #[test]
    fn removal_guardrails() {
        let healthy3 = [
            member(1, true, Some(0)),
            member(2, true, Some(0)),
            member(3, true, Some(3)),
        ];
        assert!(check_removal_is_safe(&healthy3, 3).is_ok());
        let one_down = [
            member(1, true, Some(0)),
            member(2, true, None),
            member(3, true, Some(0)),
        ];
        assert!(
            check_removal_is_safe(&one_down, 2).is_ok(),
            "removing the dead node is fine"
        );
        let err = check_removal_is_safe(&one_down, 3).expect_err("would leave 1 of 2 healthy");
        assert_eq!(err.code, ErrorCode::UnsafeMembershipChange);
        assert!(err.message.contains("[2]"), "{}", err.message);
        let last = [member(1, true, Some(0)), member(2, false, Some(0))];
        let err = check_removal_is_safe(&last, 1).expect_err("last voter");
        assert!(err.message.contains("last voter"));
    }
}
