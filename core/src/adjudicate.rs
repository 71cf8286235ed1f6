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

use crate::code::RejectCode;
use crate::constitution::rules::{RuleContext, StateEffect};
use crate::constitution::{Action, Constitution, FieldType};
use crate::decision::{AccessDecision, AccessVerdict, Decision, Rejection, Verdict};
use crate::id::{decode_hex, LedgerTime, ProposalId};
use crate::proposal::{Proposal, SignedProposal};
use crate::signature::{SignatureCheck, Strict};
use crate::state::{Dependency, State, SubjectState};
use crate::value::{Value, VALUE_DEPTH_MAX};

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
    let p = &signed.proposal;
    let constitution = state.constitution();
    let not_evaluated = |rule: &str| AccessDecision {
        key: p.author,
        principal: constitution.principal(&p.author).map(|pr| pr.name.clone()),
        role: None,
        rule: rule.to_owned(),
        verdict: AccessVerdict::NotEvaluated,
    };
    let reject_early = |rule: &str, code: RejectCode, detail: String| Verdict {
        decision: Decision::reject(code, detail),
        access: not_evaluated(rule),
    };

    // 1. Where and by whom.
    if p.ledger_id != *state.ledger_id() {
        return reject_early(
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
        return reject_early("signature", RejectCode::BadSignature, error.to_string());
    }

    // 2. Limits.
    if let Err(rejection) = check_limits(constitution, p) {
        return Verdict {
            decision: Decision::Reject(rejection),
            access: not_evaluated("limits"),
        };
    }

    if !p.dependencies_are_normal() {
        return reject_early(
            "schema",
            RejectCode::Schema,
            "dependencies must be sorted and free of duplicates".to_owned(),
        );
    }
    if p.subject.chars().any(char::is_control) {
        return reject_early(
            "schema",
            RejectCode::Schema,
            "subject must not contain control characters".to_owned(),
        );
    }

    // 3. What.
    let Some(domain) = constitution.domains.get(&p.domain) else {
        return reject_early(
            "domain",
            RejectCode::UnknownDomain,
            format!("no domain {:?}", p.domain),
        );
    };
    let Some(action) = domain.actions.get(&p.action) else {
        return reject_early(
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
        return Verdict {
            decision: Decision::reject(RejectCode::Unauthorized, who),
            access,
        };
    }

    let decision = judge(state, action, p, id, time)
        .err()
        .unwrap_or(Decision::Admit);
    Verdict { decision, access }
}

/// Steps 5 to 9, for an authorized proposal. `Err` carries the decision when it is not
/// `Admit` (a rejection or a deferral).
fn judge(
    state: &State,
    action: &Action,
    p: &Proposal,
    id: &ProposalId,
    time: LedgerTime,
) -> Result<(), Decision> {
    // 5. Payload schema.
    check_schema(action, &p.payload).map_err(Decision::Reject)?;

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

    // 7. Lifecycle.
    let domain = &state.constitution().domains[&p.domain];
    let subject = state
        .subject(&p.domain, &p.subject)
        .unwrap_or_else(|| SubjectState::initial(domain));
    let subject = &subject;
    if !action.from.contains(&subject.state) {
        let from: Vec<&str> = action.from.iter().map(String::as_str).collect();
        return Err(Decision::reject(
            RejectCode::InvalidTransition,
            format!(
                "{} {:?} is in state {:?}; {} requires one of [{}]",
                p.domain,
                p.subject,
                subject.state,
                p.action,
                from.join(", ")
            ),
        ));
    }
    let approvals = subject.approvals.get(&p.action);
    if action.quorum > 1 && approvals.is_some_and(|a| a.contains(&p.author)) {
        return Err(Decision::reject(
            RejectCode::AlreadyApproved,
            format!("{} already approved by this principal", p.action),
        ));
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
        invariant.check(&cx).map_err(Decision::Reject)?;
    }

    // 9. Dry run of the updates, if this filing completes the transition.
    let count = approvals.map_or(0, |a| a.len() as u64) + 1;
    if count >= u64::from(action.quorum) {
        let mut scratch = subject.clone();
        for update in &action.updates {
            match update
                .apply(p, id, &mut scratch)
                .map_err(Decision::Reject)?
            {
                Some(StateEffect::Outcome { .. }) | None => {}
                Some(StateEffect::AdoptConstitution { document }) => {
                    if let Err(error) = Constitution::parse(&document) {
                        return Err(Decision::reject(
                            RejectCode::Constitution,
                            format!("adopted document is invalid: {error}"),
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

fn check_limits(constitution: &Constitution, p: &Proposal) -> Result<(), Rejection> {
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
