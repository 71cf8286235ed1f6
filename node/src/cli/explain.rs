//! `docket explain ID`: why a proposal stands where it does (`GET /v1/proposals/{id}/explain`).
//!
//! Text for humans, one block per section: the decision, then what the rule read (or the
//! dependency tree, indented), the access decision, and the execution record in brief.
//! `--output json` prints the API's JSON.

use std::fmt::Write as _;
use std::io::Write as _;

use anyhow::Context as _;
use clap::Args;
use docket_core::explain::{DependencyNode, Why};
use docket_core::{Cause, ProposalId};

use super::{print_json, ClientArgs, OutputFormat};
use crate::client::REQUEST_TIMEOUT_MS_DEFAULT;
use crate::wire::ExplainView;

#[derive(Clone, Debug, Args)]
pub struct ExplainArgs {
    /// The proposal id (64 lowercase hex characters).
    #[arg(value_name = "ID")]
    pub id: String,
}

/// Runs `docket explain ID`.
pub(super) async fn run(args: &ClientArgs, explain: &ExplainArgs) -> anyhow::Result<()> {
    let id: ProposalId = explain
        .id
        .parse()
        .map_err(|e| anyhow::anyhow!("proposal id {:?}: {e}", explain.id))?;
    let client = args.client(REQUEST_TIMEOUT_MS_DEFAULT).await?;
    let view = client
        .explain(id)
        .await
        .with_context(|| format!("cannot explain proposal {id}"))?;
    if args.output == OutputFormat::Json {
        return print_json(&view);
    }
    say!("{}", render(&view).trim_end());
    Ok(())
}

/// The text form of an explanation.
pub fn render(view: &ExplainView) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_view(&mut out, view);
    out
}

fn write_view(out: &mut String, view: &ExplainView) -> std::fmt::Result {
    let e = &view.explanation;
    let cause = match e.cause {
        Cause::Submitted => "submitted".to_owned(),
        Cause::Released { wave } => format!("released in wave {wave}"),
        Cause::Expired => "deferral expired".to_owned(),
    };
    writeln!(out, "proposal  {}", view.id)?;
    writeln!(
        out,
        "entry     #{} at ledger time {} ({cause})",
        e.index, e.time.0
    )?;
    writeln!(out)?;
    match &e.why {
        Why::Admitted(a) => {
            writeln!(out, "admitted at entry #{}", a.index)?;
            writeln!(out, "  role      {}", a.role.as_deref().unwrap_or("-"))?;
            writeln!(out, "  rule      {}", a.rule)?;
            if let Some(outcome) = &a.outcome {
                let how = if outcome.succeeded {
                    "succeeded"
                } else {
                    "failed"
                };
                writeln!(
                    out,
                    "  outcome   {how}: reported by {} at entry #{}",
                    outcome.report, outcome.index
                )?;
            }
        }
        Why::Rejected(r) => {
            writeln!(out, "rejected")?;
            writeln!(out, "  step      {} {}", r.step.number(), r.step.name())?;
            writeln!(out, "  code      {} ({})", r.code, r.code_description)?;
            writeln!(out, "  rule      {}", r.rule)?;
            if let Some(named) = &r.named_rule {
                writeln!(
                    out,
                    "  {:<9} {} ({})",
                    named.kind, named.name, named.description
                )?;
            }
            writeln!(out, "  detail    {}", r.detail)?;
            if !r.reads.is_empty() {
                writeln!(out)?;
                writeln!(out, "read")?;
                for read in &r.reads {
                    let value = read
                        .value
                        .as_ref()
                        .map_or_else(|| "(absent)".to_owned(), |v| v.to_string());
                    writeln!(out, "  {} ({}) = {value}", read.field, read.field_type)?;
                }
            }
            if !r.dependencies.is_empty() || r.dependencies_omitted > 0 {
                writeln!(out)?;
                writeln!(out, "dependencies (status now)")?;
                write_tree(out, &r.dependencies, r.dependencies_omitted, 1)?;
            }
        }
        Why::Deferred(d) => {
            writeln!(out, "deferred")?;
            match d.expires_at {
                Some(at) => writeln!(
                    out,
                    "  expires   at ledger time {} (then DEPENDENCY_EXPIRED unless decided)",
                    at.0
                )?,
                None => writeln!(out, "  expires   - (no longer deferred)")?,
            }
            writeln!(out)?;
            writeln!(out, "waiting on (status now)")?;
            write_tree(out, &d.waiting_on, d.waiting_on_omitted, 1)?;
        }
    }
    writeln!(out)?;
    writeln!(out, "access")?;
    writeln!(out, "  {}", e.access)?;
    if let Some(x) = &view.execution {
        writeln!(out)?;
        writeln!(out, "execution (node {})", x.node_id)?;
        writeln!(out, "  effect    {} for {}", x.effect, x.command)?;
        let resolution = x
            .resolution
            .as_deref()
            .map_or_else(String::new, |r| format!(": {r}"));
        writeln!(out, "  phase     {}{resolution}", x.phase)?;
        writeln!(out, "  attempts  {}", x.attempts)?;
        if let Some(outcome) = &x.last_outcome {
            let reason = x
                .last_reason
                .as_deref()
                .map_or_else(String::new, |r| format!(" ({r})"));
            writeln!(out, "  last      {outcome}{reason}")?;
        }
        if let Some(hash) = &x.last_evidence_hash {
            writeln!(out, "  evidence  {hash}")?;
        }
    }
    Ok(())
}

fn write_tree(
    out: &mut String,
    nodes: &[DependencyNode],
    omitted: u64,
    depth: usize,
) -> std::fmt::Result {
    let indent = "  ".repeat(depth);
    for node in nodes {
        let mut line = match node.outcome_of {
            Some(of) => format!("outcome of {of}: {}", node.status.name()),
            None => format!("{}: {}", node.id, node.status.name()),
        };
        if let Some(index) = node.index {
            let _ = write!(line, " at entry #{index}");
        }
        if let Some(at) = node.expires_at {
            let _ = write!(line, ", expires at ledger time {}", at.0);
        }
        if node.outcome_of.is_some() {
            let _ = write!(line, " (reference {})", node.id.short());
        }
        writeln!(out, "{indent}{line}")?;
        write_tree(out, &node.dependencies, node.omitted, depth + 1)?;
    }
    if omitted > 0 {
        writeln!(out, "{indent}... {omitted} more not shown")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use docket_core::constitution::DEFAULT_DOCUMENT;
    use docket_core::dev::Proposer;
    use docket_core::{LedgerId, LedgerTime, State, Value};

    use super::*;

    #[test]
    fn renders_a_rejection_and_a_deferral_tree() {
        let ledger = LedgerId::new("render").expect("valid");
        let (mut state, _) =
            State::genesis(ledger.clone(), DEFAULT_DOCUMENT, LedgerTime(1_000)).expect("genesis");
        let mut p = Proposer::new(ledger, 0);
        let overdraft = p.make(
            "alice",
            "SETTLEMENT.PAYOUT_REQUESTED",
            "s",
            Value::map([("amount", Value::Int(7)), ("beneficiary", "b".into())]),
            vec![],
        );
        let missing = ProposalId([7; 32]);
        let waiting = p.make(
            "alice",
            "SETTLEMENT.RECOVERY",
            "s",
            Value::map([("reason", "r".into())]),
            vec![missing, missing.outcome_of()],
        );
        let mut views = Vec::new();
        for (signed, at) in [(overdraft, 2_000), (waiting, 3_000)] {
            let id = signed.id();
            let submission = state.submit(signed, LedgerTime(at));
            let entry = submission.own_entry(&id).expect("recorded");
            let record = state.proposal(&id).expect("recorded");
            views.push(ExplainView {
                id,
                status: record.status,
                index: record.index,
                explanation: docket_core::explain(&state, entry).expect("a decision"),
                execution: None,
            });
        }
        let rejected = render(&views[0]);
        // The subject is not funded: the lifecycle step rejects before the invariants.
        assert!(rejected.contains("step      7 lifecycle"), "{rejected}");
        assert!(rejected.contains("INVALID_TRANSITION"), "{rejected}");
        let deferred = render(&views[1]);
        assert!(deferred.contains("expires   at ledger time"), "{deferred}");
        assert!(
            deferred.contains(&format!("  {missing}: not recorded")),
            "{deferred}"
        );
        assert!(
            deferred.contains(&format!("  outcome of {missing}: outcome pending")),
            "{deferred}"
        );
    }
}
