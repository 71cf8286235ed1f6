//! What the agent records through the `metrics` facade, rendered by a Prometheus recorder
//! installed for this test's thread only: one payout performed makes one job, one
//! successful attempt, one success concluded and one outcome record admitted.

#![allow(clippy::unwrap_used)] // Tests unwrap.

mod support;

use docket_execution::RailConfig;
use support::*;

/// The value of the one series of `name` whose labels include every `labels` pair.
fn value(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let mut found = text.lines().filter(|line| {
        line.starts_with(&format!("{name}{{")) && labels.iter().all(|l| line.contains(l))
    });
    let line = found.next()?;
    assert!(
        found.next().is_none(),
        "several series match {name} {labels:?}"
    );
    line.rsplit_once(' ')?.1.parse().ok()
}

// Current-thread runtime (tokio's default for tests): every task the agent runs is polled
// on this thread, where the local recorder is installed.
#[tokio::test]
async fn a_performed_payout_is_counted_by_effect_and_result() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let _guard = metrics::set_default_local_recorder(&recorder);

    let host = FakeHost::new();
    let rail = Target::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&rail);
    config.rail = Some(RailConfig {
        url: rail.url("/payouts"),
        amount_max: 1_000_000,
        limits: fast_limits(),
    });
    let executor = executor(&config, dir.path());
    funded_payout(&host, "stl-1", 1_000, 400);
    executor.run_until_idle(&*host, 1).await.unwrap();
    assert_eq!(rail.performed().len(), 1);

    let text = handle.render();
    let effect = "effect=\"rail\"";
    assert_eq!(
        value(
            &text,
            docket_execution::telemetry::JOBS_TOTAL,
            &[effect, "end=\"done\""]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            docket_execution::telemetry::ATTEMPTS_TOTAL,
            &[effect, "outcome=\"success\""]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            docket_execution::telemetry::OUTCOMES_TOTAL,
            &[effect, "outcome=\"success\""]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            docket_execution::telemetry::OUTCOME_RECORDS_TOTAL,
            &[effect, "result=\"recorded\""]
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{}_count{{{effect}}} 1",
            docket_execution::telemetry::ATTEMPT_DURATION_SECONDS
        )),
        "{text}"
    );
}
