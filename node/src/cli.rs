//! The operator commands of the `docket` binary, except `serve`, `demo` and `bench`.
//!
//! Each command is a thin layer over [`Client`]: it builds a request, sends it to the node
//! named by `--node` (or `DOCKET_NODE`), and prints the answer for a human (`--output text`,
//! the default) or as the API's JSON (`--output json`). Errors come back as `anyhow` errors
//! whose chain, printed with `{:#}`, is one line saying what failed and what to do.
//!
//! `main.rs` composes these with its own commands:
//!
//! ```text
//! #[derive(clap::Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     client: docket_node::cli::ClientArgs,
//!     #[command(subcommand)]
//!     command: Command,
//! }
//! #[derive(clap::Subcommand)]
//! enum Command {
//!     Serve(ServeArgs),
//!     #[command(flatten)]
//!     Client(docket_node::cli::ClientCommand),
//! }
//! // Command::Client(cmd) => docket_node::cli::run(&cli.client, cmd).await
//! ```
//!
//! Key files (`docket keygen`) hold an ed25519 secret seed in hex. They are written with mode
//! 0600 and refused when group or others can read them, like ssh does.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _};
use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use docket_core::constitution::Constitution;
use docket_core::id::{decode_hex, LedgerIdError};
use docket_core::proposal::public_key;
use docket_core::{
    Auditor, Cause, LedgerEntry, LedgerId, Proposal, ProposalFormat, ProposalId, Record,
    SignedProposal, StateHash, Value,
};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::client::{Client, ClientError, NODE_URL_DEFAULT, REQUEST_TIMEOUT_MS_DEFAULT};
use crate::wire::{
    AddMemberRequest, Consistency, InitRequest, KeyFile, MemberView, StatusView, SubmitResponse,
};

/// Deadline of `member add` when `--timeout-ms` is not given: the node answers only once the
/// new member has caught up (or been found unreachable), which can take a while on a long
/// ledger.
pub const MEMBER_ADD_TIMEOUT_MS_DEFAULT: u64 = 60_000;

/// Entries asked for per ledger page. The server may answer fewer; the CLI follows `next`.
pub const LEDGER_PAGE_ENTRIES: u64 = 1_000;

/// How often `ledger tail --follow` asks for new entries.
pub const FOLLOW_POLL_MS: u64 = 500;

/// Largest key file read. A key file is two hex strings in JSON: anything bigger is not one.
pub const KEY_FILE_BYTES_MAX: u64 = 4 * 1024;

/// Largest proposal file read: the core's payload limit plus room for the JSON around it.
pub const PROPOSAL_FILE_BYTES_MAX: u64 =
    docket_core::constitution::ceilings::PAYLOAD_BYTES_MAX * 2 + 64 * 1024;

/// Largest constitution document read, as the core accepts it.
pub const CONSTITUTION_FILE_BYTES_MAX: u64 =
    docket_core::constitution::ceilings::DOCUMENT_BYTES_MAX as u64;

const DOMAIN_CONSTITUTION: &str = "constitution";
const ACTION_AMEND: &str = "CONSTITUTION.AMEND";
const ACTION_APPROVE: &str = "CONSTITUTION.APPROVE";

/// Writes one line to stdout, returning an error (a closed pipe) instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*).context("cannot write to stdout")?
    };
}

// ---------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------

/// How results are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Concise text for a human.
    #[default]
    Text,
    /// The API's JSON (one JSON document; `ledger tail` prints one entry per line).
    Json,
}

/// Options shared by every command that talks to a node.
#[derive(Clone, Debug, Args)]
pub struct ClientArgs {
    /// API URL of the node to talk to (any member: writes are forwarded to the leader).
    #[arg(
        long,
        global = true,
        help_heading = "Node options",
        env = "DOCKET_NODE",
        default_value = NODE_URL_DEFAULT,
        value_name = "URL"
    )]
    pub node: String,

    /// Output format.
    #[arg(
        long,
        global = true,
        help_heading = "Node options",
        value_enum,
        default_value_t = OutputFormat::Text
    )]
    pub output: OutputFormat,

    /// Deadline of each request in milliseconds [default: 10000; member add: 60000].
    #[arg(
        long,
        global = true,
        help_heading = "Node options",
        value_name = "MS",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub timeout_ms: Option<u64>,
}

impl Default for ClientArgs {
    fn default() -> ClientArgs {
        ClientArgs {
            node: NODE_URL_DEFAULT.to_owned(),
            output: OutputFormat::Text,
            timeout_ms: None,
        }
    }
}

impl ClientArgs {
    /// A client for `--node` with `--timeout-ms`, or `default_ms` when it is not given.
    pub fn client(&self, default_ms: u64) -> anyhow::Result<Client> {
        let timeout = Duration::from_millis(self.timeout_ms.unwrap_or(default_ms));
        Ok(Client::with_timeout(&self.node, timeout)?)
    }
}

/// The operator commands `run` executes.
#[derive(Clone, Debug, Subcommand)]
pub enum ClientCommand {
    /// Initialize a new cluster: write the genesis entry with its constitution.
    #[command(subcommand)]
    Cluster(ClusterCommand),

    /// Add, promote, remove and list cluster members.
    #[command(subcommand)]
    Member(MemberCommand),

    /// Show the leader, term and indexes, then every member's progress and state hash.
    #[command(after_help = "Examples:\n  \
        docket status\n  \
        docket status --node http://127.0.0.1:8002 --output json\n\n\
        Exits non-zero if two nodes at the same ledger length report different state hashes.")]
    Status,

    /// Generate an ed25519 key file for signing proposals.
    #[command(after_help = "Examples:\n  \
        docket keygen --out alice.key\n  \
        docket keygen --out alice.key --force   # replace an existing key (the old one is lost)")]
    Keygen(KeygenArgs),

    /// Sign a proposal and submit it; print its decision and ledger entry.
    #[command(after_help = "Examples:\n  \
        docket propose --key alice.key --file deposit.json\n  \
        docket propose --key alice.key --action SETTLEMENT.DEPOSIT_CONFIRMED --subject stl-0001 \\\n      \
            --payload '{\"amount\": 125000, \"currency\": \"EUR\", \"rail_ref\": \"dep-77\"}'\n  \
        docket propose --key alice.key --action SETTLEMENT.PAYOUT_REQUESTED --subject stl-0001 \\\n      \
            --payload '{\"amount\": 5000}' --depends-on $DEPOSIT_ID --nonce 2\n\n\
        A proposal file looks like:\n  \
        { \"domain\": \"settlement\", \"action\": \"SETTLEMENT.DEPOSIT_CONFIRMED\", \"subject\": \"stl-0001\",\n    \
          \"payload\": { \"amount\": 125000, \"currency\": \"EUR\" }, \"dependencies\": [], \"nonce\": 1 }\n\n\
        Exits 0 when the decision was recorded, a rejection included.")]
    Propose(ProposeArgs),

    /// Read and verify the ledger.
    #[command(subcommand)]
    Ledger(LedgerCommand),

    /// Read a subject's lifecycle state.
    #[command(subcommand)]
    State(StateCommand),

    /// Show, amend and approve the constitution.
    #[command(subcommand)]
    Constitution(ConstitutionCommand),

    /// Show what execution agents did for a proposal (evidence of every attempt).
    #[command(subcommand)]
    Execution(ExecutionCommand),
}

#[derive(Clone, Debug, Subcommand)]
#[command(
    after_help = "Examples:\n  docket execution show 3f2a…(64 hex) --node http://127.0.0.1:8001"
)]
pub enum ExecutionCommand {
    /// Print the execution job and the evidence of every attempt for a proposal.
    #[command(after_help = "Examples:\n  \
        docket execution show 3f2a…(64 hex)\n  \
        docket execution show 3f2a…(64 hex) --node http://127.0.0.1:8002 --output json\n\n\
        Evidence is kept in the journal of the node that executed the effect (the leader at\n\
        the time); ask that node. Other nodes answer that they hold no job.")]
    Show {
        /// The proposal id (64 lowercase hex characters).
        #[arg(value_name = "PROPOSAL_ID")]
        id: String,
    },
}

#[derive(Clone, Debug, Subcommand)]
#[command(
    after_help = "Examples:\n  docket cluster init\n  docket cluster init --constitution my.toml"
)]
pub enum ClusterCommand {
    /// Initialize the cluster at --node: it becomes the first voter and writes the genesis
    /// entry. Add the other nodes with `docket member add`.
    #[command(after_help = "Examples:\n  \
        docket cluster init                              # the built-in default constitution\n  \
        docket cluster init --constitution my.toml --node http://127.0.0.1:8001")]
    Init {
        /// Genesis constitution document (TOML); the built-in default when absent.
        #[arg(long, value_name = "FILE")]
        constitution: Option<PathBuf>,
    },
}

#[derive(Clone, Debug, Subcommand)]
#[command(after_help = "Examples:\n  \
    docket member add 2 --raft-addr 127.0.0.1:7002 --api-addr 127.0.0.1:8002\n  \
    docket member list")]
pub enum MemberCommand {
    /// Add a running node: it joins as a learner, catches up, then becomes a voter (unless
    /// --learner).
    #[command(after_help = "Examples:\n  \
        docket member add 2 --raft-addr 127.0.0.1:7002 --api-addr 127.0.0.1:8002\n  \
        docket member add 4 --raft-addr 10.0.0.4:7004 --api-addr 10.0.0.4:8004 --learner\n\n\
        Start the node first (`docket serve --node-id 2`). The command waits for it to catch up;\n\
        raise --timeout-ms for a long ledger.")]
    Add {
        /// Node id of the new member (its `node_id`).
        #[arg(value_name = "ID")]
        id: u64,
        /// Address the other nodes reach its Raft port at (HOST:PORT).
        #[arg(long, value_name = "HOST:PORT")]
        raft_addr: String,
        /// Address clients reach its API at (HOST:PORT).
        #[arg(long, value_name = "HOST:PORT")]
        api_addr: String,
        /// Leave it a learner (replicates, does not vote) instead of promoting it.
        #[arg(long)]
        learner: bool,
    },
    /// Make a learner a voter.
    #[command(after_help = "Examples:\n  docket member promote 4")]
    Promote {
        /// Node id of the learner.
        #[arg(value_name = "ID")]
        id: u64,
    },
    /// Remove a member. Refused if it would leave the cluster without a quorum.
    #[command(after_help = "Examples:\n  docket member remove 3")]
    Remove {
        /// Node id of the member.
        #[arg(value_name = "ID")]
        id: u64,
    },
    /// List the members with their addresses (and, from the leader, their lag).
    #[command(after_help = "Examples:\n  docket member list\n  docket member list --output json")]
    List,
}

#[derive(Clone, Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the key file (created with mode 0600).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: PathBuf,
    /// Replace an existing file. The key it held is lost.
    #[arg(long)]
    pub force: bool,
}

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
}

#[derive(Clone, Debug, Subcommand)]
#[command(
    after_help = "Examples:\n  docket ledger tail -n 20 --follow\n  docket ledger get 12\n  \
    docket ledger verify"
)]
pub enum LedgerCommand {
    /// Print the last entries, and with --follow keep printing new ones.
    #[command(after_help = "Examples:\n  \
        docket ledger tail\n  \
        docket ledger tail -n 50\n  \
        docket ledger tail -n 0 --follow --output json   # new entries as JSON lines")]
    Tail {
        /// How many of the last entries to print.
        #[arg(short = 'n', long = "entries", value_name = "N", default_value_t = 10)]
        entries: u64,
        /// Keep polling for new entries until interrupted.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Print one entry in full.
    #[command(
        after_help = "Examples:\n  docket ledger get 0   # the genesis entry\n  \
        docket ledger get 12 --output json"
    )]
    Get {
        /// Ledger index (0 is genesis).
        #[arg(value_name = "INDEX")]
        index: u64,
    },
    /// Fetch the whole ledger, verify its hash chain and re-adjudicate every decision.
    #[command(after_help = "Examples:\n  \
        docket ledger verify\n  \
        docket ledger verify --node http://127.0.0.1:8003\n\n\
        Holds the whole ledger in memory. Exits non-zero at the first entry that fails.")]
    Verify,
}

#[derive(Clone, Debug, Subcommand)]
#[command(after_help = "Examples:\n  docket state get settlement stl-0001")]
pub enum StateCommand {
    /// Print a subject's lifecycle state and data.
    #[command(after_help = "Examples:\n  \
        docket state get settlement stl-0001\n  \
        docket state get kes kes-main --local   # this node's state, possibly stale")]
    Get {
        /// Domain, e.g. settlement.
        #[arg(value_name = "DOMAIN")]
        domain: String,
        /// Subject, e.g. stl-0001.
        #[arg(value_name = "SUBJECT")]
        subject: String,
        /// Read this node's applied state without asking the leader (fast, possibly stale).
        #[arg(long)]
        local: bool,
    },
}

#[derive(Clone, Debug, Subcommand)]
#[command(after_help = "Examples:\n  docket constitution show\n  \
    docket constitution amend --key grace.key --file v2.toml --subject amend-1\n  \
    docket constitution approve --key heidi.key --subject amend-1")]
pub enum ConstitutionCommand {
    /// Show the active constitution's name, version and history.
    #[command(after_help = "Examples:\n  \
        docket constitution show\n  \
        docket constitution show --document > active.toml")]
    Show {
        /// Print the active TOML document instead.
        #[arg(long)]
        document: bool,
    },
    /// Propose a new constitution document (a governor's CONSTITUTION.AMEND) amending the
    /// active version.
    #[command(after_help = "Examples:\n  \
        docket constitution show --document > v2.toml   # edit it, then:\n  \
        docket constitution amend --key grace.key --file v2.toml --subject amend-1\n\n\
        The amendment is adopted once the active constitution's quorum of governors approve it\n\
        with `docket constitution approve`.")]
    Amend(AmendArgs),
    /// Approve a pending amendment (a governor's CONSTITUTION.APPROVE).
    #[command(after_help = "Examples:\n  \
        docket constitution approve --key heidi.key --subject amend-1")]
    Approve(ApproveArgs),
}

#[derive(Clone, Debug, Args)]
pub struct AmendArgs {
    #[command(flatten)]
    pub sign: SignArgs,
    /// The new constitution document (TOML). It is validated before it is sent.
    #[arg(long, value_name = "NEW.toml")]
    pub file: PathBuf,
    /// Name of the amendment: the subject approvals refer to.
    #[arg(long, value_name = "NAME")]
    pub subject: String,
}

#[derive(Clone, Debug, Args)]
pub struct ApproveArgs {
    #[command(flatten)]
    pub sign: SignArgs,
    /// Name of the amendment to approve.
    #[arg(long, value_name = "NAME")]
    pub subject: String,
}

// ---------------------------------------------------------------------------------------
// Dispatch
// ---------------------------------------------------------------------------------------

/// Runs one operator command against the node in `args`.
pub async fn run(args: &ClientArgs, command: ClientCommand) -> anyhow::Result<()> {
    let output = args.output;
    match command {
        ClientCommand::Keygen(keygen) => run_keygen(&keygen, output),
        ClientCommand::Cluster(ClusterCommand::Init { constitution }) => {
            cluster_init(
                &args.client(REQUEST_TIMEOUT_MS_DEFAULT)?,
                constitution,
                output,
            )
            .await
        }
        ClientCommand::Member(member) => {
            let default_ms = match member {
                MemberCommand::Add { .. } => MEMBER_ADD_TIMEOUT_MS_DEFAULT,
                _ => REQUEST_TIMEOUT_MS_DEFAULT,
            };
            run_member(&args.client(default_ms)?, member, output).await
        }
        ClientCommand::Status => status(&args.client(REQUEST_TIMEOUT_MS_DEFAULT)?, output).await,
        ClientCommand::Propose(propose) => {
            run_propose(&args.client(REQUEST_TIMEOUT_MS_DEFAULT)?, &propose, output).await
        }
        ClientCommand::Ledger(ledger) => {
            let client = args.client(REQUEST_TIMEOUT_MS_DEFAULT)?;
            match ledger {
                LedgerCommand::Tail { entries, follow } => {
                    ledger_tail(&client, entries, follow, output).await
                }
                LedgerCommand::Get { index } => ledger_get(&client, index, output).await,
                LedgerCommand::Verify => ledger_verify(&client, output).await,
            }
        }
        ClientCommand::State(StateCommand::Get {
            domain,
            subject,
            local,
        }) => {
            let client = args.client(REQUEST_TIMEOUT_MS_DEFAULT)?;
            state_get(&client, &domain, &subject, local, output).await
        }
        ClientCommand::Execution(ExecutionCommand::Show { id }) => {
            let client = args.client(REQUEST_TIMEOUT_MS_DEFAULT)?;
            execution_show(&client, &id, output).await
        }
        ClientCommand::Constitution(constitution) => {
            let client = args.client(REQUEST_TIMEOUT_MS_DEFAULT)?;
            match constitution {
                ConstitutionCommand::Show { document } => {
                    constitution_show(&client, document, output).await
                }
                ConstitutionCommand::Amend(amend) => {
                    constitution_amend(&client, &amend, output).await
                }
                ConstitutionCommand::Approve(approve) => {
                    constitution_approve(&client, &approve, output).await
                }
            }
        }
    }
}

fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value).context("cannot encode the answer as JSON")?;
    say!("{text}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// cluster, member
// ---------------------------------------------------------------------------------------

async fn cluster_init(
    client: &Client,
    constitution: Option<PathBuf>,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let document = match &constitution {
        Some(path) => Some(read_constitution_file(path)?),
        None => None,
    };
    let status = client
        .init(InitRequest {
            constitution: document,
        })
        .await
        .with_context(|| format!("cannot initialize the cluster at {}", client.base_url()))?;
    if output == OutputFormat::Json {
        return print_json(&status);
    }
    let source = match &constitution {
        Some(path) => path.display().to_string(),
        None => "the built-in default".to_owned(),
    };
    say!(
        "initialized ledger {} on node {} with {source} constitution",
        status.cluster_id,
        status.node_id
    );
    if let Some(version) = status.constitution_version {
        say!("constitution version {version}");
    }
    say!(
        "ledger length {}; add nodes with `docket member add`",
        status.ledger_length
    );
    Ok(())
}

/// Reads a constitution document and validates it locally, so a typo is reported with its
/// line before anything is sent.
fn read_constitution_file(path: &Path) -> anyhow::Result<String> {
    let document = read_limited(path, CONSTITUTION_FILE_BYTES_MAX, "constitution file")?;
    Constitution::parse(&document)
        .map_err(|error| anyhow!("{} is not a valid constitution: {error}", path.display()))?;
    Ok(document)
}

async fn run_member(
    client: &Client,
    command: MemberCommand,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let (members, done) = match command {
        MemberCommand::Add {
            id,
            raft_addr,
            api_addr,
            learner,
        } => {
            let request = AddMemberRequest {
                id,
                raft_addr,
                api_addr,
                learner,
            };
            let members = client
                .add_member(request)
                .await
                .with_context(|| format!("cannot add node {id}"))?;
            let role = if learner { "a learner" } else { "a voter" };
            (members, Some(format!("node {id} added as {role}")))
        }
        MemberCommand::Promote { id } => {
            let members = client
                .promote(id)
                .await
                .with_context(|| format!("cannot promote node {id}"))?;
            (members, Some(format!("node {id} is now a voter")))
        }
        MemberCommand::Remove { id } => {
            let members = client
                .remove_member(id)
                .await
                .with_context(|| format!("cannot remove node {id}"))?;
            (members, Some(format!("node {id} removed")))
        }
        MemberCommand::List => {
            let members = client.members().await.context("cannot list the members")?;
            (members, None)
        }
    };
    if output == OutputFormat::Json {
        return print_json(&members);
    }
    if let Some(done) = done {
        say!("{done}");
    }
    say!("{}", members_table(&members.members));
    Ok(())
}

fn members_table(members: &[MemberView]) -> String {
    let mut table = format!(
        "{:<4} {:<8} {:<22} {:<22} {:>8} {:>6}",
        "ID", "KIND", "RAFT ADDR", "API ADDR", "MATCHED", "LAG"
    );
    for member in members {
        let _ = write!(
            table,
            "\n{:<4} {:<8} {:<22} {:<22} {:>8} {:>6}",
            member.id,
            if member.voter { "voter" } else { "learner" },
            member.raft_addr,
            member.api_addr,
            optional(member.matched_index),
            optional(member.lag),
        );
    }
    table
}

fn optional(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

// ---------------------------------------------------------------------------------------
// status
// ---------------------------------------------------------------------------------------

/// One member as `docket status` saw it.
#[derive(Debug, Serialize)]
struct MemberProbe {
    id: u64,
    api_addr: String,
    voter: bool,
    /// Log entries behind the leader, from the leader's view.
    lag: Option<u64>,
    status: Option<StatusView>,
    error: Option<String>,
}

/// What `docket status --output json` prints.
#[derive(Debug, Serialize)]
struct ClusterStatus {
    node: StatusView,
    members: Vec<MemberProbe>,
    /// False when two nodes at the same ledger length report different state hashes.
    state_hashes_agree: bool,
}

async fn status(client: &Client, output: OutputFormat) -> anyhow::Result<()> {
    let node = client
        .status()
        .await
        .context("cannot read the node's status")?;
    let probes = futures::future::join_all(node.members.iter().map(|member| async move {
        let result = match client.at(&member.api_addr) {
            Ok(member_client) => member_client.status().await,
            Err(error) => Err(error),
        };
        (member.clone(), result)
    }))
    .await;

    // Lag as the leader sees it: from whichever answer came from the leader.
    let leader_members: Vec<MemberView> = std::iter::once(&node)
        .chain(probes.iter().filter_map(|(_, r)| r.as_ref().ok()))
        .find(|s| s.role == "leader")
        .map(|s| s.members.clone())
        .unwrap_or_default();
    let members: Vec<MemberProbe> = probes
        .into_iter()
        .map(|(member, result)| {
            let lag = leader_members
                .iter()
                .find(|m| m.id == member.id)
                .and_then(|m| m.lag);
            let (status, error) = match result {
                Ok(status) => (Some(status), None),
                Err(error) => (None, Some(error.to_string())),
            };
            MemberProbe {
                id: member.id,
                api_addr: member.api_addr,
                voter: member.voter,
                lag,
                status,
                error,
            }
        })
        .collect();
    let agreement = Agreement::of(members.iter().filter_map(|m| {
        let status = m.status.as_ref()?;
        Some((m.id, status.ledger_length, status.state_hash?))
    }));

    if output == OutputFormat::Json {
        print_json(&ClusterStatus {
            node,
            members,
            state_hashes_agree: agreement.agrees(),
        })?;
    } else {
        print_status(&node, &members, &agreement)?;
    }
    if let Some(divergence) = agreement.divergence() {
        bail!("{divergence}");
    }
    Ok(())
}

fn print_status(
    node: &StatusView,
    members: &[MemberProbe],
    agreement: &Agreement,
) -> anyhow::Result<()> {
    say!(
        "node {} of ledger {}: {}, term {}",
        node.node_id,
        node.cluster_id,
        node.role,
        node.term
    );
    if !node.initialized {
        say!("not initialized: run `docket cluster init` on one node, then `docket member add`");
        return Ok(());
    }
    match (node.leader_id, &node.leader_api_addr) {
        (Some(id), Some(addr)) => say!("leader  node {id} at {addr}"),
        (Some(id), None) => say!("leader  node {id}"),
        (None, _) => say!("leader  none known (election in progress, or no quorum)"),
    }
    say!(
        "log     last index {}, applied {}",
        optional(node.last_log_index),
        optional(node.applied_index)
    );
    say!(
        "ledger  {} entries, state {}, constitution {}, {} deferred",
        node.ledger_length,
        node.state_hash
            .map_or_else(|| "-".to_owned(), |h| h.short()),
        node.constitution_version
            .map_or_else(|| "-".to_owned(), |v| v.short()),
        node.deferred
    );
    say!("");
    say!(
        "{:<4} {:<10} {:<8} {:>8} {:>8} {:>6}  {}",
        "ID",
        "ROLE",
        "KIND",
        "APPLIED",
        "LEDGER",
        "LAG",
        "STATE HASH"
    );
    for member in members {
        let kind = if member.voter { "voter" } else { "learner" };
        match (&member.status, &member.error) {
            (Some(s), _) => say!(
                "{:<4} {:<10} {:<8} {:>8} {:>8} {:>6}  {}",
                member.id,
                s.role,
                kind,
                optional(s.applied_index),
                s.ledger_length,
                optional(member.lag),
                s.state_hash.map_or_else(|| "-".to_owned(), |h| h.short())
            ),
            (None, error) => say!(
                "{:<4} {:<10} {:<8} unreachable at {}: {}",
                member.id,
                "?",
                kind,
                member.api_addr,
                error.as_deref().unwrap_or("no answer")
            ),
        }
    }
    say!("");
    say!("{}", agreement.summary());
    Ok(())
}

/// Whether the nodes that answered agree on the state hash at each ledger length.
#[derive(Debug, Default)]
struct Agreement {
    /// ledger length -> state hash -> node ids reporting it.
    by_length: BTreeMap<u64, BTreeMap<StateHash, Vec<u64>>>,
}

impl Agreement {
    fn of(reports: impl IntoIterator<Item = (u64, u64, StateHash)>) -> Agreement {
        let mut agreement = Agreement::default();
        for (id, length, hash) in reports {
            agreement
                .by_length
                .entry(length)
                .or_default()
                .entry(hash)
                .or_default()
                .push(id);
        }
        agreement
    }

    fn agrees(&self) -> bool {
        self.by_length.values().all(|hashes| hashes.len() <= 1)
    }

    /// The first ledger length at which nodes disagree, described.
    fn divergence(&self) -> Option<String> {
        let (length, hashes) = self.by_length.iter().find(|(_, h)| h.len() > 1)?;
        let sides: Vec<String> = hashes
            .iter()
            .map(|(hash, ids)| format!("{} on {}", hash.short(), node_list(ids)))
            .collect();
        Some(format!(
            "STATE HASHES DISAGREE at ledger length {length}: {} — the replicas diverged; stop \
             writes and compare their ledgers with `docket ledger verify --node URL`",
            sides.join(" vs ")
        ))
    }

    fn summary(&self) -> String {
        if let Some(divergence) = self.divergence() {
            return divergence;
        }
        match self.by_length.len() {
            0 => "no node reported a state hash".to_owned(),
            1 => {
                let (length, hashes) = self.by_length.iter().next().expect("invariant: one length");
                let (hash, ids) = hashes.iter().next().expect("invariant: one hash");
                format!(
                    "state hashes agree: {} at ledger length {length}, state {}",
                    node_list(ids),
                    hash.short()
                )
            }
            _ => {
                let groups: Vec<String> = self
                    .by_length
                    .iter()
                    .rev()
                    .map(|(length, hashes)| {
                        let ids: Vec<u64> = hashes.values().flatten().copied().collect();
                        format!("{} at length {length}", node_list(&ids))
                    })
                    .collect();
                format!(
                    "state hashes agree at every shared ledger length; some nodes are catching \
                     up ({})",
                    groups.join("; ")
                )
            }
        }
    }
}

fn node_list(ids: &[u64]) -> String {
    let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
    let noun = if ids.len() == 1 { "node" } else { "nodes" };
    format!("{noun} {}", ids.join(", "))
}

// ---------------------------------------------------------------------------------------
// keys
// ---------------------------------------------------------------------------------------

fn run_keygen(args: &KeygenArgs, output: OutputFormat) -> anyhow::Result<()> {
    let key = generate_signing_key()?;
    write_key_file(&args.out, &key, args.force)?;
    let public = public_key(&key);
    if output == OutputFormat::Json {
        #[derive(Serialize)]
        struct Keygen<'a> {
            path: &'a Path,
            public_key: docket_core::PublicKey,
        }
        return print_json(&Keygen {
            path: &args.out,
            public_key: public,
        });
    }
    say!("wrote {} (mode 0600); keep it secret", args.out.display());
    say!("public key {public}");
    Ok(())
}

/// A fresh ed25519 signing key from the operating system's random source.
pub fn generate_signing_key() -> anyhow::Result<SigningKey> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).context("cannot read the operating system's randomness")?;
    let key = SigningKey::from_bytes(&seed);
    seed.fill(0);
    Ok(key)
}

/// The key file form of `key`.
pub fn key_file(key: &SigningKey) -> KeyFile {
    KeyFile {
        public_key: public_key(key),
        secret_key: hex::encode(key.to_bytes()),
    }
}

/// Writes `key` to `path` with mode 0600. Refuses to replace an existing file unless `force`;
/// with `force` the new file is written beside it and renamed over it, so a crash leaves the
/// old key or the new one, never half of one.
pub fn write_key_file(path: &Path, key: &SigningKey, force: bool) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(&key_file(key)).context("cannot encode key")?;
    text.push('\n');
    let write = |target: &Path| -> std::io::Result<()> {
        let mut file = create_private(target)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    };
    if !force {
        return write(path).map_err(|error| {
            if error.kind() == std::io::ErrorKind::AlreadyExists {
                anyhow!(
                    "{} already exists: refusing to overwrite a key file (pass --force to \
                     replace it; the key it holds is lost)",
                    path.display()
                )
            } else {
                anyhow!("cannot write key file {}: {error}", path.display())
            }
        });
    }
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?;
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(name);
    temporary_name.push(".tmp");
    let temporary = path.with_file_name(temporary_name);
    let _ = fs::remove_file(&temporary); // A leftover from an interrupted run.
    write(&temporary)
        .and_then(|()| fs::rename(&temporary, path))
        .map_err(|error| {
            let _ = fs::remove_file(&temporary);
            anyhow!("cannot write key file {}: {error}", path.display())
        })
}

#[cfg(unix)]
fn create_private(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// Reads a key file written by [`write_key_file`]. Refuses a file that group or others can
/// access, one that is not a key file, and one whose public key does not match its secret.
pub fn read_key_file(path: &Path) -> anyhow::Result<SigningKey> {
    check_private(path)?;
    let text = read_limited(path, KEY_FILE_BYTES_MAX, "key file")?;
    let file: KeyFile = serde_json::from_str(&text).map_err(|error| {
        anyhow!(
            "{} is not a docket key file ({error}); create one with `docket keygen --out FILE`",
            path.display()
        )
    })?;
    let seed = decode_hex::<32>(&file.secret_key).map_err(|_| {
        anyhow!(
            "key file {}: secret_key must be 64 lowercase hex characters",
            path.display()
        )
    })?;
    let key = SigningKey::from_bytes(&seed);
    if public_key(&key) != file.public_key {
        bail!(
            "key file {}: public_key does not match secret_key (the file was edited or damaged)",
            path.display()
        );
    }
    Ok(key)
}

#[cfg(unix)]
fn check_private(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let metadata =
        fs::metadata(path).with_context(|| format!("cannot read key file {}", path.display()))?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "key file {} is accessible by other users (mode {mode:04o}); run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> anyhow::Result<()> {
    Ok(())
}

/// Reads a UTF-8 file of at most `bytes_max` bytes.
fn read_limited(path: &Path, bytes_max: u64, what: &str) -> anyhow::Result<String> {
    let metadata =
        fs::metadata(path).with_context(|| format!("cannot read {what} {}", path.display()))?;
    if metadata.len() > bytes_max {
        bail!(
            "{what} {} is {} bytes, over the limit of {bytes_max}",
            path.display(),
            metadata.len()
        );
    }
    fs::read_to_string(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

// ---------------------------------------------------------------------------------------
// propose
// ---------------------------------------------------------------------------------------

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

fn empty_map() -> Value {
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
            format: ProposalFormat::V1,
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
fn domain_of(action: &str) -> String {
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
    args: &ProposeArgs,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let key = read_key_file(&args.sign.key)?;
    let draft = args.proposal_file()?;
    sign_and_submit(client, &args.sign, &draft, &key, output).await?;
    Ok(())
}

/// Signs `draft` as `key` for the ledger, submits it and prints the recorded decision.
async fn sign_and_submit(
    client: &Client,
    sign: &SignArgs,
    draft: &ProposalFile,
    key: &SigningKey,
    output: OutputFormat,
) -> anyhow::Result<SubmitResponse> {
    let (ledger_id, others) = ledger_and_members(client, sign.ledger_id.as_ref()).await?;
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

// ---------------------------------------------------------------------------------------
// ledger
// ---------------------------------------------------------------------------------------

fn print_entry_line(entry: &LedgerEntry, output: OutputFormat) -> anyhow::Result<()> {
    match output {
        OutputFormat::Text => say!("{entry}"),
        OutputFormat::Json => {
            let line = serde_json::to_string(entry).context("cannot encode an entry as JSON")?;
            say!("{line}");
        }
    }
    Ok(())
}

/// Prints every entry from `from` to the current end; returns the index after the last.
async fn print_from(client: &Client, mut from: u64, output: OutputFormat) -> anyhow::Result<u64> {
    loop {
        let page = client
            .ledger(from, LEDGER_PAGE_ENTRIES)
            .await
            .with_context(|| format!("cannot read the ledger from index {from}"))?;
        for entry in &page.entries {
            print_entry_line(entry, output)?;
        }
        from += page.entries.len() as u64;
        match page.next {
            Some(next) if !page.entries.is_empty() => from = next.0,
            _ => return Ok(from),
        }
    }
}

async fn ledger_tail(
    client: &Client,
    entries: u64,
    follow: bool,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let length = client
        .ledger(0, 1)
        .await
        .context("cannot read the ledger")?
        .length;
    let mut from = length.saturating_sub(entries);
    if entries > 0 {
        from = print_from(client, from, output).await?;
    } else {
        from = length;
    }
    if !follow {
        return Ok(());
    }
    loop {
        tokio::time::sleep(Duration::from_millis(FOLLOW_POLL_MS)).await;
        from = print_from(client, from, output).await?;
    }
}

async fn ledger_get(client: &Client, index: u64, output: OutputFormat) -> anyhow::Result<()> {
    let page = client
        .ledger(index, 1)
        .await
        .with_context(|| format!("cannot read ledger entry {index}"))?;
    let Some(entry) = page.entries.into_iter().find(|e| e.index.0 == index) else {
        bail!(
            "there is no entry {index}: the ledger has {} entries (indexes 0 to {})",
            page.length,
            page.length.saturating_sub(1)
        );
    };
    if output == OutputFormat::Json {
        return print_json(&entry);
    }
    say!("{}", describe_entry(&entry));
    Ok(())
}

/// Every field of an entry, one per line.
fn describe_entry(entry: &LedgerEntry) -> String {
    let mut text = format!("{entry}\n");
    let mut line = |name: &str, value: &dyn std::fmt::Display| {
        let _ = writeln!(text, "  {name:<13} {value}");
    };
    line("index", &entry.index);
    line("time", &entry.time);
    line("hash", &entry.hash);
    line("prev_hash", &entry.prev_hash);
    line("constitution", &entry.constitution);
    match &entry.record {
        Record::Genesis {
            ledger_id,
            document,
        } => {
            line("record", &"genesis");
            line("ledger_id", ledger_id);
            line(
                "document",
                &format!(
                    "{} bytes (`docket constitution show --document`)",
                    document.len()
                ),
            );
        }
        Record::Decision(record) => {
            let p = &record.proposal.proposal;
            let cause = match record.cause {
                Cause::Submitted => "submitted".to_owned(),
                Cause::Released { wave } => format!("released in wave {wave}"),
                Cause::Expired => "deferral expired".to_owned(),
            };
            line("proposal", &record.id);
            line("cause", &cause);
            line("decision", &record.decision);
            line("access", &record.access);
            line("domain", &p.domain);
            line("action", &p.action);
            line("subject", &p.subject);
            line("payload", &p.payload);
            let deps: Vec<String> = p.dependencies.iter().map(ProposalId::to_hex).collect();
            line(
                "dependencies",
                &if deps.is_empty() {
                    "none".to_owned()
                } else {
                    deps.join(", ")
                },
            );
            line("author", &p.author);
            line("nonce", &p.nonce);
            line("ledger_id", &p.ledger_id);
            line("signature", &record.proposal.signature);
        }
    }
    text.trim_end().to_owned()
}

/// What `docket ledger verify --output json` prints.
#[derive(Debug, Serialize)]
struct VerifyReport {
    entries: u64,
    commands: u64,
    state_hash: StateHash,
    /// Whether the node reports the same state hash at the same ledger length; `None` when
    /// its ledger grew while it was being read.
    node_state_hash_matches: Option<bool>,
}

/// How long `docket propose` keeps resending the same signed proposal (to this node, the
/// leader, then the other members) while its outcome is unknown or no leader can take it.
pub const SUBMIT_SETTLE_MS_MAX: u64 = 30_000;

/// How often `ledger verify` reports its progress on stderr.
const VERIFY_PROGRESS_INTERVAL_MS: u64 = 2_000;

/// Streams the ledger page by page through an [`Auditor`]: memory holds one page of
/// entries and the audit's state, never the whole ledger.
async fn ledger_verify(client: &Client, output: OutputFormat) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut reported = started;
    let mut auditor = Auditor::new();
    loop {
        let from = auditor.entries();
        let page = client
            .ledger(from, LEDGER_PAGE_ENTRIES)
            .await
            .with_context(|| format!("cannot read the ledger from index {from}"))?;
        if page.entries.is_empty() {
            break;
        }
        let (more, length) = (page.next.is_some(), page.length);
        // Re-adjudication checks every signature: CPU work, kept off the async threads.
        auditor = tokio::task::spawn_blocking(move || {
            for entry in &page.entries {
                auditor.push(entry).map_err(|error| {
                    anyhow!(
                        "ledger verification FAILED at index {}: {error}",
                        entry.index
                    )
                })?;
            }
            Ok::<_, anyhow::Error>(auditor)
        })
        .await
        .context("the audit task failed")??;
        if reported.elapsed() >= Duration::from_millis(VERIFY_PROGRESS_INTERVAL_MS) {
            reported = std::time::Instant::now();
            let rate = auditor.entries() as f64 / started.elapsed().as_secs_f64().max(1e-3);
            eprintln!(
                "verified {} of {length} entries ({rate:.0} entries/s)",
                auditor.entries(),
            );
        }
        if !more {
            break;
        }
    }
    if auditor.entries() == 0 {
        bail!("the ledger is empty: the cluster is not initialized (`docket cluster init`)");
    }
    let length = auditor.entries();
    let (state, report) = auditor
        .finish()
        .map_err(|error| anyhow!("ledger audit FAILED: {error}"))?;
    let state_hash = tokio::task::spawn_blocking(move || state.hash())
        .await
        .context("the state hash task failed")?;

    let status = client
        .status()
        .await
        .context("the ledger verified, but the node's status cannot be read")?;
    let node_state_hash_matches =
        (status.ledger_length == length).then(|| status.state_hash == Some(state_hash));

    if output == OutputFormat::Json {
        print_json(&VerifyReport {
            entries: report.entries,
            commands: report.commands,
            state_hash,
            node_state_hash_matches,
        })?;
    } else {
        say!(
            "{} entries verified, audit reproduced every decision ({} commands)",
            report.entries,
            report.commands
        );
        say!("state hash {state_hash}");
        match node_state_hash_matches {
            Some(true) => say!("node {} reports the same state hash", status.node_id),
            Some(false) => {}
            None => say!(
                "node {} is now at ledger length {}; its state hash was not compared",
                status.node_id,
                status.ledger_length
            ),
        }
    }
    if node_state_hash_matches == Some(false) {
        bail!(
            "node {} reports state hash {} at ledger length {length}, but replaying its ledger \
             gives {state_hash}: its state diverged from its own ledger",
            status.node_id,
            status
                .state_hash
                .map_or_else(|| "none".to_owned(), |h| h.to_hex()),
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// state, constitution
// ---------------------------------------------------------------------------------------

async fn execution_show(client: &Client, id: &str, output: OutputFormat) -> anyhow::Result<()> {
    let id: ProposalId = id
        .parse()
        .map_err(|e| anyhow::anyhow!("proposal id: {e}"))?;
    let view = client
        .execution(id)
        .await
        .with_context(|| format!("cannot read execution evidence for {id}"))?;
    if output == OutputFormat::Json {
        return print_json(&view);
    }
    if !view.enabled {
        say!(
            "node {} runs no execution agent ([execution] enabled = false)",
            view.node_id
        );
        return Ok(());
    }
    let Some(job) = &view.job else {
        say!("node {} holds no execution job for {id}", view.node_id);
        return Ok(());
    };
    say!("{}", serde_json::to_string_pretty(job)?);
    Ok(())
}

async fn state_get(
    client: &Client,
    domain: &str,
    subject: &str,
    local: bool,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let consistency = if local {
        Consistency::Local
    } else {
        Consistency::Linearizable
    };
    let view = client
        .state(domain, subject, consistency)
        .await
        .with_context(|| format!("cannot read the state of {domain}/{subject}"))?;
    if output == OutputFormat::Json {
        return print_json(&view);
    }
    let read = match view.consistency {
        Consistency::Linearizable => "linearizable read",
        Consistency::Local => "local read, possibly stale",
    };
    let Some(state) = &view.state else {
        say!(
            "{}/{}: {} (untouched: no proposal has moved it from the initial state)",
            view.domain,
            view.subject,
            view.initial_state
        );
        say!("  as of ledger length {} ({read})", view.as_of_length);
        return Ok(());
    };
    say!("{}/{}: {}", view.domain, view.subject, state.state);
    say!("  as of ledger length {} ({read})", view.as_of_length);
    say!("  last changed by entry #{}", state.last_index);
    for (field, value) in &state.fields {
        say!("  {field} = {value}");
    }
    for (action, keys) in &state.approvals {
        let keys: Vec<String> = keys.iter().map(|k| k.short()).collect();
        say!(
            "  {action}: {} approval(s) so far from {}",
            keys.len(),
            keys.join(", ")
        );
    }
    Ok(())
}

async fn constitution_show(
    client: &Client,
    document: bool,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let view = client
        .constitution()
        .await
        .context("cannot read the constitution")?;
    if output == OutputFormat::Json {
        return print_json(&view);
    }
    if document {
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(view.document.as_bytes())
            .context("cannot write to stdout")?;
        return Ok(());
    }
    say!("{}", view.name);
    say!("  version     {}", view.version);
    say!("  adopted at  entry #{}", view.adopted_at);
    say!("  history");
    for (index, version) in &view.history {
        say!("    #{index:<6} {version}");
    }
    say!("  (`docket constitution show --document` prints the TOML)");
    Ok(())
}

async fn constitution_amend(
    client: &Client,
    args: &AmendArgs,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let key = read_key_file(&args.sign.key)?;
    let document = read_constitution_file(&args.file)?;
    let active = client
        .constitution()
        .await
        .context("cannot read the active constitution version")?;
    let draft = ProposalFile {
        domain: DOMAIN_CONSTITUTION.to_owned(),
        action: ACTION_AMEND.to_owned(),
        subject: args.subject.clone(),
        payload: Value::map([
            ("document", Value::Str(document)),
            ("parent", Value::Str(active.version.to_hex())),
        ]),
        dependencies: vec![],
        nonce: None,
    };
    let response = sign_and_submit(client, &args.sign, &draft, &key, output).await?;
    if output == OutputFormat::Text && is_admitted(&response) {
        say!(
            "amendment {:?} of version {} is pending: governors approve it with \
             `docket constitution approve --subject {} --key FILE`",
            args.subject,
            active.version.short(),
            args.subject
        );
    }
    Ok(())
}

async fn constitution_approve(
    client: &Client,
    args: &ApproveArgs,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let key = read_key_file(&args.sign.key)?;
    let draft = ProposalFile {
        domain: DOMAIN_CONSTITUTION.to_owned(),
        action: ACTION_APPROVE.to_owned(),
        subject: args.subject.clone(),
        payload: empty_map(),
        dependencies: vec![],
        nonce: None,
    };
    let response = sign_and_submit(client, &args.sign, &draft, &key, output).await?;
    if output == OutputFormat::Text && is_admitted(&response) {
        let amendment = client
            .state(
                DOMAIN_CONSTITUTION,
                &args.subject,
                Consistency::Linearizable,
            )
            .await
            .context("the approval was recorded, but the amendment's state cannot be read")?;
        let active = client
            .constitution()
            .await
            .context("the approval was recorded, but the constitution cannot be read")?;
        match amendment.state {
            Some(state) if state.state == "adopted" => say!(
                "amendment {:?} adopted: the active constitution is now {} ({}), from entry #{}",
                args.subject,
                active.version,
                active.name,
                active.adopted_at
            ),
            Some(state) => {
                let approvals = state.approvals.get(ACTION_APPROVE).map_or(0, |k| k.len());
                say!(
                    "amendment {:?} is {} with {approvals} approval(s) so far; the active \
                     constitution is still {} ({})",
                    args.subject,
                    state.state,
                    active.version.short(),
                    active.name
                );
            }
            None => {}
        }
    }
    Ok(())
}

fn is_admitted(response: &SubmitResponse) -> bool {
    response
        .entry
        .decision_record()
        .is_some_and(|record| record.decision == docket_core::Decision::Admit)
}

/// The node's error behind a failed command, when the failure came from the node: `main.rs`
/// can choose an exit code from it (`ClientError::Api` vs `Unreachable` vs `Timeout`).
pub fn client_error(error: &anyhow::Error) -> Option<&ClientError> {
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<ClientError>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    /// The client commands as a standalone program, as `main.rs` composes them.
    #[derive(Debug, Parser)]
    #[command(name = "docket")]
    struct ClientCli {
        #[command(flatten)]
        args: ClientArgs,
        #[command(subcommand)]
        command: ClientCommand,
    }

    fn parse(argv: &[&str]) -> Result<ClientCli, clap::Error> {
        ClientCli::try_parse_from(std::iter::once("docket").chain(argv.iter().copied()))
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        ClientCli::command().debug_assert();
    }

    #[test]
    fn every_command_has_help_and_examples() {
        fn check(command: &clap::Command, path: &str) {
            for sub in command.get_subcommands() {
                let path = format!("{path} {}", sub.get_name());
                assert!(sub.get_about().is_some(), "`{path}` has no help text");
                let after = sub
                    .get_after_help()
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                assert!(
                    after.contains("Examples:"),
                    "`{path}` has no Examples: section"
                );
                for arg in sub.get_arguments() {
                    assert!(
                        arg.get_help().is_some(),
                        "`{path}` argument {} has no help text",
                        arg.get_id()
                    );
                }
                check(sub, &path);
            }
        }
        check(&ClientCli::command(), "docket");
    }

    #[test]
    fn global_options_parse_after_the_subcommand() {
        let cli = parse(&[
            "ledger",
            "tail",
            "-n",
            "3",
            "--output",
            "json",
            "--node",
            "http://127.0.0.1:8002",
            "--timeout-ms",
            "250",
        ])
        .expect("parses");
        assert_eq!(cli.args.output, OutputFormat::Json);
        assert_eq!(cli.args.node, "http://127.0.0.1:8002");
        assert_eq!(cli.args.timeout_ms, Some(250));
        assert!(matches!(
            cli.command,
            ClientCommand::Ledger(LedgerCommand::Tail {
                entries: 3,
                follow: false
            })
        ));
        assert!(
            parse(&["status", "--timeout-ms", "0"]).is_err(),
            "0 ms is refused"
        );
    }

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

    const DEPOSIT: &str = r#"{ "domain": "settlement", "action": "SETTLEMENT.DEPOSIT_CONFIRMED",
        "subject": "stl-0001",
        "payload": { "amount": 125000, "currency": "EUR", "rail_ref": "dep-77" },
        "dependencies": [], "nonce": 1 }"#;

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

    #[test]
    fn keygen_round_trips_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("alice.key");
        let key = generate_signing_key().expect("randomness");
        write_key_file(&path, &key, false).expect("writes");
        let read = read_key_file(&path).expect("reads");
        assert_eq!(read.to_bytes(), key.to_bytes());

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&path).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        let other = generate_signing_key().expect("randomness");
        assert_ne!(other.to_bytes(), key.to_bytes(), "fresh randomness");
        let error = write_key_file(&path, &other, false).expect_err("exists");
        let text = format!("{error:#}");
        assert!(text.contains("already exists"), "{text}");
        assert!(text.contains("--force"), "{text}");
        assert_eq!(
            read_key_file(&path).expect("reads").to_bytes(),
            key.to_bytes(),
            "the old key is untouched"
        );

        write_key_file(&path, &other, true).expect("--force replaces it");
        assert_eq!(
            read_key_file(&path).expect("reads").to_bytes(),
            other.to_bytes()
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path()).expect("ls").collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }

    #[cfg(unix)]
    #[test]
    fn key_files_readable_by_others_are_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.key");
        write_key_file(&path, &docket_core::dev::signing_key("alice"), false).expect("writes");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let text = format!("{:#}", read_key_file(&path).expect_err("too open"));
        assert!(
            text.contains("accessible by other users (mode 0644)"),
            "{text}"
        );
        assert!(text.contains("chmod 600"), "{text}");
    }

    #[test]
    fn malformed_key_files_are_refused_clearly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.key");
        let write = |text: &str| {
            let _ = fs::remove_file(&path);
            let mut file = create_private(&path).expect("create");
            file.write_all(text.as_bytes()).expect("write");
        };
        let good = key_file(&docket_core::dev::signing_key("alice"));
        let public = good.public_key.to_hex();

        write(&format!(
            r#"{{"public_key":"{public}","secret_key":"zz{}"}}"#,
            "0".repeat(62)
        ));
        let text = format!("{:#}", read_key_file(&path).expect_err("bad hex"));
        assert!(
            text.contains("secret_key must be 64 lowercase hex characters"),
            "{text}"
        );

        write(&format!(
            r#"{{"public_key":"{public}","secret_key":"{}"}}"#,
            "ab".repeat(32)
        ));
        let text = format!("{:#}", read_key_file(&path).expect_err("mismatch"));
        assert!(text.contains("does not match"), "{text}");

        write("not json");
        let text = format!("{:#}", read_key_file(&path).expect_err("not json"));
        assert!(text.contains("is not a docket key file"), "{text}");
        assert!(text.contains("docket keygen"), "{text}");

        let missing = dir.path().join("missing.key");
        let text = format!("{:#}", read_key_file(&missing).expect_err("missing"));
        assert!(text.contains("cannot read key file"), "{text}");
        assert!(text.contains("missing.key"), "{text}");
    }

    #[test]
    fn state_hash_agreement() {
        let (a, b) = (StateHash([1; 32]), StateHash([2; 32]));
        let agree = Agreement::of([(1, 40, a), (2, 40, a), (3, 38, b)]);
        assert!(agree.agrees());
        assert!(agree.divergence().is_none());
        assert!(agree
            .summary()
            .contains("nodes 1, 2 at length 40; node 3 at length 38"));

        let all = Agreement::of([(1, 40, a), (2, 40, a)]);
        assert!(all
            .summary()
            .starts_with("state hashes agree: nodes 1, 2 at ledger length 40"));

        let diverged = Agreement::of([(1, 40, a), (2, 40, b), (3, 40, a)]);
        assert!(!diverged.agrees());
        let text = diverged.divergence().expect("divergence");
        assert!(text.contains("DISAGREE at ledger length 40"), "{text}");
        assert!(text.contains("on nodes 1, 3"), "{text}");
        assert!(text.contains("on node 2"), "{text}");
    }

    #[test]
    fn entries_are_described_in_full() {
        let ledger = LedgerId::new("docket-local").expect("valid");
        let (mut state, genesis) = docket_core::State::genesis(
            ledger.clone(),
            docket_core::constitution::DEFAULT_DOCUMENT,
            docket_core::LedgerTime(1_000),
        )
        .expect("genesis");
        let text = describe_entry(&genesis);
        assert!(text.contains("GENESIS ledger=docket-local"), "{text}");
        assert!(text.contains("ledger_id     docket-local"), "{text}");

        let draft = ProposalFile::parse(DEPOSIT).expect("parses");
        let signed = draft.sign(ledger, 1, &docket_core::dev::signing_key("mallory"));
        let submission = state.submit(signed, docket_core::LedgerTime(2_000));
        let entry = &submission.entries()[0];
        let text = describe_entry(entry);
        assert!(text.contains("decision      REJECT UNAUTHORIZED"), "{text}");
        assert!(text.contains("subject       stl-0001"), "{text}");
        assert!(text.contains(r#"payload       {"amount":125000"#), "{text}");
    }
}
