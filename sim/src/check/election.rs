//! Election safety, from every node's Raft metrics, observed after every simulation step.
//!
//! openraft 0.9's default leader id is `(term, node_id)` with a total order (its
//! "advanced" mode): a voter that voted for `(t, 1)` may later vote for `(t, 2)`, so a term
//! can see two leaders one after the other, and log entries are identified by the full
//! leader id. Raft's "at most one leader per term" becomes **at most one leader per leader
//! id**; what gives that teeth is checked here:
//!
//! * a node that says it is leader holds a *committed* vote (granted by a quorum) naming
//!   itself;
//! * no two nodes are ever leader under the same leader id;
//! * a node's vote never goes back, **across restarts too**: a vote is persisted before it
//!   is used, and a node that forgets one can vote twice in a term (two leaders). This is
//!   the check a disk that acknowledges unflushed writes fails. The one step back allowed
//!   is across a restart, from a committed vote to the *same* leader id uncommitted: the
//!   store opens a node that led as a follower (`docket_raft::Store`, "demote_vote"), and
//!   which candidates a vote grants or refuses depends on its leader id alone.
//! * a node never leads again under a leader id it led under in an earlier boot: after a
//!   restart it must win a new election (a higher term) to lead. Resuming the old
//!   leadership from the committed vote it reads back is openraft#1511 (a restarted
//!   leader serving reads and commits on a stale view), which the store's vote demotion
//!   prevents; this is the check that fails if the demotion is lost.
//!
//! How many terms had several leaders (legal in this mode) is counted for the report.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use docket_raft::{NodeId, Vote};

use super::Violation;

const NAME: &str = "election-safety";

#[derive(Debug, Default)]
pub struct ElectionSafety {
    /// The node seen leading under each leader id `(term, node_id)`, and the boot in
    /// which it first did.
    leaders: BTreeMap<(u64, NodeId), (NodeId, u32)>,
    /// Nodes seen leading in each bare term.
    per_term: BTreeMap<u64, BTreeSet<NodeId>>,
    /// Each node's last vote, and the boot it was seen in.
    last_vote: BTreeMap<NodeId, (Vote, u32)>,
    violations: Vec<Violation>,
}

impl ElectionSafety {
    /// Observes node `node` in its boot `boot` (1 for its first start).
    pub fn observe(&mut self, node: NodeId, boot: u32, is_leader: bool, vote: Vote) {
        if let Some((previous, previous_boot)) = self.last_vote.get(&node) {
            let regressed = match vote.partial_cmp(previous) {
                Some(Ordering::Less) => true,
                None => vote != *previous,
                _ => false,
            };
            let demoted_on_restart = boot != *previous_boot
                && previous.is_committed()
                && !vote.is_committed()
                && vote.leader_id == previous.leader_id;
            if regressed && !demoted_on_restart {
                self.violations.push(Violation::new(
                    NAME,
                    format!("n{node}'s vote went back from {previous} to {vote}"),
                ));
            }
        }
        self.last_vote.insert(node, (vote, boot));
        if !is_leader {
            return;
        }
        let leader_id = vote.leader_id;
        if !vote.is_committed() || leader_id.node_id != node {
            self.violations.push(Violation::new(
                NAME,
                format!("n{node} is leader holding vote {vote}, not a committed vote for itself"),
            ));
        }
        let key = (leader_id.term, leader_id.node_id);
        match self.leaders.get(&key) {
            Some((other, _)) if *other != node => self.violations.push(Violation::new(
                NAME,
                format!("n{node} and n{other} both lead under leader id {leader_id}"),
            )),
            Some((_, first_boot)) if boot > *first_boot => {
                self.violations.push(Violation::new(
                    NAME,
                    format!(
                        "n{node} leads under leader id {leader_id} again in boot {boot}, \
                         after leading under it in boot {first_boot} (openraft#1511)"
                    ),
                ));
                // Reported once per leader id and boot.
                self.leaders.insert(key, (node, boot));
            }
            Some(_) => {}
            None => {
                self.leaders.insert(key, (node, boot));
            }
        }
        self.per_term
            .entry(leader_id.term)
            .or_default()
            .insert(node);
    }

    /// Terms in which more than one node led (allowed by openraft's leader id order).
    pub fn terms_with_several_leaders(&self) -> usize {
        self.per_term.values().filter(|s| s.len() > 1).count()
    }

    pub fn terms(&self) -> usize {
        self.per_term.len()
    }

    pub fn take_violations(&mut self) -> Vec<Violation> {
        std::mem::take(&mut self.violations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(term: u64, node: NodeId) -> Vote {
        Vote::new_committed(term, node)
    }

    #[test]
    fn leaders_under_distinct_ids_are_fine() {
        let mut check = ElectionSafety::default();
        check.observe(1, 1, true, committed(1, 1));
        check.observe(2, 1, false, committed(1, 1));
        check.observe(2, 1, true, committed(2, 2));
        check.observe(1, 1, false, committed(2, 2));
        assert!(check.take_violations().is_empty());
        assert_eq!(check.terms(), 2);
    }

    #[test]
    fn a_leader_without_a_committed_vote_for_itself_is_caught() {
        let mut check = ElectionSafety::default();
        check.observe(1, 1, true, Vote::new(3, 1));
        // n2 leading under n1's leader id: a vote not for itself, and a second leader
        // under one leader id.
        check.observe(2, 1, true, committed(3, 1));
        assert_eq!(check.take_violations().len(), 3);
    }

    #[test]
    fn a_vote_that_goes_back_is_caught() {
        let mut check = ElectionSafety::default();
        check.observe(1, 1, false, committed(5, 2));
        check.observe(1, 1, false, Vote::default());
        let violations = check.take_violations();
        assert_eq!(violations.len(), 1);
        assert!(violations[0].detail.contains("went back"));
        // Across a restart, too.
        check.observe(1, 1, false, committed(6, 2));
        check.observe(1, 2, false, Vote::new(5, 2));
        assert_eq!(check.take_violations().len(), 1);
    }

    #[test]
    fn a_restart_may_uncommit_the_same_vote_and_nothing_else() {
        let mut check = ElectionSafety::default();
        check.observe(1, 1, true, committed(5, 1));
        check.observe(1, 2, false, Vote::new(5, 1));
        assert!(check.take_violations().is_empty(), "demoted on restart");
        check.observe(1, 2, true, committed(6, 1));
        check.observe(1, 2, false, Vote::new(6, 1));
        assert_eq!(
            check.take_violations().len(),
            1,
            "within one boot a committed vote stays committed"
        );
    }

    #[test]
    fn leading_again_under_the_same_leader_id_after_a_restart_is_caught() {
        let mut check = ElectionSafety::default();
        check.observe(1, 1, true, committed(5, 1));
        check.observe(1, 1, true, committed(5, 1));
        assert!(
            check.take_violations().is_empty(),
            "one boot, one leadership"
        );
        // Restarted: the vote read back is committed, and it leads on in term 5.
        check.observe(1, 2, true, committed(5, 1));
        check.observe(1, 2, true, committed(5, 1));
        let violations = check.take_violations();
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].detail.contains("again in boot 2"));
        // A new election after the restart is fine.
        check.observe(1, 2, false, Vote::new(6, 1));
        check.observe(1, 2, true, committed(6, 1));
        assert!(check.take_violations().is_empty());
    }

    #[test]
    fn several_leaders_in_one_term_are_counted_not_flagged() {
        let mut check = ElectionSafety::default();
        check.observe(1, 1, true, committed(4, 1));
        check.observe(2, 1, true, committed(4, 2));
        assert!(check.take_violations().is_empty());
        assert_eq!(check.terms_with_several_leaders(), 1);
    }
}
