//! The governance state as rows, and the commitment that covers them.
//!
//! Everything in the state that grows with the ledger (every subject, the status of every
//! proposal ever decided) and the deferred set are **rows**: a key naming the table and
//! the record, and the record's canonical bytes. [`State`](crate::State) reads rows
//! through a [`Rows`] store and keeps the rows it changed in a pending overlay until the
//! caller takes them ([`State::take_changes`](crate::State::take_changes)); a node writes
//! them to disk in the batch that commits the apply, so its memory holds the overlay of one
//! apply, not the state. Pure uses (tests, the simulator's checkers, `docket ledger
//! verify`) never take the changes: the overlay then is the whole state, in memory.
//!
//! ## Keys
//!
//! | table    | key                                                   | value (canonical bytes) |
//! |----------|-------------------------------------------------------|-------------------------|
//! | subject  | `s`, domain length (`u32` big-endian), domain, subject | `SubjectState`          |
//! | proposal | `p`, proposal id (32 bytes)                           | `ProposalRecord`        |
//! | deferred | `d`, proposal id (32 bytes)                           | `Deferred`              |
//! | outcome  | `o`, outcome reference (32 bytes)                     | `OutcomeRecord`         |
//!
//! Outcome rows (one per effect whose outcome was recorded through an `outcome_*` update,
//! keyed by [`ProposalId::outcome_of`] the effect) are in the lattice like every row, but
//! not in the row counts, whose layout predates them (so states without outcome rows keep
//! their hash).
//!
//! The length prefix makes a domain's subjects one contiguous key range, in subject name
//! order (byte order, the order of `String`).
//!
//! ## The commitment
//!
//! The rows are committed to by a **lattice hash** (LtHash, Bellare–Micciancio's
//! incremental hash as specified by Lewi et al., "Securing Update Propagation with
//! Homomorphic Hashing", 2019, with 1024 lanes of 16 bits): each row hashes, with BLAKE3
//! in extendable-output mode, to 2048 bytes read as 1024 little-endian `u16` lanes; the
//! commitment of a set of rows is the lane-wise sum (wrapping) of its rows' hashes. Adding
//! a row adds its hash, removing one subtracts it, so keeping the commitment is O(1) per
//! changed row and reading it is O(1), whatever the size of the state; the order rows
//! were written in does not matter. Its digest, BLAKE3 over a tag and the 2048 bytes, goes
//! into the state hash. The hash of a row is BLAKE3 XOF over
//! `TAG_STATE_ROW || key length (u64 LE) || key || value`.
//!
//! A lattice hash proves the whole state, not one row: a proof that one subject has a
//! given state needs an authenticated map (a Merkle tree over the rows), which costs
//! O(log n) node writes per changed row. That is the next step (see ARCHITECTURE.md,
//! "State commitment").

use std::fmt;

use crate::id::ProposalId;

/// Domain separation of a row's hash.
pub const TAG_STATE_ROW: &[u8] = b"docket/state-row/v1\0";
/// Domain separation of the lattice digest.
pub const TAG_LATTICE: &[u8] = b"docket/state-lattice/v1\0";

/// Table byte of subject rows.
pub const TABLE_SUBJECT: u8 = b's';
/// Table byte of proposal status rows.
pub const TABLE_PROPOSAL: u8 = b'p';
/// Table byte of deferred proposal rows.
pub const TABLE_DEFERRED: u8 = b'd';
/// Table byte of outcome rows.
pub const TABLE_OUTCOME: u8 = b'o';

/// Where a state's settled rows live. Reads only: a state never writes its store; whoever
/// owns the store writes what [`State::take_changes`](crate::State::take_changes) returns.
///
/// A store that cannot read (an I/O error on a node's disk) panics: a state that cannot
/// see its own rows must not decide anything, and a node stops rather than diverge.
pub trait Rows: fmt::Debug + Send + Sync {
    /// The settled value of `key`.
    fn get(&self, key: &[u8]) -> Option<Vec<u8>>;
    /// Every settled row whose key starts with `prefix`, in key order.
    fn scan(&self, prefix: &[u8], visit: &mut dyn FnMut(&[u8], &[u8]));
}

/// A store with no rows: the state lives wholly in its pending overlay.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoRows;

impl Rows for NoRows {
    fn get(&self, _key: &[u8]) -> Option<Vec<u8>> {
        None
    }

    fn scan(&self, _prefix: &[u8], _visit: &mut dyn FnMut(&[u8], &[u8])) {}
}

/// Rows in memory, written with [`MemRows::write`]: a store for tests and tools that want
/// the settled/pending split without a disk.
#[derive(Debug, Default)]
pub struct MemRows(std::sync::RwLock<std::collections::BTreeMap<Vec<u8>, Vec<u8>>>);

impl MemRows {
    /// Writes what [`State::take_changes`](crate::State::take_changes) returned.
    pub fn write(&self, changes: crate::state::Changes) {
        let mut rows = self.0.write().unwrap_or_else(|p| p.into_inner());
        for (key, value) in changes.rows {
            match value {
                Some(value) => rows.insert(key, value),
                None => rows.remove(&key),
            };
        }
    }

    /// How many keys it holds (rows and records).
    pub fn len(&self) -> usize {
        self.0.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Rows for MemRows {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    fn scan(&self, prefix: &[u8], visit: &mut dyn FnMut(&[u8], &[u8])) {
        let rows = self.0.read().unwrap_or_else(|p| p.into_inner());
        for (key, value) in rows.range(prefix.to_vec()..) {
            if !key.starts_with(prefix) {
                break;
            }
            visit(key, value);
        }
    }
}

/// The key prefix of a domain's subject rows.
pub fn subject_prefix(domain: &str) -> Vec<u8> {
    let len = u32::try_from(domain.len()).expect("invariant: a domain name is under 4 GiB");
    let mut key = Vec::with_capacity(1 + 4 + domain.len());
    key.push(TABLE_SUBJECT);
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(domain.as_bytes());
    key
}

/// The key of a subject row.
pub fn subject_key(domain: &str, subject: &str) -> Vec<u8> {
    let mut key = subject_prefix(domain);
    key.extend_from_slice(subject.as_bytes());
    key
}

/// The key of a proposal status row.
pub fn proposal_key(id: &ProposalId) -> Vec<u8> {
    table_id_key(TABLE_PROPOSAL, id)
}

/// The key of an outcome row: the table byte and the outcome reference.
pub fn outcome_key(reference: &ProposalId) -> Vec<u8> {
    table_id_key(TABLE_OUTCOME, reference)
}

/// The key of a deferred proposal row.
pub fn deferred_key(id: &ProposalId) -> Vec<u8> {
    table_id_key(TABLE_DEFERRED, id)
}

fn table_id_key(table: u8, id: &ProposalId) -> Vec<u8> {
    let mut key = Vec::with_capacity(33);
    key.push(table);
    key.extend_from_slice(&id.0);
    key
}

/// Lanes of the lattice hash.
pub const LANES: usize = 1024;
/// Bytes of the lattice hash (`LANES` little-endian `u16`s).
pub const LATTICE_BYTES: usize = LANES * 2;

/// The lattice hash of a set of rows (see the module docs).
#[derive(Clone, PartialEq, Eq)]
pub struct Lattice(Box<[u16; LANES]>);

impl fmt::Debug for Lattice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lattice({})", hex::encode(self.digest()))
    }
}

impl Default for Lattice {
    fn default() -> Lattice {
        Lattice::empty()
    }
}

fn row_lanes(key: &[u8], value: &[u8]) -> [u16; LANES] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(TAG_STATE_ROW);
    hasher.update(&(key.len() as u64).to_le_bytes());
    hasher.update(key);
    hasher.update(value);
    let mut bytes = [0u8; LATTICE_BYTES];
    hasher.finalize_xof().fill(&mut bytes);
    let mut lanes = [0u16; LANES];
    for (lane, pair) in lanes.iter_mut().zip(bytes.chunks_exact(2)) {
        *lane = u16::from_le_bytes([pair[0], pair[1]]);
    }
    lanes
}

impl Lattice {
    /// The commitment of no rows.
    pub fn empty() -> Lattice {
        Lattice(Box::new([0; LANES]))
    }

    /// Adds the row `key = value`.
    pub fn insert(&mut self, key: &[u8], value: &[u8]) {
        for (sum, lane) in self.0.iter_mut().zip(row_lanes(key, value)) {
            *sum = sum.wrapping_add(lane);
        }
    }

    /// Removes the row `key = value` (which must have been added).
    pub fn remove(&mut self, key: &[u8], value: &[u8]) {
        for (sum, lane) in self.0.iter_mut().zip(row_lanes(key, value)) {
            *sum = sum.wrapping_sub(lane);
        }
    }

    /// BLAKE3 over `TAG_LATTICE` and the lanes: what the state hash covers.
    pub fn digest(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        hasher.update(TAG_LATTICE);
        hasher.update(&self.to_bytes());
        *hasher.finalize().as_bytes()
    }

    /// The lanes as `LATTICE_BYTES` little-endian bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.iter().flat_map(|lane| lane.to_le_bytes()).collect()
    }

    /// The lattice of [`Lattice::to_bytes`]; `None` for any other length.
    pub fn from_bytes(bytes: &[u8]) -> Option<Lattice> {
        if bytes.len() != LATTICE_BYTES {
            return None;
        }
        let mut lanes = Box::new([0u16; LANES]);
        for (lane, pair) in lanes.iter_mut().zip(bytes.chunks_exact(2)) {
            *lane = u16::from_le_bytes([pair[0], pair[1]]);
        }
        Some(Lattice(lanes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn subject_keys_group_a_domain_in_name_order() {
        let a = subject_key("settlement", "a");
        let b = subject_key("settlement", "b");
        assert!(a < b);
        assert!(a.starts_with(&subject_prefix("settlement")));
        // A domain that is a prefix of another does not share its key range.
        assert!(!subject_key("settlementx", "a").starts_with(&subject_prefix("settlement")));
    }

    #[test]
    fn a_row_and_its_removal_cancel_and_values_matter() {
        let mut lattice = Lattice::empty();
        lattice.insert(b"k", b"v1");
        let one = lattice.clone();
        lattice.insert(b"k2", b"v");
        lattice.remove(b"k2", b"v");
        assert_eq!(lattice, one);
        let mut other = Lattice::empty();
        other.insert(b"k", b"v2");
        assert_ne!(other.digest(), one.digest());
        // Moving bytes between key and value is a different row.
        let mut shifted = Lattice::empty();
        shifted.insert(b"kv", b"1");
        assert_ne!(shifted.digest(), one.digest());
        assert_eq!(Lattice::from_bytes(&one.to_bytes()), Some(one));
        assert_eq!(Lattice::from_bytes(&[0; 3]), None);
    }

    proptest! {
        /// The commitment depends on the set of rows, not on the order they were written.
        #[test]
        fn the_commitment_is_the_set_not_the_order(
            rows in proptest::collection::btree_map(
                proptest::collection::vec(any::<u8>(), 0..8),
                proptest::collection::vec(any::<u8>(), 0..8),
                0..16,
            ),
            seed in any::<u64>(),
        ) {
            let mut forward = Lattice::empty();
            for (k, v) in &rows {
                forward.insert(k, v);
            }
            let mut shuffled: Vec<_> = rows.iter().collect();
            let len = shuffled.len().max(1);
            shuffled.rotate_left((seed as usize) % len);
            let mut other = Lattice::empty();
            for (k, v) in shuffled {
                other.insert(k, v);
            }
            prop_assert_eq!(forward, other);
        }
    }
}
