//! Test vectors pinning the canonical encoding: input -> bytes -> id.
//!
//! If one of these fails, the byte encoding of proposals (or of what they contain) changed,
//! and with it every ProposalId and signature ever issued. That is a breaking change to the
//! ledger format: it needs a new format version, not an edit to these constants.

use docket_core::{LedgerId, Proposal, ProposalFormat, ProposalId, PublicKey, Value};

fn fixed_proposal() -> Proposal {
    Proposal {
        format: ProposalFormat::V1,
        ledger_id: LedgerId::new("vec").expect("valid"),
        domain: "settlement".into(),
        action: "SETTLEMENT.DEPOSIT_CONFIRMED".into(),
        subject: "s1".into(),
        payload: Value::map([
            ("amount", Value::Int(258)),
            ("currency", Value::from("EUR")),
            ("flags", Value::List(vec![Value::Bool(true), Value::Null])),
        ]),
        dependencies: vec![ProposalId([0x11; 32])],
        author: PublicKey([0x22; 32]),
        nonce: 7,
    }
}

/// The canonical bytes, annotated field by field.
fn expected_bytes() -> Vec<u8> {
    let mut b = Vec::new();
    let u64le = |b: &mut Vec<u8>, n: u64| b.extend_from_slice(&n.to_le_bytes());
    let text = |b: &mut Vec<u8>, s: &str| {
        b.extend_from_slice(&(s.len() as u64).to_le_bytes());
        b.extend_from_slice(s.as_bytes());
    };
    b.extend_from_slice(&0u32.to_le_bytes()); // format: V1 (variant 0, u32)
    text(&mut b, "vec"); // ledger_id
    text(&mut b, "settlement"); // domain
    text(&mut b, "SETTLEMENT.DEPOSIT_CONFIRMED"); // action
    text(&mut b, "s1"); // subject
    b.extend_from_slice(&5u32.to_le_bytes()); // payload: Value::Map (variant 5)
    u64le(&mut b, 3); // 3 entries, in key order
    text(&mut b, "amount");
    b.extend_from_slice(&2u32.to_le_bytes()); // Value::Int
    b.extend_from_slice(&258i64.to_le_bytes());
    text(&mut b, "currency");
    b.extend_from_slice(&3u32.to_le_bytes()); // Value::Str
    text(&mut b, "EUR");
    text(&mut b, "flags");
    b.extend_from_slice(&4u32.to_le_bytes()); // Value::List
    u64le(&mut b, 2);
    b.extend_from_slice(&1u32.to_le_bytes()); // Value::Bool
    b.push(1);
    b.extend_from_slice(&0u32.to_le_bytes()); // Value::Null
    u64le(&mut b, 1); // dependencies: 1 id, raw 32 bytes
    b.extend_from_slice(&[0x11; 32]);
    b.extend_from_slice(&[0x22; 32]); // author: raw 32 bytes
    u64le(&mut b, 7); // nonce
    b
}

#[test]
fn canonical_bytes_are_pinned() {
    assert_eq!(
        hex::encode(fixed_proposal().canonical_bytes()),
        hex::encode(expected_bytes())
    );
}

#[test]
fn proposal_id_is_blake3_of_tag_and_bytes() {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"docket/proposal/v1\0");
    hasher.update(&expected_bytes());
    assert_eq!(fixed_proposal().id().0, *hasher.finalize().as_bytes());
    assert_eq!(fixed_proposal().id().to_hex(), PINNED_ID);
}

/// The id of `fixed_proposal()`, pinned as text so a change to the tag is caught too.
const PINNED_ID: &str = "c66d641632dc8c4982de3c49ae3666659681eb655c2ef1735403b761d46b673c";

#[test]
fn json_form_is_pinned() {
    let json = serde_json::to_string(&fixed_proposal()).expect("serializes");
    assert_eq!(
        json,
        concat!(
            r#"{"format":"v1","ledger_id":"vec","domain":"settlement","action":"SETTLEMENT.DEPOSIT_CONFIRMED","#,
            r#""subject":"s1","payload":{"amount":258,"currency":"EUR","flags":[true,null]},"#,
            r#""dependencies":["1111111111111111111111111111111111111111111111111111111111111111"],"#,
            r#""author":"2222222222222222222222222222222222222222222222222222222222222222","nonce":7}"#
        )
    );
    let back: Proposal = serde_json::from_str(&json).expect("parses");
    assert_eq!(back.id(), fixed_proposal().id());
}

#[test]
fn signatures_are_deterministic_ed25519() {
    // Ed25519 signing is deterministic (RFC 8032): the same key and id give the same bytes.
    let key = ed25519_dalek::SigningKey::from_bytes(&[0x33; 32]);
    let mut proposal = fixed_proposal();
    proposal.author = docket_core::proposal::public_key(&key);
    let signed = proposal.sign(&key);
    assert_eq!(signed.signature.to_hex(), PINNED_SIGNATURE);
    assert_eq!(signed.verify(&signed.id()), Ok(()));
}

/// Format `v2` (ZIP-215 signatures): the same fields, format variant 1 in the canonical
/// bytes and `"v2"` in JSON, so its id differs from the `v1` proposal's; signing is the
/// same deterministic ed25519, over that id.
#[test]
fn format_v2_is_pinned() {
    let mut proposal = fixed_proposal();
    proposal.format = ProposalFormat::V2;
    let mut expected = expected_bytes();
    expected[..4].copy_from_slice(&1u32.to_le_bytes());
    assert_eq!(
        hex::encode(proposal.canonical_bytes()),
        hex::encode(&expected)
    );
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"docket/proposal/v1\0");
    hasher.update(&expected);
    assert_eq!(proposal.id().0, *hasher.finalize().as_bytes());
    assert_eq!(proposal.id().to_hex(), PINNED_V2_ID);
    let json = serde_json::to_string(&proposal).expect("serializes");
    assert!(json.starts_with(r#"{"format":"v2","#), "{json}");
    let back: Proposal = serde_json::from_str(&json).expect("parses");
    assert_eq!(back.id(), proposal.id());

    let key = ed25519_dalek::SigningKey::from_bytes(&[0x33; 32]);
    proposal.author = docket_core::proposal::public_key(&key);
    let signed = proposal.sign(&key);
    assert_eq!(signed.signature.to_hex(), PINNED_V2_SIGNATURE);
    assert_eq!(signed.verify(&signed.id()), Ok(()));
}

const PINNED_V2_ID: &str = "4a72bd5cc69a229f9812802b9aeb7dc2e13bcc633b6f4f945b2a84a6030a97b7";
const PINNED_V2_SIGNATURE: &str = concat!(
    "1d5ed548d931d3c607b0ad775c9010c617b8796f25db4b240610593c3fe43c4f",
    "a719585f1bc0380aefe1be8bbce71640e2dd6c076826004e8faa0bf7bc2f9709"
);

const PINNED_SIGNATURE: &str = concat!(
    "f2a27db2fc8b2c5103ea3b640fb40af60d8078c5415eb75ade39475c294592cc",
    "bf6bb2c125025139ce9d7fcf47b656f23a620f44b3f2249c9ae4d1e88ac7d101"
);

/// The state commitment (format 2, ARCHITECTURE.md "State commitment"): the lattice digest
/// of fixed rows, and the state hash after a fixed history. A change here changes every
/// state hash a node reports and every snapshot it accepts.
#[test]
fn state_commitment_is_pinned() {
    use docket_core::rows::{self, Lattice};
    let mut lattice = Lattice::empty();
    assert_eq!(hex::encode(lattice.digest()), PINNED_EMPTY_LATTICE);
    lattice.insert(&rows::subject_key("settlement", "s1"), b"value");
    lattice.insert(&rows::proposal_key(&ProposalId([0x11; 32])), b"record");
    assert_eq!(hex::encode(lattice.digest()), PINNED_TWO_ROW_LATTICE);

    let ledger = LedgerId::new("vec").expect("valid");
    let (mut state, _) = docket_core::State::genesis(
        ledger.clone(),
        docket_core::constitution::DEFAULT_DOCUMENT,
        docket_core::LedgerTime(1_000),
    )
    .expect("genesis");
    assert_eq!(state.hash().to_string(), PINNED_GENESIS_STATE);
    let deposit = docket_core::dev::reformat(
        docket_core::dev::proposal(
            &ledger,
            "alice",
            "SETTLEMENT.DEPOSIT_CONFIRMED",
            "s1",
            Value::map([("amount", Value::Int(100)), ("currency", "EUR".into())]),
            vec![],
            1,
        ),
        ProposalFormat::V1,
        "alice",
    );
    state.submit(deposit, docket_core::LedgerTime(2_000));
    assert_eq!(state.hash().to_string(), PINNED_ONE_DEPOSIT_STATE);
}

/// The outcome reference of an effect (FORMAT.md "Outcome references"): what a proposal
/// lists among its dependencies to wait for the effect's outcome.
#[test]
fn outcome_reference_is_pinned() {
    let effect = ProposalId([0x11; 32]);
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"docket/outcome-ref/v1\0");
    hasher.update(&[0x11; 32]);
    assert_eq!(effect.outcome_of().0, *hasher.finalize().as_bytes());
    assert_eq!(effect.outcome_of().to_hex(), PINNED_OUTCOME_REF);
}

const PINNED_OUTCOME_REF: &str = "450445b4629280449fda4c03cca197dccdebcbae766ac3a4a44605f2cfd41866";

const PINNED_EMPTY_LATTICE: &str =
    "8d80dc52a968da1a849c468a8306b353318f46b2b98ce49e89325afd32081152";
const PINNED_TWO_ROW_LATTICE: &str =
    "dacaf180099a383ae1203fdf88d421ee50576bbdab1e8d4ee0c34160a0521c43";
const PINNED_GENESIS_STATE: &str =
    "e5d22b84021deb2d5582576f1b96f7b9d29974eb8bff4537bc16396dd7302443";
const PINNED_ONE_DEPOSIT_STATE: &str =
    "831e3067c9933b953e0399ecd3887581df01f1d482f8d1e80209919918123f11";
