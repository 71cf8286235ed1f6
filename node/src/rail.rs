//! A local payment-rail endpoint for `docket demo` and the tests: it accepts payout
//! POSTs, honours `Idempotency-Key` (a repeated key gets the first answer back and moves no
//! more money), and counts every request per key so a test can prove "exactly once".
//!
//! A request is recorded (the money moves) when it arrives; with a response delay
//! ([`Rail::start_with_delay`]) the answer comes later, like a slow real rail, so a test can
//! kill the caller between the effect and its acknowledgement.
//!
//! A payout to the beneficiary [`DECLINED_BENEFICIARY`] is declined (HTTP 422, no money
//! moves), as a real rail declines a payout to a closed account: the demo and the tests use
//! it to show an effect that fails, and what depends on its outcome.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

/// The beneficiary whose payouts the rail declines.
pub const DECLINED_BENEFICIARY: &str = "closed-account";

/// What the rail saw for one idempotency key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payout {
    /// Requests received with this key (retries and re-sends included).
    pub requests: u32,
    pub rail_ref: String,
    pub amount: Option<i64>,
}

#[derive(Clone, Debug, Default)]
struct Ledger {
    payouts: Arc<Mutex<BTreeMap<String, Payout>>>,
    /// Requests received, every key (and keyless requests) included.
    requests: Arc<std::sync::atomic::AtomicU64>,
    /// How long each answer is held back after the request is recorded.
    delay: Duration,
}

/// A running rail endpoint.
#[derive(Debug)]
pub struct Rail {
    pub addr: SocketAddr,
    ledger: Ledger,
    task: tokio::task::JoinHandle<()>,
}

impl Rail {
    /// Starts the rail on 127.0.0.1 with an OS-chosen port.
    pub async fn start() -> anyhow::Result<Rail> {
        Rail::start_with_delay(Duration::ZERO).await
    }

    /// Starts a rail that records each request at once and answers it `delay` later.
    pub async fn start_with_delay(delay: Duration) -> anyhow::Result<Rail> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let ledger = Ledger {
            delay,
            ..Ledger::default()
        };
        let app = Router::new()
            .route("/payouts", post(payout))
            .with_state(ledger.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Rail { addr, ledger, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}/payouts", self.addr)
    }

    /// Every idempotency key seen, with what was done for it.
    pub fn payouts(&self) -> BTreeMap<String, Payout> {
        self.ledger
            .payouts
            .lock()
            .expect("invariant: the rail lock is never poisoned")
            .clone()
    }

    /// Requests received so far, whatever their key (or lack of one).
    pub fn requests(&self) -> u64 {
        self.ledger
            .requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for Rail {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn payout(
    State(ledger): State<Ledger>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    ledger
        .requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let Some(key) = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "Idempotency-Key header required"})),
        );
    };
    if body.get("beneficiary").and_then(Value::as_str) == Some(DECLINED_BENEFICIARY) {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": "the beneficiary's account is closed", "idempotency_key": key})),
        );
    }
    let rail_ref = {
        let mut payouts = ledger
            .payouts
            .lock()
            .expect("invariant: the rail lock is never poisoned");
        let next = payouts.len() + 1;
        let entry = payouts.entry(key.clone()).or_insert_with(|| Payout {
            requests: 0,
            rail_ref: format!("rail-{next:04}"),
            amount: body.get("amount").and_then(Value::as_i64),
        });
        entry.requests += 1;
        entry.rail_ref.clone()
    };
    if !ledger.delay.is_zero() {
        tokio::time::sleep(ledger.delay).await;
    }
    (
        StatusCode::OK,
        Json(json!({"rail_ref": rail_ref, "idempotency_key": key})),
    )
}
