//! `docket bench --mode failover`: how long is a cluster without a leader after one dies?
//!
//! Starts its own cluster and, `--rounds` times: waits until every node agrees on a
//! leader, writes steadily for a moment, SIGKILLs the leader, then submits fresh
//! proposals round-robin to the survivors (each attempt with a short deadline) until one
//! is recorded. The time from the kill to that first recorded write is the failover time;
//! the term the new leader took says whether the election needed more than one round
//! (a split vote). The killed node is restarted and the cluster converges before the next
//! round. Reported: every round's figure, the median and the maximum.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use docket_core::{dev, LedgerId, Value};
use serde::Serialize;

use super::BenchArgs;
use crate::client::Client;

/// Deadline of one write attempt after the kill: short, so a survivor that cannot commit
/// yet is asked again soon.
const ATTEMPT_TIMEOUT_MS: u64 = 300;

/// Longest a round may go without a recorded write before the benchmark gives up.
const FAILOVER_GIVE_UP_MS: u64 = 30_000;

/// Steady writes before each kill.
const WARM_WRITES: u64 = 20;

/// One kill.
#[derive(Debug, Serialize)]
pub struct Failover {
    pub round: u64,
    pub killed: u64,
    pub new_leader: u64,
    /// From the SIGKILL to the first write recorded by a survivor.
    pub first_write_ms: f64,
    /// Terms the election took (1: a single round; more: split votes or disruption).
    pub terms: u64,
}

#[derive(Debug, Serialize)]
pub struct FailoverReport {
    pub nodes: u64,
    pub rounds: Vec<Failover>,
    pub first_write_ms_p50: f64,
    pub first_write_ms_max: f64,
    /// Rounds whose election took more than one term.
    pub multi_term_elections: u64,
}

fn proposal(ledger: &LedgerId, round: u64, n: u64) -> docket_core::SignedProposal {
    dev::proposal(
        ledger,
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        &format!("failover-{round}-{n}"),
        Value::map([("amount", Value::Int(1)), ("currency", "EUR".into())]),
        vec![],
        n,
    )
}

/// Runs the failover benchmark on a cluster it starts under `root`.
pub async fn run(args: &BenchArgs, root: &Path) -> anyhow::Result<FailoverReport> {
    if args.nodes < 3 {
        bail!("--mode failover needs at least 3 nodes (a quorum must survive the kill)");
    }
    let mut cluster = super::started_cluster(
        root,
        "docket-failover",
        args.nodes,
        false,
        args.node_config.as_deref(),
    )
    .await?;
    let ledger = LedgerId::new("docket-failover").context("cluster id")?;
    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        let statuses = cluster.converged().await?;
        let killed = cluster.leader().await?;
        let term_before = statuses.iter().map(|s| s.term).max().unwrap_or(0);
        let leader = cluster.node(killed).client();
        for n in 0..WARM_WRITES {
            leader
                .submit(&proposal(&ledger, round, n))
                .await
                .context("a write before the kill")?;
        }
        cluster.kill(killed).await?;
        let killed_at = Instant::now();
        let survivors: Vec<Client> = cluster
            .nodes
            .iter()
            .filter(|n| n.id != killed)
            .map(|n| Client::with_timeout(&n.url(), Duration::from_millis(ATTEMPT_TIMEOUT_MS)))
            .collect::<Result<_, _>>()?;
        let mut attempt = 0u64;
        let first_write_ms = loop {
            let client = &survivors[(attempt as usize) % survivors.len()];
            attempt += 1;
            if client
                .submit(&proposal(&ledger, round, WARM_WRITES + attempt))
                .await
                .is_ok()
            {
                break killed_at.elapsed().as_secs_f64() * 1000.0;
            }
            if killed_at.elapsed() > Duration::from_millis(FAILOVER_GIVE_UP_MS) {
                bail!("round {round}: no write recorded {FAILOVER_GIVE_UP_MS} ms after killing node {killed}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let new_leader = cluster.leader().await?;
        let term_after = cluster
            .statuses()
            .await
            .iter()
            .map(|s| s.term)
            .max()
            .unwrap_or(term_before);
        let failover = Failover {
            round,
            killed,
            new_leader,
            first_write_ms,
            terms: term_after.saturating_sub(term_before),
        };
        eprintln!(
            "round {round}: killed node {killed}; node {new_leader} leads after {:.0} ms, {} term(s) later",
            failover.first_write_ms, failover.terms
        );
        rounds.push(failover);
        cluster.start(killed).await?;
    }
    cluster.kill_all().await;
    let mut times: Vec<f64> = rounds.iter().map(|r| r.first_write_ms).collect();
    times.sort_by(f64::total_cmp);
    Ok(FailoverReport {
        nodes: args.nodes,
        first_write_ms_p50: times.get(times.len() / 2).copied().unwrap_or(0.0),
        first_write_ms_max: times.last().copied().unwrap_or(0.0),
        multi_term_elections: rounds.iter().filter(|r| r.terms > 1).count() as u64,
        rounds,
    })
}
