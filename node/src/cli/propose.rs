//! `docket propose`, and signing and submitting a proposal, which `docket constitution
//! amend|approve` do too: the proposal file, the signer's flags, the nonce, the settled
//! submission and how its decision is printed.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _};
use clap::{ArgGroup, Args};
use docket_core::id::LedgerIdError;
use docket_core::proposal::public_key;
use docket_core::{LedgerId, Proposal, ProposalFormat, ProposalId, SignedProposal, Value};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use super::keys::read_key_file;
use super::{print_json, read_limited, ClientArgs, OutputFormat};
use crate::client::{Client, REQUEST_TIMEOUT_MS_DEFAULT};
use crate::wire::SubmitResponse;

/// Largest proposal file read: the core's payload limit plus room for the JSON around it.
pub const PROPOSAL_FILE_BYTES_MAX: u64 =
    docket_core::constitution::ceilings::PAYLOAD_BYTES_MAX * 2 + 64 * 1024;

/// How long `docket propose` keeps resending the same signed proposal (to this node, the
/// leader, then the other members) while its outcome is unknown or no leader can take it.
pub const SUBMIT_SETTLE_MS_MAX: u64 = 30_000;

/// Who signs, for which ledger, with which nonce.
#[derive(Clone, Debug, Args)]
pub struct SignArgs {
    /// Key file of the author (from `docket keygen`).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Ledger id to sign for [default: the node's cluster id, from /v1/status].
    #[arg(long, value_name = "ID", value_parser = parse_ledger_id)]
    pub ledger_id: Option<LedgerId>,
    /// Nonce, to make otherwise identical proposals distinct [default: the file's nonce, else
    /// the current Unix time in nanoseconds]. Give the same nonce to resubmit the same
    /// proposal (safe: a duplicate appends nothing).
    #[arg(long, value_name = "N")]
    pub nonce: Option<u64>,
}

fn parse_ledger_id(text: &str) -> Result<LedgerId, LedgerIdError> {
    LedgerId::new(text)
}

#[derive(Clone, Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["file", "action"])))]
pub struct ProposeArgs {
    #[command(flatten)]
    pub sign: SignArgs,
    /// Proposal file (JSON: domain, action, subject, payload, dependencies, nonce).
    #[arg(long, short = 'f', value_name = "P.json")]
    pub file: Option<PathBuf>,
    /// Domain [default: the action's prefix in lower case].
    #[arg(long, value_name = "D", requires = "action")]
    pub domain: Option<String>,
    /// Action, e.g. SETTLEMENT.DEPOSIT_CONFIRMED.
    #[arg(long, value_name = "A", requires = "subject")]
    pub action: Option<String>,
    /// Subject whose lifecycle the action moves, e.g. stl-0001.
    #[arg(long, value_name = "S", requires = "action")]
    pub subject: Option<String>,
    /// Payload as JSON (integers, strings, booleans, lists, maps; no floats) [default: {}].
    #[arg(long, value_name = "JSON", requires = "action")]
    pub payload: Option<String>,
    /// Id of a proposal this one depends on (repeatable).
    #[arg(long = "depends-on", value_name = "ID", requires = "action")]
    pub depends_on: Vec<ProposalId>,
    /// Do not record it: print the decision the constitution would record now, against
    /// the cluster's current state (POST /v1/proposals/dry-run). Submitting later may
    /// decide otherwise if the state moves.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs `docket propose`.
pub(super) async fn run(args: &ClientArgs, propose: &ProposeArgs) -> anyhow::Result<()> {
    run_propose(
        &args.client(REQUEST_TIMEOUT_MS_DEFAULT).await?,
        &args.nodes(),
        propose,
        args.output,
    )
    .await
}

/// A proposal as a user writes it (DESIGN.md §10): the CLI adds the ledger id and the author
/// key, normalizes the dependencies and signs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProposalFile {
    pub domain: String,
    pub action: String,
    pub subject: String,
    #[serde(default = "empty_map")]
    pub payload: Value,
    #[serde(default)]
    pub dependencies: Vec<ProposalId>,
    #[serde(default)]
    pub nonce: Option<u64>,
}

pub(super) fn empty_map() -> Value {
    Value::Map(BTreeMap::new())
}

impl ProposalFile {
    /// Parses a proposal file's JSON. Unknown fields, floats and a proposal written as an
    /// array instead of an object are refused.
    pub fn parse(text: &str) -> Result<ProposalFile, serde_json::Error> {
        crate::wire::from_json_str(text)
    }

    pub fn read(path: &Path) -> anyhow::Result<ProposalFile> {
        let text = read_limited(path, PROPOSAL_FILE_BYTES_MAX, "proposal file")?;
        ProposalFile::parse(&text)
            .map_err(|error| anyhow!("invalid proposal file {}: {error}", path.display()))
    }

    /// Signs the proposal for `ledger_id` as the owner of `key`. The file's nonce is used
    /// unless `nonce` overrides it; dependencies are sorted and de-duplicated first.
    pub fn sign(&self, ledger_id: LedgerId, nonce: u64, key: &SigningKey) -> SignedProposal {
        let mut proposal = Proposal {
            format: ProposalFormat::CURRENT,
            ledger_id,
            domain: self.domain.clone(),
            action: self.action.clone(),
            subject: self.subject.clone(),
            payload: self.payload.clone(),
            dependencies: self.dependencies.clone(),
            author: public_key(key),
            nonce,
        };
        proposal.normalize();
        proposal.sign(key)
    }
}

impl ProposeArgs {
    /// The proposal these arguments describe, from `--file` or from the flags.
    pub fn proposal_file(&self) -> anyhow::Result<ProposalFile> {
        if let Some(path) = &self.file {
            return ProposalFile::read(path);
        }
        let (Some(action), Some(subject)) = (&self.action, &self.subject) else {
            bail!("give --file, or --action and --subject");
        };
        let domain = match &self.domain {
            Some(domain) => domain.clone(),
            None => domain_of(action),
        };
        let payload = match &self.payload {
            Some(json) => serde_json::from_str::<Value>(json)
                .map_err(|error| anyhow!("--payload is not a valid payload: {error}"))?,
            None => empty_map(),
        };
        Ok(ProposalFile {
            domain,
            action: action.clone(),
            subject: subject.clone(),
            payload,
            dependencies: self.depends_on.clone(),
            nonce: None,
        })
    }
}

/// The domain an action belongs to by convention: its prefix in lower case.
pub(super) fn domain_of(action: &str) -> String {
    action
        .split('.')
        .next()
        .unwrap_or(action)
        .to_ascii_lowercase()
}

/// The current Unix time in nanoseconds: a nonce that differs between two runs of the same
/// command, so repeating a command files a new proposal unless `--nonce` pins it.
fn nonce_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        })
}

/// `--ledger-id` (or the cluster id the node reports), and the API addresses of the members
/// the node knows, to resend to if it cannot settle a submission (best effort: none when
/// the status cannot be read and `--ledger-id` was given). One status call for both.
async fn ledger_and_members(
    client: &Client,
    given: Option<&LedgerId>,
) -> anyhow::Result<(LedgerId, Vec<String>)> {
    let status = client.status().await;
    let members = status.as_ref().map_or_else(
        |_| Vec::new(),
        |s| s.members.iter().map(|m| m.api_addr.clone()).collect(),
    );
    if let Some(id) = given {
        return Ok((id.clone(), members));
    }
    let status = status.context(
        "cannot learn the ledger id from the node's status (give --ledger-id to skip this)",
    )?;
    if !status.initialized {
        bail!(
            "node {} is not initialized: run `docket cluster init` first",
            status.node_id
        );
    }
    let ledger_id =
        LedgerId::new(status.cluster_id).context("the node reports an invalid cluster id")?;
    Ok((ledger_id, members))
}

async fn run_propose(
    client: &Client,
    nodes: &[&str],
    args: &ProposeArgs,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let key = read_key_file(&args.sign.key)?;
    let draft = args.proposal_file()?;
    if args.dry_run {
        let (ledger_id, _) = ledger_and_members(client, args.sign.ledger_id.as_ref()).await?;
        let nonce = args.sign.nonce.or(draft.nonce).unwrap_or_else(nonce_now);
        let signed = draft.sign(ledger_id, nonce, &key);
        let view = client
            .dry_run(&signed)
            .await
            .context("cannot dry-run the proposal")?;
        if output == OutputFormat::Json {
            return print_json(&view);
        }
        say!("proposal  {} (dry run: nothing recorded)", view.id);
        match &view.decision {
            docket_core::Decision::Admit => say!("decision  would ADMIT"),
            docket_core::Decision::Reject(rejection) => say!(
                "decision  would REJECT {} — {}",
                rejection.code,
                rejection.detail
            ),
            docket_core::Decision::Defer { waiting_on } => {
                let ids: Vec<String> = waiting_on.iter().map(ProposalId::to_hex).collect();
                say!("decision  would DEFER, waiting on {}", ids.join(", "));
            }
        }
        say!("access    {}", view.access);
        say!("state at  ledger length {}", view.ledger_length);
        if view.recorded {
            say!("note      this id is already recorded: submitting it appends nothing");
        }
        return Ok(());
    }
    sign_and_submit(client, nodes, &args.sign, &draft, &key, output).await?;
    Ok(())
}

/// Signs `draft` as `key` for the ledger, submits it and prints the recorded decision.
/// After an unknown outcome the same signed proposal is resubmitted to the other `nodes`
/// (`--node`) and the cluster's members, never re-signed.
pub(super) async fn sign_and_submit(
    client: &Client,
    nodes: &[&str],
    sign: &SignArgs,
    draft: &ProposalFile,
    key: &SigningKey,
    output: OutputFormat,
) -> anyhow::Result<SubmitResponse> {
    let (ledger_id, members) = ledger_and_members(client, sign.ledger_id.as_ref()).await?;
    let mut others: Vec<String> = nodes.iter().map(|n| (*n).to_owned()).collect();
    others.extend(members);
    let nonce = sign.nonce.or(draft.nonce).unwrap_or_else(nonce_now);
    let signed = draft.sign(ledger_id, nonce, key);
    let id = signed.id();
    // Shown before it is sent, so the id is known whatever happens to the request.
    eprintln!("submitting proposal {id} (nonce {nonce})");
    let settle = Duration::from_millis(SUBMIT_SETTLE_MS_MAX);
    let response = client
        .submit_settled(&signed, &others, settle)
        .await
        .map_err(|error| {
            let context = if error.outcome_unknown {
                format!(
                    "the outcome of proposal {id} is unknown: it may have been recorded. Rerun \
                 with --nonce {nonce} to resubmit the identical proposal safely (a duplicate \
                 appends nothing and prints the recorded entry; GET /v1/proposals/{id} shows \
                 it too)"
                )
            } else {
                format!("proposal {id} was not recorded")
            };
            anyhow::Error::new(error).context(context)
        })?;
    if output == OutputFormat::Json {
        print_json(&response)?;
    } else {
        print_submission(&response)?;
    }
    Ok(response)
}

fn print_submission(response: &SubmitResponse) -> anyhow::Result<()> {
    let entry = &response.entry;
    say!("proposal  {}", response.id);
    match entry.decision_record() {
        Some(record) => {
            match &record.decision {
                docket_core::Decision::Admit => say!("decision  ADMIT"),
                docket_core::Decision::Reject(rejection) => {
                    say!(
                        "decision  REJECTED {} — {}",
                        rejection.code,
                        rejection.detail
                    );
                    say!("          (the rejection is recorded in the ledger)");
                }
                docket_core::Decision::Defer { waiting_on } => {
                    let ids: Vec<String> = waiting_on.iter().map(ProposalId::to_hex).collect();
                    say!("decision  DEFERRED, waiting on {}", ids.join(", "));
                }
            }
            say!("access    {}", record.access);
        }
        None => say!("decision  (the entry is not a decision record)"),
    }
    say!(
        "entry     #{} hash {} at {}",
        entry.index,
        entry.hash,
        entry.time
    );
    if response.duplicate {
        say!("          already recorded: nothing was appended, this is its current entry");
    } else if response.appended > 1 {
        say!(
            "          {} entries appended (released waves or due expiries)",
            response.appended
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::tests::{parse, DEPOSIT};
    use crate::cli::ClientCommand;
    use std::fs;

    #[test]
    fn propose_needs_exactly_one_source() {
        assert!(parse(&["propose", "--key", "k"]).is_err(), "no source");
        assert!(
            parse(&[
                "propose",
                "--key",
                "k",
                "--file",
                "p.json",
                "--action",
                "A",
                "--subject",
                "s"
            ])
            .is_err(),
            "both sources"
        );
        assert!(
            parse(&["propose", "--key", "k", "--action", "A"]).is_err(),
            "action without subject"
        );
        assert!(
            parse(&[
                "propose",
                "--key",
                "k",
                "--file",
                "p.json",
                "--payload",
                "{}"
            ])
            .is_err(),
            "flags with a file"
        );
        assert!(parse(&["propose", "--key", "k", "--file", "p.json", "--nonce", "3"]).is_ok());
        let error = parse(&[
            "propose",
            "--key",
            "k",
            "--action",
            "A",
            "--subject",
            "s",
            "--depends-on",
            "beef",
        ])
        .expect_err("short id");
        assert!(error.to_string().contains("64 characters"), "{error}");
    }

    #[test]
    fn proposal_files_parse_as_documented() {
        let file = ProposalFile::parse(DEPOSIT).expect("the DESIGN.md example parses");
        assert_eq!(file.domain, "settlement");
        assert_eq!(file.payload.get("amount"), Some(&Value::Int(125_000)));
        assert_eq!(file.nonce, Some(1));

        let minimal = ProposalFile::parse(r#"{"domain":"d","action":"D.A","subject":"s"}"#)
            .expect("payload, dependencies and nonce are optional");
        assert_eq!(minimal.payload, empty_map());
        assert_eq!(minimal.nonce, None);
    }

    #[test]
    fn proposal_files_are_objects_only() {
        let array = r#"["settlement", "SETTLEMENT.DEPOSIT_CONFIRMED", "stl-1", {}, [], 1]"#;
        let error = ProposalFile::parse(array).expect_err("an array is not a proposal file");
        assert!(
            error.to_string().contains("invalid type: sequence"),
            "{error}"
        );
    }

    #[test]
    fn proposal_files_refuse_unknown_fields_and_floats() {
        let unknown = DEPOSIT.replace("\"nonce\": 1", "\"nonce\": 1, \"author\": \"me\"");
        let error = ProposalFile::parse(&unknown).expect_err("unknown field");
        assert!(
            error.to_string().contains("unknown field `author`"),
            "{error}"
        );

        let float = DEPOSIT.replace("125000", "1250.00");
        let error = ProposalFile::parse(&float).expect_err("float");
        let text = error.to_string();
        assert!(text.contains("floats are not allowed"), "{text}");
        assert!(text.contains("line 3"), "says where: {text}");

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.json");
        fs::write(&path, float).expect("write");
        let error = ProposalFile::read(&path).expect_err("float");
        let text = format!("{error:#}");
        assert!(text.starts_with("invalid proposal file "), "{text}");
        assert!(text.contains("p.json"), "{text}");
        assert!(
            text.contains("use an integer in the smallest unit"),
            "{text}"
        );
    }

    #[test]
    fn flags_and_file_sign_the_same_proposal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dep_a = ProposalId([0xaa; 32]).to_hex();
        let dep_b = ProposalId([0x11; 32]).to_hex();
        let path = dir.path().join("p.json");
        let json = DEPOSIT.replace(
            "\"dependencies\": []",
            &format!("\"dependencies\": [\"{dep_a}\", \"{dep_b}\", \"{dep_a}\"]"),
        );
        fs::write(&path, json).expect("write");
        let path_text = path.to_str().expect("utf-8 path");

        let from_file = parse(&["propose", "--key", "k", "--file", path_text]).expect("parses");
        let from_flags = parse(&[
            "propose",
            "--key",
            "k",
            "--action",
            "SETTLEMENT.DEPOSIT_CONFIRMED",
            "--subject",
            "stl-0001",
            "--payload",
            r#"{"rail_ref": "dep-77", "currency": "EUR", "amount": 125000}"#,
            "--depends-on",
            &dep_b,
            "--depends-on",
            &dep_a,
            "--nonce",
            "1",
        ])
        .expect("parses");
        let (ClientCommand::Propose(file_args), ClientCommand::Propose(flag_args)) =
            (from_file.command, from_flags.command)
        else {
            panic!("propose commands");
        };

        let key = docket_core::dev::signing_key("alice");
        let ledger = LedgerId::new("docket-local").expect("valid");
        let sign = |args: &ProposeArgs| {
            let draft = args.proposal_file().expect("a proposal");
            let nonce = args.sign.nonce.or(draft.nonce).expect("a nonce");
            draft.sign(ledger.clone(), nonce, &key)
        };
        let (a, b) = (sign(&file_args), sign(&flag_args));
        assert_eq!(a, b);
        assert_eq!(a.id(), b.id());
        assert!(
            a.proposal.dependencies_are_normal(),
            "sorted and de-duplicated"
        );
        assert_eq!(a.proposal.dependencies.len(), 2);
        assert_eq!(a.verify(&a.id()), Ok(()));
        assert_eq!(a.proposal.author, docket_core::dev::key("alice"));
        // The domain defaulted from the action's prefix.
        assert_eq!(b.proposal.domain, "settlement");
    }

    #[test]
    fn payload_flag_errors_are_clear() {
        let cli = parse(&[
            "propose",
            "--key",
            "k",
            "--action",
            "SETTLEMENT.DEPOSIT_CONFIRMED",
            "--subject",
            "s",
            "--payload",
            r#"{"amount": 1.5}"#,
        ])
        .expect("parses");
        let ClientCommand::Propose(args) = cli.command else {
            panic!("propose");
        };
        let error = args.proposal_file().expect_err("float");
        let text = format!("{error:#}");
        assert!(
            text.starts_with("--payload is not a valid payload"),
            "{text}"
        );
        assert!(text.contains("floats are not allowed"), "{text}");
    }

    #[test]
    fn nonces_differ_between_runs() {
        let first = nonce_now();
        std::thread::sleep(Duration::from_millis(1));
        assert!(nonce_now() > first);
    }
}
