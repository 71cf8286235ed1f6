//! The Raft state machine: the governance core, applied on every replica.
//!
//! The state lives in the store as rows ([`docket_core::rows`], one generation of the
//! store's state rows: [`StoreRows`]); memory holds the small parts of the state (head,
//! constitution, the bounded deferred set) and the rows one apply changed. Applying a
//! batch of Raft entries runs [`crate::command`] over the state, then writes the new
//! ledger entries and the Merkle tree nodes over their hashes, then the changed rows with
//! the applied position in one batch ([`Store::commit_apply`]), while holding the lock
//! readers take, so a reader never sees state whose entries are not yet stored.
//! [`Replica`] serves the tree's roots and proofs under the same lock, so they always
//! cover exactly the applied ledger. Opening a node reads its state from its rows: no
//! replay.
//!
//! Applied state is not flushed on every apply: after a crash, the node restarts from the
//! applied position sled still has and openraft re-applies the committed entries after it
//! (`save_committed` / `read_committed`), which yields the same entries again because
//! apply is deterministic.
//!
//! An I/O error while applying panics. Apply must not skip or half-do a command (the next
//! one would then be applied to a state that differs from every other replica's), so the
//! replica stops, toydb style, and restarts from what is on disk. openraft 0.9 would also
//! stop the node on a returned `StorageError`; the panic additionally keeps the in-memory
//! state from ever being read past the failure, because the panic poisons the state lock.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use docket_core::merkle::Hash;
use std::collections::{BTreeMap, VecDeque};

use docket_core::statemap::{self, Digest, MapAnchor, MapProof};

use docket_core::{
    LedgerEntry, LedgerIndex, LedgerTime, ProposalId, Rows, SignedProposal, State, StateHash,
    VerifiedMemo,
};
use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, StorageError, StorageIOError};

use crate::command::{execute, Command, CommandResponse};
use crate::merkle::{LedgerTree, TreeError, TreeHead};
use crate::snapshot::{self, Header, SnapshotBuilder, VerifyError};
use crate::snapshot_file::SnapshotFile;
use crate::store::{
    is_map_row, AppliedRecord, CoreRecord, MapCommit, MapRecord, SealedAnchor, SnapshotRecord,
    Staging, Store, StoreError,
};

mod fold;
mod install_rows;

use crate::disk::DiskMemory;
use crate::{Entry, LogId, NodeId, SnapshotMeta, StoredMembership, TypeConfig};
use fold::{FoldCore, Folder};
pub use fold::{MapFold, FOLDS_QUEUED_MAX};
use install_rows::InstallRows;

/// What apply changes, under one lock.
#[derive(Debug)]
struct Shared {
    /// `None` until the genesis command is applied.
    core: Option<State>,
    applied: AppliedRecord,
    /// The state after each of the last [`RECENT_BOUNDARIES_MAX`] commands applied, oldest
    /// first: what this replica can vouch for when asked to cosign a checkpoint
    /// (`docket_core::checkpoint`). Every replica applies the same commands, so they share
    /// these sizes, however each batches its applies. In memory only: a replica that opens or
    /// installs a snapshot starts from where it stands (an apply ends at a command).
    recent: VecDeque<Boundary>,
    /// Where the state map stands on disk (as of the last commit).
    map: MapRecord,
    /// The state map's last [`RECENT_ANCHORS_MAX`] anchors this replica computed (folded),
    /// oldest first: what it vouches for in a checkpoint's `map` line.
    anchors: VecDeque<MapAnchor>,
    /// The rows changed since the map's last sealed anchor: the dirty keys on disk,
    /// mirrored (the next anchor seals them without scanning for them), each with its
    /// value's hash when the commit that changed it knew it (`Some(None)`: the row was
    /// removed), `None` when it must be read (after a restart). At most one anchor
    /// interval's rows.
    dirty: DirtyRows,
    /// Sizes of the anchors applies sealed and the map folder has not folded yet, oldest
    /// first (at most [`FOLDS_QUEUED_MAX`] plus one apply's).
    pending: VecDeque<u64>,
    /// Why the map folder stopped, if it did: the next apply stops the node with it.
    fold_failed: Option<String>,
}

/// Row key → its value hash as of the last commit, if known: see [`Shared::dirty`].
type DirtyRows = BTreeMap<Vec<u8>, Option<Option<Digest>>>;

/// A proof of one state row ([`Replica::prove_row`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowProof {
    /// The anchor the proof is under; `None` while the map is at no anchor (after a
    /// snapshot install, until the next one).
    pub anchor: Option<MapAnchor>,
    pub proof: MapProof,
    /// The row's bytes now.
    pub value: Option<Vec<u8>>,
    /// Whether `value` is what the proof proves (the row did not change since the anchor).
    pub current: bool,
}

/// Anchors of the state map a replica remembers for cosigning.
pub const RECENT_ANCHORS_MAX: usize = 256;

/// Commands whose resulting state a replica remembers for cosigning: at a hundred group
/// commits a second, the last 40 s or so; 48 bytes each.
pub const RECENT_BOUNDARIES_MAX: usize = 4096;

/// The ledger after one applied command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Boundary {
    /// Ledger entries: `[0, size)`.
    pub size: u64,
    /// The state hash after them.
    pub state: StateHash,
    /// The ledger time of the last of them.
    pub time: LedgerTime,
    /// The state map's last anchor at or before `size`, if this replica computed it.
    pub map: Option<MapAnchor>,
}

impl Boundary {
    /// The boundary a replica stands at when it opens or installs a snapshot: what it has
    /// applied ends at a command (applies and snapshots cover whole log entries).
    fn now(state: &State, applied: &AppliedRecord, map: Option<MapAnchor>) -> Boundary {
        Boundary {
            size: applied.ledger_len,
            state: state.hash(),
            time: state.head().time,
            map,
        }
    }
}

fn read(shared: &RwLock<Shared>) -> RwLockReadGuard<'_, Shared> {
    shared.read().expect(
        "invariant: the state lock is poisoned only by a failed apply, which stops the node",
    )
}

fn write(shared: &RwLock<Shared>) -> RwLockWriteGuard<'_, Shared> {
    shared.write().expect(
        "invariant: the state lock is poisoned only by a failed apply, which stops the node",
    )
}

/// The state machine handed to `openraft::Raft::new`.
#[derive(Debug)]
pub struct StateMachine {
    store: Arc<Store>,
    shared: Arc<RwLock<Shared>>,
    signatures: Arc<VerifiedMemo>,
    /// Folds the anchors applies seal into the state map's nodes.
    folder: Folder,
    map_nodes: MapNodesLock,
}

/// A cheap, cloneable read handle on a node's governance state and ledger, for the API.
/// Reads see only applied (and stored) state; linearizability is the caller's business
/// (`Raft::ensure_linearizable` first).
#[derive(Clone, Debug)]
pub struct Replica {
    store: Arc<Store>,
    shared: Arc<RwLock<Shared>>,
    signatures: Arc<VerifiedMemo>,
    map_nodes: MapNodesLock,
}

/// Held (written) by a fold while it writes the state map's nodes and publishes the new
/// root, and (read) by a proof while it reads them, taken before the state lock by both.
/// A fold's node writes replace nodes in place, so a proof must not read them half-way;
/// with this lock the fold writes them without the state lock, and applies and reads that
/// read no nodes go on meanwhile (the commit took ~10 ms, up to 25, under 16 clients).
/// Other writers of the nodes (a snapshot install, a rebuild at open) hold the state lock.
type MapNodesLock = Arc<RwLock<()>>;

/// What a snapshot install's replay gives the store: each verified entry to the staging
/// area, each page of rows through the install's filter ([`InstallRows`]).
struct Installing<'s, 'a> {
    staging: &'s mut Staging<'a>,
    rows: Arc<InstallRows>,
}

impl snapshot::Receiver for Installing<'_, '_> {
    fn entry(&mut self, index: u64, bytes: &[u8]) -> Result<usize, StoreError> {
        self.staging.entry(index, bytes)
    }

    fn rows(&mut self, changes: docket_core::state::Changes) -> Result<(), StoreError> {
        self.rows.write(self.staging, changes)
    }
}

/// Where a node's state rows are: one generation of the store's state rows
/// ([`Store::state_generation`]). A read error stops the node ([`Rows`] docs): the state
/// must not decide anything it cannot see.
#[derive(Debug)]
pub(crate) struct StoreRows {
    store: Arc<Store>,
    generation: u64,
}

impl StoreRows {
    pub(crate) fn shared(store: Arc<Store>, generation: u64) -> Arc<dyn Rows> {
        Arc::new(StoreRows { store, generation })
    }
}

impl Rows for StoreRows {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.store
            .state_row(self.generation, key)
            .unwrap_or_else(|e| panic!("fatal: cannot read a state row: {e}"))
    }

    fn scan(&self, prefix: &[u8], visit: &mut dyn FnMut(&[u8], &[u8])) {
        self.store
            .state_scan(self.generation, prefix, visit)
            .unwrap_or_else(|e| panic!("fatal: cannot scan state rows: {e}"));
    }
}

/// Rows a replay (a migration, a snapshot install) holds in memory before it writes them
/// (a handful in unit tests, so their short ledgers cross many pages).
pub const REPLAY_PENDING_ROWS_MAX: usize = if cfg!(test) { 4 } else { 16 * 1024 };

impl StateMachine {
    /// Opens the state persisted in the store's current generation of rows, which the
    /// applied record's commit batch keeps in step with the ledger. A format-1 store (state
    /// in snapshot chunks, no rows) is migrated first: its ledger is replayed into rows,
    /// once.
    pub fn open(store: Arc<Store>) -> Result<StateMachine, StoreError> {
        StateMachine::open_folding(store, MapFold::Inline)
    }

    /// [`StateMachine::open`], folding the state map's anchors as `fold` says. Anchors a
    /// crash left sealed and unfolded are folded here, before it returns.
    pub fn open_folding(store: Arc<Store>, fold: MapFold) -> Result<StateMachine, StoreError> {
        let applied = store.read_applied()?.unwrap_or_default();
        if store.state_generation() == 0 {
            migrate(&store, applied.ledger_len)?;
        }
        let rows = StoreRows::shared(store.clone(), store.state_generation());
        let mut core =
            State::open(rows).map_err(|e| StoreError::Corrupt(format!("persisted state: {e}")))?;
        let head = core.as_ref().map(|s| s.head());
        let last =
            match applied.ledger_len.checked_sub(1) {
                Some(index) => Some(store.ledger_get(index)?.ok_or_else(|| {
                    StoreError::Corrupt(format!("ledger entry {index} is missing"))
                })?),
                None => None,
            };
        if head.map(|h| (h.index, h.hash)) != last.as_ref().map(|e| (e.index, e.hash)) {
            return Err(StoreError::Corrupt(format!(
                "persisted state is at {:?}, the ledger's last entry at {:?}",
                head.map(|h| h.index),
                last.map(|e| e.index)
            )));
        }
        tracing::info!(
            dir = %store.dir().display(),
            last_applied = ?applied.last_applied,
            ledger_len = applied.ledger_len,
            generation = store.state_generation(),
            "state machine opened"
        );
        let map = store.map_ensure(store.state_generation(), applied.ledger_len)?;
        // The one scan for dirty keys: at most an anchor interval's rows.
        let dirty = store
            .map_dirty_keys()?
            .into_iter()
            .map(|key| (key, None))
            .collect();
        if let Some(core) = core.as_mut() {
            core.track_touched_rows();
        }
        let anchor = map.anchor()?;
        let recent = VecDeque::from_iter(
            core.as_ref()
                .map(|state| Boundary::now(state, &applied, anchor)),
        );
        let sealed = store.map_sealed(map.generation)?;
        let shared = Arc::new(RwLock::new(Shared {
            core,
            applied,
            recent,
            map,
            anchors: anchor.into_iter().collect(),
            dirty,
            pending: sealed.iter().map(|s| s.size).collect(),
            fold_failed: None,
        }));
        let map_nodes = MapNodesLock::default();
        let fold_core = Arc::new(FoldCore::new(
            store.clone(),
            shared.clone(),
            map_nodes.clone(),
        ));
        if !sealed.is_empty() {
            tracing::info!(
                anchors = sealed.len(),
                "folding the state map's anchors sealed before the last stop"
            );
        }
        for anchor in &sealed {
            fold_core.fold(anchor)?;
        }
        Ok(StateMachine {
            store,
            shared,
            signatures: Arc::new(VerifiedMemo::new()),
            folder: Folder::start(fold_core, fold)?,
            map_nodes,
        })
    }

    /// Checks signatures during apply through `memo`, shared with whatever else verifies
    /// proposals on this node (its API front door: [`Replica::signatures`]). Each state
    /// machine has a memo of its own unless given one; a memo never changes a decision
    /// (`docket_core::signature`).
    pub fn with_signatures(mut self, memo: Arc<VerifiedMemo>) -> StateMachine {
        self.signatures = memo;
        self
    }

    /// A read handle that stays valid while openraft owns the state machine.
    pub fn replica(&self) -> Replica {
        Replica {
            store: self.store.clone(),
            shared: self.shared.clone(),
            signatures: self.signatures.clone(),
            map_nodes: self.map_nodes.clone(),
        }
    }

    /// Applies Raft entries in order; one response per entry. Synchronous: no `.await`
    /// while the state lock is held. The rows the entries changed are written with the
    /// applied record, so the overlay in memory is one apply's worth.
    fn apply_entries(&self, entries: Vec<Entry>) -> Vec<CommandResponse> {
        self.verify_ahead(&entries);
        let (responses, sealed) = self.apply_locked(entries);
        // Outside the state lock: the fold takes it to publish.
        for anchor in sealed {
            self.folder.submit(anchor);
        }
        responses
    }

    /// Verifies the signatures of the proposals `entries` submit as batches
    /// ([`VerifiedMemo::verify_ahead`]), before the state lock is taken, so adjudication's
    /// checks under the lock are memo hits. Only work moves: the answers are adjudication's,
    /// which checks every signature again (a hit, or a full check of what failed here).
    /// On the leader the front door verified them already, and this finds them remembered.
    fn verify_ahead(&self, entries: &[Entry]) {
        let proposals: Vec<(&SignedProposal, ProposalId)> = entries
            .iter()
            .filter_map(|entry| match &entry.payload {
                EntryPayload::Normal(Command::Submit { proposals, .. }) => Some(proposals),
                _ => None,
            })
            .flatten()
            .map(|signed| (signed, signed.id()))
            .collect();
        if !proposals.is_empty() {
            self.signatures.verify_ahead(&proposals);
        }
    }

    /// [`StateMachine::apply_entries`] under the state lock; answers the anchors it sealed.
    fn apply_locked(&self, entries: Vec<Entry>) -> (Vec<CommandResponse>, Vec<SealedAnchor>) {
        let mut shared = write(&self.shared);
        if let Some(failure) = &shared.fold_failed {
            panic!("fatal: the state map folder stopped: {failure}");
        }
        let Shared {
            core,
            applied,
            recent,
            map,
            dirty,
            pending,
            ..
        } = &mut *shared;
        let had_core = core.is_some();
        let mut recorded: Vec<LedgerEntry> = Vec::new();
        let mut map_commit = MapCommit::default();
        let mut responses = Vec::with_capacity(entries.len());
        for entry in entries {
            let response = match entry.payload {
                EntryPayload::Blank => CommandResponse::Internal,
                EntryPayload::Membership(membership) => {
                    applied.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                    CommandResponse::Internal
                }
                EntryPayload::Normal(command) => {
                    let before = applied.ledger_len + recorded.len() as u64;
                    let forced = matches!(command, Command::Anchor { .. });
                    let response = execute(core, command, &mut recorded, &*self.signatures);
                    if !had_core {
                        // Genesis made the state in memory: its rows go to the store.
                        let rows =
                            StoreRows::shared(self.store.clone(), self.store.state_generation());
                        *core = core.take().map(|s| s.on_rows(rows));
                    }
                    if let Some(state) = core.as_mut() {
                        state.track_touched_rows();
                        let size = applied.ledger_len + recorded.len() as u64;
                        if forced || statemap::is_anchor(before, size) {
                            let seq = pending.iter().filter(|&&s| s == size).count() as u32;
                            let sealed =
                                seal(state, (size, seq), map.generation, &mut map_commit, dirty);
                            pending.push_back(size);
                            map_commit.sealed.push(sealed);
                        }
                        let boundary = Boundary {
                            size,
                            state: state.hash(),
                            time: state.head().time,
                            map: map.anchor().ok().flatten(),
                        };
                        match recent.back_mut() {
                            // A command that appended nothing (an anchor, an idle tick)
                            // ends where the last one did: same ledger, same state.
                            Some(last) if last.size == size => *last = boundary,
                            _ => {
                                if recent.len() == RECENT_BOUNDARIES_MAX {
                                    recent.pop_front();
                                }
                                recent.push_back(boundary);
                            }
                        }
                    }
                    response
                }
            };
            applied.last_applied = Some(entry.log_id);
            responses.push(response);
        }
        let ledger_len = applied.ledger_len + recorded.len() as u64;
        assert_eq!(
            ledger_len,
            core.as_ref().map_or(0, |s| s.head().index.0 + 1),
            "invariant: the ledger length follows the state's head"
        );
        applied.ledger_len = ledger_len;
        if let Some(state) = core.as_mut() {
            map_commit.dirty = state
                .take_touched_rows()
                .into_iter()
                .filter(|key| is_map_row(key))
                .collect();
        }
        let changes = core.as_mut().map(State::take_changes);
        // The rows this apply left dirty, with the value hashes its changes carry (a key
        // touched but not rewritten keeps its stored value: read at the anchor).
        let written = changes.as_ref().map_or(&[][..], |c| &c.rows[..]);
        for key in &map_commit.dirty {
            let hash = written
                .binary_search_by(|(k, _)| k.as_slice().cmp(key))
                .ok()
                .map(|at| written[at].1.as_deref().map(statemap::value_hash));
            dirty.insert(key.clone(), hash);
        }
        let sealed = self
            .store
            .commit_apply(&recorded, changes, map_commit, applied)
            .unwrap_or_else(|error| {
                // See the module docs: stopping beats diverging.
                panic!(
                    "fatal: cannot store applied entries (last applied {:?}): {error}",
                    applied.last_applied
                )
            });
        crate::telemetry::record_applied(&recorded);
        (responses, sealed)
    }

    /// The snapshot header of the state as it is now: O(1) (the state hash is).
    fn header(&self) -> Header {
        let shared = read(&self.shared);
        Header {
            last_applied: shared.applied.last_applied,
            last_membership: shared.applied.last_membership.clone(),
            ledger_len: shared.applied.ledger_len,
            core: shared.core.as_ref().map(|core| CoreRecord {
                state_hash: core.hash(),
                head_hash: core.head().hash,
                state_bytes: 0,
            }),
        }
    }
}

/// Seals the state map's anchor at this boundary (`size` entries): the updates of every row
/// changed since the last anchor (those of earlier applies, `dirty`, the first time in an
/// apply; and the rows touched in this one since), for the folder to fold once the apply
/// has committed them. Value hashes are taken now, from the state at the anchor.
fn seal(
    state: &mut State,
    (size, seq): (u64, u32),
    generation: u64,
    commit: &mut MapCommit,
    dirty: &mut DirtyRows,
) -> SealedAnchor {
    let touched = state.take_touched_rows();
    let hash_of = |key: &[u8]| state.row_value(key).map(|v| statemap::value_hash(&v));
    let mut updates: BTreeMap<Digest, Option<Digest>> = BTreeMap::new();
    for (key, known) in std::mem::take(dirty) {
        if !touched.contains(&key) {
            let value = known.unwrap_or_else(|| hash_of(&key));
            updates.insert(statemap::key_hash(&key), value);
        }
        commit.consumed.push(key);
    }
    for key in touched.iter().filter(|key| is_map_row(key)) {
        updates.insert(statemap::key_hash(key), hash_of(key));
    }
    SealedAnchor {
        generation,
        size,
        seq,
        updates,
    }
}

/// Replays the ledger of a format-1 store (state in snapshot chunks) into generation 1 of
/// state rows, a page of ledger entries at a time, writing rows whenever
/// [`REPLAY_PENDING_ROWS_MAX`] are pending; rewrites the snapshot record with the format-2
/// state hash at its index; then makes generation 1 current (`Store::finish_migration`).
/// A crash midway leaves rows of generation 1 while the store is still at 0: open removes
/// them and the migration starts over.
fn migrate(store: &Arc<Store>, ledger_len: u64) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    let rows = StoreRows::shared(store.clone(), 1);
    let snapshot = store.read_snapshot()?;
    let snapshot_len = snapshot.as_ref().map(|r| r.ledger_len);
    let mut snapshot_hash: Option<StateHash> = None;
    let mut state: Option<State> = None;
    let mut lo = 0;
    while lo < ledger_len {
        let hi = ledger_len.min(lo + snapshot::BUILD_PAGE_ENTRIES);
        store.ledger_for_each(lo, hi, |index, bytes| {
            let entry = LedgerEntry::from_bytes(bytes)
                .map_err(|e| StoreError::Corrupt(format!("ledger entry {index}: {e}")))?;
            let replayed = match &mut state {
                None => {
                    State::from_genesis_entry(&entry).map(|s| state = Some(s.on_rows(rows.clone())))
                }
                Some(s) => s.apply(&entry),
            };
            replayed
                .map_err(|e| StoreError::Corrupt(format!("replaying ledger entry {index}: {e}")))?;
            let s = state.as_mut().expect("invariant: replay made a state");
            if snapshot_len == Some(index + 1) {
                snapshot_hash = Some(s.hash());
            }
            if s.pending_rows() >= REPLAY_PENDING_ROWS_MAX {
                store.write_state_rows(1, s.take_changes())?;
            }
            Ok(())
        })?;
        lo = hi;
    }
    let snapshot = match (snapshot, snapshot_hash) {
        (Some(mut record), Some(hash)) => {
            if let Some(core) = &mut record.core {
                core.state_hash = hash;
                core.state_bytes = 0;
            }
            Some(record)
        }
        (record, _) => record,
    };
    let changes = state.as_mut().map(State::take_changes).unwrap_or_default();
    store.finish_migration(changes, snapshot)?;
    tracing::warn!(
        ledger_len,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "migrated a format-1 store: the state now lives in rows"
    );
    Ok(())
}

fn read_snapshot_error(
    meta: Option<&SnapshotMeta>,
    e: &(impl std::error::Error + 'static),
) -> StorageError<NodeId> {
    StorageIOError::read_snapshot(meta.map(|m| m.signature()), AnyError::new(e)).into()
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership), StorageError<NodeId>> {
        let shared = read(&self.shared);
        Ok((
            shared.applied.last_applied,
            shared.applied.last_membership.clone(),
        ))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        Ok(self.apply_entries(entries.into_iter().collect()))
    }

    /// Captures the state while applies are paused (openraft runs this on the state
    /// machine's own task, between applies); `build_snapshot` then runs concurrently with
    /// later applies and reads only immutable ledger entries.
    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            store: self.store.clone(),
            header: self.header(),
        }
    }

    /// An empty spill file for openraft's receiver to write the chunks into.
    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<SnapshotFile>, StorageError<NodeId>> {
        let file = SnapshotFile::create_in(self.store.spill_dir().as_deref()).map_err(|e| {
            StorageError::from(StorageIOError::write_snapshot(None, AnyError::new(&e)))
        })?;
        Ok(Box::new(file))
    }

    /// Reads the received file from its start, verifying and replaying entry by entry,
    /// each verified entry staged (`Store::begin_install`); switches the store over only
    /// once everything verified. A refused or failed install leaves the store as it was.
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        mut snapshot: Box<SnapshotFile>,
    ) -> Result<(), StorageError<NodeId>> {
        let write_error = |e: &StoreError| -> StorageError<NodeId> {
            StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(e)).into()
        };
        let file = snapshot
            .file_mut()
            .map_err(|e| read_snapshot_error(Some(meta), &e))?;
        std::io::Seek::rewind(file).map_err(|e| read_snapshot_error(Some(meta), &e))?;
        let snapshot_bytes = file
            .metadata()
            .map_err(|e| read_snapshot_error(Some(meta), &e))?
            .len();
        tracing::info!(snapshot_id = %meta.snapshot_id, "installing snapshot: verifying and replaying it");
        let mut staging = self.store.begin_install().map_err(|e| write_error(&e))?;
        let generation = staging.generation();
        let rows = Arc::new(InstallRows::new(
            self.store.clone(),
            &staging,
            snapshot_bytes,
        ));
        let started = std::time::Instant::now();
        let mut receiver = Installing {
            staging: &mut staging,
            rows: rows.clone(),
        };
        let verified = match snapshot::verify(&mut *file, meta, &mut receiver, Some(rows)) {
            Ok(verified) => verified,
            Err(error) => {
                let staged = staging.staged();
                staging.abort().map_err(|e| write_error(&e))?;
                return Err(match error {
                    VerifyError::Refused(e) => {
                        tracing::error!(snapshot_id = %meta.snapshot_id, error = %e, staged, "refused snapshot");
                        read_snapshot_error(Some(meta), &e)
                    }
                    VerifyError::Store(e) => write_error(&e),
                });
            }
        };
        drop(snapshot);
        let verify_ms = started.elapsed().as_millis() as u64;
        let ledger_len = verified.header.ledger_len;
        let staged = staging.staged();
        let record = SnapshotRecord {
            meta: meta.clone(),
            ..verified.header.record()
        };
        let applied = AppliedRecord {
            last_applied: meta.last_log_id,
            last_membership: meta.last_membership.clone(),
            ledger_len,
        };
        // The install's filter of written rows ends with the replay: from here on the
        // state reads its rows as every state does.
        let mut state = verified
            .state
            .map(|state| state.on_rows(StoreRows::shared(self.store.clone(), generation)));
        let changes = state.as_mut().map(State::take_changes);
        // No fold runs while the map is rebuilt; anchors sealed before are moot.
        let _folding = self.folder.core().exclusive();
        let mut shared = write(&self.shared);
        staging
            .commit(record, changes, &applied)
            .map_err(|e| write_error(&e))?;
        let commit_ms = started.elapsed().as_millis() as u64 - verify_ms;
        // The map is rebuilt from the installed rows, at a size that is no anchor: this
        // replica vouches for no map root until its next anchor.
        let map = self
            .store
            .map_rebuild(self.store.state_generation(), ledger_len)
            .map_err(|e| write_error(&e))?;
        if let Some(state) = state.as_mut() {
            state.track_touched_rows();
        }
        shared.recent =
            VecDeque::from_iter(state.as_ref().map(|s| Boundary::now(s, &applied, None)));
        shared.anchors.clear();
        shared.dirty.clear();
        shared.pending.clear();
        shared.map = map;
        shared.core = state;
        shared.applied = applied;
        tracing::info!(
            snapshot_id = %meta.snapshot_id,
            ledger_len,
            staged,
            verify_ms,
            commit_ms,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "installed snapshot"
        );
        Ok(())
    }

    /// The current snapshot, written afresh from the store into a spill file (the ledger
    /// part is the store's own ledger prefix; see [`crate::snapshot`]).
    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<openraft::Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let Some(record) = self
            .store
            .read_snapshot()
            .map_err(|e| read_snapshot_error(None, &e))?
        else {
            return Ok(None);
        };
        // O(1): the bytes are written from the ledger as the sender reads them.
        let header = Header::from_record(&record);
        let file = snapshot::serve(self.store.clone(), header)
            .map_err(|e| read_snapshot_error(Some(&record.meta), &e))?;
        Ok(Some(openraft::Snapshot {
            meta: record.meta,
            snapshot: Box::new(file),
        }))
    }
}

impl Replica {
    /// The memo of verified signatures this node's apply uses; a front door that checks
    /// proposals through it spares the apply of the same proposal a second verification.
    pub fn signatures(&self) -> &Arc<VerifiedMemo> {
        &self.signatures
    }

    /// Runs `f` on the current state (`None` before genesis) under the read lock. Keep it
    /// short: applies wait for it.
    pub fn with_state<T>(&self, f: impl FnOnce(Option<&State>) -> T) -> T {
        f(read(&self.shared).core.as_ref())
    }

    pub fn state_hash(&self) -> Option<StateHash> {
        self.with_state(|s| s.map(State::hash))
    }

    /// Number of ledger entries applied: the ledger is `[0, ledger_len)`.
    pub fn ledger_len(&self) -> u64 {
        read(&self.shared).applied.ledger_len
    }

    pub fn last_applied(&self) -> Option<LogId> {
        read(&self.shared).applied.last_applied
    }

    /// Bytes the node's store takes on disk (log, ledger, state rows, Merkle tree), where
    /// the disk can say cheaply. For metrics.
    pub fn store_bytes(&self) -> Option<u64> {
        self.store.size_bytes()
    }

    /// The highest log index whose purge keeps about `keep` bytes of the most recent log
    /// (see [`Store::log_keep_floor`]): the byte side of `docket_service`'s retention.
    pub fn log_keep_floor(&self, keep: u64) -> Option<u64> {
        self.store.log_keep_floor(keep)
    }

    /// Bytes of log this node holds past `index`: an estimate for
    /// metrics and logs.
    pub fn log_bytes_after(&self, index: u64) -> u64 {
        self.store.log_bytes_after(index)
    }

    /// The store's read cache and write buffers in memory, where the disk counts them
    /// (fjall; not sled). For metrics.
    pub fn store_memory(&self) -> Option<DiskMemory> {
        self.store.memory()
    }

    /// The committed log id openraft last saved on this node (written, not flushed, on
    /// every commit: see "Durability" in ARCHITECTURE.md). For metrics and status only.
    pub fn committed(&self) -> Result<Option<LogId>, StoreError> {
        self.store.read_committed()
    }

    /// Runs `f` on the Merkle tree over the applied ledger, under the state lock (so the
    /// tree and the ledger length agree; applies and installs wait, as for
    /// [`Replica::with_state`]). Every method of the view is O(log n) disk reads.
    pub fn with_tree<T>(&self, f: impl FnOnce(&LedgerTree<'_>) -> T) -> T {
        let shared = read(&self.shared);
        f(&self.store.ledger_tree_of(shared.applied.ledger_len))
    }

    /// Size and RFC 9162 root of the Merkle tree over the whole applied ledger, from the
    /// tree's right edge the store keeps in memory (no disk reads).
    pub fn tree_head(&self) -> Result<TreeHead, TreeError> {
        let shared = read(&self.shared);
        let head = self.store.ledger_tree_head();
        if head.size == shared.applied.ledger_len {
            return Ok(head);
        }
        // Only between a failed snapshot install and the panic of the next apply: the
        // tree on disk, as for every other view.
        self.store.ledger_tree_of(shared.applied.ledger_len).head()
    }

    /// A proof of state row `row_key` under the state map's last anchor, with the row's
    /// current value; read under the map's node lock ([`MapNodesLock`]) and the state
    /// lock, one of which every write of the map holds, so the proof, the anchor and the
    /// value are of one moment.
    pub fn prove_row(&self, row_key: &[u8]) -> Result<RowProof, StoreError> {
        let _nodes = self
            .map_nodes
            .read()
            .expect("invariant: the map node lock is poisoned only by a panicking fold");
        let shared = read(&self.shared);
        let root = shared.map.root_slot()?;
        let key = statemap::key_hash(row_key);
        let proof = statemap::prove(&self.store.map_nodes(), root, &key)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let value = shared.core.as_ref().and_then(|s| s.row_value(row_key));
        let held = match proof.leaf {
            Some((k, v)) if k == key => Some(v),
            _ => None,
        };
        Ok(RowProof {
            anchor: shared.map.anchor()?,
            current: held == value.as_deref().map(statemap::value_hash),
            proof,
            value,
        })
    }

    /// Anchors sealed and not yet folded into the state map: its root lags the applied
    /// state by that many anchors (0 with [`MapFold::Inline`] between applies).
    pub fn folds_pending(&self) -> usize {
        read(&self.shared).pending.len()
    }

    /// The size of the last anchor sealed and not yet folded, if any.
    pub fn last_sealed(&self) -> Option<u64> {
        read(&self.shared).pending.back().copied()
    }

    /// Whether every anchor sealed at or before ledger size `size` is folded.
    pub fn folded_through(&self, size: u64) -> bool {
        read(&self.shared)
            .pending
            .front()
            .is_none_or(|&first| first > size)
    }

    /// The anchors this replica remembers, oldest first.
    #[cfg(test)]
    fn anchors(&self) -> Vec<MapAnchor> {
        read(&self.shared).anchors.iter().copied().collect()
    }

    /// The state map's anchor at `size`, if this replica computed it and remembers it.
    pub fn map_anchor(&self, size: u64) -> Option<MapAnchor> {
        read(&self.shared)
            .anchors
            .iter()
            .rev()
            .find(|a| a.size == size)
            .copied()
    }

    /// The last applied command's boundary, if this replica remembers one.
    pub fn latest_boundary(&self) -> Option<Boundary> {
        read(&self.shared).recent.back().copied()
    }

    /// The boundary at ledger size `size`, if a command ended there and this replica still
    /// remembers it.
    pub fn boundary(&self, size: u64) -> Option<Boundary> {
        let shared = read(&self.shared);
        let at = shared.recent.binary_search_by_key(&size, |b| b.size).ok()?;
        shared.recent.get(at).copied()
    }

    /// The tree's root when the ledger had `size` entries (`size <= ledger_len`).
    pub fn tree_root_at(&self, size: u64) -> Result<Hash, TreeError> {
        self.with_tree(|tree| tree.root_at(size))
    }

    /// RFC 9162 inclusion proof of entry `index` in the tree of `size` entries
    /// (`index < size <= ledger_len`), leaf first; it verifies against
    /// [`Replica::tree_root_at`]`(size)` with the entry's hash
    /// ([`docket_core::merkle::verify_inclusion`]).
    pub fn inclusion_proof(&self, index: LedgerIndex, size: u64) -> Result<Vec<Hash>, TreeError> {
        self.with_tree(|tree| tree.inclusion_proof(index.0, size))
    }

    /// RFC 9162 consistency proof that the tree of `to` entries extends the tree of `from`
    /// (`0 < from < to <= ledger_len`; [`docket_core::merkle::verify_consistency`]).
    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, TreeError> {
        self.with_tree(|tree| tree.consistency_proof(from, to))
    }

    /// The Raft log id at `index` as this node holds it: the last applied one, or the one
    /// in its log, or its purge mark when that is exactly `index`. `None` when the entry
    /// was compacted away or never arrived.
    pub fn log_id_at(&self, index: u64) -> Result<Option<LogId>, StoreError> {
        if let Some(applied) = self.last_applied().filter(|id| id.index == index) {
            return Ok(Some(applied));
        }
        if let Some(id) = self.store.log_id_at(index)? {
            return Ok(Some(id));
        }
        Ok(self.store.last_purged()?.filter(|id| id.index == index))
    }

    /// The applied ledger entry at `index`, read from disk.
    pub fn ledger_entry(&self, index: LedgerIndex) -> Result<Option<LedgerEntry>, StoreError> {
        if index.0 >= self.ledger_len() {
            return Ok(None);
        }
        self.store.ledger_get(index.0)
    }

    /// This node's genesis entry hash, read from the ledger until there is one and then
    /// remembered (what the Raft network and the read-index path prove to peers).
    pub fn genesis_cell(&self) -> crate::network::GenesisCell {
        let replica = self.clone();
        crate::network::GenesisCell::new(move || {
            replica
                .ledger_entry(LedgerIndex(0))
                .ok()
                .flatten()
                .map(|entry| entry.hash)
        })
    }

    /// Up to `limit` applied ledger entries from `start`, read from disk.
    pub fn ledger_entries(
        &self,
        start: LedgerIndex,
        limit: u64,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let end = self.ledger_len().min(start.0.saturating_add(limit));
        let mut out = Vec::new();
        self.store.ledger_for_each(start.0, end, |index, bytes| {
            out.push(
                LedgerEntry::from_bytes(bytes)
                    .map_err(|e| StoreError::Corrupt(format!("ledger entry {index}: {e}")))?,
            );
            Ok(())
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use docket_core::constitution::DEFAULT_DOCUMENT;
    use docket_core::{dev, LedgerId, LedgerTime, SignedProposal, Value};
    use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
    use openraft::testing::log_id;
    use openraft::{Membership, RaftLogReader, RaftSnapshotBuilder};

    use super::*;
    use crate::command::{Command, Outcome};
    use crate::disk::TreeName;
    use crate::snapshot::SnapshotError;
    use crate::{NodeAddr, Vote};

    fn ledger() -> LedgerId {
        LedgerId::new("raft-unit").expect("valid id")
    }

    fn deposit(
        subject: &str,
        amount: i64,
        dependencies: Vec<docket_core::ProposalId>,
    ) -> SignedProposal {
        dev::proposal(
            &ledger(),
            "alice",
            "SETTLEMENT.DEPOSIT_CONFIRMED",
            subject,
            Value::map([("amount", Value::Int(amount)), ("currency", "EUR".into())]),
            dependencies,
            0,
        )
    }

    fn normal(index: u64, command: Command) -> Entry {
        Entry {
            log_id: log_id(1, 0, index),
            payload: EntryPayload::Normal(command),
        }
    }

    fn membership(index: u64) -> Entry {
        let nodes: BTreeMap<NodeId, NodeAddr> = [(
            1,
            NodeAddr {
                raft_addr: "127.0.0.1:7001".into(),
                api_addr: "127.0.0.1:8001".into(),
            },
        )]
        .into();
        Entry {
            log_id: log_id(1, 0, index),
            payload: EntryPayload::Membership(Membership::new(vec![BTreeSet::from([1])], nodes)),
        }
    }

    /// Raft entries 1..=7: membership, genesis, a deposit, a deferred proposal, its
    /// dependency (which releases it), a duplicate, and a tick.
    fn workload() -> Vec<Entry> {
        let base = deposit("base", 10, vec![]);
        let dependent = deposit("dependent", 20, vec![base.id()]);
        vec![
            membership(1),
            normal(
                2,
                Command::Genesis {
                    ledger_id: ledger(),
                    document: DEFAULT_DOCUMENT.to_owned(),
                    time: LedgerTime(1_000),
                },
            ),
            normal(
                3,
                Command::Submit {
                    proposals: vec![deposit("stl-1", 125_000, vec![])],
                    time: LedgerTime(2_000),
                },
            ),
            normal(
                4,
                Command::Submit {
                    proposals: vec![dependent],
                    time: LedgerTime(3_000),
                },
            ),
            normal(
                5,
                Command::Submit {
                    proposals: vec![base.clone(), base],
                    time: LedgerTime(4_000),
                },
            ),
            Entry {
                log_id: log_id(1, 0, 6),
                payload: EntryPayload::Blank,
            },
            normal(
                7,
                Command::Tick {
                    time: LedgerTime(5_000),
                },
            ),
        ]
    }

    /// Opens the store in `dir`, after sled lets go of a lock a dropped store held.
    fn open_sm(dir: &std::path::Path) -> (LogStore, StateMachine) {
        crate::disk::test_disk::open_after_sled_release(|| crate::open(dir))
            .unwrap_or_else(|e| panic!("open storage: {e:?}"))
    }

    use crate::LogStore;

    /// Ledger entries 0..len as stored.
    fn ledger_of(replica: &Replica) -> Vec<LedgerEntry> {
        replica
            .ledger_entries(LedgerIndex(0), u64::MAX)
            .expect("read ledger")
    }

    #[tokio::test]
    async fn apply_answers_every_entry_and_stores_the_ledger() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_log, mut sm) = open_sm(dir.path());
        let responses = sm.apply(workload()).await.expect("apply");
        assert_eq!(responses.len(), 7, "one response per Raft entry");
        assert_eq!(responses[0], CommandResponse::Internal);
        assert!(matches!(responses[1], CommandResponse::Genesis { .. }));
        let CommandResponse::Submitted { appended, outcomes } = &responses[4] else {
            panic!("expected Submitted, got {:?}", responses[4]);
        };
        assert_eq!(appended.len(), 2, "the dependency and the wave it released");
        assert!(matches!(outcomes[0].outcome, Outcome::Recorded { .. }));
        assert!(matches!(outcomes[1].outcome, Outcome::Duplicate { .. }));

        let replica = sm.replica();
        let entries = ledger_of(&replica);
        assert_eq!(entries.len() as u64, replica.ledger_len());
        assert_eq!(
            entries.len(),
            5,
            "genesis, deposit, deferral, dependency, release"
        );
        docket_core::verify_chain(&entries).expect("stored chain verifies");
        let replayed = docket_core::replay(&entries).expect("replays");
        assert_eq!(Some(replayed.hash()), replica.state_hash());

        // A second genesis is answered, not applied.
        let again = sm
            .apply([normal(
                8,
                Command::Genesis {
                    ledger_id: ledger(),
                    document: DEFAULT_DOCUMENT.to_owned(),
                    time: LedgerTime(9_000),
                },
            )])
            .await
            .expect("apply");
        assert!(matches!(
            again[0],
            CommandResponse::Refused(crate::CommandError::AlreadyInitialized { .. })
        ));
        assert_eq!(replica.ledger_len(), 5);
        assert_eq!(replica.last_applied(), Some(log_id(1, 0, 8)));
    }

    #[tokio::test]
    async fn restart_recovers_log_state_and_ledger() {
        let dir = tempfile::tempdir().expect("tempdir");
        let entries = workload();
        let (expected_hash, expected_ledger, expected_applied) = {
            let (mut log, mut sm) = open_sm(dir.path());
            log.save_vote(&Vote::new(1, 0)).await.expect("vote");
            log.blocking_append(entries.clone()).await.expect("append");
            // Apply the first half, snapshot (persists the core state), then the rest: the
            // restart must restore the snapshot and replay the entries after it.
            sm.apply(entries[..4].to_vec()).await.expect("apply");
            let mut builder = sm.get_snapshot_builder().await;
            builder.build_snapshot().await.expect("build");
            sm.apply(entries[4..].to_vec()).await.expect("apply");
            let replica = sm.replica();
            (
                replica.state_hash(),
                ledger_of(&replica),
                sm.applied_state().await.expect("applied"),
            )
        };

        let (mut log, mut sm) = open_sm(dir.path());
        let replica = sm.replica();
        assert_eq!(replica.state_hash(), expected_hash);
        assert_eq!(replica.ledger_len(), expected_ledger.len() as u64);
        assert_eq!(ledger_of(&replica), expected_ledger);
        assert_eq!(sm.applied_state().await.expect("applied"), expected_applied);
        assert_eq!(log.read_vote().await.expect("vote"), Some(Vote::new(1, 0)));
        let state = log.get_log_state().await.expect("log state");
        assert_eq!(state.last_log_id, Some(log_id(1, 0, 7)));
        assert_eq!(state.last_purged_log_id, None);
        let stored = log.try_get_log_entries(1..8).await.expect("entries");
        assert_eq!(stored.len(), 7);
        assert_eq!(stored[3].log_id, entries[3].log_id);

        // Applying after the restart continues the same ledger.
        let next = sm
            .apply([normal(
                8,
                Command::Submit {
                    proposals: vec![deposit("stl-2", 5, vec![])],
                    time: LedgerTime(6_000),
                },
            )])
            .await
            .expect("apply");
        assert!(
            matches!(&next[0], CommandResponse::Submitted { appended, .. } if appended.start.0 == 5)
        );
        docket_core::verify_chain(&ledger_of(&replica)).expect("chain still verifies");
    }

    #[tokio::test]
    async fn purge_survives_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (mut log, _sm) = open_sm(dir.path());
            log.blocking_append(workload()).await.expect("append");
            log.purge(log_id(1, 0, 4)).await.expect("purge");
        }
        let (mut log, _sm) = open_sm(dir.path());
        let state = log.get_log_state().await.expect("log state");
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 0, 4)));
        assert_eq!(state.last_log_id, Some(log_id(1, 0, 7)));
        let stored = log.try_get_log_entries(..).await.expect("entries");
        assert_eq!(stored.first().map(|e| e.log_id.index), Some(5));
    }

    /// The log a store holds when it reopens is counted (by an estimate from a few of its
    /// entries), so a node restarted before a budget's worth of new appends still purges
    /// down to its budget; without the count it would keep the old log for good.
    #[tokio::test]
    async fn the_log_held_at_reopen_counts_toward_the_budget() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (mut log, _sm) = open_sm(dir.path());
            log.blocking_append(longer_workload(40))
                .await
                .expect("append");
        }
        let (_log, sm) = open_sm(dir.path());
        let replica = sm.replica();
        assert_eq!(
            replica.log_keep_floor(1 << 30),
            None,
            "it fits a large budget"
        );
        let floor = replica
            .log_keep_floor(1)
            .expect("a one-byte budget purges what the node held at open");
        assert_eq!(floor, 47, "the last entry is the last sample");
        assert!(replica.log_bytes_after(0) > 0);
    }

    /// Builds a snapshot on a store with the whole workload applied.
    /// The anchor `sm`'s newest boundary stands on.
    fn latest_anchor(sm: &StateMachine) -> MapAnchor {
        sm.replica()
            .latest_boundary()
            .expect("boundary")
            .map
            .expect("map")
    }

    /// A snapshot of `sm` as it stands, built, then served as openraft serves it: the build
    /// records the header only, and `get_current_snapshot` writes the bytes a lagging node
    /// receives.
    async fn built_snapshot(sm: &mut StateMachine) -> openraft::Snapshot<TypeConfig> {
        let built = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("build");
        let served = sm
            .get_current_snapshot()
            .await
            .expect("serve")
            .expect("a snapshot was recorded");
        assert_eq!(served.meta, built.meta, "serves the snapshot it built");
        served
    }

    async fn leader_snapshot(
        dir: &std::path::Path,
    ) -> (StateMachine, openraft::Snapshot<TypeConfig>) {
        let (_log, mut sm) = open_sm(dir);
        sm.apply(workload()).await.expect("apply");
        let snapshot = built_snapshot(&mut sm).await;
        (sm, snapshot)
    }

    /// Building records the snapshot and writes none of its bytes (openraft 0.9 keeps only
    /// a built snapshot's meta); what is served later, after more entries were applied, is
    /// the snapshot recorded, and it installs to the state hash of that point.
    #[tokio::test]
    async fn building_a_snapshot_records_it_and_writes_its_bytes_only_when_served() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_log, mut sm) = open_sm(dir.path());
        let entries = longer_workload(6);
        sm.apply(entries[..9].to_vec()).await.expect("apply");
        let at_build = sm.replica().state_hash();
        let mut built = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("build");
        assert!(
            built.snapshot.to_bytes().expect("read").is_empty(),
            "a build writes no snapshot bytes"
        );
        let served_then = served_bytes(&mut sm, &built.meta).await;

        sm.apply(entries[9..].to_vec()).await.expect("apply");
        assert_ne!(sm.replica().state_hash(), at_build, "the state moved on");
        let served_now = served_bytes(&mut sm, &built.meta).await;
        assert_eq!(served_now, served_then, "serves the recorded snapshot");

        let (installed, fresh, _dir) = install_on_fresh(&built.meta, served_now).await;
        installed.expect("installs");
        assert_eq!(fresh.replica().state_hash(), at_build);
    }

    /// A build whose ledger does not end in the captured head is refused and records
    /// nothing: a torn ledger is noticed when the snapshot is built, not only when served.
    #[tokio::test]
    async fn a_build_over_a_ledger_without_the_captured_head_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_log, mut sm) = open_sm(dir.path());
        sm.apply(workload()).await.expect("apply");
        let replica = sm.replica();
        let ledger = ledger_of(&replica);
        let last = (ledger.len() - 1) as u64;
        let before_last = ledger[ledger.len() - 2].to_bytes();
        sm.store
            .write_raw(TreeName::Ledger, &last.to_be_bytes(), &before_last);
        let error = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect_err("a ledger without its head");
        assert!(error.to_string().contains("state head"), "{error}");
        assert!(
            sm.get_current_snapshot().await.expect("read").is_none(),
            "nothing recorded"
        );
    }

    /// A served snapshot is written as it is read: after a chunk's worth of reads it is
    /// not complete (a page of entries is written, not the ledger), and read to its end
    /// it is byte for byte the snapshot written in one go. The state machine worker that
    /// hands it over (`get_current_snapshot`) no longer writes the ledger first.
    #[tokio::test]
    async fn a_served_snapshot_is_written_as_it_is_read() {
        use tokio::io::AsyncReadExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let (_log, mut sm) = open_sm(dir.path());
        sm.apply(longer_workload(1_200)).await.expect("apply");
        let ledger_len = sm.replica().ledger_len();
        assert!(
            ledger_len > 2 * snapshot::BUILD_PAGE_ENTRIES,
            "{ledger_len}"
        );
        let mut served = built_snapshot(&mut sm).await;
        assert_eq!(served.snapshot.complete_len().expect("len"), None);
        let mut first = vec![0; 64 * 1024];
        served.snapshot.read_exact(&mut first).await.expect("read");
        assert_eq!(
            served.snapshot.complete_len().expect("len"),
            None,
            "one chunk read writes a page, not the ledger"
        );
        let mut rest = Vec::new();
        served.snapshot.read_to_end(&mut rest).await.expect("read");
        assert!(served.snapshot.complete_len().expect("len").is_some());
        let record = sm.store.read_snapshot().expect("read").expect("a record");
        let mut whole = Vec::new();
        snapshot::write(&sm.store, &Header::from_record(&record), &mut whole).expect("write");
        assert_eq!([first, rest].concat(), whole);
    }

    async fn served_bytes(sm: &mut StateMachine, meta: &SnapshotMeta) -> Vec<u8> {
        let mut served = sm
            .get_current_snapshot()
            .await
            .expect("serve")
            .expect("a snapshot was recorded");
        assert_eq!(&served.meta, meta);
        served.snapshot.to_bytes().expect("read")
    }

    #[tokio::test]
    async fn snapshot_installs_on_a_fresh_store_with_the_same_ledger_and_hash() {
        let leader_dir = tempfile::tempdir().expect("tempdir");
        let (mut leader, built) = leader_snapshot(leader_dir.path()).await;
        let current = leader
            .get_current_snapshot()
            .await
            .expect("read")
            .expect("a current snapshot");
        assert_eq!(current.meta, built.meta);
        let (mut current, mut built) = (current, built);
        assert_eq!(
            current.snapshot.to_bytes().expect("read"),
            built.snapshot.to_bytes().expect("read"),
            "served twice, the same bytes"
        );

        let follower_dir = tempfile::tempdir().expect("tempdir");
        {
            let (_log, mut follower) = open_sm(follower_dir.path());
            let mut receiving = follower.begin_receiving_snapshot().await.expect("begin");
            *receiving = *current.snapshot;
            follower
                .install_snapshot(&current.meta, receiving)
                .await
                .expect("install");
            let (leader_replica, follower_replica) = (leader.replica(), follower.replica());
            assert_eq!(follower_replica.state_hash(), leader_replica.state_hash());
            assert_eq!(ledger_of(&follower_replica), ledger_of(&leader_replica));
            assert_eq!(
                follower.applied_state().await.expect("applied"),
                leader.applied_state().await.expect("applied")
            );
            let installed = follower
                .get_current_snapshot()
                .await
                .expect("read")
                .expect("current");
            assert_eq!(installed.meta, current.meta);
        }
        // And it survives a restart of the follower.
        let (_log, mut follower) = open_sm(follower_dir.path());
        assert_eq!(
            follower.replica().state_hash(),
            leader.replica().state_hash()
        );
        assert_eq!(
            follower.replica().ledger_len(),
            leader.replica().ledger_len()
        );
        assert_eq!(
            follower.applied_state().await.expect("applied"),
            leader.applied_state().await.expect("applied")
        );
    }

    #[tokio::test]
    async fn snapshot_with_a_pending_deferral_verifies_and_installs() {
        // The deferred set has derived indexes (waiting, expiry) that restore rebuilds and
        // replay builds incrementally: the two must agree for an install to pass.
        let dir = tempfile::tempdir().expect("tempdir");
        let (_log, mut leader) = open_sm(dir.path());
        leader.apply(workload()[..4].to_vec()).await.expect("apply");
        assert_eq!(
            leader
                .replica()
                .with_state(|s| s.expect("state").deferred().len()),
            1
        );
        let mut built = built_snapshot(&mut leader).await;
        let (result, follower, _dir) =
            install_on_fresh(&built.meta, built.snapshot.to_bytes().expect("read")).await;
        result.expect("installs");
        assert_eq!(
            follower.replica().state_hash(),
            leader.replica().state_hash()
        );
    }

    fn read_u64_le(bytes: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
    }

    /// The decoded header of a snapshot and the offset where its ledger section starts.
    fn parse_header(bytes: &[u8]) -> (Header, usize) {
        let len = usize::try_from(read_u64_le(bytes, 8)).expect("length");
        let header = crate::codec::decode(&bytes[16..16 + len]).expect("header");
        (header, 16 + len)
    }

    /// Re-encodes a snapshot with `edit` applied to its header.
    fn edit_header(bytes: &[u8], edit: impl FnOnce(&mut Header)) -> Vec<u8> {
        let (mut header, rest) = parse_header(bytes);
        edit(&mut header);
        let encoded = crate::codec::encode(&header).expect("encode");
        let mut out = bytes[..8].to_vec();
        out.extend_from_slice(&(encoded.len() as u64).to_le_bytes());
        out.extend_from_slice(&encoded);
        out.extend_from_slice(&bytes[rest..]);
        out
    }

    /// Byte ranges of a snapshot's records, in stream order: the magic, the header (with
    /// its length), and each ledger entry (with its length).
    fn records(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
        let (header, mut at) = parse_header(bytes);
        let mut out = vec![0..8, 8..at];
        for _ in 0..header.ledger_len {
            let len = usize::try_from(read_u64_le(bytes, at)).expect("length");
            out.push(at..at + 8 + len);
            at += 8 + len;
        }
        assert_eq!(at, bytes.len(), "nothing after the ledger");
        out
    }

    async fn install_on_fresh(
        meta: &SnapshotMeta,
        bytes: Vec<u8>,
    ) -> (
        Result<(), StorageError<NodeId>>,
        StateMachine,
        tempfile::TempDir,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_log, mut sm) = open_sm(dir.path());
        let result = install_bytes(&mut sm, meta, &bytes).await;
        (result, sm, dir)
    }

    #[tokio::test]
    async fn corrupted_snapshots_are_refused_and_change_nothing() {
        let leader_dir = tempfile::tempdir().expect("tempdir");
        let (_leader, mut built) = leader_snapshot(leader_dir.path()).await;
        let meta = built.meta.clone();
        let good = built.snapshot.to_bytes().expect("read");

        // The snapshot is sound to begin with.
        assert!(snapshot::verify_bytes(&good, &meta).is_ok());

        // 1. One byte flipped inside a ledger entry: the subject "stl-1" of the deposit,
        //    whose first occurrence is in the ledger section.
        let needle = b"stl-1";
        let at = good
            .windows(needle.len())
            .position(|w| w == needle)
            .expect("subject in the ledger section")
            + needle.len()
            - 1;
        let mut flipped = good.clone();
        flipped[at] = b'9';
        assert!(matches!(
            snapshot::verify_bytes(&flipped, &meta),
            Err(SnapshotError::Chain(_))
        ));
        let (result, mut sm, _dir) = install_on_fresh(&meta, flipped).await;
        assert!(result.is_err(), "the flipped snapshot is refused");
        assert_eq!(sm.replica().ledger_len(), 0, "nothing was installed");
        assert_eq!(sm.replica().state_hash(), None);
        assert!(sm.get_current_snapshot().await.expect("read").is_none());

        // 2. A state hash that the ledger does not replay to.
        let wrong_hash = edit_header(&good, |h| {
            h.core.as_mut().expect("core").state_hash = StateHash([7; 32]);
        });
        assert!(matches!(
            snapshot::verify_bytes(&wrong_hash, &meta),
            Err(SnapshotError::StateHash { .. })
        ));

        // 3. A header announcing a state section (format dktsnap2 shipped one).
        let state_section = edit_header(&good, |h| {
            h.core.as_mut().expect("core").state_bytes = 1;
        });
        assert!(matches!(
            snapshot::verify_bytes(&state_section, &meta),
            Err(SnapshotError::StateSection(1))
        ));

        // 4. A snapshot whose contents disagree with the metadata it came with.
        let mut other_meta = meta.clone();
        other_meta.last_log_id = Some(log_id(1, 0, 99));
        assert!(matches!(
            snapshot::verify_bytes(&good, &other_meta),
            Err(SnapshotError::Meta { .. })
        ));

        // 5. A truncated snapshot, and one with bytes after the end.
        assert!(matches!(
            snapshot::verify_bytes(&good[..good.len() - 3], &meta),
            Err(SnapshotError::Truncated { .. })
        ));
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(matches!(
            snapshot::verify_bytes(&trailing, &meta),
            Err(SnapshotError::Trailing(1))
        ));
        assert!(matches!(
            snapshot::verify_bytes(b"garbage!", &meta),
            Err(SnapshotError::Magic)
        ));

        // The untouched snapshot still installs.
        let (result, sm, _dir) = install_on_fresh(&meta, good).await;
        result.expect("the sound snapshot installs");
        assert_eq!(sm.replica().ledger_len(), 5);
    }

    /// A receiver whose storage fails at one ledger entry.
    struct FailingAt {
        index: u64,
        taken: u64,
    }

    impl snapshot::Receiver for FailingAt {
        fn entry(&mut self, index: u64, _bytes: &[u8]) -> Result<usize, StoreError> {
            if index == self.index {
                return Err(StoreError::Corrupt(format!(
                    "the disk fails at entry {index}"
                )));
            }
            self.taken += 1;
            Ok(0)
        }

        fn rows(&mut self, _changes: docket_core::state::Changes) -> Result<(), StoreError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_replay_that_stops_midway_stops_the_snapshot_reader_and_reports_why() {
        let leader_dir = tempfile::tempdir().expect("tempdir");
        let (_log, mut leader) = open_sm(leader_dir.path());
        leader.apply(longer_workload(1_500)).await.expect("apply");
        let mut built = built_snapshot(&mut leader).await;
        let good = built.snapshot.to_bytes().expect("read");
        let entries = records(&good).len() as u64 - 3;
        let ledger_bytes = good.len();
        assert!(
            ledger_bytes > 8 * (snapshot::PIPELINE_BATCHES + 2) * snapshot::PIPELINE_BATCH_BYTES,
            "a ledger of {ledger_bytes} bytes does not fill the reader's batches"
        );
        let fail_at = entries / 2;
        // The reader runs ahead of the replay; once the replay stops, its next hand-over
        // fails and it ends, so `verify` returns (a reader left blocked would hang here).
        let (done, verified) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut receiver = FailingAt {
                index: fail_at,
                taken: 0,
            };
            let result = snapshot::verify(&good[..], &built.meta, &mut receiver, None);
            let _ = done.send((result.map(|_| ()), receiver.taken));
        });
        let (result, taken) = verified
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("verify returns once its replay stops");
        match result {
            Err(snapshot::VerifyError::Store(StoreError::Corrupt(message))) => {
                assert_eq!(message, format!("the disk fails at entry {fail_at}"));
            }
            other => panic!("expected the receiver's failure, got {other:?}"),
        }
        assert_eq!(taken, fail_at, "every entry before the failure, none after");
    }

    #[tokio::test]
    async fn leftovers_past_the_applied_ledger_are_unread_and_written_over() {
        // A crash after an apply or an install wrote ledger entries past the applied
        // length, before its commit point. Open leaves them (removing them would cost
        // O(what a crash left) before the node serves); nothing reads them, and the
        // applies that follow write over them.
        let dir = tempfile::tempdir().expect("tempdir");
        let stray = {
            let (_log, mut sm) = open_sm(dir.path());
            sm.apply(workload()[..3].to_vec()).await.expect("apply");
            let next = sm.replica().ledger_len();
            let stray = LedgerEntry::seal(
                LedgerIndex(next),
                LedgerTime(1),
                sm.replica()
                    .with_state(|s| s.expect("state").constitution_version()),
                docket_core::EntryHash::ZERO,
                docket_core::Record::Genesis {
                    ledger_id: ledger(),
                    document: String::new(),
                },
            );
            sm.store
                .write_raw(TreeName::Ledger, &next.to_be_bytes(), &stray.to_bytes());
            // And Merkle records past the applied length (of leaves `next` and 7).
            sm.store
                .write_raw(TreeName::Merkle, &(next + 1).to_be_bytes(), &[9; 96]);
            sm.store
                .write_raw(TreeName::Merkle, &8u64.to_be_bytes(), &[9; 128]);
            stray
        };
        let (_log, mut sm) = open_sm(dir.path());
        let next = stray.index.0;
        assert_eq!(
            sm.store.ledger_get(next).expect("read"),
            Some(stray),
            "open leaves the entry on disk"
        );
        assert_eq!(
            sm.replica().ledger_entry(LedgerIndex(next)).expect("read"),
            None,
            "and no read sees it"
        );
        sm.apply(workload()[3..].to_vec()).await.expect("apply");
        assert!(sm.replica().ledger_len() > next);

        let fresh_dir = tempfile::tempdir().expect("tempdir");
        let (_log, mut fresh) = open_sm(fresh_dir.path());
        fresh.apply(workload()).await.expect("apply");
        assert_eq!(holding(&mut sm).await, holding(&mut fresh).await);
    }

    /// [`workload`], then `extra` more submissions of one to three deposits each.
    fn longer_workload(extra: u64) -> Vec<Entry> {
        let mut entries = workload();
        for i in 0..extra {
            let proposals = (0..=i % 3)
                .map(|k| deposit(&format!("more-{i}-{k}"), 1 + k as i64, vec![]))
                .collect();
            entries.push(normal(
                8 + i,
                Command::Submit {
                    proposals,
                    time: LedgerTime(6_000 + i),
                },
            ));
        }
        entries
    }

    /// At every size of `ledger`, the replica's root is core's in-memory root, and every
    /// inclusion and consistency proof it serves verifies with core's verifiers.
    fn assert_proofs_verify(replica: &Replica, ledger: &[LedgerEntry]) {
        use docket_core::merkle::{verify_consistency, verify_inclusion, MemStore, MerkleTree};
        let n = ledger.len() as u64;
        let mut mem = MerkleTree::new(MemStore::default());
        for entry in ledger {
            mem.append(&entry.hash.0).expect("append");
        }
        let head = replica.tree_head().expect("head");
        assert_eq!(head.size, n);
        assert_eq!(head.root, mem.root().expect("root"));
        let roots: Vec<Hash> = (0..=n)
            .map(|m| replica.tree_root_at(m).expect("root"))
            .collect();
        for size in 1..=n {
            let root = roots[size as usize];
            assert_eq!(root, mem.root_at(size).expect("mem root"), "size {size}");
            for i in 0..size {
                let proof = replica
                    .inclusion_proof(LedgerIndex(i), size)
                    .expect("inclusion");
                verify_inclusion(&ledger[i as usize].hash.0, i, size, &proof, &root)
                    .expect("inclusion verifies");
            }
            for m in 1..size {
                let proof = replica.consistency_proof(m, size).expect("consistency");
                verify_consistency(m, size, &proof, &roots[m as usize], &root)
                    .expect("consistency verifies");
            }
        }
    }

    #[tokio::test]
    async fn the_replica_serves_tree_roots_and_proofs_that_verify() {
        use docket_core::merkle::{empty_root, MerkleError};
        let dir = tempfile::tempdir().expect("tempdir");
        let entries = longer_workload(12);
        let expected = {
            let (_log, mut sm) = open_sm(dir.path());
            let replica = sm.replica();
            assert_eq!(
                replica.tree_head().expect("head"),
                TreeHead {
                    size: 0,
                    root: empty_root()
                }
            );
            for chunk in entries.chunks(3) {
                sm.apply(chunk.to_vec()).await.expect("apply");
                assert_proofs_verify(&replica, &ledger_of(&replica));
            }
            let len = replica.ledger_len();
            assert!(len > 25, "{len} entries");

            // Out of range: refused, not a panic.
            let refused = |r: Result<Vec<Hash>, TreeError>| matches!(r, Err(TreeError::Refused(_)));
            assert!(matches!(
                replica.tree_root_at(len + 1),
                Err(TreeError::Refused(MerkleError::SizeBeyondTree { .. }))
            ));
            assert!(replica.tree_root_at(u64::MAX).is_err());
            assert!(refused(replica.inclusion_proof(LedgerIndex(len), len)));
            assert!(refused(replica.inclusion_proof(LedgerIndex(0), len + 1)));
            assert!(refused(replica.inclusion_proof(LedgerIndex(0), 0)));
            assert!(refused(replica.consistency_proof(0, len)));
            assert!(refused(replica.consistency_proof(len, len)));
            assert!(refused(replica.consistency_proof(len, len - 1)));
            assert!(refused(replica.consistency_proof(1, len + 1)));
            (replica.tree_head().expect("head"), ledger_of(&replica))
        };
        // A restart keeps the tree.
        let (_log, sm) = open_sm(dir.path());
        assert_eq!(sm.replica().tree_head().expect("head"), expected.0);
        assert_proofs_verify(&sm.replica(), &expected.1);
    }

    #[tokio::test]
    async fn after_a_snapshot_install_the_tree_matches_the_leaders_and_proofs_verify() {
        let entries = longer_workload(10);
        let leader_dir = tempfile::tempdir().expect("tempdir");
        let (_leader_log, mut leader) = open_sm(leader_dir.path());
        leader.apply(entries.clone()).await.expect("apply");
        let mut built = built_snapshot(&mut leader).await;
        let leader_ledger = ledger_of(&leader.replica());
        let leader_head = leader.replica().tree_head().expect("head");

        // Onto an empty store.
        let bytes = built.snapshot.to_bytes().expect("read");
        let (result, fresh, _fresh_dir) = install_on_fresh(&built.meta, bytes.clone()).await;
        result.expect("installs");
        assert_eq!(fresh.replica().tree_head().expect("head"), leader_head);
        assert_proofs_verify(&fresh.replica(), &leader_ledger);

        // Onto a store that has a prefix of the ledger.
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (_log, mut behind) = open_sm(dir.path());
            behind.apply(entries[..5].to_vec()).await.expect("apply");
            assert!(behind.replica().ledger_len() < leader_head.size);
            install_bytes(&mut behind, &built.meta, &bytes)
                .await
                .expect("installs");
            assert_eq!(behind.replica().tree_head().expect("head"), leader_head);
            assert_proofs_verify(&behind.replica(), &leader_ledger);
            // It goes on applying, and its tree with it.
            let more = normal(
                8 + 10,
                Command::Submit {
                    proposals: vec![deposit("after-install", 3, vec![])],
                    time: LedgerTime(90_000),
                },
            );
            behind.apply([more.clone()]).await.expect("apply");
            leader.apply([more]).await.expect("apply");
            assert_eq!(
                behind.replica().tree_head().expect("head"),
                leader.replica().tree_head().expect("head")
            );
        }
        // And a restart of it keeps the tree.
        let (_log, behind) = open_sm(dir.path());
        assert_eq!(
            behind.replica().tree_head().expect("head"),
            leader.replica().tree_head().expect("head")
        );
        assert_proofs_verify(&behind.replica(), &ledger_of(&leader.replica()));
    }

    // ---------------------------------------------------------------------------------
    // The state map

    /// The map root of every row the store holds now, computed afresh in memory: what the
    /// map kept up to date anchor by anchor must equal.
    fn fresh_map_root(sm: &StateMachine) -> docket_core::statemap::Digest {
        use docket_core::rows::{TABLE_DEFERRED, TABLE_OUTCOME, TABLE_PROPOSAL, TABLE_SUBJECT};
        let mut all = BTreeMap::new();
        for table in [TABLE_SUBJECT, TABLE_PROPOSAL, TABLE_DEFERRED, TABLE_OUTCOME] {
            sm.store
                .state_scan(sm.store.state_generation(), &[table], &mut |key, value| {
                    all.insert(statemap::key_hash(key), Some(statemap::value_hash(value)));
                })
                .expect("scan");
        }
        assert!(all.len() > 100, "{} rows", all.len());
        let map = statemap::MemMap::default();
        let mut writes = statemap::MapWrites::new();
        statemap::update(&map, &mut writes, statemap::Slot::Empty, &all)
            .expect("update")
            .hash()
    }

    fn anchor_command(index: u64, time: u64) -> Entry {
        normal(
            index,
            Command::Anchor {
                time: LedgerTime(time),
            },
        )
    }

    /// Rows proved against the replica's last anchor verify, present and absent.
    fn assert_rows_prove(replica: &Replica, anchor: MapAnchor) {
        for subject in ["stl-1", "base", "dependent", "more-3-0", "never-filed"] {
            let key = docket_core::rows::subject_key("settlement", subject);
            let proved = replica.prove_row(&key).expect("prove");
            assert_eq!(proved.anchor, Some(anchor));
            assert!(proved.current, "{subject} changed since the anchor");
            assert_eq!(
                proved
                    .proof
                    .verify(&anchor.root, &key, proved.value.as_deref()),
                Ok(()),
                "{subject}"
            );
            assert_eq!(proved.value.is_some(), subject != "never-filed");
        }
    }

    #[tokio::test]
    async fn the_state_map_anchors_every_1024_entries_and_on_command_and_proves_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut entries = longer_workload(1_400);
        let next = 8 + 1_400;
        {
            let (_log, mut sm) = open_sm(dir.path());
            // One apply across two anchors (the dirty keys of the first are in memory).
            sm.apply(entries.clone()).await.expect("apply");
            let len = sm.replica().ledger_len();
            assert!(len > 2 * statemap::ANCHOR_ENTRIES, "{len} entries");
            let boundary = sm.replica().latest_boundary().expect("boundary");
            let anchor = boundary.map.expect("an anchor was reached");
            assert_eq!(
                anchor.size / statemap::ANCHOR_ENTRIES,
                len / statemap::ANCHOR_ENTRIES
            );
            assert!(anchor.size < len, "rows changed after the last anchor");
            assert_eq!(sm.replica().map_anchor(anchor.size), Some(anchor));
            // Anchoring on command: the map now holds every row, as a fresh build does.
            let anchored = anchor_command(next, 900_000);
            entries.push(anchored.clone());
            let responses = sm.apply([anchored]).await.expect("apply");
            assert_eq!(responses, vec![CommandResponse::Anchored { size: len }]);
            let anchor = latest_anchor(&sm);
            assert_eq!(anchor.size, len);
            assert_eq!(anchor.root, fresh_map_root(&sm));
            assert_rows_prove(&sm.replica(), anchor);
            // Later applies, one command at a time, cross the next anchor from dirty keys
            // kept on disk; a restart in the middle keeps them.
            for i in 0..400u64 {
                let entry = normal(
                    next + 1 + i,
                    Command::Submit {
                        proposals: vec![
                            deposit(&format!("late-{i}"), 1, vec![]),
                            deposit("stl-1", 1, vec![]),
                        ],
                        time: LedgerTime(900_001 + i),
                    },
                );
                entries.push(entry.clone());
                sm.apply([entry]).await.expect("apply");
            }
        }
        let (_log, mut sm) = open_sm(dir.path());
        let before = sm.replica().latest_boundary().expect("boundary");
        assert!(before.map.is_some(), "the anchor survives a restart");
        let mut index = next + 401;
        for i in 0..1_100u64 {
            let entry = normal(
                index,
                Command::Submit {
                    proposals: vec![deposit(&format!("later-{i}"), 1, vec![])],
                    time: LedgerTime(901_000 + i),
                },
            );
            index += 1;
            entries.push(entry.clone());
            sm.apply([entry]).await.expect("apply");
        }
        let crossed = latest_anchor(&sm);
        assert!(crossed.size > before.map.expect("map").size, "a new anchor");
        let anchored = anchor_command(index, 999_000);
        entries.push(anchored.clone());
        sm.apply([anchored]).await.expect("apply");
        let anchor = latest_anchor(&sm);
        assert_eq!(anchor.root, fresh_map_root(&sm));
        assert_rows_prove(&sm.replica(), anchor);

        // A replica that installs a snapshot rebuilds the map, vouches for no anchor until
        // its next one, and then has the same root as the leader.
        let mut built = built_snapshot(&mut sm).await;
        let bytes = built.snapshot.to_bytes().expect("read");
        let (result, mut fresh, _fresh_dir) = install_on_fresh(&built.meta, bytes).await;
        result.expect("installs");
        assert_eq!(
            fresh.replica().latest_boundary().expect("boundary").map,
            None
        );
        assert_eq!(
            fresh.replica().prove_row(b"sstl-1").expect("prove").anchor,
            None
        );
        let anchored = anchor_command(index + 1, 999_500);
        sm.apply([anchored.clone()]).await.expect("apply");
        fresh.apply([anchored]).await.expect("apply");
        assert_eq!(
            fresh.replica().latest_boundary().expect("boundary").map,
            sm.replica().latest_boundary().expect("boundary").map
        );
        assert_rows_prove(&fresh.replica(), latest_anchor(&fresh));
    }

    fn open_sm_folding(dir: &std::path::Path, fold: MapFold) -> StateMachine {
        let options = crate::StoreOptions {
            map_fold: fold,
            ..crate::StoreOptions::default()
        };
        crate::open_with(dir, &options).expect("open storage").1
    }

    /// Waits until `sm` has folded every anchor it sealed.
    fn folded(sm: &StateMachine) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while sm.replica().folds_pending() > 0 {
            assert!(std::time::Instant::now() < deadline, "the folder is stuck");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Folding off the apply path, or at open after a crash between seal and fold, gives
    /// the anchors (sizes and roots) folding in the apply gives: what replicas cosign does
    /// not depend on where or when they fold.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn anchors_folded_in_the_background_or_after_a_crash_are_the_inline_ones() {
        let entries = longer_workload(3_000);
        let apply_all = |fold: MapFold, dir: &std::path::Path| {
            let entries = entries.clone();
            let dir = dir.to_owned();
            async move {
                let mut sm = open_sm_folding(&dir, fold);
                for chunk in entries.chunks(40) {
                    sm.apply(chunk.to_vec()).await.expect("apply");
                }
                sm
            }
        };
        let inline_dir = tempfile::tempdir().expect("tempdir");
        let inline = apply_all(MapFold::Inline, inline_dir.path()).await;
        assert_eq!(inline.replica().folds_pending(), 0);
        let reference = inline.replica().anchors();
        assert!(reference.len() >= 4, "{} anchors", reference.len());

        let background_dir = tempfile::tempdir().expect("tempdir");
        let background = apply_all(MapFold::Background, background_dir.path()).await;
        folded(&background);
        assert_eq!(background.replica().anchors(), reference);
        let last = *reference.last().expect("an anchor");
        assert_eq!(
            background
                .replica()
                .latest_boundary()
                .expect("boundary")
                .map,
            Some(last)
        );
        assert_eq!(
            background.replica().state_hash(),
            inline.replica().state_hash()
        );

        // Sealed, never folded, then stopped: open folds them, in order.
        let crashed_dir = tempfile::tempdir().expect("tempdir");
        let crashed = apply_all(MapFold::Never, crashed_dir.path()).await;
        let sealed = crashed.replica().folds_pending();
        assert!(sealed >= 4, "{sealed} anchors sealed and not folded");
        assert!(crashed.replica().map_anchor(last.size).is_none());
        // Two anchors on demand at one size, in one apply: both stay sealed, apart.
        let mut crashed = crashed;
        let next = entries.last().expect("entries").log_id.index + 1;
        crashed
            .apply([
                anchor_command(next, 990_000),
                anchor_command(next + 1, 990_001),
            ])
            .await
            .expect("apply");
        assert_eq!(crashed.replica().folds_pending(), sealed + 2);
        drop(crashed);
        let reopened = open_sm_folding(crashed_dir.path(), MapFold::Inline);
        assert_eq!(reopened.replica().folds_pending(), 0);
        let recovered = reopened.replica().anchors();
        let (natural, on_demand) = recovered.split_at(recovered.len() - 2);
        assert_eq!(
            natural[natural.len() - sealed..],
            reference[reference.len() - sealed..]
        );
        assert_eq!(on_demand[0], on_demand[1]);
        assert_eq!(on_demand[0].root, fresh_map_root(&reopened));
        // And the map keeps up with the rows after it, folded in the background.
        drop(reopened);
        let mut reopened = open_sm_folding(crashed_dir.path(), MapFold::Background);
        let late = normal(
            next + 2,
            Command::Submit {
                proposals: vec![deposit("after-the-crash", 1, vec![])],
                time: LedgerTime(990_002),
            },
        );
        reopened
            .apply([late, anchor_command(next + 3, 990_003)])
            .await
            .expect("apply");
        folded(&reopened);
        let anchor = latest_anchor(&reopened);
        assert_eq!(anchor.root, fresh_map_root(&reopened));
        assert_rows_prove(&reopened.replica(), anchor);
    }

    /// A replica that has folded anchors of its own and then installs a snapshot folds its
    /// next anchor from the map rebuilt from the installed rows: the leader's root.
    #[tokio::test]
    async fn after_a_snapshot_install_a_replica_folds_the_leaders_anchor() {
        let entries = longer_workload(1_400);
        let (prefix, _) = entries.split_at(entries.len() / 2);
        let leader_dir = tempfile::tempdir().expect("tempdir");
        let mut leader = open_sm_folding(leader_dir.path(), MapFold::Inline);
        leader.apply(entries.clone()).await.expect("apply");
        let mut built = built_snapshot(&mut leader).await;
        let follower_dir = tempfile::tempdir().expect("tempdir");
        let mut follower = open_sm_folding(follower_dir.path(), MapFold::Inline);
        follower.apply(prefix.to_vec()).await.expect("apply");
        assert!(
            !follower.replica().anchors().is_empty(),
            "the follower folded an anchor before the install"
        );
        let bytes = built.snapshot.to_bytes().expect("read");
        install_bytes(&mut follower, &built.meta, &bytes)
            .await
            .expect("installs");
        let next = entries.last().expect("entries").log_id.index + 1;
        for sm in [&mut leader, &mut follower] {
            let late = (0..64)
                .map(|i| deposit(&format!("after-install-{i}"), 1, vec![]))
                .collect();
            sm.apply([
                normal(
                    next,
                    Command::Submit {
                        proposals: late,
                        time: LedgerTime(994_000),
                    },
                ),
                anchor_command(next + 1, 995_000),
            ])
            .await
            .expect("apply");
        }
        let anchor = |sm: &StateMachine| sm.replica().latest_boundary().and_then(|b| b.map);
        assert_eq!(
            anchor(&follower).map(|a| a.root),
            Some(fresh_map_root(&follower))
        );
        assert_eq!(anchor(&follower), anchor(&leader));
    }

    // ---------------------------------------------------------------------------------
    // Streaming snapshots: refusal, interruption, memory

    /// What a node has, for "an install changed nothing" checks.
    #[derive(Debug, PartialEq)]
    struct Holding {
        ledger: Vec<LedgerEntry>,
        state_hash: Option<StateHash>,
        applied: (Option<LogId>, StoredMembership),
        tree: TreeHead,
        current: Option<SnapshotMeta>,
        staged: usize,
        /// Ledger entries on disk past the applied ledger (an install writes there before
        /// its switch point; a refused one must leave none).
        past_ledger: usize,
        /// State row keys on disk per generation, in generation order (a refused install
        /// must leave none of the generation it built; an install leaves one generation),
        /// then the number of head records (one per generation).
        rows: Vec<usize>,
    }

    impl Holding {
        /// What the node reads: without what an interrupted install left unread (the
        /// stage, entries past the ledger, rows of another generation).
        fn read(&self) -> Holding {
            Holding {
                ledger: self.ledger.clone(),
                state_hash: self.state_hash,
                applied: self.applied.clone(),
                tree: self.tree,
                current: self.current.clone(),
                staged: 0,
                past_ledger: 0,
                rows: Vec::new(),
            }
        }
    }

    async fn holding(sm: &mut StateMachine) -> Holding {
        let replica = sm.replica();
        let mut staged = 0;
        sm.store
            .disk()
            .for_each(TreeName::Stage, &[], None, &mut |_, _| {
                staged += 1;
                Ok(())
            })
            .expect("scan the stage");
        let mut past_ledger = 0;
        sm.store
            .disk()
            .for_each(
                TreeName::Ledger,
                &replica.ledger_len().to_be_bytes(),
                None,
                &mut |_, _| {
                    past_ledger += 1;
                    Ok(())
                },
            )
            .expect("scan past the ledger");
        let mut rows = std::collections::BTreeMap::new();
        sm.store
            .disk()
            .for_each(TreeName::Sm, &[0], Some(&[1]), &mut |key, _| {
                let generation = u64::from_be_bytes(key[1..9].try_into().expect("generation"));
                *rows.entry(generation).or_insert(0) += 1;
                Ok(())
            })
            .expect("scan the rows");
        let mut rows: Vec<usize> = rows.into_values().collect();
        let mut metas = 0;
        sm.store
            .disk()
            .for_each(
                TreeName::Sm,
                b"state_meta",
                Some(b"state_metb"),
                &mut |_, _| {
                    metas += 1;
                    Ok(())
                },
            )
            .expect("scan the head records");
        rows.push(metas);
        Holding {
            ledger: ledger_of(&replica),
            state_hash: replica.state_hash(),
            applied: sm.applied_state().await.expect("applied"),
            tree: replica.tree_head().expect("tree head"),
            current: sm
                .get_current_snapshot()
                .await
                .expect("current")
                .map(|s| s.meta),
            staged,
            past_ledger,
            rows,
        }
    }

    async fn install_bytes(
        sm: &mut StateMachine,
        meta: &SnapshotMeta,
        bytes: &[u8],
    ) -> Result<(), StorageError<NodeId>> {
        let file = SnapshotFile::from_bytes(bytes).expect("spill");
        sm.install_snapshot(meta, Box::new(file)).await
    }

    /// The install reads its rows through a filter of the keys it wrote; the state it
    /// leaves must not: rows written by the applies that follow are read back like any
    /// other. A subject first written after the install and deposited to again must add
    /// up on the installed replica exactly as on the leader.
    #[tokio::test]
    async fn after_an_install_rows_written_by_later_applies_are_read_back() {
        let leader_dir = tempfile::tempdir().expect("tempdir");
        let (mut leader, meta, bytes) = long_leader(leader_dir.path(), 40).await;
        let follower_dir = tempfile::tempdir().expect("tempdir");
        let (_log, mut follower) = open_sm(follower_dir.path());
        install_bytes(&mut follower, &meta, &bytes)
            .await
            .expect("installs");
        let next = meta.last_log_id.expect("a snapshot of entries").index + 1;
        let later: Vec<Entry> = (0..3)
            .map(|i| {
                normal(
                    next + i,
                    Command::Submit {
                        // A subject of its own, written by the first and read by the others.
                        proposals: vec![dev::proposal(
                            &ledger(),
                            "alice",
                            "SETTLEMENT.DEPOSIT_CONFIRMED",
                            "after-the-install",
                            Value::map([("amount", Value::Int(5)), ("currency", "EUR".into())]),
                            vec![],
                            i,
                        )],
                        time: LedgerTime(90_000 + i),
                    },
                )
            })
            .collect();
        leader.apply(later.clone()).await.expect("leader applies");
        follower.apply(later).await.expect("follower applies");
        let subject = |sm: &StateMachine| {
            sm.replica().with_state(|s| {
                s.expect("state")
                    .subject("settlement", "after-the-install")
                    .expect("the subject")
            })
        };
        assert_eq!(subject(&follower), subject(&leader));
        assert_eq!(
            follower.replica().state_hash(),
            leader.replica().state_hash()
        );
    }

    /// A leader with `longer_workload(extra)` applied, and the bytes of its snapshot.
    async fn long_leader(
        dir: &std::path::Path,
        extra: u64,
    ) -> (StateMachine, SnapshotMeta, Vec<u8>) {
        let (_log, mut leader) = open_sm(dir);
        leader.apply(longer_workload(extra)).await.expect("apply");
        let mut built = built_snapshot(&mut leader).await;
        let bytes = built.snapshot.to_bytes().expect("read");
        (leader, built.meta, bytes)
    }

    /// A follower that has a prefix of the leader's ledger and a snapshot of its own, so
    /// that "changed nothing" has something to keep.
    async fn behind_follower(dir: &std::path::Path) -> StateMachine {
        let (_log, mut sm) = open_sm(dir);
        sm.apply(longer_workload(3)[..9].to_vec())
            .await
            .expect("apply");
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("build");
        sm
    }

    /// An install refused at its last entry has written the entries before it past the
    /// follower's ledger (in batches, as they came); the refusal removes them.
    #[tokio::test]
    async fn a_long_install_refused_at_its_last_entry_leaves_nothing_past_the_ledger() {
        let leader_dir = tempfile::tempdir().expect("tempdir");
        let (_leader, meta, good) = long_leader(leader_dir.path(), 1_500).await;
        let recs = records(&good);
        let last = &recs[recs.len() - 2];
        assert!(
            last.start > 4 * crate::store::STAGE_BATCH_BYTES,
            "entries before the last fill several batches"
        );
        let follower_dir = tempfile::tempdir().expect("tempdir");
        let mut follower = behind_follower(follower_dir.path()).await;
        let before = holding(&mut follower).await;
        let mut flipped = good.clone();
        flipped[last.end - 1] ^= 0x01;
        assert!(install_bytes(&mut follower, &meta, &flipped).await.is_err());
        let after = holding(&mut follower).await;
        assert_eq!(after.past_ledger, 0, "entries left past the ledger");
        assert!(after == before, "the refused install changed the node");
        install_bytes(&mut follower, &meta, &good)
            .await
            .expect("the sound snapshot installs");
        assert_eq!(holding(&mut follower).await.past_ledger, 0);
    }

    #[tokio::test]
    async fn a_flipped_byte_in_any_record_is_refused_and_changes_nothing() {
        let leader_dir = tempfile::tempdir().expect("tempdir");
        let (mut leader, meta, good) = long_leader(leader_dir.path(), 12).await;
        let recs = records(&good);
        assert!(recs.len() > 20, "magic, header, entries, state");

        // Through the streaming verifier alone: every byte of every record up to 512
        // bytes (the magic, the header, the length prefixes and the entries), and of
        // longer ones (the genesis entry and the state section, which both carry the
        // constitution document) the first and last 64 bytes and every 29th between.
        // Each verify replays the whole ledger, which is what a check of every byte of
        // those would multiply.
        let positions: Vec<usize> = recs
            .iter()
            .flat_map(|r| {
                let (start, end) = (r.start, r.end);
                r.clone().filter(move |&at| {
                    end - start <= 512 || at < start + 64 || at >= end - 64 || at % 29 == 0
                })
            })
            .collect();
        eprintln!(
            "flipping {} of {} bytes ({} records)",
            positions.len(),
            good.len(),
            recs.len()
        );
        for at in positions {
            let mut flipped = good.clone();
            flipped[at] ^= 0x01;
            assert!(
                snapshot::verify_bytes(&flipped, &meta).is_err(),
                "a flipped bit at byte {at} of {} went unnoticed",
                good.len()
            );
        }

        // Through a node: the first, middle and last byte of the magic, the header, the
        // first, a middle and the last entry, and the state section.
        let follower_dir = tempfile::tempdir().expect("tempdir");
        let mut follower = behind_follower(follower_dir.path()).await;
        let before = holding(&mut follower).await;
        assert!(!before.ledger.is_empty() && before.current.is_some());
        let entries = &recs[2..recs.len() - 1];
        let picked = [
            &recs[0],
            &recs[1],
            &entries[0],
            &entries[entries.len() / 2],
            &entries[entries.len() - 1],
            &recs[recs.len() - 1],
        ];
        for record in picked {
            for at in [
                record.start,
                record.start + record.len() / 2,
                record.end - 1,
            ] {
                let mut flipped = good.clone();
                flipped[at] ^= 0x01;
                let result = install_bytes(&mut follower, &meta, &flipped).await;
                assert!(
                    result.is_err(),
                    "byte {at} ({record:?}) flipped was installed"
                );
                assert_eq!(
                    holding(&mut follower).await,
                    before,
                    "a refused install (byte {at} flipped) changed the node"
                );
            }
        }

        // The sound stream still installs, and the follower then holds the leader's.
        install_bytes(&mut follower, &meta, &good)
            .await
            .expect("the sound snapshot installs");
        let after = holding(&mut follower).await;
        assert_eq!(after, holding(&mut leader).await);
    }

    /// Rows on disk are the state: after an apply nothing is pending in memory, the rows
    /// hash to the state's commitment, and a reopened node has the same state without
    /// replaying the ledger.
    #[tokio::test]
    async fn applied_state_lives_in_rows_and_reopens_as_it_was() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_log, mut sm) = open_sm(dir.path());
        sm.apply(longer_workload(40)).await.expect("apply");
        let replica = sm.replica();
        let counts = replica.with_state(|s| {
            let s = s.expect("state");
            assert_eq!(s.pending_rows(), 0, "the apply wrote every changed row");
            s.check_rows()
                .expect("the rows on disk hash to the commitment");
            s.row_counts()
        });
        assert!(counts.subjects > 0 && counts.proposals > 40, "{counts:?}");
        let boundary = replica
            .latest_boundary()
            .expect("the last command's boundary");
        assert_eq!(boundary.size, replica.ledger_len());
        assert_eq!(Some(boundary.state), replica.state_hash());
        let before = holding(&mut sm).await;
        let rows = counts.subjects + counts.proposals + counts.deferred;
        assert_eq!(
            before.rows,
            vec![usize::try_from(rows).expect("rows") + 1, 1],
            "one generation: every row and the constitution record"
        );
        drop((sm, replica, _log));
        let (_log, mut sm) = open_sm(dir.path());
        assert_eq!(holding(&mut sm).await, before);
        sm.replica()
            .with_state(|s| s.expect("state").check_rows())
            .expect("the reopened rows hash to the commitment");
        // A reopened replica vouches for where it stands before it applies anything new.
        assert_eq!(sm.replica().latest_boundary(), Some(boundary));
    }

    /// A store format 1 wrote (state in snapshot chunks, no rows) is migrated on open: its
    /// ledger replayed into rows, its snapshot record given the format-2 state hash at its
    /// index (a follower receiving that snapshot checks it), the chunks removed.
    #[tokio::test]
    async fn a_format_1_store_migrates_into_rows_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_log, mut sm) = open_sm(dir.path());
        sm.apply(longer_workload(30)[..20].to_vec())
            .await
            .expect("apply");
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("build");
        sm.apply(longer_workload(30)[20..].to_vec())
            .await
            .expect("apply");
        let want = holding(&mut sm).await;
        sm.store.make_format1();
        drop((sm, _log));

        let (_log, mut sm) = open_sm(dir.path());
        assert_eq!(sm.store.state_generation(), 1);
        assert_eq!(holding(&mut sm).await, want);
        sm.replica()
            .with_state(|s| s.expect("state").check_rows())
            .expect("the migrated rows hash to the commitment");
        let mut chunks = 0;
        sm.store
            .disk()
            .for_each(TreeName::SmState, &[], None, &mut |_, _| {
                chunks += 1;
                Ok(())
            })
            .expect("scan");
        assert_eq!(chunks, 0, "format-1 chunks are removed");
        let mut current = sm
            .get_current_snapshot()
            .await
            .expect("read")
            .expect("a snapshot");
        let bytes = current.snapshot.to_bytes().expect("bytes");
        snapshot::verify_bytes(&bytes, &current.meta)
            .expect("the migrated snapshot record carries the state hash its ledger replays to");

        // A second open does not migrate again.
        drop((sm, _log));
        let (_log, mut sm) = open_sm(dir.path());
        assert_eq!(holding(&mut sm).await, want);
    }

    #[tokio::test]
    async fn an_install_cut_at_any_record_boundary_changes_nothing_then_the_whole_installs() {
        let leader_dir = tempfile::tempdir().expect("tempdir");
        let (mut leader, meta, good) = long_leader(leader_dir.path(), 8).await;
        let follower_dir = tempfile::tempdir().expect("tempdir");
        let mut follower = behind_follower(follower_dir.path()).await;
        let before = holding(&mut follower).await;

        // Every record boundary, and every 1 KiB (a transfer cut inside a record).
        let mut cuts: Vec<usize> = records(&good).iter().map(|r| r.start).collect();
        cuts.extend((0..good.len()).step_by(1024));
        cuts.sort_unstable();
        cuts.dedup();
        for cut in cuts {
            let result = install_bytes(&mut follower, &meta, &good[..cut]).await;
            assert!(result.is_err(), "a stream cut at byte {cut} was installed");
            assert_eq!(
                holding(&mut follower).await,
                before,
                "a stream cut at byte {cut} changed the node"
            );
        }
        // Reopening after the refusals finds the node as it was.
        drop(follower);
        let (_log, mut follower) = open_sm(follower_dir.path());
        assert_eq!(holding(&mut follower).await, before);
        install_bytes(&mut follower, &meta, &good)
            .await
            .expect("the whole snapshot installs");
        assert_eq!(holding(&mut follower).await, holding(&mut leader).await);
    }

    fn open_on_test_disk(disk: &crate::disk::test_disk::SimDisk) -> StateMachine {
        let store = Store::open_on(disk.handle()).expect("open the test disk");
        StateMachine::open(Arc::new(store)).expect("open the state machine")
    }

    #[tokio::test]
    async fn an_install_crashed_after_any_write_reopens_and_then_installs() {
        use crate::disk::test_disk::SimDisk;

        let leader_dir = tempfile::tempdir().expect("tempdir");
        let (mut leader, meta, good) = long_leader(leader_dir.path(), 120).await;
        let want = holding(&mut leader).await;

        // A follower on a disk that can crash, holding a prefix of the ledger (durable),
        // then the install with every flush lying, so all of its writes are pending.
        let prepare = || async {
            let disk = SimDisk::new("install-crash");
            let mut sm = open_on_test_disk(&disk);
            sm.apply(longer_workload(3)[..9].to_vec())
                .await
                .expect("apply");
            sm.get_snapshot_builder()
                .await
                .build_snapshot()
                .await
                .expect("build");
            sm.store.durable_flush().expect("flush");
            let before = holding(&mut sm).await;
            disk.set_flushes_lie(true);
            install_bytes(&mut sm, &meta, &good)
                .await
                .expect("installs");
            drop(sm);
            (disk, before)
        };
        let (disk, _) = prepare().await;
        let writes = disk.pending_batches();
        assert!(
            writes > 4,
            "stage, state chunks, switch, copy, commit: {writes}"
        );

        let (mut kept_old, mut kept_new) = (0, 0);
        for keep in 0..=writes {
            let (disk, before) = prepare().await;
            disk.crash_keeping(keep);
            disk.set_flushes_lie(false);
            let mut sm = open_on_test_disk(&disk);
            // What the node reads; what a crash left unread stays until the next install.
            let now = holding(&mut sm).await.read();
            if now == before.read() {
                kept_old += 1;
            } else {
                assert_eq!(
                    now,
                    want.read(),
                    "after a crash keeping {keep} of {writes} writes the node holds neither \
                     what it had nor the snapshot"
                );
                kept_new += 1;
            }
            install_bytes(&mut sm, &meta, &good)
                .await
                .unwrap_or_else(|e| panic!("install after a crash at {keep}: {e}"));
            assert_eq!(holding(&mut sm).await, want, "crash at {keep}");
            drop(sm);
            let mut sm = open_on_test_disk(&disk);
            assert_eq!(holding(&mut sm).await, want, "reopened, crash at {keep}");
        }
        eprintln!("{writes} writes: {kept_old} crashes kept the old node, {kept_new} the snapshot");
        assert!(
            kept_old > 0 && kept_new > 0,
            "{kept_old} old, {kept_new} new"
        );
    }

    #[tokio::test]
    async fn a_node_killed_deep_in_an_install_opens_at_once_and_its_retry_keeps_what_it_wrote() {
        use crate::disk::test_disk::SimDisk;

        let leader_dir = tempfile::tempdir().expect("tempdir");
        let (mut leader, meta, good) = long_leader(leader_dir.path(), 600).await;
        let want = holding(&mut leader).await;

        // A fresh follower whose install's writes are all pending (flushes lie).
        let prepare = || async {
            let disk = SimDisk::new("install-killed");
            let mut sm = open_on_test_disk(&disk);
            let before = holding(&mut sm).await;
            disk.set_flushes_lie(true);
            install_bytes(&mut sm, &meta, &good)
                .await
                .expect("installs");
            drop(sm);
            (disk, before)
        };
        let (disk, _) = prepare().await;
        let install_writes = disk.pending_batches();

        // The latest crash point before the switch: the node holds what it had, and
        // every entry the install received is on disk past its ledger. Open's own writes
        // are left pending, to be counted.
        let mut keep = install_writes;
        let (disk, before, left, opened) = loop {
            keep -= 1;
            let (disk, before) = prepare().await;
            disk.crash_keeping(keep);
            disk.set_flushes_lie(true);
            let mut sm = open_on_test_disk(&disk);
            let opened = disk.pending_batches();
            let now = holding(&mut sm).await;
            if now.read() == before.read() {
                break (disk, before, now, opened);
            }
        };
        assert!(
            left.past_ledger + 1 >= want.ledger.len(),
            "the install had written its ledger: {} of {}",
            left.past_ledger,
            want.ledger.len()
        );
        assert!(
            left.rows.len() > before.rows.len(),
            "and rows of its generation"
        );
        // Open wrote a constant number of batches, whatever the install left: it removed
        // none of it.
        assert!(
            opened <= 2,
            "open wrote {opened} batches over {} entries left past the ledger",
            left.past_ledger
        );

        // The retry installs, writing none of the entries it finds already written.
        disk.set_flushes_lie(false);
        let mut sm = open_on_test_disk(&disk);
        let inserts = disk.ledger_inserts();
        install_bytes(&mut sm, &meta, &good)
            .await
            .expect("the retry installs");
        assert_eq!(
            disk.ledger_inserts() - inserts,
            0,
            "the retry wrote ledger entries it found written"
        );
        assert_eq!(holding(&mut sm).await, want, "and left nothing behind");
        drop(sm);
        disk.set_flushes_lie(false);
        let mut sm = open_on_test_disk(&disk);
        assert_eq!(holding(&mut sm).await, want);
    }

    #[tokio::test]
    async fn building_and_installing_a_long_ledger_holds_a_page_not_the_ledger() {
        use crate::snapshot::{meter, IO_BUFFER_BYTES, PIPELINE_BATCHES, PIPELINE_BATCH_BYTES};
        use crate::store::STAGE_BATCH_BYTES;

        let leader_dir = tempfile::tempdir().expect("tempdir");
        let (_log, mut leader) = open_sm(leader_dir.path());
        leader.apply(longer_workload(1_500)).await.expect("apply");

        meter::reset();
        let mut built = built_snapshot(&mut leader).await;
        let built_high = meter::high_water_bytes();
        let good = built.snapshot.to_bytes().expect("read");
        let recs = records(&good);
        let entries = &recs[2..recs.len() - 1];
        let ledger_bytes: usize = entries.iter().map(|r| r.len()).sum();
        let entry_max = entries.iter().map(|r| r.len()).max().expect("entries");
        eprintln!(
            "ledger: {} entries, {ledger_bytes} bytes (largest {entry_max}); build held at most {built_high} bytes",
            entries.len()
        );
        assert!(
            built_high <= IO_BUFFER_BYTES + entry_max,
            "the builder held {built_high} bytes"
        );

        meter::reset();
        let follower_dir = tempfile::tempdir().expect("tempdir");
        let (_log, mut follower) = open_sm(follower_dir.path());
        install_bytes(&mut follower, &built.meta, &good)
            .await
            .expect("installs");
        let installed_high = meter::high_water_bytes();
        eprintln!("install held at most {installed_high} bytes");
        assert!(
            installed_high
                <= IO_BUFFER_BYTES
                    + STAGE_BATCH_BYTES
                    + 3 * entry_max
                    + (PIPELINE_BATCHES + 2) * (PIPELINE_BATCH_BYTES + entry_max),
            "the install held {installed_high} bytes"
        );
        assert_eq!(
            follower.replica().state_hash(),
            leader.replica().state_hash()
        );

        // The bounds are far below the ledger: neither side could have held it whole.
        assert!(
            ledger_bytes > 8 * installed_high.max(built_high),
            "ledger of {ledger_bytes} bytes is too short to tell"
        );
    }
}
