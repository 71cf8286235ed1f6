//! The state map on disk ([`docket_core::statemap`]): its nodes, the keys of the rows
//! changed since its last anchor, and its record, all in `sm` beside the rows.
//!
//! | key                         | value                                                  |
//! |-----------------------------|--------------------------------------------------------|
//! | `0x02`, node path key       | a node's bytes ([`Node::to_bytes`]); single version: the map at its last anchor |
//! | `0x03`, row key             | empty: a row changed after the map's last sealed anchor ("dirty") |
//! | `0x04`, anchor size (u64 BE), sequence (u32 BE) | a sealed anchor's updates: bincode map of key hash → value hash (`None`: the row was removed) |
//! | `state_map`                 | bincode [`MapRecord`]: generation, size, root slot, anchored |
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

/// Rows folded into the map per batch when it is rebuilt from the rows.
pub const MAP_REBUILD_PAGE_ROWS: usize = 16 * 1024;

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
        match self.0.disk.get(TreeName::Sm, &node_key(path)) {
            Ok(Some(bytes)) => Node::from_bytes(&bytes).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(MapError::Store(e.to_string())),
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
        self.map_into(
            &mut batch,
            MapCommit {
                writes,
                record: Some(record.clone()),
                ..MapCommit::default()
            },
        )?;
        self.disk.apply(batch)
    }

    /// Adds `map` to an apply's commit batch; answers its sealed anchors (written, and now
    /// the folder's).
    pub(super) fn map_into(
        &self,
        batch: &mut WriteBatch,
        map: MapCommit,
    ) -> Result<Vec<SealedAnchor>, StoreError> {
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
        for (path, node) in map.writes {
            match node {
                Some(node) => batch.insert(TreeName::Sm, node_key(&path), node.to_bytes()),
                None => batch.remove(TreeName::Sm, node_key(&path)),
            }
        }
        if let Some(record) = map.record {
            batch.insert(TreeName::Sm, KEY_MAP, encode("state map record", &record)?);
        }
        Ok(map.sealed)
    }

    /// Rebuilds the map from the rows of `generation`, as of ledger size `size` (not an
    /// anchor): removes every node, dirty key and sealed anchor, folds the rows in pages of
    /// [`MAP_REBUILD_PAGE_ROWS`], then writes the record. O(state) writes, O(page) memory;
    /// a crash midway leaves no record of this generation, so the next open starts over.
    pub fn map_rebuild(&self, generation: u64, size: u64) -> Result<MapRecord, StoreError> {
        let started = std::time::Instant::now();
        let mut clear = WriteBatch::default();
        clear.remove(TreeName::Sm, KEY_MAP);
        self.disk.apply(clear)?;
        self.remove_keys_paged(
            TreeName::Sm,
            &[MAP_NODE_PREFIX],
            Some(&[MAP_SEALED_PREFIX + 1]),
        )?;
        let mut root = Slot::Empty;
        let mut rows = 0u64;
        for table in [TABLE_SUBJECT, TABLE_PROPOSAL, TABLE_DEFERRED, TABLE_OUTCOME] {
            let mut lo = state_key(generation, &[table]);
            let hi = prefix_end(&lo);
            loop {
                // A page of rows, then their fold: no write while the scan runs.
                let mut page: BTreeMap<Digest, Option<Digest>> = BTreeMap::new();
                let mut last: Option<Vec<u8>> = None;
                let scan =
                    self.disk
                        .for_each(TreeName::Sm, &lo, hi.as_deref(), &mut |key, value| {
                            page.insert(key_hash(&key[9..]), Some(value_hash(value)));
                            last = Some(key.to_vec());
                            if page.len() >= MAP_REBUILD_PAGE_ROWS {
                                return Err(StoreError::ScanStopped);
                            }
                            Ok(())
                        });
                match scan {
                    Ok(()) | Err(StoreError::ScanStopped) => {}
                    Err(e) => return Err(e),
                }
                let Some(mut next) = last else { break };
                rows += page.len() as u64;
                let mut writes = MapWrites::new();
                root = statemap::update(&self.map_nodes(), &mut writes, root, &page)
                    .map_err(map_error)?;
                let mut batch = WriteBatch::default();
                self.map_into(
                    &mut batch,
                    MapCommit {
                        writes,
                        ..MapCommit::default()
                    },
                )?;
                self.disk.apply(batch)?;
                if page.len() < MAP_REBUILD_PAGE_ROWS {
                    break;
                }
                next.push(0);
                lo = next;
            }
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
        tracing::info!(
            generation,
            size,
            rows,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "state map rebuilt from the rows"
        );
        Ok(record)
    }

    /// The map's record, rebuilding the map first when it does not hold the rows of
    /// `generation` at or before ledger size `size`.
    pub fn map_ensure(&self, generation: u64, size: u64) -> Result<MapRecord, StoreError> {
        match self.map_record()? {
            Some(record) if record.generation == generation && record.size <= size => Ok(record),
            _ => self.map_rebuild(generation, size),
        }
    }
}
