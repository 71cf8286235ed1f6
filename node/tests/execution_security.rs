//! Execution security with real processes: what the executor key cannot do, and effects the
//! gate refuses at run time, with evidence and an outcome record that says so.
//!
//! One 3-node cluster, each node with an execution agent: the payment rail, KES deployment
//! into a sandbox directory, and a webhook on `AUCTION.OPENED` whose target may be chosen by
//! the proposer (`url_field = "callback"`). The allowlist holds the test rail's `/payouts`
//! only. A second rail, outside the allowlist, stands for an attacker's endpoint.
//!
//! * The executor key filing `SETTLEMENT.DEPOSIT_CONFIRMED` is recorded as `UNAUTHORIZED`.
//! * Forged outcomes are not admitted: about a payout that was rejected (never admitted):
//!   `DEPENDENCY_REJECTED`, for `SETTLEMENT.PAYOUT_EXECUTED` and `EXECUTION.OUTCOME`; one
//!   whose `reports_on` is not among its dependencies: `INVARIANT`; one filed by a treasurer
//!   instead of the executor: `UNAUTHORIZED`. The settlement is untouched and the rail saw
//!   nothing.
//! * A webhook target taken from a payload and outside the allowlist is refused at run time:
//!   `GET /v1/execution/{id}` shows refused evidence with its reason and no request made, the
//!   outside endpoint saw nothing, and the outcome record says `refused` (with a control:
//!   an allowed callback is delivered and reported `success`).
//! * KES deployments that would leave the sandbox are refused the same way: a subject with
//!   `..`, and a subject directory that is a symbolic link planted in the sandbox (with a
//!   control: a plain subject is deployed).

mod common;

use std::path::Path;
use std::time::Instant;

use common::{client, formed_cluster_with_config, ledger_id, phase, read_ledger};
use docket_core::{dev, Decision, LedgerEntry, ProposalId, RejectCode, SignedProposal, Value};
use docket_execution::{Job, OutcomeKind, Phase, Resolution};
use docket_node::client::Client;
use docket_node::local_cluster::LocalCluster;
use docket_node::rail::Rail;
use docket_node::wire::Consistency;

/// Bound on the wait for an outcome record to be committed.
const OUTCOME_TIMEOUT_MS: u64 = 20_000;

/// Writes the executor key, the sandbox (with a symbolic link planted in it, pointing out)
/// and answers the nodes' `[execution]` section.
fn execution_toml(root: &Path, rail: &Rail) -> String {
    let key = root.join("exec.key");
    docket_node::cli::write_key_file(&key, &dev::signing_key("exec"), true).expect("exec key");
    let deploy = root.join("deploy");
    std::fs::create_dir_all(&deploy).expect("sandbox");
    std::fs::create_dir_all(root.join("outside")).expect("outside directory");
    std::os::unix::fs::symlink(root.join("outside"), deploy.join("kes-link")).expect("symlink");
    format!(
        "[execution]\nenabled = true\nkey_file = {key:?}\nallowed_urls = [{url:?}]\n\n\
         [execution.rail]\nurl = {url:?}\n\n\
         [execution.kes_deploy]\ndir = {deploy:?}\n\n\
         [[execution.webhooks]]\nname = \"callbacks\"\nurl = {url:?}\nurl_field = \"callback\"\n\
         on = [{{ domain = \"auction\", action = \"AUCTION.OPENED\" }}]\n",
        key = key.display().to_string(),
        url = rail.url(),
        deploy = deploy.display().to_string(),
    )
}

/// Submits `proposals` as one batch and answers each one's decision entry.
async fn submit_all(c: &Client, proposals: &[SignedProposal]) -> Vec<LedgerEntry> {
    let answer = c.submit_batch(proposals).await.expect("batch");
    assert_eq!(answer.results.len(), proposals.len());
    answer.results.into_iter().map(|r| r.entry).collect()
}

fn decision(entry: &LedgerEntry) -> &Decision {
    &entry.decision_record().expect("a decision entry").decision
}

fn assert_rejected(entry: &LedgerEntry, code: RejectCode, what: &str) -> String {
    match decision(entry) {
        Decision::Reject(r) if r.code == code => r.detail.clone(),
        other => panic!("{what}: expected {code}, recorded {other:?}"),
    }
}

/// Waits until the outcome record about `id` is committed and answers its `outcome` field.
async fn reported(c: &Client, id: ProposalId) -> String {
    common::wait_for(
        &format!("an outcome record about {}", id.short()),
        OUTCOME_TIMEOUT_MS,
        || async {
            let view = c
                .state("execution", &id.to_hex(), Consistency::Linearizable)
                .await
                .map_err(|e| e.to_string())?;
            match view.state {
                Some(s) if s.state == "reported" => Ok(s
                    .fields
                    .get("outcome")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
}

/// The job some node's agent holds for `id`, asking the leader first (evidence is local to
/// the node that executed it).
async fn job(cluster: &LocalCluster, id: ProposalId) -> (u64, Job) {
    let leader = cluster.leader().await.expect("leader");
    let mut order: Vec<u64> = vec![leader];
    order.extend(cluster.nodes.iter().map(|n| n.id).filter(|n| *n != leader));
    for node in order {
        let view = client(&cluster.node(node).url())
            .execution::<docket_execution::Job>(id)
            .await
            .expect("execution view");
        assert!(view.enabled, "node {node} runs an execution agent");
        if let Some(job) = view.job.filter(|j| !j.evidence.is_empty()) {
            return (node, job);
        }
    }
    panic!("no node holds evidence for {}", id.short());
}

/// Checks a refused job: resolved by an admitted outcome record, its last evidence record a
/// refusal whose reason contains `because`, with nothing sent or written.
fn assert_refused(node: u64, job: &Job, because: &str) -> String {
    let evidence = job.evidence.last().expect("evidence");
    assert_eq!(
        evidence.outcome,
        OutcomeKind::Refused,
        "node {node}: {evidence:?}"
    );
    let reason = evidence.reason.clone().unwrap_or_default();
    assert!(
        reason.contains(because),
        "node {node}: refusal reason {reason:?} does not say {because:?}"
    );
    assert!(
        evidence.effects.is_empty(),
        "a refusal performs nothing: {:?}",
        evidence.effects
    );
    assert_eq!(evidence.cost.attempts, 0, "a refusal sends nothing");
    assert_eq!(evidence.instance, job.proposal_id);
    assert!(
        matches!(
            job.phase,
            Phase::Resolved {
                resolution: Resolution::OutcomeRecorded { .. }
            }
        ),
        "node {node}: the refusal was reported: {:?}",
        job.phase
    );
    reason
}

/// The admitted `EXECUTION.OUTCOME` about `id` in the ledger, or a panic.
fn outcome_record(entries: &[LedgerEntry], id: ProposalId) -> &LedgerEntry {
    let hex = id.to_hex();
    let found: Vec<&LedgerEntry> = entries
        .iter()
        .filter(|e| {
            e.decision_record().is_some_and(|d| {
                d.decision == Decision::Admit
                    && d.proposal.proposal.action == "EXECUTION.OUTCOME"
                    && d.proposal.proposal.subject == hex
            })
        })
        .collect();
    assert_eq!(found.len(), 1, "one outcome record about {}", id.short());
    let p = &found[0]
        .decision_record()
        .expect("decision")
        .proposal
        .proposal;
    assert_eq!(
        p.dependencies,
        vec![id],
        "the outcome depends on {}",
        id.short()
    );
    assert_eq!(p.author, dev::key("exec"));
    found[0]
}

fn payload_str<'a>(entry: &'a LedgerEntry, field: &str) -> &'a str {
    entry
        .decision_record()
        .and_then(|d| d.proposal.proposal.payload.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn kes(p: &mut dev::Proposer, subject: &str) -> Vec<SignedProposal> {
    let ratify = Value::map([
        ("version", "v1".into()),
        ("version_hash", "22".repeat(32).into()),
    ]);
    vec![
        p.make(
            "grace",
            "KES.VERSION_PROPOSED",
            subject,
            Value::map([
                ("version", "v1".into()),
                ("version_hash", "22".repeat(32).into()),
                ("commitments", Value::List(vec!["ipfs://c".into()])),
                ("parent", Value::Null),
            ]),
            vec![],
        ),
        p.make(
            "grace",
            "KES.VERSION_RATIFIED",
            subject,
            ratify.clone(),
            vec![],
        ),
        p.make("heidi", "KES.VERSION_RATIFIED", subject, ratify, vec![]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn executor_key_forges_nothing_and_the_gate_refuses_with_evidence() {
    let start = Instant::now();
    let rail = Rail::start().await.expect("rail");
    let outside = Rail::start().await.expect("outside endpoint");
    let (dir, cluster) =
        formed_cluster_with_config("exec-security", 3, |root| execution_toml(root, &rail)).await;
    let root = dir.path().to_owned();
    let mut p = dev::Proposer::new(ledger_id(&cluster), 0);
    let leader = cluster.leader().await.expect("leader");
    let c = client(&cluster.node(leader).url());
    phase(
        start,
        &format!(
            "cluster formed, node {leader} leads; allowed rail {}, outside endpoint {}",
            rail.url(),
            outside.url()
        ),
    );

    // The executor key and forged outcomes.
    let stolen = p.make(
        "exec",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "sec-1",
        Value::map([
            ("amount", Value::Int(1_000_000)),
            ("currency", "EUR".into()),
        ]),
        vec![],
    );
    let deposit = p.make(
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "sec-1",
        Value::map([("amount", Value::Int(500)), ("currency", "EUR".into())]),
        vec![],
    );
    let rogue = p.make(
        "mallory",
        "SETTLEMENT.PAYOUT_REQUESTED",
        "sec-1",
        Value::map([
            ("amount", Value::Int(400)),
            ("beneficiary", "mallory".into()),
        ]),
        vec![],
    );
    let entries = submit_all(&c, &[stolen, deposit.clone(), rogue.clone()]).await;
    let detail = assert_rejected(
        &entries[0],
        RejectCode::Unauthorized,
        "the executor confirming a deposit",
    );
    phase(
        start,
        &format!("executor key filing SETTLEMENT.DEPOSIT_CONFIRMED: UNAUTHORIZED ({detail})"),
    );
    assert_eq!(*decision(&entries[1]), Decision::Admit, "alice's deposit");
    assert_rejected(&entries[2], RejectCode::Unauthorized, "mallory's payout");
    let (dep, rogue_id) = (deposit.id(), rogue.id());
    let evidence_hash = Value::Str("ab".repeat(32));
    let forged = vec![
        // About a payout that was never admitted.
        p.make(
            "exec",
            "SETTLEMENT.PAYOUT_EXECUTED",
            "sec-1",
            Value::map([
                ("reports_on", rogue_id.to_hex().into()),
                ("rail_ref", "forged".into()),
                ("evidence_hash", evidence_hash.clone()),
            ]),
            vec![rogue_id],
        ),
        p.make(
            "exec",
            "EXECUTION.OUTCOME",
            &rogue_id.to_hex(),
            Value::map([
                ("reports_on", rogue_id.to_hex().into()),
                ("outcome", "success".into()),
                ("evidence_hash", evidence_hash.clone()),
            ]),
            vec![rogue_id],
        ),
        // `reports_on` that is not a dependency.
        p.make(
            "exec",
            "EXECUTION.OUTCOME",
            &dep.to_hex(),
            Value::map([
                ("reports_on", dep.to_hex().into()),
                ("outcome", "success".into()),
                ("evidence_hash", evidence_hash.clone()),
            ]),
            vec![],
        ),
        // An outcome filed by a treasurer, not the executor.
        p.make(
            "alice",
            "SETTLEMENT.PAYOUT_EXECUTED",
            "sec-1",
            Value::map([
                ("reports_on", dep.to_hex().into()),
                ("rail_ref", "forged".into()),
            ]),
            vec![dep],
        ),
    ];
    let entries = submit_all(&c, &forged).await;
    let expected = [
        (
            RejectCode::DependencyRejected,
            "PAYOUT_EXECUTED about a rejected payout",
        ),
        (
            RejectCode::DependencyRejected,
            "EXECUTION.OUTCOME about a rejected payout",
        ),
        (
            RejectCode::Invariant,
            "EXECUTION.OUTCOME whose reports_on is no dependency",
        ),
        (
            RejectCode::Unauthorized,
            "PAYOUT_EXECUTED filed by a treasurer",
        ),
    ];
    let mut details = Vec::new();
    for (entry, (code, what)) in entries.iter().zip(expected) {
        let detail = assert_rejected(entry, code, what);
        phase(start, &format!("forged {what}: {code} ({detail})"));
        details.push(detail);
    }
    assert!(
        details[2].contains("not among the dependencies"),
        "{}",
        details[2]
    );
    let settlement = c
        .state("settlement", "sec-1", Consistency::Linearizable)
        .await
        .expect("state")
        .state
        .expect("sec-1 exists");
    assert_eq!(settlement.state, "funded", "sec-1 is untouched");
    assert_eq!(settlement.fields.get("balance"), Some(&Value::Int(500)));
    let rogue_state = c
        .state("execution", &rogue_id.to_hex(), Consistency::Linearizable)
        .await
        .expect("state");
    assert!(
        rogue_state.state.is_none(),
        "no outcome about the rejected payout"
    );
    assert!(rail.payouts().is_empty(), "the rail saw nothing");

    // A webhook target outside the allowlist, chosen by the payload.
    let out = p.make(
        "olivia",
        "AUCTION.OPENED",
        "sec-auction-out",
        Value::map([
            ("reserve", Value::Int(10)),
            ("item", "lamp".into()),
            ("callback", outside.url().into()),
        ]),
        vec![],
    );
    let inside = p.make(
        "olivia",
        "AUCTION.OPENED",
        "sec-auction-in",
        Value::map([
            ("reserve", Value::Int(10)),
            ("item", "vase".into()),
            ("callback", rail.url().into()),
        ]),
        vec![],
    );
    // KES deployments: one leaving the sandbox by `..`, one through a planted link, one plain.
    let mut deploys = kes(&mut p, "../escape");
    deploys.extend(kes(&mut p, "kes-link"));
    deploys.extend(kes(&mut p, "kes-ok"));
    let mut batch = vec![out.clone(), inside.clone()];
    batch.extend(deploys.iter().cloned());
    let entries = submit_all(&c, &batch).await;
    for (proposal, entry) in batch.iter().zip(&entries) {
        assert_eq!(
            *decision(entry),
            Decision::Admit,
            "{} on {}",
            proposal.proposal.action,
            proposal.proposal.subject
        );
    }
    let (escape, link, plain) = (deploys[2].id(), deploys[5].id(), deploys[8].id());
    let outcomes = [
        (
            out.id(),
            "refused",
            "webhook to an endpoint outside the allowlist",
        ),
        (
            inside.id(),
            "success",
            "webhook to an allowed endpoint (control)",
        ),
        (escape, "refused", "KES deployment to ../escape"),
        (link, "refused", "KES deployment through a symbolic link"),
        (plain, "success", "KES deployment to kes-ok (control)"),
    ];
    for (id, want, what) in outcomes {
        let got = reported(&c, id).await;
        assert_eq!(got, want, "{what}: outcome");
    }
    phase(
        start,
        "outcome records committed: refused, success, refused, refused, success",
    );
    let ledger = read_ledger(&c).await;

    let (node, refused) = job(&cluster, out.id()).await;
    let reason = assert_refused(node, &refused, "is not in the allowlist");
    let record = outcome_record(&ledger, out.id());
    assert!(payload_str(record, "reason").contains("is not in the allowlist"));
    assert_eq!(payload_str(record, "effect"), "webhook/callbacks");
    assert_eq!(
        payload_str(record, "evidence_hash"),
        refused.evidence.last().expect("evidence").hash_hex(),
        "the outcome record commits to the refusal evidence"
    );
    assert_eq!(
        outside.requests(),
        0,
        "nothing reached the outside endpoint"
    );
    phase(
        start,
        &format!(
            "webhook refused (evidence at node {node}, ledger #{}): {reason}",
            record.index
        ),
    );
    let (node, delivered) = job(&cluster, inside.id()).await;
    let last = delivered.evidence.last().expect("evidence");
    assert_eq!(last.outcome, OutcomeKind::Success, "node {node}: {last:?}");
    assert_eq!(
        rail.payouts()
            .get(&inside.id().to_hex())
            .map(|p| p.requests),
        Some(1),
        "the allowed callback was delivered once, with its idempotency key"
    );

    for (id, because, what) in [
        (escape, "`..` would leave the sandbox", "../escape"),
        (link, "symbolic link", "kes-link"),
    ] {
        let (node, job) = job(&cluster, id).await;
        let reason = assert_refused(node, &job, because);
        let record = outcome_record(&ledger, id);
        assert!(payload_str(record, "reason").contains(because));
        assert_eq!(payload_str(record, "effect"), "kes_deploy");
        phase(
            start,
            &format!(
                "KES deployment {what} refused (evidence at node {node}, ledger #{}): {reason}",
                record.index
            ),
        );
    }
    assert!(
        !root.join("escape").exists(),
        "nothing written above the sandbox"
    );
    let outside_dir: Vec<_> = std::fs::read_dir(root.join("outside"))
        .expect("outside directory")
        .collect();
    assert!(
        outside_dir.is_empty(),
        "nothing written through the link: {outside_dir:?}"
    );
    assert!(
        root.join("deploy").join("kes-ok").join("v1.json").is_file(),
        "the control deployment was written"
    );
    outcome_record(&ledger, plain);

    cluster.converged().await.expect("converged");
    phase(start, "done");
    // The children go before their data directory.
    drop(cluster);
    drop(dir);
}
