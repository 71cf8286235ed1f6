//! The fault schedule: drawn from the seed, applied by the harness between steps.
//!
//! The menu: symmetric and one-way partitions between two nodes, isolating the leader or
//! any node, splitting the cluster, message loss and latency spikes on a link, crashing a
//! node (its disk and its execution journal lose what was not flushed, or keep a prefix of
//! it) and restarting it later, crashing every node at once (a power cut), an instant
//! restart, cutting a node (usually the leader) off the payment rail or making their link
//! lossy (with execution), and repairing the network. Faults accumulate until a repair, so
//! several are often active at once. The heal phase undoes everything and restarts every
//! crashed node.

use std::collections::BTreeMap;
use std::time::Duration;

use docket_raft::NodeId;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::config::{rng, salt, SimConfig};
use crate::rail::RAIL_HOST;
use crate::world::{host_name, World};

/// A fault action, for the trace and the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    Partition(NodeId, NodeId),
    PartitionOneWay(NodeId, NodeId),
    Isolate(NodeId),
    Split(Vec<NodeId>),
    Loss(NodeId, NodeId, u32),
    Delay(NodeId, NodeId, u64),
    Crash {
        node: NodeId,
        kept: usize,
        lost: usize,
    },
    CrashAll,
    Restart(NodeId),
    Bounce {
        node: NodeId,
        kept: usize,
        lost: usize,
    },
    /// The node and the payment rail cannot reach each other.
    RailPartition(NodeId),
    /// Loss (percent) on the link between the node and the payment rail.
    RailLoss(NodeId, u32),
    Repair,
}

#[derive(Debug)]
pub struct Schedule {
    rng: StdRng,
    /// How much of a crashed node's unflushed journal survives (its own generator, so the
    /// fault schedule itself does not depend on what the journals hold).
    journal_rng: StdRng,
    nodes: u64,
    every: Option<Duration>,
    next_at: Duration,
    crashes: bool,
    partitions: bool,
    /// Whether the payment rail is simulated (its links join the menu).
    rail: bool,
    /// Crashed nodes and when they come back.
    down: BTreeMap<NodeId, Duration>,
    /// Faults applied (for the report).
    pub applied: u64,
    pub crashes_applied: u64,
}

/// Earliest a fault starts: the cluster forms and writes genesis first.
pub const WARMUP: Duration = Duration::from_millis(1_200);

impl Schedule {
    pub fn new(seed: u64, config: &SimConfig, every: Option<Duration>) -> Schedule {
        Schedule {
            rng: rng(seed, salt::FAULTS),
            journal_rng: rng(seed, salt::JOURNAL),
            nodes: config.nodes,
            every,
            next_at: WARMUP,
            crashes: config.faults.crashes,
            partitions: config.faults.partitions,
            rail: config.execution,
            down: BTreeMap::new(),
            applied: 0,
            crashes_applied: 0,
        }
    }

    fn node(&mut self) -> NodeId {
        self.rng.gen_range(1..=self.nodes)
    }

    fn pair(&mut self) -> (NodeId, NodeId) {
        let a = self.node();
        let mut b = self.node();
        while b == a {
            b = self.node();
        }
        (a, b)
    }

    /// Applies whatever is due at simulated time `now`; returns what it did.
    pub fn tick(&mut self, sim: &mut turmoil::Sim<'_>, world: &World, now: Duration) -> Vec<Fault> {
        let mut done = Vec::new();
        let due: Vec<NodeId> = self
            .down
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(n, _)| *n)
            .collect();
        for node in due {
            self.down.remove(&node);
            restart(sim, world, node);
            done.push(Fault::Restart(node));
        }
        let Some(every) = self.every else {
            return done;
        };
        if now < self.next_at {
            return done;
        }
        let gap_ms = self.rng.gen_range(0..=2 * every.as_millis() as u64);
        self.next_at = now + Duration::from_millis(gap_ms.max(10));
        if let Some(fault) = self.draw(sim, world, now) {
            self.applied += 1;
            done.push(fault);
        }
        done
    }

    fn draw(&mut self, sim: &mut turmoil::Sim<'_>, world: &World, now: Duration) -> Option<Fault> {
        // Repair is a third of the menu or so: faults pile up, but the network is also
        // healthy often enough for the workload to make progress between them.
        let mut menu: Vec<u8> = vec![10, 10, 10, 10, 10];
        if self.partitions {
            menu.extend([0, 1, 2, 3, 4, 5, 6]);
        }
        if self.crashes {
            menu.extend([7, 7, 8, 9]);
        }
        if self.partitions && self.rail {
            menu.extend([11, 12]);
        }
        let pick = *menu
            .choose(&mut self.rng)
            .expect("invariant: the menu is never empty");
        let fault = match pick {
            0 => {
                let (a, b) = self.pair();
                sim.partition(host_name(a), host_name(b));
                Fault::Partition(a, b)
            }
            1 => {
                let (a, b) = self.pair();
                sim.partition_oneway(host_name(a), host_name(b));
                Fault::PartitionOneWay(a, b)
            }
            2 | 3 => {
                let target = if pick == 2 {
                    leader(world).unwrap_or_else(|| self.node())
                } else {
                    self.node()
                };
                for other in (1..=self.nodes).filter(|n| *n != target) {
                    sim.partition(host_name(target), host_name(other));
                }
                Fault::Isolate(target)
            }
            4 => {
                let mut ids: Vec<NodeId> = (1..=self.nodes).collect();
                ids.shuffle(&mut self.rng);
                let minority =
                    ids[..(ids.len() - 1) / 2 + usize::from(self.rng.gen_bool(0.3))].to_vec();
                for a in &minority {
                    for b in ids.iter().filter(|b| !minority.contains(b)) {
                        sim.partition(host_name(*a), host_name(*b));
                    }
                }
                Fault::Split(minority)
            }
            5 => {
                let (a, b) = self.pair();
                let percent = self.rng.gen_range(5..=40);
                sim.set_link_fail_rate(host_name(a), host_name(b), f64::from(percent) / 100.0);
                Fault::Loss(a, b, percent)
            }
            6 => {
                let (a, b) = self.pair();
                let ms = self.rng.gen_range(80..=600);
                sim.set_link_max_message_latency(
                    host_name(a),
                    host_name(b),
                    Duration::from_millis(ms),
                );
                Fault::Delay(a, b, ms)
            }
            7 | 8 => {
                let node = self.node();
                if self.down.contains_key(&node) {
                    return None;
                }
                if pick == 8 {
                    // Instant restart: the process dies and comes straight back.
                    let (kept, lost) =
                        crash(sim, world, node, &mut self.rng, &mut self.journal_rng);
                    restart(sim, world, node);
                    self.crashes_applied += 1;
                    Fault::Bounce { node, kept, lost }
                } else {
                    let (kept, lost) =
                        crash(sim, world, node, &mut self.rng, &mut self.journal_rng);
                    let downtime = Duration::from_millis(self.rng.gen_range(200..=4_000));
                    self.down.insert(node, now + downtime);
                    self.crashes_applied += 1;
                    Fault::Crash { node, kept, lost }
                }
            }
            9 => {
                if self.rng.gen_bool(0.6) {
                    return None; // rarer than single crashes
                }
                for node in 1..=self.nodes {
                    if !self.down.contains_key(&node) {
                        crash(sim, world, node, &mut self.rng, &mut self.journal_rng);
                        self.crashes_applied += 1;
                    }
                    let downtime = Duration::from_millis(self.rng.gen_range(200..=2_000));
                    self.down.insert(node, now + downtime);
                }
                Fault::CrashAll
            }
            11 => {
                // Usually the leader: its agent is the one talking to the rail.
                let node = match leader(world) {
                    Some(leader) if self.rng.gen_bool(0.7) => leader,
                    _ => self.node(),
                };
                sim.partition(host_name(node), RAIL_HOST);
                Fault::RailPartition(node)
            }
            12 => {
                let node = match leader(world) {
                    Some(leader) if self.rng.gen_bool(0.7) => leader,
                    _ => self.node(),
                };
                let percent = self.rng.gen_range(10..=50);
                sim.set_link_fail_rate(host_name(node), RAIL_HOST, f64::from(percent) / 100.0);
                Fault::RailLoss(node, percent)
            }
            _ => {
                repair_network(sim, self.nodes, world);
                if self.rail {
                    repair_rail(sim, self.nodes);
                }
                Fault::Repair
            }
        };
        Some(fault)
    }

    /// Undoes every fault: repairs the network and restarts crashed nodes.
    pub fn heal(&mut self, sim: &mut turmoil::Sim<'_>, world: &World) {
        repair_network(sim, self.nodes, world);
        if self.rail {
            repair_rail(sim, self.nodes);
        }
        let down: Vec<NodeId> = self.down.keys().copied().collect();
        for node in down {
            restart(sim, world, node);
        }
        self.down.clear();
    }
}

/// The node the most advanced running node believes is leader.
pub fn leader(world: &World) -> Option<NodeId> {
    let w = world.borrow();
    w.nodes
        .values()
        .filter_map(|s| s.raft.as_ref())
        .filter_map(|r| {
            let m = r.metrics();
            let m = m.borrow();
            m.current_leader.map(|l| (m.current_term, l))
        })
        .max()
        .map(|(_, l)| l)
}

/// Crashes a node's host, then its disk and its execution journal: everything not flushed
/// is lost, except (half the time) a random prefix of it. Returns the disk's `(batches
/// kept, batches lost)`.
pub fn crash(
    sim: &mut turmoil::Sim<'_>,
    world: &World,
    node: NodeId,
    rng: &mut StdRng,
    journal_rng: &mut StdRng,
) -> (usize, usize) {
    sim.crash(host_name(node));
    let mut w = world.borrow_mut();
    let slot = w.nodes.get_mut(&node).expect("invariant: node slot exists");
    slot.raft = None;
    slot.replica = None;
    slot.up = false;
    let pending = slot.disk.pending_batches();
    let keep = if rng.gen_bool(0.5) {
        0
    } else {
        rng.gen_range(0..=pending)
    };
    let lost = slot.disk.crash_keeping(keep);
    let pending = slot.journal.pending_writes();
    let journal_keep = if journal_rng.gen_bool(0.5) {
        0
    } else {
        journal_rng.gen_range(0..=pending)
    };
    slot.journal.crash_keeping(journal_keep);
    (keep, lost)
}

pub fn restart(sim: &mut turmoil::Sim<'_>, world: &World, node: NodeId) {
    world
        .borrow_mut()
        .nodes
        .get_mut(&node)
        .expect("invariant: node slot exists")
        .up = true;
    sim.bounce(host_name(node));
}

/// Repairs every node's link to the payment rail.
fn repair_rail(sim: &mut turmoil::Sim<'_>, nodes: u64) {
    for node in 1..=nodes {
        sim.repair(host_name(node), RAIL_HOST);
        sim.set_link_fail_rate(host_name(node), RAIL_HOST, 0.0);
    }
}

fn repair_network(sim: &mut turmoil::Sim<'_>, nodes: u64, world: &World) {
    let max_latency = world.borrow().derived.max_latency;
    for a in 1..=nodes {
        for b in (a + 1)..=nodes {
            sim.repair(host_name(a), host_name(b));
            sim.set_link_fail_rate(host_name(a), host_name(b), 0.0);
            sim.set_link_max_message_latency(host_name(a), host_name(b), max_latency);
        }
    }
}
