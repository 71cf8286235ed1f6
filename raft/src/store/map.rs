//! The state map on disk ([`docket_core::statemap`]): its nodes in a tree of their own
//! (`map`), the keys of the rows changed since its last anchor and its record in `sm`
//! beside the rows.
//!
//! | tree | key                         | value                                                  |
//! |------|-----------------------------|--------------------------------------------------------|
//! | `map` | `0x02`, node path key      | a node's bytes ([`Node::to_bytes`]); single version: the map at its last anchor; of the top [`MAP_TOP_DEPTH`] + 1 levels only the nodes that hold a leaf |
//! | `sm` | `0x03`, row key             | empty: a row changed after the map's last sealed anchor ("dirty") |
//! | `sm` | `0x04`, anchor size (u64 BE), sequence (u32 BE) | a sealed anchor's updates: bincode map of key hash → value hash (`None`: the row was removed) |
//! | `sm` | `state_map`                 | bincode [`MapRecord`]: generation, size, root slot, anchored |
//!
//! An anchor is reached in an apply and folded into the nodes later (the state machine's
//! map folder, on a thread of its own in a node). An apply that reaches an anchor
//! **seals** it: it writes the anchor's updates (key hash → value hash of every row
//! changed since the last anchor, [`SealedAnchor`]) as one `0x04` value, removes the dirty keys
//! it consumed and adds the keys its later commands touched, all in its commit batch, so
//! the rows, the applied record and what the map still has to fold move together on
//! recovery. The fold ([`Store::map_fold_commit`]) writes the node writes and the record
//! and removes the anchor's `0x04` key in one batch; open folds whatever sealed anchors a
//! crash left unfolded, in order. The map is derived data: when its record is missing, of
//! another generation (a snapshot install, a migration) or past the applied ledger,
//! [`Store::map_rebuild`] rebuilds it from the rows, in pages.
//!
//! **The top levels live in memory.** Every fold rewrites the nodes on the paths of a
//! thousand or more rows, and so nearly every node of the top levels: at depths 0 to 3,
//! up to 4,369 nodes a fold, as many as the rows' own deeper nodes, and each a kilobyte the
//! storage engine writes, then compacts, again and again. Those levels ([`MapTop`]: at
//! most 4,369 nodes, under 5 MiB) are kept in memory, and a top node is written to disk
//! only while it holds a leaf (a small map's); a node whose slots are all nodes or empty
//! is exactly the hashes of its children, so open derives it again from the level below
//! ([`Store::map_top_load`]: at most 65,536 reads of depth-4 nodes, checked against the
//! record's root). A top node that stops holding a leaf has its disk copy removed in the
//! same batch, so the disk never holds a stale one. Growth benchmark (three rounds, two
//! interleaved pairs): 1.04 to 1.16 times the proposals a second of writing every top
//! node, round by round.

use std::collections::{BTreeMap, BTreeSet};

use docket_core::rows::{TABLE_DEFERRED, TABLE_OUTCOME, TABLE_PROPOSAL, TABLE_SUBJECT};
use docket_core::statemap::{
    self, key_hash, value_hash, Digest, MapAnchor, MapError, MapStore, MapWrites, Node, NodePath,
    Slot,
};
use serde::{Deserialize, Serialize};

use super::{decode, encode, prefix_end, state_key, Store, StoreError};
use crate::disk::{TreeName, WriteBatch};

/// First byte of a map node's key in `sm`.
const MAP_NODE_PREFIX: u8 = 0x02;
/// First byte of a dirty row key in `sm`.
const MAP_DIRTY_PREFIX: u8 = 0x03;
/// First byte of a sealed anchor's update in `sm`.
const MAP_SEALED_PREFIX: u8 = 0x04;
/// Key of the [`MapRecord`].
const KEY_MAP: &[u8] = b"state_map";

/// The deepest level of the map kept in memory ([`MapTop`]): depths 0 to 3, at most
/// 1 + 16 + 256 + 4,096 nodes.
pub const MAP_TOP_DEPTH: usize = 3;

/// The map's top levels (depth at most [`MAP_TOP_DEPTH`]): every such node of the map as
/// of its last fold. Those holding a leaf are on disk too, and no other top node is.
#[derive(Debug, Default)]
pub struct MapTop {
    nodes: BTreeMap<NodePath, Node>,
    /// Whether open derived them and they matched the record's root; false sends
    /// [`Store::map_ensure`] to rebuild the map.
    loaded: bool,
}

/// Top-level node writes of a batch, for [`MapTop`] once the batch has gone through.
pub(crate) type TopWrites = Vec<(NodePath, Option<Node>)>;

/// Whether a node at the top belongs on disk: it holds a leaf, which its children cannot
/// tell.
fn holds_leaf(node: &Node) -> bool {
    node.slots.iter().any(|s| matches!(s, Slot::Leaf { .. }))
}

/// Rows folded into the map per batch when it is rebuilt from the rows.
pub const MAP_REBUILD_PAGE_ROWS: usize = 16 * 1024;

/// Leaves a rebuild sorts in memory at once (64 bytes each: 8 MiB); a state with more
/// rows is sorted in runs of this many, each spilled to a temporary file, and the runs
/// merged as they are read back ([`LeafSort`]).
pub const MAP_REBUILD_RUN_ROWS: usize = 128 * 1024;

/// Run files a rebuild merges at once: when this many runs of one level are spilled, they
/// are merged into one file of the next level (so a state of `n` rows keeps at most this
/// many files per level, `log64(n / MAP_REBUILD_RUN_ROWS)` levels, and writes each leaf
/// once per level).
pub const MAP_REBUILD_RUN_FILES_MAX: usize = 64;

/// Read buffer of a run file, and write buffer while one is written.
const SPILL_BUFFER_BYTES: usize = 64 * 1024;

/// A leaf: key hash, value hash.
type Leaf = (Digest, Digest);

/// Bytes of a leaf in a run file.
const LEAF_BYTES: usize = 64;

fn spill_error(source: std::io::Error) -> StoreError {
    StoreError::Io {
        context: "sorting the state map's leaves in a temporary file".to_owned(),
        source,
    }
}

/// An external sort of leaves by key hash, in bounded memory: leaves gather in a run of at
/// most `run_rows`; a full run is sorted and written to an unnamed temporary file (in the
/// store's spill directory: the node's data directory, or the OS temp dir for a simulated
/// disk, whose files are scratch space, not simulated state), and every
/// [`MAP_REBUILD_RUN_FILES_MAX`] files of one level are merged into one of the next.
/// Reading back merges the files and the last run, in memory, by key hash.
struct LeafSort {
    run_rows: usize,
    dir: Option<std::path::PathBuf>,
    run: Vec<Leaf>,
    /// Each file with its level (0: one run); levels never grow along the list, so the
    /// files of the lowest level are the last ones.
    files: Vec<(u32, std::fs::File)>,
    len: u64,
    spilled: usize,
}

impl LeafSort {
    fn new(run_rows: usize, dir: Option<std::path::PathBuf>) -> LeafSort {
        LeafSort {
            run_rows: run_rows.max(1),
            dir,
            run: Vec::new(),
            files: Vec::new(),
            len: 0,
            spilled: 0,
        }
    }

    fn push(&mut self, leaf: Leaf) -> Result<(), StoreError> {
        self.run.push(leaf);
        self.len += 1;
        if self.run.len() >= self.run_rows {
            self.run.sort_unstable();
            let file = write_run(self.dir.as_deref(), self.run.drain(..).map(Ok))?;
            self.files.push((0, file));
            self.spilled += 1;
            self.merge_full_levels()?;
        }
        Ok(())
    }

    /// Merges the last files while [`MAP_REBUILD_RUN_FILES_MAX`] of them share a level.
    fn merge_full_levels(&mut self) -> Result<(), StoreError> {
        while let Some(&(level, _)) = self.files.last() {
            let same = self
                .files
                .iter()
                .rev()
                .take_while(|(l, _)| *l == level)
                .count();
            if same < MAP_REBUILD_RUN_FILES_MAX {
                break;
            }
            let full: Vec<std::fs::File> = self
                .files
                .drain(self.files.len() - same..)
                .map(|(_, file)| file)
                .collect();
            let merged = write_run(self.dir.as_deref(), SortedLeaves::merge(full, Vec::new())?)?;
            self.files.push((level + 1, merged));
        }
        Ok(())
    }

    /// Every leaf pushed, in key-hash order.
    fn into_sorted(mut self) -> Result<SortedLeaves, StoreError> {
        self.run.sort_unstable();
        let files = self.files.into_iter().map(|(_, file)| file).collect();
        SortedLeaves::merge(files, self.run)
    }
}

/// A new temporary file in `dir` holding `leaves` (sorted), positioned at its start.
fn write_run(
    dir: Option<&std::path::Path>,
    leaves: impl Iterator<Item = Result<Leaf, StoreError>>,
) -> Result<std::fs::File, StoreError> {
    use std::io::{Seek, Write};
    let file = crate::snapshot_file::spill_file(dir).map_err(spill_error)?;
    let mut out = std::io::BufWriter::with_capacity(SPILL_BUFFER_BYTES, file);
    for leaf in leaves {
        let (key, value) = leaf?;
        out.write_all(&key).map_err(spill_error)?;
        out.write_all(&value).map_err(spill_error)?;
    }
    let mut file = out.into_inner().map_err(|e| spill_error(e.into_error()))?;
    file.rewind().map_err(spill_error)?;
    Ok(file)
}

/// A k-way merge of sorted runs: files of [`LEAF_BYTES`] records, and one in memory.
struct SortedLeaves {
    sources: Vec<Box<dyn Iterator<Item = Result<Leaf, StoreError>>>>,
    /// The next leaf of each source not yet exhausted, smallest first.
    heads: std::collections::BinaryHeap<std::cmp::Reverse<(Leaf, usize)>>,
}

impl SortedLeaves {
    fn merge(files: Vec<std::fs::File>, run: Vec<Leaf>) -> Result<SortedLeaves, StoreError> {
        let mut sources: Vec<Box<dyn Iterator<Item = Result<Leaf, StoreError>>>> = Vec::new();
        for file in files {
            let mut reader = std::io::BufReader::with_capacity(SPILL_BUFFER_BYTES, file);
            sources.push(Box::new(std::iter::from_fn(move || {
                use std::io::Read;
                let mut bytes = [0u8; LEAF_BYTES];
                match reader.read_exact(&mut bytes) {
                    Ok(()) => {
                        let (key, value) = bytes.split_at(32);
                        let digest = |b: &[u8]| -> Digest { b.try_into().expect("32 bytes") };
                        Some(Ok((digest(key), digest(value))))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => None,
                    Err(e) => Some(Err(spill_error(e))),
                }
            })));
        }
        sources.push(Box::new(run.into_iter().map(Ok)));
        let mut merged = SortedLeaves {
            sources,
            heads: std::collections::BinaryHeap::new(),
        };
        for source in 0..merged.sources.len() {
            merged.advance(source)?;
        }
        Ok(merged)
    }

    fn advance(&mut self, source: usize) -> Result<(), StoreError> {
        if let Some(leaf) = self.sources[source].next() {
            self.heads.push(std::cmp::Reverse((leaf?, source)));
        }
        Ok(())
    }
}

impl Iterator for SortedLeaves {
    type Item = Result<Leaf, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        let std::cmp::Reverse((leaf, source)) = self.heads.pop()?;
        Some(self.advance(source).map(|()| leaf))
    }
}

/// Where the map stands.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct MapRecord {
    /// The generation of state rows it was built from.
    pub generation: u64,
    /// The ledger size whose rows it holds.
    pub size: u64,
    /// Its root slot ([`Slot::to_bytes`]).
    pub root: Vec<u8>,
    /// Whether `size` is an anchor (false after a rebuild at an arbitrary size, until the
    /// next anchor): only an anchor's root goes into a checkpoint.
    pub anchored: bool,
}

impl MapRecord {
    pub fn root_slot(&self) -> Result<Slot, StoreError> {
        Slot::from_bytes(&self.root).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// The anchor this record names, if it is at one.
    pub fn anchor(&self) -> Result<Option<MapAnchor>, StoreError> {
        Ok(self.anchored.then_some(MapAnchor {
            size: self.size,
            root: self.root_slot()?.hash(),
        }))
    }
}

/// An anchor reached by an apply and not yet folded into the map's nodes: the rows
/// changed since the anchor before it, as the map's updates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedAnchor {
    /// The generation of state rows it belongs to (a snapshot install makes it moot).
    pub generation: u64,
    /// The ledger size of the anchor.
    pub size: u64,
    /// Anchors sealed at this size before it and not yet folded (a command that appends
    /// nothing, an anchor on demand, ends where the last one did): keeps their keys apart.
    pub seq: u32,
    /// Key hash → value hash (`None`: the row was removed).
    pub updates: BTreeMap<Digest, Option<Digest>>,
}

/// What an apply writes of the map, in its commit batch.
#[derive(Debug, Default)]
pub struct MapCommit {
    /// Node writes (a rebuild's page; an apply's are folded later, from `sealed`).
    pub writes: MapWrites,
    /// Anchors this apply reached, to fold after it commits.
    pub sealed: Vec<SealedAnchor>,
    /// Dirty keys the anchors consumed (removed first).
    pub consumed: Vec<Vec<u8>>,
    /// Keys changed after the last anchor in this apply (added after).
    pub dirty: BTreeSet<Vec<u8>>,
    /// The new record (a rebuild's).
    pub record: Option<MapRecord>,
}

/// Whether a row key belongs in the map (a row of one of the state's tables, not a record).
pub fn is_map_row(key: &[u8]) -> bool {
    matches!(
        key.first(),
        Some(&TABLE_SUBJECT | &TABLE_PROPOSAL | &TABLE_DEFERRED | &TABLE_OUTCOME)
    )
}

fn node_key(path: &NodePath) -> Vec<u8> {
    [&[MAP_NODE_PREFIX][..], &path.to_key()].concat()
}

fn dirty_key(row_key: &[u8]) -> Vec<u8> {
    [&[MAP_DIRTY_PREFIX][..], row_key].concat()
}

fn sealed_key(size: u64, seq: u32) -> Vec<u8> {
    [
        &[MAP_SEALED_PREFIX][..],
        &size.to_be_bytes(),
        &seq.to_be_bytes(),
    ]
    .concat()
}

fn map_error(e: MapError) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// The map's nodes as the store holds them. Readers that need one version of the map
/// (proofs) read under the state machine's lock, which every write of the map holds.
#[derive(Debug)]
pub struct StoreMap<'a>(&'a Store);

impl MapStore for StoreMap<'_> {
    fn node(&self, path: &NodePath) -> Result<Option<Node>, MapError> {
        if path.len() <= MAP_TOP_DEPTH {
            return Ok(self.0.map_top_read().nodes.get(path).cloned());
        }
        self.0.disk_node(path)
    }
}

impl Store {
    fn disk_node(&self, path: &NodePath) -> Result<Option<Node>, MapError> {
        match self.disk.get(TreeName::Map, &node_key(path)) {
            Ok(Some(bytes)) => Node::from_bytes(&bytes).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(MapError::Store(e.to_string())),
        }
    }

    fn map_top_read(&self) -> std::sync::RwLockReadGuard<'_, MapTop> {
        self.map_top.read().unwrap_or_else(|e| e.into_inner())
    }

    fn map_top_write(&self) -> std::sync::RwLockWriteGuard<'_, MapTop> {
        self.map_top.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Loads the map's top levels ([`MapTop`]) at open: the top nodes on disk, the others
    /// derived from their children, the whole checked against the record's root. A
    /// mismatch (or no record) leaves them unloaded, and [`Store::map_ensure`] rebuilds
    /// the map from the rows.
    pub(crate) fn map_top_load(&self) -> Result<(), StoreError> {
        let mut top = MapTop::default();
        if let Some(record) = self.map_record()? {
            let root = record.root_slot()?;
            // Top nodes on disk that hold no leaf: a store written before the top levels
            // lived in memory kept every node there. Removed once the top has loaded.
            let mut stale = Vec::new();
            let derived = match root {
                Slot::Node(hash) => self
                    .map_top_derive(NodePath::ROOT, &mut top, &mut stale)
                    .map(|node| node.map(|n| n.hash()) == Some(hash)),
                Slot::Empty | Slot::Leaf { .. } => Ok(true),
            };
            match derived {
                Ok(true) => {
                    top.loaded = true;
                    if !stale.is_empty() {
                        let mut batch = WriteBatch::default();
                        for path in &stale {
                            batch.remove(TreeName::Map, node_key(path));
                        }
                        self.disk.apply(batch)?;
                    }
                }
                Ok(false) => {
                    tracing::warn!("the state map's top levels do not match its root: rebuilding");
                    top = MapTop::default();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the state map's top levels do not load: rebuilding");
                    top = MapTop::default();
                }
            }
        }
        *self.map_top_write() = top;
        Ok(())
    }

    /// The node at top path `path` (loading it into `top`, with every top node under it):
    /// from the disk when it is there (it holds a leaf; one that does not goes to
    /// `stale`), else from its children's hashes.
    fn map_top_derive(
        &self,
        path: NodePath,
        top: &mut MapTop,
        stale: &mut Vec<NodePath>,
    ) -> Result<Option<Node>, MapError> {
        let child_slot = |this: &Store, top: &mut MapTop, stale: &mut Vec<_>, child: NodePath| {
            let node = if child.len() <= MAP_TOP_DEPTH {
                this.map_top_derive(child, top, stale)?
            } else {
                this.disk_node(&child)?
            };
            Ok::<_, MapError>(node.map_or(Slot::Empty, |n| Slot::Node(n.hash())))
        };
        let node = match self.disk_node(&path)? {
            Some(node) => {
                for (i, slot) in node.slots.iter().enumerate() {
                    if let Slot::Node(hash) = slot {
                        if path.len() < MAP_TOP_DEPTH {
                            let child = child_slot(self, top, stale, path.child(i))?;
                            if child != Slot::Node(*hash) {
                                return Err(MapError::Corrupt(format!(
                                    "a map node at depth {} does not hash as its parent says",
                                    path.len() + 1
                                )));
                            }
                        }
                    }
                }
                if !holds_leaf(&node) {
                    stale.push(path);
                }
                node
            }
            None => {
                let mut node = Node::default();
                for i in 0..16 {
                    node.slots[i] = child_slot(self, top, stale, path.child(i))?;
                }
                if node.slots.iter().all(|s| *s == Slot::Empty) {
                    return Ok(None);
                }
                node
            }
        };
        top.nodes.insert(path, node.clone());
        Ok(Some(node))
    }

    /// Applies the top-level writes of a batch that has gone through.
    pub(crate) fn map_top_apply(&self, writes: TopWrites) {
        if writes.is_empty() {
            return;
        }
        let mut top = self.map_top_write();
        for (path, node) in writes {
            match node {
                Some(node) => top.nodes.insert(path, node),
                None => top.nodes.remove(&path),
            };
        }
    }
}

impl Store {
    /// The map's nodes, to update or prove from.
    pub fn map_nodes(&self) -> StoreMap<'_> {
        StoreMap(self)
    }

    pub fn map_record(&self) -> Result<Option<MapRecord>, StoreError> {
        match self.disk.get(TreeName::Sm, KEY_MAP)? {
            Some(bytes) => Ok(Some(decode("state map record", &bytes)?)),
            None => Ok(None),
        }
    }

    /// The row keys changed after the map's last anchor.
    pub fn map_dirty_keys(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let lo = [MAP_DIRTY_PREFIX];
        let hi = [MAP_DIRTY_PREFIX + 1];
        let mut keys = Vec::new();
        self.disk
            .for_each(TreeName::Sm, &lo, Some(&hi), &mut |key, _| {
                keys.push(key[1..].to_vec());
                Ok(())
            })?;
        Ok(keys)
    }

    /// The sealed anchors not yet folded, oldest first (of the current generation: a
    /// rebuild removes the others).
    pub fn map_sealed(&self, generation: u64) -> Result<Vec<SealedAnchor>, StoreError> {
        let lo = [MAP_SEALED_PREFIX];
        let hi = [MAP_SEALED_PREFIX + 1];
        let mut sealed: Vec<SealedAnchor> = Vec::new();
        self.disk
            .for_each(TreeName::Sm, &lo, Some(&hi), &mut |key, value| {
                let corrupt = || StoreError::Corrupt(format!("sealed anchor key {key:02x?}"));
                let size = key
                    .get(1..9)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(corrupt)?;
                let seq = key
                    .get(9..)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map(u32::from_be_bytes)
                    .ok_or_else(corrupt)?;
                sealed.push(SealedAnchor {
                    generation,
                    size,
                    seq,
                    updates: decode("sealed anchor", value)?,
                });
                Ok(())
            })?;
        Ok(sealed)
    }

    /// Commits the fold of `sealed`: its node writes and the new `record`, and the removal
    /// of its sealed updates, in one batch.
    pub fn map_fold_commit(
        &self,
        sealed: &SealedAnchor,
        writes: MapWrites,
        record: &MapRecord,
    ) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.remove(TreeName::Sm, sealed_key(sealed.size, sealed.seq));
        let (_, top) = self.map_into(
            &mut batch,
            MapCommit {
                writes,
                record: Some(record.clone()),
                ..MapCommit::default()
            },
        )?;
        self.disk.apply(batch)?;
        self.map_top_apply(top);
        Ok(())
    }

    /// Adds `map` to an apply's commit batch; answers its sealed anchors (written, and now
    /// the folder's) and its top-level node writes, for [`Store::map_top_apply`] once the
    /// batch has gone through.
    pub(super) fn map_into(
        &self,
        batch: &mut WriteBatch,
        map: MapCommit,
    ) -> Result<(Vec<SealedAnchor>, TopWrites), StoreError> {
        for key in map.consumed {
            batch.remove(TreeName::Sm, dirty_key(&key));
        }
        for sealed in &map.sealed {
            batch.insert(
                TreeName::Sm,
                sealed_key(sealed.size, sealed.seq),
                encode("sealed anchor", &sealed.updates)?,
            );
        }
        for key in map.dirty {
            batch.insert(TreeName::Sm, dirty_key(&key), Vec::new());
        }
        let mut top = TopWrites::default();
        {
            let current = &self.map_top_read().nodes;
            for (path, node) in map.writes {
                if path.len() > MAP_TOP_DEPTH {
                    match node {
                        Some(node) => batch.insert(TreeName::Map, node_key(&path), node.to_bytes()),
                        None => batch.remove(TreeName::Map, node_key(&path)),
                    }
                    continue;
                }
                // A top node: on disk only while it holds a leaf (see the module docs).
                match node.as_ref().filter(|n| holds_leaf(n)) {
                    Some(node) => batch.insert(TreeName::Map, node_key(&path), node.to_bytes()),
                    None if current.get(&path).is_some_and(holds_leaf) => {
                        batch.remove(TreeName::Map, node_key(&path))
                    }
                    None => {}
                }
                top.push((path, node));
            }
        }
        if let Some(record) = map.record {
            batch.insert(TreeName::Sm, KEY_MAP, encode("state map record", &record)?);
        }
        Ok((map.sealed, top))
    }

    /// Rebuilds the map from the rows of `generation`, as of ledger size `size` (not an
    /// anchor): removes every node, dirty key and sealed anchor, sorts the rows' leaves by
    /// key hash ([`LeafSort`]), folds them in that order in pages of
    /// [`MAP_REBUILD_PAGE_ROWS`], then writes the record. Each page lies to the right of
    /// the ones before, so its fold writes its own nodes once and rewrites only those on
    /// the path between it and the last page: O(state) node writes in all. (Folding the
    /// rows in the order they are stored rewrote nearly every node of the lower levels once
    /// per page.) Memory: a run of [`MAP_REBUILD_RUN_ROWS`] leaves, a read buffer per run,
    /// a page; a crash midway leaves no record of this generation, so the next open starts
    /// over.
    pub fn map_rebuild(&self, generation: u64, size: u64) -> Result<MapRecord, StoreError> {
        self.map_rebuild_in_runs(generation, size, MAP_REBUILD_RUN_ROWS)
    }

    fn map_rebuild_in_runs(
        &self,
        generation: u64,
        size: u64,
        run_rows: usize,
    ) -> Result<MapRecord, StoreError> {
        let started = std::time::Instant::now();
        let mut clear = WriteBatch::default();
        clear.remove(TreeName::Sm, KEY_MAP);
        self.disk.apply(clear)?;
        *self.map_top_write() = MapTop::default();
        // Nodes live in their own tree; a store written before they did kept them in `sm`
        // under the same prefix, which this range clears with the dirty keys and sealed
        // anchors.
        self.remove_keys_paged(TreeName::Map, &[], None)?;
        self.remove_keys_paged(
            TreeName::Sm,
            &[MAP_NODE_PREFIX],
            Some(&[MAP_SEALED_PREFIX + 1]),
        )?;
        // 1. Every row's leaf, sorted by key hash.
        let mut sort = LeafSort::new(run_rows, self.spill_dir());
        for table in [TABLE_SUBJECT, TABLE_PROPOSAL, TABLE_DEFERRED, TABLE_OUTCOME] {
            let mut lo = state_key(generation, &[table]);
            let hi = prefix_end(&lo);
            loop {
                // A page of rows at a time (a simulated disk copies what a scan visits).
                let mut taken = 0;
                let mut last: Option<Vec<u8>> = None;
                let mut failed = None;
                let scan =
                    self.disk
                        .for_each(TreeName::Sm, &lo, hi.as_deref(), &mut |key, value| {
                            if let Err(e) = sort.push((key_hash(&key[9..]), value_hash(value))) {
                                failed = Some(e);
                                return Err(StoreError::ScanStopped);
                            }
                            taken += 1;
                            last = Some(key.to_vec());
                            if taken >= MAP_REBUILD_PAGE_ROWS {
                                return Err(StoreError::ScanStopped);
                            }
                            Ok(())
                        });
                if let Some(e) = failed {
                    return Err(e);
                }
                match scan {
                    Ok(()) | Err(StoreError::ScanStopped) => {}
                    Err(e) => return Err(e),
                }
                let Some(mut next) = last else { break };
                if taken < MAP_REBUILD_PAGE_ROWS {
                    break;
                }
                next.push(0);
                lo = next;
            }
        }
        let (rows, runs) = (sort.len, sort.spilled);
        let sorted_ms = started.elapsed().as_millis() as u64;
        // 2. The leaves in key-hash order, a page at a time.
        let mut root = Slot::Empty;
        let mut leaves = sort.into_sorted()?;
        loop {
            let mut page: BTreeMap<Digest, Option<Digest>> = BTreeMap::new();
            for leaf in leaves.by_ref().take(MAP_REBUILD_PAGE_ROWS) {
                let (key, value) = leaf?;
                page.insert(key, Some(value));
            }
            if page.is_empty() {
                break;
            }
            let mut writes = MapWrites::new();
            root =
                statemap::update(&self.map_nodes(), &mut writes, root, &page).map_err(map_error)?;
            let mut batch = WriteBatch::default();
            let (_, top) = self.map_into(
                &mut batch,
                MapCommit {
                    writes,
                    ..MapCommit::default()
                },
            )?;
            self.disk.apply(batch)?;
            self.map_top_apply(top);
        }
        let record = MapRecord {
            generation,
            size,
            root: root.to_bytes(),
            anchored: false,
        };
        let mut batch = WriteBatch::default();
        batch.insert(TreeName::Sm, KEY_MAP, encode("state map record", &record)?);
        self.disk.apply(batch)?;
        self.map_top_write().loaded = true;
        tracing::info!(
            generation,
            size,
            rows,
            runs,
            sorted_ms,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "state map rebuilt from the rows"
        );
        Ok(record)
    }

    /// The map's record, rebuilding the map first when it does not hold the rows of
    /// `generation` at or before ledger size `size`.
    pub fn map_ensure(&self, generation: u64, size: u64) -> Result<MapRecord, StoreError> {
        match self.map_record()? {
            Some(record)
                if record.generation == generation
                    && record.size <= size
                    && self.map_top_read().loaded =>
            {
                Ok(record)
            }
            _ => self.map_rebuild(generation, size),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreOptions;

    fn k(i: u32) -> Digest {
        key_hash(&i.to_be_bytes())
    }

    fn v(i: u32) -> Digest {
        value_hash(&i.to_le_bytes())
    }

    /// Folds `updates` into the store's map as one anchor at `size`; answers the new root.
    fn fold(store: &Store, size: u64, updates: BTreeMap<Digest, Option<Digest>>) -> Slot {
        let root = store
            .map_record()
            .expect("record")
            .map_or(Ok(Slot::Empty), |r| r.root_slot())
            .expect("root");
        let mut writes = MapWrites::new();
        let root =
            statemap::update(&store.map_nodes(), &mut writes, root, &updates).expect("update");
        let sealed = SealedAnchor {
            generation: 0,
            size,
            seq: 0,
            updates,
        };
        let record = MapRecord {
            generation: 0,
            size,
            root: root.to_bytes(),
            anchored: true,
        };
        store
            .map_fold_commit(&sealed, writes, &record)
            .expect("commit");
        root
    }

    /// The keys of `tree` in `[lo, hi)`.
    fn count_keys(store: &Store, tree: TreeName, lo: &[u8], hi: &[u8]) -> usize {
        let mut n = 0usize;
        store
            .disk
            .for_each(tree, lo, Some(hi), &mut |_, _| {
                n += 1;
                Ok(())
            })
            .expect("scan");
        n
    }

    /// The node keys on disk at each depth up to the top's.
    fn top_on_disk(store: &Store) -> Vec<usize> {
        let mut counts = vec![0; MAP_TOP_DEPTH + 1];
        store
            .disk
            .for_each(
                TreeName::Map,
                &[MAP_NODE_PREFIX],
                Some(&[MAP_NODE_PREFIX, MAP_TOP_DEPTH as u8 + 1]),
                &mut |key, _| {
                    counts[usize::from(key[1])] += 1;
                    Ok(())
                },
            )
            .expect("scan");
        counts
    }

    fn assert_proves(store: &Store, root: Slot, present: &[u32], absent: &[u32]) {
        for &i in present.iter().chain(absent) {
            let proof = statemap::prove(&store.map_nodes(), root, &k(i)).expect("prove");
            let expected = present.contains(&i).then(|| v(i));
            let found = proof
                .leaf
                .filter(|(key, _)| *key == k(i))
                .map(|(_, value)| value);
            assert_eq!(found, expected, "key {i}");
            assert_eq!(proof.root_for(&k(i)), Ok(root.hash()), "key {i}");
        }
    }

    /// Every top node in memory is on disk exactly when it holds a leaf, and no other top
    /// node is on disk.
    fn assert_top_on_disk_iff_leaf(store: &Store) {
        let top = store.map_top_read();
        let mut holding = 0;
        for (path, node) in &top.nodes {
            let on_disk = store.disk_node(path).expect("read").is_some();
            assert_eq!(on_disk, holds_leaf(node), "depth {}", path.len());
            holding += usize::from(on_disk);
        }
        assert_eq!(top_on_disk(store).iter().sum::<usize>(), holding);
    }

    /// A map big enough that its upper levels are all nodes keeps them off disk, and a
    /// reopened store derives them again (the same root, the same proofs); as rows go and
    /// top nodes hold leaves again, those are written, and the others' disk copies go.
    #[test]
    fn the_top_levels_stay_in_memory_and_are_derived_again_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = StoreOptions::default();
        let rows = 20_000u32;
        let root = {
            let store = Store::open(dir.path(), &options).expect("open");
            let root = fold(
                &store,
                1024,
                (0..rows).map(|i| (k(i), Some(v(i)))).collect(),
            );
            // ~78 rows under each depth-2 node: depths 0 and 1 are all nodes, off disk;
            // some depth-2 nodes hold a leaf, most depth-3 ones do.
            let counts = top_on_disk(&store);
            assert_eq!(&counts[..2], &[0, 0], "{counts:?}");
            assert!(counts[2] < 256 && counts[3] > 3_000, "{counts:?}");
            assert_top_on_disk_iff_leaf(&store);
            assert_proves(&store, root, &[0, 7, 19_999], &[rows, rows + 1]);
            root
        };
        let store = Store::open(dir.path(), &options).expect("reopen");
        assert!(store.map_top_read().loaded, "derived and matched the root");
        assert_top_on_disk_iff_leaf(&store);
        assert_proves(&store, root, &[0, 7, 19_999], &[rows]);

        // A store written before the top levels lived in memory has every top node on
        // disk: open reads them, and removes those that hold no leaf.
        let legacy: Vec<(NodePath, Node)> = store
            .map_top_read()
            .nodes
            .iter()
            .filter(|(_, node)| !holds_leaf(node))
            .map(|(path, node)| (*path, node.clone()))
            .collect();
        assert!(legacy.len() > 17, "{} all-node top nodes", legacy.len());
        let mut batch = WriteBatch::default();
        for (path, node) in &legacy {
            batch.insert(TreeName::Map, node_key(path), node.to_bytes());
        }
        store.disk.apply(batch).expect("write");
        drop(store);
        let store = Store::open(dir.path(), &options).expect("reopen");
        assert!(store.map_top_read().loaded);
        assert_top_on_disk_iff_leaf(&store);
        assert_proves(&store, root, &[0, 7, 19_999], &[rows]);

        // Remove all but 40 rows: the top nodes left hold leaves and go to disk; the
        // others are removed.
        let root = fold(&store, 2048, (40..rows).map(|i| (k(i), None)).collect());
        let counts = top_on_disk(&store);
        assert_eq!(counts[0], 1, "{counts:?}");
        assert_top_on_disk_iff_leaf(&store);
        drop(store);
        let store = Store::open(dir.path(), &options).expect("reopen");
        assert!(store.map_top_read().loaded);
        assert_top_on_disk_iff_leaf(&store);
        assert_proves(&store, root, &[0, 39], &[40, 19_999]);
    }

    /// A rebuild from rows spanning several pages and sorted runs (of every table) gives the
    /// map that folding them gives, with the top levels in memory as a fold leaves them.
    #[test]
    fn a_rebuild_over_many_pages_gives_the_folded_map() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), &StoreOptions::default()).expect("open");
        let per_table = MAP_REBUILD_PAGE_ROWS as u32 + 1_000;
        let mut expected = statemap::MemMap::default();
        let mut updates = BTreeMap::new();
        let mut batch = WriteBatch::default();
        for table in [TABLE_SUBJECT, TABLE_PROPOSAL, TABLE_DEFERRED, TABLE_OUTCOME] {
            for i in 0..per_table {
                let key = [&[table][..], &i.to_be_bytes()].concat();
                let value = i.to_le_bytes();
                updates.insert(key_hash(&key), Some(value_hash(&value)));
                batch.insert(TreeName::Sm, state_key(0, &key), value.to_vec());
            }
        }
        store.disk.apply(batch).expect("write rows");
        let mut writes = MapWrites::new();
        let root = statemap::update(&expected, &mut writes, Slot::Empty, &updates).expect("update");
        expected.write(writes);

        // Runs of 1,000 leaves: 69 spilled to files (the first 64 merged into one of the
        // next level when the 64th is written), the rest in memory, all merged.
        let record = store.map_rebuild_in_runs(0, 77, 1_000).expect("rebuild");
        assert_eq!(record.root_slot().expect("root"), root);
        // Every node the fold would store, and no other.
        let mut on_disk = 0;
        for (path, node) in &expected.nodes {
            let stored = if path.len() <= MAP_TOP_DEPTH {
                store.map_top_read().nodes.get(path).cloned()
            } else {
                store.disk_node(path).expect("read")
            };
            assert_eq!(stored.as_ref(), Some(node), "node at depth {}", path.len());
            on_disk += usize::from(path.len() > MAP_TOP_DEPTH);
        }
        let deep = count_keys(
            &store,
            TreeName::Map,
            &[MAP_NODE_PREFIX, MAP_TOP_DEPTH as u8 + 1],
            &[MAP_NODE_PREFIX + 1],
        );
        assert_eq!(deep, on_disk);
        assert_top_on_disk_iff_leaf(&store);
        let key = key_hash(&[&[TABLE_OUTCOME][..], &7u32.to_be_bytes()].concat());
        let proof = statemap::prove(&store.map_nodes(), root, &key).expect("prove");
        assert_eq!(proof.root_for(&key), Ok(root.hash()));
        assert_eq!(proof.leaf, Some((key, value_hash(&7u32.to_le_bytes()))));
    }

    /// A store written before the map's nodes had a tree of their own kept them in `sm`,
    /// under the same keys: open finds none in `map`, so the top does not load, and the
    /// rebuild that follows removes the old copies (and anything in `map`).
    #[test]
    fn nodes_left_in_sm_by_an_older_layout_are_rebuilt_and_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = StoreOptions::default();
        let count = count_keys;
        {
            let store = Store::open(dir.path(), &options).expect("open");
            fold(
                &store,
                1024,
                (0..5_000).map(|i| (k(i), Some(v(i)))).collect(),
            );
            // Move every node to where the older layout kept it.
            let mut nodes = Vec::new();
            store
                .disk
                .for_each(TreeName::Map, &[], None, &mut |key, value| {
                    nodes.push((key.to_vec(), value.to_vec()));
                    Ok(())
                })
                .expect("scan");
            assert!(nodes.len() > 300, "{} nodes", nodes.len());
            let mut batch = WriteBatch::default();
            for (key, value) in nodes {
                batch.remove(TreeName::Map, key.clone());
                batch.insert(TreeName::Sm, key, value);
            }
            // And a stray node in `map`, which the rebuild removes too.
            batch.insert(
                TreeName::Map,
                node_key(&NodePath::ROOT),
                Node::default().to_bytes(),
            );
            store.disk.apply(batch).expect("move");
        }
        let store = Store::open(dir.path(), &options).expect("reopen");
        assert!(
            !store.map_top_read().loaded,
            "no nodes in `map`: not loaded"
        );
        assert_eq!(count(&store, TreeName::Map, &[], &[0xff]), 1);
        assert!(
            count(
                &store,
                TreeName::Sm,
                &[MAP_NODE_PREFIX],
                &[MAP_DIRTY_PREFIX]
            ) > 300
        );
        // No rows in this store: the rebuild makes the empty map, and the old nodes go.
        let record = store.map_ensure(0, 4096).expect("ensure");
        assert_eq!(record.root_slot().expect("root"), Slot::Empty);
        assert_eq!(
            count(
                &store,
                TreeName::Sm,
                &[MAP_NODE_PREFIX],
                &[MAP_DIRTY_PREFIX]
            ),
            0
        );
        assert_eq!(count(&store, TreeName::Map, &[], &[0xff]), 0);
    }

    /// A top that does not hash to the record's root (here: a node under a top node that
    /// is derived from its children went missing) is not used: the store is left for
    /// `map_ensure` to rebuild.
    #[test]
    fn a_top_that_does_not_match_the_root_is_rebuilt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = StoreOptions::default();
        {
            let store = Store::open(dir.path(), &options).expect("open");
            fold(
                &store,
                1024,
                (0..20_000).map(|i| (k(i), Some(v(i)))).collect(),
            );
            let child = {
                let top = store.map_top_read();
                let (path, node) = top
                    .nodes
                    .iter()
                    .find(|(path, node)| path.len() == 2 && !holds_leaf(node))
                    .expect("a depth-2 node off disk");
                let i = node
                    .slots
                    .iter()
                    .position(|s| matches!(s, Slot::Node(_)))
                    .expect("a child node");
                path.child(i)
            };
            assert!(store.disk_node(&child).expect("read").is_some());
            let mut batch = WriteBatch::default();
            batch.remove(TreeName::Map, node_key(&child));
            store.disk.apply(batch).expect("remove");
        }
        let store = Store::open(dir.path(), &options).expect("reopen");
        assert!(!store.map_top_read().loaded, "a mismatch is not used");
        // No rows in this store: the rebuild makes the empty map, and the top is loaded.
        let record = store.map_ensure(0, 4096).expect("ensure");
        assert_eq!(record.root_slot().expect("root"), Slot::Empty);
        assert!(store.map_top_read().loaded);
    }
}
