//! `docket bench`: concurrent clients submitting signed proposals (one per request, or in
//! batches) or issuing linearizable reads, against a cluster it starts or one given by
//! address. Reports throughput and latency percentiles, as text or JSON.
//!
//! Proposals are signed before the clock starts, so the figures measure the cluster, not
//! the load generator's signing (which runs on the same machine).
//!
//! `--mode effects` measures the execution loop instead: admitted → executed → outcome
//! committed. It needs its own cluster (it refuses `--target`): bench starts a payment rail
//! in-process ([`crate::rail::Rail`]), gives every node an `[execution]` section that pays
//! through it (like `docket demo`), funds `--payouts` settlements, then submits one payout
//! request per settlement across `--clients` clients and follows the ledger until every
//! admitted payout has its outcome record (`SETTLEMENT.PAYOUT_EXECUTED` or
//! `SETTLEMENT.RAIL_ERROR`). It reports effects per second (outcomes committed over the wall
//! time from the first submission to the last outcome seen) and, per payout, the ledger
//! time from its admission entry to its outcome entry.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use docket_core::{dev, LedgerId, SignedProposal, Value};
use docket_execution::config::{JOBS_INFLIGHT_MAX_CEILING, JOBS_INFLIGHT_MAX_DEFAULT};
use serde::Serialize;

use crate::client::Client;
use crate::local_cluster::LocalCluster;
use crate::rail::Rail;
use crate::wire::Consistency;

mod failover;
mod grow;

/// Proposals signed ahead of a run, at most. Bounds the generator's memory (~300 bytes each).
pub const PRESIGNED_PROPOSALS_MAX: usize = 2_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Submit signed proposals.
    Write,
    /// Linearizable reads of a subject's state.
    Read,
    /// Linearizable reads of random ledger entries (`GET /v1/ledger`), unproved: the
    /// baseline of `verified`.
    Entries,
    /// Verified reads of random ledger entries: one checkpoint a majority of the voters
    /// cosigned, checked once, then per read the entry and its audit path in one request
    /// (`GET /v1/proofs/entry`), its hash and path checked against the checkpoint.
    Verified,
    /// Verified reads of a subject's state (the baseline is `read`): per read the row and
    /// its state-map proof under a final checkpoint (`GET /v1/proofs/state`), the proof
    /// checked, and the checkpoint's cosignatures checked whenever the note is one this
    /// reader has not checked yet.
    StateVerified,
    /// Payouts through the execution loop: admitted, paid on a local rail, outcome
    /// committed (starts its own cluster; not with --target).
    Effects,
    /// Growth: write rounds, each followed by ledger length, throughput, p99, memory and
    /// disk per node and the time of GET /v1/status; then a follower restart and a fresh
    /// node's catch-up, timed (starts its own cluster; not with --target).
    Grow,
    /// Failover: --rounds times, SIGKILL the leader and time the first write recorded by a
    /// survivor; the median, the maximum and the elections that took more than one term
    /// (starts its own cluster; not with --target).
    Failover,
}

/// Which nodes the clients of `write` and `read` runs send their requests to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// Client `c` talks to node `c mod n`: a follower forwards each write to the leader
    /// (one more HTTP hop, and a front-door check there as well as on the leader).
    All,
    /// Every client talks to the node that leads when the run starts, as an
    /// etcd client pinned to the leader does (kvbench's default).
    Leader,
}

impl Route {
    /// The URLs the clients use: all of `urls`, or the leader's API address (as `status`
    /// names it) under the scheme of the first.
    fn urls(
        self,
        urls: &[String],
        status: &docket_api::wire::StatusView,
    ) -> anyhow::Result<Vec<String>> {
        match self {
            Route::All => Ok(urls.to_vec()),
            Route::Leader => {
                let addr = status
                    .leader_api_addr
                    .as_deref()
                    .context("--to leader: the cluster names no leader")?;
                let scheme = urls[0]
                    .split_once("://")
                    .map_or("http", |(scheme, _)| scheme);
                Ok(vec![format!("{scheme}://{addr}")])
            }
        }
    }
}

#[derive(Clone, Debug, Args)]
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
    /// Effects mode: settlements funded and paid out, one payout each (--duration-s is not
    /// used: the run ends when every payout has its outcome record).
    #[arg(long, default_value_t = 1_000,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub payouts: u64,
    /// Effects mode: the agents' `execution.jobs_inflight_max` (the agent's default is 8).
    #[arg(long, default_value_t = JOBS_INFLIGHT_MAX_DEFAULT as u64,
          value_parser = clap::value_parser!(u64).range(1..=JOBS_INFLIGHT_MAX_CEILING as u64))]
    pub jobs_inflight: u64,
    /// Grow mode: write rounds of --duration-s seconds each. Failover mode: leader kills.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub rounds: u64,
    /// Grow mode: end the rounds once the ledger holds this many entries (--rounds is then
    /// the most it runs), e.g. `--until-entries 10000000 --rounds 100 --duration-s 240`.
    #[arg(long, value_name = "ENTRIES", value_parser = clap::value_parser!(u64).range(1..))]
    pub until_entries: Option<u64>,
    /// Write and read modes: run the cluster bench starts with TLS (HTTPS API, mutual TLS between
    /// peers, a fresh CA), to compare with the same run without it.
    #[arg(long)]
    pub tls: bool,
    /// Where clients send their requests: spread over every node, or all to the leader.
    #[arg(long, value_enum, default_value_t = Route::All)]
    pub to: Route,
    /// A node configuration file (TOML, as `docket serve --config` reads) for every node of
    /// the cluster bench starts, e.g. `[storage] cache_mb = 32` to measure memory under a
    /// smaller cache. `DOCKET_*` variables do not reach those nodes; this does.
    #[arg(long, value_name = "FILE")]
    pub node_config: Option<std::path::PathBuf>,
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
    /// Failed requests by kind ([`docket_client::ClientError::kind`]: the API error code,
    /// or the transport's failure); empty when none failed.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub error_kinds: BTreeMap<String, u64>,
    pub operations_per_s: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_max: f64,
    /// True if some client ran out of pre-signed proposals before the end.
    pub pool_exhausted: bool,
    /// Effects mode only: the execution loop's figures. In that mode `duration_s` is the
    /// wall time from the first submission to the last outcome seen, `operations` the
    /// payouts whose outcome record is committed, `operations_per_s` effects per second,
    /// and `latency_ms_*` the payout submissions' request latency as clients saw it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effects: Option<EffectsReport>,
}

/// The execution loop, admitted → executed → outcome committed (`--mode effects`).
#[derive(Debug, Serialize)]
pub struct EffectsReport {
    /// Payout requests submitted.
    pub payouts: u64,
    /// Payout requests admitted (each one an effect to perform).
    pub admitted: u64,
    /// Admitted outcome records: `SETTLEMENT.PAYOUT_EXECUTED` ...
    pub executed: u64,
    /// ... and `SETTLEMENT.RAIL_ERROR`.
    pub rail_errors: u64,
    /// Admitted payouts without an outcome record when the wait ended (0 on a clean run).
    pub missing: u64,
    /// Outcome records the constitution rejected (a second report about a settled payout).
    pub rejected_outcomes: u64,
    /// Wall time from the first submission to the last outcome seen by the ledger follower.
    pub wall_s: f64,
    /// Outcomes committed per second of `wall_s`.
    pub effects_per_s: f64,
    /// Ledger time from the first admission entry to the last outcome entry, in ms.
    pub ledger_span_ms: u64,
    /// Ledger time (ms, the leader's clock) from each payout's admission entry to its
    /// outcome entry.
    pub admission_to_outcome_ms_p50: f64,
    pub admission_to_outcome_ms_p99: f64,
    pub admission_to_outcome_ms_max: f64,
    /// Distinct idempotency keys the rail saw, and the requests it received.
    pub rail_keys: u64,
    pub rail_requests: u64,
    /// The agents' `jobs_inflight_max`.
    pub jobs_inflight: u64,
}

/// A cluster of `nodes` local `docket serve` processes under `root`, started, formed and
/// converged.
async fn started_cluster(
    root: &std::path::Path,
    cluster_id: &str,
    nodes: u64,
    tls: bool,
    node_config: Option<&std::path::Path>,
) -> anyhow::Result<LocalCluster> {
    let binary = std::env::current_exe().context("locating the docket binary")?;
    let mut cluster = LocalCluster::new(binary, root, cluster_id, nodes)?;
    if let Some(path) = node_config {
        let toml = std::fs::read_to_string(path)
            .with_context(|| format!("reading --node-config {}", path.display()))?;
        cluster = cluster.with_config(&toml);
    }
    if tls {
        cluster = cluster.with_tls(docket_config::RELOAD_POLL_MS_DEFAULT)?;
    }
    eprintln!("starting a {nodes}-node cluster in {}", root.display());
    cluster.start_all().await?;
    cluster.form().await?;
    cluster.converged().await?;
    Ok(cluster)
}

/// `--mode grow` ([`grow`]).
async fn run_grow(args: BenchArgs, json: bool) -> anyhow::Result<()> {
    if args.target.is_some() {
        bail!("--mode grow starts its own cluster (it restarts and adds nodes): drop --target");
    }
    let temp;
    let root = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::Builder::new().prefix("docket-grow-").tempdir()?;
            temp.path().to_owned()
        }
    };
    let report = grow::run(&args, &root, json).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "throughput last/first round {:.2}; restart to linearizable read {:.0} ms; \
             new node caught up in {:.0} ms ({:.0} entries/s), peak rss {} MiB, disk {} MiB",
            report.throughput_last_over_first,
            report.restart_to_read_ms,
            report.catch_up_ms,
            report.catch_up_entries_per_s,
            report.catch_up_peak_rss_bytes >> 20,
            report.catch_up_disk_bytes >> 20,
        );
    }
    Ok(())
}

/// `--mode failover` ([`failover`]).
async fn run_failover(args: BenchArgs, json: bool) -> anyhow::Result<()> {
    if args.target.is_some() {
        bail!("--mode failover starts its own cluster (it kills its leaders): drop --target");
    }
    let temp;
    let root = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::Builder::new()
                .prefix("docket-failover-")
                .tempdir()?;
            temp.path().to_owned()
        }
    };
    let report = failover::run(&args, &root).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} leader kills on {} nodes: first write after the kill p50 {:.0} ms, max {:.0} ms; \
             {} election(s) took more than one term",
            report.rounds.len(),
            report.nodes,
            report.first_write_ms_p50,
            report.first_write_ms_max,
            report.multi_term_elections,
        );
    }
    Ok(())
}

fn percentile(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((sorted_us.len() as f64 - 1.0) * p).round() as usize;
    sorted_us[rank.min(sorted_us.len() - 1)] as f64 / 1000.0
}

/// Entries `--mode entries` and `--mode verified` make sure the ledger holds before reading.
pub const ENTRY_READS_LEDGER_MIN: u64 = 1_000;

/// Runs the benchmark; `json` prints the report as JSON (`--output json`).
pub async fn run(args: BenchArgs, json: bool) -> anyhow::Result<()> {
    if args.tls && !matches!(args.mode, Mode::Write | Mode::Read) {
        bail!("--tls is for --mode write or read (the TLS against plain comparison)");
    }
    if args.mode == Mode::Effects {
        return run_effects(args, json).await;
    }
    if args.mode == Mode::Grow {
        return run_grow(args, json).await;
    }
    if args.mode == Mode::Failover {
        return run_failover(args, json).await;
    }
    let temp;
    let mut cluster = None;
    if args.tls && args.target.is_some() {
        bail!("--tls starts its own cluster with TLS: drop --target");
    }
    let mut tls = None;
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
            let local = started_cluster(
                &root,
                "docket-bench",
                args.nodes,
                args.tls,
                args.node_config.as_deref(),
            )
            .await?;
            let urls = local.nodes.iter().map(|n| n.url()).collect();
            tls = local.tls().map(|tls| tls.client.clone());
            cluster = Some(local);
            urls
        }
    };
    let report = measure(&args, &urls, tls.as_ref()).await;
    if let Some(mut cluster) = cluster {
        cluster.kill_all().await;
    }
    let report = report?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{:?} x{} clients, batch {}: {:.0} ops/s over {:.1} s ({} requests, {} errors{}); latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms{}",
            report.mode, report.clients, report.batch, report.operations_per_s, report.duration_s, report.requests,
            report.errors, error_kinds(&report.error_kinds), report.latency_ms_p50, report.latency_ms_p99, report.latency_ms_max,
            if report.pool_exhausted { " (pre-signed pool ran out: raise --rate-hint)" } else { "" }
        );
    }
    Ok(())
}

/// A client of its own (its own connection pool) for `url`, over TLS when `tls` is given.
fn own_client(url: &str, tls: Option<&crate::tls::ClientTls>) -> anyhow::Result<Client> {
    Ok(match tls {
        None => Client::new(url)?,
        Some(tls) => Client::with_http(
            url,
            Duration::from_millis(crate::client::REQUEST_TIMEOUT_MS_DEFAULT),
            tls.reqwest_builder()?.build()?,
        )?,
    })
}

async fn measure(
    args: &BenchArgs,
    urls: &[String],
    tls: Option<&crate::tls::ClientTls>,
) -> anyhow::Result<Report> {
    let first = own_client(&urls[0], tls)?;
    let status = first
        .status()
        .await
        .context("reaching the target cluster")?;
    let ledger = LedgerId::new(status.cluster_id.clone())?;
    let routed = args.to.urls(urls, &status)?;
    let urls = &routed[..];
    let salt = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let total_s = args.duration_s + 1;
    let per_client = match args.mode {
        Mode::Read
        | Mode::StateVerified
        | Mode::Entries
        | Mode::Verified
        | Mode::Effects
        | Mode::Failover => 0,
        Mode::Write | Mode::Grow => ((args.rate_hint * total_s) as usize / args.clients as usize)
            .clamp(
                args.batch as usize,
                PRESIGNED_PROPOSALS_MAX / args.clients as usize,
            ),
    };
    let mut pinned = None;
    if matches!(args.mode, Mode::Read | Mode::StateVerified) {
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
        if args.mode == Mode::StateVerified {
            // The voters' keys, pinned once as a client does on first contact.
            pinned = Some(Arc::new(first.checkpoint().await?.cosigners));
        }
    }
    // Entries to read, and for `verified` a checkpoint over them, checked once.
    let mut checkpoint = None;
    if matches!(args.mode, Mode::Entries | Mode::Verified) {
        let length = first.status().await?.ledger_length;
        if length < ENTRY_READS_LEDGER_MIN {
            let seeds: Vec<SignedProposal> = (length..ENTRY_READS_LEDGER_MIN)
                .map(|i| {
                    dev::proposal(
                        &ledger,
                        "alice",
                        "SETTLEMENT.DEPOSIT_CONFIRMED",
                        &format!("bench-entries-{salt}-{i}"),
                        Value::map([("amount", Value::Int(1)), ("currency", "EUR".into())]),
                        vec![],
                        salt.wrapping_add(i),
                    )
                })
                .collect();
            for chunk in seeds.chunks(100) {
                first.submit_batch(chunk).await?;
            }
        }
        let view = first.checkpoint().await.context("a final checkpoint")?;
        let signed = docket_core::checkpoint::SignedCheckpoint::parse_note(&view.note)?;
        docket_client::verify::verify_quorum(&signed, &view.cosigners)?;
        checkpoint = Some(Arc::new(signed));
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
        let client = own_client(&urls[c % urls.len()], tls)?;
        let (mode, batch) = (args.mode, args.batch as usize);
        let checkpoint = checkpoint.clone();
        let pinned = pinned.clone();
        let mut checked: Option<(String, docket_core::checkpoint::SignedCheckpoint)> = None;
        let mut random = salt ^ (c as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        tasks.spawn(async move {
            let mut latencies_us = Vec::new();
            let (mut ops, mut errors, mut exhausted) = (0u64, 0u64, false);
            let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
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
                    Mode::StateVerified => {
                        let pinned = pinned.as_deref().expect("pinned voters");
                        match verified_state_read(&client, pinned, &mut checked).await {
                            Ok(()) => Ok(1),
                            Err(error) => {
                                eprintln!("verified state read failed: {error:#}");
                                errors += 1;
                                continue;
                            }
                        }
                    }
                    Mode::Entries | Mode::Verified => {
                        // xorshift: a random entry below the checkpoint's size.
                        random ^= random << 13;
                        random ^= random >> 7;
                        random ^= random << 17;
                        let size = checkpoint.as_ref().map_or(1, |c| c.checkpoint.size);
                        let index = random % size;
                        if mode == Mode::Entries {
                            client.ledger(index, 1).await.map(|_| 1)
                        } else {
                            let checkpoint = checkpoint.as_ref().expect("a checkpoint");
                            match docket_client::verify::entry_under(&client, checkpoint, index)
                                .await
                            {
                                Ok(_) => Ok(1),
                                Err(error) => {
                                    eprintln!("verified read of #{index} failed: {error:#}");
                                    errors += 1;
                                    continue;
                                }
                            }
                        }
                    }
                    Mode::Effects | Mode::Failover => {
                        unreachable!("effects and failover run in their own functions")
                    }
                    Mode::Write | Mode::Grow => {
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
                    Err(error) => {
                        errors += 1;
                        *kinds.entry(error.kind().to_owned()).or_default() += 1;
                    }
                }
            }
            (latencies_us, ops, errors, exhausted, kinds)
        });
    }
    let mut latencies = Vec::new();
    let (mut ops, mut errors, mut exhausted) = (0, 0, false);
    let mut error_kinds: BTreeMap<String, u64> = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (l, o, e, x, k) = joined?;
        latencies.extend(l);
        ops += o;
        errors += e;
        exhausted |= x;
        for (kind, n) in k {
            *error_kinds.entry(kind).or_default() += n;
        }
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
        error_kinds,
        operations_per_s: ops as f64 / duration_s,
        latency_ms_p50: percentile(&latencies, 0.50),
        latency_ms_p99: percentile(&latencies, 0.99),
        latency_ms_max: percentile(&latencies, 1.0),
        pool_exhausted: exhausted,
        effects: None,
    })
}

/// Failed requests by kind, for a report line: `: NO_LEADER 3, client_timeout 1` (most
/// frequent first), or nothing when none failed.
pub(crate) fn error_kinds(kinds: &BTreeMap<String, u64>) -> String {
    let mut by_count: Vec<(&String, &u64)> = kinds.iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let listed: Vec<String> = by_count.iter().map(|(k, n)| format!("{k} {n}")).collect();
    if listed.is_empty() {
        String::new()
    } else {
        format!(": {}", listed.join(", "))
    }
}

/// Settlement deposit of each effects-mode settlement, and its payout (in minor units).
const EFFECTS_DEPOSIT: i64 = 1_000;
const EFFECTS_PAYOUT: i64 = 100;
/// Proposals per funding batch (within the default `limits.batch_proposals_max`).
const EFFECTS_FUND_BATCH: usize = 500;
/// The effects run stops following the ledger when it grows by nothing for this long (the
/// payouts are all submitted, and no outcome record arrives: the execution loop stalled).
pub const EFFECTS_STALL_TIMEOUT_MS: u64 = 30_000;
/// Submissions of one payout before it counts as an error (each resend is the same signed
/// proposal, so a retry after an unknown outcome is a duplicate, not a second payout). A
/// client whose payout fails every try stops: the cluster is not taking writes.
const EFFECTS_SUBMIT_TRIES: u32 = 3;

/// The `[execution]` section of every effects-mode node: the rail, with its rate limit and
/// quota lifted to their ceilings (the defaults, 100 effects per second and 10 000 per day,
/// would measure the limits, not the loop).
fn effects_toml(root: &std::path::Path, rail: &Rail, jobs_inflight: u64) -> String {
    use docket_execution::config::{QUOTA_MAX_CEILING, RATE_PER_SECOND_CEILING};
    format!(
        "[execution]\nenabled = true\nkey_file = {key:?}\nallowed_urls = [{url:?}]\n\
         jobs_inflight_max = {jobs_inflight}\n\n\
         [execution.rail]\nurl = {url:?}\n\
         limits = {{ rate_per_second = {RATE_PER_SECOND_CEILING}, \
         quota_max = {QUOTA_MAX_CEILING} }}\n",
        key = root.join("exec.key").display().to_string(),
        url = rail.url(),
    )
}

async fn run_effects(args: BenchArgs, json: bool) -> anyhow::Result<()> {
    if let Some(target) = &args.target {
        bail!(
            "--mode effects needs its own cluster: it starts a payment rail in this process and \
             configures every node's [execution] section to pay through it, which a running \
             cluster at {target} does not do; drop --target (bench starts --nodes nodes)"
        );
    }
    let temp;
    let root = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::Builder::new().prefix("docket-bench-").tempdir()?;
            temp.path().to_owned()
        }
    };
    let rail = Rail::start().await?;
    crate::cli::write_key_file(&root.join("exec.key"), &dev::signing_key("exec"), true)?;
    let binary = std::env::current_exe().context("locating the docket binary")?;
    let mut cluster = LocalCluster::new(binary, &root, "docket-bench", args.nodes)?
        .with_config(&effects_toml(&root, &rail, args.jobs_inflight));
    eprintln!(
        "starting a {}-node cluster with execution agents in {}; rail at {}",
        args.nodes,
        root.display(),
        rail.url()
    );
    let report = async {
        cluster.start_all().await?;
        cluster.form().await?;
        cluster.converged().await?;
        let urls: Vec<String> = cluster.nodes.iter().map(|n| n.url()).collect();
        measure_effects(&args, &urls, &rail).await
    }
    .await;
    cluster.kill_all().await;
    let report = report?;
    let missing = report.effects.as_ref().map_or(0, |e| e.missing);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if let Some(e) = &report.effects {
        println!(
            "Effects x{} clients, {} nodes, jobs_inflight {}: {} payouts, {} admitted, \
             {} executed, {} rail errors, {} missing",
            report.clients,
            args.nodes,
            e.jobs_inflight,
            e.payouts,
            e.admitted,
            e.executed,
            e.rail_errors,
            e.missing
        );
        println!(
            "  {:.0} effects/s over {:.2} s (ledger span {} ms); admission to outcome \
             (ledger time) p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            e.effects_per_s,
            e.wall_s,
            e.ledger_span_ms,
            e.admission_to_outcome_ms_p50,
            e.admission_to_outcome_ms_p99,
            e.admission_to_outcome_ms_max
        );
        println!(
            "  submissions p50 {:.2} ms, p99 {:.2} ms ({} errors); rail: {} keys, {} requests",
            report.latency_ms_p50,
            report.latency_ms_p99,
            report.errors,
            e.rail_keys,
            e.rail_requests
        );
    }
    if missing > 0 {
        bail!(
            "{missing} admitted payouts got no outcome record: the ledger did not grow for \
             {EFFECTS_STALL_TIMEOUT_MS} ms, so the execution loop stalled (see the node logs{})",
            if args.dir.is_some() {
                ""
            } else {
                "; rerun with --dir to keep them"
            }
        );
    }
    Ok(())
}

/// What the ledger follower found: per reported payout, the outcome's ledger time, whether
/// it was `PAYOUT_EXECUTED`, and when the follower saw it.
#[derive(Debug, Default)]
struct Followed {
    outcomes: std::collections::BTreeMap<docket_core::ProposalId, (u64, bool, Instant)>,
    rejected: u64,
}

/// Follows the ledger from `from` until `expected` (set once every payout is submitted)
/// payouts of `ids` have an admitted outcome record, or no entry at all arrives for
/// [`EFFECTS_STALL_TIMEOUT_MS`].
async fn follow_outcomes(
    client: Client,
    from: u64,
    ids: std::collections::BTreeSet<docket_core::ProposalId>,
    expected: tokio::sync::watch::Receiver<Option<usize>>,
) -> Followed {
    use docket_core::Decision;
    let mut followed = Followed::default();
    let mut next = from;
    let mut progress = Instant::now();
    loop {
        if expected
            .borrow()
            .is_some_and(|n| followed.outcomes.len() >= n)
        {
            return followed;
        }
        if progress.elapsed() > Duration::from_millis(EFFECTS_STALL_TIMEOUT_MS) {
            return followed;
        }
        let page = match client.ledger(next, 1_000).await {
            Ok(page) => page,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let seen = Instant::now();
        if page.entries.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        progress = seen;
        for entry in &page.entries {
            next = entry.index.0 + 1;
            let Some(record) = entry.decision_record() else {
                continue;
            };
            let p = &record.proposal.proposal;
            let executed = p.action == docket_execution::outcome::PAYOUT_EXECUTED;
            if !executed && p.action != docket_execution::outcome::RAIL_ERROR {
                continue;
            }
            if record.decision != Decision::Admit {
                followed.rejected += 1;
                continue;
            }
            let reports_on = p
                .payload
                .get("reports_on")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok());
            if let Some(id) = reports_on.filter(|id| ids.contains(id)) {
                followed
                    .outcomes
                    .entry(id)
                    .or_insert((entry.time.0, executed, seen));
            }
        }
    }
}

async fn measure_effects(args: &BenchArgs, urls: &[String], rail: &Rail) -> anyhow::Result<Report> {
    use docket_core::Decision;
    let first = Client::new(&urls[0])?;
    let status = first.status().await.context("reaching the cluster")?;
    let ledger = LedgerId::new(status.cluster_id.clone())?;
    let routed = args.to.urls(urls, &status)?;
    let urls = &routed[..];
    let salt = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let n = args.payouts as usize;
    let subject = |i: usize| format!("fx-{salt}-{i}");

    eprintln!("funding {n} settlements");
    let deposits: Vec<SignedProposal> = (0..n)
        .map(|i| {
            dev::proposal(
                &ledger,
                "alice",
                "SETTLEMENT.DEPOSIT_CONFIRMED",
                &subject(i),
                Value::map([
                    ("amount", Value::Int(EFFECTS_DEPOSIT)),
                    ("currency", "EUR".into()),
                ]),
                vec![],
                salt,
            )
        })
        .collect();
    for chunk in deposits.chunks(EFFECTS_FUND_BATCH) {
        let answer = first
            .submit_batch(chunk)
            .await
            .context("funding the settlements")?;
        if let Some(bad) = answer
            .results
            .iter()
            .find(|r| r.entry.decision_record().map(|d| &d.decision) != Some(&Decision::Admit))
        {
            bail!("a funding deposit was not admitted: {}", bad.entry);
        }
    }
    let payouts: Vec<SignedProposal> = (0..n)
        .map(|i| {
            dev::proposal(
                &ledger,
                "alice",
                "SETTLEMENT.PAYOUT_REQUESTED",
                &subject(i),
                Value::map([
                    ("amount", Value::Int(EFFECTS_PAYOUT)),
                    ("beneficiary", format!("beneficiary-{i}").into()),
                ]),
                vec![],
                salt,
            )
        })
        .collect();
    let ids: std::collections::BTreeSet<_> = payouts.iter().map(SignedProposal::id).collect();
    let from = first
        .ledger(0, 1)
        .await
        .context("reading the ledger length")?
        .length;

    eprintln!(
        "submitting {n} payouts across {} clients (batch {})",
        args.clients, args.batch
    );
    let (expected_tx, expected_rx) = tokio::sync::watch::channel(None);
    let follower = tokio::spawn(follow_outcomes(
        Client::new(&urls[0])?,
        from,
        ids,
        expected_rx,
    ));
    let started = Instant::now();
    let clients = (args.clients as usize).min(n);
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let mine: Vec<SignedProposal> = payouts.iter().skip(c).step_by(clients).cloned().collect();
        let client = Client::new(&urls[c % urls.len()])?;
        let batch = args.batch as usize;
        tasks.spawn(async move {
            // (payout id, admission entry time) of each admitted payout.
            let mut admitted = Vec::new();
            let (mut latencies_us, mut errors, mut rejected) = (Vec::new(), 0u64, 0u64);
            for chunk in mine.chunks(batch) {
                let mut tries = 0;
                let entries = loop {
                    tries += 1;
                    let now = Instant::now();
                    let result = if chunk.len() == 1 {
                        client.submit(&chunk[0]).await.map(|r| vec![r.entry])
                    } else {
                        client
                            .submit_batch(chunk)
                            .await
                            .map(|r| r.results.into_iter().map(|r| r.entry).collect())
                    };
                    match result {
                        Ok(entries) => {
                            latencies_us.push(now.elapsed().as_micros() as u64);
                            break Some(entries);
                        }
                        Err(_) if tries < EFFECTS_SUBMIT_TRIES => {
                            errors += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(_) => {
                            errors += 1;
                            break None;
                        }
                    }
                };
                let Some(entries) = entries else {
                    break;
                };
                for (proposal, entry) in chunk.iter().zip(entries) {
                    match entry.decision_record().map(|d| &d.decision) {
                        Some(Decision::Admit) => admitted.push((proposal.id(), entry.time.0)),
                        _ => rejected += 1,
                    }
                }
            }
            (admitted, latencies_us, errors, rejected)
        });
    }
    let mut admitted: std::collections::BTreeMap<docket_core::ProposalId, u64> =
        std::collections::BTreeMap::new();
    let (mut latencies, mut errors, mut rejected) = (Vec::new(), 0, 0);
    while let Some(joined) = tasks.join_next().await {
        let (a, l, e, r) = joined?;
        admitted.extend(a);
        latencies.extend(l);
        errors += e;
        rejected += r;
    }
    if rejected > 0 {
        eprintln!("{rejected} payout requests were not admitted");
    }
    let _ = expected_tx.send(Some(admitted.len()));
    let followed = follower.await?;
    if admitted.is_empty() {
        bail!("no payout was admitted ({errors} submission errors)");
    }

    let mut loop_ms: Vec<u64> = Vec::new();
    let (mut executed, mut rail_errors) = (0u64, 0u64);
    let mut last_seen = started;
    let mut last_time = 0u64;
    let first_admission = admitted.values().copied().min().unwrap_or(0);
    for (id, admitted_at) in &admitted {
        if let Some((time, was_executed, seen)) = followed.outcomes.get(id) {
            loop_ms.push(time.saturating_sub(*admitted_at));
            if *was_executed {
                executed += 1;
            } else {
                rail_errors += 1;
            }
            last_seen = last_seen.max(*seen);
            last_time = last_time.max(*time);
        }
    }
    let reported = loop_ms.len() as u64;
    // Percentiles take microseconds; ledger times are whole milliseconds.
    let mut loop_us: Vec<u64> = loop_ms.iter().map(|ms| ms * 1_000).collect();
    loop_us.sort_unstable();
    latencies.sort_unstable();
    let wall_s = last_seen.duration_since(started).as_secs_f64();
    let effects_per_s = if wall_s > 0.0 {
        reported as f64 / wall_s
    } else {
        0.0
    };
    let payouts_on_rail = rail.payouts();
    Ok(Report {
        mode: Mode::Effects,
        nodes: Some(args.nodes),
        clients: clients as u64,
        batch: args.batch,
        duration_s: wall_s,
        requests: latencies.len() as u64,
        operations: reported,
        errors,
        error_kinds: BTreeMap::new(),
        operations_per_s: effects_per_s,
        latency_ms_p50: percentile(&latencies, 0.50),
        latency_ms_p99: percentile(&latencies, 0.99),
        latency_ms_max: percentile(&latencies, 1.0),
        pool_exhausted: false,
        effects: Some(EffectsReport {
            payouts: n as u64,
            admitted: admitted.len() as u64,
            executed,
            rail_errors,
            missing: admitted.len() as u64 - reported,
            rejected_outcomes: followed.rejected,
            wall_s,
            effects_per_s,
            ledger_span_ms: last_time.saturating_sub(first_admission),
            admission_to_outcome_ms_p50: percentile(&loop_us, 0.50),
            admission_to_outcome_ms_p99: percentile(&loop_us, 0.99),
            admission_to_outcome_ms_max: percentile(&loop_us, 1.0),
            rail_keys: payouts_on_rail.len() as u64,
            rail_requests: rail.requests(),
            jobs_inflight: args.jobs_inflight,
        }),
    })
}

/// One verified read of the subject `read` mode reads (`--mode state-verified`): the proof
/// checked every time, the checkpoint's cosignatures against `pinned` only when its note
/// differs from the last one checked (as a client that keeps its last verified checkpoint).
async fn verified_state_read(
    client: &Client,
    pinned: &[docket_api::wire::Cosigner],
    checked: &mut Option<(String, docket_core::checkpoint::SignedCheckpoint)>,
) -> anyhow::Result<()> {
    let params = [
        ("domain", "settlement".to_owned()),
        ("subject", "bench-read".to_owned()),
    ];
    let view = client.state_proof(&params).await?;
    if checked
        .as_ref()
        .is_none_or(|(note, _)| *note != view.checkpoint)
    {
        let signed = docket_core::checkpoint::SignedCheckpoint::parse_note(&view.checkpoint)?;
        docket_client::verify::verify_quorum(&signed, pinned)?;
        *checked = Some((view.checkpoint.clone(), signed));
    }
    let (_, signed) = checked.as_ref().expect("checked above");
    let key = docket_core::rows::subject_key("settlement", "bench-read");
    let (value, _) = docket_client::state_proof::check_row_proof(&view, signed, &key)?;
    anyhow::ensure!(value.is_some(), "the subject read has no state");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_list_the_most_frequent_first() {
        assert_eq!(error_kinds(&BTreeMap::new()), "");
        let kinds = BTreeMap::from([
            ("client_timeout".to_owned(), 1),
            ("NO_LEADER".to_owned(), 3),
            ("TIMEOUT".to_owned(), 3),
        ]);
        assert_eq!(
            error_kinds(&kinds),
            ": NO_LEADER 3, TIMEOUT 3, client_timeout 1"
        );
    }
}
