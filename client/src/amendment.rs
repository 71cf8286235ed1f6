//! An amendment's dry run: what a candidate constitution would have decided about the
//! proposals already recorded, computed here, on the client, with the core. Nothing is
//! written anywhere.
//!
//! [`AmendmentDryRun`] takes the ledger one entry at a time (so it can stream page by page):
//! entries `[0, from)` are replayed into a scratch state (trusted replay, in memory); at
//! `from` a copy of it is made whose active constitution is the candidate
//! ([`State::with_constitution_for_dry_run`]); then every proposal recorded as submitted at
//! `from` or later is submitted to the copy at its recorded time (and every recorded expiry
//! is a tick of the copy at its time, as an audit re-derives it). Each such proposal's final
//! decision in the copy is compared with its final decision in the ledger; the ones that
//! differ are [`Change`]s, grouped by the rule that decides and the two decisions.
//!
//! Every entry read is checked against the hash chain (and each proposal against its id)
//! before it is used.
//!
//! Memory: the replayed state and the copy (O(state)), and one decision per proposal
//! submitted from `from` on. [`dry_run_amendment`] reads the ledger in pages and refuses a
//! ledger longer than `entries_max` before reading it.

use std::collections::BTreeMap;

use anyhow::{bail, Context as _};
use docket_core::explain::step_of;
use docket_core::ledger::ChainVerifier;
use docket_core::{
    AccessDecision, Cause, ConstitutionVersion, Decision, LedgerEntry, LedgerIndex, ProposalId,
    State,
};
use serde::{Deserialize, Serialize};

use crate::Client;

/// Ledger entries a dry run reads by default (`--entries-max`). Replay keeps the state in
/// memory on the client; a million entries is minutes of replay and well within a laptop.
pub const ENTRIES_MAX_DEFAULT: u64 = 1_000_000;

/// Entries asked for per page.
pub const PAGE_ENTRIES: u64 = 1_000;

/// Ids listed per group in a report (the JSON has every change).
pub const GROUP_IDS_SHOWN: usize = 3;

/// One proposal the candidate would decide otherwise.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub id: ProposalId,
    /// The entry that recorded its submission.
    pub submitted_at: LedgerIndex,
    pub domain: String,
    pub action: String,
    pub subject: String,
    /// Its final decision in the ledger (a deferral if it is still deferred).
    pub recorded: Decision,
    /// Its final decision under the candidate.
    pub predicted: Decision,
    /// The rule behind the difference: the rejecting side's named invariant or update, else
    /// its access decision's rule.
    pub rule: String,
}

/// Changes with the same rule and the same two decisions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub rule: String,
    /// `ADMIT`, `DEFER` or a rejection code.
    pub recorded: String,
    pub predicted: String,
    pub count: u64,
    /// The first [`GROUP_IDS_SHOWN`] ids, in ledger order.
    pub ids: Vec<ProposalId>,
}

/// What a dry run found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub candidate_version: ConstitutionVersion,
    /// The first entry re-adjudicated.
    pub from: LedgerIndex,
    /// Entries read.
    pub entries: u64,
    /// Proposals re-submitted to the copy.
    pub resubmitted: u64,
    /// Every change, in ledger order.
    pub changed: Vec<Change>,
    /// The changes by (rule, recorded, predicted), largest first.
    pub groups: Vec<Group>,
}

/// A proposal submitted at `from` or later, with what the ledger and the copy decided.
#[derive(Debug)]
struct Tracked {
    submitted_at: LedgerIndex,
    domain: String,
    action: String,
    subject: String,
    recorded: Option<(Decision, AccessDecision)>,
    predicted: Option<(Decision, AccessDecision)>,
}

/// The dry run, fed one entry at a time in ledger order.
#[derive(Debug)]
pub struct AmendmentDryRun {
    /// The hash chain and ids of the entries read: a dry run reasons about the ledger the
    /// node actually holds, not a page it made up.
    chain: ChainVerifier,
    document: String,
    from: LedgerIndex,
    /// The ledger replayed up to `from` (then left as it is).
    replayed: Option<State>,
    /// The copy under the candidate, from `from` on.
    copy: Option<State>,
    tracked: BTreeMap<ProposalId, Tracked>,
    /// Ids in the order their submission was recorded.
    order: Vec<ProposalId>,
    entries: u64,
    candidate_version: ConstitutionVersion,
}

impl AmendmentDryRun {
    /// A dry run of `document` re-adjudicating from entry `from` (at least 1: genesis is
    /// never re-adjudicated).
    pub fn new(document: &str, from: u64) -> anyhow::Result<AmendmentDryRun> {
        let candidate = docket_core::Constitution::parse(document).map_err(|error| {
            anyhow::anyhow!("the candidate is not a valid constitution: {error}")
        })?;
        Ok(AmendmentDryRun {
            chain: ChainVerifier::from_genesis(),
            document: document.to_owned(),
            from: LedgerIndex(from.max(1)),
            replayed: None,
            copy: None,
            tracked: BTreeMap::new(),
            order: Vec::new(),
            entries: 0,
            candidate_version: candidate.version(),
        })
    }

    /// The next entry of the ledger.
    pub fn push(&mut self, entry: &LedgerEntry) -> anyhow::Result<()> {
        if entry.index.0 != self.entries {
            bail!(
                "expected entry #{}, got #{}: entries must come in ledger order",
                self.entries,
                entry.index
            );
        }
        self.chain.push(entry, true).with_context(|| {
            format!(
                "entry #{} does not follow the ledger read so far",
                entry.index
            )
        })?;
        self.entries += 1;
        let Some(replayed) = self.replayed.as_mut() else {
            self.replayed = Some(
                State::from_genesis_entry(entry)
                    .map_err(|e| anyhow::anyhow!("entry #0 is not a genesis entry: {e}"))?,
            );
            return Ok(());
        };
        if entry.index < self.from {
            return replayed
                .apply(entry)
                .with_context(|| format!("cannot replay entry #{}", entry.index));
        }
        if self.copy.is_none() {
            let copy = replayed
                .with_constitution_for_dry_run(&self.document)
                .map_err(|e| anyhow::anyhow!("the candidate is not a valid constitution: {e}"))?;
            self.copy = Some(copy);
        }
        let record = entry
            .decision_record()
            .with_context(|| format!("entry #{} holds no decision", entry.index))?;
        if record.cause == Cause::Submitted && !self.tracked.contains_key(&record.id) {
            let p = &record.proposal.proposal;
            self.tracked.insert(
                record.id,
                Tracked {
                    submitted_at: entry.index,
                    domain: p.domain.clone(),
                    action: p.action.clone(),
                    subject: p.subject.clone(),
                    recorded: None,
                    predicted: None,
                },
            );
            self.order.push(record.id);
        }
        if let Some(tracked) = self.tracked.get_mut(&record.id) {
            tracked.recorded = Some((record.decision.clone(), record.access.clone()));
        }
        let copy = self
            .copy
            .as_mut()
            .expect("invariant: the copy is made at `from`");
        let derived = match record.cause {
            Cause::Submitted => copy
                .submit(record.proposal.clone(), entry.time)
                .entries()
                .to_vec(),
            Cause::Expired => copy.tick(entry.time),
            // The copy releases its own waves when it records what they wait on.
            Cause::Released { .. } => Vec::new(),
        };
        for derived in &derived {
            let Some(d) = derived.decision_record() else {
                continue;
            };
            if let Some(tracked) = self.tracked.get_mut(&d.id) {
                tracked.predicted = Some((d.decision.clone(), d.access.clone()));
            }
        }
        Ok(())
    }

    /// The report, once every entry has been pushed.
    pub fn finish(self) -> Report {
        let mut changed = Vec::new();
        for id in &self.order {
            let tracked = &self.tracked[id];
            let (Some((recorded, recorded_access)), Some((predicted, predicted_access))) =
                (&tracked.recorded, &tracked.predicted)
            else {
                continue;
            };
            if recorded.label() == predicted.label() {
                continue;
            }
            let rule = match (predicted, recorded) {
                (Decision::Reject(r), _) => rule_of(predicted_access, r),
                (_, Decision::Reject(r)) => rule_of(recorded_access, r),
                _ => predicted_access.rule.clone(),
            };
            changed.push(Change {
                id: *id,
                submitted_at: tracked.submitted_at,
                domain: tracked.domain.clone(),
                action: tracked.action.clone(),
                subject: tracked.subject.clone(),
                recorded: recorded.clone(),
                predicted: predicted.clone(),
                rule,
            });
        }
        let mut groups: BTreeMap<(String, String, String), Group> = BTreeMap::new();
        for change in &changed {
            let key = (
                change.rule.clone(),
                change.recorded.label().to_owned(),
                change.predicted.label().to_owned(),
            );
            let group = groups.entry(key).or_insert_with(|| Group {
                rule: change.rule.clone(),
                recorded: change.recorded.label().to_owned(),
                predicted: change.predicted.label().to_owned(),
                count: 0,
                ids: Vec::new(),
            });
            group.count += 1;
            if group.ids.len() < GROUP_IDS_SHOWN {
                group.ids.push(change.id);
            }
        }
        let mut groups: Vec<Group> = groups.into_values().collect();
        groups.sort_by_key(|g| std::cmp::Reverse(g.count));
        Report {
            candidate_version: self.candidate_version,
            from: self.from,
            entries: self.entries,
            resubmitted: self.order.len() as u64,
            changed,
            groups,
        }
    }
}

/// The rule a rejection names: its invariant or update, else its access decision's rule.
fn rule_of(access: &AccessDecision, rejection: &docket_core::Rejection) -> String {
    match step_of(access, rejection).1 {
        Some(docket_core::adjudicate::NamedRule::Invariant(i)) => i.name().to_owned(),
        Some(docket_core::adjudicate::NamedRule::Update(u)) => u.name().to_owned(),
        None => access.rule.clone(),
    }
}

/// Reads the ledger at `client` page by page into an [`AmendmentDryRun`] of `document` from
/// `from`. Refuses, before replaying anything, a ledger longer than `entries_max`.
pub async fn dry_run_amendment(
    client: &Client,
    document: &str,
    from: u64,
    entries_max: u64,
) -> anyhow::Result<Report> {
    let mut run = AmendmentDryRun::new(document, from)?;
    let mut next = 0u64;
    loop {
        let page = client
            .ledger(next, PAGE_ENTRIES)
            .await
            .with_context(|| format!("cannot read the ledger from #{next}"))?;
        if page.length > entries_max {
            bail!(
                "the ledger holds {} entries, more than --entries-max {entries_max}: a dry run \
                 replays every entry in memory; raise --entries-max to read them all",
                page.length
            );
        }
        if from >= page.length {
            bail!(
                "--from {from} is past the ledger's end (it holds {} entries)",
                page.length
            );
        }
        for entry in &page.entries {
            run.push(entry)?;
        }
        next += page.entries.len() as u64;
        if page.next.is_none() || page.entries.is_empty() {
            break;
        }
    }
    Ok(run.finish())
}

#[cfg(test)]
mod tests {
    use docket_core::constitution::DEFAULT_DOCUMENT;
    use docket_core::dev::Proposer;
    use docket_core::{LedgerId, LedgerTime, RejectCode, Value};

    use super::*;

    #[test]
    fn a_removed_role_changes_exactly_that_roles_proposals() {
        let ledger_id = LedgerId::new("amend").expect("valid");
        let (mut state, genesis) =
            State::genesis(ledger_id.clone(), DEFAULT_DOCUMENT, LedgerTime(1_000))
                .expect("genesis");
        let mut p = Proposer::new(ledger_id, 0);
        let mut ledger = vec![genesis];
        let deposit = |p: &mut Proposer, who: &str, subject: &str| {
            p.make(
                who,
                "SETTLEMENT.DEPOSIT_CONFIRMED",
                subject,
                Value::map([("amount", Value::Int(10)), ("currency", "EUR".into())]),
                vec![],
            )
        };
        let by_bob = deposit(&mut p, "bob", "s-bob");
        let by_alice = deposit(&mut p, "alice", "s-alice");
        let early_bob = deposit(&mut p, "bob", "s-early");
        for (i, signed) in [early_bob.clone(), by_bob.clone(), by_alice]
            .into_iter()
            .enumerate()
        {
            ledger.extend(
                state
                    .submit(signed, LedgerTime(2_000 + i as u64))
                    .entries()
                    .to_vec(),
            );
        }
        let candidate = DEFAULT_DOCUMENT.replace(
            "[principals.bob]\nkey = \"f01e7581b61a2833dcb50a47477344af1feb76bece5f8ee0b85d0bc059b481e5\"\nroles = [\"treasurer\"]",
            "[principals.bob]\nkey = \"f01e7581b61a2833dcb50a47477344af1feb76bece5f8ee0b85d0bc059b481e5\"\nroles = []",
        );
        assert_ne!(candidate, DEFAULT_DOCUMENT);
        // From entry 2: the early deposit (entry 1) is replayed, not re-adjudicated.
        let mut run = AmendmentDryRun::new(&candidate, 2).expect("valid candidate");
        for entry in &ledger {
            run.push(entry).expect("pushes");
        }
        let report = run.finish();
        assert_eq!(report.resubmitted, 2);
        assert_eq!(report.changed.len(), 1, "{report:?}");
        let change = &report.changed[0];
        assert_eq!(change.id, by_bob.id());
        assert_eq!(change.recorded, Decision::Admit);
        assert_eq!(change.predicted.code(), Some(RejectCode::Unauthorized));
        assert!(change
            .rule
            .starts_with("settlement/SETTLEMENT.DEPOSIT_CONFIRMED"));
        assert_eq!(report.groups.len(), 1);
        assert_eq!(report.groups[0].count, 1);
        assert_eq!(report.groups[0].predicted, "UNAUTHORIZED");

        // An edited entry is refused, not reasoned about.
        let mut tampered = ledger.clone();
        tampered[2].time.0 += 1;
        let mut run = AmendmentDryRun::new(&candidate, 2).expect("valid candidate");
        let error = tampered
            .iter()
            .try_for_each(|entry| run.push(entry))
            .expect_err("a broken chain");
        assert!(format!("{error:#}").contains("entry #2"), "{error:#}");
    }
}
