//! What a run is asked to do ([`SimConfig`]) and everything a seed derives from it
//! ([`Derived`]).
//!
//! Every knob that is not on the command line is drawn from the seed, each subsystem from
//! its own generator (`seed` mixed with a per-subsystem constant) so that adding a draw in
//! one subsystem does not perturb another.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Which build of the node to run: the real one, or a deliberately broken one that the
/// checkers must catch (the negative controls).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Variant {
    /// The node as shipped.
    Correct,
    /// Reads served from the local replica without `ensure_linearizable` (no read index):
    /// a follower or a deposed leader answers with whatever it has applied.
    LocalReads,
    /// A disk whose `durable_flush` does nothing: appends and votes are acknowledged before
    /// they are durable, and a crash takes them back.
    LyingDisk,
    /// Execution agents that skip their dedupe (`Executor::without_dedupe`): they ignore
    /// their journal and the outcome records in the ledger, so they repeat effects.
    NoDedupe,
    /// A group-commit writer that acknowledges a submission once it is handed to Raft,
    /// before it commits (`Faults::ack_before_commit`).
    EarlyAck,
    /// Read coalescing that lets a read join a read-index round already in flight
    /// (`Faults::join_rounds_in_flight`).
    LateJoinReads,
    /// Membership removal without the quorum guardrail (`Faults::unguarded_removal`).
    UnguardedRemoval,
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::Correct => "correct",
            Variant::LocalReads => "local-reads",
            Variant::LyingDisk => "lying-disk",
            Variant::NoDedupe => "no-dedupe",
            Variant::EarlyAck => "early-ack",
            Variant::LateJoinReads => "late-join-reads",
            Variant::UnguardedRemoval => "unguarded-removal",
        }
    }

    /// The service's deliberate faults for this variant (none for the node as shipped).
    pub fn faults(self) -> docket_service::Faults {
        docket_service::Faults {
            ack_before_commit: self == Variant::EarlyAck,
            join_rounds_in_flight: self == Variant::LateJoinReads,
            unguarded_removal: self == Variant::UnguardedRemoval,
        }
    }

    pub const ALL: [Variant; 7] = [
        Variant::Correct,
        Variant::LocalReads,
        Variant::LyingDisk,
        Variant::NoDedupe,
        Variant::EarlyAck,
        Variant::LateJoinReads,
        Variant::UnguardedRemoval,
    ];

    pub fn from_name(name: &str) -> Option<Variant> {
        Variant::ALL.into_iter().find(|v| v.name() == name)
    }
}

/// How hard the fault schedule hits. `0.0` runs no faults at all.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Faults {
    /// Scales how often faults start (1.0: one every ~0.6 simulated seconds on average).
    pub intensity: f64,
    /// Whether node crashes (with disk crash semantics) are in the menu.
    pub crashes: bool,
    /// Whether network partitions and link loss are in the menu.
    pub partitions: bool,
    /// Whether membership changes run.
    pub membership: bool,
}

impl Default for Faults {
    fn default() -> Faults {
        Faults {
            intensity: 1.0,
            crashes: true,
            partitions: true,
            membership: true,
        }
    }
}

/// A run's parameters, from the command line or a test.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// Nodes in the simulation: 3 or 5. With 5, the cluster starts with 3 voters and the
    /// membership workload adds and removes the others.
    pub nodes: u64,
    /// Simulated length of the fault phase (workload and faults); the heal and liveness
    /// phase comes after it.
    pub duration: Duration,
    /// Concurrent workload clients.
    pub clients: u32,
    pub faults: Faults,
    pub variant: Variant,
    /// Run execution agents on every node and the simulated payment rail; payouts are
    /// executed by the agents (off: the workload files their outcome records itself).
    pub execution: bool,
    /// Simulated time per turmoil step (see [`TICK_DEFAULT`]); part of what a seed means,
    /// so the replay command carries it.
    pub tick: Duration,
    /// Keep the full trace log (for `--trace`), not only its hash.
    pub keep_trace: bool,
    /// Growth mode: proposals a filler submits in batches of [`FILL_BATCH`] during the
    /// fault phase, beside the workload, so that snapshots, their streaming and their
    /// installs carry a ledger this much longer (0: no filler).
    pub prefill: u64,
}

/// Proposals per batch the growth mode's filler submits.
pub const FILL_BATCH: u64 = 250;

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            nodes: 3,
            duration: Duration::from_secs(6),
            clients: 3,
            faults: Faults::default(),
            variant: Variant::Correct,
            execution: true,
            tick: TICK_DEFAULT,
            keep_trace: false,
            prefill: 0,
        }
    }
}

/// Simulated time per turmoil step, by default.
///
/// Every step polls every host's runtime once, whether or not it has work, so the tick sets
/// the simulator's speed: at 1 ms, two thirds of the wall time went to stepping idle hosts
/// (perf: `turmoil::Sim::step` outside the hosts' tasks). 5 ms keeps every ordering Raft
/// cares about apart: heartbeats are 40–100 ms (8–20 ticks), election timeouts 120 ms and
/// more, message latencies 0–27 ms (up to 5 ticks), and a message still never arrives in
/// the step it was sent. Measured on seeds 0..60 of each negative control, 1 ms against
/// 5 ms: local reads caught in 37 vs 39, lying disk 45 vs 47, no dedupe 33 vs 37, while
/// the simulated-to-wall ratio went from 49× to 105× (seeds 0..40). TigerBeetle's VOPR
/// ticks at 10 ms for the same reason.
///
/// Part of the CI suite still runs at [`TICK_FINE`], and so do the regression seeds, each
/// at the tick it failed at.
pub const TICK_DEFAULT: Duration = Duration::from_millis(5);

/// The finest tick: one millisecond, below every latency and timer in the model.
pub const TICK_FINE: Duration = Duration::from_millis(1);

/// The coarsest tick a run accepts: a quarter of the shortest heartbeat interval, so that
/// timers stay several ticks apart.
pub const TICK_MAX: Duration = Duration::from_millis(10);

/// After the faults heal, a fresh proposal must commit and every member must converge
/// within this much simulated time (liveness bound).
pub const LIVENESS_BOUND: Duration = Duration::from_secs(20);

/// Initial voters (node ids `1..=INITIAL_VOTERS`).
pub const INITIAL_VOTERS: u64 = 3;

/// Subsystem salts: each gets its own generator from `seed ^ salt`.
pub mod salt {
    pub const CONFIG: u64 = 0x636f_6e66_6967_0001;
    pub const FAULTS: u64 = 0x6661_756c_7473_0002;
    pub const WORKLOAD: u64 = 0x776f_726b_6c64_0003;
    pub const MEMBERSHIP: u64 = 0x6d65_6d62_6572_0004;
    pub const RAFT: u64 = 0x7261_6674_0000_0005;
    pub const DISK: u64 = 0x6469_736b_0000_0006;
    /// The simulated payment rail's answer delays.
    pub const RAIL: u64 = 0x7261_696c_0000_0007;
    /// How much of an execution journal's unflushed tail a crash keeps.
    pub const JOURNAL: u64 = 0x6a72_6e6c_0000_0008;
}

/// A generator for one subsystem of one seed.
pub fn rng(seed: u64, salt: u64) -> StdRng {
    StdRng::seed_from_u64(docket_raft::runtime::splitmix64(seed ^ salt))
}

/// Everything drawn from the seed before the run starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Derived {
    pub seed: u64,
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    pub rpc_timeout_ms: u64,
    pub snapshot_logs_since_last: u64,
    pub max_in_snapshot_log_to_keep: u64,
    /// The nodes' `raft.log_keep_mb`, in bytes: 0 on half the seeds (the log is kept by
    /// entries alone, and a node that was down is sent snapshots), a few hundred entries'
    /// worth on the others (it catches up from the log across snapshots).
    pub log_keep_bytes: u64,
    /// The nodes' `raft.apply_backlog_max`: small, so pacing (`docket_raft::pacing`) cuts
    /// appends short under faults.
    pub apply_backlog_max: u64,
    pub min_latency: Duration,
    pub max_latency: Duration,
    /// Mean simulated time between fault actions (`None`: no faults).
    pub fault_every: Option<Duration>,
}

impl Derived {
    pub fn from_seed(seed: u64, config: &SimConfig) -> Derived {
        let mut r = rng(seed, salt::CONFIG);
        let heartbeat_ms = r.gen_range(40..=100);
        let election_min_ms = heartbeat_ms * 3 + r.gen_range(0..=150);
        let election_max_ms = election_min_ms + r.gen_range(100..=300);
        let min_latency = Duration::from_millis(r.gen_range(0..=2));
        let max_latency = min_latency + Duration::from_millis(r.gen_range(3..=25));
        let fault_every = (config.faults.intensity > 0.0).then(|| {
            let mean_ms = r.gen_range(400..=900) as f64 / config.faults.intensity;
            Duration::from_millis(mean_ms.max(20.0) as u64)
        });
        Derived {
            seed,
            heartbeat_ms,
            election_min_ms,
            election_max_ms,
            rpc_timeout_ms: 1_000,
            snapshot_logs_since_last: r.gen_range(10..=80),
            max_in_snapshot_log_to_keep: r.gen_range(0..=20),
            min_latency,
            max_latency,
            fault_every,
            // Drawn last: the seeds' earlier draws stay what they were.
            apply_backlog_max: r.gen_range(1..=40),
            log_keep_bytes: if r.gen_bool(0.5) {
                0
            } else {
                r.gen_range(1..=256) * 1024
            },
        }
    }
}
