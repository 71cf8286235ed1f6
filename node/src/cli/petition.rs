//! `docket petition`: programs as petitioners (seed 004, §1–3, 6, 8).
//!
//! A program does not perform effects; it prints descriptions of the effects it wants, one
//! JSON object per line, and exits. docket (not the program: it gets no docket credential)
//! turns the lines into proposals, resolves the program's labels to proposal ids, signs
//! them with the petitioner's key and submits them as one **plan**, recorded in one entry
//! in the order the set decides (`docket_core::plan`: waves, then ids). It then follows the
//! plan until every member is decided and every admitted effect's outcome is recorded, and
//! exits 0 only when everything was admitted and every effect succeeded.
//!
//! A line:
//!
//! ```json
//! {"label": "pay-1", "action": "SETTLEMENT.PAYOUT_REQUESTED", "subject": "stl-1",
//!  "payload": {"amount": 500, "beneficiary": "acme"},
//!  "after": ["deposit"], "after_outcome": ["other-effect"], "dependencies": [], "nonce": 0}
//! ```
//!
//! `domain` defaults to the action's prefix in lower case; `after` waits for the labelled
//! proposals' admission, `after_outcome` for their effects' outcomes (the proposal id and
//! its outcome reference are both listed, so a rejected effect rejects the dependent too);
//! `dependencies` are ids outside the plan. `nonce` defaults to 0: running the same program
//! again petitions for the same proposals, which the ledger answers as duplicates — a
//! rerun after a crash cannot pay twice. Anything malformed, an unknown or repeated label,
//! a cycle of labels, or a line over the constitution's limits is refused before anything
//! is submitted, naming the line.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use clap::Args;
use docket_core::proposal::public_key;
use docket_core::{
    Constitution, Decision, LedgerId, Proposal, ProposalFormat, ProposalId, ProposalStatus,
    SignedProposal, Value,
};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt as _;

use super::keys::read_key_file;
use super::{print_json, ClientArgs, OutputFormat};
use crate::client::REQUEST_TIMEOUT_MS_DEFAULT;

/// Largest output read from the program; past it the program is stopped and nothing is
/// submitted.
pub const PROGRAM_OUTPUT_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Effects in one plan, before the node's own `limits.batch_proposals_max` applies.
pub const PLAN_MEMBERS_MAX: usize = 2_048;
/// Longest label.
pub const LABEL_BYTES_MAX: usize = 128;
/// How long the plan is followed by default.
pub const FOLLOW_MS_DEFAULT: u64 = 60_000;
/// Pause between two looks at the plan's members while following it.
pub const FOLLOW_POLL_MS: u64 = 250;

/// `docket petition`.
#[derive(Clone, Debug, Args)]
pub struct PetitionArgs {
    /// Key file of the petitioner, who signs every proposal of the plan (the program never
    /// sees it).
    #[arg(long, env = "DOCKET_KEY", value_name = "FILE")]
    pub key: PathBuf,
    /// Ledger id to sign for [default: the node's cluster id, from /v1/status].
    #[arg(long, value_name = "ID")]
    pub ledger_id: Option<String>,
    /// Also write the signed plan (labels, ids, proposals) to this file before submitting.
    #[arg(long, value_name = "FILE")]
    pub plan_out: Option<PathBuf>,
    /// Do not record anything: print what the constitution would decide for each member now
    /// (POST /v1/plans/dry-run). Exits 0 only when every member would be admitted or
    /// would wait for an outcome.
    #[arg(long)]
    pub dry_run: bool,
    /// How long to follow the plan after it is recorded, in milliseconds; 0 prints the
    /// recorded decisions and returns.
    #[arg(long, value_name = "MS", default_value_t = FOLLOW_MS_DEFAULT)]
    pub follow_ms: u64,
    /// The program and its arguments (after `--`). It runs with no stdin and without the
    /// DOCKET_* credentials in its environment; its stdout is the plan, its stderr passes
    /// through.
    #[arg(required = true, num_args = 1.., trailing_var_arg = true, value_name = "PROGRAM")]
    pub program: Vec<String>,
}

/// One line of a program's output.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EffectLine {
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    domain: Option<String>,
    action: String,
    subject: String,
    #[serde(default = "super::propose::empty_map")]
    payload: Value,
    #[serde(default)]
    after: Vec<String>,
    #[serde(default)]
    after_outcome: Vec<String>,
    #[serde(default)]
    dependencies: Vec<ProposalId>,
    #[serde(default)]
    nonce: u64,
}

/// A member of a petition: where it came from and what it became.
#[derive(Clone, Debug, Serialize)]
pub struct Member {
    pub line: usize,
    pub label: String,
    pub id: ProposalId,
    pub proposal: SignedProposal,
}

/// Why a program's output is not a plan. Every variant names the line (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PetitionError {
    #[error("line {line}: not an effect description: {error}")]
    Malformed { line: usize, error: String },
    #[error("line {line}: label {label:?} is already used by line {first}")]
    DuplicateLabel {
        line: usize,
        label: String,
        first: usize,
    },
    #[error("line {line}: label is empty or over {LABEL_BYTES_MAX} bytes")]
    BadLabel { line: usize },
    #[error("line {line}: depends on label {label:?}, which no line defines")]
    UnknownLabel { line: usize, label: String },
    #[error("lines {lines:?} depend on each other in a cycle: no order can satisfy them")]
    Cycle { lines: Vec<usize> },
    #[error("line {line}: {limit}")]
    Limit { line: usize, limit: String },
    #[error("the program printed no effect")]
    Empty,
    #[error("the program printed {count} effects; a plan holds at most {PLAN_MEMBERS_MAX}")]
    TooMany { count: usize },
}

/// Turns a program's output into signed plan members, in line order. Pure: the same output,
/// key and ledger give the same members. `constitution` (the active one) bounds each line
/// by its limits, so a plan is refused whole rather than recorded with rejections for size.
pub fn build(
    output: &str,
    ledger_id: &LedgerId,
    key: &SigningKey,
    constitution: Option<&Constitution>,
) -> Result<Vec<Member>, PetitionError> {
    let mut lines: Vec<(usize, EffectLine)> = Vec::new();
    for (i, text) in output.lines().enumerate() {
        let line = i + 1;
        if text.trim().is_empty() {
            continue;
        }
        let effect: EffectLine =
            crate::wire::from_json_str(text).map_err(|e| PetitionError::Malformed {
                line,
                error: e.to_string(),
            })?;
        lines.push((line, effect));
    }
    if lines.is_empty() {
        return Err(PetitionError::Empty);
    }
    if lines.len() > PLAN_MEMBERS_MAX {
        return Err(PetitionError::TooMany { count: lines.len() });
    }
    // Labels: explicit, or the line number.
    let mut by_label: BTreeMap<String, usize> = BTreeMap::new();
    let mut labels = Vec::with_capacity(lines.len());
    for (k, (line, effect)) in lines.iter().enumerate() {
        let label = effect
            .label
            .clone()
            .unwrap_or_else(|| format!("line-{line}"));
        if label.is_empty() || label.len() > LABEL_BYTES_MAX {
            return Err(PetitionError::BadLabel { line: *line });
        }
        if let Some(first) = by_label.insert(label.clone(), k) {
            return Err(PetitionError::DuplicateLabel {
                line: *line,
                label,
                first: lines[first].0,
            });
        }
        labels.push(label);
    }
    let mut needs: Vec<BTreeSet<usize>> = Vec::with_capacity(lines.len());
    for (line, effect) in &lines {
        let mut set = BTreeSet::new();
        for label in effect.after.iter().chain(&effect.after_outcome) {
            let k = by_label
                .get(label)
                .ok_or_else(|| PetitionError::UnknownLabel {
                    line: *line,
                    label: label.clone(),
                })?;
            set.insert(*k);
        }
        needs.push(set);
    }
    // Ids are computed in dependency order (an id covers its dependencies' ids).
    let mut ids: Vec<Option<ProposalId>> = vec![None; lines.len()];
    let mut members: Vec<Option<Member>> = vec![None; lines.len()];
    let mut remaining: BTreeSet<usize> = (0..lines.len()).collect();
    while !remaining.is_empty() {
        let ready: Vec<usize> = remaining
            .iter()
            .copied()
            .filter(|k| needs[*k].iter().all(|d| ids[*d].is_some()))
            .collect();
        if ready.is_empty() {
            return Err(PetitionError::Cycle {
                lines: remaining.iter().map(|k| lines[*k].0).collect(),
            });
        }
        for k in ready {
            remaining.remove(&k);
            let (line, effect) = &lines[k];
            let id_of = |label: &String| ids[by_label[label]].expect("resolved before use");
            let mut dependencies = effect.dependencies.clone();
            dependencies.extend(effect.after.iter().map(id_of));
            for label in &effect.after_outcome {
                let id = id_of(label);
                dependencies.push(id);
                dependencies.push(id.outcome_of());
            }
            let mut proposal = Proposal {
                format: ProposalFormat::CURRENT,
                ledger_id: ledger_id.clone(),
                domain: effect
                    .domain
                    .clone()
                    .unwrap_or_else(|| super::propose::domain_of(&effect.action)),
                action: effect.action.clone(),
                subject: effect.subject.clone(),
                payload: effect.payload.clone(),
                dependencies,
                author: public_key(key),
                nonce: effect.nonce,
            };
            proposal.normalize();
            if let Some(constitution) = constitution {
                // The core's own step-2 check; an outcome dependency counts twice.
                docket_core::adjudicate::check_limits(constitution, &proposal).map_err(
                    |rejection| PetitionError::Limit {
                        line: *line,
                        limit: rejection.detail,
                    },
                )?;
            }
            let signed = proposal.sign(key);
            let id = signed.id();
            ids[k] = Some(id);
            members[k] = Some(Member {
                line: *line,
                label: labels[k].clone(),
                id,
                proposal: signed,
            });
        }
    }
    Ok(members
        .into_iter()
        .map(|m| m.expect("every member is built"))
        .collect())
}

/// Runs the program: no stdin, no docket credentials, stdout captured up to
/// [`PROGRAM_OUTPUT_BYTES_MAX`], stderr passed through. Fails unless it exits 0.
async fn run_program(program: &[String]) -> anyhow::Result<String> {
    let (name, args) = program.split_first().context("no program given")?;
    let mut command = tokio::process::Command::new(name);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for (variable, _) in std::env::vars_os() {
        if variable.to_string_lossy().starts_with("DOCKET_") {
            command.env_remove(variable);
        }
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot run program {name:?}"))?;
    let mut stdout = child.stdout.take().context("the program has no stdout")?;
    let mut output = Vec::new();
    (&mut stdout)
        .take(PROGRAM_OUTPUT_BYTES_MAX as u64 + 1)
        .read_to_end(&mut output)
        .await
        .context("cannot read the program's output")?;
    if output.len() > PROGRAM_OUTPUT_BYTES_MAX {
        let _ = child.kill().await;
        bail!(
            "the program printed more than {PROGRAM_OUTPUT_BYTES_MAX} bytes \
             (PROGRAM_OUTPUT_BYTES_MAX); nothing was submitted"
        );
    }
    let status = child.wait().await.context("cannot wait for the program")?;
    if !status.success() {
        bail!("program {name:?} failed ({status}); nothing was submitted");
    }
    String::from_utf8(output).map_err(|_| anyhow!("the program's output is not UTF-8"))
}

/// What the plan file (`--plan-out`) holds.
#[derive(Serialize)]
struct PlanFile<'a> {
    format: &'static str,
    members: &'a [Member],
}

/// Where one member stands at the end.
#[derive(Clone, Debug, Serialize)]
pub struct Settled {
    pub label: String,
    pub id: ProposalId,
    pub action: String,
    pub subject: String,
    pub wave: u32,
    /// `ADMIT`, `DEFER` or the rejection code.
    pub decision: String,
    pub detail: Option<String>,
    /// For an admitted effect: `success`, `failure`, or `None` while not reported.
    pub outcome: Option<String>,
    pub effect: bool,
}

impl Settled {
    fn is_done(&self) -> bool {
        self.decision != "DEFER"
            && (!self.effect || self.decision != "ADMIT" || self.outcome.is_some())
    }

    fn is_good(&self) -> bool {
        self.decision == "ADMIT" && (!self.effect || self.outcome.as_deref() == Some("success"))
    }
}

/// Runs `docket petition`.
pub(super) async fn run(args: &ClientArgs, petition: &PetitionArgs) -> anyhow::Result<()> {
    let client = args.client(REQUEST_TIMEOUT_MS_DEFAULT).await?;
    let key = read_key_file(&petition.key)?;
    let ledger_id = match &petition.ledger_id {
        Some(id) => LedgerId::new(id).context("--ledger-id")?,
        None => {
            let status = client
                .status()
                .await
                .context("cannot read the node's status")?;
            if !status.initialized {
                bail!(
                    "node {} is not initialized: run `docket cluster init` first",
                    status.node_id
                );
            }
            LedgerId::new(status.cluster_id).context("the node reports an invalid cluster id")?
        }
    };
    let view = client
        .constitution()
        .await
        .context("cannot read the active constitution")?;
    let constitution = Constitution::parse(&view.document)
        .context("the node's active constitution does not parse")?;
    let output = run_program(&petition.program).await?;
    let members = build(&output, &ledger_id, &key, Some(&constitution))
        .map_err(|e| anyhow!("the program's plan is refused, nothing was submitted: {e}"))?;
    if let Some(path) = &petition.plan_out {
        let text = serde_json::to_string_pretty(&PlanFile {
            format: "docket-plan/v1",
            members: &members,
        })?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write --plan-out {}", path.display()))?;
    }
    let proposals: Vec<SignedProposal> = members.iter().map(|m| m.proposal.clone()).collect();
    let effect_of = |p: &SignedProposal| {
        constitution
            .action(&p.proposal.domain, &p.proposal.action)
            .is_some_and(|a| a.effect)
    };
    if petition.dry_run {
        let view = client
            .dry_run_plan(&proposals)
            .await
            .context("cannot dry-run the plan")?;
        if args.output == OutputFormat::Json {
            print_json(&view)?;
        } else {
            say!(
                "plan  {} proposals, dry run against ledger length {} (nothing recorded)",
                view.members.len(),
                view.ledger_length
            );
            for m in &view.members {
                let member = &members[m.input];
                say!(
                    "wave {}  {:<16} {} {}/{}  would {}",
                    m.wave,
                    member.label,
                    member.proposal.proposal.action,
                    member.proposal.proposal.domain,
                    member.proposal.proposal.subject,
                    describe(&m.decision)
                );
            }
        }
        let refused = view
            .members
            .iter()
            .filter(|m| matches!(m.decision, Decision::Reject(_)))
            .count();
        if refused > 0 {
            bail!(
                "{refused} of {} members would be rejected",
                view.members.len()
            );
        }
        return Ok(());
    }
    eprintln!(
        "submitting a plan of {} proposals for ledger {}",
        members.len(),
        ledger_id.as_str()
    );
    let recorded = client.submit_plan(&proposals).await.map_err(|error| {
        let context = if error.outcome_unknown() {
            "the plan's outcome is unknown: it may have been recorded. Run the same petition \
             again: the same program output gives the same proposals, and a recorded plan is \
             answered as duplicates"
        } else {
            "the plan was not recorded"
        };
        anyhow::Error::new(error).context(context)
    })?;
    let mut settled: Vec<Settled> = recorded
        .members
        .iter()
        .map(|m| {
            let member = &members[m.input];
            let record = m.result.entry.decision_record();
            let p = &member.proposal.proposal;
            Settled {
                label: member.label.clone(),
                id: member.id,
                action: p.action.clone(),
                subject: format!("{}/{}", p.domain, p.subject),
                wave: m.wave,
                decision: record.map_or("?", |r| r.decision.label()).to_owned(),
                detail: record.and_then(|r| match &r.decision {
                    Decision::Reject(rejection) => Some(rejection.detail.clone()),
                    _ => None,
                }),
                outcome: None,
                effect: effect_of(&member.proposal),
            }
        })
        .collect();
    let text = args.output == OutputFormat::Text;
    if text {
        let first = recorded
            .members
            .iter()
            .map(|m| m.result.entry.index.0)
            .min();
        let duplicates = recorded
            .members
            .iter()
            .filter(|m| m.result.duplicate)
            .count();
        say!(
            "plan  {} proposals in {} waves, recorded from entry {}{}",
            settled.len(),
            settled.iter().map(|s| s.wave).max().unwrap_or(0) + 1,
            first.map_or_else(|| "-".to_owned(), |i| i.to_string()),
            if duplicates > 0 {
                format!(" ({duplicates} already recorded)")
            } else {
                String::new()
            }
        );
        for s in &settled {
            say!("{}", line_of(s));
        }
    }
    let deadline = Instant::now() + Duration::from_millis(petition.follow_ms);
    let mut last: Vec<String> = settled.iter().map(line_of).collect();
    while settled.iter().any(|s| !s.is_done()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(FOLLOW_POLL_MS)).await;
        for (k, s) in settled.iter_mut().enumerate() {
            if s.is_done() {
                continue;
            }
            let view = match client.proposal(s.id).await {
                Ok(view) => view,
                Err(error) => {
                    tracing::debug!(%error, id = %s.id, "cannot read a plan member yet");
                    continue;
                }
            };
            if view.status != ProposalStatus::Deferred {
                if let Some(record) = view.entries.last().and_then(|e| e.decision_record()) {
                    s.decision = record.decision.label().to_owned();
                    s.detail = match &record.decision {
                        Decision::Reject(rejection) => Some(rejection.detail.clone()),
                        _ => None,
                    };
                }
            }
            if let Some(outcome) = view.outcome {
                s.outcome = Some(
                    if outcome.succeeded {
                        "success"
                    } else {
                        "failure"
                    }
                    .to_owned(),
                );
            }
            let now = line_of(s);
            if text && now != last[k] {
                say!("{now}");
                last[k] = now;
            }
        }
    }
    let pending = settled.iter().filter(|s| !s.is_done()).count();
    let bad = settled
        .iter()
        .filter(|s| s.is_done() && !s.is_good())
        .count();
    if args.output == OutputFormat::Json {
        print_json(&settled)?;
    }
    if bad > 0 {
        bail!(
            "{bad} of {} members were rejected or their effect failed{}",
            settled.len(),
            if pending > 0 {
                format!("; {pending} not settled yet")
            } else {
                String::new()
            }
        );
    }
    if pending > 0 {
        if petition.follow_ms == 0 {
            return Ok(());
        }
        bail!(
            "{pending} of {} members were not settled within --follow-ms {} (still deferred, or \
             their outcome not reported yet); `docket proposal show ID` follows them",
            settled.len(),
            petition.follow_ms
        );
    }
    if text {
        say!("every member was admitted and every effect succeeded");
    }
    Ok(())
}

fn describe(decision: &Decision) -> String {
    match decision {
        Decision::Admit => "ADMIT".to_owned(),
        Decision::Reject(rejection) => format!("REJECT {} — {}", rejection.code, rejection.detail),
        Decision::Defer { waiting_on } => {
            format!("DEFER (waiting on {} dependencies)", waiting_on.len())
        }
    }
}

fn line_of(s: &Settled) -> String {
    let mut text = format!(
        "wave {}  {:<16} {:<28} {:<32} {}",
        s.wave, s.label, s.action, s.subject, s.decision
    );
    if let Some(detail) = &s.detail {
        text.push_str(&format!(" — {detail}"));
    }
    match (&s.outcome, s.effect && s.decision == "ADMIT") {
        (Some(outcome), _) => text.push_str(&format!("  outcome {outcome}")),
        (None, true) => text.push_str("  outcome pending"),
        (None, false) => {}
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        docket_core::dev::signing_key("alice")
    }

    fn ledger() -> LedgerId {
        LedgerId::new("petition-test").expect("valid")
    }

    const PROGRAM: &str = r#"
{"label": "pay-1", "action": "SETTLEMENT.PAYOUT_REQUESTED", "subject": "stl-1", "payload": {"amount": 5, "beneficiary": "a"}}
{"label": "report", "action": "FILE.WRITE", "subject": "r.txt", "payload": {"path": "r.txt", "contents": "x"}, "after_outcome": ["pay-1"]}
"#;

    #[test]
    fn labels_resolve_to_ids_and_outcome_references() {
        let members = build(PROGRAM, &ledger(), &key(), None).expect("a plan");
        assert_eq!(members.len(), 2);
        let pay = members[0].id;
        let deps = &members[1].proposal.proposal.dependencies;
        assert!(deps.contains(&pay) && deps.contains(&pay.outcome_of()));
        assert_eq!(members[1].proposal.proposal.domain, "file");
        // Deterministic: the same output gives the same ids.
        let again = build(PROGRAM, &ledger(), &key(), None).expect("a plan");
        assert_eq!(again[1].id, members[1].id);
    }

    #[test]
    fn bad_plans_are_refused_naming_the_line() {
        let err = |text: &str| build(text, &ledger(), &key(), None).expect_err("refused");
        let line = r#"{"label": "a", "action": "FILE.WRITE", "subject": "a"}"#;
        assert!(matches!(
            err(&format!("{line}\n{{\"action\": 1}}")),
            PetitionError::Malformed { line: 2, .. }
        ));
        assert!(matches!(
            err(&format!("{line}\n{line}")),
            PetitionError::DuplicateLabel {
                line: 2,
                first: 1,
                ..
            }
        ));
        assert!(matches!(
            err(r#"{"action": "FILE.WRITE", "subject": "a", "after": ["ghost"]}"#),
            PetitionError::UnknownLabel { line: 1, .. }
        ));
        let cycle = "{\"label\": \"a\", \"action\": \"X.Y\", \"subject\": \"s\", \"after\": [\"b\"]}\n\
                     {\"label\": \"c\", \"action\": \"X.Y\", \"subject\": \"s\"}\n\
                     {\"label\": \"b\", \"action\": \"X.Y\", \"subject\": \"s\", \"after_outcome\": [\"a\"]}";
        assert_eq!(err(cycle), PetitionError::Cycle { lines: vec![1, 3] });
        assert_eq!(err("\n  \n"), PetitionError::Empty);
        let float = r#"{"action": "X.Y", "subject": "s", "payload": {"x": 1.5}}"#;
        assert!(matches!(
            err(float),
            PetitionError::Malformed { line: 1, .. }
        ));
    }

    #[test]
    fn lines_over_the_constitutions_limits_are_refused() {
        let constitution = Constitution::default_constitution();
        let long = "s".repeat(constitution.limits.subject_bytes_max as usize + 1);
        let text = format!(
            "{{\"action\": \"FILE.WRITE\", \"subject\": \"ok\"}}\n{{\"action\": \"FILE.WRITE\", \"subject\": \"{long}\"}}"
        );
        let error = build(&text, &ledger(), &key(), Some(&constitution)).expect_err("refused");
        assert!(
            matches!(&error, PetitionError::Limit { line: 2, limit } if limit.contains("subject_bytes_max")),
            "{error}"
        );
    }
}
