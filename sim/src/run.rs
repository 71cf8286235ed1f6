//! One seed, start to finish: build the simulation, run the fault phase with the workload,
//! heal, check liveness (and, with execution, wait for every payout to be reported), then
//! run the end-of-run checkers.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use docket_core::{LedgerEntry, LedgerIndex};
use docket_raft::{NodeId, Replica};
use openraft::ServerState;

use crate::api::LEDGER_EPOCH_MS;
use crate::check::agreement::LedgerAgreement;
use crate::check::election::ElectionSafety;
use crate::check::liveness::HealOutcome;
use crate::check::state::StateAgreement;
use crate::check::{self, linearizability, Violation};
use crate::config::{
    Derived, SimConfig, Variant, INITIAL_VOTERS, LIVENESS_BOUND, TICK_DEFAULT, TICK_FINE, TICK_MAX,
};
use crate::disk::{FlushMode, SimDisk};
use crate::faults::Schedule;
use crate::history::{History, OpKind, OpResult};
use crate::journal::SimJournal;
use crate::rail::{Rail, RAIL_HOST};
use crate::trace::Trace;
use crate::world::{host_name, NodeSlot, Probe, Shared, World};
use crate::{admin, check::effects, execution, node, rail, workload};

/// Simulated time between two ledger observations (metrics are observed every step).
pub const LEDGER_OBSERVE_EVERY: Duration = Duration::from_millis(50);

/// What one seed did and whether every invariant held.
#[derive(Debug, Clone)]
pub struct SeedReport {
    pub seed: u64,
    pub config: SimConfig,
    pub violations: Vec<Violation>,
    /// BLAKE3 of the trace, hex.
    pub trace_hash: String,
    pub trace_events: u64,
    pub sim_time: Duration,
    pub wall_time: Duration,
    pub stats: RunStats,
    /// The last trace lines (always) and the whole trace (with `keep_trace`).
    pub trace_tail: Vec<String>,
    pub trace: Option<Vec<String>>,
}

impl SeedReport {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

#[derive(Debug, Clone, Default)]
pub struct RunStats {
    pub operations: u64,
    pub writes_acknowledged: u64,
    pub reads_answered: u64,
    pub ledger_len: u64,
    /// State-map anchors whose root was observed on some replica (each compared across
    /// every replica that computed it).
    pub map_anchors: u64,
    pub terms_with_leaders: u64,
    pub terms_with_several_leaders: u64,
    pub faults: u64,
    pub crashes: u64,
    pub lin: linearizability::Stats,
    /// What execution did (zero without execution).
    pub effects: effects::Stats,
    pub plans: check::plans::Stats,
    pub outcome_deps: check::outcome_deps::Stats,
}

/// The command that replays `seed` with `config`.
pub fn replay_command(seed: u64, config: &SimConfig) -> String {
    let f = &config.faults;
    let mut command = format!(
        "cargo run -p docket-sim --release -- --seed {seed} --nodes {} --duration {} \
         --clients {} --variant {} --fault-intensity {}",
        config.nodes,
        config.duration.as_secs_f64(),
        config.clients,
        config.variant.name(),
        f.intensity
    );
    for (on, flag) in [
        (f.crashes, "--no-crashes"),
        (f.partitions, "--no-partitions"),
        (f.membership, "--no-membership"),
        (config.execution, "--no-execution"),
    ] {
        if !on {
            command.push(' ');
            command.push_str(flag);
        }
    }
    if config.tick != TICK_DEFAULT {
        command.push_str(&format!(" --tick-ms {}", config.tick.as_millis()));
    }
    if config.prefill > 0 {
        command.push_str(&format!(" --prefill {}", config.prefill));
    }
    command
}

thread_local! {
    /// The message of the last panic on this thread (the first one of a cascade is the
    /// interesting one: tokio re-panics with a generic message when a task panicked).
    static FIRST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Installs (once per process) a panic hook that remembers each thread's first panic
/// message before printing it as usual.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info
                .payload()
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "non-string panic".to_owned());
            let location = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            FIRST_PANIC.with(|p| {
                p.borrow_mut()
                    .get_or_insert_with(|| format!("{message}{location}"));
            });
            previous(info);
        }));
    });
}

fn take_first_panic() -> Option<String> {
    FIRST_PANIC.with(|p| p.borrow_mut().take())
}

/// Runs one seed. Never panics: a panic inside the simulation is a violation.
pub fn run_seed(seed: u64, config: &SimConfig) -> SeedReport {
    install_panic_hook();
    take_first_panic();
    let started = Instant::now();
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| Run::new(seed, config).execute()));
    docket_raft::runtime::spawn_on_local_set(false);
    match result {
        Ok(mut report) => {
            report.wall_time = started.elapsed();
            report
        }
        Err(_) => {
            let message = take_first_panic().unwrap_or_else(|| "unknown panic".to_owned());
            SeedReport {
                seed,
                config: config.clone(),
                violations: vec![Violation::new("panic", message)],
                trace_hash: String::new(),
                trace_events: 0,
                sim_time: Duration::ZERO,
                wall_time: started.elapsed(),
                stats: RunStats::default(),
                trace_tail: Vec::new(),
                trace: None,
            }
        }
    }
}

/// What the harness last traced for a node's metrics.
type MetricsKey = (ServerState, u64, Option<NodeId>, Option<u64>, Option<u64>);

struct Run {
    seed: u64,
    config: SimConfig,
    world: World,
    election: ElectionSafety,
    /// The highest Raft log index applied anywhere, over time (read-index freshness).
    applied: check::read_index::AppliedTimeline,
    /// Removals checked against the nodes that were down (membership safety).
    membership: check::membership::MembershipGuard,
    agreement: LedgerAgreement,
    state: StateAgreement,
    /// Per node: the boot observed, ledger entries already checked, last metrics traced.
    seen: BTreeMap<NodeId, (u32, u64, Option<MetricsKey>)>,
    /// Members per the last leader observed.
    members: BTreeSet<NodeId>,
    other: Vec<Violation>,
    steps: u64,
    /// [`LEDGER_OBSERVE_EVERY`] in steps of this run's tick.
    observe_every_steps: u64,
}

impl Run {
    fn new(seed: u64, config: &SimConfig) -> Run {
        assert!(
            (TICK_FINE..=TICK_MAX).contains(&config.tick),
            "SimConfig::tick must be {TICK_FINE:?} to {TICK_MAX:?}, got {:?}",
            config.tick
        );
        let derived = Derived::from_seed(seed, config);
        let mode = match config.variant {
            Variant::LyingDisk => FlushMode::Lying,
            _ => FlushMode::Honest,
        };
        let nodes = (1..=config.nodes)
            .map(|id| {
                let slot = NodeSlot {
                    id,
                    disk: SimDisk::with_mode(host_name(id), mode),
                    journal: SimJournal::new(host_name(id)),
                    raft: None,
                    replica: None,
                    boots: 0,
                    up: true,
                };
                (id, slot)
            })
            .collect();
        let world = Rc::new(RefCell::new(Shared {
            config: config.clone(),
            derived,
            nodes,
            trace: Trace::new(config.keep_trace),
            history: History::default(),
            subjects: Vec::new(),
            probe: Probe::default(),
            stop_workload: false,
            rail: Rail::new(seed),
            exec_log: Default::default(),
            signatures: std::sync::Arc::new(docket_core::VerifiedMemo::new()),
        }));
        Run {
            seed,
            config: config.clone(),
            world,
            election: ElectionSafety::default(),
            applied: Default::default(),
            membership: Default::default(),
            agreement: LedgerAgreement::default(),
            state: StateAgreement::default(),
            seen: BTreeMap::new(),
            members: (1..=INITIAL_VOTERS).collect(),
            other: Vec::new(),
            steps: 0,
            observe_every_steps: (LEDGER_OBSERVE_EVERY.as_nanos() / config.tick.as_nanos().max(1))
                .max(1) as u64,
        }
    }

    fn execute(self) -> SeedReport {
        // Deterministic task drop order on crashes; cleared again below.
        docket_raft::runtime::spawn_on_local_set(true);
        let report = self.execute_inner();
        docket_raft::runtime::spawn_on_local_set(false);
        report
    }

    fn execute_inner(mut self) -> SeedReport {
        let derived = self.world.borrow().derived.clone();
        let mut sim = turmoil::Builder::new()
            .rng_seed(self.seed)
            .epoch(UNIX_EPOCH + Duration::from_millis(LEDGER_EPOCH_MS))
            .simulation_duration(self.config.duration + LIVENESS_BOUND + Duration::from_secs(60))
            .tick_duration(self.config.tick)
            .min_message_latency(derived.min_latency)
            .max_message_latency(derived.max_latency)
            .tcp_capacity(65_536)
            .enable_random_order()
            .build();
        for id in 1..=self.config.nodes {
            let world = self.world.clone();
            sim.host(host_name(id), move || node::run(world.clone(), id));
        }
        // The operator and every workload client share one host: none of them is ever
        // partitioned, and every host costs a runtime poll per step, idle or not.
        let (world, clients) = (self.world.clone(), self.config.clients);
        sim.client("clients", async move {
            let mut tasks = vec![tokio::task::spawn_local(admin::run_admin(world.clone()))];
            for client in 0..clients {
                tasks.push(tokio::task::spawn_local(workload::run_client(
                    world.clone(),
                    client,
                )));
            }
            tasks.push(tokio::task::spawn_local(workload::run_reader(
                world.clone(),
                clients,
            )));
            if world.borrow().config.prefill > 0 {
                tasks.push(tokio::task::spawn_local(workload::run_filler(
                    world.clone(),
                )));
            }
            for task in tasks {
                task.await??;
            }
            Ok(())
        });
        if self.config.execution {
            // Registered last: the nodes' and clients' seeds stay those of a run without it.
            let world = self.world.clone();
            sim.host(RAIL_HOST, move || rail::run(world.clone()));
        }
        let mut schedule = Schedule::new(self.seed, &self.config, derived.fault_every);

        // Phase 1: workload and faults.
        let mut alive = true;
        while alive && sim.elapsed() < self.config.duration {
            let now = sim.elapsed();
            for fault in schedule.tick(&mut sim, &self.world, now) {
                self.world
                    .borrow_mut()
                    .trace
                    .record(now.as_nanos(), format_args!("fault {fault:?}"));
            }
            alive = self.step(&mut sim);
        }

        // Phase 2: heal, then a fresh proposal must commit and the members converge.
        let healed_at = sim.elapsed();
        {
            let mut w = self.world.borrow_mut();
            w.stop_workload = true;
            w.trace.record(healed_at.as_nanos(), "heal");
        }
        schedule.heal(&mut sim, &self.world);
        sim.client("probe", admin::run_probe(self.world.clone()));
        let mut heal = HealOutcome {
            healed_at,
            ..HealOutcome::default()
        };
        while alive && sim.elapsed() <= healed_at + LIVENESS_BOUND {
            alive = self.step(&mut sim);
            heal.probe_acked_at = self.world.borrow().probe.acked_at;
            if heal.probe_acked_at.is_some() && self.steps.is_multiple_of(self.observe_every_steps)
            {
                if let Some(leader) = self.converged() {
                    heal.converged_at.get_or_insert(sim.elapsed());
                    // With execution, the run ends once the agents have reported every
                    // payout too (converged again then, for the end-of-run checks); if they
                    // never do, the effects checker says which payouts are open.
                    if !self.config.execution || payouts_settled(&leader) {
                        heal.converged_at = Some(sim.elapsed());
                        break;
                    }
                }
            }
        }
        let sim_time = sim.elapsed();
        self.observe_ledgers(sim_time);

        // End-of-run checks.
        let ledgers = self.final_ledgers();
        let mut violations = self.election.take_violations();
        violations.extend(std::mem::take(&mut self.other));
        for (node, ledger) in &ledgers {
            self.agreement.check_prefix(*node, ledger);
        }
        violations.extend(self.agreement.take_violations());
        violations.extend(self.state.take_violations());
        violations.extend(self.membership.take_violations());
        let canonical = self.agreement.canonical();
        let member_lens: BTreeMap<NodeId, u64> = self
            .members
            .iter()
            .map(|m| {
                let len = ledgers
                    .iter()
                    .find(|(n, _)| n == m)
                    .map_or(0, |(_, l)| l.len() as u64);
                (*m, len)
            })
            .collect();
        let (outcome_violations, outcome_stats) = check::outcome_deps::check(&canonical);
        violations.extend(outcome_violations);
        let (plan_violations, plan_stats) =
            check::plans::check(&self.world.borrow().history, &canonical);
        violations.extend(plan_violations);
        let (lin_violations, lin_stats) = {
            let w = self.world.borrow();
            violations.extend(check::durability::check(
                &w.history,
                &canonical,
                &member_lens,
            ));
            violations.extend(check::read_index::check(&w.history, &self.applied));
            linearizability::check(&w.history, &canonical)
        };
        violations.extend(lin_violations);
        violations.extend(check::chain::check(&ledgers));
        if alive {
            violations.extend(check::liveness::check(&heal));
        }
        let mut effect_stats = effects::Stats::default();
        if self.config.execution && alive {
            let journals = self.journals();
            let w = self.world.borrow();
            let (effect_violations, stats) = effects::check(&canonical, &w.rail, &journals);
            violations.extend(effect_violations);
            effect_stats = stats;
        }

        let w = self.world.borrow();
        let stats = RunStats {
            operations: w.history.ops.len() as u64,
            writes_acknowledged: w
                .history
                .ops
                .iter()
                .filter(|o| matches!(o.kind, OpKind::Submit { .. }) && o.result.ack().is_some())
                .count() as u64,
            reads_answered: w
                .history
                .ops
                .iter()
                .filter(|o| matches!(o.result, OpResult::Read { .. }))
                .count() as u64,
            ledger_len: canonical.len() as u64,
            map_anchors: self.state.anchors_seen,
            terms_with_leaders: self.election.terms() as u64,
            terms_with_several_leaders: self.election.terms_with_several_leaders() as u64,
            faults: schedule.applied,
            crashes: schedule.crashes_applied,
            lin: lin_stats,
            effects: effect_stats,
            plans: plan_stats,
            outcome_deps: outcome_stats,
        };
        SeedReport {
            seed: self.seed,
            config: self.config.clone(),
            violations,
            trace_hash: w.trace.hash().to_hex().to_string(),
            trace_events: w.trace.events(),
            sim_time,
            wall_time: Duration::ZERO,
            stats,
            trace_tail: w.trace.tail().cloned().collect(),
            trace: w.trace.lines().map(<[String]>::to_vec),
        }
    }

    /// One simulation step and the observations after it; `false` if the simulation
    /// failed (a host returned an error or a task panicked).
    fn step(&mut self, sim: &mut turmoil::Sim<'_>) -> bool {
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| sim.step()));
        self.steps += 1;
        let now = sim.elapsed();
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                self.other
                    .push(Violation::new("host-failure", format!("at {now:?}: {e}")));
                return false;
            }
            Err(_) => {
                let message = take_first_panic().unwrap_or_else(|| "unknown panic".to_owned());
                self.other
                    .push(Violation::new("panic", format!("at {now:?}: {message}")));
                return false;
            }
        }
        self.observe_metrics(now);
        self.observe_execution();
        if self.steps.is_multiple_of(self.observe_every_steps) {
            self.observe_ledgers(now);
        }
        true
    }

    /// Moves what the execution agents reported into the trace; an agent that stopped on
    /// an error is a violation.
    fn observe_execution(&mut self) {
        let mut w = self.world.borrow_mut();
        let events = execution::drain(&w.exec_log);
        for (at_ns, line) in events.lines {
            w.trace.record(at_ns, line);
        }
        for failure in events.failures {
            self.other.push(Violation::new("execution-agent", failure));
        }
    }

    /// Every job in every node's execution journal, as the journal holds it now.
    fn journals(&mut self) -> BTreeMap<NodeId, Vec<docket_execution::Job>> {
        let stores: Vec<(NodeId, SimJournal)> = self
            .world
            .borrow()
            .nodes
            .values()
            .map(|s| (s.id, s.journal.clone()))
            .collect();
        let mut out = BTreeMap::new();
        for (id, store) in stores {
            match store.open().jobs(None, usize::MAX) {
                Ok(jobs) => {
                    out.insert(id, jobs);
                }
                Err(e) => self.other.push(Violation::new(
                    "storage",
                    format!("n{id} journal read: {e}"),
                )),
            }
        }
        out
    }

    fn observe_metrics(&mut self, now: Duration) {
        let w = self.world.borrow();
        let mut lines = Vec::new();
        for (id, slot) in &w.nodes {
            self.membership.observe_node(*id, slot.up, now);
        }
        let applied = w
            .nodes
            .values()
            .filter_map(|slot| slot.raft.as_ref())
            .filter_map(|raft| raft.metrics().borrow().last_applied.map(|l| l.index))
            .max();
        if let Some(applied) = applied {
            self.applied.observe(now.as_nanos(), applied);
        }
        for (id, slot) in &w.nodes {
            let Some(raft) = &slot.raft else {
                continue;
            };
            let metrics = raft.metrics();
            let m = metrics.borrow();
            let is_leader = m.state == ServerState::Leader;
            self.election.observe(*id, slot.boots, is_leader, m.vote);
            if is_leader {
                let joint = m.membership_config.membership().get_joint_config();
                if let [old, new] = joint.as_slice() {
                    self.membership.observe_joint(old, new, now);
                }
                self.members = m
                    .membership_config
                    .membership()
                    .nodes()
                    .map(|(n, _)| *n)
                    .collect();
            }
            let key: MetricsKey = (
                m.state,
                m.current_term,
                m.current_leader,
                m.last_applied.map(|l| l.index),
                m.last_log_index,
            );
            let seen = self.seen.entry(*id).or_insert((slot.boots, 0, None));
            if seen.2 != Some(key) {
                seen.2 = Some(key);
                lines.push(format!(
                    "n{id} {:?} term {} leader {:?} applied {:?} log {:?}",
                    key.0, key.1, key.2, key.3, key.4
                ));
            }
            if let Err(fatal) = &m.running_state {
                let detail = format!("n{id} stopped: {fatal}");
                if !self.other.iter().any(|v| v.detail == detail) {
                    self.other.push(Violation::new("node-fatal", detail));
                }
            }
        }
        drop(w);
        let mut w = self.world.borrow_mut();
        for line in lines {
            w.trace.record(now.as_nanos(), line);
        }
    }

    fn observe_ledgers(&mut self, now: Duration) {
        let replicas: Vec<(NodeId, u32, docket_raft::Replica)> = self
            .world
            .borrow()
            .nodes
            .values()
            .filter_map(|s| s.replica.clone().map(|r| (s.id, s.boots, r)))
            .collect();
        for (id, boots, replica) in replicas {
            let seen = self.seen.entry(id).or_insert((boots, 0, None));
            if seen.0 != boots {
                *seen = (boots, 0, seen.2);
            }
            let from = seen.1;
            let len = replica.ledger_len();
            if len <= from {
                seen.1 = len;
                continue;
            }
            seen.1 = len;
            let entries = match replica.ledger_entries(LedgerIndex(from), len - from) {
                Ok(entries) => entries,
                Err(e) => {
                    self.other
                        .push(Violation::new("storage", format!("n{id} ledger read: {e}")));
                    continue;
                }
            };
            let mut w = self.world.borrow_mut();
            for entry in &entries {
                self.agreement.observe(id, entry);
                w.trace.record(
                    now.as_nanos(),
                    format_args!("n{id} applied #{} {}", entry.index, entry.hash.to_hex()),
                );
            }
            drop(w);
            if let Some((head_len, hash)) =
                replica.with_state(|s| s.map(|s| (s.head().index.0 + 1, s.hash())))
            {
                // Nothing runs between the two reads: the harness holds the simulation.
                if let Some(anchor) = replica.latest_boundary().and_then(|b| b.map) {
                    self.state.observe_map(id, anchor);
                }
                match replica.tree_head() {
                    Ok(head) if head.size == head_len => {
                        self.state.observe(id, head_len, hash, head.root)
                    }
                    other => self.other.push(Violation::new(
                        "state-agreement",
                        format!("n{id}: ledger tree {other:?} at ledger length {head_len}"),
                    )),
                }
            }
        }
    }

    /// One leader; every member up, with the leader's ledger length, state hash and last
    /// applied log id; the leader has applied its whole log. Answers the leader's replica.
    fn converged(&self) -> Option<Replica> {
        let w = self.world.borrow();
        let leaders: Vec<&NodeSlot> = w
            .nodes
            .values()
            .filter(|s| {
                s.raft
                    .as_ref()
                    .is_some_and(|r| r.metrics().borrow().state == ServerState::Leader)
            })
            .collect();
        let [leader] = leaders.as_slice() else {
            return None;
        };
        let (Some(raft), Some(replica)) = (&leader.raft, &leader.replica) else {
            return None;
        };
        let m = raft.metrics().borrow().clone();
        if m.last_applied.map(|l| l.index) != m.last_log_index {
            return None;
        }
        let target = (replica.ledger_len(), replica.state_hash(), m.last_applied);
        let members: Vec<NodeId> = m
            .membership_config
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .collect();
        let all = members.iter().all(|id| {
            let Some(slot) = w.nodes.get(id) else {
                return false;
            };
            match (&slot.raft, &slot.replica) {
                (Some(r), Some(rep)) => {
                    (
                        rep.ledger_len(),
                        rep.state_hash(),
                        r.metrics().borrow().last_applied,
                    ) == target
                }
                _ => false,
            }
        });
        all.then(|| replica.clone())
    }

    fn final_ledgers(&mut self) -> Vec<(NodeId, Vec<LedgerEntry>)> {
        let replicas: Vec<(NodeId, docket_raft::Replica)> = self
            .world
            .borrow()
            .nodes
            .values()
            .filter_map(|s| s.replica.clone().map(|r| (s.id, r)))
            .collect();
        let mut out = Vec::new();
        for (id, replica) in replicas {
            match replica.ledger_entries(LedgerIndex(0), u64::MAX) {
                Ok(ledger) => out.push((id, ledger)),
                Err(e) => self
                    .other
                    .push(Violation::new("storage", format!("n{id} ledger read: {e}"))),
            }
        }
        out
    }
}

/// Whether a replica's state has no payout waiting for its outcome record.
fn payouts_settled(replica: &Replica) -> bool {
    replica.with_state(|state| {
        state.is_some_and(|s| {
            s.subjects("settlement")
                .iter()
                .all(|(_, subject)| subject.state != "payout_requested")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replay_command_carries_a_tick_that_is_not_the_default() {
        let default = replay_command(7, &SimConfig::default());
        assert!(!default.contains("--tick-ms"), "{default}");
        let fine = SimConfig {
            tick: TICK_FINE,
            ..SimConfig::default()
        };
        let command = replay_command(7, &fine);
        assert!(command.ends_with(" --tick-ms 1"), "{command}");
    }

    #[test]
    fn a_tick_outside_the_model_fails_the_seed_instead_of_running_it() {
        let zero = SimConfig {
            tick: Duration::ZERO,
            ..SimConfig::default()
        };
        let report = run_seed(7, &zero);
        assert!(!report.passed());
        assert!(
            report
                .violations
                .iter()
                .any(|v| v.detail.contains("SimConfig::tick")),
            "{:?}",
            report.violations
        );
    }
}
