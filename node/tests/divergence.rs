//! Divergence alarms: a follower whose state is corrupted behind its back (its stored state
//! commitment edited while it is stopped) is found out by the leader's periodic checkpoint,
//! with nobody asking: the follower refuses to cosign, the leader raises an alarm in its
//! status, and `docket status` exits non-zero naming the diverged node. Told so, the
//! follower checks the quorum's checkpoint itself and quarantines itself: unhealthy,
//! `DIVERGED` to reads and writes, no further writes acknowledged, and it refuses to start
//! again until repaired.

mod common;

use common::{client, deposit, formed_cluster, ledger_id, wait_for};
use docket_raft::disk::{TreeName, WriteBatch};
use docket_service::checkpoints::CHECKPOINT_INTERVAL_MS;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diverged_replica_raises_an_alarm_without_anyone_asking() {
    let (_dir, mut cluster) = formed_cluster("diverge", 3, &[]).await;
    let ledger = ledger_id(&cluster);
    let leader = cluster.leader().await.expect("leader");
    let c = client(&cluster.node(leader).url());
    for i in 0..5 {
        c.submit(&deposit(&ledger, "alice", &format!("d-{i}"), 10))
            .await
            .expect("deposit");
    }
    cluster.converged().await.expect("converged");
    assert!(c.status().await.expect("status").divergence.is_empty());

    let victim = [1, 2, 3]
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    cluster.kill(victim).await.expect("stop the follower");
    {
        // The state's commitment record (head, counts, lattice): flip its last lattice byte.
        let disk = common::open_raw_disk(&cluster.node(victim).data_dir);
        let mut batch = WriteBatch::default();
        disk.for_each(
            TreeName::Sm,
            b"state_meta",
            Some(b"state_metb"),
            &mut |key, value| {
                let mut value = value.to_vec();
                let last = value.len() - 1;
                value[last] ^= 0x01;
                batch.insert(TreeName::Sm, key.to_vec(), value);
                Ok(())
            },
        )
        .expect("read");
        assert!(
            !batch.is_empty(),
            "the follower's state commitment is stored"
        );
        disk.apply(batch).expect("write");
        disk.durable_flush().expect("flush");
    }
    cluster.start(victim).await.expect("restart the follower");
    // New entries, so the leader's checkpointer has a grown ledger to checkpoint.
    for i in 5..8 {
        c.submit(&deposit(&ledger, "alice", &format!("d-{i}"), 10))
            .await
            .expect("deposit");
    }

    let alarm = wait_for(
        "the leader's divergence alarm",
        4 * CHECKPOINT_INTERVAL_MS,
        || {
            let c = c.clone();
            async move {
                let status = c.status().await.map_err(|e| e.to_string())?;
                status
                    .divergence
                    .last()
                    .cloned()
                    .ok_or_else(|| "no alarm yet".to_owned())
            }
        },
    )
    .await;
    assert_eq!(alarm.node, victim, "the alarm names the corrupted follower");
    // docket serve installs the metrics recorder: the alarm is counted there too.
    let metrics = c.metrics().await.expect("GET /metrics");
    let counted = metrics
        .lines()
        .find(|line| {
            line.starts_with("docket_divergence_alarms_total{")
                && line.contains(&format!("node=\"{victim}\""))
        })
        .and_then(|line| line.rsplit_once(' '))
        .and_then(|(_, value)| value.parse::<f64>().ok());
    assert!(
        counted.is_some_and(|n| n >= 1.0),
        "the alarm in the leader's metrics: {metrics}"
    );

    // The leader told the diverged follower, which checked the quorum's checkpoint for
    // itself and quarantined itself: unhealthy, serving nothing, acknowledging nothing.
    let v = client(&cluster.node(victim).url());
    let health_url = format!("{}/v1/health", cluster.node(victim).url());
    let health: docket_node::wire::HealthView =
        wait_for("the follower quarantines itself", 20_000, || {
            let url = health_url.clone();
            async move {
                // An unhealthy node answers its health with 503 and the same body.
                let response = reqwest::get(&url).await.map_err(|e| e.to_string())?;
                let health: docket_node::wire::HealthView =
                    response.json().await.map_err(|e| e.to_string())?;
                if health.diverged.is_some() {
                    Ok(health)
                } else {
                    Err(format!("{health:?}"))
                }
            }
        })
        .await;
    assert!(!health.ok, "a diverged replica is not healthy");
    let metrics = reqwest::get(format!("{}/metrics", cluster.node(victim).url()))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("docket_diverged ") && l.ends_with(" 1")),
        "the quarantine is in its metrics:\n{metrics}"
    );
    assert_eq!(health.diverged.expect("evidence").size, alarm.size);
    let (_, body) = common::api_error(
        v.state("settlement", "d-1", Default::default()).await,
        "DIVERGED",
    );
    assert!(
        body.message.contains("serves nothing until repaired"),
        "{}",
        body.message
    );
    common::api_error(
        v.submit(&deposit(&ledger, "alice", "d-refused", 10)).await,
        "DIVERGED",
    );
    let frozen = v
        .status()
        .await
        .expect("status still answers")
        .ledger_length;
    c.submit(&deposit(&ledger, "alice", "d-after", 10))
        .await
        .expect("the healthy majority goes on");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        v.status().await.expect("status").ledger_length,
        frozen,
        "the diverged replica acknowledges no further writes"
    );

    let output = tokio::process::Command::new(common::binary())
        .args(["status", "--node", &cluster.node(leader).url()])
        .output()
        .await
        .expect("run docket status");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "docket status fails on an alarm");
    assert!(
        stderr.contains("divergence alarm") && stderr.contains(&format!("node {victim} refused")),
        "{stderr}"
    );

    // Restarted, it refuses to serve until repaired.
    cluster.kill(victim).await.expect("stop it");
    assert!(
        cluster.start(victim).await.is_err(),
        "a quarantined node does not start"
    );
    let log = std::fs::read_to_string(cluster.node(victim).log_path()).expect("its log");
    assert!(log.contains("quarantined itself"), "{log}");
}
