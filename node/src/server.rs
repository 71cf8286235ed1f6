//! A running docket node: storage, Raft, the Raft listener, the HTTP API, the leader's
//! group-commit writer and ticker, and their orderly shutdown.
//!
//! [`start`] binds both listeners (port 0 works: tests use it) and returns a
//! [`RunningNode`] with the addresses actually bound; [`run`] is `start` plus waiting for
//! Ctrl-C or SIGTERM. The binary calls `run` and nothing else.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use docket_config::NodeConfig;
use docket_core::{LedgerId, LedgerTime, SignedProposal};
use docket_raft::network::{Identity, Network, TcpTransport, SNAPSHOT_CHUNK_BYTES};
use docket_raft::{Command, CommandResponse, NodeAddr, NodeId, ProposalOutcome, Raft, Replica};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{Config, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinSet;

use crate::error::{ApiError, ErrorCode};

/// Submissions queued for the leader's writer. Each holds up to `batch_proposals_max`
/// proposals; when the queue is full, callers get `OVERLOADED` instead of waiting.
pub const SUBMIT_QUEUE_MAX: usize = 4096;

/// Raft writes the group-commit writer keeps in flight at once. openraft 0.9 appends (and
/// fsyncs) one client write at a time, so every extra write in flight splits the queue
/// into smaller groups and costs another fsync; two lets the next group's append overlap
/// the previous group's replication, and each write carries everything queued behind it.
pub const WRITES_INFLIGHT_MAX: usize = 2;

/// Proposals per Raft log entry built by group commit (separate from the API's batch limit,
/// which bounds one request).
pub const GROUP_COMMIT_PROPOSALS_MAX: usize = 2048;

/// Deadline of one Raft write. Past it the caller gets `TIMEOUT`: the write may still
/// commit (resubmitting the same proposal is safe: ids are idempotent).
pub const WRITE_TIMEOUT_MS: u64 = 30_000;

/// How often the leader checks whether deferred proposals have expired and, if so, files a
/// `Tick` so they are rejected even when no other traffic arrives.
pub const TICK_INTERVAL_MS: u64 = 1000;

/// The current wall-clock time as ledger time. Only the leader's stamp matters: the core
/// clamps ledger time to be non-decreasing, so a clock step backwards cannot reorder time.
pub fn now_ledger_time() -> LedgerTime {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    LedgerTime(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// One queued submission and where its outcomes go.
struct Pending {
    proposals: Vec<SignedProposal>,
    reply: oneshot::Sender<Result<Vec<ProposalOutcome>, ApiError>>,
}

/// Everything an API handler needs.
pub struct Node {
    pub id: NodeId,
    pub cluster_id: String,
    pub ledger_id: LedgerId,
    pub addr: NodeAddr,
    pub raft: Raft,
    pub replica: Replica,
    pub config: NodeConfig,
    pub http: reqwest::Client,
    /// Linearizable reads share leadership rounds here.
    pub reads: crate::read_index::ReadIndex,
    /// The leader's read indexes for followers' reads, shared by concurrent requests.
    pub leader_reads: crate::read_index::LeaderReadIndex,
    /// The execution agent, when `[execution] enabled`; its journal serves evidence.
    pub executor: Option<Arc<docket_execution::Executor>>,
    submit_tx: mpsc::Sender<Pending>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .field("addr", &self.addr)
            .finish()
    }
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("proposals", &self.proposals.len())
            .finish()
    }
}

impl Node {
    /// Submits proposals through the leader's group-commit writer and waits for their
    /// outcomes. On a follower this fails with `NOT_LEADER` (and the leader's API address
    /// when known) so the caller can forward.
    pub async fn submit(
        &self,
        proposals: Vec<SignedProposal>,
    ) -> Result<Vec<ProposalOutcome>, ApiError> {
        let (reply, rx) = oneshot::channel();
        self.submit_tx
            .try_send(Pending { proposals, reply })
            .map_err(|_| {
                ApiError::new(
                    ErrorCode::Overloaded,
                    format!("{SUBMIT_QUEUE_MAX} submissions are already queued; retry shortly"),
                )
            })?;
        rx.await.map_err(|_| {
            ApiError::new(
                ErrorCode::Internal,
                "the writer stopped (node shutting down)",
            )
        })?
    }

    /// The API address of the current leader, if one is known.
    pub fn leader_api_addr(&self) -> Option<String> {
        let metrics = self.raft.metrics().borrow().clone();
        let leader = metrics.current_leader?;
        metrics
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.api_addr.clone())
    }

    pub fn is_leader(&self) -> bool {
        let metrics = self.raft.metrics().borrow().clone();
        metrics.current_leader == Some(self.id)
    }

    /// Maps a Raft write error to an API error, with the leader's address for forwarding.
    pub fn write_error(
        &self,
        error: RaftError<NodeId, ClientWriteError<NodeId, NodeAddr>>,
    ) -> ApiError {
        match error {
            RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
                let leader = forward.leader_node.map(|n| n.api_addr);
                let code = if leader.is_some() {
                    ErrorCode::NotLeader
                } else {
                    ErrorCode::NoLeader
                };
                ApiError::new(code, "this node is not the leader").with_leader(leader)
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                ApiError::new(ErrorCode::UnsafeMembershipChange, e.to_string())
            }
            RaftError::Fatal(fatal) => {
                ApiError::new(ErrorCode::Internal, format!("raft stopped: {fatal}"))
            }
        }
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
        if let Err(e) = self.node.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        while self.tasks.join_next().await.is_some() {}
    }
}

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
        max_in_snapshot_log_to_keep: r.max_in_snapshot_log_to_keep,
        ..Config::default()
    };
    raft.validate().context("raft configuration")
}

/// Opens storage, starts Raft and binds both listeners.
pub async fn start(config: NodeConfig) -> anyhow::Result<RunningNode> {
    let ledger_id = LedgerId::new(config.cluster_id.clone()).context("cluster_id")?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let executor = crate::execution::executor(&config.execution, &config.data_dir)?.map(Arc::new);
    let (log_store, state_machine) = docket_raft::open(&config.data_dir)
        .with_context(|| format!("opening storage in {}", config.data_dir.display()))?;
    let replica = state_machine.replica();

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
    };
    let network = Network::new(
        TcpTransport,
        identity.clone(),
        Duration::from_millis(config.raft.rpc_timeout_ms),
    );
    let raft = Raft::new(
        config.node_id,
        Arc::new(raft_config(&config)?),
        network,
        log_store,
        state_machine,
    )
    .await
    .context("starting raft")?;

    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(config.limits.forward_timeout_ms))
        .build()
        .context("building the forwarding client")?;
    let (submit_tx, submit_rx) = mpsc::channel(SUBMIT_QUEUE_MAX);
    let node = Arc::new(Node {
        id: config.node_id,
        cluster_id: config.cluster_id.clone(),
        ledger_id,
        addr: NodeAddr {
            raft_addr: raft_addr.to_string(),
            api_addr: api_addr.to_string(),
        },
        raft: raft.clone(),
        leader_reads: crate::read_index::LeaderReadIndex::for_raft(raft.clone()),
        reads: crate::read_index::ReadIndex::for_node(
            raft.clone(),
            config.node_id,
            http.clone(),
            Duration::from_millis(config.limits.forward_timeout_ms),
        ),
        replica,
        config,
        http,
        executor,
        submit_tx,
    });

    let (shutdown, shutdown_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let mut tasks = JoinSet::new();
    tasks.spawn({
        let (raft, stop) = (raft.clone(), stopped(shutdown_rx.clone()));
        async move {
            if let Err(e) = docket_raft::network::serve(raft_listener, raft, identity, stop).await {
                tracing::error!(error = %e, "raft listener stopped");
            }
        }
    });
    tasks.spawn({
        let (node, stop) = (node.clone(), stopped(shutdown_rx.clone()));
        async move {
            let app = crate::api::router(node);
            if let Err(e) = axum::serve(api_listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::error!(error = %e, "api listener stopped");
            }
        }
    });
    tasks.spawn(writer(
        node.clone(),
        submit_rx,
        stopped(shutdown_rx.clone()),
    ));
    tasks.spawn(ticker(node.clone(), stopped(shutdown_rx.clone())));
    if let Some(executor) = node.executor.clone() {
        let host = crate::execution::NodeHost(node.clone());
        let leadership = crate::execution::leadership(&node);
        let shutdown = shutdown_rx.clone();
        tracing::info!(executor = %executor.executor_key(), "execution agent enabled");
        tasks.spawn(async move {
            if let Err(e) = executor.run(&host, leadership, shutdown).await {
                tracing::error!(error = %e, "execution agent stopped: its journal failed; no further effects from this node");
            }
        });
    }
    tracing::info!(node_id = node.id, cluster = %node.cluster_id, %raft_addr, %api_addr, "node started");
    Ok(RunningNode {
        node,
        api_addr,
        raft_addr,
        shutdown,
        tasks,
    })
}

/// Starts a node and serves until Ctrl-C or SIGTERM.
pub async fn run(config: NodeConfig) -> anyhow::Result<()> {
    let running = start(config).await?;
    println!(
        "docket node {} serving: api http://{} raft {} (Ctrl-C to stop)",
        running.node.id, running.api_addr, running.raft_addr
    );
    wait_for_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
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

/// Group commit: takes the first queued submission, then everything else already queued
/// (up to [`GROUP_COMMIT_PROPOSALS_MAX`] proposals), and writes them as one Raft entry,
/// stamped with the leader's clock. Up to [`WRITES_INFLIGHT_MAX`] writes overlap; at low
/// load each submission is written alone, with no added wait.
async fn writer(
    node: Arc<Node>,
    mut rx: mpsc::Receiver<Pending>,
    stop: impl std::future::Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(WRITES_INFLIGHT_MAX));
    tokio::pin!(stop);
    loop {
        let first = tokio::select! {
            _ = &mut stop => return,
            next = rx.recv() => match next { Some(p) => p, None => return },
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let mut group = vec![first];
        let mut count = group[0].proposals.len();
        while count < GROUP_COMMIT_PROPOSALS_MAX {
            match rx.try_recv() {
                Ok(more) => {
                    count += more.proposals.len();
                    group.push(more);
                }
                Err(_) => break,
            }
        }
        let node = node.clone();
        tokio::spawn(async move {
            write_group(&node, group).await;
            drop(permit);
        });
    }
}

async fn write_group(node: &Node, group: Vec<Pending>) {
    let sizes: Vec<usize> = group.iter().map(|p| p.proposals.len()).collect();
    let mut replies = Vec::with_capacity(group.len());
    let mut proposals = Vec::with_capacity(sizes.iter().sum());
    for pending in group {
        proposals.extend(pending.proposals);
        replies.push(pending.reply);
    }
    let command = Command::Submit {
        proposals,
        time: now_ledger_time(),
    };
    let write = tokio::time::timeout(
        Duration::from_millis(WRITE_TIMEOUT_MS),
        node.raft.client_write(command),
    );
    let result = match write.await {
        Err(_) => Err(ApiError::new(
            ErrorCode::Timeout,
            format!(
                "the write did not commit within {WRITE_TIMEOUT_MS} ms; it may still: \
                 resubmit the same proposal to learn its outcome"
            ),
        )),
        Ok(Ok(response)) => match response.data {
            CommandResponse::Submitted { outcomes, .. } => Ok(outcomes),
            CommandResponse::Refused(error) => Err(ApiError::new(
                if error.code() == "NOT_INITIALIZED" {
                    ErrorCode::NotInitialized
                } else {
                    ErrorCode::Internal
                },
                error.to_string(),
            )),
            other => Err(ApiError::new(
                ErrorCode::Internal,
                format!("unexpected response {other:?}"),
            )),
        },
        Ok(Err(error)) => Err(node.write_error(error)),
    };
    match result {
        Ok(outcomes) => {
            assert_eq!(
                outcomes.len(),
                sizes.iter().sum::<usize>(),
                "invariant: one outcome per proposal"
            );
            let mut outcomes = outcomes.into_iter();
            for (reply, size) in replies.into_iter().zip(sizes) {
                let _ = reply.send(Ok(outcomes.by_ref().take(size).collect()));
            }
        }
        Err(error) => {
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

/// On the leader, files a `Tick` whenever a deferred proposal's expiry has passed, so
/// deferrals expire on an idle ledger too. Followers do nothing.
async fn ticker(node: Arc<Node>, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    let mut interval = tokio::time::interval(Duration::from_millis(TICK_INTERVAL_MS));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = interval.tick() => {}
        }
        if !node.is_leader() {
            continue;
        }
        let now = now_ledger_time();
        let due = node.replica.with_state(|state| {
            state.is_some_and(|s| s.deferred().values().any(|d| d.expires_at <= now))
        });
        if due {
            if let Err(e) = node.raft.client_write(Command::Tick { time: now }).await {
                tracing::debug!(error = %e, "tick not written");
            }
        }
    }
}

/// Members as the leader (or this node) sees them, voters first.
pub fn members(node: &Node) -> Vec<crate::wire::MemberView> {
    let metrics = node.raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
    let last = metrics.last_log_index.unwrap_or(0);
    let replication: BTreeMap<NodeId, Option<u64>> = metrics
        .replication
        .as_ref()
        .map(|r| {
            r.iter()
                .map(|(id, log)| (*id, log.map(|l| l.index)))
                .collect()
        })
        .unwrap_or_default();
    let mut out: Vec<crate::wire::MemberView> = membership
        .nodes()
        .map(|(id, addr)| {
            let matched = if *id == node.id && metrics.current_leader == Some(node.id) {
                Some(last)
            } else {
                replication.get(id).copied().flatten()
            };
            crate::wire::MemberView {
                id: *id,
                raft_addr: addr.raft_addr.clone(),
                api_addr: addr.api_addr.clone(),
                voter: voters.contains(id),
                matched_index: matched,
                lag: matched.map(|m| last.saturating_sub(m)),
            }
        })
        .collect();
    out.sort_by_key(|m| (!m.voter, m.id));
    out
}
