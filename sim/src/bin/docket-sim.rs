//! `docket-sim`: runs seeds of the deterministic fault simulation and prints a verdict per
//! seed, the trace hash, and the throughput figures. Exits 1 if any seed failed, after
//! printing the command that replays it.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use docket_sim::{
    replay_command, run_seed, Faults, SeedReport, SimConfig, Variant, TICK_DEFAULT, TICK_MAX,
};

#[derive(Debug, Parser)]
#[command(name = "docket-sim", about = "docket's deterministic fault simulator")]
struct Args {
    /// Run one seed.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Run a range of seeds, `A..B` (B excluded).
    #[arg(long, value_name = "A..B")]
    seeds: Option<String>,
    /// Nodes in the cluster: 3 or 5.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(3..=5))]
    nodes: u64,
    /// Simulated seconds of the fault phase (healing and liveness come after).
    #[arg(long, default_value_t = 6.0)]
    duration: f64,
    /// Workload clients.
    #[arg(long, default_value_t = 3)]
    clients: u32,
    /// Fault rate multiplier (0 = no faults; 1 = one fault every ~0.6 s on average).
    #[arg(long, default_value_t = 1.0)]
    fault_intensity: f64,
    #[arg(long)]
    no_crashes: bool,
    #[arg(long)]
    no_partitions: bool,
    #[arg(long)]
    no_membership: bool,
    /// No execution agents and no payment rail (the workload reports payouts itself).
    #[arg(long)]
    no_execution: bool,
    /// `correct`, or a negative control: `local-reads`, `lying-disk`, `no-dedupe`,
    /// `early-ack`, `late-join-reads`, `unguarded-removal`.
    #[arg(long, default_value = "correct")]
    variant: String,
    /// Simulated milliseconds per step, 1 to 10: 5 by default; 1 resolves every latency
    /// and timer in the model (slower). Part of what a seed means: replay with the same.
    #[arg(
        long,
        default_value_t = TICK_DEFAULT.as_millis() as u64,
        value_parser = clap::value_parser!(u64).range(1..=TICK_MAX.as_millis() as u64)
    )]
    tick_ms: u64,
    /// Print every trace line of each seed.
    #[arg(long)]
    trace: bool,
    /// Print one line per seed only for failures.
    #[arg(long)]
    quiet: bool,
    /// Run each seed this many times and fail if the trace hashes differ (determinism check).
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    /// Growth mode: a filler submits this many more deposits, in batches, during the
    /// fault phase, so snapshots stream and install a longer ledger (0: off).
    #[arg(long, default_value_t = 0)]
    prefill: u64,
}

fn parse_range(text: &str) -> Option<(u64, u64)> {
    let (a, b) = text.split_once("..")?;
    let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a < b).then_some((a, b))
}

fn print_report(report: &SeedReport, quiet: bool) {
    let verdict = if report.passed() { "ok" } else { "FAIL" };
    if !quiet || !report.passed() {
        let s = &report.stats;
        println!(
            "seed {:>8} {verdict:<4} trace {} sim {:>6.2}s wall {:>7.3}s ledger {:>4} ops {:>4} \
             acked {:>4} reads {:>4} faults {:>3} crashes {:>2} terms {:>3} payouts {:>3} \
             rail {:>3} repeated {:>2} plans {:>2}/{:>2} dependents {:>3} (admitted {:>2} \
             failed {:>2})",
            report.seed,
            &report.trace_hash[..report.trace_hash.len().min(16)],
            report.sim_time.as_secs_f64(),
            report.wall_time.as_secs_f64(),
            s.ledger_len,
            s.operations,
            s.writes_acknowledged,
            s.reads_answered,
            s.faults,
            s.crashes,
            s.terms_with_leaders,
            s.effects.payouts,
            s.effects.requests,
            s.effects.keys_repeated,
            s.plans.recorded,
            s.plans.plans,
            s.outcome_deps.dependents,
            s.outcome_deps.admitted,
            s.outcome_deps.failed,
        );
    }
    if let Some(lines) = &report.trace {
        for line in lines {
            println!("    {line}");
        }
    }
    if !report.passed() {
        for violation in &report.violations {
            println!("    violation {violation}");
        }
        println!("    last trace lines:");
        for line in &report.trace_tail {
            println!("      {line}");
        }
        println!(
            "    replay: {}",
            replay_command(report.seed, &report.config)
        );
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.nodes != 3 && args.nodes != 5 {
        eprintln!("--nodes must be 3 or 5");
        return ExitCode::from(2);
    }
    let Some(variant) = Variant::from_name(&args.variant) else {
        eprintln!(
            "unknown variant {:?} (correct, local-reads, lying-disk, no-dedupe, early-ack, \
             late-join-reads, unguarded-removal)",
            args.variant
        );
        return ExitCode::from(2);
    };
    let (first, end) = match (&args.seed, &args.seeds) {
        (Some(seed), _) => (*seed, seed.saturating_add(1)),
        (None, Some(range)) => match parse_range(range) {
            Some(range) => range,
            None => {
                eprintln!("--seeds takes A..B with A < B, got {range:?}");
                return ExitCode::from(2);
            }
        },
        (None, None) => (0, 1),
    };
    if !(args.duration > 0.0 && args.duration.is_finite()) {
        eprintln!("--duration must be a positive number of seconds");
        return ExitCode::from(2);
    }
    let config = SimConfig {
        nodes: args.nodes,
        duration: Duration::from_secs_f64(args.duration),
        clients: args.clients,
        faults: Faults {
            intensity: args.fault_intensity.max(0.0),
            crashes: !args.no_crashes,
            partitions: !args.no_partitions,
            membership: !args.no_membership,
        },
        variant,
        execution: !args.no_execution,
        tick: Duration::from_millis(args.tick_ms),
        prefill: args.prefill,
        keep_trace: args.trace,
    };
    let started = Instant::now();
    let mut failed = Vec::new();
    let mut sim_total = Duration::ZERO;
    let mut wall_in_seeds = Duration::ZERO;
    let mut effects = docket_sim::check::effects::Stats::default();
    let mut plans = docket_sim::check::plans::Stats::default();
    let mut dependents = docket_sim::check::outcome_deps::Stats::default();
    for seed in first..end {
        let report = run_seed(seed, &config);
        sim_total += report.sim_time;
        wall_in_seeds += report.wall_time;
        let e = &report.stats.effects;
        effects.payouts += e.payouts;
        effects.executed += e.executed;
        effects.rail_errors += e.rail_errors;
        effects.requests += e.requests;
        effects.payments += e.payments;
        effects.keys_repeated += e.keys_repeated;
        effects.paid_then_rail_error += e.paid_then_rail_error;
        let p = &report.stats.plans;
        plans.plans += p.plans;
        plans.recorded += p.recorded;
        plans.members += p.members;
        plans.reordered += p.reordered;
        let d = &report.stats.outcome_deps;
        dependents.dependents += d.dependents;
        dependents.admitted += d.admitted;
        dependents.failed += d.failed;
        dependents.rejected_or_expired += d.rejected_or_expired;
        dependents.rejected_otherwise += d.rejected_otherwise;
        dependents.waited += d.waited;
        dependents.deferred_at_end += d.deferred_at_end;
        print_report(&report, args.quiet);
        let mut passed = report.passed();
        for _ in 1..args.repeat.max(1) {
            let again = run_seed(seed, &config);
            if again.trace_hash != report.trace_hash {
                println!(
                    "seed {seed} NONDETERMINISTIC: trace {} then {}",
                    report.trace_hash, again.trace_hash
                );
                print_report(&again, args.quiet);
                passed = false;
            }
        }
        if !passed {
            failed.push(seed);
        }
    }
    let wall = started.elapsed();
    let seeds = end - first;
    println!(
        "{seeds} seeds, {} failed; {:.1} seeds/minute; simulated {:.1}s in {:.1}s wall \
         (simulated-to-wall ratio {:.1}x)",
        failed.len(),
        seeds as f64 / wall.as_secs_f64() * 60.0,
        sim_total.as_secs_f64(),
        wall_in_seeds.as_secs_f64(),
        sim_total.as_secs_f64() / wall_in_seeds.as_secs_f64().max(1e-9),
    );
    if config.execution {
        println!(
            "execution: {} payouts ({} executed, {} rail errors, {} of them paid by the rail); \
             the rail got {} requests, made {} payments, saw {} keys more than once",
            effects.payouts,
            effects.executed,
            effects.rail_errors,
            effects.paid_then_rail_error,
            effects.requests,
            effects.payments,
            effects.keys_repeated,
        );
    }
    println!(
        "plans: {} submitted, {} recorded ({} members; {} printed out of recording order); \
         outcome dependents: {} ({} waited for an outcome): {} admitted, {} DEPENDENCY_FAILED, \
         {} rejected or expired with a dependency, {} rejected otherwise, {} still deferred",
        plans.plans,
        plans.recorded,
        plans.members,
        plans.reordered,
        dependents.dependents,
        dependents.waited,
        dependents.admitted,
        dependents.failed,
        dependents.rejected_or_expired,
        dependents.rejected_otherwise,
        dependents.deferred_at_end,
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        println!("failing seeds: {failed:?}");
        ExitCode::from(1)
    }
}
