//! Shared helpers of the process-level integration tests: a formed cluster of real `docket
//! serve` children in a temporary directory, signed proposals, bounded polling, and reads of
//! one node's own (local) state.
//!
//! Every wait here has a deadline; every cluster dies with its `LocalCluster` (Drop kills
//! the children) and its data with the `TempDir`.

// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use docket_core::{dev, LedgerEntry, LedgerId, ProposalId, SignedProposal, StateHash, Value};
use docket_node::client::{Client, ClientError};
use docket_node::local_cluster::LocalCluster;
use docket_node::wire::{ErrorBody, ProposalView, StatusView};

/// Deadline of one HTTP request made by a test client. Far above a loopback write on a
/// loaded 2-core machine; short enough that a hung node fails the test quickly.
pub const REQUEST_TIMEOUT_MS: u64 = 5_000;

/// Deadline of a test's own waits (convergence to an expected length, progress).
pub const WAIT_TIMEOUT_MS: u64 = 30_000;

/// The `docket` binary cargo built for these tests.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_docket"))
}

/// One line per test phase, saying what happens and why, with the time since `start`.
pub fn phase(start: Instant, message: &str) {
    eprintln!("[{:>6.2} s] {message}", start.elapsed().as_secs_f64());
}

/// `KEEP_TEST_DIRS=1` keeps each cluster's directory (data and node logs) after the
/// test, to read what a failed run's nodes logged. (Not `DOCKET_*`: a `docket` the tests
/// run directly inherits their environment, and refuses a `DOCKET_*` variable it does
/// not know.)
fn keep_dirs() -> bool {
    std::env::var_os("KEEP_TEST_DIRS").is_some()
}

/// A cluster of `count` nodes in its own temporary directory, started, formed (node 1
/// initialized, the others added as voters) and converged. The `TempDir` must outlive the
/// cluster.
pub async fn formed_cluster(
    cluster_id: &str,
    count: u64,
    env: &[(&str, &str)],
) -> (tempfile::TempDir, LocalCluster) {
    let dir = tempfile::Builder::new()
        .prefix(&format!("docket-{cluster_id}-"))
        .disable_cleanup(keep_dirs())
        .tempdir()
        .expect("temporary directory");
    let mut cluster = LocalCluster::new(binary(), dir.path(), cluster_id, count)
        .expect("prepare cluster")
        .with_env(env);
    cluster.start_all().await.expect("start nodes");
    cluster.form().await.expect("form cluster");
    cluster.leader().await.expect("leader elected");
    cluster.converged().await.expect("converged after forming");
    (dir, cluster)
}

/// Like [`formed_cluster`], with a configuration file for every node: `config` gets the
/// cluster's root directory (to place key files, sandboxes) and answers the TOML.
pub async fn formed_cluster_with_config(
    cluster_id: &str,
    count: u64,
    config: impl FnOnce(&Path) -> String,
) -> (tempfile::TempDir, LocalCluster) {
    let dir = tempfile::Builder::new()
        .prefix(&format!("docket-{cluster_id}-"))
        .disable_cleanup(keep_dirs())
        .tempdir()
        .expect("temporary directory");
    let toml = config(dir.path());
    let mut cluster = LocalCluster::new(binary(), dir.path(), cluster_id, count)
        .expect("prepare cluster")
        .with_config(&toml);
    cluster.start_all().await.expect("start nodes");
    cluster.form().await.expect("form cluster");
    cluster.leader().await.expect("leader elected");
    cluster.converged().await.expect("converged after forming");
    (dir, cluster)
}

/// Like [`formed_cluster`], with TLS on every node under a fresh cluster CA (see
/// `LocalCluster::with_tls`), nodes polling their certificate files every
/// `reload_poll_ms`, and refusing API clients without a certificate when
/// `require_client_cert`.
pub async fn formed_tls_cluster(
    cluster_id: &str,
    count: u64,
    reload_poll_ms: u64,
    require_client_cert: bool,
) -> (tempfile::TempDir, LocalCluster) {
    let dir = tempfile::Builder::new()
        .prefix(&format!("docket-{cluster_id}-"))
        .disable_cleanup(keep_dirs())
        .tempdir()
        .expect("temporary directory");
    let mut cluster = LocalCluster::new(binary(), dir.path(), cluster_id, count)
        .expect("prepare cluster")
        .with_tls(reload_poll_ms)
        .expect("cluster certificates");
    if require_client_cert {
        cluster = cluster.requiring_client_certs();
    }
    cluster.start_all().await.expect("start nodes");
    cluster.form().await.expect("form cluster");
    cluster.leader().await.expect("leader elected");
    cluster.converged().await.expect("converged after forming");
    (dir, cluster)
}

/// Every entry of the ledger, read in pages with linearizable reads at `client`'s node.
pub async fn read_ledger(client: &Client) -> Vec<LedgerEntry> {
    let mut entries = Vec::new();
    loop {
        let page = client
            .ledger(entries.len() as u64, 1_000)
            .await
            .unwrap_or_else(|e| panic!("reading the ledger from {}: {e}", entries.len()));
        let done = page.next.is_none() || page.entries.is_empty();
        for entry in page.entries {
            assert_eq!(
                entry.index.0,
                entries.len() as u64,
                "ledger pages come in order"
            );
            entries.push(entry);
        }
        if done {
            return entries;
        }
    }
}

pub fn client(url: &str) -> Client {
    Client::with_timeout(url, Duration::from_millis(REQUEST_TIMEOUT_MS)).expect("client")
}

/// Nonces unique within a test process, so every proposal built here has its own id.
static NONCE: AtomicU64 = AtomicU64::new(1);

/// A settlement deposit on `subject` by a development principal: admitted for `alice` or
/// `bob` (treasurers) on a fresh subject, rejected (unauthorized) for `mallory`.
pub fn deposit(ledger: &LedgerId, author: &str, subject: &str, amount: i64) -> SignedProposal {
    dev::proposal(
        ledger,
        author,
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        subject,
        Value::map([("amount", Value::Int(amount)), ("currency", "EUR".into())]),
        vec![],
        NONCE.fetch_add(1, Ordering::Relaxed),
    )
}

pub fn ledger_id(cluster: &LocalCluster) -> LedgerId {
    LedgerId::new(cluster.cluster_id.clone()).expect("cluster id is a valid ledger id")
}

/// The status of node `id`, or a panic naming it.
pub async fn status(cluster: &LocalCluster, id: u64) -> StatusView {
    client(&cluster.node(id).url())
        .status()
        .await
        .unwrap_or_else(|e| panic!("status of node {id}: {e}"))
}

/// `(ledger_length, state_hash)` of every running node, by node id.
pub fn positions(statuses: &[StatusView]) -> Vec<(u64, u64, Option<StateHash>)> {
    let mut out: Vec<_> = statuses
        .iter()
        .map(|s| (s.node_id, s.ledger_length, s.state_hash))
        .collect();
    out.sort_by_key(|p| p.0);
    out
}

/// Polls `check` every 50 ms until it yields a value or `timeout_ms` passes (then panics
/// with `what` and the last observation).
pub async fn wait_for<T, F, Fut>(what: &str, timeout_ms: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) => {
                if Instant::now() > deadline {
                    panic!("timed out after {timeout_ms} ms waiting for {what}; last: {last}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every running node reports exactly `length` entries and one state hash, and
/// returns their statuses.
pub async fn converged_at(cluster: &LocalCluster, length: u64) -> Vec<StatusView> {
    let running = cluster.nodes.iter().filter(|n| n.is_running()).count();
    wait_for(
        &format!("every node at ledger length {length}"),
        WAIT_TIMEOUT_MS,
        || async {
            let statuses = cluster.statuses().await;
            let agree = statuses.len() == running
                && statuses
                    .iter()
                    .all(|s| s.ledger_length == length && s.state_hash == statuses[0].state_hash);
            if agree {
                Ok(statuses)
            } else {
                Err(format!("{:?}", positions(&statuses)))
            }
        },
    )
    .await
}

/// `GET /v1/proposals/{id}?consistency=local` at one node: what that node itself holds,
/// without a read barrier or forwarding. `Ok(None)` is a 404.
pub async fn local_proposal(
    http: &reqwest::Client,
    url: &str,
    id: ProposalId,
) -> Result<Option<ProposalView>, String> {
    let response = http
        .get(format!(
            "{url}/v1/proposals/{}?consistency=local",
            id.to_hex()
        ))
        .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
        .send()
        .await
        .map_err(|e| format!("GET proposal {} at {url}: {e}", id.short()))?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(|e| e.to_string())?;
    match status.as_u16() {
        200 => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("proposal view: {e}")),
        404 => Ok(None),
        other => Err(format!(
            "GET proposal {} at {url}: HTTP {other}: {}",
            id.short(),
            String::from_utf8_lossy(&bytes)
        )),
    }
}

/// Checks that every node holds every acknowledged proposal with the entry it was
/// acknowledged with (same index, same hash: the same decision). Reads run 16 at a time.
pub async fn assert_all_present(cluster: &LocalCluster, acked: &[(ProposalId, LedgerEntry)]) {
    use futures::StreamExt;
    let http = cluster
        .tls()
        .map(|tls| tls.http.clone())
        .unwrap_or_default();
    let urls: Vec<(u64, String)> = cluster
        .nodes
        .iter()
        .filter(|n| n.is_running())
        .map(|n| (n.id, n.url()))
        .collect();
    let checks = urls.iter().flat_map(|(node, url)| {
        let http = &http;
        acked.iter().map(move |(id, entry)| async move {
            let view = local_proposal(http, url, *id)
                .await
                .unwrap_or_else(|e| panic!("node {node}: {e}"))
                .unwrap_or_else(|| {
                    panic!(
                        "node {node} lost acknowledged proposal {} (entry {})",
                        id.short(),
                        entry.index
                    )
                });
            let last = view
                .entries
                .last()
                .unwrap_or_else(|| panic!("node {node}: proposal {} has no entries", id.short()));
            assert_eq!(
                (last.index, last.hash),
                (entry.index, entry.hash),
                "node {node}: proposal {} is recorded differently from its acknowledgement",
                id.short()
            );
        })
    });
    futures::stream::iter(checks)
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
}

/// The API error of a failed client call, or a panic saying what was expected instead.
pub fn api_error<T: std::fmt::Debug>(
    result: Result<T, ClientError>,
    expected: &str,
) -> (u16, ErrorBody) {
    match result {
        Err(ClientError::Api { status, body }) => (status, body),
        other => panic!("expected {expected}, got {other:?}"),
    }
}

/// Runs the `docket` binary with `args`; answers (success, stdout, stderr).
pub async fn docket(args: &[&str]) -> (bool, String, String) {
    docket_env(args, &[]).await
}

/// [`docket`] with extra environment variables.
pub async fn docket_env(args: &[&str], env: &[(&str, &Path)]) -> (bool, String, String) {
    let output = tokio::process::Command::new(binary())
        .args(args)
        .envs(env.iter().map(|(name, value)| (*name, *value)))
        .output()
        .await
        .expect("run docket");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A stopped node's store as a raw [`docket_raft::Disk`], on whichever engine wrote it (its
/// `ENGINE` marker): for tests that edit a node's data behind its back.
pub fn open_raw_disk(data_dir: &Path) -> Box<dyn docket_raft::Disk> {
    use docket_raft::disk::{FjallDisk, SledDisk};
    use docket_raft::{StorageEngine, StoreOptions};
    let options = StoreOptions {
        flush_every_ms: None,
        ..StoreOptions::default()
    };
    let engine = docket_raft::detect_engine(data_dir)
        .expect("read the data directory")
        .expect("a node store");
    match engine {
        StorageEngine::Sled => Box::new(SledDisk::open(data_dir, &options).expect("sled store")),
        StorageEngine::Fjall => Box::new(FjallDisk::open(data_dir, &options).expect("fjall store")),
    }
}
