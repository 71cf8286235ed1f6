//! The run's trace: an ordered log of what happened, folded into a BLAKE3 hash.
//!
//! Recorded, in the order the simulation produces them: every ledger entry each node has
//! applied (index and entry hash, seen by the harness's observations), every change of a
//! node's Raft role, term or commit position, every client operation's invocation and
//! result with its simulated time, every fault the schedule applies, host boots and
//! crashes. Two runs of the same seed must produce the same bytes; the determinism test
//! compares the hashes, and `--trace` prints the lines.

use std::fmt::Write;

/// The trace of one run.
#[derive(Debug)]
pub struct Trace {
    hasher: blake3::Hasher,
    events: u64,
    /// Every line, when the run keeps them.
    lines: Option<Vec<String>>,
    /// The last lines, always kept for failure reports.
    tail: std::collections::VecDeque<String>,
}

/// Lines kept for a failure report.
pub const TAIL_LINES: usize = 40;

impl Trace {
    pub fn new(keep_all: bool) -> Trace {
        Trace {
            hasher: blake3::Hasher::new_derive_key("docket sim trace v1"),
            events: 0,
            lines: keep_all.then(Vec::new),
            tail: std::collections::VecDeque::with_capacity(TAIL_LINES),
        }
    }

    /// Records one event. `at_ns` is simulated time; `what` is its canonical text.
    pub fn record(&mut self, at_ns: u128, what: impl std::fmt::Display) {
        let mut line = String::new();
        let _ = write!(line, "{:>10.3}ms {what}", at_ns as f64 / 1e6);
        self.hasher.update(&(line.len() as u64).to_le_bytes());
        self.hasher.update(line.as_bytes());
        self.events += 1;
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.clone());
        if let Some(lines) = &mut self.lines {
            lines.push(line);
        }
    }

    pub fn events(&self) -> u64 {
        self.events
    }

    pub fn hash(&self) -> blake3::Hash {
        self.hasher.finalize()
    }

    pub fn lines(&self) -> Option<&[String]> {
        self.lines.as_deref()
    }

    pub fn tail(&self) -> impl Iterator<Item = &String> {
        self.tail.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_events_same_hash_and_order_matters() {
        let mut a = Trace::new(false);
        let mut b = Trace::new(true);
        for t in [(1, "x"), (2, "y")] {
            a.record(t.0, t.1);
            b.record(t.0, t.1);
        }
        assert_eq!(a.hash(), b.hash());
        let mut c = Trace::new(false);
        c.record(2, "y");
        c.record(1, "x");
        assert_ne!(a.hash(), c.hash());
        assert_eq!(b.lines().map(<[String]>::len), Some(2));
    }
}
