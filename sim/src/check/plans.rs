//! Plan order: a plan is recorded as one command, in the order its set alone decides.
//!
//! For every plan a client submitted ([`History::plans`], members in the order the client
//! printed them), [`docket_core::plan::order`] of that set gives the recording order
//! (waves over the in-plan dependencies, each wave by id). In the agreed ledger the plan
//! is either not recorded at all (every attempt lost) or every member has its own
//! submitted entry, and those entries
//!
//! * come in exactly that order, one run: no other submitted or expired entry between
//!   them (entries released in a wave, which a member's decision may trigger, are the only
//!   others allowed in between);
//! * carry one ledger time (one Raft entry, one time stamped by the leader).
//!
//! And every answer a client got about a member ([`OpResult::Planned`]) names the member's
//! place in the input and its wave as `order` computes them.

use std::collections::BTreeMap;

use docket_core::plan::{self, Placed};
use docket_core::{Cause, LedgerEntry, LedgerIndex, LedgerTime, ProposalId, SignedProposal};

use super::Violation;
use crate::history::{History, OpResult};

const NAME: &str = "plan-order";

/// Violations kept per run.
const VIOLATIONS_MAX: usize = 12;

/// What the run's plans did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Plans submitted.
    pub plans: u64,
    /// Plans in the agreed ledger.
    pub recorded: u64,
    /// Members of recorded plans.
    pub members: u64,
    /// Recorded plans whose members were printed in an order other than the recorded one.
    pub reordered: u64,
}

/// A submitted entry: its place among submitted entries, its index and its time.
#[derive(Clone, Copy, Debug)]
struct Submitted {
    place: usize,
    index: LedgerIndex,
    time: LedgerTime,
}

fn ids(placed: &[Placed]) -> String {
    placed
        .iter()
        .map(|p| p.id.short())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks one plan against the ledger's submitted entries; `None` if it was not recorded.
fn check_plan(
    members: &[SignedProposal],
    submitted: &BTreeMap<ProposalId, Submitted>,
    canonical: &[LedgerEntry],
    violations: &mut Vec<String>,
) -> Option<Vec<Placed>> {
    let expected = match plan::order(members) {
        Ok(expected) => expected,
        Err(e) => {
            violations.push(format!(
                "a client submitted something that is not a plan: {e}"
            ));
            return None;
        }
    };
    let found: Vec<Option<Submitted>> = expected
        .iter()
        .map(|p| submitted.get(&p.id).copied())
        .collect();
    let recorded = found.iter().filter(|f| f.is_some()).count();
    if recorded == 0 {
        return None;
    }
    let first = expected[0].id.short();
    if recorded < expected.len() {
        violations.push(format!(
            "plan {first}: {recorded} of its {} members have a submitted entry",
            expected.len()
        ));
        return Some(expected);
    }
    let found: Vec<Submitted> = found.into_iter().flatten().collect();
    let start = found[0].place;
    let in_order = found.iter().enumerate().all(|(i, f)| f.place == start + i);
    if !in_order {
        let mut recorded: Vec<(usize, &Placed)> =
            found.iter().map(|f| f.place).zip(&expected).collect();
        recorded.sort_by_key(|(place, _)| *place);
        let recorded: Vec<Placed> = recorded.into_iter().map(|(_, p)| *p).collect();
        violations.push(format!(
            "plan {first}: members recorded as [{}] (submitted entries {}..={}), but the plan's \
             order is [{}]",
            ids(&recorded),
            found.iter().map(|f| f.place).min().unwrap_or(0),
            found.iter().map(|f| f.place).max().unwrap_or(0),
            ids(&expected)
        ));
        return Some(expected);
    }
    if let Some(other) = found.iter().find(|f| f.time != found[0].time) {
        violations.push(format!(
            "plan {first}: member at #{} recorded at ledger time {}, the first at {} (not one \
             command)",
            other.index, other.time.0, found[0].time.0
        ));
    }
    let (from, to) = (found[0].index.0, found[found.len() - 1].index.0);
    for entry in canonical
        .iter()
        .skip(usize::try_from(from).unwrap_or(usize::MAX))
        .take_while(|e| e.index.0 <= to)
    {
        if let Some(record) = entry.decision_record() {
            if record.cause == Cause::Expired {
                violations.push(format!(
                    "plan {first}: an expiry (#{}) is recorded between its members",
                    entry.index
                ));
            }
        }
    }
    Some(expected)
}

pub fn check(history: &History, canonical: &[LedgerEntry]) -> (Vec<Violation>, Stats) {
    let mut stats = Stats::default();
    let mut details = Vec::new();
    let mut submitted: BTreeMap<ProposalId, Submitted> = BTreeMap::new();
    for entry in canonical {
        let Some(record) = entry.decision_record() else {
            continue;
        };
        if record.cause == Cause::Submitted {
            let place = submitted.len();
            submitted.insert(
                record.id,
                Submitted {
                    place,
                    index: entry.index,
                    time: entry.time,
                },
            );
        }
    }
    // Each member's place as `order` computes it, for the answers clients got.
    let mut places: BTreeMap<ProposalId, Placed> = BTreeMap::new();
    for members in &history.plans {
        stats.plans += 1;
        if let Some(expected) = check_plan(members, &submitted, canonical, &mut details) {
            stats.recorded += 1;
            stats.members += expected.len() as u64;
            if expected.iter().enumerate().any(|(i, p)| p.input != i) {
                stats.reordered += 1;
            }
            places.extend(expected.into_iter().map(|p| (p.id, p)));
        } else if let Ok(expected) = plan::order(members) {
            places.extend(expected.into_iter().map(|p| (p.id, p)));
        }
    }
    for op in &history.ops {
        let OpResult::Planned(ack) = &op.result else {
            continue;
        };
        match places.get(&ack.id) {
            Some(p) if p.wave == ack.wave && p.input == ack.input => {}
            Some(p) => details.push(format!(
                "client {} was told member {} of a plan is input {} in wave {}; the plan's \
                 order says input {} in wave {}",
                op.client,
                ack.id.short(),
                ack.input,
                ack.wave,
                p.input,
                p.wave
            )),
            None => details.push(format!(
                "client {} was answered about {} as a plan member, but no plan holds it",
                op.client,
                ack.id.short()
            )),
        }
    }
    details.truncate(VIOLATIONS_MAX);
    (
        details
            .into_iter()
            .map(|d| Violation::new(NAME, d))
            .collect(),
        stats,
    )
}

#[cfg(test)]
mod tests {
    use docket_core::{Decision, Value};

    use super::*;
    use crate::check::fixture::CoreLedger as Ledger;
    use crate::history::PlanAck;

    // This checker's plans over the shared fixture (every member alice's).
    impl Ledger {
        fn proposal(
            &mut self,
            action: &str,
            subject: &str,
            payload: Value,
            deps: Vec<ProposalId>,
        ) -> SignedProposal {
            self.sign("alice", action, subject, payload, deps)
        }

        fn deposit(&mut self, subject: &str, deps: Vec<ProposalId>) -> SignedProposal {
            self.proposal(
                "SETTLEMENT.DEPOSIT_CONFIRMED",
                subject,
                Value::map([("amount", Value::Int(100)), ("currency", "EUR".into())]),
                deps,
            )
        }

        /// Records proposals as one command would: in the order given, at one time.
        fn record(&mut self, proposals: &[SignedProposal], time: u64) {
            for proposal in proposals {
                self.submit(proposal.clone(), time);
            }
        }
    }

    /// A plan: two funded payouts and a dependent on each one's outcome, printed in an
    /// order that is not its recording order.
    fn plan(ledger: &mut Ledger) -> Vec<SignedProposal> {
        let mut members = Vec::new();
        for subject in ["stl-1", "stl-2"] {
            let deposit = ledger.deposit(subject, vec![]);
            let payout = ledger.proposal(
                "SETTLEMENT.PAYOUT_REQUESTED",
                subject,
                Value::map([("amount", Value::Int(40)), ("beneficiary", "acme".into())]),
                vec![deposit.id()],
            );
            let after = ledger.deposit(
                &format!("{subject}-after"),
                vec![payout.id(), payout.id().outcome_of()],
            );
            members.extend([after, payout, deposit]);
        }
        let placed = plan::order(&members).expect("a plan");
        assert!(
            placed.iter().enumerate().any(|(i, p)| p.input != i),
            "the printed order differs from the recording order"
        );
        members
    }

    fn history(plans: Vec<Vec<SignedProposal>>) -> History {
        History {
            plans,
            ..History::default()
        }
    }

    fn details(violations: &[Violation]) -> String {
        violations
            .iter()
            .map(|v| v.detail.clone())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn a_plan_recorded_in_its_order_passes() {
        let mut ledger = Ledger::new();
        let members = plan(&mut ledger);
        let before = ledger.deposit("hot", vec![]);
        let after = ledger.deposit("hot", vec![]);
        let (arranged, _) = plan::arrange(members.clone()).expect("a plan");
        ledger.record(&[before], 2);
        ledger.record(&arranged, 3);
        ledger.record(&[after], 4);
        let lost = plan(&mut ledger);
        let (violations, stats) = check(&history(vec![members, lost]), &ledger.entries);
        assert!(violations.is_empty(), "{}", details(&violations));
        assert_eq!(
            stats,
            Stats {
                plans: 2,
                recorded: 1,
                members: 6,
                reordered: 1,
            }
        );
    }

    #[test]
    fn a_plan_recorded_as_printed_is_caught() {
        let mut ledger = Ledger::new();
        let members = plan(&mut ledger);
        // The deliberately wrong order: as the client printed it (each dependent before the
        // payout it waits on, which the core defers and releases; the order is not the
        // plan's).
        ledger.record(&members, 2);
        let (violations, _) = check(&history(vec![members]), &ledger.entries);
        assert!(
            details(&violations).contains("but the plan's order is"),
            "{}",
            details(&violations)
        );
    }

    #[test]
    fn a_plan_split_by_another_submission_or_across_commands_is_caught() {
        let mut ledger = Ledger::new();
        let members = plan(&mut ledger);
        let other = ledger.deposit("hot", vec![]);
        let (arranged, _) = plan::arrange(members.clone()).expect("a plan");
        ledger.record(&arranged[..2], 2);
        ledger.record(&[other], 2);
        ledger.record(&arranged[2..], 2);
        let (violations, _) = check(&history(vec![members.clone()]), &ledger.entries);
        assert!(
            details(&violations).contains("but the plan's order is"),
            "{}",
            details(&violations)
        );

        let mut ledger = Ledger::new();
        let members = plan(&mut ledger);
        let (arranged, _) = plan::arrange(members.clone()).expect("a plan");
        ledger.record(&arranged[..3], 2);
        ledger.record(&arranged[3..], 3);
        let (violations, _) = check(&history(vec![members]), &ledger.entries);
        assert!(
            details(&violations).contains("(not one command)"),
            "{}",
            details(&violations)
        );
    }

    #[test]
    fn an_answer_with_the_wrong_wave_is_caught() {
        let mut ledger = Ledger::new();
        let members = plan(&mut ledger);
        let (arranged, placed) = plan::arrange(members.clone()).expect("a plan");
        ledger.record(&arranged, 2);
        let mut history = history(vec![members]);
        for (i, place) in placed.iter().enumerate() {
            let op = history.invoke(
                0,
                1,
                crate::history::OpKind::Read {
                    domain: String::new(),
                    subject: String::new(),
                },
                0,
            );
            let ack = PlanAck {
                id: place.id,
                input: place.input,
                // The last member is told it is in wave 0.
                wave: if i + 1 == placed.len() { 0 } else { place.wave },
                index: LedgerIndex(1 + i as u64),
                duplicate: false,
                decision: Decision::Admit,
            };
            history.complete(op, OpResult::Planned(ack), 1);
        }
        let (violations, _) = check(&history, &ledger.entries);
        assert_eq!(violations.len(), 1, "{}", details(&violations));
        assert!(details(&violations).contains("in wave 0; the plan's order says"));
    }
}
