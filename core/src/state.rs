//! Governance state: everything derived from the ledger, and nothing else.
//!
//! State is lifecycle per subject (with its domain data: balances, bids, versions, ...),
//! the status of every proposal ever decided, the deferred set, the active constitution and
//! its history, and the ledger head. [`State::apply`] is the one function that changes it:
//! the engine applies each entry it records through it, and trusted replay applies each
//! stored entry through it, so the two cannot drift apart.

use std::collections::{BTreeMap, BTreeSet};

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

/// Governance state. Cloning is O(state); replicas hold one and mutate it in place.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct State {
    pub(crate) ledger_id: LedgerId,
    pub(crate) head: Head,
    pub(crate) constitution: ActiveConstitution,
    /// Every constitution adopted, with the index of the entry that adopted it.
    pub(crate) history: Vec<(LedgerIndex, ConstitutionVersion)>,
    pub(crate) subjects: BTreeMap<String, BTreeMap<String, SubjectState>>,
    pub(crate) proposals: BTreeMap<ProposalId, ProposalRecord>,
    pub(crate) deferred: BTreeMap<ProposalId, Deferred>,
    // Derived indexes over `deferred`; rebuilt on restore, never hashed or persisted.
    pub(crate) waiting: BTreeMap<ProposalId, BTreeSet<ProposalId>>,
    pub(crate) expiry: BTreeSet<(LedgerTime, ProposalId)>,
}

/// The persisted and hashed form of the state: everything but derived indexes, and the
/// constitution as its document (the parsed form is derived from it).
#[derive(Serialize)]
struct StateView<'a> {
    ledger_id: &'a LedgerId,
    head: &'a Head,
    constitution_document: &'a str,
    constitution_adopted_at: LedgerIndex,
    history: &'a [(LedgerIndex, ConstitutionVersion)],
    subjects: &'a BTreeMap<String, BTreeMap<String, SubjectState>>,
    proposals: &'a BTreeMap<ProposalId, ProposalRecord>,
    deferred: &'a BTreeMap<ProposalId, Deferred>,
}

#[derive(Deserialize)]
struct StateOwned {
    ledger_id: LedgerId,
    head: Head,
    constitution_document: String,
    constitution_adopted_at: LedgerIndex,
    history: Vec<(LedgerIndex, ConstitutionVersion)>,
    subjects: BTreeMap<String, BTreeMap<String, SubjectState>>,
    proposals: BTreeMap<ProposalId, ProposalRecord>,
    deferred: BTreeMap<ProposalId, Deferred>,
}

/// A state snapshot that cannot be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Decode(#[from] encoding::DecodeError),
    #[error("snapshot's constitution does not parse: {0}")]
    Constitution(ConstitutionError),
    #[error("snapshot's state hash is {found}, expected {expected}")]
    Hash {
        expected: StateHash,
        found: StateHash,
    },
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
    /// Creates the state and entry 0 of a new ledger.
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
            subjects: BTreeMap::new(),
            proposals: BTreeMap::new(),
            deferred: BTreeMap::new(),
            waiting: BTreeMap::new(),
            expiry: BTreeSet::new(),
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

    pub fn subject(&self, domain: &str, subject: &str) -> Option<&SubjectState> {
        self.subjects.get(domain)?.get(subject)
    }

    /// Every subject of a domain, in name order.
    pub fn subjects(&self, domain: &str) -> impl Iterator<Item = (&String, &SubjectState)> {
        self.subjects.get(domain).into_iter().flatten()
    }

    pub fn proposal(&self, id: &ProposalId) -> Option<&ProposalRecord> {
        self.proposals.get(id)
    }

    pub fn proposal_status(&self, id: &ProposalId) -> Option<ProposalStatus> {
        self.proposals.get(id).map(|r| r.status)
    }

    pub fn proposal_count(&self) -> usize {
        self.proposals.len()
    }

    pub fn deferred(&self) -> &BTreeMap<ProposalId, Deferred> {
        &self.deferred
    }

    fn view(&self) -> StateView<'_> {
        StateView {
            ledger_id: &self.ledger_id,
            head: &self.head,
            constitution_document: &self.constitution.document,
            constitution_adopted_at: self.constitution.adopted_at,
            history: &self.history,
            subjects: &self.subjects,
            proposals: &self.proposals,
            deferred: &self.deferred,
        }
    }

    /// BLAKE3 over the canonical encoding of the state. Equal on every replica at an equal
    /// ledger index; O(state), so callers compute it when asked, not per entry.
    pub fn hash(&self) -> StateHash {
        StateHash(encoding::tagged_hash(TAG_STATE, &self.view()))
    }

    /// Canonical bytes of the state, for snapshots.
    pub fn to_snapshot(&self) -> Vec<u8> {
        encoding::to_bytes(&self.view())
    }

    /// Restores a snapshot and checks it against the state hash it was taken with.
    pub fn restore(bytes: &[u8], expected: StateHash) -> Result<State, RestoreError> {
        let owned: StateOwned = encoding::from_bytes(bytes)?;
        let constitution =
            ActiveConstitution::parse(owned.constitution_document, owned.constitution_adopted_at)
                .map_err(RestoreError::Constitution)?;
        let mut state = State {
            ledger_id: owned.ledger_id,
            head: owned.head,
            constitution,
            history: owned.history,
            subjects: owned.subjects,
            proposals: owned.proposals,
            deferred: owned.deferred,
            waiting: BTreeMap::new(),
            expiry: BTreeSet::new(),
        };
        state.rebuild_indexes();
        let found = state.hash();
        if found != expected {
            return Err(RestoreError::Hash { expected, found });
        }
        Ok(state)
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
            self.proposals.insert(record.id, record_of_id);
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
        let subject = self
            .subjects
            .entry(p.domain.clone())
            .or_default()
            .entry(p.subject.clone())
            .or_insert_with(|| SubjectState::initial(domain));
        subject.last_index = index;
        if action.quorum > 1 {
            let approvals = subject.approvals.entry(p.action.clone()).or_default();
            approvals.insert(p.author);
            if (approvals.len() as u64) < u64::from(action.quorum) {
                return Ok(());
            }
        }
        subject.state = action.to.clone();
        subject.approvals.clear();
        let mut effects = Vec::new();
        for update in &action.updates {
            match update.apply(p, id, subject) {
                Ok(Some(effect)) => effects.push(effect),
                Ok(None) => {}
                Err(rejection) => return Err(ApplyError::Update(rejection.to_string())),
            }
        }
        for effect in effects {
            match effect {
                StateEffect::AdoptConstitution { document } => {
                    let adopted =
                        ActiveConstitution::parse(document, index).map_err(ApplyError::Adoption)?;
                    self.history.push((index, adopted.version));
                    self.constitution = adopted;
                }
            }
        }
        Ok(())
    }
}
