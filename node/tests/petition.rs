//! `docket petition` end to end: a real program (a shell script) petitions for payouts
//! and a report file that depends on their outcomes, against a real 3-node cluster whose
//! execution agents pay through a local rail and write files in a sandbox.
//!
//! * the plan is recorded in one run of consecutive entries, in waves sorted by id, whatever
//!   order the program printed;
//! * a declined payout (a failed effect) rejects the report that depends on its outcome with
//!   `DEPENDENCY_FAILED`, and the petition exits non-zero;
//! * when every effect succeeds, the dependent file is written and the petition exits 0;
//! * running the same program again files the same proposals (duplicates, nothing new);
//! * a write through a symlink planted in the sandbox is refused by the agent (a `refused`
//!   outcome naming the link), nothing lands outside, and its dependent is rejected;
//! * `docket execution list` on the leader shows outcomes by effect and result and names
//!   the refusal;
//! * malformed output, an unknown label and a cycle are refused naming the line, and a dry
//!   run records nothing.

mod common;

use std::path::Path;

use common::{client, deposit, docket, formed_cluster_with_config, ledger_id};
use docket_core::{dev, Cause, Decision, LedgerEntry, ProposalId, RejectCode};
use docket_node::rail::{Rail, DECLINED_BENEFICIARY};

const PETITION_TIMEOUT_MS: &str = "60000";

fn config(root: &Path, rail: &Rail) -> String {
    let key = root.join("exec.key");
    docket_node::cli::write_key_file(&key, &dev::signing_key("exec"), true).expect("exec key");
    format!(
        "[execution]\nenabled = true\nkey_file = {key:?}\nallowed_urls = [{url:?}]\n\n\
         [execution.rail]\nurl = {url:?}\n\n[execution.file_write]\ndir = {files:?}\n",
        key = key.display().to_string(),
        url = rail.url(),
        files = root.join("files").display().to_string(),
    )
}

/// `docket petition --node URL --key KEY OPTIONS... -- sh SCRIPT`.
async fn petition(url: &str, key: &str, options: &[&str], script: &str) -> (bool, String, String) {
    let mut args = vec!["petition", "--node", url, "--key", key];
    args.extend_from_slice(options);
    args.extend(["--", "sh", script]);
    docket(&args).await
}

/// Writes a shell script that prints `lines` and answers its path.
fn program(root: &Path, name: &str, lines: &[String]) -> String {
    let path = root.join(name);
    let mut script = String::from("#!/bin/sh\n");
    for line in lines {
        script.push_str(&format!("printf '%s\\n' '{line}'\n"));
    }
    std::fs::write(&path, script).expect("write program");
    path.display().to_string()
}

fn payout(label: &str, subject: &str, amount: i64, beneficiary: &str) -> String {
    format!(
        r#"{{"label": "{label}", "action": "SETTLEMENT.PAYOUT_REQUESTED", "subject": "{subject}", "payload": {{"amount": {amount}, "beneficiary": "{beneficiary}"}}}}"#
    )
}

fn write(label: &str, path: &str, contents: &str, after_outcome: &[&str]) -> String {
    let after: Vec<String> = after_outcome.iter().map(|l| format!("\"{l}\"")).collect();
    format!(
        r#"{{"label": "{label}", "action": "FILE.WRITE", "subject": "{path}", "payload": {{"path": "{path}", "contents": "{contents}"}}, "after_outcome": [{}]}}"#,
        after.join(", ")
    )
}

async fn entries(c: &docket_node::client::Client) -> Vec<LedgerEntry> {
    common::read_ledger(c).await
}

/// The first entry recording `id` (its submission).
fn submitted(ledger: &[LedgerEntry], id: &ProposalId) -> LedgerEntry {
    ledger
        .iter()
        .find(|e| {
            e.decision_record()
                .is_some_and(|d| d.id == *id && d.cause == Cause::Submitted)
        })
        .cloned()
        .unwrap_or_else(|| panic!("no entry submits {id}"))
}

fn final_decision(ledger: &[LedgerEntry], id: &ProposalId) -> Decision {
    ledger
        .iter()
        .rev()
        .find_map(|e| e.decision_record().filter(|d| d.id == *id))
        .map(|d| d.decision.clone())
        .unwrap_or_else(|| panic!("no entry records {id}"))
}

#[derive(serde::Deserialize)]
struct PlanFile {
    members: Vec<PlanMember>,
}

#[derive(serde::Deserialize)]
struct PlanMember {
    label: String,
    id: ProposalId,
}

fn ids(plan_file: &Path) -> std::collections::BTreeMap<String, ProposalId> {
    let text = std::fs::read_to_string(plan_file).expect("plan file");
    let plan: PlanFile = serde_json::from_str(&text).expect("plan file JSON");
    plan.members.into_iter().map(|m| (m.label, m.id)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_petitions_and_outcomes_decide_its_dependents() {
    let rail = Rail::start().await.expect("rail");
    let (dir, cluster) =
        formed_cluster_with_config("petition", 3, |root| config(root, &rail)).await;
    let root = dir.path();
    let ledger = ledger_id(&cluster);
    let url = cluster.node(1).url();
    let c = client(&url);
    let key = root.join("alice.key");
    docket_node::cli::write_key_file(&key, &dev::signing_key("alice"), true).expect("key");
    let key = key.display().to_string();
    for subject in ["stl-1", "stl-2", "stl-3"] {
        c.submit(&deposit(&ledger, "alice", subject, 10_000))
            .await
            .expect("deposit");
    }

    // 1. One payout is declined by the rail: the report that needs both outcomes fails.
    //    The program prints the dependent first: the order must not matter.
    let lines = [
        write(
            "report",
            "reports/day-1.txt",
            "paid both",
            &["pay-a", "pay-b"],
        ),
        payout("pay-b", "stl-2", 300, DECLINED_BENEFICIARY),
        payout("pay-a", "stl-1", 200, "acme"),
    ];
    let script = program(root, "day-1.sh", &lines);
    let plan_file = root.join("day-1.plan.json");
    let plan_path = plan_file.display().to_string();
    let (ok, stdout, stderr) = petition(
        &url,
        &key,
        &["--plan-out", &plan_path, "--follow-ms", PETITION_TIMEOUT_MS],
        &script,
    )
    .await;
    assert!(
        !ok,
        "a failed effect fails the petition\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("DEPENDENCY_FAILED"), "{stdout}\n{stderr}");
    assert!(stdout.contains("outcome failure"), "{stdout}");
    assert!(stdout.contains("outcome success"), "{stdout}");
    let plan = ids(&plan_file);
    let ledger_now = entries(&c).await;
    let (a, b, report) = (plan["pay-a"], plan["pay-b"], plan["report"]);
    let (ea, eb, er) = (
        submitted(&ledger_now, &a),
        submitted(&ledger_now, &b),
        submitted(&ledger_now, &report),
    );
    // Recorded together: consecutive entries, wave 0 by id, then the report.
    let mut wave0 = [(a, ea.index.0), (b, eb.index.0)];
    wave0.sort();
    assert_eq!(wave0[1].1, wave0[0].1 + 1, "wave 0 in id order");
    assert_eq!(
        er.index.0,
        wave0[1].1 + 1,
        "the report right after its wave"
    );
    assert!(matches!(
        er.decision_record().expect("decision").decision,
        Decision::Defer { .. }
    ));
    assert!(
        matches!(final_decision(&ledger_now, &report), Decision::Reject(r) if r.code == RejectCode::DependencyFailed)
    );
    assert!(
        !root.join("files/reports/day-1.txt").exists(),
        "no report for a failed payout"
    );
    assert_eq!(
        rail.payouts().len(),
        1,
        "the declined payout moved no money"
    );

    // 2. Running it again files the same proposals: nothing new is recorded.
    let length = ledger_now.len();
    let (ok, stdout, _) = petition(&url, &key, &["--follow-ms", "0"], &script).await;
    assert!(!ok, "{stdout}");
    assert!(stdout.contains("3 already recorded"), "{stdout}");
    assert_eq!(entries(&c).await.len(), length, "a rerun appends nothing");

    // 3. Every effect succeeds: the report is written after both payouts.
    let lines = [
        payout("pay-c", "stl-3", 100, "acme"),
        write("report", "reports/day-2.txt", "paid", &["pay-c", "first"]),
        write("first", "reports/first.txt", "one", &[]),
    ];
    let script = program(root, "day-2.sh", &lines);
    let (ok, stdout, stderr) =
        petition(&url, &key, &["--follow-ms", PETITION_TIMEOUT_MS], &script).await;
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("every member was admitted and every effect succeeded"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("files/reports/day-2.txt")).expect("report written"),
        "paid"
    );

    // 4. A symlink planted in the sandbox, pointing out of it: the core admits the relative
    //    path, the agent refuses to follow the link (evidence, a `refused` outcome), nothing
    //    is written outside, and what waited on the write's outcome is rejected.
    let outside = tempfile::tempdir().expect("outside dir");
    std::os::unix::fs::symlink(outside.path(), root.join("files/escape")).expect("plant link");
    let lines = [
        write("evil", "escape/owned.txt", "gotcha", &[]),
        write("after", "reports/after-evil.txt", "x", &["evil"]),
    ];
    let script = program(root, "escape.sh", &lines);
    let plan_file = root.join("escape.plan.json");
    let (ok, stdout, stderr) = petition(
        &url,
        &key,
        &[
            "--plan-out",
            &plan_file.display().to_string(),
            "--follow-ms",
            PETITION_TIMEOUT_MS,
        ],
        &script,
    )
    .await;
    assert!(!ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("outcome failure"), "{stdout}");
    assert!(stdout.contains("DEPENDENCY_FAILED"), "{stdout}");
    assert!(
        !outside.path().join("owned.txt").exists(),
        "nothing written outside the sandbox"
    );
    let evil = ids(&plan_file)["evil"];
    let outcome = c
        .proposal(evil)
        .await
        .expect("read")
        .outcome
        .expect("reported");
    assert!(!outcome.succeeded);
    let report = common::read_ledger(&c)
        .await
        .into_iter()
        .filter_map(|e| e.decision_record().cloned())
        .find(|d| d.id == outcome.report)
        .expect("the outcome record");
    let payload = &report.proposal.proposal.payload;
    assert_eq!(payload.get("outcome"), Some(&"refused".into()), "{payload}");
    let reason = payload
        .get("reason")
        .map(|r| r.to_string())
        .unwrap_or_default();
    assert!(
        reason.contains("link") || reason.contains("symlink"),
        "{reason}"
    );

    // 5. The leader's execution overview: outcomes by effect and result, refusals named.
    let leader = cluster.leader().await.expect("leader");
    let leader_url = cluster.node(leader).url();
    let (ok, stdout, stderr) = docket(&["execution", "list", "--node", &leader_url]).await;
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("0 in flight"), "{stdout}");
    let has = |effect: &str, outcome: &str| {
        stdout
            .lines()
            .any(|l| l.split_whitespace().take(2).eq([effect, outcome]))
    };
    assert!(has("rail", "failure"), "the declined payout\n{stdout}");
    assert!(has("rail", "success"), "{stdout}");
    assert!(has("file_write", "success"), "{stdout}");
    let refused = stdout
        .split("refused:")
        .nth(1)
        .unwrap_or_else(|| panic!("a refusals section\n{stdout}"));
    assert!(refused.contains(&evil.short()), "{stdout}");
    let (ok, json, _) = docket(&[
        "execution",
        "list",
        "--node",
        &leader_url,
        "--limit",
        "2",
        "--output",
        "json",
    ])
    .await;
    assert!(ok);
    let jobs: Vec<serde_json::Value> = serde_json::from_str(&json).expect("jobs as JSON");
    assert!(jobs.len() >= 5, "paged through every job: {}", jobs.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_plans_and_dry_runs_record_nothing() {
    let rail = Rail::start().await.expect("rail");
    let (dir, cluster) =
        formed_cluster_with_config("petition-bad", 3, |root| config(root, &rail)).await;
    let root = dir.path();
    let url = cluster.node(2).url();
    let c = client(&url);
    let key = root.join("alice.key");
    docket_node::cli::write_key_file(&key, &dev::signing_key("alice"), true).expect("key");
    let key = key.display().to_string();
    let before = c.status().await.expect("status");

    let good = write("a", "a.txt", "a", &[]);
    let cases: [(&str, Vec<String>, &str); 4] = [
        (
            "malformed",
            vec![good.clone(), "{\"action\": 7}".into()],
            "line 2",
        ),
        (
            "unknown",
            vec![good.clone(), write("b", "b.txt", "b", &["ghost"])],
            "label \"ghost\", which no line defines",
        ),
        (
            "cycle",
            vec![
                write("x", "x.txt", "x", &["y"]),
                good.clone(),
                write("y", "y.txt", "y", &["x"]),
            ],
            "lines [1, 3] depend on each other in a cycle",
        ),
        (
            "escape",
            vec![format!(
                r#"{{"action": "FILE.WRITE", "subject": "{}", "payload": {{}}}}"#,
                "s".repeat(200)
            )],
            "subject_bytes_max",
        ),
    ];
    for (name, lines, expected) in cases {
        let script = program(root, &format!("{name}.sh"), &lines);
        let (ok, stdout, stderr) = petition(&url, &key, &[], &script).await;
        assert!(!ok, "{name}: {stdout}");
        assert!(stderr.contains(expected), "{name}: {stderr}");
        assert!(stderr.contains("nothing was submitted"), "{name}: {stderr}");
    }
    let (ok, _, stderr) = docket(&[
        "petition", "--node", &url, "--key", &key, "--", "sh", "-c", "exit 3",
    ])
    .await;
    assert!(!ok && stderr.contains("nothing was submitted"), "{stderr}");

    // A dry run, one member of which would be rejected (an escaping path).
    let lines = [
        good.clone(),
        r#"{"label": "esc", "action": "FILE.WRITE", "subject": "../etc/x", "payload": {"path": "../etc/x", "contents": "x"}}"#.to_owned(),
    ];
    let script = program(root, "dry.sh", &lines);
    let (ok, stdout, stderr) = petition(&url, &key, &["--dry-run"], &script).await;
    assert!(!ok, "{stdout}");
    assert!(stdout.contains("would ADMIT"), "{stdout}\n{stderr}");
    assert!(stdout.contains("path_is_relative"), "{stdout}");
    let after = c.status().await.expect("status");
    assert_eq!(
        after.ledger_length, before.ledger_length,
        "nothing recorded"
    );
    assert_eq!(after.state_hash, before.state_hash, "state unchanged");
}
