//! `docket state get`: a subject's lifecycle state, proved under a checkpoint a majority of
//! the voters cosigned (the state map, `docket_core::statemap`), or read as the node says
//! (`--no-verify`, `--local`).

use std::io::Write as _;

use anyhow::Context as _;
use clap::Subcommand;

use super::{print_json, ClientArgs, OutputFormat};
use crate::client::{Client, REQUEST_TIMEOUT_MS_DEFAULT};
use crate::wire::Consistency;

#[derive(Clone, Debug, Subcommand)]
#[command(after_help = "Examples:\n  docket state get settlement stl-0001")]
pub enum StateCommand {
    /// Print a subject's lifecycle state and data, verified: the subject's row is proved
    /// under the state-map root of a checkpoint a majority of the voters cosigned, and that
    /// checkpoint extends the last one this client verified.
    #[command(after_help = "Examples:\n  \
        docket state get settlement stl-0001\n  \
        docket state get settlement stl-0001 --proof-out stl.json   # keep the proof; \
        `docket verify stl.json` checks it offline\n  \
        docket state get kes kes-main --no-verify   # as the node says, unproved\n  \
        docket state get kes kes-main --local       # this node's state, possibly stale, unproved")]
    Get {
        /// Domain, e.g. settlement.
        #[arg(value_name = "DOMAIN")]
        domain: String,
        /// Subject, e.g. stl-0001.
        #[arg(value_name = "SUBJECT")]
        subject: String,
        /// Read this node's applied state without asking the leader (fast, possibly
        /// stale; not verified).
        #[arg(long)]
        local: bool,
        /// Skip the proof: print the state as the node reports it.
        #[arg(long)]
        no_verify: bool,
        /// Also write the proof document (the row, its map proof and the cosigned
        /// checkpoint) to FILE, for `docket verify FILE` offline.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["local", "no_verify"])]
        proof_out: Option<std::path::PathBuf>,
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
            no_verify,
            proof_out,
        } => {
            let client = args.client(REQUEST_TIMEOUT_MS_DEFAULT).await?;
            if local || no_verify {
                return state_get(&client, &domain, &subject, local, output).await;
            }
            verified_state_get(&client, &domain, &subject, proof_out.as_deref(), output).await
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
    eprintln!(
        "not verified ({})",
        if local { "--local" } else { "--no-verify" }
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
    let as_of = format!("as of ledger length {} ({read})", view.as_of_length);
    print_subject(&view.domain, &view.subject, state, &as_of)
}

/// A subject's state as both reads print it: lifecycle state, how fresh, what last
/// changed it, its fields and the approvals gathered so far.
fn print_subject(
    domain: &str,
    subject: &str,
    state: &docket_core::SubjectState,
    as_of: &str,
) -> anyhow::Result<()> {
    say!("{domain}/{subject}: {}", state.state);
    say!("  {as_of}");
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

/// The verified read: the subject's row and its proof under a cosigned checkpoint.
async fn verified_state_get(
    client: &Client,
    domain: &str,
    subject: &str,
    proof_out: Option<&std::path::Path>,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let (state, row) = docket_client::state_proof::verified_subject(client, domain, subject)
        .await
        .with_context(|| format!("cannot read the state of {domain}/{subject} verified"))?;
    if let Some(path) = proof_out {
        let text = serde_json::to_string_pretty(&row.document)?;
        std::fs::write(path, format!("{text}\n"))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let as_of = format!(
        "as of ledger length {} (the state-map anchor of the final checkpoint of size {})",
        row.anchor.size, row.checkpoint.checkpoint.size
    );
    if output == OutputFormat::Json {
        return print_json(&serde_json::json!({
            "domain": domain,
            "subject": subject,
            "state": state,
            "as_of_length": row.anchor.size,
            "checkpoint_size": row.checkpoint.checkpoint.size,
            "verified": true,
        }));
    }
    match &state {
        None => {
            say!("{domain}/{subject}: untouched (no proposal has moved it from the initial state)");
            say!("  {as_of}");
        }
        Some(state) => print_subject(domain, subject, state, &as_of)?,
    }
    eprintln!(
        "verified: the subject's row is proved under the state-map root a majority of the \
         voters cosigned"
    );
    Ok(())
}
