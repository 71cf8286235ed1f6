//! `docket member add|promote|remove|list`: membership changes and the members table.

use std::fmt::Write as _;
use std::io::Write as _;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use ed25519_dalek::SigningKey;

use super::keys::read_key_file;
use super::{optional, print_json, ClientArgs, OutputFormat};
use crate::client::{Client, REQUEST_TIMEOUT_MS_DEFAULT};
use crate::wire::{AddMemberRequest, MemberView};

/// Deadline of `member add` when `--timeout-ms` is not given: the node answers only once the
/// new member has caught up (or been found unreachable), which can take a while on a long
/// ledger.
pub const MEMBER_ADD_TIMEOUT_MS_DEFAULT: u64 = 60_000;

/// The signer of a cluster operation.
#[derive(Clone, Debug, clap::Args)]
pub struct AdminKeyArgs {
    /// Key file of a principal the constitution authorizes for cluster operations (role
    /// `operator` in the default constitution; `docket keygen --dev oscar` writes its
    /// development key). The node records the signed request in the ledger before it makes
    /// the change.
    #[arg(long, env = "DOCKET_KEY", value_name = "FILE")]
    pub key: PathBuf,
}

impl AdminKeyArgs {
    pub fn load(&self) -> anyhow::Result<SigningKey> {
        let key = read_key_file(&self.key)?;
        warn_if_dev_key(&key);
        Ok(key)
    }
}

/// Says so on stderr when `key` is a development key (anyone can derive it).
pub fn warn_if_dev_key(key: &SigningKey) {
    let public = docket_core::proposal::public_key(key);
    if let Some((name, _)) = docket_core::dev::PRINCIPALS
        .iter()
        .find(|(name, _)| docket_core::dev::key(name) == public)
    {
        eprintln!(
            "warning: signing as development principal {name:?}, whose secret key anyone can \
             derive; a cluster beyond a test needs a constitution with its own keys"
        );
    }
}

#[derive(Clone, Debug, Subcommand)]
#[command(after_help = "Examples:\n  \
    docket member add 2 --raft-addr 127.0.0.1:7002 --api-addr 127.0.0.1:8002 --key operator.key\n  \
    docket member list\n\n\
    add, promote and remove are governed: they are signed with --key (or DOCKET_KEY) by a\n\
    principal the constitution authorizes, and recorded in the ledger as CLUSTER.MEMBER_*.")]
pub enum MemberCommand {
    /// Add a running node: it joins as a learner, catches up, then becomes a voter (unless
    /// --learner).
    #[command(after_help = "Examples:\n  \
        docket member add 2 --raft-addr 127.0.0.1:7002 --api-addr 127.0.0.1:8002 --key operator.key\n  \
        DOCKET_KEY=operator.key docket member add 4 --raft-addr 10.0.0.4:7004 --api-addr 10.0.0.4:8004 --learner\n\n\
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
        #[command(flatten)]
        signer: AdminKeyArgs,
    },
    /// Make a learner a voter.
    #[command(after_help = "Examples:\n  docket member promote 4 --key operator.key")]
    Promote {
        /// Node id of the learner.
        #[arg(value_name = "ID")]
        id: u64,
        #[command(flatten)]
        signer: AdminKeyArgs,
    },
    /// Remove a member. Refused if it would leave the cluster without a quorum.
    #[command(after_help = "Examples:\n  docket member remove 3 --key operator.key")]
    Remove {
        /// Node id of the member.
        #[arg(value_name = "ID")]
        id: u64,
        #[command(flatten)]
        signer: AdminKeyArgs,
    },
    /// List the members with their addresses (and, from the leader, their lag).
    #[command(after_help = "Examples:\n  docket member list\n  docket member list --output json")]
    List,
}

/// Runs `docket member SUBCOMMAND`, with a longer default deadline for `add`.
pub(super) async fn run(args: &ClientArgs, command: MemberCommand) -> anyhow::Result<()> {
    let default_ms = match command {
        MemberCommand::Add { .. } => MEMBER_ADD_TIMEOUT_MS_DEFAULT,
        _ => REQUEST_TIMEOUT_MS_DEFAULT,
    };
    run_member(&args.client(default_ms).await?, command, args.output).await
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
            signer,
        } => {
            let request = AddMemberRequest {
                id,
                raft_addr,
                api_addr,
                learner,
            };
            let key = signer.load()?;
            let members = with_catch_up_progress(client, id, client.add_member_as(request, &key))
                .await
                .with_context(|| format!("cannot add node {id}"))?;
            let done = match (learner, members.promotion_pending) {
                (_, Some(_)) => format!(
                    "node {id} added as a learner and still catching up: promotion pending (the \
                     leader makes it a voter once it has caught up; `docket member list` shows \
                     when)"
                ),
                (true, None) => format!("node {id} added as a learner"),
                (false, None) => format!("node {id} added as a voter"),
            };
            (members, Some(done))
        }
        MemberCommand::Promote { id, signer } => {
            let key = signer.load()?;
            let members = with_catch_up_progress(client, id, client.promote_as(id, &key))
                .await
                .with_context(|| format!("cannot promote node {id}"))?;
            let done = if members.promotion_pending.is_some() {
                format!(
                    "node {id} is still catching up: promotion pending (the leader makes it a \
                     voter once it has caught up)"
                )
            } else {
                format!("node {id} is now a voter")
            };
            (members, Some(done))
        }
        MemberCommand::Remove { id, signer } => {
            let members = client
                .remove_member_as(id, &signer.load()?)
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
    if let Some(recorded) = members.recorded {
        say!(
            "recorded as ledger entry #{} (proposal {})",
            recorded.index,
            recorded.id
        );
    }
    say!("{}", members_table(&members.members));
    Ok(())
}

/// How often `member add` / `promote` look at the new node's progress while they wait.
pub const CATCH_UP_PROGRESS_MS: u64 = 1_000;

/// Runs a membership request while showing how far node `id` has caught up (a bar on a
/// terminal, a line now and then otherwise, on stderr), from the leader's view of its
/// matched index and lag.
async fn with_catch_up_progress<T>(
    client: &Client,
    id: u64,
    request: impl std::future::Future<Output = T>,
) -> T {
    let mut request = std::pin::pin!(request);
    let mut progress = super::ledger::Progress::new("catching up");
    let answer = loop {
        tokio::select! {
            answer = &mut request => break answer,
            _ = tokio::time::sleep(std::time::Duration::from_millis(CATCH_UP_PROGRESS_MS)) => {
                if let Ok(view) = client.members().await {
                    if let Some((matched, lag)) = view
                        .members
                        .iter()
                        .find(|m| m.id == id)
                        .and_then(|m| Some((m.matched_index?, m.lag?)))
                    {
                        progress.show(matched, matched + lag);
                    }
                }
            }
        }
    };
    progress.finish();
    answer
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
