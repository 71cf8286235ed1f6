//! Test support: an in-memory host over a real `docket_core::State`, and real HTTP targets
//! on 127.0.0.1:0 that record every request and honour `Idempotency-Key`.

#![allow(dead_code, clippy::unwrap_used)] // Shared by several test files; tests may unwrap.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use docket_core::constitution::DEFAULT_DOCUMENT;
use docket_core::state::ProposalStatus;
use docket_core::{
    dev, Decision, DecisionRecord, LedgerEntry, LedgerId, LedgerIndex, LedgerTime, ProposalId,
    SignedProposal, State, SubjectState, Submission, Value,
};
use docket_execution::{
    EffectLimits, ExecutionConfig, Executor, Host, HostError, Journal, LedgerView, Submitted,
};

pub const LEDGER: &str = "exec-test";

/// A host over a real core state: entries are produced by `State::submit`, exactly as a
/// replica produces them.
pub struct FakeHost {
    ledger: Mutex<(State, Vec<LedgerEntry>, u64)>,
    pub leader: AtomicBool,
    pub term: AtomicU64,
    /// Submissions to fail (as "not leader") before succeeding again.
    pub fail_submits: AtomicU32,
    ledger_id: LedgerId,
}

impl FakeHost {
    pub fn new() -> Arc<FakeHost> {
        FakeHost::with_genesis_time(1_000)
    }

    /// A host whose genesis entry has ledger time `time` (so another genesis hash).
    pub fn with_genesis_time(time: u64) -> Arc<FakeHost> {
        FakeHost::with_document(DEFAULT_DOCUMENT, time)
    }

    /// A host whose genesis adopts `document` (a constitution in TOML) at ledger time `time`.
    pub fn with_document(document: &str, time: u64) -> Arc<FakeHost> {
        let ledger_id = LedgerId::new(LEDGER).unwrap();
        let (state, genesis) =
            State::genesis(ledger_id.clone(), document, LedgerTime(time)).unwrap();
        Arc::new(FakeHost {
            ledger: Mutex::new((state, vec![genesis], time)),
            leader: AtomicBool::new(true),
            term: AtomicU64::new(1),
            fail_submits: AtomicU32::new(0),
            ledger_id,
        })
    }

    pub fn ledger_id(&self) -> LedgerId {
        self.ledger_id.clone()
    }

    /// Appends a proposal as a client would, one second of ledger time later.
    pub fn propose(&self, proposal: SignedProposal) -> Vec<LedgerEntry> {
        let mut guard = self.ledger.lock().unwrap();
        let (state, entries, time) = &mut *guard;
        *time += 1_000;
        let submission = state.submit(proposal, LedgerTime(*time));
        entries.extend(submission.entries().iter().cloned());
        submission.entries().to_vec()
    }

    /// Builds, signs and appends a proposal by a development principal; answers its id and
    /// its decision.
    pub fn file(
        &self,
        author: &str,
        action: &str,
        subject: &str,
        payload: Value,
    ) -> (ProposalId, Decision) {
        let proposal = dev::proposal(&self.ledger_id, author, action, subject, payload, vec![], 1);
        let id = proposal.id();
        let entries = self.propose(proposal);
        let decision = entries
            .iter()
            .find_map(|e| e.decision_record().filter(|d| d.id == id))
            .map(|d| d.decision.clone())
            .expect("the proposal's own entry");
        (id, decision)
    }

    pub fn all_entries(&self) -> Vec<LedgerEntry> {
        self.ledger.lock().unwrap().1.clone()
    }

    /// Decision records of `action`, in ledger order.
    pub fn records(&self, action: &str) -> Vec<(LedgerIndex, DecisionRecord)> {
        self.all_entries()
            .into_iter()
            .filter_map(|e| {
                let index = e.index;
                e.decision_record()
                    .filter(|d| d.proposal.proposal.action == action)
                    .cloned()
                    .map(|d| (index, d))
            })
            .collect()
    }

    /// Outcome records (any decision) whose `reports_on` is `id`.
    pub fn outcomes_about(&self, id: &ProposalId) -> Vec<DecisionRecord> {
        let hex = id.to_hex();
        self.all_entries()
            .into_iter()
            .filter_map(|e| e.decision_record().cloned())
            .filter(|d| {
                d.proposal
                    .proposal
                    .payload
                    .get("reports_on")
                    .and_then(Value::as_str)
                    == Some(hex.as_str())
            })
            .collect()
    }

    pub fn subject_state(&self, domain: &str, subject: &str) -> Option<SubjectState> {
        self.ledger.lock().unwrap().0.subject(domain, subject)
    }

    pub fn set_leader(&self, leader: bool, term: u64) {
        self.leader.store(leader, Ordering::SeqCst);
        self.term.store(term, Ordering::SeqCst);
    }
}

impl LedgerView for FakeHost {
    fn ledger_len(&self) -> u64 {
        self.ledger.lock().unwrap().1.len() as u64
    }

    fn entries(&self, from: LedgerIndex, limit: u64) -> Result<Vec<LedgerEntry>, HostError> {
        let guard = self.ledger.lock().unwrap();
        let start = (from.0 as usize).min(guard.1.len());
        let end = (start + limit as usize).min(guard.1.len());
        Ok(guard.1[start..end].to_vec())
    }

    fn proposal_status(&self, id: &ProposalId) -> Option<(ProposalStatus, LedgerIndex)> {
        self.ledger
            .lock()
            .unwrap()
            .0
            .proposal(id)
            .map(|r| (r.status, r.index))
    }

    fn subject(&self, domain: &str, subject: &str) -> Option<SubjectState> {
        self.subject_state(domain, subject)
    }

    fn action_quorum(&self, domain: &str, action: &str) -> Option<u32> {
        let guard = self.ledger.lock().unwrap();
        let quorum = guard
            .0
            .constitution()
            .domains
            .get(domain)?
            .actions
            .get(action)?
            .quorum;
        Some(quorum)
    }
}

impl Host for FakeHost {
    fn ledger_id(&self) -> LedgerId {
        self.ledger_id.clone()
    }

    fn term(&self) -> u64 {
        self.term.load(Ordering::SeqCst)
    }

    async fn is_leader_confirmed(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }

    async fn submit(&self, proposal: SignedProposal) -> Result<Submitted, HostError> {
        let failing = self.fail_submits.load(Ordering::SeqCst);
        if failing > 0 {
            self.fail_submits.store(failing - 1, Ordering::SeqCst);
            return Err(HostError::new("not the leader (injected)"));
        }
        if !self.leader.load(Ordering::SeqCst) {
            return Err(HostError::new("not the leader"));
        }
        let id = proposal.id();
        let mut guard = self.ledger.lock().unwrap();
        let (state, entries, time) = &mut *guard;
        *time += 10;
        let submission = state.submit(proposal, LedgerTime(*time));
        entries.extend(submission.entries().iter().cloned());
        Ok(match &submission {
            Submission::Duplicate { index, status } => Submitted::Duplicate {
                index: *index,
                status: *status,
            },
            Submission::Recorded(_) => {
                let own = submission.own_entry(&id).expect("own entry");
                Submitted::Recorded {
                    index: own.index,
                    decision: own.decision_record().expect("decision").decision.clone(),
                }
            }
        })
    }
}

/// What a test target does with its next requests.
#[derive(Clone, Copy, Debug)]
pub enum Behavior {
    /// Answer with this status (no effect performed).
    Status(u16),
    /// Perform the effect, then wait this long before answering.
    Hang(Duration),
}

/// One request a target received.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub key: Option<String>,
    pub attempt: Option<String>,
    pub body: Vec<u8>,
}

/// A real HTTP endpoint on 127.0.0.1:0. `/payouts` is a payment rail that performs one
/// payout per `Idempotency-Key` (a repeat gets the same `rail_ref`); any other path is a
/// webhook receiver.
#[derive(Default)]
pub struct Target {
    pub addr: Mutex<Option<SocketAddr>>,
    received: Mutex<Vec<Received>>,
    /// Idempotency key → rail_ref: payouts actually performed.
    performed: Mutex<BTreeMap<String, String>>,
    script: Mutex<VecDeque<Behavior>>,
    /// Behaviour for every request once the script is exhausted (None: succeed).
    pub always: Mutex<Option<u16>>,
}

impl Target {
    pub async fn start() -> Arc<Target> {
        let target = Arc::new(Target::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        *target.addr.lock().unwrap() = Some(listener.local_addr().unwrap());
        let app = Router::new().fallback(handle).with_state(target.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        target
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr.lock().unwrap().unwrap())
    }

    pub fn base(&self) -> String {
        self.url("/")
    }

    pub fn script(&self, behaviors: impl IntoIterator<Item = Behavior>) {
        self.script.lock().unwrap().extend(behaviors);
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Requests received carrying `key`.
    pub fn requests_with_key(&self, key: &ProposalId) -> usize {
        let hex = key.to_hex();
        self.received()
            .iter()
            .filter(|r| r.key.as_deref() == Some(hex.as_str()))
            .count()
    }

    /// Payouts the rail performed (one per idempotency key).
    pub fn performed(&self) -> BTreeMap<String, String> {
        self.performed.lock().unwrap().clone()
    }
}

async fn handle(
    axum::extract::State(target): axum::extract::State<Arc<Target>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let key = header("idempotency-key");
    target.received.lock().unwrap().push(Received {
        path: uri.path().to_owned(),
        key: key.clone(),
        attempt: header("docket-attempt"),
        body: body.to_vec(),
    });
    let behavior = target.script.lock().unwrap().pop_front();
    if let Some(Behavior::Status(status)) = behavior {
        return StatusCode::from_u16(status).unwrap().into_response();
    }
    if let Some(status) = *target.always.lock().unwrap() {
        return StatusCode::from_u16(status).unwrap().into_response();
    }
    let answer = if uri.path() == "/payouts" {
        let key = key.unwrap_or_default();
        let rail_ref = {
            let mut performed = target.performed.lock().unwrap();
            let next = format!("rail-{}", performed.len() + 1);
            performed.entry(key.clone()).or_insert(next).clone()
        };
        serde_json::json!({ "rail_ref": rail_ref, "idempotency_key": key }).to_string()
    } else {
        "{\"ok\":true}".to_owned()
    };
    if let Some(Behavior::Hang(wait)) = behavior {
        tokio::time::sleep(wait).await;
    }
    (StatusCode::OK, answer).into_response()
}

/// Fast limits for tests: short backoff, a few attempts.
pub fn fast_limits() -> EffectLimits {
    EffectLimits {
        attempts_max: 3,
        backoff_ms: 10,
        backoff_ms_max: 40,
        timeout_ms: 2_000,
        deadline_ms: 10_000,
        ..EffectLimits::default()
    }
}

/// An enabled configuration allowing `target`'s base URL.
pub fn config(target: &Target) -> ExecutionConfig {
    ExecutionConfig {
        enabled: true,
        key_file: Some("exec.key".into()),
        allowed_urls: vec![target.base()],
        ..ExecutionConfig::default()
    }
}

pub fn executor(config: &ExecutionConfig, journal_dir: &Path) -> Executor {
    let journal = Journal::open(journal_dir).unwrap();
    Executor::from_config(config, dev::signing_key("exec"), journal).unwrap()
}

/// A funded settlement with an admitted payout request; answers the request's id.
pub fn funded_payout(host: &FakeHost, subject: &str, deposit: i64, payout: i64) -> ProposalId {
    let (_, decision) = host.file(
        "alice",
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        subject,
        Value::map([("amount", Value::Int(deposit)), ("currency", "EUR".into())]),
    );
    assert_eq!(decision, Decision::Admit);
    let (id, decision) = host.file(
        "alice",
        "SETTLEMENT.PAYOUT_REQUESTED",
        subject,
        Value::map([
            ("amount", Value::Int(payout)),
            ("beneficiary", "DE89-bob".into()),
        ]),
    );
    assert_eq!(decision, Decision::Admit);
    id
}

/// Waits (bounded) until `condition` holds.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}
