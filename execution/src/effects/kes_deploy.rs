//! KES deployment: the sandboxed file write (the seeds' `WriteFile path contents`) for a
//! ratified KES version.
//!
//! ## Which entry deploys
//!
//! `KES.VERSION_RATIFIED` is a quorum action: every governor's approval is an admitted
//! entry, and only the one that completes the quorum moves the subject to `active`. The
//! agent must react to that entry and to no other, and every leader — whenever it looks,
//! with whatever journal — must pick the same one. The rule, from the ledger and the
//! committed state only:
//!
//! 1. If the subject's `pending_version` is still this version, its quorum has not
//!    completed yet, so this entry did not complete it: skip.
//! 2. Otherwise the version was activated (under the default constitution a proposed
//!    version leaves `pending` only by ratification). Count the admitted
//!    `KES.VERSION_RATIFIED` entries for this subject and version from the entry that
//!    proposed it (its index is in state: `versions.<v>.proposal`) up to and including this
//!    entry. The core admits each principal once per quorum (`ALREADY_APPROVED`), so the
//!    count is the number of distinct approvals so far; the entry whose count equals the
//!    action's quorum is the one that completed it.
//!
//! The quorum is read from the active constitution; an amendment that changed it between
//! the approvals and the agent's look would mislead the count (a known limit). The scan is
//! bounded by [`QUORUM_SCAN_ENTRIES_MAX`]; beyond it the effect is refused, with evidence.
//!
//! ## The file
//!
//! `<kes subject>/<version>.json` in the sandbox, holding canonical JSON (sorted keys):
//! format, ledger id, subject, version, version hash, commitments, parent, the proposing
//! and the ratifying proposal ids and the ratifying entry's index. It depends on the ledger
//! only, so every leader writes the same bytes and a rewrite is harmless. Verification
//! reads the file back and compares BLAKE3 content hashes.

use std::path::Path;

use docket_core::{Decision, LedgerIndex, ProposalId, Value};

use crate::config::{EffectLimits, KesDeployConfig, KES_TRIGGER};
use crate::effect::{
    Effect, EffectFuture, Failed, Performed, Plan, PlanContext, Reporting, Request, Target,
    Trigger, Verified,
};
use crate::evidence::content_hash;
use crate::host::LedgerView;
use crate::sandbox::{Sandbox, SandboxError};

/// Entries scanned to count a version's approvals. Approvals normally arrive within
/// minutes of the proposal; a million entries later the count is refused, not guessed.
pub const QUORUM_SCAN_ENTRIES_MAX: u64 = 1_000_000;
/// Entries read per page while counting.
pub const QUORUM_SCAN_PAGE_ENTRIES: u64 = 1_000;
/// Format tag inside deployment files.
pub const DEPLOYMENT_FORMAT: &str = "docket-kes-deployment/v1";

/// The KES deployment effect.
#[derive(Debug)]
pub struct KesDeployEffect {
    sandbox: Sandbox,
    limits: EffectLimits,
}

impl KesDeployEffect {
    pub const NAME: &'static str = "kes_deploy";

    /// Opens (creating) the sandbox directory.
    pub fn new(config: &KesDeployConfig) -> std::io::Result<KesDeployEffect> {
        Ok(KesDeployEffect {
            sandbox: Sandbox::open(&config.dir)?,
            limits: config.limits,
        })
    }

    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }
}

/// Counts admitted ratifications of `version` of `subject` in `(after, through]`.
fn count_approvals(
    ledger: &dyn LedgerView,
    after: LedgerIndex,
    through: LedgerIndex,
    subject: &str,
    version: &str,
) -> Result<u64, String> {
    if through.0.saturating_sub(after.0) > QUORUM_SCAN_ENTRIES_MAX {
        return Err(format!(
            "the ratification is more than {QUORUM_SCAN_ENTRIES_MAX} entries after the proposal"
        ));
    }
    let mut count = 0;
    let mut next = after.0 + 1;
    while next <= through.0 {
        let limit = QUORUM_SCAN_PAGE_ENTRIES.min(through.0 - next + 1);
        let page = ledger
            .entries(LedgerIndex(next), limit)
            .map_err(|e| format!("reading the ledger: {e}"))?;
        if page.is_empty() {
            return Err(format!("ledger entry {next} is not available"));
        }
        for entry in &page {
            let Some(d) = entry.decision_record() else {
                continue;
            };
            let p = &d.proposal.proposal;
            if d.decision == Decision::Admit
                && p.domain == KES_TRIGGER.0
                && p.action == KES_TRIGGER.1
                && p.subject == subject
                && p.payload.get("version").and_then(Value::as_str) == Some(version)
            {
                count += 1;
            }
        }
        next += page.len() as u64;
    }
    Ok(count)
}

impl Effect for KesDeployEffect {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn triggers(&self) -> Vec<Trigger> {
        vec![Trigger::new(KES_TRIGGER.0, KES_TRIGGER.1)]
    }

    fn reporting(&self) -> Reporting {
        Reporting::Execution
    }

    fn limits(&self) -> &EffectLimits {
        &self.limits
    }

    fn plan(&self, cx: PlanContext<'_>) -> Plan {
        let refuse = |reason: String| Plan::Refuse { reason };
        let p = &cx.record.proposal.proposal;
        let Some(version) = p.payload.get("version").and_then(Value::as_str) else {
            return refuse("ratification has no version".into());
        };
        let Some(subject) = cx.ledger.subject(&p.domain, &p.subject) else {
            return refuse(format!("kes subject {:?} is not in state", p.subject));
        };
        if subject
            .fields
            .get("pending_version")
            .and_then(Value::as_str)
            == Some(version)
        {
            return Plan::Skip {
                reason: "approval counted; the ratification quorum is not complete yet".into(),
            };
        }
        let Some(record) = subject.fields.get("versions").and_then(|v| v.get(version)) else {
            return refuse(format!("version {version:?} was never proposed"));
        };
        let Some(proposed_by) = record
            .get("proposal")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<ProposalId>().ok())
        else {
            return refuse(format!(
                "version {version:?} has no proposing entry in state"
            ));
        };
        let Some((_, proposed_at)) = cx.ledger.proposal_status(&proposed_by) else {
            return refuse(format!("proposal {} is not in state", proposed_by.short()));
        };
        let Some(quorum) = cx.ledger.action_quorum(&p.domain, &p.action) else {
            return refuse(format!("the constitution no longer declares {}", p.action));
        };
        let count =
            match count_approvals(cx.ledger, proposed_at, cx.entry.index, &p.subject, version) {
                Ok(count) => count,
                Err(reason) => {
                    return refuse(format!(
                        "cannot tell whether this entry completed the quorum: {reason}"
                    ))
                }
            };
        if count != u64::from(quorum) {
            return Plan::Skip {
                reason: format!(
                    "approval {count} of a quorum of {quorum}; another entry completed it"
                ),
            };
        }
        let content = serde_json::json!({
            "format": DEPLOYMENT_FORMAT,
            "ledger_id": p.ledger_id.as_str(),
            "subject": p.subject,
            "version": version,
            "version_hash": record.get("version_hash").cloned().unwrap_or_default(),
            "commitments": record.get("commitments").cloned().unwrap_or_default(),
            "parent": record.get("parent").cloned().unwrap_or_default(),
            "proposed_by": proposed_by.to_hex(),
            "ratified_by": cx.record.id.to_hex(),
            "ratified_at_index": cx.entry.index.0,
        });
        let mut body =
            serde_json::to_vec_pretty(&content).expect("invariant: JSON values serialize");
        body.push(b'\n');
        // Client-chosen names go through the sandbox's checks: `..`, `/`, absolute paths
        // and links are refused there, with evidence.
        let path = Path::new(&p.subject).join(format!("{version}.json"));
        Plan::Perform(Request {
            target: Target::File {
                root: self.sandbox.root().to_path_buf(),
                path,
            },
            body,
        })
    }

    fn run<'a>(
        &'a self,
        request: &'a Request,
        _key: &'a ProposalId,
    ) -> EffectFuture<'a, Result<Performed, Failed>> {
        Box::pin(async move {
            let Target::File { path, .. } = &request.target else {
                return Err(Failed {
                    reason: "deployment writes files only".into(),
                    ..Failed::default()
                });
            };
            crate::effects::write_in_sandbox(
                self.sandbox.clone(),
                path.clone(),
                request.body.clone(),
                &self.limits,
                None,
            )
            .await
        })
    }

    fn verify<'a>(
        &'a self,
        request: &'a Request,
        _key: &'a ProposalId,
        performed: &'a Performed,
    ) -> EffectFuture<'a, Result<Verified, String>> {
        Box::pin(async move {
            let Target::File { path, .. } = &request.target else {
                return Err("not a file target".into());
            };
            let expected = content_hash(&request.body);
            let sandbox = self.sandbox.clone();
            let at = path.clone();
            let read_max = self.limits.body_bytes_max;
            let on_disk = tokio::task::spawn_blocking(move || sandbox.read(&at, read_max))
                .await
                .map_err(|e| format!("read-back task failed: {e}"))?
                .map_err(|e: SandboxError| e.to_string())?;
            let found = content_hash(&on_disk);
            if found != expected || content_hash(&performed.output) != expected {
                return Err(format!(
                    "content hash on disk is {found}, expected {expected}"
                ));
            }
            Ok(Verified::from([
                ("content_hash".to_owned(), expected),
                ("path".to_owned(), path.display().to_string()),
            ]))
        })
    }
}
