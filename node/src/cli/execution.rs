//! `docket execution show`: what execution agents did for a proposal.

use std::io::Write as _;

use anyhow::Context as _;
use clap::Subcommand;
use docket_core::ProposalId;

use super::{print_json, ClientArgs, OutputFormat};
use crate::client::{Client, REQUEST_TIMEOUT_MS_DEFAULT};

#[derive(Clone, Debug, Subcommand)]
#[command(
    after_help = "Examples:\n  docket execution show 3f2a…(64 hex) --node http://127.0.0.1:8001"
)]
pub enum ExecutionCommand {
    /// Print the execution job and the evidence of every attempt for a proposal.
    #[command(after_help = "Examples:\n  \
        docket execution show 3f2a…(64 hex)\n  \
        docket execution show 3f2a…(64 hex) --node http://127.0.0.1:8002 --output json\n\n\
        Evidence is kept in the journal of the node that executed the effect (the leader at\n\
        the time); ask that node. Other nodes answer that they hold no job.")]
    Show {
        /// The proposal id (64 lowercase hex characters).
        #[arg(value_name = "PROPOSAL_ID")]
        id: String,
    },
}

/// Runs `docket execution SUBCOMMAND`.
pub(super) async fn run(args: &ClientArgs, command: ExecutionCommand) -> anyhow::Result<()> {
    let output = args.output;
    match command {
        ExecutionCommand::Show { id } => {
            let client = args.client(REQUEST_TIMEOUT_MS_DEFAULT).await?;
            execution_show(&client, &id, output).await
        }
    }
}

async fn execution_show(client: &Client, id: &str, output: OutputFormat) -> anyhow::Result<()> {
    let id: ProposalId = id
        .parse()
        .map_err(|e| anyhow::anyhow!("proposal id: {e}"))?;
    let view: crate::wire::ExecutionView = client
        .execution(id)
        .await
        .with_context(|| format!("cannot read execution evidence for {id}"))?;
    if output == OutputFormat::Json {
        return print_json(&view);
    }
    if !view.enabled {
        say!(
            "node {} runs no execution agent ([execution] enabled = false)",
            view.node_id
        );
        return Ok(());
    }
    let Some(job) = &view.job else {
        say!("node {} holds no execution job for {id}", view.node_id);
        return Ok(());
    };
    say!("{}", serde_json::to_string_pretty(job)?);
    Ok(())
}
