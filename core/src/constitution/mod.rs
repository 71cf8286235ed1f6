//! The constitution: governance as data.
//!
//! A constitution is a TOML document declaring roles, principals (public keys and the roles
//! they hold), domains (each a lifecycle state machine whose transitions are actions, with
//! the roles allowed to take each action, the payload fields it requires, the named
//! invariants that must hold and the named state updates it performs) and limits.
//!
//! Parsing is pure and strict: unknown fields are errors, every reference (a state, a role,
//! an invariant) must resolve, and errors name the field and the line. The parsed form is
//! hashed canonically into a [`ConstitutionVersion`], so comments and formatting do not
//! change a version but any change of meaning does.
//!
//! ```toml
//! [domains.settlement.actions."SETTLEMENT.PAYOUT_REQUESTED"]
//! from = ["funded", "paid"]          # lifecycle states the subject may be in
//! to = "payout_requested"            # the state it moves to
//! roles = ["treasurer"]              # the authorization matrix row
//! requires = { amount = "int", beneficiary = "string" }
//! invariants = ["amount_positive", "payout_within_balance"]
//! updates = ["reserve_payout"]
//! ```

mod parse;
pub mod rules;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::encoding::{self, TAG_CONSTITUTION};
use crate::id::{ConstitutionVersion, PublicKey};

pub use parse::ConstitutionError;
pub use rules::{InvariantName, UpdateName};

/// The default constitution: the built-in domains settlement, kes, auction, tender,
/// execution and constitution, with the development principals of [`crate::dev`].
pub const DEFAULT_DOCUMENT: &str = include_str!("default.toml");

/// Hard ceilings that no constitution may raise its limits above. They bound what any
/// single proposal can cost every replica, whatever governance decides.
pub mod ceilings {
    /// A payload above 1 MiB is a file, not a governance record.
    pub const PAYLOAD_BYTES_MAX: u64 = 1024 * 1024;
    /// Dependencies per proposal; each is a state lookup on every replica.
    pub const DEPENDENCIES_MAX: u32 = 256;
    /// Proposals held deferred at once; each is kept in memory on every replica.
    pub const DEFERRED_MAX: u32 = 100_000;
    /// Thirty days: nothing waits longer than this for its dependencies.
    pub const DEFERRAL_EXPIRY_MS_MAX: u64 = 30 * 24 * 60 * 60 * 1000;
    /// Subject names are keys, not documents.
    pub const SUBJECT_BYTES_MAX: u32 = 1024;
    /// A constitution document is itself a payload field; keep it well under the payload ceiling.
    pub const DOCUMENT_BYTES_MAX: usize = 256 * 1024;
}

/// Limits every proposal is checked against. Rejections cite the limit by name.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Limits {
    pub payload_bytes_max: u64,
    pub dependencies_max: u32,
    pub deferred_max: u32,
    pub deferral_expiry_ms: u64,
    pub subject_bytes_max: u32,
}

/// A principal: a named public key holding roles.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Principal {
    pub name: String,
    pub roles: BTreeSet<String>,
}

/// The type a required payload field must have.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub enum FieldType {
    Any,
    Int,
    String,
    Bool,
    List,
    Map,
    /// A lowercase hex proposal id (64 characters).
    ProposalId,
    /// A lowercase hex ed25519 public key (64 characters).
    Key,
    /// A lowercase hex 32-byte hash (64 characters).
    Hash,
}

impl FieldType {
    pub const NAMES: &'static [(&'static str, FieldType)] = &[
        ("any", FieldType::Any),
        ("int", FieldType::Int),
        ("string", FieldType::String),
        ("bool", FieldType::Bool),
        ("list", FieldType::List),
        ("map", FieldType::Map),
        ("proposal_id", FieldType::ProposalId),
        ("key", FieldType::Key),
        ("hash", FieldType::Hash),
    ];

    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, t)| *t == self)
            .map(|(n, _)| *n)
            .unwrap_or("any")
    }

    pub fn from_name(name: &str) -> Option<FieldType> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
    }
}

/// One action of a domain: a lifecycle transition with its authorization and checks.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Action {
    pub from: BTreeSet<String>,
    pub to: String,
    pub roles: BTreeSet<String>,
    pub requires: BTreeMap<String, FieldType>,
    /// Checked in the declared order; the first that fails names the rejection.
    pub invariants: Vec<InvariantName>,
    /// Applied in the declared order when the transition happens.
    pub updates: Vec<UpdateName>,
    /// Distinct authorized principals that must file this action (for the same subject,
    /// while it is in a `from` state) before the transition happens. 1 for plain actions.
    pub quorum: u32,
    /// `effect = true`: an admitted proposal of this action is performed by an execution
    /// agent, which reports its outcome through consensus (an `outcome_*` update). Clients
    /// that follow a plan (`docket petition`) wait for that outcome. Left out of the
    /// canonical encoding when false, so documents without it keep their version.
    #[serde(default, skip_serializing_if = "is_false")]
    pub effect: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// A domain: a lifecycle state machine over subjects.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Domain {
    pub states: BTreeSet<String>,
    pub initial: String,
    pub actions: BTreeMap<String, Action>,
}

/// Who may read the ledger and the state through a node's API (`[access] read`). Checked
/// by every node on every read route against its active constitution; the internal routes
/// are for cluster nodes only, and `/v1/health` stays open (liveness, nothing else).
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadPolicy {
    /// Whoever reaches the API port (`read = "anyone"`, the default).
    #[default]
    Anyone,
    /// Clients presenting a certificate of the cluster CA (`read = "certificate"`); needs
    /// TLS on the API.
    Certificate,
    /// Signed reads by principals holding one of these roles (`read = "roles"`,
    /// `read_roles = [...]`).
    Roles(BTreeSet<String>),
}

impl ReadPolicy {
    pub fn is_anyone(&self) -> bool {
        *self == ReadPolicy::Anyone
    }
}

/// A parsed, validated constitution.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Constitution {
    pub name: String,
    pub limits: Limits,
    /// Role name to its description.
    pub roles: BTreeMap<String, String>,
    pub principals: BTreeMap<PublicKey, Principal>,
    pub domains: BTreeMap<String, Domain>,
    /// Left out of the canonical encoding when it is the default, so a constitution
    /// without an `[access]` section keeps the version it had before the section existed.
    #[serde(default, skip_serializing_if = "ReadPolicy::is_anyone")]
    pub reads: ReadPolicy,
}

impl Constitution {
    /// Parses and validates a TOML document.
    pub fn parse(document: &str) -> Result<Constitution, ConstitutionError> {
        parse::parse(document)
    }

    /// The default constitution (see [`DEFAULT_DOCUMENT`]).
    pub fn default_constitution() -> Constitution {
        Constitution::parse(DEFAULT_DOCUMENT).expect("invariant: the default constitution is valid")
    }

    /// BLAKE3 over the canonical encoding of the parsed form.
    pub fn version(&self) -> ConstitutionVersion {
        ConstitutionVersion(encoding::tagged_hash(TAG_CONSTITUTION, self))
    }

    pub fn principal(&self, key: &PublicKey) -> Option<&Principal> {
        self.principals.get(key)
    }

    /// The domain and action for an action name, if the action belongs to that domain.
    pub fn action(&self, domain: &str, action: &str) -> Option<&Action> {
        self.domains.get(domain)?.actions.get(action)
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests;
