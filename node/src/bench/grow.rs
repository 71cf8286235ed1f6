//! `docket bench --mode grow`: does anything cost more as the ledger grows?
//!
//! Starts its own cluster, writes to it in `--rounds` rounds of `--duration-s` seconds each
//! (the write workload of `--mode write`, batches welcome for the fill), and after every
//! round prints the ledger length, the round's throughput and p99, each node's resident
//! memory (with the store's block cache and memtables, from its `/metrics`) and disk
//! bytes, and the median time of `GET /v1/status` at the leader. Then it
//! measures recovery at that size: a follower is killed (SIGKILL) and restarted, timed until
//! it serves a linearizable read; a follower is taken down for ten seconds of writes and
//! restarted, timed until it holds what it missed (and whether it was sent a snapshot or
//! the log: `raft.log_keep_mb`); and a fresh node is added, timed until it holds the same
//! ledger and state hash as the leader, with its peak resident memory and its disk bytes
//! (then it is removed, its data deleted); and a second fresh node is killed a few seconds into its snapshot install and started again, timed until
//! it answers and until it holds the leader's ledger. Flat figures from the first round
//! to the last are the goal (DESIGN §11).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use docket_core::{dev, LedgerId, Value};
use serde::Serialize;

use super::{measure, BenchArgs, Report};
use crate::client::Client;
use crate::local_cluster::LocalCluster;
use crate::wire::Consistency;

/// `GET /v1/status` calls timed per round; the median is reported.
const STATUS_SAMPLES: usize = 21;

/// How long a follower is down while the others take writes (at most one round): a
/// restart or an upgrade, not a lost machine.
const OUTAGE_S: u64 = 10;

/// Longest wait for a restarted node's first linearizable read, or a new node's catch-up.
const RECOVERY_TIMEOUT_MS: u64 = 600_000;

/// How long into its snapshot install (its log's "installing snapshot": the whole
/// snapshot received, its verification and replay begun) a second fresh node is
/// killed: deep enough that, at a few hundred thousand entries or more, much of the
/// ledger is written when the kill lands.
const INSTALL_KILL_AFTER_MS: u64 = 3_000;

/// One round's figures.
#[derive(Debug, Serialize)]
pub struct Round {
    pub round: u64,
    pub ledger_length: u64,
    pub operations_per_s: f64,
    pub latency_ms_p99: f64,
    pub errors: u64,
    /// Failed requests by kind (the API error code, or the transport's failure).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub error_kinds: std::collections::BTreeMap<String, u64>,
    /// Median of [`STATUS_SAMPLES`] calls at the leader.
    pub status_ms_median: f64,
    /// Per node, in node order.
    pub rss_bytes: Vec<u64>,
    /// Per node: the parts of `rss_bytes` the store accounts for, from each node's
    /// `/metrics` (fjall's block cache, memtables and pinned index and filter blocks; 0
    /// where a node exports none).
    pub cache_bytes: Vec<u64>,
    pub memtable_bytes: Vec<u64>,
    pub pinned_bytes: Vec<u64>,
    pub disk_bytes: Vec<u64>,
}

/// The whole run.
#[derive(Debug, Serialize)]
pub struct GrowReport {
    pub nodes: u64,
    pub clients: u64,
    pub batch: u64,
    pub rounds: Vec<Round>,
    /// Last round's throughput over the first's.
    pub throughput_last_over_first: f64,
    /// A follower killed and restarted: from its start until a linearizable read succeeds.
    pub restart_to_read_ms: f64,
    /// A follower down while the others take [`OUTAGE_S`] seconds of writes, restarted.
    pub outage: Outage,
    /// A fresh node added: from `member add` until its ledger and state hash equal the
    /// leader's.
    pub catch_up_ms: f64,
    pub catch_up_entries_per_s: f64,
    /// The new node's peak resident memory during catch-up (VmHWM).
    pub catch_up_peak_rss_bytes: u64,
    /// The new node's disk bytes once caught up: a store written by a snapshot install,
    /// with no history of overwrites and deletions to compact.
    pub catch_up_disk_bytes: u64,
    /// A second fresh node, killed while it installs its snapshot and started again
    /// (`None`: it was sent the log, not a snapshot).
    pub interrupted_install: Option<InterruptedInstall>,
}

/// A fresh node killed (SIGKILL) [`INSTALL_KILL_AFTER_MS`] into its snapshot install,
/// then started again.
#[derive(Debug, Serialize)]
pub struct InterruptedInstall {
    /// Whether the kill fell inside the install (`false`: the install had finished, and
    /// the figures are of an ordinary restart).
    pub interrupted: bool,
    /// From its start until it answers `GET /v1/status`: its store opened, with what the
    /// interrupted install left.
    pub reopen_ms: f64,
    /// From its start until its ledger and state hash equal the leader's.
    pub catch_up_ms: f64,
}

/// A `/proc/<pid>/status` field in bytes (`VmRSS`, `VmHWM`); 0 where unavailable.
fn proc_status_bytes(pid: Option<u32>, field: &str) -> u64 {
    pid.and_then(|pid| crate::telemetry::proc_status_bytes(&pid.to_string(), field))
        .unwrap_or(0)
}

/// Bytes the files under `dir` take on disk (allocated blocks, as `du` counts them; 0 for
/// what cannot be read). Not their lengths: fjall preallocates each journal file to 64 MiB
/// as a sparse file, whose unwritten part takes no space.
fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => disk_bytes(&entry.path()),
            Ok(meta) => meta.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

async fn status_ms_median(cluster: &LocalCluster, leader: u64) -> anyhow::Result<f64> {
    let client = cluster.node(leader).client();
    let mut samples = Vec::with_capacity(STATUS_SAMPLES);
    for _ in 0..STATUS_SAMPLES {
        let start = Instant::now();
        client
            .status()
            .await
            .context("GET /v1/status at the leader")?;
        samples.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

/// An unlabelled gauge's value in a Prometheus text scrape (`name value` on a line of its
/// own), or `None` when the scrape has no such line.
fn gauge(scrape: &str, name: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// Each node's block cache, memtable and pinned block bytes, in node order (0 for a node
/// whose `/metrics` does not answer or does not show them: sled keeps no such counts).
async fn store_memory(cluster: &LocalCluster) -> [Vec<u64>; 3] {
    use docket_service::telemetry::{
        STORAGE_CACHE_BYTES, STORAGE_PINNED_BYTES, STORAGE_WRITE_BUFFER_BYTES,
    };
    let names = [
        STORAGE_CACHE_BYTES,
        STORAGE_WRITE_BUFFER_BYTES,
        STORAGE_PINNED_BYTES,
    ];
    let mut memory: [Vec<u64>; 3] = Default::default();
    for node in &cluster.nodes {
        let scrape = node.client().metrics().await.unwrap_or_default();
        for (values, name) in memory.iter_mut().zip(names) {
            values.push(gauge(&scrape, name).map_or(0, |v| v as u64));
        }
    }
    memory
}

/// Polls `what` until it returns true, or fails after [`RECOVERY_TIMEOUT_MS`].
async fn until<F, Fut>(what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_millis(RECOVERY_TIMEOUT_MS);
    while !check().await {
        if Instant::now() > deadline {
            bail!("{what}: not within {RECOVERY_TIMEOUT_MS} ms");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// A follower that was down while the cluster took writes, brought back.
#[derive(Debug, Serialize)]
pub struct Outage {
    /// Ledger entries written while it was down.
    pub entries: u64,
    /// From its restart until its ledger is as long as the leader's was when it came back.
    pub catch_up_ms: f64,
    /// Whether it was sent a snapshot (the whole ledger) rather than the log it missed:
    /// what `raft.log_keep_mb` decides. Read from its log ("installed snapshot").
    pub by_snapshot: bool,
}

/// Kills a follower, writes [`OUTAGE_S`] seconds (at most `--duration-s`) to the other
/// nodes, restarts it and times its catch-up.
async fn outage(args: &BenchArgs, cluster: &mut LocalCluster) -> anyhow::Result<Outage> {
    let leader = cluster.leader().await?;
    let follower = cluster
        .other_than(leader)
        .context("--mode grow needs at least 2 nodes to take one down")?;
    let leader_client = cluster.node(leader).client();
    cluster.kill(follower).await?;
    let before = leader_client.status().await?.ledger_length;
    let live: Vec<String> = cluster
        .nodes
        .iter()
        .filter(|n| n.id != follower)
        .map(|n| n.url())
        .collect();
    let load = BenchArgs {
        duration_s: args.duration_s.min(OUTAGE_S),
        ..args.clone()
    };
    measure(&load, &live, None).await?;
    let target = leader_client.status().await?.ledger_length;
    let log_path = cluster.node(follower).log_path();
    let log_before = std::fs::metadata(&log_path).map_or(0, |m| m.len()) as usize;
    let restarted = Instant::now();
    cluster.start(follower).await?;
    let client = cluster.node(follower).client();
    until("the restarted node's catch-up after an outage", || async {
        client
            .status()
            .await
            .is_ok_and(|s| s.ledger_length >= target)
    })
    .await?;
    let catch_up_ms = restarted.elapsed().as_secs_f64() * 1000.0;
    let log = std::fs::read(&log_path).unwrap_or_default();
    let since = log.get(log_before..).unwrap_or_default();
    Ok(Outage {
        entries: target - before,
        catch_up_ms,
        by_snapshot: String::from_utf8_lossy(since).contains("installed snapshot"),
    })
}

/// Runs the growth benchmark on a cluster it starts under `root`.
pub async fn run(args: &BenchArgs, root: &Path, json: bool) -> anyhow::Result<GrowReport> {
    let mut cluster = super::started_cluster(
        root,
        "docket-grow",
        args.nodes,
        false,
        args.node_config.as_deref(),
    )
    .await?;
    let result = rounds_and_recovery(args, &mut cluster, json).await;
    cluster.kill_all().await;
    result
}

async fn rounds_and_recovery(
    args: &BenchArgs,
    cluster: &mut LocalCluster,
    json: bool,
) -> anyhow::Result<GrowReport> {
    let urls: Vec<String> = cluster.nodes.iter().map(|n| n.url()).collect();
    let status = cluster.nodes[0].client().status().await?;
    let ledger = LedgerId::new(status.cluster_id)?;
    // A subject the restarted node reads back.
    let probe = dev::proposal(
        &ledger,
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "grow-probe",
        Value::map([("amount", Value::Int(1)), ("currency", "EUR".into())]),
        vec![],
        0,
    );
    cluster.nodes[0].client().submit(&probe).await?;

    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        let report: Report = measure(args, &urls, None).await?;
        let leader = cluster.leader().await?;
        let ledger_length = cluster.node(leader).client().status().await?.ledger_length;
        let [cache_bytes, memtable_bytes, pinned_bytes] = store_memory(cluster).await;
        let figures = Round {
            round,
            ledger_length,
            operations_per_s: report.operations_per_s,
            latency_ms_p99: report.latency_ms_p99,
            errors: report.errors,
            error_kinds: report.error_kinds.clone(),
            status_ms_median: status_ms_median(cluster, leader).await?,
            rss_bytes: cluster
                .nodes
                .iter()
                .map(|n| proc_status_bytes(n.pid(), "VmRSS"))
                .collect(),
            cache_bytes,
            memtable_bytes,
            pinned_bytes,
            disk_bytes: cluster
                .nodes
                .iter()
                .map(|n| disk_bytes(&n.data_dir))
                .collect(),
        };
        if !json {
            let mib = |bytes: &Vec<u64>| -> Vec<u64> { bytes.iter().map(|b| b >> 20).collect() };
            println!(
                "round {round}: ledger {} entries; {:.0} proposals/s, p99 {:.2} ms, {} errors{}; \
                 status {:.2} ms; rss MiB {:?} (block cache {:?}, memtables {:?}, pinned \
                 {:?}); disk MiB {:?}",
                figures.ledger_length,
                figures.operations_per_s,
                figures.latency_ms_p99,
                figures.errors,
                super::error_kinds(&figures.error_kinds),
                figures.status_ms_median,
                mib(&figures.rss_bytes),
                mib(&figures.cache_bytes),
                mib(&figures.memtable_bytes),
                mib(&figures.pinned_bytes),
                mib(&figures.disk_bytes),
            );
        }
        let reached = args
            .until_entries
            .is_some_and(|until| figures.ledger_length >= until);
        rounds.push(figures);
        if reached {
            break;
        }
    }

    // Restart a follower; time until it serves a linearizable read.
    let leader = cluster.leader().await?;
    let follower = cluster
        .other_than(leader)
        .context("--mode grow needs at least 2 nodes to restart a follower")?;
    cluster.kill(follower).await?;
    let restarted = Instant::now();
    cluster.start(follower).await?;
    let client = cluster.node(follower).client();
    until("the restarted node's first linearizable read", || async {
        client
            .state("settlement", "grow-probe", Consistency::Linearizable)
            .await
            .is_ok()
    })
    .await?;
    let restart_to_read_ms = restarted.elapsed().as_secs_f64() * 1000.0;

    let outage = outage(args, cluster).await?;
    if !json {
        println!(
            "follower down {} s: missed {} entries, back in {:.0} ms ({:.0} entries/s), \
             by {}",
            args.duration_s.min(OUTAGE_S),
            outage.entries,
            outage.catch_up_ms,
            outage.entries as f64 / (outage.catch_up_ms / 1000.0),
            if outage.by_snapshot {
                "a snapshot of the whole ledger"
            } else {
                "the log"
            },
        );
    }

    // Add a fresh node; time until it has the leader's ledger and state hash.
    let id = cluster.add_slot()?;
    cluster.start(id).await?;
    let added = Instant::now();
    add_member(cluster, id).await?.await?;
    let caught_up_length = caught_up(cluster, id).await?;
    let catch_up_ms = added.elapsed().as_secs_f64() * 1000.0;
    let catch_up_peak_rss_bytes = proc_status_bytes(cluster.node(id).pid(), "VmHWM");
    let catch_up_disk_bytes = disk_bytes(&cluster.node(id).data_dir);
    // Its figures are taken: remove it and return its disk before the next fresh node, so
    // the run needs room for four copies of the ledger, not five.
    retire(cluster, id).await?;

    let interrupted_install = interrupted_install(cluster).await?;
    if !json {
        match &interrupted_install {
            Some(killed) => println!(
                "fresh node killed {INSTALL_KILL_AFTER_MS} ms into its snapshot install{}: \
                 reopened in {:.0} ms, caught up {:.0} ms after its restart",
                if killed.interrupted {
                    ""
                } else {
                    " (the install had finished)"
                },
                killed.reopen_ms,
                killed.catch_up_ms,
            ),
            None => println!("second fresh node: caught up from the log, no install to interrupt"),
        }
    }

    let first = rounds.first().map_or(0.0, |r| r.operations_per_s);
    let last = rounds.last().map_or(0.0, |r| r.operations_per_s);
    Ok(GrowReport {
        nodes: args.nodes,
        clients: args.clients,
        batch: args.batch,
        throughput_last_over_first: if first > 0.0 { last / first } else { 0.0 },
        restart_to_read_ms,
        outage,
        catch_up_ms,
        catch_up_entries_per_s: caught_up_length as f64 / (catch_up_ms / 1000.0),
        catch_up_peak_rss_bytes,
        catch_up_disk_bytes,
        interrupted_install,
        rounds,
    })
}

/// Adds started node `id` as a voter, through the leader. `member add` answers once the
/// node has caught up and is promoted, or with TIMEOUT while it is still a catching-up
/// learner; either way the caller times the catch-up.
async fn add_member(
    cluster: &LocalCluster,
    id: u64,
) -> anyhow::Result<impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static> {
    let request = cluster.node(id).add_request();
    let client = cluster
        .node(cluster.leader().await?)
        .client()
        .clone_with_timeout(Duration::from_millis(RECOVERY_TIMEOUT_MS));
    Ok(async move {
        match client
            .add_member_as(request, &crate::local_cluster::operator_key())
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if error.code() == Some("TIMEOUT") => {
                eprintln!("member add: {error} (still timing its catch-up as a learner)");
                Ok(())
            }
            Err(error) => Err(error).context(format!("adding fresh node {id}")),
        }
    })
}

/// Removes node `id` from the membership (through the leader, signed by the operator
/// key), kills it and deletes its data directory.
async fn retire(cluster: &mut LocalCluster, id: u64) -> anyhow::Result<()> {
    cluster
        .node(cluster.leader().await?)
        .client()
        .remove_member_as(id, &crate::local_cluster::operator_key())
        .await
        .with_context(|| format!("removing node {id}"))?;
    cluster.kill(id).await?;
    let dir = &cluster.node(id).data_dir;
    std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    Ok(())
}

/// The leader's ledger length if `node` holds the same ledger length and state hash.
async fn holds_the_leaders(leader: &Client, node: &Client) -> Option<u64> {
    let (lead, mine) = (leader.status().await.ok()?, node.status().await.ok()?);
    (mine.ledger_length == lead.ledger_length && mine.state_hash == lead.state_hash)
        .then_some(lead.ledger_length)
}

/// Waits until node `id` has the leader's ledger and state hash; returns the length.
async fn caught_up(cluster: &LocalCluster, id: u64) -> anyhow::Result<u64> {
    let leader_client = cluster.node(cluster.leader().await?).client();
    let new_client = cluster.node(id).client();
    let deadline = Instant::now() + Duration::from_millis(RECOVERY_TIMEOUT_MS);
    loop {
        if let Some(length) = holds_the_leaders(&leader_client, &new_client).await {
            return Ok(length);
        }
        if Instant::now() > deadline {
            bail!("node {id}'s catch-up: not within {RECOVERY_TIMEOUT_MS} ms");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Adds another fresh node, kills it [`INSTALL_KILL_AFTER_MS`] into its snapshot install
/// (read from its log), starts it again and times its reopening and its catch-up.
/// `None` when the node caught up from the log, with no install to interrupt.
async fn interrupted_install(
    cluster: &mut LocalCluster,
) -> anyhow::Result<Option<InterruptedInstall>> {
    let id = cluster.add_slot()?;
    cluster.start(id).await?;
    let log_path = cluster.node(id).log_path();
    let log_has = |text: &str| {
        String::from_utf8_lossy(&std::fs::read(&log_path).unwrap_or_default()).contains(text)
    };
    // `member add` waits for the catch-up, so it runs beside the kill and the restart.
    let adding = tokio::spawn(add_member(cluster, id).await?);
    let leader_client = cluster.node(cluster.leader().await?).client();
    let new_client = cluster.node(id).client();
    let deadline = Instant::now() + Duration::from_millis(RECOVERY_TIMEOUT_MS);
    loop {
        if log_has("installing snapshot") {
            break;
        }
        if holds_the_leaders(&leader_client, &new_client)
            .await
            .is_some()
        {
            // Caught up from the log: there was no install to interrupt.
            adding
                .await
                .with_context(|| format!("adding fresh node {id}"))??;
            return Ok(None);
        }
        if Instant::now() > deadline {
            bail!("node {id}'s snapshot install: not begun within {RECOVERY_TIMEOUT_MS} ms");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(INSTALL_KILL_AFTER_MS)).await;
    let interrupted = !log_has("installed snapshot");
    cluster.kill(id).await?;
    let restarted = Instant::now();
    cluster.start(id).await?;
    let reopen_ms = restarted.elapsed().as_secs_f64() * 1000.0;
    caught_up(cluster, id).await?;
    let catch_up_ms = restarted.elapsed().as_secs_f64() * 1000.0;
    adding
        .await
        .with_context(|| format!("adding fresh node {id}"))??;
    Ok(Some(InterruptedInstall {
        interrupted,
        reopen_ms,
        catch_up_ms,
    }))
}

#[cfg(test)]
mod tests {
    use super::gauge;

    #[test]
    fn a_gauge_is_read_from_its_own_line_only() {
        let scrape = "# HELP docket_storage_cache_bytes help\n\
                      # TYPE docket_storage_cache_bytes gauge\n\
                      docket_storage_cache_bytes_other 7\n\
                      docket_storage_cache_bytes 100643365\n\
                      docket_storage_write_buffer_bytes{keyspace=\"sm\"} 3\n";
        assert_eq!(
            gauge(scrape, "docket_storage_cache_bytes"),
            Some(100_643_365.0)
        );
        // A labelled series is not the unlabelled gauge, and an absent one is None.
        assert_eq!(gauge(scrape, "docket_storage_write_buffer_bytes"), None);
        assert_eq!(gauge(scrape, "docket_missing"), None);
    }
}
