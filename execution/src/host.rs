//! The seam between the execution layer and the node it runs in.
//!
//! The node implements [`Host`] (and its read-only half, [`LedgerView`]) over its Raft
//! handle and its replica, and publishes a [`Leadership`] watch. Nothing else of the node
//! is visible here, so the agent runs the same against a real node, the simulator, or the
//! in-memory host of this crate's tests.
//!
//! What the node's implementation must guarantee:
//!
//! * [`LedgerView`] reads only **committed, applied** entries and the state they produced
//!   (the replica's), never uncommitted log entries;
//! * [`Host::is_leader_confirmed`] answers `true` only after a quorum confirmed this node's
//!   leadership in the current term (openraft `Raft::ensure_linearizable`), never from
//!   metrics alone;
//! * [`Host::submit`] sends the proposal through consensus and answers once its entry is
//!   committed (or says why it could not).
//!
//! A node's implementation is a thin wrapper (sketch; `Replica` and `Node` are the node's):
//!
//! ```text
//! struct NodeHost(Arc<Node>);
//! impl LedgerView for NodeHost {
//!     fn ledger_len(&self) -> u64 { self.0.replica.ledger_len() }
//!     fn entries(&self, from, limit) -> Result<..> {
//!         self.0.replica.ledger_entries(from, limit).map_err(|e| HostError::new(e.to_string()))
//!     }
//!     fn proposal_status(&self, id) -> Option<..> {
//!         self.0.replica.with_state(|s| s?.proposal(id).map(|r| (r.status, r.index)))
//!     }
//!     fn subject(&self, d, s) -> Option<SubjectState> {
//!         self.0.replica.with_state(|st| st?.subject(d, s))
//!     }
//!     fn action_quorum(&self, d, a) -> Option<u32> {
//!         self.0.replica.with_state(|st| Some(st?.constitution().domains.get(d)?.actions.get(a)?.quorum))
//!     }
//! }
//! impl Host for NodeHost {
//!     fn ledger_id(&self) -> LedgerId { self.0.ledger_id.clone() }
//!     fn term(&self) -> u64 { self.0.raft.metrics().borrow().current_term }
//!     async fn is_leader_confirmed(&self) -> bool { self.0.raft.ensure_linearizable().await.is_ok() }
//!     async fn submit(&self, p: SignedProposal) -> Result<Submitted, HostError> {
//!         // Node::submit(vec![p]) → ProposalOutcome; Outcome::Recorded { index, decision, .. }
//!         // → Submitted::Recorded { index, decision }; Outcome::Duplicate { index, status }
//!         // → Submitted::Duplicate { index, status }; ApiError → HostError.
//!     }
//! }
//! // Leadership: map raft.metrics() to Leadership { leader: current_leader == Some(id)
//! // && state == ServerState::Leader, term: current_term } in a watch channel.
//! ```

use std::future::Future;
use std::time::Duration;

use docket_core::state::ProposalStatus;
use docket_core::{
    Decision, LedgerEntry, LedgerId, LedgerIndex, ProposalId, SignedProposal, SubjectState,
};

/// How often an agent with nothing to do looks for new committed entries, when the host
/// offers no wake-up of its own ([`Host::wait_for_entries`]).
pub const FOLLOW_POLL_MS: u64 = 50;

/// Whether this node leads, and in which term. The node publishes it in a
/// `tokio::sync::watch` channel; the agent runs while `leader` is true and restarts when
/// the term changes (a new term is a new leadership, even for the same node).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Leadership {
    pub leader: bool,
    pub term: u64,
}

/// What became of a submitted outcome proposal.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Submitted {
    /// Its entry was recorded with this decision.
    Recorded {
        index: LedgerIndex,
        decision: Decision,
    },
    /// The id was already recorded; `status` is its current status.
    Duplicate {
        index: LedgerIndex,
        status: ProposalStatus,
    },
}

/// The host could not do what was asked (not leader, overloaded, shutting down, storage
/// error). The agent treats every host error as transient: it retries while it leads.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("{message}")]
pub struct HostError {
    pub message: String,
}

impl HostError {
    pub fn new(message: impl Into<String>) -> HostError {
        HostError {
            message: message.into(),
        }
    }
}

/// Read-only view of the committed ledger and the state it produced. Synchronous (reads of
/// the replica and of local storage) and object safe, so effects can plan with it.
pub trait LedgerView: Send + Sync {
    /// Number of committed ledger entries: the ledger is `[0, ledger_len)`.
    fn ledger_len(&self) -> u64;

    /// Up to `limit` committed entries from `from`, in order (fewer at the end).
    fn entries(&self, from: LedgerIndex, limit: u64) -> Result<Vec<LedgerEntry>, HostError>;

    /// Where a proposal stands, and the index of the entry holding its current decision.
    fn proposal_status(&self, id: &ProposalId) -> Option<(ProposalStatus, LedgerIndex)>;

    /// A subject's lifecycle state and data, if any entry touched it.
    fn subject(&self, domain: &str, subject: &str) -> Option<SubjectState>;

    /// The quorum the active constitution sets for `action` of `domain` (1 for plain
    /// actions), if it declares the action.
    fn action_quorum(&self, domain: &str, action: &str) -> Option<u32>;
}

/// What the agent needs from the node it runs in.
///
/// The futures are `Send` so the agent can run on a multi-threaded runtime; implementations
/// may write `async fn` for them.
pub trait Host: LedgerView + 'static {
    /// The ledger (cluster) id outcome proposals are signed for.
    fn ledger_id(&self) -> LedgerId;

    /// This node's current Raft term.
    fn term(&self) -> u64;

    /// Whether this node is the leader *now*, confirmed by a quorum (a read-index round:
    /// openraft `ensure_linearizable`). Called before every effect.
    fn is_leader_confirmed(&self) -> impl Future<Output = bool> + Send;

    /// Submits one proposal (an outcome record) through consensus.
    fn submit(
        &self,
        proposal: SignedProposal,
    ) -> impl Future<Output = Result<Submitted, HostError>> + Send;

    /// Resolves when the ledger may have grown past `ledger_len` entries (or after a short
    /// wait: spurious wake-ups are fine). The default polls every [`FOLLOW_POLL_MS`].
    fn wait_for_entries(&self, ledger_len: u64) -> impl Future<Output = ()> + Send {
        let _ = ledger_len;
        tokio::time::sleep(Duration::from_millis(FOLLOW_POLL_MS))
    }
}
