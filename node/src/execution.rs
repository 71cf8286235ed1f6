//! Start-up of the execution agent (`docket-execution`) from the `[execution]` section of
//! the node configuration. Its host ([`docket_service::ServiceHost`]) and its leadership
//! watch ([`docket_service::Service::leadership`]) come from the service, shared with the
//! simulator.
//!
//! Every node of a cluster may run an agent; only the one that leads acts, and it confirms
//! its leadership (a read-index round) before every effect. Outcomes come back as
//! proposals through the same front door and group-commit writer as client writes.

use std::path::PathBuf;

use anyhow::Context;
use docket_execution::{ExecutionConfig, Executor, Journal};

/// Parses and validates the `[execution]` table of a node configuration.
pub fn config(table: &toml::Table) -> anyhow::Result<ExecutionConfig> {
    let config: ExecutionConfig = table
        .clone()
        .try_into()
        .map_err(|e: toml::de::Error| anyhow::anyhow!("execution: {}", e.message().trim()))?;
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("{}: {}", e.field, e.message))?;
    Ok(config)
}

/// Builds the executor a configuration asks for; `None` when execution is disabled.
/// With `[tls]` (`ca` is its CA file), HTTPS effect targets whose certificates that CA
/// issued are trusted, and no others (no bundled web roots).
pub fn executor(
    table: &toml::Table,
    data_dir: &std::path::Path,
    ca: Option<&std::path::Path>,
) -> anyhow::Result<Option<Executor>> {
    let config = config(table)?;
    if !config.enabled {
        return Ok(None);
    }
    let key_path = config
        .key_file
        .clone()
        .context("execution.key_file is required when execution.enabled")?;
    let key = crate::cli::read_key_file(&key_path)
        .with_context(|| format!("execution.key_file {}", key_path.display()))?;
    let journal_dir: PathBuf = config
        .journal_dir
        .clone()
        .unwrap_or_else(|| data_dir.join("execution"));
    let journal = Journal::open(&journal_dir)
        .with_context(|| format!("opening the execution journal in {}", journal_dir.display()))?;
    let ca_pem = match ca {
        Some(ca) => Some(
            std::fs::read(ca).with_context(|| format!("reading the CA file {}", ca.display()))?,
        ),
        None => None,
    };
    let ca_pems: Vec<&[u8]> = ca_pem.iter().map(Vec::as_slice).collect();
    let executor = Executor::from_config_trusting(&config, key, journal, &ca_pems)
        .map_err(|e| anyhow::anyhow!("{}: {}", e.field, e.message))?;
    Ok(Some(executor))
}
