//! Read authorization: the active constitution's `[access] read` policy
//! ([`docket_core::constitution::ReadPolicy`]), checked by every node on every read route.
//!
//! * `anyone`: no check (the default).
//! * `certificate`: the connection presented a client certificate of the cluster CA.
//! * `roles`: the request is signed ([`SignedRead`], three headers) by a principal holding
//!   one of `read_roles`, at a time within [`READ_SIGNATURE_AGE_MAX_MS`] of the node's
//!   clock. The signature covers the method, the path with its query, and the time, so a
//!   captured signature reads that one URL, for a few minutes, and nothing else.
//!
//! Cluster nodes (a node certificate of the cluster CA) may always read: a leader asks a
//! node it adds which history it holds. Before genesis there is no policy and nothing to
//! read but the node's status.

use docket_core::constitution::ReadPolicy;
use ed25519_dalek::VerifyingKey;

pub use docket_api::read_access::{
    read_message, SignedRead, READ_KEY_HEADER, READ_SIGNATURE_AGE_MAX_MS, READ_SIGNATURE_HEADER,
    READ_TIME_HEADER,
};

use crate::error::{ErrorCode, ServiceError};
use crate::service::Service;

/// How a read request presented itself.
#[derive(Clone, Debug, Default)]
pub struct ReadCredentials {
    /// The connection presented a client certificate of the cluster CA.
    pub certificate: bool,
    /// ... and that certificate is a cluster node's.
    pub node: bool,
    pub signed: Option<SignedRead>,
}

impl Service {
    /// Whether the active constitution lets these credentials read `path_and_query`.
    pub fn authorize_read(
        &self,
        credentials: &ReadCredentials,
        method: &str,
        path_and_query: &str,
    ) -> Result<(), ServiceError> {
        if credentials.node {
            return Ok(());
        }
        let Some((policy, principal)) = self.replica.with_state(|state| {
            state.map(|s| {
                let constitution = s.constitution();
                let principal = credentials
                    .signed
                    .as_ref()
                    .and_then(|signed| constitution.principal(&signed.key))
                    .map(|p| (p.name.clone(), p.roles.clone()));
                (constitution.reads.clone(), principal)
            })
        }) else {
            return Ok(());
        };
        match policy {
            ReadPolicy::Anyone => Ok(()),
            ReadPolicy::Certificate if credentials.certificate => Ok(()),
            ReadPolicy::Certificate => Err(ServiceError::new(
                ErrorCode::Unauthorized,
                "the constitution lets clients with a certificate of the cluster CA read \
                 ([access] read = \"certificate\"): connect over TLS with one (--client-cert, \
                 --client-key)",
            )),
            ReadPolicy::Roles(roles) => {
                let Some(signed) = &credentials.signed else {
                    return Err(ServiceError::new(
                        ErrorCode::SignatureRequired,
                        format!(
                            "the constitution lets principals holding {} read ([access] read = \
                             \"roles\"): sign the read (--read-key FILE or DOCKET_READ_KEY)",
                            roles.iter().cloned().collect::<Vec<_>>().join(" or ")
                        ),
                    ));
                };
                let now = self.now().0;
                let skew = now.abs_diff(signed.time_ms);
                if skew > READ_SIGNATURE_AGE_MAX_MS {
                    return Err(ServiceError::new(
                        ErrorCode::StaleRequest,
                        format!(
                            "the read was signed at {} ms, {skew} ms from this node's clock \
                             ({now} ms); signed reads are accepted within {} ms",
                            signed.time_ms, READ_SIGNATURE_AGE_MAX_MS
                        ),
                    ));
                }
                let message = read_message(method, path_and_query, signed.time_ms);
                let verified = VerifyingKey::from_bytes(&signed.key.0).is_ok_and(|key| {
                    key.verify_strict(
                        &message,
                        &ed25519_dalek::Signature::from_bytes(&signed.signature),
                    )
                    .is_ok()
                });
                if !verified {
                    return Err(ServiceError::new(
                        ErrorCode::BadSignature,
                        format!(
                            "the read signature does not verify against key {} for {method} \
                             {path_and_query}",
                            signed.key.short()
                        ),
                    ));
                }
                match principal {
                    Some((_, held)) if held.iter().any(|r| roles.contains(r)) => Ok(()),
                    Some((name, _)) => Err(ServiceError::new(
                        ErrorCode::Unauthorized,
                        format!(
                            "principal {name:?} holds none of the roles that may read ({})",
                            roles.iter().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    )),
                    None => Err(ServiceError::new(
                        ErrorCode::Unauthorized,
                        format!(
                            "key {} is not a principal of the constitution",
                            signed.key.short()
                        ),
                    )),
                }
            }
        }
    }
}
