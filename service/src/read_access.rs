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
use docket_core::id::decode_hex;
use docket_core::proposal::public_key;
use docket_core::PublicKey;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use crate::error::{ErrorCode, ServiceError};
use crate::service::Service;

/// The reader's public key (hex).
pub const READ_KEY_HEADER: &str = "x-docket-read-key";
/// When the reader signed, Unix milliseconds.
pub const READ_TIME_HEADER: &str = "x-docket-read-time";
/// ed25519 over [`read_message`] (hex).
pub const READ_SIGNATURE_HEADER: &str = "x-docket-read-signature";
/// How far a signed read's time may be from the node's clock, either way.
pub const READ_SIGNATURE_AGE_MAX_MS: u64 = 5 * 60 * 1000;

const TAG_READ: &[u8] = b"docket/read/v1\0";

/// A read request's signature, as its three headers carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedRead {
    pub key: PublicKey,
    pub time_ms: u64,
    pub signature: [u8; 64],
}

impl SignedRead {
    /// Signs a read of `path_and_query` with `method` at `time_ms`.
    pub fn sign(key: &SigningKey, method: &str, path_and_query: &str, time_ms: u64) -> SignedRead {
        SignedRead {
            key: public_key(key),
            time_ms,
            signature: key
                .sign(&read_message(method, path_and_query, time_ms))
                .to_bytes(),
        }
    }

    /// The three header values: key, time, signature.
    pub fn headers(&self) -> [(&'static str, String); 3] {
        [
            (READ_KEY_HEADER, self.key.to_hex()),
            (READ_TIME_HEADER, self.time_ms.to_string()),
            (READ_SIGNATURE_HEADER, hex::encode(self.signature)),
        ]
    }

    /// Reads the headers back (`None` when none of them is present).
    pub fn from_headers(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<SignedRead>, ServiceError> {
        let (key, time, signature) = (
            get(READ_KEY_HEADER),
            get(READ_TIME_HEADER),
            get(READ_SIGNATURE_HEADER),
        );
        let (key, time, signature) = match (key, time, signature) {
            (None, None, None) => return Ok(None),
            (Some(k), Some(t), Some(s)) => (k, t, s),
            _ => {
                return Err(ServiceError::new(
                    ErrorCode::MalformedRequest,
                    format!(
                        "a signed read carries all of {READ_KEY_HEADER}, {READ_TIME_HEADER} and \
                         {READ_SIGNATURE_HEADER}"
                    ),
                ))
            }
        };
        let malformed = |what: &str| {
            ServiceError::new(ErrorCode::MalformedRequest, format!("signed read: {what}"))
        };
        Ok(Some(SignedRead {
            key: PublicKey(
                decode_hex::<32>(&key)
                    .map_err(|_| malformed("the key is not 64 hex characters"))?,
            ),
            time_ms: time
                .parse()
                .map_err(|_| malformed("the time is not a number of milliseconds"))?,
            signature: decode_hex::<64>(&signature)
                .map_err(|_| malformed("the signature is not 128 hex characters"))?,
        }))
    }
}

/// What a read signature covers.
pub fn read_message(method: &str, path_and_query: &str, time_ms: u64) -> Vec<u8> {
    let mut message = Vec::with_capacity(TAG_READ.len() + path_and_query.len() + 32);
    message.extend_from_slice(TAG_READ);
    message.extend_from_slice(method.as_bytes());
    message.push(0);
    message.extend_from_slice(path_and_query.as_bytes());
    message.push(0);
    message.extend_from_slice(time_ms.to_string().as_bytes());
    message
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_read_round_trips_through_its_headers() {
        let key = docket_core::dev::signing_key("grace");
        let signed = SignedRead::sign(&key, "GET", "/v1/ledger?from=0", 42);
        let headers = signed.headers();
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(SignedRead::from_headers(get).expect("parses"), Some(signed));
        assert_eq!(SignedRead::from_headers(|_| None).expect("none"), None);
        assert!(SignedRead::from_headers(|n| get(n).filter(|_| n != READ_TIME_HEADER)).is_err());
    }

    #[test]
    fn the_signature_covers_method_path_and_time() {
        let base = read_message("GET", "/v1/ledger?from=0", 42);
        assert_ne!(base, read_message("GET", "/v1/ledger?from=1", 42));
        assert_ne!(base, read_message("POST", "/v1/ledger?from=0", 42));
        assert_ne!(base, read_message("GET", "/v1/ledger?from=0", 43));
    }
}
