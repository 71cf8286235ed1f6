//! The disk under [`Store`](crate::Store): a minimal key-value interface with two
//! implementations.
//!
//! * [`SledDisk`] is production: one `sled::Db` per node, with `durable_flush` adding the
//!   `fsync`s sled leaves out (see its docs).
//! * [`SimDisk`] is the simulator's disk model (over `docket_simstore`'s pending/durable
//!   model): writes are visible at once but stay *pending* until `durable_flush`;
//!   [`SimDisk::crash`] throws pending writes away, and a store reopened after it sees
//!   exactly what was flushed. Its handle is cloneable and outlives the store (and the
//!   simulated host) using it.
//!
//! The interface is what [`Store`](crate::Store) needs and nothing more: a fixed set of
//! named trees ([`TreeName`]), `get`, `last`, an ordered range scan, an atomic batch that
//! may span trees ([`WriteBatch`]), and `durable_flush`. Keys order bytewise.
//!
//! Both disks recover a *prefix* of the batches applied to them (sled: its single
//! LSN-ordered log; the model: everything flushed, plus optionally a prefix of what was
//! pending), which is what the store's crash-consistency argument relies on.

mod sim_disk;
mod sled_disk;

use std::fmt;

pub(crate) use self::sim_disk::SimHandle;
pub use self::sim_disk::{FlushMode, SimDisk, SimDiskStats};
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
}

impl TreeName {
    pub const ALL: [TreeName; 6] = [
        TreeName::Log,
        TreeName::Meta,
        TreeName::Ledger,
        TreeName::Sm,
        TreeName::SmState,
        TreeName::Merkle,
    ];

    /// The tree's name on disk (sled tree names; fixed, part of the persisted format).
    pub fn as_str(self) -> &'static str {
        match self {
            TreeName::Log => "log",
            TreeName::Meta => "meta",
            TreeName::Ledger => "ledger",
            TreeName::Sm => "sm",
            TreeName::SmState => "sm_state",
            TreeName::Merkle => "merkle",
        }
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
    pub(crate) ops: Vec<(TreeName, Vec<u8>, Option<Vec<u8>>)>,
}

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

/// The disk a store runs over. An enum, not a trait object: there are exactly two, and
/// the store stays a plain concrete type for openraft's `Send + Sync + 'static` bounds.
#[derive(Debug)]
pub(crate) enum Disk {
    Sled(SledDisk),
    Sim(SimHandle),
}

impl Disk {
    pub fn get(&self, tree: TreeName, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Disk::Sled(d) => d.get(tree, key),
            Disk::Sim(d) => d.get(tree, key),
        }
    }

    /// The entry with the greatest key in `tree`.
    pub fn last(&self, tree: TreeName) -> Result<Option<KeyValue>, StoreError> {
        match self {
            Disk::Sled(d) => d.last(tree),
            Disk::Sim(d) => d.last(tree),
        }
    }

    /// Calls `f` on every entry with `lo <= key < hi` (`hi = None`: no upper bound), in key
    /// order, stopping at the first error.
    pub fn for_each(
        &self,
        tree: TreeName,
        lo: &[u8],
        hi: Option<&[u8]>,
        f: &mut Visit<'_>,
    ) -> Result<(), StoreError> {
        match self {
            Disk::Sled(d) => d.for_each(tree, lo, hi, f),
            Disk::Sim(d) => d.for_each(tree, lo, hi, f),
        }
    }

    /// Applies a batch atomically (all or nothing on recovery). Not durable by itself.
    pub fn apply(&self, batch: WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        match self {
            Disk::Sled(d) => d.apply(batch),
            Disk::Sim(d) => d.apply(batch),
        }
    }

    /// Applies a batch's writes one by one, in order: on recovery a *prefix* of them is
    /// there (possibly none, possibly all), never a later write without an earlier one.
    /// Not durable by itself.
    ///
    /// For writes that need order but not atomicity, such as a Raft log append (entries
    /// are acknowledged only after a [`durable_flush`](Disk::durable_flush), and a torn
    /// append leaves a contiguous log). On sled it is much cheaper than [`apply`](Disk::apply):
    /// every sled batch or transaction seals and writes sled's I/O buffer twice (once
    /// before and once after its batch manifest; sled 0.34 `PageCache::pin_log`), each
    /// write a `pwrite` and a `sync_file_range` on sled's thread pool, all of which the
    /// next durable flush waits for.
    pub fn apply_in_order(&self, batch: WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        match self {
            Disk::Sled(d) => d.apply_in_order(batch),
            Disk::Sim(d) => d.apply_in_order(batch),
        }
    }

    /// Makes every batch applied before the call durable.
    pub fn durable_flush(&self) -> Result<(), StoreError> {
        match self {
            Disk::Sled(d) => d.durable_flush(),
            Disk::Sim(d) => d.durable_flush(),
        }
    }
}
