//! API errors: a stable code, an HTTP status, and a message that says what to do.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::wire::ErrorBody;

/// Stable API error codes. A 4xx means nothing was recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    /// Too many requests in flight: retry later.
    Overloaded,
    /// The request did not complete within its deadline; it may or may not have been recorded.
    Timeout,
    /// A forwarded write reached the leader but its answer was lost on the way back (the
    /// connection broke): it may or may not have been recorded. Resubmit the same signed
    /// proposal, or read it by id, to learn which.
    OutcomeUnknown,
    Internal,
}

impl ErrorCode {
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
            ErrorCode::Overloaded => "OVERLOADED",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::OutcomeUnknown => "OUTCOME_UNKNOWN",
            ErrorCode::Internal => "INTERNAL",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::MalformedRequest
            | ErrorCode::BadSignature
            | ErrorCode::WrongLedger
            | ErrorCode::LimitExceeded => StatusCode::BAD_REQUEST,
            ErrorCode::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::NotInitialized
            | ErrorCode::AlreadyInitialized
            | ErrorCode::UnsafeMembershipChange
            | ErrorCode::MemberHasOtherHistory => StatusCode::CONFLICT,
            ErrorCode::MemberUnreachable => StatusCode::BAD_GATEWAY,
            ErrorCode::NotLeader | ErrorCode::NoLeader | ErrorCode::Overloaded => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorCode::Timeout | ErrorCode::OutcomeUnknown => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error answered to an API client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.name())]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub leader: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            leader: None,
        }
    }

    pub fn with_leader(mut self, leader: Option<String>) -> ApiError {
        self.leader = leader;
        self
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code.name().to_owned(),
            message: self.message.clone(),
            leader: self.leader.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.code.status(), Json(self.body())).into_response()
    }
}
