//! A ledger the core builds proposal by proposal, for the checkers' tests: the honest
//! history a negative test then doctors.

use docket_core::constitution::DEFAULT_DOCUMENT;
use docket_core::{
    dev, LedgerEntry, LedgerId, LedgerTime, ProposalId, SignedProposal, State, Value,
};

/// Genesis under the default constitution, then whatever the test files.
pub(crate) struct CoreLedger {
    pub id: LedgerId,
    pub state: State,
    pub entries: Vec<LedgerEntry>,
    nonce: u64,
}

impl CoreLedger {
    pub fn new() -> CoreLedger {
        let id = LedgerId::new("sim").expect("valid");
        let (state, genesis) =
            State::genesis(id.clone(), DEFAULT_DOCUMENT, LedgerTime(1)).expect("genesis");
        CoreLedger {
            id,
            state,
            entries: vec![genesis],
            nonce: 0,
        }
    }

    /// Signs a proposal of development principal `author`, with the next nonce.
    pub fn sign(
        &mut self,
        author: &str,
        action: &str,
        subject: &str,
        payload: Value,
        deps: Vec<ProposalId>,
    ) -> SignedProposal {
        self.nonce += 1;
        dev::proposal(&self.id, author, action, subject, payload, deps, self.nonce)
    }

    /// Submits `proposal` at ledger time `time`, keeping the entries it records.
    pub fn submit(&mut self, proposal: SignedProposal, time: u64) {
        let submission = self.state.submit(proposal, LedgerTime(time));
        self.entries.extend(submission.entries().iter().cloned());
    }

    /// Signs and submits at once, one millisecond per proposal; answers its id.
    pub fn file(
        &mut self,
        author: &str,
        action: &str,
        subject: &str,
        payload: Value,
        deps: Vec<ProposalId>,
    ) -> ProposalId {
        let proposal = self.sign(author, action, subject, payload, deps);
        let id = proposal.id();
        self.submit(proposal, 1 + self.nonce);
        id
    }
}
