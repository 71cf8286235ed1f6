//! docket's openraft runtime: tokio, with a randomness source the simulator can seed.
//!
//! openraft draws one random number per `Raft::new` (the election timeout, through
//! `AsyncRuntime::thread_rng`). [`DocketRuntime`] is openraft's `TokioRuntime` in every
//! respect but that one: its `thread_rng` returns a `StdRng` seeded from this thread's
//! seed sequence when one was set with [`seed_thread_rng`], and from OS entropy otherwise
//! (production never sets one).
//!
//! A thread-local sequence suffices for the simulator: all simulated hosts run on one OS
//! thread in a fixed order, so the draws happen in a fixed order, and each host sets its
//! own seed right before it starts Raft. Each draw advances the sequence (SplitMix64), so
//! two nodes started from different seeds never share a timeout by construction.
//!
//! The simulator also asks ([`spawn_on_local_set`]) for openraft's tasks to be spawned on
//! the current `LocalSet` instead of the runtime's shared task list. tokio's shared list
//! (even on a current-thread runtime) is sharded by task id, and task ids come from one
//! process-wide counter, so the order in which a dropped runtime drops its tasks depends
//! on how many tasks the *process* spawned before. A simulated crash drops a host's
//! runtime, and each task dropped closes its sockets, which sends packets whose simulated
//! latencies come from the seeded generator in that order: the same seed would replay
//! differently in the second run of a process, or beside other tests. A `LocalSet` drops
//! its tasks in spawn order. Production never sets it.

use std::cell::Cell;
use std::future::Future;
use std::time::Duration;

use openraft::async_runtime::TokioOneShotSender;
use openraft::{AsyncRuntime, OptionalSend, TokioInstant, TokioRuntime};
use rand::rngs::StdRng;
use rand::SeedableRng;

thread_local! {
    static SEED: Cell<Option<u64>> = const { Cell::new(None) };
    static SPAWN_LOCAL: Cell<bool> = const { Cell::new(false) };
}

/// Simulation only: spawn openraft's tasks on this thread with `spawn_local` (the caller
/// must be inside a `LocalSet`, as every turmoil host is). See the module docs.
pub fn spawn_on_local_set(enabled: bool) {
    SPAWN_LOCAL.with(|s| s.set(enabled));
}

/// Makes later `thread_rng` draws on this thread deterministic, starting from `seed`.
pub fn seed_thread_rng(seed: u64) {
    SEED.with(|s| s.set(Some(seed)));
}

/// Returns this thread's draws to OS entropy.
pub fn clear_thread_rng_seed() {
    SEED.with(|s| s.set(None));
}

/// SplitMix64: a full-period, well-mixed step for a 64-bit seed sequence.
pub fn splitmix64(state: u64) -> u64 {
    let mut z = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn next_seed() -> Option<u64> {
    SEED.with(|s| {
        let current = s.get()?;
        let next = splitmix64(current);
        s.set(Some(next));
        Some(next)
    })
}

/// openraft's tokio runtime with a seedable `thread_rng`. See the module docs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DocketRuntime;

impl AsyncRuntime for DocketRuntime {
    type JoinError = <TokioRuntime as AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <TokioRuntime as AsyncRuntime>::JoinHandle<T>;
    type Sleep = <TokioRuntime as AsyncRuntime>::Sleep;
    type Instant = TokioInstant;
    type TimeoutError = <TokioRuntime as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> =
        <TokioRuntime as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = StdRng;
    type OneshotSender<T: OptionalSend> = TokioOneShotSender<T>;
    type OneshotReceiverError = <TokioRuntime as AsyncRuntime>::OneshotReceiverError;
    type OneshotReceiver<T: OptionalSend> = <TokioRuntime as AsyncRuntime>::OneshotReceiver<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        if SPAWN_LOCAL.with(Cell::get) {
            tokio::task::spawn_local(future)
        } else {
            TokioRuntime::spawn(future)
        }
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        TokioRuntime::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        TokioRuntime::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        TokioRuntime::is_panic(join_error)
    }

    fn thread_rng() -> StdRng {
        match next_seed() {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        }
    }

    fn oneshot<T>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>)
    where
        T: OptionalSend,
    {
        TokioRuntime::oneshot()
    }
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;

    #[test]
    fn seeded_draws_repeat_and_advance() {
        seed_thread_rng(42);
        let a: u64 = DocketRuntime::thread_rng().gen();
        let b: u64 = DocketRuntime::thread_rng().gen();
        seed_thread_rng(42);
        let a2: u64 = DocketRuntime::thread_rng().gen();
        let b2: u64 = DocketRuntime::thread_rng().gen();
        assert_eq!((a, b), (a2, b2), "the same seed gives the same draws");
        assert_ne!(a, b, "each draw advances the sequence");
        clear_thread_rng_seed();
    }
}
