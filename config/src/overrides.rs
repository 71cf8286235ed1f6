//! Values from command-line flags: the highest-precedence layer.

use std::path::PathBuf;

/// Flag that sets `node_id`; errors about a value from [`Overrides`] name these flags, so
/// the CLI should spell its flags the same way.
pub const FLAG_NODE_ID: &str = "--node-id";
/// Flag that sets `cluster_id`.
pub const FLAG_CLUSTER_ID: &str = "--cluster-id";
/// Flag that sets `raft_addr`.
pub const FLAG_RAFT_ADDR: &str = "--raft-addr";
/// Flag that sets `api_addr`.
pub const FLAG_API_ADDR: &str = "--api-addr";
/// Flag that sets `data_dir`.
pub const FLAG_DATA_DIR: &str = "--data-dir";
/// Flag that sets `genesis_constitution`.
pub const FLAG_GENESIS_CONSTITUTION: &str = "--genesis-constitution";

/// Flag that sets `log.format`.
pub const FLAG_LOG_FORMAT: &str = "--log-format";

/// Values given as command-line flags. `None` leaves the field to the environment, the
/// file or the default. Addresses are strings so that a malformed flag is reported by
/// [`NodeConfig::load`](crate::NodeConfig::load) as an error naming the flag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--node-id`
    pub node_id: Option<u64>,
    /// `--cluster-id`
    pub cluster_id: Option<String>,
    /// `--raft-addr`
    pub raft_addr: Option<String>,
    /// `--api-addr`
    pub api_addr: Option<String>,
    /// `--data-dir`
    pub data_dir: Option<PathBuf>,
    /// `--genesis-constitution`
    pub genesis_constitution: Option<PathBuf>,
    /// `--log-format`
    pub log_format: Option<String>,
}
