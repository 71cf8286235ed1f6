//! Production disk: one `sled::Db` per node. Every sled call of the crate is in this file.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::{Batch, Transactional, Tree};

use super::{Disk, KeyValue, TreeName, Visit, WriteBatch};
use crate::store::{StoreError, StoreOptions};

/// A node's sled database and its trees.
pub struct SledDisk {
    dir: PathBuf,
    db: sled::Db,
    /// In [`TreeName::ALL`] order.
    trees: [Tree; 8],
    /// Read-only handle on sled's `db` file, only for `fsync` (fsync acts on the inode, so
    /// any descriptor works; sled holds an advisory `flock` that a plain open ignores).
    db_file: File,
    /// Files in `blobs/` already fsynced, with the length they had then.
    synced_blobs: Mutex<BTreeMap<OsString, u64>>,
}

impl fmt::Debug for SledDisk {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("SledDisk")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn io_error(context: impl fmt::Display) -> impl FnOnce(io::Error) -> StoreError {
    let context = context.to_string();
    move |source| StoreError::Io { context, source }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The map is a cache of what was synced; a panic while holding it leaves it usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn sync_file(path: &Path) -> Result<(), StoreError> {
    match File::open(path) {
        Ok(file) => file
            .sync_all()
            .map_err(io_error(format_args!("fsync {}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(format_args!("open {}", path.display()))(e)),
    }
}

impl SledDisk {
    /// Opens (or creates) the database in `dir` and makes its directory entries durable.
    pub fn open(dir: &Path, options: &StoreOptions) -> Result<SledDisk, StoreError> {
        std::fs::create_dir_all(dir).map_err(io_error(format_args!("create {}", dir.display())))?;
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(options.cache_capacity_bytes)
            .flush_every_ms(options.flush_every_ms)
            .open()?;
        let db_path = dir.join("db");
        let db_file =
            File::open(&db_path).map_err(io_error(format_args!("open {}", db_path.display())))?;
        // sled 0.34 never fsyncs a directory and never fsyncs `conf`: do it once here, so
        // the files it created survive power loss. `blobs/` gets its entries synced by
        // every durable_flush that finds a new blob.
        sync_file(&dir.join("conf"))?;
        sync_file(&dir.join("blobs"))?;
        sync_file(dir)?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_file(parent)?;
        }
        let trees = [
            db.open_tree(TreeName::Log.as_str())?,
            db.open_tree(TreeName::Meta.as_str())?,
            db.open_tree(TreeName::Ledger.as_str())?,
            db.open_tree(TreeName::Sm.as_str())?,
            db.open_tree(TreeName::SmState.as_str())?,
            db.open_tree(TreeName::Merkle.as_str())?,
            db.open_tree(TreeName::Stage.as_str())?,
            db.open_tree(TreeName::Map.as_str())?,
        ];
        Ok(SledDisk {
            dir: dir.to_path_buf(),
            db,
            trees,
            db_file,
            synced_blobs: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn tree(&self, tree: TreeName) -> &Tree {
        &self.trees[tree.index()]
    }
}

impl Disk for SledDisk {
    fn get(&self, tree: TreeName, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree(tree).get(key)?.map(|v| v.to_vec()))
    }

    fn last(&self, tree: TreeName) -> Result<Option<KeyValue>, StoreError> {
        Ok(self
            .tree(tree)
            .last()?
            .map(|(k, v)| (k.to_vec(), v.to_vec())))
    }

    fn for_each(
        &self,
        tree: TreeName,
        lo: &[u8],
        hi: Option<&[u8]>,
        f: &mut Visit<'_>,
    ) -> Result<(), StoreError> {
        let tree = self.tree(tree);
        let iter = match hi {
            Some(hi) => tree.range(lo..hi),
            None => tree.range(lo..),
        };
        for item in iter {
            let (key, value) = item?;
            f(&key, &value)?;
        }
        Ok(())
    }

    /// One tree: a sled `Batch` (atomic on recovery). Several: one sled transaction over
    /// them (atomic across trees on recovery).
    fn apply(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut per_tree: BTreeMap<TreeName, Batch> = BTreeMap::new();
        for (tree, key, value) in batch.ops {
            let b = per_tree.entry(tree).or_default();
            match value {
                Some(value) => b.insert(key, value),
                None => b.remove(key),
            }
        }
        if per_tree.len() == 1 {
            let (tree, b) = per_tree
                .pop_first()
                .expect("invariant: exactly one tree in the batch");
            return Ok(self.tree(tree).apply_batch(b)?);
        }
        let (names, batches): (Vec<TreeName>, Vec<Batch>) = per_tree.into_iter().unzip();
        let trees: Vec<&Tree> = names.iter().map(|t| self.tree(*t)).collect();
        trees
            .as_slice()
            .transaction(|views| {
                for (view, b) in views.iter().zip(&batches) {
                    view.apply_batch(b)?;
                }
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                TransactionError::Storage(e) => StoreError::Sled(e),
                TransactionError::Abort(()) => {
                    StoreError::Corrupt("multi-tree write transaction aborted".to_owned())
                }
            })
    }

    /// Writes one by one, in order (see [`Disk::apply_in_order`]). sled recovers
    /// its log up to the first message that is missing or torn, so what survives a crash
    /// is a prefix of these writes.
    fn apply_in_order(&self, batch: WriteBatch) -> Result<(), StoreError> {
        for (tree, key, value) in batch.ops {
            let tree = self.tree(tree);
            match value {
                Some(value) => {
                    tree.insert(key, value)?;
                }
                None => {
                    tree.remove(key)?;
                }
            }
        }
        Ok(())
    }

    /// Makes every write that completed before this call durable, then returns.
    ///
    /// **Guaranteed** once it returns `Ok`: every sled write (any tree, any thread) that
    /// returned before the call started is on stable storage as far as the kernel can
    /// promise: sled's `db` file has been `fsync`ed (data and metadata, so a grown file keeps
    /// its size), as has every file sled wrote under `blobs/` (values or nodes too large to
    /// inline, ~128 KiB and up) together with the `blobs/` directory. So the writes survive a
    /// process crash *and* an OS crash or power loss, on a drive that honours cache flushes.
    ///
    /// Why more than `sled::Db::flush`: on Linux sled 0.34 flushes with
    /// `sync_file_range(WAIT_BEFORE|WRITE|WAIT_AFTER)`, which survives a process crash but
    /// does not flush the drive's write cache or commit file metadata, and it never syncs
    /// blob files or directories at all.
    ///
    /// **Not guaranteed:**
    /// * writes racing with the call (issued while it runs) may or may not be included;
    /// * directory entries created after [`SledDisk::open`] other than in `blobs/` (sled
    ///   creates none in normal operation, but its own `snap.*` recovery-acceleration files
    ///   are written and renamed without a directory sync; losing one only slows recovery,
    ///   though sled 0.34 has reports of a torn `snap.*.generating` blocking open, #1527);
    /// * drives or virtual disks that acknowledge `fsync` without persisting;
    /// * sled's own recovery bugs (#1509, #1533): a corrupted database fails to open, loudly.
    ///
    /// It blocks the calling thread for one `fsync` (plus one per new blob). openraft 0.9
    /// awaits each log write inline anyway, so this costs no pipelining.
    fn durable_flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        self.sync_new_blobs()?;
        self.db_file
            .sync_all()
            .map_err(io_error(format_args!("fsync {}/db", self.dir.display())))
    }

    /// `fsync`s: run on tokio's blocking pool.
    fn flush_blocks(&self) -> bool {
        true
    }

    fn location(&self) -> PathBuf {
        self.dir.clone()
    }

    /// sled's own sum: its `db` file and every blob file (one `stat` each).
    fn size_bytes(&self) -> Option<u64> {
        self.db.size_on_disk().ok()
    }

    /// The data directory: snapshot spill files are unnamed (`O_TMPFILE`), so sled never
    /// sees them, and they share the file system the ledger is on.
    fn spill_dir(&self) -> Option<PathBuf> {
        Some(self.dir.clone())
    }
}

impl SledDisk {
    /// fsyncs each blob file not yet synced at its current length, then `blobs/` itself.
    ///
    /// A blob referenced by a record at or before the flushed position is complete when
    /// `flush` returns (sled writes a blob before the log record pointing at it). A blob
    /// still being written belongs to a later record; its length differs next time, so the
    /// next durable_flush syncs it again.
    fn sync_new_blobs(&self) -> Result<(), StoreError> {
        let blobs_dir = self.dir.join("blobs");
        let listing = match std::fs::read_dir(&blobs_dir) {
            Ok(listing) => listing,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error(format_args!("list {}", blobs_dir.display()))(e)),
        };
        let mut synced = lock(&self.synced_blobs);
        let mut present = BTreeMap::new();
        let mut synced_any = false;
        for item in listing {
            let item = item.map_err(io_error(format_args!("list {}", blobs_dir.display())))?;
            let path = item.path();
            let len = match item.metadata() {
                Ok(metadata) => metadata.len(),
                // sled removes blobs it no longer needs; a vanished file needs no sync.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(format_args!("stat {}", path.display()))(e)),
            };
            let name = item.file_name();
            if synced.get(&name) != Some(&len) {
                sync_file(&path)?;
                synced_any = true;
            }
            present.insert(name, len);
        }
        if synced_any {
            sync_file(&blobs_dir)?;
        }
        *synced = present;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_values_go_through_blobs_and_are_synced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = SledDisk::open(dir.path(), &StoreOptions::default()).expect("open");
        // A value far above sled's inline threshold is written as a blob file.
        let mut batch = WriteBatch::default();
        batch.insert(TreeName::Meta, b"big".to_vec(), vec![7u8; 400 * 1024]);
        disk.apply(batch).expect("insert");
        disk.durable_flush().expect("durable flush");
        let synced = lock(&disk.synced_blobs).len();
        assert!(synced >= 1, "the blob was found and synced");
        drop(disk);
        let disk = SledDisk::open(dir.path(), &StoreOptions::default()).expect("reopen");
        let value = disk
            .get(TreeName::Meta, b"big")
            .expect("get")
            .expect("present");
        assert_eq!(value.len(), 400 * 1024);
    }

    #[test]
    fn a_batch_over_several_trees_lands_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = SledDisk::open(dir.path(), &StoreOptions::default()).expect("open");
        let mut batch = WriteBatch::default();
        batch.insert(TreeName::Ledger, b"a".to_vec(), b"1".to_vec());
        batch.insert(TreeName::Sm, b"b".to_vec(), b"2".to_vec());
        batch.remove(TreeName::Ledger, b"a".to_vec());
        batch.insert(TreeName::Ledger, b"c".to_vec(), b"3".to_vec());
        disk.apply(batch).expect("apply");
        assert_eq!(disk.get(TreeName::Ledger, b"a").expect("get"), None);
        assert_eq!(
            disk.get(TreeName::Sm, b"b").expect("get"),
            Some(b"2".to_vec())
        );
        assert_eq!(
            disk.last(TreeName::Ledger).expect("last"),
            Some((b"c".to_vec(), b"3".to_vec()))
        );
    }
}
