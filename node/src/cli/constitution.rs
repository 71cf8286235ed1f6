//! `docket constitution show|amend|approve`: the active constitution, and governors'
//! amendments and approvals (proposals signed and submitted as `docket propose` does).

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
    docket constitution approve --key heidi.key --subject amend-1")]
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
    }
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
