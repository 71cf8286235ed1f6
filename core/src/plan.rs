//! Plans: the proposals one program petitioned for together (seed 004, §6).
//!
//! A program prints effect descriptions in whatever order it likes; docket turns them into
//! proposals and records them as one **plan**, in one command, in an order that depends on
//! the set alone:
//!
//! * **waves**: a proposal's wave is 0 when none of its dependencies is in the plan, else
//!   one more than the highest wave among the plan members it depends on (directly, or
//!   through the member's outcome reference, [`ProposalId::outcome_of`]);
//! * **within a wave, by proposal id**, ascending.
//!
//! So every permutation of the same set records the same ledger order, and a member is
//! always adjudicated after the members it depends on. Ids cover dependencies, so a cycle
//! among ids cannot be built (a program's labels can form one: the petition tool refuses
//! it before any id exists); [`order`] still checks, because it is cheap and a plan is
//! input.

use std::collections::BTreeMap;

use crate::id::ProposalId;
use crate::proposal::SignedProposal;

/// Why a set of proposals is not a plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("a plan holds at least one proposal")]
    Empty,
    #[error("proposals {first} and {second} of the plan are the same proposal {id}")]
    Duplicate {
        first: usize,
        second: usize,
        id: ProposalId,
    },
    #[error("the plan's dependencies form a cycle through proposal {index} ({id})")]
    Cycle { index: usize, id: ProposalId },
}

/// One member of an ordered plan.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Placed {
    /// Where the member was in the input.
    pub input: usize,
    pub id: ProposalId,
    pub wave: u32,
}

/// The recording order of a plan: members by (wave, id). O(n log n + dependencies).
pub fn order(proposals: &[SignedProposal]) -> Result<Vec<Placed>, PlanError> {
    if proposals.is_empty() {
        return Err(PlanError::Empty);
    }
    let ids: Vec<ProposalId> = proposals.iter().map(SignedProposal::id).collect();
    // A member is named by its id and by its outcome reference.
    let mut member: BTreeMap<ProposalId, usize> = BTreeMap::new();
    for (i, id) in ids.iter().enumerate() {
        if let Some(first) = member.insert(*id, i) {
            return Err(PlanError::Duplicate {
                first,
                second: i,
                id: *id,
            });
        }
        member.insert(id.outcome_of(), i);
    }
    let inside: Vec<Vec<usize>> = proposals
        .iter()
        .map(|p| {
            let mut deps: Vec<usize> = p
                .proposal
                .dependencies
                .iter()
                .filter_map(|d| member.get(d).copied())
                .collect();
            deps.sort_unstable();
            deps.dedup();
            deps
        })
        .collect();
    // Kahn's algorithm, layer by layer.
    let mut waiting: Vec<usize> = inside.iter().map(Vec::len).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); proposals.len()];
    for (i, deps) in inside.iter().enumerate() {
        for &d in deps {
            dependents[d].push(i);
        }
    }
    let mut wave_of = vec![0u32; proposals.len()];
    let mut layer: Vec<usize> = (0..proposals.len()).filter(|&i| waiting[i] == 0).collect();
    let mut placed = 0;
    let mut wave = 0u32;
    while !layer.is_empty() {
        let mut next = Vec::new();
        for &i in &layer {
            wave_of[i] = wave;
            placed += 1;
            for &j in &dependents[i] {
                waiting[j] -= 1;
                if waiting[j] == 0 {
                    next.push(j);
                }
            }
        }
        layer = next;
        wave += 1;
    }
    if placed < proposals.len() {
        let index = (0..proposals.len())
            .find(|&i| waiting[i] > 0)
            .expect("invariant: an unplaced member is still waiting");
        return Err(PlanError::Cycle {
            index,
            id: ids[index],
        });
    }
    let mut out: Vec<Placed> = (0..proposals.len())
        .map(|i| Placed {
            input: i,
            id: ids[i],
            wave: wave_of[i],
        })
        .collect();
    out.sort_by_key(|p| (p.wave, p.id));
    Ok(out)
}

/// The plan's proposals in recording order, with their places.
pub fn arrange(
    proposals: Vec<SignedProposal>,
) -> Result<(Vec<SignedProposal>, Vec<Placed>), PlanError> {
    let placed = order(&proposals)?;
    let mut slots: Vec<Option<SignedProposal>> = proposals.into_iter().map(Some).collect();
    let arranged = placed
        .iter()
        .map(|p| {
            slots[p.input]
                .take()
                .expect("invariant: each member is placed once")
        })
        .collect();
    Ok((arranged, placed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev;
    use crate::id::LedgerId;
    use crate::proposal::{Proposal, ProposalFormat};
    use crate::value::Value;
    use proptest::prelude::*;

    fn proposal(nonce: u64, dependencies: Vec<ProposalId>) -> SignedProposal {
        let mut p = Proposal {
            format: ProposalFormat::V1,
            ledger_id: LedgerId::new("plan-test").expect("valid"),
            domain: "file".into(),
            action: "FILE.WRITE".into(),
            subject: format!("f{nonce}"),
            payload: Value::map([("path", Value::Str(format!("f{nonce}")))]),
            dependencies,
            author: dev::key("alice"),
            nonce,
        };
        p.normalize();
        p.sign(&dev::signing_key("alice"))
    }

    /// A random DAG: member i may depend on members before it (by id or by outcome).
    fn dag(edges: &[(usize, usize, bool)], n: usize) -> Vec<SignedProposal> {
        let mut built: Vec<SignedProposal> = Vec::new();
        for i in 0..n {
            let deps = edges
                .iter()
                .filter(|(to, from, _)| *to == i && *from < i)
                .map(|(_, from, outcome)| {
                    let id = built[*from].id();
                    if *outcome {
                        id.outcome_of()
                    } else {
                        id
                    }
                })
                .collect();
            built.push(proposal(i as u64, deps));
        }
        built
    }

    proptest! {
        /// The recorded order depends on the set, never on the order it was given in, and
        /// every member comes after the members it depends on.
        #[test]
        fn order_is_independent_of_input_order(
            n in 1usize..12,
            edges in proptest::collection::vec((0usize..12, 0usize..12, any::<bool>()), 0..24),
            shuffle in proptest::collection::vec(any::<u32>(), 12),
        ) {
            let set = dag(&edges, n);
            let mut permuted: Vec<(u32, SignedProposal)> =
                shuffle.iter().copied().zip(set.iter().cloned()).collect();
            permuted.sort_by_key(|(k, p)| (*k, p.id()));
            let permuted: Vec<SignedProposal> = permuted.into_iter().map(|(_, p)| p).collect();
            let a: Vec<ProposalId> = order(&set).expect("a plan").iter().map(|p| p.id).collect();
            let b: Vec<ProposalId> = order(&permuted).expect("a plan").iter().map(|p| p.id).collect();
            prop_assert_eq!(&a, &b);
            let position: BTreeMap<ProposalId, usize> =
                a.iter().enumerate().map(|(i, id)| (*id, i)).collect();
            for p in &set {
                for dep in &p.proposal.dependencies {
                    let target = set.iter().find(|q| q.id() == *dep || q.id().outcome_of() == *dep);
                    if let Some(q) = target {
                        prop_assert!(position[&q.id()] < position[&p.id()]);
                    }
                }
            }
        }
    }

    #[test]
    fn waves_sort_by_id_and_follow_dependencies() {
        let a = proposal(1, vec![]);
        let b = proposal(2, vec![]);
        let c = proposal(3, vec![a.id().outcome_of(), a.id()]);
        let d = proposal(4, vec![c.id()]);
        let placed = order(&[d.clone(), c.clone(), b.clone(), a.clone()]).expect("a plan");
        let waves: Vec<(u32, ProposalId)> = placed.iter().map(|p| (p.wave, p.id)).collect();
        let mut first = [(0, a.id()), (0, b.id())];
        first.sort();
        assert_eq!(&waves[..2], &first[..]);
        assert_eq!(waves[2], (1, c.id()));
        assert_eq!(waves[3], (2, d.id()));
    }

    #[test]
    fn duplicates_and_empty_plans_are_refused() {
        let a = proposal(1, vec![]);
        assert_eq!(order(&[]), Err(PlanError::Empty));
        assert!(matches!(
            order(&[a.clone(), a.clone()]),
            Err(PlanError::Duplicate {
                first: 0,
                second: 1,
                ..
            })
        ));
    }
}
