//! The client API of a simulated node, over turmoil TCP: the same operations as the
//! node's HTTP API, with the same semantics.
//!
//! * **Submit** writes `Command::Submit` stamped with the node's (simulated) clock through
//!   `Raft::client_write`; a follower forwards the request once to the leader it knows,
//!   as `node/` does.
//! * **Read** is linearizable at every node, as the node's `read_index` module serves it.
//!   The leader runs openraft's read index (`Raft::ensure_linearizable`: a quorum
//!   heartbeat round, then wait for local apply). A follower or learner asks the leader
//!   for its read index ([`Request::ReadIndex`], answered there with
//!   `Raft::get_read_log_id`), waits until its own state machine has applied that index
//!   (within [`READ_INDEX_DEADLINE`]) and reads its local [`Replica`]. If the leader
//!   cannot be asked (none known, unreachable, refuses, too slow) or the index is not
//!   applied in time, the whole read is forwarded to the leader, as before. Unlike the
//!   node, rounds are not coalesced among concurrent reads: each read runs its own (the
//!   semantics are the same; only the cost differs). The [`Variant::LocalReads`] negative
//!   control skips all of it and answers locally.
//! * **Admin** operations (genesis, add learner, change voters) go to the leader the same
//!   way.
//!
//! One request per connection, length-delimited bincode frames, a deadline on every
//! call on both sides (turmoil's TCP never retransmits, so a lost segment stalls a stream
//! forever).

use std::collections::BTreeSet;
use std::io;
use std::time::Duration;

use docket_core::constitution::DEFAULT_DOCUMENT;
use docket_core::{LedgerId, LedgerTime, SignedProposal};
use docket_raft::{
    codec, Command, CommandResponse, NodeAddr, NodeId, ProposalOutcome, Raft, Replica,
};
use futures::{SinkExt, StreamExt};
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::ChangeMembers;
use serde::{Deserialize, Serialize};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::config::Variant;
use crate::world::{node_addr, CLUSTER_ID};

/// Largest API frame (a submission of a few proposals, or a read answer).
pub const API_FRAME_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Server-side deadline for one request, forwarding included. Longer than a client's own
/// deadline would be pointless; shorter lets a node give up on a write stuck behind a
/// partition and answer `Timeout` (the write may still commit: an indeterminate outcome).
pub const SERVER_DEADLINE: Duration = Duration::from_secs(2);

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
    Read {
        domain: String,
        subject: String,
    },
    Genesis,
    AddLearner(NodeId),
    AddVoter(NodeId),
    RemoveVoter(NodeId),
    /// Internal, follower to leader: the leader's read index (`get_read_log_id`), for a
    /// follower's linearizable read. Never forwarded.
    ReadIndex,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Envelope {
    /// Set by a node forwarding to the leader: the leader must not forward again.
    pub forwarded: bool,
    pub request: Request,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    NotLeader,
    NoLeader,
    Timeout,
    Refused,
    Membership,
    Stopped,
    Malformed,
    Unreachable,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Submitted(Vec<ProposalOutcome>),
    Read {
        subject: Option<SubjectRead>,
        served_by: NodeId,
    },
    Done,
    /// The leader's answer to [`Request::ReadIndex`]: the log index a read must wait for
    /// (`None`: nothing committed yet).
    ReadIndex(Option<u64>),
    Error {
        code: ErrorCode,
        message: String,
    },
}

impl Response {
    fn error(code: ErrorCode, message: impl Into<String>) -> Response {
        Response::Error {
            code,
            message: message.into(),
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

/// Sends one request to `addr` and waits for the answer, within `deadline`.
pub async fn call(addr: &str, envelope: &Envelope, deadline: Duration) -> Response {
    match tokio::time::timeout(deadline, call_inner(addr, envelope)).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => Response::error(ErrorCode::Unreachable, e.to_string()),
        Err(_) => Response::error(ErrorCode::Timeout, format!("no answer from {addr}")),
    }
}

async fn call_inner(addr: &str, envelope: &Envelope) -> io::Result<Response> {
    let stream = turmoil::net::TcpStream::connect(addr).await?;
    let mut conn = framed(stream);
    let bytes =
        codec::encode(envelope).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    conn.send(tokio_util::bytes::Bytes::from(bytes)).await?;
    match conn.next().await {
        Some(frame) => {
            codec::decode(&frame?).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
        }
        None => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "node closed the connection",
        )),
    }
}

/// A node's API handler state.
#[derive(Clone)]
pub struct ApiNode {
    pub id: NodeId,
    pub raft: Raft,
    pub replica: Replica,
    pub variant: Variant,
}

impl std::fmt::Debug for ApiNode {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("ApiNode")
            .field("id", &self.id)
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
        Ok(envelope) => match tokio::time::timeout(SERVER_DEADLINE, node.handle(envelope)).await {
            Ok(response) => response,
            Err(_) => Response::error(ErrorCode::Timeout, "server deadline passed"),
        },
        Err(e) => Response::error(ErrorCode::Malformed, e.to_string()),
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

fn leader_api(leader: Option<NodeAddr>) -> Option<String> {
    leader.map(|n| n.api_addr)
}

impl ApiNode {
    async fn handle(&self, envelope: Envelope) -> Response {
        let Envelope { forwarded, request } = envelope;
        let (response, leader) = match &request {
            Request::Submit(proposals) => {
                let command = Command::Submit {
                    proposals: proposals.clone(),
                    time: ledger_now(),
                };
                self.write(command).await
            }
            Request::Genesis => {
                let command = Command::Genesis {
                    ledger_id: LedgerId::new(CLUSTER_ID).expect("invariant: valid ledger id"),
                    document: DEFAULT_DOCUMENT.to_owned(),
                    time: ledger_now(),
                };
                self.write(command).await
            }
            Request::Read { domain, subject } => self.read(domain, subject).await,
            Request::ReadIndex => (self.leader_read_index().await, None),
            Request::AddLearner(id) => self.membership(request_change(&request, *id)).await,
            Request::AddVoter(id) => self.membership(request_change(&request, *id)).await,
            Request::RemoveVoter(id) => self.membership(request_change(&request, *id)).await,
        };
        match (leader, forwarded) {
            (Some(addr), false) => {
                let envelope = Envelope {
                    forwarded: true,
                    request,
                };
                call(&addr, &envelope, SERVER_DEADLINE).await
            }
            _ => response,
        }
    }

    /// A write; `(answer, Some(leader api))` when it must be forwarded.
    async fn write(&self, command: Command) -> (Response, Option<String>) {
        match self.raft.client_write(command).await {
            Ok(written) => match written.data {
                CommandResponse::Submitted { outcomes, .. } => {
                    (Response::Submitted(outcomes), None)
                }
                CommandResponse::Genesis { .. } => (Response::Done, None),
                CommandResponse::Refused(e) => {
                    (Response::error(ErrorCode::Refused, e.code()), None)
                }
                other => (
                    Response::error(ErrorCode::Refused, format!("unexpected {other:?}")),
                    None,
                ),
            },
            Err(e) => write_error(e),
        }
    }

    async fn read(&self, domain: &str, subject: &str) -> (Response, Option<String>) {
        if self.variant != Variant::LocalReads {
            if let Err(refusal) = self.read_barrier().await {
                return refusal;
            }
        }
        let subject = self.replica.with_state(|state| {
            state
                .and_then(|s| s.subject(domain, subject))
                .map(|s| SubjectRead {
                    state: s.state.clone(),
                    last_index: s.last_index.0,
                })
        });
        (
            Response::Read {
                subject,
                served_by: self.id,
            },
            None,
        )
    }

    /// Waits until this node's replica reflects every write acknowledged before the read
    /// began (the node's `read_index::round`). `Err` carries the answer, and the leader's
    /// API address when the read is to be forwarded there.
    async fn read_barrier(&self) -> Result<(), (Response, Option<String>)> {
        let (leader, api) = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            let leader = metrics.current_leader;
            let api = leader.and_then(|l| {
                metrics
                    .membership_config
                    .membership()
                    .get_node(&l)
                    .map(|n| n.api_addr.clone())
            });
            (leader, api)
        };
        if leader == Some(self.id) {
            return match self.raft.ensure_linearizable().await {
                Ok(_) => Ok(()),
                Err(e) => Err(check_is_leader_error(e)),
            };
        }
        let Some(api) = api else {
            return Err((
                Response::error(
                    ErrorCode::NoLeader,
                    "no leader known to ask for a read index",
                ),
                None,
            ));
        };
        let forward = |message: String| {
            Err((
                Response::error(ErrorCode::NotLeader, message),
                Some(api.clone()),
            ))
        };
        let envelope = Envelope {
            forwarded: true,
            request: Request::ReadIndex,
        };
        let index = match call(&api, &envelope, READ_INDEX_DEADLINE).await {
            Response::ReadIndex(index) => index,
            other => return forward(format!("no read index from the leader: {other:?}")),
        };
        match self
            .raft
            .wait(Some(READ_INDEX_DEADLINE))
            .applied_index_at_least(index, "follower read")
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => forward(format!("read index {index:?} not applied in time: {e}")),
        }
    }

    /// The leader's side of a follower read: its read index, after confirming its
    /// leadership with a quorum (started after the request arrived).
    async fn leader_read_index(&self) -> Response {
        match self.raft.get_read_log_id().await {
            Ok((read, _applied)) => Response::ReadIndex(read.map(|log_id| log_id.index)),
            Err(e) => check_is_leader_error(e).0,
        }
    }

    async fn membership(&self, change: MembershipChange) -> (Response, Option<String>) {
        // A leader that is not a voter of the configuration the cluster is moving to (the
        // last of a joint configuration: a removal of the leader, cut short by a leadership
        // change, left it behind) would remove itself with any further change and lead on as
        // a non-member, about which openraft 0.9.25 is inconsistent (openraft#923): the next
        // membership entry it appends trips openraft's own assertion that only a leader
        // does (`append_membership`, a panic in debug builds; seed 54). Refused until a
        // leader that is a member of that configuration finishes the change, or this
        // leader finishes its own removal. The node's API has the same guard
        // (`docket_raft::leads_outside_target_config`, checked in `membership_op`).
        // The one change allowed there completes the interrupted removal of this leader
        // (removing itself from the joint configuration resolves to the configuration it
        // was moving to), as in the node's API.
        let completes_own_removal = matches!(
            &change,
            MembershipChange::Voters(ChangeMembers::RemoveVoters(ids))
                if ids.len() == 1 && ids.contains(&self.id)
        );
        let leaving =
            docket_raft::leads_outside_target_config(&self.raft.metrics().borrow(), self.id);
        if leaving && !completes_own_removal {
            return (
                Response::error(
                    ErrorCode::Membership,
                    "this leader is not a voter of the configuration the cluster is moving to",
                ),
                None,
            );
        }
        let result = match change {
            MembershipChange::AddLearner(id) => {
                self.raft.add_learner(id, node_addr(id), false).await
            }
            MembershipChange::Voters(members) => self.raft.change_membership(members, false).await,
        };
        match result {
            Ok(_) => (Response::Done, None),
            Err(e) => write_error(e),
        }
    }
}

enum MembershipChange {
    AddLearner(NodeId),
    Voters(ChangeMembers<NodeId, NodeAddr>),
}

fn request_change(request: &Request, id: NodeId) -> MembershipChange {
    match request {
        Request::AddLearner(_) => MembershipChange::AddLearner(id),
        Request::AddVoter(_) => {
            MembershipChange::Voters(ChangeMembers::AddVoterIds(BTreeSet::from([id])))
        }
        _ => MembershipChange::Voters(ChangeMembers::RemoveVoters(BTreeSet::from([id]))),
    }
}

fn check_is_leader_error(
    error: RaftError<NodeId, CheckIsLeaderError<NodeId, NodeAddr>>,
) -> (Response, Option<String>) {
    match error {
        RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => {
            let leader = leader_api(f.leader_node);
            let code = if leader.is_some() {
                ErrorCode::NotLeader
            } else {
                ErrorCode::NoLeader
            };
            (
                Response::error(code, "reads are served by the leader"),
                leader,
            )
        }
        RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e)) => {
            (Response::error(ErrorCode::NoLeader, e.to_string()), None)
        }
        RaftError::Fatal(f) => (Response::error(ErrorCode::Stopped, f.to_string()), None),
    }
}

fn write_error(
    error: RaftError<NodeId, ClientWriteError<NodeId, NodeAddr>>,
) -> (Response, Option<String>) {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            let leader = leader_api(f.leader_node);
            let code = if leader.is_some() {
                ErrorCode::NotLeader
            } else {
                ErrorCode::NoLeader
            };
            (Response::error(code, "this node is not the leader"), leader)
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            (Response::error(ErrorCode::Membership, e.to_string()), None)
        }
        RaftError::Fatal(f) => (Response::error(ErrorCode::Stopped, f.to_string()), None),
    }
}
