//! The simulator's disk under the Raft store: what survives a crash is exactly what was
//! flushed.
//!
//! [`SimHandle`] implements `docket_raft`'s [`Disk`] seam (sled's `SledDisk` is the other
//! implementation), as an adapter over `docket_simstore`'s pending/durable model, shared
//! with the execution journal's simulated storage ([`crate::journal`]): every applied
//! [`WriteBatch`] is visible to reads at once (like the page cache) and is *pending* until
//! [`durable_flush`](Disk::durable_flush). [`SimDisk::crash`] drops the pending batches;
//! [`SimDisk::crash_keeping`] keeps a prefix of them (a disk may have written some of what
//! it was not asked to sync yet, but — like sled's log — only in order). The handle is an
//! `Arc`: the simulator keeps one per node outside the simulated host, so the disk outlives
//! the host's crash and the restarted host reopens the store from it
//! (`docket_raft::open_on(disk.handle(), id)`).
//!
//! A store opened before a crash must not write after it (its process is gone): each store
//! holds a [`SimHandle`] stamped with the crash epoch it was opened in, and a write through a
//! stale handle is refused.

use std::fmt;
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::Arc;

use docket_raft::disk::{Disk, KeyValue, TreeName, Visit, WriteBatch};
use docket_raft::StoreError;
use docket_simstore::{Handle, Shared, Stale};

/// Keys and values are shared, not copied, between what reads see, what is durable, the
/// pending batches and a scan in progress: the simulator copies nothing per write but the
/// batch itself.
type Bytes = Arc<[u8]>;

/// One write as the disk keeps it while pending.
type Op = docket_simstore::Op<TreeName, Bytes, Bytes>;

fn shared(batch: WriteBatch) -> impl Iterator<Item = Op> {
    batch
        .into_iter()
        .map(|(tree, key, value)| (tree, Bytes::from(key), value.map(Bytes::from)))
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

/// A node's simulated disk. Clones share the same disk.
#[derive(Clone, Default)]
pub struct SimDisk {
    model: Shared<TreeName, Bytes, Bytes>,
    mode: FlushMode,
}

impl fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let model = self.model.lock();
        f.debug_struct("SimDisk")
            .field("name", &self.model.name())
            .field("mode", &self.mode)
            .field("pending", &model.pending_batches())
            .field("epoch", &model.epoch())
            .finish()
    }
}

/// Counters of what happened to a disk.
pub type SimDiskStats = docket_simstore::Stats;

impl SimDisk {
    pub fn new(name: impl Into<String>) -> SimDisk {
        SimDisk::with_mode(name, FlushMode::Honest)
    }

    pub fn with_mode(name: impl Into<String>, mode: FlushMode) -> SimDisk {
        SimDisk {
            model: Shared::new(name),
            mode,
        }
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
        self.model.crash(keep)
    }

    pub fn pending_batches(&self) -> usize {
        self.model.lock().pending_batches()
    }

    pub fn stats(&self) -> SimDiskStats {
        self.model.lock().stats()
    }

    pub fn mode(&self) -> FlushMode {
        self.mode
    }

    /// A handle for a store opened now (stamped with the current crash epoch), to open the
    /// store on (`docket_raft::open_on`).
    pub fn handle(&self) -> SimHandle {
        SimHandle {
            handle: self.model.handle(),
            mode: self.mode,
        }
    }
}

/// What a store opened on a [`SimDisk`] holds: the disk, as the store's [`Disk`].
#[derive(Debug)]
pub struct SimHandle {
    handle: Handle<TreeName, Bytes, Bytes>,
    mode: FlushMode,
}

fn stale(error: Stale) -> StoreError {
    StoreError::Corrupt(format!(
        "simulated disk {}: write through a store opened before a crash",
        error.name
    ))
}

impl Disk for SimHandle {
    fn get(&self, tree: TreeName, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let model = self.handle.read();
        Ok(model
            .space(&tree)
            .and_then(|t| t.get(key))
            .map(|v| v.to_vec()))
    }

    fn last(&self, tree: TreeName) -> Result<Option<KeyValue>, StoreError> {
        let model = self.handle.read();
        Ok(model
            .space(&tree)
            .and_then(|t| t.last_key_value())
            .map(|(k, v)| (k.to_vec(), v.to_vec())))
    }

    fn for_each(
        &self,
        tree: TreeName,
        lo: &[u8],
        hi: Option<&[u8]>,
        f: &mut Visit<'_>,
    ) -> Result<(), StoreError> {
        // Copied out first, so `f` may call back into the store without deadlocking.
        let items: Vec<(Bytes, Bytes)> = {
            let model = self.handle.read();
            let Some(t) = model.space(&tree) else {
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

    fn apply(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut model = self.handle.write().map_err(stale)?;
        model.apply(shared(batch).collect());
        Ok(())
    }

    /// Each write is its own pending batch, so a torn crash ([`SimDisk::crash_keeping`])
    /// can keep any prefix of them.
    fn apply_in_order(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut model = self.handle.write().map_err(stale)?;
        model.apply_in_order(shared(batch));
        Ok(())
    }

    fn durable_flush(&self) -> Result<(), StoreError> {
        let mut model = self.handle.write().map_err(stale)?;
        match self.mode {
            FlushMode::Honest => model.flush(),
            FlushMode::Lying => model.flush_lying(),
        }
        Ok(())
    }

    /// Inline: the flush is a memory copy, and the host must stay on the simulation's one
    /// thread.
    fn flush_blocks(&self) -> bool {
        false
    }

    fn location(&self) -> PathBuf {
        PathBuf::from(format!("simdisk:{}", self.handle.shared().name()))
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
