//! The `docket` binary: parses arguments and calls into the library. Nothing else.

use std::process::ExitCode;

/// mimalloc instead of glibc malloc: see the workspace Cargo.toml for why.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use docket_node::cli::{ClientArgs, ClientCommand, OutputFormat, ServeArgs};

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
        docket bench --mode effects --payouts 1000     # payouts through execution agents and a local rail\n  \
        docket bench --clients 64 --tls                # the same cluster with TLS everywhere (compare without --tls)")]
    Bench(docket_node::bench::BenchArgs),

    #[command(flatten)]
    Client(ClientCommand),
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
            Command::Serve(args) => docket_node::cli::serve(args).await,
            Command::Demo(args) => {
                docket_node::cli::init_logging("warn");
                docket_node::demo::run(args).await
            }
            Command::Bench(args) => {
                docket_node::cli::init_logging("warn");
                docket_node::bench::run(args, cli.client.output == OutputFormat::Json).await
            }
            Command::Client(command) => {
                docket_node::cli::init_logging("warn");
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
