//! Client histories: every operation a simulated client invoked, with simulated invocation
//! and response times and what it was told.

use docket_core::ProposalId;
use docket_raft::{NodeId, ProposalOutcome};

use docket_service::ErrorCode;

use crate::api::SubjectRead;

/// What a client asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// A submission of one proposal (possibly a resubmission of an earlier one).
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

/// All operations of a run, in invocation order.
#[derive(Debug, Default)]
pub struct History {
    pub ops: Vec<Op>,
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
