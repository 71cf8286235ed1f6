//! Checkpoints: the ledger's signed tree heads, cosigned by the cluster's voters
//! ([`docket_core::checkpoint`] has the format).
//!
//! * **Cosigning.** A replica cosigns a checkpoint only for what it has itself applied:
//!   the ledger size must be a command boundary it remembers
//!   ([`docket_raft::Replica::boundary`]), the root must be its own tree's at that size and
//!   the state hash its own state's there; a `map` line must name a state-map anchor it
//!   computed itself, with the same root (one it never computed, after a snapshot install,
//!   is `NOT_FOUND`, not a mismatch: it cannot say, it does not disagree). It waits up to [`COSIGN_WAIT`] for its apply to
//!   reach the size. The timestamp is the ledger time of the last entry, so honest
//!   replicas sign identical messages.
//! * **Gathering.** [`Service::checkpoint`] builds the checkpoint at this node's newest
//!   boundary, cosigns it, asks every other voter for its cosignature, and keeps the ones
//!   that verify under the keys the ledger declares for them (`record_cosigner` on
//!   `cluster/node-N`, or `cluster/cluster` for the node that ran init). With a quorum of
//!   voters it is **final**: kept (the last [`FINAL_CHECKPOINTS_MAX`], in memory) and
//!   answered; without one, `NO_QUORUM`.
//!
//! Any node can gather: a client that trusts no single node checks the cosignatures
//! itself, against keys it learned from the ledger.
//!
//! * **The checkpointer.** The leader gathers one every [`CHECKPOINT_INTERVAL_MS`] when the
//!   ledger has grown, so a recent final checkpoint is always at hand and every voter
//!   compares its ledger and state with the leader's at that size. A voter that refuses
//!   with `CHECKPOINT_MISMATCH` holds another history or state: the leader raises a
//!   **divergence alarm** (logged at error level, listed in `GET /v1/status` as
//!   `divergence`, and `docket status` exits non-zero), instead of the divergence waiting
//!   for someone to compare state hashes by hand.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use docket_core::checkpoint::{cosigner_name, Checkpoint, Cosignature, SignedCheckpoint};
use docket_core::{PublicKey, State, Value};
use tokio::time::Instant;

use crate::error::{ErrorCode, ServiceError};
use crate::peers::CosignRefusal;
use crate::service::Service;

/// How long a replica waits for its apply to reach a checkpoint it is asked to cosign.
pub const COSIGN_WAIT: Duration = Duration::from_millis(1_000);
/// Final checkpoints a node keeps to answer `GET /v1/checkpoint/{size}`.
pub const FINAL_CHECKPOINTS_MAX: usize = 1_024;
/// How often the leader gathers a checkpoint of a grown ledger.
pub const CHECKPOINT_INTERVAL_MS: u64 = 10_000;
/// Divergence alarms a node keeps (the newest).
pub const ALARMS_MAX: usize = 64;

/// The leader's checkpointer (module docs).
pub(crate) async fn checkpointer(service: std::sync::Arc<Service>) {
    let mut interval = tokio::time::interval(Duration::from_millis(CHECKPOINT_INTERVAL_MS));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = 0;
    loop {
        interval.tick().await;
        if !service.is_leader() {
            continue;
        }
        let Some(boundary) = service.replica.latest_boundary() else {
            continue;
        };
        if boundary.size <= last {
            continue;
        }
        match service.checkpoint().await {
            Ok((signed, _)) => last = signed.checkpoint.size,
            Err(error) => tracing::debug!(%error, "periodic checkpoint not final"),
        }
    }
}

pub use docket_api::wire::Cosigner;

/// Final checkpoints this node gathered, by size.
#[derive(Debug, Default)]
pub(crate) struct Finals(Mutex<BTreeMap<u64, (SignedCheckpoint, Vec<Cosigner>)>>);

impl Finals {
    fn insert(&self, signed: SignedCheckpoint, cosigners: Vec<Cosigner>) {
        let mut finals = self
            .0
            .lock()
            .expect("invariant: finals lock is not poisoned");
        finals.insert(signed.checkpoint.size, (signed, cosigners));
        while finals.len() > FINAL_CHECKPOINTS_MAX {
            finals.pop_first();
        }
    }

    /// The newest kept checkpoint whose `map` line names `anchor`.
    pub(crate) fn naming(
        &self,
        anchor: &docket_core::statemap::MapAnchor,
    ) -> Option<(SignedCheckpoint, Vec<Cosigner>)> {
        let finals = self
            .0
            .lock()
            .expect("invariant: finals lock is not poisoned");
        finals
            .range(anchor.size..)
            .rev()
            .find(|(_, (signed, _))| signed.checkpoint.map.as_ref() == Some(anchor))
            .map(|(_, found)| found.clone())
    }

    fn get(&self, size: u64) -> Option<(SignedCheckpoint, Vec<Cosigner>)> {
        let finals = self
            .0
            .lock()
            .expect("invariant: finals lock is not poisoned");
        finals.get(&size).cloned()
    }
}

/// The key the ledger declares for `node`, from the `cluster` domain's subjects.
pub fn declared_key(state: &State, node: u64) -> Option<PublicKey> {
    let key_of = |subject: &str| {
        let s = state.subject("cluster", subject)?;
        if s.fields.get("node").and_then(Value::as_int) != Some(node as i64) {
            return None;
        }
        match s.fields.get("cosigner") {
            Some(Value::Str(hex)) => docket_core::id::decode_hex::<32>(hex).ok().map(PublicKey),
            _ => None,
        }
    };
    key_of(&format!("node-{node}")).or_else(|| key_of(crate::admin::CLUSTER_SUBJECT))
}

impl Service {
    /// This node's cosignature of `checkpoint`, if it vouches for it (module docs).
    pub async fn cosign(&self, checkpoint: &Checkpoint) -> Result<Cosignature, ServiceError> {
        if checkpoint.origin != self.ledger_id.as_str() {
            return Err(ServiceError::new(
                ErrorCode::WrongLedger,
                format!(
                    "the checkpoint is of ledger {:?}; this is {:?}",
                    checkpoint.origin,
                    self.ledger_id.as_str()
                ),
            ));
        }
        let deadline = Instant::now() + COSIGN_WAIT;
        // Applied that far, and (an anchor filed on demand appends no entry) anchored there.
        let behind = || {
            self.replica.ledger_len() < checkpoint.size
                || checkpoint
                    .map
                    .is_some_and(|map| self.replica.map_anchor(map.size).is_none())
        };
        while behind() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let boundary = self.replica.boundary(checkpoint.size).ok_or_else(|| {
            ServiceError::new(
                ErrorCode::NotFound,
                format!(
                    "this node cannot vouch for ledger size {}: it has applied {} entries and \
                     remembers the state only after its last {} commands",
                    checkpoint.size,
                    self.replica.ledger_len(),
                    docket_raft::RECENT_BOUNDARIES_MAX
                ),
            )
        })?;
        let root = self
            .replica
            .tree_root_at(checkpoint.size)
            .map_err(ServiceError::storage)?;
        if root != checkpoint.root || boundary.state != checkpoint.state {
            tracing::warn!(
                size = checkpoint.size,
                "refused to cosign a checkpoint that differs from this replica's ledger or state"
            );
            return Err(ServiceError::new(
                ErrorCode::CheckpointMismatch,
                format!(
                    "at size {} this replica's ledger or state differs from the checkpoint's; \
                     it does not cosign it",
                    checkpoint.size
                ),
            ));
        }
        if let Some(map) = &checkpoint.map {
            // A replica vouches for a map root it computed itself at that anchor. One that
            // did not (it installed a snapshot since) is not diverged, it just cannot say.
            match self.replica.map_anchor(map.size) {
                None => {
                    return Err(ServiceError::new(
                        ErrorCode::NotFound,
                        format!(
                            "this node has no state-map root of its own at anchor {} (it \
                             installed a snapshot since, or remembers only its last {} \
                             anchors)",
                            map.size,
                            docket_raft::RECENT_ANCHORS_MAX
                        ),
                    ))
                }
                Some(own) if own.root != map.root => {
                    tracing::warn!(
                        anchor = map.size,
                        "refused to cosign a checkpoint whose state-map root differs from this \
                         replica's"
                    );
                    return Err(ServiceError::new(
                        ErrorCode::CheckpointMismatch,
                        format!(
                            "at anchor {} this replica's state-map root differs from the \
                             checkpoint's; it does not cosign it",
                            map.size
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(checkpoint.cosign(
            &cosigner_name(&checkpoint.origin, self.id),
            boundary.time.0 / 1000,
            &self.cosigner,
        ))
    }

    /// The voters and the keys the ledger declares for them.
    pub fn cosigners(&self) -> Vec<Cosigner> {
        let voters: Vec<u64> = self
            .members()
            .into_iter()
            .filter(|m| m.voter)
            .map(|m| m.id)
            .collect();
        self.replica.with_state(|state| {
            voters
                .iter()
                .map(|node| Cosigner {
                    node: *node,
                    name: cosigner_name(self.ledger_id.as_str(), *node),
                    key: state.and_then(|s| declared_key(s, *node)),
                })
                .collect()
        })
    }

    /// A final checkpoint of this node's newest boundary (module docs).
    pub async fn checkpoint(&self) -> Result<(SignedCheckpoint, Vec<Cosigner>), ServiceError> {
        let boundary = self
            .replica
            .latest_boundary()
            .ok_or_else(ServiceError::not_initialized)?;
        let checkpoint = Checkpoint {
            origin: self.ledger_id.as_str().to_owned(),
            size: boundary.size,
            root: self
                .replica
                .tree_root_at(boundary.size)
                .map_err(ServiceError::storage)?,
            state: boundary.state,
            map: boundary.map,
        };
        let cosigners = self.cosigners();
        let quorum = cosigners.len() / 2 + 1;
        let addrs: BTreeMap<u64, String> = self
            .members()
            .into_iter()
            .map(|m| (m.id, m.api_addr))
            .collect();
        let asks = cosigners.iter().map(|cosigner| {
            let checkpoint = &checkpoint;
            let addr = addrs.get(&cosigner.node).cloned();
            async move {
                if cosigner.node == self.id {
                    return self.cosign(checkpoint).await.map_err(CosignRefusal::from);
                }
                let addr = addr.ok_or_else(|| CosignRefusal::Other("no API address".to_owned()))?;
                self.peers
                    .cosign(&addr, checkpoint, COSIGN_WAIT + self.timing.probe_timeout)
                    .await
            }
        });
        let answers = futures::future::join_all(asks).await;
        let mut cosignatures = Vec::new();
        let mut keys = std::collections::BTreeSet::new();
        let mut missing = Vec::new();
        let mut mismatched = Vec::new();
        for (cosigner, answer) in cosigners.iter().zip(answers) {
            match (answer, cosigner.key) {
                (Ok(cosignature), Some(key))
                    if cosignature.name == cosigner.name
                        && checkpoint.verify(&cosignature, &key).is_ok() =>
                {
                    // One key is one cosigner, whatever names it is declared under.
                    if keys.insert(key) {
                        cosignatures.push(cosignature);
                    }
                }
                (Ok(_), Some(_)) => missing.push(format!(
                    "node {}: a cosignature that does not verify under its declared key",
                    cosigner.node
                )),
                (_, None) => missing.push(format!(
                    "node {}: the ledger declares no checkpoint key for it",
                    cosigner.node
                )),
                (Err(e), _) => {
                    if matches!(e, CosignRefusal::Mismatch(_)) {
                        mismatched.push(cosigner.node);
                    }
                    missing.push(format!("node {}: {e}", cosigner.node));
                }
            }
        }
        if cosignatures.len() < quorum {
            if mismatched.len() >= quorum {
                tracing::error!(
                    size = checkpoint.size,
                    refused_by = ?mismatched,
                    "a majority of the voters refused this node's checkpoint as differing from \
                     their ledger or state: THIS node may have diverged; compare `docket \
                     ledger verify` on each"
                );
            }
            return Err(ServiceError::new(
                ErrorCode::NoQuorum,
                format!(
                    "the checkpoint at size {} has {} of the {quorum} cosignatures a quorum of \
                     the {} voters needs ({})",
                    checkpoint.size,
                    cosignatures.len(),
                    cosigners.len(),
                    missing.join("; ")
                ),
            ));
        }
        let signed = SignedCheckpoint {
            checkpoint,
            cosignatures,
        };
        self.finals.insert(signed.clone(), cosigners.clone());
        // A quorum agrees with this checkpoint: whoever refused it as differing diverged.
        for node in mismatched {
            self.raise_divergence(node, &signed.checkpoint);
            if let Some(addr) = addrs.get(&node) {
                let note = signed.to_note();
                if let Err(error) = self
                    .peers
                    .notify_diverged(addr, &note, self.timing.probe_timeout)
                    .await
                {
                    tracing::warn!(node, %error, "could not tell a diverged node so");
                }
            }
        }
        Ok((signed, cosigners))
    }

    /// Records and logs that `node` refused `checkpoint` because its ledger or state
    /// differs there.
    fn raise_divergence(&self, node: u64, checkpoint: &Checkpoint) {
        tracing::error!(
            node,
            size = checkpoint.size,
            state = %checkpoint.state,
            "DIVERGENCE: node {node} holds another ledger or state than this node at size {}; \
             it refused to cosign this node's checkpoint (compare `docket status` and \
             `docket ledger verify` on both)",
            checkpoint.size
        );
        metrics::counter!(
            crate::telemetry::DIVERGENCE_ALARMS_TOTAL,
            "node" => node.to_string()
        )
        .increment(1);
        let detected_ms = self.now().0;
        let mut alarms = self
            .alarms
            .lock()
            .expect("invariant: alarms lock is not poisoned");
        alarms.push_back(crate::wire::DivergenceAlarm {
            node,
            size: checkpoint.size,
            root: hex::encode(checkpoint.root),
            state: checkpoint.state,
            detected_ms,
        });
        while alarms.len() > ALARMS_MAX {
            alarms.pop_front();
        }
    }

    /// Quarantines this replica if `note`, a checkpoint a quorum of the voters cosigned
    /// (under the keys this replica's own ledger declares), disagrees with this replica's
    /// ledger root or state at its size: from then on it answers every request but health
    /// and status with `DIVERGED`, and Raft stops on it, so it neither acknowledges writes
    /// nor votes until an operator repairs it. Nothing happens when the checkpoint is not
    /// final or agrees with this replica. Returns the evidence kept.
    pub async fn quarantine(&self, note: &str) -> Result<crate::wire::Diverged, ServiceError> {
        let refuse = |code, message: String| Err(ServiceError::new(code, message));
        let signed = match SignedCheckpoint::parse_note(note) {
            Ok(signed) => signed,
            Err(e) => {
                return refuse(
                    ErrorCode::MalformedRequest,
                    format!("not a checkpoint: {e}"),
                )
            }
        };
        if signed.checkpoint.origin != self.ledger_id.as_str() {
            return refuse(
                ErrorCode::WrongLedger,
                format!("the checkpoint is of ledger {:?}", signed.checkpoint.origin),
            );
        }
        let cosigners = self.cosigners();
        let quorum = cosigners.len() / 2 + 1;
        let keys: BTreeMap<String, PublicKey> = cosigners
            .iter()
            .filter_map(|c| Some((c.name.clone(), c.key?)))
            .collect();
        if let Err(e) = signed.verify(&keys, quorum) {
            return refuse(
                ErrorCode::MalformedRequest,
                format!("the checkpoint is not final under the keys this ledger declares: {e}"),
            );
        }
        let size = signed.checkpoint.size;
        if self.replica.ledger_len() < size {
            return refuse(
                ErrorCode::NotFound,
                format!("this replica has not applied ledger size {size} yet"),
            );
        }
        let own_root = self
            .replica
            .tree_root_at(size)
            .map_err(ServiceError::storage)?;
        let own_state = self.replica.boundary(size).map(|b| b.state);
        let differs = own_root != signed.checkpoint.root
            || own_state.is_some_and(|s| s != signed.checkpoint.state);
        if !differs {
            return refuse(
                ErrorCode::MalformedRequest,
                format!("this replica agrees with the checkpoint at size {size}"),
            );
        }
        let evidence = crate::wire::Diverged {
            note: note.to_owned(),
            size,
            own_root: hex::encode(own_root),
            own_state,
        };
        tracing::error!(
            size,
            "DIVERGED: this replica's ledger or state differs from a checkpoint a quorum \
             cosigned at size {size}; it stops serving, voting and acknowledging writes until \
             repaired (wipe its data directory and add it back, or restore from a backup)"
        );
        *self
            .diverged
            .lock()
            .expect("invariant: diverged lock is not poisoned") = Some(evidence.clone());
        metrics::gauge!(crate::telemetry::DIVERGED).set(1.0);
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown after divergence");
        }
        Ok(evidence)
    }

    /// This replica's evidence that it diverged, once it quarantined itself.
    pub fn diverged(&self) -> Option<crate::wire::Diverged> {
        self.diverged
            .lock()
            .expect("invariant: diverged lock is not poisoned")
            .clone()
    }

    /// The divergence alarms this node raised, oldest first.
    pub fn divergence_alarms(&self) -> Vec<crate::wire::DivergenceAlarm> {
        self.alarms
            .lock()
            .expect("invariant: alarms lock is not poisoned")
            .iter()
            .cloned()
            .collect()
    }

    /// A final checkpoint this node gathered earlier at `size`, with the voters it was
    /// gathered under.
    pub fn final_checkpoint(
        &self,
        size: u64,
    ) -> Result<(SignedCheckpoint, Vec<Cosigner>), ServiceError> {
        self.finals.get(size).ok_or_else(|| {
            ServiceError::new(
                ErrorCode::NotFound,
                format!(
                    "this node holds no final checkpoint at size {size} (it keeps the last \
                     {FINAL_CHECKPOINTS_MAX} it gathered); GET /v1/checkpoint makes a new one"
                ),
            )
        })
    }
}
