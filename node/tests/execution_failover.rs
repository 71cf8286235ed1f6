//! Execution failover with real processes: SIGKILL of the leader while its execution agent
//! is paying out a batch, then a second leader change once everything is paid.
//!
//! Three `docket serve` children, each with an execution agent (`[execution]` with the
//! payment rail), and a real HTTP rail in the test process that records every request per
//! `Idempotency-Key` and answers 150 ms later (the money moves when the request arrives).
//! Thirty funded settlements each get one payout request, in one batch, beside three payout
//! requests the constitution rejects. As soon as the rail has seen ten keys, the leader is
//! SIGKILLed: some payouts are done and reported, some reached the rail with no answer yet
//! (the attempt is interrupted), some were not started. The next leader's agent must finish
//! the work from the ledger alone (its journal is empty).
//!
//! Then, after the killed node is back, the new leader is killed too: whichever node leads
//! next (the original leader, whose journal holds the interrupted attempts, or the node that
//! never led) must find every payout already reported and send nothing.
//!
//! What is asserted:
//! * (a) the rail saw exactly the admitted payouts' ids as idempotency keys (none of the
//!   rejected requests', nothing else), each with its payout's amount; a key may have been
//!   sent more than once only because the first leader's attempt at it was interrupted (or
//!   concluded without its outcome being committed), never because a later leader ignored a
//!   committed outcome; the rail honours keys, so each key's effect happened once (one
//!   `rail_ref`, which is what the ledger records). Keys sent twice are counted and printed;
//! * (b) the ledger holds exactly one admitted outcome record (`SETTLEMENT.PAYOUT_EXECUTED`
//!   or `SETTLEMENT.RAIL_ERROR`) per admitted payout, signed by the executor, depending on
//!   that payout and naming it in `reports_on`, none about anything else, and no rejected
//!   second outcome record;
//! * (c) every node ends with the same ledger length, state hash and last entry hash;
//! * the third leader sends nothing to the rail.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{client, formed_cluster_with_config, ledger_id, phase, read_ledger, status};
use docket_core::{dev, Decision, LedgerEntry, LedgerId, ProposalId, SignedProposal, Value};
use docket_execution::{Job, Phase};
use docket_node::client::Client;
use docket_node::local_cluster::LocalCluster;
use docket_node::rail::Rail;
use docket_node::wire::{Consistency, LedgerPage};

/// Funded settlements, one admitted payout request each.
const PAYOUTS: usize = 30;
/// How long the rail holds each answer: long enough that the agent ([`JOBS_INFLIGHT`] jobs
/// at a time) has requests in flight when the leader dies.
const RAIL_DELAY_MS: u64 = 150;
/// Jobs each agent runs at once (`execution.jobs_inflight_max`): above the agent's default
/// of 8, so many journal flushes overlap (they once starved sled's IO pool and froze the
/// agent; see `Journal::flush`).
const JOBS_INFLIGHT: usize = 16;
/// The leader is killed as soon as the rail has seen this many idempotency keys: past the
/// agent's first wave of jobs, so some payouts are reported (a job's slot frees only once
/// its outcome is committed), some are at the rail without an answer, and some are not
/// started.
const KILL_AFTER_KEYS: usize = 10;
/// Bound on the wait for the rail's first keys after the payouts are admitted.
const FIRST_KEYS_TIMEOUT_MS: u64 = 20_000;
/// Bound on the wait, from the kill, until every payout is paid (or a rail error).
const SETTLE_TIMEOUT_MS: u64 = 60_000;
/// Bound on the wait until a new leader's agent has resolved every payout job.
const RESOLVE_TIMEOUT_MS: u64 = 30_000;
const DEPOSIT: i64 = 1_000;

const PAYOUT_EXECUTED: &str = "SETTLEMENT.PAYOUT_EXECUTED";
const RAIL_ERROR: &str = "SETTLEMENT.RAIL_ERROR";

/// Writes the development executor key under `root` and answers the nodes' `[execution]`
/// section: the rail, allowed and configured, default limits, [`JOBS_INFLIGHT`] jobs at once.
fn execution_toml(root: &Path, rail: &Rail) -> String {
    let key = root.join("exec.key");
    docket_node::cli::write_key_file(&key, &dev::signing_key("exec"), true).expect("exec key");
    format!(
        "[execution]\nenabled = true\nkey_file = {key:?}\nallowed_urls = [{url:?}]\n\
         jobs_inflight_max = {JOBS_INFLIGHT}\n\n[execution.rail]\nurl = {url:?}\n",
        key = key.display().to_string(),
        url = rail.url(),
    )
}

fn proposal(
    ledger: &LedgerId,
    author: &str,
    action: &str,
    subject: &str,
    payload: Value,
    nonce: u64,
) -> SignedProposal {
    dev::proposal(ledger, author, action, subject, payload, vec![], nonce)
}

fn payout(ledger: &LedgerId, author: &str, subject: &str, amount: i64) -> SignedProposal {
    proposal(
        ledger,
        author,
        "SETTLEMENT.PAYOUT_REQUESTED",
        subject,
        Value::map([
            ("amount", Value::Int(amount)),
            ("beneficiary", format!("beneficiary-of-{subject}").into()),
        ]),
        1,
    )
}

fn decision(entry: &LedgerEntry) -> &Decision {
    &entry
        .decision_record()
        .expect("a submission answers a decision entry")
        .decision
}

/// Waits for a leader among the running nodes (not the killed node `not`) and answers it.
async fn new_leader(cluster: &LocalCluster, not: u64) -> u64 {
    let leader = cluster.leader().await.expect("a new leader is elected");
    assert_ne!(leader, not, "the killed node cannot lead");
    leader
}

/// Reads a settlement's state linearizably, trying every running node in turn.
async fn settlement_state(clients: &[Client], subject: &str) -> Option<String> {
    for c in clients {
        if let Ok(view) = c
            .state("settlement", subject, Consistency::Linearizable)
            .await
        {
            return view.state.map(|s| s.state);
        }
    }
    None
}

/// The last entry's hash at one node, from its own ledger (no read barrier, no forwarding).
async fn local_last_hash(url: &str, length: u64) -> String {
    let page: LedgerPage = reqwest::Client::new()
        .get(format!(
            "{url}/v1/ledger?from={}&limit=1&consistency=local",
            length - 1
        ))
        .timeout(Duration::from_millis(common::REQUEST_TIMEOUT_MS))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .unwrap_or_else(|e| panic!("local ledger read at {url}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("local ledger page at {url}: {e}"));
    assert_eq!(page.length, length, "{url}: ledger length");
    page.entries[0].hash.to_hex()
}

/// Waits until node `id`'s journal holds a resolved job for every payout.
async fn wait_resolved(cluster: &LocalCluster, id: u64, payouts: &[ProposalId]) {
    let c = client(&cluster.node(id).url());
    common::wait_for(
        &format!("node {id}'s agent to resolve every payout job"),
        RESOLVE_TIMEOUT_MS,
        || async {
            let mut open = 0;
            for payout in payouts {
                match c.execution::<docket_execution::Job>(*payout).await {
                    Ok(view) if view.job.as_ref().is_some_and(|j| j.is_resolved()) => {}
                    Ok(_) => open += 1,
                    Err(e) => return Err(e.to_string()),
                }
            }
            if open == 0 {
                Ok(())
            } else {
                Err(format!(
                    "{open} of {} payout jobs unresolved",
                    payouts.len()
                ))
            }
        },
    )
    .await
}

/// What each node is doing, for a failure message: whether its API answers (a node whose
/// runtime is blocked answers nothing) and the last lines of its log.
async fn diagnose(cluster: &LocalCluster) -> String {
    let mut out = String::new();
    for node in &cluster.nodes {
        let answer =
            match tokio::time::timeout(Duration::from_millis(2_000), client(&node.url()).status())
                .await
            {
                Ok(Ok(s)) => format!("{} term {} length {}", s.role, s.term, s.ledger_length),
                Ok(Err(e)) => format!("error: {e}"),
                Err(_) => "no answer within 2 s".to_owned(),
            };
        let log = std::fs::read_to_string(node.log_path()).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(8).collect();
        out.push_str(&format!(
            "\n--- node {} ({}): status {answer}; log tail:\n{}",
            node.id,
            if node.is_running() {
                "running"
            } else {
                "killed"
            },
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    out
}

/// Every running node's journal job for every payout (`None`: the node never looked at it).
async fn journals(
    cluster: &LocalCluster,
    payouts: &[ProposalId],
) -> BTreeMap<u64, BTreeMap<ProposalId, Option<Job>>> {
    let mut out = BTreeMap::new();
    for node in cluster.nodes.iter().filter(|n| n.is_running()) {
        let c = client(&node.url());
        let mut jobs = BTreeMap::new();
        for payout in payouts {
            let view = c
                .execution::<docket_execution::Job>(*payout)
                .await
                .unwrap_or_else(|e| panic!("node {}: execution view: {e}", node.id));
            jobs.insert(*payout, view.job);
        }
        out.insert(node.id, jobs);
    }
    out
}

/// The phase or resolution of a job, by name.
fn job_kind(job: Option<&Job>) -> String {
    let text = match job {
        None => return "no job".to_owned(),
        Some(Job {
            phase: Phase::Resolved { resolution },
            ..
        }) => format!("{resolution:?}"),
        Some(job) => format!("{:?}", job.phase),
    };
    text.split([' ', '{', '(']).next().unwrap_or("").to_owned()
}

/// Whether a job shows an attempt that was under way and never concluded on that node: an
/// `interrupted` evidence record, or still `Attempting`.
fn interrupted(job: Option<&Job>) -> bool {
    job.is_some_and(|j| {
        matches!(j.phase, Phase::Attempting { .. })
            || j.evidence.iter().any(|e| {
                e.reason
                    .as_deref()
                    .is_some_and(|r| r.starts_with("interrupted"))
            })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_sigkill_mid_batch_pays_each_admitted_payout_once() {
    let start = Instant::now();
    let rail = Rail::start_with_delay(Duration::from_millis(RAIL_DELAY_MS))
        .await
        .expect("rail");
    let (_dir, mut cluster) =
        formed_cluster_with_config("exec-failover", 3, |root| execution_toml(root, &rail)).await;
    let ledger = ledger_id(&cluster);
    let clients: Vec<Client> = cluster.nodes.iter().map(|n| client(&n.url())).collect();
    let first_leader = cluster.leader().await.expect("leader");
    let leader_client = client(&cluster.node(first_leader).url());
    phase(
        start,
        &format!(
            "3 nodes with execution agents formed; node {first_leader} leads; rail at {}",
            rail.url()
        ),
    );

    // Funding: one deposit per settlement, in one batch. Three extra settlements carry the
    // payout requests the constitution rejects.
    let subjects: Vec<String> = (0..PAYOUTS).map(|i| format!("fo-{i:02}")).collect();
    let extra: Vec<String> = (0..3).map(|i| format!("fo-rejected-{i}")).collect();
    let deposits: Vec<SignedProposal> = subjects
        .iter()
        .chain(&extra)
        .map(|s| {
            proposal(
                &ledger,
                "alice",
                "SETTLEMENT.DEPOSIT_CONFIRMED",
                s,
                Value::map([("amount", Value::Int(DEPOSIT)), ("currency", "EUR".into())]),
                1,
            )
        })
        .collect();
    let funded = leader_client
        .submit_batch(&deposits)
        .await
        .expect("deposit batch");
    assert!(
        funded
            .results
            .iter()
            .all(|r| *decision(&r.entry) == Decision::Admit),
        "every deposit is admitted"
    );
    phase(start, &format!("{} settlements funded", deposits.len()));

    // The payouts: two over the balance (INVARIANT), one by mallory (UNAUTHORIZED), then
    // one per funded settlement.
    let mut batch = vec![
        payout(&ledger, "alice", &extra[0], DEPOSIT + 1),
        payout(&ledger, "bob", &extra[1], 10 * DEPOSIT),
        payout(&ledger, "mallory", &extra[2], 1),
    ];
    let amounts: BTreeMap<String, i64> = subjects
        .iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), 100 + i as i64))
        .collect();
    batch.extend(
        subjects
            .iter()
            .map(|s| payout(&ledger, "alice", s, amounts[s])),
    );
    assert_eq!(
        status(&cluster, first_leader).await.role,
        "leader",
        "node {first_leader} still leads before the payouts"
    );
    let answered = leader_client
        .submit_batch(&batch)
        .await
        .expect("payout batch");
    let admitted_at = start.elapsed();
    let mut admitted: BTreeMap<ProposalId, (String, i64)> = BTreeMap::new();
    let mut rejected: BTreeSet<ProposalId> = BTreeSet::new();
    for (p, r) in batch.iter().zip(&answered.results) {
        match decision(&r.entry) {
            Decision::Admit => {
                admitted.insert(
                    p.id(),
                    (
                        p.proposal.subject.clone(),
                        p.proposal
                            .payload
                            .get("amount")
                            .and_then(Value::as_int)
                            .expect("amount"),
                    ),
                );
            }
            Decision::Reject(_) => {
                rejected.insert(p.id());
            }
            other => panic!("payout {} was {other:?}", p.id().short()),
        }
    }
    assert_eq!(
        admitted.len(),
        PAYOUTS,
        "one admitted payout per funded settlement"
    );
    assert_eq!(rejected.len(), 3, "three payout requests rejected");
    let payout_ids: Vec<ProposalId> = admitted.keys().copied().collect();
    phase(
        start,
        &format!(
            "{} payouts admitted, {} rejected; waiting for the rail's first {KILL_AFTER_KEYS} keys",
            admitted.len(),
            rejected.len()
        ),
    );

    // Kill the leader as soon as its agent is under way.
    let deadline = Instant::now() + Duration::from_millis(FIRST_KEYS_TIMEOUT_MS);
    while rail.payouts().len() < KILL_AFTER_KEYS {
        if Instant::now() > deadline {
            panic!(
                "the rail saw only {} keys within {FIRST_KEYS_TIMEOUT_MS} ms{}",
                rail.payouts().len(),
                diagnose(&cluster).await
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    cluster.kill(first_leader).await.expect("kill leader");
    let killed_at = Instant::now();
    let (keys_at_kill, requests_at_kill) = (rail.payouts().len(), rail.requests());
    phase(
        start,
        &format!(
            "SIGKILL of leader node {first_leader}, {} ms after the payouts were admitted: the \
             rail had seen {keys_at_kill} keys ({requests_at_kill} requests) of {PAYOUTS}",
            (start.elapsed() - admitted_at).as_millis()
        ),
    );
    assert!(
        keys_at_kill < PAYOUTS,
        "the kill must come in the middle of the batch ({keys_at_kill} of {PAYOUTS} keys seen)"
    );

    let second_leader = new_leader(&cluster, first_leader).await;
    phase(
        start,
        &format!(
            "node {second_leader} leads, {} ms after the kill; waiting for every payout to settle",
            killed_at.elapsed().as_millis()
        ),
    );
    let running: Vec<Client> = cluster
        .nodes
        .iter()
        .filter(|n| n.is_running())
        .map(|n| client(&n.url()))
        .collect();
    let settle_deadline = killed_at + Duration::from_millis(SETTLE_TIMEOUT_MS);
    let mut open: BTreeSet<String> = subjects.iter().cloned().collect();
    while !open.is_empty() {
        let mut still = BTreeSet::new();
        for subject in &open {
            match settlement_state(&running, subject).await.as_deref() {
                Some("paid") | Some("rail_error") => {}
                _ => {
                    still.insert(subject.clone());
                }
            }
        }
        open = still;
        if open.is_empty() {
            break;
        }
        if Instant::now() > settle_deadline {
            panic!(
                "{} payouts not settled {SETTLE_TIMEOUT_MS} ms after the kill: {open:?}{}",
                open.len(),
                diagnose(&cluster).await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    phase(
        start,
        &format!(
            "every payout settled {} ms after the kill; the rail saw {} keys, {} requests",
            killed_at.elapsed().as_millis(),
            rail.payouts().len(),
            rail.requests()
        ),
    );

    phase(
        start,
        &format!("restarting node {first_leader} from its data directory"),
    );
    cluster.start(first_leader).await.expect("restart");
    cluster
        .converged()
        .await
        .expect("converged after the restart");
    // The first leader's journal as the kill left it (a follower's agent does nothing):
    // which payouts it had reported, had in flight, or never started.
    let at_kill = journals(&cluster, &payout_ids)
        .await
        .remove(&first_leader)
        .expect("the restarted node answers");

    // A second leader change: nothing is left to do, so nothing may be sent.
    let rail_before = rail.payouts();
    let requests_before = rail.requests();
    phase(
        start,
        &format!("SIGKILL of leader node {second_leader}: the next leader must send nothing"),
    );
    cluster
        .kill(second_leader)
        .await
        .expect("kill second leader");
    let third_leader = new_leader(&cluster, second_leader).await;
    wait_resolved(&cluster, third_leader, &payout_ids).await;
    phase(
        start,
        &format!(
            "node {third_leader} leads{}; its agent resolved every payout job",
            if third_leader == first_leader {
                " (the first leader, with the interrupted attempts in its journal)"
            } else {
                " (it never led before: an empty journal)"
            }
        ),
    );
    assert_eq!(
        rail.requests(),
        requests_before,
        "the third leader sent nothing to the rail"
    );
    assert_eq!(rail.payouts(), rail_before);
    cluster.start(second_leader).await.expect("restart");
    let statuses = cluster.converged().await.expect("converged");
    let jobs = journals(&cluster, &payout_ids).await;
    for (node, node_jobs) in &jobs {
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        for job in node_jobs.values() {
            *kinds.entry(job_kind(job.as_ref())).or_default() += 1;
        }
        let broken = node_jobs
            .values()
            .filter(|j| interrupted(j.as_ref()))
            .count();
        phase(
            start,
            &format!("journal of node {node}: {kinds:?}; {broken} with an interrupted attempt"),
        );
    }

    // (a) The rail: one key per admitted payout, nothing else; effects once per key.
    let seen = rail.payouts();
    let expected_keys: BTreeSet<String> = admitted.keys().map(ProposalId::to_hex).collect();
    let seen_keys: BTreeSet<String> = seen.keys().cloned().collect();
    assert_eq!(
        seen_keys.difference(&expected_keys).count(),
        0,
        "the rail saw keys that are not admitted payouts: {:?}",
        seen_keys.difference(&expected_keys).collect::<Vec<_>>()
    );
    assert_eq!(
        expected_keys.difference(&seen_keys).count(),
        0,
        "admitted payouts that never reached the rail: {:?}",
        expected_keys.difference(&seen_keys).collect::<Vec<_>>()
    );
    for (id, (subject, amount)) in &admitted {
        let on_rail = &seen[&id.to_hex()];
        assert_eq!(
            on_rail.amount,
            Some(*amount),
            "{subject}: the rail paid another amount"
        );
    }
    for id in &rejected {
        assert!(!seen.contains_key(&id.to_hex()));
    }
    let total: u64 = seen.values().map(|p| u64::from(p.requests)).sum();
    assert_eq!(total, rail.requests(), "every rail request carried a key");
    let repeated: Vec<(String, u32)> = seen
        .iter()
        .filter(|(_, p)| p.requests > 1)
        .map(|(k, p)| (k[..16].to_owned(), p.requests))
        .collect();
    phase(
        start,
        &format!(
            "(a) rail: {} keys = the {} admitted payouts; {} requests; keys sent more than once \
             (interrupted attempts re-sent with the same key): {} {repeated:?}",
            seen.len(),
            admitted.len(),
            total,
            repeated.len()
        ),
    );

    // (b) The ledger: exactly one admitted outcome record per admitted payout.
    let entries = read_ledger(&clients[(third_leader - 1) as usize]).await;
    let exec_key = dev::key("exec");
    let mut outcomes: BTreeMap<ProposalId, Vec<&LedgerEntry>> = BTreeMap::new();
    let mut rejected_outcomes = Vec::new();
    let mut admission: BTreeMap<ProposalId, &LedgerEntry> = BTreeMap::new();
    for entry in &entries {
        let Some(record) = entry.decision_record() else {
            continue;
        };
        let p = &record.proposal.proposal;
        if admitted.contains_key(&record.id) && record.decision == Decision::Admit {
            admission.insert(record.id, entry);
        }
        if p.action != PAYOUT_EXECUTED && p.action != RAIL_ERROR {
            continue;
        }
        if record.decision != Decision::Admit {
            rejected_outcomes.push(format!(
                "#{} {} {}",
                entry.index,
                p.action,
                record.decision.label()
            ));
            continue;
        }
        let reports_on: ProposalId = p
            .payload
            .get("reports_on")
            .and_then(Value::as_str)
            .expect("outcome names reports_on")
            .parse()
            .expect("reports_on is a proposal id");
        assert_eq!(p.author, exec_key, "outcomes are signed by the executor");
        assert_eq!(
            p.dependencies,
            vec![reports_on],
            "an outcome depends on its payout"
        );
        outcomes.entry(reports_on).or_default().push(entry);
    }
    for (id, (subject, _)) in &admitted {
        let found = outcomes.get(id).map_or(0, Vec::len);
        assert_eq!(
            found,
            1,
            "{subject}: payout {} has {found} admitted outcome records",
            id.short()
        );
        let record = outcomes[id][0].decision_record().expect("decision");
        assert_eq!(record.proposal.proposal.subject, *subject);
        if record.proposal.proposal.action == PAYOUT_EXECUTED {
            let rail_ref = record.proposal.proposal.payload.get("rail_ref");
            assert_eq!(
                rail_ref.and_then(Value::as_str),
                Some(seen[&id.to_hex()].rail_ref.as_str()),
                "{subject}: the ledger records the rail's one effect for the key"
            );
        }
    }
    let strays: Vec<String> = outcomes
        .keys()
        .filter(|id| !admitted.contains_key(id))
        .map(ProposalId::short)
        .collect();
    assert!(
        strays.is_empty(),
        "outcome records about proposals that are not admitted payouts: {strays:?}"
    );
    let executed = outcomes
        .values()
        .filter(|v| {
            v[0].decision_record()
                .is_some_and(|d| d.proposal.proposal.action == PAYOUT_EXECUTED)
        })
        .count();
    let mut latencies: Vec<u64> = admitted
        .keys()
        .map(|id| outcomes[id][0].time.0.saturating_sub(admission[id].time.0))
        .collect();
    latencies.sort_unstable();
    phase(
        start,
        &format!(
            "(b) ledger of {} entries: {} admitted outcome records ({executed} executed, {} rail \
             errors), one per payout; rejected outcome records: {} {rejected_outcomes:?}; \
             admission-to-outcome ledger time p50 {} ms, max {} ms",
            entries.len(),
            outcomes.len(),
            outcomes.len() - executed,
            rejected_outcomes.len(),
            latencies[latencies.len() / 2],
            latencies[latencies.len() - 1]
        ),
    );

    // Why keys were sent more than once: which node's evidence each admitted outcome
    // reports (its evidence hash), and what the first leader's journal says of the key.
    let owner = |id: &ProposalId| -> Option<u64> {
        let record = outcomes[id][0].decision_record()?;
        let hash = record
            .proposal
            .proposal
            .payload
            .get("evidence_hash")?
            .as_str()?;
        jobs.iter()
            .find(|(_, node_jobs)| {
                node_jobs
                    .get(id)
                    .and_then(Option::as_ref)
                    .is_some_and(|j| j.evidence.iter().any(|e| e.hash_hex() == hash))
            })
            .map(|(node, _)| *node)
    };
    let mut reporters: BTreeMap<String, usize> = BTreeMap::new();
    for id in admitted.keys() {
        let who = owner(id).map_or("unknown".to_owned(), |n| format!("node {n}"));
        *reporters.entry(who).or_default() += 1;
    }
    let mut causes: BTreeMap<&str, usize> = BTreeMap::new();
    for id in admitted.keys() {
        if seen[&id.to_hex()].requests < 2 {
            continue;
        }
        let first = at_kill.get(id).and_then(Option::as_ref);
        let cause = if owner(id) == Some(first_leader) {
            "re-sent although the first leader's outcome was in the log (avoidable)"
        } else if interrupted(first) {
            "interrupted at the first leader"
        } else if first
            .is_some_and(|j| matches!(j.phase, Phase::Concluded { .. } | Phase::Filed { .. }))
        {
            "concluded at the first leader, outcome never committed"
        } else {
            "unexplained"
        };
        *causes.entry(cause).or_default() += 1;
    }
    phase(
        start,
        &format!("outcome records by reporting node: {reporters:?}; repeated keys: {causes:?}"),
    );
    // The node publishes leadership to its agent only once confirmed in the term (every
    // entry of earlier terms applied), so no leader re-sends a payout whose outcome record
    // an earlier leader got committed, and no second outcome record is ever filed.
    assert!(
        !causes.keys().any(|c| c.ends_with("(avoidable)")),
        "a new leader re-sent payouts that were already reported: {causes:?}"
    );
    assert!(
        rejected_outcomes.is_empty(),
        "second outcome records were filed (and rejected): {rejected_outcomes:?}"
    );
    assert!(
        !causes.contains_key("unexplained"),
        "a key was sent more than once with no interrupted or unreported attempt at the \
         first leader: {causes:?}"
    );

    // (c) Every node: same length, state hash and last entry.
    assert_eq!(statuses.len(), 3, "all three nodes answer");
    let length = statuses[0].ledger_length;
    assert_eq!(
        length,
        entries.len() as u64,
        "the ledger read is the whole ledger"
    );
    let mut last = BTreeSet::new();
    for node in &cluster.nodes {
        last.insert(local_last_hash(&node.url(), length).await);
    }
    assert_eq!(last.len(), 1, "nodes disagree on the last entry: {last:?}");
    assert_eq!(
        last.first().map(String::as_str),
        Some(entries[entries.len() - 1].hash.to_hex().as_str())
    );
    phase(
        start,
        &format!(
            "(c) all 3 nodes at length {length}, state hash {}, last entry {}",
            statuses[0].state_hash.map_or("-".into(), |h| h.short()),
            &last.first().expect("one hash")[..16]
        ),
    );
    phase(start, "done");
}
