//! `docket proposal show ID`: a proposal's status and every entry recorded for it, verified
//! against a checkpoint a majority of the voters cosigned: the status row through the state
//! map, which also proves which entries the proposal has, then each entry.

use std::io::Write as _;

use anyhow::Context as _;
use clap::Subcommand;
use docket_core::ProposalId;

use super::{print_json, ClientArgs, OutputFormat};
use crate::client::REQUEST_TIMEOUT_MS_DEFAULT;

#[derive(Clone, Debug, Subcommand)]
pub enum ProposalCommand {
    /// A proposal's status and its entries (a deferral, then its decision), verified: the
    /// status is proved under the state-map root of a checkpoint a majority of the voters
    /// cosigned, which names its entries; each entry is proved in the same checkpoint.
    #[command(after_help = "Examples:\n  \
        docket proposal show 9f8bf7a99ee32fcf...   # the full 64-hex id\n  \
        docket proposal show $ID --no-verify       # as the node says, unproved")]
    Show {
        /// The proposal id (64 lowercase hex characters).
        #[arg(value_name = "ID")]
        id: String,
        /// Skip the proofs.
        #[arg(long)]
        no_verify: bool,
    },
}

pub(super) async fn run(args: &ClientArgs, command: ProposalCommand) -> anyhow::Result<()> {
    let client = args.client(REQUEST_TIMEOUT_MS_DEFAULT).await?;
    let ProposalCommand::Show { id, no_verify } = command;
    let id: ProposalId = id
        .parse()
        .map_err(|e| anyhow::anyhow!("proposal id {id:?}: {e}"))?;
    let (view, verified) = if no_verify {
        let view = client
            .proposal(id)
            .await
            .with_context(|| format!("cannot read proposal {id}"))?;
        (view, None)
    } else {
        let (view, size) = docket_client::state_proof::verified_proposal(&client, id).await?;
        (view, Some(size))
    };
    if args.output == OutputFormat::Json {
        return print_json(&view);
    }
    say!("proposal {}", view.id);
    say!("status   {:?}", view.status);
    for entry in &view.entries {
        say!("  {entry}");
    }
    match verified {
        Some(size) => eprintln!(
            "verified: the status, and its {} entries, each in the final checkpoint of size \
             {size}",
            view.entries.len()
        ),
        None => eprintln!("not verified (--no-verify)"),
    }
    Ok(())
}
