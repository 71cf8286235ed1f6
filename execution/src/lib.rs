//! # docket-execution: leader-attached agents that perform admitted effects once
//!
//! Governance decides what is allowed; execution performs it and never decides. This crate
//! follows the committed ledger on the Raft leader, carries out the side effects of
//! admitted entries (a payment rail, KES deployment files, `FILE.WRITE` files, webhooks),
//! keeps evidence of every attempt in a local journal, and reports outcomes back as ordinary
//! proposals, signed by the executor key and judged by the constitution like any other.
//!
//! ```text
//!  committed entries ──► Executor (leader only, one epoch per term)
//!                          │ route: domain + action → Effect
//!                          │ dedupe: outcome in ledger? job resolved in journal?
//!                          │ gate: admitted · plan · allowlist / sandbox · size · leadership
//!                          │       confirmed · rate (waits) · quota (refuses)
//!                          │ run (bounded retries, Idempotency-Key = proposal id) · verify
//!                          │     (the retry loop: [`retry::with_retries`], generic over its send)
//!                          ├──► Journal (sled): Job + Evidence per attempt
//!                          └──► outcome proposal (executor key, depends on the original)
//!                                 ──► Host::submit ──► consensus ──► ledger
//! ```
//!
//! ## The seam
//!
//! The node implements [`Host`] over its Raft handle and replica and publishes a
//! [`Leadership`] watch; it builds an [`Executor`] from the `[execution]` section of its
//! configuration ([`ExecutionConfig`]), the executor's signing key and a [`Journal`], and
//! spawns [`Executor::run`]. It serves evidence from [`Executor::journal`]
//! ([`Journal::evidence`], [`Journal::job`]). Nothing else crosses.
//!
//! ## Guarantees, and where they come from
//!
//! * **Only the leader acts**: epochs follow the leadership watch, and every effect is
//!   preceded by [`Host::is_leader_confirmed`] (a quorum round) and a term check.
//! * **Once per idempotency key**: the ledger (an outcome record there resolves the job for
//!   every node) plus the journal (a concluded attempt is never re-run by this node); an
//!   attempt interrupted mid-flight is repeated with the same `Idempotency-Key`, which the
//!   target must honour (see [`agent`]).
//! * **One outcome per proposal**: one effect per (domain, action), outcome records with
//!   nonce 0 refiled byte for byte, and the constitution's own lifecycle rules
//!   (`EXECUTION.OUTCOME` only from `none`, payout outcomes only while the payout is pending).
//! * **No silent no-op**: every refusal — not admitted, planning refused, outside the
//!   allowlist or sandbox, over a size cap or quota — is evidence, and for admitted
//!   entries an outcome record (`SETTLEMENT.RAIL_ERROR`, `EXECUTION.OUTCOME` `refused`).
//!
//! Architecture invariant: this crate depends on `docket-core` and on no other workspace
//! crate; it never writes the ledger (it can only submit proposals through the host) and
//! nothing it does changes what the replicated state machine outputs.

pub mod agent;
pub mod config;
pub mod effect;
pub mod effects;
pub mod evidence;
pub mod gate;
pub mod host;
pub mod http;
pub mod journal;
pub mod outcome;
pub mod retry;
pub mod sandbox;
pub mod telemetry;

pub use agent::{Clock, EpochEnd, ExecutionError, Executor};
pub use config::{
    Allowlist, ConfigError, EffectLimits, ExecutionConfig, FileWriteConfig, KesDeployConfig,
    RailConfig, TriggerConfig, WebhookConfig,
};
pub use effect::{Effect, Plan, PlanContext, Reporting, Request, Target, Trigger};
pub use evidence::{Cost, EffectRecord, Evidence, OutcomeKind};
pub use host::{Host, HostError, Leadership, LedgerView, Submitted};
pub use journal::{
    Conclusion, Job, Journal, JournalError, JournalStorage, Phase, Resolution, SledStorage, Space,
};
