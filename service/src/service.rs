//! [`Service`]: one node without its transports.
//!
//! It owns everything between a decoded request and Raft: the front door (ledger id,
//! signature, in-flight limit), the leader's group-commit writer and ticker, linearizable
//! reads with their shared rounds, the views clients read, and (in [`crate::membership`])
//! cluster initialization and membership with their guardrails. The node's HTTP API and
//! the simulator's API decode requests, call it, and encode what it answers; when it says
//! `NOT_LEADER` with a leader, they forward the request there once.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use docket_core::{
    EntryHash, LedgerId, LedgerIndex, LedgerTime, ProposalId, SignatureCheck, SignedProposal,
};
use docket_raft::{
    Command, CommandResponse, NodeAddr, NodeId, Outcome, ProposalOutcome, Raft, Replica,
};
use tokio::sync::{mpsc, oneshot, Semaphore, SemaphorePermit};

use crate::error::{ErrorCode, ServiceError};
use crate::peers::{PeerHistory, Peers};
use crate::reads::{LeaderReadIndex, ReadIndex, ReadIndexResponse};
use crate::wire::*;

/// Submissions queued for the leader's writer. Each holds up to `batch_proposals_max`
/// proposals; when the queue is full, callers get `OVERLOADED` instead of waiting.
pub const SUBMIT_QUEUE_MAX: usize = 4096;

/// Raft writes the group-commit writer keeps in flight at once. openraft 0.9 appends (and
/// fsyncs) one client write at a time, so every extra write in flight splits the queue
/// into smaller groups and costs another fsync; two lets the next group's append overlap
/// the previous group's replication, and each write carries everything queued behind it.
pub const WRITES_INFLIGHT_MAX: usize = 2;

/// Proposals per Raft log entry built by group commit (separate from the API's batch limit,
/// which bounds one request).
pub const GROUP_COMMIT_PROPOSALS_MAX: usize = 2048;

/// A member within this many log entries of the leader counts as caught up / healthy.
pub const LAG_HEALTHY_MAX: u64 = 1_000;

/// The clock the leader stamps ledger time with: the wall clock on a node, simulated time
/// in the simulator. Only the leader's stamp matters: the core clamps ledger time to be
/// non-decreasing, so a clock step backwards cannot reorder time.
pub type Clock = Arc<dyn Fn() -> LedgerTime + Send + Sync>;

/// Request-level limits (the node's `[limits]`).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Client requests (writes, reads, read-index requests) served at once; past it,
    /// `OVERLOADED`.
    pub clients_inflight_max: usize,
    /// Proposals in one batch request.
    pub batch_proposals_max: usize,
    /// Entries in one ledger page.
    pub read_page_entries_max: usize,
}

/// Deadlines and intervals.
#[derive(Clone, Debug)]
pub struct Timing {
    /// One Raft write. Past it the caller gets `TIMEOUT`: the write may still commit.
    pub write_timeout: Duration,
    /// Each step of a follower's read-index round (the leader's answer, the local apply).
    pub read_index_deadline: Duration,
    /// How often the leader checks whether deferred proposals have expired.
    pub tick_interval: Duration,
    /// A membership change or cluster initialization.
    pub membership_timeout: Duration,
    /// How long an added learner may take to catch up before `member add` gives up.
    pub catch_up_timeout: Duration,
    /// Connecting to (or asking) a node being added or a voter being counted.
    pub probe_timeout: Duration,
    /// One leadership confirmation (a read-index round) for the execution agent.
    pub confirm_timeout: Duration,
    /// Wait before retrying a confirmation that failed while metrics still say "leader".
    pub confirm_retry: Duration,
}

/// Deliberately broken behaviour for the simulator's negative controls: each must be
/// caught by its checkers. Never set outside them.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// The writer answers a submission as recorded once it is handed to Raft, before it
    /// commits.
    pub ack_before_commit: bool,
    /// Reads join a read-index round already in flight.
    pub join_rounds_in_flight: bool,
    /// Removing a voter skips the quorum guardrail.
    pub unguarded_removal: bool,
}

/// What a service is built from.
#[derive(Clone)]
pub struct Settings {
    /// Who this node is on the Raft network: its id, cluster, genesis cell, removed flag
    /// and when it last heard a leader. The service shares these cells with the network
    /// (which learns them), so the ledger is read for the genesis once per node.
    pub identity: docket_raft::network::Identity,
    pub ledger_id: LedgerId,
    pub addr: NodeAddr,
    pub limits: Limits,
    pub timing: Timing,
    pub clock: Clock,
    /// The key this node cosigns checkpoints with (`docket_core::checkpoint`).
    pub cosigner: ed25519_dalek::SigningKey,
    /// How much Raft log the node keeps once a snapshot covers it ([`crate::retention`]).
    pub log_keep: crate::retention::LogKeep,
    #[doc(hidden)]
    pub faults: Faults,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("id", &self.identity.node_id)
            .field("cluster_id", &self.identity.cluster_id)
            .field("addr", &self.addr)
            .field("limits", &self.limits)
            .field("timing", &self.timing)
            .field("log_keep", &self.log_keep)
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

/// One queued submission and where its outcomes go.
pub(crate) struct Pending {
    pub(crate) proposals: Vec<SignedProposal>,
    pub(crate) reply: oneshot::Sender<Result<Vec<ProposalOutcome>, ServiceError>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("proposals", &self.proposals.len())
            .finish()
    }
}

/// A node without its transports. See the module docs.
pub struct Service {
    pub id: NodeId,
    pub cluster_id: String,
    pub ledger_id: LedgerId,
    pub addr: NodeAddr,
    pub raft: Raft,
    pub replica: Replica,
    pub limits: Limits,
    pub timing: Timing,
    pub(crate) log_keep: crate::retention::LogKeep,
    pub(crate) clock: Clock,
    pub(crate) removed: docket_raft::network::Removed,
    pub(crate) leader_heard: docket_raft::network::LeaderHeard,
    pub(crate) snapshots: docket_raft::network::SnapshotsReceiving,
    pub(crate) faults: Faults,
    pub(crate) peers: Arc<dyn Peers>,
    genesis: docket_raft::network::GenesisCell,
    reads: ReadIndex,
    leader_reads: LeaderReadIndex,
    inflight: Semaphore,
    submit_tx: mpsc::Sender<Pending>,
    /// One cluster operation at a time (see [`crate::admin`]).
    pub(crate) admin_lock: tokio::sync::Mutex<()>,
    /// This node's checkpoint key.
    pub(crate) cosigner: ed25519_dalek::SigningKey,
    pub(crate) finals: crate::checkpoints::Finals,
    /// Divergence alarms raised while gathering checkpoints (the last
    /// [`crate::checkpoints::ALARMS_MAX`]).
    pub(crate) alarms: std::sync::Mutex<std::collections::VecDeque<DivergenceAlarm>>,
    /// Set when this replica quarantined itself ([`Service::quarantine`]).
    pub(crate) diverged: std::sync::Mutex<Option<Diverged>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("id", &self.id)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Builds the service over a started Raft and its replica. The returned future is the
    /// leader's writer and ticker: the caller runs it (spawned where its host's tasks
    /// live) until `stop` resolves.
    pub fn new(
        settings: Settings,
        raft: Raft,
        replica: Replica,
        peers: Arc<dyn Peers>,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> (Arc<Service>, impl Future<Output = ()> + Send + 'static) {
        let Settings {
            identity,
            ledger_id,
            addr,
            limits,
            timing,
            clock,
            cosigner,
            log_keep,
            faults,
        } = settings;
        let id = identity.node_id;
        let cluster_id = identity.cluster_id.clone();
        let removed = identity.removed.clone();
        let genesis = identity.genesis.clone();
        let leader_heard = identity.leader_heard.clone();
        let snapshots = identity.snapshots.clone();
        let mut reads = ReadIndex::for_node(
            raft.clone(),
            replica.clone(),
            id,
            genesis.clone(),
            peers.clone(),
            timing.read_index_deadline,
        );
        let mut leader_reads = LeaderReadIndex::for_raft(raft.clone());
        if faults.join_rounds_in_flight {
            reads = reads.joining_rounds_in_flight();
            leader_reads = leader_reads.joining_rounds_in_flight();
        }
        let (submit_tx, submit_rx) = mpsc::channel(SUBMIT_QUEUE_MAX);
        let service = Arc::new(Service {
            id,
            cluster_id,
            ledger_id,
            addr,
            inflight: Semaphore::new(limits.clients_inflight_max),
            limits,
            timing,
            log_keep,
            clock,
            removed,
            leader_heard,
            snapshots,
            faults,
            peers,
            genesis,
            reads,
            leader_reads,
            raft,
            replica,
            submit_tx,
            admin_lock: tokio::sync::Mutex::new(()),
            cosigner,
            finals: Default::default(),
            alarms: Default::default(),
            diverged: Default::default(),
        });
        let background = {
            let service = service.clone();
            async move {
                tokio::select! {
                    _ = stop => {}
                    _ = crate::writer::writer(service.clone(), submit_rx) => {}
                    _ = crate::writer::ticker(service.clone()) => {}
                    _ = crate::membership::promoter(service.clone()) => {}
                    _ = crate::checkpoints::checkpointer(service.clone()) => {}
                    _ = crate::retention::retention(service.clone()) => {}
                    _ = crate::elections::elections(service) => {}
                }
            }
        };
        (service, background)
    }

    /// Whether this node leads, confirmed by a read-index round, as a watch for the
    /// execution agent, and the task that feeds it until Raft stops (the caller spawns it
    /// where its host's tasks live). `on_change(before, after)` sees every change.
    pub fn leadership(
        &self,
        on_change: impl FnMut(docket_execution::Leadership, docket_execution::Leadership) + 'static,
    ) -> (
        tokio::sync::watch::Receiver<docket_execution::Leadership>,
        impl Future<Output = ()>,
    ) {
        let timing = crate::leadership::Timing {
            confirm_timeout: self.timing.confirm_timeout,
            retry: self.timing.confirm_retry,
        };
        crate::leadership::publisher(self.raft.clone(), self.id, timing, on_change)
    }

    /// Ledger time now, by this node's clock.
    pub fn now(&self) -> LedgerTime {
        (self.clock)()
    }

    /// Whether this node is no longer a member of its cluster: the voters refused its
    /// vote as a non-member's, or its own configuration leaves it out.
    pub fn is_removed(&self) -> bool {
        if self.removed.get() {
            return true;
        }
        // Every request asks: read the metrics in place (no copy of the membership).
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        membership.nodes().next().is_some() && membership.get_node(&self.id).is_none()
    }

    /// `REMOVED` for a node that is no longer a member: it serves nothing.
    fn check_member(&self) -> Result<(), ServiceError> {
        if let Some(diverged) = self.diverged() {
            return Err(ServiceError::new(
                ErrorCode::Diverged,
                format!(
                    "node {} holds another ledger or state than the checkpoint a quorum \
                     cosigned at size {} and serves nothing until repaired (wipe its data \
                     directory and add it back, or restore it from a backup); ask another \
                     member",
                    self.id, diverged.size
                ),
            ));
        }
        if self.is_removed() {
            return Err(ServiceError::new(
                ErrorCode::Removed,
                format!(
                    "node {id} was removed from cluster {cluster:?} and serves nothing: ask \
                     another member, or add it back with `docket member add {id}`",
                    id = self.id,
                    cluster = self.cluster_id
                ),
            ));
        }
        Ok(())
    }

    /// Admission: one of `limits.clients_inflight_max` request slots, or `OVERLOADED`.
    pub fn admit(&self) -> Result<SemaphorePermit<'_>, ServiceError> {
        self.check_member()?;
        self.inflight.try_acquire().map_err(|_| {
            ServiceError::new(
                ErrorCode::Overloaded,
                "too many requests in flight (limits.clients_inflight_max); retry shortly",
            )
        })
    }

    /// The front door for one proposal: the ledger id and the signature; cluster operations
    /// (domain `cluster`) only through the admin routes.
    pub fn check(&self, signed: &SignedProposal) -> Result<ProposalId, ServiceError> {
        self.check_unsigned(signed)?;
        self.check_signed(signed)
    }

    /// What [`Service::check`] checks but the signature, of every proposal of a
    /// submission: the first failure is its error. The writer verifies the signatures of
    /// everything it groups together ([`crate::writer`]).
    fn check_unsigned_all(&self, proposals: &[SignedProposal]) -> Result<(), ServiceError> {
        proposals.iter().try_for_each(|signed| {
            self.check_unsigned(signed)?;
            self.check_ledger(signed)
        })
    }

    /// The signatures of a group of submissions, verified together
    /// ([`docket_core::VerifiedMemo::check_batch`], through the replica's memo, so this
    /// node's apply of them is a memo hit): for each submission, `Ok` or the
    /// `BAD_SIGNATURE` error of its first proposal whose signature fails.
    pub(crate) fn check_signatures(
        &self,
        submissions: &[&[SignedProposal]],
    ) -> Vec<Result<(), ServiceError>> {
        let proposals: Vec<(&SignedProposal, ProposalId)> = submissions
            .iter()
            .flat_map(|proposals| proposals.iter().map(|signed| (signed, signed.id())))
            .collect();
        let mut answers = self
            .replica
            .signatures()
            .check_batch(&proposals)
            .into_iter()
            .zip(&proposals);
        submissions
            .iter()
            .map(|submission| {
                let mut first = Ok(());
                for (answer, (_, id)) in answers.by_ref().take(submission.len()) {
                    if let (Ok(()), Err(error)) = (&first, answer) {
                        first = Err(bad_signature(id, error));
                    }
                }
                first
            })
            .collect()
    }

    fn check_unsigned(&self, signed: &SignedProposal) -> Result<(), ServiceError> {
        if signed.proposal.domain == crate::admin::ADMIN_DOMAIN {
            return Err(ServiceError::new(
                ErrorCode::AdminRouteRequired,
                format!(
                    "{} is a cluster operation: send it to its admin route (`docket cluster \
                     init`, `docket member add|promote|remove`), which makes the change it \
                     records",
                    signed.proposal.action
                ),
            ));
        }
        Ok(())
    }

    /// The ledger id and the signature.
    pub(crate) fn check_signed(&self, signed: &SignedProposal) -> Result<ProposalId, ServiceError> {
        self.check_ledger(signed)?;
        let id = signed.id();
        // Through the replica's memo: when this node applies the entry, its check of the
        // same signature is answered from the memo instead of verified a second time.
        self.replica
            .signatures()
            .check(signed, &id)
            .map_err(|e| bad_signature(&id, e))?;
        Ok(id)
    }

    fn check_ledger(&self, signed: &SignedProposal) -> Result<(), ServiceError> {
        if signed.proposal.ledger_id != self.ledger_id {
            return Err(ServiceError::new(
                ErrorCode::WrongLedger,
                format!(
                    "proposal is signed for ledger {:?}; this is {:?}",
                    signed.proposal.ledger_id.as_str(),
                    self.ledger_id.as_str()
                ),
            ));
        }
        Ok(())
    }

    /// What the constitution would decide for `signed` against this node's applied state,
    /// now: the front door, then the same pure adjudication every replica runs. Nothing is
    /// recorded (a linearizable caller runs [`Service::read_barrier`] first).
    pub fn dry_run(
        &self,
        signed: &SignedProposal,
    ) -> Result<crate::wire::DryRunView, ServiceError> {
        let id = self.check(signed)?;
        let now = self.now();
        self.replica
            .with_state(|state| {
                state.map(|state| {
                    let verdict = docket_core::adjudicate(state, signed, &id, now);
                    crate::wire::DryRunView {
                        id,
                        decision: verdict.decision,
                        access: verdict.access,
                        ledger_length: state.head().index.0 + 1,
                        recorded: state.proposal(&id).is_some(),
                    }
                })
            })
            .ok_or_else(ServiceError::not_initialized)
    }

    /// Checks a batch's size against `limits.batch_proposals_max`.
    pub fn check_batch_size(&self, count: usize) -> Result<(), ServiceError> {
        let max = self.limits.batch_proposals_max;
        if count == 0 || count > max {
            return Err(ServiceError::new(
                ErrorCode::LimitExceeded,
                format!(
                    "a batch holds 1 to {max} proposals (limits.batch_proposals_max); got {count}"
                ),
            ));
        }
        Ok(())
    }

    /// Submits proposals: the front door's checks but the signature for each, then the
    /// leader's group-commit writer, which verifies the signatures of the whole group at
    /// once, and waits for their outcomes. On a follower this fails with `NOT_LEADER` (and the
    /// leader's API address when known) so the transport can forward.
    pub async fn submit(
        &self,
        proposals: Vec<SignedProposal>,
    ) -> Result<Vec<ProposalOutcome>, ServiceError> {
        // Measured for the metrics only (wall time, in the simulator too; never decides).
        let started = std::time::Instant::now();
        let result = self.submit_unmeasured(proposals).await;
        crate::telemetry::record_admission(&result, started.elapsed());
        result
    }

    async fn submit_unmeasured(
        &self,
        proposals: Vec<SignedProposal>,
    ) -> Result<Vec<ProposalOutcome>, ServiceError> {
        self.check_unsigned_all(&proposals)?;
        self.write(proposals).await
    }

    /// Submits and answers with the recorded entries, as clients see them.
    pub async fn submit_responses(
        &self,
        proposals: Vec<SignedProposal>,
    ) -> Result<Vec<SubmitResponse>, ServiceError> {
        let outcomes = self.submit(proposals).await?;
        self.responses(outcomes)
    }

    /// Hands proposals that passed the front door to the writer.
    pub(crate) async fn write(
        &self,
        proposals: Vec<SignedProposal>,
    ) -> Result<Vec<ProposalOutcome>, ServiceError> {
        let (reply, rx) = oneshot::channel();
        self.submit_tx
            .try_send(Pending { proposals, reply })
            .map_err(|_| {
                ServiceError::new(
                    ErrorCode::Overloaded,
                    format!("{SUBMIT_QUEUE_MAX} submissions are already queued; retry shortly"),
                )
            })?;
        rx.await
            .map_err(|_| ServiceError::internal("the writer stopped (node shutting down)"))?
    }

    /// Turns outcomes into responses, reading each decision's entry from this node's ledger.
    pub fn responses(
        &self,
        outcomes: Vec<ProposalOutcome>,
    ) -> Result<Vec<SubmitResponse>, ServiceError> {
        outcomes
            .into_iter()
            .map(|ProposalOutcome { id, outcome }| {
                let (index, duplicate, appended) = match outcome {
                    Outcome::Recorded {
                        appended, index, ..
                    } => (index, false, appended.len()),
                    Outcome::Duplicate { index, .. } => (index, true, 0),
                };
                let entry = self
                    .replica
                    .ledger_entry(index)
                    .map_err(ServiceError::storage)?
                    .ok_or_else(|| {
                        ServiceError::internal(format!("entry {index} not applied yet"))
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

    /// Waits until this node's state reflects every write acknowledged before the read
    /// began: a read-index round shared with the reads queued beside it. `NOT_LEADER` with
    /// a leader: forward the read there. Answers the read index waited for (`None` for a
    /// local read, or when nothing is committed yet).
    pub async fn read_barrier(
        &self,
        consistency: Consistency,
    ) -> Result<Option<u64>, ServiceError> {
        match consistency {
            Consistency::Local => Ok(None),
            Consistency::Linearizable => self.reads.wait().await,
        }
    }

    /// The leader's read index, for a follower's linearizable read, with this node's
    /// genesis. Leadership is confirmed with a quorum after the request arrived. A
    /// follower whose genesis (`asker`, as it says) differs is refused: it holds another
    /// history and must not serve reads from it.
    pub async fn leader_read_index(
        &self,
        asker: Option<(NodeId, EntryHash)>,
    ) -> Result<ReadIndexResponse, ServiceError> {
        let genesis = self.genesis.get();
        if let (Some((node, theirs)), Some(ours)) = (asker, genesis) {
            if theirs != ours {
                return Err(crate::reads::other_history(self.id, ours, node, theirs));
            }
        }
        let read_log_id = self.leader_reads.wait().await?;
        Ok(ReadIndexResponse {
            read_index: read_log_id.map(|log_id| log_id.index),
            read_log_id,
            genesis,
        })
    }

    /// This node's genesis entry hash, once it has one.
    pub fn genesis(&self) -> Option<EntryHash> {
        self.genesis.get()
    }

    /// The API address of the current leader, if one is known.
    pub fn leader_api_addr(&self) -> Option<String> {
        crate::reads::leader(&self.raft).and_then(|(_, api)| api)
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    /// `Ok` on the leader; otherwise `NOT_LEADER` naming it (or `NO_LEADER`), so the
    /// transport forwards the request there.
    pub fn on_leader(&self, what: &str) -> Result<(), ServiceError> {
        self.check_member()?;
        if self.is_leader() {
            return Ok(());
        }
        Err(ServiceError::not_leader(
            self.leader_api_addr(),
            format!("{what} runs on the leader"),
        ))
    }

    // ---- reads of local state (after `read_barrier` for linearizable ones) ----

    /// Where a recorded proposal stands, or `NOT_FOUND`.
    fn proposal_record(
        &self,
        id: ProposalId,
    ) -> Result<docket_core::state::ProposalRecord, ServiceError> {
        self.replica
            .with_state(|s| s.map(|s| s.proposal(&id)))
            .ok_or_else(ServiceError::not_initialized)?
            .ok_or_else(|| {
                ServiceError::new(ErrorCode::NotFound, format!("no proposal {id} is recorded"))
            })
    }

    /// Every entry recorded for a proposal id.
    pub fn proposal_view(&self, id: ProposalId) -> Result<ProposalView, ServiceError> {
        let record = self.proposal_record(id)?;
        let mut indexes: BTreeSet<LedgerIndex> = record.deferred_at.into_iter().collect();
        indexes.insert(record.index);
        let entries = indexes
            .into_iter()
            .map(|i| {
                self.replica
                    .ledger_entry(i)
                    .map_err(ServiceError::storage)?
                    .ok_or_else(|| ServiceError::storage("missing entry"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let outcome = self
            .replica
            .with_state(|s| s.and_then(|s| s.outcome(&id.outcome_of())));
        Ok(ProposalView {
            id,
            status: record.status,
            entries,
            outcome,
        })
    }

    /// Why a proposal stands where it does: its current decision explained against the
    /// state now ([`docket_core::explain()`]). The execution summary is the node's to add.
    pub fn explain_view(&self, id: ProposalId) -> Result<ExplainView, ServiceError> {
        let record = self.proposal_record(id)?;
        let entry = self
            .replica
            .ledger_entry(record.index)
            .map_err(ServiceError::storage)?
            .ok_or_else(|| ServiceError::storage("missing entry"))?;
        let explanation = self
            .replica
            .with_state(|s| s.and_then(|s| docket_core::explain(s, &entry)))
            .ok_or_else(|| ServiceError::internal("the proposal's entry holds no decision"))?;
        Ok(ExplainView {
            id,
            status: record.status,
            index: record.index,
            explanation,
            execution: None,
        })
    }

    /// Checks a page size against `limits.read_page_entries_max`; `None` means the max.
    pub fn page_limit(&self, limit: Option<u64>) -> Result<u64, ServiceError> {
        let max = self.limits.read_page_entries_max as u64;
        let limit = limit.unwrap_or(max);
        if limit == 0 || limit > max {
            return Err(ServiceError::new(
                ErrorCode::LimitExceeded,
                format!("limit must be 1 to {max} (limits.read_page_entries_max)"),
            ));
        }
        Ok(limit)
    }

    /// Up to `limit` entries from `from`.
    pub fn ledger_page(&self, from: u64, limit: u64) -> Result<LedgerPage, ServiceError> {
        let length = self.replica.ledger_len();
        let entries = self
            .replica
            .ledger_entries(LedgerIndex(from), limit)
            .map_err(ServiceError::storage)?;
        let end = from.saturating_add(entries.len() as u64);
        let next = (end < length && !entries.is_empty()).then_some(LedgerIndex(end));
        Ok(LedgerPage {
            entries,
            next,
            length,
        })
    }

    /// A subject's state (or its domain's initial state).
    pub fn subject_view(
        &self,
        domain: &str,
        subject: &str,
        consistency: Consistency,
    ) -> Result<SubjectView, ServiceError> {
        self.replica.with_state(|s| {
            let s = s.ok_or_else(ServiceError::not_initialized)?;
            let initial = s
                .constitution()
                .domains
                .get(domain)
                .ok_or_else(|| {
                    ServiceError::new(
                        ErrorCode::NotFound,
                        format!("the constitution declares no domain {domain:?}"),
                    )
                })?
                .initial
                .clone();
            Ok(SubjectView {
                domain: domain.to_owned(),
                subject: subject.to_owned(),
                state: s.subject(domain, subject),
                initial_state: initial,
                as_of_length: s.head().index.0 + 1,
                consistency,
            })
        })
    }

    /// The active constitution and its history.
    pub fn constitution_view(&self) -> Result<ConstitutionView, ServiceError> {
        self.replica.with_state(|s| {
            let s = s.ok_or_else(ServiceError::not_initialized)?;
            let active = s.active_constitution();
            Ok(ConstitutionView {
                version: active.version,
                name: active.constitution.name.clone(),
                adopted_at: active.adopted_at,
                document: active.document.clone(),
                history: s.constitution_history().to_vec(),
            })
        })
    }

    /// This node's status: Raft role and indexes, ledger, state hash, members.
    pub fn status(&self) -> StatusView {
        let metrics = self.raft.metrics().borrow().clone();
        let (state_hash, constitution_version, deferred) = self.replica.with_state(|s| match s {
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
            node_id: self.id,
            cluster_id: self.cluster_id.clone(),
            role: if self.is_removed() {
                "removed".to_owned()
            } else {
                role(metrics.state).to_owned()
            },
            leader_id: metrics.current_leader,
            leader_api_addr,
            term: metrics.current_term,
            last_log_index: metrics.last_log_index,
            applied_index: metrics.last_applied.map(|l| l.index),
            initialized,
            ledger_length: self.replica.ledger_len(),
            state_hash,
            ledger_root: self
                .replica
                .tree_head()
                .ok()
                .filter(|head| head.size > 0)
                .map(|head| hex::encode(head.root)),
            constitution_version,
            deferred,
            members: self.members(),
            cosigner_key: Some(self.cosigner_key()),
            divergence: self.divergence_alarms(),
        }
    }

    /// Whether this node runs and knows a leader.
    pub fn health(&self) -> HealthView {
        let metrics = self.raft.metrics().borrow().clone();
        let diverged = self.diverged();
        HealthView {
            ok: diverged.is_none()
                && metrics.running_state.is_ok()
                && metrics.current_leader.is_some(),
            role: role(metrics.state).to_owned(),
            leader_id: metrics.current_leader,
            diverged,
        }
    }

    /// What this node holds, for a leader deciding whether it may join
    /// ([`Peers::history`]).
    /// The public key this node cosigns checkpoints with.
    pub fn cosigner_key(&self) -> docket_core::PublicKey {
        docket_core::proposal::public_key(&self.cosigner)
    }

    pub fn history(&self) -> Result<PeerHistory, ServiceError> {
        let initialized = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .nodes()
            .next()
            .is_some();
        let genesis = self.genesis.get();
        Ok(PeerHistory {
            node_id: self.id,
            cluster_id: self.cluster_id.clone(),
            initialized,
            genesis,
            cosigner: Some(self.cosigner_key()),
        })
    }

    /// Members as the leader (or this node) sees them, voters first.
    pub fn members(&self) -> Vec<MemberView> {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let last = metrics.last_log_index.unwrap_or(0);
        let replication: BTreeMap<NodeId, Option<u64>> = metrics
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .map(|(id, log)| (*id, log.map(|l| l.index)))
                    .collect()
            })
            .unwrap_or_default();
        let mut out: Vec<MemberView> = membership
            .nodes()
            .map(|(id, addr)| {
                let matched = if *id == self.id && metrics.current_leader == Some(self.id) {
                    Some(last)
                } else {
                    replication.get(id).copied().flatten()
                };
                MemberView {
                    id: *id,
                    raft_addr: addr.raft_addr.clone(),
                    api_addr: addr.api_addr.clone(),
                    voter: voters.contains(id),
                    matched_index: matched,
                    lag: matched.map(|m| last.saturating_sub(m)),
                }
            })
            .collect();
        out.sort_by_key(|m| (!m.voter, m.id));
        out
    }

    /// Writes one command through Raft on this node (the leader), within the write
    /// deadline.
    pub(crate) async fn client_write(
        &self,
        command: Command,
    ) -> Result<CommandResponse, ServiceError> {
        let timeout = self.timing.write_timeout;
        match tokio::time::timeout(timeout, self.raft.client_write(command)).await {
            Err(_) => Err(ServiceError::new(
                ErrorCode::Timeout,
                format!(
                    "the write did not commit within {} ms; it may still: resubmit the same \
                     proposal to learn its outcome",
                    timeout.as_millis()
                ),
            )),
            Ok(Ok(response)) => Ok(response.data),
            Ok(Err(error)) => Err(ServiceError::from_write(error)),
        }
    }
}

/// A Raft server state as the API names it.
pub fn role(state: openraft::ServerState) -> &'static str {
    match state {
        openraft::ServerState::Leader => "leader",
        openraft::ServerState::Follower => "follower",
        openraft::ServerState::Candidate => "candidate",
        openraft::ServerState::Learner => "learner",
        openraft::ServerState::Shutdown => "shutdown",
    }
}

/// `BAD_SIGNATURE`, naming the proposal.
fn bad_signature(id: &ProposalId, error: docket_core::proposal::SignatureError) -> ServiceError {
    ServiceError::new(
        ErrorCode::BadSignature,
        format!("proposal {}: {error}", id.short()),
    )
}
