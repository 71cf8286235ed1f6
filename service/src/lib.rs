//! # docket-service: a node without its transports
//!
//! Everything a docket node does between a decoded request and Raft, written once and
//! driven by two transports: the node's HTTP API (`docket-node`, axum and reqwest) and the
//! simulator's API (`docket-sim`, turmoil). So the code the simulator puts under network
//! faults, crashes and partitions is the code that serves clients.
//!
//! ```text
//!  node/ (HTTP)  ─┐                                ┌─► Peers (reqwest | turmoil)
//!                 ├─► Service ── front door ────────┤
//!  sim/ (turmoil) ─┘     ├── group-commit writer, ticker ──► Raft (docket-raft)
//!                        ├── linearizable reads (shared read-index rounds)
//!                        ├── init, membership + guardrails
//!                        └── confirmed leadership, ServiceHost ──► execution agent
//! ```
//!
//! * [`Service`] holds the node's identity, its Raft handle and replica, its limits and
//!   timings, a [`Clock`] (the wall clock, or simulated time) and a [`Peers`] seam for
//!   asking other nodes (the leader's read index, a Raft port's reachability, a node's
//!   history). It never opens a connection itself.
//! * Errors are [`ServiceError`]s with codes from one table ([`ErrorCode`]). `NOT_LEADER`
//!   with a leader means "forward there": the transports forward the request once
//!   ([`ServiceError::forward_target`]) and say what a failed forward means
//!   ([`ServiceError::forward_failed`]).
//! * Spawned tasks go through [`spawn`]: tokio's in production, the host's `LocalSet` in
//!   the simulator (deterministic drop order on simulated crashes).
//!
//! Architecture invariant: no transport here. This crate's normal dependency tree holds
//! no HTTP stack, no turmoil and no sled (`tests/boundary.rs`).

pub mod admin;
pub mod checkpoints;
mod elections;
pub mod error;
pub mod host;
pub mod leadership;
pub mod membership;
pub mod peers;
mod plans;
pub mod read_access;
pub mod reads;
pub mod retention;
pub mod service;
pub mod state_proofs;
pub mod telemetry;
/// The client API's shapes (`docket-api`), re-exported where the service's users look,
/// with the execution agent's job type in [`wire::ExecutionView`].
pub mod wire {
    pub use docket_api::wire::*;

    /// `GET /v1/execution/{proposal_id}` with the execution agent's job record.
    pub type ExecutionView = docket_api::wire::ExecutionView<docket_execution::Job>;

    /// `GET /v1/execution` with the execution agent's job records.
    pub type ExecutionList = docket_api::wire::ExecutionList<docket_execution::Job>;
}
mod writer;

pub use error::{ErrorCode, ForwardFailure, ServiceError};
pub use host::ServiceHost;
pub use peers::{CosignRefusal, PeerHistory, Peers};
pub use reads::ReadIndexResponse;
pub use service::{
    Clock, Faults, Limits, Service, Settings, Timing, GROUP_COMMIT_PROPOSALS_MAX, LAG_HEALTHY_MAX,
    SUBMIT_QUEUE_MAX, WRITES_INFLIGHT_MAX,
};

/// Spawns a task where this thread's Raft tasks go: tokio's runtime in production, the
/// current `LocalSet` in the simulator (`docket_raft::runtime::spawn_on_local_set`).
pub fn spawn<F>(future: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    use openraft::AsyncRuntime;
    drop(<docket_raft::runtime::DocketRuntime as AsyncRuntime>::spawn(future));
}
