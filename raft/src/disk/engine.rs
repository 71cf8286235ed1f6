//! Which production disk a data directory holds, and the `ENGINE` marker that says so.
//!
//! A node opens its data directory with the engine its configuration names
//! (`[storage] engine`). Opening a directory written by one engine with the other must
//! never look like an empty store (a node that finds no ledger would join as a blank
//! member, or worse, accept a new genesis), so [`Store::open`](crate::Store::open) writes
//! the engine's name into `ENGINE` before the engine creates anything, and refuses a
//! directory whose marker (or, before markers existed, whose files) name the other engine
//! with [`StoreError::EngineMismatch`].

use std::fmt;
use std::io::{self, Write as _};
use std::path::Path;

use super::fjall_disk::FJALL_DIR;
use super::{BoxedDisk, FjallDisk, SledDisk};
use crate::store::{StoreError, StoreOptions};

/// The marker file in a data directory: the engine's name and a newline.
pub const ENGINE_FILE: &str = "ENGINE";

/// A file only sled creates in its directory: a data directory with it and no marker is
/// a sled store written before the marker existed.
const SLED_DB_FILE: &str = "db";

/// The production disks a node's data directory can hold: the configuration's own type
/// (`[storage] engine`), so the setting, the marker and the disk opened are one enum.
pub use docket_config::StorageEngine;

fn io_error(context: impl fmt::Display) -> impl FnOnce(io::Error) -> StoreError {
    let context = context.to_string();
    move |source| StoreError::Io { context, source }
}

/// The engine whose store is in `dir`: its `ENGINE` marker, or for a directory without
/// one, sled's `db` file (stores from before the marker) or fjall's directory; `None` for
/// a directory that holds no store (missing, empty, or only other files).
pub fn detect_engine(dir: &Path) -> Result<Option<StorageEngine>, StoreError> {
    let marker = dir.join(ENGINE_FILE);
    match std::fs::read_to_string(&marker) {
        Ok(text) => {
            return text
                .trim()
                .parse()
                .map(Some)
                .map_err(|message| StoreError::Corrupt(format!("{}: {message}", marker.display())))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(format_args!("read {}", marker.display()))(e)),
    }
    if dir.join(SLED_DB_FILE).exists() {
        return Ok(Some(StorageEngine::Sled));
    }
    if dir.join(FJALL_DIR).exists() {
        return Ok(Some(StorageEngine::Fjall));
    }
    Ok(None)
}

/// Writes `ENGINE` naming `engine` into `dir` (created if missing) atomically and durably:
/// a temporary file, fsynced, renamed over, then the directory fsynced.
fn write_marker(dir: &Path, engine: StorageEngine) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).map_err(io_error(format_args!("create {}", dir.display())))?;
    let marker = dir.join(ENGINE_FILE);
    let temporary = dir.join(format!("{ENGINE_FILE}.tmp"));
    let mut file = std::fs::File::create(&temporary)
        .map_err(io_error(format_args!("create {}", temporary.display())))?;
    file.write_all(format!("{engine}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_error(format_args!("write {}", temporary.display())))?;
    std::fs::rename(&temporary, &marker)
        .map_err(io_error(format_args!("rename to {}", marker.display())))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(format_args!("fsync {}", dir.display())))
}

/// Opens the disk of `options.engine` in `dir`, after checking that `dir` holds no other
/// engine's store, and marking it as this engine's if it is not marked yet.
pub(crate) fn open_disk(dir: &Path, options: &StoreOptions) -> Result<BoxedDisk, StoreError> {
    let wanted = options.engine;
    match detect_engine(dir)? {
        Some(found) if found != wanted => {
            return Err(StoreError::EngineMismatch {
                dir: dir.to_path_buf(),
                found,
                wanted,
            })
        }
        Some(_) if dir.join(ENGINE_FILE).exists() => {}
        // Unmarked: a new directory, or a sled store from before the marker.
        _ => write_marker(dir, wanted)?,
    }
    Ok(match wanted {
        StorageEngine::Sled => BoxedDisk::new(SledDisk::open(dir, options)?),
        StorageEngine::Fjall => BoxedDisk::new(FjallDisk::open(dir, options)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::test_disk::open_after_sled_release;
    use crate::disk::{TreeName, WriteBatch};

    fn options(engine: StorageEngine) -> StoreOptions {
        StoreOptions {
            engine,
            flush_every_ms: None,
            ..StoreOptions::default()
        }
    }

    /// Opens `dir` with `engine`, after sled lets go of a lock a dropped store held.
    fn open_unlocked(dir: &Path, engine: StorageEngine) -> BoxedDisk {
        open_after_sled_release(|| open_disk(dir, &options(engine)))
            .unwrap_or_else(|e| panic!("open {engine}: {e}"))
    }

    fn write_and_reopen(dir: &Path, engine: StorageEngine) {
        let disk = open_unlocked(dir, engine);
        let mut batch = WriteBatch::default();
        batch.insert(TreeName::Meta, b"k".to_vec(), b"v".to_vec());
        disk.apply(batch).expect("write");
        disk.durable_flush().expect("flush");
        drop(disk);
        let disk = open_unlocked(dir, engine);
        assert_eq!(
            disk.get(TreeName::Meta, b"k").expect("get"),
            Some(b"v".to_vec())
        );
    }

    #[test]
    fn a_directory_opens_only_with_the_engine_that_wrote_it() {
        for (engine, other) in [
            (StorageEngine::Sled, StorageEngine::Fjall),
            (StorageEngine::Fjall, StorageEngine::Sled),
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            assert_eq!(detect_engine(dir.path()).expect("detect"), None);
            write_and_reopen(dir.path(), engine);
            assert_eq!(detect_engine(dir.path()).expect("detect"), Some(engine));
            let error = open_disk(dir.path(), &options(other)).expect_err("the other engine");
            assert!(
                matches!(error, StoreError::EngineMismatch { found, wanted, .. }
                    if found == engine && wanted == other),
                "{error}"
            );
            let message = error.to_string();
            assert!(
                message.contains(&format!("holds a {engine} store"))
                    && message.contains(&format!("configured for {other}")),
                "{message}"
            );
            // Nothing of the other engine was created.
            let marker = std::fs::read_to_string(dir.path().join(ENGINE_FILE)).expect("marker");
            assert_eq!(marker, format!("{engine}\n"));
            match other {
                StorageEngine::Fjall => assert!(!dir.path().join(FJALL_DIR).exists()),
                StorageEngine::Sled => assert!(!dir.path().join(SLED_DB_FILE).exists()),
            }
        }
    }

    #[test]
    fn a_sled_store_from_before_the_marker_is_recognised_and_marked() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_and_reopen(dir.path(), StorageEngine::Sled);
        std::fs::remove_file(dir.path().join(ENGINE_FILE)).expect("unmark");
        assert_eq!(
            detect_engine(dir.path()).expect("detect"),
            Some(StorageEngine::Sled)
        );
        let error = open_disk(dir.path(), &options(StorageEngine::Fjall)).expect_err("fjall");
        assert!(
            matches!(error, StoreError::EngineMismatch { .. }),
            "{error}"
        );
        write_and_reopen(dir.path(), StorageEngine::Sled);
        assert!(dir.path().join(ENGINE_FILE).exists(), "marked on open");
    }

    #[test]
    fn an_unknown_marker_is_an_error_not_an_empty_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(ENGINE_FILE), "rocksdb\n").expect("marker");
        let error = detect_engine(dir.path()).expect_err("unknown");
        assert!(error.to_string().contains("rocksdb"), "{error}");
        assert!(open_disk(dir.path(), &options(StorageEngine::Sled)).is_err());
    }
}
