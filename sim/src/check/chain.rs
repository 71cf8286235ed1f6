//! Chain integrity: every replica's final ledger passes `verify_chain` (indexes, links,
//! entry hashes, proposal ids) and `audit` (every decision re-derived from the proposals
//! at their recorded times: signatures, adjudication, waves, expiries).
//!
//! Replicas holding byte-identical ledgers (same length and head hash: the chain makes
//! that the same content) are audited once.

use std::collections::BTreeSet;

use docket_core::{audit, verify_chain, LedgerEntry};
use docket_raft::NodeId;

use super::Violation;

const NAME: &str = "chain-integrity";

pub fn check(ledgers: &[(NodeId, Vec<LedgerEntry>)]) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut done = BTreeSet::new();
    for (node, ledger) in ledgers {
        let Some(head) = ledger.last() else {
            continue;
        };
        if !done.insert((ledger.len(), head.hash)) {
            continue;
        }
        if let Err(e) = verify_chain(ledger) {
            violations.push(Violation::new(
                NAME,
                format!("n{node}'s ledger fails verify_chain: {e}"),
            ));
            continue;
        }
        if let Err(e) = audit(ledger) {
            violations.push(Violation::new(
                NAME,
                format!("n{node}'s ledger fails audit: {e}"),
            ));
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use docket_core::constitution::DEFAULT_DOCUMENT;
    use docket_core::{dev, LedgerId, LedgerTime, State, Value};

    use super::*;

    #[test]
    fn a_sound_ledger_passes_and_a_tampered_one_fails() {
        let ledger = LedgerId::new("chain").expect("id");
        let (mut state, genesis) =
            State::genesis(ledger.clone(), DEFAULT_DOCUMENT, LedgerTime(1)).expect("genesis");
        let deposit = dev::proposal(
            &ledger,
            "alice",
            "SETTLEMENT.DEPOSIT_CONFIRMED",
            "s",
            Value::map([("amount", Value::Int(5)), ("currency", "EUR".into())]),
            vec![],
            1,
        );
        let mut entries = vec![genesis];
        entries.extend(
            state
                .submit(deposit, LedgerTime(2))
                .entries()
                .iter()
                .cloned(),
        );
        assert!(check(&[(1, entries.clone()), (2, entries.clone())]).is_empty());
        let mut tampered = entries;
        tampered[1].time = LedgerTime(3);
        assert_eq!(check(&[(1, tampered)]).len(), 1);
    }
}
