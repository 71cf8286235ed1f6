//! The Merkle tree over entry hashes as the store keeps it: it equals core's in-memory tree
//! at every size, survives restarts, stays consistent with the ledger through crashes at
//! every write, and matches the ledger after snapshot installs. Store-level, on both disks.

use docket_core::merkle::{
    verify_consistency, verify_inclusion, Hash, MemStore, MerkleError, MerkleTree,
};
use docket_core::{EntryHash, LedgerEntry, StateHash};
use docket_raft::store::{AppliedRecord, CoreRecord, SnapshotRecord};
use docket_raft::{SnapshotMeta, Store, StoreOptions, TreeError};
use docket_sim::disk::{FlushMode, SimDisk};

/// A hash chain of `n` entries whose hashes differ with `salt`.
fn chain(n: u64, salt: &str) -> Vec<LedgerEntry> {
    docket_core::dev::entry_chain(n, salt)
}

fn mem_tree(entries: &[LedgerEntry]) -> MerkleTree<MemStore> {
    let mut tree = MerkleTree::new(MemStore::default());
    for entry in entries {
        tree.append(&entry.hash.0).expect("append");
    }
    tree
}

/// Applies `entries` (which continue the store's ledger) as one apply.
fn apply(store: &Store, entries: &[LedgerEntry]) {
    let mut applied = store.read_applied().expect("read").unwrap_or_default();
    applied.ledger_len += entries.len() as u64;
    store
        .commit_apply(entries, None, Default::default(), &applied)
        .expect("apply");
}

/// Opens a sled store in `dir`. A store of the same directory dropped just before may still
/// hold sled's file lock for a moment, so a lock conflict is retried, within a bound.
fn open_sled(dir: &std::path::Path) -> Store {
    let options = StoreOptions {
        engine: docket_raft::StorageEngine::Sled,
        flush_every_ms: None,
        ..StoreOptions::default()
    };
    for _ in 0..100 {
        match Store::open(dir, &options) {
            Ok(store) => return store,
            Err(e) if e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("open: {e}"),
        }
    }
    Store::open(dir, &options).expect("open")
}

/// Sizes where the tree's shape changes: 0, 1, powers of two and their neighbours.
fn interesting_sizes(max: u64) -> Vec<u64> {
    let mut sizes = vec![0, 1, 2, 3];
    let mut p = 4u64;
    while p <= max + 1 {
        sizes.extend([p - 1, p, p + 1]);
        p *= 2;
    }
    sizes.retain(|&s| s <= max);
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

/// Every root, and at `sizes` every inclusion and consistency proof, of the store's tree
/// equals the in-memory tree's, and verifies with core's verifiers.
fn assert_tree_matches(store: &Store, entries: &[LedgerEntry], sizes: &[u64]) {
    let view = store.ledger_tree().expect("tree");
    let mem = mem_tree(entries);
    let n = entries.len() as u64;
    assert_eq!(view.size(), n);
    let head = view.head().expect("head");
    assert_eq!(head.size, n);
    assert_eq!(head.root, mem.root().expect("root"));
    assert_eq!(store.ledger_tree_head(), head, "frontier in memory");
    let roots: Vec<Hash> = (0..=n).map(|m| mem.root_at(m).expect("root")).collect();
    for m in 0..=n {
        assert_eq!(
            view.root_at(m).expect("root_at"),
            roots[m as usize],
            "size {m}"
        );
    }
    for &size in sizes.iter().filter(|&&s| s <= n) {
        let root = roots[size as usize];
        for i in 0..size {
            let proof = view.inclusion_proof(i, size).expect("inclusion");
            assert_eq!(proof, mem.inclusion_proof(i, size).expect("mem inclusion"));
            verify_inclusion(&entries[i as usize].hash.0, i, size, &proof, &root)
                .expect("inclusion verifies");
        }
        for m in 1..size {
            let proof = view.consistency_proof(m, size).expect("consistency");
            assert_eq!(proof, mem.consistency_proof(m, size).expect("mem"));
            verify_consistency(m, size, &proof, &roots[m as usize], &root)
                .expect("consistency verifies");
        }
    }
}

/// Applies `entries` one by one, checking the root after each; then checks everything.
fn one_by_one(store: &Store, entries: &[LedgerEntry]) {
    let mut mem = MerkleTree::new(MemStore::default());
    assert_eq!(
        store
            .ledger_tree()
            .expect("tree")
            .head()
            .expect("head")
            .root,
        mem.root().expect("root"),
        "the empty tree"
    );
    for entry in entries {
        apply(store, std::slice::from_ref(entry));
        mem.append(&entry.hash.0).expect("append");
        let head = store.ledger_tree().expect("tree").head().expect("head");
        assert_eq!(head.size, mem.size());
        assert_eq!(head.root, mem.root().expect("root"), "size {}", mem.size());
    }
}

/// Applies `all[from..to]` (the store holds `all[..from]`) in batches of pseudo-random
/// sizes (1 to 40), checking the root after each.
fn in_batches(store: &Store, all: &[LedgerEntry], from: usize, to: usize, seed: u64) {
    let mut state = seed;
    let mut at = from;
    while at < to {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let len = 1 + (state >> 33) as usize % 40;
        let end = to.min(at + len);
        apply(store, &all[at..end]);
        at = end;
        let head = store.ledger_tree().expect("tree").head().expect("head");
        assert_eq!(head.root, mem_tree(&all[..at]).root().expect("root"));
        assert_eq!(store.ledger_tree_head(), head, "frontier in memory");
    }
}

#[test]
fn the_stored_tree_equals_the_in_memory_tree_at_every_size_on_both_disks() {
    const N: u64 = 260;
    let entries = chain(N, "sizes");
    let sizes = interesting_sizes(N);

    let disk = SimDisk::new("sizes");
    let store = Store::open_on(disk.handle()).expect("open");
    one_by_one(&store, &entries);
    assert_tree_matches(&store, &entries, &sizes);

    for seed in [1, 2, 3] {
        let disk = SimDisk::new("batches");
        let store = Store::open_on(disk.handle()).expect("open");
        in_batches(&store, &entries, 0, N as usize, seed);
        assert_tree_matches(&store, &entries, &[N]);
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_sled(dir.path());
    in_batches(&store, &entries, 0, N as usize, 4);
    assert_tree_matches(&store, &entries, &sizes);
}

#[test]
fn sizes_and_indexes_out_of_range_are_refused() {
    let entries = chain(9, "range");
    let disk = SimDisk::new("range");
    let store = Store::open_on(disk.handle()).expect("open");
    let empty = store.ledger_tree().expect("tree");
    assert!(matches!(
        empty.inclusion_proof(0, 0),
        Err(TreeError::Refused(MerkleError::IndexOutOfRange { .. }))
    ));
    assert!(matches!(
        empty.root_at(1),
        Err(TreeError::Refused(MerkleError::SizeBeyondTree { .. }))
    ));
    apply(&store, &entries);
    let view = store.ledger_tree().expect("tree");
    let refused = |r: Result<Vec<Hash>, TreeError>| matches!(r, Err(TreeError::Refused(_)));
    assert!(matches!(
        view.root_at(10),
        Err(TreeError::Refused(MerkleError::SizeBeyondTree { .. }))
    ));
    assert!(view.root_at(u64::MAX).is_err());
    assert!(refused(view.inclusion_proof(9, 9)));
    assert!(refused(view.inclusion_proof(3, 10)));
    assert!(refused(view.inclusion_proof(u64::MAX, u64::MAX)));
    assert!(refused(view.consistency_proof(0, 9)));
    assert!(refused(view.consistency_proof(5, 5)));
    assert!(refused(view.consistency_proof(6, 5)));
    assert!(refused(view.consistency_proof(5, 10)));
    assert!(refused(view.consistency_proof(u64::MAX - 1, u64::MAX)));
    assert!(view.consistency_proof(8, 9).is_ok());
}

#[test]
fn a_restart_keeps_the_tree() {
    let entries = chain(100, "restart");
    let dir = tempfile::tempdir().expect("tempdir");
    let head = {
        let store = open_sled(dir.path());
        in_batches(&store, &entries, 0, 70, 7);
        store.durable_flush().expect("flush");
        store.ledger_tree().expect("tree").head().expect("head")
    };
    let store = open_sled(dir.path());
    assert_eq!(
        store.ledger_tree().expect("tree").head().expect("head"),
        head
    );
    assert_tree_matches(&store, &entries[..70], &[1, 64, 70]);
    // And it goes on growing from where it was.
    in_batches(&store, &entries, 70, 100, 8);
    assert_tree_matches(&store, &entries, &[65, 100]);
}

/// The store's ledger and tree agree: the tree has one leaf per applied entry and its root
/// is the in-memory root of the stored entries. (Entries a crash left past the applied
/// length stay on disk, unread, until applies write over them: `Store`'s "What is
/// atomic".) Returns the stored ledger.
fn assert_tree_follows_ledger(store: &Store) -> Vec<LedgerEntry> {
    let len = store
        .read_applied()
        .expect("read")
        .unwrap_or_default()
        .ledger_len;
    let stored: Vec<LedgerEntry> = (0..len)
        .map(|i| store.ledger_get(i).expect("read").expect("an entry"))
        .collect();
    let view = store.ledger_tree().expect("tree");
    let head = view.head().expect("head");
    assert_eq!(head.size, len);
    assert_eq!(head.root, mem_tree(&stored).root().expect("root"));
    // The head the store computes from the frontier it keeps in memory (what apply
    // appends from) is the head read from the disk.
    assert_eq!(store.ledger_tree_head(), head, "frontier in memory");
    if let Some(last) = len.checked_sub(1) {
        let root = head.root;
        let proof = view.inclusion_proof(last, len).expect("proof");
        verify_inclusion(&stored[last as usize].hash.0, last, len, &proof, &root)
            .expect("the last entry is in the tree");
    }
    stored
}

/// [`assert_tree_follows_ledger`], and the stored ledger is a prefix of `all`; returns its
/// length.
fn assert_consistent(store: &Store, all: &[LedgerEntry]) -> u64 {
    let stored = assert_tree_follows_ledger(store);
    assert_eq!(stored[..], all[..stored.len()]);
    stored.len() as u64
}

#[test]
fn a_crash_at_any_write_leaves_the_tree_and_the_ledger_consistent() {
    let entries = chain(40, "crash");
    let applies: [std::ops::Range<usize>; 4] = [10..11, 11..16, 16..17, 17..32];
    let build = || {
        let disk = SimDisk::new("crash");
        let store = Store::open_on(disk.handle()).expect("open");
        apply(&store, &entries[..10]);
        store.durable_flush().expect("flush");
        for range in applies.clone() {
            apply(&store, &entries[range]);
        }
        disk
    };
    let pending = build().pending_batches();
    // Each apply: its entries, one tree record per entry, the applied record.
    assert_eq!(pending, 22 * 2 + 4);
    let mut lengths = std::collections::BTreeSet::new();
    for keep in 0..=pending {
        let disk = build();
        disk.crash_keeping(keep);
        let store = Store::open_on(disk.handle()).expect("reopen");
        let len = assert_consistent(&store, &entries);
        lengths.insert(len);
        // The node goes on from there: the rest of the ledger applies and the tree follows.
        apply(&store, &entries[len as usize..]);
        assert_consistent(&store, &entries);
        store.durable_flush().expect("flush");
        drop(store);
        let store = Store::open_on(disk.handle()).expect("reopen after the rest");
        assert_eq!(assert_consistent(&store, &entries), 40);
    }
    assert_eq!(
        lengths.into_iter().collect::<Vec<_>>(),
        vec![10, 11, 16, 17, 32],
        "every commit point was crossed"
    );
}

fn snapshot_record(ledger_len: u64, head: EntryHash) -> SnapshotRecord {
    SnapshotRecord {
        meta: SnapshotMeta {
            last_log_id: None,
            last_membership: Default::default(),
            snapshot_id: format!("test-{ledger_len}"),
        },
        ledger_len,
        core: Some(CoreRecord {
            state_hash: StateHash([0; 32]),
            head_hash: head,
            state_bytes: 0,
        }),
        generation: 0,
    }
}

/// Installs `ledger` as a snapshot (the store checks neither state nor chain; the state
/// machine does, before it calls this).
fn install(store: &Store, ledger: &[LedgerEntry]) {
    let bytes: Vec<Vec<u8>> = ledger.iter().map(LedgerEntry::to_bytes).collect();
    let len = ledger.len() as u64;
    let head = ledger.last().expect("non-empty").hash;
    let applied = AppliedRecord {
        ledger_len: len,
        ..AppliedRecord::default()
    };
    let mut staging = store.begin_install().expect("begin");
    for (index, entry) in (0u64..).zip(&bytes) {
        staging.entry(index, entry).expect("stage");
    }
    staging
        .commit(snapshot_record(len, head), None, &applied)
        .expect("install");
}

#[test]
fn a_snapshot_install_leaves_the_tree_matching_the_installed_ledger() {
    let long = chain(300, "install");
    let other = chain(150, "other");
    let disk = SimDisk::new("install");
    let store = Store::open_on(disk.handle()).expect("open");

    // Onto an empty store.
    install(&store, &long[..40]);
    assert_tree_matches(&store, &long[..40], &[1, 32, 33, 40]);
    // Extending the prefix it has (the nodes of the prefix are kept).
    apply(&store, &long[40..45]);
    install(&store, &long[..300]);
    assert_tree_matches(&store, &long, &[45, 256, 257, 300]);
    // A ledger that does not extend this one (the tree is rebuilt), shorter or longer.
    install(&store, &other[..100]);
    assert_tree_matches(&store, &other[..100], &[64, 100]);
    install(&store, &other);
    assert_tree_matches(&store, &other, &[100, 150]);
    // And it survives a crash that keeps only what was flushed, and a restart.
    disk.crash();
    drop(store);
    let store = Store::open_on(disk.handle()).expect("reopen");
    assert_tree_matches(&store, &other, &[150]);
}

#[test]
fn a_crash_during_a_snapshot_install_leaves_the_tree_and_the_ledger_consistent() {
    let entries = chain(200, "install-crash");
    let other = chain(120, "install-crash-other");
    // `other` does not extend the store's ledger: impossible between replicas of one
    // cluster (committed entries agree), but the tree must still follow whatever ledger
    // the store ends up with.
    for target in [&entries, &other] {
        // A disk whose flush makes nothing durable, so every write of the install stays
        // pending and a crash can cut it anywhere.
        let build = || {
            let disk = SimDisk::with_mode("install-crash", FlushMode::Lying);
            let store = Store::open_on(disk.handle()).expect("open");
            apply(&store, &entries[..30]);
            let base = disk.pending_batches();
            install(&store, target);
            (disk, base)
        };
        let (disk, base) = build();
        let total = disk.pending_batches();
        assert!(total >= base + 3, "ledger, tree, commit point");
        let mut lengths = std::collections::BTreeSet::new();
        for keep in base..=total {
            let (disk, _) = build();
            disk.crash_keeping(keep);
            let store = Store::open_on(disk.handle()).expect("reopen");
            let stored = assert_tree_follows_ledger(&store);
            lengths.insert(stored.len());
            if stored.len() == target.len() {
                assert_eq!(stored, target[..], "the installed ledger");
            } else {
                assert_eq!(stored.len(), 30, "the ledger from before");
            }
        }
        assert_eq!(
            lengths.into_iter().collect::<Vec<_>>(),
            vec![30, target.len()]
        );
    }
}
