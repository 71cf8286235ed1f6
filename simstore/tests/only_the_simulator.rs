//! The simulator's storage model stays out of the production crates: `docket-raft`,
//! `docket-execution` and the node build without it (their normal and build dependency
//! trees do not contain it), and it depends on no other crate. Only the simulator
//! (`docket-sim`) brings it in, with the adapters that implement the production crates'
//! storage seams (`docket_raft::Disk`, `docket_execution::JournalStorage`).

use std::process::Command;

/// Package names in `package`'s dependency tree along `edges` (`normal`, `all`, ...).
fn tree(package: &str, edges: &str) -> Vec<String> {
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--package",
            package,
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
fn production_crates_build_without_the_simulator_model() {
    for package in ["docket-raft", "docket-execution", "docket-node"] {
        let names = tree(package, "normal,build");
        assert!(
            names.iter().any(|n| n == "docket-core"),
            "sanity: the tree of {package} lists its real dependencies: {names:?}"
        );
        assert!(
            !names.iter().any(|n| n == "docket-simstore"),
            "{package} depends on the simulator's storage model \
             (see `cargo tree -p {package} -i docket-simstore`)"
        );
    }
}

#[test]
fn the_simulator_brings_it_in() {
    // The check above could never fail if the tree missed the model where it is used.
    let names = tree("docket-sim", "normal");
    assert!(names.iter().any(|n| n == "docket-simstore"), "{names:?}");
}

#[test]
fn the_model_depends_on_nothing() {
    assert_eq!(tree("docket-simstore", "all"), vec!["docket-simstore"]);
}
