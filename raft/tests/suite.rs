//! openraft's storage conformance suite against the store on sled: every test gets a fresh
//! data directory and a fresh `sled::Db`. (The same suite runs on the simulator's disk
//! model in `sim/tests/storage_suite.rs`.)

use docket_raft::{LogStore, StateMachine, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use tempfile::TempDir;

fn storage_error(e: docket_raft::StoreError) -> StorageError<u64> {
    StorageError::from(openraft::StorageIOError::write(openraft::AnyError::new(&e)))
}

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for SledBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = TempDir::new().expect("tempdir");
        let (log_store, state_machine) = docket_raft::open(dir.path()).map_err(storage_error)?;
        // The TempDir is returned as the guard, so it outlives the stores.
        Ok((dir, log_store, state_machine))
    }
}

/// A plain `#[test]`: `Suite::test_all` runs each case on its own tokio runtime.
#[test]
fn openraft_storage_suite_on_sled() {
    if let Err(e) = Suite::test_all(SledBuilder) {
        panic!("openraft storage suite failed on sled: {e}");
    }
}
