//! `docket checkpoint`, `docket ledger prove` and `docket verify`: checkpoints cosigned by
//! a quorum of voters, an entry's inclusion proof bundled with its checkpoint, and the
//! offline check of such a bundle (no network).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use clap::Args;
use docket_core::checkpoint::SignedCheckpoint;
use docket_core::merkle::Hash;
use docket_core::{LedgerEntry, PublicKey};
use docket_service::checkpoints::Cosigner;
use serde::{Deserialize, Serialize};

use super::{print_json, read_limited, ClientArgs, OutputFormat};
use crate::client::{Client, REQUEST_TIMEOUT_MS_DEFAULT};
use crate::wire::CheckpointView;

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

#[derive(Clone, Debug, Args)]
pub struct CheckpointArgs {
    /// A checkpoint this node gathered before, by ledger size [default: a new one of the
    /// node's newest ledger size].
    #[arg(long, value_name = "N")]
    pub size: Option<u64>,
    /// Verify the cosignatures against these keys (a file written by --save-cosigners)
    /// instead of the keys the node reports.
    #[arg(long, value_name = "FILE")]
    pub cosigners: Option<PathBuf>,
    /// Write the voters and their keys, as the node reports them, to FILE: pin them for
    /// later `--cosigners` checks.
    #[arg(long, value_name = "FILE")]
    pub save_cosigners: Option<PathBuf>,
}

#[derive(Clone, Debug, Args)]
pub struct ProveArgs {
    /// Ledger index of the entry.
    #[arg(value_name = "INDEX")]
    pub index: u64,
    /// Write the bundle here [default: stdout].
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Clone, Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["bundle", "witness"])))]
pub struct VerifyArgs {
    /// A proof bundle (`docket ledger prove`).
    #[arg(value_name = "BUNDLE")]
    pub bundle: Option<PathBuf>,
    /// Witness mode: ask each of these nodes for a final checkpoint and report any two that
    /// cannot both be true (same size and another root, or no consistency proof between
    /// them). Comma-separated or repeated.
    #[arg(long, value_name = "URL", value_delimiter = ',')]
    pub witness: Vec<String>,
    /// Trust these cosigner keys (`docket checkpoint --save-cosigners`) instead of the ones
    /// the bundle carries.
    #[arg(long, value_name = "FILE")]
    pub cosigners: Option<PathBuf>,
}

fn read_cosigners(path: &Path) -> anyhow::Result<Vec<Cosigner>> {
    let text = read_limited(path, PROOF_FILE_BYTES_MAX, "cosigners file")?;
    serde_json::from_str(&text)
        .map_err(|e| anyhow!("{} is not a cosigners file: {e}", path.display()))
}

/// Verifies `signed` against `cosigners` (a majority of them must have cosigned); answers
/// the names that did.
fn verify_quorum(signed: &SignedCheckpoint, cosigners: &[Cosigner]) -> anyhow::Result<Vec<String>> {
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

pub(super) async fn checkpoint(args: &ClientArgs, command: &CheckpointArgs) -> anyhow::Result<()> {
    let client = args.client(REQUEST_TIMEOUT_MS_DEFAULT).await?;
    if command.size.is_none() && command.cosigners.is_none() && command.save_cosigners.is_none() {
        let signed = verified_checkpoint(&client).await?;
        if args.output == OutputFormat::Json {
            return print_json(&serde_json::json!({ "note": signed.to_note() }));
        }
        std::io::stdout()
            .lock()
            .write_all(signed.to_note().as_bytes())
            .context("cannot write to stdout")?;
        eprintln!(
            "final: cosigned by a majority of the pinned voters, and consistent with the last \
             checkpoint this client verified (remembered in {})",
            config_dir().map_or_else(
                || "-".to_owned(),
                |d| d.join("clusters").display().to_string()
            )
        );
        return Ok(());
    }
    let view = match command.size {
        Some(size) => client.checkpoint_at(size).await,
        None => client.checkpoint().await,
    }
    .with_context(|| format!("cannot get a checkpoint from {}", client.base_url()))?;
    let signed = SignedCheckpoint::parse_note(&view.note).context("the node's checkpoint note")?;
    let (cosigners, source) = match &command.cosigners {
        Some(path) => (read_cosigners(path)?, path.display().to_string()),
        None => (view.cosigners.clone(), "the node's report".to_owned()),
    };
    let names = verify_quorum(&signed, &cosigners)?;
    if let Some(path) = &command.save_cosigners {
        let text = serde_json::to_string_pretty(&view.cosigners)?;
        std::fs::write(path, format!("{text}\n"))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.output == OutputFormat::Json {
        return print_json(&view);
    }
    std::io::stdout()
        .lock()
        .write_all(view.note.as_bytes())
        .context("cannot write to stdout")?;
    eprintln!(
        "final: cosigned by {} of {} voters ({}), keys from {source}",
        names.len(),
        cosigners.len(),
        names.join(", ")
    );
    Ok(())
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

pub(super) async fn prove_command(args: &ClientArgs, command: &ProveArgs) -> anyhow::Result<()> {
    let client = args.client(REQUEST_TIMEOUT_MS_DEFAULT).await?;
    let bundle = prove(&client, command.index).await?;
    let text = serde_json::to_string_pretty(&bundle)?;
    match &command.out {
        Some(path) => {
            std::fs::write(path, format!("{text}\n"))
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "wrote {}; check it with `docket verify {}`",
                path.display(),
                path.display()
            );
        }
        None => say!("{text}"),
    }
    Ok(())
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
    let signed = SignedCheckpoint::parse_note(&bundle.checkpoint).context("the checkpoint")?;
    let (cosigners, keys_from) = match trusted {
        Some((cosigners, source)) => (cosigners, source),
        None => (
            bundle.cosigners.as_slice(),
            "the bundle itself (pass --cosigners FILE with keys you trust)".to_owned(),
        ),
    };
    let cosigned_by = verify_quorum(&signed, cosigners)?;
    let proof = bundle
        .proof
        .iter()
        .map(|h| docket_core::id::decode_hex::<32>(h).map_err(|e| anyhow!("proof hash {h:?}: {e}")))
        .collect::<anyhow::Result<Vec<Hash>>>()?;
    signed.checkpoint.verify_entry(&bundle.entry, &proof)?;
    Ok(Verified {
        index: bundle.entry.index.0,
        entry_hash: bundle.entry.hash.to_hex(),
        checkpoint_size: signed.checkpoint.size,
        root: hex::encode(signed.checkpoint.root),
        cosigned_by,
        voters: cosigners.len(),
        keys_from,
    })
}

pub(super) async fn verify_command(args: &ClientArgs, command: &VerifyArgs) -> anyhow::Result<()> {
    let Some(bundle_path) = &command.bundle else {
        return witness(args, command).await;
    };
    let text = read_limited(bundle_path, PROOF_FILE_BYTES_MAX, "proof bundle")?;
    let bundle: ProofBundle = serde_json::from_str(&text)
        .map_err(|e| anyhow!("{} is not a proof bundle: {e}", bundle_path.display()))?;
    let pinned = match &command.cosigners {
        Some(path) => Some((read_cosigners(path)?, path.display().to_string())),
        None => None,
    };
    let verified = verify_bundle(
        &bundle,
        pinned
            .as_ref()
            .map(|(c, source)| (c.as_slice(), source.clone())),
    )
    .with_context(|| format!("{} does not verify", bundle_path.display()))?;
    if args.output == OutputFormat::Json {
        return print_json(&verified);
    }
    say!(
        "verified: entry #{} ({}) is in the ledger of checkpoint size {} (root {}),",
        verified.index,
        verified.entry_hash,
        verified.checkpoint_size,
        verified.root
    );
    say!(
        "cosigned by {} of {} voters ({}); keys from {}",
        verified.cosigned_by.len(),
        verified.voters,
        verified.cosigned_by.join(", "),
        verified.keys_from
    );
    Ok(())
}

/// `docket verify --witness`: every node's final checkpoint, checked pairwise.
async fn witness(args: &ClientArgs, command: &VerifyArgs) -> anyhow::Result<()> {
    let base = args.client(REQUEST_TIMEOUT_MS_DEFAULT).await?;
    let pinned = match &command.cosigners {
        Some(path) => Some(read_cosigners(path)?),
        None => None,
    };
    let mut seen: Vec<(String, Client, SignedCheckpoint)> = Vec::new();
    for url in &command.witness {
        let client = base.at(url)?;
        let view = match client.checkpoint().await {
            Ok(view) => view,
            Err(error) => {
                eprintln!("{url}: no final checkpoint: {error}");
                continue;
            }
        };
        let signed = SignedCheckpoint::parse_note(&view.note)
            .with_context(|| format!("{url}: its checkpoint note"))?;
        let cosigners = pinned.clone().unwrap_or(view.cosigners);
        match verify_quorum(&signed, &cosigners) {
            Ok(names) => say!(
                "{url}: size {} root {} cosigned by {}",
                signed.checkpoint.size,
                hex::encode(signed.checkpoint.root),
                names.join(", ")
            ),
            Err(error) => {
                say!("{url}: not a final checkpoint under the keys given: {error:#}");
                continue;
            }
        }
        seen.push((url.clone(), client, signed));
    }
    let mut conflicts = 0;
    for i in 0..seen.len() {
        for j in 0..seen.len() {
            let ((a_url, _, a), (b_url, b_client, b)) = (&seen[i], &seen[j]);
            // Each pair once, the larger checkpoint's node proving it extends the smaller.
            let (a_size, b_size) = (a.checkpoint.size, b.checkpoint.size);
            if i == j || a_size > b_size || (a_size == b_size && i > j) {
                continue;
            }
            let proof = if a_size == b_size || a_size == 0 {
                Ok(Vec::new())
            } else {
                consistency(b_client, a_size, b_size).await
            };
            let verdict = proof
                .map_err(|e| format!("{e:#}"))
                .and_then(|proof| b.checkpoint.verify_extends(&a.checkpoint, &proof));
            if let Err(why) = verdict {
                conflicts += 1;
                say!(
                    "CONFLICT: {a_url} (size {a_size}) and {b_url} (size {b_size}) cannot both be \
                     true: {why}\n{}\n{}",
                    a.to_note(),
                    b.to_note()
                );
            }
        }
    }
    if seen.len() < 2 {
        bail!("fewer than two witnesses answered with a final checkpoint; nothing to compare");
    }
    if conflicts > 0 {
        bail!("{conflicts} conflicting pair(s) of cosigned checkpoints");
    }
    say!(
        "consistent: {} final checkpoints, each extending the smaller ones",
        seen.len()
    );
    Ok(())
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
    let signed = SignedCheckpoint::parse_note(&view.note).context("the node's checkpoint note")?;
    let memory = Memory::open(&signed.checkpoint.origin)?;
    let cosigners = match memory.cosigners()? {
        Some(pinned) => pinned,
        None => {
            memory.save(
                "cosigners.json",
                &format!("{}\n", serde_json::to_string_pretty(&view.cosigners)?),
            )?;
            eprintln!(
                "pinned the voters' checkpoint keys of cluster {} as {} reports them, in {}",
                signed.checkpoint.origin,
                client.base_url(),
                memory.path("cosigners.json").display()
            );
            view.cosigners.clone()
        }
    };
    verify_quorum(&signed, &cosigners).with_context(|| {
        format!(
            "against the keys pinned in {}",
            memory.path("cosigners.json").display()
        )
    })?;
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

async fn consistency(client: &Client, from: u64, to: u64) -> anyhow::Result<Vec<Hash>> {
    let view = client
        .consistency_proof(from, to)
        .await
        .with_context(|| format!("cannot get a consistency proof from size {from} to {to}"))?;
    view.proof
        .iter()
        .map(|h| docket_core::id::decode_hex::<32>(h).map_err(|e| anyhow!("proof hash {h:?}: {e}")))
        .collect()
}

/// Entry `index`, verified: its hash, its inclusion under a [`verified_checkpoint`].
pub async fn verified_entry(client: &Client, index: u64) -> anyhow::Result<(LedgerEntry, u64)> {
    let signed = verified_checkpoint(client).await?;
    let size = signed.checkpoint.size;
    if index >= size {
        bail!(
            "entry #{index} is not covered by the newest final checkpoint (size {size}); retry \
             shortly, or read it with --no-verify"
        );
    }
    let page = client
        .ledger(index, 1)
        .await
        .with_context(|| format!("cannot read ledger entry {index}"))?;
    let entry = page
        .entries
        .into_iter()
        .find(|e| e.index.0 == index)
        .ok_or_else(|| anyhow!("the node has no entry #{index}"))?;
    let inclusion = client.inclusion_proof(index, size).await?;
    let proof = inclusion
        .proof
        .iter()
        .map(|h| docket_core::id::decode_hex::<32>(h).map_err(|e| anyhow!("proof hash {h:?}: {e}")))
        .collect::<anyhow::Result<Vec<Hash>>>()?;
    signed
        .checkpoint
        .verify_entry(&entry, &proof)
        .with_context(|| format!("entry #{index} from {} does not verify", client.base_url()))?;
    Ok((entry, size))
}
