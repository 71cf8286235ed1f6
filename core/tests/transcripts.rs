#![allow(
    clippy::disallowed_methods,
    reason = "golden files are read and written by the test harness, not the core"
)]
//! Golden transcripts: one scripted ledger per built-in domain of the default constitution,
//! plus one that provokes every rejection code. Their proposals are format `v1`, so the
//! goldens keep proving that ledgers written before format `v2` replay bit for bit.
//!
//! Each transcript is the `Display` line of every recorded entry, with `# comment` lines
//! saying what each step tries, `duplicate of #N` for a resubmission that appended nothing,
//! and the final `state <hash>`. The text is compared with `tests/golden/<name>.txt`; run
//! with `DOCKET_UPDATE_GOLDEN=1` to rewrite the goldens (then review the diff).
//!
//! The goldens pin the exact bytes (ids, hashes, details). The key facts are asserted in
//! code as well (decision labels, rejection details, balances, lifecycle states), so the
//! tests mean something on their own even right after the goldens were regenerated. Every
//! ledger is also checked with `verify_chain`, `replay` and `audit`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use docket_core::constitution::DEFAULT_DOCUMENT;
use docket_core::{
    audit, dev, replay, verify_chain, Cause, Constitution, ConstitutionVersion, Decision,
    DecisionRecord, LedgerEntry, LedgerId, LedgerIndex, LedgerTime, Proposal, ProposalFormat,
    ProposalId, ProposalStatus, RejectCode, SignedProposal, State, Submission, Value,
};

/// 2026-01-01T00:00:00Z: the genesis time of every transcript.
const START_MS: u64 = 1_767_225_600_000;
/// Ledger time between two consecutive submissions.
const STEP_MS: u64 = 1_000;
/// `deferral_expiry_ms` of the default constitution.
const DEFERRAL_EXPIRY_MS: u64 = 600_000;

// ---------------------------------------------------------------------------------------
// The harness.

/// A ledger being scripted, and its transcript so far.
struct Transcript {
    ledger_id: LedgerId,
    state: State,
    ledger: Vec<LedgerEntry>,
    lines: Vec<String>,
    /// Ledger time of the last command.
    time: u64,
    nonce: u64,
    /// The active constitution version after the last command.
    active: ConstitutionVersion,
}

/// What one submission did.
struct Step {
    id: ProposalId,
    submission: Submission,
}

impl Step {
    /// The entry recording the submitted proposal itself.
    fn own(&self) -> &LedgerEntry {
        self.submission
            .own_entry(&self.id)
            .expect("the submission recorded an entry for the submitted proposal")
    }

    fn record(&self) -> &DecisionRecord {
        self.own()
            .decision_record()
            .expect("a submission records a decision")
    }

    fn index(&self) -> LedgerIndex {
        self.own().index
    }

    /// `ADMIT`, `DEFER`, the rejection code's name, or `DUPLICATE`.
    fn label(&self) -> &'static str {
        match self.submission {
            Submission::Duplicate { .. } => "DUPLICATE",
            Submission::Recorded(_) => self.record().decision.label(),
        }
    }

    fn entries(&self) -> &[LedgerEntry] {
        self.submission.entries()
    }

    fn line(&self) -> String {
        match &self.submission {
            Submission::Duplicate { index, status } => {
                format!("duplicate of #{index} ({status:?})")
            }
            Submission::Recorded(entries) => entries
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

/// The decision recorded for `id` among `entries`.
fn decided<'a>(entries: &'a [LedgerEntry], id: &ProposalId) -> &'a DecisionRecord {
    entries
        .iter()
        .filter_map(LedgerEntry::decision_record)
        .find(|d| d.id == *id)
        .unwrap_or_else(|| panic!("no entry decides {}", id.short()))
}

fn detail(decision: &Decision) -> String {
    match decision {
        Decision::Reject(rejection) => rejection.detail.clone(),
        Decision::Defer { waiting_on } => waiting_on
            .iter()
            .map(ProposalId::short)
            .collect::<Vec<_>>()
            .join(" "),
        Decision::Admit => String::new(),
    }
}

/// Asserts the step's own decision: its label, and that its detail contains `contains`.
#[track_caller]
fn expect(step: &Step, label: &str, contains: &str) {
    assert_eq!(step.label(), label, "unexpected decision: {}", step.line());
    if let Submission::Recorded(_) = step.submission {
        let detail = detail(&step.record().decision);
        assert!(
            detail.contains(contains),
            "detail {detail:?} does not contain {contains:?}: {}",
            step.line()
        );
    }
}

/// Asserts a decision recorded among a step's entries (a released or expired one).
#[track_caller]
fn expect_record(record: &DecisionRecord, cause: Cause, label: &str, contains: &str) {
    assert_eq!(record.cause, cause, "cause of {}", record.id.short());
    assert_eq!(
        record.decision.label(),
        label,
        "decision of {}",
        record.id.short()
    );
    let detail = detail(&record.decision);
    assert!(
        detail.contains(contains),
        "detail {detail:?} does not contain {contains:?}"
    );
}

impl Transcript {
    fn new(name: &str, document: &str) -> Transcript {
        let ledger_id = LedgerId::new(format!("golden-{name}")).expect("valid ledger id");
        let (state, genesis) = State::genesis(ledger_id.clone(), document, LedgerTime(START_MS))
            .expect("the transcript's constitution is valid");
        let mut transcript = Transcript {
            ledger_id,
            state,
            ledger: Vec::new(),
            lines: vec![format!("# golden transcript: {name}")],
            time: START_MS,
            nonce: 0,
            active: genesis.constitution,
        };
        transcript.lines.push(genesis.to_string());
        transcript.ledger.push(genesis);
        transcript
    }

    fn comment(&mut self, text: &str) {
        self.lines.push(format!("# {text}"));
    }

    /// The time the next submission will be stamped with.
    fn next_time(&self) -> u64 {
        self.time + STEP_MS
    }

    /// Lets ledger time pass without recording anything.
    fn wait(&mut self, ms: u64) {
        self.time += ms;
        self.comment(&format!("(ledger time advances {ms} ms to {})", self.time));
    }

    fn push(&mut self, entry: LedgerEntry) {
        self.lines.push(entry.to_string());
        self.ledger.push(entry);
    }

    /// Notes a constitution adopted by the command just recorded.
    fn note_adoption(&mut self) {
        let version = self.state.constitution_version();
        if version != self.active {
            self.active = version;
            let next = self.state.head().index.next();
            self.comment(&format!(
                "(constitution {} is active: entries from #{next} on are judged by it)",
                version.short()
            ));
        }
    }

    /// Signs a proposal of a development principal with the next nonce.
    fn sign(
        &mut self,
        author: &str,
        action: &str,
        subject: &str,
        payload: Value,
        dependencies: Vec<ProposalId>,
    ) -> SignedProposal {
        self.nonce += 1;
        let signed = dev::proposal(
            &self.ledger_id,
            author,
            action,
            subject,
            payload,
            dependencies,
            self.nonce,
        );
        dev::reformat(signed, ProposalFormat::V1, author)
    }

    /// Builds and signs a proposal by hand: any domain, dependencies exactly as given.
    fn sign_raw(
        &mut self,
        author: &str,
        domain: &str,
        action: &str,
        subject: &str,
        payload: Value,
        dependencies: Vec<ProposalId>,
    ) -> SignedProposal {
        self.nonce += 1;
        Proposal {
            format: ProposalFormat::V1,
            ledger_id: self.ledger_id.clone(),
            domain: domain.to_owned(),
            action: action.to_owned(),
            subject: subject.to_owned(),
            payload,
            dependencies,
            author: dev::key(author),
            nonce: self.nonce,
        }
        .sign(&dev::signing_key(author))
    }

    /// Submits `signed` `step_ms` after the previous command.
    fn submit_after(&mut self, signed: SignedProposal, step_ms: u64) -> Step {
        self.time += step_ms;
        let id = signed.id();
        let submission = self.state.submit(signed, LedgerTime(self.time));
        match &submission {
            Submission::Recorded(entries) => {
                for entry in entries {
                    self.push(entry.clone());
                }
            }
            Submission::Duplicate { index, .. } => {
                self.lines.push(format!("duplicate of #{index}"))
            }
        }
        self.note_adoption();
        Step { id, submission }
    }

    fn submit(&mut self, signed: SignedProposal) -> Step {
        self.submit_after(signed, STEP_MS)
    }

    /// Signs and submits.
    fn file(
        &mut self,
        author: &str,
        action: &str,
        subject: &str,
        payload: Value,
        dependencies: Vec<ProposalId>,
    ) -> Step {
        let signed = self.sign(author, action, subject, payload, dependencies);
        self.submit(signed)
    }

    /// Advances ledger time by `ms` with a tick command; returns the entries it recorded.
    fn tick(&mut self, ms: u64) -> Vec<LedgerEntry> {
        self.time += ms;
        self.comment(&format!(
            "(tick: ledger time advances {ms} ms to {})",
            self.time
        ));
        let entries = self.state.tick(LedgerTime(self.time));
        for entry in &entries {
            self.push(entry.clone());
        }
        self.note_adoption();
        entries
    }

    fn subject_state(&self, domain: &str, subject: &str) -> String {
        self.state
            .subject(domain, subject)
            .map(|s| s.state.clone())
            .unwrap_or_else(|| "<untouched>".to_owned())
    }

    fn field(&self, domain: &str, subject: &str, field: &str) -> Option<Value> {
        self.state
            .subject(domain, subject)
            .and_then(|s| s.fields.get(field).cloned())
    }

    fn int_field(&self, domain: &str, subject: &str, field: &str) -> i64 {
        self.field(domain, subject, field)
            .and_then(|v| v.as_int())
            .unwrap_or(0)
    }

    /// Verifies, replays and audits the ledger, appends the state hash and returns the text.
    fn finish(mut self) -> Finished {
        verify_chain(&self.ledger).expect("the chain verifies");
        let replayed = replay(&self.ledger).expect("the ledger replays");
        assert_eq!(
            replayed.hash(),
            self.state.hash(),
            "replay reproduces the state"
        );
        let (audited, report) = audit(&self.ledger).expect("the audit re-derives every entry");
        assert_eq!(
            audited.hash(),
            self.state.hash(),
            "audit reproduces the state"
        );
        assert_eq!(report.entries, self.ledger.len() as u64);
        let hash = self.state.hash();
        self.lines.push(format!("state {hash}"));
        let mut text = self.lines.join("\n");
        text.push('\n');
        Finished {
            text,
            ledger: self.ledger,
        }
    }
}

/// A verified transcript.
struct Finished {
    text: String,
    ledger: Vec<LedgerEntry>,
}

/// Compares `actual` with `tests/golden/<name>.txt`, or writes it when
/// `DOCKET_UPDATE_GOLDEN=1`.
fn golden(name: &str, actual: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("golden");
    let path = dir.join(format!("{name}.txt"));
    if std::env::var_os("DOCKET_UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(&dir).expect("create tests/golden");
        std::fs::write(&path, actual).expect("write the golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| {
            panic!(
                "cannot read {}: {e}; run with DOCKET_UPDATE_GOLDEN=1 to create it",
                path.display()
            )
        })
        .replace("\r\n", "\n");
    if expected == actual {
        return;
    }
    let mut expected_lines = expected.lines();
    let mut actual_lines = actual.lines();
    let mut number = 1;
    loop {
        match (expected_lines.next(), actual_lines.next()) {
            (Some(e), Some(a)) if e == a => number += 1,
            (e, a) => {
                panic!(
                    "transcript {name} differs from {} at line {number}:\n  golden: {}\n  actual: {}\n\
                     rerun with DOCKET_UPDATE_GOLDEN=1 to accept the new transcript, then review the diff",
                    path.display(),
                    e.unwrap_or("<end of file>"),
                    a.unwrap_or("<end of transcript>"),
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Payload helpers.

fn map<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::map(pairs)
}

/// 32 bytes of hex made of the byte `byte` (e.g. `"ab"`), for hash and id fields.
fn hash32(byte: &str) -> Value {
    Value::Str(byte.repeat(32))
}

/// A development principal's public key in hex.
fn key_hex(name: &str) -> Value {
    Value::Str(dev::key(name).to_hex())
}

fn id_hex(id: &ProposalId) -> Value {
    Value::Str(id.to_hex())
}

fn deposit(amount: i64, currency: &str) -> Value {
    map([("amount", amount.into()), ("currency", currency.into())])
}

fn payout(amount: i64) -> Value {
    map([("amount", amount.into()), ("beneficiary", "acme".into())])
}

/// A payload that carries `bytes` bytes of memo beside a valid deposit.
fn deposit_with_memo(amount: i64, bytes: usize) -> Value {
    map([
        ("amount", amount.into()),
        ("currency", "EUR".into()),
        ("memo", "m".repeat(bytes).into()),
    ])
}

fn assert_replaced(document: &str) {
    assert_ne!(
        document, DEFAULT_DOCUMENT,
        "the replaced text exists in the default document"
    );
}

// ---------------------------------------------------------------------------------------
// settlement

#[test]
fn settlement() {
    let mut t = Transcript::new("settlement", DEFAULT_DOCUMENT);
    assert_eq!(
        t.state.constitution().limits.deferral_expiry_ms,
        DEFERRAL_EXPIRY_MS
    );
    let stl = "stl-1";

    t.comment("authorization: only treasurers confirm deposits");
    let s = t.file(
        "mallory",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        stl,
        deposit(1, "EUR"),
        vec![],
    );
    expect(
        &s,
        "UNAUTHORIZED",
        "\"mallory\" holds none of the allowed roles",
    );
    assert_eq!(
        s.record().access.to_string().split(' ').next(),
        Some("deny")
    );
    t.comment("the executor may not confirm a deposit either");
    let s = t.file(
        "exec",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        stl,
        deposit(1, "EUR"),
        vec![],
    );
    expect(
        &s,
        "UNAUTHORIZED",
        "\"exec\" holds none of the allowed roles",
    );

    t.comment("schema: a missing field, a field of the wrong type, a payload that is not a map");
    let s = t.file(
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        stl,
        map([("amount", 125_000.into())]),
        vec![],
    );
    expect(&s, "SCHEMA", "lacks required field \"currency\"");
    let s = t.file(
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        stl,
        map([("amount", "125000".into()), ("currency", "EUR".into())]),
        vec![],
    );
    expect(&s, "SCHEMA", "\"amount\" must be int");
    let s = t.file(
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        stl,
        Value::List(vec![125_000.into(), "EUR".into()]),
        vec![],
    );
    expect(&s, "SCHEMA", "payload must be a map");

    t.comment("invariant amount_positive");
    let s = t.file(
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        stl,
        deposit(0, "EUR"),
        vec![],
    );
    expect(&s, "INVARIANT", "amount_positive");

    t.comment("happy path: alice confirms a deposit of 125000 EUR");
    let d1 = t.file(
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        stl,
        deposit(125_000, "EUR"),
        vec![],
    );
    expect(&d1, "ADMIT", "");
    assert_eq!(d1.record().access.role.as_deref(), Some("treasurer"));
    assert_eq!(t.subject_state("settlement", stl), "funded");
    assert_eq!(t.int_field("settlement", stl, "balance"), 125_000);

    t.comment("invariant currency_consistent: the subject was funded in EUR");
    let s = t.file(
        "bob",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        stl,
        deposit(5_000, "USD"),
        vec![],
    );
    expect(&s, "INVARIANT", "currency_consistent");
    t.comment("bob, the second treasurer, tops up in EUR");
    let s = t.file(
        "bob",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        stl,
        deposit(5_000, "EUR"),
        vec![],
    );
    expect(&s, "ADMIT", "");
    assert_eq!(t.int_field("settlement", stl, "balance"), 130_000);

    t.comment("invariant payout_within_balance: 200000 exceeds 130000");
    let too_much = t.file(
        "alice",
        "SETTLEMENT.PAYOUT_REQUESTED",
        stl,
        payout(200_000),
        vec![],
    );
    expect(
        &too_much,
        "INVARIANT",
        "payout_within_balance: payout 200000 exceeds available balance 130000",
    );
    t.comment("invariant amount_positive on a payout");
    let s = t.file(
        "alice",
        "SETTLEMENT.PAYOUT_REQUESTED",
        stl,
        payout(-1),
        vec![],
    );
    expect(&s, "INVARIANT", "amount_positive");

    t.comment("invalid transitions: nothing to execute or recover while funded");
    let s = t.file(
        "exec",
        "SETTLEMENT.PAYOUT_EXECUTED",
        stl,
        map([
            ("reports_on", id_hex(&d1.id)),
            ("rail_ref", "sepa-0".into()),
        ]),
        vec![d1.id],
    );
    expect(&s, "INVALID_TRANSITION", "is in state \"funded\"");
    let s = t.file(
        "alice",
        "SETTLEMENT.RECOVERY",
        stl,
        map([("reason", "nothing to recover".into())]),
        vec![],
    );
    expect(&s, "INVALID_TRANSITION", "requires one of [rail_error]");

    t.comment("happy path: alice requests a payout of 100000");
    let p1 = t.file(
        "alice",
        "SETTLEMENT.PAYOUT_REQUESTED",
        stl,
        payout(100_000),
        vec![],
    );
    expect(&p1, "ADMIT", "");
    assert_eq!(t.subject_state("settlement", stl), "payout_requested");
    assert_eq!(t.int_field("settlement", stl, "reserved"), 100_000);
    assert_eq!(
        t.field("settlement", stl, "pending_payout"),
        Some(id_hex(&p1.id))
    );

    t.comment("one payout at a time: a second request is an invalid transition");
    let s = t.file(
        "alice",
        "SETTLEMENT.PAYOUT_REQUESTED",
        stl,
        payout(10),
        vec![],
    );
    expect(&s, "INVALID_TRANSITION", "is in state \"payout_requested\"");

    t.comment("a treasurer may not file the executor's report");
    let s = t.file(
        "alice",
        "SETTLEMENT.PAYOUT_EXECUTED",
        stl,
        map([
            ("reports_on", id_hex(&p1.id)),
            ("rail_ref", "sepa-1".into()),
        ]),
        vec![p1.id],
    );
    expect(
        &s,
        "UNAUTHORIZED",
        "\"alice\" holds none of the allowed roles",
    );

    t.comment("invariant reports_on_dependency: the report does not depend on the payout");
    let s = t.file(
        "exec",
        "SETTLEMENT.PAYOUT_EXECUTED",
        stl,
        map([
            ("reports_on", id_hex(&p1.id)),
            ("rail_ref", "sepa-1".into()),
        ]),
        vec![],
    );
    expect(&s, "INVARIANT", "reports_on_dependency: reports_on");
    t.comment("invariant reports_on_pending_payout: reporting on the deposit, not the payout");
    let s = t.file(
        "exec",
        "SETTLEMENT.PAYOUT_EXECUTED",
        stl,
        map([
            ("reports_on", id_hex(&d1.id)),
            ("rail_ref", "sepa-1".into()),
        ]),
        vec![d1.id],
    );
    expect(&s, "INVARIANT", "reports_on_pending_payout");

    t.comment("rail error: the executor reports the payout failed; the reservation is released");
    let s = t.file(
        "exec",
        "SETTLEMENT.RAIL_ERROR",
        stl,
        map([
            ("reports_on", id_hex(&p1.id)),
            ("reason", "beneficiary bank timeout".into()),
        ]),
        vec![p1.id],
    );
    expect(&s, "ADMIT", "");
    assert_eq!(s.record().access.role.as_deref(), Some("executor"));
    assert_eq!(t.subject_state("settlement", stl), "rail_error");
    assert_eq!(t.field("settlement", stl, "reserved"), None);
    assert_eq!(t.field("settlement", stl, "pending_payout"), None);
    assert_eq!(t.int_field("settlement", stl, "balance"), 130_000);

    t.comment("no deposits while in rail_error, and only a treasurer recovers");
    let s = t.file(
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        stl,
        deposit(1, "EUR"),
        vec![],
    );
    expect(&s, "INVALID_TRANSITION", "is in state \"rail_error\"");
    let s = t.file(
        "exec",
        "SETTLEMENT.RECOVERY",
        stl,
        map([("reason", "rail restored".into())]),
        vec![],
    );
    expect(
        &s,
        "UNAUTHORIZED",
        "\"exec\" holds none of the allowed roles",
    );
    t.comment("recovery: bob returns the subject to funded");
    let s = t.file(
        "bob",
        "SETTLEMENT.RECOVERY",
        stl,
        map([("reason", "rail restored".into())]),
        vec![],
    );
    expect(&s, "ADMIT", "");
    assert_eq!(t.subject_state("settlement", stl), "funded");

    t.comment("the failed payout cannot be executed after all");
    let s = t.file(
        "exec",
        "SETTLEMENT.PAYOUT_EXECUTED",
        stl,
        map([
            ("reports_on", id_hex(&p1.id)),
            ("rail_ref", "sepa-1".into()),
        ]),
        vec![p1.id],
    );
    expect(&s, "INVALID_TRANSITION", "is in state \"funded\"");

    t.comment("deferral: the executor reports on payout p2 before p2 is filed");
    let p2 = t.sign(
        "alice",
        "SETTLEMENT.PAYOUT_REQUESTED",
        stl,
        payout(100_000),
        vec![],
    );
    let p2_id = p2.id();
    let executed = t.sign(
        "exec",
        "SETTLEMENT.PAYOUT_EXECUTED",
        stl,
        map([
            ("reports_on", id_hex(&p2_id)),
            ("rail_ref", "sepa-2".into()),
        ]),
        vec![p2_id],
    );
    let executed_id = executed.id();
    let s = t.submit(executed.clone());
    expect(&s, "DEFER", &p2_id.short());
    let deferred_at = s.index();
    assert_eq!(t.state.deferred().len(), 1);
    t.comment("resubmitting the deferred report appends nothing");
    let s = t.submit(executed);
    expect(&s, "DUPLICATE", "");
    assert_eq!(
        s.submission,
        Submission::Duplicate {
            index: deferred_at,
            status: ProposalStatus::Deferred
        }
    );
    t.comment("p2 is filed and admitted; wave 1 releases the report, which is admitted too");
    let s = t.submit(p2.clone());
    expect(&s, "ADMIT", "");
    assert_eq!(s.entries().len(), 2);
    expect_record(
        decided(s.entries(), &executed_id),
        Cause::Released { wave: 1 },
        "ADMIT",
        "",
    );
    let p2_index = s.index();
    assert_eq!(t.subject_state("settlement", stl), "paid");
    assert_eq!(t.int_field("settlement", stl, "balance"), 30_000);
    assert_eq!(t.int_field("settlement", stl, "paid_total"), 100_000);
    assert!(t.state.deferred().is_empty());

    t.comment("resubmitting p2 appends nothing");
    let s = t.submit(p2);
    assert_eq!(
        s.submission,
        Submission::Duplicate {
            index: p2_index,
            status: ProposalStatus::Admitted
        }
    );

    t.comment("a report on the rejected 200000 payout: DEPENDENCY_REJECTED");
    let s = t.file(
        "exec",
        "SETTLEMENT.PAYOUT_EXECUTED",
        stl,
        map([
            ("reports_on", id_hex(&too_much.id)),
            ("rail_ref", "sepa-x".into()),
        ]),
        vec![too_much.id],
    );
    expect(
        &s,
        "DEPENDENCY_REJECTED",
        &format!("dependency {} was rejected", too_much.id.short()),
    );

    t.comment(
        "a report deferred on payout p3, which is then rejected: released as DEPENDENCY_REJECTED",
    );
    let p3 = t.sign(
        "alice",
        "SETTLEMENT.PAYOUT_REQUESTED",
        stl,
        payout(1_000_000),
        vec![],
    );
    let p3_id = p3.id();
    let report = t.file(
        "exec",
        "SETTLEMENT.PAYOUT_EXECUTED",
        stl,
        map([
            ("reports_on", id_hex(&p3_id)),
            ("rail_ref", "sepa-3".into()),
        ]),
        vec![p3_id],
    );
    expect(&report, "DEFER", &p3_id.short());
    let s = t.submit(p3);
    expect(&s, "INVARIANT", "payout_within_balance");
    expect_record(
        decided(s.entries(), &report.id),
        Cause::Released { wave: 1 },
        "DEPENDENCY_REJECTED",
        &p3_id.short(),
    );

    t.comment(
        "a forged report on a payout that was signed but never filed: deferred, then expired",
    );
    let ghost = t.sign(
        "alice",
        "SETTLEMENT.PAYOUT_REQUESTED",
        stl,
        payout(30_000),
        vec![],
    );
    let forged = t.file(
        "exec",
        "SETTLEMENT.PAYOUT_EXECUTED",
        stl,
        map([
            ("reports_on", id_hex(&ghost.id())),
            ("rail_ref", "sepa-forged".into()),
        ]),
        vec![ghost.id()],
    );
    expect(&forged, "DEFER", &ghost.id().short());
    t.comment("just before the deferral expires nothing happens");
    let none = t.tick(DEFERRAL_EXPIRY_MS - 1);
    assert!(none.is_empty());
    let expired = t.tick(1);
    assert_eq!(expired.len(), 1);
    expect_record(
        decided(&expired, &forged.id),
        Cause::Expired,
        "DEPENDENCY_EXPIRED",
        &format!("deferred at entry {}", forged.index()),
    );
    assert_eq!(
        t.state.proposal_status(&forged.id),
        Some(ProposalStatus::Rejected)
    );
    assert_eq!(t.state.proposal_status(&ghost.id()), None);
    assert!(t.state.deferred().is_empty());

    t.comment("happy path: a deposit from paid funds the subject again");
    let s = t.file(
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        stl,
        deposit(10_000, "EUR"),
        vec![],
    );
    expect(&s, "ADMIT", "");
    assert_eq!(t.subject_state("settlement", stl), "funded");
    assert_eq!(t.int_field("settlement", stl, "balance"), 40_000);
    assert_eq!(t.int_field("settlement", stl, "paid_total"), 100_000);

    golden("settlement", &t.finish().text);
}

// ---------------------------------------------------------------------------------------
// kes

fn kes_version(version: &str, hash: &str, parent: Value) -> Value {
    map([
        ("version", version.into()),
        ("version_hash", hash32(hash)),
        (
            "commitments",
            Value::List(vec![format!("{version}-c1").into()]),
        ),
        ("parent", parent),
    ])
}

fn kes_ratify(version: &str, hash: &str) -> Value {
    map([("version", version.into()), ("version_hash", hash32(hash))])
}

#[test]
fn kes() {
    let mut t = Transcript::new("kes", DEFAULT_DOCUMENT);
    let kes = "kes-main";

    t.comment("nothing to ratify yet");
    let s = t.file(
        "heidi",
        "KES.VERSION_RATIFIED",
        kes,
        kes_ratify("v1", "11"),
        vec![],
    );
    expect(&s, "INVALID_TRANSITION", "is in state \"none\"");

    t.comment("only governors propose versions");
    let s = t.file(
        "alice",
        "KES.VERSION_PROPOSED",
        kes,
        kes_version("v1", "11", Value::Null),
        vec![],
    );
    expect(
        &s,
        "UNAUTHORIZED",
        "\"alice\" holds none of the allowed roles",
    );

    t.comment("schema: version_hash must be 32 bytes of hex; parent is required (null allowed)");
    let s = t.file(
        "grace",
        "KES.VERSION_PROPOSED",
        kes,
        map([
            ("version", "v1".into()),
            ("version_hash", "not-a-hash".into()),
            ("commitments", Value::List(vec![])),
            ("parent", Value::Null),
        ]),
        vec![],
    );
    expect(&s, "SCHEMA", "\"version_hash\" must be hash");
    let s = t.file(
        "grace",
        "KES.VERSION_PROPOSED",
        kes,
        map([
            ("version", "v1".into()),
            ("version_hash", hash32("11")),
            ("commitments", Value::List(vec![])),
        ]),
        vec![],
    );
    expect(&s, "SCHEMA", "lacks required field \"parent\"");

    t.comment("invariant parent_is_active: no version is active yet, so the parent must be null");
    let s = t.file(
        "grace",
        "KES.VERSION_PROPOSED",
        kes,
        kes_version("v1", "11", "v0".into()),
        vec![],
    );
    expect(&s, "INVARIANT", "parent_is_active");

    t.comment("happy path: grace proposes v1 (parent null)");
    let s = t.file(
        "grace",
        "KES.VERSION_PROPOSED",
        kes,
        kes_version("v1", "11", Value::Null),
        vec![],
    );
    expect(&s, "ADMIT", "");
    assert_eq!(t.subject_state("kes", kes), "proposed");
    assert_eq!(t.field("kes", kes, "pending_version"), Some("v1".into()));

    t.comment("a proposed version must be ratified before another is proposed");
    let s = t.file(
        "heidi",
        "KES.VERSION_PROPOSED",
        kes,
        kes_version("v1b", "12", Value::Null),
        vec![],
    );
    expect(&s, "INVALID_TRANSITION", "is in state \"proposed\"");

    t.comment("invariant matches_pending_version: ratifying a different hash");
    let s = t.file(
        "grace",
        "KES.VERSION_RATIFIED",
        kes,
        kes_ratify("v1", "99"),
        vec![],
    );
    expect(&s, "INVARIANT", "matches_pending_version");

    t.comment("quorum 2: grace's ratification is counted, the version stays proposed");
    let s = t.file(
        "grace",
        "KES.VERSION_RATIFIED",
        kes,
        kes_ratify("v1", "11"),
        vec![],
    );
    expect(&s, "ADMIT", "");
    assert_eq!(t.subject_state("kes", kes), "proposed");
    let approvals = &t.state.subject("kes", kes).expect("subject").approvals;
    assert_eq!(
        approvals.get("KES.VERSION_RATIFIED").map(BTreeSet::len),
        Some(1)
    );

    t.comment("grace again (a new nonce): approvals count distinct principals");
    let s = t.file(
        "grace",
        "KES.VERSION_RATIFIED",
        kes,
        kes_ratify("v1", "11"),
        vec![],
    );
    expect(
        &s,
        "ALREADY_APPROVED",
        "KES.VERSION_RATIFIED already approved",
    );

    t.comment("heidi's ratification completes the quorum: v1 is active");
    let s = t.file(
        "heidi",
        "KES.VERSION_RATIFIED",
        kes,
        kes_ratify("v1", "11"),
        vec![],
    );
    expect(&s, "ADMIT", "");
    assert_eq!(t.subject_state("kes", kes), "active");
    assert_eq!(t.field("kes", kes, "active_version"), Some("v1".into()));
    assert_eq!(t.field("kes", kes, "pending_version"), None);
    assert!(t
        .state
        .subject("kes", kes)
        .expect("subject")
        .approvals
        .is_empty());

    t.comment("ratifying an active version is an invalid transition");
    let s = t.file(
        "ivan",
        "KES.VERSION_RATIFIED",
        kes,
        kes_ratify("v1", "11"),
        vec![],
    );
    expect(&s, "INVALID_TRANSITION", "is in state \"active\"");

    t.comment("version chain: v2 must name v1 as its parent");
    let s = t.file(
        "ivan",
        "KES.VERSION_PROPOSED",
        kes,
        kes_version("v2", "22", Value::Null),
        vec![],
    );
    expect(
        &s,
        "INVARIANT",
        "parent_is_active: parent null is not the active version \"v1\"",
    );

    t.comment("version_is_new: v1 cannot be proposed again with another hash (immutability)");
    let s = t.file(
        "ivan",
        "KES.VERSION_PROPOSED",
        kes,
        kes_version("v1", "aa", "v1".into()),
        vec![],
    );
    expect(
        &s,
        "INVARIANT",
        "version_is_new: version \"v1\" was already proposed",
    );

    t.comment("happy path: ivan proposes v2 on top of v1");
    let v2 = t.sign(
        "ivan",
        "KES.VERSION_PROPOSED",
        kes,
        kes_version("v2", "22", "v1".into()),
        vec![],
    );
    let s = t.submit(v2.clone());
    expect(&s, "ADMIT", "");
    let v2_index = s.index();
    t.comment("resubmitting the v2 proposal appends nothing");
    let s = t.submit(v2);
    assert_eq!(
        s.submission,
        Submission::Duplicate {
            index: v2_index,
            status: ProposalStatus::Admitted
        }
    );

    t.comment("heidi and ivan ratify v2");
    let s = t.file(
        "heidi",
        "KES.VERSION_RATIFIED",
        kes,
        kes_ratify("v2", "22"),
        vec![],
    );
    expect(&s, "ADMIT", "");
    assert_eq!(t.subject_state("kes", kes), "proposed");
    let s = t.file(
        "ivan",
        "KES.VERSION_RATIFIED",
        kes,
        kes_ratify("v2", "22"),
        vec![],
    );
    expect(&s, "ADMIT", "");
    assert_eq!(t.subject_state("kes", kes), "active");
    assert_eq!(t.field("kes", kes, "active_version"), Some("v2".into()));

    let versions = t.field("kes", kes, "versions").expect("versions recorded");
    let versions = versions.as_map().expect("versions is a map");
    assert_eq!(
        versions.keys().map(String::as_str).collect::<Vec<_>>(),
        ["v1", "v2"]
    );
    assert_eq!(versions["v1"].get("parent"), Some(&Value::Null));
    assert_eq!(versions["v1"].get("version_hash"), Some(&hash32("11")));
    assert_eq!(versions["v2"].get("parent"), Some(&"v1".into()));

    golden("kes", &t.finish().text);
}

// ---------------------------------------------------------------------------------------
// auction

fn bid(amount: i64) -> Value {
    map([("amount", amount.into())])
}

#[test]
fn auction() {
    let mut t = Transcript::new("auction", DEFAULT_DOCUMENT);
    let auc = "auc-1";

    t.comment("no bids before the auction opens");
    let s = t.file("bianca", "AUCTION.BID", auc, bid(100), vec![]);
    expect(&s, "INVALID_TRANSITION", "is in state \"none\"");

    t.comment("only the auctioneer opens; the reserve must be an int");
    let s = t.file(
        "bianca",
        "AUCTION.OPENED",
        auc,
        map([("reserve", 50.into()), ("item", "lot 1".into())]),
        vec![],
    );
    expect(
        &s,
        "UNAUTHORIZED",
        "\"bianca\" holds none of the allowed roles",
    );
    let s = t.file(
        "olivia",
        "AUCTION.OPENED",
        auc,
        map([("reserve", "50".into()), ("item", "lot 1".into())]),
        vec![],
    );
    expect(&s, "SCHEMA", "\"reserve\" must be int");

    t.comment("happy path: olivia opens auc-1 with reserve 50");
    let s = t.file(
        "olivia",
        "AUCTION.OPENED",
        auc,
        map([("reserve", 50.into()), ("item", "lot 1".into())]),
        vec![],
    );
    expect(&s, "ADMIT", "");
    assert_eq!(t.subject_state("auction", auc), "open");
    assert_eq!(t.int_field("auction", auc, "reserve"), 50);
    let s = t.file(
        "olivia",
        "AUCTION.OPENED",
        auc,
        map([("reserve", 10.into()), ("item", "lot 1".into())]),
        vec![],
    );
    expect(&s, "INVALID_TRANSITION", "is in state \"open\"");

    t.comment("the auctioneer may not bid");
    let s = t.file("olivia", "AUCTION.BID", auc, bid(100), vec![]);
    expect(
        &s,
        "UNAUTHORIZED",
        "\"olivia\" holds none of the allowed roles",
    );

    t.comment("bid_above_highest: below the reserve; amount_positive: zero");
    let s = t.file("bianca", "AUCTION.BID", auc, bid(40), vec![]);
    expect(
        &s,
        "INVARIANT",
        "bid_above_highest: bid 40 is below reserve 50",
    );
    let s = t.file("bianca", "AUCTION.BID", auc, bid(0), vec![]);
    expect(&s, "INVARIANT", "amount_positive");

    t.comment("happy path: bianca bids 100");
    let s = t.file("bianca", "AUCTION.BID", auc, bid(100), vec![]);
    expect(&s, "ADMIT", "");
    assert_eq!(t.int_field("auction", auc, "highest_bid"), 100);
    assert_eq!(
        t.field("auction", auc, "highest_bidder"),
        Some(key_hex("bianca"))
    );

    t.comment("bid_above_highest: equal to and below the highest bid");
    let s = t.file("boris", "AUCTION.BID", auc, bid(100), vec![]);
    expect(
        &s,
        "INVARIANT",
        "bid_above_highest: bid 100 does not exceed 100",
    );
    let s = t.file("boris", "AUCTION.BID", auc, bid(90), vec![]);
    expect(
        &s,
        "INVARIANT",
        "bid_above_highest: bid 90 does not exceed 100",
    );

    t.comment("happy path: boris outbids with 150");
    let s = t.file("boris", "AUCTION.BID", auc, bid(150), vec![]);
    expect(&s, "ADMIT", "");
    assert_eq!(t.int_field("auction", auc, "highest_bid"), 150);
    assert_eq!(
        t.field("auction", auc, "highest_bidder"),
        Some(key_hex("boris"))
    );

    t.comment("no award while open; bidders cannot close");
    let s = t.file(
        "olivia",
        "AUCTION.AWARDED",
        auc,
        map([("winner", key_hex("boris"))]),
        vec![],
    );
    expect(&s, "INVALID_TRANSITION", "is in state \"open\"");
    let s = t.file("boris", "AUCTION.CLOSED", auc, map([]), vec![]);
    expect(
        &s,
        "UNAUTHORIZED",
        "\"boris\" holds none of the allowed roles",
    );

    t.comment("happy path: olivia closes the auction");
    let s = t.file("olivia", "AUCTION.CLOSED", auc, map([]), vec![]);
    expect(&s, "ADMIT", "");
    assert_eq!(t.subject_state("auction", auc), "closed");

    t.comment("bidding after close is an invalid transition");
    let s = t.file("bianca", "AUCTION.BID", auc, bid(200), vec![]);
    expect(&s, "INVALID_TRANSITION", "is in state \"closed\"");

    t.comment("award_to_highest_bidder: bianca is not the highest bidder; winner must be a key");
    let s = t.file(
        "olivia",
        "AUCTION.AWARDED",
        auc,
        map([("winner", key_hex("bianca"))]),
        vec![],
    );
    expect(
        &s,
        "INVARIANT",
        "award_to_highest_bidder: winner is not the highest bidder",
    );
    let s = t.file(
        "olivia",
        "AUCTION.AWARDED",
        auc,
        map([("winner", "boris".into())]),
        vec![],
    );
    expect(&s, "SCHEMA", "\"winner\" must be key");

    t.comment("happy path: olivia awards auc-1 to boris");
    let s = t.file(
        "olivia",
        "AUCTION.AWARDED",
        auc,
        map([("winner", key_hex("boris"))]),
        vec![],
    );
    expect(&s, "ADMIT", "");
    assert_eq!(t.subject_state("auction", auc), "awarded");
    assert_eq!(t.field("auction", auc, "winner"), Some(key_hex("boris")));
    let s = t.file(
        "olivia",
        "AUCTION.AWARDED",
        auc,
        map([("winner", key_hex("boris"))]),
        vec![],
    );
    expect(&s, "INVALID_TRANSITION", "is in state \"awarded\"");

    t.comment("auc-2 closes without bids: there is nothing to award");
    let s = t.file(
        "olivia",
        "AUCTION.OPENED",
        "auc-2",
        map([("reserve", 1.into()), ("item", "lot 2".into())]),
        vec![],
    );
    expect(&s, "ADMIT", "");
    let s = t.file("olivia", "AUCTION.CLOSED", "auc-2", map([]), vec![]);
    expect(&s, "ADMIT", "");
    let s = t.file(
        "olivia",
        "AUCTION.AWARDED",
        "auc-2",
        map([("winner", key_hex("bianca"))]),
        vec![],
    );
    expect(
        &s,
        "INVARIANT",
        "award_to_highest_bidder: there is no bid to award",
    );
    assert_eq!(t.subject_state("auction", "auc-2"), "closed");

    golden("auction", &t.finish().text);
}

// ---------------------------------------------------------------------------------------
// tender

#[test]
fn tender() {
    let mut t = Transcript::new("tender", DEFAULT_DOCUMENT);
    let tnd = "tnd-1";

    t.comment("deadline_in_future: a deadline equal to the ledger time is not in the future");
    let now = t.next_time();
    let s = t.file(
        "petra",
        "TENDER.PUBLISHED",
        tnd,
        map([
            ("deadline_ms", (now as i64).into()),
            ("title", "bridge".into()),
        ]),
        vec![],
    );
    expect(
        &s,
        "INVARIANT",
        &format!("deadline_in_future: deadline {now} is not after ledger time {now}"),
    );
    let s = t.file(
        "petra",
        "TENDER.PUBLISHED",
        tnd,
        map([("deadline_ms", (-1).into()), ("title", "bridge".into())]),
        vec![],
    );
    expect(&s, "INVARIANT", "deadline_in_future: deadline -1");

    t.comment("only the procurer publishes; the title is required");
    let s = t.file(
        "sam",
        "TENDER.PUBLISHED",
        tnd,
        map([
            ("deadline_ms", ((now + 60_000) as i64).into()),
            ("title", "bridge".into()),
        ]),
        vec![],
    );
    expect(
        &s,
        "UNAUTHORIZED",
        "\"sam\" holds none of the allowed roles",
    );
    let s = t.file(
        "petra",
        "TENDER.PUBLISHED",
        tnd,
        map([("deadline_ms", ((now + 60_000) as i64).into())]),
        vec![],
    );
    expect(&s, "SCHEMA", "lacks required field \"title\"");

    let deadline = t.next_time() + 10_000;
    t.comment(&format!(
        "happy path: petra publishes tnd-1 with deadline {deadline}"
    ));
    let s = t.file(
        "petra",
        "TENDER.PUBLISHED",
        tnd,
        map([
            ("deadline_ms", (deadline as i64).into()),
            ("title", "bridge".into()),
        ]),
        vec![],
    );
    expect(&s, "ADMIT", "");
    assert_eq!(t.subject_state("tender", tnd), "published");
    assert_eq!(t.int_field("tender", tnd, "deadline_ms"), deadline as i64);

    t.comment("happy path: sam submits before the deadline");
    let s = t.file(
        "sam",
        "TENDER.SUBMISSION",
        tnd,
        map([("offer_hash", hash32("33"))]),
        vec![],
    );
    expect(&s, "ADMIT", "");
    t.comment("schema: offer_hash must be a hash; the procurer may not submit");
    let s = t.file(
        "sofia",
        "TENDER.SUBMISSION",
        tnd,
        map([("offer_hash", "zz".into())]),
        vec![],
    );
    expect(&s, "SCHEMA", "\"offer_hash\" must be hash");
    let s = t.file(
        "petra",
        "TENDER.SUBMISSION",
        tnd,
        map([("offer_hash", hash32("44"))]),
        vec![],
    );
    expect(
        &s,
        "UNAUTHORIZED",
        "\"petra\" holds none of the allowed roles",
    );

    t.comment("after_deadline: evaluating too early");
    let s = t.file("petra", "TENDER.EVALUATED", tnd, map([]), vec![]);
    expect(
        &s,
        "INVARIANT",
        &format!(
            "after_deadline: ledger time {} is before deadline {deadline}",
            t.time
        ),
    );
    t.comment("no award before evaluation");
    let s = t.file(
        "petra",
        "TENDER.AWARDED",
        tnd,
        map([("winner", key_hex("sam"))]),
        vec![],
    );
    expect(&s, "INVALID_TRANSITION", "is in state \"published\"");

    let wait = deadline - t.next_time();
    t.wait(wait);
    t.comment("before_deadline: sofia submits exactly at the deadline, which is too late");
    let s = t.file(
        "sofia",
        "TENDER.SUBMISSION",
        tnd,
        map([("offer_hash", hash32("44"))]),
        vec![],
    );
    assert_eq!(t.time, deadline);
    expect(
        &s,
        "INVARIANT",
        &format!("before_deadline: ledger time {deadline} is not before deadline {deadline}"),
    );
    t.comment("happy path: petra evaluates at the deadline (same ledger time)");
    let signed = t.sign("petra", "TENDER.EVALUATED", tnd, map([]), vec![]);
    let s = t.submit_after(signed, 0);
    assert_eq!(t.time, deadline);
    expect(&s, "ADMIT", "");
    assert_eq!(t.subject_state("tender", tnd), "evaluated");

    t.comment("no submissions after evaluation");
    let s = t.file(
        "sofia",
        "TENDER.SUBMISSION",
        tnd,
        map([("offer_hash", hash32("45"))]),
        vec![],
    );
    expect(&s, "INVALID_TRANSITION", "is in state \"evaluated\"");

    t.comment("winner_submitted: sofia filed no admitted submission");
    let s = t.file(
        "petra",
        "TENDER.AWARDED",
        tnd,
        map([("winner", key_hex("sofia"))]),
        vec![],
    );
    expect(
        &s,
        "INVARIANT",
        "winner_submitted: winner filed no submission",
    );

    t.comment("happy path: petra awards tnd-1 to sam");
    let s = t.file(
        "petra",
        "TENDER.AWARDED",
        tnd,
        map([("winner", key_hex("sam"))]),
        vec![],
    );
    expect(&s, "ADMIT", "");
    assert_eq!(t.subject_state("tender", tnd), "awarded");
    assert_eq!(t.field("tender", tnd, "winner"), Some(key_hex("sam")));
    let submitters = t.field("tender", tnd, "submitters").expect("submitters");
    let submitters = submitters.as_map().expect("map");
    assert_eq!(
        submitters.keys().cloned().collect::<Vec<_>>(),
        [dev::key("sam").to_hex()]
    );

    golden("tender", &t.finish().text);
}

// ---------------------------------------------------------------------------------------
// execution

fn outcome(reports_on: &ProposalId, outcome: &str) -> Value {
    map([
        ("reports_on", id_hex(reports_on)),
        ("outcome", outcome.into()),
        ("evidence_hash", hash32("ab")),
    ])
}

#[test]
fn execution() {
    let mut t = Transcript::new("execution", DEFAULT_DOCUMENT);

    t.comment("setup: a deposit and a payout request to report on");
    let d1 = t.file(
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-1",
        deposit(50_000, "EUR"),
        vec![],
    );
    expect(&d1, "ADMIT", "");
    let p1 = t.file(
        "alice",
        "SETTLEMENT.PAYOUT_REQUESTED",
        "stl-1",
        payout(20_000),
        vec![],
    );
    expect(&p1, "ADMIT", "");
    let p1_hex = p1.id.to_hex();

    t.comment("subject_is_reported_proposal: the subject must be the reported proposal's id");
    let s = t.file(
        "exec",
        "EXECUTION.OUTCOME",
        "outcome-1",
        outcome(&p1.id, "success"),
        vec![p1.id],
    );
    expect(
        &s,
        "INVARIANT",
        "subject_is_reported_proposal: subject differs from reports_on",
    );

    t.comment("reports_on_dependency: the outcome must depend on the proposal it reports on");
    let s = t.file(
        "exec",
        "EXECUTION.OUTCOME",
        &p1_hex,
        outcome(&p1.id, "success"),
        vec![],
    );
    expect(&s, "INVARIANT", "reports_on_dependency");
    let s = t.file(
        "exec",
        "EXECUTION.OUTCOME",
        &p1_hex,
        outcome(&p1.id, "success"),
        vec![d1.id],
    );
    expect(
        &s,
        "INVARIANT",
        &format!(
            "reports_on_dependency: reports_on {} is not among the dependencies",
            p1.id.short()
        ),
    );

    t.comment("only the executor files outcomes; evidence_hash is required");
    let s = t.file(
        "alice",
        "EXECUTION.OUTCOME",
        &p1_hex,
        outcome(&p1.id, "success"),
        vec![p1.id],
    );
    expect(
        &s,
        "UNAUTHORIZED",
        "\"alice\" holds none of the allowed roles",
    );
    let s = t.file(
        "exec",
        "EXECUTION.OUTCOME",
        &p1_hex,
        map([
            ("reports_on", id_hex(&p1.id)),
            ("outcome", "success".into()),
        ]),
        vec![p1.id],
    );
    expect(&s, "SCHEMA", "lacks required field \"evidence_hash\"");

    t.comment("happy path: the executor reports the payout succeeded");
    let s = t.file(
        "exec",
        "EXECUTION.OUTCOME",
        &p1_hex,
        outcome(&p1.id, "success"),
        vec![p1.id],
    );
    expect(&s, "ADMIT", "");
    assert_eq!(s.record().access.role.as_deref(), Some("executor"));
    assert_eq!(t.subject_state("execution", &p1_hex), "reported");
    assert_eq!(
        t.field("execution", &p1_hex, "outcome"),
        Some("success".into())
    );
    assert_eq!(
        t.field("execution", &p1_hex, "reports_on"),
        Some(id_hex(&p1.id))
    );

    t.comment("one outcome per proposal: a second outcome is an invalid transition");
    let s = t.file(
        "exec",
        "EXECUTION.OUTCOME",
        &p1_hex,
        outcome(&p1.id, "failure"),
        vec![p1.id],
    );
    expect(&s, "INVALID_TRANSITION", "is in state \"reported\"");
    assert_eq!(
        t.field("execution", &p1_hex, "outcome"),
        Some("success".into())
    );

    t.comment("an outcome filed before the proposal it reports on: deferred, then released");
    let open = t.sign(
        "olivia",
        "AUCTION.OPENED",
        "auc-1",
        map([("reserve", 50.into()), ("item", "lot 1".into())]),
        vec![],
    );
    let open_id = open.id();
    let early = t.file(
        "exec",
        "EXECUTION.OUTCOME",
        &open_id.to_hex(),
        outcome(&open_id, "published"),
        vec![open_id],
    );
    expect(&early, "DEFER", &open_id.short());
    let s = t.submit(open);
    expect(&s, "ADMIT", "");
    expect_record(
        decided(s.entries(), &early.id),
        Cause::Released { wave: 1 },
        "ADMIT",
        "",
    );
    assert_eq!(t.subject_state("execution", &open_id.to_hex()), "reported");

    t.comment("an outcome on a rejected proposal: DEPENDENCY_REJECTED");
    let low = t.file("bianca", "AUCTION.BID", "auc-1", bid(10), vec![]);
    expect(&low, "INVARIANT", "bid_above_highest");
    let s = t.file(
        "exec",
        "EXECUTION.OUTCOME",
        &low.id.to_hex(),
        outcome(&low.id, "success"),
        vec![low.id],
    );
    expect(&s, "DEPENDENCY_REJECTED", &low.id.short());
    assert_eq!(t.state.subject("execution", &low.id.to_hex()), None);

    t.comment("an outcome on a proposal that is not filed in time: deferred, then expired");
    let ghost = t.sign("bianca", "AUCTION.BID", "auc-1", bid(60), vec![]);
    let forged = t.file(
        "exec",
        "EXECUTION.OUTCOME",
        &ghost.id().to_hex(),
        outcome(&ghost.id(), "success"),
        vec![ghost.id()],
    );
    expect(&forged, "DEFER", &ghost.id().short());
    let expired = t.tick(DEFERRAL_EXPIRY_MS);
    assert_eq!(expired.len(), 1);
    expect_record(
        decided(&expired, &forged.id),
        Cause::Expired,
        "DEPENDENCY_EXPIRED",
        &ghost.id().short(),
    );
    t.comment("the proposal is filed after all, but the expired outcome stays rejected");
    let s = t.submit(ghost);
    expect(&s, "ADMIT", "");
    assert_eq!(
        s.entries().len(),
        1,
        "nothing is released: the outcome was decided"
    );
    assert_eq!(
        t.state.proposal_status(&forged.id),
        Some(ProposalStatus::Rejected)
    );

    outcome_dependencies(&mut t);
    golden("execution", &t.finish().text);
}

fn file_write(path: &str, contents: &str) -> Value {
    map([("path", path.into()), ("contents", contents.into())])
}

/// Dependencies on an effect's outcome (its outcome reference), not only its admission.
fn outcome_dependencies(t: &mut Transcript) {
    t.comment("FILE.WRITE: the path must be the subject and stay relative and confined");
    let s = t.file(
        "alice",
        "FILE.WRITE",
        "../etc/passwd",
        file_write("../etc/passwd", "x"),
        vec![],
    );
    expect(&s, "INVARIANT", "path_is_relative");
    let s = t.file(
        "alice",
        "FILE.WRITE",
        "reports/a.txt",
        file_write("reports/b.txt", "x"),
        vec![],
    );
    expect(&s, "INVARIANT", "subject_is_path");
    let s = t.file(
        "bob",
        "FILE.WRITE",
        "reports/a.txt",
        file_write("reports/a.txt", "x"),
        vec![],
    );
    expect(
        &s,
        "UNAUTHORIZED",
        "\"bob\" holds none of the allowed roles",
    );

    t.comment("a report that waits for a file write's outcome, which succeeds: released, admitted");
    let write = t.file(
        "alice",
        "FILE.WRITE",
        "reports/a.txt",
        file_write("reports/a.txt", "first"),
        vec![],
    );
    expect(&write, "ADMIT", "");
    assert_eq!(
        t.field("file", "reports/a.txt", "contents_hash"),
        Some(blake3::hash(b"first").to_hex().to_string().into())
    );
    let after = write.id.outcome_of();
    let report = t.file(
        "alice",
        "FILE.WRITE",
        "reports/summary.txt",
        file_write("reports/summary.txt", "after a.txt"),
        vec![write.id, after],
    );
    expect(&report, "DEFER", &after.short());
    let s = t.file(
        "exec",
        "EXECUTION.OUTCOME",
        &write.id.to_hex(),
        outcome(&write.id, "success"),
        vec![write.id],
    );
    expect(&s, "ADMIT", "");
    expect_record(
        decided(s.entries(), &report.id),
        Cause::Released { wave: 1 },
        "ADMIT",
        "",
    );
    let recorded = t.state.outcome(&after).expect("outcome row");
    assert!(recorded.succeeded);
    assert_eq!(recorded.report, s.id);

    t.comment(
        "a report that waits for a payout's outcome, which is a rail error: DEPENDENCY_FAILED",
    );
    let s = t.file(
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-9",
        deposit(5_000, "EUR"),
        vec![],
    );
    expect(&s, "ADMIT", "");
    let pay = t.file(
        "alice",
        "SETTLEMENT.PAYOUT_REQUESTED",
        "stl-9",
        payout(1_000),
        vec![],
    );
    expect(&pay, "ADMIT", "");
    let paid = pay.id.outcome_of();
    let report = t.file(
        "alice",
        "FILE.WRITE",
        "reports/paid.txt",
        file_write("reports/paid.txt", "paid"),
        vec![pay.id, paid],
    );
    expect(&report, "DEFER", &paid.short());
    let failed = t.file(
        "exec",
        "SETTLEMENT.RAIL_ERROR",
        "stl-9",
        map([
            ("reports_on", id_hex(&pay.id)),
            ("reason", "rail down".into()),
            ("evidence_hash", hash32("cd")),
        ]),
        vec![pay.id],
    );
    expect(&failed, "ADMIT", "");
    expect_record(
        decided(failed.entries(), &report.id),
        Cause::Released { wave: 1 },
        "DEPENDENCY_FAILED",
        &pay.id.short(),
    );
    t.comment("filed after the failure: rejected at once");
    let late = t.file(
        "alice",
        "FILE.WRITE",
        "reports/late.txt",
        file_write("reports/late.txt", "late"),
        vec![paid],
    );
    expect(&late, "DEPENDENCY_FAILED", &pay.id.short());
    assert!(!t.state.outcome(&paid).expect("outcome row").succeeded);
}

// ---------------------------------------------------------------------------------------
// constitution

fn amendment(document: &str, parent: Value) -> Value {
    map([("document", document.into()), ("parent", parent)])
}

#[test]
fn constitution() {
    let mut t = Transcript::new("constitution", DEFAULT_DOCUMENT);
    let v0 = t.state.constitution_version();
    let v0_hex = Value::Str(v0.to_hex());
    let doc_a = DEFAULT_DOCUMENT.replace("payload_bytes_max = 65536", "payload_bytes_max = 32768");
    assert_replaced(&doc_a);
    let v_a = Constitution::parse(&doc_a)
        .expect("doc_a is valid")
        .version();
    let doc_b =
        DEFAULT_DOCUMENT.replace("deferral_expiry_ms = 600000", "deferral_expiry_ms = 60000");
    assert_replaced(&doc_b);

    t.comment("CONSTITUTION: the amended document is not a valid constitution");
    let s = t.file(
        "grace",
        "CONSTITUTION.AMEND",
        "amend-1",
        amendment("name = \"broken\"\n", v0_hex.clone()),
        vec![],
    );
    expect(&s, "CONSTITUTION", "amended document is invalid");
    let invalid_limit = DEFAULT_DOCUMENT.replace("deferred_max = 10000", "deferred_max = 0");
    assert_replaced(&invalid_limit);
    let s = t.file(
        "grace",
        "CONSTITUTION.AMEND",
        "amend-1",
        amendment(&invalid_limit, v0_hex.clone()),
        vec![],
    );
    expect(
        &s,
        "CONSTITUTION",
        "limits.deferred_max (line 20): must be between 1 and 100000, got 0",
    );

    t.comment("CONSTITUTION: the parent is not the active version");
    let s = t.file(
        "grace",
        "CONSTITUTION.AMEND",
        "amend-1",
        amendment(&doc_a, hash32("00")),
        vec![],
    );
    expect(
        &s,
        "CONSTITUTION",
        &format!("is not the active version {}", v0.to_hex()),
    );

    t.comment("only governors amend; the parent must be a hash");
    let s = t.file(
        "alice",
        "CONSTITUTION.AMEND",
        "amend-1",
        amendment(&doc_a, v0_hex.clone()),
        vec![],
    );
    expect(
        &s,
        "UNAUTHORIZED",
        "\"alice\" holds none of the allowed roles",
    );
    let s = t.file(
        "grace",
        "CONSTITUTION.AMEND",
        "amend-1",
        amendment(&doc_a, "v0".into()),
        vec![],
    );
    expect(&s, "SCHEMA", "\"parent\" must be hash");

    t.comment("nothing to approve yet");
    let s = t.file("heidi", "CONSTITUTION.APPROVE", "amend-1", map([]), vec![]);
    expect(&s, "INVALID_TRANSITION", "is in state \"none\"");

    t.comment("under the genesis constitution a 40000-byte payload is within payload_bytes_max");
    let s = t.file(
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-1",
        deposit_with_memo(100, 40_000),
        vec![],
    );
    expect(&s, "ADMIT", "");

    t.comment(
        "two amendments of the genesis version: amend-1 (payload_bytes_max = 32768) and amend-2",
    );
    let s = t.file(
        "grace",
        "CONSTITUTION.AMEND",
        "amend-1",
        amendment(&doc_a, v0_hex.clone()),
        vec![],
    );
    expect(&s, "ADMIT", "");
    assert_eq!(t.subject_state("constitution", "amend-1"), "proposed");
    let s = t.file(
        "heidi",
        "CONSTITUTION.AMEND",
        "amend-2",
        amendment(&doc_b, v0_hex.clone()),
        vec![],
    );
    expect(&s, "ADMIT", "");
    t.comment("a proposed amendment cannot be amended again");
    let s = t.file(
        "ivan",
        "CONSTITUTION.AMEND",
        "amend-1",
        amendment(&doc_b, v0_hex.clone()),
        vec![],
    );
    expect(&s, "INVALID_TRANSITION", "is in state \"proposed\"");

    t.comment("heidi approves amend-2, then amend-1 (one approval each, quorum is 2)");
    let s = t.file("heidi", "CONSTITUTION.APPROVE", "amend-2", map([]), vec![]);
    expect(&s, "ADMIT", "");
    let s = t.file("heidi", "CONSTITUTION.APPROVE", "amend-1", map([]), vec![]);
    expect(&s, "ADMIT", "");
    assert_eq!(t.subject_state("constitution", "amend-1"), "proposed");
    assert_eq!(t.state.constitution_version(), v0);
    let s = t.file("heidi", "CONSTITUTION.APPROVE", "amend-1", map([]), vec![]);
    expect(
        &s,
        "ALREADY_APPROVED",
        "CONSTITUTION.APPROVE already approved",
    );
    let s = t.file("olivia", "CONSTITUTION.APPROVE", "amend-1", map([]), vec![]);
    expect(
        &s,
        "UNAUTHORIZED",
        "\"olivia\" holds none of the allowed roles",
    );

    t.comment("ivan's approval completes the quorum: amend-1 is adopted");
    let adopt = t.file("ivan", "CONSTITUTION.APPROVE", "amend-1", map([]), vec![]);
    expect(&adopt, "ADMIT", "");
    let adopted_at = adopt.index();
    assert_eq!(
        adopt.own().constitution,
        v0,
        "the adopting entry is judged by v0"
    );
    assert_eq!(t.subject_state("constitution", "amend-1"), "adopted");
    assert_eq!(t.state.constitution_version(), v_a);
    assert_eq!(t.state.constitution().limits.payload_bytes_max, 32_768);
    assert_eq!(
        t.state.constitution_history(),
        &[(LedgerIndex(0), v0), (adopted_at, v_a)]
    );

    t.comment("CONSTITUTION: approving amend-2 now is stale, its parent is no longer active");
    let s = t.file("grace", "CONSTITUTION.APPROVE", "amend-2", map([]), vec![]);
    expect(
        &s,
        "CONSTITUTION",
        &format!(
            "amendment is stale: the active version is now {}",
            v_a.to_hex()
        ),
    );
    assert_eq!(t.state.constitution_version(), v_a);
    assert_eq!(t.subject_state("constitution", "amend-2"), "proposed");
    t.comment("a new amendment naming the old parent is refused as well");
    let s = t.file(
        "grace",
        "CONSTITUTION.AMEND",
        "amend-3",
        amendment(&doc_b, v0_hex),
        vec![],
    );
    expect(
        &s,
        "CONSTITUTION",
        &format!("is not the active version {}", v_a.to_hex()),
    );
    t.comment("an adopted amendment cannot be approved again");
    let s = t.file("grace", "CONSTITUTION.APPROVE", "amend-1", map([]), vec![]);
    expect(&s, "INVALID_TRANSITION", "is in state \"adopted\"");

    t.comment("the new limit applies: the same 40000-byte payload is now over payload_bytes_max");
    let s = t.file(
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-1",
        deposit_with_memo(100, 40_000),
        vec![],
    );
    expect(&s, "LIMIT_EXCEEDED", "allowed 32768");
    let s = t.file(
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-1",
        deposit(100, "EUR"),
        vec![],
    );
    expect(&s, "ADMIT", "");
    assert_eq!(t.int_field("settlement", "stl-1", "balance"), 200);

    let finished = t.finish();
    for entry in &finished.ledger {
        let expected = if entry.index <= adopted_at { v0 } else { v_a };
        assert_eq!(
            entry.constitution, expected,
            "entry #{} is judged by the constitution active when it was recorded",
            entry.index
        );
    }
    golden("constitution", &finished.text);
}

// ---------------------------------------------------------------------------------------
// rejections: every code

/// The default document with `deferred_max = 1`, so the deferred set fills up at once.
fn tight_document() -> String {
    let document = DEFAULT_DOCUMENT.replace("deferred_max = 10000", "deferred_max = 1");
    assert_replaced(&document);
    document
}

fn nested(depth: usize) -> Value {
    let mut value = Value::Int(0);
    for _ in 0..depth {
        value = map([("d", value)]);
    }
    value
}

fn rejections_transcript() -> Finished {
    let mut t = Transcript::new("rejections", &tight_document());
    assert_eq!(t.state.constitution().limits.deferred_max, 1);
    t.comment("genesis constitution: the default document with deferred_max = 1");

    t.comment("WRONG_LEDGER: signed for another ledger");
    let foreign = dev::reformat(
        dev::proposal(
            &LedgerId::new("another-ledger").expect("valid"),
            "alice",
            "SETTLEMENT.DEPOSIT_CONFIRMED",
            "stl-1",
            deposit(5, "EUR"),
            vec![],
            1,
        ),
        ProposalFormat::V1,
        "alice",
    );
    let s = t.submit(foreign);
    expect(&s, "WRONG_LEDGER", "signed for ledger \"another-ledger\"");
    assert_eq!(
        s.record().access.to_string(),
        "not-evaluated principal=alice role=- rule=ledger_id"
    );

    t.comment("BAD_SIGNATURE: the payload was changed after signing");
    let mut tampered = t.sign(
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-1",
        deposit(5, "EUR"),
        vec![],
    );
    tampered.proposal.payload = deposit(5_000_000, "EUR");
    let s = t.submit(tampered);
    expect(&s, "BAD_SIGNATURE", "does not verify");
    t.comment("BAD_SIGNATURE: a signature copied from another of alice's proposals");
    let mut copied = t.sign(
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-1",
        deposit(6, "EUR"),
        vec![],
    );
    copied.signature = t
        .sign(
            "alice",
            "SETTLEMENT.DEPOSIT_CONFIRMED",
            "stl-1",
            deposit(7, "EUR"),
            vec![],
        )
        .signature;
    let s = t.submit(copied);
    expect(&s, "BAD_SIGNATURE", "does not verify");

    t.comment("LIMIT_EXCEEDED: subject too long, and empty");
    let s = t.file(
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        &"s".repeat(129),
        deposit(5, "EUR"),
        vec![],
    );
    expect(
        &s,
        "LIMIT_EXCEEDED",
        "subject_bytes_max: subject is 129 bytes, allowed 1 to 128",
    );
    let s = t.file(
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "",
        deposit(5, "EUR"),
        vec![],
    );
    expect(&s, "LIMIT_EXCEEDED", "subject is 0 bytes");
    t.comment("LIMIT_EXCEEDED: 17 dependencies, allowed 16");
    let many: Vec<ProposalId> = (1..=17u8).map(|b| ProposalId([b; 32])).collect();
    let s = t.file(
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-1",
        deposit(5, "EUR"),
        many,
    );
    expect(
        &s,
        "LIMIT_EXCEEDED",
        "dependencies_max: 17 dependencies, allowed 16",
    );
    t.comment("LIMIT_EXCEEDED: a 70000-byte payload, allowed 65536");
    let s = t.file(
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-1",
        deposit_with_memo(5, 70_000),
        vec![],
    );
    expect(&s, "LIMIT_EXCEEDED", "payload_bytes_max: payload is");
    t.comment("LIMIT_EXCEEDED: a payload nested 17 deep");
    let s = t.file(
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-1",
        nested(17),
        vec![],
    );
    expect(&s, "LIMIT_EXCEEDED", "payload depth 17 exceeds 16");

    t.comment("SCHEMA: dependencies not sorted, and duplicated (built by hand, then signed)");
    let unsorted = t.sign_raw(
        "alice",
        "settlement",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-1",
        deposit(5, "EUR"),
        vec![ProposalId([2; 32]), ProposalId([1; 32])],
    );
    assert!(!unsorted.proposal.dependencies_are_normal());
    let s = t.submit(unsorted);
    expect(
        &s,
        "SCHEMA",
        "dependencies must be sorted and free of duplicates",
    );
    let duplicated = t.sign_raw(
        "alice",
        "settlement",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-1",
        deposit(5, "EUR"),
        vec![ProposalId([1; 32]), ProposalId([1; 32])],
    );
    let s = t.submit(duplicated);
    expect(
        &s,
        "SCHEMA",
        "dependencies must be sorted and free of duplicates",
    );

    t.comment("UNKNOWN_DOMAIN");
    let s = t.file("alice", "PAYROLL.RUN", "run-1", map([]), vec![]);
    expect(&s, "UNKNOWN_DOMAIN", "no domain \"payroll\"");
    t.comment("UNKNOWN_ACTION: no such action, and an action of another domain");
    let s = t.file(
        "alice",
        "SETTLEMENT.REFUND",
        "stl-1",
        deposit(5, "EUR"),
        vec![],
    );
    expect(
        &s,
        "UNKNOWN_ACTION",
        "domain \"settlement\" has no action \"SETTLEMENT.REFUND\"",
    );
    let misplaced = t.sign_raw(
        "bianca",
        "settlement",
        "AUCTION.BID",
        "stl-1",
        bid(5),
        vec![],
    );
    let s = t.submit(misplaced);
    expect(
        &s,
        "UNKNOWN_ACTION",
        "domain \"settlement\" has no action \"AUCTION.BID\"",
    );

    t.comment("UNAUTHORIZED: a principal without the role, and a key that is no principal");
    let s = t.file(
        "mallory",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-1",
        deposit(5, "EUR"),
        vec![],
    );
    expect(
        &s,
        "UNAUTHORIZED",
        "\"mallory\" holds none of the allowed roles",
    );
    let s = t.file(
        "eve",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-1",
        deposit(5, "EUR"),
        vec![],
    );
    expect(
        &s,
        "UNAUTHORIZED",
        &format!("key {} is not a principal", dev::key("eve").short()),
    );
    assert_eq!(s.record().access.principal, None);

    t.comment("SCHEMA: a required field is missing");
    let s = t.file(
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-1",
        map([("amount", 5.into())]),
        vec![],
    );
    expect(&s, "SCHEMA", "lacks required field \"currency\"");

    t.comment("INVALID_TRANSITION: a payout from an unfunded subject");
    let s = t.file(
        "alice",
        "SETTLEMENT.PAYOUT_REQUESTED",
        "stl-1",
        payout(5),
        vec![],
    );
    expect(&s, "INVALID_TRANSITION", "is in state \"none\"");

    t.comment("INVARIANT: a negative deposit");
    let negative = t.file(
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-1",
        deposit(-5, "EUR"),
        vec![],
    );
    expect(
        &negative,
        "INVARIANT",
        "amount_positive: amount -5 is not positive",
    );

    t.comment("DEPENDENCY_REJECTED: depends on the negative deposit");
    let s = t.file(
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-1",
        deposit(5, "EUR"),
        vec![negative.id],
    );
    expect(&s, "DEPENDENCY_REJECTED", &negative.id.short());

    t.comment("DEPENDENCY_FAILED: depends on the outcome of a payout that hit a rail error");
    let s = t.file(
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-f",
        deposit(5, "EUR"),
        vec![],
    );
    expect(&s, "ADMIT", "");
    let pay = t.file(
        "alice",
        "SETTLEMENT.PAYOUT_REQUESTED",
        "stl-f",
        payout(1),
        vec![],
    );
    expect(&pay, "ADMIT", "");
    let s = t.file(
        "exec",
        "SETTLEMENT.RAIL_ERROR",
        "stl-f",
        map([
            ("reports_on", id_hex(&pay.id)),
            ("reason", "rail down".into()),
            ("evidence_hash", hash32("cd")),
        ]),
        vec![pay.id],
    );
    expect(&s, "ADMIT", "");
    let s = t.file(
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-1",
        deposit(5, "EUR"),
        vec![pay.id.outcome_of()],
    );
    expect(&s, "DEPENDENCY_FAILED", &pay.id.short());

    t.comment("LIMIT_EXCEEDED: the deferred set (deferred_max = 1) is full");
    let never = ProposalId([0x5a; 32]);
    let waiting = t.file(
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-1",
        deposit(5, "EUR"),
        vec![never],
    );
    expect(&waiting, "DEFER", &never.short());
    let s = t.file(
        "bob",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-2",
        deposit(5, "EUR"),
        vec![ProposalId([0x5b; 32])],
    );
    expect(
        &s,
        "LIMIT_EXCEEDED",
        "deferred_max: 1 proposals are already deferred",
    );
    assert_eq!(t.state.deferred().len(), 1);

    t.comment("DEPENDENCY_EXPIRED: the deferred deposit waited past deferral_expiry_ms");
    let expired = t.tick(DEFERRAL_EXPIRY_MS);
    assert_eq!(expired.len(), 1);
    expect_record(
        decided(&expired, &waiting.id),
        Cause::Expired,
        "DEPENDENCY_EXPIRED",
        &never.short(),
    );
    assert!(t.state.deferred().is_empty());

    t.comment("CONSTITUTION: an amendment of a version that is not active");
    let s = t.file(
        "grace",
        "CONSTITUTION.AMEND",
        "amend-1",
        amendment(DEFAULT_DOCUMENT, hash32("00")),
        vec![],
    );
    expect(&s, "CONSTITUTION", "is not the active version");

    t.comment("ALREADY_APPROVED: heidi ratifies the same KES version twice");
    let s = t.file(
        "grace",
        "KES.VERSION_PROPOSED",
        "kes-main",
        kes_version("v1", "11", Value::Null),
        vec![],
    );
    expect(&s, "ADMIT", "");
    let ratify = t.sign(
        "heidi",
        "KES.VERSION_RATIFIED",
        "kes-main",
        kes_ratify("v1", "11"),
        vec![],
    );
    let first = t.submit(ratify.clone());
    expect(&first, "ADMIT", "");
    let s = t.file(
        "heidi",
        "KES.VERSION_RATIFIED",
        "kes-main",
        kes_ratify("v1", "11"),
        vec![],
    );
    expect(&s, "ALREADY_APPROVED", "already approved by this principal");
    t.comment("the identical ratification again is a duplicate, not a decision");
    let s = t.submit(ratify);
    assert_eq!(
        s.submission,
        Submission::Duplicate {
            index: first.index(),
            status: ProposalStatus::Admitted
        }
    );
    assert_eq!(t.subject_state("kes", "kes-main"), "proposed");

    t.finish()
}

/// The rejection codes named in a transcript's entry lines.
fn codes_in(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| line.starts_with('#') && !line.starts_with("# "))
        .filter_map(|line| line.split(" -> REJECT ").nth(1))
        .filter_map(|rest| rest.split(':').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn rejections() {
    let finished = rejections_transcript();
    golden("rejections", &finished.text);
}

#[test]
fn rejections_cover_every_code() {
    let finished = rejections_transcript();
    let all: BTreeSet<String> = RejectCode::ALL
        .iter()
        .map(|code| code.name().to_owned())
        .collect();
    assert_eq!(
        codes_in(&finished.text),
        all,
        "codes named in the transcript"
    );
    let recorded: BTreeSet<String> = finished
        .ledger
        .iter()
        .filter_map(LedgerEntry::decision_record)
        .filter_map(|d| d.decision.code())
        .map(|code| code.name().to_owned())
        .collect();
    assert_eq!(recorded, all, "codes recorded in the ledger");
}
