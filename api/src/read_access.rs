//! Signed reads: for a constitution whose read policy is `roles`, a client signs every
//! request (three headers); a node checks it (`docket_service::read_access`).

use docket_core::id::decode_hex;
use docket_core::proposal::public_key;
use docket_core::PublicKey;
use ed25519_dalek::{Signer, SigningKey};

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

    /// Reads the headers back (`None` when none of them is present); `Err` names what is
    /// malformed.
    pub fn from_headers(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<SignedRead>, String> {
        let (key, time, signature) = (
            get(READ_KEY_HEADER),
            get(READ_TIME_HEADER),
            get(READ_SIGNATURE_HEADER),
        );
        let (key, time, signature) = match (key, time, signature) {
            (None, None, None) => return Ok(None),
            (Some(k), Some(t), Some(s)) => (k, t, s),
            _ => {
                return Err(format!(
                    "a signed read carries all of {READ_KEY_HEADER}, {READ_TIME_HEADER} and \
                     {READ_SIGNATURE_HEADER}"
                ))
            }
        };
        let malformed = |what: &str| format!("signed read: {what}");
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
