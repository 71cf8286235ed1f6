//! The payment-rail effect of a simulated node: the execution crate's own
//! [`RailEffect`] for everything but the transport.
//!
//! Planning (the request body, the amount cap, refusals), the triggers, the reporting and
//! the verification of the rail's answer are `RailEffect`'s; the agent around it does the
//! gate, leadership checks, journal, evidence and outcome records as always. Only `run` is
//! the simulator's: reqwest cannot run over turmoil's sockets, so a run POSTs with
//! [`crate::http`] over turmoil TCP, with the semantics of the crate's HTTP runner
//! (`docket_execution::http::post`): `Idempotency-Key` = the proposal id and
//! `Docket-Attempt` on every request, the same retry loop
//! ([`docket_execution::retry::with_retries`]: bounded tries with exponential backoff, a
//! timeout per try and a deadline over all of them), retries on connection errors,
//! timeouts, `5xx`, `408`, `425` and `429`, none on other `4xx`, and a bounded response.
//!
//! Two simulator-only headers let the effects checker explain every request the rail gets:
//! [`RUN_HEADER`] names the run (tries of one run share it) and [`KNOWN_LEDGER_HEADER`]
//! carries how much of the ledger the node had applied when the agent planned the attempt.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use docket_core::ProposalId;
use docket_execution::effect::{EffectFuture, Failed, Performed, Verified};
use docket_execution::effects::RailEffect;
use docket_execution::http::{ATTEMPT_HEADER, IDEMPOTENCY_KEY_HEADER};
use docket_execution::retry::{with_retries, Attempt, Received};
use docket_execution::{
    Effect, EffectLimits, Plan, PlanContext, Reporting, Request, Target, Trigger,
};
use docket_raft::NodeId;

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

/// One request and its answer.
async fn once(
    address: &str,
    bytes: &[u8],
    response_bytes_max: usize,
    received: &Received,
) -> Attempt {
    let retry = |reason: String| Attempt::Retry {
        reason,
        output: None,
    };
    let mut stream = match turmoil::net::TcpStream::connect(address).await {
        Ok(stream) => stream,
        Err(e) => return retry(format!("connection failed: {e}")),
    };
    if let Err(e) = http::write_all(&mut stream, bytes).await {
        return retry(format!("sending: {e}"));
    }
    let response = match http::read_message(&mut stream, response_bytes_max).await {
        Ok(response) => response,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            return Attempt::Stop {
                reason: format!("unusable response: {e}"),
                output: None,
            }
        }
        Err(e) => return retry(format!("reading the response: {e}")),
    };
    received.add(response.body.len() as u64);
    let Some(status) = response.status() else {
        return Attempt::Stop {
            reason: format!("not an HTTP status line: {:?}", response.start),
            output: None,
        };
    };
    if (200..300).contains(&status) {
        return Attempt::Done {
            status,
            output: response.body,
        };
    }
    let reason = format!("status {status}");
    let output = Some(response.body);
    if status >= 500 || matches!(status, 408 | 425 | 429) {
        Attempt::Retry { reason, output }
    } else {
        Attempt::Stop { reason, output }
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
            let received = Received::default();
            let send = |attempt: u32| {
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
                let (address, received) = (&address, &received);
                async move { once(address, &bytes, limits.response_bytes_max, received).await }
            };
            with_retries(&target, request.body.len() as u64, limits, &received, send).await
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
