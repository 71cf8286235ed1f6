//! `docket demo`: a three-node cluster on loopback doing governed work, a leader crash, and
//! proof that every replica ends with the same ledger and state hash.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Args;
use docket_core::{dev, LedgerId, SignedProposal, Value};

use crate::client::Client;
use crate::local_cluster::LocalCluster;
use crate::rail::Rail;
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

/// How long the demo keeps resubmitting a proposal whose outcome is not yet known (no
/// leader yet after the leader is killed, a timeout), as `docket propose` does.
const FILE_SETTLE_MS: u64 = 10_000;

/// Submits `signed` via `node` until its outcome is known (`Client::submit_settled`): a
/// survivor asked right after the leader is killed may not know the new leader yet and
/// answers `NO_LEADER`, and resubmitting the same signed proposal is safe.
async fn file(
    client: &Client,
    node: u64,
    signed: &SignedProposal,
) -> anyhow::Result<SubmitResponse> {
    let response = client
        .submit_settled(signed, &[], Duration::from_millis(FILE_SETTLE_MS))
        .await
        .with_context(|| format!("submitting via node {node}"))?;
    println!("  via node {node}: {}", response.entry);
    Ok(response)
}

fn step(title: &str) {
    println!("\n== {title}");
}

/// The `[execution]` section every demo node runs with: the payment rail, KES deployment
/// files and `FILE.WRITE` files in sandboxes, and the development executor key.
fn execution_toml(root: &std::path::Path, rail: &Rail) -> String {
    format!(
        "[execution]\nenabled = true\nkey_file = {key:?}\nallowed_urls = [{url:?}]\n\n\
         [execution.rail]\nurl = {url:?}\n\n\
         [execution.kes_deploy]\ndir = {deploy:?}\n\n\
         [execution.file_write]\ndir = {files:?}\n",
        key = root.join("exec.key").display().to_string(),
        url = rail.url(),
        deploy = root.join("deploy").display().to_string(),
        files = root.join("files").display().to_string(),
    )
}

/// The example program of the README: it prints a plan of two funded payouts (one to the
/// beneficiary the demo's rail declines) and a report that depends on both outcomes.
pub const PETITION_EXAMPLE: &str = include_str!("../examples/petition.sh");

/// Runs `docket petition` on the example program, as a user would, and checks the outcome:
/// the declined payout rejects the report (DEPENDENCY_FAILED) and the petition says so.
async fn petition(cluster: &LocalCluster, root: &std::path::Path) -> anyhow::Result<()> {
    let script = root.join("petition.sh");
    std::fs::write(&script, PETITION_EXAMPLE)?;
    let key = root.join("alice.key");
    crate::cli::write_key_file(&key, &dev::signing_key("alice"), true)?;
    let binary = std::env::current_exe().context("locating the docket binary")?;
    let mut command = tokio::process::Command::new(binary);
    command
        .arg("petition")
        .arg("--node")
        .arg(cluster.node(1).url());
    if let Some(tls) = cluster.tls() {
        command.arg("--ca").arg(&tls.client.ca);
        if let Some((cert, key)) = &tls.client.identity {
            command
                .arg("--client-cert")
                .arg(cert)
                .arg("--client-key")
                .arg(key);
        }
    }
    command
        .arg("--key")
        .arg(&key)
        .args(["--follow-ms", "30000", "--", "sh"])
        .arg(&script);
    let output = command.output().await.context("running docket petition")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in stdout.lines() {
        println!("  {line}");
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() || !stdout.contains("DEPENDENCY_FAILED") {
        bail!("the petition should end with the report rejected (DEPENDENCY_FAILED):\n{stdout}\n{stderr}");
    }
    println!(
        "  petition exited with status {}: the payout to closed-account was declined, so the \
         report that needs its outcome was rejected; nothing retried, nothing reordered",
        output.status.code().unwrap_or(-1)
    );
    Ok(())
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
    let rail = Rail::start().await?;
    crate::cli::write_key_file(&root.join("exec.key"), &dev::signing_key("exec"), true)?;
    let binary = std::env::current_exe().context("locating the docket binary")?;
    let mut cluster = LocalCluster::new(binary, &root, "docket-demo", 3)?
        .with_config(&execution_toml(&root, &rail))
        .with_tls(docket_config::RELOAD_POLL_MS_DEFAULT)?;
    let result = demo(&mut cluster, &rail, &root).await;
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

/// Waits until `check` holds on a linearizable read of a subject, or fails after 20 s.
async fn wait_for_subject(
    client: &Client,
    domain: &str,
    subject: &str,
    what: &str,
    check: impl Fn(&docket_core::SubjectState) -> bool,
) -> anyhow::Result<docket_core::SubjectState> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(view) = client
            .state(domain, subject, Consistency::Linearizable)
            .await
        {
            if let Some(state) = view.state.filter(|s| check(s)) {
                return Ok(state);
            }
        }
        if Instant::now() > deadline {
            bail!("{domain}/{subject}: {what} did not happen within 20 s");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Prints the entries recorded since `from` whose action contains `filter`, each after
/// `label` (the outcome records the agent filed, the cluster operations).
async fn show_new_entries(
    client: &Client,
    from: u64,
    filter: &str,
    label: &str,
) -> anyhow::Result<u64> {
    let page = client.ledger(from, 100).await?;
    for entry in &page.entries {
        if entry
            .decision_record()
            .is_some_and(|d| d.proposal.proposal.action.contains(filter))
        {
            println!("  {label}: {entry}");
        }
    }
    Ok(page.length)
}

async fn demo(
    cluster: &mut LocalCluster,
    rail: &Rail,
    root: &std::path::Path,
) -> anyhow::Result<()> {
    step(
        "starting three nodes on loopback with TLS under a fresh cluster CA, each with its own \
         data directory and an execution agent",
    );
    cluster.start_all().await?;
    for node in &cluster.nodes {
        println!(
            "  node {}: api {} raft {} (mutual tls) data {}",
            node.id,
            node.url(),
            node.raft_addr,
            node.data_dir.display()
        );
    }
    println!("  payment rail at {}", rail.url());
    step(
        "initializing the cluster with the default constitution, then adding nodes 2 and 3: \
         each a request signed by operator oscar, recorded before the change",
    );
    cluster.form().await?;
    let leader = cluster.leader().await?;
    println!("  leader: node {leader}");
    let n1 = cluster.node(1).client();
    show_new_entries(&n1, 0, "CLUSTER.", "recorded").await?;

    step("governed administration: mallory (no operator role) tries to remove node 3");
    let before = n1.status().await?;
    let mallory = dev::signing_key("mallory");
    match n1.remove_member_as(3, &mallory).await {
        Ok(_) => bail!("the constitution let mallory remove node 3"),
        Err(error) if error.code() == Some("UNAUTHORIZED") => println!("  refused: {error}"),
        Err(error) => {
            return Err(error).context("mallory's removal was refused, but not as UNAUTHORIZED")
        }
    }
    let after = n1.status().await?;
    if after.ledger_length != before.ledger_length || after.members.len() != 3 {
        bail!("a refused cluster operation changed the cluster");
    }
    println!(
        "  nothing changed: still {} members, ledger length {}",
        after.members.len(),
        after.ledger_length
    );

    let mut demo = dev::Proposer::new(LedgerId::new(cluster.cluster_id.clone())?, now_nanos());
    let n2 = cluster.node(2).client();
    let n3 = cluster.node(3).client();

    step("settlement: a deposit, an unauthorized attempt, a payout executed on the rail");
    let deposit = demo.make(
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
    let forged = demo.make(
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
    let stolen = demo.make(
        "exec",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-0001",
        Value::map([
            ("amount", Value::Int(1_000_000)),
            ("currency", "EUR".into()),
        ]),
        vec![],
    );
    file(&n1, 1, &stolen).await?;
    let length = n1.status().await?.ledger_length;
    let payout = demo.make(
        "alice",
        "SETTLEMENT.PAYOUT_REQUESTED",
        "stl-0001",
        Value::map([
            ("amount", Value::Int(100_000)),
            ("beneficiary", "acme-gmbh".into()),
        ]),
        vec![],
    );
    file(&n3, 3, &payout).await?;
    let paid = wait_for_subject(
        &n2,
        "settlement",
        "stl-0001",
        "the payout's execution",
        |s| s.state == "paid",
    )
    .await?;
    show_new_entries(&n2, length, "SETTLEMENT.PAYOUT_EXECUTED", "outcome record").await?;
    println!(
        "  stl-0001 is {:?}, balance {}",
        paid.state,
        paid.fields
            .get("balance")
            .map_or("0".to_owned(), |v| v.to_string())
    );

    step("deferral: a payout filed before the deposit it depends on, released by a wave");
    let deposit2 = demo.make(
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-0001",
        Value::map([("amount", Value::Int(50_000)), ("currency", "EUR".into())]),
        vec![],
    );
    let payout2 = demo.make(
        "bob",
        "SETTLEMENT.PAYOUT_REQUESTED",
        "stl-0001",
        Value::map([
            ("amount", Value::Int(20_000)),
            ("beneficiary", "globex".into()),
        ]),
        vec![deposit2.id()],
    );
    file(&n1, 1, &payout2).await?;
    file(&n2, 2, &deposit2).await?;
    let history = n3.proposal(payout2.id()).await?;
    println!(
        "  the dependent payout's history, read at node 3: {}",
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
    wait_for_subject(
        &n3,
        "settlement",
        "stl-0001",
        "the released payout's execution",
        |s| {
            s.state == "paid"
                && !s.fields.contains_key("pending_payout")
                && s.fields.get("paid_total") == Some(&Value::Int(120_000))
        },
    )
    .await?;
    println!("  released payout executed on the rail too");

    step("kes: version v1 proposed, ratified by two governors, deployed by the agent");
    let v1 = demo.make(
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
        &demo.make(
            "grace",
            "KES.VERSION_RATIFIED",
            "kes-main",
            ratify.clone(),
            vec![],
        ),
    )
    .await?;
    let length = n3.status().await?.ledger_length;
    let completing = demo.make("heidi", "KES.VERSION_RATIFIED", "kes-main", ratify, vec![]);
    file(&n3, 3, &completing).await?;
    wait_for_subject(
        &n1,
        "execution",
        &completing.id().to_hex(),
        "the deployment's outcome record",
        |s| s.state == "reported",
    )
    .await?;
    show_new_entries(&n1, length, "EXECUTION.OUTCOME", "outcome record").await?;
    let deployed = root.join("deploy").join("kes-main").join("v1.json");
    println!(
        "  deployment file {} ({} bytes)",
        deployed.display(),
        std::fs::metadata(&deployed).map(|m| m.len()).unwrap_or(0)
    );

    step(
        "a program petitions: two payouts and a report file that needs both outcomes \
         (node/examples/petition.sh)",
    );
    petition(cluster, root).await?;

    step("evidence kept by the leader's execution agent");
    let leader = cluster.leader().await?;
    let evidence: crate::wire::ExecutionView =
        cluster.node(leader).client().execution(payout.id()).await?;
    if let Some(job) = &evidence.job {
        for e in &job.evidence {
            println!(
                "  payout {}: {:?} {} requests={} wall={}ms effects={}",
                payout.id().short(),
                e.outcome,
                e.reason.as_deref().unwrap_or(""),
                e.cost.attempts,
                e.cost.wall_ms,
                e.effects
                    .iter()
                    .map(|f| format!("{} {}", f.target, f.result))
                    .collect::<Vec<_>>()
                    .join(",")
            );
        }
    } else {
        println!(
            "  node {leader} holds no job for the payout (it was executed by an earlier leader)"
        );
    }

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
    let more = demo.make(
        "bob",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-0002",
        Value::map([("amount", Value::Int(7_500)), ("currency", "EUR".into())]),
        vec![],
    );
    file(&survivor_client, survivor, &more).await?;
    let payout3 = demo.make(
        "bob",
        "SETTLEMENT.PAYOUT_REQUESTED",
        "stl-0002",
        Value::map([
            ("amount", Value::Int(5_000)),
            ("beneficiary", "initech".into()),
        ]),
        vec![],
    );
    file(&survivor_client, survivor, &payout3).await?;
    wait_for_subject(
        &survivor_client,
        "settlement",
        "stl-0002",
        "the new leader's payout execution",
        |s| s.state == "paid",
    )
    .await?;
    println!("  the new leader's agent executed stl-0002's payout");

    step(&format!(
        "restarting node {old_leader} from its data directory"
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
    let payouts = rail.payouts();
    println!(
        "\n  the rail saw {} payouts; requests per idempotency key: {:?}",
        payouts.len(),
        payouts.values().map(|p| p.requests).collect::<Vec<_>>()
    );
    // Paid: stl-0001's payout, the deferred payout its deposit released, the petition's
    // payout to stl-0100 (its payout to the closed account is declined, so not paid), and
    // stl-0002's after the failover. One payout per idempotency key, however many requests
    // (a new leader may re-send one whose answer the old leader never recorded).
    const PAYOUTS_PAID: usize = 4;
    if payouts.len() != PAYOUTS_PAID {
        bail!(
            "expected {PAYOUTS_PAID} payouts on the rail, saw {}",
            payouts.len()
        );
    }
    println!("  all three replicas hold the same ledger and state hash");
    Ok(())
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
