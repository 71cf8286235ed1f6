//! Which Raft log a node keeps once a snapshot covers it.
//!
//! A node that was down catches up from the leader's log if the leader still holds the
//! entries it missed, and is sent a snapshot otherwise. A docket snapshot is the whole
//! ledger from genesis, which the receiver verifies and replays (~40,000 entries/s), so
//! being sent one costs in proportion to the ledger, not to the outage. openraft 0.9 keeps
//! a count of Raft entries behind its last snapshot (`max_in_snapshot_log_to_keep`); a
//! count is the wrong unit here: an entry is one proposal under small writes and a group
//! commit of a hundred under batches, so a thousand entries were ~1.5 s of history at one
//! client, and a follower restarted after longer than that was sent the whole ledger.
//!
//! So, given a byte budget, openraft's own purge is off ([`LogKeep::openraft_keep`]) and
//! this task purges instead, every [`LogKeep::interval`], through the highest index that
//! leaves both
//!
//! * at least [`LogKeep::snapshotted_entries`] entries behind the last snapshot
//!   (openraft's rule, kept), and
//! * about [`LogKeep::bytes`] of the most recent log (`Replica::log_keep_floor`),
//!
//! and never past the last snapshot (openraft refuses that itself). Every node keeps the
//! same: a follower may be the next leader, and a lagging member is then caught up from
//! its log. The disk this costs is the budget per node; a log is a few percent of a
//! ledger of millions of entries. With `bytes = 0` the log is kept by entries alone and
//! openraft purges it itself, right after each snapshot, as it always did.
//!
//! A purge stops at the last snapshot, so the budget holds only if snapshots keep up:
//! openraft takes one every `snapshot_logs_since_last` Raft entries (10,000 by default),
//! which under batched writes (hundreds of proposals an entry) was millions of proposals
//! and gigabytes of log that nothing could purge, and a new node was sent that log to
//! replay, signatures and all, at a third of a snapshot's speed. So this task also takes
//! a snapshot whenever the log past the last one holds more than
//! [`LogKeep::snapshot_after_bytes`] (an eighth of the budget, at most
//! [`SNAPSHOT_AFTER_BYTES_MAX`]). Taking one is O(1) (its header; the ledger is read when
//! it is sent), so the log held stays within about 9/8 of the budget, and a node further
//! behind than the log is sent a snapshot and at most that much log after it.

use std::sync::Arc;
use std::time::Duration;

use crate::service::Service;

/// How much log a node keeps (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogKeep {
    /// Entries covered by the last snapshot that are kept anyway
    /// (`raft.max_in_snapshot_log_to_keep`).
    pub snapshotted_entries: u64,
    /// The most recent log kept, in bytes (`raft.log_keep_mb`); 0 keeps by entries alone.
    pub bytes: u64,
    /// How often the node looks whether there is log to purge.
    pub interval: Duration,
}

/// How often a node looks for log to purge: a purge then removes up to this long's worth
/// of appends past the budget at once (~15 MB at full batched load on a 2-core machine).
pub const INTERVAL_DEFAULT: Duration = Duration::from_secs(5);

/// Raft entries one purge removes at most. A purge reads the entries it deletes and
/// writes their deletions in one batch, on the blocking pool; the first purge after a
/// restart may have a whole budget of log to remove (half a million small entries at
/// 256 MiB), so it goes in steps, one per interval: 20,000 entries/s, far above the
/// Raft entries a node appends per second (~650 at one client, tens under batches).
pub const PURGE_ENTRIES_MAX: u64 = 100_000;

/// The log past the last snapshot that makes a node take one, as a fraction of the budget
/// (see the module docs): the log held stays within 9/8 of the budget.
pub const SNAPSHOT_BUDGET_DIVISOR: u64 = 8;

/// ... and at most this much: a node that joins, or is sent a snapshot, replays the log
/// past the snapshot from the log, every signature checked again (~12,000 proposals/s
/// here); 8 MiB is ~25,000 batched proposals, about two seconds of it. (32 MiB, an
/// eighth of the default budget, left a new node 80,000 entries and 6.5 s of it in the
/// growth benchmark.) Taking a snapshot costs ~10 ms of the state machine's time.
pub const SNAPSHOT_AFTER_BYTES_MAX: u64 = 8 * 1024 * 1024;

impl LogKeep {
    /// Bytes of log past the last snapshot beyond which this node takes a snapshot of its
    /// own; `None` without a byte budget (openraft's entry count alone decides).
    pub fn snapshot_after_bytes(&self) -> Option<u64> {
        (self.bytes > 0)
            .then(|| (self.bytes / SNAPSHOT_BUDGET_DIVISOR).clamp(1, SNAPSHOT_AFTER_BYTES_MAX))
    }

    /// What the node's openraft keeps behind a snapshot (`Config::max_in_snapshot_log_to_keep`):
    /// everything when there is a byte budget ([`retention`] purges), the entries rule
    /// otherwise (openraft purges after each snapshot, and [`retention`] does nothing).
    pub fn openraft_keep(&self) -> u64 {
        if self.bytes == 0 {
            self.snapshotted_entries
        } else {
            u64::MAX
        }
    }

    /// The highest index to purge through, given the last snapshot's index and the byte
    /// budget's floor (`Replica::log_keep_floor`); `None` when nothing may go.
    pub fn purge_upto(&self, snapshot: u64, bytes_floor: Option<u64>) -> Option<u64> {
        let by_entries = snapshot.checked_sub(self.snapshotted_entries)?;
        if self.bytes == 0 {
            return Some(by_entries);
        }
        Some(by_entries.min(bytes_floor?))
    }
}

/// Runs until Raft stops: purges this node's log as [`LogKeep`] says. Without a byte
/// budget openraft purges, and this never returns.
pub(crate) async fn retention(service: Arc<Service>) {
    let keep = service.log_keep.clone();
    if keep.bytes == 0 {
        return std::future::pending().await;
    }
    let metrics = service.raft.metrics();
    loop {
        tokio::time::sleep(keep.interval).await;
        let (snapshot, purged) = {
            let m = metrics.borrow();
            (m.snapshot, m.purged)
        };
        if let Some(limit) = keep.snapshot_after_bytes() {
            let tail = service
                .replica
                .log_bytes_after(snapshot.map_or(0, |s| s.index));
            // openraft ignores the trigger while a snapshot is being built.
            if tail > limit && service.raft.trigger().snapshot().await.is_err() {
                return;
            }
        }
        let Some(snapshot) = snapshot else {
            continue;
        };
        let floor = (keep.bytes > 0)
            .then(|| service.replica.log_keep_floor(keep.bytes))
            .flatten();
        let Some(upto) = keep.purge_upto(snapshot.index, floor) else {
            continue;
        };
        let next = purged.map_or(0, |purged| purged.index + 1);
        if upto < next {
            continue;
        }
        let upto = upto.min(next.saturating_add(PURGE_ENTRIES_MAX - 1));
        tracing::debug!(
            upto,
            snapshot = snapshot.index,
            kept_bytes = service.replica.log_bytes_after(upto),
            "purging the log"
        );
        if service.raft.trigger().purge_log(upto).await.is_err() {
            // Raft has stopped: nothing left to purge.
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep(snapshotted_entries: u64, bytes: u64) -> LogKeep {
        LogKeep {
            snapshotted_entries,
            bytes,
            interval: INTERVAL_DEFAULT,
        }
    }

    #[test]
    fn a_byte_budget_takes_a_snapshot_every_eighth_of_it_up_to_8_mib() {
        assert_eq!(keep(7, 0).snapshot_after_bytes(), None);
        assert_eq!(keep(7, 256 << 20).snapshot_after_bytes(), Some(8 << 20));
        assert_eq!(keep(7, 32 << 20).snapshot_after_bytes(), Some(4 << 20));
        assert_eq!(keep(7, 3).snapshot_after_bytes(), Some(1));
    }

    #[test]
    fn openraft_purges_by_itself_only_without_a_byte_budget() {
        assert_eq!(keep(7, 0).openraft_keep(), 7);
        assert_eq!(keep(7, 1).openraft_keep(), u64::MAX);
    }

    #[test]
    fn without_a_byte_budget_the_log_is_kept_by_entries_as_openraft_did() {
        assert_eq!(keep(0, 0).purge_upto(100, None), Some(100));
        assert_eq!(keep(10, 0).purge_upto(100, None), Some(90));
        assert_eq!(keep(10, 0).purge_upto(100, Some(5)), Some(90));
        assert_eq!(keep(100, 0).purge_upto(100, None), Some(0));
        assert_eq!(keep(101, 0).purge_upto(100, None), None);
    }

    #[test]
    fn a_byte_budget_keeps_whichever_rule_keeps_more() {
        // The budget keeps more than the entries rule.
        assert_eq!(keep(10, 1 << 20).purge_upto(100, Some(40)), Some(40));
        // The entries rule keeps more than the budget.
        assert_eq!(keep(10, 1 << 20).purge_upto(100, Some(95)), Some(90));
        // The whole log fits the budget: nothing goes by bytes.
        assert_eq!(keep(0, 1 << 20).purge_upto(100, None), None);
        // Never past the snapshot, whatever the budget allows.
        assert_eq!(keep(0, 1 << 20).purge_upto(100, Some(500)), Some(100));
    }
}
