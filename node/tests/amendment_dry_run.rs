//! `docket constitution dry-run` against a real cluster: a candidate that removes bob's
//! treasurer role and lowers `subject_bytes_max` names exactly the proposals it would
//! decide otherwise, writes nothing, and refuses a ledger over `--entries-max`; then the
//! same amendment is ratified for real (two governors) and the same proposals, filed again
//! with new nonces, are decided as the dry run predicted.

mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use common::{client, formed_cluster, ledger_id, phase};
use docket_client::amendment::Report;
use docket_core::{dev, Decision, ProposalId, RejectCode, SignedProposal, Value};

const BOB_TREASURER: &str = "[principals.bob]\nkey = \"f01e7581b61a2833dcb50a47477344af1feb76bece5f8ee0b85d0bc059b481e5\"\nroles = [\"treasurer\"]";
const BOB_NOTHING: &str = "[principals.bob]\nkey = \"f01e7581b61a2833dcb50a47477344af1feb76bece5f8ee0b85d0bc059b481e5\"\nroles = []";

/// Runs `docket ARGS --node URL`; answers (success, stdout, stderr).
async fn docket(url: &str, args: &[&str]) -> (bool, String, String) {
    let mut all = args.to_vec();
    all.extend(["--node", url]);
    common::docket(&all).await
}

fn deposit(ledger: &docket_core::LedgerId, who: &str, subject: &str, nonce: u64) -> SignedProposal {
    dev::proposal(
        ledger,
        who,
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        subject,
        Value::map([("amount", Value::Int(10)), ("currency", "EUR".into())]),
        vec![],
        nonce,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_predicts_what_the_ratified_amendment_decides() {
    let start = Instant::now();
    let (dir, cluster) = formed_cluster("amend-dry-run", 3, &[]).await;
    let ledger = ledger_id(&cluster);
    let leader = cluster.leader().await.expect("leader");
    let url = cluster.node(leader).url();
    let c = client(&url);

    phase(
        start,
        "file deposits by bob and alice, one with a 20-byte subject",
    );
    // (author, subject): bob's lose the role, the long subject goes over the new limit.
    let filed = [
        ("bob", "bob-1"),
        ("alice", "alice-1"),
        ("bob", "bob-2"),
        ("alice", "alice-long-subject-1"),
    ];
    let mut originals = Vec::new();
    for (i, (who, subject)) in filed.iter().enumerate() {
        let signed = deposit(&ledger, who, subject, 100 + i as u64);
        let response = c.submit(&signed).await.expect("submit");
        let decision = response
            .entry
            .decision_record()
            .expect("a decision")
            .decision
            .clone();
        assert_eq!(decision, Decision::Admit, "{who} {subject}");
        originals.push(signed);
    }

    phase(
        start,
        "write the candidate: bob holds no role, subject_bytes_max = 16",
    );
    let active = c.constitution().await.expect("constitution");
    let candidate = active
        .document
        .replace(BOB_TREASURER, BOB_NOTHING)
        .replace("subject_bytes_max = 128", "subject_bytes_max = 16");
    assert!(!candidate.contains(BOB_TREASURER) && candidate.contains("subject_bytes_max = 16"));
    let path = dir.path().join("candidate.toml");
    std::fs::write(&path, &candidate).expect("write candidate");
    let path = path.to_str().expect("utf-8 path");
    let length_before = c.status().await.expect("status").ledger_length;

    phase(
        start,
        "the dry run names exactly bob's two deposits and the long subject",
    );
    let (ok, stdout, stderr) =
        docket(&url, &["constitution", "dry-run", path, "--output", "json"]).await;
    assert!(ok, "{stdout}\n{stderr}");
    let report: Report = serde_json::from_str(&stdout).expect("a JSON report");
    let changed: BTreeMap<ProposalId, Option<RejectCode>> = report
        .changed
        .iter()
        .map(|change| {
            assert_eq!(change.recorded, Decision::Admit, "{change:?}");
            (change.id, change.predicted.code())
        })
        .collect();
    let expected: BTreeMap<ProposalId, Option<RejectCode>> = [
        (originals[0].id(), Some(RejectCode::Unauthorized)),
        (originals[2].id(), Some(RejectCode::Unauthorized)),
        (originals[3].id(), Some(RejectCode::LimitExceeded)),
    ]
    .into_iter()
    .collect();
    assert_eq!(changed, expected, "{report:?}");
    assert_eq!(report.groups.len(), 2, "{report:?}");
    let (ok, text, stderr) = docket(&url, &["constitution", "dry-run", path]).await;
    assert!(ok, "{text}\n{stderr}");
    for expected in [
        "3 decision(s) would change",
        "ADMIT -> UNAUTHORIZED",
        "limits  ADMIT -> LIMIT_EXCEEDED",
        "nothing was written",
    ] {
        assert!(text.contains(expected), "{expected:?} in:\n{text}");
    }
    assert_eq!(
        c.status().await.expect("status").ledger_length,
        length_before,
        "a dry run writes nothing"
    );

    phase(
        start,
        "--from past bob's first deposit leaves it out; --entries-max refuses",
    );
    let from = c
        .proposal(originals[1].id())
        .await
        .expect("proposal")
        .entries[0]
        .index
        .0;
    let (ok, stdout, stderr) = docket(
        &url,
        &[
            "constitution",
            "dry-run",
            path,
            "--from",
            &from.to_string(),
            "--output",
            "json",
        ],
    )
    .await;
    assert!(ok, "{stdout}\n{stderr}");
    let later: Report = serde_json::from_str(&stdout).expect("a JSON report");
    let ids: Vec<ProposalId> = later.changed.iter().map(|c| c.id).collect();
    assert_eq!(ids, vec![originals[2].id(), originals[3].id()]);
    let (ok, _, stderr) = docket(
        &url,
        &["constitution", "dry-run", path, "--entries-max", "2"],
    )
    .await;
    assert!(!ok && stderr.contains("--entries-max"), "{stderr}");

    phase(
        start,
        "ratify the amendment for real: grace amends, grace and heidi approve",
    );
    let amend = dev::proposal(
        &ledger,
        "grace",
        "CONSTITUTION.AMEND",
        "amend-1",
        Value::map([
            ("document", Value::Str(candidate.clone())),
            ("parent", Value::Str(active.version.to_hex())),
        ]),
        vec![],
        1,
    );
    for signed in [
        amend,
        dev::proposal(
            &ledger,
            "grace",
            "CONSTITUTION.APPROVE",
            "amend-1",
            Value::Map(Default::default()),
            vec![],
            2,
        ),
        dev::proposal(
            &ledger,
            "heidi",
            "CONSTITUTION.APPROVE",
            "amend-1",
            Value::Map(Default::default()),
            vec![],
            3,
        ),
    ] {
        let response = c.submit(&signed).await.expect("submit");
        let decision = &response.entry.decision_record().expect("decision").decision;
        assert_eq!(*decision, Decision::Admit, "{}", signed.proposal.action);
    }
    let adopted = c.constitution().await.expect("constitution");
    assert_eq!(adopted.version, report.candidate_version);

    phase(
        start,
        "the same proposals with new nonces are decided as the dry run said",
    );
    for (i, original) in originals.iter().enumerate() {
        let (who, subject) = filed[i];
        let again = deposit(&ledger, who, subject, 200 + i as u64);
        let response = c.submit(&again).await.expect("submit again");
        let real = response
            .entry
            .decision_record()
            .expect("decision")
            .decision
            .label()
            .to_owned();
        let predicted = report
            .changed
            .iter()
            .find(|change| change.id == original.id())
            .map_or("ADMIT", |change| change.predicted.label());
        assert_eq!(real, predicted, "{who} {subject}");
    }
}
