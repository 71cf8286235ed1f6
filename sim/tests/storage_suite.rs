//! openraft's storage conformance suite against the Raft store on the simulator's disk
//! model ([`SimDisk`]), a fresh disk per test; the same suite runs on sled in
//! `raft/tests/suite.rs`.

use docket_raft::{LogStore, StateMachine, TypeConfig};
use docket_sim::disk::SimDisk;
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;

fn storage_error(e: docket_raft::StoreError) -> StorageError<u64> {
    StorageError::from(openraft::StorageIOError::write(openraft::AnyError::new(&e)))
}

struct SimDiskBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, SimDisk> for SimDiskBuilder {
    async fn build(&self) -> Result<(SimDisk, LogStore, StateMachine), StorageError<u64>> {
        let disk = SimDisk::new("suite");
        let (log_store, state_machine) =
            docket_raft::open_on(disk.handle(), 1).map_err(storage_error)?;
        Ok((disk, log_store, state_machine))
    }
}

/// A plain `#[test]`: `Suite::test_all` runs each case on its own tokio runtime.
#[test]
fn openraft_storage_suite_on_the_simulated_disk() {
    if let Err(e) = Suite::test_all(SimDiskBuilder) {
        panic!("openraft storage suite failed on the simulated disk: {e}");
    }
}
