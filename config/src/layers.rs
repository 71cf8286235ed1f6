//! The four layers — defaults < file < environment < flags — and their resolution into a
//! [`NodeConfig`], remembering where every value came from.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::error::{ConfigError, Origin};
use crate::limits_config::{
    LimitsConfig, BATCH_PROPOSALS_MAX_DEFAULT, CATCH_UP_TIMEOUT_MS_DEFAULT,
    CLIENTS_INFLIGHT_MAX_DEFAULT, FORWARD_TIMEOUT_MS_DEFAULT, READ_PAGE_ENTRIES_MAX_DEFAULT,
    REQUEST_BODY_BYTES_MAX_DEFAULT,
};
use crate::log_config::{LogConfig, LogFormat};
use crate::node_config::{
    default_data_dir, NodeConfig, API_PORT_BASE, BIND_IP_DEFAULT, CLUSTER_ID_DEFAULT,
    CONFIG_FILE_BYTES_MAX, NODE_ID_DEFAULT, RAFT_PORT_BASE,
};
use crate::overrides::{
    Overrides, FLAG_API_ADDR, FLAG_CLUSTER_ID, FLAG_DATA_DIR, FLAG_GENESIS_CONSTITUTION,
    FLAG_LOG_FORMAT, FLAG_NODE_ID, FLAG_RAFT_ADDR,
};
use crate::raft_config::{
    RaftConfig, APPLY_BACKLOG_MAX_DEFAULT, ELECTION_TIMEOUT_MAX_MS_DEFAULT,
    ELECTION_TIMEOUT_MIN_MS_DEFAULT, HEARTBEAT_INTERVAL_MS_DEFAULT, LOG_KEEP_MB_DEFAULT,
    MAX_IN_SNAPSHOT_LOG_TO_KEEP_DEFAULT, RPC_TIMEOUT_MS_DEFAULT, SNAPSHOT_LOGS_SINCE_LAST_DEFAULT,
};
use crate::storage_config::{StorageConfig, StorageEngine, CACHE_MB_DEFAULT};
use crate::tls_config::{TlsConfig, RELOAD_POLL_MS_DEFAULT};
use crate::validate;

/// A value some layer set, and which layer.
#[derive(Debug)]
pub(crate) struct Set<T> {
    pub(crate) value: T,
    pub(crate) origin: Origin,
}

/// Where each field of a resolved [`NodeConfig`] came from, keyed by dotted path. Fields
/// not in the map report `fallback`.
#[derive(Debug, Clone)]
pub(crate) struct Origins {
    pub(crate) map: BTreeMap<&'static str, Origin>,
    pub(crate) fallback: Origin,
}

impl Origins {
    pub(crate) fn of(&self, field: &'static str) -> Origin {
        self.map
            .get(field)
            .cloned()
            .unwrap_or_else(|| self.fallback.clone())
    }
}

/// Every field as set by the layers applied so far; `None` means "no layer set it yet".
/// Addresses stay strings until resolution so a malformed one is reported with its origin.
#[derive(Debug, Default)]
pub(crate) struct Layers {
    pub(crate) node_id: Option<Set<u64>>,
    pub(crate) cluster_id: Option<Set<String>>,
    pub(crate) raft_addr: Option<Set<String>>,
    pub(crate) api_addr: Option<Set<String>>,
    pub(crate) data_dir: Option<Set<PathBuf>>,
    pub(crate) genesis_constitution: Option<Set<PathBuf>>,
    pub(crate) heartbeat_interval_ms: Option<Set<u64>>,
    pub(crate) election_timeout_min_ms: Option<Set<u64>>,
    pub(crate) election_timeout_max_ms: Option<Set<u64>>,
    pub(crate) rpc_timeout_ms: Option<Set<u64>>,
    pub(crate) snapshot_logs_since_last: Option<Set<u64>>,
    pub(crate) max_in_snapshot_log_to_keep: Option<Set<u64>>,
    pub(crate) log_keep_mb: Option<Set<u64>>,
    pub(crate) apply_backlog_max: Option<Set<u64>>,
    pub(crate) request_body_bytes_max: Option<Set<usize>>,
    pub(crate) batch_proposals_max: Option<Set<usize>>,
    pub(crate) forward_timeout_ms: Option<Set<u64>>,
    pub(crate) catch_up_timeout_ms: Option<Set<u64>>,
    pub(crate) read_page_entries_max: Option<Set<usize>>,
    pub(crate) clients_inflight_max: Option<Set<usize>>,
    pub(crate) execution: toml::Table,
    pub(crate) storage_cache_mb: Option<Set<u64>>,
    pub(crate) storage_engine: Option<Set<String>>,
    pub(crate) log_format: Option<Set<String>>,
    pub(crate) tls_ca: Option<Set<PathBuf>>,
    pub(crate) tls_cert: Option<Set<PathBuf>>,
    pub(crate) tls_key: Option<Set<PathBuf>>,
    pub(crate) tls_require_client_cert: Option<Set<bool>>,
    pub(crate) tls_reload_poll_ms: Option<Set<u64>>,
}

/// The file as written: every key optional, unknown keys refused, spans kept so that a
/// value rejected later is reported at its line.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table of docket settings")]
struct FileLayer {
    node_id: Option<Spanned<u64>>,
    cluster_id: Option<Spanned<String>>,
    raft_addr: Option<Spanned<String>>,
    api_addr: Option<Spanned<String>>,
    data_dir: Option<Spanned<PathBuf>>,
    genesis_constitution: Option<Spanned<PathBuf>>,
    #[serde(default)]
    raft: RaftFileLayer,
    #[serde(default)]
    limits: LimitsFileLayer,
    /// Validated by the node (see `NodeConfig::execution`).
    #[serde(default)]
    execution: toml::Table,
    #[serde(default)]
    storage: StorageFileLayer,
    #[serde(default)]
    log: LogFileLayer,
    #[serde(default)]
    tls: TlsFileLayer,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [log] table")]
struct LogFileLayer {
    format: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [storage] table")]
struct StorageFileLayer {
    engine: Option<Spanned<String>>,
    cache_mb: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [tls] table")]
struct TlsFileLayer {
    ca: Option<Spanned<PathBuf>>,
    cert: Option<Spanned<PathBuf>>,
    key: Option<Spanned<PathBuf>>,
    require_client_cert: Option<Spanned<bool>>,
    reload_poll_ms: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [raft] table")]
struct RaftFileLayer {
    heartbeat_interval_ms: Option<Spanned<u64>>,
    election_timeout_min_ms: Option<Spanned<u64>>,
    election_timeout_max_ms: Option<Spanned<u64>>,
    rpc_timeout_ms: Option<Spanned<u64>>,
    snapshot_logs_since_last: Option<Spanned<u64>>,
    max_in_snapshot_log_to_keep: Option<Spanned<u64>>,
    log_keep_mb: Option<Spanned<u64>>,
    apply_backlog_max: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [limits] table")]
struct LimitsFileLayer {
    request_body_bytes_max: Option<Spanned<usize>>,
    batch_proposals_max: Option<Spanned<usize>>,
    forward_timeout_ms: Option<Spanned<u64>>,
    read_page_entries_max: Option<Spanned<usize>>,
    clients_inflight_max: Option<Spanned<usize>>,
    catch_up_timeout_ms: Option<Spanned<u64>>,
}

impl Layers {
    /// Reads and parses the configuration file and applies it on top of the defaults.
    pub(crate) fn apply_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = read_bounded(path).map_err(|source| ConfigError::FileUnreadable {
            path: path.to_path_buf(),
            source,
        })?;
        let file: FileLayer =
            toml::from_str(&text).map_err(|error| syntax_error(path, &text, &error))?;

        let at = |span: std::ops::Range<usize>| Origin::File {
            path: path.to_path_buf(),
            line: line_and_column(&text, span.start).0,
        };
        fn set<T>(
            slot: &mut Option<Set<T>>,
            value: Option<Spanned<T>>,
            at: impl Fn(std::ops::Range<usize>) -> Origin,
        ) {
            if let Some(value) = value {
                let origin = at(value.span());
                *slot = Some(Set {
                    value: value.into_inner(),
                    origin,
                });
            }
        }
        set(&mut self.node_id, file.node_id, at);
        set(&mut self.cluster_id, file.cluster_id, at);
        set(&mut self.raft_addr, file.raft_addr, at);
        set(&mut self.api_addr, file.api_addr, at);
        set(&mut self.data_dir, file.data_dir, at);
        set(
            &mut self.genesis_constitution,
            file.genesis_constitution,
            at,
        );
        let raft = file.raft;
        set(
            &mut self.heartbeat_interval_ms,
            raft.heartbeat_interval_ms,
            at,
        );
        set(
            &mut self.election_timeout_min_ms,
            raft.election_timeout_min_ms,
            at,
        );
        set(
            &mut self.election_timeout_max_ms,
            raft.election_timeout_max_ms,
            at,
        );
        set(&mut self.rpc_timeout_ms, raft.rpc_timeout_ms, at);
        set(
            &mut self.snapshot_logs_since_last,
            raft.snapshot_logs_since_last,
            at,
        );
        set(
            &mut self.max_in_snapshot_log_to_keep,
            raft.max_in_snapshot_log_to_keep,
            at,
        );
        set(&mut self.log_keep_mb, raft.log_keep_mb, at);
        set(&mut self.apply_backlog_max, raft.apply_backlog_max, at);
        self.execution = file.execution;
        set(&mut self.storage_cache_mb, file.storage.cache_mb, at);
        set(&mut self.storage_engine, file.storage.engine, at);
        set(&mut self.log_format, file.log.format, at);
        let tls = file.tls;
        set(&mut self.tls_ca, tls.ca, at);
        set(&mut self.tls_cert, tls.cert, at);
        set(&mut self.tls_key, tls.key, at);
        set(
            &mut self.tls_require_client_cert,
            tls.require_client_cert,
            at,
        );
        set(&mut self.tls_reload_poll_ms, tls.reload_poll_ms, at);
        let limits = file.limits;
        set(
            &mut self.request_body_bytes_max,
            limits.request_body_bytes_max,
            at,
        );
        set(
            &mut self.batch_proposals_max,
            limits.batch_proposals_max,
            at,
        );
        set(&mut self.forward_timeout_ms, limits.forward_timeout_ms, at);
        set(
            &mut self.catch_up_timeout_ms,
            limits.catch_up_timeout_ms,
            at,
        );
        set(
            &mut self.read_page_entries_max,
            limits.read_page_entries_max,
            at,
        );
        set(
            &mut self.clients_inflight_max,
            limits.clients_inflight_max,
            at,
        );
        Ok(())
    }

    /// Applies command-line flags, the last and strongest layer.
    pub(crate) fn apply_overrides(&mut self, overrides: &Overrides) {
        fn set<T: Clone>(slot: &mut Option<Set<T>>, value: &Option<T>, flag: &'static str) {
            if let Some(value) = value {
                *slot = Some(Set {
                    value: value.clone(),
                    origin: Origin::Flag { flag },
                });
            }
        }
        set(&mut self.node_id, &overrides.node_id, FLAG_NODE_ID);
        set(&mut self.cluster_id, &overrides.cluster_id, FLAG_CLUSTER_ID);
        set(&mut self.raft_addr, &overrides.raft_addr, FLAG_RAFT_ADDR);
        set(&mut self.api_addr, &overrides.api_addr, FLAG_API_ADDR);
        set(&mut self.data_dir, &overrides.data_dir, FLAG_DATA_DIR);
        set(
            &mut self.genesis_constitution,
            &overrides.genesis_constitution,
            FLAG_GENESIS_CONSTITUTION,
        );
        set(&mut self.log_format, &overrides.log_format, FLAG_LOG_FORMAT);
    }

    /// Fills every field no layer set with its default — derived from `node_id` for the
    /// addresses and the data directory — and parses the addresses. Range and consistency
    /// rules are left to [`validate::node_config`], except the `node_id` check the derived
    /// defaults depend on.
    pub(crate) fn resolve(self) -> Result<(NodeConfig, Origins), ConfigError> {
        let mut map = BTreeMap::new();
        let mut record = |field: &'static str, origin: Origin| {
            map.insert(field, origin);
        };

        let node_id = or_default(self.node_id, NODE_ID_DEFAULT);
        validate::node_id(node_id.value, &node_id.origin)?;
        let id = node_id.value;
        record("node_id", node_id.origin);

        let cluster_id = or_default(self.cluster_id, CLUSTER_ID_DEFAULT.to_owned());
        record("cluster_id", cluster_id.origin);

        let raft_addr = address("raft_addr", self.raft_addr, id, RAFT_PORT_BASE)?;
        record("raft_addr", raft_addr.origin);
        let api_addr = address("api_addr", self.api_addr, id, API_PORT_BASE)?;
        record("api_addr", api_addr.origin);

        let data_dir = self.data_dir.unwrap_or_else(|| Set {
            value: default_data_dir(id),
            origin: Origin::Derived { from: "node_id" },
        });
        record("data_dir", data_dir.origin);

        let genesis_constitution = match self.genesis_constitution {
            Some(set) => {
                record("genesis_constitution", set.origin);
                Some(set.value)
            }
            None => {
                record("genesis_constitution", Origin::Default);
                None
            }
        };

        let mut field = |name: &'static str, set: Set<u64>| {
            record(name, set.origin);
            set.value
        };
        let heartbeat_interval_ms = field(
            "raft.heartbeat_interval_ms",
            or_default(self.heartbeat_interval_ms, HEARTBEAT_INTERVAL_MS_DEFAULT),
        );
        let election_timeout_min_ms = field(
            "raft.election_timeout_min_ms",
            or_default(
                self.election_timeout_min_ms,
                ELECTION_TIMEOUT_MIN_MS_DEFAULT,
            ),
        );
        let election_timeout_max_ms = field(
            "raft.election_timeout_max_ms",
            or_default(
                self.election_timeout_max_ms,
                ELECTION_TIMEOUT_MAX_MS_DEFAULT,
            ),
        );
        let rpc_timeout_ms = field(
            "raft.rpc_timeout_ms",
            or_default(self.rpc_timeout_ms, RPC_TIMEOUT_MS_DEFAULT),
        );
        let snapshot_logs_since_last = field(
            "raft.snapshot_logs_since_last",
            or_default(
                self.snapshot_logs_since_last,
                SNAPSHOT_LOGS_SINCE_LAST_DEFAULT,
            ),
        );
        let max_in_snapshot_log_to_keep = field(
            "raft.max_in_snapshot_log_to_keep",
            or_default(
                self.max_in_snapshot_log_to_keep,
                MAX_IN_SNAPSHOT_LOG_TO_KEEP_DEFAULT,
            ),
        );
        let log_keep_mb = field(
            "raft.log_keep_mb",
            or_default(self.log_keep_mb, LOG_KEEP_MB_DEFAULT),
        );
        let apply_backlog_max = field(
            "raft.apply_backlog_max",
            or_default(self.apply_backlog_max, APPLY_BACKLOG_MAX_DEFAULT),
        );
        let forward_timeout_ms = field(
            "limits.forward_timeout_ms",
            or_default(self.forward_timeout_ms, FORWARD_TIMEOUT_MS_DEFAULT),
        );
        let catch_up_timeout_ms = field(
            "limits.catch_up_timeout_ms",
            or_default(self.catch_up_timeout_ms, CATCH_UP_TIMEOUT_MS_DEFAULT),
        );
        let cache_mb = field(
            "storage.cache_mb",
            or_default(self.storage_cache_mb, CACHE_MB_DEFAULT),
        );

        let mut field = |name: &'static str, set: Set<usize>| {
            record(name, set.origin);
            set.value
        };
        let request_body_bytes_max = field(
            "limits.request_body_bytes_max",
            or_default(self.request_body_bytes_max, REQUEST_BODY_BYTES_MAX_DEFAULT),
        );
        let batch_proposals_max = field(
            "limits.batch_proposals_max",
            or_default(self.batch_proposals_max, BATCH_PROPOSALS_MAX_DEFAULT),
        );
        let read_page_entries_max = field(
            "limits.read_page_entries_max",
            or_default(self.read_page_entries_max, READ_PAGE_ENTRIES_MAX_DEFAULT),
        );
        let clients_inflight_max = field(
            "limits.clients_inflight_max",
            or_default(self.clients_inflight_max, CLIENTS_INFLIGHT_MAX_DEFAULT),
        );

        let storage_engine = or_default(
            self.storage_engine,
            StorageEngine::default().as_str().to_owned(),
        );
        let engine = storage_engine
            .value
            .parse::<StorageEngine>()
            .map_err(|message| ConfigError::InvalidValue {
                field: "storage.engine",
                origin: storage_engine.origin.clone(),
                message,
            })?;
        record("storage.engine", storage_engine.origin);

        let log_format = or_default(self.log_format, LogFormat::default().as_str().to_owned());
        let format =
            log_format
                .value
                .parse::<LogFormat>()
                .map_err(|message| ConfigError::InvalidValue {
                    field: "log.format",
                    origin: log_format.origin.clone(),
                    message,
                })?;
        record("log.format", log_format.origin);

        let tls = tls_section(
            self.tls_ca,
            self.tls_cert,
            self.tls_key,
            self.tls_require_client_cert,
            self.tls_reload_poll_ms,
            &mut record,
        )?;

        let config = NodeConfig {
            node_id: id,
            cluster_id: cluster_id.value,
            raft_addr: raft_addr.value,
            api_addr: api_addr.value,
            data_dir: data_dir.value,
            genesis_constitution,
            raft: RaftConfig {
                heartbeat_interval_ms,
                election_timeout_min_ms,
                election_timeout_max_ms,
                rpc_timeout_ms,
                snapshot_logs_since_last,
                max_in_snapshot_log_to_keep,
                log_keep_mb,
                apply_backlog_max,
            },
            limits: LimitsConfig {
                request_body_bytes_max,
                batch_proposals_max,
                forward_timeout_ms,
                read_page_entries_max,
                clients_inflight_max,
                catch_up_timeout_ms,
            },
            execution: self.execution,
            storage: StorageConfig { engine, cache_mb },
            log: LogConfig { format },
            tls,
        };
        Ok((
            config,
            Origins {
                map,
                fallback: Origin::Default,
            },
        ))
    }
}

/// `[tls]` from its layers: absent when no layer set any of it; otherwise `ca`, `cert` and
/// `key` are all required (half a TLS configuration is refused, never served plain).
fn tls_section(
    ca: Option<Set<PathBuf>>,
    cert: Option<Set<PathBuf>>,
    key: Option<Set<PathBuf>>,
    require_client_cert: Option<Set<bool>>,
    reload_poll_ms: Option<Set<u64>>,
    record: &mut impl FnMut(&'static str, Origin),
) -> Result<Option<TlsConfig>, ConfigError> {
    let any_origin = [
        ca.as_ref().map(|s| s.origin.clone()),
        cert.as_ref().map(|s| s.origin.clone()),
        key.as_ref().map(|s| s.origin.clone()),
        require_client_cert.as_ref().map(|s| s.origin.clone()),
        reload_poll_ms.as_ref().map(|s| s.origin.clone()),
    ]
    .into_iter()
    .flatten()
    .next();
    let Some(origin) = any_origin else {
        return Ok(None);
    };
    let mut required = |field: &'static str, slot: Option<Set<PathBuf>>| {
        match slot {
        Some(set) => {
            record(field, set.origin);
            Ok(set.value)
        }
        None => Err(ConfigError::InvalidValue {
            field,
            origin: origin.clone(),
            message: "[tls] needs ca, cert and key together (`docket tls init` writes all                       three); this one is missing"
                .to_owned(),
        }),
    }
    };
    let ca = required("tls.ca", ca)?;
    let cert = required("tls.cert", cert)?;
    let key = required("tls.key", key)?;
    let require_client_cert = or_default(require_client_cert, false);
    record("tls.require_client_cert", require_client_cert.origin);
    let reload_poll_ms = or_default(reload_poll_ms, RELOAD_POLL_MS_DEFAULT);
    record("tls.reload_poll_ms", reload_poll_ms.origin);
    Ok(Some(TlsConfig {
        ca,
        cert,
        key,
        require_client_cert: require_client_cert.value,
        reload_poll_ms: reload_poll_ms.value,
    }))
}

fn or_default<T>(slot: Option<Set<T>>, default: T) -> Set<T> {
    slot.unwrap_or(Set {
        value: default,
        origin: Origin::Default,
    })
}

/// The configured address, parsed; or, when no layer set one, `127.0.0.1:<base + node_id>`
/// so that several nodes on one machine get distinct ports without any configuration.
fn address(
    field: &'static str,
    slot: Option<Set<String>>,
    node_id: u64,
    port_base: u16,
) -> Result<Set<SocketAddr>, ConfigError> {
    match slot {
        Some(Set { value, origin }) => match value.parse::<SocketAddr>() {
            Ok(addr) => Ok(Set {
                value: addr,
                origin,
            }),
            Err(_) => Err(ConfigError::InvalidValue {
                field,
                origin,
                message: format!(
                    "expected an IP address and port such as 127.0.0.1:7001 or [::1]:7001, \
                     got {value:?} (host names are not resolved)"
                ),
            }),
        },
        None => {
            let origin = Origin::Derived { from: "node_id" };
            let port = u64::from(port_base)
                .checked_add(node_id)
                .and_then(|port| u16::try_from(port).ok())
                .ok_or_else(|| ConfigError::InvalidValue {
                    field,
                    origin: origin.clone(),
                    message: format!(
                        "the default port is {port_base} + node_id, which exceeds 65535 for \
                         node_id {node_id}; set {field} explicitly"
                    ),
                })?;
            Ok(Set {
                value: SocketAddr::new(IpAddr::V4(BIND_IP_DEFAULT), port),
                origin,
            })
        }
    }
}

/// Reads the whole file, refusing one larger than [`CONFIG_FILE_BYTES_MAX`].
fn read_bounded(path: &Path) -> io::Result<String> {
    let file = std::fs::File::open(path)?;
    let mut text = String::new();
    file.take(CONFIG_FILE_BYTES_MAX as u64 + 1)
        .read_to_string(&mut text)?;
    if text.len() > CONFIG_FILE_BYTES_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "larger than {CONFIG_FILE_BYTES_MAX} bytes, far beyond any configuration; \
                 is this the right file?"
            ),
        ));
    }
    Ok(text)
}

fn syntax_error(path: &Path, text: &str, error: &toml::de::Error) -> ConfigError {
    let (line, column, source_line) = match error.span() {
        Some(span) => {
            let (line, column) = line_and_column(text, span.start);
            (Some(line), Some(column), Some(excerpt(text, line)))
        }
        None => (None, None, None),
    };
    ConfigError::FileSyntax {
        path: path.to_path_buf(),
        line,
        column,
        source_line,
        message: error.message().trim().to_owned(),
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Characters of a quoted source line beyond this are cut, to keep errors on one screen line.
const EXCERPT_CHARS_MAX: usize = 80;

/// Line `line` (1-based) of `text`, trimmed and shortened for an error message.
fn excerpt(text: &str, line: usize) -> String {
    let full = text
        .lines()
        .nth(line.saturating_sub(1))
        .unwrap_or("")
        .trim();
    if full.chars().count() <= EXCERPT_CHARS_MAX {
        full.to_owned()
    } else {
        let cut: String = full.chars().take(EXCERPT_CHARS_MAX).collect();
        format!("{cut}...")
    }
}
