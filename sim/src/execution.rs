//! Execution agents in the simulated nodes: the real [`Executor`] on every host, attached
//! to leadership as the node attaches it (`node/src/execution.rs`).
//!
//! * [`SimHost`] is the agent's [`Host`] over the simulated node's Raft handle and
//!   replica, with the node's semantics: the ledger view reads only applied (committed)
//!   entries; leadership is confirmed by a read-index round (`ensure_linearizable`);
//!   outcome records are submitted as `Command::Submit` stamped with the simulated clock.
//! * [`leadership`] publishes "leader in term T" only once a read-index round confirmed it
//!   in T (and the replica has applied up to the read index), as the node does: an agent
//!   starting on metrics alone could miss outcome records of earlier terms not applied yet.
//! * The journal is opened ([`SimJournal::open`]) on the node's [`SimJournal`], which
//!   outlives host crashes and keeps exactly what was flushed; evidence is stamped with the
//!   simulated clock ([`Executor::with_clock`]).
//! * The one effect is the payment rail ([`SimRailEffect`]: the crate's `RailEffect` with
//!   a turmoil transport) pointed at the simulated rail ([`crate::rail`]).
//!
//! Everything the agent's futures touch must be `Send` (the execution crate's contract), so
//! the host reports what it does through an [`ExecLog`] (a mutex-guarded list) that the
//! harness drains into the trace after every step, rather than through the `Rc` world.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use docket_core::state::ProposalStatus;
use docket_core::{
    dev, Decision, LedgerEntry, LedgerId, LedgerIndex, ProposalId, SignedProposal, SubjectState,
};
use docket_execution::effects::RailEffect;
use docket_execution::{
    EffectLimits, ExecutionConfig, Executor, Host, HostError, Leadership, LedgerView, RailConfig,
    Submitted,
};
use docket_raft::NodeId;
use docket_service::{Service, ServiceHost};
use tokio::sync::watch;

use crate::api::ledger_now;
use crate::config::Variant;
use crate::journal::SimJournal;
use crate::rail::{self, RAIL_HOST, RAIL_PORT};
use crate::rail_effect::SimRailEffect;
use crate::world::now;

/// Per-request timeout of the rail effect: well above the rail's answer delay
/// ([`rail::RAIL_DELAY_MS_MAX`]) plus a few link latencies, so only faults time it out.
pub const RAIL_TIMEOUT_MS: u64 = 500;
/// Deadline of one rail run, tries and backoff included: short, so a payout stuck behind a
/// partition becomes a rail error (or an interrupted attempt) within the run.
pub const RAIL_DEADLINE_MS: u64 = 2_500;
/// Largest payout the simulated agents send; larger ones are refused at planning (a rail
/// error that never reaches the rail).
pub const RAIL_AMOUNT_MAX: i64 = 50_000;
/// Longest wait for one leadership confirmation (a read-index round) before it counts as
/// not confirmed: a deposed leader's round may never complete.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(2);
/// Wait before retrying a confirmation that failed while metrics still say "leader" (the
/// node's `LEADERSHIP_CONFIRM_RETRY_MS`).
pub const CONFIRM_RETRY: Duration = Duration::from_millis(200);

const _: () = assert!(rail::RAIL_DELAY_MS_MAX < RAIL_TIMEOUT_MS);
const _: () = assert!(RAIL_TIMEOUT_MS <= RAIL_DEADLINE_MS);

/// What the agents and their hosts did since the harness last looked.
#[derive(Debug, Default)]
pub struct ExecEvents {
    /// Trace lines: `(simulated ns, line)`.
    pub lines: Vec<(u128, String)>,
    /// Agents that stopped on an error (their journal failed): always a violation.
    pub failures: Vec<String>,
}

/// Shared by the hosts' agents (`Send`) and the harness.
pub type ExecLog = Arc<Mutex<ExecEvents>>;

fn lock(log: &ExecLog) -> std::sync::MutexGuard<'_, ExecEvents> {
    log.lock().unwrap_or_else(|p| p.into_inner())
}

fn log(log: &ExecLog, line: String) {
    lock(log).lines.push((now().as_nanos(), line));
}

/// Takes everything logged so far.
pub fn drain(log: &ExecLog) -> ExecEvents {
    std::mem::take(&mut *lock(log))
}

/// The `[execution]` section of every simulated node: the rail, allowed, with limits
/// scaled to simulated links.
pub fn config() -> ExecutionConfig {
    let url = rail::url();
    ExecutionConfig {
        enabled: true,
        key_file: Some("exec.key".into()),
        allowed_urls: vec![format!("http://{RAIL_HOST}:{RAIL_PORT}/")],
        rail: Some(RailConfig {
            url,
            amount_max: RAIL_AMOUNT_MAX,
            limits: EffectLimits {
                timeout_ms: RAIL_TIMEOUT_MS,
                deadline_ms: RAIL_DEADLINE_MS,
                attempts_max: 4,
                backoff_ms: 50,
                backoff_ms_max: 400,
                ..EffectLimits::default()
            },
        }),
        ..ExecutionConfig::default()
    }
}

/// Evidence time: the simulated wall clock (ledger time's epoch plus simulated time).
fn sim_clock() -> u64 {
    ledger_now().0
}

/// The agent of one boot of node `id`, over its journal.
pub fn executor(id: NodeId, boot: u32, journal: &SimJournal, variant: Variant) -> Executor {
    let config = config();
    config
        .validate()
        .expect("invariant: the simulated execution config is valid");
    let rail_config = config
        .rail
        .as_ref()
        .expect("invariant: the rail is configured");
    // The crate's rail effect plans and verifies; its HTTP client is never used (the
    // simulated effect runs over turmoil instead).
    let client = docket_execution::http::client().expect("invariant: an HTTP client builds");
    let rail = RailEffect::new(rail_config, client).expect("invariant: the rail config is valid");
    let executor = Executor::new(
        vec![Arc::new(SimRailEffect::new(rail, id, boot))],
        config
            .allowlist()
            .expect("invariant: the allowlist is valid"),
        dev::signing_key("exec"),
        journal.open(),
        config.jobs_inflight_max,
    )
    .expect("invariant: one effect per action")
    .with_clock(sim_clock);
    if variant == Variant::NoDedupe {
        executor.without_dedupe()
    } else {
        executor
    }
}

/// The agent's view of a simulated node: the service's own host ([`ServiceHost`], as the
/// node uses it), with what it files traced.
#[derive(Clone)]
pub struct SimHost {
    pub id: NodeId,
    pub inner: ServiceHost,
    pub log: ExecLog,
}

impl std::fmt::Debug for SimHost {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("SimHost")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl LedgerView for SimHost {
    fn ledger_len(&self) -> u64 {
        self.inner.ledger_len()
    }

    fn entries(&self, from: LedgerIndex, limit: u64) -> Result<Vec<LedgerEntry>, HostError> {
        self.inner.entries(from, limit)
    }

    fn proposal_status(&self, id: &ProposalId) -> Option<(ProposalStatus, LedgerIndex)> {
        self.inner.proposal_status(id)
    }

    fn subject(&self, domain: &str, subject: &str) -> Option<SubjectState> {
        self.inner.subject(domain, subject)
    }

    fn action_quorum(&self, domain: &str, action: &str) -> Option<u32> {
        self.inner.action_quorum(domain, action)
    }
}

impl Host for SimHost {
    fn ledger_id(&self) -> LedgerId {
        self.inner.ledger_id()
    }

    fn term(&self) -> u64 {
        self.inner.term()
    }

    async fn is_leader_confirmed(&self) -> bool {
        self.inner.is_leader_confirmed().await
    }

    async fn submit(&self, proposal: SignedProposal) -> Result<Submitted, HostError> {
        let p = &proposal.proposal;
        let what = format!(
            "n{} exec files {} {} on {}",
            self.id,
            p.action,
            proposal.id().short(),
            p.subject
        );
        let result = self.inner.submit(proposal).await;
        let shown = match &result {
            Ok(Submitted::Recorded { index, decision }) => {
                let label = match decision {
                    Decision::Admit => "admitted".to_owned(),
                    other => other.label().to_string(),
                };
                format!("#{index} {label}")
            }
            Ok(Submitted::Duplicate { index, status }) => format!("duplicate #{index} {status:?}"),
            Err(e) => format!("error: {e}"),
        };
        log(&self.log, format!("{what} -> {shown}"));
        result
    }
}

/// Publishes whether node `id` leads, confirmed, until its Raft stops: the service's loop
/// (as the node runs it), spawned on the host's `LocalSet`, tracing changes.
pub fn leadership(id: NodeId, service: &Service, exec_log: ExecLog) -> watch::Receiver<Leadership> {
    let (rx, task) = service.leadership(move |before, after| {
        if after.leader || before.leader {
            log(
                &exec_log,
                format!(
                    "n{id} exec {} term {}",
                    if after.leader { "leads" } else { "stops" },
                    after.term
                ),
            );
        }
    });
    tokio::task::spawn_local(task);
    rx
}

/// Starts node `id`'s agent on the host's `LocalSet`: it runs until the host crashes.
pub fn start(
    id: NodeId,
    boot: u32,
    service: Arc<Service>,
    journal: &SimJournal,
    variant: Variant,
    exec_log: ExecLog,
) {
    let executor = executor(id, boot, journal, variant);
    let leadership = leadership(id, &service, exec_log.clone());
    let host = SimHost {
        id,
        inner: ServiceHost(service),
        log: exec_log.clone(),
    };
    tokio::task::spawn_local(async move {
        // Never sent: the agent stops when the host's tasks are dropped (a crash).
        let (_shutdown_tx, shutdown) = watch::channel(false);
        if let Err(e) = executor.run(&host, leadership, shutdown).await {
            let line = format!("n{id} exec stopped: {e}");
            log(&exec_log, line.clone());
            lock(&exec_log).failures.push(line);
        }
    });
}
