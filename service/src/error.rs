//! The one table of service errors: a stable code, the HTTP status the node answers it
//! with, and a message that says what to do. The simulator's API carries the same codes.

use std::fmt::Display;

use docket_raft::{NodeAddr, NodeId};
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};

use crate::wire::ErrorBody;

/// Stable error codes. A 4xx means nothing was recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ErrorCode {
    /// The body is not valid JSON for this endpoint (syntax, unknown field, float, type).
    MalformedRequest,
    /// The body is over `limits.request_body_bytes_max`.
    BodyTooLarge,
    /// The signature does not verify against the author and the proposal id.
    BadSignature,
    /// The proposal names another ledger.
    WrongLedger,
    /// A request-level limit (batch size, payload bytes, page size) was exceeded.
    LimitExceeded,
    NotFound,
    /// This node is not the leader and could not forward; `leader` says where to go.
    NotLeader,
    /// No leader is known right now (election in progress, or no quorum).
    NoLeader,
    /// The cluster has no genesis entry yet: run `docket cluster init`.
    NotInitialized,
    AlreadyInitialized,
    /// The membership change would leave the cluster unable to reach quorum.
    UnsafeMembershipChange,
    /// A node to be added could not be reached.
    MemberUnreachable,
    /// A node to be added already holds a history of its own (another genesis, another
    /// cluster): it must start empty to join.
    MemberHasOtherHistory,
    /// This node is no longer a member of its cluster: ask another member.
    Removed,
    /// Too many requests in flight: retry later.
    Overloaded,
    /// The request did not complete within its deadline; it may or may not have been recorded.
    Timeout,
    /// A forwarded write reached the leader but its answer was lost on the way back (the
    /// connection broke): it may or may not have been recorded. Resubmit the same signed
    /// proposal, or read it by id, to learn which.
    OutcomeUnknown,
    Internal,
    /// A route only cluster nodes may call (`/v1/internal/*`, a forwarded request) was
    /// called without a node certificate of the cluster CA, or by a node certificate other
    /// than the node the request claims to come from. Nothing was done.
    PeerNotAuthenticated,
    /// A cluster operation came without its signed request (`authority`): administration
    /// is governed by the constitution.
    SignatureRequired,
    /// The constitution does not authorize the signer of an admin request for its
    /// operation. Nothing was recorded or changed.
    Unauthorized,
    /// The constitution refuses an admin request for another reason (its schema, a
    /// lifecycle rule). Nothing was recorded or changed.
    AdminRefused,
    /// An admin request's `issued_ms` is too far from the leader's clock.
    StaleRequest,
    /// An admin request that is already recorded: each is performed once.
    ReplayedRequest,
    /// A proposal of the `cluster` domain sent to `/v1/proposals`: cluster operations go
    /// through the admin routes, which make the change they record.
    AdminRouteRequired,
    /// A checkpoint this replica was asked to cosign differs from its own ledger or state
    /// at that size.
    CheckpointMismatch,
    /// Fewer than a quorum of voters cosigned the checkpoint.
    NoQuorum,
    /// This replica found itself holding another ledger or state than a checkpoint a
    /// quorum cosigned: it serves nothing but its health and status until repaired.
    Diverged,
}

impl ErrorCode {
    /// Every code, for tables and tests.
    pub const ALL: [ErrorCode; 28] = [
        ErrorCode::MalformedRequest,
        ErrorCode::BodyTooLarge,
        ErrorCode::BadSignature,
        ErrorCode::WrongLedger,
        ErrorCode::LimitExceeded,
        ErrorCode::NotFound,
        ErrorCode::NotLeader,
        ErrorCode::NoLeader,
        ErrorCode::NotInitialized,
        ErrorCode::AlreadyInitialized,
        ErrorCode::UnsafeMembershipChange,
        ErrorCode::MemberUnreachable,
        ErrorCode::MemberHasOtherHistory,
        ErrorCode::Removed,
        ErrorCode::Overloaded,
        ErrorCode::Timeout,
        ErrorCode::OutcomeUnknown,
        ErrorCode::Internal,
        ErrorCode::PeerNotAuthenticated,
        ErrorCode::SignatureRequired,
        ErrorCode::Unauthorized,
        ErrorCode::AdminRefused,
        ErrorCode::StaleRequest,
        ErrorCode::ReplayedRequest,
        ErrorCode::AdminRouteRequired,
        ErrorCode::CheckpointMismatch,
        ErrorCode::NoQuorum,
        ErrorCode::Diverged,
    ];

    /// The stable name clients match on.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::MalformedRequest => "MALFORMED_REQUEST",
            ErrorCode::BodyTooLarge => "BODY_TOO_LARGE",
            ErrorCode::BadSignature => "BAD_SIGNATURE",
            ErrorCode::WrongLedger => "WRONG_LEDGER",
            ErrorCode::LimitExceeded => "LIMIT_EXCEEDED",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::NotLeader => "NOT_LEADER",
            ErrorCode::NoLeader => "NO_LEADER",
            ErrorCode::NotInitialized => "NOT_INITIALIZED",
            ErrorCode::AlreadyInitialized => "ALREADY_INITIALIZED",
            ErrorCode::UnsafeMembershipChange => "UNSAFE_MEMBERSHIP_CHANGE",
            ErrorCode::MemberUnreachable => "MEMBER_UNREACHABLE",
            ErrorCode::MemberHasOtherHistory => "MEMBER_HAS_OTHER_HISTORY",
            ErrorCode::Removed => "REMOVED",
            ErrorCode::Overloaded => "OVERLOADED",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::OutcomeUnknown => "OUTCOME_UNKNOWN",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::PeerNotAuthenticated => "PEER_NOT_AUTHENTICATED",
            ErrorCode::SignatureRequired => "SIGNATURE_REQUIRED",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::AdminRefused => "ADMIN_REFUSED",
            ErrorCode::StaleRequest => "STALE_REQUEST",
            ErrorCode::ReplayedRequest => "REPLAYED_REQUEST",
            ErrorCode::AdminRouteRequired => "ADMIN_ROUTE_REQUIRED",
            ErrorCode::CheckpointMismatch => "CHECKPOINT_MISMATCH",
            ErrorCode::NoQuorum => "NO_QUORUM",
            ErrorCode::Diverged => "DIVERGED",
        }
    }

    /// The HTTP status the node answers this code with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::MalformedRequest
            | ErrorCode::BadSignature
            | ErrorCode::WrongLedger
            | ErrorCode::LimitExceeded => 400,
            ErrorCode::BodyTooLarge => 413,
            ErrorCode::NotFound => 404,
            ErrorCode::NotInitialized
            | ErrorCode::AlreadyInitialized
            | ErrorCode::UnsafeMembershipChange
            | ErrorCode::MemberHasOtherHistory => 409,
            ErrorCode::MemberUnreachable => 502,
            ErrorCode::Removed => 410,
            ErrorCode::NotLeader | ErrorCode::NoLeader | ErrorCode::Overloaded => 503,
            ErrorCode::Timeout | ErrorCode::OutcomeUnknown => 504,
            ErrorCode::Internal => 500,
            ErrorCode::PeerNotAuthenticated | ErrorCode::Unauthorized | ErrorCode::AdminRefused => {
                403
            }
            ErrorCode::SignatureRequired | ErrorCode::StaleRequest => 401,
            ErrorCode::ReplayedRequest => 409,
            ErrorCode::AdminRouteRequired => 400,
            ErrorCode::CheckpointMismatch => 409,
            ErrorCode::NoQuorum | ErrorCode::Diverged => 503,
        }
    }

    /// Whether a write answered with this code may have been recorded: only resubmitting
    /// the same signed proposal (idempotent) or reading it by id settles it.
    pub fn outcome_unknown(self) -> bool {
        matches!(self, ErrorCode::Timeout | ErrorCode::OutcomeUnknown)
    }
}

/// An error answered to a client, by the node over HTTP or by the simulator's API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("{}: {message}", code.name())]
pub struct ServiceError {
    pub code: ErrorCode,
    pub message: String,
    /// For `NOT_LEADER` / `NO_LEADER`: the leader's API address when known.
    pub leader: Option<String>,
}

/// How forwarding a request to the leader failed, as far as the transport can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardFailure {
    /// No connection opened: the request never reached the leader.
    NotConnected,
    /// The deadline passed.
    TimedOut,
    /// The connection broke after the request was sent, or while its answer was read.
    Broken,
}

impl ServiceError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ServiceError {
        ServiceError {
            code,
            message: message.into(),
            leader: None,
        }
    }

    pub fn with_leader(mut self, leader: Option<String>) -> ServiceError {
        self.leader = leader;
        self
    }

    /// `NOT_LEADER` (with the leader's API address) or `NO_LEADER` (none known).
    pub fn not_leader(leader: Option<String>, message: impl Into<String>) -> ServiceError {
        let code = if leader.is_some() {
            ErrorCode::NotLeader
        } else {
            ErrorCode::NoLeader
        };
        ServiceError::new(code, message).with_leader(leader)
    }

    pub fn internal(message: impl Into<String>) -> ServiceError {
        ServiceError::new(ErrorCode::Internal, message)
    }

    pub fn storage(e: impl Display) -> ServiceError {
        ServiceError::internal(format!("storage: {e}"))
    }

    pub fn not_initialized() -> ServiceError {
        ServiceError::new(
            ErrorCode::NotInitialized,
            "the cluster has no genesis entry yet; run `docket cluster init`",
        )
    }

    /// Where a transport should forward the request that got this error: the leader's
    /// API address, when this error says "ask the leader" and the request was not itself
    /// forwarded (a request is forwarded at most once).
    pub fn forward_target(&self, forwarded: bool) -> Option<&str> {
        match (&self.code, &self.leader, forwarded) {
            (ErrorCode::NotLeader, Some(leader), false) => Some(leader),
            _ => None,
        }
    }

    /// What the caller is told when forwarding to the leader at `leader` got no answer.
    /// It depends on whether the leader may have acted. A connection that never opened
    /// means the request did not reach it: `NO_LEADER`, nothing recorded. A deadline
    /// passed is `TIMEOUT`. Any other failure of a write (the connection broke after the
    /// request was sent, or while the answer was read) is `OUTCOME_UNKNOWN`: the leader
    /// may have recorded it, and only resubmitting the same signed request or reading it
    /// by id settles which. A read that fails the same way changed nothing: `NO_LEADER`.
    pub fn forward_failed(
        failure: ForwardFailure,
        leader: &str,
        is_write: bool,
        detail: impl Display,
    ) -> ServiceError {
        let (code, what) = match failure {
            ForwardFailure::TimedOut => {
                (ErrorCode::Timeout, "it may or may not have been recorded")
            }
            ForwardFailure::NotConnected => (
                ErrorCode::NoLeader,
                "the request did not reach it: nothing was recorded",
            ),
            ForwardFailure::Broken if is_write => (
                ErrorCode::OutcomeUnknown,
                "the answer was lost after the request reached it: it may or may not have \
                 been recorded; resubmit the same signed request, or read it by id",
            ),
            ForwardFailure::Broken => (ErrorCode::NoLeader, "nothing was changed"),
        };
        ServiceError::new(
            code,
            format!("forwarding to the leader at {leader} failed ({detail}); {what}"),
        )
        .with_leader(Some(leader.to_owned()))
    }

    /// The JSON body clients see.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code.name().to_owned(),
            message: self.message.clone(),
            leader: self.leader.clone(),
        }
    }

    /// A Raft write error: forward to the leader, an unsafe membership change, or Raft
    /// stopped.
    pub fn from_write(
        error: RaftError<NodeId, ClientWriteError<NodeId, NodeAddr>>,
    ) -> ServiceError {
        match error {
            RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
                ServiceError::not_leader(
                    forward.leader_node.map(|n| n.api_addr),
                    "this node is not the leader",
                )
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                ServiceError::new(ErrorCode::UnsafeMembershipChange, e.to_string())
            }
            RaftError::Fatal(fatal) => ServiceError::internal(format!("raft stopped: {fatal}")),
        }
    }

    /// A failed leadership check (a read-index round on the leader).
    pub fn from_check(
        error: RaftError<NodeId, CheckIsLeaderError<NodeId, NodeAddr>>,
        what: &str,
    ) -> ServiceError {
        match error {
            RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => {
                ServiceError::not_leader(f.leader_node.map(|n| n.api_addr), what)
            }
            RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e)) => ServiceError::new(
                ErrorCode::NoLeader,
                format!("cannot confirm leadership: {e}"),
            ),
            RaftError::Fatal(f) => ServiceError::internal(format!("raft stopped: {f}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_distinct_name_and_an_error_status() {
        let names: std::collections::BTreeSet<&str> =
            ErrorCode::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        for code in ErrorCode::ALL {
            assert!((400..600).contains(&code.http_status()), "{code:?}");
        }
    }

    #[test]
    fn a_forwarded_write_that_broke_is_an_unknown_outcome_and_a_read_is_not() {
        let write = ServiceError::forward_failed(ForwardFailure::Broken, "l:1", true, "eof");
        assert_eq!(write.code, ErrorCode::OutcomeUnknown);
        let read = ServiceError::forward_failed(ForwardFailure::Broken, "l:1", false, "eof");
        assert_eq!(read.code, ErrorCode::NoLeader);
        let never = ServiceError::forward_failed(ForwardFailure::NotConnected, "l:1", true, "x");
        assert_eq!(never.code, ErrorCode::NoLeader);
        assert_eq!(never.leader.as_deref(), Some("l:1"));
    }

    #[test]
    fn only_an_unforwarded_not_leader_with_a_leader_is_forwarded() {
        let e = ServiceError::not_leader(Some("a:1".into()), "x");
        assert_eq!(e.forward_target(false), Some("a:1"));
        assert_eq!(e.forward_target(true), None);
        assert_eq!(
            ServiceError::not_leader(None, "x").forward_target(false),
            None
        );
    }
}
