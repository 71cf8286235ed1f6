//! The RFC 9162 Merkle tree over ledger entry hashes, kept on disk beside the ledger.
//!
//! [`docket_core::merkle`] owns the hashing (SHA-256, RFC 9162 §2.1), the O(log n) append
//! and the proofs, over its [`MerkleStore`] seam. This module is that seam over the store's
//! disk, and [`LedgerTree`], the read view a [`Replica`](crate::Replica) serves roots and
//! proofs from. The leaves are the 32-byte [`EntryHash`](docket_core::EntryHash) values of
//! the ledger entries, in ledger order: leaf `i` is entry `i`'s stored `hash`.
//!
//! ## Layout
//!
//! Tree `merkle` holds the hash of every *complete* subtree: the node at `(level, index)`
//! covers leaves `[index * 2^level, (index + 1) * 2^level)`. Appending leaf `n` completes
//! the leaf and one parent per trailing one bit of `n` (`t = trailing_ones(n)` of them),
//! and those `t + 1` nodes are stored together, as one record:
//!
//! ```text
//! key    end u64 big-endian     n + 1: the leaf count once the append is done
//! value  (t + 1) * 32 bytes     the hashes of nodes (0, n), (1, n / 2), ... (t, n >> t)
//! ```
//!
//! so node `(level, index)` is bytes `[32 * level, 32 * level + 32)` of the record at
//! `end = (index + 1) * 2^level`, whose `t` is `end.trailing_zeros()`. One append is one
//! write (never torn: a crash keeps a record whole or not at all), and "every node past
//! size `n`" is the single key range `end > n`, as for the ledger. Reads are one point
//! read per node.
//!
//! ## In memory: the frontier
//!
//! An append combines the new leaf with the roots of the complete subtrees to its left
//! (`t` of them), which are always on the tree's right edge: core's
//! [`Frontier`], one root per set bit of the size, at most 64 hashes (`popcount(n) <=
//! log2 n + 1` in use). The [`Store`](crate::Store) keeps it in memory, so an apply reads
//! nothing from the `merkle` tree (it used to read the `t` left siblings back, one point
//! read per append on average, from ever colder parts of sled as the tree grew) and the
//! head of the tree is `popcount(n)` hashes with no reads. It is derived data, loaded from
//! the `popcount(n)` nodes it names: on open (after recovery has made the tree match the
//! applied ledger) and after a snapshot install writes the tree
//! (`Store::reset_merkle_frontier`); an apply replaces it only once its write went
//! through, and refuses to run on a frontier whose size is not where the apply starts.
//!
//! The tree's size is not stored: it is the `applied` record's `ledger_len`, the commit
//! point of both the ledger and the tree ([`crate::store`], "What is atomic"). An apply
//! writes its ledger entries, then their tree records, then the applied record; open removes
//! tree records past the applied length just as it removes ledger entries past it.
//!
//! ## Errors
//!
//! Core's seam is infallible (`get` answers `Option`), so a disk error during a read is
//! kept aside by `DiskNodes` and reported in place of the `MissingNode` the core then
//! sees; a node that is really missing, or a record of the wrong length, is
//! [`StoreError::Corrupt`]. Sizes and indexes out of range are [`TreeError::Refused`],
//! never a panic. Open checks the last leaf against the last ledger entry and loads the
//! frontier (and rebuilds the tree from the ledger if either fails); damage elsewhere
//! shows up as `Corrupt` on the reads that meet it. Appends no longer meet it: they read
//! nothing.

use std::cell::{Cell, RefCell};

use docket_core::merkle::{Frontier, Hash, MerkleError, MerkleStore, MerkleTree};

use crate::disk::{BoxedDisk, TreeName, WriteBatch};
use crate::store::StoreError;

/// The key of the record holding node `(level, index)` (`end`, big-endian), and the
/// node's byte offset in it; `None` if no tree of at most `u64::MAX` leaves has it.
pub(crate) fn node_place(level: u32, index: u64) -> Option<([u8; 8], usize)> {
    let end = index
        .checked_add(1)?
        .checked_mul(1u64.checked_shl(level)?)?;
    Some((end.to_be_bytes(), 32 * level as usize))
}

fn key_end(key: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("Merkle record key of {} bytes", key.len())))?;
    Ok(u64::from_be_bytes(bytes))
}

/// Checks the length of the record at `end` (`32 * (end.trailing_zeros() + 1)` bytes).
fn check_record(end: u64, value: &[u8]) -> Result<(), StoreError> {
    let expected = 32 * (end.trailing_zeros() as usize + 1);
    if end == 0 || value.len() != expected {
        return Err(StoreError::Corrupt(format!(
            "Merkle record {end} holds {} bytes, not {expected}",
            value.len()
        )));
    }
    Ok(())
}

/// Node `(level, index)` out of its record.
fn node_of(level: u32, index: u64, value: &[u8]) -> Result<Hash, StoreError> {
    let (key, at) = node_place(level, index)
        .ok_or_else(|| StoreError::Corrupt(format!("Merkle node ({level}, {index})")))?;
    check_record(u64::from_be_bytes(key), value)?;
    Hash::try_from(&value[at..at + 32])
        .map_err(|_| StoreError::Corrupt(format!("Merkle node (level {level}, index {index})")))
}

/// A root, or a proof, asked of the tree could not be given.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// The size or index is out of range (beyond the ledger, or `0 < m < n` violated for a
    /// consistency proof). The caller asked for something that does not exist.
    #[error(transparent)]
    Refused(MerkleError),
    /// Reading the tree failed, or it lacks a node its size says it holds.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The size and root of the tree over the whole applied ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeHead {
    /// Number of leaves: the ledger length.
    pub size: u64,
    /// RFC 9162 root (`SHA-256("")` for the empty tree).
    pub root: Hash,
}

/// [`MerkleStore`] over the disk, read-only: reads go to the `merkle` tree. (Appends do not
/// go through it: they run on the [`Frontier`] kept in memory, see [`append`].)
pub(crate) struct DiskNodes<'a> {
    disk: &'a BoxedDisk,
    size: u64,
    /// The first disk error a read met (the seam cannot return it).
    error: RefCell<Option<StoreError>>,
    /// Reads that went to the disk.
    reads: Cell<u64>,
}

impl<'a> DiskNodes<'a> {
    pub(crate) fn new(disk: &'a BoxedDisk, size: u64) -> DiskNodes<'a> {
        DiskNodes {
            disk,
            size,
            error: RefCell::new(None),
            reads: Cell::new(0),
        }
    }

    fn fail(&self, error: StoreError) {
        let mut slot = self.error.borrow_mut();
        if slot.is_none() {
            *slot = Some(error);
        }
    }

    /// Disk reads so far.
    pub(crate) fn reads(&self) -> u64 {
        self.reads.get()
    }

    /// Turns the result of a tree operation into ours: a disk error met on the way wins,
    /// a missing node is corruption, anything else is a refusal.
    fn finish<T>(&self, result: Result<T, MerkleError>) -> Result<T, TreeError> {
        if let Some(error) = self.error.borrow_mut().take() {
            return Err(TreeError::Store(error));
        }
        result.map_err(|e| match e {
            MerkleError::MissingNode { level, index } => TreeError::Store(StoreError::Corrupt(
                format!("Merkle node (level {level}, index {index}) is missing"),
            )),
            other => TreeError::Refused(other),
        })
    }
}

impl MerkleStore for DiskNodes<'_> {
    fn get(&self, level: u32, index: u64) -> Option<Hash> {
        let (key, _) = node_place(level, index)?;
        self.reads.set(self.reads.get() + 1);
        match self.disk.get(TreeName::Merkle, &key) {
            Ok(Some(value)) => match node_of(level, index, &value) {
                Ok(hash) => Some(hash),
                Err(e) => {
                    self.fail(e);
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                self.fail(e);
                None
            }
        }
    }

    /// Never called: nothing appends through a read view.
    fn put(&mut self, level: u32, index: u64, _hash: Hash) {
        self.fail(StoreError::Corrupt(format!(
            "Merkle node (level {level}, index {index}) put through a read view"
        )));
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn set_size(&mut self, size: u64) {
        self.size = size;
    }
}

/// Appends `leaves` to the tree whose right edge is `frontier`, adding one record per
/// leaf (the nodes its append completes, level by level) to `batch`. No disk reads: the
/// left siblings an append combines with are the frontier's own roots.
pub(crate) fn append(frontier: &mut Frontier, leaves: &[Hash], batch: &mut WriteBatch) {
    for leaf in leaves {
        let end = frontier.size() + 1;
        let mut record = Vec::with_capacity(32 * (end.trailing_zeros() as usize + 1));
        frontier.append(leaf, |_, _, hash| record.extend_from_slice(hash));
        debug_assert!(check_record(end, &record).is_ok());
        batch.insert(TreeName::Merkle, end.to_be_bytes(), record);
    }
}

/// The frontier of the tree of `size` leaves on `disk`: `popcount(size)` point reads.
pub(crate) fn load_frontier(disk: &BoxedDisk, size: u64) -> Result<Frontier, StoreError> {
    let nodes = DiskNodes::new(disk, size);
    let loaded = Frontier::load(&nodes);
    nodes.finish(loaded).map_err(|e| match e {
        TreeError::Store(e) => e,
        TreeError::Refused(e) => StoreError::Corrupt(format!("Merkle frontier: {e}")),
    })
}

/// The size of the tree on disk: the `end` of its last record (each record is written
/// whole, and in order).
pub(crate) fn stored_size(disk: &BoxedDisk) -> Result<u64, StoreError> {
    let Some((key, value)) = disk.last(TreeName::Merkle)? else {
        return Ok(0);
    };
    let end = key_end(&key)?;
    check_record(end, &value)?;
    Ok(end)
}

/// Adds removals of every record past `size` leaves (`end > size`) to `batch`; returns how
/// many.
pub(crate) fn remove_past(
    disk: &BoxedDisk,
    size: u64,
    batch: &mut WriteBatch,
) -> Result<u64, StoreError> {
    let Some(lo) = size.checked_add(1) else {
        return Ok(0);
    };
    let mut count = 0u64;
    disk.for_each(TreeName::Merkle, &lo.to_be_bytes(), None, &mut |key, _| {
        batch.remove(TreeName::Merkle, key);
        count += 1;
        Ok(())
    })?;
    Ok(count)
}

/// The stored leaf node (`SHA-256(0x00 || entry hash)`) of entry `index`, if any.
pub(crate) fn leaf(disk: &BoxedDisk, index: u64) -> Result<Option<Hash>, StoreError> {
    let Some((key, _)) = node_place(0, index) else {
        return Ok(None);
    };
    match disk.get(TreeName::Merkle, &key)? {
        Some(value) => Ok(Some(node_of(0, index, &value)?)),
        None => Ok(None),
    }
}

/// A read view of the tree over the first `size` ledger entries. Every method is O(log n)
/// disk reads. Obtained from [`Store::ledger_tree`](crate::Store::ledger_tree) or through a
/// [`Replica`](crate::Replica).
pub struct LedgerTree<'a> {
    tree: MerkleTree<DiskNodes<'a>>,
}

impl std::fmt::Debug for LedgerTree<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("LedgerTree")
            .field("size", &self.size())
            .field("reads", &self.reads())
            .finish()
    }
}

impl<'a> LedgerTree<'a> {
    pub(crate) fn new(disk: &'a BoxedDisk, size: u64) -> LedgerTree<'a> {
        LedgerTree {
            tree: MerkleTree::new(DiskNodes::new(disk, size)),
        }
    }

    /// Number of leaves (ledger entries).
    pub fn size(&self) -> u64 {
        self.tree.size()
    }

    /// Size and root of the whole tree.
    pub fn head(&self) -> Result<TreeHead, TreeError> {
        let size = self.size();
        Ok(TreeHead {
            size,
            root: self.root_at(size)?,
        })
    }

    /// The root the tree had at `size` leaves (`size <= self.size()`).
    pub fn root_at(&self, size: u64) -> Result<Hash, TreeError> {
        let result = self.tree.root_at(size);
        self.tree.store().finish(result)
    }

    /// RFC 9162 inclusion proof of entry `index` in the tree of `size` leaves
    /// (`index < size <= self.size()`); check it with
    /// [`verify_inclusion`](docket_core::merkle::verify_inclusion) and the entry's hash.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, TreeError> {
        let result = self.tree.inclusion_proof(index, size);
        self.tree.store().finish(result)
    }

    /// RFC 9162 consistency proof from `m` to `n` leaves (`0 < m < n <= self.size()`);
    /// check it with [`verify_consistency`](docket_core::merkle::verify_consistency).
    pub fn consistency_proof(&self, m: u64, n: u64) -> Result<Vec<Hash>, TreeError> {
        let result = self.tree.consistency_proof(m, n);
        self.tree.store().finish(result)
    }

    /// Disk reads this view has made (for cost tests).
    pub fn reads(&self) -> u64 {
        self.tree.store().reads()
    }
}

#[cfg(test)]
mod tests {
    use docket_core::merkle::{MemStore, MerkleTree};
    use docket_core::LedgerEntry;

    use super::*;
    use crate::disk::test_disk::SimDisk;
    use crate::store::{AppliedRecord, Store};

    fn chain(n: u64) -> Vec<LedgerEntry> {
        docket_core::dev::entry_chain(n, "cost")
    }

    /// Bits needed for `n`: `floor(log2 n) + 1` (0 for 0).
    fn bits(n: u64) -> u64 {
        u64::from(64 - n.leading_zeros())
    }

    #[test]
    fn appends_and_reads_cost_o_log_n_disk_operations() {
        const N: u64 = (1 << 12) + 3;
        let entries = chain(N);
        let disk = SimDisk::new("cost");
        let store = Store::open_on(disk.handle()).expect("open");
        let mut mem = MerkleTree::new(MemStore::default());
        let mut applied = AppliedRecord::default();
        let (mut total_writes, mut max_writes) = (0u64, 0u64);
        let (mut max_append_reads, mut max_view_reads) = (0u64, 0u64);
        for (n, entry) in (0u64..).zip(&entries) {
            // Writes of one apply, counted on the disk: the entry, one tree record, the
            // applied record. The tree record holds the nodes the leaf completes: itself
            // and `trailing_ones` parents. Reads: none; the left siblings it combines
            // with are the frontier's, in memory.
            store.durable_flush().expect("flush");
            applied.ledger_len = n + 1;
            let reads = disk.reads();
            store
                .commit_apply(
                    std::slice::from_ref(entry),
                    None,
                    Default::default(),
                    &applied,
                )
                .expect("apply");
            let append_reads = disk.reads() - reads;
            assert_eq!(append_reads, 0, "apply of leaf {n}");
            max_append_reads = max_append_reads.max(append_reads);
            assert_eq!(disk.pending_batches(), 3, "apply of leaf {n}");
            let record = store
                .disk()
                .get(TreeName::Merkle, &(n + 1).to_be_bytes())
                .expect("read")
                .expect("a record");
            let nodes = record.len() as u64 / 32;
            assert_eq!(nodes, 1 + u64::from(n.trailing_ones()), "apply of leaf {n}");
            assert!(nodes <= 1 + bits(n));
            total_writes += nodes;
            max_writes = max_writes.max(nodes);

            // Reads of the root and of proofs at the new size.
            mem.append(&entry.hash.0).expect("mem append");
            let size = n + 1;
            let view = store.ledger_tree_of(size);
            assert_eq!(view.root_at(size).expect("root"), mem.root().expect("mem"));
            assert_eq!(view.reads(), u64::from(size.count_ones()), "root of {size}");
            let mut worst = view.reads();
            for i in [0, size / 2, size - 1] {
                let view = store.ledger_tree_of(size);
                view.inclusion_proof(i, size).expect("inclusion");
                assert!(view.reads() <= 2 * bits(size), "inclusion {i} in {size}");
                worst = worst.max(view.reads());
            }
            for m in [1, size / 2, size - 1]
                .into_iter()
                .filter(|&m| m > 0 && m < size)
            {
                let view = store.ledger_tree_of(size);
                view.consistency_proof(m, size).expect("consistency");
                assert!(view.reads() <= 2 * bits(size), "consistency {m} to {size}");
                worst = worst.max(view.reads());
            }
            max_view_reads = max_view_reads.max(worst);
        }
        // An average of two nodes per entry: n leaves and n - popcount(n) parents.
        assert_eq!(total_writes, 2 * N - u64::from(N.count_ones()));
        assert_eq!(max_writes, 13, "leaf 4095 completes 12 levels above it");
        assert_eq!(max_append_reads, 0);
        eprintln!(
            "{N} appends: one tree write each, {total_writes} nodes written (max \
             {max_writes} per append), max {max_append_reads} reads per append, max \
             {max_view_reads} reads per root or proof"
        );
    }

    /// The frontier the store keeps in memory is the one its tree on disk loads to, and
    /// the head computed from it is the head read from the disk and core's in-memory root.
    fn assert_frontier_is_the_disk_tree(store: &Store, mem: &MerkleTree<MemStore>) {
        let len = mem.size();
        let frontier = store.merkle_frontier();
        assert_eq!(frontier.size(), len);
        assert_eq!(
            frontier,
            load_frontier(store.disk(), len).expect("load"),
            "frontier at {len}"
        );
        let head = store.ledger_tree_head();
        assert_eq!(head, store.ledger_tree_of(len).head().expect("head"));
        assert_eq!(head.root, mem.root().expect("mem root"), "root at {len}");
    }

    /// Applies `entries` (continuing the store's ledger) as one apply, and to `mem`.
    fn apply_to(store: &Store, mem: &mut MerkleTree<MemStore>, entries: &[LedgerEntry]) {
        let applied = AppliedRecord {
            ledger_len: mem.size() + entries.len() as u64,
            ..AppliedRecord::default()
        };
        store
            .commit_apply(entries, None, Default::default(), &applied)
            .expect("apply");
        for entry in entries {
            mem.append(&entry.hash.0).expect("mem append");
        }
    }

    #[test]
    fn the_frontier_in_memory_follows_the_tree_on_disk() {
        let entries = chain(1_300);
        let disk = SimDisk::new("frontier");
        let store = Store::open_on(disk.handle()).expect("open");
        let mut mem = MerkleTree::new(MemStore::default());
        assert_frontier_is_the_disk_tree(&store, &mem);
        // Many appends, in applies of 1 to 7 entries.
        let (mut at, mut step) = (0usize, 1usize);
        while at < 1_000 {
            let next = (at + step).min(1_000);
            apply_to(&store, &mut mem, &entries[at..next]);
            assert_frontier_is_the_disk_tree(&store, &mem);
            (at, step) = (next, step % 7 + 1);
        }
        // A reopen loads it back.
        store.durable_flush().expect("flush");
        drop(store);
        let store = Store::open_on(disk.handle()).expect("reopen");
        assert_frontier_is_the_disk_tree(&store, &mem);

        // A write that fails (the disk crashed under the store) leaves the frontier where
        // the disk is; the store is then reopened, as the node would be.
        disk.crash_keeping(0);
        let applied = AppliedRecord {
            ledger_len: 1_005,
            ..AppliedRecord::default()
        };
        assert!(store
            .commit_apply(&entries[1_000..1_005], None, Default::default(), &applied)
            .is_err());
        assert_eq!(store.merkle_frontier().size(), 1_000);
        drop(store);

        // A torn tail: an apply of 5 entries whose writes (5 entries, 5 tree records,
        // the applied record) reached the disk only in part, cut at every write. Open
        // rolls the tree back to the applied record, and the frontier with it: the
        // appends after it must give core's roots (a frontier left at 1,005, or built
        // from the removed records, would not).
        let store = Store::open_on(disk.handle()).expect("reopen");
        assert_frontier_is_the_disk_tree(&store, &mem);
        drop(store);
        for keep in 0..=11 {
            let disk = SimDisk::new(&format!("frontier-torn-{keep}"));
            let store = Store::open_on(disk.handle()).expect("open");
            let mut mem = MerkleTree::new(MemStore::default());
            apply_to(&store, &mut mem, &entries[..1_000]);
            store.durable_flush().expect("flush");
            let applied = AppliedRecord {
                ledger_len: 1_005,
                ..AppliedRecord::default()
            };
            store
                .commit_apply(&entries[1_000..1_005], None, Default::default(), &applied)
                .expect("apply");
            assert_eq!(disk.pending_batches(), 11);
            drop(store);
            disk.crash_keeping(keep);
            let store = Store::open_on(disk.handle()).expect("reopen");
            if keep == 11 {
                // The applied record made it: the apply happened.
                for entry in &entries[1_000..1_005] {
                    mem.append(&entry.hash.0).expect("mem append");
                }
            }
            assert_frontier_is_the_disk_tree(&store, &mem);
            let at = mem.size() as usize;
            for chunk in entries[at..at + 200].chunks(3) {
                apply_to(&store, &mut mem, chunk);
            }
            assert_frontier_is_the_disk_tree(&store, &mem);
        }
    }

    #[test]
    fn a_damaged_tree_is_an_error_not_a_panic() {
        let entries = chain(8);
        let disk = SimDisk::new("damaged");
        let store = Store::open_on(disk.handle()).expect("open");
        let applied = AppliedRecord {
            ledger_len: 7,
            ..AppliedRecord::default()
        };
        store
            .commit_apply(&entries[..7], None, Default::default(), &applied)
            .expect("apply");
        let corrupt =
            |r: Result<Hash, TreeError>| matches!(r, Err(TreeError::Store(StoreError::Corrupt(_))));
        // Record 4 (leaf 3, nodes (1, 1) and (2, 0)) cut short.
        store.write_raw(TreeName::Merkle, &4u64.to_be_bytes(), &[1; 32]);
        let view = store.ledger_tree_of(7);
        assert!(corrupt(view.root_at(4)));
        assert!(corrupt(view.root_at(7)));
        assert!(view.root_at(2).is_ok(), "record 2 is intact");
        assert!(matches!(
            view.inclusion_proof(6, 7),
            Err(TreeError::Store(StoreError::Corrupt(_)))
        ));
        // Record 6 missing.
        let mut batch = WriteBatch::default();
        batch.remove(TreeName::Merkle, 6u64.to_be_bytes());
        store.disk().apply(batch).expect("remove");
        assert!(corrupt(store.ledger_tree_of(7).root_at(6)));
        // An append reads nothing from the disk (its left siblings are the frontier's, in
        // memory), so damage it would have met does not stop it, and the nodes it writes
        // are right: the root at 8 is record 8's top node, computed from the frontier.
        let applied = AppliedRecord {
            ledger_len: 8,
            ..AppliedRecord::default()
        };
        store
            .commit_apply(&entries[7..], None, Default::default(), &applied)
            .expect("apply");
        let mut mem = MerkleTree::new(MemStore::default());
        for entry in &entries {
            mem.append(&entry.hash.0).expect("append");
        }
        assert_eq!(
            store.ledger_tree_of(8).root_at(8).expect("root"),
            mem.root_at(8).expect("mem")
        );
        assert_eq!(store.ledger_tree_head().root, mem.root_at(8).expect("mem"));
        assert!(corrupt(store.ledger_tree_of(8).root_at(6)), "still damaged");
        // Open checks the last leaf and loads the frontier: damage there (record 8 holds
        // leaf 7 and the frontier's only node) makes it rebuild the whole tree from the
        // ledger (the tree is derived data); damage elsewhere stays an error on the reads
        // that meet it.
        store.write_raw(TreeName::Merkle, &8u64.to_be_bytes(), &[1; 128]);
        drop(store);
        let store = Store::open_on(disk.handle()).expect("reopen");
        let view = store.ledger_tree().expect("tree");
        for m in 0..=8 {
            assert_eq!(view.root_at(m).expect("root"), mem.root_at(m).expect("mem"));
        }
        assert_eq!(store.ledger_tree_head().root, mem.root_at(8).expect("mem"));

        // A last record of the wrong length is rebuilt too.
        store.write_raw(TreeName::Merkle, &8u64.to_be_bytes(), &[1; 64]);
        store.write_raw(TreeName::Merkle, &2u64.to_be_bytes(), &[1; 64]);
        drop(store);
        let store = Store::open_on(disk.handle()).expect("reopen");
        let view = store.ledger_tree().expect("tree");
        for m in 0..=8 {
            assert_eq!(view.root_at(m).expect("root"), mem.root_at(m).expect("mem"));
        }

        // A damaged frontier node that is not the last leaf: the tail check passes, the
        // frontier does not load, and open rebuilds rather than fail or append on it.
        // At 7 leaves the frontier is (2, 0), (1, 2), (0, 6); record 4 holds (2, 0) after
        // (0, 3) and (1, 1): cut it short. (Damage that keeps a record's length is not
        // detectable without rehashing the subtree, as before the frontier.)
        let store = {
            let disk = SimDisk::new("damaged-frontier");
            let store = Store::open_on(disk.handle()).expect("open");
            let applied = AppliedRecord {
                ledger_len: 7,
                ..AppliedRecord::default()
            };
            store
                .commit_apply(&entries[..7], None, Default::default(), &applied)
                .expect("apply");
            store.write_raw(TreeName::Merkle, &4u64.to_be_bytes(), &[1; 64]);
            drop(store);
            Store::open_on(disk.handle()).expect("reopen")
        };
        assert_eq!(store.merkle_frontier().size(), 7);
        assert_eq!(store.ledger_tree_head().root, mem.root_at(7).expect("mem"));
        let view = store.ledger_tree().expect("tree");
        for m in 0..=7 {
            assert_eq!(view.root_at(m).expect("root"), mem.root_at(m).expect("mem"));
        }
    }

    #[test]
    fn nodes_live_in_the_record_of_the_append_that_completed_them() {
        let place = |level, index| node_place(level, index).expect("place");
        let end = |level, index| u64::from_be_bytes(place(level, index).0);
        // Leaf 5 and node (1, 2) are completed by the append of leaf 5.
        assert_eq!(place(0, 5), (6u64.to_be_bytes(), 0));
        assert_eq!(place(1, 2), (6u64.to_be_bytes(), 32));
        // Leaf 7 completes (1, 3), (2, 1) and (3, 0): four nodes in record 8.
        assert_eq!(place(3, 0), (8u64.to_be_bytes(), 96));
        assert_eq!(end(2, 1), 8);
        assert!(place(0, 255).0 < place(0, 256).0);
        // Nodes beyond any u64-sized tree have no place.
        assert_eq!(node_place(64, 0), None);
        assert_eq!(node_place(1, u64::MAX / 2), None);
        assert_eq!(node_place(0, u64::MAX), None);
        assert!(node_place(63, 0).is_some());
        // Record lengths follow the trailing zeros of `end`.
        assert!(check_record(8, &[0; 128]).is_ok());
        assert!(check_record(8, &[0; 96]).is_err());
        assert!(check_record(7, &[0; 32]).is_ok());
        assert!(check_record(0, &[0; 32]).is_err());
    }
}
