//! Plans: the proposals one program petitioned for (`docket petition`), recorded together.
//!
//! A plan passes the front door proposal by proposal, is put in its recording order by the
//! pure [`docket_core::plan::arrange`] (waves over its internal dependencies, each wave by
//! proposal id: the order depends on the set, not on how the program printed it), and goes
//! to the group-commit writer as **one** submission, so it lands in one Raft entry: all of
//! it or none of it, with nothing interleaved. Each member is then adjudicated by the core
//! like any proposal, after the members it depends on.

use docket_core::plan::{self, Placed, PlanError};
use docket_core::SignedProposal;

use crate::error::{ErrorCode, ServiceError};
use crate::service::Service;
use crate::wire::{PlanDryRunMember, PlanDryRunView, PlanMember, PlanResponse};

impl Service {
    /// Checks a plan (size, the front door for each member, its order) and returns its
    /// members in recording order with their places.
    fn arrange_plan(
        &self,
        proposals: Vec<SignedProposal>,
    ) -> Result<(Vec<SignedProposal>, Vec<Placed>), ServiceError> {
        let max = self.limits.batch_proposals_max;
        if proposals.is_empty() || proposals.len() > max {
            return Err(ServiceError::new(
                ErrorCode::LimitExceeded,
                format!(
                    "a plan holds 1 to {max} proposals (limits.batch_proposals_max); got {}",
                    proposals.len()
                ),
            ));
        }
        for (i, signed) in proposals.iter().enumerate() {
            self.check(signed).map_err(|e| ServiceError {
                message: format!("plan member {i}: {}", e.message),
                ..e
            })?;
        }
        plan::arrange(proposals).map_err(|error| {
            let code = match error {
                PlanError::Empty | PlanError::Duplicate { .. } | PlanError::Cycle { .. } => {
                    ErrorCode::MalformedRequest
                }
            };
            ServiceError::new(code, format!("not a plan: {error}"))
        })
    }

    /// Records a plan in one Raft entry and answers every member in recording order.
    pub async fn submit_plan(
        &self,
        proposals: Vec<SignedProposal>,
    ) -> Result<PlanResponse, ServiceError> {
        let (arranged, placed) = self.arrange_plan(proposals)?;
        let outcomes = self.write(arranged).await?;
        let responses = self.responses(outcomes)?;
        Ok(PlanResponse {
            members: placed
                .into_iter()
                .zip(responses)
                .map(|(place, result)| PlanMember {
                    input: place.input,
                    wave: place.wave,
                    result,
                })
                .collect(),
        })
    }

    /// What recording the plan now would decide for each member, recording nothing: the
    /// members are submitted in recording order to a scratch copy of this node's applied
    /// state (a linearizable caller runs [`Service::read_barrier`] first). The copy shares
    /// the settled rows with the live state, so a write applied meanwhile may show through.
    pub fn dry_run_plan(
        &self,
        proposals: Vec<SignedProposal>,
    ) -> Result<PlanDryRunView, ServiceError> {
        let (arranged, placed) = self.arrange_plan(proposals)?;
        let mut scratch = self
            .replica
            .with_state(|state| state.cloned())
            .ok_or_else(ServiceError::not_initialized)?;
        let ledger_length = scratch.head().index.0 + 1;
        let now = self.now();
        let signatures = self.replica.signatures().clone();
        let mut members = Vec::with_capacity(arranged.len());
        for (signed, place) in arranged.into_iter().zip(placed) {
            let submission = scratch.submit_with(signed, now, signatures.as_ref());
            let (decision, access, recorded) = match &submission {
                docket_core::Submission::Recorded(_) => {
                    let record = submission
                        .own_entry(&place.id)
                        .and_then(|e| e.decision_record())
                        .ok_or_else(|| {
                            ServiceError::internal("a dry-run submission recorded no entry")
                        })?;
                    (record.decision.clone(), Some(record.access.clone()), false)
                }
                docket_core::Submission::Duplicate { index, .. } => {
                    let entry = self
                        .replica
                        .ledger_entry(*index)
                        .map_err(ServiceError::storage)?
                        .ok_or_else(|| ServiceError::storage("missing entry"))?;
                    let record = entry.decision_record().ok_or_else(|| {
                        ServiceError::internal("a proposal's entry holds no decision")
                    })?;
                    (record.decision.clone(), Some(record.access.clone()), true)
                }
            };
            members.push(PlanDryRunMember {
                input: place.input,
                wave: place.wave,
                id: place.id,
                decision,
                access,
                recorded,
            });
        }
        Ok(PlanDryRunView {
            ledger_length,
            members,
        })
    }
}
