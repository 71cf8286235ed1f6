//! The crate boundaries ARCHITECTURE.md states, enforced on the dependency trees the
//! resolver really builds (`cargo tree --edges normal`: features unified across the
//! workspace, dev-dependencies excluded). core's own purity (no runtime, database,
//! network or randomness) is `core/tests/purity.rs`.

use std::process::Command;

/// `(package, depth, crates it must never depend on, why)`: `depth` 1 means direct
/// dependencies only, `None` the whole tree. A name ending in `*` is a prefix.
const BOUNDARIES: &[(&str, Option<u32>, &[&str], &str)] = &[
    (
        "docket-execution",
        None,
        &[
            "docket-raft",
            "docket-service",
            "docket-node",
            "docket-sim",
            "docket-simstore",
            "openraft",
            "turmoil",
            "axum",
        ],
        "execution depends on docket-core only among docket's crates: it never writes the \
         ledger, only submits proposals through its host; the simulator's journal storage \
         lives in the simulator",
    ),
    (
        "docket-service",
        Some(1),
        &[
            "docket-node",
            "docket-sim",
            "axum",
            "hyper*",
            "reqwest",
            "tower*",
            "turmoil",
        ],
        "the service opens no connection itself: the node and the simulator drive it over \
         their own transports through the Peers seam (the execution agents it hosts call \
         their rails over HTTP; that is theirs)",
    ),
    (
        "docket-service",
        None,
        &[
            "docket-node",
            "docket-sim",
            "docket-simstore",
            "axum",
            "turmoil",
        ],
        "the service is below the node and the simulator, and serves no HTTP",
    ),
    (
        "docket-raft",
        None,
        &[
            "docket-execution",
            "docket-service",
            "docket-node",
            "docket-sim",
            "docket-simstore",
            "axum",
            "hyper*",
            "reqwest",
            "turmoil",
        ],
        "replication knows nothing above it, and the simulator's models live outside \
         production crates",
    ),
    (
        "docket-node",
        None,
        &["docket-sim", "docket-simstore", "turmoil"],
        "the binary never contains the simulator or its models",
    ),
];

fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

/// Package names in `package`'s normal dependency tree (itself excluded), to `depth`.
fn tree(package: &str, depth: Option<u32>) -> Vec<String> {
    let mut command = Command::new(env!("CARGO"));
    command.arg("tree");
    if let Some(depth) = depth {
        command.args(["--depth", &depth.to_string()]);
    }
    let output = command
        .args([
            "--package",
            package,
            "--prefix",
            "none",
            "--format",
            "{p}",
            "--edges",
            "normal",
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
        .filter(|name| name != package)
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn every_crate_boundary_holds() {
    let mut broken = Vec::new();
    for (package, depth, forbidden, why) in BOUNDARIES {
        let names = tree(package, *depth);
        assert!(
            names.iter().any(|n| n == "docket-core"),
            "{package}: the tree was not read (no docket-core in {names:?})"
        );
        let found: Vec<&String> = names
            .iter()
            .filter(|name| forbidden.iter().any(|p| matches(p, name)))
            .collect();
        if !found.is_empty() {
            broken.push(format!("{package} depends on {found:?}, but {why}"));
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn the_check_sees_what_it_forbids() {
    // The same reading of the tree finds what a boundary would catch: the node does use
    // the HTTP stack and the service, so a forbidden list naming them would fail.
    let names = tree("docket-node", None);
    for expected in ["axum", "reqwest", "docket-service", "docket-raft"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not in {names:?}"
        );
    }
    assert!(matches("hyper*", "hyper-util") && !matches("hyper*", "http"));
    // And depth 1 is direct dependencies only.
    let direct = tree("docket-service", Some(1));
    assert!(direct.iter().any(|n| n == "docket-raft"), "{direct:?}");
    assert!(!direct.iter().any(|n| n == "sled"), "{direct:?}");
}
