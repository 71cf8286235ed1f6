//! Client histories: every operation a simulated client invoked, with simulated invocation
//! and response times and what it was told.

use docket_core::{Decision, LedgerIndex, ProposalId, SignedProposal};
use docket_raft::{NodeId, Outcome, ProposalOutcome};

use docket_service::ErrorCode;

use crate::api::SubjectRead;

/// What a client asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// A submission of one proposal (possibly a resubmission of an earlier one), or of one
    /// member of a plan: a plan's submission is one operation per member, invoked and
    /// answered together (the plans themselves are in [`crate::world::Shared::plans`]).
    Submit {
        id: ProposalId,
        domain: String,
        subject: String,
    },
    Read {
        domain: String,
        subject: String,
    },
}

/// What it was told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpResult {
    /// No answer yet (still in flight at the end of the run).
    Pending,
    Submitted(ProposalOutcome),
    /// A plan member's answer (what a client reads of the service's `PlanMember`).
    Planned(PlanAck),
    Read {
        subject: Option<SubjectRead>,
        served_by: NodeId,
        /// The read index it waited for (`None`: served without one).
        read_index: Option<u64>,
    },
    /// An error: the operation may or may not have taken effect (indeterminate), except
    /// for errors that say it was not attempted.
    Failed(ErrorCode),
}

/// One member of a recorded plan, as the service answered it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PlanAck {
    pub id: ProposalId,
    /// Where the member was in the plan as submitted.
    pub input: usize,
    pub wave: u32,
    /// Its own entry, or for a duplicate the entry that holds its current decision.
    pub index: LedgerIndex,
    pub duplicate: bool,
    pub decision: Decision,
}

/// What an acknowledged submission told its client: the proposal, the entry index, and
/// the decision recorded there (`None` for a duplicate: the entry holds whatever the
/// proposal's current decision is).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack<'a> {
    pub id: ProposalId,
    pub index: LedgerIndex,
    pub decision: Option<&'a Decision>,
}

impl OpResult {
    /// The acknowledgement, if the client was told the proposal's entry.
    pub fn ack(&self) -> Option<Ack<'_>> {
        match self {
            OpResult::Submitted(ProposalOutcome { id, outcome }) => Some(match outcome {
                Outcome::Recorded {
                    index, decision, ..
                } => Ack {
                    id: *id,
                    index: *index,
                    decision: Some(decision),
                },
                Outcome::Duplicate { index, .. } => Ack {
                    id: *id,
                    index: *index,
                    decision: None,
                },
            }),
            OpResult::Planned(ack) => Some(Ack {
                id: ack.id,
                index: ack.index,
                decision: (!ack.duplicate).then_some(&ack.decision),
            }),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Op {
    pub client: u32,
    /// The node the client sent it to.
    pub node: NodeId,
    pub kind: OpKind,
    pub invoked_ns: u128,
    /// `None` while pending.
    pub returned_ns: Option<u128>,
    pub result: OpResult,
}

/// All operations of a run, in invocation order, and the plans clients submitted.
#[derive(Debug, Default)]
pub struct History {
    pub ops: Vec<Op>,
    /// Every plan a client submitted (once, however often it was sent), its members in
    /// the order the client printed them.
    pub plans: Vec<Vec<SignedProposal>>,
}

impl History {
    /// Records an invocation; returns its index for [`History::complete`].
    pub fn invoke(&mut self, client: u32, node: NodeId, kind: OpKind, at_ns: u128) -> usize {
        self.ops.push(Op {
            client,
            node,
            kind,
            invoked_ns: at_ns,
            returned_ns: None,
            result: OpResult::Pending,
        });
        self.ops.len() - 1
    }

    pub fn complete(&mut self, op: usize, result: OpResult, at_ns: u128) {
        let op = &mut self.ops[op];
        op.returned_ns = Some(at_ns);
        op.result = result;
    }
}
