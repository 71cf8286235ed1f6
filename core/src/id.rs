//! Newtypes for the identities, hashes, indexes and times the core deals in.
//!
//! Every 32-byte digest is a distinct type so a `ProposalId` can never be passed where an
//! `EntryHash` is expected. In text (JSON, logs, the CLI) they are lowercase hex; in the
//! canonical binary encoding they are their raw bytes.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A hex string that did not decode to the expected number of bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected} bytes of lowercase hex ({} characters), got {got:?}", expected * 2)]
pub struct HexError {
    pub expected: usize,
    pub got: String,
}

/// Decodes exactly `N` bytes of hex. Upper-case hex is refused: ids have one spelling.
pub fn decode_hex<const N: usize>(text: &str) -> Result<[u8; N], HexError> {
    let error = || HexError {
        expected: N,
        got: truncate_for_error(text),
    };
    if text.len() != N * 2 || text.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(error());
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).map_err(|_| error())?;
    Ok(out)
}

fn truncate_for_error(text: &str) -> String {
    const SHOWN_CHARS_MAX: usize = 80;
    text.chars().take(SHOWN_CHARS_MAX).collect()
}

/// Serializes fixed-size bytes as hex for humans, raw bytes for the canonical encoding.
fn serialize_bytes<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    if serializer.is_human_readable() {
        serializer.serialize_str(&hex::encode(bytes))
    } else {
        // A tuple of u8, so bincode writes exactly N bytes with no length prefix.
        use serde::ser::SerializeTuple;
        let mut tuple = serializer.serialize_tuple(bytes.len())?;
        for byte in bytes {
            tuple.serialize_element(byte)?;
        }
        tuple.end()
    }
}

fn deserialize_bytes<'de, D: Deserializer<'de>, const N: usize>(
    deserializer: D,
) -> Result<[u8; N], D::Error> {
    struct HexVisitor<const N: usize>;
    impl<const N: usize> Visitor<'_> for HexVisitor<N> {
        type Value = [u8; N];
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "{} lowercase hex characters", N * 2)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            decode_hex::<N>(v).map_err(E::custom)
        }
    }
    struct TupleVisitor<const N: usize>;
    impl<'de, const N: usize> Visitor<'de> for TupleVisitor<N> {
        type Value = [u8; N];
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "{N} bytes")
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = [0u8; N];
            for (i, slot) in out.iter_mut().enumerate() {
                *slot = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(i, &self))?;
            }
            Ok(out)
        }
    }
    if deserializer.is_human_readable() {
        deserializer.deserialize_str(HexVisitor::<N>)
    } else {
        deserializer.deserialize_tuple(N, TupleVisitor::<N>)
    }
}

macro_rules! digest_type {
    ($(#[$meta:meta])* $name:ident, $len:expr) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            pub const LEN: usize = $len;

            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The first 8 bytes in hex: enough to tell entries apart in logs and transcripts.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..8])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl FromStr for $name {
            type Err = HexError;
            fn from_str(s: &str) -> Result<Self, HexError> {
                decode_hex::<$len>(s).map($name)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serialize_bytes(&self.0, serializer)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserialize_bytes::<D, $len>(deserializer).map($name)
            }
        }
    };
}

digest_type!(
    /// BLAKE3 of the proposal domain tag and the proposal's canonical bytes.
    ProposalId,
    32
);
impl ProposalId {
    /// The **outcome reference** of this proposal's effect: BLAKE3 over
    /// `"docket/outcome-ref/v1\0"` and the 32 id bytes. Listed among a proposal's
    /// dependencies, it is met when the effect's outcome is recorded as a success and
    /// rejects the dependent (`DEPENDENCY_FAILED`) when it is recorded as a failure. It is
    /// never the id of a proposal (a different domain tag).
    pub fn outcome_of(&self) -> ProposalId {
        let mut hasher = blake3::Hasher::new();
        hasher.update(crate::encoding::TAG_OUTCOME_REF);
        hasher.update(&self.0);
        ProposalId(*hasher.finalize().as_bytes())
    }
}

digest_type!(
    /// BLAKE3 of the entry domain tag, the previous entry's hash and the entry's canonical bytes.
    EntryHash,
    32
);
digest_type!(
    /// BLAKE3 of the constitution domain tag and the constitution's canonical bytes.
    ConstitutionVersion,
    32
);
digest_type!(
    /// BLAKE3 of the state domain tag and the governance state's canonical bytes.
    StateHash,
    32
);
digest_type!(
    /// An ed25519 public key (compressed Edwards point).
    PublicKey,
    32
);
digest_type!(
    /// An ed25519 signature over a `ProposalId`.
    Signature,
    64
);

impl EntryHash {
    /// The `prev_hash` of the genesis entry.
    pub const ZERO: EntryHash = EntryHash([0u8; 32]);
}

/// Position of an entry in the ledger; the genesis entry is index 0.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct LedgerIndex(pub u64);

impl LedgerIndex {
    pub fn next(self) -> LedgerIndex {
        LedgerIndex(
            self.0
                .checked_add(1)
                .expect("invariant: ledger index fits in u64"),
        )
    }
}

impl fmt::Display for LedgerIndex {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Ledger time in milliseconds since the Unix epoch, as stamped by the Raft leader when the
/// command entered the log and clamped by the core to be non-decreasing. Core never reads
/// a clock; this is the only time it knows.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct LedgerTime(pub u64);

impl LedgerTime {
    pub fn saturating_add_ms(self, ms: u64) -> LedgerTime {
        LedgerTime(self.0.saturating_add(ms))
    }
}

impl fmt::Display for LedgerTime {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// The ledger (cluster) a proposal is signed for. A proposal signed for one ledger is
/// refused by every other, so a signature cannot be replayed across clusters.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LedgerId(String);

/// Longest ledger id accepted. Ids are names an operator types, not documents.
pub const LEDGER_ID_BYTES_MAX: usize = 64;

impl LedgerId {
    /// A ledger id is 1 to 64 characters of `[a-z0-9-]`, not starting with `-`.
    pub fn new(id: impl Into<String>) -> Result<LedgerId, LedgerIdError> {
        let id = id.into();
        let valid_chars = id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if id.is_empty() || id.len() > LEDGER_ID_BYTES_MAX || !valid_chars || id.starts_with('-') {
            return Err(LedgerIdError(truncate_for_error(&id)));
        }
        Ok(LedgerId(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "ledger id {0:?} is invalid: use 1 to 64 characters of a-z, 0-9 and '-', not starting with '-'"
)]
pub struct LedgerIdError(String);

impl TryFrom<String> for LedgerId {
    type Error = LedgerIdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        LedgerId::new(value)
    }
}

impl From<LedgerId> for String {
    fn from(value: LedgerId) -> String {
        value.0
    }
}

impl fmt::Display for LedgerId {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_refusals() {
        let id = ProposalId([0xab; 32]);
        let text = id.to_string();
        assert_eq!(text.parse::<ProposalId>(), Ok(id));
        assert!(
            text.to_uppercase().parse::<ProposalId>().is_err(),
            "one spelling only"
        );
        assert!(text[..62].parse::<ProposalId>().is_err(), "short");
        assert!("zz".repeat(32).parse::<ProposalId>().is_err(), "not hex");
    }

    #[test]
    fn binary_form_is_raw_bytes() {
        let bytes = crate::encoding::to_bytes(&ProposalId([7; 32]));
        assert_eq!(bytes, vec![7u8; 32]);
        let sig = crate::encoding::to_bytes(&Signature([9; 64]));
        assert_eq!(sig.len(), 64);
    }

    #[test]
    fn ledger_ids() {
        assert!(LedgerId::new("docket-local").is_ok());
        assert!(LedgerId::new("").is_err());
        assert!(LedgerId::new("-x").is_err());
        assert!(LedgerId::new("Upper").is_err());
        assert!(LedgerId::new("a".repeat(65)).is_err());
    }
}
