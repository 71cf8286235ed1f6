//! The execution journal: one [`Job`] per effect-bearing proposal, keyed by proposal id, in
//! a sled database separate from the governance ledger.
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

use std::path::Path;

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
}

/// The execution journal.
#[derive(Clone, Debug)]
pub struct Journal {
    db: sled::Db,
    jobs: sled::Tree,
    meta: sled::Tree,
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
        let jobs = db.open_tree("execution/jobs")?;
        let meta = db.open_tree("execution/meta")?;
        Ok(Journal { db, jobs, meta })
    }

    /// Every evidence record kept for a proposal, oldest first (empty if none).
    pub fn evidence(&self, id: &ProposalId) -> Result<Vec<Evidence>, JournalError> {
        Ok(self.job(id)?.map(|job| job.evidence).unwrap_or_default())
    }

    /// The job of a proposal, if this node ever looked at it.
    pub fn job(&self, id: &ProposalId) -> Result<Option<Job>, JournalError> {
        match self.jobs.get(id.as_bytes())? {
            None => Ok(None),
            Some(bytes) => decode(id, &bytes).map(Some),
        }
    }

    /// Up to `limit` jobs in proposal-id order, starting after `after` (for listings).
    pub fn jobs(&self, after: Option<&ProposalId>, limit: usize) -> Result<Vec<Job>, JournalError> {
        let range = match after {
            Some(id) => self.jobs.range::<&[u8], _>((
                std::ops::Bound::Excluded(&id.as_bytes()[..]),
                std::ops::Bound::Unbounded,
            )),
            None => self.jobs.iter(),
        };
        let mut out = Vec::new();
        for item in range.take(limit) {
            let (key, bytes) = item?;
            let id = ProposalId(key.as_ref().try_into().map_err(|_| JournalError::Corrupt {
                key: hex::encode(&key),
                message: "key is not a proposal id".into(),
            })?);
            out.push(decode(&id, &bytes)?);
        }
        Ok(out)
    }

    pub(crate) fn put(&self, job: &Job) -> Result<(), JournalError> {
        let bytes = serde_json::to_vec(job).expect("invariant: a job serializes to JSON");
        self.jobs.insert(job.proposal_id.as_bytes(), bytes)?;
        Ok(())
    }

    /// Makes everything written so far durable (sled's flush), on a blocking thread.
    ///
    /// Not `sled::Db::flush_async`: in sled 0.34 it queues the flush on sled's own IO pool,
    /// which does not grow until more than seven tasks wait, so seven concurrent jobs
    /// flushing at once fill it and the write they all wait for never runs (sled #1308,
    /// #1241; the agent froze at the default `jobs_inflight_max` of 8).
    pub async fn flush(&self) -> Result<(), JournalError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| {
                JournalError::from(sled::Error::Io(std::io::Error::other(e.to_string())))
            })??;
        Ok(())
    }

    /// First ledger index the agent has not finished with: every effect-bearing entry
    /// before it is resolved in this journal.
    pub fn cursor(&self) -> Result<LedgerIndex, JournalError> {
        match self.meta.get(CURSOR_KEY)? {
            None => Ok(LedgerIndex(0)),
            Some(bytes) => {
                let raw: [u8; 8] =
                    bytes
                        .as_ref()
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
            .meta
            .compare_and_swap(LEDGER_KEY, None as Option<&[u8]>, Some(&genesis.0[..]))?
        {
            Ok(()) => Ok(()),
            Err(current) if current.current.as_deref() == Some(&genesis.0[..]) => Ok(()),
            Err(current) => Err(JournalError::ForeignLedger {
                journal: current.current.map(hex::encode).unwrap_or_default(),
                ledger: genesis.to_hex(),
            }),
        }
    }

    pub(crate) fn set_cursor(&self, index: LedgerIndex) -> Result<(), JournalError> {
        self.meta.insert(CURSOR_KEY, &index.0.to_be_bytes())?;
        Ok(())
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
        let previous = self.meta.fetch_and_update(key.as_bytes(), |old| {
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
            .meta
            .get(key.as_bytes())?
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
    fn a_journal_belongs_to_one_ledger() {
        let journal = Journal::temporary().expect("opens");
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

    #[test]
    fn quota_counts_up_to_its_maximum() {
        let journal = Journal::temporary().expect("opens");
        assert!(journal.take_quota("rail", 7, 2).expect("take"));
        assert!(journal.take_quota("rail", 7, 2).expect("take"));
        assert!(!journal.take_quota("rail", 7, 2).expect("take"));
        assert_eq!(journal.quota_used("rail", 7).expect("used"), 2);
        assert!(journal.take_quota("rail", 8, 2).expect("another window"));
        assert!(journal
            .take_quota("webhook/a", 7, 2)
            .expect("another effect"));
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
