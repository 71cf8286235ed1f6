//! `docket backup`, `docket restore` and `docket recover`: a point-in-time copy of the
//! ledger taken from a running cluster, a new one-node cluster seeded from it, and a
//! one-node cluster rebuilt from a survivor's own data when a majority is gone for good.
//!
//! A backup is a ledger export (`docket-ledger-export/v1`, [`docket_client::verify`]): a
//! header with the final checkpoint it ends at (ledger id, size N, Merkle root and state
//! hash at N, the voters' cosignatures) and entries `0..N`, one JSON line each. Restore and
//! recover write the new data directory through `docket_raft::seed`: a `dktsnap3` snapshot
//! with this node as the only voter, installed offline into an empty store, so the restored
//! ledger is checked by the same code that checks a snapshot from a stranger.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use clap::Args;
use docket_client::verify::{read_cosigners, BackupVerified, ExportHeader};
use docket_core::LedgerEntry;
use docket_raft::seed::{self, Seed, SeedWriter};
use docket_raft::NodeAddr;
use serde::Serialize;

use super::{print_json, ClientArgs, OutputFormat};
use crate::client::REQUEST_TIMEOUT_MS_DEFAULT;

#[derive(Clone, Debug, Args)]
pub struct BackupArgs {
    /// Where to write the backup (written beside as FILE.partial, renamed when complete).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: PathBuf,
}

#[derive(Clone, Debug, Args)]
pub struct RestoreArgs {
    /// The backup file (`docket backup`).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The new node's data directory: must not exist, or be empty.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// The new node's id: the only voter of the restored cluster.
    #[arg(long = "id", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub node_id: u64,
    /// The Raft address the node will listen on (recorded in the membership)
    /// [default: 127.0.0.1:(7000+N)].
    #[arg(long, value_name = "HOST:PORT")]
    pub raft_addr: Option<String>,
    /// The API address the node will listen on (recorded in the membership)
    /// [default: 127.0.0.1:(8000+N)].
    #[arg(long, value_name = "HOST:PORT")]
    pub api_addr: Option<String>,
    /// Check the backup's checkpoint against these pinned voter keys
    /// (`docket checkpoint --save-cosigners`) instead of the ones the backup carries.
    #[arg(long, value_name = "FILE")]
    pub cosigners: Option<PathBuf>,
    /// The checkpoint key (`cosigner.key` of node N's old data directory) to give the new
    /// node, so that its cosignatures verify under the key the ledger declares for node N.
    /// Without it the node makes a new key, and checkpoints are not final until a quorum of
    /// the voters has keys the ledger declares.
    #[arg(long, value_name = "FILE")]
    pub cosigner_key: Option<PathBuf>,
    /// The embedded store to write (`[storage] engine` of the node that will serve the
    /// directory: a node refuses a directory of the other engine).
    #[arg(long, value_name = "ENGINE", env = "DOCKET_STORAGE_ENGINE",
          default_value_t = docket_config::StorageEngine::default())]
    pub storage_engine: docket_config::StorageEngine,
}

#[derive(Clone, Debug, Args)]
pub struct RecoverArgs {
    /// The survivor's data directory (the node must be stopped).
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// The survivor's node id: the only voter of the rebuilt cluster.
    #[arg(long = "id", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub node_id: u64,
    /// The Raft address the node will listen on (recorded in the new membership)
    /// [default: 127.0.0.1:(7000+N)].
    #[arg(long, value_name = "HOST:PORT")]
    pub raft_addr: Option<String>,
    /// The API address the node will listen on (recorded in the new membership)
    /// [default: 127.0.0.1:(8000+N)].
    #[arg(long, value_name = "HOST:PORT")]
    pub api_addr: Option<String>,
    /// The operator key that signs the `CLUSTER.RECOVERED` record (what was kept and what
    /// was lost), which the node files in its ledger on its first start. Checked against
    /// the survivor's constitution before anything changes.
    #[arg(long, value_name = "FILE", required_unless_present = "no_record")]
    pub key: Option<PathBuf>,
    /// Recover without a ledger record (a constitution without `CLUSTER.RECOVERED`, or no
    /// operator key at hand): the command's report is then the only account of the loss.
    #[arg(long, conflicts_with = "key")]
    pub no_record: bool,
    /// Required: says you know the other voters are gone for good, that log entries this
    /// node did not know committed are dropped, and that the old members must be wiped
    /// before they are added again.
    #[arg(long)]
    pub force_new_cluster: bool,
}

/// `docket backup`: the ledger up to a final checkpoint, streamed to a file.
pub(super) async fn backup(args: &ClientArgs, command: &BackupArgs) -> anyhow::Result<()> {
    let client = args.client(REQUEST_TIMEOUT_MS_DEFAULT).await?;
    let out = &command.out;
    let temporary = partial_path(out);
    let file = std::fs::File::create(&temporary)
        .with_context(|| format!("cannot create {}", temporary.display()))?;
    let mut writer = std::io::BufWriter::new(file);
    let mut progress = super::ledger::Progress::new("backing up");
    let written = docket_client::verify::export_with_progress(&client, &mut writer, |n, size| {
        progress.show(n, size)
    })
    .await;
    progress.finish();
    let size = match written {
        Ok(size) => size,
        Err(error) => {
            drop(writer);
            let _ = std::fs::remove_file(&temporary);
            return Err(error.context("the backup failed; nothing was written"));
        }
    };
    let file = writer
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    file.sync_all()
        .with_context(|| format!("cannot sync {}", temporary.display()))?;
    drop(file);
    std::fs::rename(&temporary, out).with_context(|| format!("cannot write {}", out.display()))?;
    if args.output == OutputFormat::Json {
        return print_json(&serde_json::json!({ "file": out, "entries": size }));
    }
    say!(
        "wrote {} entries to {} (up to a final checkpoint of size {size}); check it with \
         `docket verify --backup {}`",
        size,
        out.display(),
        out.display()
    );
    Ok(())
}

/// `FILE.partial` beside `FILE`.
fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}

/// Verifies a backup file offline (see [`docket_client::verify::verify_backup`]), with
/// progress on stderr.
pub(super) fn verify_backup_file(
    path: &Path,
    cosigners: Option<&Path>,
) -> anyhow::Result<BackupVerified> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read backup {}", path.display()))?;
    let pinned = cosigners
        .map(|p| Ok::<_, anyhow::Error>((read_cosigners(p)?, p.display().to_string())))
        .transpose()?;
    let size = backup_size(path).unwrap_or(0);
    let mut progress = super::ledger::Progress::new("verifying");
    let verified = docket_client::verify::verify_backup(
        std::io::BufReader::new(file),
        pinned.as_ref().map(|(c, s)| (c.as_slice(), s.clone())),
        |n| progress.show(n, size),
    );
    progress.finish();
    verified.with_context(|| format!("{} does not verify", path.display()))
}

/// The size the backup's header announces (for progress only; never trusted).
fn backup_size(path: &Path) -> Option<u64> {
    let header = first_line(path).ok()?;
    let header: ExportHeader = serde_json::from_str(&header).ok()?;
    let signed = docket_core::checkpoint::SignedCheckpoint::parse_note(&header.checkpoint).ok()?;
    Some(signed.checkpoint.size)
}

fn first_line(path: &Path) -> anyhow::Result<String> {
    use std::io::{BufRead as _, Read as _};
    let file = std::fs::File::open(path)?;
    let mut line = String::new();
    std::io::BufReader::new(file)
        .take(docket_client::verify::EXPORT_LINE_BYTES_MAX as u64)
        .read_line(&mut line)?;
    Ok(line)
}

/// What `docket restore --output json` prints.
#[derive(Debug, Serialize)]
struct Restored {
    data_dir: PathBuf,
    node_id: u64,
    ledger_id: String,
    entries: u64,
    state_hash: docket_core::StateHash,
    raft_addr: String,
    api_addr: String,
    cosigner_key: &'static str,
}

/// `docket restore`: verifies the backup, then seeds a new data directory from it.
pub(super) async fn restore(args: &ClientArgs, command: &RestoreArgs) -> anyhow::Result<()> {
    let target = &command.data_dir;
    refuse_used_target(target)?;
    let addr = node_addr(
        command.node_id,
        command.raft_addr.as_ref(),
        command.api_addr.as_ref(),
    );
    // 1. Everything is verified before anything is written.
    let verified = {
        let (path, cosigners) = (command.file.clone(), command.cosigners.clone());
        tokio::task::spawn_blocking(move || verify_backup_file(&path, cosigners.as_deref()))
            .await
            .context("the verification task failed")??
    };
    let cosigner_key = match &command.cosigner_key {
        Some(path) => Some(super::read_key_file(path).context("--cosigner-key")?),
        None => None,
    };
    eprintln!(
        "verified {} entries of ledger {} (state hash {}); seeding {}",
        verified.export.entries,
        verified.ledger_id,
        verified.state_hash,
        target.display()
    );

    // 2. Written into a directory of our own beside the target, renamed at the end.
    let staging = staging_dir(target, "restore")?;
    let engine = command.storage_engine;
    let seeded = seed_from_backup(
        &command.file,
        &verified,
        command.node_id,
        &addr,
        &staging,
        engine,
    )
    .await
    .and_then(|(seeded, declared)| {
        if let Some(key) = &cosigner_key {
            let given = docket_core::proposal::public_key(key);
            if declared != Some(given) {
                bail!(
                    "--cosigner-key is {given}, but the ledger declares {} for node {}: \
                         its cosignatures would not count",
                    declared.map_or_else(|| "no key".to_owned(), |k| k.to_string()),
                    command.node_id
                );
            }
            super::write_key_file(&staging.join(crate::server::COSIGNER_KEY_FILE), key, false)?;
        }
        Ok((seeded, declared))
    });
    let (seeded, declared) = match seeded {
        Ok(seeded) => seeded,
        Err(error) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(error.context(format!("nothing was written to {}", target.display())));
        }
    };
    move_into_place(&staging, target)?;

    let restored = Restored {
        data_dir: target.clone(),
        node_id: command.node_id,
        ledger_id: verified.ledger_id.clone(),
        entries: seeded.ledger_len,
        state_hash: verified.state_hash,
        raft_addr: addr.raft_addr.clone(),
        api_addr: addr.api_addr.clone(),
        cosigner_key: if cosigner_key.is_some() {
            "carried over"
        } else {
            "new on first start"
        },
    };
    if args.output == OutputFormat::Json {
        return print_json(&restored);
    }
    say!(
        "restored {} entries of ledger {} into {} (state hash {})",
        restored.entries,
        restored.ledger_id,
        target.display(),
        restored.state_hash
    );
    say!(
        "start it as the only voter of a new cluster:\n  docket serve --node-id {} --cluster-id {} \
         --data-dir {} --raft-addr {} --api-addr {}\nthen add members with `docket member add`.",
        command.node_id,
        restored.ledger_id,
        target.display(),
        addr.raft_addr,
        addr.api_addr
    );
    if cosigner_key.is_none() {
        eprintln!(
            "note: no --cosigner-key: the node makes a new checkpoint key on first start; the \
             ledger declares {} for node {}, so its checkpoints are not final until a quorum of \
             voters cosigns under declared keys",
            declared.map_or_else(|| "no key".to_owned(), |k| k.to_string()),
            command.node_id
        );
    }
    Ok(())
}

/// What `docket recover --output json` prints.
#[derive(Debug, Serialize)]
struct Recovered {
    data_dir: PathBuf,
    /// Where the survivor's old data directory was kept.
    previous: PathBuf,
    node_id: u64,
    entries: u64,
    state_hash: docket_core::StateHash,
    /// The last Raft log index the survivor knew committed: kept.
    committed_log_index: Option<u64>,
    /// The last Raft log index the survivor held.
    last_log_index: Option<u64>,
    /// Raft log entries past the committed one: dropped.
    log_entries_dropped: u64,
    raft_addr: String,
    api_addr: String,
}

/// Files and directories of a data directory that are the store's (sled's, fjall's and the
/// engine marker): the recovered store replaces them; everything else (the checkpoint key,
/// the execution journal) is carried over.
const STORE_FILES: &[&str] = &[
    "conf",
    "db",
    "blobs",
    docket_raft::disk::FJALL_DIR,
    docket_raft::disk::ENGINE_FILE,
];

/// `docket recover`: rebuilds a one-node cluster from a survivor's own data directory.
pub(super) async fn recover(args: &ClientArgs, command: &RecoverArgs) -> anyhow::Result<()> {
    if !command.force_new_cluster {
        bail!(
            "recover makes node {} the only voter of a new cluster, dropping every Raft log \
             entry it did not know committed. Only do this when a majority of the voters is \
             gone for good; then run it again with --force-new-cluster",
            command.node_id
        );
    }
    let source = &command.data_dir;
    if docket_raft::detect_engine(source)
        .with_context(|| format!("reading {}", source.display()))?
        .is_none()
    {
        bail!(
            "{} holds no node data (no sled or fjall store)",
            source.display()
        );
    }
    let addr = node_addr(
        command.node_id,
        command.raft_addr.as_ref(),
        command.api_addr.as_ref(),
    );
    let operator = match &command.key {
        Some(path) => Some(super::read_key_file(path).context("--key")?),
        None => None,
    };
    let staging = staging_dir(source, "recover")?;
    let rebuilt = async {
        let (survivor, meta, file) =
            seed::seed_from_store(source, &staging, command.node_id, addr.clone())
                .await
                .with_context(|| {
                    format!(
                        "cannot read the survivor's store in {} (is the node still running?)",
                        source.display()
                    )
                })?;
        let (seeded, request) = seed::install_then(
            &staging,
            survivor.engine,
            command.node_id,
            &meta,
            file,
            |replica| {
                operator
                    .as_ref()
                    .map(|key| recovery_request(replica, command.node_id, &survivor, key))
                    .transpose()
            },
        )
        .await?;
        let request = request?;
        if seeded.ledger_len != survivor.seed.ledger_len
            || seeded.state_hash != Some(survivor.seed.state_hash)
        {
            bail!(
                "the rebuilt store holds {} entries at {:?}; the survivor {} at {}",
                seeded.ledger_len,
                seeded.state_hash,
                survivor.seed.ledger_len,
                survivor.seed.state_hash
            );
        }
        carry_over(source, &staging)?;
        if let Some(request) = request {
            let path = staging.join(crate::server::RECOVERY_REQUEST_FILE);
            std::fs::write(&path, serde_json::to_vec(&request)?)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok::<_, anyhow::Error>(survivor)
    }
    .await;
    let survivor = match rebuilt {
        Ok(survivor) => survivor,
        Err(error) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(error.context(format!("{} was left as it was", source.display())));
        }
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut previous = source.as_os_str().to_os_string();
    previous.push(format!(".pre-recover-{stamp}"));
    let previous = PathBuf::from(previous);
    std::fs::rename(source, &previous).with_context(|| {
        format!(
            "cannot move {} aside to {}",
            source.display(),
            previous.display()
        )
    })?;
    move_into_place(&staging, source)?;

    let recovered = Recovered {
        data_dir: source.clone(),
        previous,
        node_id: command.node_id,
        entries: survivor.seed.ledger_len,
        state_hash: survivor.seed.state_hash,
        committed_log_index: survivor.committed.map(|id| id.index),
        last_log_index: survivor.log_last.map(|id| id.index),
        log_entries_dropped: survivor.log_entries_dropped,
        raft_addr: addr.raft_addr.clone(),
        api_addr: addr.api_addr.clone(),
    };
    if args.output == OutputFormat::Json {
        return print_json(&recovered);
    }
    say!(
        "RECOVERED: node {} is now the only voter of a new cluster, holding {} ledger entries \
         (state hash {})",
        recovered.node_id,
        recovered.entries,
        recovered.state_hash
    );
    say!(
        "kept every Raft log entry up to index {} (known committed); dropped {} after it \
         (the log ended at {})",
        super::optional(recovered.committed_log_index),
        recovered.log_entries_dropped,
        super::optional(recovered.last_log_index)
    );
    say!(
        "the old data directory is kept as {}\nstart the node:\n  docket serve --node-id {} \
         --data-dir {} --raft-addr {} --api-addr {} ...\nthen add fresh members with `docket \
         member add` (never restart a lost member on its old data)",
        recovered.previous.display(),
        recovered.node_id,
        source.display(),
        recovered.raft_addr,
        recovered.api_addr
    );
    Ok(())
}

/// The `CLUSTER.RECOVERED` request for `survivor`, signed by `operator`, and checked
/// against the recovered store's state (`replica`): its constitution must admit it now (else the
/// recovery is refused before anything changed; `--no-record` recovers without it).
fn recovery_request(
    replica: &docket_raft::Replica,
    node_id: u64,
    survivor: &seed::Survivor,
    operator: &ed25519_dalek::SigningKey,
) -> anyhow::Result<docket_core::SignedProposal> {
    let op = docket_service::admin::AdminOp::Recovered {
        node: node_id,
        ledger_length: survivor.seed.ledger_len,
        log_index_committed: survivor.committed.map_or(0, |id| id.index),
        log_entries_dropped: survivor.log_entries_dropped,
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let ledger_id = replica
        .with_state(|state| state.map(|s| s.ledger_id().clone()))
        .ok_or_else(|| anyhow!("the recovered store has no state"))?;
    let signed = op.sign(&ledger_id, now_ms, now_ms, operator);
    let id = signed.id();
    let verdict = replica
        .with_state(|state| {
            state.map(|s| {
                let time = docket_core::LedgerTime(now_ms.max(s.head().time.0));
                docket_core::adjudicate(s, &signed, &id, time)
            })
        })
        .ok_or_else(|| anyhow!("the recovered store has no state"))?;
    match verdict.decision {
        docket_core::Decision::Admit => Ok(signed),
        other => bail!(
            "the survivor's constitution would not admit the CLUSTER.RECOVERED record ({}; {}): \
             recover with --no-record, or with an operator key it authorizes",
            other.label(),
            verdict.access
        ),
    }
}

/// Copies what is not sled's from `source` to `target` (the checkpoint key, the
/// execution journal), recursively.
fn carry_over(source: &Path, target: &Path) -> anyhow::Result<()> {
    for entry in
        std::fs::read_dir(source).with_context(|| format!("cannot read {}", source.display()))?
    {
        let entry = entry?;
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        if STORE_FILES.contains(&name_str.as_ref()) || name_str.starts_with("snap.") {
            continue;
        }
        copy_recursive(&entry.path(), &target.join(&name))?;
    }
    Ok(())
}

fn copy_recursive(from: &Path, to: &Path) -> anyhow::Result<()> {
    if from.is_dir() {
        std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy_recursive(&entry.path(), &to.join(entry.file_name()))?;
        }
    } else {
        std::fs::copy(from, to)
            .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}

/// Writes the seed snapshot from the backup's entries (a second pass over the file, each
/// entry checked against the first pass's chain head, root and state hash by the
/// install) and installs it into `staging`. Answers the checkpoint key the ledger
/// declares for node `node_id`, if any.
async fn seed_from_backup(
    path: &Path,
    verified: &BackupVerified,
    node_id: u64,
    addr: &NodeAddr,
    staging: &Path,
    engine: docket_raft::StorageEngine,
) -> anyhow::Result<(seed::Seeded, Option<docket_core::PublicKey>)> {
    let seed = Seed {
        node_id,
        addr: addr.clone(),
        ledger_len: verified.export.entries,
        state_hash: verified.state_hash,
        head_hash: verified.head_hash,
    };
    let (path, staging_owned, root) = (
        path.to_owned(),
        staging.to_owned(),
        verified.export.root.clone(),
    );
    let total = verified.export.entries;
    let (meta, file) = tokio::task::spawn_blocking(move || {
        let mut writer = SeedWriter::create(&staging_owned, seed)?;
        let mut tree = docket_core::merkle::Frontier::new();
        let mut lines = json_lines(&path)?;
        lines
            .next()
            .ok_or_else(|| anyhow!("the backup lost its header"))??;
        let mut progress = super::ledger::Progress::new("writing");
        let mut written = 0u64;
        for line in lines {
            let entry: LedgerEntry =
                serde_json::from_str(&line?).context("the backup changed since it was verified")?;
            tree.append(&entry.hash.0, |_, _, _| {});
            writer.entry(&entry)?;
            written += 1;
            progress.show(written, total);
        }
        progress.finish();
        if hex::encode(tree.root()) != root {
            bail!("the backup changed since it was verified (its root moved)");
        }
        Ok::<_, anyhow::Error>(writer.finish()?)
    })
    .await
    .context("the seed task failed")??;
    let (seeded, declared) = seed::install_then(staging, engine, node_id, &meta, file, |replica| {
        replica.with_state(|state| {
            state.and_then(|s| docket_service::checkpoints::declared_key(s, node_id))
        })
    })
    .await?;
    if seeded.ledger_len != verified.export.entries
        || seeded.state_hash != Some(verified.state_hash)
    {
        bail!(
            "the seeded store holds {} entries at state {:?}; the backup {} at {}",
            seeded.ledger_len,
            seeded.state_hash,
            verified.export.entries,
            verified.state_hash
        );
    }
    Ok((seeded, declared))
}

/// The lines of a file, each at most `EXPORT_LINE_BYTES_MAX` bytes (a longer one is an
/// error, never read whole into memory).
fn json_lines(path: &Path) -> anyhow::Result<impl Iterator<Item = anyhow::Result<String>>> {
    use std::io::{BufRead as _, Read as _};
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let limit = docket_client::verify::EXPORT_LINE_BYTES_MAX;
    let mut reader = std::io::BufReader::new(file);
    let mut buffer = Vec::new();
    Ok(std::iter::from_fn(move || {
        buffer.clear();
        let read = (&mut reader)
            .take(limit as u64 + 1)
            .read_until(b'\n', &mut buffer);
        match read {
            Ok(0) => None,
            Err(e) => Some(Err(anyhow::Error::new(e).context("reading the backup"))),
            Ok(_) => {
                if buffer.last() == Some(&b'\n') {
                    buffer.pop();
                } else if buffer.len() > limit {
                    return Some(Err(anyhow!("a line of the backup is over {limit} bytes")));
                }
                Some(
                    String::from_utf8(std::mem::take(&mut buffer))
                        .context("a line of the backup is not UTF-8"),
                )
            }
        }
    }))
}

/// The membership addresses of node `id`: as given, else the defaults `serve` uses.
fn node_addr(id: u64, raft_addr: Option<&String>, api_addr: Option<&String>) -> NodeAddr {
    NodeAddr {
        raft_addr: raft_addr
            .cloned()
            .unwrap_or_else(|| format!("127.0.0.1:{}", 7000 + id)),
        api_addr: api_addr
            .cloned()
            .unwrap_or_else(|| format!("127.0.0.1:{}", 8000 + id)),
    }
}

/// A data directory a restore may fill: missing, or empty.
fn refuse_used_target(target: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(target) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} is not empty: restore seeds a new node's data directory and never \
                     overwrites one",
                    target.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", target.display())),
    }
}

/// A new directory beside `target` (same file system, so the final rename is atomic).
fn staging_dir(target: &Path, what: &str) -> anyhow::Result<PathBuf> {
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let name = target
        .file_name()
        .ok_or_else(|| anyhow!("{} names no directory", target.display()))?
        .to_string_lossy()
        .into_owned();
    let dir = tempfile::Builder::new()
        .prefix(&format!(".{name}.{what}-"))
        .tempdir_in(&parent)
        .with_context(|| format!("cannot create a staging directory in {}", parent.display()))?;
    Ok(dir.keep())
}

/// Renames the finished `staging` directory to `target` (removing `target` first if it
/// is an empty directory), then syncs the parent so the rename is durable.
fn move_into_place(staging: &Path, target: &Path) -> anyhow::Result<()> {
    if target.exists() {
        std::fs::remove_dir(target)
            .with_context(|| format!("cannot replace the empty {}", target.display()))?;
    }
    std::fs::rename(staging, target)
        .with_context(|| format!("cannot move {} to {}", staging.display(), target.display()))?;
    if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent)
            .and_then(|dir| dir.sync_all())
            .with_context(|| format!("cannot sync {}", parent.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_file_sits_beside_the_backup() {
        assert_eq!(
            partial_path(Path::new("/b/ledger.jsonl")),
            Path::new("/b/ledger.jsonl.partial")
        );
    }

    #[test]
    fn a_used_data_directory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        refuse_used_target(&dir.path().join("missing")).expect("a missing dir is fine");
        refuse_used_target(dir.path()).expect("an empty dir is fine");
        std::fs::write(dir.path().join("x"), b"x").expect("write");
        let error = refuse_used_target(dir.path()).expect_err("not empty");
        assert!(format!("{error:#}").contains("not empty"), "{error:#}");
    }
}
