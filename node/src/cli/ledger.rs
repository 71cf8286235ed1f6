//! `docket ledger tail|get|verify`: reading the ledger page by page, and auditing it.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use clap::Subcommand;
use docket_core::{Auditor, Cause, LedgerEntry, ProposalId, Record, StateHash};
use serde::Serialize;

use super::{print_json, ClientArgs, OutputFormat};
use crate::client::{Client, ClientError, REQUEST_TIMEOUT_MS_DEFAULT};

/// Entries asked for per ledger page. The server may answer fewer; the CLI follows `next`.
pub const LEDGER_PAGE_ENTRIES: u64 = 1_000;

/// How long `ledger tail --follow` waits before it reopens a change feed that broke (the
/// node restarted, the connection dropped).
pub const FOLLOW_RETRY_MS: u64 = 1_000;

/// How often `ledger verify` reports its progress on stderr.
const VERIFY_PROGRESS_INTERVAL_MS: u64 = 2_000;

#[derive(Clone, Debug, Subcommand)]
#[command(
    after_help = "Examples:\n  docket ledger tail -n 20 --follow\n  docket ledger get 12\n  \
    docket ledger verify"
)]
pub enum LedgerCommand {
    /// Print the last entries, and with --follow keep printing new ones.
    #[command(after_help = "Examples:\n  \
        docket ledger tail\n  \
        docket ledger tail -n 50\n  \
        docket ledger tail -n 0 --follow --output json   # new entries as JSON lines")]
    Tail {
        /// How many of the last entries to print.
        #[arg(short = 'n', long = "entries", value_name = "N", default_value_t = 10)]
        entries: u64,
        /// Keep polling for new entries until interrupted.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Print one entry in full, verified: its hash, and its inclusion in a checkpoint a
    /// majority of the voters cosigned, consistent with the last one this client verified.
    #[command(
        after_help = "Examples:\n  docket ledger get 0   # the genesis entry\n  \
        docket ledger get 12 --output json\n  \
        docket ledger get 12 --no-verify   # read it as the node says, unproved\n\n\
        The voters' keys are pinned on first use, and the last verified checkpoint\n\
        remembered, in $DOCKET_CONFIG_DIR (else ~/.config/docket)/clusters. A node that shows\n\
        a history inconsistent with it (a fork, a rollback) is refused with both checkpoints."
    )]
    Get {
        /// Ledger index (0 is genesis).
        #[arg(value_name = "INDEX")]
        index: u64,
        /// Skip the proof: do not check the entry against a checkpoint cosigned by a
        /// majority of the voters (and against the last checkpoint this client verified).
        #[arg(long)]
        no_verify: bool,
    },
    /// Fetch the whole ledger, verify its hash chain and re-adjudicate every decision.
    #[command(after_help = "Examples:\n  \
        docket ledger verify\n  \
        docket ledger verify --node http://127.0.0.1:8003\n\n\
        Reads the ledger a page at a time (progress on stderr every few seconds); memory \
        holds one page and the replayed state, not the ledger. Exits non-zero at the \
        first entry that fails.")]
    Verify,
    /// Bundle an entry with its inclusion proof and a checkpoint cosigned by a quorum of
    /// voters, for `docket verify` (offline, anywhere).
    #[command(after_help = "Examples:\n  \
        docket ledger prove 12 --out entry-12.json\n  \
        docket verify entry-12.json")]
    Prove(super::proofs::ProveArgs),
    /// Write the ledger up to a final checkpoint to a file, JSON lines (the checkpoint
    /// first), streaming a page at a time; `docket verify --export FILE` checks it offline.
    #[command(after_help = "Examples:\n  \
        docket ledger export --out ledger.jsonl\n  \
        docket verify --export ledger.jsonl --cosigners voters.json")]
    Export {
        /// Where to write it (written beside as FILE.partial, renamed when complete).
        #[arg(long, short = 'o', value_name = "FILE")]
        out: PathBuf,
    },
}

/// Runs `docket ledger SUBCOMMAND`.
pub(super) async fn run(args: &ClientArgs, command: LedgerCommand) -> anyhow::Result<()> {
    let output = args.output;
    if let LedgerCommand::Prove(prove) = &command {
        return super::proofs::prove_command(args, prove).await;
    }
    if let LedgerCommand::Export { out } = &command {
        return super::proofs::export_command(args, out).await;
    }
    let client = args.client(REQUEST_TIMEOUT_MS_DEFAULT).await?;
    match command {
        LedgerCommand::Tail { entries, follow } => {
            ledger_tail(&client, entries, follow, output).await
        }
        LedgerCommand::Get { index, no_verify } => {
            ledger_get(&client, index, !no_verify, output).await
        }
        LedgerCommand::Verify => ledger_verify(&client, output).await,
        LedgerCommand::Prove(_) | LedgerCommand::Export { .. } => Ok(()),
    }
}

fn print_entry_line(entry: &LedgerEntry, output: OutputFormat) -> anyhow::Result<()> {
    match output {
        OutputFormat::Text => say!("{entry}"),
        OutputFormat::Json => {
            let line = serde_json::to_string(entry).context("cannot encode an entry as JSON")?;
            say!("{line}");
        }
    }
    Ok(())
}

/// Prints every entry from `from` to the current end; returns the index after the last.
async fn print_from(client: &Client, mut from: u64, output: OutputFormat) -> anyhow::Result<u64> {
    loop {
        let page = client
            .ledger(from, LEDGER_PAGE_ENTRIES)
            .await
            .with_context(|| format!("cannot read the ledger from index {from}"))?;
        for entry in &page.entries {
            print_entry_line(entry, output)?;
        }
        from += page.entries.len() as u64;
        match page.next {
            Some(next) if !page.entries.is_empty() => from = next.0,
            _ => return Ok(from),
        }
    }
}

async fn ledger_tail(
    client: &Client,
    entries: u64,
    follow: bool,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let length = client
        .ledger(0, 1)
        .await
        .context("cannot read the ledger")?
        .length;
    let mut from = length.saturating_sub(entries);
    if entries > 0 {
        from = print_from(client, from, output).await?;
    } else {
        from = length;
    }
    if !follow {
        return Ok(());
    }
    follow_feed(client, from, output).await
}

/// Prints the change feed (`GET /v1/ledger/watch`) from index `next` on, forever. When the
/// feed breaks it reopens it from the index after the last one printed, so nothing is
/// skipped and nothing is printed twice.
async fn follow_feed(client: &Client, mut next: u64, output: OutputFormat) -> anyhow::Result<()> {
    loop {
        match client.watch(Some(next)).await {
            Ok(mut feed) => loop {
                match feed.next_entry().await {
                    Ok(Some(entry)) if entry.index.0 < next => continue,
                    Ok(Some(entry)) if entry.index.0 > next => bail!(
                        "the change feed skipped from index {next} to {}: refusing to print a \
                         gap",
                        entry.index
                    ),
                    Ok(Some(entry)) => {
                        print_entry_line(&entry, output)?;
                        next += 1;
                    }
                    Ok(None) => {
                        eprintln!("the node closed the change feed; reopening from index {next}");
                        break;
                    }
                    Err(error) => {
                        eprintln!("the change feed broke ({error}); reopening from index {next}");
                        break;
                    }
                }
            },
            Err(error) => {
                if matches!(error, ClientError::Api { status, .. } if status < 500 && status != 429)
                {
                    return Err(anyhow::Error::new(error).context("cannot open the change feed"));
                }
                eprintln!("cannot open the change feed ({error}); retrying");
            }
        }
        tokio::time::sleep(Duration::from_millis(FOLLOW_RETRY_MS)).await;
    }
}

async fn ledger_get(
    client: &Client,
    index: u64,
    verify: bool,
    output: OutputFormat,
) -> anyhow::Result<()> {
    if verify {
        let (entry, size) = docket_client::verify::verified_entry(client, index).await?;
        if output == OutputFormat::Json {
            return print_json(&entry);
        }
        say!("{}", describe_entry(&entry));
        eprintln!("verified: included in the final checkpoint of size {size}");
        return Ok(());
    }
    let page = client
        .ledger(index, 1)
        .await
        .with_context(|| format!("cannot read ledger entry {index}"))?;
    let Some(entry) = page.entries.into_iter().find(|e| e.index.0 == index) else {
        bail!(
            "there is no entry {index}: the ledger has {} entries (indexes 0 to {})",
            page.length,
            page.length.saturating_sub(1)
        );
    };
    if output == OutputFormat::Json {
        return print_json(&entry);
    }
    say!("{}", describe_entry(&entry));
    Ok(())
}

/// Every field of an entry, one per line.
fn describe_entry(entry: &LedgerEntry) -> String {
    let mut text = format!("{entry}\n");
    let mut line = |name: &str, value: &dyn std::fmt::Display| {
        let _ = writeln!(text, "  {name:<13} {value}");
    };
    line("index", &entry.index);
    line("time", &entry.time);
    line("hash", &entry.hash);
    line("prev_hash", &entry.prev_hash);
    line("constitution", &entry.constitution);
    match &entry.record {
        Record::Genesis {
            ledger_id,
            document,
        } => {
            line("record", &"genesis");
            line("ledger_id", ledger_id);
            line(
                "document",
                &format!(
                    "{} bytes (`docket constitution show --document`)",
                    document.len()
                ),
            );
        }
        Record::Decision(record) => {
            let p = &record.proposal.proposal;
            let cause = match record.cause {
                Cause::Submitted => "submitted".to_owned(),
                Cause::Released { wave } => format!("released in wave {wave}"),
                Cause::Expired => "deferral expired".to_owned(),
            };
            line("proposal", &record.id);
            line("cause", &cause);
            line("decision", &record.decision);
            line("access", &record.access);
            line("domain", &p.domain);
            line("action", &p.action);
            line("subject", &p.subject);
            line("payload", &p.payload);
            let deps: Vec<String> = p.dependencies.iter().map(ProposalId::to_hex).collect();
            line(
                "dependencies",
                &if deps.is_empty() {
                    "none".to_owned()
                } else {
                    deps.join(", ")
                },
            );
            line("author", &p.author);
            line("nonce", &p.nonce);
            line("ledger_id", &p.ledger_id);
            line("signature", &record.proposal.signature);
        }
    }
    text.trim_end().to_owned()
}

/// What `docket ledger verify --output json` prints.
#[derive(Debug, Serialize)]
struct VerifyReport {
    entries: u64,
    commands: u64,
    state_hash: StateHash,
    /// Whether the node reports the same state hash at the same ledger length; `None` when
    /// its ledger grew while it was being read.
    node_state_hash_matches: Option<bool>,
}

/// How far `ledger verify` has come: a bar on a terminal, a line every
/// [`VERIFY_PROGRESS_INTERVAL_MS`] otherwise (logs, CI), both on stderr.
pub(super) struct Progress {
    what: &'static str,
    started: std::time::Instant,
    reported: std::time::Instant,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// `what` starts each line: "verifying", "backing up".
    pub(super) fn new(what: &'static str) -> Progress {
        use std::io::IsTerminal as _;
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(&format!(
                    "{what} {{bar:40}} {{pos}}/{{len}} entries ({{per_sec}}, {{eta}} left)"
                ))
                .expect("invariant: the template is valid"),
            );
            bar
        });
        let now = std::time::Instant::now();
        Progress {
            what,
            started: now,
            reported: now,
            bar,
        }
    }

    pub(super) fn show(&mut self, verified: u64, length: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(length);
            bar.set_position(verified);
        } else if self.reported.elapsed() >= Duration::from_millis(VERIFY_PROGRESS_INTERVAL_MS) {
            self.reported = std::time::Instant::now();
            let rate = verified as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
            eprintln!(
                "{} {verified} of {length} entries ({rate:.0} entries/s)",
                self.what
            );
        }
    }

    pub(super) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Streams the ledger page by page through an [`Auditor`]: memory holds one page of
/// entries and the audit's state, never the whole ledger.
async fn ledger_verify(client: &Client, output: OutputFormat) -> anyhow::Result<()> {
    let mut progress = Progress::new("verifying");
    let mut auditor = Auditor::new();
    loop {
        let from = auditor.entries();
        let page = client
            .ledger(from, LEDGER_PAGE_ENTRIES)
            .await
            .with_context(|| format!("cannot read the ledger from index {from}"))?;
        if page.entries.is_empty() {
            break;
        }
        let (more, length) = (page.next.is_some(), page.length);
        // Re-adjudication checks every signature: CPU work, kept off the async threads.
        auditor = tokio::task::spawn_blocking(move || {
            for entry in &page.entries {
                auditor.push(entry).map_err(|error| {
                    anyhow!(
                        "ledger verification FAILED at index {}: {error}",
                        entry.index
                    )
                })?;
            }
            Ok::<_, anyhow::Error>(auditor)
        })
        .await
        .context("the audit task failed")??;
        progress.show(auditor.entries(), length);
        if !more {
            break;
        }
    }
    progress.finish();
    if auditor.entries() == 0 {
        bail!("the ledger is empty: the cluster is not initialized (`docket cluster init`)");
    }
    let length = auditor.entries();
    let (state, report) = auditor
        .finish()
        .map_err(|error| anyhow!("ledger audit FAILED: {error}"))?;
    let state_hash = tokio::task::spawn_blocking(move || state.hash())
        .await
        .context("the state hash task failed")?;

    let status = client
        .status()
        .await
        .context("the ledger verified, but the node's status cannot be read")?;
    let node_state_hash_matches =
        (status.ledger_length == length).then(|| status.state_hash == Some(state_hash));

    if output == OutputFormat::Json {
        print_json(&VerifyReport {
            entries: report.entries,
            commands: report.commands,
            state_hash,
            node_state_hash_matches,
        })?;
    } else {
        say!(
            "{} entries verified, audit reproduced every decision ({} commands)",
            report.entries,
            report.commands
        );
        say!("state hash {state_hash}");
        match node_state_hash_matches {
            Some(true) => say!("node {} reports the same state hash", status.node_id),
            Some(false) => {}
            None => say!(
                "node {} is now at ledger length {}; its state hash was not compared",
                status.node_id,
                status.ledger_length
            ),
        }
    }
    if node_state_hash_matches == Some(false) {
        bail!(
            "node {} reports state hash {} at ledger length {length}, but replaying its ledger \
             gives {state_hash}: its state diverged from its own ledger",
            status.node_id,
            status
                .state_hash
                .map_or_else(|| "none".to_owned(), |h| h.to_hex()),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::tests::DEPOSIT;
    use crate::cli::ProposalFile;
    use docket_core::LedgerId;

    #[test]
    fn entries_are_described_in_full() {
        let ledger = LedgerId::new("docket-local").expect("valid");
        let (mut state, genesis) = docket_core::State::genesis(
            ledger.clone(),
            docket_core::constitution::DEFAULT_DOCUMENT,
            docket_core::LedgerTime(1_000),
        )
        .expect("genesis");
        let text = describe_entry(&genesis);
        assert!(text.contains("GENESIS ledger=docket-local"), "{text}");
        assert!(text.contains("ledger_id     docket-local"), "{text}");

        let draft = ProposalFile::parse(DEPOSIT).expect("parses");
        let signed = draft.sign(ledger, 1, &docket_core::dev::signing_key("mallory"));
        let submission = state.submit(signed, docket_core::LedgerTime(2_000));
        let entry = &submission.entries()[0];
        let text = describe_entry(entry);
        assert!(text.contains("decision      REJECT UNAUTHORIZED"), "{text}");
        assert!(text.contains("subject       stl-0001"), "{text}");
        assert!(text.contains(r#"payload       {"amount":125000"#), "{text}");
    }
}
