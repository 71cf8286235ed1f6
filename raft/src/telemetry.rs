//! What this crate records through the `metrics` facade: decisions as they are applied and
//! the latency of durable flushes. The facade is a no-op until a process installs a
//! recorder (the node does; the simulator does not), so recording never changes what
//! apply does. Names follow Prometheus conventions: base units last, `_total` counters.

use docket_core::{LedgerEntry, Record};

/// Proposals decided by this replica's applies, by `decision` (`admit`, `reject`,
/// `defer`) and `code` (the rejection code's stable name; `none` otherwise). Bounded
/// cardinality: three decisions and the one table of codes.
pub const PROPOSALS_TOTAL: &str = "docket_proposals_total";
/// Seconds one durable flush (sled's flush and the fsyncs after it) took.
pub const STORAGE_FLUSH_DURATION_SECONDS: &str = "docket_storage_flush_duration_seconds";

/// Seconds one Raft log append took, written and durably flushed. openraft 0.9's core
/// waits for it before it replicates, answers or sends a heartbeat, so on a leader an
/// append slower than the election trigger's silence (lease plus election timeout) lets a
/// follower campaign.
pub const LOG_APPEND_DURATION_SECONDS: &str = "docket_raft_log_append_duration_seconds";

/// Seconds one state-map fold took, by `phase`: `fold` (reading and rewriting the nodes,
/// without any lock) and `commit` (writing them and publishing the anchor, holding the
/// map's node lock: state proofs wait that long; applies and other reads do not).
pub const MAP_FOLD_DURATION_SECONDS: &str = "docket_map_fold_duration_seconds";

/// Appends from a leader this follower held back because its applies lagged
/// (`crate::pacing`: it waited for room, and took only what fit if none came): a
/// catching-up node counts them; one that keeps up counts none.
pub const APPENDS_PACED_TOTAL: &str = "docket_raft_appends_paced_total";

/// Anchors an apply could not queue for the state-map folder at once because its queue
/// was full (the folder lagging the applies), so the apply waited for room, off the
/// runtime's workers.
pub const FOLD_QUEUE_WAITS_TOTAL: &str = "docket_raft_fold_queue_waits_total";

/// Every name this crate records, with its help text.
pub const METRICS: &[(&str, &str)] = &[
    (
        PROPOSALS_TOTAL,
        "Proposals decided by this replica's applies, by decision and rejection code",
    ),
    (
        STORAGE_FLUSH_DURATION_SECONDS,
        "Seconds one durable flush of the store took (sled flush plus fsyncs)",
    ),
    (
        LOG_APPEND_DURATION_SECONDS,
        "Seconds one Raft log append took, written and durably flushed (a leader's Raft core sends nothing, heartbeats included, while it waits)",
    ),
    (
        MAP_FOLD_DURATION_SECONDS,
        "Seconds one state-map fold took, by phase: fold (no lock held) and commit (the map node lock held: state proofs wait)",
    ),
    (
        APPENDS_PACED_TOTAL,
        "Appends this follower held back because its applies lagged (it waited for room under the bound of entries appended and not applied)",
    ),
    (
        FOLD_QUEUE_WAITS_TOTAL,
        "Applies that waited for room in the state-map folder's queue (the folder lagging the applies)",
    ),
];

/// Counts the decisions among entries this replica just applied.
pub(crate) fn record_applied(entries: &[LedgerEntry]) {
    for entry in entries {
        let Record::Decision(record) = &entry.record else {
            continue;
        };
        let (decision, code) = match &record.decision {
            docket_core::Decision::Admit => ("admit", "none"),
            docket_core::Decision::Reject(rejection) => ("reject", rejection.code.name()),
            docket_core::Decision::Defer { .. } => ("defer", "none"),
        };
        metrics::counter!(PROPOSALS_TOTAL, "decision" => decision, "code" => code).increment(1);
    }
}
