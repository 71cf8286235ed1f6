//! Confirmed leadership, published for an execution agent: the one loop the node and the
//! simulator both run.
//!
//! "Leader in term T" is published only once the leadership is *confirmed* in T: a quorum
//! answered a read-index round and the state machine has applied everything up to the
//! read index, which is at least the first entry of T. Metrics alone are not enough: a
//! node reports itself leader as soon as it wins an election, while entries of earlier
//! terms, among them outcome records filed by the previous leader's agent, may still be
//! committed but not applied here. An agent that started its epoch then would find those
//! payouts still pending and perform them again.

use std::future::Future;
use std::time::Duration;

use docket_raft::{NodeAddr, NodeId, Raft};
use tokio::sync::watch;

use docket_execution::Leadership;

/// How the publisher waits: one confirmation round at most `confirm_timeout`; after a
/// failed one, the next no sooner than `retry` later (or when the leadership the metrics
/// show changes).
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub confirm_timeout: Duration,
    pub retry: Duration,
}

/// The channel an agent watches, and the task that feeds it until `raft` stops; the caller
/// spawns the task where its host's tasks live (`tokio::spawn`, or a simulated host's
/// `LocalSet`). `on_change(before, after)` sees every published change.
pub fn publisher(
    raft: Raft,
    id: NodeId,
    timing: Timing,
    mut on_change: impl FnMut(Leadership, Leadership) + 'static,
) -> (watch::Receiver<Leadership>, impl Future<Output = ()>) {
    let mut metrics = raft.metrics();
    let observe = move |m: &openraft::RaftMetrics<NodeId, NodeAddr>| Leadership {
        leader: m.current_leader == Some(id) && m.state == openraft::ServerState::Leader,
        term: m.current_term,
    };
    let first = observe(&metrics.borrow());
    let (tx, rx) = watch::channel(Leadership {
        leader: false,
        term: first.term,
    });
    let task = async move {
        let mut published = *tx.borrow();
        loop {
            let seen = observe(&metrics.borrow_and_update());
            // Metrics change with every applied entry; a leadership already confirmed in
            // this term needs no new round.
            let next = if !seen.leader || published == seen {
                seen
            } else {
                let confirm =
                    tokio::time::timeout(timing.confirm_timeout, raft.ensure_linearizable()).await;
                // Still the same leadership once confirmed (the term may have moved on).
                let confirmed = matches!(confirm, Ok(Ok(_))) && observe(&metrics.borrow()) == seen;
                Leadership {
                    leader: confirmed,
                    term: seen.term,
                }
            };
            if next != published {
                on_change(published, next);
            }
            published = next;
            tx.send_if_modified(|now| {
                let changed = *now != next;
                *now = next;
                changed
            });
            if seen.leader && !next.leader {
                // Not confirmed: try again after a pause, or as soon as the leadership the
                // metrics show changes. Not on any metrics change: a failed round changes
                // metrics itself (replication errors), and a peer refusing connections
                // fails a round at once, so that would spin (found by the simulator,
                // seed 75).
                let pause = tokio::time::sleep(timing.retry);
                tokio::pin!(pause);
                loop {
                    tokio::select! {
                        changed = metrics.changed() => {
                            if changed.is_err() {
                                return;
                            }
                            if observe(&metrics.borrow_and_update()) != seen {
                                break;
                            }
                        }
                        _ = &mut pause => break,
                    }
                }
            } else if metrics.changed().await.is_err() {
                return;
            }
        }
    };
    (rx, task)
}
