//! What goes into the Raft log ([`Command`]) and what applying it answers
//! ([`CommandResponse`]), and the one deterministic function between them.
//!
//! The leader stamps [`LedgerTime`] on a command when it enters the log; every replica then
//! applies the same command with the same time, so every replica records the same entries.
//! Nothing here reads a clock, the environment or the disk.

use std::fmt;

use docket_core::{
    Decision, LedgerEntry, LedgerId, LedgerIndex, LedgerTime, ProposalId, ProposalStatus,
    SignatureCheck, SignedProposal, State, Submission,
};
use serde::{Deserialize, Serialize};

/// A state-machine command: the `D` of the Raft type configuration.
///
/// Encoded with bincode in the log, so variants are externally tagged (bincode cannot
/// decode internally tagged or untagged enums).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Command {
    /// Creates the ledger: entry 0 with the genesis constitution. Valid once, as the first
    /// command; any later genesis is refused (an error response, not a panic).
    Genesis {
        ledger_id: LedgerId,
        document: String,
        time: LedgerTime,
    },
    /// Submits proposals, in order, at one ledger time. A batch is one log entry.
    Submit {
        proposals: Vec<SignedProposal>,
        time: LedgerTime,
    },
    /// Advances ledger time: expires deferred proposals whose deferral ran out.
    Tick { time: LedgerTime },
    /// Makes this command's boundary an **anchor** of the state map
    /// ([`docket_core::statemap`]) besides the one every
    /// [`ANCHOR_ENTRIES`](docket_core::statemap::ANCHOR_ENTRIES) entries, so a row just
    /// changed can be proved without waiting for the ledger to grow. Appends no entry and
    /// changes no state; being in the log, it anchors every replica at the same boundary.
    Anchor { time: LedgerTime },
}

impl Command {
    /// The ledger time the leader stamped.
    pub fn time(&self) -> LedgerTime {
        match self {
            Command::Genesis { time, .. }
            | Command::Submit { time, .. }
            | Command::Tick { time }
            | Command::Anchor { time } => *time,
        }
    }
}

/// Half-open range `[start, end)` of ledger indexes; empty when `start == end`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct IndexRange {
    pub start: LedgerIndex,
    pub end: LedgerIndex,
}

impl IndexRange {
    pub fn len(&self) -> u64 {
        self.end.0 - self.start.0
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

impl fmt::Display for IndexRange {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "[{}, {})", self.start, self.end)
    }
}

/// What happened to one submitted proposal.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Outcome {
    /// Entries were recorded: `appended` is everything its submission appended (expiries
    /// that came due first, its own entry, the waves it released); `index` and `decision`
    /// are its own entry's.
    Recorded {
        appended: IndexRange,
        index: LedgerIndex,
        decision: Decision,
    },
    /// The id was already recorded; nothing was appended. `index` holds its current status.
    Duplicate {
        index: LedgerIndex,
        status: ProposalStatus,
    },
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ProposalOutcome {
    pub id: ProposalId,
    pub outcome: Outcome,
}

/// A command the state machine refused. Deterministic: every replica refuses it the same way.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, thiserror::Error)]
pub enum CommandError {
    #[error("ledger {ledger_id} already has its genesis entry; genesis runs once")]
    AlreadyInitialized { ledger_id: LedgerId },
    #[error("the ledger has no genesis entry yet; initialize the cluster first")]
    NotInitialized,
    #[error("the genesis constitution is invalid: {message}")]
    InvalidConstitution { message: String },
}

impl CommandError {
    /// Stable code for APIs.
    pub fn code(&self) -> &'static str {
        match self {
            CommandError::AlreadyInitialized { .. } => "ALREADY_INITIALIZED",
            CommandError::NotInitialized => "NOT_INITIALIZED",
            CommandError::InvalidConstitution { .. } => "INVALID_CONSTITUTION",
        }
    }
}

/// The answer to one Raft log entry: the `R` of the Raft type configuration.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum CommandResponse {
    /// A blank or membership entry of Raft itself: nothing reaches the ledger.
    Internal,
    Genesis {
        appended: IndexRange,
    },
    Submitted {
        /// Every entry the command appended, across all its proposals.
        appended: IndexRange,
        /// One per submitted proposal, in submission order.
        outcomes: Vec<ProposalOutcome>,
    },
    Ticked {
        appended: IndexRange,
    },
    /// The state map was brought up to date at this boundary, `size` ledger entries.
    Anchored {
        size: u64,
    },
    Refused(CommandError),
}

/// Applies one command to the governance state (`None` before genesis) and appends the
/// entries it records to `recorded`. Pure and deterministic.
pub(crate) fn execute(
    state: &mut Option<State>,
    command: Command,
    recorded: &mut Vec<LedgerEntry>,
    signatures: &dyn SignatureCheck,
) -> CommandResponse {
    match command {
        Command::Genesis {
            ledger_id,
            document,
            time,
        } => {
            if let Some(existing) = state {
                return CommandResponse::Refused(CommandError::AlreadyInitialized {
                    ledger_id: existing.ledger_id().clone(),
                });
            }
            match State::genesis(ledger_id, &document, time) {
                Ok((genesis_state, entry)) => {
                    let appended = IndexRange {
                        start: entry.index,
                        end: entry.index.next(),
                    };
                    *state = Some(genesis_state);
                    recorded.push(entry);
                    CommandResponse::Genesis { appended }
                }
                Err(error) => CommandResponse::Refused(CommandError::InvalidConstitution {
                    message: error.to_string(),
                }),
            }
        }
        Command::Submit { proposals, time } => {
            let Some(state) = state else {
                return CommandResponse::Refused(CommandError::NotInitialized);
            };
            let start = state.head().index.next();
            let mut outcomes = Vec::with_capacity(proposals.len());
            for proposal in proposals {
                let id = proposal.id();
                let first = state.head().index.next();
                let outcome = match state.submit_with(proposal, time, signatures) {
                    submission @ Submission::Recorded(_) => {
                        let own = submission
                            .own_entry(&id)
                            .expect("invariant: a recorded submission includes its own entry");
                        let decision = own
                            .decision_record()
                            .expect("invariant: a submission's own entry is a decision")
                            .decision
                            .clone();
                        let index = own.index;
                        recorded.extend(submission.entries().iter().cloned());
                        Outcome::Recorded {
                            appended: IndexRange {
                                start: first,
                                end: state.head().index.next(),
                            },
                            index,
                            decision,
                        }
                    }
                    Submission::Duplicate { index, status } => Outcome::Duplicate { index, status },
                };
                outcomes.push(ProposalOutcome { id, outcome });
            }
            CommandResponse::Submitted {
                appended: IndexRange {
                    start,
                    end: state.head().index.next(),
                },
                outcomes,
            }
        }
        Command::Tick { time } => {
            let Some(state) = state else {
                return CommandResponse::Refused(CommandError::NotInitialized);
            };
            let start = state.head().index.next();
            recorded.extend(state.tick_with(time, signatures));
            CommandResponse::Ticked {
                appended: IndexRange {
                    start,
                    end: state.head().index.next(),
                },
            }
        }
        Command::Anchor { .. } => match state {
            None => CommandResponse::Refused(CommandError::NotInitialized),
            Some(state) => CommandResponse::Anchored {
                size: state.head().index.0 + 1,
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use docket_core::constitution::DEFAULT_DOCUMENT;
    use docket_core::{dev, Strict, Value};

    use super::*;

    fn ledger() -> LedgerId {
        LedgerId::new("raft-test").expect("valid id")
    }

    fn genesis() -> Command {
        Command::Genesis {
            ledger_id: ledger(),
            document: DEFAULT_DOCUMENT.to_owned(),
            time: LedgerTime(1_000),
        }
    }

    #[test]
    fn genesis_once_then_refused() {
        let mut state = None;
        let mut recorded = Vec::new();
        let response = execute(&mut state, genesis(), &mut recorded, &Strict);
        assert!(matches!(response, CommandResponse::Genesis { appended } if appended.len() == 1));
        assert_eq!(recorded.len(), 1);

        let again = execute(&mut state, genesis(), &mut recorded, &Strict);
        assert!(matches!(
            again,
            CommandResponse::Refused(CommandError::AlreadyInitialized { .. })
        ));
        assert_eq!(recorded.len(), 1, "a refused genesis records nothing");
    }

    #[test]
    fn submit_before_genesis_is_refused() {
        let mut state = None;
        let mut recorded = Vec::new();
        let response = execute(
            &mut state,
            Command::Tick {
                time: LedgerTime(5),
            },
            &mut recorded,
            &Strict,
        );
        assert_eq!(
            response,
            CommandResponse::Refused(CommandError::NotInitialized)
        );
        assert!(state.is_none());
    }

    #[test]
    fn bad_constitution_is_refused() {
        let mut state = None;
        let mut recorded = Vec::new();
        let response = execute(
            &mut state,
            Command::Genesis {
                ledger_id: ledger(),
                document: "not = [a constitution".to_owned(),
                time: LedgerTime(1),
            },
            &mut recorded,
            &Strict,
        );
        assert!(matches!(
            response,
            CommandResponse::Refused(CommandError::InvalidConstitution { .. })
        ));
        assert!(state.is_none());
    }

    #[test]
    fn submit_reports_each_proposal() {
        let mut state = None;
        let mut recorded = Vec::new();
        execute(&mut state, genesis(), &mut recorded, &Strict);
        let deposit = dev::proposal(
            &ledger(),
            "alice",
            "SETTLEMENT.DEPOSIT_CONFIRMED",
            "stl-1",
            Value::map([("amount", Value::Int(10)), ("currency", "EUR".into())]),
            vec![],
            1,
        );
        let response = execute(
            &mut state,
            Command::Submit {
                proposals: vec![deposit.clone(), deposit.clone()],
                time: LedgerTime(2_000),
            },
            &mut recorded,
            &Strict,
        );
        let CommandResponse::Submitted { appended, outcomes } = response else {
            panic!("expected Submitted, got {response:?}");
        };
        assert_eq!(appended.len(), 1);
        assert_eq!(outcomes.len(), 2);
        assert_eq!(outcomes[0].id, deposit.id());
        assert!(matches!(
            &outcomes[0].outcome,
            Outcome::Recorded { index, decision, .. } if index.0 == 1 && *decision == Decision::Admit
        ));
        assert!(matches!(
            outcomes[1].outcome,
            Outcome::Duplicate {
                index: LedgerIndex(1),
                status: ProposalStatus::Admitted
            }
        ));
        assert_eq!(recorded.len(), 2);
    }

    #[test]
    fn command_round_trips_through_the_log_encoding() {
        let command = genesis();
        let bytes = crate::codec::encode(&command).expect("encodes");
        assert_eq!(
            crate::codec::decode::<Command>(&bytes).expect("decodes"),
            command
        );
    }
}
