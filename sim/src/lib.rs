//! # docket-sim: the real node code under deterministic faults
//!
//! A [turmoil](https://docs.rs/turmoil) simulation of a docket cluster in one thread,
//! driven by one `u64` seed. Each simulated host runs the node's real code — the Raft
//! storage ([`docket_raft::Store`]), openraft, the Raft network code
//! ([`docket_raft::network`]) and the governance core as the state machine — with only
//! three things swapped for simulated ones:
//!
//! * **the network**: turmoil's TCP, through the network code's `Transport` seam
//!   ([`node::TurmoilTransport`]) and `serve_connection`;
//! * **the disk**: [`docket_raft::SimDisk`], where a write is lost in a crash unless it
//!   was durably flushed;
//! * **randomness**: turmoil's seeded world and tokio runtimes, and openraft's election
//!   timeouts through [`docket_raft::runtime`].
//!
//! Clients reach the nodes through a client API ([`api`]) with the node's semantics:
//! writes are `Command::Submit` stamped with the (simulated) clock, forwarded to the
//! leader; reads pass the read index (`ensure_linearizable`) and read the replica.
//!
//! ## A run
//!
//! 1. **Fault phase** ([`SimConfig::duration`]): workload clients ([`workload`]) run
//!    settlement, KES, auction and tender flows (with deferrals, duplicates, unauthorized
//!    and malformed proposals) and read subjects at every node; an operator ([`admin`])
//!    changes membership; the schedule ([`faults`]) partitions, delays, drops, crashes and
//!    restarts. Metrics are observed after every step, ledgers every few steps.
//! 2. **Heal phase**: every fault is undone, crashed nodes restart, a probe files a fresh
//!    proposal; it must commit and every member converge within
//!    [`config::LIVENESS_BOUND`].
//! 3. **Checks** ([`check`], one file per invariant): election safety, ledger agreement,
//!    state agreement, durability, linearizability, chain integrity, liveness.
//!
//! ## Determinism
//!
//! Every choice derives from the seed: turmoil's `rng_seed` (latencies, loss, host order,
//! and — built with `--cfg tokio_unstable`, see `.cargo/config.toml` — every host's tokio
//! runtime), openraft's election timeouts (seeded per host and boot), the workload, the
//! membership changes and the fault schedule (each from its own generator). Shared state is
//! `Rc<RefCell<_>>` and ordered collections only. Every task of a host (openraft's
//! included, through `docket_raft::runtime::spawn_on_local_set`) lives on the host's
//! `LocalSet`: tokio's own task list is sharded by a process-wide task id, so a crashed
//! host's runtime would drop its tasks (and close their sockets, drawing packet latencies)
//! in an order that depends on what else the process ran. The run's [`trace`] — applied
//! entry hashes per node, role, term and commit changes, client operations and results
//! with simulated timestamps, faults, boots — is hashed; the same seed gives the same hash,
//! in a fresh process or the hundredth run of one.
//!
//! ## What it found
//!
//! * A leader restarted quickly resumes leadership in its old term (openraft 0.9), with
//!   its read index derived from the committed log id it reads back; `save_committed` was
//!   not durable, so a crash could make it serve a stale linearizable read of a write it had
//!   acknowledged (seed 10751). Fixed in `docket_raft::Store::save_committed`.
//! * Replays of a seed differed within one process (the task drop order above). Fixed by
//!   spawning on the `LocalSet`.
//!
//! ## Negative controls
//!
//! [`Variant::LocalReads`] serves reads without the read index and
//! [`Variant::LyingDisk`] acknowledges writes it never makes durable. The test suite
//! asserts the checkers catch each within a bounded number of seeds.

#[cfg(not(tokio_unstable))]
compile_error!(
    "docket-sim must be built with --cfg tokio_unstable (see .cargo/config.toml): without it \
     turmoil cannot seed tokio and runs are not reproducible"
);

pub mod admin;
pub mod api;
pub mod check;
pub mod config;
pub mod execution;
pub mod faults;
pub mod history;
pub mod http;
pub mod node;
pub mod rail;
pub mod rail_effect;
pub mod run;
pub mod trace;
pub mod workload;
pub mod world;

pub use config::{Faults, SimConfig, Variant};
pub use run::{replay_command, run_seed, RunStats, SeedReport};
