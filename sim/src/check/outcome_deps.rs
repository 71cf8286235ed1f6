//! Outcome dependencies: a proposal that lists an effect's outcome reference
//! ([`ProposalId::outcome_of`]) is decided by that outcome, and only once it is known.
//!
//! The checker replays the agreed ledger through its own small model, not the core's
//! [`docket_core::State`]: proposal statuses, and each effect's outcome — the first
//! admitted outcome record about it (an action whose updates include `outcome_succeeded`,
//! `outcome_failed` or `outcome_reported`, per the genesis constitution: in the default
//! one `SETTLEMENT.PAYOUT_EXECUTED`, `SETTLEMENT.RAIL_ERROR`, and `EXECUTION.OUTCOME`,
//! a success iff its `outcome` is `"success"`). For every entry that decides a proposal
//! listing an outcome reference it derives, from the dependencies as they stood just
//! before that entry (in the order listed, as adjudication reads them), what the entry
//! must say:
//!
//! * a dependency rejected, or an outcome recorded as a failure: rejected with the first
//!   such dependency's code (`DEPENDENCY_REJECTED`, `DEPENDENCY_FAILED`) — never admitted,
//!   never deferred, never expired;
//! * otherwise some dependency undecided (an outcome not recorded): deferred, waiting on
//!   exactly those, or expired (`DEPENDENCY_EXPIRED`) — never admitted, never decided on
//!   its merits, never rejected for a dependency;
//! * otherwise every dependency met (outcomes recorded as successes at earlier indexes):
//!   decided on its merits — never deferred, never rejected for a dependency.
//!
//! A rejection that adjudication gives before it reads dependencies (signature, ledger,
//! limits, schema, domain, action, authorization) is accepted in every case. Releases must
//! be prompt: a deferred proposal is decided in the command that made it ready (only
//! released entries between the entry that made it ready and its own), and none is left
//! deferred at the end once it is ready.
//!
//! The model does not follow constitutional amendments (the simulator files none) and
//! treats an outcome action as taking effect when admitted (no outcome action has a
//! quorum).

use std::collections::BTreeMap;

use docket_core::constitution::UpdateName;
use docket_core::{
    Cause, Constitution, Decision, LedgerEntry, LedgerIndex, ProposalId, Record, RejectCode, Value,
};

use super::Violation;

const NAME: &str = "outcome-dependencies";

/// Violations kept per run.
const VIOLATIONS_MAX: usize = 12;

/// What the run's outcome dependencies did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Proposals listing an outcome reference (each counted once, at its final decision
    /// or as still deferred).
    pub dependents: u64,
    pub admitted: u64,
    /// Rejected `DEPENDENCY_FAILED`.
    pub failed: u64,
    /// Rejected `DEPENDENCY_REJECTED` or `DEPENDENCY_EXPIRED`.
    pub rejected_or_expired: u64,
    /// Rejected on their merits, or before dependencies were read.
    pub rejected_otherwise: u64,
    /// Deferred at some point before being decided (or still deferred).
    pub waited: u64,
    pub deferred_at_end: u64,
}

/// How an outcome action reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reports {
    Succeeded,
    Failed,
    /// Success iff the payload's `outcome` is `"success"`.
    Field,
}

/// Where a dependency stood, with the index of the entry that settled it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Standing {
    Met(LedgerIndex),
    Rejected(LedgerIndex),
    Failed(LedgerIndex),
    Pending,
}

/// What the dependencies, in listed order, demand of the decision.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Demand {
    /// Rejected with this code (the first blocking dependency's); ready since the index.
    Blocked(RejectCode, ProposalId, LedgerIndex),
    /// Deferred on exactly these dependencies.
    Waiting(Vec<ProposalId>),
    /// Decided on its merits; ready since the index.
    Met(LedgerIndex),
}

/// Rejections adjudication gives before it reads dependencies.
fn before_dependencies(code: RejectCode) -> bool {
    matches!(
        code,
        RejectCode::BadSignature
            | RejectCode::WrongLedger
            | RejectCode::LimitExceeded
            | RejectCode::Schema
            | RejectCode::UnknownDomain
            | RejectCode::UnknownAction
            | RejectCode::Unauthorized
    )
}

#[derive(Default)]
struct Model {
    /// Final decisions: admitted or not, and where.
    status: BTreeMap<ProposalId, (bool, LedgerIndex)>,
    /// Each effect's first recorded outcome: succeeded, and where.
    outcome: BTreeMap<ProposalId, (bool, LedgerIndex)>,
    /// Outcome reference → the proposal it is the outcome of (every proposal in the ledger).
    refs: BTreeMap<ProposalId, ProposalId>,
}

impl Model {
    fn standing(&self, dep: &ProposalId) -> Standing {
        if let Some(&(admitted, at)) = self.status.get(dep) {
            return if admitted {
                Standing::Met(at)
            } else {
                Standing::Rejected(at)
            };
        }
        match self.refs.get(dep).and_then(|x| self.outcome.get(x)) {
            Some(&(true, at)) => Standing::Met(at),
            Some(&(false, at)) => Standing::Failed(at),
            None => Standing::Pending,
        }
    }

    fn demand(&self, deps: &[ProposalId]) -> Demand {
        let standings: Vec<Standing> = deps.iter().map(|d| self.standing(d)).collect();
        let ready_blocked = standings
            .iter()
            .filter_map(|s| match s {
                Standing::Rejected(at) | Standing::Failed(at) => Some(*at),
                _ => None,
            })
            .min();
        for (dep, standing) in deps.iter().zip(&standings) {
            let code = match standing {
                Standing::Rejected(_) => RejectCode::DependencyRejected,
                Standing::Failed(_) => RejectCode::DependencyFailed,
                _ => continue,
            };
            let since = ready_blocked.expect("invariant: a blocking dependency has an index");
            return Demand::Blocked(code, *dep, since);
        }
        let waiting: Vec<ProposalId> = deps
            .iter()
            .zip(&standings)
            .filter(|(_, s)| **s == Standing::Pending)
            .map(|(d, _)| *d)
            .collect();
        if !waiting.is_empty() {
            return Demand::Waiting(waiting);
        }
        let since = standings
            .iter()
            .filter_map(|s| match s {
                Standing::Met(at) => Some(*at),
                _ => None,
            })
            .max()
            .unwrap_or(LedgerIndex(0));
        Demand::Met(since)
    }

    fn lists_outcome(&self, deps: &[ProposalId]) -> bool {
        deps.iter().any(|d| self.refs.contains_key(d))
    }

    /// Names a dependency for a report: a proposal, or `outcome_of(X)`.
    fn name(&self, dep: &ProposalId) -> String {
        match self.refs.get(dep) {
            Some(x) => format!("outcome_of({})", x.short()),
            None => dep.short(),
        }
    }
}

/// The outcome actions of a constitution, by action name.
fn outcome_actions(constitution: &Constitution) -> BTreeMap<String, Reports> {
    let mut out = BTreeMap::new();
    for domain in constitution.domains.values() {
        for (name, action) in &domain.actions {
            for update in &action.updates {
                let reports = match update {
                    UpdateName::OutcomeSucceeded => Reports::Succeeded,
                    UpdateName::OutcomeFailed => Reports::Failed,
                    UpdateName::OutcomeReported => Reports::Field,
                    _ => continue,
                };
                out.insert(name.clone(), reports);
            }
        }
    }
    out
}

struct Report {
    violations: Vec<Violation>,
}

impl Report {
    fn push(&mut self, detail: String) {
        if self.violations.len() < VIOLATIONS_MAX {
            self.violations.push(Violation::new(NAME, detail));
        }
    }
}

/// `canonical`: the agreed ledger at the end of the run.
pub fn check(canonical: &[LedgerEntry]) -> (Vec<Violation>, Stats) {
    let mut report = Report {
        violations: Vec::new(),
    };
    let mut stats = Stats::default();
    let Some(Record::Genesis { document, .. }) = canonical.first().map(|e| &e.record) else {
        return (report.violations, stats);
    };
    let actions = match Constitution::parse(document) {
        Ok(constitution) => outcome_actions(&constitution),
        Err(e) => {
            report.push(format!("the genesis constitution does not parse: {e}"));
            return (report.violations, stats);
        }
    };
    let mut model = Model::default();
    for entry in canonical {
        if let Some(record) = entry.decision_record() {
            model.refs.insert(record.id.outcome_of(), record.id);
        }
    }
    // Deferred proposals that list an outcome reference: their dependencies.
    let mut deferred: BTreeMap<ProposalId, Vec<ProposalId>> = BTreeMap::new();
    // Index of the last entry not released in a wave (a submission or an expiry).
    let mut last_unreleased = LedgerIndex(0);
    for entry in canonical {
        let Some(record) = entry.decision_record() else {
            continue;
        };
        let index = entry.index;
        let id = record.id;
        let p = &record.proposal.proposal;
        let deps = &p.dependencies;
        if model.lists_outcome(deps) {
            let at = format!("#{index} ({} {}, {:?})", p.action, id.short(), record.cause);
            let demand = model.demand(deps);
            let decision = &record.decision;
            let code = decision.code();
            let early = code.is_some_and(before_dependencies);
            let expired = record.cause == Cause::Expired;
            match &demand {
                Demand::Blocked(want, dep, since) => {
                    if code != Some(*want) && !early {
                        report.push(format!(
                            "{at}: dependency {} stood {} since #{since}, but the entry says {}",
                            model.name(dep),
                            if *want == RejectCode::DependencyFailed {
                                "failed"
                            } else {
                                "rejected"
                            },
                            decision.label()
                        ));
                    }
                }
                Demand::Waiting(waiting) => {
                    let fine = match decision {
                        Decision::Defer { waiting_on } => waiting_on == waiting,
                        _ => early || (expired && code == Some(RejectCode::DependencyExpired)),
                    };
                    if !fine {
                        report.push(format!(
                            "{at}: decided {decision} while [{}] were undecided (outcomes \
                             unknown)",
                            waiting
                                .iter()
                                .map(|d| model.name(d))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                }
                Demand::Met(_) => {
                    let dependency_code = code.is_some_and(|c| {
                        matches!(
                            c,
                            RejectCode::DependencyRejected
                                | RejectCode::DependencyFailed
                                | RejectCode::DependencyExpired
                        )
                    });
                    if !decision.is_final() || dependency_code {
                        report.push(format!(
                            "{at}: every dependency was met, but the entry says {decision}"
                        ));
                    }
                }
            }
            // A release comes in the command that made the proposal ready.
            if let (Cause::Released { .. }, Demand::Blocked(_, _, since) | Demand::Met(since)) =
                (record.cause, &demand)
            {
                if last_unreleased > *since {
                    report.push(format!(
                        "{at}: released late: ready since #{since}, but #{last_unreleased} was \
                         recorded in between"
                    ));
                }
            }
            if decision.is_final() {
                if deferred.remove(&id).is_some() {
                    stats.waited += 1;
                }
                stats.dependents += 1;
                match code {
                    None => stats.admitted += 1,
                    Some(RejectCode::DependencyFailed) => stats.failed += 1,
                    Some(RejectCode::DependencyRejected | RejectCode::DependencyExpired) => {
                        stats.rejected_or_expired += 1
                    }
                    Some(_) => stats.rejected_otherwise += 1,
                }
            } else {
                deferred.insert(id, deps.clone());
            }
        }
        if !matches!(record.cause, Cause::Released { .. }) {
            last_unreleased = index;
        }
        // Apply the entry to the model.
        if record.decision.is_final() {
            model
                .status
                .insert(id, (record.decision == Decision::Admit, index));
        }
        if record.decision == Decision::Admit {
            if let Some(reports) = actions.get(&p.action) {
                let reports_on = p
                    .payload
                    .get("reports_on")
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse::<ProposalId>().ok());
                let succeeded = match reports {
                    Reports::Succeeded => true,
                    Reports::Failed => false,
                    Reports::Field => {
                        p.payload.get("outcome").and_then(Value::as_str)
                            == Some(docket_core::constitution::rules::OUTCOME_SUCCESS)
                    }
                };
                match reports_on {
                    Some(x) => {
                        model.outcome.entry(x).or_insert((succeeded, index));
                    }
                    None => report.push(format!(
                        "#{index}: admitted outcome record {} names no proposal it reports on",
                        id.short()
                    )),
                }
            }
        }
    }
    for (id, deps) in &deferred {
        stats.dependents += 1;
        stats.waited += 1;
        stats.deferred_at_end += 1;
        if let Demand::Blocked(_, _, since) | Demand::Met(since) = model.demand(deps) {
            report.push(format!(
                "{} is still deferred at the end although its dependencies were decided by #{since}",
                id.short()
            ));
        }
    }
    (report.violations, stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::check::fixture::CoreLedger as Ledger;

    // This checker's flows over the shared fixture.
    impl Ledger {
        /// A funded payout to `beneficiary` on `subject`.
        fn payout(&mut self, subject: &str, beneficiary: &str) -> ProposalId {
            let deposit = self.file(
                "alice",
                "SETTLEMENT.DEPOSIT_CONFIRMED",
                subject,
                Value::map([("amount", Value::Int(100)), ("currency", "EUR".into())]),
                vec![],
            );
            self.file(
                "alice",
                "SETTLEMENT.PAYOUT_REQUESTED",
                subject,
                Value::map([
                    ("amount", Value::Int(40)),
                    ("beneficiary", beneficiary.into()),
                ]),
                vec![deposit],
            )
        }

        /// A deposit elsewhere that waits for `payout`'s outcome.
        fn dependent(&mut self, subject: &str, payout: ProposalId) -> ProposalId {
            self.file(
                "alice",
                "SETTLEMENT.DEPOSIT_CONFIRMED",
                subject,
                Value::map([("amount", Value::Int(5)), ("currency", "EUR".into())]),
                vec![payout, payout.outcome_of()],
            )
        }

        fn report(&mut self, subject: &str, payout: ProposalId, paid: bool) {
            let (action, payload) = if paid {
                (
                    "SETTLEMENT.PAYOUT_EXECUTED",
                    Value::map([
                        ("reports_on", payout.to_hex().into()),
                        ("rail_ref", "rail-1".into()),
                    ]),
                )
            } else {
                (
                    "SETTLEMENT.RAIL_ERROR",
                    Value::map([
                        ("reports_on", payout.to_hex().into()),
                        ("reason", "declined".into()),
                        ("evidence_hash", "ab".repeat(32).into()),
                    ]),
                )
            };
            self.file("exec", action, subject, payload, vec![payout]);
        }

        /// The index of the entry deciding `id` with `cause`.
        fn at(&self, id: ProposalId, cause: fn(Cause) -> bool) -> usize {
            self.entries
                .iter()
                .position(|e| {
                    e.decision_record()
                        .is_some_and(|r| r.id == id && cause(r.cause))
                })
                .expect("entry")
        }
    }

    fn submitted(cause: Cause) -> bool {
        cause == Cause::Submitted
    }

    fn released(cause: Cause) -> bool {
        matches!(cause, Cause::Released { .. })
    }

    /// Rewrites one entry's decision (the chain checker would notice; this one must too).
    fn doctor(entries: &mut [LedgerEntry], at: usize, decision: Decision) {
        match &mut entries[at].record {
            Record::Decision(record) => record.decision = decision,
            Record::Genesis { .. } => panic!("not a decision"),
        }
    }

    fn details(violations: &[Violation]) -> String {
        violations
            .iter()
            .map(|v| v.detail.clone())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A declined payout with a dependent waiting on it, a paid one with a dependent
    /// waiting on it, and a dependent filed after the failure.
    fn sound() -> (Ledger, [ProposalId; 3]) {
        let mut ledger = Ledger::new();
        let declined = ledger.payout("stl-1", "blocked");
        let failed = ledger.dependent("stl-1-after", declined);
        let paid = ledger.payout("stl-2", "acme");
        let admitted = ledger.dependent("stl-2-after", paid);
        ledger.report("stl-1", declined, false);
        ledger.report("stl-2", paid, true);
        let late = ledger.dependent("stl-1-late", declined);
        (ledger, [failed, admitted, late])
    }

    #[test]
    fn a_ledger_the_core_wrote_passes() {
        let (ledger, _) = sound();
        let (violations, stats) = check(&ledger.entries);
        assert!(violations.is_empty(), "{}", details(&violations));
        assert_eq!(
            stats,
            Stats {
                dependents: 3,
                admitted: 1,
                failed: 2,
                waited: 2,
                ..Stats::default()
            }
        );
    }

    #[test]
    fn admitted_after_a_failed_outcome_is_caught() {
        let (mut ledger, [failed, ..]) = sound();
        let at = ledger.at(failed, released);
        doctor(&mut ledger.entries, at, Decision::Admit);
        let (violations, _) = check(&ledger.entries);
        assert!(
            details(&violations).contains("stood failed since"),
            "{}",
            details(&violations)
        );
    }

    #[test]
    fn decided_while_the_outcome_is_unknown_is_caught() {
        let (mut ledger, [_, admitted, _]) = sound();
        let at = ledger.at(admitted, submitted);
        doctor(&mut ledger.entries, at, Decision::Admit);
        let (violations, _) = check(&ledger.entries);
        assert!(
            details(&violations).contains("were undecided (outcomes unknown)"),
            "{}",
            details(&violations)
        );
    }

    #[test]
    fn rejected_although_the_outcome_succeeded_is_caught() {
        let (mut ledger, [_, admitted, _]) = sound();
        let at = ledger.at(admitted, released);
        doctor(
            &mut ledger.entries,
            at,
            Decision::reject(RejectCode::DependencyFailed, "doctored"),
        );
        let (violations, _) = check(&ledger.entries);
        assert!(
            details(&violations).contains("every dependency was met, but the entry says REJECT"),
            "{}",
            details(&violations)
        );
    }

    #[test]
    fn a_rejected_payout_rejects_its_dependents_for_that_and_nothing_else() {
        let mut ledger = Ledger::new();
        let deposit = ledger.file(
            "alice",
            "SETTLEMENT.DEPOSIT_CONFIRMED",
            "stl-1",
            Value::map([("amount", Value::Int(10)), ("currency", "EUR".into())]),
            vec![],
        );
        let overdrawn = ledger.file(
            "alice",
            "SETTLEMENT.PAYOUT_REQUESTED",
            "stl-1",
            Value::map([("amount", Value::Int(40)), ("beneficiary", "acme".into())]),
            vec![deposit],
        );
        let dependent = ledger.dependent("stl-1-after", overdrawn);
        let (violations, stats) = check(&ledger.entries);
        assert!(violations.is_empty(), "{}", details(&violations));
        assert_eq!(stats.rejected_or_expired, 1);
        let at = ledger.at(dependent, submitted);
        doctor(
            &mut ledger.entries,
            at,
            Decision::reject(RejectCode::DependencyFailed, "doctored"),
        );
        let (violations, _) = check(&ledger.entries);
        assert!(
            details(&violations).contains("stood rejected since"),
            "{}",
            details(&violations)
        );
    }

    #[test]
    fn a_release_that_never_comes_or_comes_late_is_caught() {
        let (ledger, [failed, ..]) = sound();
        let at = ledger.at(failed, released);
        // Cut off just before the release: the proposal is left deferred although ready.
        let (violations, _) = check(&ledger.entries[..at]);
        assert!(
            details(&violations).contains("is still deferred at the end"),
            "{}",
            details(&violations)
        );
        // The release moved after the next submission.
        let mut late = ledger.entries.clone();
        let release = late.remove(at);
        late.insert(at + 1, release);
        for (i, entry) in late.iter_mut().enumerate() {
            entry.index = LedgerIndex(i as u64);
        }
        let (violations, _) = check(&late);
        assert!(
            details(&violations).contains("released late"),
            "{}",
            details(&violations)
        );
    }
}
