//! Property tests of the core's determinism.
//!
//! * the same commands give the same ledger and state hash, every run, and replay and audit
//!   reproduce them;
//! * snapshot then restore gives an equal state that goes on to record the same entries;
//! * a wave's recorded order does not depend on the order its members were submitted in;
//! * any single edit, deletion, swap or insertion in a stored ledger is caught by
//!   `verify_chain` at the first entry it affects;
//! * a failed effect rejects exactly its transitive dependents (outcome dependencies);
//! * `explain` names the code every rejection was recorded with, and the step (and named
//!   rule) of the fixed check order that really decided it.

use docket_core::constitution::DEFAULT_DOCUMENT;
use docket_core::explain::{DependencyStatus, RuleRef, Why};
use docket_core::{
    adjudicate_traced, audit, dev, explain, replay, verify_chain, Cause, ChainFault, Decision,
    LedgerEntry, LedgerId, LedgerTime, ProposalId, SignatureCheck, SignedProposal, State, Step,
    Strict, Submission, Value, VerifiedMemo,
};
use proptest::prelude::*;

const START_MS: u64 = 1_767_225_600_000;

/// What a generated proposal does. Each kind maps to an action of the default constitution,
/// some valid and some not, so sequences mix admissions, rejections and deferrals.
#[derive(Debug, Clone)]
struct Op {
    author: usize,
    kind: usize,
    subject: u8,
    amount: i64,
    dep: Dep,
    tamper: bool,
    step_ms: u64,
}

#[derive(Debug, Clone)]
enum Dep {
    None,
    /// On the op at this index (mod the ops before it): deferral if submitted later.
    Earlier(usize),
    /// On an id nobody ever submits: deferral then expiry.
    Never,
}

const AUTHORS: &[&str] = &[
    "alice", "bob", "grace", "heidi", "exec", "olivia", "bianca", "boris", "mallory",
];

fn op() -> impl Strategy<Value = Op> {
    (
        0..AUTHORS.len(),
        0..12usize,
        0..3u8,
        -5i64..300,
        prop_oneof![6 => Just(Dep::None), 3 => (0..64usize).prop_map(Dep::Earlier), 1 => Just(Dep::Never)],
        prop::bool::weighted(0.05),
        prop_oneof![Just(0u64), Just(1_000), Just(1_000), Just(400_000)],
    )
        .prop_map(|(author, kind, subject, amount, dep, tamper, step_ms)| Op {
            author,
            kind,
            subject,
            amount,
            dep,
            tamper,
            step_ms,
        })
}

fn ledger_id() -> LedgerId {
    LedgerId::new("prop").expect("valid")
}

/// Builds the signed proposals of `ops`; dependencies point at ids built before.
fn build(ops: &[Op]) -> Vec<SignedProposal> {
    let mut built: Vec<SignedProposal> = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let deps = match op.dep {
            Dep::None => vec![],
            Dep::Earlier(_) if i == 0 => vec![],
            Dep::Earlier(j) => vec![built[j % i].id()],
            Dep::Never => vec![ProposalId([0xee; 32])],
        };
        let subject = format!("s{}", op.subject);
        let amount = Value::Int(op.amount);
        let dep_hex = deps
            .first()
            .map(|d| d.to_hex())
            .unwrap_or_else(|| "00".repeat(32));
        let (action, payload) = match op.kind {
            0 => (
                "SETTLEMENT.DEPOSIT_CONFIRMED",
                Value::map([("amount", amount), ("currency", "EUR".into())]),
            ),
            1 => (
                "SETTLEMENT.PAYOUT_REQUESTED",
                Value::map([("amount", amount), ("beneficiary", "b".into())]),
            ),
            2 => (
                "SETTLEMENT.PAYOUT_EXECUTED",
                Value::map([("reports_on", dep_hex.into()), ("rail_ref", "r".into())]),
            ),
            3 => (
                "AUCTION.OPENED",
                Value::map([("reserve", amount), ("item", "i".into())]),
            ),
            4 => ("AUCTION.BID", Value::map([("amount", amount)])),
            5 => ("AUCTION.CLOSED", Value::Map(Default::default())),
            6 => (
                "KES.VERSION_PROPOSED",
                Value::map([
                    ("version", format!("v{}", op.amount).into()),
                    ("version_hash", "aa".repeat(32).into()),
                    ("commitments", Value::List(vec![])),
                    ("parent", Value::Null),
                ]),
            ),
            7 => (
                "KES.VERSION_RATIFIED",
                Value::map([
                    ("version", format!("v{}", op.amount).into()),
                    ("version_hash", "aa".repeat(32).into()),
                ]),
            ),
            8 => ("SETTLEMENT.RECOVERY", Value::map([("reason", "r".into())])),
            9 => (
                "SETTLEMENT.DEPOSIT_CONFIRMED",
                Value::map([("amount", amount)]),
            ),
            10 => ("NOPE.UNKNOWN", Value::Map(Default::default())),
            _ => ("SETTLEMENT.NOT_AN_ACTION", Value::Map(Default::default())),
        };
        let mut signed = dev::proposal(
            &ledger_id(),
            AUTHORS[op.author],
            action,
            &subject,
            payload,
            deps,
            i as u64,
        );
        if op.tamper {
            signed.proposal.subject.push('x');
        }
        built.push(signed);
    }
    built
}

/// Submits proposals in `order` (indexes into `proposals`), from genesis.
fn run(proposals: &[SignedProposal], ops: &[Op], order: &[usize]) -> (State, Vec<LedgerEntry>) {
    run_with(proposals, ops, order, &Strict)
}

/// [`run`], checking signatures through `signatures`.
fn run_with(
    proposals: &[SignedProposal],
    ops: &[Op],
    order: &[usize],
    signatures: &dyn SignatureCheck,
) -> (State, Vec<LedgerEntry>) {
    let (mut state, genesis) =
        State::genesis(ledger_id(), DEFAULT_DOCUMENT, LedgerTime(START_MS)).expect("genesis");
    let mut ledger = vec![genesis];
    let mut time = START_MS;
    for &i in order {
        time += ops[i].step_ms;
        if let Submission::Recorded(entries) =
            state.submit_with(proposals[i].clone(), LedgerTime(time), signatures)
        {
            ledger.extend(entries);
        }
    }
    (state, ledger)
}

/// A permutation of 0..n from sort keys.
fn permutation(keys: &[u32], n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|i| (keys.get(*i).copied().unwrap_or(0), *i));
    order
}

fn ops_and_order() -> impl Strategy<Value = (Vec<Op>, Vec<usize>)> {
    prop::collection::vec(op(), 1..40).prop_flat_map(|ops| {
        let n = ops.len();
        (Just(ops), prop::collection::vec(any::<u32>(), n)).prop_map(move |(ops, keys)| {
            let order = permutation(&keys, n);
            (ops, order)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn same_commands_same_ledger_and_state((ops, order) in ops_and_order()) {
        let proposals = build(&ops);
        let (state_a, ledger_a) = run(&proposals, &ops, &order);
        let (state_b, ledger_b) = run(&proposals, &ops, &order);
        prop_assert_eq!(&ledger_a, &ledger_b);
        prop_assert_eq!(state_a.hash(), state_b.hash());
        prop_assert!(verify_chain(&ledger_a).is_ok());
        for entry in &ledger_a {
            prop_assert_eq!(LedgerEntry::hash_of_canonical(&entry.to_bytes()), Some(entry.hash));
        }
        let replayed = replay(&ledger_a).expect("trusted replay");
        prop_assert_eq!(replayed.hash(), state_a.hash());
        let (audited, _) = audit(&ledger_a).expect("audit reproduces every decision");
        prop_assert_eq!(audited.hash(), state_a.hash());
    }

    /// A memo of verified signatures only saves work: warmed by front-door checks of
    /// every proposal, and fed forgeries that reuse a verified proposal's signature on
    /// another body or carry another proposal's signature on a verified id, it records
    /// exactly the entries strict verification records.
    #[test]
    fn a_signature_memo_records_exactly_what_strict_checks_record(
        (ops, order) in ops_and_order(),
    ) {
        let mut proposals = build(&ops);
        let mut extra_ops = Vec::new();
        for i in 0..proposals.len() {
            let mut swapped = proposals[i].clone();
            swapped.signature = proposals[(i + 1) % proposals.len()].signature;
            let mut reused = proposals[(i + 1) % proposals.len()].clone();
            reused.signature = proposals[i].signature;
            proposals.push(swapped);
            proposals.push(reused);
            extra_ops.push(ops[i].clone());
            extra_ops.push(ops[i].clone());
        }
        let ops: Vec<Op> = ops.iter().cloned().chain(extra_ops).collect();
        let order: Vec<usize> = order
            .iter()
            .copied()
            .flat_map(|i| [i, order.len() + 2 * i, order.len() + 2 * i + 1])
            .collect();
        let memo = VerifiedMemo::new();
        for p in &proposals {
            let _ = memo.check(p, &p.id());
        }
        let (strict_state, strict_ledger) = run(&proposals, &ops, &order);
        let (memo_state, memo_ledger) = run_with(&proposals, &ops, &order, &memo);
        prop_assert_eq!(&memo_ledger, &strict_ledger);
        prop_assert_eq!(memo_state.hash(), strict_state.hash());
    }

    #[test]
    fn snapshot_restore_is_equal_and_continues_identically(
        (ops, order) in ops_and_order(),
        cut in any::<prop::sample::Index>(),
    ) {
        let proposals = build(&ops);
        let cut = cut.index(order.len() + 1);
        let (original, _) = run(&proposals, &ops, &order[..cut]);
        // Persist the original's rows as a node does, then open a second state from them.
        let rows = std::sync::Arc::new(docket_core::rows::MemRows::default());
        let mut original = original.on_rows(rows.clone());
        rows.write(original.take_changes());
        prop_assert_eq!(original.pending_rows(), 0);
        original.check_rows().expect("settled rows hash to the lattice");
        let mut restored = State::open(rows.clone()).expect("opens").expect("a state");
        prop_assert_eq!(restored.hash(), original.hash());
        prop_assert_eq!(restored.deferred(), original.deferred());
        let mut time = original.head().time.0;
        for &i in &order[cut..] {
            time += ops[i].step_ms;
            let a = original.submit(proposals[i].clone(), LedgerTime(time));
            let b = restored.submit(proposals[i].clone(), LedgerTime(time));
            prop_assert_eq!(a, b);
        }
        prop_assert_eq!(restored.hash(), original.hash());
    }

    #[test]
    fn wave_order_is_independent_of_submission_order(
        members in 2..10usize,
        keys_a in prop::collection::vec(any::<u32>(), 10),
        keys_b in prop::collection::vec(any::<u32>(), 10),
    ) {
        let ledger = ledger_id();
        let base = dev::proposal(&ledger, "alice", "SETTLEMENT.DEPOSIT_CONFIRMED", "base",
            Value::map([("amount", Value::Int(10)), ("currency", "EUR".into())]), vec![], 0);
        // Dependents on distinct subjects; some violate an invariant so the wave mixes
        // admissions and rejections.
        let dependents: Vec<SignedProposal> = (0..members).map(|i| {
            let amount = if i % 3 == 0 { -1 } else { i as i64 + 1 };
            dev::proposal(&ledger, "bob", "SETTLEMENT.DEPOSIT_CONFIRMED", &format!("d{i}"),
                Value::map([("amount", Value::Int(amount)), ("currency", "EUR".into())]), vec![base.id()], i as u64)
        }).collect();
        let wave = |keys: &[u32]| {
            let (mut state, _) = State::genesis(ledger.clone(), DEFAULT_DOCUMENT, LedgerTime(START_MS)).expect("genesis");
            for i in permutation(keys, members) {
                state.submit(dependents[i].clone(), LedgerTime(START_MS + 1));
            }
            let entries = state.submit(base.clone(), LedgerTime(START_MS + 2)).entries().to_vec();
            let released: Vec<(ProposalId, String)> = entries
                .iter()
                .filter_map(|e| e.decision_record())
                .filter(|d| d.id != base.id())
                .map(|d| (d.id, d.decision.label().to_owned()))
                .collect();
            // The ledgers differ before the wave (deferrals recorded in submission order),
            // so compare what the wave decided, not the whole state hash.
            let subjects: Vec<(String, docket_core::SubjectState)> = state
                .subjects("settlement")
                .into_iter()
                .map(|(name, subject)| (name, docket_core::SubjectState { last_index: Default::default(), ..subject }))
                .collect();
            (released, subjects)
        };
        let (wave_a, subjects_a) = wave(&keys_a);
        let (wave_b, subjects_b) = wave(&keys_b);
        prop_assert_eq!(wave_a.len(), members);
        prop_assert!(wave_a.windows(2).all(|w| w[0].0 < w[1].0), "ascending ProposalId order");
        prop_assert_eq!(wave_a, wave_b);
        prop_assert_eq!(subjects_a, subjects_b);
    }

    #[test]
    fn any_single_mutation_is_caught_at_its_index(
        (ops, order) in ops_and_order(),
        kind in 0..5u8,
        at in any::<prop::sample::Index>(),
        other in any::<prop::sample::Index>(),
    ) {
        let proposals = build(&ops);
        let (_, ledger) = run(&proposals, &ops, &order);
        prop_assume!(ledger.len() >= 3);
        let mut mutated = ledger.clone();
        let n = ledger.len();
        let i = at.index(n);
        let expected = match kind {
            // Edit a field covered by the hash.
            0 => { mutated[i].time.0 += 1; i }
            // Edit the recorded decision of a decision entry (or the genesis document).
            1 => {
                match &mut mutated[i].record {
                    docket_core::Record::Genesis { document, .. } => document.push(' '),
                    docket_core::Record::Decision(d) => d.decision = docket_core::Decision::Admit,
                }
                if mutated[i] == ledger[i] { mutated[i].index.0 += 1000; }
                i
            }
            // Delete an entry that has a successor (deleting the tail is indistinguishable
            // from a shorter ledger; comparing heads across replicas catches that).
            2 => { let i = i.min(n - 2); mutated.remove(i); i }
            // Swap two neighbours.
            3 => { let i = i.min(n - 2); mutated.swap(i, i + 1); i }
            // Insert a copy of another entry.
            // (A copy of entry i inserted before itself is the genuine entry i; the break
            // shows at the next position.)
            _ => { let j = other.index(n); mutated.insert(i, ledger[j].clone()); if j == i { i + 1 } else { i } }
        };
        let error = verify_chain(&mutated).expect_err("mutation detected");
        prop_assert_eq!(error.position, expected as u64, "{:?}", error);
        if kind == 0 && i > 0 {
            prop_assert_eq!(error.reason, ChainFault::Hash);
        }
    }

    /// The chain check on stored bytes (`push_canonical`, what a snapshot's sender runs)
    /// agrees with the check on decoded entries (`push` without ids) on every position of
    /// random ledgers, whole or with an entry edited, deleted, swapped or repeated; and a
    /// flipped byte anywhere in an entry's bytes is caught at that entry.
    #[test]
    fn the_chain_check_on_stored_bytes_agrees_with_the_decoded_one(
        (ops, order) in ops_and_order(),
        kind in 0..6u8,
        at in any::<prop::sample::Index>(),
        other in any::<prop::sample::Index>(),
        byte in any::<prop::sample::Index>(),
    ) {
        let proposals = build(&ops);
        let (_, ledger) = run(&proposals, &ops, &order);
        prop_assume!(ledger.len() >= 3);
        let n = ledger.len();
        let i = at.index(n);
        let mut entries = ledger.clone();
        match kind {
            0 => entries[i].time.0 += 1,
            1 => { let i = i.min(n - 2); entries.remove(i); }
            2 => { let i = i.min(n - 2); entries.swap(i, i + 1); }
            3 => entries.insert(i, ledger[other.index(n)].clone()),
            4 => entries[i].index.0 += 1,
            _ => {}
        }
        let mut bytes: Vec<Vec<u8>> = entries.iter().map(LedgerEntry::to_bytes).collect();
        if kind == 5 {
            let b = byte.index(bytes[i].len());
            bytes[i][b] ^= 0x40;
        }
        let mut decoded = docket_core::ledger::ChainVerifier::from_genesis();
        let mut stored = docket_core::ledger::ChainVerifier::from_genesis();
        for (position, raw) in bytes.iter().enumerate() {
            let by_bytes = stored.push_canonical(raw);
            match LedgerEntry::from_bytes(raw) {
                Ok(entry) => {
                    let by_entry = decoded.push(&entry, false);
                    prop_assert_eq!(
                        by_bytes.clone().map(|_| ()),
                        by_entry.clone(),
                        "position {}",
                        position
                    );
                    if let Ok(hash) = by_bytes {
                        prop_assert_eq!(hash, entry.hash);
                    }
                }
                // A flipped byte that no longer decodes: the byte check fails there too.
                Err(_) => prop_assert!(by_bytes.is_err(), "position {}", position),
            }
            if by_bytes.is_err() {
                if kind == 5 {
                    prop_assert_eq!(position, i, "the flipped entry is the one caught");
                }
                break;
            }
        }
    }

    /// Every recorded decision of random ledgers is explained as it was decided
    /// ([`check_explanations`]).
    #[test]
    fn explain_names_the_recorded_code_and_the_step_that_decided(
        (ops, order) in ops_and_order(),
    ) {
        let proposals = build(&ops);
        let (end, ledger) = run(&proposals, &ops, &order);
        check_explanations(&ledger, &end)?;
    }
}

/// Every recorded decision, explained both right after it was recorded and against the
/// final state `end`, names the code the ledger recorded and the step that decided: the step
/// the adjudication traced when it is re-run on the state before the entry (the engine
/// adjudicates each submitted or released proposal against exactly that state, at the
/// entry's time), which is one of the steps its code belongs to.
fn check_explanations(ledger: &[LedgerEntry], end: &State) -> Result<(), TestCaseError> {
    let mut state = State::from_genesis_entry(&ledger[0]).expect("genesis");
    for entry in &ledger[1..] {
        let record = entry.decision_record().expect("a decision entry");
        let trace = match record.cause {
            Cause::Expired => None,
            Cause::Submitted | Cause::Released { .. } => {
                let (verdict, trace) =
                    adjudicate_traced(&state, &record.proposal, &record.id, entry.time, &Strict);
                prop_assert_eq!(&verdict.decision, &record.decision);
                Some(trace)
            }
        };
        state.apply(entry).expect("applies");
        for now in [&state, end] {
            let explanation = explain(now, entry).expect("explains a decision");
            prop_assert_eq!(explanation.id, record.id);
            prop_assert_eq!(explanation.index, entry.index);
            match (&record.decision, &explanation.why) {
                (Decision::Reject(rejection), Why::Rejected(why)) => {
                    prop_assert_eq!(why.code, rejection.code);
                    prop_assert!(
                        Step::of_code(rejection.code).contains(&why.step),
                        "{} is not a step of {}",
                        why.step,
                        rejection.code
                    );
                    if rejection.code == docket_core::RejectCode::DependencyFailed {
                        // The failed outcome is named, with the proposal it is the outcome of.
                        let failed = why.dependencies.iter().any(|d| {
                            d.status == DependencyStatus::OutcomeFailed
                                && d.outcome_of.map(|x| x.outcome_of()) == Some(d.id)
                        });
                        prop_assert!(failed, "{:?}", why.dependencies);
                    }
                    match trace {
                        Some(trace) => {
                            prop_assert_eq!(why.step, trace.step, "{}", rejection);
                            prop_assert_eq!(&why.named_rule, &trace.rule.map(RuleRef::from));
                        }
                        None => prop_assert_eq!(why.step, Step::Dependencies),
                    }
                }
                (Decision::Admit, Why::Admitted(_)) => {
                    prop_assert_eq!(trace.map(|t| t.step), Some(Step::Admit));
                }
                (Decision::Defer { .. }, Why::Deferred(_)) => {
                    prop_assert_eq!(trace.map(|t| t.step), Some(Step::Dependencies));
                }
                (decision, why) => prop_assert!(false, "{decision} explained as {why:?}"),
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Outcome dependencies

/// A generated plan of file writes: member `i` depends on the outcomes of some members
/// before it (`deps`), and its own effect fails when `fails` (if its outcome is reported).
#[derive(Debug, Clone)]
struct Effect {
    deps: Vec<usize>,
    fails: bool,
}

fn effects() -> impl Strategy<Value = Vec<Effect>> {
    proptest::collection::vec(
        (
            proptest::collection::vec(0..16usize, 0..3),
            prop::bool::weighted(0.3),
        ),
        1..14,
    )
    .prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(i, (deps, fails))| {
                let mut deps: Vec<usize> = if i == 0 {
                    Vec::new()
                } else {
                    deps.into_iter().map(|d| d % i).collect()
                };
                deps.sort_unstable();
                deps.dedup();
                Effect { deps, fails }
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Recorded as one plan and reported on in a random order, a set of effects that depend
    /// on each other's outcomes ends with exactly the transitive dependents of the failed
    /// effects rejected (DEPENDENCY_FAILED when a failed effect is a direct dependency,
    /// DEPENDENCY_REJECTED through a rejected dependent), everything else admitted, and the
    /// same ledger replays to the same state.
    #[test]
    fn a_failed_effect_rejects_exactly_its_transitive_dependents(
        plan in effects(),
        report_order in proptest::collection::vec(any::<u32>(), 14),
    ) {
        use docket_core::{Decision, RejectCode};
        let ledger = ledger_id();
        let (mut state, genesis) =
            State::genesis(ledger.clone(), DEFAULT_DOCUMENT, LedgerTime(START_MS)).expect("genesis");
        let mut ids: Vec<ProposalId> = Vec::new();
        let mut signed = Vec::new();
        for (i, effect) in plan.iter().enumerate() {
            let mut dependencies = Vec::new();
            for d in &effect.deps {
                dependencies.push(ids[*d]);
                dependencies.push(ids[*d].outcome_of());
            }
            let path = format!("f/{i}");
            let p = dev::proposal(
                &ledger,
                "alice",
                "FILE.WRITE",
                &path,
                Value::map([("path", Value::Str(path.clone())), ("contents", Value::Str(path.clone()))]),
                dependencies,
                0,
            );
            ids.push(p.id());
            signed.push(p);
        }
        let mut time = START_MS;
        let (arranged, _) = docket_core::plan::arrange(signed).expect("a plan");
        let mut ledger_entries = vec![genesis];
        for p in arranged {
            time += 1;
            ledger_entries.extend(state.submit(p, LedgerTime(time)).entries().iter().cloned());
        }
        // Report outcomes of admitted, unreported effects, in a generated order, until none is left.
        let mut reported = vec![false; plan.len()];
        loop {
            let mut ready: Vec<usize> = (0..plan.len())
                .filter(|i| !reported[*i])
                .filter(|i| state.proposal_status(&ids[*i]) == Some(docket_core::ProposalStatus::Admitted))
                .collect();
            if ready.is_empty() {
                break;
            }
            ready.sort_by_key(|i| report_order[*i]);
            let i = ready[0];
            reported[i] = true;
            let outcome = if plan[i].fails { "failure" } else { "success" };
            let report = dev::proposal(
                &ledger,
                "exec",
                "EXECUTION.OUTCOME",
                &ids[i].to_hex(),
                Value::map([
                    ("reports_on", Value::Str(ids[i].to_hex())),
                    ("outcome", outcome.into()),
                    ("evidence_hash", Value::Str("ab".repeat(32))),
                ]),
                vec![ids[i]],
                0,
            );
            time += 1;
            ledger_entries.extend(state.submit(report, LedgerTime(time)).entries().iter().cloned());
        }
        // The model: rejected iff a dependency failed (reported failure) or was rejected.
        let mut rejected = vec![false; plan.len()];
        for i in 0..plan.len() {
            for d in &plan[i].deps {
                let failed = !rejected[*d] && plan[*d].fails;
                rejected[i] |= failed || rejected[*d];
            }
        }
        for i in 0..plan.len() {
            let status = state.proposal_status(&ids[i]);
            if rejected[i] {
                prop_assert_eq!(status, Some(docket_core::ProposalStatus::Rejected), "member {}", i);
                let decision = ledger_entries
                    .iter()
                    .rev()
                    .find_map(|e| e.decision_record().filter(|r| r.id == ids[i]))
                    .map(|r| r.decision.clone())
                    .expect("recorded");
                let code = match decision {
                    Decision::Reject(r) => r.code,
                    other => panic!("member {i}: {other:?}"),
                };
                prop_assert!(
                    matches!(code, RejectCode::DependencyFailed | RejectCode::DependencyRejected),
                    "member {}: {:?}", i, code
                );
                if !plan[i].deps.iter().any(|d| rejected[*d]) {
                    prop_assert_eq!(code, RejectCode::DependencyFailed, "member {}", i);
                }
            } else {
                prop_assert_eq!(status, Some(docket_core::ProposalStatus::Admitted), "member {}", i);
                let outcome = state.outcome(&ids[i].outcome_of()).expect("reported");
                prop_assert_eq!(outcome.succeeded, !plan[i].fails);
            }
        }
        prop_assert!(state.deferred().is_empty(), "nothing left waiting");
        let replayed = replay(&ledger_entries).expect("replay");
        prop_assert_eq!(replayed.hash(), state.hash());
        // Outcome dependencies (DEPENDENCY_FAILED, outcome references) explained as decided.
        check_explanations(&ledger_entries, &state)?;
    }
}
