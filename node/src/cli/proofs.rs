//! `docket checkpoint`, `docket ledger prove` and `docket verify`: checkpoints cosigned by
//! a quorum of voters, an entry's inclusion proof bundled with its checkpoint, and the
//! offline check of such a bundle (no network).

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context as _};
use clap::Args;
use docket_client::verify::{
    config_dir, consistency, prove, read_cosigners, verified_checkpoint, verify_bundle,
    verify_quorum, ProofBundle, PROOF_FILE_BYTES_MAX,
};
use docket_core::checkpoint::SignedCheckpoint;

use super::{print_json, read_limited, ClientArgs, OutputFormat};
use crate::client::{Client, REQUEST_TIMEOUT_MS_DEFAULT};

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
#[command(group(clap::ArgGroup::new("what").required(true).args(["bundle", "witness", "export", "backup"])))]
pub struct VerifyArgs {
    /// A proof bundle (`docket ledger prove`) or a state proof (`docket state get
    /// --proof-out`).
    #[arg(value_name = "BUNDLE")]
    pub bundle: Option<PathBuf>,
    /// Witness mode: ask each of these nodes for a final checkpoint and report any two that
    /// cannot both be true (same size and another root, or no consistency proof between
    /// them). Comma-separated or repeated.
    #[arg(long, value_name = "URL", value_delimiter = ',')]
    pub witness: Vec<String>,
    /// A ledger export (`docket ledger export`): check, offline and streaming, that its
    /// entries chain from genesis and add up to the root of its cosigned checkpoint.
    #[arg(long, value_name = "FILE")]
    pub export: Option<PathBuf>,
    /// A backup (`docket backup`; an export is one too): everything --export checks, plus
    /// the genesis entry's ledger id and the audit: every decision re-adjudicated, and the
    /// replay reaching the checkpoint's state hash. What `docket restore` checks first.
    #[arg(long, value_name = "FILE")]
    pub backup: Option<PathBuf>,
    /// Trust these cosigner keys (`docket checkpoint --save-cosigners`) instead of the ones
    /// the bundle carries.
    #[arg(long, value_name = "FILE")]
    pub cosigners: Option<PathBuf>,
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

pub(super) async fn verify_command(args: &ClientArgs, command: &VerifyArgs) -> anyhow::Result<()> {
    if let Some(path) = &command.export {
        return verify_export_command(args, command, path);
    }
    if let Some(path) = &command.backup {
        let (path, cosigners) = (path.clone(), command.cosigners.clone());
        let verified = tokio::task::spawn_blocking(move || {
            super::backup::verify_backup_file(&path, cosigners.as_deref())
        })
        .await
        .context("the verification task failed")??;
        if args.output == OutputFormat::Json {
            return print_json(&verified);
        }
        say!(
            "verified: backup of ledger {}: {} entries chain from genesis to the root {} of a \
             checkpoint cosigned by {} of {} voters ({}); keys from {}",
            verified.ledger_id,
            verified.export.entries,
            verified.export.root,
            verified.export.cosigned_by.len(),
            verified.export.voters,
            verified.export.cosigned_by.join(", "),
            verified.export.keys_from
        );
        say!(
            "the audit re-derived every decision ({} commands) and reached the checkpoint's \
             state hash {}",
            verified.commands,
            verified.state_hash
        );
        return Ok(());
    }
    let Some(bundle_path) = &command.bundle else {
        return witness(args, command).await;
    };
    let text = read_limited(bundle_path, PROOF_FILE_BYTES_MAX, "proof bundle")?;
    let pinned = pinned_cosigners(command)?;
    let format = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("format").and_then(|f| f.as_str()).map(str::to_owned));
    if format.as_deref() == Some(crate::wire::STATE_PROOF_FORMAT) {
        return verify_state_file(args, bundle_path, &text, pinned);
    }
    let bundle: ProofBundle = serde_json::from_str(&text)
        .map_err(|e| anyhow!("{} is not a proof bundle: {e}", bundle_path.display()))?;
    let verified = verify_bundle(&bundle, pinned_view(&pinned))
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

/// `docket verify FILE` of a state proof (`docket state get --proof-out FILE`).
fn verify_state_file(
    args: &ClientArgs,
    path: &std::path::Path,
    text: &str,
    pinned: Option<(Vec<docket_api::wire::Cosigner>, String)>,
) -> anyhow::Result<()> {
    let view: crate::wire::StateProofView = serde_json::from_str(text)
        .map_err(|e| anyhow!("{} is not a state proof: {e}", path.display()))?;
    let verified = docket_client::state_proof::verify_state_bundle(&view, pinned_view(&pinned))
        .with_context(|| format!("{} does not verify", path.display()))?;
    if args.output == OutputFormat::Json {
        return print_json(&verified);
    }
    match &verified.decoded {
        Some(row) => say!(
            "verified: state row {} as of ledger length {}: {row}",
            verified.key,
            verified.anchor
        ),
        None if verified.value.is_none() => say!(
            "verified: state row {} is absent as of ledger length {}",
            verified.key,
            verified.anchor
        ),
        None => say!(
            "verified: state row {} as of ledger length {}: {}",
            verified.key,
            verified.anchor,
            verified.value.as_deref().unwrap_or_default()
        ),
    }
    say!(
        "under the state-map root of the checkpoint of size {}, cosigned by {} of {} voters \
         ({}); keys from {}",
        verified.checkpoint_size,
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
    let pinned = pinned_cosigners(command)?.map(|(cosigners, _)| cosigners);
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

fn verify_export_command(
    args: &ClientArgs,
    command: &VerifyArgs,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read export {}", path.display()))?;
    let pinned = pinned_cosigners(command)?;
    let verified =
        docket_client::verify::verify_export(std::io::BufReader::new(file), pinned_view(&pinned))
            .with_context(|| format!("{} does not verify", path.display()))?;
    if args.output == OutputFormat::Json {
        return print_json(&verified);
    }
    say!(
        "verified: {} entries chain from genesis to the root {} of a checkpoint cosigned by \
         {} of {} voters ({}); keys from {}",
        verified.entries,
        verified.root,
        verified.cosigned_by.len(),
        verified.voters,
        verified.cosigned_by.join(", "),
        verified.keys_from
    );
    Ok(())
}

/// `docket ledger export`.
pub(super) async fn export_command(args: &ClientArgs, out: &std::path::Path) -> anyhow::Result<()> {
    let client = args.client(REQUEST_TIMEOUT_MS_DEFAULT).await?;
    let temporary = out.with_extension("partial");
    let file = std::fs::File::create(&temporary)
        .with_context(|| format!("cannot create {}", temporary.display()))?;
    let mut writer = std::io::BufWriter::new(file);
    let size = docket_client::verify::export(&client, &mut writer).await?;
    drop(writer);
    std::fs::rename(&temporary, out).with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!(
        "wrote {} entries to {} (up to a final checkpoint); check it with `docket verify --export {}`",
        size,
        out.display(),
        out.display()
    );
    Ok(())
}

/// The pinned keys as the verifiers take them: borrowed, with where they came from.
fn pinned_view(
    pinned: &Option<(Vec<docket_api::wire::Cosigner>, String)>,
) -> Option<(&[docket_api::wire::Cosigner], String)> {
    pinned
        .as_ref()
        .map(|(cosigners, source)| (cosigners.as_slice(), source.clone()))
}

/// The keys `--cosigners FILE` pins, with the file's name to say where they came from.
fn pinned_cosigners(
    command: &VerifyArgs,
) -> anyhow::Result<Option<(Vec<docket_api::wire::Cosigner>, String)>> {
    command
        .cosigners
        .as_ref()
        .map(|path| Ok((read_cosigners(path)?, path.display().to_string())))
        .transpose()
}
