//! Proposals: signed, content-addressed requests for a state transition.
//!
//! A proposal is data, never code. Its identity is BLAKE3 over [`TAG_PROPOSAL`] and its
//! canonical bytes, so two structurally identical proposals share an id, and the id covers
//! the ledger id (a proposal is useless on another ledger), the author, the dependencies
//! (so dependency cycles cannot be expressed) and a nonce (so an author can repeat an
//! otherwise identical request on purpose). The author signs the id.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::encoding::{self, TAG_PROPOSAL};
use crate::id::{LedgerId, ProposalId, PublicKey, Signature};
use crate::value::Value;

/// Format of a proposal record. Recorded in every proposal so later formats can coexist
/// with entries already in the ledger. The format is covered by the id, so the rule a
/// proposal's signature is verified under is fixed by the bytes its author signed: every
/// replica and every later audit applies the same one.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
pub enum ProposalFormat {
    /// The signature is verified strictly (RFC 8032 with ed25519-dalek's `verify_strict`:
    /// canonical `S`, `R` and author key of no small order, cofactorless equation). The
    /// default when a JSON proposal names no format, so proposals signed before `v2`
    /// keep their ids.
    #[default]
    #[serde(rename = "v1")]
    V1,
    /// The same fields, the signature verified under ZIP-215's rules (canonical `S`; `R`
    /// and the author key any point encoding; the cofactored equation
    /// `[8][S]B = [8]R + [8][k]A`), which single and batch verification agree on exactly,
    /// so a replica may check a group commit's signatures as one batch. Small-order author
    /// keys are still refused, as in `v1`. See ARCHITECTURE.md, "Signatures".
    #[serde(rename = "v2")]
    V2,
}

impl ProposalFormat {
    /// The format docket's own builders (CLI, client, agents, bench) sign.
    pub const CURRENT: ProposalFormat = ProposalFormat::V2;
}

/// The signed body of a proposal. Field order is part of the canonical encoding.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proposal {
    #[serde(default)]
    pub format: ProposalFormat,
    pub ledger_id: LedgerId,
    pub domain: String,
    pub action: String,
    pub subject: String,
    pub payload: Value,
    /// Sorted and free of duplicates (see [`Proposal::normalize`]); checked on every replica.
    #[serde(default)]
    pub dependencies: Vec<ProposalId>,
    pub author: PublicKey,
    #[serde(default)]
    pub nonce: u64,
}

impl Proposal {
    /// Sorts and de-duplicates the dependencies. Builders call this before signing; the
    /// core refuses (as a schema rejection) a proposal whose dependencies are not normal,
    /// because the id must not depend on the order a client happened to list them in.
    pub fn normalize(&mut self) {
        self.dependencies.sort_unstable();
        self.dependencies.dedup();
    }

    pub fn dependencies_are_normal(&self) -> bool {
        self.dependencies.windows(2).all(|w| w[0] < w[1])
    }

    /// The canonical bytes that the id is computed over.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        encoding::to_bytes(self)
    }

    pub fn id(&self) -> ProposalId {
        ProposalId(encoding::tagged_hash(TAG_PROPOSAL, self))
    }

    /// Size of the payload in canonical bytes, the quantity `payload_bytes_max` limits.
    pub fn payload_bytes(&self) -> u64 {
        encoding::encoded_len(&self.payload)
    }

    /// Signs the proposal with `key`, which must be the author's key.
    pub fn sign(self, key: &SigningKey) -> SignedProposal {
        assert_eq!(
            PublicKey(key.verifying_key().to_bytes()),
            self.author,
            "invariant: a proposal is signed by its author"
        );
        let id = self.id();
        let signature = Signature(key.sign(id.as_bytes()).to_bytes());
        SignedProposal {
            proposal: self,
            signature,
        }
    }
}

/// A proposal with its author's signature over its id.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedProposal {
    #[serde(deserialize_with = "crate::json::objects_only")]
    pub proposal: Proposal,
    pub signature: Signature,
}

impl SignedProposal {
    pub fn id(&self) -> ProposalId {
        self.proposal.id()
    }

    /// Verifies the signature over `id` under the rule of the proposal's format
    /// ([`ProposalFormat`]): strict for `v1`, ZIP-215 for `v2`. Either refuses a
    /// small-order (weak) author key and a key that is no curve point.
    pub fn verify(&self, id: &ProposalId) -> Result<(), SignatureError> {
        let key = AuthorKey::decompress(&self.proposal.author)?;
        verify_with_key(&key, self, id)
    }
}

/// An author key, decompressed and checked: a curve point of no small order. Both
/// verifiers decompress with curve25519-dalek's `CompressedEdwardsY::decompress`, so they
/// accept the same encodings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AuthorKey {
    strict: VerifyingKey,
    zip215: ed25519_zebra::VerificationKey,
}

impl AuthorKey {
    pub(crate) fn decompress(author: &PublicKey) -> Result<AuthorKey, SignatureError> {
        let strict = VerifyingKey::from_bytes(author.as_bytes())
            .map_err(|_| SignatureError::MalformedKey)?;
        if strict.is_weak() {
            return Err(SignatureError::WeakKey);
        }
        let zip215 = ed25519_zebra::VerificationKey::try_from(*author.as_bytes())
            .map_err(|_| SignatureError::MalformedKey)?;
        Ok(AuthorKey { strict, zip215 })
    }

    pub(crate) fn bytes(&self) -> [u8; 32] {
        self.strict.to_bytes()
    }
}

/// [`SignedProposal::verify`] with the author key already decompressed (`key` must be
/// the decompression of `signed.proposal.author`).
pub(crate) fn verify_with_key(
    key: &AuthorKey,
    signed: &SignedProposal,
    id: &ProposalId,
) -> Result<(), SignatureError> {
    debug_assert_eq!(&key.bytes(), signed.proposal.author.as_bytes());
    match signed.proposal.format {
        ProposalFormat::V1 => {
            let signature = ed25519_dalek::Signature::from_bytes(signed.signature.as_bytes());
            key.strict
                .verify_strict(id.as_bytes(), &signature)
                .map_err(|_| SignatureError::Invalid)
        }
        ProposalFormat::V2 => {
            let signature = ed25519_zebra::Signature::from_bytes(signed.signature.as_bytes());
            key.zip215
                .verify(&signature, id.as_bytes())
                .map_err(|_| SignatureError::Invalid)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the author key is not a valid ed25519 point")]
    MalformedKey,
    #[error("the author key is a weak (small-order) ed25519 key")]
    WeakKey,
    #[error("the signature does not verify against the author key and the proposal id")]
    Invalid,
}

/// The public key of a signing key, in the core's type.
pub fn public_key(key: &SigningKey) -> PublicKey {
    PublicKey(key.verifying_key().to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(key: &SigningKey) -> Proposal {
        Proposal {
            format: ProposalFormat::V1,
            ledger_id: LedgerId::new("test").expect("valid"),
            domain: "settlement".into(),
            action: "SETTLEMENT.DEPOSIT_CONFIRMED".into(),
            subject: "stl-1".into(),
            payload: Value::map([("amount", Value::Int(5))]),
            dependencies: vec![],
            author: public_key(key),
            nonce: 0,
        }
    }

    #[test]
    fn signature_verifies_and_tampering_is_caught() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let signed = sample(&key).sign(&key);
        assert_eq!(signed.verify(&signed.id()), Ok(()));

        let mut tampered = signed.clone();
        tampered.proposal.nonce = 1;
        assert_eq!(
            tampered.verify(&tampered.id()),
            Err(SignatureError::Invalid)
        );

        let mut forged = signed.clone();
        forged.signature.0[0] ^= 1;
        assert!(forged.verify(&forged.id()).is_err());
    }

    #[test]
    fn weak_keys_are_refused() {
        // The identity point (y = 1) has small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut signed =
            sample(&SigningKey::from_bytes(&[1; 32])).sign(&SigningKey::from_bytes(&[1; 32]));
        signed.proposal.author = PublicKey(identity);
        assert_eq!(signed.verify(&signed.id()), Err(SignatureError::WeakKey));
    }

    #[test]
    fn normalize_sorts_and_dedups() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let mut p = sample(&key);
        p.dependencies = vec![
            ProposalId([3; 32]),
            ProposalId([1; 32]),
            ProposalId([3; 32]),
        ];
        assert!(!p.dependencies_are_normal());
        p.normalize();
        assert_eq!(
            p.dependencies,
            vec![ProposalId([1; 32]), ProposalId([3; 32])]
        );
        assert!(p.dependencies_are_normal());
    }

    #[test]
    fn unknown_fields_are_refused_in_json() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let mut json = serde_json::to_value(sample(&key)).expect("serializes");
        json["surprise"] = serde_json::json!(1);
        let err = serde_json::from_value::<Proposal>(json).expect_err("unknown field");
        assert!(err.to_string().contains("surprise"), "{err}");
    }
}
