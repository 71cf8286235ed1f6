//! The one canonical byte encoding, and the domain-separated hashes built on it.
//!
//! Canonical bytes are bincode 1.3.3 (pinned exactly in the workspace) with a fixed
//! configuration: fixed-width little-endian integers, `u64` length prefixes, enum variants as
//! `u32` indexes, trailing bytes refused, and a decode limit. Maps are `BTreeMap`s, so their
//! order is the key order. Changing any of this changes every `ProposalId`: the test vectors
//! in `tests/vectors.rs` exist to make such a change loud.
//!
//! Every hash is BLAKE3 over a domain-separation tag followed by the canonical bytes, so a
//! byte string that is a valid proposal can never collide with, say, a ledger entry.

use bincode::Options;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub const TAG_PROPOSAL: &[u8] = b"docket/proposal/v1\0";
pub const TAG_ENTRY: &[u8] = b"docket/entry/v1\0";
pub const TAG_CONSTITUTION: &[u8] = b"docket/constitution/v1\0";
pub const TAG_STATE: &[u8] = b"docket/state/v2\0";
/// Domain separation of an outcome reference ([`crate::ProposalId::outcome_of`]).
pub const TAG_OUTCOME_REF: &[u8] = b"docket/outcome-ref/v1\0";

/// The encoding's configuration, with no size limit: encoding and hashing never fail for
/// size, so no honest growth of a record (the governance state above all) can reach a
/// limit here. Bounds belong where input arrives (the front door, frame caps) and in the
/// decoder, below.
fn encoder() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .reject_trailing_bytes()
}

/// The decoder for `len` input bytes. The limit is the input itself: a length prefix can
/// never make it read, or allocate for, more than it was given (bincode checks the limit
/// before each read, and serde preallocates at most 1 MiB for a sequence), so a corrupt or
/// hostile byte string costs at most its own size, while a large honest record (a state
/// snapshot of a grown ledger) decodes whatever its size.
fn decoder(len: usize) -> impl Options {
    encoder().with_limit(u64::try_from(len).unwrap_or(u64::MAX))
}

/// Canonical bytes of a value.
pub fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    encoder()
        .serialize(value)
        .expect("invariant: core types serialize without error")
}

/// Canonical size of a value in bytes, without allocating it.
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> u64 {
    encoder()
        .serialized_size(value)
        .expect("invariant: core types serialize without error")
}

/// Decodes canonical bytes; refuses trailing bytes and lengths beyond the input.
pub fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    decoder(bytes.len())
        .deserialize(bytes)
        .map_err(|e| DecodeError(e.to_string()))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("canonical decoding failed: {0}")]
pub struct DecodeError(String);

/// BLAKE3 over `tag || canonical bytes of value`, streamed through a fixed buffer (never
/// the whole encoding in memory, whatever its size).
pub fn tagged_hash<T: Serialize + ?Sized>(tag: &[u8], value: &T) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(tag);
    let mut writer = HashWriter {
        hasher: &mut hasher,
        buf: [0; HASH_BUFFER_BYTES],
        len: 0,
    };
    encoder()
        .serialize_into(&mut writer, value)
        .expect("invariant: core types serialize without error");
    writer.drain();
    *hasher.finalize().as_bytes()
}

/// Bytes [`tagged_hash`] gathers before it hands them to the hasher.
/// bincode writes a fixed-size hash or key one byte at a time (they serialize as tuples
/// of `u8`), and a `Hasher::update` per byte cost more than the hashing itself.
const HASH_BUFFER_BYTES: usize = 256;

/// Lets bincode write into a hasher, through a buffer of [`HASH_BUFFER_BYTES`].
struct HashWriter<'a> {
    hasher: &'a mut blake3::Hasher,
    buf: [u8; HASH_BUFFER_BYTES],
    len: usize,
}

impl HashWriter<'_> {
    fn drain(&mut self) {
        self.hasher.update(&self.buf[..self.len]);
        self.len = 0;
    }
}

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.len + bytes.len() > HASH_BUFFER_BYTES {
            self.drain();
        }
        if bytes.len() >= HASH_BUFFER_BYTES {
            self.hasher.update(bytes);
        } else {
            self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        }
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The buffered hasher sees exactly the canonical bytes, in order, whatever mix of
    /// one-byte writes (fixed-size hashes serialize byte by byte) and long writes crosses
    /// its buffer's boundary.
    #[test]
    fn hashing_through_the_buffer_equals_hashing_the_encoding() {
        for hashes in [0usize, 1, 31, 32, 33, 64, 100] {
            for blob in [0usize, 1, 500, 1023, 1024, 1025, 3000] {
                let value: (Vec<[u8; 32]>, Vec<u8>, Vec<[u8; 32]>) = (
                    (0..hashes).map(|i| [i as u8; 32]).collect(),
                    (0..blob).map(|i| (i * 7) as u8).collect(),
                    (0..hashes % 7).map(|i| [255 - i as u8; 32]).collect(),
                );
                let mut hasher = blake3::Hasher::new();
                hasher.update(TAG_STATE);
                hasher.update(&to_bytes(&value));
                assert_eq!(
                    tagged_hash(TAG_STATE, &value),
                    *hasher.finalize().as_bytes(),
                    "{hashes} hashes, a blob of {blob} bytes"
                );
            }
        }
    }

    /// The old fixed 16 MiB limit made hashing and encoding a state past that size panic
    /// (`SizeLimit` in `State::hash`, from `GET /v1/status` on a grown ledger).
    #[test]
    fn records_beyond_sixteen_mib_encode_hash_and_decode() {
        let big: Vec<u8> = (0..17 * 1024 * 1024u32)
            .map(|i| i.to_le_bytes()[0])
            .collect();
        let bytes = to_bytes(&big);
        assert_eq!(bytes.len() as u64, encoded_len(&big));
        assert_eq!(tagged_hash(TAG_STATE, &big), {
            let mut hasher = blake3::Hasher::new();
            hasher.update(TAG_STATE);
            hasher.update(&bytes);
            *hasher.finalize().as_bytes()
        });
        assert_eq!(from_bytes::<Vec<u8>>(&bytes).expect("decodes"), big);
    }

    #[test]
    fn a_length_prefix_beyond_the_input_is_refused() {
        let mut bytes = to_bytes(&vec![7u8; 16]);
        bytes[..8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
        assert!(from_bytes::<Vec<u8>>(&bytes).is_err());
        let truncated = &to_bytes(&vec![7u8; 16])[..20];
        assert!(from_bytes::<Vec<u8>>(truncated).is_err());
        let mut trailing = to_bytes(&vec![7u8; 16]);
        trailing.push(0);
        assert!(from_bytes::<Vec<u8>>(&trailing).is_err());
    }
}
