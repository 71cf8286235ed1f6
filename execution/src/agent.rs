//! The [`Executor`]: follows committed entries on the leader and carries out their effects.
//!
//! ## One leadership, one epoch
//!
//! [`Executor::run`] watches the node's [`Leadership`]. While this node leads (in a given
//! term) it runs an *epoch*: scan from the journal's cursor, follow new entries, run jobs.
//! When leadership is lost, the term changes, or shutdown is asked, the epoch future is
//! dropped, which cancels every job mid-flight (an interrupted attempt is recorded as such
//! by the next epoch that finds it). Within an epoch every job also checks, right before
//! its effect, that leadership is confirmed by a quorum and that the term is unchanged.
//!
//! ## Exactly once per idempotency key
//!
//! Each admitted effect-bearing entry is a job keyed by its proposal id. Before doing
//! anything, a job asks two memories whether the work is done:
//!
//! * the **ledger** (every node's memory): an outcome record for the proposal is in
//!   committed state ([`outcome::already_reported`]) → resolved, nothing runs. This is what
//!   stops a new leader, even with an empty journal, from repeating a reported effect.
//! * the **journal** (this node's memory): a concluded attempt is not run again, its outcome
//!   record is (re)filed from what was journaled; an outcome record already filed is refiled
//!   byte for byte, so it is a duplicate, not a second record.
//!
//! What neither memory can know is an attempt interrupted between sending and journaling
//! its result (a crash, a lost leadership). Such an attempt is repeated, with the same
//! `Idempotency-Key`, which is why targets must honour it: the pair gives effects that
//! happen once per key, and outcome records that are filed once per proposal.
//!
//! ## The cursor
//!
//! The journal's cursor is the first ledger index with unfinished work; everything before
//! it is resolved. A fresh journal starts at 0 and scans the whole ledger (reading pages of
//! [`SCAN_PAGE_ENTRIES`]); entries already reported are resolved by a state lookup each.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use docket_core::proposal::public_key;
use docket_core::state::ProposalStatus;
use docket_core::{Decision, DecisionRecord, LedgerEntry, LedgerIndex, PublicKey};
use ed25519_dalek::SigningKey;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::{Allowlist, ConfigError, ExecutionConfig};
use crate::effect::{Effect, Plan, PlanContext, Request};
use crate::evidence::{bounded, content_hash, Cost, Evidence, OutcomeKind, REASON_BYTES_MAX};
use crate::gate::{self, RateLimiter};
use crate::host::{Host, Leadership, Submitted};
use crate::journal::{Conclusion, Job, Journal, JournalError, Phase, Resolution};
use crate::outcome;
use crate::telemetry;

/// Ledger entries read per page while scanning.
pub const SCAN_PAGE_ENTRIES: u64 = 256;
/// Pages scanned before the agent yields to other tasks: a fresh journal on a long ledger
/// scans it whole, and must not hold a runtime thread while it does.
pub const SCAN_PAGES_PER_TURN: usize = 16;
/// Wait before retrying a job that could not file its outcome (host busy, not leader yet).
pub const JOB_RETRY_MS: u64 = 200;
/// After an epoch ended because leadership could not be confirmed although the watch still
/// says "leader", wait this long before trying again (the watch usually changes first).
pub const LEADERSHIP_RECHECK_MS: u64 = 500;
/// Extra time a run gets beyond its `deadline_ms` before the agent cuts it off: effects
/// enforce the deadline themselves; this is the backstop.
pub const RUN_GRACE_MS: u64 = 1_000;

/// A failure the agent cannot work around: its journal is unusable, so it cannot record
/// evidence and must not perform effects.
#[derive(Debug, thiserror::Error)]
pub enum ExecutionError {
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// How [`Executor::run_until_idle`] ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum EpochEnd {
    /// Every committed entry was looked at; `unfinished` jobs could not file their outcome
    /// (they are retried by the next epoch).
    Idle {
        scanned_to: LedgerIndex,
        unfinished: usize,
    },
    /// Leadership could not be confirmed, or the term changed.
    LostLeadership,
}

enum JobEnd {
    Done,
    Retry,
    LostLeadership,
}

/// A wall clock: milliseconds since the Unix epoch.
pub type Clock = fn() -> u64;

/// Performs the effects of admitted entries while this node leads.
pub struct Executor {
    effects: Vec<Arc<dyn Effect>>,
    /// (domain, action) → index into `effects`.
    routes: BTreeMap<(String, String), usize>,
    allowlist: Allowlist,
    journal: Journal,
    key: SigningKey,
    jobs_inflight_max: usize,
    rate: RateLimiter,
    /// Stamps evidence (`started_at_ms`).
    clock: Clock,
    /// `false` only in the simulator's negative control ([`Executor::without_dedupe`]).
    dedupe: bool,
}

impl fmt::Debug for Executor {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("Executor")
            .field(
                "effects",
                &self.effects.iter().map(|e| e.name()).collect::<Vec<_>>(),
            )
            .field("executor", &self.executor_key())
            .finish()
    }
}

impl Executor {
    /// Builds the built-in effects a configuration asks for (after validating it).
    pub fn from_config(
        config: &ExecutionConfig,
        key: SigningKey,
        journal: Journal,
    ) -> Result<Executor, ConfigError> {
        Executor::from_config_trusting(config, key, journal, &[])
    }

    /// [`Executor::from_config`], its HTTP effects trusting the CA certificates in
    /// `ca_pems` (PEM) for HTTPS targets (see [`crate::http::client_trusting`]).
    pub fn from_config_trusting(
        config: &ExecutionConfig,
        key: SigningKey,
        journal: Journal,
        ca_pems: &[&[u8]],
    ) -> Result<Executor, ConfigError> {
        config.validate()?;
        let client = crate::http::client_trusting(ca_pems).map_err(|e| ConfigError {
            field: "execution".into(),
            message: format!("cannot build the HTTP client: {e}"),
        })?;
        let effects = crate::effects::from_config(config, &client)?;
        Executor::new(
            effects,
            config.allowlist()?,
            key,
            journal,
            config.jobs_inflight_max,
        )
    }

    /// An executor over any effects. Each (domain, action) may be claimed by one effect only:
    /// a proposal gets exactly one outcome record.
    pub fn new(
        effects: Vec<Arc<dyn Effect>>,
        allowlist: Allowlist,
        key: SigningKey,
        journal: Journal,
        jobs_inflight_max: usize,
    ) -> Result<Executor, ConfigError> {
        let mut routes = BTreeMap::new();
        for (i, effect) in effects.iter().enumerate() {
            for trigger in effect.triggers() {
                if trigger.domain == crate::config::OUTCOME_DOMAIN {
                    return Err(ConfigError {
                        field: "execution".into(),
                        message: format!(
                            "effect {} may not react to outcome records",
                            effect.name()
                        ),
                    });
                }
                let key = (trigger.domain.clone(), trigger.action.clone());
                if let Some(previous) = routes.insert(key, i) {
                    return Err(ConfigError {
                        field: "execution".into(),
                        message: format!(
                            "{trigger} is claimed by both {} and {}",
                            effects[previous].name(),
                            effect.name()
                        ),
                    });
                }
            }
        }
        Ok(Executor {
            effects,
            routes,
            allowlist,
            journal,
            key,
            jobs_inflight_max: jobs_inflight_max.max(1),
            rate: RateLimiter::default(),
            clock: unix_ms,
            dedupe: true,
        })
    }

    /// Uses `clock` for the wall-clock time evidence records carry (`started_at_ms`)
    /// instead of the system clock. Evidence is hashed into outcome records, so the
    /// simulator passes its simulated clock: with the real one a replay would differ.
    pub fn with_clock(mut self, clock: Clock) -> Executor {
        self.clock = clock;
        self
    }

    /// A deliberately broken agent, and it exists **only** for the simulator's negative
    /// control (`docket-sim`, `Variant::NoDedupe`), which must show that its effects
    /// checker catches an agent that repeats effects. The agent forgets its journal (each
    /// epoch scans the ledger from the start and treats every job as new, so a job whose
    /// outcome could not be filed at once is attempted again) and ignores outcome records
    /// already in the ledger. Never use it anywhere else.
    #[doc(hidden)]
    pub fn without_dedupe(mut self) -> Executor {
        self.dedupe = false;
        self
    }

    /// The journal, for `GET /v1/execution/{id}` and `docket execution show`.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The key outcome records are signed with.
    pub fn executor_key(&self) -> PublicKey {
        public_key(&self.key)
    }

    /// Runs epochs while `leadership` says this node leads, until `shutdown` becomes true
    /// (or its sender, or the leadership sender, is dropped). Returns an error only when the
    /// journal fails.
    pub async fn run<H: Host>(
        &self,
        host: &H,
        mut leadership: watch::Receiver<Leadership>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), ExecutionError> {
        loop {
            if *shutdown.borrow_and_update() {
                return Ok(());
            }
            let current = *leadership.borrow_and_update();
            if !current.leader {
                tokio::select! {
                    changed = leadership.changed() => if changed.is_err() { return Ok(()) },
                    changed = shutdown.changed() => if changed.is_err() { return Ok(()) },
                }
                continue;
            }
            tracing::info!(term = current.term, "execution agent starting");
            tokio::select! {
                end = self.epoch(host, current.term, true) => {
                    match end? {
                        EpochEnd::LostLeadership => {
                            tracing::info!(term = current.term, "execution agent stopped: leadership not confirmed");
                            tokio::select! {
                                changed = leadership.changed() => if changed.is_err() { return Ok(()) },
                                changed = shutdown.changed() => if changed.is_err() { return Ok(()) },
                                _ = tokio::time::sleep(Duration::from_millis(LEADERSHIP_RECHECK_MS)) => {}
                            }
                        }
                        EpochEnd::Idle { .. } => {}
                    }
                }
                changed = leadership.changed() => {
                    tracing::info!(term = current.term, "execution agent stopped: leadership changed");
                    if changed.is_err() { return Ok(()) }
                }
                changed = shutdown.changed() => if changed.is_err() { return Ok(()) },
            }
        }
    }

    /// Runs one epoch in `term` until every committed entry has been looked at and no job is
    /// in flight (tests, simulation, tools). Does not wait for new entries. One epoch at a
    /// time per journal: never call it while [`Executor::run`] runs on the same journal.
    pub async fn run_until_idle<H: Host>(
        &self,
        host: &H,
        term: u64,
    ) -> Result<EpochEnd, ExecutionError> {
        self.epoch(host, term, false).await
    }

    /// The effect handling an entry, if any.
    fn route<'a>(
        &'a self,
        entry: &'a LedgerEntry,
    ) -> Option<(&'a DecisionRecord, &'a Arc<dyn Effect>)> {
        let record = entry.decision_record()?;
        let p = &record.proposal.proposal;
        let index = self.routes.get(&(p.domain.clone(), p.action.clone()))?;
        Some((record, &self.effects[*index]))
    }

    async fn epoch<H: Host>(
        &self,
        host: &H,
        term: u64,
        follow: bool,
    ) -> Result<EpochEnd, ExecutionError> {
        // A journal belongs to one ledger: its cursor and jobs mean nothing elsewhere.
        match host.entries(LedgerIndex(0), 1) {
            Ok(genesis) if !genesis.is_empty() => self.journal.bind_ledger(&genesis[0].hash)?,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reading the genesis entry"),
        }
        let mut scan = if self.dedupe {
            self.journal.cursor()?
        } else {
            LedgerIndex(0)
        };
        let mut saved_cursor = scan;
        let mut inflight = FuturesUnordered::new();
        // Ledger index → entry, for every job in flight or waiting to be retried.
        let mut busy: BTreeMap<LedgerIndex, LedgerEntry> = BTreeMap::new();
        let mut retry: BTreeMap<LedgerIndex, Instant> = BTreeMap::new();
        loop {
            // Retries that are due.
            let now = Instant::now();
            let due: Vec<LedgerIndex> = retry
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(index, _)| *index)
                .collect();
            for index in due {
                retry.remove(&index);
                let entry = busy[&index].clone();
                inflight.push(self.job(host, term, entry));
            }
            // New entries, while there is room.
            let len = host.ledger_len();
            let mut pages = 0;
            while scan.0 < len && busy.len() < self.jobs_inflight_max && pages < SCAN_PAGES_PER_TURN
            {
                pages += 1;
                let page = match host.entries(scan, SCAN_PAGE_ENTRIES.min(len - scan.0)) {
                    Ok(page) if !page.is_empty() => page,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, index = %scan, "reading the ledger");
                        break;
                    }
                };
                for entry in page {
                    if busy.len() >= self.jobs_inflight_max {
                        break;
                    }
                    assert_eq!(
                        entry.index, scan,
                        "invariant: the host returns entries in order"
                    );
                    scan = entry.index.next();
                    if self.classify(term, &entry)? {
                        busy.insert(entry.index, entry.clone());
                        inflight.push(self.job(host, term, entry));
                    }
                }
            }
            let cursor = busy.keys().next().copied().unwrap_or(scan).min(scan);
            if cursor != saved_cursor {
                self.journal.set_cursor(cursor)?;
                saved_cursor = cursor;
            }
            if !follow && inflight.is_empty() && scan.0 >= host.ledger_len() {
                return Ok(EpochEnd::Idle {
                    scanned_to: scan,
                    unfinished: retry.len(),
                });
            }
            if pages == SCAN_PAGES_PER_TURN && scan.0 < len {
                // A long scan (a fresh journal on a long ledger) yields between batches.
                tokio::task::yield_now().await;
                continue;
            }
            let next_retry = retry.values().min().copied();
            tokio::select! {
                Some(done) = inflight.next(), if !inflight.is_empty() => {
                    let (index, end) = done;
                    match end? {
                        JobEnd::Done => { busy.remove(&index); }
                        JobEnd::Retry => { retry.insert(index, Instant::now() + Duration::from_millis(JOB_RETRY_MS)); }
                        JobEnd::LostLeadership => return Ok(EpochEnd::LostLeadership),
                    }
                }
                _ = host.wait_for_entries(len), if follow => {}
                _ = tokio::time::sleep_until(next_retry.unwrap_or_else(Instant::now)), if next_retry.is_some() => {}
                // Reading the ledger failed with nothing else to wait for: try again shortly.
                _ = tokio::time::sleep(Duration::from_millis(crate::host::FOLLOW_POLL_MS)), if !follow => {}
            }
        }
    }

    /// Looks at one entry: answers whether it needs a job. Refusal evidence for entries that
    /// were not admitted is recorded here.
    fn classify(&self, term: u64, entry: &LedgerEntry) -> Result<bool, ExecutionError> {
        let Some((record, effect)) = self.route(entry) else {
            return Ok(false);
        };
        let reason = match &record.decision {
            Decision::Admit => {
                let resolved = self.dedupe
                    && self
                        .journal
                        .job(&record.id)?
                        .is_some_and(|j| j.is_resolved());
                return Ok(!resolved);
            }
            // A deferral is not a decision: the entry that decides the proposal comes later.
            Decision::Defer { .. } => return Ok(false),
            Decision::Reject(rejection) => format!("entry not admitted: {rejection}"),
        };
        if self.journal.job(&record.id)?.is_some() {
            return Ok(false);
        }
        let p = &record.proposal.proposal;
        let mut job = Job::new(record.id, &p.action, effect.name(), entry.index);
        let evidence = self.evidence(
            &job,
            entry,
            term,
            content_hash(&p.canonical_bytes()),
            OutcomeKind::Refused,
            Some(reason),
        );
        job.push_evidence(evidence);
        job.phase = Phase::Resolved {
            resolution: Resolution::NotAdmitted,
        };
        self.journal.put(&job)?;
        Ok(false)
    }

    /// A blank evidence record for the next attempt of `job`.
    fn evidence(
        &self,
        job: &Job,
        entry: &LedgerEntry,
        term: u64,
        inputs_hash: String,
        outcome: OutcomeKind,
        reason: Option<String>,
    ) -> Evidence {
        Evidence {
            command: job.command.clone(),
            effect: job.effect.clone(),
            instance: job.proposal_id,
            attempt: job.attempts().saturating_add(1),
            ledger_index: entry.index,
            term,
            executor: self.executor_key(),
            inputs_hash,
            outputs_hash: None,
            effects: Vec::new(),
            cost: Cost::default(),
            outcome,
            reason: reason.map(|r| bounded(r, REASON_BYTES_MAX)),
            started_at_ms: (self.clock)(),
        }
    }

    async fn job<H: Host>(
        &self,
        host: &H,
        term: u64,
        entry: LedgerEntry,
    ) -> (LedgerIndex, Result<JobEnd, ExecutionError>) {
        let index = entry.index;
        let end = self.job_inner(host, term, &entry).await;
        if let Err(e) = &end {
            tracing::error!(error = %e, %index, "execution journal failed");
        }
        let ended = match &end {
            Ok(JobEnd::Done) => "done",
            Ok(JobEnd::Retry) => "retry",
            Ok(JobEnd::LostLeadership) => "lost_leadership",
            Err(_) => "error",
        };
        if let Some((_, effect)) = self.route(&entry) {
            metrics::counter!(
                telemetry::JOBS_TOTAL,
                "effect" => effect.name().to_owned(),
                "end" => ended
            )
            .increment(1);
        }
        (index, end)
    }

    async fn job_inner<H: Host>(
        &self,
        host: &H,
        term: u64,
        entry: &LedgerEntry,
    ) -> Result<JobEnd, ExecutionError> {
        let (record, effect) = self
            .route(entry)
            .expect("invariant: jobs are routed entries");
        let effect = effect.clone();
        let id = record.id;
        let p = &record.proposal.proposal;
        let mut job = match self.journal.job(&id)? {
            Some(job) if self.dedupe => job,
            _ => Job::new(id, &p.action, effect.name(), entry.index),
        };
        if job.is_resolved() {
            return Ok(JobEnd::Done);
        }
        if let Phase::Attempting {
            attempt,
            term: then,
        } = job.phase
        {
            // Recorded first, whatever happens to the job next: the attempt may have
            // reached its target, and a job the ledger resolves below keeps that evidence.
            let mut evidence = self.evidence(
                &job,
                entry,
                then,
                content_hash(&p.canonical_bytes()),
                OutcomeKind::Failure,
                Some(
                    "interrupted: the attempt did not finish (crash or lost leadership); its \
                     effect is unknown; a retry uses the same idempotency key"
                        .into(),
                ),
            );
            evidence.attempt = attempt;
            job.push_evidence(evidence);
            job.phase = Phase::New;
            self.journal.put(&job)?;
        }
        let reporting = effect.reporting();
        if self.dedupe && outcome::already_reported(reporting, host, record) {
            let resolution = match &job.phase {
                Phase::Filed { outcome, .. } => match host.proposal_status(&outcome.id()) {
                    Some((ProposalStatus::Admitted, index)) => Resolution::OutcomeRecorded {
                        outcome_id: outcome.id(),
                        index,
                    },
                    _ => Resolution::AlreadyReported,
                },
                _ => Resolution::AlreadyReported,
            };
            tracing::debug!(proposal_id = %id.short(), ?resolution, "already reported");
            job.phase = Phase::Resolved { resolution };
            self.journal.put(&job)?;
            return Ok(JobEnd::Done);
        }
        if job.phase == Phase::New {
            if let Some(end) = self
                .attempt(host, term, entry, record, &effect, &mut job)
                .await?
            {
                return Ok(end);
            }
        }
        self.file(host, record, &effect, &mut job).await
    }

    /// Gate, leadership check, effect, verification, evidence. Answers `Some(end)` when the
    /// job ends here (skipped, or leadership lost); `None` when a conclusion was journaled.
    async fn attempt<H: Host>(
        &self,
        host: &H,
        term: u64,
        entry: &LedgerEntry,
        record: &DecisionRecord,
        effect: &Arc<dyn Effect>,
        job: &mut Job,
    ) -> Result<Option<JobEnd>, ExecutionError> {
        let started = Instant::now();
        let limits = *effect.limits();
        let proposal_hash = || content_hash(&record.proposal.proposal.canonical_bytes());
        let plan = effect.plan(PlanContext {
            entry,
            record,
            ledger: host,
        });
        let refusal = |this: &Self, job: &mut Job, inputs_hash: String, reason: String| {
            let mut evidence = this.evidence(
                job,
                entry,
                term,
                inputs_hash,
                OutcomeKind::Refused,
                Some(reason),
            );
            evidence.cost.wall_ms = elapsed_ms(started);
            tracing::info!(proposal_id = %job.proposal_id.short(), term, index = %entry.index, effect = %job.effect, reason = evidence.reason.as_deref().unwrap_or(""), "effect refused");
            this.conclude(job, evidence, Default::default())
        };
        let request: Request = match plan {
            Plan::Skip { reason } => {
                job.phase = Phase::Resolved {
                    resolution: Resolution::NotEffectBearing { reason },
                };
                self.journal.put(job)?;
                return Ok(Some(JobEnd::Done));
            }
            Plan::Refuse { reason } => {
                refusal(self, job, proposal_hash(), reason)?;
                return Ok(None);
            }
            Plan::Perform(request) => request,
        };
        let inputs_hash = content_hash(&request.body);
        if let Err(reason) = gate::check(&self.allowlist, effect.as_ref(), &request) {
            refusal(self, job, inputs_hash, reason)?;
            return Ok(None);
        }
        // Leadership is confirmed by a quorum right before anything leaves this node.
        if !host.is_leader_confirmed().await || host.term() != term {
            return Ok(Some(JobEnd::LostLeadership));
        }
        // The read-index round above also brought this node's applied state up to the
        // commit point: an outcome a previous leader got committed is visible now even if
        // it was not when the job started. Checked again here, so a new leader never
        // repeats an effect whose outcome is already in the ledger.
        if self.dedupe && outcome::already_reported(effect.reporting(), host, record) {
            job.phase = Phase::Resolved {
                resolution: Resolution::AlreadyReported,
            };
            self.journal.put(job)?;
            return Ok(Some(JobEnd::Done));
        }
        let throttled = self
            .rate
            .acquire(effect.name(), limits.rate_per_second)
            .await;
        if job.quota_window.is_none() {
            let window = entry.time.0 / limits.quota_window_ms;
            if !self
                .journal
                .take_quota(effect.name(), window, limits.quota_max)?
            {
                let reason = format!(
                    "quota exceeded: {} effects of {} per {} ms of ledger time already performed",
                    limits.quota_max,
                    effect.name(),
                    limits.quota_window_ms
                );
                refusal(self, job, inputs_hash, reason)?;
                return Ok(None);
            }
            job.quota_window = Some(window);
        }
        let attempt = job.attempts().saturating_add(1);
        job.phase = Phase::Attempting { attempt, term };
        self.journal.put(job)?;
        self.journal.flush().await?;

        let id = record.id;
        let cap = Duration::from_millis(limits.deadline_ms.saturating_add(RUN_GRACE_MS));
        let run = tokio::time::timeout(cap, effect.run(&request, &id)).await;
        let mut evidence = self.evidence(job, entry, term, inputs_hash, OutcomeKind::Failure, None);
        evidence.attempt = attempt;
        let mut fields = BTreeMap::new();
        match run {
            Err(_) => {
                evidence.reason = Some(format!("time cap of {} ms exceeded", cap.as_millis()));
            }
            Ok(Err(failed)) => {
                evidence.outputs_hash = failed.output.as_deref().map(content_hash);
                evidence.effects = failed.effects;
                evidence.cost = failed.cost;
                evidence.reason = Some(bounded(failed.reason, REASON_BYTES_MAX));
            }
            Ok(Ok(performed)) => {
                evidence.outputs_hash = Some(content_hash(&performed.output));
                evidence.cost = performed.cost;
                let verify_cap = Duration::from_millis(limits.timeout_ms);
                let verified =
                    tokio::time::timeout(verify_cap, effect.verify(&request, &id, &performed))
                        .await;
                evidence.effects = performed.effects;
                match verified {
                    Ok(Ok(values)) => {
                        evidence.outcome = OutcomeKind::Success;
                        fields = values;
                    }
                    Ok(Err(reason)) => {
                        evidence.reason = Some(bounded(
                            format!("verification failed: {reason}"),
                            REASON_BYTES_MAX,
                        ));
                    }
                    Err(_) => {
                        evidence.reason = Some(format!(
                            "verification timed out after {} ms",
                            limits.timeout_ms
                        ));
                    }
                }
            }
        }
        evidence.cost.throttled_ms = u64::try_from(throttled.as_millis()).unwrap_or(u64::MAX);
        evidence.cost.wall_ms = elapsed_ms(started);
        metrics::counter!(
            telemetry::ATTEMPTS_TOTAL,
            "effect" => job.effect.clone(),
            "outcome" => evidence.outcome.as_str()
        )
        .increment(1);
        metrics::histogram!(telemetry::ATTEMPT_DURATION_SECONDS, "effect" => job.effect.clone())
            .record(started.elapsed().as_secs_f64());
        tracing::info!(
            proposal_id = %id.short(),
            term,
            index = %entry.index,
            effect = %job.effect,
            outcome = evidence.outcome.as_str(),
            attempts = evidence.cost.attempts,
            wall_ms = evidence.cost.wall_ms,
            "effect attempted"
        );
        self.conclude(job, evidence, fields)?;
        self.journal.flush().await?;
        Ok(None)
    }

    fn conclude(
        &self,
        job: &mut Job,
        evidence: Evidence,
        fields: BTreeMap<String, String>,
    ) -> Result<(), ExecutionError> {
        metrics::counter!(
            telemetry::OUTCOMES_TOTAL,
            "effect" => job.effect.clone(),
            "outcome" => evidence.outcome.as_str()
        )
        .increment(1);
        let conclusion = Conclusion {
            outcome: evidence.outcome,
            reason: evidence.reason.clone(),
            fields,
            evidence_hash: evidence.hash_hex(),
        };
        job.push_evidence(evidence);
        job.phase = Phase::Concluded { conclusion };
        self.journal.put(job)?;
        Ok(())
    }

    /// Files (or refiles) the outcome record and resolves the job when it is decided.
    async fn file<H: Host>(
        &self,
        host: &H,
        record: &DecisionRecord,
        effect: &Arc<dyn Effect>,
        job: &mut Job,
    ) -> Result<JobEnd, ExecutionError> {
        let outcome = match &job.phase {
            Phase::Concluded { conclusion } => {
                let outcome = outcome::build(
                    effect.reporting(),
                    &host.ledger_id(),
                    &self.key,
                    record,
                    effect.name(),
                    conclusion,
                );
                job.phase = Phase::Filed {
                    conclusion: conclusion.clone(),
                    outcome: Box::new(outcome.clone()),
                };
                self.journal.put(job)?;
                outcome
            }
            Phase::Filed { outcome, .. } => (**outcome).clone(),
            other => unreachable!("invariant: only concluded jobs file outcomes, found {other:?}"),
        };
        let outcome_id = outcome.id();
        let resolution = match host.submit(outcome).await {
            Ok(Submitted::Recorded {
                index,
                decision: Decision::Admit,
            })
            | Ok(Submitted::Duplicate {
                index,
                status: ProposalStatus::Admitted,
            }) => Resolution::OutcomeRecorded { outcome_id, index },
            Ok(Submitted::Recorded {
                index,
                decision: Decision::Reject(rejection),
            }) => {
                if outcome::already_reported(effect.reporting(), host, record) {
                    Resolution::AlreadyReported
                } else {
                    tracing::warn!(proposal_id = %record.id.short(), outcome_id = %outcome_id.short(), %index, %rejection, "outcome record rejected");
                    Resolution::OutcomeRejected {
                        outcome_id,
                        index,
                        decision: rejection.to_string(),
                    }
                }
            }
            Ok(Submitted::Duplicate {
                index,
                status: ProposalStatus::Rejected,
            }) => Resolution::OutcomeRejected {
                outcome_id,
                index,
                decision: "rejected (an earlier filing of the same record)".into(),
            },
            Ok(Submitted::Recorded {
                decision: Decision::Defer { .. },
                ..
            })
            | Ok(Submitted::Duplicate {
                status: ProposalStatus::Deferred,
                ..
            }) => return Ok(JobEnd::Retry),
            Err(e) => {
                tracing::debug!(proposal_id = %record.id.short(), error = %e, "outcome not filed yet");
                return Ok(JobEnd::Retry);
            }
        };
        let result = match &resolution {
            Resolution::OutcomeRecorded { .. } => "recorded",
            Resolution::OutcomeRejected { .. } => "rejected",
            _ => "already_reported",
        };
        metrics::counter!(
            telemetry::OUTCOME_RECORDS_TOTAL,
            "effect" => effect.name().to_owned(),
            "result" => result
        )
        .increment(1);
        job.phase = Phase::Resolved { resolution };
        self.journal.put(job)?;
        Ok(JobEnd::Done)
    }
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
