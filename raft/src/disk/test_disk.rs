//! A disk that can crash, for this crate's unit tests only (`#[cfg(test)]`): the store's
//! recovery and the Merkle tree's write counts are tested against internals integration
//! tests cannot reach. It is a thin adapter over `docket-simstore`'s pending/durable model
//! (a dev-dependency), the model under the simulator's own disk (`docket-sim`'s `SimDisk`,
//! which is what runs in the simulator and under openraft's storage suite there): one
//! pending batch per `apply`, one per write of `apply_in_order`, and a crash keeps what was
//! flushed plus a prefix of the rest.

use std::ops::Bound;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use docket_simstore::{Handle, Shared};

use super::{Disk, KeyValue, TreeName, Visit, WriteBatch};
use crate::store::StoreError;

type Model = Shared<TreeName, Vec<u8>, Vec<u8>>;

/// Runs `open` (of a store or disk on sled, or any engine) until it stops failing on
/// sled's file lock: a sled database of the same directory dropped just before may still
/// hold the lock for a moment (its background flusher lets go of it after the handle is
/// dropped). Any other answer is returned at once; a lock still held after two seconds is
/// returned as the error it is.
pub(crate) fn open_after_sled_release<T, E: std::fmt::Display>(
    mut open: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    const ATTEMPTS_MAX: u32 = 100;
    for _ in 1..ATTEMPTS_MAX {
        match open() {
            Err(e) if e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            answer => return answer,
        }
    }
    open()
}

/// A disk that outlives the stores opened on it. Clones share it.
#[derive(Clone, Default)]
pub(crate) struct SimDisk {
    model: Model,
    /// While set, `durable_flush` makes nothing durable (simstore's `flush_lying`), so a
    /// test can crash a store in the middle of a write that ends in a flush.
    flushes_lie: Arc<AtomicBool>,
    /// Calls of `get`, `last` and `for_each` on every handle.
    reads: Arc<AtomicU64>,
    /// Keys inserted into the ledger tree through any handle.
    ledger_inserts: Arc<AtomicU64>,
}

impl SimDisk {
    pub fn new(name: &str) -> SimDisk {
        SimDisk {
            model: Shared::new(name),
            flushes_lie: Arc::default(),
            reads: Arc::default(),
            ledger_inserts: Arc::default(),
        }
    }

    /// Keys inserted into the ledger tree so far, through any handle.
    pub fn ledger_inserts(&self) -> u64 {
        self.ledger_inserts.load(Ordering::Relaxed)
    }

    /// Makes the durable flushes of every handle lie (`true`) or tell the truth again.
    pub fn set_flushes_lie(&self, lie: bool) {
        self.flushes_lie.store(lie, Ordering::SeqCst);
    }

    /// Reads so far, through any handle: calls of `get`, `last` and `for_each`.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Crashes, keeping the first `keep` pending batches; returns how many were lost.
    pub fn crash_keeping(&self, keep: usize) -> usize {
        self.model.crash(keep)
    }

    pub fn pending_batches(&self) -> usize {
        self.model.lock().pending_batches()
    }

    /// What a store opened now holds (stale after the next crash).
    pub fn handle(&self) -> TestHandle {
        TestHandle {
            model: self.model.handle(),
            flushes_lie: self.flushes_lie.clone(),
            reads: self.reads.clone(),
            ledger_inserts: self.ledger_inserts.clone(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct TestHandle {
    model: Handle<TreeName, Vec<u8>, Vec<u8>>,
    flushes_lie: Arc<AtomicBool>,
    reads: Arc<AtomicU64>,
    ledger_inserts: Arc<AtomicU64>,
}

impl TestHandle {
    fn count_read(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }

    fn count_writes(&self, batch: &WriteBatch) {
        let inserts = batch
            .ops
            .iter()
            .filter(|(tree, _, value)| *tree == TreeName::Ledger && value.is_some())
            .count();
        self.ledger_inserts
            .fetch_add(inserts as u64, Ordering::Relaxed);
    }
}

fn stale(error: docket_simstore::Stale) -> StoreError {
    StoreError::Corrupt(format!("test disk {}: written after a crash", error.name))
}

impl Disk for TestHandle {
    fn get(&self, tree: TreeName, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.count_read();
        Ok(self
            .model
            .read()
            .space(&tree)
            .and_then(|t| t.get(key))
            .cloned())
    }

    fn last(&self, tree: TreeName) -> Result<Option<KeyValue>, StoreError> {
        self.count_read();
        Ok(self
            .model
            .read()
            .space(&tree)
            .and_then(|t| t.last_key_value())
            .map(|(k, v)| (k.clone(), v.clone())))
    }

    fn for_each(
        &self,
        tree: TreeName,
        lo: &[u8],
        hi: Option<&[u8]>,
        f: &mut Visit<'_>,
    ) -> Result<(), StoreError> {
        self.count_read();
        let items: Vec<KeyValue> = {
            let model = self.model.read();
            let Some(t) = model.space(&tree) else {
                return Ok(());
            };
            let upper = match hi {
                Some(hi) if hi <= lo => return Ok(()),
                Some(hi) => Bound::Excluded(hi),
                None => Bound::Unbounded,
            };
            t.range::<[u8], _>((Bound::Included(lo), upper))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        for (key, value) in &items {
            f(key, value)?;
        }
        Ok(())
    }

    fn apply(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.count_writes(&batch);
        self.model.write().map_err(stale)?.apply(batch.ops);
        Ok(())
    }

    fn apply_in_order(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.count_writes(&batch);
        self.model.write().map_err(stale)?.apply_in_order(batch.ops);
        Ok(())
    }

    fn durable_flush(&self) -> Result<(), StoreError> {
        let mut model = self.model.write().map_err(stale)?;
        if self.flushes_lie.load(Ordering::SeqCst) {
            model.flush_lying();
        } else {
            model.flush();
        }
        Ok(())
    }

    fn flush_blocks(&self) -> bool {
        false
    }

    fn location(&self) -> PathBuf {
        PathBuf::from(format!("testdisk:{}", self.model.shared().name()))
    }
}
