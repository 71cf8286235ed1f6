//! The state commitment: an authenticated map over the governance state, so the state hash
//! costs O(log n) per change instead of O(state) per question.
//!
//! Every piece of state is one key of the map ([`StateKey`]): the meta record (ledger id,
//! head, active constitution), each adopted constitution, each subject, each proposal's
//! status record and each deferred proposal. The map is a Jellyfish Merkle Tree (the
//! `jmt` crate, Diem's design as maintained by Penumbra) with BLAKE3 as its hash: a
//! 256-bit sparse Merkle tree whose subtrees of zero or one leaf collapse, so a change
//! rewrites about log₁₆ n nodes. Its root depends only on the set of keys and values,
//! never on the order they were written in, so a replica that replays the ledger, one
//! that restores a snapshot, and one that applied entries one by one agree. The state
//! hash is that root (see ARCHITECTURE.md, "The state commitment", for every hashed byte).
//!
//! Keys the state changes are marked dirty as entries apply, and written to the tree in
//! one batch when the hash is asked for, or once [`PENDING_KEYS_MAX`] keys are pending:
//! upper tree nodes shared by a batch are rewritten once per batch, not once per entry,
//! and no question costs more than that bound.
//!
//! This tree holds the nodes of its latest version only, in memory (stale nodes are
//! dropped as each batch lands); holding them on disk with a bounded cache is the next
//! step of DESIGN §11's state-on-disk work, behind the same [`TreeReader`] seam.

use std::collections::{BTreeMap, BTreeSet};

use jmt::storage::{LeafNode, Node, NodeKey, TreeReader};
use jmt::{JellyfishMerkleTree, KeyHash, OwnedValue, SimpleHasher, Version};
use serde::{Deserialize, Serialize};

use crate::encoding::{self, TAG_STATE_KEY};
use crate::id::{LedgerIndex, ProposalId, StateHash};

/// Keys pending before `State::apply` writes them to the tree itself: the bound on the
/// work a state-hash question can find waiting.
pub const PENDING_KEYS_MAX: usize = 1_024;

/// BLAKE3 as the tree's hash function.
#[derive(Debug)]
pub struct Blake3(blake3::Hasher);

impl SimpleHasher for Blake3 {
    fn new() -> Blake3 {
        Blake3(blake3::Hasher::new())
    }

    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    fn finalize(self) -> [u8; 32] {
        *self.0.finalize().as_bytes()
    }
}

/// One key of the authenticated state map. Its canonical bytes (tagged with
/// [`TAG_STATE_KEY`] and hashed) place it in the tree.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub enum StateKey {
    /// Ledger id, head and the active constitution: `StateMeta`.
    Meta,
    /// The constitution adopted by the entry at this index: its version.
    Adopted(LedgerIndex),
    /// A subject's lifecycle state and data: `SubjectState`.
    Subject { domain: String, subject: String },
    /// A decided proposal's status record: `ProposalRecord`.
    Proposal(ProposalId),
    /// A deferred proposal: `Deferred`.
    Deferred(ProposalId),
}

impl StateKey {
    /// Where the key sits in the tree: BLAKE3 over the tag and its canonical bytes.
    pub fn key_hash(&self) -> KeyHash {
        KeyHash(encoding::tagged_hash(TAG_STATE_KEY, self))
    }
}

/// The tree's nodes at its latest version.
#[derive(Clone, Default)]
struct Nodes(BTreeMap<NodeKey, Node>);

impl TreeReader for Nodes {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        Ok(self.0.get(node_key).cloned())
    }

    /// Values live in the state's own maps; the tree holds their hashes only, and writing
    /// never reads a value back.
    fn get_value_option(
        &self,
        _max_version: Version,
        _key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        Err(anyhow::anyhow!(
            "the state commitment keeps value hashes only; read values from the state"
        ))
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        Err(anyhow::anyhow!(
            "the state commitment is never restored node by node"
        ))
    }
}

/// The tree and the keys changed since it was last written.
#[derive(Clone, Default)]
pub(crate) struct Commitment {
    nodes: Nodes,
    /// Version of the tree's latest root; `None` before the first write.
    version: Option<Version>,
    root: Option<StateHash>,
    pending: BTreeSet<StateKey>,
}

impl Commitment {
    /// Marks a key whose value changed (or was removed).
    pub(crate) fn touch(&mut self, key: StateKey) {
        self.pending.insert(key);
    }

    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Writes every pending key, with its current value from `value_of` (`None`: removed),
    /// and answers the root.
    pub(crate) fn root(&mut self, value_of: impl Fn(&StateKey) -> Option<Vec<u8>>) -> StateHash {
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            let set: Vec<(KeyHash, Option<OwnedValue>)> = pending
                .iter()
                .map(|key| (key.key_hash(), value_of(key)))
                .collect();
            let version = self.version.map_or(0, |v| v + 1);
            let (root, batch) = JellyfishMerkleTree::<_, Blake3>::new(&self.nodes)
                .put_value_set(set, version)
                .expect("invariant: the tree holds every node of its latest version");
            for stale in &batch.stale_node_index_batch {
                self.nodes.0.remove(&stale.node_key);
            }
            self.nodes.0.extend(
                batch
                    .node_batch
                    .nodes()
                    .iter()
                    .map(|(key, node)| (key.clone(), node.clone())),
            );
            self.version = Some(version);
            self.root = Some(StateHash(root.0));
        }
        self.root.unwrap_or(StateHash(EMPTY_ROOT))
    }

    /// Nodes held (for tests and memory accounting).
    #[cfg(test)]
    pub(crate) fn node_count(&self) -> usize {
        self.nodes.0.len()
    }
}

/// The root of the map holding exactly `entries` (key, canonical value bytes): what a
/// verifier recomputes from a state it was given.
pub fn root_of(entries: impl IntoIterator<Item = (StateKey, Vec<u8>)>) -> StateHash {
    let values: BTreeMap<StateKey, Vec<u8>> = entries.into_iter().collect();
    let mut commitment = Commitment::default();
    for key in values.keys() {
        commitment.touch(key.clone());
    }
    commitment.root(|key| values.get(key).cloned())
}

/// The root of the empty map.
pub const EMPTY_ROOT: [u8; 32] = JellyfishMerkleTree::<Nodes, Blake3>::EMPTY_ROOT.0;

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: u64, salt: u8) -> impl Fn(&StateKey) -> Option<Vec<u8>> {
        move |key| match key {
            StateKey::Adopted(LedgerIndex(i)) if *i < n => Some(vec![salt; (*i % 7) as usize + 1]),
            _ => None,
        }
    }

    /// The root is a function of the map, not of the order or batching of its writes.
    #[test]
    fn the_root_depends_only_on_the_contents() {
        let mut one_batch = Commitment::default();
        for i in 0..500 {
            one_batch.touch(StateKey::Adopted(LedgerIndex(i)));
        }
        let a = one_batch.root(values(500, 1));

        let mut many = Commitment::default();
        for i in (0..500).rev() {
            many.touch(StateKey::Adopted(LedgerIndex(i)));
            if i % 37 == 0 {
                many.root(values(500, 1));
            }
        }
        assert_eq!(many.root(values(500, 1)), a);

        // A key written then removed leaves no trace.
        many.touch(StateKey::Adopted(LedgerIndex(10_000)));
        many.root(|k| match k {
            StateKey::Adopted(LedgerIndex(10_000)) => Some(vec![9]),
            _ => values(500, 1)(k),
        });
        many.touch(StateKey::Adopted(LedgerIndex(10_000)));
        assert_eq!(many.root(values(500, 1)), a);

        // One changed value changes the root.
        let mut changed = Commitment::default();
        for i in 0..500 {
            changed.touch(StateKey::Adopted(LedgerIndex(i)));
        }
        let changed_root = changed.root(|k| match k {
            StateKey::Adopted(LedgerIndex(250)) => Some(vec![2]),
            _ => values(500, 1)(k),
        });
        assert_ne!(changed_root, a);
    }

    /// Stale nodes are dropped: rewriting the same keys many times does not grow the tree.
    #[test]
    fn rewrites_do_not_grow_the_tree() {
        let mut commitment = Commitment::default();
        for i in 0..200 {
            commitment.touch(StateKey::Adopted(LedgerIndex(i)));
        }
        commitment.root(values(200, 1));
        let nodes = commitment.node_count();
        for round in 0..50u8 {
            for i in (0..200).step_by(7) {
                commitment.touch(StateKey::Adopted(LedgerIndex(i)));
            }
            commitment.root(values(200, round));
        }
        assert_eq!(commitment.node_count(), nodes);
    }

    #[test]
    fn the_empty_map_has_the_empty_root() {
        let mut commitment = Commitment::default();
        assert_eq!(commitment.root(|_| None), StateHash(EMPTY_ROOT));
    }
}
