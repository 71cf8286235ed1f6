//! The HTTP/JSON shapes of the client API, shared by the server, the CLI and the bench.
//!
//! Ids, hashes and keys are lowercase hex; payloads are natural JSON (no floats); rejection
//! codes are their stable names. A recorded decision — rejection included — is HTTP 200;
//! 4xx means nothing was recorded; 503 with `leader` means "try there".

use docket_core::{
    ConstitutionVersion, LedgerEntry, LedgerIndex, ProposalId, ProposalStatus, PublicKey,
    SignedProposal, StateHash, SubjectState,
};
use serde::{Deserialize, Serialize};

/// `POST /v1/proposals` body is a [`SignedProposal`]; this is the answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SubmitResponse {
    pub id: ProposalId,
    /// True when the id was already recorded: nothing was appended and `entry` is the
    /// entry that holds its current decision.
    pub duplicate: bool,
    pub entry: LedgerEntry,
    /// How many entries this submission appended (0 for a duplicate; more than 1 when it
    /// released a wave or expiries came due first).
    pub appended: u64,
}

/// `POST /v1/batches` body.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    #[serde(deserialize_with = "docket_core::json::objects_only_seq")]
    pub proposals: Vec<SignedProposal>,
}

/// `POST /v1/batches` answer: one result per proposal, in order.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchResponse {
    pub results: Vec<SubmitResponse>,
}

/// `POST /v1/plans` and `POST /v1/plans/dry-run` body: the proposals of one plan, in any
/// order (the order they are recorded in depends on the set alone: `docket_core::plan`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    #[serde(deserialize_with = "docket_core::json::objects_only_seq")]
    pub proposals: Vec<SignedProposal>,
}

/// One member of a recorded plan.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanMember {
    /// Where the proposal was in the request.
    pub input: usize,
    /// Its wave: 0 with no dependency inside the plan, else one more than the highest wave
    /// it depends on.
    pub wave: u32,
    pub result: SubmitResponse,
}

/// `POST /v1/plans` answer: every member, in the order recorded (waves, then ids).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanResponse {
    pub members: Vec<PlanMember>,
}

/// One member of a plan's dry run.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanDryRunMember {
    pub input: usize,
    pub wave: u32,
    pub id: ProposalId,
    /// The decision it would be recorded with now (after the members before it), or its
    /// current decision when `recorded`.
    pub decision: docket_core::Decision,
    pub access: Option<docket_core::AccessDecision>,
    /// True when the id is already recorded: submitting it would append nothing.
    pub recorded: bool,
}

/// `POST /v1/plans/dry-run` answer, in the order the plan would be recorded.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanDryRunView {
    /// The ledger length the state was read at.
    pub ledger_length: u64,
    pub members: Vec<PlanDryRunMember>,
}

/// `GET /v1/proposals/{id}`: every entry recorded for the id, in order.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProposalView {
    pub id: ProposalId,
    pub status: ProposalStatus,
    pub entries: Vec<LedgerEntry>,
    /// The recorded outcome of the proposal's effect (`effect = true` actions), once its
    /// execution agent reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<docket_core::OutcomeRecord>,
}

/// `GET /v1/proposals/{id}/explain`: why a proposal stands where it does — its current
/// decision explained against the state now (`docket_core::explain`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExplainView {
    pub id: ProposalId,
    pub status: ProposalStatus,
    /// The entry holding its current decision.
    pub index: LedgerIndex,
    pub explanation: docket_core::Explanation,
    /// For an admitted proposal this node's execution agent holds a record of: what it did,
    /// from the same journal as `GET /v1/execution/{id}` (ask the node that executed it).
    pub execution: Option<ExecutionSummary>,
}

/// An execution record in brief: the job's phase and its latest evidence.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExecutionSummary {
    /// The node whose journal holds it.
    pub node_id: u64,
    pub command: String,
    pub effect: String,
    /// `new`, `attempting`, `concluded`, `filed` or `resolved`.
    pub phase: String,
    /// How the job ended, for a resolved job (e.g. `outcome_recorded`).
    pub resolution: Option<String>,
    /// Attempts recorded (evidence records, dropped ones included).
    pub attempts: u32,
    /// The latest attempt's outcome (`success`, `failure`, `refused`), its reason, and the
    /// hash of its evidence record.
    pub last_outcome: Option<String>,
    pub last_reason: Option<String>,
    pub last_evidence_hash: Option<String>,
}

/// `GET /v1/ledger?from=&limit=`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerPage {
    pub entries: Vec<LedgerEntry>,
    /// Index to ask for next, if more entries exist.
    pub next: Option<LedgerIndex>,
    /// Number of entries in the ledger (the last index plus one).
    pub length: u64,
}

/// `GET /v1/state/{domain}/{subject}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectView {
    pub domain: String,
    pub subject: String,
    /// `None` when no proposal has touched the subject (it is in the domain's initial state).
    pub state: Option<SubjectState>,
    pub initial_state: String,
    /// Ledger length the answer reflects.
    pub as_of_length: u64,
    pub consistency: Consistency,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// Read-index through the leader: sees every write acknowledged before the read began.
    #[default]
    Linearizable,
    /// This node's applied state, possibly stale.
    Local,
}

/// `GET /v1/constitution`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConstitutionView {
    pub version: ConstitutionVersion,
    pub name: String,
    pub adopted_at: LedgerIndex,
    pub document: String,
    /// Every adopted version with the index of the entry that adopted it.
    pub history: Vec<(LedgerIndex, ConstitutionVersion)>,
}

/// A member of the cluster as the answering node sees it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MemberView {
    pub id: u64,
    pub raft_addr: String,
    pub api_addr: String,
    pub voter: bool,
    /// Leader only: last log index replicated to this member.
    pub matched_index: Option<u64>,
    /// Leader only: how many log entries the member is behind the leader.
    pub lag: Option<u64>,
}

/// `GET /v1/status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusView {
    pub node_id: u64,
    pub cluster_id: String,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: String,
    pub leader_id: Option<u64>,
    pub leader_api_addr: Option<String>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub initialized: bool,
    /// Ledger entries recorded on this node (0 before genesis).
    pub ledger_length: u64,
    /// Hash of this node's governance state at `ledger_length`; absent before genesis.
    pub state_hash: Option<StateHash>,
    /// Root of the RFC 9162 (SHA-256) Merkle tree over this node's `ledger_length` entry
    /// hashes, lowercase hex: equal lengths give equal roots on every replica.
    #[serde(default)]
    pub ledger_root: Option<String>,
    pub constitution_version: Option<ConstitutionVersion>,
    pub deferred: u64,
    pub members: Vec<MemberView>,
    /// The key this node cosigns checkpoints with; `cluster init` and `member add` declare
    /// it in the ledger.
    #[serde(default)]
    pub cosigner_key: Option<PublicKey>,
    /// Divergence alarms this node raised (the newest last): voters that refused to cosign
    /// a checkpoint because their ledger or state differs at its size. Empty on a healthy
    /// cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub divergence: Vec<DivergenceAlarm>,
}

/// A replica found holding another ledger or state than this node at the same size.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DivergenceAlarm {
    /// The replica that refused to cosign.
    pub node: u64,
    /// The ledger size of the checkpoint it refused.
    pub size: u64,
    /// This node's RFC 9162 root (hex) and state hash at that size.
    pub root: String,
    pub state: StateHash,
    /// When it was detected (the service's clock, Unix ms: simulated time in the simulator).
    pub detected_ms: u64,
}

/// `GET /v1/health`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthView {
    pub ok: bool,
    pub role: String,
    pub leader_id: Option<u64>,
    /// Set when this replica quarantined itself: a checkpoint a quorum cosigned disagrees
    /// with its own ledger or state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diverged: Option<Diverged>,
}

/// A replica's evidence that it diverged: the quorum's checkpoint and its own view there.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Diverged {
    /// The final checkpoint (C2SP note) it disagrees with.
    pub note: String,
    pub size: u64,
    /// This replica's RFC 9162 root (hex) at that size, and its state hash there when it
    /// still remembers it.
    pub own_root: String,
    pub own_state: Option<StateHash>,
}

/// `POST /v1/cluster/init` body. Members default to this node alone.
#[derive(Clone, Debug, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct InitRequest {
    /// The genesis constitution document; the built-in default when absent.
    #[serde(default)]
    pub constitution: Option<String>,
    /// The signed `CLUSTER.INIT` request (see `docket_service::admin`), by a principal the
    /// genesis constitution authorizes. Required: `SIGNATURE_REQUIRED` without it.
    #[serde(default)]
    pub authority: Option<SignedProposal>,
}

/// The body of `POST /v1/cluster/members`, `POST /v1/cluster/members/{id}/promote` and
/// `DELETE /v1/cluster/members/{id}`: the signed `CLUSTER.MEMBER_*` request.
#[derive(Clone, Debug, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AdminRequest {
    /// Required: `SIGNATURE_REQUIRED` without it.
    #[serde(default)]
    pub authority: Option<SignedProposal>,
}

/// Where an accepted admin request was recorded.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AdminRecord {
    pub id: ProposalId,
    pub index: LedgerIndex,
}

/// A node to add: what a `CLUSTER.MEMBER_ADD` request asks for.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMemberRequest {
    pub id: u64,
    pub raft_addr: String,
    pub api_addr: String,
    /// Stay a learner instead of being promoted to voter after catching up.
    #[serde(default)]
    pub learner: bool,
}

/// Membership after a change.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembersView {
    pub members: Vec<MemberView>,
    /// The admin request this change was recorded as (absent from `GET`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded: Option<AdminRecord>,
    /// A node that was asked to be a voter and is still a learner catching up: the leader
    /// promotes it in the background once it has caught up (`limits.catch_up_timeout_ms`
    /// passed first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion_pending: Option<u64>,
}

/// Every error: a stable code and a message for humans.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    /// For `NOT_LEADER` / `NO_LEADER`: the leader's API address when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
}

/// A key file written by `docket keygen`: the secret key seed and its public key, hex.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    pub public_key: PublicKey,
    pub secret_key: String,
}

/// `GET /v1/execution/{proposal_id}`: what this node's execution agent did for a proposal.
/// Evidence lives in each node's local journal, so ask the node that executed it (the
/// leader at the time); another node answers with `job: null`.
///
/// `J` is the job record: the execution agent's own type on the node
/// (`docket_service::wire::ExecutionView`), plain JSON for a client without it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionView<J = serde_json::Value> {
    pub id: ProposalId,
    pub node_id: u64,
    /// False when this node runs no execution agent (`[execution] enabled = false`).
    pub enabled: bool,
    pub job: Option<J>,
}

/// `GET /v1/execution?after=&limit=`: this node's execution jobs in proposal-id order, a
/// page at a time (`J` as in [`ExecutionView`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionList<J = serde_json::Value> {
    pub node_id: u64,
    /// False when this node runs no execution agent.
    pub enabled: bool,
    pub jobs: Vec<J>,
    /// The `after` to ask for next, when the page was full.
    pub next: Option<ProposalId>,
}

/// Parses JSON into `T`, taking `T` and every record in it only as a JSON object: serde
/// would otherwise accept a struct written as an array of its field values
/// (`docket_core::json` says why that is refused).
pub fn from_json_str<'a, T: Deserialize<'a>>(text: &'a str) -> serde_json::Result<T> {
    serde_json::from_str::<docket_core::json::Objects<T>>(text).map(|objects| objects.0)
}

/// `POST /v1/internal/cosign` body: a checkpoint body (`docket_core::checkpoint`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosignRequest {
    pub checkpoint: String,
}

/// `POST /v1/internal/diverged` body: a final checkpoint (C2SP note) the receiving replica
/// refused as differing from its own ledger or state.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DivergedRequest {
    pub note: String,
}

/// `POST /v1/internal/cosign` answer: the node's `cosignature/v1` line.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosignResponse {
    pub cosignature: String,
}

/// `GET /v1/checkpoint` and `GET /v1/checkpoint/{size}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CheckpointView {
    /// The C2SP signed note: the checkpoint body, a blank line, the cosignature lines.
    pub note: String,
    pub size: u64,
    /// RFC 9162 root over the first `size` entry hashes, lowercase hex.
    pub root: String,
    pub state: StateHash,
    /// The voters when the checkpoint was gathered and the keys the ledger declares for
    /// them, as this node reads its ledger: a client that trusts no node learns the keys
    /// from the `CLUSTER.*` entries themselves.
    pub cosigners: Vec<Cosigner>,
    /// Cosignatures a final checkpoint needs: a majority of `cosigners`.
    pub quorum: usize,
}

/// `GET /v1/proofs/inclusion?index=I&size=N`: entry `index` is leaf `index` of the tree
/// of `size` entries.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InclusionProofView {
    pub index: u64,
    pub size: u64,
    /// The entry's hash: the leaf (hashed as RFC 9162 `0x00 ‖ hash`).
    pub entry_hash: docket_core::EntryHash,
    pub root: String,
    /// RFC 9162 audit path, leaf first, lowercase hex.
    pub proof: Vec<String>,
}

/// `GET /v1/proofs/entry?index=I&size=N`: entry `index` itself with its audit path in the
/// tree of `size` entries, one request for a verified read.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EntryProofView {
    pub entry: LedgerEntry,
    pub size: u64,
    pub root: String,
    /// RFC 9162 audit path, leaf first, lowercase hex.
    pub proof: Vec<String>,
}

/// The format tag of a [`StateProofView`].
pub const STATE_PROOF_FORMAT: &str = "docket-state-proof/v1";

/// `GET /v1/proofs/state?domain=D&subject=S` or `?proposal=ID`: one state row (a subject's
/// state, a proposal's status record) proved under a final checkpoint's `map` line
/// (`docket_core::statemap`). Everything a client needs to check it with no other request.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StateProofView {
    /// `docket-state-proof/v1`: the document is also an offline bundle (`docket verify`).
    pub format: String,
    /// The final checkpoint (C2SP signed note) whose `map` line the proof is under.
    pub checkpoint: String,
    /// The voters and the keys the ledger declares for them, as this node reports them.
    pub cosigners: Vec<Cosigner>,
    /// The row's key, lowercase hex (a client computes it itself and compares).
    pub key: String,
    /// The row's canonical bytes, lowercase hex; `null`: no such row.
    pub value: Option<String>,
    /// For each map node on the key's path from the root: the hashes of its 15 other
    /// slots, in slot order, lowercase hex.
    pub levels: Vec<Vec<String>>,
    /// Where the path ends: `[key hash, value hash]` of the leaf there, or `null` for an
    /// empty slot.
    pub leaf: Option<[String; 2]>,
}

/// `GET /v1/proofs/consistency?from=M&to=N`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProofView {
    pub from: u64,
    pub to: u64,
    pub from_root: String,
    pub to_root: String,
    /// RFC 9162 consistency proof, lowercase hex.
    pub proof: Vec<String>,
}

/// A cosigner of the cluster: a voter and the key the ledger declares for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cosigner {
    pub node: u64,
    /// Its key name in cosignature lines, `<cluster id>/node-<id>`.
    pub name: String,
    /// `None` when the ledger declares no key for it (a cluster formed before checkpoints).
    pub key: Option<PublicKey>,
}

/// `POST /v1/proposals/dry-run`: what the constitution would decide for a signed proposal
/// against the node's current state, at its clock. Nothing is recorded.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DryRunView {
    pub id: ProposalId,
    pub decision: docket_core::Decision,
    pub access: docket_core::AccessDecision,
    /// The ledger length the state was read at.
    pub ledger_length: u64,
    /// True when the id is already recorded: submitting it would append nothing.
    pub recorded: bool,
}
