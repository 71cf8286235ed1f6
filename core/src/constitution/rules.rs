//! Named invariants and named state updates, implemented here and referenced by name from
//! constitution documents.
//!
//! A constitution can choose which rules apply to which action, but it cannot invent new
//! behaviour: every rule is deterministic Rust in the core, reviewed and tested, and the
//! same on every replica. Each rule declares the payload fields it reads, and the parser
//! refuses a constitution whose action uses a rule without requiring those fields.
//!
//! Invariants only read. Updates only write, and only the subject they belong to (plus,
//! for `adopt_constitution`, the active constitution, returned as a [`StateEffect`]).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::FieldType;
use crate::code::RejectCode;
use crate::decision::Rejection;
use crate::id::{LedgerTime, ProposalId};
use crate::proposal::Proposal;
use crate::state::{ProposalStatus, State, SubjectState};
use crate::value::Value;

macro_rules! named {
    ($(#[$meta:meta])* $ty:ident { $($variant:ident = $name:literal, [$(($field:literal, $ftype:ident)),*], $doc:literal;)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
        pub enum $ty {
            $(#[doc = $doc] $variant,)+
        }

        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant,)+];

            pub fn name(self) -> &'static str {
                match self { $($ty::$variant => $name,)+ }
            }

            pub fn description(self) -> &'static str {
                match self { $($ty::$variant => $doc,)+ }
            }

            pub fn from_name(name: &str) -> Option<$ty> {
                match name { $($name => Some($ty::$variant),)+ _ => None }
            }

            /// Payload fields this rule reads, with the type it needs them to have.
            pub fn reads(self) -> &'static [(&'static str, FieldType)] {
                match self { $($ty::$variant => &[$(($field, FieldType::$ftype)),*],)+ }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

named!(
    /// A named domain invariant: a pure check over the proposal, its subject and the state.
    InvariantName {
        AmountPositive = "amount_positive", [("amount", Int)],
            "payload.amount is greater than zero";
        CurrencyConsistent = "currency_consistent", [("currency", String)],
            "payload.currency equals the currency the subject was first funded in";
        PayoutWithinBalance = "payout_within_balance", [("amount", Int)],
            "payload.amount does not exceed the subject's confirmed balance minus what is reserved";
        ReportsOnDependency = "reports_on_dependency", [("reports_on", ProposalId)],
            "payload.reports_on is one of the proposal's dependencies and that proposal was admitted";
        ReportsOnPendingPayout = "reports_on_pending_payout", [("reports_on", ProposalId)],
            "payload.reports_on is the subject's pending payout request";
        SubjectIsReportedProposal = "subject_is_reported_proposal", [("reports_on", ProposalId)],
            "the subject is the id of the proposal being reported on";
        BidAboveHighest = "bid_above_highest", [("amount", Int)],
            "payload.amount exceeds the highest bid so far and is at least the reserve";
        AwardToHighestBidder = "award_to_highest_bidder", [("winner", Key)],
            "payload.winner is the author of the highest bid";
        DeadlineInFuture = "deadline_in_future", [("deadline_ms", Int)],
            "payload.deadline_ms is later than the ledger time";
        BeforeDeadline = "before_deadline", [],
            "the ledger time is before the subject's deadline";
        AfterDeadline = "after_deadline", [],
            "the ledger time is at or after the subject's deadline";
        WinnerSubmitted = "winner_submitted", [("winner", Key)],
            "payload.winner filed a submission for the subject";
        ParentIsActive = "parent_is_active", [("parent", Any)],
            "payload.parent is the subject's active version (null when none is active yet)";
        VersionIsNew = "version_is_new", [("version", String)],
            "payload.version was never proposed before for the subject (versions are immutable)";
        MatchesPendingVersion = "matches_pending_version", [("version", String), ("version_hash", Hash)],
            "payload.version and payload.version_hash are the subject's pending version";
        AmendmentValid = "amendment_valid", [("document", String), ("parent", Hash)],
            "payload.document is a valid constitution and payload.parent is the active version";
        AmendmentCurrent = "amendment_current", [],
            "the amendment's parent is still the active constitution version";
        SubjectIsPath = "subject_is_path", [("path", String)],
            "the subject is payload.path (one subject per file)";
        PathIsRelative = "path_is_relative", [("path", String)],
            "payload.path is relative and confined: '/'-separated names, none empty, '.' or '..', no backslash or control character";
    }
);

named!(
    /// A named state update, applied to the subject when its transition happens.
    UpdateName {
        CreditBalance = "credit_balance", [("amount", Int), ("currency", String)],
            "adds payload.amount to the subject's balance and records its currency";
        ReservePayout = "reserve_payout", [("amount", Int)],
            "reserves payload.amount of the balance for this payout request";
        SettlePayout = "settle_payout", [],
            "debits the reserved amount from the balance and clears the reservation";
        ReleasePayout = "release_payout", [],
            "clears the reservation without debiting the balance";
        OpenAuction = "open_auction", [("reserve", Int)],
            "records the auction's reserve price";
        RecordBid = "record_bid", [("amount", Int)],
            "records payload.amount and the author as the highest bid";
        RecordWinner = "record_winner", [("winner", Key)],
            "records payload.winner as the subject's winner";
        SetDeadline = "set_deadline", [("deadline_ms", Int)],
            "records payload.deadline_ms as the subject's deadline";
        RecordSubmission = "record_submission", [],
            "records the author as having submitted";
        RecordKesProposal = "record_kes_proposal",
            [("version", String), ("version_hash", Hash), ("commitments", List), ("parent", Any)],
            "records the proposed version, its hash, commitments and parent, immutably";
        ActivateKesVersion = "activate_kes_version", [],
            "makes the pending version the active one";
        RecordAmendment = "record_amendment", [("document", String), ("parent", Hash)],
            "records the amendment's document and the version it amends";
        AdoptConstitution = "adopt_constitution", [],
            "makes the recorded amendment the active constitution";
        RecordOutcome = "record_outcome", [("reports_on", ProposalId), ("outcome", String)],
            "records the reported outcome and the proposal it reports on";
        RecordCosigner = "record_cosigner", [("node", Int), ("cosigner", Key)],
            "records payload.node and payload.cosigner, the key that node cosigns checkpoints with";
        RecordFileWrite = "record_file_write", [("path", String), ("contents", String)],
            "records payload.path, the BLAKE3 hash of payload.contents and its length in bytes";
        OutcomeSucceeded = "outcome_succeeded", [("reports_on", ProposalId)],
            "records that the effect of payload.reports_on succeeded: outcome dependencies on it are met";
        OutcomeFailed = "outcome_failed", [("reports_on", ProposalId)],
            "records that the effect of payload.reports_on failed: outcome dependencies on it are rejected (DEPENDENCY_FAILED)";
        OutcomeReported = "outcome_reported", [("reports_on", ProposalId), ("outcome", String)],
            "records the effect of payload.reports_on as succeeded when payload.outcome is \"success\", as failed otherwise";
    }
);

/// What an invariant sees: the proposal, its subject as it is now, and the whole state.
#[derive(Debug)]
pub struct RuleContext<'a> {
    pub proposal: &'a Proposal,
    pub id: &'a ProposalId,
    pub subject: &'a SubjectState,
    pub state: &'a State,
    pub time: LedgerTime,
}

/// A change beyond the subject that an update asks the state to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateEffect {
    AdoptConstitution {
        document: String,
    },
    /// The outcome of an effect is known: `reports_on`'s effect succeeded or not. The
    /// state records it under [`ProposalId::outcome_of`] so outcome dependencies resolve.
    Outcome {
        reports_on: ProposalId,
        succeeded: bool,
    },
}

/// How the details of the `CONSTITUTION` rejections of `amendment_valid` and
/// `amendment_current` begin. Their details do not start with the invariant's name (they
/// were recorded so before explanations existed, and recorded details never change), so
/// [`crate::explain`](mod@crate::explain) reads the invariant back from these.
pub(crate) const AMENDMENT_PARENT: &str = "amendment parent";
pub(crate) const AMENDED_DOCUMENT_INVALID: &str = "amended document is invalid";
pub(crate) const AMENDMENT_STALE: &str = "amendment is stale";

/// Every `INVARIANT` rejection of an invariant is built here: its detail begins with the
/// invariant's name and `": "` ([`crate::explain`](mod@crate::explain) reads the name back).
fn invariant(name: InvariantName, detail: impl Into<String>) -> Rejection {
    Rejection::new(
        RejectCode::Invariant,
        format!("{}: {}", name.name(), detail.into()),
    )
}

/// Payload field accessors. The schema check has already run, so a wrong type here is a
/// bug in the rule table (a rule reading a field it did not declare), hence `expect`.
fn int(p: &Proposal, field: &str) -> i64 {
    p.payload
        .get(field)
        .and_then(Value::as_int)
        .expect("invariant: schema checked int field")
}

fn text<'p>(p: &'p Proposal, field: &str) -> &'p str {
    p.payload
        .get(field)
        .and_then(Value::as_str)
        .expect("invariant: schema checked string field")
}

fn field_int(subject: &SubjectState, field: &str) -> i64 {
    subject
        .fields
        .get(field)
        .and_then(Value::as_int)
        .unwrap_or(0)
}

impl InvariantName {
    pub fn check(self, cx: &RuleContext) -> Result<(), Rejection> {
        let p = cx.proposal;
        let s = cx.subject;
        match self {
            InvariantName::AmountPositive => {
                let amount = int(p, "amount");
                if amount <= 0 {
                    return Err(invariant(self, format!("amount {amount} is not positive")));
                }
            }
            InvariantName::CurrencyConsistent => {
                let currency = text(p, "currency");
                if let Some(Value::Str(funded)) = s.fields.get("currency") {
                    if funded != currency {
                        return Err(invariant(
                            self,
                            format!("currency {currency:?} differs from the subject's {funded:?}"),
                        ));
                    }
                }
            }
            InvariantName::PayoutWithinBalance => {
                let amount = int(p, "amount");
                let available = field_int(s, "balance") - field_int(s, "reserved");
                if amount > available {
                    return Err(invariant(
                        self,
                        format!("payout {amount} exceeds available balance {available}"),
                    ));
                }
            }
            InvariantName::ReportsOnDependency => {
                let reports_on: ProposalId = text(p, "reports_on")
                    .parse()
                    .expect("invariant: schema checked proposal_id");
                if p.dependencies.binary_search(&reports_on).is_err() {
                    return Err(invariant(
                        self,
                        format!(
                            "reports_on {} is not among the dependencies",
                            reports_on.short()
                        ),
                    ));
                }
                match cx.state.proposal_status(&reports_on) {
                    Some(ProposalStatus::Admitted) => {}
                    other => {
                        return Err(invariant(
                            self,
                            format!(
                                "reported proposal {} is {other:?}, not admitted",
                                reports_on.short()
                            ),
                        ))
                    }
                }
            }
            InvariantName::ReportsOnPendingPayout => {
                let reports_on = text(p, "reports_on");
                match s.fields.get("pending_payout") {
                    Some(Value::Str(pending)) if pending == reports_on => {}
                    _ => {
                        return Err(invariant(
                            self,
                            "reports_on is not the subject's pending payout request",
                        ))
                    }
                }
            }
            InvariantName::SubjectIsPath => {
                if text(p, "path") != p.subject {
                    return Err(invariant(self, "subject differs from payload.path"));
                }
            }
            InvariantName::PathIsRelative => {
                if let Err(why) = check_relative_path(text(p, "path")) {
                    return Err(invariant(self, why));
                }
            }
            InvariantName::SubjectIsReportedProposal => {
                if text(p, "reports_on") != p.subject {
                    return Err(invariant(self, "subject differs from reports_on"));
                }
            }
            InvariantName::BidAboveHighest => {
                let amount = int(p, "amount");
                let highest = field_int(s, "highest_bid");
                let reserve = field_int(s, "reserve");
                if amount <= highest {
                    return Err(invariant(
                        self,
                        format!("bid {amount} does not exceed {highest}"),
                    ));
                }
                if amount < reserve {
                    return Err(invariant(
                        self,
                        format!("bid {amount} is below reserve {reserve}"),
                    ));
                }
            }
            InvariantName::AwardToHighestBidder => {
                let winner = text(p, "winner");
                match s.fields.get("highest_bidder") {
                    Some(Value::Str(bidder)) if bidder == winner => {}
                    Some(Value::Str(_)) => {
                        return Err(invariant(self, "winner is not the highest bidder"))
                    }
                    _ => return Err(invariant(self, "there is no bid to award")),
                }
            }
            InvariantName::DeadlineInFuture => {
                let deadline = int(p, "deadline_ms");
                if deadline <= 0 || (deadline as u64) <= cx.time.0 {
                    return Err(invariant(
                        self,
                        format!("deadline {deadline} is not after ledger time {}", cx.time.0),
                    ));
                }
            }
            InvariantName::BeforeDeadline => {
                let deadline = field_int(s, "deadline_ms");
                if cx.time.0 >= deadline.max(0) as u64 {
                    return Err(invariant(
                        self,
                        format!(
                            "ledger time {} is not before deadline {deadline}",
                            cx.time.0
                        ),
                    ));
                }
            }
            InvariantName::AfterDeadline => {
                let deadline = field_int(s, "deadline_ms");
                if cx.time.0 < deadline.max(0) as u64 {
                    return Err(invariant(
                        self,
                        format!("ledger time {} is before deadline {deadline}", cx.time.0),
                    ));
                }
            }
            InvariantName::WinnerSubmitted => {
                let winner = text(p, "winner");
                let submitted = s
                    .fields
                    .get("submitters")
                    .and_then(|v| v.get(winner))
                    .is_some();
                if !submitted {
                    return Err(invariant(self, "winner filed no submission"));
                }
            }
            InvariantName::ParentIsActive => {
                let parent = p
                    .payload
                    .get("parent")
                    .expect("invariant: schema checked parent");
                let active = s.fields.get("active_version").unwrap_or(&Value::Null);
                if parent != active {
                    return Err(invariant(
                        self,
                        format!("parent {parent} is not the active version {active}"),
                    ));
                }
            }
            InvariantName::VersionIsNew => {
                let version = text(p, "version");
                if s.fields
                    .get("versions")
                    .and_then(|v| v.get(version))
                    .is_some()
                {
                    return Err(invariant(
                        self,
                        format!("version {version:?} was already proposed and is immutable"),
                    ));
                }
            }
            InvariantName::MatchesPendingVersion => {
                let version = p.payload.get("version");
                let hash = p.payload.get("version_hash");
                if version != s.fields.get("pending_version")
                    || hash != s.fields.get("pending_version_hash")
                {
                    return Err(invariant(
                        self,
                        "version or version_hash differs from the pending version",
                    ));
                }
            }
            InvariantName::AmendmentValid => {
                let document = text(p, "document");
                let parent = text(p, "parent");
                let active = cx.state.constitution_version().to_hex();
                if parent != active {
                    return Err(Rejection::new(
                        RejectCode::Constitution,
                        format!("{AMENDMENT_PARENT} {parent} is not the active version {active}"),
                    ));
                }
                if let Err(error) = super::Constitution::parse(document) {
                    return Err(Rejection::new(
                        RejectCode::Constitution,
                        format!("{AMENDED_DOCUMENT_INVALID}: {error}"),
                    ));
                }
            }
            InvariantName::AmendmentCurrent => {
                let active = cx.state.constitution_version().to_hex();
                match s.fields.get("parent") {
                    Some(Value::Str(parent)) if *parent == active => {}
                    _ => {
                        return Err(Rejection::new(
                            RejectCode::Constitution,
                            format!("{AMENDMENT_STALE}: the active version is now {active}"),
                        ))
                    }
                }
            }
        }
        Ok(())
    }
}

impl UpdateName {
    /// Applies the update to `subject`. Adjudication runs every update on a copy of the
    /// subject before admitting (so an update that cannot apply, such as a balance that
    /// would overflow, is a recorded rejection); applying an admitted entry then cannot fail.
    pub fn apply(
        self,
        proposal: &Proposal,
        id: &ProposalId,
        subject: &mut SubjectState,
    ) -> Result<Option<StateEffect>, Rejection> {
        let fields = &mut subject.fields;
        let set = |fields: &mut BTreeMap<String, Value>, k: &str, v: Value| {
            fields.insert(k.to_owned(), v);
        };
        match self {
            UpdateName::CreditBalance => {
                let balance = field_int_map(fields, "balance")
                    .checked_add(int(proposal, "amount"))
                    .ok_or_else(|| {
                        Rejection::new(
                            RejectCode::Invariant,
                            "credit_balance: balance would overflow",
                        )
                    })?;
                set(fields, "balance", Value::Int(balance));
                set(fields, "currency", text(proposal, "currency").into());
            }
            UpdateName::ReservePayout => {
                set(fields, "reserved", Value::Int(int(proposal, "amount")));
                set(fields, "pending_payout", id.to_hex().into());
            }
            UpdateName::SettlePayout => {
                let reserved = field_int_map(fields, "reserved");
                let balance = field_int_map(fields, "balance").saturating_sub(reserved);
                let paid = field_int_map(fields, "paid_total").saturating_add(reserved);
                set(fields, "balance", Value::Int(balance));
                set(fields, "paid_total", Value::Int(paid));
                fields.remove("reserved");
                fields.remove("pending_payout");
            }
            UpdateName::ReleasePayout => {
                fields.remove("reserved");
                fields.remove("pending_payout");
            }
            UpdateName::OpenAuction => {
                set(fields, "reserve", Value::Int(int(proposal, "reserve")));
            }
            UpdateName::RecordBid => {
                set(fields, "highest_bid", Value::Int(int(proposal, "amount")));
                set(fields, "highest_bidder", proposal.author.to_hex().into());
            }
            UpdateName::RecordWinner => {
                set(fields, "winner", text(proposal, "winner").into());
            }
            UpdateName::SetDeadline => {
                set(
                    fields,
                    "deadline_ms",
                    Value::Int(int(proposal, "deadline_ms")),
                );
            }
            UpdateName::RecordSubmission => {
                let entry = fields
                    .entry("submitters".to_owned())
                    .or_insert_with(|| Value::Map(BTreeMap::new()));
                if let Value::Map(submitters) = entry {
                    let count = submitters
                        .get(&proposal.author.to_hex())
                        .and_then(Value::as_int)
                        .unwrap_or(0);
                    submitters.insert(
                        proposal.author.to_hex(),
                        Value::Int(count.saturating_add(1)),
                    );
                }
            }
            UpdateName::RecordKesProposal => {
                let payload = &proposal.payload;
                let version = text(proposal, "version").to_owned();
                let record = Value::map([
                    (
                        "version_hash",
                        payload.get("version_hash").cloned().unwrap_or_default(),
                    ),
                    (
                        "commitments",
                        payload.get("commitments").cloned().unwrap_or_default(),
                    ),
                    ("parent", payload.get("parent").cloned().unwrap_or_default()),
                    ("proposal", Value::Str(id.to_hex())),
                ]);
                let versions = fields
                    .entry("versions".to_owned())
                    .or_insert_with(|| Value::Map(BTreeMap::new()));
                if let Value::Map(versions) = versions {
                    versions.insert(version.clone(), record);
                }
                set(fields, "pending_version", Value::Str(version));
                set(
                    fields,
                    "pending_version_hash",
                    payload.get("version_hash").cloned().unwrap_or_default(),
                );
            }
            UpdateName::ActivateKesVersion => {
                if let Some(pending) = fields.remove("pending_version") {
                    set(fields, "active_version", pending);
                }
                fields.remove("pending_version_hash");
            }
            UpdateName::RecordAmendment => {
                set(fields, "document", text(proposal, "document").into());
                set(fields, "parent", text(proposal, "parent").into());
            }
            UpdateName::AdoptConstitution => {
                let document = fields
                    .get("document")
                    .and_then(Value::as_str)
                    .expect("invariant: adopt_constitution follows record_amendment")
                    .to_owned();
                return Ok(Some(StateEffect::AdoptConstitution { document }));
            }
            UpdateName::RecordOutcome => {
                set(fields, "reports_on", text(proposal, "reports_on").into());
                set(fields, "outcome", text(proposal, "outcome").into());
            }
            UpdateName::RecordCosigner => {
                set(fields, "node", Value::Int(int(proposal, "node")));
                set(fields, "cosigner", text(proposal, "cosigner").into());
            }
            UpdateName::RecordFileWrite => {
                let contents = text(proposal, "contents");
                set(fields, "path", text(proposal, "path").into());
                set(
                    fields,
                    "contents_hash",
                    blake3::hash(contents.as_bytes())
                        .to_hex()
                        .to_string()
                        .into(),
                );
                set(
                    fields,
                    "bytes",
                    Value::Int(i64::try_from(contents.len()).unwrap_or(i64::MAX)),
                );
                set(fields, "last_write", id.to_hex().into());
            }
            UpdateName::OutcomeSucceeded | UpdateName::OutcomeFailed => {
                return Ok(Some(StateEffect::Outcome {
                    reports_on: reports_on(proposal),
                    succeeded: self == UpdateName::OutcomeSucceeded,
                }));
            }
            UpdateName::OutcomeReported => {
                return Ok(Some(StateEffect::Outcome {
                    reports_on: reports_on(proposal),
                    succeeded: text(proposal, "outcome") == OUTCOME_SUCCESS,
                }));
            }
        }
        Ok(None)
    }
}

/// The `outcome` an `EXECUTION.OUTCOME` record carries when its effect succeeded.
pub const OUTCOME_SUCCESS: &str = "success";

fn reports_on(p: &Proposal) -> ProposalId {
    text(p, "reports_on")
        .parse()
        .expect("invariant: schema checked proposal_id")
}

/// Bytes of one path allowed by `path_is_relative`.
pub const PATH_BYTES_MAX: usize = 1024;

/// The rule of `path_is_relative`: a relative path of '/'-separated names, none empty, `.`
/// or `..`, with no backslash (a separator elsewhere) and no control character. The
/// execution agent's sandbox checks confinement again where the file is written
/// (symlinks included); this rule makes an escaping path a recorded rejection.
pub fn check_relative_path(path: &str) -> Result<(), String> {
    if path.is_empty() || path.len() > PATH_BYTES_MAX {
        return Err(format!(
            "path is {} bytes, allowed 1 to {PATH_BYTES_MAX}",
            path.len()
        ));
    }
    if path.starts_with('/') {
        return Err(format!("path {path:?} is absolute"));
    }
    if path.contains('\\') || path.chars().any(char::is_control) {
        return Err(format!(
            "path {path:?} holds a backslash or a control character"
        ));
    }
    for name in path.split('/') {
        if name.is_empty() || name == "." || name == ".." {
            return Err(format!("path {path:?} has an empty, '.' or '..' component"));
        }
    }
    Ok(())
}

fn field_int_map(fields: &BTreeMap<String, Value>, field: &str) -> i64 {
    fields.get(field).and_then(Value::as_int).unwrap_or(0)
}
