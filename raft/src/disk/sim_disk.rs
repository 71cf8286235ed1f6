//! The simulator's disk model: what survives a crash is exactly what was flushed.
//!
//! Every applied [`WriteBatch`] is visible to reads at once (like the page cache) and is
//! *pending* until [`durable_flush`](SimHandle::durable_flush). [`SimDisk::crash`] drops the
//! pending batches; [`SimDisk::crash_keeping`] keeps a prefix of them (a disk may have
//! written some of what it was not asked to sync yet, but — like sled's log — only in
//! order). The handle is an `Arc`: the simulator keeps one per node outside the simulated
//! host, so the disk outlives the host's crash and the restarted host reopens the store
//! from it.
//!
//! A store opened before a crash must not write after it (its process is gone): each store
//! holds a [`SimHandle`] stamped with the crash epoch it was opened in, and a write through a
//! stale handle is refused.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{KeyValue, TreeName, Visit, WriteBatch};
use crate::store::StoreError;

/// Keys and values are shared, not copied, between what reads see, what is durable, the
/// pending batches and a scan in progress: the simulator copies nothing per write but the
/// batch itself.
type Bytes = Arc<[u8]>;
type Trees = BTreeMap<TreeName, BTreeMap<Bytes, Bytes>>;

/// A [`WriteBatch`] as the disk keeps it while pending.
type Batch = Vec<(TreeName, Bytes, Option<Bytes>)>;

fn shared(batch: WriteBatch) -> Batch {
    batch
        .ops
        .into_iter()
        .map(|(tree, key, value)| (tree, Bytes::from(key), value.map(Bytes::from)))
        .collect()
}

/// Whether `durable_flush` does its job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FlushMode {
    #[default]
    Honest,
    /// A deliberately broken disk, for the simulator's negative control: `durable_flush`
    /// returns `Ok` and makes nothing durable, so acknowledged writes die in a crash.
    Lying,
}

#[derive(Debug, Default)]
struct Inner {
    name: String,
    mode: FlushMode,
    /// What reads see: `durable` plus every pending batch.
    current: Trees,
    durable: Trees,
    pending: Vec<Batch>,
    /// Bumped by every crash; handles from an older epoch may not write.
    epoch: u64,
    flushes: u64,
    crashes: u64,
    lost_batches: u64,
}

fn apply_to(trees: &mut Trees, batch: &Batch) {
    for (tree, key, value) in batch {
        let tree = trees.entry(*tree).or_default();
        match value {
            Some(value) => {
                tree.insert(key.clone(), value.clone());
            }
            None => {
                tree.remove(key);
            }
        }
    }
}

/// A node's simulated disk. Clones share the same disk.
#[derive(Clone, Default)]
pub struct SimDisk {
    inner: Arc<Mutex<Inner>>,
}

impl fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("SimDisk")
            .field("name", &inner.name)
            .field("mode", &inner.mode)
            .field("pending", &inner.pending.len())
            .field("epoch", &inner.epoch)
            .finish()
    }
}

/// Counters of what happened to a disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimDiskStats {
    pub flushes: u64,
    pub crashes: u64,
    /// Pending batches thrown away by crashes.
    pub lost_batches: u64,
    pub pending_batches: u64,
}

impl SimDisk {
    pub fn new(name: impl Into<String>) -> SimDisk {
        SimDisk::with_mode(name, FlushMode::Honest)
    }

    pub fn with_mode(name: impl Into<String>, mode: FlushMode) -> SimDisk {
        SimDisk {
            inner: Arc::new(Mutex::new(Inner {
                name: name.into(),
                mode,
                ..Inner::default()
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing half-done is left in memory by a panic while it is held (every method
        // finishes its changes before anything can panic), so a poisoned lock is usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Loses every write not made durable, as a power cut would. Returns how many batches
    /// were lost.
    pub fn crash(&self) -> usize {
        self.crash_keeping(0)
    }

    /// Crashes, but the first `keep` pending batches reached the platter anyway (a disk
    /// writes in order, and may write before it is asked to sync). Returns how many
    /// batches were lost.
    pub fn crash_keeping(&self, keep: usize) -> usize {
        let mut inner = self.lock();
        let pending = std::mem::take(&mut inner.pending);
        let keep = keep.min(pending.len());
        for batch in &pending[..keep] {
            apply_to(&mut inner.durable, batch);
        }
        let lost = pending.len() - keep;
        inner.current = inner.durable.clone();
        inner.epoch += 1;
        inner.crashes += 1;
        inner.lost_batches += lost as u64;
        lost
    }

    pub fn pending_batches(&self) -> usize {
        self.lock().pending.len()
    }

    pub fn stats(&self) -> SimDiskStats {
        let inner = self.lock();
        SimDiskStats {
            flushes: inner.flushes,
            crashes: inner.crashes,
            lost_batches: inner.lost_batches,
            pending_batches: inner.pending.len() as u64,
        }
    }

    pub fn mode(&self) -> FlushMode {
        self.lock().mode
    }

    /// A handle for a store opened now (stamped with the current crash epoch).
    pub(crate) fn handle(&self) -> SimHandle {
        let epoch = self.lock().epoch;
        SimHandle {
            disk: self.clone(),
            epoch,
        }
    }
}

/// What a store opened on a [`SimDisk`] holds.
#[derive(Debug)]
pub(crate) struct SimHandle {
    disk: SimDisk,
    epoch: u64,
}

impl SimHandle {
    fn writable(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        let inner = self.disk.lock();
        if inner.epoch != self.epoch {
            return Err(StoreError::Corrupt(format!(
                "simulated disk {}: write through a store opened before a crash",
                inner.name
            )));
        }
        Ok(inner)
    }

    pub fn get(&self, tree: TreeName, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let inner = self.disk.lock();
        Ok(inner
            .current
            .get(&tree)
            .and_then(|t| t.get(key))
            .map(|v| v.to_vec()))
    }

    pub fn last(&self, tree: TreeName) -> Result<Option<KeyValue>, StoreError> {
        let inner = self.disk.lock();
        Ok(inner
            .current
            .get(&tree)
            .and_then(|t| t.last_key_value())
            .map(|(k, v)| (k.to_vec(), v.to_vec())))
    }

    pub fn for_each(
        &self,
        tree: TreeName,
        lo: &[u8],
        hi: Option<&[u8]>,
        f: &mut Visit<'_>,
    ) -> Result<(), StoreError> {
        // Copied out first, so `f` may call back into the store without deadlocking.
        let items: Vec<(Bytes, Bytes)> = {
            let inner = self.disk.lock();
            let Some(t) = inner.current.get(&tree) else {
                return Ok(());
            };
            let lo: &[u8] = lo;
            match hi {
                Some(hi) if hi <= lo => Vec::new(),
                Some(hi) => t
                    .range::<[u8], _>((Bound::Included(lo), Bound::Excluded(hi)))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                None => t
                    .range::<[u8], _>((Bound::Included(lo), Bound::Unbounded))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            }
        };
        for (key, value) in &items {
            f(key, value)?;
        }
        Ok(())
    }

    pub fn apply(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut inner = self.writable()?;
        let batch = shared(batch);
        apply_to(&mut inner.current, &batch);
        inner.pending.push(batch);
        Ok(())
    }

    /// Each write is its own pending batch, so a torn crash ([`SimDisk::crash_keeping`])
    /// can keep any prefix of them.
    pub fn apply_in_order(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut inner = self.writable()?;
        for op in shared(batch) {
            let one = vec![op];
            apply_to(&mut inner.current, &one);
            inner.pending.push(one);
        }
        Ok(())
    }

    pub fn durable_flush(&self) -> Result<(), StoreError> {
        let mut inner = self.writable()?;
        inner.flushes += 1;
        if inner.mode == FlushMode::Lying {
            return Ok(());
        }
        let pending = std::mem::take(&mut inner.pending);
        for batch in &pending {
            apply_to(&mut inner.durable, batch);
        }
        Ok(())
    }

    pub fn describe(&self) -> String {
        format!("simdisk:{}", self.disk.lock().name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(handle: &SimHandle, key: &[u8], value: &[u8]) {
        let mut batch = WriteBatch::default();
        batch.insert(TreeName::Meta, key.to_vec(), value.to_vec());
        handle.apply(batch).expect("apply");
    }

    fn get(handle: &SimHandle, key: &[u8]) -> Option<Vec<u8>> {
        handle.get(TreeName::Meta, key).expect("get")
    }

    #[test]
    fn a_crash_keeps_exactly_what_was_flushed() {
        let disk = SimDisk::new("t");
        let h = disk.handle();
        put(&h, b"a", b"1");
        h.durable_flush().expect("flush");
        put(&h, b"b", b"2");
        assert_eq!(
            get(&h, b"b"),
            Some(b"2".to_vec()),
            "pending writes are readable"
        );
        assert_eq!(disk.crash(), 1);
        let h = disk.handle();
        assert_eq!(get(&h, b"a"), Some(b"1".to_vec()));
        assert_eq!(get(&h, b"b"), None, "the unflushed write is gone");
    }

    #[test]
    fn a_torn_crash_keeps_a_prefix_of_pending_batches() {
        let disk = SimDisk::new("t");
        let h = disk.handle();
        put(&h, b"a", b"1");
        put(&h, b"b", b"2");
        put(&h, b"c", b"3");
        assert_eq!(disk.crash_keeping(2), 1);
        let h = disk.handle();
        assert_eq!(get(&h, b"a"), Some(b"1".to_vec()));
        assert_eq!(get(&h, b"b"), Some(b"2".to_vec()));
        assert_eq!(get(&h, b"c"), None);
    }

    #[test]
    fn a_torn_crash_keeps_a_prefix_of_writes_applied_in_order() {
        let disk = SimDisk::new("t");
        let h = disk.handle();
        let mut batch = WriteBatch::default();
        for (key, value) in [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")] {
            batch.insert(TreeName::Meta, key.to_vec(), value.to_vec());
        }
        h.apply_in_order(batch).expect("apply");
        assert_eq!(disk.pending_batches(), 3, "one pending write each");
        assert_eq!(disk.crash_keeping(2), 1);
        let h = disk.handle();
        assert_eq!(get(&h, b"a"), Some(b"1".to_vec()));
        assert_eq!(get(&h, b"b"), Some(b"2".to_vec()));
        assert_eq!(get(&h, b"c"), None);
    }

    #[test]
    fn a_stale_handle_cannot_write_after_a_crash() {
        let disk = SimDisk::new("t");
        let stale = disk.handle();
        disk.crash();
        let mut batch = WriteBatch::default();
        batch.insert(TreeName::Meta, b"x".to_vec(), b"y".to_vec());
        assert!(stale.apply(batch).is_err());
        assert!(stale.durable_flush().is_err());
    }

    #[test]
    fn a_lying_disk_loses_flushed_writes() {
        let disk = SimDisk::with_mode("t", FlushMode::Lying);
        let h = disk.handle();
        put(&h, b"a", b"1");
        h.durable_flush().expect("flush says ok");
        disk.crash();
        assert_eq!(get(&disk.handle(), b"a"), None);
    }

    #[test]
    fn ranges_and_last() {
        let disk = SimDisk::new("t");
        let h = disk.handle();
        for k in [1u8, 2, 3, 4] {
            let mut batch = WriteBatch::default();
            batch.insert(TreeName::Log, vec![k], vec![k * 10]);
            h.apply(batch).expect("apply");
        }
        let mut seen = Vec::new();
        h.for_each(TreeName::Log, &[2], Some(&[4]), &mut |k, _| {
            seen.push(k[0]);
            Ok(())
        })
        .expect("range");
        assert_eq!(seen, vec![2, 3]);
        assert_eq!(
            h.last(TreeName::Log).expect("last"),
            Some((vec![4], vec![40]))
        );
        assert_eq!(h.last(TreeName::Sm).expect("last"), None);
    }
}
