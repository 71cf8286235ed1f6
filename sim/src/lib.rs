//! # docket-sim: the real node code under deterministic faults
//!
//! A [turmoil](https://docs.rs/turmoil) simulation of a docket cluster in one thread,
//! driven by one `u64` seed. Each simulated host runs the node's real code — the Raft
//! storage ([`docket_raft::Store`]), openraft, the Raft network code
//! ([`docket_raft::network`]), the governance core as the state machine, and the execution
//! agent ([`docket_execution::Executor`]) — with only these things swapped for simulated
//! ones:
//!
//! * **the network**: turmoil's TCP, through the network code's `Transport` seam
//!   ([`node::TurmoilTransport`]) and `serve_connection`; the payment-rail effect's
//!   transport ([`rail_effect`]: minimal HTTP/1.1 over turmoil TCP instead of reqwest);
//! * **the disks**: [`disk::SimDisk`] under the Raft store (`docket_raft`'s `Disk` seam)
//!   and [`journal::SimJournal`] under the execution journal (`docket_execution`'s
//!   `JournalStorage` seam), instead of sled: adapters over `docket_simstore`'s
//!   pending/durable model, where a write is lost in a crash unless it was flushed;
//! * **clocks and randomness**: turmoil's seeded world and tokio runtimes, openraft's
//!   election timeouts through [`docket_raft::runtime`], and the simulated wall clock for
//!   evidence (`Executor::with_clock`).
//!
//! Clients reach the nodes through a client API ([`api`]) that is a thin adapter over the
//! node's own service ([`docket_service::Service`], as `node/src/api` is over HTTP): the
//! front door, the group-commit writer stamped with the simulated clock, linearizable
//! reads through shared read-index rounds (a follower asks the leader for its read index
//! through the service's `Peers` seam, here [`api::SimPeers`] over turmoil), cluster
//! membership with its guardrails (probes and history checks through the same seam), and
//! forwarding to the leader once, with the node's meaning for a forward that got no
//! answer.

//! ## Execution
//!
//! Every node runs an agent ([`execution`]) attached to its leadership as the node attaches
//! it (the service's publisher: only after a read-index round confirmed it), with the
//! service's host ([`docket_service::ServiceHost`], traced by [`execution::SimHost`]). Its one effect is the crate's payment-rail
//! effect (planning, gate, verification and outcome records are the crate's; only the
//! transport is the simulator's), pointed at the simulated rail ([`rail`]): a turmoil host
//! that pays once per `Idempotency-Key`, declines some beneficiaries, answers `503` first
//! to others, answers after a seeded delay, and records every request.
//!
//! ## A run
//!
//! 1. **Fault phase** ([`SimConfig::duration`]): workload clients ([`workload`]) run
//!    settlement, KES, auction and tender flows (with deferrals, duplicates, unauthorized
//!    and malformed proposals; payouts paid by the agents), plans whose dependents wait on
//!    payouts' outcomes (some declined by the rail), and read subjects at every
//!    node; an operator ([`admin`]) changes membership; the schedule ([`faults`])
//!    partitions, delays, drops, crashes (disk and journal) and restarts, and cuts nodes
//!    off the rail. Metrics are observed after every step, ledgers every 50 simulated
//!    ms. A step is [`SimConfig::tick`] of simulated time (5 ms unless the run says
//!    otherwise; [`config::TICK_DEFAULT`] says why).
//! 2. **Heal phase**: every fault is undone, crashed nodes restart, a probe files a fresh
//!    proposal; it must commit and every member converge within
//!    [`config::LIVENESS_BOUND`], and (with execution) every admitted payout be reported.
//! 3. **Checks** ([`check`], one file per invariant): election safety, ledger agreement,
//!    state agreement, membership safety, durability, linearizability, read-index
//!    freshness, chain integrity, liveness, outcome dependencies (decided by the outcome
//!    they wait on, and only once it is recorded), plan order (one run, in
//!    `docket_core::plan::order`'s order), effects
//!    (at most one payment per idempotency key, every request to the rail explained, one
//!    outcome record per payout agreeing with the rail).
//!
//! ## Determinism
//!
//! Every choice derives from the seed: turmoil's `rng_seed` (latencies, loss, host order,
//! and — built with `--cfg tokio_unstable`, see `.cargo/config.toml` — every host's tokio
//! runtime), openraft's election timeouts (seeded per host and boot), the workload, the
//! membership changes and the fault schedule (each from its own generator). Shared state is
//! `Rc<RefCell<_>>` and ordered collections only (the agents' `Send` side reports through
//! a mutex-guarded log the harness drains after every step). Every task of a host
//! (openraft's included, through `docket_raft::runtime::spawn_on_local_set`) lives on the
//! host's
//! `LocalSet`: tokio's own task list is sharded by a process-wide task id, so a crashed
//! host's runtime would drop its tasks (and close their sockets, drawing packet latencies)
//! in an order that depends on what else the process ran. The run's [`trace`] — applied
//! entry hashes per node, role, term and commit changes, client operations and results
//! with simulated timestamps, faults, boots, the agents' leadership and outcome records
//! filed, every request at the rail — is hashed; the same seed gives the same hash, in a
//! fresh process or the hundredth run of one.
//!
//! ## What it found
//!
//! * A leader restarted quickly resumes leadership in its old term (openraft 0.9), with
//!   its read index derived from the committed log id it reads back; `save_committed` was
//!   not durable, so a crash could make it serve a stale linearizable read of a write it had
//!   acknowledged (seed 10751). Fixed in `docket_raft::Store::save_committed`.
//! * Replays of a seed differed within one process (the task drop order above). Fixed by
//!   spawning on the `LocalSet`.
//! * An execution attempt cut off mid-flight (its request at the rail) left no evidence in
//!   the journal when the ledger later resolved the job: the interrupted attempt was
//!   recorded only on the way to a retry (seed 100). Fixed in `docket_execution::agent`.
//! * The leadership publisher (the node's, copied here) re-ran its read-index round on
//!   every metrics change after a failed one; a failed round changes metrics, and a
//!   refused connection fails at once, so an isolated leader spun (seed 75, until turmoil
//!   ran out of ports). Fixed here by retrying after a pause or a leadership change.
//! * A removal of the leader cut short by a leadership change left a joint configuration
//!   whose new half lacks the re-elected leader; the next membership change made it a
//!   non-member leader and tripped an assertion inside openraft 0.9.25 (seed 54). The
//!   service refuses that change (`leads_outside_target_config`), for the node and the
//!   simulator alike.
//! * A node refused a candidate's vote as a non-member's because it had not yet seen the
//!   configuration that added the candidate; the candidate, elected by the others, then
//!   led while marked removed and answered every request `REMOVED` (seed 1021, five nodes,
//!   after the workload gained plans). Fixed in `docket_raft::network`: a vote is refused
//!   so only when the refusing node's configuration is newer than the candidate's log.
//!
//! ## Negative controls
//!
//! [`Variant::LocalReads`] serves reads without the read index,
//! [`Variant::LyingDisk`] acknowledges writes it never makes durable,
//! [`Variant::NoDedupe`] runs agents that ignore their journal and the outcome records in
//! the ledger (the rail still dedupes, so only the effects checker can tell), and three
//! break the service itself ([`docket_service::Faults`]): [`Variant::EarlyAck`] (a writer
//! that acknowledges before commit), [`Variant::LateJoinReads`] (a coalescer that serves a
//! read queued after its round began) and [`Variant::UnguardedRemoval`] (a guardrail that
//! allows losing quorum; the operator sometimes removes a running voter while another is
//! down). The test suite asserts the checkers catch each within a bounded number of seeds.

#[cfg(not(tokio_unstable))]
compile_error!(
    "docket-sim must be built with --cfg tokio_unstable (see .cargo/config.toml): without it \
     turmoil cannot seed tokio and runs are not reproducible"
);

pub mod admin;
pub mod api;
pub mod check;
pub mod config;
pub mod disk;
pub mod execution;
pub mod faults;
pub mod history;
pub mod http;
pub mod journal;
pub mod node;
pub mod rail;
pub mod rail_effect;
pub mod run;
pub mod trace;
pub mod workload;
pub mod world;

pub use config::{Faults, SimConfig, Variant, TICK_DEFAULT, TICK_FINE, TICK_MAX};
pub use run::{replay_command, run_seed, RunStats, SeedReport};
