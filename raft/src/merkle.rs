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
//! never a panic. Open checks only the last leaf against the last ledger entry (and
//! rebuilds the tree from the ledger if they differ); damage elsewhere shows up as
//! `Corrupt` on the reads that meet it.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use docket_core::merkle::{Hash, MerkleError, MerkleStore, MerkleTree};

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

/// [`MerkleStore`] over the disk: reads go to nodes put during this operation first, then
/// to the `merkle` tree; puts are collected in order for the caller to write.
pub(crate) struct DiskNodes<'a> {
    disk: &'a BoxedDisk,
    size: u64,
    /// Nodes put and not yet written, for reads.
    overlay: BTreeMap<(u32, u64), Hash>,
    /// The same nodes, in the order they were put.
    put: Vec<(u32, u64, Hash)>,
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
            overlay: BTreeMap::new(),
            put: Vec::new(),
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

    /// Adds the nodes put so far to `batch`, one record per append, in order. Core's
    /// append puts the leaf, then each parent it completes, so an append's nodes are
    /// consecutive and level-ordered.
    fn write_into(&self, batch: &mut WriteBatch) -> Result<(), StoreError> {
        let mut record: Option<(u64, Vec<u8>)> = None;
        for &(level, index, hash) in &self.put {
            let (key, at) = node_place(level, index).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "Merkle node (level {level}, index {index}) has no place"
                ))
            })?;
            let end = u64::from_be_bytes(key);
            match &mut record {
                Some((current, bytes)) if *current == end && bytes.len() == at => {
                    bytes.extend_from_slice(&hash);
                }
                _ => {
                    if let Some((end, bytes)) = record.take() {
                        check_record(end, &bytes)?;
                        batch.insert(TreeName::Merkle, end.to_be_bytes(), bytes);
                    }
                    if at != 0 {
                        return Err(StoreError::Corrupt(format!(
                            "Merkle append of leaf {} began at level {level}",
                            end - 1
                        )));
                    }
                    record = Some((end, hash.to_vec()));
                }
            }
        }
        if let Some((end, bytes)) = record {
            check_record(end, &bytes)?;
            batch.insert(TreeName::Merkle, end.to_be_bytes(), bytes);
        }
        Ok(())
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
        if let Some(hash) = self.overlay.get(&(level, index)) {
            return Some(*hash);
        }
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

    fn put(&mut self, level: u32, index: u64, hash: Hash) {
        self.overlay.insert((level, index), hash);
        self.put.push((level, index, hash));
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn set_size(&mut self, size: u64) {
        self.size = size;
    }
}

/// Appends `leaves` to the tree of `size` leaves on `disk`, adding the nodes to write to
/// `batch` (in the order the appends put them). Returns how many reads went to the disk.
pub(crate) fn append(
    disk: &BoxedDisk,
    size: u64,
    leaves: &[Hash],
    batch: &mut WriteBatch,
) -> Result<u64, StoreError> {
    if leaves.is_empty() {
        return Ok(0);
    }
    let mut tree = MerkleTree::new(DiskNodes::new(disk, size));
    for leaf in leaves {
        let appended = tree.append(leaf);
        tree.store().finish(appended).map_err(|e| match e {
            TreeError::Store(e) => e,
            TreeError::Refused(e) => StoreError::Corrupt(format!("Merkle append: {e}")),
        })?;
    }
    tree.store().write_into(batch)?;
    Ok(tree.store().reads())
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
    use docket_core::{ConstitutionVersion, EntryHash, LedgerEntry, LedgerId, LedgerIndex};
    use docket_core::{LedgerTime, Record};

    use super::*;
    use crate::disk::test_disk::SimDisk;
    use crate::store::{AppliedRecord, Store};

    /// A hash chain of `n` entries (the store checks neither chain nor records).
    fn chain(n: u64) -> Vec<LedgerEntry> {
        let ledger_id = LedgerId::new("cost").expect("id");
        let mut prev = EntryHash::ZERO;
        (0..n)
            .map(|i| {
                let entry = LedgerEntry::seal(
                    LedgerIndex(i),
                    LedgerTime(i),
                    ConstitutionVersion([2; 32]),
                    prev,
                    Record::Genesis {
                        ledger_id: ledger_id.clone(),
                        document: format!("{i}"),
                    },
                );
                prev = entry.hash;
                entry
            })
            .collect()
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
            // Reads of one append: the left siblings it completes, from the disk.
            let mut batch = WriteBatch::default();
            let reads = append(store.disk(), n, &[entry.hash.0], &mut batch).expect("append");
            assert_eq!(reads, u64::from(n.trailing_ones()), "append of leaf {n}");
            max_append_reads = max_append_reads.max(reads);

            // Writes of one apply, counted on the disk: the entry, one tree record, the
            // applied record. The tree record holds the nodes the leaf completes: itself
            // and `trailing_ones` parents.
            store.durable_flush().expect("flush");
            applied.ledger_len = n + 1;
            store
                .commit_apply(std::slice::from_ref(entry), &applied)
                .expect("apply");
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
        assert_eq!(max_append_reads, 12);
        eprintln!(
            "{N} appends: one tree write each, {total_writes} nodes written (max \
             {max_writes} per append), max {max_append_reads} reads per append, max \
             {max_view_reads} reads per root or proof"
        );
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
        store.commit_apply(&entries[..7], &applied).expect("apply");
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
        // An append that needs a damaged node fails rather than write a wrong tree.
        let applied = AppliedRecord {
            ledger_len: 8,
            ..AppliedRecord::default()
        };
        assert!(store.commit_apply(&entries[7..], &applied).is_err());
        // Open checks only the last leaf: damage there makes it rebuild the whole tree
        // from the ledger (the tree is derived data); damage elsewhere stays an error on
        // the reads that meet it.
        store.write_raw(TreeName::Merkle, &7u64.to_be_bytes(), &[1; 32]);
        drop(store);
        let store = Store::open_on(disk.handle()).expect("reopen");
        let mut mem = MerkleTree::new(MemStore::default());
        for entry in &entries[..7] {
            mem.append(&entry.hash.0).expect("append");
        }
        let view = store.ledger_tree().expect("tree");
        for m in 0..=7 {
            assert_eq!(view.root_at(m).expect("root"), mem.root_at(m).expect("mem"));
        }

        // A last record of the wrong length is rebuilt too.
        store.write_raw(TreeName::Merkle, &7u64.to_be_bytes(), &[1; 64]);
        store.write_raw(TreeName::Merkle, &2u64.to_be_bytes(), &[1; 64]);
        drop(store);
        let store = Store::open_on(disk.handle()).expect("reopen");
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
