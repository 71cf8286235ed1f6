//! Membership safety: a change that removes voters never starts while the voters it
//! moves to could not form a quorum of running nodes.
//!
//! Removing a voter while another voter is down leaves the cluster in a joint
//! configuration that needs the down node to commit anything, the removal included: the
//! cluster stops until that node returns. The service's guardrail
//! (`docket_service::membership::check_removal_is_safe`, after probing every voter's Raft
//! port) refuses such a removal. This checker holds it to that, from ground truth: when a
//! leader's membership becomes a joint configuration whose new voters are a subset of the
//! old ones, the new voters that have been crashed for longer than [`DOWN_GRACE`] must not
//! leave fewer running ones than a quorum. The grace covers the time between the
//! guardrail's probes and the change (a node crashed meanwhile could not have been seen
//! by them), so a correct guardrail is never blamed for a crash it could not see.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use docket_raft::NodeId;

use crate::check::Violation;

pub const NAME: &str = "membership";

/// A node crashed for longer than this before a removal started was down when the
/// guardrail probed it (its probes take at most the sim's probe timeout, 500 ms).
pub const DOWN_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct MembershipGuard {
    /// When each currently crashed node went down.
    down_since: BTreeMap<NodeId, Duration>,
    /// Joint configurations already checked, by their voter sets.
    checked: BTreeSet<(BTreeSet<NodeId>, BTreeSet<NodeId>)>,
    violations: Vec<Violation>,
}

impl MembershipGuard {
    /// Records whether node `id` is up at `now`.
    pub fn observe_node(&mut self, id: NodeId, up: bool, now: Duration) {
        if up {
            self.down_since.remove(&id);
        } else {
            self.down_since.entry(id).or_insert(now);
        }
    }

    /// Checks a leader's joint configuration `old -> new` seen at `now`, once per pair.
    pub fn observe_joint(&mut self, old: &BTreeSet<NodeId>, new: &BTreeSet<NodeId>, now: Duration) {
        if !new.is_subset(old) || new == old {
            return;
        }
        if !self.checked.insert((old.clone(), new.clone())) {
            return;
        }
        let down: Vec<NodeId> = new
            .iter()
            .copied()
            .filter(|id| {
                self.down_since
                    .get(id)
                    .is_some_and(|since| now.saturating_sub(*since) > DOWN_GRACE)
            })
            .collect();
        let quorum = new.len() / 2 + 1;
        if new.len() - down.len() < quorum {
            self.violations.push(Violation::new(
                NAME,
                format!(
                    "at {now:?} the voters {old:?} started moving to {new:?}, needing a quorum \
                     of {quorum}, while {down:?} had been down for over {DOWN_GRACE:?}: the \
                     cluster cannot commit until they return"
                ),
            ));
        }
    }

    pub fn take_violations(&mut self) -> Vec<Violation> {
        std::mem::take(&mut self.violations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn a_removal_that_leaves_no_running_quorum_is_a_violation() {
        let mut guard = MembershipGuard::default();
        guard.observe_node(3, false, Duration::from_secs(1));
        // Down for only 0.5 s: the guardrail may not have seen it.
        guard.observe_joint(
            &set(&[1, 2, 3]),
            &set(&[1, 3]),
            Duration::from_millis(1_500),
        );
        assert!(guard.take_violations().is_empty());
        guard.observe_joint(&set(&[1, 2, 3]), &set(&[2, 3]), Duration::from_secs(3));
        assert_eq!(guard.take_violations().len(), 1);
        // Removing the down node itself is fine; so is anything once it is back.
        guard.observe_joint(&set(&[1, 2, 3]), &set(&[1, 2]), Duration::from_secs(3));
        guard.observe_node(3, true, Duration::from_secs(4));
        guard.observe_joint(&set(&[1, 2, 3, 4]), &set(&[3, 4]), Duration::from_secs(5));
        assert!(guard.take_violations().is_empty());
    }
}
