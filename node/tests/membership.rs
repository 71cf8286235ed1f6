//! Membership changes on a real cluster: a node added after log compaction catches up by
//! snapshot; removal works; the guardrails refuse changes that would lose quorum or the last
//! voter; adding a node nobody listens for fails fast.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{
    api_error, assert_all_present, client, deposit, formed_cluster, ledger_id, phase, status,
    wait_for, WAIT_TIMEOUT_MS,
};
use docket_core::{LedgerEntry, ProposalId};
use docket_node::local_cluster::operator_key;
use docket_node::wire::{AddMemberRequest, MemberView};

/// Proposals written before the fourth node joins: six snapshots' worth at the threshold
/// below, so the log it would need has long been purged.
const PROPOSALS_BEFORE_JOIN: usize = 300;

/// Concurrent writers of those proposals (group commit may merge their writes, so fewer
/// log entries than proposals; still several times the snapshot threshold).
const WRITERS: usize = 2;

fn ids(members: &[MemberView]) -> (BTreeSet<u64>, BTreeSet<u64>) {
    let voters = members.iter().filter(|m| m.voter).map(|m| m.id).collect();
    let learners = members.iter().filter(|m| !m.voter).map(|m| m.id).collect();
    (voters, learners)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_added_after_compaction_catches_up_by_snapshot_then_one_is_removed() {
    let start = Instant::now();
    let (_dir, mut cluster) = formed_cluster(
        "member-snap",
        3,
        &[
            ("DOCKET_RAFT_SNAPSHOT_LOGS_SINCE_LAST", "50"),
            ("DOCKET_RAFT_MAX_IN_SNAPSHOT_LOG_TO_KEEP", "0"),
            ("DOCKET_RAFT_LOG_KEEP_MB", "0"),
            // The snapshot assertions read info lines from the nodes' logs.
            ("DOCKET_LOG", "info"),
        ],
    )
    .await;
    let ledger = ledger_id(&cluster);
    let leader = cluster.leader().await.expect("leader");
    let leader_client = client(&cluster.node(leader).url());

    phase(
        start,
        &format!("writing {PROPOSALS_BEFORE_JOIN} proposals (snapshot every 50 log entries)"),
    );
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let (c, ledger) = (leader_client.clone(), ledger.clone());
        writers.spawn(async move {
            let mut acked = Vec::new();
            for n in (w..PROPOSALS_BEFORE_JOIN).step_by(WRITERS) {
                let p = deposit(&ledger, "alice", &format!("snap-{n}"), 1 + n as i64);
                let r = c.submit(&p).await.expect("write before join");
                acked.push((r.id, r.entry));
            }
            acked
        });
    }
    let mut acked: Vec<(ProposalId, LedgerEntry)> = Vec::new();
    while let Some(part) = writers.join_next().await {
        acked.extend(part.expect("writer task"));
    }
    assert_eq!(acked.len(), PROPOSALS_BEFORE_JOIN);
    let before = cluster.converged().await.expect("converged before join");
    let log_index = status(&cluster, leader).await.last_log_index.unwrap_or(0);
    assert!(
        log_index > 100,
        "several snapshot intervals of raft log: {log_index}"
    );
    let leader_log = std::fs::read_to_string(cluster.node(leader).log_path()).expect("leader log");
    assert!(
        leader_log.contains("built snapshot"),
        "the leader built a snapshot (compacting its log)"
    );

    phase(
        start,
        "adding node 4: joins as a learner, catches up, is promoted",
    );
    let new = cluster.add_slot().expect("slot for node 4");
    assert_eq!(new, 4);
    cluster.start(new).await.expect("start node 4");
    let request = AddMemberRequest {
        id: new,
        raft_addr: cluster.node(new).raft_addr.clone(),
        api_addr: cluster.node(new).api_addr.clone(),
        learner: false,
    };
    // Sent to a follower on purpose: membership changes are forwarded to the leader too.
    let follower = cluster
        .nodes
        .iter()
        .map(|n| n.id)
        .find(|id| *id != leader && *id != new);
    let via = follower.expect("a follower");
    let added = client(&cluster.node(via).url())
        .add_member_as(request, &operator_key())
        .await
        .expect("add node 4");
    let members = added.members;
    assert_eq!(ids(&members), ([1, 2, 3, 4].into(), BTreeSet::new()));
    // The request was recorded (one entry) before the change: who, under which rule.
    let recorded = added.recorded.expect("the add names its ledger entry");
    assert_eq!(recorded.index.0, before[0].ledger_length);
    let entry = client(&cluster.node(leader).url())
        .ledger(recorded.index.0, 1)
        .await
        .expect("read the record")
        .entries
        .remove(0);
    let record = entry.decision_record().expect("a decision record");
    assert_eq!(record.proposal.proposal.action, "CLUSTER.MEMBER_ADD");
    assert_eq!(record.proposal.proposal.subject, "node-4");
    assert_eq!(record.decision, docket_core::Decision::Admit);
    assert_eq!(record.access.principal.as_deref(), Some("oscar"));
    assert_eq!(record.access.role.as_deref(), Some("operator"));

    let statuses = cluster.converged().await.expect("four nodes converge");
    assert_eq!(statuses.len(), 4);
    let joined = status(&cluster, new).await;
    assert_eq!(joined.ledger_length, before[0].ledger_length + 1);
    assert_eq!(joined.state_hash, statuses[0].state_hash);
    let new_log = std::fs::read_to_string(cluster.node(new).log_path()).expect("node 4 log");
    assert!(
        new_log.contains("installed snapshot"),
        "node 4 caught up by installing a snapshot (the log it needed was purged)"
    );
    assert_all_present(&cluster, &acked).await;

    phase(
        start,
        "removing voter node 2 (every other voter is healthy)",
    );
    let removed = 2;
    let remover = if leader == removed { 1 } else { leader };
    let members = client(&cluster.node(remover).url())
        .remove_member_as(removed, &operator_key())
        .await
        .expect("remove node 2")
        .members;
    assert_eq!(ids(&members), ([1, 3, 4].into(), BTreeSet::new()));

    phase(
        start,
        "the removed node learns it, stops campaigning and refuses clients",
    );
    let gone = client(&cluster.node(removed).url());
    let deadline = Instant::now() + Duration::from_secs(20);
    let seen = loop {
        let s = gone
            .status()
            .await
            .expect("the removed node answers status");
        if s.role == "removed" {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "node 2 does not know it was removed: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Several election timeouts: a removed voter that still campaigned would move on.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = gone.status().await.expect("status");
    assert_eq!(later.role, "removed");
    assert_eq!(
        later.term, seen.term,
        "the removed node's term still climbs"
    );
    let (status, body) = api_error(
        gone.submit(&deposit(&ledger, "bob", "to-a-removed-node", 1))
            .await,
        "REMOVED",
    );
    assert_eq!(status, 410, "{body:?}");
    assert!(body.message.contains("was removed"), "{}", body.message);
    cluster.kill(removed).await.expect("stop the removed node");
    let leader = cluster.leader().await.expect("leader after removal");
    let seen = client(&cluster.node(leader).url())
        .members()
        .await
        .expect("members")
        .members;
    assert_eq!(ids(&seen), ([1, 3, 4].into(), BTreeSet::new()));
    let after = client(&cluster.node(new).url())
        .submit(&deposit(&ledger, "bob", "snap-after", 1))
        .await
        .expect("write after removal, at node 4");
    // After the two recorded cluster operations (add node 4, remove node 2).
    assert_eq!(after.entry.index.0, before[0].ledger_length + 2);
    let statuses = cluster.converged().await.expect("three nodes converge");
    assert_eq!(statuses.len(), 3);
    phase(start, "done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_guardrails_with_a_dead_voter() {
    let start = Instant::now();
    let (_dir, mut cluster) = formed_cluster("member-guard", 3, &[]).await;
    let ledger = ledger_id(&cluster);
    let leader = cluster.leader().await.expect("leader");
    let leader_client = client(&cluster.node(leader).url());
    leader_client
        .submit(&deposit(&ledger, "alice", "guard-1", 1))
        .await
        .expect("a write");
    let before = cluster.converged().await.expect("converged");
    let followers: Vec<u64> = cluster
        .nodes
        .iter()
        .map(|n| n.id)
        .filter(|id| *id != leader)
        .collect();
    let (dead, healthy) = (followers[0], followers[1]);

    phase(
        start,
        &format!("SIGKILL of follower {dead}; no writes follow, so its lag stays 0"),
    );
    cluster.kill(dead).await.expect("kill follower");

    phase(
        start,
        &format!("removing healthy voter {healthy} is refused: 1 of 2 would be healthy"),
    );
    let (code, body) = api_error(
        leader_client
            .remove_member_as(healthy, &operator_key())
            .await,
        "UNSAFE_MEMBERSHIP_CHANGE",
    );
    assert_eq!(
        (code, body.code.as_str()),
        (409, "UNSAFE_MEMBERSHIP_CHANGE"),
        "{}",
        body.message
    );
    assert!(
        body.message
            .contains(&format!("nodes [{dead}] are unreachable")),
        "names the dead node: {}",
        body.message
    );
    let members = leader_client.members().await.expect("members").members;
    assert_eq!(ids(&members).0, [1, 2, 3].into(), "membership unchanged");

    phase(start, &format!("removing the dead voter {dead} succeeds"));
    let members = leader_client
        .remove_member_as(dead, &operator_key())
        .await
        .expect("remove the dead node")
        .members;
    let expected: BTreeSet<u64> = [leader, healthy].into();
    assert_eq!(ids(&members), (expected.clone(), BTreeSet::new()));

    phase(start, "the two remaining voters still commit");
    let after = leader_client
        .submit(&deposit(&ledger, "alice", "guard-2", 2))
        .await
        .expect("write after removal");
    // The removal's record, then this write.
    assert_eq!(after.entry.index.0, before[0].ledger_length + 1);
    let statuses = cluster.converged().await.expect("converged");
    assert_eq!(statuses.len(), 2);
    let seen = client(&cluster.node(healthy).url())
        .members()
        .await
        .expect("members at the follower")
        .members;
    assert_eq!(
        ids(&seen).0,
        expected,
        "the follower sees the same membership"
    );
    phase(start, "done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_voter_is_kept_and_unreachable_members_fail_fast() {
    let start = Instant::now();
    let (_dir, cluster) = formed_cluster("member-last", 1, &[]).await;
    let c = client(&cluster.node(1).url());
    let before = status(&cluster, 1).await;

    phase(start, "removing the only voter is refused");
    let (code, body) = api_error(
        c.remove_member_as(1, &operator_key()).await,
        "UNSAFE_MEMBERSHIP_CHANGE",
    );
    assert_eq!(
        (code, body.code.as_str()),
        (409, "UNSAFE_MEMBERSHIP_CHANGE"),
        "{}",
        body.message
    );
    assert!(body.message.contains("last voter"), "{}", body.message);

    phase(
        start,
        "adding a node whose raft address nobody listens on fails fast",
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let asked = Instant::now();
    // Signed by hand: the CLI's client would not get this far (it asks the node for its
    // checkpoint key first); the guardrail is the server's.
    let result = c
        .add_member(Some(
            signed_add(
                &c,
                AddMemberRequest {
                    id: 7,
                    raft_addr: format!("127.0.0.1:{port}"),
                    api_addr: "127.0.0.1:9".into(),
                    learner: false,
                },
            )
            .await,
        ))
        .await;
    let took = asked.elapsed();
    let (code, body) = api_error(result, "MEMBER_UNREACHABLE");
    assert_eq!(
        (code, body.code.as_str()),
        (502, "MEMBER_UNREACHABLE"),
        "{}",
        body.message
    );
    assert!(body.message.contains(&port.to_string()), "{}", body.message);
    assert!(took < Duration::from_secs(3), "answered in {took:?}");

    phase(start, "membership and ledger are unchanged");
    let members = c.members().await.expect("members").members;
    assert_eq!(ids(&members), ([1].into(), BTreeSet::new()));
    let after = wait_for("node 1 still leads", WAIT_TIMEOUT_MS, || async {
        let s = status(&cluster, 1).await;
        if s.role == "leader" {
            Ok(s)
        } else {
            Err(s.role)
        }
    })
    .await;
    assert_eq!(
        (after.ledger_length, after.state_hash),
        (before.ledger_length, before.state_hash)
    );
    phase(start, "done");
}

/// A node initialized on its own (`cluster init` run against it by mistake) holds another
/// genesis; adding it would make it a learner serving its own history. `member add`
/// refuses it, naming the reason, and the cluster's membership, ledger and state hash are
/// unchanged. A fresh node, and this cluster's own member re-added, still join.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_history_is_refused_and_a_fresh_node_joins() {
    let start = Instant::now();
    let (_dir, mut cluster) = formed_cluster("member-history", 2, &[]).await;
    let ledger = ledger_id(&cluster);
    let leader = cluster.leader().await.expect("leader");
    let c = client(&cluster.node(leader).url());
    c.submit(&deposit(&ledger, "alice", "history-0", 5))
        .await
        .expect("a write");
    let before = cluster.converged().await.expect("converged");

    phase(start, "node 3 initialized on its own, then added");
    let rogue = cluster.add_slot().expect("slot for node 3");
    cluster.start(rogue).await.expect("start node 3");
    client(&cluster.node(rogue).url())
        .init_as(None, &operator_key())
        .await
        .expect("node 3 initialized alone");
    let (status, body) = api_error(
        c.add_member_as(add_request(&cluster, rogue), &operator_key())
            .await,
        "MEMBER_HAS_OTHER_HISTORY",
    );
    assert_eq!(
        (status, body.code.as_str()),
        (409, "MEMBER_HAS_OTHER_HISTORY"),
        "{}",
        body.message
    );
    assert!(body.message.contains("genesis entry"), "{}", body.message);
    let members = c.members().await.expect("members").members;
    assert_eq!(ids(&members), (BTreeSet::from([1, 2]), BTreeSet::new()));
    let after = vec![
        common::status(&cluster, 1).await,
        common::status(&cluster, 2).await,
    ];
    assert_eq!(
        common::positions(&after),
        common::positions(&before),
        "nothing changed on the cluster's nodes"
    );

    phase(
        start,
        "a fresh node 4 joins; the api_addr of another node is refused",
    );
    let fresh = cluster.add_slot().expect("slot for node 4");
    cluster.start(fresh).await.expect("start node 4");
    let mut wrong = add_request(&cluster, fresh);
    wrong.api_addr = cluster.node(rogue).api_addr.clone();
    let (status, body) = api_error(
        c.add_member(Some(signed_add(&c, wrong).await)).await,
        "MALFORMED_REQUEST",
    );
    assert_eq!((status, body.code.as_str()), (400, "MALFORMED_REQUEST"));
    assert!(
        body.message.contains("answers as node 3"),
        "{}",
        body.message
    );
    c.add_member_as(add_request(&cluster, fresh), &operator_key())
        .await
        .expect("a fresh node joins");
    let members = c.members().await.expect("members").members;
    assert_eq!(ids(&members).0, BTreeSet::from([1, 2, 4]));
    cluster.kill(rogue).await.expect("stop node 3");
    cluster
        .converged()
        .await
        .expect("node 4 has the cluster's ledger");

    phase(
        start,
        "node 4, this cluster's own member, is re-added after removal",
    );
    c.remove_member_as(fresh, &operator_key())
        .await
        .expect("remove node 4");
    c.add_member_as(add_request(&cluster, fresh), &operator_key())
        .await
        .expect("the cluster's own former member rejoins");
    let members = c.members().await.expect("members").members;
    assert_eq!(ids(&members).0, BTreeSet::from([1, 2, 4]));
}

/// A `CLUSTER.MEMBER_ADD` for `request` signed by the operator, declaring a placeholder
/// checkpoint key: for requests the server must refuse before it looks at the key.
async fn signed_add(
    c: &docket_node::client::Client,
    request: AddMemberRequest,
) -> docket_core::SignedProposal {
    let op = docket_service::admin::AdminOp::MemberAdd {
        node: request.id,
        raft_addr: request.raft_addr,
        api_addr: request.api_addr,
        learner: request.learner,
        cosigner: docket_core::dev::key("alice"),
    };
    c.sign_admin(&op, &operator_key()).await.expect("sign")
}

fn add_request(cluster: &docket_node::local_cluster::LocalCluster, id: u64) -> AddMemberRequest {
    cluster.node(id).add_request()
}

/// `member add` that stops waiting for the new node to catch up (a catch-up timeout of
/// 1 ms) answers at once with the node a learner and its promotion pending; the leader then
/// makes it a voter by itself, under the recorded request (which asked for a voter). An
/// explicit learner (`--learner`) is left a learner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_the_ledger_asked_to_be_a_voter_is_promoted_once_caught_up() {
    let (_dir, mut cluster) =
        formed_cluster("promote", 3, &[("DOCKET_LIMITS_CATCH_UP_TIMEOUT_MS", "1")]).await;
    let leader = cluster.leader().await.expect("leader");
    let c = client(&cluster.node(leader).url());
    let ledger = ledger_id(&cluster);
    // Twice as many log entries as a caught-up member may lag by, one at a time, so the
    // new node cannot have caught up by the time `member add` looks again (it sleeps
    // 100 ms between looks, in which a fresh node replicates a few hundred entries).
    for i in 0..(2 * docket_service::LAG_HEALTHY_MAX + 100) {
        c.submit(&deposit(&ledger, "alice", &format!("promote-{i}"), 5))
            .await
            .expect("deposit");
    }

    let four = cluster.add_slot().expect("slot 4");
    cluster.start(four).await.expect("start node 4");
    let added = c
        .add_member_as(add_request(&cluster, four), &operator_key())
        .await
        .expect("the add returns once node 4 is a learner");
    assert_eq!(added.promotion_pending, Some(four), "{added:?}");
    assert!(
        added.members.iter().any(|m| m.id == four && !m.voter),
        "a learner for now: {added:?}"
    );
    wait_for("node 4 promoted by the leader", WAIT_TIMEOUT_MS, || {
        let c = c.clone();
        async move {
            let members = c.members().await.map_err(|e| e.to_string())?.members;
            if members.iter().any(|m| m.id == 4 && m.voter) {
                Ok(())
            } else {
                Err(format!("members: {members:?}"))
            }
        }
    })
    .await;

    let five = cluster.add_slot().expect("slot 5");
    cluster.start(five).await.expect("start node 5");
    let mut request = add_request(&cluster, five);
    request.learner = true;
    let added = c
        .add_member_as(request, &operator_key())
        .await
        .expect("an explicit learner is added");
    assert_eq!(
        added.promotion_pending, None,
        "a permanent learner awaits no promotion"
    );
    wait_for("node 5 caught up", WAIT_TIMEOUT_MS, || {
        let c = c.clone();
        async move {
            let members = c.members().await.map_err(|e| e.to_string())?.members;
            if members
                .iter()
                .any(|m| m.id == 5 && m.lag.is_some_and(|lag| lag < 10))
            {
                Ok(())
            } else {
                Err(format!("members: {members:?}"))
            }
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(
        3 * docket_service::membership::PROMOTE_CHECK_MS,
    ))
    .await;
    let members = c.members().await.expect("members").members;
    assert_eq!(
        ids(&members),
        ([1, 2, 3, 4].into(), [5].into()),
        "the explicit learner stays a learner"
    );
}
