//! State agreement: two replicas with ledgers of the same length hold the same state
//! (equal `StateHash`), whenever they are observed.

use std::collections::BTreeMap;

use docket_core::StateHash;
use docket_raft::NodeId;

use super::Violation;

const NAME: &str = "state-agreement";

#[derive(Debug, Default)]
pub struct StateAgreement {
    by_len: BTreeMap<u64, (StateHash, NodeId)>,
    violations: Vec<Violation>,
}

impl StateAgreement {
    pub fn observe(&mut self, node: NodeId, ledger_len: u64, hash: StateHash) {
        match self.by_len.get(&ledger_len) {
            Some((first, at)) if *first != hash => self.violations.push(Violation::new(
                NAME,
                format!(
                    "at ledger length {ledger_len} n{node} has state {} but n{at} had {}",
                    hash.short(),
                    first.short()
                ),
            )),
            Some(_) => {}
            None => {
                self.by_len.insert(ledger_len, (hash, node));
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
        check.observe(1, 3, StateHash([1; 32]));
        check.observe(2, 3, StateHash([1; 32]));
        check.observe(2, 4, StateHash([2; 32]));
        assert!(check.take_violations().is_empty());
        check.observe(3, 4, StateHash([3; 32]));
        assert_eq!(check.take_violations().len(), 1);
    }
}
