//! The rules a configuration must satisfy before a node starts. Each failure names the
//! field, where its value came from, and — where the rule is not self-evident — why.
//!
//! Fields are checked in declaration order and the first failure is returned, so the same
//! bad configuration always produces the same message.

use std::fmt::Display;
use std::net::SocketAddr;
use std::path::Path;

use crate::error::{ConfigError, Origin};
use crate::layers::Origins;
use crate::limits_config::{
    BATCH_PROPOSALS_MAX_CEILING, CATCH_UP_TIMEOUT_MS_CEILING, CLIENTS_INFLIGHT_MAX_CEILING,
    FORWARD_TIMEOUT_MS_CEILING, READ_PAGE_ENTRIES_MAX_CEILING, REQUEST_BODY_BYTES_MAX_CEILING,
};
use crate::node_config::{NodeConfig, CLUSTER_ID_CHARS_MAX, NODE_ID_MAX};
use crate::raft_config::{
    APPLY_BACKLOG_MAX_CEILING, ELECTION_TIMEOUT_HEARTBEATS_MIN, ELECTION_TIMEOUT_MS_CEILING,
    HEARTBEAT_INTERVAL_MS_CEILING, HEARTBEAT_INTERVAL_MS_FLOOR, LOG_KEEP_MB_CEILING,
    MAX_IN_SNAPSHOT_LOG_TO_KEEP_CEILING, RPC_TIMEOUT_MS_CEILING, SNAPSHOT_LOGS_SINCE_LAST_CEILING,
};
use crate::storage_config::{StorageConfig, CACHE_MB_CEILING, CACHE_MB_FLOOR};
use crate::tls_config::{RELOAD_POLL_MS_CEILING, RELOAD_POLL_MS_FLOOR};

pub(crate) fn node_config(config: &NodeConfig, origins: &Origins) -> Result<(), ConfigError> {
    node_id(config.node_id, &origins.of("node_id"))?;
    cluster_id(&config.cluster_id, &origins.of("cluster_id"))?;
    addresses(config.raft_addr, config.api_addr, &origins.of("api_addr"))?;
    data_dir(&config.data_dir, &origins.of("data_dir"))?;
    if let Some(path) = &config.genesis_constitution {
        genesis_constitution(path, &origins.of("genesis_constitution"))?;
    }
    raft(config, origins)?;
    limits(config, origins)?;
    storage(&config.storage, origins)?;
    if let Some(tls) = &config.tls {
        utf8_path("tls.ca", &tls.ca, &origins.of("tls.ca"))?;
        utf8_path("tls.cert", &tls.cert, &origins.of("tls.cert"))?;
        utf8_path("tls.key", &tls.key, &origins.of("tls.key"))?;
        let field = "tls.reload_poll_ms";
        range(
            field,
            &origins.of(field),
            tls.reload_poll_ms,
            RELOAD_POLL_MS_FLOOR,
            RELOAD_POLL_MS_CEILING,
            "",
        )?;
    }
    Ok(())
}

pub(crate) fn node_id(node_id: u64, origin: &Origin) -> Result<(), ConfigError> {
    range(
        "node_id",
        origin,
        node_id,
        1,
        NODE_ID_MAX,
        "0 is not a node id, and ids beyond i64::MAX cannot be written back as TOML",
    )
}

fn cluster_id(cluster_id: &str, origin: &Origin) -> Result<(), ConfigError> {
    let invalid = |message: String| invalid("cluster_id", origin, message);
    if cluster_id.is_empty() {
        return Err(invalid("must not be empty".into()));
    }
    let chars = cluster_id.chars().count();
    if chars > CLUSTER_ID_CHARS_MAX {
        return Err(invalid(format!(
            "must be at most {CLUSTER_ID_CHARS_MAX} characters, got {chars}: it is the ledger \
             id and travels in every Raft frame"
        )));
    }
    if let Some((position, bad)) = cluster_id
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(invalid(format!(
            "may contain only a-z, 0-9 and '-', found {bad:?} at position {} in {cluster_id:?}",
            position + 1
        )));
    }
    if cluster_id.starts_with('-') {
        return Err(invalid(format!(
            "must not start with '-', got {cluster_id:?}: it would read as a command-line flag"
        )));
    }
    Ok(())
}

/// The two listeners must not collide. Port 0 ("any free port", as tests bind) is exempt:
/// the OS hands out two different ports.
fn addresses(
    raft_addr: SocketAddr,
    api_addr: SocketAddr,
    api_origin: &Origin,
) -> Result<(), ConfigError> {
    let same_port = raft_addr.port() == api_addr.port() && api_addr.port() != 0;
    let overlapping_ip = raft_addr.ip() == api_addr.ip()
        || raft_addr.ip().is_unspecified()
        || api_addr.ip().is_unspecified();
    if same_port && overlapping_ip {
        return Err(invalid(
            "api_addr",
            api_origin,
            format!(
                "{api_addr} collides with raft_addr ({raft_addr}): the HTTP API and Raft RPC \
                 need a port each"
            ),
        ));
    }
    Ok(())
}

fn data_dir(path: &Path, origin: &Origin) -> Result<(), ConfigError> {
    if path.as_os_str().is_empty() {
        return Err(invalid("data_dir", origin, "must not be empty".into()));
    }
    utf8_path("data_dir", path, origin)
}

fn genesis_constitution(path: &Path, origin: &Origin) -> Result<(), ConfigError> {
    let field = "genesis_constitution";
    utf8_path(field, path, origin)?;
    match std::fs::metadata(path) {
        Ok(metadata) if metadata.is_file() => Ok(()),
        Ok(_) => Err(invalid(
            field,
            origin,
            format!("{} is not a regular file", path.display()),
        )),
        Err(error) => Err(invalid(
            field,
            origin,
            format!("cannot open {}: {error}", path.display()),
        )),
    }
}

/// Paths must be UTF-8 so that `docket config show` can print them and a printed
/// configuration can be read back.
fn utf8_path(field: &'static str, path: &Path, origin: &Origin) -> Result<(), ConfigError> {
    match path.to_str() {
        Some(_) => Ok(()),
        None => Err(invalid(
            field,
            origin,
            format!("{} is not valid UTF-8", path.display()),
        )),
    }
}

fn raft(config: &NodeConfig, origins: &Origins) -> Result<(), ConfigError> {
    let raft = &config.raft;

    let field = "raft.heartbeat_interval_ms";
    let heartbeat = raft.heartbeat_interval_ms;
    range(
        field,
        &origins.of(field),
        heartbeat,
        HEARTBEAT_INTERVAL_MS_FLOOR,
        HEARTBEAT_INTERVAL_MS_CEILING,
        "shorter heartbeats drown in timer jitter; longer ones leave a dead leader unnoticed",
    )?;

    let field = "raft.election_timeout_min_ms";
    let origin = origins.of(field);
    let election_min = raft.election_timeout_min_ms;
    let floor = ELECTION_TIMEOUT_HEARTBEATS_MIN.saturating_mul(heartbeat);
    if election_min <= floor {
        return Err(invalid(
            field,
            &origin,
            format!(
                "must be greater than {ELECTION_TIMEOUT_HEARTBEATS_MIN} x \
                 raft.heartbeat_interval_ms ({ELECTION_TIMEOUT_HEARTBEATS_MIN} x {heartbeat} = \
                 {floor}), got {election_min}: followers must see several heartbeats go \
                 missing before timing out, or one late heartbeat deposes a healthy leader"
            ),
        ));
    }
    range(
        field,
        &origin,
        election_min,
        1,
        ELECTION_TIMEOUT_MS_CEILING,
        "",
    )?;

    let field = "raft.election_timeout_max_ms";
    let origin = origins.of(field);
    let election_max = raft.election_timeout_max_ms;
    if election_max <= election_min {
        return Err(invalid(
            field,
            &origin,
            format!(
                "must be greater than raft.election_timeout_min_ms ({election_min}), got \
                 {election_max}: timeouts are drawn at random between the two, and without a \
                 spread candidates time out together and split the vote"
            ),
        ));
    }
    range(
        field,
        &origin,
        election_max,
        1,
        ELECTION_TIMEOUT_MS_CEILING,
        "",
    )?;

    let field = "raft.rpc_timeout_ms";
    let origin = origins.of(field);
    let rpc_timeout = raft.rpc_timeout_ms;
    if rpc_timeout < heartbeat {
        return Err(invalid(
            field,
            &origin,
            format!(
                "must be at least raft.heartbeat_interval_ms ({heartbeat}), got {rpc_timeout}: \
                 a shorter deadline fails heartbeats to a healthy follower that is merely busy"
            ),
        ));
    }
    range(field, &origin, rpc_timeout, 1, RPC_TIMEOUT_MS_CEILING, "")?;

    let field = "raft.snapshot_logs_since_last";
    range(
        field,
        &origins.of(field),
        raft.snapshot_logs_since_last,
        1,
        SNAPSHOT_LOGS_SINCE_LAST_CEILING,
        "",
    )?;

    // 0 is allowed: compaction then drops every entry a snapshot covers.
    let field = "raft.max_in_snapshot_log_to_keep";
    range(
        field,
        &origins.of(field),
        raft.max_in_snapshot_log_to_keep,
        0,
        MAX_IN_SNAPSHOT_LOG_TO_KEEP_CEILING,
        "",
    )?;

    // 0 is allowed: the log is then kept by `max_in_snapshot_log_to_keep` alone.
    let field = "raft.log_keep_mb";
    range(
        field,
        &origins.of(field),
        raft.log_keep_mb,
        0,
        LOG_KEEP_MB_CEILING,
        "",
    )?;

    let field = "raft.apply_backlog_max";
    range(
        field,
        &origins.of(field),
        raft.apply_backlog_max,
        1,
        APPLY_BACKLOG_MAX_CEILING,
        "",
    )
}

fn limits(config: &NodeConfig, origins: &Origins) -> Result<(), ConfigError> {
    let limits = &config.limits;
    let field = "limits.request_body_bytes_max";
    range(
        field,
        &origins.of(field),
        limits.request_body_bytes_max,
        1,
        REQUEST_BODY_BYTES_MAX_CEILING,
        "a body becomes one log entry that must reach every follower",
    )?;
    let field = "limits.batch_proposals_max";
    range(
        field,
        &origins.of(field),
        limits.batch_proposals_max,
        1,
        BATCH_PROPOSALS_MAX_CEILING,
        "a batch is adjudicated in one apply step",
    )?;
    let field = "limits.forward_timeout_ms";
    range(
        field,
        &origins.of(field),
        limits.forward_timeout_ms,
        1,
        FORWARD_TIMEOUT_MS_CEILING,
        "",
    )?;
    let field = "limits.catch_up_timeout_ms";
    range(
        field,
        &origins.of(field),
        limits.catch_up_timeout_ms,
        1,
        CATCH_UP_TIMEOUT_MS_CEILING,
        "",
    )?;
    let field = "limits.read_page_entries_max";
    range(
        field,
        &origins.of(field),
        limits.read_page_entries_max,
        1,
        READ_PAGE_ENTRIES_MAX_CEILING,
        "",
    )?;
    let field = "limits.clients_inflight_max";
    range(
        field,
        &origins.of(field),
        limits.clients_inflight_max,
        1,
        CLIENTS_INFLIGHT_MAX_CEILING,
        "",
    )
}

fn storage(storage: &StorageConfig, origins: &Origins) -> Result<(), ConfigError> {
    let field = "storage.cache_mb";
    range(
        field,
        &origins.of(field),
        storage.cache_mb,
        CACHE_MB_FLOOR,
        CACHE_MB_CEILING,
        "the store's cache in MiB",
    )
}

/// `floor <= value <= ceiling`, else an error that states the bound crossed and, if given,
/// why the bounds are what they are.
fn range<T: PartialOrd + Display>(
    field: &'static str,
    origin: &Origin,
    value: T,
    floor: T,
    ceiling: T,
    why: &str,
) -> Result<(), ConfigError> {
    let bound = if value < floor {
        format!("must be at least {floor}, got {value}")
    } else if value > ceiling {
        format!("must be at most {ceiling}, got {value}")
    } else {
        return Ok(());
    };
    let message = if why.is_empty() {
        bound
    } else {
        format!("{bound}: {why}")
    };
    Err(invalid(field, origin, message))
}

fn invalid(field: &'static str, origin: &Origin, message: String) -> ConfigError {
    ConfigError::InvalidValue {
        field,
        origin: origin.clone(),
        message,
    }
}
