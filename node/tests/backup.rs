//! Backup, restore and disaster recovery with real processes:
//!
//! * a backup taken from a follower while writes go on verifies offline, and restores to a
//!   one-node cluster holding exactly the checkpoint's ledger and state hash, which serves
//!   writes and takes a fresh member;
//! * a backup with one byte changed is refused by `verify --backup` and by `restore`, and
//!   the refused restore writes nothing;
//! * `recover` after two of three nodes are killed for good gives a one-node cluster that
//!   keeps every acknowledged entry, serves writes and takes a fresh member.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    assert_all_present, binary, client, deposit, formed_cluster, ledger_id, phase, read_ledger,
    wait_for, WAIT_TIMEOUT_MS,
};
use docket_core::checkpoint::SignedCheckpoint;
use docket_core::LedgerEntry;
use docket_node::local_cluster::{operator_key, LocalCluster};
use docket_node::wire::AddMemberRequest;

/// Runs the binary with `config` as its config directory (where it pins voters' keys)
/// and answers (success, stdout, stderr).
async fn docket(config: &Path, args: &[&str]) -> (bool, String, String) {
    common::docket_env(args, &[("DOCKET_CONFIG_DIR", config)]).await
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

/// The checkpoint in a backup's header, and its entries.
fn read_backup(path: &Path) -> (SignedCheckpoint, Vec<LedgerEntry>) {
    let text = std::fs::read_to_string(path).expect("read backup");
    let mut lines = text.lines();
    let header: serde_json::Value =
        serde_json::from_str(lines.next().expect("a header")).expect("header JSON");
    let note = header["checkpoint"].as_str().expect("a checkpoint note");
    let signed = SignedCheckpoint::parse_note(note).expect("a checkpoint");
    let entries = lines
        .map(|line| serde_json::from_str(line).expect("an entry"))
        .collect();
    (signed, entries)
}

/// Adds a fresh node to `cluster` (led by node `leader`) and waits for it to hold the
/// same ledger and state hash.
async fn add_fresh_member(cluster: &mut LocalCluster, leader: u64) -> u64 {
    let id = cluster.add_slot().expect("slot");
    cluster.start(id).await.expect("start the fresh node");
    let node = cluster.node(id);
    let request = AddMemberRequest {
        id,
        raft_addr: node.raft_addr.clone(),
        api_addr: node.api_addr.clone(),
        learner: false,
    };
    cluster
        .node(leader)
        .client()
        .add_member_as(request, &operator_key())
        .await
        .expect("member add");
    cluster
        .converged()
        .await
        .expect("the fresh member converges");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_verifies_and_restores_to_its_checkpoint() {
    let start = Instant::now();
    let (dir, cluster) = formed_cluster("backup", 3, &[]).await;
    let config = dir.path().join("config");
    let ledger = ledger_id(&cluster);
    let leader = cluster.leader().await.expect("leader");
    let follower = cluster
        .nodes
        .iter()
        .find(|n| n.id != leader)
        .expect("a follower");
    let follower_url = follower.url();
    let c = client(&cluster.node(leader).url());
    phase(start, "1,500 deposits before the backup, so it spans pages");
    let proposals: Vec<_> = (0..1_500)
        .map(|n| deposit(&ledger, "alice", &format!("before-{n}"), 1 + n))
        .collect();
    for chunk in proposals.chunks(500) {
        c.submit_batch(chunk).await.expect("batch");
    }

    phase(
        start,
        "writers keep writing while `docket backup` runs on a follower",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, written, ledger) = (stop.clone(), written.clone(), ledger.clone());
        let c = c.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<_> = (0..20)
                    .map(|i| deposit(&ledger, "bob", &format!("during-{n}-{i}"), 7))
                    .collect();
                c.submit_batch(&batch)
                    .await
                    .expect("a write during the backup");
                written.fetch_add(20, Ordering::Relaxed);
                n += 1;
            }
        })
    };
    wait_for("writes under way", WAIT_TIMEOUT_MS, || async {
        let n = written.load(Ordering::Relaxed);
        if n >= 40 {
            Ok(())
        } else {
            Err(format!("{n}"))
        }
    })
    .await;
    let file = dir.path().join("ledger.backup");
    let before = written.load(Ordering::Relaxed);
    let (ok, stdout, stderr) = docket(
        &config,
        &["backup", "--out", path_str(&file), "--node", &follower_url],
    )
    .await;
    assert!(ok, "backup failed:\n{stdout}\n{stderr}");
    let during = written.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    assert!(during > 0, "no write landed while the backup ran");
    assert!(!file.with_extension("backup.partial").exists());

    let (checkpoint, entries) = read_backup(&file);
    let size = checkpoint.checkpoint.size;
    assert_eq!(entries.len() as u64, size);
    assert!(size > 1_500, "the backup holds the deposits made before it");
    let live = read_ledger(&c).await;
    assert!(
        live.len() as u64 > size,
        "writes went on after the checkpoint"
    );
    assert_eq!(
        &live[..size as usize],
        &entries[..],
        "the backup is the live ledger's prefix"
    );

    phase(
        start,
        "docket verify --backup, offline, with the pinned voters' keys",
    );
    let voters = dir.path().join("voters.json");
    let (ok, stdout, stderr) = docket(
        &config,
        &[
            "checkpoint",
            "--save-cosigners",
            path_str(&voters),
            "--node",
            &follower_url,
        ],
    )
    .await;
    assert!(ok, "{stdout}\n{stderr}");
    let (ok, stdout, stderr) = docket(
        &config,
        &[
            "verify",
            "--backup",
            path_str(&file),
            "--cosigners",
            path_str(&voters),
            "--output",
            "json",
        ],
    )
    .await;
    assert!(ok, "verify --backup failed:\n{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(report["entries"], size, "{report}");
    assert_eq!(
        report["state_hash"],
        serde_json::to_value(checkpoint.checkpoint.state).expect("hash"),
        "{report}"
    );

    phase(
        start,
        "one flipped byte: verify and restore refuse it, restore writes nothing",
    );
    let corrupt = dir.path().join("corrupt.backup");
    let mut bytes = std::fs::read(&file).expect("read");
    let at = flip_target(&bytes);
    bytes[at] = if bytes[at] == b'3' { b'4' } else { b'3' };
    std::fs::write(&corrupt, &bytes).expect("write corrupt copy");
    let (ok, stdout, stderr) = docket(&config, &["verify", "--backup", path_str(&corrupt)]).await;
    assert!(!ok, "a corrupted backup verified:\n{stdout}");
    assert!(stderr.contains("does not verify"), "{stderr}");
    let restore_root = dir.path().join("restored");
    std::fs::create_dir_all(&restore_root).expect("mkdir");
    let refused_dir = restore_root.join("refused");
    let (ok, stdout, stderr) = docket(
        &config,
        &[
            "restore",
            path_str(&corrupt),
            "--data-dir",
            path_str(&refused_dir),
            "--id",
            "1",
        ],
    )
    .await;
    assert!(!ok, "a corrupted backup was restored:\n{stdout}");
    assert!(stderr.contains("does not verify"), "{stderr}");
    assert!(
        !refused_dir.exists(),
        "a refused restore wrote {refused_dir:?}"
    );
    assert_eq!(
        std::fs::read_dir(&restore_root).expect("list").count(),
        0,
        "a refused restore left files behind"
    );

    phase(
        start,
        "another node's checkpoint key for node 1: refused, nothing written",
    );
    let wrong_key = cluster.node(2).data_dir.join("cosigner.key");
    let (ok, stdout, stderr) = docket(
        &config,
        &[
            "restore",
            path_str(&file),
            "--data-dir",
            path_str(&refused_dir),
            "--id",
            "1",
            "--cosigner-key",
            path_str(&wrong_key),
        ],
    )
    .await;
    assert!(
        !ok,
        "a restore with node 2's key for node 1 succeeded:\n{stdout}"
    );
    assert!(stderr.contains("the ledger declares"), "{stderr}");
    assert!(
        !refused_dir.exists(),
        "a refused restore wrote {refused_dir:?}"
    );
    assert_eq!(
        std::fs::read_dir(&restore_root).expect("list").count(),
        0,
        "a refused restore left files behind"
    );

    phase(
        start,
        "restore into a new one-node cluster, carrying node 1's checkpoint key",
    );
    let mut restored =
        LocalCluster::new(binary(), &restore_root, ledger.as_str(), 1).expect("prepare");
    let node = restored.node(1);
    let (data_dir, raft_addr, api_addr) = (
        node.data_dir.clone(),
        node.raft_addr.clone(),
        node.api_addr.clone(),
    );
    let key: PathBuf = cluster.node(1).data_dir.join("cosigner.key");
    let (ok, stdout, stderr) = docket(
        &config,
        &[
            "restore",
            path_str(&file),
            "--data-dir",
            path_str(&data_dir),
            "--id",
            "1",
            "--raft-addr",
            &raft_addr,
            "--api-addr",
            &api_addr,
            "--cosigners",
            path_str(&voters),
            "--cosigner-key",
            path_str(&key),
        ],
    )
    .await;
    assert!(ok, "restore failed:\n{stdout}\n{stderr}");
    drop(cluster);
    restored.start(1).await.expect("the restored node starts");
    assert_eq!(restored.leader().await.expect("it leads"), 1);
    let status = restored.node(1).client().status().await.expect("status");
    assert_eq!(status.ledger_length, size, "{status:?}");
    assert_eq!(status.state_hash, Some(checkpoint.checkpoint.state));
    let rc = client(&restored.node(1).url());
    assert_eq!(
        read_ledger(&rc).await,
        entries,
        "the restored ledger is the backup's"
    );
    let final_checkpoint = rc
        .checkpoint()
        .await
        .expect("a final checkpoint, one voter");
    assert!(final_checkpoint.size >= size);

    phase(
        start,
        "the restored cluster serves writes and takes a fresh member",
    );
    let answer = rc
        .submit_batch(&[deposit(&ledger, "alice", "after-restore", 5)])
        .await
        .expect("a write after restore");
    assert_eq!(answer.results.len(), 1);
    add_fresh_member(&mut restored, 1).await;
    restored.kill_all().await;

    phase(
        start,
        "restore onto fjall: a sled node refuses the directory, a fjall node serves it",
    );
    let fjall_root = dir.path().join("restored-fjall");
    std::fs::create_dir_all(&fjall_root).expect("mkdir");
    let on_fjall = LocalCluster::new(binary(), &fjall_root, ledger.as_str(), 1).expect("prepare");
    let node = on_fjall.node(1);
    let (data_dir, raft_addr, api_addr) = (
        node.data_dir.clone(),
        node.raft_addr.clone(),
        node.api_addr.clone(),
    );
    let (ok, stdout, stderr) = docket(
        &config,
        &[
            "restore",
            path_str(&file),
            "--data-dir",
            path_str(&data_dir),
            "--id",
            "1",
            "--raft-addr",
            &raft_addr,
            "--api-addr",
            &api_addr,
            "--cosigners",
            path_str(&voters),
            "--cosigner-key",
            path_str(&key),
            "--storage-engine",
            "fjall",
        ],
    )
    .await;
    assert!(ok, "restore onto fjall failed:\n{stdout}\n{stderr}");
    let marker = std::fs::read_to_string(data_dir.join("ENGINE")).expect("marker");
    assert_eq!(marker.trim(), "fjall");
    let mut as_sled = on_fjall.with_env(&[("DOCKET_STORAGE_ENGINE", "sled")]);
    as_sled
        .start(1)
        .await
        .expect_err("a sled node refuses a fjall directory");
    let log = std::fs::read_to_string(as_sled.node(1).log_path()).expect("node log");
    assert!(
        log.contains("holds a fjall store, but this node is configured for sled"),
        "{log}"
    );
    let mut on_fjall = as_sled.with_env(&[("DOCKET_STORAGE_ENGINE", "fjall")]);
    on_fjall.start(1).await.expect("the fjall node starts");
    assert_eq!(on_fjall.leader().await.expect("it leads"), 1);
    let fc = client(&on_fjall.node(1).url());
    assert_eq!(
        read_ledger(&fc).await,
        entries,
        "the ledger restored onto fjall is the backup's"
    );
    on_fjall.kill_all().await;
}

/// An offset inside the last entry's payload amount (a digit), so the file stays JSON and
/// only the chain can tell.
fn flip_target(bytes: &[u8]) -> usize {
    let text = std::str::from_utf8(bytes).expect("UTF-8");
    let last_line = text.trim_end().rfind('\n').expect("several lines") + 1;
    let amount = text[last_line..]
        .find("\"amount\":")
        .expect("a deposit amount in the last entry");
    last_line + amount + "\"amount\":".len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_rebuilds_a_one_node_cluster_from_a_survivor() {
    recover_from_a_survivor("sled").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_rebuilds_a_one_node_cluster_from_a_survivor_on_fjall() {
    recover_from_a_survivor("fjall").await;
}

/// `docket recover` on a survivor whose store is on `engine`: the rebuilt store stays on it.
async fn recover_from_a_survivor(engine: &'static str) {
    let start = Instant::now();
    phase(start, &format!("storage engine {engine}"));
    let (dir, mut cluster) = formed_cluster(
        &format!("recover-{engine}"),
        3,
        &[("DOCKET_STORAGE_ENGINE", engine)],
    )
    .await;
    let config = dir.path().join("config");
    let ledger = ledger_id(&cluster);
    let leader = cluster.leader().await.expect("leader");
    let c = client(&cluster.node(leader).url());
    phase(start, "acknowledged writes, on every node");
    let mut acked = Vec::new();
    for n in 0..30 {
        let proposal = deposit(&ledger, "alice", &format!("kept-{n}"), 10 + n);
        let id = proposal.id();
        let answer = c.submit_batch(&[proposal]).await.expect("write");
        let entry = answer.results[0].entry.clone();
        acked.push((id, entry));
    }
    cluster.converged().await.expect("converged");
    // The committed id is persisted without a flush of its own (sled flushes its buffer
    // every 500 ms): wait so the survivor's disk knows what it applied.
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    phase(
        start,
        "two of three nodes die for good; the survivor is stopped hard too",
    );
    let survivor = 3;
    cluster.kill(1).await.expect("kill 1");
    cluster.kill(2).await.expect("kill 2");
    cluster.kill(survivor).await.expect("kill the survivor");
    let node = cluster.node(survivor);
    let (data_dir, raft_addr, api_addr) = (
        node.data_dir.clone(),
        node.raft_addr.clone(),
        node.api_addr.clone(),
    );

    let operator = dir.path().join("operator.key");
    docket_node::cli::write_key_file(&operator, &operator_key(), false).expect("operator key");
    let args = [
        "recover",
        "--key",
        path_str(&operator),
        "--data-dir",
        path_str(&data_dir),
        "--id",
        "3",
        "--raft-addr",
        &raft_addr,
        "--api-addr",
        &api_addr,
    ];
    let (ok, _, stderr) = docket(&config, &args).await;
    assert!(!ok && stderr.contains("--force-new-cluster"), "{stderr}");
    let mut forced = args.to_vec();
    forced.extend(["--force-new-cluster", "--output", "json"]);
    let (ok, stdout, stderr) = docket(&config, &forced).await;
    assert!(ok, "recover failed:\n{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    eprintln!("{report}");
    let marker = std::fs::read_to_string(data_dir.join("ENGINE")).expect("marker");
    assert_eq!(
        marker.trim(),
        engine,
        "the rebuilt store keeps the survivor's engine"
    );

    phase(
        start,
        "the survivor alone: it leads, keeps every acknowledged entry, serves writes",
    );
    cluster.start(survivor).await.expect("restart the survivor");
    assert_eq!(cluster.leader().await.expect("a leader"), survivor);
    assert_all_present(&cluster, &acked).await;
    let sc = client(&cluster.node(survivor).url());
    let kept = report["entries"].as_u64().expect("entries kept");
    phase(
        start,
        "the node files the operator-signed CLUSTER.RECOVERED record on its first start",
    );
    let recorded = wait_for("the CLUSTER.RECOVERED entry", WAIT_TIMEOUT_MS, || async {
        let ledger = read_ledger(&sc).await;
        match ledger.get(kept as usize) {
            Some(entry) => Ok(entry.clone()),
            None => Err(format!("ledger length {}", ledger.len())),
        }
    })
    .await;
    let docket_core::Record::Decision(record) = &recorded.record else {
        panic!("entry #{kept} is not a decision: {recorded:?}");
    };
    assert_eq!(record.proposal.proposal.action, "CLUSTER.RECOVERED");
    assert_eq!(record.proposal.proposal.subject, "node-3");
    assert_eq!(record.decision, docket_core::Decision::Admit);
    let payload = serde_json::to_value(&record.proposal.proposal.payload).expect("payload");
    assert_eq!(payload["ledger_length"], kept, "{payload}");
    assert_eq!(
        payload["log_entries_dropped"], report["log_entries_dropped"],
        "{payload}"
    );
    let request = data_dir.join("recovery-request.json");
    wait_for("the request file removed", WAIT_TIMEOUT_MS, || async {
        if request.exists() {
            Err("still there".to_owned())
        } else {
            Ok(())
        }
    })
    .await;
    let status = sc.status().await.expect("status");
    assert_eq!(status.ledger_length, kept + 1);
    sc.submit_batch(&[deposit(&ledger, "bob", "after-recover", 3)])
        .await
        .expect("a write after recovery");
    let members = sc.members().await.expect("members");
    assert_eq!(
        members.members.iter().filter(|m| m.voter).count(),
        1,
        "{members:?}"
    );

    phase(start, "a fresh node joins the recovered cluster");
    let fresh = add_fresh_member(&mut cluster, survivor).await;
    assert_ne!(fresh, survivor);
    assert_all_present(&cluster, &acked).await;
    cluster.kill_all().await;
}
