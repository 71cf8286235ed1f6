//! openraft's storage conformance suite, against both disks under the store: sled (every
//! test gets a fresh data directory and a fresh `sled::Db`) and the simulator's disk model
//! (a fresh `SimDisk` per test).

use docket_raft::{LogStore, SimDisk, StateMachine, TypeConfig};
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

struct SimDiskBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, SimDisk> for SimDiskBuilder {
    async fn build(&self) -> Result<(SimDisk, LogStore, StateMachine), StorageError<u64>> {
        let disk = SimDisk::new("suite");
        let (log_store, state_machine) = docket_raft::open_sim(&disk).map_err(storage_error)?;
        Ok((disk, log_store, state_machine))
    }
}

/// A plain `#[test]`: `Suite::test_all` runs each case on its own tokio runtime.
#[test]
fn openraft_storage_suite_on_sled() {
    if let Err(e) = Suite::test_all(SledBuilder) {
        panic!("openraft storage suite failed on sled: {e}");
    }
}

#[test]
fn openraft_storage_suite_on_the_simulated_disk() {
    if let Err(e) = Suite::test_all(SimDiskBuilder) {
        panic!("openraft storage suite failed on the simulated disk: {e}");
    }
}
