//! Outcome records: the proposals an agent files, signed with the executor key, to make an
//! effect's result protocol-visible. The constitution judges them like any other proposal;
//! the executor role may file nothing else.
//!
//! | effect reports as | success | failure or refusal |
//! |---|---|---|
//! | [`Reporting::Settlement`] | `SETTLEMENT.PAYOUT_EXECUTED` {`reports_on`, `rail_ref`, `evidence_hash`} | `SETTLEMENT.RAIL_ERROR` {`reports_on`, `reason`, `evidence_hash`} |
//! | [`Reporting::Execution`] | `EXECUTION.OUTCOME` {`reports_on`, `outcome`, `evidence_hash`, `effect`, ...} | the same, `outcome` = `failure` / `refused`, with `reason` |
//!
//! Every outcome depends on the proposal it reports on (`dependencies = [reports_on]`), so
//! the core can check that it was admitted; settlement outcomes go to the payout's subject,
//! `EXECUTION.OUTCOME` to the subject named by the reported id. The nonce is 0: the same
//! conclusion always gives the same proposal id, so refiling after a restart is a duplicate,
//! not a second record.

use docket_core::proposal::public_key;
use docket_core::{DecisionRecord, LedgerId, Proposal, ProposalFormat, SignedProposal, Value};
use ed25519_dalek::SigningKey;

use crate::config::OUTCOME_DOMAIN;
use crate::effect::Reporting;
use crate::evidence::{bounded, OutcomeKind, REASON_BYTES_MAX};
use crate::host::LedgerView;
use crate::journal::Conclusion;

pub const PAYOUT_EXECUTED: &str = "SETTLEMENT.PAYOUT_EXECUTED";
pub const RAIL_ERROR: &str = "SETTLEMENT.RAIL_ERROR";
pub const EXECUTION_OUTCOME: &str = "EXECUTION.OUTCOME";
/// Nonce of every outcome record (see the module docs).
pub const OUTCOME_NONCE: u64 = 0;

/// Builds and signs the outcome record of `conclusion` about `record`.
pub fn build(
    reporting: Reporting,
    ledger_id: &LedgerId,
    key: &SigningKey,
    record: &DecisionRecord,
    effect: &str,
    conclusion: &Conclusion,
) -> SignedProposal {
    let reported = &record.proposal.proposal;
    let reports_on = record.id.to_hex();
    let reason = conclusion.reason.clone().unwrap_or_default();
    let (domain, action, subject, payload) = match reporting {
        Reporting::Settlement => {
            let mut fields = vec![
                ("reports_on", Value::Str(reports_on)),
                (
                    "evidence_hash",
                    Value::Str(conclusion.evidence_hash.clone()),
                ),
            ];
            let action = match (conclusion.outcome, conclusion.fields.get("rail_ref")) {
                (OutcomeKind::Success, Some(rail_ref)) => {
                    fields.push(("rail_ref", Value::Str(rail_ref.clone())));
                    PAYOUT_EXECUTED
                }
                (outcome, _) => {
                    let text = format!("{}: {reason}", outcome.as_str());
                    fields.push(("reason", Value::Str(bounded(text, REASON_BYTES_MAX))));
                    RAIL_ERROR
                }
            };
            (
                reported.domain.clone(),
                action,
                reported.subject.clone(),
                Value::map(fields),
            )
        }
        Reporting::Execution => {
            let mut fields = vec![
                ("reports_on", Value::Str(reports_on.clone())),
                (
                    "outcome",
                    Value::Str(conclusion.outcome.as_str().to_owned()),
                ),
                (
                    "evidence_hash",
                    Value::Str(conclusion.evidence_hash.clone()),
                ),
                ("effect", Value::Str(effect.to_owned())),
            ];
            if !reason.is_empty() {
                fields.push(("reason", Value::Str(bounded(reason, REASON_BYTES_MAX))));
            }
            for (name, value) in &conclusion.fields {
                if !matches!(
                    name.as_str(),
                    "reports_on" | "outcome" | "evidence_hash" | "effect" | "reason"
                ) {
                    fields.push((name.as_str(), Value::Str(value.clone())));
                }
            }
            (
                OUTCOME_DOMAIN.to_owned(),
                EXECUTION_OUTCOME,
                reports_on,
                Value::map(fields),
            )
        }
    };
    let proposal = Proposal {
        format: ProposalFormat::CURRENT,
        ledger_id: ledger_id.clone(),
        domain,
        action: action.to_owned(),
        subject,
        payload,
        dependencies: vec![record.id],
        author: public_key(key),
        nonce: OUTCOME_NONCE,
    };
    proposal.sign(key)
}

/// Whether the ledger already settles the reported proposal, so no effect may run for it:
///
/// * settlement: the subject's `pending_payout` is no longer this request (only an outcome
///   record clears it; and a payout that is not pending must not be paid either way);
/// * execution: the subject named by the proposal id exists in the `execution` domain
///   (only an admitted `EXECUTION.OUTCOME` creates it).
pub fn already_reported(
    reporting: Reporting,
    ledger: &dyn LedgerView,
    record: &DecisionRecord,
) -> bool {
    let id = record.id.to_hex();
    match reporting {
        Reporting::Settlement => {
            let p = &record.proposal.proposal;
            ledger.subject(&p.domain, &p.subject).is_some_and(|s| {
                s.fields.get("pending_payout").and_then(Value::as_str) != Some(id.as_str())
            })
        }
        Reporting::Execution => ledger.subject(OUTCOME_DOMAIN, &id).is_some(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use docket_core::constitution::DEFAULT_DOCUMENT;
    use docket_core::{dev, Decision, LedgerTime, RejectCode, State};

    use super::*;

    fn conclusion(outcome: OutcomeKind, fields: &[(&str, &str)]) -> Conclusion {
        Conclusion {
            outcome,
            reason: (outcome != OutcomeKind::Success).then(|| "status 503".to_owned()),
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            evidence_hash: "ab".repeat(32),
        }
    }

    /// A ledger with a funded settlement and an admitted payout request.
    fn ledger() -> (State, LedgerId, DecisionRecord) {
        let ledger = LedgerId::new("outcome-test").expect("valid");
        let (mut state, _) =
            State::genesis(ledger.clone(), DEFAULT_DOCUMENT, LedgerTime(1)).expect("genesis");
        let deposit = dev::proposal(
            &ledger,
            "alice",
            "SETTLEMENT.DEPOSIT_CONFIRMED",
            "stl-1",
            Value::map([("amount", Value::Int(100)), ("currency", "EUR".into())]),
            vec![],
            1,
        );
        state.submit(deposit, LedgerTime(2));
        let payout = dev::proposal(
            &ledger,
            "alice",
            "SETTLEMENT.PAYOUT_REQUESTED",
            "stl-1",
            Value::map([("amount", Value::Int(40)), ("beneficiary", "bob".into())]),
            vec![],
            1,
        );
        let submission = state.submit(payout, LedgerTime(3));
        let record = submission.entries()[0]
            .decision_record()
            .expect("decision")
            .clone();
        assert_eq!(record.decision, Decision::Admit);
        (state, ledger, record)
    }

    fn decide(state: &mut State, proposal: SignedProposal) -> Decision {
        let id = proposal.id();
        let submission = state.submit(proposal, LedgerTime(10));
        submission
            .own_entry(&id)
            .and_then(|e| e.decision_record())
            .expect("recorded")
            .decision
            .clone()
    }

    #[test]
    fn payout_outcomes_are_admitted_and_depend_on_the_request() {
        let (mut state, ledger, record) = ledger();
        let key = dev::signing_key("exec");
        let success = conclusion(OutcomeKind::Success, &[("rail_ref", "r-1")]);
        let outcome = build(
            Reporting::Settlement,
            &ledger,
            &key,
            &record,
            "rail",
            &success,
        );
        let p = &outcome.proposal;
        assert_eq!(p.action, PAYOUT_EXECUTED);
        assert_eq!(
            (p.domain.as_str(), p.subject.as_str()),
            ("settlement", "stl-1")
        );
        assert_eq!(p.dependencies, vec![record.id]);
        assert_eq!(p.author, dev::key("exec"));
        assert_eq!(p.nonce, OUTCOME_NONCE);
        assert_eq!(outcome.verify(&outcome.id()), Ok(()));
        assert_eq!(decide(&mut state, outcome.clone()), Decision::Admit);
        assert_eq!(
            state.subject("settlement", "stl-1").expect("subject").state,
            "paid"
        );
        // The same conclusion gives the same record: refiling is a duplicate.
        let again = build(
            Reporting::Settlement,
            &ledger,
            &key,
            &record,
            "rail",
            &success,
        );
        assert_eq!(again.id(), outcome.id());
    }

    #[test]
    fn failures_and_refusals_become_rail_errors() {
        let (mut state, ledger, record) = ledger();
        let key = dev::signing_key("exec");
        let failed = conclusion(OutcomeKind::Failure, &[]);
        let outcome = build(
            Reporting::Settlement,
            &ledger,
            &key,
            &record,
            "rail",
            &failed,
        );
        assert_eq!(outcome.proposal.action, RAIL_ERROR);
        assert_eq!(
            outcome.proposal.payload.get("reason"),
            Some(&Value::Str("failure: status 503".into()))
        );
        assert_eq!(decide(&mut state, outcome), Decision::Admit);
        assert_eq!(
            state.subject("settlement", "stl-1").expect("subject").state,
            "rail_error"
        );
    }

    #[test]
    fn execution_outcomes_name_the_reported_proposal() {
        let (mut state, ledger, record) = ledger();
        let key = dev::signing_key("exec");
        let done = conclusion(OutcomeKind::Success, &[("content_hash", "00")]);
        let outcome = build(
            Reporting::Execution,
            &ledger,
            &key,
            &record,
            "webhook/x",
            &done,
        );
        let p = &outcome.proposal;
        assert_eq!(
            (p.domain.as_str(), p.action.as_str()),
            ("execution", EXECUTION_OUTCOME)
        );
        assert_eq!(p.subject, record.id.to_hex());
        assert_eq!(
            p.payload.get("effect"),
            Some(&Value::Str("webhook/x".into()))
        );
        assert_eq!(
            p.payload.get("content_hash"),
            Some(&Value::Str("00".into()))
        );
        assert_eq!(decide(&mut state, outcome.clone()), Decision::Admit);
        // One outcome per proposal: a second, different one is rejected by the core.
        let other = conclusion(OutcomeKind::Failure, &[]);
        let second = build(
            Reporting::Execution,
            &ledger,
            &key,
            &record,
            "webhook/x",
            &other,
        );
        assert_ne!(second.id(), outcome.id());
        assert!(matches!(decide(&mut state, second), Decision::Reject(_)));
    }

    #[test]
    fn the_executor_key_can_forge_nothing() {
        let (mut state, ledger, record) = ledger();
        // The executor confirming a deposit: unauthorized.
        let deposit = dev::proposal(
            &ledger,
            "exec",
            "SETTLEMENT.DEPOSIT_CONFIRMED",
            "stl-1",
            Value::map([
                ("amount", Value::Int(1_000_000)),
                ("currency", "EUR".into()),
            ]),
            vec![],
            1,
        );
        assert_eq!(
            decide(&mut state, deposit).code(),
            Some(RejectCode::Unauthorized)
        );
        // An outcome about a proposal that was never admitted (rejected: mallory's).
        let forged_request = dev::proposal(
            &ledger,
            "mallory",
            "SETTLEMENT.PAYOUT_REQUESTED",
            "stl-2",
            Value::map([("amount", Value::Int(5)), ("beneficiary", "m".into())]),
            vec![],
            1,
        );
        let forged_id = forged_request.id();
        let rejected = state.submit(forged_request, LedgerTime(5)).entries()[0]
            .decision_record()
            .expect("decision")
            .clone();
        assert_eq!(rejected.id, forged_id);
        let key = dev::signing_key("exec");
        let done = conclusion(OutcomeKind::Success, &[]);
        let outcome = build(
            Reporting::Execution,
            &ledger,
            &key,
            &rejected,
            "webhook/x",
            &done,
        );
        assert!(matches!(decide(&mut state, outcome), Decision::Reject(_)));
        // An outcome signed by someone who is not the executor.
        let alice = dev::signing_key("alice");
        let success = conclusion(OutcomeKind::Success, &[("rail_ref", "r")]);
        let outcome = build(
            Reporting::Settlement,
            &ledger,
            &alice,
            &record,
            "rail",
            &success,
        );
        assert_eq!(
            decide(&mut state, outcome).code(),
            Some(RejectCode::Unauthorized)
        );
    }
}
