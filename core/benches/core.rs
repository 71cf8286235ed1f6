//! Core throughput: adjudicate+apply, trusted replay and audit replay, each beside a
//! baseline measured in the same run (a bare strict signature verification, and a bare
//! BLAKE3 hash of an entry's size), so figures can be read as ratios on a noisy machine.
//!
//! `cargo bench -p docket-core --bench core`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use docket_core::constitution::DEFAULT_DOCUMENT;
use docket_core::{
    audit, dev, replay, LedgerEntry, LedgerId, LedgerTime, SignedProposal, State, Value,
};

const T0: u64 = 1_767_225_600_000;
const LEDGER_ENTRIES: usize = 100_000;
const SUBMIT_BATCH: usize = 1_000;

fn ledger_id() -> LedgerId {
    LedgerId::new("bench").expect("valid")
}

/// A realistic mix: deposits, payouts within balance, bids, and some rejections.
fn proposals(count: usize, salt: u64) -> Vec<SignedProposal> {
    let id = ledger_id();
    (0..count)
        .map(|i| {
            let subject = format!("stl-{salt}-{}", i / 4);
            let nonce = salt * 1_000_000_000 + i as u64;
            match i % 4 {
                0 | 1 => dev::proposal(
                    &id,
                    "alice",
                    "SETTLEMENT.DEPOSIT_CONFIRMED",
                    &subject,
                    Value::map([("amount", Value::Int(100)), ("currency", "EUR".into())]),
                    vec![],
                    nonce,
                ),
                2 => dev::proposal(
                    &id,
                    "bob",
                    "SETTLEMENT.PAYOUT_REQUESTED",
                    &subject,
                    Value::map([("amount", Value::Int(150)), ("beneficiary", "acme".into())]),
                    vec![],
                    nonce,
                ),
                _ => dev::proposal(
                    &id,
                    "mallory",
                    "SETTLEMENT.DEPOSIT_CONFIRMED",
                    &subject,
                    Value::map([("amount", Value::Int(1)), ("currency", "EUR".into())]),
                    vec![],
                    nonce,
                ),
            }
        })
        .collect()
}

fn genesis() -> (State, LedgerEntry) {
    State::genesis(ledger_id(), DEFAULT_DOCUMENT, LedgerTime(T0)).expect("genesis")
}

fn build_ledger(entries: usize) -> Vec<LedgerEntry> {
    let (mut state, genesis) = genesis();
    let mut ledger = vec![genesis];
    for (i, p) in proposals(entries - 1, 1).into_iter().enumerate() {
        ledger.extend_from_slice(state.submit(p, LedgerTime(T0 + i as u64)).entries());
    }
    ledger
}

fn bench_submit(c: &mut Criterion) {
    let mut group = c.benchmark_group("submit");
    group.throughput(Throughput::Elements(SUBMIT_BATCH as u64));
    // Baseline: the signature check every adjudication performs, one at a time (format v2,
    // ZIP-215), and the same signatures verified as batches, as a follower's apply does.
    let batch = proposals(SUBMIT_BATCH, 2);
    group.bench_function("baseline_verify_single", |b| {
        b.iter(|| {
            for p in &batch {
                p.verify(&p.id()).expect("valid");
            }
        })
    });
    group.bench_function("verify_batch", |b| {
        b.iter(|| {
            let items: Vec<_> = batch.iter().map(|p| (p, p.id())).collect();
            let answers = docket_core::VerifiedMemo::new().check_batch(&items);
            assert!(answers.iter().all(Result::is_ok));
        })
    });
    let (base, _) = genesis();
    group.bench_function("adjudicate_apply", |b| {
        b.iter_batched(
            || (base.clone(), batch.clone()),
            |(mut state, batch)| {
                for (i, p) in batch.into_iter().enumerate() {
                    state.submit(p, LedgerTime(T0 + i as u64));
                }
                state
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn bench_replay(c: &mut Criterion) {
    let ledger = build_ledger(LEDGER_ENTRIES);
    let mut group = c.benchmark_group("replay_100k");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ledger.len() as u64));
    // Baseline: BLAKE3 over each entry's canonical bytes, the floor of any verified replay.
    let encoded: Vec<Vec<u8>> = ledger.iter().map(LedgerEntry::to_bytes).collect();
    group.bench_function("baseline_blake3_entries", |b| {
        b.iter(|| {
            encoded
                .iter()
                .map(|bytes| blake3::hash(bytes).as_bytes()[0] as u64)
                .sum::<u64>()
        })
    });
    group.bench_function("trusted", |b| {
        b.iter(|| replay(&ledger).expect("replays").head())
    });
    group.bench_function("audit", |b| b.iter(|| audit(&ledger).expect("audits").1));
    group.finish();
}

/// Proofs per second: generating an RFC 9162 inclusion or consistency proof from a stored
/// tree of 2^20 leaves, verifying one, and verifying a checkpoint's three cosignatures.
fn bench_proofs(c: &mut Criterion) {
    use docket_core::checkpoint::{cosigner_name, Checkpoint, SignedCheckpoint};
    use docket_core::merkle::{verify_consistency, verify_inclusion, MemStore, MerkleTree};

    const LEAVES: u64 = 1 << 20;
    let mut tree = MerkleTree::new(MemStore::default());
    let leaf = |i: u64| -> [u8; 32] { *blake3::hash(&i.to_le_bytes()).as_bytes() };
    for i in 0..LEAVES {
        tree.append(&leaf(i)).expect("append");
    }
    let root = tree.root().expect("root");
    let mut group = c.benchmark_group("proofs_2^20");
    group.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    group.bench_function("inclusion_generate", |b| {
        b.iter(|| {
            i = (i + 7_919) % LEAVES;
            tree.inclusion_proof(i, LEAVES).expect("proof")
        })
    });
    let index = 123_457;
    let proof = tree.inclusion_proof(index, LEAVES).expect("proof");
    group.bench_function("inclusion_verify", |b| {
        b.iter(|| verify_inclusion(&leaf(index), index, LEAVES, &proof, &root).expect("verifies"))
    });
    let m = 654_321;
    let root_m = tree.root_at(m).expect("root");
    let consistency = tree.consistency_proof(m, LEAVES).expect("proof");
    group.bench_function("consistency_generate", |b| {
        b.iter(|| tree.consistency_proof(m, LEAVES).expect("proof"))
    });
    group.bench_function("consistency_verify", |b| {
        b.iter(|| verify_consistency(m, LEAVES, &consistency, &root_m, &root).expect("verifies"))
    });
    let checkpoint = Checkpoint {
        origin: "bench".to_owned(),
        size: LEAVES,
        root,
        state: docket_core::StateHash([3; 32]),
        map: None,
    };
    let keys: Vec<ed25519_dalek::SigningKey> = (1..=3u8)
        .map(|k| ed25519_dalek::SigningKey::from_bytes(&[k; 32]))
        .collect();
    let signed = SignedCheckpoint {
        cosignatures: keys
            .iter()
            .enumerate()
            .map(|(n, k)| checkpoint.cosign(&cosigner_name("bench", n as u64 + 1), 1, k))
            .collect(),
        checkpoint,
    };
    let cosigners = keys
        .iter()
        .enumerate()
        .map(|(n, k)| {
            (
                cosigner_name("bench", n as u64 + 1),
                docket_core::PublicKey(k.verifying_key().to_bytes()),
            )
        })
        .collect();
    group.bench_function("checkpoint_verify_3_cosignatures", |b| {
        b.iter(|| signed.verify(&cosigners, 2).expect("verifies"))
    });
    group.finish();
}

/// The state map over 2^20 rows (nodes in memory): folding an anchor's worth of changed
/// rows (3,072: about 1,024 entries' subject, status and one more row each), then proving
/// one row and verifying the proof.
fn bench_statemap(c: &mut Criterion) {
    use std::collections::BTreeMap;

    use docket_core::statemap::{self, MapWrites, MemMap, Slot};

    const ROWS: u32 = 1 << 20;
    const ANCHOR_ROWS: u32 = 3 * 1_024;
    let key = |i: u32| i.to_be_bytes();
    let value = |i: u32, v: u32| [i.to_le_bytes(), v.to_le_bytes()].concat();
    let mut map = MemMap::default();
    let mut root = Slot::Empty;
    for chunk in (0..ROWS).collect::<Vec<_>>().chunks(65_536) {
        let batch: BTreeMap<_, _> = chunk
            .iter()
            .map(|i| {
                (
                    statemap::key_hash(&key(*i)),
                    Some(statemap::value_hash(&value(*i, 0))),
                )
            })
            .collect();
        let mut writes = MapWrites::new();
        root = statemap::update(&map, &mut writes, root, &batch).expect("update");
        map.write(writes);
    }
    let mut group = c.benchmark_group("statemap_2^20");
    group.throughput(Throughput::Elements(u64::from(ANCHOR_ROWS)));
    let mut round = 0u32;
    group.bench_function("anchor_fold_3072_rows", |b| {
        b.iter(|| {
            round += 1;
            let batch: BTreeMap<_, _> = (0..ANCHOR_ROWS)
                .map(|n| {
                    let i = (n.wrapping_mul(2_654_435_761) ^ round) % ROWS;
                    (
                        statemap::key_hash(&key(i)),
                        Some(statemap::value_hash(&value(i, round))),
                    )
                })
                .collect();
            let mut writes = MapWrites::new();
            statemap::update(&map, &mut writes, root, &batch).expect("update")
        })
    });
    group.throughput(Throughput::Elements(1));
    let mut i = 0u32;
    group.bench_function("prove", |b| {
        b.iter(|| {
            i = (i + 7_919) % ROWS;
            statemap::prove(&map, root, &statemap::key_hash(&key(i))).expect("proof")
        })
    });
    let proof = statemap::prove(&map, root, &statemap::key_hash(&key(4_242))).expect("proof");
    let root_hash = root.hash();
    group.bench_function("verify", |b| {
        b.iter(|| {
            proof
                .verify(&root_hash, &key(4_242), Some(&value(4_242, 0)))
                .expect("verifies")
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_submit,
    bench_replay,
    bench_proofs,
    bench_statemap
);
criterion_main!(benches);
