//! `[storage]`: which embedded store the node keeps its data in, and its memory.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The embedded store of a node's data directory (docket-raft's `SledDisk` or
/// `FjallDisk`). A data directory remembers the engine that wrote it (its `ENGINE` file)
/// and refuses to open with the other, so a node upgraded onto the fjall default with a
/// sled directory must set `engine = "sled"` (or restore a backup into a new directory).
/// fjall is the default: measured against sled with the same binary (ARCHITECTURE.md,
/// "Storage engines"), it wrote more per second at every ledger length, in half the
/// memory and under half the disk per entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageEngine {
    /// sled 0.34: a copy-on-write B-tree.
    Sled,
    /// fjall 3: an LSM tree (a journal, memtables, sorted table files).
    #[default]
    Fjall,
}

impl StorageEngine {
    /// Every engine, as written in the file, the environment and the `ENGINE` file.
    pub const NAMES: &'static [&'static str] = &["sled", "fjall"];

    pub fn as_str(self) -> &'static str {
        match self {
            StorageEngine::Sled => "sled",
            StorageEngine::Fjall => "fjall",
        }
    }
}

impl fmt::Display for StorageEngine {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StorageEngine {
    type Err = String;

    fn from_str(raw: &str) -> Result<StorageEngine, String> {
        match raw {
            "sled" => Ok(StorageEngine::Sled),
            "fjall" => Ok(StorageEngine::Fjall),
            other => Err(format!(
                "{other:?} is not a storage engine: use {}",
                StorageEngine::NAMES.join(" or ")
            )),
        }
    }
}

/// The store's cache, in MiB: sled's page cache, or fjall's block cache and memtables
/// together (a quarter each for the memtables of the state's rows and of the state map's
/// nodes, three twentieths for the other busy keyspaces' memtables, the rest block cache).
/// A node holds its state as rows
/// on disk and reads them through this cache; the 2-core, 24 GiB machines run three nodes plus clients, so the
/// default is modest. sled's accounting is approximate: under heavy writes a node's
/// resident memory exceeds it (ARCHITECTURE.md, "raft/").
pub const CACHE_MB_DEFAULT: u64 = 128;
/// Below 8 MiB sled spends its time evicting the tree's inner nodes.
pub const CACHE_MB_FLOOR: u64 = 8;
/// 64 GiB: past this the setting is more likely a unit mistake than a machine.
pub const CACHE_MB_CEILING: u64 = 64 * 1024;

const _: () = assert!(CACHE_MB_FLOOR <= CACHE_MB_DEFAULT);
const _: () = assert!(CACHE_MB_DEFAULT <= CACHE_MB_CEILING);

/// `[storage]` section.
///
/// ```toml
/// [storage]
/// engine = "fjall"
/// cache_mb = 64
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// The embedded store (`DOCKET_STORAGE_ENGINE`).
    pub engine: StorageEngine,
    /// The store's cache in MiB: the bound on what the store keeps in memory of the
    /// ledger, the log and the state's rows.
    pub cache_mb: u64,
}

impl Default for StorageConfig {
    fn default() -> StorageConfig {
        StorageConfig {
            engine: StorageEngine::default(),
            cache_mb: CACHE_MB_DEFAULT,
        }
    }
}

impl StorageConfig {
    /// The cache in bytes, as the store takes it.
    pub fn cache_bytes(&self) -> u64 {
        self.cache_mb.saturating_mul(1024 * 1024)
    }
}
