//! The disk: every sled access of the crate lives in this file, behind [`Store`].
//!
//! [`LogStore`](crate::LogStore) and [`StateMachine`](crate::StateMachine) only call the
//! typed methods below; neither names a sled type. This is the seam where the simulator
//! will plug in its disk model (one that loses writes not yet made durable on a crash):
//! give it the same methods, and make [`Store::durable_flush`] the point where writes
//! become crash-proof. Turning `Store` into a trait then touches no other file's logic.
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
//! | `sm`       | `applied`, `snapshot`            | bincode [`AppliedRecord`], [`SnapshotRecord`] |
//! | `sm_state` | generation `u64` BE ++ chunk `u32` BE | core state snapshot bytes, in chunks |
//!
//! Big-endian keys make sled's byte order the numeric order, so ranges and `last()` work.
//! The core state bytes sit in a tree of their own, in chunks: `applied` is rewritten on
//! every apply, and sled rewrites a whole leaf node when it consolidates one, so large
//! values must not share a leaf with a hot key.
//!
//! ## What is atomic
//!
//! * Applying commands writes the new ledger entries and the `applied` record (which holds
//!   the ledger length) in **one sled transaction** over `ledger` and `sm`, so a crash
//!   cannot leave the ledger and the applied position disagreeing.
//! * A snapshot's chunks are written under a new generation before the `snapshot` record
//!   that points at them; old generations are deleted afterwards and on open.
//! * Installing a snapshot writes the shipped ledger first, then the `snapshot` record and
//!   the `applied` record in one batch. The `applied` record is the commit point: on open,
//!   ledger entries at or past its `ledger_len` are leftovers of an interrupted install and
//!   are removed.
//! * Purging writes `last_purged` before deleting the entries; an interrupted purge is
//!   finished on open. Readers never need the deleted entries.
//!
//! These rely on sled recovering a prefix of its single, LSN-ordered log (a later write
//! is never recovered without the earlier ones); each violation would be detected on open
//! (a missing ledger entry, a state that fails its hash) rather than silently accepted.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use docket_core::{EntryHash, LedgerEntry, StateHash};
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::{Batch, Transactional, Tree};

use crate::codec;
use crate::{Entry, LogId, SnapshotMeta, StoredMembership, Vote};

const TREE_LOG: &str = "log";
const TREE_META: &str = "meta";
const TREE_LEDGER: &str = "ledger";
const TREE_SM: &str = "sm";
const TREE_SM_STATE: &str = "sm_state";

const KEY_VOTE: &[u8] = b"vote";
const KEY_LAST_PURGED: &[u8] = b"last_purged";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_APPLIED: &[u8] = b"applied";
const KEY_SNAPSHOT: &[u8] = b"snapshot";

/// Size of one chunk of the core state snapshot. Below sled's inline threshold (a quarter
/// of its 512 KiB segment, minus headers) so each chunk is an ordinary log record.
pub const STATE_CHUNK_BYTES: usize = 64 * 1024;

/// sled's page cache. sled's default is 1 GiB per database; a node holds one database and
/// the 2-core, 24 GiB machines run three nodes plus clients, so keep it modest. The cache
/// only speeds reads of recent log and ledger entries; it holds no state we depend on.
pub const CACHE_CAPACITY_BYTES_DEFAULT: u64 = 128 * 1024 * 1024;

/// sled's background flusher period. It bounds how long a write that is not explicitly
/// flushed (an applied-state update, `save_committed`) stays in sled's user-space buffer.
pub const FLUSH_EVERY_MS_DEFAULT: u64 = 500;

/// How a [`Store`] opens sled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// sled's background flush-and-fsync period; `None` runs no background thread (what a
    /// deterministic simulation wants). Acknowledged writes never depend on it.
    pub flush_every_ms: Option<u64>,
    pub cache_capacity_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            flush_every_ms: Some(FLUSH_EVERY_MS_DEFAULT),
            cache_capacity_bytes: CACHE_CAPACITY_BYTES_DEFAULT,
        }
    }
}

/// A storage failure: the node cannot go on safely.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
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
}

fn io_error(context: impl fmt::Display) -> impl FnOnce(io::Error) -> StoreError {
    let context = context.to_string();
    move |source| StoreError::Io { context, source }
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

/// The core-state part of a persisted snapshot.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct CoreRecord {
    /// `State::hash` of the state the chunks hold.
    pub state_hash: StateHash,
    /// Hash of the ledger entry at `ledger_len - 1` (the state's head).
    pub head_hash: EntryHash,
    /// Total length of the state bytes across chunks.
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
    /// Key prefix of the chunks in `sm_state`; assigned by the store.
    pub generation: u64,
}

/// One node's sled database. See the module docs for the layout.
pub struct Store {
    dir: PathBuf,
    db: sled::Db,
    log: Tree,
    meta: Tree,
    ledger: Tree,
    sm: Tree,
    sm_state: Tree,
    /// Read-only handle on sled's `db` file, only for `fsync` (fsync acts on the inode, so
    /// any descriptor works; sled holds an advisory `flock` that a plain open ignores).
    db_file: File,
    /// Files in `blobs/` already fsynced, with the length they had then.
    synced_blobs: Mutex<BTreeMap<OsString, u64>>,
    /// Serializes writers and readers of the snapshot record and its chunks.
    snapshot_lock: Mutex<()>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn key_index(key: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("index key of {} bytes", key.len())))?;
    Ok(u64::from_be_bytes(bytes))
}

fn chunk_key(generation: u64, chunk: u32) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..8].copy_from_slice(&generation.to_be_bytes());
    key[8..].copy_from_slice(&chunk.to_be_bytes());
    key
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

fn tree_range(tree: &Tree, lo: u64, hi: Option<u64>) -> sled::Iter {
    match hi {
        Some(hi) => tree.range(index_key(lo)..index_key(hi)),
        None => tree.range(index_key(lo)..),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks leaves nothing half-done in memory (the data they
    // guard is on disk or a cache of what is), so a poisoned lock is still usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn sync_file(path: &Path) -> Result<(), StoreError> {
    match File::open(path) {
        Ok(file) => file
            .sync_all()
            .map_err(io_error(format_args!("fsync {}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(format_args!("open {}", path.display()))(e)),
    }
}

impl Store {
    /// Opens (or creates) the database in `dir`, makes its directory entries durable, and
    /// finishes whatever a crash interrupted (see the module docs).
    pub fn open(dir: &Path, options: &StoreOptions) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(io_error(format_args!("create {}", dir.display())))?;
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(options.cache_capacity_bytes)
            .flush_every_ms(options.flush_every_ms)
            .open()?;
        let db_path = dir.join("db");
        let db_file =
            File::open(&db_path).map_err(io_error(format_args!("open {}", db_path.display())))?;
        // sled 0.34 never fsyncs a directory and never fsyncs `conf`: do it once here, so
        // the files it created survive power loss. `blobs/` gets its entries synced by
        // every durable_flush that finds a new blob.
        sync_file(&dir.join("conf"))?;
        sync_file(&dir.join("blobs"))?;
        sync_file(dir)?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_file(parent)?;
        }
        let store = Store {
            dir: dir.to_path_buf(),
            log: db.open_tree(TREE_LOG)?,
            meta: db.open_tree(TREE_META)?,
            ledger: db.open_tree(TREE_LEDGER)?,
            sm: db.open_tree(TREE_SM)?,
            sm_state: db.open_tree(TREE_SM_STATE)?,
            db,
            db_file,
            synced_blobs: Mutex::new(BTreeMap::new()),
            snapshot_lock: Mutex::new(()),
        };
        store.recover()?;
        // Blobs left by an earlier run may never have been synced: sync them all now.
        store.durable_flush()?;
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes every write that completed before this call durable, then returns.
    ///
    /// **Guaranteed** once it returns `Ok`: every sled write (any tree, any thread) that
    /// returned before the call started is on stable storage as far as the kernel can
    /// promise: sled's `db` file has been `fsync`ed (data and metadata, so a grown file keeps
    /// its size), as has every file sled wrote under `blobs/` (values or nodes too large to
    /// inline, ~128 KiB and up) together with the `blobs/` directory. So the writes survive a
    /// process crash *and* an OS crash or power loss, on a drive that honours cache flushes.
    ///
    /// Why more than `sled::Db::flush`: on Linux sled 0.34 flushes with
    /// `sync_file_range(WAIT_BEFORE|WRITE|WAIT_AFTER)`, which survives a process crash but
    /// does not flush the drive's write cache or commit file metadata, and it never syncs
    /// blob files or directories at all.
    ///
    /// **Not guaranteed:**
    /// * writes racing with the call (issued while it runs) may or may not be included;
    /// * directory entries created after [`Store::open`] other than in `blobs/` (sled creates
    ///   none in normal operation, but its own `snap.*` recovery-acceleration files are
    ///   written and renamed without a directory sync; losing one only slows recovery,
    ///   though sled 0.34 has reports of a torn `snap.*.generating` blocking open, #1527);
    /// * drives or virtual disks that acknowledge `fsync` without persisting;
    /// * sled's own recovery bugs (#1509, #1533): a corrupted database fails to open, loudly.
    ///
    /// It blocks the calling thread for one `fsync` (plus one per new blob). openraft 0.9
    /// awaits each log write inline anyway, so this costs no pipelining.
    pub fn durable_flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        self.sync_new_blobs()?;
        self.db_file
            .sync_all()
            .map_err(io_error(format_args!("fsync {}/db", self.dir.display())))
    }

    /// fsyncs each blob file not yet synced at its current length, then `blobs/` itself.
    ///
    /// A blob referenced by a record at or before the flushed position is complete when
    /// `flush` returns (sled writes a blob before the log record pointing at it). A blob
    /// still being written belongs to a later record; its length differs next time, so the
    /// next durable_flush syncs it again.
    fn sync_new_blobs(&self) -> Result<(), StoreError> {
        let blobs_dir = self.dir.join("blobs");
        let listing = match std::fs::read_dir(&blobs_dir) {
            Ok(listing) => listing,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error(format_args!("list {}", blobs_dir.display()))(e)),
        };
        let mut synced = lock(&self.synced_blobs);
        let mut present = BTreeMap::new();
        let mut synced_any = false;
        for item in listing {
            let item = item.map_err(io_error(format_args!("list {}", blobs_dir.display())))?;
            let path = item.path();
            let len = match item.metadata() {
                Ok(metadata) => metadata.len(),
                // sled removes blobs it no longer needs; a vanished file needs no sync.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(format_args!("stat {}", path.display()))(e)),
            };
            let name = item.file_name();
            if synced.get(&name) != Some(&len) {
                sync_file(&path)?;
                synced_any = true;
            }
            present.insert(name, len);
        }
        if synced_any {
            sync_file(&blobs_dir)?;
        }
        *synced = present;
        Ok(())
    }

    /// Completes what a crash may have interrupted. See "What is atomic" in the module docs.
    fn recover(&self) -> Result<(), StoreError> {
        if let Some(purged) = self.last_purged()? {
            let removed = self.remove_range(&self.log, 0, Some(purged.index + 1))?;
            if removed > 0 {
                tracing::info!(
                    removed,
                    upto = purged.index,
                    "finished an interrupted log purge"
                );
            }
        }
        let applied = self.read_applied()?.unwrap_or_default();
        let removed = self.remove_range(&self.ledger, applied.ledger_len, None)?;
        if removed > 0 {
            tracing::warn!(
                removed,
                ledger_len = applied.ledger_len,
                "removed ledger entries past the applied position (interrupted snapshot install)"
            );
        }
        let generation = self.snapshot_record()?.map(|r| r.generation);
        let mut stale = Batch::default();
        let mut stale_count = 0u64;
        for item in self.sm_state.iter().keys() {
            let key = item?;
            let key_generation = key
                .get(..8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes);
            if key_generation != generation {
                stale.remove(key);
                stale_count += 1;
            }
        }
        if stale_count > 0 {
            self.sm_state.apply_batch(stale)?;
            tracing::info!(
                stale_count,
                "removed state chunks of an unfinished snapshot"
            );
        }
        Ok(())
    }

    /// Removes keys `[lo, hi)` of an index-keyed tree; returns how many there were.
    fn remove_range(&self, tree: &Tree, lo: u64, hi: Option<u64>) -> Result<u64, StoreError> {
        let mut batch = Batch::default();
        let mut count = 0u64;
        for item in tree_range(tree, lo, hi).keys() {
            batch.remove(item?);
            count += 1;
        }
        if count > 0 {
            tree.apply_batch(batch)?;
        }
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
        for item in tree_range(&self.log, lo, hi).values() {
            out.push(decode("log entry", &item?)?);
        }
        Ok(out)
    }

    /// Log id of the last entry present in the log, if any.
    pub fn log_last_id(&self) -> Result<Option<LogId>, StoreError> {
        match self.log.last()? {
            Some((_, value)) => Ok(Some(decode::<Entry>("log entry", &value)?.log_id)),
            None => Ok(None),
        }
    }

    /// Appends entries (overwriting any at the same indexes) and makes them durable.
    pub fn log_append(&self, entries: impl IntoIterator<Item = Entry>) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        for entry in entries {
            batch.insert(
                &index_key(entry.log_id.index)[..],
                encode("log entry", &entry)?,
            );
        }
        self.log.apply_batch(batch)?;
        self.durable_flush()
    }

    /// Deletes entries at `since` and after, durably.
    pub fn log_truncate(&self, since: u64) -> Result<(), StoreError> {
        self.remove_range(&self.log, since, None)?;
        self.durable_flush()
    }

    /// Records `upto` as purged, deletes entries up to and including it, durably.
    pub fn log_purge(&self, upto: LogId) -> Result<(), StoreError> {
        self.meta
            .insert(KEY_LAST_PURGED, encode("last purged log id", &upto)?)?;
        self.remove_range(&self.log, 0, upto.index.checked_add(1))?;
        self.durable_flush()
    }

    pub fn last_purged(&self) -> Result<Option<LogId>, StoreError> {
        self.meta_get("last purged log id", KEY_LAST_PURGED)
    }

    pub fn save_vote(&self, vote: &Vote) -> Result<(), StoreError> {
        self.meta.insert(KEY_VOTE, encode("vote", vote)?)?;
        self.durable_flush()
    }

    pub fn read_vote(&self) -> Result<Option<Vote>, StoreError> {
        self.meta_get("vote", KEY_VOTE)
    }

    /// Records the committed log id. Not flushed: it is a hint that lets a restarted node
    /// re-apply committed entries before hearing from the leader; losing it loses nothing.
    pub fn save_committed(&self, committed: Option<LogId>) -> Result<(), StoreError> {
        self.meta
            .insert(KEY_COMMITTED, encode("committed log id", &committed)?)?;
        Ok(())
    }

    pub fn read_committed(&self) -> Result<Option<LogId>, StoreError> {
        Ok(self
            .meta_get::<Option<LogId>>("committed log id", KEY_COMMITTED)?
            .flatten())
    }

    fn meta_get<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        match self.meta.get(key)? {
            Some(value) => Ok(Some(decode(what, &value)?)),
            None => Ok(None),
        }
    }

    // ---------------------------------------------------------------------------------
    // State machine: applied position and ledger

    pub fn read_applied(&self) -> Result<Option<AppliedRecord>, StoreError> {
        match self.sm.get(KEY_APPLIED)? {
            Some(value) => Ok(Some(decode("applied record", &value)?)),
            None => Ok(None),
        }
    }

    /// Writes new ledger entries and the applied record in one transaction. Not flushed:
    /// applied state is re-derived from the Raft log after a crash (see the crate docs).
    pub fn commit_apply(
        &self,
        entries: &[LedgerEntry],
        applied: &AppliedRecord,
    ) -> Result<(), StoreError> {
        let applied_bytes = encode("applied record", applied)?;
        let mut ledger_batch = Batch::default();
        for entry in entries {
            ledger_batch.insert(&index_key(entry.index.0)[..], entry.to_bytes());
        }
        (&self.ledger, &self.sm)
            .transaction(|(ledger, sm)| {
                ledger.apply_batch(&ledger_batch)?;
                sm.insert(KEY_APPLIED, applied_bytes.as_slice())?;
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                TransactionError::Storage(e) => StoreError::Sled(e),
                TransactionError::Abort(()) => {
                    StoreError::Corrupt("apply transaction aborted".to_owned())
                }
            })
    }

    /// The ledger entry at `index`, if stored.
    pub fn ledger_get(&self, index: u64) -> Result<Option<LedgerEntry>, StoreError> {
        match self.ledger.get(index_key(index))? {
            Some(bytes) => {
                Ok(Some(LedgerEntry::from_bytes(&bytes).map_err(|e| {
                    StoreError::Corrupt(format!("ledger entry {index}: {e}"))
                })?))
            }
            None => Ok(None),
        }
    }

    /// Calls `f` with the index and canonical bytes of every ledger entry in `[lo, hi)`, in
    /// order; a missing entry is an error. Streams: nothing is held but the current entry.
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
        for item in tree_range(&self.ledger, lo, Some(hi)) {
            let (key, value) = item?;
            let index = key_index(&key)?;
            if index != expected {
                return Err(StoreError::Corrupt(format!(
                    "ledger entry {expected} is missing (next stored is {index})"
                )));
            }
            f(index, &value)?;
            expected += 1;
        }
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
        match self.sm.get(KEY_SNAPSHOT)? {
            Some(value) => Ok(Some(decode("snapshot record", &value)?)),
            None => Ok(None),
        }
    }

    /// The current snapshot record and its core state bytes (empty when it has no core).
    pub fn read_snapshot(&self) -> Result<Option<(SnapshotRecord, Vec<u8>)>, StoreError> {
        let _guard = lock(&self.snapshot_lock);
        let Some(record) = self.snapshot_record()? else {
            return Ok(None);
        };
        let mut state = Vec::new();
        let prefix = record.generation.to_be_bytes();
        for item in self.sm_state.scan_prefix(prefix).values() {
            state.extend_from_slice(&item?);
        }
        let expected = record.core.as_ref().map_or(0, |c| c.state_bytes);
        if state.len() as u64 != expected {
            return Err(StoreError::Corrupt(format!(
                "snapshot state has {} bytes, its record says {expected}",
                state.len()
            )));
        }
        Ok(Some((record, state)))
    }

    /// Writes the chunks of a new generation; returns it and the batch that removes the
    /// current one.
    fn write_state_chunks(&self, state: &[u8]) -> Result<(u64, Batch), StoreError> {
        let current = self.snapshot_record()?.map(|r| r.generation);
        let generation = current.map_or(1, |g| g + 1);
        let mut chunks = Batch::default();
        for (i, chunk) in state.chunks(STATE_CHUNK_BYTES).enumerate() {
            let i = u32::try_from(i)
                .map_err(|_| StoreError::Corrupt("state snapshot has too many chunks".into()))?;
            chunks.insert(&chunk_key(generation, i)[..], chunk);
        }
        self.sm_state.apply_batch(chunks)?;
        let mut old = Batch::default();
        if let Some(current) = current {
            for key in self.sm_state.scan_prefix(current.to_be_bytes()).keys() {
                old.remove(key?);
            }
        }
        Ok((generation, old))
    }

    /// Persists a snapshot this node built, unless the current one is as new or newer;
    /// durable on return. Returns whether it became the current snapshot.
    pub fn save_snapshot(
        &self,
        mut record: SnapshotRecord,
        state: &[u8],
    ) -> Result<bool, StoreError> {
        let _guard = lock(&self.snapshot_lock);
        if let Some(current) = self.snapshot_record()? {
            if current.meta.last_log_id >= record.meta.last_log_id {
                return Ok(false);
            }
        }
        let (generation, old_chunks) = self.write_state_chunks(state)?;
        record.generation = generation;
        self.sm
            .insert(KEY_SNAPSHOT, encode("snapshot record", &record)?)?;
        self.sm_state.apply_batch(old_chunks)?;
        self.durable_flush()?;
        Ok(true)
    }

    /// Replaces the ledger, the current snapshot and the applied record with a verified
    /// snapshot from the leader; durable on return. `ledger` holds canonical entry bytes for
    /// indexes `0..ledger.len()`.
    pub fn install_snapshot(
        &self,
        ledger: &[Vec<u8>],
        mut record: SnapshotRecord,
        state: &[u8],
        applied: &AppliedRecord,
    ) -> Result<(), StoreError> {
        let _guard = lock(&self.snapshot_lock);
        let ledger_len = ledger.len() as u64;
        if record.ledger_len != ledger_len || applied.ledger_len != ledger_len {
            return Err(StoreError::Corrupt(format!(
                "snapshot install of {ledger_len} entries with records saying {} and {}",
                record.ledger_len, applied.ledger_len
            )));
        }
        // 1. The ledger. Entries below the old length are rewritten with identical bytes
        //    (committed entries agree on every replica); readers never see a gap.
        let mut batch = Batch::default();
        for (index, bytes) in (0u64..).zip(ledger) {
            batch.insert(&index_key(index)[..], bytes.as_slice());
        }
        for key in tree_range(&self.ledger, ledger_len, None).keys() {
            batch.remove(key?);
        }
        self.ledger.apply_batch(batch)?;
        // 2. The state chunks under a new generation.
        let (generation, old_chunks) = self.write_state_chunks(state)?;
        record.generation = generation;
        // 3. The commit point: snapshot record and applied record together.
        let mut sm = Batch::default();
        sm.insert(KEY_SNAPSHOT, encode("snapshot record", &record)?);
        sm.insert(KEY_APPLIED, encode("applied record", applied)?);
        self.sm.apply_batch(sm)?;
        self.sm_state.apply_batch(old_chunks)?;
        self.durable_flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(chunk_key(1, u32::MAX) < chunk_key(2, 0));
    }

    #[test]
    fn big_values_go_through_blobs_and_are_synced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), &StoreOptions::default()).expect("open");
        // A value far above sled's inline threshold is written as a blob file.
        store
            .meta
            .insert(b"big", vec![7u8; 400 * 1024])
            .expect("insert");
        store.durable_flush().expect("durable flush");
        let synced = lock(&store.synced_blobs).len();
        assert!(synced >= 1, "the blob was found and synced");
        drop(store);
        let store = Store::open(dir.path(), &StoreOptions::default()).expect("reopen");
        let value = store.meta.get(b"big").expect("get").expect("present");
        assert_eq!(value.len(), 400 * 1024);
    }
}
