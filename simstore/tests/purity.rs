//! The simulator's storage model depends on nothing: no workspace crate, no external crate,
//! only `std` (so it can draw no randomness, read no clock and spawn nothing it did not
//! write itself). That the production crates build without it is
//! `service/tests/boundaries.rs`.

use std::process::Command;

#[test]
fn the_model_depends_on_nothing() {
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--package",
            "docket-simstore",
            "--prefix",
            "none",
            "--format",
            "{p}",
            "--edges",
            "all",
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
    let names: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect();
    assert_eq!(names, vec!["docket-simstore"]);
}
