//! The typed storage of a node, behind [`Store`]: every read and write of the Raft log,
//! the vote, the ledger and the state machine's records goes through the methods below.
//!
//! [`LogStore`](crate::LogStore) and [`StateMachine`](crate::StateMachine) only call the
//! typed methods; neither names a disk type. Under them is a [`Disk`]: sled in production
//! ([`Store::open`]), or any other implementation ([`Store::open_on`]), such as the
//! simulator's disk model, which loses writes not yet made durable when it crashes.
//! [`Store::durable_flush`] is the point where writes become crash-proof.
//!
//! ## Layout
//!
//! One `sled::Db` per node, in its data directory, with these trees:
//!
//! | tree       | key                              | value                                     |
//! |------------|----------------------------------|-------------------------------------------|
//! | `log`      | Raft log index, big-endian `u64` | bincode `openraft::Entry<TypeConfig>`     |
//! | `meta`     | `vote`, `last_purged`, `committed` | bincode `Vote` / `LogId` / `LogId`      |
//! | `ledger`   | ledger index, big-endian `u64`   | `LedgerEntry::to_bytes()` (canonical)     |
//! | `sm`       | `applied`, `snapshot`, `install`, `state_gen` | bincode [`AppliedRecord`], [`SnapshotRecord`], [`InstallRecord`], generation `u64` |
//! | `sm`       | `0x00`, generation `u64` BE, row key | the state's rows ([`docket_core::rows`]: subjects, proposal statuses, deferred proposals) and its constitution record (`c`) |
//! | `sm`       | `state_meta`, generation `u64` BE | the state's head, counts and lattice (core's `m` record; apart from the rows, see [`STATE_META_PREFIX`]) |
//! | `sm_state` | (format 1: state snapshot chunks; emptied on open) | |
//! | `merkle`   | leaf count `end`, big-endian `u64` | hashes of the RFC 9162 nodes the append of leaf `end - 1` completed ([`crate::merkle`]) |
//! | `snap_stage` | ledger index, big-endian `u64` | canonical entry bytes of a snapshot install not yet switched over that replace entries of the ledger the store has |
//! | `map`      | `0x02`, node path key             | the state map's nodes (layout in `store/map.rs`) |
//!
//! Big-endian keys make byte order the numeric order, so ranges and `last()` work.
//! The state rows share `sm` with the `applied` record so that an apply's rows and its
//! commit point are one sled batch (atomic on recovery, no transaction across trees);
//! their `0x00` prefix sorts them before every record name, one key range apart. Rows
//! live in **generations**: the state machine reads and writes the current one
//! (`state_gen`); a snapshot install builds the next beside it and switches at its switch
//! point, so a node serves its old state until the new one is complete and verified.
//!
//! ## What is atomic
//!
//! Every write below is one [`WriteBatch`] (atomic on recovery, across trees: a sled
//! transaction when it spans several), except the two that only need order (written with
//! `apply_in_order`: a crash keeps a prefix of them):
//!
//! * A log append writes its entries in order; nothing is acknowledged before the durable
//!   flush that follows, and a torn append leaves a contiguous log.
//! * Applying commands writes the new ledger entries, then one Merkle tree record per
//!   entry (the nodes its hash completes, computed from the tree's right edge kept in
//!   memory: no reads), in order; then one batch with the state rows the apply changed
//!   and the `applied` record (which holds the ledger length, and so the tree's size).
//!   That batch is the commit point: a crash before it leaves entries at or past its
//!   `ledger_len`, which nothing reads and the same apply writes again (from the log),
//!   tree records past it (`end > ledger_len`), which open removes, and the rows as they
//!   were. Open also builds the tree from the ledger where it falls short (a store from
//!   before the tree), and checks its last leaf against the last entry.
//! * A snapshot record is one write; the snapshot's ledger is the store's own prefix and
//!   its state is not stored apart (the receiver replays the ledger).
//! * Migrating a format-1 store (a ledger, no `state_gen`) writes rows of generation 1 in
//!   pages, then one batch with the last rows, the snapshot record (with the format-2
//!   state hash) and `state_gen`. A crash before that batch leaves generation-1 rows that
//!   open removes; the migration then starts over.
//! * Installing a snapshot is staged, then switched over. While the snapshot is read and
//!   verified ([`crate::snapshot`]), each verified entry past the ledger the store has is
//!   written to `ledger` (nothing reads past the applied length), each within it that the store does not hold with the same bytes to
//!   `snap_stage` (batches of [`STAGE_BATCH_BYTES`]); and the replay of the snapshot
//!   writes its state rows to the next generation, in pages; nothing else is touched, so
//!   a refused or interrupted install leaves the node as it was (a refusal clears the
//!   stage, the ledger past its applied length and that generation; what a crash left
//!   there nothing reads, and open leaves it, so a node killed a million entries into an
//!   install opens at once: the next install clears the stage and the generation, writes
//!   over the ledger's leftovers or keeps those it receives again, and removes any past
//!   its length; applies write over the rest). Once every check passed: the last rows,
//!   then the `install` record in `sm` — the switch point — then the staged entries move
//!   into `ledger` (a page of [`STAGE_PAGE_ENTRIES`] per batch, each removed from the
//!   stage in the batch that copies it), ledger entries past the new length go, the Merkle tree is brought to the
//!   new ledger (keeping the nodes of the prefix this store had when its last leaf is the
//!   installed entry's hash, else rebuilding from the ledger, in atomic pages of
//!   [`MERKLE_BUILD_PAGE`] leaves), and one batch writes the `snapshot` and `applied`
//!   records and `state_gen` and removes `install`; the old generation's rows go last.
//!   Every step after the switch point can run again with the same result, and open runs
//!   them first when it finds an `install` record.
//! * Purging writes `last_purged` and deletes the entries in one batch; an older store
//!   that wrote them separately is finished on open. Readers never need the deleted entries.
//!
//! These rely on the disk recovering a prefix of the batches applied to it (a later batch
//! is never recovered without the earlier ones: sled's single LSN-ordered log; the
//! simulator's model by construction); each violation would be detected on open (a
//! missing ledger entry, a state that fails its hash) rather than silently accepted.

use std::fmt;
use std::io;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use docket_core::merkle::{leaf_hash, Frontier, Hash};
use docket_core::state::{Changes, KEY_META as KEY_STATE_META};
use docket_core::{EntryHash, LedgerEntry, StateHash};
use serde::{Deserialize, Serialize};

mod log_sizes;
mod map;

pub use self::map::{
    is_map_row, MapCommit, MapRecord, SealedAnchor, StoreMap, MAP_REBUILD_PAGE_ROWS,
};

use crate::codec;
use crate::disk::{
    engine, BoxedDisk, Disk, DiskMemory, StorageEngine, TreeName, Visit, WriteBatch,
};
use crate::merkle::{self, LedgerTree, TreeHead};
use crate::{Entry, LogId, SnapshotMeta, StoredMembership, Vote};

/// A write Raft's core waits for (a log append, with its write and flush times; the
/// committed index) at least this slow is logged. A leader's core sends nothing while one
/// is under way, and the default configuration's followers campaign after 700-900 ms of
/// silence; under a third of the least of that is worth an operator's look long before it
/// deposes anyone.
const RAFT_WRITE_SLOW: std::time::Duration = std::time::Duration::from_millis(200);

/// The most log indexes a purge deletes blind, without reading them ([`Store::log_purge`]):
/// a purge keeps `[raft] log_keep_mb` of log, so it deletes what was appended since the
/// last one, a few dozen entries under load; 65,536 deletions are ~1.5 MiB of batch.
const LOG_PURGE_BLIND_MAX: u64 = 65_536;

const KEY_VOTE: &[u8] = b"vote";
const KEY_LAST_PURGED: &[u8] = b"last_purged";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_APPLIED: &[u8] = b"applied";
const KEY_SNAPSHOT: &[u8] = b"snapshot";
const KEY_INSTALL: &[u8] = b"install";
const KEY_STATE_GEN: &[u8] = b"state_gen";

/// First byte of every state row key in `sm`: below every record name, so the rows are one
/// key range apart from the hot `applied` record.
const STATE_ROW_PREFIX: u8 = 0x00;

/// Prefix of the key (then the generation, `u64` big-endian) of the state's head, counts
/// and lattice record (core's `KEY_META`). It is rewritten by every apply and 2 KiB long,
/// so it lives among the small records, not among the rows: sled rewrites a whole leaf
/// when it consolidates one, and a hot record in a leaf of rows made every apply rewrite
/// that leaf (one-entry applies measured 64 µs there against 43 µs here).
const STATE_META_PREFIX: &[u8] = b"state_meta";

/// State rows removed per batch when a stale generation is cleared.
pub const STATE_CLEAR_PAGE_ROWS: usize = 4096;

/// Ledger entries read per page (and tree nodes written per batch) when the Merkle tree
/// is built from the ledger: on open of a store that lacks it, and on a snapshot install.
pub const MERKLE_BUILD_PAGE: u64 = 4096;

/// Verified snapshot entries written per batch (to the ledger past its applied length, or
/// the stage tree) while an install is received, in bytes: what the receiver holds of the
/// ledger at once, besides one entry.
pub const STAGE_BATCH_BYTES: usize = 64 * 1024;

/// Index keys per batch when staged entries move into the ledger (`finish_install`) or a
/// stage tree is cleared: bounds each batch by a page, not by the ledger.
pub const STAGE_PAGE_ENTRIES: u64 = 1024;

/// sled's page cache when the caller does not say (a node takes its `[storage] cache_mb`).
/// sled's default is 1 GiB per database; a node holds one database and the 2-core, 24 GiB
/// machines run three nodes plus clients, so keep it modest. The cache speeds reads of
/// the state's rows and of recent log and ledger entries; it holds nothing that is not on
/// disk.
pub const CACHE_CAPACITY_BYTES_DEFAULT: u64 = 128 * 1024 * 1024;

/// sled's background flusher period. It bounds how long a write that is not explicitly
/// flushed (an applied-state update) stays in sled's user-space buffer.
pub const FLUSH_EVERY_MS_DEFAULT: u64 = 500;

/// The engine a store opens when its options do not say (a node takes its
/// `[storage] engine`, whose default is the same).
pub const STORAGE_ENGINE_DEFAULT: StorageEngine = StorageEngine::Fjall;

/// How a [`Store`] opens its disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// Which production disk [`Store::open`] opens (the node's `[storage] engine`). A
    /// directory holding the other engine's store is refused
    /// ([`StoreError::EngineMismatch`]).
    pub engine: StorageEngine,
    /// sled's background flush-and-fsync period; `None` runs no background thread (what a
    /// deterministic simulation wants). Acknowledged writes never depend on it. fjall has
    /// no counterpart (it hands every batch to the OS as it commits).
    pub flush_every_ms: Option<u64>,
    /// sled's page cache; fjall's block cache and memtables together
    /// ([`crate::disk::FjallBudget`]).
    pub cache_capacity_bytes: u64,
    /// The node this store belongs to. With it, only a committed vote for this node
    /// itself (it led) is demoted on open (`Store::demote_vote`); a follower keeps its
    /// committed vote for another leader, so it restarts honouring that leader's lease
    /// instead of campaigning against a healthy leader. `None` demotes any committed vote.
    pub node_id: Option<crate::NodeId>,
    /// Where the state map's anchors are folded into its nodes
    /// ([`crate::state_machine::MapFold`]).
    pub map_fold: crate::state_machine::MapFold,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            engine: STORAGE_ENGINE_DEFAULT,
            flush_every_ms: Some(FLUSH_EVERY_MS_DEFAULT),
            cache_capacity_bytes: CACHE_CAPACITY_BYTES_DEFAULT,
            node_id: None,
            map_fold: crate::state_machine::MapFold::Inline,
        }
    }
}

/// A storage failure: the node cannot go on safely.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("fjall: {0}")]
    Fjall(#[from] fjall::Error),
    /// The data directory holds the other engine's store.
    #[error(
        "{} holds a {found} store, but this node is configured for {wanted}: set \
         [storage] engine = \"{found}\" (or DOCKET_STORAGE_ENGINE={found}) to open it, or \
         restore a backup into a new directory to move it to {wanted}",
        dir.display()
    )]
    EngineMismatch {
        dir: PathBuf,
        found: StorageEngine,
        wanted: StorageEngine,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("stored {what} does not decode: {source}")]
    Decode {
        what: &'static str,
        #[source]
        source: codec::Error,
    },
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: codec::Error,
    },
    #[error("storage is inconsistent: {0}")]
    Corrupt(String),
    /// A visitor ended a scan early (internal to the store; never returned by it).
    #[error("scan stopped early")]
    ScanStopped,
}

fn decode<T: serde::de::DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    codec::decode(bytes).map_err(|source| StoreError::Decode { what, source })
}

fn encode<T: Serialize + ?Sized>(what: &'static str, value: &T) -> Result<Vec<u8>, StoreError> {
    codec::encode(value).map_err(|source| StoreError::Encode { what, source })
}

/// Where the state machine stands. Written atomically with the ledger entries it counts.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct AppliedRecord {
    /// The last Raft log entry applied.
    pub last_applied: Option<LogId>,
    /// The last membership applied (it may be older than `last_applied`).
    pub last_membership: StoredMembership,
    /// Number of ledger entries: the ledger is `[0, ledger_len)`.
    pub ledger_len: u64,
}

/// The core-state part of a snapshot.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct CoreRecord {
    /// `State::hash` of the state at `ledger_len`.
    pub state_hash: StateHash,
    /// Hash of the ledger entry at `ledger_len - 1` (the state's head).
    pub head_hash: EntryHash,
    /// Bytes of a shipped state section: always 0 since snapshot format `dktsnap3`, which
    /// ships none (the receiver replays the ledger into its own rows). Kept so records
    /// written by format 1 still decode.
    pub state_bytes: u64,
}

/// The current snapshot: Raft's metadata, and where the core state stands in it. The ledger
/// part of a snapshot is not stored again: it is the prefix `[0, ledger_len)` of the ledger
/// tree, which only ever grows.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub meta: SnapshotMeta,
    pub ledger_len: u64,
    /// `None` while the ledger has no genesis (`ledger_len == 0`).
    pub core: Option<CoreRecord>,
    /// The generation of state rows ([`Store::state_generation`]) the node's state was in
    /// when the record was written; in an [`InstallRecord`], the generation the install
    /// switches to. (Format 1 stored the chunk generation of `sm_state` here.)
    pub generation: u64,
}

/// One node's storage. See the module docs for the layout.
pub struct Store {
    /// Where it lives, for logs: a directory, or the simulated disk's name.
    dir: PathBuf,
    disk: BoxedDisk,
    /// Serializes writers and readers of the snapshot record.
    snapshot_lock: Mutex<()>,
    /// The generation of state rows the state machine reads and writes
    /// ([`Store::state_generation`]); 0 while a format-1 store waits for its migration.
    state_gen: AtomicU64,
    /// The right edge of the Merkle tree on disk ([`Frontier`]: at most 64 hashes), at the
    /// size of the last committed apply. Appends use it instead of reading left siblings
    /// back from the disk, and the head of the tree is computed from it. Loaded from the
    /// disk whenever something other than [`Store::commit_apply`] writes the tree (open's
    /// recovery, a snapshot install: [`Store::reset_merkle_frontier`]), and replaced by
    /// `commit_apply` only once its write has gone through.
    frontier: Mutex<Frontier>,
    /// The state map's top levels, kept in memory ([`map::MapTop`]).
    map_top: std::sync::RwLock<map::MapTop>,
    /// Bytes of log by index: appended since open, and estimated for the log held at open
    /// ([`log_sizes::LogSizes`]).
    log_sizes: Mutex<log_sizes::LogSizes>,
    /// The committed log id [`Store::save_committed`] has yet to write, for its writer.
    committed: Mutex<WriteBehind<Option<LogId>>>,
    /// The log index below which [`Store::reclaim_log_below`]'s writer has yet to drop
    /// table files.
    reclaim: Mutex<WriteBehind<u64>>,
}

/// A value handed to a writer that runs behind its caller, on tokio's blocking pool
/// ([`Store::write_behind`]): the newest value handed over, whether it is yet to be
/// written, whether the writer runs, and the error its last write failed with.
#[derive(Debug)]
struct WriteBehind<T> {
    latest: Option<T>,
    dirty: bool,
    running: bool,
    failed: Option<String>,
}

impl<T> Default for WriteBehind<T> {
    fn default() -> Self {
        WriteBehind {
            latest: None,
            dirty: false,
            running: false,
            failed: None,
        }
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Log entries read at open to estimate the size of the log held then
/// ([`Store::seed_log_sizes`]).
const LOG_SIZE_PROBES: u64 = 16;

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn key_index(key: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("index key of {} bytes", key.len())))?;
    Ok(u64::from_be_bytes(bytes))
}

/// A format-1 `sm_state` key: chunk generation, then chunk number (tests of the migration).
#[cfg(test)]
fn chunk_key_format1(generation: u64, chunk: u32) -> Vec<u8> {
    [generation.to_be_bytes().as_slice(), &chunk.to_be_bytes()].concat()
}

/// The `sm` key prefix of the state rows of `generation`.
fn state_prefix(generation: u64) -> [u8; 9] {
    let mut prefix = [0u8; 9];
    prefix[0] = STATE_ROW_PREFIX;
    prefix[1..].copy_from_slice(&generation.to_be_bytes());
    prefix
}

/// The `sm` key of state row `key` of `generation` (the head record's is apart: see
/// [`STATE_META_PREFIX`]).
fn state_key(generation: u64, key: &[u8]) -> Vec<u8> {
    if key == KEY_STATE_META {
        return [STATE_META_PREFIX, &generation.to_be_bytes()].concat();
    }
    let mut out = Vec::with_capacity(9 + key.len());
    out.extend_from_slice(&state_prefix(generation));
    out.extend_from_slice(key);
    out
}

/// The first key after every key that starts with `prefix`, if there is one.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// `[lo, hi)` in index space for a pair of bounds, or `None` when empty.
fn index_span(start: Bound<u64>, end: Bound<u64>) -> Option<(u64, Option<u64>)> {
    let lo = match start {
        Bound::Included(s) => s,
        Bound::Excluded(s) => s.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let hi = match end {
        Bound::Included(e) => e.checked_add(1),
        Bound::Excluded(e) => Some(e),
        Bound::Unbounded => None,
    };
    match hi {
        Some(hi) if hi <= lo => None,
        _ => Some((lo, hi)),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks leaves nothing half-done in memory (the data they
    // guard is on disk or a cache of what is), so a poisoned lock is still usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Store {
    /// Opens (or creates) the database of `options.engine` in `dir` (refusing a directory
    /// that holds the other engine's: [`crate::disk::engine`]), makes its directory
    /// entries durable, and finishes whatever a crash interrupted (see the module docs).
    pub fn open(dir: &Path, options: &StoreOptions) -> Result<Store, StoreError> {
        Store::over(engine::open_disk(dir, options)?, options.node_id)
    }

    /// Opens the store on `disk` and finishes whatever a crash interrupted. The simulator
    /// opens its disk model this way: what a restarted simulated node finds is what was
    /// durably flushed before its last crash. Any committed vote is demoted on open (no
    /// [`StoreOptions::node_id`]).
    pub fn open_on(disk: impl Disk) -> Result<Store, StoreError> {
        Store::over(BoxedDisk::new(disk), None)
    }

    /// [`Store::open_on`] for node `node_id`: only its own committed vote is demoted, as
    /// [`StoreOptions::node_id`] does for sled.
    pub fn open_on_for(disk: impl Disk, node_id: crate::NodeId) -> Result<Store, StoreError> {
        Store::over(BoxedDisk::new(disk), Some(node_id))
    }

    fn over(disk: BoxedDisk, node_id: Option<crate::NodeId>) -> Result<Store, StoreError> {
        let store = Store {
            dir: disk.location(),
            disk,
            snapshot_lock: Mutex::new(()),
            state_gen: AtomicU64::new(0),
            frontier: Mutex::new(Frontier::new()),
            map_top: Default::default(),
            log_sizes: Default::default(),
            committed: Default::default(),
            reclaim: Default::default(),
        };
        store.recover()?;
        store.seed_log_sizes()?;
        store.map_top_load()?;
        store.demote_vote(node_id)?;
        // Makes the recovery (and, on sled, blobs an earlier run never synced) durable.
        store.durable_flush()?;
        Ok(store)
    }

    /// A node that led before it stopped starts again as a follower.
    ///
    /// openraft 0.9 restores a node whose persisted vote is committed and its own as
    /// leader at once, in its old term, with no new entry; its read index is then
    /// `max(committed, first entry of its term)`, so a committed log id lost in the crash
    /// would let it serve `ensure_linearizable` reads from before writes it had already
    /// acknowledged (found by the simulator, seed 10751; openraft#1511). Un-committing the
    /// vote (same term, same candidate) makes the restarted node win a new election
    /// instead, and a new leader's read index is an entry of its own term, which no
    /// acknowledged write is after. This is safe: a vote's order against any other
    /// candidate's vote is decided by the leader id alone (term, then node id), so the set
    /// of candidates the node may vote for is unchanged; and `committed(T, N)` cannot come
    /// back, since only N itself could send it. What changes is timing: openraft refuses
    /// votes while a *committed* vote's leader lease is live, so a restarted node may grant
    /// a candidate its vote sooner, and it reports no leader until the first heartbeat
    /// arrives (the API answers `NO_LEADER` meanwhile). docket serves no lease-based reads
    /// (every linearizable read runs a quorum round), so this costs availability in that
    /// window, not safety. It is also what lets [`Store::save_committed`] skip a flush on
    /// every commit.
    ///
    /// Only the node's own vote needs it: a follower's committed vote for another leader
    /// cannot make it lead, and keeping it committed keeps the restarted follower inside
    /// that leader's lease (openraft refuses to campaign while it holds), so a follower's
    /// restart does not depose a healthy leader. `own` is this node's id when known.
    fn demote_vote(&self, own: Option<crate::NodeId>) -> Result<(), StoreError> {
        if let Some(vote) = self.read_vote()? {
            let others = own.is_some_and(|own| vote.leader_id.voted_for() != Some(own));
            if vote.is_committed() && !others {
                let demoted = Vote {
                    leader_id: vote.leader_id,
                    committed: false,
                };
                tracing::info!(%vote, %demoted, "led before the restart: starting as a follower");
                let mut batch = WriteBatch::default();
                batch.insert(TreeName::Meta, KEY_VOTE, encode("vote", &demoted)?);
                self.disk.apply(batch)?;
            }
        }
        Ok(())
    }

    /// Runs `io` — writes ending in a durable flush — where its wait belongs: on a disk
    /// whose flush blocks ([`Disk::flush_blocks`]: sled), on tokio's blocking pool, because
    /// the flush waits for `fsync` and would otherwise hold one of the runtime's few worker
    /// threads (the API, the network and apply need them); on one whose flush does not (the
    /// simulated disk), inline, because its flush is a memory copy and a simulated host
    /// must stay on the simulation's one thread for runs to be reproducible.
    pub async fn blocking_io<T: Send + 'static>(
        self: &std::sync::Arc<Self>,
        io: impl FnOnce(&Store) -> T + Send + 'static,
    ) -> T {
        if !self.disk.flush_blocks() {
            return io(self);
        }
        let store = self.clone();
        match tokio::task::spawn_blocking(move || io(&store)).await {
            Ok(value) => value,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("blocking store I/O was cancelled: {e}"),
        }
    }

    /// The data directory, or for a simulated disk a pseudo path naming it.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes the store's files take on disk, where the disk can say cheaply (sled: its
    /// `db` file and blob files). For metrics.
    pub fn size_bytes(&self) -> Option<u64> {
        self.disk.size_bytes()
    }

    /// The store's caches and write buffers in memory, where the disk counts them
    /// (fjall). For metrics.
    pub fn memory(&self) -> Option<DiskMemory> {
        self.disk.memory()
    }

    /// Makes every write that completed before this call durable, then returns. On sled
    /// this is `SledDisk`'s [`Disk::durable_flush`], whose docs say exactly what is
    /// guaranteed.
    pub fn durable_flush(&self) -> Result<(), StoreError> {
        // Measured for the metrics only; nothing here decides on the time.
        let started = std::time::Instant::now();
        let flushed = self.disk.durable_flush();
        metrics::histogram!(crate::telemetry::STORAGE_FLUSH_DURATION_SECONDS)
            .record(started.elapsed().as_secs_f64());
        flushed
    }

    /// Completes what a crash may have interrupted. See "What is atomic" in the module docs.
    fn recover(&self) -> Result<(), StoreError> {
        // A purge is one atomic batch today; a store written when it was not may hold the
        // purged entries' last ones still (they were removed in index order). Looked up by
        // the last purged index, not scanned from 0, which would read every deleted entry
        // compaction has not dropped yet (see `log_purge`).
        if let Some(purged) = self.last_purged()? {
            if self
                .disk
                .get(TreeName::Log, &index_key(purged.index))?
                .is_some()
            {
                let removed = self.remove_range(TreeName::Log, 0, Some(purged.index + 1))?;
                tracing::info!(
                    removed,
                    upto = purged.index,
                    "finished an interrupted log purge"
                );
            }
        }
        // A snapshot install that reached its switch point is carried out before anything
        // below reads the applied record. One that did not leaves staged entries, entries
        // past the applied ledger and rows of a generation no record points at: all of
        // them unread, so open leaves them where they are rather than spend O(what was
        // received) before the node can serve (a node killed a million entries into an
        // install took over 20 s to open when open removed them). Applies overwrite the
        // ledger's, and the next install clears the rest (`Store::begin_install`).
        if let Some(install) = self.install_record()? {
            tracing::warn!(
                snapshot_id = %install.snapshot.meta.snapshot_id,
                ledger_len = install.applied.ledger_len,
                "finishing a snapshot install interrupted after its switch point"
            );
            self.finish_install(&install, None)?;
        }
        let applied = self.read_applied()?.unwrap_or_default();
        let past = self
            .disk
            .get(TreeName::Ledger, &index_key(applied.ledger_len))?
            .is_some();
        let staged = self.disk.last(TreeName::Stage)?.is_some();
        if past || staged {
            tracing::warn!(
                ledger_len = applied.ledger_len,
                past,
                staged,
                "left over from an apply or snapshot install interrupted by a crash: unread; \
                 overwritten as the ledger grows and cleared by the next install"
            );
        }
        self.recover_merkle(applied.ledger_len)?;
        let generation = match self.disk.get(TreeName::Sm, KEY_STATE_GEN)? {
            Some(value) => decode("state generation", &value)?,
            // A new store starts its rows at generation 1; a format-1 store (a ledger but
            // no rows yet) stays at 0 until the state machine migrates it.
            None if applied.ledger_len == 0 => {
                let mut batch = WriteBatch::default();
                batch.insert(
                    TreeName::Sm,
                    KEY_STATE_GEN,
                    encode("state generation", &1u64)?,
                );
                self.disk.apply(batch)?;
                1
            }
            None => 0,
        };
        self.state_gen.store(generation, Ordering::SeqCst);
        // A format-1 store migrates into generation 1 and must find it empty; any other
        // generation's rows are unread and cleared by the next install (see above).
        if generation == 0 {
            let stale = self.remove_state_rows_except(generation)?;
            if stale > 0 {
                tracing::info!(stale, "removed state rows of an unfinished migration");
            }
        }
        let chunks = self.remove_format1_chunks()?;
        if chunks > 0 {
            tracing::info!(chunks, "removed format-1 state snapshot chunks");
        }
        Ok(())
    }

    /// Calls `f` with every key and value of an index-keyed tree in `[lo, hi)`.
    fn for_each_index(
        &self,
        tree: TreeName,
        lo: u64,
        hi: Option<u64>,
        f: &mut Visit<'_>,
    ) -> Result<(), StoreError> {
        let hi = hi.map(index_key);
        self.disk
            .for_each(tree, &index_key(lo), hi.as_ref().map(|h| &h[..]), f)
    }

    /// Adds removals of keys `[lo, hi)` of an index-keyed tree to `batch`; returns how many.
    fn remove_range_into(
        &self,
        batch: &mut WriteBatch,
        tree: TreeName,
        lo: u64,
        hi: Option<u64>,
    ) -> Result<u64, StoreError> {
        let mut count = 0u64;
        self.for_each_index(tree, lo, hi, &mut |key, _| {
            batch.remove(tree, key);
            count += 1;
            Ok(())
        })?;
        Ok(count)
    }

    /// Removes keys `[lo, hi)` of an index-keyed tree; returns how many there were.
    fn remove_range(&self, tree: TreeName, lo: u64, hi: Option<u64>) -> Result<u64, StoreError> {
        let mut batch = WriteBatch::default();
        let count = self.remove_range_into(&mut batch, tree, lo, hi)?;
        self.disk.apply(batch)?;
        Ok(count)
    }

    // ---------------------------------------------------------------------------------
    // Raft log and metadata

    /// Log entries with indexes in the given bounds, in order (absent ones are skipped).
    pub fn log_entries(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<Vec<Entry>, StoreError> {
        let Some((lo, hi)) = index_span(start, end) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        self.for_each_index(TreeName::Log, lo, hi, &mut |_, value| {
            out.push(decode("log entry", value)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Log id of the entry at `index`, if the log holds it: only the id is decoded (it
    /// leads the entry's bytes), not the entry's payload of up to a group commit.
    pub fn log_id_at(&self, index: u64) -> Result<Option<LogId>, StoreError> {
        let Some(bytes) = self.disk.get(TreeName::Log, &index_key(index))? else {
            return Ok(None);
        };
        codec::decode_prefix(&mut &bytes[..])
            .map(Some)
            .map_err(|source| StoreError::Decode {
                what: "log id of a log entry",
                source,
            })
    }

    /// Log id of the last entry present in the log, if any.
    pub fn log_last_id(&self) -> Result<Option<LogId>, StoreError> {
        match self.disk.last(TreeName::Log)? {
            Some((_, value)) => Ok(Some(decode::<Entry>("log entry", &value)?.log_id)),
            None => Ok(None),
        }
    }

    /// Appends entries (overwriting any at the same indexes) and makes them durable.
    pub fn log_append(&self, entries: impl IntoIterator<Item = Entry>) -> Result<(), StoreError> {
        // Measured for the metrics and the slow-append warning only.
        let started = std::time::Instant::now();
        let mut batch = WriteBatch::default();
        let mut sizes = Vec::new();
        for entry in entries {
            let bytes = encode("log entry", &entry)?;
            sizes.push((entry.log_id.index, bytes.len() as u64));
            batch.insert(TreeName::Log, index_key(entry.log_id.index), bytes);
        }
        let sizes_len = sizes.len();
        // In order, not atomically: nothing is acknowledged before the flush below, and a
        // torn append leaves a contiguous prefix of the entries, which Raft handles as an
        // append that never happened in full.
        self.disk.apply_in_order(batch)?;
        {
            let mut log_sizes = lock(&self.log_sizes);
            for (index, bytes) in sizes {
                log_sizes.appended(index, bytes);
            }
        }
        let took = self.flush_timed("log append", sizes_len as u64, started)?;
        metrics::histogram!(crate::telemetry::LOG_APPEND_DURATION_SECONDS)
            .record(took.as_secs_f64());
        Ok(())
    }

    /// [`Store::durable_flush`] ending a write Raft's core waits for, which began at
    /// `started`: warns with the write's and the flush's times when the whole took
    /// [`RAFT_WRITE_SLOW`] or more, and returns the whole.
    fn flush_timed(
        &self,
        what: &'static str,
        entries: u64,
        started: std::time::Instant,
    ) -> Result<std::time::Duration, StoreError> {
        let written = started.elapsed();
        self.durable_flush()?;
        let took = started.elapsed();
        if took >= RAFT_WRITE_SLOW {
            tracing::warn!(
                entries,
                write_ms = written.as_millis() as u64,
                flush_ms = (took - written).as_millis() as u64,
                "slow {what}: Raft waited for it (on a leader, heartbeats too)"
            );
        }
        Ok(took)
    }

    /// Deletes entries at `since` and after, durably.
    pub fn log_truncate(&self, since: u64) -> Result<(), StoreError> {
        self.remove_range(TreeName::Log, since, None)?;
        lock(&self.log_sizes).truncated(since);
        self.durable_flush()
    }

    /// The highest log index whose purge keeps at most `keep` bytes of the log, and as
    /// many under that as it can (to within a sampling gap: see [`log_sizes::LogSizes`];
    /// the log held at open is counted by an estimate, [`Store::seed_log_sizes`]); `None`
    /// while the whole log fits in `keep`.
    pub fn log_keep_floor(&self, keep: u64) -> Option<u64> {
        lock(&self.log_sizes).keep_floor(keep)
    }

    /// Bytes of log past `index` (to within a sampling gap; estimated for the log held at
    /// open).
    pub fn log_bytes_after(&self, index: u64) -> u64 {
        lock(&self.log_sizes).bytes_after(index)
    }

    /// Counts the log this store holds at open by an estimate: its entries times the mean
    /// encoded size of [`LOG_SIZE_PROBES`] of them, spread over it. O(1) reads, so a
    /// restart does not read the log; a log of entries of very different sizes (small
    /// writes, then batches) is estimated only as well as the probes land.
    fn seed_log_sizes(&self) -> Result<(), StoreError> {
        let first = self.last_purged()?.map_or(0, |purged| purged.index + 1);
        let Some(last) = self.log_last_id()?.map(|id| id.index) else {
            return Ok(());
        };
        if last < first {
            return Ok(());
        }
        let count = last - first + 1;
        let probes = count.min(LOG_SIZE_PROBES);
        let (mut bytes, mut seen) = (0u64, 0u64);
        for probe in 0..probes {
            let index = first + probe * count / probes;
            if let Some(value) = self.disk.get(TreeName::Log, &index_key(index))? {
                bytes += value.len() as u64;
                seen += 1;
            }
        }
        if let Some(mean) = bytes.checked_div(seen) {
            lock(&self.log_sizes).seed(first, last, mean);
        }
        Ok(())
    }

    /// Records `upto` as purged and deletes entries up to and including it, in one batch,
    /// durably.
    ///
    /// Only the entries after the last purge are touched: each purge is one atomic batch,
    /// so nothing at or below the last purged index is left. On an LSM the entries a purge
    /// deleted stay in table files until compaction drops them, behind the deletions; a
    /// scan from index 0 reads every one of them (on the growth benchmark at 3.4M
    /// proposals, 914 MiB of log keyspace for 256 MiB of live log), and openraft 0.9 waits
    /// for a purge on its core's task: every node purges at about the same log length, so
    /// all three cores went quiet for most of a second and elections followed. After the
    /// first purge the deletions are written blind, one per index up to
    /// [`LOG_PURGE_BLIND_MAX`] of them, without reading the entries; a longer stretch (a
    /// purge past a snapshot far ahead of the log) is scanned from the last purge on.
    pub fn log_purge(&self, upto: LogId) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let last_purged = self.last_purged()?;
        let from = last_purged.map_or(0, |purged| purged.index + 1);
        let end = upto.index.checked_add(1);
        let mut batch = WriteBatch::default();
        batch.insert(
            TreeName::Meta,
            KEY_LAST_PURGED,
            encode("last purged log id", &upto)?,
        );
        let span = end.map(|end| end.saturating_sub(from));
        match span {
            Some(span) if last_purged.is_some() && span <= LOG_PURGE_BLIND_MAX => {
                for index in from..from + span {
                    batch.remove(TreeName::Log, index_key(index));
                }
            }
            _ => {
                self.remove_range_into(&mut batch, TreeName::Log, from, end)?;
            }
        }
        self.disk.apply(batch)?;
        lock(&self.log_sizes).purged(upto.index);
        self.flush_timed("log purge", span.unwrap_or(u64::MAX), started)?;
        Ok(())
    }

    /// Has the table files that hold only log entries below `below` dropped, behind the
    /// caller ([`Store::write_behind`]: the drop waits for the log keyspace's running
    /// compactions, and openraft 0.9 waits for a purge on its core's task). Call it once
    /// the entries below `below` are purged, durably.
    ///
    /// Why: a purge deletes its entries with tombstones, and on fjall the entries stay in
    /// table files until compaction meets them with their tombstones in the last level.
    /// The log's keys only grow, so its tables mostly move down whole and rarely meet: on
    /// the growth benchmark the log keyspace held 1,027 MiB at 3.6M proposals for the
    /// 256 MiB of log kept (`[raft] log_keep_mb`). Tables wholly below the purge point hold
    /// nothing live, so they go without a rewrite.
    pub fn reclaim_log_below(self: &std::sync::Arc<Self>, below: u64) -> Result<(), StoreError> {
        self.write_behind(
            |store| &store.reclaim,
            |store, below| {
                let started = std::time::Instant::now();
                store
                    .disk
                    .drop_removed_below(TreeName::Log, &index_key(below))?;
                tracing::debug!(
                    below,
                    took_ms = started.elapsed().as_millis() as u64,
                    "dropped the log's purged table files"
                );
                Ok(())
            },
            "the log's purged table files",
            below,
        )
    }

    pub fn last_purged(&self) -> Result<Option<LogId>, StoreError> {
        self.meta_get("last purged log id", KEY_LAST_PURGED)
    }

    pub fn save_vote(&self, vote: &Vote) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.insert(TreeName::Meta, KEY_VOTE, encode("vote", vote)?);
        self.disk.apply(batch)?;
        self.durable_flush()
    }

    pub fn read_vote(&self) -> Result<Option<Vote>, StoreError> {
        self.meta_get("vote", KEY_VOTE)
    }

    /// Records the committed log id; written soon after, durable with a later flush.
    ///
    /// openraft reads it back at start to apply what is known committed without waiting
    /// for a leader. Losing the latest value in a crash only delays that: a follower
    /// learns the commit index from its leader, and a node that led starts as a follower
    /// (`Store::demote_vote`), so no restarted leader derives a read index from it.
    /// (Until that demotion this was flushed on every commit advance, one fsync per
    /// commit; the simulator's seed 10751 is the regression test for both.)
    ///
    /// openraft 0.9 calls this on its core's own task and waits for it, once per commit
    /// advance. A write to the store can wait behind its journal (a flush worker holds
    /// fjall's journal lock across a `SyncAll` on every memtable flush), and while the core
    /// waits the leader sends no heartbeat. So on a disk whose writes block
    /// ([`Disk::flush_blocks`]) the value goes to one writer on tokio's blocking pool, which
    /// writes the newest value handed to it each time it is done with the last (a later
    /// commit replaces an older one not yet written); values never go backwards, and at
    /// most one such write is in flight. A write that fails is returned by the next call,
    /// so openraft stops as it did when the write was its own. On the simulated disk, and
    /// outside a tokio runtime, the write is made here.
    pub fn save_committed(
        self: &std::sync::Arc<Self>,
        committed: Option<LogId>,
    ) -> Result<(), StoreError> {
        self.write_behind(
            |store| &store.committed,
            Store::write_committed,
            "the committed log id",
            committed,
        )
    }

    /// Hands `value` to the writer behind `slot`, which calls `write` with the newest value
    /// handed to it each time it is done with the last (a later value replaces an older one
    /// not yet written; values are never written out of order, and one write at most is in
    /// flight). The writer runs on tokio's blocking pool, started here when none runs. A
    /// write that failed is returned by the next call and stops the writer. On a disk whose
    /// writes do not block ([`Disk::flush_blocks`]: the simulated one) and outside a tokio
    /// runtime, `write` runs here.
    fn write_behind<T: Copy + Send + 'static>(
        self: &std::sync::Arc<Self>,
        slot: fn(&Store) -> &Mutex<WriteBehind<T>>,
        write: fn(&Store, T) -> Result<(), StoreError>,
        what: &'static str,
        value: T,
    ) -> Result<(), StoreError> {
        let runtime = match tokio::runtime::Handle::try_current() {
            Ok(runtime) if self.disk.flush_blocks() => runtime,
            _ => return write(self, value),
        };
        let mut writer = lock(slot(self));
        if let Some(error) = writer.failed.clone() {
            return Err(StoreError::Io {
                context: format!("write {what}"),
                source: io::Error::other(error),
            });
        }
        writer.latest = Some(value);
        writer.dirty = true;
        if writer.running {
            return Ok(());
        }
        writer.running = true;
        drop(writer);
        let store = self.clone();
        runtime.spawn_blocking(move || loop {
            let value = {
                let mut writer = lock(slot(&store));
                match (writer.dirty, writer.latest) {
                    (true, Some(value)) => {
                        writer.dirty = false;
                        value
                    }
                    _ => {
                        writer.running = false;
                        return;
                    }
                }
            };
            if let Err(e) = write(&store, value) {
                tracing::error!(error = %e, "cannot write {what}");
                let mut writer = lock(slot(&store));
                writer.failed = Some(e.to_string());
                writer.running = false;
                return;
            }
        });
        Ok(())
    }

    fn write_committed(&self, committed: Option<LogId>) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.insert(
            TreeName::Meta,
            KEY_COMMITTED,
            encode("committed log id", &committed)?,
        );
        let started = std::time::Instant::now();
        let applied = self.disk.apply(batch);
        let took = started.elapsed();
        if took >= RAFT_WRITE_SLOW {
            tracing::warn!(
                write_ms = took.as_millis() as u64,
                "slow write of the committed log id (off Raft's core)"
            );
        }
        applied
    }

    /// The committed log id last saved: the newest handed to [`Store::save_committed`]
    /// since open (written or about to be), else the one on disk.
    pub fn read_committed(&self) -> Result<Option<LogId>, StoreError> {
        if let Some(latest) = lock(&self.committed).latest {
            return Ok(latest);
        }
        Ok(self
            .meta_get::<Option<LogId>>("committed log id", KEY_COMMITTED)?
            .flatten())
    }

    fn meta_get<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        match self.disk.get(TreeName::Meta, key)? {
            Some(value) => Ok(Some(decode(what, &value)?)),
            None => Ok(None),
        }
    }

    // ---------------------------------------------------------------------------------
    // State machine: applied position and ledger

    pub fn read_applied(&self) -> Result<Option<AppliedRecord>, StoreError> {
        match self.disk.get(TreeName::Sm, KEY_APPLIED)? {
            Some(value) => Ok(Some(decode("applied record", &value)?)),
            None => Ok(None),
        }
    }

    /// Writes new ledger entries and their Merkle nodes, then, in one atomic batch, the
    /// state rows the apply changed and the applied record (the commit point). Not flushed:
    /// applied state is re-derived from the Raft log after a crash (see the crate docs).
    /// Answers the anchors `map` sealed, written with it, for the map's folder.
    pub fn commit_apply(
        &self,
        entries: &[LedgerEntry],
        changes: Option<Changes>,
        map: MapCommit,
        applied: &AppliedRecord,
    ) -> Result<Vec<SealedAnchor>, StoreError> {
        let mut batch = WriteBatch::default();
        let base = applied
            .ledger_len
            .checked_sub(entries.len() as u64)
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "applied record of {} ledger entries after an apply of {}",
                    applied.ledger_len,
                    entries.len()
                ))
            })?;
        let mut frontier = lock(&self.frontier);
        if frontier.size() != base {
            return Err(StoreError::Corrupt(format!(
                "the Merkle frontier in memory holds {} leaves, the apply starts at entry {base}",
                frontier.size()
            )));
        }
        let mut leaves: Vec<Hash> = Vec::with_capacity(entries.len());
        for (expected, entry) in (base..).zip(entries) {
            if entry.index.0 != expected {
                return Err(StoreError::Corrupt(format!(
                    "ledger entry {} applied where entry {expected} belongs",
                    entry.index
                )));
            }
            batch.insert(TreeName::Ledger, index_key(entry.index.0), entry.to_bytes());
            leaves.push(entry.hash.0);
        }
        // The tree's size is the ledger length before this apply (open makes it so, and
        // every apply and install keeps it so). The frontier moves only once the write has
        // gone through: a failed write leaves it at the size still on disk.
        let mut next = frontier.clone();
        merkle::append(&mut next, &leaves, &mut batch);
        // In order, then the commit batch: the rows and the applied record, all in `sm`, so
        // one sled batch (atomic on recovery) without a transaction across trees.
        self.disk.apply_in_order(batch)?;
        let mut commit = WriteBatch::default();
        if let Some(changes) = changes {
            self.state_rows_into(&mut commit, self.state_generation(), changes);
        }
        let (sealed, top) = self.map_into(&mut commit, map)?;
        commit.insert(
            TreeName::Sm,
            KEY_APPLIED,
            encode("applied record", applied)?,
        );
        self.disk.apply(commit)?;
        self.map_top_apply(top);
        *frontier = next;
        Ok(sealed)
    }

    // ---------------------------------------------------------------------------------
    // State rows (layout in the module docs)

    /// The generation of state rows the state machine reads and writes: changed only by a
    /// snapshot install (which builds the next generation beside the current one and
    /// switches at its switch point) and by the migration of a format-1 store (from 0).
    pub fn state_generation(&self) -> u64 {
        self.state_gen.load(Ordering::SeqCst)
    }

    /// State row `key` of `generation`.
    pub fn state_row(&self, generation: u64, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.disk.get(TreeName::Sm, &state_key(generation, key))
    }

    /// Calls `f` with every state row of `generation` whose key starts with `prefix`, in
    /// key order (keys without the generation prefix).
    pub fn state_scan(
        &self,
        generation: u64,
        prefix: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), StoreError> {
        let lo = state_key(generation, prefix);
        let hi = prefix_end(&lo);
        self.disk
            .for_each(TreeName::Sm, &lo, hi.as_deref(), &mut |key, value| {
                f(&key[9..], value);
                Ok(())
            })
    }

    fn state_rows_into(&self, batch: &mut WriteBatch, generation: u64, changes: Changes) {
        for (key, value) in changes.rows {
            let key = state_key(generation, &key);
            match value {
                Some(value) => batch.insert(TreeName::Sm, key, value),
                None => batch.remove(TreeName::Sm, key),
            }
        }
    }

    /// Writes rows of a generation being built (a snapshot install, a migration): not the
    /// current one, so no reader sees them until the switch.
    pub fn write_state_rows(&self, generation: u64, changes: Changes) -> Result<(), StoreError> {
        if generation == self.state_generation() {
            return Err(StoreError::Corrupt(format!(
                "staged state rows written to the current generation {generation}"
            )));
        }
        let mut batch = WriteBatch::default();
        self.state_rows_into(&mut batch, generation, changes);
        self.disk.apply(batch)
    }

    /// Finishes the migration of a format-1 store: the last rows of generation 1, the
    /// snapshot record with the state hash of format 2 at its index (if there is one),
    /// and the generation, in one batch; durable on return.
    pub fn finish_migration(
        &self,
        changes: Changes,
        snapshot: Option<SnapshotRecord>,
    ) -> Result<(), StoreError> {
        let _guard = lock(&self.snapshot_lock);
        let mut batch = WriteBatch::default();
        self.state_rows_into(&mut batch, 1, changes);
        if let Some(record) = snapshot {
            batch.insert(
                TreeName::Sm,
                KEY_SNAPSHOT,
                encode("snapshot record", &record)?,
            );
        }
        batch.insert(
            TreeName::Sm,
            KEY_STATE_GEN,
            encode("state generation", &1u64)?,
        );
        self.disk.apply(batch)?;
        self.state_gen.store(1, Ordering::SeqCst);
        self.durable_flush()
    }

    /// Removes the state rows of every generation but `keep`, a page of
    /// [`STATE_CLEAR_PAGE_ROWS`] per batch; returns how many.
    fn remove_state_rows_except(&self, keep: u64) -> Result<u64, StoreError> {
        let keep_lo = state_prefix(keep);
        let keep_hi = prefix_end(&keep_lo).unwrap_or_else(|| vec![STATE_ROW_PREFIX + 1]);
        let below = self.remove_keys_paged(TreeName::Sm, &[STATE_ROW_PREFIX], Some(&keep_lo))?;
        let above =
            self.remove_keys_paged(TreeName::Sm, &keep_hi, Some(&[STATE_ROW_PREFIX + 1]))?;
        let keep_meta = state_key(keep, KEY_STATE_META);
        let mut stale_meta = WriteBatch::default();
        let meta_end = prefix_end(STATE_META_PREFIX);
        self.disk.for_each(
            TreeName::Sm,
            STATE_META_PREFIX,
            meta_end.as_deref(),
            &mut |key, _| {
                if key != keep_meta.as_slice() {
                    stale_meta.remove(TreeName::Sm, key);
                }
                Ok(())
            },
        )?;
        let metas = stale_meta.len() as u64;
        self.disk.apply(stale_meta)?;
        Ok(below + above + metas)
    }

    /// Removes every key of `tree` in `[lo, hi)`, a page of [`STATE_CLEAR_PAGE_ROWS`] keys
    /// per batch (memory: one page of keys); returns how many.
    fn remove_keys_paged(
        &self,
        tree: TreeName,
        lo: &[u8],
        hi: Option<&[u8]>,
    ) -> Result<u64, StoreError> {
        let mut removed = 0u64;
        // Each page's scan starts past the last key removed, not at `lo`: an LSM engine's
        // scan steps over the tombstones of the pages before (quadratic over a large range).
        let mut lo = lo.to_vec();
        loop {
            let mut page: Vec<Vec<u8>> = Vec::new();
            let scan = self.disk.for_each(tree, &lo, hi, &mut |key, _| {
                page.push(key.to_vec());
                if page.len() >= STATE_CLEAR_PAGE_ROWS {
                    return Err(StoreError::ScanStopped);
                }
                Ok(())
            });
            match scan {
                Ok(()) | Err(StoreError::ScanStopped) => {}
                Err(e) => return Err(e),
            }
            let Some(last) = page.last() else {
                return Ok(removed);
            };
            // The least key after `last`.
            lo = [last.as_slice(), &[0]].concat();
            removed += page.len() as u64;
            let mut batch = WriteBatch::default();
            for key in page {
                batch.remove(tree, key);
            }
            self.disk.apply(batch)?;
        }
    }

    /// Removes keys `[lo, hi)` of an index-keyed tree, a page of [`STATE_CLEAR_PAGE_ROWS`]
    /// keys per batch, lowest first; returns how many. Not atomic: only for keys nothing
    /// reads (the ledger past its applied length, the stage), where a crash midway leaves
    /// nothing anyone sees.
    fn remove_index_paged(
        &self,
        tree: TreeName,
        lo: u64,
        hi: Option<u64>,
    ) -> Result<u64, StoreError> {
        let hi = hi.map(index_key);
        self.remove_keys_paged(tree, &index_key(lo), hi.as_ref().map(|h| &h[..]))
    }

    /// Removes what format 1 kept in `sm_state` (state snapshot chunks), in pages.
    fn remove_format1_chunks(&self) -> Result<u64, StoreError> {
        self.remove_keys_paged(TreeName::SmState, &[], None)
    }

    // ---------------------------------------------------------------------------------
    // The Merkle tree over entry hashes (layout in [`crate::merkle`])

    /// A read view of the Merkle tree over the applied ledger (its length read from the
    /// applied record).
    pub fn ledger_tree(&self) -> Result<LedgerTree<'_>, StoreError> {
        let len = self.read_applied()?.unwrap_or_default().ledger_len;
        Ok(self.ledger_tree_of(len))
    }

    /// Size and root of the tree over the applied ledger, from the frontier in memory:
    /// `popcount(size)` hashes, no disk reads.
    pub fn ledger_tree_head(&self) -> TreeHead {
        let frontier = lock(&self.frontier);
        TreeHead {
            size: frontier.size(),
            root: frontier.root(),
        }
    }

    /// The frontier in memory (tests that compare it with the tree on disk).
    #[cfg(test)]
    pub(crate) fn merkle_frontier(&self) -> Frontier {
        lock(&self.frontier).clone()
    }

    /// Reloads the frontier in memory from the tree on disk at `len` leaves
    /// (`popcount(len)` reads). Whatever writes the tree other than [`Store::commit_apply`]
    /// calls it afterwards: open's recovery and the snapshot install
    /// ([`Store::install_merkle`]); an apply after a stale frontier would write wrong
    /// nodes.
    pub(crate) fn reset_merkle_frontier(&self, len: u64) -> Result<(), StoreError> {
        let frontier = merkle::load_frontier(&self.disk, len)?;
        *lock(&self.frontier) = frontier;
        Ok(())
    }

    /// A read view of the tree over `[0, len)`, where `len` is the applied ledger length
    /// as the caller knows it (a [`Replica`](crate::Replica), under its state lock).
    pub(crate) fn ledger_tree_of(&self, len: u64) -> LedgerTree<'_> {
        LedgerTree::new(&self.disk, len)
    }

    /// Makes the tree hold exactly the ledger `[0, len)`: removes records past `len` (an
    /// apply or install cut short), builds what is missing from the ledger (a store
    /// written before the tree existed, or an interrupted build), and checks its last leaf
    /// against the last entry.
    fn recover_merkle(&self, len: u64) -> Result<(), StoreError> {
        let size = match merkle::stored_size(&self.disk) {
            Ok(size) => size.min(len),
            // A last record that does not decode: rebuild (the tree is derived data).
            Err(StoreError::Corrupt(e)) => {
                tracing::warn!(error = %e, "rebuilding the Merkle tree from the ledger");
                0
            }
            Err(e) => return Err(e),
        };
        let mut batch = WriteBatch::default();
        let removed = merkle::remove_past(&self.disk, size, &mut batch)?;
        self.disk.apply(batch)?;
        if removed > 0 {
            tracing::warn!(
                removed,
                size,
                "removed Merkle records past the applied position (an apply or snapshot install interrupted by a crash)"
            );
        }
        let built = if size < len {
            tracing::info!(
                from = size,
                to = len,
                "building the Merkle tree over the ledger"
            );
            self.extend_merkle(size, len)
        } else {
            Ok(())
        };
        let checked = built
            .and_then(|()| self.check_merkle_tail(len))
            .and_then(|()| self.reset_merkle_frontier(len));
        if let Err(e) = checked {
            // The tree is derived from the ledger; a ledger whose prefix was replaced (an
            // install of a ledger that does not extend this one, cut short by a crash), or
            // a damaged node on the tree's right edge, gets its tree rebuilt.
            tracing::warn!(error = %e, "rebuilding the Merkle tree from the ledger");
            let mut batch = WriteBatch::default();
            merkle::remove_past(&self.disk, 0, &mut batch)?;
            self.disk.apply(batch)?;
            self.extend_merkle(0, len)?;
            self.check_merkle_tail(len)?;
            self.reset_merkle_frontier(len)?;
        }
        Ok(())
    }

    /// Appends the hashes of ledger entries `[from, to)` to the tree of `from` leaves,
    /// reading the ledger in pages of [`MERKLE_BUILD_PAGE`] entries, each page's tree
    /// records one batch (memory stays bounded by the page). Reads the tree only for the
    /// frontier at `from`; leaves the frontier in memory as it was (callers reset it).
    fn extend_merkle(&self, from: u64, to: u64) -> Result<(), StoreError> {
        self.extend_merkle_with(from, to, |lo, hi, leaves| {
            // The ledger holds canonical bytes only: each ends with the entry's hash.
            self.ledger_for_each(lo, hi, |index, bytes| {
                let hash = LedgerEntry::hash_of_canonical(bytes).ok_or_else(|| {
                    StoreError::Corrupt(format!("ledger entry {index} is shorter than a hash"))
                })?;
                leaves.push(hash.0);
                Ok(())
            })
        })
    }

    /// Adds leaves `[from, to)` to the Merkle tree, in atomic pages of
    /// [`MERKLE_BUILD_PAGE`] leaves, each page's entry hashes given by `page(lo, hi, out)`.
    fn extend_merkle_with(
        &self,
        from: u64,
        to: u64,
        mut page: impl FnMut(u64, u64, &mut Vec<Hash>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut frontier = merkle::load_frontier(&self.disk, from)?;
        let mut size = from;
        while size < to {
            let end = to.min(size.saturating_add(MERKLE_BUILD_PAGE));
            let mut leaves: Vec<Hash> = Vec::with_capacity((end - size) as usize);
            page(size, end, &mut leaves)?;
            if leaves.len() as u64 != end - size {
                return Err(StoreError::Corrupt(format!(
                    "{} entry hashes for the Merkle tree's leaves [{size}, {end})",
                    leaves.len()
                )));
            }
            let mut batch = WriteBatch::default();
            merkle::append(&mut frontier, &leaves, &mut batch);
            self.disk.apply(batch)?;
            size = end;
        }
        Ok(())
    }

    /// The tree has exactly `len` leaves and the last is the last ledger entry's hash.
    fn check_merkle_tail(&self, len: u64) -> Result<(), StoreError> {
        let size = merkle::stored_size(&self.disk)?;
        if size != len {
            return Err(StoreError::Corrupt(format!(
                "the Merkle tree has {size} leaves, the ledger {len} entries"
            )));
        }
        let Some(last) = len.checked_sub(1) else {
            return Ok(());
        };
        let entry = self
            .ledger_get(last)?
            .ok_or_else(|| StoreError::Corrupt(format!("ledger entry {last} is missing")))?;
        if merkle::leaf(&self.disk, last)? != Some(leaf_hash(&entry.hash.0)) {
            return Err(StoreError::Corrupt(format!(
                "the Merkle tree's leaf {last} is not ledger entry {last}'s hash"
            )));
        }
        Ok(())
    }

    /// The ledger entry at `index`, if stored.
    pub fn ledger_get(&self, index: u64) -> Result<Option<LedgerEntry>, StoreError> {
        match self.disk.get(TreeName::Ledger, &index_key(index))? {
            Some(bytes) => {
                Ok(Some(LedgerEntry::from_bytes(&bytes).map_err(|e| {
                    StoreError::Corrupt(format!("ledger entry {index}: {e}"))
                })?))
            }
            None => Ok(None),
        }
    }

    /// Calls `f` with the index and canonical bytes of every ledger entry in `[lo, hi)`, in
    /// order; a missing entry is an error. Streams from sled: nothing is held but the
    /// current entry.
    pub fn ledger_for_each(
        &self,
        lo: u64,
        hi: u64,
        mut f: impl FnMut(u64, &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        if hi <= lo {
            return Ok(());
        }
        let mut expected = lo;
        self.for_each_index(TreeName::Ledger, lo, Some(hi), &mut |key, value| {
            let index = key_index(key)?;
            if index != expected {
                return Err(StoreError::Corrupt(format!(
                    "ledger entry {expected} is missing (next stored is {index})"
                )));
            }
            f(index, value)?;
            expected += 1;
            Ok(())
        })?;
        if expected != hi {
            return Err(StoreError::Corrupt(format!(
                "ledger entry {expected} is missing (ledger should hold [{lo}, {hi}))"
            )));
        }
        Ok(())
    }

    // ---------------------------------------------------------------------------------
    // Snapshots

    fn snapshot_record(&self) -> Result<Option<SnapshotRecord>, StoreError> {
        match self.disk.get(TreeName::Sm, KEY_SNAPSHOT)? {
            Some(value) => Ok(Some(decode("snapshot record", &value)?)),
            None => Ok(None),
        }
    }

    /// The current snapshot record: the ledger prefix and the state hash a snapshot of
    /// this node covers (the ledger part is this node's own ledger prefix, which only grows).
    pub fn read_snapshot(&self) -> Result<Option<SnapshotRecord>, StoreError> {
        let _guard = lock(&self.snapshot_lock);
        self.snapshot_record()
    }

    /// Persists the record of a snapshot this node built, unless the current one is as new
    /// or newer; durable on return. Returns whether it became the current snapshot.
    pub fn save_snapshot(&self, mut record: SnapshotRecord) -> Result<bool, StoreError> {
        let _guard = lock(&self.snapshot_lock);
        if let Some(current) = self.snapshot_record()? {
            if current.meta.last_log_id >= record.meta.last_log_id {
                return Ok(false);
            }
        }
        record.generation = self.state_generation();
        let mut batch = WriteBatch::default();
        batch.insert(
            TreeName::Sm,
            KEY_SNAPSHOT,
            encode("snapshot record", &record)?,
        );
        self.disk.apply(batch)?;
        self.durable_flush()?;
        Ok(true)
    }

    // ---------------------------------------------------------------------------------
    // Snapshot installs (staged, then switched over; see "What is atomic")

    /// A real directory for snapshot spill files, or `None` for the OS temp dir
    /// ([`Disk::spill_dir`]).
    pub(crate) fn spill_dir(&self) -> Option<PathBuf> {
        self.disk.spill_dir()
    }

    /// Starts receiving a snapshot install: clears what an earlier one left in the stage
    /// tree and in the next generation of state rows, and notes the ledger length this
    /// store has. The install's state is built in the next generation
    /// ([`Staging::generation`]) beside the current one.
    pub fn begin_install(&self) -> Result<Staging<'_>, StoreError> {
        self.clear_stage()?;
        let had_len = self.read_applied()?.unwrap_or_default().ledger_len;
        // What an install cut short (a crash, or dropped without aborting) wrote past the
        // ledger stays: every entry this one receives is written over it, or left alone
        // when its bytes are the same (a retry after a crash rewrites nothing it already
        // wrote), and the commit removes what lies past the new length.
        let written_to = match self.disk.last(TreeName::Ledger)? {
            Some((key, _)) => key_index(&key)?.saturating_add(1).max(had_len),
            None => had_len,
        };
        let generation = self.state_generation() + 1;
        self.remove_state_rows_except(self.state_generation())?;
        let hashes = match crate::snapshot_file::spill_file(self.spill_dir().as_deref()) {
            Ok(file) => Some(EntryHashes::new(file)),
            Err(error) => {
                tracing::warn!(%error, "no scratch file for the install's entry hashes: \
                    the Merkle tree will be built from the ledger");
                None
            }
        };
        Ok(Staging {
            store: self,
            had_len,
            written_to,
            generation,
            hashes,
            batch: WriteBatch::default(),
            batch_bytes: 0,
            staged: 0,
        })
    }

    fn install_record(&self) -> Result<Option<InstallRecord>, StoreError> {
        match self.disk.get(TreeName::Sm, KEY_INSTALL)? {
            Some(value) => Ok(Some(decode("install record", &value)?)),
            None => Ok(None),
        }
    }

    /// Removes every staged entry, a page per batch; returns how many there were.
    fn clear_stage(&self) -> Result<u64, StoreError> {
        self.remove_index_paged(TreeName::Stage, 0, None)
    }

    /// Carries out a committed install (its [`InstallRecord`] is on disk): moves the
    /// staged entries (those that replace a prefix the store had; the rest were written
    /// to the ledger as they came, [`Staging`]) into the ledger, a page per batch (each
    /// entry removed from the stage in the batch that copies it), removes ledger entries
    /// past the new length, brings the Merkle tree to the new ledger, then writes the
    /// snapshot and applied records and removes the install record in one batch. Every
    /// step can be run again after a crash ([`Store::recover`] does), with the same result.
    fn finish_install(
        &self,
        install: &InstallRecord,
        hashes: Option<&mut EntryHashes>,
    ) -> Result<(), StoreError> {
        let len = install.applied.ledger_len;
        if let Some((last, _)) = self.disk.last(TreeName::Stage)? {
            let last = key_index(&last)?;
            let mut lo = 0u64;
            while lo <= last {
                let hi = lo.saturating_add(STAGE_PAGE_ENTRIES);
                let mut batch = WriteBatch::default();
                self.for_each_index(TreeName::Stage, lo, Some(hi), &mut |key, value| {
                    batch.insert(TreeName::Ledger, key, value);
                    batch.remove(TreeName::Stage, key);
                    Ok(())
                })?;
                self.disk.apply(batch)?;
                lo = hi;
            }
        }
        self.remove_index_paged(TreeName::Ledger, len, None)?;
        self.install_merkle(len, hashes)?;
        let mut batch = WriteBatch::default();
        batch.insert(
            TreeName::Sm,
            KEY_SNAPSHOT,
            encode("snapshot record", &install.snapshot)?,
        );
        batch.insert(
            TreeName::Sm,
            KEY_APPLIED,
            encode("applied record", &install.applied)?,
        );
        // The install's rows become the state. A format-1 store (no generation recorded)
        // finishing an install format 1 began has no rows: it stays at 0 and migrates.
        let rows = self.disk.get(TreeName::Sm, KEY_STATE_GEN)?.is_some();
        if rows {
            batch.insert(
                TreeName::Sm,
                KEY_STATE_GEN,
                encode("state generation", &install.snapshot.generation)?,
            );
        }
        batch.remove(TreeName::Sm, KEY_INSTALL);
        self.disk.apply(batch)?;
        if rows {
            self.state_gen
                .store(install.snapshot.generation, Ordering::SeqCst);
            self.remove_state_rows_except(install.snapshot.generation)?;
        }
        Ok(())
    }

    /// Brings the Merkle tree to the ledger `[0, len)` just installed. The nodes of the
    /// ledger prefix this store had are kept if its last leaf is the hash of the installed
    /// entry at that index: both ledgers are hash chains (the installed one verified from
    /// genesis), so an equal hash there means an equal prefix. Otherwise the tree is
    /// rebuilt. Run again after a crash, it keeps what a first run built. The leaves come
    /// from `hashes`, the install's own record of every entry's hash, when it has one;
    /// from the ledger otherwise (an install finished at open after a crash).
    fn install_merkle(&self, len: u64, hashes: Option<&mut EntryHashes>) -> Result<(), StoreError> {
        let old = match merkle::stored_size(&self.disk) {
            Ok(size) => size,
            // A last record that does not decode: rebuild (the tree is derived data).
            Err(StoreError::Corrupt(_)) => 0,
            Err(e) => return Err(e),
        };
        let mut keep = 0;
        if let Some(last) = old.checked_sub(1).filter(|_| old <= len) {
            let entry = self
                .ledger_get(last)?
                .ok_or_else(|| StoreError::Corrupt(format!("installed ledger lacks {last}")))?;
            if merkle::leaf(&self.disk, last)? == Some(leaf_hash(&entry.hash.0)) {
                keep = old;
            }
        }
        if keep < old {
            tracing::warn!(
                old,
                len,
                "the installed ledger does not extend this store's: rebuilding the Merkle tree"
            );
        }
        let mut batch = WriteBatch::default();
        merkle::remove_past(&self.disk, keep, &mut batch)?;
        self.disk.apply(batch)?;
        match hashes {
            Some(hashes) => {
                self.extend_merkle_with(keep, len, |lo, hi, out| hashes.read(lo, hi, out))?
            }
            None => self.extend_merkle(keep, len)?,
        }
        // The tree on disk changed under the frontier: reload it (the one hook a snapshot
        // install needs; see `frontier`).
        self.reset_merkle_frontier(len)
    }
}

/// The record that commits a snapshot install (key `install` in `sm`): once it is on disk
/// the install happens, finished when the store is opened after a crash if need be.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct InstallRecord {
    /// The new snapshot record (its state chunks are already written).
    pub snapshot: SnapshotRecord,
    /// The new applied record; its `ledger_len` is the installed ledger's length.
    pub applied: AppliedRecord,
}

/// A snapshot install being received ([`Store::begin_install`]). Verified ledger entries
/// past the ledger the store has are written to the ledger tree where they belong: nothing
/// reads the ledger past the applied length (reads stop there), so they are invisible
/// until [`Staging::commit`] moves the applied length, and an install that never commits
/// leaves nothing anyone sees. An entry the ledger tree already holds with the same bytes
/// (within the ledger the store has, or left past it by an install a crash cut short) is
/// not written again; one within the ledger the store has with other bytes is staged in
/// the stage tree (an install that replaces a prefix must not touch the ledger before its
/// switch point). Dropping it without [`Staging::abort`] leaves entries behind for the
/// next install to clear or write over; nothing else is touched either way.
#[derive(Debug)]
pub struct Staging<'a> {
    store: &'a Store,
    /// The applied ledger length when the install began.
    had_len: u64,
    /// One past the last ledger entry on disk when the install began: entries in
    /// `[had_len, written_to)` were left by an install a crash cut short.
    written_to: u64,
    /// The generation of state rows the install builds.
    generation: u64,
    /// Every entry's hash, in order, for the Merkle tree's leaves at the switch (`None`
    /// when no scratch file could be made: the leaves are then read from the ledger).
    hashes: Option<EntryHashes>,
    batch: WriteBatch,
    batch_bytes: usize,
    staged: u64,
}

impl Staging<'_> {
    /// Stages verified entry `index` (canonical bytes); returns the bytes held in memory
    /// for the current batch.
    pub fn entry(&mut self, index: u64, bytes: &[u8]) -> Result<usize, StoreError> {
        if let Some(hashes) = self.hashes.as_mut() {
            if hashes.count == index {
                let hash = LedgerEntry::hash_of_canonical(bytes).ok_or_else(|| {
                    StoreError::Corrupt(format!("entry {index} is shorter than a hash"))
                })?;
                hashes.push(&hash.0)?;
            }
        }
        let held = index < self.written_to
            && self
                .store
                .disk
                .get(TreeName::Ledger, &index_key(index))?
                .is_some_and(|ours| ours == bytes);
        if held {
            return Ok(self.batch_bytes);
        }
        let tree = if index >= self.had_len {
            TreeName::Ledger
        } else {
            TreeName::Stage
        };
        self.batch.insert(tree, index_key(index), bytes);
        self.batch_bytes += bytes.len() + 8;
        self.staged += 1;
        let held = self.batch_bytes;
        if self.batch_bytes >= STAGE_BATCH_BYTES {
            self.flush()?;
        }
        Ok(held)
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        self.store.disk.apply(std::mem::take(&mut self.batch))?;
        self.batch_bytes = 0;
        Ok(())
    }

    /// Entries staged so far.
    pub fn staged(&self) -> u64 {
        self.staged
    }

    /// The generation of state rows the install builds: the replay of the snapshot writes
    /// its rows there ([`Staging::rows`]), and the switch makes it current.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Writes rows of the install's state (a page of the replay's changes).
    pub fn rows(&self, changes: Changes) -> Result<(), StoreError> {
        self.store.write_state_rows(self.generation, changes)
    }

    /// Switches the store over to the verified snapshot: writes the last rows of its state
    /// (`changes`), then the [`InstallRecord`] (the switch point), then carries the install
    /// out (`Store::finish_install`); durable on return. `snapshot` and `applied` must
    /// agree on the ledger length, which every entry up to has been given to
    /// [`Staging::entry`].
    pub fn commit(
        mut self,
        mut snapshot: SnapshotRecord,
        changes: Option<Changes>,
        applied: &AppliedRecord,
    ) -> Result<(), StoreError> {
        if snapshot.ledger_len != applied.ledger_len {
            return Err(StoreError::Corrupt(format!(
                "snapshot install with records saying {} and {} ledger entries",
                snapshot.ledger_len, applied.ledger_len
            )));
        }
        self.flush()?;
        if let Some(changes) = changes {
            self.rows(changes)?;
        }
        let store = self.store;
        let _guard = lock(&store.snapshot_lock);
        snapshot.generation = self.generation;
        let install = InstallRecord {
            snapshot,
            applied: applied.clone(),
        };
        let mut batch = WriteBatch::default();
        batch.insert(
            TreeName::Sm,
            KEY_INSTALL,
            encode("install record", &install)?,
        );
        store.disk.apply(batch)?;
        let hashes = self
            .hashes
            .as_mut()
            .filter(|h| h.count == applied.ledger_len);
        store.finish_install(&install, hashes)?;
        store.durable_flush()
    }

    /// Gives the install up: removes what was staged, the entries it wrote past the ledger
    /// and the rows it built. The store is as it was before [`Store::begin_install`].
    pub fn abort(self) -> Result<(), StoreError> {
        self.store.clear_stage()?;
        self.store
            .remove_index_paged(TreeName::Ledger, self.had_len, None)?;
        self.store
            .remove_state_rows_except(self.store.state_generation())?;
        Ok(())
    }
}

/// An install's entry hashes, in ledger order, in a scratch file (32 bytes each): the
/// Merkle tree's leaves at the switch, read back a page at a time, so the tree is built
/// without reading the ledger back (at a million entries, most of the switch's time).
#[derive(Debug)]
pub(crate) struct EntryHashes {
    out: io::BufWriter<std::fs::File>,
    /// Hashes written: those of entries `[0, count)`.
    count: u64,
}

impl EntryHashes {
    fn new(file: std::fs::File) -> EntryHashes {
        EntryHashes {
            out: io::BufWriter::with_capacity(64 * 1024, file),
            count: 0,
        }
    }

    fn io_error(context: &str, source: io::Error) -> StoreError {
        StoreError::Io {
            context: format!("the install's entry hashes: {context}"),
            source,
        }
    }

    fn push(&mut self, hash: &Hash) -> Result<(), StoreError> {
        use io::Write as _;
        self.out
            .write_all(hash)
            .map_err(|e| EntryHashes::io_error("write", e))?;
        self.count += 1;
        Ok(())
    }

    /// Appends the hashes of entries `[lo, hi)` to `out`.
    fn read(&mut self, lo: u64, hi: u64, out: &mut Vec<Hash>) -> Result<(), StoreError> {
        use io::{Read as _, Seek as _, Write as _};
        if hi > self.count {
            return Err(StoreError::Corrupt(format!(
                "entry hashes up to {hi} asked of an install that recorded {}",
                self.count
            )));
        }
        self.out
            .flush()
            .map_err(|e| EntryHashes::io_error("flush", e))?;
        let file = self.out.get_mut();
        file.seek(io::SeekFrom::Start(lo * 32))
            .map_err(|e| EntryHashes::io_error("seek", e))?;
        let mut bytes = vec![0u8; ((hi - lo) * 32) as usize];
        file.read_exact(&mut bytes)
            .map_err(|e| EntryHashes::io_error("read", e))?;
        // Writes go on at the end.
        file.seek(io::SeekFrom::End(0))
            .map_err(|e| EntryHashes::io_error("seek", e))?;
        out.extend(
            bytes
                .chunks_exact(32)
                .map(|hash| <Hash>::try_from(hash).expect("32 bytes")),
        );
        Ok(())
    }
}

impl Store {
    /// The disk under the store (tests that count or fake what is on it).
    #[cfg(test)]
    pub(crate) fn disk(&self) -> &BoxedDisk {
        &self.disk
    }

    /// Turns this store into what format 1 left: no state rows and no generation, and a
    /// snapshot record with a format-1 state hash and state section (tests of the
    /// migration).
    #[cfg(test)]
    pub(crate) fn make_format1(&self) {
        self.remove_state_rows_except(u64::MAX)
            .expect("remove rows");
        let mut batch = WriteBatch::default();
        batch.remove(TreeName::Sm, KEY_STATE_GEN);
        if let Some(mut record) = self.snapshot_record().expect("snapshot record") {
            if let Some(core) = &mut record.core {
                core.state_hash = StateHash([0xaa; 32]);
                core.state_bytes = 100;
            }
            batch.insert(
                TreeName::Sm,
                KEY_SNAPSHOT,
                encode("snapshot record", &record).expect("encode"),
            );
        }
        batch.insert(TreeName::SmState, chunk_key_format1(1, 0), vec![7u8; 100]);
        self.disk.apply(batch).expect("write");
    }

    /// Writes one raw key and value, bypassing every invariant (tests that fake leftovers
    /// of a crash).
    #[cfg(test)]
    pub(crate) fn write_raw(&self, tree: TreeName, key: &[u8], value: &[u8]) {
        let mut batch = WriteBatch::default();
        batch.insert(tree, key, value);
        self.disk.apply(batch).expect("raw write");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::test_disk::SimDisk;

    #[test]
    fn index_spans() {
        use Bound::*;
        assert_eq!(index_span(Included(3), Excluded(3)), None);
        assert_eq!(index_span(Included(3), Excluded(5)), Some((3, Some(5))));
        assert_eq!(index_span(Excluded(3), Included(5)), Some((4, Some(6))));
        assert_eq!(index_span(Unbounded, Unbounded), Some((0, None)));
        assert_eq!(index_span(Included(0), Included(u64::MAX)), Some((0, None)));
        assert_eq!(index_span(Excluded(u64::MAX), Unbounded), None);
        assert_eq!(index_span(Included(7), Included(2)), None);
    }

    #[test]
    fn keys_sort_numerically() {
        assert!(index_key(255) < index_key(256));
        assert!(state_key(1, &[0xff; 40]) < state_key(2, &[]));
        assert!(state_key(u64::MAX, &[0xff; 4]).as_slice() < KEY_APPLIED);
        let meta = state_key(3, KEY_STATE_META);
        assert!(meta.starts_with(STATE_META_PREFIX) && meta.as_slice() > KEY_SNAPSHOT);
        assert_ne!(meta.as_slice(), KEY_STATE_GEN);
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff]), None);
    }

    #[test]
    fn an_apply_torn_before_its_applied_record_is_undone_on_open() {
        use docket_core::constitution::DEFAULT_DOCUMENT;
        use docket_core::{dev, LedgerId, LedgerTime, State, Value};

        let ledger = LedgerId::new("torn").expect("id");
        let (mut state, genesis) =
            State::genesis(ledger.clone(), DEFAULT_DOCUMENT, LedgerTime(1)).expect("genesis");
        let deposit = |n: u64| {
            dev::proposal(
                &ledger,
                "alice",
                "SETTLEMENT.DEPOSIT_CONFIRMED",
                &format!("s{n}"),
                Value::map([("amount", Value::Int(5)), ("currency", "EUR".into())]),
                vec![],
                n,
            )
        };
        let first: Vec<LedgerEntry> = state.submit(deposit(1), LedgerTime(2)).entries().to_vec();
        let second: Vec<LedgerEntry> = state.submit(deposit(2), LedgerTime(3)).entries().to_vec();

        let disk = SimDisk::new("torn");
        let store = Store::open_on(disk.handle()).expect("open");
        let mut applied = AppliedRecord::default();
        let mut entries = vec![genesis];
        entries.extend(first);
        applied.ledger_len = entries.len() as u64;
        store
            .commit_apply(&entries, None, Default::default(), &applied)
            .expect("apply");
        store.durable_flush().expect("flush");
        let head = store.ledger_tree().expect("tree").head().expect("head");
        assert_eq!(head.size, entries.len() as u64);

        applied.ledger_len += second.len() as u64;
        store
            .commit_apply(&second, None, Default::default(), &applied)
            .expect("apply");
        drop(store);
        // Every entry of the second apply and its Merkle record reached the disk, its
        // applied record did not.
        let pending = disk.pending_batches();
        assert_eq!(
            pending,
            second.len() * 2 + 1,
            "entries, tree records, applied"
        );
        disk.crash_keeping(pending - 1);

        let store = Store::open_on(disk.handle()).expect("reopen");
        let recovered = store.read_applied().expect("read").expect("applied");
        assert_eq!(recovered.ledger_len, entries.len() as u64);
        assert_eq!(
            store.ledger_tree().expect("tree").head().expect("head"),
            head,
            "the tree is back to the ledger it had"
        );
        assert_eq!(
            merkle::stored_size(&store.disk).expect("size"),
            entries.len() as u64
        );
        assert!(store
            .ledger_get(entries.len() as u64 - 1)
            .expect("read")
            .is_some());
        // The torn apply's entries stay past the applied length, unread; applied again
        // (from the log), it writes them over and the tree takes them.
        assert!(store
            .ledger_get(entries.len() as u64)
            .expect("read")
            .is_some());
        store
            .commit_apply(&second, None, Default::default(), &applied)
            .expect("apply again");
        let mut all = entries.clone();
        all.extend(second);
        let fresh = Store::open_on(SimDisk::new("fresh").handle()).expect("open");
        fresh
            .commit_apply(&all, None, Default::default(), &applied)
            .expect("apply");
        assert_eq!(
            store.ledger_tree().expect("tree").head().expect("head"),
            fresh.ledger_tree().expect("tree").head().expect("head")
        );
    }

    #[test]
    fn an_install_that_extends_the_ledger_keeps_the_tree_of_its_prefix() {
        let chain = docket_core::dev::entry_chain;
        let install = |store: &Store, ledger: &[LedgerEntry]| {
            let bytes: Vec<Vec<u8>> = ledger.iter().map(LedgerEntry::to_bytes).collect();
            let len = ledger.len() as u64;
            let record = SnapshotRecord {
                meta: SnapshotMeta {
                    last_log_id: None,
                    last_membership: StoredMembership::default(),
                    snapshot_id: format!("keep-{len}"),
                },
                ledger_len: len,
                core: None,
                generation: 0,
            };
            let applied = AppliedRecord {
                ledger_len: len,
                ..AppliedRecord::default()
            };
            let mut staging = store.begin_install().expect("begin");
            for (index, entry) in (0u64..).zip(&bytes) {
                staging.entry(index, entry).expect("stage");
            }
            staging.commit(record, None, &applied).expect("install");
        };
        let ours = chain(100, "ours");
        let disk = SimDisk::new("keep");
        let store = Store::open_on(disk.handle()).expect("open");
        let applied = AppliedRecord {
            ledger_len: 40,
            ..AppliedRecord::default()
        };
        store
            .commit_apply(&ours[..40], None, Default::default(), &applied)
            .expect("apply");
        // Mark the prefix's tree by removing a record in its middle: an install that
        // keeps the prefix's nodes leaves the gap, one that rebuilds fills it.
        let gap = || {
            let mut batch = WriteBatch::default();
            batch.remove(TreeName::Merkle, 16u64.to_be_bytes());
            batch
        };
        store.disk().apply(gap()).expect("remove");
        install(&store, &ours);
        assert!(
            store.ledger_tree().expect("tree").root_at(16).is_err(),
            "the prefix's nodes were kept, not rewritten"
        );
        assert!(store.ledger_tree().expect("tree").root_at(100).is_ok());

        // A ledger that does not extend ours: rebuilt, gap and all.
        store.disk().apply(gap()).expect("remove");
        let theirs = chain(120, "theirs");
        install(&store, &theirs);
        let view = store.ledger_tree().expect("tree");
        let mut mem =
            docket_core::merkle::MerkleTree::new(docket_core::merkle::MemStore::default());
        for entry in &theirs {
            mem.append(&entry.hash.0).expect("append");
        }
        for m in [16, 100, 120] {
            assert_eq!(view.root_at(m).expect("root"), mem.root_at(m).expect("mem"));
        }
    }

    #[test]
    fn a_node_that_led_reopens_as_a_follower_in_the_same_term() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = StoreOptions::default();
        let led = Vote::new_committed(7, 2);
        {
            let store = Store::open(dir.path(), &options).expect("open");
            store.save_vote(&led).expect("vote");
            assert_eq!(store.read_vote().expect("read"), Some(led));
        }
        let store = Store::open(dir.path(), &options).expect("reopen");
        let vote = store.read_vote().expect("read").expect("a vote");
        assert_eq!(
            vote,
            Vote::new(7, 2),
            "same term and candidate, not committed"
        );
        assert!(vote < led);

        // An uncommitted vote is kept as it is.
        drop(store);
        let store = Store::open(dir.path(), &options).expect("reopen again");
        assert_eq!(store.read_vote().expect("read"), Some(Vote::new(7, 2)));
    }

    /// A purge deletes what lies between the last purge and its index, whichever way it
    /// writes the deletions (blind after a first purge, scanned before one and past
    /// [`LOG_PURGE_BLIND_MAX`]), and a purge past the log's end leaves nothing behind.
    #[test]
    fn purges_delete_from_the_last_purge_on() {
        use openraft::{CommittedLeaderId, EntryPayload};
        let store = Store::open_on(SimDisk::new("purge").handle()).expect("open");
        let id = |index| LogId::new(CommittedLeaderId::new(1, 1), index);
        let entries = |range: std::ops::Range<u64>| {
            range
                .map(|index| Entry {
                    log_id: id(index),
                    payload: EntryPayload::Blank,
                })
                .collect::<Vec<_>>()
        };
        let present = |store: &Store| {
            store
                .log_entries(Bound::Unbounded, Bound::Unbounded)
                .expect("read")
                .iter()
                .map(|entry| entry.log_id.index)
                .collect::<Vec<_>>()
        };
        store.log_append(entries(0..100)).expect("append");
        store.log_purge(id(9)).expect("first purge: scanned");
        assert_eq!(present(&store), (10..100).collect::<Vec<_>>());
        store.log_purge(id(49)).expect("second purge: blind");
        assert_eq!(present(&store), (50..100).collect::<Vec<_>>());
        assert_eq!(store.last_purged().expect("read"), Some(id(49)));
        // Past the blind limit, and past the last entry.
        let far = 50 + LOG_PURGE_BLIND_MAX + 10;
        store.log_purge(id(far)).expect("far purge: scanned");
        assert_eq!(present(&store), Vec::<u64>::new());
        store
            .log_append(entries(far + 1..far + 5))
            .expect("append after");
        store.log_purge(id(far + 2)).expect("blind again");
        assert_eq!(present(&store), vec![far + 3, far + 4]);
    }

    /// openraft's core hands each commit over and goes on; the writer behind it writes
    /// the newest value it was handed, so a reopen finds the last one, and a read in
    /// between sees the newest handed over, written or not.
    #[test]
    fn the_committed_log_id_is_written_off_the_callers_task_newest_last() {
        use openraft::CommittedLeaderId;
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .expect("runtime");
        let committed = |index| Some(LogId::new(CommittedLeaderId::new(3, 1), index));
        {
            let store = std::sync::Arc::new(
                Store::open(dir.path(), &StoreOptions::default()).expect("open"),
            );
            runtime.block_on(async {
                for index in 1..=2_000 {
                    store.save_committed(committed(index)).expect("save");
                    assert_eq!(store.read_committed().expect("read"), committed(index));
                }
            });
            // Until the writer is done and has let go of the store (the reopen below needs
            // the database closed).
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while lock(&store.committed).running || std::sync::Arc::strong_count(&store) > 1 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the writer never finished"
                );
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            assert!(!lock(&store.committed).dirty, "a value was left unwritten");
            store.durable_flush().expect("flush");
        }
        let store = Store::open(dir.path(), &StoreOptions::default()).expect("reopen");
        assert_eq!(store.read_committed().expect("read"), committed(2_000));
    }

    #[test]
    fn a_follower_keeps_its_committed_vote_for_another_leader() {
        let dir = tempfile::tempdir().expect("tempdir");
        let as_node = |id| StoreOptions {
            node_id: Some(id),
            ..StoreOptions::default()
        };
        let followed = Vote::new_committed(7, 2);
        {
            let store = Store::open(dir.path(), &as_node(3)).expect("open");
            store.save_vote(&followed).expect("vote");
        }
        // Node 3 followed node 2: its vote stays committed, inside node 2's lease.
        let store = Store::open(dir.path(), &as_node(3)).expect("reopen");
        assert_eq!(store.read_vote().expect("read"), Some(followed));
        drop(store);
        // The same vote opened as node 2's own: it led, so it is demoted.
        let store = Store::open(dir.path(), &as_node(2)).expect("reopen as the leader");
        assert_eq!(store.read_vote().expect("read"), Some(Vote::new(7, 2)));
    }
}
