//! The storage under a real openraft node: a one-node cluster writes commands, compacts its
//! log into a snapshot, stops, and restarts from the same directory with the same ledger
//! and state hash.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Weak};
use std::time::Duration;

use docket_core::constitution::DEFAULT_DOCUMENT;
use docket_core::{dev, LedgerId, LedgerIndex, LedgerTime, Value};
use docket_raft::{Command, CommandResponse, NodeAddr, NodeId, Raft, Replica, Store, TypeConfig};
use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{Config, SnapshotPolicy};

/// A network with no peers: a one-node cluster never sends an RPC.
struct NoPeers;

impl RaftNetworkFactory<TypeConfig> for NoPeers {
    type Network = NoPeers;
    async fn new_client(&mut self, _target: NodeId, _node: &NodeAddr) -> NoPeers {
        NoPeers
    }
}

fn unreachable<E: std::error::Error>() -> RPCError<NodeId, NodeAddr, E> {
    RPCError::Unreachable(Unreachable::new(&io::Error::other("no peers in this test")))
}

impl RaftNetwork<TypeConfig> for NoPeers {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, NodeAddr, RaftError<NodeId>>> {
        Err(unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, NodeAddr, RaftError<NodeId, InstallSnapshotError>>,
    > {
        Err(unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, NodeAddr, RaftError<NodeId>>> {
        Err(unreachable())
    }
}

const WAIT: Option<Duration> = Some(Duration::from_secs(10));

async fn start(dir: &std::path::Path) -> (Raft, Replica, Weak<Store>) {
    let config = Config {
        // Snapshot every few entries and keep none behind it, so the test compacts.
        snapshot_policy: SnapshotPolicy::LogsSinceLast(4),
        max_in_snapshot_log_to_keep: 0,
        purge_batch_size: 1,
        ..Default::default()
    }
    .validate()
    .expect("valid config");
    let (log_store, state_machine) = docket_raft::open(dir).expect("open storage");
    let store = Arc::downgrade(log_store.store());
    let replica = state_machine.replica();
    let raft = Raft::new(1, Arc::new(config), NoPeers, log_store, state_machine)
        .await
        .expect("raft starts");
    (raft, replica, store)
}

fn deposit(subject: &str, nonce: u64) -> docket_core::SignedProposal {
    dev::proposal(
        &LedgerId::new("single-node").expect("id"),
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        subject,
        Value::map([("amount", Value::Int(100)), ("currency", "EUR".into())]),
        vec![],
        nonce,
    )
}

async fn write(raft: &Raft, command: Command) -> CommandResponse {
    raft.client_write(command)
        .await
        .expect("write commits")
        .data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_writes_compacts_and_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");

    // Phase 1: initialize, write genesis and a dozen deposits, let the log compact.
    let (raft, replica, store) = start(dir.path()).await;
    let node = NodeAddr {
        raft_addr: "127.0.0.1:0".into(),
        api_addr: "127.0.0.1:0".into(),
    };
    raft.initialize(BTreeMap::from([(1, node)]))
        .await
        .expect("initialize");
    raft.wait(WAIT)
        .current_leader(1, "node 1 leads")
        .await
        .expect("leader");
    let genesis = write(
        &raft,
        Command::Genesis {
            ledger_id: LedgerId::new("single-node").expect("id"),
            document: DEFAULT_DOCUMENT.to_owned(),
            time: LedgerTime(1_000),
        },
    )
    .await;
    assert!(
        matches!(genesis, CommandResponse::Genesis { .. }),
        "{genesis:?}"
    );
    for i in 0..12u64 {
        let response = write(
            &raft,
            Command::Submit {
                proposals: vec![deposit(&format!("stl-{i}"), i)],
                time: LedgerTime(2_000 + i),
            },
        )
        .await;
        assert!(
            matches!(response, CommandResponse::Submitted { .. }),
            "{response:?}"
        );
    }
    let metrics = raft
        .wait(WAIT)
        .metrics(
            |m| m.purged.is_some() && m.snapshot.is_some(),
            "snapshot and purge",
        )
        .await
        .expect("the log compacts");
    let last_index = metrics.last_log_index.expect("has a log");
    let hash = replica.state_hash().expect("has state");
    let ledger = replica
        .ledger_entries(LedgerIndex(0), u64::MAX)
        .expect("ledger");
    assert_eq!(ledger.len(), 13, "genesis and 12 deposits");
    docket_core::verify_chain(&ledger).expect("chain verifies");

    raft.shutdown().await.expect("shutdown");
    drop(raft);
    drop(replica);
    // sled allows one open handle per directory: wait until every task let go of it.
    for _ in 0..100 {
        if store.upgrade().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(store.upgrade().is_none(), "storage released after shutdown");

    // Phase 2: restart from the same directory.
    let (raft, replica, _store) = start(dir.path()).await;
    raft.wait(WAIT)
        .applied_index_at_least(Some(last_index), "re-applied after restart")
        .await
        .expect("catches up");
    assert_eq!(replica.state_hash(), Some(hash));
    assert_eq!(
        replica
            .ledger_entries(LedgerIndex(0), u64::MAX)
            .expect("ledger"),
        ledger
    );
    raft.wait(WAIT)
        .current_leader(1, "node 1 leads again")
        .await
        .expect("leader");
    let response = write(
        &raft,
        Command::Submit {
            proposals: vec![deposit("after-restart", 99), deposit("stl-0", 0)],
            time: LedgerTime(9_000),
        },
    )
    .await;
    let CommandResponse::Submitted { appended, outcomes } = response else {
        panic!("expected Submitted, got {response:?}");
    };
    assert_eq!(appended.start, LedgerIndex(13), "the ledger continues");
    assert!(
        matches!(outcomes[1].outcome, docket_raft::Outcome::Duplicate { .. }),
        "a proposal recorded before the restart is still known"
    );
    raft.shutdown().await.expect("shutdown");
}
