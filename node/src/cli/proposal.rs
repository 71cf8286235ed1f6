//! `docket proposal show ID`: a proposal's status and every entry recorded for it, each
//! entry verified against a checkpoint a majority of the voters cosigned.

use std::io::Write as _;

use anyhow::Context as _;
use clap::Subcommand;
use docket_core::ProposalId;

use super::{print_json, ClientArgs, OutputFormat};
use crate::client::REQUEST_TIMEOUT_MS_DEFAULT;

#[derive(Clone, Debug, Subcommand)]
pub enum ProposalCommand {
    /// A proposal's status and its entries (a deferral, then its decision), each verified:
    /// its hash, and its inclusion in a checkpoint a majority of the voters cosigned.
    #[command(after_help = "Examples:\n  \
        docket proposal show 9f8bf7a99ee32fcf...   # the full 64-hex id\n  \
        docket proposal show $ID --no-verify       # as the node says, unproved\n\n\
        The entries listed are proved to be in the ledger; that the node listed all of them\n\
        is not (proofs of state are not available yet).")]
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
        let (view, size) = docket_client::verify::verified_proposal(&client, id).await?;
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
            "verified: {} entries, each in the final checkpoint of size {size}",
            view.entries.len()
        ),
        None => eprintln!("not verified (--no-verify)"),
    }
    Ok(())
}
