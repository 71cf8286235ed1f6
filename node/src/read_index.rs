//! Read-index coalescing: concurrent linearizable reads share one leadership round.
//!
//! openraft's `ensure_linearizable` confirms leadership with a heartbeat round to a quorum
//! and waits until the state machine has applied the read index. One round per read makes
//! the heartbeat round trip the cost of every read. Instead, reads queue here; a driver
//! runs one round for everyone who was queued *before the round started*, then the next
//! round for those who arrived meanwhile.
//!
//! Why that is still linearizable: a round that starts at time `s` takes its read index
//! from the commit index at or after `s`, so it covers every write acknowledged before `s`.
//! A read that arrived at `t <= s` therefore sees every write acknowledged before it
//! began. A read never joins a round already in flight (that round may have taken its
//! read index before the read arrived) — `a_read_never_joins_a_round_in_flight` pins it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use docket_raft::{NodeAddr, NodeId, Raft};
use openraft::error::{CheckIsLeaderError, RaftError};
use tokio::sync::oneshot;

/// Outcome of a leadership round, shared by every read it served.
pub type RoundResult = Result<(), RaftError<NodeId, CheckIsLeaderError<NodeId, NodeAddr>>>;

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
}

impl<T> Clone for Coalescer<T> {
    fn clone(&self) -> Self {
        Coalescer {
            round: self.round.clone(),
            queue: self.queue.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Coalescer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("Coalescer").finish_non_exhaustive()
    }
}

/// Linearizable reads through openraft's read index.
pub type ReadIndex = Coalescer<RoundResult>;

impl ReadIndex {
    pub fn for_raft(raft: Raft) -> ReadIndex {
        Coalescer::new(Arc::new(move || {
            let raft = raft.clone();
            Box::pin(async move { raft.ensure_linearizable().await.map(|_| ()) })
        }))
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
        }
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
            tokio::spawn(async move { this.drive().await });
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
                std::mem::take(&mut queue.waiting)
            };
            let result = (self.round)().await;
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
}
