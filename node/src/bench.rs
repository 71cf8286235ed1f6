//! `docket bench`: concurrent clients submitting signed proposals (one per request, or in
//! batches) or issuing linearizable reads, against a cluster it starts or one given by
//! address. Reports throughput and latency percentiles, as text or JSON.
//!
//! Proposals are signed before the clock starts, so the figures measure the cluster, not
//! the load generator's signing (which runs on the same machine).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use docket_core::{dev, LedgerId, SignedProposal, Value};
use serde::Serialize;

use crate::client::Client;
use crate::local_cluster::LocalCluster;
use crate::wire::Consistency;

/// Proposals signed ahead of a run, at most. Bounds the generator's memory (~300 bytes each).
pub const PRESIGNED_PROPOSALS_MAX: usize = 2_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Submit signed proposals.
    Write,
    /// Linearizable reads of a subject's state.
    Read,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// API URL of a running cluster's node; without it, bench starts its own local cluster.
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// Nodes of the cluster bench starts (ignored with --target).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=7))]
    pub nodes: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub clients: u64,
    /// Measured duration in seconds (after a one-second warm-up).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub duration_s: u64,
    /// Proposals per request: 1 uses POST /v1/proposals, more uses POST /v1/batches.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch: u64,
    #[arg(long, value_enum, default_value_t = Mode::Write)]
    pub mode: Mode,
    /// Expected proposals per second, to size the pre-signed pool (it is capped).
    #[arg(long, default_value_t = 40_000)]
    pub rate_hint: u64,
    /// Where a started cluster keeps its data (default: a temporary directory).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// The measured figures.
#[derive(Debug, Serialize)]
pub struct Report {
    pub mode: Mode,
    pub nodes: Option<u64>,
    pub clients: u64,
    pub batch: u64,
    pub duration_s: f64,
    pub requests: u64,
    pub operations: u64,
    pub errors: u64,
    pub operations_per_s: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_max: f64,
    /// True if some client ran out of pre-signed proposals before the end.
    pub pool_exhausted: bool,
}

fn percentile(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((sorted_us.len() as f64 - 1.0) * p).round() as usize;
    sorted_us[rank.min(sorted_us.len() - 1)] as f64 / 1000.0
}

/// Runs the benchmark; `json` prints the report as JSON (`--output json`).
pub async fn run(args: BenchArgs, json: bool) -> anyhow::Result<()> {
    let temp;
    let mut cluster = None;
    let urls: Vec<String> = match &args.target {
        Some(url) => vec![url.clone()],
        None => {
            let root = match &args.dir {
                Some(dir) => dir.clone(),
                None => {
                    temp = tempfile::Builder::new().prefix("docket-bench-").tempdir()?;
                    temp.path().to_owned()
                }
            };
            let binary = std::env::current_exe().context("locating the docket binary")?;
            let mut local = LocalCluster::new(binary, &root, "docket-bench", args.nodes)?;
            eprintln!(
                "starting a {}-node cluster in {}",
                args.nodes,
                root.display()
            );
            local.start_all().await?;
            local.form().await?;
            local.converged().await?;
            let urls = local.nodes.iter().map(|n| n.url()).collect();
            cluster = Some(local);
            urls
        }
    };
    let report = measure(&args, &urls).await;
    if let Some(mut cluster) = cluster {
        cluster.kill_all().await;
    }
    let report = report?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{:?} x{} clients, batch {}: {:.0} ops/s over {:.1} s ({} requests, {} errors); latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms{}",
            report.mode, report.clients, report.batch, report.operations_per_s, report.duration_s, report.requests,
            report.errors, report.latency_ms_p50, report.latency_ms_p99, report.latency_ms_max,
            if report.pool_exhausted { " (pre-signed pool ran out: raise --rate-hint)" } else { "" }
        );
    }
    Ok(())
}

async fn measure(args: &BenchArgs, urls: &[String]) -> anyhow::Result<Report> {
    let first = Client::new(&urls[0])?;
    let status = first
        .status()
        .await
        .context("reaching the target cluster")?;
    let ledger = LedgerId::new(status.cluster_id.clone())?;
    let salt = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let total_s = args.duration_s + 1;
    let per_client = match args.mode {
        Mode::Read => 0,
        Mode::Write => ((args.rate_hint * total_s) as usize / args.clients as usize).clamp(
            args.batch as usize,
            PRESIGNED_PROPOSALS_MAX / args.clients as usize,
        ),
    };
    if args.mode == Mode::Read {
        // One subject for every reader to read.
        let seed = dev::proposal(
            &ledger,
            "alice",
            "SETTLEMENT.DEPOSIT_CONFIRMED",
            "bench-read",
            Value::map([("amount", Value::Int(1)), ("currency", "EUR".into())]),
            vec![],
            salt,
        );
        first.submit(&seed).await?;
    }
    eprintln!(
        "signing {} proposals ahead of the run",
        per_client * args.clients as usize
    );
    let pools: Vec<Vec<SignedProposal>> = (0..args.clients)
        .map(|c| {
            (0..per_client)
                .map(|i| {
                    dev::proposal(
                        &ledger,
                        "alice",
                        "SETTLEMENT.DEPOSIT_CONFIRMED",
                        &format!("bench-{salt}-{c}-{i}"),
                        Value::map([("amount", Value::Int(100)), ("currency", "EUR".into())]),
                        vec![],
                        salt.wrapping_add(i as u64),
                    )
                })
                .collect()
        })
        .collect();

    let warmup_end = Instant::now() + Duration::from_secs(1);
    let end = warmup_end + Duration::from_secs(args.duration_s);
    let urls = Arc::new(urls.to_vec());
    let mut tasks = tokio::task::JoinSet::new();
    for (c, pool) in pools.into_iter().enumerate() {
        let client = Client::new(&urls[c % urls.len()])?;
        let (mode, batch) = (args.mode, args.batch as usize);
        tasks.spawn(async move {
            let mut latencies_us = Vec::new();
            let (mut ops, mut errors, mut exhausted) = (0u64, 0u64, false);
            let mut pool = pool.into_iter();
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let result = match mode {
                    Mode::Read => client
                        .state("settlement", "bench-read", Consistency::Linearizable)
                        .await
                        .map(|_| 1),
                    Mode::Write => {
                        let chunk: Vec<SignedProposal> = pool.by_ref().take(batch).collect();
                        if chunk.is_empty() {
                            exhausted = true;
                            break;
                        }
                        if batch == 1 {
                            client.submit(&chunk[0]).await.map(|_| 1)
                        } else {
                            client
                                .submit_batch(&chunk)
                                .await
                                .map(|r| r.results.len() as u64)
                        }
                    }
                };
                let elapsed_us = now.elapsed().as_micros() as u64;
                if now < warmup_end {
                    continue;
                }
                match result {
                    Ok(n) => {
                        ops += n;
                        latencies_us.push(elapsed_us);
                    }
                    Err(_) => errors += 1,
                }
            }
            (latencies_us, ops, errors, exhausted)
        });
    }
    let mut latencies = Vec::new();
    let (mut ops, mut errors, mut exhausted) = (0, 0, false);
    while let Some(joined) = tasks.join_next().await {
        let (l, o, e, x) = joined?;
        latencies.extend(l);
        ops += o;
        errors += e;
        exhausted |= x;
    }
    if latencies.is_empty() {
        bail!("no request succeeded ({errors} errors)");
    }
    latencies.sort_unstable();
    let duration_s = args.duration_s as f64;
    Ok(Report {
        mode: args.mode,
        nodes: args.target.is_none().then_some(args.nodes),
        clients: args.clients,
        batch: args.batch,
        duration_s,
        requests: latencies.len() as u64,
        operations: ops,
        errors,
        operations_per_s: ops as f64 / duration_s,
        latency_ms_p50: percentile(&latencies, 0.50),
        latency_ms_p99: percentile(&latencies, 0.99),
        latency_ms_max: percentile(&latencies, 1.0),
        pool_exhausted: exhausted,
    })
}
