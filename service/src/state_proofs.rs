//! Proofs of one state row (a subject's state, a proposal's status) under a final
//! checkpoint, through the state map ([`docket_core::statemap`]).
//!
//! A checkpoint's `map` line names the map's root at an anchor. A row is provable once it
//! is unchanged since the map's last anchor; one changed since is brought into the map by
//! an anchor on demand ([`Command::Anchor`], through Raft, so every replica anchors at the
//! same boundary and can cosign the root). Then a final checkpoint naming that anchor is
//! found among the ones this node gathered, or gathered. If the map moves on between the
//! two (a write crossed the next anchor), the proof is taken again, at most
//! [`PROVE_ATTEMPTS_MAX`] times.
//!
//! Anchors are folded into the map after the apply that reached them (off the apply path
//! on a node, `docket_raft::MapFold`): every proof first waits (at most [`FOLD_WAIT_MS`])
//! until the anchors sealed before it are folded, so it is under the newest anchor the
//! read barrier saw, as when anchors were folded in the apply.
//!
//! The answer is the row's bytes as of the anchor, which, the row being unchanged since,
//! are its bytes now, after a linearizable read barrier: a verified state read is as fresh
//! as an unverified one.

use docket_core::checkpoint::SignedCheckpoint;
use docket_raft::{Command, CommandResponse, RowProof};

use crate::checkpoints::Cosigner;
use crate::error::{ErrorCode, ServiceError};
use crate::service::Service;
use crate::wire::Consistency;

/// Proofs taken per request before giving up on a row that keeps changing.
pub const PROVE_ATTEMPTS_MAX: usize = 3;

/// How long a proof waits for this replica to fold the anchors it has sealed.
pub const FOLD_WAIT_MS: u64 = 5_000;
/// How often it looks meanwhile.
const FOLD_POLL_MS: u64 = 2;

/// A state row proved: the final checkpoint whose `map` line the proof is under, its
/// cosigners, and the proof with the row's bytes.
#[derive(Clone, Debug)]
pub struct ProvedRow {
    pub checkpoint: SignedCheckpoint,
    pub cosigners: Vec<Cosigner>,
    pub row: RowProof,
}

impl Service {
    /// State row `key` proved under a final checkpoint (module docs).
    pub async fn prove_row(&self, key: &[u8]) -> Result<ProvedRow, ServiceError> {
        self.read_barrier(Consistency::Linearizable).await?;
        let mut moved = 0;
        for _ in 0..PROVE_ATTEMPTS_MAX {
            self.folded().await?;
            let row = self.replica.prove_row(key).map_err(ServiceError::storage)?;
            let anchor = match row.anchor {
                Some(anchor) if row.current => anchor,
                _ => {
                    self.anchor_now().await?;
                    continue;
                }
            };
            if let Some((checkpoint, cosigners)) = self.finals.naming(&anchor) {
                return Ok(ProvedRow {
                    checkpoint,
                    cosigners,
                    row,
                });
            }
            let (checkpoint, cosigners) = self.checkpoint().await?;
            if checkpoint.checkpoint.map == Some(anchor) {
                return Ok(ProvedRow {
                    checkpoint,
                    cosigners,
                    row,
                });
            }
            moved += 1;
        }
        Err(ServiceError::new(
            ErrorCode::Overloaded,
            format!(
                "the row changed again before its proof could be cosigned, {PROVE_ATTEMPTS_MAX} \
                 times ({moved} times the state map moved past the proof's anchor); retry"
            ),
        ))
    }

    /// Waits until this replica has folded every anchor it had sealed when called (not
    /// those sealed meanwhile: under a steady load the folder is always a little behind).
    async fn folded(&self) -> Result<(), ServiceError> {
        let Some(target) = self.replica.last_sealed() else {
            return Ok(());
        };
        let deadline = std::time::Duration::from_millis(FOLD_WAIT_MS);
        let started = tokio::time::Instant::now();
        while !self.replica.folded_through(target) {
            if started.elapsed() > deadline {
                return Err(ServiceError::new(
                    ErrorCode::Overloaded,
                    format!(
                        "the state map is {} anchors behind the applied state after \
                         {FOLD_WAIT_MS} ms; retry",
                        self.replica.folds_pending()
                    ),
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(FOLD_POLL_MS)).await;
        }
        Ok(())
    }

    /// Anchors the state map at the current boundary, through Raft (the leader only: a
    /// follower answers `NOT_LEADER` with the leader, and the API forwards the request).
    async fn anchor_now(&self) -> Result<(), ServiceError> {
        match self
            .client_write(Command::Anchor { time: self.now() })
            .await?
        {
            CommandResponse::Anchored { .. } => Ok(()),
            CommandResponse::Refused(_) => Err(ServiceError::not_initialized()),
            other => Err(ServiceError::internal(format!(
                "an anchor command answered {other:?}"
            ))),
        }
    }
}
