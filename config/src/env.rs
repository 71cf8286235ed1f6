//! `DOCKET_*` environment variables: names, the reserved allowlist, typo suggestions.
//!
//! Every field has one variable: `DOCKET_` followed by its dotted path in upper case with
//! `.` replaced by `_` (`raft.heartbeat_interval_ms` is `DOCKET_RAFT_HEARTBEAT_INTERVAL_MS`).
//! Any other `DOCKET_*` variable is refused unless it is in [`RESERVED_ENV_VARS`], because a
//! misspelt variable would otherwise be ignored without a word.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::{ConfigError, Origin};
use crate::layers::{Layers, Set};

/// Prefix of every variable this crate reads or refuses.
pub const ENV_PREFIX: &str = "DOCKET_";

/// Every configuration variable, in the order of the fields in
/// [`NodeConfig`](crate::NodeConfig).
pub const ENV_VARS: &[&str] = &[
    "DOCKET_NODE_ID",
    "DOCKET_CLUSTER_ID",
    "DOCKET_RAFT_ADDR",
    "DOCKET_API_ADDR",
    "DOCKET_DATA_DIR",
    "DOCKET_GENESIS_CONSTITUTION",
    "DOCKET_RAFT_HEARTBEAT_INTERVAL_MS",
    "DOCKET_RAFT_ELECTION_TIMEOUT_MIN_MS",
    "DOCKET_RAFT_ELECTION_TIMEOUT_MAX_MS",
    "DOCKET_RAFT_RPC_TIMEOUT_MS",
    "DOCKET_RAFT_SNAPSHOT_LOGS_SINCE_LAST",
    "DOCKET_RAFT_MAX_IN_SNAPSHOT_LOG_TO_KEEP",
    "DOCKET_RAFT_LOG_KEEP_MB",
    "DOCKET_RAFT_APPLY_BACKLOG_MAX",
    "DOCKET_LIMITS_REQUEST_BODY_BYTES_MAX",
    "DOCKET_LIMITS_BATCH_PROPOSALS_MAX",
    "DOCKET_LIMITS_FORWARD_TIMEOUT_MS",
    "DOCKET_LIMITS_CATCH_UP_TIMEOUT_MS",
    "DOCKET_LIMITS_READ_PAGE_ENTRIES_MAX",
    "DOCKET_LIMITS_CLIENTS_INFLIGHT_MAX",
    "DOCKET_STORAGE_CACHE_MB",
    "DOCKET_STORAGE_ENGINE",
    "DOCKET_LOG_FORMAT",
    "DOCKET_TLS_CA",
    "DOCKET_TLS_CERT",
    "DOCKET_TLS_KEY",
    "DOCKET_TLS_REQUIRE_CLIENT_CERT",
    "DOCKET_TLS_RELOAD_POLL_MS",
];

/// `DOCKET_*` variables that are not configuration fields but belong to the `docket`
/// binary; [`NodeConfig::load`](crate::NodeConfig::load) ignores them.
///
/// * `DOCKET_LOG` — log filter (tracing `EnvFilter` syntax).
/// * `DOCKET_CONFIG` — path of the configuration file, when `--config` is not given.
/// * `DOCKET_DATA_ROOT` — parent directory for the data of nodes that `docket demo` and
///   `docket bench` start themselves.
///
/// Adding a variable for the CLI means adding it here; otherwise `load` refuses it as a
/// probable typo.
pub const RESERVED_ENV_VARS: &[&str] = &[
    "DOCKET_LOG",
    "DOCKET_CONFIG",
    "DOCKET_DATA_ROOT",
    // The CLI's `--node` fallback: set in shells that also run `docket serve`.
    "DOCKET_NODE",
    // The CLI's client-side TLS (`--ca`, `--client-cert`, `--client-key`).
    "DOCKET_CA",
    "DOCKET_CLIENT_CERT",
    "DOCKET_CLIENT_KEY",
    // The CLI's signers: cluster operations (`--key`) and signed reads (`--read-key`).
    "DOCKET_KEY",
    "DOCKET_READ_KEY",
    // Where the CLI pins voters' keys and remembers the last verified checkpoint.
    "DOCKET_CONFIG_DIR",
];

/// Typos within this many single-character edits of a known variable get a suggestion.
const SUGGESTION_EDITS_MAX: usize = 3;

impl Layers {
    /// Applies every `DOCKET_*` variable in `vars` on top of the layers so far. Variables
    /// are handled in name order, so the error reported first does not depend on the order
    /// the environment lists them in; when a name repeats, the last value wins.
    pub(crate) fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        let docket_vars: BTreeMap<String, String> = vars
            .into_iter()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX))
            .collect();
        for (var, raw) in docket_vars {
            if RESERVED_ENV_VARS.contains(&var.as_str()) {
                continue;
            }
            let origin = Origin::Env { var: var.clone() };
            match var.as_str() {
                "DOCKET_NODE_ID" => self.node_id = Some(number("node_id", &raw, origin)?),
                "DOCKET_LOG_FORMAT" => self.log_format = Some(text("log.format", raw, origin)?),
                "DOCKET_CLUSTER_ID" => self.cluster_id = Some(text("cluster_id", raw, origin)?),
                "DOCKET_RAFT_ADDR" => self.raft_addr = Some(text("raft_addr", raw, origin)?),
                "DOCKET_API_ADDR" => self.api_addr = Some(text("api_addr", raw, origin)?),
                "DOCKET_DATA_DIR" => self.data_dir = Some(path("data_dir", raw, origin)?),
                "DOCKET_GENESIS_CONSTITUTION" => {
                    self.genesis_constitution = Some(path("genesis_constitution", raw, origin)?)
                }
                "DOCKET_RAFT_HEARTBEAT_INTERVAL_MS" => {
                    self.heartbeat_interval_ms =
                        Some(number("raft.heartbeat_interval_ms", &raw, origin)?)
                }
                "DOCKET_RAFT_ELECTION_TIMEOUT_MIN_MS" => {
                    self.election_timeout_min_ms =
                        Some(number("raft.election_timeout_min_ms", &raw, origin)?)
                }
                "DOCKET_RAFT_ELECTION_TIMEOUT_MAX_MS" => {
                    self.election_timeout_max_ms =
                        Some(number("raft.election_timeout_max_ms", &raw, origin)?)
                }
                "DOCKET_RAFT_RPC_TIMEOUT_MS" => {
                    self.rpc_timeout_ms = Some(number("raft.rpc_timeout_ms", &raw, origin)?)
                }
                "DOCKET_RAFT_SNAPSHOT_LOGS_SINCE_LAST" => {
                    self.snapshot_logs_since_last =
                        Some(number("raft.snapshot_logs_since_last", &raw, origin)?)
                }
                "DOCKET_RAFT_MAX_IN_SNAPSHOT_LOG_TO_KEEP" => {
                    self.max_in_snapshot_log_to_keep =
                        Some(number("raft.max_in_snapshot_log_to_keep", &raw, origin)?)
                }
                "DOCKET_RAFT_LOG_KEEP_MB" => {
                    self.log_keep_mb = Some(number("raft.log_keep_mb", &raw, origin)?)
                }
                "DOCKET_RAFT_APPLY_BACKLOG_MAX" => {
                    self.apply_backlog_max = Some(number("raft.apply_backlog_max", &raw, origin)?)
                }
                "DOCKET_LIMITS_REQUEST_BODY_BYTES_MAX" => {
                    self.request_body_bytes_max =
                        Some(number("limits.request_body_bytes_max", &raw, origin)?)
                }
                "DOCKET_LIMITS_BATCH_PROPOSALS_MAX" => {
                    self.batch_proposals_max =
                        Some(number("limits.batch_proposals_max", &raw, origin)?)
                }
                "DOCKET_LIMITS_FORWARD_TIMEOUT_MS" => {
                    self.forward_timeout_ms =
                        Some(number("limits.forward_timeout_ms", &raw, origin)?)
                }
                "DOCKET_LIMITS_CATCH_UP_TIMEOUT_MS" => {
                    self.catch_up_timeout_ms =
                        Some(number("limits.catch_up_timeout_ms", &raw, origin)?)
                }
                "DOCKET_LIMITS_READ_PAGE_ENTRIES_MAX" => {
                    self.read_page_entries_max =
                        Some(number("limits.read_page_entries_max", &raw, origin)?)
                }
                "DOCKET_STORAGE_ENGINE" => {
                    self.storage_engine = Some(text("storage.engine", raw, origin)?)
                }
                "DOCKET_STORAGE_CACHE_MB" => {
                    self.storage_cache_mb = Some(number("storage.cache_mb", &raw, origin)?)
                }
                "DOCKET_LIMITS_CLIENTS_INFLIGHT_MAX" => {
                    self.clients_inflight_max =
                        Some(number("limits.clients_inflight_max", &raw, origin)?)
                }
                "DOCKET_TLS_CA" => self.tls_ca = Some(path("tls.ca", raw, origin)?),
                "DOCKET_TLS_CERT" => self.tls_cert = Some(path("tls.cert", raw, origin)?),
                "DOCKET_TLS_KEY" => self.tls_key = Some(path("tls.key", raw, origin)?),
                "DOCKET_TLS_REQUIRE_CLIENT_CERT" => {
                    self.tls_require_client_cert =
                        Some(boolean("tls.require_client_cert", &raw, origin)?)
                }
                "DOCKET_TLS_RELOAD_POLL_MS" => {
                    self.tls_reload_poll_ms = Some(number("tls.reload_poll_ms", &raw, origin)?)
                }
                _ => {
                    let suggestion = suggest(&var);
                    return Err(ConfigError::UnknownEnvVar { var, suggestion });
                }
            }
        }
        Ok(())
    }
}

/// `true` or `false`, nothing else (no `1`, `yes`: a typo must not flip a security switch).
fn boolean(field: &'static str, raw: &str, origin: Origin) -> Result<Set<bool>, ConfigError> {
    match raw {
        "true" => Ok(Set {
            value: true,
            origin,
        }),
        "false" => Ok(Set {
            value: false,
            origin,
        }),
        _ => Err(ConfigError::InvalidValue {
            field,
            origin,
            message: format!("expected true or false, got {raw:?}"),
        }),
    }
}

/// An unsigned integer, written the plain way: digits only, no sign, no fraction.
fn number<T: FromStr>(
    field: &'static str,
    raw: &str,
    origin: Origin,
) -> Result<Set<T>, ConfigError> {
    let digits_only = !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit());
    match raw.parse::<T>() {
        Ok(value) if digits_only => Ok(Set { value, origin }),
        _ => Err(ConfigError::InvalidValue {
            field,
            origin,
            message: if digits_only {
                format!("{raw} is too large")
            } else {
                format!("expected a whole non-negative number, got {raw:?}")
            },
        }),
    }
}

fn text(field: &'static str, raw: String, origin: Origin) -> Result<Set<String>, ConfigError> {
    if raw.is_empty() {
        return Err(empty(field, origin));
    }
    Ok(Set { value: raw, origin })
}

fn path(field: &'static str, raw: String, origin: Origin) -> Result<Set<PathBuf>, ConfigError> {
    if raw.is_empty() {
        return Err(empty(field, origin));
    }
    Ok(Set {
        value: PathBuf::from(raw),
        origin,
    })
}

/// An empty variable is refused rather than read as "unset": `DOCKET_X=` is more often a
/// script bug than a wish for the default.
fn empty(field: &'static str, origin: Origin) -> ConfigError {
    ConfigError::InvalidValue {
        field,
        origin,
        message: "is set but empty; unset the variable to use the file or the default".into(),
    }
}

/// The known variable nearest to `var`, if it is within [`SUGGESTION_EDITS_MAX`] edits.
fn suggest(var: &str) -> Option<&'static str> {
    ENV_VARS
        .iter()
        .chain(RESERVED_ENV_VARS)
        .map(|known| (edit_distance(var, known), *known))
        .filter(|(distance, _)| *distance <= SUGGESTION_EDITS_MAX)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, known)| known)
}

/// Levenshtein distance over bytes (variable names are ASCII in practice).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, &ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("abc", "abd"), 1);
        assert_eq!(edit_distance("abc", "ab"), 1);
        assert_eq!(edit_distance("ab", "abc"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggestions_point_at_the_likely_variable() {
        assert_eq!(suggest("DOCKET_NODEID"), Some("DOCKET_NODE_ID"));
        assert_eq!(
            suggest("DOCKET_RAFT_HEARTBEAT_INTERVAL"),
            Some("DOCKET_RAFT_HEARTBEAT_INTERVAL_MS"),
            "forgetting the unit is a typo too"
        );
        assert_eq!(suggest("DOCKET_LOGS"), Some("DOCKET_LOG"));
        assert_eq!(
            suggest("DOCKET_RAFT_HEARTBAET_INTERVAL_MS"),
            Some("DOCKET_RAFT_HEARTBEAT_INTERVAL_MS")
        );
        assert_eq!(suggest("DOCKET_SOMETHING_ELSE"), None);
    }

    #[test]
    fn every_variable_is_the_field_path_in_upper_case() {
        for var in ENV_VARS {
            assert!(var.starts_with(ENV_PREFIX), "{var}");
            assert!(
                var.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
                "{var} must be upper-case letters and underscores"
            );
        }
        for var in RESERVED_ENV_VARS {
            assert!(
                !ENV_VARS.contains(var),
                "{var} is both reserved and a field"
            );
        }
    }
}
