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

/// Largest record the decoder will allocate for. Bounds what a corrupt or hostile byte
/// string can make us allocate; a ledger entry is far below this (payload limits apply).
pub const DECODE_BYTES_MAX: u64 = 16 * 1024 * 1024;

pub const TAG_PROPOSAL: &[u8] = b"docket/proposal/v1\0";
pub const TAG_ENTRY: &[u8] = b"docket/entry/v1\0";
pub const TAG_CONSTITUTION: &[u8] = b"docket/constitution/v1\0";
pub const TAG_STATE: &[u8] = b"docket/state/v1\0";

fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .reject_trailing_bytes()
        .with_limit(DECODE_BYTES_MAX)
}

/// Canonical bytes of a value.
pub fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    options()
        .serialize(value)
        .expect("invariant: core types serialize without error and below DECODE_BYTES_MAX")
}

/// Canonical size of a value in bytes, without allocating it.
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> u64 {
    options()
        .serialized_size(value)
        .expect("invariant: core types serialize without error")
}

/// Decodes canonical bytes; refuses trailing bytes and oversize lengths.
pub fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    options()
        .deserialize(bytes)
        .map_err(|e| DecodeError(e.to_string()))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("canonical decoding failed: {0}")]
pub struct DecodeError(String);

/// BLAKE3 over `tag || canonical bytes of value`, streamed without an intermediate buffer.
pub fn tagged_hash<T: Serialize + ?Sized>(tag: &[u8], value: &T) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(tag);
    options()
        .serialize_into(&mut HashWriter(&mut hasher), value)
        .expect("invariant: core types serialize without error");
    *hasher.finalize().as_bytes()
}

/// Lets bincode write straight into a hasher.
struct HashWriter<'a>(&'a mut blake3::Hasher);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
