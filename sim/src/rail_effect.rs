//! The payment-rail effect of a simulated node: the execution crate's own
//! [`RailEffect`] for everything but the transport.
//!
//! Planning (the request body, the amount cap, refusals), the triggers, the reporting and
//! the verification of the rail's answer are `RailEffect`'s; the agent around it does the
//! gate, leadership checks, journal, evidence and outcome records as always. Only `run` is
//! the simulator's: reqwest cannot run over turmoil's sockets, so a run POSTs with
//! [`crate::http`] over turmoil TCP, with the semantics of the crate's HTTP runner
//! (`docket_execution::http::post`): `Idempotency-Key` = the proposal id and
//! `Docket-Attempt` on every request, bounded tries with exponential backoff
//! ([`docket_execution::http::backoff_ms`]), a timeout per try and a deadline over all of
//! them, retries on connection errors, timeouts, `5xx`, `408`, `425` and `429`, none on
//! other `4xx`, and a bounded response.
//!
//! Two simulator-only headers let the effects checker explain every request the rail gets:
//! [`RUN_HEADER`] names the run (tries of one run share it) and [`KNOWN_LEDGER_HEADER`]
//! carries how much of the ledger the node had applied when the agent planned the attempt.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use docket_core::ProposalId;
use docket_execution::effect::{EffectFuture, Failed, Performed, Verified};
use docket_execution::effects::RailEffect;
use docket_execution::evidence::{bounded, Cost, EffectRecord, TARGET_BYTES_MAX};
use docket_execution::http::{backoff_ms, ATTEMPT_HEADER, IDEMPOTENCY_KEY_HEADER};
use docket_execution::{
    Effect, EffectLimits, Plan, PlanContext, Reporting, Request, Target, Trigger,
};
use docket_raft::NodeId;
use tokio::time::Instant;

use crate::http;
use crate::rail::{KNOWN_LEDGER_HEADER, RUN_HEADER};

/// The rail effect of one boot of one simulated node.
#[derive(Debug)]
pub struct SimRailEffect {
    inner: RailEffect,
    node: NodeId,
    boot: u32,
    runs: AtomicU64,
    /// Proposal id → ledger entries applied here when its current attempt was planned.
    planned_with: Mutex<BTreeMap<ProposalId, u64>>,
}

impl SimRailEffect {
    pub fn new(inner: RailEffect, node: NodeId, boot: u32) -> SimRailEffect {
        SimRailEffect {
            inner,
            node,
            boot,
            runs: AtomicU64::new(0),
            planned_with: Mutex::new(BTreeMap::new()),
        }
    }
}

enum Try {
    Done(u16, Vec<u8>),
    Retry(String, Option<Vec<u8>>),
    Stop(String, Option<Vec<u8>>),
}

fn record(target: &str, result: String) -> EffectRecord {
    EffectRecord {
        kind: "http_post".into(),
        target: bounded(target.to_owned(), TARGET_BYTES_MAX),
        result,
    }
}

/// One request and its answer.
async fn once(address: &str, bytes: &[u8], response_bytes_max: usize, cost: &mut Cost) -> Try {
    let mut stream = match turmoil::net::TcpStream::connect(address).await {
        Ok(stream) => stream,
        Err(e) => return Try::Retry(format!("connection failed: {e}"), None),
    };
    if let Err(e) = http::write_all(&mut stream, bytes).await {
        return Try::Retry(format!("sending: {e}"), None);
    }
    let response = match http::read_message(&mut stream, response_bytes_max).await {
        Ok(response) => response,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            return Try::Stop(format!("unusable response: {e}"), None)
        }
        Err(e) => return Try::Retry(format!("reading the response: {e}"), None),
    };
    cost.bytes_in += response.body.len() as u64;
    let Some(status) = response.status() else {
        return Try::Stop(
            format!("not an HTTP status line: {:?}", response.start),
            None,
        );
    };
    if (200..300).contains(&status) {
        return Try::Done(status, response.body);
    }
    let reason = format!("status {status}");
    if status >= 500 || matches!(status, 408 | 425 | 429) {
        Try::Retry(reason, Some(response.body))
    } else {
        Try::Stop(reason, Some(response.body))
    }
}

impl Effect for SimRailEffect {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn triggers(&self) -> Vec<Trigger> {
        self.inner.triggers()
    }

    fn reporting(&self) -> Reporting {
        self.inner.reporting()
    }

    fn limits(&self) -> &EffectLimits {
        self.inner.limits()
    }

    fn plan(&self, cx: PlanContext<'_>) -> Plan {
        // The agent plans right after it found no outcome for the proposal in the ledger,
        // with no await in between, and confirms leadership and checks again before the
        // run: what was applied now is a lower bound of what it knew when it decided.
        self.planned_with
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(cx.record.id, cx.ledger.ledger_len());
        self.inner.plan(cx)
    }

    fn run<'a>(
        &'a self,
        request: &'a Request,
        key: &'a ProposalId,
    ) -> EffectFuture<'a, Result<Performed, Failed>> {
        Box::pin(async move {
            let Target::Http(url) = &request.target else {
                return Err(Failed {
                    reason: "the rail only speaks HTTP".into(),
                    ..Failed::default()
                });
            };
            let target = url.to_string();
            let host = url.host_str().unwrap_or_default();
            let port = url.port_or_known_default().unwrap_or(80);
            let address = format!("{host}:{port}");
            let run = self.runs.fetch_add(1, Ordering::Relaxed) + 1;
            let run_id = format!("n{}.b{}.{run}", self.node, self.boot);
            let known = self
                .planned_with
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(key)
                .copied()
                .unwrap_or(0);
            let limits = self.inner.limits();
            let started = Instant::now();
            let deadline = started + Duration::from_millis(limits.deadline_ms);
            let mut effects = Vec::new();
            let mut cost = Cost::default();
            let mut last_reason = String::from("no attempt fit in the deadline");
            let mut last_output = None;
            for attempt in 1..=limits.attempts_max {
                let now = Instant::now();
                if now >= deadline {
                    last_reason = format!(
                        "deadline of {} ms reached: {last_reason}",
                        limits.deadline_ms
                    );
                    break;
                }
                let timeout = Duration::from_millis(limits.timeout_ms).min(deadline - now);
                let bytes = http::post_bytes(
                    url.path(),
                    &address,
                    &[
                        (IDEMPOTENCY_KEY_HEADER, key.to_hex()),
                        (ATTEMPT_HEADER, attempt.to_string()),
                        (RUN_HEADER, run_id.clone()),
                        (KNOWN_LEDGER_HEADER, known.to_string()),
                    ],
                    &request.body,
                );
                cost.attempts = attempt;
                cost.bytes_out += request.body.len() as u64;
                let outcome = tokio::time::timeout(
                    timeout,
                    once(&address, &bytes, limits.response_bytes_max, &mut cost),
                )
                .await
                .unwrap_or_else(|_| {
                    Try::Retry(format!("timed out after {} ms", timeout.as_millis()), None)
                });
                let (reason, retry) = match outcome {
                    Try::Done(status, output) => {
                        effects.push(record(&target, format!("status {status}")));
                        return Ok(Performed {
                            output,
                            effects,
                            cost,
                        });
                    }
                    Try::Retry(reason, output) => {
                        last_output = output.or(last_output);
                        (reason, true)
                    }
                    Try::Stop(reason, output) => {
                        last_output = output.or(last_output);
                        (reason, false)
                    }
                };
                effects.push(record(&target, reason.clone()));
                last_reason = reason;
                if !retry {
                    break;
                }
                if attempt < limits.attempts_max {
                    let backoff = Duration::from_millis(backoff_ms(limits, attempt));
                    if Instant::now() + backoff >= deadline {
                        last_reason = format!(
                            "deadline of {} ms reached: {last_reason}",
                            limits.deadline_ms
                        );
                        break;
                    }
                    tokio::time::sleep(backoff).await;
                } else {
                    last_reason = format!("{attempt} attempts failed, last: {last_reason}");
                }
            }
            Err(Failed {
                reason: last_reason,
                output: last_output,
                effects,
                cost,
            })
        })
    }

    fn verify<'a>(
        &'a self,
        request: &'a Request,
        key: &'a ProposalId,
        performed: &'a Performed,
    ) -> EffectFuture<'a, Result<Verified, String>> {
        self.inner.verify(request, key, performed)
    }
}
