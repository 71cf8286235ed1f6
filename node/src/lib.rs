//! # docket-node: the `docket` server and operator CLI
//!
//! The binary only parses arguments and calls into this library, so tests start real
//! nodes in-process on port 0 or spawn the binary for crash tests.

pub mod api;
pub mod bench;
pub mod cli;
/// The client (`docket-client`), where the CLI, the demo and the bench find it.
pub use docket_client as client;
pub mod demo;
pub mod error;
pub mod execution;
pub mod local_cluster;
pub mod peers;
pub mod rail;
pub mod server;
pub mod telemetry;
pub mod tls;

/// The JSON shapes of the API, shared by the server, the CLI, the bench and the
/// simulator (they live in the service crate).
pub use docket_service::wire;
