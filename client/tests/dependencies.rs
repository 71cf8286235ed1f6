//! An application embedding the client gets no server, storage or consensus code: the
//! client's normal dependency tree holds none of them (`cargo tree`, offline).

#[test]
fn the_client_pulls_in_no_server_storage_or_consensus_code() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = std::process::Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "-p",
            "docket-client",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8_lossy(&output.stdout);
    let names: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(
        names.contains(&"docket-api"),
        "the tree is the client's: {tree}"
    );
    for forbidden in [
        "axum",
        "sled",
        "fjall",
        "openraft",
        "turmoil",
        "docket-raft",
        "docket-service",
        "docket-execution",
        "docket-node",
    ] {
        assert!(
            !names.contains(&forbidden),
            "docket-client depends on {forbidden}:\n{tree}"
        );
    }
}
