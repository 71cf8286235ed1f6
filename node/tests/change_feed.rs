//! The change feed (`GET /v1/ledger/watch`) against a real 3-node cluster: every committed
//! entry, in order, exactly once, across a SIGKILL of the node serving it; and `docket
//! ledger tail --follow`, which rides the feed and resumes after a restart of its node
//! without a gap or a duplicate.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{client, deposit, formed_cluster, ledger_id, read_ledger};
use docket_core::LedgerEntry;
use tokio::io::{AsyncBufReadExt as _, BufReader};

/// Reads the feed until it has shown entry `last`.
async fn read_until(feed: &mut docket_node::client::Watch, got: &mut Vec<LedgerEntry>, last: u64) {
    while got.last().is_none_or(|e| e.index.0 < last) {
        let entry = tokio::time::timeout(Duration::from_secs(20), feed.next_entry())
            .await
            .expect("the feed shows the entry within 20 s")
            .expect("the feed works")
            .expect("the feed stays open");
        got.push(entry);
    }
}

/// Reads `count` more JSON lines of `docket ledger tail --output json`.
async fn read_lines(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    printed: &mut Vec<LedgerEntry>,
    count: usize,
) {
    for _ in 0..count {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("a line within 30 s")
            .expect("readable")
            .expect("tail still running");
        printed.push(serde_json::from_str(&line).expect("an entry per line"));
    }
}

fn assert_same(got: &[LedgerEntry], ledger: &[LedgerEntry]) {
    let indexes: Vec<u64> = got.iter().map(|e| e.index.0).collect();
    let expected: Vec<u64> = (0..got.len() as u64).collect();
    assert_eq!(indexes, expected, "every index once, in order");
    for (a, b) in got.iter().zip(ledger) {
        assert_eq!(a.hash, b.hash, "entry {} as the ledger holds it", a.index);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_shows_every_committed_entry_once_across_a_kill() {
    let (_dir, mut cluster) = formed_cluster("feed", 3, &[]).await;
    let ledger = ledger_id(&cluster);
    let leader = cluster.leader().await.expect("leader");
    let watcher = [1, 2, 3]
        .into_iter()
        .find(|id| *id != leader)
        .expect("follower");
    let writer = [1, 2, 3]
        .into_iter()
        .find(|id| *id != leader && *id != watcher)
        .expect("another follower");
    let w = client(&cluster.node(writer).url());

    let mut feed = client(&cluster.node(watcher).url())
        .watch(Some(0))
        .await
        .expect("open the feed");
    let mut got = Vec::new();
    for i in 0..20 {
        w.submit(&deposit(&ledger, "alice", &format!("feed-{i}"), 5))
            .await
            .expect("deposit");
    }
    let length = w.status().await.expect("status").ledger_length;
    read_until(&mut feed, &mut got, length - 1).await;

    // Kill the node serving the feed; reopen on another from the next index.
    cluster.kill(watcher).await.expect("kill");
    let next = got.len() as u64;
    for i in 20..30 {
        w.submit(&deposit(&ledger, "alice", &format!("feed-{i}"), 5))
            .await
            .expect("deposit");
    }
    let mut feed = client(&cluster.node(writer).url())
        .watch(Some(next))
        .await
        .expect("reopen the feed");
    let length = w.status().await.expect("status").ledger_length;
    read_until(&mut feed, &mut got, length - 1).await;
    assert_same(&got, &read_ledger(&w).await);

    // A feed with no `from` starts at the end: it shows only what comes next.
    let mut tail = w.watch(None).await.expect("open at the end");
    w.submit(&deposit(&ledger, "alice", "feed-last", 5))
        .await
        .expect("deposit");
    let entry = tail.next_entry().await.expect("works").expect("open");
    assert_eq!(entry.index.0, length, "the first new entry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_tail_follow_resumes_after_its_node_restarts() {
    let (_dir, mut cluster) = formed_cluster("tail", 3, &[]).await;
    let ledger = ledger_id(&cluster);
    let leader = cluster.leader().await.expect("leader");
    let followed = [1, 2, 3]
        .into_iter()
        .find(|id| *id != leader)
        .expect("follower");
    let l = client(&cluster.node(leader).url());
    let start = l.status().await.expect("status").ledger_length;

    let mut tail = tokio::process::Command::new(common::binary())
        .args([
            "ledger",
            "tail",
            "-n",
            "0",
            "--follow",
            "--output",
            "json",
            "--node",
            &cluster.node(followed).url(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run docket ledger tail --follow");
    let mut lines = BufReader::new(tail.stdout.take().expect("stdout")).lines();
    let mut printed: Vec<LedgerEntry> = Vec::new();
    // Give the tail a moment to open its feed at the end of the ledger.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..5 {
        l.submit(&deposit(&ledger, "alice", &format!("tail-{i}"), 5))
            .await
            .expect("deposit");
    }
    read_lines(&mut lines, &mut printed, 5).await;

    cluster
        .kill(followed)
        .await
        .expect("kill the followed node");
    for i in 5..12 {
        l.submit(&deposit(&ledger, "alice", &format!("tail-{i}"), 5))
            .await
            .expect("deposit");
    }
    cluster.start(followed).await.expect("restart it");
    read_lines(&mut lines, &mut printed, 7).await;

    let indexes: Vec<u64> = printed.iter().map(|e| e.index.0).collect();
    let expected: Vec<u64> = (start..start + 12).collect();
    assert_eq!(indexes, expected, "no gap, no duplicate across the restart");
    let ledger_now = read_ledger(&l).await;
    for entry in &printed {
        assert_eq!(entry.hash, ledger_now[entry.index.0 as usize].hash);
    }
}
