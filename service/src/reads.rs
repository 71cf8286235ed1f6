//! Linearizable reads on every node: read-index rounds, shared by concurrent reads.
//!
//! **A round** establishes a read index and waits until this node has applied it. On the
//! leader that is openraft's `ensure_linearizable` (confirm leadership with a heartbeat
//! round to a quorum; read index = the larger of the commit index then and the leader's
//! first entry of its term). On a follower or learner it is
//! the read-index protocol of etcd and the Raft thesis (§6.4): ask the leader for a read
//! index ([`Peers::read_index`]: the node asks `GET /v1/internal/read-index`, the
//! simulator its own request; either runs `get_read_log_id` there), then wait
//! until the local state machine has applied that index, and serve the read from local
//! state. So a follower serves its own reads; the leader answers one small request per
//! round instead of carrying every read (and shares one quorum round among the rounds of
//! all followers queued behind it: [`LeaderReadIndex`]). If the leader cannot be asked (none known, it
//! moved, it timed out), the round fails with `NOT_LEADER` naming the leader and the
//! transport forwards the whole read there.
//!
//! **Coalescing**: one round per read would make a quorum round trip the cost of every
//! read. Instead reads queue here; a driver runs one round for everyone queued *before
//! the round started*, then the next round for those who arrived meanwhile.
//!
//! Why that is linearizable: a round that starts at time `s` takes its read index from
//! the leader's commit index at or after `s` (on a follower: the leader's check begins
//! after the follower's request, which begins after `s`), so it covers every write
//! acknowledged before `s`. A read that arrived at `t <= s` therefore sees every write
//! acknowledged before it began. A read never joins a round already in flight (that round
//! may have taken its read index before the read arrived) —
//! `a_read_never_joins_a_round_in_flight` pins it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use docket_core::EntryHash;
use docket_raft::network::GenesisCell;
use docket_raft::{LogId, NodeId, Raft, Replica};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::error::{ErrorCode, ServiceError};
use crate::peers::Peers;

/// Outcome of a read-index round, shared by every read it served: the read index (a Raft
/// log index this node has applied; `None`: nothing committed yet).
pub type RoundResult = Result<Option<u64>, ServiceError>;

/// The leader's answer to a follower asking for its read index.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReadIndexResponse {
    /// The Raft log index a read must wait for (`None`: nothing committed yet).
    pub read_index: Option<u64>,
    /// The leader's log id at `read_index` (term, leader and index): a follower whose own
    /// log holds another entry there must not serve the read.
    #[serde(default)]
    pub read_log_id: Option<LogId>,
    /// The leader's genesis entry hash: a follower whose own differs holds another
    /// history and must not serve the read.
    #[serde(default)]
    pub genesis: Option<EntryHash>,
}

/// The error for two nodes of one cluster id holding different genesis entries.
pub fn other_history(
    node: NodeId,
    ours: EntryHash,
    other: NodeId,
    theirs: EntryHash,
) -> ServiceError {
    ServiceError::new(
        ErrorCode::MemberHasOtherHistory,
        format!(
            "node {node} holds genesis entry {ours}, node {other} holds {theirs}: one of them \
             holds a history that is not this cluster's (initialized on its own, or by another \
             cluster). Stop that node, move its data directory away, start it empty and add \
             it again"
        ),
    )
}

/// The error for a follower whose log at the read index is not the leader's.
pub fn other_entry(node: NodeId, ours: LogId, leader: NodeId, theirs: LogId) -> ServiceError {
    ServiceError::new(
        ErrorCode::MemberHasOtherHistory,
        format!(
            "node {node} holds log entry {ours} where leader {leader} holds {theirs}: its log \
             is not the leader's, so it serves no linearizable read. Stop node {node}, move its \
             data directory away, start it empty and add it again"
        ),
    )
}

/// Reads waiting for the next round, at most. Past it, a caller runs a round of its own
/// rather than queue without bound (the API's in-flight limit is far below it).
pub const READS_QUEUED_MAX: usize = 65_536;

type Round<T> = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = T> + Send>> + Send + Sync>;

struct Queue<T> {
    waiting: Vec<oneshot::Sender<T>>,
    /// A driver task is running rounds.
    driving: bool,
}

/// Shares rounds among concurrent callers: each round serves exactly the callers queued
/// before it started. Cheap to clone.
pub struct Coalescer<T> {
    round: Round<T>,
    queue: Arc<Mutex<Queue<T>>>,
    /// Negative control only: callers that arrive while a round is in flight are served by
    /// it (a round that may have taken its read index before they arrived).
    join_in_flight: bool,
}

impl<T> Clone for Coalescer<T> {
    fn clone(&self) -> Self {
        Coalescer {
            round: self.round.clone(),
            queue: self.queue.clone(),
            join_in_flight: self.join_in_flight,
        }
    }
}

impl<T> std::fmt::Debug for Coalescer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("Coalescer").finish_non_exhaustive()
    }
}

/// Linearizable reads through the read index, on the leader or from it.
pub type ReadIndex = Coalescer<RoundResult>;

impl ReadIndex {
    /// Rounds for node `id`: `peers` asks the leader for its read index, and every step
    /// (the leader's answer, the local apply) has `deadline`.
    pub fn for_node(
        raft: Raft,
        replica: Replica,
        id: NodeId,
        genesis: GenesisCell,
        peers: Arc<dyn Peers>,
        deadline: Duration,
    ) -> ReadIndex {
        Coalescer::new(Arc::new(move || {
            let (raft, replica, peers, genesis) = (
                raft.clone(),
                replica.clone(),
                peers.clone(),
                genesis.clone(),
            );
            Box::pin(async move {
                let node = Node {
                    raft: &raft,
                    replica: &replica,
                    id,
                    genesis: &genesis,
                };
                round(node, peers.as_ref(), deadline).await
            })
        }))
    }
}

/// The leader's side of follower reads: read indexes for followers' requests, one
/// `get_read_log_id` round (a quorum heartbeat) shared by every request queued before it
/// started — the same rule as [`ReadIndex`], so each answer still covers every write
/// acknowledged before its request arrived.
pub type LeaderReadIndex = Coalescer<Result<Option<LogId>, ServiceError>>;

impl LeaderReadIndex {
    pub fn for_raft(raft: Raft) -> LeaderReadIndex {
        Coalescer::new(Arc::new(move || {
            let raft = raft.clone();
            Box::pin(async move {
                metrics::counter!(
                    crate::telemetry::READ_INDEX_ROUNDS_TOTAL,
                    "role" => "leader_for_followers"
                )
                .increment(1);
                raft.get_read_log_id()
                    .await
                    .map(|(read, _applied)| read)
                    .map_err(|e| ServiceError::from_check(e, "read indexes come from the leader"))
            })
        }))
    }
}

/// The leader's id and API address, as this node's Raft metrics know them.
pub fn leader(raft: &Raft) -> Option<(NodeId, Option<String>)> {
    let metrics = raft.metrics();
    let metrics = metrics.borrow();
    let leader = metrics.current_leader?;
    let api = metrics
        .membership_config
        .membership()
        .get_node(&leader)
        .map(|n| n.api_addr.clone());
    Some((leader, api))
}

/// What a round needs of this node.
struct Node<'a> {
    raft: &'a Raft,
    replica: &'a Replica,
    id: NodeId,
    genesis: &'a GenesisCell,
}

async fn round(node: Node<'_>, peers: &dyn Peers, deadline: Duration) -> RoundResult {
    let Node {
        raft,
        replica,
        id,
        genesis,
    } = node;
    let (leader_id, api) = match leader(raft) {
        Some((leader, _)) if leader == id => {
            metrics::counter!(crate::telemetry::READ_INDEX_ROUNDS_TOTAL, "role" => "leader")
                .increment(1);
            return raft
                .ensure_linearizable()
                .await
                .map(|read| read.map(|log_id| log_id.index))
                .map_err(|e| {
                    ServiceError::from_check(e, "linearizable reads are served by the leader")
                });
        }
        Some((leader, Some(api))) => (leader, api),
        Some((_, None)) | None => {
            return Err(ServiceError::not_leader(
                None,
                "no leader known to serve a linearizable read",
            ))
        }
    };
    let forward = || {
        ServiceError::not_leader(
            Some(api.clone()),
            "linearizable reads are served by the leader",
        )
    };
    metrics::counter!(crate::telemetry::READ_INDEX_ROUNDS_TOTAL, "role" => "follower").increment(1);
    let ours = genesis.get();
    let answer = peers
        .read_index(&api, ours, deadline)
        .await
        .map_err(|error| {
            tracing::debug!(%api, %error, "no read index from the leader; forwarding the read");
            forward()
        })?;
    if let (Some(ours), Some(theirs)) = (ours, answer.genesis) {
        if ours != theirs {
            tracing::error!(%ours, %theirs, leader = leader_id, "this node's genesis is not the leader's");
            return Err(other_history(id, ours, leader_id, theirs));
        }
    }
    let index = answer.read_index;
    raft.wait(Some(deadline))
        .applied_index_at_least(index, "follower read")
        .await
        .map_err(|error| {
            tracing::debug!(?index, %error, "did not apply the read index in time; forwarding");
            forward()
        })?;
    if let Some(theirs) = answer.read_log_id {
        same_entry_as_leader(replica, id, leader_id, theirs)?;
    }
    Ok(index)
}

/// Whether this node's log holds the leader's entry `theirs` at its index. Raft's log
/// matching makes this hold on every member; it is checked anyway, because a read served
/// from another history is the one failure a client cannot notice. An entry this node has
/// compacted into a snapshot since cannot be compared, and is not: it was applied, so it
/// was committed.
fn same_entry_as_leader(
    replica: &Replica,
    id: NodeId,
    leader: NodeId,
    theirs: LogId,
) -> Result<(), ServiceError> {
    let ours = replica.log_id_at(theirs.index).map_err(|error| {
        ServiceError::new(
            ErrorCode::Internal,
            format!("cannot read this node's log at the read index: {error}"),
        )
    })?;
    match ours {
        Some(ours) if ours != theirs => {
            tracing::error!(%ours, %theirs, leader, "this node's log at the read index is not the leader's");
            Err(other_entry(id, ours, leader, theirs))
        }
        _ => Ok(()),
    }
}

impl<T: Clone + Send + 'static> Coalescer<T> {
    pub fn new(round: Round<T>) -> Coalescer<T> {
        Coalescer {
            round,
            queue: Arc::new(Mutex::new(Queue {
                waiting: Vec::new(),
                driving: false,
            })),
            join_in_flight: false,
        }
    }

    /// Negative control only (the simulator's `LateJoinReads`): callers arriving while a
    /// round is in flight are served by that round. It may have taken its read index
    /// before they arrived, so a read can miss a write acknowledged before it began.
    #[doc(hidden)]
    pub fn joining_rounds_in_flight(mut self) -> Coalescer<T> {
        self.join_in_flight = true;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue<T>> {
        self.queue
            .lock()
            .expect("invariant: the queue lock is never held across a panic")
    }

    /// Waits for a round that started after this call began.
    pub async fn wait(&self) -> T {
        let (tx, rx) = oneshot::channel();
        // `None`: the queue is full; `Some(start)`: queued, and whether to start a driver.
        let queued = {
            let mut queue = self.lock();
            if queue.waiting.len() >= READS_QUEUED_MAX {
                None
            } else {
                queue.waiting.push(tx);
                Some(!std::mem::replace(&mut queue.driving, true))
            }
        };
        let Some(start_driver) = queued else {
            return (self.round)().await;
        };
        if start_driver {
            let this = self.clone();
            crate::spawn(async move { this.drive().await });
        }
        match rx.await {
            Ok(result) => result,
            // The driver was dropped with the runtime (shutdown): run a round ourselves.
            Err(_) => (self.round)().await,
        }
    }

    async fn drive(&self) {
        loop {
            let waiting = {
                let mut queue = self.lock();
                if queue.waiting.is_empty() {
                    queue.driving = false;
                    return;
                }
                if self.join_in_flight {
                    Vec::new()
                } else {
                    std::mem::take(&mut queue.waiting)
                }
            };
            let result = (self.round)().await;
            // The negative control takes its callers only now, late joiners included.
            let waiting = if self.join_in_flight {
                std::mem::take(&mut self.lock().waiting)
            } else {
                waiting
            };
            for waiter in waiting {
                let _ = waiter.send(result.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use tokio::sync::Semaphore;

    use super::*;

    fn log_id(term: u64, leader: NodeId, index: u64) -> LogId {
        LogId::new(openraft::CommittedLeaderId::new(term, leader), index)
    }

    /// A follower whose log holds another entry at the leader's read index refuses to
    /// serve; the same entry, or one it no longer holds, passes.
    #[test]
    fn a_follower_serves_only_from_the_leaders_entry_at_the_read_index() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (log_store, state_machine) = docket_raft::open(dir.path()).expect("store opens");
        let replica = state_machine.replica();
        log_store
            .store()
            .log_append((1..=3).map(|index| docket_raft::Entry {
                log_id: log_id(2, 1, index),
                payload: openraft::EntryPayload::Blank,
            }))
            .expect("appends");

        same_entry_as_leader(&replica, 2, 1, log_id(2, 1, 3)).expect("the leader's entry");
        same_entry_as_leader(&replica, 2, 1, log_id(7, 3, 9)).expect("an entry it lacks");
        let error = same_entry_as_leader(&replica, 2, 3, log_id(3, 3, 2))
            .expect_err("another term at index 2");
        assert_eq!(error.code, ErrorCode::MemberHasOtherHistory);
        assert!(
            error.message.contains("node 2 holds log entry"),
            "{}",
            error.message
        );
    }

    /// A round that reports its own number and finishes only when the test releases it.
    fn gated_rounds() -> (Coalescer<u64>, Arc<Semaphore>, Arc<AtomicU64>) {
        let gate = Arc::new(Semaphore::new(0));
        let started = Arc::new(AtomicU64::new(0));
        let (g, s) = (gate.clone(), started.clone());
        let coalescer = Coalescer::new(Arc::new(move || {
            let (gate, number) = (g.clone(), s.fetch_add(1, Ordering::SeqCst) + 1);
            Box::pin(async move {
                gate.acquire().await.expect("gate open").forget();
                number
            })
        }));
        (coalescer, gate, started)
    }

    async fn until(condition: impl Fn() -> bool) {
        for _ in 0..1000 {
            if condition() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("condition not reached");
    }

    #[tokio::test]
    async fn a_read_never_joins_a_round_in_flight() {
        let (reads, gate, started) = gated_rounds();
        let first = tokio::spawn({
            let reads = reads.clone();
            async move { reads.wait().await }
        });
        until(|| started.load(Ordering::SeqCst) == 1).await;
        // Round 1 is in flight: these arrive after it started and must wait for round 2.
        let late: Vec<_> = (0..5)
            .map(|_| {
                let reads = reads.clone();
                tokio::spawn(async move { reads.wait().await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(
            started.load(Ordering::SeqCst),
            1,
            "no second round while the first runs"
        );
        gate.add_permits(1);
        assert_eq!(first.await.expect("joined"), 1);
        until(|| started.load(Ordering::SeqCst) == 2).await;
        gate.add_permits(1);
        for read in late {
            assert_eq!(
                read.await.expect("joined"),
                2,
                "served by the round that started after it"
            );
        }
        // Idle again: the next read starts round 3.
        gate.add_permits(1);
        assert_eq!(reads.wait().await, 3);
    }

    #[tokio::test]
    async fn the_negative_control_lets_a_late_read_join_the_round_in_flight() {
        let (reads, gate, started) = gated_rounds();
        let reads = reads.joining_rounds_in_flight();
        let first = tokio::spawn({
            let reads = reads.clone();
            async move { reads.wait().await }
        });
        until(|| started.load(Ordering::SeqCst) == 1).await;
        let late = tokio::spawn({
            let reads = reads.clone();
            async move { reads.wait().await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        gate.add_permits(1);
        assert_eq!(first.await.expect("joined"), 1);
        assert_eq!(
            late.await.expect("joined"),
            1,
            "served by a round that began before it"
        );
    }
}
