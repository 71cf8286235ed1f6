//! The simulator's execution journal storage: what survives a crash is exactly what was
//! flushed.
//!
//! The production journal is sled (`docket_execution::SledStorage`), which runs background
//! threads and does real I/O: in a deterministic simulation that breaks replay, and a
//! simulated crash cannot take back writes sled already made. [`SimJournal`] is the
//! journal's other storage ([`SimJournalHandle`] implements `docket_execution`'s
//! [`JournalStorage`] seam), an adapter over `docket_simstore`'s pending/durable model, the
//! same one under the Raft store's [`SimDisk`](crate::disk::SimDisk):
//!
//! * every write is visible to reads at once and stays *pending* until
//!   [`Journal::flush`];
//! * [`SimJournal::crash`] drops the pending writes; [`SimJournal::crash_keeping`] keeps a
//!   prefix of them (sled's log reaches the disk in order and may get there before it is
//!   asked to flush); each write is its own pending batch;
//! * the handle is cloneable and outlives the simulated host: the simulator keeps one per
//!   node and the restarted node opens its journal from it ([`SimJournal::open`]);
//! * a journal opened before a crash may not write after it (its process is gone): each
//!   journal is stamped with the crash epoch it was opened in, and a write through a stale
//!   one fails with [`JournalError::Crashed`].
//!
//! Nothing here spawns, sleeps or reads a clock.

use std::fmt;

use docket_execution::journal::{KeyValue, Update};
use docket_execution::{Journal, JournalError, JournalStorage, Space};
use docket_simstore::{Handle, Shared, Stale};

/// A node's simulated journal storage. Clones share it.
#[derive(Clone, Default)]
pub struct SimJournal {
    model: Shared<Space, Vec<u8>, Vec<u8>>,
}

impl fmt::Debug for SimJournal {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let model = self.model.lock();
        f.debug_struct("SimJournal")
            .field("name", &self.model.name())
            .field("pending", &model.pending_batches())
            .field("epoch", &model.epoch())
            .finish()
    }
}

/// Counters of what happened to a simulated journal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimJournalStats {
    pub flushes: u64,
    pub crashes: u64,
    /// Pending writes thrown away by crashes.
    pub lost_writes: u64,
    pub pending_writes: u64,
}

impl SimJournal {
    pub fn new(name: impl Into<String>) -> SimJournal {
        SimJournal {
            model: Shared::new(name),
        }
    }

    /// Loses every write not flushed, as a crash would. Returns how many writes were lost.
    pub fn crash(&self) -> usize {
        self.crash_keeping(0)
    }

    /// Crashes, but the first `keep` pending writes reached the disk anyway (in order).
    /// Returns how many writes were lost.
    pub fn crash_keeping(&self, keep: usize) -> usize {
        self.model.crash(keep)
    }

    pub fn pending_writes(&self) -> usize {
        self.model.lock().pending_batches()
    }

    pub fn stats(&self) -> SimJournalStats {
        // Every pending batch of the journal is one write.
        let stats = self.model.lock().stats();
        SimJournalStats {
            flushes: stats.flushes,
            crashes: stats.crashes,
            lost_writes: stats.lost_batches,
            pending_writes: stats.pending_batches,
        }
    }

    /// A handle for a journal opened now (stamped with the current crash epoch).
    pub fn handle(&self) -> SimJournalHandle {
        SimJournalHandle {
            handle: self.model.handle(),
        }
    }

    /// The journal kept here, opened now: a restarted node reopens it from the same
    /// [`SimJournal`] and finds what was flushed before the crash.
    pub fn open(&self) -> Journal {
        Journal::on(self.handle())
    }
}

/// What a [`Journal`] opened on a [`SimJournal`] holds: the storage, as the journal's
/// [`JournalStorage`].
#[derive(Clone, Debug)]
pub struct SimJournalHandle {
    handle: Handle<Space, Vec<u8>, Vec<u8>>,
}

fn stale(error: Stale) -> JournalError {
    JournalError::Crashed(error.name)
}

impl JournalStorage for SimJournalHandle {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, JournalError> {
        let model = self.handle.read();
        Ok(model.space(&space).and_then(|s| s.get(key)).cloned())
    }

    fn range_after(
        &self,
        space: Space,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>, JournalError> {
        let model = self.handle.read();
        let Some(s) = model.space(&space) else {
            return Ok(Vec::new());
        };
        let lower = match after {
            Some(key) => std::ops::Bound::Excluded(key.to_vec()),
            None => std::ops::Bound::Unbounded,
        };
        Ok(s.range((lower, std::ops::Bound::Unbounded))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    /// One pending batch.
    fn insert(&self, space: Space, key: &[u8], value: Vec<u8>) -> Result<(), JournalError> {
        let mut model = self.handle.write().map_err(stale)?;
        model.apply(vec![(space, key.to_vec(), Some(value))]);
        Ok(())
    }

    /// An [`update`](JournalStorage::update) that keeps a value already there.
    fn insert_if_absent(
        &self,
        space: Space,
        key: &[u8],
        value: &[u8],
    ) -> Result<Option<Vec<u8>>, JournalError> {
        self.update(space, key, &mut |current| {
            Some(current.unwrap_or(value).to_vec())
        })
    }

    /// Runs `f` once; one pending batch if the value changes, none if it does not.
    fn update(
        &self,
        space: Space,
        key: &[u8],
        f: &mut Update<'_>,
    ) -> Result<Option<Vec<u8>>, JournalError> {
        let mut model = self.handle.write().map_err(stale)?;
        let before = model.space(&space).and_then(|s| s.get(key)).cloned();
        let after = f(before.as_deref());
        if after != before {
            model.apply(vec![(space, key.to_vec(), after)]);
        }
        Ok(before)
    }

    fn flush(&self) -> Result<(), JournalError> {
        self.handle.write().map_err(stale)?.flush();
        Ok(())
    }

    /// In place: nothing to wait for, nothing spawned.
    fn flush_blocks(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use docket_core::EntryHash;

    use super::*;

    fn get(h: &SimJournalHandle, space: Space, key: &[u8]) -> Option<Vec<u8>> {
        h.get(space, key).expect("get")
    }

    #[test]
    fn a_crash_keeps_what_was_flushed_and_a_prefix_if_asked() {
        let store = SimJournal::new("n1");
        let h = store.handle();
        h.insert(Space::Jobs, b"a", b"1".to_vec()).expect("insert");
        h.flush().expect("flush");
        h.insert(Space::Jobs, b"b", b"2".to_vec()).expect("insert");
        h.insert(Space::Jobs, b"c", b"3".to_vec()).expect("insert");
        assert_eq!(
            get(&h, Space::Jobs, b"c"),
            Some(b"3".to_vec()),
            "visible at once"
        );
        assert_eq!(store.crash_keeping(1), 1);
        let h = store.handle();
        assert_eq!(get(&h, Space::Jobs, b"a"), Some(b"1".to_vec()));
        assert_eq!(
            get(&h, Space::Jobs, b"b"),
            Some(b"2".to_vec()),
            "kept prefix"
        );
        assert_eq!(get(&h, Space::Jobs, b"c"), None, "lost");
        h.insert(Space::Meta, b"x", b"9".to_vec()).expect("insert");
        assert_eq!(store.crash(), 1);
        assert_eq!(get(&store.handle(), Space::Meta, b"x"), None);
        assert_eq!(store.stats().crashes, 2);
        assert_eq!(store.stats().lost_writes, 2);
    }

    #[test]
    fn a_journal_opened_before_a_crash_cannot_write_after_it() {
        let store = SimJournal::new("n1");
        let old = store.handle();
        store.crash();
        let error = old
            .insert(Space::Jobs, b"a", b"1".to_vec())
            .expect_err("stale");
        assert!(matches!(error, JournalError::Crashed(_)), "{error}");
        assert!(old.flush().is_err());
        store
            .handle()
            .insert(Space::Jobs, b"a", b"1".to_vec())
            .expect("a fresh handle writes");
    }

    #[test]
    fn ranges_and_updates() {
        let store = SimJournal::new("n1");
        let h = store.handle();
        for k in [b"a", b"b", b"c"] {
            h.insert(Space::Jobs, k, k.to_vec()).expect("insert");
        }
        let after_a: Vec<Vec<u8>> = h
            .range_after(Space::Jobs, Some(b"a"), 10)
            .expect("range")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(after_a, vec![b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(h.range_after(Space::Jobs, None, 1).expect("range").len(), 1);
        let before = h
            .update(Space::Meta, b"n", &mut |old| {
                assert!(old.is_none());
                Some(vec![1])
            })
            .expect("update");
        assert_eq!(before, None);
        let before = h.update(Space::Meta, b"n", &mut |_| None).expect("remove");
        assert_eq!(before, Some(vec![1]));
        assert_eq!(get(&h, Space::Meta, b"n"), None);
    }

    #[test]
    fn the_journal_storage_suite_passes() {
        docket_execution::journal::storage_suite::run(|| SimJournal::new("suite").open());
    }

    #[test]
    fn a_journal_keeps_what_was_flushed_across_a_crash() {
        let store = SimJournal::new("n1");
        let journal = store.open();
        journal.bind_ledger(&EntryHash([1; 32])).expect("binds");
        assert_eq!(store.crash(), 1, "the binding was not flushed");
        assert!(
            matches!(
                journal.bind_ledger(&EntryHash([2; 32])),
                Err(JournalError::Crashed(_))
            ),
            "the journal of the crashed process cannot write"
        );
        let reopened = store.open();
        reopened.bind_ledger(&EntryHash([2; 32])).expect("binds");
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(reopened.flush())
            .expect("flush");
        assert_eq!(store.crash(), 0);
        let error = store
            .open()
            .bind_ledger(&EntryHash([1; 32]))
            .expect_err("bound to the other ledger");
        assert!(
            matches!(error, JournalError::ForeignLedger { .. }),
            "{error}"
        );
    }
}
