//! Configuration of a docket node: typed TOML, overridable by `DOCKET_*` environment
//! variables and by command-line flags, validated before the node starts.
//!
//! # Layers
//!
//! Each field takes its value from the strongest layer that sets it:
//!
//! 1. built-in defaults (the `*_DEFAULT` constants), enough for a cluster on one machine;
//! 2. the TOML file, if any;
//! 3. `DOCKET_*` environment variables ([`ENV_VARS`]);
//! 4. command-line flags ([`Overrides`]).
//!
//! `raft_addr`, `api_addr` and `data_dir` default to values derived from `node_id`
//! (`127.0.0.1:7000+N`, `127.0.0.1:8000+N`, `data/node-N`) once every layer has been
//! applied, so `docket serve --node-id 2` works next to node 1 with no other setting.
//!
//! # Errors name the field
//!
//! Every [`ConfigError`] says what to fix and where: a file error has the path and line, an
//! invalid value has the dotted field and the [`Origin`] of the value — the file and line,
//! the environment variable, the flag, or the default:
//!
//! ```
//! use docket_config::{NodeConfig, Overrides};
//!
//! let env = [("DOCKET_RAFT_ELECTION_TIMEOUT_MIN_MS".to_owned(), "75".to_owned())];
//! let error = NodeConfig::load(None, env, &Overrides::default()).unwrap_err();
//! assert_eq!(error.field(), Some("raft.election_timeout_min_ms"));
//! assert!(error
//!     .to_string()
//!     .starts_with("raft.election_timeout_min_ms (from DOCKET_RAFT_ELECTION_TIMEOUT_MIN_MS): "));
//! ```
//!
//! # Example file
//!
//! ```toml
//! node_id = 2
//! cluster_id = "docket-prod"
//! raft_addr = "10.0.0.2:7001"
//! api_addr = "0.0.0.0:8001"
//! data_dir = "/var/lib/docket"
//!
//! [raft]
//! heartbeat_interval_ms = 50
//!
//! [limits]
//! clients_inflight_max = 4096
//!
//! [storage]
//! engine = "fjall"
//! cache_mb = 64
//!
//! [tls]
//! ca = "/etc/docket/tls/ca.pem"
//! cert = "/etc/docket/tls/node-2.pem"
//! key = "/etc/docket/tls/node-2.key"
//! ```
//!
//! Architecture invariant: this crate reads a file and an injected environment and nothing
//! else; it knows nothing of the core, openraft, sled or the network. Nothing in it changes
//! what the replicated state machine outputs.

mod env;
mod error;
mod layers;
mod limits_config;
mod log_config;
mod node_config;
mod overrides;
mod raft_config;
mod storage_config;
mod tls_config;
mod validate;

pub use env::{ENV_PREFIX, ENV_VARS, RESERVED_ENV_VARS};
pub use error::{ConfigError, Origin};
pub use limits_config::*;
pub use log_config::*;
pub use node_config::*;
pub use overrides::*;
pub use raft_config::*;
pub use storage_config::*;
pub use tls_config::*;

#[cfg(test)]
mod tests;
