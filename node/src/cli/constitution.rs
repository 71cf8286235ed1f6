//! `docket constitution show|amend|approve|dry-run`: the active constitution, governors'
//! amendments and approvals (proposals signed and submitted as `docket propose` does), and
//! a candidate's dry run over recorded history (`docket_client::amendment`, on this machine).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _};
use clap::{Args, Subcommand};
use docket_core::constitution::Constitution;
use docket_core::Value;

use super::keys::read_key_file;
use super::propose::{empty_map, sign_and_submit, ProposalFile, SignArgs};
use super::{print_json, read_limited, ClientArgs, OutputFormat};
use crate::client::{Client, REQUEST_TIMEOUT_MS_DEFAULT};
use crate::wire::{Consistency, SubmitResponse};

/// Largest constitution document read, as the core accepts it.
pub const CONSTITUTION_FILE_BYTES_MAX: u64 =
    docket_core::constitution::ceilings::DOCUMENT_BYTES_MAX as u64;

const DOMAIN_CONSTITUTION: &str = "constitution";
const ACTION_AMEND: &str = "CONSTITUTION.AMEND";
const ACTION_APPROVE: &str = "CONSTITUTION.APPROVE";

#[derive(Clone, Debug, Subcommand)]
#[command(after_help = "Examples:\n  docket constitution show\n  \
    docket constitution amend --key grace.key --file v2.toml --subject amend-1\n  \
    docket constitution approve --key heidi.key --subject amend-1\n  \
    docket constitution dry-run v2.toml   # what v2 would have decided otherwise; writes nothing")]
pub enum ConstitutionCommand {
    /// Show the active constitution's name, version and history.
    #[command(after_help = "Examples:\n  \
        docket constitution show\n  \
        docket constitution show --document > active.toml")]
    Show {
        /// Print the active TOML document instead.
        #[arg(long)]
        document: bool,
    },
    /// Print the built-in default constitution (TOML), to start a cluster's own from. Talks
    /// to no node.
    #[command(after_help = "Examples:\n  \
        docket constitution default > constitution.toml   # then put your principals' keys in")]
    Default,
    /// Propose a new constitution document (a governor's CONSTITUTION.AMEND) amending the
    /// active version.
    #[command(after_help = "Examples:\n  \
        docket constitution show --document > v2.toml   # edit it, then:\n  \
        docket constitution amend --key grace.key --file v2.toml --subject amend-1\n\n\
        The amendment is adopted once the active constitution's quorum of governors approve it\n\
        with `docket constitution approve`.")]
    Amend(AmendArgs),
    /// Re-adjudicate recorded history under a candidate constitution, on this machine, and
    /// print the decisions that would change, grouped by rule and code. Writes nothing.
    #[command(after_help = "Examples:\n  \
        docket constitution show --document > v2.toml   # edit it, then:\n  \
        docket constitution dry-run v2.toml                    # every proposal since genesis\n  \
        docket constitution dry-run v2.toml --from 5000        # replay #0..#4999, re-adjudicate the rest\n  \
        docket constitution dry-run v2.toml --output json      # every change, with both decisions\n\n\
        The ledger is read page by page and replayed in memory up to --from; a copy of that\n\
        state under the candidate then receives every proposal submitted from --from on, at its\n\
        recorded time. A proposal whose final decision differs is a change. Nothing is sent but\n\
        reads. A ledger longer than --entries-max is refused before anything is replayed.")]
    DryRun(DryRunArgs),
    /// Approve a pending amendment (a governor's CONSTITUTION.APPROVE).
    #[command(after_help = "Examples:\n  \
        docket constitution approve --key heidi.key --subject amend-1")]
    Approve(ApproveArgs),
}

#[derive(Clone, Debug, Args)]
pub struct AmendArgs {
    #[command(flatten)]
    pub sign: SignArgs,
    /// The new constitution document (TOML). It is validated before it is sent.
    #[arg(long, value_name = "NEW.toml")]
    pub file: PathBuf,
    /// Name of the amendment: the subject approvals refer to.
    #[arg(long, value_name = "NAME")]
    pub subject: String,
}

#[derive(Clone, Debug, Args)]
pub struct DryRunArgs {
    /// The candidate constitution document (TOML). It is validated first.
    #[arg(value_name = "CANDIDATE.toml")]
    pub file: PathBuf,
    /// The first entry to re-adjudicate; entries before it are replayed as recorded.
    #[arg(long, value_name = "INDEX", default_value_t = 1)]
    pub from: u64,
    /// Refuse a ledger longer than this many entries (the replay holds the state in memory).
    #[arg(long, value_name = "N", default_value_t = docket_client::amendment::ENTRIES_MAX_DEFAULT)]
    pub entries_max: u64,
}

#[derive(Clone, Debug, Args)]
pub struct ApproveArgs {
    #[command(flatten)]
    pub sign: SignArgs,
    /// Name of the amendment to approve.
    #[arg(long, value_name = "NAME")]
    pub subject: String,
}

/// Runs `docket constitution SUBCOMMAND`.
pub(super) async fn run(args: &ClientArgs, command: ConstitutionCommand) -> anyhow::Result<()> {
    let output = args.output;
    if let ConstitutionCommand::Default = command {
        std::io::stdout()
            .lock()
            .write_all(docket_core::constitution::DEFAULT_DOCUMENT.as_bytes())
            .context("cannot write to stdout")?;
        return Ok(());
    }
    let client = args.client(REQUEST_TIMEOUT_MS_DEFAULT).await?;
    match command {
        ConstitutionCommand::Default => Ok(()),
        ConstitutionCommand::Show { document } => {
            constitution_show(&client, document, output).await
        }
        ConstitutionCommand::Amend(amend) => {
            constitution_amend(&client, &args.nodes(), &amend, output).await
        }
        ConstitutionCommand::Approve(approve) => {
            constitution_approve(&client, &args.nodes(), &approve, output).await
        }
        ConstitutionCommand::DryRun(dry_run) => {
            constitution_dry_run(&client, &dry_run, output).await
        }
    }
}

async fn constitution_dry_run(
    client: &Client,
    args: &DryRunArgs,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let document = read_constitution_file(&args.file)?;
    let report =
        docket_client::amendment::dry_run_amendment(client, &document, args.from, args.entries_max)
            .await?;
    if output == OutputFormat::Json {
        return print_json(&report);
    }
    say!(
        "candidate {} re-adjudicated {} proposal(s) submitted from entry #{} ({} entries read)",
        report.candidate_version.short(),
        report.resubmitted,
        report.from,
        report.entries
    );
    if report.changed.is_empty() {
        say!("no decision would change");
    } else {
        say!("{} decision(s) would change:", report.changed.len());
        for group in &report.groups {
            say!(
                "  {:>5}  {}  {} -> {}",
                group.count,
                group.rule,
                group.recorded,
                group.predicted
            );
            let more = group.count.saturating_sub(group.ids.len() as u64);
            let ids: Vec<String> = group.ids.iter().map(|id| id.to_hex()).collect();
            let more = if more > 0 {
                format!(" (and {more} more: --output json lists all)")
            } else {
                String::new()
            };
            say!("         {}{more}", ids.join(", "));
        }
    }
    say!("nothing was written");
    Ok(())
}

/// Reads a constitution document and validates it locally, so a typo is reported with its
/// line before anything is sent.
pub(super) fn read_constitution_file(path: &Path) -> anyhow::Result<String> {
    let document = read_limited(path, CONSTITUTION_FILE_BYTES_MAX, "constitution file")?;
    Constitution::parse(&document)
        .map_err(|error| anyhow!("{} is not a valid constitution: {error}", path.display()))?;
    Ok(document)
}

async fn constitution_show(
    client: &Client,
    document: bool,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let view = client
        .constitution()
        .await
        .context("cannot read the constitution")?;
    if output == OutputFormat::Json {
        return print_json(&view);
    }
    if document {
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(view.document.as_bytes())
            .context("cannot write to stdout")?;
        return Ok(());
    }
    say!("{}", view.name);
    say!("  version     {}", view.version);
    say!("  adopted at  entry #{}", view.adopted_at);
    say!("  history");
    for (index, version) in &view.history {
        say!("    #{index:<6} {version}");
    }
    say!("  (`docket constitution show --document` prints the TOML)");
    Ok(())
}

async fn constitution_amend(
    client: &Client,
    nodes: &[&str],
    args: &AmendArgs,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let key = read_key_file(&args.sign.key)?;
    let document = read_constitution_file(&args.file)?;
    let active = client
        .constitution()
        .await
        .context("cannot read the active constitution version")?;
    let draft = ProposalFile {
        domain: DOMAIN_CONSTITUTION.to_owned(),
        action: ACTION_AMEND.to_owned(),
        subject: args.subject.clone(),
        payload: Value::map([
            ("document", Value::Str(document)),
            ("parent", Value::Str(active.version.to_hex())),
        ]),
        dependencies: vec![],
        nonce: None,
    };
    let response = sign_and_submit(client, nodes, &args.sign, &draft, &key, output).await?;
    if output == OutputFormat::Text && is_admitted(&response) {
        say!(
            "amendment {:?} of version {} is pending: governors approve it with \
             `docket constitution approve --subject {} --key FILE`",
            args.subject,
            active.version.short(),
            args.subject
        );
    }
    Ok(())
}

async fn constitution_approve(
    client: &Client,
    nodes: &[&str],
    args: &ApproveArgs,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let key = read_key_file(&args.sign.key)?;
    let draft = ProposalFile {
        domain: DOMAIN_CONSTITUTION.to_owned(),
        action: ACTION_APPROVE.to_owned(),
        subject: args.subject.clone(),
        payload: empty_map(),
        dependencies: vec![],
        nonce: None,
    };
    let response = sign_and_submit(client, nodes, &args.sign, &draft, &key, output).await?;
    if output == OutputFormat::Text && is_admitted(&response) {
        let amendment = client
            .state(
                DOMAIN_CONSTITUTION,
                &args.subject,
                Consistency::Linearizable,
            )
            .await
            .context("the approval was recorded, but the amendment's state cannot be read")?;
        let active = client
            .constitution()
            .await
            .context("the approval was recorded, but the constitution cannot be read")?;
        match amendment.state {
            Some(state) if state.state == "adopted" => say!(
                "amendment {:?} adopted: the active constitution is now {} ({}), from entry #{}",
                args.subject,
                active.version,
                active.name,
                active.adopted_at
            ),
            Some(state) => {
                let approvals = state.approvals.get(ACTION_APPROVE).map_or(0, |k| k.len());
                say!(
                    "amendment {:?} is {} with {approvals} approval(s) so far; the active \
                     constitution is still {} ({})",
                    args.subject,
                    state.state,
                    active.version.short(),
                    active.name
                );
            }
            None => {}
        }
    }
    Ok(())
}

fn is_admitted(response: &SubmitResponse) -> bool {
    response
        .entry
        .decision_record()
        .is_some_and(|record| record.decision == docket_core::Decision::Admit)
}
