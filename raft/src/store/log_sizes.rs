//! How many bytes of Raft log lie past an index, without reading the log back: what a node
//! needs to keep the most recent bytes of its log when it purges
//! ([`LogSizes::keep_floor`]; the policy is `docket_service`'s `retention`).
//!
//! Appends add their encoded bytes to a running total, and a sample `(index, total through
//! it)` is recorded whenever [`LogSizes::gap`] bytes have gone by since the last one. The
//! samples are at most [`SAMPLES_MAX`]: when they would be more, every other one is dropped
//! and the gap doubles, so memory is bounded whatever the log's length and the answer is
//! within one gap of exact. Purges drop the samples they pass; a truncation drops the
//! samples it removes and rewinds the total to the last one left (bytes between it and the
//! truncation point are forgotten: an undercount of less than one gap).
//!
//! The log a node holds when its store opens is counted by an estimate
//! ([`LogSizes::seed`]): its entries times the mean size of a few of them read at open,
//! sampled as if every entry had that size. So a node that restarts often still purges
//! what it held before (without it, a node restarted before each budget's worth of
//! appends would never purge), and the error is that of the estimate, on that part of the
//! log only.

use std::collections::VecDeque;

/// Samples kept at most: 16 bytes each.
pub(crate) const SAMPLES_MAX: usize = 4096;

/// The first gap between samples: a node keeping 256 MiB of log samples it every 64 KiB.
pub(crate) const GAP_BYTES_INITIAL: u64 = 64 * 1024;

#[derive(Debug)]
pub(crate) struct LogSizes {
    /// `(index, total through index)`, both strictly increasing.
    samples: VecDeque<(u64, u64)>,
    /// Bytes through the last entry: appended since open, plus the estimate of the log
    /// held at open ([`LogSizes::seed`]).
    total: u64,
    /// Bytes between two samples, at least.
    gap: u64,
}

impl Default for LogSizes {
    fn default() -> LogSizes {
        LogSizes {
            samples: VecDeque::new(),
            total: 0,
            gap: GAP_BYTES_INITIAL,
        }
    }
}

impl LogSizes {
    /// Counts the log `[first, last]` a store holds when it opens at `mean` bytes an entry
    /// (an estimate: [`crate::store::Store`] reads a few of them). Only on an empty count.
    pub(crate) fn seed(&mut self, first: u64, last: u64, mean: u64) {
        if last < first || !self.samples.is_empty() {
            return;
        }
        let mean = mean.max(1);
        let mut index = first;
        loop {
            self.total = (index - first + 1).saturating_mul(mean);
            self.samples.push_back((index, self.total));
            if self.samples.len() > SAMPLES_MAX {
                self.thin();
            }
            if index == last {
                return;
            }
            // One sample a gap, as appends are sampled (the gap grows as samples thin).
            let every = (self.gap / mean).max(1);
            index = index.saturating_add(every).min(last);
        }
    }

    /// Records an appended entry of `bytes` at `index` (appends come in index order;
    /// an append over existing indexes comes after their truncation).
    pub(crate) fn appended(&mut self, index: u64, bytes: u64) {
        // An overwrite of indexes openraft did not truncate first (it does not happen:
        // conflicts are truncated before the append) must not leave samples out of order.
        if self.samples.back().is_some_and(|&(last, _)| last >= index) {
            self.truncated(index);
        }
        self.total += bytes;
        let due = match self.samples.back() {
            None => true,
            Some(&(_, through)) => self.total - through >= self.gap,
        };
        if due {
            self.samples.push_back((index, self.total));
            if self.samples.len() > SAMPLES_MAX {
                self.thin();
            }
        }
    }

    /// Every entry at `since` and after was removed.
    pub(crate) fn truncated(&mut self, since: u64) {
        while self
            .samples
            .back()
            .is_some_and(|&(index, _)| index >= since)
        {
            self.samples.pop_back();
        }
        self.total = self.samples.back().map_or(0, |&(_, through)| through);
    }

    /// Every entry up to and including `upto` was removed. The last sample at or before
    /// `upto` stays, as the mark [`LogSizes::bytes_after`] counts the rest of the log from.
    pub(crate) fn purged(&mut self, upto: u64) {
        while self.samples.get(1).is_some_and(|&(index, _)| index <= upto) {
            self.samples.pop_front();
        }
    }

    /// The highest index whose purge leaves at most `keep` bytes of the log and keeps as
    /// many as it can under that, to within one gap (more than `keep` only when even the
    /// last sample leaves more: then that sample); `None` while the whole log fits in
    /// `keep`. `keep = 0` is answered with the last sample, which may be short of the last
    /// entry by up to one gap.
    pub(crate) fn keep_floor(&self, keep: u64) -> Option<u64> {
        if self.total <= keep {
            return None;
        }
        // Samples are in increasing `through`, so "too much kept" holds for a prefix.
        let first_within = self
            .samples
            .partition_point(|&(_, through)| self.total - through > keep);
        let at = first_within.min(self.samples.len().checked_sub(1)?);
        Some(self.samples[at].0)
    }

    /// Bytes of log past `index` (an estimate, to within one gap). For
    /// metrics and logs.
    pub(crate) fn bytes_after(&self, index: u64) -> u64 {
        let first_past = self.samples.partition_point(|&(i, _)| i <= index);
        let through = first_past.checked_sub(1).map_or(0, |at| self.samples[at].1);
        self.total - through
    }

    /// Halves the samples and doubles the gap: keeps the newest and every other one back.
    fn thin(&mut self) {
        let len = self.samples.len();
        let mut at = 0;
        self.samples.retain(|_| {
            let keep = (len - 1 - at).is_multiple_of(2);
            at += 1;
            keep
        });
        self.gap = self.gap.saturating_mul(2);
    }

    #[cfg(test)]
    pub(crate) fn samples(&self) -> usize {
        self.samples.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn appended(sizes: &mut LogSizes, indexes: std::ops::RangeInclusive<u64>, bytes: u64) {
        for index in indexes {
            sizes.appended(index, bytes);
        }
    }

    #[test]
    fn keeps_the_most_recent_bytes_to_within_one_gap() {
        let mut sizes = LogSizes::default();
        // 1,000 entries of 16 KiB: a sample every 4 entries.
        appended(&mut sizes, 1..=1_000, 16 * 1024);
        let keep = 1024 * 1024; // 64 entries
        let floor = sizes.keep_floor(keep).expect("a floor");
        let kept = (1_000 - floor) * 16 * 1024;
        assert!(kept <= keep, "kept {kept} > {keep}");
        assert!(
            kept + GAP_BYTES_INITIAL >= keep,
            "kept {kept}, far under {keep}"
        );
        assert_eq!(sizes.bytes_after(floor), kept);
    }

    #[test]
    fn nothing_appended_since_open_means_nothing_to_purge() {
        let sizes = LogSizes::default();
        assert_eq!(sizes.keep_floor(0), None);
        assert_eq!(sizes.keep_floor(1 << 20), None);
    }

    #[test]
    fn the_log_held_at_open_is_counted_from_its_estimate() {
        let mut sizes = LogSizes::default();
        // 1,000 entries of about 16 KiB at open: a sample every 4 entries.
        sizes.seed(101, 1_100, 16 * 1024);
        assert_eq!(sizes.keep_floor(1 << 30), None, "all of it fits");
        // Keeping 1 MiB (64 entries) purges the rest, as if they had been appended.
        let floor = sizes.keep_floor(1024 * 1024).expect("a floor");
        assert!((1_036..=1_040).contains(&floor), "{floor}");
        // Appends go on from the estimate.
        appended(&mut sizes, 1_101..=1_164, 16 * 1024);
        let floor = sizes.keep_floor(1024 * 1024).expect("a floor");
        assert!((1_100..=1_104).contains(&floor), "{floor}");
        // A huge log at open stays within the sample bound.
        let mut huge = LogSizes::default();
        huge.seed(0, 100_000_000, 64);
        assert!(huge.samples() <= SAMPLES_MAX);
        assert_eq!(huge.keep_floor(0), Some(100_000_000));
    }

    #[test]
    fn without_a_seed_the_log_from_before_open_is_kept_until_what_came_since_exceeds_the_budget() {
        let mut sizes = LogSizes::default();
        // Entries 1..=4 were in the log at open, not counted.
        appended(&mut sizes, 5..=10, GAP_BYTES_INITIAL);
        assert_eq!(sizes.keep_floor(6 * GAP_BYTES_INITIAL), None);
        assert_eq!(sizes.keep_floor(1 << 30), None);
        // One entry more than the budget: the purge goes through the first entry since
        // open, and everything before it with it.
        assert_eq!(sizes.keep_floor(5 * GAP_BYTES_INITIAL), Some(5));
        appended(&mut sizes, 11..=11, GAP_BYTES_INITIAL);
        assert_eq!(sizes.keep_floor(5 * GAP_BYTES_INITIAL), Some(6));
    }

    #[test]
    fn purges_and_truncations_drop_their_samples() {
        let mut sizes = LogSizes::default();
        appended(&mut sizes, 1..=100, GAP_BYTES_INITIAL);
        assert_eq!(sizes.samples(), 100);
        sizes.purged(40);
        // 40 stays, as the mark of the purge.
        assert_eq!(sizes.samples(), 61);
        assert_eq!(sizes.bytes_after(40), 60 * GAP_BYTES_INITIAL);
        assert_eq!(sizes.keep_floor(0), Some(100));
        sizes.truncated(91);
        assert_eq!(sizes.samples(), 51);
        assert_eq!(sizes.keep_floor(0), Some(90));
        assert_eq!(sizes.bytes_after(80), 10 * GAP_BYTES_INITIAL);
        // Appends go on from the truncation point, counted from the sample before it.
        appended(&mut sizes, 91..=95, GAP_BYTES_INITIAL);
        assert_eq!(sizes.bytes_after(80), 15 * GAP_BYTES_INITIAL);
        assert_eq!(sizes.keep_floor(3 * GAP_BYTES_INITIAL), Some(92));
    }

    #[test]
    fn an_append_over_kept_indexes_truncates_first() {
        let mut sizes = LogSizes::default();
        appended(&mut sizes, 1..=10, GAP_BYTES_INITIAL);
        appended(&mut sizes, 6..=7, 2 * GAP_BYTES_INITIAL);
        assert_eq!(sizes.keep_floor(0), Some(7));
        assert_eq!(sizes.bytes_after(5), 4 * GAP_BYTES_INITIAL);
    }

    #[test]
    fn samples_stay_bounded_and_the_floor_stays_within_the_wider_gap() {
        let mut sizes = LogSizes::default();
        let entries = 3 * SAMPLES_MAX as u64;
        appended(&mut sizes, 1..=entries, GAP_BYTES_INITIAL);
        assert!(
            sizes.samples() <= SAMPLES_MAX,
            "{} samples",
            sizes.samples()
        );
        assert!(sizes.gap > GAP_BYTES_INITIAL);
        let keep = 1000 * GAP_BYTES_INITIAL;
        let floor = sizes.keep_floor(keep).expect("a floor");
        let kept = (entries - floor) * GAP_BYTES_INITIAL;
        assert!(
            kept <= keep && kept + sizes.gap >= keep,
            "kept {kept} of {keep}"
        );
    }
}
