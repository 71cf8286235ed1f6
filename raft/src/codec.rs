//! The byte encoding of everything this crate persists or ships: Raft log entries, votes,
//! state-machine records and snapshots.
//!
//! It is bincode 1.3.3 in the same configuration as `docket_core::encoding` (fixed-width
//! little-endian integers, `u64` length prefixes, enum variants as `u32` indexes, trailing
//! bytes refused). Two differences from core's helpers, both deliberate:
//!
//! * errors are returned, never turned into panics: these bytes come from disk or from a
//!   peer, and a Raft command batch can be larger than core's 16 MiB record bound;
//! * the decode limit is the length of the input itself, so a corrupt or hostile length
//!   prefix can never make the decoder allocate more than the bytes it was handed.

use bincode::Options;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use bincode::Error;

fn encoder() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .reject_trailing_bytes()
        .with_no_limit()
}

fn decoder(limit_bytes: u64) -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .reject_trailing_bytes()
        .with_limit(limit_bytes)
}

/// Encodes a value.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    encoder().serialize(value)
}

/// Appends the encoding of a value to `out`.
pub fn encode_into<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), Error> {
    encoder().serialize_into(out, value)
}

/// Decodes a whole byte string; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    decoder(bytes.len() as u64).deserialize(bytes)
}

/// Decodes one value from the front of `input` and advances `input` past it.
pub fn decode_prefix<T: DeserializeOwned>(input: &mut &[u8]) -> Result<T, Error> {
    // `deserialize_from` on a reader reads exactly the value's bytes; trailing-byte
    // rejection does not apply to readers, which is what a prefix decode needs.
    decoder(input.len() as u64).deserialize_from(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_layout_match_core() {
        let value = (7u64, String::from("docket"), Some(3u32));
        let bytes = encode(&value).expect("encodes");
        assert_eq!(
            bytes,
            docket_core::encoding::to_bytes(&value),
            "same layout as core"
        );
        assert_eq!(
            decode::<(u64, String, Option<u32>)>(&bytes).expect("decodes"),
            value
        );
    }

    #[test]
    fn hostile_length_prefix_is_refused_without_allocating() {
        // A Vec<u8> claiming u64::MAX / 2 bytes, followed by nothing.
        let bytes = encode(&(u64::MAX / 2)).expect("encodes");
        assert!(decode::<Vec<u8>>(&bytes).is_err());
    }

    #[test]
    fn prefix_decoding_advances() {
        let mut bytes = encode(&1u64).expect("encodes");
        bytes.extend(encode(&String::from("x")).expect("encodes"));
        let mut input = &bytes[..];
        assert_eq!(decode_prefix::<u64>(&mut input).expect("first"), 1);
        assert_eq!(decode_prefix::<String>(&mut input).expect("second"), "x");
        assert!(input.is_empty());
        assert!(decode::<u64>(&bytes).is_err(), "trailing bytes are refused");
    }
}
