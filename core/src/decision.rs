//! What adjudication returns: the decision and the access decision behind it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::code::RejectCode;
use crate::id::{ProposalId, PublicKey};

/// Longest rejection detail recorded. Details are for humans; the code is for machines.
pub const DETAIL_BYTES_MAX: usize = 512;

/// A deterministic rejection: a stable code and a human-readable detail.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Rejection {
    pub code: RejectCode,
    pub detail: String,
}

impl Rejection {
    pub fn new(code: RejectCode, detail: impl Into<String>) -> Rejection {
        let mut detail = detail.into();
        if detail.len() > DETAIL_BYTES_MAX {
            let mut cut = DETAIL_BYTES_MAX;
            while !detail.is_char_boundary(cut) {
                cut -= 1;
            }
            detail.truncate(cut);
        }
        Rejection { code, detail }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

/// The outcome of adjudicating one proposal.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The transition was applied (or, for a quorum action, the approval was counted).
    Admit,
    Reject(Rejection),
    /// Some dependencies are not decided yet; the proposal is held until they are, or
    /// until its deferral expires.
    Defer {
        waiting_on: Vec<ProposalId>,
    },
}

impl Decision {
    pub fn reject(code: RejectCode, detail: impl Into<String>) -> Decision {
        Decision::Reject(Rejection::new(code, detail))
    }

    pub fn is_final(&self) -> bool {
        !matches!(self, Decision::Defer { .. })
    }

    pub fn code(&self) -> Option<RejectCode> {
        match self {
            Decision::Reject(r) => Some(r.code),
            _ => None,
        }
    }

    /// `ADMIT`, `DEFER` or the rejection code's name.
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Admit => "ADMIT",
            Decision::Defer { .. } => "DEFER",
            Decision::Reject(r) => r.code.name(),
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Decision::Admit => f.write_str("ADMIT"),
            Decision::Reject(r) => write!(f, "REJECT {r}"),
            Decision::Defer { waiting_on } => {
                f.write_str("DEFER waiting on")?;
                for id in waiting_on {
                    write!(f, " {}", id.short())?;
                }
                Ok(())
            }
        }
    }
}

/// Whether the authorization matrix allowed the author to take the action.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessVerdict {
    Allow,
    Deny,
    /// The proposal was rejected before authorization could be evaluated (bad signature,
    /// wrong ledger, over a limit, unknown domain or action).
    NotEvaluated,
}

/// The ACCESS_DECISION recorded with every decision: who asked, under which role, by
/// which rule, and the verdict.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct AccessDecision {
    pub key: PublicKey,
    /// The principal's name in the constitution that judged the proposal, if the key is known.
    pub principal: Option<String>,
    /// The role that granted access (the first, in name order, that the author holds and the
    /// action allows).
    pub role: Option<String>,
    /// The rule consulted, e.g. `settlement/SETTLEMENT.DEPOSIT_CONFIRMED roles=[treasurer]`.
    pub rule: String,
    pub verdict: AccessVerdict,
}

impl fmt::Display for AccessDecision {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let verdict = match self.verdict {
            AccessVerdict::Allow => "allow",
            AccessVerdict::Deny => "deny",
            AccessVerdict::NotEvaluated => "not-evaluated",
        };
        write!(
            f,
            "{verdict} principal={} role={} rule={}",
            self.principal.as_deref().unwrap_or("unknown"),
            self.role.as_deref().unwrap_or("-"),
            self.rule
        )
    }
}

/// A decision with its access decision: what adjudication returns.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Verdict {
    pub decision: Decision,
    pub access: AccessDecision,
}
