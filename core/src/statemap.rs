//! The state map: an authenticated map over the state's rows, so that one subject's state
//! or one proposal's status can be proved against a root a quorum of replicas cosigned.
//!
//! The lattice hash ([`crate::rows`]) commits to the whole state in O(1) per changed row but
//! proves nothing about one row. The state map is a **sparse Merkle tree of radix 16** over
//! the same rows, keyed by the BLAKE3 hash of each row's key, with these rules:
//!
//! * A row becomes a **leaf** `(key hash, value hash)`:
//!   `key hash = BLAKE3(TAG_MAP_KEY ‖ row key)`, `value hash = BLAKE3(TAG_MAP_VALUE ‖ row
//!   value)`, and the leaf's hash is `BLAKE3(TAG_MAP_LEAF ‖ key hash ‖ value hash)`.
//! * A **slot** is empty, a leaf, or a node. An empty slot hashes to 32 zero bytes.
//! * A **node** at nibble path `P` (the first `d` nibbles of key hashes, high nibble of
//!   each byte first) exists exactly when two or more keys start with `P`; its 16 slots are
//!   the children `P‖0 … P‖f`. A prefix with one key is that key's leaf, held in its
//!   parent's slot whatever its depth; a prefix with none is an empty slot. So the tree of a
//!   set of rows is unique: the root depends on the rows, never on the order of updates.
//! * A node's hash is `BLAKE3(TAG_MAP_NODE ‖ slot hash 0 ‖ … ‖ slot hash 15)`: one hash of
//!   528 bytes. (A binary tree over the 16 slots would make proofs 4 hashes per level
//!   instead of 15, but cost 15 hash calls per rewritten node instead of one; node rewrites
//!   are what an anchor spends its time on, measured at 9.4 µs per changed row with the
//!   binary tree against 2^20 rows.)
//! * The **map root** is the hash of the root slot (the slot at the empty path): zero for
//!   no rows, a leaf's hash for one, else the root node's hash.
//!
//! A proof of a key is, for each node on the key's path from the root, the hashes of the 15
//! other slots of that node (in slot order), then the slot the path ends at: an empty slot
//! or a leaf. A leaf with the key's hash proves the value; an empty slot, or a leaf of
//! another key, proves the key absent. Proofs are at most 64 levels and, for `n` rows,
//! about `log16 n` levels of 480 bytes.
//!
//! Updates are batched ([`update`]): every node on the paths of the batch's keys is read
//! once, rewritten once and hashed once, so a batch of `k` keys over `n` rows costs about
//! `k · log16(n / k)` node writes plus the nodes the keys share. Nodes live in a
//! [`MapStore`] (a node's disk: raft/'s store); [`update`] returns the writes and the new
//! root slot, and never writes itself.
//!
//! Pure: no I/O, no clock; the same rows give the same root on every replica.

use std::collections::BTreeMap;

/// A hash in the map (BLAKE3, 32 bytes).
pub type Digest = [u8; 32];

/// Domain separation of a row key's hash.
pub const TAG_MAP_KEY: &[u8] = b"docket/map-key/v1\0";
/// Domain separation of a row value's hash.
pub const TAG_MAP_VALUE: &[u8] = b"docket/map-value/v1\0";
/// Domain separation of a leaf's hash.
pub const TAG_MAP_LEAF: &[u8] = b"docket/map-leaf/v1\0";
/// Domain separation of a node's hash.
pub const TAG_MAP_NODE: &[u8] = b"docket/map-node/v1\0";

/// Ledger entries between **anchors**: the state map is brought up to date at the first
/// command boundary at or past each multiple of this many entries (the boundary where
/// `size / ANCHOR_ENTRIES` grows, [`is_anchor`]), not at every command, so its node writes
/// are shared by a thousand entries' rows. Every replica applies the same commands, so
/// every replica anchors at the same sizes. Part of the format: a checkpoint's `map` line
/// names an anchor.
pub const ANCHOR_ENTRIES: u64 = 1024;

/// Whether the command that took the ledger from `before` to `after` entries ends at an
/// anchor.
pub fn is_anchor(before: u64, after: u64) -> bool {
    after / ANCHOR_ENTRIES > before / ANCHOR_ENTRIES
}

/// The state map's root at an anchor: after the first `size` ledger entries.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct MapAnchor {
    pub size: u64,
    pub root: Digest,
}

/// The hash of an empty slot, and the root of an empty map.
pub const EMPTY: Digest = [0; 32];
/// Nibbles in a key hash: the deepest a node can be.
pub const DEPTH_MAX: usize = 64;

fn blake3_parts(parts: &[&[u8]]) -> Digest {
    let mut hasher = blake3::Hasher::new();
    for part in parts {
        hasher.update(part);
    }
    *hasher.finalize().as_bytes()
}

/// The map key of a row key.
pub fn key_hash(row_key: &[u8]) -> Digest {
    blake3_parts(&[TAG_MAP_KEY, row_key])
}

/// The map value of a row's bytes.
pub fn value_hash(row_value: &[u8]) -> Digest {
    blake3_parts(&[TAG_MAP_VALUE, row_value])
}

/// The hash of a leaf.
pub fn leaf_hash(key: &Digest, value: &Digest) -> Digest {
    blake3_parts(&[TAG_MAP_LEAF, key, value])
}

/// The hash of a node whose slots hash to `slots`.
pub fn node_hash(slots: &[Digest; 16]) -> Digest {
    let mut hasher = blake3::Hasher::new();
    hasher.update(TAG_MAP_NODE);
    for slot in slots {
        hasher.update(slot);
    }
    *hasher.finalize().as_bytes()
}

/// Nibble `depth` of a key hash (high nibble of each byte first).
pub fn nibble(key: &Digest, depth: usize) -> usize {
    let byte = key[depth / 2];
    usize::from(if depth.is_multiple_of(2) {
        byte >> 4
    } else {
        byte & 0x0f
    })
}

/// What a slot holds.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Slot {
    #[default]
    Empty,
    Leaf {
        key: Digest,
        value: Digest,
    },
    /// A node, stored at the slot's path; its hash.
    Node(Digest),
}

impl Slot {
    pub fn hash(&self) -> Digest {
        match self {
            Slot::Empty => EMPTY,
            Slot::Leaf { key, value } => leaf_hash(key, value),
            Slot::Node(hash) => *hash,
        }
    }

    const TAG_EMPTY: u8 = 0;
    const TAG_LEAF: u8 = 1;
    const TAG_NODE: u8 = 2;

    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Slot::Empty => out.push(Slot::TAG_EMPTY),
            Slot::Leaf { key, value } => {
                out.push(Slot::TAG_LEAF);
                out.extend_from_slice(key);
                out.extend_from_slice(value);
            }
            Slot::Node(hash) => {
                out.push(Slot::TAG_NODE);
                out.extend_from_slice(hash);
            }
        }
    }

    /// A slot from the front of `bytes`, and what follows it.
    fn decode_from(bytes: &[u8]) -> Result<(Slot, &[u8]), MapError> {
        let digest = |b: &[u8]| -> Digest { b.try_into().expect("length checked") };
        match bytes.split_first() {
            Some((&Slot::TAG_EMPTY, rest)) => Ok((Slot::Empty, rest)),
            Some((&Slot::TAG_LEAF, rest)) if rest.len() >= 64 => Ok((
                Slot::Leaf {
                    key: digest(&rest[..32]),
                    value: digest(&rest[32..64]),
                },
                &rest[64..],
            )),
            Some((&Slot::TAG_NODE, rest)) if rest.len() >= 32 => {
                Ok((Slot::Node(digest(&rest[..32])), &rest[32..]))
            }
            _ => Err(MapError::Corrupt("a map slot does not decode".into())),
        }
    }

    /// The slot's stored bytes (a node's root slot record).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(65);
        self.encode_into(&mut out);
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Slot, MapError> {
        match Slot::decode_from(bytes)? {
            (slot, []) => Ok(slot),
            _ => Err(MapError::Corrupt("trailing bytes after a map slot".into())),
        }
    }
}

/// A node: its 16 slots.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Node {
    pub slots: [Slot; 16],
}

impl Node {
    fn slot_hashes(&self) -> [Digest; 16] {
        std::array::from_fn(|i| self.slots[i].hash())
    }

    pub fn hash(&self) -> Digest {
        node_hash(&self.slot_hashes())
    }

    /// The hashes of every slot but `index`, in slot order.
    pub fn siblings(&self, index: usize) -> [Digest; 15] {
        let all = self.slot_hashes();
        std::array::from_fn(|i| all[if i < index { i } else { i + 1 }])
    }

    fn occupied(&self) -> usize {
        self.slots.iter().filter(|s| **s != Slot::Empty).count()
    }

    /// Stored bytes: a `u16` big-endian bitmap of occupied slots, then each occupied slot.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bitmap = 0u16;
        let mut out = vec![0, 0];
        for (i, slot) in self.slots.iter().enumerate() {
            if *slot != Slot::Empty {
                bitmap |= 1 << i;
                slot.encode_into(&mut out);
            }
        }
        out[..2].copy_from_slice(&bitmap.to_be_bytes());
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Node, MapError> {
        let (head, mut rest) = bytes
            .split_first_chunk::<2>()
            .ok_or_else(|| MapError::Corrupt("a map node is shorter than its bitmap".into()))?;
        let bitmap = u16::from_be_bytes(*head);
        let mut node = Node::default();
        for (i, slot) in node.slots.iter_mut().enumerate() {
            if bitmap & (1 << i) != 0 {
                let (decoded, tail) = Slot::decode_from(rest)?;
                if decoded == Slot::Empty {
                    return Err(MapError::Corrupt("an occupied map slot is empty".into()));
                }
                *slot = decoded;
                rest = tail;
            }
        }
        if !rest.is_empty() {
            return Err(MapError::Corrupt("trailing bytes after a map node".into()));
        }
        Ok(node)
    }
}

/// Where a node sits: the first `len` nibbles of a key hash.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub struct NodePath {
    len: u8,
    nibbles: Digest,
}

impl NodePath {
    pub const ROOT: NodePath = NodePath {
        len: 0,
        nibbles: [0; 32],
    };

    /// The path of the first `len` nibbles of `key`.
    pub fn prefix(key: &Digest, len: usize) -> NodePath {
        assert!(
            len <= DEPTH_MAX,
            "invariant: a map path has at most 64 nibbles"
        );
        let mut nibbles = [0u8; 32];
        nibbles[..len / 2].copy_from_slice(&key[..len / 2]);
        if len % 2 == 1 {
            nibbles[len / 2] = key[len / 2] & 0xf0;
        }
        NodePath {
            len: len as u8,
            nibbles,
        }
    }

    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// The path of slot `nibble` of the node at this path.
    pub fn child(&self, nibble: usize) -> NodePath {
        let len = self.len();
        assert!(
            len < DEPTH_MAX && nibble < 16,
            "invariant: a child path is at most 64 nibbles, a nibble below 16"
        );
        let mut nibbles = self.nibbles;
        let nibble = nibble as u8;
        nibbles[len / 2] |= if len.is_multiple_of(2) {
            nibble << 4
        } else {
            nibble
        };
        NodePath {
            len: self.len + 1,
            nibbles,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The path's stored key: its length, then its nibbles packed two to a byte.
    pub fn to_key(&self) -> Vec<u8> {
        let bytes = self.len().div_ceil(2);
        let mut out = Vec::with_capacity(1 + bytes);
        out.push(self.len);
        out.extend_from_slice(&self.nibbles[..bytes]);
        out
    }
}

/// Why a map operation failed.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum MapError {
    #[error("state map corrupt: {0}")]
    Corrupt(String),
    #[error("state map store: {0}")]
    Store(String),
}

/// The nodes of a map: a node's disk, or memory.
pub trait MapStore {
    /// The node stored at `path`.
    fn node(&self, path: &NodePath) -> Result<Option<Node>, MapError>;
}

/// Nodes in memory (tests, tools, and the overlay of writes not yet stored).
#[derive(Clone, Debug, Default)]
pub struct MemMap {
    pub nodes: BTreeMap<NodePath, Node>,
}

impl MemMap {
    pub fn write(&mut self, writes: MapWrites) {
        for (path, node) in writes {
            match node {
                Some(node) => self.nodes.insert(path, node),
                None => self.nodes.remove(&path),
            };
        }
    }
}

impl MapStore for MemMap {
    fn node(&self, path: &NodePath) -> Result<Option<Node>, MapError> {
        Ok(self.nodes.get(path).cloned())
    }
}

/// Node writes of an update: `Some` to store, `None` to remove; each path once.
pub type MapWrites = BTreeMap<NodePath, Option<Node>>;

/// Applies `updates` (key hash → `Some(value hash)` to set, `None` to remove) to the map
/// whose root slot is `root`, reading nodes from `store`. Returns the new root slot; the
/// node writes are added to `writes`, which also serves as an overlay over `store` (so
/// several updates can run before anything is stored).
pub fn update(
    store: &dyn MapStore,
    writes: &mut MapWrites,
    root: Slot,
    updates: &BTreeMap<Digest, Option<Digest>>,
) -> Result<Slot, MapError> {
    let updates: Vec<(Digest, Option<Digest>)> = updates.iter().map(|(k, v)| (*k, *v)).collect();
    let mut updater = Updater { store, writes };
    updater.slot(0, &updates, root)
}

struct Updater<'a> {
    store: &'a dyn MapStore,
    writes: &'a mut MapWrites,
}

impl Updater<'_> {
    fn load(&self, path: &NodePath) -> Result<Node, MapError> {
        let node = match self.writes.get(path) {
            Some(written) => written.clone(),
            None => self.store.node(path)?,
        };
        node.ok_or_else(|| {
            MapError::Corrupt(format!(
                "node at depth {} is referenced but not stored",
                path.len()
            ))
        })
    }

    /// The new content of the slot at depth `depth` on the path of `updates` (sorted by key,
    /// every key sharing the slot's path), which holds `slot` now.
    fn slot(
        &mut self,
        depth: usize,
        updates: &[(Digest, Option<Digest>)],
        slot: Slot,
    ) -> Result<Slot, MapError> {
        if updates.is_empty() {
            return Ok(slot);
        }
        let path = NodePath::prefix(&updates[0].0, depth);
        match slot {
            Slot::Node(_) => {
                let mut node = self.load(&path)?;
                for (index, group) in groups(updates, depth) {
                    node.slots[index] = self.slot(depth + 1, group, node.slots[index])?;
                }
                let occupied = node.occupied();
                let only_leaf = node
                    .slots
                    .iter()
                    .find(|s| matches!(s, Slot::Leaf { .. }))
                    .copied();
                match (occupied, only_leaf) {
                    (0, _) => {
                        self.writes.insert(path, None);
                        Ok(Slot::Empty)
                    }
                    (1, Some(leaf)) => {
                        // One key left under this path: its leaf moves up.
                        self.writes.insert(path, None);
                        Ok(leaf)
                    }
                    _ => {
                        let hash = node.hash();
                        self.writes.insert(path, Some(node));
                        Ok(Slot::Node(hash))
                    }
                }
            }
            Slot::Empty | Slot::Leaf { .. } => {
                // No node below: the slot's keys after the update are the leaf (unless
                // updated) and the updates that set a value.
                let mut keys: Vec<(Digest, Digest)> = updates
                    .iter()
                    .filter_map(|(k, v)| v.map(|v| (*k, v)))
                    .collect();
                if let Slot::Leaf { key, value } = slot {
                    if updates.binary_search_by(|(k, _)| k.cmp(&key)).is_err() {
                        keys.insert(keys.partition_point(|(k, _)| *k < key), (key, value));
                    }
                }
                self.build(depth, &keys)
            }
        }
    }

    /// The slot at depth `depth` holding exactly `keys` (sorted, distinct, sharing the
    /// slot's path), with no node below it yet.
    fn build(&mut self, depth: usize, keys: &[(Digest, Digest)]) -> Result<Slot, MapError> {
        match keys {
            [] => Ok(Slot::Empty),
            [(key, value)] => Ok(Slot::Leaf {
                key: *key,
                value: *value,
            }),
            _ => {
                if depth >= DEPTH_MAX {
                    return Err(MapError::Corrupt("two rows share a key hash".into()));
                }
                let mut node = Node::default();
                for (index, group) in groups(keys, depth) {
                    node.slots[index] = self.build(depth + 1, group)?;
                }
                let hash = node.hash();
                self.writes
                    .insert(NodePath::prefix(&keys[0].0, depth), Some(node));
                Ok(Slot::Node(hash))
            }
        }
    }
}

/// `items` (sorted by key) split by their nibble at `depth`: `(nibble, run)`.
fn groups<T>(items: &[(Digest, T)], depth: usize) -> impl Iterator<Item = (usize, &[(Digest, T)])> {
    let mut rest = items;
    std::iter::from_fn(move || {
        let first = rest.first()?;
        let index = nibble(&first.0, depth);
        let end = rest.partition_point(|(k, _)| nibble(k, depth) <= index);
        let (group, tail) = rest.split_at(end);
        rest = tail;
        Some((index, group))
    })
}

/// A proof that a key has a value, or none, under a map root.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct MapProof {
    /// For each node on the key's path, from the root: the hashes of its 15 other slots,
    /// in slot order.
    pub levels: Vec<[Digest; 15]>,
    /// Where the path ends: `None` for an empty slot, else the leaf there.
    pub leaf: Option<(Digest, Digest)>,
}

/// Why a map proof was refused.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum MapProofError {
    #[error("the proof has {0} levels; a key hash has 64 nibbles")]
    TooDeep(usize),
    #[error("the proof does not lead to the map root")]
    RootMismatch,
    #[error("the proof ends at a leaf whose key does not share the path it sits on")]
    MisplacedLeaf,
    #[error("the map holds another value for the key")]
    ValueMismatch,
    #[error("the map holds the key, but the proof claims it absent")]
    Present,
}

/// A proof of `key` in the map whose root slot is `root`.
pub fn prove(store: &dyn MapStore, root: Slot, key: &Digest) -> Result<MapProof, MapError> {
    let mut levels = Vec::new();
    let mut slot = root;
    let mut depth = 0;
    loop {
        match slot {
            Slot::Empty => return Ok(MapProof { levels, leaf: None }),
            Slot::Leaf { key: k, value } => {
                return Ok(MapProof {
                    levels,
                    leaf: Some((k, value)),
                })
            }
            Slot::Node(_) => {
                let path = NodePath::prefix(key, depth);
                let node = store.node(&path)?.ok_or_else(|| {
                    MapError::Corrupt(format!(
                        "node at depth {depth} is referenced but not stored"
                    ))
                })?;
                let index = nibble(key, depth);
                levels.push(node.siblings(index));
                slot = node.slots[index];
                depth += 1;
            }
        }
    }
}

impl MapProof {
    /// The root this proof leads to for `key`, checking that the leaf it ends at sits on
    /// the key's path.
    pub fn root_for(&self, key: &Digest) -> Result<Digest, MapProofError> {
        if self.levels.len() > DEPTH_MAX {
            return Err(MapProofError::TooDeep(self.levels.len()));
        }
        let mut hash = match &self.leaf {
            None => EMPTY,
            Some((k, v)) => {
                if NodePath::prefix(k, self.levels.len())
                    != NodePath::prefix(key, self.levels.len())
                {
                    return Err(MapProofError::MisplacedLeaf);
                }
                leaf_hash(k, v)
            }
        };
        for (depth, siblings) in self.levels.iter().enumerate().rev() {
            let index = nibble(key, depth);
            let slots: [Digest; 16] = std::array::from_fn(|i| match i.cmp(&index) {
                std::cmp::Ordering::Less => siblings[i],
                std::cmp::Ordering::Equal => hash,
                std::cmp::Ordering::Greater => siblings[i - 1],
            });
            hash = node_hash(&slots);
        }
        Ok(hash)
    }

    /// Checks that under `root`, row `row_key` holds `row_value` (`None`: no such row).
    pub fn verify(
        &self,
        root: &Digest,
        row_key: &[u8],
        row_value: Option<&[u8]>,
    ) -> Result<(), MapProofError> {
        let key = key_hash(row_key);
        if self.root_for(&key)? != *root {
            return Err(MapProofError::RootMismatch);
        }
        let held = match self.leaf {
            Some((k, v)) if k == key => Some(v),
            _ => None,
        };
        match (held, row_value) {
            (Some(v), Some(value)) if v == value_hash(value) => Ok(()),
            (Some(_), Some(_)) | (None, Some(_)) => Err(MapProofError::ValueMismatch),
            (Some(_), None) => Err(MapProofError::Present),
            (None, None) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The root of a set of rows computed from the definition, with no store: the
    /// reference the incremental tree must equal.
    fn reference_root(rows: &BTreeMap<Digest, Digest>) -> Digest {
        fn slot(depth: usize, keys: &[(Digest, Digest)]) -> Digest {
            match keys {
                [] => EMPTY,
                [(k, v)] => leaf_hash(k, v),
                _ => {
                    let mut node = [EMPTY; 16];
                    for (i, group) in groups(keys, depth) {
                        node[i] = slot(depth + 1, group);
                    }
                    node_hash(&node)
                }
            }
        }
        let keys: Vec<(Digest, Digest)> = rows.iter().map(|(k, v)| (*k, *v)).collect();
        slot(0, &keys)
    }

    fn apply(map: &mut MemMap, root: Slot, batch: &BTreeMap<Digest, Option<Digest>>) -> Slot {
        let mut writes = MapWrites::new();
        let root = update(map, &mut writes, root, batch).expect("update");
        map.write(writes);
        root
    }

    fn k(i: u32) -> Digest {
        key_hash(&i.to_be_bytes())
    }

    fn v(i: u32) -> Digest {
        value_hash(&i.to_le_bytes())
    }

    #[test]
    fn a_child_path_is_the_prefix_one_nibble_longer() {
        for i in 0..64u32 {
            let key = k(i);
            for len in 0..DEPTH_MAX {
                assert_eq!(
                    NodePath::prefix(&key, len).child(nibble(&key, len)),
                    NodePath::prefix(&key, len + 1),
                    "key {i}, depth {len}"
                );
            }
        }
    }

    #[test]
    fn an_empty_map_has_the_zero_root_and_proves_every_key_absent() {
        let map = MemMap::default();
        assert_eq!(Slot::Empty.hash(), EMPTY);
        let proof = prove(&map, Slot::Empty, &key_hash(b"x")).expect("prove");
        assert_eq!(proof.verify(&EMPTY, b"x", None), Ok(()));
        assert_eq!(
            proof.verify(&EMPTY, b"x", Some(b"1")),
            Err(MapProofError::ValueMismatch)
        );
    }

    #[test]
    fn one_row_is_a_leaf_at_the_root_and_removing_it_empties_the_map() {
        let mut map = MemMap::default();
        let root = apply(&mut map, Slot::Empty, &BTreeMap::from([(k(1), Some(v(1)))]));
        assert_eq!(
            root,
            Slot::Leaf {
                key: k(1),
                value: v(1)
            }
        );
        assert!(map.nodes.is_empty());
        let root = apply(&mut map, root, &BTreeMap::from([(k(1), None)]));
        assert_eq!(root, Slot::Empty);
    }

    #[test]
    fn removing_down_to_one_row_collapses_every_node() {
        let mut map = MemMap::default();
        let all: BTreeMap<Digest, Option<Digest>> = (0..200).map(|i| (k(i), Some(v(i)))).collect();
        let root = apply(&mut map, Slot::Empty, &all);
        assert!(map.nodes.len() > 10);
        let gone: BTreeMap<Digest, Option<Digest>> = (1..200).map(|i| (k(i), None)).collect();
        let root = apply(&mut map, root, &gone);
        assert_eq!(
            root,
            Slot::Leaf {
                key: k(0),
                value: v(0)
            }
        );
        assert!(map.nodes.is_empty(), "stale nodes: {}", map.nodes.len());
    }

    #[test]
    fn node_and_slot_bytes_round_trip_and_refuse_damage() {
        let mut node = Node::default();
        node.slots[3] = Slot::Leaf {
            key: k(1),
            value: v(1),
        };
        node.slots[9] = Slot::Node(k(2));
        let bytes = node.to_bytes();
        assert_eq!(Node::from_bytes(&bytes), Ok(node.clone()));
        assert!(Node::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Node::from_bytes(&longer).is_err());
        for slot in [Slot::Empty, node.slots[3], node.slots[9]] {
            assert_eq!(Slot::from_bytes(&slot.to_bytes()), Ok(slot));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any sequence of batches gives the root of the final set of rows, leaves no node
        /// the final tree does not use, and every key's proof verifies (present or absent).
        #[test]
        fn batches_give_the_root_of_the_rows_and_every_proof_verifies(
            batches in proptest::collection::vec(
                proptest::collection::btree_map(0u32..300, proptest::option::of(0u32..4), 0..60),
                1..8,
            )
        ) {
            let mut map = MemMap::default();
            let mut root = Slot::Empty;
            let mut rows: BTreeMap<Digest, Digest> = BTreeMap::new();
            for batch in &batches {
                let batch: BTreeMap<Digest, Option<Digest>> =
                    batch.iter().map(|(key, value)| (k(*key), value.map(v))).collect();
                for (key, value) in &batch {
                    match value {
                        Some(value) => rows.insert(*key, *value),
                        None => rows.remove(key),
                    };
                }
                root = apply(&mut map, root, &batch);
                prop_assert_eq!(root.hash(), reference_root(&rows));
            }
            // A fresh build of the same rows stores exactly the same nodes.
            let mut fresh = MemMap::default();
            let all = rows.iter().map(|(k, v)| (*k, Some(*v))).collect();
            let fresh_root = apply(&mut fresh, Slot::Empty, &all);
            prop_assert_eq!(fresh_root, root);
            prop_assert_eq!(&fresh.nodes, &map.nodes);
            for i in 0u32..300 {
                let key = i.to_be_bytes();
                let proof = prove(&map, root, &key_hash(&key)).expect("prove");
                let value = rows.get(&k(i)).map(|_| i);
                prop_assert!(proof.levels.len() <= 8);
                match value {
                    Some(_) => {
                        let held = rows[&k(i)];
                        let bytes = (0u32..4).map(|x| x.to_le_bytes()).find(|b| value_hash(b) == held)
                            .expect("the value is one of four");
                        prop_assert_eq!(proof.verify(&root.hash(), &key, Some(&bytes)), Ok(()));
                        prop_assert_eq!(proof.verify(&root.hash(), &key, None), Err(MapProofError::Present));
                    }
                    None => prop_assert_eq!(proof.verify(&root.hash(), &key, None), Ok(())),
                }
            }
        }

        /// One flipped bit anywhere in a proof, the root or the value fails.
        #[test]
        fn any_flipped_bit_fails(rows in 2u32..120, pick in 0u32..120, bit in 0usize..4096) {
            let mut map = MemMap::default();
            let all = (0..rows).map(|i| (k(i), Some(v(i)))).collect();
            let root = apply(&mut map, Slot::Empty, &all).hash();
            let i = pick % rows;
            let key = i.to_be_bytes();
            let value = i.to_le_bytes();
            let proof = prove(&map, Slot::Node(root), &key_hash(&key)).expect("prove");
            prop_assert_eq!(proof.verify(&root, &key, Some(&value)), Ok(()));
            // The proof's hashes, as one bit string: levels then the leaf.
            let mut flat: Vec<Digest> = proof.levels.iter().flatten().copied().collect();
            let (lk, lv) = proof.leaf.expect("present");
            flat.push(lk);
            flat.push(lv);
            let at = bit % (flat.len() * 256);
            flat[at / 256][(at % 256) / 8] ^= 1 << (at % 8);
            let mut bad = proof.clone();
            let leaf_at = flat.len() - 2;
            for (j, level) in bad.levels.iter_mut().enumerate() {
                level.copy_from_slice(&flat[j * 15..j * 15 + 15]);
            }
            bad.leaf = Some((flat[leaf_at], flat[leaf_at + 1]));
            prop_assert!(bad.verify(&root, &key, Some(&value)).is_err());
            let mut bad_root = root;
            bad_root[bit % 32] ^= 1 << (bit % 8);
            prop_assert!(proof.verify(&bad_root, &key, Some(&value)).is_err());
            let mut bad_value = value;
            bad_value[bit % 4] ^= 1 << (bit % 8);
            prop_assert!(proof.verify(&root, &key, Some(&bad_value)).is_err());
        }
    }
}
