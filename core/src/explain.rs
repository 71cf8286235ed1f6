//! Explanations: why the ledger decided what it did about a proposal.
//!
//! [`explain`] reads one recorded decision (an entry holding a [`DecisionRecord`]) against
//! the state as it is now and answers, as data that serializes to the API's JSON:
//!
//! * for a rejection: the step of the fixed check order that failed
//!   ([`crate::adjudicate::Step`]), the code, the rule consulted (the access decision's
//!   rule and, for steps 8 and 9, the named invariant or update with its description), the
//!   recorded detail, and the data the rule read: the payload fields it declares in
//!   `reads()` with their values, or for a dependency code the dependencies with their
//!   status now;
//! * for a deferral: the dependency tree, each dependency with its status now (a deferred
//!   one with its own dependencies, recursively, within [`DEPENDENCY_DEPTH_MAX`] levels and
//!   [`DEPENDENCY_NODES_MAX`] nodes), and the ledger time the deferral expires;
//! * for an admission: the entry, the principal, the role and the rule.
//!
//! Pure, like the rest of the core: nothing is re-adjudicated. The step is read back from
//! what was recorded (the code, the access decision, and the detail's rule name); the
//! property tests check it against [`crate::adjudicate::adjudicate_traced`] on every
//! decision of random ledgers.
//!
//! An outcome reference ([`ProposalId::outcome_of`]) is a hash, so it cannot be turned back
//! into the proposal whose effect it names. A dependency is shown as "outcome of X" when X
//! is known: from the outcome recorded under the reference, or because the same proposal
//! also lists X, in which case the reference is listed right after X.

use serde::{Deserialize, Serialize};

use crate::adjudicate::{NamedRule, Step, ADOPTED_DOCUMENT_INVALID};
use crate::code::RejectCode;
use crate::constitution::rules::{AMENDED_DOCUMENT_INVALID, AMENDMENT_PARENT, AMENDMENT_STALE};
use crate::constitution::{FieldType, InvariantName, UpdateName};
use crate::decision::{AccessDecision, AccessVerdict, Decision, Rejection};
use crate::id::{LedgerIndex, LedgerTime, ProposalId};
use crate::ledger::{Cause, DecisionRecord, LedgerEntry};
use crate::proposal::Proposal;
use crate::state::{OutcomeRecord, ProposalStatus, State};
use crate::value::Value;

/// Levels of a dependency tree below the explained proposal. Each level is a chain of
/// deferrals; eight is far past any a person reads, and bounds the walk.
pub const DEPENDENCY_DEPTH_MAX: usize = 8;

/// Nodes in one dependency tree. A proposal lists at most `dependencies_max` (ceiling 256)
/// dependencies; 256 nodes show the first level of any proposal whole and bound the state
/// lookups one explanation costs.
pub const DEPENDENCY_NODES_MAX: usize = 256;

const _: () = assert!(
    DEPENDENCY_NODES_MAX >= crate::constitution::ceilings::DEPENDENCIES_MAX as usize,
    "the first level of a dependency tree is always shown whole"
);

/// Why a proposal stands where it does, read from one recorded decision.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Explanation {
    pub id: ProposalId,
    /// The entry explained.
    pub index: LedgerIndex,
    /// Its ledger time.
    pub time: LedgerTime,
    pub cause: Cause,
    /// The access decision recorded with it.
    pub access: AccessDecision,
    pub why: Why,
}

/// The explanation proper, by decision.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Why {
    Admitted(Admitted),
    Rejected(Rejected),
    Deferred(Deferred),
}

/// An admission: where, by whom, under which rule.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Admitted {
    pub index: LedgerIndex,
    pub principal: Option<String>,
    pub role: Option<String>,
    /// The authorization rule, e.g. `settlement/SETTLEMENT.PAYOUT_REQUESTED roles=[treasurer]`.
    pub rule: String,
    /// The outcome of its effect, once an outcome record reported it (what outcome
    /// dependencies on it resolve to).
    pub outcome: Option<OutcomeRecord>,
}

/// A rejection: the failed check, the rule, and what it read.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Rejected {
    /// The step of the fixed check order that failed.
    pub step: Step,
    pub code: RejectCode,
    /// What the code means, from the code table.
    pub code_description: String,
    /// The access decision's rule (`limits`, `schema`, `deferral_expiry_ms`, or the
    /// authorization rule of the action).
    pub rule: String,
    /// The named invariant (step 8) or update (step 9) that rejected.
    pub named_rule: Option<RuleRef>,
    pub detail: String,
    /// Payload fields the rule reads, with their values in the proposal (`null` when the
    /// payload lacks the field).
    pub reads: Vec<FieldRead>,
    /// For a dependency code (and `LIMIT_EXCEEDED` on a full deferred set): the proposal's
    /// dependencies and their status now.
    pub dependencies: Vec<DependencyNode>,
    /// Dependencies left out of `dependencies` by the bounds.
    pub dependencies_omitted: u64,
}

/// A deferral: what it waits on, and when it expires.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Deferred {
    /// The dependencies it was deferred on, with their status now.
    pub waiting_on: Vec<DependencyNode>,
    /// Dependencies left out of `waiting_on` by the bounds.
    pub waiting_on_omitted: u64,
    /// The ledger time at which the deferral expires (`DEPENDENCY_EXPIRED`); `None` when the
    /// state no longer holds the proposal deferred (the entry explained is not its current
    /// decision).
    pub expires_at: Option<LedgerTime>,
}

/// A named invariant or update of the constitution.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct RuleRef {
    /// `invariant` or `update`.
    pub kind: String,
    pub name: String,
    pub description: String,
}

impl From<NamedRule> for RuleRef {
    fn from(rule: NamedRule) -> RuleRef {
        let (kind, name, description) = match rule {
            NamedRule::Invariant(i) => ("invariant", i.name(), i.description()),
            NamedRule::Update(u) => ("update", u.name(), u.description()),
        };
        RuleRef {
            kind: kind.to_owned(),
            name: name.to_owned(),
            description: description.to_owned(),
        }
    }
}

/// One payload field a rule read.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct FieldRead {
    pub field: String,
    /// The type the rule needs it to have.
    #[serde(rename = "type")]
    pub field_type: FieldType,
    pub value: Option<Value>,
}

/// Where one dependency stands now.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DependencyStatus {
    Admitted,
    Rejected,
    Deferred,
    /// An outcome reference whose effect was reported a success (met).
    OutcomeSucceeded,
    /// An outcome reference whose effect was reported failed (`DEPENDENCY_FAILED`).
    OutcomeFailed,
    /// An outcome reference of a known proposal whose outcome is not reported yet.
    OutcomePending,
    /// Nothing is recorded under the id: a proposal not filed yet, or the outcome reference
    /// of an effect not reported yet whose proposal is not known here.
    NotRecorded,
}

impl DependencyStatus {
    pub fn name(self) -> &'static str {
        match self {
            DependencyStatus::Admitted => "admitted",
            DependencyStatus::Rejected => "rejected",
            DependencyStatus::Deferred => "deferred",
            DependencyStatus::OutcomeSucceeded => "outcome succeeded",
            DependencyStatus::OutcomeFailed => "outcome failed",
            DependencyStatus::OutcomePending => "outcome pending",
            DependencyStatus::NotRecorded => "not recorded",
        }
    }
}

/// A node of a dependency tree.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct DependencyNode {
    pub id: ProposalId,
    pub status: DependencyStatus,
    /// For an outcome reference: the proposal whose effect it names, when known.
    pub outcome_of: Option<ProposalId>,
    /// The entry holding its status: a proposal's current decision, or the admission of the
    /// outcome record that settled an outcome reference.
    pub index: Option<LedgerIndex>,
    /// For a deferred dependency: when its own deferral expires.
    pub expires_at: Option<LedgerTime>,
    /// For a deferred dependency: what it waits on, recursively.
    pub dependencies: Vec<DependencyNode>,
    /// Its dependencies left out by the bounds (depth or node count), or because the same
    /// proposal is expanded elsewhere in the tree.
    pub omitted: u64,
}

/// Explains the decision recorded in `entry`, against `state` (the dependencies' status is
/// read from it). `None` for the genesis entry.
pub fn explain(state: &State, entry: &LedgerEntry) -> Option<Explanation> {
    let record = entry.decision_record()?;
    let why = match &record.decision {
        Decision::Admit => Why::Admitted(Admitted {
            index: entry.index,
            principal: record.access.principal.clone(),
            role: record.access.role.clone(),
            rule: record.access.rule.clone(),
            outcome: state.outcome(&record.id.outcome_of()),
        }),
        Decision::Reject(rejection) => Why::Rejected(rejected(state, entry, record, rejection)),
        Decision::Defer { waiting_on } => {
            let mut tree = Tree::new(state);
            let (nodes, omitted) = tree.level(waiting_on, 1);
            Why::Deferred(Deferred {
                waiting_on: nodes,
                waiting_on_omitted: omitted,
                expires_at: state.deferred().get(&record.id).map(|d| d.expires_at),
            })
        }
    };
    Some(Explanation {
        id: record.id,
        index: entry.index,
        time: entry.time,
        cause: record.cause,
        access: record.access.clone(),
        why,
    })
}

/// The step and named rule a recorded rejection came from, read back from its code, its
/// access decision and its detail.
pub fn step_of(access: &AccessDecision, rejection: &Rejection) -> (Step, Option<NamedRule>) {
    let evaluated = access.verdict != AccessVerdict::NotEvaluated;
    let step = |s: Step| (s, None);
    match rejection.code {
        RejectCode::WrongLedger | RejectCode::BadSignature => step(Step::Identity),
        // Before authorization: a limit of step 2; after it: the deferred set is full.
        RejectCode::LimitExceeded if evaluated => step(Step::Dependencies),
        RejectCode::LimitExceeded => step(Step::Limits),
        // Before authorization: dependency order or subject characters (step 2).
        RejectCode::Schema if evaluated => step(Step::Schema),
        RejectCode::Schema => step(Step::Limits),
        RejectCode::UnknownDomain | RejectCode::UnknownAction => step(Step::Target),
        RejectCode::Unauthorized => step(Step::Authorization),
        RejectCode::DependencyRejected
        | RejectCode::DependencyFailed
        | RejectCode::DependencyExpired => step(Step::Dependencies),
        RejectCode::InvalidTransition | RejectCode::AlreadyApproved => step(Step::Lifecycle),
        RejectCode::Invariant => {
            // `<invariant>: ...` from step 8, `<update>: ...` from step 9.
            let name = rejection.detail.split(": ").next().unwrap_or_default();
            if let Some(invariant) = InvariantName::from_name(name) {
                (Step::Invariants, Some(NamedRule::Invariant(invariant)))
            } else if let Some(update) = UpdateName::from_name(name) {
                (Step::DryRun, Some(NamedRule::Update(update)))
            } else {
                step(Step::Invariants)
            }
        }
        RejectCode::Constitution => {
            let detail = rejection.detail.as_str();
            if detail.starts_with(ADOPTED_DOCUMENT_INVALID) {
                (
                    Step::DryRun,
                    Some(NamedRule::Update(UpdateName::AdoptConstitution)),
                )
            } else if detail.starts_with(AMENDMENT_STALE) {
                (
                    Step::Invariants,
                    Some(NamedRule::Invariant(InvariantName::AmendmentCurrent)),
                )
            } else if detail.starts_with(AMENDMENT_PARENT)
                || detail.starts_with(AMENDED_DOCUMENT_INVALID)
            {
                (
                    Step::Invariants,
                    Some(NamedRule::Invariant(InvariantName::AmendmentValid)),
                )
            } else {
                step(Step::Invariants)
            }
        }
    }
}

fn rejected(
    state: &State,
    entry: &LedgerEntry,
    record: &DecisionRecord,
    rejection: &Rejection,
) -> Rejected {
    let p = &record.proposal.proposal;
    let (step, named_rule) = step_of(&record.access, rejection);
    let reads = match (step, named_rule) {
        (_, Some(NamedRule::Invariant(i))) => field_reads(p, i.reads()),
        (_, Some(NamedRule::Update(u))) => field_reads(p, u.reads()),
        // The schema step reads the fields the action requires: known when the constitution
        // that judged the entry is still the active one.
        (Step::Schema, None) if entry.constitution == state.constitution_version() => {
            match state.constitution().action(&p.domain, &p.action) {
                Some(action) => {
                    let requires: Vec<(&str, FieldType)> = action
                        .requires
                        .iter()
                        .map(|(field, ty)| (field.as_str(), *ty))
                        .collect();
                    field_reads(p, &requires)
                }
                None => Vec::new(),
            }
        }
        _ => Vec::new(),
    };
    let (dependencies, dependencies_omitted) = if step == Step::Dependencies {
        Tree::new(state).level(&p.dependencies, 1)
    } else {
        (Vec::new(), 0)
    };
    Rejected {
        step,
        code: rejection.code,
        code_description: rejection.code.description().to_owned(),
        rule: record.access.rule.clone(),
        named_rule: named_rule.map(RuleRef::from),
        detail: rejection.detail.clone(),
        reads,
        dependencies,
        dependencies_omitted,
    }
}

fn field_reads(p: &Proposal, fields: &[(&str, FieldType)]) -> Vec<FieldRead> {
    fields
        .iter()
        .map(|(field, ty)| FieldRead {
            field: (*field).to_owned(),
            field_type: *ty,
            value: p.payload.get(field).cloned(),
        })
        .collect()
}

/// Builds a dependency tree within the bounds.
struct Tree<'a> {
    state: &'a State,
    nodes: usize,
    /// Deferred proposals already expanded (a dependency shared by several branches is
    /// expanded once).
    expanded: std::collections::BTreeSet<ProposalId>,
}

impl<'a> Tree<'a> {
    fn new(state: &'a State) -> Tree<'a> {
        Tree {
            state,
            nodes: 0,
            expanded: std::collections::BTreeSet::new(),
        }
    }

    /// The nodes for `deps` at `depth` (1 is the explained proposal's own dependencies),
    /// and how many were left out. A paired outcome reference follows its proposal.
    fn level(&mut self, deps: &[ProposalId], depth: usize) -> (Vec<DependencyNode>, u64) {
        let mut nodes = Vec::new();
        let mut omitted = 0u64;
        // A list holds at most `dependencies_max` ids (ceiling 256): quadratic is fine.
        let paired: Vec<ProposalId> = deps
            .iter()
            .map(ProposalId::outcome_of)
            .filter(|reference| deps.contains(reference))
            .collect();
        let mut order: Vec<(ProposalId, Option<ProposalId>)> = Vec::with_capacity(deps.len());
        for dep in deps {
            if paired.contains(dep) {
                continue;
            }
            order.push((*dep, None));
            let reference = dep.outcome_of();
            if paired.contains(&reference) {
                order.push((reference, Some(*dep)));
            }
        }
        for (dep, sibling) in order {
            if self.nodes >= DEPENDENCY_NODES_MAX {
                omitted += 1;
                continue;
            }
            self.nodes += 1;
            nodes.push(self.node(dep, sibling, depth));
        }
        (nodes, omitted)
    }

    fn node(
        &mut self,
        id: ProposalId,
        sibling: Option<ProposalId>,
        depth: usize,
    ) -> DependencyNode {
        let state = self.state;
        let mut node = DependencyNode {
            id,
            status: DependencyStatus::NotRecorded,
            outcome_of: None,
            index: None,
            expires_at: None,
            dependencies: Vec::new(),
            omitted: 0,
        };
        if let Some(record) = state.proposal(&id) {
            node.index = Some(record.index);
            node.status = match record.status {
                ProposalStatus::Admitted => DependencyStatus::Admitted,
                ProposalStatus::Rejected => DependencyStatus::Rejected,
                ProposalStatus::Deferred => DependencyStatus::Deferred,
            };
            if let Some(deferred) = state.deferred().get(&id) {
                node.expires_at = Some(deferred.expires_at);
                if depth >= DEPENDENCY_DEPTH_MAX || !self.expanded.insert(id) {
                    node.omitted = deferred.waiting_on.len() as u64;
                } else {
                    let (children, omitted) = self.level(&deferred.waiting_on, depth + 1);
                    node.dependencies = children;
                    node.omitted = omitted;
                }
            }
        } else if let Some(outcome) = state.outcome(&id) {
            node.outcome_of = Some(outcome.reports_on);
            node.index = Some(outcome.index);
            node.status = if outcome.succeeded {
                DependencyStatus::OutcomeSucceeded
            } else {
                DependencyStatus::OutcomeFailed
            };
        } else if let Some(of) = sibling {
            node.outcome_of = Some(of);
            node.status = DependencyStatus::OutcomePending;
        }
        node
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constitution::DEFAULT_DOCUMENT;
    use crate::dev::Proposer;
    use crate::{LedgerId, SignedProposal, Submission};

    const T0: u64 = 1_000_000;

    fn setup() -> (State, Proposer) {
        let ledger = LedgerId::new("explain").expect("valid");
        let (state, _) =
            State::genesis(ledger.clone(), DEFAULT_DOCUMENT, LedgerTime(T0)).expect("genesis");
        (state, Proposer::new(ledger, 0))
    }

    /// Submits and explains the proposal's own entry.
    fn file(state: &mut State, signed: SignedProposal, at: u64) -> Explanation {
        let id = signed.id();
        let submission = state.submit(signed, LedgerTime(at));
        let entry = submission.own_entry(&id).expect("recorded").clone();
        assert!(matches!(submission, Submission::Recorded(_)));
        explain(state, &entry).expect("a decision")
    }

    fn deposit(p: &mut Proposer, subject: &str, amount: i64) -> SignedProposal {
        p.make(
            "alice",
            "SETTLEMENT.DEPOSIT_CONFIRMED",
            subject,
            Value::map([("amount", Value::Int(amount)), ("currency", "EUR".into())]),
            vec![],
        )
    }

    fn payout(
        p: &mut Proposer,
        subject: &str,
        amount: i64,
        deps: Vec<ProposalId>,
    ) -> SignedProposal {
        p.make(
            "alice",
            "SETTLEMENT.PAYOUT_REQUESTED",
            subject,
            Value::map([("amount", Value::Int(amount)), ("beneficiary", "b".into())]),
            deps,
        )
    }

    #[test]
    fn an_overdraft_names_step_8_the_invariant_and_the_amount_it_read() {
        let (mut state, mut p) = setup();
        let admitted = file(&mut state, deposit(&mut p, "stl-1", 100), T0 + 1);
        let Why::Admitted(admission) = &admitted.why else {
            panic!("admitted: {admitted:?}")
        };
        assert_eq!(admission.index, LedgerIndex(1));
        assert_eq!(admission.role.as_deref(), Some("treasurer"));
        assert!(admission
            .rule
            .starts_with("settlement/SETTLEMENT.DEPOSIT_CONFIRMED"));

        let explained = file(&mut state, payout(&mut p, "stl-1", 500, vec![]), T0 + 2);
        let Why::Rejected(r) = &explained.why else {
            panic!("rejected: {explained:?}")
        };
        assert_eq!((r.step, r.step.number()), (Step::Invariants, 8));
        assert_eq!(r.code, RejectCode::Invariant);
        let rule = r.named_rule.as_ref().expect("a named rule");
        assert_eq!(
            (rule.kind.as_str(), rule.name.as_str()),
            ("invariant", "payout_within_balance")
        );
        assert_eq!(
            rule.description,
            InvariantName::PayoutWithinBalance.description()
        );
        assert_eq!(
            r.reads,
            vec![FieldRead {
                field: "amount".into(),
                field_type: FieldType::Int,
                value: Some(Value::Int(500)),
            }]
        );
        assert!(
            r.rule.starts_with("settlement/SETTLEMENT.PAYOUT_REQUESTED"),
            "{}",
            r.rule
        );

        let json = serde_json::to_value(&explained).expect("serializes");
        assert_eq!(json["why"]["decision"], "rejected");
        assert_eq!(json["why"]["step"]["number"], 8);
        assert_eq!(json["why"]["step"]["name"], "invariants");
        let back: Explanation = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back, explained);
    }

    #[test]
    fn a_deferral_shows_its_tree_pairs_outcome_references_and_expires() {
        let (mut state, mut p) = setup();
        let later = deposit(&mut p, "stl-2", 50);
        let inner = payout(&mut p, "stl-2", 10, vec![later.id()]);
        let explained_inner = file(&mut state, inner.clone(), T0 + 1);
        assert!(matches!(explained_inner.why, Why::Deferred(_)));
        // Waits on `inner` (deferred on `later`), on `later`'s outcome and on `later` itself.
        let outer = payout(
            &mut p,
            "stl-3",
            1,
            vec![inner.id(), later.id(), later.id().outcome_of()],
        );
        let explained = file(&mut state, outer.clone(), T0 + 2);
        let Why::Deferred(d) = &explained.why else {
            panic!("deferred: {explained:?}")
        };
        let expiry = state.constitution().limits.deferral_expiry_ms;
        assert_eq!(d.expires_at, Some(LedgerTime(T0 + 2 + expiry)));
        let by_id = |id: ProposalId| {
            d.waiting_on
                .iter()
                .position(|n| n.id == id)
                .expect("listed")
        };
        let inner_node = &d.waiting_on[by_id(inner.id())];
        assert_eq!(inner_node.status, DependencyStatus::Deferred);
        assert_eq!(inner_node.expires_at, Some(LedgerTime(T0 + 1 + expiry)));
        assert_eq!(inner_node.dependencies.len(), 1);
        assert_eq!(inner_node.dependencies[0].id, later.id());
        assert_eq!(
            inner_node.dependencies[0].status,
            DependencyStatus::NotRecorded
        );
        let reference = by_id(later.id().outcome_of());
        assert_eq!(
            reference,
            by_id(later.id()) + 1,
            "the reference follows its proposal"
        );
        assert_eq!(d.waiting_on[reference].outcome_of, Some(later.id()));
        assert_eq!(
            d.waiting_on[reference].status,
            DependencyStatus::OutcomePending
        );

        // `later` is admitted: `inner` is released; `outer` still waits on the outcome.
        let submission = state.submit(later.clone(), LedgerTime(T0 + 3));
        assert_eq!(submission.entries().len(), 2, "later, then inner released");
        let index = state.proposal(&outer.id()).expect("recorded").index;
        assert_eq!(
            state.proposal_status(&outer.id()),
            Some(ProposalStatus::Deferred)
        );
        let entry = LedgerEntry::seal(
            index,
            explained.time,
            state.constitution_version(),
            crate::EntryHash::ZERO,
            crate::Record::Decision(Box::new(DecisionRecord {
                id: outer.id(),
                proposal: outer,
                cause: Cause::Submitted,
                decision: Decision::Defer {
                    waiting_on: later_and_inner(&inner, &later),
                },
                access: explained.access.clone(),
            })),
        );
        let again = explain(&state, &entry).expect("a decision");
        let Why::Deferred(d) = &again.why else {
            panic!("deferred: {again:?}")
        };
        let status = |id: ProposalId| d.waiting_on.iter().find(|n| n.id == id).map(|n| n.status);
        assert_eq!(status(later.id()), Some(DependencyStatus::Admitted));
        assert_eq!(status(inner.id()), Some(DependencyStatus::Admitted));
        assert_eq!(
            status(later.id().outcome_of()),
            Some(DependencyStatus::OutcomePending)
        );
    }

    fn later_and_inner(inner: &SignedProposal, later: &SignedProposal) -> Vec<ProposalId> {
        let mut ids = vec![inner.id(), later.id(), later.id().outcome_of()];
        ids.sort_unstable();
        ids
    }

    #[test]
    fn an_admission_shows_the_reported_outcome_of_its_effect() {
        let (mut state, mut p) = setup();
        file(&mut state, deposit(&mut p, "stl-5", 100), T0 + 1);
        let request = payout(&mut p, "stl-5", 40, vec![]);
        let explained = file(&mut state, request.clone(), T0 + 2);
        let Why::Admitted(before) = &explained.why else {
            panic!("admitted: {explained:?}")
        };
        assert_eq!(before.outcome, None, "not reported yet");
        let report = p.make(
            "exec",
            "SETTLEMENT.PAYOUT_EXECUTED",
            "stl-5",
            Value::map([
                ("reports_on", request.id().to_hex().into()),
                ("rail_ref", "r-1".into()),
            ]),
            vec![request.id()],
        );
        let reported = file(&mut state, report.clone(), T0 + 3);
        assert!(matches!(reported.why, Why::Admitted(_)), "{reported:?}");
        let entry_index = state.proposal(&request.id()).expect("recorded").index;
        let entry = LedgerEntry::seal(
            entry_index,
            explained.time,
            state.constitution_version(),
            crate::EntryHash::ZERO,
            crate::Record::Decision(Box::new(DecisionRecord {
                id: request.id(),
                proposal: request,
                cause: Cause::Submitted,
                decision: Decision::Admit,
                access: explained.access.clone(),
            })),
        );
        let again = explain(&state, &entry).expect("a decision");
        let Why::Admitted(after) = &again.why else {
            panic!("admitted: {again:?}")
        };
        let outcome = after.outcome.expect("reported");
        assert!(outcome.succeeded);
        assert_eq!(outcome.report, report.id());
    }

    #[test]
    fn dependency_codes_list_the_dependencies_with_their_status() {
        let (mut state, mut p) = setup();
        let bad = deposit(&mut p, "stl-4", -1);
        let rejected_dep = file(&mut state, bad.clone(), T0 + 1);
        assert!(matches!(rejected_dep.why, Why::Rejected(_)));
        let explained = file(
            &mut state,
            payout(&mut p, "stl-4", 1, vec![bad.id()]),
            T0 + 2,
        );
        let Why::Rejected(r) = &explained.why else {
            panic!("rejected: {explained:?}")
        };
        assert_eq!(
            (r.step, r.code),
            (Step::Dependencies, RejectCode::DependencyRejected)
        );
        assert_eq!(r.dependencies.len(), 1);
        assert_eq!(r.dependencies[0].status, DependencyStatus::Rejected);
        assert_eq!(r.dependencies[0].index, Some(LedgerIndex(1)));
    }

    #[test]
    fn constitution_details_map_back_to_their_invariant_or_update() {
        let access = AccessDecision {
            key: crate::dev::key("grace"),
            principal: None,
            role: None,
            rule: "r".into(),
            verdict: AccessVerdict::Allow,
        };
        let cases = [
            (
                format!("{AMENDMENT_PARENT} x is not"),
                Step::Invariants,
                Some(NamedRule::Invariant(InvariantName::AmendmentValid)),
            ),
            (
                format!("{AMENDED_DOCUMENT_INVALID}: x"),
                Step::Invariants,
                Some(NamedRule::Invariant(InvariantName::AmendmentValid)),
            ),
            (
                format!("{AMENDMENT_STALE}: x"),
                Step::Invariants,
                Some(NamedRule::Invariant(InvariantName::AmendmentCurrent)),
            ),
            (
                format!("{ADOPTED_DOCUMENT_INVALID}: x"),
                Step::DryRun,
                Some(NamedRule::Update(UpdateName::AdoptConstitution)),
            ),
        ];
        for (detail, step, rule) in cases {
            let rejection = Rejection::new(RejectCode::Constitution, detail);
            assert_eq!(step_of(&access, &rejection), (step, rule));
        }
        let overflow = Rejection::new(
            RejectCode::Invariant,
            "credit_balance: balance would overflow",
        );
        assert_eq!(
            step_of(&access, &overflow),
            (
                Step::DryRun,
                Some(NamedRule::Update(UpdateName::CreditBalance))
            )
        );
        // The two name tables never share a name, so a detail's prefix says which it is.
        for i in InvariantName::ALL {
            assert!(UpdateName::from_name(i.name()).is_none(), "{i}");
        }
    }

    #[test]
    fn steps_number_one_to_ten_and_every_code_has_a_step() {
        for (i, step) in Step::ALL.iter().enumerate() {
            assert_eq!(usize::from(step.number()), i + 1);
            assert_eq!(Step::from_number(step.number()), Some(*step));
        }
        for code in RejectCode::ALL {
            assert!(!Step::of_code(*code).is_empty(), "{code}");
        }
    }
}
