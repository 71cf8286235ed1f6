//! Checkpoints: the ledger's signed tree heads, in C2SP's formats.
//!
//! A checkpoint ([C2SP tlog-checkpoint]) names the ledger (its origin, the ledger id), a
//! size and the RFC 9162 root ([`crate::merkle`]) over the first `size` entry hashes, and
//! carries one extension line with the state hash after those entries:
//!
//! ```text
//! docket-prod
//! 1200
//! 2Xn1...base64 root...=
//! state 3ea8434c...64 hex...
//! ```
//!
//! Every replica cosigns the checkpoints it has applied with its own ed25519 node key, as a
//! [C2SP tlog-cosignature] `cosignature/v1` line under the [C2SP signed-note] body:
//!
//! ```text
//! — docket-prod/node-2 <base64(key id ‖ timestamp ‖ signature)>
//! ```
//!
//! where the key id is the first four bytes of `SHA-256(name ‖ 0x0A ‖ 0x04 ‖ public key)`,
//! the timestamp is eight big-endian bytes of seconds, and the signature is over
//! `"cosignature/v1\ntime <timestamp>\n"` followed by the checkpoint body. The timestamp is
//! the ledger time of the checkpoint's last entry (seconds), so every honest replica signs
//! the same message for the same checkpoint. A checkpoint is **final** once a quorum of the
//! cluster's voters has cosigned it.
//!
//! Pure: no I/O, no clock. Parsing is strict (one format, one spelling) and bounded.
//!
//! [C2SP tlog-checkpoint]: https://c2sp.org/tlog-checkpoint
//! [C2SP tlog-cosignature]: https://c2sp.org/tlog-cosignature
//! [C2SP signed-note]: https://c2sp.org/signed-note

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

use crate::id::{PublicKey, StateHash};
use crate::merkle::Hash;
use crate::statemap::MapAnchor;

/// The signature algorithm byte of a `cosignature/v1` key (C2SP tlog-cosignature).
pub const COSIGNATURE_V1_ALGORITHM: u8 = 0x04;
/// Largest note parsed: a body and a few hundred cosignature lines.
pub const NOTE_BYTES_MAX: usize = 64 * 1024;
/// Cosignature lines read from one note.
pub const COSIGNATURES_MAX: usize = 256;

/// A checkpoint's body: what is signed.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Checkpoint {
    /// The ledger id.
    pub origin: String,
    /// Ledger entries covered: `[0, size)`.
    pub size: u64,
    /// RFC 9162 root over their entry hashes.
    pub root: Hash,
    /// The state hash after them.
    pub state: StateHash,
    /// The state map's root at the last anchor at or before `size`
    /// ([`crate::statemap`]), when the signers had one: proofs of one row are checked
    /// against it. An optional second extension line, `map <anchor size> <64 hex>`.
    pub map: Option<MapAnchor>,
}

/// One replica's `cosignature/v1` of a checkpoint.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Cosignature {
    /// The key name, `<origin>/node-<id>` for a node.
    pub name: String,
    pub key_id: [u8; 4],
    /// Seconds (the ledger time of the checkpoint's last entry).
    pub time: u64,
    pub signature: [u8; 64],
}

/// A checkpoint with the cosignatures gathered for it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub cosignatures: Vec<Cosignature>,
}

/// Why a checkpoint or a note was refused.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("malformed note: {0}")]
    Malformed(String),
    #[error("cosignature by {name} does not verify")]
    BadCosignature { name: String },
    #[error("{valid} valid cosignatures of known cosigners; a final checkpoint needs {quorum}")]
    NoQuorum { valid: usize, quorum: usize },
}

/// The key name a node cosigns with.
pub fn cosigner_name(origin: &str, node: u64) -> String {
    format!("{origin}/node-{node}")
}

/// C2SP key id of a `cosignature/v1` key.
pub fn key_id(name: &str, key: &PublicKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0A, COSIGNATURE_V1_ALGORITHM]);
    h.update(key.0);
    let digest = h.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

impl Checkpoint {
    /// The note body: origin, size, base64 root, the state extension line; each ended by a
    /// newline.
    pub fn body(&self) -> String {
        let mut body = format!(
            "{}\n{}\n{}\nstate {}\n",
            self.origin,
            self.size,
            B64.encode(self.root),
            self.state.to_hex()
        );
        if let Some(map) = &self.map {
            body.push_str(&format!("map {} {}\n", map.size, hex::encode(map.root)));
        }
        body
    }

    /// Parses a body written by [`Checkpoint::body`].
    pub fn parse_body(body: &str) -> Result<Checkpoint, CheckpointError> {
        let bad = |what: &str| CheckpointError::Malformed(what.to_owned());
        let lines: Vec<&str> = body
            .strip_suffix('\n')
            .ok_or_else(|| bad("the body does not end with a newline"))?
            .split('\n')
            .collect();
        let (origin, size, root, state, map) = match lines.as_slice() {
            [origin, size, root, state] => (origin, size, root, state, None),
            [origin, size, root, state, map] => (origin, size, root, state, Some(*map)),
            _ => {
                return Err(bad(
                    "a checkpoint body is four lines (origin, size, root, state) and an \
                     optional fifth (map)",
                ))
            }
        };
        if crate::id::LedgerId::new(*origin).is_err() {
            return Err(bad(
                "the origin is a ledger id (1 to 64 characters of a-z, 0-9 and '-')",
            ));
        }
        let size_ok = !size.is_empty()
            && size.bytes().all(|b| b.is_ascii_digit())
            && (size.len() == 1 || !size.starts_with('0'));
        let size: u64 = size
            .parse()
            .ok()
            .filter(|_| size_ok)
            .ok_or_else(|| bad("the size is a decimal number without leading zeros"))?;
        if size == 0 {
            return Err(bad("a docket checkpoint covers at least the genesis entry"));
        }
        let root: Hash = B64
            .decode(root)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| bad("the root is 32 bytes in standard base64"))?;
        let state = state
            .strip_prefix("state ")
            .and_then(|hex| crate::id::decode_hex::<32>(hex).ok())
            .map(StateHash)
            .ok_or_else(|| bad("the extension line is `state <64 lowercase hex>`"))?;
        let map = match map {
            None => None,
            Some(line) => {
                let bad_map =
                    || bad("the map line is `map <anchor size, decimal> <64 lowercase hex>`");
                let (anchor, root) = line
                    .strip_prefix("map ")
                    .and_then(|rest| rest.split_once(' '))
                    .ok_or_else(bad_map)?;
                let anchor_ok = !anchor.is_empty()
                    && anchor.bytes().all(|b| b.is_ascii_digit())
                    && (anchor.len() == 1 || !anchor.starts_with('0'));
                let anchor: u64 = anchor
                    .parse()
                    .ok()
                    .filter(|_| anchor_ok)
                    .ok_or_else(bad_map)?;
                if anchor > size {
                    return Err(bad("the map's anchor is past the checkpoint's size"));
                }
                let root = crate::id::decode_hex::<32>(root).map_err(|_| bad_map())?;
                Some(MapAnchor { size: anchor, root })
            }
        };
        Ok(Checkpoint {
            origin: (*origin).to_owned(),
            size,
            root,
            state,
            map,
        })
    }

    /// What a `cosignature/v1` at `time` signs.
    fn cosigned_message(&self, time: u64) -> Vec<u8> {
        format!("cosignature/v1\ntime {time}\n{}", self.body()).into_bytes()
    }

    /// Cosigns this checkpoint as `name` with `key` at `time` (seconds).
    pub fn cosign(&self, name: &str, time: u64, key: &SigningKey) -> Cosignature {
        let public = PublicKey(key.verifying_key().to_bytes());
        Cosignature {
            name: name.to_owned(),
            key_id: key_id(name, &public),
            time,
            signature: key.sign(&self.cosigned_message(time)).to_bytes(),
        }
    }

    /// Whether `cosignature` is `key`'s (strict ed25519) over this checkpoint.
    pub fn verify(
        &self,
        cosignature: &Cosignature,
        key: &PublicKey,
    ) -> Result<(), CheckpointError> {
        let bad = || CheckpointError::BadCosignature {
            name: cosignature.name.clone(),
        };
        if cosignature.key_id != key_id(&cosignature.name, key) {
            return Err(bad());
        }
        let verifying = VerifyingKey::from_bytes(&key.0).map_err(|_| bad())?;
        verifying
            .verify_strict(
                &self.cosigned_message(cosignature.time),
                &ed25519_dalek::Signature::from_bytes(&cosignature.signature),
            )
            .map_err(|_| bad())
    }
}

impl Cosignature {
    /// The signature line, without its newline: `— <name> <base64>`.
    pub fn line(&self) -> String {
        let mut blob = Vec::with_capacity(76);
        blob.extend_from_slice(&self.key_id);
        blob.extend_from_slice(&self.time.to_be_bytes());
        blob.extend_from_slice(&self.signature);
        format!("\u{2014} {} {}", self.name, B64.encode(blob))
    }

    /// Parses a line written by [`Cosignature::line`].
    pub fn parse_line(line: &str) -> Result<Cosignature, CheckpointError> {
        let bad = |what: &str| CheckpointError::Malformed(format!("signature line: {what}"));
        let rest = line
            .strip_prefix("\u{2014} ")
            .ok_or_else(|| bad("starts with an em dash and a space"))?;
        let (name, blob) = rest
            .split_once(' ')
            .ok_or_else(|| bad("is `— <name> <base64>`"))?;
        if name.is_empty()
            || name.contains('+')
            || name.chars().any(char::is_whitespace)
            || blob.contains(' ')
        {
            return Err(bad("is `— <name> <base64>`"));
        }
        let blob = B64
            .decode(blob)
            .map_err(|_| bad("the signature is standard base64"))?;
        if blob.len() != 4 + 8 + 64 {
            // Another algorithm's signature (a log's own Ed25519 note signature, say):
            // not a cosignature/v1 line.
            return Err(bad("a cosignature/v1 blob is 76 bytes"));
        }
        let mut key_id = [0; 4];
        key_id.copy_from_slice(&blob[..4]);
        let mut time = [0; 8];
        time.copy_from_slice(&blob[4..12]);
        let mut signature = [0; 64];
        signature.copy_from_slice(&blob[12..]);
        Ok(Cosignature {
            name: name.to_owned(),
            key_id,
            time: u64::from_be_bytes(time),
            signature,
        })
    }
}

impl SignedCheckpoint {
    /// The signed note: the body, a blank line, one line per cosignature.
    pub fn to_note(&self) -> String {
        let mut note = self.checkpoint.body();
        note.push('\n');
        for cosignature in &self.cosignatures {
            note.push_str(&cosignature.line());
            note.push('\n');
        }
        note
    }

    /// Parses a note written by [`SignedCheckpoint::to_note`] (signatures unchecked: see
    /// [`SignedCheckpoint::verify`]).
    pub fn parse_note(note: &str) -> Result<SignedCheckpoint, CheckpointError> {
        if note.len() > NOTE_BYTES_MAX {
            return Err(CheckpointError::Malformed(format!(
                "the note is over {NOTE_BYTES_MAX} bytes"
            )));
        }
        let (body, signatures) = note.split_once("\n\n").ok_or_else(|| {
            CheckpointError::Malformed("no blank line between the body and the signatures".into())
        })?;
        let checkpoint = Checkpoint::parse_body(&format!("{body}\n"))?;
        let signatures = signatures.strip_suffix('\n').ok_or_else(|| {
            CheckpointError::Malformed("the note does not end with a newline".into())
        })?;
        let mut cosignatures = Vec::new();
        for (n, line) in signatures.split('\n').enumerate() {
            if n == COSIGNATURES_MAX {
                return Err(CheckpointError::Malformed(format!(
                    "more than {COSIGNATURES_MAX} signature lines"
                )));
            }
            match Cosignature::parse_line(line) {
                Ok(cosignature) => cosignatures.push(cosignature),
                // A well-formed line of another signature type (a log's own Ed25519 note
                // signature, say): C2SP verifiers skip keys they do not know.
                Err(_) if is_signature_line(line) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(SignedCheckpoint {
            checkpoint,
            cosignatures,
        })
    }

    /// Counts the cosignatures that verify under `cosigners` (name → key), each key once
    /// (two names declared with one key are one cosigner), and refuses fewer than `quorum`.
    /// A line whose name and key id are not one of `cosigners` is ignored, as C2SP
    /// verifiers ignore unknown keys; a known key whose signature does not verify is an
    /// error: someone signed what its key did not.
    pub fn verify(
        &self,
        cosigners: &BTreeMap<String, PublicKey>,
        quorum: usize,
    ) -> Result<usize, CheckpointError> {
        let mut valid = std::collections::BTreeSet::new();
        for cosignature in &self.cosignatures {
            let Some(key) = cosigners.get(&cosignature.name) else {
                continue;
            };
            if cosignature.key_id != key_id(&cosignature.name, key) {
                continue;
            }
            self.checkpoint.verify(cosignature, key)?;
            valid.insert(*key);
        }
        if valid.len() < quorum {
            return Err(CheckpointError::NoQuorum {
                valid: valid.len(),
                quorum,
            });
        }
        Ok(valid.len())
    }
}

/// Whether `line` has the shape of a signed-note signature line: `— <name> <base64>`.
fn is_signature_line(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("\u{2014} ") else {
        return false;
    };
    let mut parts = rest.split(' ');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(name), Some(blob), None)
            if !name.is_empty()
                && !name.contains('+')
                && !name.chars().any(char::is_whitespace)
                && B64.decode(blob).is_ok_and(|b| b.len() > 4)
    )
}

/// Why an entry's proof failed.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum EntryProofError {
    #[error("entry #{index}: its hash does not match its contents (the entry was altered)")]
    EntryAltered { index: u64 },
    #[error("entry #{index} is not covered by a checkpoint of size {size}")]
    OutOfRange { index: u64, size: u64 },
    #[error(
        "entry #{index}: the inclusion proof does not lead to the checkpoint's root ({detail})"
    )]
    NotIncluded { index: u64, detail: String },
}

impl Checkpoint {
    /// Verifies that `entry` (its contents, then its hash) is leaf `entry.index` of this
    /// checkpoint's tree, by the RFC 9162 audit path `proof`.
    pub fn verify_entry(
        &self,
        entry: &crate::LedgerEntry,
        proof: &[Hash],
    ) -> Result<(), EntryProofError> {
        let index = entry.index.0;
        if entry.compute_hash() != entry.hash {
            return Err(EntryProofError::EntryAltered { index });
        }
        if index >= self.size {
            return Err(EntryProofError::OutOfRange {
                index,
                size: self.size,
            });
        }
        crate::merkle::verify_inclusion(&entry.hash.0, index, self.size, proof, &self.root).map_err(
            |e| EntryProofError::NotIncluded {
                index,
                detail: e.to_string(),
            },
        )
    }

    /// Verifies that `self` extends `earlier` (same origin, RFC 9162 consistency `proof`).
    pub fn verify_extends(&self, earlier: &Checkpoint, proof: &[Hash]) -> Result<(), String> {
        if self.origin != earlier.origin {
            return Err(format!(
                "checkpoints of two ledgers: {:?} and {:?}",
                earlier.origin, self.origin
            ));
        }
        if earlier.size > self.size {
            return Err(format!(
                "size {} does not extend size {}",
                self.size, earlier.size
            ));
        }
        if earlier.size == self.size {
            return if earlier.root == self.root && earlier.state == self.state {
                Ok(())
            } else {
                Err(format!("two different checkpoints at size {}", self.size))
            };
        }
        if earlier.size == 0 {
            return Err("size 0 is not a checkpoint".to_owned());
        }
        crate::merkle::verify_consistency(earlier.size, self.size, proof, &earlier.root, &self.root)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Value;

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: "docket-test".to_owned(),
            size: 1200,
            root: [7; 32],
            state: StateHash([9; 32]),
            map: Some(MapAnchor {
                size: 1024,
                root: [5; 32],
            }),
        }
    }

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn public(n: u8) -> PublicKey {
        PublicKey(key(n).verifying_key().to_bytes())
    }

    #[test]
    fn a_note_round_trips_and_verifies_with_a_quorum() {
        let c = checkpoint();
        let names: Vec<String> = (1..=3).map(|n| cosigner_name("docket-test", n)).collect();
        let signed = SignedCheckpoint {
            checkpoint: c.clone(),
            cosignatures: (0..3)
                .map(|i| c.cosign(&names[i], 1_800_000_000, &key(i as u8 + 1)))
                .collect(),
        };
        let note = signed.to_note();
        assert!(note.starts_with("docket-test\n1200\n"), "{note}");
        assert!(note.contains("\n\n\u{2014} docket-test/node-1 "), "{note}");
        let parsed = SignedCheckpoint::parse_note(&note).expect("parses");
        assert_eq!(parsed, signed);
        let cosigners: BTreeMap<String, PublicKey> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), public(i as u8 + 1)))
            .collect();
        assert_eq!(parsed.verify(&cosigners, 2), Ok(3));
        assert_eq!(
            parsed.verify(&cosigners, 4),
            Err(CheckpointError::NoQuorum {
                valid: 3,
                quorum: 4
            })
        );
    }

    #[test]
    fn a_changed_byte_or_a_wrong_key_fails() {
        let c = checkpoint();
        let name = cosigner_name("docket-test", 1);
        let cosignature = c.cosign(&name, 5, &key(1));
        assert_eq!(c.verify(&cosignature, &public(1)), Ok(()));
        assert!(c.verify(&cosignature, &public(2)).is_err(), "another key");
        let mut other = c.clone();
        other.size += 1;
        assert!(
            other.verify(&cosignature, &public(1)).is_err(),
            "another size"
        );
        let mut other = c.clone();
        other.state = StateHash([8; 32]);
        assert!(
            other.verify(&cosignature, &public(1)).is_err(),
            "another state"
        );
        for map in [
            None,
            Some(MapAnchor {
                size: 1023,
                root: [5; 32],
            }),
            Some(MapAnchor {
                size: 1024,
                root: [6; 32],
            }),
        ] {
            let mut other = c.clone();
            other.map = map;
            assert!(
                other.verify(&cosignature, &public(1)).is_err(),
                "another map line: {map:?}"
            );
        }
        let mut later = cosignature.clone();
        later.time += 1;
        assert!(c.verify(&later, &public(1)).is_err(), "another time");
        // A known cosigner whose line does not verify is an error, not a skipped line.
        let signed = SignedCheckpoint {
            checkpoint: other,
            cosignatures: vec![cosignature],
        };
        let cosigners = BTreeMap::from([(name, public(1))]);
        assert!(matches!(
            signed.verify(&cosigners, 1),
            Err(CheckpointError::BadCosignature { .. })
        ));
    }

    #[test]
    fn unknown_keys_and_other_signatures_are_skipped_and_one_key_counts_once() {
        let c = checkpoint();
        let one = c.cosign("docket-test/node-1", 5, &key(1));
        // The same key under a second name: one cosigner, not two.
        let again = c.cosign("docket-test/node-2", 5, &key(1));
        let mut signed = SignedCheckpoint {
            checkpoint: c.clone(),
            cosignatures: vec![one, again],
        };
        let both_names_one_key = BTreeMap::from([
            ("docket-test/node-1".to_owned(), public(1)),
            ("docket-test/node-2".to_owned(), public(1)),
        ]);
        assert_eq!(signed.verify(&both_names_one_key, 1), Ok(1));
        assert_eq!(
            signed.verify(&both_names_one_key, 2),
            Err(CheckpointError::NoQuorum {
                valid: 1,
                quorum: 2
            })
        );
        // A known name under another key id is an unknown key: skipped, not an error.
        let other_key = BTreeMap::from([("docket-test/node-1".to_owned(), public(9))]);
        assert_eq!(
            signed.verify(&other_key, 1),
            Err(CheckpointError::NoQuorum {
                valid: 0,
                quorum: 1
            })
        );
        // A log's own Ed25519 signature line (4-byte key id + 64-byte signature) is skipped.
        signed.cosignatures.truncate(1);
        let mut note = signed.to_note();
        note.push_str(&format!("\u{2014} docket-test {}\n", B64.encode([7u8; 68])));
        let parsed = SignedCheckpoint::parse_note(&note).expect("parses");
        assert_eq!(parsed.cosignatures.len(), 1);
        assert_eq!(
            parsed.verify(
                &BTreeMap::from([("docket-test/node-1".to_owned(), public(1))]),
                1
            ),
            Ok(1)
        );
    }

    #[test]
    fn malformed_notes_are_refused() {
        let good = SignedCheckpoint {
            checkpoint: checkpoint(),
            cosignatures: vec![checkpoint().cosign("docket-test/node-1", 5, &key(1))],
        }
        .to_note();
        for bad in [
            good.replacen("1200", "01200", 1),
            good.replacen("1200", "-1", 1),
            good.replacen("state ", "state  ", 1),
            good.replacen("docket-test\n", "docket test\n", 1),
            good.replacen("docket-test\n", "../etc\n", 1),
            good.replacen("\n1200\n", "\n0\n", 1),
            good.replacen("docket-test/node-1 ", "docket-test/node\t1 ", 1),
            good.replacen("\n\n", "\n", 1),
            good.trim_end().to_owned(),
            good.replacen("\u{2014} ", "- ", 1),
            format!("{good}\u{2014} x AAAA\n"),
            good.replacen("map 1024 ", "map 01024 ", 1),
            good.replacen("map 1024 ", "map 1201 ", 1),
            good.replacen("map 1024 ", "map  1024 ", 1),
            good.replacen("map 1024 ", "maps 1024 ", 1),
            good.replacen("map 1024 0505", "map 1024 05", 1),
            good.replacen("map 1024 0505", "map 1024 0A0A", 1),
            good.replacen("\nmap ", "\nextra line\nmap ", 1),
        ] {
            assert!(SignedCheckpoint::parse_note(&bad).is_err(), "{bad}");
        }
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;
        use crate::merkle::{MemStore, MerkleTree};

        fn flip<const N: usize>(bytes: &mut [u8; N], bit: usize) {
            bytes[(bit / 8) % N] ^= 1 << (bit % 8);
        }

        /// A ledger of genesis and `deposits` admitted deposits, its tree, and a checkpoint
        /// of it cosigned by three keys.
        fn ledger(
            deposits: usize,
        ) -> (
            Vec<crate::LedgerEntry>,
            MerkleTree<MemStore>,
            SignedCheckpoint,
        ) {
            let id = crate::LedgerId::new("prop").expect("valid");
            let (mut state, genesis) = crate::State::genesis(
                id.clone(),
                crate::constitution::DEFAULT_DOCUMENT,
                crate::LedgerTime(1_000),
            )
            .expect("genesis");
            let mut entries = vec![genesis];
            for n in 0..deposits {
                let p = crate::dev::proposal(
                    &id,
                    "alice",
                    "SETTLEMENT.DEPOSIT_CONFIRMED",
                    &format!("s{n}"),
                    Value::map([("amount", Value::Int(5)), ("currency", "EUR".into())]),
                    vec![],
                    n as u64,
                );
                if let crate::Submission::Recorded(new) =
                    state.submit(p, crate::LedgerTime(2_000 + n as u64))
                {
                    entries.extend(new);
                }
            }
            let mut tree = MerkleTree::new(MemStore::default());
            for e in &entries {
                tree.append(&e.hash.0).expect("append");
            }
            let checkpoint = Checkpoint {
                origin: "prop".to_owned(),
                size: entries.len() as u64,
                root: tree.root().expect("root"),
                state: state.hash(),
                map: None,
            };
            let cosignatures = (1..=3u8)
                .map(|k| checkpoint.cosign(&cosigner_name("prop", k.into()), 7, &key(k)))
                .collect();
            (
                entries,
                tree,
                SignedCheckpoint {
                    checkpoint,
                    cosignatures,
                },
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(24))]

            /// Every entry verifies under the cosigned checkpoint; one flipped bit anywhere
            /// in the entry's hash, its audit path, the checkpoint (size, root, state) or a
            /// signature fails it.
            #[test]
            fn one_flipped_bit_fails(deposits in 1usize..12, bit in 0usize..512, pick in 0usize..64) {
                let (entries, tree, signed) = ledger(deposits);
                let keys: BTreeMap<String, PublicKey> = (1..=3u8)
                    .map(|k| (cosigner_name("prop", k.into()), public(k)))
                    .collect();
                prop_assert_eq!(signed.verify(&keys, 3), Ok(3));
                let c = &signed.checkpoint;
                let i = pick % entries.len();
                let entry = &entries[i];
                let proof = tree.inclusion_proof(i as u64, c.size).expect("proof");
                prop_assert!(c.verify_entry(entry, &proof).is_ok());

                let mut altered = entry.clone();
                flip(&mut altered.hash.0, bit);
                prop_assert!(c.verify_entry(&altered, &proof).is_err());
                let mut altered = entry.clone();
                altered.time.0 ^= 1 << (bit % 64);
                prop_assert!(c.verify_entry(&altered, &proof).is_err());
                if !proof.is_empty() {
                    let mut bad = proof.clone();
                    let j = pick % bad.len();
                    flip(&mut bad[j], bit);
                    prop_assert!(c.verify_entry(entry, &bad).is_err());
                }
                let mut other = c.clone();
                flip(&mut other.root, bit);
                prop_assert!(other.verify_entry(entry, &proof).is_err());
                prop_assert!(other.verify(&signed.cosignatures[0], &public(1)).is_err());
                let mut other = c.clone();
                flip(&mut other.state.0, bit);
                prop_assert!(other.verify(&signed.cosignatures[0], &public(1)).is_err());
                let mut other = c.clone();
                other.size ^= 1 << (bit % 16);
                prop_assert!(other.verify(&signed.cosignatures[0], &public(1)).is_err());
                let mut forged = signed.clone();
                flip(&mut forged.cosignatures[pick % 3].signature, bit);
                prop_assert!(forged.verify(&keys, 3).is_err());
            }

            /// A later checkpoint extends an earlier one by its consistency proof; sizes
            /// that do not increase are refused, and a flipped bit fails the proof.
            #[test]
            fn consistency_between_checkpoints(deposits in 2usize..12, cut in 1usize..12, bit in 0usize..256) {
                let (entries, tree, signed) = ledger(deposits);
                let later = &signed.checkpoint;
                let m = (cut % (entries.len() - 1)) as u64 + 1;
                let earlier = Checkpoint {
                    size: m,
                    root: tree.root_at(m).expect("root"),
                    ..later.clone()
                };
                let proof = tree.consistency_proof(m, later.size).expect("proof");
                prop_assert!(later.verify_extends(&earlier, &proof).is_ok());
                prop_assert!(earlier.verify_extends(later, &proof).is_err());
                prop_assert!(tree.consistency_proof(later.size, m).is_err());
                if !proof.is_empty() {
                    let mut bad = proof.clone();
                    flip(&mut bad[bit % proof.len()], bit);
                    prop_assert!(later.verify_extends(&earlier, &bad).is_err());
                }
                let mut forked = earlier.clone();
                flip(&mut forked.root, bit);
                prop_assert!(later.verify_extends(&forked, &proof).is_err());
            }
        }
    }
}
