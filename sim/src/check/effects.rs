//! Effects: every admitted payout is performed at the payment rail at most once per
//! idempotency key, every request the rail gets is explained, and the ledger ends with
//! exactly one outcome record per admitted payout that agrees with the rail.
//!
//! ## What "exactly once" means at the target, and why
//!
//! The agents cannot make a request *arrive* once: an attempt cut off between sending and
//! journaling its result (a crash, a lost leadership, a lost answer) is unknown to every
//! memory the system has, and is re-sent with the same `Idempotency-Key`, which the target
//! must honour. So the invariant is split between the target and the agents:
//!
//! * **The target performs one effect per key.** The rail pays on the first request it
//!   accepts for a key and answers every later one with the same `rail_ref`, moving
//!   nothing. At most one payment per key (`one-effect-per-key`), and only for keys that
//!   are admitted payout requests in the ledger, with the payout's amount and subject:
//!   a key that was never admitted must never appear (`unknown-key`, `wrong-payload`).
//!   Payouts over the agents' amount cap are refused before the rail and never reach it.
//! * **Every repeated delivery is explained**, in the two ways `node/tests/
//!   execution_failover.rs` explains them, and no other:
//!   1. a *retry within one attempt* (the effect's own bounded retries: the previous
//!      request's answer did not arrive or was retryable): same run, next try;
//!   2. a *new attempt* after an earlier one whose conclusion never reached the ledger
//!      (interrupted, or concluded with an outcome record that did not commit).
//!
//!   Two things would be unexplained, and are checked exactly:
//!   * `avoidable-resend`: a request whose sender had already applied the payout's
//!     admitted outcome record when its agent planned the attempt. Every request carries
//!     the number of ledger entries its node had applied at planning (a simulator-only
//!     header, a lower bound of what the agent knew when it checked the ledger right
//!     after); the outcome's ledger index below it means the agent ignored the ledger.
//!     (This is the failover test's "re-sent although the first leader's outcome was in
//!     the log".)
//!   * `unjournaled-attempt`: a node made more runs for a key than its journal records
//!     attempts, or started an attempt after one that concluded. A run starts only after
//!     its `Attempting` phase is flushed, and a new attempt follows only an interrupted one,
//!     so the journal (which keeps what was flushed across crashes) accounts for every run;
//!     more runs than that means the agent ignored its journal.
//!
//! ## The ledger
//!
//! Once the cluster has converged after healing, every admitted payout has exactly one
//! admitted outcome record (`SETTLEMENT.PAYOUT_EXECUTED` or `SETTLEMENT.RAIL_ERROR`), and
//! no second one was ever filed (a rejected outcome record about a payout means an agent
//! reported it twice). The record agrees with the rail and with the payout:
//!
//! * `PAYOUT_EXECUTED` names the `rail_ref` of the rail's one payment for the key (the
//!   ledger records the rail's one effect);
//! * a payout over the cap, or to a beneficiary the rail declines, ends in `RAIL_ERROR`
//!   (and the declined one was not paid);
//! * any other payout may end either way: `RAIL_ERROR` when the agent could not reach
//!   the rail or get its answer in time — then the rail may have paid (counted as
//!   `paid_then_rail_error`), since a lost answer is indistinguishable from a lost request.

use std::collections::{BTreeMap, BTreeSet};

use docket_core::{Decision, LedgerEntry, LedgerIndex, ProposalId, Value};
use docket_execution::outcome::{PAYOUT_EXECUTED, RAIL_ERROR};
use docket_execution::{Job, Phase};
use docket_raft::NodeId;

use super::Violation;
use crate::execution::RAIL_AMOUNT_MAX;
use crate::rail::{Answer, Rail, BENEFICIARY_BLOCKED};

const NAME: &str = "effects";

/// Violations kept per run.
const VIOLATIONS_MAX: usize = 12;

const PAYOUT_REQUESTED: &str = "SETTLEMENT.PAYOUT_REQUESTED";

/// What the run's execution did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Admitted payout requests.
    pub payouts: u64,
    pub executed: u64,
    pub rail_errors: u64,
    /// Requests the rail received, every try included.
    pub requests: u64,
    pub payments: u64,
    /// Keys the rail received more than once.
    pub keys_repeated: u64,
    /// Payouts reported as rail errors although the rail paid them (answer lost).
    pub paid_then_rail_error: u64,
}

#[derive(Debug)]
struct Payout {
    index: LedgerIndex,
    subject: String,
    amount: Option<i64>,
    beneficiary: Option<String>,
}

#[derive(Debug)]
struct OutcomeRecord {
    index: LedgerIndex,
    action: String,
    rail_ref: Option<String>,
    decision: String,
}

fn str_field(payload: &Value, name: &str) -> Option<String> {
    payload.get(name).and_then(Value::as_str).map(str::to_owned)
}

/// Attempts a node's journal accounts for: recorded ones, and one under way.
fn journaled_attempts(job: &Job) -> u32 {
    match job.phase {
        Phase::Attempting { attempt, .. } => attempt.max(job.attempts()),
        _ => job.attempts(),
    }
}

fn interrupted(evidence: &docket_execution::Evidence) -> bool {
    evidence
        .reason
        .as_deref()
        .is_some_and(|r| r.starts_with("interrupted"))
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

/// `canonical`: the agreed ledger at the end of the run (converged); `rail`: what the rail
/// saw; `journals`: every job in each node's execution journal at the end.
pub fn check(
    canonical: &[LedgerEntry],
    rail: &Rail,
    journals: &BTreeMap<NodeId, Vec<Job>>,
) -> (Vec<Violation>, Stats) {
    let mut report = Report {
        violations: Vec::new(),
    };
    let mut stats = Stats::default();

    // The ledger: admitted payouts, and every settlement outcome record about anything.
    let mut payouts: BTreeMap<ProposalId, Payout> = BTreeMap::new();
    let mut admitted: BTreeMap<ProposalId, Vec<OutcomeRecord>> = BTreeMap::new();
    let mut rejected: BTreeMap<ProposalId, Vec<OutcomeRecord>> = BTreeMap::new();
    for entry in canonical {
        let Some(record) = entry.decision_record() else {
            continue;
        };
        let p = &record.proposal.proposal;
        if p.domain != "settlement" {
            continue;
        }
        if p.action == PAYOUT_REQUESTED && record.decision == Decision::Admit {
            payouts.insert(
                record.id,
                Payout {
                    index: entry.index,
                    subject: p.subject.clone(),
                    amount: p.payload.get("amount").and_then(Value::as_int),
                    beneficiary: str_field(&p.payload, "beneficiary"),
                },
            );
        }
        if p.action != PAYOUT_EXECUTED && p.action != RAIL_ERROR {
            continue;
        }
        if matches!(record.decision, Decision::Defer { .. }) {
            continue;
        }
        let Some(reports_on) =
            str_field(&p.payload, "reports_on").and_then(|s| s.parse::<ProposalId>().ok())
        else {
            continue;
        };
        let outcome = OutcomeRecord {
            index: entry.index,
            action: p.action.clone(),
            rail_ref: str_field(&p.payload, "rail_ref"),
            decision: record.decision.label().to_owned(),
        };
        if record.decision == Decision::Admit {
            admitted.entry(reports_on).or_default().push(outcome);
        } else {
            rejected.entry(reports_on).or_default().push(outcome);
        }
    }
    stats.payouts = payouts.len() as u64;

    // One admitted outcome record per admitted payout, never a second one filed.
    for (id, payout) in &payouts {
        let found = admitted.get(id).map_or(&[][..], Vec::as_slice);
        if found.len() != 1 {
            report.push(format!(
                "payout {} ({}, #{}) has {} admitted outcome records after convergence",
                id.short(),
                payout.subject,
                payout.index,
                found.len()
            ));
        }
        for second in rejected.get(id).map_or(&[][..], Vec::as_slice) {
            report.push(format!(
                "payout {} ({}): a second outcome record {} was filed at #{} ({})",
                id.short(),
                payout.subject,
                second.action,
                second.index,
                second.decision
            ));
        }
    }
    for (id, found) in &admitted {
        if !payouts.contains_key(id) {
            report.push(format!(
                "outcome record #{} reports on {}, which is not an admitted payout",
                found[0].index,
                id.short()
            ));
        }
    }

    // The rail: keys of admitted payouts only, with their payload; one payment per key.
    let by_hex: BTreeMap<String, ProposalId> =
        payouts.keys().map(|id| (id.to_hex(), *id)).collect();
    let mut arrivals_per_key: BTreeMap<&str, u64> = BTreeMap::new();
    // (node, key) → distinct runs that reached the rail.
    let mut runs: BTreeMap<(NodeId, ProposalId), BTreeSet<&str>> = BTreeMap::new();
    stats.requests = rail.arrivals.len() as u64;
    for arrival in &rail.arrivals {
        let at = format!("{:.3}ms", arrival.at_ns as f64 / 1e6);
        let Some(key) = arrival.key.as_deref() else {
            report.push(format!(
                "a request without an idempotency key reached the rail at {at}"
            ));
            continue;
        };
        *arrivals_per_key.entry(key).or_default() += 1;
        let Some(id) = by_hex.get(key) else {
            report.push(format!(
                "key {} reached the rail at {at} but is not an admitted payout request",
                &key[..key.len().min(16)]
            ));
            continue;
        };
        let payout = &payouts[id];
        if arrival.amount != payout.amount || arrival.subject.as_deref() != Some(&payout.subject) {
            report.push(format!(
                "payout {} reached the rail with amount {:?} for {:?}; the ledger says {:?} for {}",
                id.short(),
                arrival.amount,
                arrival.subject,
                payout.amount,
                payout.subject
            ));
        }
        if payout.amount.is_some_and(|a| a > RAIL_AMOUNT_MAX) {
            report.push(format!(
                "payout {} of {:?} is over the agents' cap of {RAIL_AMOUNT_MAX} yet reached \
                 the rail",
                id.short(),
                payout.amount
            ));
        }
        let outcome = admitted.get(id).and_then(|o| o.first());
        match (arrival.known_ledger_len, outcome) {
            (None, _) => report.push(format!(
                "a request for payout {} at {at} does not say what its sender knew",
                id.short()
            )),
            (Some(known), Some(outcome)) if outcome.index.0 < known => report.push(format!(
                "avoidable-resend: n{} sent payout {} to the rail at {at} (run {}, try {}) \
                 although its outcome record #{} was in the {known} entries it had applied \
                 when it planned the attempt",
                arrival.from.unwrap_or(0),
                id.short(),
                arrival.run.as_deref().unwrap_or("-"),
                arrival.try_number.unwrap_or(0),
                outcome.index
            )),
            _ => {}
        }
        if let (Some(node), Some(run)) = (arrival.from, arrival.run.as_deref()) {
            runs.entry((node, *id)).or_default().insert(run);
        } else {
            report.push(format!(
                "a request for payout {} at {at} names no sending node or run",
                id.short()
            ));
        }
    }
    stats.keys_repeated = arrivals_per_key.values().filter(|n| **n > 1).count() as u64;
    stats.payments = rail.payments.len() as u64;
    let mut payments_per_key: BTreeMap<&str, u64> = BTreeMap::new();
    for payment in &rail.payments {
        *payments_per_key.entry(payment.key.as_str()).or_default() += 1;
    }
    for (key, count) in &payments_per_key {
        if *count > 1 {
            report.push(format!(
                "one-effect-per-key: the rail paid key {} {count} times",
                &key[..key.len().min(16)]
            ));
        }
    }

    // Every run is a journaled attempt, and attempts follow only interrupted ones.
    for ((node, id), node_runs) in &runs {
        let job = journals
            .get(node)
            .and_then(|jobs| jobs.iter().find(|j| j.proposal_id == *id));
        let attempts = job.map_or(0, journaled_attempts);
        if node_runs.len() as u64 > u64::from(attempts) {
            report.push(format!(
                "unjournaled-attempt: n{node} made {} runs for payout {} but its journal \
                 records {attempts} attempts",
                node_runs.len(),
                id.short()
            ));
        }
        if let Some(job) = job {
            let evidence = &job.evidence;
            let concluded_then_more = evidence
                .iter()
                .take(evidence.len().saturating_sub(1))
                .find(|e| !interrupted(e));
            let concluded_before_attempting = matches!(job.phase, Phase::Attempting { .. })
                && evidence.last().is_some_and(|e| !interrupted(e));
            if let Some(e) = concluded_then_more {
                report.push(format!(
                    "unjournaled-attempt: n{node} attempted payout {} again after attempt {} \
                     concluded ({})",
                    id.short(),
                    e.attempt,
                    e.outcome.as_str()
                ));
            } else if concluded_before_attempting {
                report.push(format!(
                    "unjournaled-attempt: n{node} is attempting payout {} after an attempt \
                     that concluded",
                    id.short()
                ));
            }
        }
    }

    // Outcomes agree with the rail and the payout.
    for (id, payout) in &payouts {
        let Some(outcome) = admitted.get(id).and_then(|o| o.first()) else {
            continue;
        };
        let key = id.to_hex();
        let payment = rail.payment(&key);
        let over_cap = payout.amount.is_some_and(|a| a > RAIL_AMOUNT_MAX);
        let blocked = payout.beneficiary.as_deref() == Some(BENEFICIARY_BLOCKED);
        if outcome.action == PAYOUT_EXECUTED {
            stats.executed += 1;
            if over_cap || blocked {
                report.push(format!(
                    "payout {} ({}) was reported executed but {}",
                    id.short(),
                    payout.subject,
                    if over_cap {
                        "it is over the agents' cap"
                    } else {
                        "the rail declines its beneficiary"
                    }
                ));
            }
            match payment {
                None => report.push(format!(
                    "payout {} ({}) was reported executed (#{}) but the rail never paid it",
                    id.short(),
                    payout.subject,
                    outcome.index
                )),
                Some(payment) if Some(&payment.rail_ref) != outcome.rail_ref.as_ref() => report
                    .push(format!(
                        "payout {} ({}): the ledger records rail_ref {:?}, the rail paid {}",
                        id.short(),
                        payout.subject,
                        outcome.rail_ref,
                        payment.rail_ref
                    )),
                Some(_) => {}
            }
        } else {
            stats.rail_errors += 1;
            if payment.is_some() {
                stats.paid_then_rail_error += 1;
            }
            if blocked && payment.is_some() {
                report.push(format!(
                    "payout {} ({}) to a declined beneficiary was paid",
                    id.short(),
                    payout.subject
                ));
            }
        }
    }
    // A declined answer never comes with money, and a paid key is never declined later.
    for arrival in &rail.arrivals {
        if let (Answer::Declined, Some(key)) = (&arrival.answer, arrival.key.as_deref()) {
            if rail.payment(key).is_some() {
                report.push(format!(
                    "key {} was declined and paid",
                    &key[..key.len().min(16)]
                ));
            }
        }
    }
    (report.violations, stats)
}

#[cfg(test)]
mod tests {
    use docket_core::constitution::DEFAULT_DOCUMENT;
    use docket_core::{dev, LedgerId, LedgerTime, SignedProposal, State};
    use docket_execution::{Conclusion, Evidence, OutcomeKind};

    use super::*;
    use crate::http::Message;

    /// A ledger with a funded, admitted payout, and the outcome-record builder.
    struct Ledger {
        id: LedgerId,
        state: State,
        entries: Vec<LedgerEntry>,
        payout: ProposalId,
        time: u64,
    }

    impl Ledger {
        fn new(beneficiary: &str) -> Ledger {
            let id = LedgerId::new("sim").expect("valid");
            let (state, genesis) =
                State::genesis(id.clone(), DEFAULT_DOCUMENT, LedgerTime(1)).expect("genesis");
            let mut ledger = Ledger {
                id,
                state,
                entries: vec![genesis],
                payout: ProposalId([0; 32]),
                time: 1,
            };
            let deposit = ledger.proposal(
                "alice",
                "SETTLEMENT.DEPOSIT_CONFIRMED",
                Value::map([("amount", Value::Int(100)), ("currency", "EUR".into())]),
                vec![],
            );
            ledger.submit(deposit);
            let payout = ledger.proposal(
                "alice",
                PAYOUT_REQUESTED,
                Value::map([
                    ("amount", Value::Int(40)),
                    ("beneficiary", beneficiary.into()),
                ]),
                vec![],
            );
            ledger.payout = payout.id();
            ledger.submit(payout);
            ledger
        }

        fn proposal(
            &mut self,
            author: &str,
            action: &str,
            payload: Value,
            deps: Vec<ProposalId>,
        ) -> SignedProposal {
            self.time += 1;
            dev::proposal(&self.id, author, action, "stl-1", payload, deps, self.time)
        }

        fn submit(&mut self, proposal: SignedProposal) {
            self.time += 1;
            let submission = self.state.submit(proposal, LedgerTime(self.time));
            self.entries.extend(submission.entries().iter().cloned());
        }

        /// The executor's outcome record, as an agent would build it.
        fn outcome(&mut self, executed: Option<&str>, evidence_hash: &str) {
            let record = self
                .entries
                .iter()
                .filter_map(LedgerEntry::decision_record)
                .find(|r| r.id == self.payout)
                .expect("payout")
                .clone();
            let conclusion = Conclusion {
                outcome: if executed.is_some() {
                    OutcomeKind::Success
                } else {
                    OutcomeKind::Failure
                },
                reason: executed.is_none().then(|| "status 503".to_owned()),
                fields: executed
                    .map(|r| BTreeMap::from([("rail_ref".to_owned(), r.to_owned())]))
                    .unwrap_or_default(),
                evidence_hash: evidence_hash.to_owned(),
            };
            let outcome = docket_execution::outcome::build(
                docket_execution::Reporting::Settlement,
                &self.id,
                &dev::signing_key("exec"),
                &record,
                "rail",
                &conclusion,
            );
            self.submit(outcome);
        }

        fn len(&self) -> u64 {
            self.entries.len() as u64
        }
    }

    fn arrive(rail: &mut Rail, from: NodeId, key: &ProposalId, run: &str, known: u64) {
        let mut headers = BTreeMap::new();
        headers.insert("idempotency-key".to_owned(), key.to_hex());
        headers.insert("docket-attempt".to_owned(), "1".to_owned());
        headers.insert("sim-run".to_owned(), run.to_owned());
        headers.insert("sim-known-ledger-len".to_owned(), known.to_string());
        let body = serde_json::json!({"amount": 40, "subject": "stl-1", "beneficiary": "acme"});
        let request = Message {
            start: "POST /payouts HTTP/1.1".into(),
            headers,
            body: serde_json::to_vec(&body).expect("json"),
        };
        rail.receive(0, Some(from), &request);
    }

    fn evidence(attempt: u32, outcome: OutcomeKind, reason: Option<&str>) -> Evidence {
        Evidence {
            command: PAYOUT_REQUESTED.into(),
            effect: "rail".into(),
            instance: ProposalId([0; 32]),
            attempt,
            ledger_index: LedgerIndex(2),
            term: 1,
            executor: dev::key("exec"),
            inputs_hash: String::new(),
            outputs_hash: None,
            effects: vec![],
            cost: Default::default(),
            outcome,
            reason: reason.map(str::to_owned),
            started_at_ms: 0,
        }
    }

    fn job(id: ProposalId, evidence: Vec<Evidence>) -> Job {
        let mut job = Job::new(id, PAYOUT_REQUESTED, "rail", LedgerIndex(2));
        job.evidence = evidence;
        job
    }

    fn checkers(violations: &[Violation]) -> String {
        violations
            .iter()
            .map(|v| v.detail.clone())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn an_interrupted_attempt_resent_with_the_same_key_is_explained() {
        let mut ledger = Ledger::new("acme");
        let mut rail = Rail::new(1);
        let planned = ledger.len();
        arrive(&mut rail, 1, &ledger.payout, "n1.b1.1", planned);
        // n1 crashed before journaling the answer; n2 leads and sends again.
        arrive(&mut rail, 2, &ledger.payout, "n2.b1.1", planned);
        ledger.outcome(Some("rail-0001"), "aa");
        let journals = BTreeMap::from([
            (
                1,
                vec![{
                    let mut j = job(ledger.payout, vec![]);
                    j.phase = Phase::Attempting {
                        attempt: 1,
                        term: 1,
                    };
                    j
                }],
            ),
            (
                2,
                vec![job(
                    ledger.payout,
                    vec![evidence(1, OutcomeKind::Success, None)],
                )],
            ),
        ]);
        let (violations, stats) = check(&ledger.entries, &rail, &journals);
        assert!(violations.is_empty(), "{}", checkers(&violations));
        assert_eq!(stats.payments, 1);
        assert_eq!(stats.keys_repeated, 1);
        assert_eq!(stats.executed, 1);
    }

    #[test]
    fn a_resend_after_the_outcome_was_applied_is_caught() {
        let mut ledger = Ledger::new("acme");
        let mut rail = Rail::new(1);
        arrive(&mut rail, 1, &ledger.payout, "n1.b1.1", ledger.len());
        ledger.outcome(Some("rail-0001"), "aa");
        // n2 leads later, has applied the outcome, and sends anyway.
        arrive(&mut rail, 2, &ledger.payout, "n2.b1.1", ledger.len());
        let journals = BTreeMap::from([
            (
                1,
                vec![job(
                    ledger.payout,
                    vec![evidence(1, OutcomeKind::Success, None)],
                )],
            ),
            (
                2,
                vec![job(
                    ledger.payout,
                    vec![evidence(1, OutcomeKind::Success, None)],
                )],
            ),
        ]);
        let (violations, _) = check(&ledger.entries, &rail, &journals);
        assert!(
            checkers(&violations).contains("avoidable-resend: n2"),
            "{}",
            checkers(&violations)
        );
    }

    #[test]
    fn runs_the_journal_does_not_account_for_are_caught() {
        let mut ledger = Ledger::new("acme");
        let mut rail = Rail::new(1);
        let planned = ledger.len();
        arrive(&mut rail, 1, &ledger.payout, "n1.b1.1", planned);
        arrive(&mut rail, 1, &ledger.payout, "n1.b2.1", planned);
        ledger.outcome(Some("rail-0001"), "aa");
        let journals = BTreeMap::from([(
            1,
            vec![job(
                ledger.payout,
                vec![evidence(1, OutcomeKind::Success, None)],
            )],
        )]);
        let (violations, _) = check(&ledger.entries, &rail, &journals);
        assert!(
            checkers(&violations).contains("unjournaled-attempt: n1 made 2 runs"),
            "{}",
            checkers(&violations)
        );
        // With the interrupted first attempt journaled, the same runs are explained.
        let journals = BTreeMap::from([(
            1,
            vec![job(
                ledger.payout,
                vec![
                    evidence(1, OutcomeKind::Failure, Some("interrupted: crash")),
                    evidence(2, OutcomeKind::Success, None),
                ],
            )],
        )]);
        let (violations, _) = check(&ledger.entries, &rail, &journals);
        assert!(violations.is_empty(), "{}", checkers(&violations));
        // An attempt after a concluded one is not.
        let journals = BTreeMap::from([(
            1,
            vec![job(
                ledger.payout,
                vec![
                    evidence(1, OutcomeKind::Success, None),
                    evidence(2, OutcomeKind::Success, None),
                ],
            )],
        )]);
        let (violations, _) = check(&ledger.entries, &rail, &journals);
        assert!(
            checkers(&violations).contains("again after attempt 1 concluded"),
            "{}",
            checkers(&violations)
        );
    }

    #[test]
    fn missing_second_and_lying_outcomes_are_caught() {
        let ledger = Ledger::new("acme");
        let rail = Rail::new(1);
        let (violations, _) = check(&ledger.entries, &rail, &BTreeMap::new());
        assert!(checkers(&violations).contains("has 0 admitted outcome records"));

        // Executed, but the rail never paid.
        let mut lying = Ledger::new("acme");
        lying.outcome(Some("rail-0042"), "aa");
        let (violations, _) = check(&lying.entries, &rail, &BTreeMap::new());
        assert!(checkers(&violations).contains("the rail never paid it"));

        // A second conclusion filed later is rejected by the core, and caught here.
        let mut twice = Ledger::new("acme");
        twice.outcome(None, "aa");
        twice.outcome(None, "bb");
        let (violations, stats) = check(&twice.entries, &rail, &BTreeMap::new());
        assert!(
            checkers(&violations).contains("a second outcome record"),
            "{}",
            checkers(&violations)
        );
        assert_eq!(stats.rail_errors, 1);
    }

    #[test]
    fn keys_that_were_never_admitted_are_caught() {
        let mut ledger = Ledger::new("acme");
        let mut rail = Rail::new(1);
        arrive(&mut rail, 1, &ProposalId([9; 32]), "n1.b1.1", 1);
        ledger.outcome(None, "aa");
        let (violations, _) = check(&ledger.entries, &rail, &BTreeMap::new());
        assert!(
            checkers(&violations).contains("is not an admitted payout request"),
            "{}",
            checkers(&violations)
        );
    }
}
