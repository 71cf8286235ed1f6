//! The disk under [`Store`](crate::Store): a minimal key-value interface, the [`Disk`]
//! trait.
//!
//! * [`SledDisk`] is production: one `sled::Db` per node, with `durable_flush` adding the
//!   `fsync`s sled leaves out (see its docs).
//! * [`FjallDisk`] is production too: one fjall (LSM) database per node, one keyspace per
//!   tree, `durable_flush` one `fsync` of its journal. The node picks one with
//!   `[storage] engine`; the data directory's `ENGINE` marker ([`engine`]) keeps a store
//!   from being opened by the other.
//! * The simulator implements it in its own crate (`docket-sim`'s `SimDisk`, over
//!   `docket-simstore`'s pending/durable model): writes are visible at once but stay
//!   *pending* until `durable_flush`, and a crash keeps exactly what was flushed.
//!
//! The interface is what [`Store`](crate::Store) needs and nothing more: a fixed set of
//! named trees ([`TreeName`]), `get`, `last`, an ordered range scan, an atomic batch that
//! may span trees ([`WriteBatch`]), writes in order, and `durable_flush`. Keys order
//! bytewise.
//!
//! Every disk must recover a *prefix* of the batches applied to it (sled: its single
//! LSN-ordered log; fjall: its single journal, replayed in order; the simulator's model: everything flushed, plus optionally a prefix of
//! what was pending), which is what the store's crash-consistency argument relies on.

pub mod engine;
mod fjall_disk;
mod sled_disk;
#[cfg(test)]
pub(crate) mod test_disk;

use std::fmt;
use std::path::PathBuf;

pub use self::engine::{detect_engine, StorageEngine, ENGINE_FILE};
pub use self::fjall_disk::{FjallBudget, FjallDisk, FJALL_DIR};
pub use self::sled_disk::SledDisk;

use crate::store::StoreError;

/// A key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// A visitor of key-value pairs in a range scan; an error stops the scan.
pub type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), StoreError> + 'a;

/// The trees of a node's store (layout in [`crate::store`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub enum TreeName {
    Log,
    Meta,
    Ledger,
    Sm,
    SmState,
    Merkle,
    /// Ledger entries of a snapshot install that replace entries of the ledger the store
    /// has, staged until the install switches over ([`crate::store`], "What is atomic").
    Stage,
    /// The state map's nodes ([`crate::store`]'s `map` module).
    Map,
}

impl TreeName {
    pub const ALL: [TreeName; 8] = [
        TreeName::Log,
        TreeName::Meta,
        TreeName::Ledger,
        TreeName::Sm,
        TreeName::SmState,
        TreeName::Merkle,
        TreeName::Stage,
        TreeName::Map,
    ];

    /// The tree's name on disk (sled tree names, fjall keyspace names; fixed, part of the
    /// persisted format).
    pub fn as_str(self) -> &'static str {
        match self {
            TreeName::Log => "log",
            TreeName::Meta => "meta",
            TreeName::Ledger => "ledger",
            TreeName::Sm => "sm",
            TreeName::SmState => "sm_state",
            TreeName::Merkle => "merkle",
            TreeName::Stage => "snap_stage",
            TreeName::Map => "map",
        }
    }

    /// The tree's position in [`TreeName::ALL`]: where an engine keeps its handle (the
    /// variants are declared in that order; a test checks it).
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for TreeName {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Writes applied together: after a crash either all of them are recovered or none.
#[derive(Clone, Default, Debug, PartialEq, Eq)]
pub struct WriteBatch {
    /// `(tree, key, Some(value))` inserts, `(tree, key, None)` removes; applied in order.
    pub(crate) ops: Vec<WriteOp>,
}

/// One write of a [`WriteBatch`]: `(tree, key, Some(value))` inserts, `(tree, key, None)`
/// removes.
pub type WriteOp = (TreeName, Vec<u8>, Option<Vec<u8>>);

impl WriteBatch {
    pub fn insert(&mut self, tree: TreeName, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push((tree, key.into(), Some(value.into())));
    }

    pub fn remove(&mut self, tree: TreeName, key: impl Into<Vec<u8>>) {
        self.ops.push((tree, key.into(), None));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }
}

impl IntoIterator for WriteBatch {
    type Item = WriteOp;
    type IntoIter = std::vec::IntoIter<WriteOp>;

    /// The writes, in the order they apply.
    fn into_iter(self) -> Self::IntoIter {
        self.ops.into_iter()
    }
}

/// The disk a [`Store`](crate::Store) runs over: [`SledDisk`] or [`FjallDisk`] in
/// production, the simulator's model under simulation. The store owns it (boxed, so the store and the
/// openraft types over it stay concrete) and never names its type.
pub trait Disk: fmt::Debug + Send + Sync + 'static {
    fn get(&self, tree: TreeName, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// The entry with the greatest key in `tree`.
    fn last(&self, tree: TreeName) -> Result<Option<KeyValue>, StoreError>;

    /// Calls `f` on every entry with `lo <= key < hi` (`hi = None`: no upper bound), in key
    /// order, stopping at the first error. `f` may read the disk again.
    fn for_each(
        &self,
        tree: TreeName,
        lo: &[u8],
        hi: Option<&[u8]>,
        f: &mut Visit<'_>,
    ) -> Result<(), StoreError>;

    /// Applies a non-empty batch atomically (all or nothing on recovery). Not durable by
    /// itself.
    fn apply(&self, batch: WriteBatch) -> Result<(), StoreError>;

    /// Applies a non-empty batch's writes one by one, in order: on recovery a *prefix* of
    /// them is there (possibly none, possibly all), never a later write without an earlier
    /// one. Not durable by itself.
    ///
    /// For writes that need order but not atomicity, such as a Raft log append (entries
    /// are acknowledged only after a [`durable_flush`](Disk::durable_flush), and a torn
    /// append leaves a contiguous log). On sled it is much cheaper than [`apply`](Disk::apply):
    /// every sled batch or transaction seals and writes sled's I/O buffer twice (once
    /// before and once after its batch manifest; sled 0.34 `PageCache::pin_log`), each
    /// write a `pwrite` and a `sync_file_range` on sled's thread pool, all of which the
    /// next durable flush waits for.
    fn apply_in_order(&self, batch: WriteBatch) -> Result<(), StoreError>;

    /// Makes every batch applied before the call durable.
    fn durable_flush(&self) -> Result<(), StoreError>;

    /// Whether [`durable_flush`](Disk::durable_flush) waits on the operating system (an
    /// `fsync`), so the store runs it on tokio's blocking pool; `false` runs it inline (a
    /// simulated disk, whose host must stay on the simulation's one thread).
    fn flush_blocks(&self) -> bool;

    /// Where the disk is, for logs: its directory, or a pseudo path naming it.
    fn location(&self) -> PathBuf;

    /// A real directory on the disk's file system for scratch files (snapshots in
    /// transit, [`crate::snapshot_file`]), or `None` for the OS temp dir (a disk with no
    /// directory, such as a simulated one).
    fn spill_dir(&self) -> Option<PathBuf> {
        None
    }

    /// Bytes the disk's files take, for metrics, when that is cheap to know (a few file
    /// sizes); `None` otherwise.
    fn size_bytes(&self) -> Option<u64> {
        None
    }

    /// What the disk holds in memory now, for metrics, when it can say; `None` otherwise.
    fn memory(&self) -> Option<DiskMemory> {
        None
    }

    /// Gives back the space of keys of `tree` below `key` that were all removed already,
    /// where the engine keeps removed keys' files until a compaction reaches them (fjall:
    /// table files holding only such keys are dropped whole). Nothing to do elsewhere.
    /// Every key below `key` must have been removed, durably.
    fn drop_removed_below(&self, tree: TreeName, key: &[u8]) -> Result<(), StoreError> {
        let _ = (tree, key);
        Ok(())
    }
}

/// The memory a disk holds beside the process's own, as the engine counts it: with the
/// process's resident memory, it says whether a node's memory is its store's caches or
/// something else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskMemory {
    /// Bytes in the engine's read cache (fjall's block cache: decompressed blocks).
    pub cache_bytes: u64,
    /// Bytes of writes held in memory until they are flushed to table files (fjall's
    /// active and sealed memtables).
    pub write_buffer_bytes: u64,
    /// Bytes of table index and filter blocks held in memory outside the read cache
    /// (fjall's pinned blocks: by default, the indexes and filters of level 0's tables).
    pub pinned_bytes: u64,
}

/// The store's disk: the trait object, with an empty batch written as nothing.
#[derive(Debug)]
pub(crate) struct BoxedDisk(Box<dyn Disk>);

impl BoxedDisk {
    pub fn new(disk: impl Disk) -> BoxedDisk {
        BoxedDisk(Box::new(disk))
    }

    pub fn get(&self, tree: TreeName, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.get(tree, key)
    }

    pub fn last(&self, tree: TreeName) -> Result<Option<KeyValue>, StoreError> {
        self.0.last(tree)
    }

    pub fn for_each(
        &self,
        tree: TreeName,
        lo: &[u8],
        hi: Option<&[u8]>,
        f: &mut Visit<'_>,
    ) -> Result<(), StoreError> {
        self.0.for_each(tree, lo, hi, f)
    }

    pub fn size_bytes(&self) -> Option<u64> {
        self.0.size_bytes()
    }

    pub fn memory(&self) -> Option<DiskMemory> {
        self.0.memory()
    }

    pub fn drop_removed_below(&self, tree: TreeName, key: &[u8]) -> Result<(), StoreError> {
        self.0.drop_removed_below(tree, key)
    }

    pub fn apply(&self, batch: WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.0.apply(batch)
    }

    pub fn apply_in_order(&self, batch: WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.0.apply_in_order(batch)
    }

    pub fn durable_flush(&self) -> Result<(), StoreError> {
        self.0.durable_flush()
    }

    pub fn flush_blocks(&self) -> bool {
        self.0.flush_blocks()
    }

    pub fn location(&self) -> PathBuf {
        self.0.location()
    }

    pub fn spill_dir(&self) -> Option<PathBuf> {
        self.0.spill_dir()
    }
}

#[cfg(test)]
mod tests {
    use super::TreeName;

    #[test]
    fn a_trees_index_is_its_position_in_all() {
        for (position, tree) in TreeName::ALL.into_iter().enumerate() {
            assert_eq!(tree.index(), position, "{tree}");
        }
    }
}
