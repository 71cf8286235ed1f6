//! Governance state: everything derived from the ledger, and nothing else.
//!
//! State is lifecycle per subject (with its domain data: balances, bids, versions, ...),
//! the status of every proposal ever decided, the deferred set, the active constitution and
//! its history, and the ledger head. [`State::apply`] is the one function that changes it:
//! the engine applies each entry it records through it, and trusted replay applies each
//! stored entry through it, so the two cannot drift apart.
//!
//! The parts that grow with the ledger (subjects, proposal statuses) and the deferred set
//! are rows ([`crate::rows`]), read through a [`Rows`] store and committed to by a lattice
//! hash kept per changed row; a node keeps them on disk, pure uses in memory.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::code::RejectCode;
use crate::constitution::rules::StateEffect;
use crate::constitution::{Constitution, ConstitutionError, Domain};
use crate::decision::Decision;
use crate::encoding::{self, TAG_STATE};
use crate::id::{
    ConstitutionVersion, EntryHash, LedgerId, LedgerIndex, LedgerTime, ProposalId, PublicKey,
    StateHash,
};
use crate::ledger::{LedgerEntry, Record};
use crate::proposal::SignedProposal;
use crate::rows::{
    self, Lattice, NoRows, Rows, LATTICE_BYTES, TABLE_DEFERRED, TABLE_OUTCOME, TABLE_PROPOSAL,
    TABLE_SUBJECT,
};
use crate::value::Value;

/// One subject's lifecycle state and domain data.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SubjectState {
    pub state: String,
    pub fields: BTreeMap<String, Value>,
    /// Distinct principals who filed a quorum action that has not reached its quorum yet.
    pub approvals: BTreeMap<String, BTreeSet<PublicKey>>,
    /// Index of the last admitted entry that touched the subject.
    pub last_index: LedgerIndex,
}

impl SubjectState {
    /// A subject no proposal has touched yet: the domain's initial state, no data.
    pub fn initial(domain: &Domain) -> SubjectState {
        SubjectState {
            state: domain.initial.clone(),
            fields: BTreeMap::new(),
            approvals: BTreeMap::new(),
            last_index: LedgerIndex(0),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProposalStatus {
    Admitted,
    Rejected,
    Deferred,
}

/// Where a proposal stands and which entries say so.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ProposalRecord {
    /// The entry holding its current decision.
    pub index: LedgerIndex,
    pub status: ProposalStatus,
    /// The entry that deferred it, if it was ever deferred (a proposal has at most two
    /// entries: a deferral, then its final decision).
    pub deferred_at: Option<LedgerIndex>,
}

/// A proposal held until its dependencies are decided or its deferral expires.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Deferred {
    pub proposal: SignedProposal,
    pub deferred_at: LedgerIndex,
    pub expires_at: LedgerTime,
    pub waiting_on: Vec<ProposalId>,
}

/// The recorded outcome of an effect, the row an outcome reference resolves to.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct OutcomeRecord {
    /// The proposal whose effect it reports on.
    pub reports_on: ProposalId,
    /// The outcome record (the executor's proposal) that settled it.
    pub report: ProposalId,
    /// The entry that admitted the outcome record.
    pub index: LedgerIndex,
    pub succeeded: bool,
}

/// Where one dependency of a proposal stands ([`State::dependency`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Dependency {
    /// An admitted proposal, or an outcome reference whose effect succeeded.
    Met,
    /// A rejected proposal (`DEPENDENCY_REJECTED`).
    Rejected,
    /// An outcome reference whose effect failed or was refused (`DEPENDENCY_FAILED`).
    Failed(OutcomeRecord),
    /// Not decided yet: a deferred or unknown proposal, or an outcome not reported yet.
    Pending,
}

/// The last entry recorded.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Head {
    pub index: LedgerIndex,
    pub hash: EntryHash,
    pub time: LedgerTime,
}

/// The active constitution, the document it was parsed from, and when it was adopted.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ActiveConstitution {
    pub version: ConstitutionVersion,
    pub document: String,
    pub constitution: Constitution,
    pub adopted_at: LedgerIndex,
}

impl ActiveConstitution {
    fn parse(
        document: String,
        adopted_at: LedgerIndex,
    ) -> Result<ActiveConstitution, ConstitutionError> {
        let constitution = Constitution::parse(&document)?;
        Ok(ActiveConstitution {
            version: constitution.version(),
            document,
            constitution,
            adopted_at,
        })
    }
}

/// Governance state.
///
/// The parts that stay small live in memory: the ledger id, the head, the active
/// constitution and its history, and the deferred set (bounded by the constitution's
/// `deferred_max`) with its indexes. Subjects, proposal statuses and the deferred set are
/// also **rows** ([`crate::rows`]): read from a [`Rows`] store, changed in a pending overlay
/// that [`State::take_changes`] hands to whoever persists them, and committed to by a
/// lattice hash kept up to date per changed row, so [`State::hash`] is O(1).
///
/// Cloning copies the pending overlay and shares the store.
#[derive(Clone, Debug)]
pub struct State {
    pub(crate) ledger_id: LedgerId,
    pub(crate) head: Head,
    pub(crate) constitution: ActiveConstitution,
    /// Every constitution adopted, with the index of the entry that adopted it.
    pub(crate) history: Vec<(LedgerIndex, ConstitutionVersion)>,
    pub(crate) deferred: BTreeMap<ProposalId, Deferred>,
    // Derived indexes over `deferred`; rebuilt on open, never hashed or persisted.
    pub(crate) waiting: BTreeMap<ProposalId, BTreeSet<ProposalId>>,
    pub(crate) expiry: BTreeSet<(LedgerTime, ProposalId)>,
    /// Settled rows.
    rows: Arc<dyn Rows>,
    /// Rows changed since the last [`State::take_changes`] (`None`: removed).
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// The commitment to every row, settled and pending.
    lattice: Lattice,
    /// Rows in the state, by table.
    counts: RowCounts,
    /// The constitution or its history changed since the last [`State::take_changes`].
    constitution_changed: bool,
    /// Outcome references settled by the last [`State::apply`] (for the engine's waves).
    pub(crate) settled: Vec<ProposalId>,
    /// A scratch copy under a candidate constitution
    /// ([`State::with_constitution_for_dry_run`]): it follows no real ledger, so it refuses
    /// [`State::take_changes`], the only way a state's rows reach a store.
    dry_run: bool,
    /// Keys of the rows changed since the last [`State::take_touched_rows`], when the
    /// owner asked for them ([`State::track_touched_rows`]): the state map (a node's
    /// authenticated map over the rows, [`crate::statemap`]) updates exactly these. Unlike
    /// the overlay it keeps a row written and removed again before being taken.
    touched: Option<BTreeSet<Vec<u8>>>,
}

/// How many rows of each table the state holds.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct RowCounts {
    pub subjects: u64,
    pub proposals: u64,
    pub deferred: u64,
}

impl RowCounts {
    /// The count of `table`'s rows; `None` for outcome rows, which are not counted (see
    /// [`crate::rows`]).
    fn of(&mut self, table: u8) -> Option<&mut u64> {
        match table {
            TABLE_SUBJECT => Some(&mut self.subjects),
            TABLE_PROPOSAL => Some(&mut self.proposals),
            TABLE_DEFERRED => Some(&mut self.deferred),
            _ => None,
        }
    }

    fn add(&mut self, table: u8) {
        if let Some(count) = self.of(table) {
            *count += 1;
        }
    }

    fn sub(&mut self, table: u8) {
        if let Some(count) = self.of(table) {
            *count -= 1;
        }
    }
}

/// Two states are equal when their hashes are: the hash covers every row (through the
/// lattice), the head, the constitution and its history.
impl PartialEq for State {
    fn eq(&self, other: &State) -> bool {
        self.hash() == other.hash()
    }
}

impl Eq for State {}

/// What the state hash covers: every field, and the rows through their lattice digest.
#[derive(Serialize)]
struct StateDigest<'a> {
    ledger_id: &'a LedgerId,
    head: &'a Head,
    constitution_document: &'a str,
    constitution_adopted_at: LedgerIndex,
    history: &'a [(LedgerIndex, ConstitutionVersion)],
    counts: RowCounts,
    rows: [u8; 32],
}

/// Key of the persisted head, counts and lattice (not a row: not in the lattice).
pub const KEY_META: &[u8] = b"m";
/// Key of the persisted ledger id and constitution (not a row: not in the lattice).
pub const KEY_CONSTITUTION: &[u8] = b"c";

/// The persisted form of the small, frequently changed part of the state.
#[derive(Serialize, Deserialize)]
struct MetaRow {
    head: Head,
    counts: RowCounts,
    lattice: Vec<u8>,
}

/// The persisted form of the ledger id and the constitution (changed by amendments only).
#[derive(Serialize, Deserialize)]
struct ConstitutionRow {
    ledger_id: LedgerId,
    document: String,
    adopted_at: LedgerIndex,
    history: Vec<(LedgerIndex, ConstitutionVersion)>,
}

/// Rows and records a state changed, for its store ([`State::take_changes`]).
#[derive(Debug, Default)]
pub struct Changes {
    /// `(key, Some(value))` to write, `(key, None)` to remove, in key order. The head and
    /// counts record (`KEY_META`) is always among them, the constitution record
    /// (`KEY_CONSTITUTION`) when it changed.
    pub rows: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// Persisted state that cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Decode(#[from] encoding::DecodeError),
    #[error("persisted constitution does not parse: {0}")]
    Constitution(ConstitutionError),
    #[error("persisted state lacks its {0} record")]
    Missing(&'static str),
    #[error("persisted lattice has {0} bytes, not {LATTICE_BYTES}")]
    Lattice(usize),
    #[error("the rows hash to {found}, the state records {expected}")]
    Rows { expected: String, found: String },
}

/// An entry that does not follow from the state it is applied to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("entry index {found} does not follow head {head}")]
    Index {
        head: LedgerIndex,
        found: LedgerIndex,
    },
    #[error("entry prev_hash does not match the head's hash")]
    PrevHash,
    #[error("entry was judged by constitution {found}, but {expected} is active")]
    Constitution {
        expected: ConstitutionVersion,
        found: ConstitutionVersion,
    },
    #[error(
        "entry admits {action} in domain {domain}, which the active constitution does not declare"
    )]
    UnknownAction { domain: String, action: String },
    #[error("a genesis record can only be entry 0")]
    Genesis,
    #[error("adopted constitution does not parse: {0}")]
    Adoption(ConstitutionError),
    #[error("an admitted update failed to apply: {0}")]
    Update(String),
}

impl State {
    /// Creates the state and entry 0 of a new ledger, its rows in memory ([`NoRows`]).
    pub fn genesis(
        ledger_id: LedgerId,
        document: &str,
        time: LedgerTime,
    ) -> Result<(State, LedgerEntry), ConstitutionError> {
        let active = ActiveConstitution::parse(document.to_owned(), LedgerIndex(0))?;
        let entry = LedgerEntry::seal(
            LedgerIndex(0),
            time,
            active.version,
            EntryHash::ZERO,
            Record::Genesis {
                ledger_id: ledger_id.clone(),
                document: document.to_owned(),
            },
        );
        let state = State {
            ledger_id,
            head: Head {
                index: LedgerIndex(0),
                hash: entry.hash,
                time,
            },
            history: vec![(LedgerIndex(0), active.version)],
            constitution: active,
            deferred: BTreeMap::new(),
            waiting: BTreeMap::new(),
            expiry: BTreeSet::new(),
            rows: Arc::new(NoRows),
            pending: BTreeMap::new(),
            lattice: Lattice::empty(),
            counts: RowCounts::default(),
            constitution_changed: true,
            settled: Vec::new(),
            dry_run: false,
            touched: None,
        };
        Ok((state, entry))
    }

    /// Rebuilds the state a genesis entry describes (first step of replay).
    pub fn from_genesis_entry(entry: &LedgerEntry) -> Result<State, ApplyError> {
        let Record::Genesis {
            ledger_id,
            document,
        } = &entry.record
        else {
            return Err(ApplyError::Genesis);
        };
        if entry.index != LedgerIndex(0) || entry.prev_hash != EntryHash::ZERO {
            return Err(ApplyError::Genesis);
        }
        let (state, rebuilt) = State::genesis(ledger_id.clone(), document, entry.time)
            .map_err(ApplyError::Adoption)?;
        if rebuilt.hash != entry.hash {
            return Err(ApplyError::Constitution {
                expected: rebuilt.constitution,
                found: entry.constitution,
            });
        }
        Ok(state)
    }

    /// Moves a state with no settled rows (fresh from genesis, or from a replay whose
    /// changes were never taken) onto `rows`, an empty store its changes will be written to;
    /// or a state onto another reader of the same rows (a snapshot install hands the state
    /// it replayed through a filter of its own over to the store's plain reader).
    pub fn on_rows(mut self, rows: Arc<dyn Rows>) -> State {
        self.rows = rows;
        self
    }

    /// Opens the state persisted in `rows` (what [`State::take_changes`] wrote there);
    /// `None` when it holds no state. Trusts the store: the rows are not re-hashed
    /// ([`State::check_rows`] does that, in O(state)).
    pub fn open(rows: Arc<dyn Rows>) -> Result<Option<State>, RestoreError> {
        let (Some(meta), Some(constitution)) = (rows.get(KEY_META), rows.get(KEY_CONSTITUTION))
        else {
            return match rows.get(KEY_META).or_else(|| rows.get(KEY_CONSTITUTION)) {
                None => Ok(None),
                Some(_) => Err(RestoreError::Missing("head or constitution")),
            };
        };
        let meta: MetaRow = encoding::from_bytes(&meta)?;
        let constitution: ConstitutionRow = encoding::from_bytes(&constitution)?;
        let lattice =
            Lattice::from_bytes(&meta.lattice).ok_or(RestoreError::Lattice(meta.lattice.len()))?;
        let active = ActiveConstitution::parse(constitution.document, constitution.adopted_at)
            .map_err(RestoreError::Constitution)?;
        let mut deferred = BTreeMap::new();
        let mut error = None;
        rows.scan(&[TABLE_DEFERRED], &mut |key, value| {
            if error.is_some() {
                return;
            }
            match (
                key.get(1..).and_then(|id| <[u8; 32]>::try_from(id).ok()),
                encoding::from_bytes::<Deferred>(value),
            ) {
                (Some(id), Ok(record)) => {
                    deferred.insert(ProposalId(id), record);
                }
                (None, _) => error = Some(RestoreError::Missing("deferred row key")),
                (_, Err(e)) => error = Some(RestoreError::Decode(e)),
            }
        });
        if let Some(error) = error {
            return Err(error);
        }
        let mut state = State {
            ledger_id: constitution.ledger_id,
            head: meta.head,
            constitution: active,
            history: constitution.history,
            deferred,
            waiting: BTreeMap::new(),
            expiry: BTreeSet::new(),
            rows,
            pending: BTreeMap::new(),
            lattice,
            counts: meta.counts,
            constitution_changed: false,
            settled: Vec::new(),
            dry_run: false,
            touched: None,
        };
        state.rebuild_indexes();
        Ok(Some(state))
    }

    /// Re-hashes every row (settled and pending) and checks the lattice and the counts the
    /// state keeps: O(state). A check of a store, for tests and audits.
    pub fn check_rows(&self) -> Result<(), RestoreError> {
        let mut all: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for table in [TABLE_SUBJECT, TABLE_PROPOSAL, TABLE_DEFERRED, TABLE_OUTCOME] {
            self.rows.scan(&[table], &mut |key, value| {
                all.insert(key.to_vec(), value.to_vec());
            });
        }
        for (key, value) in &self.pending {
            match value {
                Some(value) => all.insert(key.clone(), value.clone()),
                None => all.remove(key),
            };
        }
        let mut lattice = Lattice::empty();
        let mut counts = RowCounts::default();
        for (key, value) in &all {
            lattice.insert(key, value);
            counts.add(key[0]);
        }
        if lattice != self.lattice || counts != self.counts {
            return Err(RestoreError::Rows {
                expected: format!("{:?} {:?}", self.lattice, self.counts),
                found: format!("{lattice:?} {counts:?}"),
            });
        }
        Ok(())
    }

    /// The rows changed since the last call (the overlay is emptied: from now on they are
    /// read from the store, so the caller must write them there before reading again),
    /// with the head and counts record and, if it changed, the constitution record.
    pub fn take_changes(&mut self) -> Changes {
        assert!(
            !self.dry_run,
            "invariant: a dry-run copy under a candidate constitution is never persisted"
        );
        let mut rows: Vec<(Vec<u8>, Option<Vec<u8>>)> =
            std::mem::take(&mut self.pending).into_iter().collect();
        let meta = MetaRow {
            head: self.head,
            counts: self.counts,
            lattice: self.lattice.to_bytes(),
        };
        rows.push((KEY_META.to_vec(), Some(encoding::to_bytes(&meta))));
        if std::mem::take(&mut self.constitution_changed) {
            let constitution = ConstitutionRow {
                ledger_id: self.ledger_id.clone(),
                document: self.constitution.document.clone(),
                adopted_at: self.constitution.adopted_at,
                history: self.history.clone(),
            };
            rows.push((
                KEY_CONSTITUTION.to_vec(),
                Some(encoding::to_bytes(&constitution)),
            ));
        }
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        Changes { rows }
    }

    /// Rows changed since the last [`State::take_changes`].
    pub fn pending_rows(&self) -> usize {
        self.pending.len()
    }

    /// A scratch copy of this state whose active constitution is `document`, for
    /// `docket constitution dry-run`: re-adjudicating recorded proposals in the copy shows
    /// what a candidate amendment would have decided, without governance adopting it.
    ///
    /// Not part of the replicated path, and never to be: no entry of a real ledger can
    /// produce this state (the copy's entries are sealed under the candidate's version, and
    /// its history shows the candidate adopted at the head without an amendment). The copy
    /// is marked: [`State::take_changes`], through which a node persists a state, panics
    /// on it. Nothing but the CLI's dry run calls this.
    pub fn with_constitution_for_dry_run(
        &self,
        document: &str,
    ) -> Result<State, ConstitutionError> {
        let candidate = ActiveConstitution::parse(document.to_owned(), self.head.index)?;
        let mut copy = self.clone();
        copy.history.push((self.head.index, candidate.version));
        copy.constitution = candidate;
        copy.constitution_changed = true;
        copy.dry_run = true;
        Ok(copy)
    }

    /// True for a copy made by [`State::with_constitution_for_dry_run`].
    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    pub fn ledger_id(&self) -> &LedgerId {
        &self.ledger_id
    }

    pub fn head(&self) -> Head {
        self.head
    }

    pub fn constitution(&self) -> &Constitution {
        &self.constitution.constitution
    }

    pub fn active_constitution(&self) -> &ActiveConstitution {
        &self.constitution
    }

    pub fn constitution_version(&self) -> ConstitutionVersion {
        self.constitution.version
    }

    pub fn constitution_history(&self) -> &[(LedgerIndex, ConstitutionVersion)] {
        &self.history
    }

    /// Starts recording the keys of changed rows ([`State::take_touched_rows`]).
    pub fn track_touched_rows(&mut self) {
        self.touched.get_or_insert_with(BTreeSet::new);
    }

    /// The keys of the rows changed since the last call (empty unless
    /// [`State::track_touched_rows`] was called): a superset of the rows whose value
    /// differs.
    pub fn take_touched_rows(&mut self) -> BTreeSet<Vec<u8>> {
        self.touched
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The current bytes of row `key` (pending, else settled); `None` if there is no such
    /// row.
    pub fn row_value(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.row(key)
    }

    /// The current bytes of a row: pending, else settled.
    fn row(&self, key: &[u8]) -> Option<Vec<u8>> {
        match self.pending.get(key) {
            Some(value) => value.clone(),
            None => self.rows.get(key),
        }
    }

    fn decode_row<T: serde::de::DeserializeOwned>(key: &[u8], bytes: &[u8]) -> T {
        encoding::from_bytes(bytes).unwrap_or_else(|e| {
            panic!(
                "invariant: a state row decodes (key {}): {e}",
                hex::encode(key)
            )
        })
    }

    /// Sets a row, keeping the lattice and the counts.
    fn put_row(&mut self, key: Vec<u8>, value: Vec<u8>) {
        let old = self.row(&key);
        self.replace_row(key, old.as_deref(), value);
    }

    /// Sets a row whose current bytes the caller just read (`old`, `None` if absent).
    fn replace_row(&mut self, key: Vec<u8>, old: Option<&[u8]>, value: Vec<u8>) {
        match old {
            Some(old) => self.lattice.remove(&key, old),
            None => self.counts.add(key[0]),
        }
        self.lattice.insert(&key, &value);
        if let Some(touched) = self.touched.as_mut() {
            touched.insert(key.clone());
        }
        self.pending.insert(key, Some(value));
    }

    /// Removes a row, keeping the lattice and the counts.
    fn remove_row(&mut self, key: Vec<u8>) {
        let Some(old) = self.row(&key) else {
            return;
        };
        self.lattice.remove(&key, &old);
        self.counts.sub(key[0]);
        if let Some(touched) = self.touched.as_mut() {
            touched.insert(key.clone());
        }
        if self.rows.get(&key).is_some() {
            self.pending.insert(key, None);
        } else {
            self.pending.remove(&key);
        }
    }

    pub fn subject(&self, domain: &str, subject: &str) -> Option<SubjectState> {
        let key = rows::subject_key(domain, subject);
        self.row(&key).map(|bytes| Self::decode_row(&key, &bytes))
    }

    /// Every subject of a domain, in name order. O(subjects of the domain): for tests and
    /// small domains.
    pub fn subjects(&self, domain: &str) -> Vec<(String, SubjectState)> {
        let prefix = rows::subject_prefix(domain);
        let mut all: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        self.rows.scan(&prefix, &mut |key, value| {
            all.insert(key.to_vec(), value.to_vec());
        });
        for (key, value) in self.pending.range(prefix.clone()..) {
            if !key.starts_with(&prefix) {
                break;
            }
            match value {
                Some(value) => all.insert(key.clone(), value.clone()),
                None => all.remove(key),
            };
        }
        all.into_iter()
            .map(|(key, value)| {
                let name = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                (name, Self::decode_row(&key, &value))
            })
            .collect()
    }

    pub fn proposal(&self, id: &ProposalId) -> Option<ProposalRecord> {
        let key = rows::proposal_key(id);
        self.row(&key).map(|bytes| Self::decode_row(&key, &bytes))
    }

    pub fn proposal_status(&self, id: &ProposalId) -> Option<ProposalStatus> {
        self.proposal(id).map(|r| r.status)
    }

    /// The recorded outcome an outcome reference ([`ProposalId::outcome_of`]) resolves to.
    pub fn outcome(&self, reference: &ProposalId) -> Option<OutcomeRecord> {
        let key = rows::outcome_key(reference);
        self.row(&key).map(|bytes| Self::decode_row(&key, &bytes))
    }

    /// Where a dependency stands: a proposal's status, else an outcome reference's outcome.
    pub fn dependency(&self, dep: &ProposalId) -> Dependency {
        match self.proposal_status(dep) {
            Some(ProposalStatus::Admitted) => Dependency::Met,
            Some(ProposalStatus::Rejected) => Dependency::Rejected,
            Some(ProposalStatus::Deferred) => Dependency::Pending,
            None => match self.outcome(dep) {
                Some(outcome) if outcome.succeeded => Dependency::Met,
                Some(outcome) => Dependency::Failed(outcome),
                None => Dependency::Pending,
            },
        }
    }

    /// Proposals with a status (every decided or deferred proposal ever recorded).
    pub fn proposal_count(&self) -> u64 {
        self.counts.proposals
    }

    /// Rows in the state, by table.
    pub fn row_counts(&self) -> RowCounts {
        self.counts
    }

    pub fn deferred(&self) -> &BTreeMap<ProposalId, Deferred> {
        &self.deferred
    }

    /// BLAKE3 over the canonical encoding of what the state is: the ledger id, head,
    /// constitution and history, the row counts, and the lattice digest of every row.
    /// Equal on every replica at an equal ledger index; O(constitution + history), not
    /// O(state).
    pub fn hash(&self) -> StateHash {
        StateHash(encoding::tagged_hash(
            TAG_STATE,
            &StateDigest {
                ledger_id: &self.ledger_id,
                head: &self.head,
                constitution_document: &self.constitution.document,
                constitution_adopted_at: self.constitution.adopted_at,
                history: &self.history,
                counts: self.counts,
                rows: self.lattice.digest(),
            },
        ))
    }

    fn rebuild_indexes(&mut self) {
        self.waiting.clear();
        self.expiry.clear();
        for (id, deferred) in &self.deferred {
            for dep in &deferred.waiting_on {
                self.waiting.entry(*dep).or_default().insert(*id);
            }
            self.expiry.insert((deferred.expires_at, *id));
        }
    }

    /// Applies a recorded entry: the one way state changes. The engine calls it for every
    /// entry it records; trusted replay calls it for every stored entry.
    pub fn apply(&mut self, entry: &LedgerEntry) -> Result<(), ApplyError> {
        self.settled.clear();
        let expected_index = self.head.index.next();
        if entry.index != expected_index {
            return Err(ApplyError::Index {
                head: self.head.index,
                found: entry.index,
            });
        }
        if entry.prev_hash != self.head.hash {
            return Err(ApplyError::PrevHash);
        }
        if entry.constitution != self.constitution.version {
            return Err(ApplyError::Constitution {
                expected: self.constitution.version,
                found: entry.constitution,
            });
        }
        let Record::Decision(record) = &entry.record else {
            return Err(ApplyError::Genesis);
        };
        let status = match &record.decision {
            Decision::Admit => {
                self.admit(&record.proposal, &record.id, entry.index)?;
                ProposalStatus::Admitted
            }
            Decision::Reject(_) => ProposalStatus::Rejected,
            Decision::Defer { waiting_on } => {
                let limits = &self.constitution.constitution.limits;
                let deferred = Deferred {
                    proposal: record.proposal.clone(),
                    deferred_at: entry.index,
                    expires_at: entry.time.saturating_add_ms(limits.deferral_expiry_ms),
                    waiting_on: waiting_on.clone(),
                };
                for dep in waiting_on {
                    self.waiting.entry(*dep).or_default().insert(record.id);
                }
                self.expiry.insert((deferred.expires_at, record.id));
                self.put_row(
                    rows::deferred_key(&record.id),
                    encoding::to_bytes(&deferred),
                );
                self.deferred.insert(record.id, deferred);
                ProposalStatus::Deferred
            }
        };
        let deferred_at = match status {
            ProposalStatus::Deferred => Some(entry.index),
            _ => self.undefer(&record.id),
        };
        // A proposal whose signature does not verify is recorded (who tried what is
        // history) but does not claim its id: the id does not cover the signature, so
        // otherwise anyone who saw a proposal could burn it by filing a forged copy first.
        if record.decision.code() != Some(RejectCode::BadSignature) {
            let record_of_id = ProposalRecord {
                index: entry.index,
                status,
                deferred_at,
            };
            self.put_row(
                rows::proposal_key(&record.id),
                encoding::to_bytes(&record_of_id),
            );
        }
        self.head = Head {
            index: entry.index,
            hash: entry.hash,
            time: entry.time,
        };
        Ok(())
    }

    /// Removes a decided proposal from the deferred set and its indexes; returns the index
    /// of the entry that had deferred it.
    fn undefer(&mut self, id: &ProposalId) -> Option<LedgerIndex> {
        let deferred = self.deferred.remove(id)?;
        self.remove_row(rows::deferred_key(id));
        for dep in &deferred.waiting_on {
            if let Some(dependents) = self.waiting.get_mut(dep) {
                dependents.remove(id);
                if dependents.is_empty() {
                    self.waiting.remove(dep);
                }
            }
        }
        self.expiry.remove(&(deferred.expires_at, *id));
        Some(deferred.deferred_at)
    }

    /// Applies an admitted proposal: counts a quorum approval or makes the transition and
    /// runs the action's updates.
    fn admit(
        &mut self,
        signed: &SignedProposal,
        id: &ProposalId,
        index: LedgerIndex,
    ) -> Result<(), ApplyError> {
        let p = &signed.proposal;
        let unknown = || ApplyError::UnknownAction {
            domain: p.domain.clone(),
            action: p.action.clone(),
        };
        let domain = self
            .constitution
            .constitution
            .domains
            .get(&p.domain)
            .ok_or_else(unknown)?;
        let action = domain.actions.get(&p.action).ok_or_else(unknown)?;
        let key = rows::subject_key(&p.domain, &p.subject);
        let old = self.row(&key);
        let mut subject = match &old {
            Some(bytes) => Self::decode_row::<SubjectState>(&key, bytes),
            None => SubjectState::initial(domain),
        };
        subject.last_index = index;
        let mut effects = Vec::new();
        let mut quorum_pending = false;
        if action.quorum > 1 {
            let approvals = subject.approvals.entry(p.action.clone()).or_default();
            approvals.insert(p.author);
            quorum_pending = (approvals.len() as u64) < u64::from(action.quorum);
        }
        if !quorum_pending {
            subject.state = action.to.clone();
            subject.approvals.clear();
            for update in &action.updates {
                match update.apply(p, id, &mut subject) {
                    Ok(Some(effect)) => effects.push(effect),
                    Ok(None) => {}
                    Err(rejection) => return Err(ApplyError::Update(rejection.to_string())),
                }
            }
        }
        self.replace_row(key, old.as_deref(), encoding::to_bytes(&subject));
        for effect in effects {
            match effect {
                StateEffect::AdoptConstitution { document } => {
                    let adopted =
                        ActiveConstitution::parse(document, index).map_err(ApplyError::Adoption)?;
                    self.history.push((index, adopted.version));
                    self.constitution = adopted;
                    self.constitution_changed = true;
                }
                StateEffect::Outcome {
                    reports_on,
                    succeeded,
                } => {
                    // The first outcome recorded for an effect stands: dependents may
                    // already have been decided by it.
                    let reference = reports_on.outcome_of();
                    let key = rows::outcome_key(&reference);
                    if self.row(&key).is_none() {
                        let record = OutcomeRecord {
                            reports_on,
                            report: *id,
                            index,
                            succeeded,
                        };
                        self.replace_row(key, None, encoding::to_bytes(&record));
                        self.settled.push(reference);
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constitution::DEFAULT_DOCUMENT;

    #[test]
    #[should_panic(expected = "never persisted")]
    fn a_dry_run_copy_is_never_persisted() {
        let (state, _) = State::genesis(
            LedgerId::new("dry").expect("valid"),
            DEFAULT_DOCUMENT,
            LedgerTime(1),
        )
        .expect("genesis");
        let candidate =
            DEFAULT_DOCUMENT.replace("subject_bytes_max = 128", "subject_bytes_max = 8");
        let mut copy = state
            .with_constitution_for_dry_run(&candidate)
            .expect("a valid candidate");
        assert!(copy.is_dry_run() && !state.is_dry_run());
        assert_ne!(copy.constitution_version(), state.constitution_version());
        assert_eq!(copy.constitution().limits.subject_bytes_max, 8);
        copy.take_changes();
    }
}
