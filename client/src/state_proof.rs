//! Verified state reads: one subject's state or one proposal's status, proved under the
//! `map` line of a final checkpoint ([`docket_core::statemap`]).
//!
//! The client computes the row's key itself, checks the checkpoint as
//! [`verified_checkpoint`](crate::verify::verified_checkpoint) checks one (a majority of the
//! pinned voters cosigned it; consistent with the last one this client verified), then
//! checks the map proof from the row's bytes up to the checkpoint's map root. The answer is
//! also an offline bundle ([`verify_state_bundle`]).

use anyhow::{anyhow, bail, Context as _};
use docket_api::wire::{Cosigner, StateProofView, STATE_PROOF_FORMAT};
use docket_core::checkpoint::SignedCheckpoint;
use docket_core::state::ProposalRecord;
use docket_core::statemap::{Digest, MapAnchor, MapProof};
use docket_core::{ProposalId, SubjectState};

use crate::verify::{accept_checkpoint, cosigned_note, hash_from_hex, verify_quorum};
use crate::Client;

/// The state row to prove.
#[derive(Clone, Copy, Debug)]
pub enum RowQuery<'a> {
    /// A subject's state.
    Subject { domain: &'a str, subject: &'a str },
    /// A proposal's status record.
    Proposal(ProposalId),
    /// The recorded outcome of a proposal's effect.
    Outcome(ProposalId),
}

impl RowQuery<'_> {
    /// The row's key, as the core lays rows out ([`docket_core::rows`]).
    pub fn key(&self) -> Vec<u8> {
        match self {
            RowQuery::Subject { domain, subject } => {
                docket_core::rows::subject_key(domain, subject)
            }
            RowQuery::Proposal(id) => docket_core::rows::proposal_key(id),
            RowQuery::Outcome(id) => docket_core::rows::outcome_key(&ProposalId::outcome_of(id)),
        }
    }

    fn params(&self) -> Vec<(&'static str, String)> {
        match self {
            RowQuery::Subject { domain, subject } => vec![
                ("domain", (*domain).to_owned()),
                ("subject", (*subject).to_owned()),
            ],
            RowQuery::Proposal(id) => vec![("proposal", id.to_hex())],
            RowQuery::Outcome(id) => vec![("outcome", id.to_hex())],
        }
    }
}

/// A state row checked against a checkpoint.
#[derive(Clone, Debug)]
pub struct VerifiedRow {
    /// The row's canonical bytes; `None`: proved absent.
    pub value: Option<Vec<u8>>,
    pub checkpoint: SignedCheckpoint,
    /// The anchor the map root is at: the row is proved as of that ledger size.
    pub anchor: MapAnchor,
    /// The node's answer: also an offline bundle ([`verify_state_bundle`]).
    pub document: StateProofView,
}

fn digest(hex: &str) -> anyhow::Result<Digest> {
    hash_from_hex("map proof hash", hex)
}

/// Checks the proof of `view` for row `key` against the checkpoint's `map` line (not the
/// cosignatures: see [`verify_state_bundle`] and [`verified_row`]). Answers the row's bytes
/// and the anchor.
pub fn check_row_proof(
    view: &StateProofView,
    signed: &SignedCheckpoint,
    key: &[u8],
) -> anyhow::Result<(Option<Vec<u8>>, MapAnchor)> {
    if view.format != STATE_PROOF_FORMAT {
        bail!(
            "not a {STATE_PROOF_FORMAT} document (format {:?})",
            view.format
        );
    }
    if view.key != hex::encode(key) {
        bail!(
            "the proof is of row {}, not the row asked for ({})",
            view.key,
            hex::encode(key)
        );
    }
    let anchor = signed.checkpoint.map.ok_or_else(|| {
        anyhow!(
            "the checkpoint at size {} carries no state-map root (no `map` line)",
            signed.checkpoint.size
        )
    })?;
    let value = view
        .value
        .as_deref()
        .map(hex::decode)
        .transpose()
        .map_err(|e| anyhow!("the row's bytes are not hex: {e}"))?;
    let proof = MapProof {
        levels: view
            .levels
            .iter()
            .map(|level| {
                let hashes = level
                    .iter()
                    .map(|h| digest(h))
                    .collect::<anyhow::Result<Vec<Digest>>>()?;
                <[Digest; 15]>::try_from(hashes).map_err(|hashes| {
                    anyhow!(
                        "a map proof level holds {} hashes; a node has 15 siblings",
                        hashes.len()
                    )
                })
            })
            .collect::<anyhow::Result<_>>()?,
        leaf: view
            .leaf
            .as_ref()
            .map(|[k, v]| Ok::<_, anyhow::Error>((digest(k)?, digest(v)?)))
            .transpose()?,
    };
    proof
        .verify(&anchor.root, key, value.as_deref())
        .with_context(|| {
            format!(
                "the row's proof does not verify under the state-map root of anchor {} in the \
             checkpoint at size {}",
                anchor.size, signed.checkpoint.size
            )
        })?;
    Ok((value, anchor))
}

/// A state row from `client`, verified (module docs).
pub async fn verified_row(client: &Client, query: RowQuery<'_>) -> anyhow::Result<VerifiedRow> {
    let view: StateProofView = client
        .state_proof(&query.params())
        .await
        .with_context(|| format!("cannot get a state proof from {}", client.base_url()))?;
    let signed = accept_checkpoint(client, &view.checkpoint, &view.cosigners).await?;
    let (value, anchor) = check_row_proof(&view, &signed, &query.key())
        .with_context(|| format!("the state proof from {}", client.base_url()))?;
    Ok(VerifiedRow {
        value,
        checkpoint: signed,
        anchor,
        document: view,
    })
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> anyhow::Result<T> {
    docket_core::encoding::from_bytes(bytes)
        .map_err(|e| anyhow!("the proved {what} row does not decode: {e}"))
}

/// A subject's state, verified; `None`: no proposal has touched it (proved).
pub async fn verified_subject(
    client: &Client,
    domain: &str,
    subject: &str,
) -> anyhow::Result<(Option<SubjectState>, VerifiedRow)> {
    let row = verified_row(client, RowQuery::Subject { domain, subject }).await?;
    let state = row
        .value
        .as_deref()
        .map(|bytes| decode("subject", bytes))
        .transpose()?;
    Ok((state, row))
}

/// A proposal's status record, verified; `None`: not recorded (proved).
pub async fn verified_status(
    client: &Client,
    id: ProposalId,
) -> anyhow::Result<(Option<ProposalRecord>, VerifiedRow)> {
    let row = verified_row(client, RowQuery::Proposal(id)).await?;
    let record = row
        .value
        .as_deref()
        .map(|bytes| decode("proposal status", bytes))
        .transpose()?;
    Ok((record, row))
}

/// What `docket verify` established of a state proof, offline.
#[derive(Clone, Debug, serde::Serialize)]
pub struct VerifiedState {
    pub key: String,
    /// The row's bytes, hex; `None`: proved absent.
    pub value: Option<String>,
    /// The row decoded, when it is a subject's or a proposal's.
    pub decoded: Option<serde_json::Value>,
    pub anchor: u64,
    pub checkpoint_size: u64,
    pub cosigned_by: Vec<String>,
    pub voters: usize,
    pub keys_from: String,
}

/// Checks a state proof document offline: a quorum of valid cosignatures under `trusted`
/// (else the document's own keys), and the row's proof under the checkpoint's map root.
pub fn verify_state_bundle(
    view: &StateProofView,
    trusted: Option<(&[Cosigner], String)>,
) -> anyhow::Result<VerifiedState> {
    let note = cosigned_note(&view.checkpoint, &view.cosigners, trusted)?;
    let key = hex::decode(&view.key).map_err(|e| anyhow!("the row key is not hex: {e}"))?;
    let (value, anchor) = check_row_proof(view, &note.signed, &key)?;
    let decoded = match (key.first(), value.as_deref()) {
        (Some(&docket_core::rows::TABLE_SUBJECT), Some(bytes)) => Some(serde_json::to_value(
            decode::<SubjectState>("subject", bytes)?,
        )?),
        (Some(&docket_core::rows::TABLE_PROPOSAL), Some(bytes)) => Some(serde_json::to_value(
            decode::<ProposalRecord>("proposal status", bytes)?,
        )?),
        _ => None,
    };
    Ok(VerifiedState {
        key: view.key.clone(),
        value: view.value.clone(),
        decoded,
        anchor: anchor.size,
        checkpoint_size: note.signed.checkpoint.size,
        cosigned_by: note.cosigned_by,
        voters: note.voters,
        keys_from: note.keys_from,
    })
}

/// A proposal's status and its entries, all verified, and the recorded outcome of its
/// effect, verified too: the status row proves which entries the proposal has (its decision
/// and, if it was deferred, its deferral), each entry is proved under the same checkpoint
/// and must carry the proposal's id, and the outcome row proves the outcome or its absence.
/// Answers the view and the checkpoint's size. A proposal proved absent is an error.
pub async fn verified_proposal(
    client: &Client,
    id: ProposalId,
) -> anyhow::Result<(docket_api::wire::ProposalView, u64)> {
    let (record, row) = verified_status(client, id).await?;
    let record = record.ok_or_else(|| {
        anyhow!(
            "proposal {id} is not recorded: its absence is proved as of ledger length {}",
            row.anchor.size
        )
    })?;
    let mut indexes = Vec::new();
    if let Some(deferred_at) = record.deferred_at {
        indexes.push(deferred_at.0);
    }
    if !indexes.contains(&record.index.0) {
        indexes.push(record.index.0);
    }
    let mut entries = Vec::new();
    for index in indexes {
        let entry = crate::verify::entry_under(client, &row.checkpoint, index).await?;
        if entry.proposal_id() != Some(id) {
            bail!("entry #{index}, proved as proposal {id}'s, records another proposal");
        }
        entries.push(entry);
    }
    let outcome = verified_row(client, RowQuery::Outcome(id))
        .await?
        .value
        .as_deref()
        .map(|bytes| decode("outcome", bytes))
        .transpose()?;
    Ok((
        docket_api::wire::ProposalView {
            id,
            status: record.status,
            entries,
            outcome,
        },
        row.checkpoint.checkpoint.size,
    ))
}

/// The `cluster` domain's record of node `node` (`node-N`, or `cluster` for the node that
/// ran init), proved under a checkpoint a majority of `pinned` cosigned.
async fn proved_cluster_record(
    client: &Client,
    pinned: &[Cosigner],
    node: u64,
) -> anyhow::Result<Option<SubjectState>> {
    for subject in [format!("node-{node}"), "cluster".to_owned()] {
        let query = RowQuery::Subject {
            domain: "cluster",
            subject: &subject,
        };
        let view = client
            .state_proof(&query.params())
            .await
            .with_context(|| format!("cannot get the proof of cluster/{subject}"))?;
        let signed = SignedCheckpoint::parse_note(&view.checkpoint)
            .context("the checkpoint of a cluster record's proof")?;
        verify_quorum(&signed, pinned)
            .context("the checkpoint of a cluster record's proof, against the pinned voters")?;
        let (value, _) = check_row_proof(&view, &signed, &query.key())?;
        let record: Option<SubjectState> = value
            .as_deref()
            .map(|bytes| decode("cluster", bytes))
            .transpose()?;
        let names_node = record.as_ref().is_some_and(|r| {
            r.fields.get("node").and_then(docket_core::Value::as_int) == Some(node as i64)
        });
        if names_node {
            return Ok(record);
        }
    }
    Ok(None)
}

/// Follows the voter set from `pinned` to `reported` through the ledger: every voter
/// `reported` adds must have an operator-signed record (`CLUSTER.INIT` or
/// `CLUSTER.MEMBER_ADD`) that declares exactly its key, and every pinned voter it drops must
/// be recorded removed, each record proved under a checkpoint a majority of the *pinned*
/// voters cosigned. Answers what changed, for the caller to say; an error names the voter
/// the ledger does not vouch for.
pub async fn follow_voters(
    client: &Client,
    pinned: &[Cosigner],
    reported: &[Cosigner],
) -> anyhow::Result<Vec<String>> {
    let mut changes = Vec::new();
    for voter in reported {
        if pinned
            .iter()
            .any(|p| p.node == voter.node && p.key == voter.key)
        {
            continue;
        }
        let key = voter
            .key
            .ok_or_else(|| anyhow!("node {} is reported as a voter with no key", voter.node))?;
        let record = proved_cluster_record(client, pinned, voter.node).await?;
        let declared = record
            .as_ref()
            .and_then(|r| match r.fields.get("cosigner") {
                Some(docket_core::Value::Str(hex)) => Some(hex.clone()),
                _ => None,
            });
        let member = record
            .as_ref()
            .is_some_and(|r| r.state == "member" || r.state == "initialized");
        if !member || declared.as_deref() != Some(key.to_hex().as_str()) {
            bail!(
                "node {} is reported as a voter with key {}, but the ledger's cluster records \
                 (proved under the voters pinned before) do not declare it a member with that \
                 key: not following the change; pin the voters again by hand if it is real",
                voter.node,
                key.short()
            );
        }
        changes.push(format!("+node-{} (key {})", voter.node, key.short()));
    }
    for voter in pinned {
        if reported.iter().any(|r| r.node == voter.node) {
            continue;
        }
        let record = proved_cluster_record(client, pinned, voter.node).await?;
        if record.as_ref().map(|r| r.state.as_str()) != Some("removed") {
            bail!(
                "node {} was a pinned voter and is no longer reported, but the ledger's cluster \
                 records do not show it removed: not following the change",
                voter.node
            );
        }
        changes.push(format!("-node-{}", voter.node));
    }
    Ok(changes)
}
