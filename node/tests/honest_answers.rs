//! Clients are told the truth while leaders die. Proposals go in through a follower while
//! the leader is killed (SIGKILL) and restarted at random points; the client settles each
//! one with `Client::submit_settled` (the same signed proposal resent, never re-signed).
//! Afterwards: every proposal reported recorded is on every node, every proposal reported
//! *not* recorded is on none, and no proposal is recorded twice.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{
    assert_all_present, client, converged_at, deposit, formed_cluster, ledger_id, phase,
    read_ledger,
};
use docket_core::{LedgerEntry, ProposalId};

/// Proposals submitted in all, by [`TASKS`] concurrent clients.
const PROPOSALS: usize = 1_000;
const TASKS: usize = 4;
/// Leader kills during the run.
const KILLS: usize = 4;
/// How long one proposal may take to settle (elections included).
const SETTLE_MS: u64 = 30_000;

#[derive(Default)]
struct Answers {
    recorded: Vec<(ProposalId, LedgerEntry)>,
    not_recorded: Vec<ProposalId>,
    unknown: Vec<ProposalId>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_true_while_leaders_die() {
    let start = Instant::now();
    let (_dir, mut cluster) = formed_cluster("honest", 3, &[]).await;
    let ledger = ledger_id(&cluster);
    let leader = cluster.leader().await.expect("leader");
    let follower = cluster
        .nodes
        .iter()
        .map(|n| n.id)
        .find(|id| *id != leader)
        .expect("a follower");
    let entry = client(&cluster.node(follower).url());
    let others: Vec<String> = cluster.nodes.iter().map(|n| n.api_addr.clone()).collect();
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    phase(
        start,
        &format!(
            "{PROPOSALS} proposals through node {follower}, {KILLS} leader kills, seed {seed}"
        ),
    );

    let answers = Arc::new(Mutex::new(Answers::default()));
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let (entry, others, ledger, answers) = (
            entry.clone(),
            others.clone(),
            ledger.clone(),
            answers.clone(),
        );
        tasks.spawn(async move {
            for n in (task..PROPOSALS).step_by(TASKS) {
                let proposal = deposit(&ledger, "alice", &format!("honest-{n}"), 1 + n as i64);
                let id = proposal.id();
                let settled = entry
                    .submit_settled(&proposal, &others, Duration::from_millis(SETTLE_MS))
                    .await;
                let mut answers = answers.lock().expect("answers lock");
                match settled {
                    Ok(response) => answers.recorded.push((id, response.entry)),
                    Err(failure) if failure.outcome_unknown => answers.unknown.push(id),
                    Err(_) => answers.not_recorded.push(id),
                }
            }
        });
    }

    // Kill the leader at pseudo-random points (xorshift from the printed seed).
    let mut state = seed;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for kill in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(200 + next() % 600)).await;
        let leader = cluster.leader().await.expect("a leader to kill");
        phase(start, &format!("kill {kill}: SIGKILL leader {leader}"));
        cluster.kill(leader).await.expect("kill");
        tokio::time::sleep(Duration::from_millis(100 + next() % 400)).await;
        cluster.start(leader).await.expect("restart");
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("client task");
    }
    let answers = std::mem::take(&mut *answers.lock().expect("answers lock"));
    phase(
        start,
        &format!(
            "{} recorded, {} not recorded, {} unknown",
            answers.recorded.len(),
            answers.not_recorded.len(),
            answers.unknown.len()
        ),
    );
    assert_eq!(
        answers.recorded.len() + answers.not_recorded.len() + answers.unknown.len(),
        PROPOSALS
    );

    let length = cluster.converged().await.expect("converged")[0].ledger_length;
    converged_at(&cluster, length).await;
    assert_all_present(&cluster, &answers.recorded).await;
    for node in &cluster.nodes {
        let ledger = read_ledger(&client(&node.url())).await;
        let mut times: BTreeMap<ProposalId, usize> = BTreeMap::new();
        for entry in &ledger {
            if let Some(record) = entry.decision_record() {
                *times.entry(record.id).or_default() += 1;
            }
        }
        if let Some((id, count)) = times.iter().find(|(_, count)| **count > 1) {
            panic!(
                "node {}: proposal {} recorded {count} times",
                node.id,
                id.short()
            );
        }
        for id in &answers.not_recorded {
            assert!(
                !times.contains_key(id),
                "node {}: proposal {} was reported not recorded, but is in the ledger",
                node.id,
                id.short()
            );
        }
    }
}
