//! `[storage]`: how the node's embedded store uses memory.

use serde::{Deserialize, Serialize};

/// sled's page cache, in MiB. A node holds its state as rows on disk and reads them
/// through this cache; the 2-core, 24 GiB machines run three nodes plus clients, so the
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
/// cache_mb = 64
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// sled's page cache, in MiB: the bound on what the store keeps in memory of the
    /// ledger, the log and the state's rows.
    pub cache_mb: u64,
}

impl Default for StorageConfig {
    fn default() -> StorageConfig {
        StorageConfig {
            cache_mb: CACHE_MB_DEFAULT,
        }
    }
}

impl StorageConfig {
    /// The cache in bytes, as sled takes it.
    pub fn cache_bytes(&self) -> u64 {
        self.cache_mb.saturating_mul(1024 * 1024)
    }
}
