//! Ledger entries and the hash chain.
//!
//! Entry `i` stores the hash of entry `i - 1` and its own hash, BLAKE3 over [`TAG_ENTRY`]
//! and the canonical bytes of everything else in the entry (which include the previous
//! hash). Editing, deleting, reordering or inserting an entry breaks the chain at the first
//! entry affected, and [`verify_chain`] says which.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::decision::{AccessDecision, Decision};
use crate::encoding::{self, TAG_ENTRY};
use crate::id::{ConstitutionVersion, EntryHash, LedgerId, LedgerIndex, LedgerTime, ProposalId};
use crate::proposal::SignedProposal;

/// Format of a ledger entry record.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub enum EntryFormat {
    #[default]
    #[serde(rename = "v1")]
    V1,
}

/// Why an entry was recorded.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// A client submitted the proposal.
    Submitted,
    /// A deferred proposal was re-adjudicated because its dependencies were decided. `wave`
    /// counts from 1 within the command that released it.
    Released { wave: u32 },
    /// A deferred proposal's deferral expired.
    Expired,
}

/// A decision about one proposal.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub id: ProposalId,
    pub proposal: SignedProposal,
    pub cause: Cause,
    pub decision: Decision,
    pub access: AccessDecision,
}

/// What an entry records.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Record {
    /// Entry 0: the ledger id and the genesis constitution document.
    Genesis {
        ledger_id: LedgerId,
        document: String,
    },
    Decision(Box<DecisionRecord>),
}

/// One entry of the hash-chained ledger.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub format: EntryFormat,
    pub index: LedgerIndex,
    pub time: LedgerTime,
    /// The constitution version that judged this entry (for genesis: its own).
    pub constitution: ConstitutionVersion,
    pub prev_hash: EntryHash,
    pub record: Record,
    pub hash: EntryHash,
}

/// The hashed part of an entry: everything but its own hash.
#[derive(Serialize)]
struct EntryBody<'a> {
    format: EntryFormat,
    index: LedgerIndex,
    time: LedgerTime,
    constitution: &'a ConstitutionVersion,
    prev_hash: &'a EntryHash,
    record: &'a Record,
}

impl LedgerEntry {
    /// Builds an entry and computes its hash.
    pub fn seal(
        index: LedgerIndex,
        time: LedgerTime,
        constitution: ConstitutionVersion,
        prev_hash: EntryHash,
        record: Record,
    ) -> LedgerEntry {
        let mut entry = LedgerEntry {
            format: EntryFormat::V1,
            index,
            time,
            constitution,
            prev_hash,
            record,
            hash: EntryHash::ZERO,
        };
        entry.hash = entry.compute_hash();
        entry
    }

    /// The hash this entry should have, computed from its contents.
    pub fn compute_hash(&self) -> EntryHash {
        let body = EntryBody {
            format: self.format,
            index: self.index,
            time: self.time,
            constitution: &self.constitution,
            prev_hash: &self.prev_hash,
            record: &self.record,
        };
        EntryHash(encoding::tagged_hash(TAG_ENTRY, &body))
    }

    pub fn decision_record(&self) -> Option<&DecisionRecord> {
        match &self.record {
            Record::Decision(d) => Some(d),
            Record::Genesis { .. } => None,
        }
    }

    pub fn proposal_id(&self) -> Option<ProposalId> {
        self.decision_record().map(|d| d.id)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        encoding::to_bytes(self)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<LedgerEntry, encoding::DecodeError> {
        encoding::from_bytes(bytes)
    }

    /// The recorded hash of the entry whose canonical bytes are `bytes`, read without
    /// decoding the rest: the encoding ends with the hash, as 32 bytes (FORMAT.md, the
    /// entry). Only for bytes already checked to be an entry's canonical encoding (a
    /// store's own ledger, which takes no other); `None` if shorter than a hash.
    pub fn hash_of_canonical(bytes: &[u8]) -> Option<EntryHash> {
        let start = bytes.len().checked_sub(32)?;
        Some(EntryHash(bytes[start..].try_into().ok()?))
    }
}

impl fmt::Display for LedgerEntry {
    /// One line: index, time, hash, and what was decided.
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "#{:<4} t={} {} ",
            self.index,
            self.time.0,
            self.hash.short()
        )?;
        match &self.record {
            Record::Genesis { ledger_id, .. } => {
                write!(
                    f,
                    "GENESIS ledger={ledger_id} constitution={}",
                    self.constitution.short()
                )
            }
            Record::Decision(d) => {
                let p = &d.proposal.proposal;
                let cause = match d.cause {
                    Cause::Submitted => String::new(),
                    Cause::Released { wave } => format!(" (wave {wave})"),
                    Cause::Expired => " (expired)".to_owned(),
                };
                // Client-chosen strings are escaped so they cannot forge log lines.
                write!(
                    f,
                    "{} {}/{} id={} -> {}{cause} [{}]",
                    p.action.escape_debug(),
                    p.domain.escape_debug(),
                    p.subject.escape_debug(),
                    d.id.short(),
                    d.decision,
                    d.access
                )
            }
        }
    }
}

/// Where and why a ledger fails verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ledger entry at position {position} is bad: {reason}")]
pub struct ChainError {
    /// 0-based position in the sequence given to [`verify_chain`] of the first bad entry.
    pub position: u64,
    pub reason: ChainFault,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainFault {
    #[error("index is {found}, expected {expected} (an entry was deleted, inserted or moved)")]
    Index {
        expected: LedgerIndex,
        found: LedgerIndex,
    },
    #[error("prev_hash does not match the previous entry's hash")]
    PrevHash,
    #[error("hash does not match the entry's contents (the entry was edited)")]
    Hash,
    #[error("ledger time went backwards")]
    TimeBackwards,
    #[error("entry 0 is not a genesis record, or a genesis record appears later")]
    Genesis,
    #[error("a decision record's id is not the id of its proposal")]
    ProposalId,
}

/// Running verifier of a hash chain, for checking entries as they stream past (from disk,
/// from a snapshot, from a peer) without holding them all.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    expected_index: LedgerIndex,
    prev_hash: EntryHash,
    prev_time: LedgerTime,
    position: u64,
}

impl ChainVerifier {
    /// Verifies a ledger from genesis.
    pub fn from_genesis() -> ChainVerifier {
        ChainVerifier {
            expected_index: LedgerIndex(0),
            prev_hash: EntryHash::ZERO,
            prev_time: LedgerTime(0),
            position: 0,
        }
    }

    /// Verifies a ledger suffix that follows an entry already trusted.
    pub fn after(index: LedgerIndex, hash: EntryHash, time: LedgerTime) -> ChainVerifier {
        ChainVerifier {
            expected_index: index.next(),
            prev_hash: hash,
            prev_time: time,
            position: 0,
        }
    }

    /// Checks the next entry. `check_ids` recomputes each proposal's id (the costly part of
    /// a full audit; the entry hash already commits to the recorded id).
    pub fn push(&mut self, entry: &LedgerEntry, check_ids: bool) -> Result<(), ChainError> {
        let fail = |reason| ChainError {
            position: self.position,
            reason,
        };
        if entry.index != self.expected_index {
            return Err(fail(ChainFault::Index {
                expected: self.expected_index,
                found: entry.index,
            }));
        }
        if entry.prev_hash != self.prev_hash {
            return Err(fail(ChainFault::PrevHash));
        }
        if entry.compute_hash() != entry.hash {
            return Err(fail(ChainFault::Hash));
        }
        if entry.time < self.prev_time {
            return Err(fail(ChainFault::TimeBackwards));
        }
        let is_genesis = matches!(entry.record, Record::Genesis { .. });
        if is_genesis != (entry.index == LedgerIndex(0)) {
            return Err(fail(ChainFault::Genesis));
        }
        if check_ids {
            if let Record::Decision(d) = &entry.record {
                if d.proposal.id() != d.id {
                    return Err(fail(ChainFault::ProposalId));
                }
            }
        }
        self.expected_index = entry.index.next();
        self.prev_hash = entry.hash;
        self.prev_time = entry.time;
        self.position += 1;
        Ok(())
    }
}

/// Where FORMAT.md §4.1 puts an entry's fixed-width fields in its canonical bytes.
mod canonical {
    use std::ops::Range;

    pub const FORMAT: Range<usize> = 0..4;
    pub const INDEX: Range<usize> = 4..12;
    pub const TIME: Range<usize> = 12..20;
    pub const PREV_HASH: Range<usize> = 52..84;
    pub const RECORD_VARIANT: Range<usize> = 84..88;
    /// `EntryFormat::V1` and `Record::Genesis` are variant 0.
    pub const VARIANT_0: [u8; 4] = [0; 4];
    /// The fixed fields, the record's variant, and the hash at the end.
    pub const LEN_MIN: usize = RECORD_VARIANT.end + 32;
}

impl ChainVerifier {
    /// [`ChainVerifier::push`] without the id check, on an entry's stored canonical bytes,
    /// with no decoding: the fixed-width fields are read where FORMAT.md §4.1 puts them,
    /// and the hash is recomputed over the bytes it covers (§4.2: the stored form is the
    /// hashed bytes, then the hash), so one BLAKE3 pass replaces a decode and a re-encode.
    /// For a node's own stored ledger, which holds canonical encodings only: a snapshot's
    /// sender checks its chain this way, and the receiver decodes and checks everything.
    /// Bytes too short for the fixed fields and a hash, or of another format, fail as
    /// [`ChainFault::Hash`]. Returns the entry's hash.
    pub fn push_canonical(&mut self, bytes: &[u8]) -> Result<EntryHash, ChainError> {
        use canonical::*;
        let fail = |reason| ChainError {
            position: self.position,
            reason,
        };
        let u64_at = |range: std::ops::Range<usize>| {
            u64::from_le_bytes(bytes[range].try_into().expect("8 bytes"))
        };
        if bytes.len() < LEN_MIN || bytes[FORMAT] != VARIANT_0 {
            return Err(fail(ChainFault::Hash));
        }
        let index = LedgerIndex(u64_at(INDEX));
        if index != self.expected_index {
            return Err(fail(ChainFault::Index {
                expected: self.expected_index,
                found: index,
            }));
        }
        if bytes[PREV_HASH] != self.prev_hash.0 {
            return Err(fail(ChainFault::PrevHash));
        }
        let (hashed, hash) = bytes.split_at(bytes.len() - 32);
        let mut hasher = blake3::Hasher::new();
        hasher.update(TAG_ENTRY);
        hasher.update(hashed);
        if hasher.finalize().as_bytes() != hash {
            return Err(fail(ChainFault::Hash));
        }
        let time = LedgerTime(u64_at(TIME));
        if time < self.prev_time {
            return Err(fail(ChainFault::TimeBackwards));
        }
        let is_genesis = bytes[RECORD_VARIANT] == VARIANT_0;
        if is_genesis != (index == LedgerIndex(0)) {
            return Err(fail(ChainFault::Genesis));
        }
        let hash = EntryHash(hash.try_into().expect("32 bytes"));
        self.expected_index = index.next();
        self.prev_hash = hash;
        self.prev_time = time;
        self.position += 1;
        Ok(hash)
    }
}

/// Verifies a whole ledger from genesis and returns the first bad entry's position.
pub fn verify_chain<'a>(
    entries: impl IntoIterator<Item = &'a LedgerEntry>,
) -> Result<(), ChainError> {
    let mut verifier = ChainVerifier::from_genesis();
    entries
        .into_iter()
        .try_for_each(|entry| verifier.push(entry, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_bytes_too_short_or_of_another_format_fail_the_canonical_check() {
        let chain = crate::dev::entry_chain(2, "canonical");
        let good = chain[0].to_bytes();
        let mut verifier = ChainVerifier::from_genesis();
        for bad in [&[][..], &good[..canonical::LEN_MIN - 1]] {
            let error = verifier.clone().push_canonical(bad).expect_err("too short");
            assert_eq!(error.reason, ChainFault::Hash);
        }
        let mut other_format = good.clone();
        other_format[0] = 1;
        let error = verifier
            .clone()
            .push_canonical(&other_format)
            .expect_err("format 1 is not V1");
        assert_eq!(error.reason, ChainFault::Hash);
        // The real bytes pass. (`entry_chain` records a genesis at every index, so the next
        // entry links but is a second genesis: the decoded check says the same.)
        assert_eq!(verifier.push_canonical(&good), Ok(chain[0].hash));
        let by_bytes = verifier.clone().push_canonical(&chain[1].to_bytes());
        assert_eq!(by_bytes.map(|_| ()), verifier.push(&chain[1], false));
        assert_eq!(
            verifier
                .clone()
                .push_canonical(&chain[1].to_bytes())
                .map(|_| ()),
            Err(ChainError {
                position: 1,
                reason: ChainFault::Genesis
            })
        );
    }
}
