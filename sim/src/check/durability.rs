//! Durability: every proposal whose fate was acknowledged to a client is, at the end, in
//! the ledger of every member, at the index and with the decision the client was told.
//!
//! "Acknowledged" means the client got an answer naming the entry (`Recorded`, or a plan
//! member's entry) or the existing record (`Duplicate`); errors and timeouts acknowledge
//! nothing.

use std::collections::BTreeMap;

use docket_core::LedgerEntry;
use docket_raft::NodeId;

use super::Violation;
use crate::history::History;

const NAME: &str = "durability";

/// Violations kept per run.
const VIOLATIONS_MAX: usize = 8;

/// `canonical`: the agreed ledger; `members`: each final member's ledger length.
pub fn check(
    history: &History,
    canonical: &[LedgerEntry],
    members: &BTreeMap<NodeId, u64>,
) -> Vec<Violation> {
    let mut violations = Vec::new();
    for op in &history.ops {
        if violations.len() >= VIOLATIONS_MAX {
            break;
        }
        let Some(ack) = op.result.ack() else {
            continue;
        };
        let (index, decision) = (ack.index.0, ack.decision);
        let what = format!(
            "proposal {} acknowledged to client {} at {:.3}ms as entry {index}",
            ack.id.short(),
            op.client,
            op.returned_ns.unwrap_or(0) as f64 / 1e6
        );
        match canonical.get(index as usize) {
            None => {
                violations.push(Violation::new(
                    NAME,
                    format!("{what}: no replica ever had entry {index}"),
                ));
                continue;
            }
            Some(entry) => {
                let record = entry.decision_record();
                if record.map(|r| r.id) != Some(ack.id) {
                    violations.push(Violation::new(
                        NAME,
                        format!("{what}: entry {index} records another proposal"),
                    ));
                    continue;
                }
                if let (Some(told), Some(record)) = (decision, record) {
                    if *told != record.decision {
                        violations.push(Violation::new(
                            NAME,
                            format!(
                                "{what}: client told {}, ledger says {}",
                                told.label(),
                                record.decision.label()
                            ),
                        ));
                    }
                }
            }
        }
        for (node, len) in members {
            if *len <= index {
                violations.push(Violation::new(
                    NAME,
                    format!("{what}: member n{node} ends with only {len} entries"),
                ));
                break;
            }
        }
    }
    violations
}
