//! Pacing a follower's appends to its applies: a bound on the entries it holds appended
//! but not yet applied.
//!
//! openraft 0.9 reads every newly committed range of the log and queues it, decoded, for
//! the state machine's task, and that queue has no bound. A follower that appends faster
//! than it applies (a fresh node catching up: its appends are sequential writes, its
//! applies adjudicate, write rows and fold the state map) therefore held a growing share of
//! the ledger in memory: tens of thousands of proposals after a few seconds of catch-up,
//! which is how a catching-up node's memory climbed with the length of what it lacked.
//!
//! The Raft server bounds it where an append arrives ([`pace`]): when taking all of an
//! append's entries would leave more than [`ApplyPacing::backlog_max`] entries (the
//! node's `raft.apply_backlog_max`, 32 by default) appended and not applied, it waits (up
//! to [`ApplyPacing::wait`], a quarter of the leader's timeout for the call) for applies
//! to make room, then hands openraft the entries that fit, at least one, and answers the
//! leader `PartialSuccess` with the last one it took: openraft's own answer for "some of
//! the entries", after which the leader sends the rest at once.
//! Nothing about safety changes: the entries taken are appended and flushed as before, and
//! the leader counts only what the answer names. A follower that keeps up never waits.
//! The leader's own appends do not come through here; its applies are what its clients
//! wait for already.

use std::time::Duration;

use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
use openraft::{Raft, RaftMetrics};

use crate::{LogId, NodeAddr, NodeId, TypeConfig};

/// How a Raft server paces appends (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApplyPacing {
    /// Entries appended and not applied beyond which an append waits.
    pub backlog_max: u64,
    /// The longest an append waits for room before it takes what fits (at least one
    /// entry). Must stay under the leader's timeout for an append (openraft 0.9: one
    /// heartbeat interval).
    pub wait: Duration,
}

impl ApplyPacing {
    /// At most `backlog_max` entries (at least one), waiting at most a quarter of the
    /// cluster's heartbeat interval (openraft's timeout for an append): the append still
    /// has its write and flush to do within that timeout. Half an interval made the nodes
    /// log four times as many appends timing out under batched load (453 lines against
    /// 122 without pacing in 20 s at 16 clients × 100); a quarter, 123 to 244 in three
    /// runs.
    pub fn new(backlog_max: u64, heartbeat_interval: Duration) -> ApplyPacing {
        ApplyPacing {
            backlog_max: backlog_max.max(1),
            wait: heartbeat_interval / 4,
        }
    }
}

/// Entries this node holds appended and not applied, as its Raft metrics say.
fn backlog(metrics: &RaftMetrics<NodeId, NodeAddr>) -> u64 {
    let appended = metrics.last_log_index.map_or(0, |i| i + 1);
    let applied = metrics.last_applied.map_or(0, |id| id.index + 1);
    appended.saturating_sub(applied)
}

/// How many of `count` entries starting at log index `first` fit under `backlog_max`, for
/// a node whose log ends before `appended_end` and which holds `backlog` unapplied entries:
/// entries it holds already (a resend) take no room.
fn room(backlog: u64, appended_end: u64, first: u64, count: u64, backlog_max: u64) -> u64 {
    let new_from = appended_end.max(first);
    let already = new_from - first;
    let free = backlog_max.saturating_sub(backlog);
    count.min(already.saturating_add(free))
}

/// The append to hand openraft, after waiting for room if the node's applies lag: `rpc`
/// itself, or its first entries with the id of the last one kept (the answer to give the
/// leader is then `PartialSuccess` of that id).
pub async fn pace(
    raft: &Raft<TypeConfig>,
    mut rpc: AppendEntriesRequest<TypeConfig>,
    pacing: ApplyPacing,
) -> (AppendEntriesRequest<TypeConfig>, Option<LogId>) {
    let count = rpc.entries.len() as u64;
    let Some(first) = rpc.entries.first().map(|e| e.log_id.index) else {
        return (rpc, None);
    };
    let mut metrics = raft.metrics();
    let deadline = tokio::time::Instant::now() + pacing.wait;
    let mut waited = false;
    let fits = loop {
        let fits = {
            let m = metrics.borrow_and_update();
            let appended_end = m.last_log_index.map_or(0, |i| i + 1);
            room(backlog(&m), appended_end, first, count, pacing.backlog_max)
        };
        if fits == count {
            return (rpc, None);
        }
        if !waited {
            waited = true;
            metrics::counter!(crate::telemetry::APPENDS_PACED_TOTAL).increment(1);
        }
        match tokio::time::timeout_at(deadline, metrics.changed()).await {
            Ok(Ok(())) => continue,
            // The deadline passed, or Raft shut down: take what fits.
            Ok(Err(_)) | Err(_) => break fits,
        }
    };
    let keep = fits.max(1) as usize;
    if keep as u64 == count {
        return (rpc, None);
    }
    rpc.entries.truncate(keep);
    let last = rpc.entries.last().map(|e| e.log_id);
    (rpc, last)
}

/// openraft's answer to the append `pace` cut short: a success names only the entries
/// taken.
pub fn answer(
    response: AppendEntriesResponse<NodeId>,
    kept_last: Option<LogId>,
) -> AppendEntriesResponse<NodeId> {
    match (response, kept_last) {
        (AppendEntriesResponse::Success, Some(last)) => {
            AppendEntriesResponse::PartialSuccess(Some(last))
        }
        (response, _) => response,
    }
}

#[cfg(test)]
mod tests {
    use super::room;

    #[test]
    fn room_counts_the_backlog_and_what_the_node_holds_already() {
        // Nothing unapplied: all eight fit under 32.
        assert_eq!(room(0, 100, 100, 8, 32), 8);
        // 30 unapplied: two of eight fit.
        assert_eq!(room(30, 100, 100, 8, 32), 2);
        // Full: none fit.
        assert_eq!(room(32, 100, 100, 8, 32), 0);
        assert_eq!(room(40, 100, 100, 8, 32), 0);
        // A resend of entries 96..104 to a node whose log ends at 100: four are held
        // already and take no room.
        assert_eq!(room(32, 100, 96, 8, 32), 4);
        assert_eq!(room(31, 100, 96, 8, 32), 5);
        // Entries wholly held: all "fit".
        assert_eq!(room(50, 100, 90, 8, 32), 8);
    }
}
