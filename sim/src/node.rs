//! A simulated node: the real storage (on its [`SimDisk`](crate::disk::SimDisk)), the real
//! Raft network code over turmoil TCP, the real state machine, and the client API.
//!
//! The host closure runs on every (re)start of the host: it reopens the store from the
//! node's disk (which kept exactly what was flushed before a crash), seeds openraft's
//! randomness for this boot, starts Raft, and serves both listeners until the host is
//! crashed.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use docket_raft::network::{self, Identity, Network, Transport};
use docket_raft::pacing::ApplyPacing;
use docket_raft::{NodeId, Raft};
use openraft::{Config, SnapshotPolicy};

use docket_core::LedgerId;
use docket_service::retention::LogKeep;
use docket_service::{Limits, Service, Settings, Timing};

use crate::api::{self, ApiNode, SimPeers, READ_INDEX_DEADLINE, SERVER_DEADLINE};
use crate::config::Variant;
use crate::config::{salt, Derived, INITIAL_VOTERS};
use crate::world::{node_addr, World, API_PORT, CLUSTER_ID, RAFT_PORT};

/// turmoil's TCP as the Raft transport.
#[derive(Clone, Copy, Debug, Default)]
pub struct TurmoilTransport;

impl Transport for TurmoilTransport {
    type Stream = turmoil::net::TcpStream;

    async fn connect(&self, addr: &str) -> io::Result<turmoil::net::TcpStream> {
        turmoil::net::TcpStream::connect(addr).await
    }
}

/// openraft's configuration for a simulated node: `node/`'s, with the seed's timings and a
/// snapshot policy small enough that snapshots, purges and installs happen in a short run.
pub fn raft_config(derived: &Derived) -> Config {
    Config {
        cluster_name: CLUSTER_ID.to_owned(),
        heartbeat_interval: derived.heartbeat_ms,
        election_timeout_min: derived.election_min_ms,
        election_timeout_max: derived.election_max_ms,
        install_snapshot_timeout: derived.rpc_timeout_ms.max(2_000),
        snapshot_max_chunk_size: network::SNAPSHOT_CHUNK_BYTES,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(derived.snapshot_logs_since_last),
        max_in_snapshot_log_to_keep: log_keep(derived).openraft_keep(),
        ..Config::default()
    }
    .validate()
    .expect("invariant: derived raft timings are valid")
}

/// The service of node `id`: the node's limits, deadlines scaled to simulated links, the
/// simulated clock, and the variant's deliberate fault, if any.
/// A simulated node's checkpoint key: derived from its id, as the operator knows it.
pub fn cosigner_key(id: NodeId) -> ed25519_dalek::SigningKey {
    docket_core::dev::signing_key(&format!("sim-node-{id}"))
}

/// How often a simulated node looks for log to purge: several times per seed.
pub const LOG_KEEP_INTERVAL: Duration = Duration::from_millis(250);

/// Which log a simulated node keeps (`docket_service::retention`).
fn log_keep(derived: &Derived) -> LogKeep {
    LogKeep {
        snapshotted_entries: derived.max_in_snapshot_log_to_keep,
        bytes: derived.log_keep_bytes,
        interval: LOG_KEEP_INTERVAL,
    }
}

pub fn settings(id: NodeId, variant: Variant, derived: &Derived, identity: Identity) -> Settings {
    Settings {
        identity,
        ledger_id: LedgerId::new(CLUSTER_ID).expect("invariant: valid ledger id"),
        addr: node_addr(id),
        cosigner: cosigner_key(id),
        limits: Limits {
            clients_inflight_max: 256,
            batch_proposals_max: 100,
            read_page_entries_max: 1_000,
        },
        timing: Timing {
            write_timeout: SERVER_DEADLINE,
            read_index_deadline: READ_INDEX_DEADLINE,
            tick_interval: Duration::from_secs(1),
            membership_timeout: SERVER_DEADLINE,
            catch_up_timeout: Duration::from_millis(1_500),
            probe_timeout: READ_INDEX_DEADLINE,
            confirm_timeout: crate::execution::CONFIRM_TIMEOUT,
            confirm_retry: crate::execution::CONFIRM_RETRY,
        },
        clock: Arc::new(api::ledger_now),
        log_keep: log_keep(derived),
        faults: variant.faults(),
    }
}

/// The body of node `id`'s host, run on every boot.
pub async fn run(world: World, id: NodeId) -> turmoil::Result {
    let (disk, journal, boot, derived, variant, execution, exec_log, signatures) = {
        let mut w = world.borrow_mut();
        let slot = w.nodes.get_mut(&id).expect("invariant: node slot exists");
        slot.boots += 1;
        let boot = slot.boots;
        let disk = slot.disk.clone();
        let journal = slot.journal.clone();
        let derived = w.derived.clone();
        let variant = w.config.variant;
        let execution = w.config.execution;
        let exec_log = w.exec_log.clone();
        let signatures = w.signatures.clone();
        w.trace_now(format_args!("n{id} boot {boot}"));
        (
            disk, journal, boot, derived, variant, execution, exec_log, signatures,
        )
    };
    // openraft draws this node's election timeout in Raft::new, from this sequence.
    docket_raft::runtime::seed_thread_rng(derived.seed ^ salt::RAFT ^ (id << 32) ^ u64::from(boot));
    let (log_store, state_machine) = docket_raft::open_on(disk.handle(), id)?;
    let state_machine = state_machine.with_signatures(signatures);
    let replica = state_machine.replica();
    let identity = Identity {
        cluster_id: CLUSTER_ID.to_owned(),
        node_id: id,
        genesis: replica.genesis_cell(),
        removed: Default::default(),
        leader_heard: Default::default(),
        pacing: ApplyPacing::new(
            derived.apply_backlog_max,
            Duration::from_millis(derived.heartbeat_ms),
        ),
        snapshots: Default::default(),
    };
    let network = Network::new(
        TurmoilTransport,
        identity.clone(),
        Duration::from_millis(derived.rpc_timeout_ms),
    );
    let raft = Raft::new(
        id,
        Arc::new(raft_config(&derived)),
        network,
        log_store,
        state_machine,
    )
    .await?;
    docket_raft::runtime::clear_thread_rng_seed();

    let raft_listener = turmoil::net::TcpListener::bind(("0.0.0.0", RAFT_PORT)).await?;
    let api_listener = turmoil::net::TcpListener::bind(("0.0.0.0", API_PORT)).await?;
    {
        let mut w = world.borrow_mut();
        let slot = w.nodes.get_mut(&id).expect("invariant: node slot exists");
        slot.raft = Some(raft.clone());
        slot.replica = Some(replica.clone());
    }

    // Node 1 forms the cluster on its first boot, as an operator would.
    if id == 1 && boot == 1 {
        let voters: BTreeMap<NodeId, docket_raft::NodeAddr> =
            (1..=INITIAL_VOTERS).map(|v| (v, node_addr(v))).collect();
        if let Err(e) = raft.initialize(voters).await {
            tracing::debug!(error = %e, "initialize");
        }
    }

    // The node's own service, with the simulated clock and network.
    let (service, background) = Service::new(
        settings(id, variant, &derived, identity.clone()),
        raft.clone(),
        replica,
        Arc::new(SimPeers { id }),
        std::future::pending(),
    );
    tokio::task::spawn_local(background);
    if execution {
        // The execution agent, attached to this node's confirmed leadership.
        crate::execution::start(id, boot, service.clone(), &journal, variant, exec_log);
    }
    let api_node = ApiNode { service, variant };
    // Every task of a host is spawned on its LocalSet, so a crash drops them in spawn
    // order (see docket_raft::runtime::spawn_on_local_set).
    tokio::task::spawn_local(async move {
        loop {
            let Ok((stream, _)) = api_listener.accept().await else {
                continue;
            };
            let node = api_node.clone();
            tokio::task::spawn_local(async move {
                let _ = api::serve_connection(stream, node).await;
            });
        }
    });
    loop {
        let (stream, _) = raft_listener.accept().await?;
        let (raft, identity) = (raft.clone(), identity.clone());
        tokio::task::spawn_local(async move {
            let _ = network::serve_connection(stream, raft, identity).await;
        });
    }
}
