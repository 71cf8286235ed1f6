//! State shared by the harness, the simulated hosts and the simulated clients.
//!
//! Everything in a turmoil simulation runs on one OS thread, host after host, so shared
//! state is an `Rc<RefCell<_>>`. Borrows are short and never held across an `.await`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use docket_core::VerifiedMemo;
use docket_raft::{NodeAddr, NodeId, Raft, Replica};

use crate::config::{Derived, SimConfig};
use crate::disk::SimDisk;
use crate::execution::ExecLog;
use crate::history::History;
use crate::journal::SimJournal;
use crate::rail::Rail;
use crate::trace::Trace;

/// Port of every node's Raft listener.
pub const RAFT_PORT: u16 = 7000;
/// Port of every node's client API listener.
pub const API_PORT: u16 = 8000;
/// Cluster (and ledger) id of the simulated cluster.
pub const CLUSTER_ID: &str = "sim";

/// turmoil host name of a node.
pub fn host_name(id: NodeId) -> String {
    format!("n{id}")
}

pub fn node_addr(id: NodeId) -> NodeAddr {
    NodeAddr {
        raft_addr: format!("{}:{RAFT_PORT}", host_name(id)),
        api_addr: format!("{}:{API_PORT}", host_name(id)),
    }
}

/// A node as the harness sees it.
pub struct NodeSlot {
    pub id: NodeId,
    /// The node's disk: outlives every crash of the host.
    pub disk: SimDisk,
    /// The node's execution journal storage: outlives crashes, keeps what was flushed.
    pub journal: SimJournal,
    /// Set by the host once Raft is running; cleared by the harness when it crashes it.
    pub raft: Option<Raft>,
    pub replica: Option<Replica>,
    /// Times the host has started.
    pub boots: u32,
    /// Whether the harness considers the host up (not crashed).
    pub up: bool,
}

impl std::fmt::Debug for NodeSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("NodeSlot")
            .field("id", &self.id)
            .field("disk", &self.disk)
            .field("running", &self.raft.is_some())
            .field("boots", &self.boots)
            .field("up", &self.up)
            .finish()
    }
}

/// What the liveness probe saw.
#[derive(Debug, Default, Clone, Copy)]
pub struct Probe {
    /// Simulated time the probe's proposal was acknowledged.
    pub acked_at: Option<Duration>,
}

/// The shared state of a run.
#[derive(Debug)]
pub struct Shared {
    pub config: SimConfig,
    pub derived: Derived,
    pub nodes: BTreeMap<NodeId, NodeSlot>,
    pub trace: Trace,
    pub history: History,
    /// `(domain, subject)` pairs the workload has written, for reads to pick from.
    pub subjects: Vec<(String, String)>,
    pub probe: Probe,
    /// Set when the workload should stop starting operations.
    pub stop_workload: bool,
    /// The simulated payment rail's records (execution target).
    pub rail: Rail,
    /// What the execution agents did, drained into the trace by the harness.
    pub exec_log: ExecLog,
    /// Signatures verified in this run, shared by every node's apply. A node's own memo
    /// (`docket_core::VerifiedMemo`) only ever changes how fast a decision is reached,
    /// never the decision (a property test in `core/` holds it to strict checks, forgeries
    /// included), so one memo for the whole run verifies each honest signature once
    /// instead of once per replica; forged ones are never remembered and are checked in
    /// full everywhere.
    pub signatures: Arc<VerifiedMemo>,
}

pub type World = Rc<RefCell<Shared>>;

/// Simulated time now, from inside a host or client.
pub fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

impl Shared {
    /// Records a trace event at the current simulated time (callable from hosts/clients).
    pub fn trace_now(&mut self, what: impl std::fmt::Display) {
        self.trace.record(now().as_nanos(), what);
    }
}
