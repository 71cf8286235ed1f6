//! Purity is enforced, not hoped for: core's normal dependency tree must not contain an
//! async runtime, a database, a network stack, a random-number generator or a source of OS
//! entropy.
//!
//! The tree comes from `cargo tree --edges normal`, which applies the real resolver
//! (features unified across the workspace, dev-dependencies excluded). `cargo metadata`'s
//! resolve graph is a superset: it reports weak optional dependencies such as
//! `signature`'s `rand_core?/std` as edges even when nothing activates them, so it would
//! flag a tree that never builds `rand_core`.

use std::process::Command;

/// Crate names (or prefixes, ending in '*') core must never depend on, directly or not.
const FORBIDDEN: &[&str] = &[
    "tokio*",
    "async-std",
    "smol",
    "futures*",
    "mio",
    "sled",
    "rocksdb",
    "redb",
    "rusqlite",
    "sqlx*",
    "rand",
    "rand_chacha",
    // rand_core itself is allowed: trait definitions only, through which ed25519-zebra's
    // batch verifier draws its coefficients; core hands it a deterministic BLAKE3
    // transcript (src/signature.rs). Its OsRng needs getrandom, which stays forbidden.
    "getrandom",
    "hyper",
    "reqwest",
    "axum",
    "tonic",
    "socket2",
    "openraft",
];

fn is_forbidden(name: &str) -> bool {
    FORBIDDEN
        .iter()
        .any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == *pattern,
        })
}

/// Package names in core's dependency tree along `edges` (`normal`, `all`, ...).
fn tree(edges: &str) -> Vec<String> {
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--package",
            "docket-core",
            "--prefix",
            "none",
            "--format",
            "{p}",
            "--edges",
            edges,
        ])
        .arg("--manifest-path")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml"))
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut names: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn core_dependency_tree_is_pure() {
    let names = tree("normal");
    assert!(
        names.iter().any(|n| n == "blake3"),
        "sanity: the tree lists core's real dependencies"
    );
    let impure: Vec<&String> = names.iter().filter(|n| is_forbidden(n)).collect();
    assert!(impure.is_empty(), "core's dependency tree is no longer pure: {impure:?}\n(see `cargo tree -p docket-core -e normal -i NAME`)");
}

#[test]
fn the_check_catches_an_impure_tree() {
    // Core's dev-dependencies (proptest, criterion) do pull in a random-number generator:
    // the same check over all edges must see it, or it could never fail.
    let names = tree("all");
    let impure: Vec<&String> = names.iter().filter(|n| is_forbidden(n)).collect();
    assert!(
        impure.iter().any(|n| n.as_str() == "rand"),
        "expected rand among dev deps, got {impure:?}"
    );
}

#[test]
fn clippy_config_forbids_impure_apis() {
    let config = include_str!("../clippy.toml");
    for api in [
        "std::collections::HashMap",
        "std::collections::HashSet",
        "std::time::Instant::now",
        "std::time::SystemTime::now",
        "std::env::var",
    ] {
        assert!(
            config.contains(&format!("\"{api}\"")),
            "core/clippy.toml must disallow {api}"
        );
    }
}
