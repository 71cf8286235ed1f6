//! Governed administration: cluster operations are signed requests the constitution
//! authorizes, recorded in the ledger before the change is made.
//!
//! An admin request is a [`SignedProposal`] of domain [`ADMIN_DOMAIN`] (`cluster`), one
//! action per operation ([`AdminOp`]). It reaches the service only through the admin
//! routes (init and membership); `/v1/proposals` refuses the domain, so an admitted
//! `CLUSTER.*` entry always stands for a change the leader went on to make. The leader,
//! holding the admin lock (one operation at a time):
//!
//! 1. checks the front door (ledger id, strict signature);
//! 2. checks the request is the one this route performs (action, node id), fresh
//!    (`issued_ms` within [`ADMIN_REQUEST_AGE_MAX_MS`] of its clock: `STALE_REQUEST`) and
//!    not already recorded (`REPLAYED_REQUEST`): a performed request cannot be performed
//!    again, and any request is useless after its window (one refused after this point is
//!    not recorded, so it stays usable until then: ARCHITECTURE.md, "Captured requests");
//! 3. adjudicates it against its current state — the same pure [`docket_core::adjudicate`]
//!    every proposal goes through — and refuses anything but `Admit` (`UNAUTHORIZED` for
//!    the access decision, `ADMIN_REFUSED` for any other rule) with nothing recorded;
//! 4. runs the operation's own guardrails (reachability, history, quorum safety);
//! 5. records the request through consensus (every replica adjudicates it again, and the
//!    entry carries the access decision: principal, role, rule);
//! 6. makes the change.
//!
//! Recording comes before the change because the two are separate Raft entries: a crash
//! between them leaves a recorded request whose change was not made (retry it with a
//! fresh signature), never a change nobody recorded. `docket member list` shows what
//! membership is; the ledger shows who asked for it and under which rule.

use docket_core::{Decision, ProposalId, RejectCode, SignedProposal, State};
use docket_raft::Outcome;

pub use docket_api::admin::{AdminOp, ADMIN_DOMAIN, ADMIN_REQUEST_AGE_MAX_MS, CLUSTER_SUBJECT};

use crate::error::{ErrorCode, ServiceError};
use crate::service::Service;
use crate::wire::AdminRecord;

/// The version (meaning hash, hex) of a constitution document: what `CLUSTER.INIT` signs.
pub fn constitution_version(document: &str) -> Result<String, ServiceError> {
    docket_api::admin::constitution_version(document)
        .map_err(|e| ServiceError::new(ErrorCode::MalformedRequest, e))
}

impl Service {
    /// Steps 1 to 3 of the module docs for a request `route` performs (`route` names the
    /// operation it expects, by action), judged against `state`. Returns the operation.
    pub(crate) fn authorize(
        &self,
        signed: &SignedProposal,
        route: &str,
        state: &State,
    ) -> Result<(AdminOp, ProposalId), ServiceError> {
        self.authorize_with(signed, route, state, true)
    }

    /// [`Service::authorize`], with the freshness check only when `fresh` (a recovery
    /// record has none: see [`Service::record_recovery`]).
    fn authorize_with(
        &self,
        signed: &SignedProposal,
        route: &str,
        state: &State,
        fresh: bool,
    ) -> Result<(AdminOp, ProposalId), ServiceError> {
        let id = self.check_signed(signed)?;
        let (op, issued_ms) = AdminOp::parse(&signed.proposal).map_err(|e| {
            ServiceError::new(ErrorCode::MalformedRequest, format!("admin request: {e}"))
        })?;
        if op.action() != route {
            return Err(ServiceError::new(
                ErrorCode::MalformedRequest,
                format!(
                    "this route performs {route}; the request is signed for {}",
                    op.action()
                ),
            ));
        }
        let now = self.now().0;
        let skew = now.abs_diff(issued_ms);
        if fresh && skew > ADMIN_REQUEST_AGE_MAX_MS {
            return Err(ServiceError::new(
                ErrorCode::StaleRequest,
                format!(
                    "admin request {} was issued at {issued_ms} ms, {skew} ms from this \
                     leader's clock ({now} ms); requests are accepted within {} ms. Sign it \
                     again (and check the clocks)",
                    id.short(),
                    ADMIN_REQUEST_AGE_MAX_MS
                ),
            ));
        }
        if let Some(record) = state.proposal(&id) {
            return Err(ServiceError::new(
                ErrorCode::ReplayedRequest,
                format!(
                    "admin request {id} is already recorded (entry #{}); a request is \
                     performed once. Sign a new one to repeat the operation",
                    record.index
                ),
            ));
        }
        let verdict = docket_core::adjudicate(state, signed, &id, self.now());
        match verdict.decision {
            Decision::Admit => Ok((op, id)),
            Decision::Reject(rejection) => {
                let code = if rejection.code == RejectCode::Unauthorized {
                    ErrorCode::Unauthorized
                } else {
                    ErrorCode::AdminRefused
                };
                Err(ServiceError::new(
                    code,
                    format!(
                        "the constitution refuses {}: {} {} ({}); nothing was recorded or \
                         changed",
                        op.action(),
                        rejection.code,
                        rejection.detail,
                        verdict.access
                    ),
                ))
            }
            Decision::Defer { .. } => Err(ServiceError::new(
                ErrorCode::AdminRefused,
                format!(
                    "{} would be deferred; admin requests are decided at once",
                    op.action()
                ),
            )),
        }
    }

    /// [`Service::authorize`] against this node's applied state.
    pub(crate) fn authorize_here(
        &self,
        signed: &SignedProposal,
        route: &str,
    ) -> Result<(AdminOp, ProposalId), ServiceError> {
        self.replica
            .with_state(|state| state.map(|state| self.authorize(signed, route, state)))
            .ok_or_else(ServiceError::not_initialized)?
    }

    /// Files the `CLUSTER.RECOVERED` request the operator signed with `docket recover`,
    /// which the recovered node reads from its data directory on its first start: the
    /// front door, the replay check and adjudication as for any admin request, then
    /// recorded through consensus. There is no route for it, and no freshness window: the
    /// request reaches the node only through its data directory, and the node may first
    /// start long after the operator signed. It must name this node.
    pub async fn record_recovery(
        &self,
        signed: SignedProposal,
    ) -> Result<AdminRecord, ServiceError> {
        let _turn = self.admin_turn().await?;
        let (op, _) = self
            .replica
            .with_state(|state| {
                state.map(|state| self.authorize_with(&signed, "CLUSTER.RECOVERED", state, false))
            })
            .ok_or_else(ServiceError::not_initialized)??;
        if op.node() != Some(self.id) {
            return Err(ServiceError::new(
                ErrorCode::MalformedRequest,
                format!(
                    "the recovery request names node {:?}; this is node {}",
                    op.node(),
                    self.id
                ),
            ));
        }
        self.record(signed).await
    }

    /// Step 5: records an authorized request through consensus; `Err` unless it is admitted.
    pub(crate) async fn record(&self, signed: SignedProposal) -> Result<AdminRecord, ServiceError> {
        let action = signed.proposal.action.clone();
        let outcomes = self.write(vec![signed]).await?;
        let Some(outcome) = outcomes.into_iter().next() else {
            return Err(ServiceError::internal("the writer answered no outcome"));
        };
        match outcome.outcome {
            Outcome::Recorded {
                index,
                decision: Decision::Admit,
                ..
            } => {
                let term = self.raft.metrics().borrow().current_term;
                tracing::info!(proposal_id = %outcome.id.short(), %index, term, %action,
                    "cluster operation recorded");
                Ok(AdminRecord {
                    id: outcome.id,
                    index,
                })
            }
            Outcome::Recorded {
                index, decision, ..
            } => Err(ServiceError::new(
                ErrorCode::AdminRefused,
                format!(
                    "{action} was recorded at #{index} as {} (the state changed since it was \
                     checked); the change was not made",
                    decision.label()
                ),
            )),
            Outcome::Duplicate { index, .. } => Err(ServiceError::new(
                ErrorCode::ReplayedRequest,
                format!(
                    "{action} {} is already recorded (entry #{index})",
                    outcome.id
                ),
            )),
        }
    }

    /// The admin lock: one cluster operation at a time, so two copies of one request
    /// cannot both pass the replay check before either is recorded.
    pub(crate) async fn admin_turn(&self) -> Result<tokio::sync::MutexGuard<'_, ()>, ServiceError> {
        let wait = self.timing.membership_timeout;
        tokio::time::timeout(wait, self.admin_lock.lock())
            .await
            .map_err(|_| {
                ServiceError::new(
                    ErrorCode::Overloaded,
                    format!(
                        "another cluster operation has been running for over {} ms; retry \
                         once it is done",
                        wait.as_millis()
                    ),
                )
            })
    }
}
