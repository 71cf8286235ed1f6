//! [`NodeConfig`]: the effective configuration of one node, and how it is loaded.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, Origin};
use crate::layers::{Layers, Origins};
use crate::limits_config::LimitsConfig;
use crate::overrides::Overrides;
use crate::raft_config::RaftConfig;
use crate::storage_config::StorageConfig;
use crate::tls_config::TlsConfig;
use crate::validate;

/// The first node of a cluster started with no configuration at all.
pub const NODE_ID_DEFAULT: u64 = 1;
/// TOML integers are signed 64-bit: a larger id could be neither written in a config file
/// nor printed back by `docket config show`.
pub const NODE_ID_MAX: u64 = i64::MAX as u64;

/// Cluster (and ledger) id of a cluster started with no configuration.
pub const CLUSTER_ID_DEFAULT: &str = "docket-local";
/// The cluster id names the ledger and travels in every Raft frame; 64 characters is
/// plenty for a name and keeps frames and file names short.
pub const CLUSTER_ID_CHARS_MAX: usize = 64;

/// Default listeners bind loopback: a node is not reachable from the network until the
/// operator says so.
pub const BIND_IP_DEFAULT: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// Node N's default Raft port is `RAFT_PORT_BASE + N`, so nodes on one machine never
/// collide and `docket serve --node-id 2` needs no other flag.
pub const RAFT_PORT_BASE: u16 = 7_000;
/// Node N's default API port is `API_PORT_BASE + N`. A thousand ports above the Raft base:
/// defaults collide across nodes only past node 1000, whose operators set addresses.
pub const API_PORT_BASE: u16 = 8_000;
/// Node N's default data directory is `<DATA_DIR_PARENT_DEFAULT>/node-N`, relative to the
/// working directory.
pub const DATA_DIR_PARENT_DEFAULT: &str = "data";

/// A configuration file is a few hundred bytes; a larger one is almost certainly the wrong
/// file (a ledger, a log) and is refused before it is read into memory whole.
pub const CONFIG_FILE_BYTES_MAX: usize = 1024 * 1024;

/// The effective configuration of one docket node: built-in defaults, overridden by the
/// file, then by `DOCKET_*` environment variables, then by command-line flags, and
/// validated.
///
/// Everything here is node-local and never changes what the replicated state machine
/// outputs; that is decided by the constitution and the core.
///
/// Relative paths are relative to the working directory of the process (not to the file
/// they were written in), whichever layer set them.
///
/// `Serialize` writes the shape `Deserialize` reads, which is also the shape of a config
/// file with every key present; [`NodeConfig::to_toml_string`] prints it for
/// `docket config show`. Deserializing directly needs every field and skips validation —
/// read an operator's file with [`NodeConfig::load`], which fills in defaults and checks.
// Not `Eq`: the raw `[execution]` table may hold TOML floats (refused later, by the node).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id in the Raft group; at least 1.
    pub node_id: u64,
    /// The cluster's id, which is also the ledger id: 1-64 characters from `[a-z0-9-]`,
    /// not starting with `-`.
    pub cluster_id: String,
    /// Where this node listens for Raft RPC.
    pub raft_addr: SocketAddr,
    /// Where this node serves the HTTP/JSON API.
    pub api_addr: SocketAddr,
    /// Where this node keeps its sled database.
    pub data_dir: PathBuf,
    /// Constitution the cluster is initialized with; `None` selects the built-in default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genesis_constitution: Option<PathBuf>,
    /// `[raft]`: replication timing and log compaction.
    pub raft: RaftConfig,
    /// `[limits]`: bounds on what the node accepts from clients.
    pub limits: LimitsConfig,
    /// `[execution]`: execution agents, effects and their allowlists. Kept as a TOML table
    /// here and validated by the node against `docket_execution::ExecutionConfig` (this
    /// crate stays free of the execution crate's dependencies). Set only in the file.
    #[serde(default, skip_serializing_if = "toml::Table::is_empty")]
    pub execution: toml::Table,
    /// `[storage]`: the embedded store's memory.
    pub storage: StorageConfig,
    /// `[log]`: the format of the node's log lines.
    #[serde(default)]
    pub log: crate::LogConfig,
    /// `[tls]`: certificates under the cluster CA; `None` serves plain HTTP and plain Raft
    /// (refused by `docket serve` on a non-loopback address unless the operator insists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

impl Default for NodeConfig {
    /// The configuration of node [`NODE_ID_DEFAULT`] when nothing is configured.
    fn default() -> Self {
        let id = NODE_ID_DEFAULT;
        let port = |base: u16| {
            base.checked_add(u16::try_from(id).expect("invariant: the default node id is small"))
                .expect("invariant: the default ports fit in u16")
        };
        NodeConfig {
            node_id: id,
            cluster_id: CLUSTER_ID_DEFAULT.to_owned(),
            raft_addr: SocketAddr::new(IpAddr::V4(BIND_IP_DEFAULT), port(RAFT_PORT_BASE)),
            api_addr: SocketAddr::new(IpAddr::V4(BIND_IP_DEFAULT), port(API_PORT_BASE)),
            data_dir: default_data_dir(id),
            genesis_constitution: None,
            raft: RaftConfig::default(),
            limits: LimitsConfig::default(),
            execution: toml::Table::new(),
            storage: StorageConfig::default(),
            log: crate::LogConfig::default(),
            tls: None,
        }
    }
}

/// `data/node-<node_id>`: each node on a machine gets its own sled directory.
pub(crate) fn default_data_dir(node_id: u64) -> PathBuf {
    Path::new(DATA_DIR_PARENT_DEFAULT).join(format!("node-{node_id}"))
}

impl NodeConfig {
    /// Loads the effective configuration: defaults < `file` < `env` < `overrides`, then
    /// validates it.
    ///
    /// * `file`: a TOML file; `None` means defaults only. Unknown keys are errors.
    /// * `env`: the process environment — the binary passes `std::env::vars()`; tests pass
    ///   a literal list. Only `DOCKET_*` names are looked at; see [`ENV_VARS`] for the
    ///   recognized ones and [`RESERVED_ENV_VARS`] for those left to the CLI. Any other
    ///   `DOCKET_*` name is refused as a likely typo.
    /// * `overrides`: command-line flag values.
    ///
    /// `raft_addr`, `api_addr` and `data_dir` that no layer sets default to
    /// `127.0.0.1:<7000 + node_id>`, `127.0.0.1:<8000 + node_id>` and `data/node-<node_id>`,
    /// computed after every layer is applied, so `--node-id 2` alone moves all three.
    ///
    /// [`ENV_VARS`]: crate::ENV_VARS
    /// [`RESERVED_ENV_VARS`]: crate::RESERVED_ENV_VARS
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<NodeConfig, ConfigError> {
        Self::load_with_origins(file, env, overrides).map(|(config, _)| config)
    }

    /// [`NodeConfig::load`], also returning where every field's value came from, keyed by
    /// dotted field path (`"raft.heartbeat_interval_ms"`), for `docket config show` to
    /// explain itself.
    pub fn load_with_origins(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<(NodeConfig, BTreeMap<&'static str, Origin>), ConfigError> {
        let mut layers = Layers::default();
        if let Some(path) = file {
            layers.apply_file(path)?;
        }
        layers.apply_env(env)?;
        layers.apply_overrides(overrides);
        let (config, origins) = layers.resolve()?;
        validate::node_config(&config, &origins)?;
        Ok((config, origins.map))
    }

    /// Checks the rules [`NodeConfig::load`] checks, for a configuration built in code;
    /// errors report [`Origin::Programmatic`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        let origins = Origins {
            map: BTreeMap::new(),
            fallback: Origin::Programmatic,
        };
        validate::node_config(self, &origins)
    }

    /// The configuration as a TOML document with every key, as `docket config show`
    /// prints it. Fails only for a configuration [`NodeConfig::validate`] refuses (a
    /// non-UTF-8 path, a node id beyond [`NODE_ID_MAX`]).
    pub fn to_toml_string(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }
}
