//! # docket-core: the pure governance core
//!
//! Programs and people never perform side effects directly: they file signed,
//! content-addressed [`Proposal`]s. A [`Constitution`] (data, versioned, amended only
//! through governance) admits, rejects with a stable [`RejectCode`], or defers each one,
//! and every decision becomes a [`LedgerEntry`] in a hash chain. This crate is that
//! decision function and the ledger it builds. It is what every replica runs.
//!
//! ## Determinism is the contract
//!
//! Given the same entries, every replica computes the same state and the same
//! [`StateHash`], on every run. So this crate reads no clock (ledger time arrives in each
//! command), no randomness, no environment, does no I/O, uses no hash-ordered collections
//! and no floats; it is synchronous. `clippy.toml` in this crate forbids those APIs and
//! `tests/purity.rs` fails if the dependency tree gains an async runtime, a database or a
//! random-number crate.
//!
//! ## The flow
//!
//! ```
//! use docket_core::{dev, LedgerId, LedgerTime, Proposal, ProposalFormat, State, Value};
//! use docket_core::constitution::DEFAULT_DOCUMENT;
//!
//! let ledger = LedgerId::new("doc-example").unwrap();
//! let (mut state, genesis) = State::genesis(ledger.clone(), DEFAULT_DOCUMENT, LedgerTime(1_000)).unwrap();
//!
//! let alice = dev::signing_key("alice"); // a treasurer in the default constitution
//! let deposit = Proposal {
//!     format: ProposalFormat::CURRENT,
//!     ledger_id: ledger,
//!     domain: "settlement".into(),
//!     action: "SETTLEMENT.DEPOSIT_CONFIRMED".into(),
//!     subject: "stl-1".into(),
//!     payload: Value::map([("amount", Value::Int(125_000)), ("currency", "EUR".into())]),
//!     dependencies: vec![],
//!     author: dev::key("alice"),
//!     nonce: 1,
//! }
//! .sign(&alice);
//!
//! let submission = state.submit(deposit, LedgerTime(2_000));
//! let entry = &submission.entries()[0];
//! assert_eq!(entry.decision_record().unwrap().decision.label(), "ADMIT");
//! assert_eq!(state.subject("settlement", "stl-1").unwrap().state, "funded");
//!
//! // Replay from the ledger alone gives the same state.
//! let ledger = [genesis, entry.clone()];
//! let replayed = docket_core::replay(&ledger).unwrap();
//! assert_eq!(replayed.hash(), state.hash());
//! ```
//!
//! ## Map
//!
//! * [`value`] — the canonical payload value (no floats);
//! * [`encoding`] — the one canonical byte encoding and domain-separated hashes;
//! * [`proposal`] — proposals, ids, signatures;
//! * [`constitution`] — the constitution document, its validation, its named rules;
//! * [`adjudicate()`] — the pure decision function;
//! * [`signature`] — how adjudication checks signatures (strict, or through a memo of
//!   checks that passed);
//! * [`engine`] — commands to entries: duplicates, expiries, waves;
//! * [`explain()`] — why a recorded decision was made: the failed step, the rule, the data
//!   it read, the dependency tree;
//! * [`plan`] — the recording order of a program's plan (waves, then ids);
//! * [`state`] — governance state and the one function that changes it;
//! * [`ledger`] — entries and the hash chain;
//! * [`replay()`] and [`audit()`] — state from the ledger alone.

pub mod adjudicate;
pub mod checkpoint;
pub mod code;
pub mod constitution;
pub mod decision;
pub mod dev;
pub mod encoding;
pub mod engine;
pub mod explain;
pub mod id;
pub mod json;
pub mod ledger;
pub mod merkle;
pub mod plan;
pub mod proposal;
pub mod replay;
pub mod rows;
pub mod signature;
pub mod state;
pub mod statemap;
pub mod value;

pub use adjudicate::{adjudicate, adjudicate_traced, adjudicate_with, Step};
pub use code::RejectCode;
pub use constitution::{Constitution, ConstitutionError};
pub use decision::{AccessDecision, AccessVerdict, Decision, Rejection, Verdict};
pub use engine::Submission;
pub use explain::{explain, Explanation};
pub use id::{
    ConstitutionVersion, EntryHash, LedgerId, LedgerIndex, LedgerTime, ProposalId, PublicKey,
    Signature, StateHash,
};
pub use ledger::{
    verify_chain, Cause, ChainError, ChainFault, DecisionRecord, LedgerEntry, Record,
};
pub use proposal::{Proposal, ProposalFormat, SignedProposal};
pub use replay::{audit, replay, AuditError, AuditReport, Auditor, ReplayError};
pub use rows::{NoRows, Rows};
pub use signature::{SignatureCheck, Strict, VerifiedMemo};
pub use state::{Dependency, OutcomeRecord, ProposalStatus, State, SubjectState};
pub use value::Value;
