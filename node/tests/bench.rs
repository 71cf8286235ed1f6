//! `docket bench` against a running cluster, as `ops/bench/duel.sh` runs it: with
//! `--to leader` every write goes to the leader even when `--target` names a follower (no
//! follower forwards a proposal), and the run answers without errors.

mod common;

use std::time::Instant;

use common::{binary, formed_cluster, phase};

/// Requests a node's API answered on `route` (any method and status), from its metrics.
async fn requests_on(url: &str, route: &str) -> u64 {
    let client = docket_node::client::Client::new(url).expect("client");
    let text = client.metrics().await.expect("GET /metrics");
    let label = format!("route=\"{route}\"");
    text.lines()
        .filter(|line| line.starts_with("docket_http_requests_total{") && line.contains(&label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Runs `docket bench ARGS --output json`, which must succeed with no failed request, and
/// returns its report.
async fn bench_json(args: &[&str]) -> serde_json::Value {
    let output = tokio::process::Command::new(binary())
        .arg("bench")
        .args(args)
        .args(["--output", "json"])
        .output()
        .await
        .expect("run docket bench");
    assert!(
        output.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    assert_eq!(report["errors"], 0, "{report}");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_to_leader_sends_every_write_to_the_leader() {
    let start = Instant::now();
    phase(start, "a 3-node cluster");
    let (_dir, cluster) = formed_cluster("bench-to", 3, &[]).await;
    let leader = cluster.leader().await.expect("leader");
    let follower = cluster
        .nodes
        .iter()
        .find(|n| n.id != leader)
        .expect("a follower");

    phase(
        start,
        "bench --target <follower> --to leader: one second, two clients",
    );
    let report = bench_json(&[
        "--target",
        &follower.url(),
        "--to",
        "leader",
        "--clients",
        "2",
        "--duration-s",
        "1",
        "--rate-hint",
        "2000",
    ])
    .await;
    assert!(report["operations"].as_u64() > Some(0), "{report}");

    phase(
        start,
        "the follower forwarded nothing; the leader took the writes",
    );
    assert_eq!(requests_on(&follower.url(), "/v1/proposals").await, 0);
    let at_leader = requests_on(&cluster.node(leader).url(), "/v1/proposals").await;
    assert!(
        at_leader >= report["operations"].as_u64().unwrap_or(u64::MAX),
        "the leader answered {at_leader} submissions: {report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_dir_may_name_a_folder_that_does_not_exist_yet() {
    let parent = tempfile::tempdir().expect("temp dir");
    let dir = parent.path().join("runs").join("first");
    let dir_arg = dir.to_str().expect("a UTF-8 temp path");
    bench_json(&[
        "--nodes",
        "1",
        "--clients",
        "1",
        "--duration-s",
        "1",
        "--rate-hint",
        "500",
        "--dir",
        dir_arg,
    ])
    .await;
    assert!(
        dir.join("node-1.log").is_file(),
        "the cluster kept its data under --dir"
    );
}
