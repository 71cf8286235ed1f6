//! `docket ledger verify` streams a real node's ledger page by page through the audit and
//! agrees with the node's state hash, across page boundaries. And the CLI rides out a dead
//! address in `--node a,b`.

mod common;

use std::time::Instant;

use common::{binary, client, deposit, docket, formed_cluster, ledger_id, phase};
use docket_node::cli::LEDGER_PAGE_ENTRIES;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_verify_streams_pages_and_matches_the_node() {
    let start = Instant::now();
    let (_dir, cluster) = formed_cluster("verify", 1, &[]).await;
    let ledger = ledger_id(&cluster);
    let url = cluster.node(1).url();
    let c = client(&url);
    // More than two pages of entries, so the audit carries its state across pages.
    let proposals: Vec<_> = (0..2 * LEDGER_PAGE_ENTRIES + 7)
        .map(|n| deposit(&ledger, "alice", &format!("verify-{n}"), 1 + n as i64))
        .collect();
    phase(start, &format!("writing {} proposals", proposals.len()));
    for chunk in proposals.chunks(500) {
        c.submit_batch(chunk).await.expect("batch");
    }
    let status = c.status().await.expect("status");
    assert!(status.ledger_length > 2 * LEDGER_PAGE_ENTRIES);

    phase(start, "docket ledger verify --output json");
    let output = tokio::process::Command::new(binary())
        .args(["ledger", "verify", "--node", &url, "--output", "json"])
        .output()
        .await
        .expect("run docket ledger verify");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("a JSON report");
    assert_eq!(report["entries"], status.ledger_length, "{report}");
    assert_eq!(report["node_state_hash_matches"], true, "{report}");
    assert_eq!(
        report["state_hash"],
        serde_json::to_value(status.state_hash).expect("hash as JSON"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_address_is_skipped_and_named() {
    let (_dir, cluster) = formed_cluster("nodes", 1, &[]).await;
    let url = cluster.node(1).url();
    // Nothing listens there: the port was bound and released.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", listener.local_addr().expect("addr"))
    };

    let (ok, stdout, stderr) = docket(&[
        "status",
        "--node",
        &format!("{dead},{url}"),
        "--output",
        "json",
    ])
    .await;
    assert!(ok, "{stdout}\n{stderr}");
    let status: serde_json::Value = serde_json::from_str(&stdout).expect("a JSON status");
    assert_eq!(status["node"]["node_id"], 1, "{status}");

    let (ok, stdout, stderr) = docket(&["status", "--node", &format!("{dead}, {dead}/")]).await;
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains("none of the --node addresses answered") && stderr.contains(&dead),
        "{stderr}"
    );
}
