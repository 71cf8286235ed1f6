//! Crashes lose no acknowledged proposal: SIGKILL of the leader under concurrent load, and
//! SIGKILL of every node at once, on each storage engine (`DOCKET_STORAGE_ENGINE`: sled,
//! fjall). And a follower SIGKILLed across snapshots catches up from the log the leader
//! kept by `raft.log_keep_mb`, not from a snapshot of the whole ledger.
//!
//! Clients retry a proposal whose outcome they do not know (not leader, no leader, timeout,
//! a connection broken after sending, OUTCOME_UNKNOWN,
//! node unreachable) with the *same* signed proposal: ids are idempotent, so a retry of
//! something already recorded answers `duplicate: true` with the original entry. Every
//! proposal answered 200 is acknowledged; after the fault each must be on every node with
//! the entry it was acknowledged with.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    assert_all_present, client, converged_at, deposit, formed_cluster, ledger_id, phase, status,
    wait_for, WAIT_TIMEOUT_MS,
};
use docket_core::{LedgerEntry, LedgerId, ProposalId, SignedProposal};
use docket_node::client::{Client, ClientError};

/// Concurrent client tasks of the load.
const CLIENT_TASKS: usize = 8;

/// Acknowledgements wanted before the fault and again after it, so the test sees real
/// concurrent load on both leaders.
const ACKS_PER_PHASE: usize = 150;

/// One task never retries a single proposal for longer than this; the test then fails.
const RETRY_TIMEOUT_MS: u64 = 20_000;

type Acked = Arc<Mutex<Vec<(ProposalId, LedgerEntry)>>>;

/// Whether an error leaves the proposal's outcome unknown or unrecorded, so resubmitting the
/// same proposal (possibly at another node) is the right move.
fn retryable(error: &ClientError) -> bool {
    error.outcome_unknown()
        || matches!(error, ClientError::Unreachable { .. })
        || matches!(
            error.code(),
            Some("NOT_LEADER" | "NO_LEADER" | "OVERLOADED")
        )
}

/// Submits `proposal` until a node answers 200, rotating through `clients` on retryable
/// errors. `None` when `stop` is raised first (the outcome stays unknown).
async fn submit_until_acked(
    clients: &[Client],
    first: usize,
    proposal: &SignedProposal,
    stop: &AtomicBool,
) -> Option<LedgerEntry> {
    let deadline = Instant::now() + Duration::from_millis(RETRY_TIMEOUT_MS);
    let mut at = first;
    loop {
        match clients[at % clients.len()].submit(proposal).await {
            Ok(response) => {
                assert_eq!(
                    response.id,
                    proposal.id(),
                    "the answer is for this proposal"
                );
                assert_eq!(response.entry.proposal_id(), Some(proposal.id()));
                return Some(response.entry);
            }
            Err(error) if retryable(&error) => {
                if stop.load(Ordering::Relaxed) {
                    return None;
                }
                assert!(
                    Instant::now() < deadline,
                    "proposal {} not acknowledged within {RETRY_TIMEOUT_MS} ms; last error: {error}",
                    proposal.id().short()
                );
                at += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!(
                "proposal {}: unexpected error {error}",
                proposal.id().short()
            ),
        }
    }
}

/// `CLIENT_TASKS` tasks submitting distinct proposals (every seventh by `mallory`, so some
/// decisions are rejections) to every node in turn until `stop` is raised.
fn start_load(
    clients: Vec<Client>,
    ledger: LedgerId,
    tag: &'static str,
    acked: Acked,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinSet<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..CLIENT_TASKS {
        let (clients, ledger, acked, stop) =
            (clients.clone(), ledger.clone(), acked.clone(), stop.clone());
        tasks.spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let author = if n % 7 == 6 { "mallory" } else { "alice" };
                let proposal = deposit(&ledger, author, &format!("{tag}-{task}-{n}"), 1 + n as i64);
                match submit_until_acked(&clients, task + n, &proposal, &stop).await {
                    Some(entry) => acked
                        .lock()
                        .expect("acked lock")
                        .push((proposal.id(), entry)),
                    None => break,
                }
                n += 1;
            }
        });
    }
    tasks
}

fn acked_count(acked: &Acked) -> usize {
    acked.lock().expect("acked lock").len()
}

/// Waits until at least `count` proposals are acknowledged.
async fn wait_acked(acked: &Acked, count: usize, why: &str) {
    wait_for(why, WAIT_TIMEOUT_MS, || async {
        let have = acked_count(acked);
        if have >= count {
            Ok(())
        } else {
            Err(format!("{have} of {count} acknowledged"))
        }
    })
    .await
}

async fn stop_load(stop: &AtomicBool, mut tasks: tokio::task::JoinSet<()>) {
    stop.store(true, Ordering::Relaxed);
    let joined = tokio::time::timeout(Duration::from_millis(WAIT_TIMEOUT_MS), async {
        while let Some(result) = tasks.join_next().await {
            // A panicking client task is a failed assertion: surface it.
            if let Err(e) = result {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    })
    .await;
    assert!(
        joined.is_ok(),
        "client tasks did not stop within {WAIT_TIMEOUT_MS} ms"
    );
}

/// The nodes' environment for `engine`.
fn engine_env(engine: &'static str) -> [(&'static str, &'static str); 1] {
    [("DOCKET_STORAGE_ENGINE", engine)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_sigkill_under_load_loses_no_acknowledged_proposal() {
    leader_sigkill_under_load("sled").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_sigkill_under_load_loses_no_acknowledged_proposal_on_fjall() {
    leader_sigkill_under_load("fjall").await;
}

async fn leader_sigkill_under_load(engine: &'static str) {
    let start = Instant::now();
    phase(start, &format!("storage engine {engine}"));
    let (dir, mut cluster) =
        formed_cluster(&format!("crash-leader-{engine}"), 3, &engine_env(engine)).await;
    assert_engine(dir.path(), engine);
    let ledger = ledger_id(&cluster);
    let clients: Vec<Client> = cluster.nodes.iter().map(|n| client(&n.url())).collect();
    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));

    phase(
        start,
        "load: 8 clients submitting distinct proposals at every node",
    );
    let tasks = start_load(clients, ledger, "load", acked.clone(), stop.clone());
    wait_acked(&acked, ACKS_PER_PHASE, "acknowledgements before the crash").await;

    let old_leader = cluster.leader().await.expect("leader");
    let acked_at_kill = acked_count(&acked);
    phase(
        start,
        &format!("SIGKILL of leader node {old_leader} with {acked_at_kill} acknowledged"),
    );
    cluster.kill(old_leader).await.expect("kill leader");
    let new_leader = cluster.leader().await.expect("a new leader is elected");
    assert_ne!(
        new_leader, old_leader,
        "the killed node cannot be the leader"
    );
    phase(start, &format!("node {new_leader} leads; load continues"));
    wait_acked(
        &acked,
        acked_count(&acked) + ACKS_PER_PHASE,
        "acknowledgements under the new leader",
    )
    .await;
    stop_load(&stop, tasks).await;
    let acked: Vec<(ProposalId, LedgerEntry)> = acked.lock().expect("acked lock").clone();
    phase(
        start,
        &format!("load stopped with {} acknowledged", acked.len()),
    );

    phase(
        start,
        &format!("restarting node {old_leader} from its data directory"),
    );
    cluster.start(old_leader).await.expect("restart");
    let statuses = cluster.converged().await.expect("converged");
    assert_eq!(statuses.len(), 3, "all three nodes answer");
    let max_acked = acked.iter().map(|(_, e)| e.index.0).max().unwrap_or(0);
    assert!(
        statuses[0].ledger_length > max_acked,
        "ledger length {} does not cover acknowledged entry {max_acked}",
        statuses[0].ledger_length
    );
    let term = status(&cluster, new_leader).await.term;
    assert!(term >= 2, "an election happened: term {term}");

    phase(
        start,
        "every node holds every acknowledged proposal with its decision",
    );
    assert_all_present(&cluster, &acked).await;
    let distinct: std::collections::BTreeSet<ProposalId> =
        acked.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        distinct.len(),
        acked.len(),
        "each proposal is acknowledged once"
    );
    phase(start, "done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_restart_recovers_every_acknowledged_entry() {
    full_restart_recovers("sled").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_restart_recovers_every_acknowledged_entry_on_fjall() {
    full_restart_recovers("fjall").await;
}

/// Every node's data directory under `root` was written by `engine` (its `ENGINE` marker).
fn assert_engine(root: &std::path::Path, engine: &str) {
    let mut nodes = 0;
    for entry in std::fs::read_dir(root).expect("cluster root") {
        let path = entry.expect("entry").path();
        let marker = path.join("ENGINE");
        if marker.exists() {
            let text = std::fs::read_to_string(&marker).expect("marker");
            assert_eq!(text.trim(), engine, "{}", marker.display());
            nodes += 1;
        }
    }
    assert_eq!(
        nodes,
        3,
        "three node data directories under {}",
        root.display()
    );
}

async fn full_restart_recovers(engine: &'static str) {
    let start = Instant::now();
    phase(start, &format!("storage engine {engine}"));
    let (dir, mut cluster) =
        formed_cluster(&format!("crash-all-{engine}"), 3, &engine_env(engine)).await;
    assert_engine(dir.path(), engine);
    let ledger = ledger_id(&cluster);
    let clients: Vec<Client> = cluster.nodes.iter().map(|n| client(&n.url())).collect();
    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));

    phase(start, "load: 8 clients, then a batch, at every node");
    let tasks = start_load(
        clients.clone(),
        ledger.clone(),
        "all",
        acked.clone(),
        stop.clone(),
    );
    wait_acked(
        &acked,
        ACKS_PER_PHASE,
        "acknowledgements before the restart",
    )
    .await;
    stop_load(&stop, tasks).await;
    let batch: Vec<SignedProposal> = (0..50)
        .map(|i| deposit(&ledger, "bob", &format!("all-batch-{i}"), i + 1))
        .collect();
    let results = clients[1]
        .submit_batch(&batch)
        .await
        .expect("batch")
        .results;
    let mut acked: Vec<(ProposalId, LedgerEntry)> = acked.lock().expect("acked lock").clone();
    acked.extend(results.into_iter().map(|r| (r.id, r.entry)));

    // Unknown outcomes (a task stopped mid-retry) may still be appended, so the expected
    // position is read only once the ledger stops growing: the leader's linearizable length,
    // then its status at that length. No wait for the followers: the kill comes right away.
    let leader = cluster.leader().await.expect("leader");
    let leader_client = client(&cluster.node(leader).url());
    let length = leader_client
        .ledger(0, 1)
        .await
        .expect("linearizable length")
        .length;
    let expected = status(&cluster, leader).await;
    assert_eq!(
        expected.ledger_length, length,
        "the leader applied what it acknowledged"
    );
    let max_acked = acked.iter().map(|(_, e)| e.index.0).max().unwrap_or(0);
    assert!(length > max_acked);

    phase(
        start,
        &format!(
            "SIGKILL of all nodes at ledger length {length}, {} acknowledged",
            acked.len()
        ),
    );
    cluster.kill_all().await;
    assert!(cluster.nodes.iter().all(|n| !n.is_running()));
    cluster.start_all().await.expect("restart all");
    let leader = cluster.leader().await.expect("a leader after the restart");
    phase(start, &format!("restarted; node {leader} leads"));
    let statuses = converged_at(&cluster, length).await;
    for s in &statuses {
        assert_eq!(
            s.state_hash, expected.state_hash,
            "node {}: state hash differs from before the crash",
            s.node_id
        );
    }
    assert_all_present(&cluster, &acked).await;

    phase(start, "the restarted cluster accepts new writes");
    let after = client(&cluster.node(leader).url())
        .submit(&deposit(&ledger, "alice", "all-after", 5))
        .await
        .expect("write after restart");
    assert_eq!(
        after.entry.index.0, length,
        "appended right after the recovered ledger"
    );
    converged_at(&cluster, length + 1).await;
    phase(start, "done");
}

/// Proposals written one at a time while a follower is down: one Raft entry each, so a
/// dozen snapshots at the threshold below.
const WRITES_WHILE_DOWN: usize = 240;

/// Snapshot threshold of the log-retention tests, in Raft entries.
const SNAPSHOT_EVERY: &str = "20";

/// The value of the unlabelled series `name` in a `/metrics` scrape.
fn gauge(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no series {name} in:\n{text}"))
}

/// A follower SIGKILLed while the leader takes snapshot after snapshot (every 20 Raft
/// entries, none kept behind them by count) is restarted: with `raft.log_keep_mb` the
/// leader still holds the entries it missed, and it catches up from the log; with
/// `log_keep_mb = 0` it is sent the whole ledger as a snapshot (what every restart across
/// a snapshot cost before the budget). Then, past the budget, the leader purges its log
/// down to the budget.
async fn follower_down_across_snapshots(log_keep_mb: &'static str) {
    let start = Instant::now();
    let by_log = log_keep_mb != "0";
    let name = format!("keep-{log_keep_mb}");
    let (_dir, mut cluster) = formed_cluster(
        &name,
        3,
        &[
            ("DOCKET_RAFT_SNAPSHOT_LOGS_SINCE_LAST", SNAPSHOT_EVERY),
            ("DOCKET_RAFT_MAX_IN_SNAPSHOT_LOG_TO_KEEP", "0"),
            ("DOCKET_RAFT_LOG_KEEP_MB", log_keep_mb),
            // The snapshot assertions read info lines from the nodes' logs.
            ("DOCKET_LOG", "info"),
        ],
    )
    .await;
    let ledger = ledger_id(&cluster);
    let leader = cluster.leader().await.expect("leader");
    let leader_client = client(&cluster.node(leader).url());
    let follower = cluster.other_than(leader).expect("a follower");

    phase(start, &format!("SIGKILL of follower {follower}"));
    let down_at = status(&cluster, leader).await.last_log_index.unwrap_or(0);
    cluster.kill(follower).await.expect("kill follower");
    phase(
        start,
        &format!("{WRITES_WHILE_DOWN} writes while it is down"),
    );
    let mut acked = Vec::new();
    for n in 0..WRITES_WHILE_DOWN {
        let p = deposit(&ledger, "alice", &format!("down-{n}"), 1 + n as i64);
        let r = leader_client.submit(&p).await.expect("write while down");
        acked.push((r.id, r.entry));
    }
    let leader_status = status(&cluster, leader).await;
    let snapshot_at = gauge(
        &leader_client.metrics().await.expect("leader metrics"),
        "docket_raft_snapshot_index",
    ) as u64;
    assert!(
        snapshot_at > down_at + 100,
        "the leader snapshotted well past what the follower holds: snapshot at {snapshot_at}, \
         follower down at {down_at}"
    );
    // The leader's own purge runs every few seconds: give it one.
    tokio::time::sleep(docket_service::retention::INTERVAL_DEFAULT + Duration::from_secs(1)).await;

    phase(start, &format!("restarting follower {follower}"));
    let log_path = cluster.node(follower).log_path();
    let log_before = std::fs::metadata(&log_path).map_or(0, |m| m.len()) as usize;
    cluster.start(follower).await.expect("restart follower");
    let statuses = converged_at(&cluster, leader_status.ledger_length).await;
    assert!(statuses
        .iter()
        .all(|s| s.state_hash == leader_status.state_hash));
    let log = std::fs::read(&log_path).expect("follower log");
    let since_restart = String::from_utf8_lossy(&log[log_before..]);
    let installed = since_restart.contains("installed snapshot");
    if by_log {
        assert!(
            !installed,
            "follower {follower} was sent a snapshot although the leader kept \
             {log_keep_mb} MiB of log:\n{since_restart}"
        );
    } else {
        assert!(
            installed,
            "without a log budget follower {follower} catches up by snapshot:\n{since_restart}"
        );
        assert_all_present(&cluster, &acked).await;
        phase(start, "done");
        return;
    }
    assert_all_present(&cluster, &acked).await;

    phase(
        start,
        "past the budget: batches of 60 until the leader purges",
    );
    let metrics = || async { leader_client.metrics().await.expect("leader metrics") };
    let budget = 1024.0 * 1024.0 * log_keep_mb.parse::<f64>().expect("a number");
    // ~16 KB of log each: 1.6 MB in all, and at most ~320 KB since the last snapshot.
    for b in 0..100 {
        let batch: Vec<SignedProposal> = (0..60)
            .map(|i| deposit(&ledger, "bob", &format!("past-{b}-{i}"), i + 1))
            .collect();
        leader_client.submit_batch(&batch).await.expect("batch");
    }
    let text = wait_for("the leader purges its log", WAIT_TIMEOUT_MS, || async {
        let text = metrics().await;
        let held = gauge(&text, "docket_raft_log_entries");
        let last = gauge(&text, "docket_raft_last_log_index");
        if held + 1.0 < last {
            Ok(text)
        } else {
            let bytes = gauge(&text, "docket_raft_log_bytes");
            Err(format!(
                "the leader holds {held} entries of {last}, {bytes} bytes"
            ))
        }
    })
    .await;
    let bytes = gauge(&text, "docket_raft_log_bytes");
    let entries = gauge(&text, "docket_raft_log_entries");
    // Purged to the snapshot, as without a budget, the leader would hold at most 20
    // entries: those its last snapshot does not cover.
    assert!(
        entries > 20.0,
        "the leader kept more than what its last snapshot does not cover: {entries} entries"
    );
    assert!(
        bytes <= 2.0 * budget,
        "the leader holds {bytes} bytes of log, past twice its budget of {budget}"
    );
    phase(
        start,
        &format!("done: the leader holds {entries} entries, {bytes} bytes of log"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_down_across_snapshots_catches_up_from_the_log_kept_by_bytes() {
    follower_down_across_snapshots("1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_log_budget_a_follower_down_across_snapshots_is_sent_a_snapshot() {
    follower_down_across_snapshots("0").await;
}

/// openraft's own count (`snapshot_logs_since_last`) is never reached here; with a log
/// budget of 1 MiB a node still snapshots whenever its log past the last snapshot passes
/// an eighth of it (`LogKeep::snapshot_after_bytes`), so the leader purges down to its budget, and a fresh node is sent a
/// snapshot and little log, not the whole log to replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_budget_takes_snapshots_when_the_entry_count_never_would() {
    use docket_node::local_cluster::operator_key;

    let start = Instant::now();
    let (_dir, mut cluster) = formed_cluster(
        "keep-by-bytes",
        3,
        &[
            ("DOCKET_RAFT_SNAPSHOT_LOGS_SINCE_LAST", "1000000"),
            // Kept by bytes alone: the entries rule would keep 100 batches (1.6 MB).
            ("DOCKET_RAFT_MAX_IN_SNAPSHOT_LOG_TO_KEEP", "0"),
            ("DOCKET_RAFT_LOG_KEEP_MB", "1"),
            ("DOCKET_LOG", "info"),
        ],
    )
    .await;
    let ledger = ledger_id(&cluster);
    let leader = cluster.leader().await.expect("leader");
    let leader_client = client(&cluster.node(leader).url());

    phase(start, "100 batches of 60: ~1.6 MB of log");
    for b in 0..100 {
        let batch: Vec<SignedProposal> = (0..60)
            .map(|i| deposit(&ledger, "bob", &format!("budget-{b}-{i}"), i + 1))
            .collect();
        leader_client.submit_batch(&batch).await.expect("batch");
    }
    let metrics = || async { leader_client.metrics().await.expect("leader metrics") };
    let text = wait_for(
        "the leader snapshots and purges",
        WAIT_TIMEOUT_MS,
        || async {
            let text = metrics().await;
            let held = gauge(&text, "docket_raft_log_entries");
            let last = gauge(&text, "docket_raft_last_log_index");
            let snapshot = gauge(&text, "docket_raft_snapshot_index");
            if snapshot > 0.0 && held + 1.0 < last {
                Ok(text)
            } else {
                Err(format!(
                    "snapshot at {snapshot}; the leader holds {held} entries of {last}"
                ))
            }
        },
    )
    .await;
    let bytes = gauge(&text, "docket_raft_log_bytes");
    let budget = 1024.0 * 1024.0;
    assert!(
        bytes <= 2.0 * budget,
        "the leader holds {bytes} bytes of log, past twice its budget"
    );

    phase(start, "a fresh node is sent a snapshot");
    let fresh = cluster.add_slot().expect("slot for node 4");
    cluster.start(fresh).await.expect("start node 4");
    leader_client
        .add_member_as(cluster.node(fresh).add_request(), &operator_key())
        .await
        .expect("add node 4");
    // The add is recorded in the ledger: the length after it.
    let length = status(&cluster, leader).await.ledger_length;
    let statuses = converged_at(&cluster, length).await;
    let hash = &statuses[0].state_hash;
    assert!(statuses.iter().all(|s| &s.state_hash == hash));
    let log = std::fs::read(cluster.node(fresh).log_path()).expect("node 4 log");
    assert!(
        String::from_utf8_lossy(&log).contains("installed snapshot"),
        "node 4 was sent a snapshot"
    );
    phase(
        start,
        &format!("done: the leader held {bytes} bytes of log"),
    );
}
