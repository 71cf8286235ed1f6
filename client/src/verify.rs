//! Verified reads: what a client that trusts no node checks.
//!
//! * [`verified_checkpoint`]: a final checkpoint, cosigned by a majority of the voters this
//!   client pinned for the cluster, and consistent (RFC 9162) with the last checkpoint it
//!   verified; a fork or a rollback is refused with both checkpoints as evidence.
//! * [`verified_entry`]: an entry whose hash matches its contents and whose audit path
//!   leads to such a checkpoint's root.
//! * [`ProofBundle`], [`prove`], [`verify_bundle`]: the same, bundled for checking offline.
//!
//! What the client pins and remembers lives in [`config_dir`]`/clusters`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use docket_api::wire::{CheckpointView, Cosigner};
use docket_core::checkpoint::SignedCheckpoint;
use docket_core::merkle::Hash;
use docket_core::{LedgerEntry, PublicKey};
use serde::{Deserialize, Serialize};

use crate::Client;

/// The format tag of a proof bundle.
pub const BUNDLE_FORMAT: &str = "docket-entry-proof/v1";
/// Largest bundle or cosigners file read.
pub const PROOF_FILE_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// An entry, its RFC 9162 audit path and the cosigned checkpoint it leads to: everything
/// `docket verify` needs, offline.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofBundle {
    pub format: String,
    pub entry: LedgerEntry,
    /// Audit path, leaf first, lowercase hex.
    pub proof: Vec<String>,
    /// The checkpoint's C2SP signed note.
    pub checkpoint: String,
    /// The voters and their keys as the node that made the bundle reads its ledger.
    pub cosigners: Vec<Cosigner>,
}

/// Reads a UTF-8 file of at most `bytes_max` bytes.
fn read_limited(path: &Path, bytes_max: u64, what: &str) -> anyhow::Result<String> {
    let metadata = std::fs::metadata(path)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    if metadata.len() > bytes_max {
        bail!(
            "{what} {} is {} bytes, over the limit of {bytes_max}",
            path.display(),
            metadata.len()
        );
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

pub fn read_cosigners(path: &Path) -> anyhow::Result<Vec<Cosigner>> {
    let text = read_limited(path, PROOF_FILE_BYTES_MAX, "cosigners file")?;
    serde_json::from_str(&text)
        .map_err(|e| anyhow!("{} is not a cosigners file: {e}", path.display()))
}

/// Verifies `signed` against `cosigners` (a majority of them must have cosigned); answers
/// the names that did.
pub fn verify_quorum(
    signed: &SignedCheckpoint,
    cosigners: &[Cosigner],
) -> anyhow::Result<Vec<String>> {
    let keys: BTreeMap<String, PublicKey> = cosigners
        .iter()
        .filter_map(|c| c.key.map(|key| (c.name.clone(), key)))
        .collect();
    let quorum = cosigners.len() / 2 + 1;
    signed
        .verify(&keys, quorum)
        .with_context(|| format!("checkpoint at size {}", signed.checkpoint.size))?;
    Ok(signed
        .cosignatures
        .iter()
        .filter(|c| keys.contains_key(&c.name))
        .map(|c| c.name.clone())
        .collect())
}

/// A bundle for entry `index` under a fresh final checkpoint from `client`.
pub async fn prove(client: &Client, index: u64) -> anyhow::Result<ProofBundle> {
    let view: CheckpointView = client
        .checkpoint()
        .await
        .context("cannot get a final checkpoint")?;
    if index >= view.size {
        bail!(
            "entry #{index} is not in the newest checkpoint (size {}); wait for it to be \
             recorded",
            view.size
        );
    }
    let inclusion = client
        .inclusion_proof(index, view.size)
        .await
        .context("cannot get the inclusion proof")?;
    let page = client
        .ledger(index, 1)
        .await
        .context("cannot read the entry")?;
    let entry = page
        .entries
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("the node has no entry #{index}"))?;
    Ok(ProofBundle {
        format: BUNDLE_FORMAT.to_owned(),
        entry,
        proof: inclusion.proof,
        checkpoint: view.note,
        cosigners: view.cosigners,
    })
}

/// What `docket verify` established.
#[derive(Clone, Debug, Serialize)]
pub struct Verified {
    pub index: u64,
    pub entry_hash: String,
    pub checkpoint_size: u64,
    pub root: String,
    pub cosigned_by: Vec<String>,
    pub voters: usize,
    pub keys_from: String,
}

/// Checks a bundle offline: the entry's hash, its inclusion under the checkpoint's root,
/// and a quorum of valid cosignatures under `trusted` (else the bundle's own keys).
pub fn verify_bundle(
    bundle: &ProofBundle,
    trusted: Option<(&[Cosigner], String)>,
) -> anyhow::Result<Verified> {
    if bundle.format != BUNDLE_FORMAT {
        bail!("not a {BUNDLE_FORMAT} bundle (format {:?})", bundle.format);
    }
    let note = cosigned_note(&bundle.checkpoint, &bundle.cosigners, trusted)?;
    let proof = hashes(&bundle.proof)?;
    note.signed.checkpoint.verify_entry(&bundle.entry, &proof)?;
    Ok(Verified {
        index: bundle.entry.index.0,
        entry_hash: bundle.entry.hash.to_hex(),
        checkpoint_size: note.signed.checkpoint.size,
        root: hex::encode(note.signed.checkpoint.root),
        cosigned_by: note.cosigned_by,
        voters: note.voters,
        keys_from: note.keys_from,
    })
}

/// Where the CLI remembers, per cluster, the voters' keys it pinned and the last checkpoint
/// it verified: `$DOCKET_CONFIG_DIR`, else `$XDG_CONFIG_HOME/docket`, else
/// `$HOME/.config/docket`.
pub fn config_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKET_CONFIG_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME") {
        return Some(PathBuf::from(dir).join("docket"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config").join("docket"))
}

/// What this client remembers of one cluster.
#[derive(Debug)]
struct Memory {
    dir: PathBuf,
    cluster: String,
}

impl Memory {
    fn open(cluster: &str) -> anyhow::Result<Memory> {
        // The name comes from a node's answer: only a valid ledger id ([a-z0-9-]) may name
        // a file here.
        docket_core::LedgerId::new(cluster).map_err(|e| anyhow!("the checkpoint's origin: {e}"))?;
        let dir = config_dir()
            .ok_or_else(|| anyhow!("no config directory: set DOCKET_CONFIG_DIR or HOME"))?
            .join("clusters");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Memory {
            dir,
            cluster: cluster.to_owned(),
        })
    }

    fn path(&self, what: &str) -> PathBuf {
        self.dir.join(format!("{}.{what}", self.cluster))
    }

    fn cosigners(&self) -> anyhow::Result<Option<Vec<Cosigner>>> {
        let path = self.path("cosigners.json");
        if !path.exists() {
            return Ok(None);
        }
        read_cosigners(&path).map(Some)
    }

    fn checkpoint(&self) -> anyhow::Result<Option<SignedCheckpoint>> {
        let path = self.path("checkpoint");
        if !path.exists() {
            return Ok(None);
        }
        let note = read_limited(&path, PROOF_FILE_BYTES_MAX, "remembered checkpoint")?;
        SignedCheckpoint::parse_note(&note)
            .map(Some)
            .with_context(|| format!("{} (delete it to start over)", path.display()))
    }

    fn save(&self, what: &str, text: &str) -> anyhow::Result<()> {
        let path = self.path(what);
        let temporary = self.path(&format!("{what}.tmp"));
        std::fs::write(&temporary, text)
            .and_then(|()| std::fs::rename(&temporary, &path))
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

/// A final checkpoint from `client`, checked as a client that trusts no node checks it:
/// a majority of the voters this client pinned for the cluster (pinned from the node's
/// report on first contact, said on stderr) cosigned it, and it is consistent with the last
/// checkpoint this client verified (an RFC 9162 consistency proof from the node). A fork or
/// a rollback is refused with both checkpoints printed. The newer checkpoint is remembered.
pub async fn verified_checkpoint(client: &Client) -> anyhow::Result<SignedCheckpoint> {
    let view = client
        .checkpoint()
        .await
        .with_context(|| format!("cannot get a checkpoint from {}", client.base_url()))?;
    accept_checkpoint(client, &view.note, &view.cosigners).await
}

/// Checks a checkpoint `note` from `client` as [`verified_checkpoint`] does (the voters
/// pinned for the cluster, `reported` on first contact; consistency with the last one this
/// client verified, proved by `client`), and remembers it when it is newer.
pub async fn accept_checkpoint(
    client: &Client,
    note: &str,
    reported: &[Cosigner],
) -> anyhow::Result<SignedCheckpoint> {
    let signed = SignedCheckpoint::parse_note(note).context("the node's checkpoint note")?;
    let memory = Memory::open(&signed.checkpoint.origin)?;
    let pinned = memory.cosigners()?;
    let first_contact = pinned.is_none();
    let cosigners = pinned.unwrap_or_else(|| reported.to_vec());
    verify_quorum(&signed, &cosigners).with_context(|| {
        format!(
            "against the keys pinned in {}",
            memory.path("cosigners.json").display()
        )
    })?;
    let moved = !first_contact && {
        let set = |c: &[Cosigner]| {
            let mut v: Vec<(u64, Option<PublicKey>)> = c.iter().map(|c| (c.node, c.key)).collect();
            v.sort();
            v
        };
        set(&cosigners) != set(reported)
    };
    if moved {
        // The voters changed since they were pinned: follow through the ledger's
        // operator-signed cluster records, proved under checkpoints the pinned voters
        // cosigned.
        let changes = crate::state_proof::follow_voters(client, &cosigners, reported).await?;
        if !changes.is_empty() {
            memory.save(
                "cosigners.json",
                &format!("{}\n", serde_json::to_string_pretty(reported)?),
            )?;
            eprintln!(
                "the voters of cluster {} changed ({}), as the ledger's cluster records prove \
                 under checkpoints the voters pinned before cosigned; pinned the new set in {}",
                signed.checkpoint.origin,
                changes.join(", "),
                memory.path("cosigners.json").display()
            );
        }
    }
    if first_contact {
        // Trust on first use, said plainly: these keys are what the node reports.
        memory.save(
            "cosigners.json",
            &format!("{}\n", serde_json::to_string_pretty(reported)?),
        )?;
        eprintln!(
            "pinned the voters' checkpoint keys of cluster {} as {} reports them (trust on \
             first use; compare them with the operator's), in {}",
            signed.checkpoint.origin,
            client.base_url(),
            memory.path("cosigners.json").display()
        );
    }
    let new = &signed.checkpoint;
    if let Some(old) = memory.checkpoint()? {
        let evidence = || {
            format!(
                "the checkpoint this client verified before:\n{}\nthe checkpoint {} shows now:\n{}",
                old.to_note(),
                client.base_url(),
                signed.to_note()
            )
        };
        let old = &old.checkpoint;
        if new.size >= old.size {
            let proof = if old.size == 0 || old.size == new.size {
                Vec::new()
            } else {
                consistency(client, old.size, new.size).await?
            };
            if let Err(why) = new.verify_extends(old, &proof) {
                bail!(
                    "FORK: the node shows a history that does not extend the one this client \
                     verified before ({why}). Do not trust it.\n{}",
                    evidence()
                );
            }
        } else {
            let proof = match consistency(client, new.size, old.size).await {
                Ok(proof) => proof,
                Err(error) => bail!(
                    "ROLLBACK: the node's checkpoint (size {}) is older than the one this \
                     client verified before (size {}) and it cannot prove the newer one \
                     extends it ({error:#}). Ask another node.\n{}",
                    new.size,
                    old.size,
                    evidence()
                ),
            };
            if let Err(why) = old.verify_extends(new, &proof) {
                bail!(
                    "FORK: the node's checkpoint is not a prefix of the one this client \
                     verified before ({why}). Do not trust it.\n{}",
                    evidence()
                );
            }
            // Behind, but on the same history: nothing newer to remember.
            return Ok(signed);
        }
    }
    memory.save("checkpoint", &signed.to_note())?;
    Ok(signed)
}

pub async fn consistency(client: &Client, from: u64, to: u64) -> anyhow::Result<Vec<Hash>> {
    let view = client
        .consistency_proof(from, to)
        .await
        .with_context(|| format!("cannot get a consistency proof from size {from} to {to}"))?;
    hashes(&view.proof)
}

/// A proof's hashes from their lowercase hex, as the API sends them.
pub fn hashes(hex: &[String]) -> anyhow::Result<Vec<Hash>> {
    hex.iter().map(|h| hash_from_hex("proof hash", h)).collect()
}

/// One 32-byte hash of a proof from its lowercase hex; `what` names it in the error.
pub(crate) fn hash_from_hex(what: &str, hex: &str) -> anyhow::Result<[u8; 32]> {
    docket_core::id::decode_hex::<32>(hex).map_err(|e| anyhow!("{what} {hex:?}: {e}"))
}

/// An offline document's checkpoint, parsed, with a quorum of valid cosignatures under
/// `trusted` (else the document's own keys, `own`).
pub(crate) struct CosignedNote {
    pub signed: SignedCheckpoint,
    pub cosigned_by: Vec<String>,
    pub voters: usize,
    pub keys_from: String,
}

/// Checks an offline document's checkpoint note (see [`CosignedNote`]).
pub(crate) fn cosigned_note(
    note: &str,
    own: &[Cosigner],
    trusted: Option<(&[Cosigner], String)>,
) -> anyhow::Result<CosignedNote> {
    let signed = SignedCheckpoint::parse_note(note).context("the checkpoint")?;
    let (cosigners, keys_from) = match trusted {
        Some((cosigners, source)) => (cosigners, source),
        None => (
            own,
            "the bundle itself (pass --cosigners FILE with keys you trust)".to_owned(),
        ),
    };
    let cosigned_by = verify_quorum(&signed, cosigners)?;
    Ok(CosignedNote {
        signed,
        cosigned_by,
        voters: cosigners.len(),
        keys_from,
    })
}

/// Entry `index`, verified: its hash, its inclusion under a [`verified_checkpoint`].
pub async fn verified_entry(client: &Client, index: u64) -> anyhow::Result<(LedgerEntry, u64)> {
    let signed = verified_checkpoint(client).await?;
    let entry = entry_under(client, &signed, index).await?;
    Ok((entry, signed.checkpoint.size))
}

/// Entry `index` proved under `signed`, a checkpoint the caller verified already (a client
/// reading many entries verifies one checkpoint, then one request per entry).
pub async fn entry_under(
    client: &Client,
    signed: &SignedCheckpoint,
    index: u64,
) -> anyhow::Result<LedgerEntry> {
    let size = signed.checkpoint.size;
    if index >= size {
        bail!(
            "entry #{index} is not covered by the newest final checkpoint (size {size}); retry \
             shortly, or read it with --no-verify"
        );
    }
    let answer = client
        .entry_proof(index, size)
        .await
        .with_context(|| format!("cannot read entry #{index} with its proof"))?;
    if answer.entry.index.0 != index {
        bail!(
            "asked for entry #{index}, the node answered #{}",
            answer.entry.index
        );
    }
    let proof = hashes(&answer.proof)?;
    signed
        .checkpoint
        .verify_entry(&answer.entry, &proof)
        .with_context(|| format!("entry #{index} from {} does not verify", client.base_url()))?;
    Ok(answer.entry)
}

/// The format tag of a ledger export.
pub const EXPORT_FORMAT: &str = "docket-ledger-export/v1";
/// Entries asked for per page while exporting.
pub const EXPORT_PAGE_ENTRIES: u64 = 1_000;
/// Longest line read from an export (one entry; a constitution document is the largest).
pub const EXPORT_LINE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The first line of an export: what the entries after it must add up to.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportHeader {
    pub format: String,
    /// The final checkpoint the export ends at (a C2SP signed note).
    pub checkpoint: String,
    /// The voters and their keys as the exporting node reports them.
    pub cosigners: Vec<Cosigner>,
}

/// Writes the ledger up to a [`verified_checkpoint`] to `out` as JSON lines: the header,
/// then every entry in order, a page at a time (memory: one page), each checked against
/// the hash chain (and its proposal id) as it is written, and the whole against the
/// checkpoint's root at the end. Answers the size. This is also a backup
/// (`docket backup`): the checkpoint names the ledger (its origin), the size and the state
/// hash at that size, which the entries must replay to ([`verify_backup`]).
pub async fn export(client: &Client, out: &mut impl std::io::Write) -> anyhow::Result<u64> {
    export_with_progress(client, out, |_, _| {}).await
}

/// [`export`], calling `progress(written, size)` after each entry.
pub async fn export_with_progress(
    client: &Client,
    out: &mut impl std::io::Write,
    mut progress: impl FnMut(u64, u64),
) -> anyhow::Result<u64> {
    let signed = verified_checkpoint(client).await?;
    let view: CheckpointView = client.checkpoint_at(signed.checkpoint.size).await?;
    let size = signed.checkpoint.size;
    let header = ExportHeader {
        format: EXPORT_FORMAT.to_owned(),
        checkpoint: signed.to_note(),
        cosigners: view.cosigners,
    };
    writeln!(out, "{}", serde_json::to_string(&header)?)?;
    let mut chain = docket_core::ledger::ChainVerifier::from_genesis();
    let mut tree = docket_core::merkle::Frontier::new();
    let mut next = 0;
    while next < size {
        let page = client
            .ledger(next, EXPORT_PAGE_ENTRIES.min(size - next))
            .await
            .with_context(|| format!("cannot read the ledger from #{next}"))?;
        if page.entries.is_empty() {
            bail!("the node returned no entries from #{next}");
        }
        for entry in page.entries.iter().take_while(|e| e.index.0 < size) {
            if entry.index.0 != next {
                bail!(
                    "asked for entry #{next}, the node answered #{}: not exporting a ledger out \
                     of order",
                    entry.index
                );
            }
            // Checked as written: a node that serves a broken chain fails the export here,
            // not when the file is verified (or restored) later.
            chain
                .push(entry, true)
                .with_context(|| format!("the node's entry #{next} does not chain"))?;
            if let docket_core::Record::Genesis { ledger_id, .. } = &entry.record {
                if ledger_id.as_str() != signed.checkpoint.origin {
                    bail!(
                        "the genesis entry names ledger {ledger_id}, the checkpoint {}",
                        signed.checkpoint.origin
                    );
                }
            }
            tree.append(&entry.hash.0, |_, _, _| {});
            writeln!(out, "{}", serde_json::to_string(entry)?)?;
            next += 1;
            progress(next, size);
        }
    }
    if tree.root() != signed.checkpoint.root {
        bail!("the entries the node served do not add up to the checkpoint's root");
    }
    out.flush()?;
    Ok(size)
}

/// What [`verify_export`] established.
#[derive(Clone, Debug, Serialize)]
pub struct ExportVerified {
    pub entries: u64,
    pub root: String,
    pub cosigned_by: Vec<String>,
    pub voters: usize,
    pub keys_from: String,
}

/// Checks an export offline, streaming (memory: one line and O(log n) hashes): the header's
/// checkpoint has a quorum of valid cosignatures under `trusted` (else the export's own
/// keys); the entries chain from genesis (indexes, links, hashes, proposal ids); and the
/// RFC 9162 root over their hashes is the checkpoint's, at its size.
pub fn verify_export(
    input: impl std::io::BufRead,
    trusted: Option<(&[Cosigner], String)>,
) -> anyhow::Result<ExportVerified> {
    verify_export_with(input, trusted, |_, _| Ok(())).map(|(verified, _)| verified)
}

/// [`verify_export`], handing each entry, once it chained, to `visit` with the checkpoint
/// (a backup's audit runs there). Answers the checkpoint too.
pub fn verify_export_with(
    mut input: impl std::io::BufRead,
    trusted: Option<(&[Cosigner], String)>,
    mut visit: impl FnMut(&LedgerEntry, &SignedCheckpoint) -> anyhow::Result<()>,
) -> anyhow::Result<(ExportVerified, SignedCheckpoint)> {
    // One line at a time, never more than the line limit in memory, however long a line
    // of a damaged or hostile file is.
    let mut buffer = Vec::new();
    let mut read_line = |what: &str| -> anyhow::Result<Option<String>> {
        use std::io::{BufRead as _, Read as _};
        buffer.clear();
        let read = (&mut input)
            .take(EXPORT_LINE_BYTES_MAX as u64 + 1)
            .read_until(b'\n', &mut buffer)
            .with_context(|| format!("reading {what}"))?;
        if read == 0 {
            return Ok(None);
        }
        if buffer.last() == Some(&b'\n') {
            buffer.pop();
        } else if buffer.len() > EXPORT_LINE_BYTES_MAX {
            bail!("{what} is over {EXPORT_LINE_BYTES_MAX} bytes");
        }
        let line = std::str::from_utf8(&buffer).with_context(|| format!("{what} is not UTF-8"))?;
        Ok(Some(line.to_owned()))
    };
    let header: ExportHeader = match read_line("the header")? {
        Some(line) => serde_json::from_str(&line).context("the header line")?,
        None => bail!("the export is empty"),
    };
    if header.format != EXPORT_FORMAT {
        bail!("not a {EXPORT_FORMAT} export (format {:?})", header.format);
    }
    let signed = SignedCheckpoint::parse_note(&header.checkpoint).context("the checkpoint")?;
    let (cosigners, keys_from) = match trusted {
        Some((cosigners, source)) => (cosigners.to_vec(), source),
        None => (
            header.cosigners.clone(),
            "the export itself (pass --cosigners FILE with keys you trust)".to_owned(),
        ),
    };
    let cosigned_by = verify_quorum(&signed, &cosigners)?;
    let mut chain = docket_core::ledger::ChainVerifier::from_genesis();
    let mut tree = docket_core::merkle::Frontier::new();
    let mut count = 0u64;
    while let Some(line) = read_line("an entry")? {
        let entry: LedgerEntry =
            serde_json::from_str(&line).with_context(|| format!("entry line {}", count + 1))?;
        chain
            .push(&entry, true)
            .with_context(|| format!("entry #{}", entry.index))?;
        if count >= signed.checkpoint.size {
            bail!(
                "the export holds more entries than its checkpoint covers ({})",
                signed.checkpoint.size
            );
        }
        visit(&entry, &signed)?;
        tree.append(&entry.hash.0, |_, _, _| {});
        count += 1;
    }
    if count != signed.checkpoint.size {
        bail!(
            "the export holds {count} entries; its checkpoint covers {}",
            signed.checkpoint.size
        );
    }
    if tree.root() != signed.checkpoint.root {
        bail!("the entries' RFC 9162 root is not the checkpoint's: the export was altered");
    }
    Ok((
        ExportVerified {
            entries: count,
            root: hex::encode(tree.root()),
            cosigned_by,
            voters: cosigners.len(),
            keys_from,
        },
        signed,
    ))
}

/// What [`verify_backup`] established, on top of [`ExportVerified`].
#[derive(Clone, Debug, Serialize)]
pub struct BackupVerified {
    #[serde(flatten)]
    pub export: ExportVerified,
    /// The ledger the backup is of (its genesis entry's id, the checkpoint's origin).
    pub ledger_id: String,
    /// Commands the audit re-derived.
    pub commands: u64,
    /// The state hash the replay reached: the checkpoint's.
    pub state_hash: docket_core::StateHash,
    /// The hash of the last entry.
    pub head_hash: docket_core::EntryHash,
}

/// Checks a backup (a ledger export, [`EXPORT_FORMAT`]) offline, streaming, for restoring:
/// everything [`verify_export`] checks (cosignatures, chain, ids, the Merkle root at the
/// checkpoint's size), plus that the genesis entry names the checkpoint's ledger and that
/// re-adjudicating every entry ([`docket_core::Auditor`]) derives exactly the recorded
/// ones and ends at the checkpoint's state hash. Memory: one line, O(log n) hashes and the
/// audit's state. `progress(entries)` is called after each entry.
pub fn verify_backup(
    input: impl std::io::BufRead,
    trusted: Option<(&[Cosigner], String)>,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<BackupVerified> {
    let mut auditor = docket_core::Auditor::new();
    let mut head = None;
    let (export, signed) = verify_export_with(input, trusted, |entry, signed| {
        if let docket_core::Record::Genesis { ledger_id, .. } = &entry.record {
            if ledger_id.as_str() != signed.checkpoint.origin {
                bail!(
                    "the genesis entry names ledger {ledger_id}; the checkpoint is of {}",
                    signed.checkpoint.origin
                );
            }
        }
        auditor
            .push(entry)
            .map_err(|error| anyhow!("the audit FAILED at entry #{}: {error}", entry.index))?;
        head = Some(entry.hash);
        progress(auditor.entries());
        Ok(())
    })?;
    let (state, report) = auditor
        .finish()
        .map_err(|error| anyhow!("the audit FAILED: {error}"))?;
    let state_hash = state.hash();
    if state_hash != signed.checkpoint.state {
        bail!(
            "replaying the entries gives state hash {state_hash}; the checkpoint says {}",
            signed.checkpoint.state
        );
    }
    Ok(BackupVerified {
        export,
        ledger_id: signed.checkpoint.origin.clone(),
        commands: report.commands,
        state_hash,
        head_hash: head.ok_or_else(|| anyhow!("the backup holds no entries"))?,
    })
}
