//! The worked examples of FORMAT.md, computed and pinned.
//!
//! Each example is computed here from the core's public API, rebuilt byte by byte from the
//! layout FORMAT.md states (the annotated hex dumps are generated from the same field list
//! whose concatenation must equal the core's canonical bytes), compared with a pinned
//! constant, and looked up verbatim in FORMAT.md. So a changed byte in the encoding, a
//! changed constant, or an edit of the document that drops or alters an example fails
//! here. To regenerate after an intended format change (which needs a new format version),
//! run `cargo test -p docket-core --test format -- --nocapture`: a failing lookup prints
//! the block FORMAT.md should contain.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use docket_core::checkpoint::{cosigner_name, key_id, Checkpoint, SignedCheckpoint};
use docket_core::constitution::{FieldType, InvariantName, UpdateName};
use docket_core::merkle::{self, Hash, MemStore, MerkleTree};
use docket_core::rows::{self, Lattice};
use docket_core::state::ProposalRecord;
use docket_core::{
    Decision, LedgerEntry, LedgerId, LedgerTime, Proposal, ProposalFormat, ProposalId, PublicKey,
    Record, SignedProposal, State, Submission, Value,
};
use ed25519_dalek::SigningKey;
use serde::Serialize;

/// Read at compile time (core does no I/O, tests included); an edit recompiles the test.
const FORMAT_MD: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../FORMAT.md"));

/// Fails unless FORMAT.md holds `text` verbatim; prints the text to paste if not.
fn assert_documented(what: &str, text: &str) {
    let document = FORMAT_MD;
    assert!(
        !text.is_empty() && document.contains(text),
        "FORMAT.md lacks the {what} example; it should contain, verbatim:\n{text}\n"
    );
    // The lookup can fail: the same text with one character changed is not in the file.
    let middle = text
        .char_indices()
        .map(|(i, _)| i)
        .nth(text.chars().count() / 2)
        .expect("non-empty");
    let mut changed = text.to_owned();
    let replacement = if text[middle..].starts_with('0') {
        "1"
    } else {
        "0"
    };
    let width = text[middle..].chars().next().expect("a char").len_utf8();
    changed.replace_range(middle..middle + width, replacement);
    assert!(
        !document.contains(&changed),
        "FORMAT.md also holds the {what} example with a changed character"
    );
}

/// Canonical bytes rebuilt field by field, with a note per field, rendered as an annotated
/// hex dump: one line per field, `hex  note`.
#[derive(Default)]
struct Dump {
    bytes: Vec<u8>,
    lines: Vec<(String, String)>,
}

impl Dump {
    /// A field whose bytes are `parts` (shown space-separated).
    fn field(&mut self, parts: &[&[u8]], note: &str) -> &mut Self {
        for part in parts {
            self.bytes.extend_from_slice(part);
        }
        let hex: Vec<String> = parts.iter().map(hex::encode).collect();
        self.lines.push((hex.join(" "), note.to_owned()));
        self
    }

    fn u32(&mut self, n: u32, note: &str) -> &mut Self {
        self.field(&[&n.to_le_bytes()], note)
    }

    fn u64(&mut self, n: u64, note: &str) -> &mut Self {
        self.field(&[&n.to_le_bytes()], note)
    }

    /// A string: `u64` length, then its UTF-8 bytes.
    fn str(&mut self, s: &str, note: &str) -> &mut Self {
        self.field(&[&(s.len() as u64).to_le_bytes(), s.as_bytes()], note)
    }

    /// A long string shown as its length and a reference to the text.
    fn str_elided(&mut self, s: &str, note: &str) -> &mut Self {
        let len = (s.len() as u64).to_le_bytes();
        self.bytes.extend_from_slice(&len);
        self.bytes.extend_from_slice(s.as_bytes());
        self.lines.push((
            format!("{} <{} bytes>", hex::encode(len), s.len()),
            note.to_owned(),
        ));
        self
    }

    /// Bytes counted but shown as a reference (a nested structure dumped elsewhere).
    fn elided(&mut self, bytes: &[u8], note: &str) -> &mut Self {
        self.bytes.extend_from_slice(bytes);
        self.lines
            .push((format!("<{} bytes>", bytes.len()), note.to_owned()));
        self
    }

    fn render(&self) -> String {
        let width = self
            .lines
            .iter()
            .map(|(hex, _)| hex.len())
            .filter(|len| *len <= 80)
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for (hex, note) in &self.lines {
            out.push_str(&format!("{hex:<width$}  {note}\n"));
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// The example ledger: "demo", a one-domain constitution, one admitted deposit.

const SEED_ALICE: [u8; 32] = [0x01; 32];
const SEED_NODE: [u8; 32] = [0x02; 32];
/// 2026-01-01T00:00:00Z in milliseconds.
const GENESIS_TIME_MS: u64 = 1_767_225_600_000;
const DEPOSIT_TIME_MS: u64 = 1_767_225_601_500;

fn alice() -> SigningKey {
    SigningKey::from_bytes(&SEED_ALICE)
}

fn alice_key() -> PublicKey {
    docket_core::proposal::public_key(&alice())
}

fn document() -> String {
    format!(
        r#"name = "demo"

[limits]
payload_bytes_max = 1024
dependencies_max = 4
deferred_max = 16
deferral_expiry_ms = 60000
subject_bytes_max = 64

[roles]
treasurer = "confirms deposits"

[principals.alice]
key = "{}"
roles = ["treasurer"]

[domains.settlement]
states = ["open", "funded"]
initial = "open"

[domains.settlement.actions."SETTLEMENT.DEPOSIT_CONFIRMED"]
from = ["open", "funded"]
to = "funded"
roles = ["treasurer"]
requires = {{ amount = "int" }}

[domains.constitution]
states = ["open"]
initial = "open"

[domains.constitution.actions."CONSTITUTION.AMEND"]
from = ["open"]
to = "open"
roles = ["treasurer"]
requires = {{ document = "string", parent = "hash" }}
invariants = ["amendment_valid"]
updates = ["record_amendment", "adopt_constitution"]
"#,
        alice_key().to_hex()
    )
}

fn ledger_id() -> LedgerId {
    LedgerId::new("demo").expect("valid")
}

fn proposal() -> Proposal {
    Proposal {
        format: ProposalFormat::V1,
        ledger_id: ledger_id(),
        domain: "settlement".into(),
        action: "SETTLEMENT.DEPOSIT_CONFIRMED".into(),
        subject: "s1".into(),
        payload: Value::map([("amount", Value::Int(5)), ("currency", "EUR".into())]),
        dependencies: vec![],
        author: alice_key(),
        nonce: 1,
    }
}

struct Demo {
    signed: SignedProposal,
    genesis: LedgerEntry,
    deposit: LedgerEntry,
    state_at_genesis: State,
    state: State,
}

fn demo() -> Demo {
    let (mut state, genesis) =
        State::genesis(ledger_id(), &document(), LedgerTime(GENESIS_TIME_MS)).expect("genesis");
    let state_at_genesis = state.clone();
    let signed = proposal().sign(&alice());
    let Submission::Recorded(entries) = state.submit(signed.clone(), LedgerTime(DEPOSIT_TIME_MS))
    else {
        panic!("the deposit is recorded");
    };
    let [deposit] = entries.as_slice() else {
        panic!("one entry: {entries:?}");
    };
    assert_eq!(
        deposit.decision_record().map(|d| &d.decision),
        Some(&Decision::Admit)
    );
    Demo {
        signed,
        genesis,
        deposit: deposit.clone(),
        state_at_genesis,
        state,
    }
}

fn blake3_tagged(tag: &[u8], bytes: &[u8]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(tag);
    hasher.update(bytes);
    *hasher.finalize().as_bytes()
}

// ---------------------------------------------------------------------------------------
// (a) A proposal, its id and its signature.

fn proposal_dump(p: &Proposal) -> Dump {
    let mut d = Dump::default();
    d.u32(0, "format: ProposalFormat::V1 (variant 0, u32)")
        .str(
            p.ledger_id.as_str(),
            "ledger_id: \"demo\" (u64 length, UTF-8)",
        )
        .str(&p.domain, "domain: \"settlement\"")
        .str(&p.action, "action: \"SETTLEMENT.DEPOSIT_CONFIRMED\"")
        .str(&p.subject, "subject: \"s1\"")
        .u32(5, "payload: Value::Map (variant 5)")
        .u64(2, "  2 entries, in key order")
        .str("amount", "  key \"amount\"")
        .field(
            &[&2u32.to_le_bytes(), &5i64.to_le_bytes()],
            "  Value::Int (variant 2), i64 5",
        )
        .str("currency", "  key \"currency\"")
        .field(
            &[&3u32.to_le_bytes(), &3u64.to_le_bytes(), b"EUR"],
            "  Value::Str (variant 3), u64 length 3, \"EUR\"",
        )
        .u64(0, "dependencies: 0 ids (u64 count)")
        .field(&[p.author.as_bytes()], "author: 32 raw key bytes")
        .u64(1, "nonce: u64 1");
    d
}

const PINNED_ALICE_KEY: &str = "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c";
const PINNED_PROPOSAL_ID: &str = "34fc93a277214e43e7cc1cb051a66863fe975dc28c9c4933b652cb47f9888fd9";
const PINNED_PROPOSAL_SIGNATURE: &str = "d8a50be0aae2784828b00e48948265e8b92f6c8f91d50ac32785722f342f0055cb89d73d24153a8df3adfa536ff03c8cba6ea556abcb06ffe43971fe1dec090e";

#[test]
fn a_proposal_bytes_id_and_signature() {
    let demo = demo();
    let p = &demo.signed.proposal;
    assert_eq!(alice_key().to_hex(), PINNED_ALICE_KEY);
    let dump = proposal_dump(p);
    assert_eq!(hex::encode(p.canonical_bytes()), hex::encode(&dump.bytes));
    let id = p.id();
    assert_eq!(id.0, blake3_tagged(b"docket/proposal/v1\0", &dump.bytes));
    assert_eq!(id.to_hex(), PINNED_PROPOSAL_ID);
    assert_eq!(demo.signed.signature.to_hex(), PINNED_PROPOSAL_SIGNATURE);
    assert_eq!(demo.signed.verify(&id), Ok(()));
    // The signed proposal's canonical bytes: the proposal's, then the 64 signature bytes.
    let mut signed_bytes = dump.bytes.clone();
    signed_bytes.extend_from_slice(demo.signed.signature.as_bytes());
    assert_eq!(docket_core::encoding::to_bytes(&demo.signed), signed_bytes);

    let json = serde_json::to_string(p).expect("serializes");
    assert_eq!(
        json,
        concat!(
            r#"{"format":"v1","ledger_id":"demo","domain":"settlement","#,
            r#""action":"SETTLEMENT.DEPOSIT_CONFIRMED","subject":"s1","#,
            r#""payload":{"amount":5,"currency":"EUR"},"dependencies":[],"#,
            r#""author":"8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c","#,
            r#""nonce":1}"#
        )
    );
    assert_documented("proposal json", &format!("```json\n{json}\n```"));
    assert_documented("proposal bytes", &dump.render());
    assert_documented("author key", PINNED_ALICE_KEY);
    assert_documented("proposal id", PINNED_PROPOSAL_ID);
    assert_documented("proposal signature", PINNED_PROPOSAL_SIGNATURE);
}

// ---------------------------------------------------------------------------------------
// Values: one of each variant.

#[test]
fn values_one_of_each_variant() {
    let value = Value::List(vec![
        Value::Null,
        Value::Bool(true),
        Value::Int(-2),
        Value::from("x"),
        Value::map([("k", Value::Null)]),
    ]);
    let mut d = Dump::default();
    d.u32(4, "Value::List (variant 4)")
        .u64(5, "  5 items")
        .u32(0, "  Value::Null (variant 0), no contents")
        .field(
            &[&1u32.to_le_bytes(), &[1]],
            "  Value::Bool (variant 1), true = 01",
        )
        .field(
            &[&2u32.to_le_bytes(), &(-2i64).to_le_bytes()],
            "  Value::Int (variant 2), i64 -2, two's complement",
        )
        .field(
            &[&3u32.to_le_bytes(), &1u64.to_le_bytes(), b"x"],
            "  Value::Str (variant 3), \"x\"",
        )
        .field(
            &[&5u32.to_le_bytes(), &1u64.to_le_bytes()],
            "  Value::Map (variant 5), 1 entry",
        )
        .str("k", "    key \"k\"")
        .u32(0, "    Value::Null");
    assert_eq!(
        hex::encode(docket_core::encoding::to_bytes(&value)),
        hex::encode(&d.bytes)
    );
    assert_eq!(value.to_string(), r#"[null,true,-2,"x",{"k":null}]"#);
    assert_documented("value json", r#"[null,true,-2,"x",{"k":null}]"#);
    assert_documented("value bytes", &d.render());
}

// ---------------------------------------------------------------------------------------
// (b) The constitution version, the genesis entry and the first decision entry.

fn field_type(t: FieldType) -> u32 {
    variant(FieldType::NAMES.iter().map(|(_, t)| *t), t)
}

fn invariant(name: InvariantName) -> u32 {
    variant(InvariantName::ALL.iter().copied(), name)
}

fn update(name: UpdateName) -> u32 {
    variant(UpdateName::ALL.iter().copied(), name)
}

/// The `u32` variant index of `value`: its position among all variants, as declared.
fn variant<T: PartialEq + Serialize>(mut all: impl Iterator<Item = T>, value: T) -> u32 {
    let index = all.position(|v| v == value).expect("a variant") as u32;
    // The list is the declaration order: the index is what bincode writes.
    assert_eq!(
        docket_core::encoding::to_bytes(&value),
        index.to_le_bytes().to_vec()
    );
    index
}

/// The tables of FORMAT.md giving each named enum's variant indexes.
fn variant_tables() -> Vec<String> {
    let mut tables = Vec::new();
    let mut table = String::from("| index | `FieldType` | TOML name |\n|---|---|---|\n");
    for (name, t) in FieldType::NAMES {
        table.push_str(&format!("| {} | {t:?} | `{name}` |\n", field_type(*t)));
    }
    tables.push(table);
    let mut table = String::from("| index | `InvariantName` |\n|---|---|\n");
    for name in InvariantName::ALL {
        table.push_str(&format!("| {} | `{name}` |\n", invariant(*name)));
    }
    tables.push(table);
    let mut table = String::from("| index | `UpdateName` |\n|---|---|\n");
    for name in UpdateName::ALL {
        table.push_str(&format!("| {} | `{name}` |\n", update(*name)));
    }
    tables.push(table);
    let mut table = String::from("| number (`u16`) | name |\n|---|---|\n");
    for code in docket_core::RejectCode::ALL {
        assert_eq!(
            docket_core::encoding::to_bytes(code),
            code.number().to_le_bytes().to_vec()
        );
        table.push_str(&format!("| {} | `{}` |\n", code.number(), code.name()));
    }
    tables.push(table);
    tables
}

#[test]
fn variant_tables_are_documented() {
    for table in variant_tables() {
        assert_documented("variant table", &table);
    }
}

fn constitution_dump(key: &PublicKey) -> Dump {
    let mut d = Dump::default();
    d.str("demo", "name")
        .u64(1024, "limits.payload_bytes_max (u64)")
        .u32(4, "limits.dependencies_max (u32)")
        .u32(16, "limits.deferred_max (u32)")
        .u64(60000, "limits.deferral_expiry_ms (u64)")
        .u32(64, "limits.subject_bytes_max (u32)")
        .u64(1, "roles: 1 entry")
        .str("treasurer", "  role name")
        .str("confirms deposits", "  its description")
        .u64(1, "principals: 1 entry, keyed by public key")
        .field(&[key.as_bytes()], "  key: 32 raw bytes")
        .str("alice", "  name")
        .u64(1, "  roles: a set of 1")
        .str("treasurer", "    \"treasurer\"")
        .u64(2, "domains: 2 entries, in name order")
        .str("constitution", "  domain name")
        .u64(1, "  states: a set of 1")
        .str("open", "    \"open\"")
        .str("open", "  initial")
        .u64(1, "  actions: 1 entry")
        .str("CONSTITUTION.AMEND", "    action name")
        .u64(1, "    from: a set of 1")
        .str("open", "      \"open\"")
        .str("open", "    to")
        .u64(1, "    roles: a set of 1")
        .str("treasurer", "      \"treasurer\"")
        .u64(2, "    requires: 2 entries")
        .str("document", "      field \"document\"")
        .u32(field_type(FieldType::String), "      FieldType::String")
        .str("parent", "      field \"parent\"")
        .u32(field_type(FieldType::Hash), "      FieldType::Hash")
        .u64(1, "    invariants: 1, in declared order")
        .u32(
            invariant(InvariantName::AmendmentValid),
            "      InvariantName::AmendmentValid",
        )
        .u64(2, "    updates: 2, in declared order")
        .u32(
            update(UpdateName::RecordAmendment),
            "      UpdateName::RecordAmendment",
        )
        .u32(
            update(UpdateName::AdoptConstitution),
            "      UpdateName::AdoptConstitution",
        )
        .u32(1, "    quorum (u32); effect (false) is omitted")
        .str("settlement", "  domain name")
        .u64(2, "  states: a set of 2, sorted")
        .str("funded", "    \"funded\"")
        .str("open", "    \"open\"")
        .str("open", "  initial")
        .u64(1, "  actions: 1 entry")
        .str("SETTLEMENT.DEPOSIT_CONFIRMED", "    action name")
        .u64(2, "    from: a set of 2")
        .str("funded", "      \"funded\"")
        .str("open", "      \"open\"")
        .str("funded", "    to")
        .u64(1, "    roles: a set of 1")
        .str("treasurer", "      \"treasurer\"")
        .u64(1, "    requires: 1 entry")
        .str("amount", "      field \"amount\"")
        .u32(field_type(FieldType::Int), "      FieldType::Int")
        .u64(0, "    invariants: none")
        .u64(0, "    updates: none")
        .u32(
            1,
            "    quorum (u32); effect (false) and reads (anyone) are omitted",
        );
    d
}

fn genesis_dump(genesis: &LedgerEntry, document: &str) -> Dump {
    let mut d = Dump::default();
    d.u32(0, "format: EntryFormat::V1 (variant 0)")
        .u64(0, "index: 0")
        .u64(GENESIS_TIME_MS, "time: 1767225600000 ms")
        .field(
            &[genesis.constitution.as_bytes()],
            "constitution: the version above",
        )
        .field(&[&[0u8; 32]], "prev_hash: 32 zero bytes")
        .u32(0, "record: Record::Genesis (variant 0)")
        .str("demo", "  ledger_id")
        .str_elided(document, "  document: the TOML text above, UTF-8");
    d
}

fn deposit_dump(demo: &Demo) -> Dump {
    let entry = &demo.deposit;
    let record = entry.decision_record().expect("a decision");
    let mut d = Dump::default();
    d.u32(0, "format: EntryFormat::V1")
        .u64(1, "index: 1")
        .u64(DEPOSIT_TIME_MS, "time: 1767225601500 ms")
        .field(&[entry.constitution.as_bytes()], "constitution")
        .field(
            &[demo.genesis.hash.as_bytes()],
            "prev_hash: the genesis entry's hash",
        )
        .u32(1, "record: Record::Decision (variant 1)")
        .field(
            &[record.id.as_bytes()],
            "  id: the proposal id of example (a)",
        )
        .elided(
            &demo.signed.proposal.canonical_bytes(),
            "  proposal.proposal: the canonical bytes of example (a)",
        )
        .field(
            &[demo.signed.signature.as_bytes()],
            "  proposal.signature: 64 bytes",
        )
        .u32(0, "  cause: Cause::Submitted (variant 0)")
        .u32(0, "  decision: Decision::Admit (variant 0)")
        .field(&[record.access.key.as_bytes()], "  access.key")
        .field(
            &[&[1], &5u64.to_le_bytes(), b"alice"],
            "  access.principal: Some (01), \"alice\"",
        )
        .field(
            &[&[1], &9u64.to_le_bytes(), b"treasurer"],
            "  access.role: Some (01), \"treasurer\"",
        )
        .str(
            &record.access.rule,
            &format!("  access.rule: {:?}", record.access.rule),
        )
        .u32(0, "  access.verdict: AccessVerdict::Allow (variant 0)");
    d
}

const PINNED_CONSTITUTION_VERSION: &str =
    "b7a512caae62a63cace3e61069d43840f8010a128d8f6628d32297e0d564d04f";
const PINNED_GENESIS_HASH: &str =
    "51b63a9610922bee5de08f961242df607f233f78ff02a109492a360db0e6341a";
const PINNED_DEPOSIT_HASH: &str =
    "25bd08c8b4455a14bfc4837d5b82c98f7284ddf23291016acc52c2d4756a536c";

#[test]
fn b_constitution_genesis_and_decision_entries() {
    let demo = demo();
    let document = document();

    let constitution = docket_core::Constitution::parse(&document).expect("parses");
    let dump = constitution_dump(&alice_key());
    assert_eq!(
        hex::encode(docket_core::encoding::to_bytes(&constitution)),
        hex::encode(&dump.bytes)
    );
    assert_eq!(
        constitution.version().0,
        blake3_tagged(b"docket/constitution/v1\0", &dump.bytes)
    );
    assert_eq!(constitution.version().to_hex(), PINNED_CONSTITUTION_VERSION);
    assert_eq!(demo.genesis.constitution, constitution.version());
    assert_documented("constitution document", &document);
    assert_documented("constitution bytes", &dump.render());
    assert_documented("constitution version", PINNED_CONSTITUTION_VERSION);

    let dump = genesis_dump(&demo.genesis, &document);
    assert_eq!(
        demo.genesis.hash.0,
        blake3_tagged(b"docket/entry/v1\0", &dump.bytes)
    );
    // The stored form: the hashed body, then the hash.
    let mut stored = dump.bytes.clone();
    stored.extend_from_slice(demo.genesis.hash.as_bytes());
    assert_eq!(demo.genesis.to_bytes(), stored);
    assert_eq!(demo.genesis.hash.to_hex(), PINNED_GENESIS_HASH);
    assert_documented("genesis entry bytes", &dump.render());
    assert_documented("genesis entry hash", PINNED_GENESIS_HASH);

    let dump = deposit_dump(&demo);
    assert_eq!(
        demo.deposit.hash.0,
        blake3_tagged(b"docket/entry/v1\0", &dump.bytes)
    );
    let mut stored = dump.bytes.clone();
    stored.extend_from_slice(demo.deposit.hash.as_bytes());
    assert_eq!(demo.deposit.to_bytes(), stored);
    assert_eq!(demo.deposit.hash.to_hex(), PINNED_DEPOSIT_HASH);
    assert_documented("decision entry bytes", &dump.render());
    assert_documented("decision entry hash", PINNED_DEPOSIT_HASH);
    docket_core::verify_chain([&demo.genesis, &demo.deposit]).expect("the chain verifies");
}

// ---------------------------------------------------------------------------------------
// The state hash after genesis and after the deposit, rebuilt from its documented layout.

fn state_digest_dump(demo: &Demo, after_deposit: bool) -> Dump {
    let (head, head_note, counts, rows) = if after_deposit {
        let mut lattice = Lattice::empty();
        for (key, value) in state_rows(demo) {
            lattice.insert(&key, &value);
        }
        (
            &demo.deposit,
            "head.hash: entry 1's hash",
            [1u64, 1, 0],
            lattice.digest(),
        )
    } else {
        (
            &demo.genesis,
            "head.hash: the genesis entry's hash",
            [0u64, 0, 0],
            Lattice::empty().digest(),
        )
    };
    let mut d = Dump::default();
    d.str("demo", "ledger_id")
        .u64(head.index.0, "head.index")
        .field(&[head.hash.as_bytes()], head_note)
        .u64(head.time.0, "head.time")
        .str_elided(&document(), "constitution_document: the TOML text")
        .u64(0, "constitution_adopted_at: 0")
        .u64(1, "history: 1 adoption")
        .field(
            &[&0u64.to_le_bytes(), demo.genesis.constitution.as_bytes()],
            "  (index 0, constitution version)",
        )
        .field(
            &[
                &counts[0].to_le_bytes(),
                &counts[1].to_le_bytes(),
                &counts[2].to_le_bytes(),
            ],
            "counts: subjects, proposals, deferred (u64 each)",
        )
        .field(&[&rows], "rows: the lattice digest");
    d
}

/// The rows after the deposit: its proposal status and its subject.
fn state_rows(demo: &Demo) -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![
        (
            rows::proposal_key(&demo.signed.id()),
            proposal_row_dump().bytes,
        ),
        (
            rows::subject_key("settlement", "s1"),
            subject_row_dump().bytes,
        ),
    ]
}

fn proposal_row_dump() -> Dump {
    let mut d = Dump::default();
    d.u64(1, "index: 1")
        .u32(0, "status: ProposalStatus::Admitted (variant 0)")
        .field(&[&[0]], "deferred_at: None (00)");
    d
}

fn subject_row_dump() -> Dump {
    let mut d = Dump::default();
    d.str("funded", "state")
        .u64(0, "fields: empty map")
        .u64(0, "approvals: empty map")
        .u64(1, "last_index: 1");
    d
}

const PINNED_EMPTY_LATTICE: &str =
    "8d80dc52a968da1a849c468a8306b353318f46b2b98ce49e89325afd32081152";
const PINNED_ROWS_DIGEST: &str = "edac07f5ef84dcbe753df783c733b2a1f2993e98a37e84ce8fe013d2059d0229";
const PINNED_GENESIS_STATE: &str =
    "b10a7dc769777e7aa227af97160b1cf1edd420bf0830783638ae28bb41b04e0f";
const PINNED_DEPOSIT_STATE: &str =
    "c9f9ed8b486cfe086c1fd469d614112498a6184f9689adc7c236cbae01fa02e3";

#[test]
fn state_hash_from_its_layout() {
    let demo = demo();
    assert_eq!(hex::encode(Lattice::empty().digest()), PINNED_EMPTY_LATTICE);
    let genesis = state_digest_dump(&demo, false);
    assert_eq!(
        demo.state_at_genesis.hash().0,
        blake3_tagged(b"docket/state/v2\0", &genesis.bytes)
    );
    assert_eq!(demo.state_at_genesis.hash().to_hex(), PINNED_GENESIS_STATE);

    // The rows the state holds after the deposit, decoded back as the core's types.
    let record: ProposalRecord =
        docket_core::encoding::from_bytes(&proposal_row_dump().bytes).expect("decodes");
    assert_eq!(demo.state.proposal(&demo.signed.id()), Some(record));
    let subject: docket_core::SubjectState =
        docket_core::encoding::from_bytes(&subject_row_dump().bytes).expect("decodes");
    assert_eq!(demo.state.subject("settlement", "s1"), Some(subject));
    let mut lattice = Lattice::empty();
    for (key, value) in state_rows(&demo) {
        lattice.insert(&key, &value);
    }
    assert_eq!(hex::encode(lattice.digest()), PINNED_ROWS_DIGEST);

    // One row's lanes, by hand: BLAKE3 XOF over the tag, the key length, key and value.
    let (key, value) = &state_rows(&demo)[1];
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"docket/state-row/v1\0");
    hasher.update(&(key.len() as u64).to_le_bytes());
    hasher.update(key);
    hasher.update(value);
    let mut xof = [0u8; 2048];
    hasher.finalize_xof().fill(&mut xof);
    let mut one_row = Lattice::empty();
    one_row.insert(key, value);
    assert_eq!(one_row.to_bytes(), xof.to_vec());
    let lanes: Vec<String> = xof[..16]
        .chunks_exact(2)
        .map(|pair| format!("{:04x}", u16::from_le_bytes([pair[0], pair[1]])))
        .collect();
    let first_lanes = format!(
        "XOF bytes {} read as lanes {}",
        hex::encode(&xof[..16]),
        lanes.join(" ")
    );
    assert_documented("subject row lanes", &first_lanes);
    let deposit = state_digest_dump(&demo, true);
    assert_eq!(
        demo.state.hash().0,
        blake3_tagged(b"docket/state/v2\0", &deposit.bytes)
    );
    assert_eq!(demo.state.hash().to_hex(), PINNED_DEPOSIT_STATE);

    let subject_key = rows::subject_key("settlement", "s1");
    assert_eq!(
        hex::encode(&subject_key),
        "730000000a736574746c656d656e747331"
    );
    assert_documented("subject row key", "730000000a736574746c656d656e747331");
    assert_documented("genesis state digest", &genesis.render());
    assert_documented("deposit state digest", &deposit.render());
    assert_documented("proposal row", &proposal_row_dump().render());
    assert_documented("subject row", &subject_row_dump().render());
    for pinned in [
        PINNED_EMPTY_LATTICE,
        PINNED_ROWS_DIGEST,
        PINNED_GENESIS_STATE,
        PINNED_DEPOSIT_STATE,
    ] {
        assert_documented("state hash", pinned);
    }
}

// ---------------------------------------------------------------------------------------
// (c) An outcome reference.

const PINNED_OUTCOME_REF: &str = "00688bcc2b71428460ad643c2cf1753d3645eaf43e5e34db10d810565fc993e2";

#[test]
fn c_outcome_reference() {
    let id = proposal().id();
    let reference = id.outcome_of();
    assert_eq!(
        reference.0,
        blake3_tagged(b"docket/outcome-ref/v1\0", id.as_bytes())
    );
    assert_eq!(reference.to_hex(), PINNED_OUTCOME_REF);
    assert_documented("outcome reference", PINNED_OUTCOME_REF);
}

// ---------------------------------------------------------------------------------------
// (d) A five-leaf Merkle tree: root, inclusion proof, consistency proof.

fn five_leaves() -> Vec<Hash> {
    (0u8..5).map(|i| [i; 32]).collect()
}

fn merkle_table() -> String {
    let l = five_leaves();
    let h: Vec<Hash> = l.iter().map(|x| merkle::leaf_hash(x)).collect();
    let n01 = merkle::node_hash(&h[0], &h[1]);
    let n23 = merkle::node_hash(&h[2], &h[3]);
    let n0123 = merkle::node_hash(&n01, &n23);
    let root3 = merkle::node_hash(&n01, &h[2]);
    let root5 = merkle::node_hash(&n0123, &h[4]);
    let mut out = String::new();
    for (i, hash) in h.iter().enumerate() {
        out.push_str(&format!(
            "h{i}    = SHA-256(00 ‖ {i:02x}×32)   = {}\n",
            hex::encode(hash)
        ));
    }
    for (name, formula, hash) in [
        ("n01  ", "SHA-256(01 ‖ h0 ‖ h1)   ", n01),
        ("n23  ", "SHA-256(01 ‖ h2 ‖ h3)   ", n23),
        ("n0123", "SHA-256(01 ‖ n01 ‖ n23) ", n0123),
        ("root3", "SHA-256(01 ‖ n01 ‖ h2)  ", root3),
        ("root5", "SHA-256(01 ‖ n0123 ‖ h4)", root5),
    ] {
        out.push_str(&format!("{name} = {formula} = {}\n", hex::encode(hash)));
    }
    out
}

#[test]
fn d_merkle_root_and_proofs() {
    let leaves = five_leaves();
    let mut tree = MerkleTree::new(MemStore::default());
    for leaf in &leaves {
        tree.append(leaf).expect("append");
    }
    let table = merkle_table();
    let h: Vec<Hash> = leaves.iter().map(|x| merkle::leaf_hash(x)).collect();
    let n01 = merkle::node_hash(&h[0], &h[1]);
    let n23 = merkle::node_hash(&h[2], &h[3]);
    let root5 = merkle::node_hash(&merkle::node_hash(&n01, &n23), &h[4]);
    let root3 = merkle::node_hash(&n01, &h[2]);
    assert_eq!(tree.root().expect("root"), root5);
    assert_eq!(tree.root_at(3).expect("root"), root3);
    let inclusion = tree.inclusion_proof(2, 5).expect("proof");
    assert_eq!(inclusion, vec![h[3], n01, h[4]]);
    merkle::verify_inclusion(&leaves[2], 2, 5, &inclusion, &root5).expect("verifies");
    let consistency = tree.consistency_proof(3, 5).expect("proof");
    assert_eq!(consistency, vec![h[2], h[3], n01, h[4]]);
    merkle::verify_consistency(3, 5, &consistency, &root3, &root5).expect("verifies");
    assert_eq!(hex::encode(root5), PINNED_ROOT5);
    assert_documented("merkle table", &table);
    assert_documented("merkle root", PINNED_ROOT5);
}

const PINNED_ROOT5: &str = "85e20cac1f02fda7bcdb2fc3f908568c57018c77815f1fa361acad13994f08bf";

// ---------------------------------------------------------------------------------------
// (e) The checkpoint of the demo ledger and one cosignature.

fn demo_checkpoint(demo: &Demo) -> (Checkpoint, MerkleTree<MemStore>) {
    let mut tree = MerkleTree::new(MemStore::default());
    tree.append(&demo.genesis.hash.0).expect("append");
    tree.append(&demo.deposit.hash.0).expect("append");
    let checkpoint = Checkpoint {
        origin: "demo".to_owned(),
        size: 2,
        root: tree.root().expect("root"),
        state: demo.state.hash(),
        map: None,
    };
    (checkpoint, tree)
}

const COSIGN_TIME_S: u64 = DEPOSIT_TIME_MS / 1000;
const PINNED_NODE_KEY: &str = "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394";
const PINNED_KEY_ID: &str = "8548c497";
const PINNED_NOTE: &str = "demo
2
ASiO+kF4FR/9Tg/vI0GigP7bNvxaHS57E1bvHyULqrU=
state c9f9ed8b486cfe086c1fd469d614112498a6184f9689adc7c236cbae01fa02e3

\u{2014} demo/node-1 hUjElwAAAABpVbkBH9CSF9X9lMgtyeOK6AtNScHJovZ62/4jkNpPh6BsNBzvy/im3YVD6b0LF+szc2vytk5MMC0QPzKcbLMI+fGUAQ==
";

#[test]
fn e_checkpoint_note_and_cosignature() {
    let demo = demo();
    let (checkpoint, tree) = demo_checkpoint(&demo);
    let node = SigningKey::from_bytes(&SEED_NODE);
    let node_key = docket_core::proposal::public_key(&node);
    let name = cosigner_name("demo", 1);
    assert_eq!(name, "demo/node-1");
    let cosignature = checkpoint.cosign(&name, COSIGN_TIME_S, &node);
    let signed = SignedCheckpoint {
        checkpoint: checkpoint.clone(),
        cosignatures: vec![cosignature.clone()],
    };
    let note = signed.to_note();
    // The root, by hand: RFC 9162 over the two entry hashes.
    assert_eq!(
        checkpoint.root,
        merkle::node_hash(
            &merkle::leaf_hash(&demo.genesis.hash.0),
            &merkle::leaf_hash(&demo.deposit.hash.0)
        )
    );
    assert_eq!(
        tree.inclusion_proof(1, 2).expect("proof"),
        vec![merkle::leaf_hash(&demo.genesis.hash.0)]
    );
    // The key id, by hand.
    let mut id_input = b"demo/node-1\n\x04".to_vec();
    id_input.extend_from_slice(node_key.as_bytes());
    let digest = <sha2::Sha256 as sha2::Digest>::digest(&id_input);
    assert_eq!(cosignature.key_id, digest[..4]);
    assert_eq!(key_id(&name, &node_key), cosignature.key_id);
    // The signed message, by hand, and the signature over it.
    let message = format!(
        "cosignature/v1\ntime {COSIGN_TIME_S}\n{}",
        checkpoint.body()
    );
    let verifying = ed25519_dalek::VerifyingKey::from_bytes(node_key.as_bytes()).expect("key");
    verifying
        .verify_strict(
            message.as_bytes(),
            &ed25519_dalek::Signature::from_bytes(&cosignature.signature),
        )
        .expect("the cosignature is over the documented message");
    // The line's blob, by hand.
    let mut blob = cosignature.key_id.to_vec();
    blob.extend_from_slice(&COSIGN_TIME_S.to_be_bytes());
    blob.extend_from_slice(&cosignature.signature);
    assert_eq!(
        cosignature.line(),
        format!("\u{2014} demo/node-1 {}", B64.encode(&blob))
    );
    let cosigners = BTreeMap::from([(name.clone(), node_key)]);
    assert_eq!(
        SignedCheckpoint::parse_note(&note)
            .expect("parses")
            .verify(&cosigners, 1),
        Ok(1)
    );

    assert_eq!(node_key.to_hex(), PINNED_NODE_KEY);
    assert_eq!(hex::encode(cosignature.key_id), PINNED_KEY_ID);
    assert_eq!(note, PINNED_NOTE);
    assert_documented("checkpoint note", PINNED_NOTE);
    assert_documented("node key", PINNED_NODE_KEY);
    assert_documented("key id", PINNED_KEY_ID);
    assert_documented("signed message", &message);
    let blob_dump = format!(
        "{}  key id\n{}  timestamp, u64 big-endian ({COSIGN_TIME_S})\n{}  signature\n",
        hex::encode(&blob[..4]),
        hex::encode(&blob[4..12]),
        hex::encode(&blob[12..])
    );
    assert_documented("cosignature blob", &blob_dump);
}

// ---------------------------------------------------------------------------------------
// The proof bundle of the deposit entry (`docket ledger prove 1`), as the client writes it
// (`docket_client::verify::ProofBundle`, pretty JSON; that crate is not a dependency of
// core, so its shape is mirrored here).

#[derive(Serialize)]
struct Bundle<'a> {
    format: &'a str,
    entry: &'a LedgerEntry,
    proof: Vec<String>,
    checkpoint: String,
    cosigners: Vec<BundleCosigner>,
}

#[derive(Serialize)]
struct BundleCosigner {
    node: u64,
    name: String,
    key: Option<PublicKey>,
}

#[test]
fn proof_bundle() {
    let demo = demo();
    let (checkpoint, tree) = demo_checkpoint(&demo);
    let node = SigningKey::from_bytes(&SEED_NODE);
    let signed = SignedCheckpoint {
        cosignatures: vec![checkpoint.cosign("demo/node-1", COSIGN_TIME_S, &node)],
        checkpoint,
    };
    let bundle = Bundle {
        format: "docket-entry-proof/v1",
        entry: &demo.deposit,
        proof: tree
            .inclusion_proof(1, 2)
            .expect("proof")
            .iter()
            .map(hex::encode)
            .collect(),
        checkpoint: signed.to_note(),
        cosigners: vec![BundleCosigner {
            node: 1,
            name: "demo/node-1".to_owned(),
            key: Some(docket_core::proposal::public_key(&node)),
        }],
    };
    let json = serde_json::to_string_pretty(&bundle).expect("serializes");
    // The entry reads back from its JSON form to the same hash.
    let value: serde_json::Value = serde_json::from_str(&json).expect("parses");
    let entry: LedgerEntry = serde_json::from_value(value["entry"].clone()).expect("entry");
    assert_eq!(entry.compute_hash(), demo.deposit.hash);
    assert_eq!(entry, demo.deposit);
    let record = match &entry.record {
        Record::Decision(d) => d,
        Record::Genesis { .. } => panic!("a decision"),
    };
    assert_eq!(record.proposal.id(), ProposalId(record.id.0));
    // The steps of FORMAT.md §10.2 on the bundle as read back from its JSON: the note
    // parses, node 1 (the only voter, so a quorum of 1) cosigned it, the proof decodes, the
    // entry's hash and its inclusion under the root verify.
    let note = value["checkpoint"].as_str().expect("a string");
    let signed = SignedCheckpoint::parse_note(note).expect("parses");
    let voters = BTreeMap::from([(
        "demo/node-1".to_owned(),
        docket_core::proposal::public_key(&node),
    )]);
    assert_eq!(signed.verify(&voters, voters.len() / 2 + 1), Ok(1));
    let proof: Vec<Hash> = value["proof"]
        .as_array()
        .expect("an array")
        .iter()
        .map(|h| docket_core::id::decode_hex::<32>(h.as_str().expect("hex")).expect("32 bytes"))
        .collect();
    assert_eq!(signed.checkpoint.verify_entry(&entry, &proof), Ok(()));
    let mut tampered = entry.clone();
    tampered.time.0 += 1;
    assert!(signed.checkpoint.verify_entry(&tampered, &proof).is_err());
    assert_documented("proof bundle", &format!("{json}\n"));
}

/// The domain tags of FORMAT.md §1.2, as the code defines them.
#[test]
fn domain_tags_are_documented() {
    use docket_core::encoding::{
        TAG_CONSTITUTION, TAG_ENTRY, TAG_OUTCOME_REF, TAG_PROPOSAL, TAG_STATE,
    };
    for tag in [
        TAG_PROPOSAL,
        TAG_ENTRY,
        TAG_CONSTITUTION,
        TAG_STATE,
        TAG_OUTCOME_REF,
        rows::TAG_STATE_ROW,
        rows::TAG_LATTICE,
    ] {
        let (text, nul) = tag.split_at(tag.len() - 1);
        assert_eq!(nul, b"\0", "every tag ends in a NUL byte");
        let text = std::str::from_utf8(text).expect("an ASCII tag");
        assert_documented(
            "domain tag",
            &format!("| `{text}\\0` ({} bytes) |", tag.len()),
        );
    }
}

// ---------------------------------------------------------------------------------------
// (f) The state map of the demo ledger and a proof of its one subject.

#[test]
fn f_state_map_and_a_row_proof() {
    use docket_core::statemap::{self, MapWrites, MemMap, Slot};
    let demo = demo();
    // Every row of the state (the overlay of a state with no store is the whole state).
    let rows: BTreeMap<Vec<u8>, Vec<u8>> = demo
        .state
        .clone()
        .take_changes()
        .rows
        .into_iter()
        .filter(|(key, _)| matches!(key[0], b's' | b'p' | b'd' | b'o'))
        .map(|(key, value)| (key, value.expect("a row, not a removal")))
        .collect();
    let subject_key = rows::subject_key("settlement", "s1");
    assert!(rows.contains_key(&subject_key), "{:?}", rows.keys());
    // The hashes by hand, from the tags FORMAT.md names.
    let key_hash = |key: &[u8]| blake3_tagged(b"docket/map-key/v1\0", key);
    let value_hash = |value: &[u8]| blake3_tagged(b"docket/map-value/v1\0", value);
    let leaf = |k: &[u8; 32], v: &[u8; 32]| {
        blake3_tagged(b"docket/map-leaf/v1\0", &[&k[..], &v[..]].concat())
    };
    let mut table = String::from("```text\n");
    let mut leaves = Vec::new();
    for (key, value) in &rows {
        let (k, v) = (key_hash(key), value_hash(value));
        assert_eq!(k, statemap::key_hash(key));
        assert_eq!(v, statemap::value_hash(value));
        table.push_str(&format!(
            "row {}\n  key hash   {}\n  value hash {}\n  leaf hash  {}\n",
            hex::encode(key),
            hex::encode(k),
            hex::encode(v),
            hex::encode(leaf(&k, &v))
        ));
        leaves.push((k, v));
    }
    table.push_str("```");
    // Few rows: if their key hashes' first nibbles differ, the root is one node of 16 slots
    // holding the leaves, hashed in one call over the 16 slot hashes.
    let first: std::collections::BTreeSet<u8> = leaves.iter().map(|(k, _)| k[0] >> 4).collect();
    assert_eq!(
        first.len(),
        leaves.len(),
        "a deeper tree than this example explains"
    );
    let mut slots = [[0u8; 32]; 16];
    for (k, v) in &leaves {
        slots[usize::from(k[0] >> 4)] = leaf(k, v);
    }
    let root = blake3_tagged(b"docket/map-node/v1\0", &slots.concat());
    // The same through the core's map.
    let map = MemMap::default();
    let mut writes = MapWrites::new();
    let updates = rows
        .iter()
        .map(|(k, v)| (statemap::key_hash(k), Some(statemap::value_hash(v))))
        .collect();
    let root_slot = statemap::update(&map, &mut writes, Slot::Empty, &updates).expect("update");
    assert_eq!(root_slot.hash(), root);
    assert_eq!(hex::encode(root), PINNED_MAP_ROOT);
    let mut map = map;
    map.write(writes);
    let proof = statemap::prove(&map, root_slot, &statemap::key_hash(&subject_key)).expect("prove");
    assert_eq!(proof.levels.len(), 1);
    assert_eq!(
        proof.verify(&root, &subject_key, Some(&rows[&subject_key])),
        Ok(())
    );
    let proof_text = format!(
        "```text\nlevel 0, the other 15 slots in slot order:\n{}\nleaf: key hash {}\n      value hash {}\n```",
        proof.levels[0]
            .iter()
            .map(|h| format!("  {}", hex::encode(h)))
            .collect::<Vec<_>>()
            .join("\n"),
        hex::encode(proof.leaf.expect("present").0),
        hex::encode(proof.leaf.expect("present").1)
    );
    println!("{table}\n{proof_text}\nroot {}", hex::encode(root));
    assert_documented("state map rows", &table);
    assert_documented("state map proof", &proof_text);
    assert_documented("state map root", PINNED_MAP_ROOT);
    // The checkpoint's map line for an anchor of that root.
    let line = Checkpoint {
        map: Some(statemap::MapAnchor { size: 2, root }),
        ..demo_checkpoint(&demo).0
    }
    .body();
    assert!(
        line.ends_with(&format!("\nmap 2 {PINNED_MAP_ROOT}\n")),
        "{line}"
    );
    assert_documented("map line", &format!("map 2 {PINNED_MAP_ROOT}"));
}

const PINNED_MAP_ROOT: &str = "ae3fff214b96073e78d3aef71058b8f8d93a43937011bc96a6494c4c25b3a76f";
