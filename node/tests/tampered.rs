//! A tampered node cannot fool a client that verifies: one node's stored entry and one of
//! its state rows are rewritten behind its back (it is stopped, its store edited through
//! the raw disk of whichever engine wrote it, restarted), and an independent cluster under
//! the same cluster id stands in for a node serving a forked history. Verified reads
//! through either are refused with evidence, or (the state row) answered with the state a
//! quorum vouches for, never the rewritten one; the honest nodes keep serving verified
//! reads.

mod common;

use std::time::Instant;

use common::{binary, deposit, formed_tls_cluster, ledger_id, phase};
use docket_client::state_proof::verified_subject;
use docket_client::verify::{verified_checkpoint, verified_entry};
use docket_core::LedgerEntry;
use docket_node::local_cluster::{operator_key, LocalCluster};
use docket_raft::disk::{TreeName, WriteBatch};

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
        let disk = common::open_raw_disk(&cluster.node(victim).data_dir);
        let key = 5u64.to_be_bytes();
        let bytes = disk
            .get(TreeName::Ledger, &key)
            .expect("read")
            .expect("entry #5 is stored");
        let mut entry = LedgerEntry::from_bytes(&bytes).expect("an entry");
        entry.time.0 += 1; // its hash field left as it was
        let mut batch = WriteBatch::default();
        batch.insert(TreeName::Ledger, key.to_vec(), entry.to_bytes());
        // And subject t-1's state row: its amount, in the current generation of rows.
        let generation = disk
            .get(TreeName::Sm, b"state_gen")
            .expect("read")
            .expect("a generation");
        let generation: [u8; 8] = generation.as_slice().try_into().expect("a u64");
        let row_key = [
            &[0u8][..],
            &u64::from_le_bytes(generation).to_be_bytes(),
            &docket_core::rows::subject_key("settlement", "t-1"),
        ]
        .concat();
        let bytes = disk
            .get(TreeName::Sm, &row_key)
            .expect("read")
            .expect("t-1's row is stored");
        let mut subject: docket_core::SubjectState =
            docket_core::encoding::from_bytes(&bytes).expect("a subject row");
        subject
            .fields
            .insert("amount".to_owned(), docket_core::Value::Int(1_000_000));
        batch.insert(
            TreeName::Sm,
            row_key,
            docket_core::encoding::to_bytes(&subject),
        );
        disk.apply(batch).expect("write");
        disk.durable_flush().expect("flush");
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
        "a verified state read through it answers the quorum's state, not the rewritten row",
    );
    let shown_state = tampered
        .state("settlement", "t-1", docket_api::wire::Consistency::Local)
        .await
        .expect("it serves the rewritten row unverified")
        .state
        .expect("a state");
    assert_eq!(
        shown_state
            .fields
            .get("amount")
            .map(ToString::to_string)
            .as_deref(),
        Some("1000000"),
        "the tamper took"
    );
    let (proved, _) = verified_subject(&tampered, "settlement", "t-1")
        .await
        .expect("a verified state read through the tampered node");
    let proved = proved.expect("t-1 has a state");
    assert_ne!(
        proved.fields.get("amount"),
        Some(&docket_core::Value::Int(1_000_000)),
        "the rewritten row was proved"
    );
    for honest in [1, 2, 3].into_iter().filter(|id| *id != victim) {
        let (state, _) = verified_subject(&cluster.node(honest).client(), "settlement", "t-1")
            .await
            .expect("honest nodes keep serving verified state");
        assert_eq!(state.as_ref(), Some(&proved));
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
