//! The state map's folder: folds the anchors applies seal into the map's nodes.
//!
//! Sealing an anchor (in the apply, under the state lock) is cheap: the updates of the rows
//! changed since the last anchor, their value hashes taken from the state at the anchor,
//! written in the apply's commit batch. Folding them into the radix-16 tree is not: it
//! reads, rewrites and hashes every node on the paths of a thousand or more rows (tens of
//! milliseconds at a million rows). Done in the apply, that held the state lock, and every
//! read and the next apply waited for it. With [`MapFold::Background`] a thread of the
//! state machine's own folds while applies go on; the fold reads the nodes without the
//! lock (only a fold or a snapshot install writes them, and both hold
//! [`FoldCore::exclusive`]), writes them holding the map's node lock, which a proof takes
//! to read them, and takes the state lock only to publish the new root, so a proof always
//! reads one version of the map and applies never wait for the node writes.
//!
//! What a replica vouches for does not change: the same anchors, with the same roots, in
//! the same order, on every replica; only when each becomes known. A checkpoint's `map`
//! line names the last anchor its maker had folded, and a cosigner waits until it has
//! folded that anchor too. A crash between seal and fold leaves the sealed updates on disk;
//! open folds them before the node serves.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;

use docket_core::statemap::{self, MapAnchor, MapWrites};

use super::{read, write, Shared, RECENT_ANCHORS_MAX};
use crate::store::{MapRecord, SealedAnchor, Store, StoreError};

/// Where the state map's anchors are folded into its nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MapFold {
    /// On the applying thread, right after the apply that sealed them commits: when an
    /// apply returns, its anchors are folded. Deterministic in time as in content; what
    /// the simulator, tools and tests use.
    #[default]
    Inline,
    /// On a thread of the state machine's own, while later applies go on (a node's
    /// default). An apply waits only when [`FOLDS_QUEUED_MAX`] sealed anchors are queued.
    Background,
    /// Never: anchors stay sealed on disk, as a crash between seal and fold leaves them
    /// (tests of open's recovery).
    #[cfg(test)]
    Never,
}

/// The nice value of the background folder's thread: folds are bursts of tens of
/// milliseconds of hashing, at the same ledger sizes on every replica, and at a lower
/// priority they take the CPU that serving requests leaves rather than delay requests.
/// They cannot fall behind for long: an apply that seals an anchor waits once
/// [`FOLDS_QUEUED_MAX`] are queued.
pub const FOLDER_NICE: i32 = 10;

/// Lowers the calling thread's scheduling priority to [`FOLDER_NICE`] (Linux: a thread's
/// nice value is its own). Best effort: a failure is logged, and folding goes on.
fn yield_to_requests() {
    #[cfg(target_os = "linux")]
    if let Err(error) =
        rustix::process::setpriority_process(Some(rustix::thread::gettid()), FOLDER_NICE)
    {
        tracing::warn!(%error, "the map folder keeps its scheduling priority");
    }
}

/// Sealed anchors queued for a background folder before an apply that seals another
/// waits for it: bounds the memory of the queue (an anchor interval's updates each, about
/// 70 bytes a changed row) and how far the map's root may lag the applied state.
pub const FOLDS_QUEUED_MAX: usize = 4;

/// What folding needs: the store, the state machine's shared state, and the lock that
/// keeps a fold and a snapshot install apart.
#[derive(Debug)]
pub(super) struct FoldCore {
    store: Arc<Store>,
    shared: Arc<RwLock<Shared>>,
    folding: Mutex<()>,
    map_nodes: Arc<RwLock<()>>,
}

impl FoldCore {
    pub(super) fn new(
        store: Arc<Store>,
        shared: Arc<RwLock<Shared>>,
        map_nodes: Arc<RwLock<()>>,
    ) -> FoldCore {
        FoldCore {
            store,
            shared,
            folding: Mutex::new(()),
            map_nodes,
        }
    }

    /// Held while the map's nodes are written by anything but a fold (a snapshot install
    /// rebuilding them): no fold reads them meanwhile.
    pub(super) fn exclusive(&self) -> MutexGuard<'_, ()> {
        self.folding
            .lock()
            .expect("invariant: the fold lock is poisoned only by a panicking fold")
    }

    /// Folds `sealed` into the map, commits the nodes and the record, and publishes the
    /// anchor. A sealed anchor of another generation of rows (a snapshot was installed
    /// since), or one the map is already past, is moot. (A map rebuilt at the anchor's size
    /// holds its rows but vouches for no anchor: the fold makes it one.)
    pub(super) fn fold(&self, sealed: &SealedAnchor) -> Result<(), StoreError> {
        let _folding = self.exclusive();
        let root = {
            let mut shared = write(&self.shared);
            if shared.map.generation != sealed.generation || shared.map.size > sealed.size {
                shared.pending.retain(|&size| size > sealed.size);
                return Ok(());
            }
            shared.map.root_slot()?
        };
        let started = std::time::Instant::now();
        let mut writes = MapWrites::new();
        let root = statemap::update(&self.store.map_nodes(), &mut writes, root, &sealed.updates)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let folded_us = started.elapsed().as_micros() as u64;
        let node_writes = writes.len();
        let record = MapRecord {
            generation: sealed.generation,
            size: sealed.size,
            root: root.to_bytes(),
            anchored: true,
        };
        let anchor = MapAnchor {
            size: sealed.size,
            root: root.hash(),
        };
        let folded = started.elapsed();
        // Proofs wait while the nodes change (they read them); applies and other reads do
        // not: the state lock is taken only to publish.
        let nodes = self
            .map_nodes
            .write()
            .expect("invariant: the map node lock is poisoned only by a panicking fold");
        let locked = std::time::Instant::now();
        self.store.map_fold_commit(sealed, writes, &record)?;
        let mut shared = write(&self.shared);
        shared.map = record;
        if shared.anchors.len() == RECENT_ANCHORS_MAX {
            shared.anchors.pop_front();
        }
        shared.anchors.push_back(anchor);
        shared.pending.retain(|&size| size > sealed.size);
        // The newest boundary now stands on this anchor (it is at or past it).
        if let Some(last) = shared.recent.back_mut() {
            last.map = Some(anchor);
        }
        drop(shared);
        drop(nodes);
        let held = locked.elapsed();
        let seconds = crate::telemetry::MAP_FOLD_DURATION_SECONDS;
        metrics::histogram!(seconds, "phase" => "fold").record(folded.as_secs_f64());
        metrics::histogram!(seconds, "phase" => "commit").record(held.as_secs_f64());
        tracing::debug!(
            size = sealed.size,
            rows = sealed.updates.len(),
            node_writes,
            folded_us,
            elapsed_us = started.elapsed().as_micros() as u64,
            "state map anchored"
        );
        Ok(())
    }

    /// Records that folding failed: the next apply stops the node with `error`.
    fn fail(&self, error: &StoreError) {
        tracing::error!(%error, "the state map folder stopped");
        write(&self.shared).fold_failed = Some(error.to_string());
    }
}

/// A state machine's folder ([`MapFold`]).
#[derive(Debug)]
pub(super) struct Folder {
    core: Arc<FoldCore>,
    mode: MapFold,
    thread: Option<FolderThread>,
}

#[derive(Debug)]
struct FolderThread {
    sender: Option<SyncSender<SealedAnchor>>,
    handle: Option<JoinHandle<()>>,
    /// Set on drop: queued anchors are left sealed on disk for the next open.
    stopping: Arc<AtomicBool>,
}

impl Folder {
    pub(super) fn start(core: Arc<FoldCore>, fold: MapFold) -> Result<Folder, StoreError> {
        let thread = match fold {
            MapFold::Inline => None,
            #[cfg(test)]
            MapFold::Never => None,
            MapFold::Background => {
                let (sender, receiver) = sync_channel::<SealedAnchor>(FOLDS_QUEUED_MAX);
                let stopping = Arc::new(AtomicBool::new(false));
                let handle = std::thread::Builder::new()
                    .name("docket-map-fold".to_owned())
                    .spawn({
                        let core = core.clone();
                        let stopping = stopping.clone();
                        move || {
                            yield_to_requests();
                            for sealed in receiver {
                                if stopping.load(Ordering::Relaxed) {
                                    return;
                                }
                                if let Err(error) = core.fold(&sealed) {
                                    core.fail(&error);
                                    return;
                                }
                            }
                        }
                    })
                    .map_err(|e| StoreError::Corrupt(format!("starting the map folder: {e}")))?;
                Some(FolderThread {
                    sender: Some(sender),
                    handle: Some(handle),
                    stopping,
                })
            }
        };
        Ok(Folder {
            core,
            mode: fold,
            thread,
        })
    }

    pub(super) fn core(&self) -> &FoldCore {
        &self.core
    }

    /// Folds `sealed` now (inline) or queues it for the folder thread, waiting while
    /// [`FOLDS_QUEUED_MAX`] are queued. Called outside the state lock.
    pub(super) fn submit(&self, sealed: SealedAnchor) {
        let size = sealed.size;
        match self.mode {
            MapFold::Inline => self.core.fold(&sealed).unwrap_or_else(|error| {
                panic!("fatal: cannot update the state map at {size}: {error}")
            }),
            MapFold::Background => {
                let sent = self
                    .thread
                    .as_ref()
                    .and_then(|t| t.sender.as_ref())
                    .is_some_and(|sender| queue(sender, sealed));
                if !sent {
                    let failure = read(&self.core.shared).fold_failed.clone();
                    panic!(
                        "fatal: the state map folder stopped before anchor {size}: {}",
                        failure.as_deref().unwrap_or("it exited")
                    );
                }
            }
            #[cfg(test)]
            MapFold::Never => {}
        }
    }
}

/// Queues `sealed` for the folder thread; `false` if the thread is gone. A full queue
/// (the folder lagging: by two million entries it folds ~92% of the time) means a wait of
/// up to a fold, hundreds of milliseconds, and the apply waits on one of the node's few
/// tokio workers (openraft calls it there): that wait alone is moved off the worker
/// (`block_in_place`), so openraft's core, replication and heartbeats keep every worker
/// meanwhile. Only the wait: moving whole applies off the workers cost 3% of throughput
/// at 64 and 16 clients (a thread handoff per apply). The simulator folds inline and never
/// gets here.
fn queue(sender: &SyncSender<SealedAnchor>, sealed: SealedAnchor) -> bool {
    match sender.try_send(sealed) {
        Ok(()) => true,
        Err(TrySendError::Full(sealed)) => {
            metrics::counter!(crate::telemetry::FOLD_QUEUE_WAITS_TOTAL).increment(1);
            off_the_workers(|| sender.send(sealed).is_ok())
        }
        Err(TrySendError::Disconnected(_)) => false,
    }
}

/// Runs `wait` so that it does not hold a tokio worker: on a multi-thread runtime the
/// worker first hands its other tasks to another thread (`block_in_place`); anywhere else
/// (a current-thread runtime, no runtime) it runs inline, where nothing else could run
/// meanwhile anyway.
fn off_the_workers<T>(wait: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(wait),
        _ => wait(),
    }
}

impl Drop for FolderThread {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.sender.take();
        if let Some(handle) = self.handle.take() {
            // At most the fold in progress: the rest stays sealed on disk.
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::{channel, sync_channel};
    use std::time::Duration;

    use super::*;

    fn sealed(size: u64) -> SealedAnchor {
        SealedAnchor {
            generation: 0,
            size,
            seq: 0,
            updates: Default::default(),
        }
    }

    /// One worker, so a wait held on it would stop every other task: the task that lets
    /// the folder drain the queue could never run. The folder's stand-in gives up after a
    /// few seconds (so a regression fails instead of hanging) and says whether it was told.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_full_fold_queue_is_waited_for_off_the_runtime_worker() {
        let (sender, receiver) = sync_channel::<SealedAnchor>(1);
        assert!(queue(&sender, sealed(1)), "room: queued at once");
        let (go, told) = channel::<()>();
        let folder = std::thread::spawn(move || {
            let was_told = told.recv_timeout(Duration::from_secs(5)).is_ok();
            let sizes: Vec<u64> = receiver.iter().map(|s| s.size).collect();
            (was_told, sizes)
        });
        let teller = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            go.send(()).expect("the folder listens");
        });
        // The queue is full: this waits, on the runtime's one worker (as openraft's apply
        // does), until the folder takes an anchor.
        let waiter = tokio::spawn(async move { queue(&sender, sealed(2)) });
        assert!(
            waiter.await.expect("the waiter"),
            "queued once there was room"
        );
        teller.await.expect("the teller ran");
        let (was_told, sizes) = folder.join().expect("the folder");
        assert!(
            was_told,
            "the other task ran while the queue was waited for"
        );
        assert_eq!(sizes, vec![1, 2]);
    }
}
