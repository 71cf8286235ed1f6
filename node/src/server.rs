//! A running docket node: storage, Raft, the Raft listener, the HTTP API, the leader's
//! group-commit writer and ticker, and their orderly shutdown.
//!
//! [`start`] binds both listeners (port 0 works: tests use it) and returns a
//! [`RunningNode`] with the addresses actually bound; [`run`] is `start` plus waiting for
//! Ctrl-C or SIGTERM. The binary calls `run` and nothing else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use docket_config::NodeConfig;
use docket_core::{LedgerId, LedgerTime};
use docket_raft::network::{Identity, Network, TcpTransport, SNAPSHOT_CHUNK_BYTES};
use docket_raft::pacing::ApplyPacing;

use crate::tls::listener::{ApiListener, PeerInfo};
use crate::tls::transport::{TlsRaftAcceptor, TlsTransport};
use crate::tls::NodeTls;
use docket_raft::{NodeAddr, Raft};
use docket_service::{Faults, Limits, Service, Settings, Timing};
use openraft::{Config, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Deadline of one Raft write. Past it the caller gets `TIMEOUT`: the write may still
/// commit (resubmitting the same proposal is safe: ids are idempotent).
pub const WRITE_TIMEOUT_MS: u64 = 30_000;

/// How often the leader checks whether deferred proposals have expired and, if so, files a
/// `Tick` so they are rejected even when no other traffic arrives.
pub const TICK_INTERVAL_MS: u64 = 1000;

/// Deadline for connecting to a node being added: an unreachable node fails fast.
pub const PROBE_TIMEOUT_MS: u64 = 2_000;

/// Deadline of a membership change or cluster initialization.
pub const MEMBERSHIP_TIMEOUT_MS: u64 = 30_000;

/// Longest wait for one leadership confirmation of the execution agent before it is
/// tried again.
pub const LEADERSHIP_CONFIRM_TIMEOUT_MS: u64 = 5_000;
/// Wait before retrying a confirmation that failed while metrics still say "leader".
pub const LEADERSHIP_CONFIRM_RETRY_MS: u64 = 200;

/// The current wall-clock time as ledger time. Only the leader's stamp matters: the core
/// clamps ledger time to be non-decreasing, so a clock step backwards cannot reorder time.
pub fn now_ledger_time() -> LedgerTime {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    LedgerTime(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// Everything an API handler needs: the service, and what only the HTTP node has.
pub struct Node {
    pub service: Arc<Service>,
    pub config: NodeConfig,
    /// The client the node forwards with (and asks peers with).
    pub http: reqwest::Client,
    /// The execution agent, when `[execution] enabled`; its journal serves evidence.
    pub executor: Option<Arc<docket_execution::Executor>>,
    /// The node's certificates, when `[tls]` is configured.
    pub tls: Option<Arc<NodeTls>>,
    /// Change-feed streams open at once (`GET /v1/ledger/watch`), at most
    /// [`crate::api::WATCHES_MAX`].
    pub watches: Arc<tokio::sync::Semaphore>,
}

impl Node {
    /// The scheme of this cluster's API addresses: `https` with `[tls]`, else `http`.
    pub fn scheme(&self) -> &'static str {
        scheme(self.tls.is_some())
    }
}

fn scheme(tls: bool) -> &'static str {
    if tls {
        "https"
    } else {
        "http"
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.service.id)
            .field("addr", &self.service.addr)
            .finish()
    }
}

/// A started node.
#[derive(Debug)]
pub struct RunningNode {
    pub node: Arc<Node>,
    pub api_addr: SocketAddr,
    pub raft_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl RunningNode {
    /// Stops serving, shuts Raft down and waits for every task.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Err(e) = self.node.service.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Raft log entries per AppendEntries. openraft 0.9 counts entries, not bytes, and gives
/// each AppendEntries one heartbeat interval; a docket entry is a group commit of up to
/// `GROUP_COMMIT_PROPOSALS_MAX` proposals (hundreds of KB), so openraft's default of 300
/// made catch-up batches of tens of MB that never finished in time (a fresh node never
/// caught up on a 300,000-entry ledger). Eight keeps a batch to a few MB.
pub const APPEND_ENTRIES_MAX: u64 = 8;

fn raft_config(config: &NodeConfig) -> anyhow::Result<Config> {
    let r = &config.raft;
    let raft = Config {
        cluster_name: config.cluster_id.clone(),
        heartbeat_interval: r.heartbeat_interval_ms,
        election_timeout_min: r.election_timeout_min_ms,
        election_timeout_max: r.election_timeout_max_ms,
        // A snapshot of a large ledger is sent in chunks; each chunk (and the final install)
        // gets this long.
        install_snapshot_timeout: r.rpc_timeout_ms.max(2_000),
        snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(r.snapshot_logs_since_last),
        max_in_snapshot_log_to_keep: log_keep(config).openraft_keep(),
        max_payload_entries: APPEND_ENTRIES_MAX,
        ..Config::default()
    };
    raft.validate().context("raft configuration")
}

/// Which log the node keeps once a snapshot covers it (`docket_service::retention`).
fn log_keep(config: &NodeConfig) -> docket_service::retention::LogKeep {
    docket_service::retention::LogKeep {
        snapshotted_entries: config.raft.max_in_snapshot_log_to_keep,
        bytes: config.raft.log_keep_bytes(),
        interval: docket_service::retention::INTERVAL_DEFAULT,
    }
}

/// The service's settings from a node configuration.
fn settings(
    config: &NodeConfig,
    ledger_id: LedgerId,
    addr: NodeAddr,
    identity: Identity,
    cosigner: ed25519_dalek::SigningKey,
) -> Settings {
    let ms = Duration::from_millis;
    Settings {
        identity,
        ledger_id,
        addr,
        limits: Limits {
            clients_inflight_max: config.limits.clients_inflight_max,
            batch_proposals_max: config.limits.batch_proposals_max,
            read_page_entries_max: config.limits.read_page_entries_max,
        },
        timing: Timing {
            write_timeout: ms(WRITE_TIMEOUT_MS),
            read_index_deadline: ms(config.limits.forward_timeout_ms),
            tick_interval: ms(TICK_INTERVAL_MS),
            membership_timeout: ms(MEMBERSHIP_TIMEOUT_MS),
            catch_up_timeout: ms(config.limits.catch_up_timeout_ms),
            probe_timeout: ms(PROBE_TIMEOUT_MS),
            confirm_timeout: ms(LEADERSHIP_CONFIRM_TIMEOUT_MS),
            confirm_retry: ms(LEADERSHIP_CONFIRM_RETRY_MS),
        },
        clock: Arc::new(now_ledger_time),
        cosigner,
        log_keep: log_keep(config),
        faults: Faults::default(),
    }
}

/// The file in a node's data directory holding the ed25519 key it cosigns checkpoints with
/// (a `docket keygen` key file, mode 0600), created on first start.
pub const COSIGNER_KEY_FILE: &str = "cosigner.key";

/// Loads this node's checkpoint key, creating it on first start.
fn cosigner_key(data_dir: &std::path::Path) -> anyhow::Result<ed25519_dalek::SigningKey> {
    let path = data_dir.join(COSIGNER_KEY_FILE);
    if !path.exists() {
        let key = crate::cli::generate_signing_key()?;
        crate::cli::write_key_file(&path, &key, false)?;
        tracing::info!(path = %path.display(), "created this node's checkpoint key");
    }
    crate::cli::read_key_file(&path)
        .with_context(|| format!("the node's checkpoint key {}", path.display()))
}

/// Opens storage, starts Raft and binds both listeners.
pub async fn start(config: NodeConfig) -> anyhow::Result<RunningNode> {
    let ledger_id = LedgerId::new(config.cluster_id.clone()).context("cluster_id")?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let marker = config.data_dir.join(crate::api::DIVERGED_FILE);
    if marker.exists() {
        anyhow::bail!(
            "node {} quarantined itself: its ledger or state differs from a checkpoint a quorum \
             of the voters cosigned (the evidence is in {}). Repair it before it serves again: \
             wipe {} and add the node back (`docket member remove {}` then `docket member add`), \
             or `docket restore` a backup into a fresh directory; delete the marker only once \
             the data is known good",
            config.node_id,
            marker.display(),
            config.data_dir.display(),
            config.node_id
        );
    }
    let executor = crate::execution::executor(
        &config.execution,
        &config.data_dir,
        config.tls.as_ref().map(|tls| tls.ca.as_path()),
    )?
    .map(Arc::new);
    let options = docket_raft::StoreOptions {
        engine: config.storage.engine,
        node_id: Some(config.node_id),
        cache_capacity_bytes: config.storage.cache_bytes(),
        // Anchors of the state map are folded off the apply path (docket_raft::MapFold).
        map_fold: docket_raft::MapFold::Background,
        ..docket_raft::StoreOptions::default()
    };
    let (log_store, state_machine) = docket_raft::open_with(&config.data_dir, &options)
        .with_context(|| format!("opening storage in {}", config.data_dir.display()))?;
    let replica = state_machine.replica();
    let tls = match &config.tls {
        Some(tls_config) => Some(
            NodeTls::load(config.node_id, tls_config).context("loading the [tls] certificates")?,
        ),
        None => None,
    };

    let raft_listener = TcpListener::bind(&config.raft_addr)
        .await
        .with_context(|| format!("binding raft_addr {}", config.raft_addr))?;
    let api_listener = TcpListener::bind(&config.api_addr)
        .await
        .with_context(|| format!("binding api_addr {}", config.api_addr))?;
    let raft_addr = raft_listener.local_addr()?;
    let api_addr = api_listener.local_addr()?;

    let identity = Identity {
        cluster_id: config.cluster_id.clone(),
        node_id: config.node_id,
        genesis: replica.genesis_cell(),
        removed: Default::default(),
        leader_heard: Default::default(),
        pacing: ApplyPacing::new(
            config.raft.apply_backlog_max,
            config.raft.heartbeat_interval(),
        ),
        snapshots: Default::default(),
    };
    let rpc_timeout = Duration::from_millis(config.raft.rpc_timeout_ms);
    let raft_config = Arc::new(raft_config(&config)?);
    let raft = match &tls {
        Some(tls) => {
            let network = Network::new(TlsTransport::new(tls), identity.clone(), rpc_timeout);
            Raft::new(
                config.node_id,
                raft_config,
                network,
                log_store,
                state_machine,
            )
            .await
        }
        None => {
            let network = Network::new(TcpTransport, identity.clone(), rpc_timeout);
            Raft::new(
                config.node_id,
                raft_config,
                network,
                log_store,
                state_machine,
            )
            .await
        }
    }
    .context("starting raft")?;

    let mut http =
        reqwest::Client::builder().timeout(Duration::from_millis(config.limits.forward_timeout_ms));
    if let Some(tls) = &tls {
        http = http.use_preconfigured_tls(tls.http_client_config());
    }
    let http = http.build().context("building the forwarding client")?;
    let addr = NodeAddr {
        raft_addr: raft_addr.to_string(),
        api_addr: api_addr.to_string(),
    };
    let peers = Arc::new(crate::peers::HttpPeers {
        id: config.node_id,
        http: http.clone(),
        scheme: scheme(tls.is_some()),
    });
    let (shutdown, shutdown_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let (service, background) = Service::new(
        settings(
            &config,
            ledger_id,
            addr,
            identity.clone(),
            cosigner_key(&config.data_dir)?,
        ),
        raft.clone(),
        replica,
        peers,
        stopped(shutdown_rx.clone()),
    );
    let node = Arc::new(Node {
        service: service.clone(),
        config,
        http,
        executor,
        tls: tls.clone(),
        watches: Arc::new(tokio::sync::Semaphore::new(crate::api::WATCHES_MAX)),
    });

    let mut tasks = JoinSet::new();
    tasks.spawn({
        let (raft, stop) = (raft.clone(), stopped(shutdown_rx.clone()));
        let acceptor = tls.as_ref().map(TlsRaftAcceptor::new);
        async move {
            let served = match acceptor {
                Some(acceptor) => {
                    docket_raft::network::serve_with(raft_listener, acceptor, raft, identity, stop)
                        .await
                }
                None => docket_raft::network::serve(raft_listener, raft, identity, stop).await,
            };
            if let Err(e) = served {
                tracing::error!(error = %e, "raft listener stopped");
            }
        }
    });
    let api_listener = match &tls {
        Some(tls) => ApiListener::tls(api_listener, tls, stopped(shutdown_rx.clone()))
            .context("starting the api's tls listener")?,
        None => ApiListener::Plain(api_listener),
    };
    tasks.spawn({
        let (node, stop) = (node.clone(), stopped(shutdown_rx.clone()));
        async move {
            let app = crate::api::router(node).into_make_service_with_connect_info::<PeerInfo>();
            if let Err(e) = axum::serve(api_listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::error!(error = %e, "api listener stopped");
            }
        }
    });
    if let Some(tls) = tls.clone() {
        tasks.spawn(tls.watch(stopped(shutdown_rx.clone())));
    }
    tasks.spawn(background);
    tasks.spawn({
        let (raft, stop) = (raft.clone(), stopped(shutdown_rx.clone()));
        async move {
            tokio::select! {
                _ = stop => {}
                _ = docket_service::telemetry::watch_leader(raft) => {}
            }
        }
    });
    if let Some(handle) = crate::telemetry::handle() {
        tasks.spawn({
            let stop = stopped(shutdown_rx.clone());
            async move {
                tokio::select! {
                    _ = stop => {}
                    _ = crate::telemetry::upkeep(handle) => {}
                }
            }
        });
    }
    if let Some(executor) = node.executor.clone() {
        let host = docket_service::ServiceHost(service.clone());
        let (leadership, publisher) = service.leadership(|_, _| {});
        tasks.spawn(publisher);
        let shutdown = shutdown_rx.clone();
        tracing::info!(executor = %executor.executor_key(), "execution agent enabled");
        tasks.spawn(async move {
            if let Err(e) = executor.run(&host, leadership, shutdown).await {
                tracing::error!(error = %e, "execution agent stopped: its journal failed; no further effects from this node");
            }
        });
    }
    let recovery = node.config.data_dir.join(RECOVERY_REQUEST_FILE);
    if recovery.exists() {
        tasks.spawn(file_recovery_record(
            service.clone(),
            recovery,
            stopped(shutdown_rx.clone()),
        ));
    }
    tracing::info!(node_id = service.id, cluster = %service.cluster_id, %raft_addr, %api_addr,
        tls = node.tls.is_some(), "node started");
    Ok(RunningNode {
        node,
        api_addr,
        raft_addr,
        shutdown,
        tasks,
    })
}

/// The file `docket recover --key` leaves in the recovered node's data directory: the
/// operator-signed `CLUSTER.RECOVERED` request (JSON), filed on the node's first start and
/// removed once recorded.
pub const RECOVERY_REQUEST_FILE: &str = "recovery-request.json";

/// How often, and how many times, a recovered node tries to file its recovery record while
/// it is not yet leader (a one-node cluster elects itself within an election timeout).
const RECOVERY_RECORD_RETRY_MS: u64 = 500;
const RECOVERY_RECORD_ATTEMPTS_MAX: u32 = 240;

/// Files the recovery record in `path` (see [`RECOVERY_REQUEST_FILE`]) once this node
/// leads, then removes the file; a refused record is logged as an error and the file
/// renamed `*.refused` (the recovery itself stands: the record only states it).
async fn file_recovery_record(
    service: Arc<docket_service::Service>,
    path: std::path::PathBuf,
    stop: impl std::future::Future<Output = ()>,
) {
    use docket_service::error::ErrorCode;
    let signed: docket_core::SignedProposal = match std::fs::read_to_string(&path)
        .map_err(|e| e.to_string())
        .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
    {
        Ok(signed) => signed,
        Err(error) => {
            tracing::error!(path = %path.display(), %error, "cannot read the recovery request");
            return;
        }
    };
    let filing = async {
        for _ in 0..RECOVERY_RECORD_ATTEMPTS_MAX {
            match service.record_recovery(signed.clone()).await {
                Ok(record) => {
                    tracing::warn!(proposal_id = %record.id, index = %record.index,
                        "recorded CLUSTER.RECOVERED: this cluster was rebuilt from this node's data");
                    let _ = std::fs::remove_file(&path);
                    return;
                }
                Err(error) if error.code == ErrorCode::ReplayedRequest => {
                    let _ = std::fs::remove_file(&path);
                    return;
                }
                Err(error)
                    if matches!(
                        error.code,
                        ErrorCode::NotLeader
                            | ErrorCode::NoLeader
                            | ErrorCode::NotInitialized
                            | ErrorCode::Overloaded
                            | ErrorCode::Timeout
                            | ErrorCode::OutcomeUnknown
                    ) =>
                {
                    tokio::time::sleep(Duration::from_millis(RECOVERY_RECORD_RETRY_MS)).await;
                }
                Err(error) => {
                    tracing::error!(%error, path = %path.display(),
                        "the CLUSTER.RECOVERED record was refused; the recovery stands unrecorded");
                    let _ = std::fs::rename(&path, path.with_extension("json.refused"));
                    return;
                }
            }
        }
        tracing::error!(path = %path.display(),
            "the CLUSTER.RECOVERED record could not be filed (never led); kept for the next start");
    };
    tokio::select! {
        () = filing => {}
        () = stop => {}
    }
}

/// Starts a node and serves until Ctrl-C or SIGTERM.
/// The process's metrics recorder is installed here (one node per process), not by
/// [`start`].
pub async fn run(config: NodeConfig) -> anyhow::Result<()> {
    if crate::telemetry::install().is_none() {
        tracing::warn!("another metrics recorder is installed: GET /metrics will not answer");
    }
    let running = start(config).await?;
    let node = &running.node;
    println!(
        "docket node {} serving: api {}://{} raft {}{} (Ctrl-C to stop)",
        node.service.id,
        node.scheme(),
        running.api_addr,
        running.raft_addr,
        if node.tls.is_some() {
            " (mutual tls)"
        } else {
            ""
        }
    );
    let core_failed = async {
        closed(node.service.raft.metrics()).await;
        // A replica that quarantined itself stopped its core on purpose, to serve its
        // evidence (`DIVERGED`) until an operator repairs it: a restart would not repair
        // it, and exiting would hide the evidence.
        if node.service.diverged().is_some() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = wait_for_signal() => {
            tracing::info!("shutting down");
            running.shutdown().await;
            Ok(())
        }
        () = core_failed => {
            let id = node.service.id;
            tracing::error!(
                "the Raft core stopped (the error above says why): this node can no longer \
                 vote, replicate or apply; exiting so that it is restarted from its disk"
            );
            if tokio::time::timeout(CORE_STOPPED_SHUTDOWN, running.shutdown()).await.is_err() {
                tracing::warn!("the rest of the node did not stop in time");
            }
            anyhow::bail!(
                "the Raft core of node {} stopped; restart the node (its state on disk is \
                 kept; see the log for the cause)",
                id
            )
        }
    }
}

/// How long a node whose Raft core stopped gives its other tasks to stop before it exits.
const CORE_STOPPED_SHUTDOWN: Duration = Duration::from_secs(10);

/// Resolves once `updates` is closed: for a Raft metrics channel, once the Raft core has
/// stopped, which it does on its own only when it failed (openraft 0.9 ends it on a
/// storage error it treats as fatal, and a panic inside it ends it too) or when the node
/// quarantined itself. A failed one answered every API call `INTERNAL` ("raft stopped")
/// while looking alive; `run` exits instead, so a supervisor restarts it and it recovers
/// from its disk like any restart.
async fn closed<T>(mut updates: watch::Receiver<T>) {
    while updates.changed().await.is_ok() {}
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `closed` waits through any number of updates and resolves only once the sender is
    /// gone, as openraft's metrics sender goes with its Raft core.
    #[tokio::test]
    async fn closed_resolves_only_once_the_sender_is_gone() {
        let (updates, receiver) = watch::channel(0u64);
        let waiting = tokio::spawn(closed(receiver));
        for update in 1..=3 {
            updates.send(update).expect("a receiver");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            !waiting.is_finished(),
            "resolved while the sender was alive"
        );
        drop(updates);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("resolved once the sender was dropped")
            .expect("the task");
    }
}
