//! A tampered node cannot fool a client that verifies: one node's stored entry is rewritten
//! behind its back (it is stopped, its sled file edited, restarted), and an independent
//! cluster under the same cluster id stands in for a node serving a forked history.
//! Verified reads through either are refused with evidence; the honest nodes keep serving
//! verified reads.

mod common;

use std::time::Instant;

use common::{binary, deposit, formed_tls_cluster, ledger_id, phase};
use docket_client::verify::{verified_checkpoint, verified_entry};
use docket_core::LedgerEntry;
use docket_node::local_cluster::{operator_key, LocalCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_reads_refuse_a_tampered_node_and_a_forked_history() {
    let start = Instant::now();
    let config = tempfile::tempdir().expect("config dir");
    std::env::set_var("DOCKET_CONFIG_DIR", config.path());
    let (_dir, mut cluster) = formed_tls_cluster("tampered", 3, 5_000, false).await;
    let ledger = ledger_id(&cluster);
    let leader = cluster.leader().await.expect("leader");
    let c = cluster.node(leader).client();
    for n in 0..4 {
        c.submit(&deposit(&ledger, "alice", &format!("t-{n}"), 100 + n))
            .await
            .expect("deposit");
    }
    cluster.converged().await.expect("converged");
    // First contact pins the voters' keys (through an honest node).
    verified_checkpoint(&c).await.expect("pinned");

    phase(
        start,
        "rewrite entry #5 on a follower's disk, behind its back",
    );
    let victim = [1, 2, 3]
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    cluster.kill(victim).await.expect("stop it");
    {
        let db = sled::open(&cluster.node(victim).data_dir).expect("its sled store");
        let tree = db.open_tree("ledger").expect("ledger tree");
        let key = 5u64.to_be_bytes();
        let bytes = tree.get(key).expect("read").expect("entry #5 is stored");
        let mut entry = LedgerEntry::from_bytes(&bytes).expect("an entry");
        entry.time.0 += 1; // its hash field left as it was
        tree.insert(key, entry.to_bytes()).expect("write");
        db.flush().expect("flush");
    }
    cluster.start(victim).await.expect("restart it");
    let tampered = cluster.node(victim).client();
    let shown = tampered
        .ledger(5, 1)
        .await
        .expect("it serves the rewritten entry")
        .entries
        .remove(0);
    assert_ne!(shown.compute_hash(), shown.hash, "the tamper took");

    phase(
        start,
        "a verified read through it is refused, naming the entry",
    );
    let error = verified_entry(&tampered, 5)
        .await
        .expect_err("the tampered entry must not verify");
    let text = format!("{error:#}");
    assert!(
        text.contains("entry #5") && text.contains("altered"),
        "{text}"
    );
    for honest in [1, 2, 3].into_iter().filter(|id| *id != victim) {
        let (entry, _) = verified_entry(&cluster.node(honest).client(), 5)
            .await
            .expect("honest nodes keep serving verified reads");
        assert_eq!(entry.hash, shown.hash);
        assert_eq!(entry.compute_hash(), entry.hash);
    }

    phase(
        start,
        "a node of another history under the same cluster id is refused",
    );
    let fork_dir = tempfile::tempdir().expect("fork dir");
    let mut fork = LocalCluster::new(binary(), fork_dir.path(), ledger.as_str(), 1)
        .expect("prepare")
        .with_tls(5_000)
        .expect("certificates");
    fork.start_all().await.expect("start");
    fork.node(1)
        .client()
        .init_as(None, &operator_key())
        .await
        .expect("init the fork");
    let error = verified_checkpoint(&fork.node(1).client())
        .await
        .expect_err("the fork's checkpoint must not verify");
    let text = format!("{error:#}");
    assert!(text.contains("pinned"), "{text}");
    // ... while the cluster it pretends to be goes on.
    verified_checkpoint(&c)
        .await
        .expect("honest nodes still verify");
}
