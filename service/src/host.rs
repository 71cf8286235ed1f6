//! The execution agent's [`Host`] over a [`Service`]: the ledger view reads only applied
//! (committed) entries and the state they produced, leadership is confirmed by a
//! read-index round, and outcome records go through the same front door and group-commit
//! writer as client writes.

use std::sync::Arc;

use docket_core::state::ProposalStatus;
use docket_core::{LedgerEntry, LedgerId, LedgerIndex, ProposalId, SignedProposal, SubjectState};
use docket_execution::{Host, HostError, LedgerView, Submitted};
use docket_raft::Outcome;

use crate::service::Service;

/// The service as an execution agent sees it.
#[derive(Debug, Clone)]
pub struct ServiceHost(pub Arc<Service>);

fn host_error(e: impl std::fmt::Display) -> HostError {
    HostError::new(e.to_string())
}

impl LedgerView for ServiceHost {
    fn ledger_len(&self) -> u64 {
        self.0.replica.ledger_len()
    }

    fn entries(&self, from: LedgerIndex, limit: u64) -> Result<Vec<LedgerEntry>, HostError> {
        self.0
            .replica
            .ledger_entries(from, limit)
            .map_err(host_error)
    }

    fn proposal_status(&self, id: &ProposalId) -> Option<(ProposalStatus, LedgerIndex)> {
        self.0
            .replica
            .with_state(|s| s?.proposal(id).map(|r| (r.status, r.index)))
    }

    fn subject(&self, domain: &str, subject: &str) -> Option<SubjectState> {
        self.0.replica.with_state(|s| s?.subject(domain, subject))
    }

    fn action_quorum(&self, domain: &str, action: &str) -> Option<u32> {
        self.0
            .replica
            .with_state(|s| s?.constitution().action(domain, action).map(|a| a.quorum))
    }
}

impl Host for ServiceHost {
    fn ledger_id(&self) -> LedgerId {
        self.0.ledger_id.clone()
    }

    fn term(&self) -> u64 {
        self.0.raft.metrics().borrow().current_term
    }

    async fn is_leader_confirmed(&self) -> bool {
        let confirm = self.0.raft.ensure_linearizable();
        matches!(
            tokio::time::timeout(self.0.timing.confirm_timeout, confirm).await,
            Ok(Ok(_))
        )
    }

    async fn submit(&self, proposal: SignedProposal) -> Result<Submitted, HostError> {
        let mut outcomes = self.0.submit(vec![proposal]).await.map_err(host_error)?;
        let outcome = outcomes
            .pop()
            .ok_or_else(|| HostError::new("no outcome for the submitted proposal"))?;
        Ok(match outcome.outcome {
            Outcome::Recorded {
                index, decision, ..
            } => Submitted::Recorded { index, decision },
            Outcome::Duplicate { index, status } => Submitted::Duplicate { index, status },
        })
    }
}
