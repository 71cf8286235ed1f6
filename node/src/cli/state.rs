//! `docket state get`: a subject's lifecycle state, read linearizably or locally.

use std::io::Write as _;

use anyhow::Context as _;
use clap::Subcommand;

use super::{print_json, ClientArgs, OutputFormat};
use crate::client::{Client, REQUEST_TIMEOUT_MS_DEFAULT};
use crate::wire::Consistency;

#[derive(Clone, Debug, Subcommand)]
#[command(after_help = "Examples:\n  docket state get settlement stl-0001")]
pub enum StateCommand {
    /// Print a subject's lifecycle state and data.
    #[command(after_help = "Examples:\n  \
        docket state get settlement stl-0001\n  \
        docket state get kes kes-main --local   # this node's state, possibly stale")]
    Get {
        /// Domain, e.g. settlement.
        #[arg(value_name = "DOMAIN")]
        domain: String,
        /// Subject, e.g. stl-0001.
        #[arg(value_name = "SUBJECT")]
        subject: String,
        /// Read this node's applied state without asking the leader (fast, possibly stale).
        #[arg(long)]
        local: bool,
    },
}

/// Runs `docket state SUBCOMMAND`.
pub(super) async fn run(args: &ClientArgs, command: StateCommand) -> anyhow::Result<()> {
    let output = args.output;
    match command {
        StateCommand::Get {
            domain,
            subject,
            local,
        } => {
            let client = args.client(REQUEST_TIMEOUT_MS_DEFAULT).await?;
            state_get(&client, &domain, &subject, local, output).await
        }
    }
}

async fn state_get(
    client: &Client,
    domain: &str,
    subject: &str,
    local: bool,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let consistency = if local {
        Consistency::Local
    } else {
        Consistency::Linearizable
    };
    let view = client
        .state(domain, subject, consistency)
        .await
        .with_context(|| format!("cannot read the state of {domain}/{subject}"))?;
    // Entries and proposals are proved against cosigned checkpoints; a state row is not
    // yet (the state commitment cannot prove one row): say so, on stderr.
    eprintln!(
        "note: subject state is not proved (proofs of state need an authenticated state map); \
         `docket ledger get` and `docket proposal show` verify what they read"
    );
    if output == OutputFormat::Json {
        return print_json(&view);
    }
    let read = match view.consistency {
        Consistency::Linearizable => "linearizable read",
        Consistency::Local => "local read, possibly stale",
    };
    let Some(state) = &view.state else {
        say!(
            "{}/{}: {} (untouched: no proposal has moved it from the initial state)",
            view.domain,
            view.subject,
            view.initial_state
        );
        say!("  as of ledger length {} ({read})", view.as_of_length);
        return Ok(());
    };
    say!("{}/{}: {}", view.domain, view.subject, state.state);
    say!("  as of ledger length {} ({read})", view.as_of_length);
    say!("  last changed by entry #{}", state.last_index);
    for (field, value) in &state.fields {
        say!("  {field} = {value}");
    }
    for (action, keys) in &state.approvals {
        let keys: Vec<String> = keys.iter().map(|k| k.short()).collect();
        say!(
            "  {action}: {} approval(s) so far from {}",
            keys.len(),
            keys.join(", ")
        );
    }
    Ok(())
}
