//! Linearizability of client histories: a Wing–Gong search (with Lowe's memoization of
//! `(linearized set, state)` pairs) over a sequential model, run per subject.
//!
//! ## The model: one versioned register per subject
//!
//! Every subject's state carries `last_index`, the ledger index of the last admitted entry
//! that touched it. A read returns it (0 for a subject never touched). Each admitted entry
//! on a subject is a write of its own index, and since the ledger is the commit order, a
//! subject's writes take effect in increasing index order. So the sequential model is a
//! register of versions: `Write(v)` is valid only if `v` is greater than the current value,
//! and `Read(v)` only if `v` is the current value. Linearizability is compositional, so
//! checking each subject on its own is exact.
//!
//! ## Where the operations come from
//!
//! * Reads: every read a client got an answer to, with its invocation and response times.
//! * Writes: from the agreed ledger. An admitted entry belongs to the client submission
//!   whose command recorded it: its own entry, or the nearest submission before it for a
//!   deferred proposal released in that submission's wave. Its write interval starts at the
//!   first invocation of that submission (resubmissions included) and ends at the first
//!   acknowledgement of it; never acknowledged (timed out, lost with a crashed node), it
//!   stays pending: it may be linearized anywhere after its invocation. These intervals
//!   contain the moment the entry took effect, so the check has no false positives.
//!
//! A read that misses a write acknowledged before the read began, or sees a write not yet
//! invoked when it returned, or sees versions go back, has no linearization.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;

use docket_core::{Cause, Decision, LedgerEntry, ProposalId};

use super::Violation;
use crate::history::{History, OpKind, OpResult};

const NAME: &str = "linearizability";

/// A sequential specification.
pub trait Model {
    type State: Clone + Eq + Hash + Debug;
    /// An operation together with the result it was observed to return.
    type Op: Clone + Debug;
    fn init() -> Self::State;
    /// The state after `op`, or `None` if `op` cannot return its observed result here.
    fn step(state: &Self::State, op: &Self::Op) -> Option<Self::State>;
}

/// One operation of a history: invoked at `call`, returned at `ret` (`None`: never
/// returned, so it may take effect at any point after `call`, or not at all).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event<O> {
    pub call: u128,
    pub ret: Option<u128>,
    pub op: O,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    NotLinearizable,
    /// The search exceeded its step budget (reported, not counted as a violation).
    Undecided,
}

/// Search steps allowed per history before giving up with [`Verdict::Undecided`].
pub const SEARCH_STEPS_MAX: u64 = 2_000_000;

struct Search<'a, M: Model> {
    events: &'a [Event<M::Op>],
    visited: HashSet<(Vec<u64>, M::State)>,
    steps: u64,
}

impl<M: Model> Search<'_, M> {
    /// `linearized`: bitset over `events`; `remaining`: completed events not linearized.
    fn run(
        &mut self,
        state: &M::State,
        linearized: &mut Vec<u64>,
        remaining: usize,
    ) -> Option<bool> {
        if remaining == 0 {
            return Some(true);
        }
        self.steps += 1;
        if self.steps > SEARCH_STEPS_MAX {
            return None;
        }
        // The visited set is only queried for membership; iteration order never matters.
        if !self.visited.insert((linearized.clone(), state.clone())) {
            return Some(false);
        }
        let is_done = |bits: &Vec<u64>, i: usize| bits[i / 64] & (1 << (i % 64)) != 0;
        // An event can go next only if no pending-to-linearize event returned before it
        // was called.
        let min_ret = (0..self.events.len())
            .filter(|&i| !is_done(linearized, i))
            .filter_map(|i| self.events[i].ret)
            .min()
            .unwrap_or(u128::MAX);
        for i in 0..self.events.len() {
            let event = &self.events[i];
            if event.call > min_ret {
                break; // events are sorted by call time
            }
            if is_done(linearized, i) {
                continue;
            }
            let Some(next) = M::step(state, &event.op) else {
                continue;
            };
            linearized[i / 64] |= 1 << (i % 64);
            let found = self.run(
                &next,
                linearized,
                remaining - usize::from(event.ret.is_some()),
            );
            linearized[i / 64] &= !(1 << (i % 64));
            match found {
                Some(true) => return Some(true),
                None => return None,
                Some(false) => {}
            }
        }
        Some(false)
    }
}

/// Wing–Gong–Lowe: is there a total order of the events, consistent with real time
/// (`a.ret < b.call` puts `a` first) and with the model, containing every returned event?
pub fn check_events<M: Model>(events: &[Event<M::Op>]) -> Verdict {
    let mut events = events.to_vec();
    events.sort_by_key(|e| (e.call, e.ret.unwrap_or(u128::MAX)));
    let remaining = events.iter().filter(|e| e.ret.is_some()).count();
    let mut search = Search::<M> {
        events: &events,
        visited: HashSet::new(),
        steps: 0,
    };
    let mut linearized = vec![0u64; events.len().div_ceil(64)];
    match search.run(&M::init(), &mut linearized, remaining) {
        Some(true) => Verdict::Linearizable,
        Some(false) => Verdict::NotLinearizable,
        None => Verdict::Undecided,
    }
}

/// Operations on a subject's versioned register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegisterOp {
    /// An admitted entry at this ledger index touched the subject.
    Write(u64),
    /// A read returned this `last_index`.
    Read(u64),
}

/// The per-subject model: a register whose writes carry increasing versions.
#[derive(Debug)]
pub struct VersionRegister;

impl Model for VersionRegister {
    type State = u64;
    type Op = RegisterOp;

    fn init() -> u64 {
        0
    }

    fn step(state: &u64, op: &RegisterOp) -> Option<u64> {
        match *op {
            RegisterOp::Write(v) => (v > *state).then_some(v),
            RegisterOp::Read(v) => (v == *state).then_some(v),
        }
    }
}

/// Counts for the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub subjects: u64,
    pub reads: u64,
    pub writes: u64,
    pub undecided: u64,
}

type Subject = (String, String);

/// Checks every subject's history against [`VersionRegister`].
pub fn check(history: &History, canonical: &[LedgerEntry]) -> (Vec<Violation>, Stats) {
    // Each proposal's first invocation and first acknowledgement.
    let mut submissions: BTreeMap<ProposalId, (u128, Option<u128>)> = BTreeMap::new();
    for op in &history.ops {
        if let OpKind::Submit { id, .. } = &op.kind {
            let entry = submissions.entry(*id).or_insert((op.invoked_ns, None));
            entry.0 = entry.0.min(op.invoked_ns);
            if let (Some(_), Some(ret)) = (op.result.ack(), op.returned_ns) {
                entry.1 = Some(entry.1.map_or(ret, |r: u128| r.min(ret)));
            }
        }
    }
    let mut per_subject: BTreeMap<Subject, Vec<Event<RegisterOp>>> = BTreeMap::new();
    let mut stats = Stats::default();
    let mut trigger: Option<ProposalId> = None;
    for entry in canonical {
        let Some(record) = entry.decision_record() else {
            continue;
        };
        match record.cause {
            Cause::Submitted => trigger = Some(record.id),
            Cause::Expired => trigger = None,
            Cause::Released { .. } => {}
        }
        if record.decision != Decision::Admit {
            continue;
        }
        let (call, ret) = trigger
            .and_then(|t| submissions.get(&t).copied())
            .unwrap_or((0, None));
        let p = &record.proposal.proposal;
        per_subject
            .entry((p.domain.clone(), p.subject.clone()))
            .or_default()
            .push(Event {
                call,
                ret,
                op: RegisterOp::Write(entry.index.0),
            });
        stats.writes += 1;
    }
    let mut reads: BTreeMap<Subject, Vec<Event<RegisterOp>>> = BTreeMap::new();
    for op in &history.ops {
        let (OpKind::Read { domain, subject }, OpResult::Read { subject: read, .. }) =
            (&op.kind, &op.result)
        else {
            continue;
        };
        let value = read.as_ref().map_or(0, |r| r.last_index);
        reads
            .entry((domain.clone(), subject.clone()))
            .or_default()
            .push(Event {
                call: op.invoked_ns,
                ret: op.returned_ns,
                op: RegisterOp::Read(value),
            });
        stats.reads += 1;
    }
    let mut violations = Vec::new();
    for (subject, subject_reads) in reads {
        stats.subjects += 1;
        let mut events = per_subject.remove(&subject).unwrap_or_default();
        events.extend(subject_reads);
        match check_events::<VersionRegister>(&events) {
            Verdict::Linearizable => {}
            Verdict::Undecided => stats.undecided += 1,
            Verdict::NotLinearizable => violations.push(Violation::new(
                NAME,
                format!(
                    "{}/{}: no linearization of {} operations; {}",
                    subject.0,
                    subject.1,
                    events.len(),
                    explain(&events)
                ),
            )),
        }
    }
    (violations, stats)
}

fn ms(ns: u128) -> f64 {
    ns as f64 / 1e6
}

/// A human reason for a non-linearizable register history (the first found).
pub fn explain(events: &[Event<RegisterOp>]) -> String {
    let writes: Vec<(u64, u128, Option<u128>)> = events
        .iter()
        .filter_map(|e| match e.op {
            RegisterOp::Write(v) => Some((v, e.call, e.ret)),
            RegisterOp::Read(_) => None,
        })
        .collect();
    let reads: Vec<(u64, u128, u128)> = events
        .iter()
        .filter_map(|e| match (e.op, e.ret) {
            (RegisterOp::Read(v), Some(ret)) => Some((v, e.call, ret)),
            _ => None,
        })
        .collect();
    for &(value, call, ret) in &reads {
        if let Some(&(w, _, wret)) = writes
            .iter()
            .find(|&&(w, _, wret)| w > value && wret.is_some_and(|r| r < call))
        {
            return format!(
                "stale read: a read invoked at {:.3}ms returned version {value}, but the write of \
                 version {w} was acknowledged at {:.3}ms",
                ms(call),
                ms(wret.unwrap_or(0))
            );
        }
        if value != 0 {
            match writes.iter().find(|&&(w, _, _)| w == value) {
                None => {
                    return format!(
                        "phantom read: a read at {:.3}ms returned version {value}, which no write \
                         on the subject has",
                        ms(call)
                    )
                }
                Some(&(_, wcall, _)) if wcall > ret => {
                    return format!(
                        "read from the future: a read that returned at {:.3}ms saw version \
                         {value}, invoked only at {:.3}ms",
                        ms(ret),
                        ms(wcall)
                    )
                }
                Some(_) => {}
            }
        }
    }
    for &(v1, _, r1) in &reads {
        if let Some(&(v2, c2, _)) = reads.iter().find(|&&(v2, c2, _)| r1 < c2 && v2 < v1) {
            return format!(
                "versions went back: version {v1} was read by {:.3}ms, then a read invoked at \
                 {:.3}ms returned {v2}",
                ms(r1),
                ms(c2)
            );
        }
    }
    "no single explanation found".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(call: u128, ret: Option<u128>, op: RegisterOp) -> Event<RegisterOp> {
        Event { call, ret, op }
    }
    use RegisterOp::{Read, Write};

    #[test]
    fn sequential_history_is_linearizable() {
        let h = [
            ev(0, Some(10), Write(3)),
            ev(11, Some(20), Read(3)),
            ev(21, Some(30), Write(7)),
            ev(31, Some(40), Read(7)),
        ];
        assert_eq!(check_events::<VersionRegister>(&h), Verdict::Linearizable);
    }

    #[test]
    fn a_concurrent_read_may_see_either_side_of_a_write() {
        for seen in [0, 1] {
            let h = [ev(0, Some(10), Write(1)), ev(5, Some(15), Read(seen))];
            assert_eq!(check_events::<VersionRegister>(&h), Verdict::Linearizable);
        }
    }

    #[test]
    fn a_stale_read_is_not_linearizable() {
        let h = [ev(0, Some(10), Write(1)), ev(20, Some(30), Read(0))];
        assert_eq!(
            check_events::<VersionRegister>(&h),
            Verdict::NotLinearizable
        );
        assert!(explain(&h).starts_with("stale read"));
    }

    #[test]
    fn a_read_from_the_future_is_not_linearizable() {
        let h = [ev(0, Some(5), Read(1)), ev(10, Some(20), Write(1))];
        assert_eq!(
            check_events::<VersionRegister>(&h),
            Verdict::NotLinearizable
        );
        assert!(explain(&h).starts_with("read from the future"));
    }

    #[test]
    fn reads_that_go_back_are_not_linearizable() {
        // Two concurrent writes; once one reader sees 2, a later reader cannot see 1.
        let h = [
            ev(0, Some(100), Write(1)),
            ev(0, Some(100), Write(2)),
            ev(10, Some(20), Read(2)),
            ev(30, Some(40), Read(1)),
        ];
        assert_eq!(
            check_events::<VersionRegister>(&h),
            Verdict::NotLinearizable
        );
        assert!(explain(&h).starts_with("versions went back"));
        // The other order is fine.
        let h = [
            ev(0, Some(100), Write(1)),
            ev(0, Some(100), Write(2)),
            ev(10, Some(20), Read(1)),
            ev(30, Some(40), Read(2)),
        ];
        assert_eq!(check_events::<VersionRegister>(&h), Verdict::Linearizable);
    }

    #[test]
    fn a_pending_write_may_or_may_not_take_effect() {
        let never_seen = [ev(0, None, Write(4)), ev(5, Some(6), Read(0))];
        assert_eq!(
            check_events::<VersionRegister>(&never_seen),
            Verdict::Linearizable
        );
        let seen = [ev(0, None, Write(4)), ev(5, Some(6), Read(4))];
        assert_eq!(
            check_events::<VersionRegister>(&seen),
            Verdict::Linearizable
        );
        let seen_then_lost = [
            ev(0, None, Write(4)),
            ev(5, Some(6), Read(4)),
            ev(7, Some(8), Read(0)),
        ];
        assert_eq!(
            check_events::<VersionRegister>(&seen_then_lost),
            Verdict::NotLinearizable
        );
    }

    #[test]
    fn a_phantom_read_is_not_linearizable() {
        let h = [ev(0, Some(10), Write(1)), ev(20, Some(30), Read(9))];
        assert_eq!(
            check_events::<VersionRegister>(&h),
            Verdict::NotLinearizable
        );
        assert!(explain(&h).starts_with("phantom read"));
    }

    /// A plain read/write register with repeated values: the textbook non-linearizable
    /// history (a write is seen, then a later read misses it).
    #[derive(Debug)]
    struct PlainRegister;

    #[derive(Clone, Copy, Debug)]
    enum Plain {
        W(u8),
        R(u8),
    }

    impl Model for PlainRegister {
        type State = u8;
        type Op = Plain;
        fn init() -> u8 {
            0
        }
        fn step(state: &u8, op: &Plain) -> Option<u8> {
            match *op {
                Plain::W(v) => Some(v),
                Plain::R(v) => (v == *state).then_some(v),
            }
        }
    }

    #[test]
    fn the_generic_search_on_a_plain_register() {
        let bad = [
            Event {
                call: 0,
                ret: Some(10),
                op: Plain::W(1),
            },
            Event {
                call: 11,
                ret: Some(20),
                op: Plain::R(1),
            },
            Event {
                call: 21,
                ret: Some(30),
                op: Plain::R(0),
            },
        ];
        assert_eq!(
            check_events::<PlainRegister>(&bad),
            Verdict::NotLinearizable
        );
        // Overlapping writes of the same value, reads in any interleaving: fine.
        let good = [
            Event {
                call: 0,
                ret: Some(50),
                op: Plain::W(1),
            },
            Event {
                call: 0,
                ret: Some(50),
                op: Plain::W(0),
            },
            Event {
                call: 10,
                ret: Some(20),
                op: Plain::R(1),
            },
            Event {
                call: 30,
                ret: Some(40),
                op: Plain::R(0),
            },
        ];
        assert_eq!(check_events::<PlainRegister>(&good), Verdict::Linearizable);
    }

    #[test]
    fn many_concurrent_operations_stay_fast() {
        // 12 overlapping writes and 40 reads of increasing versions: memoization keeps
        // this far below the step budget.
        let mut h: Vec<_> = (1..=12).map(|v| ev(0, Some(1_000), Write(v))).collect();
        for i in 0..40u64 {
            let t = u128::from(i) * 20 + 1_001;
            h.push(ev(t, Some(t + 5), Read(12)));
        }
        assert_eq!(check_events::<VersionRegister>(&h), Verdict::Linearizable);
    }
}
