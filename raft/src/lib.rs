//! # docket-raft: replication of the governance core
//!
//! openraft (0.9.25, storage v2) drives a cluster; each node's state machine is the pure
//! core ([`docket_core::State`]). This crate is the part of a node below the network: the
//! Raft type configuration, the commands that enter the log, and a sled-backed log store
//! and state machine. The transport and the node binary live elsewhere.
//!
//! ```text
//!   client ──► leader stamps LedgerTime ──► Command in the Raft log (sled `log` tree)
//!                                                │ committed
//!                                                ▼
//!        StateMachine::apply ── docket_core::State::{genesis, submit, tick}
//!                                                │ new LedgerEntry values
//!                                                ▼
//!           sled `ledger` tree + `merkle` tree nodes + `sm` applied record (in order)
//! ```
//!
//! ## Commands and determinism
//!
//! A [`Command`] carries everything apply needs, including the ledger time the leader
//! stamped when the command entered the log, so every replica records the same entries
//! with the same hashes. Apply reads no clock and no node-local configuration. Commands the
//! state machine cannot accept (a second genesis, a submission before genesis) get a
//! [`CommandResponse::Refused`], the same on every replica; an I/O failure while applying
//! panics instead, because a replica that stops beats one that silently diverges.
//!
//! ## What is on disk, and what is in memory
//!
//! One store per node (a `sled::Db` in production) holds the Raft log, the vote and other
//! metadata, every ledger entry, the RFC 9162 Merkle tree over the entry hashes
//! ([`merkle`]), the applied position, and the latest snapshot of the core state (layout
//! in [`store`]). In memory there is only the core [`State`](docket_core::State) (subjects,
//! proposal statuses, the deferred set: O(state), not O(ledger)). Ledger entries are read
//! back from sled when asked for, so a node with millions of entries does not hold them.
//!
//! The core state is persisted only when a snapshot is built (or installed). On start the
//! state machine restores that state (checking its hash) and replays, with trusted replay
//! (`State::apply`), the ledger entries stored after it, streaming them from sled. openraft
//! then re-applies committed Raft entries after the applied position.
//!
//! ## Durability
//!
//! Appends, votes, truncations and purges are acknowledged only after
//! [`Store::durable_flush`]: sled's flush plus an explicit `fsync` of sled's files, because
//! on Linux sled's own flush uses `sync_file_range`, which does not survive power loss. Its
//! doc comment states exactly what is and is not guaranteed. Applied state is not flushed on
//! each apply: it is derived from the Raft log, which is. The committed log id is written
//! but not flushed on its own, because a node that led restarts as a follower and so never
//! derives a read index from a committed id it read back ([`Store::save_committed`] says
//! why).
//!
//! ## Snapshots
//!
//! A snapshot is the whole ledger plus the core state bytes and their hash (format in
//! [`snapshot`]); a node that installs one ends with the identical ledger and state hash.
//! It lives in a spill file ([`SnapshotFile`], openraft's `SnapshotData` here), never whole
//! in memory: the builder writes the ledger into it page by page, and the receiver reads
//! it back entry by entry, verifying the hash chain and replaying as it reads, staging
//! the verified entries apart from the ledger, and switching the store over only after
//! the state hash and the shipped state checked out.
//!
//! ## Seams for the simulator
//!
//! `sim/` runs this crate unchanged under turmoil, swapping only what is below it:
//!
//! * **Disk.** [`Store`] runs over a [`Disk`]: sled ([`open`], every sled call is in
//!   `disk/sled_disk.rs`) or any other implementation ([`open_on`]). The simulator's
//!   (`docket-sim`'s `SimDisk`, over `docket-simstore`'s pending/durable model) loses writes
//!   not yet durably flushed when it crashes; this crate holds no simulator model.
//! * **Randomness.** openraft's only random draw (the election timeout) goes through
//!   [`runtime::DocketRuntime`], which the simulator seeds per host.
//! * **Network.** [`network`] is generic over a [`network::Transport`]; the simulator
//!   supplies turmoil's TCP and feeds accepted streams to [`network::serve_connection`].
//!
//! Time arrives inside commands, and snapshot ids are derived from log ids, so nothing
//! else here reads a clock or a random number.
//!
//! ## Known limits (FIXME)
//!
//! * A snapshot ships the whole ledger from genesis, even to a node that has a prefix of
//!   it, and its state section is the whole `State::to_snapshot()` held in memory.
//! * Serving the current snapshot (and openraft's start-up check of it) re-reads and
//!   re-verifies the ledger from disk into a new spill file: O(ledger) time per call
//!   (bounded memory).

pub mod codec;
pub mod command;
pub mod disk;
pub mod log_store;
pub mod merkle;
pub mod network;
pub mod pacing;
pub mod runtime;
pub mod seed;
pub mod snapshot;
pub mod snapshot_file;
pub mod state_machine;
pub mod store;
pub mod telemetry;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use command::{Command, CommandError, CommandResponse, IndexRange, Outcome, ProposalOutcome};
pub use disk::{detect_engine, Disk, DiskMemory, StorageEngine};
pub use log_store::LogStore;
pub use merkle::{LedgerTree, TreeError, TreeHead};
pub use snapshot::SnapshotBuilder;
pub use snapshot_file::SnapshotFile;
pub use state_machine::{
    Boundary, MapFold, Replica, RowProof, StateMachine, FOLDS_QUEUED_MAX, RECENT_ANCHORS_MAX,
    RECENT_BOUNDARIES_MAX,
};
pub use store::{Store, StoreError, StoreOptions, STORAGE_ENGINE_DEFAULT};

/// Addresses of a cluster member, as stored in Raft membership.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct NodeAddr {
    /// Where peers send Raft RPCs (`host:port`).
    pub raft_addr: String,
    /// Where clients reach the HTTP API (`host:port`).
    pub api_addr: String,
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "raft={} api={}", self.raft_addr, self.api_addr)
    }
}

openraft::declare_raft_types!(
    /// docket's Raft type configuration.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = u64,
        Node = NodeAddr,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = snapshot_file::SnapshotFile,
        AsyncRuntime = runtime::DocketRuntime,
);

pub type NodeId = u64;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StoredMembership = openraft::StoredMembership<NodeId, NodeAddr>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, NodeAddr>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type Raft = openraft::Raft<TypeConfig>;

/// Whether node `id`, by its own metrics, leads without being a voter of the last
/// configuration of its (joint) membership: a change removing it was cut short by a
/// leadership change. A membership change proposed there would leave a leader outside its
/// own configuration, about which openraft 0.9.25 is inconsistent (openraft#923; its
/// `append_membership` asserts that only a member leads). The node's API and the
/// simulator's refuse membership changes in that state, except the one that completes the
/// interrupted removal (found by the simulator, seed 54).
pub fn leads_outside_target_config(
    metrics: &openraft::RaftMetrics<NodeId, NodeAddr>,
    id: NodeId,
) -> bool {
    metrics.state == openraft::ServerState::Leader
        && metrics
            .membership_config
            .membership()
            .get_joint_config()
            .last()
            .is_some_and(|config| !config.contains(&id))
}

/// Opens a node's storage in `dir` with default options: the log store and the state
/// machine (rebuilt from disk) to hand to `openraft::Raft::new`.
pub fn open(dir: &Path) -> Result<(LogStore, StateMachine), StoreError> {
    open_with(dir, &StoreOptions::default())
}

pub fn open_with(
    dir: &Path,
    options: &StoreOptions,
) -> Result<(LogStore, StateMachine), StoreError> {
    open_store(Store::open(dir, options)?, options.map_fold)
}

/// Opens node `node_id`'s storage on `disk` (the simulator's disk model, for one): the
/// log store and the state machine, rebuilt from what the disk recovered.
pub fn open_on(disk: impl Disk, node_id: NodeId) -> Result<(LogStore, StateMachine), StoreError> {
    open_store(Store::open_on_for(disk, node_id)?, MapFold::Inline)
}

fn open_store(store: Store, fold: MapFold) -> Result<(LogStore, StateMachine), StoreError> {
    let store = Arc::new(store);
    let state_machine = StateMachine::open_folding(store.clone(), fold)?;
    Ok((LogStore::new(store), state_machine))
}
