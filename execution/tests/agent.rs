//! The execution agent end to end, in isolation: a real core state behind an in-memory
//! host, real HTTP endpoints on 127.0.0.1:0, real files in a temporary sandbox.

#![allow(clippy::unwrap_used)] // Tests unwrap.

mod support;

use std::sync::Arc;
use std::time::Duration;

use docket_core::{dev, Decision, Value};
use docket_execution::journal::{Phase, Resolution};
use docket_execution::{
    EpochEnd, KesDeployConfig, Leadership, OutcomeKind, RailConfig, TriggerConfig, WebhookConfig,
};
use support::*;

fn rail_config(target: &Target) -> docket_execution::ExecutionConfig {
    let mut config = config(target);
    config.rail = Some(RailConfig {
        url: target.url("/payouts"),
        amount_max: 1_000_000,
        limits: fast_limits(),
    });
    config
}

fn idle(unfinished: usize) -> impl Fn(&EpochEnd) -> bool {
    move |end| matches!(end, EpochEnd::Idle { unfinished: u, .. } if *u == unfinished)
}

#[tokio::test]
async fn payout_reaches_the_rail_once_and_its_outcome_commits() {
    let host = FakeHost::new();
    let rail = Target::start().await;
    let dir = tempfile::tempdir().unwrap();
    let executor = executor(&rail_config(&rail), dir.path());

    let payout = funded_payout(&host, "stl-1", 1_000, 400);
    let end = executor.run_until_idle(&*host, 1).await.unwrap();
    assert!(idle(0)(&end), "{end:?}");

    // The rail saw one request, with the proposal id as idempotency key and the payout.
    let received = rail.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].key.as_deref(), Some(payout.to_hex().as_str()));
    let body: serde_json::Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(body["amount"], 400);
    assert_eq!(body["currency"], "EUR");
    assert_eq!(body["beneficiary"], "DE89-bob");
    assert_eq!(body["idempotency_key"], payout.to_hex());
    assert_eq!(rail.performed().len(), 1);

    // Exactly one outcome record, admitted, signed by the executor, depending on the request.
    let outcomes = host.outcomes_about(&payout);
    assert_eq!(outcomes.len(), 1);
    let outcome = &outcomes[0];
    assert_eq!(outcome.decision, Decision::Admit);
    let p = &outcome.proposal.proposal;
    assert_eq!(p.action, "SETTLEMENT.PAYOUT_EXECUTED");
    assert_eq!(p.subject, "stl-1");
    assert_eq!(p.author, dev::key("exec"));
    assert_eq!(p.dependencies, vec![payout]);
    assert_eq!(
        p.payload.get("rail_ref"),
        Some(&Value::Str("rail-1".into()))
    );
    assert_eq!(outcome.access.role.as_deref(), Some("executor"));
    assert_eq!(
        host.subject_state("settlement", "stl-1").unwrap().state,
        "paid"
    );

    // Evidence: one successful attempt, and the outcome commits to its hash.
    let evidence = executor.journal().evidence(&payout).unwrap();
    assert_eq!(evidence.len(), 1);
    let e = &evidence[0];
    assert_eq!(e.outcome, OutcomeKind::Success);
    assert_eq!(e.command, "SETTLEMENT.PAYOUT_REQUESTED");
    assert_eq!(e.instance, payout);
    assert_eq!(e.term, 1);
    assert_eq!(e.cost.attempts, 1);
    assert_eq!(e.effects.len(), 1);
    assert_eq!(e.effects[0].target, rail.url("/payouts"));
    assert_eq!(
        e.inputs_hash,
        blake3::hash(&received[0].body).to_hex().to_string()
    );
    assert!(e.outputs_hash.is_some());
    let request_index = host.records("SETTLEMENT.PAYOUT_REQUESTED")[0].0;
    assert_eq!(e.ledger_index, request_index);
    assert_eq!(
        p.payload.get("evidence_hash"),
        Some(&Value::Str(e.hash_hex()))
    );
    let job = executor.journal().job(&payout).unwrap().unwrap();
    assert!(matches!(
        job.phase,
        Phase::Resolved {
            resolution: Resolution::OutcomeRecorded { .. }
        }
    ));

    // Running again changes nothing.
    executor.run_until_idle(&*host, 1).await.unwrap();
    assert_eq!(rail.received().len(), 1);
    assert_eq!(host.outcomes_about(&payout).len(), 1);
}

#[tokio::test]
async fn restart_on_the_same_journal_refiles_the_outcome_without_repeating_the_effect() {
    let host = FakeHost::new();
    let rail = Target::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = rail_config(&rail);
    let payout = funded_payout(&host, "stl-1", 1_000, 400);

    // The effect happens, but the outcome cannot be filed (the host keeps refusing).
    host.fail_submits
        .store(1_000, std::sync::atomic::Ordering::SeqCst);
    {
        let first = executor(&config, dir.path());
        let end = first.run_until_idle(&*host, 1).await.unwrap();
        assert!(idle(1)(&end), "{end:?}");
        let job = first.journal().job(&payout).unwrap().unwrap();
        assert!(matches!(job.phase, Phase::Filed { .. }), "{:?}", job.phase);
    }
    assert_eq!(rail.requests_with_key(&payout), 1);
    assert!(host.outcomes_about(&payout).is_empty());

    // A new agent instance on the same journal (a restart, or this node leading again).
    host.fail_submits
        .store(0, std::sync::atomic::Ordering::SeqCst);
    host.set_leader(true, 2);
    let second = executor(&config, dir.path());
    let end = second.run_until_idle(&*host, 2).await.unwrap();
    assert!(idle(0)(&end), "{end:?}");
    assert_eq!(
        rail.requests_with_key(&payout),
        1,
        "the effect is not repeated"
    );
    let outcomes = host.outcomes_about(&payout);
    assert_eq!(outcomes.len(), 1, "exactly one outcome record");
    assert_eq!(outcomes[0].decision, Decision::Admit);
    assert_eq!(second.journal().evidence(&payout).unwrap().len(), 1);
}

#[tokio::test]
async fn a_new_leader_with_a_fresh_journal_relies_on_the_ledger_and_the_idempotency_key() {
    let host = FakeHost::new();
    let rail = Target::start().await;
    let config = rail_config(&rail);
    let old_dir = tempfile::tempdir().unwrap();
    let new_dir = tempfile::tempdir().unwrap();

    // Old leader: payout A fully reported; payout B performed, outcome never filed (it
    // crashed before it could).
    let a = funded_payout(&host, "stl-a", 1_000, 100);
    let old = executor(&config, old_dir.path());
    assert!(idle(0)(&old.run_until_idle(&*host, 1).await.unwrap()));
    let b = funded_payout(&host, "stl-b", 1_000, 200);
    host.fail_submits
        .store(1_000, std::sync::atomic::Ordering::SeqCst);
    assert!(idle(1)(&old.run_until_idle(&*host, 1).await.unwrap()));
    drop(old);
    assert_eq!(rail.performed().len(), 2);

    // New leader, another node: an empty journal.
    host.fail_submits
        .store(0, std::sync::atomic::Ordering::SeqCst);
    host.set_leader(true, 2);
    let new = executor(&config, new_dir.path());
    assert!(idle(0)(&new.run_until_idle(&*host, 2).await.unwrap()));

    // A: the ledger already holds its outcome, so nothing was sent.
    assert_eq!(rail.requests_with_key(&a), 1);
    let job = new.journal().job(&a).unwrap().unwrap();
    assert_eq!(
        job.phase,
        Phase::Resolved {
            resolution: Resolution::AlreadyReported
        }
    );
    assert!(job.evidence.is_empty());
    // B: re-sent with the same key; the rail performed it once; one outcome record.
    assert_eq!(rail.requests_with_key(&b), 2);
    assert_eq!(rail.performed().len(), 2, "one payout per idempotency key");
    for id in [a, b] {
        let outcomes = host.outcomes_about(&id);
        assert_eq!(outcomes.len(), 1);
        assert_eq!(outcomes[0].decision, Decision::Admit);
    }
    assert_eq!(
        host.subject_state("settlement", "stl-b").unwrap().state,
        "paid"
    );
}

#[tokio::test]
async fn the_agent_follows_leadership_and_an_interrupted_attempt_is_retried_with_the_same_key() {
    let host = FakeHost::new();
    let rail = Target::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = rail_config(&rail);
    config.rail.as_mut().unwrap().limits.timeout_ms = 10_000;
    config.rail.as_mut().unwrap().limits.deadline_ms = 20_000;
    let executor = Arc::new(executor(&config, dir.path()));

    let (leadership_tx, leadership_rx) = tokio::sync::watch::channel(Leadership {
        leader: false,
        term: 1,
    });
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn({
        let (executor, host) = (executor.clone(), host.clone());
        async move { executor.run(&*host, leadership_rx, shutdown_rx).await }
    });

    // Not leader: nothing happens.
    let first = funded_payout(&host, "stl-1", 1_000, 100);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(rail.received().is_empty(), "a follower performs nothing");

    // Leader: the rail performs the payout but hangs before answering; leadership is lost
    // mid-attempt.
    rail.script([Behavior::Hang(Duration::from_secs(30))]);
    host.set_leader(true, 2);
    leadership_tx
        .send(Leadership {
            leader: true,
            term: 2,
        })
        .unwrap();
    eventually("the rail received the payout", || {
        rail.received().len() == 1
    })
    .await;
    host.set_leader(false, 3);
    leadership_tx
        .send(Leadership {
            leader: false,
            term: 3,
        })
        .unwrap();
    eventually("the attempt is journaled as in flight", || {
        matches!(
            executor.journal().job(&first).unwrap().map(|j| j.phase),
            Some(Phase::Attempting { .. })
        )
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(host.outcomes_about(&first).is_empty());

    // A payout admitted while this node follows is left alone...
    let second = funded_payout(&host, "stl-2", 1_000, 100);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rail.requests_with_key(&second), 0);

    // ...until it leads again: the interrupted attempt is retried with the same key (the
    // rail performs it once), the new payout runs, each gets one outcome record.
    host.set_leader(true, 4);
    leadership_tx
        .send(Leadership {
            leader: true,
            term: 4,
        })
        .unwrap();
    eventually("both payouts reported", || {
        host.outcomes_about(&first).len() == 1 && host.outcomes_about(&second).len() == 1
    })
    .await;
    assert_eq!(rail.requests_with_key(&first), 2);
    assert_eq!(rail.requests_with_key(&second), 1);
    assert_eq!(rail.performed().len(), 2, "once per idempotency key");
    let evidence = executor.journal().evidence(&first).unwrap();
    assert_eq!(evidence.len(), 2, "{evidence:#?}");
    assert_eq!(evidence[0].outcome, OutcomeKind::Failure);
    assert!(evidence[0]
        .reason
        .as_deref()
        .unwrap()
        .starts_with("interrupted"));
    assert_eq!(evidence[0].term, 2);
    assert_eq!(evidence[1].outcome, OutcomeKind::Success);
    assert_eq!(evidence[1].term, 4);
    assert_eq!(evidence[1].attempt, 2);

    shutdown_tx.send(true).unwrap();
    agent.await.unwrap().unwrap();
}

/// An attempt cut off mid-flight, whose payout another leader then reported: the ledger
/// resolves the job, and the journal keeps the evidence that a request may have gone out.
#[tokio::test]
async fn an_interrupted_attempt_keeps_its_evidence_when_the_ledger_resolves_the_job() {
    let host = FakeHost::new();
    let rail = Target::start().await;
    let mut config = rail_config(&rail);
    config.rail.as_mut().unwrap().limits.timeout_ms = 10_000;
    config.rail.as_mut().unwrap().limits.deadline_ms = 20_000;
    let first_dir = tempfile::tempdir().unwrap();
    let second_dir = tempfile::tempdir().unwrap();
    let payout = funded_payout(&host, "stl-1", 1_000, 100);

    // The first leader's attempt reaches the rail, which never answers; the epoch is cut off.
    rail.script([Behavior::Hang(Duration::from_secs(30))]);
    let first = executor(&config, first_dir.path());
    let cut = tokio::time::timeout(
        Duration::from_millis(1_000),
        first.run_until_idle(&*host, 1),
    )
    .await;
    assert!(cut.is_err(), "the attempt hangs until the epoch is dropped");
    assert!(matches!(
        first.journal().job(&payout).unwrap().map(|j| j.phase),
        Some(Phase::Attempting { attempt: 1, .. })
    ));

    // Another node leads and reports the payout (same key, the rail pays once).
    host.set_leader(true, 2);
    let second = executor(&config, second_dir.path());
    assert!(idle(0)(&second.run_until_idle(&*host, 2).await.unwrap()));
    assert_eq!(host.outcomes_about(&payout).len(), 1);

    // The first node leads again: nothing is sent, and its interrupted attempt stays on
    // record.
    host.set_leader(true, 3);
    assert!(idle(0)(&first.run_until_idle(&*host, 3).await.unwrap()));
    assert_eq!(rail.requests_with_key(&payout), 2);
    let job = first.journal().job(&payout).unwrap().unwrap();
    assert_eq!(
        job.phase,
        Phase::Resolved {
            resolution: Resolution::AlreadyReported
        }
    );
    assert_eq!(job.evidence.len(), 1, "{:#?}", job.evidence);
    assert_eq!(job.evidence[0].attempt, 1);
    assert_eq!(job.evidence[0].term, 1);
    assert!(job.evidence[0]
        .reason
        .as_deref()
        .unwrap()
        .starts_with("interrupted"));
}

#[tokio::test]
async fn gate_refusals_are_recorded_with_evidence_and_reported() {
    let host = FakeHost::new();
    let target = Target::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sandbox = dir.path().join("deploy");
    let mut config = rail_config(&target);
    {
        let rail = config.rail.as_mut().unwrap();
        rail.amount_max = 500;
        rail.limits.quota_max = 1;
    }
    // One job at a time, so which of the two payouts meets the quota is deterministic.
    config.jobs_inflight_max = 1;
    config.kes_deploy = Some(KesDeployConfig {
        dir: sandbox.clone(),
        limits: fast_limits(),
    });
    config.webhooks.push(WebhookConfig {
        name: "auctions".into(),
        url: target.url("/hooks/auctions"),
        url_field: Some("callback".into()),
        on: vec![TriggerConfig {
            domain: "auction".into(),
            action: "AUCTION.OPENED".into(),
        }],
        limits: fast_limits(),
    });
    let executor = executor(&config, &dir.path().join("journal"));

    // Outside the allowlist: a callback on another port.
    let (outside, _) = host.file(
        "olivia",
        "AUCTION.OPENED",
        "auc-1",
        Value::map([
            ("reserve", Value::Int(10)),
            ("item", "lamp".into()),
            ("callback", "http://127.0.0.1:1/steal".into()),
        ]),
    );
    // Inside the allowlist: performed.
    let (inside, _) = host.file(
        "olivia",
        "AUCTION.OPENED",
        "auc-2",
        Value::map([
            ("reserve", Value::Int(10)),
            ("item", "vase".into()),
            ("callback", target.url("/hooks/auc-2").into()),
        ]),
    );
    // Escaping the sandbox: a KES version named to climb out.
    let escape = ratified_version(&host, "kes-1", "../../escaped");
    // Over the amount cap, then over the quota.
    let too_big = funded_payout(&host, "stl-big", 10_000, 600);
    let paid = funded_payout(&host, "stl-1", 1_000, 100);
    let over_quota = funded_payout(&host, "stl-2", 1_000, 100);
    // Not admitted: mallory is no treasurer.
    let (forged, decision) = host.file(
        "mallory",
        "SETTLEMENT.PAYOUT_REQUESTED",
        "stl-1",
        Value::map([("amount", Value::Int(1)), ("beneficiary", "mallory".into())]),
    );
    assert!(matches!(decision, Decision::Reject(_)));

    assert!(idle(0)(&executor.run_until_idle(&*host, 1).await.unwrap()));

    let refused = |id, needle: &str| {
        let evidence = executor.journal().evidence(id).unwrap();
        let last = evidence
            .last()
            .unwrap_or_else(|| panic!("evidence for {id:?}"));
        assert_eq!(last.outcome, OutcomeKind::Refused, "{last:#?}");
        let reason = last.reason.clone().unwrap();
        assert!(
            reason.contains(needle),
            "{reason:?} should mention {needle:?}"
        );
        assert!(last.effects.is_empty(), "a refusal performs nothing");
        assert_eq!(last.cost.attempts, 0);
        last.clone()
    };

    // Allowlist: refused, nothing sent, reported as EXECUTION.OUTCOME refused.
    let evidence = refused(&outside, "allowlist");
    assert_eq!(target.requests_with_key(&outside), 0);
    let outcome = &host.outcomes_about(&outside)[0];
    assert_eq!(outcome.decision, Decision::Admit);
    let payload = &outcome.proposal.proposal.payload;
    assert_eq!(outcome.proposal.proposal.action, "EXECUTION.OUTCOME");
    assert_eq!(outcome.proposal.proposal.subject, outside.to_hex());
    assert_eq!(payload.get("outcome"), Some(&Value::Str("refused".into())));
    assert_eq!(
        payload.get("evidence_hash"),
        Some(&Value::Str(evidence.hash_hex()))
    );
    assert_eq!(target.requests_with_key(&inside), 1);
    assert_eq!(target.received()[0].path, "/hooks/auc-2");
    assert_eq!(
        host.outcomes_about(&inside)[0]
            .proposal
            .proposal
            .payload
            .get("outcome"),
        Some(&Value::Str("success".into()))
    );

    // Sandbox: refused, nothing written anywhere.
    refused(&escape, "`..`");
    assert!(!dir.path().join("escaped.json").exists());
    assert!(!dir.path().parent().unwrap().join("escaped.json").exists());
    assert_eq!(host.outcomes_about(&escape)[0].decision, Decision::Admit);

    // Amount cap and quota: refused and reported as rail errors; the subjects can recover.
    refused(&too_big, "outside the rail's limit");
    refused(&over_quota, "quota exceeded");
    for (id, subject) in [(too_big, "stl-big"), (over_quota, "stl-2")] {
        let outcome = &host.outcomes_about(&id)[0];
        assert_eq!(outcome.proposal.proposal.action, "SETTLEMENT.RAIL_ERROR");
        let reason = outcome
            .proposal
            .proposal
            .payload
            .get("reason")
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned();
        assert!(reason.starts_with("refused: "), "{reason}");
        assert_eq!(
            host.subject_state("settlement", subject).unwrap().state,
            "rail_error"
        );
        assert_eq!(target.requests_with_key(&id), 0);
    }
    assert_eq!(target.requests_with_key(&paid), 1);
    assert_eq!(
        host.subject_state("settlement", "stl-1").unwrap().state,
        "paid"
    );

    // Not admitted: refusal evidence, and no outcome (the core would reject one).
    refused(&forged, "not admitted");
    let job = executor.journal().job(&forged).unwrap().unwrap();
    assert_eq!(
        job.phase,
        Phase::Resolved {
            resolution: Resolution::NotAdmitted
        }
    );
    assert!(host.outcomes_about(&forged).is_empty());
}

#[cfg(unix)]
#[tokio::test]
async fn a_symlink_inside_the_sandbox_is_refused() {
    let host = FakeHost::new();
    let target = Target::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sandbox = dir.path().join("deploy");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&sandbox).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, sandbox.join("kes-1")).unwrap();
    let mut config = config(&target);
    config.kes_deploy = Some(KesDeployConfig {
        dir: sandbox,
        limits: fast_limits(),
    });
    let executor = executor(&config, &dir.path().join("journal"));
    let ratification = ratified_version(&host, "kes-1", "v1");
    executor.run_until_idle(&*host, 1).await.unwrap();
    let evidence = executor.journal().evidence(&ratification).unwrap();
    assert_eq!(evidence[0].outcome, OutcomeKind::Refused);
    assert!(
        evidence[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("symbolic link"),
        "{evidence:#?}"
    );
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing escaped"
    );
}

/// Proposes `version` of `subject` (grace) and ratifies it (grace, then heidi: a quorum of
/// two); answers the id of the ratification that completed the quorum.
fn ratified_version(host: &FakeHost, subject: &str, version: &str) -> docket_core::ProposalId {
    propose_version(host, subject, version);
    let (first, decision) = host.file(
        "grace",
        "KES.VERSION_RATIFIED",
        subject,
        ratify_payload(version),
    );
    assert_eq!(decision, Decision::Admit);
    let _ = first;
    let (second, decision) = host.file(
        "heidi",
        "KES.VERSION_RATIFIED",
        subject,
        ratify_payload(version),
    );
    assert_eq!(decision, Decision::Admit);
    assert_eq!(host.subject_state("kes", subject).unwrap().state, "active");
    second
}

fn version_hash(version: &str) -> String {
    blake3::hash(version.as_bytes()).to_hex().to_string()
}

fn propose_version(host: &FakeHost, subject: &str, version: &str) {
    let (_, decision) = host.file(
        "grace",
        "KES.VERSION_PROPOSED",
        subject,
        Value::map([
            ("version", version.into()),
            ("version_hash", version_hash(version).into()),
            ("commitments", Value::List(vec!["c-1".into(), "c-2".into()])),
            ("parent", Value::Null),
        ]),
    );
    assert_eq!(decision, Decision::Admit);
}

fn ratify_payload(version: &str) -> Value {
    Value::map([
        ("version", version.into()),
        ("version_hash", version_hash(version).into()),
    ])
}

#[tokio::test]
async fn kes_ratification_deploys_once_from_the_entry_that_completes_the_quorum() {
    let host = FakeHost::new();
    let target = Target::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sandbox = dir.path().join("deploy");
    let mut config = config(&target);
    config.kes_deploy = Some(KesDeployConfig {
        dir: sandbox.clone(),
        limits: fast_limits(),
    });
    let executor = executor(&config, &dir.path().join("journal"));

    // Both approvals committed before the agent looks: it must count.
    let completing = ratified_version(&host, "kes-a", "v1");
    let first = host.records("KES.VERSION_RATIFIED")[0].1.id;
    // Another subject, with the agent looking between the approvals.
    propose_version(&host, "kes-b", "v1");
    let (early, _) = host.file(
        "grace",
        "KES.VERSION_RATIFIED",
        "kes-b",
        ratify_payload("v1"),
    );
    assert!(idle(0)(&executor.run_until_idle(&*host, 1).await.unwrap()));
    let (late, _) = host.file(
        "heidi",
        "KES.VERSION_RATIFIED",
        "kes-b",
        ratify_payload("v1"),
    );
    assert!(idle(0)(&executor.run_until_idle(&*host, 1).await.unwrap()));

    for (skipped, deployed, subject) in [(first, completing, "kes-a"), (early, late, "kes-b")] {
        // The approval that did not complete the quorum bears no effect and no outcome.
        let job = executor.journal().job(&skipped).unwrap().unwrap();
        assert!(
            matches!(
                job.phase,
                Phase::Resolved {
                    resolution: Resolution::NotEffectBearing { .. }
                }
            ),
            "{:?}",
            job.phase
        );
        assert!(job.evidence.is_empty());
        assert!(host.outcomes_about(&skipped).is_empty());

        // The completing one wrote the deployment file, verified by its content hash.
        let path = sandbox.join(subject).join("v1.json");
        let bytes = std::fs::read(&path).unwrap();
        let file: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(file["version"], "v1");
        assert_eq!(file["version_hash"], version_hash("v1"));
        assert_eq!(file["commitments"], serde_json::json!(["c-1", "c-2"]));
        assert_eq!(file["ratified_by"], deployed.to_hex());
        let hash = blake3::hash(&bytes).to_hex().to_string();
        let evidence = executor.journal().evidence(&deployed).unwrap();
        assert_eq!(evidence.len(), 1);
        assert_eq!(evidence[0].outcome, OutcomeKind::Success);
        assert_eq!(evidence[0].inputs_hash, hash);
        assert_eq!(evidence[0].outputs_hash.as_deref(), Some(hash.as_str()));
        assert_eq!(evidence[0].effects[0].kind, "file_write");
        let outcomes = host.outcomes_about(&deployed);
        assert_eq!(outcomes.len(), 1);
        assert_eq!(outcomes[0].decision, Decision::Admit);
        let payload = &outcomes[0].proposal.proposal.payload;
        assert_eq!(payload.get("outcome"), Some(&Value::Str("success".into())));
        assert_eq!(payload.get("content_hash"), Some(&Value::Str(hash)));
        assert_eq!(outcomes[0].proposal.proposal.dependencies, vec![deployed]);
    }
}

#[tokio::test]
async fn webhook_retries_are_bounded_and_failures_reported() {
    let host = FakeHost::new();
    let target = Target::start().await;
    let dir = tempfile::tempdir().unwrap();
    let hook = |name: &str, action: &str| WebhookConfig {
        name: name.into(),
        url: target.url(&format!("/hooks/{name}")),
        url_field: None,
        on: vec![TriggerConfig {
            domain: "auction".into(),
            action: action.into(),
        }],
        limits: fast_limits(),
    };
    let mut config = config(&target);
    config.webhooks = vec![
        hook("opened", "AUCTION.OPENED"),
        hook("closed", "AUCTION.CLOSED"),
    ];
    let executor = executor(&config, &dir.path().join("journal"));

    // Always 500: exactly attempts_max requests, all with the same key.
    *target.always.lock().unwrap() = Some(500);
    let (opened, _) = host.file(
        "olivia",
        "AUCTION.OPENED",
        "auc-1",
        Value::map([("reserve", Value::Int(10)), ("item", "lamp".into())]),
    );
    assert!(idle(0)(&executor.run_until_idle(&*host, 1).await.unwrap()));
    let received = target.received();
    assert_eq!(received.len(), 3, "attempts_max bounds the retries");
    assert!(received
        .iter()
        .all(|r| r.key.as_deref() == Some(opened.to_hex().as_str())));
    let attempts: Vec<_> = received
        .iter()
        .map(|r| r.attempt.clone().unwrap())
        .collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    let evidence = &executor.journal().evidence(&opened).unwrap()[0];
    assert_eq!(evidence.outcome, OutcomeKind::Failure);
    assert_eq!(evidence.cost.attempts, 3);
    assert_eq!(evidence.effects.len(), 3);
    assert!(
        evidence
            .reason
            .as_deref()
            .unwrap()
            .contains("3 attempts failed"),
        "{evidence:#?}"
    );
    let outcome = &host.outcomes_about(&opened)[0];
    assert_eq!(outcome.decision, Decision::Admit);
    assert_eq!(
        outcome.proposal.proposal.payload.get("outcome"),
        Some(&Value::Str("failure".into()))
    );

    // Two failures, then success: verified on the third request.
    *target.always.lock().unwrap() = None;
    target.script([Behavior::Status(503), Behavior::Status(502)]);
    let (closed, _) = host.file("olivia", "AUCTION.CLOSED", "auc-1", Value::map::<&str>([]));
    assert!(idle(0)(&executor.run_until_idle(&*host, 1).await.unwrap()));
    assert_eq!(target.requests_with_key(&closed), 3);
    let evidence = &executor.journal().evidence(&closed).unwrap()[0];
    assert_eq!(evidence.outcome, OutcomeKind::Success);
    assert_eq!(evidence.cost.attempts, 3);
    let body: serde_json::Value = serde_json::from_slice(&target.received()[5].body).unwrap();
    assert_eq!(
        body["index"],
        host.records("AUCTION.CLOSED")[0].0 .0,
        "the entry's JSON"
    );
}

#[tokio::test]
async fn a_client_error_is_not_retried_and_a_failed_payout_becomes_a_rail_error() {
    let host = FakeHost::new();
    let rail = Target::start().await;
    let dir = tempfile::tempdir().unwrap();
    let executor = executor(&rail_config(&rail), dir.path());
    rail.script([Behavior::Status(422)]);
    let payout = funded_payout(&host, "stl-1", 1_000, 400);
    assert!(idle(0)(&executor.run_until_idle(&*host, 1).await.unwrap()));
    assert_eq!(rail.requests_with_key(&payout), 1, "4xx is final");
    let outcome = &host.outcomes_about(&payout)[0];
    assert_eq!(outcome.proposal.proposal.action, "SETTLEMENT.RAIL_ERROR");
    assert_eq!(
        outcome.proposal.proposal.payload.get("reason"),
        Some(&Value::Str("failure: status 422".into()))
    );
    assert_eq!(
        host.subject_state("settlement", "stl-1").unwrap().state,
        "rail_error"
    );

    // Recovery is a new governance record; a new payout request then runs normally.
    let (_, decision) = host.file(
        "alice",
        "SETTLEMENT.RECOVERY",
        "stl-1",
        Value::map([("reason", "rail rejected the beneficiary".into())]),
    );
    assert_eq!(decision, Decision::Admit);
    let proposal = dev::proposal(
        &host.ledger_id(),
        "alice",
        "SETTLEMENT.PAYOUT_REQUESTED",
        "stl-1",
        Value::map([
            ("amount", Value::Int(400)),
            ("beneficiary", "DE89-bob".into()),
        ]),
        vec![],
        2,
    );
    let retry = proposal.id();
    host.propose(proposal);
    assert!(idle(0)(&executor.run_until_idle(&*host, 1).await.unwrap()));
    assert_eq!(
        host.outcomes_about(&retry)[0].proposal.proposal.action,
        "SETTLEMENT.PAYOUT_EXECUTED"
    );
    assert_eq!(
        host.subject_state("settlement", "stl-1").unwrap().state,
        "paid"
    );
}

#[tokio::test]
async fn a_journal_of_another_ledger_is_refused() {
    let target = Target::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = rail_config(&target);
    let first = FakeHost::new();
    executor(&config, dir.path())
        .run_until_idle(&*first, 1)
        .await
        .unwrap();
    // Another ledger: a different genesis (another time, so another hash).
    let different = support::FakeHost::with_genesis_time(5_000);
    let error = executor(&config, dir.path())
        .run_until_idle(&*different, 1)
        .await
        .expect_err("foreign journal");
    assert!(
        error.to_string().contains("belongs to the ledger"),
        "{error}"
    );
}
