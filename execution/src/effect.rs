//! The [`Effect`] trait: what an agent can do in reaction to an admitted entry.
//!
//! An effect *plans* (reads the entry and the committed state, builds a [`Request`] or
//! refuses), *runs* (performs the request, with its own retries) and *verifies* (checks
//! the result: a 2xx answer, a content hash read back). The agent does everything around
//! it — the gate (admission, allowlist, sandbox, size cap, quota, rate), leadership checks,
//! the journal, the evidence and the outcome record — so an effect cannot skip any of it.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use docket_core::{DecisionRecord, LedgerEntry, ProposalId};
use reqwest::Url;

use crate::config::EffectLimits;
use crate::evidence::{Cost, EffectRecord};
use crate::host::LedgerView;

/// The boxed future effects return (the trait is object safe: effects live in a registry).
pub type EffectFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An admitted action an effect reacts to.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct Trigger {
    pub domain: String,
    pub action: String,
}

impl Trigger {
    pub fn new(domain: &str, action: &str) -> Trigger {
        Trigger {
            domain: domain.to_owned(),
            action: action.to_owned(),
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.action)
    }
}

/// Which outcome record reports an effect's result.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Reporting {
    /// `SETTLEMENT.PAYOUT_EXECUTED` on success (payload `rail_ref`), `SETTLEMENT.RAIL_ERROR`
    /// otherwise (payload `reason`), on the payout's settlement subject.
    Settlement,
    /// `EXECUTION.OUTCOME` with subject = the reported proposal id (payload `outcome`,
    /// `evidence_hash`, `effect`, and `reason` when there is one).
    Execution,
}

/// Where a request goes.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Target {
    /// An HTTP POST to this URL; the gate checks it against the allowlist.
    Http(Url),
    /// A file at `path` inside the sandbox rooted at `root`; the gate checks confinement.
    File { root: PathBuf, path: PathBuf },
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Target::Http(url) => f.write_str(url.as_str()),
            Target::File { path, .. } => write!(f, "{}", path.display()),
        }
    }
}

/// A planned effect: where it goes and what it carries.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Request {
    pub target: Target,
    /// What is sent or written; the gate caps its size.
    pub body: Vec<u8>,
}

/// What the agent gives an effect to plan with.
#[derive(Clone, Copy)]
pub struct PlanContext<'a> {
    pub entry: &'a LedgerEntry,
    pub record: &'a DecisionRecord,
    /// The committed ledger and state, for effects that need more than the entry.
    pub ledger: &'a dyn LedgerView,
}

impl fmt::Debug for PlanContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("PlanContext")
            .field("index", &self.entry.index)
            .field("id", &self.record.id)
            .finish()
    }
}

/// What planning decided.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Plan {
    /// Perform this request.
    Perform(Request),
    /// The entry bears no effect after all (e.g. a quorum approval that did not complete
    /// the quorum). Recorded in the journal, with no evidence and no outcome.
    Skip { reason: String },
    /// The effect is not permitted for this entry: recorded refusal, reported as an outcome.
    Refuse { reason: String },
}

/// A run that reached its target and got an answer the effect considers final.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Performed {
    /// What came back (response body, bytes read back).
    pub output: Vec<u8>,
    pub effects: Vec<EffectRecord>,
    pub cost: Cost,
}

/// A run that did not succeed. `effects` and `cost` say what was tried.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Failed {
    pub reason: String,
    /// The last thing that came back, if anything did.
    pub output: Option<Vec<u8>>,
    pub effects: Vec<EffectRecord>,
    pub cost: Cost,
}

/// Values a verified effect reports, copied into the outcome payload (e.g. `rail_ref`).
pub type Verified = BTreeMap<String, String>;

/// An effect an agent can perform.
pub trait Effect: Send + Sync + fmt::Debug {
    /// Stable name recorded in evidence and journal (`rail`, `kes_deploy`, `file_write`,
    /// `webhook/<name>`).
    fn name(&self) -> &str;

    /// The admitted actions this effect reacts to.
    fn triggers(&self) -> Vec<Trigger>;

    /// How its outcome is reported.
    fn reporting(&self) -> Reporting;

    /// Limits the gate and the run apply.
    fn limits(&self) -> &EffectLimits;

    /// Builds the request for an admitted entry, or decides it bears no effect, or refuses.
    fn plan(&self, cx: PlanContext<'_>) -> Plan;

    /// Performs the request once (with the effect's own bounded retries). `key` is the
    /// idempotency key, the proposal id: the target must treat repeats of a key as one.
    fn run<'a>(
        &'a self,
        request: &'a Request,
        key: &'a ProposalId,
    ) -> EffectFuture<'a, Result<Performed, Failed>>;

    /// Checks a run's result. An error is a failure with that reason.
    fn verify<'a>(
        &'a self,
        request: &'a Request,
        key: &'a ProposalId,
        performed: &'a Performed,
    ) -> EffectFuture<'a, Result<Verified, String>>;
}
