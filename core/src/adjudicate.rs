//! Adjudication: a pure function of state, proposal and ledger time.
//!
//! Checks run in a fixed order and the first failure decides; the order is part of the
//! contract, because it decides which code a proposal with several faults is given:
//!
//! 1. ledger id (`WRONG_LEDGER`), signature (`BAD_SIGNATURE`);
//! 2. limits: subject bytes, dependency count, payload bytes and depth (`LIMIT_EXCEEDED`);
//!    dependencies sorted and unique, subject free of control characters (`SCHEMA`);
//! 3. domain (`UNKNOWN_DOMAIN`), action (`UNKNOWN_ACTION`);
//! 4. authorization (`UNAUTHORIZED`) — the access decision is recorded from here on;
//! 5. payload schema (`SCHEMA`);
//! 6. dependencies, in listed order: a rejected proposal (`DEPENDENCY_REJECTED`), an
//!    outcome reference whose effect failed (`DEPENDENCY_FAILED`), any undecided (`Defer`,
//!    or `LIMIT_EXCEEDED` when the deferred set is full);
//! 7. lifecycle transition (`INVALID_TRANSITION`), distinct approval (`ALREADY_APPROVED`);
//! 8. invariants in declared order (`INVARIANT`, or `CONSTITUTION` for amendments);
//! 9. a dry run of the action's updates on a copy of the subject (`INVARIANT` if one
//!    cannot apply, `CONSTITUTION` if an adopted document does not parse);
//! 10. `Admit`.
//!
//! [`Step`] names these steps; [`adjudicate_traced`] also answers which step decided (for
//! [`crate::explain`](mod@crate::explain)'s tests, which check that an explanation read back from the record
//! names the step that really decided).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::code::RejectCode;
use crate::constitution::rules::{RuleContext, StateEffect};
use crate::constitution::{Action, Constitution, FieldType};
use crate::constitution::{InvariantName, UpdateName};
use crate::decision::{AccessDecision, AccessVerdict, Decision, Rejection, Verdict};
use crate::id::{decode_hex, LedgerTime, ProposalId};
use crate::proposal::{Proposal, SignedProposal};
use crate::signature::{SignatureCheck, Strict};
use crate::state::{Dependency, State, SubjectState};
use crate::value::{Value, VALUE_DEPTH_MAX};

/// A step of the fixed check order (see the module documentation).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(into = "StepJson", try_from = "StepJson")]
pub enum Step {
    /// 1. Ledger id and signature.
    Identity,
    /// 2. Limits, dependency normal form, subject characters.
    Limits,
    /// 3. Domain and action.
    Target,
    /// 4. The authorization matrix: the access decision.
    Authorization,
    /// 5. The payload's required fields and their types.
    Schema,
    /// 6. Dependencies (and, recorded by the engine, the expiry of a deferral).
    Dependencies,
    /// 7. The subject's lifecycle state and distinct approvals.
    Lifecycle,
    /// 8. The action's invariants, in declared order.
    Invariants,
    /// 9. A dry run of the action's updates.
    DryRun,
    /// 10. Admitted.
    Admit,
}

impl Step {
    pub const ALL: &'static [Step] = &[
        Step::Identity,
        Step::Limits,
        Step::Target,
        Step::Authorization,
        Step::Schema,
        Step::Dependencies,
        Step::Lifecycle,
        Step::Invariants,
        Step::DryRun,
        Step::Admit,
    ];

    /// 1 to 10, as in the module documentation.
    pub fn number(self) -> u8 {
        self as u8 + 1
    }

    pub fn from_number(number: u8) -> Option<Step> {
        Step::ALL.get(usize::from(number).checked_sub(1)?).copied()
    }

    pub fn name(self) -> &'static str {
        match self {
            Step::Identity => "identity",
            Step::Limits => "limits",
            Step::Target => "target",
            Step::Authorization => "authorization",
            Step::Schema => "schema",
            Step::Dependencies => "dependencies",
            Step::Lifecycle => "lifecycle",
            Step::Invariants => "invariants",
            Step::DryRun => "dry_run",
            Step::Admit => "admit",
        }
    }

    /// The steps that can give `code` (`DEPENDENCY_EXPIRED` is recorded by the engine when
    /// a step-6 deferral runs out).
    pub fn of_code(code: RejectCode) -> &'static [Step] {
        match code {
            RejectCode::WrongLedger | RejectCode::BadSignature => &[Step::Identity],
            RejectCode::LimitExceeded => &[Step::Limits, Step::Dependencies],
            RejectCode::Schema => &[Step::Limits, Step::Schema],
            RejectCode::UnknownDomain | RejectCode::UnknownAction => &[Step::Target],
            RejectCode::Unauthorized => &[Step::Authorization],
            RejectCode::DependencyRejected
            | RejectCode::DependencyFailed
            | RejectCode::DependencyExpired => &[Step::Dependencies],
            RejectCode::InvalidTransition | RejectCode::AlreadyApproved => &[Step::Lifecycle],
            RejectCode::Invariant | RejectCode::Constitution => &[Step::Invariants, Step::DryRun],
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} {}", self.number(), self.name())
    }
}

/// A [`Step`] in JSON: `{"number": 8, "name": "invariants"}`.
#[derive(Clone, Serialize, Deserialize)]
struct StepJson {
    number: u8,
    name: String,
}

impl From<Step> for StepJson {
    fn from(step: Step) -> StepJson {
        StepJson {
            number: step.number(),
            name: step.name().to_owned(),
        }
    }
}

impl TryFrom<StepJson> for Step {
    type Error = String;
    fn try_from(json: StepJson) -> Result<Step, String> {
        match Step::from_number(json.number) {
            Some(step) if step.name() == json.name => Ok(step),
            _ => Err(format!("no check step {} {:?}", json.number, json.name)),
        }
    }
}

/// A named rule of the constitution that decided a step 8 or 9 rejection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum NamedRule {
    Invariant(InvariantName),
    Update(UpdateName),
}

/// Which check decided, as [`adjudicate_traced`] saw it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Trace {
    pub step: Step,
    /// The invariant or update that rejected, for steps 8 and 9.
    pub rule: Option<NamedRule>,
}

impl Trace {
    fn at(step: Step) -> Trace {
        Trace { step, rule: None }
    }
}

/// Adjudicates `signed` (whose id is `id`) against `state` at ledger `time`. Pure: reads
/// nothing but its arguments and changes nothing.
pub fn adjudicate(
    state: &State,
    signed: &SignedProposal,
    id: &ProposalId,
    time: LedgerTime,
) -> Verdict {
    adjudicate_with(state, signed, id, time, &Strict)
}

/// [`adjudicate()`], checking the signature through `signatures`; every
/// [`SignatureCheck`] answers as [`Strict`] does, so the verdict is the same.
pub fn adjudicate_with(
    state: &State,
    signed: &SignedProposal,
    id: &ProposalId,
    time: LedgerTime,
    signatures: &dyn SignatureCheck,
) -> Verdict {
    adjudicate_traced(state, signed, id, time, signatures).0
}

/// [`adjudicate_with`], also answering which step decided (and, for steps 8 and 9, which
/// named rule). The verdict is the same.
pub fn adjudicate_traced(
    state: &State,
    signed: &SignedProposal,
    id: &ProposalId,
    time: LedgerTime,
    signatures: &dyn SignatureCheck,
) -> (Verdict, Trace) {
    let p = &signed.proposal;
    let constitution = state.constitution();
    let not_evaluated = |rule: &str| AccessDecision {
        key: p.author,
        principal: constitution.principal(&p.author).map(|pr| pr.name.clone()),
        role: None,
        rule: rule.to_owned(),
        verdict: AccessVerdict::NotEvaluated,
    };
    let reject_early = |step: Step, rule: &str, code: RejectCode, detail: String| {
        (
            Verdict {
                decision: Decision::reject(code, detail),
                access: not_evaluated(rule),
            },
            Trace::at(step),
        )
    };

    // 1. Where and by whom.
    if p.ledger_id != *state.ledger_id() {
        return reject_early(
            Step::Identity,
            "ledger_id",
            RejectCode::WrongLedger,
            format!(
                "signed for ledger {:?}, this is {:?}",
                p.ledger_id.as_str(),
                state.ledger_id().as_str()
            ),
        );
    }
    if let Err(error) = signatures.check(signed, id) {
        return reject_early(
            Step::Identity,
            "signature",
            RejectCode::BadSignature,
            error.to_string(),
        );
    }

    // 2. Limits.
    if let Err(rejection) = check_limits(constitution, p) {
        return (
            Verdict {
                decision: Decision::Reject(rejection),
                access: not_evaluated("limits"),
            },
            Trace::at(Step::Limits),
        );
    }

    if !p.dependencies_are_normal() {
        return reject_early(
            Step::Limits,
            "schema",
            RejectCode::Schema,
            "dependencies must be sorted and free of duplicates".to_owned(),
        );
    }
    if p.subject.chars().any(char::is_control) {
        return reject_early(
            Step::Limits,
            "schema",
            RejectCode::Schema,
            "subject must not contain control characters".to_owned(),
        );
    }

    // 3. What.
    let Some(domain) = constitution.domains.get(&p.domain) else {
        return reject_early(
            Step::Target,
            "domain",
            RejectCode::UnknownDomain,
            format!("no domain {:?}", p.domain),
        );
    };
    let Some(action) = domain.actions.get(&p.action) else {
        return reject_early(
            Step::Target,
            "action",
            RejectCode::UnknownAction,
            format!("domain {:?} has no action {:?}", p.domain, p.action),
        );
    };

    // 4. Authorization: the access decision.
    let rule = format!(
        "{}/{} roles=[{}]",
        p.domain,
        p.action,
        action
            .roles
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(",")
    );
    let principal = constitution.principal(&p.author);
    let role =
        principal.and_then(|pr| pr.roles.iter().find(|r| action.roles.contains(*r)).cloned());
    let access = AccessDecision {
        key: p.author,
        principal: principal.map(|pr| pr.name.clone()),
        verdict: if role.is_some() {
            AccessVerdict::Allow
        } else {
            AccessVerdict::Deny
        },
        role,
        rule,
    };
    if access.verdict == AccessVerdict::Deny {
        let who = match principal {
            Some(pr) => format!("principal {:?} holds none of the allowed roles", pr.name),
            None => format!(
                "key {} is not a principal of the constitution",
                p.author.short()
            ),
        };
        return (
            Verdict {
                decision: Decision::reject(RejectCode::Unauthorized, who),
                access,
            },
            Trace::at(Step::Authorization),
        );
    }

    let (decision, trace) = match judge(state, action, p, id, time) {
        Ok(()) => (Decision::Admit, Trace::at(Step::Admit)),
        Err((trace, decision)) => (decision, trace),
    };
    (Verdict { decision, access }, trace)
}

/// Steps 5 to 9, for an authorized proposal. `Err` carries the decision when it is not
/// `Admit` (a rejection or a deferral) with the check that gave it.
fn judge(
    state: &State,
    action: &Action,
    p: &Proposal,
    id: &ProposalId,
    time: LedgerTime,
) -> Result<(), (Trace, Decision)> {
    // 5. Payload schema.
    check_schema(action, &p.payload).map_err(|r| (Trace::at(Step::Schema), Decision::Reject(r)))?;
    judge_dependencies(state, p, id).map_err(|d| (Trace::at(Step::Dependencies), d))?;
    judge_lifecycle_and_rules(state, action, p, id, time)
}

/// Step 6.
fn judge_dependencies(state: &State, p: &Proposal, id: &ProposalId) -> Result<(), Decision> {
    // 6. Dependencies.
    let mut waiting_on = Vec::new();
    for dep in &p.dependencies {
        match state.dependency(dep) {
            Dependency::Met => {}
            Dependency::Rejected => {
                return Err(Decision::reject(
                    RejectCode::DependencyRejected,
                    format!("dependency {} was rejected", dep.short()),
                ))
            }
            Dependency::Failed(outcome) => {
                return Err(Decision::reject(
                    RejectCode::DependencyFailed,
                    format!(
                        "the effect of {} failed: outcome {} recorded at entry {}",
                        outcome.reports_on.short(),
                        outcome.report.short(),
                        outcome.index
                    ),
                ))
            }
            Dependency::Pending => waiting_on.push(*dep),
        }
    }
    if !waiting_on.is_empty() {
        let deferred_max = state.constitution().limits.deferred_max as usize;
        let already = state.deferred().contains_key(id);
        if !already && state.deferred().len() >= deferred_max {
            return Err(Decision::reject(
                RejectCode::LimitExceeded,
                format!("deferred_max: {deferred_max} proposals are already deferred"),
            ));
        }
        return Err(Decision::Defer { waiting_on });
    }
    Ok(())
}

/// Steps 7 to 9.
fn judge_lifecycle_and_rules(
    state: &State,
    action: &Action,
    p: &Proposal,
    id: &ProposalId,
    time: LedgerTime,
) -> Result<(), (Trace, Decision)> {
    let lifecycle = |d: Decision| (Trace::at(Step::Lifecycle), d);
    // 7. Lifecycle.
    let domain = &state.constitution().domains[&p.domain];
    let subject = state
        .subject(&p.domain, &p.subject)
        .unwrap_or_else(|| SubjectState::initial(domain));
    let subject = &subject;
    if !action.from.contains(&subject.state) {
        let from: Vec<&str> = action.from.iter().map(String::as_str).collect();
        return Err(lifecycle(Decision::reject(
            RejectCode::InvalidTransition,
            format!(
                "{} {:?} is in state {:?}; {} requires one of [{}]",
                p.domain,
                p.subject,
                subject.state,
                p.action,
                from.join(", ")
            ),
        )));
    }
    let approvals = subject.approvals.get(&p.action);
    if action.quorum > 1 && approvals.is_some_and(|a| a.contains(&p.author)) {
        return Err(lifecycle(Decision::reject(
            RejectCode::AlreadyApproved,
            format!("{} already approved by this principal", p.action),
        )));
    }

    // 8. Invariants.
    let cx = RuleContext {
        proposal: p,
        id,
        subject,
        state,
        time,
    };
    for invariant in &action.invariants {
        invariant.check(&cx).map_err(|r| {
            let trace = Trace {
                step: Step::Invariants,
                rule: Some(NamedRule::Invariant(*invariant)),
            };
            (trace, Decision::Reject(r))
        })?;
    }

    // 9. Dry run of the updates, if this filing completes the transition.
    let count = approvals.map_or(0, |a| a.len() as u64) + 1;
    if count >= u64::from(action.quorum) {
        let mut scratch = subject.clone();
        for update in &action.updates {
            let trace = Trace {
                step: Step::DryRun,
                rule: Some(NamedRule::Update(*update)),
            };
            match update
                .apply(p, id, &mut scratch)
                .map_err(|r| (trace, Decision::Reject(r)))?
            {
                Some(StateEffect::Outcome { .. }) | None => {}
                Some(StateEffect::AdoptConstitution { document }) => {
                    if let Err(error) = Constitution::parse(&document) {
                        return Err((
                            trace,
                            Decision::reject(
                                RejectCode::Constitution,
                                format!("{ADOPTED_DOCUMENT_INVALID}: {error}"),
                            ),
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// How a step-9 `CONSTITUTION` rejection's detail begins (an adopted document that does not
/// parse); [`crate::explain`](mod@crate::explain) reads the step back from it.
pub(crate) const ADOPTED_DOCUMENT_INVALID: &str = "adopted document is invalid";

/// Step 2's size limits (subject bytes, dependency count, payload bytes and depth), for
/// clients that refuse an oversize proposal before filing it (`docket petition`).
pub fn check_limits(constitution: &Constitution, p: &Proposal) -> Result<(), Rejection> {
    let limits = &constitution.limits;
    let limit = |detail: String| Err(Rejection::new(RejectCode::LimitExceeded, detail));
    if p.subject.is_empty() || p.subject.len() > limits.subject_bytes_max as usize {
        return limit(format!(
            "subject_bytes_max: subject is {} bytes, allowed 1 to {}",
            p.subject.len(),
            limits.subject_bytes_max
        ));
    }
    if p.dependencies.len() > limits.dependencies_max as usize {
        return limit(format!(
            "dependencies_max: {} dependencies, allowed {}",
            p.dependencies.len(),
            limits.dependencies_max
        ));
    }
    let payload_bytes = p.payload_bytes();
    if payload_bytes > limits.payload_bytes_max {
        return limit(format!(
            "payload_bytes_max: payload is {payload_bytes} bytes, allowed {}",
            limits.payload_bytes_max
        ));
    }
    let depth = p.payload.depth();
    if depth > VALUE_DEPTH_MAX {
        return limit(format!("payload depth {depth} exceeds {VALUE_DEPTH_MAX}"));
    }
    Ok(())
}

fn check_schema(action: &Action, payload: &Value) -> Result<(), Rejection> {
    let Some(map) = payload.as_map() else {
        return Err(Rejection::new(RejectCode::Schema, "payload must be a map"));
    };
    for (field, ty) in &action.requires {
        let Some(value) = map.get(field) else {
            return Err(Rejection::new(
                RejectCode::Schema,
                format!("payload lacks required field {field:?} ({ty})"),
            ));
        };
        if !has_type(value, *ty) {
            return Err(Rejection::new(
                RejectCode::Schema,
                format!("payload field {field:?} must be {ty}, found {value}"),
            ));
        }
    }
    Ok(())
}

fn has_type(value: &Value, ty: FieldType) -> bool {
    match ty {
        FieldType::Any => true,
        FieldType::Int => matches!(value, Value::Int(_)),
        FieldType::String => matches!(value, Value::Str(_)),
        FieldType::Bool => matches!(value, Value::Bool(_)),
        FieldType::List => matches!(value, Value::List(_)),
        FieldType::Map => matches!(value, Value::Map(_)),
        FieldType::ProposalId | FieldType::Key | FieldType::Hash => {
            value.as_str().is_some_and(|s| decode_hex::<32>(s).is_ok())
        }
    }
}
