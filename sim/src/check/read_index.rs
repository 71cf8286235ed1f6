//! Read-index freshness: every linearizable read waits for a read index at least as high
//! as every Raft log entry any node had applied before the read was invoked.
//!
//! This is what makes a read linearizable, checked where it is decided rather than only
//! through what the read returned: the linearizability checker sees a stale read only
//! when the replica that served it had not caught up yet, which in the model is rare even
//! when the read index was stale. A read that joins a read-index round already in flight
//! (the coalescer's negative control) is caught here. Reads served without a read index
//! at all are left to the linearizability checker (its negative control must be caught
//! black-box).
//!
//! The timeline is the highest applied index over all nodes, observed after every step.
//! A read invoked during a step is compared with the observation of an earlier step only,
//! so an entry applied later in the same step is never held against it.

use crate::check::Violation;
use crate::history::{History, OpResult};

pub const NAME: &str = "read-index";

/// Violations reported at most, per run.
const VIOLATIONS_MAX: usize = 10;

/// The highest Raft log index applied by any node, over time.
#[derive(Debug, Default)]
pub struct AppliedTimeline {
    /// `(simulated ns, highest applied index)`, both strictly increasing.
    points: Vec<(u128, u64)>,
}

impl AppliedTimeline {
    /// Records that some node has applied `index` by simulated time `at_ns`.
    pub fn observe(&mut self, at_ns: u128, index: u64) {
        if self.points.last().is_none_or(|(_, top)| index > *top) {
            self.points.push((at_ns, index));
        }
    }

    /// The highest index applied anywhere at an observation strictly before `at_ns`.
    pub fn applied_before(&self, at_ns: u128) -> Option<u64> {
        let after = self.points.partition_point(|(t, _)| *t < at_ns);
        after.checked_sub(1).map(|i| self.points[i].1)
    }
}

pub fn check(history: &History, timeline: &AppliedTimeline) -> Vec<Violation> {
    let mut violations = Vec::new();
    for op in &history.ops {
        let OpResult::Read {
            served_by,
            read_index: Some(read_index),
            ..
        } = &op.result
        else {
            continue;
        };
        let Some(applied) = timeline.applied_before(op.invoked_ns) else {
            continue;
        };
        if *read_index < applied {
            violations.push(Violation::new(
                NAME,
                format!(
                    "client {} read at {:.3}ms was served by n{served_by} at read index \
                     {read_index}, but log index {applied} had already been applied before \
                     it was invoked",
                    op.client,
                    op.invoked_ns as f64 / 1e6
                ),
            ));
            if violations.len() >= VIOLATIONS_MAX {
                break;
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_earlier_observations_count() {
        let mut timeline = AppliedTimeline::default();
        timeline.observe(10, 3);
        timeline.observe(20, 3);
        timeline.observe(20, 5);
        timeline.observe(30, 4);
        assert_eq!(timeline.applied_before(10), None);
        assert_eq!(timeline.applied_before(11), Some(3));
        assert_eq!(timeline.applied_before(20), Some(3));
        assert_eq!(timeline.applied_before(21), Some(5));
        assert_eq!(timeline.applied_before(1_000), Some(5));
    }
}
