//! Liveness: once every fault is healed (links repaired, crashed nodes restarted), a new
//! proposal commits and every member converges (same ledger length, state hash and last
//! applied log entry, one leader) within [`LIVENESS_BOUND`] of simulated time.

use std::time::Duration;

use super::Violation;
use crate::config::LIVENESS_BOUND;

const NAME: &str = "liveness";

/// What the heal phase saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HealOutcome {
    pub healed_at: Duration,
    /// When the probe proposal, filed after healing, was acknowledged.
    pub probe_acked_at: Option<Duration>,
    /// When the members were first seen converged after the probe's acknowledgement.
    pub converged_at: Option<Duration>,
}

pub fn check(outcome: &HealOutcome) -> Vec<Violation> {
    let deadline = outcome.healed_at + LIVENESS_BOUND;
    let mut violations = Vec::new();
    match outcome.probe_acked_at {
        Some(at) if at <= deadline => {}
        _ => violations.push(Violation::new(
            NAME,
            format!("no new proposal committed within {LIVENESS_BOUND:?} of healing"),
        )),
    }
    match outcome.converged_at {
        Some(at) if at <= deadline => {}
        _ => violations.push(Violation::new(
            NAME,
            format!("members did not converge within {LIVENESS_BOUND:?} of healing"),
        )),
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_or_missing_progress_is_caught() {
        let healed_at = Duration::from_secs(10);
        let good = HealOutcome {
            healed_at,
            probe_acked_at: Some(healed_at + Duration::from_secs(1)),
            converged_at: Some(healed_at + Duration::from_secs(2)),
        };
        assert!(check(&good).is_empty());
        let stuck = HealOutcome {
            healed_at,
            probe_acked_at: None,
            converged_at: None,
        };
        assert_eq!(check(&stuck).len(), 2);
        let late = HealOutcome {
            converged_at: Some(healed_at + LIVENESS_BOUND + Duration::from_millis(1)),
            ..good
        };
        assert_eq!(check(&late).len(), 1);
    }
}
