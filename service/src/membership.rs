//! Cluster initialization and membership, with their guardrails.
//!
//! * **Init** makes this node a one-voter cluster and writes genesis (once).
//! * **Add** probes the node's Raft port (fails fast with `MEMBER_UNREACHABLE`), asks it
//!   which history it holds and refuses one initialized with another cluster id or genesis
//!   (`MEMBER_HAS_OTHER_HISTORY`: it would sit in the cluster as a learner serving its own
//!   history), adds it as a learner, waits for it to catch up, then promotes it. If it
//!   does not catch up within `catch_up_timeout`, the answer says `promotion_pending`
//!   and the leader's promoter ([`PROMOTE_CHECK_MS`]) makes it a voter once it has,
//!   under the recorded request.
//! * **Remove** refuses removing the last voter, or a voter when the voters left that are
//!   replicating could not form a quorum (`UNSAFE_MEMBERSHIP_CHANGE`, naming the lagging
//!   nodes).
//!
//! Every operation is governed: it comes as a signed request the constitution must
//! authorize, and is recorded in the ledger before the change is made ([`crate::admin`]).
//! Every operation runs on the leader; elsewhere it answers `NOT_LEADER` and the transport
//! forwards it once.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use docket_core::{SignedProposal, State};
use docket_raft::{Command, CommandResponse, NodeAddr, NodeId};
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::ChangeMembers;
use tokio::time::Instant;

use crate::admin::AdminOp;
use crate::error::{ErrorCode, ServiceError};
use crate::service::{Service, LAG_HEALTHY_MAX};

/// How often the leader looks for caught-up learners that a recorded request asked to be
/// voters.
pub const PROMOTE_CHECK_MS: u64 = 1_000;

/// The leader's promoter: [`Service::promote_caught_up`] every [`PROMOTE_CHECK_MS`].
pub(crate) async fn promoter(service: std::sync::Arc<Service>) {
    let mut interval = tokio::time::interval(std::time::Duration::from_millis(PROMOTE_CHECK_MS));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        service.promote_caught_up().await;
    }
}
use crate::wire::{AddMemberRequest, MemberView, MembersView, StatusView};

impl Service {
    /// Makes this node a one-voter cluster, writes the genesis entry with `document` (the
    /// constitution), once, and records `authority` — a `CLUSTER.INIT` request for this
    /// document, signed by a principal the document itself authorizes — as the first entry
    /// after genesis.
    pub async fn init(
        &self,
        document: String,
        authority: Option<SignedProposal>,
    ) -> Result<StatusView, ServiceError> {
        self.init_with(document, authority, true).await
    }

    /// [`Service::init`] for a cluster whose Raft membership was bootstrapped by other
    /// means (the simulator's, at boot): genesis and the record only. Calling Raft's
    /// `initialize` there from a node that has not yet learned the membership would make it
    /// a cluster of its own.
    pub async fn init_ledger(
        &self,
        document: String,
        authority: Option<SignedProposal>,
    ) -> Result<StatusView, ServiceError> {
        self.init_with(document, authority, false).await
    }

    async fn init_with(
        &self,
        document: String,
        authority: Option<SignedProposal>,
        bootstrap: bool,
    ) -> Result<StatusView, ServiceError> {
        let authority = authority.ok_or_else(|| signature_required("cluster init"))?;
        let _turn = self.admin_turn().await?;
        if self.replica.ledger_len() > 0 {
            return Err(ServiceError::new(
                ErrorCode::AlreadyInitialized,
                format!("ledger {} already has its genesis entry", self.ledger_id),
            ));
        }
        let version = crate::admin::constitution_version(&document)?;
        // Judged by the genesis constitution, as the first proposal after genesis will be.
        let (genesis, _) =
            State::genesis(self.ledger_id.clone(), &document, self.now()).map_err(|e| {
                ServiceError::new(
                    ErrorCode::MalformedRequest,
                    format!("genesis constitution: {e}"),
                )
            })?;
        let (op, _) = self.authorize(&authority, "CLUSTER.INIT", &genesis)?;
        if let AdminOp::Init { node, cosigner, .. } = &op {
            if *node != self.id || *cosigner != self.cosigner_key() {
                return Err(ServiceError::new(
                    ErrorCode::MalformedRequest,
                    format!(
                        "the init request names node {node} with cosigner key {}; this is \
                         node {} with key {}",
                        cosigner.short(),
                        self.id,
                        self.cosigner_key().short()
                    ),
                ));
            }
        }
        if !matches!(&op, AdminOp::Init { constitution, .. } if *constitution == version) {
            return Err(ServiceError::new(
                ErrorCode::MalformedRequest,
                format!(
                    "the init request is signed for constitution version {}, but the \
                     document to write is version {version}; sign the document you send \
                     (`docket cluster init --constitution FILE`)",
                    match op {
                        AdminOp::Init { constitution, .. } => constitution,
                        _ => String::new(),
                    }
                ),
            ));
        }
        if bootstrap {
            let members = BTreeMap::from([(self.id, self.addr.clone())]);
            match self.raft.initialize(members).await {
                Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(ServiceError::internal(format!("initialize: {e}"))),
            }
        }
        self.write_genesis(document).await?;
        self.record(authority).await?;
        Ok(self.status())
    }

    /// Writes the genesis entry, retrying while leadership is being established. Refused
    /// as `ALREADY_INITIALIZED` when the ledger has one.
    pub async fn write_genesis(&self, document: String) -> Result<(), ServiceError> {
        let deadline = Instant::now() + self.timing.membership_timeout;
        loop {
            let command = Command::Genesis {
                ledger_id: self.ledger_id.clone(),
                document: document.clone(),
                time: self.now(),
            };
            match self.client_write(command).await {
                Ok(CommandResponse::Genesis { .. }) => return Ok(()),
                Ok(CommandResponse::Refused(e)) => {
                    let code = if e.code() == "ALREADY_INITIALIZED" {
                        ErrorCode::AlreadyInitialized
                    } else {
                        ErrorCode::MalformedRequest
                    };
                    return Err(ServiceError::new(code, e.to_string()));
                }
                Ok(other) => {
                    return Err(ServiceError::internal(format!(
                        "unexpected response {other:?}"
                    )))
                }
                Err(error) if error.code == ErrorCode::Timeout => return Err(error),
                Err(error) => {
                    // A node that is not (yet) the leader: forward, unless leadership is
                    // still being established right after initialize.
                    if error.forward_target(false).is_some() || Instant::now() > deadline {
                        return Err(error);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Adds a node, as `authority` (a signed `CLUSTER.MEMBER_ADD`) asks: authorize, probe,
    /// history check, record, learner, catch up, promote (unless it asks for a learner).
    pub async fn add_member(
        &self,
        authority: Option<SignedProposal>,
    ) -> Result<MembersView, ServiceError> {
        self.on_leader("a membership change")?;
        let authority = authority.ok_or_else(|| signature_required("member add"))?;
        let _turn = self.admin_turn().await?;
        let (op, _) = self.authorize_here(&authority, "CLUSTER.MEMBER_ADD")?;
        let AdminOp::MemberAdd {
            node,
            raft_addr,
            api_addr,
            learner,
            cosigner,
        } = op
        else {
            return Err(ServiceError::internal(
                "authorize answered another operation",
            ));
        };
        let request = AddMemberRequest {
            id: node,
            raft_addr,
            api_addr,
            learner,
        };
        if request.id == 0 {
            return Err(ServiceError::new(
                ErrorCode::MalformedRequest,
                "member id must be at least 1",
            ));
        }
        if self.members().iter().any(|m| m.id == request.id && m.voter) {
            return Err(ServiceError::new(
                ErrorCode::UnsafeMembershipChange,
                format!("node {} is already a voter", request.id),
            ));
        }
        // Fail fast on an unreachable node instead of letting replication retry forever.
        let probe = self.timing.probe_timeout;
        if !self.peers.raft_reachable(&request.raft_addr, probe).await {
            return Err(ServiceError::new(
                ErrorCode::MemberUnreachable,
                format!(
                    "cannot connect to node {} at raft_addr {} within {} ms; is `docket serve` \
                     running there?",
                    request.id,
                    request.raft_addr,
                    probe.as_millis()
                ),
            ));
        }
        if let Some(other) = self
            .cosigners()
            .into_iter()
            .find(|c| c.node != request.id && c.key == Some(cosigner))
        {
            return Err(ServiceError::new(
                ErrorCode::MalformedRequest,
                format!(
                    "checkpoint key {} is already declared for node {}: every node cosigns with \
                     a key of its own (a copied data directory carries another node's key; \
                     delete its cosigner.key to make a new one)",
                    cosigner.short(),
                    other.node
                ),
            ));
        }
        self.check_history(&request, &cosigner).await?;
        let recorded = self.record(authority).await?;
        let addr = NodeAddr {
            raft_addr: request.raft_addr.clone(),
            api_addr: request.api_addr.clone(),
        };
        self.membership_op(false, self.raft.add_learner(request.id, addr, false))
            .await?;
        let mut promotion_pending = None;
        if !self.caught_up_within(request.id).await {
            // A voter was asked for: the promoter finishes the job once it has caught up.
            promotion_pending = (!request.learner).then_some(request.id);
        } else if !request.learner {
            self.membership_op(
                false,
                self.raft.change_membership(
                    ChangeMembers::AddVoterIds(BTreeSet::from([request.id])),
                    false,
                ),
            )
            .await?;
        }
        Ok(MembersView {
            members: self.members(),
            recorded: Some(recorded),
            promotion_pending,
        })
    }

    /// Promotes a caught-up learner to voter, as `authority` (`CLUSTER.MEMBER_PROMOTE`)
    /// asks for node `id`.
    pub async fn promote_member(
        &self,
        id: NodeId,
        authority: Option<SignedProposal>,
    ) -> Result<MembersView, ServiceError> {
        self.on_leader("a membership change")?;
        let authority = authority.ok_or_else(|| signature_required("member promote"))?;
        let _turn = self.admin_turn().await?;
        let (op, _) = self.authorize_here(&authority, "CLUSTER.MEMBER_PROMOTE")?;
        same_node(&op, id)?;
        let current = self.members();
        let member = current.iter().find(|m| m.id == id).ok_or_else(|| {
            ServiceError::new(
                ErrorCode::NotFound,
                format!("node {id} is not a member; add it first"),
            )
        })?;
        if member.voter {
            return Err(ServiceError::new(
                ErrorCode::UnsafeMembershipChange,
                format!("node {id} is already a voter"),
            ));
        }
        let recorded = self.record(authority).await?;
        if !self.caught_up_within(id).await {
            return Ok(MembersView {
                members: self.members(),
                recorded: Some(recorded),
                promotion_pending: Some(id),
            });
        }
        self.membership_op(
            false,
            self.raft
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false),
        )
        .await?;
        Ok(MembersView {
            members: self.members(),
            recorded: Some(recorded),
            promotion_pending: None,
        })
    }

    /// Removes a voter (guarded) or a learner, as `authority` (`CLUSTER.MEMBER_REMOVE`)
    /// asks for node `id`.
    pub async fn remove_member(
        &self,
        id: NodeId,
        authority: Option<SignedProposal>,
    ) -> Result<MembersView, ServiceError> {
        self.on_leader("a membership change")?;
        let authority = authority.ok_or_else(|| signature_required("member remove"))?;
        let _turn = self.admin_turn().await?;
        let (op, _) = self.authorize_here(&authority, "CLUSTER.MEMBER_REMOVE")?;
        same_node(&op, id)?;
        let current = self.probe_voters(self.members()).await;
        let member = current.iter().find(|m| m.id == id).ok_or_else(|| {
            ServiceError::new(ErrorCode::NotFound, format!("node {id} is not a member"))
        })?;
        if member.voter && !self.faults.unguarded_removal {
            check_removal_is_safe(&current, id)?;
        }
        let voter = member.voter;
        let recorded = self.record(authority).await?;
        if voter {
            self.membership_op(
                id == self.id,
                self.raft
                    .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false),
            )
            .await?;
        } else {
            self.membership_op(
                false,
                self.raft
                    .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false),
            )
            .await?;
        }
        Ok(MembersView {
            members: self.members(),
            recorded: Some(recorded),
            promotion_pending: None,
        })
    }

    /// Refuses a node to be added that already holds a history other than this cluster's:
    /// one initialized on its own (`docket cluster init` run against it by mistake) or by
    /// another cluster. Raft would make it a learner and leave its ledger as it is —
    /// another genesis, another state — and it would serve that history to clients. A
    /// fresh node, or this cluster's own member (same cluster id, same genesis entry
    /// hash), may join.
    async fn check_history(
        &self,
        request: &AddMemberRequest,
        cosigner: &docket_core::PublicKey,
    ) -> Result<(), ServiceError> {
        let theirs = self
            .peers
            .history(&request.api_addr, self.timing.probe_timeout)
            .await
            .map_err(|e| {
                ServiceError::new(
                    ErrorCode::MemberUnreachable,
                    format!(
                        "cannot ask node {} at api_addr {} which history it holds: {e}; is \
                         `docket serve` running there with that api_addr?",
                        request.id, request.api_addr
                    ),
                )
            })?;
        if theirs.node_id != request.id {
            return Err(ServiceError::new(
                ErrorCode::MalformedRequest,
                format!(
                    "api_addr {} answers as node {}, not node {}",
                    request.api_addr, theirs.node_id, request.id
                ),
            ));
        }
        if theirs.cosigner.as_ref() != Some(cosigner) {
            return Err(ServiceError::new(
                ErrorCode::MalformedRequest,
                format!(
                    "the request declares cosigner key {} for node {}, but the node reports {}; \
                     sign a request with the key its status shows",
                    cosigner.short(),
                    request.id,
                    theirs
                        .cosigner
                        .map_or_else(|| "none".to_owned(), |k| k.short())
                ),
            ));
        }
        if !theirs.initialized {
            return Ok(());
        }
        let other = |what: String| {
            ServiceError::new(
                ErrorCode::MemberHasOtherHistory,
                format!(
                    "node {} at {} is already initialized with {what}; it holds a history \
                     that is not this cluster's. Stop it, move its data directory away, start \
                     it empty and add it again",
                    request.id, request.api_addr
                ),
            )
        };
        if theirs.cluster_id != self.cluster_id {
            return Err(other(format!("cluster id {:?}", theirs.cluster_id)));
        }
        let ours = self.history()?.genesis;
        if theirs.genesis != ours {
            let hex = |hash: Option<docket_core::EntryHash>| {
                hash.map_or_else(|| "none".to_owned(), |h| h.to_string())
            };
            return Err(other(format!(
                "genesis entry {} (this cluster's is {})",
                hex(theirs.genesis),
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
    /// inconsistent (openraft#923; found by the simulator, seed 54). Removing itself from
    /// the joint configuration resolves to the configuration it was moving to, openraft's
    /// own second step of a leader's removal.
    async fn membership_op<T>(
        &self,
        completes_own_removal: bool,
        op: impl Future<Output = Result<T, RaftError<u64, ClientWriteError<u64, NodeAddr>>>>,
    ) -> Result<T, ServiceError> {
        if !completes_own_removal
            && docket_raft::leads_outside_target_config(&self.raft.metrics().borrow(), self.id)
        {
            return Err(ServiceError::new(
                ErrorCode::UnsafeMembershipChange,
                format!(
                    "this leader (node {id}) is not a voter of the configuration the cluster \
                     is moving to: a change removing it was cut short by a leadership change. \
                     Finish that removal first (`docket member remove {id}`; this node then \
                     steps down), then retry",
                    id = self.id
                ),
            ));
        }
        let timeout = self.timing.membership_timeout;
        match tokio::time::timeout(timeout, op).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(ServiceError::from_write(e)),
            Err(_) => Err(ServiceError::new(
                ErrorCode::Timeout,
                format!(
                    "membership change did not commit within {} ms",
                    timeout.as_millis()
                ),
            )),
        }
    }

    /// The entry holding the last request recorded for node `id`, when that request asked
    /// for a voter: an add without `learner`, or a promote. `None` for an explicit learner,
    /// a removal, or no request.
    fn voter_requested(&self, id: NodeId) -> Option<docket_core::LedgerIndex> {
        let subject = self.replica.with_state(|state| {
            state.and_then(|s| s.subject(crate::admin::ADMIN_DOMAIN, &format!("node-{id}")))
        })?;
        let entry = self.replica.ledger_entry(subject.last_index).ok()??;
        let record = entry.decision_record()?;
        match AdminOp::parse(&record.proposal.proposal).ok()?.0 {
            AdminOp::MemberAdd {
                node,
                learner: false,
                ..
            }
            | AdminOp::MemberPromote { node }
                if node == id =>
            {
                Some(entry.index)
            }
            _ => None,
        }
    }

    /// Completes the promotions the ledger asked for: every learner that has caught up and
    /// whose last recorded request asked for a voter (a `member add` or `member promote`
    /// that gave up waiting for it to catch up) is made a voter, under that request's
    /// authority (it is already recorded; nothing new is). An explicit learner (`member
    /// add --learner`) stays one until an operator promotes it. Leader only; one at a time,
    /// under the admin lock; the removal guardrails do not apply (a voter is added).
    pub(crate) async fn promote_caught_up(&self) {
        if !self.is_leader() {
            return;
        }
        let ready: Vec<NodeId> = self
            .members()
            .into_iter()
            .filter(|m| !m.voter && m.lag.is_some_and(|lag| lag <= LAG_HEALTHY_MAX))
            .map(|m| m.id)
            .collect();
        for id in ready {
            let Some(request) = self.voter_requested(id) else {
                continue;
            };
            let Ok(_turn) = self.admin_turn().await else {
                return;
            };
            // Again under the lock: an operation that held it may have changed the member.
            let still = self
                .members()
                .iter()
                .any(|m| m.id == id && !m.voter && m.lag.is_some_and(|lag| lag <= LAG_HEALTHY_MAX));
            if !still || self.voter_requested(id) != Some(request) {
                continue;
            }
            let promoted = self
                .membership_op(
                    false,
                    self.raft
                        .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false),
                )
                .await;
            match promoted {
                Ok(_) => tracing::info!(
                    node = id,
                    request = %request,
                    "promoted a caught-up learner to voter, as the request recorded at entry {request} asked"
                ),
                Err(error) => tracing::debug!(node = id, %error, "promotion not done yet"),
            }
        }
    }

    /// Waits up to `timing.catch_up_timeout` for node `id` to be within
    /// [`LAG_HEALTHY_MAX`] entries of the leader; false when it is not by then (it stays a
    /// learner, and the promoter takes over if a voter was asked for).
    async fn caught_up_within(&self, id: NodeId) -> bool {
        let deadline = Instant::now() + self.timing.catch_up_timeout;
        loop {
            if self
                .members()
                .iter()
                .any(|m| m.id == id && m.lag.is_some_and(|lag| lag <= LAG_HEALTHY_MAX))
            {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Marks every other voter whose Raft port accepts no connection within the probe
    /// timeout as not replicating (`lag: None`). openraft 0.9 reports only each follower's
    /// matched log index, which stays where it was when the follower died: on an idle
    /// cluster a dead voter's lag reads 0, and the quorum check alone would let a removal
    /// leave the cluster waiting on it forever. (A connection is a weak liveness signal — a
    /// hung process whose kernel still accepts passes — but it catches a crashed or
    /// stopped node.)
    async fn probe_voters(&self, mut current: Vec<MemberView>) -> Vec<MemberView> {
        let probe = self.timing.probe_timeout;
        let probes = current.iter().map(|m| async move {
            if !m.voter || m.id == self.id {
                return true;
            }
            self.peers.raft_reachable(&m.raft_addr, probe).await
        });
        let reachable = futures::future::join_all(probes).await;
        for (member, reachable) in current.iter_mut().zip(reachable) {
            if !reachable {
                member.lag = None;
            }
        }
        current
    }
}

/// `SIGNATURE_REQUIRED` for an operation that came without its signed request.
fn signature_required(what: &str) -> ServiceError {
    ServiceError::new(
        ErrorCode::SignatureRequired,
        format!(
            "{what} is a governed cluster operation: send it signed by a principal the \
             constitution authorizes (the CLI's --key or DOCKET_KEY)"
        ),
    )
}

/// Refuses a request signed for another node than the route names.
fn same_node(op: &AdminOp, id: NodeId) -> Result<(), ServiceError> {
    match op.node() {
        Some(node) if node == id => Ok(()),
        other => Err(ServiceError::new(
            ErrorCode::MalformedRequest,
            format!(
                "the route names node {id}, the signed request node {}",
                other.map_or_else(|| "none".to_owned(), |n| n.to_string())
            ),
        )),
    }
}

/// Refuses removing the last voter, or a removal after which the voters that are
/// replicating (within [`LAG_HEALTHY_MAX`]) could not form a quorum.
pub fn check_removal_is_safe(current: &[MemberView], id: u64) -> Result<(), ServiceError> {
    let voters: Vec<&MemberView> = current.iter().filter(|m| m.voter).collect();
    if voters.len() == 1 {
        return Err(ServiceError::new(
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
        return Err(ServiceError::new(
            ErrorCode::UnsafeMembershipChange,
            format!(
                "removing node {id} leaves {} voters needing a quorum of {quorum}, but only {} \
                 are replicating ({:?}); nodes {:?} are unreachable or behind — bring them \
                 back first",
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
