//! An RFC 9162 Merkle tree over entry hashes, kept incrementally over a storage seam.
//!
//! # Why RFC 9162
//!
//! The hashing is exactly RFC 9162 (Certificate Transparency v2) §2.1 with SHA-256, as the
//! RFC specifies: a leaf is `SHA-256(0x00 || leaf)`, an interior node is
//! `SHA-256(0x01 || left || right)`, and the empty tree is `SHA-256("")`. The leaves are the
//! 32-byte ledger entry hashes. Conforming to the RFC (rather than reusing BLAKE3, which the
//! hash chain uses) means any CT or C2SP `tlog` verifier can check our roots, inclusion proofs
//! and consistency proofs without knowing anything about docket.
//!
//! # Storage
//!
//! [`MerkleStore`] holds the hash of every *complete* subtree: the node at `(level, index)`
//! covers leaves `[index * 2^level, (index + 1) * 2^level)`. [`MerkleTree::append`] writes the
//! new leaf and each subtree it completes, so O(log n) writes per append. The root of any
//! size `m <= size` is the RFC's recursive MTH with every left half read as one stored node,
//! so O(log n) reads; proofs likewise. Core defines the trait; [`MemStore`] is an in-memory
//! `BTreeMap` implementation for tests, and the raft crate implements it over its disk
//! (`docket_raft::merkle`: tree `merkle`, maintained with every apply).
//!
//! [`Frontier`] is the tree's right edge alone (one subtree root per set bit of the size,
//! at most 64 hashes): enough to append with no reads and to give the current root, so a
//! store that keeps it in memory appends with writes only. The raft crate does.
//!
//! # Status
//!
//! Stored by every replica beside its ledger, and served by `docket_raft::Replica` (roots
//! at any size, inclusion and consistency proofs). Not yet in any hashed, signed or
//! replicated format (no checkpoint or snapshot field carries a root): that is a format
//! change that comes later. Nothing here changes any entry, proposal or state hash.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// A SHA-256 digest: a leaf value, a node hash or a root.
pub type Hash = [u8; 32];

/// Why a Merkle operation or proof check refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    /// An inclusion proof was asked for, or checked, at a leaf the tree of that size lacks.
    #[error("leaf index {index} is not in a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    /// A root or proof was asked for at a size beyond what the store holds.
    #[error("size {size} is beyond the tree's {tree_size} leaves")]
    SizeBeyondTree { size: u64, tree_size: u64 },
    /// RFC 9162 consistency proofs are defined only for `0 < m < n`.
    #[error("consistency proof needs 0 < m < n, got m = {m}, n = {n}")]
    NotIncreasing { m: u64, n: u64 },
    /// The proof has more or fewer hashes than the sizes require.
    #[error("proof has the wrong number of hashes ({len})")]
    WrongProofLength { len: usize },
    /// The proof does not lead to the given root(s).
    #[error("proof does not match the root")]
    RootMismatch,
    /// The store lacks a node the tree's size says it must hold.
    #[error("store is missing node (level {level}, index {index})")]
    MissingNode { level: u32, index: u64 },
}

/// Storage for complete-subtree node hashes, keyed by `(level, index)`, plus the leaf count.
pub trait MerkleStore {
    /// The hash of the complete subtree at `(level, index)`, if stored.
    fn get(&self, level: u32, index: u64) -> Option<Hash>;
    /// Stores the hash of the complete subtree at `(level, index)`.
    fn put(&mut self, level: u32, index: u64, hash: Hash);
    /// The number of leaves appended.
    fn size(&self) -> u64;
    /// Records the number of leaves appended (called after the nodes of an append are put).
    fn set_size(&mut self, size: u64);
}

/// An in-memory [`MerkleStore`] (tests and benches).
#[derive(Debug, Default, Clone)]
pub struct MemStore {
    nodes: BTreeMap<(u32, u64), Hash>,
    size: u64,
}

impl MerkleStore for MemStore {
    fn get(&self, level: u32, index: u64) -> Option<Hash> {
        self.nodes.get(&(level, index)).copied()
    }
    fn put(&mut self, level: u32, index: u64, hash: Hash) {
        self.nodes.insert((level, index), hash);
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn set_size(&mut self, size: u64) {
        self.size = size;
    }
}

/// RFC 9162 hash of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// RFC 9162 leaf hash: `SHA-256(0x00 || leaf)`.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(leaf);
    h.finalize().into()
}

/// RFC 9162 interior node hash: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two strictly less than `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    assert!(n >= 2, "invariant: split needs n >= 2");
    1u64 << (63 - (n - 1).leading_zeros())
}

/// An incremental RFC 9162 tree over a [`MerkleStore`].
#[derive(Debug)]
pub struct MerkleTree<S> {
    store: S,
}

impl<S: MerkleStore> MerkleTree<S> {
    /// A tree over `store` (which may already hold leaves).
    pub fn new(store: S) -> Self {
        Self { store }
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.store.size()
    }

    /// Appends one leaf (an entry hash): O(log n) node writes.
    pub fn append(&mut self, leaf: &Hash) -> Result<(), MerkleError> {
        let size = self.store.size();
        let mut hash = leaf_hash(leaf);
        let mut level = 0u32;
        let mut index = size;
        self.store.put(level, index, hash);
        while index % 2 == 1 {
            let left = self.node(level, index - 1)?;
            hash = node_hash(&left, &hash);
            level += 1;
            index /= 2;
            self.store.put(level, index, hash);
        }
        self.store.set_size(size + 1);
        Ok(())
    }

    /// The root at the current size.
    pub fn root(&self) -> Result<Hash, MerkleError> {
        self.root_at(self.size())
    }

    /// The root the tree had at size `m` (`m <= size`): O(log n) reads.
    pub fn root_at(&self, m: u64) -> Result<Hash, MerkleError> {
        self.check_size(m)?;
        if m == 0 {
            return Ok(empty_root());
        }
        self.subtree(0, m)
    }

    /// The RFC 9162 §2.1.3.1 inclusion proof of leaf `index` in the tree of size `size`.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, MerkleError> {
        self.check_size(size)?;
        if index >= size {
            return Err(MerkleError::IndexOutOfRange { index, size });
        }
        // PATH(m, D[start:end]), unrolled; collected root-first, returned leaf-first.
        let mut proof = Vec::new();
        let (mut start, mut end, mut m) = (0u64, size, index);
        while end - start > 1 {
            let k = split(end - start);
            if m < k {
                proof.push(self.subtree(start + k, end)?);
                end = start + k;
            } else {
                proof.push(self.subtree(start, start + k)?);
                start += k;
                m -= k;
            }
        }
        proof.reverse();
        Ok(proof)
    }

    /// The RFC 9162 §2.1.4.1 consistency proof between sizes `m` and `n` (`0 < m < n`).
    pub fn consistency_proof(&self, m: u64, n: u64) -> Result<Vec<Hash>, MerkleError> {
        self.check_size(n)?;
        if m == 0 || m >= n {
            return Err(MerkleError::NotIncreasing { m, n });
        }
        // SUBPROOF(m, D[start:end], b), unrolled; collected root-first, returned leaf-first.
        let mut proof = Vec::new();
        let (mut start, mut end, mut m, mut b) = (0u64, n, m, true);
        loop {
            let len = end - start;
            if m == len {
                if !b {
                    proof.push(self.subtree(start, end)?);
                }
                break;
            }
            let k = split(len);
            if m <= k {
                proof.push(self.subtree(start + k, end)?);
                end = start + k;
            } else {
                proof.push(self.subtree(start, start + k)?);
                start += k;
                m -= k;
                b = false;
            }
        }
        proof.reverse();
        Ok(proof)
    }

    fn check_size(&self, size: u64) -> Result<(), MerkleError> {
        let tree_size = self.store.size();
        if size > tree_size {
            return Err(MerkleError::SizeBeyondTree { size, tree_size });
        }
        Ok(())
    }

    fn node(&self, level: u32, index: u64) -> Result<Hash, MerkleError> {
        self.store
            .get(level, index)
            .ok_or(MerkleError::MissingNode { level, index })
    }

    /// MTH(D[start:end]) for `start < end <= size`, where `start` is a multiple of the
    /// largest power of two not above `end - start` (true of every range the RFC recursion
    /// visits). Left halves are complete stored nodes, so only the right spine recurses.
    fn subtree(&self, start: u64, end: u64) -> Result<Hash, MerkleError> {
        assert!(start < end, "invariant: subtree range is non-empty");
        let len = end - start;
        if len.is_power_of_two() && start.is_multiple_of(len) {
            return self.node(len.trailing_zeros(), start / len);
        }
        let k = split(len);
        let left = self.subtree(start, start + k)?;
        let right = self.subtree(start + k, end)?;
        Ok(node_hash(&left, &right))
    }
}

/// The right edge of a tree of `size` leaves: the root of each perfect subtree in the
/// decomposition of `[0, size)` into subtrees of decreasing power-of-two sizes, one per set
/// bit of `size`, so at most 64 hashes and `popcount(size) <= log2(size) + 1` in use.
///
/// It is all an append needs: the left siblings that appending leaf `n` combines with are
/// exactly the frontier's lowest `trailing_ones(n)` subtrees, and the root is their fold.
/// So a tree kept as a frontier appends with no reads and gives its root in O(log n)
/// hashes, whatever is (or is not) in its [`MerkleStore`]. It is derived data: the nodes
/// [`Frontier::positions`] names, read from a store, rebuild it ([`Frontier::load`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// Subtree roots left to right (largest, leftmost first): the node at
    /// `(level, (size >> level) - 1)` for each set bit `level` of `size`, high to low.
    roots: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// `(level, index)` of the nodes of the frontier of a tree of `size` leaves, left to
    /// right (the order [`Frontier::load`] reads them in).
    pub fn positions(size: u64) -> impl Iterator<Item = (u32, u64)> {
        (0..u64::BITS)
            .rev()
            .filter(move |level| (size >> level) & 1 == 1)
            .map(move |level| (level, (size >> level) - 1))
    }

    /// The frontier of the tree in `store`: `popcount(size)` reads.
    pub fn load(store: &impl MerkleStore) -> Result<Frontier, MerkleError> {
        let size = store.size();
        let roots = Frontier::positions(size)
            .map(|(level, index)| {
                store
                    .get(level, index)
                    .ok_or(MerkleError::MissingNode { level, index })
            })
            .collect::<Result<Vec<Hash>, MerkleError>>()?;
        Ok(Frontier { size, roots })
    }

    /// Appends one leaf (an entry hash) and calls `put` with each node it completes: the
    /// leaf node `(0, size)`, then one parent per trailing one bit of `size`, level by
    /// level, exactly the nodes [`MerkleTree::append`] puts. No reads.
    pub fn append(&mut self, leaf: &Hash, mut put: impl FnMut(u32, u64, &Hash)) {
        let size = self.size;
        let mut hash = leaf_hash(leaf);
        let (mut level, mut index) = (0u32, size);
        put(level, index, &hash);
        while index % 2 == 1 {
            let left = self
                .roots
                .pop()
                .expect("invariant: the frontier holds one root per set bit of its size");
            hash = node_hash(&left, &hash);
            level += 1;
            index /= 2;
            put(level, index, &hash);
        }
        self.roots.push(hash);
        self.size = size
            .checked_add(1)
            .expect("invariant: a tree holds fewer than 2^64 leaves");
        debug_assert_eq!(self.roots.len(), self.size.count_ones() as usize);
    }

    /// The root: its subtree roots folded right to left (`SHA-256("")` when empty), as the
    /// RFC 9162 MTH splits them. O(log n) hashes, no reads.
    pub fn root(&self) -> Hash {
        let mut roots = self.roots.iter().rev();
        let Some(last) = roots.next() else {
            return empty_root();
        };
        roots.fold(*last, |right, left| node_hash(left, &right))
    }
}

/// RFC 9162 §2.1.3.2: verifies that `leaf` (an entry hash) is at `index` in the tree of
/// `size` leaves whose root is `root`.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MerkleError> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = leaf_hash(leaf);
    for p in proof {
        if sn == 0 {
            return Err(MerkleError::WrongProofLength { len: proof.len() });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(MerkleError::WrongProofLength { len: proof.len() });
    }
    if &r != root {
        return Err(MerkleError::RootMismatch);
    }
    Ok(())
}

/// RFC 9162 §2.1.4.2: verifies that the tree of `n` leaves with root `root_n` extends the
/// tree of `m` leaves with root `root_m`. Requires `0 < m < n`, as the RFC's proofs do.
pub fn verify_consistency(
    m: u64,
    n: u64,
    proof: &[Hash],
    root_m: &Hash,
    root_n: &Hash,
) -> Result<(), MerkleError> {
    if m == 0 || m >= n {
        return Err(MerkleError::NotIncreasing { m, n });
    }
    // Step 1: an empty path fails.
    let Some(first) = proof.first() else {
        return Err(MerkleError::WrongProofLength { len: 0 });
    };
    // Step 2: if m is a power of two, prepend root_m.
    let (seed, rest) = if m.is_power_of_two() {
        (root_m, proof)
    } else {
        (first, &proof[1..])
    };
    let (mut fn_, mut sn) = (m - 1, n - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*seed, *seed);
    for c in rest {
        if sn == 0 {
            return Err(MerkleError::WrongProofLength { len: proof.len() });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(MerkleError::WrongProofLength { len: proof.len() });
    }
    if &fr != root_m || &sr != root_n {
        return Err(MerkleError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaf(i: u64) -> Hash {
        Sha256::digest([i as u8, (i >> 8) as u8]).into()
    }

    /// MTH straight from the RFC 9162 §2.1.1 definition.
    fn naive(d: &[Hash]) -> Hash {
        match d.len() {
            0 => empty_root(),
            1 => leaf_hash(&d[0]),
            n => {
                let k = split(n as u64) as usize;
                node_hash(&naive(&d[..k]), &naive(&d[k..]))
            }
        }
    }

    fn tree(n: u64) -> (MerkleTree<MemStore>, Vec<Hash>) {
        let mut t = MerkleTree::new(MemStore::default());
        let leaves: Vec<Hash> = (0..n).map(leaf).collect();
        for l in &leaves {
            t.append(l).expect("append");
        }
        (t, leaves)
    }

    #[test]
    fn known_answers() {
        // Leaves are SHA-256 of the single byte i; roots computed independently.
        const ROOTS: [&str; 9] = [
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "d9de27625445003d8a9739a851e3ff8d41c0683630b4d63a88327a6aaa37c409",
            "604d540f09268b91672ab011394d5266ccd7d4484d0d109411a55848126a1b2c",
            "d1f13800048f5909d4043fc0c152f6643280cba608b672715e56ce159a20629f",
            "0dcc2b645c00dfa2338e1c7ac2c4b570beda5a476d58836e55e28bde55e6bee1",
            "6b313b611b40676b9e1dfd70c4503f2379f88f0f1c2740fb7e1cacc32c113465",
            "33d501ae67e6e5745c0aa49e3aff95130969b568208b07210c508caa5ff39b3c",
            "bee2275db16667589a4515f63e0d053a2fa602c1d9f9703e98920a5bdad59baf",
            "80e139b44c90f91edebec705cc7586c3d90f4bdadd49628d25c20d4b03419287",
        ];
        let leaves: Vec<Hash> = (0u8..8).map(|i| Sha256::digest([i]).into()).collect();
        let mut t = MerkleTree::new(MemStore::default());
        assert_eq!(hex::encode(t.root().expect("root")), ROOTS[0]);
        for (n, l) in leaves.iter().enumerate() {
            t.append(l).expect("append");
            assert_eq!(hex::encode(t.root().expect("root")), ROOTS[n + 1]);
            assert_eq!(hex::encode(naive(&leaves[..=n])), ROOTS[n + 1]);
        }
        for m in 0..=8u64 {
            assert_eq!(
                hex::encode(t.root_at(m).expect("root_at")),
                ROOTS[m as usize]
            );
        }
    }

    #[test]
    fn the_frontier_appends_as_the_tree_does_and_loads_back() {
        let mut t = MerkleTree::new(MemStore::default());
        let mut frontier = Frontier::new();
        assert_eq!(frontier.root(), empty_root());
        for i in 0..600u64 {
            let before = t.store().clone();
            t.append(&leaf(i)).expect("append");
            let mut put = Vec::new();
            frontier.append(&leaf(i), |level, index, hash| {
                put.push((level, index, *hash))
            });
            // The same nodes as the tree's append, which are exactly what it added.
            let added: Vec<(u32, u64, Hash)> = t
                .store()
                .nodes
                .iter()
                .filter(|(key, _)| !before.nodes.contains_key(key))
                .map(|(&(level, index), hash)| (level, index, *hash))
                .collect();
            let mut sorted = put.clone();
            sorted.sort();
            assert_eq!(sorted, added, "append of leaf {i}");
            assert_eq!(put.len() as u32, i.trailing_ones() + 1);
            assert_eq!(frontier.size(), i + 1);
            assert_eq!(
                frontier.root(),
                t.root().expect("root"),
                "root at {}",
                i + 1
            );
            assert_eq!(Frontier::load(t.store()), Ok(frontier.clone()));
            assert_eq!(
                frontier.roots.len() as u32,
                (i + 1).count_ones(),
                "one root per set bit"
            );
        }
        // A store lacking a frontier node cannot be loaded.
        let mut store = t.store().clone();
        let (level, index) = Frontier::positions(600).last().expect("a node");
        store.nodes.remove(&(level, index));
        assert_eq!(
            Frontier::load(&store),
            Err(MerkleError::MissingNode { level, index })
        );
        assert_eq!(
            Frontier::positions(6).collect::<Vec<_>>(),
            vec![(2, 0), (1, 2)]
        );
        assert_eq!(Frontier::positions(0).count(), 0);
        assert_eq!(Frontier::positions(u64::MAX).count(), 64);
    }

    #[test]
    fn refusals() {
        let (t, leaves) = tree(5);
        let root = t.root().expect("root");
        assert!(matches!(
            t.inclusion_proof(5, 5),
            Err(MerkleError::IndexOutOfRange { .. })
        ));
        assert!(matches!(
            t.root_at(6),
            Err(MerkleError::SizeBeyondTree { .. })
        ));
        for (m, n) in [(0, 3), (3, 3), (4, 3)] {
            assert!(matches!(
                t.consistency_proof(m, n),
                Err(MerkleError::NotIncreasing { .. })
            ));
            assert!(matches!(
                verify_consistency(m, n, &[root], &root, &root),
                Err(MerkleError::NotIncreasing { .. })
            ));
        }
        assert!(matches!(
            verify_inclusion(&leaves[0], 5, 5, &[], &root),
            Err(MerkleError::IndexOutOfRange { .. })
        ));
        let mut proof = t.inclusion_proof(1, 5).expect("proof");
        proof.push(root);
        assert!(matches!(
            verify_inclusion(&leaves[1], 1, 5, &proof, &root),
            Err(MerkleError::WrongProofLength { .. })
        ));
    }

    fn flip(h: &Hash, bit: usize) -> Hash {
        let mut h = *h;
        h[bit / 8] ^= 1 << (bit % 8);
        h
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn proofs_verify_and_tamper_fails(n in 1u64..300, bit in 0usize..256) {
            let (t, leaves) = tree(n);
            let roots: Vec<Hash> = (0..=n).map(|m| naive(&leaves[..m as usize])).collect();
            for m in 0..=n {
                prop_assert_eq!(t.root_at(m).expect("root_at"), roots[m as usize]);
            }
            let root = roots[n as usize];
            for i in 0..n {
                let proof = t.inclusion_proof(i, n).expect("inclusion");
                prop_assert!(verify_inclusion(&leaves[i as usize], i, n, &proof, &root).is_ok());
                let bad_leaf = flip(&leaves[i as usize], bit);
                prop_assert!(verify_inclusion(&bad_leaf, i, n, &proof, &root).is_err());
                prop_assert!(verify_inclusion(&leaves[i as usize], i, n, &proof,
                    &flip(&root, bit)).is_err());
                for j in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[j] = flip(&bad[j], bit);
                    prop_assert!(verify_inclusion(&leaves[i as usize], i, n, &bad, &root)
                        .is_err());
                }
            }
            for m in 1..n {
                let rm = roots[m as usize];
                let proof = t.consistency_proof(m, n).expect("consistency");
                prop_assert!(verify_consistency(m, n, &proof, &rm, &root).is_ok());
                prop_assert!(verify_consistency(m, n, &proof, &flip(&rm, bit), &root).is_err());
                prop_assert!(verify_consistency(m, n, &proof, &rm, &flip(&root, bit)).is_err());
                for j in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[j] = flip(&bad[j], bit);
                    prop_assert!(verify_consistency(m, n, &bad, &rm, &root).is_err());
                }
                prop_assert!(t.consistency_proof(n, m).is_err());
            }
        }
    }
}
