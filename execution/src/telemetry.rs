//! What the execution agent records through the `metrics` facade (a no-op until the
//! process installs a recorder: the node does, the simulator does not). Labels are the
//! configured effect's name and a fixed set of results, so cardinality is bounded by the
//! `[execution]` configuration.

/// Jobs the agent ran, by effect and how the run ended (`done`, `retry`,
/// `lost_leadership`, `error`).
pub const JOBS_TOTAL: &str = "docket_execution_jobs_total";
/// Effect attempts performed (the effect ran), by effect and outcome (`success`,
/// `failure`).
pub const ATTEMPTS_TOTAL: &str = "docket_execution_attempts_total";
/// Seconds one attempt took, gate to verification, by effect.
pub const ATTEMPT_DURATION_SECONDS: &str = "docket_execution_attempt_duration_seconds";
/// Jobs concluded, by effect and outcome (`success`, `failure`, `refused`).
pub const OUTCOMES_TOTAL: &str = "docket_execution_outcomes_total";
/// Outcome records filed that the ledger decided, by effect and result (`recorded`,
/// `rejected`, `already_reported`).
pub const OUTCOME_RECORDS_TOTAL: &str = "docket_execution_outcome_records_total";

/// Every name this crate records, with its help text.
pub const METRICS: &[(&str, &str)] = &[
    (
        JOBS_TOTAL,
        "Execution jobs run by this node's agent, by effect and how the run ended",
    ),
    (
        ATTEMPTS_TOTAL,
        "Effect attempts performed, by effect and outcome",
    ),
    (
        ATTEMPT_DURATION_SECONDS,
        "Seconds one effect attempt took (gate to verification), by effect",
    ),
    (
        OUTCOMES_TOTAL,
        "Execution jobs concluded, by effect and outcome (success, failure, refused)",
    ),
    (
        OUTCOME_RECORDS_TOTAL,
        "Outcome records the ledger decided, by effect and result",
    ),
];
