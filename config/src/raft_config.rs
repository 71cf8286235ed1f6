//! `[raft]`: timing and log compaction of the replication layer.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Leader heartbeat period. openraft 0.9 also makes it the deadline of every
/// AppendEntries, catch-up batches included (hard-coded), so it must leave room for a
/// batch of entries and the follower's fsync under load: at 50 ms a fresh node could not
/// catch up on a ledger of 300,000 entries (every batch timed out), and replication timed
/// out on a loaded machine. Ten small RPCs per second per follower.
pub const HEARTBEAT_INTERVAL_MS_DEFAULT: u64 = 100;
/// Below 10 ms heartbeats approach OS timer granularity and scheduler jitter on a busy
/// machine, so a follower would time out on noise rather than on a dead leader.
pub const HEARTBEAT_INTERVAL_MS_FLOOR: u64 = 10;
/// Above 10 s a crashed leader goes unnoticed for far too long; nobody wants this.
pub const HEARTBEAT_INTERVAL_MS_CEILING: u64 = 10_000;

/// Lower bound of the randomized election timeout: two and a half heartbeats, and a
/// follower that heard a leader waits the lease (`election_timeout_max_ms`) on top, so it
/// sees at least six heartbeats go missing before it campaigns.
///
/// openraft 0.9 makes a follower that has heard from a leader wait the leader's lease
/// (`election_timeout_max_ms`) *plus* its own election timeout before it campaigns, and
/// adds 2 x `election_timeout_max_ms` more while it remembers a vote refused for a longer
/// log; the service campaigns on the schedule without that lingering penalty (see
/// `docket_service`'s `elections`). With these defaults a dead leader is replaced after
/// 700–900 ms of silence: measured on loopback (`docket bench --mode failover`, 30 kills)
/// the first write after a leader SIGKILL landed at a median of 799 ms and at most
/// 1,740 ms (one split vote). Before the service's trigger: median 1.5 s, max 1.6 s; with
/// the former 400–800 ms defaults, about 3 s.
pub const ELECTION_TIMEOUT_MIN_MS_DEFAULT: u64 = 250;
/// Upper bound of the randomized election timeout (and openraft's leader lease). A
/// 200 ms spread keeps split votes rare (none in the failover benchmark's kills).
pub const ELECTION_TIMEOUT_MAX_MS_DEFAULT: u64 = 450;
/// `election_timeout_min_ms` must exceed this many heartbeats: with fewer, one delayed or
/// dropped heartbeat is enough to depose a healthy leader.
pub const ELECTION_TIMEOUT_HEARTBEATS_MIN: u64 = 2;
/// Ceiling on both election timeout bounds: a minute without a leader is an outage.
pub const ELECTION_TIMEOUT_MS_CEILING: u64 = 60_000;

/// Deadline of every Raft RPC. One second is far above loopback or LAN round trips plus an
/// fsync, and short enough that a dead peer does not hold up replication for long.
pub const RPC_TIMEOUT_MS_DEFAULT: u64 = 1_000;
/// A minute-long RPC deadline would leave requests hanging on dead peers.
pub const RPC_TIMEOUT_MS_CEILING: u64 = 60_000;

/// Build a snapshot after this many applied entries: bounds the log a restarting node
/// replays and the disk the log takes, without snapshotting constantly.
pub const SNAPSHOT_LOGS_SINCE_LAST_DEFAULT: u64 = 10_000;
/// Beyond ten million entries between snapshots a restart replays for minutes.
pub const SNAPSHOT_LOGS_SINCE_LAST_CEILING: u64 = 10_000_000;

/// Entries already covered by a snapshot that are kept anyway, so a follower lagging by a
/// little catches up from the log instead of receiving a whole snapshot.
pub const MAX_IN_SNAPSHOT_LOG_TO_KEEP_DEFAULT: u64 = 1_000;
/// Keeping more than a million snapshotted entries defeats the point of compaction.
pub const MAX_IN_SNAPSHOT_LOG_TO_KEEP_CEILING: u64 = 1_000_000;

/// The most recent Raft log kept, in MiB, whether or not a snapshot covers it, so a node
/// that was down catches up from the log instead of being sent the whole ledger. A
/// snapshot of a docket ledger is the ledger from genesis, replayed by the receiver at
/// ~40,000 entries/s; the log is the entries it missed. Counted in bytes, not entries: an
/// entry is one proposal under small writes and a group commit of a hundred under
/// batches, so a count of entries is seconds of history under one load and gigabytes
/// under the other. 256 MiB is ~500,000 small proposals (minutes of writes at one
/// client) or ~80 s of batched writes at full speed on a 2-core machine, and a few
/// percent of the disk of a ledger of millions of entries.
pub const LOG_KEEP_MB_DEFAULT: u64 = 256;
/// A terabyte of log is no longer a log to catch up from.
pub const LOG_KEEP_MB_CEILING: u64 = 1024 * 1024;

/// Raft log entries a follower may hold appended and not yet applied before it holds back
/// a leader's appends (`docket_raft::pacing`): bounds what a catching-up node keeps in
/// memory (an entry is one group commit, up to a few thousand proposals) while leaving its
/// state machine work queued: four of the node's appends of eight entries.
pub const APPLY_BACKLOG_MAX_DEFAULT: u64 = 32;
/// Beyond this the bound no longer bounds memory usefully.
pub const APPLY_BACKLOG_MAX_CEILING: u64 = 100_000;

// The defaults must satisfy the rules `NodeConfig::validate` enforces.
const _: () = assert!(HEARTBEAT_INTERVAL_MS_DEFAULT >= HEARTBEAT_INTERVAL_MS_FLOOR);
const _: () = assert!(HEARTBEAT_INTERVAL_MS_DEFAULT <= HEARTBEAT_INTERVAL_MS_CEILING);
const _: () = assert!(
    ELECTION_TIMEOUT_MIN_MS_DEFAULT
        > ELECTION_TIMEOUT_HEARTBEATS_MIN * HEARTBEAT_INTERVAL_MS_DEFAULT
);
const _: () = assert!(ELECTION_TIMEOUT_MAX_MS_DEFAULT > ELECTION_TIMEOUT_MIN_MS_DEFAULT);
const _: () = assert!(ELECTION_TIMEOUT_MAX_MS_DEFAULT <= ELECTION_TIMEOUT_MS_CEILING);
const _: () = assert!(RPC_TIMEOUT_MS_DEFAULT >= HEARTBEAT_INTERVAL_MS_DEFAULT);
const _: () = assert!(RPC_TIMEOUT_MS_DEFAULT <= RPC_TIMEOUT_MS_CEILING);
// The ceilings must leave room for a valid configuration.
const _: () = assert!(
    ELECTION_TIMEOUT_MS_CEILING > ELECTION_TIMEOUT_HEARTBEATS_MIN * HEARTBEAT_INTERVAL_MS_CEILING
);
const _: () = assert!(RPC_TIMEOUT_MS_CEILING >= HEARTBEAT_INTERVAL_MS_CEILING);

/// `[raft]` section: timing and log compaction of the replication layer. Node-local: none
/// of this changes what the state machine outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaftConfig {
    /// Leader heartbeat period, in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// Lower bound of the randomized election timeout, in milliseconds.
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomized election timeout, in milliseconds.
    pub election_timeout_max_ms: u64,
    /// Deadline of every Raft RPC, in milliseconds.
    pub rpc_timeout_ms: u64,
    /// Build a snapshot after this many applied log entries.
    pub snapshot_logs_since_last: u64,
    /// Log entries covered by a snapshot that are kept for lagging followers.
    pub max_in_snapshot_log_to_keep: u64,
    /// The most recent log kept for nodes that were down, in MiB (whichever of this and
    /// `max_in_snapshot_log_to_keep` keeps more).
    pub log_keep_mb: u64,
    /// Log entries a follower holds appended and not applied before it paces appends.
    pub apply_backlog_max: u64,
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS_DEFAULT,
            election_timeout_min_ms: ELECTION_TIMEOUT_MIN_MS_DEFAULT,
            election_timeout_max_ms: ELECTION_TIMEOUT_MAX_MS_DEFAULT,
            rpc_timeout_ms: RPC_TIMEOUT_MS_DEFAULT,
            snapshot_logs_since_last: SNAPSHOT_LOGS_SINCE_LAST_DEFAULT,
            max_in_snapshot_log_to_keep: MAX_IN_SNAPSHOT_LOG_TO_KEEP_DEFAULT,
            log_keep_mb: LOG_KEEP_MB_DEFAULT,
            apply_backlog_max: APPLY_BACKLOG_MAX_DEFAULT,
        }
    }
}

impl RaftConfig {
    /// `heartbeat_interval_ms` as a [`Duration`].
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }

    /// `log_keep_mb` in bytes.
    pub fn log_keep_bytes(&self) -> u64 {
        self.log_keep_mb.saturating_mul(1024 * 1024)
    }

    /// `rpc_timeout_ms` as a [`Duration`].
    pub fn rpc_timeout(&self) -> Duration {
        Duration::from_millis(self.rpc_timeout_ms)
    }
}
