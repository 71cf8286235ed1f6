//! `[tls]`: the node's certificates under the cluster CA.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How often the node looks at its certificate files' modification times when no SIGHUP
/// arrives. Five seconds makes a rotation take effect quickly without stat-ing three files
/// in a hot loop.
pub const RELOAD_POLL_MS_DEFAULT: u64 = 5_000;
/// Polling faster than every 100 ms buys nothing (the files are written by a person or a
/// renewal job) and costs wake-ups.
pub const RELOAD_POLL_MS_FLOOR: u64 = 100;
/// Polling less often than hourly is no hot reload at all; SIGHUP is there for that.
pub const RELOAD_POLL_MS_CEILING: u64 = 3_600_000;

const _: () = assert!(RELOAD_POLL_MS_FLOOR <= RELOAD_POLL_MS_DEFAULT);
const _: () = assert!(RELOAD_POLL_MS_DEFAULT <= RELOAD_POLL_MS_CEILING);

/// `[tls]` section: TLS on both listeners and mutual TLS between peers. With it, the API
/// speaks HTTPS, the Raft port speaks TLS, and a peer (Raft, or the API's internal routes)
/// must present a certificate the cluster CA issued for a node. `docket tls init` writes
/// every file this names.
///
/// ```toml
/// [tls]
/// ca = "/etc/docket/tls/ca.pem"
/// cert = "/etc/docket/tls/node-2.pem"
/// key = "/etc/docket/tls/node-2.key"
/// require_client_cert = true
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The cluster CA certificate (PEM): the only issuer this node trusts, for peers and
    /// for clients.
    pub ca: PathBuf,
    /// This node's certificate chain (PEM), issued by the cluster CA for this node id.
    pub cert: PathBuf,
    /// This node's private key (PEM, PKCS#8). Keep it mode 0600.
    pub key: PathBuf,
    /// Refuse API connections that present no certificate of the cluster CA. Off by
    /// default: the API then accepts any TLS client (a client certificate, when one is
    /// presented, must still be the CA's).
    pub require_client_cert: bool,
    /// How often the files' modification times are checked for a rotation (SIGHUP
    /// reloads at once), in milliseconds.
    pub reload_poll_ms: u64,
}
