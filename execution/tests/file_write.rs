//! The generic file effect (`file/FILE.WRITE`) end to end, in isolation: a real core state
//! behind an in-memory host, real files in a temporary sandbox.

#![allow(clippy::unwrap_used)] // Tests unwrap.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use docket_core::constitution::DEFAULT_DOCUMENT;
use docket_core::{dev, Decision, DecisionRecord, ProposalId, Value};
use docket_execution::journal::{Conclusion, Phase, Resolution};
use docket_execution::{
    outcome, EffectLimits, EpochEnd, Evidence, ExecutionConfig, FileWriteConfig, OutcomeKind,
    Reporting,
};
use support::*;

fn file_config(sandbox: &Path) -> ExecutionConfig {
    ExecutionConfig {
        enabled: true,
        key_file: Some("exec.key".into()),
        file_write: Some(FileWriteConfig {
            dir: sandbox.to_path_buf(),
            limits: fast_limits(),
        }),
        ..ExecutionConfig::default()
    }
}

fn idle(end: &EpochEnd) -> bool {
    matches!(end, EpochEnd::Idle { unfinished: 0, .. })
}

fn write_payload(path: &str, contents: &str) -> Value {
    Value::map([("path", path.into()), ("contents", contents.into())])
}

fn hash(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Files `FILE.WRITE` of `path` by alice (a petitioner), with `subject` = `path`.
fn write(host: &FakeHost, path: &str, contents: &str) -> (ProposalId, Decision) {
    host.file("alice", "FILE.WRITE", path, write_payload(path, contents))
}

/// The one outcome record about `id`, admitted.
fn the_outcome(host: &FakeHost, id: &ProposalId) -> DecisionRecord {
    let outcomes = host.outcomes_about(id);
    assert_eq!(
        outcomes.len(),
        1,
        "exactly one outcome record: {outcomes:#?}"
    );
    assert_eq!(outcomes[0].decision, Decision::Admit, "{:#?}", outcomes[0]);
    outcomes[0].clone()
}

fn field<'a>(record: &'a DecisionRecord, name: &str) -> Option<&'a str> {
    record
        .proposal
        .proposal
        .payload
        .get(name)
        .and_then(Value::as_str)
}

/// The last evidence about `id`: a refusal naming `needle`, that performed nothing, and an
/// admitted `EXECUTION.OUTCOME` `refused` committing to it.
fn assert_refused(
    host: &FakeHost,
    executor: &docket_execution::Executor,
    id: &ProposalId,
    needle: &str,
) -> Evidence {
    let evidence = executor.journal().evidence(id).unwrap();
    let last = evidence
        .last()
        .unwrap_or_else(|| panic!("evidence for {id:?}"))
        .clone();
    assert_eq!(last.outcome, OutcomeKind::Refused, "{last:#?}");
    assert_eq!(last.effect, "file_write");
    let reason = last.reason.clone().unwrap();
    assert!(
        reason.contains(needle),
        "{reason:?} should mention {needle:?}"
    );
    assert!(last.effects.is_empty(), "a refusal performs nothing");
    assert_eq!(last.cost.attempts, 0);
    let outcome = the_outcome(host, id);
    assert_eq!(outcome.proposal.proposal.action, "EXECUTION.OUTCOME");
    assert_eq!(field(&outcome, "outcome"), Some("refused"));
    assert_eq!(field(&outcome, "effect"), Some("file_write"));
    assert_eq!(
        field(&outcome, "evidence_hash"),
        Some(last.hash_hex().as_str())
    );
    assert!(field(&outcome, "reason").unwrap().contains(needle));
    assert_eq!(field(&outcome, "content_hash"), None, "nothing was written");
    last
}

/// The names in `dir`, sorted (empty if it does not exist).
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn an_admitted_file_write_is_written_verified_and_reported() {
    let host = FakeHost::new();
    let dir = tempfile::tempdir().unwrap();
    let sandbox = dir.path().join("files");
    let executor = executor(&file_config(&sandbox), &dir.path().join("journal"));

    let contents = "hello, ledger\n";
    let (id, decision) = write(&host, "notes/2026/a.txt", contents);
    assert_eq!(decision, Decision::Admit);
    // The core records the hash the agent must reproduce.
    let subject = host.subject_state("file", "notes/2026/a.txt").unwrap();
    let recorded = subject
        .fields
        .get("contents_hash")
        .and_then(Value::as_str)
        .unwrap();
    assert_eq!(recorded, hash(contents.as_bytes()));

    assert!(idle(&executor.run_until_idle(&*host, 1).await.unwrap()));

    // The file, with its parent directories, inside the sandbox; no temporary file left.
    let target = sandbox.join("notes/2026/a.txt");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), contents);
    assert_eq!(
        listing(&sandbox.join("notes/2026")),
        vec!["a.txt".to_owned()]
    );

    // Evidence: one successful attempt that wrote and read back exactly the contents.
    let evidence = executor.journal().evidence(&id).unwrap();
    assert_eq!(evidence.len(), 1);
    let e = &evidence[0];
    assert_eq!(e.outcome, OutcomeKind::Success, "{e:#?}");
    assert_eq!(e.command, "FILE.WRITE");
    assert_eq!(e.effect, "file_write");
    assert_eq!(e.instance, id);
    assert_eq!(e.inputs_hash, recorded);
    assert_eq!(e.outputs_hash.as_deref(), Some(recorded));
    assert_eq!(e.effects.len(), 1);
    assert_eq!(e.effects[0].kind, "file_write");
    assert_eq!(e.effects[0].target, "notes/2026/a.txt");
    assert_eq!(e.cost.attempts, 1);
    assert_eq!(e.cost.bytes_out, contents.len() as u64);
    assert_eq!(e.cost.bytes_in, contents.len() as u64);

    // The outcome record: EXECUTION.OUTCOME about the write, signed by the executor,
    // depending on it, carrying the content hash the core stored.
    let outcome = the_outcome(&host, &id);
    let p = &outcome.proposal.proposal;
    assert_eq!(
        (p.domain.as_str(), p.action.as_str()),
        ("execution", "EXECUTION.OUTCOME")
    );
    assert_eq!(p.subject, id.to_hex());
    assert_eq!(p.dependencies, vec![id]);
    assert_eq!(p.author, dev::key("exec"));
    assert_eq!(outcome.access.role.as_deref(), Some("executor"));
    assert_eq!(field(&outcome, "reports_on"), Some(id.to_hex().as_str()));
    assert_eq!(field(&outcome, "outcome"), Some("success"));
    assert_eq!(field(&outcome, "effect"), Some("file_write"));
    assert_eq!(field(&outcome, "content_hash"), Some(recorded));
    assert_eq!(field(&outcome, "path"), Some("notes/2026/a.txt"));
    assert_eq!(
        field(&outcome, "bytes"),
        Some(contents.len().to_string().as_str())
    );
    assert_eq!(
        field(&outcome, "evidence_hash"),
        Some(e.hash_hex().as_str())
    );
    assert_eq!(field(&outcome, "reason"), None);
    let reported = host.subject_state("execution", &id.to_hex()).unwrap();
    assert_eq!(reported.state, "reported");
    assert_eq!(
        reported.fields.get("outcome"),
        Some(&Value::Str("success".into()))
    );

    // A rewrite of the path replaces the contents, atomically, and is reported likewise.
    let (again, decision) = write(&host, "notes/2026/a.txt", "second\n");
    assert_eq!(decision, Decision::Admit);
    assert!(idle(&executor.run_until_idle(&*host, 1).await.unwrap()));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "second\n");
    assert_eq!(
        field(&the_outcome(&host, &again), "content_hash"),
        Some(hash(b"second\n").as_str())
    );

    // Running again changes nothing: one attempt each, one outcome each.
    assert!(idle(&executor.run_until_idle(&*host, 1).await.unwrap()));
    for id in [id, again] {
        assert_eq!(executor.journal().evidence(&id).unwrap().len(), 1);
        the_outcome(&host, &id);
    }
}

#[tokio::test]
async fn a_write_that_depends_on_an_outcome_waits_for_it() {
    let host = FakeHost::new();
    let dir = tempfile::tempdir().unwrap();
    let sandbox = dir.path().join("files");
    let executor = executor(&file_config(&sandbox), &dir.path().join("journal"));

    let (first, _) = write(&host, "a.txt", "a");
    // The second write waits for the first one's outcome (not for its admission).
    let second = dev::proposal(
        &host.ledger_id(),
        "alice",
        "FILE.WRITE",
        "b.txt",
        write_payload("b.txt", "b"),
        vec![first.outcome_of()],
        1,
    );
    let second_id = second.id();
    host.propose(second);
    let decisions = |id: ProposalId| -> Vec<Decision> {
        host.records("FILE.WRITE")
            .into_iter()
            .filter(|(_, d)| d.id == id)
            .map(|(_, d)| d.decision)
            .collect()
    };
    assert!(
        matches!(decisions(second_id)[..], [Decision::Defer { .. }]),
        "{:?}",
        decisions(second_id)
    );

    // One run writes a.txt and reports it, which admits b.txt; the next run writes b.txt.
    assert!(idle(&executor.run_until_idle(&*host, 1).await.unwrap()));
    assert_eq!(decisions(second_id).last(), Some(&Decision::Admit));
    assert!(idle(&executor.run_until_idle(&*host, 1).await.unwrap()));
    assert_eq!(std::fs::read_to_string(sandbox.join("a.txt")).unwrap(), "a");
    assert_eq!(std::fs::read_to_string(sandbox.join("b.txt")).unwrap(), "b");
    assert_eq!(
        field(&the_outcome(&host, &second_id), "outcome"),
        Some("success")
    );
}

/// The default constitution with FILE.WRITE's invariants (`subject_is_path`,
/// `path_is_relative`) edited out: the core then admits any path, and the sandbox alone
/// must refuse escapes.
fn without_path_invariants() -> String {
    let line = "invariants = [\"subject_is_path\", \"path_is_relative\"]\n";
    assert_eq!(
        DEFAULT_DOCUMENT.matches(line).count(),
        1,
        "the default document changed"
    );
    DEFAULT_DOCUMENT.replace(line, "")
}

#[tokio::test]
async fn escaping_paths_are_refused_with_evidence_and_nothing_is_written() {
    let escapes = [
        ("esc-parent", "../escaped.txt", "`..`"),
        ("esc-climb", "sub/../../escaped.txt", "`..`"),
        (
            "esc-absolute",
            "/tmp/docket-file-write-escaped.txt",
            "absolute",
        ),
        ("esc-newline", "a\nb.txt", "control character"),
    ];
    // Under the default constitution the core itself rejects them: the edit below matters.
    let strict = FakeHost::new();
    for (_, path, _) in escapes {
        let (_, decision) = write(&strict, path, "x");
        assert!(
            matches!(decision, Decision::Reject(_)),
            "{path:?}: {decision:?}"
        );
    }

    let host = FakeHost::with_document(&without_path_invariants(), 1_000);
    let dir = tempfile::tempdir().unwrap();
    let sandbox = dir.path().join("box").join("files");
    let executor = executor(&file_config(&sandbox), &dir.path().join("journal"));
    let mut filed = Vec::new();
    for (subject, path, needle) in escapes {
        let (id, decision) = host.file(
            "alice",
            "FILE.WRITE",
            subject,
            write_payload(path, "escaped"),
        );
        assert_eq!(decision, Decision::Admit, "{path:?}");
        filed.push((id, needle));
    }
    // A plain path under the same constitution is still written: the refusals are not a
    // blanket failure.
    let (plain, _) = write(&host, "plain.txt", "fine");

    assert!(idle(&executor.run_until_idle(&*host, 1).await.unwrap()));

    for (id, needle) in &filed {
        assert_refused(&host, &executor, id, needle);
        let reported = host.subject_state("execution", &id.to_hex()).unwrap();
        assert_eq!(
            reported.fields.get("outcome"),
            Some(&Value::Str("refused".into()))
        );
    }
    assert!(!dir.path().join("box").join("escaped.txt").exists());
    assert!(!dir.path().join("escaped.txt").exists());
    assert!(!Path::new("/tmp/docket-file-write-escaped.txt").exists());
    assert_eq!(listing(&dir.path().join("box")), vec!["files".to_owned()]);
    assert_eq!(listing(&sandbox), vec!["plain.txt".to_owned()]);
    assert_eq!(
        field(&the_outcome(&host, &plain), "outcome"),
        Some("success")
    );
}

#[cfg(unix)]
#[tokio::test]
async fn symlinks_inside_the_sandbox_are_refused_and_nothing_escapes() {
    let host = FakeHost::new();
    let dir = tempfile::tempdir().unwrap();
    let sandbox = dir.path().join("files");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&sandbox).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "untouched").unwrap();
    // A directory link pointing out, a file link pointing out, and a link pointing inside
    // (refused too: links are refused, wherever they point).
    std::os::unix::fs::symlink(&outside, sandbox.join("out")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret.txt"), sandbox.join("secret.txt")).unwrap();
    std::fs::create_dir_all(sandbox.join("real")).unwrap();
    std::os::unix::fs::symlink(sandbox.join("real"), sandbox.join("alias")).unwrap();
    let executor = executor(&file_config(&sandbox), &dir.path().join("journal"));

    // All three are plain relative paths: the core admits them; only the disk says no.
    let (through_dir, decision) = write(&host, "out/new.txt", "escaped");
    assert_eq!(decision, Decision::Admit);
    let (over_file, _) = write(&host, "secret.txt", "overwritten");
    let (via_alias, _) = write(&host, "alias/inner.txt", "aliased");

    assert!(idle(&executor.run_until_idle(&*host, 1).await.unwrap()));

    for id in [through_dir, over_file, via_alias] {
        assert_refused(&host, &executor, &id, "symbolic link");
    }
    assert_eq!(
        listing(&outside),
        vec!["secret.txt".to_owned()],
        "nothing escaped"
    );
    assert_eq!(
        std::fs::read_to_string(outside.join("secret.txt")).unwrap(),
        "untouched"
    );
    assert!(std::fs::symlink_metadata(sandbox.join("secret.txt"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(listing(&sandbox.join("real")).is_empty());
}

#[tokio::test]
async fn contents_over_the_size_cap_are_refused() {
    let host = FakeHost::new();
    let dir = tempfile::tempdir().unwrap();
    let sandbox = dir.path().join("files");
    let mut config = file_config(&sandbox);
    config.file_write.as_mut().unwrap().limits = EffectLimits {
        body_bytes_max: 8,
        ..fast_limits()
    };
    let executor = executor(&config, &dir.path().join("journal"));
    let (big, _) = write(&host, "big.txt", "123456789");
    let (small, _) = write(&host, "small.txt", "12345678");
    assert!(idle(&executor.run_until_idle(&*host, 1).await.unwrap()));
    assert_refused(&host, &executor, &big, "body_bytes_max");
    assert!(!sandbox.join("big.txt").exists());
    assert_eq!(
        std::fs::read_to_string(sandbox.join("small.txt")).unwrap(),
        "12345678"
    );
    assert_eq!(
        field(&the_outcome(&host, &small), "outcome"),
        Some("success")
    );
}

#[tokio::test]
async fn a_new_leader_does_not_roll_a_path_back_to_an_older_write() {
    let host = FakeHost::new();
    let dir = tempfile::tempdir().unwrap();
    let sandbox = dir.path().join("files");
    let config = file_config(&sandbox);

    // The old leader wrote "old" but crashed before its outcome was filed.
    let (older, _) = write(&host, "state.txt", "old");
    host.fail_submits
        .store(1_000, std::sync::atomic::Ordering::SeqCst);
    {
        let old = executor(&config, &dir.path().join("old-journal"));
        let end = old.run_until_idle(&*host, 1).await.unwrap();
        assert!(
            matches!(end, EpochEnd::Idle { unfinished: 1, .. }),
            "{end:?}"
        );
    }
    host.fail_submits
        .store(0, std::sync::atomic::Ordering::SeqCst);
    assert!(host.outcomes_about(&older).is_empty());
    // Then a later write of the same path was performed and reported (by another leader,
    // played here by hand: the file is written and a success outcome filed).
    let (newer, _) = write(&host, "state.txt", "new");
    std::fs::write(sandbox.join("state.txt"), "new").unwrap();
    let record = host
        .records("FILE.WRITE")
        .into_iter()
        .find(|(_, d)| d.id == newer)
        .unwrap()
        .1;
    let conclusion = Conclusion {
        outcome: OutcomeKind::Success,
        reason: None,
        fields: BTreeMap::from([("content_hash".to_owned(), hash(b"new"))]),
        evidence_hash: "ab".repeat(32),
    };
    let filed = outcome::build(
        Reporting::Execution,
        &host.ledger_id(),
        &dev::signing_key("exec"),
        &record,
        "file_write",
        &conclusion,
    );
    host.propose(filed);
    the_outcome(&host, &newer);

    // A new leader with an empty journal finds the older write unreported: repeating it
    // would put "old" back while the ledger's contents_hash says "new".
    host.set_leader(true, 2);
    let new = executor(&config, &dir.path().join("new-journal"));
    assert!(idle(&new.run_until_idle(&*host, 2).await.unwrap()));
    assert_eq!(
        std::fs::read_to_string(sandbox.join("state.txt")).unwrap(),
        "new"
    );
    assert_refused(&host, &new, &older, "superseded");
    let job = new.journal().job(&newer).unwrap().unwrap();
    assert_eq!(
        job.phase,
        Phase::Resolved {
            resolution: Resolution::AlreadyReported
        }
    );
    assert_eq!(
        host.subject_state("file", "state.txt")
            .unwrap()
            .fields
            .get("contents_hash"),
        Some(&Value::Str(hash(b"new")))
    );
}
