//! `docket demo`: a three-node cluster on loopback doing governed work, a leader crash, and
//! proof that every replica ends with the same ledger and state hash.

use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Args;
use docket_core::{dev, LedgerId, ProposalId, SignedProposal, Value};

use crate::client::Client;
use crate::local_cluster::LocalCluster;
use crate::wire::{Consistency, SubmitResponse};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the nodes' data directories and logs instead of deleting them.
    #[arg(long)]
    pub keep: bool,
    /// Where to put the nodes' data (default: a new temporary directory).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

struct Demo {
    ledger: LedgerId,
    nonce: u64,
}

impl Demo {
    fn proposal(
        &mut self,
        author: &str,
        action: &str,
        subject: &str,
        payload: Value,
        deps: Vec<ProposalId>,
    ) -> SignedProposal {
        self.nonce += 1;
        dev::proposal(
            &self.ledger,
            author,
            action,
            subject,
            payload,
            deps,
            self.nonce,
        )
    }
}

async fn file(
    client: &Client,
    node: u64,
    signed: &SignedProposal,
) -> anyhow::Result<SubmitResponse> {
    let response = client
        .submit(signed)
        .await
        .with_context(|| format!("submitting via node {node}"))?;
    println!("  via node {node}: {}", response.entry);
    Ok(response)
}

fn step(title: &str) {
    println!("\n== {title}");
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let temp = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            None
        }
        None => Some(tempfile::Builder::new().prefix("docket-demo-").tempdir()?),
    };
    let root = match (&args.dir, &temp) {
        (Some(dir), _) => dir.clone(),
        (None, Some(temp)) => temp.path().to_owned(),
        (None, None) => unreachable!("a temporary directory is made when no --dir is given"),
    };
    let binary = std::env::current_exe().context("locating the docket binary")?;
    let mut cluster = LocalCluster::new(binary, &root, "docket-demo", 3)?;
    let result = demo(&mut cluster).await;
    cluster.kill_all().await;
    if args.keep {
        if let Some(temp) = temp {
            let _ = temp.keep();
        }
        println!("\ndata and logs kept in {}", root.display());
    }
    result?;
    println!(
        "\ndemo finished in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn demo(cluster: &mut LocalCluster) -> anyhow::Result<()> {
    step("starting three nodes on loopback, each with its own sled directory");
    cluster.start_all().await?;
    for node in &cluster.nodes {
        println!(
            "  node {}: api http://{} raft {} data {}",
            node.id,
            node.api_addr,
            node.raft_addr,
            node.data_dir.display()
        );
    }
    step("initializing the cluster with the default constitution, then adding nodes 2 and 3");
    cluster.form().await?;
    let leader = cluster.leader().await?;
    println!("  leader: node {leader}");

    let mut demo = Demo {
        ledger: LedgerId::new(cluster.cluster_id.clone())?,
        nonce: now_nanos(),
    };
    let n1 = cluster.node(1).client();
    let n2 = cluster.node(2).client();
    let n3 = cluster.node(3).client();

    step(
        "settlement: a deposit, an unauthorized attempt, a deferred outcome released by its payout",
    );
    let deposit = demo.proposal(
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-0001",
        Value::map([
            ("amount", Value::Int(125_000)),
            ("currency", "EUR".into()),
            ("rail_ref", "dep-77".into()),
        ]),
        vec![],
    );
    file(&n2, 2, &deposit).await?;
    let forged = demo.proposal(
        "mallory",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-0001",
        Value::map([
            ("amount", Value::Int(1_000_000)),
            ("currency", "EUR".into()),
        ]),
        vec![],
    );
    file(&n3, 3, &forged).await?;
    let payout = demo.proposal(
        "alice",
        "SETTLEMENT.PAYOUT_REQUESTED",
        "stl-0001",
        Value::map([
            ("amount", Value::Int(100_000)),
            ("beneficiary", "acme-gmbh".into()),
        ]),
        vec![],
    );
    let outcome = demo.proposal(
        "exec",
        "EXECUTION.OUTCOME",
        &payout.id().to_hex(),
        Value::map([
            ("reports_on", payout.id().to_hex().into()),
            ("outcome", "success".into()),
            ("evidence_hash", "ab".repeat(32).into()),
        ]),
        vec![payout.id()],
    );
    file(&n1, 1, &outcome).await?;
    file(&n3, 3, &payout).await?;
    let history = n2.proposal(outcome.id()).await?;
    println!(
        "  the outcome's history, read at node 2: {}",
        history
            .entries
            .iter()
            .map(|e| format!(
                "#{} {}",
                e.index,
                e.decision_record().map_or("", |d| d.decision.label())
            ))
            .collect::<Vec<_>>()
            .join(" then ")
    );

    step("kes: version v1 proposed, ratified by two governors");
    let v1 = demo.proposal(
        "grace",
        "KES.VERSION_PROPOSED",
        "kes-main",
        Value::map([
            ("version", "v1".into()),
            ("version_hash", "11".repeat(32).into()),
            (
                "commitments",
                Value::List(vec!["ipfs://commitment-1".into()]),
            ),
            ("parent", Value::Null),
        ]),
        vec![],
    );
    file(&n1, 1, &v1).await?;
    let ratify = Value::map([
        ("version", "v1".into()),
        ("version_hash", "11".repeat(32).into()),
    ]);
    file(
        &n2,
        2,
        &demo.proposal(
            "grace",
            "KES.VERSION_RATIFIED",
            "kes-main",
            ratify.clone(),
            vec![],
        ),
    )
    .await?;
    file(
        &n3,
        3,
        &demo.proposal("heidi", "KES.VERSION_RATIFIED", "kes-main", ratify, vec![]),
    )
    .await?;
    let kes = n3
        .state("kes", "kes-main", Consistency::Linearizable)
        .await?;
    println!(
        "  kes-main is {:?} with active version {}",
        kes.state
            .as_ref()
            .map(|s| s.state.as_str())
            .unwrap_or("none"),
        kes.state
            .as_ref()
            .and_then(|s| s.fields.get("active_version"))
            .map_or("none".to_owned(), |v| v.to_string())
    );

    step("killing the leader with SIGKILL");
    let old_leader = cluster.leader().await?;
    cluster.kill(old_leader).await?;
    println!("  killed node {old_leader}");
    let new_leader = cluster.leader().await?;
    println!("  new leader: node {new_leader}");
    let survivor = cluster
        .nodes
        .iter()
        .find(|n| n.id != old_leader && n.id != new_leader)
        .map(|n| n.id)
        .unwrap_or(new_leader);
    let survivor_client = cluster.node(survivor).client();
    let more = demo.proposal(
        "bob",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-0002",
        Value::map([("amount", Value::Int(7_500)), ("currency", "EUR".into())]),
        vec![],
    );
    file(&survivor_client, survivor, &more).await?;
    let state = survivor_client
        .state("settlement", "stl-0001", Consistency::Linearizable)
        .await?;
    println!(
        "  stl-0001 read linearizably at node {survivor}: {:?}, balance {}",
        state
            .state
            .as_ref()
            .map(|s| s.state.as_str())
            .unwrap_or("none"),
        state
            .state
            .as_ref()
            .and_then(|s| s.fields.get("balance"))
            .map_or("0".to_owned(), |v| v.to_string())
    );

    step(&format!(
        "restarting node {old_leader} from its sled directory"
    ));
    cluster.start(old_leader).await?;
    let statuses = cluster.converged().await?;
    println!("\n  node  role      ledger length  state hash");
    for s in &statuses {
        println!(
            "  {:<5} {:<9} {:<14} {}",
            s.node_id,
            s.role,
            s.ledger_length,
            s.state_hash.map_or("-".to_owned(), |h| h.to_hex())
        );
    }
    let hashes: std::collections::BTreeSet<_> = statuses
        .iter()
        .map(|s| (s.ledger_length, s.state_hash))
        .collect();
    if hashes.len() != 1 || statuses.len() != 3 {
        bail!("replicas disagree: {hashes:?}");
    }
    println!("\n  all three replicas hold the same ledger and state hash");
    Ok(())
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
