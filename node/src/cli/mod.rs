//! The commands of the `docket` binary other than `demo` and `bench`: `serve`'s flags, and
//! the operator commands.
//!
//! Each operator command is a thin layer over [`Client`]: it builds a request, sends it to
//! the node named by `--node` (or `DOCKET_NODE`), and prints the answer for a human
//! (`--output text`, the default) or as the API's JSON (`--output json`). Errors come back as
//! `anyhow` errors whose chain, printed with `{:#}`, is one line saying what failed and what
//! to do.
//!
//! One file per command group, each with its arguments, its `run` and its tests:
//! `cluster.rs`, `member.rs`, `status.rs`, `keys.rs` (`keygen` and key files), `propose.rs`
//! (also signing and submitting for `constitution`), `ledger.rs`, `state.rs`,
//! `execution.rs`, `explain.rs`, `constitution.rs`, and `serve.rs`. This file holds the options every
//! command shares, the command list, the dispatch and the shared helpers; the public items
//! of the group files are re-exported here.
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
//!     Serve(docket_node::cli::ServeArgs),
//!     #[command(flatten)]
//!     Client(docket_node::cli::ClientCommand),
//! }
//! // Command::Serve(args) => docket_node::cli::serve(args).await
//! // Command::Client(cmd) => docket_node::cli::run(&cli.client, cmd).await
//! ```
//!
//! Key files (`docket keygen`) hold an ed25519 secret seed in hex. They are written with mode
//! 0600 and refused when group or others can read them, like ssh does.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

use crate::client::{Client, ClientError, NODE_URL_DEFAULT};

/// Writes one line to stdout, returning an error (a closed pipe) instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*).context("cannot write to stdout")?
    };
}

mod backup;
mod cluster;
mod constitution;
mod execution;
mod explain;
mod keys;
mod ledger;
mod member;
mod petition;
mod proofs;
mod proposal;
mod propose;
mod serve;
mod state;
mod status;
mod tls;

pub use backup::{BackupArgs, RecoverArgs, RestoreArgs};
pub use cluster::ClusterCommand;
pub use constitution::{
    AmendArgs, ApproveArgs, ConstitutionCommand, DryRunArgs, CONSTITUTION_FILE_BYTES_MAX,
};
pub use docket_client::verify::{
    config_dir, prove, verified_checkpoint, verified_entry, verify_bundle, ProofBundle, Verified,
    BUNDLE_FORMAT,
};
pub use execution::ExecutionCommand;
pub use explain::{render as render_explanation, ExplainArgs};
pub use keys::{
    generate_signing_key, key_file, read_key_file, write_key_file, KeygenArgs, KEY_FILE_BYTES_MAX,
};
pub use ledger::{LedgerCommand, FOLLOW_RETRY_MS, LEDGER_PAGE_ENTRIES};
pub use member::{MemberCommand, MEMBER_ADD_TIMEOUT_MS_DEFAULT};
pub use petition::{PetitionArgs, PetitionError, PROGRAM_OUTPUT_BYTES_MAX};
pub use propose::{
    ProposalFile, ProposeArgs, SignArgs, PROPOSAL_FILE_BYTES_MAX, SUBMIT_SETTLE_MS_MAX,
};
pub use serve::{serve, ServeArgs};
pub use state::StateCommand;
pub use tls::TlsCommand;

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
    /// Several, comma-separated, to ride out a dead node: the first that answers is used,
    /// and `propose` resubmits to the others after an unknown outcome.
    #[arg(
        long,
        global = true,
        help_heading = "Node options",
        env = "DOCKET_NODE",
        default_value = NODE_URL_DEFAULT,
        value_name = "URL[,URL...]"
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

    /// Key file to sign every request with, for a constitution that lets only listed roles
    /// read (`[access] read = "roles"`).
    #[arg(
        long,
        global = true,
        help_heading = "Node options",
        env = "DOCKET_READ_KEY",
        value_name = "FILE"
    )]
    pub read_key: Option<PathBuf>,

    /// The cluster CA certificate (PEM) to trust: talk HTTPS, and trust this CA and
    /// nothing else. Addresses without a scheme (and the default) become https://.
    #[arg(
        long,
        global = true,
        help_heading = "TLS options",
        env = "DOCKET_CA",
        value_name = "FILE"
    )]
    pub ca: Option<PathBuf>,

    /// Client certificate (PEM) to present, for a node with `tls.require_client_cert`
    /// (`docket tls init` writes client.pem). Needs --client-key and --ca.
    #[arg(
        long,
        global = true,
        help_heading = "TLS options",
        env = "DOCKET_CLIENT_CERT",
        value_name = "FILE",
        requires = "client_key"
    )]
    pub client_cert: Option<PathBuf>,

    /// Private key (PEM) of --client-cert. (Not --key: that is the ed25519 signing key of
    /// proposals.)
    #[arg(
        long,
        global = true,
        help_heading = "TLS options",
        env = "DOCKET_CLIENT_KEY",
        value_name = "FILE",
        requires = "client_cert"
    )]
    pub client_key: Option<PathBuf>,
}

impl Default for ClientArgs {
    fn default() -> ClientArgs {
        ClientArgs {
            node: NODE_URL_DEFAULT.to_owned(),
            output: OutputFormat::Text,
            timeout_ms: None,
            read_key: None,
            ca: None,
            client_cert: None,
            client_key: None,
        }
    }
}

impl ClientArgs {
    /// The `--node` addresses, in the order given.
    pub fn nodes(&self) -> Vec<&str> {
        self.node
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect()
    }

    /// A client for `--node` with `--timeout-ms`, or `default_ms` when it is not given.
    /// With several addresses, the first whose `GET /v1/health` answers within
    /// [`NODE_PROBE_TIMEOUT_MS`] (or the deadline, if shorter); when none does, the error
    /// names each and why.
    pub async fn client(&self, default_ms: u64) -> anyhow::Result<Client> {
        let timeout = Duration::from_millis(self.timeout_ms.unwrap_or(default_ms));
        let nodes = self.nodes();
        let clients = match self.tls()? {
            None => nodes
                .iter()
                .map(|node| Client::with_timeout(node, timeout))
                .collect::<Result<Vec<_>, _>>()?,
            Some(tls) => {
                let http = tls
                    .reqwest_builder()
                    .context("--ca / --client-cert")?
                    .build()
                    .context("cannot set up the HTTPS client")?;
                nodes
                    .iter()
                    .map(|node| {
                        let url = if *node == NODE_URL_DEFAULT {
                            NODE_URL_DEFAULT.replacen("http://", "https://", 1)
                        } else if node.contains("://") {
                            (*node).to_owned()
                        } else {
                            format!("https://{node}")
                        };
                        Client::with_http(&url, timeout, http.clone())
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        let clients = match &self.read_key {
            None => clients,
            Some(path) => {
                let key = read_key_file(path).context("--read-key")?;
                clients
                    .into_iter()
                    .map(|c| c.with_read_key(key.clone()))
                    .collect()
            }
        };
        let [first, rest @ ..] = clients.as_slice() else {
            bail!("--node names no address");
        };
        if rest.is_empty() {
            return Ok(first.clone());
        }
        let probe = timeout.min(Duration::from_millis(NODE_PROBE_TIMEOUT_MS));
        let mut failures = Vec::new();
        for client in &clients {
            match client.clone_with_timeout(probe).health().await {
                Ok(_) => return Ok(client.clone()),
                Err(error) => failures.push(format!("{}: {error}", client.base_url())),
            }
        }
        bail!(
            "none of the --node addresses answered: {}",
            failures.join("; ")
        )
    }
}

impl ClientArgs {
    /// The client-side TLS of `--ca`, `--client-cert`, `--client-key`; `None` without
    /// `--ca` (plain HTTP).
    pub fn tls(&self) -> anyhow::Result<Option<crate::tls::ClientTls>> {
        let identity = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            _ => None,
        };
        match &self.ca {
            Some(ca) => Ok(Some(crate::tls::ClientTls {
                ca: ca.clone(),
                identity,
            })),
            None if identity.is_some() => bail!(
                "--client-cert needs --ca: give the cluster CA (ca.pem from `docket tls init`) \
                 so the node's certificate can be checked"
            ),
            None => Ok(None),
        }
    }
}

/// How long `--node` with several addresses waits for each one's health before trying the
/// next.
pub const NODE_PROBE_TIMEOUT_MS: u64 = 2_000;

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
        docket keygen --out alice.key --force   # replace an existing key (the old one is lost)\n  \
        docket keygen --dev oscar --out operator.key   # the default constitution's dev operator (insecure)")]
    Keygen(KeygenArgs),

    /// Sign a proposal and submit it; print its decision and ledger entry.
    #[command(after_help = "Examples:\n  \
        docket propose --key alice.key --file deposit.json\n  \
        docket propose --key alice.key --action SETTLEMENT.DEPOSIT_CONFIRMED --subject stl-0001 \\\n      \
            --payload '{\"amount\": 125000, \"currency\": \"EUR\", \"rail_ref\": \"dep-77\"}'\n  \
        docket propose --key alice.key --action SETTLEMENT.PAYOUT_REQUESTED --subject stl-0001 \\\n      \
            --payload '{\"amount\": 5000}' --depends-on $DEPOSIT_ID --nonce 2\n  \
        docket propose --key alice.key --file payout.json --dry-run   # the decision, not recorded\n\n\
        A proposal file looks like:\n  \
        { \"domain\": \"settlement\", \"action\": \"SETTLEMENT.DEPOSIT_CONFIRMED\", \"subject\": \"stl-0001\",\n    \
          \"payload\": { \"amount\": 125000, \"currency\": \"EUR\" }, \"dependencies\": [], \"nonce\": 1 }\n\n\
        Exits 0 when the decision was recorded, a rejection included.")]
    Propose(ProposeArgs),

    /// Run a program whose effects become one governed plan: it prints effect descriptions
    /// (JSON lines), docket signs them, records them as one plan and follows it to the end.
    #[command(after_help = "Examples:\n  \
        docket petition --key alice.key -- python3 payouts.py\n  \
        docket petition --key alice.key --dry-run -- ./plan.sh        # decisions, nothing recorded\n  \
        docket petition --key alice.key --plan-out plan.json -- ./plan.sh\n\n\
        The program prints one effect per line:\n  \
        {\"label\": \"pay-1\", \"action\": \"SETTLEMENT.PAYOUT_REQUESTED\", \"subject\": \"stl-1\",\n   \
         \"payload\": {\"amount\": 500, \"beneficiary\": \"acme\"}}\n  \
        {\"label\": \"report\", \"action\": \"FILE.WRITE\", \"subject\": \"reports/r.txt\",\n   \
         \"payload\": {\"path\": \"reports/r.txt\", \"contents\": \"paid\"}, \"after_outcome\": [\"pay-1\"]}\n\n\
        `after` waits for a label's admission, `after_outcome` for its effect's outcome (a failed\n\
        effect rejects the dependent with DEPENDENCY_FAILED). The plan is recorded in one entry,\n\
        in waves sorted by proposal id, whatever order the program printed. Nonces default to 0,\n\
        so running the same program again files the same proposals (answered as duplicates).\n\n\
        Exits 0 only when every member was admitted and every effect succeeded.")]
    Petition(PetitionArgs),

    /// Read and verify the ledger.
    #[command(subcommand)]
    Ledger(LedgerCommand),

    /// Read a subject's lifecycle state.
    #[command(subcommand)]
    State(StateCommand),

    /// Show a proposal's status and entries, verified.
    #[command(
        subcommand,
        after_help = "Examples:\n  docket proposal show $ID\n  docket proposal show $ID --no-verify"
    )]
    Proposal(proposal::ProposalCommand),

    /// Explain a proposal's decision: the failed check (step of the check order, code, rule,
    /// and the payload fields it read), the dependency tree of a deferral and when it
    /// expires, or the admission (entry, role, rule); with the node's execution record.
    #[command(after_help = "Examples:\n  \
        docket explain 9f8bf7a99ee32fcf...   # the full 64-hex id\n  \
        docket explain $ID --output json     # the API's JSON (GET /v1/proposals/{id}/explain)\n\n\
        A rejection names its step of the fixed check order (e.g. `8 invariants`), the code,\n\
        the rule and what it read from the payload. A deferral shows what it waits on, each\n\
        dependency with its status now (deferred ones with their own dependencies, indented),\n\
        and the ledger time its deferral expires. Execution evidence is in the journal of the\n\
        node that executed the effect (the leader at the time): ask that node for it.")]
    Explain(ExplainArgs),

    /// Show, amend and approve the constitution; dry-run a candidate over recorded history.
    #[command(subcommand)]
    Constitution(ConstitutionCommand),

    /// Show what execution agents did for a proposal (evidence of every attempt).
    #[command(subcommand)]
    Execution(ExecutionCommand),

    /// Get a checkpoint of the ledger cosigned by a quorum of voters (a C2SP signed note),
    /// and check its cosignatures.
    #[command(after_help = "Examples:\n  \
        docket checkpoint                                   # a fresh final checkpoint\n  \
        docket checkpoint --save-cosigners voters.json      # pin the voters' keys\n  \
        docket checkpoint --cosigners voters.json           # check against pinned keys")]
    Checkpoint(proofs::CheckpointArgs),

    /// Check a proof bundle (`docket ledger prove`) offline: the entry, its inclusion proof
    /// and the checkpoint's cosignatures (talks to no node); an export (--export) or a
    /// backup (--backup, with the full audit) likewise; or, with --witness, compare the
    /// final checkpoints several nodes show.
    #[command(after_help = "Examples:\n  \
        docket ledger prove 12 --out entry-12.json\n  \
        docket verify entry-12.json --cosigners voters.json\n  \
        docket verify --backup ledger.backup --cosigners voters.json\n  \
        docket verify --witness http://10.0.0.1:8001,http://10.0.0.2:8002 --cosigners voters.json\n\n\
        Exits non-zero when anything fails to verify, or (--witness) when two nodes show\n\
        cosigned checkpoints that cannot both be true.")]
    Verify(proofs::VerifyArgs),

    /// Back up the ledger up to a final checkpoint into a file, from any node, while writes
    /// go on (streamed a page at a time, each entry checked against the chain as written).
    #[command(after_help = "Examples:\n  \
        docket backup --out ledger-2026-12-06.backup\n  \
        docket verify --backup ledger-2026-12-06.backup --cosigners voters.json\n\n\
        The file is a ledger export (docket-ledger-export/v1, JSON lines): a header with the\n\
        final checkpoint (ledger id, size N, Merkle root and state hash at N, the voters'\n\
        cosignatures), then entries 0..N. Written as FILE.partial, renamed when complete.")]
    Backup(BackupArgs),

    /// Seed the data directory of a NEW one-node cluster from a backup, verifying all of it
    /// (chain, ids, cosignatures, root, replay to the state hash) before writing anything.
    #[command(after_help = "Examples:\n  \
        docket restore ledger.backup --data-dir /var/lib/docket/node-1 --id 1 \\\n      \
            --raft-addr 10.0.0.1:7001 --api-addr 10.0.0.1:8001 --cosigners voters.json\n  \
        docket serve --node-id 1 --cluster-id LEDGER-ID --data-dir /var/lib/docket/node-1 ...\n  \
        docket member add 2 --raft-addr 10.0.0.2:7002 --api-addr 10.0.0.2:8002\n\n\
        The directory must be missing or empty; it is written beside and renamed at the end,\n\
        so a refused or interrupted restore leaves nothing. The node starts as the only voter\n\
        holding exactly the backup's ledger and state hash.")]
    Restore(RestoreArgs),

    /// DISASTER RECOVERY: rebuild a one-node cluster from this survivor's own data when a
    /// majority of the voters is permanently lost (like etcd's --force-new-cluster).
    #[command(after_help = "Examples:\n  \
        docket recover --data-dir /var/lib/docket/node-3 --id 3 --key operator.key --force-new-cluster\n  \
        docket serve --node-id 3 --cluster-id LEDGER-ID --data-dir /var/lib/docket/node-3 ...\n  \
        docket member add 4 --raft-addr 10.0.0.4:7004 --api-addr 10.0.0.4:8004\n\n\
        Stop the node first. Keeps every entry this node knew committed; Raft log entries past\n\
        that are dropped, and recorded: --key signs a CLUSTER.RECOVERED entry stating the loss,\n\
        filed by the node on its first start (--no-record for a constitution without it).\n\
        The old directory is kept as DIR.pre-recover-*. The lost nodes must never be started\n\
        again on their old data: wipe them and add them anew.")]
    Recover(RecoverArgs),

    /// Create the cluster CA and the node and client certificates for TLS.
    #[command(
        subcommand,
        after_help = "Examples:\n  \
        docket tls init --dir tls --nodes 1,2,3 --hosts 10.0.0.1,10.0.0.2,10.0.0.3\n  \
        docket tls issue --dir tls --node 2 --hosts 10.0.0.2   # renew node 2's certificate\n  \
        docket --ca tls/ca.pem status --node 10.0.0.1:8001     # talk to a TLS node"
    )]
    Tls(TlsCommand),
}

// ---------------------------------------------------------------------------------------
// Dispatch and shared helpers
// ---------------------------------------------------------------------------------------

/// Runs one operator command against the node in `args`.
pub async fn run(args: &ClientArgs, command: ClientCommand) -> anyhow::Result<()> {
    match command {
        ClientCommand::Keygen(keygen) => keys::run(args, &keygen),
        ClientCommand::Cluster(cluster) => cluster::run(args, cluster).await,
        ClientCommand::Member(member) => member::run(args, member).await,
        ClientCommand::Status => status::run(args).await,
        ClientCommand::Propose(propose) => propose::run(args, &propose).await,
        ClientCommand::Petition(petition) => petition::run(args, &petition).await,
        ClientCommand::Ledger(ledger) => ledger::run(args, ledger).await,
        ClientCommand::State(state) => state::run(args, state).await,
        ClientCommand::Proposal(command) => proposal::run(args, command).await,
        ClientCommand::Explain(command) => explain::run(args, &command).await,
        ClientCommand::Execution(execution) => execution::run(args, execution).await,
        ClientCommand::Constitution(constitution) => constitution::run(args, constitution).await,
        ClientCommand::Tls(command) => tls::run(args, command),
        ClientCommand::Checkpoint(command) => proofs::checkpoint(args, &command).await,
        ClientCommand::Verify(command) => proofs::verify_command(args, &command).await,
        ClientCommand::Backup(command) => backup::backup(args, &command).await,
        ClientCommand::Restore(command) => backup::restore(args, &command).await,
        ClientCommand::Recover(command) => backup::recover(args, &command).await,
    }
}

/// Prints `value` on stdout as pretty JSON (`--output json`).
fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value).context("cannot encode the answer as JSON")?;
    say!("{text}");
    Ok(())
}

/// A table cell: the number, or `-` when there is none.
fn optional(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
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

/// The node's error behind a failed command, when the failure came from the node: `main.rs`
/// can choose an exit code from it (`ClientError::Api` vs `Unreachable` vs `Timeout`).
pub fn client_error(error: &anyhow::Error) -> Option<&ClientError> {
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<ClientError>())
}

/// Logs to stderr at `default` level, or as `DOCKET_LOG` says (e.g. `DOCKET_LOG=debug`).
/// A second call changes nothing.
pub fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DOCKET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    /// The client commands as a standalone program, as `main.rs` composes them.
    #[derive(Debug, Parser)]
    #[command(name = "docket")]
    pub(super) struct ClientCli {
        #[command(flatten)]
        pub(super) args: ClientArgs,
        #[command(subcommand)]
        pub(super) command: ClientCommand,
    }

    pub(super) fn parse(argv: &[&str]) -> Result<ClientCli, clap::Error> {
        ClientCli::try_parse_from(std::iter::once("docket").chain(argv.iter().copied()))
    }

    /// A proposal file as DESIGN.md shows it.
    pub(super) const DEPOSIT: &str = r#"{ "domain": "settlement", "action": "SETTLEMENT.DEPOSIT_CONFIRMED",
        "subject": "stl-0001",
        "payload": { "amount": 125000, "currency": "EUR", "rail_ref": "dep-77" },
        "dependencies": [], "nonce": 1 }"#;

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
}
