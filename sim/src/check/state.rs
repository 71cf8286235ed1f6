//! State agreement: two replicas with ledgers of the same length hold the same state
//! (equal `StateHash`) and the same Merkle tree over their entries (equal RFC 9162 root),
//! whenever they are observed; and two replicas that computed the state map at the same
//! anchor hold the same map root (what they would cosign in a checkpoint's `map` line).

use std::collections::BTreeMap;

use docket_core::StateHash;
use docket_raft::NodeId;

use super::Violation;

const NAME: &str = "state-agreement";

#[derive(Debug, Default)]
pub struct StateAgreement {
    by_len: BTreeMap<u64, (StateHash, [u8; 32], NodeId)>,
    maps: BTreeMap<u64, ([u8; 32], NodeId)>,
    /// Map anchors observed (distinct sizes), for the run's report.
    pub anchors_seen: u64,
    violations: Vec<Violation>,
}

impl StateAgreement {
    /// `root`: the node's ledger tree root at `ledger_len`.
    pub fn observe(&mut self, node: NodeId, ledger_len: u64, hash: StateHash, root: [u8; 32]) {
        match self.by_len.get(&ledger_len) {
            Some((first, _, at)) if *first != hash => self.violations.push(Violation::new(
                NAME,
                format!(
                    "at ledger length {ledger_len} n{node} has state {} but n{at} had {}",
                    hash.short(),
                    first.short()
                ),
            )),
            Some((_, first_root, at)) if *first_root != root => {
                self.violations.push(Violation::new(
                    NAME,
                    format!(
                        "at ledger length {ledger_len} n{node}'s ledger tree root differs from \
                         n{at}'s"
                    ),
                ))
            }
            Some(_) => {}
            None => {
                self.by_len.insert(ledger_len, (hash, root, node));
            }
        }
    }

    /// `anchor`: the state map's last anchor on `node` (`Replica::latest_boundary`).
    pub fn observe_map(&mut self, node: NodeId, anchor: docket_core::statemap::MapAnchor) {
        match self.maps.get(&anchor.size) {
            Some((root, at)) if *root != anchor.root => self.violations.push(Violation::new(
                NAME,
                format!(
                    "at state-map anchor {} n{node}'s map root differs from n{at}'s",
                    anchor.size
                ),
            )),
            Some(_) => {}
            None => {
                self.anchors_seen += 1;
                self.maps.insert(anchor.size, (anchor.root, node));
            }
        }
    }

    pub fn take_violations(&mut self) -> Vec<Violation> {
        std::mem::take(&mut self.violations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_lengths_must_have_equal_hashes() {
        let mut check = StateAgreement::default();
        check.observe(1, 3, StateHash([1; 32]), [7; 32]);
        check.observe(2, 3, StateHash([1; 32]), [7; 32]);
        check.observe(2, 4, StateHash([2; 32]), [8; 32]);
        assert!(check.take_violations().is_empty());
        check.observe(3, 4, StateHash([3; 32]), [8; 32]);
        assert_eq!(check.take_violations().len(), 1);
        check.observe(3, 4, StateHash([2; 32]), [9; 32]);
        assert_eq!(
            check.take_violations().len(),
            1,
            "the tree root is checked too"
        );
        let anchor = |root| docket_core::statemap::MapAnchor {
            size: 1_024,
            root: [root; 32],
        };
        check.observe_map(1, anchor(5));
        check.observe_map(2, anchor(5));
        assert!(check.take_violations().is_empty());
        check.observe_map(3, anchor(6));
        assert_eq!(check.take_violations().len(), 1, "map roots are checked");
    }
}
