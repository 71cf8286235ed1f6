//! The `docket` binary: parses arguments and calls into the library. Nothing else.

use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc instead of glibc malloc: see the workspace Cargo.toml for why.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Args, Parser, Subcommand};
use docket_config::{NodeConfig, Overrides};
use docket_node::cli::{ClientArgs, ClientCommand};

#[derive(Debug, Parser)]
#[command(
    name = "docket",
    version,
    about = "docket: a governed, replicated, append-only ledger",
    long_about = "docket: a governed, replicated, append-only ledger.\n\n\
        Proposals are signed, content-addressed requests. A constitution (data, amended only \
        through governance) admits, rejects with a stable code, or defers each one; every \
        decision is an entry in a hash-chained ledger replicated by Raft.",
    after_help = "Examples:\n  \
        docket demo                                   # a 3-node cluster doing governed work, then cleanup\n  \
        docket serve --node-id 1                      # node 1 on 127.0.0.1:7001 (raft) and :8001 (api)\n  \
        docket cluster init                           # genesis with the default constitution\n  \
        docket serve --node-id 2 & docket member add 2 --raft-addr 127.0.0.1:7002 --api-addr 127.0.0.1:8002\n  \
        docket status\n\n\
        Logging goes to stderr; set DOCKET_LOG (e.g. DOCKET_LOG=debug) to change it."
)]
struct Cli {
    #[command(flatten)]
    client: ClientArgs,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node: storage, Raft and the HTTP API, until Ctrl-C or SIGTERM.
    #[command(after_help = "Examples:\n  \
        docket serve --node-id 1\n  \
        docket serve --config node.toml\n  \
        DOCKET_DATA_DIR=/var/lib/docket docket serve --node-id 2 --cluster-id prod-ledger\n\n\
        Precedence: built-in defaults < config file < DOCKET_* environment < flags.\n\
        Node N defaults to raft 127.0.0.1:(7000+N), api 127.0.0.1:(8000+N), data data/node-N.")]
    Serve(ServeArgs),

    /// Start a local 3-node cluster, run governed work through it (including a leader
    /// crash), print every node's ledger length and state hash, then clean up.
    #[command(
        after_help = "Examples:\n  docket demo\n  docket demo --keep   # leave the data directories for inspection"
    )]
    Demo(docket_node::demo::DemoArgs),

    /// Load generator: concurrent clients submitting signed proposals; prints throughput
    /// and latency percentiles.
    #[command(after_help = "Examples:\n  \
        docket bench                                   # starts its own 3-node cluster\n  \
        docket bench --nodes 1 --clients 64 --duration-s 10\n  \
        docket bench --target http://127.0.0.1:8001 --batch 100 --output json\n  \
        docket bench --mode effects --payouts 1000     # payouts through execution agents and a local rail")]
    Bench(docket_node::bench::BenchArgs),

    #[command(flatten)]
    Client(ClientCommand),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Node configuration file (TOML).
    #[arg(long, env = "DOCKET_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// This node's id (at least 1).
    #[arg(long)]
    node_id: Option<u64>,
    /// Cluster id, which is also the ledger id.
    #[arg(long)]
    cluster_id: Option<String>,
    /// Raft listen address, host:port.
    #[arg(long)]
    raft_addr: Option<String>,
    /// HTTP API listen address, host:port.
    #[arg(long)]
    api_addr: Option<String>,
    /// Data directory (sled database).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Genesis constitution used by `cluster init` when it sends none.
    #[arg(long, value_name = "FILE")]
    genesis_constitution: Option<PathBuf>,
    /// Print the effective configuration and exit.
    #[arg(long)]
    print_config: bool,
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DOCKET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn load_config(args: ServeArgs) -> anyhow::Result<(NodeConfig, bool)> {
    let overrides = Overrides {
        node_id: args.node_id,
        cluster_id: args.cluster_id,
        raft_addr: args.raft_addr,
        api_addr: args.api_addr,
        data_dir: args.data_dir,
        genesis_constitution: args.genesis_constitution,
    };
    // Non-Unicode variables cannot be docket's; skip them rather than panic.
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    let config = NodeConfig::load(args.config.as_deref(), env, &overrides)?;
    Ok((config, args.print_config))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => {
                init_logging("info");
                let (config, print_only) = load_config(args)?;
                if print_only {
                    print!("{}", config.to_toml_string()?);
                    return Ok(());
                }
                docket_node::server::run(config).await
            }
            Command::Demo(args) => {
                init_logging("warn");
                docket_node::demo::run(args).await
            }
            Command::Bench(args) => {
                init_logging("warn");
                docket_node::bench::run(
                    args,
                    cli.client.output == docket_node::cli::OutputFormat::Json,
                )
                .await
            }
            Command::Client(command) => {
                init_logging("warn");
                docket_node::cli::run(&cli.client, command).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
