//! The rows a snapshot install's replay reads and writes: the generation the install
//! builds, which begins empty, with a filter of the keys written to it so far.
//!
//! A replay reads a row for nearly every entry it applies (the subject's, and the
//! proposal's for its record), and nearly every such row is new: a deposit to a subject
//! of its own, a proposal id never seen. Each of those reads was a miss the storage
//! engine had to prove, through its memtable's skip list and then each table's filter:
//! in a profile of an install of 100,000 entries, a quarter of the replay's thread
//! (`install` group of `raft/benches/apply.rs`). Here a Bloom filter of every key the
//! replay has written answers most of them without the store.
//!
//! Sound because nothing else writes the generation: [`Store::begin_install`] removes
//! whatever an earlier install left in it, every row the replay writes passes through
//! [`InstallRows::write`] (which records its key before the store has it), and a row not
//! yet written is in the state's own overlay, which [`State`](docket_core::State) reads
//! first. A key the filter has never seen was never written, so the store holds no row
//! for it; a false positive costs the read it would have cost anyway. The filter belongs
//! to the install only: once the replay ends, the state reads its rows through
//! [`StoreRows`](super::StoreRows), as every state does.
//!
//! Why not a crate: no Bloom filter is in the dependency tree, and this one is a bit
//! array and two hashes; what matters is the soundness argument above, which no crate
//! makes for us.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use docket_core::rows::Rows;
use docket_core::state::Changes;

use super::StoreRows;
use crate::store::{Staging, Store, StoreError};

/// Bits of filter per row the install is expected to write (1% false positives at 7
/// hashes).
const FILTER_BITS_PER_ROW: u64 = 10;
/// Snapshot bytes per row the replay writes, for sizing the filter before the snapshot is
/// read: an entry takes a few hundred bytes (a signed proposal: 560 in the growth
/// benchmark) and writes two rows (its subject, its proposal record), so this
/// overestimates, which costs memory within [`FILTER_BYTES_MAX`], never reads.
const SNAPSHOT_BYTES_PER_ROW: u64 = 128;
/// The filter's memory, at most: 8 MiB. Past the ~6.7M rows this holds at 10 bits each
/// (an install of ~3.4M entries), false positives rise (about 1 in 5 at 20M rows, where
/// the filter still answers four reads in five); memory does not.
pub const FILTER_BYTES_MAX: u64 = 8 * 1024 * 1024;
/// The filter's memory, at least (a genesis-only ledger still gets a useful one).
const FILTER_BYTES_MIN: u64 = 4096;

/// A Bloom filter over row keys, lock-free (the state reads rows through `&self`).
#[derive(Debug)]
struct KeyFilter {
    words: Box<[AtomicU64]>,
    /// Bits, a power of two.
    mask: u64,
    hashes: u32,
}

impl KeyFilter {
    /// A filter for about `rows` keys.
    fn for_rows(rows: u64) -> KeyFilter {
        let bits = rows
            .saturating_mul(FILTER_BITS_PER_ROW)
            .clamp(FILTER_BYTES_MIN * 8, FILTER_BYTES_MAX * 8)
            .next_power_of_two()
            .min(FILTER_BYTES_MAX * 8);
        let per_row = bits as f64 / rows.max(1) as f64;
        let hashes = (per_row * std::f64::consts::LN_2).round().clamp(1.0, 7.0) as u32;
        KeyFilter {
            words: (0..bits / 64).map(|_| AtomicU64::new(0)).collect(),
            mask: bits - 1,
            hashes,
        }
    }

    /// The key's bit positions: double hashing (Kirsch and Mitzenmacher) of one 64-bit
    /// hash. SipHash with the standard library's fixed keys: the filter is this node's
    /// alone and lives for one install, so nothing needs it keyed or stable.
    fn positions(&self, key: &[u8]) -> impl Iterator<Item = u64> + '_ {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        let h = hasher.finish();
        let (h1, h2) = (h, h.rotate_left(32) | 1);
        (0..u64::from(self.hashes)).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) & self.mask)
    }

    fn insert(&self, key: &[u8]) {
        for bit in self.positions(key) {
            self.words[(bit / 64) as usize].fetch_or(1 << (bit % 64), Ordering::Relaxed);
        }
    }

    fn may_contain(&self, key: &[u8]) -> bool {
        self.positions(key).all(|bit| {
            self.words[(bit / 64) as usize].load(Ordering::Relaxed) & (1 << (bit % 64)) != 0
        })
    }
}

/// The rows of the generation a snapshot install builds (see the module docs): the store's
/// own reader of that generation, asked only about keys the filter may have seen.
#[derive(Debug)]
pub(crate) struct InstallRows {
    rows: StoreRows,
    written: KeyFilter,
}

impl InstallRows {
    /// For the install `staging` begins, of a snapshot of `snapshot_bytes` bytes.
    pub(crate) fn new(
        store: Arc<Store>,
        staging: &Staging<'_>,
        snapshot_bytes: u64,
    ) -> InstallRows {
        InstallRows {
            rows: StoreRows {
                store,
                generation: staging.generation(),
            },
            written: KeyFilter::for_rows(snapshot_bytes / SNAPSHOT_BYTES_PER_ROW),
        }
    }

    /// Writes a page of the replay's rows through `staging`, their keys recorded first.
    pub(crate) fn write(&self, staging: &Staging<'_>, changes: Changes) -> Result<(), StoreError> {
        for (key, _) in &changes.rows {
            self.written.insert(key);
        }
        staging.rows(changes)
    }
}

impl Rows for InstallRows {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        if !self.written.may_contain(key) {
            return None;
        }
        self.rows.get(key)
    }

    fn scan(&self, prefix: &[u8], visit: &mut dyn FnMut(&[u8], &[u8])) {
        self.rows.scan(prefix, visit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_inserted_is_always_found_and_most_others_are_not() {
        // Sized for 1,000 keys, given 1,000: no inserted key may be missed, and about 1%
        // of the others may be reported.
        let filter = KeyFilter::for_rows(1_000);
        let key = |i: u32| format!("p/{i:08}").into_bytes();
        for i in 0..1_000 {
            filter.insert(&key(i));
        }
        assert!((0..1_000).all(|i| filter.may_contain(&key(i))));
        let false_positives = (1_000..101_000)
            .filter(|&i| filter.may_contain(&key(i)))
            .count();
        assert!(
            false_positives < 3_000,
            "{false_positives} of 100,000 absent keys reported present"
        );
    }

    #[test]
    fn the_filter_is_bounded_whatever_the_ledger() {
        let huge = KeyFilter::for_rows(u64::MAX);
        assert_eq!(huge.words.len() as u64 * 8, FILTER_BYTES_MAX);
        assert_eq!(huge.hashes, 1);
        let empty = KeyFilter::for_rows(0);
        assert_eq!(empty.words.len() as u64 * 8, FILTER_BYTES_MIN);
        assert!(!empty.may_contain(b"anything"));
    }
}
