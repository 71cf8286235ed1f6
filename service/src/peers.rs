//! The one seam between the service and the network: asking another node something.
//!
//! The service never opens a connection itself. What it needs from other nodes — the
//! leader's read index for a follower's read, whether a node's Raft port answers, which
//! history a node to be added holds — it asks through [`Peers`]. The node implements it
//! over HTTP (reqwest, `docket_node::peers`), the simulator over turmoil TCP. Forwarding a
//! whole client request to the leader stays in the transports (they relay their own
//! bytes); the decision to forward and the meaning of a failed forward are the service's
//! ([`ServiceError::forward_target`](crate::ServiceError::forward_target),
//! [`ServiceError::forward_failed`](crate::ServiceError::forward_failed)).

use std::time::Duration;

use docket_core::EntryHash;
use docket_raft::NodeId;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::reads::ReadIndexResponse;

/// What a node holds, as it says itself: enough to tell a fresh node, this cluster's own
/// member and a node with another history apart before it is added.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerHistory {
    pub node_id: NodeId,
    pub cluster_id: String,
    /// The node has a membership (it was initialized, or joined a cluster).
    pub initialized: bool,
    /// Its genesis entry's hash, when it has one.
    pub genesis: Option<EntryHash>,
    /// The key it cosigns checkpoints with.
    #[serde(default)]
    pub cosigner: Option<docket_core::PublicKey>,
}

/// Questions the service asks other nodes. Every call has a deadline; an error is a
/// message naming what failed.
pub trait Peers: Send + Sync + 'static {
    /// The read index of the leader at `leader_api`: the log index a linearizable read
    /// must wait for, established by a leadership round that started after this call,
    /// with the leader's genesis. `genesis` is this node's, for the leader to check.
    fn read_index<'a>(
        &'a self,
        leader_api: &'a str,
        genesis: Option<EntryHash>,
        deadline: Duration,
    ) -> BoxFuture<'a, Result<ReadIndexResponse, String>>;

    /// Whether a connection to the Raft port at `raft_addr` opens within `deadline`.
    fn raft_reachable<'a>(&'a self, raft_addr: &'a str, deadline: Duration) -> BoxFuture<'a, bool>;

    /// What the node whose API is at `api_addr` holds (a local read there).
    fn history<'a>(
        &'a self,
        api_addr: &'a str,
        deadline: Duration,
    ) -> BoxFuture<'a, Result<PeerHistory, String>>;

    /// The cosignature of `checkpoint` by the node whose API is at `api_addr`
    /// ([`crate::Service::cosign`] there). A transport without it answers an error, and
    /// checkpoints then gather only this node's own cosignature.
    fn cosign<'a>(
        &'a self,
        api_addr: &'a str,
        checkpoint: &'a docket_core::checkpoint::Checkpoint,
        deadline: Duration,
    ) -> BoxFuture<'a, Result<docket_core::checkpoint::Cosignature, CosignRefusal>> {
        let _ = (api_addr, checkpoint, deadline);
        Box::pin(async {
            Err(CosignRefusal::Other(
                "this transport does not gather cosignatures".to_owned(),
            ))
        })
    }

    /// Tells the node whose API is at `api_addr` that a final checkpoint (`note`, a C2SP
    /// signed note) disagrees with what it holds ([`crate::Service::quarantine`] there,
    /// which checks that for itself). A transport without it does nothing.
    fn notify_diverged<'a>(
        &'a self,
        api_addr: &'a str,
        note: &'a str,
        deadline: Duration,
    ) -> BoxFuture<'a, Result<(), String>> {
        let _ = (api_addr, note, deadline);
        Box::pin(async { Ok(()) })
    }
}

/// Why a voter did not cosign a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CosignRefusal {
    /// Its ledger or state differs from the checkpoint's at that size
    /// (`CHECKPOINT_MISMATCH`): it diverged, or the asker did.
    #[error("{0}")]
    Mismatch(String),
    /// Anything else: unreachable, not caught up, no key, ...
    #[error("{0}")]
    Other(String),
}

impl From<crate::error::ServiceError> for CosignRefusal {
    fn from(error: crate::error::ServiceError) -> CosignRefusal {
        if error.code == crate::error::ErrorCode::CheckpointMismatch {
            CosignRefusal::Mismatch(error.to_string())
        } else {
            CosignRefusal::Other(error.to_string())
        }
    }
}
