//! Bad input gets a clear error or a recorded rejection with its stable code, and changes
//! no governance state: no subject moves, no balance changes, nothing is deferred.

use docket_core::constitution::DEFAULT_DOCUMENT;
use docket_core::{
    dev, LedgerId, LedgerTime, ProposalId, RejectCode, SignedProposal, State, Value,
};

const T0: u64 = 1_767_225_600_000;

fn ledger() -> LedgerId {
    LedgerId::new("bad-input").expect("valid")
}

fn funded_state() -> State {
    let (mut state, _) =
        State::genesis(ledger(), DEFAULT_DOCUMENT, LedgerTime(T0)).expect("genesis");
    let deposit = dev::proposal(
        &ledger(),
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-1",
        Value::map([("amount", Value::Int(100)), ("currency", "EUR".into())]),
        vec![],
        0,
    );
    state.submit(deposit, LedgerTime(T0 + 1));
    state
}

fn deposit(amount: i64, nonce: u64) -> SignedProposal {
    dev::proposal(
        &ledger(),
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-1",
        Value::map([("amount", Value::Int(amount)), ("currency", "EUR".into())]),
        vec![],
        nonce,
    )
}

/// Submits `signed`, asserts it is rejected with `code`, and that governance state did not
/// change: same subjects, nothing deferred.
fn assert_rejected_without_effect(signed: SignedProposal, code: RejectCode) {
    let mut state = funded_state();
    let subjects_before: Vec<_> = state.subjects("settlement");
    let id = signed.id();
    let submission = state.submit(signed, LedgerTime(T0 + 2));
    let entry = submission.own_entry(&id).expect("a rejection is recorded");
    let decision = &entry.decision_record().expect("decision").decision;
    assert_eq!(decision.code(), Some(code), "{decision}");
    assert_eq!(
        submission.entries().len(),
        1,
        "only the rejection is recorded"
    );
    let subjects_after: Vec<_> = state.subjects("settlement");
    assert_eq!(
        subjects_before, subjects_after,
        "a rejection changes no subject"
    );
    assert!(state.deferred().is_empty());
}

#[test]
fn oversize_payload() {
    let big = "x".repeat(70_000);
    let signed = dev::proposal(
        &ledger(),
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-1",
        Value::map([
            ("amount", Value::Int(1)),
            ("currency", "EUR".into()),
            ("memo", big.into()),
        ]),
        vec![],
        1,
    );
    assert_rejected_without_effect(signed, RejectCode::LimitExceeded);
}

#[test]
fn too_many_dependencies() {
    let deps: Vec<ProposalId> = (0..17u8).map(|i| ProposalId([i; 32])).collect();
    let signed = dev::proposal(
        &ledger(),
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-1",
        Value::map([("amount", Value::Int(1)), ("currency", "EUR".into())]),
        deps,
        1,
    );
    assert_rejected_without_effect(signed, RejectCode::LimitExceeded);
}

#[test]
fn too_deep_payload() {
    let mut nested = Value::Int(1);
    for _ in 0..20 {
        nested = Value::List(vec![nested]);
    }
    let signed = dev::proposal(
        &ledger(),
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-1",
        Value::map([
            ("amount", Value::Int(1)),
            ("currency", "EUR".into()),
            ("deep", nested),
        ]),
        vec![],
        1,
    );
    assert_rejected_without_effect(signed, RejectCode::LimitExceeded);
}

#[test]
fn wrong_ledger_id() {
    let signed = dev::proposal(
        &LedgerId::new("elsewhere").expect("valid"),
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-1",
        Value::map([("amount", Value::Int(1)), ("currency", "EUR".into())]),
        vec![],
        1,
    );
    assert_rejected_without_effect(signed, RejectCode::WrongLedger);
}

#[test]
fn forged_signatures() {
    // The payload was changed after signing.
    let mut tampered = deposit(1, 1);
    tampered.proposal.payload = Value::map([
        ("amount", Value::Int(1_000_000)),
        ("currency", "EUR".into()),
    ]);
    assert_rejected_without_effect(tampered, RejectCode::BadSignature);
    // Signed by someone else than the claimed author.
    let mut impostor = deposit(1, 2);
    impostor.signature = dev::proposal(
        &ledger(),
        "mallory",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-1",
        Value::map([("amount", Value::Int(1)), ("currency", "EUR".into())]),
        vec![],
        2,
    )
    .signature;
    assert_rejected_without_effect(impostor, RejectCode::BadSignature);
    // A zero signature.
    let mut zero = deposit(1, 3);
    zero.signature = docket_core::Signature([0; 64]);
    assert_rejected_without_effect(zero, RejectCode::BadSignature);
}

#[test]
fn schema_and_negative_amounts() {
    assert_rejected_without_effect(deposit(-5, 1), RejectCode::Invariant);
    let signed = dev::proposal(
        &ledger(),
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-1",
        Value::map([("amount", "lots".into()), ("currency", "EUR".into())]),
        vec![],
        1,
    );
    assert_rejected_without_effect(signed, RejectCode::Schema);
    let signed = dev::proposal(
        &ledger(),
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-1",
        Value::Int(3),
        vec![],
        1,
    );
    assert_rejected_without_effect(signed, RejectCode::Schema);
}

#[test]
fn balance_overflow_is_a_rejection_not_a_wrap() {
    let mut state = funded_state();
    let max = deposit(i64::MAX, 7);
    let id = max.id();
    let submission = state.submit(max, LedgerTime(T0 + 2));
    let decision = &submission
        .own_entry(&id)
        .expect("recorded")
        .decision_record()
        .expect("decision")
        .decision;
    assert_eq!(decision.code(), Some(RejectCode::Invariant), "{decision}");
    let balance = state
        .subject("settlement", "stl-1")
        .and_then(|s| s.fields.get("balance").cloned());
    assert_eq!(balance, Some(Value::Int(100)));
}

#[test]
fn floats_never_reach_the_core() {
    let json = r#"{"amount": 10.5, "currency": "EUR"}"#;
    let error = serde_json::from_str::<Value>(json).expect_err("floats are refused at parse time");
    assert!(
        error.to_string().contains("floats are not allowed"),
        "{error}"
    );
}

#[test]
fn bad_genesis_constitutions_are_errors() {
    for document in ["", "name = 1", "[limits]\npayload_bytes_max = -1"] {
        let error = State::genesis(ledger(), document, LedgerTime(T0)).expect_err("refused");
        assert!(!error.to_string().is_empty());
    }
}

#[test]
fn resubmission_appends_nothing_and_returns_the_original_entry() {
    let mut state = funded_state();
    let signed = deposit(5, 9);
    let first = state.submit(signed.clone(), LedgerTime(T0 + 2));
    let index = first.own_entry(&signed.id()).expect("recorded").index;
    let head = state.head();
    let hash = state.hash();
    match state.submit(signed, LedgerTime(T0 + 3)) {
        docket_core::Submission::Duplicate {
            index: original,
            status,
        } => {
            assert_eq!(original, index);
            assert_eq!(status, docket_core::ProposalStatus::Admitted);
        }
        other => panic!("expected a duplicate, got {other:?}"),
    }
    assert_eq!(state.head(), head);
    assert_eq!(state.hash(), hash);
}

#[test]
fn a_forged_copy_does_not_burn_the_genuine_proposal() {
    // The id does not cover the signature: a copy of alice's proposal with a garbage
    // signature is rejected, and alice's genuine submission is still adjudicated.
    let mut state = funded_state();
    let genuine = deposit(5, 11);
    let mut forged = genuine.clone();
    forged.signature = docket_core::Signature([7; 64]);
    let first = state.submit(forged.clone(), LedgerTime(T0 + 2));
    let code = first.entries()[0]
        .decision_record()
        .expect("decision")
        .decision
        .code();
    assert_eq!(code, Some(RejectCode::BadSignature));
    assert!(
        state.proposal(&genuine.id()).is_none(),
        "a forgery claims nothing"
    );
    let second = state.submit(genuine.clone(), LedgerTime(T0 + 3));
    let entry = second
        .own_entry(&genuine.id())
        .expect("the genuine proposal is recorded");
    assert_eq!(
        entry.decision_record().expect("decision").decision.label(),
        "ADMIT"
    );
    // Once admitted, a forged copy is a duplicate: it appends nothing.
    assert!(matches!(
        state.submit(forged, LedgerTime(T0 + 4)),
        docket_core::Submission::Duplicate { .. }
    ));
}

#[test]
fn control_characters_in_subjects_are_refused() {
    let signed = dev::proposal(
        &ledger(),
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-1\n#99 forged -> ADMIT",
        Value::map([("amount", Value::Int(1)), ("currency", "EUR".into())]),
        vec![],
        1,
    );
    assert_rejected_without_effect(signed, RejectCode::Schema);
}
