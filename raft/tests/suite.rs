//! openraft's storage conformance suite against the store on both production disks, sled
//! and fjall: every test gets a fresh data directory and a fresh database. (The same suite
//! runs on the simulator's disk model in `sim/tests/storage_suite.rs`.)

use docket_raft::{LogStore, StateMachine, StorageEngine, StoreOptions, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use tempfile::TempDir;

fn storage_error(e: docket_raft::StoreError) -> StorageError<u64> {
    StorageError::from(openraft::StorageIOError::write(openraft::AnyError::new(&e)))
}

struct Builder(StorageEngine);

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = TempDir::new().expect("tempdir");
        let options = StoreOptions {
            engine: self.0,
            ..StoreOptions::default()
        };
        let (log_store, state_machine) =
            docket_raft::open_with(dir.path(), &options).map_err(storage_error)?;
        // The TempDir is returned as the guard, so it outlives the stores.
        Ok((dir, log_store, state_machine))
    }
}

/// A plain `#[test]`: `Suite::test_all` runs each case on its own tokio runtime.
#[test]
fn openraft_storage_suite_on_sled() {
    if let Err(e) = Suite::test_all(Builder(StorageEngine::Sled)) {
        panic!("openraft storage suite failed on sled: {e}");
    }
}

#[test]
fn openraft_storage_suite_on_fjall() {
    if let Err(e) = Suite::test_all(Builder(StorageEngine::Fjall)) {
        panic!("openraft storage suite failed on fjall: {e}");
    }
}
