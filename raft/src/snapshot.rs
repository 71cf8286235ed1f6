//! Snapshots: what a new or lagging node needs to end with the identical ledger and state
//! hash, and the checks a node makes before it accepts one.
//!
//! ## Format
//!
//! ```text
//! magic     8 bytes  "dktsnap1"
//! header    bincode  Header { last_applied, last_membership, ledger_len,
//!                             core: Option<{ state_hash, head_hash, state bytes }> }
//! ledger    ledger_len times: u64 little-endian length, then LedgerEntry::to_bytes()
//! ```
//!
//! The core state bytes are `State::to_snapshot()`; the ledger is the whole ledger, from
//! genesis, so the receiver ends with the same ledger as the sender, not only the same
//! state. Nothing follows the last entry.
//!
//! ## Trust
//!
//! A received snapshot is checked as if it came from a stranger before anything is
//! written: the chain is verified from genesis (indexes, links, entry hashes, proposal ids),
//! the entries are replayed (trusted replay, `State::apply`) and the replayed state must
//! have the shipped state hash; the shipped state bytes must restore (`State::restore`,
//! which checks the hash) to a state equal to the replay. Only then are the ledger tree and
//! the state replaced. A snapshot that fails any check is refused with a `StorageError`.
//!
//! A snapshot this node builds or serves is read back from its own ledger tree, and its
//! chain (without the costly id recomputation) is checked against the captured head on the
//! way out, so a torn local ledger is noticed by the sender, not only by the receiver.
//!
//! ## Limits
//!
//! `SnapshotData` is openraft's default `Cursor<Vec<u8>>`, so a snapshot is held in memory
//! while it is built, sent or installed: size O(ledger). Streaming it from a file is the
//! next step once ledgers outgrow memory (FIXME: see the crate docs).

use std::io::Cursor;
use std::sync::Arc;

use docket_core::ledger::ChainVerifier;
use docket_core::state::{ApplyError, RestoreError};
use docket_core::{ChainError, EntryHash, LedgerEntry, State, StateHash};
use openraft::{AnyError, RaftSnapshotBuilder, StorageError, StorageIOError};
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::store::{CoreRecord, SnapshotRecord, Store, StoreError};
use crate::{LogId, NodeId, SnapshotMeta, StoredMembership, TypeConfig};

const MAGIC: &[u8; 8] = b"dktsnap1";

/// Everything in a snapshot but the ledger entries.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub(crate) struct Header {
    pub last_applied: Option<LogId>,
    pub last_membership: StoredMembership,
    pub ledger_len: u64,
    /// `None` exactly when `ledger_len == 0` (no genesis yet).
    pub core: Option<CoreSection>,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub(crate) struct CoreSection {
    pub state_hash: StateHash,
    /// Hash of the last ledger entry; the state's head.
    pub head_hash: EntryHash,
    /// `State::to_snapshot()`.
    pub state: Vec<u8>,
}

impl Header {
    pub fn meta(&self) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.last_membership.clone(),
            snapshot_id: snapshot_id(self.last_applied.as_ref()),
        }
    }

    pub fn record(&self) -> SnapshotRecord {
        SnapshotRecord {
            meta: self.meta(),
            ledger_len: self.ledger_len,
            core: self.core.as_ref().map(|c| CoreRecord {
                state_hash: c.state_hash,
                head_hash: c.head_hash,
                state_bytes: c.state.len() as u64,
            }),
            generation: 0,
        }
    }

    pub fn from_record(record: &SnapshotRecord, state: Vec<u8>) -> Header {
        Header {
            last_applied: record.meta.last_log_id,
            last_membership: record.meta.last_membership.clone(),
            ledger_len: record.ledger_len,
            core: record.core.as_ref().map(|c| CoreSection {
                state_hash: c.state_hash,
                head_hash: c.head_hash,
                state,
            }),
        }
    }
}

/// A snapshot's id is its last log id: the log prefix determines the ledger, the state and
/// the membership, so two snapshots with the same last log id have the same contents on any
/// node. That makes ids deterministic (the simulator can replay them).
pub fn snapshot_id(last_log_id: Option<&LogId>) -> String {
    match last_log_id {
        Some(id) => id.to_string(),
        None => "empty".to_owned(),
    }
}

/// Why a received snapshot is refused.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("not a docket snapshot (bad magic)")]
    Magic,
    #[error("header does not decode: {0}")]
    Header(codec::Error),
    #[error("truncated at ledger entry {index}")]
    Truncated { index: u64 },
    #[error("{0} unexpected bytes after the last ledger entry")]
    Trailing(usize),
    #[error("snapshot contents disagree with its metadata ({what})")]
    Meta { what: &'static str },
    #[error("a snapshot with {ledger_len} ledger entries must {what}")]
    Shape { ledger_len: u64, what: &'static str },
    #[error("ledger entry {index} does not decode: {message}")]
    Entry { index: u64, message: String },
    #[error("ledger entry {index} is not in canonical encoding")]
    NotCanonical { index: u64 },
    #[error("hash chain: {0}")]
    Chain(#[from] ChainError),
    #[error("replaying ledger entry {index}: {error}")]
    Replay { index: u64, error: ApplyError },
    #[error("head hash {found:?} differs from the shipped {expected:?}")]
    Head {
        expected: EntryHash,
        found: EntryHash,
    },
    #[error("replaying the ledger gives state {found}, the snapshot says {expected}")]
    StateHash {
        expected: StateHash,
        found: StateHash,
    },
    #[error("shipped state bytes: {0}")]
    Restore(RestoreError),
    #[error("shipped state restores to a state different from the replayed ledger")]
    RestoreDiffers,
}

/// Encodes a snapshot from a header and this node's own ledger `[0, header.ledger_len)`.
pub(crate) fn encode(store: &Store, header: &Header) -> Result<Vec<u8>, StoreError> {
    let mut out = MAGIC.to_vec();
    codec::encode_into(&mut out, header).map_err(|source| StoreError::Encode {
        what: "snapshot header",
        source,
    })?;
    let mut verifier = ChainVerifier::from_genesis();
    let mut head = None;
    store.ledger_for_each(0, header.ledger_len, |index, bytes| {
        let entry = LedgerEntry::from_bytes(bytes)
            .map_err(|e| StoreError::Corrupt(format!("ledger entry {index}: {e}")))?;
        verifier
            .push(&entry, false)
            .map_err(|e| StoreError::Corrupt(format!("local ledger: {e}")))?;
        head = Some(entry.hash);
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(bytes);
        Ok(())
    })?;
    if head != header.core.as_ref().map(|c| c.head_hash) {
        return Err(StoreError::Corrupt(format!(
            "local ledger head {head:?} differs from the snapshot's state head"
        )));
    }
    Ok(out)
}

/// A snapshot that passed every check, ready to install.
#[derive(Debug)]
pub(crate) struct Verified {
    pub header: Header,
    /// Canonical bytes of entries `0..ledger.len()`.
    pub ledger: Vec<Vec<u8>>,
    /// The state, `None` before genesis.
    pub state: Option<State>,
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if input.len() < n {
        return None;
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Some(head)
}

/// Decodes and checks a received snapshot against the metadata it came with.
pub(crate) fn verify(bytes: &[u8], meta: &SnapshotMeta) -> Result<Verified, SnapshotError> {
    let mut input = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or(SnapshotError::Magic)?;
    let header: Header = codec::decode_prefix(&mut input).map_err(SnapshotError::Header)?;
    if header.last_applied != meta.last_log_id {
        return Err(SnapshotError::Meta {
            what: "last log id",
        });
    }
    if header.last_membership != meta.last_membership {
        return Err(SnapshotError::Meta { what: "membership" });
    }
    let ledger_len = header.ledger_len;
    match (&header.core, ledger_len) {
        (None, 0) | (Some(_), 1..) => {}
        (Some(_), 0) => {
            return Err(SnapshotError::Shape {
                ledger_len,
                what: "carry no state",
            })
        }
        (None, _) => {
            return Err(SnapshotError::Shape {
                ledger_len,
                what: "carry the state",
            })
        }
    }

    // Every entry is at least its 8-byte length prefix: bounds the allocation below by the
    // input, whatever `ledger_len` claims.
    let capacity = usize::try_from(ledger_len)
        .unwrap_or(usize::MAX)
        .min(input.len() / 8);
    let mut ledger = Vec::with_capacity(capacity);
    let mut verifier = ChainVerifier::from_genesis();
    let mut state: Option<State> = None;
    let mut head = None;
    for index in 0..ledger_len {
        let len = take(&mut input, 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
            .ok_or(SnapshotError::Truncated { index })?;
        let len = usize::try_from(len).map_err(|_| SnapshotError::Truncated { index })?;
        let raw = take(&mut input, len).ok_or(SnapshotError::Truncated { index })?;
        let entry = LedgerEntry::from_bytes(raw).map_err(|e| SnapshotError::Entry {
            index,
            message: e.to_string(),
        })?;
        verifier.push(&entry, true)?;
        let canonical = entry.to_bytes();
        if canonical != raw {
            return Err(SnapshotError::NotCanonical { index });
        }
        match &mut state {
            None => {
                state = Some(
                    State::from_genesis_entry(&entry)
                        .map_err(|error| SnapshotError::Replay { index, error })?,
                )
            }
            Some(state) => state
                .apply(&entry)
                .map_err(|error| SnapshotError::Replay { index, error })?,
        }
        head = Some(entry.hash);
        ledger.push(canonical);
    }
    if !input.is_empty() {
        return Err(SnapshotError::Trailing(input.len()));
    }

    if let (Some(core), Some(replayed), Some(head)) = (&header.core, &state, head) {
        if head != core.head_hash {
            return Err(SnapshotError::Head {
                expected: core.head_hash,
                found: head,
            });
        }
        let found = replayed.hash();
        if found != core.state_hash {
            return Err(SnapshotError::StateHash {
                expected: core.state_hash,
                found,
            });
        }
        let restored =
            State::restore(&core.state, core.state_hash).map_err(SnapshotError::Restore)?;
        if &restored != replayed {
            return Err(SnapshotError::RestoreDiffers);
        }
    }
    Ok(Verified {
        header,
        ledger,
        state,
    })
}

/// Builds a snapshot from a view captured while applies were paused (see
/// `StateMachine::get_snapshot_builder`), then persists it as the current snapshot.
#[derive(Debug)]
pub struct SnapshotBuilder {
    pub(crate) store: Arc<Store>,
    pub(crate) header: Header,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(
        &mut self,
    ) -> Result<openraft::Snapshot<TypeConfig>, StorageError<NodeId>> {
        let meta = self.header.meta();
        let write_error = |e: StoreError| -> StorageError<NodeId> {
            StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(&e)).into()
        };
        let data = encode(&self.store, &self.header).map_err(write_error)?;
        let state = self.header.core.as_ref().map_or(&[][..], |c| &c.state[..]);
        let current = self
            .store
            .save_snapshot(self.header.record(), state)
            .map_err(write_error)?;
        tracing::info!(
            snapshot_id = %meta.snapshot_id,
            ledger_len = self.header.ledger_len,
            bytes = data.len(),
            current,
            "built snapshot"
        );
        Ok(openraft::Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}
