//! Replay: governance state from the ledger alone.
//!
//! * [`replay`] (trusted) applies each recorded decision through [`State::apply`], checking
//!   indexes, hash links and constitution versions but not recomputing hashes, ids or
//!   signatures. It is for a node's own ledger, already verified when written.
//! * [`audit`] trusts nothing: it verifies the chain (hashes and ids), then re-runs the
//!   engine on every submitted proposal at its recorded time — signatures, adjudication,
//!   waves, expiries — and compares every entry the engine derives with the entry recorded.
//!   The first difference is reported with both decisions.

use std::collections::VecDeque;

use crate::decision::Decision;
use crate::engine::Submission;
use crate::id::LedgerIndex;
use crate::ledger::{Cause, ChainError, ChainVerifier, LedgerEntry, Record};
use crate::state::{ApplyError, State};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("the ledger is empty: it has no genesis entry")]
    Empty,
    #[error("entry {index}: {error}")]
    Apply {
        index: LedgerIndex,
        error: ApplyError,
    },
}

/// Rebuilds the state from a ledger, trusting recorded decisions.
pub fn replay<'a>(
    entries: impl IntoIterator<Item = &'a LedgerEntry>,
) -> Result<State, ReplayError> {
    let mut entries = entries.into_iter();
    let genesis = entries.next().ok_or(ReplayError::Empty)?;
    let mut state = State::from_genesis_entry(genesis).map_err(|error| ReplayError::Apply {
        index: genesis.index,
        error,
    })?;
    for entry in entries {
        state.apply(entry).map_err(|error| ReplayError::Apply {
            index: entry.index,
            error,
        })?;
    }
    Ok(state)
}

/// What an audit found wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    #[error("the ledger is empty: it has no genesis entry")]
    Empty,
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("entry 0: {0}")]
    Genesis(ApplyError),
    #[error("entry {index}: recorded {recorded}, but re-adjudication derives {derived}")]
    Decision {
        index: LedgerIndex,
        recorded: Decision,
        derived: Decision,
    },
    #[error("entry {index}: recorded entry differs from the derived one ({what})")]
    Entry {
        index: LedgerIndex,
        what: &'static str,
    },
    #[error("entry {index}: a {cause} entry that no command derives")]
    Unexplained {
        index: LedgerIndex,
        cause: &'static str,
    },
    #[error(
        "entry {index}: the proposal was already recorded, so resubmitting it appends nothing"
    )]
    Duplicate { index: LedgerIndex },
    #[error("the ledger ends at entry {last} but its last command derives {missing} more entries")]
    Truncated { last: LedgerIndex, missing: usize },
}

/// Summary of a successful audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReport {
    pub entries: u64,
    pub commands: u64,
}

/// Verifies and re-derives the whole ledger; returns the state it ends in.
pub fn audit<'a>(
    entries: impl IntoIterator<Item = &'a LedgerEntry>,
) -> Result<(State, AuditReport), AuditError> {
    let mut auditor = Auditor::new();
    for entry in entries {
        auditor.push(entry)?;
    }
    auditor.finish()
}

/// [`audit`] one entry at a time, so a ledger can be audited as it streams in (page by
/// page from a node, or from a file) without holding more than one page of entries.
#[derive(Debug)]
pub struct Auditor {
    verifier: ChainVerifier,
    /// `None` until the genesis entry is pushed.
    state: Option<State>,
    report: AuditReport,
    /// Entries the current command derived that the ledger has not shown yet.
    derived: VecDeque<LedgerEntry>,
    last: LedgerIndex,
}

impl Default for Auditor {
    fn default() -> Self {
        Auditor::new()
    }
}

impl Auditor {
    pub fn new() -> Auditor {
        Auditor {
            verifier: ChainVerifier::from_genesis(),
            state: None,
            report: AuditReport {
                entries: 0,
                commands: 0,
            },
            derived: VecDeque::new(),
            last: LedgerIndex(0),
        }
    }

    /// Entries verified so far.
    pub fn entries(&self) -> u64 {
        self.report.entries
    }

    /// Verifies the next entry: its chain link and id, then that re-adjudicating the
    /// command it belongs to derives exactly it.
    pub fn push(&mut self, recorded: &LedgerEntry) -> Result<(), AuditError> {
        self.verifier.push(recorded, true)?;
        self.last = recorded.index;
        self.report.entries += 1;
        let Some(state) = self.state.as_mut() else {
            self.state = Some(State::from_genesis_entry(recorded).map_err(AuditError::Genesis)?);
            return Ok(());
        };
        let Record::Decision(record) = &recorded.record else {
            return Err(AuditError::Unexplained {
                index: recorded.index,
                cause: "genesis",
            });
        };
        if self.derived.is_empty() {
            // The start of a command: a submission, or the expiries of a tick.
            self.report.commands += 1;
            match record.cause {
                Cause::Submitted => match state.submit(record.proposal.clone(), recorded.time) {
                    Submission::Recorded(entries) => self.derived.extend(entries),
                    Submission::Duplicate { .. } => {
                        return Err(AuditError::Duplicate {
                            index: recorded.index,
                        })
                    }
                },
                Cause::Expired => self.derived.extend(state.tick(recorded.time)),
                Cause::Released { .. } => {
                    return Err(AuditError::Unexplained {
                        index: recorded.index,
                        cause: "released",
                    })
                }
            }
            if self.derived.is_empty() {
                return Err(AuditError::Unexplained {
                    index: recorded.index,
                    cause: "expired",
                });
            }
        }
        let expected = self
            .derived
            .pop_front()
            .expect("invariant: derived is non-empty here");
        compare(recorded, &expected)
    }

    /// The state the ledger ends in, once every entry has been pushed.
    pub fn finish(self) -> Result<(State, AuditReport), AuditError> {
        let state = self.state.ok_or(AuditError::Empty)?;
        if !self.derived.is_empty() {
            return Err(AuditError::Truncated {
                last: self.last,
                missing: self.derived.len(),
            });
        }
        Ok((state, self.report))
    }
}

fn compare(recorded: &LedgerEntry, derived: &LedgerEntry) -> Result<(), AuditError> {
    if recorded == derived {
        return Ok(());
    }
    let index = recorded.index;
    let (Some(r), Some(d)) = (recorded.decision_record(), derived.decision_record()) else {
        return Err(AuditError::Entry {
            index,
            what: "record kind",
        });
    };
    if r.id != d.id {
        return Err(AuditError::Entry {
            index,
            what: "proposal id",
        });
    }
    if r.decision != d.decision {
        return Err(AuditError::Decision {
            index,
            recorded: r.decision.clone(),
            derived: d.decision.clone(),
        });
    }
    let what = if r.access != d.access {
        "access decision"
    } else if r.cause != d.cause {
        "cause"
    } else if recorded.time != derived.time {
        "time"
    } else if recorded.constitution != derived.constitution {
        "constitution version"
    } else {
        "hash"
    };
    Err(AuditError::Entry { index, what })
}
