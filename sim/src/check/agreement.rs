//! Ledger agreement: every replica's applied ledger is a prefix of one canonical hash
//! chain, and no index ever holds two different entries.
//!
//! Replicas apply only committed Raft entries, and apply is deterministic, so every ledger
//! entry any replica ever applied is part of the one committed history. The checker keeps
//! the canonical chain (every entry first seen at each index) and compares every entry
//! every replica applies, by entry hash, including entries re-applied after a restart.

use docket_core::LedgerEntry;
use docket_raft::NodeId;

use super::Violation;

const NAME: &str = "ledger-agreement";

/// Violations kept per run: one divergence tends to cascade.
const VIOLATIONS_MAX: usize = 8;

#[derive(Debug, Default)]
pub struct LedgerAgreement {
    canonical: Vec<(LedgerEntry, NodeId)>,
    violations: Vec<Violation>,
}

impl LedgerAgreement {
    /// Checks one applied entry of `node` against the canonical chain.
    pub fn observe(&mut self, node: NodeId, entry: &LedgerEntry) {
        let index = entry.index.0 as usize;
        if let Some((first, seen_at)) = self.canonical.get(index) {
            if first.hash != entry.hash && self.violations.len() < VIOLATIONS_MAX {
                self.violations.push(Violation::new(
                    NAME,
                    format!(
                        "ledger index {index} holds {} at n{node} but {} at n{seen_at}",
                        entry.hash.short(),
                        first.hash.short()
                    ),
                ));
            }
        } else if index == self.canonical.len() {
            self.canonical.push((entry.clone(), node));
        } else if self.violations.len() < VIOLATIONS_MAX {
            self.violations.push(Violation::new(
                NAME,
                format!(
                    "n{node} applied index {index} but the canonical chain has only {}",
                    self.canonical.len()
                ),
            ));
        }
    }

    /// Checks a replica's whole final ledger: it must be a prefix of the canonical chain.
    pub fn check_prefix(&mut self, node: NodeId, ledger: &[LedgerEntry]) {
        for entry in ledger {
            self.observe(node, entry);
        }
    }

    pub fn canonical(&self) -> Vec<LedgerEntry> {
        self.canonical.iter().map(|(e, _)| e.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.canonical.len()
    }

    pub fn is_empty(&self) -> bool {
        self.canonical.is_empty()
    }

    pub fn take_violations(&mut self) -> Vec<Violation> {
        std::mem::take(&mut self.violations)
    }
}

#[cfg(test)]
mod tests {
    use docket_core::constitution::DEFAULT_DOCUMENT;
    use docket_core::{dev, LedgerId, LedgerTime, State, Value};

    use super::*;

    fn chain(amount: i64) -> Vec<LedgerEntry> {
        let ledger = LedgerId::new("agree").expect("id");
        let (mut state, genesis) =
            State::genesis(ledger.clone(), DEFAULT_DOCUMENT, LedgerTime(1)).expect("genesis");
        let deposit = dev::proposal(
            &ledger,
            "alice",
            "SETTLEMENT.DEPOSIT_CONFIRMED",
            "s",
            Value::map([("amount", Value::Int(amount)), ("currency", "EUR".into())]),
            vec![],
            1,
        );
        let mut out = vec![genesis];
        out.extend(
            state
                .submit(deposit, LedgerTime(2))
                .entries()
                .iter()
                .cloned(),
        );
        out
    }

    #[test]
    fn prefixes_agree_and_forks_are_caught() {
        let a = chain(5);
        let b = chain(6);
        let mut check = LedgerAgreement::default();
        check.check_prefix(1, &a[..1]);
        check.check_prefix(2, &a);
        check.check_prefix(1, &a);
        assert!(check.take_violations().is_empty());
        assert_eq!(check.len(), 2);
        check.check_prefix(3, &b);
        let violations = check.take_violations();
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].detail.contains("index 1"));
    }
}
