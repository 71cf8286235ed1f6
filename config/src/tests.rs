//! Loading through all four layers, and every rule's error naming its field and origin.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::*;

// ---- helpers ------------------------------------------------------------------------------

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load(
    file: Option<&Path>,
    env: &[(&str, &str)],
    flags: &Overrides,
) -> Result<NodeConfig, ConfigError> {
    NodeConfig::load(file, vars(env), flags)
}

fn flags() -> Overrides {
    Overrides::default()
}

/// A scratch directory holding `node.toml` with `text`.
fn file(text: &str) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("node.toml");
    std::fs::write(&path, text).expect("write config file");
    (dir, path)
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("test address")
}

fn env_origin(var: &str) -> Origin {
    Origin::Env {
        var: var.to_owned(),
    }
}

fn file_origin(path: &Path, line: usize) -> Origin {
    Origin::File {
        path: path.to_path_buf(),
        line,
    }
}

/// Asserts `result` is an `InvalidValue` for `field` from `origin` whose message contains
/// `needle`, and returns its display.
#[track_caller]
fn assert_invalid(
    result: Result<NodeConfig, ConfigError>,
    field: &str,
    origin: &Origin,
    needle: &str,
) -> String {
    match result {
        Err(error @ ConfigError::InvalidValue { .. }) => {
            let shown = error.to_string();
            assert_eq!(error.field(), Some(field), "{shown}");
            assert_eq!(error.origin(), Some(origin), "{shown}");
            assert!(
                shown.starts_with(&format!("{field} (from {origin}): ")),
                "{shown}"
            );
            assert!(
                shown.contains(needle),
                "{shown:?} should contain {needle:?}"
            );
            shown
        }
        other => panic!("expected InvalidValue for {field}, got {other:?}"),
    }
}

// ---- defaults and derived defaults --------------------------------------------------------

#[test]
fn defaults_are_valid_with_no_file() {
    let config = load(None, &[], &flags()).expect("defaults load");
    assert_eq!(config, NodeConfig::default());
    assert_eq!(config.node_id, 1);
    assert_eq!(config.cluster_id, "docket-local");
    assert_eq!(config.raft_addr, addr("127.0.0.1:7001"));
    assert_eq!(config.api_addr, addr("127.0.0.1:8001"));
    assert_eq!(config.data_dir, PathBuf::from("data/node-1"));
    assert_eq!(config.genesis_constitution, None);
    assert_eq!(
        config.raft,
        RaftConfig {
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 250,
            election_timeout_max_ms: 450,
            rpc_timeout_ms: 1000,
            snapshot_logs_since_last: 10_000,
            max_in_snapshot_log_to_keep: 1000,
            log_keep_mb: 256,
            apply_backlog_max: 32,
        }
    );
    assert_eq!(
        config.limits,
        LimitsConfig {
            request_body_bytes_max: 1_048_576,
            batch_proposals_max: 1000,
            forward_timeout_ms: 5000,
            read_page_entries_max: 1000,
            clients_inflight_max: 1024,
            catch_up_timeout_ms: 60_000,
        }
    );
    NodeConfig::default()
        .validate()
        .expect("the default config validates");
}

#[test]
fn node_3_gets_derived_ports_and_data_dir_from_any_layer() {
    let expect = |config: NodeConfig| {
        assert_eq!(config.node_id, 3);
        assert_eq!(config.raft_addr, addr("127.0.0.1:7003"));
        assert_eq!(config.api_addr, addr("127.0.0.1:8003"));
        assert_eq!(config.data_dir, PathBuf::from("data/node-3"));
    };
    expect(
        load(
            None,
            &[],
            &Overrides {
                node_id: Some(3),
                ..flags()
            },
        )
        .expect("flag"),
    );
    expect(load(None, &[("DOCKET_NODE_ID", "3")], &flags()).expect("env"));
    let (_dir, path) = file("node_id = 3\n");
    expect(load(Some(&path), &[], &flags()).expect("file"));

    let (_, origins) = NodeConfig::load_with_origins(
        None,
        vars(&[]),
        &Overrides {
            node_id: Some(3),
            ..flags()
        },
    )
    .expect("load");
    assert_eq!(origins["node_id"], Origin::Flag { flag: "--node-id" });
    assert_eq!(origins["raft_addr"], Origin::Derived { from: "node_id" });
    assert_eq!(origins["api_addr"], Origin::Derived { from: "node_id" });
    assert_eq!(origins["data_dir"], Origin::Derived { from: "node_id" });
    assert_eq!(origins["raft.heartbeat_interval_ms"], Origin::Default);
}

#[test]
fn derived_defaults_apply_only_to_fields_nobody_set() {
    // The file fixes the Raft address; the flag changes the node id afterwards.
    let (_dir, path) = file("raft_addr = \"127.0.0.1:9999\"\n");
    let config = load(
        Some(&path),
        &[],
        &Overrides {
            node_id: Some(3),
            ..flags()
        },
    )
    .expect("load");
    assert_eq!(
        config.raft_addr,
        addr("127.0.0.1:9999"),
        "set by the file, not derived"
    );
    assert_eq!(
        config.api_addr,
        addr("127.0.0.1:8003"),
        "derived from the flag's node id"
    );
    assert_eq!(config.data_dir, PathBuf::from("data/node-3"));
}

#[test]
fn derived_port_beyond_65535_names_the_field_and_asks_for_an_address() {
    let big = Overrides {
        node_id: Some(60_000),
        ..flags()
    };
    assert_invalid(
        load(None, &[], &big),
        "raft_addr",
        &Origin::Derived { from: "node_id" },
        "set raft_addr explicitly",
    );
    // With both addresses given, a large id is fine.
    let config = load(
        None,
        &[
            ("DOCKET_RAFT_ADDR", "127.0.0.1:7000"),
            ("DOCKET_API_ADDR", "127.0.0.1:8000"),
        ],
        &big,
    )
    .expect("explicit addresses");
    assert_eq!(config.data_dir, PathBuf::from("data/node-60000"));
}

// ---- precedence ---------------------------------------------------------------------------

const FULL_FILE: &str = r#"# a complete file
node_id = 2
cluster_id = "from-file"
raft_addr = "127.0.0.1:17002"
api_addr = "127.0.0.1:18002"
data_dir = "/var/lib/docket/file"

[raft]
heartbeat_interval_ms = 50
election_timeout_min_ms = 300
election_timeout_max_ms = 600
rpc_timeout_ms = 500
snapshot_logs_since_last = 500
max_in_snapshot_log_to_keep = 0
log_keep_mb = 0

[limits]
request_body_bytes_max = 4096
batch_proposals_max = 10
forward_timeout_ms = 2000
read_page_entries_max = 50
clients_inflight_max = 8
"#;

#[test]
fn file_overrides_defaults() {
    let (_dir, path) = file(FULL_FILE);
    let (config, origins) =
        NodeConfig::load_with_origins(Some(&path), vars(&[]), &flags()).expect("load");
    assert_eq!(config.node_id, 2);
    assert_eq!(config.cluster_id, "from-file");
    assert_eq!(config.raft_addr, addr("127.0.0.1:17002"));
    assert_eq!(config.api_addr, addr("127.0.0.1:18002"));
    assert_eq!(config.data_dir, PathBuf::from("/var/lib/docket/file"));
    assert_eq!(config.raft.heartbeat_interval_ms, 50);
    assert_eq!(config.raft.election_timeout_min_ms, 300);
    assert_eq!(config.raft.election_timeout_max_ms, 600);
    assert_eq!(config.raft.rpc_timeout_ms, 500);
    assert_eq!(config.raft.snapshot_logs_since_last, 500);
    assert_eq!(config.raft.max_in_snapshot_log_to_keep, 0);
    assert_eq!(config.raft.log_keep_mb, 0);
    assert_eq!(config.limits.request_body_bytes_max, 4096);
    assert_eq!(config.limits.batch_proposals_max, 10);
    assert_eq!(config.limits.forward_timeout_ms, 2000);
    assert_eq!(config.limits.read_page_entries_max, 50);
    assert_eq!(config.limits.clients_inflight_max, 8);
    assert_eq!(origins["node_id"], file_origin(&path, 2));
    assert_eq!(origins["raft.heartbeat_interval_ms"], file_origin(&path, 9));
    assert_eq!(
        origins["limits.clients_inflight_max"],
        file_origin(&path, 22)
    );
    assert_eq!(origins["genesis_constitution"], Origin::Default);
}

#[test]
fn a_partial_file_keeps_the_other_defaults() {
    let (_dir, path) = file("[raft]\nheartbeat_interval_ms = 50\n");
    let config = load(Some(&path), &[], &flags()).expect("load");
    let expected = NodeConfig {
        raft: RaftConfig {
            heartbeat_interval_ms: 50,
            ..RaftConfig::default()
        },
        ..NodeConfig::default()
    };
    assert_eq!(config, expected);
}

#[test]
fn env_overrides_file() {
    let (_dir, path) = file(FULL_FILE);
    let env = [
        ("DOCKET_NODE_ID", "4"),
        ("DOCKET_CLUSTER_ID", "from-env"),
        ("DOCKET_RAFT_ADDR", "127.0.0.1:27004"),
        ("DOCKET_API_ADDR", "127.0.0.1:28004"),
        ("DOCKET_DATA_DIR", "env-dir"),
        ("DOCKET_RAFT_HEARTBEAT_INTERVAL_MS", "20"),
        ("DOCKET_RAFT_ELECTION_TIMEOUT_MIN_MS", "100"),
        ("DOCKET_RAFT_ELECTION_TIMEOUT_MAX_MS", "200"),
        ("DOCKET_RAFT_RPC_TIMEOUT_MS", "30"),
        ("DOCKET_RAFT_SNAPSHOT_LOGS_SINCE_LAST", "7"),
        ("DOCKET_RAFT_MAX_IN_SNAPSHOT_LOG_TO_KEEP", "3"),
        ("DOCKET_RAFT_LOG_KEEP_MB", "5"),
        ("DOCKET_RAFT_APPLY_BACKLOG_MAX", "4"),
        ("DOCKET_LIMITS_REQUEST_BODY_BYTES_MAX", "2048"),
        ("DOCKET_LIMITS_BATCH_PROPOSALS_MAX", "5"),
        ("DOCKET_LIMITS_FORWARD_TIMEOUT_MS", "900"),
        ("DOCKET_LIMITS_READ_PAGE_ENTRIES_MAX", "9"),
        ("DOCKET_LIMITS_CLIENTS_INFLIGHT_MAX", "2"),
        ("DOCKET_LIMITS_CATCH_UP_TIMEOUT_MS", "1500"),
        ("DOCKET_STORAGE_CACHE_MB", "16"),
        ("DOCKET_STORAGE_ENGINE", "fjall"),
        ("DOCKET_LOG_FORMAT", "json"),
        ("PATH", "/usr/bin"),
    ];
    let (config, origins) =
        NodeConfig::load_with_origins(Some(&path), vars(&env), &flags()).expect("load");
    assert_eq!(config.node_id, 4);
    assert_eq!(config.cluster_id, "from-env");
    assert_eq!(config.raft_addr, addr("127.0.0.1:27004"));
    assert_eq!(config.api_addr, addr("127.0.0.1:28004"));
    assert_eq!(config.data_dir, PathBuf::from("env-dir"));
    assert_eq!(
        config.raft,
        RaftConfig {
            heartbeat_interval_ms: 20,
            election_timeout_min_ms: 100,
            election_timeout_max_ms: 200,
            rpc_timeout_ms: 30,
            snapshot_logs_since_last: 7,
            max_in_snapshot_log_to_keep: 3,
            log_keep_mb: 5,
            apply_backlog_max: 4,
        }
    );
    assert_eq!(
        config.limits,
        LimitsConfig {
            request_body_bytes_max: 2048,
            batch_proposals_max: 5,
            forward_timeout_ms: 900,
            read_page_entries_max: 9,
            clients_inflight_max: 2,
            catch_up_timeout_ms: 1500,
        }
    );
    assert_eq!(
        config.storage,
        StorageConfig {
            engine: StorageEngine::Fjall,
            cache_mb: 16
        }
    );
    assert_eq!(config.log.format, LogFormat::Json);
    // Every configuration variable was in `env`, so every field comes from the environment.
    for (field, origin) in &origins {
        if *field != "genesis_constitution" {
            assert!(
                matches!(origin, Origin::Env { .. }),
                "{field} from {origin}"
            );
        }
    }
}

#[test]
fn flags_override_env() {
    let dir = tempfile::tempdir().expect("tempdir");
    let genesis = dir.path().join("constitution.toml");
    std::fs::write(&genesis, "# a constitution\n").expect("write");
    let env = [
        ("DOCKET_NODE_ID", "4"),
        ("DOCKET_CLUSTER_ID", "from-env"),
        ("DOCKET_RAFT_ADDR", "127.0.0.1:27004"),
        ("DOCKET_API_ADDR", "127.0.0.1:28004"),
        ("DOCKET_DATA_DIR", "env-dir"),
        (
            "DOCKET_GENESIS_CONSTITUTION",
            "/does/not/matter/overridden.toml",
        ),
    ];
    let overrides = Overrides {
        node_id: Some(5),
        cluster_id: Some("from-flags".into()),
        raft_addr: Some("127.0.0.1:37005".into()),
        api_addr: Some("[::1]:38005".into()),
        data_dir: Some("flag-dir".into()),
        genesis_constitution: Some(genesis.clone()),
        log_format: None,
    };
    let (config, origins) =
        NodeConfig::load_with_origins(None, vars(&env), &overrides).expect("load");
    assert_eq!(config.node_id, 5);
    assert_eq!(config.cluster_id, "from-flags");
    assert_eq!(config.raft_addr, addr("127.0.0.1:37005"));
    assert_eq!(config.api_addr, addr("[::1]:38005"));
    assert_eq!(config.data_dir, PathBuf::from("flag-dir"));
    assert_eq!(config.genesis_constitution, Some(genesis));
    assert_eq!(
        origins["api_addr"],
        Origin::Flag {
            flag: FLAG_API_ADDR
        }
    );
    assert_eq!(
        origins["genesis_constitution"],
        Origin::Flag {
            flag: FLAG_GENESIS_CONSTITUTION
        }
    );
}

// ---- validation: every rule names its field and origin -------------------------------------

#[test]
fn node_id_must_be_positive_and_fit_toml() {
    assert_invalid(
        load(
            None,
            &[],
            &Overrides {
                node_id: Some(0),
                ..flags()
            },
        ),
        "node_id",
        &Origin::Flag { flag: "--node-id" },
        "must be at least 1, got 0",
    );
    let too_big = (NODE_ID_MAX + 1).to_string();
    assert_invalid(
        load(None, &[("DOCKET_NODE_ID", &too_big)], &flags()),
        "node_id",
        &env_origin("DOCKET_NODE_ID"),
        "must be at most 9223372036854775807",
    );
    let (_dir, path) = file("\nnode_id = 0\n");
    assert_invalid(
        load(Some(&path), &[], &flags()),
        "node_id",
        &file_origin(&path, 2),
        "at least 1",
    );
}

#[test]
fn cluster_id_format_is_enforced() {
    let env = |value: &str| load(None, &[("DOCKET_CLUSTER_ID", value)], &flags());
    let origin = env_origin("DOCKET_CLUSTER_ID");
    assert_invalid(env(""), "cluster_id", &origin, "set but empty");
    assert_invalid(
        env(&"a".repeat(65)),
        "cluster_id",
        &origin,
        "at most 64 characters, got 65",
    );
    assert_invalid(
        env("Docket"),
        "cluster_id",
        &origin,
        "found 'D' at position 1",
    );
    assert_invalid(
        env("docket_local"),
        "cluster_id",
        &origin,
        "found '_' at position 7",
    );
    assert_invalid(
        env("dockét"),
        "cluster_id",
        &origin,
        "found 'é' at position 5",
    );
    assert_invalid(
        env("-docket"),
        "cluster_id",
        &origin,
        "must not start with '-'",
    );
    for good in ["a", "0", "docket-local", "a-", &"z".repeat(64)] {
        env(good).unwrap_or_else(|error| panic!("{good:?} refused: {error}"));
    }
    let (_dir, path) = file("cluster_id = \"\"\n");
    assert_invalid(
        load(Some(&path), &[], &flags()),
        "cluster_id",
        &file_origin(&path, 1),
        "empty",
    );
    assert_invalid(
        load(
            None,
            &[],
            &Overrides {
                cluster_id: Some("UPPER".into()),
                ..flags()
            },
        ),
        "cluster_id",
        &Origin::Flag {
            flag: "--cluster-id",
        },
        "may contain only a-z, 0-9 and '-'",
    );
}

#[test]
fn addresses_must_parse_as_socket_addresses() {
    assert_invalid(
        load(None, &[("DOCKET_RAFT_ADDR", "localhost:7001")], &flags()),
        "raft_addr",
        &env_origin("DOCKET_RAFT_ADDR"),
        "host names are not resolved",
    );
    let (_dir, path) = file("cluster_id = \"x\"\napi_addr = \"127.0.0.1\"\n");
    assert_invalid(
        load(Some(&path), &[], &flags()),
        "api_addr",
        &file_origin(&path, 2),
        "expected an IP address and port",
    );
    assert_invalid(
        load(
            None,
            &[],
            &Overrides {
                raft_addr: Some("127.0.0.1:70000".into()),
                ..flags()
            },
        ),
        "raft_addr",
        &Origin::Flag {
            flag: "--raft-addr",
        },
        "\"127.0.0.1:70000\"",
    );
}

#[test]
fn raft_and_api_addresses_must_not_collide() {
    let collide = Overrides {
        raft_addr: Some("127.0.0.1:9000".into()),
        api_addr: Some("127.0.0.1:9000".into()),
        ..flags()
    };
    assert_invalid(
        load(None, &[], &collide),
        "api_addr",
        &Origin::Flag { flag: "--api-addr" },
        "collides with raft_addr (127.0.0.1:9000)",
    );
    // The wildcard address overlaps every address on the same port.
    assert_invalid(
        load(None, &[("DOCKET_API_ADDR", "0.0.0.0:7001")], &flags()),
        "api_addr",
        &env_origin("DOCKET_API_ADDR"),
        "collides with raft_addr (127.0.0.1:7001)",
    );
    // Same port on two distinct addresses is fine, and so is port 0 twice.
    let distinct_ips = Overrides {
        raft_addr: Some("127.0.0.1:9000".into()),
        api_addr: Some("127.0.0.2:9000".into()),
        ..flags()
    };
    load(None, &[], &distinct_ips).expect("distinct IPs");
    let ephemeral = Overrides {
        raft_addr: Some("127.0.0.1:0".into()),
        api_addr: Some("127.0.0.1:0".into()),
        ..flags()
    };
    load(None, &[], &ephemeral).expect("port 0 twice: the OS picks two ports");
}

#[test]
fn data_dir_must_not_be_empty() {
    assert_invalid(
        load(
            None,
            &[],
            &Overrides {
                data_dir: Some(PathBuf::new()),
                ..flags()
            },
        ),
        "data_dir",
        &Origin::Flag { flag: "--data-dir" },
        "must not be empty",
    );
    assert_invalid(
        load(None, &[("DOCKET_DATA_DIR", "")], &flags()),
        "data_dir",
        &env_origin("DOCKET_DATA_DIR"),
        "set but empty",
    );
}

#[cfg(unix)]
#[test]
fn paths_must_be_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(b"data/\xff"));
    assert_invalid(
        load(
            None,
            &[],
            &Overrides {
                data_dir: Some(path),
                ..flags()
            },
        ),
        "data_dir",
        &Origin::Flag { flag: "--data-dir" },
        "not valid UTF-8",
    );
}

#[test]
fn genesis_constitution_must_be_an_existing_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.toml");
    assert_invalid(
        load(
            None,
            &[],
            &Overrides {
                genesis_constitution: Some(missing),
                ..flags()
            },
        ),
        "genesis_constitution",
        &Origin::Flag {
            flag: "--genesis-constitution",
        },
        "cannot open",
    );
    let directory = dir.path().to_str().expect("utf-8 tempdir");
    assert_invalid(
        load(
            None,
            &[("DOCKET_GENESIS_CONSTITUTION", directory)],
            &flags(),
        ),
        "genesis_constitution",
        &env_origin("DOCKET_GENESIS_CONSTITUTION"),
        "is not a regular file",
    );
    let present = dir.path().join("constitution.toml");
    std::fs::write(&present, "").expect("write");
    let toml = format!(
        "genesis_constitution = {:?}\n",
        present.to_str().expect("utf-8")
    );
    let (_config_dir, path) = file(&toml);
    let config = load(Some(&path), &[], &flags()).expect("existing file");
    assert_eq!(config.genesis_constitution, Some(present));
}

#[test]
fn heartbeat_interval_has_a_floor_and_a_ceiling() {
    let env = |value: &str| {
        load(
            None,
            &[("DOCKET_RAFT_HEARTBEAT_INTERVAL_MS", value)],
            &flags(),
        )
    };
    let origin = env_origin("DOCKET_RAFT_HEARTBEAT_INTERVAL_MS");
    assert_invalid(
        env("9"),
        "raft.heartbeat_interval_ms",
        &origin,
        "must be at least 10, got 9",
    );
    assert_invalid(
        env("0"),
        "raft.heartbeat_interval_ms",
        &origin,
        "at least 10",
    );
    env("10").expect("the floor itself is allowed");
    // At the ceiling the election timeouts must grow too.
    let (_dir, path) = file(
        "[raft]\nheartbeat_interval_ms = 10001\nelection_timeout_min_ms = 30000\n\
         election_timeout_max_ms = 40000\nrpc_timeout_ms = 20000\n",
    );
    assert_invalid(
        load(Some(&path), &[], &flags()),
        "raft.heartbeat_interval_ms",
        &file_origin(&path, 2),
        "must be at most 10000",
    );
}

#[test]
fn election_timeout_min_must_exceed_two_heartbeats_and_says_why() {
    let shown = assert_invalid(
        load(
            None,
            &[("DOCKET_RAFT_ELECTION_TIMEOUT_MIN_MS", "200")],
            &flags(),
        ),
        "raft.election_timeout_min_ms",
        &env_origin("DOCKET_RAFT_ELECTION_TIMEOUT_MIN_MS"),
        "must be greater than 2 x raft.heartbeat_interval_ms (2 x 100 = 200), got 200",
    );
    assert!(
        shown.contains("followers must see several heartbeats"),
        "{shown}"
    );
    load(
        None,
        &[("DOCKET_RAFT_ELECTION_TIMEOUT_MIN_MS", "201")],
        &flags(),
    )
    .expect("201 > 200");
    // The rule follows the heartbeat wherever that came from.
    let (_dir, path) = file("[raft]\nheartbeat_interval_ms = 150\n");
    assert_invalid(
        load(Some(&path), &[], &flags()),
        "raft.election_timeout_min_ms",
        &Origin::Default,
        "(2 x 150 = 300), got 250",
    );
}

#[test]
fn election_timeout_max_must_exceed_min() {
    assert_invalid(
        load(
            None,
            &[("DOCKET_RAFT_ELECTION_TIMEOUT_MAX_MS", "250")],
            &flags(),
        ),
        "raft.election_timeout_max_ms",
        &env_origin("DOCKET_RAFT_ELECTION_TIMEOUT_MAX_MS"),
        "must be greater than raft.election_timeout_min_ms (250), got 250",
    );
    assert_invalid(
        load(
            None,
            &[("DOCKET_RAFT_ELECTION_TIMEOUT_MAX_MS", "60001")],
            &flags(),
        ),
        "raft.election_timeout_max_ms",
        &env_origin("DOCKET_RAFT_ELECTION_TIMEOUT_MAX_MS"),
        "must be at most 60000",
    );
    let (_dir, path) = file("[raft]\nelection_timeout_min_ms = 500\n");
    assert_invalid(
        load(Some(&path), &[], &flags()),
        "raft.election_timeout_max_ms",
        &Origin::Default,
        "(500), got 450",
    );
}

#[test]
fn rpc_timeout_must_cover_a_heartbeat() {
    assert_invalid(
        load(None, &[("DOCKET_RAFT_RPC_TIMEOUT_MS", "99")], &flags()),
        "raft.rpc_timeout_ms",
        &env_origin("DOCKET_RAFT_RPC_TIMEOUT_MS"),
        "must be at least raft.heartbeat_interval_ms (100), got 99",
    );
    load(None, &[("DOCKET_RAFT_RPC_TIMEOUT_MS", "100")], &flags()).expect("equal is enough");
    assert_invalid(
        load(None, &[("DOCKET_RAFT_RPC_TIMEOUT_MS", "60001")], &flags()),
        "raft.rpc_timeout_ms",
        &env_origin("DOCKET_RAFT_RPC_TIMEOUT_MS"),
        "must be at most 60000",
    );
}

#[test]
fn snapshot_settings_are_bounded() {
    assert_invalid(
        load(
            None,
            &[("DOCKET_RAFT_SNAPSHOT_LOGS_SINCE_LAST", "0")],
            &flags(),
        ),
        "raft.snapshot_logs_since_last",
        &env_origin("DOCKET_RAFT_SNAPSHOT_LOGS_SINCE_LAST"),
        "at least 1",
    );
    assert_invalid(
        load(
            None,
            &[("DOCKET_RAFT_SNAPSHOT_LOGS_SINCE_LAST", "10000001")],
            &flags(),
        ),
        "raft.snapshot_logs_since_last",
        &env_origin("DOCKET_RAFT_SNAPSHOT_LOGS_SINCE_LAST"),
        "at most 10000000",
    );
    load(
        None,
        &[("DOCKET_RAFT_MAX_IN_SNAPSHOT_LOG_TO_KEEP", "0")],
        &flags(),
    )
    .expect("keeping no snapshotted entries is allowed");
    assert_invalid(
        load(
            None,
            &[("DOCKET_RAFT_MAX_IN_SNAPSHOT_LOG_TO_KEEP", "1000001")],
            &flags(),
        ),
        "raft.max_in_snapshot_log_to_keep",
        &env_origin("DOCKET_RAFT_MAX_IN_SNAPSHOT_LOG_TO_KEEP"),
        "at most 1000000",
    );
    load(None, &[("DOCKET_RAFT_LOG_KEEP_MB", "0")], &flags())
        .expect("keeping no log by bytes is allowed");
    assert_invalid(
        load(None, &[("DOCKET_RAFT_LOG_KEEP_MB", "1048577")], &flags()),
        "raft.log_keep_mb",
        &env_origin("DOCKET_RAFT_LOG_KEEP_MB"),
        "at most 1048576",
    );
}

#[test]
fn every_limit_is_at_least_one_and_at_most_its_ceiling() {
    let cases: [(&str, &str, u64); 6] = [
        (
            "limits.request_body_bytes_max",
            "request_body_bytes_max",
            64 * 1024 * 1024,
        ),
        ("limits.batch_proposals_max", "batch_proposals_max", 10_000),
        (
            "limits.forward_timeout_ms",
            "forward_timeout_ms",
            FORWARD_TIMEOUT_MS_CEILING,
        ),
        (
            "limits.read_page_entries_max",
            "read_page_entries_max",
            10_000,
        ),
        (
            "limits.catch_up_timeout_ms",
            "catch_up_timeout_ms",
            CATCH_UP_TIMEOUT_MS_CEILING,
        ),
        (
            "limits.clients_inflight_max",
            "clients_inflight_max",
            65_536,
        ),
    ];
    for (field, key, ceiling) in cases {
        let var = format!("DOCKET_LIMITS_{}", key.to_uppercase());
        let env = |value: u64| load(None, &[(var.as_str(), &value.to_string())], &flags());
        assert_invalid(
            env(0),
            field,
            &env_origin(&var),
            "must be at least 1, got 0",
        );
        assert_invalid(
            env(ceiling + 1),
            field,
            &env_origin(&var),
            &format!("must be at most {ceiling}, got {}", ceiling + 1),
        );
        env(1).unwrap_or_else(|error| panic!("{field} = 1 refused: {error}"));
        env(ceiling).unwrap_or_else(|error| panic!("{field} = ceiling refused: {error}"));

        let (_dir, path) = file(&format!("# limits\n[limits]\n{key} = 0\n"));
        assert_invalid(
            load(Some(&path), &[], &flags()),
            field,
            &file_origin(&path, 3),
            "at least 1",
        );
    }
}

#[test]
fn the_display_reads_field_origin_message() {
    let error = load(
        None,
        &[("DOCKET_RAFT_ELECTION_TIMEOUT_MIN_MS", "75")],
        &flags(),
    )
    .expect_err("75 <= 2 x 100");
    assert_eq!(
        error.to_string(),
        "raft.election_timeout_min_ms (from DOCKET_RAFT_ELECTION_TIMEOUT_MIN_MS): must be \
         greater than 2 x raft.heartbeat_interval_ms (2 x 100 = 200), got 75: followers must \
         see several heartbeats go missing before timing out, or one late heartbeat deposes a \
         healthy leader"
    );
    let (_dir, path) = file("\n\n[limits]\nbatch_proposals_max = 20000\n");
    let error = load(Some(&path), &[], &flags()).expect_err("over the ceiling");
    assert_eq!(
        error.to_string(),
        format!(
            "limits.batch_proposals_max (from {}:4): must be at most 10000, got 20000: a batch \
             is adjudicated in one apply step",
            path.display()
        )
    );
}

#[test]
fn validate_checks_a_config_built_in_code() {
    let mut config = NodeConfig::default();
    config.limits.clients_inflight_max = 0;
    let error = config.validate().expect_err("0 in-flight clients");
    assert_eq!(error.field(), Some("limits.clients_inflight_max"));
    assert_eq!(error.origin(), Some(&Origin::Programmatic));
}

// ---- the file: syntax, types, unknown keys, unreadable -------------------------------------

#[track_caller]
fn assert_file_syntax(
    result: Result<NodeConfig, ConfigError>,
    path: &Path,
    line: usize,
    needle: &str,
) -> String {
    match result {
        Err(error @ ConfigError::FileSyntax { .. }) => {
            let shown = error.to_string();
            let ConfigError::FileSyntax {
                path: p,
                line: l,
                message,
                ..
            } = &error
            else {
                unreachable!()
            };
            assert_eq!(p, path, "{shown}");
            assert_eq!(*l, Some(line), "{shown}");
            assert!(
                message.contains(needle),
                "{message:?} should contain {needle:?}"
            );
            assert!(
                shown.starts_with(&format!("{}:{line}:", path.display())),
                "{shown}"
            );
            shown
        }
        other => panic!("expected FileSyntax at line {line}, got {other:?}"),
    }
}

#[test]
fn unknown_field_in_file_names_the_field_and_line() {
    let (_dir, path) = file("node_id = 1\nnode_name = \"one\"\n");
    assert_file_syntax(
        load(Some(&path), &[], &flags()),
        &path,
        2,
        "unknown field `node_name`",
    );

    let (_dir, path) =
        file("node_id = 1\n\n[raft]\nheartbeat_interval_ms = 100\nhearbeat_ms = 5\n");
    let shown = assert_file_syntax(
        load(Some(&path), &[], &flags()),
        &path,
        5,
        "unknown field `hearbeat_ms`",
    );
    assert!(shown.contains("(in `hearbeat_ms = 5`)"), "{shown}");

    let (_dir, path) = file("[limit]\nbatch_proposals_max = 1\n");
    assert_file_syntax(
        load(Some(&path), &[], &flags()),
        &path,
        1,
        "unknown field `limit`",
    );
}

#[test]
fn a_float_where_an_integer_is_expected_is_refused() {
    let (_dir, path) = file("[raft]\nheartbeat_interval_ms = 100.5\n");
    let shown = assert_file_syntax(load(Some(&path), &[], &flags()), &path, 2, "float");
    assert!(
        shown.contains("heartbeat_interval_ms = 100.5"),
        "the line names the key: {shown}"
    );

    let (_dir, path) = file("node_id = 1.0\n");
    assert_file_syntax(load(Some(&path), &[], &flags()), &path, 1, "float");

    assert_invalid(
        load(
            None,
            &[("DOCKET_RAFT_HEARTBEAT_INTERVAL_MS", "100.5")],
            &flags(),
        ),
        "raft.heartbeat_interval_ms",
        &env_origin("DOCKET_RAFT_HEARTBEAT_INTERVAL_MS"),
        "expected a whole non-negative number, got \"100.5\"",
    );
    assert_invalid(
        load(None, &[("DOCKET_NODE_ID", "1e3")], &flags()),
        "node_id",
        &env_origin("DOCKET_NODE_ID"),
        "expected a whole non-negative number",
    );
}

#[test]
fn other_type_errors_are_refused_with_their_line() {
    let (_dir, path) = file("node_id = -1\n");
    assert_file_syntax(load(Some(&path), &[], &flags()), &path, 1, "-1");
    let (_dir, path) = file("cluster_id = \"a\"\n[limits]\nclients_inflight_max = \"many\"\n");
    assert_file_syntax(load(Some(&path), &[], &flags()), &path, 3, "string");
    let (_dir, path) = file("raft = 5\n");
    assert_file_syntax(load(Some(&path), &[], &flags()), &path, 1, "");

    for (raw, needle) in [
        ("-1", "got \"-1\""),
        ("+5", "got \"+5\""),
        (" 5", "got \" 5\""),
    ] {
        assert_invalid(
            load(
                None,
                &[("DOCKET_LIMITS_BATCH_PROPOSALS_MAX", raw)],
                &flags(),
            ),
            "limits.batch_proposals_max",
            &env_origin("DOCKET_LIMITS_BATCH_PROPOSALS_MAX"),
            needle,
        );
    }
    assert_invalid(
        load(
            None,
            &[("DOCKET_NODE_ID", "99999999999999999999")],
            &flags(),
        ),
        "node_id",
        &env_origin("DOCKET_NODE_ID"),
        "too large",
    );
}

#[test]
fn toml_syntax_errors_give_line_and_column() {
    let (_dir, path) = file("node_id = 1\ncluster_id = \"unterminated\n");
    let error = load(Some(&path), &[], &flags()).expect_err("syntax error");
    let ConfigError::FileSyntax { line, column, .. } = &error else {
        panic!("expected FileSyntax, got {error:?}");
    };
    assert_eq!(*line, Some(2), "{error}");
    assert!(column.is_some(), "{error}");
}

#[test]
fn an_unreadable_file_names_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.toml");
    let error = load(Some(&missing), &[], &flags()).expect_err("missing file");
    assert!(matches!(&error, ConfigError::FileUnreadable { path, .. } if *path == missing));
    assert!(error.to_string().contains("nope.toml"), "{error}");

    let error = load(Some(dir.path()), &[], &flags()).expect_err("a directory");
    assert!(
        matches!(error, ConfigError::FileUnreadable { .. }),
        "{error:?}"
    );

    let huge = dir.path().join("huge.toml");
    std::fs::write(&huge, vec![b'#'; CONFIG_FILE_BYTES_MAX + 1]).expect("write");
    let error = load(Some(&huge), &[], &flags()).expect_err("too large");
    assert!(error.to_string().contains("larger than"), "{error}");

    let binary = dir.path().join("binary.toml");
    std::fs::write(&binary, [0xff, 0xfe, 0x00]).expect("write");
    let error = load(Some(&binary), &[], &flags()).expect_err("not UTF-8");
    assert!(
        matches!(error, ConfigError::FileUnreadable { .. }),
        "{error:?}"
    );
}

// ---- the environment -----------------------------------------------------------------------

#[test]
fn unknown_docket_variable_is_refused_by_name() {
    let error = load(None, &[("DOCKET_NODEID", "2")], &flags()).expect_err("typo");
    assert!(
        matches!(
            &error,
            ConfigError::UnknownEnvVar { var, suggestion: Some("DOCKET_NODE_ID") }
                if var == "DOCKET_NODEID"
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("DOCKET_NODEID (did you mean DOCKET_NODE_ID?)"),
        "{error}"
    );

    let error = load(None, &[("DOCKET_COLOUR", "blue")], &flags()).expect_err("unknown");
    assert!(
        matches!(&error, ConfigError::UnknownEnvVar { var, suggestion: None } if var == "DOCKET_COLOUR"),
        "{error:?}"
    );
    // Lower-case variants of a known name are not the variable either.
    let error = load(None, &[("DOCKET_node_id", "2")], &flags()).expect_err("case matters");
    assert!(
        matches!(error, ConfigError::UnknownEnvVar { .. }),
        "{error:?}"
    );
}

#[test]
fn reserved_and_foreign_variables_are_ignored() {
    let env = [
        ("DOCKET_LOG", "debug"),
        ("DOCKET_CONFIG", "/etc/docket.toml"),
        ("DOCKET_DATA_ROOT", "/tmp/x"),
        ("DOCKETNODE_ID", "7"),
        ("docket_node_id", "7"),
        ("HOME", "/root"),
    ];
    assert_eq!(
        load(None, &env, &flags()).expect("load"),
        NodeConfig::default()
    );
}

#[test]
fn every_listed_variable_sets_the_field_it_names() {
    for var in ENV_VARS {
        // An empty value is refused by every field, which reveals the field the name maps to.
        let error = load(None, &[(var, "")], &flags()).expect_err("empty value");
        let field = error.field().unwrap_or_else(|| panic!("{var}: {error}"));
        assert_eq!(
            format!("DOCKET_{}", field.replace('.', "_").to_uppercase()),
            *var,
            "{var} maps to {field}"
        );
        assert_eq!(error.origin(), Some(&env_origin(var)));
    }
    assert_eq!(ENV_VARS.len(), 28, "one variable per field");
}

#[test]
fn environment_errors_do_not_depend_on_variable_order() {
    let forward = [
        ("DOCKET_NODE_ID", "x"),
        ("DOCKET_LIMITS_BATCH_PROPOSALS_MAX", "y"),
    ];
    let backward = [forward[1], forward[0]];
    let first = load(None, &forward, &flags()).expect_err("bad");
    let second = load(None, &backward, &flags()).expect_err("bad");
    assert_eq!(first.to_string(), second.to_string());
    assert_eq!(
        first.field(),
        Some("limits.batch_proposals_max"),
        "DOCKET_LIMITS_* sorts before DOCKET_NODE_ID"
    );
}

#[test]
fn a_repeated_variable_takes_its_last_value() {
    let env = [("DOCKET_NODE_ID", "2"), ("DOCKET_NODE_ID", "3")];
    assert_eq!(load(None, &env, &flags()).expect("load").node_id, 3);
}

// ---- printing the effective configuration --------------------------------------------------

#[test]
fn the_printed_config_reads_back_identically() {
    let (_dir, path) = file(FULL_FILE);
    let config = load(Some(&path), &[], &flags()).expect("load");
    let printed = config.to_toml_string().expect("print");
    assert_eq!(
        toml::from_str::<NodeConfig>(&printed).expect("parse printed"),
        config
    );
    let (_dir2, printed_path) = file(&printed);
    assert_eq!(
        load(Some(&printed_path), &[], &flags()).expect("reload"),
        config
    );

    let printed = NodeConfig::default().to_toml_string().expect("print");
    assert!(
        printed.contains("raft_addr = \"127.0.0.1:7001\""),
        "{printed}"
    );
    assert!(
        printed.contains("[raft]\nheartbeat_interval_ms = 100\n"),
        "{printed}"
    );
    assert!(
        !printed.contains("genesis_constitution"),
        "None is left out: {printed}"
    );
    let (_dir3, default_path) = file(&printed);
    assert_eq!(
        load(Some(&default_path), &[], &flags()).expect("reload"),
        NodeConfig::default()
    );
}

#[test]
fn deserializing_a_node_config_refuses_unknown_fields() {
    let mut printed = NodeConfig::default().to_toml_string().expect("print");
    printed.push_str("surprise = 1\n");
    let error = toml::from_str::<NodeConfig>(&printed).expect_err("unknown field");
    assert!(error.message().contains("surprise"), "{error}");
}

#[test]
fn tls_is_off_unless_configured() {
    let config = load(None, &[], &flags()).expect("load");
    assert_eq!(config.tls, None);
}

#[test]
fn a_tls_section_is_read_with_its_defaults() {
    let (_dir, path) =
        file("[tls]\nca = \"ca.pem\"\ncert = \"node-1.pem\"\nkey = \"node-1.key\"\n");
    let config = load(Some(&path), &[], &flags()).expect("load");
    assert_eq!(
        config.tls,
        Some(TlsConfig {
            ca: "ca.pem".into(),
            cert: "node-1.pem".into(),
            key: "node-1.key".into(),
            require_client_cert: false,
            reload_poll_ms: RELOAD_POLL_MS_DEFAULT,
        })
    );
    // What `docket config show` prints reads back the same.
    let text = config.to_toml_string().expect("toml");
    assert!(text.contains("[tls]"), "{text}");
}

#[test]
fn tls_comes_from_the_environment_too() {
    let env = [
        ("DOCKET_TLS_CA", "/tls/ca.pem"),
        ("DOCKET_TLS_CERT", "/tls/n.pem"),
        ("DOCKET_TLS_KEY", "/tls/n.key"),
        ("DOCKET_TLS_REQUIRE_CLIENT_CERT", "true"),
        ("DOCKET_TLS_RELOAD_POLL_MS", "1000"),
    ];
    let tls = load(None, &env, &flags()).expect("load").tls.expect("tls");
    assert!(tls.require_client_cert);
    assert_eq!(tls.reload_poll_ms, 1000);
    assert_eq!(tls.key, std::path::PathBuf::from("/tls/n.key"));
}

#[test]
fn half_a_tls_section_is_refused_naming_the_missing_file() {
    let (_dir, path) = file("[tls]\nca = \"ca.pem\"\ncert = \"node-1.pem\"\n");
    let error = load(Some(&path), &[], &flags()).expect_err("no key");
    assert_eq!(error.field(), Some("tls.key"), "{error}");
    let error = load(None, &[("DOCKET_TLS_REQUIRE_CLIENT_CERT", "yes")], &flags())
        .expect_err("not a boolean");
    assert_eq!(error.field(), Some("tls.require_client_cert"), "{error}");
    let (_dir, path) = file("[tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\nreload_poll_ms = 5\n");
    let error = load(Some(&path), &[], &flags()).expect_err("too fast");
    assert_eq!(error.field(), Some("tls.reload_poll_ms"), "{error}");
}

// ---- [storage] ---------------------------------------------------------------------------

#[test]
fn storage_cache_comes_from_the_file_or_the_environment_within_its_bounds() {
    let config = load(None, &[], &flags()).expect("defaults");
    assert_eq!(config.storage.cache_mb, CACHE_MB_DEFAULT);
    assert_eq!(config.storage.cache_bytes(), CACHE_MB_DEFAULT * 1024 * 1024);

    let (_dir, path) = file("[storage]\ncache_mb = 32\n");
    let (config, origins) =
        NodeConfig::load_with_origins(Some(&path), vars(&[]), &flags()).expect("load");
    assert_eq!(config.storage.cache_mb, 32);
    assert_eq!(origins["storage.cache_mb"], file_origin(&path, 2));

    let config =
        load(Some(&path), &[("DOCKET_STORAGE_CACHE_MB", "512")], &flags()).expect("env over file");
    assert_eq!(config.storage.cache_mb, 512);

    let (_dir, path) = file("[storage]\ncache_mb = 4\n");
    let error = load(Some(&path), &[], &flags()).expect_err("under the floor");
    assert_eq!(
        error.to_string(),
        format!(
            "storage.cache_mb (from {}:2): must be at least 8, got 4: the store's cache in MiB",
            path.display()
        )
    );
    let (_dir, path) = file("[storage]\ncache = 64\n");
    assert!(
        load(Some(&path), &[], &flags()).is_err(),
        "unknown keys are refused"
    );
}

#[test]
fn the_storage_engine_is_layered_and_validated() {
    let config = load(None, &[], &flags()).expect("defaults");
    assert_eq!(config.storage.engine, StorageEngine::default());

    let (_dir, path) = file("[storage]\nengine = \"fjall\"\n");
    let (config, origins) =
        NodeConfig::load_with_origins(Some(&path), vars(&[]), &flags()).expect("load");
    assert_eq!(config.storage.engine, StorageEngine::Fjall);
    assert_eq!(origins["storage.engine"], file_origin(&path, 2));
    let config =
        load(Some(&path), &[("DOCKET_STORAGE_ENGINE", "sled")], &flags()).expect("env over file");
    assert_eq!(config.storage.engine, StorageEngine::Sled);

    let error =
        load(None, &[("DOCKET_STORAGE_ENGINE", "rocksdb")], &flags()).expect_err("not an engine");
    assert_eq!(error.field(), Some("storage.engine"), "{error}");
    assert_eq!(error.origin(), Some(&env_origin("DOCKET_STORAGE_ENGINE")));
    assert!(error.to_string().contains("sled or fjall"), "{error}");
    let (_dir, path) = file("[storage]\nengine = \"Fjall\"\n");
    let error = load(Some(&path), &[], &flags()).expect_err("names are lowercase");
    assert_eq!(error.field(), Some("storage.engine"), "{error}");
    assert_eq!(error.origin(), Some(&file_origin(&path, 2)), "{error}");
    let (_dir, path) = file("[storage]\nengine = 1\n");
    load(Some(&path), &[], &flags()).expect_err("a number is not an engine");
}

#[test]
fn the_log_format_is_layered_and_validated() {
    assert_eq!(
        load(None, &[], &flags()).expect("defaults").log.format,
        LogFormat::Text
    );
    let (_dir, path) = file("[log]\nformat = \"json\"\n");
    let config = load(Some(&path), &[], &flags()).expect("file");
    assert_eq!(config.log.format, LogFormat::Json);
    let config =
        load(Some(&path), &[("DOCKET_LOG_FORMAT", "text")], &flags()).expect("env over file");
    assert_eq!(config.log.format, LogFormat::Text);
    let overrides = Overrides {
        log_format: Some("json".into()),
        ..flags()
    };
    let config =
        load(Some(&path), &[("DOCKET_LOG_FORMAT", "text")], &overrides).expect("flag over env");
    assert_eq!(config.log.format, LogFormat::Json);

    let error = load(None, &[("DOCKET_LOG_FORMAT", "xml")], &flags()).expect_err("not a format");
    assert_eq!(error.field(), Some("log.format"), "{error}");
    assert_eq!(error.origin(), Some(&env_origin("DOCKET_LOG_FORMAT")));
    assert!(error.to_string().contains("text or json"), "{error}");
    let (_dir, path) = file("[log]\nformat = \"yaml\"\n");
    let error = load(Some(&path), &[], &flags()).expect_err("not a format");
    assert_eq!(error.field(), Some("log.format"), "{error}");
    let (_dir, path) = file("[log]\nlevel = \"debug\"\n");
    load(Some(&path), &[], &flags()).expect_err("the level stays with DOCKET_LOG");
}
