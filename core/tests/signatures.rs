//! The two signature rules (FORMAT.md "Proposal formats"): `v1` verifies strictly, `v2`
//! under ZIP-215, and a group of `v2` signatures verified as one batch gets exactly the
//! answers single checks give it.

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT as B;
use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use docket_core::proposal::SignatureError;
use docket_core::{
    dev, LedgerId, ProposalFormat, ProposalId, SignatureCheck, SignedProposal, Strict, Value,
    VerifiedMemo,
};
use proptest::prelude::*;
use sha2::{Digest, Sha512};

fn ledger() -> LedgerId {
    LedgerId::new("signatures").expect("valid")
}

fn deposit(author: &str, nonce: u64, format: ProposalFormat) -> SignedProposal {
    let signed = dev::proposal(
        &ledger(),
        author,
        "SETTLEMENT.DEPOSIT_CONFIRMED",
        &format!("stl-{nonce}"),
        Value::map([("amount", Value::Int(5)), ("currency", "EUR".into())]),
        vec![],
        nonce,
    );
    dev::reformat(signed, format, author)
}

/// Signs `signed`'s id again by hand with the nonce point `R = rB + T`, `T` of order 4:
/// `S = r + k·a` with `k = SHA-512(R ‖ A ‖ id)`. The cofactored equation (ZIP-215) holds,
/// since `[8]T` is the identity; the cofactorless one (`verify_strict`) does not, since
/// `[S]B = R − T + [k]A`. The author key is an honest one: only the signature differs.
fn with_torsioned_nonce(mut signed: SignedProposal, author: &str) -> SignedProposal {
    let seed = dev::signing_key(author).to_bytes();
    let expanded = Sha512::digest(seed);
    let mut scalar_bytes: [u8; 32] = expanded[..32].try_into().expect("32 bytes");
    scalar_bytes[0] &= 248;
    scalar_bytes[31] &= 127;
    scalar_bytes[31] |= 64;
    let a = Scalar::from_bytes_mod_order(scalar_bytes);
    let public = (a * B).compress();
    assert_eq!(public.to_bytes(), *signed.proposal.author.as_bytes());

    let torsion = CompressedEdwardsY([0; 32])
        .decompress()
        .expect("y = 0 is a point");
    assert!(torsion.is_small_order() && !torsion.is_identity());
    let r = Scalar::from_bytes_mod_order_wide(&[7; 64]);
    let big_r = (r * B + torsion).compress();
    let id = signed.id();
    let k = Scalar::from_hash(
        Sha512::new()
            .chain_update(big_r.as_bytes())
            .chain_update(public.as_bytes())
            .chain_update(id.as_bytes()),
    );
    let s = r + k * a;
    let mut bytes = [0u8; 64];
    bytes[..32].copy_from_slice(big_r.as_bytes());
    bytes[32..].copy_from_slice(s.as_bytes());
    signed.signature = docket_core::Signature(bytes);
    signed
}

#[test]
fn a_signature_only_zip215_accepts_verifies_under_v2_alone() {
    let v2 = with_torsioned_nonce(deposit("alice", 1, ProposalFormat::V2), "alice");
    assert_eq!(v2.verify(&v2.id()), Ok(()));
    let v1 = with_torsioned_nonce(deposit("alice", 1, ProposalFormat::V1), "alice");
    assert_eq!(v1.verify(&v1.id()), Err(SignatureError::Invalid));

    // In a batch, with honest signatures around it, it gets the same answers.
    let batch = [
        deposit("bob", 2, ProposalFormat::V2),
        v2.clone(),
        v1.clone(),
        deposit("alice", 3, ProposalFormat::V2),
    ];
    let memo = VerifiedMemo::new();
    let items: Vec<(&SignedProposal, ProposalId)> = batch.iter().map(|s| (s, s.id())).collect();
    assert_eq!(
        memo.check_batch(&items),
        vec![Ok(()), Ok(()), Err(SignatureError::Invalid), Ok(())]
    );
}

#[test]
fn small_order_author_keys_are_refused_in_both_formats() {
    // ZIP-215 itself accepts a small-order key; docket refuses it before either rule runs.
    for format in [ProposalFormat::V1, ProposalFormat::V2] {
        let mut signed = deposit("alice", 1, format);
        signed.proposal.author = docket_core::PublicKey(
            CompressedEdwardsY([0; 32]).to_bytes(), // y = 0: a point of order 4
        );
        let id = signed.id();
        assert_eq!(signed.verify(&id), Err(SignatureError::WeakKey));
        assert_eq!(
            VerifiedMemo::new().check_batch(&[(&signed, id)]),
            vec![Err(SignatureError::WeakKey)]
        );
    }
}

#[test]
fn a_batch_verifies_each_signature_once_and_a_repeat_is_a_memo_hit() {
    let group: Vec<SignedProposal> = (0..40)
        .map(|n| {
            deposit(
                ["alice", "bob", "carol"][n as usize % 3],
                n,
                ProposalFormat::V2,
            )
        })
        .collect();
    let items: Vec<(&SignedProposal, ProposalId)> = group.iter().map(|s| (s, s.id())).collect();
    let memo = VerifiedMemo::new();
    assert!(memo.check_batch(&items).iter().all(Result::is_ok));
    assert_eq!((memo.checks(), memo.verifications()), (40, 40));
    for (signed, id) in &items {
        assert_eq!(memo.check(signed, id), Ok(()));
    }
    assert_eq!(
        (memo.checks(), memo.verifications()),
        (80, 40),
        "adjudication's checks after the batch were all memo hits"
    );
}

/// How a proposal of the generated group is spoiled, if it is.
#[derive(Clone, Copy, Debug)]
enum Spoil {
    None,
    /// One bit of the signature flipped (R or S).
    Bit(u16),
    /// A valid signature by another key (the author's key names someone else).
    OtherAuthor,
    /// S + l: the same equation, a non-canonical S (refused by both rules).
    NonCanonicalS,
    /// The ZIP-215-only signature above.
    Torsioned,
}

fn spoil() -> impl Strategy<Value = Spoil> {
    prop_oneof![
        6 => Just(Spoil::None),
        1 => (0u16..512).prop_map(Spoil::Bit),
        1 => Just(Spoil::OtherAuthor),
        1 => Just(Spoil::NonCanonicalS),
        1 => Just(Spoil::Torsioned),
    ]
}

fn spoiled(nonce: u64, v2: bool, how: Spoil) -> SignedProposal {
    let author = ["alice", "bob", "carol", "dave"][nonce as usize % 4];
    let format = if v2 {
        ProposalFormat::V2
    } else {
        ProposalFormat::V1
    };
    let mut signed = deposit(author, nonce, format);
    match how {
        Spoil::None => {}
        Spoil::Bit(bit) => signed.signature.0[bit as usize / 8] ^= 1 << (bit % 8),
        Spoil::OtherAuthor => signed.proposal.author = dev::key("mallory"),
        Spoil::NonCanonicalS => {
            // l, little-endian: adding it leaves S's value mod l, and its bytes non-canonical.
            const L: [u8; 32] = [
                0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
                0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
            ];
            let mut carry = 0u16;
            for (byte, add) in signed.signature.0[32..].iter_mut().zip(L) {
                let sum = *byte as u16 + add as u16 + carry;
                *byte = sum as u8;
                carry = sum >> 8;
            }
        }
        Spoil::Torsioned => signed = with_torsioned_nonce(signed, author),
    }
    signed
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Whatever a group holds (either format, spoiled in any of these ways, duplicates),
    /// the batch answers each proposal as a single check does, remembers only what
    /// verified, and the memo then answers every check as a single check does.
    #[test]
    fn a_batch_answers_each_proposal_as_a_single_check_does(
        group in prop::collection::vec((0u64..24, any::<bool>(), spoil()), 1..48),
    ) {
        let proposals: Vec<SignedProposal> =
            group.iter().map(|&(nonce, v2, how)| spoiled(nonce, v2, how)).collect();
        let items: Vec<(&SignedProposal, ProposalId)> =
            proposals.iter().map(|s| (s, s.id())).collect();
        let single: Vec<Result<(), SignatureError>> =
            items.iter().map(|(s, id)| Strict.check(s, id)).collect();
        let memo = VerifiedMemo::new();
        prop_assert_eq!(memo.check_batch(&items), single.clone());
        for ((signed, id), expected) in items.iter().zip(&single) {
            prop_assert_eq!(&memo.check(signed, id), expected);
        }
        let verified: std::collections::BTreeSet<_> = items
            .iter()
            .zip(&single)
            .filter(|(_, r)| r.is_ok())
            .map(|((s, id), _)| (id.to_hex(), s.signature.to_hex()))
            .collect();
        prop_assert_eq!(memo.len(), verified.len());
    }
}
