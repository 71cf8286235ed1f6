//! `docket serve`: the node's flags, layered over its configuration file and environment.

use std::path::PathBuf;

use clap::Args;
use docket_config::{NodeConfig, Overrides};

/// The flags of `docket serve`; each overrides the configuration file and `DOCKET_*`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Node configuration file (TOML).
    #[arg(long, env = "DOCKET_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// This node's id (at least 1).
    #[arg(long)]
    node_id: Option<u64>,
    /// Cluster id, which is also the ledger id.
    #[arg(long)]
    cluster_id: Option<String>,
    /// Raft listen address, host:port.
    #[arg(long)]
    raft_addr: Option<String>,
    /// HTTP API listen address, host:port.
    #[arg(long)]
    api_addr: Option<String>,
    /// Data directory (sled database).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Genesis constitution used by `cluster init` when it sends none.
    #[arg(long, value_name = "FILE")]
    genesis_constitution: Option<PathBuf>,
    /// Log line format: `text` (each line starts `node_id=N`) or `json` (one object per
    /// line, with `node_id`). Also `[log] format` in the file or `DOCKET_LOG_FORMAT`.
    #[arg(long, value_name = "text|json")]
    log_format: Option<String>,
    /// Print the effective configuration and exit.
    #[arg(long)]
    print_config: bool,
    /// Serve plain HTTP and plain Raft on a non-loopback address. Anyone on the network
    /// can then read and forge cluster traffic, call the internal routes and pose as a
    /// peer. Without `[tls]`, `serve` refuses such an address unless this is given.
    #[arg(long)]
    insecure_plaintext_non_loopback: bool,
}

/// The flag that lets a node without TLS listen beyond loopback.
pub const INSECURE_FLAG: &str = "--insecure-plaintext-non-loopback";

/// Runs `docket serve`: the node until Ctrl-C or SIGTERM, or with `--print-config` only
/// prints the effective configuration. Logging starts once the configuration is loaded
/// (its format and the node id come from it).
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let insecure = args.insecure_plaintext_non_loopback;
    let (config, print_only) = load_config(args)?;
    if print_only {
        print!("{}", config.to_toml_string()?);
        return Ok(());
    }
    crate::telemetry::init_node_logging("info", config.log.format, config.node_id);
    check_plaintext(&config, insecure)?;
    crate::server::run(config).await
}

/// A node without `[tls]` listens on loopback only, unless the operator insists.
pub fn check_plaintext(config: &NodeConfig, insecure: bool) -> anyhow::Result<()> {
    if config.tls.is_some() {
        return Ok(());
    }
    let exposed: Vec<String> = [
        ("api_addr", config.api_addr),
        ("raft_addr", config.raft_addr),
    ]
    .into_iter()
    .filter(|(_, addr)| !addr.ip().is_loopback())
    .map(|(field, addr)| format!("{field} {addr}"))
    .collect();
    if exposed.is_empty() {
        return Ok(());
    }
    if insecure {
        tracing::warn!(addresses = %exposed.join(", "),
            "serving PLAIN TEXT beyond loopback ({INSECURE_FLAG}): anyone on the network can read and forge cluster traffic");
        return Ok(());
    }
    anyhow::bail!(
        "refusing to serve without TLS on a non-loopback address ({}): anyone who can reach \
         it could read and forge cluster traffic. Configure [tls] (create certificates with \
         `docket tls init --dir tls --nodes 1,2,3 --hosts <addresses>`, then set tls.ca, \
         tls.cert and tls.key), bind 127.0.0.1, or, on a network you trust completely, pass \
         {INSECURE_FLAG}",
        exposed.join(", ")
    )
}

fn load_config(args: ServeArgs) -> anyhow::Result<(NodeConfig, bool)> {
    let overrides = Overrides {
        node_id: args.node_id,
        cluster_id: args.cluster_id,
        raft_addr: args.raft_addr,
        api_addr: args.api_addr,
        data_dir: args.data_dir,
        genesis_constitution: args.genesis_constitution,
        log_format: args.log_format,
    };
    // Non-Unicode variables cannot be docket's; skip them rather than panic.
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    let config = NodeConfig::load(args.config.as_deref(), env, &overrides)?;
    Ok((config, args.print_config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(api: &str, raft: &str, tls: bool) -> NodeConfig {
        NodeConfig {
            api_addr: api.parse().expect("addr"),
            raft_addr: raft.parse().expect("addr"),
            tls: tls.then(|| docket_config::TlsConfig {
                ca: "ca.pem".into(),
                cert: "node-1.pem".into(),
                key: "node-1.key".into(),
                require_client_cert: false,
                reload_poll_ms: docket_config::RELOAD_POLL_MS_DEFAULT,
            }),
            ..NodeConfig::default()
        }
    }

    #[test]
    fn plain_text_is_for_loopback_unless_the_operator_insists() {
        for (api, raft) in [
            ("127.0.0.1:8001", "127.0.0.1:7001"),
            ("[::1]:8001", "[::1]:7001"),
        ] {
            check_plaintext(&config(api, raft, false), false).expect("loopback is fine");
        }
        for (api, raft, named) in [
            ("0.0.0.0:8001", "127.0.0.1:7001", "api_addr 0.0.0.0:8001"),
            ("127.0.0.1:8001", "10.0.0.2:7001", "raft_addr 10.0.0.2:7001"),
            ("[::]:8001", "127.0.0.1:7001", "api_addr [::]:8001"),
        ] {
            let error = check_plaintext(&config(api, raft, false), false)
                .expect_err("plain text beyond loopback")
                .to_string();
            assert!(error.contains(named), "{error}");
            assert!(error.contains(INSECURE_FLAG), "{error}");
            assert!(error.contains("docket tls init"), "{error}");
            check_plaintext(&config(api, raft, false), true).expect("the operator insisted");
            check_plaintext(&config(api, raft, true), false).expect("tls is configured");
        }
    }
}
