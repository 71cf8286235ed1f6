//! # docket-node: the `docket` server and operator CLI
//!
//! The binary only parses arguments and calls into this library, so tests start real
//! nodes in-process on port 0 or spawn the binary for crash tests.

pub mod api;
pub mod bench;
pub mod cli;
pub mod client;
pub mod demo;
pub mod error;
pub mod execution;
pub mod local_cluster;
pub mod rail;
pub mod read_index;
pub mod server;
pub mod wire;
