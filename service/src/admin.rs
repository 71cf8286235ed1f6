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
//!    not already recorded (`REPLAYED_REQUEST`): together these make a captured request
//!    useless — inside the window its id is already in the ledger, outside it is stale;
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

use docket_core::constitution::Constitution;
use docket_core::proposal::public_key;
use docket_core::{
    Decision, LedgerId, Proposal, ProposalId, PublicKey, RejectCode, SignedProposal, State, Value,
};
use docket_raft::Outcome;
use ed25519_dalek::SigningKey;

use crate::error::{ErrorCode, ServiceError};
use crate::service::Service;
use crate::wire::AdminRecord;

/// The constitution domain whose actions are cluster operations.
pub const ADMIN_DOMAIN: &str = "cluster";
/// The subject of `CLUSTER.INIT`; members are `node-N`.
pub const CLUSTER_SUBJECT: &str = "cluster";
/// How far an admin request's `issued_ms` may be from the leader's clock, either way (clock
/// skew between the operator's machine and the leader included).
pub const ADMIN_REQUEST_AGE_MAX_MS: u64 = 5 * 60 * 1000;

/// One cluster operation, as carried in an admin request's payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminOp {
    /// Write genesis with the constitution whose version (meaning hash) is `constitution`,
    /// at `node`, whose checkpoint key is `cosigner`.
    Init {
        constitution: String,
        node: u64,
        cosigner: PublicKey,
    },
    MemberAdd {
        node: u64,
        raft_addr: String,
        api_addr: String,
        learner: bool,
        /// The key the node cosigns checkpoints with (its status shows it).
        cosigner: PublicKey,
    },
    MemberPromote {
        node: u64,
    },
    MemberRemove {
        node: u64,
    },
}

impl AdminOp {
    /// The constitution action this operation is filed as.
    pub fn action(&self) -> &'static str {
        match self {
            AdminOp::Init { .. } => "CLUSTER.INIT",
            AdminOp::MemberAdd { .. } => "CLUSTER.MEMBER_ADD",
            AdminOp::MemberPromote { .. } => "CLUSTER.MEMBER_PROMOTE",
            AdminOp::MemberRemove { .. } => "CLUSTER.MEMBER_REMOVE",
        }
    }

    /// The node this operation changes, if it changes one.
    pub fn node(&self) -> Option<u64> {
        match self {
            AdminOp::Init { .. } => None,
            AdminOp::MemberAdd { node, .. }
            | AdminOp::MemberPromote { node }
            | AdminOp::MemberRemove { node } => Some(*node),
        }
    }

    pub fn subject(&self) -> String {
        match self.node() {
            Some(node) => format!("node-{node}"),
            None => CLUSTER_SUBJECT.to_owned(),
        }
    }

    /// The payload: the operation's fields and `issued_ms`.
    pub fn payload(&self, issued_ms: u64) -> Value {
        let issued = ("issued_ms", Value::Int(clamp(issued_ms)));
        match self {
            AdminOp::Init {
                constitution,
                node,
                cosigner,
            } => Value::map([
                ("constitution", Value::Str(constitution.clone())),
                ("node", Value::Int(clamp(*node))),
                ("cosigner", Value::Str(cosigner.to_hex())),
                issued,
            ]),
            AdminOp::MemberAdd {
                node,
                raft_addr,
                api_addr,
                learner,
                cosigner,
            } => Value::map([
                ("node", Value::Int(clamp(*node))),
                ("raft_addr", Value::Str(raft_addr.clone())),
                ("api_addr", Value::Str(api_addr.clone())),
                ("learner", Value::Bool(*learner)),
                ("cosigner", Value::Str(cosigner.to_hex())),
                issued,
            ]),
            AdminOp::MemberPromote { node } | AdminOp::MemberRemove { node } => {
                Value::map([("node", Value::Int(clamp(*node))), issued])
            }
        }
    }

    /// Signs this operation as the owner of `key`, for `ledger_id`, issued at `issued_ms`
    /// (the signer's clock, Unix milliseconds). `nonce` makes two otherwise identical
    /// requests distinct.
    pub fn sign(
        &self,
        ledger_id: &LedgerId,
        issued_ms: u64,
        nonce: u64,
        key: &SigningKey,
    ) -> SignedProposal {
        Proposal {
            format: Default::default(),
            ledger_id: ledger_id.clone(),
            domain: ADMIN_DOMAIN.to_owned(),
            action: self.action().to_owned(),
            subject: self.subject(),
            payload: self.payload(issued_ms),
            dependencies: Vec::new(),
            author: public_key(key),
            nonce,
        }
        .sign(key)
    }

    /// Reads the operation and its `issued_ms` from an admin request.
    pub fn parse(proposal: &Proposal) -> Result<(AdminOp, u64), String> {
        if proposal.domain != ADMIN_DOMAIN {
            return Err(format!(
                "an admin request is of domain {ADMIN_DOMAIN:?}, not {:?}",
                proposal.domain
            ));
        }
        if !proposal.dependencies.is_empty() {
            return Err("an admin request has no dependencies".to_owned());
        }
        let Value::Map(fields) = &proposal.payload else {
            return Err("the payload of an admin request is a map".to_owned());
        };
        let int = |name: &str| -> Result<u64, String> {
            match fields.get(name) {
                Some(Value::Int(v)) if *v >= 0 => Ok(*v as u64),
                _ => Err(format!(
                    "payload field {name:?} must be a non-negative integer"
                )),
            }
        };
        let string = |name: &str| -> Result<String, String> {
            match fields.get(name) {
                Some(Value::Str(v)) => Ok(v.clone()),
                _ => Err(format!("payload field {name:?} must be a string")),
            }
        };
        let key = |name: &str| -> Result<PublicKey, String> {
            match fields.get(name) {
                Some(Value::Str(v)) => docket_core::id::decode_hex::<32>(v)
                    .map(PublicKey)
                    .map_err(|_| format!("payload field {name:?} must be 64 hex characters")),
                _ => Err(format!(
                    "payload field {name:?} must be a key (64 hex characters)"
                )),
            }
        };
        let issued_ms = int("issued_ms")?;
        let op = match proposal.action.as_str() {
            "CLUSTER.INIT" => AdminOp::Init {
                constitution: string("constitution")?,
                node: int("node")?,
                cosigner: key("cosigner")?,
            },
            "CLUSTER.MEMBER_ADD" => AdminOp::MemberAdd {
                node: int("node")?,
                raft_addr: string("raft_addr")?,
                api_addr: string("api_addr")?,
                learner: match fields.get("learner") {
                    Some(Value::Bool(b)) => *b,
                    _ => return Err("payload field \"learner\" must be a bool".to_owned()),
                },
                cosigner: key("cosigner")?,
            },
            "CLUSTER.MEMBER_PROMOTE" => AdminOp::MemberPromote { node: int("node")? },
            "CLUSTER.MEMBER_REMOVE" => AdminOp::MemberRemove { node: int("node")? },
            other => return Err(format!("no cluster operation {other:?}")),
        };
        if proposal.subject != op.subject() {
            return Err(format!(
                "{} is filed on subject {:?}, not {:?}",
                op.action(),
                op.subject(),
                proposal.subject
            ));
        }
        Ok((op, issued_ms))
    }
}

/// The version (meaning hash, hex) of a constitution document: what `CLUSTER.INIT` signs.
pub fn constitution_version(document: &str) -> Result<String, ServiceError> {
    Constitution::parse(document)
        .map(|c| c.version().to_hex())
        .map_err(|e| {
            ServiceError::new(
                ErrorCode::MalformedRequest,
                format!("genesis constitution: {e}"),
            )
        })
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
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
        if skew > ADMIN_REQUEST_AGE_MAX_MS {
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
            } => Ok(AdminRecord {
                id: outcome.id,
                index,
            }),
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
