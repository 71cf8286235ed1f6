//! `GET /v1/proposals/{id}/explain` and `docket explain`, against a real cluster: an
//! overdraft payout is explained as step 8 (`INVARIANT`, `payout_within_balance`) with the
//! amount it read; a deferred proposal shows its dependency and when its deferral expires;
//! an admitted one says admitted, with its entry, role and rule; an unknown id is
//! `NOT_FOUND`, as on the proposal route.

mod common;

use std::time::Instant;

use common::{api_error, binary, client, deposit, formed_cluster, ledger_id, phase};
use docket_core::explain::{DependencyStatus, Why};
use docket_core::{dev, LedgerTime, ProposalId, ProposalStatus, RejectCode, Step, Value};

/// Runs `docket explain ID --node URL [--output json]`; answers its stdout.
async fn docket_explain(url: &str, id: ProposalId, json: bool) -> String {
    let mut args = vec![
        "explain".to_owned(),
        id.to_hex(),
        "--node".to_owned(),
        url.to_owned(),
    ];
    if json {
        args.extend(["--output".to_owned(), "json".to_owned()]);
    }
    let output = tokio::process::Command::new(binary())
        .args(&args)
        .output()
        .await
        .expect("run docket explain");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "docket {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_names_the_failed_step_the_dependency_tree_and_the_admission() {
    let start = Instant::now();
    let (_dir, cluster) = formed_cluster("explain", 3, &[]).await;
    let ledger = ledger_id(&cluster);
    let leader = cluster.leader().await.expect("leader");
    let follower = [1, 2, 3]
        .into_iter()
        .find(|id| *id != leader)
        .expect("follower");
    // Ask a follower: its reads are linearizable through the leader's read index.
    let url = cluster.node(follower).url();
    let c = client(&url);

    phase(
        start,
        "an admitted deposit says admitted, at its entry, by role and rule",
    );
    let funded = deposit(&ledger, "alice", "explain-1", 100);
    let recorded = c.submit(&funded).await.expect("submit deposit");
    let view = c.explain(funded.id()).await.expect("explain deposit");
    assert_eq!(view.status, ProposalStatus::Admitted);
    assert_eq!(view.index, recorded.entry.index);
    let Why::Admitted(admitted) = &view.explanation.why else {
        panic!("admitted: {view:?}")
    };
    assert_eq!(admitted.index, recorded.entry.index);
    assert_eq!(admitted.role.as_deref(), Some("treasurer"));
    assert!(
        admitted
            .rule
            .starts_with("settlement/SETTLEMENT.DEPOSIT_CONFIRMED"),
        "{admitted:?}"
    );
    let text = docket_explain(&url, funded.id(), false).await;
    assert!(
        text.contains(&format!("admitted at entry #{}", recorded.entry.index)),
        "{text}"
    );
    assert!(text.contains("role      treasurer"), "{text}");

    phase(
        start,
        "an overdraft payout: step 8, INVARIANT, payout_within_balance, amount 500",
    );
    let overdraft = dev::proposal(
        &ledger,
        "alice",
        "SETTLEMENT.PAYOUT_REQUESTED",
        "explain-1",
        Value::map([("amount", Value::Int(500)), ("beneficiary", "b".into())]),
        vec![],
        1,
    );
    c.submit(&overdraft).await.expect("submit overdraft");
    let view = c.explain(overdraft.id()).await.expect("explain overdraft");
    assert_eq!(view.status, ProposalStatus::Rejected);
    let Why::Rejected(rejected) = &view.explanation.why else {
        panic!("rejected: {view:?}")
    };
    assert_eq!(rejected.step, Step::Invariants);
    assert_eq!(rejected.code, RejectCode::Invariant);
    assert_eq!(
        rejected.named_rule.as_ref().map(|r| r.name.as_str()),
        Some("payout_within_balance")
    );
    assert_eq!(rejected.reads.len(), 1, "{rejected:?}");
    assert_eq!(rejected.reads[0].field, "amount");
    assert_eq!(rejected.reads[0].value, Some(Value::Int(500)));
    let text = docket_explain(&url, overdraft.id(), false).await;
    for expected in [
        "step      8 invariants",
        "INVARIANT",
        "payout_within_balance",
        "amount (int) = 500",
    ] {
        assert!(text.contains(expected), "{expected:?} in:\n{text}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&docket_explain(&url, overdraft.id(), true).await).expect("JSON");
    let why = &json["explanation"]["why"];
    assert_eq!(why["decision"], "rejected", "{json}");
    assert_eq!(why["step"]["number"], 8, "{json}");
    assert_eq!(why["step"]["name"], "invariants", "{json}");
    assert_eq!(why["code"], "INVARIANT", "{json}");
    assert_eq!(why["named_rule"]["name"], "payout_within_balance", "{json}");
    assert_eq!(why["reads"][0]["field"], "amount", "{json}");
    assert_eq!(why["reads"][0]["value"], 500, "{json}");

    phase(
        start,
        "a deferred payout shows the deposit it waits on and its expiry",
    );
    let later = deposit(&ledger, "alice", "explain-2", 50);
    let waiting = dev::proposal(
        &ledger,
        "alice",
        "SETTLEMENT.PAYOUT_REQUESTED",
        "explain-2",
        Value::map([("amount", Value::Int(10)), ("beneficiary", "b".into())]),
        vec![later.id()],
        2,
    );
    let deferred_entry = c.submit(&waiting).await.expect("submit dependent").entry;
    let view = c.explain(waiting.id()).await.expect("explain deferral");
    assert_eq!(view.status, ProposalStatus::Deferred);
    let Why::Deferred(deferred) = &view.explanation.why else {
        panic!("deferred: {view:?}")
    };
    assert_eq!(deferred.waiting_on.len(), 1, "{deferred:?}");
    assert_eq!(deferred.waiting_on[0].id, later.id());
    assert_eq!(deferred.waiting_on[0].status, DependencyStatus::NotRecorded);
    let expiry_ms = c
        .constitution()
        .await
        .map(|v| {
            docket_core::Constitution::parse(&v.document)
                .expect("valid")
                .limits
                .deferral_expiry_ms
        })
        .expect("constitution");
    let expires_at = LedgerTime(deferred_entry.time.0 + expiry_ms);
    assert_eq!(deferred.expires_at, Some(expires_at));
    let text = docket_explain(&url, waiting.id(), false).await;
    assert!(
        text.contains(&format!("at ledger time {}", expires_at.0)),
        "{text}"
    );
    assert!(
        text.contains(&format!("  {}: not recorded", later.id())),
        "{text}"
    );

    phase(
        start,
        "once the dependency is admitted, the released payout says admitted",
    );
    c.submit(&later).await.expect("submit the dependency");
    let view = c.explain(waiting.id()).await.expect("explain released");
    assert_eq!(view.status, ProposalStatus::Admitted, "{view:?}");
    assert!(matches!(view.explanation.why, Why::Admitted(_)), "{view:?}");

    phase(
        start,
        "an unknown id is NOT_FOUND, as on the proposal route",
    );
    let (status, body) = api_error(c.explain(ProposalId([9; 32])).await, "NOT_FOUND");
    assert_eq!((status, body.code.as_str()), (404, "NOT_FOUND"), "{body:?}");
}
