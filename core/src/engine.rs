//! The engine: turns commands into ledger entries.
//!
//! A command is "submit this proposal at ledger time t" (or "tick to t"). The engine
//!
//! 1. refuses duplicates: a proposal id already recorded appends nothing;
//! 2. clamps t to be non-decreasing;
//! 3. expires deferred proposals whose deferral ran out (`DEPENDENCY_EXPIRED`), in
//!    (expiry time, id) order, then releases whatever those rejections make ready;
//! 4. adjudicates the proposal and records the entry;
//! 5. releases waves: every deferred proposal made ready by the entries just recorded (a
//!    decision, or an effect's outcome reported through an `outcome_*` update) is
//!    re-adjudicated, all of one wave in ascending id order, each wave recorded before the
//!    next, until no proposal is ready.
//!
//! Every entry is applied through [`State::apply`] as soon as it is sealed, so what the
//! engine records and what replay reconstructs are the same by construction.

use std::collections::BTreeSet;

use crate::adjudicate::adjudicate_with;
use crate::code::RejectCode;
use crate::decision::{AccessDecision, AccessVerdict, Decision, Verdict};
use crate::id::{LedgerIndex, LedgerTime, ProposalId};
use crate::ledger::{Cause, DecisionRecord, LedgerEntry, Record};
use crate::proposal::SignedProposal;
use crate::signature::{SignatureCheck, Strict};
use crate::state::{Dependency, ProposalStatus, State};

/// Hard bound on waves released by one command. A wave decides at least one proposal and
/// the deferred set is bounded, so this is never reached; it turns a logic error into a
/// crash instead of a hang.
const WAVES_PER_COMMAND_MAX: u32 = 1_000_000;

/// What a submission did.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Submission {
    /// The entries recorded, in order: expirations (and what they released), the
    /// submitted proposal's own entry, then the waves it released.
    Recorded(Vec<LedgerEntry>),
    /// The id was already recorded; nothing was appended. `index` is the entry that holds
    /// its current decision (the final one, or the deferral while it waits).
    Duplicate {
        index: LedgerIndex,
        status: ProposalStatus,
    },
}

impl Submission {
    /// The entry recording the submitted proposal itself, if one was recorded.
    pub fn own_entry(&self, id: &ProposalId) -> Option<&LedgerEntry> {
        match self {
            Submission::Recorded(entries) => entries.iter().find(|e| {
                e.decision_record()
                    .is_some_and(|d| d.id == *id && d.cause == Cause::Submitted)
            }),
            Submission::Duplicate { .. } => None,
        }
    }

    pub fn entries(&self) -> &[LedgerEntry] {
        match self {
            Submission::Recorded(entries) => entries,
            Submission::Duplicate { .. } => &[],
        }
    }
}

impl State {
    /// Submits a signed proposal at ledger time `time` (clamped to be non-decreasing).
    pub fn submit(&mut self, proposal: SignedProposal, time: LedgerTime) -> Submission {
        self.submit_with(proposal, time, &Strict)
    }

    /// [`State::submit`], checking signatures through `signatures` (for example a
    /// [`VerifiedMemo`](crate::signature::VerifiedMemo) shared with a node's front door).
    /// The entries recorded are the same whichever [`SignatureCheck`] is used.
    pub fn submit_with(
        &mut self,
        proposal: SignedProposal,
        time: LedgerTime,
        signatures: &dyn SignatureCheck,
    ) -> Submission {
        let id = proposal.id();
        if let Some(record) = self.proposal(&id) {
            return Submission::Duplicate {
                index: record.index,
                status: record.status,
            };
        }
        let time = time.max(self.head.time);
        let mut out = self.tick_with(time, signatures);
        let verdict = adjudicate_with(self, &proposal, &id, time, signatures);
        let mut decided = Vec::new();
        out.push(self.record(proposal, id, Cause::Submitted, verdict, time, &mut decided));
        self.release(decided, time, &mut out, signatures);
        Submission::Recorded(out)
    }

    /// Advances ledger time to `time` (clamped): expires deferred proposals whose deferral
    /// ran out and releases what their rejection makes ready. Returns the entries recorded.
    pub fn tick(&mut self, time: LedgerTime) -> Vec<LedgerEntry> {
        self.tick_with(time, &Strict)
    }

    /// [`State::tick`], checking the signatures of released proposals through
    /// `signatures`.
    pub fn tick_with(
        &mut self,
        time: LedgerTime,
        signatures: &dyn SignatureCheck,
    ) -> Vec<LedgerEntry> {
        let time = time.max(self.head.time);
        let mut out = Vec::new();
        let due: Vec<ProposalId> = self
            .expiry
            .iter()
            .take_while(|(at, _)| *at <= time)
            .map(|(_, id)| *id)
            .collect();
        let mut decided = Vec::new();
        for id in &due {
            let deferred = self
                .deferred
                .get(id)
                .expect("invariant: expiry index matches deferred set");
            let proposal = deferred.proposal.clone();
            let constitution = self.constitution();
            let verdict = Verdict {
                decision: Decision::reject(
                    RejectCode::DependencyExpired,
                    format!(
                        "deferred at entry {} waiting on [{}]; expired at {}",
                        deferred.deferred_at,
                        deferred
                            .waiting_on
                            .iter()
                            .map(|d| d.short())
                            .collect::<Vec<_>>()
                            .join(", "),
                        deferred.expires_at.0
                    ),
                ),
                access: AccessDecision {
                    key: proposal.proposal.author,
                    principal: constitution
                        .principal(&proposal.proposal.author)
                        .map(|p| p.name.clone()),
                    role: None,
                    rule: "deferral_expiry_ms".to_owned(),
                    verdict: AccessVerdict::NotEvaluated,
                },
            };
            out.push(self.record(proposal, *id, Cause::Expired, verdict, time, &mut decided));
        }
        self.release(decided, time, &mut out, signatures);
        out
    }

    /// Seals an entry for a decision, applies it, and returns it. Adds to `decided` what the
    /// entry decided that dependents may wait on: the proposal's id if the decision is final,
    /// and the outcome references its admission settled.
    fn record(
        &mut self,
        proposal: SignedProposal,
        id: ProposalId,
        cause: Cause,
        verdict: Verdict,
        time: LedgerTime,
        decided: &mut Vec<ProposalId>,
    ) -> LedgerEntry {
        let is_final = verdict.decision.is_final();
        let entry = LedgerEntry::seal(
            self.head.index.next(),
            time,
            self.constitution_version(),
            self.head.hash,
            Record::Decision(Box::new(DecisionRecord {
                id,
                proposal,
                cause,
                decision: verdict.decision,
                access: verdict.access,
            })),
        );
        self.apply(&entry)
            .expect("invariant: an entry the engine just sealed applies to its state");
        if is_final {
            decided.push(id);
        }
        decided.append(&mut self.settled);
        entry
    }

    /// Releases waves of deferred proposals made ready by the decisions in `decided`
    /// (proposal ids and settled outcome references).
    fn release(
        &mut self,
        mut decided: Vec<ProposalId>,
        time: LedgerTime,
        out: &mut Vec<LedgerEntry>,
        signatures: &dyn SignatureCheck,
    ) {
        let mut wave = 0u32;
        loop {
            let ready: BTreeSet<ProposalId> = decided
                .iter()
                .filter_map(|id| self.waiting.get(id))
                .flatten()
                .copied()
                .filter(|id| self.is_ready(id))
                .collect();
            if ready.is_empty() {
                return;
            }
            wave += 1;
            assert!(wave <= WAVES_PER_COMMAND_MAX, "invariant: waves terminate");
            decided = Vec::with_capacity(ready.len());
            for id in ready {
                let proposal = self.deferred[&id].proposal.clone();
                let verdict = adjudicate_with(self, &proposal, &id, time, signatures);
                assert!(
                    verdict.decision.is_final(),
                    "invariant: a ready proposal is decided, not deferred again"
                );
                out.push(self.record(
                    proposal,
                    id,
                    Cause::Released { wave },
                    verdict,
                    time,
                    &mut decided,
                ));
            }
        }
    }

    /// A deferred proposal is ready when a dependency was rejected or failed, or when all
    /// are met.
    fn is_ready(&self, id: &ProposalId) -> bool {
        let Some(deferred) = self.deferred.get(id) else {
            return false;
        };
        let mut all_met = true;
        for dep in &deferred.waiting_on {
            match self.dependency(dep) {
                Dependency::Rejected | Dependency::Failed(_) => return true,
                Dependency::Met => {}
                Dependency::Pending => all_met = false,
            }
        }
        all_met
    }
}
