//! Seeding the store of a new one-voter cluster from a ledger: what `docket restore` (from a
//! backup file) and `docket recover` (from a survivor's own store) write before the node
//! first starts.
//!
//! The seam is the snapshot install. A seed is a `dktsnap3` snapshot (see
//! [`crate::snapshot`]) whose header names this node as the only voter, at log id
//! `(term 0, this node, index 0)` — where openraft's own `initialize` puts the first
//! membership — and which holds the ledger to restore. [`install`] hands it to
//! [`StateMachine::install_snapshot`](openraft::storage::RaftStateMachine::install_snapshot)
//! on an empty store, offline, so the seed is checked exactly as a snapshot from a
//! stranger is (chain, ids, canonical bytes, replay to the header's state hash and head)
//! and written through the same staged, switch-at-the-end path. The Raft log stays empty:
//! on first start openraft finds the applied log id past the (empty) log and purges up to
//! it (`StorageHelper::get_initial_state`), so the log starts after the seed; the node,
//! alone in its membership, elects itself and serves.
//!
//! **Architecture invariant:** a seed is installed only into a store that has nothing: no
//! applied record, no log, no vote. Seeding never rewrites a node's history.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::Path;
use std::sync::Arc;

use docket_core::{EntryHash, LedgerEntry, StateHash};
use openraft::storage::RaftStateMachine as _;
use openraft::{CommittedLeaderId, Membership};

use crate::disk::{detect_engine, StorageEngine};
use crate::snapshot::{self, Header, IO_BUFFER_BYTES};
use crate::snapshot_file::SnapshotFile;
use crate::state_machine::StateMachine;
use crate::store::{CoreRecord, Store, StoreError, StoreOptions};
use crate::{LogId, NodeAddr, NodeId, SnapshotMeta, StoredMembership};

/// What a seed restores: the ledger's length, and where its replay must arrive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seed {
    /// The node the seeded store belongs to: the cluster's only voter.
    pub node_id: NodeId,
    /// Its addresses, as the membership records them (peers reach it there).
    pub addr: NodeAddr,
    /// Ledger entries in the seed (`[0, ledger_len)`); at least 1 (the genesis entry).
    pub ledger_len: u64,
    /// The state hash the replay of those entries must reach.
    pub state_hash: StateHash,
    /// The hash of the last entry.
    pub head_hash: EntryHash,
}

/// Why a seed was not installed.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("the store in {0} is not empty (it has an applied position, a log or a vote): a seed is installed only into a new store")]
    NotEmpty(String),
    #[error("a seed holds at least the genesis entry")]
    Empty,
    #[error("the seed has {written} entries; its header announced {announced}")]
    Count { written: u64, announced: u64 },
    #[error("the seed was refused: {0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The Raft position and membership a seed installs: node `node_id` alone, as a voter, at
/// log id `(0, node_id, 0)`.
pub fn seed_meta(node_id: NodeId, addr: NodeAddr) -> SnapshotMeta {
    let log_id = LogId::new(CommittedLeaderId::new(0, node_id), 0);
    let membership = Membership::new(
        vec![BTreeSet::from([node_id])],
        BTreeMap::from([(node_id, addr)]),
    );
    SnapshotMeta {
        last_log_id: Some(log_id),
        last_membership: StoredMembership::new(Some(log_id), membership),
        snapshot_id: snapshot::snapshot_id(Some(&log_id)),
    }
}

fn header(seed: &Seed) -> Header {
    let meta = seed_meta(seed.node_id, seed.addr.clone());
    Header {
        last_applied: meta.last_log_id,
        last_membership: meta.last_membership,
        ledger_len: seed.ledger_len,
        core: Some(CoreRecord {
            state_hash: seed.state_hash,
            head_hash: seed.head_hash,
            state_bytes: 0,
        }),
    }
}

/// Writes a seed snapshot entry by entry into an unnamed file in `spill_dir` (memory: one
/// entry and a [`IO_BUFFER_BYTES`] buffer). Nothing is checked here: [`install`] checks
/// everything as it reads the file back.
#[derive(Debug)]
pub struct SeedWriter {
    out: BufWriter<File>,
    seed: Seed,
    written: u64,
}

impl SeedWriter {
    pub fn create(spill_dir: &Path, seed: Seed) -> Result<SeedWriter, SeedError> {
        if seed.ledger_len == 0 {
            return Err(SeedError::Empty);
        }
        let file = tempfile::tempfile_in(spill_dir).map_err(snapshot::write_error)?;
        let mut out = BufWriter::with_capacity(IO_BUFFER_BYTES, file);
        let encoded =
            crate::codec::encode(&header(&seed)).map_err(|source| StoreError::Encode {
                what: "seed header",
                source,
            })?;
        out.write_all(snapshot::MAGIC)
            .and_then(|()| out.write_all(&(encoded.len() as u64).to_le_bytes()))
            .and_then(|()| out.write_all(&encoded))
            .map_err(snapshot::write_error)?;
        Ok(SeedWriter {
            out,
            seed,
            written: 0,
        })
    }

    /// Appends the next ledger entry (its canonical bytes).
    pub fn entry(&mut self, entry: &LedgerEntry) -> Result<(), SeedError> {
        let bytes = entry.to_bytes();
        self.out
            .write_all(&(bytes.len() as u64).to_le_bytes())
            .and_then(|()| self.out.write_all(&bytes))
            .map_err(snapshot::write_error)?;
        self.written += 1;
        Ok(())
    }

    /// The finished seed: the meta to install it under and the file, at its start.
    pub fn finish(self) -> Result<(SnapshotMeta, SnapshotFile), SeedError> {
        if self.written != self.seed.ledger_len {
            return Err(SeedError::Count {
                written: self.written,
                announced: self.seed.ledger_len,
            });
        }
        let mut file = self
            .out
            .into_inner()
            .map_err(|e| snapshot::write_error(e.into_error()))?;
        std::io::Seek::rewind(&mut file).map_err(snapshot::write_error)?;
        Ok((
            seed_meta(self.seed.node_id, self.seed.addr),
            SnapshotFile::from_file(file),
        ))
    }
}

/// Where a seeded store stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seeded {
    pub ledger_len: u64,
    pub state_hash: Option<StateHash>,
}

/// The options a seed is installed with: this node's, on `engine`, and no background flush
/// thread (the install ends with a durable flush of its own).
fn options(engine: StorageEngine, node_id: NodeId) -> StoreOptions {
    StoreOptions {
        engine,
        flush_every_ms: None,
        node_id: Some(node_id),
        ..StoreOptions::default()
    }
}

/// Installs a seed into the new store in `dir` (created if missing), offline, through the
/// snapshot install: verified as it is read, switched over only once everything checked
/// out, then durably flushed. Refuses a store that holds anything.
pub async fn install(
    dir: &Path,
    engine: StorageEngine,
    node_id: NodeId,
    meta: &SnapshotMeta,
    file: SnapshotFile,
) -> Result<Seeded, SeedError> {
    install_then(dir, engine, node_id, meta, file, |_| ())
        .await
        .map(|(seeded, ())| seeded)
}

/// [`install`], then `then` on the installed replica (to judge a request against the
/// seeded state) before the store is closed: the store cannot be opened again by this
/// process until sled has let go of it.
pub async fn install_then<T>(
    dir: &Path,
    engine: StorageEngine,
    node_id: NodeId,
    meta: &SnapshotMeta,
    file: SnapshotFile,
    then: impl FnOnce(&crate::Replica) -> T,
) -> Result<(Seeded, T), SeedError> {
    let store = Arc::new(Store::open(dir, &options(engine, node_id))?);
    let used = store
        .read_applied()?
        .is_some_and(|a| a.last_applied.is_some() || a.ledger_len > 0)
        || store.log_last_id()?.is_some()
        || store.last_purged()?.is_some()
        || store.read_vote()?.is_some();
    if used {
        return Err(SeedError::NotEmpty(dir.display().to_string()));
    }
    let mut state_machine = StateMachine::open(store.clone())?;
    state_machine
        .install_snapshot(meta, Box::new(file))
        .await
        .map_err(|e| SeedError::Refused(e.to_string()))?;
    store.durable_flush()?;
    let replica = state_machine.replica();
    let seeded = Seeded {
        ledger_len: replica.ledger_len(),
        state_hash: replica.state_hash(),
    };
    Ok((seeded, then(&replica)))
}

/// What [`seed_from_store`] kept of a survivor's store, and what it left behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Survivor {
    pub seed: Seed,
    /// The engine the survivor's store is on (its `ENGINE` marker or its files).
    pub engine: StorageEngine,
    /// The last Raft log id the survivor knew committed (its committed id, or its applied
    /// one if later); every command up to it is in the seed.
    pub committed: Option<LogId>,
    /// The last Raft log id in the survivor's log. Entries after `committed` were never
    /// known committed here and are dropped.
    pub log_last: Option<LogId>,
    /// How many Raft log entries were dropped (`log_last.index - committed.index`).
    pub log_entries_dropped: u64,
}

/// Log entries re-applied per batch while a survivor's store catches up to its committed
/// id (as openraft's own start-up does, in chunks of 64).
const REAPPLY_BATCH_ENTRIES: u64 = 64;

/// A seed of the ledger a survivor's store holds as committed, for `docket recover`: its
/// state machine is brought up to the committed id it recorded (re-applying committed log
/// entries, as openraft does on start), then its ledger `[0, ledger_len)` is read back in
/// pages and chain-checked into a seed with node `node_id` as the only voter. Raft log
/// entries past the committed id are not in it: with a majority gone nobody can say whether
/// they were committed. Writes to `dir` only what opening and applying committed entries
/// writes (what `docket serve` would write on start).
pub async fn seed_from_store(
    dir: &Path,
    spill_dir: &Path,
    node_id: NodeId,
    addr: NodeAddr,
) -> Result<(Survivor, SnapshotMeta, SnapshotFile), SeedError> {
    let engine = detect_engine(dir)?
        .ok_or_else(|| StoreError::Corrupt(format!("{} holds no node store", dir.display())))?;
    let store = Arc::new(Store::open(dir, &options(engine, node_id))?);
    let mut state_machine = StateMachine::open(store.clone())?;
    let replica = state_machine.replica();
    let committed = store.read_committed()?.max(replica.last_applied());
    let log_last = store.log_last_id()?;
    let mut next = replica.last_applied().map_or(0, |id| id.index + 1);
    let end = committed.map_or(0, |id| id.index + 1);
    while next < end {
        let hi = end.min(next + REAPPLY_BATCH_ENTRIES);
        let entries = store.log_entries(
            std::ops::Bound::Included(next),
            std::ops::Bound::Excluded(hi),
        )?;
        if entries.first().map(|e| e.log_id.index) != Some(next) {
            return Err(StoreError::Corrupt(format!(
                "committed log entry {next} is missing from the survivor's log"
            ))
            .into());
        }
        state_machine
            .apply(entries)
            .await
            .map_err(|e| SeedError::Refused(e.to_string()))?;
        next = replica.last_applied().map_or(0, |id| id.index + 1);
    }
    store.durable_flush()?;
    let ledger_len = replica.ledger_len();
    let Some(state_hash) = replica.state_hash() else {
        return Err(SeedError::Empty);
    };
    let head = store.ledger_get(ledger_len - 1)?.ok_or_else(|| {
        StoreError::Corrupt(format!("ledger entry {} is missing", ledger_len - 1))
    })?;
    let seed = Seed {
        node_id,
        addr,
        ledger_len,
        state_hash,
        head_hash: head.hash,
    };
    let header = header(&seed);
    let mut file = tempfile::tempfile_in(spill_dir).map_err(snapshot::write_error)?;
    snapshot::write(&store, &header, &mut file)?;
    std::io::Seek::rewind(&mut file).map_err(snapshot::write_error)?;
    let log_entries_dropped = match (log_last, committed) {
        (Some(last), Some(committed)) => last.index.saturating_sub(committed.index),
        (Some(last), None) => last.index + 1,
        (None, _) => 0,
    };
    Ok((
        Survivor {
            seed,
            engine,
            committed,
            log_last,
            log_entries_dropped,
        },
        header.meta(),
        SnapshotFile::from_file(file),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::test_disk::open_after_sled_release;
    use docket_core::{dev, LedgerId, LedgerTime, State, Value};

    /// A ledger of genesis and `deposits` deposits, and its final state hash.
    fn ledger(deposits: i64) -> (Vec<LedgerEntry>, StateHash) {
        let id = LedgerId::new("seed").expect("valid");
        let (mut state, genesis) = State::genesis(
            id.clone(),
            docket_core::constitution::DEFAULT_DOCUMENT,
            LedgerTime(1_000),
        )
        .expect("genesis");
        let mut entries = vec![genesis];
        for n in 0..deposits {
            let proposal = dev::proposal(
                &id,
                "alice",
                "SETTLEMENT.DEPOSIT_CONFIRMED",
                &format!("s{n}"),
                Value::map([("amount", Value::Int(1 + n)), ("currency", "EUR".into())]),
                vec![],
                n as u64,
            );
            let submission = state.submit(proposal, LedgerTime(2_000 + n as u64));
            entries.extend(submission.entries().iter().cloned());
        }
        (entries, state.hash())
    }

    fn addr() -> NodeAddr {
        NodeAddr {
            raft_addr: "127.0.0.1:7001".to_owned(),
            api_addr: "127.0.0.1:8001".to_owned(),
        }
    }

    fn seed_file(dir: &Path, entries: &[LedgerEntry], state_hash: StateHash) -> SnapshotFile {
        let seed = Seed {
            node_id: 1,
            addr: addr(),
            ledger_len: entries.len() as u64,
            state_hash,
            head_hash: entries.last().expect("entries").hash,
        };
        let mut writer = SeedWriter::create(dir, seed).expect("writer");
        for entry in entries {
            writer.entry(entry).expect("entry");
        }
        writer.finish().expect("finish").1
    }

    #[tokio::test]
    async fn a_seed_installs_as_a_one_voter_store_and_only_into_an_empty_one() {
        let (entries, state_hash) = ledger(5);
        let dir = tempfile::tempdir().expect("tempdir");
        let store_dir = dir.path().join("store");
        let meta = seed_meta(1, addr());
        let file = seed_file(dir.path(), &entries, state_hash);
        let seeded = install(&store_dir, StorageEngine::Sled, 1, &meta, file)
            .await
            .expect("installs");
        assert_eq!(seeded.ledger_len, 6);
        assert_eq!(seeded.state_hash, Some(state_hash));

        // The install dropped its sled store just now: sled lets go of its lock a moment later.
        let store = Arc::new(
            open_after_sled_release(|| Store::open(&store_dir, &options(StorageEngine::Sled, 1)))
                .expect("reopen"),
        );
        let applied = store
            .read_applied()
            .expect("read")
            .expect("an applied record");
        assert_eq!(applied.last_applied, meta.last_log_id);
        let voters: Vec<u64> = applied.last_membership.membership().voter_ids().collect();
        assert_eq!(voters, vec![1], "the node is the only voter");
        assert!(
            store.log_last_id().expect("log").is_none(),
            "the log is empty"
        );
        drop(store);

        let again = seed_file(dir.path(), &entries, state_hash);
        let refused = install(&store_dir, StorageEngine::Sled, 1, &meta, again).await;
        assert!(
            matches!(refused, Err(SeedError::NotEmpty(_))),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn a_seed_that_does_not_replay_to_its_state_hash_leaves_the_store_empty() {
        let (entries, _) = ledger(3);
        let (_, other_hash) = ledger(2);
        let dir = tempfile::tempdir().expect("tempdir");
        let store_dir = dir.path().join("store");
        let meta = seed_meta(1, addr());
        let file = seed_file(dir.path(), &entries, other_hash);
        let refused = install(&store_dir, StorageEngine::Sled, 1, &meta, file).await;
        assert!(matches!(refused, Err(SeedError::Refused(_))), "{refused:?}");
        let store =
            open_after_sled_release(|| Store::open(&store_dir, &options(StorageEngine::Sled, 1)))
                .expect("reopen");
        assert!(
            store
                .read_applied()
                .expect("read")
                .is_none_or(|a| a.ledger_len == 0 && a.last_applied.is_none()),
            "a refused seed wrote an applied position"
        );
    }
}
