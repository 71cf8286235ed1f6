//! What the service records through the `metrics` facade, and the gauges it reads from
//! Raft and the replica when a scrape asks ([`Service::observe`]).
//!
//! Counters and histograms are recorded where their events happen (admission in
//! [`Service::submit`], group commit in the writer, read-index rounds in `reads.rs`), so
//! the simulator runs the same code; the facade is a no-op there because it installs no
//! recorder. Gauges are set from Raft's metrics and the replica at scrape time: nothing
//! runs between scrapes for them. Names follow Prometheus conventions (base units last,
//! `_total` counters); label values are bounded (roles, error code names, node ids of
//! members).

use std::time::Duration;

use docket_raft::{ProposalOutcome, Raft};

use crate::error::{ErrorCode, ServiceError};
use crate::service::Service;

pub const RAFT_TERM: &str = "docket_raft_term";
pub const RAFT_LEADER_ID: &str = "docket_raft_leader_id";
pub const RAFT_IS_LEADER: &str = "docket_raft_is_leader";
pub const RAFT_LEADER_CHANGES_TOTAL: &str = "docket_raft_leader_changes_total";
pub const RAFT_LAST_LOG_INDEX: &str = "docket_raft_last_log_index";
pub const RAFT_COMMITTED_INDEX: &str = "docket_raft_committed_index";
pub const RAFT_APPLIED_INDEX: &str = "docket_raft_applied_index";
pub const RAFT_SNAPSHOT_INDEX: &str = "docket_raft_snapshot_index";
pub const RAFT_LOG_ENTRIES: &str = "docket_raft_log_entries";
pub const RAFT_LOG_BYTES: &str = "docket_raft_log_bytes";
pub const RAFT_REPLICATION_LAG_ENTRIES: &str = "docket_raft_replication_lag_entries";
pub const RAFT_MEMBERS: &str = "docket_raft_members";
pub const LEDGER_ENTRIES: &str = "docket_ledger_entries";
pub const STORAGE_SIZE_BYTES: &str = "docket_storage_size_bytes";
pub const STORAGE_CACHE_BYTES: &str = "docket_storage_cache_bytes";
pub const STORAGE_WRITE_BUFFER_BYTES: &str = "docket_storage_write_buffer_bytes";
pub const STORAGE_PINNED_BYTES: &str = "docket_storage_pinned_bytes";
pub const DEFERRED_PROPOSALS: &str = "docket_deferred_proposals";
pub const SIGNATURE_CHECKS_TOTAL: &str = "docket_signature_checks_total";
pub const SIGNATURE_VERIFICATIONS_TOTAL: &str = "docket_signature_verifications_total";
pub const ADMISSION_DURATION_SECONDS: &str = "docket_admission_duration_seconds";
pub const GROUP_COMMIT_PROPOSALS: &str = "docket_group_commit_proposals";
pub const READ_INDEX_ROUNDS_TOTAL: &str = "docket_read_index_rounds_total";
pub const DIVERGENCE_ALARMS_TOTAL: &str = "docket_divergence_alarms_total";
pub const DIVERGED: &str = "docket_diverged";

/// Every name this crate records, with its help text.
pub const METRICS: &[(&str, &str)] = &[
    (RAFT_TERM, "This node's current Raft term"),
    (
        RAFT_LEADER_ID,
        "The leader this node knows of (0: none known)",
    ),
    (RAFT_IS_LEADER, "1 if this node is the Raft leader, else 0"),
    (
        RAFT_LEADER_CHANGES_TOTAL,
        "Times this node saw a different leader than the last one it knew",
    ),
    (
        RAFT_LAST_LOG_INDEX,
        "Index of the last entry in this node's Raft log",
    ),
    (
        RAFT_COMMITTED_INDEX,
        "Index of the last Raft log entry this node knows to be committed",
    ),
    (
        RAFT_APPLIED_INDEX,
        "Index of the last Raft log entry this node applied",
    ),
    (
        RAFT_SNAPSHOT_INDEX,
        "Raft log index of this node's last snapshot",
    ),
    (
        RAFT_LOG_ENTRIES,
        "Raft log entries this node holds (not yet purged into a snapshot)",
    ),
    (
        RAFT_LOG_BYTES,
        "Bytes of Raft log this node holds (an estimate: sampled every 64 KiB or more, the \
         log held at start from a few of its entries; raft.log_keep_mb bounds what a \
         snapshot covers)",
    ),
    (
        RAFT_REPLICATION_LAG_ENTRIES,
        "On the leader: entries each member's matched index is behind the leader's log",
    ),
    (
        RAFT_MEMBERS,
        "Members of the Raft configuration this node knows, by role (voter, learner)",
    ),
    (LEDGER_ENTRIES, "Ledger entries this replica has applied"),
    (
        STORAGE_SIZE_BYTES,
        "Bytes this node's store takes on disk (Raft log, ledger, state rows, Merkle tree)",
    ),
    (
        STORAGE_CACHE_BYTES,
        "Bytes in the store's read cache (fjall's block cache; [storage] cache_mb bounds it \
         with the write buffers; not exported on sled)",
    ),
    (
        STORAGE_WRITE_BUFFER_BYTES,
        "Bytes of writes the store holds in memory until they reach table files (fjall's \
         active and sealed memtables; not exported on sled)",
    ),
    (
        STORAGE_PINNED_BYTES,
        "Bytes of table index and filter blocks the store keeps in memory outside its read \
         cache (fjall's pinned blocks; not exported on sled)",
    ),
    (
        DEFERRED_PROPOSALS,
        "Proposals deferred in this replica's state, waiting on dependencies",
    ),
    (
        SIGNATURE_CHECKS_TOTAL,
        "Proposal signature checks (front door and apply), including memo hits",
    ),
    (
        SIGNATURE_VERIFICATIONS_TOTAL,
        "ed25519 verifications run (checks the verified-signature memo could not answer; a batch counts each signature)",
    ),
    (
        ADMISSION_DURATION_SECONDS,
        "Seconds from a submission reaching this node's service to its answer, by result",
    ),
    (
        GROUP_COMMIT_PROPOSALS,
        "Proposals in each Raft entry the leader's group-commit writer built",
    ),
    (
        DIVERGENCE_ALARMS_TOTAL,
        "Divergence alarms this node raised: a replica (label node) refused to cosign its \
         checkpoint because it holds another ledger or state at that size",
    ),
    (
        DIVERGED,
        "1 when this replica quarantined itself: a checkpoint a quorum cosigned disagrees with \
         its ledger or state (it serves nothing until repaired)",
    ),
    (
        READ_INDEX_ROUNDS_TOTAL,
        "Read-index rounds run, by role (leader, follower asking the leader, leader for followers)",
    ),
];

/// Records one submission's admission latency. A `NOT_LEADER` answer is not recorded:
/// the transport forwards it, and the leader records the admission.
pub(crate) fn record_admission(
    result: &Result<Vec<ProposalOutcome>, ServiceError>,
    elapsed: Duration,
) {
    let code = match result {
        Ok(_) => "ok",
        Err(error) if error.code == ErrorCode::NotLeader => return,
        Err(error) => error.code.name(),
    };
    metrics::histogram!(ADMISSION_DURATION_SECONDS, "result" => code).record(elapsed.as_secs_f64());
}

impl Service {
    /// Sets the gauges a scrape shows from Raft's metrics and the replica, and the
    /// signature counters from the verified-signature memo. O(members) plus one point
    /// read of the committed log id.
    pub fn observe(&self) {
        let metrics = self.raft.metrics().borrow().clone();
        metrics::gauge!(RAFT_TERM).set(metrics.current_term as f64);
        metrics::gauge!(RAFT_LEADER_ID).set(metrics.current_leader.unwrap_or(0) as f64);
        let leader = metrics.current_leader == Some(self.id);
        metrics::gauge!(RAFT_IS_LEADER).set(if leader { 1.0 } else { 0.0 });
        let last = metrics.last_log_index.unwrap_or(0);
        metrics::gauge!(RAFT_LAST_LOG_INDEX).set(last as f64);
        if let Ok(committed) = self.replica.committed() {
            metrics::gauge!(RAFT_COMMITTED_INDEX)
                .set(committed.map_or(0, |log_id| log_id.index) as f64);
        }
        metrics::gauge!(RAFT_APPLIED_INDEX)
            .set(metrics.last_applied.map_or(0, |log_id| log_id.index) as f64);
        metrics::gauge!(RAFT_SNAPSHOT_INDEX)
            .set(metrics.snapshot.map_or(0, |log_id| log_id.index) as f64);
        let first = metrics.purged.map_or(0, |log_id| log_id.index + 1);
        let held = metrics
            .last_log_index
            .map_or(0, |last| (last + 1).saturating_sub(first));
        metrics::gauge!(RAFT_LOG_ENTRIES).set(held as f64);
        let purged = metrics.purged.map_or(0, |log_id| log_id.index);
        metrics::gauge!(RAFT_LOG_BYTES).set(self.replica.log_bytes_after(purged) as f64);
        let membership = metrics.membership_config.membership();
        let voters = membership.voter_ids().count();
        let nodes = membership.nodes().count();
        metrics::gauge!(RAFT_MEMBERS, "role" => "voter").set(voters as f64);
        metrics::gauge!(RAFT_MEMBERS, "role" => "learner").set(nodes.saturating_sub(voters) as f64);
        if let Some(replication) = metrics.replication.as_ref() {
            for (follower, matched) in replication.iter() {
                if *follower == self.id {
                    continue;
                }
                let matched = matched.map_or(0, |log_id| log_id.index);
                metrics::gauge!(RAFT_REPLICATION_LAG_ENTRIES, "follower" => follower.to_string())
                    .set(last.saturating_sub(matched) as f64);
            }
        }
        metrics::gauge!(LEDGER_ENTRIES).set(self.replica.ledger_len() as f64);
        if let Some(bytes) = self.replica.store_bytes() {
            metrics::gauge!(STORAGE_SIZE_BYTES).set(bytes as f64);
        }
        if let Some(memory) = self.replica.store_memory() {
            metrics::gauge!(STORAGE_CACHE_BYTES).set(memory.cache_bytes as f64);
            metrics::gauge!(STORAGE_WRITE_BUFFER_BYTES).set(memory.write_buffer_bytes as f64);
            metrics::gauge!(STORAGE_PINNED_BYTES).set(memory.pinned_bytes as f64);
        }
        let deferred = self
            .replica
            .with_state(|s| s.map_or(0, |s| s.deferred().len()));
        metrics::gauge!(DEFERRED_PROPOSALS).set(deferred as f64);
        let signatures = self.replica.signatures();
        metrics::counter!(SIGNATURE_CHECKS_TOTAL).absolute(signatures.checks());
        metrics::counter!(SIGNATURE_VERIFICATIONS_TOTAL).absolute(signatures.verifications());
    }
}

/// Counts leader changes as this node sees them, until Raft stops: each time it learns of
/// a leader other than the last one it knew (the first leader it learns of counts). The
/// caller spawns it where its host's tasks live; the node does, the simulator need not.
pub async fn watch_leader(raft: Raft) {
    let mut rx = raft.metrics();
    let mut known = None;
    loop {
        let leader = rx.borrow_and_update().current_leader;
        if leader.is_some() && leader != known {
            metrics::counter!(RAFT_LEADER_CHANGES_TOTAL).increment(1);
            known = leader;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}
