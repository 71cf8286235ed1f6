//! A dry run answers the decision the constitution would record, from any node, and
//! records nothing: an unauthorized proposal, an admitted one, one that breaks an
//! invariant; once recorded, the same id says so.

mod common;

use common::{api_error, client, deposit, formed_cluster, ledger_id};
use docket_core::{dev, Decision, RejectCode, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_decides_and_records_nothing() {
    let (_dir, cluster) = formed_cluster("dry-run", 3, &[]).await;
    let ledger = ledger_id(&cluster);
    let leader = cluster.leader().await.expect("leader");
    let follower = [1, 2, 3]
        .into_iter()
        .find(|id| *id != leader)
        .expect("follower");
    let c = client(&cluster.node(follower).url());
    let length = |c: &docket_node::client::Client| {
        let c = c.clone();
        async move { c.status().await.expect("status").ledger_length }
    };
    let before = length(&c).await;

    let forged = deposit(&ledger, "mallory", "dry-1", 10);
    let view = c.dry_run(&forged).await.expect("dry run");
    assert!(
        matches!(&view.decision, Decision::Reject(r) if r.code == RejectCode::Unauthorized),
        "{view:?}"
    );
    assert_eq!(view.access.principal.as_deref(), Some("mallory"));

    let honest = deposit(&ledger, "alice", "dry-1", 10);
    let view = c.dry_run(&honest).await.expect("dry run");
    assert_eq!(view.decision, Decision::Admit);
    assert!(!view.recorded);
    assert_eq!(view.ledger_length, before);

    let overdraft = dev::proposal(
        &ledger,
        "alice",
        "SETTLEMENT.PAYOUT_REQUESTED",
        "dry-1",
        Value::map([("amount", Value::Int(5)), ("beneficiary", "x".into())]),
        vec![],
        1,
    );
    let view = c.dry_run(&overdraft).await.expect("dry run");
    assert!(matches!(view.decision, Decision::Reject(_)), "{view:?}");
    assert_eq!(length(&c).await, before, "dry runs record nothing");

    let recorded = c.submit(&honest).await.expect("submit");
    assert_eq!(recorded.id, honest.id());
    let view = c.dry_run(&honest).await.expect("dry run");
    assert!(view.recorded, "the id is recorded now");

    let admin = docket_service::admin::AdminOp::MemberRemove { node: 3 }.sign(
        &ledger,
        0,
        1,
        &dev::signing_key(dev::OPERATOR),
    );
    let (_, body) = api_error(c.dry_run(&admin).await, "ADMIN_ROUTE_REQUIRED");
    assert_eq!(body.code, "ADMIN_ROUTE_REQUIRED");
}
