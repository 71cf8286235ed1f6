//! The simulator's storage model: what survives a crash is exactly what was flushed.
//!
//! Both of a simulated node's stores are built on it, in `docket-sim`: the Raft store's disk
//! (`SimDisk`, implementing `docket_raft`'s `Disk` seam) and the execution journal's storage
//! (`SimJournal`, implementing `docket_execution`'s `JournalStorage` seam). Each is a thin
//! adapter that names its key spaces and maps [`Stale`] to its own error; the crash model
//! lives here, once.
//!
//! * [`Durable`] is the model: key spaces of ordered maps. Every applied batch is visible to
//!   reads at once (like the page cache) and stays *pending* until [`Durable::flush`].
//!   [`Durable::crash`] keeps what was flushed plus the first `keep` pending batches (a disk
//!   writes in order and may write before it is asked to sync, so a crash may tear a run of
//!   in-order writes, never reorder it) and throws the rest away.
//! * [`Shared`] is a named model behind a lock, cloneable, kept by the simulator outside the
//!   simulated host so the disk outlives the host's crash and the restarted host reopens
//!   from it.
//! * [`Handle`] is what a store opened on it holds, stamped with the crash epoch it was
//!   opened in: a store opened before a crash must not write after it (its process is
//!   gone), and a write through a stale handle is refused with [`Stale`].
//!
//! Nothing here spawns, sleeps, reads a clock or draws randomness: the simulator stays
//! deterministic. This crate depends on no other workspace crate.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

/// One write: `(space, key, Some(value))` inserts, `(space, key, None)` removes.
pub type Op<S, K, V> = (S, K, Option<V>);

/// Key spaces of ordered maps.
pub type Spaces<S, K, V> = BTreeMap<S, BTreeMap<K, V>>;

/// Counters of what happened to a model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Flushes asked for (a lying flush counts too).
    pub flushes: u64,
    pub crashes: u64,
    /// Pending batches thrown away by crashes.
    pub lost_batches: u64,
    pub pending_batches: u64,
}

/// The pending/durable model (see the crate docs).
#[derive(Debug)]
pub struct Durable<S, K, V> {
    /// What reads see: `durable` plus every pending batch.
    current: Spaces<S, K, V>,
    durable: Spaces<S, K, V>,
    /// Applied batches not flushed yet, oldest first; each is kept or lost whole.
    pending: Vec<Vec<Op<S, K, V>>>,
    /// Bumped by every crash; handles from an older epoch may not write.
    epoch: u64,
    flushes: u64,
    crashes: u64,
    lost_batches: u64,
}

impl<S, K, V> Default for Durable<S, K, V> {
    fn default() -> Self {
        Durable {
            current: BTreeMap::new(),
            durable: BTreeMap::new(),
            pending: Vec::new(),
            epoch: 0,
            flushes: 0,
            crashes: 0,
            lost_batches: 0,
        }
    }
}

fn apply_to<S: Ord + Clone, K: Ord + Clone, V: Clone>(
    spaces: &mut Spaces<S, K, V>,
    batch: &[Op<S, K, V>],
) {
    for (space, key, value) in batch {
        let space = spaces.entry(space.clone()).or_default();
        match value {
            Some(value) => {
                space.insert(key.clone(), value.clone());
            }
            None => {
                space.remove(key);
            }
        }
    }
}

impl<S: Ord + Clone, K: Ord + Clone, V: Clone> Durable<S, K, V> {
    pub fn new() -> Self {
        Durable::default()
    }

    /// What reads of `space` see (pending writes included); `None` if nothing was ever
    /// written to it.
    pub fn space(&self, space: &S) -> Option<&BTreeMap<K, V>> {
        self.current.get(space)
    }

    /// Applies `batch` as one pending batch: visible at once, and a crash keeps all of it
    /// or none. An empty batch is nothing to keep or lose and is not recorded.
    pub fn apply(&mut self, batch: Vec<Op<S, K, V>>) {
        if batch.is_empty() {
            return;
        }
        apply_to(&mut self.current, &batch);
        self.pending.push(batch);
    }

    /// Applies each write as its own pending batch, in order: a torn crash can keep any
    /// prefix of them.
    pub fn apply_in_order(&mut self, ops: impl IntoIterator<Item = Op<S, K, V>>) {
        for op in ops {
            self.apply(vec![op]);
        }
    }

    /// Makes every pending batch durable.
    pub fn flush(&mut self) {
        self.flushes += 1;
        let pending = std::mem::take(&mut self.pending);
        for batch in &pending {
            apply_to(&mut self.durable, batch);
        }
    }

    /// A flush that reports success and makes nothing durable: a deliberately broken disk,
    /// for the simulator's negative controls.
    pub fn flush_lying(&mut self) {
        self.flushes += 1;
    }

    /// Crashes: the first `keep` pending batches reached the disk anyway, the rest are lost;
    /// reads then see exactly what is durable, and the epoch moves on. Returns how many
    /// batches were lost.
    pub fn crash(&mut self, keep: usize) -> usize {
        let pending = std::mem::take(&mut self.pending);
        let keep = keep.min(pending.len());
        for batch in &pending[..keep] {
            apply_to(&mut self.durable, batch);
        }
        let lost = pending.len() - keep;
        self.current = self.durable.clone();
        self.epoch += 1;
        self.crashes += 1;
        self.lost_batches += lost as u64;
        lost
    }

    pub fn pending_batches(&self) -> usize {
        self.pending.len()
    }

    /// How many crashes happened so far.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn stats(&self) -> Stats {
        Stats {
            flushes: self.flushes,
            crashes: self.crashes,
            lost_batches: self.lost_batches,
            pending_batches: self.pending.len() as u64,
        }
    }
}

/// A named [`Durable`] shared by clones: one per simulated node and store.
pub struct Shared<S, K, V> {
    name: Arc<str>,
    model: Arc<Mutex<Durable<S, K, V>>>,
}

impl<S, K, V> Clone for Shared<S, K, V> {
    fn clone(&self) -> Self {
        Shared {
            name: self.name.clone(),
            model: self.model.clone(),
        }
    }
}

impl<S, K, V> Default for Shared<S, K, V> {
    fn default() -> Self {
        Shared {
            name: Arc::from(""),
            model: Arc::new(Mutex::new(Durable::default())),
        }
    }
}

impl<S, K, V> fmt::Debug for Shared<S, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let model = self.lock();
        f.debug_struct("Shared")
            .field("name", &self.name)
            .field("pending", &model.pending.len())
            .field("epoch", &model.epoch)
            .finish()
    }
}

impl<S, K, V> Shared<S, K, V> {
    fn lock_model(&self) -> MutexGuard<'_, Durable<S, K, V>> {
        // Every method of the model finishes its changes before anything can panic, so a
        // poisoned lock holds nothing half-done.
        self.model
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The model, locked (reads, stats, crashes; writes go through a [`Handle`]).
    pub fn lock(&self) -> MutexGuard<'_, Durable<S, K, V>> {
        self.lock_model()
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl<S: Ord + Clone, K: Ord + Clone, V: Clone> Shared<S, K, V> {
    pub fn new(name: impl Into<String>) -> Self {
        Shared {
            name: Arc::from(name.into()),
            model: Arc::new(Mutex::new(Durable::new())),
        }
    }

    /// See [`Durable::crash`].
    pub fn crash(&self, keep: usize) -> usize {
        self.lock().crash(keep)
    }

    /// A handle for a store opened now (stamped with the current crash epoch).
    pub fn handle(&self) -> Handle<S, K, V> {
        let epoch = self.lock().epoch;
        Handle {
            shared: self.clone(),
            epoch,
        }
    }
}

/// A write through a store opened before a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stale {
    /// The name of the [`Shared`] model.
    pub name: String,
}

impl fmt::Display for Stale {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{}: write through a store opened before a crash",
            self.name
        )
    }
}

impl std::error::Error for Stale {}

/// What a store opened on a [`Shared`] model holds.
pub struct Handle<S, K, V> {
    shared: Shared<S, K, V>,
    epoch: u64,
}

impl<S, K, V> Clone for Handle<S, K, V> {
    fn clone(&self) -> Self {
        Handle {
            shared: self.shared.clone(),
            epoch: self.epoch,
        }
    }
}

impl<S, K, V> fmt::Debug for Handle<S, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("Handle")
            .field("shared", &self.shared)
            .field("epoch", &self.epoch)
            .finish()
    }
}

impl<S, K, V> Handle<S, K, V> {
    /// The model, for reads (a stale handle may still read: nothing checks it).
    pub fn read(&self) -> MutexGuard<'_, Durable<S, K, V>> {
        self.shared.lock_model()
    }

    /// The model, for writes, unless a crash happened since this handle was made.
    pub fn write(&self) -> Result<MutexGuard<'_, Durable<S, K, V>>, Stale> {
        let model = self.shared.lock_model();
        if model.epoch != self.epoch {
            return Err(Stale {
                name: self.shared.name().to_owned(),
            });
        }
        Ok(model)
    }

    pub fn shared(&self) -> &Shared<S, K, V> {
        &self.shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Model = Shared<u8, &'static str, u32>;

    fn put(model: &Model, key: &'static str, value: u32) {
        let handle = model.handle();
        let mut model = handle.write().expect("fresh handle");
        model.apply(vec![(0, key, Some(value))]);
    }

    fn get(model: &Model, key: &str) -> Option<u32> {
        model.lock().space(&0).and_then(|s| s.get(key)).copied()
    }

    #[test]
    fn a_crash_keeps_exactly_what_was_flushed() {
        let model = Model::new("t");
        put(&model, "a", 1);
        model.lock().flush();
        put(&model, "b", 2);
        assert_eq!(get(&model, "b"), Some(2), "pending writes are readable");
        assert_eq!(model.crash(0), 1);
        assert_eq!(get(&model, "a"), Some(1));
        assert_eq!(get(&model, "b"), None, "the unflushed write is gone");
        assert_eq!(
            model.lock().stats(),
            Stats {
                flushes: 1,
                crashes: 1,
                lost_batches: 1,
                pending_batches: 0
            }
        );
    }

    #[test]
    fn a_torn_crash_keeps_a_prefix_and_batches_whole() {
        let model = Model::new("t");
        let handle = model.handle();
        {
            let mut m = handle.write().expect("fresh");
            m.apply(vec![(0, "a", Some(1)), (0, "b", Some(2))]);
            m.apply_in_order(vec![(0, "c", Some(3)), (0, "a", None), (0, "d", Some(4))]);
            assert_eq!(
                m.pending_batches(),
                4,
                "one batch, then one per in-order write"
            );
        }
        assert_eq!(model.crash(2), 2);
        assert_eq!(get(&model, "a"), Some(1), "its removal was not kept");
        assert_eq!(get(&model, "b"), Some(2), "kept with its batch");
        assert_eq!(get(&model, "c"), Some(3), "in the kept prefix");
        assert_eq!(get(&model, "d"), None, "after the tear");
    }

    #[test]
    fn removals_and_a_lying_flush() {
        let model = Model::new("t");
        put(&model, "a", 1);
        model.lock().flush();
        model
            .handle()
            .write()
            .expect("fresh")
            .apply(vec![(0, "a", None)]);
        assert_eq!(get(&model, "a"), None, "the removal is visible");
        model.lock().flush_lying();
        model.crash(0);
        assert_eq!(
            get(&model, "a"),
            Some(1),
            "a lying flush made nothing durable"
        );
    }

    #[test]
    fn a_stale_handle_reads_but_cannot_write() {
        let model = Model::new("n1");
        let stale = model.handle();
        model.crash(0);
        let error = stale.write().expect_err("stale");
        assert_eq!(error.name, "n1");
        assert!(stale.read().space(&0).is_none());
        assert!(model.handle().write().is_ok(), "a fresh handle writes");
    }
}
