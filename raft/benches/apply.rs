//! Apply cost against ledger length: does applying one more entry cost the same on a
//! ledger of 10^4 entries as on one of 10^6 (issue 10: O(1)/O(log n) per entry, flat as
//! the ledger grows)?
//!
//! Two groups, each over stores pre-filled to the same ledger lengths, on the disk
//! `DOCKET_BENCH_ENGINE` names (`sled` or `fjall`; the store's default otherwise), which
//! the group names carry (`apply-fjall/{len}`):
//!
//! * `apply/{len}`: one Raft entry carrying a one-deposit `Submit`, through
//!   `RaftStateMachine::apply` (what openraft calls): core adjudication and apply, then
//!   `Store::commit_apply` (the ledger entry, its Merkle tree record, the applied record).
//!   The proposal's signature is checked in the node's memo before the timer starts, as a
//!   node's API front door does, so the figure is the apply path, not ed25519. The fill
//!   goes through the same path, in batches, with proposals signed on a second thread.
//! * `commit/{len}`: `Store::commit_apply` of one ledger entry alone, on a store filled
//!   with synthetic entries (the store checks neither chain nor records), which fills
//!   fast enough for 10^7 and isolates the part of apply whose cost could depend on the
//!   ledger's length. On the same store, `commit/head_frontier/{len}` and
//!   `commit/head_disk/{len}` read the tree's head from the frontier in memory and from
//!   the disk.
//! * `install/{len}`: a snapshot of a ledger of `len` entries, each a deposit to a
//!   subject of its own (as the growth benchmark writes), installed into an empty state
//!   machine through `RaftStateMachine::install_snapshot`: verified and replayed, switched
//!   to, the state map rebuilt. What a new node spends once the snapshot has arrived.
//!   One install per sample; the figure is per entry.
//!
//! Each fixture is built once per length in a temporary directory (removed when the
//! length is done) and reused by every sample. Applying grows the ledger, so a sample
//! times at most [`APPLIES_PER_SAMPLE_MAX`] applies and reports them scaled to the
//! iteration count criterion asked for; the bench prints how far each ledger grew.
//!
//! ```text
//! cargo bench -p docket-raft --bench apply
//! DOCKET_BENCH_SIZES=10000,100000 cargo bench -p docket-raft --bench apply   # quick
//! DOCKET_BENCH_COMMIT_SIZES=10000000 cargo bench -p docket-raft --bench apply -- commit
//! DOCKET_BENCH_ENGINE=fjall cargo bench -p docket-raft --bench apply
//! DOCKET_BENCH_INSTALL_SIZES=1000000 cargo bench -p docket-raft --bench apply -- install
//! ```
//!
//! Medians and spreads per length: criterion's `estimates.json` and `sample.json` under
//! `target/criterion/{apply,commit}/`.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use docket_core::constitution::DEFAULT_DOCUMENT;
use docket_core::{
    dev, ConstitutionVersion, EntryHash, LedgerEntry, LedgerId, LedgerIndex, LedgerTime, Record,
    SignatureCheck, SignedProposal, Value,
};
use docket_raft::store::AppliedRecord;
use docket_raft::{
    Command, CommandResponse, Entry, Replica, StateMachine, StorageEngine, Store, StoreOptions,
    STORAGE_ENGINE_DEFAULT,
};
use openraft::storage::RaftStateMachine;
use openraft::RaftSnapshotBuilder;
use openraft::{CommittedLeaderId, EntryPayload, LogId};

/// The allocator the `docket` binary runs with (node/src/main.rs), so the figures are the
/// node's: under glibc malloc, sled's page cache fragments the heap as the store grows and
/// every apply's allocations slow down with it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Ledger lengths of the `apply` group unless `DOCKET_BENCH_SIZES` says otherwise.
/// 10^7 is left out: its fill signs and verifies 10^7 proposals (about 15 minutes on the
/// 2-core machine).
const APPLY_SIZES_DEFAULT: &[u64] = &[10_000, 100_000, 1_000_000];
/// Ledger lengths of the `commit` group unless `DOCKET_BENCH_COMMIT_SIZES` says otherwise.
const COMMIT_SIZES_DEFAULT: &[u64] = &[10_000, 100_000, 1_000_000, 10_000_000];
/// Ledger lengths of the `install` group unless `DOCKET_BENCH_INSTALL_SIZES` says
/// otherwise (an install of 10^6 entries takes about 20 s, and a sample is one).
const INSTALL_SIZES_DEFAULT: &[u64] = &[100_000];
/// Samples of the `install` group: criterion's least.
const INSTALL_SAMPLES: usize = 10;

/// Applies timed per sample. Each apply grows the ledger by one entry, so this bounds how
/// far a fixture drifts from its nominal length: warm-up and 20 samples apply about 3,000
/// entries, under a third of the smallest length.
const APPLIES_PER_SAMPLE_MAX: u64 = 100;
/// Overrides [`APPLIES_PER_SAMPLE_MAX`]: thousands give a profiler (`perf record`) enough
/// of the timed path to see past the fill.
const APPLIES_PER_SAMPLE_VARIABLE: &str = "DOCKET_BENCH_APPLIES_PER_SAMPLE";
const SAMPLES: usize = 20;

/// The disk the fixtures are on: `DOCKET_BENCH_ENGINE`, else the store's default.
fn engine() -> StorageEngine {
    match std::env::var("DOCKET_BENCH_ENGINE") {
        Ok(name) => name
            .parse()
            .unwrap_or_else(|e| panic!("DOCKET_BENCH_ENGINE: {e}")),
        Err(_) => STORAGE_ENGINE_DEFAULT,
    }
}

fn store_options() -> StoreOptions {
    StoreOptions {
        engine: engine(),
        ..StoreOptions::default()
    }
}

/// Proposals per `Submit` command, and commands per apply call, while filling: large
/// enough that per-call costs vanish, small enough that a batch is a few MiB.
const FILL_PROPOSALS_PER_COMMAND: usize = 256;
const FILL_COMMANDS_PER_APPLY: usize = 8;
/// Synthetic entries per `commit_apply` while filling the `commit` fixture.
const FILL_ENTRIES_PER_COMMIT: usize = 4_096;
/// Distinct subjects the `apply` group's deposits go to: the state's subject rows stay
/// this many, whatever the ledger length (its proposal status rows still grow, as they do
/// in a node). The `install` group's go to a subject each ([`UNIQUE_SUBJECTS`]).
const SUBJECTS: u64 = 1_024;
const UNIQUE_SUBJECTS: u64 = u64::MAX;

const T0: u64 = 1_767_225_600_000;

fn sizes(variable: &str, default: &[u64]) -> Vec<u64> {
    match std::env::var(variable) {
        Ok(list) => list
            .split(',')
            .map(|s| {
                s.trim()
                    .replace('_', "")
                    .parse()
                    .unwrap_or_else(|e| panic!("{variable}: {s:?} is not a length: {e}"))
            })
            .collect(),
        Err(_) => default.to_vec(),
    }
}

fn applies_per_sample() -> u64 {
    match std::env::var(APPLIES_PER_SAMPLE_VARIABLE) {
        Ok(n) => n
            .parse()
            .unwrap_or_else(|e| panic!("{APPLIES_PER_SAMPLE_VARIABLE}: {n:?} is not a count: {e}")),
        Err(_) => APPLIES_PER_SAMPLE_MAX,
    }
}

fn ledger_id() -> LedgerId {
    LedgerId::new("bench").expect("valid id")
}

fn deposit(ledger: &LedgerId, nonce: u64, subjects: u64) -> SignedProposal {
    dev::proposal(
        ledger,
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        &format!("stl-{}", nonce % subjects),
        Value::map([("amount", Value::Int(1)), ("currency", "EUR".into())]),
        vec![],
        nonce,
    )
}

fn raft_entry(index: u64, command: Command) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 0), index),
        payload: EntryPayload::Normal(command),
    }
}

/// A state machine on sled over a ledger of (about) `len` entries.
struct ApplyFixture {
    _dir: tempfile::TempDir,
    state_machine: StateMachine,
    replica: Replica,
    runtime: tokio::runtime::Runtime,
    ledger: LedgerId,
    /// Raft log index of the next entry, ledger time and proposal nonce of the next
    /// command.
    next_log_index: u64,
    next_time: u64,
    next_nonce: u64,
    /// Distinct subjects the deposits go to.
    subjects: u64,
}

impl ApplyFixture {
    fn build(len: u64, subjects: u64) -> ApplyFixture {
        let started = Instant::now();
        let dir = tempfile::tempdir().expect("tempdir");
        let (_log, state_machine) =
            docket_raft::open_with(dir.path(), &store_options()).expect("open");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let replica = state_machine.replica();
        let mut fixture = ApplyFixture {
            _dir: dir,
            state_machine,
            replica,
            runtime,
            ledger: ledger_id(),
            next_log_index: 1,
            next_time: T0,
            next_nonce: 1,
            subjects,
        };
        let genesis = raft_entry(
            fixture.take_log_index(),
            Command::Genesis {
                ledger_id: fixture.ledger.clone(),
                document: DEFAULT_DOCUMENT.to_owned(),
                time: LedgerTime(fixture.take_time()),
            },
        );
        fixture.apply(vec![genesis]);

        // Proposals are signed on a second thread while this one applies the previous
        // batch; each deposit records one ledger entry.
        let wanted = len.saturating_sub(fixture.replica.ledger_len());
        let per_apply = (FILL_PROPOSALS_PER_COMMAND * FILL_COMMANDS_PER_APPLY) as u64;
        let (sender, receiver) = mpsc::sync_channel::<Vec<Entry>>(2);
        let (ledger, first_nonce) = (fixture.ledger.clone(), fixture.next_nonce);
        let (first_index, first_time) = (fixture.next_log_index, fixture.next_time);
        let batches = wanted.div_ceil(per_apply);
        std::thread::scope(|scope| {
            scope.spawn(move || {
                let (mut nonce, mut index, mut time) = (first_nonce, first_index, first_time);
                let mut left = wanted;
                for _ in 0..batches {
                    let mut batch = Vec::with_capacity(FILL_COMMANDS_PER_APPLY);
                    while batch.len() < FILL_COMMANDS_PER_APPLY && left > 0 {
                        let count = left.min(FILL_PROPOSALS_PER_COMMAND as u64);
                        let proposals = (nonce..nonce + count)
                            .map(|n| deposit(&ledger, n, subjects))
                            .collect();
                        nonce += count;
                        left -= count;
                        batch.push(raft_entry(
                            index,
                            Command::Submit {
                                proposals,
                                time: LedgerTime(time),
                            },
                        ));
                        index += 1;
                        time += 1;
                    }
                    if sender.send(batch).is_err() {
                        return;
                    }
                }
            });
            for batch in receiver.iter() {
                fixture.next_log_index += batch.len() as u64;
                fixture.next_time += batch.len() as u64;
                fixture.apply(batch);
            }
        });
        fixture.next_nonce = first_nonce + wanted;
        let filled = fixture.replica.ledger_len();
        let seconds = started.elapsed().as_secs_f64();
        eprintln!(
            "apply fixture: ledger of {filled} entries filled in {seconds:.1} s ({:.0} entries/s)",
            filled as f64 / seconds
        );
        fixture
    }

    fn take_log_index(&mut self) -> u64 {
        self.next_log_index += 1;
        self.next_log_index - 1
    }

    fn take_time(&mut self) -> u64 {
        self.next_time += 1;
        self.next_time - 1
    }

    fn apply(&mut self, entries: Vec<Entry>) -> Vec<CommandResponse> {
        let state_machine = &mut self.state_machine;
        self.runtime
            .block_on(state_machine.apply(entries))
            .expect("apply")
    }

    /// `count` one-deposit entries, their signatures already in the node's memo.
    fn prepare(&mut self, count: u64) -> Vec<Entry> {
        (0..count)
            .map(|_| {
                let proposal = deposit(&self.ledger, self.next_nonce, self.subjects);
                self.next_nonce += 1;
                self.replica
                    .signatures()
                    .check(&proposal, &proposal.id())
                    .expect("a dev signature verifies");
                let index = self.take_log_index();
                let time = self.take_time();
                raft_entry(
                    index,
                    Command::Submit {
                        proposals: vec![proposal],
                        time: LedgerTime(time),
                    },
                )
            })
            .collect()
    }

    /// Applies `entries` one apply call each; the time they took.
    fn timed_applies(&mut self, entries: Vec<Entry>) -> Duration {
        let state_machine = &mut self.state_machine;
        let mut responses = Vec::with_capacity(entries.len());
        let elapsed = self.runtime.block_on(async {
            let started = Instant::now();
            for entry in entries {
                responses.push(state_machine.apply([entry]).await.expect("apply"));
            }
            started.elapsed()
        });
        for response in responses {
            match response.as_slice() {
                [CommandResponse::Submitted { appended, .. }] if appended.len() == 1 => {}
                other => panic!("a deposit appends one entry, got {other:?}"),
            }
        }
        elapsed
    }
}

/// A store (no state machine) over a ledger of `len` synthetic entries.
struct CommitFixture {
    _dir: tempfile::TempDir,
    store: Store,
    ledger: LedgerId,
    prev: EntryHash,
    applied: AppliedRecord,
}

impl CommitFixture {
    fn build(len: u64) -> CommitFixture {
        let started = Instant::now();
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), &store_options()).expect("open");
        let mut fixture = CommitFixture {
            _dir: dir,
            store,
            ledger: ledger_id(),
            prev: EntryHash::ZERO,
            applied: AppliedRecord::default(),
        };
        while fixture.applied.ledger_len < len {
            let count = (len - fixture.applied.ledger_len).min(FILL_ENTRIES_PER_COMMIT as u64);
            let entries = fixture.seal(count);
            fixture.applied.ledger_len += count;
            fixture
                .store
                .commit_apply(&entries, None, Default::default(), &fixture.applied)
                .expect("commit");
        }
        let seconds = started.elapsed().as_secs_f64();
        eprintln!(
            "commit fixture: ledger of {len} entries filled in {seconds:.1} s ({:.0} entries/s)",
            len as f64 / seconds
        );
        fixture
    }

    /// The next `count` entries of the chain.
    fn seal(&mut self, count: u64) -> Vec<LedgerEntry> {
        let first = self.applied.ledger_len;
        (first..first + count)
            .map(|i| {
                let entry = LedgerEntry::seal(
                    LedgerIndex(i),
                    LedgerTime(T0 + i),
                    ConstitutionVersion([2; 32]),
                    self.prev,
                    Record::Genesis {
                        ledger_id: self.ledger.clone(),
                        document: format!("entry {i}"),
                    },
                );
                self.prev = entry.hash;
                entry
            })
            .collect()
    }

    /// Commits `count` entries one `commit_apply` each; the time the commits took.
    fn timed_commits(&mut self, count: u64) -> Duration {
        let entries = self.seal(count);
        let started = Instant::now();
        for entry in &entries {
            self.applied.ledger_len += 1;
            self.store
                .commit_apply(
                    std::slice::from_ref(entry),
                    None,
                    Default::default(),
                    &self.applied,
                )
                .expect("commit");
        }
        started.elapsed()
    }
}

/// Per-apply times of every sample of one length (warm-up calls first), for the summary
/// criterion does not print: median and spread of the measured samples.
#[derive(Default)]
struct Samples {
    per_apply: Vec<Duration>,
}

impl Samples {
    fn record(&mut self, elapsed: Duration, timed: u64) {
        self.per_apply.push(elapsed / timed as u32);
    }

    /// Median, quartiles and extremes of the last [`SAMPLES`] samples (criterion's
    /// measurement; the calls before them are its warm-up).
    fn summary(&self) -> Option<Summary> {
        let from = self.per_apply.len().checked_sub(SAMPLES)?;
        let mut sorted = self.per_apply[from..].to_vec();
        sorted.sort();
        let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
        Some(Summary {
            min: sorted[0],
            p25: at(0.25),
            median: at(0.5),
            p75: at(0.75),
            max: sorted[sorted.len() - 1],
        })
    }
}

#[derive(Clone, Copy)]
struct Summary {
    min: Duration,
    p25: Duration,
    median: Duration,
    p75: Duration,
    max: Duration,
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Prints one length's summary line and, after the last, the ratio of the medians of the
/// longest and the shortest ledger.
fn report(group: &str, summaries: &[(u64, Summary)]) {
    let per_sample = applies_per_sample();
    for (len, s) in summaries {
        eprintln!(
            "{group}/{len}: median {:.1} µs per apply, IQR {:.1}..{:.1}, min {:.1}, max {:.1} \
             ({SAMPLES} samples of up to {per_sample} applies)",
            micros(s.median),
            micros(s.p25),
            micros(s.p75),
            micros(s.min),
            micros(s.max)
        );
    }
    if let (Some((short, first)), Some((long, last))) = (summaries.first(), summaries.last()) {
        if long > short {
            eprintln!(
                "{group}: median at {long} / median at {short} = {:.2}",
                last.median.as_secs_f64() / first.median.as_secs_f64()
            );
        }
    }
}

/// What a sample timed, scaled to the `iters` criterion asked for.
fn scaled(elapsed: Duration, timed: u64, iters: u64) -> Duration {
    assert!(timed > 0, "invariant: every sample times an apply");
    elapsed.mul_f64(iters as f64 / timed as f64)
}

fn bench_apply(c: &mut Criterion) {
    let per_sample = applies_per_sample();
    let name = format!("apply-{}", engine());
    let mut group = c.benchmark_group(&name);
    group.sampling_mode(SamplingMode::Flat);
    let mut summaries = Vec::new();
    for len in sizes("DOCKET_BENCH_SIZES", APPLY_SIZES_DEFAULT) {
        // Built on first use, so a filtered-out length costs no fill.
        let mut fixture: Option<ApplyFixture> = None;
        let mut samples = Samples::default();
        group.bench_function(BenchmarkId::from_parameter(len), |b| {
            let fixture = fixture.get_or_insert_with(|| ApplyFixture::build(len, SUBJECTS));
            b.iter_custom(|iters| {
                let timed = iters.clamp(1, per_sample);
                let entries = fixture.prepare(timed);
                let elapsed = fixture.timed_applies(entries);
                samples.record(elapsed, timed);
                scaled(elapsed, timed, iters)
            });
        });
        summaries.extend(samples.summary().map(|s| (len, s)));
        if let Some(fixture) = fixture {
            eprintln!(
                "{name}/{len}: the ledger grew to {} entries while measured",
                fixture.replica.ledger_len()
            );
        }
    }
    group.finish();
    report(&name, &summaries);
}

fn bench_commit(c: &mut Criterion) {
    let per_sample = applies_per_sample();
    let name = format!("commit-{}", engine());
    let mut group = c.benchmark_group(&name);
    group.sampling_mode(SamplingMode::Flat);
    let mut summaries = Vec::new();
    for len in sizes("DOCKET_BENCH_COMMIT_SIZES", COMMIT_SIZES_DEFAULT) {
        let mut fixture: Option<CommitFixture> = None;
        let mut samples = Samples::default();
        group.bench_function(BenchmarkId::from_parameter(len), |b| {
            let fixture = fixture.get_or_insert_with(|| CommitFixture::build(len));
            b.iter_custom(|iters| {
                let timed = iters.clamp(1, per_sample);
                let elapsed = fixture.timed_commits(timed);
                samples.record(elapsed, timed);
                scaled(elapsed, timed, iters)
            });
        });
        summaries.extend(samples.summary().map(|s| (len, s)));
        // The head of the tree (size and root: what `GET /v1/status` shows as its ledger
        // root) on the same store, two ways in the same run: from the frontier the store
        // keeps in memory (what `Replica::tree_head` uses), and read from the disk as
        // before it (`popcount(len)` node reads, plus one of the applied record).
        if let Some(fixture) = &fixture {
            group.bench_function(BenchmarkId::new("head_frontier", len), |b| {
                b.iter(|| fixture.store.ledger_tree_head());
            });
            group.bench_function(BenchmarkId::new("head_disk", len), |b| {
                b.iter(|| {
                    fixture
                        .store
                        .ledger_tree()
                        .expect("tree")
                        .head()
                        .expect("head")
                });
            });
        }
        if let Some(fixture) = fixture {
            eprintln!(
                "{name}/{len}: the ledger grew to {} entries while measured",
                fixture.applied.ledger_len
            );
        }
    }
    group.finish();
    report(&name, &summaries);
}

/// A snapshot of a ledger of (about) `len` entries, its bytes as a new node receives them,
/// and what the node that built it holds.
struct InstallFixture {
    meta: docket_raft::SnapshotMeta,
    bytes: Vec<u8>,
    ledger_len: u64,
    state_hash: Option<docket_core::StateHash>,
}

impl InstallFixture {
    fn build(len: u64) -> InstallFixture {
        let mut fixture = ApplyFixture::build(len, UNIQUE_SUBJECTS);
        let state_machine = &mut fixture.state_machine;
        // Building records the snapshot; its bytes are written as the current snapshot is
        // read, as a leader serves it.
        let snapshot = fixture.runtime.block_on(async {
            state_machine
                .get_snapshot_builder()
                .await
                .build_snapshot()
                .await
                .expect("build a snapshot");
            state_machine
                .get_current_snapshot()
                .await
                .expect("read the snapshot")
                .expect("a snapshot")
        });
        let mut file = snapshot.snapshot;
        let bytes = file.to_bytes().expect("the snapshot's bytes");
        eprintln!(
            "install fixture: snapshot of {} entries, {} bytes",
            fixture.replica.ledger_len(),
            bytes.len()
        );
        InstallFixture {
            meta: snapshot.meta,
            bytes,
            ledger_len: fixture.replica.ledger_len(),
            state_hash: fixture.replica.state_hash(),
        }
    }

    /// Installs the snapshot into a new, empty state machine; the time the install took
    /// and the CPU time the process spent meanwhile (every thread: the replay, the
    /// snapshot reader, the storage engine's).
    fn timed_install(&self) -> (Duration, Duration) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_log, mut state_machine) =
            docket_raft::open_with(dir.path(), &store_options()).expect("open");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let elapsed = runtime.block_on(async {
            let mut receiving = state_machine
                .begin_receiving_snapshot()
                .await
                .expect("begin receiving");
            *receiving = docket_raft::SnapshotFile::from_bytes(&self.bytes).expect("spill");
            let (started, cpu) = (Instant::now(), process_cpu());
            state_machine
                .install_snapshot(&self.meta, receiving)
                .await
                .expect("install");
            (started.elapsed(), process_cpu().saturating_sub(cpu))
        });
        let replica = state_machine.replica();
        assert_eq!(replica.ledger_len(), self.ledger_len, "installed ledger");
        assert_eq!(replica.state_hash(), self.state_hash, "installed state");
        elapsed
    }
}

/// CPU time (user and system) of this process so far, from `/proc/self/stat` (Linux
/// reports it in ticks of 1/100 s there); zero where that cannot be read. On a machine whose
/// cores are shared, the install's CPU time moves less with the neighbours than its wall
/// time does.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces):
    // state is field 3, utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn bench_install(c: &mut Criterion) {
    let name = format!("install-{}", engine());
    let mut group = c.benchmark_group(&name);
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(INSTALL_SAMPLES);
    for len in sizes("DOCKET_BENCH_INSTALL_SIZES", INSTALL_SIZES_DEFAULT) {
        let mut fixture: Option<InstallFixture> = None;
        let mut per_entry: Vec<Duration> = Vec::new();
        let mut cpu_per_entry: Vec<Duration> = Vec::new();
        group.bench_function(BenchmarkId::from_parameter(len), |b| {
            let fixture = fixture.get_or_insert_with(|| InstallFixture::build(len));
            b.iter_custom(|iters| {
                let (elapsed, cpu) = fixture.timed_install();
                per_entry.push(elapsed / fixture.ledger_len as u32);
                cpu_per_entry.push(cpu / fixture.ledger_len as u32);
                scaled(elapsed, 1, iters)
            });
        });
        // The samples criterion measured (the calls before them are its warm-up).
        let measured = |all: &[Duration]| -> Vec<Duration> {
            let mut last = all[all.len().saturating_sub(INSTALL_SAMPLES)..].to_vec();
            last.sort();
            last
        };
        let (wall, cpu) = (measured(&per_entry), measured(&cpu_per_entry));
        if let (Some(min), Some(max)) = (wall.first(), wall.last()) {
            let median = wall[wall.len() / 2];
            eprintln!(
                "{name}/{len}: median {:.2} µs per entry ({:.0} entries/s), min {:.2}, max \
                 {:.2}; CPU median {:.2} µs per entry, min {:.2}, max {:.2} ({} installs)",
                micros(median),
                1e6 / micros(median),
                micros(*min),
                micros(*max),
                micros(cpu[cpu.len() / 2]),
                micros(cpu[0]),
                micros(cpu[cpu.len() - 1]),
                wall.len()
            );
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(SAMPLES)
        // Criterion's warm-up doubles the iterations until this much *wall* time has
        // passed; with the cap on applies per sample, that must stay short, or the
        // iteration count overflows.
        .warm_up_time(Duration::from_millis(20))
        .measurement_time(Duration::from_secs(2));
    targets = bench_apply, bench_commit, bench_install
}
criterion_main!(benches);
