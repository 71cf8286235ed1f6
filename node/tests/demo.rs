//! The README's first command, `docket demo`, end to end: a 3-node TLS cluster doing
//! governed work (deferrals, payouts on a rail, a petition whose report a declined payout
//! rejects, a leader killed mid-run), which must finish with every replica holding the same
//! ledger and state hash and every admitted payout paid once. The demo checks all of that
//! itself and exits non-zero when anything is off; this test runs it as a user does.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::binary;

/// Far above what the demo takes (a few seconds in a release build, tens in a debug one
/// on two shared cores): reached only when it hangs.
const DEMO_SECONDS_MAX: u64 = 300;

#[test]
fn the_demo_runs_governed_work_to_identical_replicas() {
    let start = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(binary())
        .args(["demo", "--dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start docket demo");
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(DEMO_SECONDS_MAX) {
            child.kill().ok();
            panic!("docket demo did not finish in {DEMO_SECONDS_MAX} s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "docket demo failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    for expected in [
        "REJECT UNAUTHORIZED",
        "DEFER waiting on",
        "DEPENDENCY_FAILED",
        "the rail saw 4 payouts",
        "all three replicas hold the same ledger and state hash",
    ] {
        assert!(
            stdout.contains(expected),
            "the demo's output lacks {expected:?}:\n{stdout}"
        );
    }
}
