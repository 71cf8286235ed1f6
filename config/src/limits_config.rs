//! `[limits]`: bounds on what one node accepts from clients.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::raft_config::ELECTION_TIMEOUT_MAX_MS_DEFAULT;

const MIB: usize = 1024 * 1024;

/// HTTP request body cap. 1 MiB holds a batch of a thousand typical signed proposals.
pub const REQUEST_BODY_BYTES_MAX_DEFAULT: usize = MIB;
/// A body is held in memory whole and a batch becomes one log entry that every follower
/// must receive before the leader can move on; entries beyond 64 MiB stall heartbeats
/// queued behind them and make elections spurious.
pub const REQUEST_BODY_BYTES_MAX_CEILING: usize = 64 * MIB;

/// Proposals per batch (one log entry). A thousand amortizes the consensus round trip
/// well past the point of diminishing returns.
pub const BATCH_PROPOSALS_MAX_DEFAULT: usize = 1_000;
/// A batch is adjudicated in one apply step that holds the state machine; ten thousand
/// proposals keep that step in the milliseconds.
pub const BATCH_PROPOSALS_MAX_CEILING: usize = 10_000;

/// How long a follower waits for the leader to answer a forwarded request. Five seconds
/// outlasts an election (see the assertion below), so a forward made during failover
/// reaches the new leader instead of failing.
pub const FORWARD_TIMEOUT_MS_DEFAULT: u64 = 5_000;
/// A client waiting longer than a minute has long given up.
pub const FORWARD_TIMEOUT_MS_CEILING: u64 = 60_000;

/// How long `member add` / `member promote` wait for a new member to catch up before they
/// answer `TIMEOUT` (the leader still makes it a voter once it has caught up, as the
/// recorded request asks). A minute covers a fresh node catching up on a large ledger by
/// snapshot on this hardware.
pub const CATCH_UP_TIMEOUT_MS_DEFAULT: u64 = 60_000;
/// An hour: past it an operator is better told and left to look.
pub const CATCH_UP_TIMEOUT_MS_CEILING: u64 = 3_600_000;

/// Entries per ledger page. A thousand entries is a response of a few hundred KiB.
pub const READ_PAGE_ENTRIES_MAX_DEFAULT: usize = 1_000;
/// A page is read from disk and serialized in one go; beyond ten thousand entries one
/// reader monopolizes the node.
pub const READ_PAGE_ENTRIES_MAX_CEILING: usize = 10_000;

/// Concurrent API requests admitted before the node answers 503. Enough for the benchmark's
/// 64 clients many times over; bounds memory at this times `request_body_bytes_max`.
pub const CLIENTS_INFLIGHT_MAX_DEFAULT: usize = 1_024;
/// Beyond 65,536 admitted requests the node runs out of sockets or memory before it
/// sheds load.
pub const CLIENTS_INFLIGHT_MAX_CEILING: usize = 65_536;

// The defaults must satisfy the rules `NodeConfig::validate` enforces.
const _: () = assert!(REQUEST_BODY_BYTES_MAX_DEFAULT <= REQUEST_BODY_BYTES_MAX_CEILING);
const _: () = assert!(BATCH_PROPOSALS_MAX_DEFAULT <= BATCH_PROPOSALS_MAX_CEILING);
const _: () = assert!(FORWARD_TIMEOUT_MS_DEFAULT <= FORWARD_TIMEOUT_MS_CEILING);
const _: () = assert!(CATCH_UP_TIMEOUT_MS_DEFAULT <= CATCH_UP_TIMEOUT_MS_CEILING);
const _: () = assert!(READ_PAGE_ENTRIES_MAX_DEFAULT <= READ_PAGE_ENTRIES_MAX_CEILING);
const _: () = assert!(CLIENTS_INFLIGHT_MAX_DEFAULT <= CLIENTS_INFLIGHT_MAX_CEILING);
// A forward issued just as the leader dies must survive the election that follows.
const _: () = assert!(FORWARD_TIMEOUT_MS_DEFAULT > 2 * ELECTION_TIMEOUT_MAX_MS_DEFAULT);

/// `[limits]` section: bounds on what one node accepts from clients. Every limit is at
/// least 1 and at most its `*_CEILING` constant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// HTTP request body cap, in bytes.
    pub request_body_bytes_max: usize,
    /// Proposals per batch (one log entry).
    pub batch_proposals_max: usize,
    /// Follower-to-leader forwarding deadline, in milliseconds.
    pub forward_timeout_ms: u64,
    /// Ledger entries per page.
    pub read_page_entries_max: usize,
    /// Concurrent API requests admitted before 503.
    pub clients_inflight_max: usize,
    /// How long a membership change waits for a new member to catch up, in milliseconds.
    pub catch_up_timeout_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            request_body_bytes_max: REQUEST_BODY_BYTES_MAX_DEFAULT,
            batch_proposals_max: BATCH_PROPOSALS_MAX_DEFAULT,
            forward_timeout_ms: FORWARD_TIMEOUT_MS_DEFAULT,
            read_page_entries_max: READ_PAGE_ENTRIES_MAX_DEFAULT,
            clients_inflight_max: CLIENTS_INFLIGHT_MAX_DEFAULT,
            catch_up_timeout_ms: CATCH_UP_TIMEOUT_MS_DEFAULT,
        }
    }
}

impl LimitsConfig {
    /// `forward_timeout_ms` as a [`Duration`].
    pub fn forward_timeout(&self) -> Duration {
        Duration::from_millis(self.forward_timeout_ms)
    }
}
