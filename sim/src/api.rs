//! The client API of a simulated node, over turmoil TCP: a thin adapter over the node's
//! own service ([`docket_service::Service`]), as `node/src/api` is over HTTP.
//!
//! Every request runs the code the node runs: the front door, the group-commit writer
//! (stamped with the simulated clock), linearizable reads through shared read-index
//! rounds (a follower asks the leader for its read index through [`SimPeers`]), and
//! membership with its guardrails (probes and history checks through [`SimPeers`] too).
//! When the service answers `NOT_LEADER` with a leader, the request is forwarded there
//! once, and a forward that got no answer is explained as the node explains it
//! ([`ServiceError::forward_failed`]). What is the simulator's own: the framing (one
//! request per connection, length-delimited bincode frames), the deadlines on both sides
//! (turmoil's TCP never retransmits, so a lost segment stalls a stream forever), and the
//! [`Variant::LocalReads`] negative control, which skips the read barrier.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use docket_core::constitution::DEFAULT_DOCUMENT;
use docket_core::{EntryHash, LedgerTime, SignedProposal};
use docket_raft::{codec, NodeId, ProposalOutcome};
use docket_service::admin::AdminOp;
use docket_service::wire::Consistency;
use docket_service::{
    ErrorCode, ForwardFailure, PeerHistory, Peers, ReadIndexResponse, Service, ServiceError,
};
use futures::future::BoxFuture;
use futures::{FutureExt, SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::config::Variant;
use crate::history::PlanAck;

/// Largest API frame (a submission of a few proposals, or a read answer).
pub const API_FRAME_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Server-side deadline for one request, forwarding included. Longer than a client's own
/// deadline would be pointless; shorter lets a node give up on a write stuck behind a
/// partition and answer `Timeout` (the write may still commit: an indeterminate outcome).
pub const SERVER_DEADLINE: Duration = Duration::from_secs(2);

/// Server-side deadline of a membership change: a probe, a history check, the change's
/// two commits and, for an added node, its catch-up.
pub const ADMIN_SERVER_DEADLINE: Duration = Duration::from_secs(4);

/// Deadline for each step of a follower's read-index round: the leader's answer to
/// [`Request::ReadIndex`], then the local apply of that index. Two of them leave room in
/// [`SERVER_DEADLINE`] to forward the read to the leader when the round fails.
pub const READ_INDEX_DEADLINE: Duration = Duration::from_millis(500);

/// Epoch of ledger time in the simulation: simulated time zero is this many ms since
/// 1970 (2026-01-01T00:00:00Z), so ledger times look like real ones.
pub const LEDGER_EPOCH_MS: u64 = 1_767_225_600_000;

/// A subject as read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectRead {
    pub state: String,
    /// Index of the last admitted entry that touched the subject: the register value the
    /// linearizability checker reasons about.
    pub last_index: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Request {
    Submit(Vec<SignedProposal>),
    /// A plan: the service's `submit_plan` (as the node's `POST /v1/plans`), recorded in
    /// its order (waves, then ids) as one submission.
    Plan(Vec<SignedProposal>),
    Read {
        domain: String,
        subject: String,
    },
    /// Governed init at the receiving node: a signed `CLUSTER.INIT` naming it (the
    /// service's `init_ledger`: genesis with the default constitution, then the request
    /// recorded; Raft's membership is bootstrapped at boot).
    Init(Box<SignedProposal>),
    /// A governed cluster operation: a signed `CLUSTER.MEMBER_*` request (the service's
    /// `add_member`, `promote_member` or `remove_member`, by the operation it carries).
    Admin(Box<SignedProposal>),
    /// Internal, follower to leader: the leader's read index, for a follower's
    /// linearizable read; the follower names itself and its genesis. Never forwarded.
    ReadIndex {
        from: NodeId,
        genesis: Option<EntryHash>,
    },
    /// Internal, leader to a node being added: which history it holds. Never forwarded.
    History,
}

impl Request {
    fn is_write(&self) -> bool {
        !matches!(
            self,
            Request::Read { .. } | Request::ReadIndex { .. } | Request::History
        )
    }

    fn deadline(&self) -> Duration {
        match self {
            Request::Admin(_) => ADMIN_SERVER_DEADLINE,
            _ => SERVER_DEADLINE,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Envelope {
    /// Set by a node forwarding to the leader: the leader must not forward again.
    pub forwarded: bool,
    pub request: Request,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Submitted(Vec<ProposalOutcome>),
    /// A plan's members in recorded order: what a client reads of the service's
    /// `PlanResponse` (each member's entry index and decision, not the whole entry).
    Planned(Vec<PlanAck>),
    Read {
        subject: Option<SubjectRead>,
        served_by: NodeId,
        /// The read index the read waited for (`None`: served without one).
        read_index: Option<u64>,
    },
    Done,
    /// The leader's answer to [`Request::ReadIndex`]: the log index a read must wait for
    /// (`None`: nothing committed yet) and the leader's genesis.
    ReadIndex(ReadIndexResponse),
    History(PeerHistory),
    /// The service's error table, as the node's HTTP API answers it.
    Error {
        code: ErrorCode,
        message: String,
    },
}

impl From<ServiceError> for Response {
    fn from(error: ServiceError) -> Response {
        Response::Error {
            code: error.code,
            message: error.message,
        }
    }
}

fn framed<S: tokio::io::AsyncRead + tokio::io::AsyncWrite>(
    stream: S,
) -> Framed<S, LengthDelimitedCodec> {
    Framed::new(
        stream,
        LengthDelimitedCodec::builder()
            .max_frame_length(API_FRAME_BYTES_MAX)
            .new_codec(),
    )
}

/// Sends one request to `addr` and waits for the answer, within `deadline`. A call that
/// got no answer is answered as a forwarding node would answer it: `NO_LEADER` when no
/// connection opened, `TIMEOUT`, or `OUTCOME_UNKNOWN` for a write whose connection broke.
pub async fn call(addr: &str, envelope: &Envelope, deadline: Duration) -> Response {
    let (failure, message) = match tokio::time::timeout(deadline, call_inner(addr, envelope)).await
    {
        Ok(Ok(response)) => return response,
        Ok(Err((failure, e))) => (failure, e.to_string()),
        Err(_) => (ForwardFailure::TimedOut, format!("no answer from {addr}")),
    };
    ServiceError::forward_failed(failure, addr, envelope.request.is_write(), message).into()
}

async fn call_inner(
    addr: &str,
    envelope: &Envelope,
) -> Result<Response, (ForwardFailure, io::Error)> {
    let stream = turmoil::net::TcpStream::connect(addr)
        .await
        .map_err(|e| (ForwardFailure::NotConnected, e))?;
    let broken = |e: io::Error| (ForwardFailure::Broken, e);
    let mut conn = framed(stream);
    let bytes = codec::encode(envelope).map_err(|e| {
        (
            ForwardFailure::NotConnected,
            io::Error::new(io::ErrorKind::InvalidData, e),
        )
    })?;
    conn.send(tokio_util::bytes::Bytes::from(bytes))
        .await
        .map_err(broken)?;
    match conn.next().await {
        Some(frame) => codec::decode(&frame.map_err(broken)?)
            .map_err(|e| broken(io::Error::new(io::ErrorKind::InvalidData, e))),
        None => Err(broken(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "node closed the connection",
        ))),
    }
}

/// The service's [`Peers`] over the simulated network: the same requests, over turmoil.
#[derive(Clone, Copy, Debug)]
pub struct SimPeers {
    /// The node asking.
    pub id: NodeId,
}

impl Peers for SimPeers {
    fn read_index<'a>(
        &'a self,
        leader_api: &'a str,
        genesis: Option<EntryHash>,
        deadline: Duration,
    ) -> BoxFuture<'a, Result<ReadIndexResponse, String>> {
        async move {
            let envelope = Envelope {
                forwarded: true,
                request: Request::ReadIndex {
                    from: self.id,
                    genesis,
                },
            };
            match call(leader_api, &envelope, deadline).await {
                Response::ReadIndex(answer) => Ok(answer),
                other => Err(format!("no read index from the leader: {other:?}")),
            }
        }
        .boxed()
    }

    fn raft_reachable<'a>(&'a self, raft_addr: &'a str, deadline: Duration) -> BoxFuture<'a, bool> {
        async move {
            let connect = turmoil::net::TcpStream::connect(raft_addr);
            matches!(tokio::time::timeout(deadline, connect).await, Ok(Ok(_)))
        }
        .boxed()
    }

    fn history<'a>(
        &'a self,
        api_addr: &'a str,
        deadline: Duration,
    ) -> BoxFuture<'a, Result<PeerHistory, String>> {
        async move {
            let envelope = Envelope {
                forwarded: true,
                request: Request::History,
            };
            match call(api_addr, &envelope, deadline).await {
                Response::History(history) => Ok(history),
                other => Err(format!("{other:?}")),
            }
        }
        .boxed()
    }
}

/// A node's API handler state.
#[derive(Clone)]
pub struct ApiNode {
    pub service: Arc<Service>,
    pub variant: Variant,
}

impl std::fmt::Debug for ApiNode {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("ApiNode")
            .field("id", &self.service.id)
            .field("variant", &self.variant)
            .finish_non_exhaustive()
    }
}

/// Serves one API connection: one request, one answer.
pub async fn serve_connection(stream: turmoil::net::TcpStream, node: ApiNode) -> io::Result<()> {
    let mut conn = framed(stream);
    let Some(frame) = conn.next().await else {
        return Ok(());
    };
    let response = match codec::decode::<Envelope>(&frame?) {
        Ok(envelope) => {
            let deadline = envelope.request.deadline();
            match tokio::time::timeout(deadline, node.handle(envelope)).await {
                Ok(response) => response,
                Err(_) => ServiceError::new(ErrorCode::Timeout, "server deadline passed").into(),
            }
        }
        Err(e) => ServiceError::new(ErrorCode::MalformedRequest, e.to_string()).into(),
    };
    let bytes =
        codec::encode(&response).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    conn.send(tokio_util::bytes::Bytes::from(bytes)).await
}

/// Ledger time now: the simulated clock, as the node's wall clock would be.
pub fn ledger_now() -> LedgerTime {
    let elapsed = turmoil::sim_elapsed().unwrap_or_default();
    LedgerTime(LEDGER_EPOCH_MS + u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX / 2))
}

impl ApiNode {
    async fn handle(&self, envelope: Envelope) -> Response {
        let Envelope { forwarded, request } = envelope;
        let result = self.serve(&request).await;
        match result {
            Ok(response) => response,
            Err(error) => match error.forward_target(forwarded) {
                Some(leader) => {
                    let envelope = Envelope {
                        forwarded: true,
                        request,
                    };
                    call(leader, &envelope, SERVER_DEADLINE).await
                }
                None => error.into(),
            },
        }
    }

    async fn serve(&self, request: &Request) -> Result<Response, ServiceError> {
        let service = &self.service;
        match request {
            Request::Submit(proposals) => {
                let _permit = service.admit()?;
                let outcomes = service.submit(proposals.clone()).await?;
                Ok(Response::Submitted(outcomes))
            }
            Request::Plan(proposals) => {
                let _permit = service.admit()?;
                let response = service.submit_plan(proposals.clone()).await?;
                let acks = response
                    .members
                    .into_iter()
                    .map(|member| {
                        let record = member.result.entry.decision_record().ok_or_else(|| {
                            ServiceError::internal("a plan member's entry holds no decision")
                        })?;
                        Ok(PlanAck {
                            id: member.result.id,
                            input: member.input,
                            wave: member.wave,
                            index: member.result.entry.index,
                            duplicate: member.result.duplicate,
                            decision: record.decision.clone(),
                        })
                    })
                    .collect::<Result<Vec<_>, ServiceError>>()?;
                Ok(Response::Planned(acks))
            }
            Request::Init(signed) => {
                service
                    .init_ledger(DEFAULT_DOCUMENT.to_owned(), Some(signed.as_ref().clone()))
                    .await?;
                Ok(Response::Done)
            }
            Request::Read { domain, subject } => {
                let _permit = service.admit()?;
                let read_index = if self.variant == Variant::LocalReads {
                    None
                } else {
                    service.read_barrier(Consistency::Linearizable).await?
                };
                let subject = service.replica.with_state(|state| {
                    state
                        .and_then(|s| s.subject(domain, subject))
                        .map(|s| SubjectRead {
                            state: s.state.clone(),
                            last_index: s.last_index.0,
                        })
                });
                Ok(Response::Read {
                    subject,
                    served_by: service.id,
                    read_index,
                })
            }
            Request::ReadIndex { from, genesis } => {
                let _permit = service.admit()?;
                let asker = genesis.map(|genesis| (*from, genesis));
                Ok(Response::ReadIndex(service.leader_read_index(asker).await?))
            }
            Request::History => Ok(Response::History(service.history()?)),
            Request::Admin(signed) => {
                let authority = Some(signed.as_ref().clone());
                match AdminOp::parse(&signed.proposal) {
                    Ok((AdminOp::MemberAdd { .. }, _)) => {
                        service.add_member(authority).await?;
                    }
                    Ok((AdminOp::MemberPromote { node }, _)) => {
                        service.promote_member(node, authority).await?;
                    }
                    Ok((AdminOp::MemberRemove { node }, _)) => {
                        service.remove_member(node, authority).await?;
                    }
                    Ok((op, _)) => {
                        return Err(ServiceError::new(
                            ErrorCode::MalformedRequest,
                            format!("{} is not served here", op.action()),
                        ))
                    }
                    Err(e) => return Err(ServiceError::new(ErrorCode::MalformedRequest, e)),
                }
                Ok(Response::Done)
            }
        }
    }
}
