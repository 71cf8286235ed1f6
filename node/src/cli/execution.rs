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
    /// List this node's execution jobs: in flight, outcomes by effect and result, refusals
    /// with their reasons.
    #[command(after_help = "Examples:\n  \
        docket execution list                       # the leader's jobs, a page at a time\n  \
        docket execution list --limit 1000 --output json\n\n\
        Jobs are in the journal of the node that ran them (the leader at the time): ask it.")]
    List {
        /// Jobs per page read (at most the node's limits.read_page_entries_max).
        #[arg(long, default_value_t = 100, value_name = "N")]
        limit: u64,
        /// Read at most this many pages (bounds the listing on a long journal).
        #[arg(long, default_value_t = 10, value_name = "N")]
        pages: u64,
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
        ExecutionCommand::List { limit, pages } => {
            let client = args.client(REQUEST_TIMEOUT_MS_DEFAULT).await?;
            execution_list(&client, limit, pages, output).await
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

/// The phase of a job, as one word.
fn phase_name(phase: &docket_execution::journal::Phase) -> &'static str {
    use docket_execution::journal::Phase;
    match phase {
        Phase::New => "new",
        Phase::Attempting { .. } => "attempting",
        Phase::Concluded { .. } => "concluded",
        Phase::Filed { .. } => "filed",
        Phase::Resolved { .. } => "resolved",
    }
}

async fn execution_list(
    client: &Client,
    limit: u64,
    pages: u64,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let mut jobs: Vec<docket_execution::Job> = Vec::new();
    let mut after = None;
    let mut node = None;
    let mut more = false;
    for _ in 0..pages.max(1) {
        let page: crate::wire::ExecutionList = client
            .execution_list(after, limit)
            .await
            .context("cannot list execution jobs")?;
        if !page.enabled {
            say!(
                "node {} runs no execution agent ([execution] enabled = false)",
                page.node_id
            );
            return Ok(());
        }
        node = Some(page.node_id);
        jobs.extend(page.jobs);
        after = page.next;
        more = after.is_some();
        if !more {
            break;
        }
    }
    if output == OutputFormat::Json {
        return print_json(&jobs);
    }
    let node = node.unwrap_or_default();
    let in_flight: Vec<&docket_execution::Job> = jobs.iter().filter(|j| !j.is_resolved()).collect();
    say!(
        "node {node}: {} jobs{}, {} in flight",
        jobs.len(),
        if more { " (more: raise --pages)" } else { "" },
        in_flight.len()
    );
    for job in &in_flight {
        say!(
            "  in flight  {}  {:<12} {:<28} {} ({} attempts)",
            job.proposal_id.short(),
            job.effect,
            job.command,
            phase_name(&job.phase),
            job.attempts()
        );
    }
    let mut by_outcome: std::collections::BTreeMap<(String, String), u64> = Default::default();
    for job in &jobs {
        if let Some(last) = job.evidence.last() {
            *by_outcome
                .entry((job.effect.clone(), last.outcome.as_str().to_owned()))
                .or_default() += 1;
        }
    }
    say!("outcomes (last attempt of each job):");
    for ((effect, outcome), count) in &by_outcome {
        say!("  {effect:<16} {outcome:<10} {count}");
    }
    let refused: Vec<(&docket_execution::Job, &str)> = jobs
        .iter()
        .filter_map(|job| {
            let last = job.evidence.last()?;
            (last.outcome.as_str() == "refused")
                .then(|| (job, last.reason.as_deref().unwrap_or("")))
        })
        .collect();
    if !refused.is_empty() {
        say!("refused:");
        for (job, reason) in refused {
            say!("  {}  {:<16} {reason}", job.proposal_id.short(), job.effect);
        }
    }
    Ok(())
}
