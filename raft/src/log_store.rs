//! The Raft log and vote: openraft's `RaftLogStorage` over [`Store`].
//!
//! Appends, votes, truncations and purges are acknowledged only after
//! [`Store::durable_flush`]: Raft's safety assumes a node never forgets a vote it cast or an
//! entry it acknowledged. They run through [`Store::blocking_io`], so on sled the wait for
//! `fsync` happens on tokio's blocking pool, not on a worker thread.

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, ErrorSubject, ErrorVerb, RaftLogReader, StorageError, StorageIOError};

use crate::store::{Store, StoreError};
use crate::{Entry, LogId, NodeId, TypeConfig, Vote};

/// The log store handed to `openraft::Raft::new`; also its own log reader (cloning is cheap).
#[derive(Clone, Debug)]
pub struct LogStore {
    store: Arc<Store>,
}

fn storage_error(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
) -> impl FnOnce(StoreError) -> StorageError<NodeId> {
    move |e| StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

impl LogStore {
    pub fn new(store: Arc<Store>) -> LogStore {
        LogStore { store }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + openraft::OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        self.store
            .log_entries(range.start_bound().cloned(), range.end_bound().cloned())
            .map_err(storage_error(ErrorSubject::Logs, ErrorVerb::Read))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let read_error = || storage_error(ErrorSubject::Logs, ErrorVerb::Read);
        let last_purged_log_id = self.store.last_purged().map_err(read_error())?;
        let last_present = self.store.log_last_id().map_err(read_error())?;
        // After a purge past the last entry (or an interrupted purge) the purged id is the
        // newest the log knows of.
        let last_log_id = last_present.max(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError<NodeId>> {
        let vote = *vote;
        self.store
            .blocking_io(move |store| store.save_vote(&vote))
            .await
            .map_err(storage_error(ErrorSubject::Vote, ErrorVerb::Write))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError<NodeId>> {
        self.store
            .read_vote()
            .map_err(storage_error(ErrorSubject::Vote, ErrorVerb::Read))
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId>,
    ) -> Result<(), StorageError<NodeId>> {
        self.store
            .save_committed(committed)
            .map_err(storage_error(ErrorSubject::Store, ErrorVerb::Write))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError<NodeId>> {
        self.store
            .read_committed()
            .map_err(storage_error(ErrorSubject::Store, ErrorVerb::Read))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        // Written and durably flushed before the callback: never acknowledge an entry that
        // a power loss could take back.
        let entries: Vec<Entry> = entries.into_iter().collect();
        match self
            .store
            .blocking_io(move |store| store.log_append(entries))
            .await
        {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(storage_error(ErrorSubject::Logs, ErrorVerb::Write)(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        self.store
            .blocking_io(move |store| store.log_truncate(log_id.index))
            .await
            .map_err(storage_error(ErrorSubject::Logs, ErrorVerb::Delete))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        self.store
            .blocking_io(move |store| store.log_purge(log_id))
            .await
            .map_err(storage_error(ErrorSubject::Logs, ErrorVerb::Delete))?;
        self.store
            .reclaim_log_below(log_id.index.saturating_add(1))
            .map_err(storage_error(ErrorSubject::Logs, ErrorVerb::Delete))
    }
}
