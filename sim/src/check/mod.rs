//! The invariant checkers, one file per invariant.
//!
//! | file | invariant | when |
//! |---|---|---|
//! | [`election`] | election safety: one leader per leader id, votes never go back | every step |
//! | [`agreement`] | ledger agreement: every replica's ledger is a prefix of one chain | every observation, and at the end |
//! | [`state`] | state agreement: equal ledger length implies equal state hash | every observation |
//! | [`durability`] | every proposal acknowledged to a client is on every member at the end | at the end |
//! | [`linearizability`] | client histories are linearizable (Wing–Gong, per subject) | at the end |
//! | [`membership`] | a removal never starts while the voters it moves to lack a quorum of running nodes | every step |
//! | [`read_index`] | every linearizable read waited for a read index covering every entry applied anywhere before it began | at the end |
//! | [`chain`] | every replica's ledger passes `verify_chain` and audit | at the end |
//! | [`liveness`] | after healing, a new proposal commits and members converge in bounded time | heal phase |
//! | [`outcome_deps`] | a proposal listing an effect's outcome reference is deferred until the outcome is recorded, admitted only after a success, rejected `DEPENDENCY_FAILED` after a failure, released in the command that made it ready | at the end |
//! | [`plans`] | a plan's members are recorded in one run of submitted entries at one ledger time, in `docket_core::plan::order`'s order whatever order they were printed in | at the end |
//! | [`effects`] | each admitted payout is paid at most once per idempotency key, every request to the rail is explained, one outcome record per payout agrees with the rail | at the end |
//!
//! A checker reports [`Violation`]s; it never panics on what it checks.

pub mod agreement;
pub mod chain;
pub mod durability;
pub mod effects;
pub mod election;
#[cfg(test)]
pub(crate) mod fixture;
pub mod linearizability;
pub mod liveness;
pub mod membership;
pub mod outcome_deps;
pub mod plans;
pub mod read_index;
pub mod state;

use std::fmt;

/// One broken invariant, with enough detail to start debugging from the seed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub checker: &'static str,
    pub detail: String,
}

impl Violation {
    pub fn new(checker: &'static str, detail: impl Into<String>) -> Violation {
        Violation {
            checker,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "[{}] {}", self.checker, self.detail)
    }
}
