//! The execution journal: one [`Job`] per effect-bearing proposal, keyed by proposal id, in
//! a sled database separate from the governance ledger (or, in the simulator, in its model
//! of one).
//!
//! The journal is node-local and not replicated: it is how *this* node remembers what it
//! already did, so a restart or a return to leadership never repeats an effect whose result
//! it knows. Across nodes, the ledger is the memory: an outcome record there means "done"
//! to every leader (see `agent`). Losing the journal is safe: the next attempt re-sends
//! with the same idempotency key.
//!
//! Layout: tree `jobs` maps the 32 id bytes to the job as JSON; tree `meta` holds the scan
//! cursor (`cursor`, u64 big-endian) and quota counters (`quota/<effect>/<window>`).
//! Durability: each phase change is flushed before the agent acts on it.
//!
//! ## Storage
//!
//! The journal is written through a small storage seam, the [`JournalStorage`] trait: sled
//! in production ([`Journal::open`], [`SledStorage`]), and any other implementation
//! ([`Journal::on`]), such as the simulator's in-memory model in which a crash keeps exactly
//! what was flushed (`docket-sim`'s `SimJournal`, over `docket-simstore`'s pending/durable
//! model, the same as under the Raft store's simulated disk). sled's background threads and
//! real I/O would break the simulator's replay, and a simulated crash could not take back
//! what sled already wrote. The operations: get, an ordered scan, insert, an atomic
//! read-modify-write of one key, and flush. [`storage_suite`] checks an implementation
//! through the journal's own API.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use docket_core::{EntryHash, LedgerIndex, ProposalId, SignedProposal};
use serde::{Deserialize, Serialize};

use crate::evidence::{Evidence, OutcomeKind};

/// Evidence records kept per proposal. Each is one attempt; more than 32 attempts at one
/// proposal means leadership is flapping, and the oldest records are dropped (counted in
/// [`Job::evidence_dropped`]) so a job's record stays small.
pub const EVIDENCE_PER_JOB_MAX: usize = 32;

/// Bytes of a stored job the journal will decode: far above any real job (evidence is
/// bounded), far below anything that could exhaust memory.
pub const JOB_BYTES_MAX: usize = 4 * 1024 * 1024;

const CURSOR_KEY: &[u8] = b"cursor";
const LEDGER_KEY: &[u8] = b"ledger";

/// What an attempt concluded, enough to build the outcome record again after a restart.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Conclusion {
    pub outcome: OutcomeKind,
    pub reason: Option<String>,
    /// Values the verified effect reported, copied into the outcome payload (`rail_ref`).
    pub fields: std::collections::BTreeMap<String, String>,
    /// Hash of the evidence record this conclusion came from.
    pub evidence_hash: String,
}

/// How a job ended.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// This node's outcome record was admitted.
    OutcomeRecorded {
        outcome_id: ProposalId,
        index: LedgerIndex,
    },
    /// This node's outcome record was rejected by the constitution (the ledger holds why).
    OutcomeRejected {
        outcome_id: ProposalId,
        index: LedgerIndex,
        decision: String,
    },
    /// The ledger already held an outcome for the proposal (another leader reported it).
    AlreadyReported,
    /// The entry bears no effect after all (a quorum approval that did not complete it).
    NotEffectBearing { reason: String },
    /// The entry was not admitted: refusal evidence, no outcome (the core would reject an
    /// outcome about a proposal that was not admitted).
    NotAdmitted,
}

/// Where a job stands.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Nothing attempted yet.
    New,
    /// An attempt started (written before anything is sent). Found on restart, it means the
    /// attempt was interrupted and its effect is unknown.
    Attempting { attempt: u32, term: u64 },
    /// The attempt concluded (success, failure or refusal); the outcome is not filed yet.
    Concluded { conclusion: Conclusion },
    /// The outcome record was built and submitted; refiled as is (same id) until decided.
    Filed {
        conclusion: Conclusion,
        // Boxed: a signed proposal is large and jobs in the other phases are common.
        outcome: Box<SignedProposal>,
    },
    /// Nothing left to do.
    Resolved { resolution: Resolution },
}

/// Everything this node knows about executing one proposal.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Job {
    pub proposal_id: ProposalId,
    /// The action of the admitted entry.
    pub command: String,
    /// The effect that handles it.
    pub effect: String,
    pub ledger_index: LedgerIndex,
    pub phase: Phase,
    /// One record per attempt, oldest first (at most [`EVIDENCE_PER_JOB_MAX`]).
    pub evidence: Vec<Evidence>,
    /// Evidence records dropped to respect the bound.
    pub evidence_dropped: u64,
    /// The quota window this job was counted in, so a retried job is counted once.
    pub quota_window: Option<u64>,
}

impl Job {
    pub fn new(
        proposal_id: ProposalId,
        command: &str,
        effect: &str,
        ledger_index: LedgerIndex,
    ) -> Job {
        Job {
            proposal_id,
            command: command.to_owned(),
            effect: effect.to_owned(),
            ledger_index,
            phase: Phase::New,
            evidence: Vec::new(),
            evidence_dropped: 0,
            quota_window: None,
        }
    }

    pub fn is_resolved(&self) -> bool {
        matches!(self.phase, Phase::Resolved { .. })
    }

    /// Attempts made so far (recorded or interrupted).
    pub fn attempts(&self) -> u32 {
        let recorded = self.evidence.len() as u64 + self.evidence_dropped;
        u32::try_from(recorded).unwrap_or(u32::MAX)
    }

    pub(crate) fn push_evidence(&mut self, evidence: Evidence) {
        if self.evidence.len() >= EVIDENCE_PER_JOB_MAX {
            self.evidence.remove(0);
            self.evidence_dropped += 1;
        }
        self.evidence.push(evidence);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("execution journal storage: {0}")]
    Storage(#[from] sled::Error),
    #[error(
        "the execution journal belongs to the ledger whose genesis hash is {journal}, not to \
         this one ({ledger}); point execution.journal_dir at a directory of this ledger"
    )]
    ForeignLedger { journal: String, ledger: String },
    #[error("execution journal record for {key} is corrupt: {message}")]
    Corrupt { key: String, message: String },
    /// A journal written through storage opened before the crash of its node (only a
    /// simulated storage can tell; a real crash takes the writer with it).
    #[error("simulated execution journal {0}: written after its node crashed")]
    Crashed(String),
}

/// The journal's two key spaces (the sled journal's trees `execution/jobs` and
/// `execution/meta`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub enum Space {
    Jobs,
    Meta,
}

/// A key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// A read-modify-write of one value: given the value there (if any), the value to leave
/// (`None` removes it).
pub type Update<'a> = dyn FnMut(Option<&[u8]>) -> Option<Vec<u8>> + 'a;

/// Where a journal keeps its records: two ordered key spaces ([`Space`]) of byte keys and
/// values. [`SledStorage`] in production; the simulator brings its own model.
pub trait JournalStorage: fmt::Debug + Send + Sync + 'static {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, JournalError>;

    /// Up to `limit` entries with keys strictly after `after` (from the start if `None`),
    /// in key order.
    fn range_after(
        &self,
        space: Space,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>, JournalError>;

    fn insert(&self, space: Space, key: &[u8], value: Vec<u8>) -> Result<(), JournalError>;

    /// Writes `value` at `key` unless a value is there; answers the value that was there
    /// (`None`: `value` was written).
    fn insert_if_absent(
        &self,
        space: Space,
        key: &[u8],
        value: &[u8],
    ) -> Result<Option<Vec<u8>>, JournalError>;

    /// Atomically replaces the value at `key` with `f(current)`; answers the value before.
    /// `f` may run more than once (sled retries it on contention).
    fn update(
        &self,
        space: Space,
        key: &[u8],
        f: &mut Update<'_>,
    ) -> Result<Option<Vec<u8>>, JournalError>;

    /// Makes everything written before the call durable.
    fn flush(&self) -> Result<(), JournalError>;

    /// Whether [`flush`](JournalStorage::flush) waits on the operating system, so the
    /// journal runs it on tokio's blocking pool; `false` flushes in place (a simulated
    /// storage: nothing to wait for, nothing spawned).
    fn flush_blocks(&self) -> bool;
}

/// The production storage: two trees of a sled database.
#[derive(Clone, Debug)]
pub struct SledStorage {
    db: sled::Db,
    jobs: sled::Tree,
    meta: sled::Tree,
}

impl SledStorage {
    /// Uses the trees `execution/jobs` and `execution/meta` of an open database.
    pub fn in_db(db: sled::Db) -> Result<SledStorage, JournalError> {
        let jobs = db.open_tree("execution/jobs")?;
        let meta = db.open_tree("execution/meta")?;
        Ok(SledStorage { db, jobs, meta })
    }

    fn tree(&self, space: Space) -> &sled::Tree {
        match space {
            Space::Jobs => &self.jobs,
            Space::Meta => &self.meta,
        }
    }
}

impl JournalStorage for SledStorage {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, JournalError> {
        Ok(self.tree(space).get(key)?.map(|v| v.to_vec()))
    }

    fn range_after(
        &self,
        space: Space,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>, JournalError> {
        let tree = self.tree(space);
        let range = match after {
            Some(key) => {
                tree.range::<&[u8], _>((std::ops::Bound::Excluded(key), std::ops::Bound::Unbounded))
            }
            None => tree.iter(),
        };
        let mut items = Vec::new();
        for item in range.take(limit) {
            let (key, bytes) = item?;
            items.push((key.to_vec(), bytes.to_vec()));
        }
        Ok(items)
    }

    fn insert(&self, space: Space, key: &[u8], value: Vec<u8>) -> Result<(), JournalError> {
        self.tree(space).insert(key, value)?;
        Ok(())
    }

    fn insert_if_absent(
        &self,
        space: Space,
        key: &[u8],
        value: &[u8],
    ) -> Result<Option<Vec<u8>>, JournalError> {
        match self
            .tree(space)
            .compare_and_swap(key, None as Option<&[u8]>, Some(value))?
        {
            Ok(()) => Ok(None),
            Err(current) => Ok(current.current.map(|v| v.to_vec())),
        }
    }

    fn update(
        &self,
        space: Space,
        key: &[u8],
        f: &mut Update<'_>,
    ) -> Result<Option<Vec<u8>>, JournalError> {
        Ok(self
            .tree(space)
            .fetch_and_update(key, f)?
            .map(|v| v.to_vec()))
    }

    fn flush(&self) -> Result<(), JournalError> {
        self.db.flush()?;
        Ok(())
    }

    /// sled's flush waits for its writes to reach the file.
    fn flush_blocks(&self) -> bool {
        true
    }
}

/// The execution journal.
#[derive(Clone, Debug)]
pub struct Journal {
    store: Arc<dyn JournalStorage>,
}

impl Journal {
    /// Opens (creating) a journal database in `dir`. Use a directory of its own: sled locks
    /// it, and the Raft store's database is another.
    pub fn open(dir: &Path) -> Result<Journal, JournalError> {
        let db = sled::Config::new().path(dir).open()?;
        Journal::in_db(db)
    }

    /// A journal in memory only (tests, simulations without disk).
    pub fn temporary() -> Result<Journal, JournalError> {
        Journal::in_db(sled::Config::new().temporary(true).open()?)
    }

    /// Uses the trees `execution/jobs` and `execution/meta` of an open database.
    pub fn in_db(db: sled::Db) -> Result<Journal, JournalError> {
        Ok(Journal::on(SledStorage::in_db(db)?))
    }

    /// The journal kept in `storage` (the simulator's restarted nodes reopen theirs from
    /// the model they kept, and find what was flushed before the crash).
    pub fn on(storage: impl JournalStorage) -> Journal {
        Journal {
            store: Arc::new(storage),
        }
    }

    /// Every evidence record kept for a proposal, oldest first (empty if none).
    pub fn evidence(&self, id: &ProposalId) -> Result<Vec<Evidence>, JournalError> {
        Ok(self.job(id)?.map(|job| job.evidence).unwrap_or_default())
    }

    /// The job of a proposal, if this node ever looked at it.
    pub fn job(&self, id: &ProposalId) -> Result<Option<Job>, JournalError> {
        match self.store.get(Space::Jobs, id.as_bytes())? {
            None => Ok(None),
            Some(bytes) => decode(id, &bytes).map(Some),
        }
    }

    /// Up to `limit` jobs in proposal-id order, starting after `after` (for listings).
    pub fn jobs(&self, after: Option<&ProposalId>, limit: usize) -> Result<Vec<Job>, JournalError> {
        let items =
            self.store
                .range_after(Space::Jobs, after.map(|id| &id.as_bytes()[..]), limit)?;
        let mut out = Vec::with_capacity(items.len());
        for (key, bytes) in items {
            let id = ProposalId(
                key.as_slice()
                    .try_into()
                    .map_err(|_| JournalError::Corrupt {
                        key: hex::encode(&key),
                        message: "key is not a proposal id".into(),
                    })?,
            );
            out.push(decode(&id, &bytes)?);
        }
        Ok(out)
    }

    pub(crate) fn put(&self, job: &Job) -> Result<(), JournalError> {
        let bytes = serde_json::to_vec(job).expect("invariant: a job serializes to JSON");
        self.store
            .insert(Space::Jobs, job.proposal_id.as_bytes(), bytes)
    }

    /// Makes everything written so far durable (sled's flush), on a blocking thread when the
    /// storage's flush blocks ([`JournalStorage::flush_blocks`]).
    ///
    /// Not `sled::Db::flush_async`: in sled 0.34 it queues the flush on sled's own IO pool,
    /// which does not grow until more than seven tasks wait, so seven concurrent jobs
    /// flushing at once fill it and the write they all wait for never runs (sled #1308,
    /// #1241; the agent froze at the default `jobs_inflight_max` of 8).
    ///
    /// A simulated journal flushes in place: nothing to wait for, nothing spawned.
    pub async fn flush(&self) -> Result<(), JournalError> {
        if !self.store.flush_blocks() {
            return self.store.flush();
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.flush())
            .await
            .map_err(|e| {
                JournalError::from(sled::Error::Io(std::io::Error::other(e.to_string())))
            })?
    }

    /// First ledger index the agent has not finished with: every effect-bearing entry
    /// before it is resolved in this journal.
    pub fn cursor(&self) -> Result<LedgerIndex, JournalError> {
        match self.store.get(Space::Meta, CURSOR_KEY)? {
            None => Ok(LedgerIndex(0)),
            Some(bytes) => {
                let raw: [u8; 8] =
                    bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| JournalError::Corrupt {
                            key: "cursor".into(),
                            message: format!("{} bytes, expected 8", bytes.len()),
                        })?;
                Ok(LedgerIndex(u64::from_be_bytes(raw)))
            }
        }
    }

    /// Ties the journal to the ledger whose genesis entry has `genesis` as its hash; refuses
    /// a journal already tied to another ledger.
    pub fn bind_ledger(&self, genesis: &EntryHash) -> Result<(), JournalError> {
        match self
            .store
            .insert_if_absent(Space::Meta, LEDGER_KEY, &genesis.0)?
        {
            None => Ok(()),
            Some(bound) if bound.as_slice() == &genesis.0[..] => Ok(()),
            Some(bound) => Err(JournalError::ForeignLedger {
                journal: hex::encode(bound),
                ledger: genesis.to_hex(),
            }),
        }
    }

    pub(crate) fn set_cursor(&self, index: LedgerIndex) -> Result<(), JournalError> {
        self.store
            .insert(Space::Meta, CURSOR_KEY, index.0.to_be_bytes().to_vec())
    }

    /// Counts one effect of `effect` in quota window `window` if fewer than `max` were
    /// counted; answers whether it was counted.
    pub(crate) fn take_quota(
        &self,
        effect: &str,
        window: u64,
        max: u64,
    ) -> Result<bool, JournalError> {
        let key = format!("quota/{effect}/{window:020}");
        let previous = self.store.update(Space::Meta, key.as_bytes(), &mut |old| {
            let count = old.map_or(0, read_count);
            if count >= max {
                old.map(<[u8]>::to_vec)
            } else {
                Some((count + 1).to_be_bytes().to_vec())
            }
        })?;
        Ok(previous.as_deref().map_or(0, read_count) < max)
    }

    /// Effects counted in a quota window.
    pub fn quota_used(&self, effect: &str, window: u64) -> Result<u64, JournalError> {
        let key = format!("quota/{effect}/{window:020}");
        Ok(self
            .store
            .get(Space::Meta, key.as_bytes())?
            .as_deref()
            .map_or(0, read_count))
    }
}

fn read_count(bytes: &[u8]) -> u64 {
    bytes.try_into().map(u64::from_be_bytes).unwrap_or(u64::MAX)
}

fn decode(id: &ProposalId, bytes: &[u8]) -> Result<Job, JournalError> {
    let corrupt = |message: String| JournalError::Corrupt {
        key: id.to_hex(),
        message,
    };
    if bytes.len() > JOB_BYTES_MAX {
        return Err(corrupt(format!(
            "{} bytes exceed {JOB_BYTES_MAX}",
            bytes.len()
        )));
    }
    let job: Job = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    if job.proposal_id != *id {
        return Err(corrupt("stored under another proposal's id".into()));
    }
    Ok(job)
}

/// Checks a [`JournalStorage`] through the journal's own API (listing order, the ledger
/// binding, quota counting): each check gets a fresh, empty journal from `fresh` and panics
/// on a failure. Run on sled here and on the simulator's storage in `docket-sim`.
pub mod storage_suite {
    use docket_core::{EntryHash, LedgerIndex, ProposalId};

    use super::{Job, Journal, JournalError};

    pub fn run(fresh: impl Fn() -> Journal) {
        lists_jobs_in_id_order(&fresh());
        belongs_to_one_ledger(&fresh());
        counts_quota_up_to_its_maximum(&fresh());
    }

    pub fn lists_jobs_in_id_order(journal: &Journal) {
        for b in [3u8, 1, 2] {
            journal
                .put(&Job::new(ProposalId([b; 32]), "A", "e", LedgerIndex(1)))
                .expect("put");
        }
        let ids: Vec<u8> = journal
            .jobs(None, 10)
            .expect("lists")
            .iter()
            .map(|j| j.proposal_id.0[0])
            .collect();
        assert_eq!(ids, vec![1, 2, 3]);
        let after: Vec<u8> = journal
            .jobs(Some(&ProposalId([1; 32])), 1)
            .expect("lists")
            .iter()
            .map(|j| j.proposal_id.0[0])
            .collect();
        assert_eq!(after, vec![2]);
    }

    pub fn belongs_to_one_ledger(journal: &Journal) {
        journal.bind_ledger(&EntryHash([1; 32])).expect("binds");
        journal
            .bind_ledger(&EntryHash([1; 32]))
            .expect("same ledger");
        let error = journal
            .bind_ledger(&EntryHash([2; 32]))
            .expect_err("another ledger");
        assert!(
            matches!(error, JournalError::ForeignLedger { .. }),
            "{error}"
        );
    }

    pub fn counts_quota_up_to_its_maximum(journal: &Journal) {
        assert!(journal.take_quota("rail", 7, 2).expect("take"));
        assert!(journal.take_quota("rail", 7, 2).expect("take"));
        assert!(!journal.take_quota("rail", 7, 2).expect("take"));
        assert_eq!(journal.quota_used("rail", 7).expect("used"), 2);
        assert!(journal.take_quota("rail", 8, 2).expect("another window"));
        assert!(journal
            .take_quota("webhook/a", 7, 2)
            .expect("another effect"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_round_trip_and_cursor_persists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = ProposalId([3; 32]);
        {
            let journal = Journal::open(dir.path()).expect("opens");
            assert_eq!(journal.cursor().expect("cursor"), LedgerIndex(0));
            let job = Job::new(id, "SETTLEMENT.PAYOUT_REQUESTED", "rail", LedgerIndex(5));
            journal.put(&job).expect("put");
            journal.set_cursor(LedgerIndex(6)).expect("cursor");
            tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime")
                .block_on(journal.flush())
                .expect("flush");
        }
        let journal = Journal::open(dir.path()).expect("reopens");
        assert_eq!(journal.cursor().expect("cursor"), LedgerIndex(6));
        let job = journal.job(&id).expect("reads").expect("present");
        assert_eq!(job.ledger_index, LedgerIndex(5));
        assert_eq!(job.phase, Phase::New);
        assert!(journal
            .evidence(&ProposalId([4; 32]))
            .expect("reads")
            .is_empty());
        assert_eq!(journal.jobs(None, 10).expect("lists").len(), 1);
        assert!(journal.jobs(Some(&id), 10).expect("lists").is_empty());
    }

    #[test]
    fn the_storage_suite_passes_on_sled() {
        storage_suite::run(|| Journal::temporary().expect("opens"));
    }

    #[test]
    fn evidence_is_bounded() {
        let mut job = Job::new(ProposalId([1; 32]), "A", "e", LedgerIndex(1));
        let evidence = Evidence {
            command: "A".into(),
            effect: "e".into(),
            instance: ProposalId([1; 32]),
            attempt: 1,
            ledger_index: LedgerIndex(1),
            term: 1,
            executor: docket_core::PublicKey([0; 32]),
            inputs_hash: String::new(),
            outputs_hash: None,
            effects: vec![],
            cost: Default::default(),
            outcome: OutcomeKind::Failure,
            reason: None,
            started_at_ms: 0,
        };
        for _ in 0..EVIDENCE_PER_JOB_MAX + 3 {
            job.push_evidence(evidence.clone());
        }
        assert_eq!(job.evidence.len(), EVIDENCE_PER_JOB_MAX);
        assert_eq!(job.evidence_dropped, 3);
        assert_eq!(job.attempts() as usize, EVIDENCE_PER_JOB_MAX + 3);
    }
}
