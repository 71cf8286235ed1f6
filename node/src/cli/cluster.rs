//! `docket cluster init`: the genesis entry, with the built-in or a given constitution.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use ed25519_dalek::SigningKey;

use super::constitution::read_constitution_file;
use super::member::AdminKeyArgs;
use super::{print_json, ClientArgs, OutputFormat};
use crate::client::{Client, REQUEST_TIMEOUT_MS_DEFAULT};

#[derive(Clone, Debug, Subcommand)]
#[command(after_help = "Examples:\n  docket cluster init --key operator.key\n  \
    docket cluster init --constitution my.toml --key operator.key")]
pub enum ClusterCommand {
    /// Initialize the cluster at --node: it becomes the first voter and writes the genesis
    /// entry, then records this signed request as CLUSTER.INIT. The signer must hold a role
    /// the genesis constitution authorizes for CLUSTER.INIT. Add the other nodes with
    /// `docket member add`.
    #[command(after_help = "Examples:\n  \
        docket keygen --dev oscar --out operator.key     # the default constitution's dev operator\n  \
        docket cluster init --key operator.key           # the built-in default constitution\n  \
        docket cluster init --constitution my.toml --key ops.key --node http://127.0.0.1:8001")]
    Init {
        /// Genesis constitution document (TOML); the node's --genesis-constitution, else the
        /// built-in default, when absent.
        #[arg(long, value_name = "FILE")]
        constitution: Option<PathBuf>,
        #[command(flatten)]
        signer: AdminKeyArgs,
    },
}

/// Runs `docket cluster SUBCOMMAND`.
pub(super) async fn run(args: &ClientArgs, command: ClusterCommand) -> anyhow::Result<()> {
    let output = args.output;
    match command {
        ClusterCommand::Init {
            constitution,
            signer,
        } => {
            cluster_init(
                &args.client(REQUEST_TIMEOUT_MS_DEFAULT).await?,
                constitution,
                &signer.load()?,
                output,
            )
            .await
        }
    }
}

async fn cluster_init(
    client: &Client,
    constitution: Option<PathBuf>,
    key: &SigningKey,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let document = match &constitution {
        Some(path) => Some(read_constitution_file(path)?),
        None => None,
    };
    let status = client
        .init_as(document, key)
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
        "ledger length {} (genesis, then this request as CLUSTER.INIT); add nodes with \
         `docket member add`",
        status.ledger_length
    );
    Ok(())
}
