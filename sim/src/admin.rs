//! The operator: writes genesis once the cluster has formed, then changes membership
//! (add a learner, promote it, remove a voter) through the client API while the faults run;
//! and, after healing, the liveness probe.

use std::collections::BTreeSet;
use std::time::Duration;

use docket_core::{dev, LedgerId, Value};
use docket_raft::NodeId;
use rand::seq::SliceRandom;
use rand::Rng;

use docket_service::admin::AdminOp;
use docket_service::ErrorCode;

use crate::api::{self, Envelope, Request, Response};
use crate::config::{rng, salt, INITIAL_VOTERS};
use crate::workload;
use crate::world::{host_name, node_addr, now, World, API_PORT, CLUSTER_ID};

/// Deadline of an admin call (membership changes wait for two commits).
pub const ADMIN_DEADLINE: Duration = Duration::from_secs(5);

fn api_addr(node: NodeId) -> String {
    format!("{}:{API_PORT}", host_name(node))
}

/// Voters and all members according to the most advanced running node.
fn membership(world: &World) -> Option<(BTreeSet<NodeId>, BTreeSet<NodeId>)> {
    let w = world.borrow();
    let best = w
        .nodes
        .values()
        .filter_map(|slot| slot.raft.as_ref())
        .map(|raft| raft.metrics().borrow().clone())
        .max_by_key(|m| (m.state == openraft::ServerState::Leader, m.last_applied))?;
    let membership = best.membership_config.membership();
    Some((
        membership.voter_ids().collect(),
        membership.nodes().map(|(id, _)| *id).collect(),
    ))
}

pub async fn run_admin(world: World) -> turmoil::Result {
    let (seed, nodes, churn) = {
        let w = world.borrow();
        (w.derived.seed, w.config.nodes, w.config.faults.membership)
    };
    let mut rng = rng(seed, salt::MEMBERSHIP);
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Governed init, signed by the operator for a node, until it is written or refused as
    // done. Only the leader can write genesis, and a request names the node that runs it,
    // so one sent elsewhere is refused (forwarded to the leader, which is not the node it
    // names) and another node is tried.
    let ledger = LedgerId::new(CLUSTER_ID).expect("invariant: valid ledger id");
    let version =
        docket_service::admin::constitution_version(docket_core::constitution::DEFAULT_DOCUMENT)
            .expect("invariant: the default constitution parses");
    loop {
        let node = rng.gen_range(1..=INITIAL_VOTERS);
        let op = AdminOp::Init {
            constitution: version.clone(),
            node,
            cosigner: docket_core::proposal::public_key(&crate::node::cosigner_key(node)),
        };
        let signed = op.sign(
            &ledger,
            api::ledger_now().0,
            node,
            &dev::signing_key(dev::OPERATOR),
        );
        let envelope = Envelope {
            forwarded: false,
            request: Request::Init(Box::new(signed)),
        };
        let response = api::call(&api_addr(node), &envelope, ADMIN_DEADLINE).await;
        world
            .borrow_mut()
            .trace_now(format_args!("admin init via n{node} -> {response:?}"));
        match response {
            Response::Done => break,
            Response::Error {
                code: ErrorCode::AlreadyInitialized,
                ..
            } => break,
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    if !churn {
        return Ok(());
    }
    while !world.borrow().stop_workload {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(600..2_000))).await;
        if world.borrow().stop_workload {
            break;
        }
        let Some((voters, members)) = membership(&world) else {
            continue;
        };
        let learners: Vec<NodeId> = members.difference(&voters).copied().collect();
        let outsiders: Vec<NodeId> = (1..=nodes).filter(|n| !members.contains(n)).collect();
        let voters: Vec<NodeId> = voters.into_iter().collect();
        // The operator's worst mistake: with a voter down, removing a running one. The
        // guardrail must refuse it whenever the voters left could not form a quorum.
        let (up, down): (Vec<NodeId>, Vec<NodeId>) = {
            let w = world.borrow();
            voters
                .iter()
                .partition(|v| w.nodes.get(v).is_some_and(|slot| slot.up))
        };
        let op = match rng.gen_range(0..4) {
            3 if !down.is_empty() && !up.is_empty() => AdminOp::MemberRemove {
                node: *up.choose(&mut rng).expect("non-empty"),
            },
            0 if !outsiders.is_empty() => {
                let node = *outsiders.choose(&mut rng).expect("non-empty");
                let addr = node_addr(node);
                AdminOp::MemberAdd {
                    node,
                    raft_addr: addr.raft_addr,
                    api_addr: addr.api_addr,
                    learner: true,
                    cosigner: docket_core::proposal::public_key(&crate::node::cosigner_key(node)),
                }
            }
            1 if !learners.is_empty() => AdminOp::MemberPromote {
                node: *learners.choose(&mut rng).expect("non-empty"),
            },
            // Keep at least three voters with five nodes, at least two with three.
            2 if voters.len() > 3 || (nodes == 3 && voters.len() == 3) => AdminOp::MemberRemove {
                node: *voters.choose(&mut rng).expect("non-empty"),
            },
            _ => continue,
        };
        // Signed as the default constitution's operator, issued by the simulated clock.
        let ledger = LedgerId::new(CLUSTER_ID).expect("invariant: valid ledger id");
        let signed = op.sign(
            &ledger,
            api::ledger_now().0,
            rng.gen(),
            &dev::signing_key(dev::OPERATOR),
        );
        let request = Request::Admin(Box::new(signed));
        let node = rng.gen_range(1..=nodes);
        let envelope = Envelope {
            forwarded: false,
            request: request.clone(),
        };
        world.borrow_mut().trace_now(format_args!(
            "admin {} {} via n{node}",
            op.action(),
            op.subject()
        ));
        let response = api::call(&api_addr(node), &envelope, ADMIN_DEADLINE).await;
        world.borrow_mut().trace_now(format_args!(
            "admin {} {} -> {response:?}",
            op.action(),
            op.subject()
        ));
    }
    Ok(())
}

/// After healing: files one fresh proposal until it is acknowledged.
pub async fn run_probe(world: World) -> turmoil::Result {
    let (seed, nodes) = {
        let w = world.borrow();
        (w.derived.seed, w.config.nodes)
    };
    let mut rng = rng(seed, salt::WORKLOAD ^ 0x0070_726f_6265);
    let ledger = LedgerId::new(CLUSTER_ID).expect("invariant: valid ledger id");
    let proposal = dev::proposal(
        &ledger,
        "bob",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        "stl-probe",
        Value::map([("amount", Value::Int(1)), ("currency", "EUR".into())]),
        vec![],
        u64::MAX,
    );
    loop {
        if workload::submit(&world, u32::MAX, &mut rng, nodes, &proposal)
            .await
            .is_some()
        {
            world.borrow_mut().probe.acked_at = Some(now());
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
