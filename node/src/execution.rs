//! Wiring of the execution agents (`docket-execution`) into a node: the [`Host`] seam over
//! this node's Raft handle and replica, the leadership watch, and start-up from the
//! `[execution]` section of the node configuration.
//!
//! Every node of a cluster may run an agent; only the one that leads acts, and it confirms
//! its leadership (a read-index round) before every effect. Outcomes come back as
//! proposals through the same `Node::submit` path as client writes.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use docket_core::state::ProposalStatus;
use docket_core::{LedgerEntry, LedgerId, LedgerIndex, ProposalId, SignedProposal, SubjectState};
use docket_execution::{
    ExecutionConfig, Executor, Host, HostError, Journal, Leadership, LedgerView, Submitted,
};
use docket_raft::Outcome;
use tokio::sync::watch;

use crate::server::Node;

/// Parses and validates the `[execution]` table of a node configuration.
pub fn config(table: &toml::Table) -> anyhow::Result<ExecutionConfig> {
    let config: ExecutionConfig = table
        .clone()
        .try_into()
        .map_err(|e: toml::de::Error| anyhow::anyhow!("execution: {}", e.message().trim()))?;
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("{}: {}", e.field, e.message))?;
    Ok(config)
}

/// Builds the executor a configuration asks for; `None` when execution is disabled.
pub fn executor(
    table: &toml::Table,
    data_dir: &std::path::Path,
) -> anyhow::Result<Option<Executor>> {
    let config = config(table)?;
    if !config.enabled {
        return Ok(None);
    }
    let key_path = config
        .key_file
        .clone()
        .context("execution.key_file is required when execution.enabled")?;
    let key = crate::cli::read_key_file(&key_path)
        .with_context(|| format!("execution.key_file {}", key_path.display()))?;
    let journal_dir: PathBuf = config
        .journal_dir
        .clone()
        .unwrap_or_else(|| data_dir.join("execution"));
    let journal = Journal::open(&journal_dir)
        .with_context(|| format!("opening the execution journal in {}", journal_dir.display()))?;
    let executor = Executor::from_config(&config, key, journal)
        .map_err(|e| anyhow::anyhow!("{}: {}", e.field, e.message))?;
    Ok(Some(executor))
}

/// The node as the agents see it.
#[derive(Debug, Clone)]
pub struct NodeHost(pub Arc<Node>);

fn host_error(e: impl std::fmt::Display) -> HostError {
    HostError::new(e.to_string())
}

impl LedgerView for NodeHost {
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
        self.0
            .replica
            .with_state(|s| s?.subject(domain, subject).cloned())
    }

    fn action_quorum(&self, domain: &str, action: &str) -> Option<u32> {
        self.0
            .replica
            .with_state(|s| s?.constitution().action(domain, action).map(|a| a.quorum))
    }
}

impl Host for NodeHost {
    fn ledger_id(&self) -> LedgerId {
        self.0.ledger_id.clone()
    }

    fn term(&self) -> u64 {
        self.0.raft.metrics().borrow().current_term
    }

    async fn is_leader_confirmed(&self) -> bool {
        self.0.raft.ensure_linearizable().await.is_ok()
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

/// Longest wait for one leadership confirmation before it is tried again.
pub const LEADERSHIP_CONFIRM_TIMEOUT_MS: u64 = 5_000;
/// Wait before retrying a confirmation that failed while metrics still say "leader".
pub const LEADERSHIP_CONFIRM_RETRY_MS: u64 = 200;

/// Publishes whether this node leads, confirmed by a read-index round, until Raft stops
/// (`docket_execution::leadership` says why confirmed).
pub fn leadership(node: &Node) -> watch::Receiver<Leadership> {
    let timing = docket_execution::leadership::Timing {
        confirm_timeout: std::time::Duration::from_millis(LEADERSHIP_CONFIRM_TIMEOUT_MS),
        retry: std::time::Duration::from_millis(LEADERSHIP_CONFIRM_RETRY_MS),
    };
    let (rx, task) =
        docket_execution::leadership::publisher(node.raft.clone(), node.id, timing, |_, _| {});
    tokio::spawn(task);
    rx
}
